//! A small harness for calling Azure providers directly against an in-process simulator: a
//! deployment of resource specs, the outputs ferry's state would remember, and steps built
//! by hand as the planner would make them. The Azure providers' tests share it; it is behind
//! the `provider-harness` feature, so that the crates that use the testkit for plans and
//! worlds never build the simulator for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferry_arm::{AzureDeployment, AzureSettings, Url};
use ferry_core::{
    Action, ApplyContext, AttributeChange, Attributes, InstanceAddress, Observation, Provider,
    ReadContext, ResourceSpec, Step, StepError, StepId, Value,
};
use ferry_sim::{Simulator, SimulatorConfig};

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000aa";

/// Where the disk tests write what stands for a pool's data: far enough into a simulated
/// disk's backing file that a hole precedes it (a copy must keep both).
pub const DATA_OFFSET: u64 = 3 << 20;

/// Writes `bytes` at [`DATA_OFFSET`] of a simulated disk's backing file (or its VM's LUN link),
/// synced, as a pool's write would land.
pub fn write_at(device: &std::path::Path, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .unwrap();
    file.seek(SeekFrom::Start(DATA_OFFSET)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// The `length` bytes at [`DATA_OFFSET`] of a simulated disk's backing file.
pub fn read_at(device: &std::path::Path, length: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(device).unwrap();
    file.seek(SeekFrom::Start(DATA_OFFSET)).unwrap();
    let mut bytes = vec![0; length];
    file.read_exact(&mut bytes).unwrap();
    bytes
}

#[derive(Debug)]
pub struct Harness {
    pub simulator: Simulator,
    pub azure: Arc<AzureDeployment>,
    pub specs: BTreeMap<InstanceAddress, ResourceSpec>,
    pub state: Mutex<BTreeMap<InstanceAddress, Attributes>>,
    pub recorded: Mutex<Vec<String>>,
    pub folder: tempfile::TempDir,
}

pub fn attributes(value: serde_json::Value) -> Attributes {
    serde_json::from_value(value).unwrap()
}

pub fn instance(text: &str) -> InstanceAddress {
    text.parse().unwrap()
}

impl Harness {
    /// A simulator and a deployment whose spec holds `resources` (address and fields).
    pub async fn start(resources: &[(&str, serde_json::Value)]) -> Self {
        Self::start_with(resources, |_| {}).await
    }

    /// The same with the simulator's config adjusted (a small list page).
    pub async fn start_with(
        resources: &[(&str, serde_json::Value)],
        adjust: impl FnOnce(&mut SimulatorConfig),
    ) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
        adjust(&mut config);
        let simulator = ferry_sim::start(config).await.unwrap();
        let specs: Vec<ResourceSpec> = resources
            .iter()
            .map(|(address, fields)| {
                let mut spec = ResourceSpec::new(address.parse().unwrap());
                spec.fields = attributes(fields.clone());
                spec
            })
            .collect();
        let mut settings = AzureSettings::simulator(
            Url::parse(simulator.endpoint()).unwrap(),
            simulator.ca_file().to_path_buf(),
            folder.path().join("state"),
        );
        settings.subscription = Some(SUBSCRIPTION.to_owned());
        settings.device_root = Some(folder.path().join("sim"));
        settings.readyz_timeout = std::time::Duration::from_millis(500);
        let azure = Arc::new(AzureDeployment::new(settings, specs.iter()).unwrap());
        Harness {
            simulator,
            azure,
            specs: specs
                .into_iter()
                .map(|spec| (spec.address.at(None), spec))
                .collect(),
            state: Mutex::new(BTreeMap::new()),
            recorded: Mutex::new(Vec::new()),
            folder,
        }
    }

    pub fn outputs(&self, instance: &InstanceAddress) -> Option<Attributes> {
        self.state.lock().unwrap().get(instance).cloned()
    }

    /// Reads `instance` with `fields` as the spec resolves them for it.
    pub async fn read(
        &self,
        provider: &dyn Provider,
        instance: &InstanceAddress,
        fields: &Attributes,
    ) -> Observation {
        let spec = ResourceSpec::new(instance.address.clone());
        let state = self.state.lock().unwrap().clone();
        let outputs = move |instance: &InstanceAddress| state.get(instance).cloned();
        provider
            .read(ReadContext {
                spec: &spec,
                instance,
                fields,
                remembered: None,
                outputs: &outputs,
            })
            .await
    }

    /// Applies one step and, like the engine, remembers its outputs (or forgets the
    /// instance after a delete or retire).
    pub async fn apply(
        &self,
        provider: &dyn Provider,
        instance: &InstanceAddress,
        action: Action,
        inputs: &Attributes,
        changes: Vec<AttributeChange>,
        resume: Option<&str>,
    ) -> Result<Attributes, StepError> {
        let step = Step {
            id: StepId::new(instance, action),
            address: instance.clone(),
            action,
            reason: "a test".into(),
            after: Vec::new(),
            estimate_seconds: 1,
            changes: changes.into(),
            inputs: inputs.clone(),
            warning: None,
        };
        let state = self.state.lock().unwrap().clone();
        let outputs = move |instance: &InstanceAddress| state.get(instance).cloned();
        let progress = |_: String| {};
        let record = |operation: String| self.recorded.lock().unwrap().push(operation);
        let outcome = provider
            .apply(
                &step,
                ApplyContext {
                    inputs,
                    outputs: &outputs,
                    progress: &progress,
                    resume_token: resume,
                    record_resume_token: &record,
                },
            )
            .await?;
        let mut state = self.state.lock().unwrap();
        match action {
            Action::Delete | Action::Retire => {
                state.remove(instance);
            }
            _ => {
                state.insert(instance.clone(), outcome.outputs.clone());
            }
        }
        Ok(outcome.outputs)
    }

    pub fn group_id(&self, group: &str) -> String {
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}")
    }

    /// A resource changed behind ferry's back, through the simulator's seeding.
    pub fn change_behind_ferrys_back(&self, id: &str, body: serde_json::Value) {
        self.simulator.seed(id, body).unwrap();
    }
}

pub fn value_of<'a>(observation: &'a Observation, name: &str) -> Option<&'a Value> {
    observation.attribute(name)
}

impl Harness {
    /// Seeds a resource group and remembers it as `instance`, as ferry's state would.
    pub fn seed_group(&self, instance_text: &str, name: &str) {
        let id = self.group_id(name);
        self.simulator
            .seed(&id, serde_json::json!({"location": "westeurope"}))
            .unwrap();
        self.state.lock().unwrap().insert(
            instance(instance_text),
            attributes(serde_json::json!({"id": id, "name": name})),
        );
    }

    /// Seeds a running VM without data disks and remembers it as `instance`.
    pub fn seed_vm(&self, instance_text: &str, group: &str, name: &str) -> String {
        let id = format!(
            "{}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.group_id(group)
        );
        self.simulator
            .seed(
                &id,
                serde_json::json!({"location": "westeurope", "properties": {"hardwareProfile": {"vmSize": "Standard_D4s_v5"}, "storageProfile": {"dataDisks": []}}}),
            )
            .unwrap();
        self.state.lock().unwrap().insert(
            instance(instance_text),
            attributes(serde_json::json!({"id": id, "name": name})),
        );
        id
    }
}
