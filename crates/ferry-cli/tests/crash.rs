//! Crash-safe resume (safety invariant 9 of ARCHITECTURE.md): a real `ferry apply` of the data100 failover on the
//! simulated world is killed with SIGKILL at points found by watching its journal, then the
//! documented recovery runs (`ferry force-unlock` of the dead holder's lock, `ferry apply`
//! again). Each case checks that the apply converges (`ferry plan --detailed-exitcode` exits
//! 0), that no step the journal recorded as finished ran again, and that every disk was
//! detached before it was attached and the pool imported only after the fence.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Scratch, event, finished_ok, step};

/// A scratch copy of `spec` (specs/data100, or its warm variant with generation 2 built as
/// the standby) with generation 1 built and its API server broken.
fn built_and_broken(spec: &str) -> Scratch {
    let scratch = Scratch::with_spec(spec);
    scratch.build();
    scratch.break_api_server(1);
    scratch
}

/// Where to kill: a test on the records the killed apply has journaled so far.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the apply's start record, before any step finished.
    AtStart,
    /// Once this step started (it is in flight).
    Started(&'static str),
    /// Once this step finished.
    Finished(&'static str),
    /// Once this many steps whose id ends with the suffix finished.
    FinishedCount(&'static str, usize),
}

impl KillPoint {
    fn reached(self, records: &[Value]) -> bool {
        match self {
            KillPoint::AtStart => records.iter().any(|r| event(r) == "apply_started"),
            KillPoint::Started(id) => records
                .iter()
                .any(|r| event(r) == "step_started" && step(r) == id),
            KillPoint::Finished(id) => records.iter().any(|r| finished_ok(r) && step(r) == id),
            KillPoint::FinishedCount(suffix, count) => {
                records
                    .iter()
                    .filter(|r| finished_ok(r) && step(r).ends_with(suffix))
                    .count()
                    >= count
            }
        }
    }
}

/// A disk is attached only to a VM of the generation whose resource group holds it: a world
/// where that fails has a disk attached before its move, the road to two attachments.
fn check_world(world: &Value, when: &str) {
    for (instance, attributes) in world["instances"].as_object().unwrap() {
        if !instance.starts_with("disk.") {
            continue;
        }
        if let Some(vm) = attributes["vm"].as_str() {
            let generation = vm.rsplit_once('@').unwrap().1;
            let group = attributes["resource_group"].as_str().unwrap_or_default();
            assert!(
                group.ends_with(&format!("@{generation}")),
                "{when}: {instance} is attached to {vm} while in {group}"
            );
        }
    }
}

/// Why the killed apply was a failover, and what the old generation reads after the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Story {
    /// Generation 1's API server is down, and stays down.
    Outage,
    /// It comes back while nobody runs ferry: the failover must still be finished.
    OutageThenRecovery,
    /// Every trigger reads healthy; the operator asked for `--failover`, and resumes with a
    /// plain `ferry apply`.
    Planned,
}

/// Kills a failover apply at `point`, recovers as an operator would, and checks the outcome.
fn kill_and_resume(point: KillPoint) {
    kill_and_resume_in(Story::Outage, point);
}

fn kill_and_resume_in(story: Story, point: KillPoint) {
    kill_and_resume_of("specs/data100", story, point);
}

/// The same onto a warm standby: the failover has no creates, only moves, activations and
/// repointing, and its kill points are among those.
fn kill_and_resume_warm(story: Story, point: KillPoint) {
    kill_and_resume_of("specs/data100/warm", story, point);
}

/// The same onto a hot standby: the failover promotes the replica and moves no disk; the
/// apply after it is the failback, which re-seats the old primary's disks on the next standby.
fn kill_and_resume_hot(story: Story, point: KillPoint) {
    kill_and_resume_of("specs/data100/hot", story, point);
}

fn kill_and_resume_of(spec: &str, story: Story, point: KillPoint) {
    let hot = spec.ends_with("hot");
    let warm = spec.ends_with("warm") || hot;
    let scratch = built_and_broken(spec);
    if story == Story::Planned {
        scratch.mend_api_server(1);
    }
    let before = scratch.journal().len();
    let mut arguments = vec![
        "apply",
        "data100",
        "--world",
        "world.json",
        "--world-time-scale",
        "0.002",
        "--auto-approve",
    ];
    if story == Story::Planned {
        arguments.push("--failover");
    }
    let mut child = scratch
        .command(&arguments)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let records = scratch.journal();
        if point.reached(&records[before.min(records.len())..]) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{point:?}: the apply ended ({status}) before the kill point was reached");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{point:?}: not reached"
        );
        // Checked while the apply runs, not only at the end.
        check_world(&scratch.world(), &format!("{point:?}, running"));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "{point:?}: the apply must still run when it is killed"
    );
    child.kill().unwrap(); // SIGKILL: no handler, no cleanup.
    child.wait().unwrap();
    let killed_records = scratch.journal();
    let killed_world = scratch.world();
    check_world(&killed_world, &format!("{point:?}, killed"));
    if story == Story::OutageThenRecovery {
        scratch.mend_api_server(1);
    }

    // The dead apply's lock is reported stale, never taken over silently.
    let refused = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(refused.code, 1, "{point:?}: {}", refused.stderr);
    assert!(
        refused.stderr.contains("holds a stale lock") && refused.stderr.contains("no longer runs"),
        "{point:?}: {}",
        refused.stderr
    );
    let lock = support::read_json(&scratch.lock_path());
    let unlock = scratch.ferry(&["force-unlock", lock["id"].as_str().unwrap(), "data100"]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);

    let resumed = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        "--timeline",
        "applied.svg",
    ]);
    assert_eq!(
        resumed.code, 0,
        "{point:?}: the resumed apply failed:\n{}",
        resumed.stderr
    );
    // The picture of what happened holds both applies, the resume marked.
    let drawn = std::fs::read_to_string(scratch.path().join("applied.svg")).unwrap();
    assert!(
        drawn.contains(">apply started<") && drawn.contains(">apply 2 resumed<"),
        "{point:?}: {drawn}"
    );
    let journaled = scratch.journal().len();
    if warm {
        // The failover plans no standby of its own: the next apply builds generation 3's
        // (and, hot, re-seats the old primary's disks on it: the failback).
        assert!(
            !scratch.world()["instances"]
                .as_object()
                .unwrap()
                .keys()
                .any(|instance| instance.ends_with("@g3")),
            "{point:?}: a standby was built within the failover"
        );
        let standby = scratch.ferry(&[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--auto-approve",
        ]);
        assert_eq!(standby.code, 0, "{point:?}: {}", standby.stderr);
        assert!(
            standby.stderr.contains("Generation 2 serves."),
            "{point:?}: {}",
            standby.stderr
        );
    }
    let settled = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        settled.code, 0,
        "{point:?}: changes are left after the resume:\n{}",
        settled.stderr
    );

    let world = scratch.world();
    check_world(&world, &format!("{point:?}, converged"));
    // Hot: the replica's disks serve on generation 2, the pool's own were re-seated on the
    // next standby by the failback; otherwise the failover moved the pool's own.
    let (serving, serving_on, standby_on) = if hot {
        ("replica", "vm.nfs@g2", Some(("home", "vm.nfs@g3")))
    } else {
        ("home", "vm.nfs@g2", None)
    };
    for disk in 0..4 {
        let attributes = &world["instances"][format!("disk.{serving}{disk}")];
        assert_eq!(
            attributes["vm"], serving_on,
            "{point:?}: disk.{serving}{disk}"
        );
        let group = format!(
            "resource_group.main@{}",
            serving_on.rsplit_once('@').unwrap().1
        );
        assert_eq!(attributes["resource_group"], group.as_str());
    }
    if let Some((side, on)) = standby_on {
        for disk in 0..4 {
            assert_eq!(
                world["instances"][format!("disk.{side}{disk}")]["vm"],
                on,
                "{point:?}: disk.{side}{disk}"
            );
        }
        assert_eq!(
            world["instances"]["zfs_pool.home"]["replication_role"],
            "primary"
        );
        assert_eq!(
            world["instances"]["zfs_pool.home@g3"]["replication_role"],
            "replica"
        );
    }
    assert_eq!(world["instances"]["zfs_pool.home"]["host"], "vm.nfs@g2");
    assert_eq!(scratch.state()["active_generation"], 2);

    check_journal(
        point,
        &scratch.journal()[before..journaled],
        killed_records.len() - before,
        &killed_world,
        hot,
    );
}

