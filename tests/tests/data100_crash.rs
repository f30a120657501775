//! Crash-safe resume on real servers (safety invariant 9): the data100 failover through the
//! `ferry` binary against the ARM simulator, BIND, sshd and zfs-fuse, killed with SIGKILL at
//! points found by watching its journal (an Azure operation in flight, the pool's import
//! under way, a hook running), then recovered as the README says: `ferry force-unlock` of the
//! dead holder's lock and `ferry apply` again.
//!
//! The outcome is checked by tools that are not ferry: every file's checksum matches, `dig`
//! answers the new address, `curl` verifies TLS; the pool's own history (`zpool history`)
//! shows it imported exactly once, on the new VM's disks, and exported at most once before;
//! the simulator's record shows every disk moved once, the old VM deallocated once, the new
//! cluster created once and not one changing request refused, so nothing was sent twice
//! where Azure would reject or duplicate it; and the journal shows no finished step run
//! again. zfs-fuse must already run (`cargo xtask test` starts it).

mod real_servers;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ferry_sim::SimEvent;
use real_servers::*;
use serde_json::Value;

/// Where to kill: a test on the records the apply has journaled so far.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Once this step's Azure operation is recorded: the request was accepted and the
    /// operation runs in ARM.
    OperationInFlight(&'static str),
    /// This long after this step started (the step's command is then running).
    WhileRunning(&'static str, Duration),
}

impl KillPoint {
    fn reached(self, records: &[Value]) -> bool {
        let recorded = |event: &str, id: &str| {
            records
                .iter()
                .any(|record| record["event"] == event && record["step"] == id)
        };
        match self {
            KillPoint::OperationInFlight(id) => recorded("operation_recorded", id),
            KillPoint::WhileRunning(id, _) => recorded("step_started", id),
        }
    }

    fn then_wait(self) -> Duration {
        match self {
            KillPoint::OperationInFlight(_) => Duration::ZERO,
            KillPoint::WhileRunning(_, wait) => wait,
        }
    }
}

fn journal(world: &World) -> Vec<Value> {
    std::fs::read_to_string(world.work.join("data100/.ferry/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Kills the failover at `point`, recovers, and checks everything above.
async fn kill_and_recover(point: KillPoint) {
    let world = World::start().await;
    let (files, sums) = world.build_generation_one();
    world.break_api_server(1);
    let history_before = zpool_history().len();
    let events_before = world.simulator.events().len();
    let journal_before = journal(&world).len();

    let log = world.work.join("killed-apply.log");
    let mut child = world
        .command(&["apply", "data100", "--auto-approve"], true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let records = journal(&world);
        if point.reached(&records[journal_before.min(records.len())..]) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{point:?}: the apply ended ({status}) before the kill point:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{point:?}: not reached:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(point.then_wait());
    assert!(
        child.try_wait().unwrap().is_none(),
        "{point:?}: the apply must still run when it is killed"
    );
    child.kill().unwrap(); // SIGKILL: no handler, no cleanup.
    child.wait().unwrap();
    let killed_records = journal(&world).len() - journal_before;

    // The dead apply's lock is reported stale, never taken over silently.
    let refused = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(1, "an apply while the dead one's lock is held");
    assert!(
        refused.stderr.contains("holds a stale lock") && refused.stderr.contains("no longer runs"),
        "{point:?}: {}",
        refused.shown()
    );
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(world.work.join("data100/.ferry/lock.json")).unwrap(),
    )
    .unwrap();
    world
        .ferry(
            &["force-unlock", lock["id"].as_str().unwrap(), "data100"],
            false,
        )
        .expect_code(0, "force-unlock");
    let resumed = world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the apply after the crash");
    assert!(
        resumed.stderr.contains("Generation 2 serves"),
        "{point:?}: {}",
        resumed.shown()
    );

    // Files, DNS, TLS, the pool on the new VM's disks, the old group gone, nothing left to do.
    world.assert_served_from(2, &files, &sums);
    check_pool_history(point, &zpool_history()[history_before..]);
    check_simulator(point, &world.simulator.events()[events_before..]);
    check_journal(point, &journal(&world)[journal_before..], killed_records);
}

/// Imported exactly once in the failover, from the new VM's device folder, after at most one
/// export: never imported where it already was, never imported on two hosts.
fn check_pool_history(point: KillPoint, history: &[String]) {
    let imports: Vec<&String> = history
        .iter()
        .filter(|command| command.starts_with("zpool import"))
        .collect();
    assert_eq!(imports.len(), 1, "{point:?}: one import: {history:#?}");
    assert!(
        imports[0].contains("data100-nfs-g2/scsi1"),
        "{point:?}: imported from the new VM's disks: {history:#?}"
    );
    let exports: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, command)| command.starts_with("zpool export"))
        .map(|(index, _)| index)
        .collect();
    let import = history
        .iter()
        .position(|command| command.starts_with("zpool import"))
        .unwrap();
    assert!(
        exports.len() <= 1 && exports.iter().all(|&export| export < import),
        "{point:?}: exported at most once, before the import: {history:#?}"
    );
}

/// What ARM saw over the killed apply and the one that finished it.
fn check_simulator(point: KillPoint, events: &[SimEvent]) {
    let count = |wanted: &dyn Fn(&SimEvent) -> bool| events.iter().filter(|e| wanted(e)).count();
    // ARM refuses a change to a group while a move locks it (`ScopeLocked`), and ferry waits
    // and retries: that is the failover's normal course. Any other refusal of a change would
    // be a request ARM rejects, such as a second move or attach of the same disk.
    let refused: Vec<&SimEvent> = events
        .iter()
        .filter(|event| {
            event.what == "request"
                && event.method != "GET"
                && (event.outcome.starts_with('4') || event.outcome.starts_with('5'))
                && event.code.as_deref() != Some("ScopeLocked")
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{point:?}: no change refused but for a retry while a move locks a group: {refused:#?}"
    );
    // Each disk moved exactly once, whichever request carried it (several disks share one).
    let moves = "/resourceGroups/data100-g1/moveResources";
    let records = ferry_sim::disk_records(events);
    for disk in DISKS {
        let record = records.get(disk);
        assert!(
            record.is_some_and(|record| record.move_requests.len() == 1 && record.moved.len() == 1),
            "{point:?}: {disk} moved once: {record:?}\n{events:#?}"
        );
    }
    assert!(
        count(&|event| event.what == "request" && event.path.ends_with(moves)) <= 4,
        "{point:?}: at most one move request per disk: {events:#?}"
    );
    let deallocate = format!("{}/deallocate", vm_path(1));
    assert_eq!(
        count(&|event| event.what == "request" && event.path.ends_with(&deallocate)),
        1,
        "{point:?}: the fence's deallocation requested once: {events:#?}"
    );
    let cluster = "/resourceGroups/data100-g2/providers/Microsoft.ContainerService/managedClusters/data100-hub";
    assert_eq!(
        count(&|event| event.what == "request"
            && event.method == "PUT"
            && event.path.ends_with(cluster)),
        1,
        "{point:?}: the new cluster created once: {events:#?}"
    );
    let old_group = "/resourceGroups/data100-g1";
    assert_eq!(
        count(&|event| event.what == "request"
            && event.method == "DELETE"
            && event.path.ends_with(old_group)),
        1,
        "{point:?}: the old group deleted once: {events:#?}"
    );
    // No disk leaves the old VM before the fence, none moves before its detach ended, and
    // none reaches the new VM before it moved: the order held across the crash.
    let fenced = events
        .iter()
        .position(|event| {
            event.what == "operation"
                && event.path.ends_with(&deallocate)
                && event.outcome == "Succeeded"
        })
        .expect("the fence ended");
    if let Err(broken) = ferry_sim::check_failover_order(events, fenced, &DISKS) {
        panic!("{point:?}: {broken}\n{events:#?}");
    }
}

/// No step the journal recorded as finished ran again, and the finishing apply ended complete.
fn check_journal(point: KillPoint, records: &[Value], killed_len: usize) {
    let mut finished: BTreeSet<&str> = BTreeSet::new();
    for record in records {
        let step = record["step"].as_str().unwrap_or_default();
        match record["event"].as_str() {
            Some("step_started") => {
                assert!(
                    !finished.contains(step),
                    "{point:?}: {step} ran again after the journal recorded it finished"
                );
            }
            Some("step_finished") if record["result"].get("ok").is_some() => {
                finished.insert(step);
            }
            _ => {}
        }
    }
    assert!(
        !records[..killed_len]
            .iter()
            .any(|record| record["event"] == "apply_finished"),
        "{point:?}: the killed apply journaled an end"
    );
    let last = records.last().unwrap();
    assert_eq!(last["event"], "apply_finished", "{point:?}");
    assert_eq!(last["complete"], true, "{point:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_fence_deallocates_the_old_vm() {
    kill_and_recover(KillPoint::OperationInFlight("vm.nfs@g1:fence")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_a_disk_move() {
    kill_and_recover(KillPoint::OperationInFlight("disk.home1:move")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_the_pool_import() {
    kill_and_recover(KillPoint::WhileRunning(
        "zfs_pool.home:import",
        Duration::from_millis(150),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_hook_deploys_the_hub() {
    kill_and_recover(KillPoint::WhileRunning(
        "hook.staging_hub@g2:run",
        Duration::from_millis(100),
    ))
    .await;
}
