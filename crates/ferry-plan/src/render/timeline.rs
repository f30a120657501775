//! The plan as a timeline (a Gantt chart in SVG): one bar per step at its start with its
//! duration, grouped by resource, the critical path highlighted. Drawn from the estimates
//! before an apply, and from the real start and end times after one.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use ferry_core::{Action, Plan, Step, StepId};

use super::text::duration;

/// One bar: when a step started and how long it took (or is expected to take).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub step: StepId,
    pub start_seconds: f64,
    pub duration_seconds: f64,
    /// How it ended, after an apply (`failed`, `skipped`, ...); `None` for an estimate.
    pub outcome: Option<String>,
}

/// A moment drawn across the picture: an apply that started, was interrupted, resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at_seconds: f64,
    pub label: String,
}

/// The bars of a plan from its estimates: each step at its earliest start.
pub fn estimated_bars(plan: &Plan) -> Vec<Bar> {
    let starts = crate::order::earliest_starts(plan);
    plan.steps
        .iter()
        .map(|step| Bar {
            step: step.id.clone(),
            start_seconds: starts[&step.id] as f64,
            duration_seconds: step.estimate_seconds as f64,
            outcome: None,
        })
        .collect()
}

/// The colour of an action's bars, and the legend's name for the group.
fn color(action: Action) -> &'static str {
    match action {
        Action::Create => "#2e7d32",
        Action::Update | Action::Replace => "#f9a825",
        Action::Delete | Action::Retire => "#9e9e9e",
        Action::Fence => "#c62828",
        Action::Detach
        | Action::Move
        | Action::Attach
        | Action::Import
        | Action::Export
        | Action::Promote => "#1565c0",
        Action::Run => "#6a1b9a",
        Action::Wait => "#00838f",
    }
}

