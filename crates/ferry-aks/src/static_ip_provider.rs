//! The `static_ip` provider: a Standard static public IP in a resource group outside every
//! generation, read with the IP configuration that holds it, and detached from an old
//! cluster's load balancer in a failover.
//!
//! The detach rewrites that load balancer without the frontend that holds the address and
//! without what refers to that frontend (its load-balancing, NAT and outbound rules), with
//! `If-Match` on the ETag it read: AKS's cloud controller writes the same load balancer, and a
//! write of ours over one of its own would undo it. A 412 reads it again. Nothing else on the
//! load balancer changes, and a load balancer that no longer holds the address is left alone.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_arm::deployment::{AzureDeployment, location_value, tags_from, tags_of_body, text_at};
use ferry_arm::{ReadVia, ResourceId, StepOperations};
use ferry_core::fields::static_ip::{
    ADDRESS, HELD_BY, RELEASE_KUBECONFIG, RESOURCE_GROUP, SERVICE,
};
use ferry_core::provider::ReadRound;
use ferry_core::{
    Action, ApplyContext, Attributes, Kind, Observation, Provider, ReadContext, Step, StepError,
    StepOutcome, Value,
};
use serde_json::json;

use crate::AksError;
use crate::static_ip::load_balancer_of;

/// How long a detach waits for the old cluster's controller to let go of the address once its
/// Service is deleted, before it takes the frontend off itself.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How many times a detach reads the load balancer again after a 412 (its controller wrote
/// it between our read and our write) before the step fails as transient.
const DETACH_ATTEMPTS: usize = 5;

/// `static_ip`: `Microsoft.Network/publicIPAddresses`, outside every generation.
#[derive(Debug, Clone)]
pub struct StaticIpProvider {
    azure: Arc<AzureDeployment>,
}

impl StaticIpProvider {
    pub fn new(azure: Arc<AzureDeployment>) -> Self {
        Self { azure }
    }

    fn group_id(&self, fields: &Attributes) -> Result<ResourceId, AksError> {
        let group = required(fields, RESOURCE_GROUP)?;
        let subscription = self.azure.subscription()?;
        parse(&format!(
            "/subscriptions/{subscription}/resourceGroups/{group}"
        ))
    }

    fn id(&self, fields: &Attributes) -> Result<ResourceId, AksError> {
        let name = required(fields, "name")?;
        parse(&format!(
            "{}/providers/Microsoft.Network/publicIPAddresses/{name}",
            self.group_id(fields)?.as_str()
        ))
    }

    async fn read_address(
        &self,
        fields: &Attributes,
        via: ReadVia,
    ) -> Result<Option<Attributes>, AksError> {
        let id = self.id(fields)?;
        let Some(body) = self.azure.read_resource(&id, via).await? else {
            return Ok(None);
        };
        Ok(Some(describe(&id, &body, fields)))
    }
}

fn parse(text: &str) -> Result<ResourceId, AksError> {
    ResourceId::parse(text).map_err(|error| AksError::Spec(format!("`{text}`: {error}")))
}

fn required<'a>(fields: &'a Attributes, name: &str) -> Result<&'a str, AksError> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AksError::Spec(format!("its `{name}` is not known")))
}

/// The address's attributes, in the spec's names, with its outputs.
fn describe(id: &ResourceId, body: &Value, fields: &Attributes) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert("id".into(), json!(id.as_str()));
    attributes.insert(
        "name".into(),
        json!(text_at(body, "/name").unwrap_or_else(|| id.name().to_owned())),
    );
    attributes.insert(
        RESOURCE_GROUP.into(),
        json!(id.resource_group_name().unwrap_or_default()),
    );
    attributes.insert(
        "location".into(),
        location_value(
            body.get("location").and_then(Value::as_str),
            fields.get("location"),
        ),
    );
    attributes.insert("tags".into(), tags_of_body(body));
    attributes.insert(
        ADDRESS.into(),
        json!(text_at(body, "/properties/ipAddress")),
    );
    attributes.insert(
        HELD_BY.into(),
        json!(text_at(body, "/properties/ipConfiguration/id")),
    );
    attributes.insert("sku".into(), json!(text_at(body, "/sku/name")));
    attributes.insert(
        "allocation".into(),
        json!(text_at(body, "/properties/publicIPAllocationMethod")),
    );
    attributes
}

