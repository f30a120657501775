//! Continuous replication of a pool to a read-only replica on another host, and the replica's
//! promotion when the primary is gone: what a hot standby runs on.
//!
//! How the bytes move: ferry runs `zfs send` on the primary and `zfs receive` on the replica,
//! each over its own SSH connection, and copies the stream between them
//! ([`SshConnection::pipe_to`]). The hosts hold no credentials for each other, so a primary
//! that is compromised or confused cannot write to its replica; both host keys are checked the
//! way every ferry connection checks them (safety invariant 8); and ferry, which fences and
//! promotes, sees every snapshot that reached the replica. Debian's `syncoid` also pipes
//! through the machine it runs on, but brings its own SSH options and bookkeeping (its own
//! sync snapshots, resume tokens that zfs-fuse's pool version 23 does not have).
//!
//! The rules, each checked against the pools themselves right before it matters (the world,
//! not a record, says which pool is the primary):
//! - **Direction.** A pool receives only while it carries `ferry:role=replica` and
//!   `readonly=on`; a pool sends only while it carries neither. Two pools can then never
//!   receive from each other, and a promoted replica (`ferry:role=primary`, writable) is never
//!   rolled back by a receive.
//! - **One point in time.** Each round takes one recursive snapshot (`zfs snapshot -r`, atomic
//!   across the pool's datasets) named `ferry-<UTC time>`, and sends each dataset's increment
//!   from the newest snapshot both sides share (by GUID, not by name). Properties are not
//!   sent: the replica keeps its own role and `readonly`, and a promotion applies the spec's
//!   dataset settings.
//! - **The base is kept.** The snapshot the next increment needs is held on the primary
//!   (`zfs hold`), so that nothing destroys it; older `ferry-` snapshots are destroyed on both
//!   sides only once a round has reached every dataset.
//! - **An interrupted round leaves a usable replica.** A receive is atomic: a dataset that did
//!   not finish stays at its previous snapshot, and the next round's `receive -F` rolls back
//!   whatever the interrupted one left. A promotion rolls every dataset back to the newest
//!   snapshot that all of them hold, so the promoted pool is one consistent point in time.
//! - **Promotion only after the fence.** The old primary is asked over SSH right before; one
//!   that answers with the pool imported is not fenced, and the promotion is refused (safety
//!   invariant 14 of the design: a replica is writable only after the primary is fenced).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::shell::command_line;
use crate::ssh::{CommandOutput, SshConnection, SshError, SshTimeouts};

/// The user property that says which side of a replication a pool is.
pub const ROLE_PROPERTY: &str = "ferry:role";
/// The user property a replica's dataset gets when the primary no longer has it: the name of
/// the round that found it gone.
pub const REMOVED_PROPERTY: &str = "ferry:removed-at";
/// The prefix of the snapshots replication takes; no other snapshot is ever destroyed.
pub const SNAPSHOT_PREFIX: &str = "ferry-";
/// The tag of the hold on the snapshot the next increment needs.
pub const HOLD_TAG: &str = "ferry-replication-base";

/// The folder of the primary's round locks: a tmpfs on today's systems (`/var/lock` links to
/// it), so a reboot leaves no lock behind, and writable by every user (sticky).
pub const LOCK_FOLDER: &str = "/run/lock";

/// The file a pool's rounds lock on its primary (`flock`): one per pool name on a host.
pub fn lock_path(pool: &str) -> String {
    format!("{LOCK_FOLDER}/ferry-replication-{pool}.lock")
}

/// What the lock's shell prints once it holds the lock, and when another holds it.
const LOCK_HELD: &str = "ferry-round-lock-held";
const LOCK_BUSY: &str = "ferry-round-lock-busy";

/// How long the old primary is given to answer before it counts as fenced (as for an import).
const FENCED_HOST_CONNECT: Duration = Duration::from_secs(5);

/// One end of a replication: a host's connection and the pool's name there.
#[derive(Debug, Clone, Copy)]
pub struct PoolEnd<'a> {
    pub connection: &'a SshConnection,
    pub pool: &'a str,
}

impl std::fmt::Display for PoolEnd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.pool, self.connection.target())
    }
}

/// A snapshot as ZFS lists it: its name after the `@`, its GUID and when it was taken (Unix
/// seconds, by the primary's clock; a received snapshot keeps its creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub guid: u64,
    pub created: u64,
}

/// Where a replica stands against its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The newest snapshot that every dataset of the primary has on the replica too: what a
    /// promotion would roll back to. `None` before the first complete round.
    pub last_complete: Option<SnapshotInfo>,
    /// How many of the primary's datasets the replica has.
    pub datasets: usize,
    pub primary_datasets: usize,
    /// The primary's clock when it was read (Unix seconds): the clock the snapshots' creation
    /// times come from, so that the lag owes nothing to ferry's own clock.
    pub primary_clock: u64,
}

impl ReplicaStatus {
    /// The data a promotion now would lose, in seconds: the time since the last complete
    /// snapshot was taken, both read on the primary's clock. `None` when the replica has no
    /// complete snapshot.
    pub fn lag_seconds(&self) -> Option<u64> {
        self.last_complete
            .as_ref()
            .map(|snapshot| self.primary_clock.saturating_sub(snapshot.created))
    }
}

