//! Failover readiness over time: `ferry watch` plans the failover it would make from each
//! round's readings (`ferry_plan::readiness`) and alerts when readiness is lost and when it
//! comes back, damped like health changes, so that a latent blocker pages someone on an
//! ordinary day rather than during the outage.

use std::fmt;
use std::time::{Duration, SystemTime};

use ferry_core::{Generation, Readiness};
use serde::Serialize;

use crate::{FailoverFigures, Severity, format_time};

/// A change of failover readiness worth telling someone about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessAlert {
    pub deployment: String,
    /// Always `"failover_readiness"`, so that a receiver tells it from a resource's alert.
    pub alert: &'static str,
    /// Whether a failover could be made now.
    pub ready: bool,
    /// The generation that serves now.
    pub generation: Generation,
    pub to_generation: Generation,
    /// The failover plan's steps, its estimated time to recovery, and the blockers.
    #[serde(flatten)]
    pub failover: FailoverFigures,
    /// When the new state was first read, in RFC 3339.
    pub since: String,
    /// When readiness was lost (for an alert that it is back: when it was lost), in RFC 3339.
    pub began: String,
    /// Always warning: a lost readiness needs a person on an ordinary day, not at night.
    pub severity: Severity,
}

impl ReadinessAlert {
    /// Whether this alert ends a condition (readiness is back).
    pub fn is_resolved(&self) -> bool {
        self.ready
    }
}

impl fmt::Display for ReadinessAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ready {
            write!(
                f,
                "failover readiness back: a failover to generation {} could be made",
                self.to_generation
            )?;
            if let Some(seconds) = self.failover.recovery_seconds {
                write!(f, ", estimated time to recovery {seconds}s")?;
            }
        } else {
            let blockers: Vec<String> = self
                .failover
                .blockers
                .iter()
                .map(ToString::to_string)
                .collect();
            write!(
                f,
                "failover readiness lost: a failover to generation {} is blocked: {}",
                self.to_generation,
                blockers.join("; ")
            )?;
        }
        write!(f, " since {}", self.since)
    }
}

/// Turns each round's readiness into damped changes: a new state counts once it has held for
/// the hold time; a watch that starts not ready says so at once.
#[derive(Debug, Clone)]
pub struct ReadinessTracker {
    deployment: String,
    hold: Duration,
    /// The state that counts, once one was read.
    confirmed: Option<bool>,
    /// A different state read since, and when it was first read.
    pending: Option<(bool, SystemTime)>,
    /// While readiness is lost: since when.
    lost_since: Option<SystemTime>,
}

impl ReadinessTracker {
    pub fn new(deployment: &str, hold: Duration) -> Self {
        Self {
            deployment: deployment.to_owned(),
            hold,
            confirmed: None,
            pending: None,
            lost_since: None,
        }
    }

    /// Takes one round's readiness (`None`: nothing to fail over, the round says nothing) and
    /// the generation that serves; returns the change that now counts, if any.
    pub fn update(
        &mut self,
        readiness: Option<&Readiness>,
        generation: Generation,
        now: SystemTime,
    ) -> Option<ReadinessAlert> {
        let readiness = readiness?;
        let alert = |since: SystemTime, began: SystemTime| ReadinessAlert {
            deployment: self.deployment.clone(),
            alert: "failover_readiness",
            ready: readiness.ready,
            generation,
            to_generation: readiness.to_generation,
            failover: FailoverFigures {
                plan_steps: readiness.steps,
                recovery_seconds: readiness.recovery_seconds,
                plan_written: None,
                blockers: readiness.blockers.clone(),
                quorum: None,
            },
            since: format_time(since),
            began: format_time(began),
            severity: Severity::Warning,
        };
        let Some(confirmed) = self.confirmed else {
            self.confirmed = Some(readiness.ready);
            if readiness.ready {
                return None;
            }
            self.lost_since = Some(now);
            return Some(alert(now, now));
        };
        if confirmed == readiness.ready {
            self.pending = None;
            return None;
        }
        let since = match self.pending {
            Some((pending, since)) if pending == readiness.ready => since,
            _ => now,
        };
        if now.duration_since(since).unwrap_or_default() >= self.hold {
            let began = self.lost_since.unwrap_or(since);
            let alert = alert(since, began);
            self.lost_since = (!readiness.ready).then_some(began);
            self.confirmed = Some(readiness.ready);
            self.pending = None;
            Some(alert)
        } else {
            self.pending = Some((readiness.ready, since));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Blocker;

    fn readiness(ready: bool) -> Readiness {
        Readiness {
            ready,
            to_generation: 2,
            recovery_seconds: Some(2369),
            steps: Some(31),
            data_loss: None,
            blockers: if ready {
                Vec::new()
            } else {
                vec![Blocker {
                    address: Some("dns_record.prod".parse().unwrap()),
                    reason: "its reading is unknown (the primary did not answer)".into(),
                    help: None,
                }]
            },
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_374_460 + seconds)
    }

    /// Ready at start is silent; lost for longer than the hold alerts once, a blip does not;
    /// back alerts once; a round with nothing to fail over says nothing.
    #[test]
    fn readiness_lost_and_back_alert_once_each_after_the_hold() {
        let mut tracker = ReadinessTracker::new("data100", Duration::from_secs(60));
        let mut alerts = Vec::new();
        for (second, ready) in [
            (0, Some(true)),
            (30, Some(false)),
            (60, Some(true)),
            (90, Some(false)),
            (120, None),
            (150, Some(false)),
            (180, Some(false)),
            (210, Some(true)),
            (300, Some(true)),
        ] {
            let reading = ready.map(readiness);
            alerts.extend(
                tracker
                    .update(reading.as_ref(), 1, at(second))
                    .map(|alert| alert.to_string()),
            );
        }
        assert_eq!(
            alerts,
            [
                "failover readiness lost: a failover to generation 2 is blocked: dns_record.prod: its reading is unknown (the primary did not answer) since 2025-11-29T00:02:30Z",
                "failover readiness back: a failover to generation 2 could be made, estimated time to recovery 2369s since 2025-11-29T00:04:30Z",
            ]
        );
    }

    #[test]
    fn a_watch_that_starts_not_ready_alerts_at_once() {
        let mut tracker = ReadinessTracker::new("data100", Duration::from_secs(60));
        let alert = tracker.update(Some(&readiness(false)), 1, at(0)).unwrap();
        insta::assert_json_snapshot!(alert);
    }
}
