//! A hot standby's data on two real ZFS hosts (the harness of `zfs_two_hosts.rs`: each host its
//! own zfs-fuse daemon, sshd and host id), each with a pool on its own disk: host A's is the
//! primary, host B's the replica that ferry keeps current with incremental sends
//! (`ferry_zfs::replication`), and promotes once A is gone.
//!
//! The writer test keeps writing files with checksums on the primary for the whole test, while
//! replication rounds run; then host A is killed (`kill -9` of its daemon and sshd, a VM
//! powered off) in the middle of the writes, and B is promoted. Every file whose write had
//! finished before the last complete round began is on B with its checksum, and the loss is
//! measured (printed, never asserted against a clock). The other tests are the refusals: a
//! receive into a writable pool, a promotion beside a primary that still answers, two pools
//! receiving from each other, a replica that diverged, a round cut in the middle of its
//! stream, after which the replica is still usable, and a round that finds another round of
//! the pool running on the primary, which is skipped and harms nothing.

mod zfs_hosts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ferry_zfs::replication::{self, PoolEnd, ReplicationError};
use ferry_zfs::ssh::{HostKeys, SshConnection, SshTarget, SshTimeouts};
use zfs_hosts::*;

/// Host A's pool on lun0 and host B's on lun1, both named like the primary (two VMs each see
/// only their own disks; here both see both, and each daemon only ever imports its own).
struct Pair {
    hosts: TwoHosts,
    a: SshConnection,
    b: SshConnection,
}

impl Pair {
    fn start() -> Pair {
        let hosts = TwoHosts::start(2);
        let mountpoint = hosts.mountpoint().display().to_string();
        for (host, lun) in [(&hosts.a, 0), (&hosts.b, 1)] {
            let disk = hosts
                .devices
                .join(format!("lun{lun}"))
                .display()
                .to_string();
            host.zpool_ok(&["create", "-m", &mountpoint, &hosts.pool, &disk]);
        }
        hosts.a.zfs_ok(&["create", &format!("{}/prod", hosts.pool)]);
        let connection = |identity: HostIdentity| {
            SshConnection::new(
                SshTarget {
                    address: identity.address.to_string(),
                    port: hosts.port,
                    user: "root".to_owned(),
                    key_file: Some(hosts.user_key.clone()),
                    host_keys: HostKeys::KnownHostsFile(hosts.known_hosts.clone()),
                },
                SshTimeouts {
                    connect: Duration::from_secs(5),
                    command: Duration::from_secs(60),
                },
            )
        };
        let (a, b) = (connection(HOST_A), connection(HOST_B));
        Pair { hosts, a, b }
    }

    fn primary(&self) -> PoolEnd<'_> {
        PoolEnd {
            connection: &self.a,
            pool: &self.hosts.pool,
        }
    }

    fn replica(&self) -> PoolEnd<'_> {
        PoolEnd {
            connection: &self.b,
            pool: &self.hosts.pool,
        }
    }

    /// Where host `host` sees the `prod` dataset.
    fn prod(&self, host: &ZfsHost) -> PathBuf {
        host.path(&self.hosts.mountpoint().join("prod"))
    }
}

/// One file the writer finished: its checksum, and when its write (fsynced) had ended.
#[derive(Debug, Clone)]
struct Written {
    sum: String,
    done: Instant,
}

