//! One SSH connection per host, through the system `ssh` with a ControlMaster (the `openssh`
//! crate), with strict host-key checking, timeouts and reconnection.
//!
//! Every connection gets its own generated `ssh_config` (passed with `-F`) so that nothing in
//! the operator's or the system's configuration can weaken host-key checking: a pinned key is
//! the only key the connection accepts, and a key that is not known is refused, never added.

use std::fmt;
use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tempfile::TempDir;

/// How the host's key is verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostKeys {
    /// The host's public key in OpenSSH format (`ssh-ed25519 AAAA... comment`): only this key.
    Pinned(String),
    /// A known_hosts file that must already hold the host's key.
    KnownHostsFile(PathBuf),
}

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// An IP address or a host name, checked by [`SshTarget::check`].
    pub address: String,
    pub port: u16,
    pub user: String,
    /// A private key file; without one, the SSH agent (`SSH_AUTH_SOCK`) is used.
    pub key_file: Option<PathBuf>,
    pub host_keys: HostKeys,
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.address, self.port)
    }
}

impl SshTarget {
    /// Refuses addresses and users that `ssh` could read as options or that hold anything but
    /// the characters of host names, IP addresses and user names.
    pub fn check(&self) -> Result<(), SshError> {
        let bad = |text: &str, extra: &str| {
            text.is_empty()
                || text.starts_with('-')
                || !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        if bad(&self.address, ".-:") {
            return Err(SshError::Setup {
                message: format!(
                    "`{}` is not a host name or IP address: check the VM's outputs",
                    self.address
                ),
            });
        }
        if bad(&self.user, "._-") {
            return Err(SshError::Setup {
                message: format!(
                    "`{}` is not a user name: check ssh_user in the spec",
                    self.user
                ),
            });
        }
        if let HostKeys::Pinned(key) = &self.host_keys {
            let words: Vec<&str> = key.split_whitespace().collect();
            let well_formed = words.len() >= 2
                && (words[0].starts_with("ssh-") || words[0].starts_with("ecdsa-"))
                && words[1]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
            if !well_formed || key.contains('\n') {
                return Err(SshError::Setup {
                    message: "host_key is not an OpenSSH public key: write it as `ssh-ed25519 AAAA...`, as in the host's /etc/ssh/ssh_host_*_key.pub".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Time limits of one host's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshTimeouts {
    pub connect: Duration,
    /// For one command; `zpool import` of a large pool takes a while.
    pub command: Duration,
}

impl Default for SshTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            command: Duration::from_secs(300),
        }
    }
}

/// Why a command could not be run on the host (not why it failed there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error(
        "the host key of {target} does not match: expected {}, the host presented {presented}; if the host was rebuilt, check its new key out of band and update host_key or the known_hosts file",
        expected.join(" or ")
    )]
    HostKeyMismatch {
        target: String,
        expected: Vec<String>,
        presented: String,
    },
    #[error(
        "the host key of {target} is not in {source_name}, and ferry never trusts a key on first use: add the host's key to {source_name} or pin it with host_key"
    )]
    HostKeyUnknown { target: String, source_name: String },
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error(
        "`{command}` on {target} did not finish within {seconds} s: check the host, then apply again"
    )]
    Timeout {
        target: String,
        command: String,
        seconds: u64,
    },
    #[error(
        "the connection to {target} dropped while running `{command}`: {message}; ferry reconnects on the next try"
    )]
    Dropped {
        target: String,
        command: String,
        message: String,
    },
    #[error("cannot prepare the SSH connection: {message}")]
    Setup { message: String },
}

impl SshError {
    /// Whether trying again may help: not for a host key problem or a bad setting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. } | SshError::Timeout { .. } | SshError::Dropped { .. }
        )
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The first line of stderr that says something: what an error message quotes.
    pub fn first_error_line(&self) -> String {
        self.stderr
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("(no message)")
            .to_owned()
    }
}

struct Live {
    session: Session,
    // Holds the generated ssh_config and known_hosts for as long as the session lives.
    _files: TempDir,
}

/// A connection to one host, opened on first use and again after it dropped.
pub struct SshConnection {
    target: SshTarget,
    timeouts: SshTimeouts,
    live: tokio::sync::Mutex<Option<Live>>,
}

