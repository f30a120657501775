//! `ferry drill`: the failover rehearsed on copies in a deployment of its own, measured, and
//! removed (issue 17).
//!
//! No second orchestrator: the production spec is rewritten into the drill's
//! ([`ferry_plan::drill::drill_spec`]), which the planner plans from the drill's own readings
//! and the engine applies under the drill's own lock, after the safety pass
//! ([`ferry_plan::drill::check_drill_plan`]) has compared every step with production's
//! readings. With a warm or hot standby the drill is staged: its copy of production as it
//! stands is built first, then its failover onto its own standby is planned (`--failover` on
//! the drill's deployment), checked ([`ferry_plan::drill::check_drill_failover`]), applied
//! and measured. The clean-up is a plan of deletes through the same engine and journal,
//! followed by a reading of the drill's world that must come back empty, and on Azure by
//! ARM's lists of the subscription filtered by the drill's tag, which also find what the
//! drill's readings cannot ([`TaggedLists`]). Production is only read: its state, journal and lock
//! are never opened for writing.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, CancelLevel, Event, StepStatus};
use ferry_core::{Action, InstanceAddress, Observation, Plan, Snapshot, StepId};
use ferry_plan::drill::{
    DrillId, DrillRefusal, ProductionIdentities, check_drill_plan, drill_layout, teardown_plan,
};
use ferry_plan::{FailoverRequest, PlanConfig, SavedPlan};

mod figures;
mod guard;
mod tagged;

pub use figures::{measured_path, read_measured};
pub(crate) use guard::guarded;
pub use tagged::TaggedLists;

use crate::{
    Applied, ApplyRequest, Approval, Deployment, OpsError, PlanOptions, PlanSource, WorldSource,
};

/// The apply of a drill that ended last: its build (a staged drill's copy of production, or
/// a cold drill whole), or a staged drill's failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Build,
    Failover,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Failover => "failover",
        }
    }
}

/// What `ferry drill` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillMode {
    /// Build the drill, measure it, and remove it unless `keep`.
    Run { keep: bool },
    /// Only remove what a drill left (after `--keep`, or a drill that was killed).
    Clean,
}

/// What a drill needs beyond the deployment.
pub struct DrillRequest<'a> {
    pub mode: DrillMode,
    /// The drill's id, on its tags and in its hooks' `FERRY_DRILL_ID`; `None`: from the clock.
    pub id: Option<DrillId>,
    /// How long to wait for the drill's own lock (another drill, or its clean-up).
    pub lock_timeout: Duration,
    /// The engine's settings, for the drill and its clean-up.
    pub config: ApplyConfig,
    pub control: &'a ApplyControl,
    /// Every event of the drill's applies, as it happens.
    pub on_event: &'a (dyn Fn(&Event) + Send + Sync),
    /// Each plan the drill applies, before its first event: the drill's (once the safety pass
    /// let it through) and its clean-up's, for a progress view's forecast.
    pub on_plan: &'a (dyn Fn(&Plan) + Send + Sync),
    /// The drill's own providers, built from the drill's spec it is given: needed when the
    /// deployment was opened on providers the caller built ([`WorldSource::Providers`]), since
    /// they were built for production's spec (an ARM deployment's name templates, an in-memory
    /// world keyed by instance address that the drill's instances would share). The live
    /// world and a simulated world file need none: the drill builds its own.
    pub drill_providers:
        Option<&'a (dyn Fn(&ferry_spec::Spec) -> ferry_core::Providers + Send + Sync)>,
    /// Where the drill lists what carries its tag across the Azure subscription, to find what
    /// it left and prove its clean-up: needed with providers the caller built; `None` with
    /// the live world builds it from the environment (`FERRY_ARM_*`, the credential chain)
    /// when the spec has Azure resources. A simulated world needs none: its file is the proof.
    pub tagged_lists: Option<TaggedLists>,
}

