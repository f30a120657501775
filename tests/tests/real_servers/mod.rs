//! What the tests on real local servers share: the data100 spec pointed at the ARM simulator
//! (in the test's process), BIND with TSIG, sshd in front of the machine's zfs-fuse (or, for a
//! hot standby, a ZFS host of its own per simulated VM: `ferry_servers::VmHosts`) and the hub
//! stand-in, the `ferry` binary that runs against them, and the checks that tools other than
//! ferry make of the outcome (the simulator's record of operations, `sha256sum`, `dig`,
//! `zpool status`, `curl`).
//!
//! The machine's zfs-fuse is one daemon for every "host": pool names and mountpoints are
//! global, so these tests use a pool of their own, take the machine-wide [`ZfsLock`] (the demo
//! takes it too, and it also guards the hubs' addresses), and destroy the pool however they
//! end.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use ferry_core::{Action, Plan, Step};
use ferry_plan::SavedPlan;
use ferry_servers::{
    Bind, DemoCa, HubServers, NfsHosts, PoolCleanup, SimulatorControl, Sshd, VmHosts, ZfsLock,
    checksums, data100_variables, group_exists, hub_environment, public_address,
    simulator_addresses, simulator_environment, write_home_files,
};
use ferry_sim::{Fault, SimEvent, Simulator, SimulatorConfig};

/// The tests' own pool and mountpoints, so that they never meet the demo's `data100`.
pub const POOL: &str = "ferrye2e";
pub const HOME_ROOT: &str = "/tmp/ferrye2e-home";
/// The mountpoints' root of the runs on VM hosts, each host's own (a tmpfs in its namespace):
/// never the machine's runs' folder, which they remove at start (removing a folder removes the
/// mounts other namespaces have on it).
pub const VM_HOME_ROOT: &str = "/tmp/ferrye2e-vm-home";
pub const ZONE: &str = "data100.example.org";
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// An 8-minute AKS create takes about a second.
pub const TIME_SCALE: f64 = 0.002;
/// The simulator's smallest time scale the tests use (`SimulatorConfig::for_tests`): an
/// 8-minute AKS create takes a quarter of a second, a 3-minute disk move 90 ms.
pub const SMALLEST_TIME_SCALE: f64 = 0.0005;

/// How a [`World`] differs from the one most tests use.
#[derive(Debug, Clone, Copy)]
pub struct WorldSettings {
    /// The simulator's time scale.
    pub time_scale: f64,
    /// When set, both DNS records of the spec get this TTL and `wait_for_ttl = true`, so that
    /// each update of a failover waits out the old TTL (a recorded wait).
    pub record_ttl_with_wait: Option<u32>,
    /// The spec folder of the repository copied as `data100`: `specs/data100`, or its warm
    /// or hot variant (`specs/data100/warm`, `specs/data100/hot`).
    pub spec: &'static str,
    /// Each simulated VM a ZFS host of its own, powered as the simulator says (a hot
    /// standby's replica is a pool of the same name on another VM), instead of the machine's
    /// zfs-fuse behind one sshd.
    pub vm_hosts: bool,
}

impl Default for WorldSettings {
    fn default() -> Self {
        WorldSettings {
            time_scale: TIME_SCALE,
            record_ttl_with_wait: None,
            spec: "specs/data100",
            vm_hosts: false,
        }
    }
}

/// The `ferry` binary of this build: built here (a no-op when it is up to date) in the target
/// folder this test runs from, so the test never depends on an earlier `cargo build`.
pub fn ferry_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // target/<profile>/deps/data100_end_to_end-HASH
        let executable = std::env::current_exe().unwrap();
        let profile_folder = executable.parent().unwrap().parent().unwrap();
        let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        command.args(["build", "--quiet", "-p", "ferry-cli", "--bin", "ferry"]);
        match profile_folder.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                command.args(["--profile", profile]);
            }
        }
        command.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = command.status().unwrap();
        assert!(status.success(), "cargo build -p ferry-cli failed");
        let binary = profile_folder.join("ferry");
        assert!(binary.is_file(), "no ferry binary at {}", binary.display());
        binary
    })
}

/// Copies a spec folder, following links and keeping file permissions (the hook scripts stay
/// executable).
pub fn copy_folder(from: &Path, to: &Path) {
    ferry_testkit::copy_spec_folder(from, to);
}

