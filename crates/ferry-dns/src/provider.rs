//! The `dns_record` provider: reads and changes record sets through the backend of each
//! record's zone, and keeps to ferry's ownership rules (see [`crate::record`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::fields::dns_record;
use ferry_core::{
    Action, ApplyContext, Attributes, Health, Kind, Observation, Provider, ReadContext, Step,
    StepError, StepOutcome, Value,
};
use serde_json::json;

use crate::azure::{AzureDnsBackend, AzureDnsConfig};
use crate::backend::{BackendError, Change, DnsBackend, Precondition, Reading};
use crate::old_ttl::{OldTtlWait, WaitStart, resumed_wait, wait_out, wall_clock};
use crate::record::{
    RecordKey, RecordSet, RecordType, normalize_zone, same_values, values_for_comparison,
};
use crate::rfc2136::{Rfc2136Backend, Rfc2136Config, ZoneConfigError};

/// The TTL of a record whose spec leaves it out (the rules document the same default).
pub const DEFAULT_TTL: u32 = 300;

/// What the `dns_record` provider needs from the spec.
#[derive(Debug, Clone)]
pub struct DnsProviderConfig {
    /// `[deployment] name`: written into ownership markers.
    pub deployment: String,
    /// `[zones."NAME"]`, as `Spec::zones` holds them.
    pub zones: BTreeMap<String, Attributes>,
    /// The spec's folder, against which a relative `tsig_secret_file` is found.
    pub spec_root: PathBuf,
    /// How long an apply waits for the primary to answer the new values (`wait = true`).
    pub wait_timeout: Duration,
    /// Time between two of those checks.
    pub wait_interval: Duration,
    /// How `backend = "azure"` zones are reached; `None` leaves them unreachable (they read
    /// as unknown, so nothing is planned for them).
    pub azure: Option<AzureDnsAccess>,
}

/// What Azure DNS zones need: the ARM client of the deployment, and its subscription.
#[derive(Debug, Clone)]
pub struct AzureDnsAccess {
    pub client: ferry_arm::ArmClient,
    /// `[deployment] subscription` or `AZURE_SUBSCRIPTION_ID`: a zone without its own
    /// `subscription` is in this one.
    pub subscription: Option<String>,
}

impl DnsProviderConfig {
    /// The usual settings: a minute's wait, checked twice a second.
    pub fn new(
        deployment: impl Into<String>,
        zones: BTreeMap<String, Attributes>,
        spec_root: impl Into<PathBuf>,
    ) -> Self {
        Self {
            deployment: deployment.into(),
            zones,
            spec_root: spec_root.into(),
            wait_timeout: Duration::from_secs(60),
            wait_interval: Duration::from_millis(500),
            azure: None,
        }
    }
}

/// Why the provider cannot be set up for a spec's zones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsSetupError {
    #[error(transparent)]
    Zone(#[from] ZoneConfigError),
    #[error("zone `{zone}` has no backend: add backend = \"rfc2136\" or backend = \"azure\"")]
    NoBackend { zone: String },
    #[error("zone `{zone}`: backend `{backend}` is unknown: use rfc2136 or azure")]
    UnknownBackend { zone: String, backend: String },
}

/// How one zone is reached.
#[derive(Debug, Clone)]
enum ZoneBackend {
    Ready(Arc<dyn DnsBackend>),
    /// A zone ferry cannot reach (an Azure zone without an ARM client); reads are `Unknown`,
    /// so nothing is planned for its records.
    Unavailable(String),
}

/// `dns_record`
#[derive(Debug, Clone)]
pub struct DnsRecordProvider {
    deployment: String,
    zones: BTreeMap<String, ZoneBackend>,
    wait_timeout: Duration,
    wait_interval: Duration,
}

