//! Planning rules of DNS records.
//!
//! A record is stateful (a name people and certificates depend on): a failover repoints it,
//! and deleting one needs both opt-ins. Which server holds the zone (Azure DNS or an RFC 2136
//! server) is set per zone in the spec's `[zones]` block, not per record.
//!
//! The provider ([`DnsRecordProvider`]) reads and writes through a [`DnsBackend`] per zone:
//! [`Rfc2136Backend`] for standard authoritative servers, [`AzureDnsBackend`] for Azure DNS
//! record sets over the ARM client (ETags with `If-Match` / `If-None-Match: *`, ownership in
//! the record set's metadata). Ownership markers are described in [`record`] and [`azure`],
//! the mass-change guard for the planner in [`threshold`].
//!
//! After a change, `wait` confirms that the zone's authority answers the new values, and
//! `wait_for_ttl` then waits out the TTL of the values the change replaced, which the
//! provider knows from its own read at the start of the step. A delete step carries no inputs,
//! so a record's outputs keep the `wait` and `wait_for_ttl` of its last change, and its delete
//! waits as they say. The wait for the old TTL is journaled as soon as the values are replaced
//! (a token, see the `old_ttl` module), so that an interrupted apply's next attempt waits out
//! the rest even though it finds the record already changed.

pub mod azure;
pub mod backend;
mod old_ttl;
pub mod provider;
pub mod record;
pub mod rfc2136;
pub mod threshold;

pub use azure::{AzureDnsBackend, AzureDnsConfig, OWNER_METADATA_KEY};
pub use backend::{BackendError, Change, DnsBackend, Precondition, Reading};
pub use provider::{AzureDnsAccess, DnsProviderConfig, DnsRecordProvider, DnsSetupError};
pub use record::{RecordKey, RecordSet, RecordType};
pub use rfc2136::{Rfc2136Backend, Rfc2136Config, ZoneConfigError};
pub use threshold::{
    ChangeShareConfig, ChangeShareRefused, ZoneShare, check_change_share, managed_records_per_zone,
};

use ferry_core::fields::dns_record;
use ferry_core::provider::{FieldType as T, IntegerRange, OnChange};
use ferry_core::{
    Action, FieldError, FieldSchema as F, Kind, KindRules, OutputSchema as O, ResourceSpec, Value,
};

/// `[dns_record.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct DnsRecordRules;

/// The record types ferry manages.
pub const RECORD_TYPES: &[&str] = &["A", "AAAA", "CNAME", "TXT"];

impl KindRules for DnsRecordRules {
    fn cached_for_seconds(
        &self,
        observed: &ferry_core::Attributes,
        inputs: &ferry_core::Attributes,
    ) -> u64 {
        // With wait_for_ttl the update's own step waits the old TTL out (its estimate holds it).
        if inputs.get("wait_for_ttl").and_then(Value::as_bool) == Some(true) {
            return 0;
        }
        observed.get("ttl").and_then(Value::as_u64).unwrap_or(0)
    }

