//! A failover drill from the library (`Deployment::drill`), as a program that embeds ferry
//! would run it on the simulated world: the report's figures, production's world untouched,
//! and the drill holding its own lock, not production's.

use std::path::{Path, PathBuf};

use ferry_apply::ApplyControl;
use ferry_ops::{Deployment, DrillMode, WorldSource};
use ferry_spec::LoadOptions;
use ferry_testkit::drill_harness::{build, drill_request};

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ferry_testkit::copy_spec_folder(
        &repository.join("specs/data100"),
        &folder.path().join("data100"),
    );
    let spec = folder.path().join("data100");
    (folder, spec)
}

fn open(spec: &Path, world: &Path) -> Deployment {
    Deployment::load(
        spec,
        &LoadOptions::default(),
        WorldSource::Simulated {
            path: world.to_owned(),
            new: true,
            time_scale: 0.0,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_drill_from_the_library_measures_every_step_and_leaves_production_as_it_was() {
    let (folder, spec) = scratch();
    let world = folder.path().join("world.json");
    let production = open(&spec, &world);
    build(&production).await;
    let before = std::fs::read(&world).unwrap();

    let report = production
        .drill(drill_request(
            DrillMode::Run { keep: false },
            "lib",
            &ApplyControl::new(),
        ))
        .await
        .unwrap();
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.production_generation, 1);
    assert_eq!(report.steps.len(), 16);
    assert!(
        report
            .steps
            .iter()
            .all(|step| step.outcome == "done" && step.measured.is_some())
    );
    // Every replaceable resource's step has the failover's own step beside it.
    let vm = report
        .steps
        .iter()
        .find(|step| step.id.to_string() == "vm.nfs@g1:create")
        .unwrap();
    assert_eq!(vm.failover_estimate_seconds, Some(vm.estimate_seconds));
    let plan = report.plan.as_ref().unwrap();
    let failover = report.failover_plan.as_ref().unwrap();
    assert!(failover.failover.is_some());
    assert!(
        plan.failover.is_none(),
        "the drill is a build of its own generation"
    );
    assert!(report.measured_recovery.is_some());
    let cleanup = report.cleanup.as_ref().unwrap();
    assert_eq!(cleanup.deleted.len(), 16);
    assert!(cleanup.leftovers.is_empty());
    assert!(report.production_changes.is_empty());
    assert_eq!(std::fs::read(&world).unwrap(), before);
    // The drill's state is its own; production's lock was never taken.
    assert!(spec.join(".ferry/drill/state.json").exists());
    assert!(!spec.join(".ferry/lock.json").exists());
    assert!(!spec.join(".ferry/drill/lock.json").exists());
}
