//! The `ferry` binary as an operator uses it: real processes, real files, a simulated world.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Run, Scratch};

#[test]
fn validate_accepts_data100_and_shows_every_problem_of_a_bad_spec() {
    let scratch = Scratch::new();
    let good = scratch.ferry(&["validate", "data100"]);
    assert_eq!(
        (good.code, good.stdout.as_str()),
        (0, "data100 is valid: deployment data100, 16 resources.\n")
    );
    std::fs::write(
        scratch.path().join("bad.toml"),
        "[deployment]\nname = \"bad\"\nlocation = \"westeurope\"\n\n[vm.nfs]\nname = \"nfs_\"\nsize = \"Standard_D4s_v5\"\nresourse_group = \"resource_group.main\"\n",
    )
    .unwrap();
    let bad = scratch.ferry(&["validate", "bad.toml"]);
    assert_eq!(bad.code, 1);
    insta::assert_snapshot!(bad.stderr);
}

/// Terraform's one-dash spelling: clap alone would save the plan to a file named `ut`.
#[test]
fn a_terraform_spelling_is_refused_with_what_to_type_and_writes_nothing() {
    let scratch = Scratch::new();
    let run = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-healthy.json",
        "-out",
        "x.plan",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(run.stderr, @"error: `-out` has one dash, as Terraform spells it; ferry's long options take two: type `--out x.plan`");
    assert!(!scratch.path().join("ut").exists());
    assert!(!scratch.path().join("x.plan").exists());
}

/// `ferry apply --replace`: the cluster is built again in the simulated world and the state
/// records its new outputs; an instance address is refused with the resource to name.
#[test]
fn apply_replace_builds_a_replaceable_resource_again() {
    let scratch = Scratch::new();
    scratch.build();
    let run = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        "--replace",
        "aks_cluster.hub",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("-/+ replace aks_cluster.hub@g1"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("Apply complete"), "{}", run.stderr);
    assert!(scratch.world()["instances"]["aks_cluster.hub@g1"].is_object());
    let again = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(again.code, 0, "{}", again.stdout);

    let instance = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--replace",
        "vm.nfs@g1",
    ]);
    assert_eq!(instance.code, 1);
    assert!(
        instance.stderr.contains(
            "`vm.nfs@g1` names one generation's instance: --replace takes the resource (`vm.nfs`)"
        ),
        "{}",
        instance.stderr
    );
}

#[test]
fn plan_from_snapshots_exits_with_detailed_codes() {
    let scratch = Scratch::new();
    let healthy = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-healthy.json",
        "--detailed-exitcode",
    ]);
    // Every plan that is not a failover says whether the failover would be ready.
    assert_eq!(
        (healthy.code, healthy.stdout.as_str()),
        (
            0,
            "Failover readiness: ready, estimated time to recovery 39m 29s (a failover to generation 2 planned from these readings).\nNo changes: the world matches the spec.\n"
        )
    );
    let down = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-apiserver-down.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(down.code, 2, "{}", down.stderr);
    assert!(
        down.stdout
            .starts_with("Failover from generation 1 to generation 2\n")
    );
    let json = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-apiserver-down.json",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["format_version"], "2");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 34);
    let forced = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-healthy.json",
        "--failover",
        "--detailed-exitcode",
    ]);
    assert_eq!(forced.code, 2);
    assert!(
        forced
            .stdout
            .contains("because --failover (a planned failover: every trigger reads healthy)")
    );
}

#[test]
fn bad_input_on_the_command_line_is_explained() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.path().join("broken.json"),
        "{\"format_version\": \"7\"}",
    )
    .unwrap();
    let cases = [
        vec!["plan", "data100", "--var", "domain"],
        vec![
            "plan",
            "data100",
            "--var",
            "domian=x.org",
            "--observed",
            "data100/observed-healthy.json",
        ],
        vec!["plan", "data100", "--observed", "missing.json"],
        vec!["plan", "data100", "--observed", "broken.json"],
        vec!["show", "data100/main.toml"],
        vec![
            "apply",
            "data100",
            "--observed",
            "data100/observed-healthy.json",
        ],
        vec!["apply", "data100", "--world", "world.json", "--new-world"],
        vec!["plan", "data100", "--world", "mistyped.json"],
        vec!["plan", "data100", "--new-world"],
        vec!["plan", "data100", "--failover", "--no-failover"],
    ];
    let mut shown = String::new();
    for args in cases {
        let run = scratch.ferry(&args);
        // The first line that is not the header naming the deployment.
        let first_line = run
            .stderr
            .lines()
            .find(|line| !line.trim().is_empty() && !line.starts_with("Deployment "))
            .unwrap_or("");
        shown.push_str(&format!(
            "$ ferry {}\nexit {}: {first_line}\n\n",
            args.join(" "),
            run.code
        ));
    }
    insta::assert_snapshot!(shown);
}