impl fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConnection")
            .field("target", &self.target)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// The line every command prints on stdout and stderr before it runs. The remote user's shell
/// runs its start-up files first (root's `.bashrc` may run `pyenv init`, which can complain on
/// stderr when two sessions race), and what they print is not the command's: it would be taken
/// for `zpool`'s answer, or its error.
const BEGIN_MARK: &str = "ferry-command-begins-7c2e";

/// The output after the begin mark's line: what the command itself printed. Without the mark
/// (the shell failed before it), the whole output.
fn after_begin_mark(output: &str) -> String {
    let line = format!("{BEGIN_MARK}\n");
    match output.find(&line) {
        Some(start) => output[start + line.len()..].to_owned(),
        None => output.to_owned(),
    }
}

/// What a stream from one host's command into another host's command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piped {
    /// The bytes copied from the sender's stdout to the receiver's stdin.
    pub bytes: u64,
    pub sender: CommandOutput,
    pub receiver: CommandOutput,
}

/// When a stream last moved, and how long it may stand still.
struct Stillness {
    started: std::time::Instant,
    /// Milliseconds from `started` to the last move.
    last: std::sync::atomic::AtomicU64,
    limit: Duration,
}

impl Stillness {
    fn new(limit: Duration) -> Self {
        Self {
            started: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            limit,
        }
    }

    fn mark(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends once nothing has moved for the limit.
    async fn stalled(&self) {
        loop {
            let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
            let still = self.started.elapsed().saturating_sub(last);
            if still >= self.limit {
                return;
            }
            tokio::time::sleep((self.limit - still).min(Duration::from_secs(1))).await;
        }
    }
}

/// The most a shell's start-up files may print before the begin mark on a stream's stdout.
const BEFORE_MARK_LIMIT: usize = 1 << 20;

/// Reads `from` up to the begin mark's line and returns what came after it in the same reads:
/// the first bytes of the command's own output. Empty when the stream ended without the mark
/// (the shell failed before the command; its stderr says why).
async fn skip_to_begin_mark(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let line = format!("{BEGIN_MARK}\n").into_bytes();
    let mut seen = Vec::new();
    let mut chunk = vec![0; 64 << 10];
    loop {
        if let Some(start) = seen.windows(line.len()).position(|window| window == line) {
            return Ok(seen.split_off(start + line.len()));
        }
        if seen.len() > BEFORE_MARK_LIMIT {
            return Err(std::io::Error::other(
                "the remote shell printed more than 1 MiB before the command started",
            ));
        }
        let read = from.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Vec::new());
        }
        seen.extend_from_slice(&chunk[..read]);
    }
}

fn marked(command: &str) -> String {
    format!("printf '%s\\n' {BEGIN_MARK}; printf '%s\\n' {BEGIN_MARK} >&2; {command}")
}

fn command_output(output: &std::process::Output) -> CommandOutput {
    CommandOutput {
        status: output.status.code(),
        stdout: after_begin_mark(&String::from_utf8_lossy(&output.stdout)),
        stderr: after_begin_mark(&String::from_utf8_lossy(&output.stderr)),
    }
}

/// The name a pinned key is filed under, so that the lookup does not depend on address or port.
const PINNED_ALIAS: &str = "ferry-pinned-host";

