//! Renders an apply's events: a live view on a terminal (a status line with the time to
//! recovery, one line per running step against its estimate), plain timestamped lines
//! elsewhere (CI logs, pipes), or JSON lines for automation (`ferry apply --json`). The CLI
//! plugs [`Progress::for_stderr`] or [`json_line`] into `ferry_ops::Deployment::apply`.
//!
//! Resume tokens (an ARM operation's URL, a DNS wait's deadline) are the journal's: they reach
//! a view only with `--verbose`, and JSON lines always carry them.

pub mod forecast;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Plan, StepId};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use ferry_apply::{Event, EventKind};

pub use forecast::{Forecast, Moment, Outlook, PlanFacts};

/// The layout of [`json_line`]'s objects.
pub const EVENT_FORMAT_VERSION: &str = "1";

/// `00:01:05`: elapsed time as hours, minutes and seconds.
pub fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `1m 5s`: a duration to the second, as people read it; tenths under ten seconds (`2.4s`),
/// where a simulated world at a small time scale runs its steps.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(10) && duration.subsec_millis() >= 100 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// What an event says, without its time; `None` for events not worth a line. Resume tokens
/// only when `verbose`.
pub fn describe(kind: &EventKind, verbose: bool) -> Option<String> {
    Some(match kind {
        EventKind::ApplyStarted {
            steps,
            already_done,
            ..
        } => match already_done {
            0 => format!("apply started: {steps} steps"),
            done => format!("apply resumed: {steps} steps, {done} already done"),
        },
        EventKind::StepAlreadyDone { step } => format!("{step}: already done"),
        EventKind::StepStarted {
            step,
            resume_token: None,
        } => format!("{step}: started"),
        EventKind::StepStarted {
            step,
            resume_token: Some(token),
        } if verbose => format!("{step}: resumed from what an earlier apply recorded: {token}"),
        EventKind::StepStarted {
            step,
            resume_token: Some(_),
        } => format!("{step}: resumed from what an earlier apply recorded"),
        EventKind::StepProgress { step, line } => format!("{step}: {line}"),
        // A resume token is its provider's own: an ARM operation to poll, a DNS record's wait
        // for its old TTL, ...; these two lines name it without saying which.
        EventKind::StepResumeTokenRecorded { step, token } if verbose => {
            format!("{step}: recorded to resume from: {token}")
        }
        EventKind::StepResumeTokenRecorded { .. } => return None,
        EventKind::StepRetrying {
            step,
            attempt,
            delay,
            error,
        } => format!(
            "{step}: attempt {attempt} failed ({}), retrying in {}",
            brief(error, verbose),
            seconds(*delay)
        ),
        EventKind::StepSucceeded { step, took } => format!("{step}: done in {}", seconds(*took)),
        EventKind::StepFailed { step, error } => {
            format!("{step}: failed: {}", brief(error, verbose))
        }
        EventKind::StepSkipped { step, because } => {
            format!("{step}: skipped, because {because} failed")
        }
        EventKind::StepInterrupted { step } => format!("{step}: interrupted"),
        EventKind::Stopping { hard: false } => {
            "stopping: no new step starts, running steps finish (press Ctrl-C again to abort them)"
                .to_owned()
        }
        EventKind::Stopping { hard: true } => "aborting running steps".to_owned(),
        EventKind::StorageFailed { error } => format!("stopping: {error}"),
        EventKind::ApplyFinished { counts } => format!("apply finished: {}", counts.describe()),
    })
}

/// What every view follows: the plan's facts once known, and where each step is.
#[derive(Debug)]
pub struct Tracker {
    forecast: Mutex<Option<Forecast>>,
    verbose: bool,
    /// Plain lines end with the outlook; the live view has its status line for it.
    outlook_in_lines: bool,
    /// The share of its estimate each step takes: a simulated world's time scale, else 1.
    scale: f64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Tracker {
    pub fn new(verbose: bool) -> Self {
        Self {
            forecast: Mutex::new(None),
            verbose,
            outlook_in_lines: true,
            scale: 1.0,
        }
    }

    /// Estimates scaled to a simulated world's `--world-time-scale`.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    fn without_outlook_in_lines(mut self) -> Self {
        self.outlook_in_lines = false;
        self
    }

