//! ferry as a library against the ARM simulator with the real Azure providers: build data100,
//! then carry out a planned failover to generation 2. Resource groups, networks, public IPs,
//! VMs, managed disks and the AKS cluster go through ferry's ARM client to `ferry-sim` (HTTPS,
//! long-running operations, ARM's refusals); the ZFS pool, DNS records and hooks, which need
//! servers of their own (see `cargo xtask demo`), are simulated in memory.
//!
//! `cargo run --example failover_on_simulator`

#[path = "copy_spec.rs"]
mod copy_spec;

use std::sync::Arc;

use ferry_apply::{ApplyConfig, ApplyControl};
use ferry_arm::{AzureDeployment, AzureSettings};
use ferry_core::{Kind, Providers};
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, PlanOptions, PlanSource, WorldSource,
};
use ferry_plan::{FailoverRequest, PlanConfig};
use ferry_sim::SimulatorConfig;
use ferry_spec::LoadOptions;
use ferry_world::{MemoryProvider, World};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let spec_path = copy_spec::data100_in(folder.path())?;
    let simulator = ferry_sim::start(SimulatorConfig::for_tests(folder.path().join("sim"))).await?;
    println!("ARM simulator at {}", simulator.endpoint());

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
    let azure = Arc::new(AzureDeployment::new(settings, spec.resources.values())?);
    let world = World::simulating(&rules);
    let providers = ferry_providers::with_azure_providers(Providers::new(), &azure)
        .with(Arc::new(MemoryProvider::new(Kind::ZfsPool, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::DnsRecord, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::Hook, &world)))
        .with(Arc::new(MemoryProvider::new(Kind::Check, &world)));
    let deployment = Deployment::open(spec, rules, &spec_path, WorldSource::Providers(providers))?;

    let planned_failover = PlanOptions {
        config: PlanConfig {
            failover: FailoverRequest::Force,
            ..PlanConfig::default()
        },
        force: false,
    };
    for (round, options) in [
        ("build generation 1", PlanOptions::default()),
        ("planned failover", planned_failover),
    ] {
        let mut approve = |plan: &ferry_core::Plan| {
            println!("{round}: {} steps", plan.steps.len());
            Ok(Approval::Approved)
        };
        let applied = deployment
            .apply(ApplyRequest {
                plan: PlanSource::Fresh(options),
                lock_timeout: std::time::Duration::ZERO,
                config: ApplyConfig::default(),
                control: &ApplyControl::new(),
                on_event: &|_| {},
                approve: &mut approve,
            })
            .await?;
        let Applied::Ran {
            report,
            active_generation,
            ..
        } = applied
        else {
            anyhow::bail!("{round}: nothing was applied: {applied:?}");
        };
        anyhow::ensure!(
            report.succeeded(),
            "{round} failed: {}",
            report.counts().describe()
        );
        println!(
            "  {} in {:.1} s; generation {active_generation} serves",
            report.counts().describe(),
            report.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
