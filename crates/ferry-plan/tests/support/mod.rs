//! Helpers shared by the planner's tests and benchmarks: loading specs from text, and
//! observations that match a plan once it is applied.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use ferry_testkit::synthetic;

use std::path::{Path, PathBuf};

use ferry_core::value::{self, Expression};
use ferry_core::{Action, Attributes, Observation, Plan, Snapshot, Value};
use ferry_spec::{LoadOptions, Spec};

/// Loads a spec from `(file name, text)` pairs, panicking with the rendered errors.
pub fn spec(files: &[(&str, &str)]) -> Spec {
    let files = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), (*text).to_owned()))
        .collect();
    match ferry_spec::load_sources(
        Path::new("spec"),
        files,
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    ) {
        Ok(spec) => spec,
        Err(errors) => panic!("{}", errors.render(false)),
    }
}

/// The data100 spec from the repository.
pub fn data100() -> Spec {
    repository_spec("specs/data100")
}

/// The data100 spec with a warm standby (`specs/data100/warm`).
pub fn data100_warm() -> Spec {
    repository_spec("specs/data100/warm")
}

/// The data100 spec with a hot standby (`specs/data100/hot`).
pub fn data100_hot() -> Spec {
    repository_spec("specs/data100/hot")
}

/// A spec folder of the repository, loaded, panicking with the rendered errors.
fn repository_spec(folder: &str) -> Spec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(folder);
    ferry_spec::load(
        &root,
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)))
}

pub fn data100_snapshot(name: &str) -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../specs/data100")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The output a converged instance reports: made-up but stable values.
fn output(instance: &str, name: &str) -> Value {
    Value::String(format!("{name}-of-{instance}"))
}

/// What providers would read after `plan` was applied on top of `before`: every step's
/// inputs, with the outputs they waited for filled in, become the instance's attributes.
pub fn converge(before: &Snapshot, plan: &Plan, active_generation: u32) -> Snapshot {
    let mut after = before.clone();
    after.active_generation = active_generation;
    // An output that is a field too (a static IP's name) is the field's value, as the plan's
    // own step on the instance sets it; other outputs are made up.
    let field_of = |instance: &ferry_core::InstanceAddress, name: &str| -> Option<Value> {
        plan.steps
            .iter()
            .filter(|step| &step.address == instance)
            .find_map(|step| step.inputs.get(name))
            .filter(|value| !value::has_expression(value))
            .cloned()
    };
    for step in &plan.steps {
        let instance = step.address.clone();
        let resolved = value::resolve(
            &Value::Object(step.inputs.clone().into_iter().collect()),
            &|expression| match expression {
                Expression::Output {
                    address,
                    generation,
                    output: name,
                } => {
                    let at = address.at(*generation);
                    Some(field_of(&at, name).unwrap_or_else(|| output(&at.to_string(), name)))
                }
                _ => None,
            },
        );
        let mut attributes: Attributes = match after.get(&instance) {
            Some(Observation::Present { attributes, .. }) => attributes.clone(),
            _ => Attributes::new(),
        };
        if let Value::Object(map) = resolved {
            attributes.extend(map);
        }
        match step.action {
            Action::Delete | Action::Retire => {
                after.resources.remove(&instance);
            }
            Action::Fence => {
                attributes.insert("power_state".into(), Value::String("deallocated".into()));
                after.insert(instance, Observation::present(attributes));
            }
            _ => {
                after.insert(instance, Observation::present(attributes));
            }
        }
    }
    // The instances whose outputs the steps waited for now report them.
    for step in &plan.steps {
        for (_, expression) in
            value::expressions(&Value::Object(step.inputs.clone().into_iter().collect()))
        {
            if let Expression::Output {
                address,
                generation,
                output: name,
            } = expression
            {
                let instance = address.at(generation);
                if let Some(Observation::Present { attributes, .. }) =
                    after.resources.get_mut(&instance)
                    && field_of(&instance, &name).is_none()
                {
                    attributes.insert(name.clone(), output(&instance.to_string(), &name));
                }
            }
        }
    }
    after
}
