//! `ferry watch` over a fleet in one process: a folder of spec folders, each a copy of data100
//! with its own deployment name, simulated world and plan file. One has its API server down,
//! one has lost its world file (its rounds cannot read), one does not load: the alert of the
//! first arrives labelled with its deployment, the others are reported, and none stops the
//! rest.

mod support;

use std::path::Path;

use ferry_testkit::webhook_receiver::WebhookReceiver;
use support::Scratch;

/// A copy of data100 at `fleet/NAME` whose deployment is called NAME, built in its own world
/// `worlds/NAME.json`.
fn add_deployment(scratch: &Scratch, name: &str) {
    let folder = scratch.path().join("fleet").join(name);
    support::copy_dir(&scratch.spec(), &folder);
    let main = folder.join("main.toml");
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(text.contains("name = \"data100\""), "{text}");
    std::fs::write(
        &main,
        text.replace("name = \"data100\"", &format!("name = \"{name}\"")),
    )
    .unwrap();
    std::fs::create_dir_all(scratch.path().join("worlds")).unwrap();
    let run = scratch.ferry(&[
        "apply",
        &format!("fleet/{name}"),
        "--world",
        &format!("worlds/{name}.json"),
        "--new-world",
        "--auto-approve",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn world_path(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    scratch.path().join("worlds").join(format!("{name}.json"))
}

fn break_api_server(world: &Path) {
    let mut value = support::read_json(world);
    value["unhealthy"]["aks_cluster.hub@g1"] =
        serde_json::Value::from("GET /readyz timed out after 5s");
    std::fs::write(world, value.to_string()).unwrap();
}

#[test]
fn one_watch_follows_a_folder_of_specs_each_on_its_own_and_a_broken_one_stops_none() {
    let scratch = Scratch::new();
    for name in ["alpha", "bravo", "charlie"] {
        add_deployment(&scratch, name);
    }
    break_api_server(&world_path(&scratch, "bravo"));
    std::fs::remove_file(world_path(&scratch, "charlie")).unwrap();
    let unloadable = scratch.path().join("fleet/delta");
    std::fs::create_dir_all(&unloadable).unwrap();
    std::fs::write(unloadable.join("main.toml"), "[deployment\n").unwrap();
    std::fs::create_dir_all(scratch.path().join("plans")).unwrap();
    let receiver = WebhookReceiver::start(Vec::new());

    let run = scratch.ferry(&[
        "watch",
        "fleet",
        "--world",
        "worlds/{deployment}.json",
        "--hold",
        "0s",
        "--interval",
        "10ms",
        "--webhook",
        &receiver.url(),
        "--webhook-format",
        "alertmanager",
        "--plan-on-failure",
        "plans/{deployment}.plan",
        "--max-concurrent-specs",
        "2",
        "--rounds",
        "2",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Only bravo's condition is news, once, labelled with its deployment, its plan its own.
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    let labels = &body["alerts"][0]["labels"];
    assert_eq!(labels["deployment"], "bravo");
    assert_eq!(labels["resource"], "aks_cluster.hub@g1");
    assert_eq!(
        body["alerts"][0]["annotations"]["plan_written"],
        "plans/bravo.plan"
    );
    assert!(scratch.path().join("plans/bravo.plan").exists());
    assert!(!scratch.path().join("plans/alpha.plan").exists());
    assert!(
        run.stdout.starts_with(
            "bravo: aks_cluster.hub@g1: unhealthy (GET /readyz timed out after 5s) at start since "
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);

    // The spec that does not load is said once, before the watch starts, without the others.
    let stderr = &run.stderr;
    let not_watching = "error: not watching fleet/delta: its spec has the problems above; the other specs are watched\n";
    assert!(stderr.contains(not_watching), "{stderr}");
    assert!(
        stderr.contains(
            "Watching 3 deployments (alpha, bravo, charlie), 2 at a time, every 10ms, alerting once a change holds for 0s. Their states are local: this watcher has no peers and always acts. Ctrl-C stops.\n"
        ),
        "{stderr}"
    );
    // The spec whose world cannot be read is said each round, and the others go on.
    for round in 1..=2 {
        let line = format!("error: round {round}: charlie: cannot read the world: ");
        assert!(stderr.contains(&line), "{stderr}");
    }
}

#[test]
fn several_specs_refuse_a_world_or_plan_file_they_would_share() {
    let scratch = Scratch::new();
    support::copy_dir(&scratch.spec(), &scratch.path().join("other"));
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "other",
        "--world",
        "world.json",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: --world world.json would be shared by every spec watched: put {deployment} in it (e.g. --world '{deployment}.json'), which becomes each spec's deployment name\n"
    );
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "other",
        "--world",
        "{deployment}.json",
        "--plan-on-failure",
        "plans/failover.plan",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: --plan-on-failure plans/failover.plan would be shared by every spec watched: put {deployment} in it (e.g. --plan-on-failure 'plans/{deployment}.plan'), which becomes each spec's deployment name\n"
    );
}

#[test]
fn two_specs_of_one_deployment_name_are_refused_for_the_second() {
    let scratch = Scratch::new();
    support::copy_dir(&scratch.spec(), &scratch.path().join("copy"));
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "copy",
        "--world",
        "{deployment}.json",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error: not watching copy: copy names the deployment data100, as another spec watched does: their alerts and plans would mix; give each its own [deployment] name; the other specs are watched\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_watcher_of_a_local_state_says_it_has_no_peers_and_always_acts() {
    let scratch = Scratch::new();
    scratch.build();
    let run = scratch.ferry(&["watch", "data100", "--world", "world.json", "--rounds", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "Watching data100 every 30s, alerting once a change holds for 1m. The state is local: this watcher has no peers and always acts. Ctrl-C stops.\n"
    );
}
