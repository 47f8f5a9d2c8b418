//! `fleetreg`: the server (`serve`), the command-line client of its HTTP API,
//! and the benchmark (`bench`).

mod audit;
mod client;
mod cluster;
mod cluster_health;
mod credentials;
mod events;
mod fleet;
mod output;
mod serve;
mod token;
mod vault;

use clap::{Parser, Subcommand};

/// mimalloc: the server allocates many short-lived buffers per request; glibc
/// malloc took ~15% of server CPU under write load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

const EXAMPLES: &str = "Examples:
  fleetreg serve                                   # SQLite in ./fleetreg.db on 127.0.0.1:8080
  fleetreg cluster register prod-east-1 --api-server-url https://api.prod-east-1.example.com:6443
  fleetreg cluster list --environment PRODUCTION -o json
  fleetreg events watch
  fleetreg fleet summary
  fleetreg audit list --cluster prod-east-1        # auditor or admin token
  fleetreg credentials store prod-east-1 --kubeconfig ./prod-east-1.kubeconfig
  fleetreg bench --help

The client commands reach the server at --server, else FLEETREG_URL, else http://127.0.0.1:8080.";

/// fleetreg: the source of truth for a fleet of Kubernetes clusters.
#[derive(Parser)]
#[command(name = "fleetreg", version, about, propagate_version = true, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API server (embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Register, list, inspect, update and delete clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Read the change log or follow it live.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Fleet views: summary, health and capabilities across all clusters.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Store, rotate, validate and delete cluster credentials (secrets read from
    /// files or stdin); list those expiring soon.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Create, list and revoke API tokens (admin only).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Read the audit log, or verify that it was not tampered with.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Rotate the master key that seals stored credentials; show what each key wraps.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Drive a running server with load and print what was measured.
    Bench(fleetreg_bench::BenchArgs),
    /// Serve simulated clusters (Kubernetes API subset, Prometheus, Tempo, Loki)
    /// with faults controllable at run time over /admin.
    Sim(fleetreg_sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Cluster(command) => cluster::run(command).await,
            Command::Events(command) => events::run(command).await,
            Command::Fleet(command) => fleet::run(command).await,
            Command::Credentials(command) => credentials::run(command).await,
            Command::Token(command) => token::run(command).await,
            Command::Audit(command) => audit::run(command).await,
            Command::Vault(command) => vault::run(command).await,
            Command::Bench(args) => fleetreg_bench::run(args).await.map_err(anyhow::Error::from),
            Command::Sim(args) => fleetreg_sim::run_cli(args).await.map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            client::print_error(&error);
            if error.downcast_ref::<audit::ChainBroken>().is_some() {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}