#[test]
fn build_failover_and_replan_through_a_saved_plan() {
    let scratch = Scratch::new();
    scratch.build();
    assert_eq!(scratch.state()["active_generation"], 1);
    assert!(!scratch.lock_path().exists(), "the lock is released");
    let again = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);

    scratch.break_api_server(1);
    let plan = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "-o",
        "failover.plan",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    assert_eq!(
        plan.stderr,
        "Deployment data100, generation 1 serves, state at data100/.ferry.\nSaved the plan to failover.plan: apply exactly it with `ferry apply failover.plan`.\n"
    );
    // `ferry show` prints the same plan after a line saying where, by whom and when.
    let show = scratch.ferry(&["show", "failover.plan"]);
    let (header, shown) = show.stdout.split_once("\n\n").unwrap();
    assert!(
        header.starts_with("Saved plan for deployment data100 from /"),
        "{header}"
    );
    assert_eq!(shown, plan.stdout);

    let apply = scratch.ferry(&[
        "apply",
        "failover.plan",
        "--world",
        "world.json",
        "--timeline",
        "applied.svg",
    ]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let drawn = std::fs::read_to_string(scratch.path().join("applied.svg")).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("zfs_pool.home") && drawn.contains("(done)")
    );
    assert!(
        apply
            .stderr
            .ends_with("Apply complete: 34 done in 0s. Generation 2 serves.\n"),
        "{}",
        apply.stderr
    );
    assert_eq!(scratch.state()["active_generation"], 2);
    let world = scratch.world();
    assert!(
        world["instances"].get("aks_cluster.hub@g1").is_none(),
        "the old cluster is retired"
    );
    assert_eq!(world["instances"]["disk.home0"]["vm"], "vm.nfs@g2");
    assert_eq!(
        world["instances"]["disk.home0"]["resource_group"],
        "resource_group.main@g2"
    );
    let after = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(after.code, 0, "{}", after.stdout);
}

#[test]
fn a_saved_plan_is_refused_once_the_world_changed() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let plan = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "-o",
        "failover.plan",
    ]);
    assert_eq!(plan.code, 0);
    let mut world = scratch.world();
    world["instances"]["disk.home2"]["size_gb"] = serde_json::Value::from(2048);
    world["unhealthy"] = serde_json::json!({});
    scratch.set_world(&world);
    let apply = scratch.ferry(&["apply", "failover.plan", "--world", "world.json"]);
    assert_eq!(apply.code, 1);
    let (header, refusal) = apply.stderr.split_at(apply.stderr.find("error:").unwrap());
    assert!(
        header.contains("Applying the plan saved in failover.plan by "),
        "{header}"
    );
    insta::assert_snapshot!(refusal);
}

#[test]
fn the_lock_keeps_a_second_apply_out_until_force_unlock() {
    let scratch = Scratch::new();
    scratch.build();
    let lock = scratch.lock_path();
    let write_lock = |pid: u32, expires: &str| {
        std::fs::write(
            &lock,
            serde_json::json!({
                "id": "lock-test-1",
                "holder": "alice",
                "pid": pid,
                "host": ferry_state::lock::this_host(),
                "operation": "apply",
                "started_at": "2026-11-29T10:00:00Z",
                "expires_at": expires,
            })
            .to_string(),
        )
        .unwrap();
    };
    // A live holder: this test process.
    write_lock(std::process::id(), "2999-01-01T00:00:00Z");
    let held = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(held.code, 1);
    let message = held
        .stderr
        .replace(&lock.display().to_string(), "LOCK")
        .replace(&std::process::id().to_string(), "PID")
        .replace(&ferry_state::lock::this_host(), "HOST");
    insta::assert_snapshot!("held", message);
    // A dead holder: reported as stale, never taken over silently.
    write_lock(4_000_000, "2999-01-01T00:00:00Z");
    let stale = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(stale.code, 1);
    let message = stale
        .stderr
        .replace(&lock.display().to_string(), "LOCK")
        .replace(&ferry_state::lock::this_host(), "HOST");
    insta::assert_snapshot!("stale", message);
    let wrong = scratch.ferry(&["force-unlock", "lock-test-2", "data100"]);
    assert_eq!(wrong.code, 1);
    assert!(
        wrong
            .stderr
            .contains("not lock-test-2: nothing was unlocked"),
        "{}",
        wrong.stderr
    );
    let right = scratch.ferry(&["force-unlock", "lock-test-1", "data100"]);
    assert_eq!(right.code, 0, "{}", right.stderr);
    assert!(!lock.exists());
    let apply = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--auto-approve",
    ]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
}

