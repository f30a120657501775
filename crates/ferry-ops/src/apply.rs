//! An apply under the lock: take it, read the world, refuse a saved plan whose readings
//! changed (or plan afresh and ask for approval), apply, save the simulated world, release.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, Event, HeldLock, Store};
use ferry_core::{Generation, Plan};
use ferry_plan::SavedPlan;
use ferry_state::StateBackend;
use ferry_state::lock::{LockInfo, LockRequest};

use crate::{Deployment, OpsError, PlanOptions, WorldSource};

/// Which plan an apply carries out.
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// A plan made now from the spec and the readings, with these options; it is shown to the
    /// caller's [`ApplyRequest::approve`] before anything changes.
    Fresh(PlanOptions),
    /// A plan saved earlier (`ferry plan --out`), applied only while its readings hold; it was
    /// approved when it was reviewed.
    Saved {
        plan: Box<SavedPlan>,
        /// Where it was read from, for messages.
        path: PathBuf,
    },
}

/// The caller's answer to a fresh plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Approved,
    Declined,
}

/// What an apply needs beyond the deployment.
pub struct ApplyRequest<'a> {
    pub plan: PlanSource,
    /// How long to wait for another apply's lock before giving up (zero: do not wait).
    pub lock_timeout: Duration,
    /// The engine's settings. Its `secrets` are replaced with the spec's, read from this
    /// process's environment: a saved plan's sealed values are opened with today's values.
    /// Its `kind_parallelism` is laid over the spec's `[limits]`: a kind it names takes its
    /// limit, the others the spec's, then their provider's.
    pub config: ApplyConfig,
    /// Stops starting steps, or aborts them (the CLI wires Ctrl-C to it).
    pub control: &'a ApplyControl,
    /// Every event of the apply, as it happens.
    pub on_event: &'a (dyn Fn(&Event) + Send + Sync),
    /// Asked once with a fresh plan that has something to do; never for a saved plan.
    pub approve: &'a mut (dyn FnMut(&Plan) -> Result<Approval, String> + Send),
}

impl std::fmt::Debug for ApplyRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyRequest")
            .field("plan", &self.plan)
            .field("lock_timeout", &self.lock_timeout)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How an apply ended, when it could run at all.
#[derive(Debug)]
pub enum Applied {
    /// The plan had nothing to do (its verdict says whether every reading was known and
    /// healthy); nothing was changed.
    NothingToDo { plan: Plan },
    /// The caller declined the plan; nothing was changed.
    Declined { plan: Plan },
    /// The engine ran the plan; the report says how each step ended.
    Ran {
        plan: Plan,
        report: ApplyReport,
        /// The generation that serves now, as the state records it.
        active_generation: Generation,
        /// Why the lock could not be released after the steps (a lock lost before the end:
        /// another apply may have run beside this one, so never a success).
        release_error: Option<String>,
    },
}

impl Deployment {
    /// Applies under the deployment's lock. The lock is taken first (waiting up to
    /// `lock_timeout`), held and renewed while steps run, checked before each step, and
    /// released at the end whatever happened.
    pub async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, OpsError> {
        if let PlanSource::Saved { plan, path } = &request.plan
            && plan.deployment != self.spec.deployment.name
        {
            return Err(OpsError::OtherDeployment {
                plan: path.display().to_string(),
                planned: plan.deployment.clone(),
                spec: self.spec_path.display().to_string(),
                deployment: self.spec.deployment.name.clone(),
            });
        }
        let held = self.take_lock(request.lock_timeout).await?;
        let result = self.locked_apply(request, &held).await;
        let released = self.backend()?.release_lock(&held.id);
        match (released, result) {
            (Ok(()), result) => result,
            (
                Err(error),
                Ok(Applied::Ran {
                    plan,
                    report,
                    active_generation,
                    ..
                }),
            ) => Ok(Applied::Ran {
                plan,
                report,
                active_generation,
                release_error: Some(error.to_string()),
            }),
            (Err(error), Ok(_)) => Err(error.into()),
            (Err(_), Err(error)) => Err(error),
        }
    }

    /// Takes the lock, polling once a second (plenty for a lock held for minutes, and cheap
    /// for a blob) on a thread of its own, so that the caller's runtime keeps running.
    async fn take_lock(&self, timeout: Duration) -> Result<LockInfo, OpsError> {
        let backend = self.backend()?.clone();
        let spec_path = self.spec_path.clone();
        tokio::task::spawn_blocking(move || {
            ferry_state::acquire_waiting(
                &*backend,
                &LockRequest::for_this_process("apply", backend.lease()),
                timeout,
                Duration::from_secs(1),
            )
            .map_err(|error| error.for_spec(&spec_path))
        })
        .await
        .map_err(|error| OpsError::Runtime(std::io::Error::other(error)))?
        .map_err(Into::into)
    }

    async fn locked_apply(
        &self,
        request: ApplyRequest<'_>,
        held: &LockInfo,
    ) -> Result<Applied, OpsError> {
        let backend: &Arc<dyn StateBackend> = self.backend()?;
        // The engine renews the lease while steps run (a blob's lease is also renewed in the
        // background from the moment it was taken), and stops starting steps if it is lost.
        let mut store = Store::open_backend(
            backend.clone(),
            HeldLock {
                path: backend.lock_place(),
                id: held.id.clone(),
                lease: backend.lease(),
            },
        )?;
        let (providers, world) = self.providers(true)?;
        let snapshot = self.read_with(&store.state, &providers).await?;
        // The world wins over the state: outputs a killed apply never recorded (a create Azure
        // had accepted) are taken from the readings, and saved with the apply's first step.
        ferry_observe::learn_outputs(&mut store.state, &snapshot, &self.rules);

        let plan = match request.plan {
            PlanSource::Saved { plan, .. } => {
                let stale = plan.stale(&snapshot);
                if !stale.is_empty() {
                    return Err(OpsError::Stale {
                        changes: stale.iter().map(ToString::to_string).collect(),
                    });
                }
                plan.plan
            }
            PlanSource::Fresh(options) => {
                let plan = crate::plan(&self.spec, &snapshot, &self.rules, &options)?;
                // A failover with no steps left still has its end to record.
                if plan.is_empty() && plan.failover.is_none() {
                    return Ok(Applied::NothingToDo { plan });
                }
                match (request.approve)(&plan).map_err(OpsError::Guard)? {
                    Approval::Approved => plan,
                    Approval::Declined => return Ok(Applied::Declined { plan }),
                }
            }
        };
        // An empty failover plan still runs: the engine records the failover as finished (an
        // apply killed after its last step, before that, leaves nothing else to do).
        if plan.is_empty() && plan.failover.is_none() {
            return Ok(Applied::NothingToDo { plan });
        }
        let mut config = request.config;
        config.secrets = self.spec.secrets.clone();
        // The spec's `[limits]` first, the caller's own (`--kind-parallelism`) over them.
        let mut kind_parallelism = self.spec.limits.clone();
        kind_parallelism.append(&mut config.kind_parallelism);
        config.kind_parallelism = kind_parallelism;
        let report = ferry_apply::apply(
            &plan,
            &providers,
            &config,
            &mut store,
            request.control,
            request.on_event,
        )
        .await?;
        if let (Some(world), WorldSource::Simulated { path, .. }) = (&world, &self.source) {
            ferry_world::file::save(path, world)?;
        }
        Ok(Applied::Ran {
            plan,
            report,
            active_generation: store.state.active_generation,
            release_error: None,
        })
    }
}
