//! The body Alertmanager's webhook receiver sends (`--webhook-format alertmanager`), so that a
//! route built for Alertmanager (its Slack, PagerDuty and OpsGenie adapters, or any receiver of
//! its webhook) takes ferry's alerts as they are.
//!
//! The shape is Alertmanager's webhook `Message` (version `"4"`: the template data, `version`,
//! `groupKey`, `truncatedAlerts`), as its `notify/webhook` package and the `webhook_config`
//! section of its configuration documentation give it. Each alert is sent alone, as a group of
//! one: its group labels are its identity labels, so that the group key, like the fingerprint,
//! names one condition of one deployment and stays the same from round to round and from one
//! `ferry watch` process to the next, which is what receivers deduplicate on.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{AlertRef, FailoverFigures};

/// The `alertname` of a resource that is not healthy (one alert per resource).
pub const RESOURCE_UNHEALTHY: &str = "FerryResourceUnhealthy";
/// The `alertname` of a deployment whose failover is not ready (one alert per deployment).
pub const FAILOVER_NOT_READY: &str = "FerryFailoverNotReady";
/// The `receiver` ferry names in its bodies: there is no Alertmanager route that chose one.
pub const RECEIVER: &str = "ferry";
/// Go's zero time, which Alertmanager writes as the `endsAt` of an alert still firing.
const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

/// Whether the condition holds or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

/// One webhook POST body, in Alertmanager's field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub receiver: String,
    pub status: Status,
    pub alerts: Vec<MessageAlert>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's own address; ferry has none, so it is empty.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Always `"4"`.
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
}

/// One alert of a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAlert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the condition began, RFC 3339.
    pub starts_at: String,
    /// When it ended; Go's zero time while it fires.
    pub ends_at: String,
    /// The page that shows the condition; ferry serves none, so it is empty.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// The Alertmanager body of one alert.
pub fn message(alert: AlertRef<'_>) -> Message {
    let (identity, generation, severity, resolved, began, since, summary, description, figures) =
        match alert {
            AlertRef::Health(alert) => {
                let summary = if alert.is_resolved() {
                    format!("{}: {} is healthy again", alert.deployment, alert.resource)
                } else {
                    format!("{}: {} is {}", alert.deployment, alert.resource, alert.new)
                };
                (
                    vec![
                        ("alertname", RESOURCE_UNHEALTHY.to_owned()),
                        ("deployment", alert.deployment.clone()),
                        ("resource", alert.resource.to_string()),
                    ],
                    alert.generation,
                    alert.severity,
                    alert.is_resolved(),
                    &alert.began,
                    &alert.since,
                    summary,
                    alert.to_string(),
                    &alert.failover,
                )
            }
            AlertRef::Readiness(alert) => {
                let summary = if alert.is_resolved() {
                    format!(
                        "{}: a failover to generation {} could be made again",
                        alert.deployment, alert.to_generation
                    )
                } else {
                    format!(
                        "{}: a failover to generation {} is blocked ({} blocker{})",
                        alert.deployment,
                        alert.to_generation,
                        alert.failover.blockers.len(),
                        if alert.failover.blockers.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    )
                };
                (
                    vec![
                        ("alertname", FAILOVER_NOT_READY.to_owned()),
                        ("deployment", alert.deployment.clone()),
                    ],
                    alert.generation,
                    alert.severity,
                    alert.is_resolved(),
                    &alert.began,
                    &alert.since,
                    summary,
                    alert.to_string(),
                    &alert.failover,
                )
            }
        };
    let group_labels: BTreeMap<String, String> = identity
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let mut labels = group_labels.clone();
    labels.insert("generation".into(), generation.to_string());
    labels.insert("severity".into(), severity.as_str().into());
    let mut annotations = figure_annotations(figures);
    annotations.insert("summary".into(), summary);
    annotations.insert("description".into(), description);
    if let AlertRef::Health(alert) = alert
        && let Some(action) = &alert.action
    {
        annotations.insert("action".into(), action.clone());
    }
    let status = if resolved {
        Status::Resolved
    } else {
        Status::Firing
    };
    Message {
        receiver: RECEIVER.into(),
        status,
        alerts: vec![MessageAlert {
            status,
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at: began.clone(),
            ends_at: if resolved {
                since.clone()
            } else {
                NOT_ENDED.into()
            },
            generator_url: String::new(),
            fingerprint: fingerprint(&group_labels),
        }],
        group_key: group_key(&group_labels),
        group_labels,
        common_labels: labels,
        common_annotations: annotations,
        external_url: String::new(),
        version: "4".into(),
        truncated_alerts: 0,
    }
}