/// The local world of one test. Fields drop in order: the hubs stop, then the servers, then
/// the pool is destroyed (no hub holds its files any more), then the lock is released, then
/// the folder (with the simulator's disk files) goes.
pub struct World {
    _hubs: HubServers,
    pub hosts: NfsHosts,
    pub bind: Bind,
    pub simulator: Simulator,
    pub ca: DemoCa,
    pub variables: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub work: PathBuf,
    /// The hubs' ingress is a static IP that outlives generations (`static_ip.ingress`, the
    /// hot spec), not a public IP per generation.
    pub static_ingress: bool,
    _pool: Option<PoolCleanup>,
    _lock: ZfsLock,
    _folder: tempfile::TempDir,
}

/// What one `ferry` run printed, and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn shown(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn expect_code(self, code: i32, what: &str) -> Run {
        assert_eq!(self.code, code, "{what}: {}", self.shown());
        self
    }

    /// The steps the plain progress lines report done: `[00:00:05] vm.nfs@g2:create: done in 3s`.
    pub fn steps_done(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("] ")?;
                let (step, status) = rest.rsplit_once(": ")?;
                status.starts_with("done").then(|| step.to_owned())
            })
            .collect()
    }
}

impl World {
    pub async fn start() -> World {
        World::start_with(WorldSettings::default()).await
    }

    pub async fn start_with(settings: WorldSettings) -> World {
        // The machine's runs hold its zfs-fuse and the hubs' addresses 127.0.1.x; the runs on
        // VM hosts touch neither (their simulator hands out 127.0.2.x), and run beside them.
        let lock = if settings.vm_hosts {
            ZfsLock::acquire_for_vm_hosts().unwrap()
        } else {
            ZfsLock::acquire().unwrap()
        };
        // The pool's name is the tests' own: one left by a test that was killed is ours. On
        // the VMs' own hosts, it goes with them.
        let home_root = if settings.vm_hosts {
            VM_HOME_ROOT
        } else {
            HOME_ROOT
        };
        let pool = (!settings.vm_hosts).then(|| {
            ferry_servers::check_zfs().unwrap();
            ferry_servers::destroy_pool_if_present(POOL);
            let _ = std::fs::remove_dir_all(HOME_ROOT);
            PoolCleanup {
                pool: POOL.to_owned(),
            }
        });
        let folder = tempfile::tempdir().unwrap();
        let work = folder.path().to_path_buf();
        let spec = work.join("data100");
        copy_folder(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(settings.spec),
            &spec,
        );
        let storage = std::fs::read_to_string(spec.join("storage.toml")).unwrap();
        let storage = storage
            .replace(
                "pool_name = \"data100\"",
                &format!("pool_name = \"{POOL}\""),
            )
            .replace("\"/export/home/", &format!("\"{home_root}/"));
        assert!(storage.contains(POOL) && storage.contains(home_root));
        std::fs::write(spec.join("storage.toml"), storage).unwrap();
        // Hooks get a clean environment: the hub stand-in is told where the demo CA, the
        // home folders and its pace are (unless the spec already passes them).
        let service = std::fs::read_to_string(spec.join("service.toml")).unwrap();
        if !service.contains("pass_env") {
            let hooks = service.matches("[hook.").count();
            let service = service.replace(
                "retry = true\n",
                "retry = true\npass_env = [\"DEMO_CA_DIR\", \"DEMO_HOME_ROOT\", \"DEMO_HUB_SECONDS_STAGING\", \"DEMO_HUB_SECONDS_PROD\"]\n",
            );
            assert_eq!(service.matches("pass_env").count(), hooks);
            std::fs::write(spec.join("service.toml"), service).unwrap();
        }
        if let Some(ttl) = settings.record_ttl_with_wait {
            let service = std::fs::read_to_string(spec.join("service.toml")).unwrap();
            let service = service.replace(
                "ttl = \"${var.dns_ttl}\"\n",
                &format!("ttl = {ttl}\nwait_for_ttl = true\n"),
            );
            assert_eq!(service.matches("wait_for_ttl = true").count(), 2);
            std::fs::write(spec.join("service.toml"), service).unwrap();
        }

        let first_address = if settings.vm_hosts {
            ferry_servers::VM_HOSTS_FIRST_ADDRESS
        } else {
            std::net::Ipv4Addr::new(127, 0, 1, 1)
        };
        let simulator = ferry_sim::start(SimulatorConfig {
            time_scale: settings.time_scale,
            first_public_ip: first_address,
            ..SimulatorConfig::for_tests(work.join("sim"))
        })
        .await
        .unwrap();
        let bind = Bind::start(&work.join("bind"), ZONE).unwrap();
        let hosts = if settings.vm_hosts {
            let control = SimulatorControl {
                endpoint: simulator.endpoint().to_owned(),
                ca_file: simulator.ca_file().to_path_buf(),
            };
            NfsHosts::Vms(
                VmHosts::start(
                    &work.join("vms"),
                    Box::new(move || control.state()),
                    ferry_servers::addresses_from(first_address, 16),
                    vec![PathBuf::from(VM_HOME_ROOT)],
                )
                .unwrap(),
            )
        } else {
            NfsHosts::Machine(Sshd::start(&work.join("ssh"), simulator_addresses(16)).unwrap())
        };
        let ca = DemoCa::generate(&work.join("ca")).unwrap();
        let hubs = HubServers::of(&ca);
        let mut environment: Vec<(String, String)> =
            simulator_environment(simulator.endpoint(), simulator.ca_file(), &work.join("sim"))
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
        environment.extend(hub_environment(&ca, 0.05, 0.05));
        // The hub stand-in writes its marker where it finds the home directories: on the
        // machine's zfs-fuse, the pool; the VMs' own hosts' pools are not seen from here.
        let markers = if settings.vm_hosts {
            let markers = work.join("hub-homes");
            std::fs::create_dir_all(&markers).unwrap();
            markers
        } else {
            PathBuf::from(HOME_ROOT)
        };
        environment.push(("DEMO_HOME_ROOT".into(), markers.display().to_string()));
        // A hung API server is given up on after a second, not five.
        environment.push(("FERRY_AKS_READYZ_TIMEOUT".into(), "1".into()));
        let variables = data100_variables(&spec, &hosts.access(), &bind, &ca);
        let static_ingress = std::fs::read_to_string(spec.join("azure.toml"))
            .unwrap()
            .contains("[static_ip.ingress]");
        World {
            static_ingress,
            _hubs: hubs,
            hosts,
            bind,
            simulator,
            ca,
            variables,
            environment,
            work,
            _pool: pool,
            _lock: lock,
            _folder: folder,
        }
    }

