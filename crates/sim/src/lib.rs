//! Simulated Kubernetes clusters for tests, demos and load (`fleetreg sim`).
//!
//! One listener serves many clusters, one path prefix each:
//!
//! - `{base}/c/{name}/…`: the Kubernetes API subset that health checks and
//!   discovery call (`/version`, `/api`, `/apis`, namespaces, nodes, pods and
//!   services with `labelSelector`, SR-IOV network node policies, PTP configs,
//!   OpenShift `ClusterVersion`), as real Kubernetes JSON. Custom resources that a
//!   cluster does not have answer 404, like a real server.
//! - `{base}/c/{name}/prometheus/-/ready`, `…/prometheus/api/v1/query` (DCGM
//!   `DCGM_FI_DEV_GPU_UTIL`), `…/tempo/ready`, `…/loki/ready`.
//! - `{base}/admin/…`: create clusters from a [`ClusterSpec`], change [`Faults`] at
//!   run time, read the request log (see [`admin`]).
//!
//! Invariant: nothing in `serve` needs this crate at run time; it is a stand-in for
//! real clusters, reached only over HTTP.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
mod client;
mod cluster_api;
mod error;
mod log;
pub mod objects;
mod observability;
mod selector;
mod spec;
mod state;

pub use client::SimAdmin;
pub use error::Error;
pub use log::{LogEntry, RequestPage, Service};
pub use spec::{ClusterSpec, Faults, FaultsPatch, ObservabilitySpec};
pub use state::{ClusterView, Sim};

use axum::routing::any;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Default number of request-log entries kept.
pub const DEFAULT_LOG_CAPACITY: usize = 200_000;

/// The simulator's routes over `sim`.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/c/{name}/{*rest}", any(cluster_api::handle))
        .nest("/admin", admin::router())
        .with_state(sim)
}

/// Serves `sim` on `listener` until `shutdown` completes, then drains open requests.
pub async fn run(
    listener: TcpListener,
    sim: Sim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A simulator running in the background of the current runtime, for tests.
/// Dropping it stops the server.
pub struct SpawnedSim {
    /// Its state (the admin API over HTTP sees the same).
    pub sim: Sim,
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SpawnedSim {
    /// Binds `127.0.0.1:0` and serves an empty simulator.
    pub async fn start() -> std::io::Result<SpawnedSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new(format!("http://{addr}"), DEFAULT_LOG_CAPACITY);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, sim.clone(), async {
            let _ = stopped.await;
        }));
        Ok(SpawnedSim {
            sim,
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> &str {
        self.sim.base_url()
    }

    /// A client of its admin API.
    pub fn admin(&self) -> SimAdmin {
        SimAdmin::new(self.base_url())
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)))
    }
}

impl Drop for SpawnedSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Flags of `fleetreg sim`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    fleetreg sim --clusters 10 --listen 127.0.0.1:9000\n  \
    curl http://127.0.0.1:9000/admin/clusters\n  \
    curl -X PATCH -H 'content-type: application/json' -d '{\"api_down\": true}' \\\n    \
    http://127.0.0.1:9000/admin/clusters/sim-00000/faults")]
pub struct SimArgs {
    /// Address to listen on (loopback unless asked otherwise).
    #[arg(long, env = "FLEETREG_SIM_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Clusters to create at start-up, named `{prefix}-00000`…, a deterministic mix
    /// of GPU, CNF and observability set-ups; more can be added over `/admin`.
    #[arg(long, default_value_t = 0)]
    pub clusters: usize,
    /// Name prefix of the clusters created at start-up.
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// URL clients use to reach this simulator (defaults to `http://LISTEN`).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Request-log entries kept (oldest dropped first).
    #[arg(long, default_value_t = DEFAULT_LOG_CAPACITY)]
    pub log_capacity: usize,
}

/// Runs `fleetreg sim` until ctrl-c or SIGTERM.
pub async fn run_cli(args: SimArgs) -> Result<(), Error> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let base_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let sim = Sim::new(base_url, args.log_capacity);
    sim.create_many(&args.prefix, args.clusters, ClusterSpec::sample)?;
    eprintln!(
        "fleetreg sim: {} clusters at {}/c/<name>, admin API at {}/admin/clusters",
        sim.len(),
        sim.base_url(),
        sim.base_url()
    );
    run(listener, sim, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
