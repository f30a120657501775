//! The `dns_record` provider against a real BIND 9 over RFC 2136 with TSIG: every record type
//! created, updated and deleted, ownership kept, a wrong key refused; `dig` checks what the
//! server really serves.

mod support;

use std::time::Duration;

use ferry_core::{Action, Attributes, Observation, Provider, ReadContext, ResourceSpec};
use ferry_dns::{DnsProviderConfig, DnsRecordProvider};
use serde_json::json;
use support::{Bind, LEGACY_NAME, LEGACY_VALUE, Recorder, ZONE, step};

fn provider(zones: std::collections::BTreeMap<String, Attributes>) -> DnsRecordProvider {
    let mut config = DnsProviderConfig::new("data100", zones, "/nonexistent");
    config.wait_interval = Duration::from_millis(50);
    DnsRecordProvider::new(config).unwrap()
}

async fn read(provider: &DnsRecordProvider, name: &str, fields: serde_json::Value) -> Observation {
    let spec = ResourceSpec::new(format!("dns_record.{name}").parse().unwrap());
    let instance = spec.address.at(None);
    let fields: Attributes = serde_json::from_value(fields).unwrap();
    provider
        .read(ReadContext {
            spec: &spec,
            instance: &instance,
            fields: &fields,
            remembered: None,
            outputs: &|_| None,
        })
        .await
}

fn inputs(name: &str, record_type: &str, ttl: u32, values: &[&str]) -> serde_json::Value {
    json!({"zone": ZONE, "name": name, "type": record_type, "ttl": ttl, "values": values})
}

/// One record type's round trip: the values set first and then, and what dig shows for each.
struct Case<'a> {
    name: &'a str,
    record_type: &'a str,
    first: &'a [&'a str],
    second: &'a [&'a str],
    dig_first: &'a [&'a str],
    dig_second: &'a [&'a str],
}

/// Creates, reads, updates and deletes one record set, checking each step with `dig`.
async fn round_trip(bind: &Bind, provider: &DnsRecordProvider, case: Case<'_>) {
    let Case {
        name,
        record_type,
        first,
        second,
        dig_first,
        dig_second,
    } = case;
    let recorder = Recorder::default();
    // `@` is the record's name; the resource needs a name of its own.
    let resource = if name == "@" { "apex" } else { name };
    let marker = if name == "@" {
        "_ferry-owner".to_owned()
    } else {
        format!("_ferry-owner.{name}")
    };
    let create = step(
        resource,
        Action::Create,
        inputs(name, record_type, 300, first),
    );
    let outcome = recorder.apply(provider, &create).await.unwrap();
    let fqdn = if name == "@" {
        ZONE.to_owned()
    } else {
        format!("{name}.{ZONE}")
    };
    assert_eq!(outcome.outputs["fqdn"], json!(fqdn));
    assert_eq!(
        bind.dig(name, record_type),
        dig_first,
        "{record_type} after create"
    );
    assert_eq!(bind.dig_ttl(name, record_type), Some(300));
    assert_eq!(
        bind.dig(&marker, "TXT"),
        vec![format!("\"ferry deployment=data100 type={record_type}\"")]
    );

    let observed = read(provider, resource, inputs(name, record_type, 300, first)).await;
    assert!(observed.is_healthy(), "{observed:?}");
    assert_eq!(observed.attribute("values"), Some(&json!(first)));
    assert_eq!(observed.attribute("managed"), Some(&json!(true)));

    let update = step(
        resource,
        Action::Update,
        inputs(name, record_type, 120, second),
    );
    recorder.apply(provider, &update).await.unwrap();
    assert_eq!(
        bind.dig(name, record_type),
        dig_second,
        "{record_type} after update"
    );
    assert_eq!(bind.dig_ttl(name, record_type), Some(120));

    // A delete step carries no inputs: the provider finds the record in the remembered outputs.
    let delete = step(resource, Action::Delete, json!({}));
    recorder.apply(provider, &delete).await.unwrap();
    assert!(
        bind.dig(name, record_type).is_empty(),
        "{record_type} after delete"
    );
    assert!(bind.dig(&marker, "TXT").is_empty());
    let observed = read(provider, resource, inputs(name, record_type, 120, second)).await;
    assert_eq!(observed, Observation::Absent);
}