/// The legend, one entry per colour, in the order a failover meets them.
const LEGEND: [(&str, Action); 7] = [
    ("fence", Action::Fence),
    ("move the data", Action::Move),
    ("create", Action::Create),
    ("update, replace", Action::Update),
    ("run a hook", Action::Run),
    ("wait for a check", Action::Wait),
    ("retire, delete", Action::Retire),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// When the service is back in `bars`: the end of the last bar that is not a retirement,
/// for a failover plan; `None` otherwise.
fn recovery_seconds(plan: &Plan, bars: &[Bar], steps: &BTreeMap<&StepId, &Step>) -> Option<f64> {
    plan.failover.as_ref()?;
    bars.iter()
        .filter(|bar| {
            let action = match steps.get(&bar.step) {
                Some(step) => Some(step.action),
                None => RowStep::from_id(&bar.step).map(|step| step.action),
            };
            action.is_some_and(|action| action != Action::Retire)
        })
        .map(|bar| bar.start_seconds + bar.duration_seconds)
        .reduce(f64::max)
}

/// Draws `bars` of `plan` as an SVG document. `title` heads the picture.
///
/// One row per step, labelled with its action and instance, so that no bar hides another
/// (the old VM's fence and the new VM's create overlap in time); the critical path outlined
/// in red; in a failover, a line where the service is back; a legend of the colours.
pub fn timeline_svg(plan: &Plan, bars: &[Bar], title: &str) -> String {
    timeline_svg_marked(plan, bars, &[], title)
}

/// [`timeline_svg`] with `markers` drawn across it (where each apply of a resumed failover
/// started). A bar whose step `plan` does not have (an earlier apply's) is drawn from its id.
pub fn timeline_svg_marked(plan: &Plan, bars: &[Bar], markers: &[Marker], title: &str) -> String {
    let critical: HashSet<&StepId> = plan.critical_path.iter().collect();
    let steps: BTreeMap<&StepId, &Step> = plan.steps.iter().map(|step| (&step.id, step)).collect();
    let rows: Vec<(&Bar, RowStep)> = bars
        .iter()
        .filter_map(|bar| match steps.get(&bar.step) {
            Some(step) => Some((bar, RowStep::of(step))),
            None => RowStep::from_id(&bar.step).map(|step| (bar, step)),
        })
        .collect();
    let end = bars
        .iter()
        .map(|bar| bar.start_seconds + bar.duration_seconds)
        .fold(1.0_f64, f64::max);
    let recovery = recovery_seconds(plan, bars, &steps);
    let label_width = rows
        .iter()
        .map(|(_, step)| step.label.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(20, 60) as f64
        * 6.6
        + 20.0;
    let (chart_width, row_height, top) = (820.0, 18.0, 80.0);
    let scale = chart_width / end;
    let chart_bottom = top + row_height * rows.len() as f64;
    let height = chart_bottom + 80.0;
    let width = label_width + chart_width + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let subtitle = match recovery {
        Some(back) => format!(
            "{} steps; the service is back after {}, everything ends after {}",
            rows.len(),
            duration(back.round() as u64),
            duration(end.round() as u64)
        ),
        None => format!(
            "{} steps; everything ends after {}",
            rows.len(),
            duration(end.round() as u64)
        ),
    };
    let _ = writeln!(
        out,
        r##"<text x="10" y="40" fill="#555">{}</text>"##,
        escape(&subtitle)
    );
    // Grid: about ten ticks, on whole minutes when the plan is long enough.
    let tick = [
        1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|tick| end / tick <= 12.0)
    // Longer plans get whole hours, still about ten ticks (not one every two hours of
    // a plan that a library user's estimates made years long).
    .unwrap_or_else(|| (end / 12.0 / 3600.0).ceil() * 3600.0);
    let mut at = 0.0;
    while at <= end {
        let x = label_width + at * scale;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{top:.0}" x2="{x:.1}" y2="{chart_bottom:.0}" stroke="#e0e0e0"/><text x="{x:.1}" y="{:.0}" fill="#555" text-anchor="middle">{}</text>"##,
            chart_bottom + 14.0,
            duration(at as u64)
        );
        at += tick;
    }
    for (index, (bar, step)) in rows.iter().enumerate() {
        let y = top + row_height * index as f64;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + 13.0,
            escape(&step.label)
        );
        let x = label_width + bar.start_seconds * scale;
        let w = (bar.duration_seconds * scale).max(2.0);
        let stroke = if critical.contains(&bar.step) {
            r##" stroke="#d50000" stroke-width="2""##
        } else {
            ""
        };
        let opacity = match bar.outcome.as_deref() {
            Some("skipped" | "not started") => "0.25",
            Some("interrupted") => "0.45",
            _ => "0.9",
        };
        // A step cut short by a kill or a Ctrl-C: dashed, whatever path it was on.
        let stroke = if bar.outcome.as_deref() == Some("interrupted") {
            r##" stroke="#424242" stroke-width="1.5" stroke-dasharray="3,2""##
        } else {
            stroke
        };
        let mut tooltip = format!(
            "{}: starts at {}, takes {}",
            step.label,
            duration(bar.start_seconds as u64),
            duration(bar.duration_seconds.round() as u64)
        );
        if let Some(outcome) = &bar.outcome {
            tooltip.push_str(&format!(" ({outcome})"));
        }
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.0}" rx="2" fill="{}" fill-opacity="{opacity}"{stroke}><title>{}</title></rect>"#,
            y + 2.0,
            row_height - 4.0,
            color(step.action),
            escape(&tooltip)
        );
        // The bar's own duration beside it, and how it ended when it did not succeed.
        let mut note = duration(bar.duration_seconds.round() as u64);
        if let Some(outcome) = bar.outcome.as_deref().filter(|outcome| *outcome != "done") {
            note.push_str(&format!(" ({outcome})"));
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#555">{}</text>"##,
            x + w + 3.0,
            y + 12.0,
            escape(&note)
        );
    }
    for marker in markers {
        let x = label_width + marker.at_seconds.max(0.0) * scale;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{chart_bottom:.0}" stroke="#616161" stroke-width="1" stroke-dasharray="3,3"/><text x="{:.1}" y="{:.0}" fill="#616161" font-size="10">{}</text>"##,
            top - 24.0,
            x + 3.0,
            top - 16.0,
            escape(&marker.label)
        );
    }
    if let Some(back) = recovery {
        let x = label_width + back * scale;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{chart_bottom:.0}" stroke="#2e7d32" stroke-width="2" stroke-dasharray="6,3"/><text x="{x:.1}" y="{:.0}" fill="#2e7d32" text-anchor="middle" font-weight="bold">service back: {}</text>"##,
            top - 12.0,
            top - 2.0,
            duration(back.round() as u64)
        );
    }
    // The legend, under the axis.
    let mut x = 10.0;
    let y = chart_bottom + 36.0;
    for (name, action) in LEGEND {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" rx="2" fill="{}"/><text x="{:.1}" y="{y:.1}">{name}</text>"#,
            y - 10.0,
            color(action),
            x + 16.0
        );
        x += 24.0 + name.len() as f64 * 6.2;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" rx="2" fill="white" stroke="#d50000" stroke-width="2"/><text x="{:.1}" y="{y:.1}">critical path</text>"##,
        y - 10.0,
        x + 16.0
    );
    out.push_str("</svg>\n");
    out
}

/// What a row shows of its step: `fence vm.nfs@g1`, and the colour of its action.
struct RowStep {
    label: String,
    action: Action,
}

impl RowStep {
    fn of(step: &Step) -> Self {
        Self {
            label: format!("{} {}", step.action, step.address),
            action: step.action,
        }
    }

    /// From a step id (`vm.nfs@g1:fence`) alone, for a step an earlier apply ran.
    fn from_id(id: &StepId) -> Option<Self> {
        let (instance, action) = id.0.rsplit_once(':')?;
        let action: Action =
            serde_json::from_value(serde_json::Value::String(action.to_owned())).ok()?;
        Some(Self {
            label: format!("{action} {instance}"),
            action,
        })
    }
}
