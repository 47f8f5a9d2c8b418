//! `fleetreg client …`: a thin client of `/api/v1/clients` (the seed's
//! client registry scripts: list-clients.sh, client-status.sh,
//! update-registry.sh), plus import and export of its `registry.yml`.

mod registry_yaml;
mod views;

use crate::client::{path_segment, Client, ConnectArgs, ServerError};
use crate::output::{print, print_whole, write_stdout, Format};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use views::{CSV_COLUMNS, MAINTENANCE, ROLES, STATUSES};

const ALL_EXAMPLES: &str = "Examples:
  fleetreg client import docs/examples/registry.yml
  fleetreg client list --status deployed --role production
  fleetreg client list -o summary
  fleetreg client status acme
  fleetreg client update acme deploy --role production --server-ip 203.0.113.21 \\
      --server-id 12345678 --server-type cx32 --server-location fsn1
  fleetreg client update acme status --status=maintenance
  fleetreg client maintenance acme security-patch
  fleetreg client version acme nextcloud=31.0.2 traefik=
  fleetreg client stale --days 30 --field security-patch
  fleetreg client export -o clients/registry.yml

The server is --server, else $FLEETREG_URL, else http://127.0.0.1:8080.
Errors from the server print as `error: CODE: message` and exit with status 1.";

const LIST_EXAMPLES: &str = "Examples:
  fleetreg client list
  fleetreg client list --status deployed
  fleetreg client list --role canary --app nextcloud -o json
  fleetreg client list --location nbg1 --server-type cx22 -o csv > clients.csv
  fleetreg client list -o summary

Every page is fetched. `-o summary` shows counts by status and role, app and
version spread, and how many clients are stale per maintenance field.";

const STATUS_EXAMPLES: &str = "Examples:
  fleetreg client status acme
  fleetreg client show acme -o json";

const SHOW_EXAMPLES: &str = "Examples:
  fleetreg client show acme
  fleetreg client show acme -o json";

const UPDATE_EXAMPLES: &str = "Examples:
  fleetreg client update acme deploy --role production --server-ip 203.0.113.21 \\
      --server-id 12345678 --server-type cx32 --server-location fsn1
  fleetreg client update acme rebuild --server-ip 203.0.113.22 --date 2026-02-01
  fleetreg client update acme status --status maintenance
  fleetreg client update acme status --status=deployed
  fleetreg client update oldco destroy --date 2025-12-31

deploy creates a missing client and also re-deploys a destroyed one; rebuild
needs a deployed client or one in maintenance; status moves among deployed,
maintenance and offboarding (an illegal move is INVALID_STATUS_TRANSITION).";

const MAINTENANCE_EXAMPLES: &str = "Examples:
  fleetreg client maintenance acme security-patch
  fleetreg client maintenance acme backup-verified --date 2026-01-19
  fleetreg client maintenance acme last_os_update -o json";

const VERSION_EXAMPLES: &str = "Examples:
  fleetreg client version acme nextcloud=31.0.2
  fleetreg client version acme authentik=2025.10.3 traefik=   # traefik= removes it";

const NOTES_EXAMPLES: &str = "Examples:
  fleetreg client notes acme \"Upgraded to Nextcloud 31 on 2026-01-20. Migration successful.\"
  fleetreg client notes acme ''   # clears the notes";

const STALE_EXAMPLES: &str = "Examples:
  fleetreg client stale
  fleetreg client stale --days 30 --field security-patch
  fleetreg client stale --days 7 --field last_backup_verified --role production -o csv

Lists clients whose maintenance date is older than --days, or was never
recorded (destroyed clients are left out unless --status is given).";

const HISTORY_EXAMPLES: &str = "Examples:
  fleetreg client history acme
  fleetreg client history acme --limit 5 -o json";

const IMPORT_EXAMPLES: &str = "Examples:
  fleetreg client import docs/examples/registry.yml --dry-run
  fleetreg client import clients/registry.yml
  cat clients/registry.yml | fleetreg client import -

Every entry is checked first: a file with any problem changes nothing, and
each problem prints as `CLIENT: FIELD: REASON`. Clients not in the file are
left alone. A YAML syntax error is reported with its line and column, and
nothing is sent.";

