//! A journal written by a newer ferry, met by this one: `ferry apply` refuses to resume from
//! records it cannot read, says what to do, changes nothing and leaves no lock behind.

mod support;

use std::io::Write;

use support::Scratch;

#[test]
fn a_journal_from_a_newer_ferry_is_refused_with_the_way_out_and_the_lock_given_back() {
    let scratch = Scratch::new();
    scratch.build();
    let world_before = scratch.world();
    let journal_before = std::fs::read_to_string(scratch.journal_path()).unwrap();
    // A later release's interrupted apply: its first record names a format this one lacks.
    let newer = r#"{"event":"apply_started","format_version":"3","apply_id":"from-the-future","at":"2030-01-01T00:00:00Z","steps":1}"#;
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(scratch.journal_path())
        .unwrap();
    writeln!(journal, "{newer}").unwrap();
    drop(journal);
    scratch.break_api_server(1);
    let world_broken = scratch.world();

    let apply = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
    ]);

    assert_eq!(apply.code, 1, "{}", apply.stderr);
    let stderr = apply
        .stderr
        .replace(&scratch.path().display().to_string(), "[scratch]");
    insta::assert_snapshot!(stderr);
    assert_eq!(scratch.world(), world_broken, "nothing may be applied");
    assert_ne!(scratch.world(), world_before);
    assert_eq!(
        std::fs::read_to_string(scratch.journal_path()).unwrap(),
        format!("{journal_before}{newer}\n"),
        "the journal is kept as it was, for the release that wrote it"
    );
    assert!(
        !scratch.lock_path().exists(),
        "a refused apply must not leave its lock: the next one would need force-unlock"
    );
}
