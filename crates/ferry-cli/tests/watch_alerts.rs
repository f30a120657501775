//! `ferry watch --webhook-format alertmanager` as an operator runs it, against a webhook
//! receiver on 127.0.0.1 that is down when the alert fires, then comes up and fails once: each
//! failed attempt is on stderr (the token masked), the alert arrives exactly once, and the
//! return to healthy arrives resolved with the same fingerprint.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_testkit::webhook_receiver::{Answer, WebhookReceiver, unused_loopback_address};
use support::Scratch;

/// Replaces the world file in one rename, so that the running watch never reads half of it.
fn set_world_atomically(scratch: &Scratch, world: &serde_json::Value) {
    let temporary = scratch.path().join("world.json.new");
    std::fs::write(&temporary, world.to_string()).unwrap();
    std::fs::rename(temporary, scratch.path().join("world.json")).unwrap();
}

#[test]
fn watch_retries_a_webhook_that_is_down_then_failing_and_delivers_firing_then_resolved_once() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let address = unused_loopback_address();
    let url = format!("http://{address}/alerts?token=hunter2-s3cret");
    let mut child = scratch
        .command(&[
            "watch",
            "data100",
            "--world",
            "world.json",
            "--interval",
            "50ms",
            "--hold",
            "0s",
            "--webhook",
            &url,
            "--webhook-format",
            "alertmanager",
            "--webhook-backoff",
            "300ms",
            "--plan-on-failure",
            "failover.plan",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stderr is read as it comes: the receiver starts once the first attempt was refused.
    let stderr_lines = Arc::new(Mutex::new(Vec::new()));
    let (first_refusal, refused) = std::sync::mpsc::channel();
    {
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let stderr_lines = stderr_lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("(attempt 1 of 5)") {
                    let _ = first_refusal.send(());
                }
                stderr_lines.lock().unwrap().push(line);
            }
        });
    }
    refused
        .recv_timeout(Duration::from_secs(30))
        .expect("the first attempt is refused and said so");
    let receiver = WebhookReceiver::start_on(address, vec![Answer::status(500)]);
    let firing = receiver.wait_for_accepted(1);
    assert_eq!(firing.len(), 1, "{:?}", receiver.received());

    let mut world = scratch.world();
    world["unhealthy"] = serde_json::json!({});
    set_world_atomically(&scratch, &world);
    let bodies = receiver.wait_for_accepted(2);
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));

    let received = receiver.received();
    let statuses: Vec<u16> = received.iter().map(|request| request.status).collect();
    // Whether the second attempt came before the receiver was up is a race; what counts is
    // that the 500 was retried and each alert was taken exactly once.
    assert_eq!(statuses, [500, 200, 200], "{received:?}");
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(bodies.len(), 2);
    let (firing, resolved) = (&bodies[0], &bodies[1]);
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(
        firing["alerts"][0]["labels"]["resource"],
        "aks_cluster.hub@g1"
    );
    assert_eq!(
        firing["alerts"][0]["annotations"]["plan_written"],
        "failover.plan"
    );
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"],
        firing["alerts"][0]["fingerprint"]
    );

    let stderr = stderr_lines.lock().unwrap().join("\n");
    assert!(!stderr.contains("hunter2"), "the token is masked: {stderr}");
    let masked = format!("http://{address}/alerts?token=***");
    assert!(
        stderr.contains(&format!(
            "warning: the webhook {masked} did not take the alert (attempt 1 of 5): cannot connect: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: the webhook {masked} did not take the alert (attempt 2 of 5): it answered 500 Internal Server Error; trying again in "
        )) || stderr.contains("(attempt 3 of 5): it answered 500 Internal Server Error"),
        "{stderr}"
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(printed.lines().count(), 2, "{printed}");
}

#[test]
fn watch_gives_up_on_a_webhook_answering_400_at_once_and_says_so() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let receiver = WebhookReceiver::start(vec![Answer::status(400)]);
    let run = scratch.ferry(&[
        "watch",
        "data100",
        "--world",
        "world.json",
        "--hold",
        "0s",
        "--webhook",
        &receiver.url(),
        "--webhook-format",
        "alertmanager",
        "--rounds",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(receiver.received().len(), 1, "a 400 is not retried");
    assert!(
        run.stderr.ends_with(&format!(
            "error: the webhook {} did not take the alert after 1 attempt: it answered 400 Bad Request, which another attempt would not change; check the URL and that the receiver is up\n",
            receiver.url()
        )),
        "{}",
        run.stderr
    );
}
