//! The record of what the simulator saw: every ARM request it answered and every
//! long-running operation that ended, with the managed disks each one carries; and, only when
//! a test asks for it, every request and answer in full ([`Exchange`]).

use serde_json::Value;

use super::ids::{Kind, kind_of, lower, name_of};
use super::operations::OperationRecord;
use super::{SimRequest, SimResponse, World};

/// One thing the simulator saw, in the order it saw it: an ARM request it answered, or a
/// long-running operation that ended. Tests assert the order of a failover with these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimEvent {
    /// `request` or `operation`.
    pub what: &'static str,
    pub method: String,
    /// The request's path (for an operation, the path of the request that started it).
    pub path: String,
    /// The HTTP status of a request (`201`), or how an operation ended (`Succeeded`, `Failed`).
    pub outcome: String,
    /// ARM's error code of a refused request or a failed operation (`ScopeLocked`,
    /// `ConflictingUserInput`), to tell a refusal worth a retry from a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What a request asks of managed disks, one entry per disk: `move NAME` (a move or its
    /// validation), `attach NAME`, `detach NAME` and `force-detach NAME` (a VM write with
    /// `detachOption: ForceDetach`); an operation carries its request's. Several disks can
    /// share one request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
}

/// One ARM request and the simulator's answer in full, kept only while
/// [`World::record_exchanges`] is on: what a test checks against Azure's API definitions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Exchange {
    pub method: String,
    /// The request's path, without its query.
    pub path: String,
    /// The `api-version` query parameter, if the request had one.
    pub api_version: Option<String>,
    /// The request's body: JSON as parsed, other text as a JSON string, `None` when empty.
    pub request_body: Option<Value>,
    pub status: u16,
    /// The answer's body, read the same way as the request's.
    pub response_body: Option<Value>,
}

/// A body as an [`Exchange`] keeps it.
fn exchange_body(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

/// The ARM error code in an error body, if it is one.
fn error_code(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    Some(body.get("error")?.get("code")?.as_str()?.to_owned())
}

impl World {
    /// Every request answered and operation ended so far, in order.
    pub fn events(&self) -> Vec<SimEvent> {
        self.events.clone()
    }

    /// From now on, keeps every request and answer in full (off by default: bodies cost
    /// memory a long-running simulator should not spend).
    pub fn record_exchanges(&mut self) {
        self.exchanges.get_or_insert_with(Vec::new);
    }

    /// Every request and answer kept since [`World::record_exchanges`], in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.clone().unwrap_or_default()
    }

    /// Records a request with its answer and the disks it asks for.
    pub(super) fn record_request(
        &mut self,
        request: &SimRequest,
        response: &SimResponse,
        disks: Vec<String>,
    ) {
        if let Some(exchanges) = &mut self.exchanges {
            exchanges.push(Exchange {
                method: request.method.clone(),
                path: request.path.clone(),
                api_version: request.query_value("api-version").map(str::to_owned),
                request_body: exchange_body(&request.body),
                status: response.status,
                response_body: exchange_body(&response.body),
            });
        }
        self.events.push(SimEvent {
            what: "request",
            method: request.method.clone(),
            path: request.path.clone(),
            outcome: response.status.to_string(),
            code: (response.status >= 400)
                .then(|| error_code(&response.body))
                .flatten(),
            disks,
        });
    }

    pub(super) fn log_operation_end(&mut self, record: &OperationRecord, outcome: &str) {
        self.events.push(SimEvent {
            what: "operation",
            method: record.request.0.clone(),
            path: record.request.1.clone(),
            outcome: outcome.to_owned(),
            code: record
                .failure
                .as_ref()
                .and_then(|failure| failure.get("code"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            disks: record.disks.clone(),
        });
    }

    /// What a request asks of managed disks (`SimEvent::disks`), read before it is handled.
    pub(super) fn disk_changes(&self, request: &SimRequest) -> Vec<String> {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return Vec::new();
        };
        let path = lower(&request.path);
        if request.method == "POST"
            && (path.ends_with("/moveresources") || path.ends_with("/validatemoveresources"))
        {
            return body
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|id| kind_of(id) == Kind::Disk)
                .map(|id| format!("move {}", name_of(id)))
                .collect();
        }
        if !matches!(request.method.as_str(), "PUT" | "PATCH")
            || kind_of(&request.path) != Kind::VirtualMachine
        {
            return Vec::new();
        }
        body.pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let id = entry.pointer("/managedDisk/id").and_then(Value::as_str)?;
                if entry.get("toBeDetached").and_then(Value::as_bool) == Some(true) {
                    let forced = entry
                        .get("detachOption")
                        .and_then(Value::as_str)
                        .is_some_and(|option| option.eq_ignore_ascii_case("ForceDetach"));
                    let action = if forced { "force-detach" } else { "detach" };
                    return Some(format!("{action} {}", name_of(id)));
                }
                let holder = self
                    .resources
                    .get(&lower(id))
                    .and_then(|disk| disk.body.get("managedBy"))
                    .and_then(Value::as_str)
                    .map(lower);
                (holder.as_deref() != Some(path.as_str()))
                    .then(|| format!("attach {}", name_of(id)))
            })
            .collect()
    }
}
