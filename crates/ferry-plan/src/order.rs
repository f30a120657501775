//! Edges, execution order, and the critical path of a plan.
//!
//! The order is a topological order of the `after` edges in which, among the steps that are
//! ready, the one that can start earliest comes first, then the one drafted first: a reader
//! sees the steps roughly as they will happen.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use ferry_core::plan::PLAN_FORMAT_VERSION;
use ferry_core::{Action, Plan, PlanSummary, Step, StepId};
use rustc_hash::FxHashMap;

use crate::build::{Built, Draft};
use crate::{PlanError, PlanErrors};

/// The order of a resource instance's own steps, when it has several.
fn action_rank(action: Action) -> u8 {
    match action {
        Action::Export => 0,
        Action::Fence => 1,
        Action::Detach => 2,
        Action::Move => 3,
        Action::Attach => 4,
        Action::Import | Action::Promote => 5,
        Action::Create => 6,
        Action::Replace => 7,
        Action::Update => 8,
        Action::Run => 9,
        Action::Wait => 10,
        Action::Delete => 11,
        Action::Retire => 12,
    }
}

/// The steps' edges, as (first, then) pairs of draft positions; a set, so each is kept once.
type Edges = BTreeSet<(usize, usize)>;

/// Each resource's dependencies, as [`Built`] carries them.
type Dependencies = BTreeMap<ferry_core::ResourceAddress, Vec<ferry_core::ResourceAddress>>;

pub(crate) fn finish(built: Built) -> Result<Plan, PlanErrors> {
    let drafts = merge(built.drafts);
    // The kinds of edge are added in this order: the update waits read the rules' edges, and
    // retirement follows whatever ends the other steps, so it reads all the edges before it.
    let mut edges = Edges::new();
    rules_edges(&drafts, &mut edges);
    waits_for_updates(&drafts, &mut edges);
    dependency_edges(&drafts, &built.dependencies, &mut edges);
    instance_edges(&drafts, &mut edges);
    retirement_edges(&drafts, &built.dependencies, &mut edges)?;

    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    // (edges are deduplicated by the set above)
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    for &(from, to) in &edges {
        if from != to {
            predecessors[to].push(from);
            successors[from].push(to);
        }
    }

    // What only the edges needed is freed before the steps are built, the plan's largest
    // moment (the drafts and the steps side by side): the edge set, the dependencies, and
    // below, once the order is known, the successors.
    drop(edges);
    drop(built.dependencies);
    let order = topological_order(&drafts, &predecessors, &successors)?;
    drop(successors);
    let timing = timing(&drafts, &order, &predecessors, built.failover.is_some());
    let steps = steps_in_order(drafts, &order, predecessors);
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION.to_owned(),
        summary: PlanSummary::of(&steps),
        steps,
        critical_path: timing.critical_path,
        estimated_seconds: timing.estimated_seconds,
        recovery_seconds: timing.recovery_seconds,
        recovery_cached: timing.recovery_cached,
        data_loss: built.data_loss,
        failover: built.failover,
        notes: built.notes,
        unknown: built.unknown,
        warnings: built.warnings,
        failover_due: built.failover_due,
        readiness: None,
        kept: built.kept,
        standby: built.standby,
    })
}

/// The rules' own edges; a step named there that is not in the plan was already done.
fn rules_edges(drafts: &[Draft], edges: &mut Edges) {
    let index: FxHashMap<&StepId, usize> = drafts
        .iter()
        .enumerate()
        .map(|(position, draft)| (&draft.id, position))
        .collect();
    for (me, draft) in drafts.iter().enumerate() {
        for before in &draft.step.after {
            if let Some(&first) = index.get(before) {
                edges.insert((first, me));
            }
        }
        for after in &draft.step.before {
            if let Some(&then) = index.get(after) {
                edges.insert((me, then));
            }
        }
    }
}

