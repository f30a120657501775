//! The real local servers that `cargo xtask demo` and the end-to-end tests in `tests/` run
//! ferry against: the ARM simulator (the `ferry-sim` binary), a BIND `named` for the deployment's
//! zone with a generated TSIG key, an `sshd` with generated host and user keys on the loopback
//! addresses the simulator hands to public IPs, the machine's zfs-fuse, ZFS hosts of their own
//! (namespaced zfs-fuse and sshd; one per simulated VM for a hot standby), a demo CA, and Azurite
//! (the Azure Blob Storage emulator) for the shared-state tests.
//!
//! Everything listens on 127.0.0.0/8 only. Each server is stopped when its handle is dropped.
//! A missing program is reported with the Debian package that provides it, since the demo and
//! the tests run on machines that `cargo xtask setup` may not have prepared yet.
//!
//! One module per server or guard; this file holds what they share: [`ServerError`], finding
//! a program, running one, a free port, a child process stopped when dropped, and waiting for
//! a server to answer.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod azurite;
mod bind;
mod ca;
mod data100;
mod hub;
mod simulator;
mod sshd;
mod vm_hosts;
mod zfs;
mod zfs_hosts;

pub use azurite::{AZURITE_ACCOUNT, Azurite, azurite_token};
pub use bind::Bind;
pub use ca::DemoCa;
pub use data100::{checksums, data100_variables, write_home_files};
pub use hub::{HubServers, hub_environment};
pub use simulator::{
    SimulatorControl, SimulatorProcess, SimulatorSettings, addresses_from, group_exists,
    public_address, simulator_addresses, simulator_environment, state_resources,
};
pub use sshd::{SshAccess, Sshd, generate_key};
pub use vm_hosts::{NfsHosts, POWER_POLL, StateSource, VmHosts};
pub use zfs::{
    PoolCleanup, VM_HOSTS_FIRST_ADDRESS, VM_HOSTS_LOCK_FILE, ZFS_LOCK_FILE, ZfsLock, check_zfs,
    destroy_pool_if_present, pool_exists,
};
pub use zfs_hosts::{HostIdentity, HostKey, ZfsHost, is_alive};

/// Why a server could not be started or asked something.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {message}")]
pub struct ServerError {
    pub server: &'static str,
    pub message: String,
}

fn error(server: &'static str, message: impl Into<String>) -> ServerError {
    ServerError {
        server,
        message: message.into(),
    }
}

/// How long a server may take to start answering before we give up on it.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Finds `program` on the PATH or in the sbin folders (root's PATH may lack them), or says
/// which Debian package to install.
pub fn need(program: &str, package: &str) -> Result<PathBuf, ServerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|folder| folder.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            error(
                "setup",
                format!(
                    "`{program}` is not installed: apt-get install {package} (or run cargo xtask setup)"
                ),
            )
        })
}

/// Runs a program to completion and returns its standard output, or its error output as the
/// error.
fn run(server: &'static str, command: &mut Command) -> Result<String, ServerError> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|failure| error(server, format!("cannot run {shown}: {failure}")))?;
    if !output.status.success() {
        return Err(error(
            server,
            format!(
                "{shown} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A free TCP port on 127.0.0.1 (free now; the server takes it a moment later).
pub fn free_port() -> Result<u16, ServerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|failure| error("setup", format!("no free loopback port: {failure}")))
}

/// A child process stopped when dropped.
#[derive(Debug)]
struct Process {
    child: Child,
}

impl Process {
    fn spawn(server: &'static str, command: &mut Command) -> Result<Process, ServerError> {
        let shown = format!("{command:?}");
        command
            .stdin(Stdio::null())
            .spawn()
            .map(|child| Process { child })
            .map_err(|failure| error(server, format!("cannot start {shown}: {failure}")))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGINT first (the simulator writes its state dump on it), SIGKILL if it lingers.
    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `ready` holds, or the process exits, or [`READY_WITHIN`] passes.
fn wait_ready(
    server: &'static str,
    exited: &mut dyn FnMut() -> Option<std::process::ExitStatus>,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), ServerError> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if ready() {
            return Ok(());
        }
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = exited() {
            return Err(error(
                server,
                format!(
                    "exited ({status}) before answering; its log {}:\n{}",
                    log.display(),
                    log_text()
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(error(
                server,
                format!(
                    "did not answer within {}s; its log {}:\n{}",
                    READY_WITHIN.as_secs(),
                    log.display(),
                    log_text()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create_folder(server: &'static str, folder: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(folder).map_err(|failure| {
        error(
            server,
            format!("cannot create {}: {failure}", folder.display()),
        )
    })
}

fn write(server: &'static str, path: &Path, text: &str) -> Result<(), ServerError> {
    std::fs::write(path, text).map_err(|failure| {
        error(
            server,
            format!("cannot write {}: {failure}", path.display()),
        )
    })
}
