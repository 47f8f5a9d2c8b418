//! `fleetreg serve`: settings from file, env and flags; logging; signals.

use anyhow::Context;
use clap::{Args, ValueEnum};
use fleetreg_server::settings::Settings;
use fleetreg_server::Application;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const SERVE_EXAMPLES: &str = "Examples:
  fleetreg serve                                   # SQLite file ./fleetreg.db, http://127.0.0.1:8080
  fleetreg serve --database-url postgres://postgres@127.0.0.1/fleet   # after: createdb -h 127.0.0.1 -U postgres fleet
  fleetreg serve --listen 0.0.0.0:8443 --tls-cert chain.pem --tls-key key.pem   # other hosts: HTTPS only
  fleetreg serve --config fleetreg.yaml --redis-url redis://127.0.0.1:6379

Flags override environment variables, which override the configuration file:
  cluster_registry:
    database_url: sqlite://fleetreg.db
    redis_url: redis://127.0.0.1:6379/0
    health_check: {enabled: true, hub_interval_seconds: 15, timeout_seconds: 10}
    discovery: {on_registration: true, periodic_refresh_hours: 24}

SIGTERM or Ctrl-C stops gracefully (in-flight requests finish); a second one stops at once.";

/// Flags of `serve`; each also reads an environment variable and overrides the config file.
// No `Debug`: it holds the master key.
#[derive(Args)]
#[command(after_help = SERVE_EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FLEETREG_LISTEN")]
    listen: Option<SocketAddr>,
    /// sqlite://PATH (created if missing) or postgres://… [default: sqlite://fleetreg.db].
    #[arg(long, env = "FLEETREG_DATABASE_URL")]
    database_url: Option<String>,
    /// Publish every event to Redis pub/sub channel `fleetreg:events`.
    #[arg(long, env = "FLEETREG_REDIS_URL")]
    redis_url: Option<String>,
    /// YAML file with a `cluster_registry:` block (seed section 11); unknown keys are errors.
    #[arg(long, env = "FLEETREG_CONFIG")]
    config: Option<PathBuf>,
    /// Keep change-log events this many hours [default: 168].
    #[arg(long, env = "FLEETREG_EVENTS_RETENTION_HOURS")]
    events_retention_hours: Option<u64>,
    /// Do not check cluster health, clients' URLs nor edge nodes
    /// (`edge.http_check`) in the background, nor discover capabilities on
    /// registration (`POST …/refresh` and `GET …/clients/{name}/health` still
    /// work).
    #[arg(long, env = "FLEETREG_NO_HEALTH_CHECKS")]
    no_health_checks: bool,
    /// The master key file that seals stored credentials (created with mode 0600
    /// on first start; back it up) [default: fleetreg-master.key].
    #[arg(long, env = "FLEETREG_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// The master key itself, base64 (instead of the file; for CI and containers).
    #[arg(long, env = "FLEETREG_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Where the audit chain's head is recorded after each commit (checked by
    /// `fleetreg audit verify`) [default: fleetreg-audit.head next to the master key file].
    #[arg(long, env = "FLEETREG_AUDIT_HEAD_FILE")]
    audit_head_file: Option<PathBuf>,
    /// Where the bootstrap admin token is written (mode 0600) when `serve`
    /// creates one; the CLI on this machine reads it [default: fleetreg-admin.token].
    #[arg(long, env = "FLEETREG_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Use this value as the bootstrap admin token instead (CI, containers;
    /// at least 16 characters).
    #[arg(long, env = "FLEETREG_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "FLEETREG_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FLEETREG_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating
    /// proxy: tokens would otherwise cross the network in the clear).
    #[arg(long, env = "FLEETREG_ALLOW_INSECURE_LISTEN")]
    allow_insecure_listen: bool,
    /// Log format.
    #[arg(long, env = "FLEETREG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The address a plain-HTTP `serve` with these flags would refuse (a
/// non-loopback `--listen` without `--tls-cert` or `--allow-insecure-listen`),
/// as `Application::build` does; for checking the examples.
#[cfg(test)]
pub(crate) fn refused_listen(args: &ServeArgs) -> Option<SocketAddr> {
    args.listen
        .filter(|l| !l.ip().is_loopback() && args.tls_cert.is_none() && !args.allow_insecure_listen)
}

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(url) = &args.database_url {
        settings.database_url = url.clone();
    }
    if let Some(url) = &args.redis_url {
        settings.redis_url = Some(url.clone());
    }
    if let Some(hours) = args.events_retention_hours {
        settings.events_retention = Duration::from_secs(hours * 3600);
    }
    if let Some(file) = &args.master_key_file {
        settings.credentials.master_key_file = file.clone();
    }
    if let Some(key) = &args.master_key {
        settings.credentials.master_key = Some(key.clone());
    }
    // The hub token of `credentials.backend: kubernetes`: environment only, never a flag.
    settings.credentials.kubernetes.token_from_env();
    if let Some(file) = &args.audit_head_file {
        settings.audit.head_file = Some(file.clone());
    }
    if let Some(file) = &args.admin_token_file {
        settings.auth.admin_token_file = file.clone();
    }
    if let Some(token) = &args.admin_token {
        settings.auth.admin_token = Some(token.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        settings.tls = Some(fleetreg_server::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    settings.allow_insecure_listen |= args.allow_insecure_listen;
    if args.no_health_checks {
        settings.health_check.enabled = false;
        settings.discovery.on_registration = false;
        settings.client_health.interval_seconds = 0;
        settings.edge.http_check.enabled = false;
    }
    Ok(settings)
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
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// How long a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Completes on the first SIGINT or SIGTERM; a second signal, or a drain
/// longer than [`SHUTDOWN_DEADLINE`], then ends the process at once.
async fn stop_requested() {
    shutdown_signal().await;
    tracing::info!(
        deadline_seconds = SHUTDOWN_DEADLINE.as_secs(),
        "signal received: stopping gracefully (send it again to stop at once)"
    );
    tokio::spawn(async {
        tokio::select! {
            () = shutdown_signal() => tracing::warn!("second signal: exiting without waiting"),
            () = tokio::time::sleep(SHUTDOWN_DEADLINE) => tracing::error!("graceful shutdown took too long: exiting"),
        }
        std::process::exit(1);
    });
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let settings = settings(&args)?;
    if let Some(path) = &args.config {
        tracing::info!(config = %path.display(), "configuration file read");
    }
    let app = Application::build(settings)
        .await
        .context("cannot start the server")?;
    let listen = app
        .local_addr()
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    tracing::info!(%listen, "fleetreg listening on http://{listen}");
    app.run_until_stopped(stop_requested())
        .await
        .context("the server failed")?;
    Ok(())
}
