//! `cargo xtask demo [--mode cold|warm|hot]`: the data100 failover story, end to end, against
//! real local servers: the ARM simulator (`ferry-sim`), a BIND for the zone, an sshd in front
//! of zfs-fuse, and a hub stand-in serving HTTPS. Every proof at the end comes from a tool that
//! is not ferry. `--mode warm` tells the same story on `specs/data100/warm`, whose every apply
//! keeps the next generation built and its hubs deployed idle. `--mode hot` tells it on
//! `specs/data100/hot`, whose standby also holds a replica of the pool: there each simulated VM
//! is a ZFS host of its own (`ferry_servers::VmHosts`), powered as the simulator says. `--mode
//! drill` has no outage: `ferry drill` rehearses the cold failover on copies of production's
//! disks beside production, which is checked untouched (`demo/drill.rs`). The last line of the
//! output is one JSON object with the measured time to recovery and data lost (a drill's: its
//! time to recovery, whether production was untouched, what was left), for programs
//! (`tail -1`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod drill;
use ferry_servers::{
    Bind, DemoCa, HubServers, NfsHosts, PoolCleanup, SimulatorProcess, SimulatorSettings, Sshd,
    VmHosts, ZfsLock, checksums, data100_variables, group_exists, hub_environment, public_address,
    simulator_addresses, write_home_files,
};

/// The simulator's clock: one real second stands for 100 on Azure.
const TIME_SCALE: f64 = 0.01;
const ZONE: &str = "data100.example.org";
const POOL: &str = "data100";
/// Where the pool's datasets are mounted on an NFS VM.
const HOME_ROOT: &str = "/export/home";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// What helm took on the day for each hub (13:20 to 13:34, 13:34 to 13:41).
const STAGING_HELM_SECONDS: f64 = 14.0 * 60.0;
const PROD_HELM_SECONDS: f64 = 7.0 * 60.0;

/// What activating a hub deployed idle in a warm standby takes (`demo-hub.sh --activate`):
/// scaling the release up, its pods start (their images already on the nodes) and mount the
/// home directories over NFS. An assumption, not a measurement (the day had no standby): the
/// warm spec's estimates, `specs/data100/warm/service.toml`.
const STAGING_ACTIVATE_SECONDS: f64 = 90.0;
const PROD_ACTIVATE_SECONDS: f64 = 60.0;

