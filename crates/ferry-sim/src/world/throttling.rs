//! ARM's own throttling, as "Understand how Azure Resource Manager throttles requests"
//! (learn.microsoft.com, azure-resource-manager/management/request-limits-and-throttling)
//! describes it since 2024: a token bucket per subscription, per principal and per kind of
//! request (reads, writes, deletes), and a global one per subscription and kind, 15 times as
//! large, that every principal shares. Each bucket holds `size` tokens and gets `refill_per_second`
//! back; a request takes one token from both of its buckets, or is refused with `429
//! SubscriptionRequestsThrottled` and `Retry-After` (whole seconds until a token is back) when
//! either is empty. A refused request takes no token. Every answer carries what remains:
//! `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` for the principal's bucket and
//! `x-ms-ratelimit-remaining-subscription-global-{reads,writes,deletes}` for the global one.
//!
//! The buckets refill in real time, not scaled by the time scale: they limit how fast a client
//! may send requests, which the time scale does not change (it shortens how long operations
//! take). Scaled, a test's requests would look thousands of times faster than they are and be
//! throttled at once, or, scaled the other way, never.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ids::lower;
use super::{SimRequest, SimResponse, World};

/// One bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    pub size: u32,
    pub refill_per_second: f64,
}

/// ARM's limits per principal; the global limits are `global_multiplier` times as large.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmThrottling {
    pub reads: TokenBucket,
    pub writes: TokenBucket,
    pub deletes: TokenBucket,
    #[serde(default = "default_global_multiplier")]
    pub global_multiplier: u32,
}

fn default_global_multiplier() -> u32 {
    15
}

impl ArmThrottling {
    /// Azure's documented limits: reads 250 tokens and 25 a second, writes and deletes 200 and
    /// 10 a second, per subscription and principal; 15 times that per subscription.
    pub fn azure() -> Self {
        ArmThrottling {
            reads: TokenBucket {
                size: 250,
                refill_per_second: 25.0,
            },
            writes: TokenBucket {
                size: 200,
                refill_per_second: 10.0,
            },
            deletes: TokenBucket {
                size: 200,
                refill_per_second: 10.0,
            },
            global_multiplier: default_global_multiplier(),
        }
    }

    /// The same `size` and refill rate for every kind of request, for tests that want to reach
    /// the limit with a few requests.
    pub fn uniform(size: u32, refill_per_second: f64) -> Self {
        let bucket = TokenBucket {
            size,
            refill_per_second,
        };
        ArmThrottling {
            reads: bucket,
            writes: bucket,
            deletes: bucket,
            global_multiplier: default_global_multiplier(),
        }
    }

    fn bucket(&self, category: Category, global: bool) -> TokenBucket {
        let bucket = match category {
            Category::Read => self.reads,
            Category::Write => self.writes,
            Category::Delete => self.deletes,
        };
        if global {
            TokenBucket {
                size: bucket.size.saturating_mul(self.global_multiplier.max(1)),
                refill_per_second: bucket.refill_per_second
                    * f64::from(self.global_multiplier.max(1)),
            }
        } else {
            bucket
        }
    }
}

/// The kind of request ARM counts: GET and HEAD read, DELETE deletes, the rest write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Category {
    Read,
    Write,
    Delete,
}

impl Category {
    fn of(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => Category::Read,
            "DELETE" => Category::Delete,
            _ => Category::Write,
        }
    }

    /// `reads`, as the headers spell it.
    fn plural(self) -> &'static str {
        match self {
            Category::Read => "reads",
            Category::Write => "writes",
            Category::Delete => "deletes",
        }
    }

    /// `read`, as the refusal's message spells it.
    fn singular(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The limits and every bucket's state.
#[derive(Debug, Clone)]
pub(super) struct Throttling {
    limits: ArmThrottling,
    /// `{subscription}|{principal or "global"}|{category}` to its bucket.
    buckets: HashMap<String, Bucket>,
}

impl Throttling {
    fn tokens(&mut self, key: &str, limits: TokenBucket, now: Instant) -> f64 {
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(limits.size),
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * limits.refill_per_second).min(f64::from(limits.size));
        bucket.updated = now;
        bucket.tokens
    }
}