    /// `ferry ARGUMENTS` in the work folder, pointed at the simulator; `with_variables` adds
    /// the `--var`s that point the spec at the local servers.
    pub fn ferry(&self, arguments: &[&str], with_variables: bool) -> Run {
        Run::from(self.command(arguments, with_variables).output().unwrap())
    }

    /// The command [`World::ferry`] runs, to start it in the background.
    pub fn command(&self, arguments: &[&str], with_variables: bool) -> Command {
        let mut command = Command::new(ferry_binary());
        command
            .current_dir(&self.work)
            .args(arguments)
            .args(["--color", "never"])
            .envs(self.environment.iter().map(|(name, value)| (name, value)));
        if with_variables {
            for variable in &self.variables {
                command.args(["--var", variable]);
            }
        }
        command
    }

    /// Builds generation 1 and writes users' files into its pool; returns their checksums.
    pub fn build_generation_one(&self) -> (Vec<PathBuf>, BTreeMap<PathBuf, String>) {
        self.ferry(&["apply", "data100", "--auto-approve"], true)
            .expect_code(0, "generation 1");
        let home = Path::new(HOME_ROOT);
        let mut files = write_home_files(&home.join("staging"), "alice", 3).unwrap();
        files.extend(write_home_files(&home.join("prod"), "bob", 4).unwrap());
        let sums = checksums(&files).unwrap();
        assert_eq!(sums.len(), files.len());
        (files, sums)
    }

