//! Renders an apply's events for people: a live multi-line view on a terminal, plain
//! timestamped lines elsewhere (CI logs, pipes). The CLI plugs [`for_stderr`] into
//! `ferry_apply::apply` (through `ferry_ops::Deployment::apply`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use ferry_core::StepId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use ferry_apply::{Event, EventKind};

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

/// `1m 5s`: a duration to the second, as people read it.
fn seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// What an event says, without its time; `None` for events not worth a line.
pub fn describe(kind: &EventKind) -> Option<String> {
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
        } => format!("{step}: resumed from what an earlier apply recorded: {token}"),
        EventKind::StepProgress { step, line } => format!("{step}: {line}"),
        // A resume token is its provider's own: an ARM operation to poll, a DNS record's wait
        // for its old TTL, ...; these two lines name it without saying which.
        EventKind::StepResumeTokenRecorded { step, token } => {
            format!("{step}: recorded to resume from: {token}")
        }
        EventKind::StepRetrying {
            step,
            attempt,
            delay,
            error,
        } => format!(
            "{step}: attempt {attempt} failed ({error}), retrying in {}",
            seconds(*delay)
        ),
        EventKind::StepSucceeded { step, took } => format!("{step}: done in {}", seconds(*took)),
        EventKind::StepFailed { step, error } => format!("{step}: failed: {error}"),
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

/// One plain line per event: `[00:01:05] vm.nfs@g2:create: done in 1m 5s`.
pub fn plain_line(event: &Event) -> Option<String> {
    describe(&event.kind).map(|text| format!("[{}] {text}", clock(event.elapsed)))
}

/// Writes plain lines to any writer; for logs, pipes and tests.
#[derive(Debug)]
pub struct PlainProgress<W> {
    out: Mutex<W>,
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    pub fn handle(&self, event: &Event) {
        if let Some(line) = plain_line(event) {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            // A progress line that cannot be written is not worth stopping an apply for.
            let _ = writeln!(out, "{line}");
        }
    }

    /// The writer, with every line written so far.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live view on a terminal: one spinner per running step, and a line printed above them for
/// every step that ends.
#[derive(Debug)]
pub struct TerminalProgress {
    view: MultiProgress,
    spinners: Mutex<HashMap<StepId, ProgressBar>>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new(ProgressDrawTarget::stderr())
    }
}

impl TerminalProgress {
    pub fn new(target: ProgressDrawTarget) -> Self {
        Self {
            view: MultiProgress::with_draw_target(target),
            spinners: Mutex::new(HashMap::new()),
        }
    }

    pub fn handle(&self, event: &Event) {
        let mut spinners = self.spinners.lock().unwrap_or_else(|p| p.into_inner());
        match &event.kind {
            EventKind::StepStarted { step, .. } => {
                let spinner = self.view.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_prefix(step.to_string());
                spinner.enable_steady_tick(Duration::from_millis(120));
                spinners.insert(step.clone(), spinner);
            }
            EventKind::StepProgress { step, line } => {
                if let Some(spinner) = spinners.get(step) {
                    spinner.set_message(line.clone());
                }
            }
            EventKind::StepRetrying { step, .. }
            | EventKind::StepResumeTokenRecorded { step, .. } => {
                if let (Some(spinner), Some(text)) = (spinners.get(step), describe(&event.kind)) {
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
                self.print(event);
            }
            _ => self.print(event),
        }
    }

    fn print(&self, event: &Event) {
        if let Some(line) = plain_line(event) {
            let _ = self.view.println(line);
        }
    }
}

/// The renderer the CLI wants: live on a terminal, plain lines otherwise, on stderr.
pub fn for_stderr() -> Box<dyn Fn(&Event) + Send + Sync> {
    if std::io::stderr().is_terminal() {
        let view = TerminalProgress::default();
        Box::new(move |event| view.handle(event))
    } else {
        let plain = PlainProgress::new(std::io::stderr());
        Box::new(move |event| plain.handle(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_apply::Counts;

    #[test]
    fn the_terminal_view_follows_a_step_from_start_to_end() {
        let view = TerminalProgress::new(ProgressDrawTarget::hidden());
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
            .filter_map(|kind| describe(&kind))
            .collect();
        insta::assert_snapshot!(lines.join("\n"), @r#"
        dns_record.hub:update: recorded to resume from: {"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}
        dns_record.hub:update: resumed from what an earlier apply recorded: {"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}
        vm.nfs@g1:fence: recorded to resume from: {"method":"POST","resource_url":"https://management.azure.com/x/deallocate","status_url":"https://management.azure.com/op"}
        vm.nfs@g1:fence: resumed from what an earlier apply recorded: {"method":"POST","resource_url":"https://management.azure.com/x/deallocate","status_url":"https://management.azure.com/op"}
        "#);
    }
}