impl DnsRecordProvider {
    /// A provider for every zone of the spec: RFC 2136 zones through their primary, Azure
    /// zones through `config.azure`'s ARM client.
    pub fn new(config: DnsProviderConfig) -> Result<Self, DnsSetupError> {
        let mut zones = BTreeMap::new();
        for (zone, settings) in &config.zones {
            let backend = match settings.get("backend").and_then(Value::as_str) {
                Some("rfc2136") => ZoneBackend::Ready(Arc::new(Rfc2136Backend::new(
                    Rfc2136Config::from_attributes(zone, settings, &config.spec_root)?,
                ))),
                Some("azure") => match &config.azure {
                    Some(access) => ZoneBackend::Ready(Arc::new(AzureDnsBackend::new(
                        access.client.clone(),
                        AzureDnsConfig::from_attributes(
                            zone,
                            settings,
                            access.subscription.as_deref(),
                        )?,
                    ))),
                    None => ZoneBackend::Unavailable(format!(
                        "zone `{zone}` uses Azure DNS, and ferry was set up without an Azure connection: set up the ARM client (FERRY_ARM_ENDPOINT and a credential) and plan again"
                    )),
                },
                Some(other) => {
                    return Err(DnsSetupError::UnknownBackend {
                        zone: zone.clone(),
                        backend: other.to_owned(),
                    });
                }
                None => return Err(DnsSetupError::NoBackend { zone: zone.clone() }),
            };
            zones.insert(normalize_zone(zone), backend);
        }
        Ok(Self {
            deployment: config.deployment,
            zones,
            wait_timeout: config.wait_timeout,
            wait_interval: config.wait_interval,
        })
    }

    /// Serves `zone` through `backend` instead of the one its settings name (tests wrap a
    /// backend this way).
    pub fn with_backend(mut self, zone: &str, backend: Arc<dyn DnsBackend>) -> Self {
        self.zones
            .insert(normalize_zone(zone), ZoneBackend::Ready(backend));
        self
    }

    fn backend(&self, zone: &str) -> Result<&Arc<dyn DnsBackend>, String> {
        match self.zones.get(&normalize_zone(zone)) {
            Some(ZoneBackend::Ready(backend)) => Ok(backend),
            Some(ZoneBackend::Unavailable(why)) => Err(why.clone()),
            None => Err(format!(
                "zone `{zone}` is not declared: add [zones.\"{zone}\"] to the spec"
            )),
        }
    }

    /// Reads the backend until it answers `expected` (or no record set, for `None`).
    /// After a change (or finding it made): records the old values' TTL as owed, as soon as
    /// they are gone; with `wanted.wait`, waits until the primary answers `expected` (`None`: no
    /// records) and records the wait again, since the TTL counts from then; then waits out
    /// what is owed, by this change or by an interrupted earlier attempt (`resumed`).
    async fn settle(
        &self,
        backend: &dyn DnsBackend,
        wanted: &Wanted,
        expected: Option<&RecordSet>,
        replaced: Option<&RecordSet>,
        resumed: Option<OldTtlWait>,
        context: &ApplyContext<'_>,
    ) -> Result<(), StepError> {
        let key = &wanted.key;
        let mut owed = owe_old_ttl(key, replaced, resumed, context.record_resume_token);
        if wanted.wait {
            self.wait_for(backend, key, expected, context.progress)
                .await?;
            owed = owe_old_ttl(key, replaced, owed, context.record_resume_token);
        }
        if let Some(owed) = &owed {
            let start = if replaced.is_some() {
                WaitStart::Fresh
            } else {
                WaitStart::Resumed
            };
            wait_out(owed, key, start, context.progress).await;
        }
        Ok(())
    }

    async fn wait_for(
        &self,
        backend: &dyn DnsBackend,
        key: &RecordKey,
        expected: Option<&RecordSet>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), StepError> {
        let deadline = tokio::time::Instant::now() + self.wait_timeout;
        let mut attempt = 1;
        loop {
            let answer = backend.read(key).await;
            let done = match (&answer, expected) {
                (Ok(reading), Some(expected)) => reading.record_set.as_ref().is_some_and(|set| {
                    same_values(key.record_type, &set.values, &expected.values)
                        && set.ttl == expected.ttl
                }),
                (Ok(reading), None) => reading.record_set.is_none(),
                (Err(_), _) => false,
            };
            let seen = match &answer {
                Ok(Reading {
                    record_set: Some(set),
                    ..
                }) => set.values.join(", "),
                Ok(_) => "no records".to_owned(),
                Err(error) => error.to_string(),
            };
            let authority = backend.authority();
            if done {
                progress(format!(
                    "{key}: {authority} answers {seen} (check {attempt})"
                ));
                return Ok(());
            }
            progress(format!(
                "{key}: waiting for {authority}, which answers {seen} (check {attempt})"
            ));
            if tokio::time::Instant::now() + self.wait_interval > deadline {
                return Err(StepError::transient(
                    format!(
                        "{key}: {authority} still answers {seen} after {}s: the change was sent; check the server's zone, then apply again",
                        self.wait_timeout.as_secs()
                    ),
                    None,
                ));
            }
            tokio::time::sleep(self.wait_interval).await;
            attempt += 1;
        }
    }
}