#[test]
fn apply_asks_before_changing_anything() {
    let scratch = Scratch::new();
    let run = scratch.ferry(&["apply", "data100", "--world", "world.json", "--new-world"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("Plan: 13 to create, 2 to run, 1 to wait (16 steps).")
    );
    assert!(
        run.stderr
            .contains("stdin is not a terminal: review the plan, then pass --auto-approve"),
        "{}",
        run.stderr
    );
    assert!(
        !scratch.path().join("world.json").exists()
            || scratch.world()["instances"].as_object().unwrap().is_empty()
    );
}

/// Sends SIGINT to a running `ferry apply` once it has started steps; returns its output.
fn interrupt(scratch: &Scratch, args: &[&str], signals: usize) -> Run {
    let child = scratch
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = scratch.path().join("data100/.ferry/journal.jsonl");
    let start = Instant::now();
    // Wait until a step is under way (the journal records its start), then interrupt.
    while start.elapsed() < Duration::from_secs(60) {
        let started = std::fs::read_to_string(&journal).unwrap_or_default();
        if started.matches("step_started").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..signals {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(200));
    }
    Run::from(child.wait_with_output().unwrap())
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_apply_resumes() {
    let scratch = Scratch::new();
    let args = [
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--auto-approve",
        "--world-time-scale",
        "0.004",
    ];
    let stopped = interrupt(&scratch, &args, 1);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("Stopping: no new step starts; running steps finish."),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("Run `ferry apply data100` again to resume"),
        "{}",
        stopped.stderr
    );
    assert!(!scratch.lock_path().exists(), "the lock is released");
    assert_eq!(
        scratch.state()["active_generation"],
        0,
        "the build is not complete"
    );

    let resumed = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stdout.contains("to create"),
        "only the rest is planned: {}",
        resumed.stdout
    );
    assert!(
        !resumed.stdout.contains("create resource_group.main@g1"),
        "{}",
        resumed.stdout
    );
    assert_eq!(scratch.state()["active_generation"], 1);
    let after = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(after.code, 0, "{}", after.stdout);
}

#[test]
fn a_second_ctrl_c_aborts_running_steps_and_the_next_apply_resumes() {
    let scratch = Scratch::new();
    let args = [
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--auto-approve",
        "--world-time-scale",
        "0.05",
    ];
    let aborted = interrupt(&scratch, &args, 2);
    assert_eq!(aborted.code, 1, "{}", aborted.stderr);
    assert!(
        aborted.stderr.contains("Aborting the running steps."),
        "{}",
        aborted.stderr
    );
    assert!(aborted.stderr.contains("interrupted"), "{}", aborted.stderr);
    let resumed = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let after = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(after.code, 0, "{}", after.stdout);
}

#[test]
fn graph_prints_the_spec_and_the_plan_as_dot() {
    let scratch = Scratch::new();
    let spec = scratch.ferry(&["graph", "data100"]);
    assert_eq!(spec.code, 0);
    insta::assert_snapshot!(spec.stdout);
    let plan = scratch.ferry(&[
        "graph",
        "data100",
        "--plan",
        "--observed",
        "data100/observed-apiserver-down.json",
    ]);
    assert_eq!(plan.code, 0);
    assert!(plan.stdout.starts_with("digraph plan {"));
    assert!(
        plan.stdout
            .contains("\"vm.nfs@g1:fence\" -> \"disk.home0:detach\"")
    );
    // The cluster comes after the group through the network: that edge is not drawn again.
    assert!(
        plan.stdout
            .contains("\"vnet.main@g2:create\" -> \"aks_cluster.hub@g2:create\"")
    );
    assert!(
        !plan
            .stdout
            .contains("\"resource_group.main@g2:create\" -> \"aks_cluster.hub@g2:create\""),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("  legend [shape=plaintext"));
    let edges = plan.stdout.matches(" -> ").count();
    assert_eq!(
        edges, 52,
        "63 edges in the plan, 15 implied by others, 4 through the retirements' gate"
    );
    assert!(
        plan.stdout
            .contains("\"check.prod_tls:wait\" -> \"every other step done\"")
    );
}