/// The failover figures as annotations (Alertmanager's annotations are strings).
fn figure_annotations(figures: &FailoverFigures) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(steps) = figures.plan_steps {
        annotations.insert("plan_steps".into(), steps.to_string());
    }
    if let Some(seconds) = figures.recovery_seconds {
        annotations.insert("recovery_seconds".into(), seconds.to_string());
    }
    if let Some(path) = &figures.plan_written {
        annotations.insert("plan_written".into(), path.clone());
    }
    if let Some(quorum) = &figures.quorum {
        annotations.insert("quorum".into(), quorum.to_string());
    }
    if !figures.blockers.is_empty() {
        let blockers: Vec<String> = figures.blockers.iter().map(ToString::to_string).collect();
        annotations.insert("blockers".into(), blockers.join("; "));
    }
    annotations
}

/// A condition's fingerprint: 16 hex digits of the 64-bit FNV-1a hash of its identity labels
/// (sorted by name, each name and value followed by a 0xff byte, as Alertmanager hashes label
/// sets). Severity and generation are left out, so that an alert that is resolved, or that
/// turned critical, keeps the fingerprint it fired with.
pub fn fingerprint(identity: &BTreeMap<String, String>) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for (name, value) in identity {
        for byte in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xff])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:016x}")
}

/// Alertmanager's group key for a route with no matchers: `{}:{name="value", ...}`.
fn group_key(group_labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = group_labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{}}:{{{}}}", labels.join(", "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferry_core::{Blocker, Readiness};

    use super::*;
    use crate::test_readings::{at, reading};
    use crate::{ReadinessTracker, Severity, Tracker};

    /// The active generation's API server fails for longer than the hold (a failover is due,
    /// its plan written), then comes back: one firing body, then one resolved body with the
    /// same fingerprint, `startsAt` when it began and `endsAt` when it ended.
    #[test]
    fn a_resource_alert_fires_then_resolves_with_one_fingerprint() {
        let mut tracker = Tracker::new("data100", Duration::from_secs(60));
        assert!(tracker.update(&reading(true), at(0)).is_empty());
        assert!(tracker.update(&reading(false), at(30)).is_empty());
        let mut firing = tracker.update(&reading(false), at(90)).remove(0);
        // What the watcher adds: a failover is due, and its plan was written.
        firing.severity = Severity::Critical;
        firing.failover = FailoverFigures {
            plan_steps: Some(31),
            recovery_seconds: Some(2369),
            plan_written: Some("failover.plan".into()),
            blockers: Vec::new(),
            quorum: None,
        };
        firing.action = Some(
            "the failover plan is in failover.plan: review it, then run ferry apply failover.plan"
                .into(),
        );
        assert!(tracker.update(&reading(true), at(300)).is_empty());
        let mut resolved = tracker.update(&reading(true), at(360)).remove(0);
        resolved.severity = Severity::Critical;
        let firing = message(AlertRef::Health(&firing));
        let resolved = message(AlertRef::Health(&resolved));
        assert_eq!(firing.alerts[0].fingerprint, resolved.alerts[0].fingerprint);
        assert_eq!(firing.group_key, resolved.group_key);
        insta::assert_json_snapshot!("resource_firing", firing);
        insta::assert_json_snapshot!("resource_resolved", resolved);
    }

    #[test]
    fn a_lost_failover_readiness_fires_as_a_warning_with_its_blockers() {
        let mut tracker = ReadinessTracker::new("data100", Duration::ZERO);
        let blocked = Readiness {
            ready: false,
            to_generation: 2,
            recovery_seconds: None,
            steps: None,
            data_loss: None,
            blockers: vec![Blocker {
                address: Some("zfs_pool.home".parse().unwrap()),
                reason: "it reads a vdev on a disk the spec does not list".into(),
                help: None,
            }],
        };
        let firing = tracker.update(Some(&blocked), 1, at(0)).unwrap();
        let ready = Readiness {
            ready: true,
            recovery_seconds: Some(2369),
            steps: Some(31),
            data_loss: None,
            blockers: Vec::new(),
            ..blocked
        };
        let resolved = tracker.update(Some(&ready), 1, at(60)).unwrap();
        let firing = message(AlertRef::Readiness(&firing));
        let resolved = message(AlertRef::Readiness(&resolved));
        assert_eq!(firing.alerts[0].fingerprint, resolved.alerts[0].fingerprint);
        insta::assert_json_snapshot!("readiness_firing", firing);
        insta::assert_json_snapshot!("readiness_resolved", resolved);
    }

    #[test]
    fn the_fingerprint_is_fnv1a_of_the_identity_labels() {
        // FNV-1a of the empty input is the offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let identity: BTreeMap<String, String> = [
            ("alertname".to_owned(), RESOURCE_UNHEALTHY.to_owned()),
            ("deployment".to_owned(), "data100".to_owned()),
        ]
        .into();
        let mut other = identity.clone();
        other.insert("deployment".into(), "data200".into());
        assert_ne!(fingerprint(&identity), fingerprint(&other));
        assert_eq!(fingerprint(&identity), fingerprint(&identity.clone()));
        assert_eq!(
            group_key(&identity),
            r#"{}:{alertname="FerryResourceUnhealthy", deployment="data100"}"#
        );
    }
}
