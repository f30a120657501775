//! The machine's one zfs-fuse daemon: checking that it answers, the cross-process lock the
//! runs that create pools take on it, and destroying a run's pool however the run ends.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{ServerError, error, need, run};

/// `zpool`, found where [`need`] looks, or an error that says which package installs it.
fn zpool() -> Result<PathBuf, ServerError> {
    need("zpool", "zfs-fuse")
}

/// Checks that the machine's zfs-fuse daemon answers (`xtask/setup/30-zfs.sh` starts it).
pub fn check_zfs() -> Result<(), ServerError> {
    run("zfs-fuse", Command::new(zpool()?).arg("list"))
        .map(|_| ())
        .map_err(|_| {
            error(
                "zfs-fuse",
                "the zfs-fuse daemon does not answer `zpool list`: start it with cargo xtask setup (Debian package zfs-fuse)",
            )
        })
}

/// Destroys a leftover pool of an earlier run, so that a new generation 1 can create it.
/// Without `zpool` there is no pool to destroy ([`check_zfs`] says how to install it).
pub fn destroy_pool_if_present(pool: &str) {
    if let Ok(zpool) = zpool() {
        let _ = Command::new(zpool).args(["destroy", "-f", pool]).output();
    }
}

/// Whether zfs-fuse knows a pool of this name (imported); never without `zpool`.
pub fn pool_exists(pool: &str) -> bool {
    zpool().is_ok_and(|zpool| {
        Command::new(zpool)
            .args(["status", pool])
            .output()
            .is_ok_and(|output| output.status.success())
    })
}

/// Destroys a pool when dropped, however the run ends, so that the next run (or anything else
/// on this machine) does not find it imported with its mountpoints taken. Declare it before
/// the [`HubServers`](crate::HubServers) guard, so that it is dropped after it: a pool whose
/// files a hub still holds open cannot be destroyed.
#[derive(Debug)]
pub struct PoolCleanup {
    pub pool: String,
}

impl Drop for PoolCleanup {
    fn drop(&mut self) {
        if let Err(missing) = zpool() {
            eprintln!("the pool {} could not be destroyed: {missing}", self.pool);
            return;
        }
        // The hub servers were just told to stop and may still hold files in the pool for a
        // moment: try again a few times, briefly.
        for _ in 0..20 {
            destroy_pool_if_present(&self.pool);
            if !pool_exists(&self.pool) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "the pool {pool} could not be destroyed: run zpool destroy -f {pool}",
            pool = self.pool
        );
    }
}

/// Holds the machine-wide lock on zfs-fuse for the runs that create pools with fixed names
/// and mountpoints and serve hubs on port 443 of the simulator's addresses (the demo and the
/// end-to-end tests): one at a time, across processes (nextest runs each test in its own).
#[derive(Debug)]
pub struct ZfsLock {
    _file: std::fs::File,
}

/// The lock file [`ZfsLock`] takes.
pub const ZFS_LOCK_FILE: &str = "/tmp/ferry-zfs-servers.lock";

/// The lock file of the runs whose VMs are ZFS hosts of their own (`VmHosts`): they never
/// touch the machine's zfs-fuse, and serve their hubs on addresses of their own
/// ([`VM_HOSTS_FIRST_ADDRESS`] on), so they run beside the machine's runs, one at a time among
/// themselves.
pub const VM_HOSTS_LOCK_FILE: &str = "/tmp/ferry-vm-hosts-servers.lock";

/// The first public address a simulator hands out in a run on VM hosts (127.0.2.1): the
/// machine's runs use 127.0.1.x, so neither's hubs (port 443) nor SSH meet the other's.
pub const VM_HOSTS_FIRST_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 2, 1);

impl ZfsLock {
    /// Waits for the lock; it is released when the guard is dropped or the process ends.
    pub fn acquire() -> Result<ZfsLock, ServerError> {
        ZfsLock::acquire_file(ZFS_LOCK_FILE)
    }

    /// Waits for the lock of the runs on VM hosts ([`VM_HOSTS_LOCK_FILE`]).
    pub fn acquire_for_vm_hosts() -> Result<ZfsLock, ServerError> {
        ZfsLock::acquire_file(VM_HOSTS_LOCK_FILE)
    }

    fn acquire_file(path: &str) -> Result<ZfsLock, ServerError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|failure| error("lock", format!("cannot open {path}: {failure}")))?;
        file.lock()
            .map_err(|failure| error("lock", format!("cannot lock {path}: {failure}")))?;
        Ok(ZfsLock { _file: file })
    }
}
