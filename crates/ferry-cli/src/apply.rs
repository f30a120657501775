//! `ferry apply` and `ferry force-unlock`: the lock, the confirmation, Ctrl-C, and the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, CancelLevel, StepStatus};
use ferry_core::Plan;
use ferry_ops::{Applied, ApplyRequest, Approval, Deployment, PlanSource};
use ferry_plan::{Verdict, render};
use ferry_state::IfHolderRuns;

use crate::args::{ApplyArgs, SpecArgs, UnlockArgs};
use crate::output::Output;
use crate::{plan_options, progress, read_saved_plan, write_file};

/// A saved plan is JSON; a spec is a folder or a `.toml` file.
fn is_saved_plan(path: &Path) -> bool {
    path.is_file() && path.extension().is_none_or(|extension| extension != "toml")
}

/// The spec a saved plan was made from. Plans record it absolute; an older plan's relative
/// path is tried from here, then from the plan file's folder.
fn saved_spec_path(plan: &Path, recorded: &str) -> PathBuf {
    let recorded = PathBuf::from(recorded);
    if recorded.is_absolute() || recorded.exists() {
        return recorded;
    }
    match plan.parent() {
        Some(folder) if folder.join(&recorded).exists() => folder.join(&recorded),
        _ => recorded,
    }
}