    /// The plan being applied: its estimates, critical path and recovery moment.
    pub fn set_plan(&self, plan: &Plan) {
        *self.forecast.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Forecast::new(PlanFacts::scaled(plan, self.scale)));
    }

    /// The plain lines for one event, the forecast updated first: the event's own line with
    /// its estimate and the outlook after it, and the moment the service came back, when this
    /// event brought it.
    pub fn lines(&self, event: &Event) -> Vec<String> {
        let mut forecast = self.forecast.lock().unwrap_or_else(|p| p.into_inner());
        let recovered = forecast
            .as_mut()
            .and_then(|forecast| follow(forecast, event));
        let Some(text) = describe(&event.kind, self.verbose) else {
            return Vec::new();
        };
        let time = clock(event.elapsed);
        let mut lines = vec![format!(
            "[{time}] {text}{}",
            forecast
                .as_ref()
                .map(|forecast| annotation(forecast, event, self.outlook_in_lines))
                .unwrap_or_default()
        )];
        if let (Some(at), Some(forecast)) = (recovered, forecast.as_ref()) {
            lines.push(format!("[{time}] {}", recovery_line(forecast, at)));
        }
        lines
    }

    /// The status line of the live view: steps ended, time to recovery, time to the end.
    pub fn status(&self, now: Duration) -> Option<String> {
        let forecast = self.forecast.lock().unwrap_or_else(|p| p.into_inner());
        forecast.as_ref().map(|forecast| status_line(forecast, now))
    }

    /// What the live view shows beside a running step: its estimate, and a star on the
    /// critical path.
    fn step_label(&self, step: &StepId) -> String {
        let forecast = self.forecast.lock().unwrap_or_else(|p| p.into_inner());
        let Some(facts) = forecast.as_ref().map(Forecast::facts) else {
            return String::new();
        };
        let estimate = facts
            .estimate(step)
            .map(|estimate| format!("of ~{}", seconds(estimate)))
            .unwrap_or_default();
        let critical = if facts.is_critical(step) { " ★" } else { "" };
        format!("{estimate}{critical}")
    }
}

/// Updates the forecast with an event; the moment the service came back, when it did now.
fn follow(forecast: &mut Forecast, event: &Event) -> Option<Duration> {
    match &event.kind {
        EventKind::StepStarted { step, .. } => {
            forecast.started(step, event.elapsed);
            None
        }
        EventKind::StepAlreadyDone { step } | EventKind::StepSucceeded { step, .. } => {
            forecast.ended(step, event.elapsed, true)
        }
        EventKind::StepFailed { step, .. }
        | EventKind::StepSkipped { step, .. }
        | EventKind::StepInterrupted { step } => {
            forecast.ended(step, event.elapsed, false);
            None
        }
        _ => None,
    }
}

/// The plan's figures after an event's own text: `, estimated 1m 30s` when a step starts or
/// ends, and the outlook after each ending.
fn annotation(forecast: &Forecast, event: &Event, with_outlook: bool) -> String {
    let facts = forecast.facts();
    match &event.kind {
        EventKind::ApplyStarted { .. } => match facts.estimated_recovery {
            Some(recovery) => format!(
                "; estimated {}, the service back after {}",
                seconds(facts.estimated_total),
                seconds(recovery)
            ),
            None => format!("; estimated {}", seconds(facts.estimated_total)),
        },
        EventKind::StepStarted { step, .. } => {
            let mut text = facts
                .estimate(step)
                .map(|estimate| format!(", estimated {}", seconds(estimate)))
                .unwrap_or_default();
            if facts.is_critical(step) {
                text.push_str(", on the critical path");
            }
            text
        }
        EventKind::StepSucceeded { step, .. } => {
            let mut text = facts
                .estimate(step)
                .map(|estimate| format!(", estimated {}", seconds(estimate)))
                .unwrap_or_default();
            if with_outlook {
                text.push_str("; ");
                text.push_str(&outlook_text(forecast, event.elapsed));
            }
            text
        }
        _ => String::new(),
    }
}

/// `3 of 34 ended, the service back in ~33m 10s, all done in ~41m`.
fn outlook_text(forecast: &Forecast, now: Duration) -> String {
    let outlook = forecast.outlook(now);
    let mut text = format!("{} of {} ended", outlook.ended, outlook.total);
    match outlook.recovery {
        Some(Moment::Expected(at)) => text.push_str(&format!(
            ", the service back in ~{}",
            seconds(at.saturating_sub(now))
        )),
        Some(Moment::Reached(at)) => {
            text.push_str(&format!(", the service back since {}", clock(at)))
        }
        None => {}
    }
    if outlook.ended < outlook.total {
        text.push_str(&format!(
            ", all done in ~{}",
            seconds(outlook.finish.saturating_sub(now))
        ));
    }
    text
}

