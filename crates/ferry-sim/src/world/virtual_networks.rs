//! Virtual networks and their subnets. A subnet is one resource whichever way it was written:
//! inside its network's PUT or on its own (`.../virtualNetworks/x/subnets/y`). The world
//! stores each subnet once, as a child of its network, and a network's responses list its
//! subnets from those children, so the two views never disagree.

use serde_json::{Value, json};

use super::body::properties_mut;
use super::ids::lower;
use super::{Stored, World};

const SUBNET_TYPE: &str = "Microsoft.Network/virtualNetworks/subnets";

impl World {
    /// Takes the subnets out of a network's PUT and stores each as a child resource; those
    /// the PUT no longer lists are removed, as a network PUT replaces its subnets on Azure.
    /// A PUT without `subnets` leaves them as they are.
    pub(super) fn take_inline_subnets(&mut self, network_id: &str, body: &mut Value) {
        let Some(subnets) = body
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .and_then(|properties| properties.remove("subnets"))
        else {
            return;
        };
        let prefix = format!("{}/subnets/", lower(network_id));
        let mut listed = Vec::new();
        for subnet in subnets.as_array().into_iter().flatten() {
            let name = subnet
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let id = format!("{network_id}/subnets/{name}");
            let mut stored_body = json!({
                "id": id,
                "name": name,
                "type": SUBNET_TYPE,
                "properties": subnet.get("properties").cloned().unwrap_or_else(|| json!({})),
            });
            properties_mut(&mut stored_body)
                .insert("provisioningState".to_owned(), json!("Succeeded"));
            let etag = self.next_etag();
            stored_body["etag"] = json!(etag.clone());
            listed.push(lower(&id));
            self.resources.insert(
                lower(&id),
                Stored {
                    id,
                    etag,
                    body: stored_body,
                },
            );
        }
        let dropped: Vec<String> = self
            .resources
            .keys()
            .filter(|key| {
                key.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/'))
                    && !listed.contains(key)
            })
            .cloned()
            .collect();
        for key in dropped {
            self.resources.remove(&key);
        }
    }

    /// A network's `properties.subnets`, from its subnet resources.
    pub(super) fn show_subnets(&self, network_id: &str, body: &mut Value) {
        let prefix = format!("{}/subnets/", lower(network_id));
        let subnets: Vec<Value> = self
            .resources
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(key, _)| !key[prefix.len()..].contains('/'))
            .map(|(_, subnet)| subnet.body.clone())
            .collect();
        properties_mut(body).insert("subnets".to_owned(), Value::Array(subnets));
    }
}
