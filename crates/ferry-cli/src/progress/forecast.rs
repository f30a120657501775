//! When the service is back and when the apply ends, from the plan's estimates and what the
//! events said so far: the numbers every progress view shows.
//!
//! Pure: the views pass the time (`elapsed` since the apply started) in. Steps come in the
//! plan's execution order, so one pass forward over them schedules each after its
//! predecessors: a running step ends at its start plus its estimate (or now, once it runs
//! late), a step not started yet starts when its last predecessor ends (or now).

use std::collections::HashMap;
use std::time::Duration;

use ferry_core::{Plan, StepId};

/// What the plan says of each step, indexed for the events.
#[derive(Debug, Clone)]
pub struct PlanFacts {
    steps: Vec<StepFact>,
    index: HashMap<StepId, usize>,
    /// The plan's estimate of when the service is back (a failover only).
    pub estimated_recovery: Option<Duration>,
    pub estimated_total: Duration,
}

#[derive(Debug, Clone)]
struct StepFact {
    estimate: Duration,
    after: Vec<usize>,
    critical: bool,
    /// Retirement of the old generation: the service is back before it.
    retire: bool,
}

impl PlanFacts {
    pub fn of(plan: &Plan) -> Self {
        Self::scaled(plan, 1.0)
    }

    /// With every estimate multiplied by `scale`: a simulated world at `--world-time-scale`
    /// runs each step in that share of its estimate, and the forecast follows the real clock.
    pub fn scaled(plan: &Plan, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        let seconds = |value: u64| Duration::from_secs(value).mul_f64(scale);
        let index: HashMap<StepId, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(position, step)| (step.id.clone(), position))
            .collect();
        let critical: std::collections::HashSet<&StepId> = plan.critical_path.iter().collect();
        let steps = plan
            .steps
            .iter()
            .map(|step| StepFact {
                estimate: seconds(step.estimate_seconds),
                after: step
                    .after
                    .iter()
                    .filter_map(|id| index.get(id).copied())
                    .collect(),
                critical: critical.contains(&step.id),
                retire: step.action.goes_last(),
            })
            .collect();
        Self {
            steps,
            index,
            estimated_recovery: plan.recovery_seconds.map(seconds),
            estimated_total: seconds(plan.estimated_seconds),
        }
    }

    pub fn estimate(&self, step: &StepId) -> Option<Duration> {
        self.index
            .get(step)
            .map(|&position| self.steps[position].estimate)
    }

    /// Whether the plan retires an old generation (one kept by `retire_old` is not).
    pub fn retires(&self) -> bool {
        self.steps.iter().any(|step| step.retire)
    }

    pub fn is_critical(&self, step: &StepId) -> bool {
        self.index
            .get(step)
            .is_some_and(|&position| self.steps[position].critical)
    }
}

/// Where each step is, as the events told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running { since: Duration },
    Ended { at: Duration, ok: bool },
}

/// The progress of one apply against its plan.
#[derive(Debug, Clone)]
pub struct Forecast {
    facts: PlanFacts,
    phases: Vec<Phase>,
    /// When every step before retirement had ended well: the service was back.
    recovered_at: Option<Duration>,
}

/// The numbers a view shows at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlook {
    pub ended: usize,
    pub total: usize,
    /// From the start of this apply; `None` when the plan has no recovery moment (not a
    /// failover) or a step it needs failed.
    pub recovery: Option<Moment>,
    pub finish: Duration,
}

/// A moment measured or still forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Reached(Duration),
    Expected(Duration),
}

impl Forecast {
    pub fn new(facts: PlanFacts) -> Self {
        let phases = vec![Phase::Waiting; facts.steps.len()];
        Self {
            facts,
            phases,
            recovered_at: None,
        }
    }

    pub fn facts(&self) -> &PlanFacts {
        &self.facts
    }

    pub fn started(&mut self, step: &StepId, at: Duration) {
        self.set(step, Phase::Running { since: at });
    }

    /// A step that ended (`ok`: succeeded, or done by an earlier apply). Returns the moment
    /// the service came back, once, when this was the last step before retirement.
    pub fn ended(&mut self, step: &StepId, at: Duration, ok: bool) -> Option<Duration> {
        self.set(step, Phase::Ended { at, ok });
        if self.recovered_at.is_some() || self.facts.estimated_recovery.is_none() {
            return None;
        }
        let recovered = self
            .facts
            .steps
            .iter()
            .zip(&self.phases)
            .all(|(fact, phase)| fact.retire || matches!(phase, Phase::Ended { ok: true, .. }));
        if recovered {
            self.recovered_at = Some(at);
        }
        self.recovered_at
    }

    fn set(&mut self, step: &StepId, phase: Phase) {
        if let Some(&position) = self.facts.index.get(step) {
            self.phases[position] = phase;
        }
    }

