//! Keeping the generation a failover leaves (`[failover] retire_old`, `--retire-old`): the
//! plan and `ferry state list` say what is kept, until when and what it costs; a later apply
//! retires it; the fenced VM stays fenced meanwhile.

mod support;

use serde_json::Value;
use support::{Run, Scratch, ferry_ok, instances, of_generation, section};

/// data100 built in the simulated world, with `retire_old` set in its `[failover]` block.
fn built_keeping(retire_old: &str) -> Scratch {
    let scratch = Scratch::new();
    let main = scratch.spec().join("main.toml");
    let text = std::fs::read_to_string(&main).unwrap().replace(
        "triggers = [\"aks_cluster.hub\"]\n",
        &format!("triggers = [\"aks_cluster.hub\"]\nretire_old = \"{retire_old}\"\n"),
    );
    std::fs::write(&main, text).unwrap();
    scratch.build();
    scratch
}

/// `ferry apply --retire-old now`: what an operator runs to retire a kept generation.
fn retire_now(scratch: &Scratch) -> Run {
    ferry_ok(
        scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--retire-old",
            "now",
            "--auto-approve",
        ],
    )
}

/// The failover the broken API server of `generation` calls for, applied.
fn fail_over(scratch: &Scratch, generation: u32) -> Run {
    scratch.break_api_server(generation);
    ferry_ok(
        scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--auto-approve",
        ],
    )
}

