//! Planning rules of managed disks: the stateful heart of a failover.
//!
//! A failover never recreates a disk. It fences the old VM, detaches the disk, moves it to the
//! new generation's resource group and attaches it to the new VM at the same LUN, in that
//! order, so that the disk is attached to at most one VM at every instant without relying on
//! ARM to refuse a second attachment.

mod batch;
pub mod copies;
mod provider;
pub mod restore_point_copies;

pub use provider::{DiskError, DiskProvider};

use ferry_core::fields::disk;
use ferry_core::naming::{self, check_choice, check_field};
use ferry_core::provider::{
    FieldType as T, IntegerRange, LOCATION_IS_FIXED, OnChange, schema_class,
};
use ferry_core::{
    Action, ChangeClass, FailoverContext, FieldError, FieldSchema as F, InstanceAddress, Kind,
    KindRules, Observation, OutputSchema as O, ResourceAddress, ResourceSpec, StepDraft, StepId,
    Value,
};
use serde_json::json;

/// Managed disk SKUs, as ARM spells them.
pub const DISK_SKUS: &[&str] = &[
    "Standard_LRS",
    "StandardSSD_LRS",
    "Premium_LRS",
    "PremiumV2_LRS",
    "UltraSSD_LRS",
    "StandardSSD_ZRS",
    "Premium_ZRS",
];

/// `[disk.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskRules;

impl KindRules for DiskRules {
    /// A managed disk is billed for its provisioned size and tier, attached or not: shown for
    /// a hot standby's replica disks and for an old generation kept with disks on it.
    fn upkeep(&self, observed: &ferry_core::Attributes) -> Option<String> {
        use ferry_core::Value;
        let size = observed.get("size_gb").and_then(Value::as_u64)?;
        let sku = observed
            .get("sku")
            .and_then(Value::as_str)
            .unwrap_or("managed");
        Some(format!("a {size} GB {sku} disk"))
    }

    fn simulate(
        &self,
        step: &ferry_core::SimulatedStep<'_>,
        attributes: &mut ferry_core::Attributes,
    ) {
        use ferry_core::Value;
        let mut set = |name: &str, value: Value| {
            attributes.insert(name.to_owned(), value);
        };
        match step.action {
            Action::Detach => {
                set("disk_state", Value::from("Unattached"));
                attributes.remove(disk::VM);
                attributes.remove(disk::LUN);
            }
            Action::Move => {
                if let Some(group) = step.inputs.get(disk::RESOURCE_GROUP) {
                    set(disk::RESOURCE_GROUP, group.clone());
                }
            }
            Action::Attach => {
                for name in [disk::VM, disk::LUN] {
                    if let Some(value) = step.inputs.get(name) {
                        set(name, value.clone());
                    }
                }
                set("disk_state", Value::from("Attached"));
            }
            _ => {}
        }
        let state = if attributes.contains_key(disk::VM) {
            "Attached"
        } else {
            "Unattached"
        };
        ferry_core::SimulatedStep::default_output(attributes, "disk_state", Value::from(state));
    }

    fn kind(&self) -> Kind {
        Kind::Disk
    }

    fn description(&self) -> &'static str {
        "An Azure managed data disk, attached to a VM at a LUN; stateful, moved by a failover"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required(
                disk::NAME,
                T::String,
                OnChange::Replace("the name is part of the Azure resource id"),
                "managed disk name; it stays the same in every generation",
            ),
            F::required(
                disk::RESOURCE_GROUP,
                T::Reference(Kind::ResourceGroup),
                OnChange::InPlace,
                "the resource group that holds it; a failover moves it to the new generation's",
            ),
            F::optional(
                "location",
                T::String,
                Some("the deployment's location"),
                LOCATION_IS_FIXED,
                "Azure region",
            ),
            F::required(
                "size_gb",
                T::Integer(IntegerRange::new(4, 65_536)),
                OnChange::InPlace,
                "size in GiB; it can grow in place, never shrink",
            ),
            F::optional(
                "sku",
                T::String,
                Some("Premium_LRS"),
                OnChange::InPlace,
                "storage SKU, such as Premium_LRS",
            ),
            F::optional(
                disk::VM,
                T::Reference(Kind::Vm),
                None,
                OnChange::InPlace,
                "the VM it is attached to",
            ),
            F::optional(
                disk::LUN,
                T::Integer(IntegerRange::new(0, 63)),
                None,
                OnChange::InPlace,
                "the logical unit number on that VM, 0 to 63; required with vm",
            ),
            F::optional("tags", T::StringMap, None, OnChange::InPlace, "Azure tags"),
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            O {
                name: "id",
                description: "the Azure resource id; it changes when the disk moves",
            },
            O {
                name: disk::NAME,
                description: "the managed disk name",
            },
            O {
                name: "disk_state",
                description: "Attached, Unattached or Reserved, as ARM reports it",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_field(spec, disk::NAME, &naming::MANAGED_DISK)
            .into_iter()
            .collect();
        errors.extend(check_choice(spec, "sku", DISK_SKUS));
        // The schema bounds size_gb by the largest SKUs (4 to 65536 GiB); the others stop at
        // 32767 GiB.
        let sku = spec.str_field("sku").unwrap_or("Premium_LRS");
        if let Some(size) = spec.field("size_gb").and_then(Value::as_i64)
            && (32_768..=65_536).contains(&size)
            && !["PremiumV2_LRS", "UltraSSD_LRS"].contains(&sku)
        {
            errors.push(
                FieldError::new(
                    "size_gb",
                    format!("{size} GiB is larger than Azure's largest {sku} disk (32767 GiB)"),
                )
                .with_help("use a size up to 32767 GiB, or sku = \"PremiumV2_LRS\" or \"UltraSSD_LRS\" for up to 65536 GiB"),
            );
        }
        match (
            spec.field(disk::VM),
            spec.field(disk::LUN).and_then(Value::as_i64),
        ) {
            (Some(_), None) => errors.push(
                FieldError::new(disk::LUN, "a disk attached to a vm needs a lun")
                    .with_help("add lun = N, with N from 0 to 63, unique on that vm"),
            ),
            (None, Some(_)) => errors.push(
                FieldError::new(disk::LUN, "lun is set but vm is not")
                    .with_help("add vm = \"vm.NAME\" or remove lun"),
            ),
            _ => {}
        }
        errors
    }