    pub fn outlook(&self, now: Duration) -> Outlook {
        let mut ends = Vec::with_capacity(self.phases.len());
        let mut recovery_blocked = false;
        // Retirements go last: each waits for the end of every other step, which the plan's
        // order places before them.
        let mut rest_ends = now;
        for (fact, phase) in self.facts.steps.iter().zip(&self.phases) {
            let end = match *phase {
                Phase::Ended { at, ok } => {
                    if !ok && !fact.retire {
                        recovery_blocked = true;
                    }
                    at
                }
                Phase::Running { since } => (since + fact.estimate).max(now),
                Phase::Waiting => {
                    let ready = fact
                        .after
                        .iter()
                        .map(|&before| ends[before])
                        .max()
                        .unwrap_or(now)
                        .max(now);
                    let ready = if fact.retire {
                        ready.max(rest_ends)
                    } else {
                        ready
                    };
                    ready + fact.estimate
                }
            };
            if !fact.retire {
                rest_ends = rest_ends.max(end);
            }
            ends.push(end);
        }
        let finish = ends.iter().copied().max().unwrap_or(now);
        let recovery = match (self.recovered_at, self.facts.estimated_recovery) {
            (Some(at), _) => Some(Moment::Reached(at)),
            (None, None) => None,
            (None, Some(_)) if recovery_blocked => None,
            (None, Some(_)) => Some(Moment::Expected(
                self.facts
                    .steps
                    .iter()
                    .zip(&ends)
                    .filter(|(fact, _)| !fact.retire)
                    .map(|(_, &end)| end)
                    .max()
                    .unwrap_or(now),
            )),
        };
        Outlook {
            ended: self
                .phases
                .iter()
                .filter(|phase| matches!(phase, Phase::Ended { .. }))
                .count(),
            total: self.phases.len(),
            recovery,
            finish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_testkit::random::{plan_of, step};

    fn plan() -> Plan {
        // fence (60) and create (480), then hook (60), then retire (120).
        let mut plan = plan_of(vec![
            step("vm.nfs@g1:fence", 60, &[]),
            step("aks_cluster.hub@g2:create", 480, &[]),
            step(
                "hook.hub@g2:run",
                60,
                &["aks_cluster.hub@g2:create", "vm.nfs@g1:fence"],
            ),
            step("vm.nfs@g1:retire", 120, &["hook.hub@g2:run"]),
        ]);
        plan.recovery_seconds = Some(540);
        plan
    }

    fn id(text: &str) -> StepId {
        StepId(text.to_owned())
    }

    fn seconds(value: u64) -> Duration {
        Duration::from_secs(value)
    }

    #[test]
    fn before_anything_starts_the_forecast_is_the_plan() {
        let forecast = Forecast::new(PlanFacts::of(&plan()));
        assert_eq!(
            forecast.outlook(seconds(0)),
            Outlook {
                ended: 0,
                total: 4,
                recovery: Some(Moment::Expected(seconds(540))),
                finish: seconds(660),
            }
        );
        assert!(forecast.facts().is_critical(&id("hook.hub@g2:run")));
        assert!(!forecast.facts().is_critical(&id("vm.nfs@g1:fence")));
    }

    #[test]
    fn a_late_step_pushes_recovery_back_and_the_measured_moment_is_kept() {
        let mut forecast = Forecast::new(PlanFacts::of(&plan()));
        forecast.started(&id("vm.nfs@g1:fence"), seconds(0));
        forecast.started(&id("aks_cluster.hub@g2:create"), seconds(0));
        assert_eq!(
            forecast.ended(&id("vm.nfs@g1:fence"), seconds(50), true),
            None
        );
        // The create runs 100 s past its estimate: it is expected to end now, at the earliest.
        let late = forecast.outlook(seconds(580));
        assert_eq!(late.recovery, Some(Moment::Expected(seconds(640))));
        assert_eq!(late.finish, seconds(760));
        assert_eq!(late.ended, 1);
        forecast.ended(&id("aks_cluster.hub@g2:create"), seconds(600), true);
        forecast.started(&id("hook.hub@g2:run"), seconds(600));
        assert_eq!(
            forecast.ended(&id("hook.hub@g2:run"), seconds(650), true),
            Some(seconds(650))
        );
        assert_eq!(
            forecast.outlook(seconds(700)).recovery,
            Some(Moment::Reached(seconds(650)))
        );
    }

    #[test]
    fn a_failed_step_before_retirement_leaves_no_recovery_to_promise() {
        let mut forecast = Forecast::new(PlanFacts::of(&plan()));
        forecast.started(&id("vm.nfs@g1:fence"), seconds(0));
        forecast.ended(&id("vm.nfs@g1:fence"), seconds(10), false);
        assert_eq!(forecast.outlook(seconds(10)).recovery, None);
    }

    #[test]
    fn a_plan_that_is_not_a_failover_has_only_its_end() {
        let mut plan = plan();
        plan.recovery_seconds = None;
        let mut forecast = Forecast::new(PlanFacts::of(&plan));
        assert_eq!(forecast.outlook(seconds(0)).recovery, None);
        forecast.started(&id("vm.nfs@g1:fence"), seconds(0));
        assert_eq!(
            forecast.ended(&id("vm.nfs@g1:fence"), seconds(60), true),
            None
        );
    }
}
