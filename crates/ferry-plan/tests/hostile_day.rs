//! Issue 18, items 3 and 4: a plan made on a hostile day never says "no changes" when ferry
//! does not know, an unknown reading holds back what relies on it, and a resource whose
//! provisioning failed is built again.

mod support;

use ferry_core::{Action, Failover, Health, InstanceAddress, Observation, Plan, Snapshot};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{FailoverRequest, PlanConfig, Severity, Verdict};
use support::{converge, data100, data100_snapshot};

fn plan(snapshot: &Snapshot, config: &PlanConfig) -> Plan {
    ferry_plan::plan(&data100(), snapshot, &ferry_providers::rule_book(), config)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

fn address(text: &str) -> InstanceAddress {
    text.parse().unwrap()
}

fn text(plan: &Plan) -> String {
    render::text(plan, &TextOptions { color: false })
}

fn steps_of<'a>(plan: &'a Plan, instance: &str) -> Vec<&'a ferry_core::Step> {
    plan.steps
        .iter()
        .filter(|step| step.address == address(instance))
        .collect()
}

fn set_health(snapshot: &mut Snapshot, instance: &str, health: Health) {
    match snapshot.resources.get_mut(&address(instance)) {
        Some(Observation::Present { health: old, .. }) => *old = health,
        other => panic!("{instance} is not present: {other:?}"),
    }
}

