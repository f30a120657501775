//! Faults the simulator injects on request: throttling, server errors, failed or hung
//! operations, canned raw responses, AKS API servers that stop answering, and another writer
//! busy on a resource.

use serde::{Deserialize, Serialize};

/// One fault, as the control API and scenario files spell it (`kind = "throttle"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The cluster's `/readyz` stops answering (`mode = "refuse"` closes connections at once,
    /// `"hang"` holds them open without a reply). Matched on the cluster's name or id.
    ApiServerDown {
        cluster: String,
        #[serde(default)]
        mode: ApiServerDownMode,
    },
    /// The cluster's API server answers again.
    ApiServerUp { cluster: String },
    /// 429 with `Retry-After` for a share (0.0 to 1.0) of ARM requests, spread evenly.
    Throttle {
        share: f64,
        #[serde(default = "default_retry_after_seconds")]
        retry_after_seconds: u64,
        /// Stop after this many 429s (`None`: for ever).
        #[serde(default)]
        count: Option<u32>,
    },
    /// 500 InternalServerError for a share of ARM requests.
    ServerError {
        share: f64,
        #[serde(default)]
        count: Option<u32>,
    },
    /// The next long-running operation whose request matches ends `Failed` with this error.
    FailOperation {
        #[serde(default)]
        method: Option<String>,
        path_contains: String,
        #[serde(default = "default_failure_code")]
        code: String,
        #[serde(default = "default_failure_message")]
        message: String,
        #[serde(default)]
        count: Option<u32>,
    },
    /// The next long-running operation whose request matches never finishes.
    HangOperation {
        #[serde(default)]
        method: Option<String>,
        path_contains: String,
        #[serde(default)]
        count: Option<u32>,
    },
    /// Someone else (a VM extension update, a person changing the cluster in the portal)
    /// starts one write on a resource that runs for `seconds` of Azure's time (scaled like
    /// every operation). While it runs, every write on the resource is refused as ARM refuses
    /// concurrent writes (`409 ConflictingConcurrentWriteNotAllowed` on a VM or a disk, `409
    /// OperationNotAllowed` on an AKS cluster); reads are answered. It starts at once, after
    /// `after_seconds` (scaled), or, with `at_first_write`, just before the first write
    /// anyone sends to the resource, which it thus refuses. `resource` is an id, or a name
    /// that matches every resource of that name.
    AnotherWriter {
        resource: String,
        seconds: u64,
        #[serde(default)]
        after_seconds: u64,
        #[serde(default)]
        at_first_write: bool,
    },
    /// A canned answer for matching ARM requests (malformed bodies, odd headers, redirects).
    RawResponse {
        #[serde(default)]
        method: Option<String>,
        path_contains: String,
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
        #[serde(default)]
        count: Option<u32>,
    },
}

/// How a down API server behaves towards a prober.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiServerDownMode {
    #[default]
    Refuse,
    Hang,
}

fn default_retry_after_seconds() -> u64 {
    10
}

fn default_failure_code() -> String {
    "InternalOperationError".to_owned()
}

fn default_failure_message() -> String {
    "the simulator was told to fail this operation".to_owned()
}

/// A fault with its bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub fault: Fault,
    pub seen: u64,
    pub fired: u32,
}

impl ActiveFault {
    pub fn new(fault: Fault) -> Self {
        ActiveFault {
            fault,
            seen: 0,
            fired: 0,
        }
    }

    fn exhausted(&self, count: Option<u32>) -> bool {
        count.is_some_and(|limit| self.fired >= limit)
    }

    /// Decides, deterministically, whether the next request gets the fault: with share p,
    /// request n is hit when floor((n+1)p) > floor(np), which spreads hits evenly.
    pub fn hit_share(&mut self, share: f64, count: Option<u32>) -> bool {
        if self.exhausted(count) {
            return false;
        }
        let share = share.clamp(0.0, 1.0);
        let before = (self.seen as f64 * share).floor();
        self.seen += 1;
        let after = (self.seen as f64 * share).floor();
        if after > before {
            self.fired += 1;
            true
        } else {
            false
        }
    }

    pub fn hit_match(
        &mut self,
        method: &Option<String>,
        path_contains: &str,
        count: Option<u32>,
        request_method: &str,
        path: &str,
    ) -> bool {
        if self.exhausted(count) {
            return false;
        }
        let method_matches = method
            .as_ref()
            .is_none_or(|wanted| wanted.eq_ignore_ascii_case(request_method));
        if method_matches
            && path
                .to_ascii_lowercase()
                .contains(&path_contains.to_ascii_lowercase())
        {
            self.fired += 1;
            true
        } else {
            false
        }
    }
}