/// The live view's first line: `12/34 ended · 6m 10s · the service back in ~33m (plan 39m 29s)`.
fn status_line(forecast: &Forecast, now: Duration) -> String {
    let outlook = forecast.outlook(now);
    let facts = forecast.facts();
    let mut line = format!(
        "{}/{} ended · {} elapsed",
        outlook.ended,
        outlook.total,
        seconds(now)
    );
    match (outlook.recovery, facts.estimated_recovery) {
        (Some(Moment::Expected(at)), Some(planned)) => line.push_str(&format!(
            " · the service back in ~{} (at ~{}, planned {})",
            seconds(at.saturating_sub(now)),
            seconds(at),
            seconds(planned)
        )),
        (Some(Moment::Reached(at)), Some(planned)) => line.push_str(&format!(
            " · the service back after {} (planned {})",
            seconds(at),
            seconds(planned)
        )),
        (None, Some(_)) => line.push_str(" · recovery waits on a failed step"),
        _ => {}
    }
    if outlook.ended < outlook.total {
        line.push_str(&format!(
            " · all done in ~{}",
            seconds(outlook.finish.saturating_sub(now))
        ));
    }
    line
}

/// Said once, when the last step before retirement ends well.
fn recovery_line(forecast: &Forecast, at: Duration) -> String {
    let planned = forecast
        .facts()
        .estimated_recovery
        .map(|planned| format!(", estimated {}", seconds(planned)))
        .unwrap_or_default();
    let rest = if forecast.facts().retires() {
        ": every step but the old generation's retirement is done"
    } else {
        ""
    };
    format!("the service is back after {}{planned}{rest}", seconds(at))
}

