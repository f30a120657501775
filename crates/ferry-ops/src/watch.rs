//! `ferry watch` as a library: one [`Watcher::round`] reads every resource's health, turns
//! the readings into damped changes, writes the failover plan when the active generation
//! fails, delivers the alerts, and follows failover readiness. The caller owns the loop (its
//! interval, its stop signal) and decides what to do with a written plan.
//!
//! A round's deliveries run side by side, each a webhook's retries within
//! [`RetryPolicy::bound`] (or a command's time limit), so that a dead receiver delays the next
//! round's readings by one bound at most.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ferry_core::{Blocker, InstanceAddress, Readiness};
use ferry_plan::PlanConfig;
use ferry_watch::{
    Alert, AlertRef, DeliveryError, DeliveryEvent, Destination, ReadinessAlert, ReadinessTracker,
    RetryPolicy, Severity, Tracker,
};

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
    /// How hard a webhook delivery tries, and for how long at most.
    pub retry: RetryPolicy,
    /// Where to send each failed delivery attempt as it happens (the CLI prints them while the
    /// round waits); they are in [`Round::delivery_events`] too.
    pub delivery_events: Option<tokio::sync::mpsc::UnboundedSender<DeliveryEvent>>,
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
    /// Each failed webhook attempt that was tried again, in the order they happened.
    pub delivery_events: Vec<DeliveryEvent>,
    /// Each delivery given up: its destination did not get the alert.
    pub delivery_failures: Vec<DeliveryError>,
    /// What else went wrong without stopping the watch: a failover that could not be planned.
    pub problems: Vec<String>,
}

/// Rounds of readings of one deployment.
#[derive(Debug)]
pub struct Watcher<'a> {
    deployment: &'a Deployment,
    config: WatchConfig,
    tracker: Tracker,
    readiness: ReadinessTracker,
    /// The last failover readiness read, for the blockers a health alert carries.
    last_readiness: Option<Readiness>,
    /// The severity each resource's open condition fired with: its return to healthy is
    /// resolved with the same one, and it does not drop while the condition lasts.
    open_severities: BTreeMap<InstanceAddress, Severity>,
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
            last_readiness: None,
            open_severities: BTreeMap::new(),
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
        if !round.alerts.is_empty() {
            self.describe_failover(&snapshot, &mut round)?;
        }
        // Failover readiness, each round: the failover these readings would give, planned
        // beside them; its loss (and its return) is alerted like a health change.
        let readiness = ferry_plan::plan(
            spec,
            &snapshot,
            rules,
            &crate::plan::clocked(&PlanConfig::default()),
        )
        .ok()
        .filter(|plan| plan.failover.is_none())
        .and_then(|plan| crate::readiness(spec, &snapshot, rules, &PlanOptions::default(), &plan));
        round.readiness = self.readiness.update(
            readiness.as_ref(),
            snapshot.active_generation,
            SystemTime::now(),
        );
        if readiness.is_some() {
            self.last_readiness = readiness;
        }
        self.deliver(&mut round).await;
        Ok(round)
    }
}

/// One round of each watcher, at most `max_concurrent` of them at a time (a fleet's specs in one
/// process), the results in the watchers' order. A watcher whose round fails (its world cannot
/// be read) has its error in its place; the others' rounds are not held by it.
///
/// The rounds share the caller's task: their reads interleave while each waits on the network,
/// and a blocking moment of one (a state blob's load) holds the others for its length.
pub async fn round_each(
    watchers: &mut [Watcher<'_>],
    max_concurrent: usize,
) -> Vec<Result<Round, OpsError>> {
    in_order_at_most(
        watchers.iter_mut().map(|watcher| watcher.round()),
        max_concurrent,
    )
    .await
}

/// Runs `futures` with at most `max_concurrent` of them under way at once; their outputs in
/// the order the futures came.
async fn in_order_at_most<T>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T>>,
    max_concurrent: usize,
) -> Vec<T> {
    use futures_util::StreamExt;
    let mut outputs: Vec<(usize, T)> = futures_util::stream::iter(
        futures
            .into_iter()
            .enumerate()
            .map(|(index, future)| async move { (index, future.await) }),
    )
    .buffer_unordered(max_concurrent.max(1))
    .collect()
    .await;
    outputs.sort_by_key(|(index, _)| *index);
    outputs.into_iter().map(|(_, output)| output).collect()
}

