//! The `check` provider against local servers: HTTP statuses, HTTPS and TLS with certificates
//! from a test CA (valid, expired, for another name, expiring soon, unknown issuer), and a DNS
//! name whose answer changes during the wait.

mod support;

use std::path::Path;

use ferry_core::{Action, Health, Observation};
use ferry_hook::CheckProvider;
use serde_json::json;
use support::{
    TestCa, Validity, apply, changing_dns_server, http_server, https_server, read, step,
};

fn wait(inputs: serde_json::Value) -> ferry_core::Step {
    step("check.service", Action::Wait, inputs)
}

/// A progress line without its elapsed seconds (`check 2 (1s): ...`), which vary.
fn without_elapsed(line: &str) -> String {
    match line.split_once(" (") {
        Some((head, rest)) => format!(
            "{head}{}",
            rest.split_once(')').map_or("", |(_, tail)| tail)
        ),
        None => line.to_owned(),
    }
}

fn redact(text: &str, port: u16, ca: Option<&TestCa>) -> String {
    let text = text.replace(&port.to_string(), "PORT");
    match ca {
        Some(ca) => text.replace(&ca.folder.path().display().to_string(), "CA_FOLDER"),
        None => text,
    }
}

#[tokio::test]
async fn an_http_check_waits_for_the_expected_status() {
    let server = http_server(vec![503, 502, 200]).await;
    let provider = CheckProvider::new(Path::new("/"));
    let url = format!("http://127.0.0.1:{}/hub/health", server.port());
    let (result, lines) = apply(
        &provider,
        &wait(json!({"type": "http", "url": url, "interval_seconds": 1, "timeout_seconds": 60})),
    )
    .await;
    result.unwrap();
    let lines: Vec<String> = lines
        .iter()
        .map(|line| redact(line, server.port(), None))
        .map(|line| without_elapsed(&line))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[tokio::test]
async fn an_http_check_that_never_passes_ends_with_the_last_error() {
    let server = http_server(vec![404]).await;
    let provider = CheckProvider::new(Path::new("/"));
    let url = format!("http://127.0.0.1:{}/", server.port());
    let inputs = json!({"type": "http", "url": url, "expect_status": 200, "interval_seconds": 1, "timeout_seconds": 1});
    let (result, _) = apply(&provider, &wait(inputs.clone())).await;
    let error = result.unwrap_err();
    assert!(!error.transient);
    insta::assert_snapshot!(redact(&error.message, server.port(), None));
    let observed = read(&provider, "check.service", inputs, None).await;
    let Observation::Present {
        health: Health::Unhealthy { reason },
        ..
    } = observed
    else {
        panic!("expected unhealthy, got {observed:?}")
    };
    assert_eq!(
        redact(&reason, server.port(), None),
        "GET http://127.0.0.1:PORT/ answered 404, expected 200"
    );
    let expected_404 = json!({"type": "http", "url": url, "expect_status": 404});
    assert!(
        read(&provider, "check.service", expected_404, None)
            .await
            .is_healthy()
    );
}

#[tokio::test]
async fn https_and_tls_checks_pass_on_a_valid_certificate() {
    let ca = TestCa::new();
    let (certificate, key) = ca.leaf(&["127.0.0.1"], Validity::Long);
    let server = https_server(certificate, key).await;
    let provider = CheckProvider::new(ca.folder.path());
    let https = json!({"type": "http", "url": format!("https://127.0.0.1:{}/", server.port()), "ca_file": "ca.pem"});
    let observed = read(&provider, "check.https", https, None).await;
    assert!(observed.is_healthy(), "{observed:?}");
    let tls = json!({"type": "tls", "host": "127.0.0.1", "port": server.port(), "ca_file": "ca.pem", "min_days_valid": 30});
    let (result, lines) = apply(&provider, &wait(tls)).await;
    result.unwrap();
    assert_eq!(
        redact(&lines[0], server.port(), None)
            .split_once(": ")
            .unwrap()
            .1,
        "passed: 127.0.0.1:PORT serves a valid certificate, valid for at least 30 more days"
    );
}

#[tokio::test]
async fn a_tls_check_with_connect_to_reaches_an_address_but_verifies_the_name() {
    // A new ingress serves the hub's name before any resolver points the name at it.
    let ca = TestCa::new();
    let (certificate, key) = ca.leaf(&["hub.data100.example.org"], Validity::Long);
    let server = https_server(certificate, key).await;
    let provider = CheckProvider::new(ca.folder.path());
    let tls = json!({"type": "tls", "host": "hub.data100.example.org", "connect_to": "127.0.0.1", "port": server.port(), "ca_file": "ca.pem"});
    let (result, lines) = apply(&provider, &wait(tls)).await;
    result.unwrap();
    assert_eq!(
        redact(&lines[0], server.port(), None)
            .split_once(": ")
            .unwrap()
            .1,
        "passed: hub.data100.example.org:PORT serves a valid certificate, valid for at least 7 more days"
    );
    // The address changes where ferry connects, never which name the certificate must match.
    let other = json!({"type": "tls", "host": "staging.data100.example.org", "connect_to": "127.0.0.1", "port": server.port(), "ca_file": "ca.pem"});
    let observed = read(&provider, "check.tls", other, None).await;
    let Observation::Present {
        health: Health::Unhealthy { reason },
        ..
    } = observed
    else {
        panic!("expected unhealthy, got {observed:?}")
    };
    insta::assert_snapshot!(redact(&reason, server.port(), Some(&ca)));
}

#[tokio::test]
async fn tls_checks_explain_what_is_wrong_with_a_certificate() {
    let ca = TestCa::new();
    let provider = CheckProvider::new(ca.folder.path());
    let mut reasons = Vec::new();
    for (case, names, validity, ca_file) in [
        ("expired", vec!["127.0.0.1"], Validity::Expired, true),
        (
            "wrong name",
            vec!["hub.other.example"],
            Validity::Long,
            true,
        ),
        (
            "expires soon",
            vec!["127.0.0.1"],
            Validity::DaysFromNow(3),
            true,
        ),
        ("unknown issuer", vec!["127.0.0.1"], Validity::Long, false),
    ] {
        let (certificate, key) = ca.leaf(&names, validity);
        let server = https_server(certificate, key).await;
        let mut fields =
            json!({"type": "tls", "host": "127.0.0.1", "port": server.port(), "min_days_valid": 7});
        if ca_file {
            fields["ca_file"] = json!("ca.pem");
        }
        let observed = read(&provider, "check.tls", fields, None).await;
        let Observation::Present {
            health: Health::Unhealthy { reason },
            ..
        } = observed
        else {
            panic!("{case}: expected unhealthy, got {observed:?}")
        };
        let reason = redact(&reason, server.port(), Some(&ca));
        // The expiry date of the "soon" certificate moves with the calendar.
        let reason = match reason.split_once("expires on ") {
            Some((head, tail)) => format!("{head}expires on DATE{}", &tail[10..]),
            None => reason,
        };
        reasons.push(format!("{case}: {reason}"));
    }
    insta::assert_snapshot!(reasons.join("\n"));

    // HTTPS refuses the same certificates.
    let (certificate, key) = ca.leaf(&["127.0.0.1"], Validity::Expired);
    let server = https_server(certificate, key).await;
    let https = json!({"type": "http", "url": format!("https://127.0.0.1:{}/", server.port()), "ca_file": "ca.pem"});
    let observed = read(&provider, "check.https", https, None).await;
    assert!(
        observed.is_present() && !observed.is_healthy(),
        "{observed:?}"
    );
}

#[tokio::test]
async fn a_dns_check_waits_until_the_name_changes() {
    let server = changing_dns_server("127.0.0.1", "127.0.0.2", 2).await;
    let provider = CheckProvider::new(Path::new("/"));
    let inputs = json!({
        "type": "dns", "host": "hub.data100.example.org", "server": server.address.to_string(),
        "record_type": "A", "expect": ["127.0.0.2"], "interval_seconds": 1, "timeout_seconds": 60,
    });
    let (result, lines) = apply(&provider, &wait(inputs)).await;
    result.unwrap();
    let lines: Vec<String> = lines
        .iter()
        .map(|line| redact(line, server.port(), None))
        .map(|line| without_elapsed(&line))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[tokio::test]
async fn unresolved_or_missing_fields_read_as_unknown() {
    let provider = CheckProvider::new(Path::new("/"));
    let observed = read(
        &provider,
        "check.tls",
        json!({"type": "tls", "host": "${public_ip.ingress@g2.address}"}),
        None,
    )
    .await;
    assert_eq!(
        observed,
        Observation::Unknown {
            reason: "`${public_ip.ingress@g2.address}` is not known yet".to_owned()
        }
    );
}
