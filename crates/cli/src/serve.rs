//! `fleetreg serve`: settings from file, env and flags; logging; signals.

use anyhow::Context;
use clap::{Args, ValueEnum};
use fleetreg_server::settings::Settings;
use fleetreg_server::Application;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `serve`; each also reads an environment variable and overrides the config file.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  fleetreg serve\n  fleetreg serve --listen 0.0.0.0:8080 --database-url postgres://postgres@127.0.0.1/fleet\n  fleetreg serve --config fleetreg.yaml --redis-url redis://127.0.0.1:6379")]
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
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

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let settings = settings(&args)?;
    let app = Application::build(settings).await.context("cannot start the server")?;
    tracing::info!(listen = ?app.local_addr(), "fleetreg listening");
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
