//! Planning rules of a static public IP that outlives generations: the address clients know,
//! taken over by the next generation's ingress in a failover, so that no DNS record changes.
//!
//! The address lives in a resource group of its own, outside every generation. The serving
//! cluster's ingress holds it: AKS's cloud controller puts it on a frontend of the cluster's
//! `kubernetes` load balancer for the ingress Service (annotated with
//! `service.beta.kubernetes.io/azure-pip-name` and
//! `service.beta.kubernetes.io/azure-load-balancer-resource-group`). Azure lets one IP
//! configuration hold an address at a time (`PublicIPAddressInUse`), and a dead cluster's
//! controller never lets go of it: a failover detaches it from the old cluster's load balancer
//! over ARM, which answers whatever the API server does, and the new cluster's controller,
//! whose Service has been asking for the address, takes it.

use ferry_core::fields::static_ip::{
    ADDRESS, HELD_BY, RELEASE_KUBECONFIG, RESOURCE_GROUP, SERVICE,
};
use ferry_core::naming::{self, check_field};
use ferry_core::provider::{FieldType as T, LOCATION_IS_FIXED, NAME_IS_THE_ID, OnChange};
use ferry_core::{
    Action, Attributes, FailoverContext, FieldError, FieldSchema as F, InstanceAddress, Kind,
    KindRules, Observation, OutputSchema as O, ResourceSpec, SimulatedStep, StepDraft, Value,
};
use serde_json::json;

/// `[static_ip.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticIpRules;

/// The resource group named in an ARM id (`.../resourceGroups/NAME/...`), as written there.
pub(crate) fn group_of(id: &str) -> Option<&str> {
    let mut segments = id.split('/');
    segments
        .by_ref()
        .find(|segment| segment.eq_ignore_ascii_case("resourceGroups"))?;
    segments.next().filter(|name| !name.is_empty())
}

/// The load balancer an IP configuration id belongs to (`{lb}/frontendIPConfigurations/NAME`),
/// or `None` when the holder is not a load balancer's frontend (a network interface's).
pub(crate) fn load_balancer_of(holder: &str) -> Option<&str> {
    let lower = holder.to_ascii_lowercase();
    if !lower.contains("/providers/microsoft.network/loadbalancers/") {
        return None;
    }
    let at = lower.find("/frontendipconfigurations/")?;
    Some(&holder[..at])
}

/// The cluster instance whose node resource group `group` is, among those read.
fn cluster_with_node_group<'a>(
    context: &'a FailoverContext<'_>,
    group: &str,
) -> Option<&'a InstanceAddress> {
    context
        .snapshot
        .resources
        .iter()
        .filter(|(instance, _)| instance.kind() == Kind::AksCluster)
        .find(|(_, observation)| {
            observation
                .attribute("node_resource_group")
                .and_then(Value::as_str)
                .is_some_and(|node_group| node_group.eq_ignore_ascii_case(group))
        })
        .map(|(instance, _)| instance)
}

impl KindRules for StaticIpRules {
    fn kind(&self) -> Kind {
        Kind::StaticIp
    }

    fn description(&self) -> &'static str {
        "A static public IP address (Standard SKU) that outlives generations: the serving cluster's ingress holds it, and a failover hands it to the next generation's, so that clients keep the address and no DNS record changes"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("name", T::String, NAME_IS_THE_ID, "public IP address name"),
            F::required(
                RESOURCE_GROUP,
                T::String,
                OnChange::Replace("a public IP moves to another resource group only by hand"),
                "the Azure resource group that holds it, outside every generation (a plain name, not a resource_group of the spec, whose names carry ${generation}); ferry creates it when missing and never deletes it. Each cluster's identity needs the Network Contributor role on it",
            ),
            F::optional(
                "location",
                T::String,
                Some("the deployment's location"),
                LOCATION_IS_FIXED,
                "Azure region: a public IP moves only between load balancers of its own region",
            ),
            F::optional(
                SERVICE,
                T::String,
                None,
                OnChange::InPlace,
                "NAMESPACE/NAME of the Kubernetes Service that asks for the address in each generation's cluster (its ingress): a failover whose old cluster still answers deletes it there, so that its own cloud controller lets go of the address (otherwise it would take it back); without it, or when the old API server does not answer, the address is taken off the old load balancer over ARM",
            ),
            F::optional("tags", T::StringMap, None, OnChange::InPlace, "Azure tags"),
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            O {
                name: "id",
                description: "the Azure resource id",
            },
            O {
                name: "name",
                description: "the public IP address name",
            },
            O {
                name: RESOURCE_GROUP,
                description: "the resource group that holds it (for the ingress's annotation)",
            },
            O {
                name: ADDRESS,
                description: "the IP address, the same in every generation: point DNS records and the ingress Service (`loadBalancerIP`) at it",
            },
            O {
                name: HELD_BY,
                description: "the ARM id of the IP configuration that holds it (a cluster's load balancer frontend), or null when it is free",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        // A name or group with ${generation} is refused for every stateful kind at load.
        let mut errors: Vec<FieldError> = [
            check_field(spec, "name", &naming::PUBLIC_IP),
            check_field(spec, RESOURCE_GROUP, &naming::RESOURCE_GROUP),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(service) = spec.field(SERVICE).and_then(Value::as_str) {
            // Kubernetes names: DNS labels, up to 63 characters each.
            let label = |part: &str| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            };
            let valid = service
                .split_once('/')
                .is_some_and(|(namespace, name)| label(namespace) && label(name));
            if !valid {
                errors.push(
                    FieldError::new(
                        SERVICE,
                        format!("`{service}` is not a Kubernetes Service as NAMESPACE/NAME"),
                    )
                    .with_help(
                        "write the ingress Service's namespace and name, lower-case, such as service = \"ingress/ingress-nginx-controller\"",
                    ),
                );
            }
        }
        errors
    }

