//! What the apply engine is measured against: the critical path (a lower bound on any
//! schedule), and two simpler schedulers, level by level ("waves") and one step at a time.
//!
//! The schedulers call providers directly, with no journal, retries or resolution of `${...}`:
//! they exist to time the schedule, not to be used.

use std::collections::HashMap;
use std::time::Duration;

use ferry_core::{ApplyContext, Attributes, InstanceAddress, Plan, Providers, Step, StepId};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

/// The longest chain of estimates through the steps (given in a topological order), and its
/// length in seconds.
pub fn critical_path(steps: &[Step]) -> (Vec<StepId>, u64) {
    let position: HashMap<&StepId, usize> =
        steps.iter().enumerate().map(|(i, s)| (&s.id, i)).collect();
    // finish[i]: the earliest a step can end if everything ran as soon as possible.
    let mut finish = vec![0u64; steps.len()];
    let mut via: Vec<Option<usize>> = vec![None; steps.len()];
    // Retirements go last (`Action::goes_last`): after the step of the rest that ends last.
    let mut last_of_the_rest: Option<usize> = None;
    for (index, step) in steps.iter().enumerate() {
        let mut start = 0;
        let barrier = last_of_the_rest.filter(|_| step.action.goes_last());
        for predecessor in step
            .after
            .iter()
            .filter_map(|id| position.get(id))
            .chain(barrier.as_ref())
        {
            if via[index].is_none() || finish[*predecessor] > start {
                start = finish[*predecessor];
                via[index] = Some(*predecessor);
            }
        }
        finish[index] = start + step.estimate_seconds;
        if !step.action.goes_last()
            && last_of_the_rest.is_none_or(|last| finish[index] > finish[last])
        {
            last_of_the_rest = Some(index);
        }
    }
    let Some(mut last) = (0..steps.len()).max_by_key(|&i| (finish[i], std::cmp::Reverse(i))) else {
        return (Vec::new(), 0);
    };
    let total = finish[last];
    let mut path = vec![steps[last].id.clone()];
    while let Some(previous) = via[last] {
        path.push(steps[previous].id.clone());
        last = previous;
    }
    path.reverse();
    (path, total)
}

/// Each step's level: 0 without predecessors, else one more than its deepest predecessor.
pub fn levels(plan: &Plan) -> Vec<usize> {
    let position: HashMap<&StepId, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i))
        .collect();
    let mut level = vec![0; plan.steps.len()];
    // Retirements go last: below the deepest step of the rest.
    let mut below_the_rest = 0;
    for (index, step) in plan.steps.iter().enumerate() {
        level[index] = step
            .after
            .iter()
            .filter_map(|id| position.get(id))
            .map(|&p| level[p] + 1)
            .max()
            .unwrap_or(0);
        if step.action.goes_last() {
            level[index] = level[index].max(below_the_rest);
        } else {
            below_the_rest = below_the_rest.max(level[index] + 1);
        }
    }
    level
}

async fn run_one(step: &Step, providers: &Providers) {
    let provider = providers
        .get(step.address.kind())
        .expect("baseline schedulers need a provider for every kind");
    let outputs = |_: &InstanceAddress| None::<Attributes>;
    let ignore = |_: String| {};
    let _ = provider
        .apply(
            step,
            ApplyContext {
                inputs: &step.inputs,
                outputs: &outputs,
                progress: &ignore,
                resume_token: None,
                record_resume_token: &ignore,
            },
        )
        .await;
}

/// Runs steps with at most `parallelism` at once, in the given order, and waits for all.
async fn run_batch(steps: &[&Step], providers: &Providers, parallelism: usize) {
    let mut pending = steps.iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < parallelism.max(1) {
            match pending.next() {
                Some(step) => running.push(run_one(step, providers)),
                None => break,
            }
        }
        if running.next().await.is_none() {
            break;
        }
    }
}

/// Runs the plan level by level: a level starts when the whole previous level has ended.
/// Returns the elapsed (tokio) time.
pub async fn run_in_waves(plan: &Plan, providers: &Providers, parallelism: usize) -> Duration {
    let start = Instant::now();
    let level = levels(plan);
    let deepest = level.iter().copied().max().unwrap_or(0);
    for current in 0..=deepest {
        let wave: Vec<&Step> = plan
            .steps
            .iter()
            .zip(&level)
            .filter(|(_, l)| **l == current)
            .map(|(s, _)| s)
            .collect();
        run_batch(&wave, providers, parallelism).await;
    }
    start.elapsed()
}

/// Runs the plan one step at a time, in plan order. Returns the elapsed (tokio) time.
pub async fn run_sequentially(plan: &Plan, providers: &Providers) -> Duration {
    let start = Instant::now();
    for step in &plan.steps {
        run_one(step, providers).await;
    }
    start.elapsed()
}
