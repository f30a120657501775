//! The apply journal: an append-only JSON-lines file, one record per event, written and
//! fsynced before the step it describes proceeds.
//!
//! It is what makes an interrupted apply (Ctrl-C, `kill -9`, a lost network) resumable: the
//! next apply reads it with [`read_summary`], skips the steps that finished, and resumes a step
//! that started but never finished from the resume token it recorded (an ARM operation to poll,
//! a DNS wait's deadline: whatever its provider needs to carry on without repeating itself).
//!
//! # Format versions
//!
//! Each apply's records follow its `apply_started`, which names their `format_version`
//! ([`JOURNAL_FORMAT_VERSION`]); one file may hold applies of several versions, appended by
//! successive ferry releases. A record carrying a version this ferry does not know is refused
//! ([`JournalError::Version`]) before anything else on its line is read.
//!
//! - Version 1 had no `format_version`, and named the resume token for one of its uses: the
//!   record `operation_recorded` with a `url`, and `step_started`'s `resume_operation`.
//! - Version 2 writes `format_version: "2"` in `apply_started`, the record
//!   `resume_token_recorded` with a `token`, and `step_started`'s `resume_token`.
//!
//! Version 1's names are read as version 2's (serde aliases), so a journal an older ferry left
//! behind, interrupted, is resumed from where it stopped.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_core::{Action, Attributes, InstanceAddress, StepId};
use serde::{Deserialize, Serialize};

/// The journal format this ferry writes (in each `apply_started`); see the module's docs.
pub const JOURNAL_FORMAT_VERSION: &str = "2";

/// Every journal format this ferry reads, from 1 (an `apply_started` without `format_version`)
/// to [`JOURNAL_FORMAT_VERSION`].
const READABLE_FORMAT_VERSIONS: &[&str] = &["1", JOURNAL_FORMAT_VERSION];

/// One line of the journal. `at` is a wall-clock RFC 3339 time, for people reading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalRecord {
    ApplyStarted {
        /// The format of this apply's records: [`JOURNAL_FORMAT_VERSION`] when written, "1"
        /// when read from an apply that named none.
        #[serde(default = "unversioned_format")]
        format_version: String,
        apply_id: String,
        at: String,
        /// How many steps the plan has.
        steps: usize,
    },
    StepStarted {
        apply_id: String,
        step: StepId,
        instance: InstanceAddress,
        action: Action,
        at: String,
        /// The resume token this start resumes from, when an earlier attempt recorded one.
        #[serde(
            default,
            alias = "resume_operation",
            skip_serializing_if = "Option::is_none"
        )]
        resume_token: Option<String>,
    },
    /// A step's resume token, recorded as soon as its provider has one: what the provider
    /// needs to carry the step on without repeating its request (an ARM long-running
    /// operation to poll, the deadline of a DNS record's wait for its old TTL). Version 1
    /// called it `operation_recorded`, with a `url`.
    #[serde(alias = "operation_recorded")]
    ResumeTokenRecorded {
        apply_id: String,
        step: StepId,
        #[serde(alias = "url")]
        token: String,
        at: String,
    },
    StepFinished {
        apply_id: String,
        step: StepId,
        at: String,
        result: StepResult,
    },
    ApplyFinished {
        apply_id: String,
        at: String,
        /// Every step of the plan succeeded: nothing is left to resume.
        complete: bool,
    },
}

fn unversioned_format() -> String {
    "1".to_owned()
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    Ok { outputs: Attributes },
    Failed { error: String },
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open journal {path}: {}", crate::describe_io(source, path))]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "cannot write journal {path}: {}; no step is started without its journal record",
        crate::describe_io(source, path)
    )]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read journal {path}: {}", crate::describe_io(source, path))]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "journal {path} line {line} has format version {found}, and this ferry reads versions 1 to {JOURNAL_FORMAT_VERSION}: resume with the ferry release that wrote it, or move the journal away to apply without resuming"
    )]
    Version {
        path: PathBuf,
        line: usize,
        found: String,
    },
    #[error(
        "journal {path} line {line} is not a journal record ({source}): move the journal away to apply without resuming"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    /// The shared copy of the journal (a blob) did not answer or refused.
    #[error(
        "cannot {doing} journal {place}: {reason}; no step is started without its journal record"
    )]
    Remote {
        place: String,
        doing: &'static str,
        reason: String,
    },
}

