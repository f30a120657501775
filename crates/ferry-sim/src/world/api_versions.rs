//! The api-versions ARM accepts for each resource type the simulator serves, and ARM's answers
//! to a request it cannot route: an unknown namespace, an unknown resource type, an api-version
//! the type does not have.
//!
//! How ARM words them (each seen in the answers quoted by public issues):
//! - an api-version ARM itself cannot parse, or one a resource group route (`Microsoft.Resources`)
//!   does not have: `400 InvalidApiVersionParameter`, "The api-version '...' is invalid. The
//!   supported versions are '...'." (hashicorp/vault-plugin-secrets-azure#13, Azure/azure-cli#28038);
//! - a provider's type asked with a version it does not have, where ARM knows the location (a
//!   PUT's body, an existing resource): `400 NoRegisteredProviderFound`, "No registered resource
//!   provider found for location '...' and API version '...' for type '...'. The supported
//!   api-versions are '...'. The supported locations are '...'." (Azure/azure-cli#28496,
//!   kubernetes-sigs/azuredisk-csi-driver#2577);
//! - the same without a location (a read of what does not exist, a list): `404
//!   InvalidResourceType`, "The resource type '...' could not be found in the namespace '...'
//!   for api version '...'. The supported api-versions are '...'." (Azure/azure-sdk-for-js#15460);
//! - a type its namespace does not have: `404 InvalidResourceType`, without the list;
//! - a real namespace the subscription has not registered: `409 MissingSubscriptionRegistration`
//!   (the simulated subscription registered only the namespaces the simulator serves); a
//!   namespace Azure does not have: `400 InvalidResourceNamespace`, "The resource namespace '...'
//!   is invalid." (Azure/aci-connector-k8s#13).
//!
//! The operation URLs the simulator hands out (`Microsoft.Simulator`, and any under a provider's
//! `locations/`) accept any api-version, as a poller sends back whatever the URL carried.

use serde_json::Value;

use super::ids::lower;
use super::regions::AZURE_PUBLIC_REGIONS;
use super::{Refusal, SimRequest, SimResponse, World};

/// ARM's own versions (`Microsoft.Resources`): resource groups, their lists and moves.
const RESOURCES: &[&str] = &[
    "2025-04-01",
    "2025-03-01",
    "2024-11-01",
    "2024-08-01",
    "2024-07-01",
    "2024-06-01-preview",
    "2024-03-01",
    "2023-07-01",
    "2023-07-01-preview",
    "2023-03-01-preview",
    "2022-12-01",
    "2022-11-01-preview",
    "2022-09-01",
    "2022-06-01",
    "2022-05-01",
    "2022-03-01-preview",
    "2022-01-01",
    "2021-04-01",
    "2021-01-01",
    "2020-10-01",
    "2020-09-01",
    "2020-08-01",
    "2020-07-01",
    "2020-06-01",
    "2020-05-01",
    "2020-01-01",
    "2019-11-01",
    "2019-10-01",
    "2019-09-01",
    "2019-08-01",
    "2019-07-01",
    "2019-06-01",
    "2019-05-10",
    "2019-05-01",
    "2019-03-01",
    "2018-11-01",
    "2018-09-01",
    "2018-08-01",
    "2018-07-01",
    "2018-06-01",
    "2018-05-01",
    "2018-02-01",
    "2018-01-01",
    "2017-12-01",
    "2017-08-01",
    "2017-06-01",
    "2017-05-10",
    "2017-05-01",
    "2017-03-01",
    "2016-09-01",
    "2016-07-01",
    "2016-06-01",
    "2016-02-01",
    "2015-11-01",
    "2015-01-01",
    "2014-04-01-preview",
    "2014-04-01",
];

/// `Microsoft.Compute/virtualMachines` (ComputeRP's stable versions).
const VIRTUAL_MACHINES: &[&str] = &[
    // The defaults of Microsoft's Python SDKs pinned in tests/python-sdk/requirements.txt.
    "2026-04-01",
    "2025-04-01",
    "2024-11-01",
    "2024-07-01",
    "2024-03-01",
    "2023-09-01",
    "2023-07-01",
    "2023-03-01",
    "2022-11-01",
    "2022-08-01",
    "2022-03-01",
    "2021-11-01",
    "2021-07-01",
    "2021-04-01",
    "2021-03-01",
    "2020-12-01",
    "2020-06-01",
    "2019-12-01",
    "2019-07-01",
    "2019-03-01",
    "2018-10-01",
    "2018-06-01",
    "2018-04-01",
    "2017-12-01",
    "2017-03-30",
    "2016-08-30",
    "2016-03-30",
    "2015-06-15",
];

