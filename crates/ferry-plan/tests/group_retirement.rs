//! A retired generation's resource group is deleted last: ARM refuses every write into a group
//! whose deletion has started (`409 ResourceGroupBeingDeleted`), so every step that touches
//! something in the group (its own generation's retirements, and the moves of stateful
//! resources out of it) ends before the group's delete begins.

mod support;

use ferry_core::{Action, Kind, Plan, Snapshot};
use ferry_plan::{FailoverRequest, PlanConfig};
use support::{converge, data100, data100_snapshot};

/// Every step the plan runs before `id` (retirements after every other step).
fn ancestors(plan: &Plan, id: &str) -> std::collections::BTreeSet<String> {
    plan.ancestors(&ferry_core::StepId(id.to_owned()))
        .into_iter()
        .map(|step| step.0)
        .collect()
}

/// Checks that each group retirement comes after every step of what lives in that group, and
/// returns the steps it checked, by group retirement.
fn check_groups_retire_last(spec: &ferry_spec::Spec, plan: &Plan) -> Vec<(String, Vec<String>)> {
    let mut checked = Vec::new();
    for group_retire in plan
        .steps
        .iter()
        .filter(|step| step.action == Action::Retire && step.address.kind() == Kind::ResourceGroup)
    {
        let group = group_retire.address.address.to_string();
        let generation = group_retire.address.generation;
        let before = ancestors(plan, &group_retire.id.0);
        let mut in_group = Vec::new();
        for step in &plan.steps {
            let lives_in_group = spec
                .resources
                .get(&step.address.address)
                .and_then(|resource| resource.fields.get("resource_group"))
                .and_then(|value| value.as_str())
                == Some(group.as_str());
            // Its own generation's instances, and stateful ones that move out of it.
            let same_generation =
                step.address.generation.is_none() || step.address.generation == generation;
            if lives_in_group && same_generation {
                assert!(
                    before.contains(&step.id.0),
                    "{} may start while {} runs: ARM would refuse it with ResourceGroupBeingDeleted",
                    group_retire.id.0,
                    step.id.0
                );
                in_group.push(step.id.0.clone());
            }
        }
        checked.push((group_retire.id.0.clone(), in_group));
    }
    checked
}

#[test]
fn a_failover_deletes_the_old_group_after_everything_in_it() {
    let spec = data100();
    let sick = data100_snapshot("observed-apiserver-down.json");
    let plan = ferry_plan::plan(
        &spec,
        &sick,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
    .unwrap();
    insta::assert_debug_snapshot!("failover", check_groups_retire_last(&spec, &plan));

    // And again when failing back: generation 2's group goes after generation 3 is built.
    let after_failover: Snapshot = converge(&sick, &plan, 2);
    let failback = ferry_plan::plan(
        &spec,
        &after_failover,
        &ferry_providers::rule_book(),
        &PlanConfig {
            failover: FailoverRequest::Force,
            ..PlanConfig::default()
        },
    )
    .unwrap();
    insta::assert_debug_snapshot!("failback", check_groups_retire_last(&spec, &failback));
}