/// Records the wait for the old TTL that a step owes once its change replaced `replaced`
/// (`None` when it replaced nothing resolvers could hold, or `wait_for_ttl` is off), together
/// with `owed`, what it owed already: an interrupted attempt's wait, or this step's own
/// recorded earlier. Records only what differs from `owed`, so that a wait restated in the
/// same second is not journaled twice.
fn owe_old_ttl(
    key: &RecordKey,
    replaced: Option<&RecordSet>,
    owed: Option<OldTtlWait>,
    record_resume_token: &(dyn Fn(String) + Send + Sync),
) -> Option<OldTtlWait> {
    let Some(replaced) = replaced else {
        return owed;
    };
    let fresh = OldTtlWait::starting(key, replaced, wall_clock());
    let wait = match &owed {
        Some(earlier) => fresh.merged(earlier),
        None => fresh,
    };
    if owed.as_ref() != Some(&wait) {
        record_resume_token(wait.to_token());
    }
    Some(wait)
}

/// A record's identity and wishes, from a step's inputs or a reading's fields.
#[derive(Debug, Clone)]
struct Wanted {
    key: RecordKey,
    ttl: u32,
    values: Option<Vec<String>>,
    take_over: bool,
    wait: bool,
    wait_for_ttl: bool,
}

fn wanted(fields: &Attributes) -> Result<Wanted, String> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let zone = text(dns_record::ZONE).ok_or("the record has no zone")?;
    let name = text("name").ok_or("the record has no name")?;
    let record_type: RecordType = text("type")
        .unwrap_or("A")
        .parse()
        .map_err(|error: crate::record::UnknownRecordType| error.to_string())?;
    for (field, value) in [(dns_record::ZONE, zone), ("name", name)] {
        if value.contains("${") {
            return Err(format!("its {field} `{value}` is not known yet"));
        }
    }
    let values = fields
        .get("values")
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .map(|value| {
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned)
                })
                .collect::<Vec<String>>()
        });
    Ok(Wanted {
        key: RecordKey::new(zone, name, record_type),
        ttl: fields
            .get("ttl")
            .and_then(Value::as_u64)
            .and_then(|ttl| u32::try_from(ttl).ok())
            .unwrap_or(DEFAULT_TTL),
        values,
        take_over: fields.get("take_over").and_then(Value::as_bool) == Some(true),
        wait: fields.get("wait").and_then(Value::as_bool) != Some(false),
        wait_for_ttl: fields.get("wait_for_ttl").and_then(Value::as_bool) == Some(true),
    })
}

fn step_error(error: BackendError) -> StepError {
    if error.is_transient() {
        StepError::transient(error.to_string(), None)
    } else {
        StepError::permanent(error.to_string())
    }
}

/// The attributes of an observed or written record set, named as the spec names them.
fn attributes(
    fields: &Attributes,
    key: &RecordKey,
    set: &RecordSet,
    desired: Option<&[String]>,
) -> Attributes {
    let mut attributes = Attributes::new();
    // Identity fields echo the spec's spelling, so that `Example.org` in the spec and
    // `example.org` on the wire are not a difference.
    for (field, fallback) in [
        (dns_record::ZONE, json!(key.zone)),
        ("name", json!(key.name)),
        ("type", json!(key.record_type.as_str())),
    ] {
        attributes.insert(
            field.to_owned(),
            fields.get(field).cloned().unwrap_or(fallback),
        );
    }
    attributes.insert("ttl".to_owned(), json!(set.ttl));
    attributes.insert(
        "values".to_owned(),
        json!(values_for_comparison(key.record_type, &set.values, desired)),
    );
    attributes.insert("fqdn".to_owned(), json!(key.fqdn()));
    attributes
}

