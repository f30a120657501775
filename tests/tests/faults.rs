//! Faults injected while the data100 failover runs on the ARM simulator: throttle storms,
//! server errors, operations that end `Failed` or never end, an AKS API server that flaps, a
//! state folder that disappears under the apply, another writer busy on the NFS VM and the AKS
//! cluster, and ARM's own throttling (at Azure's sizes, and with tiny buckets). For each, the apply either completes or
//! stops naming the failed step and its error; nothing stateful is lost (every disk still
//! exists, in one group, attached to at most one VM); and applying again once the fault clears
//! converges without a second failover.
//!
//! The Azure kinds are the real providers against the simulator; the pool, DNS, hooks and checks
//! are the in-memory world's (their own faults are in their crates' tests, see TESTING.md).

mod support;

use std::time::Duration;
use support::AZURE_KINDS;

use ferry_apply::{
    ApplyConfig, ApplyControl, ApplyReport, Event, EventKind, RetryPolicy, StepStatus, Store,
};
use ferry_arm::Url;
use ferry_core::{Plan, Providers, RuleBook, Snapshot, StepId};
use ferry_observe::ObserveConfig;
use ferry_plan::{PlanConfig, SavedPlan};
use ferry_sim::{ApiServerDownMode, ArmThrottling, Fault, SimEvent, Simulator};
use ferry_spec::Spec;
use ferry_state::{StateDir, StateFile};

struct Deployment {
    spec: Spec,
    rules: RuleBook,
    simulator: Simulator,
    providers: Providers,
    store: Store,
    folder: tempfile::TempDir,
    /// What the Azure providers share: its ARM client tells how it paced itself.
    azure: std::sync::Arc<ferry_arm::AzureDeployment>,
}

/// Retries that wait milliseconds, not seconds, so that a test is quick.
fn quick_retries() -> ApplyConfig {
    ApplyConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            jitter: 0.0,
        },
        ..ApplyConfig::default()
    }
}

impl Deployment {
    /// The simulator with generation 1 built through ferry; `store` is in memory unless a
    /// state folder is asked for.
    async fn built(state_folder: bool) -> Self {
        Self::built_with(state_folder, |_| {}).await
    }

