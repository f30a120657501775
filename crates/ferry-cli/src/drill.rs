//! `ferry drill`: the arguments to [`ferry_ops::Deployment::drill`] and its report on stdout.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use ferry_apply::{ApplyConfig, ApplyControl};
use ferry_ops::{DrillMode, DrillReport, DrillRequest};
use ferry_plan::drill::DrillId;
use ferry_plan::render::duration;

use crate::args::DrillArgs;
use crate::output::Output;

pub fn drill_command(args: &DrillArgs, output: &Output) -> Result<ExitCode> {
    if args.source.observed.is_some() {
        bail!(
            "ferry drill builds and removes a drill, so it reads the world itself: --observed is for ferry plan"
        );
    }
    let id = args.id.as_deref().map(DrillId::new).transpose()?;
    let deployment = crate::open(&args.spec, &args.source, output)?;
    let mode = if args.clean {
        DrillMode::Clean
    } else {
        DrillMode::Run { keep: args.keep }
    };
    let control = ApplyControl::new();
    // The drill's progress, as `ferry apply` shows it, on stderr.
    let time_scale = match &args.source.world {
        Some(_) if args.source.world_time_scale > 0.0 => args.source.world_time_scale,
        _ => 1.0,
    };
    let view = crate::progress::Progress::for_stderr(false, time_scale);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let interrupts = tokio::spawn(crate::apply::watch_interrupts(
            control.clone(),
            Arc::new(crate::apply::output_plain()),
        ));
        let report = deployment
            .drill(DrillRequest {
                mode,
                id,
                lock_timeout: args.lock_timeout,
                config: ApplyConfig::default(),
                control: &control,
                on_event: &|event| view.handle(event),
                on_plan: &|plan| view.set_plan(plan),
                drill_providers: None,
                tagged_lists: None,
            })
            .await;
        interrupts.abort();
        report
    })?;
    if let (Some(path), Some(plan)) = (&args.timeline, &report.plan) {
        let bars: Vec<ferry_plan::render::Bar> = report
            .steps
            .iter()
            .filter_map(|step| {
                Some(ferry_plan::render::Bar {
                    step: step.id.clone(),
                    start_seconds: step.started?.as_secs_f64(),
                    duration_seconds: step.measured?.as_secs_f64(),
                    outcome: Some(step.outcome.clone()),
                })
            })
            .collect();
        let title = format!("ferry drill: {} (drill {})", report.deployment, report.id);
        crate::write_file(path, &ferry_plan::render::timeline_svg(plan, &bars, &title))?;
    }
    if args.json {
        let mut text = serde_json::to_string(&json(&report))?;
        text.push('\n');
        output.stdout(&text);
    } else {
        output.stdout(&render(&report));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ferry_plan::outcome::EXIT_ERROR)
    })
}

/// A measured time, to the millisecond: estimates are whole seconds, measurements are not.
fn measured(time: Duration) -> String {
    format!("{:.3}s", time.as_secs_f64())
}

