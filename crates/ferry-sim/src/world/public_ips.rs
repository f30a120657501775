//! Public IP addresses: a loopback address from 127.0.0.0/8 for each, static and IPv4 by
//! default; the IP configuration that holds each (a load balancer's frontend, a NIC's IP
//! configuration), the refusals of a second holder, and of a held IP's deletion.

use serde_json::{Value, json};

use super::body::{keep_previous, properties_mut};
use super::ids::{Kind, kind_of, lower};
use super::{Refusal, SimResponse, World};

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

/// One IP configuration that references a public IP: a load balancer's frontend or a network
/// interface's `ipConfigurations` item.
#[derive(Debug, Clone)]
pub(super) struct PublicIpReference {
    /// `{resource id}/frontendIPConfigurations/{name}` or `{resource id}/ipConfigurations/{name}`.
    pub configuration: String,
    pub public_ip: String,
}

/// The public IPs a resource's IP configurations reference, in its body's order.
pub(super) fn public_ip_references(id: &str, body: &Value) -> Vec<PublicIpReference> {
    let collection = match kind_of(id) {
        Kind::LoadBalancer => "frontendIPConfigurations",
        Kind::NetworkInterface => "ipConfigurations",
        _ => return Vec::new(),
    };
    body.get("properties")
        .and_then(|properties| properties.get(collection))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|configuration| {
            let public_ip = configuration
                .pointer("/properties/publicIPAddress/id")
                .and_then(Value::as_str)?;
            let name = configuration
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(PublicIpReference {
                configuration: format!("{id}/{collection}/{name}"),
                public_ip: public_ip.to_owned(),
            })
        })
        .collect()
}

/// The public IPs whose holder a write changes: those `body` references and `previous` did
/// not, and the reverse.
pub(super) fn public_ips_changing(id: &str, previous: &Value, body: &Value) -> Vec<String> {
    let before = public_ip_references(id, previous);
    let after = public_ip_references(id, body);
    let mut changing: Vec<String> = Vec::new();
    for (these, those) in [(&before, &after), (&after, &before)] {
        for reference in these {
            let kept = those.iter().any(|other| {
                other.public_ip.eq_ignore_ascii_case(&reference.public_ip)
                    && other
                        .configuration
                        .eq_ignore_ascii_case(&reference.configuration)
            });
            if !kept {
                changing.push(reference.public_ip.clone());
            }
        }
    }
    changing.sort_by_key(|id| lower(id));
    changing.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    changing
}

/// A public IP's or a load balancer's SKU: Standard when the body names none (Basic public IPs
/// and load balancers are retired, so Azure creates Standard ones).
pub(super) fn sku_name(body: &Value) -> &str {
    body.pointer("/sku/name")
        .and_then(Value::as_str)
        .unwrap_or("Standard")
}

/// ARM's answer to a reference to a resource that does not exist (or is in another region).
pub(super) fn invalid_resource_reference(referenced: &str, referrer: &str) -> Refusal {
    SimResponse::error(
        400,
        "InvalidResourceReference",
        format!(
            "Resource {referenced} referenced by resource {referrer} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
        ),
    )
}

impl World {
    /// The IP configuration that holds `public_ip`, if any, leaving out the resource `except`
    /// (the one being written, whose own references are about to be replaced).
    pub(super) fn public_ip_holder(&self, public_ip: &str, except: Option<&str>) -> Option<String> {
        self.resources
            .values()
            .filter(|stored| {
                matches!(
                    kind_of(&stored.id),
                    Kind::LoadBalancer | Kind::NetworkInterface
                )
            })
            .filter(|stored| !except.is_some_and(|except| except.eq_ignore_ascii_case(&stored.id)))
            .flat_map(|stored| public_ip_references(&stored.id, &stored.body))
            .find(|reference| reference.public_ip.eq_ignore_ascii_case(public_ip))
            .map(|reference| reference.configuration)
    }

