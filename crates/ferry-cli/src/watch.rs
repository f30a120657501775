//! `ferry watch`: the loop around `ferry_ops::watch::Watcher`'s rounds for one spec or a
//! fleet of them, its output, Ctrl-C, and the failover plan applied when the operator asked
//! for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use ferry_ops::Deployment;
use ferry_ops::watch::{LeadershipChange, WatchConfig, Watcher};
use ferry_spec::{FailoverMode, StateConfig};
use ferry_watch::{Destination, RetryPolicy, WebhookFormat};

use crate::args::{
    self, ApplyArgs, PlanningArgs, SourceArgs, SpecArgs, WatchArgs, WebhookFormatArg,
};
use crate::output::Output;

/// What `--world` and `--plan-on-failure` hold, with several specs, for each one's name.
const DEPLOYMENT_PLACEHOLDER: &str = "{deployment}";

/// One spec being watched: its deployment, its own world and plan file.
struct Watched {
    deployment: Deployment,
    source: SourceArgs,
    plan_on_failure: Option<PathBuf>,
}

pub fn watch(args: &WatchArgs, output: &Output) -> Result<ExitCode> {
    let spec_paths = spec_paths(&args.specs)?;
    let several = spec_paths.len() > 1;
    if several {
        refuse_shared_path("--world", args.source.world.as_deref())?;
        refuse_shared_path("--plan-on-failure", args.plan_on_failure.as_deref())?;
    }
    let mut watched: Vec<Watched> = Vec::new();
    for path in &spec_paths {
        let opened = open_watched(path, args, output).and_then(|one| {
            let name = &one.deployment.spec().deployment.name;
            if watched
                .iter()
                .any(|other| &other.deployment.spec().deployment.name == name)
            {
                bail!(
                    "{} names the deployment {name}, as another spec watched does: their alerts and plans would mix; give each its own [deployment] name",
                    path.display()
                );
            }
            Ok(one)
        });
        match opened {
            Ok(one) => watched.push(one),
            // One spec: its problem is the command's.
            Err(error) if !several => return Err(error),
            Err(error) => {
                let reason = if error.downcast_ref::<crate::Shown>().is_some() {
                    "its spec has the problems above".to_owned()
                } else {
                    crate::error_text(&error)
                };
                output.error(&format!(
                    "not watching {}: {reason}; the other specs are watched",
                    path.display()
                ));
            }
        }
    }
    if watched.is_empty() {
        bail!("no spec can be watched: fix the problems above and start ferry watch again");
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
    if let Some(program) = &args.alert_command {
        destinations.push(Destination::Command(vec![program.clone()]));
    }
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        attempts: args.webhook_attempts,
        first_backoff: args.webhook_backoff,
        max_backoff: defaults.max_backoff.max(args.webhook_backoff),
        attempt_timeout: defaults.attempt_timeout.min(args.webhook_give_up_after),
        bound: args.webhook_give_up_after,
    };
    let variables = args::parse_vars(&args.vars)?;
    let (event_sender, mut delivery_events) = tokio::sync::mpsc::unbounded_channel();
    let mut watchers: Vec<Watcher<'_>> = watched
        .iter()
        .map(|one| {
            Watcher::new(
                &one.deployment,
                WatchConfig {
                    hold: args.hold,
                    destinations: destinations.clone(),
                    plan_on_failure: one.plan_on_failure.clone(),
                    variables: variables.clone(),
                    auto_apply: args.auto_apply,
                    retry: retry.clone(),
                    delivery_events: Some(event_sender.clone()),
                    // A few of this watcher's rounds: a peer at the same interval writes its
                    // verdict every round.
                    verdict_freshness: Some(
                        (args.interval * 3).max(std::time::Duration::from_secs(45)),
                    ),
                },
            )
        })
        .collect();
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
    let max_concurrent = args.max_concurrent_specs as usize;
    let names: Vec<&str> = watched
        .iter()
        .map(|one| one.deployment.spec().deployment.name.as_str())
        .collect();
    let what = if several {
        format!(
            "{} deployments ({}), {} at a time,",
            names.len(),
            names.join(", "),
            max_concurrent.min(names.len())
        )
    } else {
        names[0].to_owned()
    };
    let local = |one: &Watched| matches!(one.deployment.spec().state, StateConfig::Local { .. });
    let peers = if watched.iter().all(local) {
        if several {
            " Their states are local: this watcher has no peers and always acts."
        } else {
            " The state is local: this watcher has no peers and always acts."
        }
    } else if watched.iter().any(local) {
        " A spec with a local state has no other watcher and is always acted on; one with a shared state only while this watcher leads its watchers (a 15s lease on the state's .watch-leader blob)."
    } else {
        " Its watchers elect one to act by a 15s lease on the state's .watch-leader blob: this one acts only while it leads."
    };
    let quorum = match watched.as_slice() {
        [one] if one.deployment.spec().watch.quorum > 1 => format!(
            " A failover needs {} watchers that saw its trigger unhealthy ([watch] quorum).",
            one.deployment.spec().watch.quorum
        ),
        _ => String::new(),
    };
    output.stderr(&format!(
        "Watching {what} every {}, alerting once a change holds for {}.{peers}{quorum} Ctrl-C stops.\n",
        humantime::format_duration(args.interval),
        humantime::format_duration(args.hold)
    ));
    let mut round_number = 0u64;
    while !stop.load(Ordering::SeqCst) && args.rounds.is_none_or(|rounds| round_number < rounds) {
        round_number += 1;
        // Failed delivery attempts are printed as they happen, while the round waits to retry.
        let rounds = runtime.block_on(async {
            let rounds = ferry_ops::watch::round_each(&mut watchers, max_concurrent);
            tokio::pin!(rounds);
            loop {
                tokio::select! {
                    rounds = &mut rounds => break rounds,
                    Some(event) = delivery_events.recv() => output.stderr(&format!("warning: {event}\n")),
                }
            }
        });
        while let Ok(event) = delivery_events.try_recv() {
            output.stderr(&format!("warning: {event}\n"));
        }
        for (one, round) in watched.iter().zip(rounds) {
            // With several specs, each line says whose it is.
            let label = if several {
                format!("{}: ", one.deployment.spec().deployment.name)
            } else {
                String::new()
            };
            let round = match round {
                Ok(round) => {
                    // Said in the startup line.
                    if let Some(change) = &round.leadership
                        && *change != LeadershipChange::Alone
                    {
                        output.stderr(&format!("{label}{change}\n"));
                    }
                    round
                }
                Err(error) => {
                    output.error(&format!(
                        "round {round_number}: {label}cannot read the world: {}",
                        crate::error_text(&error.into())
                    ));
                    continue;
                }
            };
            for alert in &round.alerts {
                output.stdout(&format!("{label}{alert}\n"));
            }
            if let Some(alert) = &round.readiness {
                output.stdout(&format!("{label}{alert}\n"));
            }
            for failure in &round.delivery_failures {
                output.error(&format!("{label}{failure}"));
            }
            for replicated in &round.replication {
                if let Ok(done) = &replicated.outcome {
                    output.stderr(&format!("{label}{}: {done}\n", replicated.replica));
                }
            }
            for problem in &round.problems {
                output.error(&format!("{label}{problem}"));
            }
            if args.auto_apply
                && let Some(path) = &round.plan_written
            {
                let apply = ApplyArgs {
                    target: path.clone(),
                    vars: Vec::new(),
                    source: one.source.clone(),
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
                    "{label}The automatic failover apply ended with {code:?}.\n"
                ));
            }
        }
        if args.rounds.is_none_or(|rounds| round_number < rounds) {
            runtime.block_on(pause(args.interval, &stop));
        }
    }
    for watcher in &mut watchers {
        watcher.resign();
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads one spec and opens it on its own world, its plan file named for it.
fn open_watched(path: &Path, args: &WatchArgs, output: &Output) -> Result<Watched> {
    let spec_args = SpecArgs {
        spec: path.to_owned(),
        vars: args.vars.clone(),
    };
    let rules = ferry_ops::rule_book();
    let spec = crate::load_spec(&spec_args, &rules, output)?;
    if args.auto_apply && spec.failover.mode != FailoverMode::Automatic {
        bail!(
            "--auto-apply needs the spec's failover mode to be automatic: set mode = \"automatic\" in [failover], or review the plan and apply it yourself"
        );
    }
    let name = spec.deployment.name.clone();
    let for_this = |path: &Path| {
        PathBuf::from(
            path.to_string_lossy()
                .replace(DEPLOYMENT_PLACEHOLDER, &name),
        )
    };
    let mut source = args.source.clone();
    source.world = source.world.as_deref().map(for_this);
    let plan_on_failure = args.plan_on_failure.as_deref().map(for_this);
    let deployment = Deployment::open(spec, rules, path, crate::source::world_source(&source))?;
    Ok(Watched {
        deployment,
        source,
        plan_on_failure,
    })
}

/// With several specs, a file all would share is refused: each needs its own.
fn refuse_shared_path(option: &str, path: Option<&Path>) -> Result<()> {
    match path {
        Some(path) if !path.to_string_lossy().contains(DEPLOYMENT_PLACEHOLDER) => bail!(
            "{option} {} would be shared by every spec watched: put {DEPLOYMENT_PLACEHOLDER} in it (e.g. {option} '{}'), which becomes each spec's deployment name",
            path.display(),
            example_with_placeholder(path)
        ),
        _ => Ok(()),
    }
}

/// `plans/failover.plan` as `plans/{deployment}.plan`, for the advice.
fn example_with_placeholder(path: &Path) -> String {
    let extension = path
        .extension()
        .map(|extension| format!(".{}", extension.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{DEPLOYMENT_PLACEHOLDER}{extension}"))
        .display()
        .to_string()
}

/// The specs the arguments name: each argument is a spec (a folder of *.toml files, or one
/// file), or a folder with no *.toml of its own whose subfolders with *.toml files are specs.
fn spec_paths(arguments: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for argument in arguments {
        if !argument.is_dir() || holds_toml(argument)? {
            paths.push(argument.clone());
            continue;
        }
        let mut inner = Vec::new();
        for entry in read_dir(argument)? {
            if entry.is_dir() && holds_toml(&entry)? {
                inner.push(entry);
            }
        }
        if inner.is_empty() {
            bail!(
                "{} holds no *.toml file and no folder of them: name a spec folder, or a folder of spec folders",
                argument.display()
            );
        }
        inner.sort();
        paths.extend(inner);
    }
    Ok(paths)
}

fn read_dir(folder: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder)
        .map_err(|error| anyhow::anyhow!("cannot read the folder {}: {error}", folder.display()))?;
    Ok(entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect())
}

fn holds_toml(folder: &Path) -> Result<bool> {
    Ok(read_dir(folder)?.iter().any(|path| {
        path.is_file()
            && path
                .extension()
                .is_some_and(|extension| extension == "toml")
    }))
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
