//! The state backend going away in the middle of an apply: a real `ferry apply` of the data100
//! failover on the simulated world, with `[state] backend = "azure_blob"` on a real Azurite
//! (HTTPS, a test CA, a container SAS URL), has Azurite stopped under it once the failover is
//! under way.
//!
//! The apply must stop starting steps and end, with a report that names the state blob it
//! could not write, the step whose outputs were not saved and the command that resumes; no step
//! whose outputs were not saved may be journaled as done, locally or in the blob journal, and
//! the state blob must not go back in time. Azurite is then started again on the same port
//! with the same data folder, the dead apply's lock is dealt with as an operator would, and
//! `ferry apply` again must converge without running a finished step twice.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_state::StateBackend;
use ferry_state::journal::JournalRecord;
use ferry_state_blob::BlobBackend;
use serde_json::Value;
use support::{BlobScratch, Run, event, finished_ok, step};

/// The longest the test waits for anything: generous, so that it never fails on a slow
/// machine, yet a hang ends the test instead of blocking it for ever.
const PATIENCE: Duration = Duration::from_secs(600);

/// A scratch copy of specs/data100 whose state is in Azurite, and the Azurite.
struct Scratch {
    blob: BlobScratch,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            blob: BlobScratch::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.blob.command(args);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command
    }

    fn ferry(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    fn apply(&self) -> Run {
        self.ferry(&[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--new-world",
            "--auto-approve",
        ])
    }

    /// A backend of its own on the same blobs: what another machine would read.
    fn backend(&self) -> BlobBackend {
        self.blob.backend()
    }

    /// The state blob, as JSON.
    fn blob_state(&self) -> Value {
        serde_json::from_str(&self.backend().load_state().unwrap().to_json()).unwrap()
    }

    /// The blob journal, as JSON records.
    fn blob_journal(&self) -> Vec<Value> {
        self.backend()
            .read_journal()
            .unwrap()
            .iter()
            .map(|record: &JournalRecord| serde_json::to_value(record).unwrap())
            .collect()
    }

    /// Every whole line of the local journal mirror, parsed.
    fn local_journal(&self) -> Vec<Value> {
        self.blob.data100.journal()
    }

    fn world(&self) -> Value {
        self.blob.data100.world()
    }

    /// Generation 1 built, its state in the blob; then its API server breaks.
    fn built_and_broken(self) -> Self {
        let build = self.apply();
        assert_eq!(build.code, 0, "{}", build.stderr);
        assert_eq!(self.blob_state()["active_generation"], 1);
        self.blob.data100.break_api_server(1);
        self
    }
}

/// The steps a journal records as finished with success.
fn finished_steps(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|record| finished_ok(record))
        .map(|record| step(record).to_owned())
        .collect()
}

/// No step starts again once the journal recorded it finished.
fn check_nothing_ran_twice(records: &[Value], which: &str) {
    let mut finished = BTreeSet::new();
    for record in records {
        if event(record) == "step_started" {
            assert!(
                !finished.contains(step(record)),
                "{which}: {} started again after it was journaled as finished",
                step(record)
            );
        } else if finished_ok(record) {
            finished.insert(step(record).to_owned());
        }
    }
}

