//! A closed-loop load runner: N workers, each with its own one-connection
//! HTTP client, send requests back to back until a deadline or a request budget.

use crate::stats::Latencies;
use indicatif::ProgressBar;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure messages kept per scenario.
const FAILURE_SAMPLES: usize = 5;

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests sent (each completed, successfully or not).
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Latencies of the successful requests.
    pub latencies: Latencies,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// The first few failure descriptions.
    pub failures: Vec<String>,
}

impl Outcome {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        let ok = self.requests.saturating_sub(self.failed) as f64;
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            ok / secs
        } else {
            0.0
        }
    }
}

/// Builds a client that keeps one idle connection to the server: one per worker.
pub fn one_connection_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
}

/// A small xorshift generator (no `rand` dependency); good enough to pick ids.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Workers, each with its own connection.
    pub concurrency: usize,
    /// Stop starting requests after this long.
    pub duration: Duration,
    /// Stop after this many requests in all.
    pub max_requests: u64,
}

/// Runs `request(client, sequence, random)` from `limits.concurrency` workers
/// until the deadline or the request budget; `sequence` counts requests from 0
/// across workers, `random` is a fresh pseudo-random number. `request` returns
/// `Err(description)` for a failed request.
pub async fn run<F, Fut>(limits: Limits, request: F) -> Result<Outcome, reqwest::Error>
where
    F: Fn(reqwest::Client, u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    run_with_progress(limits, ProgressBar::hidden(), request).await
}

/// [`run`], advancing `progress` by one per completed request and clearing it
/// at the end (set-up phases: [`crate::progress::bar`]).
pub async fn run_with_progress<F, Fut>(
    limits: Limits,
    progress: ProgressBar,
    request: F,
) -> Result<Outcome, reqwest::Error>
where
    F: Fn(reqwest::Client, u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let tickets = Arc::new(AtomicU64::new(0));
    let clients = (0..limits.concurrency.max(1))
        .map(|_| one_connection_client())
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut workers = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let request = request.clone();
        let tickets = tickets.clone();
        let progress = progress.clone();
        let max = limits.max_requests;
        workers.spawn(async move {
            let mut rng = Rng::new(0x5EED_0000 + index as u64 * 7919);
            let mut outcome = Outcome {
                latencies: Latencies::with_capacity(4096),
                ..Outcome::default()
            };
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let sequence = tickets.fetch_add(1, Ordering::Relaxed);
                if sequence >= max {
                    break;
                }
                let sent = Instant::now();
                let result = request(client.clone(), sequence, rng.next_u64()).await;
                outcome.requests += 1;
                progress.inc(1);
                match result {
                    Ok(()) => outcome.latencies.record(sent.elapsed()),
                    Err(failure) => {
                        outcome.failed += 1;
                        if outcome.failures.len() < FAILURE_SAMPLES {
                            outcome.failures.push(failure);
                        }
                    }
                }
            }
            outcome
        });
    }
    let mut total = Outcome {
        latencies: Latencies::with_capacity(65536),
        ..Outcome::default()
    };
    while let Some(joined) = workers.join_next().await {
        let Ok(outcome) = joined else {
            total.failed += 1;
            continue;
        };
        total.requests += outcome.requests;
        total.failed += outcome.failed;
        total.latencies.merge(outcome.latencies);
        for failure in outcome.failures {
            if total.failures.len() < FAILURE_SAMPLES {
                total.failures.push(failure);
            }
        }
    }
    total.elapsed = start.elapsed();
    progress.finish_and_clear();
    Ok(total)
}

/// Describes a failed response: status and the start of the body.
pub async fn describe_failure(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let snippet: String = body.chars().take(200).collect();
    format!("HTTP {status}: {snippet}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rng_never_sticks_at_zero() {
        let mut rng = super::Rng::new(0);
        assert!((0..1000).all(|_| rng.next_u64() != 0));
    }
}
