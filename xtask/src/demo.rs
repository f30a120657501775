//! `cargo xtask demo`: the data100 failover story, end to end, against real local servers: the
//! ARM simulator (`ferry-sim`), a BIND for the zone, an sshd in front of zfs-fuse, and a hub
//! stand-in serving HTTPS. Every proof at the end comes from a tool that is not ferry.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_servers::{
    Bind, DemoCa, HubServers, PoolCleanup, SimulatorProcess, SimulatorSettings, Sshd, ZfsLock,
    checksums, data100_variables, group_exists, hub_environment, public_address,
    simulator_addresses, write_home_files,
};

/// The simulator's clock: one real second stands for 100 on Azure.
const TIME_SCALE: f64 = 0.01;
const ZONE: &str = "data100.example.org";
const POOL: &str = "data100";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// What helm took on the day for each hub (13:20 to 13:34, 13:34 to 13:41).
const STAGING_HELM_SECONDS: f64 = 14.0 * 60.0;
const PROD_HELM_SECONDS: f64 = 7.0 * 60.0;

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

/// When each step of the failover apply ended, from its progress lines, as they arrived.
fn apply_with_timings(command: &mut Command) -> Result<(i32, BTreeMap<String, Duration>)> {
    let started = Instant::now();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ferry apply")?;
    let mut ended = BTreeMap::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            eprintln!("{line}");
            // "[00:00:05] check.prod_tls:wait: done in 3s"
            if let Some((_, rest)) = line.split_once("] ")
                && let Some((step, status)) = rest.rsplit_once(": ")
                && status.starts_with("done")
            {
                ended.insert(step.to_owned(), started.elapsed());
            }
        }
    }
    let status = child.wait()?;
    Ok((status.code().unwrap_or(1), ended))
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

pub fn demo(root: &Path) -> Result<()> {
    for (program, package) in PROGRAMS {
        if let Err(error) = ferry_servers::need(program, package) {
            bail!("{error}");
        }
    }
    ferry_servers::check_zfs()?;
    // The end-to-end tests use the same zfs-fuse and the same hub addresses: one at a time.
    let _zfs = ZfsLock::acquire()?;
    clear_leftover_pool()?;
    // Declared before the hub servers, so dropped after them: a pool whose files a hub still
    // holds open cannot be destroyed.
    let _pool = PoolCleanup {
        pool: POOL.to_owned(),
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
    let release = root.join("target/release");
    let work = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    crate::copy_dir(&root.join("specs/data100"), &work.join("data100"))?;

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
    let sshd = Sshd::start(&work.join("ssh"), simulator_addresses(16))?;
    println!(
        "sshd           port {} on 127.0.1.1-16 (the simulator's public IPs), host keys pinned in known_hosts",
        sshd.port
    );
    println!("zfs-fuse       answers `zpool list`");
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
    // Hooks get a clean environment: the hub stand-in is passed its CA and pace by name.
    let hub_variables: Vec<String> = hub_environment(&ca, 0.0, 0.0)
        .into_iter()
        .map(|(name, _)| format!("\"{name}\""))
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
        variables: data100_variables(&work.join("data100"), &sshd, &bind, &ca),
        environment,
    };

    section("Generation 1: ferry apply builds data100 from nothing");
    ok(&mut story.with_variables(&["apply", "data100", "--auto-approve"]))?;
    let _ = Command::new("zfs")
        .args(["set", &format!("{DEMO_PROPERTY}={}", work.display()), POOL])
        .status();
    let mut files = write_home_files(Path::new("/export/home/staging"), "alice", 4)?;
    files.extend(write_home_files(Path::new("/export/home/prod"), "bob", 6)?);
    files.extend(write_home_files(
        Path::new("/export/home/prod"),
        "carol",
        6,
    )?);
    let before = checksums(&files)?;
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
    let (code, ended) = apply_with_timings(&mut story.ferry(&[
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
    let ingress = public_address(&state, "data100-g2", "data100-ingress")
        .context("the simulator shows no ingress address in data100-g2")?;
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
            format!("DNS {name}.{ZONE} -> {ingress} (new ingress)"),
            good,
        ));
    }
    let after = checksums(&files)?;
    let same = files
        .iter()
        .filter(|file| before.get(*file) == after.get(*file))
        .count();
    println!(
        "sha256sum: {same} of {} files unchanged after the pool moved",
        files.len()
    );
    proofs.push((
        format!("{same}/{} file checksums match", files.len()),
        same == files.len(),
    ));
    let status = Command::new("zpool").args(["status", POOL]).output()?;
    let status_text = String::from_utf8_lossy(&status.stdout);
    let on_new_host = status_text.contains("data100-nfs-g2/scsi1/lun");
    println!(
        "zpool status: the pool's vdevs are {}",
        if on_new_host {
            "the new VM's lun0..3"
        } else {
            "NOT on the new VM"
        }
    );
    proofs.push((
        "pool imported from data100-nfs-g2's disks".into(),
        on_new_host,
    ));
    let tls = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca.ca_file)
        .args([
            "--resolve",
            &format!("hub.{ZONE}:443:{ingress}"),
            &format!("https://hub.{ZONE}/"),
        ])
        .output()?;
    let tls_code = String::from_utf8_lossy(&tls.stdout).into_owned();
    println!("curl https://hub.{ZONE}/ at {ingress}: HTTP {tls_code}, certificate verified");
    proofs.push((
        "TLS: curl verifies hub's certificate".into(),
        tls_code == "200",
    ));
    let old_gone = !group_exists(&state, "data100-g1");
    println!(
        "simulator state: resource group data100-g1 {}",
        if old_gone { "is gone" } else { "still exists" }
    );
    proofs.push(("old generation retired (data100-g1 gone)".into(), old_gone));
    let replan =
        run_status(&mut story.with_variables(&["plan", "data100", "--detailed-exitcode"]))?;
    proofs.push(("ferry plan right after: no changes".into(), replan == 0));

    let prod_up = ended.get("dns_record.prod:update").copied();
    let connectable = ended.get("check.prod_tls:wait").copied();
    let scale = |duration: Duration| duration.as_secs_f64() / TIME_SCALE;
    section("Summary");
    for (what, good) in &proofs {
        println!("  [{}] {what}", if *good { "ok" } else { "FAILED" });
    }
    println!(
        "\n  failover apply: {:.1} s on this machine (simulator clock x{TIME_SCALE})",
        apply_wall.as_secs_f64()
    );
    if let Some(prod_up) = prod_up {
        println!(
            "  decision to prod up:  {} (real-world, scaled back)   on the day: 61 min (12:40 to 13:41)",
            minutes(scale(prod_up))
        );
    }
    if let Some(connectable) = connectable {
        println!(
            "  time to recovery:     {} (real-world, scaled back; TLS check passed)   on the day: 2 h 20 min (11:21 to 13:41), 3 h 27 min until TLS",
            minutes(scale(connectable))
        );
    }
    println!(
        "  (ferry watch would have alerted on the API server within minutes, instead of 11:21 to 12:40 before a decision)"
    );
    println!(
        "\nThe demo's files: {} (failover.svg, applied.svg, sim/state-dump.json)",
        work.display()
    );
    drop(sshd);
    drop(bind);
    let dump = simulator.stop();
    println!("Simulator state dump: {}", dump.display());
    if proofs.iter().any(|(_, good)| !good) {
        bail!("some proofs failed: see the summary above");
    }
    Ok(())
}