/// The resources with steps that `resource` depends on, directly or through resources with
/// no step in the plan: a check after a DNS record that does not change (a static IP kept)
/// still waits for the hook the record depends on. Each resource without a step is walked
/// once (`through`), without recursion: a chain of 100,000 unchanged hooks is a spec like
/// another.
fn stepped_dependencies<'a>(
    resource: &'a ferry_core::ResourceAddress,
    dependencies: &'a Dependencies,
    stepped: &FxHashMap<&ferry_core::ResourceAddress, Vec<usize>>,
    through: &mut FxHashMap<&'a ferry_core::ResourceAddress, Vec<&'a ferry_core::ResourceAddress>>,
) -> Vec<&'a ferry_core::ResourceAddress> {
    let direct = |address: &'a ferry_core::ResourceAddress| {
        dependencies
            .get(address)
            .into_iter()
            .flatten()
            .filter(move |dependency| *dependency != address)
    };
    // What `address` reaches: its dependencies with steps, and what those without reach.
    let reached = |address: &'a ferry_core::ResourceAddress,
                   through: &FxHashMap<
        &'a ferry_core::ResourceAddress,
        Vec<&'a ferry_core::ResourceAddress>,
    >|
     -> Vec<&'a ferry_core::ResourceAddress> {
        let mut found: BTreeSet<&ferry_core::ResourceAddress> = BTreeSet::new();
        for dependency in direct(address) {
            if stepped.contains_key(dependency) {
                found.insert(dependency);
            } else if let Some(below) = through.get(dependency) {
                found.extend(below.iter().copied());
            }
        }
        found.into_iter().collect()
    };
    // Settle every step-less resource below `resource` first, deepest first.
    let mut stack: Vec<(&ferry_core::ResourceAddress, bool)> = direct(resource)
        .filter(|dependency| !stepped.contains_key(*dependency))
        .map(|dependency| (dependency, false))
        .collect();
    while let Some((address, expanded)) = stack.pop() {
        if through.contains_key(address) {
            continue;
        }
        if !expanded {
            stack.push((address, true));
            for dependency in direct(address) {
                if !stepped.contains_key(dependency) && !through.contains_key(dependency) {
                    stack.push((dependency, false));
                }
            }
            continue;
        }
        let found = reached(address, through);
        through.insert(address, found);
    }
    reached(resource, through)
}

