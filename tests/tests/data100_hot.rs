//! data100 with a hot standby (`specs/data100/hot`) through the `ferry` binary on real
//! servers: the ARM simulator in this process, BIND, the hub stand-in, and a ZFS host of its
//! own per simulated VM (`ferry_servers::VmHosts`: its zfs-fuse and sshd, started when the
//! simulator says the VM runs, killed when it powers the VM off), so that the pool on
//! generation 1's NFS VM and its replica, a pool of the same name on generation 2's, are two
//! real pools on two hosts.
//!
//! A writer keeps writing files with checksums on the primary for the whole test, each
//! acknowledged only once fsynced (what an NFS server does before it answers a write); after
//! the failover, every file the failover promised to keep is read back on the new primary.
//! - A planned failover (the AKS API server dies, the NFS VM is fine) hands over: nothing
//!   acknowledged is lost, and the old primary becomes a read-only replica.
//! - The NFS VM dies with the API server: the failover fences it and promotes the replica;
//!   what is lost is at most what was written since the last replication round, and the plan
//!   said so beforehand. The failback then finds the old primary's diverged pool on the disks
//!   it moves: it refuses to overwrite it and says how to settle it; once settled, it seeds.

mod real_servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::Action;
use real_servers::*;
use sha2::{Digest, Sha256};

/// Where the writer writes, below the home directories' root on the NFS VM.
const WRITER_FOLDER: &str = "prod/writer";

/// One file the writer wrote and fsynced: its name, SHA-256 and when it was acknowledged.
#[derive(Debug, Clone)]
struct Acknowledged {
    name: String,
    sum: String,
    at: Instant,
}

/// Writes files into the primary's pool until stopped or until a write fails (the pool went
/// read-only, or its host died).
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Vec<Acknowledged>>>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Writer {
    fn start(folder: PathBuf) -> Writer {
        std::fs::create_dir_all(&folder).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
            std::thread::spawn(move || {
                use std::io::Write;
                for index in 0u32.. {
                    if stop.load(Ordering::SeqCst) {
                        return "stopped".to_owned();
                    }
                    let size = 4096 + (index as usize * 7919) % 60_000;
                    let data: Vec<u8> = (0..size)
                        .map(|byte| {
                            (byte as u32).wrapping_mul(2654435761).wrapping_add(index) as u8
                        })
                        .collect();
                    let name = format!("w-{index:05}.bin");
                    let result = std::fs::File::create(folder.join(&name)).and_then(|mut file| {
                        file.write_all(&data)?;
                        file.sync_all()
                    });
                    if let Err(error) = result {
                        return format!("{name}: {error}");
                    }
                    written.lock().unwrap().push(Acknowledged {
                        name,
                        sum: format!("{:x}", Sha256::digest(&data)),
                        at: Instant::now(),
                    });
                    std::thread::sleep(Duration::from_millis(20));
                }
                unreachable!()
            })
        };
        Writer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.written.lock().unwrap().len()
    }

    /// Waits until it has written `more` files more than now.
    fn wait_for(&self, more: usize) {
        let wanted = self.count() + more;
        let started = Instant::now();
        while self.count() < wanted {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer wrote {} of {wanted} files in a minute",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (if it still writes) and returns why it stopped and what it acknowledged.
    fn finish(mut self) -> (String, Vec<Acknowledged>) {
        self.stop.store(true, Ordering::SeqCst);
        let why = self.thread.take().unwrap().join().unwrap();
        let written = self.written.lock().unwrap().clone();
        (why, written)
    }
}

/// Each acknowledged file's SHA-256 as found in `folder` (missing files have none).
fn read_back(folder: &Path, written: &[Acknowledged]) -> BTreeMap<String, String> {
    written
        .iter()
        .filter_map(|file| {
            let data = std::fs::read(folder.join(&file.name)).ok()?;
            Some((file.name.clone(), format!("{:x}", Sha256::digest(&data))))
        })
        .collect()
}

/// Every acknowledged file is on the NFS VM of `generation` with its checksum.
fn assert_nothing_lost(world: &World, generation: u32, written: &[Acknowledged], case: &str) {
    let found = read_back(&writer_folder(world, generation), written);
    let lost: Vec<&str> = written
        .iter()
        .filter(|file| found.get(&file.name) != Some(&file.sum))
        .map(|file| file.name.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "{case}: {} of {} acknowledged files lost or changed: {lost:?}",
        lost.len(),
        written.len()
    );
}

async fn hot_world() -> World {
    World::start_with(WorldSettings {
        spec: "specs/data100/hot",
        vm_hosts: true,
        ..WorldSettings::default()
    })
    .await
}

/// The writer's folder as the NFS VM of `generation` sees it, from here.
fn writer_folder(world: &World, generation: u32) -> PathBuf {
    world
        .hosts
        .path(
            &format!("data100-nfs-g{generation}"),
            &Path::new(VM_HOME_ROOT).join(WRITER_FOLDER),
        )
        .unwrap()
}

/// A `zfs get` of the pool on the NFS VM of `generation`.
fn pool_property(world: &World, generation: u32, property: &str) -> String {
    world
        .hosts
        .run(
            &format!("data100-nfs-g{generation}"),
            "zfs",
            &["get", "-H", "-o", "value", property, POOL],
        )
        .unwrap()
        .trim()
        .to_owned()
}

/// The first apply builds generation 1 and the hot standby, whose replica is seeded: a
/// read-only pool of the same name on generation 2's own host and disks.
async fn build_with_replica(world: &World) {
    world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "generation 1 and its hot standby");
    assert_eq!(pool_property(world, 1, "readonly"), "off");
    assert_eq!(pool_property(world, 2, "readonly"), "on");
    assert_eq!(pool_property(world, 2, "ferry:role"), "replica");
    let status = world
        .hosts
        .run("data100-nfs-g2", "zpool", &["status", POOL])
        .unwrap();
    for lun in 4..8 {
        assert!(
            status.contains(&format!("data100-nfs-g2/scsi1/lun{lun}")),
            "the replica is on the standby's own disks (lun4..7):\n{status}"
        );
    }
}