const EXPORT_EXAMPLES: &str = "Examples:
  fleetreg client export
  fleetreg client export -o clients/registry.yml

The seed's registry.yml structure, clients sorted by name and fields in a
fixed order, so a git diff of two exports shows only real changes.";

const DELETE_EXAMPLES: &str = "Examples:
  fleetreg client delete oldco
  fleetreg client delete oldco --yes

Deleting removes the entry (its history stays readable); `update NAME destroy`
keeps it for the audit trail.";

/// The client registry commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum ClientCommand {
    /// List clients (every page), filtered; or the summary (`-o summary`).
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one client in detail: status, dates, server, versions, maintenance ages, URLs.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(NameArgs),
    /// Print one client as the API's JSON or YAML.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Lifecycle operations: deploy, rebuild, destroy, status.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Stamp a maintenance date (default today).
    #[command(after_help = MAINTENANCE_EXAMPLES)]
    Maintenance(MaintenanceArgs),
    /// Set component versions (`app=` removes one).
    #[command(after_help = VERSION_EXAMPLES)]
    Version(VersionArgs),
    /// Replace a client's notes.
    #[command(after_help = NOTES_EXAMPLES)]
    Notes(NotesArgs),
    /// List clients needing updates: a maintenance date older than --days, or none.
    #[command(after_help = STALE_EXAMPLES)]
    Stale(StaleArgs),
    /// Show every past state of a client, newest first.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Check a client's URLs now: state, HTTP status, latency, TLS expiry.
    #[command(after_help = crate::client_health::HEALTH_EXAMPLES)]
    Health(crate::client_health::HealthArgs),
    /// Import a registry.yml (all or nothing); `--dry-run` only shows the plan.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Write the registry as the seed's registry.yml (deterministic).
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Delete a client's entry (asks first unless --yes).
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),
    /// Compare the registry with `tofu show -json` output; --apply fixes server details (exit 3: drift).
    #[command(after_help = crate::client_drift::DRIFT_EXAMPLES)]
    Drift(crate::client_drift::DriftArgs),
}

/// Output and connection flags of the commands that print clients.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One case rule for every enum flag: any case is accepted (with the arg's
/// `ignore_case`) and the API's lower-case form is sent.
fn lower_enum(values: &'static [&'static str]) -> impl TypedValueParser<Value = String> {
    PossibleValuesParser::new(values.iter().copied()).map(|value| value.to_ascii_lowercase())
}

/// A maintenance field by its short name (`security-patch`) or the API's
/// (`last_security_patch`), any case, `-` or `_`; the API's form is sent.
fn maintenance_field() -> impl TypedValueParser<Value = String> {
    /// Each field's short name, then the other spellings accepted.
    const NAMES: [[&str; 4]; 4] = [
        [
            "full-update",
            "full_update",
            "last_full_update",
            "last-full-update",
        ],
        [
            "security-patch",
            "security_patch",
            "last_security_patch",
            "last-security-patch",
        ],
        ["os-update", "os_update", "last_os_update", "last-os-update"],
        [
            "backup-verified",
            "backup_verified",
            "last_backup_verified",
            "last-backup-verified",
        ],
    ];
    let values = NAMES
        .iter()
        .map(|[short, aliases @ ..]| PossibleValue::new(*short).aliases(*aliases));
    PossibleValuesParser::new(values).map(|given| {
        let given = given.to_ascii_lowercase().replace('-', "_");
        let given = given.trim_start_matches("last_");
        MAINTENANCE
            .iter()
            .map(|(wire, _)| *wire)
            .find(|wire| wire.trim_start_matches("last_") == given)
            .unwrap_or("last_full_update")
            .to_owned()
    })
}

/// A `YYYY-MM-DD` date.
fn parse_date(text: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| format!("expected a date YYYY-MM-DD, e.g. 2026-01-17; got {text:?}"))
}

