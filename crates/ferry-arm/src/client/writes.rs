//! Writes: PUT, PATCH, DELETE and POST, each either returning at once with the operation ARM
//! started ([`Started`]) or waiting for it to end.

use azure_core::http::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::polling::provisioning_state_of;
use super::{AZURE_ASYNC_OPERATION, ArmClient, ETAG, Fetched, LOCATION, WriteOptions, method_name};
use crate::error::ArmError;
use crate::models::OperationPhase;
use crate::pending_operation::{PendingOperation, PollStyle, Started};

impl ArmClient {
    /// PUT (create or replace) and return at once: done, or an operation to wait for.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        self.start(
            Method::Put,
            path,
            api_version,
            Some(to_json(path, body)?),
            options,
        )
        .await
    }

    /// PATCH (merge) and return at once.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        self.start(
            Method::Patch,
            path,
            api_version,
            Some(to_json(path, body)?),
            options,
        )
        .await
    }

    /// DELETE and return at once. A 204 (already absent) is success.
    pub async fn delete(
        &self,
        path: &str,
        api_version: &str,
        options: &WriteOptions,
    ) -> Result<Started<()>, ArmError> {
        match self
            .start::<serde_json::Value>(Method::Delete, path, api_version, None, options)
            .await?
        {
            Started::Completed(_) => Ok(Started::Completed(None)),
            Started::Pending(operation) => Ok(Started::Pending(operation)),
        }
    }

    /// POST an action (`{id}/deallocate`, `{group}/moveResources`) and return at once.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&B>,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        let body = match body {
            Some(body) => Some(to_json(path, body)?),
            None => None,
        };
        self.start(Method::Post, path, api_version, body, options)
            .await
    }

    /// PUT and wait for the resource to be provisioned; returns it as ARM has it afterwards.
    pub async fn put_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<T, ArmError> {
        let started = self.put(path, api_version, body, options).await?;
        self.finish_resource(path, api_version, started).await
    }

    /// PATCH and wait; returns the resource afterwards.
    pub async fn patch_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<T, ArmError> {
        let started = self.patch(path, api_version, body, options).await?;
        self.finish_resource(path, api_version, started).await
    }

    /// DELETE and wait until the resource is gone.
    pub async fn delete_and_wait(
        &self,
        path: &str,
        api_version: &str,
        options: &WriteOptions,
    ) -> Result<(), ArmError> {
        if let Started::Pending(operation) = self.delete(path, api_version, options).await? {
            self.wait::<serde_json::Value>(&operation).await?;
        }
        Ok(())
    }

    /// POST and wait; returns the action's result, if it has one.
    pub async fn post_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&B>,
        options: &WriteOptions,
    ) -> Result<Option<T>, ArmError> {
        match self.post(path, api_version, body, options).await? {
            Started::Completed(value) => Ok(value.map(|fetched| fetched.value)),
            Started::Pending(operation) => self.wait(&operation).await,
        }
    }

    async fn finish_resource<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        started: Started<T>,
    ) -> Result<T, ArmError> {
        match started {
            Started::Completed(Some(fetched)) => Ok(fetched.value),
            Started::Completed(None) => Ok(self.get(path, api_version).await?.value),
            Started::Pending(operation) => match self.wait(&operation).await? {
                Some(value) => Ok(value),
                None => Ok(self.get(path, api_version).await?.value),
            },
        }
    }

    async fn start<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<Vec<u8>>,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        let url = self.url_for(path, api_version, &options.query)?;
        let response = self
            .send_checked(method, url.clone(), body, options)
            .await?;
        let retry_after = response.retry_after()?;
        let async_operation = response.headers.get_optional_string(&AZURE_ASYNC_OPERATION);
        let location = response.headers.get_optional_string(&LOCATION);
        let pending =
            |operation_url: Url, style: PollStyle, location_url: Option<String>| PendingOperation {
                method: method_name(method).to_owned(),
                resource_url: url.to_string(),
                operation_url: operation_url.to_string(),
                location_url,
                style,
                retry_after,
            };
        if let Some(operation_url) = async_operation {
            let operation_url = self.checked_operation_url(&operation_url)?;
            return Ok(Started::Pending(pending(
                operation_url,
                PollStyle::AzureAsyncOperation,
                location,
            )));
        }
        if response.status == 202 {
            let Some(location) = location else {
                return Err(ArmError::InvalidHeader {
                    method: response.method.clone(),
                    url: response.url.to_string(),
                    header: "Location".to_owned(),
                    value: String::new(),
                    expected: "present on a 202 without Azure-AsyncOperation",
                });
            };
            let operation_url = self.checked_operation_url(&location)?;
            return Ok(Started::Pending(pending(
                operation_url,
                PollStyle::Location,
                None,
            )));
        }
        if response.status == 204 {
            return Ok(Started::Completed(None));
        }
        // 200/201 with no operation header: the body's provisioningState says whether the
        // resource is still being provisioned.
        let raw: Option<serde_json::Value> = response.json_if_any()?;
        if matches!(method, Method::Put | Method::Patch)
            && let Some(state) = raw.as_ref().and_then(provisioning_state_of)
        {
            match OperationPhase::classify(&state) {
                Some(OperationPhase::Succeeded) => {}
                Some(OperationPhase::InProgress) => {
                    return Ok(Started::Pending(pending(
                        url.clone(),
                        PollStyle::ProvisioningState,
                        None,
                    )));
                }
                Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                    return Err(ArmError::OperationFailed {
                        operation_url: url.to_string(),
                        status: state,
                        code: "ProvisioningFailed".to_owned(),
                        message: "the resource reported a failed provisioningState".to_owned(),
                        target: None,
                        details: Vec::new(),
                        request_id: response.request_id(),
                    });
                }
                None => {
                    return Err(ArmError::UnknownProvisioningState {
                        url: url.to_string(),
                        state,
                    });
                }
            }
        }
        let value = match raw {
            Some(_) => Some(Fetched {
                value: response.json()?,
                etag: response.headers.get_optional_string(&ETAG),
            }),
            None => None,
        };
        Ok(Started::Completed(value))
    }
}

fn to_json<B: Serialize>(path: &str, body: &B) -> Result<Vec<u8>, ArmError> {
    serde_json::to_vec(body).map_err(|error| ArmError::Request {
        url: path.to_owned(),
        reason: error.to_string(),
    })
}
