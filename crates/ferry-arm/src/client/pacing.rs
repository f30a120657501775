//! Pacing by ARM's remaining-count headers: the client slows itself before ARM throttles it,
//! not after.
//!
//! ARM counts each principal's requests per subscription in token buckets, one for reads, one
//! for writes, one for deletes, and says on every answer how many tokens remain
//! (`x-ms-ratelimit-remaining-subscription-reads` and its `-writes`, `-deletes` and `-global-*`
//! siblings). The [`Pacer`], one per client and shared by its clones, keeps an estimate of each
//! bucket: the last count ARM reported, less the requests sent since the request that count
//! answered, plus the refill since, at the rate ARM documents. Far from the limit a request
//! goes at once (a lock, a map lookup); once fewer than `reserve` tokens would remain, each
//! request waits until the estimate has refilled, which spaces requests at the refill rate.
//! Counting every request sent after the one whose count it holds makes the estimate err low:
//! a request already counted by ARM is subtracted again, never forgotten.
//!
//! A 429 is still possible (requests in flight before the first count came back, another
//! program under the same principal); the pipeline's retry waits its `Retry-After`, and the
//! retried request passes through the pacer again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Method, Request};
use tokio::time::Instant;

/// How the client paces itself; the rates are ARM's documented refill rates per principal
/// ("Understand how Azure Resource Manager throttles requests": reads 25 a second, writes and
/// deletes 10 a second).
#[derive(Debug, Clone, PartialEq)]
pub struct PacingSettings {
    pub enabled: bool,
    pub reads_per_second: f64,
    pub writes_per_second: f64,
    pub deletes_per_second: f64,
    /// Tokens left untouched in each bucket, for requests in flight and other programs of the
    /// same principal: below it, requests are spaced at the refill rate.
    pub reserve: u32,
}

impl Default for PacingSettings {
    fn default() -> Self {
        PacingSettings {
            enabled: true,
            reads_per_second: 25.0,
            writes_per_second: 10.0,
            deletes_per_second: 10.0,
            reserve: 10,
        }
    }
}

/// What the pacer did, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PacingReport {
    /// Requests that went through the pacer (each try counts).
    pub requests: u64,
    /// Requests it held back because their bucket was nearly empty.
    pub delayed: u64,
    /// The time it held them back, in all.
    pub total_delay: Duration,
    /// Answers that were `429 Too Many Requests`.
    pub throttled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Category {
    Reads,
    Writes,
    Deletes,
}

impl Category {
    fn of(method: Method) -> Self {
        match method {
            Method::Get | Method::Head => Category::Reads,
            Method::Delete => Category::Deletes,
            _ => Category::Writes,
        }
    }

    fn header(self) -> (&'static str, &'static str) {
        match self {
            Category::Reads => (
                "x-ms-ratelimit-remaining-subscription-reads",
                "x-ms-ratelimit-remaining-subscription-global-reads",
            ),
            Category::Writes => (
                "x-ms-ratelimit-remaining-subscription-writes",
                "x-ms-ratelimit-remaining-subscription-global-writes",
            ),
            Category::Deletes => (
                "x-ms-ratelimit-remaining-subscription-deletes",
                "x-ms-ratelimit-remaining-subscription-global-deletes",
            ),
        }
    }
}

/// One bucket as the client believes it to be.
#[derive(Debug, Clone)]
struct Estimate {
    /// `None` until ARM first reports the bucket.
    tokens: Option<f64>,
    at: Instant,
    /// Requests handed a slot so far; a request's sequence number is the count before it.
    issued: u64,
    /// The sequence number of the request whose count `tokens` comes from.
    newest: Option<u64>,
}

/// The client's pacer: its settings, every bucket it has heard of, and what it did.
#[derive(Debug)]
pub(crate) struct Pacer {
    settings: PacingSettings,
    buckets: Mutex<HashMap<(String, Category), Estimate>>,
    report: Mutex<PacingReport>,
}

impl Pacer {
    pub(crate) fn new(settings: PacingSettings) -> Arc<Self> {
        Arc::new(Pacer {
            settings,
            buckets: Mutex::new(HashMap::new()),
            report: Mutex::new(PacingReport::default()),
        })
    }

