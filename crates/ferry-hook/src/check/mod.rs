//! The `check` provider: `wait` steps that poll a condition until it holds or time runs out,
//! and readings that probe it once.
//!
//! Each probe is one of `http`, `tls` or `dns`; a probe's failure is a sentence that
//! says what was seen, so that the last one can end the step as its error.

mod dns;
mod http;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{
    Action, ApplyContext, Attributes, Health, Kind, Observation, Provider, ReadContext, Step,
    StepError, StepOutcome, Value,
};

pub use tls::format_date;

/// How long one probe may take before it counts as failed.
/// The spec's bound on a duration, in seconds.
const MAX_SECONDS: u64 = ferry_core::provider::MAX_DURATION_SECONDS.unsigned_abs();

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// `check`
#[derive(Debug, Clone)]
pub struct CheckProvider {
    spec_root: PathBuf,
}

impl CheckProvider {
    /// A relative `ca_file` is found in `spec_root`, the spec's folder.
    pub fn new(spec_root: impl Into<PathBuf>) -> Self {
        Self {
            spec_root: spec_root.into(),
        }
    }
}

/// A check's condition, from its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http {
        url: String,
        expect_status: u16,
        ca_file: Option<PathBuf>,
    },
    Tls {
        host: String,
        port: u16,
        /// Where to connect when not to `host` itself; the certificate must still match `host`.
        connect_to: Option<String>,
        ca_file: Option<PathBuf>,
        min_days_valid: u64,
    },
    Dns {
        host: String,
        server: String,
        record_type: String,
        expect: Vec<String>,
    },
}

/// A check's polling settings and condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    pub probe: Probe,
    pub timeout: Duration,
    pub interval: Duration,
}

/// Reads a check's fields; the spec loader has checked them, so errors here are about values
/// that only became known at apply time.
pub fn settings(fields: &Attributes, spec_root: &Path) -> Result<CheckSettings, String> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let number =
        |name: &str, default: u64| fields.get(name).and_then(Value::as_u64).unwrap_or(default);
    let required = |name: &str| {
        text(name).ok_or_else(|| format!("the check needs `{name}`: add {name} = \"...\""))
    };
    let ca_file = text("ca_file").map(|path| spec_root.join(path));
    let probe = match text("type").as_deref() {
        Some("http") => Probe::Http {
            url: required("url")?,
            expect_status: u16::try_from(number("expect_status", 200))
                .map_err(|_| "expect_status is not an HTTP status".to_owned())?,
            ca_file,
        },
        Some("tls") => Probe::Tls {
            host: required("host")?,
            port: u16::try_from(number("port", 443))
                .map_err(|_| "port is out of range".to_owned())?,
            connect_to: text("connect_to"),
            ca_file,
            min_days_valid: number("min_days_valid", 7),
        },
        Some("dns") => Probe::Dns {
            host: required("host")?,
            server: required("server")?,
            record_type: text("record_type").unwrap_or_else(|| "A".to_owned()),
            expect: fields
                .get("expect")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .map(|value| {
                            value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        Some(other) => {
            return Err(format!(
                "`{other}` is not a check type: use http, tls or dns"
            ));
        }
        None => {
            return Err(
                "the check has no type: add type = \"http\", \"tls\" or \"dns\"".to_owned(),
            );
        }
    };
    let unresolved = match &probe {
        Probe::Http { url, .. } => vec![url.clone()],
        Probe::Tls {
            host, connect_to, ..
        } => [host.clone()]
            .into_iter()
            .chain(connect_to.clone())
            .collect(),
        Probe::Dns {
            host,
            server,
            expect,
            ..
        } => [host.clone(), server.clone()]
            .into_iter()
            .chain(expect.iter().cloned())
            .collect(),
    };
    if let Some(text) = unresolved.iter().find(|text| text.contains("${")) {
        return Err(format!("`{text}` is not known yet"));
    }
    Ok(CheckSettings {
        probe,
        // Held to the spec's bound whatever the inputs say, so that no deadline overflows.
        timeout: Duration::from_secs(number("timeout_seconds", 900).min(MAX_SECONDS)),
        interval: Duration::from_secs(number("interval_seconds", 10).clamp(1, MAX_SECONDS)),
    })
}

impl Probe {
    /// One probe: `Ok` with what passed, or `Err` with what was seen instead.
    pub async fn run(&self) -> Result<String, String> {
        let work = async {
            match self {
                Probe::Http {
                    url,
                    expect_status,
                    ca_file,
                } => http::probe(url, *expect_status, ca_file.as_deref()).await,
                Probe::Tls {
                    host,
                    port,
                    connect_to,
                    ca_file,
                    min_days_valid,
                } => {
                    tls::probe(
                        host,
                        connect_to.as_deref(),
                        *port,
                        ca_file.as_deref(),
                        *min_days_valid,
                    )
                    .await
                }
                Probe::Dns {
                    host,
                    server,
                    record_type,
                    expect,
                } => dns::probe(host, server, record_type, expect).await,
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        }
    }
}

#[async_trait]
impl Provider for CheckProvider {
    fn kind(&self) -> Kind {
        Kind::Check
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        let settings = match settings(context.fields, &self.spec_root) {
            Ok(settings) => settings,
            Err(reason) => return Observation::Unknown { reason },
        };
        let health = match settings.probe.run().await {
            Ok(_) => Health::Healthy,
            Err(reason) => Health::Unhealthy { reason },
        };
        Observation::Present {
            attributes: Attributes::new(),
            health,
        }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        if step.action != Action::Wait {
            // A check holds nothing: every other action has nothing to do.
            return Ok(StepOutcome::default());
        }
        let settings = settings(context.inputs, &self.spec_root)
            .map_err(|message| StepError::permanent(format!("{}: {message}", step.address)))?;
        let started = tokio::time::Instant::now();
        let deadline = started + settings.timeout;
        let mut attempt = 1;
        loop {
            let result = settings.probe.run().await;
            let elapsed = started.elapsed().as_secs();
            match result {
                Ok(passed) => {
                    (context.progress)(format!("check {attempt} ({elapsed}s): passed: {passed}"));
                    return Ok(StepOutcome::default());
                }
                Err(failed) => {
                    (context.progress)(format!("check {attempt} ({elapsed}s): {failed}"));
                    if tokio::time::Instant::now() + settings.interval > deadline {
                        return Err(StepError::permanent(format!(
                            "the check did not pass within {}s ({attempt} {}); the last one: {failed}",
                            settings.timeout.as_secs(),
                            if attempt == 1 { "check" } else { "checks" }
                        )));
                    }
                }
            }
            tokio::time::sleep(settings.interval).await;
            attempt += 1;
        }
    }
}
