//! What the simulator's request log says about the health scheduler (pure).
//!
//! [`CheckLog`] collects, per cluster, the arrival times of its API-server
//! checks (`GET …/api/v1/namespaces?limit=1`) inside a window, and counts every
//! call by kind; [`CheckLog::analyse`] turns them into checks per second, gaps
//! between consecutive checks, missed intervals and the lateness of each check
//! against its schedule. Times are microseconds by the simulator's clock.
//!
//! Lateness: the scheduler's next due time is the previous due time plus the
//! interval, so a cluster's checks are due at `d + k·interval` and the phase
//! `t mod interval` of each check is `d`'s plus that check's delay. The most
//! punctual check's phase is the best estimate of `d` seen from outside, so
//! every other check is late by its phase minus that one (on the circle of
//! phases): the due→check delay relative to the cluster's most punctual
//! check. It is never negative and never more than the true delay (it is
//! short by the most punctual check's own delay).

use crate::stats::nearest_rank_index;
use fleetreg_sim::Service;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// A gap longer than this many intervals means at least one check was skipped.
pub const MISSED_GAP_FACTOR: f64 = 1.5;
/// Failed calls described in the result.
const FAILURE_SAMPLES: usize = 5;

/// Which simulated call a log entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// The health check's API-server call, `GET /api/v1/namespaces?limit=1`.
    ApiCheck,
    /// Prometheus readiness (`/-/ready`).
    Prometheus,
    /// Tempo readiness (`/ready`).
    Tempo,
    /// Loki readiness (`/ready`).
    Loki,
    /// Anything else (e.g. discovery).
    Other,
}

impl Call {
    fn index(self) -> usize {
        match self {
            Call::ApiCheck => 0,
            Call::Prometheus => 1,
            Call::Tempo => 2,
            Call::Loki => 3,
            Call::Other => 4,
        }
    }
}

/// Calls in the window, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// API-server checks.
    pub api_check: u64,
    /// Prometheus readiness calls.
    pub prometheus: u64,
    /// Tempo readiness calls.
    pub tempo: u64,
    /// Loki readiness calls.
    pub loki: u64,
    /// Other calls (discovery, …).
    pub other: u64,
}

/// Per-cluster check times in a window, plus call counts.
#[derive(Debug, Clone)]
pub struct CheckLog {
    start_us: i64,
    end_us: i64,
    checks: HashMap<String, Vec<i64>>,
    calls: [u64; 5],
    failed: u64,
    failures: Vec<String>,
}

/// Percentiles of a signed quantity, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Smallest.
    pub min_ms: f64,
    /// How many samples.
    pub samples: u64,
}

/// The cluster whose check was the latest of the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestCluster {
    /// Its name.
    pub cluster: String,
    /// How late its latest check was, milliseconds.
    pub lateness_ms: f64,
    /// Its checks, milliseconds after the window's start.
    pub checks_ms: Vec<f64>,
}

/// What the window shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleStats {
    /// Window length, seconds.
    pub window_secs: f64,
    /// The check interval the analysis assumed, seconds.
    pub interval_secs: f64,
    /// Clusters that should be checked.
    pub clusters: u64,
    /// API-server checks in the window.
    pub checks: u64,
    /// `checks / window`.
    pub achieved_per_sec: f64,
    /// `clusters / interval`.
    pub expected_per_sec: f64,
    /// Clusters with at least one check in the window.
    pub clusters_checked: u64,
    /// Clusters expected but never checked in the window.
    pub clusters_unchecked: u64,
    /// Clusters with fewer than `floor(window / interval)` checks.
    pub clusters_short: u64,
    /// Intervals without a check: gaps (also from the window's start to the
    /// first check and from the last check to its end) longer than
    /// [`MISSED_GAP_FACTOR`] intervals count `round(gap / interval) − 1`; a
    /// cluster never checked counts `floor(window / interval)`.
    pub missed_intervals: u64,
    /// Lateness of every check but each cluster's most punctual one.
    pub lateness: Option<Spread>,
    /// Median gap between two consecutive checks of one cluster, milliseconds
    /// (the interval the server actually uses).
    pub median_gap_ms: Option<f64>,
    /// Longest gap between two consecutive checks of one cluster, milliseconds.
    pub max_gap_ms: Option<f64>,
    /// Most checks that arrived within one second of the window.
    pub busiest_second: u64,
    /// The cluster with the latest check, for a closer look.
    pub latest: Option<LatestCluster>,
    /// Calls by kind.
    pub calls: CallCounts,
    /// Calls answered with a status other than 2xx.
    pub failed_calls: u64,
    /// The first few failed calls.
    pub failures: Vec<String>,
}