/// `Microsoft.Compute/disks` and `snapshots` (DiskRP's stable versions, which differ from
/// ComputeRP's).
const DISKS: &[&str] = &[
    // The defaults of Microsoft's Python SDKs pinned in tests/python-sdk/requirements.txt.
    "2026-03-02",
    "2025-01-02",
    "2024-03-02",
    "2023-10-02",
    "2023-04-02",
    "2023-01-02",
    "2022-07-02",
    "2022-03-02",
    "2021-12-01",
    "2021-08-01",
    "2021-04-01",
    "2020-12-01",
    "2020-09-30",
    "2020-06-30",
    "2020-05-01",
    "2019-11-01",
    "2019-07-01",
    "2019-03-01",
    "2018-09-30",
    "2018-06-01",
    "2018-04-01",
    "2017-03-30",
];

/// `Microsoft.Network`'s networks, subnets, interfaces, public IPs and load balancers.
const NETWORK: &[&str] = &[
    // The defaults of Microsoft's Python SDKs pinned in tests/python-sdk/requirements.txt.
    "2026-03-01",
    "2025-05-01",
    "2025-03-01",
    "2025-01-01",
    "2024-10-01",
    "2024-07-01",
    "2024-05-01",
    "2024-03-01",
    "2024-01-01",
    "2023-11-01",
    "2023-09-01",
    "2023-06-01",
    "2023-05-01",
    "2023-04-01",
    "2023-02-01",
    "2022-11-01",
    "2022-09-01",
    "2022-07-01",
    "2022-05-01",
    "2022-01-01",
    "2021-08-01",
    "2021-05-01",
    "2021-03-01",
    "2021-02-01",
    "2020-11-01",
    "2020-08-01",
    "2020-07-01",
    "2020-06-01",
    "2020-05-01",
    "2020-04-01",
    "2020-03-01",
    "2019-12-01",
    "2019-11-01",
    "2019-09-01",
    "2019-08-01",
    "2019-07-01",
    "2019-06-01",
    "2019-04-01",
    "2019-02-01",
    "2018-12-01",
];

/// `Microsoft.ContainerService/managedClusters`.
const MANAGED_CLUSTERS: &[&str] = &[
    // The defaults of Microsoft's Python SDKs pinned in tests/python-sdk/requirements.txt.
    "2026-08-01",
    "2026-05-01",
    "2025-10-01",
    "2025-08-01",
    "2025-07-01",
    "2025-05-01",
    "2025-04-01",
    "2025-03-01",
    "2025-02-01",
    "2025-01-01",
    "2024-10-01",
    "2024-09-01",
    "2024-08-01",
    "2024-07-01",
    "2024-06-01",
    "2024-05-01",
    "2024-02-01",
    "2024-01-01",
    "2023-11-01",
    "2023-10-01",
    "2023-09-01",
    "2023-08-01",
    "2023-07-01",
    "2023-06-01",
    "2023-05-01",
    "2023-04-01",
    "2023-03-01",
    "2023-02-01",
    "2023-01-01",
];

/// `Microsoft.Network/dnszones` and their record sets.
const DNS: &[&str] = &[
    "2023-07-01-preview",
    "2018-05-01",
    "2018-03-01-preview",
    "2017-10-01",
    "2017-09-01",
    "2016-04-01",
    "2015-05-04-preview",
];

/// The record types a zone's path may name (and `recordsets`, `all` for its lists).
const RECORD_TYPES: &[&str] = &[
    "a",
    "aaaa",
    "caa",
    "cname",
    "mx",
    "ns",
    "ptr",
    "soa",
    "srv",
    "txt",
    "recordsets",
    "all",
];