/// Writes plain lines to any writer; for logs, pipes and tests.
#[derive(Debug)]
pub struct PlainProgress<W> {
    out: Mutex<W>,
    tracker: Tracker,
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        Self::with_tracker(out, Tracker::default())
    }

    pub fn with_tracker(out: W, tracker: Tracker) -> Self {
        Self {
            out: Mutex::new(out),
            tracker,
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn handle(&self, event: &Event) {
        let lines = self.tracker.lines(event);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines {
            // A progress line that cannot be written is not worth stopping an apply for.
            let _ = writeln!(out, "{line}");
        }
    }

    /// The writer, with every line written so far.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live view on a terminal: a status line, one spinner per running step with its elapsed
/// time against its estimate, and a line printed above them for every step that ends.
#[derive(Debug)]
pub struct TerminalProgress {
    view: MultiProgress,
    status: ProgressBar,
    spinners: Mutex<HashMap<StepId, ProgressBar>>,
    tracker: Tracker,
    /// The latest event's time: the status line counts from it between events.
    last: Mutex<(Duration, std::time::Instant)>,
}

impl TerminalProgress {
    pub fn new(target: ProgressDrawTarget, tracker: Tracker) -> Self {
        let view = MultiProgress::with_draw_target(target);
        let status = view.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Self {
            view,
            status,
            spinners: Mutex::new(HashMap::new()),
            tracker,
            last: Mutex::new((Duration::ZERO, std::time::Instant::now())),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn handle(&self, event: &Event) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            (event.elapsed, std::time::Instant::now());
        let lines = self.tracker.lines(event);
        let mut spinners = self.spinners.lock().unwrap_or_else(|p| p.into_inner());
        match &event.kind {
            EventKind::StepStarted { step, .. } => {
                let spinner = self.view.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {elapsed:>6} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_prefix(step.to_string());
                spinner.set_message(self.tracker.step_label(step));
                spinner.enable_steady_tick(Duration::from_millis(120));
                spinners.insert(step.clone(), spinner);
            }
            EventKind::StepProgress { step, line } => {
                if let Some(spinner) = spinners.get(step) {
                    spinner.set_message(format!("{} · {line}", self.tracker.step_label(step)));
                }
            }
            EventKind::StepRetrying { step, .. } => {
                if let (Some(spinner), Some(text)) =
                    (spinners.get(step), describe(&event.kind, false))
                {
                    spinner.set_message(text);
                }
            }
            EventKind::StepSucceeded { step, .. }
            | EventKind::StepFailed { step, .. }
            | EventKind::StepInterrupted { step } => {
                if let Some(spinner) = spinners.remove(step) {
                    spinner.finish_and_clear();
                    self.view.remove(&spinner);
                }
                self.print(&lines);
            }
            // A resume token is for the journal; with --verbose it is printed above.
            EventKind::StepResumeTokenRecorded { .. } => self.print(&lines),
            _ => self.print(&lines),
        }
        drop(spinners);
        self.refresh();
    }

    /// Redraws the status line at the time now: called on every event and once a second.
    pub fn refresh(&self) {
        let (at, seen) = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = self.tracker.status(at + seen.elapsed()) {
            self.status.set_message(status);
        }
    }

    fn print(&self, lines: &[String]) {
        for line in lines {
            let _ = self.view.println(line);
        }
    }
}

/// The renderer for stderr: live on a terminal, plain lines otherwise; `set_plan` it with the
/// plan before the apply starts.
#[allow(missing_debug_implementations)] // holds a terminal view and a thread handle
pub struct Progress {
    view: View,
}

enum View {
    Terminal(Arc<TerminalProgress>),
    Plain(PlainProgress<std::io::Stderr>),
}

impl Progress {
    /// `time_scale`: a simulated world's, for the forecast to follow the real clock; 1 else.
    pub fn for_stderr(verbose: bool, time_scale: f64) -> Self {
        let tracker = Tracker::new(verbose).time_scale(time_scale);
        if std::io::stderr().is_terminal() {
            let view = Arc::new(TerminalProgress::new(
                ProgressDrawTarget::stderr(),
                tracker.without_outlook_in_lines(),
            ));
            // The status line counts down between events; the thread ends with the view.
            let weak = Arc::downgrade(&view);
            std::thread::spawn(move || {
                while let Some(view) = weak.upgrade() {
                    view.refresh();
                    drop(view);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            Self {
                view: View::Terminal(view),
            }
        } else {
            Self {
                view: View::Plain(PlainProgress::with_tracker(std::io::stderr(), tracker)),
            }
        }
    }

    pub fn set_plan(&self, plan: &Plan) {
        match &self.view {
            View::Terminal(view) => {
                view.tracker().set_plan(plan);
                view.refresh();
            }
            View::Plain(view) => view.tracker().set_plan(plan),
        }
    }

    pub fn handle(&self, event: &Event) {
        match &self.view {
            View::Terminal(view) => view.handle(event),
            View::Plain(view) => view.handle(event),
        }
    }
}

/// The plan about to be applied, as the first JSON line of `ferry apply --json`: the plan
/// itself as `ferry plan --json` prints it.
pub fn plan_line(plan: &Plan) -> String {
    json!({
        "event": "planned",
        "format_version": EVENT_FORMAT_VERSION,
        "elapsed_seconds": 0.0,
        "plan": plan,
    })
    .to_string()
}

/// An error as a progress line shows it: without the parentheses that name the request
/// behind it (`(PUT https://management.azure.com/... answered 409, x-ms-request-id ...)`),
/// which the journal, the final report and `--verbose` keep. The provider's code, message and
/// advice stay.
fn brief(error: &str, verbose: bool) -> String {
    if verbose || !error.contains("://") {
        return error.to_owned();
    }
    let mut kept = String::with_capacity(error.len());
    let mut group = String::new();
    let mut depth = 0usize;
    for character in error.chars() {
        match (character, depth) {
            ('(', _) => {
                depth += 1;
                group.push(character);
            }
            (')', 1) => {
                group.push(character);
                depth = 0;
                if !group.contains("://") {
                    kept.push_str(&group);
                } else if kept.ends_with(' ') {
                    kept.pop();
                }
                group.clear();
            }
            (')', d) if d > 1 => {
                depth -= 1;
                group.push(character);
            }
            (_, 0) => kept.push(character),
            _ => group.push(character),
        }
    }
    kept.push_str(&group);
    kept
}

/// One event as a JSON object on one line (`ferry apply --json`), versioned by
/// [`EVENT_FORMAT_VERSION`] and documented in docs/spec-reference.md.
pub fn json_line(event: &Event) -> String {
    let mut object = match &event.kind {
        EventKind::ApplyStarted {
            apply_id,
            steps,
            already_done,
        } => {
            json!({"event": "apply_started", "apply_id": apply_id, "steps": steps, "already_done": already_done})
        }
        EventKind::StepAlreadyDone { step } => json!({"event": "step_already_done", "step": step}),
        EventKind::StepStarted { step, resume_token } => {
            json!({"event": "step_started", "step": step, "resume_token": resume_token})
        }
        EventKind::StepProgress { step, line } => {
            json!({"event": "step_progress", "step": step, "line": line})
        }
        EventKind::StepResumeTokenRecorded { step, token } => {
            json!({"event": "step_resume_token_recorded", "step": step, "resume_token": token})
        }
        EventKind::StepRetrying {
            step,
            attempt,
            delay,
            error,
        } => {
            json!({"event": "step_retrying", "step": step, "attempt": attempt, "delay_seconds": delay.as_secs_f64(), "error": error})
        }
        EventKind::StepSucceeded { step, took } => {
            json!({"event": "step_succeeded", "step": step, "took_seconds": took.as_secs_f64()})
        }
        EventKind::StepFailed { step, error } => {
            json!({"event": "step_failed", "step": step, "error": error})
        }
        EventKind::StepSkipped { step, because } => {
            json!({"event": "step_skipped", "step": step, "because": because})
        }
        EventKind::StepInterrupted { step } => json!({"event": "step_interrupted", "step": step}),
        EventKind::Stopping { hard } => json!({"event": "stopping", "hard": hard}),
        EventKind::StorageFailed { error } => json!({"event": "storage_failed", "error": error}),
        EventKind::ApplyFinished { counts } => json!({"event": "apply_finished", "counts": {
            "done": counts.done,
            "already_done": counts.already_done,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "not_started": counts.not_started,
            "interrupted": counts.interrupted,
            "not_saved": counts.not_saved,
        }}),
    };
    object["format_version"] = json!(EVENT_FORMAT_VERSION);
    object["elapsed_seconds"] = json!(event.elapsed.as_secs_f64());
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_apply::Counts;

    #[test]
    fn the_terminal_view_follows_a_step_from_start_to_end() {
        let view = TerminalProgress::new(ProgressDrawTarget::hidden(), Tracker::default());
        let step = StepId("vm.nfs@g2:create".to_owned());
        let events = [
            EventKind::StepStarted {
                step: step.clone(),
                resume_token: None,
            },
            EventKind::StepProgress {
                step: step.clone(),
                line: "provisioning".to_owned(),
            },
            EventKind::StepSucceeded {
                step: step.clone(),
                took: Duration::from_secs(65),
            },
            EventKind::ApplyFinished {
                counts: Counts {
                    done: 1,
                    ..Counts::default()
                },
            },
        ];
        for kind in events {
            view.handle(&Event {
                elapsed: Duration::from_secs(65),
                kind,
            });
        }
        assert!(view.spinners.lock().unwrap().is_empty());
        assert_eq!(clock(Duration::from_secs(3725)), "01:02:05");
    }

    #[test]
    fn a_failure_line_says_the_code_and_advice_and_leaves_the_request_to_the_journal() {
        let error = "vm.nfs@g2: cannot create: QuotaExceeded: Operation could not be completed as it results in exceeding approved standardESv5Family Cores quota (PUT https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/nfs?api-version=2025-04-01 answered 409, x-ms-request-id 1f2e); a quota stops it, and applying again will not help until it changes: request a higher quota (Azure portal, Quotas)";
        assert_eq!(
            brief(error, false),
            "vm.nfs@g2: cannot create: QuotaExceeded: Operation could not be completed as it results in exceeding approved standardESv5Family Cores quota; a quota stops it, and applying again will not help until it changes: request a higher quota (Azure portal, Quotas)"
        );
        assert_eq!(brief(error, true), error);
        assert_eq!(
            brief("pool home (on vm.nfs@g1) is busy", false),
            "pool home (on vm.nfs@g1) is busy"
        );
    }

    #[test]
    fn what_a_step_records_and_resumes_from_is_named_the_same_for_every_provider() {
        let dns = StepId("dns_record.hub:update".to_owned());
        let token = r#"{"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}"#;
        let vm = StepId("vm.nfs@g1:fence".to_owned());
        let operation = r#"{"method":"POST","resource_url":"https://management.azure.com/x/deallocate","status_url":"https://management.azure.com/op"}"#;
        let lines: Vec<String> = [(dns, token), (vm, operation)]
            .into_iter()
            .flat_map(|(step, recorded)| {
                [
                    EventKind::StepResumeTokenRecorded {
                        step: step.clone(),
                        token: recorded.to_owned(),
                    },
                    EventKind::StepStarted {
                        step,
                        resume_token: Some(recorded.to_owned()),
                    },
                ]
            })
            .filter_map(|kind| describe(&kind, true))
            .collect();
        insta::assert_snapshot!(lines.join("\n"), @r#"
        dns_record.hub:update: recorded to resume from: {"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}
        dns_record.hub:update: resumed from what an earlier apply recorded: {"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}
        vm.nfs@g1:fence: recorded to resume from: {"method":"POST","resource_url":"https://management.azure.com/x/deallocate","status_url":"https://management.azure.com/op"}
        vm.nfs@g1:fence: resumed from what an earlier apply recorded: {"method":"POST","resource_url":"https://management.azure.com/x/deallocate","status_url":"https://management.azure.com/op"}
        "#);
    }
}
