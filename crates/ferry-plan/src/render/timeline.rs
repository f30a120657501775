//! The plan as a timeline (a Gantt chart in SVG): one bar per step at its start with its
//! duration, grouped by resource, the critical path highlighted. Drawn from the estimates
//! before an apply, and from the real start and end times after one.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use ferry_core::{Action, Plan, StepId};

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

fn color(action: Action) -> &'static str {
    match action {
        Action::Create => "#2e7d32",
        Action::Update | Action::Replace => "#f9a825",
        Action::Delete | Action::Retire => "#9e9e9e",
        Action::Fence => "#c62828",
        Action::Detach | Action::Move | Action::Attach | Action::Import | Action::Export => {
            "#1565c0"
        }
        Action::Run => "#6a1b9a",
        Action::Wait => "#00838f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws `bars` of `plan` as an SVG document. `title` heads the picture.
pub fn timeline_svg(plan: &Plan, bars: &[Bar], title: &str) -> String {
    let critical: HashSet<&StepId> = plan.critical_path.iter().collect();
    let steps: BTreeMap<&StepId, &ferry_core::Step> =
        plan.steps.iter().map(|step| (&step.id, step)).collect();
    // Rows: one per resource, in the order its first step appears, so the picture reads
    // top to bottom roughly as the plan does.
    let mut rows: Vec<String> = Vec::new();
    for bar in bars {
        if let Some(step) = steps.get(&bar.step) {
            let row = step.address.address.to_string();
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    let end = bars
        .iter()
        .map(|bar| bar.start_seconds + bar.duration_seconds)
        .fold(1.0_f64, f64::max);
    let (label_width, chart_width, row_height, top) = (190.0, 900.0, 24.0, 56.0);
    let scale = chart_width / end;
    let height = top + row_height * rows.len() as f64 + 50.0;
    let width = label_width + chart_width + 90.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="40" fill="#555">critical path outlined in red; total {}</text>"##,
        duration(end.round() as u64)
    );
    // Grid: about ten ticks, on whole minutes when the plan is long enough.
    let tick = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]
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
            r##"<line x1="{x:.1}" y1="{top:.0}" x2="{x:.1}" y2="{:.0}" stroke="#e0e0e0"/><text x="{x:.1}" y="{:.0}" fill="#555" text-anchor="middle">{}</text>"##,
            height - 40.0,
            height - 25.0,
            duration(at as u64)
        );
        at += tick;
    }
    for (index, row) in rows.iter().enumerate() {
        let y = top + row_height * index as f64;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + 16.0,
            escape(row)
        );
    }
    // Where each row's bars start, so that a label goes only where it has room.
    let row_of = |bar: &Bar| {
        steps.get(&bar.step).and_then(|step| {
            rows.iter()
                .position(|row| *row == step.address.address.to_string())
        })
    };
    let mut starts_by_row: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for bar in bars {
        if let Some(row) = row_of(bar) {
            starts_by_row
                .entry(row)
                .or_default()
                .push(label_width + bar.start_seconds * scale);
        }
    }
    for bar in bars {
        let (Some(step), Some(row)) = (steps.get(&bar.step), row_of(bar)) else {
            continue;
        };
        let y = top + row_height * row as f64 + 3.0;
        let x = label_width + bar.start_seconds * scale;
        let w = (bar.duration_seconds * scale).max(2.0);
        let stroke = if critical.contains(&bar.step) {
            r##" stroke="#d50000" stroke-width="2""##
        } else {
            ""
        };
        let opacity = match bar.outcome.as_deref() {
            Some("skipped" | "not started") => "0.25",
            _ => "0.9",
        };
        let mut tooltip = format!(
            "{} {}: starts at {}, takes {}",
            step.action,
            step.address,
            duration(bar.start_seconds as u64),
            duration(bar.duration_seconds.round() as u64)
        );
        if let Some(outcome) = &bar.outcome {
            tooltip.push_str(&format!(" ({outcome})"));
        }
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.0}" rx="3" fill="{}" fill-opacity="{opacity}"{stroke}><title>{}</title></rect>"#,
            row_height - 6.0,
            color(step.action),
            escape(&tooltip)
        );
        let label = match &step.address.generation {
            Some(generation) => format!("{} g{generation}", step.action),
            None => step.action.to_string(),
        };
        let label_room = label.len() as f64 * 6.0 + 6.0;
        let next = starts_by_row
            .get(&row)
            .into_iter()
            .flatten()
            .copied()
            .filter(|start| *start > x + 0.5)
            .fold(f64::INFINITY, f64::min);
        if w >= label_room {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="white">{}</text>"#,
                x + 4.0,
                y + 12.0,
                escape(&label)
            );
        } else if next - (x + w) >= label_room {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                x + w + 3.0,
                y + 12.0,
                escape(&label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