    /// [`Deployment::built`] with ferry's Azure settings adjusted first.
    async fn built_with(
        state_folder: bool,
        adjust: impl FnOnce(&mut ferry_arm::AzureSettings),
    ) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let (
            support::AzureWorld {
                spec,
                rules,
                simulator,
                providers,
            },
            azure,
        ) = support::azure_world_with(folder.path(), "operations", adjust).await;
        let store = if state_folder {
            Store::lock_and_open(&StateDir::new(folder.path().join("state")), "test").unwrap()
        } else {
            Store::in_memory(StateFile::default())
        };
        let mut deployment = Deployment {
            spec,
            rules,
            simulator,
            providers,
            store,
            folder,
            azure,
        };
        let first = deployment.plan(&deployment.observe().await);
        let report = deployment.apply(&first, &quick_retries(), &|_| {}).await;
        assert!(report.succeeded(), "{}", report.counts().describe());
        deployment
    }

    fn state_dir(&self) -> StateDir {
        StateDir::new(self.folder.path().join("state"))
    }

    async fn observe(&self) -> Snapshot {
        ferry_observe::observe(
            &self.spec,
            &self.rules,
            &self.store.state,
            &self.providers,
            &ObserveConfig::default(),
        )
        .await
        .unwrap()
    }

    fn plan(&self, snapshot: &Snapshot) -> Plan {
        ferry_plan::plan(&self.spec, snapshot, &self.rules, &PlanConfig::default())
            .unwrap_or_else(|errors| panic!("{errors}"))
    }

    /// Applies `plan`; on success its generation becomes the active one, as the CLI does.
    async fn apply(
        &mut self,
        plan: &Plan,
        config: &ApplyConfig,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> ApplyReport {
        ferry_apply::apply(
            plan,
            &self.providers,
            config,
            &mut self.store,
            &ApplyControl::new(),
            on_event,
        )
        .await
        .unwrap()
    }

    fn cluster_id(&self, generation: u32) -> String {
        self.store
            .state
            .outputs(&format!("aks_cluster.hub@g{generation}").parse().unwrap())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Stops generation 1's API server and returns the failover plan that follows.
    async fn break_and_plan(&self) -> Plan {
        self.simulator.inject(Fault::ApiServerDown {
            cluster: self.cluster_id(1),
            mode: ApiServerDownMode::Refuse,
        });
        let plan = self.plan(&self.observe().await);
        assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
        plan
    }

    /// Plans again from a fresh read and applies until nothing is left for Azure (at most
    /// `rounds` applies), returning the plans it applied.
    async fn converge(&mut self, rounds: usize) -> Vec<Plan> {
        let mut applied = Vec::new();
        for _ in 0..rounds {
            let plan = self.plan(&self.observe().await);
            if azure_steps(&plan).is_empty() && plan.failover.is_none() {
                return applied;
            }
            let report = self.apply(&plan, &quick_retries(), &|_| {}).await;
            assert!(report.succeeded(), "{}", failures(&report));
            applied.push(plan);
        }
        let plan = self.plan(&self.observe().await);
        panic!(
            "no convergence after {rounds} applies; still planned: {:?}",
            azure_steps(&plan)
        );
    }

    /// Every managed disk exists exactly once in the simulator, and none is attached to two
    /// VMs: nothing stateful was lost or duplicated.
    fn check_disks_intact(&self) {
        let state = self.simulator.dump_state();
        let text = state.to_string().to_ascii_lowercase();
        for disk in 0..4 {
            let id_suffix = format!("/providers/microsoft.compute/disks/data100-home{disk}\"");
            assert!(
                text.contains(&id_suffix),
                "disk home{disk} is gone from the simulator: {state:#}"
            );
        }
        let mut holders = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (vm, body) in vms(&state) {
            for data_disk in body["properties"]["storageProfile"]["dataDisks"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = data_disk["managedDisk"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let name = id.rsplit('/').next().unwrap_or_default().to_owned();
                holders.entry(name).or_default().push(vm.clone());
            }
        }
        for (disk, vms) in holders {
            assert!(vms.len() <= 1, "{disk} is attached to {vms:?}");
        }
    }
}

/// Every VM in a simulator dump, by id.
fn vms(state: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    collect_vms(state, &mut found);
    found
}

fn collect_vms(value: &serde_json::Value, found: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(id) = map.get("id").and_then(|id| id.as_str())
                && id
                    .to_ascii_lowercase()
                    .contains("/providers/microsoft.compute/virtualmachines/")
                && map.contains_key("properties")
            {
                found.push((id.to_owned(), value.clone()));
                return;
            }
            for child in map.values() {
                collect_vms(child, found);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_vms(item, found);
            }
        }
        _ => {}
    }
}

fn azure_steps(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|step| AZURE_KINDS.contains(&step.address.kind()))
        .map(|step| step.id.to_string())
        .collect()
}

fn failures(report: &ApplyReport) -> String {
    let failed: Vec<String> = report
        .steps
        .iter()
        .filter_map(|step| match &step.status {
            StepStatus::Failed { error } => Some(format!("{}: {error}", step.id)),
            _ => None,
        })
        .collect();
    format!(
        "{} ({}; storage: {:?})",
        report.counts().describe(),
        failed.join("; "),
        report.storage_error
    )
}

