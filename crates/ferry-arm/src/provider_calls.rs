//! The ARM calls ferry's Azure providers make, over the client's generic requests: a
//! resource read, written or deleted by its id, and named actions (a VM's instance view,
//! deallocate and start, moves and their validation, a cluster's credentials); with the
//! api-version ferry uses for each resource type.

use serde::Serialize;

use crate::client::{ArmClient, Fetched, WriteOptions};
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::models::{CredentialResults, MoveResourcesRequest, VirtualMachineInstanceView};
use crate::pending_operation::Started;

/// The api-versions ferry uses, the same as the official examples it is tested against.
pub mod api_version {
    pub const RESOURCES: &str = "2025-04-01";
    pub const NETWORK: &str = "2025-03-01";
    pub const PUBLIC_IP: &str = "2025-01-01";
    pub const COMPUTE: &str = "2025-04-01";
    pub const DISKS: &str = "2025-01-02";
    /// Managed-disk snapshots: DiskRP serves them with the disks' api-version.
    pub const SNAPSHOTS: &str = "2025-01-02";
    pub const CONTAINER_SERVICE: &str = "2026-05-01";
    pub const DNS: &str = "2018-05-01";

    /// The api-version for a resource type (`Microsoft.Compute/disks`), matched ignoring case.
    pub fn for_type(resource_type: &str) -> &'static str {
        let lower = resource_type.to_ascii_lowercase();
        if lower.starts_with("microsoft.compute/disks") {
            DISKS
        } else if lower.starts_with("microsoft.compute/snapshots") {
            SNAPSHOTS
        } else if lower.ends_with("/diskrestorepoints") {
            // A VM restore point's disks are DiskRP's (diskRestorePoint.json).
            DISKS
        } else if lower.starts_with("microsoft.compute/") {
            COMPUTE
        } else if lower.starts_with("microsoft.network/publicipaddresses") {
            PUBLIC_IP
        } else if lower.starts_with("microsoft.network/dnszones") {
            DNS
        } else if lower.starts_with("microsoft.network/") {
            NETWORK
        } else if lower.starts_with("microsoft.containerservice/") {
            CONTAINER_SERVICE
        } else {
            RESOURCES
        }
    }
}

impl ArmClient {
    /// GET a resource by id with the api-version ferry uses for its type.
    pub async fn read<T: serde::de::DeserializeOwned>(
        &self,
        id: &ResourceId,
    ) -> Result<Option<Fetched<T>>, ArmError> {
        self.get_if_exists(id.as_str(), api_version::for_type(&id.resource_type()))
            .await
    }

    /// PUT a resource by id with the api-version for its type, and wait for it.
    pub async fn create_or_update<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
        options: &WriteOptions,
    ) -> Result<T, ArmError> {
        self.put_and_wait(
            id.as_str(),
            api_version::for_type(&id.resource_type()),
            body,
            options,
        )
        .await
    }

    /// DELETE a resource by id with the api-version for its type, and wait until it is gone.
    pub async fn delete_resource(
        &self,
        id: &ResourceId,
        options: &WriteOptions,
    ) -> Result<(), ArmError> {
        self.delete_and_wait(
            id.as_str(),
            api_version::for_type(&id.resource_type()),
            options,
        )
        .await
    }

    /// The VM's instance view (power state, disks).
    pub async fn virtual_machine_instance_view(
        &self,
        vm: &ResourceId,
    ) -> Result<VirtualMachineInstanceView, ArmError> {
        Ok(self
            .get(&format!("{vm}/instanceView"), api_version::COMPUTE)
            .await?
            .value)
    }

    /// Starts deallocating a VM (its disks stay attached; the guest is stopped and fenced).
    pub async fn deallocate_virtual_machine(
        &self,
        vm: &ResourceId,
    ) -> Result<Started<serde_json::Value>, ArmError> {
        self.post::<(), _>(
            &format!("{vm}/deallocate"),
            api_version::COMPUTE,
            None,
            &WriteOptions::default(),
        )
        .await
    }

    /// Starts a deallocated VM.
    pub async fn start_virtual_machine(
        &self,
        vm: &ResourceId,
    ) -> Result<Started<serde_json::Value>, ArmError> {
        self.post::<(), _>(
            &format!("{vm}/start"),
            api_version::COMPUTE,
            None,
            &WriteOptions::default(),
        )
        .await
    }

    /// Starts moving resources from `source_group` to `request.target_resource_group`.
    /// Both groups refuse writes until the move ends.
    pub async fn move_resources(
        &self,
        source_group: &ResourceId,
        request: &MoveResourcesRequest,
    ) -> Result<Started<serde_json::Value>, ArmError> {
        self.post(
            &format!("{source_group}/moveResources"),
            api_version::RESOURCES,
            Some(request),
            &WriteOptions::default(),
        )
        .await
    }

    /// Asks ARM whether a move would succeed, without moving, and waits for its answer: ARM
    /// accepts the request (202) and answers at its Location, 204 when the move would succeed
    /// or 409 with the reason, returned here as [`ArmError::OperationFailed`].
    pub async fn validate_move_resources(
        &self,
        source_group: &ResourceId,
        request: &MoveResourcesRequest,
    ) -> Result<(), ArmError> {
        self.post_and_wait::<_, serde_json::Value>(
            &format!("{source_group}/validateMoveResources"),
            api_version::RESOURCES,
            Some(request),
            &WriteOptions::default(),
        )
        .await
        .map(|_| ())
    }

    /// The cluster's user kubeconfigs (secrets: never log them).
    pub async fn list_cluster_user_credential(
        &self,
        cluster: &ResourceId,
    ) -> Result<CredentialResults, ArmError> {
        let result = self
            .post_and_wait::<(), CredentialResults>(
                &format!("{cluster}/listClusterUserCredential"),
                api_version::CONTAINER_SERVICE,
                None,
                &WriteOptions::default(),
            )
            .await?;
        Ok(result.unwrap_or_default())
    }
}
