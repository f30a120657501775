//! Planning rules of the Azure kinds that a failover rebuilds: resource groups, virtual
//! networks, public IP addresses and virtual machines.
//!
//! These are replaceable kinds: a failover creates a new generation of each beside the old one.
//! The VM is also the fence: deallocating it, confirmed by ARM, is what guarantees that the old
//! host can no longer write to disks that are moving away.

mod provider;

pub use provider::{
    ComputeError, PublicIpProvider, ResourceGroupProvider, VmProvider, VnetProvider, observed_group,
};

use ferry_core::fields::{resource_group, vm};
use ferry_core::naming::{self, check_choice, check_field};
use ferry_core::provider::{FieldType as T, LOCATION_IS_FIXED, NAME_IS_THE_ID, OnChange};
use ferry_core::{
    Action, AttributeChange, Attributes, FieldError, FieldSchema as F, Kind, KindRules,
    OutputSchema as O, ResourceSpec, SimulatedStep, UpdateContext, UpdateRefinement, Value,
};

const LOCATION: F = F::optional(
    "location",
    T::String,
    Some("the deployment's location"),
    LOCATION_IS_FIXED,
    "Azure region",
);
const TAGS: F = F::optional("tags", T::StringMap, None, OnChange::InPlace, "Azure tags");
const IN_RESOURCE_GROUP: F = F::required(
    "resource_group",
    T::Reference(Kind::ResourceGroup),
    OnChange::Replace("a resource moves to another resource group only in a failover"),
    "the resource group that holds it",
);
const ID: O = O {
    name: "id",
    description: "the Azure resource id",
};
const NAME: O = O {
    name: "name",
    description: "the Azure resource name, with the generation filled in",
};

/// `[resource_group.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceGroupRules;

impl KindRules for ResourceGroupRules {
    fn kind(&self) -> Kind {
        Kind::ResourceGroup
    }

    fn description(&self) -> &'static str {
        "An Azure resource group; each generation of a deployment gets its own"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required(
                resource_group::NAME,
                T::String,
                NAME_IS_THE_ID,
                "resource group name; include ${generation} so that a failover can build a new one beside it",
            ),
            LOCATION,
            TAGS,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[ID, NAME]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        check_field(spec, resource_group::NAME, &naming::RESOURCE_GROUP)
            .into_iter()
            .collect()
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Delete | Action::Retire => 120,
            _ => 5,
        }
    }
}

/// `[vnet.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct VnetRules;

impl KindRules for VnetRules {
    fn kind(&self) -> Kind {
        Kind::Vnet
    }

    fn description(&self) -> &'static str {
        "An Azure virtual network with its subnets"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("name", T::String, NAME_IS_THE_ID, "virtual network name"),
            IN_RESOURCE_GROUP,
            LOCATION,
            F::required(
                "address_space",
                T::StringList,
                OnChange::InPlace,
                "address prefixes in CIDR notation, such as [\"10.0.0.0/16\"]",
            ),
            F::optional(
                "subnets",
                T::StringMap,
                None,
                OnChange::InPlace,
                "subnet name to address prefix, such as { default = \"10.0.0.0/24\" }",
            ),
            TAGS,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            ID,
            NAME,
            O {
                name: "subnet_ids",
                description: "subnet name to subnet resource id",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_field(spec, "name", &naming::VIRTUAL_NETWORK)
            .into_iter()
            .collect();
        let prefixes = spec
            .field("address_space")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, value)| (format!("address_space[{index}]"), value));
        let subnets = spec
            .field("subnets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, value)| (format!("subnets.{name}"), value));
        for (field, value) in prefixes.chain(subnets) {
            if let Some(text) = value.as_str()
                && !is_cidr(text)
            {
                errors.push(
                    FieldError::new(
                        field,
                        format!("`{text}` is not an IPv4 prefix in CIDR notation"),
                    )
                    .with_help("write it as address/length, such as 10.0.0.0/16"),
                );
            }
        }
        errors
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Delete | Action::Retire => 20,
            _ => 10,
        }
    }
}

fn is_cidr(text: &str) -> bool {
    if text.contains("${") {
        return true;
    }
    let Some((address, length)) = text.split_once('/') else {
        return false;
    };
    address.parse::<std::net::Ipv4Addr>().is_ok()
        && length.parse::<u8>().is_ok_and(|length| length <= 32)
}

/// `[public_ip.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicIpRules;

impl KindRules for PublicIpRules {
    /// A Standard or static address is billed for as long as it exists, associated or not.
    fn upkeep(&self, observed: &Attributes) -> Option<String> {
        let text = |name: &str| observed.get(name).and_then(Value::as_str);
        let sku = text("sku").unwrap_or("Standard");
        let allocation = text("allocation").unwrap_or("Static");
        (sku == "Standard" || allocation == "Static")
            .then(|| format!("a {sku} {} public IP", allocation.to_lowercase()))
    }