/// What one replication round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The snapshot that now is on both sides, for every dataset.
    pub snapshot: SnapshotInfo,
    /// Per dataset (its name under the pool, "" for the root): the base of its increment, or
    /// `None` for a full send.
    pub bases: BTreeMap<String, Option<String>>,
    /// The bytes of the streams.
    pub bytes: u64,
    /// The older `ferry-` snapshots destroyed, on both sides together.
    pub pruned: usize,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The point in time the pool now holds. `None` when the pool was promoted already.
    pub rolled_back_to: Option<SnapshotInfo>,
    pub already_promoted: bool,
}

/// What a hand-over did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOver {
    /// The last round, sent once the primary had stopped writing. `None` when an interrupted
    /// hand-over had sent it already.
    pub last_round: Option<Round>,
    pub promotion: Promotion,
}

/// Why a replication round, a status read or a promotion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("`{command}` failed on {host}: {stderr}")]
    Command {
        host: String,
        command: String,
        stderr: String,
    },
    #[error("`{command}` on {host} printed what ferry cannot read: {line}")]
    Unreadable {
        host: String,
        command: String,
        line: String,
    },
    #[error(
        "refused to receive into {end}: it is not a read-only replica ({ROLE_PROPERTY}={role}, readonly={readonly}); a writable pool may be a promoted primary, and a receive would roll it back. Mark a new, empty pool as a replica with `mark_replica`, or demote an old primary once it is fenced"
    )]
    NotAReplica {
        end: String,
        role: String,
        readonly: String,
    },
    #[error(
        "refused to send from {end}: it is a replica ({ROLE_PROPERTY}={role}, readonly={readonly}); replication goes from the primary to its replica only"
    )]
    NotAPrimary {
        end: String,
        role: String,
        readonly: String,
    },
    #[error(
        "refused to mark {end} as a replica: {reason}; a replica's contents are replaced by the primary's, so only an empty pool or a fenced old primary (demoted) becomes one"
    )]
    CannotMark { end: String, reason: String },
    #[error(
        "the replica {replica} has snapshots of {dataset} but none in common with the primary's: they have diverged, and ferry does not overwrite them; destroy the replica's {dataset} (after checking it holds nothing the primary lacks), then replicate again"
    )]
    Diverged { replica: String, dataset: String },
    #[error(
        "refused to promote {replica}: {detail}; fence it first (deallocate its VM) or hand it over, then promote"
    )]
    PrimaryNotFenced { replica: String, detail: String },
    #[error(
        "refused to promote {replica}: it holds no snapshot that every dataset has, so it holds no consistent copy of the primary; replicate first, or fail over by moving the disks"
    )]
    NothingToPromote { replica: String },
    #[error(
        "another replication round of {pool} is running on {host} (started by {holder}): this one is skipped, and the next round sends whatever both would have"
    )]
    Busy {
        pool: String,
        host: String,
        holder: String,
    },
    #[error(
        "{end}: the stream of {dataset} failed ({side} side): {stderr}; the replica stays at its previous snapshot, and the next round sends again"
    )]
    Stream {
        end: String,
        dataset: String,
        side: &'static str,
        stderr: String,
    },
}

impl ReplicationError {
    /// Whether the next round may succeed by itself: a dropped connection, a timeout or a
    /// failed stream; never a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Ssh(error) => error.is_transient(),
            ReplicationError::Stream { .. }
            | ReplicationError::Command { .. }
            | ReplicationError::Busy { .. } => true,
            _ => false,
        }
    }
}

async fn run(end: PoolEnd<'_>, arguments: &[&str]) -> Result<CommandOutput, ReplicationError> {
    exec(end, command_line(arguments.iter().copied()), false).await
}

async fn run_line(end: PoolEnd<'_>, command: String) -> Result<CommandOutput, ReplicationError> {
    exec(end, command, false).await
}

async fn query(end: PoolEnd<'_>, arguments: &[&str]) -> Result<CommandOutput, ReplicationError> {
    exec(end, command_line(arguments.iter().copied()), true).await
}

/// Runs a command line (quoted already; nothing for an empty one) and fails on a non-zero
/// exit. A read-only one is run again on a fresh connection if the first dropped.
async fn exec(
    end: PoolEnd<'_>,
    command: String,
    read_only: bool,
) -> Result<CommandOutput, ReplicationError> {
    if command.is_empty() {
        return Ok(CommandOutput {
            status: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        });
    }
    let output = if read_only {
        end.connection.run_read_only(&command).await?
    } else {
        end.connection.run(&command).await?
    };
    if !output.success() {
        return Err(ReplicationError::Command {
            host: end.connection.target().to_string(),
            command,
            stderr: output.first_error_line(),
        });
    }
    Ok(output)
}

/// A pool's role and `readonly`, as its root dataset says now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Side {
    role: String,
    readonly: String,
}

impl Side {
    fn is_replica(&self) -> bool {
        self.role == "replica" && self.readonly == "on"
    }
}

fn parse_side(text: &str) -> Side {
    let mut side = Side {
        role: "-".to_owned(),
        readonly: "off".to_owned(),
    };
    for line in text.lines() {
        match line.split_once('\t') {
            Some((name, value)) if name == ROLE_PROPERTY => side.role = value.to_owned(),
            Some(("readonly", value)) => side.readonly = value.to_owned(),
            _ => {}
        }
    }
    side
}

/// The line between the parts of a survey's output.
const SECTION: &str = "ferry-section";

