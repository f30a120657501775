//! `ferry watch`: the postmortem's action item, "monitor the API server remotely and alert".
//!
//! Each round reads every instance's health (through the same providers as `ferry observe`);
//! a [`Tracker`] turns readings into state changes, damped so that a flapping endpoint does not
//! page anyone: a new state counts only once it has held for the configured time. Each change
//! becomes an [`Alert`], delivered as a JSON POST to a webhook (in ferry's own format or the
//! body of Alertmanager's webhook receiver, [`alertmanager`]) and/or to a command, a webhook
//! retried with backoff within a bound ([`RetryPolicy`]).

pub mod alertmanager;
mod deliver;
mod readiness;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use ferry_core::{Blocker, Generation, Health, InstanceAddress, Observation, Snapshot};
use serde::Serialize;

pub use deliver::{
    AlertRef, DeliveryError, DeliveryEvent, Destination, RetryPolicy, WebhookFormat, deliver,
    mask_url,
};
/// Alerts' times: ferry's one time format, kept here for the alerts' users.
pub use ferry_core::time::format_time;
pub use readiness::{ReadinessAlert, ReadinessTracker};

/// What a resource's health reading says, in the words alerts use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Unhealthy { reason: String },
    Absent,
    Unknown { reason: String },
}

impl HealthState {
    pub fn of(observation: &Observation) -> Self {
        match observation {
            Observation::Present {
                health: Health::Healthy,
                ..
            } => HealthState::Healthy,
            Observation::Present {
                health:
                    Health::Unhealthy { reason }
                    | Health::Failed { reason }
                    | Health::Creating { reason },
                ..
            } => HealthState::Unhealthy {
                reason: reason.clone(),
            },
            Observation::Absent => HealthState::Absent,
            Observation::Unknown { reason } => HealthState::Unknown {
                reason: reason.clone(),
            },
        }
    }

    /// Whether two readings are the same state: the reason of an unhealthy reading may change
    /// from round to round (a timeout, then a refused connection) without being news.
    fn same_state(&self, other: &HealthState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    pub fn is_healthy(&self) -> bool {
        matches!(self, HealthState::Healthy)
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthState::Healthy => f.write_str("healthy"),
            HealthState::Unhealthy { reason } => write!(f, "unhealthy ({reason})"),
            HealthState::Absent => f.write_str("absent"),
            HealthState::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

/// How urgent an alert is, as on-call routes read it (Alertmanager's `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nobody is woken: a resource that is not healthy without a failover due, failover
    /// readiness lost.
    #[default]
    Warning,
    /// A failover is due: the active generation failed.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The failover plan and readiness figures an alert carries, in both webhook formats: how many
/// steps the failover plan has, its estimated time to recovery, where it was written, and what
/// blocks it. Each is absent when not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FailoverFigures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<u64>,
    /// The failover plan written because of this change, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_written: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// With `[watch] quorum` above 1: whether enough watchers saw the trigger unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumVerdict>,
}

/// How many of a deployment's watchers saw a failover's trigger unhealthy for their hold time,
/// against the `[watch] quorum` an automatic failover needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumVerdict {
    pub confirmed: bool,
    /// The quorum: how many watchers must agree.
    pub needed: u32,
    /// The watchers whose recent verdict saw it unhealthy.
    pub seen_unhealthy_by: Vec<String>,
    /// The watchers whose recent verdict did not: the dissenters.
    pub dissenters: Vec<String>,
}

impl fmt::Display for QuorumVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watchers = self.seen_unhealthy_by.len() + self.dissenters.len();
        if self.confirmed {
            write!(
                f,
                "confirmed by {} of {watchers} watchers (quorum {}): {}",
                self.seen_unhealthy_by.len(),
                self.needed,
                self.seen_unhealthy_by.join(", ")
            )?;
        } else {
            write!(
                f,
                "unconfirmed: {} of {watchers} watchers saw it unhealthy for the hold time and the quorum is {} (seen by {})",
                self.seen_unhealthy_by.len(),
                self.needed,
                self.seen_unhealthy_by.join(", ")
            )?;
        }
        if !self.dissenters.is_empty() {
            write!(f, "; read healthy by {}", self.dissenters.join(", "))?;
        }
        Ok(())
    }
}

