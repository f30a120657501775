//! The wait for an old TTL (`wait_for_ttl = true`) as data, so that it survives an
//! interrupted apply.
//!
//! As soon as a change has replaced values that resolvers may have cached, the step records as
//! its resume token (through [`ferry_core::ApplyContext::record_resume_token`], which journals
//! it at once) which record's values those were and until when their cached copies may live:
//!
//! ```text
//! {"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300,"until_unix":1767225900}}
//! ```
//!
//! A resumed step gets it back as its `resume_token` and waits out what is left even when
//! it finds the record already right, which is exactly when it would otherwise wait for
//! nothing. The token holds the record's name, type and public values only, never a server,
//! a key name or a secret: the journal keeps it and progress lines print it.
//!
//! The deadline is wall-clock UNIX time, because the apply that resumes it may run in another
//! process or, with the blob state, on another machine. Clocks are trusted only as far as they
//! can lengthen the wait: what is left is never more than the old TTL itself (so a clock that
//! is behind, or that went backwards, waits at most one TTL and never less than what is truly
//! left), the deadline is rounded up and the clock read is rounded down. A resuming clock that
//! is ahead of the recording one shortens the wait by that much, which no stored deadline can
//! detect: machines that share a state should keep their clocks synchronised.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::record::{RecordKey, RecordSet, RecordType, canonical_value};

/// The one key of a token's JSON object: it tells this token from an ARM operation's.
const TOKEN_KEY: &str = "wait_for_old_ttl";

/// Resolvers may serve a record's replaced values until a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldTtlWait {
    /// The record's fully qualified name, lower-case, without the trailing dot: resolvers
    /// cache by name, whichever zone the spec puts it in.
    pub fqdn: String,
    pub record_type: RecordType,
    /// The values resolvers may still serve.
    pub replaced: Vec<String>,
    /// The longest the wait can have left, whatever the clocks say: the old TTL.
    pub ttl: u32,
    /// When the last cached copy of `replaced` expires, in whole UNIX seconds rounded up.
    pub until_unix: u64,
}

impl OldTtlWait {
    /// Resolvers may serve `replaced` for its TTL from `now` (the wall clock's time since the
    /// UNIX epoch) on.
    pub fn starting(key: &RecordKey, replaced: &RecordSet, now: Duration) -> Self {
        let end = now + Duration::from_secs(u64::from(replaced.ttl));
        OldTtlWait {
            fqdn: key.fqdn(),
            record_type: key.record_type,
            replaced: replaced.values.clone(),
            ttl: replaced.ttl,
            until_unix: end.as_secs() + u64::from(end.subsec_nanos() > 0),
        }
    }

    /// What is left of the wait when the wall clock reads `now` (since the UNIX epoch): the
    /// time to the deadline, counted from `now` rounded down, and never more than the old TTL.
    ///
    /// A clock that went backwards since the wait was recorded reads earlier, so it finds more
    /// left, never less; the cap keeps a clock far behind from stretching the wait past the
    /// longest any resolver may cache the values.
    pub fn remaining(&self, now: Duration) -> Duration {
        let left = self.until_unix.saturating_sub(now.as_secs());
        Duration::from_secs(left.min(u64::from(self.ttl)))
    }

    /// Both waits in one: until the later deadline, capped by the longer TTL, for the values of
    /// both. A step that replaces the values again before an earlier attempt's wait is over
    /// owes both, and the journal keeps only the last token recorded.
    pub fn merged(&self, other: &OldTtlWait) -> OldTtlWait {
        let mut replaced = self.replaced.clone();
        for value in &other.replaced {
            let canonical = canonical_value(self.record_type, value);
            if !replaced
                .iter()
                .any(|kept| canonical_value(self.record_type, kept) == canonical)
            {
                replaced.push(value.clone());
            }
        }
        OldTtlWait {
            fqdn: self.fqdn.clone(),
            record_type: self.record_type,
            replaced,
            ttl: self.ttl.max(other.ttl),
            until_unix: self.until_unix.max(other.until_unix),
        }
    }