/// The AKS API server dies, the NFS VM is fine: the failover hands the pool over (a last
/// increment, then roles swap), moves no disk, and every file the writer had acknowledged is
/// on the new primary with its checksum. The next apply is the failback: it builds generation
/// 3, fences the old VM, moves its disks there and makes them the next replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_hot_failover_hands_over_and_loses_nothing_the_writer_was_told_was_written() {
    let world = hot_world().await;
    build_with_replica(&world).await;
    let writer = Writer::start(writer_folder(&world, 1));
    writer.wait_for(10);
    world
        .ferry(&["replicate", "data100"], true)
        .expect_code(0, "a replication round");
    writer.wait_for(10);
    world.break_api_server(1);

    let (shown, saved) = world.shown_and_saved_plan("failover.plan", &[]);
    let plan = saved.plan;
    assert_eq!(plan.failover.as_ref().map(|f| f.to_generation), Some(2));
    let promote = step(&plan, "zfs_pool.home:promote");
    assert!(
        promote.inputs.get("hand_over_from").is_some(),
        "{promote:#?}"
    );
    assert!(
        !ids(&plan).iter().any(|id| id.starts_with("disk.")),
        "a hot failover moves no disk: {:?}",
        ids(&plan)
    );
    assert!(
        !ids(&plan).contains(&"vm.nfs@g1:fence".to_owned()),
        "{:?}",
        ids(&plan)
    );
    assert_eq!(
        plan.data_loss.as_ref().and_then(|loss| loss.seconds),
        Some(0)
    );
    assert!(shown.stdout.contains("Data lost: none"), "{}", shown.stdout);
    world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(0, "the hand-over");
    let (why, written) = writer.finish();
    assert!(written.len() >= 20, "{why}");

    // Every acknowledged file, on the new primary, unchanged.
    assert_nothing_lost(
        &world,
        2,
        &written,
        &format!("the hand-over (the writer stopped: {why})"),
    );
    assert_eq!(pool_property(&world, 2, "readonly"), "off");
    assert_eq!(pool_property(&world, 1, "readonly"), "on");
    assert_eq!(pool_property(&world, 1, "ferry:role"), "replica");
    world.assert_served_by_tools_from_hot(2);

    // The failback: the next standby, with the old primary's disks as its replica.
    let failback = world.saved_plan("failback.plan", &[]);
    assert!(failback.failover.is_none());
    for id in [
        "vm.nfs@g1:fence",
        "zfs_pool.home@g3:create",
        "vm.nfs@g3:create",
    ] {
        step(&failback, id);
    }
    assert_after(&failback, "vm.nfs@g1:fence", "zfs_pool.home@g3:create");
    world
        .ferry(&["apply", "failback.plan"], false)
        .expect_code(0, "the failback");
    assert!(
        !world
            .vm_hosts()
            .running()
            .contains(&"data100-nfs-g1".to_owned()),
        "the fenced VM's host is powered off: {:?}",
        world.vm_hosts().running()
    );
    assert_eq!(pool_property(&world, 3, "readonly"), "on");
    assert_eq!(pool_property(&world, 3, "ferry:role"), "replica");
    assert!(!ferry_servers::group_exists(
        &world.simulator.dump_state(),
        "data100-g1"
    ));
    world
        .ferry(&["plan", "data100", "--detailed-exitcode"], true)
        .expect_code(0, "nothing left after the failback");
}

