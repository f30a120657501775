//! What ferry's Azure providers share: where an instance lives in ARM, the settings read from
//! the environment, and the bookkeeping that resumes a long-running operation instead of
//! starting it again.
//!
//! The providers themselves live with their kinds' rules (ferry-compute, ferry-disk,
//! ferry-aks); they may not depend on each other, so what all of them need is here, next to
//! the client they all use.
//!
//! Mapping an instance to ARM: its Azure name is its resolved `name` field (the generation
//! filled in), its resource group the `name` output of the group instance its
//! `resource_group` field names, or, before ferry's state knows that group, the group's own
//! `name` field resolved the same way. Ids that ferry's state remembers win over computed
//! ones, because a disk's id changes when it moves.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ferry_core::value::{self, Expression};
use ferry_core::{
    Attributes, Generation, InstanceAddress, Kind, Observation, ResourceAddress, ResourceSpec,
    Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{AZURE_PUBLIC_ENDPOINT, ArmClient, ArmClientConfig, WriteOptions};
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::pending_operation::{PendingOperation, Started};
use crate::provider_calls::api_version;

/// The ARM endpoint (`https://management.azure.com` when unset).
pub const ENDPOINT_VARIABLE: &str = "FERRY_ARM_ENDPOINT";
/// A PEM file of extra CA certificates for the ARM endpoint (the simulator's `ca.pem`).
pub const CA_FILE_VARIABLE: &str = "FERRY_ARM_CA_FILE";
/// Entra ID's authority host, when it is not Azure's public one.
pub const AUTHORITY_HOST_VARIABLE: &str = "FERRY_ARM_AUTHORITY_HOST";
/// `1`: the endpoint is ferry-sim, whose own token endpoint issues the token.
pub const SIMULATOR_VARIABLE: &str = "FERRY_ARM_SIMULATOR";
/// The simulator's data folder: a VM's data disks show up in `{folder}/vms/{group}/{vm}/scsi1`.
pub const DEVICE_ROOT_VARIABLE: &str = "FERRY_ARM_DEVICE_ROOT";
/// Seconds to wait for an AKS API server's `/readyz` (5 when unset).
pub const READYZ_TIMEOUT_VARIABLE: &str = "FERRY_AKS_READYZ_TIMEOUT";
/// Extra CA certificates for `/readyz`, beyond the cluster's own CA from its kubeconfig.
pub const READYZ_CA_FILE_VARIABLE: &str = "FERRY_AKS_CA_FILE";
/// The subscription, when the spec's `[deployment]` does not name one.
pub const SUBSCRIPTION_VARIABLE: &str = "AZURE_SUBSCRIPTION_ID";

/// Everything the Azure providers are configured with.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub arm: ArmClientConfig,
    /// `[deployment] subscription`, or `AZURE_SUBSCRIPTION_ID`.
    pub subscription: Option<String>,
    /// ferry's state folder: AKS kubeconfigs are written below it (mode 0600).
    pub state_folder: PathBuf,
    /// Where attached data disks appear per VM, for the simulator
    /// (`{root}/vms/{group}/{vm}/scsi1`, lower-cased);
    /// `None` on Azure, where the guest sees them in the VM's `device_folder`.
    pub device_root: Option<PathBuf>,
    /// How long a probe of an API server's `/readyz` may take.
    pub readyz_timeout: Duration,
    /// Extra CA certificates that `/readyz` may be signed by.
    pub readyz_ca_file: Option<PathBuf>,
}

impl AzureSettings {
    /// Settings for a simulator at `endpoint` with CA `ca_file` (tests and the demo).
    pub fn simulator(endpoint: crate::Url, ca_file: PathBuf, state_folder: PathBuf) -> Self {
        AzureSettings {
            arm: ArmClientConfig::simulator(endpoint, ca_file.clone()),
            subscription: None,
            state_folder,
            device_root: None,
            readyz_timeout: Duration::from_secs(2),
            readyz_ca_file: Some(ca_file),
        }
    }