    /// Network's checks of the public IPs a load balancer's frontends or a NIC's IP
    /// configurations reference, with its codes and wording (as users quote them):
    /// - an IP that does not exist, or is in another region: `InvalidResourceReference`;
    /// - one IP on two configurations of the resource: `PublicIPReferencedByMultipleIPConfigs`,
    ///   "Public ip address ... is referenced by multiple ipconfigs in resource ..."
    ///   (kubernetes-sigs/cloud-provider-azure#4243);
    /// - a Basic IP on a Standard load balancer or the reverse: `PublicIPAndLBSkuDoNotMatch`,
    ///   "Standard sku load balancer ... cannot reference Basic sku publicIP ..."
    ///   (Azure/terraform-azurerm-loadbalancer#32);
    /// - an IP another resource's configuration holds: `PublicIPAddressInUse`, "Resource ... is
    ///   referencing public IP address ... that is already allocated to resource ..."
    ///   (gardener/gardener-extension-provider-azure#757, microsoft/azure-tools-for-java#91).
    pub(super) fn check_public_ip_references(&self, id: &str, body: &Value) -> Result<(), Refusal> {
        let references = public_ip_references(id, body);
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (index, reference) in references.iter().enumerate() {
            let Some(public_ip) = self.resources.get(&lower(&reference.public_ip)) else {
                return Err(invalid_resource_reference(
                    &reference.public_ip,
                    &reference.configuration,
                ));
            };
            let ip_location = public_ip
                .body
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !ip_location.eq_ignore_ascii_case(location) {
                return Err(invalid_resource_reference(
                    &reference.public_ip,
                    &reference.configuration,
                ));
            }
            if references[..index]
                .iter()
                .any(|earlier| earlier.public_ip.eq_ignore_ascii_case(&reference.public_ip))
            {
                return Err(SimResponse::error(
                    400,
                    "PublicIPReferencedByMultipleIPConfigs",
                    format!(
                        "Public ip address {} is referenced by multiple ipconfigs in resource {id}.",
                        reference.public_ip
                    ),
                ));
            }
            if kind_of(id) == Kind::LoadBalancer {
                let (balancer_sku, ip_sku) = (sku_name(body), sku_name(&public_ip.body));
                if !balancer_sku.eq_ignore_ascii_case(ip_sku) {
                    return Err(SimResponse::error(
                        400,
                        "PublicIPAndLBSkuDoNotMatch",
                        format!(
                            "{balancer_sku} sku load balancer {id} cannot reference {ip_sku} sku publicIP {}.",
                            reference.public_ip
                        ),
                    ));
                }
            }
            if let Some(holder) = self.public_ip_holder(&reference.public_ip, Some(id)) {
                return Err(SimResponse::error(
                    400,
                    "PublicIPAddressInUse",
                    format!(
                        "Resource {} is referencing public IP address {} that is already allocated to resource {holder}.",
                        reference.configuration, reference.public_ip
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses to delete a public IP an IP configuration holds: `400
    /// PublicIPAddressCannotBeDeleted` (hashicorp/terraform-provider-azurerm#2566).
    pub(super) fn require_public_ip_free(&self, id: &str) -> Result<(), Refusal> {
        let Some(holder) = self.public_ip_holder(id, None) else {
            return Ok(());
        };
        Err(SimResponse::error(
            400,
            "PublicIPAddressCannotBeDeleted",
            format!(
                "Public IP address {id} can not be deleted since it is still allocated to resource {holder}. In order to delete the public IP, disassociate/detach the Public IP address from the resource.  To learn how to do this, see aka.ms/deletepublicip."
            ),
        ))
    }

    /// What a public IP's answer shows of its holder: `properties.ipConfiguration.id` while an
    /// IP configuration holds it, nothing when it is free.
    pub(super) fn show_public_ip_holder(&self, id: &str, body: &mut Value) {
        let holder = self.public_ip_holder(id, None);
        let properties = properties_mut(body);
        properties.remove("ipConfiguration");
        if let Some(holder) = holder {
            properties.insert("ipConfiguration".to_owned(), json!({"id": holder}));
        }
    }
}
