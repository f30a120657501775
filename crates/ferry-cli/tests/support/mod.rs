//! The harness the `ferry` binary's tests share: a scratch folder holding a copy of
//! specs/data100, the binary run in it as an operator runs it, and readers of the world file,
//! the state and the journal it leaves there.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// How a run of `ferry` ended: its exit code (-1 when a signal ended it) and what it printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copies the folder `from` to `to`, leaving out any `.ferry` folder (a state, a journal and
/// a lock that a run in the repository may have left).
pub fn copy_dir(from: &Path, to: &Path) {
    ferry_testkit::copy_spec_folder(from, to);
}

/// `ferry ARGS` run from `folder`, without colour and with nothing on stdin.
pub fn command(folder: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .current_dir(folder)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs `ferry ARGS` from `folder` to its end.
pub fn ferry(folder: &Path, args: &[&str]) -> Run {
    command(folder, args).output().unwrap().into()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every whole line of the journal at `path`, parsed (none when there is no journal yet).
pub fn read_journal(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// A journal record's event: `apply_started`, `step_started`, `step_finished`, ...
pub fn event(record: &Value) -> &str {
    record["event"].as_str().unwrap_or_default()
}

/// The id of the step a journal record is about.
pub fn step(record: &Value) -> &str {
    record["step"].as_str().unwrap_or_default()
}

/// Whether a journal record is a step's successful end.
pub fn finished_ok(record: &Value) -> bool {
    event(record) == "step_finished" && record["result"].get("ok").is_some()
}

/// A scratch folder holding a copy of specs/data100 (as `data100`) and the world file.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self::with_spec("specs/data100")
    }

    /// A scratch folder whose `data100` is a copy of `spec` (a folder of the repository, such
    /// as `specs/data100/warm`), so that every path below works the same.
    pub fn with_spec(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repository().join(spec), &dir.path().join("data100"));
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The copy of specs/data100.
    pub fn spec(&self) -> PathBuf {
        self.path().join("data100")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        command(self.path(), args)
    }

    pub fn ferry(&self, args: &[&str]) -> Run {
        ferry(self.path(), args)
    }

    pub fn world(&self) -> Value {
        read_json(&self.path().join("world.json"))
    }

    pub fn set_world(&self, world: &Value) {
        std::fs::write(self.path().join("world.json"), world.to_string()).unwrap();
    }

    pub fn state(&self) -> Value {
        read_json(&self.path().join("data100/.ferry/state.json"))
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path().join("data100/.ferry/lock.json")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path().join("data100/.ferry/journal.jsonl")
    }

    /// Every whole line of the journal, parsed.
    pub fn journal(&self) -> Vec<Value> {
        read_journal(&self.journal_path())
    }

    /// Builds generation 1 in the simulated world.
    pub fn build(&self) {
        let run = self.ferry(&[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--new-world",
            "--auto-approve",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }

    /// Makes the AKS API server of `generation` stop answering.
    pub fn break_api_server(&self, generation: u32) {
        let mut world = self.world();
        world["unhealthy"][format!("aks_cluster.hub@g{generation}")] =
            Value::from("GET /readyz timed out after 5s");
        self.set_world(&world);
    }

    /// Makes the AKS API server of `generation` answer again.
    pub fn mend_api_server(&self, generation: u32) {
        let mut world = self.world();
        if let Some(unhealthy) = world["unhealthy"].as_object_mut() {
            unhealthy.remove(&format!("aks_cluster.hub@g{generation}"));
        }
        self.set_world(&world);
    }
}

/// A scratch copy of specs/data100 whose `[state]` is in Azure Blob Storage on a real Azurite
/// (HTTPS, a test CA, a container SAS URL in [`BlobScratch::SAS_VARIABLE`]).
pub struct BlobScratch {
    /// Declared first so that it is dropped (stopped) before the folder holding its data is
    /// removed, however the test ends.
    pub azurite: ferry_servers::Azurite,
    pub data100: Scratch,
}

impl BlobScratch {
    /// The container and the state blob the spec names.
    pub const CONTAINER: &'static str = "ferry";
    pub const BLOB: &'static str = "data100/state.json";
    /// The variable the spec's `sas_url_env` names.
    pub const SAS_VARIABLE: &'static str = "FERRY_TEST_STATE_SAS_URL";

    /// Azurite started in the scratch folder, its container created, data100's `[state]`
    /// pointed at it.
    pub fn new() -> Self {
        let data100 = Scratch::new();
        let azurite = ferry_servers::Azurite::start(&data100.path().join("azurite"))
            .unwrap_or_else(|error| panic!("{error}"));
        let main = data100.spec().join("main.toml");
        let text = std::fs::read_to_string(&main).unwrap();
        let local = "[state]\nbackend = \"local\"\n";
        assert!(text.contains(local), "data100's [state] changed: {text}");
        let blob_state = format!(
            "[state]\nbackend = \"azure_blob\"\naccount = \"devstoreaccount1\"\ncontainer = \"{}\"\nblob = \"{}\"\nsas_url_env = \"{}\"\nca_file = \"{}\"\n",
            Self::CONTAINER,
            Self::BLOB,
            Self::SAS_VARIABLE,
            azurite.ca_file.display()
        );
        std::fs::write(&main, text.replace(local, &blob_state)).unwrap();
        let scratch = BlobScratch { azurite, data100 };
        scratch.backend().create_container().unwrap();
        scratch
    }

    /// `ferry ARGS` in the scratch folder, with the container's SAS URL in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.data100.command(args);
        command.env(Self::SAS_VARIABLE, self.azurite.sas_url(Self::CONTAINER));
        command
    }

    /// A backend of its own on the same blobs (a bearer token, another local journal): what
    /// another machine would read.
    pub fn backend(&self) -> ferry_state_blob::BlobBackend {
        use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig};
        let elsewhere = self.data100.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        BlobBackend::new(BlobStateConfig {
            container_url: url::Url::parse(&self.azurite.container_url(Self::CONTAINER)).unwrap(),
            blob: Self::BLOB.to_owned(),
            auth: BlobAuth::Credential(ferry_arm::CredentialChoice::StaticToken(
                ferry_core::Secret::new(ferry_servers::azurite_token()),
            )),
            ca_file: Some(self.azurite.ca_file.clone()),
            local_journal: elsewhere.join("journal.jsonl"),
            lease: BlobStateConfig::SHORTEST_LEASE,
            request_timeout: std::time::Duration::from_secs(30),
            retry_for: std::time::Duration::from_secs(30),
        })
        .unwrap()
    }
}

/// `ferry ARGS` in `scratch`, which must succeed.
pub fn ferry_ok(scratch: &Scratch, args: &[&str]) -> Run {
    let run = scratch.ferry(args);
    assert_eq!(run.code, 0, "ferry {args:?}\n{}{}", run.stdout, run.stderr);
    run
}

/// The instances of the simulated world, in address order.
pub fn instances(scratch: &Scratch) -> Vec<String> {
    scratch.world()["instances"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The world's instances of one generation.
pub fn of_generation(scratch: &Scratch, generation: u32) -> Vec<String> {
    let suffix = format!("@g{generation}");
    instances(scratch)
        .into_iter()
        .filter(|address| address.ends_with(&suffix))
        .collect()
}

/// From the section that starts with `heading` to the next blank line or the end.
pub fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading} in:\n{text}"));
    let rest = &text[start..];
    rest.find("\n\n").map_or(rest, |end| &rest[..end + 1])
}
