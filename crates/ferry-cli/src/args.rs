//! The command line, as clap parses it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Plan and apply the failover of a service to a new generation of its infrastructure",
    long_about = "ferry computes a failover as an ordered diff between a TOML spec and the observed \
                  world, shows the exact plan, and applies it with every independent step in parallel."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec and show every problem in it at once.
    Validate(SpecArgs),
    /// Show what apply would do: the failover when one is due.
    Plan(PlanArgs),
    /// Carry out a plan: a spec's (after confirmation) or a saved one.
    Apply(ApplyArgs),
    /// Read every resource of a spec and write the observations as JSON.
    Observe(ObserveArgs),
    /// Print a saved plan.
    Show(ShowArgs),
    /// Print the spec's dependency graph, or a plan's step graph, as Graphviz DOT.
    Graph(GraphArgs),
    /// Break the apply lock of a spec's state, after making sure its holder is gone.
    ForceUnlock(UnlockArgs),
    /// Read every resource's health at an interval and alert on changes.
    Watch(WatchArgs),
    /// Send each hot standby's replica what its primary wrote since the last round, once.
    Replicate(ObserveArgs),
    /// Look at what the state knows, or make it forget an instance.
    State(StateArgs),
    /// Rehearse the failover on copies in a drill of its own, measure it, and remove it;
    /// production is only read.
    Drill(DrillArgs),
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Leave the drill built for inspection; remove it later with --clean.
    #[arg(long, conflicts_with = "clean")]
    pub keep: bool,
    /// Only remove what a drill left (after --keep, or a drill that was stopped or killed).
    #[arg(long)]
    pub clean: bool,
    /// The drill's id, on its tags and in its hooks' FERRY_DRILL_ID (lower-case letters,
    /// digits and -); by default the date and time.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// While another drill holds the drill's lock, wait up to this long for it (e.g. 5m).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Print the report as one JSON object (format_version 1, documented in
    /// docs/spec-reference.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Draw the drill as it ran as a timeline (SVG): each step from its real start to its
    /// end, the drill plan's critical path outlined.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "clean")]
    pub timeline: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every instance the state holds, with its role: serving, stateful, an old generation not
    /// retired yet, or the next one a failover is building.
    List {
        #[command(flatten)]
        spec: SpecArgs,
        /// Print the state as JSON (format_version 1, documented in docs/spec-reference.md).
        #[arg(long)]
        json: bool,
    },
    /// One instance's outputs as the state holds them.
    Show {
        #[command(flatten)]
        spec: SpecArgs,
        /// The instance: KIND.NAME (disk.home0) or KIND.NAME@gN (vm.nfs@g2).
        address: String,
        /// Print the instance as JSON, as one entry of `ferry state list --json`.
        #[arg(long)]
        json: bool,
    },
    /// Make the state forget an instance (Terraform's `state rm`); the resource is untouched
    /// and the next plan reads the world again. Refused for a stateful instance while a
    /// failover is in progress.
    Forget {
        #[command(flatten)]
        spec: SpecArgs,
        /// The instance: KIND.NAME (disk.home0) or KIND.NAME@gN (vm.nfs@g2).
        address: String,
        /// Forget without asking for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// While an apply holds the state's lock, wait up to this long for it (e.g. 5m).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        lock_timeout: std::time::Duration,
    },
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The spec: a folder of *.toml files, or one file.
    pub spec: PathBuf,
    /// Set a variable declared in [variables].
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// Plan from this snapshot (written by `ferry observe`) instead of reading the world.
    #[arg(long, value_name = "FILE", conflicts_with = "world")]
    pub observed: Option<PathBuf>,
    /// Use a simulated in-memory world kept in this JSON file instead of real providers:
    /// for trying ferry, demos and tests.
    #[arg(long, value_name = "FILE")]
    pub world: Option<PathBuf>,
    /// With --world: start from an empty world when FILE does not exist (without it, a missing
    /// file is an error, so that a mistyped path never plans everything from nothing).
    #[arg(long, requires = "world")]
    pub new_world: bool,
    /// With --world: each simulated step takes this share of its estimate (0.01 runs a
    /// 40-minute plan in 24 seconds).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, requires = "world")]
    pub world_time_scale: f64,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PlanningArgs {
    /// Plan a failover whatever the readings say (a planned move; a rehearsal on copies is
    /// `ferry drill`).
    #[arg(long, conflicts_with = "no_failover")]
    pub failover: bool,
    /// Only reconcile the active generation, even if a trigger is unhealthy.
    #[arg(long)]
    pub no_failover: bool,
    /// Allow deleting stateful resources whose spec says ensure = "absent" and allow_destroy.
    #[arg(long)]
    pub allow_destroy: bool,
    /// Accept a plan that changes more than 30% of a DNS zone's managed records.
    #[arg(long)]
    pub force: bool,
    /// Build this replaceable resource again although it matches the spec (Terraform's
    /// -replace); refused for stateful resources and for what they are placed on.
    #[arg(long, value_name = "KIND.NAME", value_parser = resource_address)]
    pub replace: Vec<ferry_core::ResourceAddress>,
    /// When the generation a failover leaves is retired, over the spec's [failover]
    /// retire_old: now, when-asked, or a duration such as 24h after its failover. A later
    /// `ferry apply --retire-old now` retires a generation kept before.
    #[arg(long, value_name = "WHEN", value_parser = retention)]
    pub retire_old: Option<ferry_core::RetireOld>,
}