/// Whether the world the killed apply left already shows the effect of `step` (a step that
/// started and was killed before its end was journaled may or may not have taken effect; the
/// next plan is made from the world, so such a step is then rightly not planned again).
fn effect_in_world(step: &str, world: &Value) -> bool {
    let Some((instance, action)) = step.split_once(':') else {
        return false;
    };
    let attributes = &world["instances"][instance];
    match action {
        "detach" => attributes["vm"].is_null(),
        "move" => attributes["resource_group"] == "resource_group.main@g2",
        "attach" => attributes["vm"] == "vm.nfs@g2",
        "fence" => attributes["power_state"] == "deallocated" || attributes.is_null(),
        _ => false,
    }
}

/// The journal of the failover (the killed apply and the resumes): nothing finished runs
/// again, and the order of the moves is safe across the crash.
fn check_journal(
    point: KillPoint,
    records: &[Value],
    killed_len: usize,
    killed_world: &Value,
    hot: bool,
) {
    let mut finished: BTreeSet<&str> = BTreeSet::new();
    let mut finished_at: BTreeMap<&str, usize> = BTreeMap::new();
    let mut started_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (position, record) in records.iter().enumerate() {
        match event(record) {
            "step_started" => {
                assert!(
                    !finished.contains(step(record)),
                    "{point:?}: {} ran again after the journal recorded it finished",
                    step(record)
                );
                started_at.entry(step(record)).or_insert(position);
            }
            "step_finished" if finished_ok(record) => {
                finished.insert(step(record));
                finished_at.entry(step(record)).or_insert(position);
            }
            _ => {}
        }
    }
    let before = |first: &str, then: &str| {
        if let Some(&start) = started_at.get(then) {
            let done = finished_at.get(first).copied();
            let killed_after_effect = start >= killed_len && effect_in_world(first, killed_world);
            assert!(
                done.is_some_and(|done| done < start) || killed_after_effect,
                "{point:?}: {then} started before {first} finished"
            );
        }
    };
    if hot {
        // Safety invariant 14 across the crash: the replica is promoted only after the old
        // primary's fence (or by the hand-over, which needs none), and no disk moves.
        if started_at.contains_key("vm.nfs@g1:fence") {
            before("vm.nfs@g1:fence", "zfs_pool.home:promote");
        }
        assert!(
            started_at.contains_key("zfs_pool.home:promote"),
            "{point:?}: the replica was never promoted"
        );
        assert!(
            !started_at.keys().any(|id| id.starts_with("disk.")),
            "{point:?}: a hot failover moved a disk: {started_at:?}"
        );
    } else {
        for disk in ["home0", "home1", "home2", "home3"] {
            before(&format!("disk.{disk}:detach"), &format!("disk.{disk}:move"));
            before(&format!("disk.{disk}:move"), &format!("disk.{disk}:attach"));
            before(&format!("disk.{disk}:attach"), "zfs_pool.home:import");
        }
        before("vm.nfs@g1:fence", "zfs_pool.home:import");
        assert!(
            started_at.contains_key("zfs_pool.home:import"),
            "{point:?}: the pool was never imported"
        );
    }
    // The killed apply left no end record; the resume is the one that completed.
    assert!(
        !records[..killed_len]
            .iter()
            .any(|r| event(r) == "apply_finished"),
        "{point:?}: the killed apply journaled an end"
    );
    let last = records.last().unwrap();
    assert_eq!(event(last), "apply_finished");
    assert_eq!(last["complete"], true);
}