/// `component=version`; an empty version removes the component.
fn parse_version(text: &str) -> Result<(String, Option<String>), String> {
    match text.split_once('=') {
        Some((component, version)) if !component.is_empty() => Ok((
            component.to_owned(),
            Some(version.to_owned()).filter(|v| !v.is_empty()),
        )),
        _ => Err(format!(
            "expected COMPONENT=VERSION (e.g. nextcloud=31.0.2, or traefik= to remove); got {text:?}"
        )),
    }
}

/// The list filters, as the API's query.
#[derive(Args, Debug, Default)]
pub struct FilterArgs {
    /// pending, deployed, maintenance, offboarding or destroyed, any case.
    #[arg(long, ignore_case = true, value_parser = lower_enum(STATUSES))]
    status: Option<String>,
    /// canary or production, any case.
    #[arg(long, ignore_case = true, value_parser = lower_enum(ROLES))]
    role: Option<String>,
    /// Clients with this app installed.
    #[arg(long, value_name = "APP")]
    app: Option<String>,
    /// Server location (exact), e.g. nbg1.
    #[arg(long)]
    location: Option<String>,
    /// Server type (exact), e.g. cx22.
    #[arg(long, value_name = "TYPE")]
    server_type: Option<String>,
}

impl FilterArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("role", &self.role),
            ("app", &self.app),
            ("location", &self.location),
            ("server_type", &self.server_type),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.query().is_empty()
    }
}

/// How `client list` prints.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// `{"items": [...], "total": N}`, pretty-printed.
    Json,
    /// The same as YAML.
    Yaml,
    /// Every field, comma-separated, with a header row.
    Csv,
    /// The registry summary (counts by status and role, apps, versions, stale).
    Summary,
}

/// `client list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

/// Commands that name one client and print people's text.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// Client name.
    name: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// How `client show` prints.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum ShowFormat {
    /// The API's JSON as YAML.
    #[default]
    Yaml,
    /// The API's JSON, pretty-printed.
    Json,
}

/// `client show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Client name.
    name: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ShowFormat::Yaml)]
    format: ShowFormat,
}

/// `client update NAME ACTION`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Client name.
    name: String,
    #[command(subcommand)]
    action: UpdateAction,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

/// The lifecycle operations.
#[derive(Subcommand, Debug)]
pub enum UpdateAction {
    /// Mark deployed with server details and the date (creates a missing client).
    Deploy(DeployArgs),
    /// Refresh server details and stamp the full update (deployed or maintenance only).
    Rebuild(RebuildArgs),
    /// Mark destroyed with the date; everything else is kept.
    Destroy(DateArgs),
    /// Move to deployed, maintenance or offboarding.
    Status(StatusArgs),
}

/// Server details; those not given are kept.
#[derive(Args, Debug, Default)]
pub struct ServerFlags {
    /// Public address.
    #[arg(long, value_name = "IP")]
    server_ip: Option<std::net::IpAddr>,
    /// The provider's server id.
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
    /// Server type, e.g. cx22.
    #[arg(long, value_name = "TYPE")]
    server_type: Option<String>,
    /// Data-centre location, e.g. nbg1.
    #[arg(long, value_name = "LOCATION")]
    server_location: Option<String>,
}

impl ServerFlags {
    fn body(&self) -> Value {
        let mut server = Map::new();
        let fields = [
            ("type", self.server_type.clone()),
            ("location", self.server_location.clone()),
            ("ip", self.server_ip.map(|ip| ip.to_string())),
            ("id", self.server_id.clone()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                server.insert(key.into(), Value::String(value));
            }
        }
        Value::Object(server)
    }
}

/// The date of an operation.
#[derive(Args, Debug, Default)]
pub struct DateArgs {
    /// The date, YYYY-MM-DD [default: today, on the server].
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    date: Option<String>,
}

/// `client update NAME deploy`.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// canary or production, any case [a new client: production].
    #[arg(long, ignore_case = true, value_parser = lower_enum(ROLES))]
    role: Option<String>,
    #[command(flatten)]
    server: ServerFlags,
    #[command(flatten)]
    date: DateArgs,
}

/// `client update NAME rebuild`.
#[derive(Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    server: ServerFlags,
    #[command(flatten)]
    date: DateArgs,
}