/// Default edges: a resource's steps follow its dependencies' steps on their converged
/// instances (through dependencies with no step: [`stepped_dependencies`]); deletions go the
/// other way, dependents first.
fn dependency_edges(drafts: &[Draft], dependencies: &Dependencies, edges: &mut Edges) {
    let mut by_resource: FxHashMap<&ferry_core::ResourceAddress, Vec<usize>> = FxHashMap::default();
    for (position, draft) in drafts.iter().enumerate() {
        by_resource
            .entry(&draft.step.target.address)
            .or_default()
            .push(position);
    }
    let mut through = FxHashMap::default();
    for (me, draft) in drafts.iter().enumerate() {
        let Some(resource) = &draft.resource else {
            continue;
        };
        for dependency in stepped_dependencies(resource, dependencies, &by_resource, &mut through) {
            for &other in by_resource.get(dependency).into_iter().flatten() {
                let other_step = &drafts[other].step;
                // The dependency's step in the step's own generation (a warm standby's steps
                // are of the generation after the converged one; a generation-less instance's
                // step is of the generation it was drafted for: a hot standby's replica disk
                // is the standby's).
                let mine = draft.step.target.generation.unwrap_or(draft.generation);
                // An identity outside every generation (a static IP's address) is every
                // generation's: a standby's hook that needs its address waits for its create.
                let identity = other_step.target.generation.is_none()
                    && other_step.target.kind().is_stateful()
                    && !other_step.target.kind().holds_data();
                let converged = identity
                    || other_step
                        .target
                        .generation
                        .unwrap_or(drafts[other].generation)
                        == mine;
                match (draft.step.action, other_step.action) {
                    (_, Action::Retire) => {}
                    (Action::Delete, Action::Delete) => {
                        edges.insert((me, other));
                    }
                    (_, Action::Delete) => {}
                    _ if converged => {
                        edges.insert((other, me));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// An instance's own steps, in their natural order.
fn instance_edges(drafts: &[Draft], edges: &mut Edges) {
    let mut by_instance: FxHashMap<&ferry_core::InstanceAddress, Vec<usize>> = FxHashMap::default();
    for (position, draft) in drafts.iter().enumerate() {
        by_instance
            .entry(&draft.step.target)
            .or_default()
            .push(position);
    }
    for steps in by_instance.values() {
        let mut ranked = steps.clone();
        ranked.sort_by_key(|&position| action_rank(drafts[position].step.action));
        for pair in ranked.windows(2) {
            edges.insert((pair[0], pair[1]));
        }
    }
}

/// Retirements among themselves: one whose resource depends on another's retires first (the
/// VM before its resource group). What every retirement waits for besides (every step that is
/// not one) is the plan's rule, [`Action::goes_last`], not edges: a failover of N groups would
/// otherwise hold N retirements times N last steps of edges.
///
/// A step that is not a retirement never waits for one: that edge would make the two phases
/// wait on each other, and is refused as the cycle it is.
fn retirement_edges(
    drafts: &[Draft],
    dependencies: &Dependencies,
    edges: &mut Edges,
) -> Result<(), PlanErrors> {
    let mut retires_of: FxHashMap<&ferry_core::ResourceAddress, Vec<usize>> = FxHashMap::default();
    for (position, draft) in drafts.iter().enumerate() {
        if draft.step.action.goes_last() {
            retires_of
                .entry(&draft.step.target.address)
                .or_default()
                .push(position);
        }
    }
    if retires_of.is_empty() {
        return Ok(());
    }
    // What the rule says already (a VM's retirement after its fence) is not an edge too.
    edges.retain(|&(first, then)| {
        drafts[first].step.action.goes_last() || !drafts[then].step.action.goes_last()
    });
    for (position, draft) in drafts.iter().enumerate() {
        if !draft.step.action.goes_last() {
            continue;
        }
        for dependency in dependencies
            .get(&draft.step.target.address)
            .into_iter()
            .flatten()
        {
            for &other in retires_of.get(dependency).into_iter().flatten() {
                edges.insert((position, other));
            }
        }
    }
    let backwards: Vec<String> = edges
        .iter()
        .filter(|&&(first, then)| {
            drafts[first].step.action.goes_last() && !drafts[then].step.action.goes_last()
        })
        .map(|&(first, then)| format!("{} waits for {}", drafts[then].id, drafts[first].id))
        .collect();
    if backwards.is_empty() {
        return Ok(());
    }
    Err(PlanErrors(vec![
        PlanError::new(
            None,
            format!(
                "the steps wait on each other in a cycle: retirements go last, and {}",
                backwards.join(", ")
            ),
        )
        .help("this is a bug in a kind's rules; please report it with the spec and snapshot"),
    ]))
}

/// What the estimates say of a plan's steps in their order.
struct Timing {
    /// The chain of steps that ends last, first step first.
    critical_path: Vec<StepId>,
    estimated_seconds: u64,
    /// For a failover: when every step but the retirements has ended, and the caches of
    /// the records it repointed have expired.
    recovery_seconds: Option<u64>,
    /// The record whose cache ends the recovery, when one does.
    recovery_cached: Option<ferry_core::plan::CachedAnswer>,
}

/// Each step's earliest finish from its predecessors' and its own estimate, and the critical
/// path through them.
fn timing(
    drafts: &[Draft],
    order: &[usize],
    predecessors: &[Vec<usize>],
    is_failover: bool,
) -> Timing {
    let count = drafts.len();
    let mut finish_at = vec![0u64; count];
    let mut via: Vec<Option<usize>> = vec![None; count];
    // The step that is not a retirement and ends last: every retirement waits for it (the
    // order places retirements after every other step).
    let mut last_of_the_rest: Option<usize> = None;
    for &position in order {
        let goes_last = drafts[position].step.action.goes_last();
        let barrier = last_of_the_rest.filter(|_| goes_last);
        let (start, from) = predecessors[position]
            .iter()
            .chain(barrier.iter())
            .map(|&predecessor| (finish_at[predecessor], Some(predecessor)))
            .max_by_key(|(finish, predecessor)| (*finish, Reverse(*predecessor)))
            .unwrap_or((0, None));
        finish_at[position] = start.saturating_add(drafts[position].estimate_seconds);
        via[position] = from;
        if !goes_last
            && last_of_the_rest.is_none_or(|last| {
                (finish_at[position], Reverse(position)) > (finish_at[last], Reverse(last))
            })
        {
            last_of_the_rest = Some(position);
        }
    }
    // The service is back when the last step that is not a retirement ends, or when
    // resolvers' caches of a repointed record expire, whichever is later.
    let back = order
        .iter()
        .filter(|&&position| !drafts[position].step.action.goes_last())
        .map(|&position| {
            let cached = drafts[position].cached_seconds;
            (
                finish_at[position].saturating_add(cached),
                cached,
                Reverse(position),
            )
        })
        .max();
    let recovery_seconds = is_failover.then(|| back.map_or(0, |(at, _, _)| at));
    let recovery_cached = back
        .filter(|(_, cached, _)| is_failover && *cached > 0)
        .map(
            |(_, seconds, Reverse(position))| ferry_core::plan::CachedAnswer {
                address: drafts[position].step.target.clone(),
                seconds,
            },
        );
    let mut critical_path = Vec::new();
    let mut cursor = order
        .iter()
        .copied()
        .max_by_key(|&position| (finish_at[position], Reverse(position)));
    let estimated_seconds = cursor.map(|position| finish_at[position]).unwrap_or(0);
    while let Some(position) = cursor {
        critical_path.push(drafts[position].id.clone());
        cursor = via[position];
    }
    critical_path.reverse();
    Timing {
        critical_path,
        estimated_seconds,
        recovery_seconds,
        recovery_cached,
    }
}

/// The drafts as the plan's steps, in `order`, each naming its predecessors in that order.
///
/// The steps are built in the drafts' own room: the drafts are put in order in place, then
/// each is moved into its step (`into_iter` then `collect` reuses the allocation, a step
/// being smaller than a draft), so that the plan's largest moment does not hold the drafts'
/// vector and the steps' vector side by side (20 MiB at 100,005 steps).
fn steps_in_order(
    mut drafts: Vec<Draft>,
    order: &[usize],
    mut predecessors: Vec<Vec<usize>>,
) -> Vec<Step> {
    let mut place = vec![0usize; drafts.len()];
    for (index, &position) in order.iter().enumerate() {
        place[position] = index;
    }
    // Each step's `after`, copied from the drafts' ids while every draft is still there.
    let afters: Vec<Vec<StepId>> = order
        .iter()
        .map(|&position| {
            let mut after: Vec<usize> = std::mem::take(&mut predecessors[position]);
            after.sort_by_key(|&predecessor| place[predecessor]);
            after
                .into_iter()
                .map(|predecessor| drafts[predecessor].id.clone())
                .collect()
        })
        .collect();
    drop(predecessors);
    // The draft at `position` goes to `place[position]`: each cycle of the permutation is
    // followed by swaps, so that every draft moves once.
    for position in 0..drafts.len() {
        while place[position] != position {
            let target = place[position];
            drafts.swap(position, target);
            place.swap(position, target);
        }
    }
    let mut afters = afters.into_iter();
    drafts
        .into_iter()
        .map(|draft| Step {
            id: draft.id,
            address: draft.step.target,
            action: draft.step.action,
            reason: draft.step.reason,
            after: afters.next().unwrap_or_default(),
            estimate_seconds: draft.estimate_seconds,
            changes: draft.step.changes,
            inputs: draft.step.inputs,
            warning: draft.step.warning,
        })
        .collect()
}

/// A step that waits for an instance's move (a pool's import for each disk's attach) waits for
/// that instance's in-place update too: a disk grown during a failover is grown after its
/// attach (its own steps' order) and before the import and the hooks, never while the pool is
/// imported from it.
fn waits_for_updates(drafts: &[Draft], edges: &mut Edges) {
    let updates: FxHashMap<&ferry_core::InstanceAddress, usize> = drafts
        .iter()
        .enumerate()
        .filter(|(_, draft)| draft.step.action == Action::Update)
        .map(|(position, draft)| (&draft.step.target, position))
        .collect();
    if updates.is_empty() {
        return;
    }
    let waits: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|&(first, then)| {
            let moved = &drafts[first].step;
            if !matches!(moved.action, Action::Detach | Action::Move | Action::Attach) {
                return None;
            }
            let update = *updates.get(&moved.target)?;
            (drafts[then].step.target != moved.target).then_some((update, then))
        })
        .collect();
    edges.extend(waits);
}

/// Folds drafts with the same id (four disks each asking for the same fence) into one.
fn merge(drafts: Vec<Draft>) -> Vec<Draft> {
    // Where each draft goes, found by reference first: a map keyed by copies of every id
    // cost an allocation per step, and a plan without a duplicate is returned as it is.
    let mut first: FxHashMap<&StepId, usize> =
        FxHashMap::with_capacity_and_hasher(drafts.len(), Default::default());
    let mut target: Vec<usize> = Vec::with_capacity(drafts.len());
    let mut count = 0;
    for draft in &drafts {
        let position = *first.entry(&draft.id).or_insert_with(|| {
            count += 1;
            count - 1
        });
        target.push(position);
    }
    drop(first);
    if count == drafts.len() {
        return drafts;
    }
    let mut merged: Vec<Draft> = Vec::with_capacity(count);
    for (draft, position) in drafts.into_iter().zip(target) {
        // A draft's first occurrence is the next one to be placed; a later one folds into it.
        if position == merged.len() {
            merged.push(draft);
            continue;
        }
        let kept = &mut merged[position];
        kept.step.after.extend(draft.step.after);
        kept.step.before.extend(draft.step.before);
        if kept.step.warning.is_none() {
            kept.step.warning = draft.step.warning;
        }
        if kept.resource.is_none() {
            kept.resource = draft.resource;
        }
    }
    merged
}

fn topological_order(
    drafts: &[Draft],
    predecessors: &[Vec<usize>],
    successors: &[Vec<usize>],
) -> Result<Vec<usize>, PlanErrors> {
    let count = drafts.len();
    let goes_last = |position: usize| drafts[position].step.action.goes_last();
    let mut waiting: Vec<usize> = predecessors.iter().map(Vec::len).collect();
    let mut earliest = vec![0u64; count];
    // Retirements go last: one ready before every other step is placed waits here.
    let mut others_left = (0..count).filter(|&position| !goes_last(position)).count();
    let mut others_end = 0u64;
    let mut parked: Vec<usize> = Vec::new();
    let mut ready: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for position in (0..count).filter(|&position| waiting[position] == 0) {
        if goes_last(position) && others_left > 0 {
            parked.push(position);
        } else {
            ready.push(Reverse((0, position)));
        }
    }
    let mut order = Vec::with_capacity(count);
    while let Some(Reverse((start, position))) = ready.pop() {
        order.push(position);
        let finish = start.saturating_add(drafts[position].estimate_seconds);
        if !goes_last(position) {
            others_end = others_end.max(finish);
            others_left -= 1;
            if others_left == 0 {
                for waiting_retirement in parked.drain(..) {
                    let start = earliest[waiting_retirement].max(others_end);
                    ready.push(Reverse((start, waiting_retirement)));
                }
            }
        }
        for &next in &successors[position] {
            earliest[next] = earliest[next].max(finish);
            waiting[next] -= 1;
            if waiting[next] == 0 {
                if goes_last(next) && others_left > 0 {
                    parked.push(next);
                } else {
                    let start = if goes_last(next) {
                        earliest[next].max(others_end)
                    } else {
                        earliest[next]
                    };
                    ready.push(Reverse((start, next)));
                }
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    let stuck: Vec<String> = (0..count)
        .filter(|&position| waiting[position] > 0)
        .map(|position| drafts[position].id.to_string())
        .collect();
    Err(PlanErrors(vec![
        PlanError::new(
            None,
            format!(
                "the steps wait on each other in a cycle: {}",
                stuck.join(", ")
            ),
        )
        .help("this is a bug in a kind's rules; please report it with the spec and snapshot"),
    ]))
}

/// The earliest start of every step of a plan, in seconds from the start, from the steps'
/// estimates: what a timeline draws.
pub fn earliest_starts(plan: &Plan) -> BTreeMap<StepId, u64> {
    let mut finish: FxHashMap<&StepId, u64> = FxHashMap::default();
    let mut starts = BTreeMap::new();
    // Retirements go last: after the end of every other step, which the order places first.
    let mut rest_ends = 0u64;
    for step in &plan.steps {
        let start = step
            .after
            .iter()
            .filter_map(|id| finish.get(id).copied())
            .max()
            .unwrap_or(0);
        let start = if step.action.goes_last() {
            start.max(rest_ends)
        } else {
            start
        };
        let end = start.saturating_add(step.estimate_seconds);
        if !step.action.goes_last() {
            rest_ends = rest_ends.max(end);
        }
        finish.insert(&step.id, end);
        starts.insert(step.id.clone(), start);
    }
    starts
}
