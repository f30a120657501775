//! The real providers, built for one spec: the registry that `ferry observe`, `ferry plan`
//! and `ferry apply` use when they talk to the world (rather than a snapshot or a simulated
//! world).

use std::sync::Arc;

use ferry_core::Providers;
use ferry_spec::Spec;

/// Why the real providers could not be set up (a credential missing, a bad setting).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the {provider} provider: {message}")]
pub struct SetupError {
    pub provider: &'static str,
    pub message: String,
}

/// Every real provider this build of ferry has, configured for `spec`. A kind with no
/// provider yet is simply missing: reading or changing it reports that.
pub fn live_providers(spec: &Spec) -> Result<Providers, SetupError> {
    let providers = Providers::new();
    // Each provider family registers itself here, one block per family.
    // -- providers: begin --
    let providers = providers.with(Arc::new(ferry_zfs::ZfsPoolProvider::new(
        ferry_zfs::ZfsProviderConfig::default(),
        spec.resources.values(),
    )));
    // -- providers: end --
    let _ = (spec, Arc::<()>::new(()));
    Ok(providers)
}
