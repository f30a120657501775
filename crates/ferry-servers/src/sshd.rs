//! An OpenSSH server on the simulator's public addresses, with generated host and user keys
//! and a `known_hosts` that pins the host key, so that ferry's strict checking is exercised.

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Process, ServerError, create_folder, error, free_port, need, run, wait_ready, write};

/// How ferry reaches hosts over SSH: their port, the key it logs in with (whose public half
/// they let in as root), and the known_hosts file that pins their host key.
#[derive(Debug, Clone)]
pub struct SshAccess {
    pub port: u16,
    pub user_key: PathBuf,
    pub user_public_key: String,
    pub known_hosts: PathBuf,
}

/// An OpenSSH server on one port of several loopback addresses, letting root in with a
/// generated user key; its host key is listed for every address in `known_hosts`, so ferry's
/// strict host-key checking has something to check against.
#[derive(Debug)]
pub struct Sshd {
    process: Option<Process>,
    pub port: u16,
    pub user_key: PathBuf,
    pub user_public_key: String,
    pub known_hosts: PathBuf,
    pub addresses: Vec<Ipv4Addr>,
    folder: PathBuf,
    host_key: PathBuf,
}

/// Generates an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
pub fn generate_key(path: &Path, comment: &str) -> Result<String, ServerError> {
    let keygen = need("ssh-keygen", "openssh-client")?;
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(
        "ssh-keygen",
        Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )?;
    std::fs::read_to_string(path.with_extension("pub"))
        .map(|text| text.trim().to_owned())
        .map_err(|failure| error("ssh-keygen", failure.to_string()))
}

impl Sshd {
    /// How ferry reaches the hosts behind it.
    pub fn access(&self) -> SshAccess {
        SshAccess {
            port: self.port,
            user_key: self.user_key.clone(),
            user_public_key: self.user_public_key.clone(),
            known_hosts: self.known_hosts.clone(),
        }
    }

    pub fn start(folder: &Path, addresses: Vec<Ipv4Addr>) -> Result<Sshd, ServerError> {
        need("sshd", "openssh-server")?;
        need("ssh", "openssh-client")?;
        create_folder("sshd", folder)?;
        let host_key = folder.join("host_key");
        let host_public_key = generate_key(&host_key, "ferry-demo-host")?;
        let user_key = folder.join("user_key");
        let user_public_key = generate_key(&user_key, "ferry-demo")?;
        write(
            "sshd",
            &folder.join("authorized_keys"),
            &format!("{user_public_key}\n"),
        )?;
        let port = free_port()?;
        let known_hosts = folder.join("known_hosts");
        let mut lines = String::new();
        for address in addresses.iter().chain([&Ipv4Addr::LOCALHOST]) {
            lines.push_str(&format!("[{address}]:{port} {host_public_key}\n"));
        }
        write("sshd", &known_hosts, &lines)?;
        let mut sshd = Sshd {
            process: None,
            port,
            user_key,
            user_public_key,
            known_hosts,
            addresses: addresses.clone(),
            folder: folder.to_path_buf(),
            host_key,
        };
        sshd.listen_on(addresses)?;
        Ok(sshd)
    }

    /// (Re)starts sshd listening on exactly `addresses`: leaving an address out makes the
    /// host behind it unreachable, as an NFS VM whose network is gone.
    pub fn listen_on(&mut self, addresses: Vec<Ipv4Addr>) -> Result<(), ServerError> {
        if let Some(mut old) = self.process.take() {
            old.interrupt();
        }
        // sshd needs its privilege separation folder, which only a booted system creates.
        create_folder("sshd", Path::new("/run/sshd"))?;
        let listen: String = addresses
            .iter()
            .map(|address| format!("ListenAddress {address}\n"))
            .collect();
        let folder = self.folder.display();
        let config = self.folder.join("sshd_config");
        write(
            "sshd",
            &config,
            &format!(
                "Port {port}\n{listen}HostKey {host}\nPidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPubkeyAuthentication yes\nMaxSessions 50\nMaxStartups 100\n",
                port = self.port,
                host = self.host_key.display(),
            ),
        )?;
        let log = self.folder.join("sshd.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|failure| error("sshd", format!("cannot create its log: {failure}")))?;
        let mut process = Process::spawn(
            "sshd",
            Command::new(need("sshd", "openssh-server")?)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log_file),
        )?;
        let port = self.port;
        if let Some(first) = addresses.first().copied() {
            wait_ready("sshd", &mut || process.exited(), &log, || {
                TcpStream::connect((first, port)).is_ok()
            })?;
        }
        self.process = Some(process);
        self.addresses = addresses;
        Ok(())
    }
}
