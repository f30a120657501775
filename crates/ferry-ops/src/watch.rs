//! `ferry watch` as a library: one [`Watcher::round`] reads every resource's health, turns
//! the readings into damped changes, writes the failover plan when the active generation
//! fails, delivers the alerts, and follows failover readiness. The caller owns the loop (its
//! interval, its stop signal) and decides what to do with a written plan.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ferry_plan::PlanConfig;
use ferry_watch::{Alert, Destination, ReadinessAlert, ReadinessTracker, Tracker};

use crate::{Deployment, OpsError, PlanOptions};

/// What a watcher does beyond reading.
#[derive(Debug, Clone, Default)]
pub struct WatchConfig {
    /// How long a change must hold before it is alerted.
    pub hold: Duration,
    /// Where alerts go, beside the caller (a webhook, a command).
    pub destinations: Vec<Destination>,
    /// Where to write the failover plan when the active generation fails, for review (or for
    /// the caller to apply).
    pub plan_on_failure: Option<PathBuf>,
    /// The variables the spec was loaded with, recorded in the written plan.
    pub variables: BTreeMap<String, String>,
    /// Said in the alert: the caller applies the written plan itself.
    pub auto_apply: bool,
}

/// What one round found.
#[derive(Debug, Default)]
pub struct Round {
    /// Health changes that held for the hold time, each delivered to every destination.
    pub alerts: Vec<Alert>,
    /// Failover readiness lost or back, delivered likewise.
    pub readiness: Option<ReadinessAlert>,
    /// The failover plan written this round.
    pub plan_written: Option<PathBuf>,
    /// What went wrong without stopping the watch: a delivery that failed, a failover that
    /// could not be planned.
    pub problems: Vec<String>,
}

/// Rounds of readings of one deployment.
#[derive(Debug)]
pub struct Watcher<'a> {
    deployment: &'a Deployment,
    config: WatchConfig,
    tracker: Tracker,
    readiness: ReadinessTracker,
    client: reqwest::Client,
}

impl<'a> Watcher<'a> {
    pub fn new(deployment: &'a Deployment, config: WatchConfig) -> Self {
        let name = &deployment.spec().deployment.name;
        Self {
            tracker: Tracker::new(name, config.hold),
            readiness: ReadinessTracker::new(name, config.hold),
            deployment,
            config,
            client: reqwest::Client::new(),
        }
    }

    /// One round: read the world (a simulated world is read again from its file, since
    /// another process changes it), alert, plan the failover when it is due.
    pub async fn round(&mut self) -> Result<Round, OpsError> {
        let snapshot = self.deployment.observe().await?;
        let spec = self.deployment.spec();
        let rules = self.deployment.rules();
        let mut round = Round {
            alerts: self.tracker.update(&snapshot, SystemTime::now()),
            ..Round::default()
        };
        if !round.alerts.is_empty()
            && let Some(path) = &self.config.plan_on_failure
        {
            match ferry_plan::plan(spec, &snapshot, rules, &PlanConfig::default()) {
                Ok(plan) if plan.failover.is_some() => {
                    let saved = crate::saved_plan(
                        spec,
                        plan,
                        &snapshot,
                        self.deployment.spec_path(),
                        &self.config.variables,
                    )?;
                    write_plan(path, &saved.to_json())?;
                    let action = if self.config.auto_apply {
                        format!(
                            "ferry applies the failover plan it wrote to {}",
                            path.display()
                        )
                    } else {
                        format!(
                            "the failover plan is in {}: review it, then run ferry apply {}",
                            path.display(),
                            path.display()
                        )
                    };
                    for alert in &mut round.alerts {
                        alert.plan_written = Some(path.display().to_string());
                        alert.action = Some(action.clone());
                    }
                    round.plan_written = Some(path.clone());
                }
                Ok(_) => {}
                Err(errors) => round.problems.push(format!("no failover plan: {errors}")),
            }
        }
        for alert in &round.alerts {
            for destination in &self.config.destinations {
                if let Err(error) = ferry_watch::deliver(alert, destination, &self.client).await {
                    round.problems.push(error.to_string());
                }
            }
        }
        // Failover readiness, each round: the failover these readings would give, planned
        // beside them; its loss (and its return) is alerted like a health change.
        let readiness = ferry_plan::plan(spec, &snapshot, rules, &PlanConfig::default())
            .ok()
            .filter(|plan| plan.failover.is_none())
            .and_then(|plan| {
                crate::readiness(spec, &snapshot, rules, &PlanOptions::default(), &plan)
            });
        round.readiness = self.readiness.update(readiness.as_ref(), SystemTime::now());
        if let Some(alert) = &round.readiness {
            for destination in &self.config.destinations {
                if let Err(error) =
                    ferry_watch::deliver_readiness(alert, destination, &self.client).await
                {
                    round.problems.push(error.to_string());
                }
            }
        }
        Ok(round)
    }
}

/// Writes the plan whole (`ferry_core::fs::write_atomically`).
fn write_plan(path: &std::path::Path, text: &str) -> Result<(), OpsError> {
    ferry_core::fs::write_atomically(
        path,
        text.as_bytes(),
        &ferry_core::fs::WriteOptions::default(),
    )
    .map_err(|error| {
        OpsError::Write(format!(
            "cannot write {}: {}",
            path.display(),
            ferry_state::describe_io(&error, path)
        ))
    })
}
