//! The data100 failover end to end, as `cargo xtask demo` runs it but asserted: the `ferry`
//! binary against real local servers (the ARM simulator in this process, BIND with TSIG, sshd
//! in front of the machine's zfs-fuse, the hub stand-in serving HTTPS), on a fast clock.
//! Generation 1 is built from nothing, its API server stops answering, `ferry plan` saves the
//! failover (read back with the library), `ferry apply` carries it out, and tools that are
//! not ferry check the result. zfs-fuse must already run (`cargo xtask test` starts it).

mod real_servers;

use std::path::{Path, PathBuf};
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

/// The TSIG secret in BIND's key file: it must never show in ferry's output.
fn tsig_secret(world: &World) -> String {
    let key = std::fs::read_to_string(&world.bind.key_file).unwrap();
    let secret = key
        .split("secret \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a secret in the key file");
    secret.to_owned()
}

/// Starts the failover apply in the background with its progress lines in a file, stops BIND
/// once the pool is imported (the DNS updates come after the hooks that follow), and returns
/// the running apply and its log.
fn apply_with_bind_stopped_after_the_import(world: &mut World) -> (std::process::Child, PathBuf) {
    let log = world.work.join("apply.log");
    let child = world
        .command(&["apply", "data100", "--auto-approve"], true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_line(&log, "zfs_pool.home:import: done");
    world.bind.stop();
    (child, log)
}

/// Waits until the progress log has a line containing `text`; returns the log.
fn wait_for_line(log: &Path, text: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let written = std::fs::read_to_string(log).unwrap_or_default();
        if written.lines().any(|line| line.contains(text)) {
            return written;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "no line with `{text}`:\n{written}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// BIND goes down just before DNS moves and comes back while ferry retries the update: the
/// same apply finishes the failover, and its output names the server, never the TSIG secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_restarted_during_the_dns_update_and_the_same_apply_finishes() {
    let mut world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);
    let (child, log) = apply_with_bind_stopped_after_the_import(&mut world);
    let failed_once = wait_for_line(&log, "dns_record.staging:update: attempt 1 failed");
    world.bind.start_again().unwrap();
    let output = child.wait_with_output().unwrap();
    let progress = std::fs::read_to_string(&log).unwrap();
    assert!(
        output.status.success(),
        "the apply finishes once BIND is back:\n{progress}"
    );
    let failure = failed_once
        .lines()
        .find(|line| line.contains("dns_record.staging:update: attempt 1 failed"))
        .unwrap();
    assert!(
        failure.contains(&world.bind.server()),
        "the failure names the server: {failure}"
    );
    assert!(!progress.contains(&tsig_secret(&world)), "{progress}");
    assert!(progress.contains("Generation 2 serves"), "{progress}");
    world.assert_served_from(2, &files, &sums);
}

/// BIND stays down for longer than ferry retries: the apply stops with a report that names
/// the DNS step, its error and the command that resumes; nothing after it ran and nothing of
/// generation 1 is retired; once BIND is back, applying again finishes the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_down_for_longer_than_the_retries_stops_the_apply_and_apply_again_finishes() {
    let mut world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);
    let (child, log) = apply_with_bind_stopped_after_the_import(&mut world);
    let output = child.wait_with_output().unwrap();
    let report = std::fs::read_to_string(&log).unwrap();
    assert_eq!(output.status.code(), Some(1), "{report}");
    let failed = report
        .lines()
        .find(|line| line.starts_with("  dns_record.staging:update: "))
        .unwrap_or_else(|| panic!("the report names the failed DNS step:\n{report}"));
    assert!(failed.contains(&world.bind.server()), "{failed}");
    assert!(
        report.contains("Run `ferry apply data100` again to resume"),
        "{report}"
    );
    assert!(!report.contains(&tsig_secret(&world)), "{report}");
    for skipped in [
        "hook.prod_hub@g2:run",
        "dns_record.prod:update",
        "check.prod_tls:wait",
    ] {
        assert!(
            report.contains(&format!("{skipped}: skipped, because")),
            "{skipped} skipped:\n{report}"
        );
    }
    assert!(!report.contains(":retire: done"), "{report}");

    world.bind.start_again().unwrap();
    // The zone kept every update BIND had accepted: prod still answers generation 1.
    assert_eq!(
        world.bind.dig(&format!("hub.{ZONE}."), "A").unwrap(),
        vec![world.ingress(1)]
    );
    let resumed = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the apply once BIND is back");
    assert!(
        resumed.stderr.contains("Generation 2 serves"),
        "{}",
        resumed.shown()
    );
    world.assert_served_from(2, &files, &sums);
}
