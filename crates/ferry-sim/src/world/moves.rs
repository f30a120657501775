//! Moves between resource groups: ARM's checks, the lock a move holds on both groups until it
//! ends, and the new ids of what moved, rewritten wherever they are referenced.

use std::time::Duration;

use serde_json::Value;

use super::ids::{Kind, group_id_of, kind_of, lower, name_of, subscription_of};
use super::operations::Completion;
use super::{Refusal, SimRequest, SimResponse, World};

impl World {
    /// Refuses a write inside a group that a move locks, as ARM does (`409 ScopeLocked`).
    pub(super) fn require_unlocked(&self, id: &str) -> Result<(), Refusal> {
        let group = group_id_of(id).unwrap_or_default();
        if self.locked_groups.contains_key(&lower(&group)) {
            return Err(SimResponse::error(
                409,
                "ScopeLocked",
                format!(
                    "the resource group '{}' is locked while resources move into or out of it; retry after the move",
                    name_of(&group)
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn move_resources(
        &mut self,
        request: &SimRequest,
        source_group: &str,
        validate_only: bool,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        self.require_group(source_group)?;
        let body = Self::parse_body(request)?;
        let Some(target) = body
            .get("targetResourceGroup")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "targetResourceGroup is required.",
            ));
        };
        let ids: Vec<String> = body
            .get("resources")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "resources must list at least one resource id.",
            ));
        }
        self.require_unlocked(&format!("{source_group}/x"))?;
        self.require_unlocked(&format!("{target}/x"))?;
        self.require_group_not_deleting(request, &target)?;
        // Azure validates a move asynchronously: `validateMoveResources` answers 202, and its
        // Location answers 204 when the move would succeed or 409 with the reason ("If
        // validation fails, it returns HTTP response code 409 (Conflict) with an error
        // message. Retrieve the URL in the Location header value to check the result",
        // Resources_ValidateMoveResources). A move itself still refuses at once here.
        let checked = self.check_move(source_group, &target, &ids);
        let (resolved, validation_failure) = match checked {
            Ok(resolved) => (resolved, None),
            Err(refusal) if validate_only => (Vec::new(), Some(refusal)),
            Err(refusal) => return Err(refusal),
        };
        let completion = if validate_only {
            Completion::Nothing
        } else {
            Completion::Move {
                source_group: source_group.to_owned(),
                target_group: target.clone(),
                ids: resolved,
            }
        };
        let duration = if validate_only {
            Duration::ZERO
        } else {
            self.settings.durations.move_resources
        };
        let (operation_id, scaled) =
            self.begin_operation("POST", &request.path, duration, completion);
        if !validate_only {
            self.locked_groups
                .insert(lower(source_group), operation_id.clone());
            self.locked_groups
                .insert(lower(&target), operation_id.clone());
        }
        let failure = validation_failure
            .and_then(|refusal| serde_json::from_slice::<Value>(&refusal.body).ok())
            .and_then(|body| body.get("error").cloned());
        match failure {
            Some(error) => self.set_failure(&operation_id, 409, error),
            None => self.set_failure_status(&operation_id, 409),
        }
        let (_, result_url) = self.operation_urls(&subscription_of(source_group), &operation_id);
        let response = SimResponse::empty(202)
            .with_header("Location", result_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        Ok((response, Some((operation_id, scaled))))
    }

    /// ARM's checks of a move: the target group, and each resource's group, existence and
    /// type. Returns the resources' ids as stored.
    fn check_move(
        &self,
        source_group: &str,
        target: &str,
        ids: &[String],
    ) -> Result<Vec<String>, Refusal> {
        self.require_group(target).map_err(|_| {
            SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!(
                    "Target resource group '{}' could not be found.",
                    name_of(target)
                ),
            )
        })?;
        if lower(target) == lower(source_group) {
            return Err(SimResponse::error(
                400,
                "InvalidTargetResourceGroup",
                "The target resource group is the source group.",
            ));
        }
        let moving: Vec<String> = ids.iter().map(|id| lower(id)).collect();
        let mut resolved = Vec::new();
        for id in ids {
            if !group_id_of(id).is_some_and(|group| group.eq_ignore_ascii_case(source_group)) {
                return Err(SimResponse::error(
                    400,
                    "InvalidResourceMoveRequest",
                    format!(
                        "Resource {id} is not in the source group {}.",
                        name_of(source_group)
                    ),
                ));
            }
            let stored = self.resources.get(&lower(id)).ok_or_else(|| {
                SimResponse::error(
                    404,
                    "ResourceNotFound",
                    format!("The resource {id} to move was not found."),
                )
            })?;
            match kind_of(id) {
                Kind::ManagedCluster => {
                    return Err(SimResponse::error(
                        400,
                        "ResourceMoveNotSupported",
                        format!(
                            "Resource type Microsoft.ContainerService/managedClusters ({}) cannot be moved; create a new cluster instead.",
                            name_of(id)
                        ),
                    ));
                }
                Kind::Disk => {
                    if let Some(owner) = stored.body.get("managedBy").and_then(Value::as_str)
                        && !moving.contains(&lower(owner))
                    {
                        return Err(SimResponse::error(
                            409,
                            "ResourceMoveFailed",
                            format!(
                                "Disk {} is attached to VM {owner}, which is not moved with it; detach it first.",
                                name_of(id)
                            ),
                        ));
                    }
                }
                _ => {}
            }
            resolved.push(stored.id.clone());
        }
        Ok(resolved)
    }

    pub(super) fn apply_move(&mut self, target_group: &str, ids: &[String]) {
        let target_name = name_of(target_group);
        let mut renames: Vec<(String, String)> = Vec::new();
        for id in ids {
            let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
            let mut moved: Vec<String> = segments
                .iter()
                .map(|segment| (*segment).to_owned())
                .collect();
            if moved.len() > 3 {
                moved[3] = target_name.clone();
            }
            renames.push((id.clone(), format!("/{}", moved.join("/"))));
        }
        // Move each resource and its children, then rewrite every reference to them.
        for (old, new) in &renames {
            let old_key = lower(old);
            let prefix = format!("{old_key}/");
            let keys: Vec<String> = self
                .resources
                .keys()
                .filter(|key| **key == old_key || key.starts_with(&prefix))
                .cloned()
                .collect();
            for key in keys {
                if let Some(mut stored) = self.resources.remove(&key) {
                    stored.id = format!("{new}{}", &stored.id[old.len()..]);
                    self.resources.insert(lower(&stored.id), stored);
                }
            }
            if let Some(value) = self.power_states.remove(&old_key) {
                self.power_states.insert(lower(new), value);
            }
            if let Some(server) = self.readyz.remove(&old_key) {
                self.readyz.insert(lower(new), server);
            }
        }
        for stored in self.resources.values_mut() {
            rewrite_references(&mut stored.body, &renames);
        }
        let vms: Vec<String> = self
            .resources
            .values()
            .filter(|stored| kind_of(&stored.id) == Kind::VirtualMachine)
            .map(|stored| stored.id.clone())
            .collect();
        for vm in vms {
            self.refresh_vm_disks(&vm);
        }
    }
}

fn rewrite_references(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (old, new) in renames {
                if text.len() >= old.len()
                    && text[..old.len()].eq_ignore_ascii_case(old)
                    && (text.len() == old.len() || text.as_bytes()[old.len()] == b'/')
                {
                    *text = format!("{new}{}", &text[old.len()..]);
                    break;
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, renames)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| rewrite_references(item, renames)),
        _ => {}
    }
}
