//! The scheduler: runs every step as soon as its predecessors have succeeded.
//!
//! All step futures are polled by the apply's own task (a `FuturesUnordered`): providers do
//! I/O, not computation, so one task is enough, and it lets a hard cancel abort running steps
//! by simply dropping their futures. It also means the shared state needs no cross-thread
//! coordination beyond a `Mutex` that is never contended.
//!
//! Crash safety follows from the order of writes: the journal records a step's start before
//! the provider is called; after a success the state (with the step's outputs) is saved
//! *before* the journal records the end. A crash between the two re-runs the step, which the
//! provider contract makes harmless; the reverse order could lose outputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::secret::Secrets;
use ferry_core::time::format_time;
use ferry_core::value::{finish, resolve};
use ferry_core::{
    Action, ApplyContext, Attributes, Expression, Generation, InstanceAddress, Kind, Plan,
    Provider, Providers, Step, StepError, StepId, StepOutcome,
};
use ferry_state::journal::{JournalError, StepResult};
use ferry_state::{JOURNAL_FORMAT_VERSION, Journal, JournalRecord, StateFile};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::cancel::{ApplyControl, CancelLevel};
use crate::config::ApplyConfig;
use crate::event::{Event, EventKind};
use crate::report::{ApplyReport, StepReport, StepStatus};
use crate::store::Store;

/// Why an apply did not start: the plan cannot be carried out as given. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "step {step} needs a provider for {kind}, and none is registered: add one to the providers passed to apply"
    )]
    NoProvider { step: StepId, kind: Kind },
    #[error(
        "step {step} must follow {after}, which is not in the plan: the plan is damaged; make it again with `ferry plan`"
    )]
    UnknownPredecessor { step: StepId, after: StepId },
    #[error(
        "step {step} comes before {after}, which it must follow: the plan is not in execution order; make it again with `ferry plan`"
    )]
    OutOfOrder { step: StepId, after: StepId },
    /// A secret the plan was made with is not in the environment given, or changed since.
    #[error("step {step}: {error}")]
    Secret {
        step: StepId,
        error: ferry_core::secret::SealError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The failover could not be recorded as started, so no step ran.
    #[error("the failover could not be recorded in the state, so nothing was changed: {0}")]
    State(ferry_state::StateError),
}