/// What a readable address that cannot serve its purpose reads as: a Basic or dynamic one
/// cannot move between load balancers with its address kept, and one that nothing holds
/// serves nobody.
fn health_of(body_attributes: &Attributes, body: Option<&Value>) -> ferry_core::Health {
    if let Some(body) = body
        && let creating @ ferry_core::Health::Creating { .. } =
            ferry_arm::provisioning::health_of(body)
    {
        return creating;
    }
    let text = |name: &str| body_attributes.get(name).and_then(Value::as_str);
    match (text("sku"), text("allocation")) {
        (Some(sku), _) if !sku.eq_ignore_ascii_case("Standard") => ferry_core::Health::Unhealthy {
            reason: format!(
                "its SKU is {sku}: only a Standard address moves between load balancers with its address kept"
            ),
        },
        (_, Some(allocation)) if !allocation.eq_ignore_ascii_case("Static") => {
            ferry_core::Health::Unhealthy {
                reason: format!(
                    "its allocation is {allocation}: a dynamic address changes when it is released"
                ),
            }
        }
        // Only a cluster's ingress takes the address, ferry never gives it to one: an address
        // that nothing holds is an ingress that lost it, seen on an ordinary day by the plan's
        // warnings and `ferry watch`, not by clients on the day of the failover.
        _ if text(HELD_BY).is_none_or(str::is_empty) => ferry_core::Health::Unhealthy {
            reason: "no load balancer holds it, so clients reach nothing at this address: the serving cluster's ingress Service has not taken it (read that Service's events: its loadBalancerIP or its azure-pip-name and azure-load-balancer-resource-group annotations)".to_owned(),
        },
        _ => ferry_core::Health::Healthy,
    }
}

/// The load balancer `body` without the frontends that hold `address_id` and without what
/// refers to them; `None` when no frontend holds it.
fn without_frontends_of(mut body: Value, address_id: &str) -> Option<Value> {
    let properties = body.get_mut("properties")?.as_object_mut()?;
    let frontends = properties
        .get_mut("frontendIPConfigurations")?
        .as_array_mut()?;
    let mut removed: Vec<String> = Vec::new();
    frontends.retain(|frontend| {
        let holds = frontend
            .pointer("/properties/publicIPAddress/id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.eq_ignore_ascii_case(address_id));
        if holds && let Some(id) = frontend.get("id").and_then(Value::as_str) {
            removed.push(id.to_ascii_lowercase());
        }
        !holds
    });
    if removed.is_empty() {
        return None;
    }
    let refers_to_removed = |item: &Value| {
        let one = item
            .pointer("/properties/frontendIPConfiguration/id")
            .and_then(Value::as_str)
            .is_some_and(|id| removed.contains(&id.to_ascii_lowercase()));
        let many = item
            .pointer("/properties/frontendIPConfigurations")
            .and_then(Value::as_array)
            .is_some_and(|list| {
                list.iter().any(|reference| {
                    reference
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| removed.contains(&id.to_ascii_lowercase()))
                })
            });
        one || many
    };
    for list in [
        "loadBalancingRules",
        "inboundNatRules",
        "inboundNatPools",
        "outboundRules",
    ] {
        if let Some(items) = properties.get_mut(list).and_then(Value::as_array_mut) {
            items.retain(|item| !refers_to_removed(item));
        }
    }
    Some(body)
}

