//! Public IP addresses: a loopback address from 127.0.0.0/8 for each, static and IPv4 by
//! default.

use serde_json::{Value, json};

use super::World;
use super::body::{keep_previous, properties_mut};

impl World {
    pub(super) fn fill_public_ip_fields(&mut self, body: &mut Value, previous: &Value) {
        keep_previous(body, previous, "ipAddress");
        if body["properties"].get("ipAddress").is_none() {
            let address = self.allocate_public_ip();
            properties_mut(body).insert("ipAddress".to_owned(), json!(address.to_string()));
        }
        let properties = properties_mut(body);
        properties
            .entry("publicIPAddressVersion")
            .or_insert(json!("IPv4"));
        properties
            .entry("publicIPAllocationMethod")
            .or_insert(json!("Static"));
        properties.entry("idleTimeoutInMinutes").or_insert(json!(4));
        keep_previous(body, previous, "resourceGuid");
        let guid = self.next_identifier();
        properties_mut(body)
            .entry("resourceGuid")
            .or_insert(json!(guid));
    }
}
