//! The scheduler scenario's report row: rates, lateness, misses, CPU and
//! memory, with how each was measured.

use super::observe::Window;
use super::setup::Setup;
use crate::procfs;
use crate::scenarios::{mb, Context};
use crate::stats::Row;
use serde_json::json;
use std::time::Duration;

/// `12 %`, or `?` when unknown.
fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| format!("{v:.0} %"))
}

/// `VmRSS (peak VmHWM)` in MB, or `?`.
fn memory_text(memory: Option<procfs::Memory>) -> String {
    memory.map_or_else(
        || "?".to_owned(),
        |m| format!("{:.1} MB (peak {:.1} MB)", mb(m.rss), mb(m.hwm)),
    )
}

/// The report row of a measured window.
pub(super) fn row_of(
    ctx: &Context,
    window: &Window,
    setup: &Setup,
    setup_text: String,
    stored: u64,
    sim_pid: Option<u32>,
) -> Row {
    let args = &ctx.args;
    let stats = &window.stats;
    let max_p99 = Duration::from_millis(args.sched_max_p99_ms);
    let how = format!(
        "{} SPOKE x 4 calls, interval {} s, window {:.0} s after {} s warm-up; latency columns = lateness vs schedule",
        args.sched_clusters,
        args.sched_interval_secs,
        stats.window_secs,
        args.sched_warmup_secs.unwrap_or(args.sched_interval_secs)
    );
    let mut row = Row::new("scheduler", how);
    row.requests = stats.checks;
    row.failed = stats.failed_calls;
    row.elapsed_secs = stats.window_secs;
    row.throughput = Some(stats.achieved_per_sec);
    if let Some(l) = stats.lateness {
        row.p50_ms = Some(l.p50_ms);
        row.p99_ms = Some(l.p99_ms);
        row.max_ms = Some(l.max_ms);
    }
    let cpu = &window.cpu;
    let server_share = cpu.server.map(|s| s / cpu.cores as f64);
    row.value = Some(format!(
        "{:.1} of {:.1} checks/s; server CPU {} of a core ({} of {} cores), RSS {}",
        stats.achieved_per_sec,
        stats.expected_per_sec,
        pct(cpu.server),
        pct(server_share),
        cpu.cores,
        memory_text(window.server_memory),
    ));
    let sustained = stats.sustained(max_p99) && window.lost == 0;
    row.target = Some(format!(
        "{:.0}/s, 0 missed, p99 <= {} ms",
        stats.expected_per_sec, args.sched_max_p99_ms
    ));
    row.met = Some(sustained);
    let notes = &mut row.notes;
    notes.push(setup_text);
    if setup.registered > 0 {
        notes.push(format!(
            "{} clusters were registered into the running server just now: their first checks came within ~1 s of registration instead of being spread over one interval; restart serve before measuring (docs/BENCHMARKS.md)",
            setup.registered
        ));
    }
    if stored != args.sched_clusters {
        notes.push(format!(
            "the server stores {stored} clusters, {} of them this scenario's: the others are checked too",
            args.sched_clusters
        ));
    }
    if let Some(l) = stats.lateness {
        notes.push(format!(
            "lateness (phase t mod interval vs the cluster's most punctual check): p50 {:.1}, p99 {:.1}, max {:.1} ms over {} checks",
            l.p50_ms, l.p99_ms, l.max_ms, l.samples
        ));
    }
    notes.push(format!(
        "gaps: median {} ms, max {} ms; missed intervals {} (gap > 1.5 x interval); clusters checked {}, never checked {}, short of {} checks {}",
        stats.median_gap_ms.map_or_else(|| "-".into(), |g| format!("{g:.0}")),
        stats.max_gap_ms.map_or_else(|| "-".into(), |g| format!("{g:.0}")),
        stats.missed_intervals,
        stats.clusters_checked,
        stats.clusters_unchecked,
        (stats.window_secs / stats.interval_secs).floor(),
        stats.clusters_short,
    ));
    if let Some(gap) = stats.median_gap_ms {
        let interval_ms = stats.interval_secs * 1000.0;
        if (gap - interval_ms).abs() > 0.1 * interval_ms {
            notes.push(format!(
                "the median gap ({:.1} s) is not the interval given ({} s): pass the server's spoke_interval_seconds as --sched-interval-secs",
                gap / 1000.0,
                args.sched_interval_secs
            ));
        }
    }
    notes.push(format!(
        "calls in the window: {} API-server checks, {} Prometheus, {} Tempo, {} Loki, {} other; {} failed; busiest second {} checks (mean {:.0})",
        stats.calls.api_check,
        stats.calls.prometheus,
        stats.calls.tempo,
        stats.calls.loki,
        stats.calls.other,
        stats.failed_calls,
        stats.busiest_second,
        stats.achieved_per_sec
    ));
    notes.extend(stats.failures.iter().map(|f| format!("failure: {f}")));
    if let Some(latest) = &stats.latest {
        let checks: Vec<String> = latest
            .checks_ms
            .iter()
            .map(|t| format!("{:.0}", t))
            .collect();
        notes.push(format!(
            "latest check: {} late by {:.0} ms; its checks at [{}] ms into the window",
            latest.cluster,
            latest.lateness_ms,
            checks.join(", ")
        ));
    }
    notes.push(format!(
        "CPU over the window (% of one core): server {} (pid {}), simulator {} (pid {}), this benchmark {}, whole machine {} of {}",
        pct(cpu.server),
        ctx.server_pid.map_or_else(|| "?".into(), |p| p.to_string()),
        pct(cpu.sim),
        sim_pid.map_or_else(|| "?".into(), |p| p.to_string()),
        pct(cpu.bench),
        pct(cpu.machine),
        cpu.cores * 100,
    ));
    notes.push(format!(
        "memory: server {}, simulator {}",
        memory_text(window.server_memory),
        memory_text(window.sim_memory)
    ));
    if let Some(view) = &window.server_view {
        let bound = |b: Option<f64>| match b {
            None => "?".to_owned(),
            Some(s) if s.is_infinite() => "+Inf (beyond the largest bucket)".to_owned(),
            Some(s) => format!("{:.0} ms", s * 1000.0),
        };
        notes.push(format!(
            "the scheduler's own view (/metrics) over the window: {:.0} checks started, {:.0} missed intervals, due->start lag p50 <= {}, p99 <= {} (histogram bucket bounds)",
            view.checks,
            view.missed_intervals,
            bound(view.lag_p50_le_secs),
            bound(view.lag_p99_le_secs)
        ));
    }
    notes.push(format!(
        "simulator log: {} entries read, {} lost (ring overrun){}",
        window.read,
        window.lost,
        if window.lost > 0 {
            ": the window is incomplete"
        } else {
            ""
        }
    ));
    if stats.checks == 0 {
        notes.push(
            "no checks seen: is health_check.enabled on, and is --sim the URL the clusters were registered with?".into(),
        );
    }
    if sustained && stats.expected_per_sec >= 1000.0 {
        notes.push("target >= 1,000 full checks/s: met at this rate".into());
    }
    row.details = Some(json!({
        "schedule": stats,
        "cpu_percent_of_one_core": cpu,
        "server_rss_bytes": window.server_memory.map(|m| m.rss),
        "server_hwm_bytes": window.server_memory.map(|m| m.hwm),
        "sim_rss_bytes": window.sim_memory.map(|m| m.rss),
        "log_entries_read": window.read,
        "log_entries_lost": window.lost,
        "server_view": window.server_view,
        "sustained": sustained,
    }));
    row
}
