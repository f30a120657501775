//! Where the CLI's observations come from: a snapshot file, a simulated world, or the
//! providers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_core::Secret;
use ferry_core::observation::SNAPSHOT_FORMAT_VERSION;
use ferry_core::{Kind, Providers, RuleBook, Snapshot};
use ferry_observe::ObserveConfig;
use ferry_spec::{Spec, StateConfig};
use ferry_state::{LocalBackend, StateBackend, StateDir, StateFile};
use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig};
use ferry_testkit::{Behaviour, MemoryProvider, World};

use crate::args::SourceArgs;

/// How long a blob lock lasts without renewal: Azure's longest finite lease, renewed in the
/// background every third of it; a crashed apply's lock is free again after this.
const BLOB_LEASE: Duration = Duration::from_secs(60);

/// Where the spec's state, journal and lock are: the local folder or an Azure blob, both
/// behind the same interface so that apply, plan and force-unlock need not care.
pub fn state_backend(spec: &Spec) -> Result<Arc<dyn StateBackend>> {
    match &spec.state {
        StateConfig::Local { path } => Ok(Arc::new(LocalBackend::new(StateDir::new(path.clone())))),
        StateConfig::AzureBlob {
            account,
            container,
            blob,
            endpoint,
            sas_url_env,
            ca_file,
        } => {
            let (container_url, auth) = match sas_url_env {
                Some(variable) => {
                    let sas_url = std::env::var(variable)
                        .ok()
                        .filter(|value| !value.is_empty());
                    let Some(sas_url) = sas_url else {
                        bail!(
                            "[state] sas_url_env names {variable}, which is not set: export the container's SAS URL in {variable}, or remove sas_url_env to sign in with Entra ID"
                        );
                    };
                    let (url, signature) = BlobStateConfig::split_sas_url(&Secret::new(sas_url))?;
                    (url, BlobAuth::Sas(signature))
                }
                None => {
                    let url = match endpoint {
                        Some(endpoint) => {
                            let text = format!("{}/{container}", endpoint.trim_end_matches('/'));
                            url::Url::parse(&text).with_context(|| {
                                format!("[state] endpoint {endpoint} is not a URL: write it like https://ACCOUNT.blob.core.windows.net")
                            })?
                        }
                        None => BlobStateConfig::public_container_url(account, container)?,
                    };
                    (
                        url,
                        BlobAuth::Credential(ferry_arm::CredentialChoice::Chain),
                    )
                }
            };
            let config = BlobStateConfig {
                container_url,
                blob: blob.clone(),
                auth,
                ca_file: ca_file.clone(),
                // The operator's own copy of every journal record this machine writes.
                local_journal: StateDir::for_spec_dir(&spec.root).journal_path(),
                lease: BLOB_LEASE,
                request_timeout: Duration::from_secs(30),
                // Long enough for a passing fault; an apply whose storage is gone stops
                // within it of the first write that failed.
                retry_for: Duration::from_secs(30),
            };
            Ok(Arc::new(BlobBackend::new(config)?))
        }
    }
}

/// The state as it is saved now (empty before the first apply).
pub fn read_state(spec: &Spec) -> Result<StateFile> {
    state_backend(spec)?.load_state().map_err(Into::into)
}

/// Reads a snapshot written by `ferry observe`.
pub fn read_snapshot(path: &Path) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    match value.get("format_version").and_then(|v| v.as_str()) {
        Some(SNAPSHOT_FORMAT_VERSION) => {}
        other => bail!(
            "{} has snapshot format {}, and this ferry reads format {SNAPSHOT_FORMAT_VERSION}: write it again with ferry observe",
            path.display(),
            other.unwrap_or("(none)")
        ),
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a ferry snapshot", path.display()))
}

