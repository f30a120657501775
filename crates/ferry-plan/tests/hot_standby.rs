//! The hot standby (`[failover] standby = "hot"`): the warm standby, plus a read-only replica
//! of each pool on the standby's own disks. Every plan keeps the replica's disks on the
//! standby's NFS VM and seeds the replica once; a failover promotes it (after a fence of the
//! old primary, or by a hand-over from an old primary that still answers) and moves no disk;
//! the replica is never evidence of where the data serves from, and nothing that still holds
//! the old primary's disks is retired.

mod support;

use std::collections::BTreeSet;

use ferry_core::fields::zfs_pool;
use ferry_core::{Action, Health, InstanceAddress, Observation, Plan, Snapshot, Value};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{PlanConfig, Severity, Verdict};
use ferry_spec::Spec;
use support::{converge, data100_hot, data100_warm};

fn plan_of(spec: &Spec, snapshot: &Snapshot) -> Plan {
    ferry_plan::plan(
        spec,
        snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap_or_else(|errors| panic!("{errors}"))
}

fn plan(snapshot: &Snapshot) -> Plan {
    plan_of(&data100_hot(), snapshot)
}

fn address(text: &str) -> InstanceAddress {
    text.parse().unwrap()
}

fn text(plan: &Plan) -> String {
    render::text(plan, &TextOptions { color: false })
}

fn ids(plan: &Plan, keep: impl Fn(&ferry_core::Step) -> bool) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|step| keep(step))
        .map(|step| step.id.to_string())
        .collect()
}

/// Sets an attribute of a present instance's reading; panics when it is not present, so that a
/// test never passes on a world it did not change.
fn set_attribute(snapshot: &mut Snapshot, instance: &str, name: &str, value: Value) {
    match snapshot.resources.get_mut(&address(instance)) {
        Some(Observation::Present { attributes, .. }) => {
            attributes.insert(name.into(), value);
        }
        other => panic!("{instance} is not present: {other:?}"),
    }
}

fn api_server_down(snapshot: &mut Snapshot) {
    match snapshot.resources.get_mut(&address("aks_cluster.hub@g1")) {
        Some(Observation::Present { health, .. }) => {
            *health = Health::Unhealthy {
                reason: "the API server does not answer".into(),
            }
        }
        other => panic!("aks_cluster.hub@g1 is not present: {other:?}"),
    }
}

/// Generation 1, its standby and the replica, built and converged, as the world reads them:
/// the primary imported on generation 1's host, the replica read-only on generation 2's.
fn hot_world() -> Snapshot {
    let first = plan(&Snapshot::new(0));
    let mut world = converge(&Snapshot::new(0), &first, 1);
    set_attribute(&mut world, "zfs_pool.home", "imported", Value::Bool(true));
    set_attribute(
        &mut world,
        "zfs_pool.home",
        zfs_pool::REPLICATION_ROLE,
        "primary".into(),
    );
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "replica".into(),
    );
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        "imported",
        Value::Bool(true),
    );
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICA_LAG_SECONDS,
        20.into(),
    );
    // What the seed's input said, a step's input only; a read never shows it.
    if let Some(Observation::Present { attributes, .. }) =
        world.resources.get_mut(&address("zfs_pool.home@g2"))
    {
        attributes.remove(zfs_pool::REPLICATE_FROM);
    }
    world
}

/// The primary's host no longer answers: the pool cannot be read, as the provider says then.
fn primary_unreachable(world: &mut Snapshot) {
    world.insert(
        address("zfs_pool.home"),
        Observation::Unknown {
            reason: "ssh to vm.nfs@g1: connection timed out".into(),
        },
    );
}

#[test]
fn the_hot_standby_holds_the_replicas_disks_and_nothing_else_stateful() {
    let standby: Vec<String> = data100_hot()
        .standby_resources()
        .iter()
        .map(ToString::to_string)
        .collect();
    let warm: BTreeSet<String> = data100_warm()
        .standby_resources()
        .iter()
        .map(ToString::to_string)
        .collect();
    let extra: Vec<&String> = standby.iter().filter(|one| !warm.contains(*one)).collect();
    assert_eq!(
        extra,
        [
            "disk.replica0",
            "disk.replica1",
            "disk.replica2",
            "disk.replica3"
        ]
    );
    let pools: Vec<String> = data100_hot()
        .hot_pools()
        .map(|pool| pool.address.to_string())
        .collect();
    assert_eq!(pools, ["zfs_pool.home"]);
    assert_eq!(data100_warm().hot_pools().count(), 0);
}

