//! The planner, data-driven: each case is a spec and a snapshot, and what a person would see.

mod support;

use ferry_core::{Action, Kind, Observation, Snapshot};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{FailoverRequest, PlanConfig};
use support::{converge, data100, data100_snapshot, spec};

fn text(spec: &ferry_spec::Spec, snapshot: &Snapshot, config: &PlanConfig) -> String {
    match ferry_plan::plan(spec, snapshot, &ferry_providers::rule_book(), config) {
        Ok(plan) => render::text(&plan, &TextOptions { color: false }),
        Err(errors) => errors.to_string(),
    }
}

fn check(spec: &ferry_spec::Spec, snapshot: &Snapshot, config: &PlanConfig) -> String {
    text(spec, snapshot, config)
}

const SMALL: &str = r#"
[deployment]
name = "small"
location = "westeurope"

[failover]
mode = "off"

[resource_group.main]
name = "small-g${generation}"

[vnet.main]
name = "small-vnet"
resource_group = "resource_group.main"
address_space = ["10.1.0.0/16"]

[vm.nfs]
name = "small-nfs"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_D4s_v5"
image = "Canonical:ubuntu-24_04-lts:server:latest"
ssh_public_key = "ssh-ed25519 AAAA small"

[disk.data]
name = "small-data"
resource_group = "resource_group.main"
size_gb = 256
vm = "vm.nfs"
lun = 0
"#;

