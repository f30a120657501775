//! Managed clusters (AKS): their server-owned fields, an HTTPS API server with `/readyz` on a
//! loopback address for each, the kubeconfigs of the credential actions, and the node resource
//! group AKS makes for each (`MC_{group}_{name}_{location}`) with its `kubernetes` load
//! balancer.
//!
//! The node group is created when the cluster's create ends and deleted with the cluster, with
//! all it holds (which frees the public IPs its load balancer held). Like AKS, the group is
//! tagged `aks-managed-cluster-name` and `aks-managed-cluster-rg` and `managedBy` the cluster.
//! AKS lets users write into it by default (its `nodeResourceGroupProfile.restrictionLevel`
//! is `Unrestricted`; `ReadOnly` adds a deny assignment, which the simulator does not model):
//! ferry removes a frontend from the `kubernetes` load balancer at failover.

use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{Value, json};

use super::body::{keep_previous, properties_mut};
use super::ids::{group_name, lower, name_of, subscription_of};
use super::routing::no_such_action;
use super::{Refusal, SimRequest, SimResponse, Stored, World};
use crate::kubernetes::KUBERNETES_TOKEN;
use crate::readyz::ReadyzServer;

impl World {
    /// `listClusterUserCredential` and `listClusterAdminCredential`: a kubeconfig for the
    /// cluster's API server, trusting the simulator's CA.
    pub(super) fn managed_cluster_action(
        &mut self,
        request: &SimRequest,
        resource_id: &str,
        stored: &Stored,
        action: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        match (request.method.as_str(), action) {
            ("POST", "listclusterusercredential" | "listclusteradmincredential") => {
                let fqdn = stored
                    .body
                    .pointer("/properties/fqdn")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let name = name_of(resource_id);
                let kubeconfig = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: https://{fqdn}\n    certificate-authority-data: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: clusterUser_{name}\ncurrent-context: {name}\nusers:\n- name: clusterUser_{name}\n  user:\n    token: {KUBERNETES_TOKEN}\n",
                    BASE64.encode(self.authority.pem().as_bytes())
                );
                Ok((
                    SimResponse::json(
                        200,
                        &json!({"kubeconfigs": [{"name": "clusterUser", "value": BASE64.encode(kubeconfig.as_bytes())}]}),
                    ),
                    None,
                ))
            }
            _ => Err(no_such_action(request, resource_id, action)),
        }
    }

    /// Starts the cluster's API server, once; returns what ARM reports as its `fqdn`.
    pub(super) fn start_api_server(&mut self, cluster_id: &str) -> Result<String, String> {
        let key = lower(cluster_id);
        if let Some(server) = self.readyz.get(&key) {
            return Ok(server.fqdn());
        }
        let address = self.allocate_public_ip();
        let server = ReadyzServer::start(address, self.settings.readyz_port, &self.authority)
            .map_err(|error| error.to_string())?;
        let fqdn = server.fqdn();
        if let Some(stored) = self.resources.get_mut(&key) {
            let properties = properties_mut(&mut stored.body);
            properties.insert("fqdn".to_owned(), json!(fqdn.clone()));
            properties.insert("azurePortalFQDN".to_owned(), json!(fqdn.clone()));
        }
        self.readyz.insert(key, server);
        Ok(fqdn)
    }

    /// Stops a deleted cluster's API server.
    pub(super) fn stop_api_server(&mut self, key: &str) {
        if let Some(server) = self.readyz.remove(key) {
            server.stop();
        }
    }

    /// Creates the cluster's node resource group and its `kubernetes` load balancer, once.
    pub(super) fn ensure_node_resource_group(&mut self, cluster_id: &str) -> Result<(), String> {
        let Some(cluster) = self.resources.get(&lower(cluster_id)).cloned() else {
            return Ok(());
        };
        let Some(group_id) = node_resource_group_id(&cluster.id, &cluster.body) else {
            return Ok(());
        };
        let location = cluster
            .body
            .get("location")
            .cloned()
            .unwrap_or_else(|| json!("westeurope"));
        let balancer = format!("{group_id}/providers/Microsoft.Network/loadBalancers/kubernetes");
        if self.resources.contains_key(&lower(&group_id)) {
            return Ok(());
        }
        self.seed(
            &group_id,
            json!({
                "location": location,
                "managedBy": cluster.id,
                "tags": {
                    "aks-managed-cluster-name": name_of(&cluster.id),
                    "aks-managed-cluster-rg": group_name(&cluster.id),
                },
            }),
        )?;
        self.seed(
            &balancer,
            json!({
                "location": location,
                "sku": {"name": "Standard", "tier": "Regional"},
                "properties": {"backendAddressPools": [{"name": "kubernetes"}]},
            }),
        )
    }

    /// Deletes a deleted cluster's node resource group and everything in it.
    pub(super) fn remove_node_resource_group(&mut self, cluster: &Stored) {
        let Some(group_id) = node_resource_group_id(&cluster.id, &cluster.body) else {
            return;
        };
        let managed_by_cluster = self.resources.get(&lower(&group_id)).is_some_and(|group| {
            group
                .body
                .get("managedBy")
                .and_then(Value::as_str)
                .is_some_and(|owner| owner.eq_ignore_ascii_case(&cluster.id))
        });
        if managed_by_cluster {
            self.remove_resource(&group_id);
        }
    }

    /// The address of a cluster's API server (`/readyz`), by cluster name or id.
    pub fn api_server_address(&self, cluster: &str) -> Option<std::net::SocketAddr> {
        self.readyz
            .iter()
            .find(|(id, _)| {
                id.eq_ignore_ascii_case(cluster) || name_of(id).eq_ignore_ascii_case(cluster)
            })
            .map(|(_, server)| server.address())
    }
}