/// Each served type (namespace, then the type path below it, lower-cased) and its versions.
const RESOURCE_TYPES: &[(&str, &str, &[&str])] = &[
    ("microsoft.compute", "virtualmachines", VIRTUAL_MACHINES),
    ("microsoft.compute", "disks", DISKS),
    // snapshot.json sits beside disk.json in each of DiskRP's stable folders: the same versions.
    ("microsoft.compute", "snapshots", DISKS),
    // restorePoint.json is ComputeRP's; diskRestorePoint.json is DiskRP's.
    (
        "microsoft.compute",
        "restorepointcollections",
        VIRTUAL_MACHINES,
    ),
    (
        "microsoft.compute",
        "restorepointcollections/restorepoints",
        VIRTUAL_MACHINES,
    ),
    (
        "microsoft.compute",
        "restorepointcollections/restorepoints/diskrestorepoints",
        DISKS,
    ),
    ("microsoft.network", "virtualnetworks", NETWORK),
    ("microsoft.network", "virtualnetworks/subnets", NETWORK),
    ("microsoft.network", "networkinterfaces", NETWORK),
    ("microsoft.network", "publicipaddresses", NETWORK),
    ("microsoft.network", "loadbalancers", NETWORK),
    // A load balancer's sub-resources, read from its body (`load_balancers`).
    (
        "microsoft.network",
        "loadbalancers/frontendipconfigurations",
        NETWORK,
    ),
    (
        "microsoft.network",
        "loadbalancers/backendaddresspools",
        NETWORK,
    ),
    (
        "microsoft.network",
        "loadbalancers/loadbalancingrules",
        NETWORK,
    ),
    ("microsoft.network", "loadbalancers/probes", NETWORK),
    ("microsoft.network", "dnszones", DNS),
    (
        "microsoft.containerservice",
        "managedclusters",
        MANAGED_CLUSTERS,
    ),
];

/// Real namespaces the simulated subscription never registered: ARM knows them, and refuses.
const UNREGISTERED_NAMESPACES: &[&str] = &[
    "microsoft.storage",
    "microsoft.keyvault",
    "microsoft.managedidentity",
    "microsoft.insights",
    "microsoft.operationalinsights",
    "microsoft.containerregistry",
    "microsoft.web",
    "microsoft.sql",
    "microsoft.dbforpostgresql",
    "microsoft.authorization",
];

/// The versions of a type path below its namespace (`virtualnetworks/subnets`,
/// `dnszones/txt`), if the simulator serves it.
fn versions_of(namespace: &str, type_path: &str) -> Option<&'static [&'static str]> {
    let namespace = lower(namespace);
    let type_path = lower(type_path);
    if namespace == "microsoft.network"
        && let Some(record_type) = type_path.strip_prefix("dnszones/")
    {
        return RECORD_TYPES.contains(&record_type).then_some(DNS);
    }
    RESOURCE_TYPES
        .iter()
        .find(|(known_namespace, known_type, _)| {
            *known_namespace == namespace && *known_type == type_path
        })
        .map(|(_, _, versions)| *versions)
}

fn namespace_is_served(namespace: &str) -> bool {
    let namespace = lower(namespace);
    RESOURCE_TYPES
        .iter()
        .any(|(known_namespace, _, _)| *known_namespace == namespace)
}

/// `2025-04-01` or `2024-06-01-preview`: the shape ARM parses before it looks further.
fn is_well_formed(api_version: &str) -> bool {
    let Some(date) = api_version.get(..10) else {
        return false;
    };
    let suffix = &api_version[10..];
    let date_in_place = date.char_indices().all(|(index, character)| match index {
        4 | 7 => character == '-',
        _ => character.is_ascii_digit(),
    });
    date_in_place && (suffix.is_empty() || suffix.len() > 1 && suffix.starts_with('-'))
}

fn invalid_api_version(api_version: &str, supported: &[&str]) -> Refusal {
    SimResponse::error(
        400,
        "InvalidApiVersionParameter",
        format!(
            "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
            supported.join(",")
        ),
    )
}

/// What a provider route names: its namespace, its type path below the namespace, and the id
/// of the resource it is about (itself, or the one an action or a child list belongs to).
struct ProviderRoute {
    namespace: String,
    type_path: String,
    resource_id: Option<String>,
}