    fn simulate(&self, step: &SimulatedStep<'_>, attributes: &mut Attributes) {
        let address = format!("127.0.{}.{}", step.generation(), step.number);
        attributes.insert("address".to_owned(), Value::from(address));
    }

    fn kind(&self) -> Kind {
        Kind::PublicIp
    }

    fn description(&self) -> &'static str {
        "An Azure public IP address (static, Standard SKU by default)"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("name", T::String, NAME_IS_THE_ID, "public IP address name"),
            IN_RESOURCE_GROUP,
            LOCATION,
            F::optional(
                "sku",
                T::String,
                Some("Standard"),
                OnChange::Replace("a public IP's SKU cannot change"),
                "Standard or Basic",
            ),
            F::optional(
                "allocation",
                T::String,
                Some("Static"),
                OnChange::InPlace,
                "Static or Dynamic",
            ),
            TAGS,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            ID,
            NAME,
            O {
                name: "address",
                description: "the allocated IP address",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_field(spec, "name", &naming::PUBLIC_IP)
            .into_iter()
            .collect();
        errors.extend(check_choice(spec, "sku", &["Standard", "Basic"]));
        errors.extend(check_choice(spec, "allocation", &["Static", "Dynamic"]));
        errors
    }

    fn estimate_seconds(&self, _: Action, _: &ResourceSpec) -> u64 {
        10
    }
}

/// The VM sizes ferry accepts; a typo here would otherwise surface only as an ARM error
/// minutes into a failover.
pub const VM_SIZES: &[&str] = &[
    "Standard_B2s",
    "Standard_B2ms",
    "Standard_B4ms",
    "Standard_D2s_v5",
    "Standard_D4s_v5",
    "Standard_D8s_v5",
    "Standard_D16s_v5",
    "Standard_D2as_v5",
    "Standard_D4as_v5",
    "Standard_D8as_v5",
    "Standard_E4s_v5",
    "Standard_E8s_v5",
    "Standard_E16s_v5",
    "Standard_F4s_v2",
    "Standard_F8s_v2",
];

/// A VM's deallocation, as a fence or before a resize, in seconds.
const VM_DEALLOCATE_SECONDS: u64 = 90;
/// A VM update of tags or of a size its hardware hosts, one PATCH (Azure restarts the VM to
/// resize it).
const VM_UPDATE_SECONDS: u64 = 60;
/// One PATCH of a VM that is not running (a size or tags): Azure has nothing to restart.
const VM_PATCH_SECONDS: u64 = 30;
/// A VM's start, until ARM shows it running.
const VM_START_SECONDS: u64 = 60;
/// A resize its hardware cannot host: deallocate, PATCH, start.
const VM_DEALLOCATING_RESIZE_SECONDS: u64 =
    VM_DEALLOCATE_SECONDS + VM_PATCH_SECONDS + VM_START_SECONDS;

/// `[vm.NAME]`
#[derive(Debug, Clone, Copy, Default)]
pub struct VmRules;

impl KindRules for VmRules {
    /// A running or stopped VM is billed for its size; a deallocated (fenced) one only for
    /// its OS disk.
    fn upkeep(&self, observed: &Attributes) -> Option<String> {
        let size = observed.get("size").and_then(Value::as_str).unwrap_or("VM");
        match observed.get(vm::POWER_STATE).and_then(Value::as_str) {
            Some("deallocated") => Some("its OS disk (the VM is deallocated)".to_owned()),
            Some("stopped") => Some(format!(
                "a {size} VM, stopped but not deallocated: billed as if running"
            )),
            _ => Some(format!("a running {size} VM")),
        }
    }

    fn simulate(&self, step: &SimulatedStep<'_>, attributes: &mut Attributes) {
        if step.action == Action::Fence {
            attributes.insert(vm::POWER_STATE.to_owned(), Value::from("deallocated"));
        }
        let private_ip = format!("10.{}.16.{}", step.generation(), step.number);
        attributes.insert(vm::PRIVATE_IP.to_owned(), Value::from(private_ip));
        SimulatedStep::default_output(attributes, vm::POWER_STATE, Value::from("running"));
        SimulatedStep::default_output(
            attributes,
            vm::DEVICE_FOLDER,
            Value::from(vm::DEFAULT_DEVICE_FOLDER),
        );
    }

    fn kind(&self) -> Kind {
        Kind::Vm
    }

