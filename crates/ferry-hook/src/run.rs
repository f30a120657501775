//! The `hook` provider: runs a command in its own process group, streams its output into the
//! progress view, kills the whole group on timeout, and reads its outputs from the file named
//! by `FERRY_OUTPUTS` or from its last line.
//!
//! A hook has no remote state to read: its reading is what ferry's state remembers of its
//! last successful run (the inputs it ran with, its exit code and outputs), so that the
//! planner runs it again exactly when those inputs change.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::fields::hook;
use ferry_core::provider::MAX_DURATION_SECONDS;
use ferry_core::{
    Action, ApplyContext, Attributes, Kind, Observation, Provider, ReadContext, Step, StepError,
    StepOutcome, Value,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::mask::{Masker, fingerprint, looks_secret};

/// The timeout of a hook whose spec leaves it out (the rules document the same default).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 900;

/// How many of the last output lines an error message shows.
pub const KEPT_LINES: usize = 20;

/// How long a timed-out hook's process group gets between SIGTERM and SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How long output is still read after the command exited: a background process that kept
/// the pipes open must not hold the step.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The environment variable that names the file a hook may write its outputs to. The file is
/// in a temporary folder made for the run, so it is fresh each time: outputs left by an
/// earlier run are never read as this one's.
pub const OUTPUTS_FILE_VARIABLE: &str = "FERRY_OUTPUTS";

/// What a hook gets of ferry's own environment, besides its `env` and the names its
/// `pass_env` lists: where to find programs, the home folder their configuration is in, the
/// language, the temporary folder and the time zone. Nothing else: ferry's own credentials
/// (`AZURE_*`, `FERRY_ARM_*`, the TSIG secret's variable) never reach a hook (safety invariant 13 of ARCHITECTURE.md).
pub const INHERITED_VARIABLES: &[&str] =
    &["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"];

/// The `PATH` of a hook when ferry itself runs without one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Whether `pass_env` may not name this variable: ferry's own credentials and settings stay
/// ferry's, whatever the spec asks.
pub fn is_ferrys_own_variable(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["AZURE_", "FERRY_", "ARM_", "MSI_", "IDENTITY_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// `hook`
#[derive(Debug, Clone)]
pub struct HookProvider {
    spec_root: PathBuf,
    /// The environment a hook's `PATH`, `HOME`, ... and `pass_env` come from: ferry's own
    /// (`None`), or one given (tests).
    parent_environment: Option<BTreeMap<String, String>>,
}

impl HookProvider {
    /// Hooks run relative to `spec_root`, the spec's folder.
    pub fn new(spec_root: impl Into<PathBuf>) -> Self {
        Self {
            spec_root: spec_root.into(),
            parent_environment: None,
        }
    }

    /// Takes a hook's inherited variables and `pass_env` from `environment` instead of ferry's
    /// own environment.
    pub fn with_parent_environment(mut self, environment: BTreeMap<String, String>) -> Self {
        self.parent_environment = Some(environment);
        self
    }

    fn parent_variable(&self, name: &str) -> Option<String> {
        match &self.parent_environment {
            Some(environment) => environment.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// The whole environment of a hook's process: the inherited variables, `pass_env`, the
    /// hook's `env`, and `FERRY_OUTPUTS` last, so that the file ferry reads is always its own.
    fn child_environment(
        &self,
        invocation: &Invocation,
        outputs_file: &Path,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut environment = BTreeMap::new();
        for name in INHERITED_VARIABLES {
            if let Some(value) = self.parent_variable(name) {
                environment.insert((*name).to_owned(), value);
            }
        }
        environment
            .entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        for name in &invocation.pass_env {
            let value = self.parent_variable(name).ok_or_else(|| {
                format!(
                    "pass_env names {name}, which is not set in ferry's environment: set it, or take it out of pass_env"
                )
            })?;
            environment.insert(name.clone(), value);
        }
        environment.extend(invocation.env.clone());
        environment.insert(
            OUTPUTS_FILE_VARIABLE.to_owned(),
            outputs_file.display().to_string(),
        );
        Ok(environment)
    }
}

/// A hook's inputs, checked.
#[derive(Debug, Clone)]
struct Invocation {
    program: String,
    arguments: Vec<String>,
    env: BTreeMap<String, String>,
    /// Variables of ferry's environment passed on by name.
    pass_env: Vec<String>,
    working_dir: PathBuf,
    timeout: Duration,
    retry: bool,
    outputs: Vec<String>,
}

fn invocation(inputs: &Attributes, spec_root: &Path) -> Result<Invocation, String> {
    let strings = |name: &str| -> Result<Vec<String>, String> {
        match inputs.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Ok(other.to_string()),
                })
                .collect(),
            Some(other) => Err(format!("`{name}` must be a list of strings, not {other}")),
        }
    };
    let (program, arguments) = match (
        strings("command")?,
        inputs.get("shell").and_then(Value::as_str),
    ) {
        (command, None) if !command.is_empty() => (command[0].clone(), command[1..].to_vec()),
        (command, Some(script)) if command.is_empty() => {
            ("sh".to_owned(), vec!["-c".to_owned(), script.to_owned()])
        }
        (_, Some(_)) => return Err("a hook has either command or shell, not both".to_owned()),
        _ => return Err("the hook has no command: add command = [\"program\", ...]".to_owned()),
    };
    let env: BTreeMap<String, String> = match inputs.get("env") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                (name.clone(), text)
            })
            .collect(),
        Some(other) => return Err(format!("`env` must be a table of strings, not {other}")),
    };
    let working_dir = match inputs.get("working_dir").and_then(Value::as_str) {
        Some(folder) => spec_root.join(folder),
        None => spec_root.to_owned(),
    };
    let timeout = inputs
        .get("timeout_seconds")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    // A value the apply engine could not resolve would run the command with `${...}` in it.
    let unresolved = std::iter::once(&program)
        .chain(&arguments)
        .chain(env.values())
        .find(|text| text.contains("${"));
    if let Some(text) = unresolved {
        let shown = Masker::for_env(&env).mask(text);
        return Err(format!(
            "`{shown}` is still unresolved: the step that produces it has not run"
        ));
    }
    let pass_env = strings("pass_env")?;
    if let Some(name) = pass_env.iter().find(|name| is_ferrys_own_variable(name)) {
        return Err(format!(
            "pass_env names {name}, one of ferry's own credentials or settings, which never reach a hook: give the hook its own credential through env"
        ));
    }
    Ok(Invocation {
        program,
        arguments,
        env,
        pass_env,
        working_dir,
        // The spec bounds it; a saved plan edited by hand is held to the same bound, so
        // that the deadline `now + timeout` cannot overflow.
        timeout: Duration::from_secs(timeout.clamp(1, MAX_DURATION_SECONDS.unsigned_abs())),
        retry: inputs.get("retry").and_then(Value::as_bool) == Some(true),
        outputs: strings(hook::OUTPUTS)?,
    })
}

