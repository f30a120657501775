//! `ferry apply` and `ferry force-unlock`: the lock, the confirmation, Ctrl-C, and the report.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use ferry_apply::{ApplyConfig, ApplyControl, CancelLevel, HeldLock, StepStatus, Store, progress};
use ferry_core::{Plan, Providers};
use ferry_plan::{Verdict, render};
use ferry_state::lock::LockRequest;
use ferry_state::{IfHolderRuns, StateBackend, acquire_waiting};

use crate::args::{ApplyArgs, SpecArgs, UnlockArgs};
use crate::observe::{self, load_world, persisting_world_providers, save_world};
use crate::output::Output;
use crate::{load_spec, make_plan, read_saved_plan, write_file};

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
    let rules = ferry_providers::rule_book();
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
    let spec = load_spec(&spec_args, &rules, output)?;
    if let Some(saved) = &saved
        && saved.deployment != spec.deployment.name
    {
        bail!(
            "{} is a plan for deployment {}, but {} is deployment {}",
            args.target.display(),
            saved.deployment,
            spec_args.spec.display(),
            spec.deployment.name
        );
    }
    let backend = observe::state_backend(&spec)?;
    // Polling once a second is plenty for a lock held for minutes, and cheap for a blob.
    let held = acquire_waiting(
        &*backend,
        &LockRequest::for_this_process("apply", backend.lease()),
        args.lock_timeout,
        Duration::from_secs(1),
    )
    .map_err(|error| error.for_spec(&spec_args.spec))?;
    let result = locked_apply(
        args,
        output,
        &spec_args,
        &spec,
        &rules,
        saved.as_ref(),
        (&backend, &held),
    );
    // A lock lost before the end means another apply may have run beside this one: never a
    // success, whatever the steps did.
    match (backend.release_lock(&held.id), result) {
        (Ok(()), result) => result,
        (Err(error), Ok(code)) if code == ExitCode::SUCCESS => {
            bail!("{error}")
        }
        (Err(error), result) => {
            output.error(&format!("{error}"));
            result
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn locked_apply(
    args: &ApplyArgs,
    output: &Output,
    spec_args: &SpecArgs,
    spec: &ferry_spec::Spec,
    rules: &ferry_core::RuleBook,
    saved: Option<&ferry_plan::SavedPlan>,
    (backend, held): (&Arc<dyn StateBackend>, &ferry_state::lock::LockInfo),
) -> Result<ExitCode> {
    let mut store = Store::open_backend(backend.clone())?;
    // The engine renews the lease while steps run (a blob's lease is also renewed in the
    // background from the moment it was taken), and stops starting steps if it is lost.
    store.lock = Some(HeldLock {
        path: backend.lock_place(),
        id: held.id.clone(),
        lease: backend.lease(),
    });
    let world = args
        .source
        .world
        .as_ref()
        .map(|path| load_world(path, args.source.new_world))
        .transpose()?;
    let providers: Providers = match (&world, &args.source.world) {
        (Some(world), Some(path)) => {
            persisting_world_providers(world, args.source.world_time_scale, path)
        }
        _ => observe::live_providers(spec)?,
    };
    let snapshot = observe::read_with(spec, rules, &store.state, &providers)?;
    // The world wins over the state: outputs a killed apply never recorded (a create Azure
    // had accepted) are taken from the readings, and saved with the apply's first step.
    ferry_observe::learn_outputs(&mut store.state, &snapshot, rules);

    let plan: Plan = match saved {
        Some(saved) => {
            let stale = saved.stale(&snapshot);
            if !stale.is_empty() {
                let lines: Vec<String> = stale.iter().map(|change| format!("  {change}")).collect();
                bail!(
                    "the world changed since this plan was made, so it is not applied:\n{}\nmake a new plan with ferry plan",
                    lines.join("\n")
                );
            }
            saved.plan.clone()
        }
        None => {
            let plan = make_plan(spec, &snapshot, rules, &args.planning)?;
            output.stdout(&render::text(&plan, &output.text_options()));
            // Nothing to apply is a success only when every reading is known and healthy: an
            // unknown reading, a failover left to the operator or an unhealthy resource no
            // step fixes exits as `ferry plan --detailed-exitcode` does (4, 3, 5).
            if plan.is_empty() && plan.failover.is_none() {
                return Ok(ExitCode::from(Verdict::of(&plan).exit_code()));
            }
            if !args.auto_approve && !confirm(output, &plan)? {
                output.stderr("Apply cancelled: nothing was changed.\n");
                return Ok(ExitCode::from(1));
            }
            plan
        }
    };
    // An empty failover plan still runs: the engine records the failover as finished (an
    // apply killed after its last step, before that, leaves nothing else to do).
    if plan.is_empty() && plan.failover.is_none() {
        let verdict = Verdict::of(&plan);
        output.stderr(&format!("{}\n", verdict.headline()));
        return Ok(ExitCode::from(verdict.exit_code()));
    }

    let config = ApplyConfig {
        parallelism: usize::from(args.parallelism),
        // The spec was loaded again from this process's environment: a saved plan's sealed
        // secrets are opened with today's values, and refused when they changed.
        secrets: spec.secrets.clone(),
        ..ApplyConfig::default()
    };
    let control = ApplyControl::new();
    let on_event = progress::for_stderr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let interrupts = tokio::spawn(watch_interrupts(control.clone(), Arc::new(output_plain())));
        let report =
            ferry_apply::apply(&plan, &providers, &config, &mut store, &control, &*on_event).await;
        interrupts.abort();
        report
    })?;

    if let Some(path) = &args.timeline {
        write_file(
            path,
            &render::timeline_svg(&plan, &actual_bars(&report), "ferry apply: what happened"),
        )?;
    }
    if let (Some(world), Some(path)) = (&world, &args.source.world) {
        save_world(path, world)?;
    }
    // A saved plan is applied once: the steps that ran changed the world it was made from, so
    // resuming means planning again from the spec.
    let target = spec_args.spec.display().to_string();
    let counts = report.counts();
    if report.succeeded() {
        output.stderr(&format!(
            "Apply complete: {} in {}. Generation {} serves.\n",
            counts.describe(),
            render::duration(report.elapsed.as_secs()),
            store.state.active_generation
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
        .any(|line| line.contains(ferry_arm::error::FIX_FIRST))
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

fn output_plain() -> Output {
    Output::new(crate::args::ColorChoice::Never)
}

/// The first Ctrl-C stops starting steps and lets running ones finish; the second aborts them.
async fn watch_interrupts(control: ApplyControl, output: Arc<Output>) {
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

fn confirm(output: &Output, plan: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "ferry apply needs a confirmation and stdin is not a terminal: review the plan, then pass --auto-approve"
        );
    }
    output.stderr(&format!(
        "\nApply these {} steps? Only 'yes' is accepted: ",
        plan.steps.len()
    ));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

pub fn force_unlock(args: &UnlockArgs, output: &Output) -> Result<ExitCode> {
    let rules = ferry_providers::rule_book();
    let spec = load_spec(
        &SpecArgs {
            spec: args.spec.clone(),
            vars: Vec::new(),
        },
        &rules,
        output,
    )?;
    let if_running = if args.force_alive {
        IfHolderRuns::BreakAnyway
    } else {
        IfHolderRuns::Refuse
    };
    let broken = observe::state_backend(&spec)?
        .force_unlock(&args.id, if_running)
        .map_err(|error| error.for_spec(&args.spec))?;
    output.stderr(&format!(
        "Unlocked: the lock of {} (`{}` since {}) is broken.\n",
        broken.who(),
        broken.operation,
        broken.started_at
    ));
    Ok(ExitCode::SUCCESS)
}