impl std::fmt::Debug for DrillRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrillRequest")
            .field("mode", &self.mode)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One step of the drill, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredStep {
    pub id: StepId,
    /// The drill plan's estimate.
    pub estimate_seconds: u64,
    /// The estimate of the same resource's same action in production's failover plan, when it
    /// has one (a drill copies disks where the failover moves them).
    pub failover_estimate_seconds: Option<u64>,
    /// When it started, from the drill's start, when it ran.
    pub started: Option<Duration>,
    /// From its start to its end, when it ran.
    pub measured: Option<Duration>,
    /// How it ended: done, failed (with why), skipped, not started.
    pub outcome: String,
}

/// A staged drill's build of its copy of production, before the failover it measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub steps: usize,
    pub elapsed: Duration,
}

/// The drill's removal, and its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleanup {
    /// The instances the clean-up deleted.
    pub deleted: Vec<InstanceAddress>,
    /// What the drill's world still holds after the clean-up: empty, or the command fails.
    pub leftovers: Vec<InstanceAddress>,
    /// On Azure, the ARM ids deleted because they still carried the drill's tag after the
    /// clean-up's plan (what the drill's state never recorded, a copy outside its groups).
    pub deleted_by_tag: Vec<String>,
    /// On Azure, the restore point collections the drill took to copy each production VM's
    /// disks at one moment, deleted by the drill's tag: no reading shows them, yet every
    /// drill has them, so they are not something found left over.
    pub restore_points: Vec<String>,
    /// On Azure, what the subscription's lists still show tagged with the drill after it all
    /// (groups, then resources): empty, or the command fails. `None` where there is no
    /// Azure to ask (a simulated world, a spec without Azure resources).
    pub tagged_leftovers: Option<Vec<String>>,
    /// The clean-up's failed steps, with why.
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

/// What a drill did and measured.
#[derive(Debug, Clone)]
pub struct DrillReport {
    pub id: DrillId,
    pub deployment: String,
    /// The generation production served when the drill started.
    pub production_generation: ferry_core::Generation,
    /// The drill's plan (empty for `--clean`).
    pub plan: Option<Plan>,
    /// Production's failover plan from the same readings (`ferry plan --failover`), or why
    /// there is none.
    pub failover_plan: Result<Plan, String>,
    pub steps: Vec<MeasuredStep>,
    /// When the drill's last step ended, from the drill's start: the measured time to recovery.
    pub measured_recovery: Option<Duration>,
    /// Whether every step of the drill succeeded.
    pub succeeded: bool,
    /// The drill was built earlier and kept (`--keep`): nothing was built or measured now.
    pub already_built: bool,
    /// Why the drill's build was stopped before its end: production's lock taken (a real
    /// apply, which a drill never holds up), or the caller's control.
    pub cancelled: Option<String>,
    /// `None` with `--keep`.
    pub cleanup: Option<Cleanup>,
    /// Production's readings that differ between the drill's start and its end: empty when
    /// production is untouched.
    pub production_changes: Vec<String>,
    /// What the reader should know about what the drill rehearsed.
    pub notes: Vec<String>,
    /// A staged drill's first apply (warm or hot standby): its copy of production as it
    /// stands, built before the failover that is measured.
    pub stage: Option<Stage>,
    /// Where the drill's measurements were added to the deployment's figures, which `ferry
    /// plan` uses for its estimates; or why they were not.
    pub measured_file: Result<PathBuf, String>,
}

impl DrillReport {
    /// A drill that ran and left nothing (or was kept on purpose), production untouched.
    pub fn ok(&self) -> bool {
        let cleaned = self.cleanup.as_ref().is_none_or(|cleanup| {
            cleanup.leftovers.is_empty()
                && cleanup.failures.is_empty()
                && cleanup.tagged_leftovers.as_ref().is_none_or(Vec::is_empty)
        });
        self.succeeded && cleaned && self.production_changes.is_empty()
    }
}