/// A pool's side and listing, in one SSH call (each call costs a round trip, a shell and a
/// `zfs` start on the host), after `first` (a command that must succeed, or nothing).
async fn survey(
    end: PoolEnd<'_>,
    first: Option<&str>,
) -> Result<(Side, Listing), ReplicationError> {
    let role = format!("{ROLE_PROPERTY},readonly");
    let parts = [
        command_line(["zfs", "get", "-H", "-o", "property,value", &role, end.pool]),
        command_line([
            "zfs",
            "list",
            "-H",
            "-o",
            "name",
            "-t",
            "filesystem",
            "-r",
            end.pool,
        ]),
        // `zfs get -p` rather than `zfs list -p`, which zfs-fuse's `zfs list` does not have
        // (nor `zfs get -t`): the filesystems' own lines are skipped when read.
        command_line([
            "zfs",
            "get",
            "-H",
            "-p",
            "-r",
            "-o",
            "name,property,value",
            "guid,creation",
            end.pool,
        ]),
        "date +%s".to_owned(),
    ];
    let mut command = first
        .map(|first| format!("{first} && "))
        .unwrap_or_default();
    command.push_str(&parts.join(&format!(" && echo {SECTION} && ")));
    let host = end.connection.target().to_string();
    // Not read-only when it takes a snapshot: a dropped connection is not retried blindly.
    let output = exec(end, command.clone(), first.is_none()).await?;
    let sections: Vec<&str> = output.stdout.split(&format!("{SECTION}\n")).collect();
    let [side, filesystems, properties, clock] = sections[..] else {
        return Err(ReplicationError::Unreadable {
            host,
            command,
            line: format!("{} parts instead of 4", sections.len()),
        });
    };
    let mut listing = parse_listing(end, &host, filesystems, properties)?;
    listing.clock = clock
        .trim()
        .parse()
        .map_err(|_| ReplicationError::Unreadable {
            host: host.clone(),
            command: "date +%s".to_owned(),
            line: clock.trim().to_owned(),
        })?;
    Ok((parse_side(side), listing))
}

/// Every `ferry-` snapshot of every dataset of the pool, by dataset name under the pool ("" for
/// the root), oldest first; and every filesystem of the pool, parents first.
#[derive(Debug, Default)]
struct Listing {
    datasets: Vec<String>,
    snapshots: BTreeMap<String, Vec<SnapshotInfo>>,
    /// The host's clock when it was listed (Unix seconds).
    clock: u64,
}

impl Listing {
    fn newest_common(&self, dataset: &str, other: &Listing) -> Option<&SnapshotInfo> {
        let theirs = other.snapshots.get(dataset)?;
        self.snapshots
            .get(dataset)?
            .iter()
            .rev()
            .find(|mine| theirs.iter().any(|snapshot| snapshot.guid == mine.guid))
    }

    /// The newest snapshot name that every dataset holds.
    /// The newest snapshot name that every replicated dataset holds. A dataset with no
    /// `ferry-` snapshot left is not one: the primary destroyed it, a round marked it
    /// `canmount=off`, and the rounds' clean-up took its snapshots with the root's.
    fn newest_complete(&self) -> Option<&SnapshotInfo> {
        let root = self.snapshots.get("")?;
        root.iter().rev().find(|snapshot| {
            self.datasets
                .iter()
                .all(|dataset| match self.snapshots.get(dataset) {
                    Some(list) if !list.is_empty() => {
                        list.iter().any(|other| other.name == snapshot.name)
                    }
                    _ => true,
                })
        })
    }
}

/// The dataset's name under the pool: "" for the root, "prod" for `pool/prod`.
fn relative<'n>(pool: &str, name: &'n str) -> Option<&'n str> {
    if name == pool {
        Some("")
    } else {
        name.strip_prefix(pool)?.strip_prefix('/')
    }
}

fn full_name(pool: &str, dataset: &str) -> String {
    if dataset.is_empty() {
        pool.to_owned()
    } else {
        format!("{pool}/{dataset}")
    }
}

fn parse_listing(
    end: PoolEnd<'_>,
    host: &str,
    filesystems: &str,
    properties: &str,
) -> Result<Listing, ReplicationError> {
    let unreadable = |line: &str| ReplicationError::Unreadable {
        host: host.to_owned(),
        command: format!("zfs list and zfs get on {}", end.pool),
        line: line.to_owned(),
    };
    let mut listing = Listing::default();
    for line in filesystems.lines().filter(|line| !line.is_empty()) {
        let dataset = relative(end.pool, line).ok_or_else(|| unreadable(line))?;
        listing.datasets.push(dataset.to_owned());
    }
    let mut found: BTreeMap<(String, String), (Option<u64>, Option<u64>)> = BTreeMap::new();
    for line in properties.lines().filter(|line| !line.is_empty()) {
        let unreadable = || unreadable(line);
        let mut fields = line.split('\t');
        let (Some(name), Some(property), Some(value)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(unreadable());
        };
        let Some((dataset, snapshot)) = name.split_once('@') else {
            continue;
        };
        if !snapshot.starts_with(SNAPSHOT_PREFIX) {
            continue;
        }
        let dataset = relative(end.pool, dataset).ok_or_else(unreadable)?;
        let value: u64 = value.parse().map_err(|_| unreadable())?;
        let entry = found
            .entry((dataset.to_owned(), snapshot.to_owned()))
            .or_default();
        match property {
            "guid" => entry.0 = Some(value),
            "creation" => entry.1 = Some(value),
            _ => return Err(unreadable()),
        }
    }
    for ((dataset, name), (guid, created)) in found {
        if let (Some(guid), Some(created)) = (guid, created) {
            listing
                .snapshots
                .entry(dataset)
                .or_default()
                .push(SnapshotInfo {
                    name,
                    guid,
                    created,
                });
        }
    }
    for list in listing.snapshots.values_mut() {
        // Oldest first; the names sort by time too, and break ties within a second.
        list.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    }
    Ok(listing)
}