    /// Settings from the environment (see the `*_VARIABLE` constants) and the spec.
    /// `environment` looks a variable up; pass `|name| std::env::var(name).ok()`.
    pub fn from_environment(
        subscription: Option<String>,
        state_folder: PathBuf,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ArmError> {
        let set = |name: &str| environment(name).filter(|value| !value.trim().is_empty());
        let endpoint_text =
            set(ENDPOINT_VARIABLE).unwrap_or_else(|| AZURE_PUBLIC_ENDPOINT.to_owned());
        let endpoint = crate::Url::parse(&endpoint_text).map_err(|error| {
            ArmError::Config(format!(
                "{ENDPOINT_VARIABLE}=`{endpoint_text}` is not a URL ({error}): set it like https://management.azure.com"
            ))
        })?;
        let ca_file = set(CA_FILE_VARIABLE).map(PathBuf::from);
        let simulator = set(SIMULATOR_VARIABLE)
            .is_some_and(|value| matches!(value.trim(), "1" | "true" | "yes"));
        let mut arm = if simulator {
            let Some(ca_file) = ca_file.clone() else {
                return Err(ArmError::Config(format!(
                    "{SIMULATOR_VARIABLE} is set but {CA_FILE_VARIABLE} is not: set it to the simulator's ca.pem"
                )));
            };
            ArmClientConfig::simulator(endpoint, ca_file)
        } else {
            let mut arm = ArmClientConfig::azure_public();
            arm.endpoint = endpoint;
            arm.ca_file = ca_file.clone();
            arm
        };
        if let Some(host) = set(AUTHORITY_HOST_VARIABLE) {
            arm.authority_host = Some(crate::Url::parse(&host).map_err(|error| {
                ArmError::Config(format!(
                    "{AUTHORITY_HOST_VARIABLE}=`{host}` is not a URL ({error}): set it like https://login.microsoftonline.com"
                ))
            })?);
        }
        let readyz_timeout = match set(READYZ_TIMEOUT_VARIABLE) {
            None => Duration::from_secs(5),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    ArmError::Config(format!(
                        "{READYZ_TIMEOUT_VARIABLE}=`{text}` is not a positive number of seconds: set it like 5"
                    ))
                })?,
        };
        Ok(AzureSettings {
            arm,
            subscription: subscription.or_else(|| set(SUBSCRIPTION_VARIABLE)),
            state_folder,
            device_root: set(DEVICE_ROOT_VARIABLE).map(PathBuf::from),
            readyz_timeout,
            readyz_ca_file: set(READYZ_CA_FILE_VARIABLE).map(PathBuf::from).or(ca_file),
        })
    }
}

/// Why an instance cannot be placed in ARM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error(
        "no Azure subscription is configured: set subscription in [deployment] or the {SUBSCRIPTION_VARIABLE} environment variable"
    )]
    NoSubscription,
    #[error(
        "{instance}: its Azure name is not known: the spec has no name for it and ferry's state has no id"
    )]
    NoName { instance: InstanceAddress },
    #[error(
        "{instance}: the name of its resource group is not known: declare the resource_group it references"
    )]
    NoGroup { instance: InstanceAddress },
    #[error(
        "{instance}: ferry's state remembers the id `{id}`, which is not an Azure resource id ({reason}); fix or remove it in the state file"
    )]
    BadId {
        instance: InstanceAddress,
        id: String,
        reason: String,
    },
}

/// The ARM namespace and type of a kind's resources (`None` for kinds that are not ARM's).
pub fn arm_type(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::Vnet => Some(("Microsoft.Network", "virtualNetworks")),
        Kind::PublicIp => Some(("Microsoft.Network", "publicIPAddresses")),
        Kind::Vm => Some(("Microsoft.Compute", "virtualMachines")),
        Kind::Disk => Some(("Microsoft.Compute", "disks")),
        Kind::AksCluster => Some(("Microsoft.ContainerService", "managedClusters")),
        _ => None,
    }
}

/// What ferry knows about a resource from the spec, to name any of its instances.
#[derive(Debug, Clone)]
struct Template {
    name: Option<Value>,
    resource_group: Option<ResourceAddress>,
}

