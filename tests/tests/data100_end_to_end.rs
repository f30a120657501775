//! The data100 failover end to end, as `cargo xtask demo` runs it but asserted: the `ferry`
//! binary against real local servers (the ARM simulator in this process, BIND with TSIG, sshd
//! in front of the machine's zfs-fuse, the hub stand-in serving HTTPS), on a fast clock.
//! Generation 1 is built from nothing, its API server stops answering, `ferry plan` saves the
//! failover (read back with the library), `ferry apply` carries it out, and tools that are
//! not ferry check the result. zfs-fuse must already run (`cargo xtask test` starts it).

mod real_servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    // ARM read the old VM: a plain detach, never `ForceDetach`.
    let records = ferry_sim::disk_records(&events);
    assert!(
        records.values().all(|record| !record.force_detached),
        "{records:#?}"
    );
    world.assert_served_from(2, &files, &sums);
}

/// The old NFS VM cannot be reached (its SSH address is gone), so the pool reads `Unknown`:
/// nothing is exported, the plan fences the old VM by deallocation before its disks leave
/// it, and imports with `-f`, only after the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_old_nfs_vm_is_fenced_and_the_pool_imported_with_force_after() {
    let mut world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.lose_nfs_host(1);
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
    // read (`an_old_nfs_vm_arm_cannot_read_is_force_detached_after_the_fence_once_arm_answers`).
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
    // ARM read the old VM: a plain detach, never `ForceDetach`.
    let records = ferry_sim::disk_records(&events);
    assert!(
        records.values().all(|record| !record.force_detached),
        "{records:#?}"
    );
    world.assert_served_from(2, &files, &sums);
}

/// The warning the plan shows on each forced detach.
const FORCED: &str = "vm.nfs@g1 could not be read: the disk is force-detached after the fence";

/// The old NFS VM's host is lost (no SSH, its pool let go), and ARM cannot read that VM at
/// all. ferry reads each disk's lun from the VM that holds it, so the disks read `Unknown`
/// too: `ferry plan` refuses rather than move a disk blind, says to make it readable and plan
/// again, and nothing is changed. Once ARM answers, the plan detaches the disks normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_nfs_vm_arm_cannot_read_at_all_stops_the_plan_before_any_disk_moves() {
    let mut world = World::start().await;
    world.build_generation_one();
    world.lose_nfs_host(1);
    world.break_api_server(1);
    // Every GET of the VM and of its instance view.
    world.fail_arm_reads(&vm_path(1));
    let before = world.simulator.events().len();

    for arguments in [
        &["plan", "data100", "-o", "failover.plan"][..],
        &["apply", "data100", "--auto-approve"][..],
    ] {
        let refused = world
            .ferry(arguments, true)
            .expect_code(1, "a plan while ARM cannot read the old VM");
        let shown = refused.shown();
        for disk in 0..4 {
            let error = refused
                .stderr
                .lines()
                .find(|line| line.starts_with(&format!("error: disk.home{disk}: ")))
                .unwrap_or_else(|| panic!("disk.home{disk} named: {shown}"));
            assert!(
                error.contains("its reading is unknown (InternalServerError: ")
                    && error.contains("(GET ")
                    && error.contains("/virtualMachines/data100-nfs-g1?")
                    && error.contains(" answered 500")
                    && error.ends_with(
                        "so ferry cannot tell which VM holds it: a disk is never moved blind"
                    ),
                "{error}"
            );
        }
        assert!(
            refused.stderr.contains(
                "help: make it readable again (or find out why it is not) and plan again"
            ) && refused.stderr.contains("no plan: 4 problems to fix first"),
            "{shown}"
        );
        assert!(!refused.stdout.contains("Failover from"), "{shown}");
    }
    assert!(!world.work.join("failover.plan").exists());
    let events = world.simulator.events();
    assert!(
        events[before..].iter().all(|event| event.method == "GET"),
        "nothing was changed: {:#?}",
        &events[before..]
    );

    // The blip passes: ARM reads the VM (still running: nothing fenced it), so its disks are
    // detached normally after the fence.
    world.simulator.clear_faults();
    world.break_api_server(1);
    let (shown, saved) = world.shown_and_saved_plan("failover.plan", &[]);
    assert_failover_order(&saved.plan, 1, 2);
    assert!(!shown.stdout.contains("force-detached"), "{}", shown.stdout);
    for disk in 0..4 {
        let detach = step(&saved.plan, &format!("disk.home{disk}:detach"));
        assert_eq!(detach.inputs.get("detach_option"), None, "{}", detach.id);
    }
}

