//! The Azure DNS backend: record sets `Microsoft.Network/dnsZones/{zone}/{TYPE}/{name}` read
//! and written through the ARM client, with their ETag as the version.
//!
//! - A create is sent with `If-None-Match: *` and an update or delete with `If-Match: <etag>`
//!   of the read, so a record set that someone changed between ferry's read and its write is
//!   refused by ARM (412) and reported as [`BackendError::Conflict`], never overwritten.
//! - Ownership lives in the record set's own `metadata`: `ferry-deployment = <deployment>`.
//!   A record set has one type, so one key is enough (RFC 2136 zones need a marker TXT
//!   record beside the record instead, see [`crate::record`]). Other metadata keys are kept.
//! - Azure DNS applies a change before it answers, so the provider's wait after a change is
//!   a single confirming read.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use ferry_arm::models::{
    ARecord, AaaaRecord, CnameRecord, DnsZone, RecordSet as ArmRecordSet, TxtRecord,
};
use ferry_arm::{ArmClient, ArmError, WriteOptions, api_version};
use ferry_core::{Attributes, Value};

use crate::backend::{BackendError, Change, DnsBackend, Precondition, Reading};
use crate::record::{RecordKey, RecordSet, RecordType, normalize_zone};
use crate::rfc2136::ZoneConfigError;

/// The metadata key that names the deployment owning a record set.
pub const OWNER_METADATA_KEY: &str = "ferry-deployment";

/// The longest string of one TXT value on the wire; longer values are split, like RFC 2136
/// zones do, and joined back when read.
const TXT_CHUNK: usize = 255;

/// An Azure DNS zone's settings, from `[zones."NAME"]` with `backend = "azure"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDnsConfig {
    /// The zone, normalized (lower-case, no trailing dot).
    pub zone: String,
    /// `subscription`, or the deployment's.
    pub subscription: String,
    /// `resource_group`: the group that holds the zone.
    pub resource_group: String,
}

impl AzureDnsConfig {
    /// Reads a zone's settings; `default_subscription` is the deployment's (`[deployment]
    /// subscription` or `AZURE_SUBSCRIPTION_ID`).
    pub fn from_attributes(
        zone: &str,
        settings: &Attributes,
        default_subscription: Option<&str>,
    ) -> Result<Self, ZoneConfigError> {
        let text = |name: &str| {
            settings
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|text| !text.is_empty())
        };
        let resource_group = text("resource_group").ok_or_else(|| ZoneConfigError::Missing {
            zone: zone.to_owned(),
            setting: "resource_group",
        })?;
        let subscription = text("subscription")
            .or(default_subscription
                .map(str::trim)
                .filter(|text| !text.is_empty()))
            .ok_or_else(|| ZoneConfigError::NoSubscription {
                zone: zone.to_owned(),
            })?;
        Ok(Self {
            zone: normalize_zone(zone),
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
        })
    }

    /// The zone's ARM id.
    pub fn zone_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones/{}",
            self.subscription, self.resource_group, self.zone
        )
    }

    /// A record set's ARM id; the apex is `@`, as in Azure.
    pub fn record_path(&self, key: &RecordKey) -> String {
        format!(
            "{}/{}/{}",
            self.zone_path(),
            key.record_type.as_str(),
            key.name
        )
    }
}

/// Record sets of one Azure DNS zone.
#[derive(Debug)]
pub struct AzureDnsBackend {
    client: ArmClient,
    config: AzureDnsConfig,
    /// The last body read of each record set, with its ETag: a write that expects that ETag
    /// starts from it, so metadata and fields ferry does not manage are sent back as they
    /// were. A second GET right before the write would do the same but would hide the very
    /// change that `If-Match` exists to catch.
    read_bodies: Mutex<HashMap<RecordKey, (String, ArmRecordSet)>>,
}

