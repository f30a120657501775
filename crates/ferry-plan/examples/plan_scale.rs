//! Plans a synthetic spec of N resources once and prints the time of each stage and the
//! process's peak memory (VmHWM): `cargo run --release -p ferry-plan --example plan_scale -- 10000`.
//! One process per size, so that the peak belongs to that size alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_core::Snapshot;
use ferry_plan::PlanConfig;
use ferry_spec::LoadOptions;
use ferry_testkit::synthetic;

fn peak_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    let text = synthetic::spec_text(size, 7);
    let rules = ferry_providers::rule_book();
    let start = Instant::now();
    let spec = ferry_spec::load_sources(
        Path::new("synthetic"),
        vec![(PathBuf::from("synthetic.toml"), text)],
        &LoadOptions::default(),
        &rules,
    )
    .expect("the synthetic spec is valid");
    let parsed = start.elapsed();
    let peak_after_parse = peak_memory_mib();
    let plan = ferry_plan::plan(&spec, &Snapshot::new(0), &rules, &PlanConfig::default())
        .expect("the synthetic spec plans");
    let planned = start.elapsed() - parsed;
    println!(
        "{} resources, {} steps: parse+validate {:.1} ms, plan {:.1} ms, total {:.1} ms, peak memory {:.0} MiB ({:.0} MiB after parse+validate)",
        spec.resources.len(),
        plan.steps.len(),
        parsed.as_secs_f64() * 1000.0,
        planned.as_secs_f64() * 1000.0,
        (parsed + planned).as_secs_f64() * 1000.0,
        peak_memory_mib(),
        peak_after_parse
    );
}