impl StaticIpProvider {
    /// Creates the address (and its group when missing), or updates its tags: one PUT each.
    async fn put_address(
        &self,
        operations: &StepOperations<'_>,
        fields: &Attributes,
    ) -> Result<Attributes, AksError> {
        let group = self.group_id(fields)?;
        let location = fields.get("location").cloned().unwrap_or(Value::Null);
        if self
            .azure
            .read_resource(&group, ReadVia::Single)
            .await?
            .is_none()
        {
            operations.progress(format!(
                "creating the resource group {}, which no generation deletes",
                group.name()
            ));
            // With the address's tags: a drill's group says it is the drill's.
            let mut body = json!({"location": location});
            if let Some(tags) = tags_from(fields) {
                body["tags"] = json!(tags);
            }
            operations.put::<_, Value>(&group, &body).await?;
        }
        let mut body = json!({
            "location": location,
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {
                "publicIPAllocationMethod": "Static",
                "publicIPAddressVersion": "IPv4",
            }
        });
        if let Some(tags) = tags_from(fields) {
            body["tags"] = json!(tags);
        }
        let id = self.id(fields)?;
        let written: Value = operations.put(&id, &body).await?;
        Ok(describe(&id, &written, fields))
    }

    /// A drill's address is in a group the drill's create made, tagged with the drill's id:
    /// it goes with the address, so that nothing of the drill is left. Production's group is
    /// never deleted: it carries no drill tag.
    async fn delete_drills_group(
        &self,
        operations: &StepOperations<'_>,
        fields: &Attributes,
    ) -> Result<(), AksError> {
        let group = self.group_id(fields)?;
        let Some(body) = self.azure.read_resource(&group, ReadVia::Single).await? else {
            return Ok(());
        };
        let drill = ferry_core::fields::DRILL_TAG;
        let tagged = body
            .pointer(&format!("/tags/{drill}"))
            .and_then(Value::as_str)
            .is_some_and(|id| {
                tags_from(fields)
                    .and_then(|tags| tags.get(drill).cloned())
                    .as_deref()
                    == Some(id)
            });
        if tagged {
            operations.progress(format!(
                "deleting the drill's resource group {}, made for its address",
                group.name()
            ));
            operations.delete(&group).await?;
        }
        Ok(())
    }