    fn classify_change(&self, attribute: &str, before: &Value, after: &Value) -> ChangeClass {
        match (attribute, before.as_i64(), after.as_i64()) {
            ("size_gb", Some(before), Some(after)) if after < before => {
                ChangeClass::Refuse(format!(
                    "a managed disk cannot shrink ({before} GiB to {after} GiB): keep size_gb at {before} or more"
                ))
            }
            _ => schema_class(self, attribute),
        }
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Create => 15,
            Action::Update => 30,
            Action::Detach | Action::Attach => 30,
            Action::Move => 180,
            _ => 30,
        }
    }

    fn failover(&self, context: &FailoverContext<'_>) -> Result<Vec<StepDraft>, String> {
        if let Observation::Unknown { reason } = context.observed {
            return Err(format!(
                "its reading is unknown ({reason}), so ferry cannot tell which VM holds it: a disk is never moved blind"
            ));
        }
        let spec = context.spec;
        let me = spec.address.at(None);
        let to = context.to_generation;
        let mut drafts = Vec::new();
        let attached_to = context
            .observed
            .attribute(disk::VM)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok());
        let target_vm = reference(spec, disk::VM).map(|vm| vm.at(Some(to)));
        let target_group = reference(spec, disk::RESOURCE_GROUP).map(|group| group.at(Some(to)));
        let mut last = None;

        if let Some(old_vm) = attached_to
            .clone()
            .filter(|vm| Some(vm) != target_vm.as_ref())
        {
            let old_vm_reading = context.snapshot.get(&old_vm);
            let fence = StepId::new(&old_vm, Action::Fence);
            if !old_vm_reading.is_some_and(Observation::is_fenced_host) {
                drafts.push(
                    StepDraft::new(
                        old_vm.clone(),
                        Action::Fence,
                        format!(
                            "its disks move to generation {to}: deallocate it so that it can no longer write to them"
                        ),
                    )
                    .input("mode", json!("deallocate")),
                );
            }
            let mut detach = StepDraft::new(
                me.clone(),
                Action::Detach,
                format!("attached to {old_vm}, which generation {to} replaces"),
            )
            .input(disk::VM, json!(old_vm.to_string()))
            .after(fence);
            if matches!(old_vm_reading, Some(Observation::Unknown { .. }) | None) {
                detach = detach.input("detach_option", json!("ForceDetach"));
                detach.warning = Some(format!(
                    "{old_vm} could not be read: the disk is force-detached after the fence"
                ));
            }
            last = Some(detach.id());
            drafts.push(detach);
        }

        let in_group = context
            .observed
            .attribute(disk::RESOURCE_GROUP)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok());
        if let Some(group) = target_group.filter(|group| Some(group) != in_group.as_ref()) {
            let mut step = StepDraft::new(
                me.clone(),
                Action::Move,
                format!("generation {to} lives in {group}; the disk is moved, never recreated",),
            )
            .input(disk::RESOURCE_GROUP, json!(group.to_string()))
            .after(StepId::new(&group, Action::Create));
            if let Some(from_group) = &in_group {
                step = step.input("from_resource_group", json!(from_group.to_string()));
            }
            if let Some(previous) = last.take() {
                step = step.after(previous);
            }
            last = Some(step.id());
            drafts.push(step);
        }

        if let Some(vm) = target_vm
            && attached_to.as_ref() != Some(&vm)
        {
            let lun = spec.field(disk::LUN).cloned().unwrap_or(Value::Null);
            let mut step = StepDraft::new(
                me.clone(),
                Action::Attach,
                format!("generation {to}'s {} needs it at lun {lun}", vm.address),
            )
            .input(disk::VM, json!(vm.to_string()))
            .input(disk::LUN, lun)
            .after(StepId::new(&vm, Action::Create));
            if let Some(previous) = last.take() {
                step = step.after(previous);
            }
            drafts.push(step);
        }
        Ok(drafts)
    }

    fn is_observed(&self, field: &str) -> bool {
        field != "tags" && field != disk::COPY_OF
    }
}

fn reference(spec: &ResourceSpec, field: &str) -> Option<ResourceAddress> {
    spec.str_field(field)?.parse().ok()
}