impl AzureDnsBackend {
    pub fn new(client: ArmClient, config: AzureDnsConfig) -> Self {
        Self {
            client,
            config,
            read_bodies: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &AzureDnsConfig {
        &self.config
    }

    fn remember(&self, key: &RecordKey, body: Option<(String, ArmRecordSet)>) {
        let mut bodies = self
            .read_bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match body {
            Some(body) => bodies.insert(key.clone(), body),
            None => bodies.remove(key),
        };
    }

    fn body_read_at(&self, key: &RecordKey, etag: &str) -> Option<ArmRecordSet> {
        let bodies = self
            .read_bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bodies
            .get(key)
            .filter(|(read_etag, _)| read_etag == etag)
            .map(|(_, body)| body.clone())
    }

    fn error(&self, operation: &'static str, key: &RecordKey, error: ArmError) -> BackendError {
        if error.is_precondition_failed() {
            BackendError::Conflict {
                server: self.describe(),
                record: key.to_string(),
                detail: "ARM answered 412 PreconditionFailed".to_owned(),
            }
        } else if error.is_transient() {
            BackendError::Unreachable {
                server: self.describe(),
                message: error.to_string(),
            }
        } else {
            BackendError::Arm {
                operation,
                record: key.to_string(),
                message: error.to_string(),
            }
        }
    }

    /// A record set that ARM does not have reads as absent only if its zone exists: a zone
    /// that is missing (or in another group than the spec says) is a setting to fix, and
    /// must not lead the planner to create records.
    async fn require_zone(&self, key: &RecordKey) -> Result<(), BackendError> {
        match self
            .client
            .get_if_exists::<DnsZone>(&self.config.zone_path(), api_version::DNS)
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(BackendError::Configuration {
                zone: self.config.zone.clone(),
                message: format!(
                    "Azure DNS has no such zone in resource group `{}` of subscription `{}`: create the zone, or correct resource_group and subscription in [zones.\"{}\"]",
                    self.config.resource_group, self.config.subscription, self.config.zone
                ),
            }),
            Err(error) => Err(self.error("read", key, error)),
        }
    }
}

/// The values of one type in an ARM record set, in the spec's notation.
fn values_of(record_type: RecordType, body: &ArmRecordSet) -> Vec<String> {
    let Some(properties) = &body.properties else {
        return Vec::new();
    };
    match record_type {
        RecordType::A => properties
            .a_records
            .iter()
            .flatten()
            .filter_map(|record| record.ipv4_address.clone())
            .collect(),
        RecordType::Aaaa => properties
            .aaaa_records
            .iter()
            .flatten()
            .filter_map(|record| record.ipv6_address.clone())
            .collect(),
        RecordType::Cname => properties
            .cname_record
            .iter()
            .filter_map(|record| record.cname.as_deref())
            .map(|name| name.trim_end_matches('.').to_owned())
            .collect(),
        RecordType::Txt => properties
            .txt_records
            .iter()
            .flatten()
            .map(|record| record.value.clone().unwrap_or_default().concat())
            .collect(),
    }
}

/// The deployment that the record set's metadata names, matching the key without regard to
/// case (ARM does not keep the case of metadata keys reliably).
fn owner_of(body: &ArmRecordSet) -> Option<String> {
    body.properties
        .as_ref()
        .and_then(|properties| properties.metadata.as_ref())
        .and_then(|metadata| {
            metadata
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(OWNER_METADATA_KEY))
                .map(|(_, deployment)| deployment.clone())
        })
}

/// Splits a TXT value into strings of at most [`TXT_CHUNK`] bytes, on character boundaries.
fn txt_strings(value: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut current = String::new();
    for character in value.chars() {
        if current.len() + character.len_utf8() > TXT_CHUNK {
            strings.push(std::mem::take(&mut current));
        }
        current.push(character);
    }
    strings.push(current);
    strings
}