/// One state change worth telling someone about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub deployment: String,
    pub resource: InstanceAddress,
    /// `None` for the first reading of a resource that is not healthy when the watch starts.
    pub old: Option<HealthState>,
    pub new: HealthState,
    /// When the new state was first read, in RFC 3339.
    pub since: String,
    /// When the condition began: the first reading that was not healthy (for a return to
    /// healthy, the one of the condition it ends), in RFC 3339.
    pub began: String,
    /// The generation that served when the change was read.
    pub generation: Generation,
    /// Critical when the change makes a failover due, warning otherwise; a return to healthy
    /// keeps the severity of the condition it ends.
    pub severity: Severity,
    #[serde(flatten)]
    pub failover: FailoverFigures,
    /// What ferry did or suggests next, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Alert {
    /// Whether this alert ends a condition (the resource is healthy again).
    pub fn is_resolved(&self) -> bool {
        self.new.is_healthy()
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.old {
            Some(old) => write!(f, "{}: {old} -> {}", self.resource, self.new)?,
            None => write!(f, "{}: {} at start", self.resource, self.new)?,
        }
        write!(f, " since {}", self.since)?;
        if let Some(action) = &self.action {
            write!(f, "; {action}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    /// The state that counts: the last one that held long enough.
    confirmed: HealthState,
    /// A different state read since, and when it was first read.
    pending: Option<(HealthState, SystemTime)>,
    /// While the confirmed state is not healthy: when that condition began.
    began: Option<SystemTime>,
}

/// Turns successive readings into damped state changes.
#[derive(Debug, Clone)]
pub struct Tracker {
    deployment: String,
    /// How long a new state must hold before it counts.
    hold: Duration,
    tracked: BTreeMap<InstanceAddress, Tracked>,
}

impl Tracker {
    pub fn new(deployment: &str, hold: Duration) -> Self {
        Self {
            deployment: deployment.to_owned(),
            hold,
            tracked: BTreeMap::new(),
        }
    }

    /// The resources whose state that counts (held for the hold time) is unhealthy.
    pub fn unhealthy(&self) -> impl Iterator<Item = &InstanceAddress> {
        self.tracked
            .iter()
            .filter(|(_, tracked)| matches!(tracked.confirmed, HealthState::Unhealthy { .. }))
            .map(|(instance, _)| instance)
    }

    /// Takes one round of readings made at `now`; returns the changes that now count.
    ///
    /// The first reading of a resource sets its state silently when it is healthy, and alerts
    /// when it is not: a watch started during an outage says so at once.
    pub fn update(&mut self, snapshot: &Snapshot, now: SystemTime) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let alert = |resource: &InstanceAddress,
                     old: Option<HealthState>,
                     new: HealthState,
                     since: SystemTime,
                     began: SystemTime| Alert {
            deployment: self.deployment.clone(),
            resource: resource.clone(),
            old,
            new,
            since: format_time(since),
            began: format_time(began),
            generation: snapshot.active_generation,
            severity: Severity::Warning,
            failover: FailoverFigures::default(),
            action: None,
        };
        for (instance, observation) in &snapshot.resources {
            let reading = HealthState::of(observation);
            let Some(tracked) = self.tracked.get_mut(instance) else {
                let healthy = reading.is_healthy();
                if !healthy {
                    alerts.push(alert(instance, None, reading.clone(), now, now));
                }
                self.tracked.insert(
                    instance.clone(),
                    Tracked {
                        confirmed: reading,
                        pending: None,
                        began: (!healthy).then_some(now),
                    },
                );
                continue;
            };
            if reading.same_state(&tracked.confirmed) {
                tracked.confirmed = reading;
                tracked.pending = None;
                continue;
            }
            let since = match &tracked.pending {
                Some((pending, since)) if pending.same_state(&reading) => *since,
                _ => now,
            };
            if now.duration_since(since).unwrap_or_default() >= self.hold {
                let began = tracked.began.unwrap_or(since);
                alerts.push(alert(
                    instance,
                    Some(tracked.confirmed.clone()),
                    reading.clone(),
                    since,
                    began,
                ));
                tracked.began = (!reading.is_healthy()).then_some(began);
                tracked.confirmed = reading;
                tracked.pending = None;
            } else {
                tracked.pending = Some((reading, since));
            }
        }
        alerts
    }
}

/// What the unit tests of this crate read: the data100 cluster, healthy or not, at a moment.
#[cfg(test)]
pub(crate) mod test_readings {
    use std::time::{Duration, SystemTime};

    use ferry_core::{Attributes, Health, Observation, Snapshot};

    /// generation 1's cluster, healthy or with its API server timing out.
    pub(crate) fn reading(healthy: bool) -> Snapshot {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "aks_cluster.hub@g1".parse().unwrap(),
            Observation::Present {
                attributes: Attributes::new(),
                health: if healthy {
                    Health::Healthy
                } else {
                    Health::Unhealthy {
                        reason: "GET /readyz timed out after 5s".into(),
                    }
                },
            },
        );
        snapshot
    }

    /// `seconds` after a fixed moment.
    pub(crate) fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_374_460 + seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_readings::{at, reading};

    #[test]
    fn a_state_counts_only_once_it_held_for_the_hold_time() {
        let mut tracker = Tracker::new("data100", Duration::from_secs(60));
        let mut alerts = Vec::new();
        // Healthy, a 30-second blip, healthy, then down for good.
        for (second, healthy) in [
            (0, true),
            (30, false),
            (60, true),
            (90, false),
            (120, false),
            (150, false),
            (180, true),
        ] {
            for alert in tracker.update(&reading(healthy), at(second)) {
                alerts.push(alert.to_string());
            }
        }
        assert_eq!(
            alerts,
            [
                "aks_cluster.hub@g1: healthy -> unhealthy (GET /readyz timed out after 5s) since 2025-11-29T00:02:30Z"
            ]
        );
    }

    #[test]
    fn without_a_hold_every_change_alerts_and_a_bad_start_alerts_at_once() {
        let mut tracker = Tracker::new("data100", Duration::ZERO);
        let mut alerts = Vec::new();
        for (second, healthy) in [(0, false), (10, true), (20, false)] {
            alerts.extend(tracker.update(&reading(healthy), at(second)));
        }
        insta::assert_json_snapshot!(alerts);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(at(0)), "2025-11-29T00:01:00Z");
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
