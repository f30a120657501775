//! `ferry watch`: rounds of health readings, damped changes, alerts, and the failover plan
//! written (and, when the operator asked for it, applied) when the active generation fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use anyhow::{Result, bail};
use ferry_plan::PlanConfig;
use ferry_spec::FailoverMode;
use ferry_watch::{Destination, ReadinessTracker, Tracker};

use crate::args::{ApplyArgs, PlanningArgs, WatchArgs};
use crate::observe::{self, load_world, world_providers};
use crate::output::Output;
use crate::{load_spec, write_file};

pub fn watch(args: &WatchArgs, output: &Output) -> Result<ExitCode> {
    let rules = ferry_providers::rule_book();
    let spec = load_spec(&args.spec, &rules, output)?;
    if args.auto_apply && spec.failover.mode != FailoverMode::Automatic {
        bail!(
            "--auto-apply needs the spec's failover mode to be automatic: set mode = \"automatic\" in [failover], or review the plan and apply it yourself"
        );
    }
    let mut destinations: Vec<Destination> = args
        .webhook
        .iter()
        .cloned()
        .map(Destination::Webhook)
        .collect();
    if let Some(program) = &args.alert_command {
        destinations.push(Destination::Command(vec![program.clone()]));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let mut tracker = Tracker::new(&spec.deployment.name, args.hold);
    let mut readiness_tracker = ReadinessTracker::new(&spec.deployment.name, args.hold);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    output.stderr(&format!(
        "Watching {} every {}, alerting once a change holds for {}. Ctrl-C stops.\n",
        spec.deployment.name,
        humantime::format_duration(args.interval),
        humantime::format_duration(args.hold)
    ));
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) && args.rounds.is_none_or(|rounds| round < rounds) {
        round += 1;
        let snapshot = match read_once(&spec, &rules, args) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                output.error(&format!("round {round}: cannot read the world: {error:#}"));
                runtime.block_on(pause(args.interval, &stop));
                continue;
            }
        };
        let mut alerts = tracker.update(&snapshot, SystemTime::now());
        if !alerts.is_empty()
            && let Some(path) = &args.plan_on_failure
        {
            let plan = ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default());
            match plan {
                Ok(plan) if plan.failover.is_some() => {
                    let saved = crate::saved_plan(&spec, plan, &snapshot, &args.spec)?;
                    write_file(path, &saved.to_json())?;
                    let action = if args.auto_apply {
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
                    };
                    for alert in &mut alerts {
                        alert.plan_written = Some(path.display().to_string());
                        alert.action = Some(action.clone());
                    }
                }
                Ok(_) => {}
                Err(errors) => output.error(&format!("no failover plan: {errors}")),
            }
        }
        for alert in &alerts {
            output.stdout(&format!("{alert}\n"));
            for destination in &destinations {
                if let Err(error) =
                    runtime.block_on(ferry_watch::deliver(alert, destination, &client))
                {
                    output.error(&error.to_string());
                }
            }
        }
        // Failover readiness, each round: the failover these readings would give, planned
        // beside them; its loss (and its return) is alerted like a health change.
        let readiness = ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default())
            .ok()
            .filter(|plan| plan.failover.is_none())
            .and_then(|_| {
                ferry_plan::readiness_with(
                    &spec,
                    &snapshot,
                    &rules,
                    &PlanConfig::default(),
                    &|failover| ferry_providers::check_plan(failover, &snapshot, false),
                )
            });
        if let Some(alert) = readiness_tracker.update(readiness.as_ref(), SystemTime::now()) {
            output.stdout(&format!("{alert}\n"));
            for destination in &destinations {
                if let Err(error) =
                    runtime.block_on(ferry_watch::deliver_readiness(&alert, destination, &client))
                {
                    output.error(&error.to_string());
                }
            }
        }
        if args.auto_apply
            && let Some(path) = &args.plan_on_failure
            && alerts.iter().any(|alert| alert.plan_written.is_some())
        {
            let apply = ApplyArgs {
                target: path.clone(),
                vars: Vec::new(),
                source: args.source.clone(),
                planning: PlanningArgs::default(),
                auto_approve: true,
                // Someone already applying is handling it: do not queue behind them.
                lock_timeout: std::time::Duration::ZERO,
                parallelism: 10,
                timeline: None,
            };
            let code = crate::apply::apply_command(&apply, output)?;
            output.stderr(&format!(
                "The automatic failover apply ended with {code:?}.\n"
            ));
        }
        if args.rounds.is_none_or(|rounds| round < rounds) {
            runtime.block_on(pause(args.interval, &stop));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One round of readings: from the simulated world (read again each round, since another
/// process changes it) or from the providers.
fn read_once(
    spec: &ferry_spec::Spec,
    rules: &ferry_core::RuleBook,
    args: &WatchArgs,
) -> Result<ferry_core::Snapshot> {
    let state = observe::read_state(spec)?;
    let providers = match &args.source.world {
        Some(path) => world_providers(&load_world(path, args.source.new_world)?, 0.0),
        None => observe::live_providers(spec)?,
    };
    observe::read_with(spec, rules, &state, &providers)
}

/// Sleeps for `interval`, waking early when Ctrl-C was pressed.
async fn pause(interval: std::time::Duration, stop: &AtomicBool) {
    let step = std::time::Duration::from_millis(50);
    let mut slept = std::time::Duration::ZERO;
    while slept < interval && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(step.min(interval - slept)).await;
        slept += step;
    }
}
