//! `ferry watch`: the loop around `ferry_ops::watch::Watcher`'s rounds, its output, Ctrl-C,
//! and the failover plan applied when the operator asked for it.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use ferry_ops::watch::{WatchConfig, Watcher};
use ferry_spec::FailoverMode;
use ferry_watch::{Destination, RetryPolicy, WebhookFormat};

use crate::args::{self, ApplyArgs, PlanningArgs, WatchArgs, WebhookFormatArg};
use crate::output::Output;

pub fn watch(args: &WatchArgs, output: &Output) -> Result<ExitCode> {
    let deployment = crate::open(&args.spec, &args.source, output)?;
    let spec = deployment.spec();
    if args.auto_apply && spec.failover.mode != FailoverMode::Automatic {
        bail!(
            "--auto-apply needs the spec's failover mode to be automatic: set mode = \"automatic\" in [failover], or review the plan and apply it yourself"
        );
    }
    let format = match args.webhook_format {
        WebhookFormatArg::Ferry => WebhookFormat::Ferry,
        WebhookFormatArg::Alertmanager => WebhookFormat::Alertmanager,
    };
    let mut destinations: Vec<Destination> = args
        .webhook
        .iter()
        .map(|url| Destination::Webhook {
            url: url.clone(),
            format,
        })
        .collect();
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        attempts: args.webhook_attempts,
        first_backoff: args.webhook_backoff,
        max_backoff: defaults.max_backoff.max(args.webhook_backoff),
        attempt_timeout: defaults.attempt_timeout.min(args.webhook_give_up_after),
        bound: args.webhook_give_up_after,
    };
    let (event_sender, mut delivery_events) = tokio::sync::mpsc::unbounded_channel();
    if let Some(program) = &args.alert_command {
        destinations.push(Destination::Command(vec![program.clone()]));
    }
    let mut watcher = Watcher::new(
        &deployment,
        WatchConfig {
            hold: args.hold,
            destinations,
            plan_on_failure: args.plan_on_failure.clone(),
            variables: args::parse_vars(&args.spec.vars)?,
            auto_apply: args.auto_apply,
            retry,
            delivery_events: Some(event_sender),
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
    let mut round_number = 0u64;
    while !stop.load(Ordering::SeqCst) && args.rounds.is_none_or(|rounds| round_number < rounds) {
        round_number += 1;
        // Failed delivery attempts are printed as they happen, while the round waits to retry.
        let round = runtime.block_on(async {
            let round = watcher.round();
            tokio::pin!(round);
            loop {
                tokio::select! {
                    round = &mut round => break round,
                    Some(event) = delivery_events.recv() => output.stderr(&format!("warning: {event}\n")),
                }
            }
        });
        while let Ok(event) = delivery_events.try_recv() {
            output.stderr(&format!("warning: {event}\n"));
        }
        let round = match round {
            Ok(round) => round,
            Err(error) => {
                output.error(&format!(
                    "round {round_number}: cannot read the world: {}",
                    crate::error_text(&error.into())
                ));
                runtime.block_on(pause(args.interval, &stop));
                continue;
            }
        };
        for alert in &round.alerts {
            output.stdout(&format!("{alert}\n"));
        }
        if let Some(alert) = &round.readiness {
            output.stdout(&format!("{alert}\n"));
        }
        for failure in &round.delivery_failures {
            output.error(&failure.to_string());
        }
        for problem in &round.problems {
            output.error(problem);
        }
        if args.auto_apply
            && let Some(path) = &round.plan_written
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
                // The spec's [limits] still apply: the operations read them.
                kind_parallelism: Vec::new(),
                timeline: None,
                json: false,
                verbose: false,
                estimates_scale: None,
            };
            let code = crate::apply::apply_command(&apply, output)?;
            output.stderr(&format!(
                "The automatic failover apply ended with {code:?}.\n"
            ));
        }
        if args.rounds.is_none_or(|rounds| round_number < rounds) {
            runtime.block_on(pause(args.interval, &stop));
        }
    }
    Ok(ExitCode::SUCCESS)
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