#[tokio::test]
async fn creates_updates_and_deletes_every_record_type() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    round_trip(
        &bind,
        &provider,
        Case {
            name: "hub",
            record_type: "A",
            first: &["127.0.0.10", "127.0.0.11"],
            second: &["127.0.0.12"],
            dig_first: &["127.0.0.10", "127.0.0.11"],
            dig_second: &["127.0.0.12"],
        },
    )
    .await;
    round_trip(
        &bind,
        &provider,
        Case {
            name: "hub6",
            record_type: "AAAA",
            first: &["2001:db8::1"],
            second: &["2001:db8::2", "2001:db8::3"],
            dig_first: &["2001:db8::1"],
            dig_second: &["2001:db8::2", "2001:db8::3"],
        },
    )
    .await;
    round_trip(
        &bind,
        &provider,
        Case {
            name: "www",
            record_type: "CNAME",
            first: &["hub.ferry.test"],
            second: &["staging.example.org"],
            dig_first: &["hub.ferry.test."],
            dig_second: &["staging.example.org."],
        },
    )
    .await;
    let long = "k=".to_owned() + &"x".repeat(300);
    let split = format!("\"{}\" \"{}\"", &long[..255], &long[255..]);
    round_trip(
        &bind,
        &provider,
        Case {
            name: "@",
            record_type: "TXT",
            first: &["v=spf1 -all", "hello world"],
            second: &[&long],
            dig_first: &["\"hello world\"", "\"v=spf1 -all\""],
            dig_second: &[&split],
        },
    )
    .await;
}

#[tokio::test]
async fn applying_twice_changes_nothing_the_second_time() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let create = step(
        "twice",
        Action::Create,
        inputs("twice", "A", 300, &["127.0.0.20"]),
    );
    recorder.apply(&provider, &create).await.unwrap();
    recorder.apply(&provider, &create).await.unwrap();
    assert!(
        recorder
            .lines()
            .iter()
            .any(|line| line == "twice.ferry.test A: already 127.0.0.20"),
        "{:?}",
        recorder.lines()
    );
    assert_eq!(bind.dig("twice", "A"), vec!["127.0.0.20"]);
}

#[tokio::test]
async fn a_wrong_tsig_key_is_refused_with_a_clear_error() {
    let bind = Bind::start();
    let wrong = support::generate_secret();
    let provider = provider(bind.zones_with_secret(&wrong));
    let recorder = Recorder::default();
    let create = step(
        "denied",
        Action::Create,
        inputs("denied", "A", 300, &["127.0.0.30"]),
    );
    let error = recorder.apply(&provider, &create).await.unwrap_err();
    assert!(!error.transient);
    assert!(!error.message.contains(&wrong) && !error.message.contains(&bind.secret));
    insta::assert_snapshot!(
        bind.redact(&error.message)
            .replace(&bind.folder.path().display().to_string(), "TEMP")
    );
    assert!(bind.dig("denied", "A").is_empty());
}

#[tokio::test]
async fn a_missing_or_malformed_secret_is_reported_before_anything_is_sent() {
    let bind = Bind::start();
    let recorder = Recorder::default();
    let create = step(
        "nosecret",
        Action::Create,
        inputs("nosecret", "A", 300, &["127.0.0.31"]),
    );
    let unset = provider(bind.zones_with(json!({"tsig_secret_env": "FERRY_TEST_UNSET_SECRET"})));
    let missing = recorder.apply(&unset, &create).await.unwrap_err();
    // Cargo sets CARGO_PKG_NAME for tests: a value that is not base64.
    let not_base64 = provider(bind.zones_with(json!({"tsig_secret_env": "CARGO_PKG_NAME"})));
    let malformed = recorder.apply(&not_base64, &create).await.unwrap_err();
    insta::assert_snapshot!(format!("{}\n{}", missing.message, malformed.message));
}