/// The small spec, converged: what its providers read after a clean first apply.
fn small_converged(spec: &ferry_spec::Spec) -> Snapshot {
    let empty = Snapshot::new(0);
    let plan = ferry_plan::plan(
        spec,
        &empty,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    converge(&empty, &plan, 1)
}

fn with_attribute(
    snapshot: &Snapshot,
    instance: &str,
    name: &str,
    value: serde_json::Value,
) -> Snapshot {
    let mut changed = snapshot.clone();
    let instance = instance.parse().unwrap();
    let Some(Observation::Present { attributes, .. }) = changed.resources.get_mut(&instance) else {
        panic!("{instance} is not present");
    };
    attributes.insert(name.to_owned(), value);
    changed
}

#[test]
fn data100_healthy_has_no_changes() {
    insta::assert_snapshot!(check(
        &data100(),
        &data100_snapshot("observed-healthy.json"),
        &PlanConfig::default()
    ));
}

#[test]
fn data100_apiserver_down_plans_the_failover() {
    insta::assert_snapshot!(check(
        &data100(),
        &data100_snapshot("observed-apiserver-down.json"),
        &PlanConfig::default()
    ));
}

#[test]
fn data100_failover_json_is_pinned() {
    let plan = ferry_plan::plan(
        &data100(),
        &data100_snapshot("observed-apiserver-down.json"),
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    insta::assert_snapshot!(render::json(&plan));
}

#[test]
fn data100_failover_order_keeps_the_story() {
    let plan = ferry_plan::plan(
        &data100(),
        &data100_snapshot("observed-apiserver-down.json"),
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    let ancestors = |id: &str| -> std::collections::BTreeSet<String> {
        plan.ancestors(&ferry_core::StepId(id.to_owned()))
            .into_iter()
            .map(|step| step.0)
            .collect()
    };
    let import = ancestors("zfs_pool.home:import");
    for disk in 0..4 {
        for action in ["detach", "move", "attach"] {
            assert!(
                import.contains(&format!("disk.home{disk}:{action}")),
                "import after {action} of disk {disk}"
            );
        }
        let attach = ancestors(&format!("disk.home{disk}:attach"));
        assert!(
            attach.contains("vm.nfs@g1:fence") && attach.contains(&format!("disk.home{disk}:move"))
        );
    }
    assert!(import.contains("vm.nfs@g1:fence"));
    let staging = ancestors("hook.staging_hub@g2:run");
    assert!(
        staging.contains("aks_cluster.hub@g2:create") && staging.contains("zfs_pool.home:import")
    );
    assert!(ancestors("dns_record.staging:update").contains("hook.staging_hub@g2:run"));
    assert!(ancestors("hook.prod_hub@g2:run").contains("dns_record.staging:update"));
    assert!(ancestors("check.prod_tls:wait").contains("dns_record.prod:update"));
    let last_non_retire = plan
        .steps
        .iter()
        .rposition(|step| step.action != Action::Retire)
        .unwrap();
    let first_retire = plan
        .steps
        .iter()
        .position(|step| step.action == Action::Retire)
        .unwrap();
    assert!(
        first_retire > last_non_retire,
        "the old generation is retired last"
    );
    assert!(ancestors("resource_group.main@g1:retire").contains("check.prod_tls:wait"));
}

#[test]
fn data100_from_scratch_builds_generation_one() {
    insta::assert_snapshot!(check(&data100(), &Snapshot::new(0), &PlanConfig::default()));
}

#[test]
fn in_place_update_shows_the_diff() {
    let spec = spec(&[("small.toml", SMALL)]);
    let observed = with_attribute(
        &small_converged(&spec),
        "disk.data",
        "size_gb",
        serde_json::json!(128),
    );
    let observed = with_attribute(
        &observed,
        "vm.nfs@g1",
        "size",
        serde_json::json!("Standard_D2s_v5"),
    );
    insta::assert_snapshot!(check(&spec, &observed, &PlanConfig::default()));
}

/// The plan of `source` (the small spec, or a variant of it) when its converged VM reads these
/// attributes (a VM's reading carries `resizable_in_place` while its size differs from the
/// spec's).
fn plan_with_vm_read_as(
    source: &str,
    attributes: &[(&str, serde_json::Value)],
) -> ferry_core::Plan {
    let spec = spec(&[("small.toml", source)]);
    let observed = attributes.iter().fold(
        with_attribute(
            &small_converged(&spec),
            "vm.nfs@g1",
            "power_state",
            serde_json::json!("running"),
        ),
        |observed, (name, value)| with_attribute(&observed, "vm.nfs@g1", name, value.clone()),
    );
    ferry_plan::plan(
        &spec,
        &observed,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap()
}

/// [`plan_with_vm_read_as`]'s plan as a person reads it, then as JSON.
fn vm_read_as(source: &str, attributes: &[(&str, serde_json::Value)]) -> String {
    let plan = plan_with_vm_read_as(source, attributes);
    format!(
        "{}--- json\n{}",
        render::text(&plan, &TextOptions { color: false }),
        render::json(&plan)
    )
}

#[test]
fn vm_resize_in_place_says_the_vm_restarts() {
    insta::assert_snapshot!(vm_read_as(SMALL, &[
        ("size", serde_json::json!("Standard_D2s_v5")),
        ("resizable_in_place", serde_json::json!(true)),
    ]), @r#"
    1. ~ update vm.nfs@g1  ~1m  (critical path)
         resized in place to Standard_D4s_v5: the VM restarts (its current hardware hosts that size)
         ~ size = "Standard_D2s_v5" -> "Standard_D4s_v5"

    Plan: 1 to update (1 step).
    Estimated duration: 1m.
    Critical path:
         update vm.nfs@g1 (1m)
    --- json
    {
      "format_version": "2",
      "steps": [
        {
          "id": "vm.nfs@g1:update",
          "address": "vm.nfs@g1",
          "action": "update",
          "reason": "resized in place to Standard_D4s_v5: the VM restarts (its current hardware hosts that size)",
          "after": [],
          "estimate_seconds": 60,
          "changes": [
            {
              "path": "size",
              "before": "Standard_D2s_v5",
              "after": "Standard_D4s_v5"
            }
          ],
          "inputs": {
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "location": "westeurope",
            "name": "small-nfs",
            "resource_group": "resource_group.main@g1",
            "size": "Standard_D4s_v5",
            "ssh_public_key": "ssh-ed25519 AAAA small",
            "vnet": "vnet.main@g1"
          }
        }
      ],
      "critical_path": [
        "vm.nfs@g1:update"
      ],
      "estimated_seconds": 60,
      "summary": {
        "update": 1
      }
    }
    "#);
}

#[test]
fn vm_resize_by_deallocation_warns_that_the_vm_stops() {
    insta::assert_snapshot!(vm_read_as(SMALL, &[
        ("size", serde_json::json!("Standard_E8s_v5")),
        ("resizable_in_place", serde_json::json!(false)),
    ]), @r#"
    1. ~ update vm.nfs@g1  ~3m  (critical path)
         deallocated to resize to Standard_D4s_v5: the VM stops for a few minutes (Azure cannot resize it in place on its current hardware)
         warning: the VM stops while it is deallocated, resized and started again: what it serves is down for a few minutes
         ~ size = "Standard_E8s_v5" -> "Standard_D4s_v5"

    Plan: 1 to update (1 step).
    Estimated duration: 3m.
    Critical path:
         update vm.nfs@g1 (3m)
    --- json
    {
      "format_version": "2",
      "steps": [
        {
          "id": "vm.nfs@g1:update",
          "address": "vm.nfs@g1",
          "action": "update",
          "reason": "deallocated to resize to Standard_D4s_v5: the VM stops for a few minutes (Azure cannot resize it in place on its current hardware)",
          "after": [],
          "estimate_seconds": 180,
          "changes": [
            {
              "path": "size",
              "before": "Standard_E8s_v5",
              "after": "Standard_D4s_v5"
            }
          ],
          "inputs": {
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "location": "westeurope",
            "name": "small-nfs",
            "resource_group": "resource_group.main@g1",
            "size": "Standard_D4s_v5",
            "ssh_public_key": "ssh-ed25519 AAAA small",
            "vnet": "vnet.main@g1"
          },
          "warning": "the VM stops while it is deallocated, resized and started again: what it serves is down for a few minutes"
        }
      ],
      "critical_path": [
        "vm.nfs@g1:update"
      ],
      "estimated_seconds": 180,
      "summary": {
        "update": 1
      }
    }
    "#);
    // On a terminal the warning is red, as a forced detach's is.
    let plan = plan_with_vm_read_as(
        SMALL,
        &[
            ("size", serde_json::json!("Standard_E8s_v5")),
            ("resizable_in_place", serde_json::json!(false)),
        ],
    );
    assert!(
        render::text(&plan, &TextOptions { color: true })
            .contains("\x1b[31;1mwarning: the VM stops while it is deallocated"),
    );
}

#[test]
fn vm_resize_from_a_reading_without_resizable_in_place_expects_the_long_way() {
    insta::assert_snapshot!(vm_read_as(SMALL, &[("size", serde_json::json!("Standard_E8s_v5"))]), @r#"
    1. ~ update vm.nfs@g1  ~3m  (critical path)
         resized to Standard_D4s_v5, perhaps after a deallocation: the VM restarts, or stops for a few minutes if Azure cannot resize it in place on its current hardware (the reading does not say)
         warning: the VM may be deallocated to resize it: what it serves may be down for a few minutes
         ~ size = "Standard_E8s_v5" -> "Standard_D4s_v5"

    Plan: 1 to update (1 step).
    Estimated duration: 3m.
    Critical path:
         update vm.nfs@g1 (3m)
    --- json
    {
      "format_version": "2",
      "steps": [
        {
          "id": "vm.nfs@g1:update",
          "address": "vm.nfs@g1",
          "action": "update",
          "reason": "resized to Standard_D4s_v5, perhaps after a deallocation: the VM restarts, or stops for a few minutes if Azure cannot resize it in place on its current hardware (the reading does not say)",
          "after": [],
          "estimate_seconds": 180,
          "changes": [
            {
              "path": "size",
              "before": "Standard_E8s_v5",
              "after": "Standard_D4s_v5"
            }
          ],
          "inputs": {
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "location": "westeurope",
            "name": "small-nfs",
            "resource_group": "resource_group.main@g1",
            "size": "Standard_D4s_v5",
            "ssh_public_key": "ssh-ed25519 AAAA small",
            "vnet": "vnet.main@g1"
          },
          "warning": "the VM may be deallocated to resize it: what it serves may be down for a few minutes"
        }
      ],
      "critical_path": [
        "vm.nfs@g1:update"
      ],
      "estimated_seconds": 180,
      "summary": {
        "update": 1
      }
    }
    "#);
}

#[test]
fn vm_resize_of_a_deallocated_vm_and_a_change_of_tags_alone() {
    let tagged = SMALL.replace(
        "ssh_public_key = \"ssh-ed25519 AAAA small\"\n",
        "ssh_public_key = \"ssh-ed25519 AAAA small\"\ntags = { owner = \"data-team\" }\n",
    );
    let text = |attributes: &[(&str, serde_json::Value)]| {
        let both = vm_read_as(&tagged, attributes);
        both.split("--- json").next().unwrap().to_owned()
    };
    insta::assert_snapshot!(format!(
        "--- a deallocated VM, its size and tags changed\n{}--- its tags alone\n{}",
        text(&[
            ("size", serde_json::json!("Standard_E8s_v5")),
            ("power_state", serde_json::json!("deallocated")),
            ("resizable_in_place", serde_json::json!(true)),
            ("tags", serde_json::json!({"owner": "someone"})),
        ]),
        text(&[("tags", serde_json::json!({"owner": "someone"}))]),
    ), @r#"
    --- a deallocated VM, its size and tags changed
    1. ~ update vm.nfs@g1  ~1m 30s  (critical path)
         it is deallocated: resized to Standard_D4s_v5 and started again, so that it serves; also changed in place: tags
         ~ power_state = "deallocated" -> "running"
         ~ size        = "Standard_E8s_v5" -> "Standard_D4s_v5"
         ~ tags:
             - owner = "someone"
             + owner = "data-team"

    Plan: 1 to update (1 step).
    Estimated duration: 1m 30s.
    Critical path:
         update vm.nfs@g1 (1m 30s)
    --- its tags alone
    1. ~ update vm.nfs@g1  ~1m  (critical path)
         changed in place: tags
         ~ tags:
             - owner = "someone"
             + owner = "data-team"

    Plan: 1 to update (1 step).
    Estimated duration: 1m.
    Critical path:
         update vm.nfs@g1 (1m)
    "#);
}

#[test]
fn replacement_says_why() {
    let spec = spec(&[("small.toml", SMALL)]);
    let observed = with_attribute(
        &small_converged(&spec),
        "vm.nfs@g1",
        "image",
        serde_json::json!("Canonical:ubuntu-22_04-lts:server:latest"),
    );
    insta::assert_snapshot!(check(&spec, &observed, &PlanConfig::default()));
}

#[test]
fn refusals_and_stateful_protection_are_errors() {
    let spec = spec(&[("small.toml", SMALL)]);
    let converged = small_converged(&spec);
    let shrink = with_attribute(&converged, "disk.data", "size_gb", serde_json::json!(512));
    let relocate = with_attribute(
        &converged,
        "disk.data",
        "location",
        serde_json::json!("northeurope"),
    );
    let mut orphan = converged.clone();
    orphan.insert(
        "disk.old".parse().unwrap(),
        Observation::present(Default::default()),
    );
    orphan.insert(
        "vm.old@g1".parse().unwrap(),
        Observation::present(Default::default()),
    );
    insta::assert_snapshot!(format!(
        "--- a disk that would shrink\n{}\n--- a stateful replacement\n{}\n--- resources the spec dropped\n{}",
        check(&spec, &shrink, &PlanConfig::default()),
        check(&spec, &relocate, &PlanConfig::default()),
        check(&spec, &orphan, &PlanConfig::default()),
    ));
}

#[test]
fn nothing_is_created_or_deleted_from_an_unknown_reading() {
    let spec = spec(&[("small.toml", SMALL)]);
    let mut observed = small_converged(&spec);
    observed.insert(
        "vm.nfs@g1".parse().unwrap(),
        Observation::Unknown {
            reason: "ARM answered 503 three times".into(),
        },
    );
    observed.resources.remove(&"disk.data".parse().unwrap());
    insta::assert_snapshot!(check(&spec, &observed, &PlanConfig::default()));
}

#[test]
fn deleting_a_stateful_resource_needs_both_opt_ins() {
    let absent_spec = SMALL.replace(
        "lun = 0\n",
        "lun = 0\nensure = \"absent\"\nallow_destroy = true\n",
    );
    let spec = spec(&[("small.toml", &absent_spec)]);
    let converged = small_converged(&support::spec(&[("small.toml", SMALL)]));
    insta::assert_snapshot!(format!(
        "--- without --allow-destroy\n{}\n--- with --allow-destroy\n{}",
        check(&spec, &converged, &PlanConfig::default()),
        check(
            &spec,
            &converged,
            &PlanConfig {
                allow_destroy: true,
                ..PlanConfig::default()
            }
        ),
    ));
}

#[test]
fn failover_requests_the_policy_does_not_allow_are_errors_or_notes() {
    let spec = spec(&[("small.toml", SMALL)]);
    let manual = support::spec(&[(
        "small.toml",
        &SMALL.replace(
            "mode = \"off\"",
            "mode = \"manual\"\ntriggers = [\"vm.nfs\"]",
        ),
    )]);
    let mut sick = small_converged(&spec);
    sick.insert(
        "vm.nfs@g1".parse().unwrap(),
        Observation::Present {
            attributes: sick
                .get(&"vm.nfs@g1".parse().unwrap())
                .unwrap()
                .attributes()
                .unwrap()
                .clone(),
            health: ferry_core::Health::Unhealthy {
                reason: "the NFS server does not answer".into(),
            },
        },
    );
    let force = PlanConfig {
        failover: FailoverRequest::Force,
        ..PlanConfig::default()
    };
    insta::assert_snapshot!(format!(
        "--- --failover with mode off\n{}\n--- --failover before anything was built\n{}\n--- manual mode, unhealthy trigger\n{}\n--- --no-failover\n{}",
        check(&spec, &sick, &force),
        check(&manual, &Snapshot::new(0), &force),
        check(&manual, &sick, &PlanConfig::default()),
        check(
            &manual,
            &sick,
            &PlanConfig {
                failover: FailoverRequest::Never,
                ..PlanConfig::default()
            }
        ),
    ));
}

#[test]
fn failover_from_an_unreachable_host_forces_only_after_the_fence() {
    let mut observed = data100_snapshot("observed-apiserver-down.json");
    observed.insert(
        "vm.nfs@g1".parse().unwrap(),
        Observation::Unknown {
            reason: "ARM timed out".into(),
        },
    );
    observed.insert(
        "zfs_pool.home".parse().unwrap(),
        Observation::Unknown {
            reason: "ssh 10.40.16.4:22: connection timed out".into(),
        },
    );
    let plan = ferry_plan::plan(
        &data100(),
        &observed,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    );
    // The pool's reading is unknown, so ferry cannot know where it is imported: the failover
    // rules for it are not run, and the plan says so rather than guessing.
    insta::assert_snapshot!(match plan {
        Ok(plan) => render::text(&plan, &TextOptions { color: false }),
        Err(errors) => errors.to_string(),
    });
}

#[test]
fn planning_is_deterministic() {
    let spec = data100();
    let snapshot = data100_snapshot("observed-apiserver-down.json");
    let rules = ferry_providers::rule_book();
    let first =
        render::json(&ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default()).unwrap());
    for _ in 0..5 {
        let again = render::json(
            &ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default()).unwrap(),
        );
        assert_eq!(first, again);
    }
}

#[test]
fn replanning_after_the_failover_shows_no_changes() {
    let spec = data100();
    let before = data100_snapshot("observed-apiserver-down.json");
    let rules = ferry_providers::rule_book();
    let plan = ferry_plan::plan(&spec, &before, &rules, &PlanConfig::default()).unwrap();
    let mut after = converge(&before, &plan, 2);
    // The new cluster answers; the pool reads as the providers would report it.
    let check: ferry_core::InstanceAddress = "check.prod_tls".parse().unwrap();
    after.insert(check, Observation::present(Default::default()));
    let again = ferry_plan::plan(&spec, &after, &rules, &PlanConfig::default()).unwrap();
    assert!(
        again.is_empty(),
        "{}",
        render::text(&again, &TextOptions::default())
    );
    assert!(
        after
            .resources
            .keys()
            .all(|instance| instance.generation.is_none_or(|g| g == 2))
    );
    assert!(
        after
            .resources
            .keys()
            .any(|instance| instance.kind() == Kind::Disk)
    );
}

#[test]
fn data100_failover_timeline_is_drawn_from_the_estimates() {
    let plan = ferry_plan::plan(
        &data100(),
        &data100_snapshot("observed-apiserver-down.json"),
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    let bars = render::estimated_bars(&plan);
    let import = bars
        .iter()
        .find(|bar| bar.step.0 == "zfs_pool.home:import")
        .unwrap();
    // The import waits for the slowest disk: detach after the fence (export 10 s, fence 90 s),
    // 30 s detach, 180 s move, then the 30 s attach.
    assert_eq!(import.start_seconds, 340.0);
    insta::assert_snapshot!(render::timeline_svg(&plan, &bars, "ferry plan: data100"));
}

/// Safety invariant 9 of ARCHITECTURE.md: a failover an earlier apply started (recorded in the state, so in the
/// snapshot) is finished by every plan made after it, whatever the trigger reads now: the old
/// API server answering again, or the operator's `--failover`, must not turn a half-moved
/// service into a reconcile of the old generation or into a second failover.
#[test]
fn a_failover_an_earlier_apply_started_is_finished_whatever_the_trigger_reads_now() {
    let spec = data100();
    let mut healthy = data100_snapshot("observed-healthy.json");
    let plan = |snapshot: &Snapshot, failover: FailoverRequest| {
        ferry_plan::plan(
            &spec,
            snapshot,
            &ferry_providers::rule_book(),
            &PlanConfig {
                failover,
                ..PlanConfig::default()
            },
        )
    };
    assert_eq!(
        plan(&healthy, FailoverRequest::Policy).unwrap().failover,
        None,
        "a healthy generation 1 with nothing in progress is only reconciled"
    );

    healthy.failover_in_progress = Some(ferry_core::Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy: GET /readyz timed out after 5s".into(),
    });
    for request in [FailoverRequest::Policy, FailoverRequest::Force] {
        let finishing = plan(&healthy, request).unwrap();
        let failover = finishing.failover.as_ref().expect("the failover goes on");
        assert_eq!(
            (failover.from_generation, failover.to_generation),
            (1, 2),
            "{request:?}: the same failover, not a second one"
        );
        assert!(
            finishing
                .steps
                .iter()
                .any(|step| step.id.0 == "zfs_pool.home:import"),
            "{request:?}: the data moves on to generation 2"
        );
        // Applying a plan made while it is in progress, and then planning again, names the
        // original trigger once.
        let mut again = healthy.clone();
        again.failover_in_progress = Some(failover.clone());
        assert_eq!(
            plan(&again, request).unwrap().failover.unwrap().trigger,
            failover.trigger
        );
    }
    insta::assert_snapshot!(
        render::text(
            &plan(&healthy, FailoverRequest::Policy).unwrap(),
            &TextOptions { color: false }
        )
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join("\n"),
        @r"
    Failover from generation 1 to generation 2
      because finishing the failover an earlier apply started: aks_cluster.hub@g1 is unhealthy: GET /readyz timed out after 5s
    "
    );
    insta::assert_snapshot!(
        plan(&healthy, FailoverRequest::Never).unwrap_err().to_string(),
        @r"
    error: the failover from generation 1 to 2 that an earlier apply started is not finished, and --no-failover would leave it half done
      help: run the command without --no-failover: the plan finishes that failover
    no plan: 1 problem to fix first
    "
    );

    // A record of another generation's failover (the state edited by hand) decides nothing.
    healthy
        .failover_in_progress
        .as_mut()
        .unwrap()
        .from_generation = 7;
    assert_eq!(
        plan(&healthy, FailoverRequest::Policy).unwrap().failover,
        None
    );
}

/// A failover resumed after the disks moved but before they were attached: each disk's only
/// step is its attach, which sets the lun; no update repeats it.
#[test]
fn a_resumed_failover_attaches_moved_disks_without_a_second_update() {
    let spec = data100();
    let mut snapshot = data100_snapshot("observed-apiserver-down.json");
    snapshot.failover_in_progress = Some(ferry_core::Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy".into(),
    });
    let snapshot = (0..4).fold(snapshot, |snapshot, lun| {
        let disk = format!("disk.home{lun}");
        let mut moved = with_attribute(
            &snapshot,
            &disk,
            "resource_group",
            serde_json::json!("resource_group.main@g2"),
        );
        moved = with_attribute(&moved, &disk, "disk_state", serde_json::json!("Unattached"));
        let Some(Observation::Present { attributes, .. }) =
            moved.resources.get_mut(&disk.parse().unwrap())
        else {
            unreachable!()
        };
        attributes.remove("vm");
        attributes.remove("lun");
        moved
    });
    let plan = ferry_plan::plan(
        &spec,
        &snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    for lun in 0..4 {
        let steps: Vec<&str> = plan
            .steps
            .iter()
            .filter(|step| step.address.to_string() == format!("disk.home{lun}"))
            .map(|step| step.id.0.as_str())
            .collect();
        assert_eq!(steps, [format!("disk.home{lun}:attach")], "{plan:#?}");
    }
}

// A VM of the serving generation that reads deallocated or stopped is started again
// (`VmRules::implied_changes`); a VM that a failover fenced never is.

/// The steps of the VMs in `plan`, each with its reason.
fn vm_steps(plan: &ferry_core::Plan) -> String {
    plan.steps
        .iter()
        .filter(|step| step.address.kind() == Kind::Vm)
        .map(|step| format!("{}: {}\n", step.id.0, step.reason))
        .collect()
}

/// Whether any step of `plan` starts a VM.
fn starts_a_vm(plan: &ferry_core::Plan) -> bool {
    plan.steps
        .iter()
        .any(|step| step.changes().any(|change| change.path == "power_state"))
}

#[test]
fn a_deallocated_vm_of_the_serving_generation_is_started() {
    let deallocated = [("power_state", serde_json::json!("deallocated"))];
    insta::assert_snapshot!(vm_read_as(SMALL, &deallocated), @r#"
    1. ~ update vm.nfs@g1  ~1m  (critical path)
         it is deallocated: started again, so that it serves
         ~ power_state = "deallocated" -> "running"

    Plan: 1 to update (1 step).
    Estimated duration: 1m.
    Critical path:
         update vm.nfs@g1 (1m)
    --- json
    {
      "format_version": "2",
      "steps": [
        {
          "id": "vm.nfs@g1:update",
          "address": "vm.nfs@g1",
          "action": "update",
          "reason": "it is deallocated: started again, so that it serves",
          "after": [],
          "estimate_seconds": 60,
          "changes": [
            {
              "path": "power_state",
              "before": "deallocated",
              "after": "running"
            }
          ],
          "inputs": {
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "location": "westeurope",
            "name": "small-nfs",
            "power_state": "running",
            "resource_group": "resource_group.main@g1",
            "size": "Standard_D4s_v5",
            "ssh_public_key": "ssh-ed25519 AAAA small",
            "vnet": "vnet.main@g1"
          }
        }
      ],
      "critical_path": [
        "vm.nfs@g1:update"
      ],
      "estimated_seconds": 60,
      "summary": {
        "update": 1
      }
    }
    "#);

    let text = |attributes: &[(&str, serde_json::Value)]| {
        render::text(
            &plan_with_vm_read_as(SMALL, attributes),
            &TextOptions { color: false },
        )
    };
    insta::assert_snapshot!(format!(
        "--- stopped\n{}--- stopped, and resized where its hardware cannot host the size\n{}--- deallocating, on its way\n{}\n--- a power state ARM did not give\n{}",
        text(&[("power_state", serde_json::json!("stopped"))]),
        text(&[
            ("power_state", serde_json::json!("stopped")),
            ("size", serde_json::json!("Standard_E8s_v5")),
            ("resizable_in_place", serde_json::json!(false)),
        ]),
        text(&[("power_state", serde_json::json!("deallocating"))]),
        text(&[("power_state", serde_json::json!("unknown"))]),
    ), @r#"
    --- stopped
    1. ~ update vm.nfs@g1  ~1m  (critical path)
         it is stopped: started again, so that it serves
         ~ power_state = "stopped" -> "running"

    Plan: 1 to update (1 step).
    Estimated duration: 1m.
    Critical path:
         update vm.nfs@g1 (1m)
    --- stopped, and resized where its hardware cannot host the size
    1. ~ update vm.nfs@g1  ~3m  (critical path)
         it is stopped: deallocated to resize to Standard_D4s_v5 (its current hardware cannot host that size) and started again, so that it serves
         ~ power_state = "stopped" -> "running"
         ~ size        = "Standard_E8s_v5" -> "Standard_D4s_v5"

    Plan: 1 to update (1 step).
    Estimated duration: 3m.
    Critical path:
         update vm.nfs@g1 (3m)
    --- deallocating, on its way
    No changes: the world matches the spec.

    --- a power state ARM did not give
    No changes: the world matches the spec.
    "#);

    // Applied, the VM reads running: the next plan has no changes.
    let spec = spec(&[("small.toml", SMALL)]);
    let before = with_attribute(
        &small_converged(&spec),
        "vm.nfs@g1",
        "power_state",
        serde_json::json!("deallocated"),
    );
    let rules = ferry_providers::rule_book();
    let plan = ferry_plan::plan(&spec, &before, &rules, &PlanConfig::default()).unwrap();
    let after = converge(&before, &plan, 1);
    let again = ferry_plan::plan(&spec, &after, &rules, &PlanConfig::default()).unwrap();
    assert!(
        again.is_empty(),
        "{}",
        render::text(&again, &TextOptions::default())
    );
}

/// The old generation's VM, deallocated by the failover's fence, is retired and nothing else,
/// while the failover is in progress (whatever its trigger reads now) and after it; the VM of
/// the generation that serves is started when it reads deallocated.
#[test]
fn the_vm_a_failover_fenced_is_never_started_only_retired() {
    let spec = data100();
    let rules = ferry_providers::rule_book();
    let plan = |snapshot: &Snapshot| {
        ferry_plan::plan(&spec, snapshot, &rules, &PlanConfig::default())
            .unwrap_or_else(|errors| panic!("{errors}"))
    };
    let in_progress = ferry_core::Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy: GET /readyz timed out after 5s".into(),
    };
    // Killed after the fence, with the API server still down or answering again.
    let mut during = Vec::new();
    for reading in ["observed-apiserver-down.json", "observed-healthy.json"] {
        let mut fenced = with_attribute(
            &data100_snapshot(reading),
            "vm.nfs@g1",
            "power_state",
            serde_json::json!("deallocated"),
        );
        fenced.failover_in_progress = Some(in_progress.clone());
        let plan = plan(&fenced);
        let old: Vec<&str> = plan
            .steps
            .iter()
            .filter(|step| step.address.to_string() == "vm.nfs@g1")
            .map(|step| step.id.0.as_str())
            .collect();
        assert_eq!(old, ["vm.nfs@g1:retire"], "{reading}");
        assert!(!starts_a_vm(&plan), "{reading}: {}", vm_steps(&plan));
        during.push(vm_steps(&plan));
    }
    assert_eq!(during[0], during[1]);

    // After it: generation 2 serves. Its VM reads deallocated (stopped in the portal), and the
    // old one is still there, deallocated (its retirement has not run yet).
    let before = data100_snapshot("observed-apiserver-down.json");
    let mut after = converge(&before, &plan(&before), 2);
    after.insert(
        "check.prod_tls".parse().unwrap(),
        Observation::present(Default::default()),
    );
    let after = with_attribute(
        &after,
        "vm.nfs@g2",
        "power_state",
        serde_json::json!("deallocated"),
    );
    let mut old_vm = before.get(&"vm.nfs@g1".parse().unwrap()).unwrap().clone();
    if let Observation::Present { attributes, .. } = &mut old_vm {
        attributes.insert("power_state".into(), serde_json::json!("deallocated"));
    }
    let mut after = after;
    after.insert("vm.nfs@g1".parse().unwrap(), old_vm);
    let after_plan = plan(&after);

    insta::assert_snapshot!(format!(
        "--- during the failover\n{}--- after it\n{}",
        during[0],
        render::text(&after_plan, &TextOptions { color: false }),
    ), @r#"
    --- during the failover
    vm.nfs@g2:create: generation 2 is built beside generation 1 (failover)
    vm.nfs@g1:retire: generation 2 serves now: generation 1 is retired
    --- after it
    1. ~ update vm.nfs@g2  ~1m  (critical path)
         it is deallocated: started again, so that it serves
         ~ power_state = "deallocated" -> "running"

    2. ? wait check.prod_tls  ~10m  (critical path)
         dns_record.prod changes: wait until the check passes again
         after 1

    3. - retire vm.nfs@g1  ~1m 30s  (critical path)
         generation 2 serves now: generation 1 is retired
         after every step but the retirements

    Plan: 1 to update, 1 to wait, 1 to retire (3 steps).
    Estimated duration: 12m 30s.
    Critical path:
         update vm.nfs@g2 (1m)
      -> wait check.prod_tls (10m)
      -> retire vm.nfs@g1 (1m 30s)
    "#);
}

/// A delete the spec asks for (`ensure = "absent"`) carries the spec's literal fields, so that
/// the provider finds what it deletes even when ferry's state forgot it; a value that waits on
/// another step's output is left out, since a delete never waits for one.
#[test]
fn a_delete_the_spec_asks_for_carries_its_literal_fields() {
    let absent_spec = SMALL.replace(
        "lun = 0\n",
        "lun = 0\ntags = { nfs = \"${vm.nfs.private_ip}\", team = \"data\" }\nensure = \"absent\"\nallow_destroy = true\n",
    );
    let spec = spec(&[("small.toml", &absent_spec)]);
    let converged = small_converged(&support::spec(&[("small.toml", SMALL)]));
    let plan = ferry_plan::plan(
        &spec,
        &converged,
        &ferry_providers::rule_book(),
        &PlanConfig {
            allow_destroy: true,
            ..PlanConfig::default()
        },
    )
    .unwrap();
    let delete = plan
        .steps
        .iter()
        .find(|step| step.id.0 == "disk.data:delete")
        .expect("the disk's delete");
    let mut inputs: Vec<String> = delete
        .inputs
        .iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    inputs.sort();
    // The tags wait on the VM's private_ip: left out, whole.
    insta::assert_snapshot!(inputs.join("\n"), @r#"
    location = "westeurope"
    lun = 0
    name = "small-data"
    resource_group = "resource_group.main@g1"
    size_gb = 256
    vm = "vm.nfs@g1"
    "#);
}

// Issue 18, item 1: the world is the source of truth; the state is a cache that can be lost.

/// data100 in the middle of its failover to generation 2, interrupted right after the
/// attaches: generation 2 built, the old NFS VM fenced, the pool exported from it, every disk
/// detached, moved and attached to `vm.nfs@g2`, the pool not imported yet.
fn data100_interrupted_after_the_attaches() -> Snapshot {
    let spec = data100();
    let before = data100_snapshot("observed-apiserver-down.json");
    let plan = ferry_plan::plan(
        &spec,
        &before,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    let mut done = plan.clone();
    done.steps.retain(|step| {
        matches!(step.action, Action::Fence | Action::Export)
            || (step.action == Action::Create && step.address.generation == Some(2))
    });
    let mut snapshot = converge(&before, &done, 1);
    for lun in 0..4 {
        let disk = format!("disk.home{lun}");
        snapshot = with_attribute(
            &snapshot,
            &disk,
            "resource_group",
            serde_json::json!("resource_group.main@g2"),
        );
        snapshot = with_attribute(&snapshot, &disk, "vm", serde_json::json!("vm.nfs@g2"));
    }
    let snapshot = with_attribute(&snapshot, "zfs_pool.home", "imported", false.into());
    assert!(
        snapshot
            .get(&"vm.nfs@g1".parse().unwrap())
            .unwrap()
            .is_fenced_host()
    );
    snapshot
}

/// The finding: with the state lost (moved away, as ferry's own error message once suggested)
/// in the middle of a failover, the plan started the fenced old VM, updated each disk's `vm`
/// back to it in place and moved the pool back with no export or fence. From the world alone,
/// the plan now finishes that same failover: the import on generation 2, the hubs, DNS and the
/// retirement of generation 1, and nothing that starts `vm.nfs@g1` or touches a disk.
#[test]
fn a_lost_state_in_the_middle_of_a_failover_finishes_that_failover_from_the_world() {
    let spec = data100();
    let mut lost = data100_interrupted_after_the_attaches();
    lost.active_generation = 0;
    lost.failover_in_progress = None;
    for state_says in [0, 1] {
        lost.active_generation = state_says;
        for request in [FailoverRequest::Policy, FailoverRequest::Force] {
            let plan = ferry_plan::plan(
                &spec,
                &lost,
                &ferry_providers::rule_book(),
                &PlanConfig {
                    failover: request,
                    ..PlanConfig::default()
                },
            )
            .unwrap_or_else(|errors| panic!("{errors}"));
            let failover = plan.failover.as_ref().expect("the failover is finished");
            assert_eq!((failover.from_generation, failover.to_generation), (1, 2));
            assert!(!starts_a_vm(&plan), "{}", vm_steps(&plan));
            let disk_steps: Vec<&str> = plan
                .steps
                .iter()
                .filter(|step| step.address.kind() == Kind::Disk)
                .map(|step| step.id.0.as_str())
                .collect();
            assert_eq!(disk_steps, Vec::<&str>::new());
            let import = plan
                .steps
                .iter()
                .find(|step| step.id.0 == "zfs_pool.home:import")
                .expect("the pool is imported on generation 2");
            assert_eq!(import.inputs["host"], "vm.nfs@g2");
            assert!(
                plan.steps
                    .iter()
                    .filter(|step| step.address.generation == Some(1))
                    .all(|step| step.action == Action::Retire),
                "generation 1 is only retired"
            );
        }
    }
    lost.active_generation = 0;
    let text = text(&spec, &lost, &PlanConfig::default());
    insta::assert_snapshot!(text.lines().take(2).collect::<Vec<_>>().join("\n"), @r"
    Failover from generation 1 to generation 2
      because finishing the failover an earlier apply started: ferry's state is lost or stale, and the world shows a failover under way: disk.home0's resource_group reads resource_group.main@g2, but zfs_pool.home's host reads vm.nfs@g1
    ");
    // --no-failover would leave it half done.
    insta::assert_snapshot!(
        self::text(
            &spec,
            &lost,
            &PlanConfig {
                failover: FailoverRequest::Never,
                ..PlanConfig::default()
            }
        ),
        @r"
    error: the failover from generation 1 to 2 that an earlier apply started is not finished, and --no-failover would leave it half done
      help: run the command without --no-failover: the plan finishes that failover
    no plan: 1 problem to fix first
    "
    );
}

/// After a finished failover the state is lost: the plan is "no changes" on generation 2, not
/// a move back to generation 1.
#[test]
fn a_lost_state_after_a_finished_failover_plans_no_changes_on_the_new_generation() {
    let spec = data100();
    let rules = ferry_providers::rule_book();
    let before = data100_snapshot("observed-apiserver-down.json");
    let plan = ferry_plan::plan(&spec, &before, &rules, &PlanConfig::default()).unwrap();
    let mut after = converge(&before, &plan, 2);
    after.insert(
        "check.prod_tls".parse().unwrap(),
        Observation::present(Default::default()),
    );
    for state_says in [0, 1] {
        after.active_generation = state_says;
        let again = ferry_plan::plan(&spec, &after, &rules, &PlanConfig::default())
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert!(
            again.is_empty() && again.failover.is_none(),
            "{}",
            render::text(&again, &TextOptions::default())
        );
        assert_eq!(again.notes.len(), 1, "{:?}", again.notes);
    }
}

fn replacing(addresses: &[&str]) -> PlanConfig {
    PlanConfig {
        replace: addresses
            .iter()
            .map(|address| address.parse().unwrap())
            .collect(),
        ..PlanConfig::default()
    }
}

/// `--replace`: a replaceable resource that matches the spec is built again, with what
/// depends on it; in a failover it is moot and said so.
#[test]
fn a_replacement_asked_for_is_planned_for_the_serving_generation() {
    let healthy = data100_snapshot("observed-healthy.json");
    insta::assert_snapshot!(format!(
        "--- --replace aks_cluster.hub\n{}\n--- --replace aks_cluster.hub in a failover (notes only)\n{}",
        check(&data100(), &healthy, &replacing(&["aks_cluster.hub"])),
        ferry_plan::plan(
            &data100(),
            &data100_snapshot("observed-apiserver-down.json"),
            &ferry_providers::rule_book(),
            &replacing(&["aks_cluster.hub"]),
        )
        .unwrap()
        .notes
        .join("\n"),
    ));
}

/// What `--replace` refuses, every problem at once: an address the spec lacks, a stateful
/// resource, and what a stateful resource is placed on (the NFS VM holds the disks).
#[test]
fn a_replacement_of_data_or_of_what_holds_it_is_refused() {
    insta::assert_snapshot!(check(
        &data100(),
        &data100_snapshot("observed-healthy.json"),
        &replacing(&["vm.nope", "disk.home0", "vm.nfs"]),
    ));
}