/// Where a drill's instances are kept in a simulated world: beside production's file, with
/// `.drill.json` in place of its extension (`world.json`: `world.drill.json`).
pub fn drill_world_path(production: &Path) -> PathBuf {
    let stem = production
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "world".to_owned());
    production.with_file_name(format!("{stem}.drill.json"))
}

/// A drill id from the clock: `20261207-121500`.
fn id_from_clock() -> DrillId {
    let now = ferry_core::time::format_time(std::time::SystemTime::now());
    let digits: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    DrillId::new(&format!("{date}-{time}"))
        .unwrap_or_else(|_| DrillId::new("drill").expect("a fixed id that is valid"))
}

impl Deployment {
    /// The drill's deployment: the drill's spec, state and world beside this one's, its
    /// providers guarded against touching what `production` holds (none for a clean-up's
    /// first look, which changes nothing).
    fn drill_deployment(
        &self,
        spec: ferry_spec::Spec,
        production: Option<&Snapshot>,
        request: &DrillRequest<'_>,
    ) -> Result<Deployment, OpsError> {
        let source = match (&self.source, request.drill_providers) {
            (
                WorldSource::Simulated {
                    path, time_scale, ..
                },
                _,
            ) => WorldSource::Simulated {
                path: drill_world_path(path),
                new: true,
                time_scale: *time_scale,
            },
            (WorldSource::Live, _) => WorldSource::Live,
            (WorldSource::Providers(_), Some(build)) => WorldSource::Providers(build(&spec)),
            (WorldSource::Providers(_), None) => {
                return Err(OpsError::Refused(
                    "this deployment was opened on providers built for production's spec, and a drill needs its own: give DrillRequest::drill_providers, which builds them from the drill's spec".to_owned(),
                ));
            }
        };
        let mut drill =
            Deployment::open(spec, ferry_providers::rule_book(), &self.spec_path, source)?;
        drill.guard =
            production.map(|readings| std::sync::Arc::new(ProductionIdentities::of(readings)));
        Ok(drill)
    }