    /// The cooperative release, when the old cluster still answers (a planned failover): its
    /// Service that asks for the address is deleted there, and its own cloud controller takes
    /// the frontend off, as AKS does for a deleted LoadBalancer Service; otherwise that
    /// controller would put the frontend back after ferry took it off. Returns whether the
    /// address left the planned holder; any answer but the deletion's leaves it to ARM.
    async fn release_through_old_cluster(
        &self,
        operations: &StepOperations<'_>,
        fields: &Attributes,
        planned_holder: &str,
    ) -> Result<bool, AksError> {
        let (Some(service), Some(kubeconfig)) = (
            fields.get(SERVICE).and_then(Value::as_str),
            fields.get(RELEASE_KUBECONFIG).and_then(Value::as_str),
        ) else {
            return Ok(false);
        };
        let Some((namespace, name)) = service.split_once('/') else {
            return Ok(false);
        };
        match delete_service(&self.azure, kubeconfig, namespace, name).await {
            Ok(true) => operations.progress(format!(
                "the old cluster answers: its Service {service} deleted, so that its cloud controller lets go of the address"
            )),
            Ok(false) => {
                operations.progress(format!(
                    "the old cluster has no Service {service}: the address is taken off its load balancer over ARM"
                ));
                return Ok(false);
            }
            Err(reason) => {
                operations.progress(format!(
                    "the old cluster's Service {service} was not deleted ({reason}): the address is taken off its load balancer over ARM"
                ));
                return Ok(false);
            }
        }
        let started = tokio::time::Instant::now();
        while started.elapsed() < RELEASE_WAIT {
            let holder = self
                .read_address(fields, ReadVia::Single)
                .await?
                .and_then(|now| now.get(HELD_BY).and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            if !holder.eq_ignore_ascii_case(planned_holder) {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        operations.progress(format!(
            "the old cluster's controller has not let go of the address in {}s: it is taken off over ARM",
            RELEASE_WAIT.as_secs()
        ));
        Ok(false)
    }

    /// Takes the address off the load balancer frontend that holds it (the step's `held_by`,
    /// as planned), and only that: through the old cluster when it answers, else over ARM.
    async fn detach(
        &self,
        operations: &StepOperations<'_>,
        fields: &Attributes,
        planned_holder: &str,
    ) -> Result<Attributes, AksError> {
        let id = self.id(fields)?;
        let client = self.azure.client();
        let still_planned = self
            .read_address(fields, ReadVia::Single)
            .await?
            .and_then(|now| now.get(HELD_BY).and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|holder| holder.eq_ignore_ascii_case(planned_holder));
        if still_planned {
            self.release_through_old_cluster(operations, fields, planned_holder)
                .await?;
        }
        for _ in 0..DETACH_ATTEMPTS {
            let Some(now) = self.read_address(fields, ReadVia::Single).await? else {
                return Err(AksError::Spec(
                    "the address no longer exists: nothing holds it, and nothing will serve it; create it again (ferry plan) before the ingress can take it".to_owned(),
                ));
            };
            let holder = now.get(HELD_BY).and_then(Value::as_str).unwrap_or_default();
            if holder.is_empty() || !holder.eq_ignore_ascii_case(planned_holder) {
                // Free already, or taken by another (the next generation's ingress, once it
                // could): what the step was for is done.
                return Ok(now);
            }
            let Some(load_balancer) = load_balancer_of(holder) else {
                return Err(AksError::Spec(format!(
                    "it is held by {holder}, which is not a load balancer's frontend: ferry releases it only from a cluster's load balancer"
                )));
            };
            let load_balancer = parse(load_balancer)?;
            let Some(fetched) = client.read::<Value>(&load_balancer).await? else {
                // Gone with its cluster's node group: the address is free.
                continue;
            };
            let Some(body) = without_frontends_of(fetched.value, id.as_str()) else {
                continue;
            };
            operations.progress(format!(
                "removing the address's frontend from {load_balancer}"
            ));
            match operations
                .put_if_match::<_, Value>(&load_balancer, &body, fetched.etag.as_deref())
                .await
            {
                Ok(_) => {}
                Err(error) if error.is_precondition_failed() => {
                    operations.progress(
                        "the load balancer changed since it was read (its cloud controller wrote it): reading it again".to_owned(),
                    );
                }
                Err(error) => return Err(error.into()),
            }
        }
        match self.read_address(fields, ReadVia::Single).await? {
            Some(now)
                if !now
                    .get(HELD_BY)
                    .and_then(Value::as_str)
                    .is_some_and(|holder| holder.eq_ignore_ascii_case(planned_holder)) =>
            {
                Ok(now)
            }
            _ => Err(AksError::Busy(format!(
                "{planned_holder} still holds the address after {DETACH_ATTEMPTS} attempts: its load balancer keeps changing (is the old cluster's cloud controller running?)"
            ))),
        }
    }
}

/// Deletes a Service through a cluster's API server, as the kubeconfig at `path` reaches it
/// (its server, its CA, a bearer token). `Err` says why it was not deleted: no kubeconfig, an
/// API server that does not answer, a refusal; `Ok(false)` when the Service is not there.
async fn delete_service(
    azure: &AzureDeployment,
    path: &str,
    namespace: &str,
    name: &str,
) -> Result<bool, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("its kubeconfig {path} cannot be read: {error}"))?;
    let field = |key: &str| {
        text.lines().find_map(|line| {
            line.trim()
                .strip_prefix(key)
                .map(|value| value.trim().to_owned())
        })
    };
    let server = field("server:").ok_or("its kubeconfig names no server")?;
    let token = field("token:").ok_or("its kubeconfig holds no token")?;
    let settings = azure.settings();
    let mut builder = reqwest::Client::builder()
        .timeout(settings.readyz_timeout)
        .connect_timeout(settings.readyz_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true);
    if let Some(ca) = field("certificate-authority-data:")
        .and_then(|data| data_encoding::BASE64.decode(data.as_bytes()).ok())
        && let Ok(certificates) = reqwest::Certificate::from_pem_bundle(&ca)
    {
        builder = builder.tls_certs_merge(certificates);
    }
    let client = builder
        .build()
        .map_err(|error| format!("no HTTPS client: {error}"))?;
    let url = format!(
        "{}/api/v1/namespaces/{namespace}/services/{name}",
        server.trim_end_matches('/')
    );
    match client.delete(&url).bearer_auth(token).send().await {
        Ok(response) if response.status().is_success() => Ok(true),
        Ok(response) if response.status() == 404 => Ok(false),
        Ok(response) => Err(format!("DELETE {url} answered {}", response.status())),
        Err(error) => Err(format!("its API server does not answer: {error}")),
    }
}

#[async_trait]
impl Provider for StaticIpProvider {
    fn kind(&self) -> Kind {
        Kind::StaticIp
    }

