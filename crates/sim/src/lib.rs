//! Simulated Kubernetes clusters for tests, demos and load (`fleetreg sim`).
//!
//! One listener serves many clusters, one path prefix each:
//!
//! - `{base}/c/{name}/…`: the Kubernetes API subset that health checks and
//!   discovery call (`/version`, `/api`, `/apis`, namespaces, nodes, pods and
//!   services with `labelSelector`, SR-IOV network node policies, PTP configs,
//!   OpenShift `ClusterVersion`), as real Kubernetes JSON. Custom resources that a
//!   cluster does not have answer 404, like a real server. Besides reads: Secrets
//!   (create, get, list with `labelSelector`, replace, merge-patch, delete, with
//!   409/404/422 `Status` bodies and `resourceVersion`s; any namespace name) and
//!   the TokenRequest API (`POST …/serviceaccounts/{sa}/token`). Services are
//!   those the observability components imply plus the ones the spec declares
//!   ([`ServiceSpec`]: type, cluster IP, ports, annotations, labels,
//!   load-balancer ingress), which the admin API adds and removes at run time.
//! - `{base}/c/{name}/prometheus/-/ready`, `…/prometheus/api/v1/query` (DCGM
//!   `DCGM_FI_DEV_GPU_UTIL`), `…/tempo/ready`, `…/loki/ready`.
//! - `{base}/admin/…`: create clusters from a [`ClusterSpec`] (plus an
//!   [`AuthSpec`]), change [`Faults`] at run time, manage the tokens and client
//!   certificates a cluster accepts, declare and remove Services, read its
//!   Secrets raw, get kubeconfigs, move
//!   the clock, read the request log (see [`admin`]).
//!
//! Authentication, per cluster: with [`AuthSpec::required`] (or the older
//! [`ClusterSpec::token`]) the API server answers 401 unless the request carries a
//! bearer token the cluster accepts (its spec's, added over the admin API, or
//! issued by its TokenRequest API and not expired) or a TLS client certificate
//! issued for that cluster by the simulator's CA. Prometheus, Tempo and Loki check
//! their own token lists only when those are set. Expiry follows the simulator's
//! clock, which tests move forward (`POST /admin/clock/advance`).
//!
//! Transport: plain HTTP ([`run`], [`SpawnedSim::start`]) or HTTPS with a CA made
//! at start-up ([`run_tls`], [`SpawnedSim::start_tls`], `fleetreg sim --tls`),
//! where client certificates are requested but optional, and the request log
//! records the verified certificate's subject CN next to the bearer token.
//!
//! Invariant: nothing in `serve` needs this crate at run time; it is a stand-in for
//! real clusters, reached only over HTTP(S).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
mod auth;
mod client;
mod clock;
mod cluster_api;
mod credentials;
mod der;
mod error;
mod huge_body;
mod kube_status;
mod kubeconfig;
mod log;
pub mod objects;
mod observability;
mod pki;
mod random;
mod reads;
mod secrets;
mod selector;
mod spec;
mod state;
mod tls;
mod token_request;

pub use auth::{AddToken, AuthSpec, ClientCertView, TokenSource, TokenView};
pub use client::SimAdmin;
pub use clock::ClockView;
pub use credentials::{IssueClientCert, IssuedClientCert, DEFAULT_CLIENT_CERT_DAYS};
pub use error::Error;
pub use kubeconfig::KubeconfigAuth;
pub use log::{LogEntry, RequestPage, Service};
pub use pki::Pki;
pub use secrets::SecretRecord;
pub use spec::{
    ClusterSpec, Faults, FaultsPatch, ObservabilitySpec, ServicePortSpec, ServiceSpec, TargetPort,
};
pub use state::{ClusterView, Sim};
pub use token_request::{DEFAULT_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS};

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

/// Serves `sim` over HTTPS on `listener` until `shutdown` completes, then drains
/// open requests. `sim` must come from [`Sim::new_tls`]; client certificates are
/// requested, optional, and checked against its CA.
pub async fn run_tls(
    listener: TcpListener,
    sim: Sim,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = sim
        .pki()
        .ok_or_else(|| std::io::Error::other(Error::TlsDisabled))?
        .server_config()
        .map_err(std::io::Error::other)?;
    tls::serve(listener, router(sim), config, shutdown).await
}