/// Carries out `plan` and reports what happened to every step.
///
/// Steps start in plan order as soon as all their predecessors succeeded, at most
/// `config.parallelism` at once and at most each kind's limit: `config.kind_parallelism`'s
/// where it names the kind, else its provider's `concurrency_limit()`.
/// `store` is read for outputs and for what an interrupted apply already did, and written
/// after every step. `control` cancels; `on_event` sees progress as it happens (it is called
/// inline: keep it quick).
///
/// Returns an error only when the plan cannot start (see [`ApplyError`]); once steps run,
/// every outcome, failures and storage errors included, is in the [`ApplyReport`].
pub async fn apply(
    plan: &Plan,
    providers: &Providers,
    config: &ApplyConfig,
    store: &mut Store,
    control: &ApplyControl,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> Result<ApplyReport, ApplyError> {
    let start = Instant::now();
    let mut schedule = Schedule::new(plan, providers, config)?;
    check_secrets(plan, &config.secrets)?;
    let apply_id = new_apply_id();
    let state = Mutex::new(std::mem::take(&mut store.state));
    let shared = Shared {
        config,
        journal: store.journal.as_ref(),
        apply_id: &apply_id,
        start,
        on_event,
        state: &state,
        storage_error: Mutex::new(None),
    };
    record_failover(plan, &shared, store)?;
    shared.write(JournalRecord::ApplyStarted {
        format_version: JOURNAL_FORMAT_VERSION.to_owned(),
        apply_id: apply_id.clone(),
        at: format_time(SystemTime::now()),
        steps: plan.steps.len(),
    })?;
    mark_finished_earlier(plan, &shared, store, &mut schedule)?;
    schedule.queue_ready();
    let cancel = run_steps(plan, &shared, store, control, &mut schedule).await;

    // A lock lost while the last steps ran is a failure too: another apply may have started
    // meanwhile, so this one neither reports success nor switches the generation.
    if let Err(error) = store.verify_lock() {
        shared.storage_failed(error.to_string());
    }
    let mut report = ApplyReport {
        apply_id: apply_id.clone(),
        steps: schedule.reports,
        elapsed: start.elapsed(),
        cancel,
        storage_error: shared.storage_error(),
    };
    // The end is journaled before the state records the target generation. A crash in
    // between leaves the failover recorded in the state and no apply open in the journal: the
    // next apply plans that failover from the world, finds nothing left, and records it. The
    // other order would leave the journal's apply open behind a finished state, and its
    // finished steps (`disk.home0:move`, `zfs_pool.home:import`: ids without a generation)
    // would count as done for the next failover's plan, a year later.
    journal_end(&shared, &mut report);
    switch_generation(plan, &shared, store, &mut report);
    shared.emit(EventKind::ApplyFinished {
        counts: report.counts(),
    });
    drop(shared);
    store.state = state
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(report)
}

/// Records the plan's failover in the state as in progress, before its first step, so that a
/// plan made after a crash finishes it rather than deciding again from what the old
/// generation reads.
fn record_failover(plan: &Plan, shared: &Shared<'_>, store: &Store) -> Result<(), ApplyError> {
    if let Some(failover) = &plan.failover {
        let mut state = shared.lock_state();
        if state.failover.as_ref() != Some(failover) {
            state.failover = Some(failover.clone());
            store.save_state(&state).map_err(ApplyError::State)?;
        }
    }
    Ok(())
}

/// The state records a step's end makes obsolete, forgotten: a deleted or retired
/// instance's, and a promoted replica's (`zfs_pool.home@g2`: the pool itself from then on, of
/// which that record would only be a stale copy).
fn forget_what_ended(state: &mut StateFile, step: &ferry_core::Step) {
    let instance = step.instance();
    match step.action {
        Action::Delete | Action::Retire => state.forget(&instance),
        Action::Promote => {
            if let Some(generation) = step
                .inputs
                .get(ferry_core::fields::zfs_pool::HOST)
                .and_then(ferry_core::Value::as_str)
                .and_then(|host| host.parse::<ferry_core::InstanceAddress>().ok())
                .and_then(|host| host.generation)
            {
                state.forget(&instance.address.at(Some(generation)));
            }
        }
        _ => {}
    }
}

/// Marks the steps an interrupted apply finished as already done, and announces the start.
///
/// Such steps count as succeeded; their outputs are in the state, which was saved before
/// their end was journaled. What their end made obsolete is forgotten again: the apply that
/// resumes learned the world's outputs first, and a promoted replica reads present, so its
/// record came back (found by the kill -9 test of a hot hand-over on real hosts).
fn mark_finished_earlier(
    plan: &Plan,
    shared: &Shared<'_>,
    store: &Store,
    schedule: &mut Schedule<'_>,
) -> Result<(), ApplyError> {
    // All are marked before any is counted as succeeded, so that a finished step is never
    // queued as the ready dependent of another finished step.
    let finished_earlier: Vec<usize> = (0..plan.steps.len())
        .filter(|&index| {
            store.resume.phase(&plan.steps[index].id) == ferry_state::StepPhase::Succeeded
        })
        .collect();
    for &index in &finished_earlier {
        schedule.reports[index].status = StepStatus::AlreadyDone;
    }
    if !finished_earlier.is_empty() {
        let mut state = shared.lock_state();
        let before = state.instances.len();
        for &index in &finished_earlier {
            forget_what_ended(&mut state, &plan.steps[index]);
        }
        if state.instances.len() != before {
            store.save_state(&state).map_err(ApplyError::State)?;
        }
    }
    for &index in &finished_earlier {
        schedule.succeeded(index);
    }
    let already_done = finished_earlier.len();
    shared.emit(EventKind::ApplyStarted {
        apply_id: shared.apply_id.to_owned(),
        steps: plan.steps.len(),
        already_done,
    });
    for report in &schedule.reports {
        if report.status == StepStatus::AlreadyDone {
            shared.emit(EventKind::StepAlreadyDone {
                step: report.id.clone(),
            });
        }
    }
    Ok(())
}

/// Runs the queued steps: starts each as soon as it is ready, collects their ends, renews the
/// lock and follows cancellation, until no step runs and none may start. Returns the highest
/// cancel level asked for.
async fn run_steps<'run>(
    plan: &'run Plan,
    shared: &'run Shared<'_>,
    store: &Store,
    control: &ApplyControl,
    schedule: &mut Schedule<'run>,
) -> CancelLevel {
    let mut running: FuturesUnordered<BoxFuture<'run, Finished>> = FuturesUnordered::new();
    let mut cancels = control.subscribe();
    let mut cancel = *cancels.borrow_and_update();
    let mut stopping = false;
    if cancel >= CancelLevel::StopStarting {
        stopping = true;
        shared.emit(EventKind::Stopping {
            hard: cancel == CancelLevel::Abort,
        });
    }

    // Renewing at a third of the lease leaves two chances before it lapses.
    let mut renewal = tokio::time::interval(
        store
            .lock
            .as_ref()
            .map_or(Duration::from_secs(3600), |lock| lock.lease / 3)
            .max(Duration::from_millis(10)),
    );
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if shared.storage_error().is_some() && !stopping {
            stopping = true;
        }
        if !stopping && start_ready_steps(plan, shared, store, schedule, &mut running) {
            stopping = true;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            // Cancels first: a hard cancel must not wait behind a stream of completions.
            biased;
            Ok(()) = cancels.changed() => {
                let level = *cancels.borrow_and_update();
                if level > cancel {
                    cancel = level;
                    stopping = true;
                    shared.emit(EventKind::Stopping { hard: level == CancelLevel::Abort });
                }
                if level == CancelLevel::Abort {
                    abort_running(shared, schedule, &mut running);
                    break;
                }
            }
            _ = renewal.tick(), if store.lock.is_some() => {
                if let Err(error) = store.renew_lock() {
                    shared.storage_failed(error.to_string());
                    stopping = true;
                }
            }
            Some(finished) = running.next() => {
                // The steps that ended meanwhile are saved and journaled with this one.
                let mut ended = vec![finished];
                while let Some(Some(finished)) = running.next().now_or_never() {
                    ended.push(finished);
                }
                shared.steps_ended(schedule, plan, ended, store);
            }
        }
    }
    cancel
}