    fn simulate(
        &self,
        _step: &ferry_core::SimulatedStep<'_>,
        attributes: &mut ferry_core::Attributes,
    ) {
        use ferry_core::Value;
        let text = |name: &str| {
            attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let (Some(name), Some(zone)) = (text("name"), text(dns_record::ZONE)) {
            attributes.insert("fqdn".to_owned(), Value::from(format!("{name}.{zone}")));
        }
    }

    fn kind(&self) -> Kind {
        Kind::DnsRecord
    }

    fn description(&self) -> &'static str {
        "A DNS record set in a zone served by Azure DNS or by an RFC 2136 server"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required(
                dns_record::ZONE,
                T::String,
                OnChange::Replace("a record cannot move to another zone"),
                "the zone, declared in [zones.\"NAME\"]",
            ),
            F::required(
                "name",
                T::String,
                OnChange::Replace("a record set's name is its identity"),
                "name relative to the zone; @ for the apex",
            ),
            F::required(
                "type",
                T::String,
                OnChange::Replace("a record set's type is part of its identity"),
                "A, AAAA, CNAME or TXT",
            ),
            F::optional(
                "ttl",
                T::Integer(IntegerRange::new(1, 2_147_483_647)),
                Some("300"),
                OnChange::InPlace,
                "time to live, in seconds",
            ),
            F::required(
                "values",
                T::StringList,
                OnChange::InPlace,
                "the record set's values; one for CNAME",
            ),
            F::optional(
                "take_over",
                T::Boolean,
                Some("false"),
                OnChange::InPlace,
                "allow ferry to manage a record that exists but that ferry did not create",
            ),
            F::optional(
                "wait",
                T::Boolean,
                Some("true"),
                OnChange::InPlace,
                "after a change, wait until the zone's authoritative servers answer the new values",
            ),
            F::optional(
                "wait_for_ttl",
                T::Boolean,
                Some("false"),
                OnChange::InPlace,
                "after a change, also wait for the replaced values' TTL to pass, so that resolvers no longer serve them from their caches",
            ),
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[O {
            name: "fqdn",
            description: "the record's fully qualified name",
        }]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let record_type = spec.str_field("type").unwrap_or("A");
        if !RECORD_TYPES.contains(&record_type) {
            errors.push(
                FieldError::new(
                    "type",
                    format!("`{record_type}` is not a record type ferry manages"),
                )
                .with_help(format!("use one of: {}", RECORD_TYPES.join(", "))),
            );
        }
        let values: Vec<&Value> = spec
            .field("values")
            .and_then(Value::as_array)
            .map(|values| values.iter().collect())
            .unwrap_or_default();
        if values.is_empty() && spec.field("values").is_some() {
            errors.push(
                FieldError::new("values", "a record set needs at least one value")
                    .with_help("to remove the record, set ensure = \"absent\""),
            );
        }
        if record_type == "CNAME" && values.len() > 1 {
            errors.push(
                FieldError::new("values", "a CNAME record set holds exactly one value").with_help(
                    "keep one target name; a name with several addresses is an A or AAAA record",
                ),
            );
        }
        for (index, value) in values.iter().enumerate() {
            let Some(text) = value.as_str().filter(|text| !text.contains("${")) else {
                continue;
            };
            let valid = match record_type {
                "A" => text.parse::<std::net::Ipv4Addr>().is_ok(),
                "AAAA" => text.parse::<std::net::Ipv6Addr>().is_ok(),
                "CNAME" => is_host_name(text),
                _ => true,
            };
            if !valid {
                let help = match record_type {
                    "A" => "write an IPv4 address, such as 203.0.113.10",
                    "AAAA" => "write an IPv6 address, such as 2001:db8::10",
                    _ => "write a host name, such as hub.example.org.",
                };
                errors.push(
                    FieldError::new(
                        format!("values[{index}]"),
                        format!("`{text}` is not a valid {record_type} value"),
                    )
                    .with_help(help),
                );
            }
        }
        if let Some(name) = spec.str_field("name")
            && name != "@"
            && !is_host_name(name)
        {
            errors.push(
                FieldError::new("name", format!("`{name}` is not a DNS name"))
                    .with_help("use labels of letters, digits and `-` separated by dots, or @"),
            );
        }
        // The schema bounds ttl (RFC 2181: 1 to 2^31 - 1).
        if let Some(name) = spec.str_field("name") {
            errors.extend(check_relative_name(
                name,
                spec.str_field(dns_record::ZONE),
                record_type,
            ));
        }
        errors
    }

    fn estimate_seconds(&self, action: Action, spec: &ResourceSpec) -> u64 {
        // Azure DNS and RFC 2136 updates are synchronous; the wait for the authoritative
        // servers to answer is a few seconds more.
        let wait = if spec.field("wait").and_then(Value::as_bool) == Some(false) {
            0
        } else {
            5
        };
        // The old TTL is known only at apply time; the spec's TTL is the usual guess, since
        // a record's TTL rarely changes with its values.
        let old_ttl = if spec.field("wait_for_ttl").and_then(Value::as_bool) == Some(true) {
            spec.field("ttl")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(provider::DEFAULT_TTL))
        } else {
            0
        };
        match action {
            Action::Create | Action::Update | Action::Replace => 2 + wait + old_ttl,
            Action::Delete | Action::Retire => 2 + old_ttl,
            _ => 2,
        }
    }

    fn is_observed(&self, field: &str) -> bool {
        !matches!(field, "take_over" | "wait" | "wait_for_ttl")
    }
}

/// A record's `name` is relative to its zone: `hub` in `example.org` is hub.example.org. A
/// trailing dot or the zone's own name inside it would make ferry manage another name than
/// the one meant (`hub.example.org` in `example.org` is hub.example.org.example.org).
fn check_relative_name(name: &str, zone: Option<&str>, record_type: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let zone = zone.map(|zone| zone.trim_end_matches('.').to_ascii_lowercase());
    let relative = |name: &str| match &zone {
        Some(zone) => {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            if lower == *zone {
                "@".to_owned()
            } else {
                lower
                    .strip_suffix(&format!(".{zone}"))
                    .unwrap_or(&lower)
                    .to_owned()
            }
        }
        None => name.trim_end_matches('.').to_owned(),
    };
    if name.ends_with('.') {
        errors.push(
            FieldError::new(
                "name",
                format!("`{name}` ends with a dot: a record's name is relative to its zone"),
            )
            .with_help(format!("write name = \"{}\"", relative(name))),
        );
    } else if let Some(zone) = &zone
        && !zone.contains("${")
        && (name.eq_ignore_ascii_case(zone)
            || name.to_ascii_lowercase().ends_with(&format!(".{zone}")))
    {
        errors.push(
            FieldError::new(
                "name",
                format!("`{name}` repeats the zone `{zone}`: it would be {name}.{zone}"),
            )
            .with_help(format!(
                "a record's name is relative to its zone: write name = \"{}\"",
                relative(name)
            )),
        );
    }
    if record_type == "CNAME"
        && (name == "@"
            || zone
                .as_deref()
                .is_some_and(|zone| name.eq_ignore_ascii_case(zone)))
    {
        errors.push(
            FieldError::new("name", "a CNAME cannot be at the zone's apex (@)")
                .with_help("the apex holds the zone's SOA and NS records: use an A or AAAA record there, or a CNAME on a name below it, such as www"),
        );
    }
    errors
}

fn is_host_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
