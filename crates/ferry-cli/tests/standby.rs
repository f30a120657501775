//! The warm standby from the command line (`specs/data100/warm`): the first apply builds
//! generation 1 and the standby, `ferry plan` and `ferry state list` show it and what it
//! costs, a failover moves onto it, and the next apply builds the next standby.

mod support;

use support::{Run, Scratch, ferry_ok, of_generation, section};

const SPEC: &str = "data100/warm";

fn apply(scratch: &Scratch) -> Run {
    ferry_ok(
        scratch,
        &["apply", SPEC, "--world", "world.json", "--auto-approve"],
    )
}

#[test]
fn a_warm_standby_is_built_shown_used_by_the_failover_and_built_again() {
    let scratch = Scratch::new();
    let first = ferry_ok(
        &scratch,
        &[
            "apply",
            SPEC,
            "--world",
            "world.json",
            "--new-world",
            "--auto-approve",
        ],
    );
    // The standby's steps do not make generation 2 the serving one.
    assert!(
        first.stderr.contains("Generation 1 serves."),
        "{}",
        first.stderr
    );
    assert_eq!(of_generation(&scratch, 2).len(), 8);
    let state = support::read_json(&scratch.spec().join("warm/.ferry/state.json"));
    assert_eq!(state["active_generation"], 1);

    let plan = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    insta::assert_snapshot!("warm_standby_kept", plan.stdout);
    let list = ferry_ok(&scratch, &["state", "list", SPEC]);
    let standby: Vec<&str> = list
        .stdout
        .lines()
        .filter(|line| line.contains("warm standby"))
        .collect();
    assert_eq!(standby.len(), 8, "{}", list.stdout);
    assert!(standby.iter().all(|line| line.contains("@g2")));

    // The API server of generation 1 dies: the failover moves onto the standby.
    scratch.break_api_server(1);
    let failover = scratch.ferry(&["plan", SPEC, "--world", "world.json"]);
    assert_eq!(failover.code, 0, "{}", failover.stderr);
    assert!(
        !failover.stdout.contains("+ create"),
        "the standby is built already:\n{}",
        failover.stdout
    );
    insta::assert_snapshot!(
        "warm_failover_summary",
        format!(
            "{}\n{}",
            failover
                .stdout
                .lines()
                .find(|line| line.starts_with("note:"))
                .unwrap(),
            section(&failover.stdout, "Plan:")
        )
    );
    let applied = apply(&scratch);
    assert!(
        applied.stderr.contains("Generation 2 serves."),
        "{}",
        applied.stderr
    );
    assert!(of_generation(&scratch, 1).is_empty());
    assert!(of_generation(&scratch, 3).is_empty());

    // The next apply builds generation 3's standby, and then nothing is left to do.
    let rebuilt = apply(&scratch);
    assert!(
        rebuilt.stderr.contains("Generation 2 serves."),
        "{}",
        rebuilt.stderr
    );
    assert_eq!(of_generation(&scratch, 3).len(), 8);
    let settled = ferry_ok(&scratch, &["plan", SPEC, "--world", "world.json"]);
    assert!(
        settled
            .stdout
            .contains("Standby: generation 3 (8 resources)"),
        "{}",
        settled.stdout
    );
    assert!(settled.stdout.contains("No changes"), "{}", settled.stdout);
}
