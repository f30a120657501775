//! A failover drill of data100 (cold, `specs/data100`) through the `ferry` binary on real
//! servers (issue 17): the ARM simulator in this process, BIND, the hub stand-in, and a ZFS
//! host of its own per simulated VM (`ferry_servers::VmHosts`), so that production's pool and
//! the drill's copy of it are two real pools on two hosts.
//!
//! Files with checksums are written into production's pool first; then `ferry drill --keep`
//! builds the drill's generation on copies of production's disks, and its pool's create
//! imports the copy on the drill's own VM. Tools other than ferry then check that the drill's
//! pool holds production's files, that production is untouched (its files, its pool imported
//! on its own host, `dig` of its records against BIND, no write to its resources in the
//! simulator's record), and, after `ferry drill --clean`, that nothing of the drill is left:
//! no drill group in the simulator, no drill record in BIND, no host for the drill's VM.

mod real_servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use real_servers::*;

const DRILL_VM: &str = "data100-nfs-g1-drill";
const PRODUCTION_VM: &str = "data100-nfs-g1";

/// Each file's SHA-256 as found below `home`, by its path below it (missing files have none).
fn sums_below(home: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let present: Vec<PathBuf> = files
        .iter()
        .map(|file| home.join(file))
        .filter(|path| path.is_file())
        .collect();
    ferry_servers::checksums(&present)
        .unwrap()
        .into_iter()
        .filter_map(|(path, sum)| Some((path.strip_prefix(home).ok()?.to_path_buf(), sum)))
        .collect()
}

/// The A records of the zone's `names`, as `dig` gets them from BIND.
fn dig_records(world: &World, names: &[&str]) -> BTreeMap<String, Vec<String>> {
    names
        .iter()
        .map(|name| {
            let answer = world.bind.dig(&format!("{name}.{ZONE}."), "A").unwrap();
            ((*name).to_owned(), answer)
        })
        .collect()
}

/// `zpool list` of every pool on the VM named `vm`: name, health and GUID.
fn pools_on(world: &World, vm: &str) -> String {
    world
        .hosts
        .run(vm, "zpool", &["list", "-H", "-o", "name,health,guid"])
        .unwrap()
}

/// What tools other than ferry read of production before a drill: its users' files and their
/// sums, its pools on its own host, its records in BIND.
struct Production {
    home: PathBuf,
    files: Vec<PathBuf>,
    sums: BTreeMap<PathBuf, String>,
    pools: String,
    records: BTreeMap<String, Vec<String>>,
}

impl Production {
    /// Writes `count` files for each `(folder, user, count)` into production's pool, each
    /// fsynced (what the NFS server does before it answers a write), then takes a snapshot,
    /// which waits for its transaction group to reach the disks. The snapshot is no longer
    /// needed for the copies' consistency: the drill copies the pool's four disks from one
    /// restore point of production's VM, so they are of one moment whatever writes, and an
    /// fsynced file is in every such moment after its fsync. It stays as a named point of
    /// production's pool to compare against.
    fn at_rest(world: &World, users: &[(&str, &str, usize)]) -> Self {
        let home = world
            .hosts
            .path(PRODUCTION_VM, Path::new(VM_HOME_ROOT))
            .unwrap();
        let mut written = Vec::new();
        for (folder, user, count) in users {
            written
                .extend(ferry_servers::write_home_files(&home.join(folder), user, *count).unwrap());
        }
        for path in &written {
            std::fs::File::open(path).unwrap().sync_all().unwrap();
        }
        let files: Vec<PathBuf> = written
            .iter()
            .map(|path| path.strip_prefix(&home).unwrap().to_path_buf())
            .collect();
        let sums = sums_below(&home, &files);
        assert_eq!(sums.len(), files.len());
        world
            .hosts
            .run(
                PRODUCTION_VM,
                "zfs",
                &["snapshot", "-r", &format!("{POOL}@before-drill")],
            )
            .unwrap();
        Self {
            pools: pools_on(world, PRODUCTION_VM),
            records: dig_records(world, &["hub", "staging"]),
            home,
            files,
            sums,
        }
    }

