//! How many ARM requests the simulator answered, how many of them were reads and how many it
//! throttled (`429`, by its token buckets or an injected fault): what a benchmark or a test
//! counts a client's requests by (`GET /ferry-sim/stats`, [`crate::Simulator::request_stats`]);
//! and how many times Network refused a load balancer's or NIC's references, to ARM's clients
//! and to the clusters' cloud controllers (`GET /ferry-sim/refusals`,
//! [`crate::Simulator::refusal_counts`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{SimRequest, SimResponse, World};

/// The codes of Network's refusals of references that `RefusalCounts` counts for ARM's clients.
const REFERENCE_REFUSALS: &[&str] = &[
    "PublicIPAddressInUse",
    "PublicIPAddressCannotBeDeleted",
    "PublicIPReferencedByMultipleIPConfigs",
    "PublicIPAndLBSkuDoNotMatch",
    "InvalidResourceReference",
    "FrontendIPConfigHasNoSubnetOrPublicIP",
    "FrontendIPConfigHasBothSubnetAndPublicIP",
];

/// Refusals by code: those of Network's reference checks answered to ARM's clients, and every
/// refusal of a cloud controller's write (a busy load balancer's too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalCounts {
    pub arm: BTreeMap<String, u64>,
    pub cloud_controller: BTreeMap<String, u64>,
}

/// The counts since the simulator started or since they were last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Every ARM request answered, whatever the answer (token and control requests are not
    /// ARM's and not counted).
    pub requests: u64,
    /// Those that were GET or HEAD, as ARM's throttling counts reads.
    pub reads: u64,
    /// Those answered `429`.
    pub throttled: u64,
}

impl World {
    pub(crate) fn count_request(&mut self, request: &SimRequest, response: &SimResponse) {
        self.request_stats.requests += 1;
        if matches!(request.method.as_str(), "GET" | "HEAD") {
            self.request_stats.reads += 1;
        }
        if response.status == 429 {
            self.request_stats.throttled += 1;
        }
        if response.status == 400
            && let Ok(body) = serde_json::from_slice::<Value>(&response.body)
            && let Some(code) = body.pointer("/error/code").and_then(Value::as_str)
            && REFERENCE_REFUSALS.contains(&code)
        {
            *self.refusal_counts.arm.entry(code.to_owned()).or_default() += 1;
        }
    }

    pub(super) fn count_cloud_controller_refusal(&mut self, code: &str) {
        *self
            .refusal_counts
            .cloud_controller
            .entry(code.to_owned())
            .or_default() += 1;
    }

    pub fn refusal_counts(&self) -> RefusalCounts {
        self.refusal_counts.clone()
    }

    pub fn request_stats(&self) -> RequestStats {
        self.request_stats
    }

    pub fn reset_request_stats(&mut self) {
        self.request_stats = RequestStats::default();
    }
}
