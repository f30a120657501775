//! The lock that stops two applies running at once on the same state (safety invariant 6 of ARCHITECTURE.md).
//!
//! It has two parts. The *lease* is a file holding who took it, for what, and until when: it is
//! what people read and what `ferry force-unlock ID` breaks. The *process lock* is an OS
//! advisory lock (`flock`) on a second file, held by the applying process for its whole life
//! and freed by the kernel however that process ends: while it is held, no second apply starts,
//! even if someone deletes the lease file. A holder checks both before it starts each step.
//!
//! A lock whose lease expired, or whose process is gone from this host, is *stale*, and is
//! still only broken by `ferry force-unlock ID`: a silent takeover could run two applies at
//! once if the holder is merely slow, which is exactly what the lock exists to prevent. A
//! holder that provably still runs (same host, its pid alive and started when the lock says)
//! is not broken unless the operator says so ([`IfHolderRuns::BreakAnyway`]).
//!
//! Functions take `now` instead of reading the clock, so tests need not sleep.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use ferry_core::fs::{WriteOptions, write_atomically};
use ferry_core::time::format_time;

/// The content of `lock.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// What `ferry force-unlock` takes.
    pub id: String,
    /// The user who took it: a name, or a uid number where the uid has no name.
    pub holder: String,
    pub pid: u32,
    pub host: String,
    /// The command, e.g. `apply failover.plan`.
    pub operation: String,
    /// RFC 3339 times.
    pub started_at: String,
    pub expires_at: String,
    /// When the holding process started, in clock ticks since the host booted (field 22 of
    /// `/proc/PID/stat`): with host and pid, it tells the holder from a later process that got
    /// the same pid. Absent in locks written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl LockInfo {
    /// `alice@nfs-admin (pid 4242)`: who holds the lock, as messages name them.
    pub fn who(&self) -> String {
        format!("{}@{} (pid {})", self.holder, self.host, self.pid)
    }
}

/// What a process asks the lock for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub operation: String,
    /// How long the lock holds without a renewal.
    pub lease: Duration,
    /// See [`LockInfo::process_start`].
    pub process_start: Option<u64>,
}

impl LockRequest {
    /// A request from this process, by the user it runs as.
    pub fn for_this_process(operation: impl Into<String>, lease: Duration) -> Self {
        let pid = std::process::id();
        Self {
            holder: this_user(),
            pid,
            host: this_host(),
            operation: operation.into(),
            lease,
            process_start: process_start_time(pid),
        }
    }
}

/// This machine's name, as a lock records it.
pub fn this_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The user this process runs as: the name of its uid in `/etc/passwd`, else `$USER` or
/// `$LOGNAME`, else the uid number. Never "unknown": a lock must say whom to ask.
pub fn this_user() -> String {
    let uid = rustix::process::getuid().as_raw();
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_name(&passwd, uid))
        .or_else(|| {
            ["USER", "LOGNAME"]
                .into_iter()
                .filter_map(|variable| std::env::var(variable).ok())
                .find(|name| !name.trim().is_empty())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The name `passwd` (the `/etc/passwd` text) gives `uid`.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid_field = fields.nth(1)?;
        (uid_field.parse::<u32>().ok() == Some(uid) && !name.is_empty()).then(|| name.to_owned())
    })
}

/// When process `pid` of this host started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); `None` where there is no such process or no `/proc`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself:
    // the fields after it start at the last ')'.
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 3 is the first after the name, so field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The state letter of process `pid` (field 3 of `/proc/PID/stat`: `R`, `S`, `Z`…).
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().next()?.chars().next()
}

/// Whether a lock's process still runs, as far as this host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// On this host, its pid runs, and (where the lock recorded it) started when the lock says.
    Alive,
    /// On this host, and gone: why.
    Gone(String),
    /// Another host's process, or no `/proc` to look in.
    Unknown,
}

