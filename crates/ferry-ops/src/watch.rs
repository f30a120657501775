//! `ferry watch` as a library: one [`Watcher::round`] reads every resource's health, turns
//! the readings into damped changes, writes the failover plan when the active generation
//! fails, delivers the alerts, and follows failover readiness. The caller owns the loop (its
//! interval, its stop signal) and decides what to do with a written plan.
//!
//! Watchers of one deployment may run on several machines: with a state in Azure Blob Storage
//! they elect one to act (alert, write the plan; the caller applies it) by a lease on the
//! state blob's `.watch-leader` (`ferry_state_blob::WatchLeader`); the others read and keep
//! their trackers, to take over when the leader's lease runs out. The leader records what it
//! alerted ([`AlertRecord`]) in that blob, and a new leader does not alert it again. With a
//! local state a watcher has no peers and always acts. With `[watch] quorum` above 1, every
//! watcher writes its [`Verdict`] each round, and a failover waits until that many saw its
//! trigger unhealthy for their hold time. [`round_each`] runs the rounds of several
//! deployments (a fleet in one process) side by side.
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
    /// With `[watch] quorum` above 1: how recent another watcher's verdict must be to count
    /// (a few of its rounds; machines' clocks must agree well within it). `None`: 45 s.
    pub verdict_freshness: Option<Duration>,
}

/// How recent a watcher's verdict must be to count, unless the caller says.
const DEFAULT_VERDICT_FRESHNESS: Duration = Duration::from_secs(45);

/// What one watcher saw, in its verdict blob beside the leader blob: the triggers whose
/// unhealthy state held for its hold time, when it last read them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub format_version: String,
    pub watcher: String,
    /// When it read them, RFC 3339.
    pub at: String,
    pub unhealthy: Vec<InstanceAddress>,
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
    /// Whether this watcher acted this round (alerted, wrote the plan): always with a local
    /// state, only while it leads with a shared one.
    pub acting: bool,
    /// Its part among the deployment's watchers, when that changed this round (and on the
    /// first round).
    pub leadership: Option<LeadershipChange>,
    /// The replication rounds this watcher ran for a hot standby's pools: only while it acts,
    /// at most once per `replica_interval` (the shortest of the spec's pools), so that the
    /// deployment has one replicator whatever the number of watchers.
    pub replication: Vec<crate::ReplicationRound>,
}

/// A watcher's part among the watchers of its deployment, when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadershipChange {
    /// The state is local: no other watcher shares it, this one always acts.
    Alone,
    /// This watcher took the lead: it acts from this round on.
    Leads,
    /// Another watcher leads: this one reads and keeps its trackers, to take over at once,
    /// and acts on nothing.
    Follows { leader: String },
    /// The leader blob could not be reached: this watcher acts rather than let an alert go
    /// unsent, so that one may come from more than one watcher.
    Unelected { reason: String },
}

impl std::fmt::Display for LeadershipChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeadershipChange::Alone => {
                f.write_str("the state is local: this watcher has no peers and always acts")
            }
            LeadershipChange::Leads => f.write_str(
                "this watcher leads now: it alerts, writes the failover plan and applies it",
            ),
            LeadershipChange::Follows { leader } => write!(
                f,
                "{leader} leads: this watcher follows, reading without acting, and takes over if the leader stops renewing its lease"
            ),
            LeadershipChange::Unelected { reason } => write!(
                f,
                "{reason}; this watcher acts without an election until it is back, so an alert may come from more than one watcher"
            ),
        }
    }
}

/// What the deployment's leader has alerted: each condition's fingerprint (Alertmanager's, the
/// same from one process to the next) and the status it was last alerted with. The content of
/// the leader blob, read by a new leader before it acts, so that it does not alert again what
/// its predecessor did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {
    pub format_version: String,
    pub alerted: BTreeMap<String, AlertedStatus>,
}

/// The status a condition was last alerted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertedStatus {
    Firing,
    /// Firing, with the failover confirmed by a quorum of watchers.
    Confirmed,
    Resolved,
}

