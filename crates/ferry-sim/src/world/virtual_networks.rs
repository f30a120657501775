//! Virtual networks and their subnets: each subnet listed in a network gets its id and type.

use serde_json::{Value, json};

pub(super) fn fill_virtual_network_fields(id: &str, body: &mut Value) {
    if let Some(subnets) = body["properties"]
        .get_mut("subnets")
        .and_then(Value::as_array_mut)
    {
        for subnet in subnets {
            let name = subnet
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            subnet["id"] = json!(format!("{id}/subnets/{name}"));
            subnet["type"] = json!("Microsoft.Network/virtualNetworks/subnets");
            if !subnet.get("properties").is_some_and(Value::is_object) {
                subnet["properties"] = json!({});
            }
            subnet["properties"]["provisioningState"] = json!("Succeeded");
        }
    }
}
