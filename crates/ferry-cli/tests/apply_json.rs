//! `ferry apply --json`: the plan and every event as JSON lines on stdout, for automation,
//! like `terraform apply -json`; and what it refuses.

mod support;

use serde_json::Value;
use support::Scratch;

#[test]
fn every_stdout_line_is_a_versioned_event_from_the_plan_to_the_end() {
    let scratch = Scratch::new();
    let run = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--auto-approve",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert!(events.iter().all(|event| event["format_version"] == "1"));
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"planned"));
    assert_eq!(names.get(1), Some(&"apply_started"));
    assert_eq!(names.last(), Some(&"apply_finished"));
    let steps = events[0]["plan"]["steps"].as_array().unwrap().len();
    assert_eq!(events[1]["steps"], steps);
    let succeeded = names
        .iter()
        .filter(|name| **name == "step_succeeded")
        .count();
    assert_eq!(succeeded, steps);
    assert_eq!(events.last().unwrap()["counts"]["done"], steps);
    // Times only grow.
    let times: Vec<f64> = events
        .iter()
        .map(|e| e["elapsed_seconds"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    // The human report stays on stderr.
    assert!(run.stderr.contains("Apply complete"), "{}", run.stderr);
}

#[test]
fn json_without_a_way_to_approve_is_refused_before_anything_is_read() {
    let scratch = Scratch::new();
    let run = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--new-world",
        "--json",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(run.stderr, @"error: ferry apply --json cannot ask for a confirmation: pass --auto-approve, or apply a plan saved by ferry plan --out");
    assert!(!scratch.path().join("world.json").exists());
}