    /// Production's files, pools and records read again, as they were.
    fn assert_untouched(&self, world: &World, context: &str) {
        assert_eq!(sums_below(&self.home, &self.files), self.sums, "{context}");
        assert_eq!(pools_on(world, PRODUCTION_VM), self.pools, "{context}");
        assert_eq!(
            dig_records(world, &["hub", "staging"]),
            self.records,
            "{context}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_real_zfs_imports_a_copy_of_productions_pool_on_its_own_host_and_leaves_production_and_nothing_else()
 {
    let world = World::start_with(WorldSettings {
        spec: "specs/data100",
        vm_hosts: true,
        ..WorldSettings::default()
    })
    .await;
    world
        .ferry(&["apply", "data100", "--auto-approve"], true)
        .expect_code(0, "generation 1");

    let production = Production::at_rest(&world, &[("prod", "bob", 5), ("staging", "alice", 3)]);
    assert!(
        production.pools.starts_with(&format!("{POOL}\tONLINE\t")),
        "{}",
        production.pools
    );
    assert!(
        production.records.values().all(|answer| answer.len() == 1),
        "{:?}",
        production.records
    );
    let mark = world.simulator.events().len();

    // The drill, kept for inspection.
    let drilled = world
        .ferry(&["drill", "data100", "--id", "e2e", "--keep"], true)
        .expect_code(0, "the drill, kept");
    insta::assert_snapshot!(
        "drill_real_servers_report",
        ferry_testkit::without_measurements(&drilled.stdout)
    );
    assert!(
        drilled.stderr.contains("importing it with -f"),
        "the copy was last imported by production's host: {}",
        drilled.stderr
    );

    // The drill's pool: production's, copied, imported on the drill's own host from the
    // drill's own disks, with every file as production wrote it.
    let drill_status = world
        .hosts
        .run(DRILL_VM, "zpool", &["status", POOL])
        .unwrap();
    for lun in 0..4 {
        assert!(
            drill_status.contains(&format!("{DRILL_VM}/scsi1/lun{lun}")),
            "the drill's pool is on the drill VM's own disks:\n{drill_status}"
        );
    }
    let drill_pools = pools_on(&world, DRILL_VM);
    let guid = |listing: &str| listing.split('\t').nth(2).map(str::trim).map(str::to_owned);
    assert_eq!(
        guid(&drill_pools),
        guid(&production.pools),
        "a copy carries production's pool id: {drill_pools} / {}",
        production.pools
    );
    let drill_home = world.hosts.path(DRILL_VM, Path::new(VM_HOME_ROOT)).unwrap();
    assert_eq!(sums_below(&drill_home, &production.files), production.sums);
    let drill_records = dig_records(&world, &["hub-drill", "staging-drill"]);
    assert!(
        drill_records.values().all(|answer| answer.len() == 1)
            && drill_records
                .values()
                .all(|answer| !production.records.values().any(|other| other == answer)),
        "the drill's records point at the drill's own address: {drill_records:?} / {:?}",
        production.records
    );

    // Production, untouched while the drill stands: its files, its pool on its host, its
    // records, and not one write to its resources in the simulator's record.
    production.assert_untouched(&world, "while the drill stands");
    let production_writes = |from: usize| -> Vec<String> {
        world
            .simulator
            .events()
            .iter()
            .skip(from)
            .filter(|event| event.what == "request" && event.method != "GET")
            .filter(|event| {
                let path = event.path.to_ascii_lowercase();
                path.contains("/resourcegroups/data100-g1/")
                    || path.ends_with("/resourcegroups/data100-g1")
            })
            .map(|event| format!("{} {}", event.method, event.path))
            .collect()
    };
    assert_eq!(production_writes(mark), Vec::<String>::new());

    // The clean-up: nothing of the drill is left, production still as it was.
    let cleaned = world
        .ferry(&["drill", "data100", "--clean"], true)
        .expect_code(0, "the drill's clean-up");
    insta::assert_snapshot!(
        "drill_real_servers_clean",
        ferry_testkit::without_measurements(&cleaned.stdout)
    );
    let state = world.simulator.dump_state();
    let drill_groups: Vec<String> = ferry_servers::state_resources(&state)
        .iter()
        .filter_map(|resource| resource["id"].as_str())
        .filter(|id| id.to_ascii_lowercase().contains("-drill"))
        .map(str::to_owned)
        .collect();
    assert_eq!(drill_groups, Vec::<String>::new());
    assert_eq!(
        dig_records(&world, &["hub-drill", "staging-drill"]),
        BTreeMap::from([
            ("hub-drill".to_owned(), Vec::new()),
            ("staging-drill".to_owned(), Vec::new())
        ])
    );
    assert!(
        !world.vm_hosts().running().contains(&DRILL_VM.to_owned()),
        "the drill VM's host is gone: {:?}",
        world.vm_hosts().running()
    );
    production.assert_untouched(&world, "after the clean-up");
    assert_eq!(production_writes(mark), Vec::<String>::new());
    world
        .ferry(&["plan", "data100", "--detailed-exitcode"], true)
        .expect_code(0, "production has nothing to change after the drill");
}

/// A staged drill of a warm and of a hot standby on real ZFS hosts: the drill's copy of
/// production is built first (its pool imported from the copies on the drill's first NFS VM,
/// and, hot, a replica seeded from it on the drill's standby), then the failover onto the
/// drill's standby; production's pool and files are as they were, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_drill_of_a_warm_and_a_hot_standby_runs_on_real_zfs_and_leaves_production_as_it_was()
 {
    for spec in ["specs/data100/warm", "specs/data100/hot"] {
        let world = World::start_with(WorldSettings {
            spec,
            vm_hosts: true,
            ..WorldSettings::default()
        })
        .await;
        world
            .ferry(&["apply", "data100", "--auto-approve"], true)
            .expect_code(0, &format!("{spec}: production and its standby"));
        let production = Production::at_rest(&world, &[("prod", "bob", 4)]);

        let drilled = world.ferry(&["drill", "data100", "--id", "staged"], true);
        assert_eq!(drilled.code, 0, "{spec}: {}", drilled.shown());
        assert!(
            drilled.stdout.contains("nothing of the drill is left"),
            "{spec}: {}",
            drilled.stdout
        );
        production.assert_untouched(&world, spec);
        let running = world.vm_hosts().running();
        assert!(
            running.iter().all(|vm| !vm.contains("-drill")),
            "{spec}: no drill VM's host runs: {running:?}"
        );
    }
}
