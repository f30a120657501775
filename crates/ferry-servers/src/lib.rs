//! The real local servers that `cargo xtask demo` and the end-to-end tests in `tests/` run
//! ferry against: the ARM simulator (the `ferry-sim` binary), a BIND `named` for the deployment's
//! zone with a generated TSIG key, an `sshd` with generated host and user keys on the loopback
//! addresses the simulator hands to public IPs, the machine's zfs-fuse, a demo CA, and Azurite
//! (the Azure Blob Storage emulator) for the shared-state tests.
//!
//! Everything listens on 127.0.0.0/8 only. Each server is stopped when its handle is dropped.
//! A missing program is reported with the Debian package that provides it, since the demo and
//! the tests run on machines that `cargo xtask setup` may not have prepared yet.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod azurite;

pub use azurite::{AZURITE_ACCOUNT, Azurite, azurite_token};

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

/// The loopback addresses the simulator hands to public IPs and API servers, in order
/// (`ferry-sim` starts at 127.0.1.1): sshd listens on all of them, so that each NFS VM's
/// public address reaches it. sshd listens on at most 16 sockets, enough for five
/// generations of three addresses each (ingress, NFS VM, API server).
pub fn simulator_addresses(count: u8) -> Vec<Ipv4Addr> {
    (1..=count)
        .map(|last| Ipv4Addr::new(127, 0, 1, last))
        .collect()
}

/// A BIND `named` serving one zone on a loopback port, accepting RFC 2136 updates signed
/// with the TSIG key `ferry` (hmac-sha256) that `tsig-keygen` generated into `key_file`.
#[derive(Debug)]
pub struct Bind {
    process: Process,
    pub port: u16,
    pub zone: String,
    /// The BIND key file (`key "ferry" { ... };`), the spec's `tsig_secret_file`.
    pub key_file: PathBuf,
    pub folder: PathBuf,
}

impl Bind {
    pub fn start(folder: &Path, zone: &str) -> Result<Bind, ServerError> {
        let named = need("named", "bind9")?;
        let keygen = need("tsig-keygen", "bind9")?;
        need("dig", "bind9-dnsutils")?;
        create_folder("named", folder)?;
        let key_text = run(
            "named",
            Command::new(keygen).args(["-a", "hmac-sha256", "ferry"]),
        )?;
        let key_file = folder.join("ferry.key");
        write("named", &key_file, &key_text)?;
        let port = free_port()?;
        let zone_file = folder.join(format!("{zone}.zone"));
        write(
            "named",
            &zone_file,
            &format!(
                "$TTL 300\n@ IN SOA ns.{zone}. admin.{zone}. 1 3600 600 86400 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
            ),
        )?;
        let folder_text = folder.display();
        let config = folder.join("named.conf");
        write(
            "named",
            &config,
            &format!(
                "options {{\n  directory \"{folder_text}\";\n  pid-file \"{folder_text}/named.pid\";\n  session-keyfile \"{folder_text}/session.key\";\n  managed-keys-directory \"{folder_text}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\ninclude \"{key}\";\nzone \"{zone}\" {{\n  type primary;\n  file \"{zone_file}\";\n  allow-update {{ key \"ferry\"; }};\n}};\n",
                key = key_file.display(),
                zone_file = zone_file.display(),
            ),
        )?;
        Ok(Bind {
            process: launch_named(&named, folder, port, zone)?,
            port,
            zone: zone.to_owned(),
            key_file,
            folder: folder.to_path_buf(),
        })
    }

    /// Stops the server, as an outage would (SIGINT: the zone's journal of dynamic updates
    /// stays on disk, as it does when a server is restarted).
    pub fn stop(&mut self) {
        self.process.interrupt();
    }

    /// Starts the server again after [`Bind::stop`]: same port, zone, key and data.
    pub fn start_again(&mut self) -> Result<(), ServerError> {
        let named = need("named", "bind9")?;
        self.process = launch_named(&named, &self.folder, self.port, &self.zone)?;
        Ok(())
    }

    /// `127.0.0.1:PORT`, the zone's `server`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What `dig +short` gets from this server for `name` (a full name), sorted: an answer
    /// from outside ferry's own DNS code.
    pub fn dig(&self, name: &str, record_type: &str) -> Result<Vec<String>, ServerError> {
        dig_short(self.port, name, record_type)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.exited().is_none()
    }
}

