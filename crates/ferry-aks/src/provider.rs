//! The `aks_cluster` provider on the ARM client, with the API server probe that makes it a
//! failover trigger.
//!
//! Health is ARM's view (`provisioningState` Succeeded, `powerState` Running) AND a direct
//! `GET https://<fqdn>/readyz` within a short timeout, trusting the cluster's own CA from its
//! kubeconfig (plus any configured CA): the data100 outage was a cluster that ARM called fine
//! while its API server was dead, which reads Present and Unhealthy here.
//!
//! The user kubeconfig (`listClusterUserCredential`) is written to
//! `{state folder}/kubeconfigs/{instance}.yaml` with mode 0600, and its path is the
//! `kubeconfig` output. Its content is never logged, returned or put in an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_arm::deployment::{
    AzureDeployment, OutputsOf, already_replaced, generations_around, location_value, tags_from,
    tags_of_body, text_at,
};
use ferry_arm::{ArmError, LocateError, ReadVia, ResourceId, StepOperations};
use ferry_core::fs::{WriteOptions, write_atomically};
use ferry_core::provider::ReadRound;
use ferry_core::{
    Action, ApplyContext, Attributes, Health, InstanceAddress, Kind, Observation, Provider,
    ReadContext, Step, StepError, StepOutcome, Value,
};
use serde_json::json;

/// Why a cluster step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AksError {
    #[error("{0}")]
    Arm(Box<ArmError>),
    #[error("{0}")]
    Locate(#[from] LocateError),
    #[error(
        "{cluster}: could not write its kubeconfig to {path}: {reason}; check that ferry's state folder is writable"
    )]
    Kubeconfig {
        cluster: InstanceAddress,
        path: PathBuf,
        reason: String,
    },
    #[error("{cluster}: {message}")]
    Step {
        cluster: InstanceAddress,
        message: String,
    },
    /// A step that cannot be made as asked; the text says why and what to do.
    #[error("{0}")]
    Spec(String),
    /// A step that may succeed if tried again (a resource others keep writing).
    #[error("{0}")]
    Busy(String),
}

impl From<ArmError> for AksError {
    fn from(error: ArmError) -> Self {
        Self::Arm(Box::new(error))
    }
}

impl From<AksError> for StepError {
    fn from(error: AksError) -> Self {
        let message = error.to_string();
        match &error {
            AksError::Arm(arm) => arm.step_error(message),
            AksError::Busy(_) => StepError::transient(message, None),
            _ => StepError::permanent(message),
        }
    }
}

/// `aks_cluster`: `Microsoft.ContainerService/managedClusters`.
#[derive(Debug, Clone)]
pub struct AksClusterProvider {
    azure: Arc<AzureDeployment>,
}

impl AksClusterProvider {
    pub fn new(azure: Arc<AzureDeployment>) -> Self {
        Self { azure }
    }

    fn kubeconfig_path(&self, cluster: &InstanceAddress) -> PathBuf {
        self.azure
            .settings()
            .state_folder
            .join("kubeconfigs")
            .join(format!("{cluster}.yaml"))
    }

    /// The cluster as ARM has it, with health, or `None` when ARM says it does not exist.
    async fn read_cluster(
        &self,
        cluster: &InstanceAddress,
        fields: &Attributes,
        outputs: OutputsOf<'_>,
        via: ReadVia,
    ) -> Result<Option<(Attributes, Health)>, AksError> {
        let azure = &*self.azure;
        let mut id = azure.read_id(cluster, fields, outputs)?;
        let mut body = azure.read_resource(&id, via).await?;
        if body.is_none() {
            let wanted = azure.desired_id(cluster, fields, outputs)?;
            if wanted != id {
                body = azure.read_resource(&wanted, via).await?;
                id = wanted;
            }
        }
        let Some(body) = body else {
            return Ok(None);
        };
        let mut attributes = self.describe(cluster, &id, &body, fields, outputs);
        let fqdn = text_at(&body, "/properties/fqdn");
        let provisioning = text_at(&body, "/properties/provisioningState").unwrap_or_default();
        let power = text_at(&body, "/properties/powerState/code").unwrap_or_default();
        let mut kubeconfig_text = None;
        if provisioning.eq_ignore_ascii_case("succeeded") {
            match self.ensure_kubeconfig(cluster, &id).await {
                Ok((path, text)) => {
                    attributes.insert("kubeconfig".into(), json!(path.display().to_string()));
                    kubeconfig_text = Some(text);
                }
                Err(AksError::Arm(error)) if !error.is_transient() => {
                    return Err(AksError::Arm(error));
                }
                // Without a kubeconfig the probe still runs, with the configured CA only.
                Err(_) => {}
            }
        }
        let health =
            if let creating @ Health::Creating { .. } = ferry_arm::provisioning::health_of(&body) {
                creating
            } else if provisioning.eq_ignore_ascii_case("failed") {
                // A create or update that ended Failed (a quota error): the plan builds it again.
                Health::Failed {
                    reason: "ARM reports provisioningState Failed".to_owned(),
                }
            } else if !provisioning.eq_ignore_ascii_case("succeeded") {
                Health::Unhealthy {
                    reason: format!("ARM reports provisioningState {provisioning}"),
                }
            } else if !power.eq_ignore_ascii_case("running") {
                Health::Unhealthy {
                    reason: format!("ARM reports powerState {power}"),
                }
            } else if let Some(fqdn) = &fqdn {
                match self.probe(fqdn, kubeconfig_text.as_deref()).await {
                    Ok(()) => Health::Healthy,
                    Err(reason) => Health::Unhealthy { reason },
                }
            } else {
                Health::Unhealthy {
                    reason: "ARM reports no API server fqdn".to_owned(),
                }
            };
        Ok(Some((attributes, health)))
    }

