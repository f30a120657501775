//! The failover path checks at least as much as the normal path (issue 18, item 6), and every
//! plan shows whether a failover could be made from today's readings (item 5, readiness).

mod support;

use std::path::{Path, PathBuf};

use ferry_core::{Plan, Snapshot};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{FailoverRequest, PlanConfig};
use ferry_spec::{LoadOptions, Spec};
use support::data100_snapshot;

/// The data100 spec with `from` replaced by `to` in one of its files.
fn data100_with(file: &str, from: &str, to: &str) -> Spec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/data100");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut text = std::fs::read_to_string(&path).unwrap();
            if name == file {
                assert!(text.contains(from), "{file} has no `{from}`");
                text = text.replace(from, to);
            }
            files.push((PathBuf::from(name), text));
        }
    }
    files.sort();
    ferry_spec::load_sources(
        &root,
        files,
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)))
}

fn plan(spec: &Spec, snapshot: &Snapshot, failover: FailoverRequest) -> Result<Plan, String> {
    ferry_plan::plan(
        spec,
        snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig {
            failover,
            ..PlanConfig::default()
        },
    )
    .map_err(|errors| errors.to_string())
}

fn text(result: &Result<Plan, String>) -> String {
    match result {
        Ok(plan) => render::text(plan, &TextOptions { color: false }),
        Err(errors) => errors.clone(),
    }
}

/// A pool's `disks` changed in the spec while the observed pool still has that vdev: the
/// normal path refuses it, and so does a failover, whether the policy or `--failover` calls
/// for it. Before, the failover skipped every reference field of a stateful resource and
/// planned an import that did not wait for the dropped disk's attach.
#[test]
fn a_pools_disks_changed_in_the_spec_are_refused_by_the_failover_as_by_the_reconcile() {
    let spec = data100_with(
        "storage.toml",
        r#"disks = ["disk.home0", "disk.home1", "disk.home2", "disk.home3"]"#,
        r#"disks = ["disk.home0", "disk.home1", "disk.home2"]"#,
    );
    let down = data100_snapshot("observed-apiserver-down.json");
    let healthy = data100_snapshot("observed-healthy.json");
    insta::assert_snapshot!(format!(
        "--- --no-failover\n{}\n--- the policy's failover (API server down)\n{}\n--- --failover (every trigger healthy)\n{}",
        text(&plan(&spec, &down, FailoverRequest::Never)),
        text(&plan(&spec, &down, FailoverRequest::Policy)),
        text(&plan(&spec, &healthy, FailoverRequest::Force)),
    ));
}

/// Every step the plan runs before `id` (retirements after every other step).
fn ancestors(plan: &Plan, id: &str) -> std::collections::BTreeSet<String> {
    plan.ancestors(&ferry_core::StepId(id.to_owned()))
        .into_iter()
        .map(|step| step.0)
        .collect()
}

/// A disk grown in the spec while a failover moves it: the update comes after the disk's
/// attach, and the pool's import (so every hook after it) waits for it. Before, the update
/// ran beside the detach, move, attach and import, growing a disk while the pool was imported
/// from it.
#[test]
fn a_disk_grown_during_a_failover_is_grown_after_its_attach_and_before_the_import() {
    let spec = data100_with(
        "storage.toml",
        "size_gb = 1024\nsku = \"Premium_LRS\"\nvm = \"vm.nfs\"\nlun = 0",
        "size_gb = 2048\nsku = \"Premium_LRS\"\nvm = \"vm.nfs\"\nlun = 0",
    );
    let plan = plan(
        &spec,
        &data100_snapshot("observed-apiserver-down.json"),
        FailoverRequest::Policy,
    )
    .unwrap();
    assert!(ancestors(&plan, "disk.home0:update").contains("disk.home0:attach"));
    for step in [
        "zfs_pool.home:import",
        "hook.staging_hub@g2:run",
        "hook.prod_hub@g2:run",
    ] {
        assert!(
            ancestors(&plan, step).contains("disk.home0:update"),
            "{step} waits for the disk's update"
        );
    }
    let lines: Vec<String> = plan
        .steps
        .iter()
        .filter(|step| {
            step.address.to_string() == "disk.home0" || step.id.0 == "zfs_pool.home:import"
        })
        .map(|step| {
            let after: Vec<&str> = step.after.iter().map(|id| id.0.as_str()).collect();
            format!("{} after {}", step.id, after.join(", "))
        })
        .collect();
    // The update sets what the spec changed, never the group or VM the move and attach set.
    let update = plan
        .step(&ferry_core::StepId("disk.home0:update".into()))
        .unwrap();
    let inputs: Vec<&str> = update.inputs.keys().map(String::as_str).collect();
    insta::assert_snapshot!(format!(
        "{}\nupdate inputs: {}",
        lines.join("\n"),
        inputs.join(", ")
    ));
}