    fn description(&self) -> &'static str {
        "An Azure Linux virtual machine with its network interface, such as the NFS server"
    }

    fn fields(&self) -> &'static [F] {
        const FIELDS: &[F] = &[
            F::required("name", T::String, NAME_IS_THE_ID, "virtual machine name"),
            IN_RESOURCE_GROUP,
            LOCATION,
            F::required(
                "vnet",
                T::Reference(Kind::Vnet),
                OnChange::Replace("a VM's network interface cannot change virtual network"),
                "the virtual network of its network interface",
            ),
            F::optional(
                "subnet",
                T::String,
                Some("default"),
                OnChange::Replace("a VM's network interface cannot change subnet here"),
                "the subnet of its network interface",
            ),
            F::required(
                "size",
                T::String,
                OnChange::InPlace,
                "VM size, such as Standard_D4s_v5; Azure restarts the VM to resize it, and a size its hardware cannot host needs it deallocated first: it stops for a few minutes",
            ),
            F::optional(
                "image",
                T::String,
                Some("Canonical:ubuntu-24_04-lts:server:latest"),
                OnChange::Replace("a VM's OS image cannot change"),
                "marketplace image as publisher:offer:sku:version",
            ),
            F::optional(
                vm::ADMIN_USERNAME,
                T::String,
                Some("azureuser"),
                OnChange::Replace("a VM's admin user is set at creation only"),
                "the Linux admin user",
            ),
            F::required(
                "ssh_public_key",
                T::String,
                OnChange::Replace("a VM's SSH key is set at creation only"),
                "the admin user's SSH public key (OpenSSH format)",
            ),
            F::optional(
                "public_ip",
                T::Reference(Kind::PublicIp),
                None,
                OnChange::InPlace,
                "a public IP address for its network interface",
            ),
            F::optional(
                vm::DEVICE_FOLDER,
                T::String,
                Some(vm::DEFAULT_DEVICE_FOLDER),
                OnChange::InPlace,
                "where the guest sees attached data disks, one lunN entry per disk",
            ),
            TAGS,
        ];
        FIELDS
    }

    fn outputs(&self) -> &'static [O] {
        &[
            ID,
            NAME,
            O {
                name: vm::PRIVATE_IP,
                description: "the private IP address of its network interface",
            },
            O {
                name: vm::PUBLIC_ADDRESS,
                description: "its public IP address, when it has one",
            },
            O {
                name: vm::POWER_STATE,
                description: "running, stopped or deallocated",
            },
            O {
                name: vm::DEVICE_FOLDER,
                description: "where the guest sees attached data disks",
            },
        ]
    }

    fn validate(&self, spec: &ResourceSpec) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = check_field(spec, "name", &naming::VIRTUAL_MACHINE)
            .into_iter()
            .collect();
        errors.extend(check_choice(spec, "size", VM_SIZES));
        if let Some(key) = spec.str_field("ssh_public_key")
            && !key.contains("${")
            && !(key.starts_with("ssh-") || key.starts_with("ecdsa-"))
        {
            errors.push(
                FieldError::new("ssh_public_key", "this is not an OpenSSH public key").with_help(
                    "paste the one line of the .pub file, starting with ssh-ed25519 or ssh-rsa",
                ),
            );
        }
        errors
    }

    fn estimate_seconds(&self, action: Action, _: &ResourceSpec) -> u64 {
        match action {
            Action::Create | Action::Replace => 120,
            // A resize that needs a deallocation takes longer: `refine_update` says so.
            Action::Update => VM_UPDATE_SECONDS,
            Action::Fence => VM_DEALLOCATE_SECONDS,
            Action::Delete | Action::Retire => 90,
            _ => 30,
        }
    }

    /// A VM of the serving generation runs: one that reads `deallocated` or `stopped` (a
    /// resize whose start failed or was killed, someone in the portal) is started again. The
    /// planner asks this only of the generation it converges, so a VM a failover fenced, of
    /// the old generation, is never started: it is only retired. Other states (`running`,
    /// `starting`, `deallocating` on its way, `unknown`) and a reading without a power state
    /// are no change; a VM caught `deallocating` is started by the plan after it.
    fn implied_changes(&self, _: &ResourceSpec, observed: &Attributes) -> Vec<AttributeChange> {
        match observed.get(vm::POWER_STATE).and_then(Value::as_str) {
            Some(state @ ("deallocated" | "stopped")) => vec![AttributeChange {
                path: vm::POWER_STATE.to_owned(),
                before: Some(Value::from(state)),
                after: Some(Value::from("running")),
                forces_replacement: None,
            }],
            _ => Vec::new(),
        }
    }

    /// A size change says which way Azure takes, as the reading's `resizable_in_place` tells
    /// (read only while the size differs from the spec's): in place, where Azure restarts the
    /// VM; or deallocate, resize, start, where the VM stops for a few minutes, with a warning
    /// and the longer estimate. Without that reading (a snapshot from before it existed) the
    /// plan says the VM may be deallocated, and estimates the long way.
    ///
    /// A start ([`VmRules::implied_changes`]) says the VM is started again so that it serves,
    /// resized first when its size changes too, with the estimate of what the step does: the
    /// start, a PATCH before it when anything else changes, and a deallocation before that
    /// for a stopped VM whose hardware cannot host its new size. No warning: the VM serves
    /// nothing now, and the step ends that.
    fn refine_update(&self, context: &UpdateContext<'_>) -> UpdateRefinement {
        let resize = context
            .changes
            .iter()
            .find(|change| change.path == "size")
            .and_then(|size| {
                Some((
                    size.before.as_ref()?.as_str()?,
                    size.after.as_ref()?.as_str()?,
                ))
            })
            // A size known only after apply, or only spelled another way (ARM compares sizes
            // without case), says nothing of a resize.
            .filter(|(before, after)| !after.contains("${") && !before.eq_ignore_ascii_case(after))
            .map(|(_, after)| after);
        let start = context
            .changes
            .iter()
            .find(|change| {
                change.path == vm::POWER_STATE
                    && change.after.as_ref().and_then(Value::as_str) == Some("running")
            })
            .map(|change| {
                change
                    .before
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or("not running")
            });
        let others: Vec<&str> = context
            .changes
            .iter()
            .filter(|change| {
                !(change.path == "size" && resize.is_some()
                    || change.path == vm::POWER_STATE && start.is_some())
            })
            .map(|change| change.path.as_str())
            .collect();
        let also = if others.is_empty() {
            String::new()
        } else {
            format!("; also changed in place: {}", others.join(", "))
        };
        let in_place = context
            .observed
            .get("resizable_in_place")
            .and_then(Value::as_bool);
        if let Some(state) = start {
            let (reason, estimate_seconds) = match (resize, state, in_place) {
                (None, _, _) if others.is_empty() => (
                    format!("it is {state}: started again, so that it serves"),
                    VM_START_SECONDS,
                ),
                (None, _, _) => (
                    format!("it is {state}: started again, so that it serves"),
                    VM_PATCH_SECONDS + VM_START_SECONDS,
                ),
                // A deallocated VM takes any size; a stopped one still holds its hardware.
                (Some(after), "deallocated", _) | (Some(after), _, Some(true)) => (
                    format!(
                        "it is {state}: resized to {after} and started again, so that it serves"
                    ),
                    VM_PATCH_SECONDS + VM_START_SECONDS,
                ),
                (Some(after), _, Some(false)) => (
                    format!(
                        "it is {state}: deallocated to resize to {after} (its current hardware cannot host that size) and started again, so that it serves"
                    ),
                    VM_DEALLOCATING_RESIZE_SECONDS,
                ),
                (Some(after), _, None) => (
                    format!(
                        "it is {state}: resized to {after}, perhaps after a deallocation (the reading does not say), and started again, so that it serves"
                    ),
                    VM_DEALLOCATING_RESIZE_SECONDS,
                ),
            };
            return UpdateRefinement {
                reason: Some(format!("{reason}{also}")),
                warning: None,
                estimate_seconds: Some(estimate_seconds),
            };
        }
        let Some(after) = resize else {
            return UpdateRefinement::default();
        };
        let power_state = context
            .observed
            .get(vm::POWER_STATE)
            .and_then(Value::as_str);
        let (reason, warning, estimate_seconds) = match (power_state, in_place) {
            // A deallocated VM takes any size, and a step that does not start it (its changes
            // have no start) leaves it deallocated.
            (Some("deallocated"), _) => (
                format!(
                    "resized to {after} while deallocated: the VM stays deallocated (the step does not start it)"
                ),
                None,
                None,
            ),
            (_, Some(true)) => (
                format!(
                    "resized in place to {after}: the VM restarts (its current hardware hosts that size)"
                ),
                None,
                None,
            ),
            (_, Some(false)) => (
                format!(
                    "deallocated to resize to {after}: the VM stops for a few minutes (Azure cannot resize it in place on its current hardware)"
                ),
                Some(
                    "the VM stops while it is deallocated, resized and started again: what it serves is down for a few minutes"
                        .to_owned(),
                ),
                Some(VM_DEALLOCATING_RESIZE_SECONDS),
            ),
            (_, None) => (
                format!(
                    "resized to {after}, perhaps after a deallocation: the VM restarts, or stops for a few minutes if Azure cannot resize it in place on its current hardware (the reading does not say)"
                ),
                Some(
                    "the VM may be deallocated to resize it: what it serves may be down for a few minutes"
                        .to_owned(),
                ),
                Some(VM_DEALLOCATING_RESIZE_SECONDS),
            ),
        };
        UpdateRefinement {
            reason: Some(format!("{reason}{also}")),
            warning,
            estimate_seconds,
        }
    }
}