/// A second place every journal record goes to after the local file: the shared state's copy,
/// from which another operator's machine can resume.
pub trait JournalMirror: Send + Sync + std::fmt::Debug {
    /// Appends one record, given whole and as its line (with the final newline); returns only
    /// once the record is durable there.
    fn append(&self, record: &JournalRecord, line: &str) -> Result<(), JournalError>;
}

/// An open journal, appended to by one apply. Appends may come from several steps at once.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    mirror: Option<std::sync::Arc<dyn JournalMirror>>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for appending. A record cut short by
    /// a crash (the bytes after the last newline) is cut off first, so that the next record
    /// starts on a line of its own instead of being glued to the fragment.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        if !existed {
            // A journal whose name is lost in a power cut loses every record written to it.
            let directory = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty());
            ferry_core::fs::sync_directory(directory.unwrap_or(Path::new(".")))
                .map_err(open_error)?;
        }
        cut_torn_tail(&file).map_err(open_error)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            mirror: None,
        })
    }

    /// Also appends every record to `mirror`, after the local file: a step proceeds only once
    /// both hold its record.
    pub fn with_mirror(mut self, mirror: std::sync::Arc<dyn JournalMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&self, record: &JournalRecord) -> Result<(), JournalError> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends records in order and waits until all are on disk, with one write and one
    /// fsync: the steps that start or end together cost one fsync, not one each (a group
    /// commit). A crash may keep a prefix of them, never a torn line (the reader cuts a torn tail).
    pub fn append_all(&self, records: &[JournalRecord]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = records
            .iter()
            .map(|record| {
                let mut line =
                    serde_json::to_string(record).expect("journal records always serialise");
                line.push('\n');
                line
            })
            .collect();
        let file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write call keeps lines whole even if two steps append at once.
        (&*file)
            .write_all(lines.concat().as_bytes())
            .and_then(|()| (&*file).flush())
            .and_then(|()| file.sync_data())
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })?;
        // The file lock is still held, so the mirror sees records in the file's order.
        if let Some(mirror) = &self.mirror {
            for (record, line) in records.iter().zip(&lines) {
                mirror.append(record, line)?;
            }
        }
        Ok(())
    }
}

/// Cuts whatever follows the last newline of `file`: a record whose write a crash cut short.
/// A record counts as written only once its newline is, which is also when its step may
/// proceed.
fn cut_torn_tail(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let length = file.metadata()?.len();
    let mut end = length;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(newline) = part.iter().rposition(|&byte| byte == b'\n') {
            let keep = start + newline as u64 + 1;
            if keep == length {
                return Ok(());
            }
            file.set_len(keep)?;
            return file.sync_data();
        }
        end = start;
    }
    if length > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Reads every record of the journal at `path`; a missing file has none.
///
/// A torn last line (the process died while writing it) is ignored: its step had not proceeded.
pub fn read_records(path: &Path) -> Result<Vec<JournalRecord>, JournalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse_records(&text, path)
}

/// Parses journal text (JSON lines); `place` names where it came from in errors. Every local
/// and shared copy of the journal is read here (the blob backend downloads its copy and
/// parses it with this), so each reads every format version alike.
///
/// A torn last line (the process died while writing it: no newline yet) is ignored: its step
/// had not proceeded. So is a torn record that an older ferry appended to before cutting it
/// off (the fragment and a whole record on one line): the whole record is kept.
pub fn parse_records(text: &str, place: &Path) -> Result<Vec<JournalRecord>, JournalError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if index + 1 == lines.len() && !text.ends_with('\n') {
            continue;
        }
        records.push(parse_line(line, place, index + 1)?);
    }
    Ok(records)
}

/// Reads the record on line `number`: the whole line, or the whole record at its end when a
/// torn record's fragment comes first. Its format version is checked first, since a newer
/// ferry's record need not parse as any record this one knows.
fn parse_line(line: &str, place: &Path, number: usize) -> Result<JournalRecord, JournalError> {
    check_format_version(line, place, number)?;
    match serde_json::from_str(line) {
        Ok(record) => Ok(record),
        Err(source) => {
            if let Some(whole) = after_a_torn_fragment(line) {
                check_format_version(whole, place, number)?;
                if let Ok(record) = serde_json::from_str(whole) {
                    return Ok(record);
                }
            }
            Err(JournalError::Corrupt {
                path: place.to_owned(),
                line: number,
                source,
            })
        }
    }
}

