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
                ) =>
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