/// One deployment's Azure view: the client, the settings and the spec's names. The six
/// Azure providers of a spec share one, behind an `Arc`.
#[derive(Debug)]
pub struct AzureDeployment {
    client: ArmClient,
    settings: AzureSettings,
    templates: BTreeMap<ResourceAddress, Template>,
    /// The read rounds open on this deployment and their lists (`list_reads`).
    read_rounds: std::sync::Arc<crate::list_reads::ReadRounds>,
    /// [`AzureDeployment::names_at`]'s indexes, by generation.
    names: std::sync::Mutex<HashMap<Generation, std::sync::Arc<NamesAt>>>,
}

/// Spec resources by kind and lower-cased Azure name, at one generation.
type NamesAt = HashMap<(Kind, String), Vec<ResourceAddress>>;

/// Other instances' outputs, as `ReadContext::outputs` and `ApplyContext::outputs` give them.
pub type OutputsOf<'a> = &'a (dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync);

impl AzureDeployment {
    /// Builds the client and remembers how the spec names its Azure resources.
    pub fn new<'a>(
        settings: AzureSettings,
        resources: impl IntoIterator<Item = &'a ResourceSpec>,
    ) -> Result<Self, ArmError> {
        let client = ArmClient::new(settings.arm.clone())?;
        Ok(Self::with_client(client, settings, resources))
    }

    /// The same with a client built elsewhere.
    pub fn with_client<'a>(
        client: ArmClient,
        settings: AzureSettings,
        resources: impl IntoIterator<Item = &'a ResourceSpec>,
    ) -> Self {
        let templates = resources
            .into_iter()
            .filter(|resource| {
                resource.address.kind == Kind::ResourceGroup
                    || arm_type(resource.address.kind).is_some()
            })
            .map(|resource| {
                (
                    resource.address.clone(),
                    Template {
                        name: resource.field("name").cloned(),
                        resource_group: resource
                            .str_field("resource_group")
                            .and_then(|text| text.parse().ok()),
                    },
                )
            })
            .collect();
        AzureDeployment {
            client,
            settings,
            templates,
            read_rounds: Default::default(),
            names: Default::default(),
        }
    }

    pub(crate) fn read_rounds(&self) -> &std::sync::Arc<crate::list_reads::ReadRounds> {
        &self.read_rounds
    }

    pub fn client(&self) -> &ArmClient {
        &self.client
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    pub fn subscription(&self) -> Result<&str, LocateError> {
        self.settings
            .subscription
            .as_deref()
            .ok_or(LocateError::NoSubscription)
    }

    /// The spec's resources of `kind` that ferry knows how to name.
    pub fn addresses_of(&self, kind: Kind) -> Vec<ResourceAddress> {
        self.templates
            .keys()
            .filter(|address| address.kind == kind)
            .cloned()
            .collect()
    }

    /// The Azure name of `address` at `generation`, from the spec's `name` field.
    pub fn name_at(&self, address: &ResourceAddress, generation: Generation) -> Option<String> {
        let template = self.templates.get(address)?.name.as_ref()?;
        let resolved = value::resolve(template, &|expression| match expression {
            Expression::Generation => Some(Value::from(generation)),
            _ => None,
        });
        value::finish(&resolved).ok()?.as_str().map(str::to_owned)
    }

    /// The resource group instance that holds `address` at `generation`.
    pub fn group_at(
        &self,
        address: &ResourceAddress,
        generation: Generation,
    ) -> Option<InstanceAddress> {
        let group = self.templates.get(address)?.resource_group.as_ref()?;
        Some(group.at(Some(generation)))
    }

    /// The Azure name of a resource group instance: what ferry's state remembers, else its
    /// spec name at its generation.
    pub fn group_name(&self, group: &InstanceAddress, outputs: OutputsOf<'_>) -> Option<String> {
        outputs(group)
            .and_then(|remembered| {
                remembered
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| self.name_at(&group.address, group.generation.unwrap_or(1)))
    }

    /// The id `instance` has when it lives where the spec puts it at `generation`.
    pub fn computed_id(
        &self,
        instance: &InstanceAddress,
        generation: Generation,
        outputs: OutputsOf<'_>,
    ) -> Result<ResourceId, LocateError> {
        let subscription = self.subscription()?;
        if instance.kind() == Kind::ResourceGroup {
            let at = instance.address.at(Some(generation));
            let name = self
                .group_name(&at, outputs)
                .ok_or_else(|| LocateError::NoName {
                    instance: instance.clone(),
                })?;
            return Ok(ResourceId::resource_group(subscription, &name));
        }
        let (namespace, resource_type) =
            arm_type(instance.kind()).ok_or_else(|| LocateError::NoName {
                instance: instance.clone(),
            })?;
        let name =
            self.name_at(&instance.address, generation)
                .ok_or_else(|| LocateError::NoName {
                    instance: instance.clone(),
                })?;
        let group = self
            .group_at(&instance.address, generation)
            .and_then(|group| self.group_name(&group, outputs))
            .ok_or_else(|| LocateError::NoGroup {
                instance: instance.clone(),
            })?;
        Ok(ResourceId::provider_resource(
            subscription,
            &group,
            namespace,
            resource_type,
            &name,
        ))
    }

    /// The id ferry's state remembers for `instance`, if any.
    pub fn remembered_id(
        &self,
        instance: &InstanceAddress,
        outputs: OutputsOf<'_>,
    ) -> Result<Option<ResourceId>, LocateError> {
        let Some(text) = outputs(instance).and_then(|remembered| {
            remembered
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }) else {
            return Ok(None);
        };
        ResourceId::parse(&text)
            .map(Some)
            .map_err(|error| LocateError::BadId {
                instance: instance.clone(),
                id: text,
                reason: error.to_string(),
            })
    }

    /// The id of `instance`: the remembered one, else the computed one at its generation.
    pub fn id_of(
        &self,
        instance: &InstanceAddress,
        outputs: OutputsOf<'_>,
    ) -> Result<ResourceId, LocateError> {
        match self.remembered_id(instance, outputs)? {
            Some(id) => Ok(id),
            None => self.computed_id(instance, instance.generation.unwrap_or(1), outputs),
        }
    }

    /// Where the spec, resolved for `instance` (`fields`: its resolved fields or a step's
    /// inputs), puts it: its `name` in the group its `resource_group` names.
    pub fn desired_id(
        &self,
        instance: &InstanceAddress,
        fields: &Attributes,
        outputs: OutputsOf<'_>,
    ) -> Result<ResourceId, LocateError> {
        let subscription = self.subscription()?;
        let name =
            fields
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| LocateError::NoName {
                    instance: instance.clone(),
                })?;
        if instance.kind() == Kind::ResourceGroup {
            return Ok(ResourceId::resource_group(subscription, name));
        }
        let group = fields
            .get("resource_group")
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok())
            .and_then(|group| self.group_name(&group, outputs))
            .ok_or_else(|| LocateError::NoGroup {
                instance: instance.clone(),
            })?;
        let (namespace, resource_type) =
            arm_type(instance.kind()).ok_or_else(|| LocateError::NoName {
                instance: instance.clone(),
            })?;
        Ok(ResourceId::provider_resource(
            subscription,
            &group,
            namespace,
            resource_type,
            name,
        ))
    }

    /// The id to read `instance` at: what the state remembers, else where the spec puts it.
    pub fn read_id(
        &self,
        instance: &InstanceAddress,
        fields: &Attributes,
        outputs: OutputsOf<'_>,
    ) -> Result<ResourceId, LocateError> {
        match self.remembered_id(instance, outputs)? {
            Some(id) => Ok(id),
            None => self.desired_id(instance, fields, outputs),
        }
    }

    /// The instance of a spec resource of `kind` whose id is `id`, looking at `generations`:
    /// how an ARM reference (a disk's `managedBy`, a NIC's subnet) becomes an instance address.
    pub fn instance_with_id(
        &self,
        kind: Kind,
        id: &ResourceId,
        generations: RangeInclusive<Generation>,
        outputs: OutputsOf<'_>,
    ) -> Option<InstanceAddress> {
        // First the resources named like the id at each generation: a fleet's reads look up
        // thousands of references, and resolving every name for each was quadratic (a minute
        // of CPU for 10,000 resources).
        let wanted_name = id.name().to_ascii_lowercase();
        for generation in generations.clone() {
            let names = self.names_at(generation);
            for address in names
                .get(&(kind, wanted_name.clone()))
                .into_iter()
                .flatten()
            {
                let instance = address.at(kind.is_replaceable().then_some(generation));
                let remembered = self.remembered_id(&instance, outputs).ok().flatten();
                let computed = self.computed_id(&instance, generation, outputs).ok();
                if remembered.as_ref() == Some(id) || computed.as_ref() == Some(id) {
                    return Some(instance);
                }
            }
        }
        // Then every resource of the kind, for an id ferry's state remembers under another
        // name.
        for address in self.addresses_of(kind) {
            for generation in generations.clone() {
                let instance = address.at(kind.is_replaceable().then_some(generation));
                let remembered = self.remembered_id(&instance, outputs).ok().flatten();
                let computed = self.computed_id(&instance, generation, outputs).ok();
                if remembered.as_ref() == Some(id) || computed.as_ref() == Some(id) {
                    return Some(instance);
                }
            }
        }
        None
    }

    /// The spec's resources by kind and lower-cased Azure name at `generation`, built once.
    fn names_at(&self, generation: Generation) -> std::sync::Arc<NamesAt> {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        names
            .entry(generation)
            .or_insert_with(|| {
                let mut index = NamesAt::new();
                for address in self.templates.keys() {
                    if let Some(name) = self.name_at(address, generation) {
                        index
                            .entry((address.kind, name.to_ascii_lowercase()))
                            .or_default()
                            .push(address.clone());
                    }
                }
                std::sync::Arc::new(index)
            })
            .clone()
    }

    /// Whether the spec names a resource group `name` at `generation`.
    pub(crate) fn has_group_named(&self, name: &str, generation: Generation) -> bool {
        self.names_at(generation)
            .contains_key(&(Kind::ResourceGroup, name.to_ascii_lowercase()))
    }

    /// The groups (their spec names at `generation`) and ARM types the spec's resources are
    /// read from at `generation`: each resource's own, and a VM's network interface's.
    pub(crate) fn listed_types_at(&self, generation: Generation) -> Vec<(String, String)> {
        let mut listed = Vec::new();
        for (address, template) in &self.templates {
            let Some((namespace, resource_type)) = arm_type(address.kind) else {
                continue;
            };
            let Some(group) = template
                .resource_group
                .as_ref()
                .and_then(|group| self.name_at(group, generation))
            else {
                continue;
            };
            listed.push((group.clone(), format!("{namespace}/{resource_type}")));
            if address.kind == Kind::Vm {
                listed.push((group, "Microsoft.Network/networkInterfaces".to_owned()));
            }
        }
        listed
    }

    /// The resource group instance whose Azure name is `name`, looking at `generations`.
    pub fn group_named(
        &self,
        name: &str,
        generations: RangeInclusive<Generation>,
        outputs: OutputsOf<'_>,
    ) -> Option<InstanceAddress> {
        for address in self.addresses_of(Kind::ResourceGroup) {
            for generation in generations.clone() {
                let instance = address.at(Some(generation));
                if self
                    .group_name(&instance, outputs)
                    .is_some_and(|known| known.eq_ignore_ascii_case(name))
                {
                    return Some(instance);
                }
            }
        }
        None
    }

    /// A group's Azure name as the spec writes it: the instance address of the group, looked
    /// up among the generations around the one the spec refers to (`desired`); the raw name
    /// when ferry does not know the group.
    pub fn group_reference(
        &self,
        group_name: &str,
        desired: Option<&Value>,
        outputs: OutputsOf<'_>,
    ) -> Value {
        if let Some(instance) = desired
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok())
            && self
                .group_name(&instance, outputs)
                .is_some_and(|name| name.eq_ignore_ascii_case(group_name))
        {
            return Value::from(instance.to_string());
        }
        match self.group_named(group_name, generations_around(desired), outputs) {
            Some(instance) => Value::from(instance.to_string()),
            None => Value::from(group_name),
        }
    }

    /// The folder where a VM's attached data disks appear, when the settings know it.
    pub fn device_folder(&self, vm: &ResourceId) -> Option<PathBuf> {
        let group = vm.resource_group_name()?.to_ascii_lowercase();
        self.settings.device_root.as_ref().map(|root| {
            root.join("vms")
                .join(group)
                .join(vm.name().to_ascii_lowercase())
                .join("scsi1")
        })
    }
}