/// The name of the snapshot taken at `now`: `ferry-20261206T233000.123Z`. Sorts by time, and
/// holds only characters ZFS accepts in a snapshot name.
pub fn snapshot_name(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let text = ferry_core::time::format_time(now);
    let stamp: String = text
        .trim_end_matches('Z')
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{SNAPSHOT_PREFIX}{stamp}.{:03}Z", since.subsec_millis())
}

/// Marks `replica` as the receiving side: `ferry:role=replica` and `readonly=on`, unmounted.
/// Refused, with nothing changed, for a pool that holds snapshots or data of its own unless it
/// is a replica already, and for a promoted primary: its contents are replaced by the first
/// round. A pool marked a replica already (or whose mark was interrupted) stays one: whatever
/// of it is mounted is unmounted, and it is made read-only again. A seed imports the pool it
/// finds on the replica's disks without mounting it (`zpool import -N`), but zfs-fuse, which
/// has no `-N`, mounts it read-only, and an import with neither mounts it writable.
pub async fn mark_replica(replica: PoolEnd<'_>) -> Result<(), ReplicationError> {
    let (current, Listing { datasets, .. }) = survey(replica, None).await?;
    let role = format!("{ROLE_PROPERTY}=replica");
    // Every dataset unmounted, children first (one command, which leaves an unmounted one
    // alone), before `readonly=on`: a mounted dataset would take it only at its next mount
    // (zfs-fuse reads it `off`, `temporary`), and a `readonly` that reads `on` may be only a
    // read-only mount's (`temporary`).
    let finish = async {
        run_line(replica, mounts(replica, &datasets, "unmount")).await?;
        run(replica, &["zfs", "set", "readonly=on", replica.pool]).await?;
        Ok(())
    };
    if current.role == "replica" {
        // A replica already, or a mark that was interrupted (the checks passed then, and
        // nothing receives into the pool until it is read-only).
        return finish.await;
    }
    let refuse = |reason: String| ReplicationError::CannotMark {
        end: replica.to_string(),
        reason,
    };
    if current.role != "-" {
        return Err(refuse(format!(
            "it carries {ROLE_PROPERTY}={}: it is a promoted primary",
            current.role
        )));
    }
    let snapshots = query(
        replica,
        &[
            "zfs",
            "list",
            "-H",
            "-o",
            "name",
            "-t",
            "snapshot",
            "-r",
            replica.pool,
        ],
    )
    .await?;
    if snapshots.stdout.lines().any(|line| !line.is_empty()) {
        return Err(refuse("it has snapshots of its own".to_owned()));
    }
    if datasets.len() > 1 {
        return Err(refuse("it has datasets of its own".to_owned()));
    }
    // Role first: a mark interrupted before the end leaves a pool that refuses to send and to
    // receive until marked again.
    run(replica, &["zfs", "set", &role, replica.pool]).await?;
    finish.await
}

/// Unmounts every dataset of the pool that is mounted, children first, and changes nothing
/// else: what a seed does to a pool it imported on the replica's disks and then refused (an
/// old primary with data of its own), which nothing on the standby may use.
pub async fn unmount_all(end: PoolEnd<'_>) -> Result<(), ReplicationError> {
    let (_, Listing { datasets, .. }) = survey(end, None).await?;
    run_line(end, mounts(end, &datasets, "unmount"))
        .await
        .map(|_| ())
}

/// Where the replica stands: its newest snapshot that every dataset of the primary holds.
pub async fn status(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
) -> Result<ReplicaStatus, ReplicationError> {
    let ((_, mine), (_, theirs)) = tokio::try_join!(survey(primary, None), survey(replica, None))?;
    Ok(status_of(&mine, &theirs))
}

/// How far behind a replica is when its primary cannot be asked (its host down, as in an
/// unplanned failover): the seconds since its newest snapshot that every one of its datasets
/// holds (what a promotion now would roll back to), on the replica's own clock. `None` before
/// any complete snapshot.
pub async fn lag_on_replica(replica: PoolEnd<'_>) -> Result<Option<u64>, ReplicationError> {
    let (_, listing) = survey(replica, None).await?;
    Ok(listing
        .newest_complete()
        .map(|snapshot| listing.clock.saturating_sub(snapshot.created)))
}

fn status_of(primary: &Listing, replica: &Listing) -> ReplicaStatus {
    // The replica's newest snapshot that every dataset of the primary has on the replica:
    // the primary's own snapshot of that name (the same GUID), not one that only shares it.
    let same = |dataset: &String, name: &str| {
        let find = |listing: &Listing| {
            listing
                .snapshots
                .get(dataset)
                .and_then(|list| list.iter().find(|snapshot| snapshot.name == name))
                .map(|snapshot| snapshot.guid)
        };
        find(primary).is_some() && find(primary) == find(replica)
    };
    let last_complete = replica.snapshots.get("").and_then(|root| {
        root.iter()
            .rev()
            .find(|snapshot| {
                primary
                    .datasets
                    .iter()
                    .all(|dataset| same(dataset, &snapshot.name))
            })
            .cloned()
    });
    ReplicaStatus {
        last_complete,
        datasets: primary
            .datasets
            .iter()
            .filter(|dataset| replica.datasets.contains(dataset))
            .count(),
        primary_datasets: primary.datasets.len(),
        primary_clock: primary.clock,
    }
}

