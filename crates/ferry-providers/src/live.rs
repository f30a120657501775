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
    // One block per provider family.
    let providers = providers.with(Arc::new(ferry_zfs::ZfsPoolProvider::new(
        ferry_zfs::ZfsProviderConfig::default(),
        spec.resources.values(),
    )));
    // Hooks and checks run relative to the spec's folder.
    let providers = providers
        .with(Arc::new(ferry_hook::HookProvider::new(spec.root.clone())))
        .with(Arc::new(ferry_hook::CheckProvider::new(spec.root.clone())));
    // Azure: resource groups, networks, public IPs, VMs, disks and AKS clusters share one
    // ARM client, configured from the environment (FERRY_ARM_*, the Azure credential chain)
    // and the spec's subscription; AKS kubeconfigs go to the state folder.
    let state_folder = match &spec.state {
        ferry_spec::StateConfig::Local { path } => path.clone(),
        _ => spec.root.join(".ferry"),
    };
    // Absolute, so that an output naming a file there (a kubeconfig) reads the same whatever
    // folder ferry runs from: a saved plan applied from elsewhere is not stale for that.
    let state_folder = std::path::absolute(&state_folder).unwrap_or(state_folder);
    let azure_setup = |error: ferry_arm::ArmError| SetupError {
        provider: "azure",
        message: error.to_string(),
    };
    let settings = ferry_arm::AzureSettings::from_environment(
        spec.deployment.subscription.clone(),
        state_folder,
        &|name| std::env::var(name).ok(),
    )
    .map_err(azure_setup)?;
    let azure = Arc::new(
        ferry_arm::AzureDeployment::new(settings, spec.resources.values()).map_err(azure_setup)?,
    );
    let providers = with_azure_providers(providers, &azure);
    // DNS records: RFC 2136 zones through their primary; Azure DNS zones through the same
    // ARM client, in the zone's subscription or else the deployment's.
    let mut dns_config = ferry_dns::DnsProviderConfig::new(
        spec.deployment.name.clone(),
        spec.zones.clone(),
        spec.root.clone(),
    );
    dns_config.azure = Some(ferry_dns::AzureDnsAccess {
        client: azure.client().clone(),
        subscription: azure.settings().subscription.clone(),
    });
    let dns = ferry_dns::DnsRecordProvider::new(dns_config).map_err(|error| SetupError {
        provider: "dns_record",
        message: error.to_string(),
    })?;
    let providers = providers.with(Arc::new(dns));
    Ok(providers)
}

/// Adds the seven Azure providers (resource group, virtual network, public IP, VM, disk, AKS,
/// static IP) over one deployment's ARM client.
pub fn with_azure_providers(
    providers: Providers,
    azure: &Arc<ferry_arm::AzureDeployment>,
) -> Providers {
    providers
        .with(Arc::new(ferry_compute::ResourceGroupProvider::new(
            azure.clone(),
        )))
        .with(Arc::new(ferry_compute::VnetProvider::new(azure.clone())))
        .with(Arc::new(ferry_compute::PublicIpProvider::new(
            azure.clone(),
        )))
        .with(Arc::new(ferry_compute::VmProvider::new(azure.clone())))
        .with(Arc::new(ferry_disk::DiskProvider::new(azure.clone())))
        .with(Arc::new(ferry_aks::AksClusterProvider::new(azure.clone())))
        .with(Arc::new(ferry_aks::StaticIpProvider::new(azure.clone())))
}
