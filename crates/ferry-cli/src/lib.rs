//! The `ferry` command line: argument parsing, output formats and colour. Everything else is
//! library code that a program can call directly.

mod apply;
mod args;
mod drill;
mod output;
pub mod progress;
mod single_dash;
mod source;
mod state;
mod watch;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ferry_core::{Plan, RuleBook, Snapshot};
use ferry_ops::{Deployment, PlanOptions};
use ferry_plan::{FailoverRequest, PlanConfig, SavedPlan, Verdict, render};
use ferry_spec::{LoadOptions, Spec};

use args::{Cli, Command, GraphArgs, PlanArgs, PlanningArgs, ShowArgs, SourceArgs, SpecArgs};
use output::Output;

/// Runs `ferry` with the process's arguments; returns the exit code scripts rely on: 0 for
/// success, 1 for any error (a usage error included); with `ferry plan --detailed-exitcode`,
/// the plan's [`ferry_plan::Verdict`]: 0 nothing to do and every reading known and healthy,
/// 2 changes, 3 a failover due in manual mode, 4 unknown readings, 5 attention needed.
pub fn main() -> ExitCode {
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(advice) = single_dash::misspelled_long_option(&arguments) {
        Output::new(args::ColorChoice::Auto).error(&advice);
        return ExitCode::from(ferry_plan::outcome::EXIT_ERROR);
    }
    let cli = match Cli::try_parse_from(arguments) {
        Ok(cli) => cli,
        // clap exits 2 on a usage error, which a script would take for "changes to apply".
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(ferry_plan::outcome::EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let output = Output::new(cli.color);
    match run(cli.command, &output) {
        Ok(code) => code,
        Err(error) => {
            if error.downcast_ref::<Shown>().is_none() {
                output.error(&error_text(&error));
            }
            ExitCode::from(ferry_plan::outcome::EXIT_ERROR)
        }
    }
}

/// An error and its causes, each said once: ferry's errors already carry their cause's text
/// in their own message (`cannot save state file X: permission denied …`), so a cause whose
/// text the message holds is not repeated after it.
pub(crate) fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// An error already shown to the user in full (spec diagnostics): only the exit code is left.
#[derive(Debug)]
pub(crate) struct Shown;

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the problems above stop ferry")
    }
}

impl std::error::Error for Shown {}

