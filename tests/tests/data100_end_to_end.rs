//! The data100 failover end to end, as `cargo xtask demo` runs it but asserted: the `ferry`
//! binary against real local servers (the ARM simulator in this process, BIND with TSIG, sshd
//! in front of the machine's zfs-fuse, the hub stand-in serving HTTPS), on a fast clock.
//! Generation 1 is built from nothing, its API server stops answering, `ferry plan` saves the
//! failover (read back with the library), `ferry apply` carries it out, and tools that are
//! not ferry check the result. zfs-fuse must already run (`cargo xtask test` starts it).

mod real_servers;

use std::process::Command;

use ferry_servers::{public_address, simulator_addresses};
use ferry_sim::Fault;
use real_servers::*;

/// The main story: the old NFS VM still answers, so the pool is exported there and imported
/// on the new VM without `-f`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data100_fails_over_through_the_cli_against_real_servers() {
    let world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);

    let plan = world.saved_plan("failover.plan", &[]);
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
    assert_failover_order(&plan, 1, 2);
    assert_after(&plan, "zfs_pool.home:export", "vm.nfs@g1:fence");
    let import = step(&plan, "zfs_pool.home:import");
    assert_eq!(
        import.inputs.get("force"),
        Some(&serde_json::json!(false)),
        "a pool exported cleanly is imported without -f"
    );
    for disk in 0..4 {
        assert_eq!(
            step(&plan, &format!("disk.home{disk}:detach")).warning,
            None,
            "no forced detach while the old VM answers"
        );
    }

    let before = world.simulator.events().len();
    let applied = world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(0, "the failover apply");
    let done = applied.steps_done();
    for step in &plan.steps {
        assert!(
            done.contains(&step.id.0),
            "{} reported done:\n{}",
            step.id,
            applied.stderr
        );
    }
    let events = world.simulator.events()[before..].to_vec();
    assert_simulator_order(&events, 1, 2);
    world.assert_served_from(2, &files, &sums);
}

/// The old NFS VM cannot be reached (its SSH address is gone), so the pool reads `Unknown`:
/// nothing is exported, the plan fences the old VM by deallocation before its disks leave
/// it, and imports with `-f`, only after the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_old_nfs_vm_is_fenced_and_the_pool_imported_with_force_after() {
    let mut world = World::start().await;
    let (files, sums) = world.build_generation_one();
    let old_address: std::net::Ipv4Addr = public_address(
        &world.simulator.dump_state(),
        "data100-g1",
        "data100-nfs-ssh",
    )
    .expect("the old NFS VM's address")
    .parse()
    .unwrap();
    // zfs-fuse is one daemon for every "host": the old VM's loss is modelled as its ZFS
    // letting go of the pool (as a deallocated VM's does) and its SSH address going away.
    let export = Command::new("zpool")
        .args(["export", "-f", POOL])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let reachable: Vec<_> = simulator_addresses(16)
        .into_iter()
        .filter(|address| *address != old_address)
        .collect();
    world.sshd.listen_on(reachable).unwrap();
    world.break_api_server(1);

    let plan = world.saved_plan("failover.plan", &[]);
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
    assert_failover_order(&plan, 1, 2);
    assert!(
        !ids(&plan).contains(&"zfs_pool.home:export".to_owned()),
        "no export from a host that cannot be reached: {:#?}",
        ids(&plan)
    );
    let import = step(&plan, "zfs_pool.home:import");
    assert_eq!(import.inputs.get("force"), Some(&serde_json::json!(true)));
    assert!(
        import.warning.as_deref().is_some_and(
            |warning| warning.contains("imported with -f, only after vm.nfs@g1 is fenced")
        ),
        "{:?}",
        import.warning
    );
    // ARM still reads the old VM (only its network is gone), so its disks are detached
    // normally, after the deallocation; `ForceDetach` is for a VM that ARM itself cannot
    // read (crates/ferry-plan's `failover_from_an_unreachable_host_forces_only_after_the_fence`).
    for disk in 0..4 {
        let detach = step(&plan, &format!("disk.home{disk}:detach"));
        assert_eq!(detach.inputs.get("detach_option"), None, "{}", detach.id);
        assert_eq!(
            detach.after,
            vec![step(&plan, "vm.nfs@g1:fence").id.clone()]
        );
    }

    let before = world.simulator.events().len();
    world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(0, "the failover apply");
    let events = world.simulator.events()[before..].to_vec();
    assert_simulator_order(&events, 1, 2);
    world.assert_served_from(2, &files, &sums);
}

