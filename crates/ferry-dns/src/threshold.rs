//! The mass-change guard: a plan that updates or deletes more than a share of a zone's
//! managed records is refused unless the operator says `--force`, as octoDNS does (its
//! `UPDATE_PCENT_THRESHOLD` and `DELETE_PCENT_THRESHOLD` are 30%, applied from 10 existing
//! records on). A typo in a variable should not repoint a whole zone.
//!
//! Pure: the planner (or the CLI) calls [`check_change_share`] with the plan's steps and the
//! count of managed records it observed per zone.

use std::collections::BTreeMap;
use std::fmt;

use ferry_core::fields::dns_record;
use ferry_core::{Action, Kind, Observation, Snapshot, Step, Value};

use crate::record::normalize_zone;

/// The guard's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeShareConfig {
    /// The largest share of a zone's managed records a plan may update or delete, from 0 to 1.
    pub max_share: f64,
    /// Zones with fewer managed records than this are not guarded: changing 2 of 3 records is
    /// normal in a small zone (a failover repoints all of them).
    pub min_managed_records: usize,
    /// `--force`: the operator has seen the numbers and wants the change.
    pub force: bool,
}

impl Default for ChangeShareConfig {
    fn default() -> Self {
        Self {
            max_share: 0.3,
            min_managed_records: 10,
            force: false,
        }
    }
}

/// One zone's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneShare {
    pub zone: String,
    /// Record sets that the plan updates, replaces or deletes in the zone.
    pub changed: usize,
    /// Record sets ferry manages in the zone now.
    pub managed: usize,
}

impl ZoneShare {
    pub fn percent(&self) -> usize {
        (self.changed * 100)
            .checked_div(self.managed)
            .unwrap_or(100)
    }
}

/// The plan changes too much of one or more zones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ChangeShareRefused {
    pub zones: Vec<ZoneShare>,
    pub max_percent: usize,
}

impl fmt::Display for ChangeShareRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zones: Vec<String> = self
            .zones
            .iter()
            .map(|zone| {
                format!(
                    "zone `{}`: {} of {} managed records ({}%)",
                    zone.zone,
                    zone.changed,
                    zone.managed,
                    zone.percent()
                )
            })
            .collect();
        write!(
            f,
            "the plan changes or deletes more than {}% of a zone's managed DNS records ({}): check the spec's values, then plan again with --force if the change is meant",
            self.max_percent,
            zones.join("; ")
        )
    }
}

/// The zone a `dns_record` step acts on: from its inputs, or (for a delete, which has
/// none) from the record's observation.
fn zone_of(step: &Step, observed: &Snapshot) -> Option<String> {
    step.inputs
        .get(dns_record::ZONE)
        .or_else(|| {
            observed
                .get(&step.address)
                .and_then(|observation| observation.attribute(dns_record::ZONE))
        })
        .and_then(Value::as_str)
        .map(normalize_zone)
}

/// Counts the record sets this deployment manages per zone, from a snapshot's `dns_record`
/// readings (`managed = true`). A planner that can list whole zones may pass its own counts
/// to [`check_change_share`] instead.
pub fn managed_records_per_zone(observed: &Snapshot) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (instance, observation) in &observed.resources {
        if instance.kind() != Kind::DnsRecord {
            continue;
        }
        if let Observation::Present { attributes, .. } = observation
            && attributes.get("managed").and_then(Value::as_bool) == Some(true)
            && let Some(zone) = attributes.get(dns_record::ZONE).and_then(Value::as_str)
        {
            *counts.entry(normalize_zone(zone)).or_insert(0) += 1;
        }
    }
    counts
}

