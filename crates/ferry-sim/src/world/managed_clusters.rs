//! Managed clusters (AKS): their server-owned fields, an HTTPS API server with `/readyz` on a
//! loopback address for each, and the kubeconfigs of the credential actions.

use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{Value, json};

use super::body::{keep_previous, properties_mut};
use super::ids::{group_name, lower, name_of};
use super::routing::no_such_action;
use super::{Refusal, SimRequest, SimResponse, Stored, World};
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
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: https://{fqdn}\n    certificate-authority-data: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: clusterUser_{name}\ncurrent-context: {name}\nusers:\n- name: clusterUser_{name}\n  user:\n    token: ferry-sim-kubernetes-token\n",
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

    pub(super) fn start_api_server(&mut self, cluster_id: &str) -> Result<(), String> {
        let key = lower(cluster_id);
        if self.readyz.contains_key(&key) {
            return Ok(());
        }
        let address = self.allocate_public_ip();
        let server = ReadyzServer::start(address, self.settings.readyz_port, &self.authority)
            .map_err(|error| error.to_string())?;
        let fqdn = server.fqdn();
        if let Some(stored) = self.resources.get_mut(&key) {
            let properties = properties_mut(&mut stored.body);
            properties.insert("fqdn".to_owned(), json!(fqdn.clone()));
            properties.insert("azurePortalFQDN".to_owned(), json!(fqdn));
        }
        self.readyz.insert(key, server);
        Ok(())
    }

    /// Stops a deleted cluster's API server.
    pub(super) fn stop_api_server(&mut self, key: &str) {
        if let Some(server) = self.readyz.remove(key) {
            server.stop();
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

pub(super) fn fill_managed_cluster_fields(id: &str, body: &mut Value, previous: &Value) {
    keep_previous(body, previous, "fqdn");
    keep_previous(body, previous, "azurePortalFQDN");
    keep_previous(body, previous, "nodeResourceGroup");
    let name = name_of(id);
    let group = group_name(id);
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let properties = properties_mut(body);
    properties
        .entry("nodeResourceGroup")
        .or_insert(json!(format!("MC_{group}_{name}_{location}")));
    properties
        .entry("kubernetesVersion")
        .or_insert(json!("1.33.0"));
    properties.entry("dnsPrefix").or_insert(json!(name.clone()));
    properties.insert("powerState".to_owned(), json!({"code": "Running"}));
    properties.remove("fqdn");
    properties.remove("azurePortalFQDN");
    if let Some(fqdn) = previous
        .get("properties")
        .and_then(|properties| properties.get("fqdn"))
    {
        properties.insert("fqdn".to_owned(), fqdn.clone());
        properties.insert("azurePortalFQDN".to_owned(), fqdn.clone());
    }
}