/// The statuses a status move may go to (deploy and destroy have their own).
const MOVABLE: &[&str] = &["deployed", "maintenance", "offboarding"];

/// `client update NAME status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// deployed, maintenance or offboarding, any case.
    #[arg(long, required = true, ignore_case = true, value_parser = lower_enum(MOVABLE))]
    status: String,
}

/// `client maintenance`.
#[derive(Args, Debug)]
pub struct MaintenanceArgs {
    /// Client name.
    name: String,
    /// full-update, security-patch, os-update or backup-verified (or the API's
    /// last_full_update, …), any case.
    #[arg(value_name = "KIND", ignore_case = true, value_parser = maintenance_field())]
    field: String,
    #[command(flatten)]
    date: DateArgs,
    #[command(flatten)]
    common: Common,
}

/// `client version`.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Client name.
    name: String,
    /// COMPONENT=VERSION, one or more; COMPONENT= removes it.
    #[arg(value_name = "COMPONENT=VERSION", required = true, value_parser = parse_version)]
    versions: Vec<(String, Option<String>)>,
    #[command(flatten)]
    common: Common,
}

/// `client notes`.
#[derive(Args, Debug)]
pub struct NotesArgs {
    /// Client name.
    name: String,
    /// The new notes (replace the old ones; '' clears them).
    text: String,
    #[command(flatten)]
    common: Common,
}

/// `client stale`.
#[derive(Args, Debug)]
pub struct StaleArgs {
    /// Age in days that counts as stale.
    #[arg(long, default_value_t = 30, value_name = "N")]
    days: u32,
    /// The maintenance date looked at: full-update, security-patch, os-update or
    /// backup-verified (or last_security_patch, …), any case [default: full-update].
    #[arg(long, ignore_case = true, value_parser = maintenance_field())]
    field: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    common: Common,
}

/// `client history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Client name (also of a deleted client).
    name: String,
    /// Most entries to show (server default 100, max 500).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Only revisions below this (to page back).
    #[arg(long, value_name = "REVISION")]
    before: Option<i64>,
    #[command(flatten)]
    common: Common,
}

/// `client import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The registry file (YAML, the seed's structure); `-` reads stdin.
    file: PathBuf,
    /// Only say what would change.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: Common,
}

/// `client export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to FILE (replaced at once, never half-written) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `client delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Client name.
    name: String,
    /// Do not ask (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `/api/v1/clients/{name}` and below.
fn client_path(name: &str, rest: &str) -> String {
    format!("/api/v1/clients/{}{rest}", path_segment(name))
}