/// Starts `named` on the configuration [`Bind::start`] wrote in `folder`, and waits until it
/// answers for the zone.
fn launch_named(
    named: &Path,
    folder: &Path,
    port: u16,
    zone: &str,
) -> Result<Process, ServerError> {
    let log = folder.join("named.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|failure| error("named", format!("cannot open its log: {failure}")))?;
    let mut process = Process::spawn(
        "named",
        Command::new(named)
            .args(["-g", "-n", "1", "-c"])
            .arg(folder.join("named.conf"))
            .stdout(Stdio::null())
            .stderr(log_file),
    )?;
    let mut bind_ready =
        || dig_short(port, &format!("{zone}."), "SOA").is_ok_and(|lines| !lines.is_empty());
    wait_ready("named", &mut || process.exited(), &log, &mut bind_ready)?;
    Ok(process)
}

fn dig_short(port: u16, name: &str, record_type: &str) -> Result<Vec<String>, ServerError> {
    let dig = need("dig", "bind9-dnsutils")?;
    let output = run(
        "dig",
        Command::new(dig).args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+norecurse",
            "+time=2",
            "+tries=1",
            name,
            record_type,
        ]),
    )?;
    let mut lines: Vec<String> = output
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    Ok(lines)
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

fn generate_key(path: &Path, comment: &str) -> Result<String, ServerError> {
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

/// Checks that the machine's zfs-fuse daemon answers (`xtask/setup/30-zfs.sh` starts it).
pub fn check_zfs() -> Result<(), ServerError> {
    let zpool = need("zpool", "zfs-fuse")?;
    run("zfs-fuse", Command::new(zpool).arg("list"))
        .map(|_| ())
        .map_err(|_| {
            error(
                "zfs-fuse",
                "the zfs-fuse daemon does not answer `zpool list`: start it with cargo xtask setup (Debian package zfs-fuse)",
            )
        })
}

/// Destroys a leftover pool of an earlier run, so that a new generation 1 can create it.
pub fn destroy_pool_if_present(pool: &str) {
    let _ = Command::new("zpool").args(["destroy", "-f", pool]).output();
}

/// A CA for the demo's hub certificates: `ca.pem` (what the TLS check trusts) and `ca.key`
/// (what the hub stand-in signs with).
#[derive(Debug, Clone)]
pub struct DemoCa {
    pub folder: PathBuf,
    pub ca_file: PathBuf,
}

impl DemoCa {
    pub fn generate(folder: &Path) -> Result<DemoCa, ServerError> {
        let openssl = need("openssl", "openssl")?;
        create_folder("openssl", folder)?;
        let ca_file = folder.join("ca.pem");
        run(
            "openssl",
            Command::new(openssl)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "30",
                    "-subj",
                    // Unique per run, so that a certificate from an earlier run reads as
                    // signed by an unknown issuer rather than by a look-alike.
                    &format!("/CN=ferry demo CA {}", std::process::id()),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                ])
                .arg(folder.join("ca.key"))
                .arg("-out")
                .arg(&ca_file),
        )?;
        Ok(DemoCa {
            folder: folder.to_path_buf(),
            ca_file,
        })
    }
}

/// The `ferry-sim` binary, run as its own process as an operator would run it.
#[derive(Debug)]
pub struct SimulatorProcess {
    process: Process,
    pub endpoint: String,
    pub ca_file: PathBuf,
    /// Holds `disks/` and `vms/{vm}/scsi1/lunN`: `FERRY_ARM_DEVICE_ROOT`.
    pub data_directory: PathBuf,
    pub state_dump: PathBuf,
}

/// How to run `ferry-sim`.
#[derive(Debug, Clone)]
pub struct SimulatorSettings {
    pub binary: PathBuf,
    pub data_directory: PathBuf,
    /// 0.01: an 8-minute AKS create takes 4.8 s.
    pub time_scale: f64,
    /// Each disk's sparse backing file (zfs-fuse needs at least 64 MiB per vdev).
    pub disk_backing_size: u64,
}

