//! `ferry state list`, `ferry state show` and `ferry state forget`: what the state knows, as
//! text or JSON, and the one confirmed way to make it forget an instance.

use std::process::ExitCode;

use anyhow::Result;
use ferry_ops::{Deployment, InstanceView, StateView, WorldSource};

use crate::args::{StateArgs, StateCommand};
use crate::output::Output;

pub(crate) fn state_command(args: &StateArgs, output: &Output) -> Result<ExitCode> {
    match &args.command {
        StateCommand::List { spec, json } => {
            let view = open(spec, output)?.state_view()?;
            if *json {
                output.stdout(&format!("{}\n", serde_json::to_string_pretty(&view)?));
            } else {
                output.stdout(&list_text(&view));
            }
        }
        StateCommand::Show {
            spec,
            address,
            json,
        } => {
            let instance = open(spec, output)?.state_instance(address)?;
            if *json {
                output.stdout(&format!("{}\n", serde_json::to_string_pretty(&instance)?));
            } else {
                output.stdout(&show_text(&instance));
            }
        }
        StateCommand::Forget {
            spec,
            address,
            auto_approve,
            lock_timeout,
        } => {
            let deployment = open(spec, output)?;
            // Shown first, so that the operator confirms knowing what the state holds of it.
            let instance = deployment.state_instance(address)?;
            output.stdout(&show_text(&instance));
            let question = format!(
                "Forget {} ({})? ferry then no longer knows it made it.",
                instance.address,
                instance.role.describe()
            );
            if !auto_approve
                && !output.confirm(
                    "ferry state forget",
                    "what the state holds of it",
                    &question,
                )?
            {
                output.stdout("Nothing forgotten.\n");
                return Ok(ExitCode::SUCCESS);
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let forgotten = runtime.block_on(deployment.forget(address, *lock_timeout))?;
            output.stdout(&format!(
                "The state no longer holds {}; the resource itself is untouched, and the next \
                 plan reads it from the world again.\n",
                forgotten.address
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The state needs only the spec's `[state]`: no world is read.
fn open(spec: &crate::args::SpecArgs, output: &Output) -> Result<Deployment> {
    let rules = ferry_ops::rule_book();
    let loaded = crate::load_spec(spec, &rules, output)?;
    Ok(Deployment::open(
        loaded,
        rules,
        &spec.spec,
        WorldSource::Live,
    )?)
}

fn list_text(view: &StateView) -> String {
    let mut text = format!(
        "Deployment {}, state at {}.\n",
        view.deployment, view.location
    );
    text.push_str(&match (view.active_generation, &view.failover) {
        (0, None) => "Nothing applied yet.\n".to_owned(),
        (generation, None) => format!("Generation {generation} serves.\n"),
        (generation, Some(failover)) => format!(
            "Generation {generation} serves; a failover to generation {} is in progress (trigger: {}): ferry apply finishes it.\n",
            failover.to_generation, failover.trigger
        ),
    });
    if view.instances.is_empty() {
        return text;
    }
    let rows: Vec<[String; 4]> = view
        .instances
        .iter()
        .map(|instance| {
            [
                instance.address.to_string(),
                instance.role.describe().to_owned(),
                if instance.in_spec { "yes" } else { "no" }.to_owned(),
                instance
                    .outputs
                    .get("name")
                    .and_then(|name| name.as_str())
                    .unwrap_or("")
                    .to_owned(),
            ]
        })
        .collect();
    let header = [
        "INSTANCE".to_owned(),
        "ROLE".to_owned(),
        "IN SPEC".to_owned(),
        "AZURE NAME".to_owned(),
    ];
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    text.push('\n');
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    for kept in &view.kept {
        text.push('\n');
        text.push_str(&kept_text(kept));
    }
    text
}

/// An older generation the state holds: since when, until when, and what it keeps running.
fn kept_text(kept: &ferry_ops::KeptView) -> String {
    let count = kept.instances.len();
    let since = kept
        .stood_down
        .as_deref()
        .map(|at| format!(" stopped serving at {at};"))
        .unwrap_or_default();
    let until = match &kept.until {
        Some(until) => format!("kept, {until}"),
        None => "its retention is over: the next ferry apply retires it".to_owned(),
    };
    let mut text = format!(
        "Generation {} ({count} instance{}):{since} {until}.\n",
        kept.generation,
        if count == 1 { "" } else { "s" }
    );
    for instance in &kept.instances {
        if let Some(upkeep) = &instance.upkeep {
            text.push_str(&format!("  still billed: {}: {upkeep}\n", instance.address));
        }
    }
    text
}

fn show_text(instance: &InstanceView) -> String {
    let mut text = format!(
        "{} ({}{})\n",
        instance.address,
        instance.role.describe(),
        if instance.in_spec {
            ""
        } else {
            ", no longer in the spec"
        }
    );
    for (name, value) in &instance.outputs {
        text.push_str(&format!("  {name} = {value}\n"));
    }
    text
}
