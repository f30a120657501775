//! What a response shows of a stored resource: ARM never returns the secrets a client wrote,
//! shows a network's subnets from the subnet resources themselves, an AKS agent pool's
//! provisioning state from its cluster's, a public IP's holder, and a load balancer's
//! sub-resources with its ETag and state.

use serde_json::Value;

use super::ids::{Kind, kind_of};
use super::load_balancers::sub_resources_follow_load_balancer;
use super::{Stored, World};

/// Write-only fields of a VM: Compute accepts them on a PUT and never returns them
/// (`OSProfile.adminPassword`, "customData ... is not returned in GET" in ComputeRP's
/// virtualMachine.json).
const VIRTUAL_MACHINE_SECRETS: &[&str] = &[
    "/properties/osProfile/adminPassword",
    "/properties/osProfile/customData",
];

/// Write-only fields of a managed cluster (`ManagedClusterServicePrincipalProfile.secret`,
/// `ManagedClusterWindowsProfile.adminPassword`, `ManagedClusterAADProfile.serverAppSecret`):
/// the official examples' responses leave them out.
const MANAGED_CLUSTER_SECRETS: &[&str] = &[
    "/properties/servicePrincipalProfile/secret",
    "/properties/windowsProfile/adminPassword",
    "/properties/aadProfile/serverAppSecret",
];

impl World {
    /// The body a response carries for `stored`: a PUT's, a GET's, a list's item.
    pub(super) fn response_body(&self, stored: &Stored) -> Value {
        let mut body = stored.body.clone();
        match kind_of(&stored.id) {
            Kind::VirtualMachine => remove_fields(&mut body, VIRTUAL_MACHINE_SECRETS),
            Kind::ManagedCluster => {
                remove_fields(&mut body, MANAGED_CLUSTER_SECRETS);
                agent_pools_follow_cluster(&mut body);
            }
            Kind::VirtualNetwork => self.show_subnets(&stored.id, &mut body),
            Kind::PublicIp => self.show_public_ip_holder(&stored.id, &mut body),
            Kind::LoadBalancer => sub_resources_follow_load_balancer(&mut body),
            _ => {}
        }
        body
    }
}

fn remove_fields(body: &mut Value, pointers: &[&str]) {
    for pointer in pointers {
        let Some((parent, field)) = pointer.rsplit_once('/') else {
            continue;
        };
        if let Some(object) = body.pointer_mut(parent).and_then(Value::as_object_mut) {
            object.remove(field);
        }
    }
}

/// An agent pool is provisioned with its cluster: its `provisioningState` is the cluster's.
fn agent_pools_follow_cluster(body: &mut Value) {
    let Some(state) = body.pointer("/properties/provisioningState").cloned() else {
        return;
    };
    if let Some(pools) = body
        .pointer_mut("/properties/agentPoolProfiles")
        .and_then(Value::as_array_mut)
    {
        for pool in pools.iter_mut().filter(|pool| pool.is_object()) {
            pool["provisioningState"] = state.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_removed_and_their_neighbours_kept() {
        let mut body = json!({"properties": {"osProfile": {"adminUsername": "azureuser", "adminPassword": "p", "customData": "c"}}});
        remove_fields(&mut body, VIRTUAL_MACHINE_SECRETS);
        assert_eq!(
            body,
            json!({"properties": {"osProfile": {"adminUsername": "azureuser"}}})
        );
        let mut nothing = json!({"properties": {}});
        remove_fields(&mut nothing, MANAGED_CLUSTER_SECRETS);
        assert_eq!(nothing, json!({"properties": {}}));
    }
}