/// A simulator running in the background of the current runtime, for tests.
/// Dropping it stops the server.
pub struct SpawnedSim {
    /// Its state (the admin API over HTTP sees the same).
    pub sim: Sim,
    /// Where it listens.
    pub addr: SocketAddr,
    admin: SimAdmin,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SpawnedSim {
    /// Binds `127.0.0.1:0` and serves an empty simulator over plain HTTP.
    pub async fn start() -> std::io::Result<SpawnedSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new(format!("http://{addr}"), DEFAULT_LOG_CAPACITY);
        let admin = SimAdmin::new(sim.base_url());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, sim.clone(), async {
            let _ = stopped.await;
        }));
        Ok(SpawnedSim {
            sim,
            addr,
            admin,
            stop: Some(stop),
            task,
        })
    }

    /// Binds `127.0.0.1:0` and serves an empty simulator over HTTPS, with a new
    /// CA ([`SpawnedSim::ca_pem`]) whose server certificate covers `127.0.0.1`
    /// and `localhost`.
    pub async fn start_tls() -> std::io::Result<SpawnedSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new_tls(format!("https://{addr}"), DEFAULT_LOG_CAPACITY, &[])
            .map_err(std::io::Error::other)?;
        let ca_pem = sim.ca_pem().unwrap_or_default();
        let admin = SimAdmin::with_ca_pem(sim.base_url(), ca_pem).map_err(std::io::Error::other)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_tls(listener, sim.clone(), async {
            let _ = stopped.await;
        }));
        Ok(SpawnedSim {
            sim,
            addr,
            admin,
            stop: Some(stop),
            task,
        })
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn base_url(&self) -> &str {
        self.sim.base_url()
    }

    /// The CA certificate (PEM) to trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.sim.ca_pem()
    }

    /// A client of its admin API (trusting its CA over HTTPS).
    pub fn admin(&self) -> SimAdmin {
        self.admin.clone()
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
    http://127.0.0.1:9000/admin/clusters/sim-00000/faults\n  \
    fleetreg sim --tls --clusters 3 --ca-out sim-ca.pem\n  \
    curl --cacert sim-ca.pem -X PUT -d '{\"required\": true}' -H 'content-type: application/json' \\\n    \
    https://127.0.0.1:9000/admin/clusters/sim-00000/auth\n  \
    curl --cacert sim-ca.pem 'https://127.0.0.1:9000/admin/clusters/sim-00000/kubeconfig?auth=cert&user=alice'\n  \
    curl -X PUT -H 'content-type: application/json' \\\n    \
    -d '{\"type\": \"LoadBalancer\", \"ports\": [{\"port\": 2283}], \"load_balancer_ips\": [\"10.0.0.5\"],\n    \
    \"annotations\": {\"fleetreg.io/expose\": \"true\", \"fleetreg.io/subdomain\": \"photos\"}}' \\\n    \
    http://127.0.0.1:9000/admin/clusters/sim-00000/services/immich/immich\n  \
    curl -X DELETE http://127.0.0.1:9000/admin/clusters/sim-00000/services/immich/immich")]
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
    /// Serve HTTPS with a CA made at start-up (its PEM at `GET /admin/ca.pem`);
    /// clusters then also accept client certificates issued over the admin API.
    #[arg(long)]
    pub tls: bool,
    /// With `--tls`: also write the CA certificate (PEM) to this file.
    #[arg(long, requires = "tls")]
    pub ca_out: Option<std::path::PathBuf>,
}

/// Runs `fleetreg sim` until ctrl-c or SIGTERM.
pub async fn run_cli(args: SimArgs) -> Result<(), Error> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if args.tls { "https" } else { "http" };
    let base_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let sim = if args.tls {
        let sim = Sim::new_tls(
            base_url.clone(),
            args.log_capacity,
            &tls_hosts(addr, &base_url),
        )?;
        if let (Some(path), Some(pem)) = (&args.ca_out, sim.ca_pem()) {
            std::fs::write(path, pem)?;
            eprintln!("fleetreg sim: CA certificate written to {}", path.display());
        }
        sim
    } else {
        Sim::new(base_url, args.log_capacity)
    };
    sim.create_many(&args.prefix, args.clusters, ClusterSpec::sample)?;
    eprintln!(
        "fleetreg sim: {} clusters at {}/c/<name>, admin API at {}/admin/clusters",
        sim.len(),
        sim.base_url(),
        sim.base_url()
    );
    if args.tls {
        run_tls(listener, sim, shutdown_signal()).await?;
    } else {
        run(listener, sim, shutdown_signal()).await?;
    }
    Ok(())
}

/// Names the server certificate covers besides loopback: the listen address
/// (unless unspecified) and the host of the public URL.
fn tls_hosts(addr: SocketAddr, base_url: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    if let Some(host) = url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
    {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
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