    /// Rehearses the failover on copies (or, with [`DrillMode::Clean`], removes what a drill
    /// left), and reports what it measured. Production is only read. An error means the drill
    /// could not start or its clean-up could not be planned; a drill that ran reports its
    /// failures, leftovers and any change of production's readings in the report
    /// ([`DrillReport::ok`]).
    pub async fn drill(&self, request: DrillRequest<'_>) -> Result<DrillReport, OpsError> {
        let refused = |refusal: DrillRefusal| OpsError::Refused(refusal.to_string());
        // A drill kept earlier keeps its id: another would change every tag and hook of it.
        let kept_drill = self.kept_drill_id(&request).await?;
        let id = match (&request.id, kept_drill.clone()) {
            (Some(asked), Some(kept)) if *asked != kept && request.mode != DrillMode::Clean => {
                return Err(OpsError::Refused(format!(
                    "drill {kept} of deployment {} is still built (kept, or stopped before its clean-up): remove it with ferry drill SPEC --clean, or go on with it with --id {kept}",
                    self.spec.deployment.name
                )));
            }
            (_, Some(kept)) => kept,
            (Some(asked), None) => asked.clone(),
            (None, None) => id_from_clock(),
        };
        // Set up before anything is built: a drill whose clean-up could not ask ARM would
        // be left built.
        let lists = self.tagged_lists(&request)?;
        let before = self.observe().await?;
        let mut report = DrillReport {
            id: id.clone(),
            deployment: self.spec.deployment.name.clone(),
            production_generation: before.active_generation,
            plan: None,
            failover_plan: Err("not planned for a clean-up".to_owned()),
            steps: Vec::new(),
            measured_recovery: None,
            succeeded: true,
            already_built: false,
            cancelled: None,
            cleanup: None,
            production_changes: Vec::new(),
            measured_file: Err("nothing was measured".to_owned()),
            notes: Vec::new(),
            stage: None,
        };
        let keep = match request.mode {
            DrillMode::Clean => {
                let layout = drill_layout(&self.spec, &self.rules, &id);
                let drill = self.drill_deployment(layout, Some(&before), &request)?;
                report.cleanup = Some(
                    drill
                        .drill_cleanup(&request, &id, lists.as_ref(), &before)
                        .await?,
                );
                report.production_changes = self.changes_since(&before).await?;
                return Ok(report);
            }
            DrillMode::Run { keep } => keep,
        };
        if let Some(failover) = &before.failover_in_progress {
            return Err(OpsError::Refused(format!(
                "a failover from generation {} to {} is under way in production: finish it with ferry apply, then drill",
                failover.from_generation, failover.to_generation
            )));
        }
        let spec = ferry_plan::drill::drill_spec(&self.spec, &before, &self.rules, &id)
            .map_err(refused)?;
        if let Some(holder) = self.production_lock_holder() {
            return Err(OpsError::Refused(format!(
                "production's lock is held ({holder}): a drill starts only while nothing changes production; drill again once it is released"
            )));
        }
        report.failover_plan = crate::plan(
            &self.spec,
            &before,
            &self.rules,
            &PlanOptions {
                config: PlanConfig {
                    failover: FailoverRequest::Force,
                    ..PlanConfig::default()
                },
                force: false,
            },
        )
        .map_err(|error| error.to_string());
        let drill = self.drill_deployment(spec, Some(&before), &request)?;
        let staged = ferry_plan::drill::is_staged(&self.spec);
        if staged && kept_drill.is_some() {
            // A staged drill left built has failed over already: another failover is no
            // rehearsal of production's.
            report.already_built = true;
        } else {
            // The build: the whole drill, or a staged drill's copy of production as it stands.
            let (applied, cancelled) = self
                .drill_apply(&drill, &request, &before, FailoverRequest::Never)
                .await?;
            report.cancelled = cancelled;
            let (applied, phase) = match applied {
                Applied::Ran {
                    plan,
                    report: ran,
                    release_error,
                    ..
                } if staged
                    && ran.succeeded()
                    && release_error.is_none()
                    && report.cancelled.is_none() =>
                {
                    report.stage = Some(Stage {
                        steps: plan.steps.len(),
                        elapsed: ran.elapsed,
                    });
                    // Then the failover onto the drill's own standby: what is measured.
                    let (applied, cancelled) = self
                        .drill_apply(&drill, &request, &before, FailoverRequest::Force)
                        .await?;
                    report.cancelled = cancelled;
                    (applied, Phase::Failover)
                }
                other => (other, Phase::Build),
            };
            // What is measured: a cold drill's build, or a staged drill's failover.
            let measured_phase = !staged || phase == Phase::Failover;
            match applied {
                Applied::Ran {
                    plan,
                    report: applied,
                    release_error,
                    ..
                } => {
                    report.steps = measure(&plan, &applied, report.failover_plan.as_ref().ok());
                    report.succeeded = applied.succeeded()
                        && release_error.is_none()
                        && report.cancelled.is_none();
                    // Recovered when every step but the retirements is done, as a failover's
                    // time to recovery counts it.
                    report.measured_recovery = applied
                        .steps
                        .iter()
                        .filter(|step| {
                            plan.steps
                                .iter()
                                .find(|planned| planned.id == step.id)
                                .is_none_or(|planned| !planned.action.goes_last())
                        })
                        .filter_map(|step| step.finished)
                        .max()
                        .filter(|_| report.succeeded && measured_phase);
                    if report.succeeded && measured_phase {
                        report.measured_file = self.record_measurements(&report.steps, &plan);
                    } else {
                        report.succeeded = false;
                        report.measured_file = Err(format!(
                            "the drill's {} did not finish, so its figures are not kept",
                            phase.name()
                        ));
                    }
                    report.plan = Some(plan);
                }
                Applied::NothingToDo { plan } | Applied::Declined { plan } => {
                    report.already_built = true;
                    report.plan = Some(plan);
                }
            }
        }
        if !keep {
            report.cleanup = Some(
                drill
                    .drill_cleanup(&request, &id, lists.as_ref(), &before)
                    .await?,
            );
        }
        report.production_changes = self.changes_since(&before).await?;
        Ok(report)
    }

