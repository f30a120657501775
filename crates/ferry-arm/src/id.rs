//! Azure resource ids: parsed once, compared case-insensitively as ARM requires.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a string is not a resource id ferry can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceIdError {
    #[error(
        "resource id `{id}` must start with /subscriptions/{{subscription}}: copy the full `id` field that Azure returned"
    )]
    MissingSubscription { id: String },
    #[error(
        "resource id `{id}` has an empty segment at position {position}: remove the doubled `/`"
    )]
    EmptySegment { id: String, position: usize },
    #[error(
        "resource id `{id}` has a type `{segment}` without a name after it: ids alternate type and name"
    )]
    OddSegments { id: String, segment: String },
}

/// A parsed ARM resource id such as
/// `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1`.
///
/// Equality and hashing ignore ASCII case, because ARM treats ids case-insensitively and
/// returns them in whatever case the resource was created with (`resourcegroups` and
/// `resourceGroups` both appear in real responses).
#[derive(Clone)]
pub struct ResourceId {
    text: String,
    segments: Vec<String>,
}

impl ResourceId {
    pub fn parse(text: &str) -> Result<Self, ResourceIdError> {
        let trimmed = text.trim_end_matches('/');
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Err(ResourceIdError::MissingSubscription {
                id: text.to_owned(),
            });
        };
        let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
        if let Some(position) = segments.iter().position(String::is_empty) {
            return Err(ResourceIdError::EmptySegment {
                id: text.to_owned(),
                position,
            });
        }
        if segments.len() < 2 || !segments[0].eq_ignore_ascii_case("subscriptions") {
            return Err(ResourceIdError::MissingSubscription {
                id: text.to_owned(),
            });
        }
        let id = ResourceId {
            text: trimmed.to_owned(),
            segments,
        };
        if id
            .segments
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case("providers"))
        {
            return Err(ResourceIdError::OddSegments {
                id: text.to_owned(),
                segment: "providers".to_owned(),
            });
        }
        // After `providers/{namespace}` the rest alternates type/name; a trailing type
        // without a name is a collection path, not a resource id.
        let pairs = id.type_name_pairs();
        if let Some((kind, name)) = pairs.last()
            && name.is_empty()
        {
            return Err(ResourceIdError::OddSegments {
                id: text.to_owned(),
                segment: kind.clone(),
            });
        }
        Ok(id)
    }

    /// The id of a resource group.
    pub fn resource_group(subscription_id: &str, resource_group: &str) -> Self {
        Self::from_trusted(format!(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        ))
    }

    /// The id of a resource directly under a provider namespace in a group, for example
    /// `ResourceId::provider_resource("s", "rg", "Microsoft.Compute", "disks", "d1")`.
    pub fn provider_resource(
        subscription_id: &str,
        resource_group: &str,
        namespace: &str,
        resource_type: &str,
        name: &str,
    ) -> Self {
        Self::from_trusted(format!(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{namespace}/{resource_type}/{name}"
        ))
    }

    fn from_trusted(text: String) -> Self {
        let segments = text
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        ResourceId { text, segments }
    }

    /// A child resource or collection below this one (`child("subnets", "default")`).
    pub fn child(&self, resource_type: &str, name: &str) -> Self {
        Self::from_trusted(format!("{}/{resource_type}/{name}", self.text))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn subscription_id(&self) -> &str {
        &self.segments[1]
    }

    pub fn resource_group_name(&self) -> Option<&str> {
        match self.segments.get(2) {
            Some(segment) if segment.eq_ignore_ascii_case("resourceGroups") => {
                self.segments.get(3).map(String::as_str)
            }
            _ => None,
        }
    }

    /// The id of the group that holds this resource (or the group itself).
    pub fn resource_group_id(&self) -> Option<ResourceId> {
        let group = self.resource_group_name()?;
        Some(Self::resource_group(self.subscription_id(), group))
    }

    /// The provider namespace, such as `Microsoft.Compute`.
    pub fn namespace(&self) -> Option<&str> {
        let position = self
            .segments
            .iter()
            .position(|segment| segment.eq_ignore_ascii_case("providers"))?;
        self.segments.get(position + 1).map(String::as_str)
    }

    /// The type and name pairs after the namespace: `[("virtualNetworks", "v"), ("subnets", "s")]`.
    pub fn type_name_pairs(&self) -> Vec<(String, String)> {
        let Some(position) = self
            .segments
            .iter()
            .position(|segment| segment.eq_ignore_ascii_case("providers"))
        else {
            return Vec::new();
        };
        // `.../providers` or `.../providers/{namespace}` alone has no pairs (and `parse`
        // refuses the first); slicing past the end would panic on such an id.
        self.segments
            .get(position + 2..)
            .unwrap_or_default()
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
            .collect()
    }

    /// The full type, such as `Microsoft.Network/virtualNetworks/subnets`, or
    /// `Microsoft.Resources/resourceGroups` for a group.
    pub fn resource_type(&self) -> String {
        match self.namespace() {
            Some(namespace) => {
                let mut full = namespace.to_owned();
                for (kind, _) in self.type_name_pairs() {
                    full.push('/');
                    full.push_str(&kind);
                }
                full
            }
            None if self.resource_group_name().is_some() => {
                "Microsoft.Resources/resourceGroups".to_owned()
            }
            None => "Microsoft.Resources/subscriptions".to_owned(),
        }
    }

    /// The last name in the id.
    pub fn name(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or_default()
    }

    /// The same resource in another group (what `moveResources` does to an id).
    pub fn in_resource_group(&self, resource_group: &str) -> ResourceId {
        let mut segments = self.segments.clone();
        if segments.len() > 3 && segments[2].eq_ignore_ascii_case("resourceGroups") {
            segments[3] = resource_group.to_owned();
        }
        Self::from_trusted(format!("/{}", segments.join("/")))
    }

    /// The id lower-cased, for use as a map key by code that cannot use `ResourceId` itself.
    pub fn normalized(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for byte in self.text.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.text)
    }
}

impl std::str::FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_ignoring_case() {
        let upper = ResourceId::parse(
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/disks/D1",
        )
        .unwrap();
        let lower = ResourceId::parse(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/disks/d1/",
        )
        .unwrap();
        assert_eq!(upper, lower);
        let mut set = std::collections::HashSet::new();
        set.insert(upper.clone());
        assert!(set.contains(&lower));
        assert_eq!(upper.resource_group_name(), Some("RG"));
        assert_eq!(upper.resource_type(), "Microsoft.Compute/disks");
        assert_eq!(upper.name(), "D1");
    }

    #[test]
    fn child_types_and_moves() {
        let subnet = ResourceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default",
        )
        .unwrap();
        assert_eq!(
            subnet.resource_type(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert_eq!(
            subnet.in_resource_group("other").as_str(),
            "/subscriptions/s/resourceGroups/other/providers/Microsoft.Network/virtualNetworks/v/subnets/default"
        );
        let group = ResourceId::parse("/subscriptions/s/resourcegroups/rg").unwrap();
        assert_eq!(group.resource_type(), "Microsoft.Resources/resourceGroups");
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        let messages: Vec<String> = [
            "subscriptions/s",
            "/tenants/t",
            "/subscriptions//resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks",
        ]
        .iter()
        .map(|text| ResourceId::parse(text).unwrap_err().to_string())
        .collect();
        insta::assert_snapshot!(messages.join("\n"));
    }
}
