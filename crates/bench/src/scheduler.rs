//! The `scheduler` scenario: how well a running `serve` keeps N simulated SPOKE
//! clusters on their check interval, judged from the simulator's request log
//! (when the checks arrived), not from the scheduler's own view.
//!
//! Setup (skipped for what already exists): `N` clusters `{prefix}-00000`… in
//! the simulator (one bulk request), each registered in the server as SPOKE
//! with its API server and Prometheus, Tempo and Loki endpoints, so one check
//! is 4 HTTP calls; then a wait until the discovery that follows registration
//! has finished. Then the log is emptied, read every 250 ms through a warm-up
//! (one interval by default, so the initial spread of first checks is over)
//! and a window, and analysed by [`crate::schedule`]; CPU time and memory of
//! the server (and the simulator) come from `/proc` over the same window.

use crate::load::{self, describe_failure, Limits};
use crate::procfs::{self, MachineCpu};
use crate::promtext;
use crate::scenarios::{authed, mb, Context};
use crate::schedule::{classify, Call, CheckLog, ScheduleStats};
use crate::simlog::{LogTail, SimClient};
use crate::stats::Row;
use crate::BenchError;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the request log is read.
const POLL: Duration = Duration::from_millis(250);
/// Registrations in flight during setup.
const REGISTER_CONCURRENCY: usize = 16;
/// Label that marks the clusters of this scenario.
const LABEL: (&str, &str) = ("bench", "scheduler");
/// The discovery after registration counts as finished after this long
/// without a call other than a health check …
const QUIET: Duration = Duration::from_secs(3);
/// … and is given up on (with a note) after this long.
const QUIET_LIMIT: Duration = Duration::from_secs(600);
/// Log reading continues this long after the window, for entries answered late.
const DRAIN: Duration = Duration::from_secs(1);

/// What the setup did.
struct Setup {
    /// Clusters added to the simulator.
    sim_added: usize,
    /// Clusters registered in the server by this run.
    registered: u64,
    /// Registrations refused because the name was taken.
    existing: u64,
    /// How long the discovery after registration took to go quiet, if waited for.
    settled: Option<Duration>,
}

/// CPU time of the processes involved and of the machine, at one instant.
struct CpuSample {
    at: Instant,
    server: Option<Duration>,
    sim: Option<Duration>,
    own: Option<Duration>,
    machine: Option<MachineCpu>,
}

impl CpuSample {
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
struct CpuShares {
    server: Option<f64>,
    sim: Option<f64>,
    bench: Option<f64>,
    /// Busy time of the whole machine (all processes), % of one core.
    machine: Option<f64>,
    cores: usize,
}

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
struct ServerWindow {
    checks: f64,
    missed_intervals: f64,
    /// Bucket bounds (seconds) below which 50 % and 99 % of the due→start lags lie.
    lag_p50_le_secs: Option<f64>,
    lag_p99_le_secs: Option<f64>,
}

fn server_window(before: ServerView, after: ServerView) -> ServerWindow {
    let lag = promtext::delta(&before.lag, &after.lag);
    ServerWindow {
        checks: after.checks - before.checks,
        missed_intervals: after.missed - before.missed,
        lag_p50_le_secs: promtext::quantile_bound(&lag, 0.5),
        lag_p99_le_secs: promtext::quantile_bound(&lag, 0.99),
    }
}

/// The registration body of simulated cluster `name`.
fn registration_body(sim: &str, name: &str) -> String {
    let api = format!("{sim}/c/{name}");
    json!({
        "name": name,
        "api_server_url": api,
        "cluster_type": "SPOKE",
        "environment": "LAB",
        "labels": { LABEL.0: LABEL.1 },
        "endpoints": {
            "prometheus_url": format!("{api}/prometheus"),
            "tempo_url": format!("{api}/tempo"),
            "loki_url": format!("{api}/loki"),
        },
    })
    .to_string()
}

/// Name of simulated cluster `index` (the simulator's bulk naming).
fn cluster_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:05}")
}