/// The first apply builds generation 1 with its pool, the standby beside it, the replica's
/// disks on the standby's VM, and seeds the replica from the new pool.
#[test]
fn the_first_plan_builds_the_standby_with_its_replica_and_seeds_it() {
    let plan = plan(&Snapshot::new(0));
    let shown = text(&plan);
    let replica_disks = ids(&plan, |step| {
        step.address.address.name.starts_with("replica")
    });
    assert_eq!(
        replica_disks,
        [
            "disk.replica0:create",
            "disk.replica1:create",
            "disk.replica2:create",
            "disk.replica3:create"
        ],
        "{shown}"
    );
    for step in plan
        .steps
        .iter()
        .filter(|step| step.address.address.name.starts_with("replica"))
    {
        assert_eq!(step.inputs["vm"], "vm.nfs@g2", "{shown}");
    }
    let seed = plan
        .steps
        .iter()
        .find(|step| step.id.to_string() == "zfs_pool.home@g2:create")
        .unwrap_or_else(|| panic!("no seed: {shown}"));
    assert_eq!(
        seed.inputs[zfs_pool::DISKS],
        serde_json::json!([
            "disk.replica0",
            "disk.replica1",
            "disk.replica2",
            "disk.replica3"
        ])
    );
    assert_eq!(seed.inputs[zfs_pool::HOST], "vm.nfs@g2");
    assert_eq!(seed.inputs[zfs_pool::REPLICATE_FROM], "vm.nfs@g1");
    let after: Vec<String> = seed.after.iter().map(ToString::to_string).collect();
    for needed in [
        "zfs_pool.home:create",
        "vm.nfs@g2:create",
        "disk.replica0:create",
    ] {
        assert!(after.iter().any(|id| id == needed), "{needed}: {after:?}");
    }
    assert!(
        seed.reason
            .starts_with("the hot standby, generation 2: the replica of zfs_pool.home"),
        "{}",
        seed.reason
    );
    // The primary's own disks are the serving generation's.
    let home = plan
        .steps
        .iter()
        .find(|step| step.id.to_string() == "disk.home0:create")
        .unwrap();
    assert_eq!(home.inputs["vm"], "vm.nfs@g1");
    insta::assert_snapshot!("hot_first_plan", shown);
}

#[test]
fn a_converged_hot_world_has_no_changes_and_shows_its_replica() {
    let world = hot_world();
    let plan = plan(&world);
    let shown = text(&plan);
    assert!(plan.steps.is_empty(), "{shown}");
    assert_eq!(Verdict::of(&plan).severity(), Severity::Clean, "{shown}");
    let standby = plan.standby.as_ref().unwrap();
    assert!(
        standby
            .instances
            .iter()
            .any(|kept| kept.address == address("zfs_pool.home@g2")
                && kept.upkeep.as_deref()
                    == Some("a read-only replica of the pool, sent an increment every 30s; 20s behind the primary when read")),
        "{shown}"
    );
    // Readiness holds, and its estimate is the promotion's, not the disks' moves.
    let rules = ferry_providers::rule_book();
    let ready =
        ferry_plan::readiness(&data100_hot(), &world, &rules, &PlanConfig::default()).unwrap();
    assert!(ready.ready, "{:?}", ready.blockers);
    // The primary answers today: the failover would hand the pool over and lose nothing.
    assert_eq!(ready.data_loss.and_then(|loss| loss.seconds), Some(0));
    let warm_world = {
        let first = plan_of(&data100_warm(), &Snapshot::new(0));
        converge(&Snapshot::new(0), &first, 1)
    };
    let warm = ferry_plan::readiness(&data100_warm(), &warm_world, &rules, &PlanConfig::default())
        .unwrap();
    assert!(
        ready.recovery_seconds.unwrap() < warm.recovery_seconds.unwrap(),
        "hot {:?}, warm {:?}",
        ready.recovery_seconds,
        warm.recovery_seconds
    );
}