/// Times vary from run to run: each RFC 3339 time reads TIME.
fn timeless(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("2026-").or_else(|| rest.find("2027-")) {
        out.push_str(&rest[..at]);
        let time = &rest[at..];
        let end = time.find('Z').map_or(time.len(), |z| z + 1);
        out.push_str("TIME");
        rest = &time[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_generation_kept_until_asked_stays_fenced_until_an_apply_retires_it() {
    let scratch = built_keeping("when-asked");
    scratch.break_api_server(1);
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    assert!(
        !plan.stdout.contains("retire "),
        "a kept generation gets no retire step:\n{}",
        plan.stdout
    );
    insta::assert_snapshot!(
        "failover_keeping_generation_1",
        format!(
            "{}{}",
            section(&plan.stdout, "Plan:"),
            section(&plan.stdout, "Kept:")
        )
    );

    fail_over(&scratch, 1);
    assert_eq!(
        of_generation(&scratch, 1).len(),
        8,
        "{:?}",
        instances(&scratch)
    );
    let world = scratch.world();
    assert_eq!(
        world["instances"]["vm.nfs@g1"]["power_state"], "deallocated",
        "the old NFS VM is fenced"
    );
    let state = scratch.state();
    assert_eq!(state["active_generation"], 2);
    assert!(
        state["stood_down"]["1"].as_str().is_some(),
        "the state records when generation 1 stopped serving: {state}"
    );

    // An ordinary apply keeps it, and does not start the fenced VM.
    let apply = ferry_ok(
        &scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--auto-approve",
        ],
    );
    assert!(
        apply.stdout.contains("No changes"),
        "{}{}",
        apply.stdout,
        apply.stderr
    );
    assert_eq!(
        scratch.world()["instances"]["vm.nfs@g1"]["power_state"],
        "deallocated"
    );
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    insta::assert_snapshot!("kept_after_the_failover", section(&plan.stdout, "Kept:"));
    let list = ferry_ok(&scratch, &["state", "list", "data100"]);
    insta::assert_snapshot!(
        "state_list_kept",
        timeless(section(&list.stdout, "Generation 1 ("))
    );
    let json = ferry_ok(&scratch, &["state", "list", "data100", "--json"]);
    let view: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(view["kept"][0]["generation"], 1);
    assert_eq!(view["kept"][0]["until"]["when"], "asked");

    // Asked: retired, and the state forgets when it stood down.
    let retire = retire_now(&scratch);
    assert!(
        retire.stderr.contains("Apply complete: 8 done"),
        "{}{}",
        retire.stdout,
        retire.stderr
    );
    assert_eq!(of_generation(&scratch, 1), Vec::<String>::new());
    assert!(scratch.state().get("stood_down").is_none());
}

#[test]
fn a_generation_kept_for_a_while_is_retired_by_the_first_apply_after_its_time() {
    let scratch = built_keeping("24h");
    let failover = fail_over(&scratch, 1);
    assert!(
        !failover.stdout.contains("- retire "),
        "{}",
        failover.stdout
    );
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    let kept = section(&plan.stdout, "Kept:");
    assert!(
        kept.starts_with("Kept: generation 1 (8 resources), retired by the first apply after 2"),
        "{kept}"
    );

    // A day and more later (the state says so), the next plan retires it and says why.
    let state_path = scratch.spec().join(".ferry/state.json");
    let mut state = scratch.state();
    state["stood_down"]["1"] = Value::from("2026-01-01T00:00:00Z");
    std::fs::write(&state_path, state.to_string()).unwrap();
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    assert!(!plan.stdout.contains("Kept:"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(
            "generation 2 serves now: generation 1 is retired (kept 24h after its failover, until 2026-01-02T00:00:00Z)"
        ),
        "{}",
        plan.stdout
    );

    // A lost record of when it stood down keeps it until asked: never a guess.
    let mut state = scratch.state();
    state.as_object_mut().unwrap().remove("stood_down");
    std::fs::write(&state_path, state.to_string()).unwrap();
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    insta::assert_snapshot!(
        "kept_without_its_start",
        section(&plan.stdout, "Kept:").lines().next().unwrap()
    );
}

#[test]
fn a_second_failover_keeps_both_older_generations_each_on_its_own_clock() {
    let scratch = built_keeping("when-asked");
    fail_over(&scratch, 1);
    scratch.mend_api_server(1);
    scratch.break_api_server(2);
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    assert!(
        plan.stdout
            .starts_with("Failover from generation 2 to generation 3")
    );
    let kept: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.starts_with("Kept:"))
        .collect();
    assert_eq!(
        kept,
        [
            "Kept: generation 1 (8 resources), retired by `ferry apply --retire-old now`.",
            "Kept: generation 2 (8 resources), retired by `ferry apply --retire-old now`.",
        ]
    );
    // The flag wins over the spec: this failover retires both.
    let plan = ferry_ok(
        &scratch,
        &[
            "plan",
            "data100",
            "--world",
            "world.json",
            "--retire-old",
            "now",
        ],
    );
    assert!(!plan.stdout.contains("Kept:"), "{}", plan.stdout);
    assert!(plan.stdout.contains("16 to retire"), "{}", plan.stdout);
}

#[test]
fn a_retention_that_is_not_one_is_refused_where_it_is_written() {
    let scratch = Scratch::new();
    let main = scratch.spec().join("main.toml");
    let text = std::fs::read_to_string(&main).unwrap().replace(
        "triggers = [\"aks_cluster.hub\"]\n",
        "triggers = [\"aks_cluster.hub\"]\nretire_old = \"tomorrow\"\n",
    );
    std::fs::write(&main, text).unwrap();
    let run = scratch.ferry(&["validate", "data100"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("retire_old_not_a_retention", run.stderr);

    let flag = Scratch::new().ferry(&[
        "plan",
        "data100",
        "--world",
        "world.json",
        "--retire-old",
        "soon",
    ]);
    assert_eq!(flag.code, 1);
    insta::assert_snapshot!("retire_old_flag_not_a_retention", flag.stderr);
}

/// The world is the source of truth: with the state lost, the world shows generation 1 not
/// retired, which reads as a failover not finished. Finishing it records it, and the retention
/// counts from then: later than the real end, never earlier. With the state forgetting one of
/// its instances, that instance is still read (the generation below the serving one is
/// probed) and kept with the rest.
#[test]
fn a_kept_generation_is_still_seen_after_the_state_is_lost_or_forgets_part_of_it() {
    let scratch = built_keeping("24h");
    fail_over(&scratch, 1);
    std::fs::remove_dir_all(scratch.spec().join(".ferry")).unwrap();
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    assert!(!plan.stdout.contains("- retire "), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(
            "Kept: generation 1 (8 resources), retired by the first apply 24h after this failover."
        ),
        "{}",
        plan.stdout
    );
    ferry_ok(
        &scratch,
        &[
            "apply",
            "data100",
            "--world",
            "world.json",
            "--auto-approve",
        ],
    );
    assert!(scratch.state()["stood_down"]["1"].is_string());

    let forget = ferry_ok(
        &scratch,
        &["state", "forget", "data100", "vm.nfs@g1", "--auto-approve"],
    );
    assert!(forget.stdout.contains("vm.nfs@g1"), "{}", forget.stdout);
    let plan = ferry_ok(&scratch, &["plan", "data100", "--world", "world.json"]);
    let kept = section(&plan.stdout, "Kept:");
    assert!(
        kept.starts_with("Kept: generation 1 (8 resources), retired by the first apply after 2")
            && kept.contains("vm.nfs@g1             its OS disk (the VM is deallocated)"),
        "{}",
        plan.stdout
    );

    // Asked, it goes, the forgotten VM with it.
    let retire = retire_now(&scratch);
    assert!(retire.stderr.contains("8 done"), "{}", retire.stderr);
    assert_eq!(of_generation(&scratch, 1), Vec::<String>::new());
}
