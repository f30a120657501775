//! Plans a synthetic spec of N resources once and prints the time of each stage and the
//! process's peak memory (VmHWM): `cargo run --release -p ferry-plan --example plan_scale -- 10000`.
//! One process per size, so that the peak belongs to that size alone. A second argument splits
//! the spec into that many files (at group boundaries), as a fleet's spec would be written:
//! `-- 100000 100`. With `--write DIR` it only writes the spec's files into DIR, for a run of
//! the `ferry` binary itself: `-- 100000 1 --write /tmp/synthetic-100000`.

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

/// The spec's text in `files` pieces of about equal size, each starting at a resource group.
fn split(text: String, files: usize) -> Vec<(PathBuf, String)> {
    if files <= 1 {
        return vec![(PathBuf::from("synthetic.toml"), text)];
    }
    let target = text.len() / files + 1;
    let mut pieces = Vec::with_capacity(files);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let cut = if rest.len() <= target {
            rest.len()
        } else {
            rest[target..]
                .find("\n[resource_group.")
                .map_or(rest.len(), |at| target + at + 1)
        };
        let (piece, after) = rest.split_at(cut);
        pieces.push((
            PathBuf::from(format!("synthetic-{:03}.toml", pieces.len())),
            piece.to_owned(),
        ));
        rest = after;
    }
    pieces
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let size: usize = arguments
        .get(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    let files: usize = arguments
        .get(2)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(1);
    let sources = split(synthetic::spec_text(size, 7), files);
    if let Some(folder) = arguments
        .iter()
        .position(|arg| arg == "--write")
        .and_then(|at| arguments.get(at + 1))
    {
        std::fs::create_dir_all(folder).expect("the folder can be created");
        for (path, text) in &sources {
            std::fs::write(Path::new(folder).join(path), text).expect("the spec can be written");
        }
        println!("wrote {} files into {folder}", sources.len());
        return;
    }
    let rules = ferry_providers::rule_book();
    let spec_files = sources.len();
    let start = Instant::now();
    let spec = ferry_spec::load_sources(
        Path::new("synthetic"),
        sources,
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
        "{} resources in {} files, {} steps: parse+validate {:.1} ms, plan {:.1} ms, total {:.1} ms, peak memory {:.0} MiB ({:.0} MiB after parse+validate)",
        spec.resources.len(),
        spec_files,
        plan.steps.len(),
        parsed.as_secs_f64() * 1000.0,
        planned.as_secs_f64() * 1000.0,
        (parsed + planned).as_secs_f64() * 1000.0,
        peak_memory_mib(),
        peak_after_parse
    );
}
