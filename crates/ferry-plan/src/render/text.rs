//! The human plan, in the spirit of `terraform plan`: one block per step in execution order,
//! attribute diffs, a summary line and the estimated time to recovery with its critical path.

use std::borrow::Cow;
use std::fmt::Write;

use ferry_core::address::Decimal;
use ferry_core::value::{self, Expression};
use ferry_core::{Action, ChangesIter, Plan, StepId, Value};

use crate::outcome::{Severity, Verdict};
use rustc_hash::{FxHashMap, FxHashSet};
use similar::{ChangeTag, TextDiff};

/// How to render text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// ANSI colours, for a terminal.
    pub color: bool,
}

struct Paint {
    color: bool,
}

impl Paint {
    /// Borrowed when there is no colour: a large plan paints several pieces per step.
    fn paint<'text>(&self, code: &str, text: &'text str) -> Cow<'text, str> {
        if self.color {
            Cow::Owned(format!("\x1b[{code}m{text}\x1b[0m"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// Writes `text` painted onto `out`, as [`Paint::paint`] would show it.
    fn paint_onto(&self, out: &mut String, code: &str, text: &str) {
        self.start(out, code);
        out.push_str(text);
        self.end(out);
    }

    /// Opens a painted stretch of `out`, for text written piece by piece; [`Paint::end`]
    /// closes it.
    fn start(&self, out: &mut String, code: &str) {
        if self.color {
            out.push_str("\x1b[");
            out.push_str(code);
            out.push('m');
        }
    }

    fn end(&self, out: &mut String) {
        if self.color {
            out.push_str("\x1b[0m");
        }
    }
}

// The steps and their changes, millions of lines in a large plan, are written piece by piece
// onto the text rather than through `write!`: its formatting machinery (an argument list and a
// `pad` per piece) cost more than the text itself (a third of a 10,000-resource `ferry plan`'s
// rendering).

/// Writes `number`, right-aligned in `width` characters, onto `out`.
fn push_number(out: &mut String, number: u64, width: usize) {
    let digits = Decimal::of(number);
    let digits = digits.as_str();
    push_spaces(out, width.saturating_sub(digits.len()));
    out.push_str(digits);
}

fn push_spaces(out: &mut String, count: usize) {
    out.extend(std::iter::repeat_n(' ', count));
}

/// Writes `text` left-aligned in `width` characters (as `{:width$}` does) onto `out`.
fn push_padded(out: &mut String, text: &str, width: usize) {
    out.push_str(text);
    push_spaces(out, width.saturating_sub(text.chars().count()));
}

fn style(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("+", "32"),
        Action::Update => ("~", "33"),
        Action::Replace => ("-/+", "31"),
        Action::Delete | Action::Retire => ("-", "31"),
        Action::Fence => ("!", "31;1"),
        Action::Detach
        | Action::Move
        | Action::Attach
        | Action::Import
        | Action::Export
        | Action::Promote => (">", "36"),
        Action::Run => ("*", "35"),
        Action::Wait => ("?", "34"),
    }
}

/// A duration as people read it: `45s`, `1m 30s`, `8m`, `1h 05m`.
pub fn duration(seconds: u64) -> String {
    let mut out = String::new();
    push_duration(&mut out, seconds);
    out
}

/// Writes [`duration`] onto `out`.
fn push_duration(out: &mut String, seconds: u64) {
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let (first, first_unit, second, second_unit) = match (hours, minutes, seconds) {
        (0, 0, seconds) => (seconds, "s", None, ""),
        (0, minutes, 0) => (minutes, "m", None, ""),
        (0, minutes, seconds) => (minutes, "m", Some(seconds), "s"),
        (hours, minutes, _) => (hours, "h", Some(minutes), "m"),
    };
    push_number(out, first, 0);
    out.push_str(first_unit);
    if let Some(second) = second {
        out.push(' ');
        if second < 10 {
            out.push('0');
        }
        push_number(out, second, 0);
        out.push_str(second_unit);
    }
}

/// Renders a plan for people.
pub fn text(plan: &Plan, options: &TextOptions) -> String {
    let mut whole = String::new();
    write_text(plan, options, &mut |piece| whole.push_str(piece));
    whole
}

/// About how much of a plan's text [`write_text`] holds before it hands it on.
const PIECE_BYTES: usize = 64 * 1024;

/// The same text as [`text`], handed to `sink` in pieces as it is rendered: a large plan's
/// text (30 MB at 100,000 resources) is then never held whole beside the plan, which a
/// command's peak memory would pay for.
pub fn write_text(plan: &Plan, options: &TextOptions, sink: &mut dyn FnMut(&str)) {
    let paint = Paint {
        color: options.color,
    };
    let mut out = String::new();
    if let Some(failover) = &plan.failover {
        let _ = writeln!(
            out,
            "{} from generation {} to generation {}",
            paint.paint("1;31", "Failover"),
            failover.from_generation,
            failover.to_generation
        );
        let _ = writeln!(out, "  because {}", failover.trigger);
        out.push('\n');
    }
    for note in &plan.notes {
        let _ = writeln!(out, "{} {note}", paint.paint("33", "note:"));
    }
    if !plan.notes.is_empty() {
        out.push('\n');
    }
    render_readings(&mut out, plan, &paint);
    let verdict = Verdict::of(plan);
    if plan.steps.is_empty() {
        if let Some(failover) = &plan.failover {
            let _ = writeln!(
                out,
                "No steps left: the world is already at generation {}; applying records the failover as finished.",
                failover.to_generation
            );
        }
        render_kept(&mut out, plan, &paint);
        render_standby(&mut out, plan, &paint);
        render_readiness(&mut out, plan, &paint);
        let headline = verdict.headline();
        if !headline.is_empty()
            && (plan.failover.is_none() || verdict.severity() != Severity::Changes)
        {
            let _ = writeln!(out, "{}", paint_headline(&paint, &verdict, &headline));
        }
        sink(&out);
        return;
    }

    let numbers: FxHashMap<&StepId, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| (&step.id, index + 1))
        .collect();
    let width = plan.steps.len().to_string().len();
    let critical: FxHashSet<&StepId> = plan.critical_path.iter().collect();
    let indent = " ".repeat(width + 4);
    let mut after = String::new();
    for (index, step) in plan.steps.iter().enumerate() {
        let (symbol, code) = style(step.action);
        // `{number:>width$}. {symbol} {action} {address}  ~{duration}{marker}`
        push_number(&mut out, index as u64 + 1, width);
        out.push_str(". ");
        paint.start(&mut out, code);
        out.push_str(symbol);
        out.push(' ');
        out.push_str(step.action.as_str());
        out.push(' ');
        let _ = write!(out, "{}", step.address);
        paint.end(&mut out);
        out.push_str("  ~");
        push_duration(&mut out, step.estimate_seconds);
        let marker = if critical.contains(&step.id) {
            "  (critical path)"
        } else {
            ""
        };
        paint.paint_onto(&mut out, "2", marker);
        out.push('\n');
        out.push_str(&indent);
        out.push_str(&step.reason);
        out.push('\n');
        if let Some(warning) = &step.warning {
            let _ = writeln!(
                out,
                "{indent}{}",
                paint.paint("31;1", &format!("warning: {warning}"))
            );
        }
        // `after 3, 7, and every step but the retirements`
        after.clear();
        after.push_str("after ");
        let mut listed = false;
        for id in &step.after {
            if listed {
                after.push_str(", ");
            }
            listed = true;
            match numbers.get(id) {
                Some(number) => push_number(&mut after, *number as u64, 0),
                None => after.push_str(&id.0),
            }
        }
        // Retirements go last by the plan's rule, which their `after` does not spell out.
        if step.action.goes_last() {
            after.push_str(if listed {
                ", and every step but the retirements"
            } else {
                "every step but the retirements"
            });
            listed = true;
        }
        if listed {
            out.push_str(&indent);
            paint.paint_onto(&mut out, "2", &after);
            out.push('\n');
        }
        render_changes(&mut out, &indent, step.changes(), &paint);
        out.push('\n');
        // Only between steps: what follows the steps always writes a line before it reads
        // `out` back (whether a blank line separates the next section).
        if out.len() >= PIECE_BYTES {
            sink(&out);
            out.clear();
        }
    }

    let counts: Vec<String> = Action::ALL
        .iter()
        .filter_map(|action| {
            plan.summary
                .0
                .get(action)
                .map(|count| format!("{count} to {action}"))
        })
        .collect();
    let total = plan.summary.total();
    let _ = writeln!(
        out,
        "{} {} ({total} step{}).",
        paint.paint("1", "Plan:"),
        counts.join(", "),
        if total == 1 { "" } else { "s" }
    );
    // When a cache ends the recovery, the reader sees which and for how long.
    let back = match &plan.recovery_cached {
        Some(cached) => format!(
            "the service is back once resolvers' cached answers for {} expire, {} after its update",
            cached.address,
            duration(cached.seconds)
        ),
        None => "the service is back".to_owned(),
    };
    match plan.recovery_seconds {
        Some(recovery) if plan.steps.iter().any(|step| step.action == Action::Retire) => {
            let _ = writeln!(
                out,
                "{} {} ({back}); {} until the old generation is retired.",
                paint.paint("1", "Estimated time to recovery:"),
                duration(recovery),
                duration(plan.estimated_seconds)
            );
        }
        Some(recovery) => {
            let _ = writeln!(
                out,
                "{} {} ({back}; the old generation is kept).",
                paint.paint("1", "Estimated time to recovery:"),
                duration(recovery),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "{} {}.",
                paint.paint("1", "Estimated duration:"),
                duration(plan.estimated_seconds)
            );
        }
    }
    if let Some(loss) = &plan.data_loss {
        let _ = writeln!(
            out,
            "{} {}.",
            paint.paint("1", "Data lost:"),
            describe_data_loss(loss)
        );
    }
    let _ = writeln!(out, "Critical path:");
    let by_id: FxHashMap<&StepId, &ferry_core::Step> =
        plan.steps.iter().map(|step| (&step.id, step)).collect();
    let path: Vec<String> = plan
        .critical_path
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|step| {
            format!(
                "{} {} ({})",
                step.action,
                step.address,
                duration(step.estimate_seconds)
            )
        })
        .collect();
    for (index, hop) in path.iter().enumerate() {
        let arrow = if index == 0 { "   " } else { "-> " };
        let _ = writeln!(out, "  {arrow}{hop}");
    }
    render_kept(&mut out, plan, &paint);
    render_standby(&mut out, plan, &paint);
    render_readiness(&mut out, plan, &paint);
    let headline = verdict.headline();
    if !headline.is_empty() {
        let _ = writeln!(out, "{}", paint_headline(&paint, &verdict, &headline));
    }
    sink(&out);
}