/// The inputs as ferry's state keeps them: secret-looking env values as fingerprints.
fn remembered_inputs(inputs: &Attributes) -> Attributes {
    let mut kept = inputs.clone();
    if let Some(Value::Object(env)) = kept.get_mut("env") {
        for (name, value) in env.iter_mut() {
            if looks_secret(name)
                && let Some(text) = value.as_str()
            {
                *value = json!(fingerprint(text));
            }
        }
    }
    kept
}

/// Kills a process group when dropped: when the engine cancels a step (drops its future),
/// the hook's processes must not live on.
struct GroupGuard {
    group: Option<rustix::process::Pid>,
}

impl GroupGuard {
    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(group) = self.group {
            // The group may already be gone; there is nothing to do about a failure here.
            let _ = rustix::process::kill_process_group(group, signal);
        }
    }

    fn disarm(&mut self) {
        self.group = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::KILL);
    }
}

/// The end of a run.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without an exit code".to_owned(),
    }
}

fn with_last_lines(message: String, lines: &VecDeque<String>) -> String {
    if lines.is_empty() {
        format!("{message}; it printed nothing")
    } else {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        format!("{message}; last lines:\n{}", lines.join("\n"))
    }
}

/// Reads the declared outputs: from the JSON object the hook wrote to the file named by
/// `FERRY_OUTPUTS` (`written`, when the file exists), else from the JSON object on the last
/// line of standard output. A name in the file wins over the same name on the last line, so
/// a script can print what it likes and still hand over its outputs.
fn parse_outputs(
    declared: &[String],
    written: Option<&str>,
    last_line: Option<&str>,
) -> Result<Attributes, String> {
    let mut outputs = Attributes::new();
    if declared.is_empty() {
        return Ok(outputs);
    }
    let help = format!(
        "print a JSON object with {} as the command's last line, or write it to the file named by ${OUTPUTS_FILE_VARIABLE}",
        declared.join(", ")
    );
    let written = match written.map(|text| serde_json::from_str::<Value>(text.trim())) {
        None => None,
        Some(Ok(Value::Object(object))) => Some(object),
        Some(_) => {
            return Err(format!(
                "the file the hook wrote to ${OUTPUTS_FILE_VARIABLE} does not hold a JSON object, so its outputs cannot be read: write one JSON object with {} to it",
                declared.join(", ")
            ));
        }
    };
    let printed = match last_line.map(|line| serde_json::from_str::<Value>(line.trim())) {
        Some(Ok(Value::Object(object))) => Some(object),
        _ => None,
    };
    for name in declared {
        let value = written
            .as_ref()
            .and_then(|object| object.get(name))
            .or_else(|| printed.as_ref().and_then(|object| object.get(name)));
        if let Some(value) = value {
            outputs.insert(name.clone(), value.clone());
            continue;
        }
        return Err(match (&written, last_line, &printed) {
            (Some(_), _, _) => format!(
                "neither the file in ${OUTPUTS_FILE_VARIABLE} nor the hook's last line has `{name}`: {help}"
            ),
            (None, None, _) => format!("the hook declares outputs but printed nothing: {help}"),
            (None, Some(_), None) => format!(
                "the hook's last line is not a JSON object, so its outputs cannot be read: {help}"
            ),
            (None, Some(_), Some(_)) => {
                format!("the JSON object on the hook's last line has no `{name}`: {help}")
            }
        });
    }
    Ok(outputs)
}

