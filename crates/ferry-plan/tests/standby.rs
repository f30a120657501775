//! The warm standby (`[failover] standby = "warm"`): every plan keeps the generation after the
//! serving one built and ready, a failover finds it there and only moves the data, runs what
//! needs it and repoints, and nothing about the standby is taken for evidence of a failover.

mod support;

use std::collections::BTreeSet;

use ferry_core::{Action, Health, InstanceAddress, Observation, Plan, Snapshot, Value};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{FailoverRequest, PlanConfig, Severity, Verdict};
use ferry_spec::Spec;
use support::{converge, data100, data100_warm};

fn plan_of(spec: &Spec, snapshot: &Snapshot, config: &PlanConfig) -> Plan {
    ferry_plan::plan(spec, snapshot, &ferry_providers::rule_book(), config)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

fn plan(snapshot: &Snapshot) -> Plan {
    plan_of(&data100_warm(), snapshot, &PlanConfig::default())
}

fn address(text: &str) -> InstanceAddress {
    text.parse().unwrap()
}

fn text(plan: &Plan) -> String {
    render::text(plan, &TextOptions { color: false })
}

fn generation_of(plan: &Plan, generation: u32) -> BTreeSet<String> {
    plan.steps
        .iter()
        .filter(|step| step.address.generation == Some(generation))
        .map(|step| step.id.to_string())
        .collect()
}

/// Generation 1 and its standby, built and converged.
fn warm_world() -> Snapshot {
    let first = plan(&Snapshot::new(0));
    converge(&Snapshot::new(0), &first, 1)
}

/// The warm data100 spec with its service.toml changed by `edit`.
fn warm_with_service(edit: impl Fn(String) -> String) -> Spec {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/data100/warm");
    let read = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap();
    let service = edit(read("service.toml"));
    let (main, azure, storage) = (read("main.toml"), read("azure.toml"), read("storage.toml"));
    support::spec(&[
        ("main.toml", &main),
        ("azure.toml", &azure),
        ("storage.toml", &storage),
        ("service.toml", &service),
    ])
}

fn api_server_down(snapshot: &mut Snapshot) {
    api_server_down_at(snapshot, "aks_cluster.hub@g1");
}

/// Makes a present cluster's API server stop answering; panics when it is not present, so
/// that a test never passes on a world it did not change.
fn api_server_down_at(snapshot: &mut Snapshot, instance: &str) {
    match snapshot.resources.get_mut(&address(instance)) {
        Some(Observation::Present { health, .. }) => {
            *health = Health::Unhealthy {
                reason: "the API server does not answer".into(),
            }
        }
        other => panic!("{instance} is not present: {other:?}"),
    }
}

/// Sets an attribute of a present instance's reading; panics when it is not present.
fn set_attribute(snapshot: &mut Snapshot, instance: &str, name: &str, value: Value) {
    match snapshot.resources.get_mut(&address(instance)) {
        Some(Observation::Present { attributes, .. }) => {
            attributes.insert(name.into(), value);
        }
        other => panic!("{instance} is not present: {other:?}"),
    }
}

#[test]
fn the_standby_is_what_needs_no_data_and_the_hooks_marked_for_it() {
    let spec = data100_warm();
    let standby: Vec<String> = spec
        .standby_resources()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        standby,
        [
            "resource_group.main",
            "vnet.main",
            "public_ip.ingress",
            "public_ip.nfs",
            "vm.nfs",
            "aks_cluster.hub",
            "hook.prod_hub",
            "hook.staging_hub",
        ]
    );
    // The cold spec has none, and plans none.
    assert!(data100().standby_resources().is_empty());
    let cold = plan_of(&data100(), &Snapshot::new(0), &PlanConfig::default());
    assert!(cold.standby.is_none());
    assert!(generation_of(&cold, 2).is_empty());
}