/// The old generations the plan keeps: when each goes, and what it keeps running.
fn render_kept(out: &mut String, plan: &Plan, paint: &Paint) {
    for kept in &plan.kept {
        let count = kept.instances.len();
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} generation {} ({count} resource{}), {}.",
            paint.paint("1;36", "Kept:"),
            kept.generation,
            if count == 1 { "" } else { "s" },
            kept.until
        );
        render_upkeep(out, &kept.instances, "still running and billed:");
        out.push('\n');
    }
}

/// The warm standby the plan builds or keeps ready, and what keeping it costs.
fn render_standby(out: &mut String, plan: &Plan, paint: &Paint) {
    let Some(standby) = &plan.standby else {
        return;
    };
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    let count = standby.instances.len();
    let _ = writeln!(
        out,
        "{} generation {} ({count} resource{}), built ahead and kept ready for a failover.",
        paint.paint("1;36", "Standby:"),
        standby.generation,
        if count == 1 { "" } else { "s" },
    );
    render_upkeep(
        out,
        &standby.instances,
        "running and billed while it waits:",
    );
    out.push('\n');
}

/// What a generation's instances keep running and billing, then those that cost nothing.
fn render_upkeep(out: &mut String, instances: &[ferry_core::KeptInstance], heading: &str) {
    let costly: Vec<_> = instances
        .iter()
        .filter(|instance| instance.upkeep.is_some())
        .collect();
    if !costly.is_empty() {
        let width = costly
            .iter()
            .map(|instance| instance.address.to_string().len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "  {heading}");
        for instance in &costly {
            let _ = writeln!(
                out,
                "    {:<width$}  {}",
                instance.address.to_string(),
                instance.upkeep.as_deref().unwrap_or_default()
            );
        }
    }
    let free: Vec<String> = instances
        .iter()
        .filter(|instance| instance.upkeep.is_none())
        .map(|instance| instance.address.to_string())
        .collect();
    if !free.is_empty() {
        let _ = writeln!(out, "  costing nothing worth naming: {}", free.join(", "));
    }
}

