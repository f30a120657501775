//! `ferry plan --detailed-exitcode` as a cron job reads it (issue 18, item 3): 0 only when
//! every reading is known and healthy and nothing is to do; 1 error (usage errors included);
//! 2 changes; 3 a failover due in manual mode; 4 unknown readings; 5 attention needed.

mod support;

use std::path::Path;

use support::{Run, ferry, repository};

/// A folder with a copy of specs/data100's files, so that the spec's mode can be changed.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data100");
    std::fs::create_dir_all(target.join("hooks")).unwrap();
    for entry in std::fs::read_dir(repository().join("specs/data100")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// Writes `observed-healthy.json` (or another snapshot) changed by `change` as `name`.
fn observed(dir: &Path, from: &str, name: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let mut snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data100").join(from)).unwrap())
            .unwrap();
    change(&mut snapshot);
    std::fs::write(dir.join(name), snapshot.to_string()).unwrap();
}

fn plan(dir: &Path, observed: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "plan",
        "data100",
        "--observed",
        observed,
        "--detailed-exitcode",
    ];
    args.extend_from_slice(extra);
    ferry(dir, &args)
}

/// Before: a wrong client secret (every reading unknown) printed "No changes: the world
/// matches the spec." and exited 0, as did an API server down in manual mode; a failed NFS VM
/// and a degraded pool were not mentioned at all; a usage error exited 2, like changes.
#[test]
fn each_kind_of_trouble_has_its_own_exit_code_and_is_never_no_changes() {
    let dir = scratch();
    let dir = dir.path();

    let healthy = plan(dir, "data100/observed-healthy.json", &[]);
    assert_eq!(healthy.code, 0, "{}{}", healthy.stdout, healthy.stderr);
    assert!(
        healthy
            .stdout
            .ends_with("No changes: the world matches the spec.\n"),
        "{}",
        healthy.stdout
    );

    // A wrong client secret: every ARM reading unknown.
    observed(dir, "observed-healthy.json", "refused.json", |snapshot| {
        for (address, reading) in snapshot["resources"].as_object_mut().unwrap() {
            if !address.starts_with("hook.") && !address.starts_with("check.") {
                *reading = serde_json::json!({"status": "unknown", "reason": "the credential was refused: AADSTS7000215"});
            }
        }
    });
    let refused = plan(dir, "refused.json", &[]);
    assert_eq!(refused.code, 4, "{}{}", refused.stdout, refused.stderr);
    assert!(!refused.stdout.contains("No changes"), "{}", refused.stdout);
    assert!(
        refused.stdout.contains("Unknown readings:")
            && refused
                .stdout
                .contains("aks_cluster.hub@g1: the credential was refused: AADSTS7000215"),
        "{}",
        refused.stdout
    );
    let json = ferry(
        dir,
        &["plan", "data100", "--observed", "refused.json", "--json"],
    );
    assert_eq!(json.code, 0, "without --detailed-exitcode a plan made is 0");
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["unknown"].as_array().unwrap().len(), 13, "{parsed}");

    // The NFS VM failed, the pool degraded: not triggers, nothing to apply, a person must look.
    observed(dir, "observed-healthy.json", "unwell.json", |snapshot| {
        snapshot["resources"]["vm.nfs@g1"]["health"] = serde_json::json!({"state": "unhealthy", "reason": "ARM reports provisioningState Failed"});
        snapshot["resources"]["zfs_pool.home"]["health"] =
            serde_json::json!({"state": "unhealthy", "reason": "the pool is DEGRADED"});
    });
    let unwell = plan(dir, "unwell.json", &[]);
    assert_eq!(unwell.code, 5, "{}{}", unwell.stdout, unwell.stderr);
    assert!(
        unwell.stdout.contains("Warnings:")
            && unwell
                .stdout
                .contains("vm.nfs@g1: unhealthy: ARM reports provisioningState Failed")
            && unwell
                .stdout
                .contains("zfs_pool.home: unhealthy: the pool is DEGRADED"),
        "{}",
        unwell.stdout
    );

    // The API server down: automatic mode plans the failover (2); manual mode says it is due
    // (3); and with a reading unknown as well, the unknown wins (4).
    let down = plan(dir, "data100/observed-apiserver-down.json", &[]);
    assert_eq!(down.code, 2, "{}", down.stderr);
    let main = dir.join("data100/main.toml");
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(text.contains("mode = \"automatic\""));
    std::fs::write(
        &main,
        text.replace("mode = \"automatic\"", "mode = \"manual\""),
    )
    .unwrap();
    let due = plan(dir, "data100/observed-apiserver-down.json", &[]);
    assert_eq!(due.code, 3, "{}{}", due.stdout, due.stderr);
    assert!(
        due.stdout.contains("ferry plan --failover"),
        "{}",
        due.stdout
    );
    observed(
        dir,
        "observed-apiserver-down.json",
        "down-and-unknown.json",
        |snapshot| {
            snapshot["resources"]["dns_record.prod"] =
                serde_json::json!({"status": "unknown", "reason": "dns: connection refused"});
        },
    );
    let both = plan(dir, "down-and-unknown.json", &[]);
    assert_eq!(both.code, 4, "{}{}", both.stdout, both.stderr);

    // A usage error is an error (1), not "changes" (clap's 2).
    let usage = ferry(dir, &["plan", "data100", "--failover", "--no-failover"]);
    assert_eq!(usage.code, 1, "{}", usage.stderr);
    let unknown_flag = ferry(dir, &["plan", "data100", "--detailed-exit-code"]);
    assert_eq!(unknown_flag.code, 1, "{}", unknown_flag.stderr);
    assert_eq!(ferry(dir, &["--help"]).code, 0);
}