/// Whether the process that holds `lock` still runs.
pub fn liveness(lock: &LockInfo) -> Liveness {
    // Only a process on this host can be checked, and only where /proc exists.
    if lock.host != this_host() || !Path::new("/proc/self").exists() {
        return Liveness::Unknown;
    }
    if !Path::new(&format!("/proc/{}", lock.pid)).exists() {
        return Liveness::Gone(format!(
            "process {} no longer runs on {}",
            lock.pid, lock.host
        ));
    }
    // A zombie (killed, not yet reaped by its parent) holds nothing any more.
    if process_state(lock.pid).is_some_and(|state| state == 'Z' || state == 'X') {
        return Liveness::Gone(format!(
            "process {} on {} has ended (it awaits its parent)",
            lock.pid, lock.host
        ));
    }
    match (lock.process_start, process_start_time(lock.pid)) {
        (Some(recorded), Some(now)) if recorded != now => Liveness::Gone(format!(
            "process {} on {} is another program now (it started after the lock was taken: the pid was reused)",
            lock.pid, lock.host
        )),
        _ => Liveness::Alive,
    }
}

/// What `force-unlock` does when the lock's holder provably still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfHolderRuns {
    /// Refuse ([`LockError::HolderRuns`]): breaking a running apply's lock is how two applies
    /// end up running the same failover at once.
    #[default]
    Refuse,
    /// Break it all the same: the holder stops before its next step and fails.
    BreakAnyway,
}

/// Refuses to break `lock` while its holder provably runs, unless asked to.
pub fn refuse_running_holder(
    place: &Path,
    lock: &LockInfo,
    if_running: IfHolderRuns,
) -> Result<(), LockError> {
    if if_running == IfHolderRuns::Refuse && liveness(lock) == Liveness::Alive {
        return Err(LockError::HolderRuns {
            path: place.to_owned(),
            lock: Box::new(lock.clone()),
            spec: None,
        });
    }
    Ok(())
}

/// `ferry force-unlock ID SPEC`, or without the spec when it is not known.
fn unlock_command(id: &str, spec: &Option<String>) -> String {
    match spec {
        Some(spec) => format!("ferry force-unlock {id} {}", shell_word(spec)),
        None => format!("ferry force-unlock {id}"),
    }
}

/// `text` as one shell word: quoted only when it needs to be.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Why the lock could not be taken, renewed or released.
///
/// `path` is where the lock is: a lock file, or for a shared state the lock blob's URL.
/// `spec`, when set (see [`LockError::for_spec`]), completes the `ferry force-unlock` command
/// the message suggests.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path} is locked by {who} for `{operation}` since {started_at}, lease until {expires_at}: wait for it to finish, or if you are sure it is not running, run `{command}`",
        who = lock.who(), operation = lock.operation,
        started_at = lock.started_at, expires_at = lock.expires_at,
        command = unlock_command(&lock.id, spec)
    )]
    Held {
        path: PathBuf,
        lock: Box<LockInfo>,
        spec: Option<String>,
    },
    /// The process lock is held: a ferry process on this machine runs with it now.
    #[error(
        "{path} is locked by {who} for `{operation}` since {started_at}, and that process still runs (it holds the lock file open): wait for it to finish (`--lock-timeout 10m` waits), or stop that process; its lock frees itself when it ends",
        who = lock.who(), operation = lock.operation, started_at = lock.started_at
    )]
    Running { path: PathBuf, lock: Box<LockInfo> },
    /// The process lock is held and its holder has not written its name yet.
    #[error(
        "{path} is being taken by another ferry process on this machine at this moment: try again in a few seconds"
    )]
    Busy { path: PathBuf },
    #[error(
        "{path} holds a stale lock from {who} for `{operation}` since {started_at}: {reason}; make sure it is not running, then run `{command}`",
        who = lock.who(), operation = lock.operation, started_at = lock.started_at,
        command = unlock_command(&lock.id, spec)
    )]
    Stale {
        path: PathBuf,
        lock: Box<LockInfo>,
        reason: String,
        spec: Option<String>,
    },
    #[error(
        "{path} is locked by {who} for `{operation}` since {started_at}, and that process still runs on this host: nothing was unlocked, since breaking a running apply's lock lets a second apply run the same steps at once; wait for it to finish or stop it (kill {pid}); if you really mean to take the lock from it, run `{command} --force-alive`, and it stops before its next step",
        who = lock.who(), operation = lock.operation, started_at = lock.started_at, pid = lock.pid,
        command = unlock_command(&lock.id, spec)
    )]
    HolderRuns {
        path: PathBuf,
        lock: Box<LockInfo>,
        spec: Option<String>,
    },
    #[error(
        "{path} is locked under id {found}, not {given}: nothing was unlocked; check the id in the lock error and run `{command}` if that is the lock to break",
        command = unlock_command(found, spec)
    )]
    WrongId {
        path: PathBuf,
        given: String,
        found: String,
        spec: Option<String>,
    },
    #[error(
        "our lock {id} on {path} is gone or was replaced (someone ran `ferry force-unlock` or deleted it): stop, and check that no other apply is running"
    )]
    Lost { path: PathBuf, id: String },
    #[error("{path} is not locked: there is nothing to unlock")]
    NotLocked { path: PathBuf },
    #[error("lock file {path} is not a ferry lock ({reason}): if no apply is running, delete it")]
    Corrupt { path: PathBuf, reason: String },
    /// A remote lock (a blob lease) did not answer or refused.
    #[error("cannot {doing} the lock {place}: {reason}")]
    Remote {
        place: String,
        doing: &'static str,
        reason: String,
    },
    #[error(
        "cannot {doing} lock file {path}: {}",
        crate::describe_io(source, path)
    )]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: io::Error,
    },
}