/// What a failover that promotes a hot standby's replica loses, in words.
fn describe_data_loss(loss: &ferry_core::DataLoss) -> String {
    match (loss.seconds, &loss.replica) {
        (Some(0), _) | (_, None) => "none (the old primary hands its pool over)".to_owned(),
        (Some(seconds), Some(replica)) => format!(
            "up to {} (how far behind {replica} was when read)",
            duration(seconds)
        ),
        (None, Some(replica)) => {
            format!("unknown ({replica} could not say how far behind its primary it is)")
        }
    }
}

/// Failover readiness, when the plan carries it: ready with the failover's estimated time to
/// recovery, or every blocker with its reason and what to do.
fn render_readiness(out: &mut String, plan: &Plan, paint: &Paint) {
    let Some(readiness) = &plan.readiness else {
        return;
    };
    let heading = paint.paint("1", "Failover readiness:");
    let to = readiness.to_generation;
    if readiness.ready {
        let mut recovery = readiness
            .recovery_seconds
            .map(|seconds| format!(", estimated time to recovery {}", duration(seconds)))
            .unwrap_or_default();
        if let Some(loss) = &readiness.data_loss {
            recovery.push_str(&format!(", data lost {}", describe_data_loss(loss)));
        }
        let _ = writeln!(
            out,
            "{heading} {}{recovery} (a failover to generation {to} planned from these readings).",
            paint.paint("32", "ready")
        );
        return;
    }
    let count = readiness.blockers.len();
    let _ = writeln!(
        out,
        "{heading} {}: {count} thing{} would block a failover to generation {to}:",
        paint.paint("1;31", "NOT READY"),
        if count == 1 { "" } else { "s" }
    );
    for blocker in &readiness.blockers {
        let _ = writeln!(out, "  {blocker}");
        if let Some(help) = &blocker.help {
            let _ = writeln!(out, "    help: {help}");
        }
    }
}