/// Today's date (UTC, as the server counts days).
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Prints the detailed view of one client (the API's client JSON).
pub fn print_status(client: &Value) -> anyhow::Result<()> {
    write_stdout(&views::status_text(client, today()))
}

/// Prints one changed client: a line saying what happened (table), the
/// client (json/yaml) or its CSV row.
fn print_changed(format: Format, client: &Value, what: &str) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let name = client["name"].as_str().unwrap_or("?");
            let status = client["status"].as_str().unwrap_or("?");
            write_stdout(&format!(
                "client {name}: {what} (status {status}, revision {})\n",
                client["revision"]
            ))
        }
        Format::Csv => {
            let row = views::flat(client);
            print(format, client, std::slice::from_ref(&row), CSV_COLUMNS)
        }
        format => print_whole(format, client),
    }
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::List(args) => list(args).await,
        ClientCommand::Status(args) => {
            let client = Client::from_args(&args.connect)?;
            let found: Value = client
                .send(client.request(Method::GET, &client_path(&args.name, "")))
                .await?;
            print_status(&found)?;
            write_stdout(&crate::client_health::status_section(&client, &args.name).await)
        }
        ClientCommand::Show(args) => {
            let client = Client::from_args(&args.connect)?;
            let found: Value = client
                .send(client.request(Method::GET, &client_path(&args.name, "")))
                .await?;
            let format = match args.format {
                ShowFormat::Json => Format::Json,
                ShowFormat::Yaml => Format::Yaml,
            };
            print_whole(format, &found)
        }
        ClientCommand::Update(args) => update(args).await,
        ClientCommand::Maintenance(args) => {
            let body = json!({"field": args.field, "date": args.date.date});
            let what = format!(
                "{} = {}",
                args.field,
                args.date.date.as_deref().unwrap_or("today")
            );
            act(&args.common, &args.name, "maintenance", body, &what).await
        }
        ClientCommand::Version(args) => {
            let mut versions = Map::new();
            for (component, version) in &args.versions {
                if versions.insert(component.clone(), json!(version)).is_some() {
                    anyhow::bail!("{component} is given twice");
                }
            }
            let what = args
                .versions
                .iter()
                .map(|(c, v)| match v {
                    Some(v) => format!("{c} = {v}"),
                    None => format!("{c} removed"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let body = json!({ "versions": versions });
            act(&args.common, &args.name, "versions", body, &what).await
        }
        ClientCommand::Notes(args) => {
            let body = json!({"notes": args.text});
            let what = if args.text.is_empty() {
                "notes cleared"
            } else {
                "notes replaced"
            };
            act(&args.common, &args.name, "notes", body, what).await
        }
        ClientCommand::Stale(args) => stale(args).await,
        ClientCommand::History(args) => history(args).await,
        ClientCommand::Health(args) => crate::client_health::run(args).await,
        ClientCommand::Import(args) => import(args).await,
        ClientCommand::Export(args) => export(args).await,
        ClientCommand::Delete(args) => delete(args).await,
        ClientCommand::Drift(args) => crate::client_drift::run(args).await,
    }
}

/// POSTs a lifecycle operation and prints the changed client.
async fn act(
    common: &Common,
    name: &str,
    operation: &str,
    body: Value,
    what: &str,
) -> anyhow::Result<()> {
    let client = Client::from_args(&common.connect)?;
    let path = client_path(name, &format!("/{operation}"));
    let changed: Value = client
        .send(
            client
                .request(Method::POST, &path)
                .json(&without_nulls(body)),
        )
        .await?;
    print_changed(common.format, &changed, what)
}

async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let common = Common {
        connect: args.connect,
        format: args.format,
    };
    let date_text = |date: &Option<String>| {
        date.as_deref()
            .map_or_else(|| "today".to_owned(), str::to_owned)
    };
    let (operation, body, what) = match args.action {
        UpdateAction::Deploy(deploy) => (
            "deploy",
            json!({"role": deploy.role, "server": deploy.server.body(), "date": deploy.date.date}),
            format!("deployed on {}", date_text(&deploy.date.date)),
        ),
        UpdateAction::Rebuild(rebuild) => (
            "rebuild",
            json!({"server": rebuild.server.body(), "date": rebuild.date.date}),
            format!("rebuilt on {}", date_text(&rebuild.date.date)),
        ),
        UpdateAction::Destroy(destroy) => (
            "destroy",
            json!({"date": destroy.date}),
            format!("destroyed on {}", date_text(&destroy.date)),
        ),
        UpdateAction::Status(status) => (
            "status",
            json!({"status": status.status}),
            format!("status set to {}", status.status),
        ),
    };
    act(&common, &args.name, operation, body, &what).await
}