/// Failing back (or on) to a third generation is the same operation: `--failover` plans it
/// from a healthy generation 2, and the pool moves again with every file intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_failover_to_a_third_generation_moves_everything_again() {
    let world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);
    world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the failover to generation 2");
    world.assert_served_from(2, &files, &sums);

    let plan = world.saved_plan("failback.plan", &["--failover"]);
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(3));
    assert_failover_order(&plan, 2, 3);
    assert_eq!(
        step(&plan, "zfs_pool.home:import").inputs.get("force"),
        Some(&serde_json::json!(false))
    );
    let before = world.simulator.events().len();
    world
        .ferry(&["apply", "failback.plan"], false)
        .expect_code(0, "the planned failover to generation 3");
    let events = world.simulator.events()[before..].to_vec();
    assert_simulator_order(&events, 2, 3);
    world.assert_served_from(3, &files, &sums);
}

/// The new cluster's create ends `Failed` in the middle of the failover: the steps that need
/// it are skipped, the report names the failure and says how to resume, and once the fault
/// has passed, running `ferry apply` again finishes the same failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_create_that_fails_stops_its_dependents_and_apply_again_finishes() {
    let world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);
    let plan = world.saved_plan("failover.plan", &[]);
    // Not a code ferry retries (InternalOperationError is): the step fails. One failure
    // only: the fault is used up by the first create, as a quota raised meanwhile.
    world.simulator.inject(Fault::FailOperation {
        method: Some("PUT".into()),
        path_contains: "/resourceGroups/data100-g2/providers/Microsoft.ContainerService/managedClusters/data100-hub".into(),
        code: "QuotaExceeded".into(),
        message: "the cluster could not be created".into(),
        count: Some(1),
    });

    let failed = world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(1, "the apply whose cluster create fails");
    let report = failed.shown();
    assert!(
        failed.stderr.contains("aks_cluster.hub@g2:create: failed")
            && failed.stderr.contains("the cluster could not be created"),
        "the failure is named with ARM's message: {report}"
    );
    for dependent in [
        "hook.staging_hub@g2:run",
        "dns_record.staging:update",
        "hook.prod_hub@g2:run",
        "dns_record.prod:update",
        "check.prod_tls:wait",
    ] {
        assert!(
            failed
                .stderr
                .contains(&format!("{dependent}: skipped, because")),
            "{dependent} skipped: {report}"
        );
    }
    assert!(
        failed
            .stderr
            .contains("Run `ferry apply data100` again to resume"),
        "the report says how to resume: {report}"
    );
    let done = failed.steps_done();
    assert!(
        !done.iter().any(|step| step.ends_with(":retire")),
        "nothing of generation 1 is retired: {report}"
    );
    assert!(
        done.contains(&"zfs_pool.home:import".to_owned()),
        "the storage, which does not need the cluster, moved: {report}"
    );
    assert_eq!(
        world.bind.dig(&format!("hub.{ZONE}."), "A").unwrap(),
        vec![world.ingress(1)],
        "prod still points at generation 1"
    );

    // A saved plan is applied once: its own steps changed the world it was made from (the
    // old VM is deallocated, the disks moved), so it is refused as stale, and the report says
    // to apply the spec instead, which plans the rest of the same failover (to generation 2,
    // not 3) while the journal skips what is done.
    world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(1, "the saved plan applied again");
    let resumed = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the spec applied again after the fault");
    assert!(
        resumed.stdout.contains("Generation 2 serves")
            || resumed.stderr.contains("Generation 2 serves"),
        "{}",
        resumed.shown()
    );
    assert!(
        resumed
            .steps_done()
            .contains(&"aks_cluster.hub@g2:create".to_owned()),
        "{}",
        resumed.shown()
    );
    world.assert_served_from(2, &files, &sums);
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
}