impl SshConnection {
    pub fn new(target: SshTarget, timeouts: SshTimeouts) -> Self {
        Self {
            target,
            timeouts,
            live: tokio::sync::Mutex::new(None),
        }
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    pub fn timeouts(&self) -> SshTimeouts {
        self.timeouts
    }

    /// Runs a command line (already quoted) on the host. A dropped connection is reported, not
    /// retried: whether running the command again is safe is the caller's call.
    pub async fn run(&self, command: &str) -> Result<CommandOutput, SshError> {
        let mut live = self.live.lock().await;
        if live.is_none() {
            *live = Some(self.connect().await?);
        }
        let session = &live.as_ref().expect("connected just above").session;
        let target = self.target.to_string();
        let marked = marked(command);
        let result =
            tokio::time::timeout(self.timeouts.command, session.raw_command(&marked).output())
                .await;
        let dropped = |message: String| SshError::Dropped {
            target: target.clone(),
            command: command.to_owned(),
            message,
        };
        let outcome = match result {
            Err(_) => Err(SshError::Timeout {
                target: target.clone(),
                command: command.to_owned(),
                seconds: self.timeouts.command.as_secs(),
            }),
            Ok(Err(error)) => Err(dropped(error.to_string())),
            // 255 is ssh's own failure: the master or the connection behind it is gone.
            Ok(Ok(output)) if output.status.code() == Some(255) => Err(dropped(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            )),
            Ok(Ok(output)) => Ok(command_output(&output)),
        };
        if outcome.is_err() {
            // A fresh connection next time: the old master may be half dead.
            if let Some(old) = live.take() {
                let _ = old.session.close().await;
            }
        }
        outcome
    }

    /// Runs a command that changes nothing, once more on a fresh connection if the first
    /// connection dropped.
    pub async fn run_read_only(&self, command: &str) -> Result<CommandOutput, SshError> {
        match self.run(command).await {
            Err(SshError::Dropped { .. }) => self.run(command).await,
            other => other,
        }
    }

    /// Runs `command` on this host and `receiving` on `receiver`'s, with this command's stdout
    /// copied into the other's stdin as it comes (a `zfs send` into a `zfs receive`), for as
    /// long as bytes keep moving: it fails once nothing has moved for the longer of the two
    /// command timeouts (the commands' exits count as moves). The bytes pass through ferry's machine, so the
    /// hosts need no way to reach each other. Either side's failure ends the other: the sender
    /// sees its reader gone, the receiver an early end of its input.
    pub async fn pipe_to(
        &self,
        command: &str,
        receiver: &SshConnection,
        receiving: &str,
    ) -> Result<Piped, SshError> {
        use openssh::Stdio;
        use tokio::io::AsyncWriteExt;
        if self.target == receiver.target {
            return Err(SshError::Setup {
                message: format!(
                    "a stream from {} to itself: the two ends must be two hosts",
                    self.target
                ),
            });
        }
        // Both connections are held for the stream, locked in one order (by target), so that
        // two streams in opposite directions never wait for each other.
        let self_first = self.target.to_string() <= receiver.target.to_string();
        let (first, second) = if self_first {
            (self, receiver)
        } else {
            (receiver, self)
        };
        let mut first_live = first.live.lock().await;
        if first_live.is_none() {
            *first_live = Some(first.connect().await?);
        }
        let mut second_live = second.live.lock().await;
        if second_live.is_none() {
            *second_live = Some(second.connect().await?);
        }
        let (ours, theirs) = if self_first {
            (&first_live, &second_live)
        } else {
            (&second_live, &first_live)
        };
        let sending = &ours.as_ref().expect("connected just above").session;
        let taking = &theirs.as_ref().expect("connected just above").session;
        let dropped = |target: &SshTarget, command: &str, message: String| SshError::Dropped {
            target: target.to_string(),
            command: command.to_owned(),
            message,
        };
        let limit = self.timeouts.command.max(receiver.timeouts.command);
        let moved = &Stillness::new(limit);
        let stream = async {
            let mut sender = sending
                .raw_command(marked(command))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await
                .map_err(|error| dropped(&self.target, command, error.to_string()))?;
            let mut taker = taking
                .raw_command(marked(receiving))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await
                .map_err(|error| dropped(&receiver.target, receiving, error.to_string()))?;
            let mut from = sender.stdout().take().expect("stdout is piped");
            let mut to = taker.stdin().take().expect("stdin is piped");
            let copy = async move {
                use tokio::io::AsyncReadExt;
                let first = skip_to_begin_mark(&mut from).await?;
                to.write_all(&first).await?;
                moved.mark();
                let mut total = first.len() as u64;
                let mut buffer = vec![0u8; 256 << 10];
                loop {
                    let read = from.read(&mut buffer).await?;
                    if read == 0 {
                        break;
                    }
                    to.write_all(&buffer[..read]).await?;
                    total += read as u64;
                    moved.mark();
                }
                to.shutdown().await?;
                moved.mark();
                Ok::<u64, std::io::Error>(total)
            };
            let (copied, sent, taken) = tokio::join!(
                copy,
                async {
                    let sent = sender.wait_with_output().await;
                    moved.mark();
                    sent
                },
                async {
                    let taken = taker.wait_with_output().await;
                    moved.mark();
                    taken
                }
            );
            let sent = sent.map_err(|error| dropped(&self.target, command, error.to_string()))?;
            let taken =
                taken.map_err(|error| dropped(&receiver.target, receiving, error.to_string()))?;
            // 255 is ssh's own failure: the master or the connection behind it is gone.
            if sent.status.code() == Some(255) {
                let message = String::from_utf8_lossy(&sent.stderr).trim().to_owned();
                return Err(dropped(&self.target, command, message));
            }
            if taken.status.code() == Some(255) {
                let message = String::from_utf8_lossy(&taken.stderr).trim().to_owned();
                return Err(dropped(&receiver.target, receiving, message));
            }
            let (sender, receiver) = (command_output(&sent), command_output(&taken));
            match copied {
                Ok(bytes) => Ok(Piped {
                    bytes,
                    sender,
                    receiver,
                }),
                // A copy that failed while both commands say they succeeded: the stream is
                // not known to be whole.
                Err(error) if sender.success() && receiver.success() => {
                    Err(dropped(&self.target, command, error.to_string()))
                }
                Err(_) => Ok(Piped {
                    bytes: 0,
                    sender,
                    receiver,
                }),
            }
        };
        // Bounded by stillness, not by length: a first full send of a large pool takes hours
        // and is alive while bytes move; one where nothing has moved (no byte, no exit) for
        // the longer command timeout is given up.
        let outcome = tokio::select! {
            outcome = stream => outcome,
            () = moved.stalled() => Err(SshError::Timeout {
                target: self.target.to_string(),
                command: format!("{command} | {receiving}"),
                seconds: limit.as_secs(),
            }),
        };
        if outcome.is_err() {
            // Fresh connections next time: a master may be half dead.
            for live in [&mut first_live, &mut second_live] {
                if let Some(old) = live.take() {
                    let _ = old.session.close().await;
                }
            }
        }
        outcome
    }

    /// Runs `command` on the host on a connection of its own and keeps it running for as long
    /// as the returned [`Held`] lives: until [`Held::release`], or until it is dropped, or
    /// ferry dies, each of which closes the command's stdin, on which it is to wait (`read`).
    /// What holds a lock on the host for a span of several commands (`flock` on an open file
    /// descriptor of the command's shell) lives exactly as long as this process means it to.
    ///
    /// The command says whether it holds by its first line on stdout: `ready` there, and it is
    /// held; anything else, or nothing, and it is waited for and its output returned (`Err`
    /// of the inner result): whatever it prints then is the reason it does not hold.
    pub async fn hold(
        self,
        command: &str,
        ready: &str,
    ) -> Result<Result<Held, CommandOutput>, SshError> {
        use openssh::Stdio;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let target = self.target.to_string();
        let dropped = |message: String| SshError::Dropped {
            target: target.clone(),
            command: command.to_owned(),
            message,
        };
        let started = async {
            let Live { session, _files } = self.connect().await?;
            let session = std::sync::Arc::new(session);
            let mut child = session
                .clone()
                .arc_raw_command(marked(command))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await
                .map_err(|error| dropped(error.to_string()))?;
            let mut stdout = child.stdout().take().expect("stdout is piped");
            let first = skip_to_begin_mark(&mut stdout)
                .await
                .map_err(|error| dropped(error.to_string()))?;
            let mut stdout = tokio::io::BufReader::new(first.as_slice().chain(stdout));
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .await
                .map_err(|error| dropped(error.to_string()))?;
            if line.trim_end() == ready {
                return Ok(Ok(Held {
                    child: Some(child),
                    session,
                    _files,
                }));
            }
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest).await;
            let mut stderr = String::new();
            if let Some(mut from) = child.stderr().take() {
                let _ = from.read_to_string(&mut stderr).await;
            }
            let status = child
                .wait()
                .await
                .map_err(|error| dropped(error.to_string()))?;
            Ok(Err(CommandOutput {
                status: status.code(),
                stdout: line + &rest,
                stderr: after_begin_mark(&stderr),
            }))
        };
        match tokio::time::timeout(self.timeouts.command, started).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SshError::Timeout {
                target: target.clone(),
                command: command.to_owned(),
                seconds: self.timeouts.command.as_secs(),
            }),
        }
    }

    async fn connect(&self) -> Result<Live, SshError> {
        self.target.check()?;
        let target = self.target.to_string();
        let setup = |error: std::io::Error| SshError::Setup {
            message: format!("cannot write ssh's files in a temporary folder: {error}"),
        };
        let files = tempfile::Builder::new()
            .prefix("ferry-ssh-")
            .tempdir()
            .map_err(setup)?;
        let known_hosts = match &self.target.host_keys {
            HostKeys::Pinned(key) => {
                let path = files.path().join("known_hosts");
                std::fs::write(&path, format!("{PINNED_ALIAS} {}\n", key.trim())).map_err(setup)?;
                path
            }
            HostKeys::KnownHostsFile(path) => path.clone(),
        };
        let mut config = String::from("Host *\n");
        config.push_str("  StrictHostKeyChecking yes\n  UpdateHostKeys no\n  CheckHostIP no\n");
        config.push_str(
            "  BatchMode yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n",
        );
        config.push_str("  ServerAliveInterval 5\n  ServerAliveCountMax 3\n");
        config.push_str(&format!(
            "  UserKnownHostsFile \"{}\"\n",
            known_hosts.display()
        ));
        if matches!(self.target.host_keys, HostKeys::Pinned(_)) {
            config.push_str(&format!(
                "  GlobalKnownHostsFile /dev/null\n  HostKeyAlias {PINNED_ALIAS}\n"
            ));
        }
        let config_path = files.path().join("ssh_config");
        std::fs::write(&config_path, config).map_err(setup)?;

        let mut builder = SessionBuilder::default();
        builder
            .user(self.target.user.clone())
            .port(self.target.port)
            .config_file(&config_path)
            .known_hosts_check(KnownHosts::Strict)
            .user_known_hosts_file(&known_hosts)
            .connect_timeout(self.timeouts.connect.max(Duration::from_secs(1)))
            .server_alive_interval(Duration::from_secs(5))
            .control_directory(files.path())
            // A master left behind by a killed ferry goes away by itself.
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(120).expect("not zero"),
            ));
        if let Some(key_file) = &self.target.key_file {
            builder.keyfile(key_file);
        }
        let connect = builder.connect(&self.target.address);
        let session =
            match tokio::time::timeout(self.timeouts.connect + Duration::from_secs(5), connect)
                .await
            {
                Err(_) => {
                    return Err(SshError::Connect {
                        target,
                        message: format!(
                            "no answer within {} s: check that the host is up and reachable",
                            self.timeouts.connect.as_secs()
                        ),
                    });
                }
                Ok(Err(error)) => {
                    // openssh puts ssh's own words in the error's source.
                    let mut message = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(inner) = source {
                        message = format!("{inner}\n{message}");
                        source = inner.source();
                    }
                    return Err(self.explain(&message, &known_hosts));
                }
                Ok(Ok(session)) => session,
            };
        Ok(Live {
            session,
            _files: files,
        })
    }

    /// Turns ssh's complaint into a typed error, with both fingerprints for a mismatch.
    fn explain(&self, message: &str, known_hosts: &std::path::Path) -> SshError {
        let target = self.target.to_string();
        if message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || message.contains("Host key verification failed")
            || message.contains("host key for")
        {
            let presented = presented_fingerprint(message);
            let expected = self.expected_fingerprints(known_hosts);
            if let Some(presented) = presented {
                return SshError::HostKeyMismatch {
                    target,
                    expected,
                    presented,
                };
            }
            return SshError::HostKeyUnknown {
                target,
                source_name: self.key_source(),
            };
        }
        if message.contains("No ") && message.contains("host key is known") {
            return SshError::HostKeyUnknown {
                target,
                source_name: self.key_source(),
            };
        }
        // ssh's own words, first line only: they say what failed (refused, denied, no route).
        let line = message
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("ssh failed")
            .to_owned();
        SshError::Connect {
            target,
            message: line,
        }
    }

    fn key_source(&self) -> String {
        match &self.target.host_keys {
            HostKeys::Pinned(_) => "the pinned host_key".to_owned(),
            HostKeys::KnownHostsFile(path) => path.display().to_string(),
        }
    }

    /// The fingerprints ferry expected, from `ssh-keygen -l` over the pinned key or the
    /// known_hosts entries for this host.
    fn expected_fingerprints(&self, known_hosts: &std::path::Path) -> Vec<String> {
        let lookup = match &self.target.host_keys {
            HostKeys::Pinned(_) => PINNED_ALIAS.to_owned(),
            HostKeys::KnownHostsFile(_) if self.target.port == 22 => self.target.address.clone(),
            HostKeys::KnownHostsFile(_) => {
                format!("[{}]:{}", self.target.address, self.target.port)
            }
        };
        let output = StdCommand::new("ssh-keygen")
            .arg("-l")
            .arg("-F")
            .arg(&lookup)
            .arg("-f")
            .arg(known_hosts)
            .output();
        let Ok(output) = output else {
            return vec!["(ssh-keygen could not list the expected key)".to_owned()];
        };
        let found: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                line.split_whitespace()
                    .find(|word| word.starts_with("SHA256:"))
                    .map(str::to_owned)
            })
            .collect();
        if found.is_empty() {
            vec!["(no key for this host)".to_owned()]
        } else {
            found
        }
    }
}