/// What a successful run left behind.
#[derive(Debug)]
struct Finished {
    exit_code: i32,
    /// The last non-empty line of standard output.
    last_line: Option<String>,
    /// The contents of the `FERRY_OUTPUTS` file, when the hook wrote one.
    written_outputs: Option<String>,
}

impl HookProvider {
    async fn run(
        &self,
        invocation: &Invocation,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Finished, StepError> {
        // What ferry passes on from its own environment is a secret by default, like every
        // value from the environment.
        let passed: Vec<String> = invocation
            .pass_env
            .iter()
            .filter_map(|name| self.parent_variable(name))
            .collect();
        let masker = Masker::for_env(&invocation.env).with_values(passed);
        let fail = |message: String| {
            let message = masker.mask(&message);
            if invocation.retry {
                StepError::transient(message, None)
            } else {
                StepError::permanent(message)
            }
        };
        // A relative program path (`./hooks/deploy.sh`) means the one in the working folder,
        // whatever folder ferry itself runs in. It is made absolute because the child resolves
        // a relative path after it has changed into the working folder, which may itself be
        // relative (a spec given as `data100`).
        let program = if invocation.program.contains('/') {
            let joined = invocation.working_dir.join(&invocation.program);
            std::path::absolute(&joined)
                .unwrap_or(joined)
                .to_string_lossy()
                .into_owned()
        } else {
            invocation.program.clone()
        };
        // Removed with its contents when the run ends, however it ends.
        let outputs_folder = tempfile::Builder::new()
            .prefix("ferry-hook-")
            .tempdir()
            .map_err(|error| {
                StepError::transient(
                    format!(
                        "cannot make a temporary folder for the hook's outputs file: {error}; check that {} is writable",
                        std::env::temp_dir().display()
                    ),
                    None,
                )
            })?;
        let outputs_file = outputs_folder.path().join("outputs.json");
        let environment = self
            .child_environment(invocation, &outputs_file)
            .map_err(|message| StepError::permanent(masker.mask(&message)))?;
        let mut command = Command::new(&program);
        command
            .args(&invocation.arguments)
            // A clean environment: nothing of ferry's but what `child_environment` lists.
            .env_clear()
            .envs(&environment)
            .current_dir(&invocation.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|error| {
            StepError::permanent(masker.mask(&format!(
                "cannot start `{}` in {}: {error}; check the command and working_dir",
                invocation.program,
                invocation.working_dir.display()
            )))
        })?;
        let mut guard = GroupGuard {
            group: child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
        };
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let mut kept: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
        let mut last_stdout: Option<String> = None;
        let keep = |line: String, kept: &mut VecDeque<String>| {
            let line = masker.mask(&line);
            progress(line.clone());
            if kept.len() == KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        };
        let deadline = tokio::time::Instant::now() + invocation.timeout;
        let mut stdout_open = true;
        let mut stderr_open = true;
        let mut status: Option<ExitStatus> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let ending = loop {
            if let Some(status) = status
                && (!(stdout_open || stderr_open)
                    || drain_until.is_some_and(|until| tokio::time::Instant::now() >= until))
            {
                break Ending::Exited(status);
            }
            let wake = drain_until.map_or(deadline, |until| until.min(deadline));
            tokio::select! {
                line = stdout.next_line(), if stdout_open => match line {
                    Ok(Some(line)) => {
                        if !line.trim().is_empty() {
                            last_stdout = Some(line.clone());
                        }
                        keep(line, &mut kept);
                    }
                    _ => stdout_open = false,
                },
                line = stderr.next_line(), if stderr_open => match line {
                    Ok(Some(line)) => keep(line, &mut kept),
                    _ => stderr_open = false,
                },
                exited = child.wait(), if status.is_none() => match exited {
                    Ok(exited) => {
                        status = Some(exited);
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                    Err(error) => return Err(fail(format!("cannot wait for the hook: {error}"))),
                },
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        break Ending::TimedOut;
                    }
                }
            }
        };
        match ending {
            Ending::TimedOut => {
                guard.signal(rustix::process::Signal::TERM);
                if tokio::time::timeout(TERMINATE_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    guard.signal(rustix::process::Signal::KILL);
                }
                // The group's other members may outlive the leader's TERM: KILL reaches them.
                guard.signal(rustix::process::Signal::KILL);
                let _ = child.wait().await;
                guard.disarm();
                Err(fail(with_last_lines(
                    format!(
                        "timed out after {}s, and its whole process group was killed; raise timeout_seconds if it needs longer",
                        invocation.timeout.as_secs()
                    ),
                    &kept,
                )))
            }
            Ending::Exited(status) => {
                guard.disarm();
                if status.code() != Some(0) {
                    return Err(fail(with_last_lines(describe_status(status), &kept)));
                }
                // A small file on local disk, read once: not worth a blocking-pool round trip.
                let written_outputs = match std::fs::read_to_string(&outputs_file) {
                    Ok(text) => Some(text),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                    Err(error) => {
                        return Err(fail(format!(
                            "cannot read the outputs file the hook wrote to ${OUTPUTS_FILE_VARIABLE}: {error}; write a UTF-8 JSON object to it"
                        )));
                    }
                };
                Ok(Finished {
                    exit_code: 0,
                    last_line: last_stdout,
                    written_outputs,
                })
            }
        }
    }
}