/// Refuses `steps` when, in some zone with at least `min_managed_records` managed records,
/// the `dns_record` steps that update, replace or delete records exceed `max_share` of them.
/// Creates never count: they change nothing that exists. `managed_records` is keyed by zone
/// name (any case, with or without the trailing dot).
pub fn check_change_share(
    steps: &[Step],
    observed: &Snapshot,
    managed_records: &BTreeMap<String, usize>,
    config: &ChangeShareConfig,
) -> Result<(), ChangeShareRefused> {
    if config.force {
        return Ok(());
    }
    let managed: BTreeMap<String, usize> = managed_records
        .iter()
        .map(|(zone, count)| (normalize_zone(zone), *count))
        .collect();
    let mut changed: BTreeMap<String, usize> = BTreeMap::new();
    for step in steps {
        if step.address.kind() != Kind::DnsRecord
            || !matches!(
                step.action,
                Action::Update | Action::Replace | Action::Delete | Action::Retire
            )
        {
            continue;
        }
        if let Some(zone) = zone_of(step, observed) {
            *changed.entry(zone).or_insert(0) += 1;
        }
    }
    let zones: Vec<ZoneShare> = changed
        .into_iter()
        .filter_map(|(zone, changed)| {
            let managed = managed.get(&zone).copied().unwrap_or(0);
            let over = managed >= config.min_managed_records
                && managed > 0
                && changed as f64 > config.max_share * managed as f64;
            over.then_some(ZoneShare {
                zone,
                changed,
                managed,
            })
        })
        .collect();
    if zones.is_empty() {
        Ok(())
    } else {
        Err(ChangeShareRefused {
            zones,
            max_percent: (config.max_share * 100.0).round() as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Attributes, InstanceAddress, StepId};
    use serde_json::json;

    fn step(name: &str, action: Action, zone: Option<&str>) -> Step {
        let address: InstanceAddress = format!("dns_record.{name}").parse().unwrap();
        let mut inputs = Attributes::new();
        if let Some(zone) = zone {
            inputs.insert("zone".into(), json!(zone));
        }
        Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: String::new(),
            after: Vec::new(),
            estimate_seconds: 2,
            changes: Default::default(),
            inputs,
            warning: None,
        }
    }

    fn observed(records: &[(&str, &str, bool)]) -> Snapshot {
        let mut snapshot = Snapshot::new(1);
        for (name, zone, managed) in records {
            let attributes: Attributes =
                serde_json::from_value(json!({"zone": zone, "managed": managed})).unwrap();
            snapshot.insert(
                format!("dns_record.{name}").parse().unwrap(),
                Observation::present(attributes),
            );
        }
        snapshot
    }

    fn zone_of_twenty() -> (Snapshot, BTreeMap<String, usize>) {
        let names: Vec<String> = (0..20).map(|index| format!("r{index}")).collect();
        let records: Vec<(&str, &str, bool)> = names
            .iter()
            .map(|name| (name.as_str(), "example.org", true))
            .collect();
        let snapshot = observed(&records);
        let counts = managed_records_per_zone(&snapshot);
        (snapshot, counts)
    }

    #[test]
    fn counts_only_managed_records_per_zone() {
        let snapshot = observed(&[
            ("a", "Example.org.", true),
            ("b", "example.org", true),
            ("c", "example.org", false),
            ("d", "other.org", true),
        ]);
        let counts = managed_records_per_zone(&snapshot);
        assert_eq!(counts.get("example.org"), Some(&2));
        assert_eq!(counts.get("other.org"), Some(&1));
    }

    #[test]
    fn six_of_twenty_passes_and_seven_is_refused() {
        let (snapshot, counts) = zone_of_twenty();
        let config = ChangeShareConfig::default();
        let six: Vec<Step> = (0..6)
            .map(|index| step(&format!("r{index}"), Action::Update, Some("example.org")))
            .collect();
        assert_eq!(
            check_change_share(&six, &snapshot, &counts, &config),
            Ok(())
        );
        let mut seven = six.clone();
        // A delete step has no inputs: its zone comes from the observation.
        seven.push(step("r6", Action::Delete, None));
        let refused = check_change_share(&seven, &snapshot, &counts, &config).unwrap_err();
        insta::assert_snapshot!(refused.to_string());
        let forced = ChangeShareConfig {
            force: true,
            ..config
        };
        assert_eq!(
            check_change_share(&seven, &snapshot, &counts, &forced),
            Ok(())
        );
    }

    #[test]
    fn creates_and_small_zones_are_not_guarded() {
        let (snapshot, counts) = zone_of_twenty();
        let creates: Vec<Step> = (0..15)
            .map(|index| step(&format!("new{index}"), Action::Create, Some("example.org")))
            .collect();
        let config = ChangeShareConfig::default();
        assert_eq!(
            check_change_share(&creates, &snapshot, &counts, &config),
            Ok(())
        );
        // The data100 failover repoints both of its two records.
        let small = observed(&[
            ("staging", "example.org", true),
            ("prod", "example.org", true),
        ]);
        let both = vec![
            step("staging", Action::Update, Some("example.org")),
            step("prod", Action::Update, Some("example.org")),
        ];
        let small_counts = managed_records_per_zone(&small);
        assert_eq!(
            check_change_share(&both, &small, &small_counts, &config),
            Ok(())
        );
        let strict = ChangeShareConfig {
            min_managed_records: 0,
            ..config
        };
        assert!(check_change_share(&both, &small, &small_counts, &strict).is_err());
    }
}