/// One round: a recursive snapshot of the primary, each dataset's increment received on the
/// replica, the new snapshot held as the next base, and older `ferry-` snapshots destroyed.
///
/// Each host is asked as few times as the rules allow, since every SSH call costs a round
/// trip and a `zfs` start: both sides surveyed at once, the snapshot taken with the primary's
/// listing, one stream per dataset, and the clean-up of both sides at once.
///
/// The whole round runs under the pool's round lock on the primary ([`hold_round_lock`]): a
/// second round of the same pool, from this ferry or any other machine, finds it held and
/// ends with [`ReplicationError::Busy`], having changed nothing.
pub async fn replicate(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
    now: SystemTime,
) -> Result<Round, ReplicationError> {
    let lock = hold_round_lock(primary).await?;
    let round = replicate_locked(primary, replica, now).await;
    lock.release().await;
    round
}

/// Takes the pool's round lock on the primary host itself, where every round of the pool
/// goes whichever machine runs ferry (a manual `ferry replicate` beside the acting `ferry
/// watch`, two operators): `flock -n` on [`lock_path`], opened by a shell that then waits on
/// its stdin, on an SSH connection of its own ([`SshConnection::hold`]). The lock is the
/// shell's for as long as ferry keeps the connection: released at the round's end, and by
/// the host as soon as ferry goes (killed, or its connection lost), since the shell's stdin
/// closes then. While it holds, the file says who took it, for the round that finds it held.
pub async fn hold_round_lock(primary: PoolEnd<'_>) -> Result<crate::ssh::Held, ReplicationError> {
    let path = crate::shell::quote(&lock_path(primary.pool));
    let holder = crate::shell::quote(&this_round());
    // The path in a variable, so that the traps' own quotes never meet its quoting.
    let command = format!(
        "lock={path}; exec 9>>\"$lock\" && if flock -n 9; then trap ': > \"$lock\"' EXIT; trap 'exit 1' HUP INT TERM PIPE; printf '%s\\n' {holder} > \"$lock\" && echo {LOCK_HELD} && read -r ferry_line; else echo {LOCK_BUSY} && cat \"$lock\"; fi"
    );
    let connection = SshConnection::new(
        primary.connection.target().clone(),
        primary.connection.timeouts(),
    );
    match connection.hold(&command, LOCK_HELD).await? {
        Ok(held) => Ok(held),
        Err(output) if output.stdout.starts_with(LOCK_BUSY) => {
            let holder = output
                .stdout
                .lines()
                .skip(1)
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("a round that has not yet said who runs it")
                .to_owned();
            Err(ReplicationError::Busy {
                pool: primary.pool.to_owned(),
                host: primary.connection.target().to_string(),
                holder,
            })
        }
        Err(output) => Err(ReplicationError::Command {
            host: primary.connection.target().to_string(),
            command: format!("flock -n {}", lock_path(primary.pool)),
            stderr: output.first_error_line(),
        }),
    }
}

/// Who runs this round, as the lock file says it to the round that finds it held: ferry's
/// process, machine and start.
fn this_round() -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "an unnamed machine".to_owned());
    format!(
        "ferry pid {} on {machine} at {}",
        std::process::id(),
        ferry_core::time::format_time(SystemTime::now())
    )
}

