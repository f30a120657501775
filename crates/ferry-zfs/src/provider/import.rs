//! The import step: never while another host holds the pool, `-f` only after the plan's fence,
//! and each host the plan fenced asked over SSH right before, since ZFS cannot tell a live
//! holder from a crashed one.

use std::time::Duration;

use ferry_core::StepOutcome;

use super::ZfsError;
use super::host::{Host, ListedPool, PoolState, pool_state};
use super::steps::StepTarget;
use crate::shell::command_line;
use crate::ssh::{SshConnection, SshError, SshTimeouts};

/// Whether an import mounts the pool's datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mounting {
    /// As ZFS does: every dataset that can be mounted is (a pool that serves).
    Mounted,
    /// Nothing mounted (`zpool import -N`): a hot standby's replica, which nothing may write
    /// to, marked read-only right after (or refused and left as it is, unmounted). zfs-fuse,
    /// which has no `-N`, mounts it read-only instead, until the mark unmounts it.
    Never,
}

/// How long a host the plan fenced is given to accept an SSH connection before it counts as
/// fenced.
const FENCED_HOST_CONNECT: Duration = Duration::from_secs(5);

impl StepTarget<'_> {
    /// Asks each host the plan fenced whether it still has the pool imported. ZFS on another
    /// host cannot tell a live holder from a crashed one (a pool last used by another system
    /// reads the same either way, and hosts cloned with one host id do not even read that), so
    /// a fence that did not take effect (ARM says deallocated, the VM still runs) would
    /// otherwise become a double import. A host that does not answer is taken as fenced: that
    /// is what a fence looks like.
    async fn held_by_fenced_host(
        &self,
        fenced: &[Host],
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Option<String> {
        let command = command_line(["zpool", "list", "-H", "-o", "name", self.pool()]);
        for other in fenced {
            // A fenced VM's address usually drops packets: a short connect timeout, so that
            // the question costs seconds on the recovery's critical path, not the full 15.
            let asked = SshConnection::new(
                other.connection.target().clone(),
                SshTimeouts {
                    connect: FENCED_HOST_CONNECT.min(other.connection.timeouts().connect),
                    command: Duration::from_secs(30),
                },
            );
            match asked.run_read_only(&command).await {
                Ok(output) if output.success() => {
                    return Some(format!(
                        "{} still answers over SSH and lists it imported",
                        other.instance
                    ));
                }
                Ok(_) => progress(format!(
                    "{} answers over SSH and does not hold the pool",
                    other.instance
                )),
                Err(error) => progress(format!(
                    "{} does not answer over SSH ({error}): fenced",
                    other.instance
                )),
            }
        }
        None
    }

    pub(super) async fn import(
        &self,
        force: bool,
        fenced: &[Host],
        mounting: Mounting,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let label = self.label();
        let host = self.host.instance.to_string();
        let found = match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { status, datasets } => {
                self.verify(&status)?;
                return Ok(self.outcome(&status, &datasets));
            }
            PoolState::ImportedElsewhere { devices } => {
                let detail = format!("its devices {} are not on this host", devices.join(", "));
                // With force too: a fence that did not take effect must not become a double
                // import.
                return Err(if force {
                    ZfsError::StillImportedAfterFence {
                        pool: label,
                        host,
                        detail,
                    }
                } else {
                    ZfsError::ImportedElsewhere {
                        pool: label,
                        host,
                        detail,
                    }
                });
            }
            PoolState::NotFound => {
                let missing = self.missing_disks().await?;
                if !missing.is_empty() {
                    return Err(ZfsError::MissingDisks {
                        pool: label,
                        host,
                        missing,
                    });
                }
                return Err(ZfsError::NotFound {
                    pool: label,
                    host,
                    folder: self.host.device_folder.clone(),
                });
            }
            PoolState::Importable(ListedPool { pool: found, .. }) if !found.can_import() => {
                let mut missing = self.missing_disks().await?;
                if missing.is_empty() {
                    missing.push(format!(
                        "zpool reports the pool {}: {}",
                        found.state, found.action
                    ));
                }
                return Err(ZfsError::MissingDisks {
                    pool: label,
                    host,
                    missing,
                });
            }
            PoolState::Importable(found) => found,
        };
        if let Some(holder) = self.held_by_fenced_host(fenced, progress).await {
            return Err(if force {
                ZfsError::StillImportedAfterFence {
                    pool: label,
                    host,
                    detail: holder,
                }
            } else {
                ZfsError::ImportedElsewhere {
                    pool: label,
                    host,
                    detail: holder,
                }
            });
        }
        let folder = self.host.device_folder.clone();
        let mut arguments = vec!["zpool", "import", "-d", folder.as_str()];
        // -f only when the plan put a fence of every other host before this step.
        if force {
            arguments.push("-f");
        }
        // By its id when another pool of that name is listed too (by name, ZFS refuses: "more
        // than one matching pool"): the one `pool_state` chose on the pool's own disks. It
        // keeps its name.
        let pool = if found.by_id && !found.pool.id.is_empty() {
            found.pool.id.as_str()
        } else {
            self.pool()
        };
        let imported = match mounting {
            Mounting::Mounted => self.change(&[&arguments[..], &[pool]].concat()).await,
            Mounting::Never => {
                let unmounted = self.change(&[&arguments[..], &["-N", pool]].concat()).await;
                match unmounted {
                    // zfs-fuse's zpool has no -N: it mounts whatever it imports, and is told
                    // to mount read-only (a mount option, whatever `readonly` says), so that
                    // nothing is ever writable; the mark that follows unmounts it all.
                    Ok(Err(ZfsError::Command { stderr, .. }))
                        if stderr.contains("invalid option 'N'") =>
                    {
                        self.change(&[&arguments[..], &["-o", "ro", pool]].concat())
                            .await
                    }
                    other => other,
                }
            }
        };
        match imported {
            Ok(Ok(())) => {}
            Ok(Err(ZfsError::Command { stderr, .. }))
                if stderr.contains("in use from another system")
                    || stderr.contains("in use from other system") =>
            {
                return Err(ZfsError::ImportedElsewhere {
                    pool: label,
                    host,
                    detail: format!("zpool says: {stderr}"),
                });
            }
            Ok(Err(error)) => return Err(error),
            // The import may have happened before the connection dropped: read again below,
            // on a new connection, rather than importing a second time.
            Err(error) if matches!(error, SshError::Dropped { .. } | SshError::Timeout { .. }) => {
                match pool_state(&self.host, self.wanted()).await? {
                    PoolState::Imported { .. } => {}
                    _ => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        }
        match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { status, datasets } => {
                self.verify(&status)?;
                Ok(self.outcome(&status, &datasets))
            }
            _ => Err(ZfsError::NotFound {
                pool: label,
                host,
                folder,
            }),
        }
    }
}