    fn describe(
        &self,
        cluster: &InstanceAddress,
        id: &ResourceId,
        body: &Value,
        fields: &Attributes,
        outputs: OutputsOf<'_>,
    ) -> Attributes {
        let azure = &*self.azure;
        let mut attributes = Attributes::new();
        attributes.insert("id".into(), json!(id.as_str()));
        attributes.insert(
            "name".into(),
            json!(text_at(body, "/name").unwrap_or_else(|| id.name().to_owned())),
        );
        if let Some(group) = id.resource_group_name() {
            attributes.insert(
                "resource_group".into(),
                azure.group_reference(group, fields.get("resource_group"), outputs),
            );
        }
        attributes.insert(
            "location".into(),
            location_value(
                body.get("location").and_then(Value::as_str),
                fields.get("location"),
            ),
        );
        attributes.insert("tags".into(), tags_of_body(body));
        attributes.insert(
            "dns_prefix".into(),
            json!(text_at(body, "/properties/dnsPrefix")),
        );
        attributes.insert(
            "kubernetes_version".into(),
            json!(text_at(body, "/properties/kubernetesVersion")),
        );
        let pool = body
            .pointer("/properties/agentPoolProfiles/0")
            .cloned()
            .unwrap_or(Value::Null);
        attributes.insert(
            "node_count".into(),
            json!(pool.get("count").and_then(Value::as_i64)),
        );
        attributes.insert("node_vm_size".into(), json!(text_at(&pool, "/vmSize")));
        if let Some(subnet) =
            text_at(&pool, "/vnetSubnetID").and_then(|text| ResourceId::parse(&text).ok())
        {
            attributes.insert("subnet".into(), json!(subnet.name()));
            let vnet_text = subnet.as_str().rsplitn(3, '/').nth(2).unwrap_or_default();
            if let Ok(vnet) = ResourceId::parse(vnet_text) {
                let reference = azure
                    .instance_with_id(
                        Kind::Vnet,
                        &vnet,
                        generations_around(
                            fields.get("vnet").or(Some(&json!(cluster.to_string()))),
                        ),
                        outputs,
                    )
                    .map(|instance| instance.to_string())
                    .unwrap_or_else(|| vnet.as_str().to_owned());
                attributes.insert("vnet".into(), json!(reference));
            }
        }
        attributes.insert("fqdn".into(), json!(text_at(body, "/properties/fqdn")));
        attributes.insert(
            "node_resource_group".into(),
            json!(text_at(body, "/properties/nodeResourceGroup")),
        );
        attributes
    }

