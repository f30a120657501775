//! `cargo xtask demo --mode drill`: a failover drill of data100 (cold, `specs/data100`) on the
//! ARM simulator, BIND, and a ZFS host of its own per simulated VM (zfs-fuse and sshd), with no
//! outage. Production is built and given users' files; `ferry drill --keep` rehearses the
//! failover on copies of production's disks beside it (its pool's create imports the copy on
//! the drill's own VM); tools that are not ferry then check the drill's pool and that
//! production is untouched (its files' checksums, its pool on its host, `dig` of its records,
//! its hub over TLS, and the simulator's record of its resources: every one with the etag it
//! had, so none was written); `ferry drill --clean` removes the drill, and the same tools count
//! what is left of it. The last line is one JSON object: `mode`, `rto_seconds` (measured, in
//! real-world seconds as every demo mode counts them), `estimated_rto_seconds`,
//! `production_untouched` and `leftovers`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_servers::{Bind, DemoCa, NfsHosts, SimulatorProcess, public_address, state_resources};

use super::{
    HOME_ROOT, POOL, StepTimes, Story, TIME_SCALE, Written, ZONE, measured_recovery, minutes, ok,
    run_status, section, write_home_files,
};

const PRODUCTION_VM: &str = "data100-nfs-g1";
const DRILL_VM: &str = "data100-nfs-g1-drill";
const DRILL_ID: &str = "demo";
/// The production records, and the drill's names for them.
const RECORDS: [&str; 2] = ["hub", "staging"];
const DRILL_RECORDS: [&str; 2] = ["hub-drill", "staging-drill"];

/// What tools other than ferry see of production: compared before, during and after the drill.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProductionView {
    /// Each user's file's SHA-256 on production's NFS VM.
    sums: BTreeMap<std::path::PathBuf, String>,
    /// `zpool list -H -o name,health,guid` on production's NFS VM.
    pools: String,
    /// `dig` of production's records against BIND.
    records: BTreeMap<String, Vec<String>>,
    /// The hub's answer over TLS at production's ingress: HTTP status and body.
    hub: String,
    /// Every resource of production's group in the simulator, with its etag: a write changes
    /// it.
    resources: BTreeMap<String, String>,
}

impl ProductionView {
    /// The differences from `before`, one line each.
    fn differences(&self, before: &ProductionView) -> Vec<String> {
        let mut differences = Vec::new();
        let changed_files = self
            .sums
            .iter()
            .filter(|(file, sum)| before.sums.get(*file) != Some(*sum))
            .count()
            + before
                .sums
                .keys()
                .filter(|file| !self.sums.contains_key(*file))
                .count();
        if changed_files > 0 {
            differences.push(format!("{changed_files} files changed or missing"));
        }
        if self.pools != before.pools {
            differences.push(format!(
                "zpool list on {PRODUCTION_VM}: `{}`, was `{}`",
                self.pools.trim(),
                before.pools.trim()
            ));
        }
        if self.records != before.records {
            differences.push(format!("dig: {:?}, was {:?}", self.records, before.records));
        }
        if self.hub != before.hub {
            differences.push(format!(
                "the hub answers `{}`, was `{}`",
                self.hub, before.hub
            ));
        }
        for (id, etag) in &self.resources {
            match before.resources.get(id) {
                Some(earlier) if earlier == etag => {}
                Some(_) => differences.push(format!("{id} was written (its etag changed)")),
                None => differences.push(format!("{id} is new")),
            }
        }
        for id in before.resources.keys() {
            if !self.resources.contains_key(id) {
                differences.push(format!("{id} is gone"));
            }
        }
        differences
    }
}

/// The A records of `names` in the zone, as `dig` gets them from BIND.
fn dig_all(bind: &Bind, names: &[&str]) -> Result<BTreeMap<String, Vec<String>>> {
    names
        .iter()
        .map(|name| {
            Ok((
                (*name).to_owned(),
                bind.dig(&format!("{name}.{ZONE}."), "A")?,
            ))
        })
        .collect()
}