    pub fn cluster_id(generation: u32) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/data100-g{generation}/providers/Microsoft.ContainerService/managedClusters/data100-hub"
        )
    }

    /// The API server of a generation's cluster stops answering; ARM still calls it fine.
    pub fn break_api_server(&self, generation: u32) {
        self.simulator.inject(Fault::ApiServerDown {
            cluster: Self::cluster_id(generation),
            // Hang, as the demo does. (A refused connection reads with a reason that varies
            // from one read to the next; fingerprints leave reasons out, so either works.)
            mode: ferry_sim::ApiServerDownMode::Hang,
        });
    }

    /// The old NFS host of `generation` is lost: its ZFS lets go of the pool (as a deallocated
    /// VM's does; zfs-fuse is one daemon for every "host") and its SSH address goes away.
    pub fn lose_nfs_host(&mut self, generation: u32) {
        let address: std::net::Ipv4Addr = public_address(
            &self.simulator.dump_state(),
            &format!("data100-g{generation}"),
            "data100-nfs-ssh",
        )
        .unwrap_or_else(|| panic!("no SSH address for the NFS VM of data100-g{generation}"))
        .parse()
        .unwrap();
        let export = Command::new("zpool")
            .args(["export", "-f", POOL])
            .output()
            .unwrap();
        assert!(
            export.status.success(),
            "{}",
            String::from_utf8_lossy(&export.stderr)
        );
        let reachable: Vec<_> = simulator_addresses(16)
            .into_iter()
            .filter(|other| *other != address)
            .collect();
        self.sshd().listen_on(reachable).unwrap();
    }

    /// sshd listens on the 16 loopback addresses from the NFS VM's of `generation` on, so that
    /// it and the generations after it reach sshd however many generations came before
    /// (sshd listens on at most 16 addresses; the simulator never hands one out twice).
    pub fn serve_ssh_from(&mut self, generation: u32) {
        let first: std::net::Ipv4Addr = public_address(
            &self.simulator.dump_state(),
            &format!("data100-g{generation}"),
            "data100-nfs-ssh",
        )
        .unwrap_or_else(|| panic!("no SSH address for the NFS VM of data100-g{generation}"))
        .parse()
        .unwrap();
        let addresses: Vec<std::net::Ipv4Addr> = (0..16)
            .map(|offset| std::net::Ipv4Addr::from(u32::from(first) + offset))
            .collect();
        let sshd = self.sshd();
        if sshd.addresses.first() != Some(&first) {
            // known_hosts lists sshd's one host key for every address it was started on:
            // the same key, for the addresses it listens on now.
            let known = std::fs::read_to_string(&sshd.known_hosts).unwrap();
            let host_key = known
                .lines()
                .next()
                .and_then(|line| line.split_once(' '))
                .map(|(_, key)| key.to_owned())
                .expect("a host key in known_hosts");
            let mut lines = known.clone();
            for address in &addresses {
                let entry = format!("[{address}]:{} {host_key}\n", sshd.port);
                if !known.contains(&entry) {
                    lines.push_str(&entry);
                }
            }
            std::fs::write(&sshd.known_hosts, lines).unwrap();
            sshd.listen_on(addresses).unwrap();
        }
    }

    /// The sshd in front of the machine's zfs-fuse (a world without VM hosts).
    fn sshd(&mut self) -> &mut Sshd {
        match &mut self.hosts {
            NfsHosts::Machine(sshd) => sshd,
            NfsHosts::Vms(_) => panic!("this world's VMs are hosts of their own: no shared sshd"),
        }
    }

    /// The VMs' own hosts (a world started with `vm_hosts`).
    pub fn vm_hosts(&self) -> &VmHosts {
        match &self.hosts {
            NfsHosts::Vms(hosts) => hosts,
            NfsHosts::Machine(_) => panic!("this world has no VM hosts: start it with vm_hosts"),
        }
    }

    /// ARM answers every GET of a path containing `path_contains` with a `500`, as in a
    /// regional blip, until the simulator's faults are cleared.
    pub fn fail_arm_reads(&self, path_contains: &str) {
        self.simulator.inject(Fault::RawResponse {
            method: Some("GET".into()),
            path_contains: path_contains.to_owned(),
            status: 500,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::json!({"error": {
                "code": "InternalServerError",
                "message": "the regional blip of this test: ARM cannot read this resource",
            }})
            .to_string(),
            count: None,
        });
    }

    /// After a kill: the dead apply's lock is reported stale, never taken over silently; then
    /// `ferry force-unlock` of it.
    pub fn force_unlock(&self, case: &str) {
        let refused = self
            .ferry(&["apply", "data100", "--auto-approve"], true)
            .expect_code(1, "an apply while the dead one's lock is held");
        assert!(
            refused.stderr.contains("holds a stale lock")
                && refused.stderr.contains("no longer runs"),
            "{case}: {}",
            refused.shown()
        );
        let lock: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.work.join("data100/.ferry/lock.json")).unwrap(),
        )
        .unwrap();
        self.ferry(
            &["force-unlock", lock["id"].as_str().unwrap(), "data100"],
            false,
        )
        .expect_code(0, "force-unlock");
    }

    /// `ferry plan data100 -o FILE`: what it showed, and the saved plan read back through the
    /// library.
    pub fn shown_and_saved_plan(&self, file: &str, extra: &[&str]) -> (Run, SavedPlan) {
        let mut arguments = vec!["plan", "data100", "-o", file];
        arguments.extend_from_slice(extra);
        let shown = self.ferry(&arguments, true).expect_code(0, "ferry plan -o");
        let text = std::fs::read_to_string(self.work.join(file)).unwrap();
        (shown, SavedPlan::from_json(&text).unwrap())
    }

    /// The records of ferry's journal (`data100/.ferry/journal.jsonl`), in order.
    pub fn journal_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.work.join("data100/.ferry/journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// `ferry plan -o FILE`, read back through the library.
    pub fn saved_plan(&self, file: &str, extra: &[&str]) -> Plan {
        let mut arguments = vec!["plan", "data100", "-o", file];
        arguments.extend_from_slice(extra);
        self.ferry(&arguments, true).expect_code(0, "ferry plan");
        let text = std::fs::read_to_string(self.work.join(file)).unwrap();
        SavedPlan::from_json(&text).unwrap().plan
    }

    /// The hubs' address when `generation` serves: its own public IP, or the static IP that
    /// every generation's ingress takes in turn.
    pub fn ingress(&self, generation: u32) -> String {
        let group = if self.static_ingress {
            "data100-shared".to_owned()
        } else {
            format!("data100-g{generation}")
        };
        public_address(&self.simulator.dump_state(), &group, "data100-ingress")
            .unwrap_or_else(|| panic!("no ingress address in {group}"))
    }

    /// The proofs from tools that are not ferry, after a failover to `generation`, and the
    /// law that planning right after it gives no changes.
    pub fn assert_served_from(
        &self,
        generation: u32,
        files: &[PathBuf],
        sums: &BTreeMap<PathBuf, String>,
    ) {
        self.assert_served_by_tools_from(generation, files, sums);
        self.ferry(&["plan", "data100", "--detailed-exitcode"], true)
            .expect_code(0, "ferry plan right after the failover");
    }

    /// The proofs from tools that are not ferry, after a failover to `generation`.
    pub fn assert_served_by_tools_from(
        &self,
        generation: u32,
        files: &[PathBuf],
        sums: &BTreeMap<PathBuf, String>,
    ) {
        self.assert_clients_reach(generation);
        assert_eq!(
            &checksums(files).unwrap(),
            sums,
            "sha256sum: every file unchanged after the pool moved"
        );
        let status = Command::new("zpool")
            .args(["status", POOL])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&status.stdout);
        for lun in 0..4 {
            assert!(
                status.contains(&format!("data100-nfs-g{generation}/scsi1/lun{lun}")),
                "zpool status: lun{lun} of the new VM is a vdev:\n{status}"
            );
        }
        assert!(status.contains("ONLINE"), "{status}");
        let state = self.simulator.dump_state();
        assert!(
            !group_exists(&state, &format!("data100-g{}", generation - 1)),
            "the old generation's resource group is gone"
        );
    }

    /// The proofs from tools that are not ferry, after a hot failover to `generation`: DNS
    /// and TLS as after any failover, and the pool imported on its NFS VM's host from four
    /// disks attached to that VM (the replica's: lun4..7 after the first failover, the old
    /// primary's after a failback made them the next replica), healthy.
    pub fn assert_served_by_tools_from_hot(&self, generation: u32) {
        self.assert_clients_reach(generation);
        let vm = format!("data100-nfs-g{generation}");
        let status = self.hosts.run(&vm, "zpool", &["status", POOL]).unwrap();
        let vdevs: Vec<&str> = status
            .lines()
            .filter(|line| line.contains("/scsi1/lun"))
            .collect();
        assert_eq!(vdevs.len(), 4, "zpool status on {vm}:\n{status}");
        assert!(
            vdevs
                .iter()
                .all(|line| line.contains(&format!("{vm}/scsi1/lun")) && line.contains("ONLINE")),
            "zpool status on {vm}: every vdev is one of its own disks, online:\n{status}"
        );
    }

    /// DNS answers the ingress of `generation` for both names, and curl verifies the hub's
    /// certificate there; on a static IP, the hub that answers is generation's.
    fn assert_clients_reach(&self, generation: u32) {
        let ingress = self.ingress(generation);
        for name in ["staging", "hub"] {
            assert_eq!(
                self.bind.dig(&format!("{name}.{ZONE}."), "A").unwrap(),
                vec![ingress.clone()],
                "dig {name}.{ZONE} answers the new ingress"
            );
        }
        let tls = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(&self.ca.ca_file)
            .args([
                "--resolve",
                &format!("hub.{ZONE}:443:{ingress}"),
                &format!("https://hub.{ZONE}/"),
            ])
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&tls.stdout).into_owned();
        let (body, code) = answer.rsplit_once('\n').unwrap_or(("", &answer));
        assert_eq!(
            code,
            "200",
            "curl verifies the hub's certificate at the new ingress: {}",
            String::from_utf8_lossy(&tls.stderr)
        );
        if self.static_ingress {
            assert!(
                body.contains(&format!("on aks_cluster.hub@g{generation}")),
                "the hub of generation {generation} answers on the static IP {ingress}: {body}"
            );
        }
    }
}