/// The id of a cluster's node resource group, from its `properties.nodeResourceGroup`.
pub(super) fn node_resource_group_id(cluster_id: &str, body: &Value) -> Option<String> {
    let name = body
        .pointer("/properties/nodeResourceGroup")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())?;
    Some(format!(
        "/subscriptions/{}/resourceGroups/{name}",
        subscription_of(cluster_id)
    ))
}

/// What AKS fills in an agent pool that does not say (the defaults of
/// `ManagedClusterAgentPoolProfile` in the 2026-05-01 definitions, and the values the official
/// create example answers with).
fn fill_agent_pool_defaults(pool: &mut Value, kubernetes_version: &str, azure_cni: bool) {
    let Some(pool) = pool.as_object_mut() else {
        return;
    };
    pool.entry("type")
        .or_insert(json!("VirtualMachineScaleSets"));
    pool.entry("mode").or_insert(json!("System"));
    pool.entry("osType").or_insert(json!("Linux"));
    pool.entry("osSKU").or_insert(json!("Ubuntu"));
    pool.entry("osDiskSizeGB").or_insert(json!(128));
    pool.entry("osDiskType").or_insert(json!("Managed"));
    pool.entry("kubeletDiskType").or_insert(json!("OS"));
    // 30 pods a node with Azure CNI, 110 with kubenet.
    pool.entry("maxPods")
        .or_insert(json!(if azure_cni { 30 } else { 110 }));
    pool.entry("orchestratorVersion")
        .or_insert(json!(kubernetes_version));
    pool.insert(
        "currentOrchestratorVersion".to_owned(),
        json!(kubernetes_version),
    );
    pool.entry("nodeImageVersion")
        .or_insert(json!("AKSUbuntu-2204gen2containerd-202505.14.0"));
    pool.insert("powerState".to_owned(), json!({"code": "Running"}));
    pool.entry("enableFIPS").or_insert(json!(false));
}

impl World {
    /// What AKS computes for a cluster, in the create's own response already: the API
    /// server's `fqdn` (its server starts now, so that its address is known), the node
    /// group, versions, power state and each agent pool's defaults.
    pub(super) fn fill_managed_cluster_fields(
        &mut self,
        id: &str,
        body: &mut Value,
        previous: &Value,
    ) {
        keep_previous(body, previous, "nodeResourceGroup");
        let name = name_of(id);
        let group = group_name(id);
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("westeurope")
            .to_owned();
        // A server that cannot start leaves the fqdn out; the operation's end tries again and
        // fails the operation with the reason.
        let fqdn = self.start_api_server(id).ok();
        let properties = properties_mut(body);
        properties
            .entry("nodeResourceGroup")
            .or_insert(json!(format!("MC_{group}_{name}_{location}")));
        let kubernetes_version = match properties.get("kubernetesVersion").and_then(Value::as_str) {
            Some(version) if !version.is_empty() => version.to_owned(),
            _ => "1.33.0".to_owned(),
        };
        properties.insert("kubernetesVersion".to_owned(), json!(kubernetes_version));
        properties.insert(
            "currentKubernetesVersion".to_owned(),
            json!(kubernetes_version),
        );
        properties.entry("dnsPrefix").or_insert(json!(name.clone()));
        properties.insert("maxAgentPools".to_owned(), json!(100));
        properties.insert("powerState".to_owned(), json!({"code": "Running"}));
        properties.remove("fqdn");
        properties.remove("azurePortalFQDN");
        if let Some(fqdn) = fqdn {
            properties.insert("fqdn".to_owned(), json!(fqdn.clone()));
            properties.insert("azurePortalFQDN".to_owned(), json!(fqdn));
        }
        let azure_cni = properties
            .get("networkProfile")
            .and_then(|profile| profile.get("networkPlugin"))
            .and_then(Value::as_str)
            .is_some_and(|plugin| plugin.eq_ignore_ascii_case("azure"));
        if let Some(pools) = properties
            .get_mut("agentPoolProfiles")
            .and_then(Value::as_array_mut)
        {
            for pool in pools {
                fill_agent_pool_defaults(pool, &kubernetes_version, azure_cni);
            }
        }
    }
}