    /// The ingress Service's name steers ferry's detach: Azure has no such attribute.
    fn is_observed(&self, field: &str) -> bool {
        field != SERVICE
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            // The group if missing, then the address.
            Action::Create => 15,
            // A load balancer's update: about half a minute on Azure.
            Action::Detach => 30,
            _ => 10,
        }
    }

    /// A Standard static address is billed for as long as it exists, held or not.
    fn upkeep(&self, _: &Attributes) -> Option<String> {
        Some("a Standard static public IP".to_owned())
    }

    /// The next generation's ingress cannot take the address while the old one's load balancer
    /// holds it: detach it there. An address held by anything but one of the deployment's
    /// clusters is not ferry's to take, and one whose holder cannot be read is not moved.
    fn failover(&self, context: &FailoverContext<'_>) -> Result<Vec<StepDraft>, String> {
        let me = context.spec.address.at(None);
        let to = context.to_generation;
        let holder = match context.observed {
            Observation::Unknown { reason } => {
                return Err(format!(
                    "its reading is unknown ({reason}), so ferry cannot tell which load balancer holds the address: it is never taken blind"
                ));
            }
            Observation::Absent => return Ok(Vec::new()),
            Observation::Present { attributes, .. } => {
                match attributes.get(HELD_BY).and_then(Value::as_str) {
                    Some(holder) if !holder.is_empty() => holder.to_owned(),
                    _ => return Ok(Vec::new()),
                }
            }
        };
        let cluster = load_balancer_of(&holder)
            .and_then(group_of)
            .and_then(|group| cluster_with_node_group(context, group));
        match cluster {
            Some(cluster) if cluster.generation == Some(to) => Ok(Vec::new()),
            Some(cluster) if cluster.generation.is_some_and(|generation| generation < to) => {
                // The spec's fields say where the address is; the holder, what to take it from.
                let mut detach = StepDraft::new(
                    me,
                    Action::Detach,
                    format!(
                        "held by the load balancer of {cluster}, which generation {to} replaces: released there so that generation {to}'s ingress takes the same address (clients and DNS keep it)"
                    ),
                );
                detach.inputs = context.inputs.clone();
                // The old cluster's own API server is asked first, when it answers.
                if let Some(kubeconfig) = context
                    .snapshot
                    .get(cluster)
                    .and_then(|reading| reading.attribute("kubeconfig"))
                    .filter(|path| path.is_string())
                {
                    detach = detach.input(RELEASE_KUBECONFIG, kubeconfig.clone());
                }
                Ok(vec![detach.input(HELD_BY, json!(holder))])
            }
            _ => Err(format!(
                "the address is held by {holder}, which is not the load balancer of a cluster of an older generation of this deployment: ferry takes it only from its own clusters; free it there (remove that IP configuration), or plan again once it is free"
            )),
        }
    }

    fn simulate(&self, step: &SimulatedStep<'_>, attributes: &mut Attributes) {
        match step.action {
            Action::Detach => {
                attributes.insert(HELD_BY.to_owned(), Value::Null);
            }
            _ => {
                if attributes.get(ADDRESS).is_none_or(Value::is_null) {
                    let number = step.number;
                    let address = format!("127.0.{}.{}", 200 + (number >> 8) % 50, number & 0xff);
                    attributes.insert(ADDRESS.to_owned(), Value::from(address));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_told_apart_by_their_ids() {
        let frontend = "/subscriptions/s/resourceGroups/MC_data100-g1_data100-hub_westeurope/providers/Microsoft.Network/loadBalancers/kubernetes/frontendIPConfigurations/a1b2";
        assert_eq!(
            load_balancer_of(frontend),
            Some(
                "/subscriptions/s/resourceGroups/MC_data100-g1_data100-hub_westeurope/providers/Microsoft.Network/loadBalancers/kubernetes"
            )
        );
        assert_eq!(
            load_balancer_of(frontend).and_then(group_of),
            Some("MC_data100-g1_data100-hub_westeurope")
        );
        let nic = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n/ipConfigurations/ipconfig1";
        assert_eq!(load_balancer_of(nic), None);
    }
}
