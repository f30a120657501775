//! Resource groups: the group a request's resource lives in must exist and must not be
//! being deleted, and a group keeps the `managedBy` ARM set on it.

use serde_json::Value;

use super::ids::{group_id_of, lower, name_of};
use super::{Refusal, SimRequest, SimResponse, World};

impl World {
    pub(super) fn require_group(&self, group_id: &str) -> Result<(), Refusal> {
        if self.resources.contains_key(&lower(group_id)) {
            Ok(())
        } else {
            Err(SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", name_of(group_id)),
            ))
        }
    }
}

impl World {
    /// Refuses a write into a group whose deletion has started, as ARM does (`409
    /// ResourceGroupBeingDeleted`, "...is in deprovisioning state...": Azure/azure-cli#21121,
    /// #28679). A read goes through and shows the group `Deleting`; a DELETE of the group itself
    /// is accepted again.
    pub(super) fn require_group_not_deleting(
        &self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(), Refusal> {
        if matches!(request.method.as_str(), "GET" | "HEAD") {
            return Ok(());
        }
        let Some(group) = group_id_of(id) else {
            return Ok(());
        };
        if request.method == "DELETE" && group.eq_ignore_ascii_case(id.trim_end_matches('/')) {
            return Ok(());
        }
        let deleting = self.resources.get(&lower(&group)).is_some_and(|stored| {
            stored
                .body
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                == Some("Deleting")
        });
        if deleting {
            return Err(SimResponse::error(
                409,
                "ResourceGroupBeingDeleted",
                format!(
                    "The resource group '{}' is in deprovisioning state and cannot perform this operation.",
                    name_of(&group)
                ),
            ));
        }
        Ok(())
    }
}

pub(super) fn fill_resource_group_fields(body: &mut Value, previous: &Value) {
    if let Some(managed_by) = previous.get("managedBy")
        && body.get("managedBy").is_none()
    {
        body["managedBy"] = managed_by.clone();
    }
}