/// Refuses a record (a JSON object) whose `format_version` this ferry does not read; text
/// that is no JSON object is left for the record parser to name.
fn check_format_version(text: &str, place: &Path, number: usize) -> Result<(), JournalError> {
    #[derive(Deserialize)]
    struct Versioned {
        format_version: Option<serde_json::Value>,
    }
    let Ok(Versioned {
        format_version: Some(found),
    }) = serde_json::from_str(text)
    else {
        return Ok(());
    };
    match found.as_str() {
        Some(version) if READABLE_FORMAT_VERSIONS.contains(&version) => Ok(()),
        Some(version) => Err(version.to_owned()),
        None => Err(found.to_string()),
    }
    .map_err(|found| JournalError::Version {
        path: place.to_owned(),
        line: number,
        found,
    })
}

/// The whole record at the end of `line`, when what comes before it is the fragment of a torn
/// one: every record starts with its `event` tag.
fn after_a_torn_fragment(line: &str) -> Option<&str> {
    let start = line.rfind(r#"{"event":"#).filter(|&start| start > 0)?;
    Some(&line[start..])
}

/// What the journal knows of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPhase {
    NotStarted,
    /// Started, and no record of its end: it may or may not have taken effect.
    Started,
    Succeeded,
    Failed,
}

/// One step's last known phase and resume token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepJournal {
    pub phase: StepPhase,
    /// The last resume token recorded for it and not since finished.
    pub resume_token: Option<String>,
}

/// The journal's account of the applies since the last one that completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSummary {
    /// The id of the last apply that started, if any did since the last complete one.
    pub last_apply: Option<String>,
    /// Whether that apply never wrote its end (it was killed or lost).
    pub interrupted: bool,
    pub steps: BTreeMap<StepId, StepJournal>,
}

impl JournalSummary {
    /// Folds records into a summary. Only records after the last complete apply count: once
    /// everything succeeded, a later plan with the same step ids is new work, not a resume.
    pub fn from_records(records: &[JournalRecord]) -> Self {
        let start = records
            .iter()
            .rposition(|record| {
                matches!(record, JournalRecord::ApplyFinished { complete: true, .. })
            })
            .map_or(0, |position| position + 1);
        let mut summary = JournalSummary::default();
        for record in &records[start..] {
            match record {
                JournalRecord::ApplyStarted { apply_id, .. } => {
                    summary.last_apply = Some(apply_id.clone());
                    summary.interrupted = true;
                }
                JournalRecord::ApplyFinished { .. } => summary.interrupted = false,
                JournalRecord::StepStarted { step, .. } => {
                    // A restarted step keeps its recorded token: if this run dies before
                    // recording a new one, the old one is still the one to resume from.
                    summary.entry(step).phase = StepPhase::Started;
                }
                JournalRecord::ResumeTokenRecorded { step, token, .. } => {
                    summary.entry(step).resume_token = Some(token.clone());
                }
                JournalRecord::StepFinished { step, result, .. } => {
                    let entry = summary.entry(step);
                    entry.resume_token = None;
                    entry.phase = match result {
                        StepResult::Ok { .. } => StepPhase::Succeeded,
                        StepResult::Failed { .. } => StepPhase::Failed,
                    };
                }
            }
        }
        summary
    }

    fn entry(&mut self, step: &StepId) -> &mut StepJournal {
        self.steps.entry(step.clone()).or_insert(StepJournal {
            phase: StepPhase::NotStarted,
            resume_token: None,
        })
    }

    pub fn phase(&self, step: &StepId) -> StepPhase {
        self.steps
            .get(step)
            .map_or(StepPhase::NotStarted, |entry| entry.phase)
    }

    /// The resume token of a step that started and never finished: what the provider gets
    /// back as `ApplyContext::resume_token` when the step runs again.
    pub fn resume_token_of(&self, step: &StepId) -> Option<&str> {
        self.steps
            .get(step)
            .filter(|entry| entry.phase == StepPhase::Started)
            .and_then(|entry| entry.resume_token.as_deref())
    }
}