/// Starts every ready step that the limits leave room for, each journaled before its
/// provider is called. Returns whether the apply must stop starting steps: its lock is lost
/// or its journal cannot be written.
///
/// The steps that can start together are journaled together, with one fsync (a group
/// commit): at one fsync per step, a wide plan of short steps was bound by the disk.
fn start_ready_steps<'run>(
    plan: &'run Plan,
    shared: &'run Shared<'_>,
    store: &Store,
    schedule: &mut Schedule<'run>,
    running: &mut FuturesUnordered<BoxFuture<'run, Finished>>,
) -> bool {
    loop {
        let mut starting = Vec::new();
        while let Some(index) = schedule.next_ready(shared.config.parallelism) {
            starting.push(index);
        }
        if starting.is_empty() {
            return false;
        }
        // A step starts only under the lock: once another operator broke it (or someone
        // deleted it), a second apply may be running the same plan.
        if let Err(error) = store.verify_lock() {
            shared.storage_failed(error.to_string());
            for index in starting {
                schedule.unstart(index);
            }
            return true;
        }
        let mut ready = Vec::with_capacity(starting.len());
        for index in starting {
            let step = &plan.steps[index];
            // A step whose inputs cannot be resolved fails; its slot goes to the next round.
            match resolve_inputs(step, &shared.lock_state(), &shared.config.secrets) {
                Ok(inputs) => {
                    let resume_token = store.resume.resume_token_of(&step.id).map(str::to_owned);
                    ready.push((index, inputs, resume_token));
                }
                Err(error) => shared.step_failed(schedule, index, error, Ending::Journaled),
            }
        }
        let records: Vec<JournalRecord> = ready
            .iter()
            .map(|(index, _, resume_token)| {
                let step = &plan.steps[*index];
                JournalRecord::StepStarted {
                    apply_id: shared.apply_id.to_owned(),
                    step: step.id.clone(),
                    instance: step.instance(),
                    action: step.action,
                    at: format_time(SystemTime::now()),
                    resume_token: resume_token.clone(),
                }
            })
            .collect();
        if let Err(error) = shared.write_all(&records) {
            // Without its journal record a step must not start: the next apply could not
            // tell that it might have taken effect.
            shared.storage_failed(error.to_string());
            for (index, _, _) in ready {
                schedule.unstart(index);
            }
            return true;
        }
        for (index, inputs, resume_token) in ready {
            let step = &plan.steps[index];
            schedule.reports[index].started = Some(shared.start.elapsed());
            shared.emit(EventKind::StepStarted {
                step: step.id.clone(),
                resume_token: resume_token.clone(),
            });
            let provider = &**schedule.providers[index];
            running.push(
                run_step(shared, step, provider, inputs, resume_token)
                    .map(move |(result, attempts, ending)| Finished {
                        index,
                        result,
                        attempts,
                        ending,
                    })
                    .boxed(),
            );
        }
    }
}

