//! Typed ARM models for the resource types ferry uses; every struct keeps the fields it does not know.
//!
//! Each struct has a flattened `extra` map, so a read-modify-write (GET, change one field, PUT)
//! sends back everything Azure returned, including fields newer than these models. Only the
//! fields ferry reads or writes are typed; all are optional unless ARM always sends them,
//! because ARM omits empty fields freely.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ArmErrorDetail;

/// Unknown fields, kept as they came.
pub type ExtraFields = Map<String, Value>;

/// Declares a tracked ARM resource: the common envelope (id, name, type, location, tags, etag)
/// plus `properties` of the given type and any extra top-level fields.
macro_rules! arm_resource {
    ($(#[$meta:meta])* $name:ident, $properties:ty { $($(#[$field_meta:meta])* pub $field:ident : $field_type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub id: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
            pub resource_type: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub location: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tags: Option<BTreeMap<String, String>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub etag: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub properties: Option<$properties>,
            $(
                $(#[$field_meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: $field_type,
            )*
            #[serde(flatten)]
            pub extra: ExtraFields,
        }

        impl $name {
            /// `properties.provisioningState`, when ARM sent one.
            pub fn provisioning_state(&self) -> Option<&str> {
                self.properties.as_ref().and_then(|properties| properties.provisioning_state.as_deref())
            }
        }
    };
}

/// Declares a properties object (or any nested object) whose fields are all optional.
macro_rules! arm_object {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* pub $field:ident : $field_type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: $field_type,
            )*
            #[serde(flatten)]
            pub extra: ExtraFields,
        }
    };
}

arm_object!(
    /// A reference to another resource by id.
    SubResource { pub id: Option<String>, }
);

impl SubResource {
    pub fn new(id: impl Into<String>) -> Self {
        SubResource {
            id: Some(id.into()),
            extra: ExtraFields::new(),
        }
    }
}

// ---- resource groups -------------------------------------------------------------------

arm_resource!(
    /// `Microsoft.Resources/resourceGroups`.
    ResourceGroup, ResourceGroupProperties { pub managed_by: Option<String>, }
);
arm_object!(ResourceGroupProperties { pub provisioning_state: Option<String>, });

arm_resource!(
    /// Any resource as a subscription's `Resources - List` shows it (`GenericResourceExpanded`,
    /// Microsoft.Resources 2025-04-01): who it is, its region, SKU and tags, not its
    /// properties (which only its own provider's GET has).
    GenericResource, GenericResourceProperties {
        pub kind: Option<String>,
        pub managed_by: Option<String>,
        pub sku: Option<Sku>,
    }
);
arm_object!(GenericResourceProperties { pub provisioning_state: Option<String>, });

// ---- network ------------------------------------------------------------------------------

arm_resource!(
    /// `Microsoft.Network/virtualNetworks`.
    VirtualNetwork, VirtualNetworkProperties {}
);
arm_object!(VirtualNetworkProperties {
    pub address_space: Option<AddressSpace>,
    pub subnets: Option<Vec<Subnet>>,
    pub provisioning_state: Option<String>,
});
arm_object!(AddressSpace { pub address_prefixes: Option<Vec<String>>, });

arm_resource!(
    /// `Microsoft.Network/virtualNetworks/subnets` (also embedded in a network's `subnets`).
    Subnet, SubnetProperties {}
);
arm_object!(SubnetProperties {
    pub address_prefix: Option<String>,
    pub address_prefixes: Option<Vec<String>>,
    pub provisioning_state: Option<String>,
});

arm_resource!(
    /// `Microsoft.Network/publicIPAddresses`.
    PublicIpAddress, PublicIpAddressProperties { pub sku: Option<Sku>, pub zones: Option<Vec<String>>, }
);
arm_object!(PublicIpAddressProperties {
    #[serde(rename = "ipAddress")]
    pub ip_address: Option<String>,
    #[serde(rename = "publicIPAllocationMethod")]
    pub public_ip_allocation_method: Option<String>,
    #[serde(rename = "publicIPAddressVersion")]
    pub public_ip_address_version: Option<String>,
    pub dns_settings: Option<PublicIpDnsSettings>,
    pub ip_configuration: Option<SubResource>,
    pub provisioning_state: Option<String>,
});
arm_object!(PublicIpDnsSettings {
    pub domain_name_label: Option<String>,
    pub fqdn: Option<String>,
});
arm_object!(
    /// A SKU (`Standard`, `Premium_LRS`).
    Sku { pub name: Option<String>, pub tier: Option<String>, }
);

