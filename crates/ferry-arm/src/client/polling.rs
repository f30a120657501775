//! Long-running operations: one poll of an operation in any of ARM's three styles, a wait
//! until it ends (also for one saved by an interrupted apply), and its final result.

use std::time::Duration;

use azure_core::http::Method;
use serde::de::DeserializeOwned;

use super::{ArmClient, WriteOptions};
use crate::error::ArmError;
use crate::models::{AsyncOperationStatus, OperationPhase};
use crate::pending_operation::{PendingOperation, PollStyle};

impl ArmClient {
    /// Polls `operation` once: `Ok(None)` while it runs (with the wait ARM asked for).
    pub async fn poll_once<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<PollOutcome<T>, ArmError> {
        let operation_url = self.checked_operation_url(&operation.operation_url)?;
        let response = self
            .send(Method::Get, operation_url, None, &WriteOptions::default())
            .await?;
        let retry_after = response.retry_after()?;
        match operation.style {
            PollStyle::AzureAsyncOperation => {
                if response.status >= 400 {
                    return Err(response.service_error());
                }
                let status: AsyncOperationStatus = response.json()?;
                match OperationPhase::classify(&status.status) {
                    Some(OperationPhase::InProgress) => Ok(PollOutcome::Running { retry_after }),
                    Some(OperationPhase::Succeeded) => {
                        Ok(PollOutcome::Done(self.final_result(operation).await?))
                    }
                    Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                        let error = status.error.unwrap_or_default();
                        Err(ArmError::OperationFailed {
                            operation_url: operation.operation_url.clone(),
                            status: status.status,
                            code: error.code,
                            message: error.message,
                            target: error.target,
                            details: error.details,
                            request_id: response.request_id(),
                        })
                    }
                    None => Err(ArmError::UnknownOperationStatus {
                        operation_url: operation.operation_url.clone(),
                        status: status.status,
                    }),
                }
            }
            PollStyle::Location => match response.status {
                202 => Ok(PollOutcome::Running { retry_after }),
                200 | 201 => {
                    if operation.method == "PUT" || operation.method == "PATCH" {
                        return Ok(PollOutcome::Done(self.final_result(operation).await?));
                    }
                    Ok(PollOutcome::Done(response.json_if_any()?))
                }
                204 => Ok(PollOutcome::Done(None)),
                status if status >= 400 => {
                    Err(operation_failed_from(operation, response.service_error()))
                }
                _ => Err(response.service_error()),
            },
            PollStyle::ProvisioningState => {
                if response.status >= 400 {
                    return Err(response.service_error());
                }
                let raw: serde_json::Value = response.json()?;
                let state = provisioning_state_of(&raw).unwrap_or_else(|| "Succeeded".to_owned());
                match OperationPhase::classify(&state) {
                    Some(OperationPhase::InProgress) => Ok(PollOutcome::Running { retry_after }),
                    Some(OperationPhase::Succeeded) => {
                        Ok(PollOutcome::Done(Some(response.json()?)))
                    }
                    Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                        Err(ArmError::OperationFailed {
                            operation_url: operation.operation_url.clone(),
                            status: state,
                            code: "ProvisioningFailed".to_owned(),
                            message: "the resource reported a failed provisioningState".to_owned(),
                            target: None,
                            details: Vec::new(),
                            request_id: response.request_id(),
                        })
                    }
                    None => Err(ArmError::UnknownProvisioningState {
                        url: operation.operation_url.clone(),
                        state,
                    }),
                }
            }
        }
    }

    /// Waits for `operation` to finish (also one saved by an interrupted apply) and returns
    /// its result: the resource for PUT/PATCH, the action's body for POST, nothing for DELETE.
    pub async fn wait<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<Option<T>, ArmError> {
        let started = tokio::time::Instant::now();
        let mut delay = operation.retry_after;
        loop {
            let wait = self.poll_delay(delay);
            if let Some(limit) = self.polling.timeout
                && started.elapsed() + wait > limit
            {
                return Err(ArmError::OperationTimeout {
                    operation_url: operation.operation_url.clone(),
                    limit,
                });
            }
            tokio::time::sleep(wait).await;
            match self.poll_once(operation).await? {
                PollOutcome::Running { retry_after } => delay = retry_after,
                PollOutcome::Done(value) => return Ok(value),
            }
        }
    }

    fn poll_delay(&self, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.clamp(self.polling.minimum_interval, self.polling.maximum_interval),
            None => self.polling.default_interval,
        }
    }

    async fn final_result<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<Option<T>, ArmError> {
        match operation.method.as_str() {
            "PUT" | "PATCH" => {
                let url = self.checked_operation_url(&operation.resource_url)?;
                let response = self
                    .send_checked(Method::Get, url, None, &WriteOptions::default())
                    .await?;
                response.json_if_any()
            }
            "POST" => match &operation.location_url {
                Some(location) => {
                    let url = self.checked_operation_url(location)?;
                    let response = self
                        .send_checked(Method::Get, url, None, &WriteOptions::default())
                        .await?;
                    response.json_if_any()
                }
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// One poll's result.
#[derive(Debug)]
pub enum PollOutcome<T> {
    Running { retry_after: Option<Duration> },
    Done(Option<T>),
}

fn operation_failed_from(operation: &PendingOperation, error: ArmError) -> ArmError {
    match error {
        ArmError::Service(service) => ArmError::OperationFailed {
            operation_url: operation.operation_url.clone(),
            status: "Failed".to_owned(),
            code: service.code,
            message: service.message,
            target: service.target,
            details: service.details,
            request_id: service.request_id,
        },
        other => other,
    }
}

pub(super) fn provisioning_state_of(value: &serde_json::Value) -> Option<String> {
    value
        .get("properties")?
        .get("provisioningState")?
        .as_str()
        .map(str::to_owned)
}