/// The body without its `null` members (absent means "keep" or "default").
fn without_nulls(body: Value) -> Value {
    match body {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// Every client matching `query`, all pages. Should the registry change
/// between pages, the listing starts over (twice at most; then what was
/// read is shown, with a warning).
async fn list_all(client: &Client, query: &[(&str, String)]) -> anyhow::Result<Vec<Value>> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let mut items: Vec<Value> = Vec::new();
        let mut first_revision = None;
        let mut page: u64 = 1;
        let complete = loop {
            let mut page_query = query.to_vec();
            page_query.push(("page", page.to_string()));
            page_query.push(("page_size", "100".into()));
            let response = client
                .send_raw(
                    client
                        .request(Method::GET, "/api/v1/clients")
                        .query(&page_query),
                )
                .await?;
            let revision = response
                .headers()
                .get("x-fleetreg-revision")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.map_err(|e| {
                anyhow::anyhow!("the server's client list is not fleetreg JSON: {e}")
            })?;
            if page == 1 {
                first_revision = revision;
            } else if revision != first_revision && attempt < ATTEMPTS {
                break false;
            }
            items.extend(body["items"].as_array().cloned().unwrap_or_default());
            if page >= body["total_pages"].as_u64().unwrap_or(1) {
                break true;
            }
            page += 1;
        };
        if complete {
            if attempt == ATTEMPTS {
                let mut seen = std::collections::BTreeSet::new();
                items.retain(|c| seen.insert(c["name"].to_string()));
            }
            return Ok(items);
        }
    }
    unreachable!("the last attempt always completes")
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    if args.format == ListFormat::Summary {
        if !args.filters.is_empty() {
            anyhow::bail!("-o summary covers the whole registry; drop the filters");
        }
        let summary: Value = client
            .send(client.request(Method::GET, "/api/v1/clients/summary"))
            .await?;
        return write_stdout(&views::summary_text(&summary));
    }
    let items = list_all(&client, &args.filters.query()).await?;
    let rows: Vec<Value> = items.iter().map(views::flat).collect();
    let whole = json!({"items": items, "total": items.len()});
    match args.format {
        ListFormat::Table if items.is_empty() => {
            eprintln!("no clients found");
            Ok(())
        }
        ListFormat::Table => {
            print(Format::Table, &whole, &rows, views::LIST_COLUMNS)?;
            eprintln!("{} clients", items.len());
            Ok(())
        }
        ListFormat::Csv => print(Format::Csv, &whole, &rows, CSV_COLUMNS),
        ListFormat::Json => print_whole(Format::Json, &whole),
        ListFormat::Yaml | ListFormat::Summary => print_whole(Format::Yaml, &whole),
    }
}

async fn stale(args: StaleArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let field = args
        .field
        .clone()
        .unwrap_or_else(|| "last_full_update".into());
    let mut query = args.filters.query();
    query.push(("stale_days", args.days.to_string()));
    query.push(("stale_field", field.clone()));
    let items = list_all(&client, &query).await?;
    let today = today();
    let rows: Vec<Value> = items
        .iter()
        .map(|c| views::stale_row(c, &field, today))
        .collect();
    let whole = json!({"items": items, "total": items.len(), "stale_days": args.days, "stale_field": field});
    match args.common.format {
        Format::Table if items.is_empty() => {
            eprintln!(
                "no client has {field} older than {} days or missing",
                args.days
            );
            Ok(())
        }
        Format::Table => {
            print(Format::Table, &whole, &rows, views::STALE_COLUMNS)?;
            eprintln!(
                "{} clients with {field} older than {} days or missing",
                items.len(),
                args.days
            );
            Ok(())
        }
        Format::Csv => {
            let mut columns: Vec<_> = CSV_COLUMNS
                .iter()
                .map(|c| crate::output::Column {
                    header: c.header,
                    pointer: c.pointer,
                })
                .collect();
            columns.push(crate::output::Column {
                header: "stale_age",
                pointer: "/stale_age",
            });
            print(Format::Csv, &whole, &rows, &columns)
        }
        format => print_whole(format, &whole),
    }
}

