//! The record sets the `dns_record` provider manages, independent of the server that holds
//! them: their identity, their values as ferry compares them, and the ownership marker.
//!
//! # Ownership
//!
//! ferry changes only record sets it owns, as DNS-as-code tools do (external-dns keeps a TXT
//! "registry" beside each record, octoDNS manages whole zones). Each owned record set has a
//! TXT record at a marker name beside it:
//!
//! ```text
//! hub.data100.example.org.                 300 IN A   20.1.2.3
//! _ferry-owner.hub.data100.example.org.    300 IN TXT "ferry deployment=data100 type=A"
//! ```
//!
//! - the marker name is `_ferry-owner.<name>` (`_ferry-owner.<zone>` for the apex `@`); a
//!   wildcard `*.x` gets `_ferry-owner._wildcard.x`, because `*` must stay the leftmost label;
//! - the marker holds one string per owned record type, `ferry deployment=<deployment> type=<TYPE>`,
//!   so that an A and an AAAA set at one name can be owned separately, and so that two
//!   deployments sharing a zone never take each other's records;
//! - the marker sits at its own name because a CNAME may share its name with no other data;
//! - a record set without our marker is left alone unless the spec says `take_over = true`;
//!   taking over replaces any other deployment's marker string for that type with ours;
//! - deleting a record set removes its marker string too.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The prefix label of every ownership marker.
pub const OWNER_MARKER_LABEL: &str = "_ferry-owner";

/// A record type ferry manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text of a record type ferry does not manage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a record type ferry manages: use A, AAAA, CNAME or TXT")]
pub struct UnknownRecordType(pub String);

impl FromStr for RecordType {
    type Err = UnknownRecordType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "A" => Ok(RecordType::A),
            "AAAA" => Ok(RecordType::Aaaa),
            "CNAME" => Ok(RecordType::Cname),
            "TXT" => Ok(RecordType::Txt),
            _ => Err(UnknownRecordType(text.to_owned())),
        }
    }
}

/// Which record set: a zone, a name in it and a type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// The zone, lower-case, without the trailing dot: `data100.example.org`.
    pub zone: String,
    /// The name relative to the zone, lower-case; `@` for the apex.
    pub name: String,
    pub record_type: RecordType,
}

impl RecordKey {
    pub fn new(zone: &str, name: &str, record_type: RecordType) -> Self {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        Self {
            zone: normalize_zone(zone),
            name: if name.is_empty() {
                "@".to_owned()
            } else {
                name
            },
            record_type,
        }
    }

    /// The fully qualified name, without the trailing dot: `hub.data100.example.org`.
    pub fn fqdn(&self) -> String {
        if self.name == "@" {
            self.zone.clone()
        } else {
            format!("{}.{}", self.name, self.zone)
        }
    }

    /// Where this record set's ownership marker lives (see the module documentation).
    pub fn marker_fqdn(&self) -> String {
        let relative = match self.name.as_str() {
            "@" => String::new(),
            "*" => "_wildcard".to_owned(),
            name => match name.strip_prefix("*.") {
                Some(rest) => format!("_wildcard.{rest}"),
                None => name.to_owned(),
            },
        };
        if relative.is_empty() {
            format!("{OWNER_MARKER_LABEL}.{}", self.zone)
        } else {
            format!("{OWNER_MARKER_LABEL}.{relative}.{}", self.zone)
        }
    }

    /// The marker string that says `deployment` owns this record set.
    pub fn marker_text(&self, deployment: &str) -> String {
        format!("ferry deployment={deployment} type={}", self.record_type)
    }

    /// Which deployment a marker string gives this record set's type to, if it is a ferry
    /// marker for this type at all.
    pub fn marker_owner(&self, text: &str) -> Option<String> {
        let rest = text.strip_prefix("ferry ")?;
        let mut deployment = None;
        let mut record_type = None;
        for part in rest.split_whitespace() {
            if let Some(value) = part.strip_prefix("deployment=") {
                deployment = Some(value);
            } else if let Some(value) = part.strip_prefix("type=") {
                record_type = Some(value);
            }
        }
        let record_type: RecordType = record_type?.parse().ok()?;
        (record_type == self.record_type).then(|| deployment.unwrap_or_default().to_owned())
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.fqdn(), self.record_type)
    }
}

