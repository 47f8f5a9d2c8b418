//! Latency samples and the numbers printed for each scenario.

use serde::Serialize;
use std::time::Duration;

/// Latencies of completed requests, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    /// An empty set with room for `capacity` samples.
    pub fn with_capacity(capacity: usize) -> Self {
        Latencies {
            samples: Vec::with_capacity(capacity),
            sorted: true,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, latency: Duration) {
        self.samples
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
        self.sorted = false;
    }

    /// The `p`-th percentile (0–100), nearest-rank method: the smallest sample
    /// such that at least `p` % of all samples are less than or equal to it.
    /// `None` without samples.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        Some(Duration::from_nanos(
            self.samples[nearest_rank_index(self.samples.len(), p)],
        ))
    }

    /// The largest sample.
    pub fn max(&self) -> Option<Duration> {
        self.samples.iter().copied().max().map(Duration::from_nanos)
    }
}

/// Zero-based index of the nearest-rank `p`-th percentile among `n` sorted samples (`n > 0`).
pub(crate) fn nearest_rank_index(n: usize, p: f64) -> usize {
    let p = if p.is_nan() {
        100.0
    } else {
        p.clamp(0.0, 100.0)
    };
    // rank = ceil(p/100 * n), at least 1; computed in integers where possible
    // so that e.g. p99 of 100 samples is exactly the 99th.
    let scaled = (p * 1000.0).round() as u128; // p in thousandths of a percent
    let rank = (scaled * n as u128).div_ceil(100_000).max(1);
    usize::try_from(rank - 1).unwrap_or(usize::MAX).min(n - 1)
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name, e.g. `register-64`.
    pub scenario: String,
    /// How it was measured (concurrency, duration or count, store size).
    pub how: String,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (transport error, non-2xx or wrong content).
    pub failed: u64,
    /// Wall time of the measured phase, seconds.
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub throughput: Option<f64>,
    /// Median latency, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
    /// Largest latency, milliseconds.
    pub max_ms: Option<f64>,
    /// A measured value that is not a latency (e.g. RSS), with its unit.
    pub value: Option<String>,
    /// The target from the requirements, as text.
    pub target: Option<String>,
    /// Whether the target was met (`None` when there is no target).
    pub met: Option<bool>,
    /// Extra observations.
    pub notes: Vec<String>,
    /// Scenario-specific numbers for `--json` readers (e.g. the scheduler's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Row {
    /// A row without numbers yet.
    pub fn new(scenario: impl Into<String>, how: impl Into<String>) -> Self {
        Row {
            scenario: scenario.into(),
            how: how.into(),
            requests: 0,
            failed: 0,
            elapsed_secs: 0.0,
            throughput: None,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            value: None,
            target: None,
            met: None,
            notes: Vec::new(),
            details: None,
        }
    }

    /// Fills the latency columns from `latencies`.
    pub fn set_latencies(&mut self, latencies: &mut Latencies) {
        self.p50_ms = latencies.percentile(50.0).map(ms);
        self.p99_ms = latencies.percentile(99.0).map(ms);
        self.max_ms = latencies.max().map(ms);
    }
}

/// A duration in (fractional) milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[u64]) -> Latencies {
        let mut l = Latencies::with_capacity(values.len());
        for v in values {
            l.record(Duration::from_nanos(*v));
        }
        l
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = of(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(l.percentile(50.0), Some(Duration::from_nanos(50)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_nanos(99)));
        assert_eq!(l.percentile(100.0), Some(Duration::from_nanos(100)));
        assert_eq!(l.percentile(0.0), Some(Duration::from_nanos(1)));
        assert_eq!(l.max(), Some(Duration::from_nanos(100)));
    }

    #[test]
    fn percentiles_of_small_and_empty_sets() {
        assert_eq!(Latencies::default().percentile(50.0), None);
        assert_eq!(Latencies::default().max(), None);
        let mut one = of(&[7]);
        assert_eq!(one.percentile(50.0), Some(Duration::from_nanos(7)));
        assert_eq!(one.percentile(99.0), Some(Duration::from_nanos(7)));
        // 10 samples: p99 is the 10th (ceil(9.9)), p50 the 5th.
        let mut ten = of(&[10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(ten.percentile(50.0), Some(Duration::from_nanos(5)));
        assert_eq!(ten.percentile(99.0), Some(Duration::from_nanos(10)));
        assert_eq!(ten.percentile(90.0), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn merge_keeps_all_samples() {
        let mut a = of(&[3, 1]);
        a.merge(of(&[2]));
        assert_eq!(a.percentile(100.0), Some(Duration::from_nanos(3)));
        assert_eq!(a.percentile(50.0), Some(Duration::from_nanos(2)));
    }
}
