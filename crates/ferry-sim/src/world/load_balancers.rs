//! Load balancers (`Microsoft.Network/loadBalancers`): the ids, ETags and back-references
//! Network fills on their sub-resources (frontends, backend pools, rules, probes), and its
//! refusals of a body whose references do not hold.
//!
//! The shapes follow `loadBalancer.json` of Microsoft.Network's 2025-03-01 definitions: each
//! sub-resource carries `id`, `name`, `etag` (its load balancer's) and `type`
//! (`Microsoft.Network/loadBalancers/frontendIPConfigurations`), and a frontend, pool or probe
//! lists the rules that use it (`loadBalancingRules: [{id}]`). Who holds a public IP is the
//! concern of `public_ips`.

use serde_json::{Value, json};

use super::body::{keep_previous, properties_mut};
use super::ids::{Kind, kind_of, lower};
use super::public_ips::invalid_resource_reference;
use super::{Refusal, SimRequest, SimResponse, World};

/// The sub-resource collections of a load balancer that carry ids, and their types below it.
const SUB_RESOURCES: &[&str] = &[
    "frontendIPConfigurations",
    "backendAddressPools",
    "loadBalancingRules",
    "probes",
    "inboundNatRules",
    "outboundRules",
];

/// What a load-balancing rule references: its field, and the collection the reference names.
const RULE_REFERENCES: &[(&str, &str)] = &[
    ("frontendIPConfiguration", "frontendIPConfigurations"),
    ("backendAddressPool", "backendAddressPools"),
    ("probe", "probes"),
];