async fn replicate_locked(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
    now: SystemTime,
) -> Result<Round, ReplicationError> {
    let ((source, _), (target, theirs)) =
        tokio::try_join!(survey(primary, None), survey(replica, None))?;
    // A read-only primary still sends: that is how a hand-over's last round reaches the
    // replica once writes have stopped.
    if source.role == "replica" {
        return Err(ReplicationError::NotAPrimary {
            end: primary.to_string(),
            role: source.role,
            readonly: source.readonly,
        });
    }
    if !target.is_replica() {
        return Err(ReplicationError::NotAReplica {
            end: replica.to_string(),
            role: target.role,
            readonly: target.readonly,
        });
    }
    let name = snapshot_name(now);
    let full = format!("{}@{name}", primary.pool);
    let take = command_line(["zfs", "snapshot", "-r", &full]);
    let (_, mine) = survey(primary, Some(&take)).await?;
    let mut bases = BTreeMap::new();
    let mut bytes = 0;
    for dataset in &mine.datasets {
        let base = mine.newest_common(dataset, &theirs).map(|s| s.name.clone());
        let target_name = full_name(replica.pool, dataset);
        let present = theirs.datasets.contains(dataset);
        if base.is_none() && present && theirs.snapshots.get(dataset).is_some_and(|l| !l.is_empty())
        {
            return Err(ReplicationError::Diverged {
                replica: replica.to_string(),
                dataset: target_name,
            });
        }
        bytes += stream(primary, replica, dataset, &name, base.as_deref(), present).await?;
        bases.insert(dataset.clone(), base);
    }
    // Every dataset has the new snapshot: it becomes the held base, and the older ones go, on
    // both sides at once. A hold that is not there (an interrupted round's) is no error.
    let olds = |listing: &Listing| -> Vec<String> {
        listing
            .snapshots
            .get("")
            .into_iter()
            .flatten()
            .filter(|snapshot| snapshot.name != name)
            .map(|snapshot| snapshot.name.clone())
            .collect()
    };
    // Released first: on the replica too, whose snapshots were held while it was the primary
    // (before a hand-over).
    let prune = |end: PoolEnd<'_>, listing: &Listing| -> Vec<String> {
        olds(listing)
            .iter()
            .map(|old| {
                let old = format!("{}@{old}", end.pool);
                let release = command_line(["zfs", "release", "-r", HOLD_TAG, &old]);
                let destroy = command_line(["zfs", "destroy", "-r", &old]);
                format!("{{ {release} 2>/dev/null; true; }} && {destroy}")
            })
            .collect()
    };
    let keep = std::iter::once(command_line(["zfs", "hold", "-r", HOLD_TAG, &full]))
        .chain(prune(primary, &mine))
        .collect::<Vec<_>>()
        .join(" && ");
    // A dataset the primary no longer has stays on the replica (a replica never destroys
    // data on its own), but is no longer part of it: never mounted by a promotion, and marked
    // with the round that found it gone.
    let removed = format!("{REMOVED_PROPERTY}={name}");
    let prune = prune(replica, &theirs)
        .into_iter()
        .chain(
            theirs
                .datasets
                .iter()
                .filter(|dataset| !dataset.is_empty() && !mine.datasets.contains(dataset))
                .map(|dataset| {
                    let stale = full_name(replica.pool, dataset);
                    command_line(["zfs", "set", "canmount=off", &stale])
                        + " && "
                        + &command_line(["zfs", "set", &removed, &stale])
                }),
        )
        .collect::<Vec<_>>()
        .join(" && ");
    tokio::try_join!(run_line(primary, keep), run_line(replica, prune))?;
    let pruned = olds(&mine).len() + olds(&theirs).len();
    let snapshot = mine
        .snapshots
        .get("")
        .and_then(|root| root.iter().find(|snapshot| snapshot.name == name))
        .cloned()
        .ok_or_else(|| ReplicationError::Unreadable {
            host: primary.connection.target().to_string(),
            command: "zfs get guid,creation".to_owned(),
            line: format!("no snapshot {full} right after it was taken"),
        })?;
    Ok(Round {
        snapshot,
        bases,
        bytes,
        pruned,
    })
}

/// What a refused receive prints on stderr, for [`stream`] to tell it from a failed one.
const REFUSED_MARK: &str = "ferry-refused-not-a-replica";

/// One dataset's snapshot `name` sent from the primary into the replica: an increment from
/// `base`, or the whole dataset. The receive checks, in the same shell right before it starts,
/// that the replica is still one (a promotion may have happened since the survey): no window
/// between a check on ferry's side and the write on the host's.
async fn stream(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
    dataset: &str,
    name: &str,
    base: Option<&str>,
    present: bool,
) -> Result<u64, ReplicationError> {
    let snapshot = format!("{}@{name}", full_name(primary.pool, dataset));
    let target_name = full_name(replica.pool, dataset);
    let send = match base {
        Some(base) => {
            let from = format!("@{base}");
            command_line(["zfs", "send", "-i", from.as_str(), snapshot.as_str()])
        }
        None => command_line(["zfs", "send", snapshot.as_str()]),
    };
    // -F rolls back what an interrupted receive left (the replica is read-only and unmounted,
    // so nothing else changes it); -u leaves it unmounted. A dataset the replica lacks is
    // created by the receive, under its parent received just before.
    let receive = if present {
        command_line(["zfs", "receive", "-F", "-u", target_name.as_str()])
    } else {
        command_line(["zfs", "receive", "-u", target_name.as_str()])
    };
    let get =
        |property: &str| command_line(["zfs", "get", "-H", "-o", "value", property, replica.pool]);
    let guarded = format!(
        "if [ \"$({})\" = replica ] && [ \"$({})\" = on ]; then {receive}; else echo {REFUSED_MARK} >&2; exit 3; fi",
        get(ROLE_PROPERTY),
        get("readonly"),
    );
    let piped = primary
        .connection
        .pipe_to(&send, replica.connection, &guarded)
        .await?;
    if piped.receiver.stderr.contains(REFUSED_MARK) {
        let (now, _) = survey(replica, None).await?;
        return Err(ReplicationError::NotAReplica {
            end: replica.to_string(),
            role: now.role,
            readonly: now.readonly,
        });
    }
    for (side, output) in [("send", &piped.sender), ("receive", &piped.receiver)] {
        if !output.success() {
            return Err(ReplicationError::Stream {
                end: replica.to_string(),
                dataset: target_name,
                side,
                stderr: output.first_error_line(),
            });
        }
    }
    Ok(piped.bytes)
}

/// Makes the replica the primary: once the old primary is fenced (asked over SSH right before,
/// as for an import), every dataset is rolled back to the newest snapshot all of them hold, the
/// pool is marked `ferry:role=primary` and made writable, and its datasets are mounted. Done
/// again on a pool promoted already, it only finishes what is left.
pub async fn promote(
    replica: PoolEnd<'_>,
    old_primary: PoolEnd<'_>,
) -> Result<Promotion, ReplicationError> {
    promote_after(replica, Some(old_primary)).await
}

