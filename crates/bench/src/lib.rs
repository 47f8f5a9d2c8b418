//! The load generator behind `fleetreg bench`.
//!
//! It drives an already running server over HTTP and prints, per scenario, the
//! requests sent, the failed ones, throughput and p50/p99/max latency, and how
//! each was measured. Every loop is bounded in count and in time, and traffic
//! goes to a loopback server only (unless `--allow-remote`).
#![deny(missing_docs)]

mod clients;
mod edge_push;
mod fanout;
mod load;
mod procfs;
mod progress;
mod promtext;
mod report;
mod scenarios;
mod schedule;
mod scheduler;
mod simlog;
mod stats;
mod summary;

use clap::ValueEnum;
use std::time::Duration;

/// Flags of `fleetreg bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    fleetreg bench --server http://127.0.0.1:8080\n  \
    fleetreg bench --scenario register-1,register-64 --duration-secs 5\n  \
    fleetreg bench --scenario seed,get,list,rss --clusters 100000 --json\n  \
    fleetreg bench --scenario seed,fleet-summary --clusters 100000\n  \
    fleetreg bench --scenario scheduler --sim http://127.0.0.1:9000 --sched-interval-secs 30\n  \
    fleetreg bench --scenario clients --bench-clients 10000 --bench-hosts 2000\n  \
    fleetreg bench --scenario edge-push --edge-agents 1000 --edge-changes 20\n\n\
    The scheduler, clients and edge-push scenarios are not part of `all`; crates/bench/scripts/scheduler-sweep.sh\n\
    runs it at several intervals (docs/BENCHMARKS.md).")]
pub struct BenchArgs {
    /// The running server to drive (loopback only unless --allow-remote).
    #[arg(long, env = "FLEETREG_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token sent with every request, if the server wants one.
    #[arg(long, env = "FLEETREG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Scenarios to run, comma-separated, in this order: register-1, register-64,
    /// seed, get, list, fleet-summary, rss, fanout, scheduler, clients,
    /// edge-push; or `all` (every one but scheduler, clients and edge-push).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub scenario: Vec<Scenario>,
    /// Clusters the store should hold for get/list/rss (`seed` registers the rest
    /// at 64 connections; the register scenarios stop when it is reached).
    #[arg(long, default_value_t = 100_000)]
    pub clusters: u64,
    /// Length of each timed scenario (register-1, register-64, get, list,
    /// fleet-summary), seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_secs: u64,
    /// Connections used by the get, list and fleet-summary scenarios.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub read_concurrency: u64,
    /// The list scenario reads a random page among the first N of the filter.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub list_pages: u32,
    /// Event-stream subscriber counts for the fan-out scenario, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub subscribers: Vec<usize>,
    /// Writes (one at a time) whose fan-out is timed, per subscriber count.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fanout_writes: u32,
    /// The server's process id, for RSS (/proc/PID/status); found from the
    /// listening port when omitted.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// scheduler: the running `fleetreg sim` whose clusters the server checks.
    #[arg(long)]
    pub sim: Option<String>,
    /// scheduler: the simulator's process id, for its CPU time; found from the
    /// --sim port when omitted.
    #[arg(long)]
    pub sim_pid: Option<u32>,
    /// scheduler: simulated SPOKE clusters to create and register (names
    /// `{prefix}-00000`…; what exists is kept).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=99_999))]
    pub sched_clusters: u64,
    /// scheduler: name prefix of its simulated clusters.
    #[arg(long, default_value = "sched")]
    pub sched_prefix: String,
    /// scheduler: the server's `health_check.spoke_interval_seconds` (the
    /// benchmark cannot change it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sched_interval_secs: u64,
    /// scheduler: length of the measured window, seconds (best a multiple of the interval).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sched_window_secs: u64,
    /// scheduler: wait before the window, seconds [default: one interval, so the
    /// first checks after a server start are spread].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub sched_warmup_secs: Option<u64>,
    /// scheduler: the p99 lateness a sustained rate may have, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub sched_max_p99_ms: u64,
    /// scheduler: only create and register the clusters (then restart serve so
    /// its first checks are spread over one interval).
    #[arg(long)]
    pub sched_setup_only: bool,
    /// clients: clients the store should hold (imported in chunks until reached).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub bench_clients: u64,
    /// clients: hosts to register (200 per cluster) in this run.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub bench_hosts: u64,
    /// edge-push: simulated edge agents, each with its own stream and
    /// connection (2 VPS nodes, the rest laptops).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(3..=50_000))]
    pub edge_agents: u64,
    /// edge-push: routing changes (one at a time) whose push to every agent is timed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub edge_changes: u32,
    /// edge-push: how the simulated agents talk to the server: `h2` as the
    /// real agent (the stream and acknowledgements on one HTTP/2 connection),
    /// `h1` as an agent talking to a server without HTTP/2 (a connection for
    /// the stream, one kept for acknowledgements), `h1-close-acks` (HTTP/1.1,
    /// a new connection per acknowledgement or heartbeat).
    #[arg(long, value_enum, default_value = "h2")]
    pub edge_transport: EdgeTransport,
    /// edge-push: length of the idle window whose server CPU time is measured, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub edge_idle_secs: u64,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Allow a server that is not on the loopback interface.
    #[arg(long)]
    pub allow_remote: bool,
}