/// Which story the demo tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The day's failover: the next generation is built from nothing when the outage comes.
    Cold,
    /// The same outage with `[failover] standby = "warm"`: the next generation was built,
    /// its hubs deployed idle, before it.
    Warm,
    /// The same outage with `[failover] standby = "hot"`: the standby also holds a read-only
    /// replica of the pool, on its own disks and its own host, which the failover promotes.
    Hot,
    /// No outage: `ferry drill` rehearses the cold failover on copies of production's disks,
    /// beside production, measures it and removes it (`demo/drill.rs`).
    Drill,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode> {
        match text {
            "cold" => Ok(Mode::Cold),
            "warm" => Ok(Mode::Warm),
            "hot" => Ok(Mode::Hot),
            "drill" => Ok(Mode::Drill),
            other => bail!("unknown demo mode `{other}`: give --mode cold, warm, hot or drill"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Warm => "warm",
            Mode::Hot => "hot",
            Mode::Drill => "drill",
        }
    }

    /// The spec the story copies, from the workspace's root.
    fn spec_folder(self) -> &'static str {
        match self {
            Mode::Cold | Mode::Drill => "specs/data100",
            Mode::Warm => "specs/data100/warm",
            Mode::Hot => "specs/data100/hot",
        }
    }

    /// Whether each simulated VM is a ZFS host of its own (`VmHosts`): a hot standby's replica
    /// is a pool of the same name on another VM, and so is a drill's copy.
    fn on_vm_hosts(self) -> bool {
        matches!(self, Mode::Hot | Mode::Drill)
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// Every program the story needs, with the Debian package that brings it.
const PROGRAMS: &[(&str, &str)] = &[
    ("named", "bind9"),
    ("tsig-keygen", "bind9"),
    ("dig", "bind9-dnsutils"),
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("zpool", "zfs-fuse"),
    ("openssl", "openssl"),
    ("python3", "python3"),
    ("curl", "curl"),
    ("sha256sum", "coreutils"),
];

struct Story {
    ferry: PathBuf,
    work: PathBuf,
    variables: Vec<String>,
    environment: Vec<(String, String)>,
}

impl Story {
    fn ferry(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(&self.ferry);
        command.current_dir(&self.work).args(arguments);
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
        command
    }

    fn with_variables(&self, arguments: &[&str]) -> Command {
        let mut command = self.ferry(arguments);
        for variable in &self.variables {
            command.args(["--var", variable]);
        }
        command
    }
}

fn run_status(command: &mut Command) -> Result<i32> {
    let shown = format!("{:?}", command.get_args().collect::<Vec<_>>());
    let status = command
        .status()
        .with_context(|| format!("cannot start ferry {shown}"))?;
    Ok(status.code().unwrap_or(1))
}

fn ok(command: &mut Command) -> Result<()> {
    let code = run_status(command)?;
    if code != 0 {
        bail!("ferry exited with {code}: see above for what went wrong");
    }
    Ok(())
}

/// When each step of an apply started and ended on this machine, counted from the moment the
/// apply was started, from its progress lines as they arrived.
#[derive(Debug, Default)]
struct StepTimes {
    started: BTreeMap<String, Duration>,
    ended: BTreeMap<String, Duration>,
}

fn apply_with_timings(command: &mut Command) -> Result<(i32, StepTimes)> {
    let begun = Instant::now();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ferry apply")?;
    let mut times = StepTimes::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            eprintln!("{line}");
            // "[00:00:05] check.prod_tls:wait: started, estimated 6s" and "...: done in 3s,
            // estimated 6s; ...": a step id holds no ": ".
            let Some((_, rest)) = line.split_once("] ") else {
                continue;
            };
            let Some((step, message)) = rest.split_once(": ") else {
                continue;
            };
            if message.split(',').next() == Some("started") || message.starts_with("resumed from") {
                times.started.insert(step.to_owned(), begun.elapsed());
            } else if message.starts_with("done in ") {
                times.ended.insert(step.to_owned(), begun.elapsed());
            }
        }
    }
    let status = child.wait()?;
    Ok((status.code().unwrap_or(1), times))
}

/// The kinds whose steps run at the pace of the simulator or of a stand-in here, a share
/// TIME_SCALE of Azure's: every ARM write (the simulator's clock) and the hooks (demo-hub.sh
/// sleeps helm's pace, or an activation's, scaled alike). Every other step of data100 runs at
/// this machine's own pace and is taken as measured: the pool's export and import over SSH on
/// zfs-fuse, the DNS updates on BIND, the TLS check. What a paced step does at this machine's
/// pace is scaled with it, a little too much: ferry's polling of ARM, and the stand-in's own
/// work (a cold hub's certificate and server start, about half a second here, so some 50 s
/// too many per cold hub; an activation's few milliseconds).
const PACED_KINDS: &[&str] = &[
    "resource_group",
    "vnet",
    "public_ip",
    "vm",
    "aks_cluster",
    "disk",
    "hook",
];

/// The failover's time to recovery as clients see it, in real-world seconds.
#[derive(Debug)]
struct Recovery {
    /// From the decision (`ferry apply` started) until clients reach the new generation.
    seconds: f64,
    /// Until `dns_record.prod` was repointed, when the plan does.
    prod_up: Option<f64>,
    /// The record whose cached answers end the recovery, and their TTL, when one does.
    cached: Option<(String, u64)>,
}