/// The first apply builds generation 1 and the standby beside it; the standby's steps wait
/// only for their own generation's, so that it is built in parallel, not after.
#[test]
fn the_first_plan_builds_the_standby_beside_generation_1_in_parallel() {
    let plan = plan(&Snapshot::new(0));
    let shown = text(&plan);
    let standby = plan.standby.as_ref().expect("a standby");
    assert_eq!(standby.generation, 2, "{shown}");
    assert_eq!(
        generation_of(&plan, 2),
        [
            "resource_group.main@g2:create",
            "vnet.main@g2:create",
            "public_ip.ingress@g2:create",
            "public_ip.nfs@g2:create",
            "vm.nfs@g2:create",
            "aks_cluster.hub@g2:create",
            "hook.prod_hub@g2:run",
            "hook.staging_hub@g2:run",
        ]
        .map(str::to_owned)
        .into_iter()
        .collect(),
        "{shown}"
    );
    for step in plan
        .steps
        .iter()
        .filter(|step| step.address.generation == Some(2))
    {
        for before in &step.after {
            assert!(
                before.to_string().contains("@g2:"),
                "{} waits for {before}:\n{shown}",
                step.id
            );
        }
        assert!(
            step.reason.starts_with("the warm standby, generation 2: "),
            "{}",
            step.reason
        );
    }
    // Nothing of the data is in the standby, and generation 1 is converged as before.
    assert!(!shown.contains("hook.staging_active@g2"), "{shown}");
    assert!(
        plan.steps
            .iter()
            .any(|step| step.id.to_string() == "zfs_pool.home:create")
    );
    insta::assert_snapshot!(
        shown[shown.find("Standby:").unwrap()..].to_owned(),
        @r"
    Standby: generation 2 (8 resources), built ahead and kept ready for a failover.
      running and billed while it waits:
        public_ip.ingress@g2  a Standard static public IP
        public_ip.nfs@g2      a Standard static public IP
        vm.nfs@g2             a running Standard_E8s_v5 VM
        aks_cluster.hub@g2    3 nodes of Standard_D4s_v5
      costing nothing worth naming: resource_group.main@g2, vnet.main@g2, hook.prod_hub@g2, hook.staging_hub@g2
    "
    );
}

#[test]
fn a_converged_world_with_its_standby_has_no_changes() {
    let plan = plan(&warm_world());
    let shown = text(&plan);
    assert!(plan.steps.is_empty(), "{shown}");
    assert_eq!(Verdict::of(&plan).severity(), Severity::Clean, "{shown}");
    assert_eq!(plan.standby.as_ref().unwrap().generation, 2);
}

/// The failover onto a built standby creates nothing the standby has: it moves the data,
/// activates the hubs and repoints the names. Its time to recovery counts the names' TTL.
#[test]
fn a_failover_onto_the_standby_only_moves_activates_and_repoints() {
    let mut world = warm_world();
    api_server_down(&mut world);
    let warm = plan(&world);
    let shown = text(&warm);
    assert!(warm.failover.is_some(), "{shown}");
    assert!(
        !warm.steps.iter().any(|step| step.action == Action::Create),
        "{shown}"
    );
    let runs: Vec<String> = warm
        .steps
        .iter()
        .filter(|step| step.action == Action::Run)
        .map(|step| step.id.to_string())
        .collect();
    assert_eq!(
        runs,
        ["hook.staging_active@g2:run", "hook.prod_active@g2:run"],
        "{shown}"
    );
    // No standby is planned within a failover: the next apply builds generation 3's.
    assert!(warm.standby.is_none());
    assert!(generation_of(&warm, 3).is_empty(), "{shown}");
    assert!(
        warm.notes.iter().any(|note| note
            == "the warm standby: generation 3 is built by the first apply after this failover, once generation 2 serves"),
        "{shown}"
    );
    // The TTL of the repointed name is part of the time to recovery.
    let cached = warm.recovery_cached.as_ref().expect("a cached answer");
    assert_eq!(cached.address, address("dns_record.prod"));
    assert_eq!(cached.seconds, 300);
    let last_update = last_finish_of(&warm, "dns_record.prod:update");
    assert_eq!(warm.recovery_seconds, Some(last_update + 300), "{shown}");
    assert!(
        shown.contains("(the service is back once resolvers' cached answers for dns_record.prod expire, 5m after its update)"),
        "{shown}"
    );

    // The same outage with a cold standby builds everything first: the warm one is faster.
    let mut cold_world = converge(
        &Snapshot::new(0),
        &plan_of(&data100(), &Snapshot::new(0), &PlanConfig::default()),
        1,
    );
    api_server_down(&mut cold_world);
    let cold = plan_of(&data100(), &cold_world, &PlanConfig::default());
    assert!(
        warm.recovery_seconds.unwrap() * 2 < cold.recovery_seconds.unwrap(),
        "warm {:?}, cold {:?}",
        warm.recovery_seconds,
        cold.recovery_seconds
    );

    // Once applied, generation 2 serves and the next plan builds generation 3's standby.
    let mut after = converge(&world, &warm, 2);
    // As the observer reads it: the standby generation's instances are absent.
    for resource in data100_warm().standby_resources() {
        after.insert(resource.at(Some(3)), Observation::Absent);
    }
    let next = plan(&after);
    let shown = text(&next);
    assert_eq!(next.standby.as_ref().unwrap().generation, 3, "{shown}");
    assert_eq!(generation_of(&next, 3).len(), 8, "{shown}");
    assert!(next.failover.is_none(), "{shown}");
}

