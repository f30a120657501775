//! VM sizes: what `vmSizes` lists and ARM's rule for a resize, with the simulator's model of
//! a hardware cluster (one series of sizes).

use serde_json::{Value, json};

use super::ids::{lower, name_of};
use super::{Refusal, SimResponse, World};

impl World {
    /// Whether a VM holds hardware in a cluster: every power state but `deallocated` (a VM
    /// that is still being created has none yet, and is not placed).
    fn holds_hardware(&self, vm_id: &str) -> bool {
        self.power_states
            .get(&lower(vm_id))
            .is_some_and(|state| state != "deallocated")
    }

    /// The sizes `GET {vm}/vmSizes` lists: those the VM can be resized to where it is now. A VM
    /// that holds hardware gets the sizes of its own series (see [`size_series`]): the
    /// simulator's hardware cluster hosts one series. A deallocated VM is placed again when it
    /// starts, so every size the simulator knows is open to it.
    pub(super) fn sizes_available(&self, vm_id: &str, vm: &Value) -> Vec<&'static VmSize> {
        let current = vm
            .pointer("/properties/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let in_place = self.holds_hardware(vm_id);
        VM_SIZES
            .iter()
            .filter(|size| !in_place || size_series(size.name) == size_series(current))
            .collect()
    }

    /// ARM's rule for a write that changes a VM's size: while the VM holds hardware, only to a
    /// size that `vmSizes` lists (its hardware cluster hosts it); refused otherwise with ARM's
    /// `409 OperationNotAllowed`, whose remedy is to deallocate the VM, resize it and start it.
    /// A deallocated VM takes any size. Seeding bypasses the rule, as a change in the portal
    /// after a deallocation would. Azure restarts a VM that it resizes in place; the simulator
    /// keeps it `running` throughout, the restart being inside the operation.
    pub(super) fn check_resize(
        &self,
        vm_id: &str,
        before: &Value,
        after: &Value,
    ) -> Result<(), Refusal> {
        let size = |body: &Value| {
            body.pointer("/properties/hardwareProfile/vmSize")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(current), Some(wanted)) = (size(before), size(after)) else {
            return Ok(());
        };
        if current.eq_ignore_ascii_case(&wanted) || !self.holds_hardware(vm_id) {
            return Ok(());
        }
        let available: Vec<&str> = self
            .sizes_available(vm_id, before)
            .into_iter()
            .map(|size| size.name)
            .collect();
        if available
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&wanted))
        {
            return Ok(());
        }
        Err(SimResponse::json(
            409,
            &json!({"error": {
                "code": "OperationNotAllowed",
                "target": "vmSize",
                "message": format!(
                    "Unable to resize the VM '{}' because the requested size {wanted} is not available in the current hardware cluster. The available sizes in this cluster are: {}. The requested size might be available in other clusters of this region. Read more on VM resizing strategy at https://aka.ms/azure-resizevm.",
                    name_of(vm_id),
                    available.join(",")
                ),
            }}),
        ))
    }
}

/// A VM size as `vmSizes` lists it, with Azure's published figures.
#[derive(Debug)]
pub(super) struct VmSize {
    name: &'static str,
    cores: u32,
    memory_mib: u32,
    /// The local temporary disk; 0 for the sizes that have none (the v5 Intel and AMD ones).
    resource_disk_mib: u32,
    max_data_disks: u32,
}

impl VmSize {
    const fn new(
        name: &'static str,
        cores: u32,
        memory_mib: u32,
        resource_disk_mib: u32,
        max_data_disks: u32,
    ) -> Self {
        VmSize {
            name,
            cores,
            memory_mib,
            resource_disk_mib,
            max_data_disks,
        }
    }

    /// One entry of ARM's `vmSizes` answer.
    pub(super) fn listed(&self) -> Value {
        json!({
            "name": self.name,
            "numberOfCores": self.cores,
            "osDiskSizeInMB": 1_047_552,
            "resourceDiskSizeInMB": self.resource_disk_mib,
            "memoryInMB": self.memory_mib,
            "maxDataDiskCount": self.max_data_disks,
        })
    }
}

