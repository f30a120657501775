//! Graphviz DOT of a plan's steps, or of a spec's resources.

use std::collections::HashSet;
use std::fmt::Write;

use ferry_core::{Action, Plan, StepId};
use ferry_spec::Spec;

use super::text::duration;

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What the colours and widths say: one node holding a table, one row per colour, so that
/// the legend is narrow and the picture keeps to a page's width.
const LEGEND: &str = concat!(
    "  legend [shape=plaintext, label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"3\" cellpadding=\"3\">",
    "<tr><td border=\"0\">legend</td></tr>",
    "<tr><td color=\"darkgreen\">create</td></tr>",
    "<tr><td color=\"red3\">fence, replace, retire, delete</td></tr>",
    "<tr><td color=\"blue\">move the data, update</td></tr>",
    "<tr><td color=\"purple\">run a hook, wait for a check</td></tr>",
    "<tr><td border=\"3\">critical path</td></tr>",
    "</table>>];\n",
);

/// The edges another path already implies (`a -> c` when `a -> b -> c`): left out of the
/// drawing, which then shows only what orders each step directly. Above 5,000 steps every edge
/// is kept rather than spend quadratic time on a picture.
fn implied_edges(plan: &Plan) -> HashSet<(&StepId, &StepId)> {
    let mut implied = HashSet::new();
    if plan.steps.len() > 5_000 {
        return implied;
    }
    let position: std::collections::HashMap<&StepId, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| (&step.id, index))
        .collect();
    // Steps are in execution order: everything a step comes after is known before it.
    let mut reaches: Vec<Vec<bool>> = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let mut before = vec![false; plan.steps.len()];
        let predecessors: Vec<usize> = step
            .after
            .iter()
            .filter_map(|id| position.get(id).copied())
            .collect();
        for &predecessor in &predecessors {
            before[predecessor] = true;
            for (index, reached) in reaches[predecessor].iter().enumerate() {
                if *reached {
                    before[index] = true;
                }
            }
        }
        for &predecessor in &predecessors {
            let through_another = predecessors
                .iter()
                .any(|&other| other != predecessor && reaches[other][predecessor]);
            if through_another {
                implied.insert((&plan.steps[predecessor].id, &step.id));
            }
        }
        reaches.push(before);
    }
    implied
}

/// The plan's DAG: one node per step, the critical path in bold red, only the edges no other
/// path implies, and a legend.
pub fn plan_dot(plan: &Plan) -> String {
    let critical: HashSet<&StepId> = plan.critical_path.iter().collect();
    let mut out = String::from(
        // Top to bottom: a failover is a long chain, and a page is taller than wide.
        "digraph plan {\n  rankdir=TB;\n  nodesep=0.2;\n  ranksep=0.35;\n  node [shape=box, fontname=\"monospace\", fontsize=12];\n",
    );
    for step in &plan.steps {
        let color = match step.action {
            Action::Create => "darkgreen",
            Action::Delete | Action::Retire | Action::Replace | Action::Fence => "red3",
            Action::Run | Action::Wait => "purple",
            _ => "blue",
        };
        let emphasis = if critical.contains(&step.id) {
            ", penwidth=3"
        } else {
            ""
        };
        let label = format!(
            "{} {}\\n~{}",
            step.action,
            step.address,
            duration(step.estimate_seconds)
        );
        let _ = writeln!(
            out,
            "  {} [label=\"{}\", color={color}{emphasis}];",
            quote(&step.id.0),
            label.replace('"', "\\\"")
        );
    }
    let implied = implied_edges(plan);
    for step in &plan.steps {
        for before in &step.after {
            if implied.contains(&(before, &step.id)) {
                continue;
            }
            let emphasis = if critical.contains(before) && critical.contains(&step.id) {
                " [color=red3, penwidth=2]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} -> {}{emphasis};",
                quote(&before.0),
                quote(&step.id.0)
            );
        }
    }
    retirement_gate(plan, &critical, &mut out);
    out.push_str(LEGEND);
    out.push_str("}\n");
    out
}

/// Retirements go last by the plan's rule, not by edges: the picture shows the rule as one
/// node that the last steps of the rest lead to and the first retirements follow.
fn retirement_gate(plan: &Plan, critical: &HashSet<&StepId>, out: &mut String) {
    let retirements: HashSet<&StepId> = plan
        .steps
        .iter()
        .filter(|step| step.action.goes_last())
        .map(|step| &step.id)
        .collect();
    let first_retirements: Vec<&StepId> = plan
        .steps
        .iter()
        .filter(|step| {
            step.action.goes_last() && !step.after.iter().any(|before| retirements.contains(before))
        })
        .map(|step| &step.id)
        .collect();
    if first_retirements.is_empty() {
        return;
    }
    let followed: HashSet<&StepId> = plan
        .steps
        .iter()
        .filter(|step| !step.action.goes_last())
        .flat_map(|step| step.after.iter())
        .collect();
    let gate = quote("every other step done");
    let _ = writeln!(
        out,
        "  {gate} [shape=ellipse, style=dashed, label=\"every other step done:\\nthe old generation goes\"];"
    );
    for step in plan
        .steps
        .iter()
        .filter(|step| !step.action.goes_last() && !followed.contains(&step.id))
    {
        let emphasis = if critical.contains(&step.id) {
            " [color=red3, penwidth=2]"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} -> {gate}{emphasis};", quote(&step.id.0));
    }
    for retirement in first_retirements {
        let emphasis = if critical.contains(retirement) {
            " [color=red3, penwidth=2]"
        } else {
            ""
        };
        let _ = writeln!(out, "  {gate} -> {}{emphasis};", quote(&retirement.0));
    }
}

/// The spec's resources and their dependencies: an edge from each resource to what it needs.
pub fn spec_dot(spec: &Spec) -> String {
    let mut out = String::from(
        "digraph spec {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for address in spec.resources.keys() {
        let shape = if address.kind.is_stateful() {
            ", style=bold"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} [label={}{shape}];",
            quote(&address.to_string()),
            quote(&address.to_string())
        );
    }
    for address in spec.resources.keys() {
        let mut seen = HashSet::new();
        for dependency in spec.dependencies(address) {
            if seen.insert(dependency.address.clone()) {
                let _ = writeln!(
                    out,
                    "  {} -> {};",
                    quote(&address.to_string()),
                    quote(&dependency.address.to_string())
                );
            }
        }
    }
    out.push_str("}\n");
    out
}