fn retention(text: &str) -> Result<ferry_core::RetireOld, String> {
    text.parse().map_err(|error| format!("{error}"))
}

/// A resource address on the command line (`vm.nfs`): one generation's instance (`@g2`) is
/// not what `--replace` takes, since it replaces the serving generation's.
fn resource_address(text: &str) -> Result<ferry_core::ResourceAddress, String> {
    if text.contains('@') {
        return Err(format!(
            "`{text}` names one generation's instance: --replace takes the resource (`{}`) and replaces the serving generation's",
            text.split('@').next().unwrap_or(text)
        ));
    }
    text.parse().map_err(|error| format!("{error}"))
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Print the plan as JSON (format_version 1, documented in docs/spec-reference.md).
    #[arg(long)]
    pub json: bool,
    /// Save the plan, with the fingerprints of the observations it was made from.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 only when there is nothing to do and every reading is known and healthy; 2 changes
    /// to apply; 3 a failover is due but the spec's mode is manual; 4 some readings are
    /// unknown; 5 attention needed with nothing to apply; 1 on error. The most severe wins:
    /// 1, 4, 3, 2, 5, 0.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Draw the plan as a timeline (SVG): one bar per step at its earliest start, the critical
    /// path outlined.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The spec (a folder or a file), or a plan saved by `ferry plan -o`.
    pub target: PathBuf,
    /// Set a variable declared in [variables].
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// While another apply holds the state's lock, wait up to this long for it (e.g. 5m)
    /// before giving up with the holder named.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Steps running at once, over all providers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Steps of one kind running at once, as KIND=N (repeatable: --kind-parallelism hook=16
    /// --kind-parallelism vm=4), overriding the spec's [limits]. Without either, hooks follow
    /// --parallelism, each Azure kind runs at most 8 at once (ARM's write limits) and zfs_pool
    /// 4 (a host runs one zpool command at a time).
    #[arg(long, value_name = "KIND=N", value_parser = ferry_core::limits::parse_kind_limit)]
    pub kind_parallelism: Vec<(ferry_core::Kind, usize)>,
    /// After the apply, draw what happened as a timeline (SVG) from the real start and end
    /// times.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
    /// Print the plan and every event as JSON lines on stdout, for automation (format_version
    /// 1, documented in docs/spec-reference.md); needs --auto-approve or a saved plan.
    #[arg(long)]
    pub json: bool,
    /// Also show what each step records to resume from (ARM operation URLs, DNS waits), which
    /// is otherwise only in the journal.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// The share of its estimate each step is expected to take, for a simulator that runs
    /// faster than Azure (the ARM simulator's --time-scale): the progress and its forecast of
    /// the time to recovery follow it. With --world, --world-time-scale sets it.
    #[arg(long, value_name = "SHARE", conflicts_with = "world_time_scale")]
    pub estimates_scale: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `ferry plan -o FILE`.
    pub plan: PathBuf,
    /// Print the saved plan's steps as JSON, the same as `ferry plan --json` (format_version
    /// 1, documented in docs/spec-reference.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The plan's steps instead of the spec's resources.
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The lock's id, as the refused apply printed it.
    pub id: String,
    /// The spec whose state is locked.
    #[arg(default_value = ".")]
    pub spec: PathBuf,
    /// Break the lock even though its holder still runs on this host (its pid alive, started
    /// when the lock says): the holder then stops before its next step and fails. Without it,
    /// such a lock is refused: breaking it lets a second apply run the same steps at once.
    #[arg(long)]
    pub force_alive: bool,
}