#[test]
fn killed_right_after_it_started() {
    kill_and_resume(KillPoint::AtStart);
}

#[test]
fn killed_during_the_fence() {
    kill_and_resume(KillPoint::Started("vm.nfs@g1:fence"));
}

#[test]
fn killed_right_after_the_fence() {
    kill_and_resume(KillPoint::Finished("vm.nfs@g1:fence"));
}

#[test]
fn killed_between_the_detaches() {
    kill_and_resume(KillPoint::FinishedCount(":detach", 2));
}

#[test]
fn killed_in_the_middle_of_the_disk_moves() {
    kill_and_resume(KillPoint::FinishedCount(":move", 2));
}

#[test]
fn killed_during_an_attach() {
    kill_and_resume(KillPoint::Started("disk.home2:attach"));
}

#[test]
fn killed_before_the_import() {
    kill_and_resume(KillPoint::FinishedCount(":attach", 4));
}

#[test]
fn killed_during_the_import() {
    kill_and_resume(KillPoint::Started("zfs_pool.home:import"));
}

#[test]
fn killed_right_after_the_import() {
    kill_and_resume(KillPoint::Finished("zfs_pool.home:import"));
}

#[test]
fn killed_during_a_hook() {
    kill_and_resume(KillPoint::Started("hook.staging_hub@g2:run"));
}

