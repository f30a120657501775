//! `kill -9` of `ferry drill` on the ARM simulator run as its own process (`ferry-sim`, at
//! the smallest time scale the tests use), through the `ferry` binary against the live world
//! (issue 17): production's Azure part of data100 is built, then a drill is killed with
//! SIGKILL while it copies production's disks (the drill's restore point of production's VM
//! already taken, its disks not all made),
//! in the middle of its build (its VM created), and during its clean-up (three deletes
//! done). After each kill, `ferry drill --clean` (with `--id`, and without) is refused naming
//! the dead holder and `ferry force-unlock ...`; the advice, run as printed, frees the drill's
//! lock; then `--clean` removes everything. The proof is taken twice, by tools that are not
//! the drill's own readings: ARM's subscription lists filtered by the drill's tag (through
//! ferry's ARM client) and the simulator's own inventory (`GET /ferry-sim/state`): nothing
//! carries the drill's tag, and every resource of production reads byte for byte as before.
//!
//! The spec is data100 without its pool, records, hooks and check (which need zfs-fuse, BIND
//! and sshd: `data100_crash.rs` runs those): what a kill can leave on Azure is the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry_servers::{SimulatorControl, SimulatorProcess, SimulatorSettings, state_resources};
use serde_json::Value;

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
const DRILL_TAG: &str = "ferry-drill";

/// A binary of this workspace, built here (a no-op when up to date) in the target folder this
/// test runs from.
fn binary(package: &str, name: &str) -> PathBuf {
    // target/<profile>/deps/drill_killed_on_arm-HASH
    let executable = std::env::current_exe().unwrap();
    let profile_folder = executable.parent().unwrap().parent().unwrap();
    let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    command.args(["build", "--quiet", "-p", package, "--bin", name]);
    match profile_folder
        .file_name()
        .and_then(|folder| folder.to_str())
    {
        Some("debug") | None => {}
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    assert!(
        command.status().unwrap().success(),
        "cargo build -p {package} failed"
    );
    let path = profile_folder.join(name);
    assert!(path.is_file(), "no {name} at {}", path.display());
    path
}

fn ferry_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| binary("ferry-cli", "ferry"))
}

/// The simulator process, the spec's folder, and how `ferry` reaches them.
struct World {
    simulator: SimulatorProcess,
    control: SimulatorControl,
    work: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let work = tempfile::tempdir().unwrap();
        let simulator = SimulatorProcess::start(&SimulatorSettings {
            binary: binary("ferry-sim", "ferry-sim"),
            data_directory: work.path().join("sim"),
            time_scale: 0.0005,
            disk_backing_size: 8 << 20,
        })
        .unwrap();
        let control = simulator.control();
        // data100's Azure part: its pool, records, hooks and check left out.
        let spec = work.path().join("data100");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
        ferry_testkit::copy_spec_folder(&root, &spec);
        for folder in ["warm", "hot", "hooks"] {
            std::fs::remove_dir_all(spec.join(folder)).unwrap();
        }
        std::fs::remove_file(spec.join("service.toml")).unwrap();
        let cut = |file: &str, at: &str| {
            let text = std::fs::read_to_string(spec.join(file)).unwrap();
            let kept = &text[..text.find(at).unwrap()];
            std::fs::write(spec.join(file), kept).unwrap();
        };
        cut("storage.toml", "[zfs_pool.home]");
        cut("main.toml", "[zones.");
        World {
            simulator,
            control,
            work,
        }
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(ferry_binary());
        command
            .args(arguments)
            .current_dir(self.work.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (name, value) in self.simulator.ferry_environment() {
            command.env(name, value);
        }
        command
    }

    fn ferry(&self, arguments: &[&str]) -> Output {
        self.command(arguments).output().unwrap()
    }

    fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.work.path().join("data100/.ferry/drill/journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Every resource the simulator holds, by lower-cased id.
    fn inventory(&self) -> BTreeMap<String, Value> {
        state_resources(&self.control.state().unwrap())
            .into_iter()
            .map(|resource| {
                let id = resource["id"].as_str().unwrap().to_ascii_lowercase();
                (id, resource)
            })
            .collect()
    }

    /// The ids of what carries the drill's tag `id`, in the simulator's own inventory.
    fn tagged_in_inventory(&self, id: &str) -> Vec<String> {
        self.inventory()
            .into_iter()
            .filter(|(_, resource)| resource["tags"][DRILL_TAG].as_str() == Some(id))
            .map(|(key, _)| key)
            .collect()
    }

    /// ARM's lists of the subscription filtered by the drill's tag, through ferry's client.
    fn tagged_in_lists(&self, id: &str) -> Vec<String> {
        let client = ferry_arm::ArmClient::new(ferry_arm::ArmClientConfig::simulator(
            ferry_arm::Url::parse(&self.simulator.endpoint).unwrap(),
            self.simulator.ca_file.clone(),
        ))
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(client.tagged_in_subscription(SUBSCRIPTION, DRILL_TAG, id))
            .unwrap()
            .ids()
    }
}

/// Everything the simulator holds but the drills' (whose names are marked `-drill`, their
/// clusters' node groups too): production's groups, resources and AKS node groups, each
/// body as the simulator shows it.
fn production(inventory: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    inventory
        .iter()
        .filter(|(id, _)| !id.contains("-drill"))
        .map(|(id, resource)| (id.clone(), resource.to_string()))
        .collect()
}

/// Waits until `reached` holds (at most two minutes: a failure, never a measurement).
fn wait_until(what: &str, mut reached: impl FnMut() -> bool) {
    let started = Instant::now();
    while !reached() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the drill never got {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `ferry drill --id ID`, kills it with SIGKILL once `reached` holds, then recovers as
/// the refusal says and cleans (with `--id` or without): nothing carries the drill's tag,
/// production is as it was.
fn killed_then_cleaned(
    world: &World,
    id: &str,
    clean_with_id: bool,
    what: &str,
    mut reached: impl FnMut(&World, &[Value]) -> bool,
) {
    let production_before = production(&world.inventory());
    let journal_from = world.journal().len();
    let mut child = world
        .command(&["drill", "data100", "--id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(what, || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the drill ended before it got {what}"
        );
        let journal = world.journal();
        reached(world, &journal[journal_from.min(journal.len())..])
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !world.tagged_in_inventory(id).is_empty(),
        "{what}: the kill left nothing of the drill"
    );

    let mut clean_args = vec!["drill", "data100", "--clean"];
    if clean_with_id {
        clean_args.extend(["--id", id]);
    }
    let locked = world.ferry(&clean_args);
    let stderr = String::from_utf8_lossy(&locked.stderr).into_owned();
    assert_eq!(locked.status.code(), Some(1), "{what}: {stderr}");
    let advice = stderr
        .split('`')
        .find(|part| part.starts_with("ferry force-unlock "))
        .unwrap_or_else(|| panic!("{what}: no advice to unlock: {stderr}"))
        .to_owned();
    let words: Vec<&str> = advice.split(' ').skip(1).collect();
    let unlocked = world.ferry(&words);
    assert!(
        unlocked.status.success(),
        "{what}: `{advice}` failed: {}",
        String::from_utf8_lossy(&unlocked.stderr)
    );

    let clean = world.ferry(&clean_args);
    let stdout = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(
        clean.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(
        stdout
            .contains("nothing of the drill is left (nothing in the subscription carries its tag)"),
        "{what}: {stdout}"
    );
    assert_eq!(world.tagged_in_lists(id), Vec::<String>::new(), "{what}");
    assert_eq!(
        world.tagged_in_inventory(id),
        Vec::<String>::new(),
        "{what}"
    );
    assert_eq!(
        production(&world.inventory()),
        production_before,
        "{what}: production changed"
    );
}

fn event(record: &Value) -> &str {
    record["event"].as_str().unwrap_or_default()
}

fn step(record: &Value) -> &str {
    record["step"].as_str().unwrap_or_default()
}

#[test]
fn a_drill_killed_on_the_arm_simulator_is_removed_whole_by_clean_and_proven_by_its_tag() {
    let world = World::start();
    let built = world.ferry(&["apply", "data100", "--auto-approve"]);
    assert!(
        built.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let production_before = production(&world.inventory());
    assert!(
        production_before
            .keys()
            .any(|id| id.ends_with("/resourcegroups/data100-g1"))
            && production_before
                .keys()
                .any(|id| id.ends_with("/microsoft.compute/disks/data100-home0")),
        "{production_before:#?}"
    );

    // While it copies production's disks: the drill's restore point of production's VM is
    // taken (its disk restore points are in the simulator), which only the sweep by tag
    // finds (no reading shows a restore point collection).
    killed_then_cleaned(&world, "k1", true, "to its disk copies", |world, _| {
        world.inventory().keys().any(|key| {
            key.contains("/microsoft.compute/restorepointcollections/rpc-k1-")
                && key.contains("/diskrestorepoints/")
        })
    });
    // In the middle of its build: its VM created, the rest under way.
    killed_then_cleaned(&world, "k2", false, "its VM built", |_, journal| {
        journal
            .iter()
            .any(|record| event(record) == "step_finished" && step(record) == "vm.nfs@g1:create")
    });
    // During its clean-up: three deletes done.
    killed_then_cleaned(
        &world,
        "k3",
        true,
        "three deletes into its clean-up",
        |_, journal| {
            journal
                .iter()
                .filter(|record| {
                    event(record) == "step_finished" && step(record).ends_with(":delete")
                })
                .count()
                >= 3
        },
    );

    // Nothing of any drill anywhere, production as built.
    assert_eq!(
        world
            .inventory()
            .values()
            .filter(|resource| resource["tags"].get(DRILL_TAG).is_some())
            .count(),
        0
    );
    assert_eq!(production(&world.inventory()), production_before);
}