/// A hard cancel: drops the running steps' futures, which aborts the provider calls where
/// they stand, and reports those steps as interrupted. Their journal has a start and no end,
/// so the next apply re-runs them.
fn abort_running(
    shared: &Shared<'_>,
    schedule: &mut Schedule<'_>,
    running: &mut FuturesUnordered<BoxFuture<'_, Finished>>,
) {
    running.clear();
    for (index, report) in schedule.reports.iter_mut().enumerate() {
        if schedule.is_running[index] {
            report.status = StepStatus::Interrupted;
            report.finished = Some(shared.start.elapsed());
            shared.emit(EventKind::StepInterrupted {
                step: report.id.clone(),
            });
        }
    }
}

/// Journals the apply's end; a failure to do so is the report's storage error unless an
/// earlier one is.
fn journal_end(shared: &Shared<'_>, report: &mut ApplyReport) {
    let finished = shared.write(JournalRecord::ApplyFinished {
        apply_id: shared.apply_id.to_owned(),
        at: format_time(SystemTime::now()),
        complete: report.succeeded(),
    });
    if let Err(error) = finished
        && report.storage_error.is_none()
    {
        report.storage_error = Some(error.to_string());
    }
}

/// Every step done: the target generation serves, and a failover is over. Called only after
/// the apply's end is journaled (see [`apply`]).
fn switch_generation(plan: &Plan, shared: &Shared<'_>, store: &Store, report: &mut ApplyReport) {
    if !report.succeeded() {
        return;
    }
    let mut state = shared.lock_state();
    let mut done = state.clone();
    // Without a failover, the generation the plan converged: a plan made after the state
    // was lost or reset converges the generation the world says serves, which the state
    // records from now on.
    done.active_generation = plan
        .failover
        .as_ref()
        .map(|failover| failover.to_generation)
        .unwrap_or_else(|| converged_generation(plan).max(state.active_generation.max(1)));
    if let Some(failover) = &plan.failover {
        done.stood_down
            .insert(failover.from_generation, format_time(SystemTime::now()));
    }
    done.failover = None;
    // A generation's retention ends with its last instance.
    let remembered: std::collections::BTreeSet<Generation> = done
        .instances
        .keys()
        .filter_map(|instance| instance.generation)
        .collect();
    done.stood_down
        .retain(|generation, _| remembered.contains(generation));
    match store.save_state(&done) {
        Ok(()) => *state = done,
        Err(error) => {
            drop(state);
            shared.storage_failed(error.to_string());
            report.storage_error = shared.storage_error();
        }
    }
}

/// A step future's result, tagged with the step's position in the plan.
struct Finished {
    index: usize,
    result: Result<StepOutcome, StepError>,
    attempts: u32,
    ending: Ending,
}

/// Whether a failed step's end goes in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The provider said how the step ended.
    Journaled,
    /// The step was abandoned at its time limit: what it started may still be running, so the
    /// journal keeps it started, with its resume token, and the next apply resumes from that
    /// (polls an ARM operation) instead of sending the request again (as after a crash).
    OutcomeUnknown,
}

/// What the running steps share with the scheduler loop.
struct Shared<'a> {
    config: &'a ApplyConfig,
    journal: Option<&'a Journal>,
    apply_id: &'a str,
    start: Instant,
    on_event: &'a (dyn Fn(&Event) + Send + Sync),
    /// Outputs of every instance, updated as steps succeed.
    state: &'a Mutex<StateFile>,
    /// The first failure to write the state or journal; once set, no new step starts.
    storage_error: Mutex<Option<String>>,
}

