//! Long-running operations: the record of each, the status and result URLs clients poll,
//! and what happens when an operation's time is up.

use std::time::Duration;

use serde_json::{Value, json};

use super::body::{iso_time_now, properties_mut};
use super::ids::lower;
use super::{SimResponse, World};

/// What happens when an operation's time is up.
#[derive(Debug, Clone)]
pub(super) enum Completion {
    /// A PUT or PATCH finished: provisioningState Succeeded and kind-specific effects.
    Provisioned {
        id: String,
    },
    /// An `attachDetachDataDisks` finished: as `Provisioned`, and its result is the VM's
    /// storage profile afterwards.
    DataDisks {
        vm_id: String,
    },
    Deleted {
        id: String,
    },
    Power {
        vm_id: String,
        running: bool,
    },
    Move {
        source_group: String,
        target_group: String,
        ids: Vec<String>,
    },
    /// Nothing to change (a validation).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
enum OperationState {
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct OperationRecord {
    id: String,
    state: OperationState,
    start_time: String,
    #[serde(skip)]
    completion: Completion,
    /// The error an operation told to fail ends with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) failure: Option<Value>,
    /// HTTP status of a failed Location-style poll.
    pub(super) failure_status: u16,
    /// The body a finished Location-style poll answers with (a POST's result).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    hung: bool,
    finish_after_milliseconds: u64,
    /// The request that started it, for the event log.
    #[serde(skip)]
    pub(super) request: (String, String),
    /// The request's `SimEvent::disks`.
    #[serde(skip)]
    pub(super) disks: Vec<String>,
}

impl World {
    pub(super) fn operation_urls(
        &self,
        subscription: &str,
        operation_id: &str,
    ) -> (String, String) {
        let base = format!(
            "{}/subscriptions/{subscription}/providers/Microsoft.Simulator/locations/local",
            self.settings.endpoint
        );
        (
            format!("{base}/operations/{operation_id}?api-version=2025-01-01"),
            format!("{base}/operationResults/{operation_id}?api-version=2025-01-01"),
        )
    }

    /// Registers an operation and returns its id; the server's `schedule_completion` must then
    /// be called outside the lock.
    pub(super) fn begin_operation(
        &mut self,
        method: &str,
        path: &str,
        duration: Duration,
        completion: Completion,
    ) -> (String, Duration) {
        let operation_id = self.next_identifier();
        let (failure, hung) = self.operation_fault(method, path);
        let scaled = self.scaled(duration);
        self.operations.insert(
            operation_id.clone(),
            OperationRecord {
                id: operation_id.clone(),
                state: OperationState::InProgress,
                start_time: iso_time_now(),
                completion,
                failure,
                failure_status: 400,
                result: None,
                hung,
                finish_after_milliseconds: scaled.as_millis() as u64,
                request: (method.to_owned(), path.to_owned()),
                disks: Vec::new(),
            },
        );
        (operation_id, scaled)
    }

    /// Sets what an operation ends with: its kind of completion, or the failure a validation
    /// found (answered with `status` at its Location URL).
    pub(super) fn set_completion(&mut self, operation_id: &str, completion: Completion) {
        if let Some(record) = self.operations.get_mut(operation_id) {
            record.completion = completion;
        }
    }

    pub(super) fn set_failure(&mut self, operation_id: &str, status: u16, error: Value) {
        if let Some(record) = self.operations.get_mut(operation_id) {
            record.failure_status = status;
            record.failure.get_or_insert(error);
        }
    }

    pub(super) fn set_failure_status(&mut self, operation_id: &str, status: u16) {
        if let Some(record) = self.operations.get_mut(operation_id) {
            record.failure_status = status;
        }
    }

    pub(super) fn retry_after_seconds(&self, remaining: Duration) -> String {
        let cap = self.scaled(Duration::from_secs(15));
        remaining.min(cap).as_secs().to_string()
    }