/// The generations worth searching for instances related to one whose resolved reference is
/// `reference` (`vm.nfs@g2`): every one up to the next, because a failover may be half done.
pub fn generations_around(reference: Option<&Value>) -> RangeInclusive<Generation> {
    let latest = reference
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<InstanceAddress>().ok())
        .and_then(|instance| instance.generation)
        .unwrap_or(1);
    1..=latest.saturating_add(1)
}

/// Whether a replacement already happened (a retried step): every change that forced it
/// now reads as the plan wants it.
pub fn already_replaced(step: &ferry_core::Step, observed: &Attributes) -> bool {
    step.changes()
        .filter(|change| change.forces_replacement.is_some())
        .all(|change| observed.get(change.path) == change.after)
}

/// An observation for a read that ARM did not answer: never `Absent`.
pub fn unknown(error: &ArmError) -> Observation {
    Observation::Unknown {
        reason: error.to_string(),
    }
}

/// An observation for an instance ferry cannot place in ARM.
pub fn unlocatable(error: &LocateError) -> Observation {
    Observation::Unknown {
        reason: error.to_string(),
    }
}

/// Tags as the spec writes them: a table of strings, empty when ARM has none.
pub fn tags_value(tags: Option<&BTreeMap<String, String>>) -> Value {
    Value::Object(
        tags.into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), Value::from(value.clone())))
            .collect(),
    )
}

