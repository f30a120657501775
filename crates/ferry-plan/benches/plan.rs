//! Planning time for synthetic specs of 1,000, 10,000 and 100,000 resources: parsing and
//! validation, then graph, diff and order, each measured on its own.
//!
//! Run with `cargo bench -p ferry-plan --bench plan`; the figures are in BENCHMARKS.md.

use std::path::{Path, PathBuf};

use ferry_core::Snapshot;
use ferry_plan::PlanConfig;
use ferry_spec::{LoadOptions, Spec};
use ferry_testkit::synthetic;

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn load(text: &str) -> Spec {
    ferry_spec::load_sources(
        Path::new("synthetic"),
        vec![(PathBuf::from("synthetic.toml"), text.to_owned())],
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .expect("the synthetic spec is valid")
}

#[divan::bench(args = SIZES, sample_count = 5)]
fn parse_and_validate(bencher: divan::Bencher, size: usize) {
    let text = synthetic::spec_text(size, 7);
    bencher.bench(|| load(divan::black_box(&text)));
}

#[divan::bench(args = SIZES, sample_count = 5)]
fn plan_from_scratch(bencher: divan::Bencher, size: usize) {
    let spec = load(&synthetic::spec_text(size, 7));
    let rules = ferry_providers::rule_book();
    let empty = Snapshot::new(0);
    bencher.bench(|| ferry_plan::plan(&spec, &empty, &rules, &PlanConfig::default()).unwrap());
}

#[path = "../tests/support/mod.rs"]
mod support;

/// The synthetic spec converged at generation 1: what its providers read after its first
/// apply, so that the plan is a reconcile (no steps) and readiness plans a whole failover.
fn converged(size: usize) -> (Spec, Snapshot) {
    let spec = load(&synthetic::spec_text(size, 7));
    let empty = Snapshot::new(0);
    let first = ferry_plan::plan(
        &spec,
        &empty,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    let snapshot = support::converge(&empty, &first, 1);
    (spec, snapshot)
}

/// `ferry plan` on an ordinary day: the reconcile plan of a converged world.
#[divan::bench(args = [1_000, 10_000], sample_count = 5)]
fn plan_converged(bencher: divan::Bencher, size: usize) {
    let (spec, snapshot) = converged(size);
    let rules = ferry_providers::rule_book();
    bencher.bench(|| ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default()).unwrap());
}

/// What failover readiness adds to it: the failover planned from the same readings.
#[divan::bench(args = [1_000, 10_000], sample_count = 5)]
fn readiness_converged(bencher: divan::Bencher, size: usize) {
    let (spec, snapshot) = converged(size);
    let rules = ferry_providers::rule_book();
    bencher.bench(|| {
        let readiness =
            ferry_plan::readiness(&spec, &snapshot, &rules, &PlanConfig::default()).unwrap();
        assert!(readiness.ready, "{readiness:?}");
        readiness
    });
}