/// Measures the failover's time to recovery from what the apply did here, in real-world
/// seconds, the way the plan's `recovery_seconds` estimates it.
///
/// Each step of the plan but the retirements (which wait for everything else) is taken in
/// the plan's order, with the times its progress lines gave:
/// - its run, from its start to its end, scaled back by 1 / TIME_SCALE when its kind is paced
///   (PACED_KINDS), as measured otherwise;
/// - its wait, from the end of the last step it comes after (or from the apply's start: the
///   apply reads the world again before its first step) to its own start, as measured: that
///   is ferry's own time (reading, scheduling, the journal), at this machine's pace;
/// - so it ends, in real-world seconds, at the latest end of the steps it comes after, plus
///   its wait, plus its run.
///
/// The service is back when the last of them has ended and, for each DNS record a step
/// repointed, resolvers' cached old answers have expired: the old record's TTL after the
/// update's end (a real-world figure, never scaled). No step here waits out a TTL itself; one
/// with `wait_for_ttl` would have done so within its measured run, and adds none.
fn measured_recovery(saved_plan: &serde_json::Value, times: &StepTimes) -> Result<Recovery> {
    let plan = &saved_plan["plan"];
    let steps = plan["steps"]
        .as_array()
        .context("the saved failover plan has no steps")?;
    let mut ends: BTreeMap<&str, f64> = BTreeMap::new();
    let mut recovery = Recovery {
        seconds: 0.0,
        prod_up: None,
        cached: None,
    };
    for step in steps {
        if step["action"] == "retire" {
            continue;
        }
        let id = step["id"].as_str().context("a plan step has no id")?;
        let (Some(&started), Some(&ended)) = (times.started.get(id), times.ended.get(id)) else {
            bail!("the failover apply's progress shows no start and end for {id}");
        };
        let mut ready_here = Duration::ZERO;
        let mut ready = 0.0f64;
        for before in step["after"].as_array().into_iter().flatten() {
            let before = before.as_str().unwrap_or_default();
            let Some(&end) = ends.get(before) else {
                bail!("{id} comes after {before}, which the failover apply did not run first");
            };
            ready_here = ready_here.max(times.ended[before]);
            ready = ready.max(end);
        }
        let kind = id.split('.').next().unwrap_or_default();
        let run = (ended.saturating_sub(started)).as_secs_f64();
        let run = if PACED_KINDS.contains(&kind) {
            run / TIME_SCALE
        } else {
            run
        };
        let wait = started.saturating_sub(ready_here).as_secs_f64();
        let end = ready + wait + run;
        ends.insert(id, end);
        if id == "dns_record.prod:update" {
            recovery.prod_up = Some(end);
        }
        let cached = cached_seconds(step);
        if end + cached as f64 > recovery.seconds {
            recovery.seconds = end + cached as f64;
            let address = step["address"].as_str().unwrap_or(id).to_owned();
            recovery.cached = (cached > 0).then_some((address, cached));
        }
    }
    // The plan names the record whose TTL ends its estimate; the two readings of that TTL
    // must agree.
    if let Some(address) = plan["recovery_cached"]["address"].as_str() {
        let planned = plan["recovery_cached"]["seconds"].as_u64().unwrap_or(0);
        let read = steps
            .iter()
            .find(|step| step["address"] == address && step["action"] != "retire")
            .map(cached_seconds);
        if read != Some(planned) {
            bail!(
                "the plan counts {planned} s of cached answers for {address}, the demo read {read:?} s from its step: one of them is wrong"
            );
        }
    }
    Ok(recovery)
}