#[test]
fn observe_writes_a_snapshot_that_plans_like_the_live_read() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let observed = scratch.ferry(&["observe", "data100", "--world", "world.json"]);
    assert_eq!(observed.code, 0, "{}", observed.stderr);
    std::fs::write(scratch.path().join("snapshot.json"), &observed.stdout).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&observed.stdout).unwrap();
    assert_eq!(snapshot["active_generation"], 1);
    assert_eq!(
        snapshot["resources"]["aks_cluster.hub@g1"]["health"]["state"],
        "unhealthy"
    );
    let live = scratch.ferry(&["plan", "data100", "--world", "world.json", "--json"]);
    let from_file = scratch.ferry(&["plan", "data100", "--observed", "snapshot.json", "--json"]);
    assert_eq!(live.stdout, from_file.stdout);
}

/// A webhook receiver on loopback that keeps the body of every POST.
struct Receiver {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock().unwrap().push(String::from_utf8(body).unwrap());
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { url, bodies }
    }

    /// Waits (bounded) until `count` alerts arrived, and returns them all.
    fn wait_for(&self, count: usize) -> Vec<serde_json::Value> {
        let start = Instant::now();
        while self.bodies.lock().unwrap().len() < count && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect()
    }
}

impl Scratch {
    /// Replaces the world file in one rename, so that a concurrent reader never sees half.
    fn set_world_atomically(&self, world: &serde_json::Value) {
        let temporary = self.path().join("world.json.new");
        std::fs::write(&temporary, world.to_string()).unwrap();
        std::fs::rename(temporary, self.path().join("world.json")).unwrap();
    }
}

#[test]
fn watch_alerts_once_per_change_and_writes_the_failover_plan() {
    let scratch = Scratch::new();
    scratch.build();
    let receiver = Receiver::start();
    let child = scratch
        .command(&[
            "watch",
            "data100",
            "--world",
            "world.json",
            "--interval",
            "50ms",
            "--hold",
            "0s",
            "--webhook",
            &receiver.url,
            "--plan-on-failure",
            "failover.plan",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.wait_for(0).is_empty(), "a healthy start is silent");

    let healthy = scratch.world();
    let mut down = healthy.clone();
    down["unhealthy"]["aks_cluster.hub@g1"] =
        serde_json::Value::from("GET /readyz timed out after 5s");
    scratch.set_world_atomically(&down);
    let alerts = receiver.wait_for(1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["resource"], "aks_cluster.hub@g1");
    assert_eq!(alerts[0]["old"]["state"], "healthy");
    assert_eq!(alerts[0]["new"]["reason"], "GET /readyz timed out after 5s");
    assert_eq!(alerts[0]["plan_written"], "failover.plan");
    // The plan it wrote is the one `ferry plan` makes.
    let plan = scratch.ferry(&["plan", "data100", "--world", "world.json", "--json"]);
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path().join("failover.plan")).unwrap(),
    )
    .unwrap();
    let planned: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(written["plan"], planned);

    scratch.set_world_atomically(&healthy);
    let alerts = receiver.wait_for(2);
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        receiver.wait_for(2).len(),
        2,
        "exactly one alert per change: {alerts:?}"
    );
    assert_eq!(alerts[1]["new"]["state"], "healthy");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(printed.lines().count(), 2, "{printed}");
}

#[test]
fn watch_refuses_auto_apply_without_an_automatic_policy() {
    let scratch = Scratch::new();
    let main = scratch.path().join("data100/main.toml");
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("mode = \"automatic\"", "mode = \"manual\"");
    std::fs::write(&main, text).unwrap();
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "--world",
        "world.json",
        "--plan-on-failure",
        "p.plan",
        "--auto-apply",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: --auto-apply needs the spec's failover mode to be automatic: set mode = \"automatic\" in [failover], or review the plan and apply it yourself\n"
    );
}

