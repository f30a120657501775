//! The lock that stops two applies running at once on the same state (safety invariant 6).
//!
//! It is a lease: a file holding who took it, for what, and until when. A lock whose lease
//! expired, or whose process is gone from this host, is *stale*, and is still only broken by
//! `ferry force-unlock ID`: a silent takeover could run two applies at once if the holder is
//! merely slow, which is exactly what the lock exists to prevent.
//!
//! Functions take `now` instead of reading the clock, so tests need not sleep.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomically;
use crate::format_time;

/// The content of `lock.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// What `ferry force-unlock` takes.
    pub id: String,
    /// The user who took it.
    pub holder: String,
    pub pid: u32,
    pub host: String,
    /// The command, e.g. `apply failover.plan`.
    pub operation: String,
    /// RFC 3339 times.
    pub started_at: String,
    pub expires_at: String,
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
}

impl LockRequest {
    /// A request from this process, by the user in `$USER`.
    pub fn for_this_process(operation: impl Into<String>, lease: Duration) -> Self {
        Self {
            holder: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".to_owned()),
            pid: std::process::id(),
            host: this_host(),
            operation: operation.into(),
            lease,
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

/// Why the lock could not be taken, renewed or released.
///
/// `path` is where the lock is: a lock file, or for a shared state the lock blob's URL.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path} is locked by {holder} (pid {pid} on {host}) for `{operation}` since {started_at}, lease until {expires_at}: wait for it to finish, or if you are sure it is not running, run `ferry force-unlock {id}`",
        holder = lock.holder, pid = lock.pid, host = lock.host, operation = lock.operation,
        started_at = lock.started_at, expires_at = lock.expires_at, id = lock.id
    )]
    Held { path: PathBuf, lock: Box<LockInfo> },
    #[error(
        "{path} holds a stale lock from {holder} (pid {pid} on {host}) for `{operation}` since {started_at}: {reason}; make sure it is not running, then run `ferry force-unlock {id}`",
        holder = lock.holder, pid = lock.pid, host = lock.host, operation = lock.operation,
        started_at = lock.started_at, id = lock.id
    )]
    Stale {
        path: PathBuf,
        lock: Box<LockInfo>,
        reason: String,
    },
    #[error(
        "{path} is locked under id {found}, not {given}: nothing was unlocked; check the id in the lock error and run `ferry force-unlock {found}` if that is the lock to break"
    )]
    WrongId {
        path: PathBuf,
        given: String,
        found: String,
    },
    #[error(
        "our lock {id} on {path} is gone or was replaced (someone ran `ferry force-unlock`): stop, and check that no other apply is running"
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
    #[error("cannot {doing} lock file {path}: {source}")]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: io::Error,
    },
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
    // Only a process on this host can be checked, and only where /proc exists.
    if lock.host == this_host()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{}", lock.pid)).exists()
    {
        return Some(format!(
            "process {} no longer runs on {}",
            lock.pid, lock.host
        ));
    }
    None
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
    };
    // Write the whole content to a private file, then hard-link it into place: the link fails
    // if a lock exists (create_new semantics), and a crash never leaves a half-written lock.
    let directory = path.parent().unwrap_or(Path::new("."));
    let temporary = directory.join(format!(".lock.{}.{}.tmp", request.pid, lock.id));
    fs::write(&temporary, serialise(&lock)).map_err(io_error(&temporary, "write"))?;
    fs::File::open(&temporary)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&temporary, "sync"))?;
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
            let existing = read(path)?.ok_or_else(|| LockError::Io {
                path: path.to_owned(),
                doing: "take",
                source: io::Error::other("it vanished while being taken: try again"),
            })?;
            Err(match staleness(&existing, now) {
                Some(reason) => LockError::Stale {
                    path: path.to_owned(),
                    lock: Box::new(existing),
                    reason,
                },
                None => LockError::Held {
                    path: path.to_owned(),
                    lock: Box::new(existing),
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

/// Pushes our lease's end to `now + lease`. The holder calls it well before the lease ends.
pub fn renew(
    path: &Path,
    id: &str,
    lease: Duration,
    now: SystemTime,
) -> Result<LockInfo, LockError> {
    let mut lock = read_ours(path, id)?;
    lock.expires_at = format_time(now + lease);
    write_atomically(path, serialise(&lock).as_bytes()).map_err(io_error(path, "renew"))?;
    Ok(lock)
}

/// Removes our lock; refuses if the lock there is not ours any more.
pub fn release(path: &Path, id: &str) -> Result<(), LockError> {
    read_ours(path, id)?;
    fs::remove_file(path).map_err(io_error(path, "remove"))
}

/// Breaks the lock with this id, whoever holds it, and returns what it held.
pub fn force_unlock(path: &Path, id: &str) -> Result<LockInfo, LockError> {
    let lock = read(path)?.ok_or_else(|| LockError::NotLocked {
        path: path.to_owned(),
    })?;
    if lock.id != id {
        return Err(LockError::WrongId {
            path: path.to_owned(),
            given: id.to_owned(),
            found: lock.id,
        });
    }
    fs::remove_file(path).map_err(io_error(path, "remove"))?;
    Ok(lock)
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
        }
    }

    /// The message with the parts that vary between machines replaced.
    fn shown(error: &LockError, directory: &Path, lock: &LockInfo) -> String {
        error
            .to_string()
            .replace(&directory.display().to_string(), "<dir>")
            .replace(&lock.id, "<id>")
            .replace(&format!("pid {} ", lock.pid), "pid <pid> ")
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
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json is locked by alice (pid <pid> on <host>) for `apply failover.plan` since 2024-05-02T13:00:00Z, lease until 2024-05-02T13:05:00Z: wait for it to finish, or if you are sure it is not running, run `ferry force-unlock <id>`");
    }

    #[test]
    fn an_expired_lease_is_reported_stale_and_not_taken_over() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let lock = acquire(&path, &request("alice"), at("2024-05-02T13:00:00Z")).unwrap();
        let error = acquire(&path, &request("bob"), at("2024-05-02T13:06:00Z")).unwrap_err();
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json holds a stale lock from alice (pid <pid> on <host>) for `apply failover.plan` since 2024-05-02T13:00:00Z: its lease expired at 2024-05-02T13:05:00Z without being renewed; make sure it is not running, then run `ferry force-unlock <id>`");
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
        insta::assert_snapshot!(shown(&error, directory.path(), &lock), @"<dir>/lock.json holds a stale lock from alice (pid <pid> on <host>) for `apply failover.plan` since 2024-05-02T13:00:00Z: process <pid> no longer runs on <host>; make sure it is not running, then run `ferry force-unlock <id>`");
    }

    #[test]
    fn force_unlock_needs_the_right_id() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("lock.json");
        let now = at("2024-05-02T13:00:00Z");
        let lock = acquire(&path, &request("alice"), now).unwrap();
        let wrong = force_unlock(&path, "not-the-id").unwrap_err();
        insta::assert_snapshot!(shown(&wrong, directory.path(), &lock), @"<dir>/lock.json is locked under id <id>, not not-the-id: nothing was unlocked; check the id in the lock error and run `ferry force-unlock <id>` if that is the lock to break");
        assert_eq!(force_unlock(&path, &lock.id).unwrap(), lock);
        let nothing = force_unlock(&path, &lock.id).unwrap_err();
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
        insta::assert_snapshot!(shown(&lost, directory.path(), &lock), @"our lock someone-else on <dir>/lock.json is gone or was replaced (someone ran `ferry force-unlock`): stop, and check that no other apply is running");
        release(&path, &lock.id).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(directory.path()).unwrap().collect();
        assert!(leftovers.is_empty());
    }
}
