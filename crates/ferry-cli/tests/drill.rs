//! `ferry drill` on the simulated world (issue 17): the failover rehearsed on copies in a drill
//! of its own (its own state, lock and world file), measured and removed; production's world
//! file, state and journal untouched byte for byte. Also `--keep` then `--clean`, the safety
//! pass refusing a drill that would touch production, a real failover taking production's
//! lock while a drill runs, bad input, and a drill killed with SIGKILL in its build and in its
//! clean-up, each removed whole by `ferry drill --clean`.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Run, Scratch, event, ferry_ok, read_journal, step};

const WORLD: &str = "world.drill.json";

/// A scratch copy of data100 with generation 1 built.
fn built() -> Scratch {
    let scratch = Scratch::new();
    scratch.build();
    scratch
}

/// Production's files: what a drill must never change.
fn production_files(scratch: &Scratch) -> Vec<(String, Vec<u8>)> {
    production_files_of(scratch, "data100")
}

/// [`production_files`] of the spec at `spec` in the scratch folder.
fn production_files_of(scratch: &Scratch, spec: &str) -> Vec<(String, Vec<u8>)> {
    [
        "world.json".to_owned(),
        format!("{spec}/.ferry/state.json"),
        format!("{spec}/.ferry/journal.jsonl"),
    ]
    .into_iter()
    .map(|name| {
        let bytes = std::fs::read(scratch.path().join(&name)).unwrap();
        (name, bytes)
    })
    .collect()
}

fn drill(scratch: &Scratch, extra: &[&str]) -> Run {
    let mut arguments = vec!["drill", "data100", "--world", "world.json"];
    arguments.extend_from_slice(extra);
    scratch.ferry(&arguments)
}

