//! A hot standby's steps, as the engine runs them, on two real ZFS hosts (the harness of
//! `zfs_two_hosts.rs`: each host its own zfs-fuse daemon, sshd and host id). Host A (g1) holds
//! the primary pool on lun0 (`disks = ["disk.d0"]`); the replica's disk is lun1
//! (`replica_disks = ["disk.d1"]`), which host B (g2) holds. Everything goes through
//! `ZfsPoolProvider`'s `read` and `apply`, never through `ferry_zfs::replication` directly:
//! - the seed, `zfs_pool.POOL@g2:create`: a bare pool on lun1, marked a read-only replica, and a
//!   full round from A; done again (a resumed apply), it only sends an increment;
//! - the planned promotion, `zfs_pool.POOL:promote` with `hand_over_from`: A stops, sends its
//!   last increment and becomes the replica; nothing is lost;
//! - the unplanned one, with `fenced_hosts`: refused while A answers as the primary (safety
//!   invariant 14 of ARCHITECTURE.md), done once A has crashed, with what the last complete
//!   round brought;
//! - the failback's seed, `zfs_pool.POOL@g3:create`, on the old primary's disk (lun0) moved to
//!   a third host C (generation 3, which sees lun0 only): the pool imported with `-f` only once
//!   A, fenced, no longer answers with it imported (safety invariant 1), then kept the replica
//!   a hand-over left, with an increment from B; or refused, and left as it is, when A was
//!   fenced rather than handed over and is still a writable primary.
//!
//! What each host holds is asked of its own daemon (`zfs get`, `zpool status`) and read through
//! its own mounts, never through ferry's code.

mod zfs_hosts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_core::{Action, Observation, StepError, StepOutcome};
use serde_json::json;
use zfs_hosts::*;

/// The folder a bare pool's root gets (`/POOL`), which the seed's `zpool create` on host B
/// makes on the machine's own file system (the hosts share it; only their mounts are their
/// own). Removed, when empty, once the hosts are gone.
struct RootFolder(PathBuf);