fn production_view(
    simulator: &SimulatorProcess,
    hosts: &NfsHosts,
    bind: &Bind,
    ca: &DemoCa,
    written: &Written,
) -> Result<ProductionView> {
    let home = hosts.path(PRODUCTION_VM, Path::new(HOME_ROOT))?;
    let state = simulator.state()?;
    let resources = state_resources(&state)
        .iter()
        .filter_map(|resource| {
            let id = resource["id"].as_str()?;
            id.to_ascii_lowercase()
                .contains("/resourcegroups/data100-g1/")
                .then(|| (id.to_owned(), resource["etag"].to_string()))
        })
        .collect();
    let ingress = public_address(&state, "data100-g1", "data100-ingress")
        .context("the simulator shows no ingress address in data100-g1")?;
    let tls = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(&ca.ca_file)
        .args([
            "--resolve",
            &format!("hub.{ZONE}:443:{ingress}"),
            &format!("https://hub.{ZONE}/"),
        ])
        .output()?;
    Ok(ProductionView {
        sums: written.checksums(&home)?,
        pools: hosts.run(
            PRODUCTION_VM,
            "zpool",
            &["list", "-H", "-o", "name,health,guid"],
        )?,
        records: dig_all(bind, &RECORDS)?,
        hub: String::from_utf8_lossy(&tls.stdout)
            .trim()
            .replace('\n', " "),
        resources,
    })
}

/// The drill's resources left: in the simulator (anything whose id names a drill's group or
/// name), in BIND (a drill's record that answers), and the drill VM's host if it still runs.
fn drill_leftovers(simulator: &SimulatorProcess, hosts: &NfsHosts, bind: &Bind) -> Result<usize> {
    let state = simulator.state()?;
    let in_simulator: Vec<String> = state_resources(&state)
        .iter()
        .filter_map(|resource| resource["id"].as_str())
        .filter(|id| id.to_ascii_lowercase().contains("-drill"))
        .map(str::to_owned)
        .collect();
    for id in &in_simulator {
        println!("  left in the simulator: {id}");
    }
    let records: Vec<String> = dig_all(bind, &DRILL_RECORDS)?
        .into_iter()
        .filter(|(_, answer)| !answer.is_empty())
        .map(|(name, answer)| format!("{name}.{ZONE} A {}", answer.join(", ")))
        .collect();
    for record in &records {
        println!("  left in BIND: {record}");
    }
    let host_runs =
        matches!(hosts, NfsHosts::Vms(vms) if vms.running().iter().any(|vm| vm == DRILL_VM));
    if host_runs {
        println!("  left: {DRILL_VM}'s host still runs");
    }
    Ok(in_simulator.len() + records.len() + usize::from(host_runs))
}

/// `ferry drill ... --json`: its report as JSON (the progress goes to the terminal).
fn drill_json(story: &Story, arguments: &[&str]) -> Result<serde_json::Value> {
    let output = story
        .with_variables(arguments)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start ferry drill")?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "ferry drill ({}) printed no JSON report: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    if !output.status.success() {
        bail!(
            "ferry drill failed ({}): {}",
            output.status,
            serde_json::to_string_pretty(&report)?
        );
    }
    Ok(report)
}

/// When each step of the drill started and ended, from its report.
fn drill_step_times(report: &serde_json::Value) -> StepTimes {
    let mut times = StepTimes::default();
    for step in report["steps"].as_array().into_iter().flatten() {
        let (Some(id), Some(started), Some(measured)) = (
            step["id"].as_str(),
            step["started_seconds"].as_f64(),
            step["measured_seconds"].as_f64(),
        ) else {
            continue;
        };
        times
            .started
            .insert(id.to_owned(), Duration::from_secs_f64(started));
        times
            .ended
            .insert(id.to_owned(), Duration::from_secs_f64(started + measured));
    }
    times
}

