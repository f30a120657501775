//! How many ARM requests `ferry observe` sends, how many ARM throttles and how long it takes,
//! reading one GET per instance ("before") and through each resource group's lists ("after"),
//! against the ARM simulator with Azure's read limits (a burst of 250, then 25 a second per
//! subscription and principal) and 100 ms added to every request.
//!
//! Worlds: data100 as ferry applies it, and synthetic fleets of 1,000 and 10,000 resources in
//! 50 resource groups (per group: the group, a network, VMs each with a network interface and
//! a public IP, and managed disks attached to them), seeded straight into the simulator.
//!
//! `cargo run --release -p ferry-tests --example fleet_reads`
//! (`-- --before-10000` also reads the 10,000 one GET at a time: about 20 minutes)

#[path = "copy_spec.rs"]
mod copy_spec;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_apply::{ApplyConfig, ApplyControl};
use ferry_arm::{AzureDeployment, AzureSettings};
use ferry_core::{Kind, Providers, RuleBook};
use ferry_observe::ObserveConfig;
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, PlanOptions, PlanSource, WorldSource,
};
use ferry_sim::{ArmThrottling, Simulator, SimulatorConfig};
use ferry_spec::{LoadOptions, Spec};
use ferry_state::StateFile;
use ferry_world::{MemoryProvider, World};
use serde_json::json;

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000f1ee";
const GROUPS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let before_10000 = arguments
        .iter()
        .any(|argument| argument == "--before-10000");
    // `--fleet N`: only the fleet of N resources, through lists (for a profiler).
    let only = arguments
        .iter()
        .position(|argument| argument == "--fleet")
        .and_then(|at| arguments.get(at + 1)?.parse::<usize>().ok());
    println!("| world | read | instances read | requests | throttled | wall time |");
    println!("|---|---|---|---|---|---|");
    if let Some(resources) = only {
        return fleet(resources, false, false).await;
    }
    data100().await?;
    for resources in [1_000, 10_000] {
        fleet(resources, resources <= 1_000 || before_10000, true).await?;
    }
    Ok(())
}

/// One observation's figures.
struct Measured {
    instances: usize,
    requests: u64,
    throttled: u64,
    elapsed: Duration,
}

/// Reads `spec` once as `ferry observe` does, with throttling's buckets full and the
/// simulator's counts at zero; a client of its own, so that its pacer starts afresh too.
async fn measure(
    simulator: &Simulator,
    spec: &Spec,
    rules: &RuleBook,
    state: &StateFile,
    providers: impl Fn(&Arc<AzureDeployment>) -> Providers,
    settings: &AzureSettings,
    read_rounds: bool,
) -> anyhow::Result<Measured> {
    simulator.set_throttling(Some(ArmThrottling::azure()));
    simulator.set_latency(Duration::from_millis(100));
    simulator.reset_request_stats();
    let azure = Arc::new(AzureDeployment::new(
        settings.clone(),
        spec.resources.values(),
    )?);
    let providers = providers(&azure);
    let config = ObserveConfig {
        read_rounds,
        ..ObserveConfig::default()
    };
    let started = Instant::now();
    let snapshot = ferry_observe::observe(spec, rules, state, &providers, &config).await?;
    let elapsed = started.elapsed();
    let stats = simulator.request_stats();
    simulator.set_throttling(None);
    simulator.set_latency(Duration::ZERO);
    Ok(Measured {
        instances: snapshot.resources.len(),
        requests: stats.requests,
        throttled: stats.throttled,
        elapsed,
    })
}

fn report(world: &str, how: &str, measured: &Measured) {
    println!(
        "| {world} | {how} | {} | {} | {} | {:.1} s |",
        measured.instances,
        measured.requests,
        measured.throttled,
        measured.elapsed.as_secs_f64()
    );
}

