//! The `ferry` binary with its state lost (issue 18, item 1): `.ferry/state.json` moved away in
//! the middle of a failover and after one, on the simulated world (`--world`). The world, not
//! the state, says which generation serves.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Scratch, ferry, read_json};

/// Moves the state file away, as ferry's own error message once suggested.
fn lose_state(folder: &Path) {
    let state = folder.join("data100/.ferry/state.json");
    std::fs::rename(&state, folder.join("state.json.moved-away")).unwrap();
}

const APPLY: [&str; 6] = [
    "apply",
    "data100",
    "--world",
    "world.json",
    "--new-world",
    "--auto-approve",
];

/// The finding, through the binary: data100 at generation 1, its API server down, the
/// failover interrupted right after the disks were attached to `vm.nfs@g2` (generation 2
/// built, `vm.nfs@g1` fenced, the pool exported and not imported yet), and the state moved
/// away. `ferry plan` used to start the fenced VM, update each disk's vm back to it in place and
/// move the pool back; now it finishes the same failover, and `ferry apply` completes it. After
/// that, a second lost state plans "no changes" on generation 2.
#[test]
fn a_state_moved_away_mid_failover_is_rebuilt_from_the_world_by_plan_and_apply() {
    let scratch = Scratch::new();
    let folder = scratch.path();
    let built = ferry(folder, &APPLY);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let generation_1 = read_json(&folder.join("world.json"));
    let mut broken = generation_1.clone();
    broken["unhealthy"]["aks_cluster.hub@g1"] = Value::from("GET /readyz timed out after 5s");
    std::fs::write(folder.join("world.json"), broken.to_string()).unwrap();
    let failed_over = ferry(folder, &APPLY);
    assert_eq!(failed_over.code, 0, "{}", failed_over.stderr);
    let generation_2 = read_json(&folder.join("world.json"));

    // The world as the interrupted apply left it.
    let mut interrupted = broken.clone();
    let instances = interrupted["instances"].as_object_mut().unwrap();
    for (instance, attributes) in generation_2["instances"].as_object().unwrap() {
        let built_in_generation_2 = instance.ends_with("@g2") && !instance.starts_with("hook.");
        if built_in_generation_2 || instance.starts_with("disk.") {
            instances.insert(instance.clone(), attributes.clone());
        }
    }
    instances["vm.nfs@g1"]["power_state"] = Value::from("deallocated");
    instances["zfs_pool.home"]["imported"] = Value::Bool(false);
    assert_eq!(instances["disk.home0"]["vm"], "vm.nfs@g2");
    assert_eq!(instances["zfs_pool.home"]["host"], "vm.nfs@g1");
    std::fs::write(folder.join("world.json"), interrupted.to_string()).unwrap();
    lose_state(folder);

    let planned = ferry(
        folder,
        &["plan", "data100", "--world", "world.json", "--json"],
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    let plan: Value = serde_json::from_str(&planned.stdout).unwrap();
    assert_eq!(plan["failover"]["from_generation"], 1, "{}", planned.stdout);
    assert_eq!(plan["failover"]["to_generation"], 2);
    let steps: Vec<(String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["id"].as_str().unwrap().to_owned(),
                step["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        steps.iter().any(|(id, _)| id == "zfs_pool.home:import"),
        "{steps:?}"
    );
    for (id, action) in &steps {
        assert!(!id.starts_with("disk."), "no disk moves back: {steps:?}");
        assert!(
            !id.contains("@g1") || action == "retire",
            "generation 1 is only retired: {steps:?}"
        );
        assert_ne!(action, "create", "generation 2 exists: {steps:?}");
    }

    let finished = ferry(folder, &APPLY);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("Generation 2 serves."),
        "{}",
        finished.stderr
    );
    let world = read_json(&folder.join("world.json"));
    assert_eq!(world["instances"]["zfs_pool.home"]["host"], "vm.nfs@g2");
    assert_eq!(world["instances"]["disk.home0"]["vm"], "vm.nfs@g2");

    std::fs::remove_file(folder.join("state.json.moved-away")).unwrap();
    lose_state(folder);
    let again = ferry(
        folder,
        &[
            "plan",
            "data100",
            "--world",
            "world.json",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .contains("but the world says generation 2 does"),
        "{}",
        again.stdout
    );

    // A reconcile applied with the state still lost (the new NFS VM deallocated behind ferry's
    // back is started) records the generation the world says serves, not generation 1.
    let mut world = read_json(&folder.join("world.json"));
    world["instances"]["vm.nfs@g2"]["power_state"] = Value::from("deallocated");
    std::fs::write(folder.join("world.json"), world.to_string()).unwrap();
    let started = ferry(folder, &APPLY);
    assert_eq!(started.code, 0, "{}", started.stderr);
    assert!(
        started.stderr.contains("Generation 2 serves."),
        "{}",
        started.stderr
    );
    let state = read_json(&folder.join("data100/.ferry/state.json"));
    assert_eq!(state["active_generation"], 2);
}
