//! Why a compute step was refused or failed, and which of those failures are worth a retry.

use ferry_arm::{ArmError, LocateError};
use ferry_core::{InstanceAddress, StepError};

/// Why a compute step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{0}")]
    Arm(Box<ArmError>),
    #[error("{0}")]
    Locate(#[from] LocateError),
    #[error(
        "{instance}: resource group {group} still holds managed disks ({}): ferry never deletes a group with data in it; move the disks out (a failover moves them) or delete them explicitly with allow_destroy, then apply again",
        disks.join(", ")
    )]
    GroupHoldsDisks {
        instance: InstanceAddress,
        group: String,
        disks: Vec<String>,
    },
    /// ARM takes no write into a group whose deletion has started (`ResourceGroupBeingDeleted`),
    /// so such a group reads unknown: nothing that lives in it is planned.
    #[error(
        "{instance}: resource group {group} is being deleted (ARM reports provisioningState Deleting) and takes no writes; nothing in it is planned until the deletion ends: plan again once it is gone"
    )]
    GroupBeingDeleted {
        instance: InstanceAddress,
        group: String,
    },
    #[error(
        "{instance}: replacing a resource group would delete everything in it: keep its name and location, or plan a failover, which builds a new group beside it"
    )]
    GroupReplacement { instance: InstanceAddress },
    #[error("{instance}: {message}")]
    Step {
        instance: InstanceAddress,
        message: String,
    },
    #[error(
        "{instance}: ARM did not show the VM deallocated after the deallocation (power state {state}); check it in the portal, then apply again"
    )]
    NotFenced {
        instance: InstanceAddress,
        state: String,
    },
    /// The start that ends a resize by deallocation failed: the VM has its new size and is
    /// not serving until the next plan, which reads it deallocated, starts it.
    #[error(
        "{instance}: the VM was deallocated and resized to {size}, but did not start again: {source}; it stays deallocated and serves nothing until it starts: the next `ferry apply` starts it (its plan shows the start); if Azure has no capacity for {size} there (AllocationFailed), change its size in the spec and apply again"
    )]
    NotStartedAfterResize {
        instance: InstanceAddress,
        size: String,
        source: Box<ArmError>,
    },
    #[error(
        "{instance}: the VM was deallocated and resized to {size}, but ARM did not show it running after the start (power state {state}); check it in the portal: the next `ferry apply` starts it if it is not running"
    )]
    NotRunningAfterResize {
        instance: InstanceAddress,
        size: String,
        state: String,
    },
    /// The start of a VM of the serving generation that read deallocated or stopped failed.
    #[error(
        "{instance}: the VM is {state} and did not start: {source}; it serves nothing until it starts: apply again (the next plan starts it again); if Azure has no capacity for its size there (AllocationFailed), change its size in the spec and apply again"
    )]
    NotStarted {
        instance: InstanceAddress,
        state: String,
        source: Box<ArmError>,
    },
    #[error(
        "{instance}: ARM did not show the VM running after its start (power state {state}); check it in the portal: the next `ferry apply` starts it if it is not running"
    )]
    NotRunning {
        instance: InstanceAddress,
        state: String,
    },
}

impl From<ArmError> for ComputeError {
    fn from(error: ArmError) -> Self {
        Self::Arm(Box::new(error))
    }
}

impl From<ComputeError> for StepError {
    fn from(error: ComputeError) -> Self {
        let message = error.to_string();
        match &error {
            ComputeError::Arm(arm)
            | ComputeError::NotStartedAfterResize { source: arm, .. }
            | ComputeError::NotStarted { source: arm, .. } => arm.step_error(message),
            _ => StepError::permanent(message),
        }
    }
}

pub(super) fn step_error(instance: &InstanceAddress, message: impl Into<String>) -> ComputeError {
    ComputeError::Step {
        instance: instance.clone(),
        message: message.into(),
    }
}
