//! `fleetreg cluster sync-status|deregister|leader` (seed
//! cluster-lifecycle-deregistration.md): a cluster's hosts, leader lease,
//! client deployments and recent sync jobs; safe deregistration (the preview
//! of what goes with the cluster, the seed's yes/no question, and the seed's
//! report with the three remediations when sync-enabled clients block it);
//! the leader lease. Also what `host` and `deployment` share: flags, views
//! with times and ages for people, columns.

use crate::client::{Client, ConnectArgs, ServerError};
use crate::cluster::{fetch, id_of};
use crate::output::{detail, print, print_whole, table, write_stdout, Column, Format};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::IsTerminal;

/// `cluster sync-status --help` examples.
pub const SYNC_STATUS_EXAMPLES: &str = "Examples:
  fleetreg cluster sync-status prod-host-1
  fleetreg cluster sync-status prod-host-1 -o json

Shows the cluster's hosts (last heartbeat and its age; ORPHANED when silent for
longer than sync.orphan_after_seconds), its leader lease, the client deployments
on its hosts (sync on/off, last sync, status, failures in a row) and the most
recent sync jobs. Times are UTC.";

/// `cluster deregister --help` examples.
pub const DEREGISTER_EXAMPLES: &str = "Examples:
  fleetreg cluster deregister prod-host-1 --dry-run   # what would go with it; deletes nothing
  fleetreg cluster deregister prod-host-1             # shows that, then asks (yes/no)
  fleetreg cluster deregister prod-host-1 --yes       # no question (scripts)

Deregistration is refused (CLUSTER_HAS_SYNC_CLIENTS, exit 1) while any client
deployment on the cluster's hosts has sync enabled: the report lists them and,
for each, the commands of the three ways out:
  fleetreg deployment pause DEPLOYMENT_ID                       # 1. disable sync
  fleetreg deployment move DEPLOYMENT_ID --host OTHER_HOST_ID   # 2. migrate
  fleetreg deployment delete DEPLOYMENT_ID                      # 3. decommission
Otherwise the cluster goes with its hosts, their (sync-disabled) deployments,
their sync jobs and conflict log, and its leader records. Only `yes` answers the
question; where stdin is not a terminal it is refused without --yes.";

/// `cluster leader --help` examples.
pub const LEADER_EXAMPLES: &str = "Examples:
  fleetreg cluster leader prod-host-1 --host 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e --lease-seconds 30

Granted when nobody holds the lease, it has expired, or that host holds it
(renewal); otherwise LEADER_HELD, naming the holder and until when.";

/// Connection and output flags of the host, deployment and leader commands.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    /// Where the server is and which token to send.
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How the sectioned views (sync status, deregistration) print.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum ViewFormat {
    /// Sections and tables for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
}

impl ViewFormat {
    /// The same format among the CLI's output formats.
    fn format(self) -> Format {
        match self {
            ViewFormat::Table => Format::Table,
            ViewFormat::Json => Format::Json,
            ViewFormat::Yaml => Format::Yaml,
        }
    }
}

/// `cluster sync-status`.
#[derive(Args, Debug)]
pub struct SyncStatusArgs {
    /// Cluster id or name.
    cluster: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ViewFormat::Table)]
    format: ViewFormat,
}

/// `cluster deregister`.
#[derive(Args, Debug)]
pub struct DeregisterArgs {
    /// Cluster id or name.
    cluster: String,
    /// Do not ask; deregister if nothing blocks it.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only show what would be removed; delete nothing.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ViewFormat::Table)]
    format: ViewFormat,
}

/// `cluster leader`.
#[derive(Args, Debug)]
pub struct LeaderArgs {
    /// Cluster id or name.
    cluster: String,
    /// The claiming host's id (a host of this cluster).
    #[arg(long = "host", value_name = "HOST_ID")]
    host: String,
    /// Lease length in seconds, 1–600.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=600))]
    lease_seconds: u32,
    #[command(flatten)]
    common: Common,
}

/// A column (for the `const` tables below).
pub const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer }
}

/// The API's RFC 3339 time, if `value` is one.
fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
}

