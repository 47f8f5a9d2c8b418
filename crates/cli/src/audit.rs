//! `fleetreg audit …`: read the audit log over HTTP (`list`), and check its
//! MAC chain straight from the database with the master key (`verify`).

use crate::client::{Client, ConnectArgs};
use crate::output::{print, Column, Format};
use clap::{Args, Subcommand};
use fleetreg_server::audit::{verify, VerifyOptions, VerifyOutcome};
use fleetreg_server::settings::audit_head_file;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

const LIST_EXAMPLES: &str = "Examples:
  fleetreg audit list
  fleetreg audit list --cluster prod-east-1 --since 2025-01-01T00:00:00Z
  fleetreg audit list --action credentials.decrypt -o json
  fleetreg audit list --actor ci-bot --after 1200 --limit 500

Only auditor and admin tokens may read the audit log.";

const VERIFY_EXAMPLES: &str = "Examples:
  fleetreg audit verify                        # ./fleetreg.db, ./fleetreg-master.key, ./fleetreg-audit.head
  fleetreg audit verify --database-url postgres://postgres@127.0.0.1/fleet \\
      --master-key-file /etc/fleetreg/master.key --audit-head-file /var/lib/fleetreg/audit.head

Reads the database directly (like `serve`; not the HTTP API) and recomputes every
entry's MAC. Exit status: 0 verified, 2 the log was tampered with (the first broken
entry is named), 1 it could not be checked (no database, no key).";

/// The audit commands.
#[derive(Subcommand)]
#[command(
    after_help = "Examples:\n  fleetreg audit list --cluster prod-east-1\n  fleetreg audit verify"
)]
pub enum AuditCommand {
    /// Print audit entries (who did what, when, from where, with which result).
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Check that no audit entry was altered, removed or cut off the end.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

/// `audit list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only entries by this actor (a token name, `anonymous`, `system:…`).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, e.g. `cluster.update`, `credentials.decrypt`.
    #[arg(long)]
    action: Option<String>,
    /// Only entries about this cluster, by id or name (a deleted cluster: by id).
    #[arg(long, value_name = "ID|NAME")]
    cluster: Option<String>,
    /// Entries at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Entries before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Entries with an id above this (paging; see the hint after a table).
    #[arg(long, value_name = "ID")]
    after: Option<i64>,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u32,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `audit verify`. No `Debug`: it may hold the master key.
#[derive(Args)]
pub struct VerifyArgs {
    /// sqlite://PATH or postgres://….
    #[arg(
        long,
        env = "FLEETREG_DATABASE_URL",
        default_value = "sqlite://fleetreg.db"
    )]
    database_url: String,
    /// The master key file `serve` uses (read only, never created).
    #[arg(
        long,
        env = "FLEETREG_MASTER_KEY_FILE",
        default_value = "fleetreg-master.key"
    )]
    master_key_file: PathBuf,
    /// The master key(s) themselves, base64 (instead of the file).
    #[arg(long, env = "FLEETREG_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// The audit head file `serve` writes [default: fleetreg-audit.head next to
    /// the master key file].
    #[arg(long, env = "FLEETREG_AUDIT_HEAD_FILE")]
    audit_head_file: Option<PathBuf>,
}

/// The audit log failed verification (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("audit log verification FAILED: {0}")]
pub struct ChainBroken(pub String);

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        pointer: "/id",
    },
    Column {
        header: "AT",
        pointer: "/at",
    },
    Column {
        header: "ACTOR",
        pointer: "/actor",
    },
    Column {
        header: "ROLE",
        pointer: "/role",
    },
    Column {
        header: "ACTION",
        pointer: "/action",
    },
    Column {
        header: "RESOURCE_ID",
        pointer: "/resource_id",
    },
    Column {
        header: "RESULT",
        pointer: "/result",
    },
    Column {
        header: "ERROR",
        pointer: "/error_code",
    },
    Column {
        header: "REVISION",
        pointer: "/revision",
    },
    Column {
        header: "SOURCE",
        pointer: "/source",
    },
];

/// Runs an audit command.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List(args) => list(args).await,
        AuditCommand::Verify(args) => verify_chain(args).await,
    }
}

/// The id of `--cluster`: a UUID as given (deleted clusters keep their
/// entries), a name looked up.
async fn cluster_id(client: &Client, cluster: &str) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(cluster).is_ok() {
        return Ok(cluster.to_owned());
    }
    let found = crate::cluster::fetch(client, cluster).await?;
    Ok(crate::cluster::id_of(&found)?.to_owned())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("actor", args.actor),
        ("action", args.action),
        ("since", args.since),
        ("until", args.until),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    if let Some(cluster) = &args.cluster {
        query.push(("resource_id", cluster_id(&client, cluster).await?));
    }
    if let Some(after) = args.after {
        query.push(("after", after.to_string()));
    }
    let page: Value = client
        .send(client.request(Method::GET, "/api/v1/audit").query(&query))
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if args.format == Format::Table && items.is_empty() {
        eprintln!("no audit entries match");
        return Ok(());
    }
    print(args.format, &page, &items, COLUMNS)?;
    if args.format == Format::Table {
        eprintln!(
            "{} entries; continue with --after {}",
            items.len(),
            page["next_after"]
        );
    }
    Ok(())
}

async fn verify_chain(args: VerifyArgs) -> anyhow::Result<()> {
    let head_file = audit_head_file(args.audit_head_file.as_deref(), &args.master_key_file);
    let options = VerifyOptions {
        database_url: args.database_url,
        master_key: args.master_key,
        master_key_file: args.master_key_file,
        head_file: head_file.clone(),
    };
    let VerifyOutcome { report, head } = verify(&options).await?;
    if let Some(broken) = report.broken {
        return Err(ChainBroken(broken.to_string()).into());
    }
    let legacy = match report.legacy {
        0 => String::new(),
        n => format!(" ({n} older entries from before the chain began are not verifiable)"),
    };
    println!(
        "audit log verified: {} entries sealed, last entry {}{legacy}",
        report.verified, report.last_id
    );
    match head {
        Some(head) => println!(
            "head file {} (entry {}) matches: nothing was cut off the end",
            head_file.display(),
            head.id
        ),
        None => eprintln!(
            "warning: no head file at {}: entries removed from the end could not be detected",
            head_file.display()
        ),
    }
    Ok(())
}