async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let query: Vec<(&str, String)> = [
        ("limit", args.limit.map(|n| n.to_string())),
        ("before", args.before.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let entries: Value = client
        .send(
            client
                .request(Method::GET, &client_path(&args.name, "/history"))
                .query(&query),
        )
        .await?;
    let rows: Vec<Value> = entries
        .as_array()
        .map(|a| a.iter().map(views::history_row).collect())
        .unwrap_or_default();
    match args.common.format {
        Format::Table if rows.is_empty() => {
            eprintln!("no history");
            Ok(())
        }
        Format::Table => print(Format::Table, &entries, &rows, views::HISTORY_COLUMNS),
        Format::Csv => print(Format::Csv, &entries, &rows, &views::history_csv_columns()),
        format => print_whole(format, &entries),
    }
}

/// The text of `path`, or of stdin for `-`, and how to name it.
fn read_input(path: &Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
        return Ok(("(stdin)".into(), text));
    }
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
    Ok((name, text))
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    // Read and parse before anything else: a bad file sends nothing.
    let (source, text) = read_input(&args.file)?;
    let document = registry_yaml::parse_registry(&source, &text)?;
    let client = Client::from_args(&args.common.connect)?;
    let mut request = client
        .request(Method::POST, "/api/v1/clients/import")
        .json(&document);
    if args.dry_run {
        request = request.query(&[("dry_run", "true")]);
    }
    // One request does the whole import: a spinner while it runs, on a terminal only.
    let count = document["clients"].as_object().map_or(0, Map::len);
    let spinner = crate::progress::spinner(&format!(
        "{} {count} clients from {source}",
        if args.dry_run {
            "planning the import of"
        } else {
            "importing"
        }
    ));
    let plan = client.send(request).await.map_err(with_problems);
    spinner.finish_and_clear();
    let plan: Value = plan?;
    match args.common.format {
        Format::Table => write_stdout(&views::plan_text(&plan, &source)),
        Format::Csv => {
            let rows = views::plan_rows(&plan);
            let columns = [
                crate::output::Column {
                    header: "name",
                    pointer: "/name",
                },
                crate::output::Column {
                    header: "action",
                    pointer: "/action",
                },
            ];
            print(Format::Csv, &plan, &rows, &columns)
        }
        format => print_whole(format, &plan),
    }
}

/// An import refused for problems: the message followed by one
/// `CLIENT: FIELD: REASON` line per problem (instead of them as JSON).
fn with_problems(error: anyhow::Error) -> anyhow::Error {
    let Some(server) = error.downcast_ref::<ServerError>() else {
        return error;
    };
    let Some(problems) = server.details["problems"].as_array() else {
        return error;
    };
    if server.status != StatusCode::BAD_REQUEST || problems.is_empty() {
        return error;
    }
    let lines = views::problems_text(problems);
    ServerError {
        code: server.code.clone(),
        message: format!("{}\n{}", server.message, lines.trim_end()),
        status: server.status,
        details: Value::Null,
        hint: server.hint.clone(),
    }
    .into()
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let document: Value = client
        .send(client.request(Method::GET, "/api/v1/clients/export"))
        .await?;
    let text = registry_yaml::registry_yaml(&document);
    match args.output.as_deref() {
        None => write_stdout(&text),
        Some(path) if path.as_os_str() == "-" => write_stdout(&text),
        Some(path) => {
            write_replacing(path, &text)?;
            let count = document["clients"].as_object().map_or(0, Map::len);
            eprintln!("{count} clients written to {}", path.display());
            Ok(())
        }
    }
}

