//! How many ARM requests the simulator answered, how many of them were reads and how many it
//! throttled (`429`, by its token buckets or an injected fault): what a benchmark or a test
//! counts a client's requests by (`GET /ferry-sim/stats`, [`crate::Simulator::request_stats`]).

use serde::Serialize;

use super::{SimRequest, SimResponse, World};

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
    }

    pub fn request_stats(&self) -> RequestStats {
        self.request_stats
    }

    pub fn reset_request_stats(&mut self) {
        self.request_stats = RequestStats::default();
    }
}