/// Writes numbered files into `folder` (fsynced, as an NFS server does before it acknowledges)
/// until `stop` is set or a write fails (the host died); returns every file it finished.
fn writer(folder: PathBuf, stop: Arc<AtomicBool>, log: Arc<Mutex<BTreeMap<String, Written>>>) {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    for index in 0u32.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let size = 4096 + (index as usize % 7) * 9000;
        let data: Vec<u8> = (0..size)
            .map(|byte| (byte as u32).wrapping_mul(2654435761).wrapping_add(index) as u8)
            .collect();
        let name = format!("w{index:06}.bin");
        let written = std::fs::File::create(folder.join(&name)).and_then(|mut file| {
            file.write_all(&data)?;
            file.sync_all()
        });
        if written.is_err() {
            return;
        }
        log.lock().unwrap().insert(
            name,
            Written {
                sum: format!("{:x}", Sha256::digest(&data)),
                done: Instant::now(),
            },
        );
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn sum_of(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    std::fs::read(path)
        .ok()
        .map(|data| format!("{:x}", Sha256::digest(&data)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_loses_only_what_followed_the_last_complete_round() {
    let mut pair = Pair::start();
    replication::mark_replica(pair.replica()).await.unwrap();
    // The first round is a full send of each dataset.
    let first = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        first.bases,
        BTreeMap::from([("".to_owned(), None), ("prod".to_owned(), None)])
    );
    // ferry's zfs_pool provider reads the replica (host g2, B) as imported and whole, but
    // serving nobody: unhealthy, with the reason, never "no changes".
    let provider = fixture(&pair.hosts);
    let replica = provider.read(2).await;
    assert_eq!(
        replica.attribute("replication_role"),
        Some(&serde_json::json!("replica"))
    );
    let ferry_core::Observation::Present {
        health: ferry_core::Health::Unhealthy { reason },
        ..
    } = &replica
    else {
        panic!("the replica reads {replica:?}");
    };
    insta::assert_snapshot!(reason, @"the pool takes no writes (readonly=on, ferry:role=replica): it is a replica or was handed over; promote it, or hand the service back to it");
    assert!(provider.read(1).await.is_healthy());

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let writing = std::thread::spawn({
        let (folder, stop, log) = (pair.prod(&pair.hosts.a), stop.clone(), log.clone());
        move || writer(folder, stop, log)
    });
    // Rounds every 300 ms (a one-minute interval, scaled), each an increment from the last.
    let mut last_started = None;
    let mut durations = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
            .await
            .unwrap();
        durations.push(started.elapsed().as_secs_f64());
        assert!(round.bases.values().all(Option::is_some), "{round:?}");
        assert_eq!(round.pruned, 2, "the previous snapshot goes on both sides");
        last_started = Some(started);
    }
    let status = replication::status(pair.primary(), pair.replica())
        .await
        .unwrap();
    assert_eq!((status.datasets, status.primary_datasets), (2, 2));
    assert!(status.lag_seconds().is_some());

    // Host A dies in the middle of the writes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    pair.hosts.a.crash();
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();

    let promotion = replication::promote(pair.replica(), pair.primary())
        .await
        .unwrap();
    assert!(!promotion.already_promoted);
    let promoted = provider.read(2).await;
    assert!(promoted.is_healthy(), "{promoted:?}");
    assert_eq!(
        promoted.attribute("replication_role"),
        Some(&serde_json::json!("primary"))
    );
    let last_started = last_started.unwrap();
    let written = log.lock().unwrap().clone();
    let prod = pair.prod(&pair.hosts.b);
    let mut checked = 0;
    let mut lost = 0;
    for (name, file) in &written {
        match sum_of(&prod.join(name)) {
            Some(sum) => {
                assert_eq!(sum, file.sum, "{name} is on the promoted replica, damaged");
                checked += 1;
            }
            None => {
                assert!(
                    file.done > last_started,
                    "{name} was written before the last complete round began, and is lost"
                );
                lost += 1;
            }
        }
    }
    assert!(checked > 0, "no file reached the replica");
    durations.sort_by(f64::total_cmp);
    eprintln!(
        "{checked} files checked, {lost} lost, {} written; the last complete round began {:.2} s before the kill; rounds took {:.2} s (median) to {:.2} s while the writer ran",
        written.len(),
        killed.duration_since(last_started).as_secs_f64(),
        durations[durations.len() / 2],
        durations[durations.len() - 1],
    );

    // Promoted: writable, a primary, and done again it changes nothing.
    std::fs::write(prod.join("after-promotion"), b"written on B").unwrap();
    let again = replication::promote(pair.replica(), pair.primary())
        .await
        .unwrap();
    assert!(again.already_promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_refuses_every_direction_but_primary_to_replica() {
    let pair = Pair::start();
    // B is not marked: a writable pool never receives.
    let refused = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReplicationError::NotAReplica { .. }),
        "{refused}"
    );
    // A pool with data of its own is never marked as a replica.
    let refused = replication::mark_replica(pair.primary()).await.unwrap_err();
    assert!(
        matches!(refused, ReplicationError::CannotMark { .. }),
        "{refused}"
    );

    replication::mark_replica(pair.replica()).await.unwrap();
    let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    // The base of the next increment is held on the primary: nobody destroys it by mistake.
    let base = format!("{}@{}", pair.hosts.pool, round.snapshot.name);
    let destroy = pair.hosts.a.zfs_output(&["destroy", "-r", &base]);
    assert!(
        !destroy.status.success(),
        "the held base {base} was destroyed"
    );
    assert!(
        String::from_utf8_lossy(&destroy.stderr).contains("busy"),
        "{}",
        String::from_utf8_lossy(&destroy.stderr)
    );
    // Backwards: B is a replica, it never sends.
    let refused = replication::replicate(pair.replica(), pair.primary(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReplicationError::NotAPrimary { .. }),
        "{refused}"
    );
    // A answers with the pool imported: B is not promoted, and stays read-only.
    let refused = replication::promote(pair.replica(), pair.primary())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReplicationError::PrimaryNotFenced { .. }),
        "{refused}"
    );
    assert_eq!(pair.hosts.b.zfs_value("readonly", &pair.hosts.pool), "on");
    insta::assert_snapshot!(pair.hosts.redact(&refused.to_string()));

    // The replica's prod loses the snapshot it shares with the primary and gains one of its
    // own: nothing is sent over it.
    let prod = format!("{}/prod", pair.hosts.pool);
    let shared = pair.hosts.b.snapshots(&prod);
    pair.hosts
        .b
        .zfs_ok(&["snapshot", &format!("{prod}@ferry-foreign")]);
    for name in shared {
        pair.hosts.b.zfs_ok(&["destroy", &format!("{prod}@{name}")]);
    }
    let refused = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReplicationError::Diverged { .. }),
        "{refused}"
    );
    assert_eq!(
        pair.hosts.b.snapshots(&prod),
        ["ferry-foreign"],
        "the replica's own snapshot is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_cut_in_its_stream_leaves_a_replica_the_next_round_and_a_promotion_use() {
    let mut pair = Pair::start();
    replication::mark_replica(pair.replica()).await.unwrap();
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    let before = write_files(&pair.prod(&pair.hosts.a));
    // A dataset that lives one round on the primary, then is destroyed there: it stays on the
    // replica, but is no longer part of it, and never holds back a promotion.
    let scratch = format!("{}/scratch", pair.hosts.pool);
    // Never mounted on A: zfs-fuse sometimes calls a dataset it mounted a moment ago busy
    // when it is destroyed (seen under load), which is not what this test is about.
    pair.hosts
        .a
        .zfs_ok(&["create", "-o", "canmount=off", &scratch]);
    let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    // The replication base is held on it too: the operator releases the hold to destroy it.
    let base = format!("{scratch}@{}", round.snapshot.name);
    let busy = pair.hosts.a.zfs_output(&["destroy", "-r", &scratch]);
    assert!(
        !busy.status.success(),
        "a dataset whose base is held was destroyed"
    );
    pair.hosts
        .a
        .zfs_ok(&["release", replication::HOLD_TAG, &base]);
    pair.hosts.a.zfs_ok(&["destroy", "-r", &scratch]);
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(pair.hosts.b.zfs_value("canmount", &scratch), "off");
    // A large increment, cut in the middle of prod's stream: the round's future is dropped
    // once host B runs the receive, as when ferry is killed, which ends both SSH commands.
    let big = pair.prod(&pair.hosts.a).join("big.bin");
    std::fs::write(&big, vec![7u8; 24 << 20]).unwrap();
    let receiving = format!("^zfs receive -F -u {}/prod$", pair.hosts.pool);
    let receive_runs = || {
        std::process::Command::new("pgrep")
            .args(["-f", &receiving])
            .output()
            .unwrap()
            .status
            .success()
    };
    {
        let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now());
        tokio::pin!(round);
        let started = Instant::now();
        loop {
            tokio::select! {
                done = &mut round => panic!("the round finished before it was cut: {done:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if receive_runs() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prod's receive never ran"
            );
        }
        // Some of the stream on its way, then the cut.
        let _ = tokio::time::timeout(Duration::from_millis(100), &mut round).await;
    }
    let newest_on_a = pair.hosts.a.snapshots(&prod_name(&pair)).pop().unwrap();
    let on_b = pair.hosts.b.snapshots(&prod_name(&pair));
    assert!(
        !on_b.contains(&newest_on_a),
        "the cut round's snapshot {newest_on_a} reached B's prod: the cut was not mid-stream"
    );
    // The next round sends again from the last common snapshot.
    let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    assert!(round.bases.values().all(Option::is_some), "{round:?}");
    pair.hosts.a.crash();
    replication::promote(pair.replica(), pair.primary())
        .await
        .unwrap();
    let prod = pair.prod(&pair.hosts.b);
    assert_eq!(read_sums(&prod, &before), before);
    assert_eq!(pair.hosts.b.zfs_value("mounted", &scratch), "no");
    assert_eq!(
        sum_of(&prod.join("big.bin")),
        sum_of_bytes(&vec![7u8; 24 << 20])
    );
}