#[tokio::test]
async fn a_record_ferry_does_not_own_is_left_alone_until_taken_over() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let fields = inputs(LEGACY_NAME, "A", 300, &["127.0.0.40"]);

    let observed = read(&provider, LEGACY_NAME, fields.clone()).await;
    assert!(
        observed.is_present() && !observed.is_healthy(),
        "{observed:?}"
    );
    assert_eq!(observed.attribute("values"), Some(&json!([LEGACY_VALUE])));
    assert_eq!(observed.attribute("managed"), Some(&json!(false)));

    let update = step(LEGACY_NAME, Action::Update, fields.clone());
    let refused = recorder.apply(&provider, &update).await.unwrap_err();
    assert!(!refused.transient);
    let delete = step(LEGACY_NAME, Action::Delete, fields.clone());
    let not_deleted = recorder.apply(&provider, &delete).await.unwrap_err();
    insta::assert_snapshot!(format!("{}\n{}", refused.message, not_deleted.message));
    assert_eq!(bind.dig(LEGACY_NAME, "A"), vec![LEGACY_VALUE]);
    assert!(
        bind.dig(&format!("_ferry-owner.{LEGACY_NAME}"), "TXT")
            .is_empty()
    );

    let mut take_over = fields.clone();
    take_over["take_over"] = json!(true);
    let update = step(LEGACY_NAME, Action::Update, take_over);
    recorder.apply(&provider, &update).await.unwrap();
    assert_eq!(bind.dig(LEGACY_NAME, "A"), vec!["127.0.0.40"]);
    assert_eq!(
        bind.dig(&format!("_ferry-owner.{LEGACY_NAME}"), "TXT"),
        vec!["\"ferry deployment=data100 type=A\""]
    );
    assert!(read(&provider, LEGACY_NAME, fields).await.is_healthy());
}

#[tokio::test]
async fn another_deployments_record_is_refused_and_a_create_never_clobbers() {
    let bind = Bind::start();
    let ours = provider(bind.zones());
    let mut other_config = DnsProviderConfig::new("other", bind.zones(), "/nonexistent");
    other_config.wait_interval = Duration::from_millis(50);
    let theirs = DnsRecordProvider::new(other_config).unwrap();
    let recorder = Recorder::default();
    let create = step(
        "shared",
        Action::Create,
        inputs("shared", "A", 300, &["127.0.0.50"]),
    );
    recorder.apply(&theirs, &create).await.unwrap();
    let stolen = step(
        "shared",
        Action::Create,
        inputs("shared", "A", 300, &["127.0.0.51"]),
    );
    let error = recorder.apply(&ours, &stolen).await.unwrap_err();
    insta::assert_snapshot!(error.message);
    assert_eq!(bind.dig("shared", "A"), vec!["127.0.0.50"]);

    // An A and an AAAA at one name are owned separately.
    let aaaa = step(
        "shared",
        Action::Create,
        inputs("shared", "AAAA", 300, &["2001:db8::50"]),
    );
    recorder.apply(&ours, &aaaa).await.unwrap();
    assert_eq!(
        bind.dig("_ferry-owner.shared", "TXT"),
        vec![
            "\"ferry deployment=data100 type=AAAA\"",
            "\"ferry deployment=other type=A\""
        ]
    );
}

#[tokio::test]
async fn an_unreachable_or_foreign_server_reads_as_unknown() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    // A zone this server does not hold: it answers REFUSED, never a plain "absent".
    let mut zones = bind.zones();
    let settings = zones.remove(ZONE).unwrap();
    zones.insert("elsewhere.test".to_owned(), settings);
    let foreign = DnsRecordProvider::new(DnsProviderConfig::new("data100", zones, "/")).unwrap();
    let observed = read(
        &foreign,
        "x",
        json!({"zone": "elsewhere.test", "name": "x", "type": "A", "values": ["127.0.0.1"]}),
    )
    .await;
    let Observation::Unknown { reason } = observed else {
        panic!("expected unknown, got {observed:?}")
    };
    let refused = bind.redact(&reason);
    drop(bind);
    let observed = read(&provider, "x", inputs("x", "A", 300, &["127.0.0.1"])).await;
    let Observation::Unknown { reason } = observed else {
        panic!("expected unknown, got {observed:?}")
    };
    assert!(reason.contains("did not answer"), "{reason}");
    insta::assert_snapshot!(refused);
}