/// The old NFS VM's host is lost and ARM can read the VM but not its instance view (the
/// VM's state comes from the host), so the VM reads `Unknown` while each disk still names
/// it as its holder. Sets that up and saves the failover plan, checking what it shows: the
/// fence before every detach, each detach forced, the pool imported with `-f` after the
/// fence. Returns generation 1's files and their checksums.
fn a_forced_failover_plan(world: &mut World) -> (Vec<PathBuf>, BTreeMap<PathBuf, String>) {
    let (files, sums) = world.build_generation_one();
    world.lose_nfs_host(1);
    world.break_api_server(1);
    world.fail_arm_reads(&format!("{}/instanceView", vm_path(1)));

    let (shown, saved) = world.shown_and_saved_plan("failover.plan", &[]);
    let text = &shown.stdout;
    assert!(
        text.starts_with("Failover from generation 1 to generation 2\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "note: vm.nfs@g1: not retired, its reading is unknown (InternalServerError: "
        ) && text.contains("(GET ")
            && text.contains("/virtualMachines/data100-nfs-g1/instanceView?"),
        "the plan says why the old VM is not read: {text}"
    );
    let fence = shown_step(text, "fence vm.nfs@g1");
    for disk in 0..4 {
        let detach = shown_step(text, &format!("detach disk.home{disk}"));
        assert_eq!(detach.warnings(), vec![FORCED], "{:#?}", detach.lines);
        assert_eq!(
            detach.after(),
            vec![fence.number],
            "the detach waits for the fence: {:#?}",
            detach.lines
        );
        assert!(detach.number > fence.number, "{text}");
        let attach = shown_step(text, &format!("attach disk.home{disk}"));
        assert!(attach.warnings().is_empty(), "{:#?}", attach.lines);
    }
    let import = shown_step(text, "import zfs_pool.home");
    assert_eq!(
        import.warnings(),
        vec![
            "the pool could not be exported from vm.nfs@g1: it is imported with -f, only after vm.nfs@g1 is fenced"
        ],
        "{:#?}",
        import.lines
    );
    assert!(
        import.after().contains(&fence.number),
        "{:#?}",
        import.lines
    );
    assert!(
        text.contains("1 to fence, 4 to detach, 4 to move, 4 to attach, 1 to import"),
        "{text}"
    );

    // The same, as the saved plan carries it to the apply.
    let plan = &saved.plan;
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
    assert_failover_order(plan, 1, 2);
    assert!(!ids(plan).contains(&"zfs_pool.home:export".to_owned()));
    for disk in 0..4 {
        let detach = step(plan, &format!("disk.home{disk}:detach"));
        assert_eq!(
            detach.inputs.get("detach_option"),
            Some(&serde_json::json!("ForceDetach")),
            "{}",
            detach.id
        );
    }
    assert_eq!(
        step(plan, "zfs_pool.home:import").inputs.get("force"),
        Some(&serde_json::json!(true))
    );
    (files, sums)
}

/// The path a real operator takes with such a plan: `ferry apply FILE` during the blip. The
/// fence cannot read the VM's power state, so it fails and is retried, and not one disk is
/// detached meanwhile; ARM answers again before the retries run out, and the same apply
/// deallocates the VM, force-detaches every disk from it, moves and attaches them, and
/// imports the pool with `-f` on the new VM, only after the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_nfs_vm_arm_cannot_read_is_force_detached_after_the_fence_once_arm_answers() {
    let mut world = World::start().await;
    let (files, sums) = a_forced_failover_plan(&mut world);
    let events_before = world.simulator.events().len();
    let journal_before = world.journal_records().len();

    let log = world.work.join("apply.log");
    let child = world
        .command(&["apply", "failover.plan"], false)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let during_the_blip = wait_for_line(&log, "vm.nfs@g1:fence: attempt 1 failed");
    // The blip passes; generation 1's API server stays down (clearing the faults brought it
    // back).
    world.simulator.clear_faults();
    world.break_api_server(1);
    assert!(
        during_the_blip
            .lines()
            .find(|line| line.contains("vm.nfs@g1:fence: attempt 1 failed"))
            // ARM's code and advice; the request's URL is the journal's, not the progress line's.
            .is_some_and(
                |line| line.contains("InternalServerError: ") && !line.contains("https://")
            ),
        "{during_the_blip}"
    );
    assert!(
        !during_the_blip.contains(":detach: started"),
        "no disk is detached while the fence has not run:\n{during_the_blip}"
    );
    let output = child.wait_with_output().unwrap();
    let progress = std::fs::read_to_string(&log).unwrap();
    assert!(
        output.status.success(),
        "the apply finishes once ARM answers:\n{progress}"
    );
    assert!(progress.contains("Generation 2 serves"), "{progress}");
    for disk in 0..4 {
        assert!(
            progress.lines().any(|line| line.ends_with(&format!(
                "] disk.home{disk}:detach: force-detaching data100-home{disk} from data100-nfs-g1"
            ))),
            "disk.home{disk} force-detached:\n{progress}"
        );
    }

    // The plan read the old VM unknown, so it kept it and what it needs (its public IP,
    // network and group: Azure refuses to delete an address its interface holds); the next
    // apply, with the VM readable, retires them.
    let rest = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the apply that retires what the failover kept");
    let retired = rest.steps_done();
    for step in [
        "vm.nfs@g1:retire",
        "public_ip.nfs@g1:retire",
        "resource_group.main@g1:retire",
    ] {
        assert!(
            retired.iter().any(|done| done == step),
            "{step}: {}",
            rest.shown()
        );
    }

    // ARM's record: the deallocation ended before the first detach was asked for, each disk
    // moved once after its detach and attached after its move, so never on two VMs.
    let events = world.simulator.events()[events_before..].to_vec();
    assert_simulator_order(&events, 1, 2);
    // And each of those detaches was a `ForceDetach`, as ARM received it.
    let records = ferry_sim::disk_records(&events);
    for disk in DISKS {
        assert!(
            records
                .get(disk)
                .is_some_and(|record| record.force_detached),
            "{disk} force-detached: {records:#?}"
        );
    }
    // ferry's journal: the import started only after the fence finished.
    let journal = world.journal_records()[journal_before..].to_vec();
    let position = |event: &str, id: &str| {
        journal
            .iter()
            .position(|record| record["event"] == event && record["step"] == id)
            .unwrap_or_else(|| panic!("no {event} of {id}: {journal:#?}"))
    };
    assert!(
        position("step_finished", "vm.nfs@g1:fence")
            < position("step_started", "zfs_pool.home:import")
    );
    // The pool's own record: after the host let go of it, one import, forced, from the new
    // VM's disks, and no export.
    let history = zpool_history();
    let lost = history
        .iter()
        .rposition(|command| command.starts_with("zpool export -f"))
        .expect("the lost host's export");
    let after_loss = &history[lost + 1..];
    let imports: Vec<&String> = after_loss
        .iter()
        .filter(|command| command.starts_with("zpool import"))
        .collect();
    assert_eq!(imports.len(), 1, "one import: {history:#?}");
    assert!(
        imports[0].contains(" -f") && imports[0].contains("data100-nfs-g2/scsi1"),
        "imported with -f from the new VM's disks: {history:#?}"
    );
    assert!(
        !after_loss
            .iter()
            .any(|command| command.starts_with("zpool export")),
        "{history:#?}"
    );
    world.assert_served_from(2, &files, &sums);
}

