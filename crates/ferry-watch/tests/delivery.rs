//! Webhook delivery against a real receiver on 127.0.0.1: refused, then up, then a 500, then a
//! 200 delivers the alert exactly once; a 400 is final; a Retry-After past the bound gives up at
//! once; an attempt that gets no answer is timed out and tried again; the give-up names the
//! webhook without its token.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ferry_core::{Attributes, Health, Observation, Snapshot};
use ferry_testkit::webhook_receiver::{Answer, WebhookReceiver, unused_loopback_address, url_of};
use ferry_watch::{
    Alert, AlertRef, DeliveryError, DeliveryEvent, Destination, RetryPolicy, Tracker,
    WebhookFormat, deliver,
};

/// Short waits, so that the test does not sleep for long; the bound is far.
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
        attempt_timeout: Duration::from_secs(10),
        bound: Duration::from_secs(60),
    }
}

fn an_alert() -> Alert {
    let mut snapshot = Snapshot::new(1);
    snapshot.insert(
        "aks_cluster.hub@g1".parse().unwrap(),
        Observation::Present {
            attributes: Attributes::new(),
            health: Health::Unhealthy {
                reason: "GET /readyz timed out after 5s".into(),
            },
        },
    );
    Tracker::new("data100", Duration::ZERO)
        .update(&snapshot, SystemTime::UNIX_EPOCH)
        .remove(0)
}

#[tokio::test]
async fn a_webhook_down_then_up_then_failing_once_gets_the_alert_exactly_once() {
    let address = unused_loopback_address();
    let destination = Destination::Webhook {
        url: url_of(address),
        format: WebhookFormat::Alertmanager,
    };
    let receiver: Mutex<Option<WebhookReceiver>> = Mutex::new(None);
    let events = Mutex::new(Vec::new());
    // The receiver comes up when the first attempt was refused, and answers 500 once.
    let on_event = |event: &DeliveryEvent| {
        events.lock().unwrap().push(event.clone());
        let mut receiver = receiver.lock().unwrap();
        if receiver.is_none() {
            *receiver = Some(WebhookReceiver::start_on(
                address,
                vec![Answer::status(500)],
            ));
        }
    };
    let alert = an_alert();
    let attempts = deliver(
        AlertRef::Health(&alert),
        &destination,
        &reqwest::Client::new(),
        &quick_policy(),
        &on_event,
    )
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    let events = events.into_inner().unwrap();
    let reasons: Vec<String> = events
        .iter()
        .map(
            |DeliveryEvent::AttemptFailed {
                 attempt, reason, ..
             }| format!("{attempt}: {reason}"),
        )
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("1: cannot connect: "), "{reasons:?}");
    assert_eq!(reasons[1], "2: it answered 500 Internal Server Error");
    let receiver = receiver.into_inner().unwrap().unwrap();
    let received = receiver.received();
    assert_eq!(
        received
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        [500, 200],
        "the 500 and then the one delivery"
    );
    assert_eq!(received[0].body, received[1].body, "the same body again");
    assert_eq!(received[1].path, "/alerts");
    assert_eq!(
        received[1].content_type.as_deref(),
        Some("application/json")
    );
    let accepted = receiver.wait_for_accepted(1);
    assert_eq!(accepted.len(), 1);
    let expected =
        serde_json::to_value(ferry_watch::alertmanager::message(AlertRef::Health(&alert))).unwrap();
    assert_eq!(accepted[0], expected);
    assert_eq!(
        accepted[0]["alerts"][0]["labels"]["resource"],
        "aks_cluster.hub@g1"
    );
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let receiver = WebhookReceiver::start(vec![Answer::status(400)]);
    let events = Mutex::new(Vec::new());
    let alert = an_alert();
    let failure = deliver(
        AlertRef::Health(&alert),
        &Destination::Webhook {
            url: receiver.url(),
            format: WebhookFormat::Ferry,
        },
        &reqwest::Client::new(),
        &quick_policy(),
        &|event| events.lock().unwrap().push(event.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        failure.to_string(),
        format!(
            "the webhook {} did not take the alert after 1 attempt: it answered 400 Bad Request, which another attempt would not change; check the URL and that the receiver is up",
            receiver.url()
        )
    );
    assert!(events.into_inner().unwrap().is_empty());
    assert_eq!(receiver.received().len(), 1);
    // The ferry format is the alert as it serialises.
    let body: serde_json::Value = serde_json::from_str(&receiver.received()[0].body).unwrap();
    assert_eq!(body, serde_json::to_value(&alert).unwrap());
}

#[tokio::test]
async fn a_429_asking_for_more_than_the_bound_gives_up_at_once_and_the_token_is_masked() {
    let receiver = WebhookReceiver::start(vec![Answer {
        status: 429,
        retry_after: Some("3600".into()),
    }]);
    let url = format!("{}?token=s3cr3t-token", receiver.url());
    let alert = an_alert();
    let failure = deliver(
        AlertRef::Health(&alert),
        &Destination::Webhook {
            url,
            format: WebhookFormat::Ferry,
        },
        &reqwest::Client::new(),
        &quick_policy(),
        &|_| {},
    )
    .await
    .unwrap_err();
    let DeliveryError::Webhook { url, attempts, .. } = &failure else {
        panic!("{failure:?}");
    };
    assert_eq!(*attempts, 1);
    assert_eq!(*url, format!("{}?token=***", receiver.url()));
    let message = failure.to_string();
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(
        message.contains(
            "it answered 429 Too Many Requests, and the next attempt, in 3600.0s, would pass the bound of 60s"
        ),
        "{message}"
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn an_attempt_without_an_answer_times_out_and_the_last_one_gives_up() {
    // A listener that never accepts: the connection opens (the backlog takes it), no answer
    // ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = url_of(silent.local_addr().unwrap());
    let events = Mutex::new(Vec::new());
    let alert = an_alert();
    let failure = deliver(
        AlertRef::Readiness(&ferry_watch::ReadinessAlert {
            deployment: alert.deployment.clone(),
            alert: "failover_readiness",
            ready: false,
            generation: 1,
            to_generation: 2,
            failover: Default::default(),
            since: alert.since.clone(),
            began: alert.since.clone(),
            severity: ferry_watch::Severity::Warning,
        }),
        &Destination::Webhook {
            url,
            format: WebhookFormat::Alertmanager,
        },
        &reqwest::Client::new(),
        &RetryPolicy {
            attempts: 2,
            attempt_timeout: Duration::from_millis(200),
            ..quick_policy()
        },
        &|event| events.lock().unwrap().push(event.clone()),
    )
    .await
    .unwrap_err();
    assert!(
        failure
            .to_string()
            .contains("after 2 attempts: it did not answer within 0.2s"),
        "{failure}"
    );
    assert_eq!(events.into_inner().unwrap().len(), 1);
    drop(silent);
}