#[test]
fn killed_between_the_hooks() {
    kill_and_resume(KillPoint::Finished("hook.staging_hub@g2:run"));
}

#[test]
fn killed_during_the_retirement() {
    kill_and_resume(KillPoint::Started("aks_cluster.hub@g1:retire"));
}

#[test]
fn killed_late_in_the_retirement() {
    kill_and_resume(KillPoint::FinishedCount(":retire", 5));
}

#[test]
fn killed_in_the_middle_of_the_disk_moves_while_the_old_api_server_comes_back() {
    kill_and_resume_in(
        Story::OutageThenRecovery,
        KillPoint::FinishedCount(":move", 2),
    );
}

#[test]
fn killed_during_the_import_of_a_planned_failover_resumed_without_the_flag() {
    kill_and_resume_in(Story::Planned, KillPoint::Started("zfs_pool.home:import"));
}

#[test]
fn killed_in_the_middle_of_the_disk_moves_of_a_planned_failover() {
    kill_and_resume_in(Story::Planned, KillPoint::FinishedCount(":move", 2));
}

#[test]
fn warm_killed_right_after_it_started() {
    kill_and_resume_warm(Story::Outage, KillPoint::AtStart);
}

#[test]
fn warm_killed_during_the_fence() {
    kill_and_resume_warm(Story::Outage, KillPoint::Started("vm.nfs@g1:fence"));
}

#[test]
fn warm_killed_in_the_middle_of_the_disk_moves() {
    kill_and_resume_warm(Story::Outage, KillPoint::FinishedCount(":move", 2));
}

#[test]
fn warm_killed_during_the_import() {
    kill_and_resume_warm(Story::Outage, KillPoint::Started("zfs_pool.home:import"));
}

#[test]
fn warm_killed_during_an_activation() {
    kill_and_resume_warm(
        Story::Outage,
        KillPoint::Started("hook.staging_active@g2:run"),
    );
}

#[test]
fn warm_killed_during_the_retirement() {
    kill_and_resume_warm(Story::Outage, KillPoint::FinishedCount(":retire", 3));
}

#[test]
fn warm_killed_in_the_disk_moves_while_the_old_api_server_comes_back() {
    kill_and_resume_warm(
        Story::OutageThenRecovery,
        KillPoint::FinishedCount(":move", 2),
    );
}

#[test]
fn warm_killed_in_the_disk_moves_of_a_planned_failover() {
    kill_and_resume_warm(Story::Planned, KillPoint::FinishedCount(":move", 2));
}

#[test]
fn hot_killed_right_after_it_started() {
    kill_and_resume_hot(Story::Outage, KillPoint::AtStart);
}

#[test]
fn hot_killed_during_the_promotion() {
    kill_and_resume_hot(Story::Outage, KillPoint::Started("zfs_pool.home:promote"));
}

#[test]
fn hot_killed_right_after_the_promotion() {
    kill_and_resume_hot(Story::Outage, KillPoint::Finished("zfs_pool.home:promote"));
}

#[test]
fn hot_killed_during_an_activation() {
    kill_and_resume_hot(
        Story::Outage,
        KillPoint::Started("hook.staging_active@g2:run"),
    );
}

#[test]
fn hot_killed_during_the_retirement() {
    kill_and_resume_hot(Story::Outage, KillPoint::FinishedCount(":retire", 3));
}

#[test]
fn hot_killed_during_the_promotion_of_a_planned_failover() {
    kill_and_resume_hot(Story::Planned, KillPoint::Started("zfs_pool.home:promote"));
}
