//! Per-kind limits through the `ferry` binary, with real hooks: without a limit, hooks run as
//! many at once as `--parallelism` allows; the spec's `[limits]` bounds them and
//! `--kind-parallelism` overrides the spec; a malformed flag is refused with the way to write it.
//!
//! No timing is asserted. Each hook appends `+` to a log when it starts and `-` when it ends
//! (appends of a few bytes are atomic), so the log's largest running sum is the most hooks that
//! ran at once. The test of the default makes every hook wait until all have started: that
//! can only happen when none is held back, whatever the machine's speed.

mod support;

use std::path::{Path, PathBuf};

/// A spec of `count` independent hooks running `shell`, with `limits` as the lines of its
/// `[limits]` block (none when empty).
fn hooks_spec(folder: &Path, count: usize, limits: &str, shell: &str) -> PathBuf {
    let spec = folder.join("hooks");
    std::fs::create_dir_all(&spec).unwrap();
    let mut text = String::from("[deployment]\nname = \"hooks\"\nlocation = \"westeurope\"\n");
    if !limits.is_empty() {
        text.push_str(&format!("\n[limits]\n{limits}\n"));
    }
    for index in 0..count {
        text.push_str(&format!(
            "\n[hook.h{index}]\nshell = '{shell}'\nenv = {{ NAME = \"h{index}\" }}\n"
        ));
    }
    std::fs::write(spec.join("main.toml"), text).unwrap();
    spec
}

/// Logs its start and end; the short sleep only makes overlaps likely, nothing depends on it.
const LOGGING_HOOK: &str = "echo + >> running.log; sleep 0.2; echo - >> running.log";

/// The most hooks that ran at once, from the `+`/`-` log.
fn most_at_once(spec: &Path) -> usize {
    let log = std::fs::read_to_string(spec.join("running.log")).unwrap();
    let mut running: usize = 0;
    let mut most = 0;
    for line in log.lines() {
        match line {
            "+" => running += 1,
            "-" => running -= 1,
            other => panic!("unexpected line {other:?} in the log"),
        }
        most = most.max(running);
    }
    assert_eq!(running, 0, "every hook that started ended:\n{log}");
    most
}

fn apply(folder: &Path, extra: &[&str]) {
    let mut args = vec!["apply", "hooks", "--auto-approve"];
    args.extend_from_slice(extra);
    let run = support::ferry(folder, &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn the_specs_limit_bounds_hooks_and_the_flag_overrides_it() {
    // (the spec's [limits], the flags, the most hooks that may run at once)
    let cases: [(&str, &[&str], usize); 3] = [
        ("hook = 2", &["--parallelism", "10"], 2),
        (
            "hook = 2",
            &["--parallelism", "10", "--kind-parallelism", "hook=3"],
            3,
        ),
        (
            "hook = 5",
            &[
                "--kind-parallelism",
                "hook=4",
                "--kind-parallelism",
                "hook=1",
            ],
            1,
        ),
    ];
    for (limits, flags, bound) in cases {
        let scratch = tempfile::tempdir().unwrap();
        let spec = hooks_spec(scratch.path(), 8, limits, LOGGING_HOOK);
        apply(scratch.path(), flags);
        let most = most_at_once(&spec);
        assert!(
            (1..=bound).contains(&most),
            "[limits] {limits}, flags {flags:?}: {most} hooks ran at once, more than {bound}"
        );
    }
}

#[test]
fn without_a_limit_hooks_follow_the_global_parallelism() {
    // Six hooks under --parallelism 6: each records that it started, waits until all six
    // have (giving up after 60 s), and fails unless it saw them all. The hook provider's old
    // cap of 4 would have held two back until the first four gave up.
    let shell = "mkdir -p started && touch started/$NAME; \
                 tries=0; \
                 while [ $(ls started | wc -l) -lt 6 ] && [ $tries -lt 600 ]; do sleep 0.1; tries=$((tries + 1)); done; \
                 test $(ls started | wc -l) -eq 6";
    let scratch = tempfile::tempdir().unwrap();
    hooks_spec(scratch.path(), 6, "", shell);
    apply(scratch.path(), &["--parallelism", "6"]);
}

#[test]
fn a_malformed_kind_limit_is_refused_with_the_way_to_write_it() {
    let scratch = tempfile::tempdir().unwrap();
    hooks_spec(scratch.path(), 1, "", "true");
    let mut shown = String::new();
    for value in [
        "hook",
        "hok=16",
        "hook=many",
        "hook=0",
        "hook=1001",
        "hook=-3",
    ] {
        let run = support::ferry(
            scratch.path(),
            &[
                "apply",
                "hooks",
                "--auto-approve",
                "--kind-parallelism",
                value,
            ],
        );
        let first_line = run.stderr.lines().next().unwrap_or("");
        shown.push_str(&format!(
            "$ ferry apply hooks --kind-parallelism {value}\nexit {}: {first_line}\n\n",
            run.code
        ));
    }
    insta::assert_snapshot!(shown);
}