/// The blip outlasts the fence's retries: the apply of the saved plan gives up at the fence,
/// and not one disk is detached, moved or attached. Once ARM answers, that saved plan is
/// refused (the old VM read `Unknown` when it was made and reads present now) with the
/// operator told to plan again; the new plan, made while ARM reads the VM, detaches
/// normally and finishes the failover the first apply started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_longer_than_the_fences_retries_detaches_nothing_and_a_new_plan_finishes() {
    let mut world = World::start().await;
    let (files, sums) = a_forced_failover_plan(&mut world);
    let events_before = world.simulator.events().len();

    let failed = world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(1, "the apply while ARM cannot read the old VM");
    let report = failed.shown();
    let fence = failed
        .stderr
        .lines()
        .find(|line| line.starts_with("  vm.nfs@g1:fence: "))
        .unwrap_or_else(|| panic!("the report names the fence: {report}"));
    assert!(
        fence.contains("/instanceView?") && fence.ends_with("(gave up after 5 attempts)"),
        "{fence}"
    );
    for disk in 0..4 {
        for action in ["detach", "move", "attach"] {
            assert!(
                failed.stderr.contains(&format!(
                    "disk.home{disk}:{action}: skipped, because vm.nfs@g1:fence failed"
                )),
                "disk.home{disk}:{action} skipped: {report}"
            );
        }
    }
    assert!(
        failed
            .stderr
            .contains("zfs_pool.home:import: skipped, because vm.nfs@g1:fence failed")
            && failed
                .stderr
                // A saved plan records its spec's absolute path, and the hint names it.
                .contains(&format!(
                    "Run `ferry apply {}` again to resume",
                    world.work.join("data100").display()
                )),
        "{report}"
    );
    let events = world.simulator.events()[events_before..].to_vec();
    assert!(
        events.iter().all(|event| event.disks.is_empty()
            && !event.path.ends_with(&format!("{}/deallocate", vm_path(1)))),
        "no disk request and no deallocation: {events:#?}"
    );

    world.simulator.clear_faults();
    world.break_api_server(1);
    let refused_from = world.simulator.events().len();
    let refused = world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(1, "the saved plan once ARM reads the old VM again");
    let stale = refused
        .stderr
        .lines()
        .find(|line| line.starts_with("  vm.nfs@g1: was unknown: "))
        .unwrap_or_else(|| panic!("the old VM's change is named: {}", refused.shown()));
    assert!(stale.ends_with(", now present, healthy"), "{stale}");
    assert!(
        // After the header that names the deployment and the saved plan.
        refused
            .stderr
            .starts_with("Deployment data100, generation 1 serves")
            && refused.stderr.contains(
                "\nerror: the world changed since this plan was made, so it is not applied:"
            )
            && refused.stderr.contains("make a new plan with ferry plan"),
        "{}",
        refused.shown()
    );
    assert!(
        world.simulator.events()[refused_from..]
            .iter()
            .all(|event| event.method == "GET"),
        "the refused apply only read"
    );

    let resumed = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the new plan's apply");
    assert!(
        resumed
            .stdout
            .starts_with("Failover from generation 1 to generation 2\n"),
        "the same failover: {}",
        resumed.shown()
    );
    let fence = shown_step(&resumed.stdout, "fence vm.nfs@g1");
    for disk in 0..4 {
        let detach = shown_step(&resumed.stdout, &format!("detach disk.home{disk}"));
        assert!(detach.warnings().is_empty(), "{:#?}", detach.lines);
        assert_eq!(detach.after(), vec![fence.number], "{:#?}", detach.lines);
    }
    assert!(
        !resumed.stderr.contains("force-detaching"),
        "{}",
        resumed.shown()
    );
    assert!(
        resumed.stderr.contains("Generation 2 serves"),
        "{}",
        resumed.shown()
    );
    let events = world.simulator.events()[events_before..].to_vec();
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

