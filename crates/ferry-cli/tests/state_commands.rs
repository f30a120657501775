//! `ferry state list`, `show` and `forget` on data100 built in the simulated world: what the
//! state knows, as a person and a script read it, and forgetting an instance without harm.

mod support;

use serde_json::Value;
use support::Scratch;

fn built() -> Scratch {
    let scratch = Scratch::new();
    scratch.build();
    scratch
}

#[test]
fn list_and_show_say_what_the_state_holds_in_text_and_json() {
    let scratch = built();
    let list = scratch.ferry(&["state", "list", "data100"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    insta::assert_snapshot!("state_list", list.stdout);

    let json = scratch.ferry(&["state", "list", "data100", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let view: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(view["format_version"], "1");
    assert_eq!(view["deployment"], "data100");
    assert_eq!(view["active_generation"], 1);
    assert!(view.get("failover").is_none());
    let instances = view["instances"].as_array().unwrap();
    assert_eq!(
        instances.len(),
        scratch.state()["instances"].as_object().unwrap().len()
    );
    let disk = instances
        .iter()
        .find(|i| i["address"] == "disk.home0")
        .unwrap();
    assert_eq!(
        (disk["role"].as_str(), disk["in_spec"].as_bool()),
        (Some("stateful"), Some(true))
    );

    let show = scratch.ferry(&["state", "show", "data100", "vm.nfs@g1"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    insta::assert_snapshot!("state_show", show.stdout);
    let show_json = scratch.ferry(&["state", "show", "data100", "vm.nfs@g1", "--json"]);
    let instance: Value = serde_json::from_str(&show_json.stdout).unwrap();
    assert_eq!(instance["outputs"]["name"], "data100-nfs-g1");
}

#[test]
fn show_and_forget_refuse_what_the_state_does_not_hold_naming_what_it_does() {
    let scratch = built();
    let missing = scratch.ferry(&["state", "show", "data100", "vm.nfs@g7"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.starts_with(
            "error: vm.nfs@g7 is not in the state; it holds: resource_group.main@g1, "
        ),
        "{}",
        missing.stderr
    );
    let malformed = scratch.ferry(&["state", "forget", "data100", "vm..x", "--auto-approve"]);
    assert_eq!(malformed.code, 1);
    insta::assert_snapshot!("state_forget_malformed", malformed.stderr);
    let before = scratch.state();
    let absent = scratch.ferry(&["state", "forget", "data100", "vm.nfs@g7", "--auto-approve"]);
    assert_eq!(absent.code, 1);
    assert_eq!(scratch.state(), before);
}

/// Forgetting is a cache eviction: the world still says what exists, so the next plan has
/// no changes. Without a terminal to confirm on, nothing is forgotten.
#[test]
fn forget_asks_first_and_the_next_plan_reads_the_world_again() {
    let scratch = built();
    let before = scratch.state();
    let unasked = scratch.ferry(&["state", "forget", "data100", "vm.nfs@g1"]);
    assert_eq!(unasked.code, 1);
    assert!(
        unasked.stdout.starts_with("vm.nfs@g1 (serving)\n"),
        "{}",
        unasked.stdout
    );
    insta::assert_snapshot!("state_forget_without_a_terminal", unasked.stderr);
    assert_eq!(scratch.state(), before);
    assert!(!scratch.lock_path().exists());

    let forgot = scratch.ferry(&["state", "forget", "data100", "vm.nfs@g1", "--auto-approve"]);
    assert_eq!(forgot.code, 0, "{}", forgot.stderr);
    assert!(
        forgot
            .stdout
            .contains("The state no longer holds vm.nfs@g1"),
        "{}",
        forgot.stdout
    );
    assert!(scratch.state()["instances"].get("vm.nfs@g1").is_none());
    assert!(!scratch.lock_path().exists(), "forget gives its lock back");
    assert!(
        scratch.world()["instances"].get("vm.nfs@g1").is_some(),
        "the VM is untouched"
    );

    let plan = scratch.ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
}

/// A failover in progress still moves its stateful instances: forgetting one is refused, a
/// replaceable instance may go, and `list` says a failover is in progress.
#[test]
fn a_stateful_instance_cannot_be_forgotten_while_a_failover_is_in_progress() {
    let scratch = built();
    let state_path = scratch.path().join("data100/.ferry/state.json");
    let mut state = scratch.state();
    state["failover"] = serde_json::json!({
        "from_generation": 1,
        "to_generation": 2,
        "trigger": "aks_cluster.hub@g1: GET /readyz timed out after 5s"
    });
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let refused = scratch.ferry(&["state", "forget", "data100", "disk.home0", "--auto-approve"]);
    assert_eq!(refused.code, 1);
    insta::assert_snapshot!("state_forget_refused_mid_failover", refused.stderr);
    assert_eq!(scratch.state(), state);
    assert!(
        !scratch.lock_path().exists(),
        "a refused forget gives its lock back"
    );

    let list = scratch.ferry(&["state", "list", "data100"]);
    assert!(
        list.stdout.contains("Generation 1 serves; a failover to generation 2 is in progress (trigger: aks_cluster.hub@g1: GET /readyz timed out after 5s): ferry apply finishes it."),
        "{}",
        list.stdout
    );
    let replaceable = scratch.ferry(&[
        "state",
        "forget",
        "data100",
        "hook.prod_hub@g1",
        "--auto-approve",
    ]);
    assert_eq!(replaceable.code, 0, "{}", replaceable.stderr);
}
