//! Which generation serves, and whether a failover is under way, as the world says it: ferry's
//! state is a cache that can be lost, reset or stale, and the readings of the stateful
//! resources (the VM each disk is attached to, the group it is in, the host a pool is on) are
//! the record that cannot be lost.
//!
//! [`reconstruct`] is pure: the observer calls it to decide which generations to read and to
//! correct the snapshot it writes, and the planner calls it again on every snapshot it is
//! given, so that a snapshot file or a library caller with a lost state is corrected too.

use std::collections::BTreeSet;

use ferry_core::provider::FieldType;
use ferry_core::{
    Failover, Generation, InstanceAddress, Kind, Observation, ResourceAddress, RuleBook, Snapshot,
    Value,
};

use crate::PlanError;

/// A stateful instance placed on an instance of one generation: `disk.home0`'s `vm` reads
/// `vm.nfs@g2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placement {
    pub instance: InstanceAddress,
    pub attribute: String,
    pub on: InstanceAddress,
}

impl Placement {
    pub fn generation(&self) -> Generation {
        self.on.generation.unwrap_or(0)
    }

    fn describe(&self) -> String {
        format!("{}'s {} reads {}", self.instance, self.attribute, self.on)
    }
}

/// The generation-scoped instances a value names (a reference, or a list of them).
pub fn generation_references(value: &Value) -> Vec<InstanceAddress> {
    let parse = |text: &str| {
        text.parse::<InstanceAddress>()
            .ok()
            .filter(|instance| instance.generation.is_some())
    };
    match value {
        Value::String(text) => parse(text).into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(parse)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `attribute` of a `kind` places it on another generation-scoped instance: a field
/// its schema declares as a reference to a replaceable kind (a disk's `vm` and
/// `resource_group`, a pool's `host`).
pub fn is_placement(rules: &RuleBook, kind: Kind, attribute: &str) -> bool {
    kind.is_stateful()
        && rules.get(kind).is_some_and(|kind_rules| {
            kind_rules.fields().iter().any(|field| {
                field.name == attribute
                    && matches!(
                        field.field_type,
                        FieldType::Reference(target) | FieldType::ReferenceList(target)
                            if target.is_replaceable()
                    )
            })
        })
}

/// Every placement the readings of stateful instances show, in address order. A stateful
/// instance of a generation (a hot standby's replica, `zfs_pool.home@g2`) places nothing:
/// it is the standby's copy, not the data's home.
pub fn placements(snapshot: &Snapshot, rules: &RuleBook) -> Vec<Placement> {
    let mut found = Vec::new();
    for (instance, observation) in &snapshot.resources {
        if !instance.kind().is_stateful() || instance.generation.is_some() {
            continue;
        }
        let Some(attributes) = observation.attributes() else {
            continue;
        };
        for (attribute, value) in attributes {
            if !is_placement(rules, instance.kind(), attribute) {
                continue;
            }
            for on in generation_references(value) {
                found.push(Placement {
                    instance: instance.clone(),
                    attribute: attribute.clone(),
                    on,
                });
            }
        }
    }
    found.sort();
    found
}

/// The newest generation any stateful instance is placed on: data is never moved back behind
/// it, and no generation older than it is built, started or run.
///
/// `standby`: the resources of a warm or hot standby; a hot standby's replica disks, on the
/// generation after the data's, are the standby's, not the data's.
pub fn data_generation(
    snapshot: &Snapshot,
    rules: &RuleBook,
    standby: &BTreeSet<ResourceAddress>,
) -> Option<(Generation, Placement)> {
    placements(snapshot, rules)
        .into_iter()
        .filter(|placement| !standby.contains(&placement.instance.address))
        .rev()
        .max_by_key(|placement| placement.generation())
        .map(|placement| (placement.generation(), placement))
}

/// The resources whose placements are no evidence of where the data serves from: the
/// standby's (`Spec::standby_resources`: a hot standby's replica disks sit on the generation
/// after the data's every day) and, for a hot pool that reads present, its own disks too: the
/// pool's `host` says where it serves, and after a hot failover the old primary's disks stay
/// on the old generation without the data serving from there.
pub fn not_evidence(spec: &ferry_spec::Spec, snapshot: &Snapshot) -> BTreeSet<ResourceAddress> {
    let mut set = spec.standby_resources().clone();
    for pool in spec.hot_pools() {
        if !snapshot
            .get(&pool.address.at(None))
            .is_some_and(Observation::is_present)
        {
            continue;
        }
        for field in [
            ferry_core::fields::zfs_pool::DISKS,
            ferry_core::fields::zfs_pool::REPLICA_DISKS,
        ] {
            set.extend(
                pool.field(field)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|disk| disk.as_str()?.parse::<ResourceAddress>().ok()),
            );
        }
    }
    set
}

/// What the world says about the serving generation, to plan from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconstruction {
    pub active_generation: Generation,
    pub failover_in_progress: Option<Failover>,
    /// Why the world's answer differs from the state's, when it does.
    pub note: Option<String>,
}