impl Shared<'_> {
    fn emit(&self, kind: EventKind) {
        // Whatever a provider or a hook says is masked for every secret ferry knows.
        let secrets = &self.config.secrets;
        let kind = match kind {
            EventKind::StepProgress { step, line } => EventKind::StepProgress {
                step,
                line: secrets.mask(&line),
            },
            EventKind::StepRetrying {
                step,
                attempt,
                delay,
                error,
            } => EventKind::StepRetrying {
                step,
                attempt,
                delay,
                error: secrets.mask(&error),
            },
            EventKind::StorageFailed { error } => EventKind::StorageFailed {
                error: secrets.mask(&error),
            },
            other => other,
        };
        (self.on_event)(&Event {
            elapsed: self.start.elapsed(),
            kind,
        });
    }

    fn write(&self, record: JournalRecord) -> Result<(), JournalError> {
        self.write_all(std::slice::from_ref(&record))
    }

    /// Journals records together, with one fsync.
    fn write_all(&self, records: &[JournalRecord]) -> Result<(), JournalError> {
        match self.journal {
            Some(journal) => journal.append_all(records),
            None => Ok(()),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, StateFile> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn storage_error(&self) -> Option<String> {
        self.storage_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn storage_failed(&self, error: String) {
        let mut slot = self
            .storage_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(error.clone());
            drop(slot);
            self.emit(EventKind::StorageFailed { error });
        }
    }

    /// Records the end of steps that ended together: the successes' outputs in the state,
    /// saved once; then every end in the journal, with one fsync; then the reports, the
    /// events and the steps that now wait on nothing.
    fn steps_ended(
        &self,
        schedule: &mut Schedule<'_>,
        plan: &Plan,
        ended: Vec<Finished>,
        store: &Store,
    ) {
        let mut succeeded = Vec::new();
        let mut failed = Vec::new();
        for Finished {
            index,
            result,
            attempts,
            ending,
        } in ended
        {
            schedule.reports[index].attempts = attempts;
            match result {
                Ok(mut outcome) => {
                    // The state and the journal keep a secret as its sealed reference, never
                    // its value.
                    for value in outcome.outputs.values_mut() {
                        *value = self.config.secrets.seal_raw(value);
                    }
                    succeeded.push((index, outcome));
                }
                Err(error) => {
                    failed.push((index, self.config.secrets.mask(&error.message), ending));
                }
            }
        }
        let saved = if succeeded.is_empty() {
            Ok(())
        } else {
            let mut state = self.lock_state();
            for (index, outcome) in &succeeded {
                let step = &plan.steps[*index];
                forget_what_ended(&mut state, step);
                if !matches!(step.action, Action::Delete | Action::Retire) {
                    state.record_outputs(&step.instance(), outcome.outputs.clone());
                }
            }
            store.save_state(&state)
        };
        // The journal records a step's end only once its outputs are saved: a resumed apply
        // takes a finished step's outputs from the state, so an end journaled without them
        // would leave its dependents unable to resolve their inputs. Left started, the step is
        // run again by the next apply, which the provider contract makes harmless.
        let mut records = Vec::new();
        if saved.is_ok() {
            for (index, outcome) in &succeeded {
                records.push(JournalRecord::StepFinished {
                    apply_id: self.apply_id.to_owned(),
                    step: plan.steps[*index].id.clone(),
                    at: format_time(SystemTime::now()),
                    result: StepResult::Ok {
                        outputs: outcome.outputs.clone(),
                    },
                });
            }
        }
        for (index, error, ending) in &failed {
            if *ending == Ending::Journaled {
                records.push(JournalRecord::StepFinished {
                    apply_id: self.apply_id.to_owned(),
                    step: plan.steps[*index].id.clone(),
                    at: format_time(SystemTime::now()),
                    result: StepResult::Failed {
                        error: error.clone(),
                    },
                });
            }
        }
        if let Err(error) = self.write_all(&records) {
            self.storage_failed(error.to_string());
        }
        // A step whose outputs are saved is done, even if its end could not be journaled: the
        // state has everything its dependents need.
        let status = match &saved {
            Err(error) => {
                let error = error.to_string();
                self.storage_failed(error.clone());
                StepStatus::NotSaved { error }
            }
            Ok(()) => StepStatus::Done,
        };
        for (index, _) in succeeded {
            let now = self.start.elapsed();
            let report = &mut schedule.reports[index];
            report.status = status.clone();
            report.finished = Some(now);
            let took = now - report.started.unwrap_or(now);
            self.emit(EventKind::StepSucceeded {
                step: plan.steps[index].id.clone(),
                took,
            });
            schedule.succeeded(index);
        }
        for (index, error, _) in failed {
            self.finish_failed(schedule, index, error);
        }
    }

    fn step_failed(
        &self,
        schedule: &mut Schedule<'_>,
        index: usize,
        error: String,
        ending: Ending,
    ) {
        let id = schedule.reports[index].id.clone();
        let error = self.config.secrets.mask(&error);
        if ending == Ending::Journaled
            && let Err(journal_error) = self.write(JournalRecord::StepFinished {
                apply_id: self.apply_id.to_owned(),
                step: id.clone(),
                at: format_time(SystemTime::now()),
                result: StepResult::Failed {
                    error: error.clone(),
                },
            })
        {
            self.storage_failed(journal_error.to_string());
        }
        self.finish_failed(schedule, index, error);
    }

    /// A failed step's report and events, once its end is journaled (or left unjournaled),
    /// and the steps that depend on it skipped.
    fn finish_failed(&self, schedule: &mut Schedule<'_>, index: usize, error: String) {
        let id = schedule.reports[index].id.clone();
        let report = &mut schedule.reports[index];
        report.status = StepStatus::Failed {
            error: error.clone(),
        };
        report.finished = Some(self.start.elapsed());
        self.emit(EventKind::StepFailed {
            step: id.clone(),
            error,
        });
        for skipped in schedule.failed(index) {
            self.emit(EventKind::StepSkipped {
                step: schedule.reports[skipped].id.clone(),
                because: id.clone(),
            });
        }
    }
}

/// Runs one step to its end: calls the provider, within the time limit, retrying transient
/// errors. Returns the result and the number of calls made.
async fn run_step(
    shared: &Shared<'_>,
    step: &Step,
    provider: &dyn Provider,
    inputs: Attributes,
    resume_token: Option<String>,
) -> (Result<StepOutcome, StepError>, u32, Ending) {
    // The token to resume from: the one an earlier apply recorded, or one this apply's earlier
    // attempt recorded before failing transiently.
    let resume_token = Mutex::new(resume_token);
    let time_limit = shared.config.time_limit(step);
    let max_attempts = shared.config.retry.max_attempts.max(1);
    let outputs = |instance: &InstanceAddress| shared.lock_state().outputs(instance).cloned();
    let progress = |line: String| {
        shared.emit(EventKind::StepProgress {
            step: step.id.clone(),
            line,
        })
    };
    let record_resume_token = |token: String| {
        if let Err(error) = shared.write(JournalRecord::ResumeTokenRecorded {
            apply_id: shared.apply_id.to_owned(),
            step: step.id.clone(),
            token: token.clone(),
            at: format_time(SystemTime::now()),
        }) {
            shared.storage_failed(error.to_string());
        }
        *resume_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        shared.emit(EventKind::StepResumeTokenRecorded {
            step: step.id.clone(),
            token,
        });
    };
    let mut attempt = 1;
    loop {
        let resume = resume_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let context = ApplyContext {
            inputs: &inputs,
            outputs: &outputs,
            progress: &progress,
            resume_token: resume.as_deref(),
            record_resume_token: &record_resume_token,
        };
        let result = match tokio::time::timeout(time_limit, provider.apply(step, context)).await {
            Ok(result) => result,
            Err(_) => {
                let error = StepError::permanent(format!(
                    "no result within {}, the step's time limit (the larger of the step timeout and {} times its estimate of {}s): raise the step timeout if it needs longer",
                    humantime::format_duration(time_limit),
                    shared.config.estimate_multiplier,
                    step.estimate_seconds,
                ));
                return (Err(error), attempt, Ending::OutcomeUnknown);
            }
        };
        match result {
            Err(error) if error.transient && attempt < max_attempts => {
                let delay = shared
                    .config
                    .retry
                    .delay(&step.id, attempt, error.retry_after);
                shared.emit(EventKind::StepRetrying {
                    step: step.id.clone(),
                    attempt,
                    delay,
                    error: error.message,
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(mut error) if error.transient => {
                error.message = format!("{} (gave up after {attempt} attempts)", error.message);
                return (Err(error), attempt, Ending::Journaled);
            }
            other => return (other, attempt, Ending::Journaled),
        }
    }
}

/// Refuses a plan whose secrets are not in `secrets` as the plan saw them: a saved plan
/// carries sealed references, and the environment must still hold the same values.
fn check_secrets(plan: &Plan, secrets: &Secrets) -> Result<(), ApplyError> {
    for step in &plan.steps {
        for value in step.inputs.values() {
            for expression in ferry_core::value::unresolved(value) {
                if let Expression::Sealed { name, fingerprint } = expression {
                    secrets
                        .open(&name, &fingerprint)
                        .map_err(|error| ApplyError::Secret {
                            step: step.id.clone(),
                            error,
                        })?;
                }
            }
        }
    }
    Ok(())
}

/// Resolves a step's `${...}` against the outputs known so far and the secrets, and finishes
/// its values.
fn resolve_inputs(step: &Step, state: &StateFile, secrets: &Secrets) -> Result<Attributes, String> {
    let lookup = |expression: &Expression| match expression {
        Expression::Sealed { name, fingerprint } => secrets
            .open(name, fingerprint)
            .ok()
            .map(|secret| serde_json::Value::String(secret.expose().to_owned())),
        // An output the state keeps sealed is the secret's value again.
        _ => state
            .lookup_output(expression)
            .map(|value| secrets.unseal_raw(&value)),
    };
    let mut inputs = Attributes::new();
    for (name, value) in &step.inputs {
        let resolved = finish(&resolve(value, &lookup))
            .map_err(|expression| unresolvable(name, &expression, state))?;
        inputs.insert(name.clone(), resolved);
    }
    Ok(inputs)
}

fn unresolvable(input: &str, expression: &Expression, state: &StateFile) -> String {
    let why = match expression {
        Expression::Output {
            address,
            generation,
            output,
        } => {
            let instance = address.at(*generation);
            match state.outputs(&instance) {
                Some(outputs) => {
                    let known: Vec<&str> = outputs.keys().map(String::as_str).collect();
                    format!(
                        "{instance} has no output `{output}` (it has: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )
                }
                None => format!(
                    "{instance} has no outputs in the state: the step that makes it has not succeeded"
                ),
            }
        }
        other => format!("`{other}` should have been substituted when the spec was loaded"),
    };
    format!("cannot resolve input `{input}`: ${{{expression}}} is unknown, as {why}")
}

fn new_apply_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{millis:x}-{:x}", std::process::id())
}

/// Per-kind bookkeeping: the kind's limit, how many run, and which steps are ready.
#[derive(Debug, Default)]
struct KindQueue {
    limit: usize,
    running: usize,
    /// Plan positions, so that the smallest is the first in plan order.
    ready: BTreeSet<usize>,
}

/// The DAG's bookkeeping: who waits on whom, who is ready, who runs.
struct Schedule<'a> {
    reports: Vec<StepReport>,
    providers: Vec<&'a std::sync::Arc<dyn Provider>>,
    kinds: Vec<Kind>,
    dependents: Vec<Vec<usize>>,
    /// Predecessors not yet succeeded; a retirement counts the rest of the plan as one.
    waiting_on: Vec<usize>,
    /// The retirements, which go last ([`ferry_core::Action::goes_last`]): each waits, besides
    /// its `after`, for every step that is not a retirement.
    retirements: Vec<usize>,
    goes_last: Vec<bool>,
    /// Steps that are not retirements and have not succeeded yet.
    others_left: usize,
    is_running: Vec<bool>,
    queues: BTreeMap<Kind, KindQueue>,
    running: usize,
}

impl<'a> Schedule<'a> {
    fn new(
        plan: &Plan,
        providers: &'a Providers,
        config: &ApplyConfig,
    ) -> Result<Self, ApplyError> {
        let count = plan.steps.len();
        let position: HashMap<&StepId, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| (&step.id, index))
            .collect();
        let mut schedule = Schedule {
            reports: Vec::with_capacity(count),
            providers: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            dependents: vec![Vec::new(); count],
            waiting_on: vec![0; count],
            retirements: Vec::new(),
            goes_last: vec![false; count],
            others_left: 0,
            is_running: vec![false; count],
            queues: BTreeMap::new(),
            running: 0,
        };
        for (index, step) in plan.steps.iter().enumerate() {
            let kind = step.address.kind();
            let provider = providers.get(kind).ok_or_else(|| ApplyError::NoProvider {
                step: step.id.clone(),
                kind,
            })?;
            schedule.queues.entry(kind).or_insert_with(|| KindQueue {
                limit: config.kind_limit(kind, provider.concurrency_limit()),
                ..KindQueue::default()
            });
            for after in &step.after {
                let predecessor =
                    *position
                        .get(after)
                        .ok_or_else(|| ApplyError::UnknownPredecessor {
                            step: step.id.clone(),
                            after: after.clone(),
                        })?;
                // Requiring plan order also rules out cycles.
                if predecessor >= index {
                    return Err(ApplyError::OutOfOrder {
                        step: step.id.clone(),
                        after: after.clone(),
                    });
                }
                schedule.dependents[predecessor].push(index);
                schedule.waiting_on[index] += 1;
            }
            if step.action.goes_last() {
                schedule.retirements.push(index);
                schedule.goes_last[index] = true;
            } else {
                schedule.others_left += 1;
            }
            schedule.providers.push(provider);
            schedule.kinds.push(kind);
            schedule.reports.push(StepReport {
                id: step.id.clone(),
                status: StepStatus::NotStarted,
                attempts: 0,
                started: None,
                finished: None,
            });
        }
        if schedule.others_left > 0 {
            for &retirement in &schedule.retirements {
                schedule.waiting_on[retirement] += 1;
            }
        }
        Ok(schedule)
    }

    /// Queues every step that waits on nothing and has not run.
    fn queue_ready(&mut self) {
        for index in 0..self.reports.len() {
            if self.waiting_on[index] == 0 && self.reports[index].status == StepStatus::NotStarted {
                self.queue(index);
            }
        }
    }

    fn queue(&mut self, index: usize) {
        if let Some(queue) = self.queues.get_mut(&self.kinds[index]) {
            queue.ready.insert(index);
        }
    }

    /// The first ready step, in plan order, whose kind has a free slot, now marked running.
    fn next_ready(&mut self, parallelism: usize) -> Option<usize> {
        if self.running >= parallelism.max(1) {
            return None;
        }
        let queue = self
            .queues
            .values_mut()
            .filter(|queue| queue.running < queue.limit)
            .filter_map(|queue| queue.ready.first().copied().map(|first| (first, queue)))
            .min_by_key(|(first, _)| *first)
            .map(|(_, queue)| queue)?;
        let index = queue.ready.pop_first()?;
        queue.running += 1;
        self.running += 1;
        self.is_running[index] = true;
        Some(index)
    }

    fn stop_running(&mut self, index: usize) {
        if std::mem::replace(&mut self.is_running[index], false) {
            self.running -= 1;
            if let Some(queue) = self.queues.get_mut(&self.kinds[index]) {
                queue.running -= 1;
            }
        }
    }

    /// Puts a step taken by `next_ready` back, as never started.
    fn unstart(&mut self, index: usize) {
        self.stop_running(index);
        self.queue(index);
    }

    /// Releases the step's slot and queues the dependents that now wait on nothing.
    fn succeeded(&mut self, index: usize) {
        self.stop_running(index);
        for position in 0..self.dependents[index].len() {
            self.one_less_to_wait_for(self.dependents[index][position]);
        }
        // The last step of the rest releases every retirement: they go last.
        if !self.goes_last[index] {
            self.others_left -= 1;
            if self.others_left == 0 {
                for position in 0..self.retirements.len() {
                    self.one_less_to_wait_for(self.retirements[position]);
                }
            }
        }
    }

    /// A step that `waiting` waited for succeeded: queued once it waits on nothing.
    fn one_less_to_wait_for(&mut self, waiting: usize) {
        self.waiting_on[waiting] -= 1;
        if self.waiting_on[waiting] == 0 && self.reports[waiting].status == StepStatus::NotStarted {
            self.queue(waiting);
        }
    }

    /// Releases the step's slot and skips every step that depends on it, transitively.
    /// Returns the newly skipped steps.
    fn failed(&mut self, index: usize) -> Vec<usize> {
        self.stop_running(index);
        let because = self.reports[index].id.clone();
        let mut skipped = Vec::new();
        let mut stack = self.dependents[index].clone();
        // A step of the rest that fails holds every retirement back: they go last.
        if !self.goes_last[index] {
            stack.extend(self.retirements.iter().copied());
        }
        while let Some(dependent) = stack.pop() {
            if self.reports[dependent].status != StepStatus::NotStarted {
                continue;
            }
            self.reports[dependent].status = StepStatus::Skipped {
                because: because.clone(),
            };
            skipped.push(dependent);
            stack.extend(self.dependents[dependent].iter().copied());
        }
        skipped.sort_unstable();
        skipped
    }
}

/// The newest generation a plan builds, changes or runs (its retires, fences and deletes are of
/// older generations, and its warm standby's steps of the generation after): the one it
/// converges.
fn converged_generation(plan: &Plan) -> ferry_core::Generation {
    let standby = plan.standby.as_ref().map(|standby| standby.generation);
    plan.steps
        .iter()
        .filter(|step| !matches!(step.action, Action::Retire | Action::Fence | Action::Delete))
        .filter(|step| standby.is_none() || step.address.generation != standby)
        .filter_map(|step| step.address.generation)
        .max()
        .unwrap_or(0)
}