#[tokio::test]
async fn wait_for_ttl_waits_out_the_replaced_values_ttl_and_reports_it() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let with_wait = |ttl: u32, values: &[&str]| {
        let mut fields = inputs("moving", "A", ttl, values);
        fields["wait_for_ttl"] = json!(true);
        fields
    };
    // A create replaces nothing that a resolver could hold: no wait.
    let create = step("moving", Action::Create, with_wait(2, &["127.0.0.70"]));
    recorder.apply(&provider, &create).await.unwrap();
    assert!(
        !recorder.lines().iter().any(|line| line.contains("old ttl")),
        "{:?}",
        recorder.lines()
    );

    // The update lowers the TTL too: the wait is the old one's, 2s, after the primary
    // answers the new value.
    let update = step("moving", Action::Update, with_wait(1, &["127.0.0.71"]));
    recorder.apply(&provider, &update).await.unwrap();
    assert_eq!(bind.dig("moving", "A"), vec!["127.0.0.71"]);
    let lines = recorder.lines();
    let answered = lines
        .iter()
        .position(|line| line.starts_with("moving.ferry.test A: the primary answers 127.0.0.71"))
        .unwrap();
    let started = lines
        .iter()
        .position(|line| {
            line == "moving.ferry.test A: waiting 2s, the old ttl, so that resolvers' cached answers expire"
        })
        .unwrap();
    assert!(answered < started, "{lines:?}");
    assert_eq!(
        lines.last().unwrap(),
        "moving.ferry.test A: the old ttl (2s) has passed; resolvers no longer hold the old values"
    );

    // Nothing changed, nothing to wait out.
    let before = recorder.lines().len();
    recorder.apply(&provider, &update).await.unwrap();
    assert!(
        !recorder.lines()[before..]
            .iter()
            .any(|line| line.contains("old ttl")),
        "{:?}",
        recorder.lines()
    );
}

