//! The scheduler scenario's measurement: the simulator's log read through a
//! warm-up and a window, with CPU time, memory and the server's own counters
//! sampled at the window's edges.

use super::POLL;
use crate::procfs::{self, MachineCpu};
use crate::promtext;
use crate::scenarios::{authed, Context};
use crate::schedule::{classify, CheckLog, ScheduleStats};
use crate::simlog::{LogTail, SimClient};
use crate::BenchError;
use std::time::{Duration, Instant};

/// Log reading continues this long after the window, for entries answered late.
const DRAIN: Duration = Duration::from_secs(1);

/// CPU time of the processes involved and of the machine, at one instant.
struct CpuSample {
    at: Instant,
    server: Option<Duration>,
    sim: Option<Duration>,
    own: Option<Duration>,
    machine: Option<MachineCpu>,
}

impl CpuSample {
    /// Samples now; a process that cannot be read gives `None`.
    fn take(server: Option<u32>, sim: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: server.and_then(procfs::process_cpu),
            sim: sim.and_then(procfs::process_cpu),
            own: procfs::process_cpu(std::process::id()),
            machine: procfs::machine_cpu(),
        }
    }
}

/// CPU shares over a window, in % of one core.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct CpuShares {
    pub(super) server: Option<f64>,
    pub(super) sim: Option<f64>,
    pub(super) bench: Option<f64>,
    /// Busy time of the whole machine (all processes), % of one core.
    pub(super) machine: Option<f64>,
    pub(super) cores: usize,
}

/// CPU shares between two samples.
fn shares(before: &CpuSample, after: &CpuSample, cores: usize) -> CpuShares {
    let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / wall * 100.0),
        _ => None,
    };
    let machine = match (before.machine, after.machine) {
        (Some(a), Some(b)) => {
            let total = b.total.saturating_sub(a.total).as_secs_f64();
            let busy = b.busy.saturating_sub(a.busy).as_secs_f64();
            (total > 0.0).then(|| busy / total * 100.0 * cores as f64)
        }
        _ => None,
    };
    CpuShares {
        server: pct(before.server, after.server),
        sim: pct(before.sim, after.sim),
        bench: pct(before.own, after.own),
        machine,
        cores,
    }
}

/// The scheduler's own counters (checks started, missed intervals, due→start
/// lag histogram) at one instant.
struct ServerView {
    checks: f64,
    missed: f64,
    lag: Vec<(f64, f64)>,
}

/// Reads the scheduler's counters from `/metrics`; `None` when unavailable.
async fn server_view(ctx: &Context) -> Option<ServerView> {
    let url = format!("{}/metrics", ctx.base);
    let response = authed(ctx.control.get(url), &ctx.token).send().await.ok()?;
    let text = response.text().await.ok()?;
    Some(ServerView {
        checks: promtext::sum(&text, "fleetreg_health_checks_total")?,
        missed: promtext::sum(&text, "fleetreg_health_missed_intervals_total").unwrap_or(0.0),
        lag: promtext::buckets(&text, "fleetreg_health_scheduler_lag_seconds"),
    })
}

/// What the server's metrics say about the window.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ServerWindow {
    pub(super) checks: f64,
    pub(super) missed_intervals: f64,
    /// Bucket bounds (seconds) below which 50 % and 99 % of the due→start lags lie.
    pub(super) lag_p50_le_secs: Option<f64>,
    pub(super) lag_p99_le_secs: Option<f64>,
}

/// The scheduler's counters over a window, from its two edges.
fn server_window(before: ServerView, after: ServerView) -> ServerWindow {
    let lag = promtext::delta(&before.lag, &after.lag);
    ServerWindow {
        checks: after.checks - before.checks,
        missed_intervals: after.missed - before.missed,
        lag_p50_le_secs: promtext::quantile_bound(&lag, 0.5),
        lag_p99_le_secs: promtext::quantile_bound(&lag, 0.99),
    }
}