/// A running `ferry apply`, killed if the test ends before it does; its error output is read
/// as it comes, so that it never blocks on a full pipe.
struct Running {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Running {
        let mut child = command.spawn().unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        });
        Running {
            child,
            stderr: Some(stderr),
        }
    }

    fn has_ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Its exit code and error output, once it has ended.
    fn ended(mut self) -> Run {
        let status = self.child.wait().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `condition`, polling, for at most [`PATIENCE`]; `what` says what was awaited.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not so after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The disks and the pool are on generation 2, which serves, and the state says so.
fn check_failed_over(scratch: &Scratch) {
    let world = scratch.world();
    for disk in ["home0", "home1", "home2", "home3"] {
        let attributes = &world["instances"][format!("disk.{disk}")];
        assert_eq!(attributes["vm"], "vm.nfs@g2", "disk.{disk}");
        assert_eq!(attributes["resource_group"], "resource_group.main@g2");
    }
    assert_eq!(world["instances"]["zfs_pool.home"]["host"], "vm.nfs@g2");
    let state = scratch.blob_state();
    assert_eq!(state["active_generation"], 2);
    assert!(state.get("failover").is_none_or(Value::is_null), "{state}");
}

#[test]
fn azurite_stopped_mid_apply_stops_it_and_the_next_apply_resumes() {
    let mut scratch = Scratch::new().built_and_broken();
    let before = scratch.local_journal().len();
    let before_blob = scratch.blob_journal().len();
    // Slow enough that the cluster's create (480 s of estimate: 9.6 s) and the disk moves
    // (3.6 s) are still running when Azurite stops, a moment after the second detach.
    let mut apply = Running::spawn(scratch.command(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--world-time-scale",
        "0.02",
        "--auto-approve",
    ]));
    wait_for("two detaches finished", || {
        let records = scratch.local_journal();
        let done = records[before.min(records.len())..]
            .iter()
            .filter(|r| finished_ok(r) && step(r).ends_with(":detach"))
            .count();
        assert!(!apply.has_ended(), "the apply ended before Azurite stopped");
        done >= 2
    });
    let saved_before_the_stop = scratch.blob_state();
    scratch.blob.azurite.stop().unwrap();

    // 1. It stops starting steps and ends by itself, once the backend's retries give up.
    wait_for("the apply ends without its state backend", || {
        apply.has_ended()
    });
    let failed = apply.ended();
    let stderr = failed
        .stderr
        .replace(&scratch.blob.azurite.port.to_string(), "PORT");
    eprintln!("the apply Azurite stopped under:\n{stderr}");
    assert_eq!(failed.code, 1, "{stderr}");
    let state_place = "https://127.0.0.1:PORT/devstoreaccount1/ferry/data100/state.json";
    assert!(
        stderr.contains(&format!("  the state: cannot save state {state_place}: the storage service cannot be reached"))
            || stderr.contains(&format!("  the state: cannot append to journal {state_place}.journal: the storage service cannot be reached")),
        "the report must name the blob it could not write and why:\n{stderr}"
    );
    assert!(
        stderr.contains("Run `ferry apply data100` again to resume"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("sig="),
        "the SAS must never show:\n{stderr}"
    );
    let not_saved: BTreeSet<String> = stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "  done but not saved, so not recorded as done (the next apply checks them again): ",
            )
        })
        .unwrap_or_else(|| panic!("the report must name the steps not saved:\n{stderr}"))
        .split(", ")
        .map(str::to_owned)
        .collect();
    assert!(
        not_saved.contains("aks_cluster.hub@g2:create"),
        "the cluster's create was running when Azurite stopped:\n{stderr}"
    );
    // The lock could not be released: the message says how it gets free.
    assert!(
        stderr.contains("cannot release the lock") && stderr.contains("ferry force-unlock"),
        "{stderr}"
    );
    // No step started once the storage had failed (a step's start is shown only once its
    // record is in both journals).
    let progress: Vec<&str> = stderr.lines().collect();
    let stopping = progress
        .iter()
        .position(|line| line.contains("] stopping: "))
        .unwrap_or_else(|| panic!("the apply must say it stops:\n{stderr}"));
    assert!(
        !progress[stopping..]
            .iter()
            .any(|line| line.ends_with(": started")),
        "a step started after the storage failed:\n{stderr}"
    );
    let failed_records = scratch.local_journal()[before..].to_vec();

    // 3. Azurite comes back on the same port with the same data.
    scratch.blob.azurite.start_again().unwrap();
    let blob_records = scratch.blob_journal()[before_blob..].to_vec();
    // 2. Nothing stateful is lost. The blob journal is the local one less what could not be
    // written to it, in the same order.
    let mut local = failed_records.iter();
    for record in &blob_records {
        assert!(
            local.any(|mine| mine == record),
            "{record} is in the blob journal but not, in that order, in the local one"
        );
    }
    let dead_apply_started: BTreeSet<String> = blob_records
        .iter()
        .filter(|r| event(r) == "step_started")
        .map(|r| step(r).to_owned())
        .collect();
    // Every step journaled as done (in the local journal, which holds all the blob one does)
    // has its outputs in the state blob: the last such step of each instance.
    let state = scratch.blob_state();
    let mut journaled_outputs = std::collections::BTreeMap::new();
    for record in failed_records.iter().filter(|r| finished_ok(r)) {
        let instance = step(record).split_once(':').unwrap().0;
        journaled_outputs.insert(instance, (step(record), &record["result"]["ok"]["outputs"]));
    }
    for (instance, (id, outputs)) in journaled_outputs {
        assert_eq!(
            &state["instances"][instance]["outputs"], outputs,
            "{id} is journaled as done: its outputs must be in the state blob"
        );
    }
    for id in &not_saved {
        assert!(
            dead_apply_started.contains(id),
            "{id} is reported not saved but never started"
        );
        assert!(
            !failed_records
                .iter()
                .chain(&blob_records)
                .any(|r| finished_ok(r) && step(r) == id),
            "{id}'s outputs were not saved, yet it is journaled as done"
        );
    }
    // The cluster exists (the world keeps every finished operation), but ferry has no record of
    // it: its outputs are not in the state.
    assert!(scratch.world()["instances"]["aks_cluster.hub@g2"].is_object());
    assert!(
        state["instances"]["aks_cluster.hub@g2"].is_null(),
        "{state}"
    );
    // The state blob never went back: everything saved before the stop is still there.
    for (instance, saved) in saved_before_the_stop["instances"].as_object().unwrap() {
        assert!(
            state["instances"][instance].is_object(),
            "{instance} was in the state blob before the stop and is gone: {saved}"
        );
    }
    assert_eq!(state["failover"], saved_before_the_stop["failover"]);
    assert_eq!(state["active_generation"], 1);

    // The dead apply could not release its lease. Against Azure it stays until 60 s after its
    // last renewal; Azurite (3.35) forgets leases when it restarts, so here it is usually free
    // already. Should it still be the dead apply's, the next apply is refused naming it, and the
    // operator breaks it with force-unlock, as the refusal says.
    if let Some(lock) = scratch.backend().read_lock().unwrap() {
        let refused = scratch.apply();
        eprintln!("the dead apply's lease is still on:\n{}", refused.stderr);
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("is locked by")
                && refused
                    .stderr
                    .contains(&format!("run `ferry force-unlock {}`", lock.id)),
            "{}",
            refused.stderr
        );
        let unlock = scratch.ferry(&["force-unlock", &lock.id, "data100"]);
        assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    }
    let resumed = scratch.apply();
    eprintln!("the resumed apply:\n{}", resumed.stderr);
    assert_eq!(
        resumed.code, 0,
        "the resumed apply failed:\n{}",
        resumed.stderr
    );
    let settled = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(settled.code, 0, "changes are left:\n{}", settled.stderr);
    check_failed_over(&scratch);

    // No step journaled as finished ran again, in either journal.
    let local_records = scratch.local_journal()[before..].to_vec();
    let blob_records = scratch.blob_journal()[before_blob..].to_vec();
    check_nothing_ran_twice(&local_records, "local journal");
    check_nothing_ran_twice(&blob_records, "blob journal");
    let finished = finished_steps(&blob_records);
    assert!(finished.contains("zfs_pool.home:import"), "{finished:?}");
    assert_eq!(event(blob_records.last().unwrap()), "apply_finished");
    assert_eq!(blob_records.last().unwrap()["complete"], true);
}