/// When the step ends, from the plan's estimates (the timeline's rule).
fn last_finish_of(plan: &Plan, id: &str) -> u64 {
    let starts = ferry_plan::order::earliest_starts(plan);
    let step = plan
        .steps
        .iter()
        .find(|step| step.id.to_string() == id)
        .unwrap_or_else(|| panic!("no step {id}"));
    starts[&step.id] + step.estimate_seconds
}

/// Safety invariant 3 of ARCHITECTURE.md, for the standby: an instance it cannot read, or did
/// not read, is never created again, and the plan is never "no changes".
#[test]
fn nothing_is_created_in_the_standby_from_what_ferry_does_not_know() {
    let mut world = warm_world();
    world.insert(
        address("aks_cluster.hub@g2"),
        Observation::Unknown {
            reason: "ARM answered 503".into(),
        },
    );
    world.resources.remove(&address("vm.nfs@g2"));
    let plan = plan(&world);
    let shown = text(&plan);
    assert!(plan.steps.is_empty(), "{shown}");
    assert_ne!(Verdict::of(&plan).severity(), Severity::Clean, "{shown}");
    let unknown: Vec<String> = plan
        .unknown
        .iter()
        .map(|reading| reading.address.to_string())
        .collect();
    assert_eq!(unknown, ["vm.nfs@g2", "aks_cluster.hub@g2"], "{shown}");
    // The hooks that need the unknown cluster are held back, with a note that says why.
    assert!(
        plan.notes
            .iter()
            .any(|note| note.starts_with("aks_cluster.hub@g2: not planned")),
        "{shown}"
    );
}

/// What drifted in the standby is repaired, and a standby VM someone stopped is started
/// again: it holds no data, so invariant 11's rule on starting VMs does not forbid it.
#[test]
fn a_stopped_standby_vm_is_started_and_an_unhealthy_standby_is_a_warning() {
    let mut world = warm_world();
    set_attribute(
        &mut world,
        "vm.nfs@g2",
        "power_state",
        Value::from("deallocated"),
    );
    api_server_down_at(&mut world, "aks_cluster.hub@g2");
    let plan = plan(&world);
    let shown = text(&plan);
    let ids: Vec<String> = plan.steps.iter().map(|step| step.id.to_string()).collect();
    assert_eq!(ids, ["vm.nfs@g2:update"], "{shown}");
    let warnings: Vec<String> = plan
        .warnings
        .iter()
        .map(|warning| format!("{}: {}", warning.address, warning.reason))
        .collect();
    assert_eq!(
        warnings,
        ["aks_cluster.hub@g2: unhealthy: the API server does not answer"],
        "{shown}"
    );
    // The serving generation's cluster is what triggers a failover, not the standby's.
    assert!(plan.failover.is_none(), "{shown}");
}