impl SimulatorProcess {
    pub fn start(settings: &SimulatorSettings) -> Result<SimulatorProcess, ServerError> {
        need("curl", "curl")?;
        create_folder("ferry-sim", &settings.data_directory)?;
        let port = free_port()?;
        let state_dump = settings.data_directory.join("state-dump.json");
        let log = settings.data_directory.join("ferry-sim.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|failure| error("ferry-sim", format!("cannot create its log: {failure}")))?;
        let mut process = Process::spawn(
            "ferry-sim",
            Command::new(&settings.binary)
                .arg("--address")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--time-scale")
                .arg(settings.time_scale.to_string())
                .arg("--data-directory")
                .arg(&settings.data_directory)
                .arg("--disk-backing-size")
                .arg(settings.disk_backing_size.to_string())
                .arg("--state-dump")
                .arg(&state_dump)
                .stdout(Stdio::piped())
                .stderr(log_file),
        )?;
        // It prints its endpoint and CA file once it listens.
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| error("ferry-sim", "no standard output"))?;
        let mut endpoint = None;
        let mut ca_file = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix("endpoint:") {
                endpoint = Some(value.trim().to_owned());
            }
            if let Some(value) = line.strip_prefix("ca file:") {
                ca_file = Some(PathBuf::from(value.trim()));
                break;
            }
        }
        // Keep reading what it prints later: a closed pipe would end it at its next line.
        std::thread::spawn(move || lines.for_each(drop));
        let (Some(endpoint), Some(ca_file)) = (endpoint, ca_file) else {
            return Err(error(
                "ferry-sim",
                format!(
                    "did not print its endpoint; its log {}:\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            ));
        };
        Ok(SimulatorProcess {
            process,
            endpoint,
            ca_file,
            data_directory: settings.data_directory.clone(),
            state_dump,
        })
    }

    /// The environment that points ferry's Azure providers at this simulator.
    pub fn ferry_environment(&self) -> Vec<(&'static str, String)> {
        simulator_environment(&self.endpoint, &self.ca_file, &self.data_directory)
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, ServerError> {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(&self.ca_file)
            .args(["-X", method]);
        if let Some(body) = body {
            command
                .args(["-H", "content-type: application/json", "--data"])
                .arg(body.to_string());
        }
        command.arg(format!("{}{path}", self.endpoint));
        run("ferry-sim", &mut command)
    }

    /// Injects a fault, as `POST /ferry-sim/faults` (`{"kind": "api_server_down", ...}`).
    pub fn inject(&self, fault: &serde_json::Value) -> Result<(), ServerError> {
        self.control("POST", "/ferry-sim/faults", Some(fault))
            .map(|_| ())
    }

    pub fn clear_faults(&self) -> Result<(), ServerError> {
        self.control("DELETE", "/ferry-sim/faults", None)
            .map(|_| ())
    }

    /// The world as the simulator sees it: resources, operations, faults.
    pub fn state(&self) -> Result<serde_json::Value, ServerError> {
        let text = self.control("GET", "/ferry-sim/state", None)?;
        serde_json::from_str(&text)
            .map_err(|failure| error("ferry-sim", format!("its state is not JSON: {failure}")))
    }

    /// Stops it with Ctrl-C, so that it writes its state dump.
    pub fn stop(mut self) -> PathBuf {
        self.process.interrupt();
        self.state_dump.clone()
    }
}

/// SHA-256 of each file, by `sha256sum`: a check made by a tool that is not ferry.
pub fn checksums(files: &[PathBuf]) -> Result<BTreeMap<PathBuf, String>, ServerError> {
    let mut sums = BTreeMap::new();
    if files.is_empty() {
        return Ok(sums);
    }
    let output = run("sha256sum", Command::new("sha256sum").args(files))?;
    for line in output.lines() {
        if let Some((sum, path)) = line.split_once("  ") {
            sums.insert(PathBuf::from(path), sum.to_owned());
        }
    }
    Ok(sums)
}

/// Writes `count` files of varied content and size below `folder` (a user's home
/// directory), and returns their paths.
pub fn write_home_files(
    folder: &Path,
    user: &str,
    count: usize,
) -> Result<Vec<PathBuf>, ServerError> {
    let home = folder.join(user);
    create_folder("files", &home)?;
    let mut paths = Vec::new();
    for index in 0..count {
        let path = home.join(format!("notebook-{index}.ipynb"));
        // Varied sizes, some spanning several ZFS records, so that a bad move shows.
        let line = format!(
            "{{\"cell\": {index}, \"user\": \"{user}\", \"source\": \"print({index} * 7)\"}}\n"
        );
        let text = line.repeat(1 + index * 997 % 5000);
        write("files", &path, &text)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The environment that points ferry's Azure providers at a simulator, whether it runs as
/// the `ferry-sim` process or in the test's own process.
pub fn simulator_environment(
    endpoint: &str,
    ca_file: &Path,
    data_directory: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("FERRY_ARM_ENDPOINT", endpoint.to_owned()),
        ("FERRY_ARM_CA_FILE", ca_file.display().to_string()),
        ("FERRY_ARM_SIMULATOR", "1".to_owned()),
        (
            "FERRY_ARM_DEVICE_ROOT",
            data_directory.display().to_string(),
        ),
    ]
}

/// Whether zfs-fuse knows a pool of this name (imported).
pub fn pool_exists(pool: &str) -> bool {
    Command::new("zpool")
        .args(["status", pool])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Destroys a pool when dropped, however the run ends, so that the next run (or anything else
/// on this machine) does not find it imported with its mountpoints taken. Declare it before
/// the [`HubServers`] guard, so that it is dropped after it: a pool whose files a hub still
/// holds open cannot be destroyed.
#[derive(Debug)]
pub struct PoolCleanup {
    pub pool: String,
}

impl Drop for PoolCleanup {
    fn drop(&mut self) {
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

/// Stops the hub stand-ins' HTTPS servers (`specs/data100/hooks/demo-hub.sh`, one per ingress
/// address, its pid in `hubs/<address>/pid` under the demo CA folder) when dropped: a server
/// left on an ingress address would answer the next run with an old certificate.
#[derive(Debug)]
pub struct HubServers(pub PathBuf);

impl HubServers {
    /// The guard for the hubs started with `DEMO_CA_DIR` set to this CA's folder.
    pub fn of(ca: &DemoCa) -> HubServers {
        HubServers(ca.folder.join("hubs"))
    }
}

impl Drop for HubServers {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
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

impl ZfsLock {
    /// Waits for the lock; it is released when the guard is dropped or the process ends.
    pub fn acquire() -> Result<ZfsLock, ServerError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(ZFS_LOCK_FILE)
            .map_err(|failure| error("lock", format!("cannot open {ZFS_LOCK_FILE}: {failure}")))?;
        file.lock()
            .map_err(|failure| error("lock", format!("cannot lock {ZFS_LOCK_FILE}: {failure}")))?;
        Ok(ZfsLock { _file: file })
    }
}

/// The `--var` settings that point the data100 spec at these servers: the hub stand-in
/// (`hooks/demo-hub.sh` in `spec_folder`, absolute, since ferry-hook starts a relative program
/// from ferry's own folder), sshd's port, keys and known_hosts, BIND and its TSIG key, and
/// the demo CA for the TLS check.
pub fn data100_variables(spec_folder: &Path, sshd: &Sshd, bind: &Bind, ca: &DemoCa) -> Vec<String> {
    vec![
        format!(
            "hub_deployer={}",
            spec_folder.join("hooks/demo-hub.sh").display()
        ),
        format!("admin_ssh_key={}", sshd.user_public_key),
        "nfs_ssh_user=root".into(),
        format!("nfs_ssh_port={}", sshd.port),
        format!("nfs_known_hosts={}", sshd.known_hosts.display()),
        format!("nfs_ssh_key_file={}", sshd.user_key.display()),
        format!("dns_server={}", bind.server()),
        format!("tsig_key_file={}", bind.key_file.display()),
        format!("tls_ca_file={}", ca.ca_file.display()),
        // No NFS server here: zfs-fuse cannot export, and the hub stand-in reads the mounted
        // datasets directly.
        "nfs_share=off".into(),
    ]
}

/// The environment of the hub stand-in: its CA, and how long each hub's "helm" takes.
pub fn hub_environment(
    ca: &DemoCa,
    staging_seconds: f64,
    prod_seconds: f64,
) -> Vec<(String, String)> {
    vec![
        ("DEMO_CA_DIR".into(), ca.folder.display().to_string()),
        (
            "DEMO_HUB_SECONDS_STAGING".into(),
            format!("{staging_seconds:.2}"),
        ),
        ("DEMO_HUB_SECONDS_PROD".into(), format!("{prod_seconds:.2}")),
    ]
}

/// The resources of a simulator state dump (`GET /ferry-sim/state` or `dump_state`),
/// wherever its layout keeps them, each body with its `id`.
pub fn state_resources(state: &serde_json::Value) -> Vec<serde_json::Value> {
    match &state["resources"] {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.get("body").cloned().map_or(item.clone(), |mut body| {
                    if body.get("id").is_none() {
                        body["id"] = item["id"].clone();
                    }
                    body
                })
            })
            .collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(id, body)| {
                let mut body = body.get("body").cloned().unwrap_or_else(|| body.clone());
                if body.get("id").is_none() {
                    body["id"] = serde_json::Value::from(id.clone());
                }
                body
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The address ARM gave a public IP of one resource group, from a simulator state dump.
pub fn public_address(state: &serde_json::Value, group: &str, name: &str) -> Option<String> {
    state_resources(state)
        .into_iter()
        .find(|resource| {
            let id = resource["id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            id.contains(&format!("/resourcegroups/{group}/"))
                && id.ends_with(&format!("/publicipaddresses/{name}"))
        })
        .and_then(|resource| {
            resource["properties"]["ipAddress"]
                .as_str()
                .map(str::to_owned)
        })
}

/// Whether a simulator state dump holds anything in the resource group.
pub fn group_exists(state: &serde_json::Value, group: &str) -> bool {
    state_resources(state).iter().any(|resource| {
        resource["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains(&format!("/resourcegroups/{group}"))
    })
}