/// A simulated world kept in a JSON file (created empty when missing).
/// The simulated world in `path`; a missing file is an empty world only when `new` says so.
pub fn load_world(path: &Path, new: bool) -> Result<World> {
    if !path.exists() {
        if new {
            return Ok(World::new());
        }
        bail!(
            "the world file {} does not exist: check the path, or add --new-world to start from an empty simulated world (it is saved there by ferry apply)",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the world {}", path.display()))?;
    World::from_json(&text).with_context(|| format!("{} is not a ferry world file", path.display()))
}

pub fn save_world(path: &Path, world: &World) -> Result<()> {
    crate::write_file(path, &world.to_json())
}

/// Providers over a simulated world, for every kind; each step takes `time_scale` times its
/// estimate.
pub fn world_providers(world: &World, time_scale: f64) -> Providers {
    let behaviour = Behaviour {
        latency_from_estimate: time_scale > 0.0,
        estimate_scale: Some(time_scale),
        ..Behaviour::default()
    };
    Kind::ALL
        .into_iter()
        .fold(Providers::new(), |providers, kind| {
            providers.with(Arc::new(
                MemoryProvider::new(kind, world).behaviour(behaviour.clone()),
            ))
        })
}

/// Like [`world_providers`], and the world file is saved after every step, as a cloud keeps
/// each finished operation: an apply killed half-way (`kill -9`) leaves the world with the
/// effects of the steps that ran, which is what resuming must cope with.
pub fn persisting_world_providers(world: &World, time_scale: f64, path: &Path) -> Providers {
    let inner = world_providers(world, time_scale);
    let saving = Arc::new(std::sync::Mutex::new(()));
    Kind::ALL
        .into_iter()
        .fold(Providers::new(), |providers, kind| match inner.get(kind) {
            Some(provider) => providers.with(Arc::new(PersistingProvider {
                inner: provider.clone(),
                world: world.clone(),
                path: path.to_owned(),
                saving: saving.clone(),
            })),
            None => providers,
        })
}

/// A simulated world's provider that saves the world after each step it runs.
#[derive(Debug)]
struct PersistingProvider {
    inner: Arc<dyn ferry_core::Provider>,
    world: World,
    path: std::path::PathBuf,
    /// One save at a time: each writes the whole world.
    saving: Arc<std::sync::Mutex<()>>,
}

#[async_trait::async_trait]
impl ferry_core::Provider for PersistingProvider {
    fn kind(&self) -> Kind {
        self.inner.kind()
    }

    fn concurrency_limit(&self) -> usize {
        self.inner.concurrency_limit()
    }

    async fn read(&self, context: ferry_core::ReadContext<'_>) -> ferry_core::Observation {
        self.inner.read(context).await
    }

    async fn apply(
        &self,
        step: &ferry_core::Step,
        context: ferry_core::ApplyContext<'_>,
    ) -> Result<ferry_core::StepOutcome, ferry_core::StepError> {
        let result = self.inner.apply(step, context).await;
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        // Written whole: a kill leaves the old world or the new one.
        let saved = ferry_core::fs::write_atomically(
            &self.path,
            self.world.to_json().as_bytes(),
            &ferry_core::fs::WriteOptions::default(),
        );
        match (result, saved) {
            (Ok(_), Err(error)) => Err(ferry_core::StepError::permanent(format!(
                "the step ran, but the simulated world {} could not be saved: {error}",
                self.path.display()
            ))),
            (result, _) => result,
        }
    }
}

/// The real providers, configured for the spec.
pub fn live_providers(spec: &Spec) -> Result<Providers> {
    Ok(ferry_providers::live_providers(spec)?)
}

/// The observations a command plans from.
pub fn observe(spec: &Spec, rules: &RuleBook, source: &SourceArgs) -> Result<Snapshot> {
    if let Some(path) = &source.observed {
        return read_snapshot(path);
    }
    let state = read_state(spec)?;
    let providers = match &source.world {
        Some(path) => world_providers(
            &load_world(path, source.new_world)?,
            source.world_time_scale,
        ),
        None => live_providers(spec)?,
    };
    read_with(spec, rules, &state, &providers)
}

pub fn read_with(
    spec: &Spec,
    rules: &RuleBook,
    state: &StateFile,
    providers: &Providers,
) -> Result<Snapshot> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(ferry_observe::observe(
        spec,
        rules,
        state,
        providers,
        &ObserveConfig::default(),
    ))?)
}