/// Safety invariant 11 of ARCHITECTURE.md: the standby is no evidence. With the state lost
/// and the serving NFS VM deallocated (by hand, or by Azure), the world shows generation 2
/// present beside a fenced holder, which without a standby means a failover had started;
/// with the standby it does not, and no failover is finished that never began.
#[test]
fn a_lost_state_with_a_fenced_holder_is_not_read_as_a_failover_because_of_the_standby() {
    let mut world = warm_world();
    set_attribute(
        &mut world,
        "vm.nfs@g1",
        "power_state",
        Value::from("deallocated"),
    );
    world.active_generation = 0;
    let reconstruction = ferry_plan::world::reconstruct(
        &world,
        &ferry_providers::rule_book(),
        data100_warm().standby_resources(),
    )
    .unwrap();
    assert_eq!(reconstruction.active_generation, 1);
    assert_eq!(reconstruction.failover_in_progress, None);
    // Without the standby's list, the same world reads as a failover under way.
    let cold =
        ferry_plan::world::reconstruct(&world, &ferry_providers::rule_book(), &BTreeSet::new())
            .unwrap();
    assert!(cold.failover_in_progress.is_some());
    // And the plan does not fail over on its own: the trigger is healthy.
    let plan = plan_of(
        &data100_warm(),
        &world,
        &PlanConfig {
            failover: FailoverRequest::Policy,
            ..PlanConfig::default()
        },
    );
    assert!(plan.failover.is_none(), "{}", text(&plan));
}

/// A hook in the standby reruns when its inputs change, as any hook: here the standby's
/// ingress address changed (the IP was recreated).
#[test]
fn a_standby_hook_runs_again_when_its_inputs_change() {
    let mut world = warm_world();
    set_attribute(
        &mut world,
        "hook.staging_hub@g2",
        "env",
        serde_json::json!({"INGRESS_IP": "10.0.0.9"}),
    );
    let plan = plan(&world);
    let ids: Vec<String> = plan.steps.iter().map(|step| step.id.to_string()).collect();
    assert_eq!(ids, ["hook.staging_hub@g2:run"], "{}", text(&plan));
}

/// The standby's own cluster is dead too when the failover comes: the failover builds it
/// again before the data moves onto it, and the idle hubs on it are deployed again, rather
/// than moving the service onto a cluster that cannot serve. On an ordinary day the same
/// reading is a warning and makes the readiness's time to recovery honest.
#[test]
fn a_failover_rebuilds_an_unhealthy_standby_before_moving_onto_it() {
    let mut world = warm_world();
    api_server_down(&mut world);
    api_server_down_at(&mut world, "aks_cluster.hub@g2");
    let plan = plan(&world);
    let shown = text(&plan);
    let replaced: Vec<&ferry_core::Step> = plan
        .steps
        .iter()
        .filter(|step| step.action == Action::Replace)
        .collect();
    assert_eq!(replaced.len(), 1, "{shown}");
    assert_eq!(replaced[0].address, address("aks_cluster.hub@g2"));
    assert_eq!(
        replaced[0].reason,
        "it reads unhealthy (the API server does not answer): built again before the service moves onto it"
    );
    let runs: BTreeSet<String> = plan
        .steps
        .iter()
        .filter(|step| step.action == Action::Run)
        .map(|step| step.id.to_string())
        .collect();
    for hook in [
        "hook.staging_hub@g2:run",
        "hook.prod_hub@g2:run",
        "hook.staging_active@g2:run",
        "hook.prod_active@g2:run",
    ] {
        assert!(runs.contains(hook), "{hook} is not run:\n{shown}");
    }
    let activation = plan
        .steps
        .iter()
        .find(|step| step.id.to_string() == "hook.staging_hub@g2:run")
        .unwrap();
    assert!(
        activation
            .after
            .iter()
            .any(|id| id.to_string() == "aks_cluster.hub@g2:replace"),
        "{shown}"
    );
}

/// A record whose update waits out its old TTL itself (`wait_for_ttl = true`) has the TTL in
/// its step's estimate already: the time to recovery counts it once, not again as a cache.
#[test]
fn a_ttl_the_update_waits_out_itself_is_counted_once() {
    let waiting = warm_with_service(|service| {
        let ttl = "ttl = \"${var.dns_ttl}\"\n";
        assert_eq!(service.matches(ttl).count(), 2);
        service.replace(ttl, &format!("{ttl}wait_for_ttl = true\n"))
    });
    let built = plan_of(&waiting, &Snapshot::new(0), &PlanConfig::default());
    let mut world = converge(&Snapshot::new(0), &built, 1);
    api_server_down(&mut world);
    let failover = plan_of(&waiting, &world, &PlanConfig::default());
    let shown = text(&failover);
    assert!(failover.recovery_cached.is_none(), "{shown}");
    let update = last_finish_of(&failover, "dns_record.prod:update");
    let check = last_finish_of(&failover, "check.prod_tls:wait");
    assert_eq!(
        failover.recovery_seconds,
        Some(update.max(check)),
        "{shown}"
    );
    // Both records' updates wait their TTL on the critical path (staging's too): 19m 04s, not
    // 24m 04s with the TTL counted a second time.
    assert_eq!(failover.recovery_seconds, Some(19 * 60 + 4), "{shown}");
}