/// [`promote`] when the old primary cannot even be addressed (its address is known to no
/// record): its fence, done by the caller before, is all that stands between it and the pool.
pub async fn promote_fenced(replica: PoolEnd<'_>) -> Result<Promotion, ReplicationError> {
    promote_after(replica, None).await
}

async fn promote_after(
    replica: PoolEnd<'_>,
    old_primary: Option<PoolEnd<'_>>,
) -> Result<Promotion, ReplicationError> {
    let (current, listing) = survey(replica, None).await?;
    if current.role != "primary"
        && let Some(old_primary) = old_primary
        && let Some(holder) = still_holds(old_primary).await
    {
        return Err(ReplicationError::PrimaryNotFenced {
            replica: replica.to_string(),
            detail: holder,
        });
    }
    let mut rolled_back_to = None;
    if current.role == "replica" {
        let Some(point) = listing.newest_complete().cloned() else {
            return Err(ReplicationError::NothingToPromote {
                replica: replica.to_string(),
            });
        };
        // Every replicated dataset, in one call; one the primary removed holds no snapshot
        // of the point and is left as it is (never mounted).
        let rollbacks = listing
            .datasets
            .iter()
            .filter(|dataset| {
                listing
                    .snapshots
                    .get(*dataset)
                    .is_some_and(|list| list.iter().any(|snapshot| snapshot.name == point.name))
            })
            .map(|dataset| {
                let snapshot = format!("{}@{}", full_name(replica.pool, dataset), point.name);
                command_line(["zfs", "rollback", "-r", &snapshot])
            })
            .collect::<Vec<_>>()
            .join(" && ");
        run_line(replica, rollbacks).await?;
        rolled_back_to = Some(point);
        // Role first, so that an interruption leaves a pool nothing receives into.
        let role = format!("{ROLE_PROPERTY}=primary");
        run(replica, &["zfs", "set", &role, replica.pool]).await?;
    } else if current.role != "primary" {
        return Err(ReplicationError::NotAReplica {
            end: replica.to_string(),
            role: current.role,
            readonly: current.readonly,
        });
    }
    run(replica, &["zfs", "set", "readonly=off", replica.pool]).await?;
    run_line(replica, mounts(replica, &listing.datasets, "mount")).await?;
    Ok(Promotion {
        already_promoted: rolled_back_to.is_none(),
        rolled_back_to,
    })
}

