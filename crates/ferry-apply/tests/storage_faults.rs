//! What the journal says after a step whose outputs could not be saved, and after a step
//! abandoned at its time limit: in both cases the next apply must not take the step as done,
//! and a timed-out step's operation is polled again rather than sent again.
//! A store that cannot read its state gives its lock back.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, StepStatus, Store, apply};
use ferry_core::{Action, Plan, Step, StepId, Value};
use ferry_state::{StateDir, StepPhase};
use ferry_testkit::random::plan_of;
use ferry_world::{Behaviour, World, memory_providers};

fn step(id: &str, estimate_seconds: u64, after: &[&str]) -> Step {
    let (instance, action) = id.split_once(':').unwrap();
    let instance: ferry_core::InstanceAddress = instance.parse().unwrap();
    let action: Action = serde_json::from_value(Value::String(action.to_owned())).unwrap();
    Step {
        id: StepId::new(&instance, action),
        address: instance,
        action,
        reason: "test".to_owned(),
        after: after.iter().map(|id| StepId((*id).to_owned())).collect(),
        estimate_seconds,
        changes: Default::default(),
        inputs: Default::default(),
        warning: None,
    }
}

fn id(text: &str) -> StepId {
    StepId(text.to_owned())
}

async fn run(
    plan: &Plan,
    providers: &ferry_core::Providers,
    config: &ApplyConfig,
    store: &mut Store,
) -> ferry_apply::ApplyReport {
    apply(
        plan,
        providers,
        config,
        store,
        &ApplyControl::new(),
        &|_| {},
    )
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_outputs_were_not_saved_is_not_journaled_as_done() {
    let folder = tempfile::tempdir().unwrap();
    let directory = StateDir::new(folder.path().join("state"));
    let away = folder.path().join("away");
    let plan = plan_of(vec![
        step("vm.a:create", 10, &[]),
        step("vm.b:create", 10, &["vm.a:create"]),
    ]);
    let world = World::new();
    let providers = memory_providers(&world, |provider| {
        provider.behaviour(Behaviour::from_estimates())
    });
    let mut store = Store::lock_and_open(&directory, "test").unwrap();
    // The state folder goes away while vm.a is created; the open journal file still takes
    // records, as it does on a volume that was unmounted under the process.
    let report = {
        let moved = std::sync::atomic::AtomicBool::new(false);
        let on_event = |event: &ferry_apply::Event| {
            if let ferry_apply::EventKind::StepStarted { .. } = event.kind
                && !moved.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                std::fs::rename(&directory.root, &away).unwrap();
            }
        };
        apply(
            &plan,
            &providers,
            &ApplyConfig::default(),
            &mut store,
            &ApplyControl::new(),
            &on_event,
        )
        .await
        .unwrap()
    };
    assert!(report.storage_error.is_some());
    assert_eq!(
        report.step(&id("vm.b:create")).unwrap().status,
        StepStatus::NotStarted
    );
    // It took effect, and the report says it is not recorded, rather than counting it done.
    let StepStatus::NotSaved { error } = &report.step(&id("vm.a:create")).unwrap().status else {
        panic!("vm.a:create must be reported not saved: {report:?}");
    };
    assert!(error.contains("cannot save state file"), "{error}");
    assert_eq!(report.counts().not_saved, 1);
    assert_eq!(report.counts().done, 0);
    assert_eq!(
        report.counts().describe(),
        "1 done but not saved, 1 not started"
    );
    std::fs::rename(&away, &directory.root).unwrap();
    store.release_lock().unwrap();
    let resumed = Store::lock_and_open(&directory, "test").unwrap();
    // Its outputs are not in the saved state, so it must not count as done: it runs again.
    assert!(resumed.state.outputs(&"vm.a".parse().unwrap()).is_none());
    assert_eq!(resumed.resume.phase(&id("vm.a:create")), StepPhase::Started);
    let mut resumed = resumed;
    let report = run(&plan, &providers, &ApplyConfig::default(), &mut resumed).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        report.step(&id("vm.a:create")).unwrap().status,
        StepStatus::Done
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_abandoned_at_its_time_limit_keeps_its_resume_token_for_the_next_apply() {
    let folder = tempfile::tempdir().unwrap();
    let directory = StateDir::new(folder.path().join("state"));
    let plan = plan_of(vec![
        step("vm.old:fence", 10, &[]),
        step("disk.d:detach", 10, &["vm.old:fence"]),
    ]);
    let world = World::new();
    let hanging = Behaviour {
        hang: true,
        records_resume_token: true,
        ..Behaviour::default()
    };
    let providers = memory_providers(&world, |provider| {
        provider.step("vm.old:fence", hanging.clone())
    });
    let config = ApplyConfig {
        step_timeout: Duration::from_secs(60),
        estimate_multiplier: 0,
        ..ApplyConfig::default()
    };
    let mut store = Store::lock_and_open(&directory, "test").unwrap();
    let report = run(&plan, &providers, &config, &mut store).await;
    let StepStatus::Failed { error } = &report.step(&id("vm.old:fence")).unwrap().status else {
        panic!("{report:?}");
    };
    assert!(error.contains("no result within 1m"), "{error}");
    assert!(matches!(
        report.step(&id("disk.d:detach")).unwrap().status,
        StepStatus::Skipped { .. }
    ));
    store.release_lock().unwrap();
    let resumed = Store::lock_and_open(&directory, "test").unwrap();
    assert_eq!(
        resumed.resume.phase(&id("vm.old:fence")),
        StepPhase::Started
    );
    assert_eq!(
        resumed.resume.resume_token_of(&id("vm.old:fence")),
        Some("memory://operations/vm.old:fence")
    );
}

#[test]
fn a_store_that_cannot_read_its_state_gives_its_lock_back() {
    let folder = tempfile::tempdir().unwrap();
    let directory = StateDir::new(folder.path().join("state"));
    directory.create().unwrap();
    std::fs::write(directory.state_path(), "{ not json").unwrap();
    let error = Store::lock_and_open(&directory, "test").unwrap_err();
    assert!(error.to_string().contains("state.json"), "{error}");
    assert!(
        !directory.lock_path().exists(),
        "the lease must not outlive a store that was never opened"
    );
    // Once the file is mended, the next open takes the lock without a force-unlock.
    std::fs::remove_file(directory.state_path()).unwrap();
    let mut store = Store::lock_and_open(&directory, "test").unwrap();
    store.release_lock().unwrap();
}
