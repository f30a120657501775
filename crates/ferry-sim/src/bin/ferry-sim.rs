//! `ferry-sim`: runs the ARM simulator until Ctrl-C, printing the endpoint and CA file to use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// A local Azure Resource Manager simulator over HTTPS.
#[derive(Debug, Parser)]
#[command(name = "ferry-sim", version)]
struct Arguments {
    /// Address to serve ARM on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    address: SocketAddr,
    /// Multiplies operation durations (1.0: Azure's pace; 0.01: an 8-minute AKS create takes 4.8 s).
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// Folder for the CA, disk backing files and per-VM lunN links.
    #[arg(long, default_value = "ferry-sim-data")]
    data_directory: PathBuf,
    /// Size in bytes of each disk's sparse backing file (default: the disk's own size).
    #[arg(long)]
    disk_backing_size: Option<u64>,
    /// Latency added to every ARM request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_milliseconds: u64,
    /// A scenario file (TOML or JSON): resources to seed and faults to inject.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Write the world as JSON to this file on exit.
    #[arg(long)]
    state_dump: Option<PathBuf>,
    /// Port of each AKS API server's /readyz (falls back to a free port if taken).
    #[arg(long, default_value_t = 443)]
    readyz_port: u16,
    /// Throttle like ARM: token buckets per subscription and principal with Azure's documented
    /// sizes (reads 250 and 25 a second, writes and deletes 200 and 10 a second), in real time.
    #[arg(long)]
    arm_throttling: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    let scenario = match &arguments.scenario {
        Some(path) => Some(ferry_sim::Scenario::load(path)?),
        None => None,
    };
    let time_scale = scenario
        .as_ref()
        .and_then(|scenario| scenario.time_scale)
        .unwrap_or(arguments.time_scale);
    let config = ferry_sim::SimulatorConfig {
        address: arguments.address,
        time_scale,
        durations: ferry_sim::OperationDurations::default(),
        data_directory: std::path::absolute(&arguments.data_directory)
            .with_context(|| format!("resolving {}", arguments.data_directory.display()))?,
        disk_backing_size: arguments.disk_backing_size,
        latency: Duration::from_millis(arguments.latency_milliseconds),
        page_size: 100,
        readyz_port: arguments.readyz_port,
        first_public_ip: std::net::Ipv4Addr::new(127, 0, 1, 1),
        extra_regions: Vec::new(),
        scenario,
        throttling: arguments
            .arm_throttling
            .then(ferry_sim::ArmThrottling::azure),
    };
    let simulator = ferry_sim::start(config).await?;
    println!("endpoint: {}", simulator.endpoint());
    println!("ca file:  {}", simulator.ca_file().display());
    println!("control:  {}/ferry-sim/state", simulator.endpoint());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    if let Some(path) = &arguments.state_dump {
        let state = serde_json::to_string_pretty(&simulator.dump_state())?;
        std::fs::write(path, state)
            .with_context(|| format!("writing the state dump {}", path.display()))?;
        println!("state written to {}", path.display());
    }
    simulator.shutdown();
    Ok(())
}
