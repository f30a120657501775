//! What the Azure end-to-end tests share: the in-process ARM simulator and the data100 spec,
//! with the real Azure providers and the other kinds (pool, DNS, hooks, checks) in memory.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ferry_arm::{AzureDeployment, AzureSettings, Url};
use ferry_core::{Kind, Providers, RuleBook};
use ferry_sim::{Simulator, SimulatorConfig};
use ferry_spec::{LoadOptions, Spec};
use ferry_world::{MemoryProvider, World};

/// The kinds the simulator serves for real.
pub const AZURE_KINDS: [Kind; 6] = [
    Kind::ResourceGroup,
    Kind::Vnet,
    Kind::PublicIp,
    Kind::Vm,
    Kind::Disk,
    Kind::AksCluster,
];

pub struct AzureWorld {
    pub spec: Spec,
    pub rules: RuleBook,
    pub simulator: Simulator,
    pub providers: Providers,
}

/// Starts a simulator under `folder` and builds the providers for data100 against it; the
/// Azure providers keep their operation files in `folder/operations`.
pub async fn azure_world(folder: &Path, operations: &str) -> AzureWorld {
    azure_world_with(folder, operations, |_| {}).await.0
}

/// [`azure_world`] with ferry's Azure settings (its ARM client's retries, pacing, waits)
/// adjusted first; also returns the deployment the Azure providers share, whose client tells
/// how it paced itself.
pub async fn azure_world_with(
    folder: &Path,
    operations: &str,
    adjust: impl FnOnce(&mut AzureSettings),
) -> (AzureWorld, Arc<AzureDeployment>) {
    let simulator = ferry_sim::start(SimulatorConfig::for_tests(folder.join("sim")))
        .await
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let rules = ferry_providers::rule_book();
    let spec = ferry_spec::load(&root, &LoadOptions::default(), &rules)
        .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    let mut settings = AzureSettings::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
        folder.join(operations),
    );
    settings.subscription = spec.deployment.subscription.clone();
    settings.device_root = Some(folder.join("sim"));
    adjust(&mut settings);
    let azure = Arc::new(AzureDeployment::new(settings, spec.resources.values()).unwrap());
    let world = World::simulating(&rules);
    let providers = ferry_providers::with_azure_providers(Providers::new(), &azure)
        .with(Arc::new(MemoryProvider::new(Kind::ZfsPool, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::DnsRecord, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::Hook, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::Check, &world)));
    (
        AzureWorld {
            spec,
            rules,
            simulator,
            providers,
        },
        azure,
    )
}