/// The NFS VM dies with the API server (its host is killed while ARM still says it runs): the
/// failover cannot hand over, so it fences the VM and promotes the replica, and says before
/// it runs how much it loses. Every file acknowledged before the last replication round
/// began is on the new primary with its checksum; what is missing was written after it, and
/// the writes lost span less than the replica interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_failover_from_a_dead_primary_loses_at_most_the_writes_since_the_last_round() {
    let world = hot_world().await;
    build_with_replica(&world).await;
    let writer = Writer::start(writer_folder(&world, 1));
    let mut last_round = Instant::now();
    for _ in 0..3 {
        writer.wait_for(8);
        last_round = Instant::now();
        world
            .ferry(&["replicate", "data100"], true)
            .expect_code(0, "a replication round");
    }
    writer.wait_for(8);
    assert!(world.vm_hosts().crash("data100-nfs-g1"));
    let (why, written) = writer.finish();
    world.break_api_server(1);

    let (shown, saved) = world.shown_and_saved_plan("failover.plan", &[]);
    let plan = saved.plan;
    let promote = step(&plan, "zfs_pool.home:promote");
    assert!(
        promote.inputs.get("hand_over_from").is_none(),
        "{promote:#?}"
    );
    assert_after(&plan, "vm.nfs@g1:fence", "zfs_pool.home:promote");
    assert!(
        !plan
            .steps
            .iter()
            .any(|step| step.address.to_string().starts_with("disk.")
                && step.action != Action::Retire),
        "{:?}",
        ids(&plan)
    );
    let loss = plan.data_loss.clone().expect("the plan says what is lost");
    assert!(
        loss.seconds.is_some_and(|seconds| seconds <= 30),
        "{loss:?}"
    );
    assert!(shown.stdout.contains("Data lost:"), "{}", shown.stdout);
    world
        .ferry(&["apply", "failover.plan"], false)
        .expect_code(0, "the fenced promotion");

    let found = read_back(&writer_folder(&world, 2), &written);
    let kept: Vec<&Acknowledged> = written.iter().filter(|file| file.at < last_round).collect();
    let broken: Vec<&str> = kept
        .iter()
        .filter(|file| found.get(&file.name) != Some(&file.sum))
        .map(|file| file.name.as_str())
        .collect();
    assert!(
        broken.is_empty(),
        "files acknowledged before the last round began, lost or changed: {broken:?}"
    );
    assert!(
        kept.len() >= 24,
        "{} files before the last round",
        kept.len()
    );
    let last = written.last().expect("the writer wrote").at;
    let first_lost = written
        .iter()
        .find(|file| found.get(&file.name) != Some(&file.sum))
        .map(|file| file.at);
    let lost_seconds = first_lost.map_or(0.0, |first| last.duration_since(first).as_secs_f64());
    assert!(
        lost_seconds <= 30.0,
        "{lost_seconds:.1} s of writes lost (the writer stopped: {why})"
    );
    assert_eq!(pool_property(&world, 2, "readonly"), "off");
    assert!(
        !world
            .vm_hosts()
            .running()
            .contains(&"data100-nfs-g1".to_owned()),
        "the old NFS VM stays down"
    );
    world.assert_served_by_tools_from_hot(2);

    // The failback moves the old primary's disks onto generation 3, whose seed finds there a
    // writable pool that may hold writes the new primary never got: it is refused, never
    // rolled back, and the error says what to do. Done as it says, the next apply seeds.
    let refused = world.ferry(&["apply", "data100", "--auto-approve"], true);
    assert_ne!(refused.code, 0, "{}", refused.shown());
    let output = format!("{}{}", refused.stdout, refused.stderr);
    for wanted in [
        "refused to seed the replica on vm.nfs@g3",
        "ferry never rolls back or overwrites it",
        &format!("zpool destroy {POOL}"),
    ] {
        assert!(output.contains(wanted), "`{wanted}` in:\n{output}");
    }
    // Left as it was found, writable, for the operator to copy from.
    assert_eq!(pool_property(&world, 3, "readonly"), "off");
    world
        .hosts
        .run("data100-nfs-g3", "zpool", &["destroy", POOL])
        .unwrap();
    world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "the failback, once the diverged pool is settled");
    assert_eq!(pool_property(&world, 3, "ferry:role"), "replica");
    world
        .ferry(&["plan", "data100", "--detailed-exitcode"], true)
        .expect_code(0, "nothing left after the failback");
}

