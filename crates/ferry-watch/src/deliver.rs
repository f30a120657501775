//! Where alerts go: a JSON POST to a webhook (in ferry's format or Alertmanager's, retried with
//! backoff within a bound), and/or a command with the alert in its environment and on its
//! standard input.
//!
//! A webhook that refuses the connection, does not answer in time, or answers 5xx or 429 is
//! tried again after an exponential backoff with jitter (or after its `Retry-After`), until
//! the attempts run out or the next attempt would pass the policy's bound: an alert never holds
//! the watch longer than that. Any other answer (a 4xx) is final, since sending the same body
//! again would get the same answer. Each failed attempt is reported as a [`DeliveryEvent`] and
//! the give-up as a [`DeliveryError`]; both name the webhook by [`mask_url`], never with the
//! token it may carry.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;

use crate::{Alert, ReadinessAlert};

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// ferry's own JSON: the alert as [`Alert`] or [`ReadinessAlert`] serialise.
    #[default]
    Ferry,
    /// The body of Alertmanager's webhook receiver ([`crate::alertmanager`]).
    Alertmanager,
}

/// One place alerts are delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `POST url` with the alert as a JSON body in `format`.
    Webhook { url: String, format: WebhookFormat },
    /// A program and its arguments, run without a shell; it gets ferry's JSON.
    Command(Vec<String>),
}

/// How hard a webhook delivery tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least one is made).
    pub attempts: u32,
    /// The wait before the second attempt; each later wait doubles, up to `max_backoff`. The
    /// wait is drawn between half of it and all of it (jitter), so that watchers restarted
    /// together do not retry together.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// How long one alert's delivery may take in all, waits included: no attempt starts, and no
    /// attempt runs, past it.
    pub bound: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits of about 1, 2, 4 and 8 s, 10 s per attempt, 30 s in all (the default
    /// `--interval`, so that a dead webhook delays the next round by one interval at most).
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(10),
            bound: Duration::from_secs(30),
        }
    }
}

/// An alert of either kind, for delivery.
#[derive(Debug, Clone, Copy)]
pub enum AlertRef<'a> {
    Health(&'a Alert),
    Readiness(&'a ReadinessAlert),
}

impl AlertRef<'_> {
    /// ferry's JSON of the alert.
    fn ferry_json(self) -> String {
        match self {
            AlertRef::Health(alert) => serde_json::to_string(alert),
            AlertRef::Readiness(alert) => serde_json::to_string(alert),
        }
        .expect("alerts always serialise")
    }

    /// What an alert command gets in its environment beside `FERRY_ALERT`.
    fn environment(self) -> Vec<(&'static str, String)> {
        match self {
            AlertRef::Health(alert) => vec![
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
                ("FERRY_SEVERITY", alert.severity.as_str().to_owned()),
            ],
            AlertRef::Readiness(alert) => vec![
                ("FERRY_READY", alert.ready.to_string()),
                ("FERRY_SINCE", alert.since.clone()),
                ("FERRY_SEVERITY", alert.severity.as_str().to_owned()),
            ],
        }
    }
}

/// A failed webhook attempt that will be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    AttemptFailed {
        /// The webhook, masked ([`mask_url`]).
        webhook: String,
        /// 1 for the first attempt.
        attempt: u32,
        attempts: u32,
        reason: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

impl fmt::Display for DeliveryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryEvent::AttemptFailed {
                webhook,
                attempt,
                attempts,
                reason,
                retry_in,
            } => write!(
                f,
                "the webhook {webhook} did not take the alert (attempt {attempt} of {attempts}): {reason}; trying again in {:.1}s",
                retry_in.as_secs_f64()
            ),
        }
    }
}

/// An alert that did not reach one destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The webhook was given up: `url` is masked ([`mask_url`]).
    #[error(
        "the webhook {url} did not take the alert after {attempts} attempt{plural}: {reason}; check the URL and that the receiver is up",
        plural = if *attempts == 1 { "" } else { "s" }
    )]
    Webhook {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("the alert command `{program}` failed: {reason}")]
    Command { program: String, reason: String },
}

/// Delivers one alert to one destination: a webhook with retries under `policy` (each failed
/// attempt that will be retried is passed to `on_event`), a command once with a time limit.
/// Returns how many attempts it took.
pub async fn deliver(
    alert: AlertRef<'_>,
    destination: &Destination,
    client: &reqwest::Client,
    policy: &RetryPolicy,
    on_event: &(dyn Fn(&DeliveryEvent) + Sync),
) -> Result<u32, DeliveryError> {
    match destination {
        Destination::Webhook { url, format } => {
            let body = match format {
                WebhookFormat::Ferry => alert.ferry_json(),
                WebhookFormat::Alertmanager => {
                    serde_json::to_string(&crate::alertmanager::message(alert))
                        .expect("alerts always serialise")
                }
            };
            post_with_retries(url, body, client, policy, on_event).await
        }
        Destination::Command(argv) => {
            run_command(argv, &alert.ferry_json(), &alert.environment()).await?;
            Ok(1)
        }
    }
}

/// What one attempt's failure calls for.
enum Failure {
    /// Try again: after at least this long, when the receiver said so (`Retry-After`).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Sending the same body again would get the same answer.
    Final { reason: String },
}