#[test]
fn watch_with_auto_apply_fails_over_on_its_own() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "--world",
        "world.json",
        "--hold",
        "0s",
        "--plan-on-failure",
        "failover.plan",
        "--auto-apply",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(
            "aks_cluster.hub@g1: unhealthy (GET /readyz timed out after 5s) at start since "
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("; ferry applies the failover plan it wrote to failover.plan"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("Generation 2 serves."),
        "{}",
        run.stderr
    );
    assert_eq!(scratch.state()["active_generation"], 2);
}

#[test]
fn a_plan_that_repoints_most_of_a_zone_needs_force() {
    let scratch = Scratch::new();
    let mut spec = String::from(
        "[deployment]\nname = \"zone\"\nlocation = \"westeurope\"\n\n[zones.\"example.org\"]\nbackend = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key_name = \"ferry\"\ntsig_secret_env = \"TSIG\"\n\n",
    );
    let mut resources = serde_json::Map::new();
    for index in 0..10 {
        spec.push_str(&format!(
            "[dns_record.r{index}]\nzone = \"example.org\"\nname = \"host{index}\"\ntype = \"A\"\nvalues = [\"192.0.2.{index}\"]\n\n"
        ));
        resources.insert(
            format!("dns_record.r{index}"),
            serde_json::json!({
                "status": "present",
                "health": {"state": "healthy"},
                "attributes": {
                    "zone": "example.org", "name": format!("host{index}"), "type": "A", "ttl": 300,
                    "values": [if index < 4 { "198.51.100.1".to_owned() } else { format!("192.0.2.{index}") }],
                    "managed": true,
                },
            }),
        );
    }
    std::fs::write(scratch.path().join("zone.toml"), spec).unwrap();
    let snapshot =
        serde_json::json!({"format_version": "1", "active_generation": 1, "resources": resources});
    std::fs::write(scratch.path().join("zone.json"), snapshot.to_string()).unwrap();
    let refused = scratch.ferry(&["plan", "zone.toml", "--observed", "zone.json"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        "error: the plan changes or deletes more than 30% of a zone's managed DNS records (zone `example.org`: 4 of 10 managed records (40%)): check the spec's values, then plan again with --force if the change is meant\n"
    );
    let forced = scratch.ferry(&[
        "plan",
        "zone.toml",
        "--observed",
        "zone.json",
        "--force",
        "--detailed-exitcode",
    ]);
    assert_eq!(forced.code, 2, "{}", forced.stderr);
    assert!(
        forced.stdout.contains("Plan: 4 to update (4 steps)."),
        "{}",
        forced.stdout
    );
}

#[test]
fn a_hook_with_a_relative_program_runs_from_the_spec_folder_whatever_the_current_folder() {
    let scratch = Scratch::new();
    let spec = scratch.path().join("hooked");
    std::fs::create_dir_all(spec.join("hooks")).unwrap();
    std::fs::write(
        spec.join("main.toml"),
        "[deployment]\nname = \"hooked\"\nlocation = \"westeurope\"\n\n[hook.hello]\ncommand = [\"./hooks/hello.sh\"]\noutputs = [\"folder\"]\n",
    )
    .unwrap();
    std::fs::write(
        spec.join("hooks/hello.sh"),
        "#!/bin/sh\nprintf '{\"folder\": \"%s\"}\\n' \"$(basename \"$(pwd)\")\"\n",
    )
    .unwrap();
    let chmod = Command::new("chmod")
        .args(["+x", &spec.join("hooks/hello.sh").display().to_string()])
        .status()
        .unwrap();
    assert!(chmod.success());
    let run = scratch.ferry(&["apply", "hooked", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec.join(".ferry/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["instances"]["hook.hello@g1"]["outputs"]["folder"],
        "hooked"
    );
}

/// Issue 18: `force-unlock` of a holder that still runs used to succeed, and a second apply
/// then ran the same steps beside the first, which noticed only at its end and exited 0. Now
/// the running holder's lock is refused without `--force-alive`; with it, no second apply gets
/// in while the holder lives (its OS lock), and the holder stops before its next step and fails.
#[test]
fn a_running_applys_lock_is_broken_only_with_force_alive_and_that_apply_then_fails() {
    let scratch = Scratch::new();
    let apply = [
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--auto-approve",
        "--world-time-scale",
        "0.05",
    ];
    let holder = scratch
        .command(&apply)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = scratch.path().join("data100/.ferry/journal.jsonl");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60)
        && !std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .contains("step_started")
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.lock_path()).unwrap()).unwrap();
    let id = lock["id"].as_str().unwrap().to_owned();
    let hide = |text: &str| {
        text.replace(&id, "ID")
            .replace(&format!("pid {}", holder.id()), "pid PID")
            .replace(&format!("kill {}", holder.id()), "kill PID")
            .replace(&ferry_state::lock::this_host(), "HOST")
            .replace(lock["holder"].as_str().unwrap(), "USER")
            .replace(lock["started_at"].as_str().unwrap(), "TIME")
    };
    let second = scratch.ferry(&apply);
    assert_eq!(second.code, 1, "{}", second.stderr);
    insta::assert_snapshot!(hide(&second.stderr), @"error: data100/.ferry/lock.json is locked by USER@HOST (pid PID) for `apply` since TIME, and that process still runs (it holds the lock file open): wait for it to finish (`--lock-timeout 10m` waits), or stop that process; its lock frees itself when it ends");
    let refused = scratch.ferry(&["force-unlock", &id, "data100"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    insta::assert_snapshot!(hide(&refused.stderr), @"error: data100/.ferry/lock.json is locked by USER@HOST (pid PID) for `apply` since TIME, and that process still runs on this host: nothing was unlocked, since breaking a running apply's lock lets a second apply run the same steps at once; wait for it to finish or stop it (kill PID); if you really mean to take the lock from it, run `ferry force-unlock ID data100 --force-alive`, and it stops before its next step");
    let broken = scratch.ferry(&["force-unlock", &id, "data100", "--force-alive"]);
    assert_eq!(broken.code, 0, "{}", broken.stderr);
    // The holder still runs, and holds its process lock: still no second apply.
    let still = scratch.ferry(&apply);
    assert_eq!(still.code, 1, "{}", still.stderr);
    assert!(
        still.stderr.contains("that process still runs"),
        "{}",
        still.stderr
    );
    let output = holder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("Apply complete"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "our lock {id} on data100/.ferry/lock.json is gone or was replaced"
        )),
        "{stderr}"
    );
    // Once it ended, the next apply finishes the build.
    let resumed = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
}