pub fn step<'p>(plan: &'p Plan, id: &str) -> &'p Step {
    plan.steps
        .iter()
        .find(|step| step.id.0 == id)
        .unwrap_or_else(|| panic!("{id} is not in the plan: {:#?}", ids(plan)))
}

pub fn ids(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|step| step.id.0.clone()).collect()
}

/// Whether `later` waits for `earlier` (through the plan's edges, or because retirements go
/// last); and comes after it in the plan's execution order.
pub fn assert_after(plan: &Plan, earlier: &str, later: &str) {
    let position = |id: &str| {
        plan.steps
            .iter()
            .position(|step| step.id.0 == id)
            .unwrap_or_else(|| panic!("{id} is not in the plan: {:#?}", ids(plan)))
    };
    assert!(
        position(earlier) < position(later),
        "{earlier} comes before {later}"
    );
    let waits = plan
        .ancestors(&step(plan, later).id)
        .contains(&step(plan, earlier).id);
    assert!(waits, "{later} does not wait for {earlier}");
}

/// The step order every data100 failover keeps, whether the old VM can be reached or not.
pub fn assert_failover_order(plan: &Plan, from: u32, to: u32) {
    let fence = format!("vm.nfs@g{from}:fence");
    let new_vm = format!("vm.nfs@g{to}:create");
    let new_cluster = format!("aks_cluster.hub@g{to}:create");
    let import = "zfs_pool.home:import";
    for disk in 0..4 {
        let detach = format!("disk.home{disk}:detach");
        let moved = format!("disk.home{disk}:move");
        let attach = format!("disk.home{disk}:attach");
        assert_after(plan, &fence, &detach);
        assert_after(plan, &detach, &moved);
        assert_after(plan, &moved, &attach);
        assert_after(plan, &new_vm, &attach);
        assert_after(plan, &attach, import);
    }
    assert_after(plan, &fence, import);
    for hook in ["staging_hub", "prod_hub"] {
        let hook = format!("hook.{hook}@g{to}:run");
        assert_after(plan, &new_cluster, &hook);
        assert_after(plan, import, &hook);
    }
    assert_after(
        plan,
        "dns_record.staging:update",
        &format!("hook.prod_hub@g{to}:run"),
    );
    assert_after(plan, "dns_record.prod:update", "check.prod_tls:wait");
    // Retirement comes last: every retire waits for the service to be back, and nothing
    // but retirement follows it.
    let first_retire = plan
        .steps
        .iter()
        .position(|step| step.action == Action::Retire)
        .expect("the old generation is retired");
    assert!(
        plan.steps[first_retire..]
            .iter()
            .all(|step| step.action == Action::Retire),
        "{:#?}",
        ids(plan)
    );
    for retire in &plan.steps[first_retire..] {
        assert_eq!(retire.generation(), Some(from), "{}", retire.id);
        assert_after(plan, "check.prod_tls:wait", &retire.id.0);
    }
}

