//! Test and benchmark helpers for ferry, used only as a dev-dependency (the simulated world the
//! product ships is `ferry-world`).
//!
//! - [`random`]: random DAG plans for property tests and benchmarks;
//! - [`synthetic`]: spec text of any size shaped like data100, for planner benchmarks and
//!   property tests;
//! - [`baseline`]: the schedulers the apply engine is compared with (level by level, one at a
//!   time) and the critical path, for the makespan benchmark;
//! - [`webhook_receiver`]: a scripted webhook receiver on 127.0.0.1, for `ferry watch`'s
//!   delivery tests;
//! - `provider_harness` (feature `provider-harness`): the Azure providers called one step at a
//!   time against an in-process ARM simulator, for the provider crates' tests;
//! - `drill_harness` (feature `ops-harness`): production built and a drill's request, for the
//!   drill tests of `ferry-ops` and of the workspace;
//! - [`copy_spec_folder`]: a spec folder copied into a test's scratch folder;
//! - [`without_measurements`]: a report with its measured times redacted, for snapshots.

pub mod baseline;
#[cfg(feature = "ops-harness")]
pub mod drill_harness;
#[cfg(feature = "provider-harness")]
pub mod provider_harness;
pub mod random;
pub mod synthetic;
pub mod webhook_receiver;

/// Copies a spec folder (such as `specs/data100`) into `to`, following links (the warm
/// variant's files are links to the cold spec's) and keeping permissions (hook scripts stay
/// executable), without the `.ferry` state of whoever ran the spec from the repository.
pub fn copy_spec_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", to.display()));
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", from.display()));
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_name() == ".ferry" {
            continue;
        }
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if std::fs::metadata(&source).is_ok_and(|metadata| metadata.is_dir()) {
            copy_spec_folder(&source, &target);
        } else {
            std::fs::copy(&source, &target).unwrap_or_else(|error| {
                panic!(
                    "cannot copy {} to {}: {error}",
                    source.display(),
                    target.display()
                )
            });
        }
    }
}

/// `text` with every measured time (the only figures with a decimal point and a unit `s`, such
/// as `0.034s`, maybe followed by `;` or `,`) replaced by `<measured>`: a snapshot keeps what
/// does not depend on the machine's speed.
pub fn without_measurements(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let bare = word.trim_end_matches([';', ',']);
                    let number = bare.strip_suffix('s').unwrap_or("");
                    if number.contains('.') && number.parse::<f64>().is_ok() {
                        word.replace(bare, "<measured>")
                    } else {
                        word.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_measured_times_are_redacted() {
        assert_eq!(
            super::without_measurements("done in 0.034s; 12 steps, 15s estimated, 1.5s,\nv1.2"),
            "done in <measured>; 12 steps, 15s estimated, <measured>,\nv1.2"
        );
    }
}