pub(super) fn story(
    story: &Story,
    simulator: SimulatorProcess,
    hosts: NfsHosts,
    bind: &Bind,
    ca: &DemoCa,
) -> Result<()> {
    let work = &story.work;
    section("Production: ferry apply builds data100's generation 1 from nothing");
    // The build's plan, saved: a cold drill's plan is the same build on copies, with the same
    // steps and edges, which the time to recovery is measured along.
    let code = run_status(&mut story.with_variables(&["plan", "data100", "-o", "build.plan"]))?;
    if code != 0 && code != 2 {
        bail!("ferry plan failed (exit {code}): see above");
    }
    ok(&mut story.ferry(&["apply", "build.plan"]))?;
    let home = hosts.path(PRODUCTION_VM, Path::new(HOME_ROOT))?;
    let mut written = Written::default();
    written.add(&home, write_home_files(&home.join("staging"), "alice", 4)?)?;
    written.add(&home, write_home_files(&home.join("prod"), "bob", 6)?)?;
    // Each file fsynced, as an NFS server does before it answers a write; then a snapshot,
    // which waits for its transaction group to reach the disks. The snapshot is no longer
    // needed for consistency: the drill copies the four disks from one restore point of
    // production's VM, one moment for all; it stays as a named point of production's pool.
    for file in &written.files {
        std::fs::File::open(home.join(file))?.sync_all()?;
    }
    hosts.run(
        PRODUCTION_VM,
        "zfs",
        &["snapshot", "-r", &format!("{POOL}@before-drill")],
    )?;
    println!(
        "\n{} files written into the home directories on production's pool; their SHA-256 recorded",
        written.files.len()
    );
    let before = production_view(&simulator, &hosts, bind, ca, &written)?;
    println!(
        "production: zpool list on {PRODUCTION_VM}: {}; dig: {:?}; the hub answers `{}`; {} resources in data100-g1",
        before.pools.trim().replace('\t', " "),
        before.records,
        before.hub,
        before.resources.len()
    );

    section(
        "ferry drill --keep: the failover rehearsed on copies of production's disks, beside production",
    );
    let started = Instant::now();
    let report = drill_json(
        story,
        &[
            "drill",
            "data100",
            "--id",
            DRILL_ID,
            "--keep",
            "--json",
            "--timeline",
            "drill.svg",
        ],
    )?;
    let drill_wall = started.elapsed();
    println!("\n  step                            estimate   measured here");
    for step in report["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:<30} {:>9}   {:>8.2} s  {}",
            step["id"].as_str().unwrap_or_default(),
            minutes(step["estimate_seconds"].as_f64().unwrap_or_default()),
            step["measured_seconds"].as_f64().unwrap_or_default(),
            step["outcome"].as_str().unwrap_or_default()
        );
    }
    println!(
        "(the drill's timeline: {})",
        work.join("drill.svg").display()
    );

    section("While the drill stands: its pool, and production, from tools that are not ferry");
    let mut proofs: Vec<(String, bool)> = Vec::new();
    let drill_status = hosts.run(DRILL_VM, "zpool", &["status", POOL])?;
    let on_copies = (0..4).all(|lun| drill_status.contains(&format!("{DRILL_VM}/scsi1/lun{lun}")));
    println!(
        "zpool status {POOL} on {DRILL_VM}: {}",
        if on_copies {
            "imported from the drill VM's own disks, lun0..3 (copies of production's)"
        } else {
            "NOT on the drill VM's disks"
        }
    );
    proofs.push((
        format!("the drill's pool is imported on {DRILL_VM}, from its copies"),
        on_copies,
    ));
    let drill_home = hosts.path(DRILL_VM, Path::new(HOME_ROOT))?;
    let drill_sums = written.checksums(&drill_home)?;
    let same = written
        .files
        .iter()
        .filter(|file| before.sums.get(*file) == drill_sums.get(*file))
        .count();
    println!(
        "sha256sum on {DRILL_VM}: {same} of {} of production's files, unchanged",
        written.files.len()
    );
    proofs.push((
        format!(
            "{same}/{} of production's files in the drill's pool",
            written.files.len()
        ),
        same == written.files.len(),
    ));
    let drill_records = dig_all(bind, &DRILL_RECORDS)?;
    println!("dig of the drill's records: {drill_records:?}");
    proofs.push((
        "the drill's records answer, with the drill's own address".into(),
        drill_records.values().all(|answer| {
            answer.len() == 1
                && !before
                    .records
                    .values()
                    .any(|production| production == answer)
        }),
    ));
    let during = production_view(&simulator, &hosts, bind, ca, &written)?;
    let during_differences = during.differences(&before);
    for difference in &during_differences {
        println!("  production changed: {difference}");
    }
    println!(
        "production while the drill stands: {}",
        if during_differences.is_empty() {
            "files, pool, records, hub and resources as they were"
        } else {
            "CHANGED"
        }
    );
    let ferry_says_untouched = report["production_untouched"] == true;
    println!(
        "ferry's own comparison of production's readings: {}",
        if ferry_says_untouched {
            "untouched"
        } else {
            "CHANGED"
        }
    );

    section("ferry drill --clean: everything the drill made is removed, and proven gone");
    ok(&mut story.with_variables(&["drill", "data100", "--clean"]))?;
    let leftovers = drill_leftovers(&simulator, &hosts, bind)?;
    println!(
        "the drill's resources left (the simulator's groups and resources, BIND's records, the drill VM's host): {leftovers}"
    );
    let after = production_view(&simulator, &hosts, bind, ca, &written)?;
    let after_differences = after.differences(&before);
    for difference in &after_differences {
        println!("  production changed: {difference}");
    }
    let production_untouched =
        during_differences.is_empty() && after_differences.is_empty() && ferry_says_untouched;
    proofs.push((
        "production untouched while the drill stood and after it (checksums, zpool, dig, hub, the simulator's etags)".into(),
        production_untouched,
    ));
    proofs.push(("nothing of the drill left".into(), leftovers == 0));

    let build_plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("build.plan"))
            .context("cannot read the saved build plan")?,
    )
    .context("the saved build plan is not JSON")?;
    let recovery = measured_recovery(&build_plan, &drill_step_times(&report))?;
    let estimated = report["estimated_rto_seconds"].as_f64().unwrap_or_default();
    let here = report["rto_seconds"].as_f64().unwrap_or_default();
    section("Summary");
    for (what, good) in &proofs {
        println!("  [{}] {what}", if *good { "ok" } else { "FAILED" });
    }
    println!(
        "\n  the drill's build (ferry drill --keep): {:.1} s on this machine (simulator clock x{TIME_SCALE})",
        drill_wall.as_secs_f64()
    );
    println!(
        "  time to recovery:  {} (real-world, measured: the simulator's and the stand-ins' paced steps scaled back by 1/{TIME_SCALE}, the rest as measured; {here:.1} s here)",
        minutes(recovery.seconds)
    );
    println!(
        "                     {} (the drill's plan's estimate)",
        minutes(estimated)
    );
    println!(
        "\nThe demo's files: {} (build.plan, drill.svg, sim/state-dump.json)",
        work.display()
    );
    drop(hosts);
    let dump = simulator.stop();
    println!("Simulator state dump: {}", dump.display());
    // The last line, for programs (`tail -1`), whatever the proofs say: it says it too.
    println!(
        "{{\"mode\":\"drill\",\"rto_seconds\":{},\"estimated_rto_seconds\":{},\"production_untouched\":{production_untouched},\"leftovers\":{leftovers}}}",
        recovery.seconds.round() as u64,
        estimated.round() as u64,
    );
    if proofs.iter().any(|(_, good)| !good) {
        bail!("some proofs failed: see the summary above");
    }
    Ok(())
}