    pub(crate) fn report(&self) -> PacingReport {
        *self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rate(&self, category: Category) -> f64 {
        let rate = match category {
            Category::Reads => self.settings.reads_per_second,
            Category::Writes => self.settings.writes_per_second,
            Category::Deletes => self.settings.deletes_per_second,
        };
        rate.max(0.001)
    }

    /// Waits, if the bucket is nearly empty, until a token can be spent; returns the request's
    /// sequence number in its bucket.
    async fn take(&self, key: &(String, Category)) -> u64 {
        let rate = self.rate(key.1);
        let floor = f64::from(self.settings.reserve) + 1.0;
        let mut waited = Duration::ZERO;
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let estimate = buckets.entry(key.clone()).or_insert(Estimate {
                    tokens: None,
                    at: now,
                    issued: 0,
                    newest: None,
                });
                if let Some(tokens) = &mut estimate.tokens {
                    *tokens += now.saturating_duration_since(estimate.at).as_secs_f64() * rate;
                }
                estimate.at = now;
                match estimate.tokens {
                    Some(tokens) if tokens < floor => {
                        Duration::from_secs_f64((floor - tokens) / rate)
                    }
                    _ => {
                        if let Some(tokens) = &mut estimate.tokens {
                            *tokens -= 1.0;
                        }
                        let sequence = estimate.issued;
                        estimate.issued += 1;
                        drop(buckets);
                        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
                        report.requests += 1;
                        if !waited.is_zero() {
                            report.delayed += 1;
                            report.total_delay += waited;
                        }
                        return sequence;
                    }
                }
            };
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// Takes in what ARM said remains after request `sequence`.
    fn observe(
        &self,
        key: &(String, Category),
        sequence: u64,
        headers: &azure_core::http::headers::Headers,
        status: u16,
    ) {
        if status == 429 {
            self.report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .throttled += 1;
        }
        let (own, global) = key.1.header();
        let read = |name: &'static str| {
            headers
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
                .and_then(|value| value.trim().parse::<f64>().ok())
        };
        let remaining = match (read(own), read(global)) {
            (Some(own), Some(global)) => own.min(global),
            (Some(count), None) | (None, Some(count)) => count,
            (None, None) => return,
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(estimate) = buckets.get_mut(key) else {
            return;
        };
        if estimate.newest.is_some_and(|newest| newest > sequence) {
            return;
        }
        let sent_since = estimate.issued.saturating_sub(sequence + 1);
        estimate.tokens = Some(remaining - sent_since as f64);
        estimate.at = Instant::now();
        estimate.newest = Some(sequence);
    }
}

/// The bucket a request counts against: its subscription and kind, or `None` for a request
/// outside any subscription.
fn bucket_of(request: &Request) -> Option<(String, Category)> {
    let mut segments = request.url().path_segments()?;
    let first = segments.next()?;
    if !first.eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let subscription = segments.next()?.to_ascii_lowercase();
    Some((subscription, Category::of(request.method())))
}

#[async_trait::async_trait]
impl Policy for Pacer {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let bucket = self.settings.enabled.then(|| bucket_of(request)).flatten();
        let Some(bucket) = bucket else {
            return next[0].send(ctx, request, &next[1..]).await;
        };
        let sequence = self.take(&bucket).await;
        let response = next[0].send(ctx, request, &next[1..]).await?;
        self.observe(
            &bucket,
            sequence,
            response.headers(),
            u16::from(response.status()),
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::headers::{HeaderName, Headers};

    fn remaining(count: u32) -> Headers {
        let mut headers = Headers::new();
        headers.insert(
            HeaderName::from_static("x-ms-ratelimit-remaining-subscription-writes"),
            count.to_string(),
        );
        headers
    }

    #[tokio::test(start_paused = true)]
    async fn far_from_the_limit_nothing_waits_and_near_it_requests_are_spaced_at_the_refill_rate() {
        let pacer = Pacer::new(PacingSettings {
            writes_per_second: 10.0,
            reserve: 2,
            ..PacingSettings::default()
        });
        let key = ("s".to_owned(), Category::Writes);
        let start = Instant::now();
        // Unknown bucket: at once.
        let first = pacer.take(&key).await;
        pacer.observe(&key, first, &remaining(5), 200);
        // 5 remain: requests go at once while more than the reserve would remain.
        for count in [4, 3] {
            let sequence = pacer.take(&key).await;
            pacer.observe(&key, sequence, &remaining(count), 200);
        }
        pacer.take(&key).await;
        assert_eq!(Instant::now(), start, "nothing waited far from the limit");
        // 2 remain, the reserve: each further request waits for one token of refill.
        for _ in 0..2 {
            let before = Instant::now();
            pacer.take(&key).await;
            let waited = Instant::now() - before;
            assert!(
                waited >= Duration::from_millis(100) && waited < Duration::from_millis(101),
                "{waited:?}"
            );
        }
        let report = pacer.report();
        assert_eq!((report.requests, report.delayed), (6, 2));
        assert!(report.total_delay >= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_count_never_overrides_a_newer_one() {
        let pacer = Pacer::new(PacingSettings {
            reserve: 0,
            ..PacingSettings::default()
        });
        let key = ("s".to_owned(), Category::Writes);
        let older = pacer.take(&key).await;
        let newer = pacer.take(&key).await;
        pacer.observe(&key, newer, &remaining(0), 429);
        pacer.observe(&key, older, &remaining(100), 200);
        let before = Instant::now();
        pacer.take(&key).await;
        assert!(Instant::now() - before >= Duration::from_millis(100));
        assert_eq!(pacer.report().throttled, 1);
    }
}