    /// One apply of the drill's deployment, under its lock, with the safety pass on its plan
    /// (the build's, or a staged drill's failover's, which may fence and move the drill's
    /// own), aborted once production's lock is taken (a real apply goes first) and stopped
    /// with the caller's control. Returns how it ended and why it was cancelled, if it was.
    async fn drill_apply(
        &self,
        drill: &Deployment,
        request: &DrillRequest<'_>,
        before: &Snapshot,
        failover: FailoverRequest,
    ) -> Result<(Applied, Option<String>), OpsError> {
        // The safety pass runs on the plan the engine is about to apply, after the drill's
        // lock is taken and its world read: nothing is changed when it refuses.
        let mut approve = |plan: &Plan| {
            let checked = match failover {
                FailoverRequest::Force => ferry_plan::drill::check_drill_failover(plan, before),
                _ => check_drill_plan(plan, before),
            };
            checked
                .map(|()| {
                    (request.on_plan)(plan);
                    Approval::Approved
                })
                .map_err(|refusal| refusal.to_string())
        };
        // The apply has a control of its own: the caller's (Ctrl-C) reaches it, and so does
        // production's lock being taken, which aborts it; the clean-up then runs under the
        // caller's.
        let control = ApplyControl::new();
        let cancelled: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let watch = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                match request.control.level() {
                    CancelLevel::Abort => control.abort(),
                    CancelLevel::StopStarting => control.stop_starting(),
                    CancelLevel::Running => {}
                }
                if let Some(holder) = self.production_lock_holder() {
                    control.abort();
                    let mut why = cancelled.lock().unwrap_or_else(PoisonError::into_inner);
                    why.get_or_insert_with(|| {
                        format!(
                            "production's lock was taken ({holder}): a real apply goes first, so the drill was aborted"
                        )
                    });
                }
            }
        };
        let apply = drill.apply(ApplyRequest {
            plan: PlanSource::Fresh(PlanOptions {
                config: PlanConfig {
                    failover,
                    ..PlanConfig::default()
                },
                force: false,
            }),
            lock_timeout: request.lock_timeout,
            config: request.config.clone(),
            control: &control,
            on_event: request.on_event,
            approve: &mut approve,
        });
        let applied = tokio::select! {
            applied = apply => applied?,
            () = watch => unreachable!("the watch never ends"),
        };
        let cancelled = cancelled
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .or_else(|| {
                (request.control.level() != CancelLevel::Running)
                    .then(|| "stopped by the caller (Ctrl-C)".to_owned())
            });
        Ok((applied, cancelled))
    }

    /// Who holds production's lock now, if anyone: a drill never runs beside a change of
    /// production. A lock that cannot be read counts as none (the readings at the end say
    /// whether production changed).
    fn production_lock_holder(&self) -> Option<String> {
        let lock = self.backend().ok()?.read_lock().ok()??;
        Some(format!(
            "by {} for `{}` since {}",
            lock.who(),
            lock.operation,
            lock.started_at
        ))
    }

    /// The id of the drill whose instances the drill's world holds now (one kept, or one
    /// stopped before its clean-up), from the tag they carry.
    async fn kept_drill_id(&self, request: &DrillRequest<'_>) -> Result<Option<DrillId>, OpsError> {
        let placeholder = DrillId::new("drill").expect("a fixed id that is valid");
        let drill = self.drill_deployment(
            drill_layout(&self.spec, &self.rules, &placeholder),
            None,
            request,
        )?;
        let readings = drill.observe().await?;
        let read = readings.resources.values().find_map(|observation| {
            let Observation::Present { attributes, .. } = observation else {
                return None;
            };
            let tag = attributes.get("tags")?.get(ferry_plan::drill::DRILL_TAG)?;
            DrillId::new(tag.as_str()?).ok()
        });
        if read.is_some() {
            return Ok(read);
        }
        // On Azure, a drill group the readings do not reach (one of a generation the drill's
        // state never recorded) is found by its tag and its name.
        let Some(lists) = self.tagged_lists(request)? else {
            return Ok(None);
        };
        let templates: Vec<String> = drill
            .spec
            .resources
            .values()
            .filter(|resource| resource.address.kind == ferry_core::Kind::ResourceGroup)
            .filter_map(|resource| resource.str_field("name").map(str::to_owned))
            .collect();
        let groups = lists
            .client
            .resource_groups_with_tag(&lists.subscription, ferry_plan::drill::DRILL_TAG)
            .await
            .map_err(|error| {
                OpsError::Refused(format!(
                    "the subscription {}'s list of groups tagged {} failed: {error}; give the drill's id with --id",
                    lists.subscription,
                    ferry_plan::drill::DRILL_TAG
                ))
            })?;
        Ok(groups.iter().find_map(|group| {
            let name = group.name.as_deref()?;
            if !templates
                .iter()
                .any(|template| tagged::named_by(template, name))
            {
                return None;
            }
            let tags = group.tags.as_ref()?;
            let (_, value) = tags
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(ferry_plan::drill::DRILL_TAG))?;
            DrillId::new(value).ok()
        }))
    }

    /// Production's readings that differ from `before`, each said as a saved plan's staleness
    /// says it (gauges, which move with the clock alone, left out).
    async fn changes_since(&self, before: &Snapshot) -> Result<Vec<String>, OpsError> {
        let after = self.observe().await?;
        let empty = ferry_plan::drill::teardown_plan(&self.spec, &Snapshot::new(0), &self.rules)
            .map_err(|refusal| OpsError::Refused(refusal.to_string()))?;
        let fingerprints = SavedPlan::new(&self.spec.deployment.name, empty, before);
        let mut changes: Vec<String> = fingerprints
            .stale(&after)
            .iter()
            .map(ToString::to_string)
            .collect();
        if after.active_generation != before.active_generation {
            changes.push(format!(
                "the serving generation went from {} to {}",
                before.active_generation, after.active_generation
            ));
        }
        Ok(changes)
    }

    /// Where this deployment's drill lists what carries its tag on Azure: the caller's, or
    /// with the live world one built from the environment when the spec has Azure resources.
    fn tagged_lists(&self, request: &DrillRequest<'_>) -> Result<Option<TaggedLists>, OpsError> {
        if let Some(lists) = &request.tagged_lists {
            return Ok(Some(lists.clone()));
        }
        let on_azure = self
            .spec
            .resources
            .values()
            .any(|resource| ferry_arm::deployment::arm_type(resource.address.kind).is_some());
        if !matches!(self.source, WorldSource::Live) || !on_azure {
            return Ok(None);
        }
        let setup = |error: ferry_arm::ArmError| {
            OpsError::Providers(ferry_providers::SetupError {
                provider: "azure",
                message: error.to_string(),
            })
        };
        let settings = ferry_arm::AzureSettings::from_environment(
            self.spec.deployment.subscription.clone(),
            self.spec_path.clone(),
            &|name| std::env::var(name).ok(),
        )
        .map_err(setup)?;
        let Some(subscription) = settings.subscription.clone() else {
            return Err(OpsError::Refused(format!(
                "deployment {} has Azure resources but no subscription: set subscription in the spec's [deployment], so the drill can list what carries its tag",
                self.spec.deployment.name
            )));
        };
        let client = ferry_arm::ArmClient::new(settings.arm.clone()).map_err(setup)?;
        Ok(Some(TaggedLists {
            client,
            subscription,
        }))
    }

    /// Deletes every instance this (drill) deployment's readings show, under its lock, then
    /// on Azure whatever still carries the drill's tag in the subscription; then reads its
    /// world again, and on Azure ARM's lists of what carries the tag: what is left is the
    /// proof.
    async fn drill_cleanup(
        &self,
        request: &DrillRequest<'_>,
        id: &DrillId,
        lists: Option<&TaggedLists>,
        production: &Snapshot,
    ) -> Result<Cleanup, OpsError> {
        let read = self.observe().await?;
        let mut readings = read.clone();
        // A simulated world's file holds every instance of the drill, those the readings do
        // not reach too (a hot failover's old replica instance): each is deleted. The plan's
        // fingerprints are the readings', which the apply reads again.
        if let WorldSource::Simulated { path, .. } = &self.source
            && path.exists()
        {
            let world = ferry_world::file::load(path, false, &self.rules)?;
            for (instance, attributes) in world.instances() {
                readings
                    .resources
                    .entry(instance)
                    .or_insert_with(|| Observation::present(attributes));
            }
        }
        // On Azure, what carries the drill's tag but the readings do not show (created by a
        // drill killed before its state recorded it) goes first: the plan's deletion of its
        // group would be refused while it holds data.
        let production_identities = ProductionIdentities::of(production);
        let mut deleted_by_tag = Vec::new();
        let mut restore_points = Vec::new();
        let mut sweep_failures = Vec::new();
        if let Some(lists) = lists {
            let known: std::collections::BTreeSet<String> = readings
                .resources
                .values()
                .filter_map(|observation| match observation {
                    Observation::Present { attributes, .. } => attributes.get("id"),
                    _ => None,
                })
                .filter_map(|id| id.as_str())
                .map(str::to_lowercase)
                .collect();
            let sweep = lists
                .sweep(
                    id,
                    &production_identities,
                    tagged::SweepScope::UnknownTo(&known),
                )
                .await;
            (restore_points, deleted_by_tag) = sweep
                .deleted
                .into_iter()
                .partition(|id| tagged::is_restore_point_collection(id));
            sweep_failures = sweep.failures;
        }
        let plan = teardown_plan(&self.spec, &readings, &self.rules)
            .map_err(|refusal| OpsError::Refused(refusal.to_string()))?;
        let mut cleanup = Cleanup {
            deleted: Vec::new(),
            leftovers: Vec::new(),
            deleted_by_tag,
            restore_points,
            tagged_leftovers: None,
            failures: sweep_failures,
            elapsed: Duration::ZERO,
        };
        if !plan.is_empty() {
            (request.on_plan)(&plan);
            let saved = SavedPlan::new(&self.spec.deployment.name, plan, &read);
            let applied = self
                .apply(ApplyRequest {
                    plan: PlanSource::Saved {
                        plan: Box::new(saved),
                        path: PathBuf::from("the drill's clean-up"),
                    },
                    lock_timeout: request.lock_timeout,
                    config: request.config.clone(),
                    control: request.control,
                    on_event: request.on_event,
                    approve: &mut |_| Ok(Approval::Approved),
                })
                .await?;
            if let Applied::Ran {
                plan,
                report,
                release_error,
                ..
            } = applied
            {
                cleanup.elapsed = report.elapsed;
                for step in &report.steps {
                    match &step.status {
                        StepStatus::Done | StepStatus::AlreadyDone => {
                            if let Some(planned) = plan.steps.iter().find(|s| s.id == step.id) {
                                cleanup.deleted.push(planned.address.clone());
                            }
                        }
                        StepStatus::Failed { error } => {
                            cleanup.failures.push(format!("{}: {error}", step.id));
                        }
                        other => cleanup.failures.push(format!("{}: {other:?}", step.id)),
                    }
                }
                if let Some(error) = release_error {
                    cleanup.failures.push(error);
                }
            }
        }
        if let Some(lists) = lists {
            let sweep = lists
                .sweep(id, &production_identities, tagged::SweepScope::Everything)
                .await;
            for deleted in sweep.deleted {
                if tagged::is_restore_point_collection(&deleted) {
                    cleanup.restore_points.push(deleted);
                } else {
                    cleanup.deleted_by_tag.push(deleted);
                }
            }
            // What both sweeps refused (a production resource carrying the tag) is said once.
            for failure in sweep.failures {
                if !cleanup.failures.contains(&failure) {
                    cleanup.failures.push(failure);
                }
            }
            match lists.of_drill(id).await {
                Ok(tagged) => cleanup.tagged_leftovers = Some(tagged.ids()),
                Err(failure) => cleanup.failures.push(failure),
            }
        }
        cleanup.leftovers = self.drill_leftovers().await?;
        Ok(cleanup)
    }

    /// What the drill's world holds: in a simulated world every instance of its file (not only
    /// those the spec names); elsewhere every instance its readings show present or unknown,
    /// but a check.
    async fn drill_leftovers(&self) -> Result<Vec<InstanceAddress>, OpsError> {
        if let WorldSource::Simulated { path, .. } = &self.source {
            if !path.exists() {
                return Ok(Vec::new());
            }
            let world = ferry_world::file::load(path, false, &self.rules)?;
            return Ok(world.instances().into_keys().collect());
        }
        let readings = self.observe().await?;
        Ok(readings
            .resources
            .into_iter()
            // A check holds nothing: it reads present whenever its probe can run, whoever
            // answers it (its delete has nothing to do), so it is never left.
            .filter(|(instance, _)| instance.kind() != ferry_core::Kind::Check)
            .filter(|(_, observation)| !matches!(observation, Observation::Absent))
            .map(|(instance, _)| instance)
            .collect())
    }
}