    /// The kubeconfig file, fetched from ARM when it is not there yet. Returns its path and
    /// text (the text stays in memory: it holds a credential).
    async fn ensure_kubeconfig(
        &self,
        cluster: &InstanceAddress,
        id: &ResourceId,
    ) -> Result<(PathBuf, String), AksError> {
        let path = self.kubeconfig_path(cluster);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok((path, text));
        }
        self.fetch_kubeconfig(cluster, id).await
    }

    async fn fetch_kubeconfig(
        &self,
        cluster: &InstanceAddress,
        id: &ResourceId,
    ) -> Result<(PathBuf, String), AksError> {
        let path = self.kubeconfig_path(cluster);
        let results = self.azure.client().list_cluster_user_credential(id).await?;
        let Some(first) = results.kubeconfigs.first() else {
            return Err(AksError::Step {
                cluster: cluster.clone(),
                message: "listClusterUserCredential returned no kubeconfig; check the cluster's local accounts setting".to_owned(),
            });
        };
        let bytes = data_encoding::BASE64
            .decode(first.value.0.trim().as_bytes())
            .map_err(|_| AksError::Step {
                cluster: cluster.clone(),
                message: "listClusterUserCredential returned a kubeconfig that is not base64"
                    .to_owned(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| AksError::Step {
            cluster: cluster.clone(),
            message: "listClusterUserCredential returned a kubeconfig that is not UTF-8".to_owned(),
        })?;
        write_private(&path, text.as_bytes()).map_err(|error| AksError::Kubeconfig {
            cluster: cluster.clone(),
            path: path.clone(),
            reason: error.to_string(),
        })?;
        Ok((path, text))
    }

    /// `GET https://{fqdn}/readyz`: any answer but a server error means the API server is up
    /// (401/403 too: it answered, it just wants credentials).
    async fn probe(&self, fqdn: &str, kubeconfig: Option<&str>) -> Result<(), String> {
        let settings = self.azure.settings();
        let url = format!("https://{fqdn}/readyz");
        let mut builder = reqwest::Client::builder()
            .timeout(settings.readyz_timeout)
            .connect_timeout(settings.readyz_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .pool_max_idle_per_host(0);
        let mut pems: Vec<Vec<u8>> = Vec::new();
        if let Some(ca) = kubeconfig.and_then(cluster_ca) {
            pems.push(ca);
        }
        if let Some(file) = &settings.readyz_ca_file
            && let Ok(pem) = std::fs::read(file)
        {
            pems.push(pem);
        }
        for pem in pems {
            if let Ok(certificates) = reqwest::Certificate::from_pem_bundle(&pem)
                && !certificates.is_empty()
            {
                builder = builder.tls_certs_merge(certificates);
            }
        }
        let client = builder
            .build()
            .map_err(|error| format!("could not build the probe of {url}: {error}"))?;
        match client.get(&url).send().await {
            Ok(response) if response.status().is_server_error() => Err(format!(
                "GET {url} answered {}: the API server is not ready",
                response.status()
            )),
            Ok(_) => Ok(()),
            Err(error) if error.is_timeout() => Err(format!(
                "GET {url} timed out after {}: the API server does not answer",
                humanize(settings.readyz_timeout)
            )),
            Err(error) => Err(format!(
                "GET {url} failed: {}: the API server does not answer",
                error_chain(&error)
            )),
        }
    }
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The `certificate-authority-data` of a kubeconfig, as PEM.
fn cluster_ca(kubeconfig: &str) -> Option<Vec<u8>> {
    kubeconfig.lines().find_map(|line| {
        let value = line.trim().strip_prefix("certificate-authority-data:")?;
        data_encoding::BASE64.decode(value.trim().as_bytes()).ok()
    })
}

/// Writes a file only its owner can read (created 0600, never wider), atomically, in a folder
/// made if it is missing.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(folder)?;
    write_atomically(path, contents, &WriteOptions::OWNER_ONLY)
}

#[async_trait]
impl Provider for AksClusterProvider {
    fn kind(&self) -> Kind {
        Kind::AksCluster
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        match self
            .read_cluster(
                context.instance,
                context.fields,
                context.outputs,
                ReadVia::Lists,
            )
            .await
        {
            Ok(Some((attributes, health))) => Observation::Present { attributes, health },
            Ok(None) => Observation::Absent,
            Err(error) => Observation::Unknown {
                reason: error.to_string(),
            },
        }
    }

    fn begin_read_round(&self) -> ReadRound {
        ReadRound::new(self.azure.begin_read_round())
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
        operations
            .resume(context.resume_token)
            .await
            .map_err(AksError::from)?;
        let result = match step.action {
            Action::Create | Action::Update | Action::Replace => {
                self.put(&operations, step, &context).await
            }
            Action::Delete | Action::Retire => {
                self.delete(&operations, &step.address, context.outputs)
                    .await
            }
            other => Err(AksError::Step {
                cluster: step.address.clone(),
                message: format!("aks_cluster has no `{other}` step"),
            }),
        };
        Ok(result?)
    }
}

impl AksClusterProvider {
    async fn put(
        &self,
        operations: &StepOperations<'_>,
        step: &Step,
        context: &ApplyContext<'_>,
    ) -> Result<StepOutcome, AksError> {
        let azure = &*self.azure;
        let cluster = &step.address;
        let fields = context.inputs;
        let outputs = context.outputs;
        let id = azure.desired_id(cluster, fields, outputs)?;
        let existing = azure.client().read::<Value>(&id).await?.map(|f| f.value);
        let mut base = existing.clone();
        if step.action == Action::Replace {
            let observed = existing
                .as_ref()
                .map(|body| self.describe(cluster, &id, body, fields, outputs));
            let done = observed
                .as_ref()
                .is_some_and(|attributes| already_replaced(step, attributes));
            if !done && let Some(old) = azure.remembered_id(cluster, outputs)? {
                operations.progress(format!("deleting {old} to replace it"));
                operations.delete(&old).await?;
                base = None;
            }
        }
        let provisioned = base.as_ref().is_some_and(|body| {
            text_at(body, "/properties/provisioningState")
                .is_some_and(|state| state.eq_ignore_ascii_case("succeeded"))
        });
        // A create that an earlier attempt finished is done; anything else is a PUT.
        if !(step.action == Action::Create && provisioned) {
            let body =
                self.cluster_body(cluster, base.unwrap_or_else(|| json!({})), fields, outputs)?;
            let _: Value = operations.put(&id, &body).await?;
        }
        if let Err(error) = std::fs::remove_file(self.kubeconfig_path(cluster))
            && error.kind() != std::io::ErrorKind::NotFound
        {
            operations.progress(format!("could not remove an old kubeconfig: {error}"));
        }
        self.fetch_kubeconfig(cluster, &id).await?;
        match self
            .read_cluster(cluster, fields, outputs, ReadVia::Single)
            .await?
        {
            Some((attributes, _)) => Ok(StepOutcome {
                outputs: attributes,
            }),
            None => Err(AksError::Step {
                cluster: cluster.clone(),
                message: "ARM does not show it after the step succeeded; plan again".to_owned(),
            }),
        }
    }

    /// The PUT body: what ARM has (so that fields ferry does not manage survive) with the
    /// spec's fields laid over it.
    fn cluster_body(
        &self,
        cluster: &InstanceAddress,
        mut body: Value,
        fields: &Attributes,
        outputs: OutputsOf<'_>,
    ) -> Result<Value, AksError> {
        let text = |name: &str| fields.get(name).and_then(Value::as_str);
        let dns_prefix = text("dns_prefix").ok_or_else(|| AksError::Step {
            cluster: cluster.clone(),
            message: "the step has no dns_prefix: plan again".to_owned(),
        })?;
        for read_only in ["id", "name", "type", "etag"] {
            if let Some(object) = body.as_object_mut() {
                object.remove(read_only);
            }
        }
        body["location"] = fields.get("location").cloned().unwrap_or(Value::Null);
        if body.get("identity").is_none() {
            body["identity"] = json!({"type": "SystemAssigned"});
        }
        if !body.get("properties").is_some_and(Value::is_object) {
            body["properties"] = json!({});
        }
        let properties = &mut body["properties"];
        if let Some(object) = properties.as_object_mut() {
            for read_only in ["provisioningState", "powerState", "fqdn", "azurePortalFQDN"] {
                object.remove(read_only);
            }
        }
        properties["dnsPrefix"] = json!(dns_prefix);
        if let Some(version) = text("kubernetes_version") {
            properties["kubernetesVersion"] = json!(version);
        }
        let mut pool = properties
            .pointer("/agentPoolProfiles/0")
            .cloned()
            .unwrap_or_else(|| json!({"name": "system", "mode": "System", "osType": "Linux", "type": "VirtualMachineScaleSets"}));
        pool["count"] = fields.get("node_count").cloned().unwrap_or(json!(3));
        pool["vmSize"] = json!(text("node_vm_size").unwrap_or("Standard_D4s_v5"));
        if let Some(vnet) = text("vnet").and_then(|text| text.parse::<InstanceAddress>().ok()) {
            let vnet_id = self.azure.id_of(&vnet, outputs)?;
            pool["vnetSubnetID"] = json!(format!(
                "{vnet_id}/subnets/{}",
                text("subnet").unwrap_or("default")
            ));
        }
        properties["agentPoolProfiles"] = json!([pool]);
        if let Some(tags) = tags_from(fields) {
            body["tags"] = json!(tags);
        }
        Ok(body)
    }

    async fn delete(
        &self,
        operations: &StepOperations<'_>,
        cluster: &InstanceAddress,
        outputs: OutputsOf<'_>,
    ) -> Result<StepOutcome, AksError> {
        let id = self.azure.id_of(cluster, outputs)?;
        operations.delete(&id).await?;
        if let Err(error) = std::fs::remove_file(self.kubeconfig_path(cluster))
            && error.kind() != std::io::ErrorKind::NotFound
        {
            operations.progress(format!("could not remove the kubeconfig: {error}"));
        }
        Ok(StepOutcome::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_cluster_ca_comes_from_the_kubeconfig() {
        let pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let kubeconfig = format!(
            "clusters:\n- cluster:\n    server: https://x\n    certificate-authority-data: {}\n",
            data_encoding::BASE64.encode(pem.as_bytes())
        );
        assert_eq!(cluster_ca(&kubeconfig), Some(pem.as_bytes().to_vec()));
        assert_eq!(cluster_ca("clusters: []"), None);
    }

    #[test]
    fn kubeconfigs_are_written_for_the_owner_only() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("kubeconfigs/aks_cluster.hub@g1.yaml");
        write_private(&path, b"one").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"two").unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
    }
}