    /// Whether this wait is for `key`'s name and type.
    pub fn is_for(&self, key: &RecordKey) -> bool {
        self.record_type == key.record_type
            && self
                .fqdn
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&key.fqdn())
    }

    /// The text recorded in the journal.
    pub fn to_token(&self) -> String {
        json!({
            TOKEN_KEY: {
                "fqdn": self.fqdn,
                "type": self.record_type.as_str(),
                "replaced": self.replaced,
                "ttl": self.ttl,
                "until_unix": self.until_unix,
            }
        })
        .to_string()
    }

    /// A recorded token, or `None` for text that is not one (another provider's resume token,
    /// such as an ARM operation; another version's token; garbage).
    pub fn from_token(text: &str) -> Option<OldTtlWait> {
        let token: Value = serde_json::from_str(text).ok()?;
        let wait = token.as_object()?.get(TOKEN_KEY)?.as_object()?;
        let replaced = wait
            .get("replaced")?
            .as_array()?
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()?;
        Some(OldTtlWait {
            fqdn: wait.get("fqdn")?.as_str()?.to_ascii_lowercase(),
            record_type: wait.get("type")?.as_str()?.parse().ok()?,
            replaced,
            ttl: u32::try_from(wait.get("ttl")?.as_u64()?).ok()?,
            until_unix: wait.get("until_unix")?.as_u64()?,
        })
    }
}

/// The wall clock's time since the UNIX epoch; zero for a clock set before it, which makes a
/// resumed wait its whole TTL.
pub(crate) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The wait an interrupted attempt of this step recorded, if `recorded` is one for `key` and
/// the spec still asks for it; anything else is ignored with a progress line saying why.
pub(crate) fn resumed_wait(
    recorded: Option<&str>,
    key: &RecordKey,
    wait_for_ttl: bool,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Option<OldTtlWait> {
    let recorded = recorded?;
    let Some(wait) = OldTtlWait::from_token(recorded) else {
        progress(format!(
            "{key}: the recorded resume token is not a wait for the old ttl that this version of ferry wrote; ignoring it"
        ));
        return None;
    };
    if !wait.is_for(key) {
        progress(format!(
            "{key}: the recorded wait for the old ttl is for {} {}, not this record; ignoring it",
            wait.fqdn, wait.record_type
        ));
        return None;
    }
    if !wait_for_ttl {
        progress(format!(
            "{key}: wait_for_ttl is now false, so the recorded wait for the old ttl is not resumed"
        ));
        return None;
    }
    Some(wait)
}

/// How a wait for the old TTL begins, for its first progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStart {
    /// This step replaced the values.
    Fresh,
    /// An earlier, interrupted attempt did.
    Resumed,
}

