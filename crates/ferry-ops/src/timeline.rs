//! What happened, from the journal: every apply that took part in one piece of work (a
//! failover interrupted by a kill or a Ctrl-C and resumed, perhaps more than once), as
//! timeline bars with each apply's start marked.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ferry_core::StepId;
use ferry_plan::render::{Bar, Marker};
use ferry_state::{JournalRecord, StepResult};

/// The bars and markers of [`applied_timeline`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedTimeline {
    pub bars: Vec<Bar>,
    pub markers: Vec<Marker>,
}

/// The applies that ended with `last_apply`: it, and before it every apply that did not
/// complete (it was interrupted or failed, and the next one resumed it), drawn on one clock
/// from the first one's start. A step one apply started and never ended is an `interrupted`
/// bar up to that apply's last record. Times are the journal's, to the second.
pub fn applied_timeline(records: &[JournalRecord], last_apply: &str) -> AppliedTimeline {
    let applies = applies(records);
    let Some(last) = applies.iter().position(|apply| apply.id == last_apply) else {
        return AppliedTimeline::default();
    };
    let mut first = last;
    while first > 0 && !applies[first - 1].complete {
        first -= 1;
    }
    let taking_part = &applies[first..=last];
    let Some(origin) = taking_part.iter().find_map(|apply| apply.started) else {
        return AppliedTimeline::default();
    };
    let seconds = |time: SystemTime| {
        time.duration_since(origin)
            .map_or(0.0, |since| since.as_secs_f64())
    };
    let mut timeline = AppliedTimeline::default();
    for (index, apply) in taking_part.iter().enumerate() {
        if let Some(started) = apply.started {
            let label = if index == 0 {
                "apply started".to_owned()
            } else {
                format!("apply {} resumed", index + 1)
            };
            timeline.markers.push(Marker {
                at_seconds: seconds(started),
                label,
            });
        }
        for (step, run) in &apply.steps {
            let Some(start) = run.started else {
                continue;
            };
            let (end, outcome) = match &run.ended {
                Some((end, true)) => (*end, "done"),
                Some((end, false)) => (*end, "failed"),
                None => (apply.last.unwrap_or(start), "interrupted"),
            };
            timeline.bars.push(Bar {
                step: step.clone(),
                start_seconds: seconds(start),
                duration_seconds: (seconds(end) - seconds(start)).max(0.0),
                outcome: Some(outcome.to_owned()),
            });
        }
    }
    timeline
        .bars
        .sort_by(|left, right| left.start_seconds.total_cmp(&right.start_seconds));
    timeline
}

/// One apply as its records tell it.
#[derive(Debug, Default)]
struct Apply {
    id: String,
    started: Option<SystemTime>,
    /// Its last record's time: where an interrupted step's bar ends.
    last: Option<SystemTime>,
    complete: bool,
    /// Each step it ran, in the order it started them.
    steps: BTreeMap<StepId, StepRun>,
}

#[derive(Debug, Default)]
struct StepRun {
    started: Option<SystemTime>,
    /// When it ended, and whether well.
    ended: Option<(SystemTime, bool)>,
}