/// `--var NAME=VALUE` pairs.
pub fn parse_vars(vars: &[String]) -> Result<BTreeMap<String, String>> {
    let mut parsed = BTreeMap::new();
    for var in vars {
        let Some((name, value)) = var.split_once('=') else {
            bail!("--var {var} has no value: write it as --var NAME=VALUE");
        };
        parsed.insert(name.trim().to_owned(), value.to_owned());
    }
    Ok(parsed)
}

/// `--webhook-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookFormatArg {
    Ferry,
    Alertmanager,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The specs to watch, each a folder of *.toml files or one file; a folder that holds spec
    /// folders (and no *.toml of its own) is each of them. With several, --world and
    /// --plan-on-failure take {deployment}, replaced by each spec's deployment name.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Set a variable declared in [variables] (in every spec watched).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// How many specs are read at the same time. Each spec's round reads up to 32 resources at
    /// once, and the specs of one subscription share ARM's read bucket (250 reads, refilled at
    /// 25 a second, per subscription and principal): 4 specs at once stay within it.
    #[arg(long, default_value = "4", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_specs: u32,
    /// Time between two rounds of readings.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// How long a new state must hold before it counts: damps a flapping endpoint.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub hold: std::time::Duration,
    /// POST each alert as JSON to this URL (repeatable). A refused connection, a timeout, a
    /// 5xx or a 429 is tried again (see --webhook-attempts); a token in the URL is masked in
    /// messages.
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// The webhook body: ferry's own JSON, or the body Alertmanager's webhook receiver sends
    /// (for a route built for Alertmanager: Slack, PagerDuty, OpsGenie adapters).
    #[arg(long, value_enum, default_value = "ferry", value_name = "FORMAT")]
    pub webhook_format: WebhookFormatArg,
    /// Attempts per alert and webhook, the first included.
    #[arg(long, default_value = "5", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_attempts: u32,
    /// The wait before the second attempt; it doubles each time (up to 8s, with jitter), or is
    /// the webhook's Retry-After.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub webhook_backoff: std::time::Duration,
    /// How long one alert's delivery may hold the watch, attempts and waits included: past it
    /// the alert is given up (and said so on stderr).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub webhook_give_up_after: std::time::Duration,
    /// Run this program for each alert, with the alert as JSON on stdin and in FERRY_ALERT.
    #[arg(long, value_name = "PROGRAM")]
    pub alert_command: Option<String>,
    /// When the active generation becomes unhealthy, write the failover plan to this file,
    /// ready for review and `ferry apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub plan_on_failure: Option<PathBuf>,
    /// Apply that plan at once. Only with --plan-on-failure and a spec whose failover mode is
    /// automatic.
    #[arg(long, requires = "plan_on_failure")]
    pub auto_apply: bool,
    /// Stop after this many rounds (for scripts and cron); without it, run until Ctrl-C.
    #[arg(long, value_name = "N")]
    pub rounds: Option<u64>,
}