/// One command line that mounts (parents first) or unmounts (children first) each of the
/// pool's datasets that is not so already: this pool's only, never the host's others.
fn mounts(end: PoolEnd<'_>, datasets: &[String], verb: &str) -> String {
    let (wanted, order): (&str, Box<dyn Iterator<Item = &String>>) = if verb == "mount" {
        ("no on", Box::new(datasets.iter()))
    } else {
        ("yes", Box::new(datasets.iter().rev()))
    };
    order
        .map(|dataset| {
            let name = full_name(end.pool, dataset);
            // Mounted and canmount in one word pair: a dataset marked `canmount=off` (one the
            // primary removed) is never mounted.
            let state =
                command_line(["zfs", "get", "-H", "-o", "value", "mounted,canmount", &name]);
            let change = command_line(["zfs", verb, &name]);
            let test = if verb == "mount" {
                format!("[ \"$({state} | tr '\\n' ' ')\" = '{wanted} ' ]")
            } else {
                format!("[ \"$({state} | head -n 1)\" = {wanted} ]")
            };
            format!("if {test}; then {change}; fi")
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// A planned failover with no data lost, and the failback after it: the primary stops writing
/// (its datasets unmounted, so its NFS shares go, and `readonly=on`), a last round sends
/// everything it wrote, it becomes a read-only replica, and the replica is promoted. The roles
/// are then simply swapped: replication goes on in the other direction from the last round's
/// snapshot, and the same call in the other direction fails back.
///
/// Every step is read from the pools before it is taken, so a hand-over interrupted anywhere
/// is finished by calling it again: a primary already read-only is not stopped twice, a last
/// round already on the replica is not sent again, and a replica already promoted is left.
pub async fn hand_over(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
    now: SystemTime,
) -> Result<HandOver, ReplicationError> {
    let ((source, mine), (target, theirs)) =
        tokio::try_join!(survey(primary, None), survey(replica, None))?;
    if target.role == "primary" && source.is_replica() {
        // Done already: the replica was promoted after the primary became a replica.
        let promotion = promote(replica, primary).await?;
        return Ok(HandOver {
            last_round: None,
            promotion,
        });
    }
    if !target.is_replica() {
        return Err(ReplicationError::NotAReplica {
            end: replica.to_string(),
            role: target.role,
            readonly: target.readonly,
        });
    }
    let last_round = if source.role == "replica" {
        // Interrupted after the primary became a replica: only a primary whose newest
        // snapshot the replica holds (the last round's) may have got there.
        let newest = mine.snapshots.get("").and_then(|root| root.last());
        let received = newest.is_some_and(|newest| {
            mine.datasets.iter().all(|dataset| {
                mine.newest_common(dataset, &theirs).map(|s| &s.name) == Some(&newest.name)
            })
        });
        if !received {
            return Err(ReplicationError::NotAPrimary {
                end: primary.to_string(),
                role: source.role,
                readonly: source.readonly,
            });
        }
        None
    } else {
        // From the stop of writes to the promotion, under the pool's round lock: no round of
        // `ferry watch` sends in between, so nothing is received into the replica while it
        // is promoted (a round that holds the lock makes this attempt busy, and the step is
        // tried again). A hand-over found past its last round needs no lock: nothing sends
        // from a replica.
        let lock = hold_round_lock(primary).await?;
        let handed = hand_over_locked(primary, replica, &source, &mine.datasets, now).await;
        lock.release().await;
        return handed;
    };
    let promotion = promote(replica, primary).await?;
    Ok(HandOver {
        last_round,
        promotion,
    })
}

/// The hand-over's stop of writes, last round, change of roles and promotion, with the
/// primary's round lock held.
async fn hand_over_locked(
    primary: PoolEnd<'_>,
    replica: PoolEnd<'_>,
    source: &Side,
    datasets: &[String],
    now: SystemTime,
) -> Result<HandOver, ReplicationError> {
    if source.readonly != "on" {
        // Writes stop: unmounted (the NFS shares go with the mounts), then read-only.
        run_line(primary, mounts(primary, datasets, "unmount")).await?;
        run(primary, &["zfs", "set", "readonly=on", primary.pool]).await?;
    }
    let round = replicate_locked(primary, replica, now).await?;
    let role = format!("{ROLE_PROPERTY}=replica");
    run(primary, &["zfs", "set", &role, primary.pool]).await?;
    let promotion = promote(replica, primary).await?;
    Ok(HandOver {
        last_round: Some(round),
        promotion,
    })
}

/// Whether the old primary may still write: it answers over SSH with the pool imported, and
/// the pool is not a read-only replica (a primary handed over is one, and writes nothing). A
/// host that does not answer is taken as fenced, which is what a fence looks like.
async fn still_holds(old_primary: PoolEnd<'_>) -> Option<String> {
    let asked = SshConnection::new(
        old_primary.connection.target().clone(),
        SshTimeouts {
            connect: FENCED_HOST_CONNECT.min(old_primary.connection.timeouts().connect),
            command: Duration::from_secs(30),
        },
    );
    let asked = PoolEnd {
        connection: &asked,
        pool: old_primary.pool,
    };
    let command = command_line(["zpool", "list", "-H", "-o", "name", old_primary.pool]);
    match asked.connection.run_read_only(&command).await {
        Ok(output) if output.success() => match survey(asked, None).await {
            Ok((side, _)) if side.is_replica() => None,
            Ok((side, _)) => Some(format!(
                "{old_primary} still answers over SSH with the pool imported ({ROLE_PROPERTY}={}, readonly={})",
                side.role, side.readonly
            )),
            Err(error) => Some(format!(
                "{old_primary} still answers over SSH with the pool imported, and its role cannot be read ({error})"
            )),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &str, guid: u64) -> SnapshotInfo {
        SnapshotInfo {
            name: name.to_owned(),
            guid,
            created: guid,
        }
    }

    #[test]
    fn snapshot_names_sort_by_time_and_are_zfs_names() {
        let early = snapshot_name(UNIX_EPOCH + Duration::from_millis(1_796_600_000_123));
        let late = snapshot_name(UNIX_EPOCH + Duration::from_millis(1_796_600_000_456));
        assert!(early < late, "{early} < {late}");
        assert!(early.starts_with(SNAPSHOT_PREFIX));
        assert!(crate::check_zfs_name(&early, "snapshot").is_ok(), "{early}");
    }

    #[test]
    fn the_base_is_matched_by_guid_and_a_promotion_point_needs_every_dataset() {
        let primary = Listing {
            datasets: vec!["".into(), "prod".into()],
            snapshots: BTreeMap::from([
                (
                    "".into(),
                    vec![snapshot("ferry-1", 1), snapshot("ferry-2", 2)],
                ),
                (
                    "prod".into(),
                    vec![snapshot("ferry-1", 11), snapshot("ferry-2", 12)],
                ),
            ]),
            clock: 100,
        };
        // The replica got ferry-2 of the root but not of prod (an interrupted round), and a
        // `ferry-1` of prod that is not the primary's (another GUID).
        let replica = Listing {
            datasets: vec!["".into(), "prod".into()],
            snapshots: BTreeMap::from([
                (
                    "".into(),
                    vec![snapshot("ferry-1", 1), snapshot("ferry-2", 2)],
                ),
                ("prod".into(), vec![snapshot("ferry-1", 99)]),
            ]),
            clock: 5,
        };
        assert_eq!(primary.newest_common("", &replica).unwrap().name, "ferry-2");
        assert_eq!(primary.newest_common("prod", &replica), None);
        assert_eq!(replica.newest_complete().unwrap().name, "ferry-1");
        // Nothing is complete for the primary: prod's `ferry-1` is not the primary's.
        let status = status_of(&primary, &replica);
        assert_eq!((status.lag_seconds(), status.last_complete), (None, None));
        // With the primary's own `ferry-1` of prod, the round of `ferry-1` is complete: taken
        // at 1 by the primary's clock, which reads 100 now (the replica's own clock, 5, is not
        // used).
        let mut replica = replica;
        replica
            .snapshots
            .insert("prod".into(), vec![snapshot("ferry-1", 11)]);
        let status = status_of(&primary, &replica);
        assert_eq!(status.last_complete.as_ref().unwrap().name, "ferry-1");
        assert_eq!(status.lag_seconds(), Some(99));
    }
}