/// The pool as read has a vdev on a disk the spec's `disks` does not list (the provider names
/// only the spec's disks, and lists every vdev): the failover refuses, naming the fix, rather
/// than import without waiting for that disk. Reconciling alone is not refused: the pool
/// serves as it is, and readiness shows the blocker every day.
#[test]
fn a_vdev_on_a_disk_the_spec_does_not_list_stops_the_failover() {
    let mut down = data100_snapshot("observed-apiserver-down.json");
    let vdevs: Vec<serde_json::Value> = (0..5)
        .map(|lun| serde_json::json!({"path": format!("/dev/disk/azure/scsi1/lun{lun}"), "state": "ONLINE"}))
        .collect();
    let pool = "zfs_pool.home".parse().unwrap();
    let Some(ferry_core::Observation::Present { attributes, .. }) = down.resources.get_mut(&pool)
    else {
        panic!("the pool is present in the snapshot");
    };
    attributes.insert("vdevs".into(), serde_json::Value::Array(vdevs));
    let spec = support::data100();
    insta::assert_snapshot!(format!(
        "--- the policy's failover\n{}\n--- --no-failover: the steps\n{}",
        text(&plan(&spec, &down, FailoverRequest::Policy)),
        plan(&spec, &down, FailoverRequest::Never)
            .unwrap()
            .steps
            .iter()
            .map(|step| step.id.0.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    ));
}

/// The plan with its failover readiness, as `ferry plan` makes it: text, then JSON.
fn with_readiness(spec: &Spec, snapshot: &Snapshot) -> String {
    let rules = ferry_providers::rule_book();
    let config = PlanConfig::default();
    let mut plan = ferry_plan::plan(spec, snapshot, &rules, &config).unwrap();
    plan.readiness = ferry_plan::readiness(spec, snapshot, &rules, &config);
    let json: serde_json::Value = serde_json::from_str(&render::json(&plan)).unwrap();
    format!(
        "{}--- json readiness\n{}\n--- exit code {}",
        render::text(&plan, &TextOptions { color: false }),
        serde_json::to_string_pretty(&json["readiness"]).unwrap(),
        ferry_plan::Verdict::of(&plan).exit_code()
    )
}

/// On an ordinary day (every trigger healthy, nothing to apply), the plan says the failover is
/// ready and how long it would take; a latent blocker (a vdev on a disk the spec does not
/// list, or a DNS record that cannot be read) is shown with its reason and fix, and the plan
/// is no longer "no changes" (exit 5, attention).
#[test]
fn every_plan_says_whether_the_failover_is_ready_and_names_each_blocker() {
    let spec = support::data100();
    let healthy = data100_snapshot("observed-healthy.json");
    let mut latent = healthy.clone();
    let Some(ferry_core::Observation::Present { attributes, .. }) =
        latent.resources.get_mut(&"zfs_pool.home".parse().unwrap())
    else {
        panic!("the pool is present in the snapshot");
    };
    let vdevs: Vec<serde_json::Value> = (0..5)
        .map(|lun| serde_json::json!({"path": format!("/dev/disk/azure/scsi1/lun{lun}"), "state": "ONLINE"}))
        .collect();
    attributes.insert("vdevs".into(), serde_json::Value::Array(vdevs));
    let mut unreadable = healthy.clone();
    unreadable.insert(
        "dns_record.prod".parse().unwrap(),
        ferry_core::Observation::Unknown {
            reason: "the primary 10.0.0.53 did not answer".into(),
        },
    );
    insta::assert_snapshot!(format!(
        "=== ready\n{}\n=== a vdev the spec does not list\n{}\n=== a DNS record that cannot be read\n{}",
        with_readiness(&spec, &healthy),
        with_readiness(&spec, &latent),
        with_readiness(&spec, &unreadable),
    ));
}

/// A failover killed right after the old host exported the pool: the resume reads the pool as
/// importable, which shows no datasets (they are read once it is imported). Found by the
/// real-server kill suite (issue 18, item 12): the plan added an update of the pool that set
/// its datasets on a host it no longer named, and failed there, apply after apply. The import
/// moves it; what the reading could not show is compared by the plan after the failover.
#[test]
fn a_pool_exported_by_a_killed_failover_is_imported_with_no_update_of_what_it_cannot_read() {
    let spec = support::data100();
    let mut snapshot = data100_snapshot("observed-apiserver-down.json");
    snapshot.failover_in_progress = Some(ferry_core::Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy".into(),
    });
    let exported: ferry_core::Attributes = serde_json::from_value(serde_json::json!({
        "imported": false,
        "importable": true,
        "needs_force": false,
        "health": "ONLINE",
        "layout": "stripe",
        "vdevs": [
            {"path": "/dev/disk/azure/scsi1/lun0", "state": "ONLINE"},
            {"path": "/dev/disk/azure/scsi1/lun1", "state": "ONLINE"},
            {"path": "/dev/disk/azure/scsi1/lun2", "state": "ONLINE"},
            {"path": "/dev/disk/azure/scsi1/lun3", "state": "ONLINE"},
        ],
    }))
    .unwrap();
    snapshot.insert(
        "zfs_pool.home".parse().unwrap(),
        ferry_core::Observation::present(exported),
    );
    let plan = plan(&spec, &snapshot, FailoverRequest::Policy).unwrap();
    let pool_steps: Vec<&str> = plan
        .steps
        .iter()
        .map(|step| step.id.0.as_str())
        .filter(|id| id.starts_with("zfs_pool.home:"))
        .collect();
    assert_eq!(
        pool_steps,
        ["zfs_pool.home:import"],
        "{}",
        text(&Ok(plan.clone()))
    );
}