/// How the `edge-push` scenario's agents talk to the server (`--edge-transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EdgeTransport {
    /// One HTTP/2 connection per agent (prior knowledge).
    #[value(name = "h2")]
    Http2,
    /// HTTP/1.1: the stream's connection and one kept for acknowledgements.
    #[value(name = "h1")]
    Http1,
    /// HTTP/1.1, each acknowledgement on a new connection.
    #[value(name = "h1-close-acks")]
    Http1CloseAcks,
}

/// A scenario of `fleetreg bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Registrations (POST /api/v1/clusters) over 1 connection.
    #[value(name = "register-1")]
    Register1,
    /// Registrations over 64 connections.
    #[value(name = "register-64")]
    Register64,
    /// Register clusters at 64 connections until the store holds `--clusters`.
    Seed,
    /// GET /api/v1/clusters/{id} with random ids across all stored clusters.
    Get,
    /// Filtered list: environment + label, page_size 20, exact total checked.
    List,
    /// GET /api/v1/fleet/summary; total checked against the stored count.
    #[value(name = "fleet-summary")]
    FleetSummary,
    /// The server's resident memory.
    Rss,
    /// Event fan-out to many stream subscribers.
    Fanout,
    /// Health-scheduler timeliness from a simulator's request log (needs --sim).
    Scheduler,
    /// Client registry: seed clients and hosts, timed import, filtered and
    /// stale lists, deregistration preview.
    Clients,
    /// Edge push: `--edge-agents` simulated agents on their config streams;
    /// routing change → every agent applied and acknowledged, idle memory and
    /// CPU, a restarted agent, a full reconcile.
    #[value(name = "edge-push")]
    EdgePush,
    /// Everything above but scheduler, clients and edge-push, in that order.
    All,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag has a value the benchmark cannot use.
    #[error("{0}")]
    Usage(String),
    /// An HTTP request could not be made or answered.
    #[error("HTTP request to the server failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered a setup request with an error.
    #[error("the server refused {what}: {detail}")]
    Server {
        /// What was asked.
        what: String,
        /// Status and the start of the body.
        detail: String,
    },
    /// A response was not the JSON expected.
    #[error("unexpected response to {what}: {detail}")]
    Unexpected {
        /// What was asked.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// Writing the JSON report failed.
    #[error("cannot write the report: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchArgs {
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    fn selected(&self) -> Vec<Scenario> {
        let mut selected: Vec<Scenario> = if self.scenario.contains(&Scenario::All) {
            vec![
                Scenario::Register1,
                Scenario::Register64,
                Scenario::Seed,
                Scenario::Get,
                Scenario::List,
                Scenario::FleetSummary,
                Scenario::Rss,
                Scenario::Fanout,
            ]
        } else {
            self.scenario.clone()
        };
        selected.sort();
        selected.dedup();
        selected
    }
}

/// Runs the benchmark: every selected scenario in order, then a summary.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let mut ctx = scenarios::Context::connect(&args).await?;
    report::header(&ctx);
    let mut rows = Vec::new();
    for scenario in args.selected() {
        let new_rows = match scenario {
            Scenario::Register1 => vec![scenarios::register(&mut ctx, 1).await?],
            Scenario::Register64 => vec![scenarios::register(&mut ctx, 64).await?],
            Scenario::Seed => vec![scenarios::seed(&mut ctx).await?],
            Scenario::Get => vec![scenarios::get_by_id(&mut ctx).await?],
            Scenario::List => vec![scenarios::filtered_list(&mut ctx).await?],
            Scenario::FleetSummary => vec![summary::run(&mut ctx).await?],
            Scenario::Rss => vec![scenarios::rss(&mut ctx).await?],
            Scenario::Fanout => fanout::run(&mut ctx).await?,
            Scenario::Scheduler => vec![scheduler::run(&mut ctx).await?],
            Scenario::Clients => clients::run(&mut ctx).await?,
            Scenario::EdgePush => edge_push::run(&mut ctx).await?,
            Scenario::All => Vec::new(),
        };
        if scenario != Scenario::Fanout {
            // Fan-out prints each subscriber count as it finishes.
            new_rows.iter().for_each(report::progress);
        }
        rows.extend(new_rows);
    }
    report::finish(&ctx, &rows)
}
