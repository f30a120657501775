//! Managed disks: their server-owned fields, and the sparse file that holds each disk's bytes
//! (it follows the disk through moves, and goes with it when it is deleted).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::body::{iso_time_now, keep_previous, properties_mut};
use super::ids::lower;
use super::{Stored, World};

impl World {
    pub(super) fn fill_disk_fields(&mut self, body: &mut Value, previous: &Value) {
        keep_previous(body, previous, "uniqueId");
        keep_previous(body, previous, "timeCreated");
        keep_previous(body, previous, "diskState");
        let unique = self.next_identifier();
        let properties = properties_mut(body);
        properties.entry("uniqueId").or_insert(json!(unique));
        properties
            .entry("timeCreated")
            .or_insert(json!(iso_time_now()));
        properties.entry("diskState").or_insert(json!("Unattached"));
        if properties
            .get("diskSizeGB")
            .and_then(Value::as_i64)
            .is_none()
        {
            properties.insert("diskSizeGB".to_owned(), json!(32));
        }
        let size = properties
            .get("diskSizeGB")
            .and_then(Value::as_i64)
            .unwrap_or(32);
        properties
            .entry("diskSizeBytes")
            .or_insert(json!(size.saturating_mul(1 << 30)));
        if let Some(managed_by) = previous.get("managedBy") {
            body["managedBy"] = managed_by.clone();
        }
    }

    /// The sparse file that holds a disk's bytes; it follows the disk through moves.
    pub(super) fn backing_file(&self, disk_id: &str) -> Option<PathBuf> {
        let disk = self.resources.get(&lower(disk_id))?;
        let unique = disk.body.pointer("/properties/uniqueId")?.as_str()?;
        Some(
            self.settings
                .data_directory
                .join("disks")
                .join(format!("{unique}.img")),
        )
    }

    pub(super) fn ensure_backing_file(&self, disk_id: &str) -> Result<(), String> {
        let Some(path) = self.backing_file(disk_id) else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        let size_gb = self
            .resources
            .get(&lower(disk_id))
            .and_then(|disk| {
                disk.body
                    .pointer("/properties/diskSizeGB")
                    .and_then(Value::as_u64)
            })
            .unwrap_or(32);
        let size = self
            .settings
            .disk_backing_size
            .unwrap_or(size_gb.saturating_mul(1 << 30));
        let file = std::fs::File::create(&path)
            .map_err(|error| format!("could not create {}: {error}", path.display()))?;
        // set_len makes a sparse file: no bytes are written until the pool writes them.
        file.set_len(size)
            .map_err(|error| format!("could not size {}: {error}", path.display()))
    }

    /// Removes a deleted disk's backing file.
    pub(super) fn remove_backing_file(&self, stored: &Stored) {
        if let Some(unique) = stored
            .body
            .pointer("/properties/uniqueId")
            .and_then(Value::as_str)
        {
            let _ = std::fs::remove_file(
                self.settings
                    .data_directory
                    .join("disks")
                    .join(format!("{unique}.img")),
            );
        }
    }
}