/// Who sent a request, as ARM's buckets count principals: the application the simulator's
/// token endpoint issued the token to, or, for a token it did not issue (a test's static
/// token), a principal of its own per token.
fn principal_of(request: &SimRequest) -> String {
    let token = request
        .header("authorization")
        .and_then(|value| value.get(7..))
        .unwrap_or_default();
    if token.starts_with("ferry-sim-token-") {
        return crate::server::CLIENT_ID.to_owned();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl World {
    /// Turns ARM's throttling on with `limits` (full buckets), or off.
    pub fn set_throttling(&mut self, limits: Option<ArmThrottling>) {
        self.throttling = limits.map(|limits| Throttling {
            limits,
            buckets: HashMap::new(),
        });
    }

    /// Takes a token for `request` from its buckets: the headers to add to its answer, or the
    /// 429 that refuses it.
    pub(super) fn charge(
        &mut self,
        request: &SimRequest,
    ) -> Result<Vec<(String, String)>, SimResponse> {
        let Some(throttling) = &mut self.throttling else {
            return Ok(Vec::new());
        };
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let Some(subscription) = segments
            .first()
            .filter(|first| first.eq_ignore_ascii_case("subscriptions"))
            .and(segments.get(1))
        else {
            return Ok(Vec::new());
        };
        let subscription = lower(subscription);
        let category = Category::of(&request.method);
        let principal = principal_of(request);
        let now = Instant::now();
        let limits = throttling.limits;
        let own_key = format!("{subscription}|{principal}|{}", category.plural());
        let global_key = format!("{subscription}|global|{}", category.plural());
        let own_limits = limits.bucket(category, false);
        let global_limits = limits.bucket(category, true);
        let own = throttling.tokens(&own_key, own_limits, now);
        let global = throttling.tokens(&global_key, global_limits, now);
        let headers = |own: f64, global: f64| {
            vec![
                (
                    format!(
                        "x-ms-ratelimit-remaining-subscription-{}",
                        category.plural()
                    ),
                    (own.max(0.0).floor() as u64).to_string(),
                ),
                (
                    format!(
                        "x-ms-ratelimit-remaining-subscription-global-{}",
                        category.plural()
                    ),
                    (global.max(0.0).floor() as u64).to_string(),
                ),
            ]
        };
        if own < 1.0 || global < 1.0 {
            let wait_for = |tokens: f64, limits: TokenBucket| {
                if tokens >= 1.0 || limits.refill_per_second <= 0.0 {
                    0.0
                } else {
                    (1.0 - tokens) / limits.refill_per_second
                }
            };
            let wait = wait_for(own, own_limits).max(wait_for(global, global_limits));
            let seconds = Duration::from_secs_f64(wait).as_secs_f64().ceil().max(1.0) as u64;
            let mut refusal = SimResponse::error(
                429,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of '{}' requests for subscription '{subscription}' actor '{principal}' exceeded. Please try again after '{seconds}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information.",
                    category.singular()
                ),
            )
            .with_header("Retry-After", seconds.to_string());
            for (name, value) in headers(own, global) {
                refusal = refusal.with_header(&name, value);
            }
            return Err(refusal);
        }
        for key in [&own_key, &global_key] {
            if let Some(bucket) = throttling.buckets.get_mut(key) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(headers(own - 1.0, global - 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_size() {
        let mut throttling = Throttling {
            limits: ArmThrottling::uniform(3, 2.0),
            buckets: HashMap::new(),
        };
        let limits = TokenBucket {
            size: 3,
            refill_per_second: 2.0,
        };
        let start = Instant::now();
        assert_eq!(throttling.tokens("k", limits, start), 3.0);
        throttling.buckets.get_mut("k").unwrap().tokens = 0.0;
        let half_second = start + Duration::from_millis(500);
        assert!((throttling.tokens("k", limits, half_second) - 1.0).abs() < 1e-9);
        let much_later = start + Duration::from_secs(60);
        assert_eq!(throttling.tokens("k", limits, much_later), 3.0);
    }
}