fn run(command: Command, output: &Output) -> Result<ExitCode> {
    match command {
        Command::Validate(args) => validate(&args, output),
        Command::Plan(args) => plan_command(&args, output),
        Command::Show(args) => show(&args, output),
        Command::Graph(args) => graph(&args, output),
        Command::Observe(args) => {
            let deployment = open(&args.spec, &args.source, output)?;
            let snapshot = source::snapshot(&deployment, &args.source)?;
            let mut text = serde_json::to_string_pretty(&snapshot)?;
            text.push('\n');
            output.stdout(&text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replicate(args) => replicate(&args, output),
        Command::Apply(args) => apply::apply_command(&args, output),
        Command::ForceUnlock(args) => apply::force_unlock(&args, output),
        Command::Watch(args) => watch::watch(&args, output),
        Command::State(args) => state::state_command(&args, output),
        Command::Drill(args) => drill::drill_command(&args, output),
    }
}

/// `ferry replicate`: one replication round for each pool of a hot standby, a line for each
/// on stdout (on stderr for one that did not replicate, and then exit 1).
fn replicate(args: &crate::args::ObserveArgs, output: &Output) -> Result<ExitCode> {
    if args.source.observed.is_some() {
        anyhow::bail!(
            "--observed plans from a file; ferry replicate changes the world: give --world FILE or nothing"
        );
    }
    let deployment = open(&args.spec, &args.source, output)?;
    if deployment.spec().hot_pools().next().is_none() {
        output.stdout(
            "Nothing to replicate: the spec keeps no hot standby ([failover] standby = \"hot\", replica_disks).\n",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rounds = runtime.block_on(deployment.replicate())?;
    if rounds.is_empty() {
        output.stdout("Nothing to replicate: nothing is built yet (ferry apply builds the pool and seeds its replica).\n");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for round in rounds {
        match round.outcome {
            Ok(done) => output.stdout(&format!("{}: {done}\n", round.replica)),
            Err(why) => {
                failed = true;
                output.stderr(&format!("{}: not replicated: {why}\n", round.replica));
            }
        }
    }
    Ok(if failed {
        ExitCode::from(ferry_plan::outcome::EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads a spec (showing every problem in it on stderr when there are some) and opens it for
/// operations on the world the arguments name.
pub(crate) fn open(spec: &SpecArgs, source: &SourceArgs, output: &Output) -> Result<Deployment> {
    let rules = ferry_ops::rule_book();
    let loaded = load_spec(spec, &rules, output)?;
    Ok(Deployment::open(
        loaded,
        rules,
        &spec.spec,
        source::world_source(source),
    )?)
}

/// Loads and validates a spec, showing every problem in it on stderr when there are some.
pub(crate) fn load_spec(args: &SpecArgs, rules: &RuleBook, output: &Output) -> Result<Spec> {
    let options = LoadOptions {
        variables: args::parse_vars(&args.vars)?,
        environment: std::env::vars().collect(),
    };
    match ferry_spec::load(&args.spec, &options, rules) {
        Ok(spec) => Ok(spec),
        Err(errors) => {
            output.stderr(&errors.render(output.stderr_color()));
            Err(Shown.into())
        }
    }
}

fn validate(args: &SpecArgs, output: &Output) -> Result<ExitCode> {
    let rules = ferry_ops::rule_book();
    let spec = load_spec(args, &rules, output)?;
    output.stdout(&format!(
        "{} is valid: deployment {}, {} resources.\n",
        args.spec.display(),
        spec.deployment.name,
        spec.resources.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The planning options the arguments give.
pub(crate) fn plan_options(args: &PlanningArgs) -> PlanOptions {
    PlanOptions {
        config: PlanConfig {
            failover: if args.failover {
                FailoverRequest::Force
            } else if args.no_failover {
                FailoverRequest::Never
            } else {
                FailoverRequest::Policy
            },
            allow_destroy: args.allow_destroy,
            replace: args.replace.iter().cloned().collect(),
            retire_old: args.retire_old,
            now: None,
        },
        force: args.force,
    }
}

fn plan_command(args: &PlanArgs, output: &Output) -> Result<ExitCode> {
    let deployment = open(&args.spec, &args.source, output)?;
    let spec = deployment.spec();
    let snapshot = source::snapshot(&deployment, &args.source)?;
    let plan = deployment.plan(&snapshot, &plan_options(&args.planning))?;
    output.stderr(&header(&deployment, Some(snapshot.active_generation)));
    if args.json {
        output.stdout(&render::json(&plan));
    } else {
        let options = output.text_options();
        output.stdout_pieces(|sink| render::write_text(&plan, &options, sink));
    }
    if let Some(path) = &args.timeline {
        let title = format!("ferry plan: {}", spec.deployment.name);
        write_file(
            path,
            &render::timeline_svg(&plan, &render::estimated_bars(&plan), &title),
        )?;
    }
    if let Some(path) = &args.out {
        let saved = saved_plan(spec, plan.clone(), &snapshot, &args.spec)?;
        write_file(path, &saved.to_json())?;
        output.stderr(&format!(
            "Saved the plan to {}: apply exactly it with `ferry apply {}`.\n",
            path.display(),
            path.display()
        ));
    }
    // A failover with no steps left still has its end to record: there is something to apply
    // (the verdict counts it as a change).
    let code = if args.detailed_exitcode {
        ExitCode::from(Verdict::of(&plan).exit_code())
    } else {
        ExitCode::SUCCESS
    };
    // The process ends right after: freeing the plan, the readings and the spec one allocation
    // at a time (millions of them for 100,000 resources, 6 % of the command's time) would only
    // give back memory that the exit returns at once. rustc leaks its large structures at the
    // end the same way. A plan holds no lock, so the state backend's own `Drop` (a blob
    // backend's lease renewal and runtime) has nothing to release that the exit does not end.
    std::mem::forget(plan);
    std::mem::forget(snapshot);
    std::mem::forget(deployment);
    Ok(code)
}

/// The line above a plan or an apply: which deployment, which generation serves (as the world
/// reads, when read), and where its state is.
pub(crate) fn header(deployment: &Deployment, serving: Option<ferry_core::Generation>) -> String {
    let mut line = format!("Deployment {}", deployment.spec().deployment.name);
    match serving {
        Some(0) => line.push_str(", nothing built yet"),
        Some(generation) => line.push_str(&format!(", generation {generation} serves")),
        None => {}
    }
    // A shared backend that cannot be set up here (no credential for the blob) is not worth
    // failing a plan from a snapshot for: its location is left out.
    if let Ok(backend) = deployment.backend() {
        line.push_str(&format!(", state at {}", backend.location()));
    }
    line.push_str(".\n");
    line
}

/// A plan to save, with the spec's path and the `--var` values it was loaded with.
pub(crate) fn saved_plan(
    spec: &Spec,
    plan: Plan,
    snapshot: &Snapshot,
    spec_args: &SpecArgs,
) -> Result<SavedPlan> {
    Ok(ferry_ops::saved_plan(
        spec,
        plan,
        snapshot,
        &spec_args.spec,
        &args::parse_vars(&spec_args.vars)?,
    )?)
}

fn show(args: &ShowArgs, output: &Output) -> Result<ExitCode> {
    let saved = read_saved_plan(&args.plan)?;
    if args.json {
        output.stdout(&render::json(&saved.plan));
    } else {
        let unknown = |text: &str| {
            if text.is_empty() {
                "unknown".to_owned()
            } else {
                text.to_owned()
            }
        };
        output.stdout(&format!(
            "Saved plan for deployment {} from {}, made by {} at {} with ferry {}.\n\n",
            saved.deployment,
            unknown(&saved.spec_path),
            unknown(&saved.author),
            unknown(&saved.created_at),
            unknown(&saved.ferry_version),
        ));
        output.stdout(&render::text(&saved.plan, &output.text_options()));
    }
    Ok(ExitCode::SUCCESS)
}

fn graph(args: &GraphArgs, output: &Output) -> Result<ExitCode> {
    let deployment = open(&args.spec, &args.source, output)?;
    if args.plan {
        let snapshot = source::snapshot(&deployment, &args.source)?;
        let plan = ferry_ops::plan(
            deployment.spec(),
            &snapshot,
            deployment.rules(),
            &plan_options(&args.planning),
        )?;
        output.stdout(&render::plan_dot(&plan));
    } else {
        output.stdout(&render::spec_dot(deployment.spec()));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_saved_plan(path: &Path) -> Result<SavedPlan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the saved plan {}", path.display()))?;
    SavedPlan::from_json(&text).with_context(|| format!("{} is not a usable plan", path.display()))
}

/// Writes a file whole (`ferry_core::fs::write_atomically`), so that a crash never leaves
/// half a plan behind.
pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    // Errors name the file asked for and its folder, never the temporary file beside it.
    let written = ferry_core::fs::write_atomically(
        path,
        text.as_bytes(),
        &ferry_core::fs::WriteOptions::default(),
    );
    if let Err(error) = written {
        anyhow::bail!(
            "cannot write {}: {}",
            path.display(),
            ferry_state::describe_io(&error, path)
        );
    }
    Ok(())
}