impl ScheduleStats {
    /// Whether the window shows the rate sustained: every expected check seen
    /// (within 1 % for clusters whose phase sits on the window's edge), none
    /// missed, none failed, and p99 lateness at most `max_p99`.
    pub fn sustained(&self, max_p99: Duration) -> bool {
        let max_p99_ms = max_p99.as_secs_f64() * 1000.0;
        self.achieved_per_sec >= 0.99 * self.expected_per_sec
            && self.missed_intervals == 0
            && self.clusters_unchecked == 0
            && self.failed_calls == 0
            && self.lateness.is_some_and(|l| l.p99_ms <= max_p99_ms)
    }
}

impl CheckLog {
    /// An empty log of the window starting at `start_us`; it ends at
    /// [`CheckLog::close`].
    pub fn new(start_us: i64) -> CheckLog {
        CheckLog {
            start_us,
            end_us: i64::MAX,
            checks: HashMap::new(),
            calls: [0; 5],
            failed: 0,
            failures: Vec::new(),
        }
    }

    /// Ends the window at `end_us`: later entries are ignored.
    pub fn close(&mut self, end_us: i64) {
        self.end_us = end_us;
    }

    /// Records one log entry that arrived at `at_us`; outside the window it is ignored.
    pub fn record(&mut self, cluster: &str, call: Call, status: u16, at_us: i64) {
        if at_us < self.start_us || at_us >= self.end_us {
            return;
        }
        self.calls[call.index()] += 1;
        if !(200..300).contains(&status) {
            self.failed += 1;
            if self.failures.len() < FAILURE_SAMPLES {
                self.failures
                    .push(format!("{cluster} {call:?} answered {status}"));
            }
        }
        if call == Call::ApiCheck {
            self.checks
                .entry(cluster.to_owned())
                .or_default()
                .push(at_us);
        }
    }

    /// `cluster`'s checks, as the latest of the window.
    fn latest_cluster(&self, cluster: &str, late_us: i64) -> LatestCluster {
        let mut times = self.checks.get(cluster).cloned().unwrap_or_default();
        times.sort_unstable();
        LatestCluster {
            cluster: cluster.to_owned(),
            lateness_ms: late_us as f64 / 1000.0,
            checks_ms: times
                .iter()
                .map(|t| (t - self.start_us) as f64 / 1000.0)
                .collect(),
        }
    }