fn items<'a>(body: &'a Value, collection: &str) -> impl Iterator<Item = &'a Value> {
    body.get("properties")
        .and_then(|properties| properties.get(collection))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn item_name(item: &Value) -> &str {
    item.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn sub_resource_id(balancer: &str, collection: &str, name: &str) -> String {
    format!("{balancer}/{collection}/{name}")
}

impl World {
    /// Network's refusals of a load balancer's body, before anything is stored: an unknown SKU,
    /// a frontend with both a subnet and a public IP (`FrontendIPConfigHasBothSubnetAndPublicIP`,
    /// hashicorp/terraform-provider-azurerm#1622), with a subnet that does not exist
    /// (`InvalidResourceReference`), or with neither (`FrontendIPConfigHasNoSubnetOrPublicIP`,
    /// ernestio/ernest#480), the public IPs' checks (`check_public_ip_references`), and a rule
    /// naming a frontend, pool or probe the body does not have (`InvalidResourceReference`,
    /// Azure/sap-hana#581, Azure/bicep-types-az#1403).
    pub(super) fn check_load_balancer(&self, id: &str, body: &Value) -> Result<(), Refusal> {
        if let Some(sku) = body.pointer("/sku/name").and_then(Value::as_str)
            && !["Standard", "Basic", "Gateway"]
                .iter()
                .any(|known| known.eq_ignore_ascii_case(sku))
        {
            return Err(SimResponse::error(
                400,
                "InvalidRequestFormat",
                format!(
                    "Cannot parse the request. The value '{sku}' of sku.name is not one of Basic, Standard, Gateway."
                ),
            ));
        }
        for frontend in items(body, "frontendIPConfigurations") {
            let properties = frontend.get("properties");
            let has = |field: &str| {
                properties
                    .and_then(|properties| properties.get(field))
                    .and_then(|reference| reference.get("id"))
                    .is_some()
            };
            let frontend_id = sub_resource_id(id, "frontendIPConfigurations", item_name(frontend));
            if has("publicIPAddress") && has("subnet") {
                return Err(SimResponse::error(
                    400,
                    "FrontendIPConfigHasBothSubnetAndPublicIP",
                    format!(
                        "Frontend IP Configuration {frontend_id} must not reference both a Subnet and a Public IP Address."
                    ),
                ));
            }
            if let Some(subnet) = properties
                .and_then(|properties| properties.pointer("/subnet/id"))
                .and_then(Value::as_str)
                && !self.resources.contains_key(&lower(subnet))
            {
                return Err(invalid_resource_reference(subnet, &frontend_id));
            }
            if !has("publicIPAddress") && !has("subnet") && !has("publicIPPrefix") {
                return Err(SimResponse::error(
                    400,
                    "FrontendIPConfigHasNoSubnetOrPublicIP",
                    format!(
                        "Frontend IP Configuration {} must reference either a Subnet or a Public IP Address.",
                        sub_resource_id(id, "frontendIPConfigurations", item_name(frontend))
                    ),
                ));
            }
        }
        self.check_public_ip_references(id, body)?;
        for rule in items(body, "loadBalancingRules") {
            let rule_id = sub_resource_id(id, "loadBalancingRules", item_name(rule));
            for (field, collection) in RULE_REFERENCES {
                let Some(referenced) = rule
                    .get("properties")
                    .and_then(|properties| properties.get(*field))
                    .and_then(|reference| reference.get("id"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let found = items(body, collection).any(|item| {
                    sub_resource_id(id, collection, item_name(item))
                        .eq_ignore_ascii_case(referenced)
                });
                if !found {
                    return Err(invalid_resource_reference(referenced, &rule_id));
                }
            }
        }
        Ok(())
    }

    /// Fills what Network computes: the SKU's tier, the resource GUID, each sub-resource's id
    /// and type, a rule's defaults, and the back-references to the rules.
    pub(super) fn fill_load_balancer_fields(
        &mut self,
        id: &str,
        body: &mut Value,
        previous: &Value,
    ) {
        if !body.get("sku").is_some_and(Value::is_object) {
            body["sku"] = json!({"name": "Standard"});
        }
        if let Some(sku) = body["sku"].as_object_mut() {
            sku.entry("name").or_insert(json!("Standard"));
            sku.entry("tier").or_insert(json!("Regional"));
        }
        keep_previous(body, previous, "resourceGuid");
        let guid = self.next_identifier();
        properties_mut(body)
            .entry("resourceGuid")
            .or_insert(json!(guid));
        // Which rules use each frontend, pool and probe, by the referenced id (lower-cased).
        let mut users: Vec<(String, String)> = Vec::new();
        for rule in items(body, "loadBalancingRules") {
            let rule_id = sub_resource_id(id, "loadBalancingRules", item_name(rule));
            for (field, _) in RULE_REFERENCES {
                if let Some(referenced) = rule
                    .pointer(&format!("/properties/{field}/id"))
                    .and_then(Value::as_str)
                {
                    users.push((lower(referenced), rule_id.clone()));
                }
            }
        }
        for collection in SUB_RESOURCES {
            let Some(list) = body
                .get_mut("properties")
                .and_then(|properties| properties.get_mut(*collection))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for item in list.iter_mut().filter(|item| item.is_object()) {
                let item_id = sub_resource_id(id, collection, item_name(item));
                item["id"] = json!(item_id);
                item["type"] = json!(format!("Microsoft.Network/loadBalancers/{collection}"));
                if !item.get("properties").is_some_and(Value::is_object) {
                    item["properties"] = json!({});
                }
                let properties = item["properties"].as_object_mut().expect("object");
                let rules: Vec<Value> = users
                    .iter()
                    .filter(|(referenced, _)| *referenced == lower(&item_id))
                    .map(|(_, rule)| json!({"id": rule}))
                    .collect();
                match *collection {
                    "frontendIPConfigurations" | "backendAddressPools" | "probes" => {
                        properties.remove("loadBalancingRules");
                        if !rules.is_empty() {
                            properties.insert("loadBalancingRules".to_owned(), json!(rules));
                        }
                    }
                    "loadBalancingRules" => {
                        properties.entry("idleTimeoutInMinutes").or_insert(json!(4));
                        properties.entry("enableFloatingIP").or_insert(json!(false));
                        properties
                            .entry("loadDistribution")
                            .or_insert(json!("Default"));
                        properties.entry("enableTcpReset").or_insert(json!(false));
                        properties
                            .entry("disableOutboundSnat")
                            .or_insert(json!(false));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The sub-resources Network serves a `GET` of, one by one and as a list.
const READABLE_PARTS: &[&str] = &[
    "frontendIPConfigurations",
    "backendAddressPools",
    "loadBalancingRules",
    "probes",
];

impl World {
    /// A request for a load balancer's sub-resource or their list
    /// (`LoadBalancerFrontendIPConfigurations_Get`, `LoadBalancerProbes_List`...), answered from
    /// the load balancer as it is shown; `None` when `path` is not one.
    pub(super) fn load_balancer_part(
        &self,
        request: &SimRequest,
        path: &str,
    ) -> Option<Result<SimResponse, Refusal>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Network/loadBalancers/{lb}/{collection}[/{name}]
        if !(9..=10).contains(&segments.len()) {
            return None;
        }
        let balancer = format!("/{}", segments[..8].join("/"));
        if kind_of(&balancer) != Kind::LoadBalancer {
            return None;
        }
        let collection = *READABLE_PARTS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(segments[8]))?;
        if request.method != "GET" {
            return Some(Err(SimResponse::error(
                405,
                "MethodNotAllowed",
                format!(
                    "the simulator serves only GET on a load balancer's {collection}: PUT the load balancer {balancer} to change them"
                ),
            )));
        }
        let Some(stored) = self.resources.get(&lower(&balancer)) else {
            return Some(Err(Self::not_found(&balancer)));
        };
        let shown = self.response_body(stored);
        let parts: Vec<Value> = shown
            .pointer(&format!("/properties/{collection}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Some(match segments.get(9) {
            None => Ok(SimResponse::json(200, &json!({"value": parts}))),
            Some(name) => parts
                .into_iter()
                .find(|part| item_name(part).eq_ignore_ascii_case(name))
                .map(|part| SimResponse::json(200, &part))
                .ok_or_else(|| Self::not_found(path)),
        })
    }
}

/// Each sub-resource carries its load balancer's ETag and provisioning state: they change
/// with it, as Network answers them.
pub(super) fn sub_resources_follow_load_balancer(body: &mut Value) {
    let etag = body.get("etag").cloned();
    let state = body.pointer("/properties/provisioningState").cloned();
    for collection in SUB_RESOURCES {
        let Some(list) = body
            .get_mut("properties")
            .and_then(|properties| properties.get_mut(*collection))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for item in list.iter_mut().filter(|item| item.is_object()) {
            if let Some(etag) = &etag {
                item["etag"] = etag.clone();
            }
            if let Some(state) = &state
                && let Some(properties) = item.get_mut("properties").and_then(Value::as_object_mut)
            {
                properties.insert("provisioningState".to_owned(), state.clone());
            }
        }
    }
}