    fn begin_read_round(&self) -> ReadRound {
        ReadRound::new(self.azure.begin_read_round())
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        let id = match self.id(context.fields) {
            Ok(id) => id,
            Err(error) => {
                return Observation::Unknown {
                    reason: error.to_string(),
                };
            }
        };
        match self.azure.read_resource(&id, ReadVia::Lists).await {
            Ok(Some(body)) => {
                let attributes = describe(&id, &body, context.fields);
                let health = health_of(&attributes, Some(&body));
                Observation::Present { attributes, health }
            }
            Ok(None) => Observation::Absent,
            Err(error) => ferry_arm::deployment::unknown(&error),
        }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let operations = StepOperations::new(
            self.azure.client(),
            context.record_resume_token,
            context.progress,
        );
        let fields = context.inputs;
        let result = async {
            operations.resume(context.resume_token).await?;
            match step.action {
                Action::Create | Action::Update => self.put_address(&operations, fields).await,
                Action::Detach => {
                    let holder = required(fields, HELD_BY)?.to_owned();
                    self.detach(&operations, fields, &holder).await
                }
                Action::Delete => {
                    let id = self.id(fields)?;
                    operations.delete(&id).await?;
                    self.delete_drills_group(&operations, fields).await?;
                    Ok(Attributes::new())
                }
                other => Err(AksError::Spec(format!("a static IP has no `{other}` step"))),
            }
        }
        .await;
        result
            .map(|outputs| StepOutcome { outputs })
            .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS_ID: &str = "/subscriptions/s/resourceGroups/data100-shared/providers/Microsoft.Network/publicIPAddresses/ingress";
    const LB: &str = "/subscriptions/s/resourceGroups/MC_g1/providers/Microsoft.Network/loadBalancers/kubernetes";

    #[test]
    fn the_detach_removes_the_frontend_and_only_what_refers_to_it() {
        let body = json!({
            "name": "kubernetes",
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "a1", "id": format!("{LB}/frontendIPConfigurations/a1"),
                     "properties": {"publicIPAddress": {"id": ADDRESS_ID.to_lowercase()}}},
                    {"name": "outbound", "id": format!("{LB}/frontendIPConfigurations/outbound"),
                     "properties": {"publicIPAddress": {"id": "/subscriptions/s/resourceGroups/MC_g1/providers/Microsoft.Network/publicIPAddresses/out"}}}
                ],
                "loadBalancingRules": [
                    {"name": "a1-443", "properties": {"frontendIPConfiguration": {"id": format!("{LB}/frontendIPConfigurations/A1")}}},
                    {"name": "other", "properties": {"frontendIPConfiguration": {"id": format!("{LB}/frontendIPConfigurations/outbound")}}}
                ],
                "outboundRules": [
                    {"name": "out", "properties": {"frontendIPConfigurations": [{"id": format!("{LB}/frontendIPConfigurations/outbound")}]}}
                ]
            }
        });
        let after = without_frontends_of(body, ADDRESS_ID).expect("a frontend holds it");
        let names = |list: &str| -> Vec<String> {
            after["properties"][list]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("frontendIPConfigurations"), ["outbound"]);
        assert_eq!(names("loadBalancingRules"), ["other"]);
        assert_eq!(names("outboundRules"), ["out"]);
    }

    #[test]
    fn a_load_balancer_that_does_not_hold_the_address_is_left_alone() {
        let body = json!({"properties": {"frontendIPConfigurations": [
            {"name": "x", "id": "x", "properties": {"publicIPAddress": {"id": "/other"}}}
        ]}});
        assert_eq!(without_frontends_of(body, ADDRESS_ID), None);
    }
}