fn applies(records: &[JournalRecord]) -> Vec<Apply> {
    let mut applies: Vec<Apply> = Vec::new();
    let find = |applies: &mut Vec<Apply>, id: &str| -> usize {
        match applies.iter().position(|apply| apply.id == id) {
            Some(position) => position,
            None => {
                applies.push(Apply {
                    id: id.to_owned(),
                    ..Apply::default()
                });
                applies.len() - 1
            }
        }
    };
    for record in records {
        let (id, at) = match record {
            JournalRecord::ApplyStarted { apply_id, at, .. }
            | JournalRecord::StepStarted { apply_id, at, .. }
            | JournalRecord::ResumeTokenRecorded { apply_id, at, .. }
            | JournalRecord::StepFinished { apply_id, at, .. }
            | JournalRecord::ApplyFinished { apply_id, at, .. } => (apply_id, at),
        };
        let at = ferry_core::time::parse_time(at);
        let position = find(&mut applies, id);
        let apply = &mut applies[position];
        if at.is_some() {
            apply.last = at;
        }
        match record {
            JournalRecord::ApplyStarted { .. } => apply.started = at,
            JournalRecord::StepStarted { step, .. } => {
                let run = apply.steps.entry(step.clone()).or_default();
                run.started = at;
                run.ended = None;
            }
            JournalRecord::StepFinished { step, result, .. } => {
                if let Some(at) = at {
                    apply.steps.entry(step.clone()).or_default().ended =
                        Some((at, matches!(result, StepResult::Ok { .. })));
                }
            }
            JournalRecord::ApplyFinished { complete, .. } => apply.complete = *complete,
            JournalRecord::ResumeTokenRecorded { .. } => {}
        }
    }
    applies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(lines: &str) -> Vec<JournalRecord> {
        lines
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// A failover killed during the cluster's create, then resumed and finished: both applies
    /// on one clock, the killed create an interrupted bar, the resume marked.
    #[test]
    fn an_interrupted_failover_and_its_resume_are_drawn_on_one_clock() {
        let journal = records(
            r#"
            {"event":"apply_started","format_version":"2","apply_id":"a0","at":"2026-12-01T09:00:00Z","steps":1}
            {"event":"apply_finished","apply_id":"a0","at":"2026-12-01T09:00:01Z","complete":true}
            {"event":"apply_started","format_version":"2","apply_id":"a1","at":"2026-12-05T11:00:00Z","steps":2}
            {"event":"step_started","apply_id":"a1","step":"vm.nfs@g1:fence","instance":"vm.nfs@g1","action":"fence","at":"2026-12-05T11:00:00Z"}
            {"event":"step_started","apply_id":"a1","step":"aks_cluster.hub@g2:create","instance":"aks_cluster.hub@g2","action":"create","at":"2026-12-05T11:00:00Z"}
            {"event":"step_finished","apply_id":"a1","step":"vm.nfs@g1:fence","at":"2026-12-05T11:01:30Z","result":{"ok":{"outputs":{}}}}
            {"event":"resume_token_recorded","apply_id":"a1","step":"aks_cluster.hub@g2:create","token":"t","at":"2026-12-05T11:03:00Z"}
            {"event":"apply_started","format_version":"2","apply_id":"a2","at":"2026-12-05T11:05:00Z","steps":1}
            {"event":"step_started","apply_id":"a2","step":"aks_cluster.hub@g2:create","instance":"aks_cluster.hub@g2","action":"create","at":"2026-12-05T11:05:00Z","resume_token":"t"}
            {"event":"step_finished","apply_id":"a2","step":"aks_cluster.hub@g2:create","at":"2026-12-05T11:10:00Z","result":{"ok":{"outputs":{}}}}
            {"event":"apply_finished","apply_id":"a2","at":"2026-12-05T11:10:00Z","complete":true}
            "#,
        );
        let timeline = applied_timeline(&journal, "a2");
        let bar = |step: &str, start: f64, duration: f64, outcome: &str| Bar {
            step: StepId(step.to_owned()),
            start_seconds: start,
            duration_seconds: duration,
            outcome: Some(outcome.to_owned()),
        };
        assert_eq!(
            timeline.bars,
            vec![
                bar("aks_cluster.hub@g2:create", 0.0, 180.0, "interrupted"),
                bar("vm.nfs@g1:fence", 0.0, 90.0, "done"),
                bar("aks_cluster.hub@g2:create", 300.0, 300.0, "done"),
            ]
        );
        assert_eq!(
            timeline.markers,
            vec![
                Marker {
                    at_seconds: 0.0,
                    label: "apply started".to_owned()
                },
                Marker {
                    at_seconds: 300.0,
                    label: "apply 2 resumed".to_owned()
                },
            ]
        );
        // The complete apply before it is not part of this work; an unknown id draws nothing.
        assert_eq!(applied_timeline(&journal, "a0").bars.len(), 0);
        assert_eq!(
            applied_timeline(&journal, "nope"),
            AppliedTimeline::default()
        );
    }
}