impl LockError {
    /// Completes the `ferry force-unlock` command the message suggests with the spec it takes.
    pub fn for_spec(mut self, spec: &Path) -> Self {
        let text = spec.display().to_string();
        match &mut self {
            LockError::Held { spec, .. }
            | LockError::Stale { spec, .. }
            | LockError::HolderRuns { spec, .. }
            | LockError::WrongId { spec, .. } => *spec = Some(text),
            _ => {}
        }
        self
    }

    /// Waiting may clear it: another apply holds the lock now.
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            LockError::Held { .. } | LockError::Running { .. } | LockError::Busy { .. }
        )
    }
}

fn io_error(path: &Path, doing: &'static str) -> impl FnOnce(io::Error) -> LockError {
    let path = path.to_owned();
    move |source| LockError::Io {
        path,
        doing,
        source,
    }
}

/// Reads the lock at `path`, if there is one.
pub fn read(path: &Path) -> Result<Option<LockInfo>, LockError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, "read")(source)),
    };
    let lock: LockInfo = serde_json::from_str(&text).map_err(|error| LockError::Corrupt {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    parse_time(path, &lock.expires_at)?;
    Ok(Some(lock))
}

fn parse_time(path: &Path, text: &str) -> Result<SystemTime, LockError> {
    humantime::parse_rfc3339(text).map_err(|error| LockError::Corrupt {
        path: path.to_owned(),
        reason: format!("bad time `{text}`: {error}"),
    })
}

/// Why a lock is stale at `now`, or `None` while it is live.
pub fn staleness(lock: &LockInfo, now: SystemTime) -> Option<String> {
    if let Ok(expires_at) = humantime::parse_rfc3339(&lock.expires_at)
        && expires_at <= now
    {
        return Some(format!(
            "its lease expired at {} without being renewed",
            lock.expires_at
        ));
    }
    match liveness(lock) {
        Liveness::Gone(reason) => Some(reason),
        Liveness::Alive | Liveness::Unknown => None,
    }
}

/// A fresh lock id, unique per process and acquisition, for any backend.
pub fn new_lock_id(request: &LockRequest, now: SystemTime) -> String {
    // Time, pid and a counter make the id unique without a random number generator: two
    // processes differ by pid, two acquisitions in one process by the counter.
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{millis:x}-{:x}-{count}", request.pid)
}

fn serialise(lock: &LockInfo) -> String {
    let mut text = serde_json::to_string_pretty(lock).expect("locks always serialise");
    text.push('\n');
    text
}

/// Takes the lock, or says who holds it (and whether that holder looks gone).
pub fn acquire(path: &Path, request: &LockRequest, now: SystemTime) -> Result<LockInfo, LockError> {
    let lock = LockInfo {
        id: new_lock_id(request, now),
        holder: request.holder.clone(),
        pid: request.pid,
        host: request.host.clone(),
        operation: request.operation.clone(),
        started_at: format_time(now),
        expires_at: format_time(now + request.lease),
        process_start: request.process_start,
    };
    // Write the whole content to a private file, then hard-link it into place: the link fails
    // if a lock exists (create_new semantics), and a crash never leaves a half-written lock.
    // Not `ferry_core::fs::write_atomically`, deliberately: its rename would replace a lock
    // another process holds.
    // Errors name the lock file, not the private file: that is the one a reader can act on.
    let directory = path.parent().unwrap_or(Path::new("."));
    let temporary = directory.join(format!(".lock.{}.{}.tmp", request.pid, lock.id));
    let written = fs::write(&temporary, serialise(&lock))
        .and_then(|()| fs::File::open(&temporary))
        .and_then(|file| file.sync_all());
    if let Err(source) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error(path, "write")(source));
    }
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            fs::File::open(directory)
                .and_then(|file| file.sync_all())
                .map_err(io_error(directory, "sync the directory of"))?;
            Ok(lock)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let existing = read(path)?.ok_or_else(|| LockError::Busy {
                path: path.to_owned(),
            })?;
            Err(match staleness(&existing, now) {
                Some(reason) => LockError::Stale {
                    path: path.to_owned(),
                    lock: Box::new(existing),
                    reason,
                    spec: None,
                },
                None => LockError::Held {
                    path: path.to_owned(),
                    lock: Box::new(existing),
                    spec: None,
                },
            })
        }
        Err(source) => Err(io_error(path, "create")(source)),
    }
}