/// `body` changed to hold exactly `record_set`, owned by `owner`; everything else in it kept.
fn upserted(
    mut body: ArmRecordSet,
    record_type: RecordType,
    record_set: &RecordSet,
    owner: &str,
) -> ArmRecordSet {
    // ARM fills these itself; sending a stale ETag or id back is at best ignored.
    body.etag = None;
    body.id = None;
    body.name = None;
    body.resource_type = None;
    let properties = body.properties.get_or_insert_with(Default::default);
    properties.provisioning_state = None;
    properties.fqdn = None;
    properties.ttl = Some(i64::from(record_set.ttl));
    let values = &record_set.values;
    match record_type {
        RecordType::A => {
            properties.a_records = Some(
                values
                    .iter()
                    .map(|value| ARecord {
                        ipv4_address: Some(value.clone()),
                        ..ARecord::default()
                    })
                    .collect(),
            );
        }
        RecordType::Aaaa => {
            properties.aaaa_records = Some(
                values
                    .iter()
                    .map(|value| AaaaRecord {
                        ipv6_address: Some(value.clone()),
                        ..AaaaRecord::default()
                    })
                    .collect(),
            );
        }
        RecordType::Cname => {
            properties.cname_record = values.first().map(|value| CnameRecord {
                cname: Some(value.trim_end_matches('.').to_owned()),
                ..CnameRecord::default()
            });
        }
        RecordType::Txt => {
            properties.txt_records = Some(
                values
                    .iter()
                    .map(|value| TxtRecord {
                        value: Some(txt_strings(value)),
                        ..TxtRecord::default()
                    })
                    .collect(),
            );
        }
    }
    let metadata = properties.metadata.get_or_insert_with(Default::default);
    metadata.retain(|name, _| !name.eq_ignore_ascii_case(OWNER_METADATA_KEY));
    metadata.insert(OWNER_METADATA_KEY.to_owned(), owner.to_owned());
    body
}

#[async_trait]
impl DnsBackend for AzureDnsBackend {
    fn describe(&self) -> String {
        format!(
            "azure dns zone {} (resource group {})",
            self.config.zone, self.config.resource_group
        )
    }

