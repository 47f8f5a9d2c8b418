//! `fleetreg vault …`: rotate the master key that seals stored credentials and
//! show what each key wraps, straight on the database with the key file (like
//! `serve`; not the HTTP API).

use anyhow::bail;
use clap::{Args, Subcommand};
use fleetreg_server::credentials::hub_config;
use fleetreg_server::credentials::rotate::{
    rotate_master_key_with_progress, vault_status, RewrapProgress, RotateOutcome, VaultOptions,
};
use fleetreg_server::settings::Settings;
use std::path::PathBuf;

const ROTATE_EXAMPLES: &str = "Examples:
  fleetreg vault rotate-master-key                 # ./fleetreg.db, ./fleetreg-master.key
  fleetreg vault rotate-master-key --database-url postgres://fleet@db/fleet \\
      --master-key-file /etc/fleetreg/master.key
  FLEETREG_MASTER_KEY=NEW,OLD fleetreg vault rotate-master-key --rewrap-only

Puts a new active key first in the key file (the old keys stay after it), re-wraps
the data key of every stored credential under it (the encrypted secrets stay as they
are) and replaces the canary. Safe while `serve` runs: running servers keep working
and pick up the new key file; servers started later read both keys. Back the key
file up afterwards. Keep old key lines: audit entries written before the rotation
are verified with keys derived from them (`fleetreg audit verify` fails without
them); they no longer seal anything once `fleetreg vault status` shows nothing
left under them and every server restarted.

With FLEETREG_MASTER_KEY set the key cannot be rotated in place: put the new and
the old key in it comma-separated, the new first, restart the servers, then run
this command with --rewrap-only.";

const STATUS_EXAMPLES: &str = "Examples:
  fleetreg vault status
  fleetreg vault status --database-url postgres://fleet@db/fleet --master-key-file /etc/fleetreg/master.key";

/// The vault commands.
#[derive(Subcommand)]
#[command(after_help = "Examples:\n  fleetreg vault rotate-master-key\n  fleetreg vault status")]
pub enum VaultCommand {
    /// Rotate the master key: a new active key in the key file, every stored
    /// credential re-wrapped under it (safe while `serve` runs).
    #[command(after_help = ROTATE_EXAMPLES)]
    RotateMasterKey(RotateArgs),
    /// Show the master key ids and how many stored credentials each wraps.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(Location),
}

/// Where the database and the key file are: the defaults, environment and
/// configuration file of `serve` (flags and environment override the file).
#[derive(Args)]
pub struct Location {
    /// sqlite://PATH or postgres://… [default: sqlite://fleetreg.db].
    #[arg(long, env = "FLEETREG_DATABASE_URL")]
    database_url: Option<String>,
    /// The master key file `serve` uses (never created here) [default: fleetreg-master.key].
    #[arg(long, env = "FLEETREG_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// The configuration file `serve` uses: its database_url, master_key_file and
    /// credentials backend (`credentials.backend: kubernetes` re-wraps the
    /// envelopes in the hub's Secrets; token from FLEETREG_HUB_TOKEN or token_file).
    #[arg(long, env = "FLEETREG_CONFIG")]
    config: Option<PathBuf>,
}

/// `vault rotate-master-key`.
#[derive(Args)]
pub struct RotateArgs {
    #[command(flatten)]
    location: Location,
    /// Do not change the keys: re-wrap under the active key as it is (the
    /// first key of FLEETREG_MASTER_KEY or of the key file), e.g. to finish a
    /// rotation after servers restarted.
    #[arg(long)]
    rewrap_only: bool,
}

/// Runs a vault command.
pub async fn run(command: VaultCommand) -> anyhow::Result<()> {
    match command {
        VaultCommand::RotateMasterKey(args) => rotate(args).await,
        VaultCommand::Status(location) => status(location).await,
    }
}