impl Default for AlertRecord {
    fn default() -> Self {
        Self {
            format_version: Self::FORMAT_VERSION.to_owned(),
            alerted: BTreeMap::new(),
        }
    }
}

impl AlertRecord {
    pub const FORMAT_VERSION: &str = "1";

    /// A condition's fingerprint and the status this alert gives it.
    pub fn key(alert: AlertRef<'_>) -> (String, AlertedStatus) {
        let message = ferry_watch::alertmanager::message(alert);
        let confirmed = match alert {
            AlertRef::Health(alert) => alert
                .failover
                .quorum
                .as_ref()
                .is_some_and(|quorum| quorum.confirmed),
            AlertRef::Readiness(_) => false,
        };
        let status = match message.status {
            ferry_watch::alertmanager::Status::Firing if confirmed => AlertedStatus::Confirmed,
            ferry_watch::alertmanager::Status::Firing => AlertedStatus::Firing,
            ferry_watch::alertmanager::Status::Resolved => AlertedStatus::Resolved,
        };
        let fingerprint = message
            .alerts
            .into_iter()
            .next()
            .map(|alert| alert.fingerprint)
            .unwrap_or_default();
        (fingerprint, status)
    }

    /// Whether `alert` is news against this record: a firing alert of a condition not known to
    /// fire, or the end of one that was alerted firing (an end whose start was never alerted
    /// is not).
    pub fn is_news(&self, alert: AlertRef<'_>) -> bool {
        let (fingerprint, status) = Self::key(alert);
        match (self.alerted.get(&fingerprint), status) {
            // Once confirmed, a condition is not news again until it ends.
            (Some(AlertedStatus::Confirmed), AlertedStatus::Firing) => false,
            (Some(alerted), status) => *alerted != status,
            (None, AlertedStatus::Firing | AlertedStatus::Confirmed) => true,
            (None, AlertedStatus::Resolved) => false,
        }
    }

    pub fn note(&mut self, alert: AlertRef<'_>) {
        let (fingerprint, status) = Self::key(alert);
        self.alerted.insert(fingerprint, status);
    }
}