/// The outputs of a create, update or replace, which the state remembers: the record set as
/// written, and what a later delete of it must do beyond deleting it. The delete of a record
/// the spec dropped carries no inputs, so without `wait` and `wait_for_ttl` here it would fall
/// back to their defaults and never wait for the old TTL. They steer ferry and are not attributes of the
/// record set: `read` never reports them, even for a record read from what the state
/// remembers, and the planner never compares the spec's with a reading
/// (`DnsRecordRules::is_observed`).
fn written_outputs(fields: &Attributes, wanted: &Wanted, written: &RecordSet) -> Attributes {
    let mut outputs = attributes(fields, &wanted.key, written, Some(&written.values));
    outputs.insert("wait".to_owned(), json!(wanted.wait));
    outputs.insert("wait_for_ttl".to_owned(), json!(wanted.wait_for_ttl));
    outputs
}

fn ownership_refusal(
    backend: &dyn DnsBackend,
    key: &RecordKey,
    owners: &[String],
    deployment: &str,
    doing: Doing,
) -> String {
    let holder = if owners.is_empty() {
        format!(
            "it has no ferry ownership marker ({})",
            backend.ownership_marker(key, deployment)
        )
    } else {
        format!("ferry deployment `{}` owns it", owners.join("`, `"))
    };
    let next = match doing {
        Doing::Change => "ferry will not change it without take_over = true in the spec",
        Doing::Delete => {
            "ferry deletes only records it owns: delete it by hand, or let ferry take it over first (take_over = true)"
        }
    };
    format!("{key} exists and this deployment does not own it: {holder}; {next}")
}

/// What ferry was about to do to a record it does not own.
#[derive(Debug, Clone, Copy)]
enum Doing {
    Change,
    Delete,
}