async fn post_with_retries(
    url: &str,
    body: String,
    client: &reqwest::Client,
    policy: &RetryPolicy,
    on_event: &(dyn Fn(&DeliveryEvent) + Sync),
) -> Result<u32, DeliveryError> {
    let masked = mask_url(url);
    let started = Instant::now();
    let attempts = policy.attempts.max(1);
    let mut backoff = policy.first_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let left = policy.bound.saturating_sub(started.elapsed());
        let timeout = policy.attempt_timeout.min(left);
        let failure = match post_once(url, &body, client, timeout).await {
            Ok(()) => return Ok(attempt),
            Err(failure) => failure,
        };
        let given_up = |reason: String| DeliveryError::Webhook {
            url: masked.clone(),
            attempts: attempt,
            reason: reason.replace(url, &masked),
        };
        let (reason, retry_after) = match failure {
            Failure::Final { reason } => return Err(given_up(reason)),
            Failure::Retry {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        if attempt >= attempts {
            return Err(given_up(reason));
        }
        let wait = retry_after.unwrap_or_else(|| jittered(backoff));
        backoff = (backoff * 2).min(policy.max_backoff);
        if started.elapsed() + wait >= policy.bound {
            return Err(given_up(format!(
                "{reason}, and the next attempt, in {:.1}s, would pass the bound of {}s",
                wait.as_secs_f64(),
                policy.bound.as_secs_f64()
            )));
        }
        on_event(&DeliveryEvent::AttemptFailed {
            webhook: masked.clone(),
            attempt,
            attempts,
            reason: reason.replace(url, &masked),
            retry_in: wait,
        });
        tokio::time::sleep(wait).await;
    }
}

async fn post_once(
    url: &str,
    body: &str,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<(), Failure> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .timeout(timeout)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) if error.is_builder() => {
            return Err(Failure::Final {
                reason: describe(error, timeout),
            });
        }
        Err(error) => {
            return Err(Failure::Retry {
                reason: describe(error, timeout),
                retry_after: None,
            });
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("it answered {status}");
    if status.as_u16() == 429 || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, SystemTime::now()));
        Err(Failure::Retry {
            reason,
            retry_after,
        })
    } else {
        Err(Failure::Final {
            reason: format!("{reason}, which another attempt would not change"),
        })
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110 section 10.2.3), as the wait from
/// `now` (none when the date is past).
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// A wait between half of `backoff` and all of it.
fn jittered(backoff: Duration) -> Duration {
    // A fresh `RandomState` is randomly keyed: enough randomness for jitter, without a crate.
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = 0.5 + (random % 1_000) as f64 / 2_000.0;
    backoff.mul_f64(fraction)
}

/// A request error in words, without its URL: the root cause (`Connection refused`), since
/// reqwest's own text leads with the URL.
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("it did not answer within {}s", timeout.as_secs_f64());
    }
    let connect = error.is_connect();
    let error = error.without_url();
    let mut root: &dyn std::error::Error = &error;
    while let Some(source) = root.source() {
        root = source;
    }
    if connect {
        format!("cannot connect: {root}")
    } else {
        format!("the request failed: {root}")
    }
}

/// A webhook URL fit for a message: the password, every query value and every path segment
/// that looks like a token (long, or mixing letters and digits, as Slack's, PagerDuty's and
/// most webhook keys do) shown as `***`. `https://hooks.slack.com/services/T0/B0/XXXX` shows as
/// `https://hooks.slack.com/services/***/***/***`.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(a webhook URL that does not parse)".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let masked: Vec<String> = parsed
            .query_pairs()
            .map(|(name, _)| format!("{name}=***"))
            .collect();
        parsed.set_query(Some(&masked.join("&")));
    }
    if let Some(segments) = parsed.path_segments() {
        let masked: Vec<String> = segments
            .map(|segment| {
                if looks_like_a_token(segment) {
                    "***".to_owned()
                } else {
                    segment.to_owned()
                }
            })
            .collect();
        parsed.set_path(&masked.join("/"));
    }
    parsed.to_string()
}

fn looks_like_a_token(segment: &str) -> bool {
    let digits = segment.chars().any(|character| character.is_ascii_digit());
    let letters = segment.chars().any(|character| character.is_alphabetic());
    segment.len() >= 16 || (segment.len() >= 6 && digits && letters)
}

async fn run_command(
    argv: &[String],
    body: &str,
    environment: &[(&str, String)],
) -> Result<(), DeliveryError> {
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
        .env("FERRY_ALERT", body)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_webhook_urls_are_masked() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx",
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                "https://events.example.com/alerts?token=s3cr3t&team=ops",
                "https://events.example.com/alerts?token=***&team=***",
            ),
            (
                "https://ferry:hunter2@alerts.example.com/v2/alerts",
                "https://ferry:***@alerts.example.com/v2/alerts",
            ),
            (
                "http://127.0.0.1:9093/alerts",
                "http://127.0.0.1:9093/alerts",
            ),
            ("not a url", "(a webhook URL that does not parse)"),
        ] {
            assert_eq!(mask_url(url), shown, "{url}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        // RFC 9110's example date is `now` plus 0 s; a minute later waits a minute.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(2));
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2));
        }
    }
}