/// How long resolvers may keep a record's old answer after this step of a failover changed
/// it: the TTL of the record before the change (the `before` of a changed `ttl`, else the
/// unchanged `ttl`), as the planner counts it (DNS's `cached_for_seconds`). 0 for any other
/// step, and for an update that waits the TTL out itself (`wait_for_ttl`).
fn cached_seconds(step: &serde_json::Value) -> u64 {
    let is_record_update = step["action"] == "update"
        && step["address"]
            .as_str()
            .is_some_and(|address| address.starts_with("dns_record."));
    if !is_record_update || step["inputs"]["wait_for_ttl"] == true {
        return 0;
    }
    let changed = step["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|change| change["path"] == "ttl")
        .and_then(|change| change["before"].as_u64());
    changed
        .or_else(|| step["inputs"]["ttl"].as_u64())
        .unwrap_or(0)
}

fn minutes(seconds: f64) -> String {
    let total = seconds.round() as u64;
    if total >= 3600 {
        format!("{} h {:02} min", total / 3600, total % 3600 / 60)
    } else {
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

/// The user property the demo sets on its pool, so that a later run knows a leftover pool
/// of that name is the demo's to destroy.
const DEMO_PROPERTY: &str = "org.ferry:demo";

/// A pool of the demo's name left by an earlier demo (marked with [`DEMO_PROPERTY`], or with
/// vdevs under a ferry-demo folder) is ours to destroy; any other is not.
fn clear_leftover_pool() -> Result<()> {
    let status = Command::new("zpool").args(["status", POOL]).output()?;
    if !status.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&status.stdout);
    let mark = Command::new("zfs")
        .args(["get", "-H", "-o", "value", DEMO_PROPERTY, POOL])
        .output()?;
    let marked = String::from_utf8_lossy(&mark.stdout).contains("ferry-demo-");
    if marked || text.contains("ferry-demo-") {
        ferry_servers::destroy_pool_if_present(POOL);
        return Ok(());
    }
    bail!(
        "a ZFS pool named `{POOL}` exists and is not the demo's: export it (zpool export {POOL}) and run the demo again"
    )
}

pub fn demo(root: &Path, mode: Mode) -> Result<()> {
    for (program, package) in PROGRAMS {
        if let Err(error) = ferry_servers::need(program, package) {
            bail!("{error}");
        }
    }
    // The end-to-end tests use the same zfs-fuse and the same hub addresses: one at a time.
    let _zfs = ZfsLock::acquire()?;
    // Declared before the hub servers, so dropped after them: a pool whose files a hub still
    // holds open cannot be destroyed. A hot story's pools are on the VMs' own hosts, which go
    // with them.
    let _pool = if mode.on_vm_hosts() {
        for (program, package) in [("unshare", "util-linux"), ("nsenter", "util-linux")] {
            ferry_servers::need(program, package)?;
        }
        None
    } else {
        ferry_servers::check_zfs()?;
        clear_leftover_pool()?;
        Some(PoolCleanup {
            pool: POOL.to_owned(),
        })
    };
    // FERRY_DEMO_PREBUILT=1 reuses target/release/{ferry,ferry-sim} as they are.
    if std::env::var_os("FERRY_DEMO_PREBUILT").is_none() {
        crate::run(Command::new("cargo").args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "ferry-cli",
            "-p",
            "ferry-sim",
        ]))?;
    }
    // Where cargo put them: CARGO_TARGET_DIR when it is set, as cargo does.
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let work = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    // Following links: the warm spec's azure.toml, storage.toml and hooks are the cold one's.
    crate::copy_dir(&root.join(mode.spec_folder()), &work.join("data100"))?;

    section("Starting the local world: the ARM simulator, BIND, sshd, zfs-fuse");
    let simulator = SimulatorProcess::start(&SimulatorSettings {
        binary: release.join("ferry-sim"),
        data_directory: work.join("sim"),
        time_scale: TIME_SCALE,
        disk_backing_size: 64 << 20,
    })?;
    println!(
        "ARM simulator  {} (time scale {TIME_SCALE}: 1 s here is {} s on Azure)",
        simulator.endpoint,
        1.0 / TIME_SCALE
    );
    let bind = Bind::start(&work.join("bind"), ZONE)?;
    println!(
        "BIND           {} serves {ZONE}, updates signed with TSIG key `ferry`",
        bind.server()
    );
    let hosts = if mode.on_vm_hosts() {
        let control = simulator.control();
        let hosts = VmHosts::start(
            &work.join("vms"),
            Box::new(move || control.state()),
            simulator_addresses(16),
            vec![PathBuf::from(HOME_ROOT)],
        )?;
        println!(
            "VM hosts       port {} on 127.0.1.1-16 (the simulator's public IPs) leads to the VM that holds the address: each VM its own zfs-fuse and sshd, started when the VM runs, killed when it is powered off; host keys pinned in known_hosts",
            hosts.access().port
        );
        NfsHosts::Vms(hosts)
    } else {
        let sshd = Sshd::start(&work.join("ssh"), simulator_addresses(16))?;
        println!(
            "sshd           port {} on 127.0.1.1-16 (the simulator's public IPs), host keys pinned in known_hosts",
            sshd.port
        );
        println!("zfs-fuse       answers `zpool list`");
        NfsHosts::Machine(sshd)
    };
    let ca = DemoCa::generate(&work.join("ca"))?;
    let _hubs = HubServers::of(&ca);

    let mut environment: Vec<(String, String)> = simulator
        .ferry_environment()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    environment.extend(hub_environment(
        &ca,
        STAGING_HELM_SECONDS * TIME_SCALE,
        PROD_HELM_SECONDS * TIME_SCALE,
    ));
    // The warm spec's activations; the cold one's hooks never read these.
    let activation = [
        (
            "DEMO_HUB_ACTIVATE_SECONDS_STAGING",
            STAGING_ACTIVATE_SECONDS * TIME_SCALE,
        ),
        (
            "DEMO_HUB_ACTIVATE_SECONDS_PROD",
            PROD_ACTIVATE_SECONDS * TIME_SCALE,
        ),
    ];
    environment.extend(
        activation
            .iter()
            .map(|(name, seconds)| ((*name).to_owned(), format!("{seconds:.2}"))),
    );
    // The hub stand-in writes its marker where it finds the home directories; a hot story's
    // pool is mounted on a VM's host, which this machine's file system does not show.
    if mode.on_vm_hosts() {
        let markers = work.join("hub-homes");
        std::fs::create_dir_all(&markers)?;
        environment.push(("DEMO_HOME_ROOT".to_owned(), markers.display().to_string()));
    }
    // Hooks get a clean environment: the hub stand-in is passed its CA and paces by name.
    let hub_variables: Vec<String> = hub_environment(&ca, 0.0, 0.0)
        .into_iter()
        .map(|(name, _)| name)
        .chain(activation.iter().map(|(name, _)| (*name).to_owned()))
        .chain(mode.on_vm_hosts().then(|| "DEMO_HOME_ROOT".to_owned()))
        .map(|name| format!("\"{name}\""))
        .collect();
    let service_file = work.join("data100/service.toml");
    let service = std::fs::read_to_string(&service_file)?.replace(
        "retry = true\n",
        &format!("retry = true\npass_env = [{}]\n", hub_variables.join(", ")),
    );
    std::fs::write(&service_file, service)?;
    let story = Story {
        ferry: release.join("ferry"),
        work: work.clone(),
        variables: data100_variables(&work.join("data100"), &hosts.access(), &bind, &ca),
        environment,
    };
    if mode == Mode::Drill {
        return drill::story(&story, simulator, hosts, &bind, &ca);
    }

    match mode {
        Mode::Cold => section("Generation 1: ferry apply builds data100 from nothing"),
        Mode::Warm => section(
            "Generation 1 and its warm standby, generation 2: ferry apply builds both from nothing",
        ),
        Mode::Hot => section(
            "Generation 1 and its hot standby, generation 2, with the pool's replica on its own disks: ferry apply builds both from nothing",
        ),
        Mode::Drill => unreachable!("the drill's story is told by demo/drill.rs"),
    }
    ok(&mut story.with_variables(&["apply", "data100", "--auto-approve"]))?;
    // The standby was built before the outage, not by the failover.
    let standby_before_outage = group_exists(&simulator.state()?, "data100-g2");
    if mode != Mode::Hot {
        let _ = Command::new("zfs")
            .args(["set", &format!("{DEMO_PROPERTY}={}", work.display()), POOL])
            .status();
    }
    // The files, by their path below the home directories' root on the NFS VM.
    let home = hosts.path("data100-nfs-g1", Path::new(HOME_ROOT))?;
    let mut written = Written::default();
    written.add(&home, write_home_files(&home.join("staging"), "alice", 4)?)?;
    written.add(&home, write_home_files(&home.join("prod"), "bob", 6)?)?;
    if mode == Mode::Hot {
        println!(
            "\n{} files written into the home directories on the pool",
            written.files.len()
        );
        section("A replication round, as ferry watch runs one every replica_interval");
        ok(&mut story.with_variables(&["replicate", "data100"]))?;
        println!(
            "\n6 more files written after the round: a failover that must fence the old NFS VM would lose them; a hand-over sends them first"
        );
    }
    written.add(&home, write_home_files(&home.join("prod"), "carol", 6)?)?;
    let before = written.checksums(&home)?;
    let files = &written.files;
    println!(
        "\n{} files written into the home directories on the pool; their SHA-256 recorded",
        files.len()
    );

    section("11:21: the AKS API server stops answering (ARM still calls the cluster fine)");
    let cluster = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/data100-g1/providers/Microsoft.ContainerService/managedClusters/data100-hub"
    );
    simulator.inject(
        &serde_json::json!({"kind": "api_server_down", "cluster": cluster, "mode": "hang"}),
    )?;

    section("The operator runs ferry plan: the failover, with its time to recovery");
    let code = run_status(&mut story.with_variables(&[
        "plan",
        "data100",
        "-o",
        "failover.plan",
        "--timeline",
        "failover.svg",
    ]))?;
    if code != 0 && code != 2 {
        bail!("ferry plan failed (exit {code}): see above");
    }
    println!(
        "(the plan's timeline: {})",
        work.join("failover.svg").display()
    );

    section("... and applies exactly that plan");
    let started = Instant::now();
    let (code, times) = apply_with_timings(&mut story.ferry(&[
        "apply",
        "failover.plan",
        "--timeline",
        "applied.svg",
        // The simulator runs at TIME_SCALE: the progress compares with estimates scaled alike.
        "--estimates-scale",
        &TIME_SCALE.to_string(),
    ]))?;
    let apply_wall = started.elapsed();
    if code != 0 {
        bail!(
            "the failover apply failed (exit {code}): see above; run ferry apply again to resume"
        );
    }

    section("Proof, from tools that are not ferry");
    let state = simulator.state()?;
    // A hot standby keeps the hubs on a static IP (data100-shared) that generation 2's ingress
    // took over; the others give each generation an ingress address of its own.
    let ingress_group = if mode == Mode::Hot {
        "data100-shared"
    } else {
        "data100-g2"
    };
    let ingress = public_address(&state, ingress_group, "data100-ingress")
        .with_context(|| format!("the simulator shows no ingress address in {ingress_group}"))?;
    let new_ingress = if mode == Mode::Hot {
        "the same static IP, now generation 2's"
    } else {
        "new ingress"
    };
    let mut proofs = Vec::new();
    for name in ["staging", "hub"] {
        let answer = bind.dig(&format!("{name}.{ZONE}."), "A")?;
        let good = answer == vec![ingress.clone()];
        println!(
            "dig {name}.{ZONE} A @{}: {}",
            bind.server(),
            answer.join(", ")
        );
        proofs.push((
            format!("DNS {name}.{ZONE} -> {ingress} ({new_ingress})"),
            good,
        ));
    }
    let new_home = hosts.path("data100-nfs-g2", Path::new(HOME_ROOT))?;
    let after = written.checksums(&new_home)?;
    let same = files
        .iter()
        .filter(|file| before.get(*file) == after.get(*file))
        .count();
    let moved = if mode == Mode::Hot {
        "the replica took over"
    } else {
        "the pool moved"
    };
    println!(
        "sha256sum: {same} of {} files unchanged after {moved}",
        files.len()
    );
    proofs.push((
        format!("{same}/{} file checksums match", files.len()),
        same == files.len(),
    ));
    // The replica's disks are luns 4 to 7 of the standby's VM; the pool's own, 0 to 3.
    let (luns, lun_text) = if mode == Mode::Hot {
        (
            "data100-nfs-g2/scsi1/lun4",
            "lun4..7: the replica's own disks",
        )
    } else {
        ("data100-nfs-g2/scsi1/lun0", "lun0..3")
    };
    let status_text = hosts.run("data100-nfs-g2", "zpool", &["status", POOL])?;
    let on_new_host = status_text.contains(luns);
    println!(
        "zpool status: the pool's vdevs are {}",
        if on_new_host {
            format!("the new VM's {lun_text}")
        } else {
            "NOT on the new VM".to_owned()
        }
    );
    proofs.push((
        "pool imported from data100-nfs-g2's disks".into(),
        on_new_host,
    ));
    let tls = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(&ca.ca_file)
        .args([
            "--resolve",
            &format!("hub.{ZONE}:443:{ingress}"),
            &format!("https://hub.{ZONE}/"),
        ])
        .output()?;
    let answer = String::from_utf8_lossy(&tls.stdout).into_owned();
    let (body, tls_code) = answer.rsplit_once('\n').unwrap_or(("", answer.as_str()));
    println!("curl https://hub.{ZONE}/ at {ingress}: HTTP {tls_code}, certificate verified");
    proofs.push((
        "TLS: curl verifies hub's certificate".into(),
        tls_code == "200",
    ));
    if mode == Mode::Hot {
        // Which cluster answers on the static IP: generation 2's, through its load balancer.
        let served_by_new = body.contains("on aks_cluster.hub@g2");
        println!("the hub at {ingress} says: {}", body.trim());
        proofs.push((
            "the static IP serves generation 2's hub".into(),
            served_by_new,
        ));
    }
    let old_gone = !group_exists(&state, "data100-g1");
    println!(
        "simulator state: resource group data100-g1 {}",
        if old_gone { "is gone" } else { "still exists" }
    );
    let saved_plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("failover.plan"))
            .context("cannot read the saved failover plan")?,
    )
    .context("the saved failover plan is not JSON")?;
    if mode == Mode::Hot {
        // The old primary's disks keep its generation until the failback moves them.
        proofs.push((
            "old generation kept with the old primary's disks (data100-g1 exists)".into(),
            !old_gone,
        ));
    } else {
        proofs.push(("old generation retired (data100-g1 gone)".into(), old_gone));
    }
    match mode {
        Mode::Cold => {
            let replan =
                run_status(&mut story.with_variables(&["plan", "data100", "--detailed-exitcode"]))?;
            proofs.push(("ferry plan right after: no changes".into(), replan == 0));
        }
        Mode::Warm => {
            proofs.push((
                "standby built before the outage (data100-g2 existed)".into(),
                standby_before_outage,
            ));
            // The failover used the standby; the next one is built by the next apply.
            let next = next_standby_only(&story)?;
            println!(
                "ferry plan right after: {}",
                if next {
                    "nothing but the next warm standby, generation 3"
                } else {
                    "more than the next warm standby"
                }
            );
            proofs.push((
                "ferry plan right after: only the next standby (generation 3) to build".into(),
                next,
            ));
            section("ferry apply builds the next warm standby, generation 3");
            ok(&mut story.with_variables(&["apply", "data100", "--auto-approve"]))?;
            let replan =
                run_status(&mut story.with_variables(&["plan", "data100", "--detailed-exitcode"]))?;
            proofs.push(("ferry plan after that: no changes".into(), replan == 0));
        }
        Mode::Drill => unreachable!("the drill's story is told by demo/drill.rs"),
        Mode::Hot => {
            proofs.push((
                "standby and its replica built before the outage (data100-g2 existed)".into(),
                standby_before_outage,
            ));
            let disk_steps = saved_plan["plan"]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|step| {
                    step["address"]
                        .as_str()
                        .is_some_and(|address| address.starts_with("disk."))
                })
                .count();
            println!("the failover plan: {disk_steps} disk steps");
            proofs.push(("the failover moved no disk".into(), disk_steps == 0));
            let old_role = hosts
                .run(
                    "data100-nfs-g1",
                    "zfs",
                    &["get", "-H", "-o", "value", "readonly", POOL],
                )
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|failure| format!("no answer ({failure})"));
            let handed_over = old_role == "on";
            println!("zfs get readonly {POOL} on data100-nfs-g1: {old_role}");
            proofs.push((
                "the old primary handed over: a read-only replica now".into(),
                handed_over,
            ));
            section(
                "The failback, a plan like any other: ferry apply builds the next hot standby, generation 3, and makes the old primary's disks its replica",
            );
            ok(&mut story.with_variables(&["apply", "data100", "--auto-approve"]))?;
            let state = simulator.state()?;
            let old_gone = !group_exists(&state, "data100-g1");
            println!(
                "simulator state: resource group data100-g1 {}",
                if old_gone { "is gone" } else { "still exists" }
            );
            proofs.push((
                "failback: old generation retired once its disks moved (data100-g1 gone)".into(),
                old_gone,
            ));
            let replica = hosts.run(
                "data100-nfs-g3",
                "zfs",
                &["get", "-H", "-o", "value", "readonly,ferry:role", POOL],
            );
            let replica_text = replica.as_deref().unwrap_or("no answer").trim().to_owned();
            println!(
                "zfs get readonly,ferry:role {POOL} on data100-nfs-g3: {}",
                replica_text.replace('\n', ", ")
            );
            proofs.push((
                "failback: data100-nfs-g3 holds the next read-only replica".into(),
                replica_text.replace('\n', " ") == "on replica",
            ));
            let replan =
                run_status(&mut story.with_variables(&["plan", "data100", "--detailed-exitcode"]))?;
            proofs.push(("ferry plan after that: no changes".into(), replan == 0));
        }
    }
    let estimate = saved_plan["plan"]["recovery_seconds"].as_u64();
    let recovery = measured_recovery(&saved_plan, &times)?;
    // Data lost: from the first file written before the outage that the new pool lacks (or
    // holds changed) to the last file written, as measured here (ZFS runs at this machine's
    // pace, never scaled); none when every file is there.
    let lost = written.lost_seconds(&before, &after);
    section("Summary");
    for (what, good) in &proofs {
        println!("  [{}] {what}", if *good { "ok" } else { "FAILED" });
    }
    println!(
        "\n  failover apply: {:.1} s on this machine (simulator clock x{TIME_SCALE})",
        apply_wall.as_secs_f64()
    );
    println!(
        "  (real-world figures: the simulator's and the stand-ins' paced steps scaled back by 1/{TIME_SCALE}, the rest as measured)"
    );
    if let Some(prod_up) = recovery.prod_up {
        println!(
            "  decision to prod up:  {} (real-world)   on the day: 61 min (12:40 to 13:41)",
            minutes(prod_up)
        );
    }
    let back = match &recovery.cached {
        Some((address, ttl)) => format!(
            "once resolvers' cached answers for {address} expire, {} after its update",
            minutes(*ttl as f64)
        ),
        None => "every step but the retirements done".to_owned(),
    };
    println!(
        "  time to recovery:     {} (real-world, measured: {back})",
        minutes(recovery.seconds)
    );
    if let Some(estimate) = estimate {
        println!(
            "                        {} (the plan's estimate)",
            minutes(estimate as f64)
        );
    }
    println!(
        "                        on the day: 2 h 20 min (11:21 to 13:41), 3 h 27 min until TLS"
    );
    println!(
        "  data lost:            {} (measured: {same} of {} files written before the outage there, unchanged)",
        if lost == 0.0 {
            "none".to_owned()
        } else {
            format!("{lost:.1} s of writes")
        },
        files.len()
    );
    println!(
        "  (ferry watch would have alerted on the API server within minutes, instead of 11:21 to 12:40 before a decision)"
    );
    println!(
        "\nThe demo's files: {} (failover.svg, applied.svg, sim/state-dump.json)",
        work.display()
    );
    drop(hosts);
    drop(bind);
    let dump = simulator.stop();
    println!("Simulator state dump: {}", dump.display());
    if proofs.iter().any(|(_, good)| !good) {
        bail!("some proofs failed: see the summary above");
    }
    // The last line, for programs (`tail -1`).
    println!(
        "{{\"mode\":\"{}\",\"rto_seconds\":{},\"rpo_seconds\":{},\"files_checked\":{}}}",
        mode.name(),
        recovery.seconds.round() as u64,
        lost.round() as u64,
        files.len()
    );
    Ok(())
}