    /// The figures of the window for `clusters` clusters checked every `interval`.
    /// Call after [`CheckLog::close`].
    pub fn analyse(&self, interval: Duration, clusters: u64) -> ScheduleStats {
        let interval_us = i64::try_from(interval.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let window_us = self.end_us.saturating_sub(self.start_us).max(1);
        let per_window = (window_us / interval_us) as u64;
        let mut lateness = Vec::new();
        let mut latest: Option<(i64, &str)> = None;
        let mut gaps = Vec::new();
        let mut missed = 0u64;
        let mut short = 0u64;
        let mut checks = 0u64;
        let mut per_second: HashMap<i64, u64> = HashMap::new();
        for (cluster, times) in &self.checks {
            let mut times = times.clone();
            times.sort_unstable();
            checks += times.len() as u64;
            if (times.len() as u64) < per_window {
                short += 1;
            }
            for t in &times {
                *per_second
                    .entry((t - self.start_us) / 1_000_000)
                    .or_default() += 1;
            }
            let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
                continue;
            };
            missed += missed_in(first - self.start_us, interval_us)
                + missed_in(self.end_us - last, interval_us);
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                gaps.push(gap);
                missed += missed_in(gap, interval_us);
            }
            let late = lateness_of(&times, interval_us);
            if let Some(&worst) = late.iter().max() {
                if latest.is_none_or(|(l, _)| worst > l) {
                    latest = Some((worst, cluster));
                }
            }
            lateness.extend(late);
        }
        let checked = self.checks.len() as u64;
        let unchecked = clusters.saturating_sub(checked);
        missed += unchecked * per_window;
        let window_secs = window_us as f64 / 1e6;
        let gaps = spread(&mut gaps);
        ScheduleStats {
            window_secs,
            interval_secs: interval_us as f64 / 1e6,
            clusters,
            checks,
            achieved_per_sec: checks as f64 / window_secs,
            expected_per_sec: clusters as f64 / (interval_us as f64 / 1e6),
            clusters_checked: checked,
            clusters_unchecked: unchecked,
            clusters_short: short + unchecked,
            missed_intervals: missed,
            lateness: spread(&mut lateness),
            median_gap_ms: gaps.map(|g| g.p50_ms),
            max_gap_ms: gaps.map(|g| g.max_ms),
            busiest_second: per_second.values().copied().max().unwrap_or(0),
            latest: latest.map(|(late, cluster)| self.latest_cluster(cluster, late)),
            calls: CallCounts {
                api_check: self.calls[0],
                prometheus: self.calls[1],
                tempo: self.calls[2],
                loki: self.calls[3],
                other: self.calls[4],
            },
            failed_calls: self.failed,
            failures: self.failures.clone(),
        }
    }
}

/// Lateness of each check of one cluster but the most punctual one.
///
/// Checks are due at `d + k·interval`, so each check's phase `t mod interval`
/// is `d mod interval` plus its delay. On the circle of phases the delays
/// form one arc that starts at the most punctual check and is followed by the
/// largest empty gap; every check is late by its distance along the circle
/// from that start. This needs no guess of which `k` a check belongs to (a
/// first check half an interval late would mislead one), and holds while the
/// spread of delays is under half an interval.
fn lateness_of(times: &[i64], interval_us: i64) -> Vec<i64> {
    let mut phases: Vec<i64> = times.iter().map(|t| t.rem_euclid(interval_us)).collect();
    phases.sort_unstable();
    let (Some(&lowest), Some(&highest)) = (phases.first(), phases.last()) else {
        return Vec::new();
    };
    // The arc starts after the largest gap; the wrap-around gap is the default.
    let mut start = 0;
    let mut largest = lowest + interval_us - highest;
    for (i, pair) in phases.windows(2).enumerate() {
        if pair[1] - pair[0] > largest {
            largest = pair[1] - pair[0];
            start = i + 1;
        }
    }
    let anchor = phases[start];
    phases.remove(start);
    phases
        .iter()
        .map(|p| (p - anchor).rem_euclid(interval_us))
        .collect()
}

/// Intervals skipped in a gap: none up to [`MISSED_GAP_FACTOR`] intervals,
/// else `round(gap / interval) − 1` (at least 1).
fn missed_in(gap_us: i64, interval_us: i64) -> u64 {
    if (gap_us as f64) <= MISSED_GAP_FACTOR * interval_us as f64 {
        return 0;
    }
    (div_round(gap_us, interval_us) - 1).max(1) as u64
}

/// `a / b` rounded to the nearest integer (`b > 0`).
fn div_round(a: i64, b: i64) -> i64 {
    (a as f64 / b as f64).round() as i64
}