/// What the window measured, besides the schedule.
pub(super) struct Window {
    pub(super) stats: ScheduleStats,
    pub(super) cpu: CpuShares,
    pub(super) lost: u64,
    pub(super) read: u64,
    pub(super) server_memory: Option<procfs::Memory>,
    pub(super) sim_memory: Option<procfs::Memory>,
    /// The scheduler's own counters over the window.
    pub(super) server_view: Option<ServerWindow>,
}

/// Empties the log, reads it through the warm-up, then through the window.
pub(super) async fn observe(
    ctx: &Context,
    sim: &SimClient,
    sim_pid: Option<u32>,
) -> Result<Window, BenchError> {
    let args = &ctx.args;
    let interval = Duration::from_secs(args.sched_interval_secs);
    let warmup = Duration::from_secs(args.sched_warmup_secs.unwrap_or(args.sched_interval_secs));
    let window = Duration::from_secs(args.sched_window_secs);
    let prefix = format!("{}-", args.sched_prefix);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    sim.clear_log().await?;
    let mut tail = LogTail::new();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    eprintln!(
        "scheduler: warm-up {} s, then a {} s window (interval {} s), reading the simulator's log every {} ms ...",
        warmup.as_secs(),
        window.as_secs(),
        interval.as_secs(),
        POLL.as_millis()
    );
    let warm_until = Instant::now() + warmup;
    while Instant::now() < warm_until {
        ticker.tick().await;
        tail.poll(sim, |_| {}).await?;
    }
    let lost_before = tail.lost;
    let counters_before = server_view(ctx).await;
    let cpu_before = CpuSample::take(ctx.server_pid, sim_pid);
    let start = sim.now_us().await?;
    let mut log = CheckLog::new(start);
    let mut record = |entry: &fleetreg_sim::LogEntry| {
        if entry.cluster.starts_with(&prefix) {
            let call = classify(entry.service, &entry.method, &entry.path);
            log.record(
                &entry.cluster,
                call,
                entry.status,
                entry.time.timestamp_micros(),
            );
        }
    };
    let until = Instant::now() + window;
    while Instant::now() < until {
        ticker.tick().await;
        tail.poll(sim, &mut record).await?;
    }
    let end = sim.now_us().await?;
    let cpu_after = CpuSample::take(ctx.server_pid, sim_pid);
    let counters_after = server_view(ctx).await;
    let server_memory = ctx.server_pid.and_then(procfs::memory);
    let sim_memory = sim_pid.and_then(procfs::memory);
    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until {
        ticker.tick().await;
        tail.poll(sim, |entry| {
            if entry.time.timestamp_micros() < end {
                record(entry);
            }
        })
        .await?;
    }
    log.close(end);
    let stats = log.analyse(interval, args.sched_clusters);
    let server_view = match (counters_before, counters_after) {
        (Some(a), Some(b)) => Some(server_window(a, b)),
        _ => None,
    };
    Ok(Window {
        stats,
        cpu: shares(&cpu_before, &cpu_after, cores),
        lost: tail.lost - lost_before,
        read: tail.read,
        server_memory,
        sim_memory,
        server_view,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_are_per_core() {
        let t0 = Instant::now();
        let before = CpuSample {
            at: t0,
            server: Some(Duration::from_secs(1)),
            sim: None,
            own: Some(Duration::ZERO),
            machine: Some(MachineCpu {
                busy: Duration::from_secs(10),
                total: Duration::from_secs(100),
            }),
        };
        let after = CpuSample {
            at: t0 + Duration::from_secs(10),
            server: Some(Duration::from_secs(6)),
            sim: None,
            own: Some(Duration::from_secs(1)),
            machine: Some(MachineCpu {
                busy: Duration::from_secs(20),
                total: Duration::from_secs(120),
            }),
        };
        let s = shares(&before, &after, 2);
        assert_eq!(s.server.map(f64::round), Some(50.0));
        assert_eq!(s.bench.map(f64::round), Some(10.0));
        assert_eq!(s.sim, None);
        // 10 of 20 core-seconds busy on 2 cores = 100 % of one core
        assert_eq!(s.machine.map(f64::round), Some(100.0));
    }
}
