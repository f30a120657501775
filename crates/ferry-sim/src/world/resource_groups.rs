//! Resource groups: the group a request's resource lives in must exist, and a group keeps
//! the `managedBy` ARM set on it.

use serde_json::Value;

use super::ids::{lower, name_of};
use super::{Refusal, SimResponse, World};

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

pub(super) fn fill_resource_group_fields(body: &mut Value, previous: &Value) {
    if let Some(managed_by) = previous.get("managedBy")
        && body.get("managedBy").is_none()
    {
        body["managedBy"] = managed_by.clone();
    }
}