/// Waits out what is left of `wait`: a resolver that cached the replaced values just before
/// the change may serve them that long, so only after it are clients sure to see the new
/// ones. Reports the time left every tenth of the TTL (at least every second, at most every
/// 30 seconds). The wait itself runs on the monotonic clock, so a wall clock that jumps
/// during it changes nothing.
pub(crate) async fn wait_out(
    wait: &OldTtlWait,
    key: &RecordKey,
    start: WaitStart,
    progress: &(dyn Fn(String) + Send + Sync),
) {
    let total = wait.remaining(wall_clock());
    let report_every = (Duration::from_secs(u64::from(wait.ttl)) / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(30));
    progress(match (start, total.as_secs()) {
        (WaitStart::Fresh, seconds) => format!(
            "{key}: waiting {seconds}s, the old ttl, so that resolvers' cached answers expire"
        ),
        (WaitStart::Resumed, 0) => {
            format!("{key}: resuming the wait for the old ttl: none left")
        }
        (WaitStart::Resumed, seconds) => {
            format!("{key}: resuming the wait for the old ttl: {seconds}s left")
        }
    });
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let left = deadline - now;
        tokio::time::sleep(left.min(report_every)).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !left.is_zero() {
            progress(format!(
                "{key}: {}s of the old ttl left",
                left.as_secs_f64().ceil()
            ));
        }
    }
    progress(format!(
        "{key}: the old ttl ({}s) has passed; resolvers no longer hold the old values",
        wait.ttl
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordKey {
        RecordKey::new("data100.example.org", "hub", RecordType::A)
    }

    fn seconds(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// A wait recorded at UNIX time 700 for an old TTL of 300 seconds.
    fn recorded_at_700() -> OldTtlWait {
        let replaced = RecordSet {
            ttl: 300,
            values: vec!["20.1.2.3".to_owned()],
        };
        OldTtlWait::starting(&key(), &replaced, seconds(700))
    }

    #[test]
    fn what_is_left_is_the_time_to_the_deadline_capped_by_the_old_ttl() {
        let wait = recorded_at_700();
        assert_eq!(wait.until_unix, 1000);
        // Right away, and 100 seconds later.
        assert_eq!(wait.remaining(seconds(700)), seconds(300));
        assert_eq!(wait.remaining(seconds(800)), seconds(200));
        // At and after the deadline: nothing.
        assert_eq!(wait.remaining(seconds(1000)), Duration::ZERO);
        assert_eq!(wait.remaining(seconds(5000)), Duration::ZERO);
    }

    #[test]
    fn a_clock_that_went_backwards_never_shortens_the_wait_and_never_stretches_it_past_the_ttl() {
        let wait = recorded_at_700();
        // 100 real seconds after recording (200 truly left), the clock was set back 50: it
        // reads 750 and finds 250 left, more than is truly left, never less.
        assert_eq!(wait.remaining(seconds(750)), seconds(250));
        // Set back further than the recording time (or another machine's clock far behind):
        // the whole TTL, never the 900 seconds the deadline is away by that clock.
        assert_eq!(wait.remaining(seconds(690)), seconds(300));
        assert_eq!(wait.remaining(seconds(100)), seconds(300));
        // A clock before the epoch reads as zero.
        assert_eq!(wait.remaining(Duration::ZERO), seconds(300));
    }

    #[test]
    fn the_deadline_is_rounded_up_and_the_clock_down() {
        let replaced = RecordSet {
            ttl: 2,
            values: vec!["20.1.2.3".to_owned()],
        };
        let wait = OldTtlWait::starting(&key(), &replaced, Duration::from_millis(100_500));
        assert_eq!(wait.until_unix, 103);
        // 0.4s later the true remainder is 1.6s: the whole-second answer rounds up to 2.
        assert_eq!(wait.remaining(Duration::from_millis(100_900)), seconds(2));
        // 1.6s later, 0.4s truly left: 1s.
        assert_eq!(wait.remaining(Duration::from_millis(102_100)), seconds(1));
    }

    #[test]
    fn a_change_made_during_an_earlier_wait_owes_both() {
        let earlier = recorded_at_700();
        let replaced = RecordSet {
            ttl: 60,
            values: vec!["20.1.2.4".to_owned(), "20.1.2.3".to_owned()],
        };
        let now = OldTtlWait::starting(&key(), &replaced, seconds(900));
        let both = now.merged(&earlier);
        assert_eq!(both.until_unix, 1000);
        assert_eq!(both.ttl, 300);
        assert_eq!(both.replaced, vec!["20.1.2.4", "20.1.2.3"]);
        assert_eq!(both.remaining(seconds(900)), seconds(100));
    }

    #[test]
    fn a_token_round_trips_and_holds_only_the_record_and_its_values() {
        let wait = recorded_at_700();
        insta::assert_snapshot!(wait.to_token(), @r#"{"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","replaced":["20.1.2.3"],"ttl":300,"type":"A","until_unix":1000}}"#);
        assert_eq!(OldTtlWait::from_token(&wait.to_token()), Some(wait.clone()));
        assert!(wait.is_for(&RecordKey::new(
            "Data100.Example.org.",
            "HUB",
            RecordType::A
        )));
        assert!(!wait.is_for(&RecordKey::new(
            "data100.example.org",
            "hub",
            RecordType::Aaaa
        )));
        assert!(!wait.is_for(&RecordKey::new("data100.example.org", "www", RecordType::A)));
    }

    #[test]
    fn text_that_is_not_a_token_is_not_read_as_one() {
        for text in [
            "",
            "not json",
            "[]",
            // An ARM operation, as the Azure providers record it.
            r#"{"method":"PUT","resource_url":"https://management.azure.com/x","status_url":"https://management.azure.com/op"}"#,
            r#"{"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"MX","replaced":[],"ttl":300,"until_unix":1000}}"#,
            r#"{"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":-1,"until_unix":1000}}"#,
            r#"{"wait_for_old_ttl":{"fqdn":"hub.data100.example.org","type":"A","replaced":["20.1.2.3"],"ttl":300}}"#,
        ] {
            assert_eq!(OldTtlWait::from_token(text), None, "{text}");
        }
    }
}