impl Drop for RootFolder {
    fn drop(&mut self) {
        // Only empty folders: whatever the daemons wrote was in their own mounts.
        let _ = std::fs::remove_dir(self.0.join("prod"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Host A with the primary pool on lun0, its `prod` dataset holding [`write_files`]' files, and
/// ferry's provider for a pool whose replica is on lun1.
struct Hot {
    // Declared first, so dropped first: the daemons go before their folders.
    hosts: TwoHosts,
    fixture: Fixture,
    /// The files written on A before the seed, with their checksums.
    first: BTreeMap<String, String>,
    _root: RootFolder,
}

impl Hot {
    /// `name` keeps each test's pool name, and so the folder of its root, its own.
    fn start(name: &str) -> Hot {
        let mut hosts = TwoHosts::start(2);
        hosts.pool = format!("ferryhot{name}{}", std::process::id());
        let root = RootFolder(Path::new("/").join(&hosts.pool));
        let pool = hosts.pool.clone();
        let lun0 = hosts.devices.join("lun0").display().to_string();
        let mountpoint = hosts.mountpoint().display().to_string();
        hosts
            .a
            .zpool_ok(&["create", "-m", &mountpoint, &pool, &lun0]);
        let prod = hosts.mountpoint().join("prod");
        hosts.a.zfs_ok(&[
            "create",
            "-o",
            &format!("mountpoint={}", prod.display()),
            &format!("{pool}/prod"),
        ]);
        let first = write_files(&hosts.a.path(&prod));
        let (a, b) = (HOST_A.address.to_string(), HOST_B.address.to_string());
        let mut fixture = Fixture::for_hosts(
            &pool,
            1,
            (hosts.port, &hosts.user_key, &hosts.known_hosts),
            [(&a, &hosts.devices), (&b, &hosts.devices)],
            json!({
                "replica_disks": ["disk.d1"],
                "datasets": {"prod": {"mountpoint": prod.display().to_string()}},
            }),
        );
        fixture.record_lun("disk.d0", 0);
        fixture.record_lun("disk.d1", 1);
        Hot {
            hosts,
            fixture,
            first,
            _root: root,
        }
    }

    fn pool(&self) -> &str {
        &self.hosts.pool
    }

    fn prod_name(&self) -> String {
        format!("{}/prod", self.pool())
    }

    /// Where `host` mounts `prod` once it serves (the spec's mountpoint).
    fn prod(&self, host: &ZfsHost) -> PathBuf {
        host.path(&self.hosts.mountpoint().join("prod"))
    }

    /// Applies the seed, `zfs_pool.POOL@g2:create`, with the inputs its plan step carries.
    async fn seed(&self) -> StepOutcome {
        self.fixture
            .apply_to(
                self.fixture.replica_instance(2),
                Action::Create,
                json!({
                    "host": "vm.nfs@g2",
                    "disks": ["disk.d1"],
                    "replicate_from": "vm.nfs@g1",
                    "layout": "stripe",
                }),
            )
            .await
            .unwrap_or_else(|error| panic!("the seed failed: {}", error.message))
    }

    /// The planned promotion to B, `zfs_pool.POOL:promote` with `hand_over_from`.
    async fn hand_over(&self) -> StepOutcome {
        self.fixture
            .apply(
                Action::Promote,
                json!({
                    "host": "vm.nfs@g2",
                    "disks": ["disk.d1"],
                    "hand_over_from": "vm.nfs@g1",
                }),
            )
            .await
            .unwrap_or_else(|error| panic!("the hand-over failed: {}", error.message))
    }

    /// The failback's new standby, generation 3: host C, built with A's disk (lun0) moved
    /// and attached to it, which it alone sees in its device folder. A new VM: the pool's
    /// mountpoint is an empty folder of its own (B's mounts made `mnt/prod` on the machine's
    /// file system, where A's pool's root would not mount).
    fn start_the_failback_host(&mut self) {
        let devices = self.hosts.start_host_c(&[0]);
        self.hosts
            .c()
            .own_empty_folder(&self.hosts.mountpoint())
            .unwrap();
        self.fixture
            .record_host(3, &HOST_C.address.to_string(), &devices);
    }

    /// Applies the failback's seed, `zfs_pool.POOL@g3:create`, with the inputs its plan step
    /// carries: the replica on the old primary's disk, on the new standby host, from the new
    /// primary, after the fence of the host that had the pool imported. Returns the progress
    /// lines too.
    async fn seed_the_failback(&self) -> (Result<StepOutcome, StepError>, Vec<String>) {
        self.fixture
            .apply_reporting(
                self.fixture.replica_instance(3),
                Action::Create,
                json!({
                    "host": "vm.nfs@g3",
                    "disks": ["disk.d0"],
                    "replicate_from": "vm.nfs@g2",
                    "fenced_hosts": ["vm.nfs@g1"],
                    "layout": "stripe",
                }),
            )
            .await
    }

    /// Writes a second set of files on A, in `prod/more`, after the seed.
    fn write_more_on_a(&self) -> BTreeMap<String, String> {
        let more = self.prod(&self.hosts.a).join("more");
        std::fs::create_dir(&more).unwrap();
        write_files(&more)
    }

    /// `ferry:role` and `readonly` of the pool's root, as `host`'s own `zfs get` says.
    fn side(&self, host: &ZfsHost) -> (String, String) {
        (
            host.zfs_value("ferry:role", self.pool()),
            host.zfs_value("readonly", self.pool()),
        )
    }

    /// The checksums of the first files as the replica on B holds them: its `prod` mounted
    /// (read-only, as the replica is) for the reading, then unmounted again for the rounds.
    fn sums_on_the_replica(&self) -> BTreeMap<String, String> {
        let prod = self.prod_name();
        let b = &self.hosts.b;
        assert_eq!(
            b.zfs_value("mounted", &prod),
            "no",
            "the replica is mounted"
        );
        b.zfs_ok(&["mount", &prod]);
        let folder = b.path(Path::new(&b.zfs_value("mountpoint", &prod)));
        let sums = read_sums(&folder, &self.first);
        b.zfs_ok(&["unmount", &prod]);
        sums
    }
}

/// Every mount of the pool's datasets that `host`'s namespace showed while `work` ran, polled
/// every millisecond from another thread: a replica's seed must mount nothing writable, not
/// even for the moment between its import and its mark.
async fn mounts_during<T>(
    host: &ZfsHost,
    pool: &str,
    work: impl std::future::Future<Output = T>,
) -> (T, Vec<String>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for mount in host.mounts_of(pool) {
                    let mut seen = seen.lock().unwrap();
                    if !seen.contains(&mount) {
                        seen.push(mount);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let result =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work));
        stop.store(true, Ordering::Relaxed);
        result
    });
    (result, seen.into_inner().unwrap())
}

/// The mounts among `mounts` (lines of `/proc/PID/mounts`) that are not read-only.
fn writable(mounts: &[String]) -> Vec<&String> {
    mounts
        .iter()
        .filter(|line| {
            let options = line.split_whitespace().nth(3).unwrap_or_default();
            !options.split(',').any(|option| option == "ro")
        })
        .collect()
}

fn role(observation: &Observation) -> Option<&str> {
    observation
        .attribute("replication_role")
        .and_then(|value| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_makes_a_read_only_replica_on_its_own_disk_and_done_again_harms_nothing() {
    let hot = Hot::start("seed");
    let (a, b) = (&hot.hosts.a, &hot.hosts.b);
    // Before the seed, the replica reads absent: that is what plans the seed.
    let before = hot.fixture.read_replica(2).await;
    assert_eq!(before, Observation::Absent);

    let seeded = hot.seed().await;
    assert_eq!(seeded.outputs["host"], json!("vm.nfs@g2"));
    assert_eq!(seeded.outputs["replication_role"], json!("replica"));
    assert!(
        seeded.outputs["replica_lag_seconds"].is_u64(),
        "{:?}",
        seeded.outputs
    );

    // B's own daemon: the pool is on lun1 only, a read-only replica with A's dataset and files.
    assert_eq!(b.imported_pools(), [hot.pool()]);
    let status = b.zpool_ok(&["status", hot.pool()]);
    let lun = |n: u32| {
        hot.hosts
            .devices
            .join(format!("lun{n}"))
            .display()
            .to_string()
    };
    assert!(
        status.contains(&lun(1)) && !status.contains(&lun(0)),
        "{status}"
    );
    assert_eq!(hot.side(b), ("replica".to_owned(), "on".to_owned()));
    assert_eq!(b.zfs_value("readonly", &hot.prod_name()), "on");
    assert_eq!(hot.sums_on_the_replica(), hot.first);
    // A is as it was: the primary, writable, never marked.
    assert_eq!(hot.side(a), ("-".to_owned(), "off".to_owned()));
    assert_eq!(read_sums(&hot.prod(a), &hot.first), hot.first);

    // Read as the observer reads it: a healthy replica, with its lag.
    let replica = hot.fixture.read_replica(2).await;
    assert!(replica.is_healthy(), "{replica:?}");
    assert_eq!(role(&replica), Some("replica"));
    assert_eq!(replica.attribute("host"), Some(&json!("vm.nfs@g2")));
    assert_eq!(replica.attribute("disks"), Some(&json!(["disk.d1"])));
    assert!(
        replica
            .attribute("replica_lag_seconds")
            .is_some_and(|lag| lag.is_u64()),
        "{replica:?}"
    );

    // The seed again, as a resumed apply runs it: an increment from the seed's snapshot, the
    // replica still a read-only replica with every file, A untouched.
    let first_round = b.snapshots(&hot.prod_name());
    assert_eq!(first_round.len(), 1, "{first_round:?}");
    let again = hot.seed().await;
    assert_eq!(again.outputs["replication_role"], json!("replica"));
    let second_round = b.snapshots(&hot.prod_name());
    assert_eq!(second_round.len(), 1, "{second_round:?}");
    assert_ne!(second_round, first_round, "no round was sent");
    assert_eq!(a.snapshots(&hot.prod_name()), second_round);
    assert_eq!(hot.side(b), ("replica".to_owned(), "on".to_owned()));
    assert_eq!(hot.sums_on_the_replica(), hot.first);
    assert_eq!(hot.side(a), ("-".to_owned(), "off".to_owned()));
    assert_eq!(b.imported_pools(), [hot.pool()]);
    assert!(hot.fixture.read_replica(2).await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_promotion_hands_the_pool_over_and_loses_nothing() {
    let hot = Hot::start("handover");
    let (a, b) = (&hot.hosts.a, &hot.hosts.b);
    hot.seed().await;
    let more = hot.write_more_on_a();

    let promote = json!({
        "host": "vm.nfs@g2",
        "disks": ["disk.d1"],
        "hand_over_from": "vm.nfs@g1",
    });
    let promoted = hot
        .fixture
        .apply(Action::Promote, promote.clone())
        .await
        .unwrap_or_else(|error| panic!("the hand-over failed: {}", error.message));
    assert_eq!(promoted.outputs["host"], json!("vm.nfs@g2"));
    assert_eq!(promoted.outputs["disks"], json!(["disk.d1"]));
    assert_eq!(promoted.outputs["replication_role"], json!("primary"));

    // Zero loss: every file A wrote, before the seed and after it, is on B, which serves it
    // where A did (the spec's mountpoint) and takes writes.
    let prod = hot.prod(b);
    assert_eq!(read_sums(&prod, &hot.first), hot.first);
    assert_eq!(read_sums(&prod.join("more"), &more), more);
    assert_eq!(hot.side(b), ("primary".to_owned(), "off".to_owned()));
    std::fs::write(prod.join("after-promotion"), b"written on B").unwrap();
    // A is B's replica now: read-only, unmounted.
    assert_eq!(hot.side(a), ("replica".to_owned(), "on".to_owned()));
    assert_eq!(a.zfs_value("mounted", &hot.prod_name()), "no");

    // The pool, read at generation 2 as the observer reads it: served by B, healthy.
    let on_b = hot.fixture.read(2).await;
    assert!(on_b.is_healthy(), "{on_b:?}");
    assert_eq!(on_b.attribute("host"), Some(&json!("vm.nfs@g2")));
    assert_eq!(on_b.attribute("disks"), Some(&json!(["disk.d1"])));
    assert_eq!(role(&on_b), Some("primary"));
    // At generation 1, A's pool takes no writes: never read as serving.
    assert!(!hot.fixture.read(1).await.is_healthy());

    // Done again (a resumed apply): nothing stopped or sent twice, B still serves everything.
    hot.fixture
        .apply(Action::Promote, promote)
        .await
        .unwrap_or_else(|error| panic!("the hand-over again failed: {}", error.message));
    assert_eq!(read_sums(&prod.join("more"), &more), more);
    assert_eq!(
        std::fs::read(prod.join("after-promotion")).unwrap(),
        b"written on B"
    );
    assert_eq!(hot.side(b), ("primary".to_owned(), "off".to_owned()));
    assert_eq!(hot.side(a), ("replica".to_owned(), "on".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplanned_promotion_waits_for_the_primary_to_be_gone() {
    let mut hot = Hot::start("fenced");
    hot.seed().await;
    let more = hot.write_more_on_a();
    let promote = json!({
        "host": "vm.nfs@g2",
        "disks": ["disk.d1"],
        "fenced_hosts": ["vm.nfs@g1"],
    });

    // A still answers as the primary (a fence that did not take effect): refused, for good.
    let refused = hot
        .fixture
        .apply(Action::Promote, promote.clone())
        .await
        .expect_err("a promotion while the primary answers with the pool imported");
    assert!(!refused.transient, "{refused:?}");
    insta::assert_snapshot!(hot.hosts.redact(&refused.message));
    assert_eq!(
        hot.side(&hot.hosts.b),
        ("replica".to_owned(), "on".to_owned())
    );
    assert_eq!(hot.side(&hot.hosts.a), ("-".to_owned(), "off".to_owned()));

    // A crashes (its VM powered off): B is promoted with what the seed's round brought; what A
    // wrote after it is the loss the fence-and-promote path accepts.
    hot.hosts.a.crash();
    // With the primary gone, the replica still says how far behind it is, on its own clock:
    // what the failover's plan shows the operator it would lose.
    let reading = hot.fixture.read_replica(2).await;
    assert!(
        reading
            .attribute("replica_lag_seconds")
            .and_then(serde_json::Value::as_u64)
            .is_some(),
        "{reading:?}"
    );
    let promoted = hot
        .fixture
        .apply(Action::Promote, promote)
        .await
        .unwrap_or_else(|error| panic!("the promotion failed: {}", error.message));
    assert_eq!(promoted.outputs["host"], json!("vm.nfs@g2"));
    assert_eq!(promoted.outputs["replication_role"], json!("primary"));
    let b = &hot.hosts.b;
    let prod = hot.prod(b);
    assert_eq!(read_sums(&prod, &hot.first), hot.first);
    assert!(
        !prod.join("more").exists(),
        "{} files written after the last round reached B",
        more.len()
    );
    assert_eq!(hot.side(b), ("primary".to_owned(), "off".to_owned()));
    std::fs::write(prod.join("after-promotion"), b"written on B").unwrap();
    let on_b = hot.fixture.read(2).await;
    assert!(on_b.is_healthy(), "{on_b:?}");
    assert_eq!(on_b.attribute("host"), Some(&json!("vm.nfs@g2")));
}

/// The checksums of `names` in `prod/sub` (`prod` itself for "") as `host`'s own mount of the
/// pool's `prod` holds them: mounted for the reading when it is not (a replica is kept
/// unmounted), and left as it was found.
fn sums_on(
    hot: &Hot,
    host: &ZfsHost,
    sub: &str,
    names: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let prod = hot.prod_name();
    let mounted = host.zfs_value("mounted", &prod) == "yes";
    if !mounted {
        host.zfs_ok(&["mount", &prod]);
    }
    let folder = host.path(Path::new(&host.zfs_value("mountpoint", &prod)));
    let sums = read_sums(&folder.join(sub), names);
    if !mounted {
        host.zfs_ok(&["unmount", &prod]);
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failback_seed_imports_the_old_primarys_disk_only_once_its_host_is_gone() {
    let mut hot = Hot::start("failback");
    hot.seed().await;
    let more = hot.write_more_on_a();
    hot.hand_over().await;
    // B serves and is written; A's pool is B's read-only replica, still imported on A.
    let newer_folder = hot.prod(&hot.hosts.b).join("newer");
    std::fs::create_dir(&newer_folder).unwrap();
    let newer = write_files(&newer_folder);
    assert_eq!(
        hot.side(&hot.hosts.a),
        ("replica".to_owned(), "on".to_owned())
    );
    let handed_over = hot.hosts.b.snapshots(&hot.prod_name());
    assert_eq!(hot.hosts.a.snapshots(&hot.prod_name()), handed_over);
    hot.start_the_failback_host();

    // A's VM was not fenced after all (it still runs, the pool imported): C's import is
    // refused, for good, and C imports nothing (safety invariant 1 of ARCHITECTURE.md).
    let (refused, _) = hot.seed_the_failback().await;
    let refused = refused.expect_err("a seed's import while a fenced host holds the pool");
    assert!(!refused.transient, "{refused:?}");
    insta::assert_snapshot!(hot.hosts.redact(&refused.message));
    assert!(hot.hosts.c().imported_pools().is_empty());
    assert_eq!(hot.hosts.a.imported_pools(), [hot.pool()]);

    // The fence takes effect (A's VM powered off, the pool never exported): C imports the
    // pool with -f once A does not answer, finds B's replica and sends B's newer files as an
    // increment from the hand-over's snapshot.
    hot.hosts.a.crash();
    let ((seeded, lines), mounted) =
        mounts_during(hot.hosts.c(), hot.pool(), hot.seed_the_failback()).await;
    let seeded =
        seeded.unwrap_or_else(|error| panic!("the failback seed failed: {}", error.message));
    // Imported without mounting (`-N`; zfs-fuse, which has none, mounts read-only), then
    // marked and unmounted: no dataset of the replica was ever writable on C, not even for a
    // moment (found: the import mounted them all, writable as zfs-fuse mounts them whatever
    // `readonly` says, until the mark).
    assert_eq!(
        writable(&mounted),
        Vec::<&String>::new(),
        "writable during the seed"
    );
    assert_eq!(seeded.outputs["host"], json!("vm.nfs@g3"));
    assert_eq!(seeded.outputs["replication_role"], json!("replica"));
    let said = |text: &str| lines.iter().any(|line| line.contains(text));
    assert!(
        said("with -f, once the fenced hosts are asked"),
        "{lines:#?}"
    );
    assert!(said("vm.nfs@g1 does not answer over SSH"), "{lines:#?}");
    assert!(said("2 increments and 0 full sends"), "{lines:#?}");
    let c = hot.hosts.c();
    let history = c.history(hot.pool()).expect("C has the pool");
    let imports: Vec<&str> = history
        .lines()
        .filter(|line| line.contains("zpool import"))
        .collect();
    assert_eq!(imports.len(), 1, "{history}");
    assert!(imports[0].contains(" -f "), "{history}");
    assert!(
        imports[0].contains(" -N ") || imports[0].contains(" -o ro "),
        "{history}"
    );
    assert_eq!(c.imported_pools(), [hot.pool()]);
    assert_eq!(hot.side(c), ("replica".to_owned(), "on".to_owned()));
    // Kept unmounted, as every replica is.
    assert_eq!(c.zfs_value("readonly", &hot.prod_name()), "on");
    assert_eq!(c.zfs_value("mounted", &hot.prod_name()), "no");
    assert_eq!(c.zfs_value("mounted", hot.pool()), "no");
    let round = c.snapshots(&hot.prod_name());
    assert_eq!(round, hot.hosts.b.snapshots(&hot.prod_name()));
    assert_eq!(round.len(), 1, "{round:?}");
    assert_ne!(round, handed_over, "no round was sent");
    assert_eq!(sums_on(&hot, c, "", &hot.first), hot.first);
    assert_eq!(sums_on(&hot, c, "more", &more), more);
    assert_eq!(sums_on(&hot, c, "newer", &newer), newer);
    // B still serves, untouched.
    assert_eq!(
        hot.side(&hot.hosts.b),
        ("primary".to_owned(), "off".to_owned())
    );
    assert_eq!(read_sums(&newer_folder, &newer), newer);

    // Done again (a resumed apply): the pool is found imported, one more increment, and
    // still nothing mounted.
    let ((again, lines), mounted) =
        mounts_during(hot.hosts.c(), hot.pool(), hot.seed_the_failback()).await;
    assert_eq!(
        mounted,
        Vec::<String>::new(),
        "mounted during the seed again"
    );
    assert_eq!(c.mounts_of(hot.pool()), Vec::<String>::new());
    again.unwrap_or_else(|error| panic!("the failback seed again failed: {}", error.message));
    assert!(
        !lines.iter().any(|line| line.contains("importing")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("0 full sends")),
        "{lines:#?}"
    );
    assert_eq!(
        hot.side(hot.hosts.c()),
        ("replica".to_owned(), "on".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failback_seed_refuses_an_old_primary_fenced_rather_than_handed_over() {
    let mut hot = Hot::start("diverged");
    hot.seed().await;
    // A takes writes the seed's round never sent, then dies: B is promoted without them.
    let more = hot.write_more_on_a();
    let seeded_round = hot.hosts.a.snapshots(&hot.prod_name());
    hot.hosts.a.crash();
    hot.fixture
        .apply(
            Action::Promote,
            json!({
                "host": "vm.nfs@g2",
                "disks": ["disk.d1"],
                "fenced_hosts": ["vm.nfs@g1"],
            }),
        )
        .await
        .unwrap_or_else(|error| panic!("the promotion failed: {}", error.message));
    hot.start_the_failback_host();

    // A's pool, imported on C after the fence, is a writable primary with what B lacks:
    // refused, for good, naming the pool, the host and what to do.
    // Imported without mounting (zfs-fuse: read-only), and left unmounted: the old primary's
    // pool is never writable on C, where nothing may write to it.
    let ((refused, lines), mounted) =
        mounts_during(hot.hosts.c(), hot.pool(), hot.seed_the_failback()).await;
    assert_eq!(
        writable(&mounted),
        Vec::<&String>::new(),
        "writable during the seed"
    );
    assert_eq!(hot.hosts.c().mounts_of(hot.pool()), Vec::<String>::new());
    let refused = refused.expect_err("a seed over an old primary that was never handed over");
    assert!(!refused.transient, "{refused:?}");
    insta::assert_snapshot!(hot.hosts.redact(&refused.message));
    let said = |text: &str| lines.iter().any(|line| line.contains(text));
    assert!(
        said("with -f, once the fenced hosts are asked"),
        "{lines:#?}"
    );
    assert!(said("vm.nfs@g1 does not answer over SSH"), "{lines:#?}");
    // Left as it was: writable, its own snapshots, every file A wrote; nothing received.
    let c = hot.hosts.c();
    let untouched = |hot: &Hot, c: &ZfsHost| {
        assert_eq!(hot.side(c), ("-".to_owned(), "off".to_owned()));
        assert_eq!(c.snapshots(&hot.prod_name()), seeded_round);
        assert_eq!(sums_on(hot, c, "", &hot.first), hot.first);
        assert_eq!(sums_on(hot, c, "more", &more), more);
    };
    untouched(&hot, c);
    assert_eq!(
        hot.side(&hot.hosts.b),
        ("primary".to_owned(), "off".to_owned())
    );

    // Applied again: the same refusal, the pool still as it was.
    let (again, _) = hot.seed_the_failback().await;
    let again = again.expect_err("the seed again");
    assert_eq!(
        hot.hosts.redact(&again.message),
        hot.hosts.redact(&refused.message)
    );
    untouched(&hot, c);
}