/// Who acts among the watchers of one deployment.
#[derive(Debug)]
enum Leadership {
    /// Not decided yet: the first round asks the deployment.
    Unknown,
    /// A local state: no peers, always acts.
    Alone,
    /// A lease on the leader blob. `record` is what the leader alerted, known while this
    /// watcher leads; `leading` what it was last round.
    Elected {
        lease: Box<ferry_state_blob::WatchLeader>,
        record: AlertRecord,
        leading: Option<bool>,
    },
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
    leadership: Leadership,
    /// While following: the latest alert of each condition, for when this watcher takes over
    /// (what its predecessor did not alert, it alerts then).
    unsent_health: BTreeMap<String, Alert>,
    unsent_readiness: Option<ReadinessAlert>,
    /// The health alerts of a failover due whose quorum was not reached: checked again each
    /// round, and alerted again once it is.
    awaiting_quorum: Vec<Alert>,
    /// When this watcher last ran the hot standby's replication rounds.
    last_replication: Option<SystemTime>,
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
            leadership: Leadership::Unknown,
            unsent_health: BTreeMap::new(),
            unsent_readiness: None,
            awaiting_quorum: Vec::new(),
            last_replication: None,
        }
    }

    /// Gives the lead up at once, when the watcher stops, so that a follower takes over at its
    /// next round rather than once the lease runs out.
    pub fn resign(&mut self) {
        if let Leadership::Elected { lease, .. } = &self.leadership {
            lease.resign();
            if self.deployment.spec().watch.quorum > 1 {
                lease.remove_verdict();
            }
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
        let turn = self.take_turn(&mut round)?;
        round.acting = turn != Turn::Follows;
        self.write_verdict(&mut round);
        if round.acting {
            self.replicate(&mut round).await;
        }
        // A failover held back for want of a quorum is looked at again each round.
        if round.acting && round.alerts.is_empty() && !self.awaiting_quorum.is_empty() {
            round.alerts = self.awaiting_quorum.clone();
        }
        // A watcher that takes over while a condition is open plans the failover its
        // predecessor may not have finished (the apply's lock keeps it to one apply).
        if !round.alerts.is_empty() || (turn == Turn::TookOver && !self.open_severities.is_empty())
        {
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
        match turn {
            Turn::Follows => {
                for alert in round.alerts.drain(..) {
                    let (fingerprint, _) = AlertRecord::key(AlertRef::Health(&alert));
                    self.unsent_health.insert(fingerprint, alert);
                }
                if let Some(alert) = round.readiness.take() {
                    self.unsent_readiness = Some(alert);
                }
                return Ok(round);
            }
            Turn::TookOver => {
                let fresh: Vec<String> = round
                    .alerts
                    .iter()
                    .map(|alert| AlertRecord::key(AlertRef::Health(alert)).0)
                    .collect();
                let unsent = std::mem::take(&mut self.unsent_health)
                    .into_iter()
                    .filter(|(fingerprint, _)| !fresh.contains(fingerprint))
                    .map(|(_, alert)| alert);
                round.alerts = unsent.chain(round.alerts.drain(..)).collect();
                let unsent_readiness = self.unsent_readiness.take();
                if round.readiness.is_none() {
                    round.readiness = unsent_readiness;
                }
            }
            Turn::Acts => {}
        }
        if let Leadership::Elected { record, .. } = &self.leadership {
            round
                .alerts
                .retain(|alert| record.is_news(AlertRef::Health(alert)));
            if round
                .readiness
                .as_ref()
                .is_some_and(|alert| !record.is_news(AlertRef::Readiness(alert)))
            {
                round.readiness = None;
            }
        }
        self.deliver(&mut round).await;
        self.record_alerted(&mut round);
        Ok(round)
    }
}

impl Watcher<'_> {
    /// The hot standby's replication rounds, when the shortest `replica_interval` of the
    /// spec's pools has passed since the last ones. A round that fails is a problem of this
    /// watch round, never its end: the lag it leaves shows in failover readiness.
    async fn replicate(&mut self, round: &mut Round) {
        let spec = self.deployment.spec();
        let Some(interval) = spec
            .hot_pools()
            .filter_map(|pool| ferry_core::fields::zfs_pool::replica_timing(&pool.fields))
            .map(|(interval, _)| interval)
            .min()
        else {
            return;
        };
        let now = SystemTime::now();
        if self
            .last_replication
            .is_some_and(|last| now.duration_since(last).is_ok_and(|since| since < interval))
        {
            return;
        }
        self.last_replication = Some(now);
        match self.deployment.replicate().await {
            Ok(rounds) => {
                for done in &rounds {
                    if let Err(why) = &done.outcome {
                        round
                            .problems
                            .push(format!("{}: not replicated: {why}", done.replica));
                    }
                }
                round.replication = rounds;
            }
            Err(error) => round
                .problems
                .push(format!("the replication rounds did not run: {error}")),
        }
    }
}