/// Safety invariant 14 of ARCHITECTURE.md, in the plan: with the primary's host silent, it is
/// fenced before the replica is promoted; no disk moves.
#[test]
fn a_hot_failover_with_a_silent_primary_fences_it_then_promotes_the_replica() {
    let mut world = hot_world();
    api_server_down(&mut world);
    primary_unreachable(&mut world);
    let plan = plan(&world);
    let shown = text(&plan);
    assert_eq!(plan.failover.as_ref().unwrap().to_generation, 2, "{shown}");
    let data: Vec<String> = ids(&plan, |step| {
        matches!(
            step.action,
            Action::Fence
                | Action::Detach
                | Action::Move
                | Action::Attach
                | Action::Import
                | Action::Export
                | Action::Promote
        )
    });
    assert_eq!(
        data,
        ["vm.nfs@g1:fence", "zfs_pool.home:promote"],
        "{shown}"
    );
    let promote = plan
        .steps
        .iter()
        .find(|step| step.action == Action::Promote)
        .unwrap();
    assert!(
        promote
            .after
            .iter()
            .any(|id| id.to_string() == "vm.nfs@g1:fence"),
        "{shown}"
    );
    assert_eq!(promote.inputs[zfs_pool::HOST], "vm.nfs@g2");
    assert_eq!(
        promote.inputs["fenced_hosts"],
        serde_json::json!(["vm.nfs@g1"])
    );
    assert!(!promote.inputs.contains_key(zfs_pool::HAND_OVER_FROM));
    // No disk of either side has a step, and the old generation, which still holds the old
    // primary's disks, is not retired.
    assert!(
        plan.steps
            .iter()
            .all(|step| step.address.kind() != ferry_core::Kind::Disk),
        "{shown}"
    );
    for kept in ["vm.nfs@g1", "resource_group.main@g1"] {
        assert!(
            !plan
                .steps
                .iter()
                .any(|step| step.address == address(kept) && step.action == Action::Retire),
            "{kept}: {shown}"
        );
    }
    insta::assert_snapshot!("hot_failover_fenced", shown);
}

/// A planned failover, or an outage of the cluster alone: the primary still answers, so it
/// hands the pool over (a last increment) and nothing is lost; nothing needs fencing.
#[test]
fn a_hot_failover_with_the_primary_answering_hands_the_pool_over() {
    let mut world = hot_world();
    api_server_down(&mut world);
    let plan = plan(&world);
    let shown = text(&plan);
    let promote = plan
        .steps
        .iter()
        .find(|step| step.action == Action::Promote)
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(promote.inputs[zfs_pool::HAND_OVER_FROM], "vm.nfs@g1");
    assert!(
        !plan.steps.iter().any(|step| step.action == Action::Fence),
        "{shown}"
    );
    assert!(
        promote.reason.contains("nothing lost"),
        "{}",
        promote.reason
    );
    assert_eq!(
        plan.data_loss,
        Some(ferry_core::DataLoss {
            seconds: Some(0),
            replica: None
        })
    );
    assert!(
        shown.contains("Data lost: none (the old primary hands its pool over)."),
        "{shown}"
    );
}

/// The replica's lag grows between `ferry plan -o` and `ferry apply PLAN` while nothing
/// changes: the saved failover still applies. (Found when the hot demo's saved failover was
/// refused as stale within seconds: "replica_lag_seconds changed".) A change of role still
/// makes it stale.
#[test]
fn a_saved_hot_failover_is_not_made_stale_by_the_replicas_lag_growing() {
    let mut world = hot_world();
    api_server_down(&mut world);
    let saved = ferry_plan::SavedPlan::new("data100", plan(&world), &world);
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICA_LAG_SECONDS,
        95.into(),
    );
    assert_eq!(saved.stale(&world), Vec::new());
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "primary".into(),
    );
    let stale: Vec<String> = saved
        .stale(&world)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        stale,
        vec!["zfs_pool.home@g2: replication_role changed (present, healthy)".to_owned()]
    );
}

/// A hand-over killed between the standby's role change and its mounts leaves the standby's
/// pool reading primary and the old one a replica: the next plan finishes the promotion (its
/// steps find the role set and go on) rather than refusing a pool that is no replica. (Found
/// by the kill -9 test of the hand-over on real hosts, `tests/tests/data100_hot.rs`.) Two
/// pools that both read primary are refused: ferry never chooses between writable copies.
#[test]
fn a_promotion_killed_half_way_is_finished_and_two_primaries_are_refused() {
    let mut world = hot_world();
    api_server_down(&mut world);
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "primary".into(),
    );
    set_attribute(
        &mut world,
        "zfs_pool.home",
        zfs_pool::REPLICATION_ROLE,
        "replica".into(),
    );
    let plan = plan(&world);
    let shown = text(&plan);
    let promote = plan
        .steps
        .iter()
        .find(|step| step.action == Action::Promote)
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(promote.inputs[zfs_pool::HAND_OVER_FROM], "vm.nfs@g1");
    assert!(
        promote.reason.contains("did not finish"),
        "{}",
        promote.reason
    );

    // The old primary's host no longer answers: fenced first, then finished.
    primary_unreachable(&mut world);
    let plan = self::plan(&world);
    let shown = text(&plan);
    let promote = plan
        .steps
        .iter()
        .find(|step| step.action == Action::Promote)
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(promote.inputs.contains_key("fenced_hosts"), "{shown}");
    assert!(
        ids(&plan, |step| step.action == Action::Fence).contains(&"vm.nfs@g1:fence".to_owned()),
        "{shown}"
    );

    // Both read primary.
    let mut world = hot_world();
    api_server_down(&mut world);
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "primary".into(),
    );
    let refused = ferry_plan::plan(
        &data100_hot(),
        &world,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .expect_err("two primaries");
    insta::assert_snapshot!("hot_two_primaries_refused", refused.to_string());
}