/// The instances the drill's world file holds (none when there is no file).
fn drill_instances(scratch: &Scratch) -> Vec<String> {
    let path = scratch.path().join(WORLD);
    if !path.exists() {
        return Vec::new();
    }
    support::read_json(&path)["instances"]
        .as_object()
        .map(|instances| instances.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_drill_builds_the_failover_on_copies_measures_it_removes_it_and_leaves_production_as_it_was() {
    let scratch = built();
    let before = production_files(&scratch);
    let run = drill(&scratch, &["--id", "t1", "--timeline", "drill.svg"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!(
        "drill_report",
        ferry_testkit::without_measurements(&run.stdout)
    );
    // The picture of the drill as it ran: a bar per step.
    let picture = std::fs::read_to_string(scratch.path().join("drill.svg")).unwrap();
    assert!(picture.starts_with("<svg"), "{picture}");
    assert!(picture.contains("ferry drill: data100 (drill t1)"));
    assert!(picture.contains("aks_cluster.hub@g1"));
    // Production's world, state and journal are byte for byte what they were; its lock was
    // never taken.
    assert_eq!(production_files(&scratch), before);
    assert!(!scratch.lock_path().exists());
    // The drill had its own state and journal, and its world holds nothing now.
    let drill_journal = read_journal(&scratch.spec().join(".ferry/drill/journal.jsonl"));
    assert!(
        drill_journal
            .iter()
            .any(|record| event(record) == "step_finished" && step(record) == "disk.home0:create"),
        "the drill's journal holds its steps"
    );
    assert!(
        drill_journal
            .iter()
            .any(|record| step(record) == "disk.home0:delete"),
        "and its clean-up's"
    );
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
    // A second drill runs the same way; its report as JSON, for automation.
    let again = drill(&scratch, &["--id", "t2", "--json"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(production_files(&scratch), before);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["format_version"], "1");
    assert_eq!(report["mode"], "drill");
    assert_eq!(report["drill"], "t2");
    assert!(report["rto_seconds"].as_f64().is_some());
    assert_eq!(report["estimated_rto_seconds"], 2369);
    assert_eq!(report["production_untouched"], true);
    assert_eq!(report["leftovers"], 0);
    assert_eq!(report["steps"].as_array().unwrap().len(), 16);
    assert_eq!(report["steps"][0]["id"], "resource_group.main@g1:create");
    assert_eq!(report["steps"][0]["outcome"], "done");
}

#[test]
fn a_kept_drill_is_marked_as_a_drill_and_clean_removes_it() {
    let scratch = built();
    let before = production_files(&scratch);
    let kept = drill(&scratch, &["--id", "k1", "--keep"]);
    assert_eq!(kept.code, 0, "{}\n{}", kept.stdout, kept.stderr);
    assert!(
        kept.stdout
            .contains("Kept for inspection: remove it with ferry drill SPEC --clean"),
        "{}",
        kept.stdout
    );
    // What the drill built is its own: names marked, tagged, disks copied from production's,
    // hooks told, DNS under drill names.
    let world = support::read_json(&scratch.path().join(WORLD));
    let instances = &world["instances"];
    assert_eq!(
        instances["resource_group.main@g1"]["name"],
        "data100-g1-drill"
    );
    assert_eq!(instances["vm.nfs@g1"]["name"], "data100-nfs-g1-drill");
    assert_eq!(
        instances["aks_cluster.hub@g1"]["dns_prefix"],
        "data100-g1-drill"
    );
    assert_eq!(instances["disk.home0"]["name"], "data100-home0-drill");
    assert_eq!(instances["disk.home0"]["copy_of"], "/memory/disk.home0");
    assert_eq!(instances["disk.home0"]["tags"]["ferry-drill"], "k1");
    assert_eq!(instances["dns_record.prod"]["name"], "hub-drill");
    assert_eq!(instances["hook.prod_hub@g1"]["env"]["FERRY_DRILL"], "1");
    assert_eq!(instances["hook.prod_hub@g1"]["env"]["FERRY_DRILL_ID"], "k1");
    assert_eq!(drill_instances(&scratch).len(), 16);
    assert_eq!(production_files(&scratch), before);

    // A drill kept is not built again.
    let again = drill(&scratch, &["--keep"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("built by an earlier ferry drill (kept, or stopped before its clean-up)"),
        "{}",
        again.stdout
    );

    let clean = drill(&scratch, &["--clean"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    insta::assert_snapshot!(
        "drill_clean",
        ferry_testkit::without_measurements(&clean.stdout)
    );
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
    assert_eq!(production_files(&scratch), before);
    // Nothing left: cleaning again deletes nothing and still proves it.
    let nothing = drill(&scratch, &["--clean"]);
    assert_eq!(nothing.code, 0, "{}", nothing.stderr);
    assert!(
        nothing.stdout.contains("Clean-up: 0 instances deleted"),
        "{}",
        nothing.stdout
    );
}

/// Production holds a record named `hub-drill` (a preview someone made by hand): the drill's
/// `hub` record would be that name, so the safety pass refuses the whole drill before anything
/// is built, naming the step and production's record.
#[test]
fn a_drill_that_would_touch_production_is_refused_before_anything_is_built() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.spec().join("preview.toml"),
        r#"[dns_record.preview]
zone = "${var.domain}"
name = "hub-drill"
type = "A"
ttl = 300
values = ["${public_ip.ingress.address}"]
"#,
    )
    .unwrap();
    scratch.build();
    let before = production_files(&scratch);
    let refused = drill(&scratch, &["--id", "r1"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    insta::assert_snapshot!("drill_refused", refused.stderr);
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
    assert_eq!(production_files(&scratch), before);
}

#[test]
fn bad_input_to_drill_is_explained() {
    let scratch = Scratch::new();
    let mut shown = String::new();
    let mut show = |title: &str, run: Run| {
        assert_eq!(run.code, 1, "{title}: {}", run.stdout);
        shown.push_str(&format!("## {title}\n{}\n", run.stderr.trim_end()));
    };
    // Production never built: nothing to copy.
    show(
        "production not built",
        scratch.ferry(&["drill", "data100", "--world", "world.json", "--new-world"]),
    );
    // A spec with nothing stateful and no failover.
    std::fs::create_dir(scratch.path().join("solo")).unwrap();
    std::fs::write(
        scratch.path().join("solo/main.toml"),
        "[deployment]\nname = \"solo\"\nlocation = \"westeurope\"\n\n[resource_group.main]\nname = \"solo-g${generation}\"\n",
    )
    .unwrap();
    show(
        "nothing to drill",
        scratch.ferry(&["drill", "solo", "--world", "solo.json", "--new-world"]),
    );
    scratch.build();
    show(
        "a bad id",
        scratch.ferry(&[
            "drill",
            "data100",
            "--world",
            "world.json",
            "--id",
            "Drill 1",
        ]),
    );
    show(
        "from a snapshot",
        scratch.ferry(&["drill", "data100", "--observed", "snapshot.json"]),
    );
    show(
        "keep and clean",
        scratch.ferry(&[
            "drill",
            "data100",
            "--world",
            "world.json",
            "--keep",
            "--clean",
        ]),
    );
    insta::assert_snapshot!("drill_bad_input", shown);
}

/// The drill holds its own lock, so a real failover takes production's while a drill runs;
/// the drill sees production's lock taken, aborts its build, removes what it made, reports
/// the cancellation and that production's readings changed under it, and fails.
#[test]
fn a_real_failover_takes_productions_lock_while_a_drill_runs() {
    let scratch = built();
    let child = scratch
        .command(&[
            "drill",
            "data100",
            "--world",
            "world.json",
            "--world-time-scale",
            "0.005",
            "--id",
            "f1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&scratch, |records| {
        records.iter().any(|record| {
            event(record) == "step_started" && step(record) == "aks_cluster.hub@g1:create"
        })
    });
    scratch.break_api_server(1);
    // Slow enough for the drill to see production's lock held (it looks four times a second).
    let failover = ferry_ok(
        &scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--world-time-scale",
            "0.001",
            "--auto-approve",
        ],
    );
    assert!(
        failover.stderr.contains("Generation 2 serves") || failover.stdout.contains("failover"),
        "{}\n{}",
        failover.stdout,
        failover.stderr
    );
    let drilled: Run = child.wait_with_output().unwrap().into();
    assert_eq!(drilled.code, 1, "{}\n{}", drilled.stdout, drilled.stderr);
    assert!(
        drilled
            .stdout
            .contains("The drill was cancelled: production's lock was taken (by "),
        "{}",
        drilled.stdout
    );
    assert!(
        drilled
            .stdout
            .contains("Production's readings changed during the drill"),
        "{}",
        drilled.stdout
    );
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
    assert!(
        drilled.stdout.contains("nothing of the drill is left"),
        "{}",
        drilled.stdout
    );
}

/// Waits until the drill's journal satisfies `reached` (at most two minutes: a failure, never
/// a measurement).
fn wait_for(scratch: &Scratch, reached: impl Fn(&[serde_json::Value]) -> bool) {
    wait_for_in(scratch, "data100", reached);
}

/// [`wait_for`] a drill of the spec at `spec` in the scratch folder.
fn wait_for_in(scratch: &Scratch, spec: &str, reached: impl Fn(&[serde_json::Value]) -> bool) {
    let journal = scratch.path().join(spec).join(".ferry/drill/journal.jsonl");
    let started = Instant::now();
    while !reached(&read_journal(&journal)) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the drill never got there"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a drill with SIGKILL once its journal satisfies `reached`, then recovers as the
/// message says (`ferry force-unlock ID SPEC`, which finds the drill's lock) and cleans:
/// nothing of the drill is left, production is as it was.
fn killed_then_cleaned(reached: impl Fn(&[serde_json::Value]) -> bool) {
    killed_then_cleaned_in("data100", reached);
}

/// [`killed_then_cleaned`] for a drill of the spec at `spec` (`data100/warm`).
fn killed_then_cleaned_in(spec: &str, reached: impl Fn(&[serde_json::Value]) -> bool) {
    let scratch = Scratch::new();
    ferry_ok(
        &scratch,
        &[
            "apply",
            spec,
            "--world",
            "world.json",
            "--new-world",
            "--auto-approve",
        ],
    );
    let before = production_files_of(&scratch, spec);
    let mut child = scratch
        .command(&[
            "drill",
            spec,
            "--world",
            "world.json",
            "--world-time-scale",
            "0.002",
            "--id",
            "c1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_in(&scratch, spec, reached);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !drill_instances(&scratch).is_empty(),
        "the kill left some of the drill"
    );

    let clean_args = ["drill", spec, "--world", "world.json", "--clean"];
    let locked = scratch.ferry(&clean_args);
    assert_eq!(locked.code, 1, "{}", locked.stdout);
    let command = locked
        .stderr
        .split('`')
        .find(|part| part.starts_with("ferry force-unlock "))
        .unwrap_or_else(|| panic!("no advice to unlock: {}", locked.stderr))
        .to_owned();
    let words: Vec<&str> = command.split(' ').skip(1).collect();
    let unlocked = scratch.ferry(&words);
    assert_eq!(unlocked.code, 0, "{}\n{}", unlocked.stdout, unlocked.stderr);

    let clean = scratch.ferry(&clean_args);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert!(
        clean.stdout.contains("nothing of the drill is left"),
        "{}",
        clean.stdout
    );
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
    assert_eq!(production_files_of(&scratch, spec), before);
}

#[test]
fn a_drill_killed_while_it_builds_is_removed_whole_by_clean() {
    killed_then_cleaned(|records| {
        records.iter().any(|record| {
            event(record) == "step_started" && step(record) == "hook.staging_hub@g1:run"
        })
    });
}

#[test]
fn a_drill_killed_during_its_clean_up_is_removed_whole_by_clean() {
    killed_then_cleaned(|records| {
        records
            .iter()
            .filter(|record| event(record) == "step_finished" && step(record).ends_with(":delete"))
            .count()
            >= 3
    });
}

/// A drill on a world with a time scale keeps what it measured (scaled back) beside
/// production's state, one more drill behind each figure each time, and `ferry plan` takes
/// its estimates from them, saying so. A drill on a world that takes no time keeps nothing.
#[test]
fn what_drills_measure_feeds_the_failover_plans_estimates() {
    let scratch = built();
    let figures = scratch.spec().join(".ferry/drill-durations.json");
    let readiness = |scratch: &Scratch| {
        let plan = ferry_ok(scratch, &["plan", "data100", "--world", "world.json"]);
        plan.stdout
            .lines()
            .find(|line| line.starts_with("Failover readiness"))
            .unwrap_or_else(|| panic!("no readiness: {}", plan.stdout))
            .to_owned()
    };
    let estimated = readiness(&scratch);
    let untimed = drill(&scratch, &["--id", "m0"]);
    assert_eq!(untimed.code, 0, "{}", untimed.stderr);
    assert!(!figures.exists());
    assert!(
        !untimed.stdout.contains("Measured durations"),
        "{}",
        untimed.stdout
    );

    for id in ["m1", "m2"] {
        let timed = drill(&scratch, &["--world-time-scale", "0.0005", "--id", id]);
        assert_eq!(timed.code, 0, "{}\n{}", timed.stdout, timed.stderr);
        assert!(
            timed
                .stdout
                .contains("drill-durations.json: ferry plan takes its estimates from them."),
            "{}",
            timed.stdout
        );
    }
    let kept = support::read_json(&figures);
    assert_eq!(kept["format_version"], "1");
    let cluster = &kept["steps"]["aks_cluster.hub:create"];
    assert_eq!(cluster["drills"], 2);
    assert!(cluster["seconds"].as_u64().unwrap() >= 480, "{cluster}");
    // The pool's create in a drill is its import in the failover; a disk's copy is no move.
    assert_eq!(kept["steps"]["zfs_pool.home:import"]["drills"], 2);
    assert!(kept["steps"].get("disk.home0:create").is_none());
    assert!(kept["steps"].get("disk.home0:move").is_none());

    // Readiness's time to recovery is the failover plan's, from the same figures.
    assert_ne!(readiness(&scratch), estimated);
    let plan = ferry_ok(
        &scratch,
        &["plan", "data100", "--world", "world.json", "--failover"],
    );
    assert!(
        plan.stdout
            .contains("take what this deployment's drills measured (up to 2 drills, the last at"),
        "{}",
        plan.stdout
    );
}

/// A drill of a deployment with a warm or a hot standby is staged: it first builds its own
/// copy of production as it stands (the serving generation on copies, the standby beside it,
/// a hot replica seeded from the drill's own primary), then fails that over onto its own
/// standby, which is the failover it measures: the same steps, the same estimate as
/// production's failover plan. Then nothing of it is left, and production is as it was.
#[test]
fn a_drill_of_a_warm_or_hot_standby_rehearses_the_failover_onto_its_own_standby() {
    for (mode, first_step, estimate) in [
        ("warm", "zfs_pool.home:export", "13m 44s"),
        ("hot", "zfs_pool.home:promote", "3m 15s"),
    ] {
        let spec = format!("data100/{mode}");
        let scratch = Scratch::new();
        ferry_ok(
            &scratch,
            &[
                "apply",
                &spec,
                "--world",
                "world.json",
                "--new-world",
                "--auto-approve",
            ],
        );
        let world_before = std::fs::read(scratch.path().join("world.json")).unwrap();
        let run = scratch.ferry(&["drill", &spec, "--world", "world.json", "--id", mode]);
        assert_eq!(run.code, 0, "{mode}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("Staged first: the drill's copy of production as it stands"),
            "{mode}: {}",
            run.stdout
        );
        let first = run
            .stdout
            .lines()
            .find(|line| line.starts_with("  ") && !line.trim_start().starts_with("step"))
            .unwrap();
        assert!(
            first.trim_start().starts_with(first_step),
            "{mode}: {first}"
        );
        assert!(
            run.stdout.contains(&format!(
                "estimated {estimate} by the drill's plan, {estimate} by production's failover plan"
            )),
            "{mode}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("nothing of the drill is left"),
            "{mode}: {}",
            run.stdout
        );
        assert_eq!(drill_instances(&scratch), Vec::<String>::new());
        assert_eq!(
            std::fs::read(scratch.path().join("world.json")).unwrap(),
            world_before,
            "{mode}"
        );
    }
}

#[test]
fn a_staged_drill_killed_in_the_middle_of_its_failovers_disk_moves_is_removed_whole_by_clean() {
    killed_then_cleaned_in("data100/warm", |records| {
        records
            .iter()
            .any(|record| event(record) == "step_finished" && step(record) == "disk.home1:move")
    });
}

/// After a hot failover production's pool serves from its replica's disks: a drill copies
/// those, the side that serves, into its pool's disks.
#[test]
fn a_drill_after_a_hot_failover_copies_the_side_that_serves() {
    let scratch = Scratch::new();
    let apply = |extra: &[&str]| {
        let mut arguments = vec![
            "apply",
            "data100/hot",
            "--world",
            "world.json",
            "--auto-approve",
        ];
        arguments.extend_from_slice(extra);
        ferry_ok(&scratch, &arguments)
    };
    apply(&["--new-world"]);
    scratch.break_api_server(1);
    apply(&[]);
    let world = scratch.world();
    assert_eq!(
        world["instances"]["zfs_pool.home"]["disks"][0],
        "disk.replica0"
    );
    let kept = scratch.ferry(&[
        "drill",
        "data100/hot",
        "--world",
        "world.json",
        "--id",
        "after",
        "--keep",
    ]);
    assert_eq!(kept.code, 0, "{}\n{}", kept.stdout, kept.stderr);
    let drill_world = support::read_json(&scratch.path().join(WORLD));
    assert_eq!(
        drill_world["instances"]["disk.home0"]["copy_of"],
        "/memory/disk.replica0"
    );
    let clean = scratch.ferry(&["drill", "data100/hot", "--world", "world.json", "--clean"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert_eq!(drill_instances(&scratch), Vec::<String>::new());
}