/// The `tags` of an ARM resource body, as the spec writes them.
pub fn tags_of_body(body: &Value) -> Value {
    let tags: Option<BTreeMap<String, String>> =
        body.get("tags").and_then(Value::as_object).map(|tags| {
            tags.iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        });
    tags_value(tags.as_ref())
}

/// A string at a JSON pointer of an ARM body.
pub fn text_at(body: &Value, pointer: &str) -> Option<String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The spec's `tags` field, for a request body.
pub fn tags_from(fields: &Attributes) -> Option<BTreeMap<String, String>> {
    fields.get("tags").and_then(Value::as_object).map(|tags| {
        tags.iter()
            .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
            .collect()
    })
}

/// ARM spells regions its own way (`westeurope` for `West Europe`): a location that is the
/// same region as the spec's is reported in the spec's spelling, so it is no change.
pub fn location_value(observed: Option<&str>, desired: Option<&Value>) -> Value {
    let squash = |text: &str| text.replace([' ', '-'], "").to_ascii_lowercase();
    match (observed, desired.and_then(Value::as_str)) {
        (Some(observed), Some(desired)) if squash(observed) == squash(desired) => {
            Value::from(desired)
        }
        (Some(observed), _) => Value::from(observed),
        (None, _) => Value::Null,
    }
}