/// The unknown readings and the warnings, each under its heading: never hidden behind "No
/// changes".
fn render_readings(out: &mut String, plan: &Plan, paint: &Paint) {
    if !plan.unknown.is_empty() {
        let _ = writeln!(
            out,
            "{} nothing is created, deleted or retired from them, and what relies on them waits:",
            paint.paint("1;33", "Unknown readings:")
        );
        for reading in &plan.unknown {
            let held = if reading.held_back.is_empty() {
                String::new()
            } else {
                let names: Vec<String> =
                    reading.held_back.iter().map(ToString::to_string).collect();
                format!(" (holds back {})", names.join(", "))
            };
            let _ = writeln!(out, "  {}: {}{held}", reading.address, reading.reason);
        }
        out.push('\n');
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(
            out,
            "{} unhealthy, and no step of this plan fixes them:",
            paint.paint("1;33", "Warnings:")
        );
        for warning in &plan.warnings {
            let _ = writeln!(out, "  {}: {}", warning.address, warning.reason);
        }
        out.push('\n');
    }
}

fn paint_headline(paint: &Paint, verdict: &Verdict, headline: &str) -> String {
    match verdict.severity() {
        Severity::Clean | Severity::Changes => headline.to_owned(),
        _ => paint.paint("1;33", headline).into_owned(),
    }
}

/// The widest attribute name the changes of a step are aligned to.
const MAX_ALIGNED_NAME: usize = 60;