fn read_ours(path: &Path, id: &str) -> Result<LockInfo, LockError> {
    match read(path)? {
        Some(lock) if lock.id == id => Ok(lock),
        _ => Err(LockError::Lost {
            path: path.to_owned(),
            id: id.to_owned(),
        }),
    }
}

/// Says whether the lease at `path` still names our lock `id`: a holder asks before it
/// starts each step.
pub fn verify(path: &Path, id: &str) -> Result<(), LockError> {
    read_ours(path, id).map(|_| ())
}

/// Pushes our lease's end to `now + lease`. The holder calls it well before the lease ends.
pub fn renew(
    path: &Path,
    id: &str,
    lease: Duration,
    now: SystemTime,
) -> Result<LockInfo, LockError> {
    let mut lock = read_ours(path, id)?;
    lock.expires_at = format_time(now + lease);
    write_atomically(path, serialise(&lock).as_bytes(), &WriteOptions::default())
        .map_err(io_error(path, "renew"))?;
    Ok(lock)
}

/// Removes our lock; refuses if the lock there is not ours any more.
pub fn release(path: &Path, id: &str) -> Result<(), LockError> {
    read_ours(path, id)?;
    fs::remove_file(path).map_err(io_error(path, "remove"))
}

/// Breaks the lock with this id and returns what it held; refuses while its holder provably
/// still runs, unless `if_running` says to break it anyway.
pub fn force_unlock(
    path: &Path,
    id: &str,
    if_running: IfHolderRuns,
) -> Result<LockInfo, LockError> {
    let lock = read(path)?.ok_or_else(|| LockError::NotLocked {
        path: path.to_owned(),
    })?;
    if lock.id != id {
        return Err(LockError::WrongId {
            path: path.to_owned(),
            given: id.to_owned(),
            found: lock.id,
            spec: None,
        });
    }
    refuse_running_holder(path, &lock, if_running)?;
    fs::remove_file(path).map_err(io_error(path, "remove"))?;
    Ok(lock)
}

/// The OS lock (`flock`) an applying process holds on a file beside the lease, for as long as
/// it lives: the kernel frees it when the process ends, however it ends, and nothing a user
/// does to the lease file lets a second process take it meanwhile.
///
/// The file also holds the holder's [`LockInfo`], so that a refused apply can name the holder
/// even when the lease file was deleted.
#[derive(Debug)]
pub struct ProcessLock {
    path: PathBuf,
    file: fs::File,
}