/// A command kept running on a host by [`SshConnection::hold`], on a connection of its own.
pub struct Held {
    // Dropped first: its `ssh` is killed, which closes the command's stdin.
    child: Option<openssh::Child<std::sync::Arc<Session>>>,
    session: std::sync::Arc<Session>,
    _files: TempDir,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl Held {
    /// Ends the command: its stdin closed, its end waited for (a few seconds at most), its
    /// connection closed.
    pub async fn release(mut self) {
        if let Some(child) = self.child.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
        }
        if let Some(session) = std::sync::Arc::into_inner(self.session) {
            let _ = session.close().await;
        }
    }
}

/// The fingerprint ssh printed for the key the host sent: `SHA256:...`.
pub fn presented_fingerprint(message: &str) -> Option<String> {
    let after = message.split("sent by the remote host is").nth(1)?;
    after
        .split_whitespace()
        .find(|word| word.starts_with("SHA256:"))
        .map(|word| word.trim_end_matches('.').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_shell_printed_before_the_command_is_not_the_commands() {
        let stderr = format!(
            "rm: cannot remove '/root/.pyenv/shims/tmp.DHOSGQya0A': No such file or directory\n{BEGIN_MARK}\ncannot import 'home': no such pool available\n"
        );
        assert_eq!(
            after_begin_mark(&stderr),
            "cannot import 'home': no such pool available\n"
        );
        assert_eq!(after_begin_mark(&format!("{BEGIN_MARK}\n")), "");
        // The shell failed before the mark: everything it said is the answer.
        assert_eq!(after_begin_mark("bash: fatal\n"), "bash: fatal\n");
    }

    #[test]
    fn the_presented_fingerprint_is_read_from_ssh_warning() {
        let message = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nSomeone could be eavesdropping on you right now (man-in-the-middle attack)!\nIt is also possible that a host key has just been changed.\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:3pb5B0jvs0mVvZ1dD6v1jMFtdTi1bUdR4+3bvNnPQZk.\nPlease contact your system administrator.\n";
        assert_eq!(
            presented_fingerprint(message).as_deref(),
            Some("SHA256:3pb5B0jvs0mVvZ1dD6v1jMFtdTi1bUdR4+3bvNnPQZk")
        );
        assert_eq!(presented_fingerprint("Connection refused"), None);
    }

    #[test]
    fn targets_that_ssh_could_read_as_options_are_refused() {
        let target = |address: &str, user: &str, key: &str| SshTarget {
            address: address.to_owned(),
            port: 22,
            user: user.to_owned(),
            key_file: None,
            host_keys: HostKeys::Pinned(key.to_owned()),
        };
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake+key/= comment";
        let results: Vec<String> = [
            target("10.0.0.4", "azureuser", key),
            target("-oProxyCommand=x", "azureuser", key),
            target("10.0.0.4", "root;reboot", key),
            target("10.0.0.4", "azureuser", "not a key"),
        ]
        .iter()
        .map(|target| match target.check() {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.to_string(),
        })
        .collect();
        insta::assert_snapshot!(results.join("\n"));
    }
}