/// Reads a route below `providers/` (at subscription or group scope). `providers_at` is the
/// index of the `providers` segment.
fn provider_route(segments: &[&str], providers_at: usize) -> Option<ProviderRoute> {
    let namespace = segments.get(providers_at + 1)?.to_string();
    let below = &segments[providers_at + 2..];
    if below.is_empty() {
        return None;
    }
    let types: Vec<&str> = below.iter().step_by(2).copied().collect();
    let whole = |types: &[&str]| types.join("/");
    let resource_id = |count: usize| -> Option<String> {
        (count >= providers_at + 4).then(|| format!("/{}", segments[..count].join("/")))
    };
    if below.len().is_multiple_of(2) {
        return Some(ProviderRoute {
            namespace,
            type_path: whole(&types),
            resource_id: resource_id(segments.len()),
        });
    }
    // An odd count ends with a collection of a child type, or an action on a resource.
    let parent_types = &types[..types.len() - 1];
    let parent_id = resource_id(segments.len() - 1);
    if parent_types.is_empty() || versions_of(&namespace, &whole(&types)).is_some() {
        return Some(ProviderRoute {
            namespace,
            type_path: whole(&types),
            resource_id: parent_id,
        });
    }
    Some(ProviderRoute {
        namespace,
        type_path: whole(parent_types),
        resource_id: parent_id,
    })
}

