//! How an apply runs: parallelism, retries and time limits.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use ferry_core::{Step, StepId};

/// Retries of transient errors ([`StepError::transient`](ferry_core::StepError)).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Calls of a step in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Up to this fraction is added to each wait, so that steps throttled together do not
    /// retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(120),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempt + 1` of `step`.
    ///
    /// A `retry_after` from the remote side replaces the backoff (it knows best when it will
    /// accept us); jitter only ever lengthens a wait, so it never undercuts `retry_after`. The
    /// jitter comes from a hash of the step and attempt rather than a random number generator,
    /// which spreads steps apart and keeps runs (and tests) reproducible.
    pub fn delay(
        &self,
        step: &StepId,
        failed_attempt: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        let base = retry_after.unwrap_or_else(|| {
            let doublings = failed_attempt.saturating_sub(1).min(30);
            self.initial_delay
                .saturating_mul(1 << doublings)
                .min(self.max_delay)
        });
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (step, failed_attempt).hash(&mut hasher);
        let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
        base.saturating_add(base.mul_f64(self.jitter.clamp(0.0, 1.0) * fraction))
    }
}

/// How an apply runs. `ApplyConfig::default()` is what `ferry apply` uses without flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyConfig {
    /// Steps running at once, over all providers (each provider has its own limit too).
    pub parallelism: usize,
    /// Steps of one kind running at once, for the kinds named here (the spec's `[limits]`,
    /// `--kind-parallelism`): each replaces its provider's own
    /// [`concurrency_limit`](ferry_core::Provider::concurrency_limit). `parallelism` still
    /// bounds the sum.
    pub kind_parallelism: ferry_core::limits::KindLimits,
    pub retry: RetryPolicy,
    /// The least time one attempt of a step may take before it is abandoned as failed.
    pub step_timeout: Duration,
    /// A step's attempt may take up to this many times its estimate, when that is longer than
    /// `step_timeout`: an AKS create estimated at 10 minutes gets 30.
    pub estimate_multiplier: u32,
    /// The values of the environment variables the spec read (`Spec::secrets`): the engine
    /// opens the plan's sealed `${env.NAME@sha256:…}` with them (refusing the plan when one
    /// is missing or changed), masks them in every event and error, and keeps them sealed in
    /// the state and the journal.
    pub secrets: ferry_core::secret::Secrets,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        Self {
            parallelism: 10,
            kind_parallelism: ferry_core::limits::KindLimits::new(),
            retry: RetryPolicy::default(),
            step_timeout: Duration::from_secs(15 * 60),
            estimate_multiplier: 3,
            secrets: ferry_core::secret::Secrets::new(),
        }
    }
}

impl ApplyConfig {
    /// How many steps of `kind` may run at once: the limit set for it, else its provider's.
    /// Never 0, which would leave the kind's steps waiting forever.
    pub fn kind_limit(&self, kind: ferry_core::Kind, provider_limit: usize) -> usize {
        self.kind_parallelism
            .get(&kind)
            .copied()
            .unwrap_or(provider_limit)
            .max(1)
    }

    /// The time limit of one attempt of `step`: max(step_timeout, estimate_multiplier x its
    /// estimate).
    pub fn time_limit(&self, step: &Step) -> Duration {
        let from_estimate = Duration::from_secs(
            step.estimate_seconds
                .saturating_mul(self.estimate_multiplier.into()),
        );
        self.step_timeout.max(from_estimate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let step = StepId("vm.nfs@g2:create".into());
        let waits: Vec<u64> = (1..=8)
            .map(|attempt| policy.delay(&step, attempt, None).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(
            policy.delay(&step, 3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let jittered = RetryPolicy::default().delay(&step, 1, Some(Duration::from_secs(10)));
        assert!(jittered >= Duration::from_secs(10) && jittered <= Duration::from_secs(12));
    }
}