fn step_id(text: &str) -> StepId {
    StepId(text.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_storm_and_server_errors_during_the_failover_are_waited_out() {
    let mut deployment = Deployment::built(false).await;
    let failover = deployment.break_and_plan().await;
    deployment.simulator.inject(Fault::Throttle {
        share: 0.5,
        retry_after_seconds: 1,
        count: Some(8),
    });
    deployment.simulator.inject(Fault::ServerError {
        share: 0.25,
        count: Some(8),
    });
    let report = deployment.apply(&failover, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    // The simulator does not log the answers it makes up, so check the storm was spent
    // during the apply: a client that never retries now gets through every time.
    let mut config = ferry_arm::ArmClientConfig::simulator(
        Url::parse(deployment.simulator.endpoint()).unwrap(),
        deployment.simulator.ca_file().to_path_buf(),
    );
    config.retry.max_retries = 0;
    let client = ferry_arm::ArmClient::new(config).unwrap();
    let group = format!(
        "/subscriptions/{}/resourceGroups/data100-g2",
        deployment
            .spec
            .deployment
            .subscription
            .clone()
            .unwrap_or_default()
    );
    for _ in 0..20 {
        let _: serde_json::Value = client
            .get(&group, ferry_arm::api_version::RESOURCES)
            .await
            .unwrap()
            .value;
    }
    deployment.check_disks_intact();
    assert_eq!(deployment.converge(1).await, Vec::<Plan>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_move_that_ends_failed_stops_there_and_the_next_apply_finishes_the_same_failover() {
    let mut deployment = Deployment::built(false).await;
    let failover = deployment.break_and_plan().await;
    deployment.simulator.inject(Fault::FailOperation {
        method: Some("POST".to_owned()),
        path_contains: "moveResources".to_owned(),
        code: "ResourceMoveFailed".to_owned(),
        message: "the move of the disks was refused by the simulator".to_owned(),
        count: None,
    });
    let report = deployment.apply(&failover, &quick_retries(), &|_| {}).await;
    assert!(!report.succeeded());
    let failed: Vec<String> = report
        .ids(|status| matches!(status, StepStatus::Failed { .. }))
        .into_iter()
        .map(ToString::to_string)
        .collect();
    assert!(!failed.is_empty(), "{}", failures(&report));
    for step in &report.steps {
        if let StepStatus::Failed { error } = &step.status {
            assert!(
                step.id.0.starts_with("disk.home") && step.id.0.ends_with(":move"),
                "only moves fail: {}",
                failures(&report)
            );
            assert!(
                error.contains("ResourceMoveFailed")
                    && error.contains("the move of the disks was refused"),
                "{error}"
            );
        }
    }
    // Nothing that needs a moved disk ran: its attach and the pool's import were skipped.
    assert!(
        matches!(
            report
                .step(&step_id("zfs_pool.home:import"))
                .map(|s| &s.status),
            Some(StepStatus::Skipped { .. })
        ),
        "{}",
        failures(&report)
    );
    deployment.check_disks_intact();

    // The fault clears; the next plan finishes the same failover (generation 2, not 3).
    deployment.simulator.clear_faults();
    deployment.simulator.inject(Fault::ApiServerDown {
        cluster: deployment.cluster_id(1),
        mode: ApiServerDownMode::Refuse,
    });
    let again = deployment.plan(&deployment.observe().await);
    assert_eq!(
        again.failover.as_ref().map(|f| f.to_generation),
        Some(2),
        "{:?}",
        azure_steps(&again)
    );
    for moved in &failed {
        assert!(
            again.steps.iter().any(|step| &step.id.0 == moved),
            "{moved} is planned again: {:?}",
            azure_steps(&again)
        );
    }
    let report = deployment.apply(&again, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    assert_eq!(deployment.store.state.active_generation, 2);
    deployment.check_disks_intact();
    assert_eq!(deployment.converge(1).await, Vec::<Plan>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_never_ends_times_out_naming_the_step_and_is_never_sent_twice() {
    let mut deployment = Deployment::built(true).await;
    let failover = deployment.break_and_plan().await;
    deployment.simulator.inject(Fault::HangOperation {
        method: Some("POST".to_owned()),
        path_contains: "/deallocate".to_owned(),
        count: None,
    });
    let config = ApplyConfig {
        step_timeout: Duration::from_secs(2),
        estimate_multiplier: 0,
        retry: RetryPolicy {
            max_attempts: 2,
            ..quick_retries().retry
        },
        ..ApplyConfig::default()
    };
    let before = deployment.simulator.events().len();
    let report = deployment.apply(&failover, &config, &|_| {}).await;
    assert!(!report.succeeded());
    let fence = step_id("vm.nfs@g1:fence");
    let Some(StepStatus::Failed { error }) = report.step(&fence).map(|s| &s.status) else {
        panic!("the fence should fail: {}", failures(&report));
    };
    assert!(
        error.contains("no result within 2s") && error.contains("raise the step timeout"),
        "{error}"
    );
    // Nothing that must follow the fence ran: the disks stayed on the old VM.
    for disk in 0..4 {
        let detach = step_id(&format!("disk.home{disk}:detach"));
        assert!(
            matches!(
                report.step(&detach).map(|s| &s.status),
                Some(StepStatus::Skipped { .. })
            ),
            "{detach}: {}",
            failures(&report)
        );
    }
    deployment.check_disks_intact();

    // The next apply resumes the recorded operation instead of deallocating again: while the
    // operation still hangs it times out again, and only one deallocation was ever sent.
    deployment.store.release_lock().unwrap();
    let resumed = Store::lock_and_open(&deployment.state_dir(), "test").unwrap();
    assert!(
        resumed.resume.resume_token_of(&fence).is_some(),
        "the journal keeps the fence's operation"
    );
    deployment.store = resumed;
    let again = deployment.plan(&deployment.observe().await);
    assert_eq!(again.failover.as_ref().map(|f| f.to_generation), Some(2));
    let report = deployment.apply(&again, &config, &|_| {}).await;
    assert!(
        matches!(
            report.step(&fence).map(|s| &s.status),
            Some(StepStatus::Failed { .. })
        ),
        "{}",
        failures(&report)
    );
    let events = deployment.simulator.events()[before..].to_vec();
    let deallocations = events
        .iter()
        .filter(|event| {
            event.what == "request" && event.method == "POST" && event.path.ends_with("/deallocate")
        })
        .count();
    assert_eq!(deallocations, 1, "{events:#?}");
    deployment.check_disks_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_flaps_during_the_failover_gives_one_failover_only() {
    let mut deployment = Deployment::built(false).await;
    let old_cluster = deployment.cluster_id(1);
    let down = || Fault::ApiServerDown {
        cluster: old_cluster.clone(),
        mode: ApiServerDownMode::Refuse,
    };
    let up = || Fault::ApiServerUp {
        cluster: old_cluster.clone(),
    };

    // Up, down, up before planning: only a down reading plans a failover.
    deployment.simulator.inject(down());
    deployment.simulator.inject(up());
    assert_eq!(
        deployment.plan(&deployment.observe().await).failover,
        None,
        "a server that is back up is not failed over"
    );
    deployment.simulator.inject(down());
    let snapshot = deployment.observe().await;
    let failover = deployment.plan(&snapshot);
    assert_eq!(failover.failover.as_ref().map(|f| f.to_generation), Some(2));
    let saved = SavedPlan::new(
        &deployment.spec.deployment.name,
        failover.clone(),
        &snapshot,
    );

    // Back up before the apply: a saved plan from the down reading no longer holds.
    deployment.simulator.inject(up());
    let stale = saved.stale(&deployment.observe().await);
    assert!(
        stale
            .iter()
            .any(|change| change.subject.contains("aks_cluster.hub@g1")),
        "{stale:?}"
    );

    // Down again, and flapping up and down while the failover runs.
    deployment.simulator.inject(down());
    let simulator = &deployment.simulator;
    let flaps = std::sync::atomic::AtomicUsize::new(0);
    let on_event = |event: &Event| {
        if let EventKind::StepSucceeded { .. } = event.kind {
            let flap = flaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            simulator.inject(if flap.is_multiple_of(2) { up() } else { down() });
        }
    };
    let report = ferry_apply::apply(
        &failover,
        &deployment.providers,
        &quick_retries(),
        &mut deployment.store,
        &ApplyControl::new(),
        &on_event,
    )
    .await
    .unwrap();
    assert!(report.succeeded(), "{}", failures(&report));
    assert!(flaps.into_inner() > 4);
    deployment.store.state.active_generation = 2;

    // Whether the old server is up or down now, nothing fails over again.
    for fault in [up(), down(), up()] {
        deployment.simulator.inject(fault);
        let plan = deployment.plan(&deployment.observe().await);
        assert_eq!(plan.failover, None, "{:?}", azure_steps(&plan));
        assert_eq!(azure_steps(&plan), Vec::<String>::new());
    }
    deployment.check_disks_intact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_folder_that_disappears_mid_apply_stops_it_and_the_next_apply_resumes() {
    let mut deployment = Deployment::built(true).await;
    let failover = deployment.break_and_plan().await;
    let state_dir = deployment.state_dir();
    let away = deployment.folder.path().join("state-unmounted");
    let moved = std::sync::atomic::AtomicBool::new(false);
    // The folder goes away (an unmounted volume) once the fence is done.
    let on_event = |event: &Event| {
        if let EventKind::StepSucceeded { step, .. } = &event.kind
            && step.0 == "vm.nfs@g1:fence"
            && !moved.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            std::fs::rename(&state_dir.root, &away).unwrap();
        }
    };
    let report = deployment
        .apply(&failover, &quick_retries(), &on_event)
        .await;
    assert!(!report.succeeded());
    // The state and the lock live in the folder that went away: whichever the engine meets
    // first (the state's save after a step, the lock's check before the next) stops it.
    let error = report.storage_error.clone().unwrap_or_default();
    assert!(
        (error.contains("cannot save state file") && error.contains("state.json"))
            || error.contains("is gone or was replaced"),
        "{}",
        failures(&report)
    );
    assert!(report.counts().not_started > 0, "{}", failures(&report));
    deployment.check_disks_intact();

    // The volume comes back; the next apply reads the journal and the world and finishes.
    std::fs::rename(&away, &state_dir.root).unwrap();
    deployment.store.release_lock().unwrap();
    deployment.store = Store::lock_and_open(&state_dir, "test").unwrap();
    let again = deployment.plan(&deployment.observe().await);
    assert_eq!(again.failover.as_ref().map(|f| f.to_generation), Some(2));
    let report = deployment.apply(&again, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    deployment.check_disks_intact();
    assert_eq!(deployment.converge(1).await, Vec::<Plan>::new());
}

/// The requests the simulator refused with `code`, on paths that contain `path_contains`.
fn refusals(events: &[SimEvent], code: &str, path_contains: &str) -> usize {
    events
        .iter()
        .filter(|event| {
            event.what == "request"
                && event.code.as_deref() == Some(code)
                && event
                    .path
                    .to_ascii_lowercase()
                    .contains(&path_contains.to_ascii_lowercase())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_on_the_nfs_vm_and_the_aks_cluster_during_the_failover_is_waited_out() {
    let mut deployment = Deployment::built(false).await;
    let failover = deployment.break_and_plan().await;
    // A VM extension update starts on the old NFS VM just as ferry fences it, and a person
    // changes the cluster in the portal just as ferry writes it; five Azure minutes each.
    for resource in ["data100-nfs-g1", "data100-hub"] {
        deployment.simulator.inject(Fault::AnotherWriter {
            resource: resource.to_owned(),
            seconds: 300,
            after_seconds: 0,
            at_first_write: true,
        });
    }
    let before = deployment.simulator.events().len();
    let report = deployment.apply(&failover, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    let events = deployment.simulator.events()[before..].to_vec();
    assert!(
        refusals(
            &events,
            "ConflictingConcurrentWriteNotAllowed",
            "/data100-nfs-g1"
        ) > 0,
        "the fence met the other writer"
    );
    assert!(
        refusals(&events, "OperationNotAllowed", "/data100-hub") > 0,
        "the cluster's write met the other writer"
    );
    deployment.check_disks_intact();
    assert_eq!(deployment.converge(1).await, Vec::<Plan>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_finishes_under_arms_throttling_at_azures_sizes() {
    let mut deployment = Deployment::built(false).await;
    let failover = deployment.break_and_plan().await;
    deployment
        .simulator
        .set_throttling(Some(ArmThrottling::azure()));
    let before = deployment.simulator.events().len();
    let report = deployment.apply(&failover, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    let events = deployment.simulator.events()[before..].to_vec();
    eprintln!(
        "ARM's limits: {} requests, {} throttled; pacing: {:?}",
        events
            .iter()
            .filter(|event| event.what == "request")
            .count(),
        refusals(&events, "SubscriptionRequestsThrottled", ""),
        deployment.azure.client().pacing_report()
    );
    deployment.check_disks_intact();
    assert_eq!(deployment.converge(1).await, Vec::<Plan>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tiny_buckets_ferry_paces_itself_by_the_remaining_counts() {
    // Ten tokens per bucket and ten back a second, and ferry told those rates.
    let mut deployment = Deployment::built_with(false, |settings| {
        settings.arm.pacing = ferry_arm::PacingSettings {
            reads_per_second: 10.0,
            writes_per_second: 10.0,
            deletes_per_second: 10.0,
            reserve: 2,
            ..ferry_arm::PacingSettings::default()
        };
    })
    .await;
    let failover = deployment.break_and_plan().await;
    deployment
        .simulator
        .set_throttling(Some(ArmThrottling::uniform(10, 10.0)));
    let paced_before = deployment.azure.client().pacing_report();
    let before = deployment.simulator.events().len();
    let report = deployment.apply(&failover, &quick_retries(), &|_| {}).await;
    assert!(report.succeeded(), "{}", failures(&report));
    let events = deployment.simulator.events()[before..].to_vec();
    let paced = deployment.azure.client().pacing_report();
    let throttled = refusals(&events, "SubscriptionRequestsThrottled", "");
    eprintln!(
        "tiny buckets: {} requests, {throttled} throttled; pacing: {} requests, {} held back for {:?}",
        events
            .iter()
            .filter(|event| event.what == "request")
            .count(),
        paced.requests - paced_before.requests,
        paced.delayed - paced_before.delayed,
        paced.total_delay - paced_before.total_delay,
    );
    // The headers were read: ferry held requests back, and saw each 429 the simulator sent.
    assert!(paced.delayed > paced_before.delayed, "{paced:?}");
    assert_eq!(
        (paced.throttled - paced_before.throttled) as usize,
        throttled,
        "{paced:?}"
    );
    deployment.check_disks_intact();
}