/// The sizes the simulator knows: those ferry's `vm` kind accepts.
const VM_SIZES: &[VmSize] = &[
    VmSize::new("Standard_B2s", 2, 4096, 8192, 4),
    VmSize::new("Standard_B2ms", 2, 8192, 16384, 4),
    VmSize::new("Standard_B4ms", 4, 16384, 32768, 8),
    VmSize::new("Standard_D2s_v5", 2, 8192, 0, 4),
    VmSize::new("Standard_D4s_v5", 4, 16384, 0, 8),
    VmSize::new("Standard_D8s_v5", 8, 32768, 0, 16),
    VmSize::new("Standard_D16s_v5", 16, 65536, 0, 32),
    VmSize::new("Standard_D2as_v5", 2, 8192, 0, 4),
    VmSize::new("Standard_D4as_v5", 4, 16384, 0, 8),
    VmSize::new("Standard_D8as_v5", 8, 32768, 0, 16),
    VmSize::new("Standard_E4s_v5", 4, 32768, 0, 8),
    VmSize::new("Standard_E8s_v5", 8, 65536, 0, 16),
    VmSize::new("Standard_E16s_v5", 16, 131072, 0, 32),
    VmSize::new("Standard_F4s_v2", 4, 8192, 32768, 8),
    VmSize::new("Standard_F8s_v2", 8, 16384, 65536, 16),
];

/// A size's series, the simulator's model of what one hardware cluster hosts: the family
/// letters, the processor (Intel unless the additive letters hold `a`, AMD, or `p`, Arm) and
/// the version. `Standard_D4s_v5` and `Standard_D16s_v5` share the series `d/intel/v5`;
/// `Standard_D4as_v5` (AMD) and `Standard_E8s_v5` (another family) do not, nor does
/// `Standard_D4s_v4` (another generation). The B-series sizes have no version and share one.
///
/// Why this rule: in Azure a cluster is built from one hardware generation, and a family's
/// sizes of one version differ in their share of the same machines, so they can be swapped in
/// place; another processor or generation is other hardware, reached only by deallocating.
/// Azure's real answer depends on the cluster (Dsv5 and Esv5 often share one), so the
/// simulator's is narrower than Azure's often is: a conservative model that makes both paths
/// of a resize reachable with sizes ferry accepts.
fn size_series(size: &str) -> String {
    let lowered = lower(size);
    let without_tier = lowered
        .strip_prefix("standard_")
        .or_else(|| lowered.strip_prefix("basic_"))
        .unwrap_or(&lowered);
    let (base, version) = without_tier.split_once('_').unwrap_or((without_tier, ""));
    let family: String = base.chars().take_while(char::is_ascii_alphabetic).collect();
    let additive: String = base[family.len()..]
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '-')
        .to_owned();
    let processor = if additive.contains('a') {
        "amd"
    } else if additive.contains('p') {
        "arm"
    } else {
        "intel"
    };
    format!("{family}/{processor}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_family_processor_and_version() {
        for (size, series) in [
            ("Standard_D4s_v5", "d/intel/v5"),
            ("standard_d16S_V5", "d/intel/v5"),
            ("Standard_D4as_v5", "d/amd/v5"),
            ("Standard_D4ps_v5", "d/arm/v5"),
            ("Standard_E8s_v5", "e/intel/v5"),
            ("Standard_D2s_v3", "d/intel/v3"),
            ("Standard_B2s", "b/intel/"),
            ("Standard_B4ms", "b/intel/"),
            ("Standard_M8-2ms", "m/intel/"),
            ("Standard_F8s_v2", "f/intel/v2"),
            ("", "/intel/"),
        ] {
            assert_eq!(size_series(size), series, "{size}");
        }
    }
}
