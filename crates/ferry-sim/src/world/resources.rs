//! Writes and deletes of every ARM type: preconditions (`If-Match`, locks, parents), the
//! body ARM stores with its server-owned fields, provisioning, and what a deletion takes with
//! it. What only one type does is in that type's file; the `match` on `Kind` here sends it
//! there.

use std::time::Duration;

use serde_json::{Value, json};

use super::body::{merge_patch, properties_mut};
use super::busy::disks_changing;
use super::dns::fill_record_set_fields;
use super::ids::{
    Kind, group_id_of, is_network_kind, kind_name, kind_of, lower, name_of, subscription_of,
    type_of,
};
use super::operations::Completion;
use super::public_ips::public_ips_changing;
use super::regions::{check_location_unchanged, normalise_location};
use super::resource_groups::fill_resource_group_fields;
use super::snapshots::{CopySource, copied_disk_fields};
use super::{Refusal, SimRequest, SimResponse, Stored, World};

impl World {
    fn check_preconditions(
        &self,
        request: &SimRequest,
        existing: Option<&Stored>,
    ) -> Result<(), Refusal> {
        if let Some(wanted) = request.header("if-match") {
            let matches = match existing {
                Some(stored) => wanted.trim() == "*" || wanted.trim() == stored.etag,
                None => false,
            };
            if !matches {
                return Err(SimResponse::error(
                    412,
                    "PreconditionFailed",
                    "The condition specified using HTTP conditional header(s) is not met.",
                ));
            }
        }
        if let Some(wanted) = request.header("if-none-match")
            && wanted.trim() == "*"
            && existing.is_some()
        {
            return Err(SimResponse::error(
                412,
                "PreconditionFailed",
                "The resource already exists and If-None-Match: * forbids overwriting it.",
            ));
        }
        Ok(())
    }