pub fn apply_command(args: &ApplyArgs, output: &Output) -> Result<ExitCode> {
    if args.source.observed.is_some() {
        bail!("ferry apply reads the world itself: --observed is for ferry plan");
    }
    if args.json && !args.auto_approve && !is_saved_plan(&args.target) {
        bail!(
            "ferry apply --json cannot ask for a confirmation: pass --auto-approve, or apply a plan saved by ferry plan --out"
        );
    }
    let saved = if is_saved_plan(&args.target) {
        Some(read_saved_plan(&args.target)?)
    } else {
        None
    };
    let spec_args = match &saved {
        Some(saved) => SpecArgs {
            spec: saved_spec_path(&args.target, &saved.spec_path),
            vars: saved
                .variables
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        },
        None => SpecArgs {
            spec: args.target.clone(),
            vars: args.vars.clone(),
        },
    };
    let deployment = crate::open(&spec_args, &args.source, output)?;
    let fresh = saved.is_none();
    let plan = match saved {
        Some(plan) => PlanSource::Saved {
            plan: Box::new(plan),
            path: args.target.clone(),
        },
        None => PlanSource::Fresh(plan_options(&args.planning)),
    };
    let control = ApplyControl::new();
    let time_scale = match (args.estimates_scale, &args.source.world) {
        (Some(scale), _) if scale.is_finite() && scale > 0.0 => scale,
        (Some(scale), _) => bail!(
            "--estimates-scale {scale} is not a share of the estimates: give a number above 0, such as 0.01"
        ),
        (None, Some(_)) if args.source.world_time_scale > 0.0 => args.source.world_time_scale,
        _ => 1.0,
    };
    let view = progress::Progress::for_stderr(args.verbose, time_scale);
    let json = args.json;
    let on_event = |event: &ferry_apply::Event| {
        if json {
            output.stdout(&format!("{}\n", progress::json_line(event)));
        } else {
            view.handle(event);
        }
    };
    if let PlanSource::Saved { plan, .. } = &plan {
        view.set_plan(&plan.plan);
        // No confirmation comes before a saved plan's steps: the header says here what is
        // about to change, and which plan.
        let mut header = crate::header(&deployment, Some(plan.active_generation));
        header.push_str(&format!(
            "Applying the plan saved in {} by {} at {}.\n",
            args.target.display(),
            plan.author,
            plan.created_at
        ));
        output.stderr(&header);
    }
    let auto_approve = args.auto_approve;
    let mut approve = |plan: &Plan| {
        view.set_plan(plan);
        output.stderr(&crate::header(
            &deployment,
            plan.failover
                .as_ref()
                .map(|failover| failover.from_generation),
        ));
        if json {
            output.stdout(&format!("{}\n", progress::plan_line(plan)));
        } else {
            output.stdout(&render::text(plan, &output.text_options()));
        }
        if auto_approve {
            return Ok(Approval::Approved);
        }
        confirm(output, plan).map_err(|error| error.to_string())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let applied = runtime.block_on(async {
        let interrupts = tokio::spawn(watch_interrupts(control.clone(), Arc::new(output_plain())));
        let applied = deployment
            .apply(ApplyRequest {
                plan,
                lock_timeout: args.lock_timeout,
                config: ApplyConfig {
                    parallelism: usize::from(args.parallelism),
                    kind_parallelism: args.kind_parallelism.iter().copied().collect(),
                    ..ApplyConfig::default()
                },
                control: &control,
                on_event: &on_event,
                approve: &mut approve,
            })
            .await;
        interrupts.abort();
        applied
    })?;
    let (plan, report, active_generation, release_error) = match applied {
        Applied::NothingToDo { plan } => {
            // Nothing to apply is a success only when every reading is known and healthy: an
            // unknown reading, a failover left to the operator or an unhealthy resource no
            // step fixes exits as `ferry plan --detailed-exitcode` does (4, 3, 5).
            let verdict = Verdict::of(&plan);
            if fresh {
                output.stdout(&render::text(&plan, &output.text_options()));
            } else {
                output.stderr(&format!("{}\n", verdict.headline()));
            }
            return Ok(ExitCode::from(verdict.exit_code()));
        }
        Applied::Declined { .. } => {
            output.stderr("Apply cancelled: nothing was changed.\n");
            return Ok(ExitCode::from(1));
        }
        Applied::Ran {
            plan,
            report,
            active_generation,
            release_error,
        } => (plan, report, active_generation, release_error),
    };
    let code = report_apply(
        &deployment,
        args,
        output,
        &spec_args,
        &plan,
        &report,
        active_generation,
    )?;
    // A lock lost before the end means another apply may have run beside this one: never a
    // success, whatever the steps did.
    match release_error {
        None => Ok(code),
        Some(error) if code == ExitCode::SUCCESS => bail!("{error}"),
        Some(error) => {
            output.error(&error);
            Ok(code)
        }
    }
}

/// What the operator reads once the engine is done: the timeline, the counts, each failure
/// with what fixes it, and how to resume.
fn report_apply(
    deployment: &Deployment,
    args: &ApplyArgs,
    output: &Output,
    spec_args: &SpecArgs,
    plan: &Plan,
    report: &ApplyReport,
    active_generation: ferry_core::Generation,
) -> Result<ExitCode> {
    if let Some(path) = &args.timeline {
        write_file(path, &applied_svg(deployment, plan, report))?;
    }
    // A saved plan is applied once: the steps that ran changed the world it was made from, so
    // resuming means planning again from the spec.
    let target = spec_args.spec.display().to_string();
    let counts = report.counts();
    if report.succeeded() {
        output.stderr(&format!(
            "Apply complete: {} in {}. Generation {active_generation} serves.\n",
            counts.describe(),
            render::duration(report.elapsed.as_secs()),
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed: Vec<String> = report
        .steps
        .iter()
        .filter_map(|step| match &step.status {
            StepStatus::Failed { error } => Some(format!("  {}: {error}", step.id)),
            _ => None,
        })
        .collect();
    if let Some(error) = &report.storage_error {
        failed.push(format!("  the state: {error}"));
    }
    // Their effect happened but is not recorded: the operator must know which, since the
    // progress lines above showed them done.
    let not_saved: Vec<String> = report
        .ids(|status| matches!(status, StepStatus::NotSaved { .. }))
        .into_iter()
        .map(ToString::to_string)
        .collect();
    if !not_saved.is_empty() {
        failed.push(format!(
            "  done but not saved, so not recorded as done (the next apply checks them again): {}",
            not_saved.join(", ")
        ));
    }
    let why = if report.cancel >= CancelLevel::StopStarting {
        "Apply interrupted"
    } else {
        "Apply failed"
    };
    // Each failure says what fixes it (a quota is raised by a person, a throttled call
    // passes on its own); resuming is the last thing to do, not the first.
    let resume = if failed
        .iter()
        .any(|line| ferry_ops::needs_fixing_first(line))
    {
        format!(
            "Once each failure above is dealt with as it says, run `ferry apply {target}`: finished steps are not repeated."
        )
    } else {
        format!("Run `ferry apply {target}` again to resume: finished steps are not repeated.")
    };
    output.stderr(&format!(
        "{why}: {}.\n{}{}{resume}\n",
        counts.describe(),
        failed.join("\n"),
        if failed.is_empty() { "" } else { "\n" },
    ));
    Ok(ExitCode::from(1))
}

/// What happened, drawn: every apply of this piece of work from the journal (an interrupted
/// failover's earlier applies too, each resume marked); from this apply's report alone when
/// the journal cannot be read.
fn applied_svg(deployment: &Deployment, plan: &Plan, report: &ApplyReport) -> String {
    let title = "ferry apply: what happened";
    let journal = deployment
        .backend()
        .ok()
        .and_then(|backend| backend.read_journal().ok());
    match journal.map(|records| ferry_ops::applied_timeline(&records, &report.apply_id)) {
        Some(timeline) if !timeline.bars.is_empty() => {
            render::timeline_svg_marked(plan, &timeline.bars, &timeline.markers, title)
        }
        _ => render::timeline_svg(plan, &actual_bars(report), title),
    }
}

/// The report's real start and end times, as timeline bars.
fn actual_bars(report: &ferry_apply::ApplyReport) -> Vec<render::Bar> {
    report
        .steps
        .iter()
        .map(|step| {
            let start = step.started.unwrap_or(report.elapsed).as_secs_f64();
            let end = step
                .finished
                .map_or(start, |finished| finished.as_secs_f64());
            let outcome = match &step.status {
                StepStatus::Done => "done",
                StepStatus::AlreadyDone => "done by an earlier apply",
                StepStatus::Failed { .. } => "failed",
                StepStatus::Skipped { .. } => "skipped",
                StepStatus::NotStarted => "not started",
                StepStatus::Interrupted => "interrupted",
                StepStatus::NotSaved { .. } => "done but not saved",
            };
            render::Bar {
                step: step.id.clone(),
                start_seconds: start,
                duration_seconds: end - start,
                outcome: Some(outcome.to_owned()),
            }
        })
        .collect()
}

pub(crate) fn output_plain() -> Output {
    Output::new(crate::args::ColorChoice::Never)
}

/// The first Ctrl-C stops starting steps and lets running ones finish; the second aborts them.
pub(crate) async fn watch_interrupts(control: ApplyControl, output: Arc<Output>) {
    loop {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        match control.escalate() {
            CancelLevel::StopStarting => output.stderr(
                "\nStopping: no new step starts; running steps finish. Press Ctrl-C again to abort them.\n",
            ),
            _ => output.stderr("\nAborting the running steps.\n"),
        }
    }
}

fn confirm(output: &Output, plan: &Plan) -> Result<Approval> {
    let question = format!("Apply these {} steps?", plan.steps.len());
    Ok(if output.confirm("ferry apply", "the plan", &question)? {
        Approval::Approved
    } else {
        Approval::Declined
    })
}

pub fn force_unlock(args: &UnlockArgs, output: &Output) -> Result<ExitCode> {
    let deployment = crate::open(
        &SpecArgs {
            spec: args.spec.clone(),
            vars: Vec::new(),
        },
        &crate::args::SourceArgs::default(),
        output,
    )?;
    let if_running = if args.force_alive {
        IfHolderRuns::BreakAnyway
    } else {
        IfHolderRuns::Refuse
    };
    let broken = deployment.force_unlock(&args.id, if_running)?;
    output.stderr(&format!(
        "Unlocked: the lock of {} (`{}` since {}) is broken.\n",
        broken.who(),
        broken.operation,
        broken.started_at
    ));
    Ok(ExitCode::SUCCESS)
}