arm_resource!(
    /// `Microsoft.Network/networkInterfaces`.
    NetworkInterface, NetworkInterfaceProperties {}
);
arm_object!(NetworkInterfaceProperties {
    pub ip_configurations: Option<Vec<NetworkInterfaceIpConfiguration>>,
    pub virtual_machine: Option<SubResource>,
    pub mac_address: Option<String>,
    pub primary: Option<bool>,
    pub provisioning_state: Option<String>,
});
arm_resource!(
    /// One IP configuration of a network interface.
    NetworkInterfaceIpConfiguration, NetworkInterfaceIpConfigurationProperties {}
);
arm_object!(NetworkInterfaceIpConfigurationProperties {
    #[serde(rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    #[serde(rename = "privateIPAllocationMethod")]
    pub private_ip_allocation_method: Option<String>,
    pub subnet: Option<SubResource>,
    #[serde(rename = "publicIPAddress")]
    pub public_ip_address: Option<SubResource>,
    pub primary: Option<bool>,
    pub provisioning_state: Option<String>,
});

// ---- compute --------------------------------------------------------------------------------

arm_resource!(
    /// `Microsoft.Compute/virtualMachines`.
    VirtualMachine, VirtualMachineProperties { pub zones: Option<Vec<String>>, }
);
arm_object!(VirtualMachineProperties {
    pub hardware_profile: Option<HardwareProfile>,
    pub storage_profile: Option<StorageProfile>,
    pub network_profile: Option<NetworkProfile>,
    pub instance_view: Option<VirtualMachineInstanceView>,
    pub vm_id: Option<String>,
    pub provisioning_state: Option<String>,
});
arm_object!(HardwareProfile { pub vm_size: Option<String>, });
arm_object!(StorageProfile {
    pub os_disk: Option<Value>,
    pub image_reference: Option<Value>,
    pub data_disks: Option<Vec<DataDisk>>,
});
arm_object!(NetworkProfile { pub network_interfaces: Option<Vec<NetworkInterfaceReference>>, });
arm_object!(NetworkInterfaceReference {
    pub id: Option<String>,
    pub properties: Option<Value>,
});

/// A data disk in a VM's `storageProfile.dataDisks`. `lun` is required by ARM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching: Option<String>,
    #[serde(
        default,
        rename = "diskSizeGB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
    /// Set to true (in a PUT or PATCH of the VM) to detach this disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_be_detached: Option<bool>,
    /// `ForceDetach` detaches even when the guest does not release the disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

arm_object!(ManagedDiskParameters {
    pub id: Option<String>,
    pub storage_account_type: Option<String>,
});

arm_object!(
    /// What `GET .../virtualMachines/{vm}/instanceView` returns, and `$expand=instanceView` embeds.
    VirtualMachineInstanceView {
        pub computer_name: Option<String>,
        pub statuses: Option<Vec<InstanceViewStatus>>,
        pub disks: Option<Vec<Value>>,
    }
);
arm_object!(InstanceViewStatus {
    pub code: Option<String>,
    pub level: Option<String>,
    pub display_status: Option<String>,
    pub message: Option<String>,
    pub time: Option<String>,
});

impl VirtualMachineInstanceView {
    /// The power state without its prefix: `running`, `deallocated`, `stopped`, `deallocating`.
    pub fn power_state(&self) -> Option<&str> {
        self.statuses
            .iter()
            .flatten()
            .filter_map(|status| status.code.as_deref())
            .find_map(|code| code.strip_prefix("PowerState/"))
    }
}

arm_resource!(
    /// `Microsoft.Compute/disks` (a managed disk).
    Disk, DiskProperties {
        /// The VM the disk is attached to.
        pub managed_by: Option<String>,
        pub sku: Option<Sku>,
        pub zones: Option<Vec<String>>,
    }
);
arm_object!(DiskProperties {
    pub creation_data: Option<CreationData>,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    /// `Unattached`, `Attached`, `Reserved`, `ActiveSAS`...
    pub disk_state: Option<String>,
    pub time_created: Option<String>,
    pub unique_id: Option<String>,
    pub provisioning_state: Option<String>,
});
arm_object!(
    /// How a disk or snapshot was made (`diskRPCommon.json`'s `CreationData`): `Empty`, or
    /// `Copy` of the disk or snapshot at `sourceResourceId`, whose `uniqueId` ARM then reports
    /// as `sourceUniqueId`.
    CreationData {
        pub create_option: Option<String>,
        pub source_resource_id: Option<String>,
        /// Read-only: set by ARM.
        pub source_unique_id: Option<String>,
    }
);

arm_resource!(
    /// `Microsoft.Compute/snapshots` (a managed disk's snapshot, served by DiskRP like disks).
    Snapshot, SnapshotProperties {
        /// `Standard_LRS`, `Premium_LRS` or `Standard_ZRS`; `tier` is read-only.
        pub sku: Option<Sku>,
        /// Read-only, "Unused. Always Null." (snapshot.json).
        pub managed_by: Option<String>,
    }
);
arm_object!(SnapshotProperties {
    pub creation_data: Option<CreationData>,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub disk_size_bytes: Option<i64>,
    /// Only the blocks changed since the disk's previous snapshot are stored.
    pub incremental: Option<bool>,
    /// Read-only: the incremental snapshots of one disk share it.
    pub incremental_snapshot_family_id: Option<String>,
    pub time_created: Option<String>,
    pub unique_id: Option<String>,
    pub provisioning_state: Option<String>,
});