const PREFIX: &str = "ferry's state is lost or stale, and the world shows a failover under way";

/// The serving generation and any failover under way, from the snapshot's readings, checked
/// against what the state said (the snapshot's `active_generation` and
/// `failover_in_progress`). Refuses, naming the evidence, when the world and the state
/// disagree in a way ferry cannot finish safely.
///
/// `standby`: the spec's warm standby resources ([`ferry_spec::Spec::standby_resources`]).
/// Their instances in the generation after the data's exist on an ordinary day, and are no
/// evidence that a failover started.
pub fn reconstruct(
    snapshot: &Snapshot,
    rules: &RuleBook,
    standby: &BTreeSet<ResourceAddress>,
) -> Result<Reconstruction, PlanError> {
    let stated = snapshot.active_generation;
    let kept = Reconstruction {
        active_generation: stated,
        failover_in_progress: snapshot.failover_in_progress.clone(),
        note: None,
    };
    // A hot standby's replica disks sit on the generation after the data's every day: the
    // standby's, never evidence of where the data serves from.
    let placements: Vec<Placement> = placements(snapshot, rules)
        .into_iter()
        .filter(|placement| !standby.contains(&placement.instance.address))
        .collect();
    let (Some(newest), Some(oldest)) = (
        placements.iter().rev().max_by_key(|p| p.generation()),
        placements.iter().min_by_key(|p| p.generation()),
    ) else {
        return Ok(kept);
    };
    let (newest_generation, oldest_generation) = (newest.generation(), oldest.generation());
    let recovery = "if the state is wrong, move .ferry/state.json away and plan again: ferry rebuilds it from the world (see \"When the state is lost\" in the README)";

    // A record of another generation's failover (a state edited by hand) decides nothing, as
    // in the planner's own decision.
    if let Some(started) = snapshot
        .failover_in_progress
        .as_ref()
        .filter(|started| started.from_generation == stated)
    {
        if newest_generation > started.to_generation || oldest_generation < started.from_generation
        {
            let outside = if newest_generation > started.to_generation {
                newest
            } else {
                oldest
            };
            return Err(PlanError::new(
                None,
                format!(
                    "the state records a failover from generation {} to {}, but {}: the state and the world disagree",
                    started.from_generation,
                    started.to_generation,
                    outside.describe()
                ),
            )
            .help(recovery));
        }
        return Ok(kept);
    }

    if oldest_generation < newest_generation {
        if newest_generation != oldest_generation + 1 {
            return Err(PlanError::new(
                None,
                format!(
                    "the data is spread over generations {oldest_generation} and {newest_generation} ({}; {}): ferry finishes a failover only from one generation to the next",
                    oldest.describe(),
                    newest.describe()
                ),
            )
            .help("move the stateful resources onto one generation by hand (detach, move, attach; export, import), then plan again"));
        }
        let trigger = format!("{PREFIX}: {}, but {}", newest.describe(), oldest.describe());
        return Ok(Reconstruction {
            active_generation: oldest_generation,
            failover_in_progress: Some(Failover {
                from_generation: oldest_generation,
                to_generation: newest_generation,
                trigger: trigger.clone(),
            }),
            note: Some(format!(
                "{trigger}: the plan finishes the failover from generation {oldest_generation} to {newest_generation}"
            )),
        });
    }

    let data = newest_generation;
    if stated > data {
        return Err(PlanError::new(
            None,
            format!(
                "the state says generation {stated} serves, but every stateful resource is on generation {data} ({}): the state and the world disagree",
                newest.describe()
            ),
        )
        .help(recovery));
    }

    // A failover from the data's generation to the next that had started (its new generation
    // exists, the data's host is fenced) but moved nothing yet.
    let next_exists = present_generations(snapshot, standby).contains(&(data + 1));
    let holder_fenced = placements.iter().any(|placement| {
        placement.on.kind() == Kind::Vm
            && snapshot
                .get(&placement.on)
                .is_some_and(|reading| reading.is_present() && reading.is_fenced_host())
    });
    if next_exists && holder_fenced {
        let fenced: Vec<String> = placements
            .iter()
            .filter(|placement| placement.on.kind() == Kind::Vm)
            .map(|placement| placement.on.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let trigger = format!(
            "{PREFIX}: generation {} exists and {} is fenced, with the data still on generation {data}",
            data + 1,
            fenced.join(", ")
        );
        return Ok(Reconstruction {
            active_generation: data,
            failover_in_progress: Some(Failover {
                from_generation: data,
                to_generation: data + 1,
                trigger: trigger.clone(),
            }),
            note: Some(format!(
                "{trigger}: the plan finishes the failover from generation {data} to {}",
                data + 1
            )),
        });
    }

    if stated == data {
        return Ok(kept);
    }

    // The state is behind the data: either it was lost after a failover that finished, or in
    // one that moved every disk and pool but did not retire the old generation yet.
    let older_exists = present_generations(snapshot, standby)
        .iter()
        .any(|generation| *generation < data);
    if older_exists && data > 1 {
        let trigger = format!(
            "{PREFIX}: {}, and generation {} is not retired yet",
            newest.describe(),
            data - 1
        );
        return Ok(Reconstruction {
            active_generation: data - 1,
            failover_in_progress: Some(Failover {
                from_generation: data - 1,
                to_generation: data,
                trigger: trigger.clone(),
            }),
            note: Some(format!(
                "{trigger}: the plan finishes the failover from generation {} to {data}",
                data - 1
            )),
        });
    }
    let stated = if stated == 0 {
        "ferry's state names no serving generation (it is lost or new)".to_owned()
    } else {
        format!("ferry's state says generation {stated} serves")
    };
    Ok(Reconstruction {
        active_generation: data,
        failover_in_progress: None,
        note: Some(format!(
            "{stated}, but the world says generation {data} does ({}): planned from generation {data}",
            newest.describe()
        )),
    })
}

/// The generations of which some instance that is not a warm standby's reads present.
fn present_generations(
    snapshot: &Snapshot,
    standby: &BTreeSet<ResourceAddress>,
) -> BTreeSet<Generation> {
    snapshot
        .resources
        .iter()
        .filter(|(instance, observation)| {
            matches!(observation, Observation::Present { .. })
                && !standby.contains(&instance.address)
        })
        .filter_map(|(instance, _)| instance.generation)
        .collect()
}

/// The snapshot with the world's answer in place of the state's.
pub fn corrected(snapshot: &Snapshot, reconstruction: &Reconstruction) -> Snapshot {
    let mut corrected = snapshot.clone();
    corrected.active_generation = reconstruction.active_generation;
    corrected
        .failover_in_progress
        .clone_from(&reconstruction.failover_in_progress);
    corrected
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(attributes: Value) -> Observation {
        Observation::present(serde_json::from_value(attributes).unwrap())
    }

    /// Disks on the given VMs, and whatever else `extra` holds.
    fn world(stated: Generation, disks: &[&str], extra: &[(&str, Observation)]) -> Snapshot {
        let mut snapshot = Snapshot::new(stated);
        for (index, vm) in disks.iter().enumerate() {
            snapshot.insert(
                format!("disk.home{index}").parse().unwrap(),
                reading(json!({"vm": vm, "lun": index, "tags": {"note": "vm.nfs@g9"}})),
            );
        }
        for (instance, observation) in extra {
            snapshot.insert(instance.parse().unwrap(), observation.clone());
        }
        snapshot
    }

    fn answer(snapshot: &Snapshot) -> String {
        match reconstruct(snapshot, &ferry_providers::rule_book(), &BTreeSet::new()) {
            Ok(found) => format!(
                "active {}, failover {}",
                found.active_generation,
                found
                    .failover_in_progress
                    .map_or("none".to_owned(), |failover| format!(
                        "{} to {}",
                        failover.from_generation, failover.to_generation
                    ))
            ),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_world_decides_the_serving_generation_and_a_failover_under_way() {
        let fenced = reading(json!({"power_state": "deallocated"}));
        let running = reading(json!({"power_state": "running"}));
        // A state that agrees, and one lost before the first apply, are kept.
        assert_eq!(
            answer(&world(1, &["vm.nfs@g1"], &[])),
            "active 1, failover none"
        );
        assert_eq!(answer(&Snapshot::new(0)), "active 0, failover none");
        // Lost at generation 1, or after a finished failover to 2.
        assert_eq!(
            answer(&world(0, &["vm.nfs@g1"], &[])),
            "active 1, failover none"
        );
        assert_eq!(
            answer(&world(1, &["vm.nfs@g2"], &[])),
            "active 2, failover none"
        );
        // Moved but generation 1 not retired; split over 1 and 2.
        assert_eq!(
            answer(&world(0, &["vm.nfs@g2"], &[("vm.nfs@g1", fenced.clone())])),
            "active 1, failover 1 to 2"
        );
        assert_eq!(
            answer(&world(0, &["vm.nfs@g2", "vm.nfs@g1"], &[])),
            "active 1, failover 1 to 2"
        );
        // Started: generation 2 exists and the data's VM is fenced; not when it still runs.
        assert_eq!(
            answer(&world(
                0,
                &["vm.nfs@g1"],
                &[("vm.nfs@g1", fenced), ("vm.nfs@g2", running.clone())]
            )),
            "active 1, failover 1 to 2"
        );
        assert_eq!(
            answer(&world(
                1,
                &["vm.nfs@g1"],
                &[("vm.nfs@g1", running.clone()), ("vm.nfs@g2", running)]
            )),
            "active 1, failover none"
        );
        // A tag that happens to name an instance is not a placement.
        assert_eq!(
            placements(
                &world(1, &["vm.nfs@g1"], &[]),
                &ferry_providers::rule_book()
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_world_ferry_cannot_finish_safely_is_refused_naming_the_reading() {
        assert_eq!(
            answer(&world(0, &["vm.nfs@g1", "vm.nfs@g3"], &[])),
            "the data is spread over generations 1 and 3 (disk.home0's vm reads vm.nfs@g1; disk.home1's vm reads vm.nfs@g3): ferry finishes a failover only from one generation to the next\n  help: move the stateful resources onto one generation by hand (detach, move, attach; export, import), then plan again"
        );
        assert_eq!(
            answer(&world(3, &["vm.nfs@g2"], &[])),
            "the state says generation 3 serves, but every stateful resource is on generation 2 (disk.home0's vm reads vm.nfs@g2): the state and the world disagree\n  help: if the state is wrong, move .ferry/state.json away and plan again: ferry rebuilds it from the world (see \"When the state is lost\" in the README)"
        );
        let mut recorded = world(1, &["vm.nfs@g3"], &[]);
        recorded.failover_in_progress = Some(Failover {
            from_generation: 1,
            to_generation: 2,
            trigger: "a test".into(),
        });
        assert_eq!(
            answer(&recorded),
            "the state records a failover from generation 1 to 2, but disk.home0's vm reads vm.nfs@g3: the state and the world disagree\n  help: if the state is wrong, move .ferry/state.json away and plan again: ferry rebuilds it from the world (see \"When the state is lost\" in the README)"
        );
    }
}