    /// Ends an operation: applies its effect or its failure.
    pub fn complete_operation(&mut self, operation_id: &str) {
        let Some(record) = self.operations.get(operation_id).cloned() else {
            return;
        };
        if record.hung || record.state != OperationState::InProgress {
            return;
        }
        self.release(operation_id);
        if let Some(failure) = record.failure.clone() {
            if let Completion::Provisioned { id } | Completion::DataDisks { vm_id: id } =
                &record.completion
                && let Some(stored) = self.resources.get_mut(&lower(id))
            {
                properties_mut(&mut stored.body)
                    .insert("provisioningState".to_owned(), json!("Failed"));
            }
            if let Completion::Move {
                source_group,
                target_group,
                ..
            } = &record.completion
            {
                self.locked_groups.remove(&lower(source_group));
                self.locked_groups.remove(&lower(target_group));
            }
            if let Some(record) = self.operations.get_mut(operation_id) {
                record.state = OperationState::Failed;
                record.failure = Some(failure);
            }
            self.log_operation_end(&record, "Failed");
            return;
        }
        let outcome = match record.completion.clone() {
            Completion::Provisioned { id } => self.finish_provisioning(&id),
            Completion::DataDisks { vm_id } => {
                let finished = self.finish_provisioning(&vm_id);
                let profile = self.storage_profile(&vm_id);
                if let Some(record) = self.operations.get_mut(operation_id) {
                    record.result = Some(profile);
                }
                finished
            }
            Completion::Deleted { id } => {
                self.remove_resource(&id);
                Ok(())
            }
            Completion::Power { vm_id, running } => {
                self.power_states.insert(
                    lower(&vm_id),
                    if running { "running" } else { "deallocated" }.to_owned(),
                );
                self.refresh_vm_disks(&vm_id);
                Ok(())
            }
            Completion::Move {
                source_group,
                target_group,
                ids,
            } => {
                self.locked_groups.remove(&lower(&source_group));
                self.locked_groups.remove(&lower(&target_group));
                self.apply_move(&target_group, &ids);
                Ok(())
            }
            Completion::Nothing => Ok(()),
        };
        let ended = if outcome.is_ok() {
            "Succeeded"
        } else {
            "Failed"
        };
        if let Some(record) = self.operations.get_mut(operation_id) {
            match outcome {
                Ok(()) => record.state = OperationState::Succeeded,
                Err(message) => {
                    record.state = OperationState::Failed;
                    record.failure =
                        Some(json!({"code": "InternalOperationError", "message": message}));
                }
            }
        }
        self.log_operation_end(&record, ended);
    }

    pub(super) fn operation_status(&self, operation_id: &str) -> SimResponse {
        let Some(record) = self.operations.get(operation_id) else {
            return SimResponse::error(
                404,
                "OperationNotFound",
                format!("operation {operation_id} does not exist"),
            );
        };
        let mut body = json!({
            "id": operation_id,
            "name": operation_id,
            "status": record.state,
            "startTime": record.start_time,
        });
        if record.state == OperationState::Failed
            && let Some(failure) = &record.failure
        {
            body["error"] = failure.clone();
        }
        let mut response = SimResponse::json(200, &body);
        if record.state == OperationState::InProgress {
            let wait =
                self.retry_after_seconds(Duration::from_millis(record.finish_after_milliseconds));
            response = response.with_header("Retry-After", wait);
        }
        response
    }

    pub(super) fn operation_result(&self, operation_id: &str) -> SimResponse {
        let Some(record) = self.operations.get(operation_id) else {
            return SimResponse::error(
                404,
                "OperationNotFound",
                format!("operation {operation_id} does not exist"),
            );
        };
        match record.state {
            OperationState::InProgress => {
                let wait = self
                    .retry_after_seconds(Duration::from_millis(record.finish_after_milliseconds));
                SimResponse::empty(202).with_header("Retry-After", wait)
            }
            OperationState::Failed => SimResponse::json(
                record.failure_status,
                &json!({"error": record.failure.clone().unwrap_or_else(|| json!({"code": "OperationFailed", "message": "the operation failed"}))}),
            ),
            OperationState::Succeeded => match &record.result {
                Some(result) => SimResponse::json(200, result),
                None => SimResponse::empty(204),
            },
        }
    }
}