/// Writes `text` to `path` through a temporary file beside it and a rename,
/// so readers see the old file or the new one, never a part.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", path.display()))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        anyhow::bail!("cannot write {}: {error}", path.display());
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let path = client_path(&args.name, "");
    let mut request = client.request(Method::DELETE, &path);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "refusing to delete client {} without --yes: stdin is not a terminal to ask on",
                args.name
            );
        }
        let current: Value = client.send(client.request(Method::GET, &path)).await?;
        eprint!(
            "Delete client {} ({}) from the registry? Its history stays readable; \
             `fleetreg client update {} destroy` would keep the entry. [y/N] ",
            args.name,
            current["status"].as_str().unwrap_or("?"),
            args.name
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            anyhow::bail!("not deleted");
        }
        // Delete what was confirmed, not a later change of it.
        if let Some(revision) = current["revision"].as_i64() {
            request = request.header("If-Match", format!("\"{revision}\""));
        }
    }
    client.send_raw(request).await?;
    write_stdout(&format!("client {} deleted\n", args.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Test {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Test::try_parse_from(["test"].iter().chain(args)).map(|t| t.command)
    }

    #[test]
    fn enum_flags_take_any_case_and_send_the_api_form() {
        match parse(&["list", "--status", "Deployed", "--role", "CANARY"]) {
            Ok(ClientCommand::List(args)) => {
                assert_eq!(args.filters.status.as_deref(), Some("deployed"));
                assert_eq!(args.filters.role.as_deref(), Some("canary"));
            }
            other => panic!("{:?}", other.err()),
        }
        for (given, wire) in [
            ("security-patch", "last_security_patch"),
            ("last_security_patch", "last_security_patch"),
            ("Security_Patch", "last_security_patch"),
            ("LAST-OS-UPDATE", "last_os_update"),
            ("backup-verified", "last_backup_verified"),
            ("full-update", "last_full_update"),
        ] {
            match parse(&["maintenance", "acme", given]) {
                Ok(ClientCommand::Maintenance(args)) => assert_eq!(args.field, wire, "{given}"),
                other => panic!("{given}: {:?}", other.err()),
            }
            match parse(&["stale", "--field", given]) {
                Ok(ClientCommand::Stale(args)) => {
                    assert_eq!(args.field.as_deref(), Some(wire), "{given}")
                }
                other => panic!("{given}: {:?}", other.err()),
            }
        }
        let error = parse(&["maintenance", "acme", "reboot"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("security-patch"), "{error}");
        let error = parse(&["update", "acme", "status", "--status", "pending"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("offboarding"), "{error}");
    }

    #[test]
    fn update_takes_its_flags_and_the_output_anywhere() {
        for args in [
            &[
                "update",
                "acme",
                "status",
                "--status=maintenance",
                "-o",
                "json",
            ][..],
            &[
                "update",
                "acme",
                "-o",
                "json",
                "status",
                "--status",
                "MAINTENANCE",
            ],
        ] {
            match parse(args) {
                Ok(ClientCommand::Update(update)) => {
                    assert_eq!(update.format, Format::Json, "{args:?}");
                    match update.action {
                        UpdateAction::Status(s) => assert_eq!(s.status, "maintenance"),
                        other => panic!("{other:?}"),
                    }
                }
                other => panic!("{args:?}: {:?}", other.err()),
            }
        }
        match parse(&[
            "update",
            "acme",
            "deploy",
            "--role",
            "Canary",
            "--server-ip",
            "203.0.113.5",
            "--server-id",
            "42",
            "--date",
            "2026-02-01",
        ]) {
            Ok(ClientCommand::Update(UpdateArgs {
                action: UpdateAction::Deploy(deploy),
                ..
            })) => {
                assert_eq!(deploy.role.as_deref(), Some("canary"));
                assert_eq!(
                    deploy.server.body(),
                    json!({"ip": "203.0.113.5", "id": "42"})
                );
                assert_eq!(deploy.date.date.as_deref(), Some("2026-02-01"));
            }
            other => panic!("{:?}", other.err()),
        }
        for bad in [
            &["update", "acme", "deploy", "--server-ip", "300.1.1.1"][..],
            &["update", "acme", "destroy", "--date", "2026-02-30"],
            &["update", "acme", "status"],
            &["version", "acme"],
            &["version", "acme", "=1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_parse_and_empty_removes() {
        assert_eq!(
            parse_version("nextcloud=31.0.2"),
            Ok(("nextcloud".into(), Some("31.0.2".into())))
        );
        assert_eq!(parse_version("traefik="), Ok(("traefik".into(), None)));
        assert!(parse_version("traefik").is_err());
    }

    #[test]
    fn bodies_leave_out_what_was_not_given() {
        let body = without_nulls(json!({"role": null, "server": {}, "date": null}));
        assert_eq!(body, json!({"server": {}}));
    }

    #[test]
    fn import_problems_become_lines() {
        let error: anyhow::Error = ServerError {
            code: "VALIDATION_ERROR".into(),
            message: "the registry file has 2 problem(s)".into(),
            status: StatusCode::BAD_REQUEST,
            details: json!({"problems": [
                {"client": "a", "field": "server.ip", "reason": "bad"},
                {"client": "B", "field": "name", "reason": "not a name"}
            ]}),
            hint: None,
        }
        .into();
        let error = with_problems(error);
        let server = error.downcast_ref::<ServerError>().unwrap();
        assert_eq!(
            server.message,
            "the registry file has 2 problem(s)\na: server.ip: bad\nB: name: not a name"
        );
        assert!(server.details.is_null());
    }
}
