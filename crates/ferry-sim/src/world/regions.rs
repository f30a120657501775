//! Azure's public regions, and the answers ARM gives for a location it does not serve: an
//! unknown region for a group or a resource, and a PUT that would move an existing group or
//! resource to another region.
//!
//! ARM compares locations by their normalised name: lower case, spaces removed, so
//! `West Europe` is `westeurope`. The list is the regions where a resource group can be
//! created (as `LocationNotAvailableForResourceGroup` lists them, Azure/azure-cli#16368 and
//! MicrosoftDocs/executable-docs#74), with the newer regions opened since. A test world that
//! deliberately needs a region Azure does not have names it in
//! `WorldSettings::extra_regions`.

use serde_json::Value;

use super::ids::{Kind, group_name, kind_of, name_of, type_of};
use super::{Refusal, SimResponse, World};

/// Azure's public regions, normalised, as resource groups accept them.
pub(super) const AZURE_PUBLIC_REGIONS: &[&str] = &[
    "eastasia",
    "southeastasia",
    "australiaeast",
    "australiasoutheast",
    "australiacentral",
    "australiacentral2",
    "brazilsouth",
    "canadacentral",
    "canadaeast",
    "switzerlandnorth",
    "germanywestcentral",
    "eastus",
    "eastus2",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westcentralus",
    "westus",
    "westus2",
    "westus3",
    "francecentral",
    "uksouth",
    "ukwest",
    "centralindia",
    "southindia",
    "westindia",
    "jioindiawest",
    "italynorth",
    "japaneast",
    "japanwest",
    "koreacentral",
    "koreasouth",
    "mexicocentral",
    "northeurope",
    "westeurope",
    "norwayeast",
    "polandcentral",
    "qatarcentral",
    "spaincentral",
    "swedencentral",
    "uaenorth",
    "southafricanorth",
    "israelcentral",
    "newzealandnorth",
    "indonesiacentral",
    "malaysiawest",
    "chilecentral",
];

/// The one location of DNS zones and their record sets.
const GLOBAL: &str = "global";

/// A location as ARM compares it: `West Europe` is `westeurope`.
pub(super) fn normalise_location(location: &str) -> String {
    location
        .chars()
        .filter(|character| !character.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn location_of(body: &Value) -> Option<&str> {
    body.get("location").and_then(Value::as_str)
}

impl World {
    /// The regions this world serves: Azure's, and the settings' extra ones.
    fn available_regions(&self) -> Vec<String> {
        AZURE_PUBLIC_REGIONS
            .iter()
            .map(|region| (*region).to_owned())
            .chain(
                self.settings
                    .extra_regions
                    .iter()
                    .map(|region| normalise_location(region)),
            )
            .collect()
    }

    /// Refuses a location ARM does not serve for this kind: a region that does not exist, or
    /// a region for a global type (and `global` for a regional one).
    pub(super) fn check_location_available(&self, id: &str, body: &Value) -> Result<(), Refusal> {
        let Some(location) = location_of(body) else {
            return Ok(());
        };
        let kind = kind_of(id);
        // A subnet or a record set is a proxy resource: ARM tracks no location of its own.
        if matches!(kind, Kind::Subnet | Kind::RecordSet | Kind::Other) {
            return Ok(());
        }
        let normalised = normalise_location(location);
        let available = if kind == Kind::DnsZone {
            vec![GLOBAL.to_owned()]
        } else {
            self.available_regions()
        };
        if available.contains(&normalised) {
            return Ok(());
        }
        if kind == Kind::Group {
            return Err(SimResponse::error(
                400,
                "LocationNotAvailableForResourceGroup",
                format!(
                    "The provided location '{location}' is not available for resource group. List of available regions is '{}'.",
                    available.join(",")
                ),
            ));
        }
        Err(SimResponse::error(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}'. List of available regions for the resource type is '{}'.",
                type_of(id),
                available.join(",")
            ),
        ))
    }
}

/// Refuses a PUT that gives an existing group or resource another location: ARM never moves
/// one between regions (Azure/azure-cli#22242 for groups, MicrosoftDocs/azure-docs#70422 for
/// resources).
pub(super) fn check_location_unchanged(
    id: &str,
    existing: &Value,
    incoming: &Value,
) -> Result<(), Refusal> {
    let (Some(before), Some(after)) = (location_of(existing), location_of(incoming)) else {
        return Ok(());
    };
    if normalise_location(before) == normalise_location(after) {
        return Ok(());
    }
    if kind_of(id) == Kind::Group {
        return Err(SimResponse::error(
            409,
            "InvalidResourceGroupLocation",
            format!(
                "Invalid resource group location '{after}'. The Resource group already exists in location '{before}'."
            ),
        ));
    }
    Err(SimResponse::error(
        409,
        "InvalidResourceLocation",
        format!(
            "The resource '{}' already exists in location '{before}' in resource group '{}'. A resource with the same name cannot be created in location '{after}'. Please select a new resource name.",
            name_of(id),
            group_name(id)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_compare_as_arm_normalises_them() {
        assert_eq!(normalise_location("West Europe"), "westeurope");
        assert_eq!(normalise_location("westeurope"), "westeurope");
        assert_eq!(normalise_location(" East US 2 "), "eastus2");
    }

    #[test]
    fn every_region_is_written_normalised_and_once() {
        let mut seen = std::collections::BTreeSet::new();
        for region in AZURE_PUBLIC_REGIONS {
            assert_eq!(normalise_location(region), *region);
            assert!(seen.insert(*region), "{region} is listed twice");
        }
    }
}