/// The data100 disks, as ARM names them.
pub const DISKS: [&str; 4] = [
    "data100-home0",
    "data100-home1",
    "data100-home2",
    "data100-home3",
];

pub fn vm_path(generation: u32) -> String {
    format!(
        "/resourceGroups/data100-g{generation}/providers/Microsoft.Compute/virtualMachines/data100-nfs-g{generation}"
    )
}

pub fn positions(events: &[SimEvent], wanted: impl Fn(&SimEvent) -> bool) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, event)| wanted(event))
        .map(|(index, _)| index)
        .collect()
}

/// The order in which the simulator saw the failover's Azure operations: the old VM
/// deallocated (the fence) before any disk leaves it, each disk moved after it was detached,
/// attached to the new VM after its move, the new cluster created, the old group deleted.
pub fn assert_simulator_order(events: &[SimEvent], from: u32, to: u32) {
    assert_failover_events(events, from, to, 1);
}

/// [`assert_simulator_order`] for a failover onto a warm standby: the new cluster was built
/// before it, and the failover creates none.
pub fn assert_simulator_order_onto_standby(events: &[SimEvent], from: u32, to: u32) {
    assert_failover_events(events, from, to, 0);
}

fn assert_failover_events(events: &[SimEvent], from: u32, to: u32, clusters_created: usize) {
    let old_vm = vm_path(from);
    let fenced = positions(events, |event| {
        event.what == "operation"
            && event.path.ends_with(&format!("{old_vm}/deallocate"))
            && event.outcome == "Succeeded"
    });
    assert_eq!(
        fenced.len(),
        1,
        "one deallocation of the old VM: {events:#?}"
    );
    // Disk by disk: several disks share one VM update or one move.
    if let Err(broken) = ferry_sim::check_failover_order(events, fenced[0], &DISKS) {
        panic!("{broken}\n{events:#?}");
    }
    let cluster = format!(
        "/resourceGroups/data100-g{to}/providers/Microsoft.ContainerService/managedClusters/data100-hub"
    );
    assert_eq!(
        positions(events, |event| {
            event.what == "operation"
                && event.method == "PUT"
                && event.path.ends_with(&cluster)
                && event.outcome == "Succeeded"
        })
        .len(),
        clusters_created,
        "the new cluster created {clusters_created} time(s) by the failover: {events:#?}"
    );
    let old_group = format!("/resourceGroups/data100-g{from}");
    let deleted = positions(events, |event| {
        event.what == "operation"
            && event.method == "DELETE"
            && event.path.ends_with(&old_group)
            && event.outcome == "Succeeded"
    });
    assert_eq!(deleted.len(), 1, "the old group deleted once: {events:#?}");
    assert!(
        ferry_sim::disk_records(events)
            .values()
            .flat_map(|record| &record.attached)
            .all(|&attached| attached < deleted[0]),
        "the old group goes last: {events:#?}"
    );
}

