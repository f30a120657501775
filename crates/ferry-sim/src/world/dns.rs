//! DNS zones and their record sets: a zone's name servers and record count, a record set's
//! fully qualified name.

use serde_json::{Value, json};

use super::World;
use super::body::properties_mut;
use super::ids::{lower, name_of};

impl World {
    pub(super) fn fill_dns_zone_fields(&self, id: &str, body: &mut Value) {
        let count = self
            .resources
            .keys()
            .filter(|key| key.starts_with(&format!("{}/", lower(id))))
            .count();
        let properties = properties_mut(body);
        properties.insert("maxNumberOfRecordSets".to_owned(), json!(10000));
        properties.insert("numberOfRecordSets".to_owned(), json!(count + 2));
        properties.insert(
            "nameServers".to_owned(),
            json!([
                "ns1-01.azure-dns.com.",
                "ns2-01.azure-dns.net.",
                "ns3-01.azure-dns.org.",
                "ns4-01.azure-dns.info."
            ]),
        );
        properties.entry("zoneType").or_insert(json!("Public"));
    }
}

pub(super) fn fill_record_set_fields(id: &str, body: &mut Value) {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    let zone = segments
        .get(segments.len().saturating_sub(3))
        .copied()
        .unwrap_or_default();
    let name = name_of(id);
    let fqdn = if name == "@" {
        format!("{zone}.")
    } else {
        format!("{name}.{zone}.")
    };
    properties_mut(body).insert("fqdn".to_owned(), json!(fqdn));
}