#[test]
fn a_hot_failover_without_a_replica_is_refused_and_readiness_says_so_today() {
    let mut world = hot_world();
    world.insert(address("zfs_pool.home@g2"), Observation::Absent);
    let rules = ferry_providers::rule_book();
    let readiness =
        ferry_plan::readiness(&data100_hot(), &world, &rules, &PlanConfig::default()).unwrap();
    assert!(!readiness.ready);
    let reasons: Vec<String> = readiness.blockers.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("hot_no_replica_readiness", reasons.join("\n"));
    // The ordinary plan seeds it again.
    let plan = plan(&world);
    assert_eq!(
        ids(&plan, |_| true),
        ["zfs_pool.home@g2:create"],
        "{}",
        text(&plan)
    );

    // A replica the failover cannot read is no better.
    world.insert(
        address("zfs_pool.home@g2"),
        Observation::Unknown {
            reason: "ssh to vm.nfs@g2: connection refused".into(),
        },
    );
    api_server_down(&mut world);
    let refused = ferry_plan::plan(&data100_hot(), &world, &rules, &PlanConfig::default())
        .expect_err("a failover with no readable replica");
    assert!(refused.to_string().contains("cannot be read"), "{refused}");
}

#[test]
fn readiness_is_lost_when_the_replica_lags_beyond_its_maximum() {
    let mut world = hot_world();
    let rules = ferry_providers::rule_book();
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICA_LAG_SECONDS,
        61.into(),
    );
    let readiness =
        ferry_plan::readiness(&data100_hot(), &world, &rules, &PlanConfig::default()).unwrap();
    assert!(!readiness.ready);
    let reasons: Vec<String> = readiness.blockers.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "zfs_pool.home@g2: the replica lags 1m 01s behind the primary, more than replica_max_lag (1m): a failover now would lose up to that"
        ]
    );
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICA_LAG_SECONDS,
        60.into(),
    );
    let readiness =
        ferry_plan::readiness(&data100_hot(), &world, &rules, &PlanConfig::default()).unwrap();
    assert!(readiness.ready, "{:?}", readiness.blockers);
}

/// Safety invariant 11 of ARCHITECTURE.md, for the hot standby: its replica's disks on
/// generation 2 are no evidence that the data moved there, with the state lost or not.
#[test]
fn the_replica_is_no_evidence_of_a_failover() {
    let world = hot_world();
    let rules = ferry_providers::rule_book();
    let mut lost = world.clone();
    lost.active_generation = 0;
    let reconstruction =
        ferry_plan::world::reconstruct(&lost, &rules, data100_hot().standby_resources()).unwrap();
    assert_eq!(reconstruction.active_generation, 1);
    assert!(reconstruction.failover_in_progress.is_none());
    // Without the spec's word on which disks are the standby's, the same world reads as a
    // failover under way: the replica's disks are on generation 2.
    let blind = ferry_plan::world::reconstruct(&lost, &rules, &BTreeSet::new()).unwrap();
    assert!(blind.failover_in_progress.is_some(), "{blind:?}");
    let plan = plan(&lost);
    assert!(plan.failover.is_none(), "{}", text(&plan));
}

/// A pool in the replica's place that is not a replica is never seeded over or promoted.
#[test]
fn a_pool_in_the_replicas_place_that_is_no_replica_is_left_alone() {
    let mut world = hot_world();
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "primary".into(),
    );
    let plan = plan(&world);
    assert!(plan.steps.is_empty(), "{}", text(&plan));
    assert!(
        plan.notes
            .iter()
            .any(|note| note
                .starts_with("zfs_pool.home@g2: the hot standby's pool reads as a primary")),
        "{:?}",
        plan.notes
    );
    api_server_down(&mut world);
    let refused = ferry_plan::plan(
        &data100_hot(),
        &world,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .expect_err("no promotion of a pool that is no replica");
    assert!(
        refused.to_string().contains("two writable copies"),
        "{refused}"
    );
    // Nor of one whose role is no role of a replication at all.
    set_attribute(
        &mut world,
        "zfs_pool.home@g2",
        zfs_pool::REPLICATION_ROLE,
        "something".into(),
    );
    let refused = ferry_plan::plan(
        &data100_hot(),
        &world,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .expect_err("no promotion of a pool that is no replica");
    assert!(refused.to_string().contains("is no replica"), "{refused}");
}