/// The commands `zpool history` recorded for the tests' pool, oldest first.
pub fn zpool_history() -> Vec<String> {
    let output = Command::new("zpool")
        .args(["history", POOL])
        .output()
        .unwrap();
    assert!(output.status.success(), "zpool history {POOL}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, command)| command.to_owned()))
        .filter(|command| command.starts_with("zpool ") || command.starts_with("zfs "))
        .collect()
}

/// One step as `ferry plan` shows it (`colour never`): its number and its lines, the heading
/// (` 8. > detach disk.home0  ~30s`) first.
#[derive(Debug)]
pub struct ShownStep<'t> {
    pub number: usize,
    pub lines: Vec<&'t str>,
}

impl ShownStep<'_> {
    /// The step numbers of its `after` line, empty without one.
    pub fn after(&self) -> Vec<usize> {
        self.lines
            .iter()
            .find_map(|line| line.trim_start().strip_prefix("after "))
            .map(|numbers| {
                // A retirement's line ends with the plan's rule ("and every step but the
                // retirements"), which is no step number.
                numbers
                    .split(", ")
                    .filter_map(|number| number.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Its `warning:` lines, without the prefix.
    pub fn warnings(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|line| line.trim_start().strip_prefix("warning: "))
            .collect()
    }
}

/// The step of the plan text whose heading names `heading` (`detach disk.home0`); its block
/// ends at the blank line after it.
pub fn shown_step<'t>(text: &'t str, heading: &str) -> ShownStep<'t> {
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let Some((number, rest)) = line.trim_start().split_once(". ") else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        // `> detach disk.home0  ~30s`: the change's symbol, then the heading.
        let Some((_, named)) = rest.split_once(' ') else {
            continue;
        };
        if named == heading || named.starts_with(&format!("{heading} ")) {
            let block = lines[index..]
                .iter()
                .take_while(|line| !line.trim().is_empty())
                .copied()
                .collect();
            return ShownStep {
                number,
                lines: block,
            };
        }
    }
    panic!("no step `{heading}` in the plan shown:\n{text}");
}