/// Failover readiness (issue 18): `ferry plan` shows it beside a plan that is not a failover,
/// and `ferry watch` alerts once when it is lost and once when it comes back, while every
/// resource reads healthy. The blocker: the pool reads a fifth vdev on a disk the spec does
/// not list, which would only stop the failover itself.
#[test]
fn plan_shows_failover_readiness_and_watch_alerts_when_it_is_lost_and_back() {
    let scratch = Scratch::new();
    scratch.build();
    let ready = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(ready.code, 0, "{}{}", ready.stdout, ready.stderr);
    assert!(
        ready
            .stdout
            .contains("Failover readiness: ready, estimated time to recovery"),
        "{}",
        ready.stdout
    );
    let healthy = scratch.world();
    let mut blocked = healthy.clone();
    blocked["instances"]["zfs_pool.home"]["vdevs"] = (0..5)
        .map(|lun| serde_json::json!({"path": format!("/dev/disk/azure/scsi1/lun{lun}"), "state": "ONLINE"}))
        .collect();
    scratch.set_world(&blocked);
    let plan = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        plan.code, 5,
        "attention needed: {}{}",
        plan.stdout, plan.stderr
    );
    assert!(
        plan.stdout.contains("Failover readiness: NOT READY"),
        "{}",
        plan.stdout
    );
    let json = scratch.ferry(&["plan", "data100", "--world", "world.json", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["readiness"]["ready"], false);
    assert_eq!(json["readiness"]["blockers"][0]["address"], "zfs_pool.home");
    scratch.set_world(&healthy);

    let receiver = Receiver::start();
    let child = scratch
        .command(&[
            "watch",
            "data100",
            "--world",
            "world.json",
            "--interval",
            "50ms",
            "--hold",
            "0s",
            "--webhook",
            &receiver.url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.wait_for(0).is_empty(), "a ready start is silent");
    scratch.set_world_atomically(&blocked);
    let alerts = receiver.wait_for(1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["alert"], "failover_readiness");
    assert_eq!(alerts[0]["ready"], false);
    assert_eq!(alerts[0]["blockers"][0]["address"], "zfs_pool.home");
    scratch.set_world_atomically(&healthy);
    let alerts = receiver.wait_for(2);
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        receiver.wait_for(2).len(),
        2,
        "one alert per change: {alerts:?}"
    );
    assert_eq!(alerts[1]["ready"], true);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed
            .lines()
            .next()
            .is_some_and(|line| line.starts_with("failover readiness lost")),
        "{printed}"
    );
}