/// An API time as `YYYY-MM-DD HH:MM:SS` (UTC), as the seed's report shows it.
pub fn short_time(value: &Value) -> Option<String> {
    parse_time(value).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A length of time in kubectl's style: `42s`, `4m12s`, `3h5m`, `2d4h`, `12d`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 if s % 60 == 0 => format!("{m}m"),
        60..=3599 => format!("{m}m{}s", s % 60),
        3600..=86_399 if m == 0 => format!("{h}h"),
        3600..=86_399 => format!("{h}h{m}m"),
        _ if d >= 8 || h == 0 => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// The items of a JSON list (none when it is not one).
pub fn items(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// Host id → host name, from a list of hosts.
fn hostnames(hosts: &[Value]) -> HashMap<String, String> {
    hosts
        .iter()
        .filter_map(|h| {
            Some((
                h["id"].as_str()?.to_owned(),
                h["hostname"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A host for people: last heartbeat with its age now, `ORPHANED` or `ok`.
pub fn host_view(host: &Value, now: DateTime<Utc>) -> Value {
    let heartbeat = parse_time(&host["last_heartbeat_at"]);
    json!({
        "id": host["id"],
        "cluster_id": host["cluster_id"],
        "hostname": host["hostname"],
        "address": host["address"],
        "last_heartbeat": short_time(&host["last_heartbeat_at"]).unwrap_or_else(|| "never".into()),
        "age": heartbeat.map(|t| span((now - t).num_seconds())),
        "state": if host["orphaned"].as_bool() == Some(true) { "ORPHANED" } else { "ok" },
        "created": short_time(&host["created_at"]),
    })
}

/// Columns of host tables (over [`host_view`]s).
pub const HOST_COLUMNS: &[Column] = &[
    col("HOSTNAME", "/hostname"),
    col("ADDRESS", "/address"),
    col("LAST HEARTBEAT", "/last_heartbeat"),
    col("AGE", "/age"),
    col("STATE", "/state"),
    col("ID", "/id"),
];

/// One host, field per line (over a [`host_view`]).
pub const HOST_DETAIL: &[Column] = &[
    col("ID", "/id"),
    col("Hostname", "/hostname"),
    col("Address", "/address"),
    col("Cluster", "/cluster_id"),
    col("Last heartbeat", "/last_heartbeat"),
    col("Age", "/age"),
    col("State", "/state"),
    col("Registered", "/created"),
];

/// Every field of a host, named as in the API, for CSV.
pub const HOST_CSV: &[Column] = &[
    col("id", "/id"),
    col("cluster_id", "/cluster_id"),
    col("hostname", "/hostname"),
    col("address", "/address"),
    col("last_heartbeat_at", "/last_heartbeat_at"),
    col("orphaned", "/orphaned"),
    col("created_at", "/created_at"),
];

/// A deployment for people: its host's name when known, sync `on`/`off`.
pub fn deployment_view(deployment: &Value, hostnames: &HashMap<String, String>) -> Value {
    let host_id = deployment["host_id"].as_str().unwrap_or_default();
    json!({
        "id": deployment["id"],
        "client": deployment["client"],
        "container": deployment["container_name"],
        "host": hostnames.get(host_id).map_or(host_id, String::as_str),
        "host_id": deployment["host_id"],
        "cluster_id": deployment["cluster_id"],
        "sync": if deployment["sync_enabled"].as_bool() == Some(true) { "on" } else { "off" },
        "last_sync": short_time(&deployment["last_sync_at"]).unwrap_or_else(|| "never".into()),
        "status": deployment["last_sync_status"],
        "failures": deployment["consecutive_failures"],
        "created": short_time(&deployment["created_at"]),
    })
}

/// Columns of deployment tables (over [`deployment_view`]s).
pub const DEPLOYMENT_COLUMNS: &[Column] = &[
    col("CLIENT", "/client"),
    col("CONTAINER", "/container"),
    col("HOST", "/host"),
    col("SYNC", "/sync"),
    col("LAST SYNC", "/last_sync"),
    col("STATUS", "/status"),
    col("FAILURES", "/failures"),
    col("ID", "/id"),
];

/// One deployment, field per line (over a [`deployment_view`]).
pub const DEPLOYMENT_DETAIL: &[Column] = &[
    col("ID", "/id"),
    col("Client", "/client"),
    col("Container", "/container"),
    col("Host", "/host_id"),
    col("Cluster", "/cluster_id"),
    col("Sync", "/sync"),
    col("Last sync", "/last_sync"),
    col("Last sync status", "/status"),
    col("Failures in a row", "/failures"),
    col("Created", "/created"),
];

/// Every field of a deployment, named as in the API, for CSV.
pub const DEPLOYMENT_CSV: &[Column] = &[
    col("id", "/id"),
    col("host_id", "/host_id"),
    col("cluster_id", "/cluster_id"),
    col("client", "/client"),
    col("container_name", "/container_name"),
    col("sync_enabled", "/sync_enabled"),
    col("last_sync_at", "/last_sync_at"),
    col("last_sync_status", "/last_sync_status"),
    col("consecutive_failures", "/consecutive_failures"),
    col("created_at", "/created_at"),
];

/// A sync job for people: its client when known, times in short form.
pub fn job_view(job: &Value, clients: &HashMap<String, String>) -> Value {
    let deployment = job["deployment_id"].as_str().unwrap_or_default();
    json!({
        "id": job["id"],
        "deployment_id": job["deployment_id"],
        "client": clients.get(deployment).map_or(deployment, String::as_str),
        "kind": job["kind"],
        "status": job["status"],
        "started": short_time(&job["started_at"]),
        "finished": short_time(&job["finished_at"]),
        "rows": job["rows"],
        "error": job["error"],
    })
}

/// Columns of sync job tables (over [`job_view`]s).
pub const JOB_COLUMNS: &[Column] = &[
    col("STARTED", "/started"),
    col("CLIENT", "/client"),
    col("KIND", "/kind"),
    col("STATUS", "/status"),
    col("FINISHED", "/finished"),
    col("ROWS", "/rows"),
    col("ERROR", "/error"),
    col("JOB", "/id"),
];

/// One sync job, field per line (over a [`job_view`]).
pub const JOB_DETAIL: &[Column] = &[
    col("ID", "/id"),
    col("Deployment", "/deployment_id"),
    col("Kind", "/kind"),
    col("Status", "/status"),
    col("Started", "/started"),
    col("Finished", "/finished"),
    col("Rows", "/rows"),
    col("Error", "/error"),
];

/// Every field of a sync job, named as in the API, for CSV.
pub const JOB_CSV: &[Column] = &[
    col("id", "/id"),
    col("deployment_id", "/deployment_id"),
    col("kind", "/kind"),
    col("status", "/status"),
    col("started_at", "/started_at"),
    col("finished_at", "/finished_at"),
    col("rows", "/rows"),
    col("error", "/error"),
];

/// Prints one resource: the API's object whole (json/yaml), its CSV row, or
/// `view` field per line (table).
pub fn print_resource(
    format: Format,
    raw: &Value,
    view: &Value,
    fields: &[Column],
    csv: &[Column],
) -> anyhow::Result<()> {
    match format {
        Format::Table => write_stdout(&detail(view, fields)),
        Format::Csv => print(Format::Csv, raw, std::slice::from_ref(raw), csv),
        format => print_whole(format, raw),
    }
}

/// A leader lease for people: host name when known, when it expires.
fn leader_view(leader: &Value, hostnames: &HashMap<String, String>, now: DateTime<Utc>) -> Value {
    let host_id = leader["host_id"].as_str().unwrap_or_default();
    let expires = parse_time(&leader["lease_expires_at"]).map(|t| {
        let left = (t - now).num_seconds();
        if left > 0 {
            format!("in {}", span(left))
        } else {
            format!("expired {} ago", span(-left))
        }
    });
    json!({
        "cluster_id": leader["cluster_id"],
        "host": hostnames.get(host_id).map_or(host_id, String::as_str),
        "host_id": host_id,
        "term": leader["term"],
        "lease_expires_at": short_time(&leader["lease_expires_at"]),
        "expires": expires,
    })
}

const LEADER_DETAIL: &[Column] = &[
    col("Cluster", "/cluster_id"),
    col("Leader", "/host"),
    col("Host ID", "/host_id"),
    col("Term", "/term"),
    col("Lease expires", "/lease_expires_at"),
    col("Expires", "/expires"),
];

const LEADER_CSV: &[Column] = &[
    col("cluster_id", "/cluster_id"),
    col("host_id", "/host_id"),
    col("term", "/term"),
    col("lease_expires_at", "/lease_expires_at"),
];

/// `text` with every line indented by `by` spaces.
fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|line| format!("{:by$}{line}\n", ""))
        .collect()
}

/// The sync status for people: cluster, leader, then tables of hosts,
/// deployments and recent jobs.
fn sync_status_text(name: &str, status: &Value, now: DateTime<Utc>) -> String {
    let hosts = items(&status["hosts"]);
    let names = hostnames(&hosts);
    let deployments = items(&status["deployments"]);
    let clients: HashMap<String, String> = deployments
        .iter()
        .filter_map(|d| {
            Some((
                d["id"].as_str()?.to_owned(),
                d["client"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let jobs = items(&status["recent_jobs"]);
    let leader = match &status["leader"] {
        Value::Null => "none".to_owned(),
        leader => {
            let view = leader_view(leader, &names, now);
            format!(
                "{} (term {}), lease expires {}",
                view["host"].as_str().unwrap_or("?"),
                view["term"],
                view["expires"].as_str().unwrap_or("?")
            )
        }
    };
    let mut out = format!(
        "Cluster:  {name} ({})\nLeader:   {leader}\nTimes are UTC.\n",
        status["cluster_id"].as_str().unwrap_or("?")
    );
    let orphaned = hosts.iter().filter(|h| h["orphaned"] == true).count();
    if hosts.is_empty() {
        out.push_str(&format!(
            "\nNo hosts registered (fleetreg host register {name} HOSTNAME).\n"
        ));
    } else {
        let views: Vec<Value> = hosts.iter().map(|h| host_view(h, now)).collect();
        out.push_str(&format!(
            "\nHosts ({}, {orphaned} orphaned):\n{}",
            hosts.len(),
            table(&views, HOST_COLUMNS)
        ));
    }
    let syncing = deployments
        .iter()
        .filter(|d| d["sync_enabled"] == true)
        .count();
    if deployments.is_empty() {
        out.push_str("\nNo client deployments.\n");
    } else {
        let views: Vec<Value> = deployments
            .iter()
            .map(|d| deployment_view(d, &names))
            .collect();
        out.push_str(&format!(
            "\nDeployments ({}, {syncing} with sync on):\n{}",
            deployments.len(),
            table(&views, DEPLOYMENT_COLUMNS)
        ));
    }
    if jobs.is_empty() {
        out.push_str("\nNo sync jobs yet.\n");
    } else {
        let views: Vec<Value> = jobs.iter().map(|j| job_view(j, &clients)).collect();
        out.push_str(&format!(
            "\nRecent sync jobs (newest first):\n{}",
            table(&views, JOB_COLUMNS)
        ));
    }
    out
}

/// `fleetreg cluster sync-status NAME`.
pub async fn sync_status(args: SyncStatusArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let cluster = fetch(&client, &args.cluster).await?;
    let path = format!("/api/v1/clusters/{}/sync-status", id_of(&cluster)?);
    let status: Value = client.send(client.request(Method::GET, &path)).await?;
    match args.format {
        ViewFormat::Table => {
            let name = cluster["name"].as_str().unwrap_or(&args.cluster);
            write_stdout(&sync_status_text(name, &status, Utc::now()))
        }
        format => print_whole(format.format(), &status),
    }
}

/// `fleetreg cluster leader NAME --host HOST_ID --lease-seconds N`.
pub async fn leader(args: LeaderArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let cluster = fetch(&client, &args.cluster).await?;
    let id = id_of(&cluster)?;
    let body = json!({"host_id": args.host, "lease_seconds": args.lease_seconds});
    let path = format!("/api/v1/clusters/{id}/leader");
    let leader: Value = client
        .send(client.request(Method::POST, &path).json(&body))
        .await?;
    let names = match args.common.format {
        Format::Table => {
            let path = format!("/api/v1/clusters/{id}/hosts");
            let hosts: Value = client.send(client.request(Method::GET, &path)).await?;
            hostnames(&items(&hosts))
        }
        _ => HashMap::new(),
    };
    let view = leader_view(&leader, &names, Utc::now());
    print_resource(
        args.common.format,
        &leader,
        &view,
        LEADER_DETAIL,
        LEADER_CSV,
    )
}

/// What to compare of two previews: the hosts and deployments listed and the counts.
fn fingerprint(preview: &Value) -> (Vec<String>, Vec<String>, [Value; 3]) {
    let ids = |key: &str| {
        let mut ids: Vec<String> = items(&preview[key])
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    (
        ids("hosts"),
        ids("deployments"),
        [
            preview["sync_jobs"].clone(),
            preview["conflicts"].clone(),
            preview["leader_records"].clone(),
        ],
    )
}

fn count(preview: &Value, key: &str) -> u64 {
    preview[key].as_u64().unwrap_or(0)
}

/// The names of the listed hosts and deployments, for one line.
fn listed(preview: &Value) -> (String, String) {
    let join = |key: &str, field: &str| {
        items(&preview[key])
            .iter()
            .filter_map(|v| v[field].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")
    };
    (join("hosts", "hostname"), join("deployments", "client"))
}

/// The preview for people, in the seed's words: the safety check, the
/// sync-disabled deployments that go too, and everything deleted.
pub fn preview_text(name: &str, preview: &Value) -> String {
    let hosts = items(&preview["hosts"]);
    let deployments = items(&preview["deployments"]);
    let names = hostnames(&hosts);
    let mut out =
        format!("Safety check passed: no client deployment on cluster {name} has sync enabled.\n");
    if !deployments.is_empty() {
        let views: Vec<Value> = deployments
            .iter()
            .map(|d| deployment_view(d, &names))
            .collect();
        out.push_str(&format!(
            "\nWARNING: {} client deployment(s) registered with sync disabled will be deleted with it:\n{}",
            deployments.len(),
            indent(&table(&views, &[col("CLIENT", "/client"), col("CONTAINER", "/container"), col("HOST", "/host"), col("ID", "/id")]), 2)
        ));
        out.push_str(
            "  To keep a record, move it to a host of another cluster first:\n  \
             fleetreg deployment move DEPLOYMENT_ID --host OTHER_HOST_ID\n",
        );
    }
    let (host_names, _) = listed(preview);
    let host_list = if host_names.is_empty() {
        String::new()
    } else {
        format!(": {host_names}")
    };
    out.push_str(&format!(
        "\nWARNING: deregistering cluster {name} permanently deletes:\n  \
         - the cluster record\n  \
         - {} host record(s){host_list}\n  \
         - {} client deployment record(s) (sync disabled)\n  \
         - {} sync job(s) of those deployments\n  \
         - {} conflict log record(s) of those deployments\n  \
         - {} leader election record(s)\n\
         The client containers themselves are not touched, only their records here.\n",
        hosts.len(),
        deployments.len(),
        count(preview, "sync_jobs"),
        count(preview, "conflicts"),
        count(preview, "leader_records"),
    ));
    out
}

/// Lines `command   # comment`, the comments aligned, indented by `by`.
fn aligned(lines: &[(String, String)], by: usize) -> String {
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(command, comment)| format!("{:by$}{command:<width$}   # {comment}\n", ""))
        .collect()
}

/// The seed's report when sync-enabled clients block a deregistration: a
/// table of them, then the three remediations with, for each client, the
/// command that does it.
pub fn blocked_report(name: &str, details: &Value) -> String {
    let clients = items(&details["clients"]);
    let rows: Vec<Value> = clients
        .iter()
        .map(|c| {
            json!({
                "client_name": c["client"],
                "container_name": c["container_name"],
                "last_sync_at": short_time(&c["last_sync_at"]).unwrap_or_else(|| "never".into()),
                "status": c["last_sync_status"],
            })
        })
        .collect();
    let commands = |make: &dyn Fn(&str) -> String| -> Vec<(String, String)> {
        clients
            .iter()
            .map(|c| {
                (
                    make(c["deployment_id"].as_str().unwrap_or("DEPLOYMENT_ID")),
                    c["client"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    };
    let mut out = format!(
        "CRITICAL WARNING: ACTIVE SYNC CLIENTS DETECTED\n\n\
         Cannot deregister cluster {name}: {} client(s) have sync ENABLED\n\n\
         Clients with sync enabled (times UTC):\n",
        clients.len()
    );
    out.push_str(&table(
        &rows,
        &[
            col("client_name", "/client_name"),
            col("container_name", "/container_name"),
            col("last_sync_at", "/last_sync_at"),
            col("status", "/status"),
        ],
    ));
    out.push_str(
        "\nREQUIRED ACTIONS before deregistration:\n\n\
         For each client listed above, choose ONE of the following:\n\n\
         Option 1: Disable sync for this client (its deployment stays, paused)\n",
    );
    out.push_str(&aligned(
        &commands(&|id| format!("fleetreg deployment pause {id}")),
        3,
    ));
    out.push_str(
        "\nOption 2: Migrate the client to another host/cluster\n   \
         - deploy it on a host of another cluster (register that host if needed:\n     \
         fleetreg host register OTHER_CLUSTER HOSTNAME), then move its record there\n     \
         (sync setting and history kept):\n",
    );
    out.push_str(&aligned(
        &commands(&|id| format!("fleetreg deployment move {id} --host NEW_HOST_ID")),
        5,
    ));
    out.push_str(
        "\nOption 3: Decommission the client deployment\n   \
         - stop its container and back up its data if needed, then delete its record:\n",
    );
    out.push_str(&aligned(
        &commands(&|id| format!("fleetreg deployment delete {id}")),
        5,
    ));
    out.push_str(&format!(
        "\nOnce all sync-enabled clients are handled, run again: fleetreg cluster deregister {name}\n\n"
    ));
    out
}

/// Shows why the server refused to delete cluster `name`, when it is about
/// its hosts: on `CLUSTER_HAS_SYNC_CLIENTS` the seed's report (see
/// [`blocked_report`]), on `CONFIRMATION_REQUIRED` the preview, both to
/// stderr (json/yaml: the error's details to stdout). Returns the error to
/// end the command with, its details then left out (they were shown).
pub fn explain_refusal(error: anyhow::Error, name: &str, format: Format) -> anyhow::Error {
    let Some(server) = error.downcast_ref::<ServerError>() else {
        return error;
    };
    let (text, hint) = match server.code.as_str() {
        "CLUSTER_HAS_SYNC_CLIENTS" => (blocked_report(name, &server.details), None),
        "CONFIRMATION_REQUIRED" => (
            preview_text(name, &server.details["preview"]),
            Some(format!(
                "`fleetreg cluster deregister {name}` shows this and asks; add --yes to confirm without asking"
            )),
        ),
        _ => return error,
    };
    match format {
        Format::Json | Format::Yaml => {
            if let Err(error) = print_whole(format, &server.details) {
                return error;
            }
        }
        _ => eprint!("{text}"),
    }
    ServerError {
        code: server.code.clone(),
        message: server.message.clone(),
        status: server.status,
        details: Value::Null,
        hint,
    }
    .into()
}

/// `DELETE /api/v1/clusters/{id}?dry_run=true`: what deregistering removes.
async fn preview_of(client: &Client, path: &str) -> anyhow::Result<Value> {
    let request = client
        .request(Method::DELETE, path)
        .query(&[("dry_run", "true")]);
    client.send(request).await
}

/// Asks the seed's question on the terminal; only `yes` agrees.
fn agreed() -> anyhow::Result<bool> {
    eprint!("Are you sure you want to deregister this cluster? (yes/no): ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// `fleetreg cluster deregister NAME [--yes] [--dry-run]`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let cluster = fetch(&client, &args.cluster).await?;
    let id = id_of(&cluster)?.to_owned();
    let name = cluster["name"].as_str().unwrap_or(&args.cluster).to_owned();
    let format = args.format.format();
    let path = format!("/api/v1/clusters/{id}");
    let preview = preview_of(&client, &path)
        .await
        .map_err(|e| explain_refusal(e, &name, format))?;
    let people = args.format == ViewFormat::Table;
    if args.dry_run {
        return if people {
            write_stdout(&format!(
                "{}\nDry run: nothing was deleted (`fleetreg cluster deregister {name}` asks, then deletes).\n",
                preview_text(&name, &preview)
            ))
        } else {
            print_whole(format, &preview)
        };
    }
    if !args.yes {
        if people {
            write_stdout(&preview_text(&name, &preview))?;
        }
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "refusing to deregister cluster {name} without --yes: stdin is not a terminal to ask on \
                 (--dry-run shows what would be removed)"
            );
        }
        if !agreed()? {
            anyhow::bail!("not deregistered: only `yes` confirms");
        }
        // Delete what was shown, not what arrived while the question was open.
        let now = preview_of(&client, &path)
            .await
            .map_err(|e| explain_refusal(e, &name, format))?;
        if fingerprint(&now) != fingerprint(&preview) {
            anyhow::bail!(
                "not deregistered: what goes with cluster {name} changed while you were asked; run the command again to see it"
            );
        }
    }
    let request = client
        .request(Method::DELETE, &path)
        .query(&[("confirm", "true")]);
    client
        .send_raw(request)
        .await
        .map_err(|e| explain_refusal(e, &name, format))?;
    let mut removed = preview;
    removed["dry_run"] = json!(false);
    if !people {
        let result = json!({"id": id, "name": name, "deregistered": true, "removed": removed});
        return print_whole(format, &result);
    }
    let (hosts, deployments) = listed(&removed);
    let paren = |text: String| {
        if text.is_empty() {
            text
        } else {
            format!(" ({text})")
        }
    };
    write_stdout(&format!(
        "Cluster {name} deregistered ({id}).\nRemoved with it: {} host(s){}, {} deployment(s){}, \
         {} sync job(s), {} conflict(s), {} leader record(s).\n",
        items(&removed["hosts"]).len(),
        paren(hosts),
        items(&removed["deployments"]).len(),
        paren(deployments),
        count(&removed, "sync_jobs"),
        count(&removed, "conflicts"),
        count(&removed, "leader_records"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_kubectl() {
        assert_eq!(span(-3), "0s");
        assert_eq!(span(42), "42s");
        assert_eq!(span(120), "2m");
        assert_eq!(span(252), "4m12s");
        assert_eq!(span(3600 * 3 + 300), "3h5m");
        assert_eq!(span(86_400 * 2 + 3600 * 4), "2d4h");
        assert_eq!(span(86_400 * 12 + 5), "12d");
    }

    #[test]
    fn the_blocked_report_has_the_table_and_three_options_per_client() {
        let details = json!({
            "clients": [
                {"client": "acme-corp", "container_name": "openwebui-acme-corp",
                 "deployment_id": "d-1", "last_sync_at": "2025-10-10T10:30:00Z",
                 "last_sync_status": "success"},
                {"client": "beta-client", "container_name": "openwebui-beta-client",
                 "deployment_id": "d-2", "last_sync_at": null, "last_sync_status": "pending"},
            ],
            "remediations": ["a", "b", "c"],
        });
        let text = blocked_report("prod-host-1", &details);
        assert!(text.contains("2 client(s) have sync ENABLED"), "{text}");
        assert!(
            text.contains("client_name  container_name         last_sync_at         status\n"),
            "{text}"
        );
        assert!(
            text.contains("acme-corp    openwebui-acme-corp    2025-10-10 10:30:00  success\n"),
            "{text}"
        );
        assert!(
            text.contains("beta-client  openwebui-beta-client  never"),
            "{text}"
        );
        for option in ["Option 1:", "Option 2:", "Option 3:"] {
            assert_eq!(text.matches(option).count(), 1, "{text}");
        }
        for command in [
            "fleetreg deployment pause d-1   # acme-corp",
            "fleetreg deployment move d-2 --host NEW_HOST_ID   # beta-client",
            "fleetreg deployment delete d-2   # beta-client",
        ] {
            assert!(text.contains(command), "{command}:\n{text}");
        }
    }

    #[test]
    fn the_preview_names_what_goes() {
        let preview = json!({
            "cluster_id": "c", "dry_run": true, "sync_jobs": 3, "conflicts": 1, "leader_records": 1,
            "hosts": [{"id": "h1", "hostname": "node-a"}],
            "deployments": [{"id": "d1", "host_id": "h1", "client": "beta",
                             "container_name": "openwebui-beta", "sync_enabled": false}],
        });
        let text = preview_text("prod-host-1", &preview);
        assert!(text.contains("1 host record(s): node-a"), "{text}");
        assert!(
            text.contains("beta    openwebui-beta  node-a  d1"),
            "{text}"
        );
        assert!(text.contains("3 sync job(s)"), "{text}");
        assert!(text.contains("1 leader election record(s)"), "{text}");
        let mut later = preview.clone();
        later["hosts"][0]["last_heartbeat_at"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(fingerprint(&later), fingerprint(&preview));
        later["sync_jobs"] = json!(4);
        assert_ne!(fingerprint(&later), fingerprint(&preview));
    }
}