/// The drill's report, as people read it.
pub fn render(report: &DrillReport) -> String {
    let mut text = String::new();
    if report.plan.is_none() {
        let _ = writeln!(
            text,
            "Clean-up of drill {} of deployment {}: production serves generation {} and is only read.",
            report.id, report.deployment, report.production_generation
        );
    } else {
        let _ = writeln!(
            text,
            "Drill {} of deployment {}: production serves generation {} and is only read.",
            report.id, report.deployment, report.production_generation
        );
    }
    if report.already_built {
        text.push_str(
            "The drill was built by an earlier ferry drill (kept, or stopped before its clean-up): nothing was built or measured now.\n",
        );
    }
    if let Some(stage) = &report.stage {
        let _ = writeln!(
            text,
            "Staged first: the drill's copy of production as it stands, with its standby ({} steps, in {}); then the failover onto that standby, measured below.",
            stage.steps,
            measured(stage.elapsed)
        );
    }
    if !report.steps.is_empty() {
        let width = report
            .steps
            .iter()
            .map(|step| step.id.to_string().len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            text,
            "\n  {:width$}  {:>9}  {:>9}  {:>9}",
            "step", "estimate", "failover", "measured"
        );
        for step in &report.steps {
            let failover = step
                .failover_estimate_seconds
                .map_or_else(|| "-".to_owned(), duration);
            let time = step.measured.map_or_else(|| "-".to_owned(), measured);
            let outcome = if step.outcome == "done" {
                String::new()
            } else {
                format!("  {}", step.outcome)
            };
            let _ = writeln!(
                text,
                "  {:width$}  {:>9}  {:>9}  {:>9}{outcome}",
                step.id.to_string(),
                duration(step.estimate_seconds),
                failover,
                time
            );
        }
        text.push('\n');
    }
    if let Some(plan) = &report.plan
        && !report.already_built
    {
        let recovery = report
            .measured_recovery
            .map_or_else(|| "not reached".to_owned(), measured);
        let estimate = plan.recovery_seconds.unwrap_or(plan.estimated_seconds);
        let failover = match &report.failover_plan {
            Ok(failover) => format!(
                "{} by production's failover plan (ferry plan --failover)",
                duration(
                    failover
                        .recovery_seconds
                        .unwrap_or(failover.estimated_seconds)
                )
            ),
            Err(why) => format!("production's failover plan could not be made: {why}"),
        };
        let _ = writeln!(
            text,
            "Time to recovery: measured {recovery}; estimated {} by the drill's plan, {failover}.",
            duration(estimate)
        );
        if let Some(why) = &report.cancelled {
            let _ = writeln!(text, "The drill was cancelled: {why}.");
        } else if !report.succeeded {
            text.push_str("The drill did not finish: the steps above say which failed and why.\n");
        }
    }
    match &report.cleanup {
        None => {
            let _ = writeln!(
                text,
                "Kept for inspection: remove it with ferry drill SPEC --clean (same --world)."
            );
        }
        Some(cleanup) => {
            let _ = write!(
                text,
                "Clean-up: {} instances deleted in {}",
                cleanup.deleted.len(),
                measured(cleanup.elapsed)
            );
            if !cleanup.restore_points.is_empty() {
                let names: Vec<&str> = cleanup
                    .restore_points
                    .iter()
                    .map(|id| id.rsplit('/').next().unwrap_or(id))
                    .collect();
                let _ = write!(
                    text,
                    ", with the restore points production's disks were copied from ({})",
                    names.join(", ")
                );
            }
            if !cleanup.deleted_by_tag.is_empty() {
                let _ = write!(
                    text,
                    ", and {} more found by the drill's tag: {}",
                    cleanup.deleted_by_tag.len(),
                    cleanup.deleted_by_tag.join(", ")
                );
            }
            let tagged_left = cleanup.tagged_leftovers.as_deref().unwrap_or_default();
            if !tagged_left.is_empty() {
                let _ = writeln!(
                    text,
                    "; {} resources still carry the drill's tag in the subscription: {}; run ferry drill SPEC --clean again",
                    tagged_left.len(),
                    tagged_left.join(", ")
                );
            } else if cleanup.leftovers.is_empty() && cleanup.tagged_leftovers.is_some() {
                text.push_str(
                    "; nothing of the drill is left (nothing in the subscription carries its tag).\n",
                );
            } else if cleanup.leftovers.is_empty() {
                text.push_str("; nothing of the drill is left.\n");
            } else {
                let left: Vec<String> = cleanup.leftovers.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    text,
                    "; {} of the drill's instances are left: {}; run ferry drill SPEC --clean again",
                    left.len(),
                    left.join(", ")
                );
            }
            for failure in &cleanup.failures {
                let _ = writeln!(text, "  {failure}");
            }
        }
    }
    for note in &report.notes {
        let _ = writeln!(text, "Note: {note}.");
    }
    if let Ok(path) = &report.measured_file {
        let _ = writeln!(
            text,
            "Measured durations added to {}: ferry plan takes its estimates from them.",
            path.display()
        );
    }
    if report.production_changes.is_empty() {
        text.push_str("Production untouched: every reading is as it was before the drill.\n");
    } else {
        let _ = writeln!(
            text,
            "Production's readings changed during the drill (by the drill or by someone else):\n  {}",
            report.production_changes.join("\n  ")
        );
    }
    text
}

/// The report as one JSON object, for automation (`--json`): the figures a demo or a monitor
/// reads, `rto_seconds` and `estimated_rto_seconds` first.
pub fn json(report: &DrillReport) -> serde_json::Value {
    let seconds = |time: Option<Duration>| time.map(|time| time.as_secs_f64());
    let estimated = report
        .plan
        .as_ref()
        .filter(|_| !report.already_built)
        .map(|plan| plan.recovery_seconds.unwrap_or(plan.estimated_seconds));
    let failover = report
        .failover_plan
        .as_ref()
        .ok()
        .map(|plan| plan.recovery_seconds.unwrap_or(plan.estimated_seconds));
    serde_json::json!({
        "format_version": "1",
        "mode": if report.plan.is_none() { "clean" } else { "drill" },
        "drill": report.id.as_str(),
        "deployment": report.deployment,
        "production_generation": report.production_generation,
        "rto_seconds": seconds(report.measured_recovery),
        "estimated_rto_seconds": estimated,
        "failover_estimated_rto_seconds": failover,
        "succeeded": report.succeeded,
        "already_built": report.already_built,
        "cancelled": report.cancelled,
        "production_untouched": report.production_changes.is_empty(),
        "production_changes": report.production_changes,
        "kept": report.cleanup.is_none(),
        "leftovers": report.cleanup.as_ref().map(|cleanup| {
            cleanup.leftovers.len()
                + cleanup.tagged_leftovers.as_ref().map_or(0, Vec::len)
        }),
        "cleanup_failures": report.cleanup.as_ref().map(|cleanup| cleanup.failures.clone()),
        "measured_file": report.measured_file.as_ref().ok(),
        "notes": report.notes,
        "staged": report.stage.as_ref().map(|stage| serde_json::json!({
            "steps": stage.steps,
            "seconds": stage.elapsed.as_secs_f64(),
        })),
        "steps": report.steps.iter().map(|step| serde_json::json!({
            "id": step.id.to_string(),
            "estimate_seconds": step.estimate_seconds,
            "failover_estimate_seconds": step.failover_estimate_seconds,
            "started_seconds": seconds(step.started),
            "measured_seconds": seconds(step.measured),
            "outcome": step.outcome,
        })).collect::<Vec<_>>(),
    })
}