fn prod_name(pair: &Pair) -> String {
    format!("{}/prod", pair.hosts.pool)
}

fn sum_of_bytes(data: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    Some(format!("{:x}", Sha256::digest(data)))
}

/// Every file of `log` is under `folder` with its checksum.
fn assert_all_there(folder: &Path, log: &BTreeMap<String, Written>, what: &str) {
    for (name, file) in log {
        assert_eq!(
            sum_of(&folder.join(name)).as_deref(),
            Some(file.sum.as_str()),
            "{name} {what}"
        );
    }
}

/// Runs the writer on `folder` for `rounds` replication rounds from `from` to `to`, then stops
/// it; returns what it wrote.
async fn write_while_replicating(
    folder: PathBuf,
    from: PoolEnd<'_>,
    to: PoolEnd<'_>,
    rounds: usize,
) -> BTreeMap<String, Written> {
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let writing = std::thread::spawn({
        let (stop, log) = (stop.clone(), log.clone());
        move || writer(folder, stop, log)
    });
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let round = replication::replicate(from, to, SystemTime::now())
            .await
            .unwrap();
        assert!(round.bases.values().all(Option::is_some), "{round:?}");
    }
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    log.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_hand_over_loses_nothing_and_fails_back_the_same_way() {
    let pair = Pair::start();
    replication::mark_replica(pair.replica()).await.unwrap();
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    let on_a =
        write_while_replicating(pair.prod(&pair.hosts.a), pair.primary(), pair.replica(), 3).await;

    // A hand-over cut after its last round and A's change of role (staged by hand: A stops
    // writing, the last round, A marked a replica) is finished by the call: B is promoted,
    // and nothing is sent again.
    let pool = &pair.hosts.pool;
    let prod = format!("{pool}/prod");
    for dataset in [prod.as_str(), pool] {
        pair.hosts.a.zfs_ok(&["unmount", dataset]);
    }
    pair.hosts.a.zfs_ok(&["set", "readonly=on", pool]);
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    pair.hosts.a.zfs_ok(&["set", "ferry:role=replica", pool]);
    let handed = replication::hand_over(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(handed.last_round, None);
    assert!(!handed.promotion.already_promoted);
    // B serves everything A wrote; A is B's replica now, read-only, unmounted.
    assert_all_there(
        &pair.prod(&pair.hosts.b),
        &on_a,
        "was written on A before the hand-over, and is not on B",
    );
    assert_eq!(pair.hosts.a.zfs_value("ferry:role", pool), "replica");
    assert_eq!(pair.hosts.a.zfs_value("readonly", pool), "on");
    assert_eq!(pair.hosts.b.zfs_value("ferry:role", pool), "primary");
    assert_eq!(pair.hosts.b.zfs_value("readonly", pool), "off");

    // Replication goes on the other way, from the hand-over's snapshot: no full send.
    let on_b =
        write_while_replicating(pair.prod(&pair.hosts.b), pair.replica(), pair.primary(), 2).await;
    // Fail back the same way, from a hand-over cut after B stopped writing (staged by hand):
    // B is not stopped twice, and the last round carries everything B wrote.
    for dataset in [prod.as_str(), pool] {
        pair.hosts.b.zfs_ok(&["unmount", dataset]);
    }
    pair.hosts.b.zfs_ok(&["set", "readonly=on", pool]);
    let back = replication::hand_over(pair.replica(), pair.primary(), SystemTime::now())
        .await
        .unwrap();
    assert!(back.last_round.is_some());
    let prod = pair.prod(&pair.hosts.a);
    assert_all_there(
        &prod,
        &on_a,
        "was written on A at the start, and is not on A after the failback",
    );
    assert_all_there(
        &prod,
        &on_b,
        "was written on B, and is not on A after the failback",
    );
    assert_eq!(pair.hosts.a.zfs_value("ferry:role", pool), "primary");
    assert_eq!(pair.hosts.b.zfs_value("ferry:role", pool), "replica");
    eprintln!(
        "{} files written on A, {} on B, all on A after the failback",
        on_a.len(),
        on_b.len()
    );
}

/// Safety invariant 14 of ARCHITECTURE.md, for a hand-over: from the stop of writes to the
/// promotion it holds the pool's round lock on the primary, so that no round of `ferry watch`
/// receives into the replica while it is promoted. A hand-over that finds a round running is
/// busy (the engine tries the step again) and has changed nothing: the primary still writes,
/// mounted, and the replica is still read-only; once the round is over it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_that_finds_a_round_running_waits_for_it_and_changes_nothing() {
    let pair = Pair::start();
    replication::mark_replica(pair.replica()).await.unwrap();
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    let pool = pair.hosts.pool.clone();
    let other_ferry = SshConnection::new(pair.a.target().clone(), pair.a.timeouts());
    let held = replication::hold_round_lock(PoolEnd {
        connection: &other_ferry,
        pool: &pool,
    })
    .await
    .unwrap();
    let busy = replication::hand_over(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(busy, ReplicationError::Busy { .. }), "{busy}");
    assert!(busy.is_transient());
    assert_eq!(pair.hosts.a.zfs_value("readonly", &pool), "off");
    assert_eq!(pair.hosts.a.zfs_value("mounted", &pool), "yes");
    assert_ne!(pair.hosts.a.zfs_value("ferry:role", &pool), "replica");
    assert_eq!(pair.hosts.b.zfs_value("readonly", &pool), "on");
    assert_eq!(pair.hosts.b.zfs_value("ferry:role", &pool), "replica");
    // While the hand-over runs, it holds the lock itself: another ferry's round is skipped.
    held.release().await;
    let written =
        write_while_replicating(pair.prod(&pair.hosts.a), pair.primary(), pair.replica(), 1).await;
    let (handed, round) = tokio::join!(
        replication::hand_over(pair.primary(), pair.replica(), SystemTime::now()),
        async {
            // Once A stopped writing (the hand-over has the lock by then), a round is tried.
            let started = Instant::now();
            while pair.hosts.a.zfs_value("readonly", &pool) != "on"
                && started.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let other = PoolEnd {
                connection: &other_ferry,
                pool: &pool,
            };
            let replica_connection = SshConnection::new(pair.b.target().clone(), pair.b.timeouts());
            let replica = PoolEnd {
                connection: &replica_connection,
                pool: &pool,
            };
            replication::replicate(other, replica, SystemTime::now()).await
        }
    );
    let handed = handed.unwrap();
    assert!(handed.last_round.is_some());
    match round {
        // Tried while the hand-over held the lock, or after it (A is a replica then, and
        // sends nothing); never received into B beside the promotion.
        Err(ReplicationError::Busy { .. } | ReplicationError::NotAPrimary { .. }) => {}
        other => panic!("a round beside the hand-over: {other:?}"),
    }
    assert_all_there(
        &pair.prod(&pair.hosts.b),
        &written,
        "was written on A before the hand-over, and is not on B",
    );
    assert_eq!(pair.hosts.b.zfs_value("ferry:role", &pool), "primary");
    assert_eq!(pair.hosts.a.zfs_value("ferry:role", &pool), "replica");
}