/// Failover readiness holds the standby to its promise: with part of it missing (deleted
/// behind ferry's back, or not built yet), the failover could still be made, but only after
/// building what is missing, so readiness is lost and says what and how long, where the
/// ordinary day's `ferry plan` and `ferry watch` show it.
#[test]
fn readiness_is_lost_while_the_standby_is_not_ready() {
    let mut world = warm_world();
    let spec = data100_warm();
    let rules = ferry_providers::rule_book();
    let ready = ferry_plan::readiness(&spec, &world, &rules, &PlanConfig::default()).unwrap();
    assert!(ready.ready, "{:?}", ready.blockers);
    assert_eq!(ready.recovery_seconds, Some(13 * 60 + 34));

    world.insert(address("aks_cluster.hub@g2"), Observation::Absent);
    let lost = ferry_plan::readiness(&spec, &world, &rules, &PlanConfig::default()).unwrap();
    assert!(!lost.ready);
    let reasons: Vec<String> = lost.blockers.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "the warm standby, generation 2, is not ready: the failover would first create aks_cluster.hub@g2, run hook.prod_hub@g2, run hook.staging_hub@g2 (3 of its 8 resources), and its estimated time to recovery is 29m 44s"
        ]
    );
    // The cold spec has no standby to hold to anything.
    let cold_world = converge(
        &Snapshot::new(0),
        &plan_of(&data100(), &Snapshot::new(0), &PlanConfig::default()),
        1,
    );
    let cold = ferry_plan::readiness(&data100(), &cold_world, &rules, &PlanConfig::default());
    assert!(cold.unwrap().ready);
}

/// What the generation after the serving one holds beyond the standby costs without a
/// purpose: the spec turned cold retires the whole standby, a hook no longer marked
/// `standby = true` has its standby run forgotten, and nothing of the serving generation is
/// touched.
#[test]
fn what_is_no_longer_the_standby_is_retired() {
    let world = warm_world();
    let cold = plan_of(&data100(), &world, &PlanConfig::default());
    let shown = text(&cold);
    let retired: BTreeSet<String> = cold
        .steps
        .iter()
        .filter(|step| step.action == Action::Retire)
        .map(|step| step.address.to_string())
        .collect();
    assert_eq!(
        retired,
        data100_warm()
            .standby_resources()
            .iter()
            .map(|resource| resource.at(Some(2)).to_string())
            .collect(),
        "{shown}"
    );
    assert!(cold.standby.is_none());
    assert!(
        cold.steps
            .iter()
            .all(|step| step.address.generation != Some(1) || step.action != Action::Retire),
        "{shown}"
    );
    let reason = &cold
        .steps
        .iter()
        .find(|step| step.address == address("vm.nfs@g2"))
        .unwrap()
        .reason;
    assert_eq!(
        reason,
        "generation 2 is no warm standby (the spec keeps none) and nothing serves from it: retired"
    );

    // Warm still, with prod's idle deploy no longer in the standby.
    let narrower = warm_with_service(|service| {
        let service = service.replacen(
            "HUB_HOST = \"hub.${var.domain}\" }\nstandby = true\n",
            "HUB_HOST = \"hub.${var.domain}\" }\n",
            1,
        );
        assert_eq!(service.matches("\nstandby = true\n").count(), 1);
        service
    });
    let plan = plan_of(&narrower, &world, &PlanConfig::default());
    let ids: Vec<String> = plan.steps.iter().map(|step| step.id.to_string()).collect();
    assert_eq!(ids, ["hook.prod_hub@g2:retire"], "{}", text(&plan));
    assert_eq!(plan.standby.as_ref().unwrap().instances.len(), 7);
}