/// A delete as a real plan delivers it: the planner gives a delete step no inputs (whether the
/// spec dropped the record or says `ensure = "absent"`), so what it waits for comes from the
/// outputs the state remembers of the record's last change.
#[tokio::test]
async fn a_delete_without_inputs_waits_out_the_old_ttl_as_the_remembered_outputs_say() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let mut fields = inputs("leaving", "A", 3, &["127.0.0.72"]);
    fields["wait_for_ttl"] = json!(true);
    let create = step("leaving", Action::Create, fields.clone());
    let outcome = recorder.apply(&provider, &create).await.unwrap();
    assert_eq!(outcome.outputs["wait"], json!(true));
    assert_eq!(outcome.outputs["wait_for_ttl"], json!(true));

    // They steer ferry and are not the record set's: a reading never carries them, neither
    // from the spec's fields nor from the remembered outputs of a record the spec dropped.
    let observed = read(&provider, "leaving", fields).await;
    let remembered = {
        let spec = ResourceSpec::new("dns_record.leaving".parse().unwrap());
        let instance = spec.address.at(None);
        provider
            .read(ReadContext {
                spec: &spec,
                instance: &instance,
                fields: &Attributes::new(),
                remembered: Some(&outcome.outputs),
                outputs: &|_| None,
            })
            .await
    };
    for observation in [&observed, &remembered] {
        assert!(observation.is_healthy(), "{observation:?}");
        assert_eq!(
            observation.attribute("values"),
            Some(&json!(["127.0.0.72"]))
        );
        assert_eq!(observation.attribute("wait"), None, "{observation:?}");
        assert_eq!(
            observation.attribute("wait_for_ttl"),
            None,
            "{observation:?}"
        );
    }

    let delete = step("leaving", Action::Delete, json!({}));
    let before = recorder.lines().len();
    let started = std::time::Instant::now();
    recorder.apply(&provider, &delete).await.unwrap();
    let elapsed = started.elapsed();
    assert!(bind.dig("leaving", "A").is_empty());
    let lines = recorder.lines()[before..].to_vec();
    let answered = lines
        .iter()
        .position(|line| line.starts_with("leaving.ferry.test A: the primary answers no records"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let waiting = lines
        .iter()
        .position(|line| {
            line == "leaving.ferry.test A: waiting 3s, the old ttl, so that resolvers' cached answers expire"
        })
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(answered < waiting, "{lines:?}");
    assert_eq!(
        lines.last().unwrap(),
        "leaving.ferry.test A: the old ttl (3s) has passed; resolvers no longer hold the old values"
    );
    // A sleep never ends early: a lower bound, not a timing.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    // The wait was journaled as it began, so an interrupted delete resumes it.
    let tokens = recorder.resume_tokens();
    let token: serde_json::Value = serde_json::from_str(tokens.last().unwrap()).unwrap();
    assert_eq!(token["wait_for_old_ttl"]["replaced"], json!(["127.0.0.72"]));
    assert_eq!(token["wait_for_old_ttl"]["ttl"], json!(3));
}

/// A record the spec says `ensure = "absent"` that ferry's state forgot (a lost state file):
/// the delete works from the spec's literal fields, which the planner gives it, and waits as
/// the spec says; its values come from another step's output, so the planner left them out.
#[tokio::test]
async fn an_absent_record_the_state_forgot_is_deleted_from_the_specs_fields() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    Recorder::default()
        .apply(
            &provider,
            &step(
                "forgotten",
                Action::Create,
                inputs("forgotten", "A", 2, &["127.0.0.73"]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(bind.dig("forgotten", "A"), ["127.0.0.73"]);

    let forgetful = Recorder::default();
    let delete = step(
        "forgotten",
        Action::Delete,
        json!({"zone": ZONE, "name": "forgotten", "type": "A", "ttl": 2, "wait_for_ttl": true}),
    );
    forgetful.apply(&provider, &delete).await.unwrap();
    assert!(bind.dig("forgotten", "A").is_empty());
    let lines = forgetful.lines();
    assert_eq!(
        lines.last().unwrap(),
        "forgotten.ferry.test A: the old ttl (2s) has passed; resolvers no longer hold the old values",
        "{lines:?}"
    );
}

/// The remembered `wait_for_ttl` is the last change's: a record whose last update turned it
/// off is deleted without the wait, as the spec said at that change.
#[tokio::test]
async fn a_delete_without_inputs_follows_the_last_changes_wait_for_ttl() {
    let bind = Bind::start();
    let provider = provider(bind.zones());
    let recorder = Recorder::default();
    let mut waiting = inputs("leaving", "A", 3, &["127.0.0.73"]);
    waiting["wait_for_ttl"] = json!(true);
    let create = step("leaving", Action::Create, waiting);
    recorder.apply(&provider, &create).await.unwrap();
    let update = step(
        "leaving",
        Action::Update,
        inputs("leaving", "A", 3, &["127.0.0.74"]),
    );
    let outcome = recorder.apply(&provider, &update).await.unwrap();
    assert_eq!(outcome.outputs["wait_for_ttl"], json!(false));

    let delete = step("leaving", Action::Delete, json!({}));
    let before = recorder.lines().len();
    recorder.apply(&provider, &delete).await.unwrap();
    assert!(bind.dig("leaving", "A").is_empty());
    let lines = recorder.lines()[before..].to_vec();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("leaving.ferry.test A: the primary answers no records"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|line| line.contains("old ttl")),
        "{lines:?}"
    );
    assert!(recorder.resume_tokens().is_empty());
}