/// When, in the hand-over, the failover is killed with SIGKILL.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once the journal records the promote's start, before anything is handed over.
    PromoteStarted,
    /// Once the promote reports that the last increment reached the replica: the old primary
    /// has stopped serving and the new one is current, and the roles are being swapped.
    LastIncrementSent,
    /// Once the journal records the promote's end.
    PromoteFinished,
}

/// Runs `ferry apply PLAN` and kills it with SIGKILL at `at`; returns its error output.
fn apply_killed_at(world: &World, plan: &str, at: KillAt) -> String {
    use std::process::Stdio;
    let log = world.work.join(format!("killed-{at:?}.log"));
    let journal = world.work.join("data100/.ferry/journal.jsonl");
    let before = std::fs::read_to_string(&journal).unwrap_or_default().len();
    let mut child = world
        .command(&["apply", plan], false)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let journaled = |event: &str| {
        std::fs::read_to_string(&journal).unwrap_or_default()[before..]
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .any(|record| record["event"] == event && record["step"] == "zfs_pool.home:promote")
    };
    let started = Instant::now();
    loop {
        let due = match at {
            KillAt::PromoteStarted => journaled("step_started"),
            KillAt::LastIncrementSent => std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("the last increment"),
            KillAt::PromoteFinished => journaled("step_finished"),
        };
        if due {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the apply ended before {at:?}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{at:?} not reached"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(&log).unwrap_or_default()
}

/// The writable pools among the running NFS VMs: at most one may be, ever.
fn writable_pools(world: &World, generations: &[u32]) -> Vec<u32> {
    generations
        .iter()
        .copied()
        .filter(|generation| {
            world
                .hosts
                .run(
                    &format!("data100-nfs-g{generation}"),
                    "zfs",
                    &["get", "-H", "-o", "value", "readonly", POOL],
                )
                .is_ok_and(|value| value.trim() == "off")
        })
        .collect()
}

/// A hot failover by hand-over killed with SIGKILL at each moment of its promotion, then
/// recovered as the README says (`ferry force-unlock`, `ferry apply` again): at no moment are
/// two pools writable, and once resumed the service is back on the standby with every file
/// the writer was told was written, whatever the moment. Each case fails over one way and
/// back (the failback makes the next standby), so the three cases chain in one world: g1 to
/// g2, g2 to g3, g3 to g4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_killed_at_any_moment_resumes_with_one_writable_pool_and_nothing_lost() {
    let world = hot_world().await;
    build_with_replica(&world).await;
    let mut serving = 1;
    for at in [
        KillAt::PromoteStarted,
        KillAt::LastIncrementSent,
        KillAt::PromoteFinished,
    ] {
        let standby = serving + 1;
        let writer = Writer::start(writer_folder(&world, serving));
        writer.wait_for(10);
        world.break_api_server(serving);
        world
            .ferry(&["plan", "data100", "-o", "failover.plan"], true)
            .expect_code(0, "the failover's plan");
        let shown = apply_killed_at(&world, "failover.plan", at);
        let writable = writable_pools(&world, &[serving, standby]);
        assert!(
            writable.len() <= 1,
            "{at:?}: two writable pools, on generations {writable:?}:\n{shown}"
        );
        let (why, written) = writer.finish();

        // The dead apply's lock is force-unlocked, and the next apply finishes the failover.
        world.force_unlock(&format!("{at:?}"));
        let resumed = world.ferry(&["apply", "data100", "--auto-approve"], true);
        assert_eq!(resumed.code, 0, "{at:?}: {}", resumed.shown());
        assert_eq!(
            writable_pools(&world, &[serving, standby]),
            vec![standby],
            "{at:?}: the standby serves"
        );
        assert_nothing_lost(
            &world,
            standby,
            &written,
            &format!("{at:?} (the writer stopped: {why})"),
        );
        world.assert_served_by_tools_from_hot(standby);

        // The failback, which builds the next standby from the old primary's disks.
        world
            .ferry(&["apply", "data100", "--auto-approve"], true)
            .expect_code(0, "the failback");
        world
            .ferry(&["plan", "data100", "--detailed-exitcode"], true)
            .expect_code(0, "nothing left after the failback");
        serving = standby;
    }
}