/// Nearest-rank percentiles of signed microseconds, in milliseconds.
fn spread(values: &mut [i64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |p: f64| values[nearest_rank_index(values.len(), p)] as f64 / 1000.0;
    Some(Spread {
        p50_ms: at(50.0),
        p99_ms: at(99.0),
        max_ms: values[values.len() - 1] as f64 / 1000.0,
        min_ms: values[0] as f64 / 1000.0,
        samples: values.len() as u64,
    })
}

/// Kind of a simulator log entry from its service, method and path below the
/// cluster prefix (e.g. `/prometheus/-/ready`).
pub fn classify(service: Service, method: &str, path: &str) -> Call {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    match (service, method, route) {
        (Service::ApiServer, "GET", "/api/v1/namespaces")
            if query.split('&').any(|pair| pair == "limit=1") =>
        {
            Call::ApiCheck
        }
        (Service::Prometheus, "GET", "/prometheus/-/ready") => Call::Prometheus,
        (Service::Tempo, "GET", "/tempo/ready") => Call::Tempo,
        (Service::Loki, "GET", "/loki/ready") => Call::Loki,
        _ => Call::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// Three clusters, 10 s interval, window [100 s, 130 s).
    fn log() -> CheckLog {
        let mut log = CheckLog::new(100 * S);
        // a: on time, then 200 ms late, then 50 ms early relative to the first.
        for t in [101 * S, 111 * S + 200_000, 121 * S - 50_000] {
            log.record("a", Call::ApiCheck, 200, t);
            log.record("a", Call::Prometheus, 200, t + 1_000);
        }
        // b: misses the check due at 115 s.
        for t in [105 * S, 125 * S] {
            log.record("b", Call::ApiCheck, 200, t);
        }
        // c: on time at 109, 119, 129; one Loki failure.
        for t in [109 * S, 119 * S, 129 * S] {
            log.record("c", Call::ApiCheck, 200, t);
        }
        log.record("c", Call::Loki, 503, 119 * S);
        // Outside the window: ignored.
        log.record("a", Call::ApiCheck, 200, 99 * S);
        log.close(130 * S);
        log.record("a", Call::ApiCheck, 200, 131 * S);
        log
    }

    #[test]
    fn rates_gaps_and_missed_intervals() {
        let stats = log().analyse(Duration::from_secs(10), 4);
        assert_eq!(stats.checks, 8);
        assert!((stats.window_secs - 30.0).abs() < 1e-9);
        assert!((stats.achieved_per_sec - 8.0 / 30.0).abs() < 1e-9);
        assert!((stats.expected_per_sec - 0.4).abs() < 1e-9);
        assert_eq!(stats.clusters_checked, 3);
        // "d" was expected and never seen.
        assert_eq!(stats.clusters_unchecked, 1);
        // b (2 of 3) and d (0 of 3).
        assert_eq!(stats.clusters_short, 2);
        // b's 20 s gap is one missed interval; d misses all three.
        assert_eq!(stats.missed_intervals, 1 + 3);
        assert_eq!(stats.max_gap_ms, Some(20_000.0));
        // gaps 10.2, 9.75, 20, 10, 10 s
        assert_eq!(stats.median_gap_ms, Some(10_000.0));
        assert_eq!(stats.calls.api_check, 8);
        assert_eq!(stats.calls.prometheus, 3);
        assert_eq!(stats.calls.loki, 1);
        assert_eq!(stats.failed_calls, 1);
        assert_eq!(stats.failures.len(), 1);
        assert!(!stats.sustained(Duration::from_secs(1)));
    }

    #[test]
    fn lateness_is_relative_to_the_most_punctual_check() {
        let stats = log().analyse(Duration::from_secs(10), 3);
        let lateness = stats.lateness.unwrap_or_else(|| panic!("no lateness"));
        // a: phases 101, 101.2, 100.95 → 50 and 250 ms; b: 0 (k = 2 after the
        // missed one); c: 0, 0.
        assert_eq!(lateness.samples, 5);
        assert_eq!(lateness.max_ms, 250.0);
        assert_eq!(lateness.min_ms, 0.0);
        assert_eq!(lateness.p50_ms, 0.0);
        assert_eq!(lateness.p99_ms, 250.0);
        let latest = stats.latest.unwrap_or_else(|| panic!("no latest"));
        assert_eq!(latest.cluster, "a");
        assert_eq!(latest.lateness_ms, 250.0);
        assert_eq!(latest.checks_ms, vec![1000.0, 11200.0, 20950.0]);
    }

    #[test]
    fn lateness_follows_skipped_and_early_checks() {
        let i = 10 * S;
        // due at 0, 10, 20, 30 (skipped), 40: late by 100, 0, 300, -, 20 ms
        let times = [100_000, i, 2 * i + 300_000, 4 * i + 20_000];
        let mut late = lateness_of(&times, i);
        late.sort_unstable();
        assert_eq!(late, vec![20_000, 100_000, 300_000]);
        // The first check half an interval late (the window starts in a
        // backlog): the others are on time, and it is the late one.
        let times = [9_784_000, 14_863_000, 24_729_000, 34_897_000, 44_790_000];
        let mut late = lateness_of(&times, i);
        late.sort_unstable();
        assert_eq!(late, vec![61_000, 134_000, 168_000, 5_055_000]);
        // A delay arc across the phase origin.
        let times = [i - 100_000, 2 * i + 50_000, 3 * i];
        let mut late = lateness_of(&times, i);
        late.sort_unstable();
        assert_eq!(late, vec![100_000, 150_000]);
        assert!(lateness_of(&[5], i).is_empty());
        assert!(lateness_of(&[], i).is_empty());
    }

    #[test]
    fn a_clean_window_is_sustained() {
        let mut log = CheckLog::new(0);
        for c in 0..100 {
            let phase = c * 100_000; // spread over the 10 s interval
            for k in 0..3 {
                // up to 6 ms late, varying by check
                let t = phase + k * 10 * S + (c * k % 7) * 1_000;
                log.record(&format!("c{c}"), Call::ApiCheck, 200, t);
            }
        }
        log.close(30 * S);
        let stats = log.analyse(Duration::from_secs(10), 100);
        assert_eq!(stats.checks, 300);
        assert_eq!(stats.missed_intervals, 0);
        assert_eq!(stats.clusters_short, 0);
        assert_eq!(stats.busiest_second, 10);
        assert!(stats.sustained(Duration::from_secs(1)));
        assert!(!stats.sustained(Duration::from_micros(1)));
    }

    #[test]
    fn an_empty_window_misses_everything() {
        let mut log = CheckLog::new(0);
        log.close(30 * S);
        let stats = log.analyse(Duration::from_secs(10), 5);
        assert_eq!(stats.checks, 0);
        assert_eq!(stats.missed_intervals, 15);
        assert_eq!(stats.lateness, None);
        assert!(!stats.sustained(Duration::from_secs(1)));
    }

    #[test]
    fn missed_counts_whole_skipped_intervals() {
        let i = 10 * S;
        assert_eq!(missed_in(10 * S, i), 0);
        assert_eq!(missed_in(15 * S, i), 0);
        assert_eq!(missed_in(16 * S, i), 1);
        assert_eq!(missed_in(20 * S, i), 1);
        assert_eq!(missed_in(31 * S, i), 2);
    }

    #[test]
    fn classifies_the_four_calls_of_a_check() {
        let api = Service::ApiServer;
        assert_eq!(
            classify(api, "GET", "/api/v1/namespaces?&limit=1"),
            Call::ApiCheck
        );
        assert_eq!(
            classify(api, "GET", "/api/v1/namespaces?limit=1"),
            Call::ApiCheck
        );
        assert_eq!(classify(api, "GET", "/api/v1/namespaces?"), Call::Other);
        assert_eq!(classify(api, "GET", "/version"), Call::Other);
        assert_eq!(
            classify(Service::Prometheus, "GET", "/prometheus/-/ready"),
            Call::Prometheus
        );
        assert_eq!(classify(Service::Tempo, "GET", "/tempo/ready"), Call::Tempo);
        assert_eq!(classify(Service::Loki, "GET", "/loki/ready"), Call::Loki);
        assert_eq!(
            classify(
                Service::Prometheus,
                "GET",
                "/prometheus/api/v1/query?query=x"
            ),
            Call::Other
        );
    }
}