#[async_trait]
impl Provider for HookProvider {
    fn kind(&self) -> Kind {
        Kind::Hook
    }

    /// No limit of the provider's own: hooks follow the apply's global parallelism
    /// (`--parallelism`, 10 by default), the operator's budget for this machine. A hook is a
    /// local process that mostly waits (on helm, kubectl, a remote API), so a cap below the
    /// global one only made wide plans slower: 200 independent hooks capped at 4 took 2.33
    /// times as long as Terraform's `local-exec` at its default 10 (BENCHMARKS.md, "Hooks
    /// against Terraform").
    /// The spec's `[limits] hook = N` or `--kind-parallelism hook=N` sets one.
    fn concurrency_limit(&self) -> usize {
        usize::MAX
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        let Some(remembered) = context.remembered else {
            return Observation::Absent;
        };
        let mut attributes = remembered.clone();
        // A secret env value is remembered as a fingerprint: when the spec's value still
        // has that fingerprint, show the spec's value, so that the planner sees no change.
        if let (Some(Value::Object(remembered_env)), Some(Value::Object(wanted_env))) =
            (attributes.get_mut("env"), context.fields.get("env"))
        {
            for (name, value) in remembered_env.iter_mut() {
                if let (Some(kept), Some(wanted)) =
                    (value.as_str(), wanted_env.get(name).and_then(Value::as_str))
                    && looks_secret(name)
                    && kept == fingerprint(wanted)
                {
                    *value = json!(wanted);
                }
            }
        }
        Observation::present(attributes)
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        match step.action {
            // Forgetting a run is all there is to delete: its effects went with its cluster.
            Action::Delete | Action::Retire => return Ok(StepOutcome::default()),
            Action::Run | Action::Create | Action::Update | Action::Replace => {}
            other => {
                return Err(StepError::permanent(format!(
                    "a hook has no `{other}` step: plan again with this version of ferry"
                )));
            }
        }
        let invocation = invocation(context.inputs, &self.spec_root)
            .map_err(|message| StepError::permanent(format!("{}: {message}", step.address)))?;
        let finished = self.run(&invocation, context.progress).await?;
        let declared = parse_outputs(
            &invocation.outputs,
            finished.written_outputs.as_deref(),
            finished.last_line.as_deref(),
        )
        .map_err(|message| {
            let message = Masker::for_env(&invocation.env).mask(&message);
            StepError::permanent(message)
        })?;
        let mut outputs = remembered_inputs(context.inputs);
        outputs.insert("exit_code".to_owned(), json!(finished.exit_code));
        outputs.extend(declared);
        Ok(StepOutcome { outputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(value: Value) -> Attributes {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn outputs_come_from_the_last_line_only_as_declared() {
        let declared = vec!["url".to_owned(), "replicas".to_owned()];
        let outputs = parse_outputs(
            &declared,
            None,
            Some(r#"{"url": "https://hub", "replicas": 2, "extra": true}"#),
        )
        .unwrap();
        assert_eq!(
            Value::Object(outputs.into_iter().collect()),
            json!({"url": "https://hub", "replicas": 2})
        );
        let errors = [
            parse_outputs(&declared, None, None),
            parse_outputs(&declared, None, Some("done")),
            parse_outputs(&declared, None, Some(r#"{"url": "x"}"#)),
        ]
        .map(|result| result.unwrap_err());
        insta::assert_snapshot!(errors.join("\n"));
        assert_eq!(
            parse_outputs(&[], None, Some("anything")),
            Ok(Attributes::new())
        );
    }

    #[test]
    fn outputs_from_the_file_win_over_the_last_line() {
        let declared = vec!["url".to_owned(), "replicas".to_owned()];
        let outputs = parse_outputs(
            &declared,
            Some("{\"url\": \"https://from-file\", \"extra\": 1}\n"),
            Some(r#"{"url": "https://from-stdout", "replicas": 3}"#),
        )
        .unwrap();
        assert_eq!(
            Value::Object(outputs.into_iter().collect()),
            json!({"url": "https://from-file", "replicas": 3})
        );
        let errors = [
            parse_outputs(&declared, Some("not json"), Some(r#"{"url": "x"}"#)),
            parse_outputs(&declared, Some("[1, 2]"), None),
            parse_outputs(&declared, Some(r#"{"url": "x"}"#), Some("done")),
        ]
        .map(|result| result.unwrap_err());
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn bad_inputs_are_explained() {
        let root = Path::new("/specs");
        let errors: Vec<String> = [
            json!({}),
            json!({"command": ["a"], "shell": "b"}),
            json!({"command": ["helm", "${aks_cluster.hub@g2.kubeconfig}"]}),
            json!({"command": ["x"], "env": {"API_TOKEN": "${hook.a.token}"}}),
        ]
        .into_iter()
        .map(|value| invocation(&inputs(value), root).unwrap_err())
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
        let shell = invocation(
            &inputs(json!({"shell": "echo hi", "working_dir": "hooks", "timeout_seconds": 5})),
            root,
        )
        .unwrap();
        assert_eq!(shell.program, "sh");
        assert_eq!(shell.arguments, vec!["-c", "echo hi"]);
        assert_eq!(shell.working_dir, Path::new("/specs/hooks"));
        assert_eq!(shell.timeout, Duration::from_secs(5));
        // Issue 18: a timeout past the spec's bound (a saved plan edited by hand) is held to
        // it, so that the hook's deadline `now + timeout` cannot overflow.
        let endless = invocation(
            &inputs(json!({"shell": "true", "timeout_seconds": u64::MAX})),
            root,
        )
        .unwrap();
        assert_eq!(endless.timeout, Duration::from_secs(7 * 24 * 60 * 60));
        assert!(
            tokio::time::Instant::now()
                .checked_add(endless.timeout)
                .is_some()
        );
    }

    #[test]
    fn secret_env_values_are_remembered_as_fingerprints() {
        let kept = remembered_inputs(&inputs(
            json!({"command": ["x"], "env": {"API_TOKEN": "s3cr3t-value", "HOST": "hub"}}),
        ));
        assert_eq!(kept["env"]["HOST"], json!("hub"));
        assert_eq!(kept["env"]["API_TOKEN"], json!(fingerprint("s3cr3t-value")));
    }
}