/// Issue 18: a kill in the middle of a journal append leaves a torn last line; the next apply
/// appended after it, and the apply after that refused the journal. The fragment is cut off
/// when the journal is opened, so both applies work.
#[test]
fn a_torn_last_journal_line_never_poisons_the_applies_after_it() {
    let scratch = Scratch::new();
    scratch.build();
    let journal = scratch.path().join("data100/.ferry/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(r#"{"event":"step_started","apply_id":"x","st"#);
    std::fs::write(&journal, text).unwrap();
    let mut world = scratch.world();
    world["unhealthy"] = serde_json::json!({"aks_cluster.hub@g1": "readyz timed out"});
    scratch.set_world(&world);
    let failover = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(failover.code, 0, "{}", failover.stderr);
    let again = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
    );
}

/// Issue 18: a saved plan applied from another folder failed ("cannot read data100"): it now
/// records its spec's absolute path, and who made it, when and with which ferry, which `ferry
/// show` prints.
#[test]
fn a_saved_plan_applies_from_another_folder_and_says_who_made_it() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let plan = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "-o",
        "failover.plan",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let elsewhere = scratch.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let in_elsewhere = |args: &[&str]| support::ferry(&elsewhere, args);
    let show = in_elsewhere(&["show", "../failover.plan"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path().join("failover.plan")).unwrap(),
    )
    .unwrap();
    let header = show.stdout.lines().next().unwrap().replace(
        &scratch.path().canonicalize().unwrap().display().to_string(),
        "<scratch>",
    );
    let header = header
        .replace(&scratch.path().display().to_string(), "<scratch>")
        .replace(saved["author"].as_str().unwrap(), "<user@host>")
        .replace(saved["created_at"].as_str().unwrap(), "<time>");
    insta::assert_snapshot!(header, @"Saved plan for deployment data100 from <scratch>/data100, made by <user@host> at <time> with ferry 0.1.0.");
    let apply = in_elsewhere(&["apply", "../failover.plan", "--world", "../world.json"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    // No confirmation comes first: the header says which deployment and which plan.
    let header: Vec<String> = apply
        .stderr
        .lines()
        .take(2)
        .map(|line| {
            line.replace(
                &scratch.path().canonicalize().unwrap().display().to_string(),
                "<scratch>",
            )
            .replace(saved["author"].as_str().unwrap(), "<user@host>")
            .replace(saved["created_at"].as_str().unwrap(), "<time>")
        })
        .collect();
    insta::assert_snapshot!(header.join("\n"), @r"
    Deployment data100, generation 1 serves, state at <scratch>/data100/.ferry.
    Applying the plan saved in ../failover.plan by <user@host> at <time>.
    ");
}

/// Issue 18: a state folder ferry cannot use showed the OS error twice (once in ferry's message,
/// once as its cause). Each cause is now said once. (The tests run as root, which permissions
/// do not stop, so the folder is a file here.)
#[test]
fn a_state_folder_ferry_cannot_use_is_named_with_its_error_once() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path().join("data100/.ferry"), "not a folder").unwrap();
    let run = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    insta::assert_snapshot!(run.stderr, @"error: cannot create the folder of lock file data100/.ferry/lock.json: File exists (os error 17)");
}

/// Against a simulator that runs faster than Azure, `--estimates-scale` scales what the progress
/// compares with; a share that is not one is refused before anything runs.
#[test]
fn estimates_scale_follows_a_faster_simulator_and_refuses_a_share_that_is_not_one() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let refused = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        "--estimates-scale",
        "0",
    ]);
    assert_eq!(refused.code, 1);
    insta::assert_snapshot!(refused.stderr, @"error: --estimates-scale 0 is not a share of the estimates: give a number above 0, such as 0.01");
    assert_eq!(scratch.state()["active_generation"], 1);
    let applied = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        "--estimates-scale",
        "0.001",
    ]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        applied
            .stderr
            .contains(", estimated 2.4s: every step but the old generation's retirement is done"),
        "{}",
        applied.stderr
    );
}