/// The users' files the story writes: each one's path below the home directories' root, and
/// when it was written.
#[derive(Debug, Default)]
struct Written {
    files: Vec<PathBuf>,
    at: Vec<Instant>,
}

impl Written {
    /// Records `paths`, just written below `home`.
    fn add(&mut self, home: &Path, paths: Vec<PathBuf>) -> Result<()> {
        let now = Instant::now();
        for path in paths {
            let relative = path
                .strip_prefix(home)
                .with_context(|| format!("{} is not below {}", path.display(), home.display()))?;
            self.files.push(relative.to_path_buf());
            self.at.push(now);
        }
        Ok(())
    }

    /// Each file's SHA-256 by `sha256sum`, as found below `home`, by its path below it; a
    /// missing file has none.
    fn checksums(&self, home: &Path) -> Result<BTreeMap<PathBuf, String>> {
        let present: Vec<PathBuf> = self
            .files
            .iter()
            .map(|file| home.join(file))
            .filter(|path| path.is_file())
            .collect();
        Ok(checksums(&present)?
            .into_iter()
            .filter_map(|(path, sum)| Some((path.strip_prefix(home).ok()?.to_path_buf(), sum)))
            .collect())
    }

    /// The writes lost, in seconds: from the first file missing or changed to the last file
    /// written; 0 when none is.
    fn lost_seconds(
        &self,
        before: &BTreeMap<PathBuf, String>,
        after: &BTreeMap<PathBuf, String>,
    ) -> f64 {
        let last = self.at.iter().max();
        let first_lost = self
            .files
            .iter()
            .zip(&self.at)
            .filter(|(file, _)| before.get(*file) != after.get(*file))
            .map(|(_, at)| at)
            .min();
        match (first_lost, last) {
            (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Whether `ferry plan` right after a warm failover has nothing to do but build the next
/// standby (every step on generation 3, the plan's standby): what a warm failover leaves.
fn next_standby_only(story: &Story) -> Result<bool> {
    let output = story
        .with_variables(&["plan", "data100", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start ferry plan")?;
    if !output.status.success() {
        bail!("ferry plan --json failed ({}): see above", output.status);
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("ferry plan --json printed no JSON")?;
    let steps = plan["steps"].as_array().cloned().unwrap_or_default();
    let all_next = steps.iter().all(|step| {
        step["address"]
            .as_str()
            .is_some_and(|address| address.ends_with("@g3"))
    });
    Ok(!steps.is_empty() && all_next && plan["standby"]["generation"] == 3)
}