/// data100 applied by ferry (generation 1), then observed as `ferry observe` reads it.
async fn data100() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let spec_path = copy_spec::data100_in(folder.path())?;
    let simulator = ferry_sim::start(SimulatorConfig::for_tests(folder.path().join("sim"))).await?;
    let rules = ferry_ops::rule_book();
    let spec = ferry_spec::load(&spec_path, &LoadOptions::default(), &rules)
        .map_err(|errors| anyhow::anyhow!("{}", errors.render(false)))?;
    let mut settings = AzureSettings::simulator(
        url::Url::parse(simulator.endpoint())?,
        simulator.ca_file().to_path_buf(),
        folder.path().join("operations"),
    );
    settings.subscription = spec.deployment.subscription.clone();
    settings.device_root = Some(folder.path().join("sim"));
    let world = World::simulating(&rules);
    let providers = |azure: &Arc<AzureDeployment>| {
        ferry_providers::with_azure_providers(Providers::new(), azure)
            .with(Arc::new(MemoryProvider::new(Kind::ZfsPool, &world)))
            .with(Arc::new(MemoryProvider::new(Kind::DnsRecord, &world)))
            .with(Arc::new(MemoryProvider::new(Kind::Hook, &world)))
            .with(Arc::new(MemoryProvider::new(Kind::Check, &world)))
    };
    let azure = Arc::new(AzureDeployment::new(
        settings.clone(),
        spec.resources.values(),
    )?);
    let deployment = Deployment::open(
        spec,
        ferry_ops::rule_book(),
        &spec_path,
        WorldSource::Providers(providers(&azure)),
    )?;
    let mut approve = |_: &ferry_core::Plan| Ok(Approval::Approved);
    let applied = deployment
        .apply(ApplyRequest {
            plan: PlanSource::Fresh(PlanOptions::default()),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            approve: &mut approve,
        })
        .await?;
    let Applied::Ran { report: built, .. } = applied else {
        anyhow::bail!("data100 was not built: {applied:?}");
    };
    anyhow::ensure!(built.succeeded(), "{}", built.counts().describe());
    let state = deployment.state()?;
    for (how, read_rounds) in [("one GET each", false), ("lists", true)] {
        let measured = measure(
            &simulator,
            deployment.spec(),
            &rules,
            &state,
            &providers,
            &settings,
            read_rounds,
        )
        .await?;
        report("data100", how, &measured);
    }
    Ok(())
}

/// A fleet of `resources` ARM resources in 50 groups, seeded into the simulator.
async fn fleet(resources: usize, before: bool, count_before: bool) -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
    config.disk_backing_size = Some(4096);
    let simulator = ferry_sim::start(config).await?;
    let per_group = resources / GROUPS;
    let vms = (per_group - 2) / 4;
    let disks = per_group - 2 - 2 * vms;
    let mut text = format!(
        "[deployment]\nname = \"fleet\"\nlocation = \"westeurope\"\nsubscription = \"{SUBSCRIPTION}\"\n\n"
    );
    for group in 0..GROUPS {
        seed_group(&simulator, &mut text, group, vms, disks)?;
    }
    let spec_path = folder.path().join("fleet.toml");
    std::fs::write(&spec_path, &text)?;
    let rules = ferry_ops::rule_book();
    let spec = ferry_spec::load(&spec_path, &LoadOptions::default(), &rules)
        .map_err(|errors| anyhow::anyhow!("{}", errors.render(false)))?;
    anyhow::ensure!(
        spec.resources.len() == resources,
        "{} resources",
        spec.resources.len()
    );
    let mut settings = AzureSettings::simulator(
        url::Url::parse(simulator.endpoint())?,
        simulator.ca_file().to_path_buf(),
        folder.path().join("operations"),
    );
    settings.subscription = Some(SUBSCRIPTION.to_owned());
    let providers = |azure: &Arc<AzureDeployment>| {
        ferry_providers::with_azure_providers(Providers::new(), azure)
    };
    let world = format!("{resources} in {GROUPS} groups");
    let state = StateFile::default();
    let mut modes = vec![("lists", true)];
    if before {
        modes.insert(0, ("one GET each", false));
    }
    for (how, read_rounds) in modes {
        let measured = measure(
            &simulator,
            &spec,
            &rules,
            &state,
            providers,
            &settings,
            read_rounds,
        )
        .await?;
        report(&world, how, &measured);
    }
    if !before && count_before {
        // The requests one GET each would send, counted without throttling or latency, and
        // the time ARM's limits would take to answer them: the burst, then 25 a second.
        simulator.reset_request_stats();
        let azure = Arc::new(AzureDeployment::new(
            settings.clone(),
            spec.resources.values(),
        )?);
        let config = ObserveConfig {
            read_rounds: false,
            ..ObserveConfig::default()
        };
        let snapshot =
            ferry_observe::observe(&spec, &rules, &state, &providers(&azure), &config).await?;
        let requests = simulator.request_stats().requests;
        let seconds = requests.saturating_sub(250) as f64 / 25.0;
        println!(
            "| {world} | one GET each (counted unthrottled, time extrapolated) | {} | {requests} | - | about {:.0} s |",
            snapshot.resources.len(),
            seconds
        );
    }
    Ok(())
}