    pub(super) fn parse_body(request: &SimRequest) -> Result<Value, Refusal> {
        let body: Value = serde_json::from_slice(&request.body).map_err(|error| {
            SimResponse::error(
                400,
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: {error}"),
            )
        })?;
        if !body.is_object() {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "The request content must be a JSON object.",
            ));
        }
        Ok(body)
    }

    pub(super) fn write(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        if kind_of(id) == Kind::DiskRestorePoint {
            return Err(Self::refuse_disk_restore_point_write(id, &request.method));
        }
        let key = lower(id);
        let existing = self.resources.get(&key).cloned();
        // A group's own PUT is refused while a move locks it, like any write inside it.
        self.require_unlocked(id)?;
        self.require_idle(id)?;
        self.check_preconditions(request, existing.as_ref())?;
        let incoming = Self::parse_body(request)?;
        let body = if request.method == "PATCH" {
            let Some(existing) = &existing else {
                return Err(Self::not_found(id));
            };
            let mut merged = existing.body.clone();
            if kind_of(id) == Kind::LoadBalancer {
                // `LoadBalancers_UpdateTags`: a load balancer's PATCH takes a `TagsObject`, and
                // changes nothing but its tags (loadBalancer.json, 2025-03-01).
                if let Some(tags) = incoming.get("tags") {
                    merged["tags"] = tags.clone();
                }
            } else {
                merge_patch(&mut merged, &incoming);
            }
            merged
        } else {
            incoming
        };
        if let Some(existing) = &existing {
            check_location_unchanged(id, &existing.body, &body)?;
        }
        if let Some(existing) = &existing
            && kind_of(id) == Kind::VirtualMachine
        {
            self.check_resize(id, &existing.body, &body)?;
        }
        self.write_body(request, id, body, existing, false)
    }

    /// Validates and stores a resource body, and starts its operation. `immediate` (seeding)
    /// finishes at once with no faults.
    pub(super) fn write_body(
        &mut self,
        request: &SimRequest,
        id: &str,
        mut body: Value,
        existing: Option<Stored>,
        immediate: bool,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let kind = kind_of(id);
        let creating = existing.is_none();
        let needs_location = matches!(
            kind,
            Kind::Group
                | Kind::VirtualNetwork
                | Kind::PublicIp
                | Kind::NetworkInterface
                | Kind::LoadBalancer
                | Kind::VirtualMachine
                | Kind::Disk
                | Kind::Snapshot
                | Kind::RestorePointCollection
                | Kind::ManagedCluster
        );
        if needs_location
            && body
                .get("location")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err(SimResponse::error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        self.check_location_available(id, &body)?;
        // ARM keeps and answers a location by its normalised name (`West Europe`: `westeurope`).
        if let Some(location) = body.get("location").and_then(Value::as_str) {
            body["location"] = json!(normalise_location(location));
        }
        // Parents must exist: a subnet needs its network, a record set its zone.
        if matches!(kind, Kind::Subnet | Kind::RecordSet) {
            let parent = id.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned();
            if !self.resources.contains_key(&lower(&parent)) {
                return Err(SimResponse::error(
                    404,
                    "ParentResourceNotFound",
                    format!(
                        "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                        name_of(&parent)
                    ),
                ));
            }
        }
        let stored_id = existing
            .as_ref()
            .map(|stored| stored.id.clone())
            .unwrap_or_else(|| id.to_owned());
        body["id"] = json!(stored_id);
        body["name"] = json!(name_of(&stored_id));
        body["type"] = json!(type_of(&stored_id));
        let previous = existing
            .as_ref()
            .map(|stored| stored.body.clone())
            .unwrap_or(Value::Null);
        // Network checks what a body references before it accepts it.
        match kind {
            Kind::LoadBalancer => self.check_load_balancer(&stored_id, &body)?,
            Kind::NetworkInterface => self.check_public_ip_references(&stored_id, &body)?,
            Kind::RestorePointCollection => {
                self.check_restore_point_collection(&body, &previous)?
            }
            Kind::RestorePoint => self.check_restore_point(&stored_id, &body, !creating)?,
            _ => {}
        }
        // DiskRP checks a new disk's or snapshot's source; an update keeps what it was made from.
        let copy_source = if creating && matches!(kind, Kind::Disk | Kind::Snapshot) {
            self.check_creation_data(kind, &body)?
        } else {
            None
        };
        if kind == Kind::Disk
            && let Some(source) = &copy_source
        {
            copied_disk_fields(&mut body, source);
        }
        // Server-owned fields survive a PUT that omits them.
        self.fill_server_fields(kind, &stored_id, &mut body, &previous, copy_source.as_ref());
        if let Some(source) = &copy_source {
            self.copy_data(kind, &body, source)?;
        }
        // A restore point copies its VM's disks as its PUT is accepted: one moment for all.
        if kind == Kind::RestorePoint {
            self.take_restore_point(&stored_id, &mut body)?;
        }
        let mut duration = self
            .settings
            .durations
            .duration_for(kind_name(kind), creating);
        let disks_changing = if kind == Kind::VirtualMachine && !immediate {
            let changing = disks_changing(&previous, &body);
            self.require_disks_idle(&changing)?;
            changing
        } else {
            Vec::new()
        };
        // A load balancer's write holds the public IPs it takes or lets go until it ends: a
        // write naming one of them meanwhile is refused as busy, as Network refuses a write on
        // a "dependent resource" in progress.
        let public_ips_changing = if kind == Kind::LoadBalancer && !immediate {
            let changing = public_ips_changing(&stored_id, &previous, &body);
            self.require_disks_idle(&changing)?;
            changing
        } else {
            Vec::new()
        };
        if kind == Kind::VirtualMachine {
            let disks_changed = self.apply_vm_disk_request(&stored_id, &mut body, &previous)?;
            if disks_changed && !creating {
                duration = self.settings.durations.disk_attach_detach;
            }
        }
        let synchronous = immediate
            || duration.is_zero()
            || matches!(
                kind,
                Kind::Group | Kind::DnsZone | Kind::RecordSet | Kind::RestorePointCollection
            );
        // Network's `ProvisioningState` enum has no `Creating`: Succeeded, Updating, Deleting,
        // Failed (network.json of Microsoft.Network's 2025-03-01 definitions).
        let network_kind = is_network_kind(kind);
        let state = if synchronous {
            "Succeeded"
        } else if creating && !network_kind {
            "Creating"
        } else {
            "Updating"
        };
        properties_mut(&mut body).insert("provisioningState".to_owned(), json!(state));
        let etag = self.next_etag();
        if !matches!(
            kind,
            Kind::Group
                | Kind::VirtualMachine
                | Kind::Disk
                | Kind::Snapshot
                | Kind::ManagedCluster
                | Kind::RestorePointCollection
                | Kind::RestorePoint
        ) {
            body["etag"] = json!(etag.clone());
        }
        let stored = Stored {
            id: stored_id.clone(),
            etag,
            body,
        };
        self.resources.insert(lower(&stored_id), stored.clone());
        // Each type answers a PUT with the statuses its definition declares: 200 or 201 for
        // most, but DiskRP's disk.json (2025-01-02) declares 200 and 202 only, for a create
        // as for an update; its snapshot.json declares the same for snapshots.
        let status = match (kind, synchronous, creating) {
            (Kind::Disk | Kind::Snapshot, true, _) => 200,
            (Kind::Disk | Kind::Snapshot, false, _) => 202,
            (_, _, true) => 201,
            (_, _, false) => 200,
        };
        if synchronous {
            let _ = self.finish_provisioning(&stored_id);
            let stored = self
                .resources
                .get(&lower(&stored_id))
                .cloned()
                .unwrap_or(stored);
            return Ok((self.stored_response(status, &stored), None));
        }
        let (operation_id, scaled) = self.begin_operation(
            &request.method,
            &request.path,
            duration,
            Completion::Provisioned {
                id: stored_id.clone(),
            },
        );
        let mut held = disks_changing;
        held.extend(public_ips_changing);
        held.push(stored_id.clone());
        self.hold(
            &held,
            &operation_id,
            if creating { "Creating" } else { "Updating" },
        );
        let subscription = subscription_of(&stored_id);
        let (status_url, _) = self.operation_urls(&subscription, &operation_id);
        let response = self
            .stored_response(status, &stored)
            .with_header("Azure-AsyncOperation", status_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        Ok((response, Some((operation_id, scaled))))
    }

    /// Fills what ARM computes: IP addresses, disk state, AKS endpoints, DNS name servers.
    fn fill_server_fields(
        &mut self,
        kind: Kind,
        id: &str,
        body: &mut Value,
        previous: &Value,
        copy_source: Option<&CopySource>,
    ) {
        match kind {
            Kind::PublicIp => self.fill_public_ip_fields(body, previous),
            Kind::Disk => self.fill_disk_fields(body, previous),
            Kind::Snapshot => self.fill_snapshot_fields(body, previous, copy_source),
            Kind::RestorePointCollection => {
                self.fill_restore_point_collection_fields(body, previous);
            }
            Kind::NetworkInterface => self.fill_network_interface_fields(body, previous),
            Kind::VirtualMachine => self.fill_virtual_machine_fields(body, previous),
            Kind::ManagedCluster => self.fill_managed_cluster_fields(id, body, previous),
            Kind::DnsZone => self.fill_dns_zone_fields(id, body),
            Kind::RecordSet => fill_record_set_fields(id, body),
            Kind::Group => fill_resource_group_fields(body, previous),
            Kind::VirtualNetwork => self.take_inline_subnets(id, body),
            Kind::LoadBalancer => self.fill_load_balancer_fields(id, body, previous),
            Kind::Subnet | Kind::RestorePoint | Kind::DiskRestorePoint | Kind::Other => {}
        }
    }

    pub(super) fn finish_provisioning(&mut self, id: &str) -> Result<(), String> {
        let key = lower(id);
        if let Some(stored) = self.resources.get_mut(&key) {
            properties_mut(&mut stored.body)
                .insert("provisioningState".to_owned(), json!("Succeeded"));
        }
        match kind_of(id) {
            Kind::Disk => self.ensure_backing_file(id)?,
            Kind::VirtualMachine => self.virtual_machine_provisioned(id),
            Kind::ManagedCluster => {
                self.start_api_server(id)?;
                self.ensure_node_resource_group(id)?;
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn delete(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let key = lower(id);
        let kind = kind_of(id);
        if kind == Kind::DiskRestorePoint {
            return Err(Self::refuse_disk_restore_point_write(id, "DELETE"));
        }
        let Some(existing) = self.resources.get(&key).cloned() else {
            // A group's DELETE declares 200 and 202 only: deleting a missing group is
            // `404 ResourceGroupNotFound`, while a missing resource in an existing group is a
            // 204 (ARM's DELETE is idempotent).
            self.require_group(&group_id_of(id).unwrap_or_else(|| id.to_owned()))?;
            return Ok((SimResponse::empty(204), None));
        };
        self.require_unlocked(id)?;
        self.require_idle(id)?;
        self.check_preconditions(request, Some(&existing))?;
        if kind == Kind::Disk
            && let Some(owner) = existing.body.get("managedBy").and_then(Value::as_str)
        {
            return Err(SimResponse::error(
                409,
                "OperationNotAllowed",
                format!(
                    "Disk {} is attached to VM {owner}; detach it before deleting it.",
                    name_of(id)
                ),
            ));
        }
        if kind == Kind::PublicIp {
            self.require_public_ip_free(&existing.id)?;
        }
        if matches!(kind, Kind::DnsZone | Kind::RecordSet) {
            self.remove_resource(id);
            return Ok((SimResponse::empty(200), None));
        }
        if let Some(stored) = self.resources.get_mut(&key) {
            properties_mut(&mut stored.body)
                .insert("provisioningState".to_owned(), json!("Deleting"));
        }
        let duration = self.settings.durations.delete;
        let (operation_id, scaled) = self.begin_operation(
            "DELETE",
            &request.path,
            duration,
            Completion::Deleted {
                id: existing.id.clone(),
            },
        );
        self.hold(
            std::slice::from_ref(&existing.id),
            &operation_id,
            "Deleting",
        );
        let (status_url, result_url) = self.operation_urls(&subscription_of(id), &operation_id);
        let mut response = SimResponse::empty(202)
            .with_header("Location", result_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        if kind != Kind::Group {
            response = response.with_header("Azure-AsyncOperation", status_url);
        }
        Ok((response, Some((operation_id, scaled))))
    }

    pub(super) fn remove_resource(&mut self, id: &str) {
        let key = lower(id);
        let prefix = format!("{key}/");
        let doomed: Vec<String> = self
            .resources
            .keys()
            .filter(|candidate| **candidate == key || candidate.starts_with(&prefix))
            .cloned()
            .collect();
        for doomed_key in doomed {
            let Some(stored) = self.resources.remove(&doomed_key) else {
                continue;
            };
            match kind_of(&stored.id) {
                Kind::VirtualMachine => self.virtual_machine_removed(&doomed_key, &stored),
                Kind::ManagedCluster => {
                    self.stop_api_server(&doomed_key);
                    self.remove_node_resource_group(&stored);
                }
                Kind::Disk => self.remove_backing_file(&stored),
                Kind::Snapshot => self.remove_snapshot_file(&stored),
                Kind::DiskRestorePoint => self.remove_disk_restore_point_file(&stored),
                _ => {}
            }
        }
    }
}