/// A string input or field of a step, with an error that names it.
pub fn required_text<'a>(attributes: &'a Attributes, name: &str) -> Result<&'a str, String> {
    attributes
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the step has no `{name}`: plan again"))
}

/// Runs the long-running operations of one step: first waits for the one an interrupted
/// attempt recorded (polling it, never sending its request again), then records each new one
/// as soon as ARM accepts it. An ARM step's resume token is its last operation
/// ([`PendingOperation`] as JSON): `record` is the step's `ApplyContext::record_resume_token`,
/// and [`StepOperations::resume`] takes its `resume_token`.
pub struct StepOperations<'a> {
    client: &'a ArmClient,
    record: &'a (dyn Fn(String) + Send + Sync),
    progress: &'a (dyn Fn(String) + Send + Sync),
}

impl std::fmt::Debug for StepOperations<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepOperations").finish_non_exhaustive()
    }
}

impl<'a> StepOperations<'a> {
    pub fn new(
        client: &'a ArmClient,
        record: &'a (dyn Fn(String) + Send + Sync),
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> Self {
        StepOperations {
            client,
            record,
            progress,
        }
    }

    pub fn client(&self) -> &ArmClient {
        self.client
    }

    pub fn progress(&self, line: String) {
        (self.progress)(line);
    }

    /// Records an operation as this step's, as [`StepOperations::finish`] does with the ones
    /// it starts: for an operation another step started on this one's behalf (several disks'
    /// changes in one VM update), so that a resumed apply polls it here too.
    pub fn record(&self, operation: String) {
        (self.record)(operation);
    }

    /// Waits for the operation an earlier attempt recorded. A step then carries on from the
    /// start, finding done what that operation did. An operation ARM no longer knows, or one
    /// that failed in a way a retry can mend, is left behind: the step starts it afresh.
    pub async fn resume(&self, recorded: Option<&str>) -> Result<(), ArmError> {
        let Some(recorded) = recorded else {
            return Ok(());
        };
        let Ok(operation) = serde_json::from_str::<PendingOperation>(recorded) else {
            self.progress(
                "the recorded operation is not one ferry's Azure providers wrote; starting afresh"
                    .to_owned(),
            );
            return Ok(());
        };
        self.progress(format!(
            "resuming {} {}",
            operation.method, operation.resource_url
        ));
        match self.client.wait::<serde_json::Value>(&operation).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() || error.is_transient() => {
                self.progress(format!(
                    "the recorded operation cannot be resumed ({error}); starting afresh"
                ));
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Records a started operation and waits for it.
    pub async fn finish<T: DeserializeOwned>(
        &self,
        started: Started<T>,
    ) -> Result<Option<T>, ArmError> {
        match started {
            Started::Completed(value) => Ok(value.map(|fetched| fetched.value)),
            Started::Pending(operation) => {
                if let Ok(text) = serde_json::to_string(&operation) {
                    (self.record)(text);
                }
                self.client.wait(&operation).await
            }
        }
    }

    /// Starts a write, waiting out a resource that another operation holds ([`ArmError::is_busy`]:
    /// a write in progress on it, ours or someone else's, or a move that locks its group).
    /// Sending the same request again is safe: ARM refused it before doing anything, and a PUT
    /// or PATCH carries the same body. The waits and their bound are the client's
    /// [`BusySettings`](crate::BusySettings); past the bound the busy error is returned, and the
    /// engine retries the step as a transient failure.
    async fn start_when_free<T, F, Fut>(&self, start: F) -> Result<Started<T>, ArmError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Started<T>, ArmError>>,
    {
        let settings = self.client.busy_settings().clone();
        let mut delay = settings.first_wait;
        let give_up = tokio::time::Instant::now() + settings.give_up_after;
        loop {
            match start().await {
                Err(error) if error.is_busy() && tokio::time::Instant::now() < give_up => {
                    self.progress(format!(
                        "waiting for another operation to release the resource ({}), then sending the same request again",
                        error.code().unwrap_or_default()
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(settings.longest_wait);
                }
                other => return other,
            }
        }
    }

    /// PUT a resource and wait until ARM has provisioned it; returns it as ARM has it then.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
    ) -> Result<T, ArmError> {
        self.put_if_match(id, body, None).await
    }

    /// PUT with an optional `If-Match` ETag: a resource that others write too (a load balancer
    /// that AKS's cloud controller reconciles) is replaced only as it was read, and a 412
    /// ([`ArmError::is_precondition_failed`]) says to read it again.
    pub async fn put_if_match<B: Serialize, T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
        if_match: Option<&str>,
    ) -> Result<T, ArmError> {
        let version = api_version::for_type(&id.resource_type());
        let options = WriteOptions {
            if_match: if_match.map(str::to_owned),
            ..WriteOptions::default()
        };
        let started = self
            .start_when_free(|| {
                self.client
                    .put::<B, serde_json::Value>(id.as_str(), version, body, &options)
            })
            .await?;
        self.finish(started).await?;
        Ok(self.client.get(id.as_str(), version).await?.value)
    }

    /// PATCH a resource and wait; returns it as ARM has it then. With `if_match`, only if
    /// the resource still has that ETag (a 412 otherwise: read it again and retry).
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
    ) -> Result<T, ArmError> {
        self.patch_if_match(id, body, None).await
    }

    /// PATCH with an optional `If-Match` ETag.
    pub async fn patch_if_match<B: Serialize, T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
        if_match: Option<&str>,
    ) -> Result<T, ArmError> {
        let version = api_version::for_type(&id.resource_type());
        let options = WriteOptions {
            if_match: if_match.map(str::to_owned),
            ..WriteOptions::default()
        };
        let started = self
            .start_when_free(|| {
                self.client
                    .patch::<B, serde_json::Value>(id.as_str(), version, body, &options)
            })
            .await?;
        self.finish(started).await?;
        Ok(self.client.get(id.as_str(), version).await?.value)
    }

    /// DELETE a resource and wait until it is gone; one that is already gone is success.
    pub async fn delete(&self, id: &ResourceId) -> Result<(), ArmError> {
        let version = api_version::for_type(&id.resource_type());
        let options = WriteOptions::default();
        match self
            .start_when_free(|| self.client.delete(id.as_str(), version, &options))
            .await
        {
            Ok(started) => self.finish(started).await.map(|_| ()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// POST an action (`deallocate`, `moveResources`) and wait for it.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        version: &str,
        body: Option<&B>,
    ) -> Result<Option<serde_json::Value>, ArmError> {
        let options = WriteOptions::default();
        let started = self
            .start_when_free(|| {
                self.client
                    .post::<B, serde_json::Value>(path, version, body, &options)
            })
            .await?;
        self.finish(started).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> AzureDeployment {
        let group = ResourceSpec::new(ResourceAddress::new(Kind::ResourceGroup, "main"))
            .with("name", json!("data100-g${generation}"));
        let vm = ResourceSpec::new(ResourceAddress::new(Kind::Vm, "nfs"))
            .with("name", json!("data100-nfs"))
            .with("resource_group", json!("resource_group.main"));
        let mut settings = AzureSettings::simulator(
            crate::Url::parse("https://127.0.0.1:1").unwrap(),
            PathBuf::from("/nonexistent/ca.pem"),
            PathBuf::from("/tmp"),
        );
        settings.subscription = Some("s".to_owned());
        let client = ArmClient::new(ArmClientConfig {
            ca_file: None,
            ..settings.arm.clone()
        })
        .unwrap();
        AzureDeployment::with_client(client, settings, [&group, &vm])
    }

    #[test]
    fn ids_follow_the_generation_and_the_state() {
        let deployment = deployment();
        let nothing = |_: &InstanceAddress| None;
        let vm: InstanceAddress = "vm.nfs@g2".parse().unwrap();
        assert_eq!(
            deployment.id_of(&vm, &nothing).unwrap().as_str(),
            "/subscriptions/s/resourceGroups/data100-g2/providers/Microsoft.Compute/virtualMachines/data100-nfs"
        );
        let remembered = |instance: &InstanceAddress| {
            (instance.to_string() == "resource_group.main@g2")
                .then(|| serde_json::from_value::<Attributes>(json!({"name": "renamed"})).unwrap())
        };
        let id = deployment.id_of(&vm, &remembered).unwrap();
        assert_eq!(id.resource_group_name(), Some("renamed"));
        assert_eq!(
            deployment.instance_with_id(Kind::Vm, &id, 1..=3, &remembered),
            Some(vm)
        );
        assert_eq!(
            deployment.group_named("DATA100-G1", 1..=3, &nothing),
            Some("resource_group.main@g1".parse().unwrap())
        );
    }

    #[test]
    fn environment_settings_are_checked() {
        let environment = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let error = AzureSettings::from_environment(
            None,
            PathBuf::from("/tmp"),
            &environment(&[(SIMULATOR_VARIABLE, "1")]),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid ARM client config: FERRY_ARM_SIMULATOR is set but FERRY_ARM_CA_FILE is not: set it to the simulator's ca.pem"
        );
        let error = AzureSettings::from_environment(
            None,
            PathBuf::from("/tmp"),
            &environment(&[(READYZ_TIMEOUT_VARIABLE, "soon")]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("is not a positive number"));
        let settings = AzureSettings::from_environment(
            None,
            PathBuf::from("/tmp"),
            &environment(&[
                (SUBSCRIPTION_VARIABLE, "sub"),
                (CA_FILE_VARIABLE, "/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.subscription.as_deref(), Some("sub"));
        assert_eq!(settings.readyz_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            settings.arm.endpoint.as_str(),
            "https://management.azure.com/"
        );
    }
}