/// Seeds group `group` (a network, `vms` VMs each with its interface and public IP, `disks`
/// disks attached to them in turn) and writes its resources into the spec `text`.
fn seed_group(
    simulator: &Simulator,
    text: &mut String,
    group: usize,
    vms: usize,
    disks: usize,
) -> anyhow::Result<()> {
    let seed = |id: &str, body: serde_json::Value| {
        simulator
            .seed(id, body)
            .map_err(|error| anyhow::anyhow!("{error}"))
    };
    let group_name = format!("fleet-{group}-g1");
    let group_id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group_name}");
    let id = |kind: &str, name: &str| format!("{group_id}/providers/{kind}/{name}");
    seed(&group_id, json!({"location": "westeurope"}))?;
    let _ = write!(
        text,
        "[resource_group.g{group}]\nname = \"fleet-{group}-g${{generation}}\"\n\n\
         [vnet.n{group}]\nname = \"vnet-{group}\"\nresource_group = \"resource_group.g{group}\"\naddress_space = [\"10.{}.0.0/16\"]\nsubnets = {{ default = \"10.{}.0.0/24\" }}\n\n",
        group, group
    );
    let vnet = id(
        "Microsoft.Network/virtualNetworks",
        &format!("vnet-{group}"),
    );
    seed(
        &vnet,
        json!({"location": "westeurope", "properties": {
            "addressSpace": {"addressPrefixes": [format!("10.{group}.0.0/16")]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": format!("10.{group}.0.0/24")}}]
        }}),
    )?;
    let mut attached: Vec<Vec<serde_json::Value>> = vec![Vec::new(); vms];
    for disk in 0..disks {
        let name = format!("disk-{group}-{disk}");
        let disk_id = id("Microsoft.Compute/disks", &name);
        seed(
            &disk_id,
            json!({"location": "westeurope", "sku": {"name": "Premium_LRS"}, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}),
        )?;
        let vm = disk % vms;
        let lun = attached[vm].len();
        attached[vm]
            .push(json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk_id}}));
        let _ = write!(
            text,
            "[disk.d{group}_{disk}]\nname = \"{name}\"\nresource_group = \"resource_group.g{group}\"\nsize_gb = 64\nvm = \"vm.v{group}_{vm}\"\nlun = {lun}\n\n"
        );
    }
    for (vm, data_disks) in attached.into_iter().enumerate() {
        let name = format!("vm-{group}-{vm}");
        let ip_id = id("Microsoft.Network/publicIPAddresses", &format!("{name}-ip"));
        seed(
            &ip_id,
            json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}),
        )?;
        let nic_id = id(
            "Microsoft.Network/networkInterfaces",
            &format!("{name}-nic"),
        );
        seed(
            &nic_id,
            json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": format!("{vnet}/subnets/default")},
                "privateIPAllocationMethod": "Dynamic", "primary": true,
                "publicIPAddress": {"id": ip_id}
            }}]}}),
        )?;
        seed(
            &id("Microsoft.Compute/virtualMachines", &name),
            json!({"location": "westeurope", "properties": {
                "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
                "storageProfile": {"dataDisks": data_disks},
                "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true}}]}
            }}),
        )?;
        let _ = write!(
            text,
            "[public_ip.p{group}_{vm}]\nname = \"{name}-ip\"\nresource_group = \"resource_group.g{group}\"\n\n\
             [vm.v{group}_{vm}]\nname = \"{name}\"\nresource_group = \"resource_group.g{group}\"\nvnet = \"vnet.n{group}\"\nsubnet = \"default\"\npublic_ip = \"public_ip.p{group}_{vm}\"\nsize = \"Standard_D4s_v5\"\nssh_public_key = \"ssh-ed25519 AAAA test\"\n\n"
        );
    }
    Ok(())
}
