//! The faults a test or a scenario adds to the world: refused or raw answers to requests,
//! operations that fail or hang, API servers taken down.

use serde_json::{Value, json};

use super::ids::name_of;
use super::{SimRequest, SimResponse, World};
use crate::faults::{ActiveFault, ApiServerDownMode, Fault};

impl World {
    pub fn add_fault(&mut self, fault: Fault) {
        match &fault {
            Fault::ApiServerDown { cluster, mode } => self.set_api_server(cluster, Some(*mode)),
            Fault::ApiServerUp { cluster } => self.set_api_server(cluster, None),
            Fault::AnotherWriter {
                resource,
                seconds,
                after_seconds,
                at_first_write,
            } => self.add_other_writer(resource, *seconds, *after_seconds, *at_first_write),
            _ => self.faults.push(ActiveFault::new(fault)),
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
        self.other_writers.clear();
        for server in self.readyz.values() {
            server.set_down(None);
        }
    }

    fn set_api_server(&mut self, cluster: &str, down: Option<ApiServerDownMode>) {
        for (id, server) in &self.readyz {
            if id.eq_ignore_ascii_case(cluster) || name_of(id).eq_ignore_ascii_case(cluster) {
                server.set_down(down);
            }
        }
    }

    /// A fault response for this ARM request, if one applies.
    pub fn request_fault(&mut self, request: &SimRequest) -> Option<SimResponse> {
        let time_scale = self.settings.time_scale;
        for active in &mut self.faults {
            match active.fault.clone() {
                Fault::Throttle {
                    share,
                    retry_after_seconds,
                    count,
                } if active.hit_share(share, count) => {
                    let scaled_milliseconds =
                        (retry_after_seconds as f64 * 1000.0 * time_scale).round() as u64;
                    return Some(
                        SimResponse::error(
                            429,
                            "TooManyRequests",
                            "the request is being throttled: retry after the given time",
                        )
                        .with_header("Retry-After", retry_after_seconds.to_string())
                        .with_header("x-ms-retry-after-ms", scaled_milliseconds.to_string()),
                    );
                }
                Fault::ServerError { share, count } if active.hit_share(share, count) => {
                    return Some(SimResponse::error(
                        500,
                        "InternalServerError",
                        "the simulator was told to fail this request",
                    ));
                }
                Fault::RawResponse {
                    method,
                    path_contains,
                    status,
                    headers,
                    body,
                    count,
                } if active.hit_match(
                    &method,
                    &path_contains,
                    count,
                    &request.method,
                    &request.path,
                ) || (list_carries(&self.resources, request, &path_contains)
                    && active.hit_match(&method, "", count, &request.method, &request.path)) =>
                {
                    return Some(SimResponse {
                        status,
                        headers,
                        body: body.into_bytes(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// Whether an operation started by this request should fail or hang.
    pub(super) fn operation_fault(&mut self, method: &str, path: &str) -> (Option<Value>, bool) {
        for active in &mut self.faults {
            match active.fault.clone() {
                Fault::FailOperation {
                    method: wanted,
                    path_contains,
                    code,
                    message,
                    count,
                } if active.hit_match(&wanted, &path_contains, count, method, path) => {
                    return (Some(json!({"code": code, "message": message})), false);
                }
                Fault::HangOperation {
                    method: wanted,
                    path_contains,
                    count,
                } if active.hit_match(&wanted, &path_contains, count, method, path) => {
                    return (None, true);
                }
                _ => {}
            }
        }
        (None, false)
    }
}

/// Whether `request` lists a resource whose path holds `path_contains`: a fault that makes
/// ARM unable to read a resource fails the lists that would show it too (its group's list of
/// its type; the subscription's list, and with `statusOnly=true` its instance view), so that
/// the resource stays unreadable however a client reads it.
fn list_carries(
    resources: &std::collections::BTreeMap<String, super::Stored>,
    request: &SimRequest,
    path_contains: &str,
) -> bool {
    if request.method != "GET" || path_contains.is_empty() {
        return false;
    }
    let wanted = path_contains.to_ascii_lowercase();
    let path = request.path.trim_end_matches('/').to_ascii_lowercase();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let status_only = request
        .query_value("statusOnly")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let shows = |key: &str| {
        key.contains(&wanted) || (status_only && format!("{key}/instanceview").contains(&wanted))
    };
    match segments.as_slice() {
        ["subscriptions", _, "resourcegroups", _, "providers", _, _] => {
            let prefix = format!("{path}/");
            resources
                .keys()
                .filter(|key| key.starts_with(&prefix) && !key[prefix.len()..].contains('/'))
                .any(|key| shows(key))
        }
        [
            "subscriptions",
            subscription,
            "providers",
            namespace,
            resource_type,
        ] => {
            let prefix = format!("/subscriptions/{subscription}/resourcegroups/");
            let middle = format!("/providers/{namespace}/{resource_type}/");
            resources
                .keys()
                .filter(|key| key.starts_with(&prefix))
                .filter(|key| {
                    key.find(&middle).is_some_and(|at| {
                        let rest = &key[at + middle.len()..];
                        !rest.contains('/') && key[prefix.len()..at].split('/').count() == 1
                    })
                })
                .any(|key| shows(key))
        }
        _ => false,
    }
}