/// Clusters carrying this scenario's label in the server.
async fn labelled(ctx: &Context) -> Result<u64, BenchError> {
    let url = format!(
        "{}/api/v1/clusters?label={}%3D{}&page_size=1",
        ctx.base, LABEL.0, LABEL.1
    );
    let response = authed(ctx.control.get(url), &ctx.token).send().await?;
    if !response.status().is_success() {
        return Err(BenchError::Server {
            what: "GET /api/v1/clusters?label=…".into(),
            detail: describe_failure(response).await,
        });
    }
    #[derive(serde::Deserialize)]
    struct Total {
        total: u64,
    }
    Ok(response.json::<Total>().await?.total)
}

/// Creates what is missing: simulated clusters, registrations; then waits for
/// the discovery that registration started.
async fn prepare(ctx: &Context, sim: &SimClient) -> Result<Setup, BenchError> {
    let count = ctx.args.sched_clusters;
    let prefix = ctx.args.sched_prefix.clone();
    let sim_added = sim
        .create_clusters(&prefix, usize::try_from(count).unwrap_or(usize::MAX))
        .await?;
    if sim_added > 0 {
        eprintln!("scheduler: {sim_added} clusters added to the simulator ({prefix}-00000 …)");
    }
    let before = labelled(ctx).await?;
    if before >= count {
        return Ok(Setup {
            sim_added,
            registered: 0,
            existing: before,
            settled: None,
        });
    }
    eprintln!(
        "scheduler: registering {count} SPOKE clusters (4 endpoints each, {} labelled already) over {REGISTER_CONCURRENCY} connections ...",
        before
    );
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let sim_base: Arc<str> = Arc::from(sim.base());
    let conflicts = Arc::new(AtomicU64::new(0));
    let taken = conflicts.clone();
    let outcome = load::run(
        Limits {
            concurrency: REGISTER_CONCURRENCY,
            duration: Duration::from_secs(3600),
            max_requests: count,
        },
        move |client, index, _| {
            let body = registration_body(&sim_base, &cluster_name(&prefix, index));
            let request = authed(client.post(format!("{base}/api/v1/clusters")), &token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let taken = taken.clone();
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                match response.status() {
                    reqwest::StatusCode::CREATED => Ok(()),
                    reqwest::StatusCode::CONFLICT => {
                        taken.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    _ => Err(describe_failure(response).await),
                }
            }
        },
    )
    .await?;
    if outcome.failed > 0 {
        return Err(BenchError::Unexpected {
            what: "registering the simulated clusters".into(),
            detail: format!(
                "{} of {count} failed: {:?}",
                outcome.failed, outcome.failures
            ),
        });
    }
    let existing = conflicts.load(Ordering::Relaxed);
    let registered = outcome.requests - existing;
    eprintln!(
        "  {registered} registered, {existing} existed, in {:.1} s; waiting for discovery to finish ...",
        outcome.elapsed.as_secs_f64()
    );
    let settled = wait_for_discovery(sim).await?;
    Ok(Setup {
        sim_added,
        registered,
        existing,
        settled,
    })
}

/// Waits until the simulator has seen no call other than a health check for
/// [`QUIET`]; `None` when [`QUIET_LIMIT`] passed first.
async fn wait_for_discovery(sim: &SimClient) -> Result<Option<Duration>, BenchError> {
    let started = Instant::now();
    let mut tail = LogTail::new();
    let mut last_other = Instant::now();
    while started.elapsed() < QUIET_LIMIT {
        let mut other = false;
        tail.poll(sim, |entry| {
            if classify(entry.service, &entry.method, &entry.path) == Call::Other {
                other = true;
            }
        })
        .await?;
        if other {
            last_other = Instant::now();
        } else if last_other.elapsed() >= QUIET {
            let took = last_other.duration_since(started);
            eprintln!(
                "  discovery calls ended {:.1} s after registration",
                took.as_secs_f64()
            );
            return Ok(Some(took));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(None)
}

/// What the window measured, besides the schedule.
struct Window {
    stats: ScheduleStats,
    cpu: CpuShares,
    lost: u64,
    read: u64,
    server_memory: Option<procfs::Memory>,
    sim_memory: Option<procfs::Memory>,
    /// The scheduler's own counters over the window.
    server_view: Option<ServerWindow>,
}

/// Empties the log, reads it through the warm-up, then through the window.
async fn observe(
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

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| format!("{v:.0} %"))
}

fn memory_text(memory: Option<procfs::Memory>) -> String {
    memory.map_or_else(
        || "?".to_owned(),
        |m| format!("{:.1} MB (peak {:.1} MB)", mb(m.rss), mb(m.hwm)),
    )
}

/// The scenario: setup as needed, then (unless `--sched-setup-only`) the window.
pub(crate) async fn run(ctx: &mut Context) -> Result<Row, BenchError> {
    let Some(sim_url) = ctx.args.sim.clone() else {
        return Err(BenchError::Usage(
            "scheduler: pass --sim URL (a running `fleetreg sim`)".into(),
        ));
    };
    let parsed = reqwest::Url::parse(&sim_url)
        .map_err(|e| BenchError::Usage(format!("--sim {sim_url:?} is not a URL: {e}")))?;
    let loopback = matches!(
        parsed.host_str().unwrap_or_default(),
        "127.0.0.1" | "localhost" | "[::1]" | "::1"
    );
    if !loopback && !ctx.args.allow_remote {
        return Err(BenchError::Usage(format!(
            "--sim {sim_url} is not on the loopback interface; pass --allow-remote"
        )));
    }
    let sim_pid = ctx.args.sim_pid.or_else(|| {
        loopback
            .then(|| parsed.port_or_known_default())
            .flatten()
            .and_then(procfs::pid_listening_on)
    });
    let sim = SimClient::new(&sim_url)?;
    let count = ctx.args.sched_clusters;
    let setup = prepare(ctx, &sim).await?;
    let setup_text = format!(
        "setup: {} clusters added to the simulator, {} registered now, {} registered before{}",
        setup.sim_added,
        setup.registered,
        setup.existing,
        setup.settled.map_or_else(String::new, |d| format!(
            ", registration discovery done after {:.1} s",
            d.as_secs_f64()
        ))
    );
    if ctx.args.sched_setup_only {
        let mut row = Row::new(
            "scheduler-setup",
            format!("{count} SPOKE clusters in {sim_url}"),
        );
        row.notes.push(setup_text);
        if setup.registered > 0 && setup.settled.is_none() {
            row.notes.push(format!(
                "discovery calls had not stopped after {} s",
                QUIET_LIMIT.as_secs()
            ));
        }
        row.notes.push(
            "restart serve (same database) so that its first checks are spread over one interval, then run the scenario without --sched-setup-only".into(),
        );
        return Ok(row);
    }
    let stored = ctx.stored().await?;
    let window = observe(ctx, &sim, sim_pid).await?;
    Ok(row_of(ctx, &window, &setup, setup_text, stored, sim_pid))
}

fn row_of(
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
            "lateness (phase t - k*interval vs the cluster's most punctual check): p50 {:.1}, p99 {:.1}, max {:.1} ms over {} checks",
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
        let bound =
            |b: Option<f64>| b.map_or_else(|| "?".into(), |s| format!("{:.0} ms", s * 1000.0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_four_endpoints_on_the_simulator() {
        let body: serde_json::Value =
            serde_json::from_str(&registration_body("http://127.0.0.1:9000", "sched-00042"))
                .unwrap_or_default();
        assert_eq!(body["cluster_type"], "SPOKE");
        assert_eq!(
            body["api_server_url"],
            "http://127.0.0.1:9000/c/sched-00042"
        );
        assert_eq!(
            body["endpoints"]["loki_url"],
            "http://127.0.0.1:9000/c/sched-00042/loki"
        );
        assert_eq!(cluster_name("sched", 42), "sched-00042");
    }

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