impl ProcessLock {
    /// Takes the process lock at `path`, or `None` while another process (or another
    /// `ProcessLock` in this one) holds it.
    pub fn try_take(path: &Path) -> Result<Option<Self>, LockError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error(path, "open"))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self {
                path: path.to_owned(),
                file,
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(errno) => Err(io_error(path, "lock")(errno.into())),
        }
    }

    /// Writes the holder into the file, for refused applies to name.
    ///
    /// In place, deliberately not with `ferry_core::fs::write_atomically`: the `flock` is held
    /// on this file, and a rename would put another file, unlocked, at its path.
    pub fn record(&mut self, lock: &LockInfo) -> Result<(), LockError> {
        let path = self.path.clone();
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(serialise(lock).as_bytes()))
            .and_then(|()| self.file.sync_data())
            .map_err(io_error(&path, "write"))
    }

    /// The holder recorded in the process lock file at `path`, if it can be read.
    pub fn holder(path: &Path) -> Option<LockInfo> {
        let mut text = String::new();
        fs::File::open(path).ok()?.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the file this lock is held on is still the one at its path: deleting or
    /// replacing it would let another process take a lock of its own there.
    pub fn still_in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
            _ => false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Empties the file and lets the lock go (dropping it lets it go too, leaving the name).
    pub fn release(self) {
        let _ = self.file.set_len(0);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    /// A request from a live process on this host: this test's own.
    fn request(holder: &str) -> LockRequest {
        LockRequest {
            holder: holder.to_owned(),
            pid: std::process::id(),
            host: this_host(),
            operation: "apply failover.plan".to_owned(),
            lease: Duration::from_secs(300),
            process_start: process_start_time(std::process::id()),
        }
    }

    /// The message with the parts that vary between machines replaced.
    fn shown(error: &LockError, directory: &Path, lock: &LockInfo) -> String {
        error
            .to_string()
            .replace(&directory.display().to_string(), "<dir>")
            .replace(&lock.id, "<id>")
            .replace(&format!("(pid {})", lock.pid), "(pid <pid>)")
            .replace(&format!("kill {})", lock.pid), "kill <pid>)")
            .replace(&format!("process {} ", lock.pid), "process <pid> ")
            .replace(&lock.host, "<host>")
    }

    #[test]
    fn a_second_acquire_is_refused_naming_the_holder() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(&path, &request("alice"), now).unwrap();
        assert_eq!(read(&path).unwrap().as_ref(), Some(&lock));
        let error = acquire(&path, &request("bob"), now + Duration::from_secs(60)).unwrap_err();
        assert!(matches!(error, LockError::Held { .. }));
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json is locked by alice@<host> (pid <pid>) for `apply failover.plan` since 2024-05-02T13:00:00Z, lease until 2024-05-02T13:05:00Z: wait for it to finish, or if you are sure it is not running, run `ferry force-unlock <id>`");
    }

    #[test]
    fn an_expired_lease_is_reported_stale_and_not_taken_over() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let lock = acquire(&path, &request("alice"), at("2024-05-02T13:00:00Z")).unwrap();
        let error = acquire(&path, &request("bob"), at("2024-05-02T13:06:00Z")).unwrap_err();
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json holds a stale lock from alice@<host> (pid <pid>) for `apply failover.plan` since 2024-05-02T13:00:00Z: its lease expired at 2024-05-02T13:05:00Z without being renewed; make sure it is not running, then run `ferry force-unlock <id>`");
        assert_eq!(read(&path).unwrap(), Some(lock));
    }

    #[test]
    fn a_dead_holder_on_this_host_is_reported_stale() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(
            &path,
            &LockRequest {
                pid: dead_pid,
                ..request("alice")
            },
            now,
        )
        .unwrap();
        let error = acquire(&path, &request("bob"), now).unwrap_err();
        assert!(matches!(error, LockError::Stale { .. }), "{error}");
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json holds a stale lock from alice@<host> (pid <pid>) for `apply failover.plan` since 2024-05-02T13:00:00Z: process <pid> no longer runs on <host>; make sure it is not running, then run `ferry force-unlock <id>`");
    }

    #[test]
    fn force_unlock_needs_the_right_id() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(&path, &request("alice"), now).unwrap();
        let wrong = force_unlock(&path, "not-the-id", IfHolderRuns::Refuse).unwrap_err();
        insta::assert_snapshot!(shown(&wrong, directory.path(), &lock), @"<dir>/lock.json is locked under id <id>, not not-the-id: nothing was unlocked; check the id in the lock error and run `ferry force-unlock <id>` if that is the lock to break");
        // The holder is this test's process, which runs: breaking it takes saying so.
        assert_eq!(
            force_unlock(&path, &lock.id, IfHolderRuns::BreakAnyway).unwrap(),
            lock
        );
        let nothing = force_unlock(&path, &lock.id, IfHolderRuns::BreakAnyway).unwrap_err();
        insta::assert_snapshot!(shown(&nothing, directory.path(), &lock), @"<dir>/lock.json is not locked: there is nothing to unlock");
        // Once broken, the lock can be taken again.
        acquire(&path, &request("bob"), now).unwrap();
    }

    #[test]
    fn the_holder_renews_and_releases_only_its_own_lock() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(&path, &request("alice"), now).unwrap();
        let renewed = renew(
            &path,
            &lock.id,
            Duration::from_secs(300),
            at("2024-05-02T13:04:00Z"),
        )
        .unwrap();
        assert_eq!(renewed.expires_at, "2024-05-02T13:09:00Z");
        // Past the first lease but within the renewed one, the lock is still live.
        let error = acquire(&path, &request("bob"), at("2024-05-02T13:06:00Z")).unwrap_err();
        assert!(matches!(error, LockError::Held { .. }), "{error}");
        let lost = release(&path, "someone-else").unwrap_err();
        insta::assert_snapshot!(shown(&lost, directory.path(), &lock), @"our lock someone-else on <dir>/lock.json is gone or was replaced (someone ran `ferry force-unlock` or deleted it): stop, and check that no other apply is running");
        release(&path, &lock.id).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(directory.path()).unwrap().collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn force_unlock_refuses_a_holder_that_provably_runs() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(&path, &request("alice"), now).unwrap();
        let refused = force_unlock(&path, &lock.id, IfHolderRuns::Refuse)
            .unwrap_err()
            .for_spec(Path::new("specs/data 100"));
        assert!(matches!(refused, LockError::HolderRuns { .. }), "{refused}");
        insta::assert_snapshot!(shown(&refused, directory.path(), &lock), @"<dir>/lock.json is locked by alice@<host> (pid <pid>) for `apply failover.plan` since 2024-05-02T13:00:00Z, and that process still runs on this host: nothing was unlocked, since breaking a running apply's lock lets a second apply run the same steps at once; wait for it to finish or stop it (kill <pid>); if you really mean to take the lock from it, run `ferry force-unlock <id> 'specs/data 100' --force-alive`, and it stops before its next step");
        assert_eq!(read(&path).unwrap(), Some(lock.clone()));
        force_unlock(&path, &lock.id, IfHolderRuns::BreakAnyway).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn a_holder_whose_pid_now_runs_another_program_is_stale() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        // This process's pid, but a start time it does not have: the pid was reused.
        let started = process_start_time(std::process::id()).unwrap();
        let lock = acquire(
            &path,
            &LockRequest {
                process_start: Some(started + 1),
                ..request("alice")
            },
            now,
        )
        .unwrap();
        assert!(matches!(liveness(&lock), Liveness::Gone(_)));
        let error = acquire(&path, &request("bob"), now).unwrap_err();
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json holds a stale lock from alice@<host> (pid <pid>) for `apply failover.plan` since 2024-05-02T13:00:00Z: process <pid> on <host> is another program now (it started after the lock was taken: the pid was reused); make sure it is not running, then run `ferry force-unlock <id>`");
        // Gone, so force-unlock needs no flag.
        force_unlock(&path, &lock.id, IfHolderRuns::Refuse).unwrap();
    }

    #[test]
    fn a_killed_holder_not_yet_reaped_is_gone() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        // Killed and not waited for: a zombie, whose /proc entry stays until it is reaped.
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = process_start_time(pid);
        child.kill().unwrap();
        while process_state(pid) != Some('Z') {
            std::thread::sleep(Duration::from_millis(10));
        }
        let lock = acquire(
            &path,
            &LockRequest {
                pid,
                process_start: started,
                ..request("alice")
            },
            at("2024-05-02T13:00:00Z"),
        )
        .unwrap();
        assert!(
            matches!(liveness(&lock), Liveness::Gone(_)),
            "{:?}",
            liveness(&lock)
        );
        force_unlock(&path, &lock.id, IfHolderRuns::Refuse).unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn the_holder_is_named_by_its_uid_without_user_in_the_environment() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 1001), None);
        assert!(!this_user().is_empty());
        assert_ne!(this_user(), "unknown");
    }

    #[test]
    fn a_process_lock_keeps_a_second_taker_out_until_released() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.flock");
        let mut first = ProcessLock::try_take(&path).unwrap().unwrap();
        let now = at("2024-05-02T13:00:00Z");
        let info = acquire(&directory.path().join("lock.json"), &request("alice"), now).unwrap();
        first.record(&info).unwrap();
        // flock locks belong to an open file, so a second open in this process is refused too.
        assert!(ProcessLock::try_take(&path).unwrap().is_none());
        assert_eq!(ProcessLock::holder(&path), Some(info));
        assert!(first.still_in_place());
        first.release();
        assert!(ProcessLock::try_take(&path).unwrap().is_some());
    }
}
