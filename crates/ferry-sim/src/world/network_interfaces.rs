//! Network interfaces: a MAC address, private addresses for their IP configurations, and
//! the VM that uses each once that VM is provisioned.

use serde_json::{Value, json};

use super::World;
use super::body::{keep_previous, properties_mut};
use super::ids::lower;

impl World {
    pub(super) fn fill_network_interface_fields(&mut self, body: &mut Value, previous: &Value) {
        keep_previous(body, previous, "macAddress");
        keep_previous(body, previous, "virtualMachine");
        self.counter += 1;
        let counter = self.counter;
        properties_mut(body)
            .entry("macAddress")
            .or_insert(json!(format!(
                "00-0D-3A-{:02X}-{:02X}-{:02X}",
                (counter >> 16) & 0xff,
                (counter >> 8) & 0xff,
                counter & 0xff
            )));
        let mut next_private = 4u32;
        if let Some(configurations) = body["properties"]
            .get_mut("ipConfigurations")
            .and_then(Value::as_array_mut)
        {
            for configuration in configurations {
                if !configuration
                    .get("properties")
                    .is_some_and(Value::is_object)
                {
                    configuration["properties"] = json!({});
                }
                let properties = configuration["properties"].as_object_mut().expect("object");
                properties
                    .entry("privateIPAddress")
                    .or_insert(json!(format!("10.0.0.{next_private}")));
                properties
                    .entry("privateIPAllocationMethod")
                    .or_insert(json!("Dynamic"));
                properties
                    .entry("provisioningState")
                    .or_insert(json!("Succeeded"));
                next_private += 1;
            }
        }
    }

    pub(super) fn link_network_interfaces(&mut self, vm_id: &str) {
        let Some(stored) = self.resources.get(&lower(vm_id)).cloned() else {
            return;
        };
        let nics: Vec<String> = stored
            .body
            .pointer("/properties/networkProfile/networkInterfaces")
            .and_then(Value::as_array)
            .map(|nics| {
                nics.iter()
                    .filter_map(|nic| nic.get("id")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for nic in nics {
            if let Some(nic) = self.resources.get_mut(&lower(&nic)) {
                properties_mut(&mut nic.body).insert(
                    "virtualMachine".to_owned(),
                    json!({"id": stored.id.clone()}),
                );
            }
        }
    }
}