impl World {
    /// Refuses a request whose namespace, resource type or api-version ARM would not route.
    pub(super) fn check_route_and_api_version(
        &self,
        request: &SimRequest,
        segments: &[&str],
    ) -> Result<(), Refusal> {
        let api_version = request.query_value("api-version").unwrap_or_default();
        let lowered: Vec<String> = segments.iter().map(|segment| lower(segment)).collect();
        let providers_at = match lowered.get(2).map(String::as_str) {
            Some("providers") => 2,
            Some("resourcegroups") if lowered.get(4).map(String::as_str) == Some("providers") => 4,
            Some("resourcegroups") if segments.len() <= 5 => {
                return if RESOURCES.contains(&api_version) {
                    Ok(())
                } else {
                    Err(invalid_api_version(api_version, RESOURCES))
                };
            }
            Some("resources") if segments.len() == 3 => {
                return if RESOURCES.contains(&api_version) {
                    Ok(())
                } else {
                    Err(invalid_api_version(api_version, RESOURCES))
                };
            }
            _ => return Ok(()),
        };
        // The simulator's own operation URLs, ARM's own namespace, and location-scoped routes
        // (operation statuses, sizes by region) are left to the routes that serve them.
        let namespace = lowered.get(providers_at + 1).map(String::as_str);
        if matches!(
            namespace,
            Some("microsoft.simulator" | "microsoft.resources")
        ) || lowered.get(providers_at + 2).map(String::as_str) == Some("locations")
        {
            return Ok(());
        }
        let Some(route) = provider_route(segments, providers_at) else {
            return Ok(());
        };
        if !namespace_is_served(&route.namespace) {
            return Err(self.unknown_namespace(&route.namespace));
        }
        let Some(versions) = versions_of(&route.namespace, &route.type_path) else {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!(
                    "The resource type '{}' could not be found in the namespace '{}' for api version '{api_version}'.",
                    route.type_path, route.namespace
                ),
            ));
        };
        if versions.contains(&api_version) {
            return Ok(());
        }
        if !is_well_formed(api_version) {
            return Err(invalid_api_version(api_version, RESOURCES));
        }
        match self.location_for(request, route.resource_id.as_deref()) {
            Some(location) => Err(SimResponse::error(
                400,
                "NoRegisteredProviderFound",
                format!(
                    "No registered resource provider found for location '{location}' and API version '{api_version}' for type '{}'. The supported api-versions are '{}'. The supported locations are '{}'.",
                    route.type_path,
                    versions.join(", "),
                    AZURE_PUBLIC_REGIONS.join(", ")
                ),
            )),
            None => Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!(
                    "The resource type '{}' could not be found in the namespace '{}' for api version '{api_version}'. The supported api-versions are '{}'.",
                    route.type_path,
                    route.namespace,
                    versions.join(", ")
                ),
            )),
        }
    }

    fn unknown_namespace(&self, namespace: &str) -> Refusal {
        if UNREGISTERED_NAMESPACES.contains(&lower(namespace).as_str()) {
            let message = format!(
                "The subscription is not registered to use namespace '{namespace}'. See https://aka.ms/rps-not-found for how to register subscriptions."
            );
            return SimResponse::json(
                409,
                &serde_json::json!({"error": {
                    "code": "MissingSubscriptionRegistration",
                    "message": message,
                    "details": [{"code": "MissingSubscriptionRegistration", "target": namespace, "message": message}],
                }}),
            );
        }
        SimResponse::error(
            400,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        )
    }

    /// The location ARM would route by: a write's body, else the resource (or its parent) as
    /// stored.
    fn location_for(&self, request: &SimRequest, resource_id: Option<&str>) -> Option<String> {
        if matches!(request.method.as_str(), "PUT" | "PATCH")
            && let Ok(body) = serde_json::from_slice::<Value>(&request.body)
            && let Some(location) = body.get("location").and_then(Value::as_str)
        {
            return Some(location.to_owned());
        }
        let mut id = resource_id?.to_owned();
        loop {
            if let Some(location) = self
                .resources
                .get(&lower(&id))
                .and_then(|stored| stored.body.get("location"))
                .and_then(Value::as_str)
            {
                return Some(location.to_owned());
            }
            // A child without a location of its own (a subnet, a record set) is routed by
            // its parent's.
            let (parent, _) = id.rsplit_once('/')?;
            let (parent, _) = parent.rsplit_once('/')?;
            if !lower(parent).contains("/providers/") {
                return None;
            }
            id = parent.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferry_s_own_api_versions_are_accepted() {
        // crates/ferry-arm/src/provider_calls.rs, `api_version`.
        for (namespace, type_path, version) in [
            ("Microsoft.Compute", "virtualMachines", "2025-04-01"),
            ("Microsoft.Compute", "disks", "2025-01-02"),
            ("Microsoft.Compute", "snapshots", "2025-01-02"),
            ("Microsoft.Network", "virtualNetworks", "2025-03-01"),
            ("Microsoft.Network", "virtualNetworks/subnets", "2025-03-01"),
            ("Microsoft.Network", "networkInterfaces", "2025-03-01"),
            ("Microsoft.Network", "publicIPAddresses", "2025-01-01"),
            ("Microsoft.Network", "dnsZones", "2018-05-01"),
            ("Microsoft.Network", "dnsZones/TXT", "2018-05-01"),
            (
                "Microsoft.ContainerService",
                "managedClusters",
                "2026-05-01",
            ),
        ] {
            assert!(
                versions_of(namespace, type_path)
                    .is_some_and(|versions| versions.contains(&version)),
                "{namespace}/{type_path} {version}"
            );
        }
        assert!(RESOURCES.contains(&"2025-04-01"));
    }

    #[test]
    fn well_formed_versions_are_dates_with_an_optional_suffix() {
        for good in ["2025-04-01", "2024-06-01-preview", "1999-01-01"] {
            assert!(is_well_formed(good), "{good}");
        }
        for bad in [
            "not-a-version",
            "2025-4-01",
            "2025-04-01-",
            "",
            "20250401",
            "2025-04-0a",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn routes_name_their_type_and_resource() {
        let path = "subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/deallocate";
        let segments: Vec<&str> = path.split('/').collect();
        let route = provider_route(&segments, 4).unwrap();
        assert_eq!(route.type_path, "virtualMachines");
        assert_eq!(
            route.resource_id.as_deref(),
            Some(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm"
            )
        );
        let path = "subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets";
        let segments: Vec<&str> = path.split('/').collect();
        assert_eq!(
            provider_route(&segments, 4).unwrap().type_path,
            "virtualNetworks/subnets"
        );
        let path = "subscriptions/s/providers/Microsoft.Compute/disks";
        let segments: Vec<&str> = path.split('/').collect();
        let route = provider_route(&segments, 2).unwrap();
        assert_eq!(route.type_path, "disks");
        assert_eq!(route.resource_id, None);
    }
}