    fn authority(&self) -> &'static str {
        "azure dns"
    }

    fn ownership_marker(&self, _key: &RecordKey, deployment: &str) -> String {
        format!("metadata {OWNER_METADATA_KEY} = {deployment} on the record set")
    }

    async fn read(&self, key: &RecordKey) -> Result<Reading, BackendError> {
        let fetched = self
            .client
            .get_if_exists::<ArmRecordSet>(&self.config.record_path(key), api_version::DNS)
            .await
            .map_err(|error| self.error("read", key, error))?;
        let Some(fetched) = fetched else {
            self.remember(key, None);
            self.require_zone(key).await?;
            return Ok(Reading::default());
        };
        let body = fetched.value;
        let version = fetched.etag.or_else(|| body.etag.clone());
        let ttl = body
            .properties
            .as_ref()
            .and_then(|properties| properties.ttl)
            .and_then(|ttl| u32::try_from(ttl).ok())
            .unwrap_or_default();
        let reading = Reading {
            record_set: Some(RecordSet {
                ttl,
                values: values_of(key.record_type, &body),
            }),
            owners: owner_of(&body).into_iter().collect(),
            version: version.clone(),
        };
        self.remember(key, version.map(|etag| (etag, body)));
        Ok(reading)
    }

    async fn write(&self, key: &RecordKey, change: &Change) -> Result<(), BackendError> {
        let path = self.config.record_path(key);
        let (precondition, operation) = match change {
            Change::Upsert { precondition, .. } => (precondition, "write"),
            Change::Delete { precondition, .. } => (precondition, "delete"),
        };
        let mut options = WriteOptions::default();
        let conflict = match precondition {
            Precondition::Absent => {
                "it exists now, and a create is sent with If-None-Match: *; ARM answered 412 PreconditionFailed"
            }
            Precondition::Unchanged(_) => {
                "its etag no longer matches the one read; ARM answered 412 PreconditionFailed"
            }
        };
        let start_from = match precondition {
            Precondition::Absent => {
                options.if_none_match = Some("*".to_owned());
                None
            }
            Precondition::Unchanged(Some(etag)) => {
                options.if_match = Some(etag.clone());
                self.body_read_at(key, etag)
            }
            // Every record set ARM returns has an ETag; without one there is nothing to hold
            // the write to, and the provider's own read just before is the only guard.
            Precondition::Unchanged(None) => None,
        };
        // Whatever happens, the ETag read before is stale now or soon.
        self.remember(key, None);
        let result = match change {
            Change::Upsert {
                record_set, owner, ..
            } => {
                let body = upserted(
                    start_from.unwrap_or_default(),
                    key.record_type,
                    record_set,
                    owner,
                );
                self.client
                    .put_and_wait::<_, ArmRecordSet>(&path, api_version::DNS, &body, &options)
                    .await
                    .map(drop)
            }
            Change::Delete { .. } => {
                self.client
                    .delete_and_wait(&path, api_version::DNS, &options)
                    .await
            }
        };
        result.map_err(|error| {
            if error.is_precondition_failed() {
                BackendError::Conflict {
                    server: self.describe(),
                    record: key.to_string(),
                    detail: conflict.to_owned(),
                }
            } else {
                self.error(operation, key, error)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: serde_json::Value) -> Attributes {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn zone_settings_take_the_deployments_subscription_unless_they_name_one() {
        let own = AzureDnsConfig::from_attributes(
            "Example.org.",
            &settings(
                json!({"backend": "azure", "resource_group": "rg-dns", "subscription": "sub-zone"}),
            ),
            Some("sub-deployment"),
        )
        .unwrap();
        assert_eq!(own.zone, "example.org");
        assert_eq!(own.subscription, "sub-zone");
        let inherited = AzureDnsConfig::from_attributes(
            "example.org",
            &settings(json!({"backend": "azure", "resource_group": "rg-dns"})),
            Some("sub-deployment"),
        )
        .unwrap();
        assert_eq!(
            inherited.record_path(&RecordKey::new("example.org", "@", RecordType::Txt)),
            "/subscriptions/sub-deployment/resourceGroups/rg-dns/providers/Microsoft.Network/dnsZones/example.org/TXT/@"
        );
        let errors = [
            AzureDnsConfig::from_attributes(
                "example.org",
                &settings(json!({"backend": "azure"})),
                Some("sub"),
            ),
            AzureDnsConfig::from_attributes(
                "example.org",
                &settings(json!({"backend": "azure", "resource_group": "rg-dns"})),
                None,
            ),
        ]
        .map(|result| result.unwrap_err().to_string());
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn an_upsert_keeps_what_ferry_does_not_manage_and_claims_the_record() {
        let read: ArmRecordSet = serde_json::from_value(json!({
            "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/dnsZones/example.org/TXT/@",
            "etag": "W/\"1\"",
            "properties": {
                "TTL": 3600,
                "fqdn": "example.org.",
                "metadata": {"Ferry-Deployment": "other", "team": "web"},
                "TXTRecords": [{"value": ["old"]}],
                "targetResource": {}
            }
        }))
        .unwrap();
        let long = "x".repeat(300);
        let body = upserted(
            read,
            RecordType::Txt,
            &RecordSet {
                ttl: 60,
                values: vec![long.clone()],
            },
            "data100",
        );
        let sent = serde_json::to_value(&body).unwrap();
        assert_eq!(
            sent,
            json!({
                "properties": {
                    "metadata": {"ferry-deployment": "data100", "team": "web"},
                    "TTL": 60,
                    "TXTRecords": [{"value": [&long[..255], &long[255..]]}],
                    "targetResource": {}
                }
            })
        );
        assert_eq!(values_of(RecordType::Txt, &body), vec![long]);
        assert_eq!(owner_of(&body), Some("data100".to_owned()));
    }
}
