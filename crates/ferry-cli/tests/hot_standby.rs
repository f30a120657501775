//! The hot standby from the command line (`specs/data100/hot`), in a simulated world: the
//! first apply builds generation 1, the standby and the replica's disks, and seeds the
//! replica; a replica that lags loses readiness until a round (`ferry replicate`, or the
//! watch's); a failover promotes it and moves no disk, and keeps the old primary's VM and
//! group, which still hold its disks; the failback re-seats those disks on the next standby
//! and makes them its replica; and the same again the other way.

mod support;

use support::{Scratch, ferry_ok, section};

const SPEC: &str = "data100/hot";

#[test]
fn a_hot_standby_is_seeded_promoted_with_no_disk_moved_and_failed_back_as_a_plan() {
    let scratch = Scratch::new();
    let first = ferry_ok(
        &scratch,
        &[
            "apply",
            SPEC,
            "--world",
            "world.json",
            "--new-world",
            "--auto-approve",
        ],
    );
    assert!(
        first.stderr.contains("Generation 1 serves."),
        "{}",
        first.stderr
    );
    let world = scratch.world();
    let replica = &world["instances"]["zfs_pool.home@g2"];
    assert_eq!(replica["replication_role"], "replica", "{world:#}");
    assert_eq!(replica["host"], "vm.nfs@g2");
    assert_eq!(world["instances"]["disk.replica0"]["vm"], "vm.nfs@g2");
    assert_eq!(world["instances"]["disk.home0"]["vm"], "vm.nfs@g1");

    let kept = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    assert!(kept.stdout.contains("No changes"), "{}", kept.stdout);
    insta::assert_snapshot!("hot_standby_kept", section(&kept.stdout, "Standby:"));

    // The replica falls behind (no round ran for 8 minutes): readiness is lost, and says why.
    let mut world = scratch.world();
    world["instances"]["zfs_pool.home@g2"]["replica_lag_seconds"] = 480.into();
    scratch.set_world(&world);
    let behind = scratch.ferry(&["plan", SPEC, "--world", "world.json"]);
    let readiness = section(&behind.stdout, "Failover readiness:");
    assert!(
        readiness.contains("zfs_pool.home@g2: the replica lags 8m behind the primary, more than replica_max_lag (1m)"),
        "{}",
        behind.stdout
    );
    // One round on demand brings it back.
    let replicated = ferry_ok(&scratch, &["replicate", SPEC, "--world", "world.json"]);
    assert_eq!(
        replicated.stdout,
        "zfs_pool.home@g2: a simulated round: the replica is current\n"
    );
    let current = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    assert!(current.stdout.contains("No changes"), "{}", current.stdout);
    // The watch runs the rounds too, while it acts (a local state: always).
    let mut world = scratch.world();
    world["instances"]["zfs_pool.home@g2"]["replica_lag_seconds"] = 480.into();
    scratch.set_world(&world);
    let watched = ferry_ok(
        &scratch,
        &["watch", SPEC, "--world", "world.json", "--rounds", "1"],
    );
    assert!(
        watched
            .stderr
            .contains("zfs_pool.home@g2: a simulated round: the replica is current"),
        "{}",
        watched.stderr
    );
    assert_eq!(
        scratch.world()["instances"]["zfs_pool.home@g2"]["replica_lag_seconds"],
        0
    );

    // Generation 1's API server dies, its NFS VM does not: the pool is handed over.
    scratch.break_api_server(1);
    let failover = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    assert!(
        !failover.stdout.contains("+ create"),
        "the standby is built already:\n{}",
        failover.stdout
    );
    insta::assert_snapshot!("hot_failover_plan", section(&failover.stdout, "Plan:"));
    let moved: Vec<&str> = failover
        .stdout
        .lines()
        .filter(|line| {
            let step = line.trim_start();
            step.split_once(". ").is_some_and(|(number, rest)| {
                number.chars().all(|c| c.is_ascii_digit()) && rest.contains(" disk.")
            })
        })
        .collect();
    assert!(moved.is_empty(), "{moved:?}");

    let applied = ferry_ok(
        &scratch,
        &["apply", SPEC, "--world", "world.json", "--auto-approve"],
    );
    assert!(
        applied.stderr.contains("Generation 2 serves."),
        "{}",
        applied.stderr
    );
    let world = scratch.world();
    assert_eq!(world["instances"]["zfs_pool.home"]["host"], "vm.nfs@g2");
    assert_eq!(
        world["instances"]["zfs_pool.home"]["replication_role"],
        "primary"
    );
    // The old primary's VM and group still hold its disks: neither is retired.
    for kept in ["vm.nfs@g1", "resource_group.main@g1", "disk.home0"] {
        assert!(
            world["instances"].get(kept).is_some(),
            "{kept} is gone: {world:#}"
        );
    }

    // The failback, as a plan like any other: the next standby is built, the old primary's
    // disks are re-seated on it (its host fenced, each disk detached, moved and attached) and
    // made the next replica, and the old generation is retired once nothing is on it.
    let failback = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    let data_steps: Vec<&str> = failback
        .stdout
        .lines()
        .filter(|line| {
            let step = line.trim_start();
            step.split_once(". ").is_some_and(|(number, rest)| {
                number.chars().all(|c| c.is_ascii_digit())
                    && (rest.contains(" disk.")
                        || rest.contains("zfs_pool")
                        || rest.starts_with("!")
                        || rest.starts_with("- retire vm")
                        || rest.starts_with("- retire resource_group"))
            })
        })
        .collect();
    insta::assert_snapshot!("hot_failback_plan", data_steps.join("\n"));
    let after = ferry_ok(
        &scratch,
        &["apply", SPEC, "--world", "world.json", "--auto-approve"],
    );
    assert!(
        after.stderr.contains("Generation 2 serves."),
        "{}",
        after.stderr
    );
    let settled = scratch.ferry(&["plan", SPEC, "--world", "world.json", "--detailed-exitcode"]);
    assert_eq!(settled.code, 0, "{}{}", settled.stdout, settled.stderr);
    assert!(
        settled
            .stdout
            .contains("Failover readiness: ready, estimated time to recovery 3m 15s"),
        "{}",
        settled.stdout
    );
    let world = scratch.world();
    for disk in ["home0", "home1", "home2", "home3"] {
        assert_eq!(
            world["instances"][format!("disk.{disk}")]["vm"],
            "vm.nfs@g3"
        );
    }
    assert_eq!(
        world["instances"]["zfs_pool.home@g3"]["replication_role"],
        "replica"
    );
    assert!(world["instances"].get("vm.nfs@g1").is_none(), "{world:#}");
    // The state holds the new replica, and no longer the one the failover promoted.
    let list = ferry_ok(&scratch, &["state", "list", SPEC]);
    let pools: Vec<&str> = list
        .stdout
        .lines()
        .filter(|line| line.starts_with("zfs_pool."))
        .collect();
    assert_eq!(pools.len(), 2, "{}", list.stdout);
    assert!(pools[0].starts_with("zfs_pool.home ") && pools[0].contains("stateful"));
    assert!(
        pools[1].starts_with("zfs_pool.home@g3") && pools[1].contains("hot standby's replica"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("Generation 1 ("), "{}", list.stdout);
    assert!(world["instances"].get("resource_group.main@g1").is_none());

    // And back: generation 2's API server dies, the pool's own disks serve again on
    // generation 3, and the replica's are re-seated on generation 4.
    scratch.mend_api_server(1);
    scratch.break_api_server(2);
    let back = ferry_ok(
        &scratch,
        &["apply", SPEC, "--world", "world.json", "--auto-approve"],
    );
    assert!(
        back.stderr.contains("Generation 3 serves."),
        "{}",
        back.stderr
    );
    ferry_ok(
        &scratch,
        &["apply", SPEC, "--world", "world.json", "--auto-approve"],
    );
    let settled = scratch.ferry(&["plan", SPEC, "--world", "world.json", "--detailed-exitcode"]);
    assert_eq!(settled.code, 0, "{}{}", settled.stdout, settled.stderr);
    let world = scratch.world();
    assert_eq!(world["instances"]["zfs_pool.home"]["host"], "vm.nfs@g3");
    for disk in ["replica0", "replica1", "replica2", "replica3"] {
        assert_eq!(
            world["instances"][format!("disk.{disk}")]["vm"],
            "vm.nfs@g4"
        );
    }
    assert_eq!(
        world["instances"]["zfs_pool.home@g4"]["replication_role"],
        "replica"
    );
}