/// Each step of the drill's plan with its estimate, the failover's estimate for the same
/// resource and action, and what the engine measured.
fn measure(plan: &Plan, applied: &ApplyReport, failover: Option<&Plan>) -> Vec<MeasuredStep> {
    plan.steps
        .iter()
        .map(|step| {
            let failover_estimate_seconds = failover.and_then(|failover| {
                failover
                    .steps
                    .iter()
                    .find(|other| {
                        other.address.address == step.address.address
                            && (other.action == step.action
                                || step.action == Action::Create
                                    && counterpart(step.address.kind()) == Some(other.action))
                    })
                    .map(|other| other.estimate_seconds)
            });
            let ran = applied.step(&step.id);
            let measured = ran.and_then(|ran| Some(ran.finished?.saturating_sub(ran.started?)));
            let outcome = match ran.map(|ran| &ran.status) {
                Some(StepStatus::Done) => "done".to_owned(),
                Some(StepStatus::AlreadyDone) => "already done".to_owned(),
                Some(StepStatus::Failed { error }) => format!("failed: {error}"),
                Some(StepStatus::Skipped { because }) => format!("skipped ({because} failed)"),
                Some(StepStatus::Interrupted) => "interrupted".to_owned(),
                Some(StepStatus::NotSaved { error }) => format!("done, not saved: {error}"),
                Some(StepStatus::NotStarted) | None => "not started".to_owned(),
            };
            MeasuredStep {
                id: step.id.clone(),
                estimate_seconds: step.estimate_seconds,
                failover_estimate_seconds,
                started: ran.and_then(|ran| ran.started),
                measured,
                outcome,
            }
        })
        .collect()
}

/// What the failover does to a stateful kind where the drill creates it: a disk moved where the
/// drill copies it, a pool imported, a record repointed.
pub(super) fn counterpart(kind: ferry_core::Kind) -> Option<Action> {
    match kind {
        ferry_core::Kind::Disk => Some(Action::Move),
        ferry_core::Kind::ZfsPool => Some(Action::Import),
        ferry_core::Kind::DnsRecord => Some(Action::Update),
        _ => None,
    }
}
