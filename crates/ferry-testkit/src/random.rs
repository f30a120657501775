//! Random DAG plans, for property tests and benchmarks.
//!
//! Edges only go from a lower index to a higher one, so every generated plan is acyclic and its
//! step order is already a topological order, as a planner's would be.

use ferry_core::{Action, Kind, Plan, ResourceAddress, Step, StepId, Value};

use crate::baseline::critical_path;

/// A small deterministic generator (splitmix64): the same seed always gives the same plan,
/// without a dependency on `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The shape of a random plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomPlan {
    pub seed: u64,
    pub steps: usize,
    /// Each step gets between 0 and this many predecessors.
    pub max_predecessors: usize,
    /// Predecessors are drawn from the previous `window` steps: a small window gives long
    /// chains, a large one a wide, shallow DAG.
    pub window: usize,
    /// Estimates are drawn from `1..=max_estimate_seconds`.
    pub max_estimate_seconds: u64,
}

impl Default for RandomPlan {
    fn default() -> Self {
        Self {
            seed: 1,
            steps: 50,
            max_predecessors: 3,
            window: 20,
            max_estimate_seconds: 600,
        }
    }
}

/// A step `kind.sINDEX:create` with one input per predecessor referencing its `id`, so that
/// running the plan exercises the engine's resolution of `${...}`.
fn numbered_step(index: usize, kind: Kind, estimate_seconds: u64, after: Vec<&Step>) -> Step {
    let address = ResourceAddress::new(kind, format!("s{index}")).at(None);
    let mut inputs = ferry_core::Attributes::new();
    inputs.insert("index".to_owned(), Value::from(index));
    for predecessor in &after {
        inputs.insert(
            format!("after_{}", predecessor.address.address.name),
            Value::String(format!("${{{}.id}}", predecessor.address)),
        );
    }
    Step {
        id: StepId::new(&address, Action::Create),
        address,
        action: Action::Create,
        reason: "absent".to_owned(),
        after: after.iter().map(|step| step.id.clone()).collect(),
        estimate_seconds,
        changes: Default::default(),
        inputs,
        warning: None,
    }
}

/// Wraps steps into a plan with its summary and critical path.
/// A step from its id (`INSTANCE:ACTION`), estimate and the ids it follows, for hand-written
/// plans in tests.
pub fn step(id: &str, estimate_seconds: u64, after: &[&str]) -> Step {
    let (instance, action) = id.split_once(':').expect("a step id is INSTANCE:ACTION");
    let instance: ferry_core::InstanceAddress = instance.parse().expect("a valid instance");
    let action: ferry_core::Action =
        serde_json::from_value(serde_json::Value::String(action.to_owned()))
            .expect("a valid action");
    Step {
        id: ferry_core::StepId::new(&instance, action),
        address: instance,
        action,
        reason: "test".to_owned(),
        after: after
            .iter()
            .map(|id| ferry_core::StepId((*id).to_owned()))
            .collect(),
        estimate_seconds,
        changes: Default::default(),
        inputs: Default::default(),
        warning: None,
    }
}

pub fn plan_of(steps: Vec<Step>) -> Plan {
    let (critical_path, estimated_seconds) = critical_path(&steps);
    Plan::of_steps(steps, critical_path, estimated_seconds)
}

pub fn random_plan(shape: &RandomPlan) -> Plan {
    let mut random = SplitMix::new(shape.seed);
    let mut steps: Vec<Step> = Vec::with_capacity(shape.steps);
    for index in 0..shape.steps {
        let kind = Kind::ALL[random.below(Kind::ALL.len() as u64) as usize];
        let estimate = 1 + random.below(shape.max_estimate_seconds.max(1));
        let mut predecessors: Vec<usize> = Vec::new();
        if index > 0 {
            let count = random.below(shape.max_predecessors as u64 + 1) as usize;
            let lowest = index.saturating_sub(shape.window.max(1));
            for _ in 0..count {
                let predecessor = lowest + random.below((index - lowest) as u64) as usize;
                if !predecessors.contains(&predecessor) {
                    predecessors.push(predecessor);
                }
            }
            predecessors.sort_unstable();
        }
        let after = predecessors.iter().map(|&p| &steps[p]).collect();
        let new = numbered_step(index, kind, estimate, after);
        steps.push(new);
    }
    plan_of(steps)
}

/// `count` independent steps of mixed kinds: the widest possible DAG.
pub fn wide_plan(count: usize, estimate_seconds: u64) -> Plan {
    let steps = (0..count)
        .map(|index| {
            numbered_step(
                index,
                Kind::ALL[index % Kind::ALL.len()],
                estimate_seconds,
                Vec::new(),
            )
        })
        .collect();
    plan_of(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_plans_are_deterministic_and_ordered() {
        let shape = RandomPlan::default();
        let plan = random_plan(&shape);
        assert_eq!(plan, random_plan(&shape));
        for (index, step) in plan.steps.iter().enumerate() {
            for predecessor in &step.after {
                let position = plan
                    .steps
                    .iter()
                    .position(|s| &s.id == predecessor)
                    .unwrap();
                assert!(position < index);
            }
        }
        assert!(
            plan.estimated_seconds >= plan.steps.iter().map(|s| s.estimate_seconds).max().unwrap()
        );
    }
}
