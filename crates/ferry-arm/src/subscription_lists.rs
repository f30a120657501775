//! A subscription's lists across all its resource groups, filtered by one tag: `Resources -
//! List` (`GET /subscriptions/{id}/resources`) and `Resource Groups - List` (`GET
//! /subscriptions/{id}/resourcegroups`), each with `$filter=tagName eq 'k' and tagValue eq
//! 'v'` and followed through `nextLink`. A failover drill tags everything it makes
//! (`ferry-drill=ID`), so these two lists find what a drill left wherever it is, its state's
//! record or not, and prove its clean-up: both empty.
//!
//! ARM takes a tag filter only on its own: combined with a type, a group or a name it answers
//! `400 InvalidFilterInQueryString` (Azure/azure-rest-api-specs#21324), so the filter here
//! names the tag and nothing else. Resources filtered by a tag's name and value come back
//! without their tags ("the original tags for each resource will not be returned in the
//! results", `Resources_List` in Microsoft.Resources 2025-04-01's `resources.json`): what
//! the list answers is what carries the tag, and is not filtered again here.

use crate::client::ArmClient;
use crate::error::ArmError;
use crate::models::{GenericResource, ResourceGroup};
use crate::provider_calls::api_version;

/// What carries one tag in a subscription.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaggedInSubscription {
    /// Every resource carrying the tag, in any group.
    pub resources: Vec<GenericResource>,
    /// Every resource group carrying the tag.
    pub groups: Vec<ResourceGroup>,
}

impl TaggedInSubscription {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.groups.is_empty()
    }

    /// The ids of what carries the tag: the groups first, then the resources, as ARM listed
    /// them.
    pub fn ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter_map(|group| group.id.clone())
            .chain(
                self.resources
                    .iter()
                    .filter_map(|resource| resource.id.clone()),
            )
            .collect()
    }
}

/// The `$filter` for one tag: `tagName eq 'name' and tagValue eq 'value'`, each quote inside
/// doubled as OData writes it.
pub fn tag_filter(name: &str, value: &str) -> String {
    let quoted = |text: &str| text.replace('\'', "''");
    format!(
        "tagName eq '{}' and tagValue eq '{}'",
        quoted(name),
        quoted(value)
    )
}

/// The `$filter` for every value of one tag: `tagName eq 'name'` (the items keep their tags).
pub fn tag_name_filter(name: &str) -> String {
    format!("tagName eq '{}'", name.replace('\'', "''"))
}

impl ArmClient {
    /// Every resource group of `subscription` carrying the tag `name`, whatever its value,
    /// with its tags (ARM leaves them in when the filter names the tag alone).
    pub async fn resource_groups_with_tag(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Vec<ResourceGroup>, ArmError> {
        self.list_with_query(
            &format!("/subscriptions/{subscription}/resourcegroups"),
            api_version::RESOURCES,
            &[("$filter".to_owned(), tag_name_filter(name))],
        )
        .await
    }

    /// Every resource of `subscription` tagged `name` = `value`, in any group, every page
    /// read. A failure is an error, never an empty list.
    pub async fn resources_tagged(
        &self,
        subscription: &str,
        name: &str,
        value: &str,
    ) -> Result<Vec<GenericResource>, ArmError> {
        self.list_with_query(
            &format!("/subscriptions/{subscription}/resources"),
            api_version::RESOURCES,
            &[("$filter".to_owned(), tag_filter(name, value))],
        )
        .await
    }

    /// Every resource group of `subscription` tagged `name` = `value`, every page read.
    pub async fn resource_groups_tagged(
        &self,
        subscription: &str,
        name: &str,
        value: &str,
    ) -> Result<Vec<ResourceGroup>, ArmError> {
        self.list_with_query(
            &format!("/subscriptions/{subscription}/resourcegroups"),
            api_version::RESOURCES,
            &[("$filter".to_owned(), tag_filter(name, value))],
        )
        .await
    }

    /// Both lists: what carries the tag anywhere in `subscription`.
    pub async fn tagged_in_subscription(
        &self,
        subscription: &str,
        name: &str,
        value: &str,
    ) -> Result<TaggedInSubscription, ArmError> {
        let (groups, resources) = futures_util::try_join!(
            self.resource_groups_tagged(subscription, name, value),
            self.resources_tagged(subscription, name, value),
        )?;
        Ok(TaggedInSubscription { resources, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_filter_names_the_tag_and_nothing_else() {
        assert_eq!(
            tag_filter("ferry-drill", "20261207-121500"),
            "tagName eq 'ferry-drill' and tagValue eq '20261207-121500'"
        );
        assert_eq!(
            tag_filter("owner", "o'brien"),
            "tagName eq 'owner' and tagValue eq 'o''brien'"
        );
    }
}
