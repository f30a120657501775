//! Graphviz DOT of a plan's steps, or of a spec's resources.

use std::collections::HashSet;
use std::fmt::Write;

use ferry_core::{Action, Plan, StepId};
use ferry_spec::Spec;

use super::text::duration;

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The plan's DAG: one node per step, the critical path in bold red.
pub fn plan_dot(plan: &Plan) -> String {
    let critical: HashSet<&StepId> = plan.critical_path.iter().collect();
    let mut out = String::from(
        "digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
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
    for step in &plan.steps {
        for before in &step.after {
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
    out.push_str("}\n");
    out
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