/// data100 with a warm standby (`specs/data100/warm`) on the same servers: the first apply
/// builds generation 1 and the standby (generation 2's cluster, NFS VM, network, addresses and
/// idle hubs, serving TLS at the standby's ingress before any failover), the failover creates
/// nothing, only moves the disks and the pool, activates the hubs and repoints DNS, and the
/// next apply builds generation 3's standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_standby_takes_the_service_with_nothing_built_at_the_failover() {
    let world = World::start_with(WorldSettings {
        spec: "specs/data100/warm",
        ..WorldSettings::default()
    })
    .await;
    let (files, sums) = world.build_generation_one();
    let state = world.simulator.dump_state();
    assert!(
        ferry_servers::group_exists(&state, "data100-g2"),
        "the standby is built"
    );
    assert_eq!(
        world
            .ferry(&["plan", "data100", "--detailed-exitcode"], true)
            .expect_code(0, "generation 1 and its standby converged")
            .stdout
            .lines()
            .filter(|line| line.starts_with("Standby: generation 2 (8 resources)"))
            .count(),
        1
    );
    world.break_api_server(1);

    let plan = world.saved_plan("failover.plan", &[]);
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
    assert!(
        !plan
            .steps
            .iter()
            .any(|step| matches!(step.action, ferry_core::Action::Create)),
        "the standby is built: {:?}",
        ids(&plan)
    );
    assert_eq!(
        plan.recovery_cached.as_ref().map(|cached| cached.seconds),
        Some(300)
    );
    assert_after(&plan, "zfs_pool.home:import", "hook.staging_active@g2:run");
    let before = world.simulator.events().len();
    world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(0, "the failover onto the standby");
    let events = world.simulator.events()[before..].to_vec();
    assert_simulator_order_onto_standby(&events, 1, 2);
    world.assert_served_by_tools_from(2, &files, &sums);

    // Right after the failover the only plan left is generation 3's standby.
    let next = world.saved_plan("standby.plan", &[]);
    assert!(next.failover.is_none());
    assert_eq!(
        next.standby.as_ref().map(|standby| standby.generation),
        Some(3)
    );
    assert!(
        next.steps
            .iter()
            .all(|step| step.address.generation == Some(3)),
        "{:?}",
        ids(&next)
    );
    world
        .ferry(&["apply", "standby.plan"], false)
        .expect_code(0, "generation 3's standby");
    world
        .ferry(&["plan", "data100", "--detailed-exitcode"], true)
        .expect_code(0, "nothing left after the standby is rebuilt");
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
    // A quota is raised by a person: the advice says so, not "apply again".
    assert!(
        failed.stderr.contains("request a higher quota")
            && failed.stderr.contains(&format!(
                "Once each failure above is dealt with as it says, run `ferry apply {}`",
                world.work.join("data100").display()
            ))
            && !failed.stderr.contains("again to resume"),
        "the report says what to do about the quota, then how to resume: {report}"
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
    // The cluster ARM left Failed is built again (replaced, as a tainted resource is).
    let done = resumed.steps_done();
    assert!(
        done.contains(&"aks_cluster.hub@g2:create".to_owned())
            || done.contains(&"aks_cluster.hub@g2:replace".to_owned()),
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
