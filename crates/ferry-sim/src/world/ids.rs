//! Resource ids and paths: the group, name, type and subscription an id holds, and the
//! `Kind` of ARM type it names.

pub(super) fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

pub(super) fn group_id_of(id: &str) -> Option<String> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    if segments.len() >= 4 && segments[2].eq_ignore_ascii_case("resourcegroups") {
        Some(format!(
            "/subscriptions/{}/resourceGroups/{}",
            segments[1], segments[3]
        ))
    } else {
        None
    }
}

pub(super) fn name_of(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `Microsoft.Compute/virtualMachines` for a resource id, `Microsoft.Resources/resourceGroups` for a group.
pub(super) fn type_of(id: &str) -> String {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    match segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("providers"))
    {
        Some(position) if segments.len() > position + 2 => {
            let mut full = segments[position + 1].to_owned();
            let rest = &segments[position + 2..];
            let dns_record = rest.len() >= 3 && rest[0].eq_ignore_ascii_case("dnszones");
            for (index, pair) in rest.chunks(2).enumerate() {
                // Record set types read `Microsoft.Network/dnszones/A`.
                if !(dns_record && index == 1) {
                    full.push('/');
                }
                if dns_record && index == 1 {
                    full.push('/');
                }
                full.push_str(pair[0]);
            }
            full
        }
        _ => "Microsoft.Resources/resourceGroups".to_owned(),
    }
}

/// The ARM types the simulator serves, each with its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Group,
    VirtualNetwork,
    Subnet,
    PublicIp,
    NetworkInterface,
    LoadBalancer,
    VirtualMachine,
    Disk,
    Snapshot,
    RestorePointCollection,
    RestorePoint,
    DiskRestorePoint,
    ManagedCluster,
    DnsZone,
    RecordSet,
    Other,
}

/// The ARM type an id names; adding a type starts here.
pub(super) fn kind_of(id: &str) -> Kind {
    let resource_type = lower(&type_of(id));
    match resource_type.as_str() {
        "microsoft.resources/resourcegroups" => Kind::Group,
        "microsoft.network/virtualnetworks" => Kind::VirtualNetwork,
        "microsoft.network/virtualnetworks/subnets" => Kind::Subnet,
        "microsoft.network/publicipaddresses" => Kind::PublicIp,
        "microsoft.network/networkinterfaces" => Kind::NetworkInterface,
        "microsoft.network/loadbalancers" => Kind::LoadBalancer,
        "microsoft.compute/virtualmachines" => Kind::VirtualMachine,
        "microsoft.compute/disks" => Kind::Disk,
        "microsoft.compute/snapshots" => Kind::Snapshot,
        "microsoft.compute/restorepointcollections" => Kind::RestorePointCollection,
        "microsoft.compute/restorepointcollections/restorepoints" => Kind::RestorePoint,
        "microsoft.compute/restorepointcollections/restorepoints/diskrestorepoints" => {
            Kind::DiskRestorePoint
        }
        "microsoft.containerservice/managedclusters" => Kind::ManagedCluster,
        "microsoft.network/dnszones" => Kind::DnsZone,
        other if other.starts_with("microsoft.network/dnszones/") => Kind::RecordSet,
        _ => Kind::Other,
    }
}

pub(super) fn subscription_of(id: &str) -> String {
    id.trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn group_name(id: &str) -> String {
    id.trim_matches('/')
        .split('/')
        .nth(3)
        .unwrap_or_default()
        .to_owned()
}

/// Whether a kind is Microsoft.Network's (not DNS): its provisioning states, its busy answer.
pub(super) fn is_network_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::VirtualNetwork
            | Kind::Subnet
            | Kind::PublicIp
            | Kind::NetworkInterface
            | Kind::LoadBalancer
    )
}

pub(super) fn type_and_name(id: &str) -> String {
    format!("{}/{}", type_of(id), name_of(id))
}

/// The name `OperationDurations::duration_for` knows a kind's operations by.
pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "group",
        Kind::VirtualNetwork
        | Kind::Subnet
        | Kind::PublicIp
        | Kind::NetworkInterface
        | Kind::LoadBalancer => "network",
        Kind::VirtualMachine => "vm",
        // A snapshot takes what a disk's create takes (`OperationDurations::disk_create`).
        Kind::Disk | Kind::Snapshot => "disk",
        // A restore point copies disks as a snapshot does.
        Kind::RestorePointCollection | Kind::RestorePoint | Kind::DiskRestorePoint => "disk",
        Kind::ManagedCluster => "aks",
        Kind::DnsZone | Kind::RecordSet => "dns",
        Kind::Other => "other",
    }
}