#[async_trait]
impl Provider for DnsRecordProvider {
    fn kind(&self) -> Kind {
        Kind::DnsRecord
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        // A record dropped from the spec is read with what the state remembers of it.
        let fields = if context.fields.contains_key(dns_record::ZONE) {
            context.fields
        } else if let Some(remembered) = context.remembered {
            remembered
        } else {
            context.fields
        };
        let wanted = match wanted(fields) {
            Ok(wanted) => wanted,
            Err(reason) => return Observation::Unknown { reason },
        };
        let backend = match self.backend(&wanted.key.zone) {
            Ok(backend) => backend,
            Err(reason) => return Observation::Unknown { reason },
        };
        let reading = match backend.read(&wanted.key).await {
            Ok(reading) => reading,
            Err(error) => {
                return Observation::Unknown {
                    reason: error.to_string(),
                };
            }
        };
        let Some(set) = &reading.record_set else {
            return Observation::Absent;
        };
        let mut attributes = attributes(fields, &wanted.key, set, wanted.values.as_deref());
        let owned = reading.owners.contains(&self.deployment);
        attributes.insert("managed".to_owned(), json!(owned));
        let health = if owned {
            Health::Healthy
        } else {
            Health::Unhealthy {
                reason: ownership_refusal(
                    backend.as_ref(),
                    &wanted.key,
                    &reading.owners,
                    &self.deployment,
                    Doing::Change,
                ),
            }
        };
        Observation::Present { attributes, health }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let deleting = matches!(step.action, Action::Delete | Action::Retire);
        if !deleting
            && !matches!(
                step.action,
                Action::Create | Action::Update | Action::Replace
            )
        {
            return Err(StepError::permanent(format!(
                "a dns_record has no `{}` step: plan again with this version of ferry",
                step.action
            )));
        }
        // A delete the spec asks for (`ensure = "absent"`) carries the spec's literal fields;
        // one of a record the spec dropped carries none: the record is the one the state
        // remembers, with the `wait` and `wait_for_ttl` of its last change (`written_outputs`).
        let remembered;
        let fields = if context.inputs.contains_key(dns_record::ZONE) {
            context.inputs
        } else {
            remembered = (context.outputs)(&step.address).unwrap_or_default();
            &remembered
        };
        let wanted = wanted(fields)
            .map_err(|reason| StepError::permanent(format!("{}: {reason}", step.address)))?;
        let backend = self
            .backend(&wanted.key.zone)
            .map_err(StepError::permanent)?;
        let key = &wanted.key;
        // An interrupted attempt may have replaced values and not waited out their TTL: that
        // wait is still owed, although this attempt will find the change made.
        let resumed = resumed_wait(
            context.resume_token,
            key,
            wanted.wait_for_ttl,
            context.progress,
        );
        let reading = backend.read(key).await.map_err(step_error)?;
        let owned = reading.owners.contains(&self.deployment);
        if deleting {
            if reading.record_set.is_none() && !owned {
                (context.progress)(format!("{key}: already gone"));
                if let Some(wait) = &resumed {
                    wait_out(wait, key, WaitStart::Resumed, context.progress).await;
                }
                return Ok(StepOutcome::default());
            }
            if reading.record_set.is_some() && !owned {
                return Err(StepError::permanent(ownership_refusal(
                    backend.as_ref(),
                    key,
                    &reading.owners,
                    &self.deployment,
                    Doing::Delete,
                )));
            }
            let change = Change::Delete {
                owner: self.deployment.clone(),
                precondition: Precondition::Unchanged(reading.version.clone()),
            };
            backend.write(key, &change).await.map_err(step_error)?;
            (context.progress)(format!("{key}: deleted through {}", backend.describe()));
            // Recorded as soon as the values are gone, so that an interruption while the
            // primary is checked still leaves the wait owed.
            let replaced = reading.record_set.as_ref().filter(|_| wanted.wait_for_ttl);
            self.settle(backend.as_ref(), &wanted, None, replaced, resumed, &context)
                .await?;
            return Ok(StepOutcome::default());
        }

        let values = wanted.values.clone().ok_or_else(|| {
            StepError::permanent(format!("{}: the record has no values", step.address))
        })?;
        let desired = RecordSet {
            ttl: wanted.ttl,
            values,
        };
        if let Some(value) = desired.values.iter().find(|value| value.contains("${")) {
            return Err(StepError::permanent(format!(
                "{key}: the value `{value}` is still unresolved: the step that makes it has not run"
            )));
        }
        let precondition = match &reading.record_set {
            Some(_) if !owned && !wanted.take_over => {
                return Err(StepError::permanent(ownership_refusal(
                    backend.as_ref(),
                    key,
                    &reading.owners,
                    &self.deployment,
                    Doing::Change,
                )));
            }
            Some(_) => Precondition::Unchanged(reading.version.clone()),
            None => Precondition::Absent,
        };
        let already = owned
            && reading.owners.len() == 1
            && reading.record_set.as_ref().is_some_and(|set| {
                set.ttl == desired.ttl && same_values(key.record_type, &set.values, &desired.values)
            });
        if already {
            (context.progress)(format!("{key}: already {}", desired.values.join(", ")));
        } else {
            if reading.record_set.is_some() && !owned {
                (context.progress)(format!(
                    "{key}: taking over a record set ferry did not create (take_over = true)"
                ));
            }
            let change = Change::Upsert {
                record_set: desired.clone(),
                owner: self.deployment.clone(),
                precondition,
            };
            backend.write(key, &change).await.map_err(step_error)?;
            (context.progress)(format!(
                "{key}: set to {} (ttl {}) through {}",
                desired.values.join(", "),
                desired.ttl,
                backend.describe()
            ));
        }
        // Only values that this step replaced can be in resolvers' caches, besides those an
        // interrupted attempt replaced (`resumed`); a create, or a step that found the record
        // already right, owes no wait of its own. The wait is recorded as soon as the values
        // are replaced, so that an interruption while the primary is checked still leaves it
        // owed.
        let replaced = reading
            .record_set
            .as_ref()
            .filter(|_| wanted.wait_for_ttl && !already);
        self.settle(
            backend.as_ref(),
            &wanted,
            Some(&desired),
            replaced,
            resumed,
            &context,
        )
        .await?;
        Ok(StepOutcome {
            outputs: written_outputs(fields, &wanted, &desired),
        })
    }
}