fn render_changes(out: &mut String, indent: &str, changes: ChangesIter<'_>, paint: &Paint) {
    // Names are aligned up to a width a reader can follow; beyond it a name takes its own
    // length, which also keeps `format!` from a pad it cannot make (65,535 at most).
    let name_width = changes
        .clone()
        .map(|change| change.path.len())
        .max()
        .unwrap_or(0)
        .min(MAX_ALIGNED_NAME);
    for change in changes {
        let replacement = change
            .forces_replacement
            .map(|why| {
                paint
                    .paint("31", &format!("  # forces replacement: {why}"))
                    .into_owned()
            })
            .unwrap_or_default();
        // `{indent}{sign} {path:name_width$} = `
        let head = |out: &mut String, code: &str, sign: &str| {
            out.push_str(indent);
            paint.paint_onto(out, code, sign);
            out.push(' ');
            push_padded(out, change.path, name_width);
            out.push_str(" = ");
        };
        match (change.before, change.after) {
            (None, Some(after)) => {
                if (after.is_object() || after.is_array()) && show(after).len() > 60 {
                    let _ = writeln!(out, "{indent}{} {}:", paint.paint("32", "+"), change.path);
                    for item in pretty(after).lines() {
                        let _ = writeln!(out, "{indent}    {item}");
                    }
                    continue;
                }
                head(out, "32", "+");
                show_onto(out, after);
                out.push_str(&replacement);
                out.push('\n');
            }
            (Some(before), None) => {
                head(out, "31", "-");
                show_onto(out, before);
                out.push('\n');
            }
            (Some(before), Some(after)) => {
                let (old, new) = (pretty(before), pretty(after));
                if !old.contains('\n') && !new.contains('\n') {
                    head(out, "33", "~");
                    show_onto(out, before);
                    out.push_str(" -> ");
                    show_onto(out, after);
                    out.push_str(&replacement);
                    out.push('\n');
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{indent}{} {}:{replacement}",
                    paint.paint("33", "~"),
                    change.path
                );
                let diff = TextDiff::from_lines(&old, &new);
                for line in diff.iter_all_changes() {
                    let text = line.value().trim_end_matches('\n');
                    let line = match line.tag() {
                        ChangeTag::Delete => paint.paint("31", &format!("- {text}")).into_owned(),
                        ChangeTag::Insert => paint.paint("32", &format!("+ {text}")).into_owned(),
                        ChangeTag::Equal => format!("  {text}"),
                    };
                    let _ = writeln!(out, "{indent}    {line}");
                }
            }
            (None, None) => {}
        }
    }
}

/// A value on one line, TOML-like, with `(known after apply: ...)` where it is not known yet.
fn show(value: &Value) -> String {
    let mut out = String::new();
    show_onto(&mut out, value);
    out
}

/// Writes [`show`] onto `out`.
fn show_onto(out: &mut String, value: &Value) {
    match value {
        // Most strings hold neither an expression nor a secret.
        Value::String(text) if !value::holds_open(text) => push_quoted(out, text),
        // A secret, sealed by the planner: `[redacted env.NAME sha256:…]`.
        Value::String(text) if let Some(shown) = ferry_core::secret::display_sealed(text) => {
            match whole_expression(text) {
                Some(_) => out.push_str(&shown),
                None => push_quoted(out, &shown),
            }
        }
        Value::String(text) => match whole_expression(text) {
            Some(expression) => {
                let _ = write!(out, "(known after apply: {expression})");
            }
            None => push_quoted(out, text),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                show_onto(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("{ ");
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(" = ");
                show_onto(out, item);
            }
            out.push_str(" }");
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Writes `text` as a JSON string (quoted and escaped) onto `out`.
fn push_quoted(out: &mut String, text: &str) {
    let plain = |c: char| c != '"' && c != '\\' && !c.is_control();
    if text.chars().all(plain) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
    }
}

/// The expression a string consists of, when it is one `${...}` and nothing else.
fn whole_expression(text: &str) -> Option<Expression> {
    // Most strings hold no `${`, and parsing one copies it.
    if !value::holds_open(text) {
        return None;
    }
    match value::parse_template(text).ok()?.as_slice() {
        [value::Segment::Expression(expression, _)] => Some(expression.clone()),
        _ => None,
    }
}

/// A value over several lines when it is a list or a table, for line diffs.
fn pretty(value: &Value) -> String {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| format!("{}\n", show(item)))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| format!("{key} = {}\n", show(item)))
            .collect(),
        Value::String(text) if text.contains('\n') => text.clone(),
        other => show(other),
    }
}