/// A stream is bounded by how long it stands still, not by how long it runs: a first full send
/// of a large pool takes hours. With a 3-second command timeout, a sender that writes a line
/// a second for 5 seconds gets through whole; one that says nothing for 8 seconds is given up
/// after about 3, named as a timeout, and the next stream on the same connections works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_runs_as_long_as_it_moves_and_is_given_up_once_it_stands_still() {
    let pair = Pair::start();
    let short = |identity: HostIdentity| {
        SshConnection::new(
            SshTarget {
                address: identity.address.to_string(),
                port: pair.hosts.port,
                user: "root".to_owned(),
                key_file: Some(pair.hosts.user_key.clone()),
                host_keys: HostKeys::KnownHostsFile(pair.hosts.known_hosts.clone()),
            },
            SshTimeouts {
                connect: Duration::from_secs(5),
                command: Duration::from_secs(3),
            },
        )
    };
    let (a, b) = (short(HOST_A), short(HOST_B));
    let slow = "for i in 1 2 3 4 5; do echo line$i; sleep 1; done";
    let piped = a.pipe_to(slow, &b, "wc -l").await.unwrap();
    assert_eq!(piped.bytes, 30);
    assert_eq!(piped.receiver.stdout.trim(), "5");

    let stalled = a
        .pipe_to("sleep 5; echo late", &b, "wc -l")
        .await
        .unwrap_err();
    assert!(
        matches!(
            stalled,
            ferry_zfs::ssh::SshError::Timeout { seconds: 3, .. }
        ),
        "{stalled}"
    );
    let again = a.pipe_to("echo again", &b, "cat").await.unwrap();
    assert_eq!(again.receiver.stdout, "again\n");
}

