//! `wait_for_ttl` across an interrupted apply, against a real BIND: the wait for the old TTL
//! is recorded as the change is made, and the resumed step waits out what is left of it even
//! though it finds the record already right (or already gone); a recorded wait that does not
//! apply is ignored with a line saying why.
//!
//! The tests assert what progress reports and in which order, and only lower bounds on time
//! (a sleep never ends early): no timed assertions.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::{Action, Attributes, Step};
use ferry_dns::{DnsProviderConfig, DnsRecordProvider};
use serde_json::json;
use support::{Bind, Recorder, ZONE, step};

fn provider(zones: std::collections::BTreeMap<String, Attributes>) -> DnsRecordProvider {
    let mut config = DnsProviderConfig::new("data100", zones, "/nonexistent");
    config.wait_interval = Duration::from_millis(50);
    DnsRecordProvider::new(config).unwrap()
}

/// A record `name` in the test zone, waiting for the old TTL after a change.
fn waiting(name: &str, ttl: u32, values: &[&str]) -> serde_json::Value {
    json!({
        "zone": ZONE, "name": name, "type": "A", "ttl": ttl, "values": values,
        "wait_for_ttl": true,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A recorded wait as an earlier apply journaled it, written out by hand so that the format
/// an older ferry left in a journal stays readable.
fn token(fqdn: &str, replaced: &[&str], ttl: u32, until_unix: u64) -> String {
    json!({"wait_for_old_ttl": {
        "fqdn": fqdn, "type": "A", "replaced": replaced, "ttl": ttl, "until_unix": until_unix,
    }})
    .to_string()
}

/// Runs `step` until its progress says the wait for the old TTL began, then drops it, as an
/// abort (Ctrl-C twice), a step's time limit or a killed process does.
async fn interrupt_during_the_wait(recorder: &Recorder, provider: &DnsRecordProvider, step: &Step) {
    let wait_began =
        async {
            while !recorder.lines().iter().any(|line| {
                line.contains(", the old ttl, so that resolvers' cached answers expire")
            }) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
    tokio::select! {
        result = recorder.apply(provider, step) => {
            panic!("the step ended before its wait could be interrupted: {result:?}, {:?}", recorder.lines())
        }
        () = wait_began => {}
    }
}

/// The seconds a `resuming the wait for the old ttl: ...` line reports.
fn reported_wait(lines: &[String]) -> (usize, u64) {
    let (position, rest) = lines
        .iter()
        .enumerate()
        .find_map(|(position, line)| {
            let rest = line.split_once("resuming the wait for the old ttl: ")?.1;
            Some((position, rest))
        })
        .unwrap_or_else(|| panic!("no resumed wait in {lines:?}"));
    let seconds = match rest {
        "none left" => 0,
        rest => rest.strip_suffix("s left").unwrap().parse().unwrap(),
    };
    (position, seconds)
}

/// The recorded token's fields.
fn fields(token: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(token).unwrap()["wait_for_old_ttl"].clone()
}

#[tokio::test]
async fn an_update_interrupted_during_the_wait_is_resumed_although_the_record_is_already_right() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let setup = Recorder::default();
    let create = step(
        "moving",
        Action::Create,
        waiting("moving", 4, &["127.0.0.80"]),
    );
    setup.apply(&provider, &create).await.unwrap();

    let interrupted = Recorder::default();
    let update = step(
        "moving",
        Action::Update,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    let before = unix_now();
    interrupt_during_the_wait(&interrupted, &provider, &update).await;
    let after = unix_now();
    assert_eq!(bind.dig("moving", "A"), vec!["127.0.0.81"]);
    // Recorded once: right after the write, and the primary answered within that second.
    // (A second token, only when the answer came in a later second, would be the later one.)
    let tokens = interrupted.resume_tokens();
    let recorded = tokens.last().unwrap().clone();
    let wait = fields(&recorded);
    assert_eq!(wait["fqdn"], json!("moving.ferry.test"));
    assert_eq!(wait["type"], json!("A"));
    assert_eq!(wait["replaced"], json!(["127.0.0.80"]));
    assert_eq!(wait["ttl"], json!(4));
    let until = wait["until_unix"].as_u64().unwrap();
    assert!(
        (before + 4..=after + 5).contains(&until),
        "{before} {until} {after}"
    );
    assert!(!recorded.contains(&bind.secret), "{recorded}");

    // The next apply, perhaps in another process: the record is already right, and the rest
    // of the wait is still owed.
    let resumed = Recorder::default();
    let started = Instant::now();
    resumed
        .apply_resuming(&provider, &update, Some(&recorded))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let lines = resumed.lines();
    let already = lines
        .iter()
        .position(|line| line == "moving.ferry.test A: already 127.0.0.81")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let (resuming, seconds) = reported_wait(&lines);
    assert!(already < resuming, "{lines:?}");
    assert!(seconds <= 4, "{lines:?}");
    assert!(
        elapsed + Duration::from_millis(50) >= Duration::from_secs(seconds),
        "{elapsed:?} for {seconds}s"
    );
    assert_eq!(
        lines.last().unwrap(),
        "moving.ferry.test A: the old ttl (4s) has passed; resolvers no longer hold the old values"
    );
    assert!(
        !lines.iter().any(|line| line.contains(": set to ")),
        "{lines:?}"
    );
    // Nothing new owed, nothing new recorded.
    assert!(
        resumed.resume_tokens().is_empty(),
        "{:?}",
        resumed.resume_tokens()
    );
}

#[tokio::test]
async fn a_delete_interrupted_during_the_wait_is_resumed_although_the_record_is_gone() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let setup = Recorder::default();
    let create = step(
        "leaving",
        Action::Create,
        waiting("leaving", 3, &["127.0.0.82"]),
    );
    setup.apply(&provider, &create).await.unwrap();

    // A delete step as a real plan gives it, with no inputs: wait_for_ttl comes from the
    // outputs the state remembers of the create, in both attempts.
    let delete = step("leaving", Action::Delete, json!({}));
    let interrupted = setup.next_apply();
    interrupt_during_the_wait(&interrupted, &provider, &delete).await;
    assert!(bind.dig("leaving", "A").is_empty());
    let recorded = interrupted.resume_tokens().last().unwrap().clone();
    let wait = fields(&recorded);
    assert_eq!(wait["fqdn"], json!("leaving.ferry.test"));
    assert_eq!(wait["replaced"], json!(["127.0.0.82"]));
    assert_eq!(wait["ttl"], json!(3));

    let resumed = interrupted.next_apply();
    let started = Instant::now();
    resumed
        .apply_resuming(&provider, &delete, Some(&recorded))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let lines = resumed.lines();
    assert_eq!(lines[0], "leaving.ferry.test A: already gone", "{lines:?}");
    let (resuming, seconds) = reported_wait(&lines);
    assert_eq!(resuming, 1, "{lines:?}");
    assert!(seconds <= 3, "{lines:?}");
    assert!(elapsed + Duration::from_millis(50) >= Duration::from_secs(seconds));
    assert_eq!(
        lines.last().unwrap(),
        "leaving.ferry.test A: the old ttl (3s) has passed; resolvers no longer hold the old values"
    );
}

#[tokio::test]
async fn a_resumed_wait_is_never_longer_than_the_old_ttl_whatever_the_clock_says() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step(
        "moving",
        Action::Create,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    recorder.apply(&provider, &create).await.unwrap();

    // A deadline an hour away: this clock is far behind the one that recorded it, or went
    // backwards. The old TTL is the most any resolver may still cache.
    let recorded = token("moving.ferry.test", &["127.0.0.80"], 2, unix_now() + 3600);
    let update = step(
        "moving",
        Action::Update,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    let resumed = Recorder::default();
    let started = Instant::now();
    resumed
        .apply_resuming(&provider, &update, Some(&recorded))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let lines = resumed.lines();
    assert!(
        lines.contains(
            &"moving.ferry.test A: resuming the wait for the old ttl: 2s left".to_owned()
        ),
        "{lines:?}"
    );
    assert!(elapsed + Duration::from_millis(50) >= Duration::from_secs(2));
    assert_eq!(
        lines.last().unwrap(),
        "moving.ferry.test A: the old ttl (2s) has passed; resolvers no longer hold the old values"
    );
}

#[tokio::test]
async fn a_resumed_wait_whose_deadline_passed_waits_nothing() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step(
        "moving",
        Action::Create,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    recorder.apply(&provider, &create).await.unwrap();

    let recorded = token("moving.ferry.test", &["127.0.0.80"], 2, unix_now() - 3600);
    let update = step(
        "moving",
        Action::Update,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    let resumed = Recorder::default();
    resumed
        .apply_resuming(&provider, &update, Some(&recorded))
        .await
        .unwrap();
    insta::assert_snapshot!(resumed.lines().join("\n"), @r"
    moving.ferry.test A: already 127.0.0.81
    moving.ferry.test A: the primary answers 127.0.0.81 (check 1)
    moving.ferry.test A: resuming the wait for the old ttl: none left
    moving.ferry.test A: the old ttl (2s) has passed; resolvers no longer hold the old values
    ");
}

#[tokio::test]
async fn a_wait_for_another_record_or_an_unreadable_one_is_ignored_with_a_line() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step(
        "moving",
        Action::Create,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    recorder.apply(&provider, &create).await.unwrap();
    let update = step(
        "moving",
        Action::Update,
        waiting("moving", 1, &["127.0.0.81"]),
    );

    let resumed = Recorder::default();
    for recorded in [
        token("other.ferry.test", &["127.0.0.80"], 2, unix_now() + 3600),
        // An ARM operation, as the Azure providers record theirs.
        r#"{"method":"PUT","resource_url":"https://management.azure.com/x"}"#.to_owned(),
        "garbage".to_owned(),
    ] {
        resumed
            .apply_resuming(&provider, &update, Some(&recorded))
            .await
            .unwrap();
    }
    insta::assert_snapshot!(resumed.lines().join("\n"), @r"
    moving.ferry.test A: the recorded wait for the old ttl is for other.ferry.test A, not this record; ignoring it
    moving.ferry.test A: already 127.0.0.81
    moving.ferry.test A: the primary answers 127.0.0.81 (check 1)
    moving.ferry.test A: the recorded resume token is not a wait for the old ttl that this version of ferry wrote; ignoring it
    moving.ferry.test A: already 127.0.0.81
    moving.ferry.test A: the primary answers 127.0.0.81 (check 1)
    moving.ferry.test A: the recorded resume token is not a wait for the old ttl that this version of ferry wrote; ignoring it
    moving.ferry.test A: already 127.0.0.81
    moving.ferry.test A: the primary answers 127.0.0.81 (check 1)
    ");
    assert!(resumed.resume_tokens().is_empty());
}

#[tokio::test]
async fn a_change_made_while_an_earlier_wait_is_owed_waits_for_both_and_records_both() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step(
        "moving",
        Action::Create,
        waiting("moving", 1, &["127.0.0.81"]),
    );
    recorder.apply(&provider, &create).await.unwrap();

    // An interrupted apply replaced .80 (ttl 3) with .81 (ttl 1); this one, planned anew,
    // sets .82: it owes .81's second and the rest of .80's wait, capped at 3s.
    let until = unix_now() + 3600;
    let recorded = token("moving.ferry.test", &["127.0.0.80"], 3, until);
    let update = step(
        "moving",
        Action::Update,
        waiting("moving", 1, &["127.0.0.82"]),
    );
    let resumed = Recorder::default();
    resumed
        .apply_resuming(&provider, &update, Some(&recorded))
        .await
        .unwrap();
    assert_eq!(bind.dig("moving", "A"), vec!["127.0.0.82"]);
    let lines = resumed.lines();
    assert!(
        lines.contains(
            &"moving.ferry.test A: waiting 3s, the old ttl, so that resolvers' cached answers expire"
                .to_owned()
        ),
        "{lines:?}"
    );
    // The journal's last token, the one a further interruption would resume, keeps the
    // earlier deadline.
    let tokens = resumed.resume_tokens();
    let wait = fields(tokens.last().unwrap());
    assert_eq!(wait["replaced"], json!(["127.0.0.81", "127.0.0.80"]));
    assert_eq!(wait["ttl"], json!(3));
    assert_eq!(wait["until_unix"], json!(until));
}