/// Reads the journal at `path` and summarises it (see [`JournalSummary::from_records`]).
pub fn read_summary(path: &Path) -> Result<JournalSummary, JournalError> {
    Ok(JournalSummary::from_records(&read_records(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: &str = "2024-05-02T13:00:00Z";

    fn started(apply: &str, step: &str) -> JournalRecord {
        let step = StepId(step.to_owned());
        let (instance, action) = step.0.split_once(':').unwrap();
        JournalRecord::StepStarted {
            apply_id: apply.into(),
            step: step.clone(),
            instance: instance.parse().unwrap(),
            action: serde_json::from_value(json!(action)).unwrap(),
            at: AT.into(),
            resume_token: None,
        }
    }

    fn finished(apply: &str, step: &str, ok: bool) -> JournalRecord {
        JournalRecord::StepFinished {
            apply_id: apply.into(),
            step: StepId(step.to_owned()),
            at: AT.into(),
            result: if ok {
                StepResult::Ok {
                    outputs: [("id".to_owned(), json!("/x"))].into(),
                }
            } else {
                StepResult::Failed {
                    error: "quota exceeded".into(),
                }
            },
        }
    }

    fn resume_token(apply: &str, step: &str, token: &str) -> JournalRecord {
        JournalRecord::ResumeTokenRecorded {
            apply_id: apply.into(),
            step: StepId(step.to_owned()),
            token: token.into(),
            at: AT.into(),
        }
    }

    fn apply_started(apply: &str) -> JournalRecord {
        JournalRecord::ApplyStarted {
            format_version: JOURNAL_FORMAT_VERSION.into(),
            apply_id: apply.into(),
            at: AT.into(),
            steps: 3,
        }
    }

    fn apply_finished(apply: &str, complete: bool) -> JournalRecord {
        JournalRecord::ApplyFinished {
            apply_id: apply.into(),
            at: AT.into(),
            complete,
        }
    }

    #[test]
    fn records_appended_together_are_read_back_whole_and_in_order() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("journal.jsonl");
        let journal = Journal::open(&path).unwrap();
        journal.append(&apply_started("a1")).unwrap();
        let together = [
            started("a1", "vm.x@g1:create"),
            started("a1", "vm.y@g1:create"),
            finished("a1", "vm.x@g1:create", true),
        ];
        journal.append_all(&together).unwrap();
        journal.append_all(&[]).unwrap();
        let mut expected = vec![apply_started("a1")];
        expected.extend(together);
        assert_eq!(read_records(&path).unwrap(), expected);
    }

    /// Renders a summary as `step: phase [resume token]` lines, for compact expectations.
    fn check(records: &[JournalRecord], expected: &str) {
        let summary = JournalSummary::from_records(records);
        let mut lines = vec![format!(
            "last apply {:?}, interrupted {}",
            summary.last_apply, summary.interrupted
        )];
        for (step, entry) in &summary.steps {
            lines.push(format!(
                "{step}: {:?} {}",
                entry.phase,
                summary.resume_token_of(step).unwrap_or("-")
            ));
        }
        assert_eq!(lines.join("\n"), expected.trim());
    }

    #[test]
    fn the_summary_gives_each_step_its_last_phase() {
        check(
            &[
                apply_started("a1"),
                started("a1", "vm.nfs@g2:create"),
                started("a1", "disk.home0:detach"),
                resume_token("a1", "vm.nfs@g2:create", "https://arm/op/1"),
                finished("a1", "disk.home0:detach", true),
                started("a1", "hook.hub@g2:run"),
                finished("a1", "hook.hub@g2:run", false),
            ],
            r#"
last apply Some("a1"), interrupted true
disk.home0:detach: Succeeded -
hook.hub@g2:run: Failed -
vm.nfs@g2:create: Started https://arm/op/1
"#,
        );
    }

    #[test]
    fn a_restarted_step_keeps_its_resume_token_until_it_finishes() {
        check(
            &[
                apply_started("a1"),
                started("a1", "vm.nfs@g2:create"),
                resume_token("a1", "vm.nfs@g2:create", "https://arm/op/1"),
                apply_started("a2"),
                started("a2", "vm.nfs@g2:create"),
            ],
            r#"
last apply Some("a2"), interrupted true
vm.nfs@g2:create: Started https://arm/op/1
"#,
        );
    }

    #[test]
    fn a_complete_apply_closes_the_books() {
        check(
            &[
                apply_started("a1"),
                started("a1", "vm.nfs@g2:create"),
                finished("a1", "vm.nfs@g2:create", true),
                apply_finished("a1", true),
                apply_started("a2"),
                started("a2", "disk.home0:attach"),
                finished("a2", "disk.home0:attach", false),
                apply_finished("a2", false),
            ],
            r#"
last apply Some("a2"), interrupted false
disk.home0:attach: Failed -
"#,
        );
    }

    #[test]
    fn records_round_trip_through_the_file_and_a_torn_tail_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        let records = vec![
            apply_started("a1"),
            started("a1", "vm.nfs@g2:create"),
            resume_token("a1", "vm.nfs@g2:create", "https://arm/op/1"),
            finished("a1", "vm.nfs@g2:create", true),
        ];
        let journal = Journal::open(&path).unwrap();
        for record in &records {
            journal.append(record).unwrap();
        }
        drop(journal);
        let mut text = std::fs::read_to_string(&path).unwrap();
        let written: Vec<&str> = text.lines().take(3).collect();
        insta::assert_snapshot!(written.join("\n"), @r#"
        {"event":"apply_started","format_version":"2","apply_id":"a1","at":"2024-05-02T13:00:00Z","steps":3}
        {"event":"step_started","apply_id":"a1","step":"vm.nfs@g2:create","instance":"vm.nfs@g2","action":"create","at":"2024-05-02T13:00:00Z"}
        {"event":"resume_token_recorded","apply_id":"a1","step":"vm.nfs@g2:create","token":"https://arm/op/1","at":"2024-05-02T13:00:00Z"}
        "#);
        text.push_str(r#"{"event":"step_sta"#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_records(&path).unwrap(), records);
        assert_eq!(
            read_summary(&directory.path().join("missing.jsonl")).unwrap(),
            JournalSummary::default()
        );
    }

    #[test]
    fn a_bad_line_in_the_middle_names_the_line() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        std::fs::write(&path, "{\"event\":\"nonsense\"}\n{}\n").unwrap();
        let message = read_records(&path)
            .unwrap_err()
            .to_string()
            .replace(&directory.path().display().to_string(), "<dir>");
        insta::assert_snapshot!(message, @"journal <dir>/journal.jsonl line 1 is not a journal record (unknown variant `nonsense`, expected one of `apply_started`, `step_started`, `operation_recorded`, `resume_token_recorded`, `step_finished`, `apply_finished` at line 1 column 19): move the journal away to apply without resuming");
    }

    /// A journal a version 1 ferry left behind (no `format_version`, the resume token called an
    /// operation: `operation_recorded` with a `url`, `step_started`'s `resume_operation`), its
    /// step interrupted twice, then appended to by this ferry: every line is read, version 1's
    /// names as version 2's, and the step still resumes from the token recorded before.
    #[test]
    fn a_version_1_journal_is_read_and_its_interrupted_step_resumes_from_its_token() {
        let version_1 = concat!(
            r#"{"event":"apply_started","apply_id":"a1","at":"2024-05-02T13:00:00Z","steps":3}"#,
            "\n",
            r#"{"event":"step_started","apply_id":"a1","step":"vm.nfs@g2:create","instance":"vm.nfs@g2","action":"create","at":"2024-05-02T13:00:00Z"}"#,
            "\n",
            r#"{"event":"operation_recorded","apply_id":"a1","step":"vm.nfs@g2:create","url":"https://arm/op/1","at":"2024-05-02T13:00:00Z"}"#,
            "\n",
            r#"{"event":"apply_started","apply_id":"a2","at":"2024-05-02T13:00:00Z","steps":3}"#,
            "\n",
            r#"{"event":"step_started","apply_id":"a2","step":"vm.nfs@g2:create","instance":"vm.nfs@g2","action":"create","at":"2024-05-02T13:00:00Z","resume_operation":"https://arm/op/1"}"#,
            "\n",
        );
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        std::fs::write(&path, version_1).unwrap();
        let read = read_records(&path).unwrap();
        let unversioned = |apply: &str| JournalRecord::ApplyStarted {
            format_version: "1".into(),
            apply_id: apply.into(),
            at: AT.into(),
            steps: 3,
        };
        let resumed = JournalRecord::StepStarted {
            apply_id: "a2".into(),
            step: StepId("vm.nfs@g2:create".into()),
            instance: "vm.nfs@g2".parse().unwrap(),
            action: Action::Create,
            at: AT.into(),
            resume_token: Some("https://arm/op/1".into()),
        };
        assert_eq!(
            read,
            vec![
                unversioned("a1"),
                started("a1", "vm.nfs@g2:create"),
                resume_token("a1", "vm.nfs@g2:create", "https://arm/op/1"),
                unversioned("a2"),
                resumed,
            ]
        );
        check(
            &read,
            r#"
last apply Some("a2"), interrupted true
vm.nfs@g2:create: Started https://arm/op/1
"#,
        );

        // This ferry's apply goes on in the same file, in its own format.
        let journal = Journal::open(&path).unwrap();
        journal.append(&apply_started("a3")).unwrap();
        journal.append(&started("a3", "vm.nfs@g2:create")).unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(version_1));
        insta::assert_snapshot!(text[version_1.len()..].trim_end(), @r#"
        {"event":"apply_started","format_version":"2","apply_id":"a3","at":"2024-05-02T13:00:00Z","steps":3}
        {"event":"step_started","apply_id":"a3","step":"vm.nfs@g2:create","instance":"vm.nfs@g2","action":"create","at":"2024-05-02T13:00:00Z"}
        "#);
        check(
            &read_records(&path).unwrap(),
            r#"
last apply Some("a3"), interrupted true
vm.nfs@g2:create: Started https://arm/op/1
"#,
        );
    }

    /// A newer ferry's apply is refused at its `apply_started`, by its version, though its
    /// record does not parse as any this ferry knows: what it recorded may mean more than this
    /// ferry can tell, and resuming it blind could repeat a step.
    #[test]
    fn a_journal_a_newer_ferry_wrote_is_refused_naming_its_version() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        let ours = serde_json::to_string(&apply_started("a1")).unwrap();
        let newer = r#"{"event":"apply_started","format_version":"3","apply_id":"a2","at":"2024-05-02T13:00:00Z","steps":{"total":3}}"#;
        std::fs::write(&path, format!("{ours}\n{newer}\n")).unwrap();
        let message = read_records(&path)
            .unwrap_err()
            .to_string()
            .replace(&directory.path().display().to_string(), "<dir>");
        insta::assert_snapshot!(message, @"journal <dir>/journal.jsonl line 2 has format version 3, and this ferry reads versions 1 to 2: resume with the ferry release that wrote it, or move the journal away to apply without resuming");
        // A version that is not even a string is named as written.
        std::fs::write(&path, newer.replace(r#""3""#, "3") + "\n").unwrap();
        let message = read_records(&path).unwrap_err().to_string();
        assert!(
            message.contains("line 1 has format version 3,"),
            "{message}"
        );
    }

    /// Issue 18: a kill in the middle of an append left a fragment; the next apply appended
    /// after it (gluing its first record to the fragment) and the apply after that refused the
    /// journal. The fragment is now cut off when the journal is opened.
    #[test]
    fn a_torn_last_record_is_cut_off_before_the_next_append() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        let first = vec![apply_started("a1"), started("a1", "vm.nfs@g2:create")];
        let journal = Journal::open(&path).unwrap();
        for record in &first {
            journal.append(record).unwrap();
        }
        drop(journal);
        // A kill in the middle of the next record's write.
        let mut torn = std::fs::read_to_string(&path).unwrap();
        torn.push_str(r#"{"event":"resume_token_recorded","apply_id":"a1","st"#);
        std::fs::write(&path, &torn).unwrap();
        // The next apply opens the journal and appends; the one after reads it whole.
        let journal = Journal::open(&path).unwrap();
        let second = vec![
            apply_started("a2"),
            finished("a2", "vm.nfs@g2:create", true),
        ];
        for record in &second {
            journal.append(record).unwrap();
        }
        drop(journal);
        let all: Vec<JournalRecord> = first.into_iter().chain(second).collect();
        assert_eq!(read_records(&path).unwrap(), all);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("\"st{"));
        // A journal that is one fragment and nothing else is emptied.
        std::fs::write(&path, r#"{"event":"apply_sta"#).unwrap();
        Journal::open(&path)
            .unwrap()
            .append(&apply_started("a3"))
            .unwrap();
        assert_eq!(read_records(&path).unwrap(), vec![apply_started("a3")]);
    }

    #[test]
    fn a_fragment_an_older_ferry_appended_to_is_skipped_and_its_record_kept() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.jsonl");
        let whole = serde_json::to_string(&apply_started("a2")).unwrap();
        let text = format!(
            "{}\n{{\"event\":\"step_sta{whole}\n{}\n",
            serde_json::to_string(&apply_started("a1")).unwrap(),
            serde_json::to_string(&started("a2", "vm.nfs@g2:create")).unwrap(),
        );
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            read_records(&path).unwrap(),
            vec![
                apply_started("a1"),
                apply_started("a2"),
                started("a2", "vm.nfs@g2:create")
            ]
        );
    }
}