impl Snapshot {
    /// Whether the snapshot carries tag `key` with exactly `value`.
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.tags
            .as_ref()
            .and_then(|tags| tags.get(key))
            .is_some_and(|found| found == value)
    }
}

// ---- AKS --------------------------------------------------------------------------------------

arm_resource!(
    /// `Microsoft.ContainerService/managedClusters`.
    ManagedCluster, ManagedClusterProperties { pub sku: Option<Sku>, pub identity: Option<Value>, }
);
arm_object!(ManagedClusterProperties {
    pub provisioning_state: Option<String>,
    pub power_state: Option<PowerState>,
    pub kubernetes_version: Option<String>,
    pub dns_prefix: Option<String>,
    pub fqdn: Option<String>,
    #[serde(rename = "azurePortalFQDN")]
    pub azure_portal_fqdn: Option<String>,
    pub node_resource_group: Option<String>,
    pub agent_pool_profiles: Option<Vec<AgentPoolProfile>>,
});
arm_object!(PowerState { pub code: Option<String>, });
arm_object!(AgentPoolProfile {
    pub name: Option<String>,
    pub count: Option<i64>,
    pub vm_size: Option<String>,
    pub mode: Option<String>,
});

/// What `listClusterUserCredential` returns: kubeconfigs, kept out of Debug output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialResults {
    #[serde(default)]
    pub kubeconfigs: Vec<CredentialResult>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// One kubeconfig, base64-encoded as ARM sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialResult {
    #[serde(default)]
    pub name: String,
    pub value: SecretText,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// A string that is a secret (a kubeconfig holds a bearer token): serialised as itself,
/// printed as `[redacted]`.
#[derive(Clone, Default, PartialEq)]
pub struct SecretText(pub String);

impl SecretText {
    pub fn to_secret(&self) -> ferry_core::Secret {
        ferry_core::Secret::new(self.0.clone())
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretText)
    }
}

// ---- DNS --------------------------------------------------------------------------------------

arm_resource!(
    /// `Microsoft.Network/dnsZones`.
    DnsZone, DnsZoneProperties {}
);
arm_object!(DnsZoneProperties {
    pub max_number_of_record_sets: Option<i64>,
    pub number_of_record_sets: Option<i64>,
    pub name_servers: Option<Vec<String>>,
    pub zone_type: Option<String>,
    pub provisioning_state: Option<String>,
});

arm_resource!(
    /// `Microsoft.Network/dnsZones/{A,AAAA,CNAME,TXT,...}` record sets.
    RecordSet, RecordSetProperties {}
);
arm_object!(RecordSetProperties {
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "TTL")]
    pub ttl: Option<i64>,
    pub fqdn: Option<String>,
    #[serde(rename = "ARecords")]
    pub a_records: Option<Vec<ARecord>>,
    #[serde(rename = "AAAARecords")]
    pub aaaa_records: Option<Vec<AaaaRecord>>,
    #[serde(rename = "CNAMERecord")]
    pub cname_record: Option<CnameRecord>,
    #[serde(rename = "TXTRecords")]
    pub txt_records: Option<Vec<TxtRecord>>,
    pub provisioning_state: Option<String>,
});
arm_object!(ARecord { pub ipv4_address: Option<String>, });
arm_object!(AaaaRecord { pub ipv6_address: Option<String>, });
arm_object!(CnameRecord { pub cname: Option<String>, });
arm_object!(TxtRecord { pub value: Option<Vec<String>>, });

// ---- actions and envelopes ----------------------------------------------------------------

/// Body of `moveResources` and `validateMoveResources` on the source group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveResourcesRequest {
    /// Full ids of the resources to move, all in the source group.
    pub resources: Vec<String>,
    /// The id of the target group (`/subscriptions/{s}/resourceGroups/{g}`).
    pub target_resource_group: String,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// A page of a list: `value` and, when there are more, `nextLink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// The body that an `Azure-AsyncOperation` URL answers with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncOperationStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ArmErrorDetail>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// Where a provisioning state or operation status stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationPhase {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationPhase {
    /// Classifies a `status` or `provisioningState`; `None` for a word ferry does not know.
    pub fn classify(state: &str) -> Option<OperationPhase> {
        const IN_PROGRESS: &[&str] = &[
            "inprogress",
            "accepted",
            "running",
            "creating",
            "updating",
            "deleting",
            "provisioning",
            "upgrading",
            "scaling",
            "starting",
            "stopping",
            "migrating",
            "moving",
            "notstarted",
            "reconciling",
            "deallocating",
        ];
        let lower = state.to_ascii_lowercase();
        match lower.as_str() {
            "succeeded" => Some(OperationPhase::Succeeded),
            "failed" => Some(OperationPhase::Failed),
            "canceled" | "cancelled" => Some(OperationPhase::Canceled),
            other if IN_PROGRESS.contains(&other) => Some(OperationPhase::InProgress),
            _ => None,
        }
    }
}