/// Two rounds of one pool never run at once, whichever machines run them: each holds the
/// pool's lock on the primary host itself, and a round that finds it held (here another
/// ferry's, on a connection of its own) changes nothing on either side and is skipped, as
/// `ferry replicate` and the watch report it; once the other round is over, the next one
/// sends an increment as usual. A ferry that goes without releasing the lock (its connection
/// gone) leaves it to the host, which releases it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_finds_another_running_on_the_primary_is_skipped_and_harms_nothing() {
    let pair = Pair::start();
    replication::mark_replica(pair.replica()).await.unwrap();
    replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    let pool = pair.hosts.pool.clone();
    let on_both = |pair: &Pair| {
        [&pair.hosts.a, &pair.hosts.b].map(|host| {
            (
                host.snapshots(&pair.hosts.pool),
                host.snapshots(&prod_name(pair)),
            )
        })
    };
    let before = on_both(&pair);
    write_files(&pair.prod(&pair.hosts.a));

    // Another ferry's round holds the lock on A.
    let other_ferry = SshConnection::new(pair.a.target().clone(), pair.a.timeouts());
    let other = PoolEnd {
        connection: &other_ferry,
        pool: &pool,
    };
    let held = replication::hold_round_lock(other).await.unwrap();
    let busy = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(busy, ReplicationError::Busy { .. }), "{busy}");
    let message = busy.to_string();
    let holder = message
        .split_once("(started by ")
        .and_then(|(_, rest)| rest.split_once("):"))
        .map(|(holder, _)| holder)
        .unwrap_or_else(|| panic!("no holder in {message}"));
    assert!(
        holder.starts_with(&format!("ferry pid {} on ", std::process::id())),
        "{message}"
    );
    insta::assert_snapshot!(pair.hosts.redact(&message.replace(holder, "[holder]")), @"another replication round of [pool] is running on root@127.42.0.1:[port] (started by [holder]): this one is skipped, and the next round sends whatever both would have");
    // The provider's round (`ferry replicate`, the watch's) says it skipped, and is no failure.
    let provider = fixture(&pair.hosts);
    let skipped = provider
        .tend(
            provider.replica_instance(2),
            serde_json::json!({"host": "vm.nfs@g2", "replicate_from": "vm.nfs@g1"}),
        )
        .await
        .unwrap_or_else(|error| panic!("a skipped round failed: {}", error.message))
        .unwrap();
    assert!(
        skipped.starts_with(&format!(
            "skipped: another replication round of {pool} is running on root@127.42.0.1:"
        )),
        "{skipped}"
    );
    // Neither side changed: no snapshot taken, sent or pruned.
    assert_eq!(on_both(&pair), before);
    assert_eq!(pair.hosts.b.zfs_value("readonly", &pool), "on");
    // A lock on the replica's host is no round of this pool's primary: no effect on it.
    let on_b = SshConnection::new(pair.b.target().clone(), pair.b.timeouts());
    let replica_side = replication::hold_round_lock(PoolEnd {
        connection: &on_b,
        pool: &pool,
    })
    .await
    .unwrap();

    // The other round ends: the next one is an increment from the last common snapshot.
    held.release().await;
    let round = replication::replicate(pair.primary(), pair.replica(), SystemTime::now())
        .await
        .unwrap();
    assert!(round.bases.values().all(Option::is_some), "{round:?}");
    replica_side.release().await;
    let after = on_both(&pair);
    assert_eq!(
        after[0], after[1],
        "the replica holds the primary's snapshots"
    );
    assert_ne!(after, before);

    // Another ferry that goes without a word (its connection dropped, as when it is killed):
    // the host's shell sees its stdin close and lets go of the lock.
    let held = replication::hold_round_lock(other).await.unwrap();
    drop(held);
    let started = Instant::now();
    let round = loop {
        match replication::replicate(pair.primary(), pair.replica(), SystemTime::now()).await {
            Err(ReplicationError::Busy { .. }) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert!(round.bases.values().all(Option::is_some), "{round:?}");
    eprintln!(
        "a round begun as the other ferry went had sent its increment {:.2} s later",
        started.elapsed().as_secs_f64()
    );

    // Two ferries' rounds at once, each on connections of its own: at most one sends, the
    // other is skipped, and the replica is whole after.
    let (a2, b2) = (
        SshConnection::new(pair.a.target().clone(), pair.a.timeouts()),
        SshConnection::new(pair.b.target().clone(), pair.b.timeouts()),
    );
    let second = (
        PoolEnd {
            connection: &a2,
            pool: &pool,
        },
        PoolEnd {
            connection: &b2,
            pool: &pool,
        },
    );
    let (one, two) = tokio::join!(
        replication::replicate(pair.primary(), pair.replica(), SystemTime::now()),
        replication::replicate(second.0, second.1, SystemTime::now()),
    );
    let outcomes = [&one, &two].map(|outcome| match outcome {
        Ok(_) => "sent",
        Err(ReplicationError::Busy { .. }) => "skipped",
        Err(error) => panic!("a round failed: {error}"),
    });
    assert!(outcomes.contains(&"sent"), "{outcomes:?}");
    eprintln!("two rounds at once: {outcomes:?}");
    let status = replication::status(pair.primary(), pair.replica())
        .await
        .unwrap();
    assert_eq!((status.datasets, status.primary_datasets), (2, 2));
    let after = on_both(&pair);
    assert_eq!(
        after[0], after[1],
        "the replica holds the primary's snapshots"
    );
}