/// A zone name as ferry compares it: lower-case, no trailing dot.
pub fn normalize_zone(zone: &str) -> String {
    zone.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A record set's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    pub ttl: u32,
    /// In the spec's notation: `192.0.2.1`, `2001:db8::1`, `hub.example.org` (no trailing
    /// dot), and a TXT value as one string however the server split it.
    pub values: Vec<String>,
}

/// One value as ferry compares it, so that `2001:DB8::1` equals `2001:db8:0::1` and
/// `Hub.Example.org.` equals `hub.example.org`.
pub fn canonical_value(record_type: RecordType, value: &str) -> String {
    match record_type {
        RecordType::A => value
            .trim()
            .parse::<Ipv4Addr>()
            .map_or_else(|_| value.to_owned(), |address| address.to_string()),
        RecordType::Aaaa => value
            .trim()
            .parse::<Ipv6Addr>()
            .map_or_else(|_| value.to_owned(), |address| address.to_string()),
        RecordType::Cname => value.trim().trim_end_matches('.').to_ascii_lowercase(),
        RecordType::Txt => value.to_owned(),
    }
}

/// Whether two value lists hold the same record set (order and notation do not matter).
pub fn same_values(record_type: RecordType, left: &[String], right: &[String]) -> bool {
    let canonical = |values: &[String]| {
        let mut values: Vec<String> = values
            .iter()
            .map(|value| canonical_value(record_type, value))
            .collect();
        values.sort();
        values.dedup();
        values
    };
    canonical(left) == canonical(right)
}

/// The observed values as the planner should see them: in the spec's order and notation when
/// they are the same set, so that no difference shows where there is none; sorted otherwise.
pub fn values_for_comparison(
    record_type: RecordType,
    observed: &[String],
    desired: Option<&[String]>,
) -> Vec<String> {
    if let Some(desired) = desired
        && same_values(record_type, observed, desired)
    {
        return desired.to_vec();
    }
    let mut values: Vec<String> = observed
        .iter()
        .map(|value| canonical_value(record_type, value))
        .collect();
    values.sort();
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_sit_beside_their_record() {
        let key = RecordKey::new("Data100.Example.org.", "Hub", RecordType::A);
        assert_eq!(key.fqdn(), "hub.data100.example.org");
        assert_eq!(key.marker_fqdn(), "_ferry-owner.hub.data100.example.org");
        let apex = RecordKey::new("data100.example.org", "@", RecordType::Txt);
        assert_eq!(apex.fqdn(), "data100.example.org");
        assert_eq!(apex.marker_fqdn(), "_ferry-owner.data100.example.org");
        let wildcard = RecordKey::new("example.org", "*.apps", RecordType::Cname);
        assert_eq!(
            wildcard.marker_fqdn(),
            "_ferry-owner._wildcard.apps.example.org"
        );
    }

    #[test]
    fn marker_strings_name_the_deployment_and_the_type() {
        let key = RecordKey::new("example.org", "hub", RecordType::Aaaa);
        let text = key.marker_text("data100");
        assert_eq!(text, "ferry deployment=data100 type=AAAA");
        assert_eq!(key.marker_owner(&text), Some("data100".to_owned()));
        let a = RecordKey::new("example.org", "hub", RecordType::A);
        assert_eq!(a.marker_owner(&text), None);
        assert_eq!(a.marker_owner("v=spf1 -all"), None);
    }

    #[test]
    fn values_compare_by_meaning_not_notation() {
        let observed = vec!["2001:db8::1".to_owned(), "2001:db8::2".to_owned()];
        let desired = vec!["2001:DB8:0::2".to_owned(), "2001:db8::1".to_owned()];
        assert!(same_values(RecordType::Aaaa, &observed, &desired));
        assert_eq!(
            values_for_comparison(RecordType::Aaaa, &observed, Some(&desired)),
            desired
        );
        assert!(same_values(
            RecordType::Cname,
            &["Hub.Example.org.".to_owned()],
            &["hub.example.org".to_owned()]
        ));
        assert_eq!(
            values_for_comparison(RecordType::A, &["10.0.0.2".into(), "10.0.0.1".into()], None),
            vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()]
        );
    }
}
