//! Where alerts go: a JSON POST to a webhook, and/or a command with the alert in its
//! environment and on its standard input.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{Alert, ReadinessAlert};

/// One place alerts are delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `POST URL` with the alert as a JSON body.
    Webhook(String),
    /// A program and its arguments, run without a shell.
    Command(Vec<String>),
}

/// An alert that did not reach one destination.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(
        "the webhook {url} did not take the alert: {reason}; check the URL and that the receiver is up"
    )]
    Webhook { url: String, reason: String },
    #[error("the alert command `{program}` failed: {reason}")]
    Command { program: String, reason: String },
}

/// Delivers one alert to one destination, with a time limit so that a hung receiver does not
/// stop the watch.
pub async fn deliver(
    alert: &Alert,
    destination: &Destination,
    client: &reqwest::Client,
) -> Result<(), DeliveryError> {
    let body = serde_json::to_string(alert).expect("alerts always serialise");
    let environment = [
        ("FERRY_RESOURCE", alert.resource.to_string()),
        (
            "FERRY_OLD",
            alert
                .old
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        ("FERRY_NEW", alert.new.to_string()),
        ("FERRY_SINCE", alert.since.clone()),
    ];
    send(body, &environment, destination, client).await
}

/// Delivers a change of failover readiness the same way: the JSON body (with `"alert":
/// "failover_readiness"`), and for a command `FERRY_READY` (`true` or `false`) and
/// `FERRY_SINCE`.
pub async fn deliver_readiness(
    alert: &ReadinessAlert,
    destination: &Destination,
    client: &reqwest::Client,
) -> Result<(), DeliveryError> {
    let body = serde_json::to_string(alert).expect("alerts always serialise");
    let environment = [
        ("FERRY_READY", alert.ready.to_string()),
        ("FERRY_SINCE", alert.since.clone()),
    ];
    send(body, &environment, destination, client).await
}

async fn send(
    body: String,
    environment: &[(&str, String)],
    destination: &Destination,
    client: &reqwest::Client,
) -> Result<(), DeliveryError> {
    match destination {
        Destination::Webhook(url) => {
            let failed = |reason: String| DeliveryError::Webhook {
                url: url.clone(),
                reason,
            };
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|error| failed(error.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("it answered {}", response.status())));
            }
            Ok(())
        }
        Destination::Command(argv) => {
            let Some((program, arguments)) = argv.split_first() else {
                return Err(DeliveryError::Command {
                    program: String::new(),
                    reason: "the command is empty".into(),
                });
            };
            let failed = |reason: String| DeliveryError::Command {
                program: program.clone(),
                reason,
            };
            let mut child = tokio::process::Command::new(program)
                .args(arguments)
                .env("FERRY_ALERT", &body)
                .envs(environment.iter().map(|(name, value)| (*name, value)))
                .stdin(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|error| failed(error.to_string()))?;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(body.as_bytes()).await;
            }
            let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .map_err(|_| failed("it ran for more than 60 s".into()))?
                .map_err(|error| failed(error.to_string()))?;
            if !status.success() {
                return Err(failed(format!("it exited with {status}")));
            }
            Ok(())
        }
    }
}