impl Watcher<'_> {
    /// Gives this round's health alerts their severity and failover figures, and writes the
    /// failover plan when one is due and `plan_on_failure` asks for it.
    fn describe_failover(
        &mut self,
        snapshot: &ferry_core::Snapshot,
        round: &mut Round,
    ) -> Result<(), OpsError> {
        let spec = self.deployment.spec();
        let rules = self.deployment.rules();
        let mut figures = ferry_watch::FailoverFigures {
            blockers: self
                .last_readiness
                .as_ref()
                .map(|readiness| readiness.blockers.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut failover_due = false;
        let mut action = None;
        match ferry_plan::plan(
            spec,
            snapshot,
            rules,
            &crate::plan::clocked(&PlanConfig::default()),
        ) {
            Ok(plan) if plan.failover.is_some() => {
                failover_due = true;
                figures.plan_steps = Some(plan.steps.len());
                figures.recovery_seconds = plan.recovery_seconds;
                if let Some(path) = &self.config.plan_on_failure {
                    let saved = crate::saved_plan(
                        spec,
                        plan,
                        snapshot,
                        self.deployment.spec_path(),
                        &self.config.variables,
                    )?;
                    write_plan(path, &saved.to_json())?;
                    action = Some(if self.config.auto_apply {
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
                    });
                    figures.plan_written = Some(path.display().to_string());
                    round.plan_written = Some(path.clone());
                }
            }
            Ok(plan) => failover_due = plan.failover_due.is_some(),
            Err(errors) => {
                if self.config.plan_on_failure.is_some() {
                    round.problems.push(format!("no failover plan: {errors}"));
                }
                figures.blockers = errors
                    .0
                    .into_iter()
                    .map(|error| Blocker {
                        address: error.address,
                        reason: error.message,
                        help: error.help,
                    })
                    .collect();
            }
        }
        for alert in &mut round.alerts {
            alert.severity = if alert.is_resolved() {
                self.open_severities
                    .remove(&alert.resource)
                    .unwrap_or_default()
            } else {
                let opened = self.open_severities.get(&alert.resource).copied();
                let severity = if failover_due {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let severity = opened.map_or(severity, |opened| opened.max(severity));
                self.open_severities
                    .insert(alert.resource.clone(), severity);
                severity
            };
            alert.failover = figures.clone();
            alert.action = action.clone();
        }
        Ok(())
    }

    /// Delivers this round's alerts to every destination, side by side.
    async fn deliver(&self, round: &mut Round) {
        let alerts = round
            .alerts
            .iter()
            .map(AlertRef::Health)
            .chain(round.readiness.as_ref().map(AlertRef::Readiness));
        let events = std::sync::Mutex::new(Vec::new());
        let on_event = |event: &DeliveryEvent| {
            if let Some(sender) = &self.config.delivery_events {
                let _ = sender.send(event.clone());
            }
            events.lock().unwrap().push(event.clone());
        };
        let on_event = &on_event;
        let deliveries = alerts.flat_map(|alert| {
            self.config.destinations.iter().map(move |destination| {
                ferry_watch::deliver(
                    alert,
                    destination,
                    &self.client,
                    &self.config.retry,
                    on_event,
                )
            })
        });
        let outcomes = futures_util::future::join_all(deliveries).await;
        round.delivery_events = events.into_inner().unwrap();
        round.delivery_failures = outcomes.into_iter().filter_map(Result::err).collect();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::in_order_at_most;

    #[tokio::test(start_paused = true)]
    async fn rounds_side_by_side_stay_within_the_bound_and_keep_their_order() {
        let running = AtomicUsize::new(0);
        let most_running = AtomicUsize::new(0);
        let futures = (0..7u64).map(|index| {
            let (running, most_running) = (&running, &most_running);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most_running.fetch_max(now, Ordering::SeqCst);
                // The later ones finish first: the output is still in the given order.
                tokio::time::sleep(Duration::from_millis(100 - index * 10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                index
            }
        });
        let outputs = in_order_at_most(futures, 3).await;
        assert_eq!(outputs, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(most_running.load(Ordering::SeqCst), 3);
    }
}