/// What a watcher does this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Reads only.
    Follows,
    /// Acts, having just taken the lead: what it kept while following is news to check.
    TookOver,
    /// Acts, as it did.
    Acts,
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
    /// Learns whether this watcher acts this round: always with a local state; with a shared
    /// one, while it holds the leader blob's lease (or cannot reach the blob at all).
    fn take_turn(&mut self, round: &mut Round) -> Result<Turn, OpsError> {
        if matches!(self.leadership, Leadership::Unknown) {
            self.leadership = match self.deployment.watch_leader()? {
                None => {
                    round.leadership = Some(LeadershipChange::Alone);
                    Leadership::Alone
                }
                Some(lease) => Leadership::Elected {
                    lease: Box::new(lease),
                    record: AlertRecord::default(),
                    leading: None,
                },
            };
        }
        let Leadership::Elected {
            lease,
            record,
            leading,
        } = &mut self.leadership
        else {
            return Ok(Turn::Acts);
        };
        let (turn, change) = match lease.take_turn() {
            Ok(ferry_state_blob::Turn::Leading {
                taken_now: true,
                record: previous,
            }) => {
                *record = match previous {
                    None => AlertRecord::default(),
                    Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                        round.problems.push(format!(
                            "the leader blob {} does not hold a record of alerts ({error}): alerts the previous leader sent may be sent again",
                            lease.place()
                        ));
                        AlertRecord::default()
                    }),
                };
                (Turn::TookOver, Some(LeadershipChange::Leads))
            }
            Ok(ferry_state_blob::Turn::Leading { .. }) => {
                let change = (*leading != Some(true)).then_some(LeadershipChange::Leads);
                (Turn::Acts, change)
            }
            Ok(ferry_state_blob::Turn::Following { leader }) => {
                let change =
                    (*leading != Some(false)).then_some(LeadershipChange::Follows { leader });
                (Turn::Follows, change)
            }
            Err(error) => {
                let turn = if *leading == Some(true) {
                    Turn::Acts
                } else {
                    Turn::TookOver
                };
                (
                    turn,
                    Some(LeadershipChange::Unelected {
                        reason: error.to_string(),
                    }),
                )
            }
        };
        *leading = Some(turn != Turn::Follows);
        round.leadership = change;
        Ok(turn)
    }

    /// With a quorum: writes what this watcher saw, for the leader to count.
    fn write_verdict(&self, round: &mut Round) {
        let spec = self.deployment.spec();
        let Leadership::Elected { lease, .. } = &self.leadership else {
            return;
        };
        if spec.watch.quorum <= 1 {
            return;
        }
        let verdict = Verdict {
            format_version: "1".to_owned(),
            watcher: lease.name().to_owned(),
            at: ferry_watch::format_time(SystemTime::now()),
            unhealthy: self
                .tracker
                .unhealthy()
                .filter(|instance| spec.failover.triggers.contains(&instance.address))
                .cloned()
                .collect(),
        };
        let text = serde_json::to_vec(&verdict).unwrap_or_default();
        if let Err(error) = lease.write_verdict(text) {
            round
                .problems
                .push(format!("{error}: the leader cannot count this watcher"));
        }
    }

    /// With a quorum: whether enough watchers saw, for their hold time, a trigger this one sees
    /// unhealthy. `None` without a quorum (or when this watcher does not act).
    fn count_quorum(&self, round: &mut Round) -> Option<ferry_watch::QuorumVerdict> {
        let spec = self.deployment.spec();
        let Leadership::Elected { lease, .. } = &self.leadership else {
            return None;
        };
        if spec.watch.quorum <= 1 || !round.acting {
            return None;
        }
        let own: Vec<&InstanceAddress> = self
            .tracker
            .unhealthy()
            .filter(|instance| spec.failover.triggers.contains(&instance.address))
            .collect();
        let freshness = self
            .config
            .verdict_freshness
            .unwrap_or(DEFAULT_VERDICT_FRESHNESS);
        let now = SystemTime::now();
        let verdicts = lease.read_verdicts().unwrap_or_else(|error| {
            round.problems.push(format!(
                "{error}: the failover counts this watcher's verdict alone"
            ));
            Vec::new()
        });
        let mut latest: BTreeMap<String, Verdict> = BTreeMap::new();
        for bytes in verdicts {
            let Ok(verdict) = serde_json::from_slice::<Verdict>(&bytes) else {
                continue;
            };
            let fresh = humantime::parse_rfc3339(&verdict.at)
                .is_ok_and(|at| now.duration_since(at).unwrap_or_default() <= freshness);
            if fresh {
                latest.insert(verdict.watcher.clone(), verdict);
            }
        }
        // This watcher's own verdict counts even if its write did not get through.
        latest.insert(
            lease.name().to_owned(),
            Verdict {
                format_version: "1".to_owned(),
                watcher: lease.name().to_owned(),
                at: ferry_watch::format_time(now),
                unhealthy: own.iter().map(|instance| (*instance).clone()).collect(),
            },
        );
        let (seen, dissenting): (Vec<&Verdict>, Vec<&Verdict>) =
            latest.values().partition(|verdict| {
                verdict
                    .unhealthy
                    .iter()
                    .any(|instance| own.contains(&instance))
            });
        let seen_unhealthy_by: Vec<String> =
            seen.iter().map(|verdict| verdict.watcher.clone()).collect();
        Some(ferry_watch::QuorumVerdict {
            confirmed: seen_unhealthy_by.len() >= spec.watch.quorum as usize,
            needed: spec.watch.quorum,
            seen_unhealthy_by,
            dissenters: dissenting
                .iter()
                .map(|verdict| verdict.watcher.clone())
                .collect(),
        })
    }

    /// Notes what this round alerted in the leader blob, for the next leader.
    fn record_alerted(&mut self, round: &mut Round) {
        let Leadership::Elected { lease, record, .. } = &mut self.leadership else {
            return;
        };
        let before = record.clone();
        for alert in &round.alerts {
            record.note(AlertRef::Health(alert));
        }
        if let Some(alert) = &round.readiness {
            record.note(AlertRef::Readiness(alert));
        }
        if *record == before {
            return;
        }
        let text = serde_json::to_vec(record).unwrap_or_default();
        if let Err(error) = lease.write_record(text) {
            round
                .problems
                .push(format!("{error}: the next leader may alert these again"));
        }
    }

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
                figures.quorum = self.count_quorum(round);
                let unconfirmed = figures
                    .quorum
                    .as_ref()
                    .is_some_and(|quorum| !quorum.confirmed);
                if let Some(quorum) = figures.quorum.as_ref().filter(|_| unconfirmed) {
                    action = Some(format!(
                        "no failover: {quorum}; ferry fails over once {} watchers see it ([watch] quorum)",
                        quorum.needed
                    ));
                }
                // Only the acting watcher writes it: a follower's would be applied twice.
                // Without its quorum, it writes none: the plan would be applied.
                if round.acting
                    && !unconfirmed
                    && let Some(path) = &self.config.plan_on_failure
                {
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
        let held_back = figures
            .quorum
            .as_ref()
            .is_some_and(|quorum| !quorum.confirmed);
        self.awaiting_quorum = if held_back {
            round
                .alerts
                .iter()
                .filter(|alert| !alert.is_resolved())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
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

    use ferry_watch::{Alert, AlertRef, FailoverFigures, HealthState, Severity};

    use super::{AlertRecord, in_order_at_most};

    fn alert(healthy: bool) -> Alert {
        Alert {
            deployment: "data100".into(),
            resource: "aks_cluster.hub@g1".parse().unwrap(),
            old: None,
            new: if healthy {
                HealthState::Healthy
            } else {
                HealthState::Unhealthy {
                    reason: "GET /readyz timed out after 5s".into(),
                }
            },
            since: "2025-11-29T00:01:00Z".into(),
            began: "2025-11-29T00:01:00Z".into(),
            generation: 1,
            severity: Severity::Warning,
            failover: FailoverFigures::default(),
            action: None,
        }
    }

    #[test]
    fn what_the_leader_alerted_is_not_news_to_its_successor_and_an_end_is_news_once() {
        let (firing, resolved) = (alert(false), alert(true));
        let mut record = AlertRecord::default();
        assert!(record.is_news(AlertRef::Health(&firing)));
        assert!(
            !record.is_news(AlertRef::Health(&resolved)),
            "an end whose start was never alerted"
        );
        record.note(AlertRef::Health(&firing));
        // The severity (critical once a failover is due) is not part of the condition.
        let mut critical = firing.clone();
        critical.severity = Severity::Critical;
        assert!(!record.is_news(AlertRef::Health(&critical)));
        assert!(record.is_news(AlertRef::Health(&resolved)));
        record.note(AlertRef::Health(&resolved));
        assert!(!record.is_news(AlertRef::Health(&resolved)));
        assert!(record.is_news(AlertRef::Health(&firing)), "a new condition");
        // As the leader blob holds it.
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            text,
            r#"{"format_version":"1","alerted":{"e8317908174000ff":"resolved"}}"#
        );
    }

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
