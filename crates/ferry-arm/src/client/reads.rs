//! Reads: GET a resource or any ARM path, with its ETag, and lists that follow `nextLink`.

use azure_core::http::Method;
use serde::de::DeserializeOwned;

use super::{ArmClient, ETAG, Fetched, WriteOptions};
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::models::ListPage;

impl ArmClient {
    /// GET a resource (or any ARM path, such as `{vm}/instanceView`).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Fetched<T>, ArmError> {
        let url = self.url_for(path, api_version, &[])?;
        let response = self
            .send_checked(Method::Get, url, None, &WriteOptions::default())
            .await?;
        let value = response.json()?;
        Ok(Fetched {
            value,
            etag: response.headers.get_optional_string(&ETAG),
        })
    }

    /// GET a resource, with `None` for 404 (absent, or its group is absent).
    pub async fn get_if_exists<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Fetched<T>>, ArmError> {
        match self.get(path, api_version).await {
            Ok(fetched) => Ok(Some(fetched)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// GET a resource by id.
    pub async fn get_resource<T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        api_version: &str,
    ) -> Result<Fetched<T>, ArmError> {
        self.get(id.as_str(), api_version).await
    }

    /// Every item of a list, following `nextLink` (only on the endpoint's host).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<T>, ArmError> {
        self.list_with_query(path, api_version, &[]).await
    }

    /// The same with query parameters on the first page (`statusOnly=true`); the next pages
    /// are asked at `nextLink` as ARM gives it.
    pub async fn list_with_query<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        query: &[(String, String)],
    ) -> Result<Vec<T>, ArmError> {
        let mut items = Vec::new();
        let mut url = self.url_for(path, api_version, query)?;
        loop {
            let response = self
                .send_checked(Method::Get, url, None, &WriteOptions::default())
                .await?;
            let page: ListPage<T> = response.json()?;
            items.extend(page.value);
            match page.next_link {
                Some(next) if !next.is_empty() => url = self.checked_operation_url(&next)?,
                _ => return Ok(items),
            }
        }
    }
}