/// The failover with `dns_record.prod` unreadable (the DNS server down): the record gets no
/// step and cannot be repointed, so the TLS check after it must not run, and the old
/// generation it may still point at (its ingress address, its group) must not be retired.
/// Before: the record got no step and no note, the check waited from time 0, and every old
/// instance was retired, the ingress the name still served included; the plan exited 2.
#[test]
fn an_unknown_record_holds_back_its_check_and_the_retirement_of_what_it_may_point_at() {
    let mut snapshot = data100_snapshot("observed-apiserver-down.json");
    snapshot.insert(
        address("dns_record.prod"),
        Observation::Unknown {
            reason: "dns 127.0.0.53:53: connection refused".into(),
        },
    );
    let plan = plan(&snapshot, &PlanConfig::default());
    let shown = text(&plan);
    assert!(plan.failover.is_some(), "{shown}");
    assert!(steps_of(&plan, "dns_record.prod").is_empty(), "{shown}");
    assert!(steps_of(&plan, "check.prod_tls").is_empty(), "{shown}");
    for old in [
        "public_ip.ingress@g1",
        "resource_group.main@g1",
        "aks_cluster.hub@g1",
    ] {
        assert!(
            steps_of(&plan, old).is_empty(),
            "{old} is retired while the record may still rely on it:\n{shown}"
        );
    }
    // The rest of the failover goes ahead: the new generation is built, the data moves.
    assert!(
        plan.steps
            .iter()
            .any(|step| step.action == Action::Import && step.address == address("zfs_pool.home")),
        "{shown}"
    );
    let record = plan
        .unknown
        .iter()
        .find(|reading| reading.address == address("dns_record.prod"))
        .unwrap_or_else(|| panic!("the unknown record is not listed:\n{shown}"));
    assert_eq!(record.held_back, vec!["check.prod_tls".parse().unwrap()]);
    assert!(shown.contains("Unknown readings:"), "{shown}");
    assert!(
        shown.contains("public_ip.ingress@g1: not retired, dns_record.prod reads unknown"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&render::json(&plan)).unwrap();
    assert_eq!(json["unknown"][0]["address"], "dns_record.prod", "{json}");
    // Steps to apply and an unknown reading: the unknown wins.
    assert_eq!(Verdict::of(&plan).exit_code(), 4);
}

/// A healthy day with one unknown reading, one failover left to a manual mode, and resources
/// unhealthy that are not triggers: never "no changes", each with its own exit code.
#[test]
fn nothing_is_no_changes_when_ferry_does_not_know_or_something_is_unhealthy() {
    let healthy = data100_snapshot("observed-healthy.json");
    let clean = plan(&healthy, &PlanConfig::default());
    assert_eq!(
        (Verdict::of(&clean).exit_code(), text(&clean).as_str()),
        (0, "No changes: the world matches the spec.\n")
    );

    // A wrong client secret: every ARM reading unknown.
    let mut refused = healthy.clone();
    for (instance, observation) in refused.resources.iter_mut() {
        if !matches!(
            instance.kind(),
            ferry_core::Kind::Check | ferry_core::Kind::Hook
        ) {
            *observation = Observation::Unknown {
                reason: "the credential was refused: AADSTS7000215 invalid client secret".into(),
            };
        }
    }
    let unknown = plan(&refused, &PlanConfig::default());
    let shown = text(&unknown);
    assert!(unknown.is_empty(), "{shown}");
    assert!(!shown.contains("No changes"), "{shown}");
    assert!(shown.contains("readings are unknown"), "{shown}");
    assert_eq!(unknown.unknown.len(), 13, "{shown}");
    assert_eq!(Verdict::of(&unknown).exit_code(), 4);

    // The NFS VM failed and the pool degraded: nothing to apply, but a person must look.
    let mut unwell = healthy.clone();
    set_health(
        &mut unwell,
        "vm.nfs@g1",
        Health::Unhealthy {
            reason: "ARM reports provisioningState Failed".into(),
        },
    );
    set_health(
        &mut unwell,
        "zfs_pool.home",
        Health::Unhealthy {
            reason: "the pool is DEGRADED: /dev/disk/azure/scsi1/lun2 is FAULTED".into(),
        },
    );
    let attention = plan(&unwell, &PlanConfig::default());
    let shown = text(&attention);
    assert!(attention.is_empty(), "{shown}");
    let warned: Vec<String> = attention
        .warnings
        .iter()
        .map(|warning| warning.address.to_string())
        .collect();
    assert_eq!(warned, ["vm.nfs@g1", "zfs_pool.home"], "{shown}");
    assert!(
        shown.contains("Warnings:") && !shown.contains("No changes"),
        "{shown}"
    );
    assert_eq!(Verdict::of(&attention).exit_code(), 5);

    // The API server down, the spec's mode manual: a failover is due, not automatic.
    let mut spec = data100();
    spec.failover.mode = ferry_spec::FailoverMode::Manual;
    let down = data100_snapshot("observed-apiserver-down.json");
    let due = ferry_plan::plan(
        &spec,
        &down,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    let shown = text(&due);
    // (Its only step is the wait for the TLS check, which does not pass now.)
    assert!(
        due.failover.is_none() && due.failover_due.is_some(),
        "{shown}"
    );
    assert!(due.warnings.is_empty(), "{shown}");
    assert!(shown.contains("ferry plan --failover"), "{shown}");
    assert_eq!(Verdict::of(&due).exit_code(), 3);
    // The same with --no-failover (and the TLS check passing): the unhealthy trigger is a
    // warning.
    let mut down = down;
    set_health(&mut down, "check.prod_tls", Health::Healthy);
    let declined = plan(
        &down,
        &PlanConfig {
            failover: FailoverRequest::Never,
            ..PlanConfig::default()
        },
    );
    assert_eq!(Verdict::of(&declined).exit_code(), 5, "{}", text(&declined));
}

/// The order of severities when several hold: 4, then 3, 2, 5, 0.
#[test]
fn the_most_severe_finding_gives_the_exit_code() {
    use ferry_plan::Finding;
    let codes = |severities: &[Severity]| {
        let mut verdict = Verdict::default();
        for severity in severities {
            verdict.push(Finding::new(*severity, "x"));
        }
        verdict.exit_code()
    };
    assert_eq!(codes(&[]), 0);
    assert_eq!(codes(&[Severity::Attention]), 5);
    assert_eq!(codes(&[Severity::Attention, Severity::Changes]), 2);
    assert_eq!(codes(&[Severity::Changes, Severity::FailoverDue]), 3);
    assert_eq!(
        codes(&[
            Severity::FailoverDue,
            Severity::Unknown,
            Severity::Attention
        ]),
        4
    );
}

fn failed(reason: &str) -> Health {
    Health::Failed {
        reason: reason.into(),
    }
}

const QUOTA: &str = "ARM reports provisioningState Failed (QuotaExceeded: Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota)";

/// A first build whose cluster create ended `Failed` (a quota error): the next plan builds it
/// again and says why. Before: the cluster read present, its diff was empty, and the plan said
/// "No changes" (exit 0) with the state at generation 0.
#[test]
fn a_cluster_whose_first_create_failed_is_built_again_and_the_plan_says_why() {
    let empty = Snapshot::new(0);
    let first = plan(&empty, &PlanConfig::default());
    let mut after = converge(&empty, &first, 0);
    // The apply stopped at the cluster: nothing after it ran, which the providers read so.
    for step in &first.steps {
        if step.address.kind() == ferry_core::Kind::Hook
            || step.address.kind() == ferry_core::Kind::Check
            || step.address.kind() == ferry_core::Kind::DnsRecord
        {
            after.insert(step.address.clone(), Observation::Absent);
        }
    }
    set_health(&mut after, "aks_cluster.hub@g1", failed(QUOTA));
    let again = plan(&after, &PlanConfig::default());
    let shown = text(&again);
    let cluster = steps_of(&again, "aks_cluster.hub@g1");
    assert_eq!(cluster.len(), 1, "{shown}");
    assert_eq!(cluster[0].action, Action::Replace, "{shown}");
    assert!(
        cluster[0].reason.starts_with(
            "its provisioning failed (ARM reports provisioningState Failed (QuotaExceeded"
        ),
        "{shown}"
    );
    // What needs the cluster follows its new build.
    let hook = steps_of(&again, "hook.staging_hub@g1");
    assert_eq!(hook.len(), 1, "{shown}");
    assert_eq!(Verdict::of(&again).exit_code(), 2);
}

/// The same inside a failover: the new generation's cluster create failed; the failover is
/// recorded in the state, and the next plan builds that cluster again, not a third generation.
#[test]
fn a_failed_cluster_create_inside_a_failover_is_built_again_by_the_next_plan() {
    let down = data100_snapshot("observed-apiserver-down.json");
    let failover = plan(&down, &PlanConfig::default());
    let mut after = down.clone();
    // The new generation's network and cluster were created; the cluster ended Failed.
    for step in &failover.steps {
        if step.address.generation == Some(2)
            && matches!(
                step.address.kind(),
                ferry_core::Kind::ResourceGroup
                    | ferry_core::Kind::Vnet
                    | ferry_core::Kind::PublicIp
                    | ferry_core::Kind::AksCluster
            )
        {
            let converged = converge(&down, &only(&failover, &step.id), 1);
            after.insert(
                step.address.clone(),
                converged.get(&step.address).unwrap().clone(),
            );
        }
    }
    set_health(&mut after, "aks_cluster.hub@g2", failed(QUOTA));
    after.failover_in_progress = Some(Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy".into(),
    });
    let again = plan(&after, &PlanConfig::default());
    let shown = text(&again);
    assert_eq!(
        again
            .failover
            .as_ref()
            .map(|failover| failover.to_generation),
        Some(2),
        "{shown}"
    );
    let cluster = steps_of(&again, "aks_cluster.hub@g2");
    assert_eq!(cluster.len(), 1, "{shown}");
    assert_eq!(cluster[0].action, Action::Replace, "{shown}");
    assert!(cluster[0].reason.contains("QuotaExceeded"), "{shown}");
    assert!(steps_of(&again, "aks_cluster.hub@g3").is_empty(), "{shown}");
}

fn creating() -> Health {
    Health::Creating {
        reason: "ARM reports provisioningState Creating".into(),
    }
}

/// An apply killed while Azure was creating the cluster: the next plan reads the cluster
/// present but still `Creating`. It plans the cluster's create again, under the same step id
/// (the engine resumes the operation its journal recorded), and everything that needs the
/// cluster waits for that step. Before: the cluster read present with nothing to change, got
/// no step, and the hooks that deploy onto it ran at once and failed against a cluster that
/// did not exist yet.
#[test]
fn a_cluster_still_being_created_by_a_killed_apply_is_created_again_before_its_hooks() {
    let empty = Snapshot::new(0);
    let first = plan(&empty, &PlanConfig::default());
    let mut after = converge(&empty, &first, 0);
    for step in &first.steps {
        if matches!(
            step.address.kind(),
            ferry_core::Kind::Hook | ferry_core::Kind::Check | ferry_core::Kind::DnsRecord
        ) {
            after.insert(step.address.clone(), Observation::Absent);
        }
    }
    set_health(&mut after, "aks_cluster.hub@g1", creating());
    let again = plan(&after, &PlanConfig::default());
    let shown = text(&again);
    let cluster = steps_of(&again, "aks_cluster.hub@g1");
    assert_eq!(cluster.len(), 1, "{shown}");
    let create = first
        .steps
        .iter()
        .find(|step| step.address == address("aks_cluster.hub@g1"))
        .unwrap();
    assert_eq!(cluster[0].action, Action::Create, "{shown}");
    assert_eq!(cluster[0].id, create.id, "the journal's step id: {shown}");
    assert_eq!(
        cluster[0].reason,
        "its create has not finished (ARM reports provisioningState Creating): the step waits for it and completes it"
    );
    let hook = steps_of(&again, "hook.staging_hub@g1");
    assert_eq!(hook.len(), 1, "{shown}");
    assert!(
        again.ancestors(&hook[0].id).contains(&cluster[0].id),
        "the hook waits for the cluster: {shown}"
    );
    assert_eq!(Verdict::of(&again).exit_code(), 2);
    insta::assert_snapshot!(
        shown
            .lines()
            .filter(|line| line.contains("create aks_cluster.hub") || line.contains("not finished"))
            .collect::<Vec<_>>()
            .join("\n"),
        @r"
    1. + create aks_cluster.hub@g1  ~8m  (critical path)
         its create has not finished (ARM reports provisioningState Creating): the step waits for it and completes it
         create aks_cluster.hub@g1 (8m)
    "
    );
}

/// The same inside a failover, and for a VM: the new generation's NFS VM is still being
/// created when the apply is killed; the next plan finishes that failover (not a third
/// generation) and creates the VM again before the pool's import.
#[test]
fn a_vm_still_being_created_inside_a_failover_is_created_again_before_the_import() {
    let down = data100_snapshot("observed-apiserver-down.json");
    let failover = plan(&down, &PlanConfig::default());
    let mut after = down.clone();
    for step in &failover.steps {
        if step.address.generation == Some(2)
            && matches!(
                step.address.kind(),
                ferry_core::Kind::ResourceGroup | ferry_core::Kind::Vnet | ferry_core::Kind::Vm
            )
        {
            let converged = converge(&down, &only(&failover, &step.id), 1);
            after.insert(
                step.address.clone(),
                converged.get(&step.address).unwrap().clone(),
            );
        }
    }
    let vm = failover
        .steps
        .iter()
        .find(|step| {
            step.address.kind() == ferry_core::Kind::Vm && step.address.generation == Some(2)
        })
        .expect("the failover builds a VM")
        .clone();
    set_health(&mut after, &vm.address.to_string(), creating());
    after.failover_in_progress = Some(Failover {
        from_generation: 1,
        to_generation: 2,
        trigger: "aks_cluster.hub@g1 is unhealthy".into(),
    });
    let again = plan(&after, &PlanConfig::default());
    let shown = text(&again);
    let steps = steps_of(&again, &vm.address.to_string());
    assert_eq!(steps.len(), 1, "{shown}");
    assert_eq!(steps[0].action, Action::Create, "{shown}");
    assert_eq!(steps[0].id, vm.id, "{shown}");
    let import = again
        .steps
        .iter()
        .find(|step| step.action == Action::Import)
        .expect("the failover imports the pool");
    assert!(
        again.ancestors(&import.id).contains(&vm.id),
        "the import waits for the VM: {shown}"
    );
    assert!(
        again
            .steps
            .iter()
            .all(|step| step.address.generation != Some(3)),
        "{shown}"
    );
}

/// A plan of just one of `plan`'s steps, to converge that step alone.
fn only(plan: &Plan, id: &ferry_core::StepId) -> Plan {
    let mut only = plan.clone();
    only.steps.retain(|step| &step.id == id);
    only
}