/// The options of `location` (over its config file, if any), with the keys of
/// FLEETREG_MASTER_KEY when set.
fn options(location: Location) -> anyhow::Result<VaultOptions> {
    let mut settings = match &location.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    settings.credentials.kubernetes.token_from_env();
    Ok(VaultOptions {
        database_url: location.database_url.unwrap_or(settings.database_url),
        master_key_file: location
            .master_key_file
            .unwrap_or(settings.credentials.master_key_file.clone()),
        master_key: std::env::var("FLEETREG_MASTER_KEY")
            .ok()
            .filter(|v| !v.is_empty()),
        kubernetes: hub_config(&settings.credentials)?,
    })
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let options = options(args.location)?;
    // A bar of clusters re-wrapped, on a terminal only.
    let progress = crate::progress::RewrapBar::new();
    let outcome = rotate_master_key_with_progress(&options, args.rewrap_only, &progress).await;
    progress.finish();
    let outcome = outcome?;
    print_rotation(&options, &outcome);
    let failed = &outcome.report.failed;
    if !failed.is_empty() {
        for failure in failed {
            eprintln!("cluster {}: {}", failure.cluster_id, failure.reason);
        }
        bail!(
            "{} clusters' credentials could not be re-wrapped (listed above)",
            failed.len()
        );
    }
    Ok(())
}

fn print_rotation(options: &VaultOptions, outcome: &RotateOutcome) {
    let previous: Vec<String> = outcome
        .key_ids
        .iter()
        .skip(1)
        .map(ToString::to_string)
        .collect();
    let previous = match previous.is_empty() {
        true => "none".to_owned(),
        false => previous.join(", "),
    };
    match outcome.new_key {
        Some(key) => println!(
            "rotated {}: new active key {key}; previous keys kept: {previous}",
            options.master_key_file.display()
        ),
        None => println!(
            "re-wrapping under the active key {}; previous keys: {previous}",
            outcome
                .key_ids
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
    }
    let r = &outcome.report;
    println!("clusters with credentials:        {}", r.clusters);
    println!(
        "envelopes re-wrapped:             {} ({} clusters)",
        r.envelopes_rewrapped, r.clusters_rewrapped
    );
    println!(
        "already under the active key:     {} clusters",
        r.already_current
    );
    println!(
        "changed concurrently, retried:    {} (deleted meanwhile: {})",
        r.retried, r.deleted
    );
    println!(
        "canary:                           {}",
        if outcome.canary_replaced {
            "replaced"
        } else {
            "already under the active key"
        }
    );
    println!(
        "envelopes left under old keys:    {}",
        r.envelopes_remaining()
    );
    if r.envelopes_remaining() > 0 {
        eprintln!(
            "warning: servers still running with the previous key file sealed credentials \
             meanwhile; restart every server, then run `fleetreg vault rotate-master-key \
             --rewrap-only`"
        );
    }
    if outcome.new_key.is_some() {
        eprintln!(
            "Back up {} now. Keep the previous keys in it until every server restarted and \
             `fleetreg vault status` shows nothing left under them.",
            options.master_key_file.display()
        );
    }
}

async fn status(location: Location) -> anyhow::Result<()> {
    let status = vault_status(&options(location)?).await?;
    println!("master keys from {}:", status.source);
    println!(
        "{:<18} {:<9} {:>9} {:>10}",
        "KEY ID", "ROLE", "CLUSTERS", "ENVELOPES"
    );
    let usage_of = |key: &str| status.usage.iter().find(|u| u.key_id == key);
    for (i, key) in status.key_ids.iter().enumerate() {
        let key = key.to_string();
        let (clusters, envelopes) = usage_of(&key).map_or((0, 0), |u| (u.clusters, u.envelopes));
        let role = if i == 0 { "active" } else { "previous" };
        println!("{key:<18} {role:<9} {clusters:>9} {envelopes:>10}");
    }
    let unknown: Vec<_> = status
        .usage
        .iter()
        .filter(|u| !status.key_ids.iter().any(|k| k.to_string() == u.key_id))
        .collect();
    for u in &unknown {
        println!(
            "{:<18} {:<9} {:>9} {:>10}",
            u.key_id, "MISSING", u.clusters, u.envelopes
        );
    }
    match (&status.canary_key, status.canary_opens) {
        (Some(key), Some(true)) => println!("canary: under {key}, opens with these keys"),
        (Some(key), _) => println!("canary: under {key}, does NOT open with these keys"),
        (None, _) => println!("canary: none stored yet (written at the first `serve`)"),
    }
    if status.canary_opens == Some(false) {
        bail!(
            "these keys do not open the stored canary: they are not the keys the data was \
             sealed with"
        );
    }
    if !unknown.is_empty() {
        bail!(
            "credentials are stored under master keys that are not in the keys given \
             (MISSING above): they cannot be opened with these keys"
        );
    }
    Ok(())
}
