//! `fleetreg service …`: the routed services (seed
//! service-registry-push-sync.md, "Service Registry"): registered by hand or
//! discovered from annotated Kubernetes Services of registered clusters
//! (`service sync`); a thin client of `/api/v1/services`.

use crate::client::{path_segment, Client};
use crate::cluster::{fetch, id_of};
use crate::cluster_sync::{col, Common};
use crate::edge_common::{if_match, items, joined, print_deleted, typed};
use crate::output::{print, print_one, print_whole, write_stdout, Column, Format};
use clap::{Args, Subcommand, ValueEnum};
use fleetreg_model::ServiceSyncReport;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ALL_EXAMPLES: &str = "Examples:
  fleetreg service register immich --upstream 10.0.0.5:2283 --subdomain photos
  fleetreg service register open-webui --upstream 10.0.0.6:8080 --subdomain chat --cluster prod-east-1 --namespace ai
  fleetreg service list
  fleetreg service list --state gone -o json
  fleetreg service show immich
  fleetreg service update immich --upstream 10.0.0.5:2283 --upstream 10.0.0.7:2283
  fleetreg service sync
  fleetreg service delete immich

A service is published as SUBDOMAIN.DOMAIN for each domain of its routing
(`fleetreg routing --help`), proxied by the routing's VPS nodes to its upstreams.";

const REGISTER_EXAMPLES: &str = "Examples:
  fleetreg service register immich --upstream 10.0.0.5:2283 --subdomain photos
  fleetreg service register open-webui --upstream 10.0.0.6:8080 --upstream 10.0.0.8:8080 --subdomain chat
  fleetreg service register grafana --upstream grafana.monitoring.svc:3000 --cluster prod-east-1 --namespace monitoring

An upstream is HOST:PORT, the host an IPv4 address, [IPv6] or a DNS name; the
first is the primary of a primary-backup routing. The subdomain defaults to the
service's name.";

const UPDATE_EXAMPLES: &str = "Examples:
  fleetreg service update immich --upstream 10.0.0.5:2283 --upstream 10.0.0.7:2283
  fleetreg service update immich --subdomain pics --description \"Photo library\"
  fleetreg service update grafana --no-cluster --no-namespace

Reads the service, changes the fields given (--upstream replaces the whole list)
and writes it back if nobody changed it in between (If-Match); otherwise
PRECONDITION_FAILED, and nothing changes.";

const SYNC_EXAMPLES: &str = "Examples:
  fleetreg service sync
  fleetreg service sync --cluster prod-east-1 -o json

Reads the Kubernetes Services of each registered cluster (or of --cluster)
that carry the opt-in annotation and registers, updates or marks gone the
services found. Prints per cluster what changed, or why it could not be read;
exits 1 when a cluster could not be synced.";

/// The service commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum ServiceCommand {
    /// Register a service and where its traffic goes.
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(RegisterArgs),
    /// List services.
    List(ListArgs),
    /// Show one service.
    Show(NameArgs),
    /// Change a service's upstreams, subdomain, cluster, namespace or description.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Delete a service (its routing goes with it).
    Delete(NameArgs),
    /// Discover services from the annotated Kubernetes Services of registered clusters.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
}

/// `service register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// A unique name (a DNS label), e.g. immich.
    name: String,
    /// Where its traffic goes, HOST:PORT (repeat for more; 1 to 16).
    #[arg(long = "upstream", value_name = "HOST:PORT", required = true)]
    upstreams: Vec<String>,
    /// The hostname's first label (photos → photos.curiios.com) [default: the name].
    #[arg(long)]
    subdomain: Option<String>,
    /// The cluster it runs in (name or id).
    #[arg(long, value_name = "CLUSTER")]
    cluster: Option<String>,
    /// Its Kubernetes namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// What it is.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    common: Common,
}

/// A service state, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum StateArg {
    /// Routed.
    Active,
    /// Gone from its cluster: kept, not routed.
    Gone,
}

/// `service list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only services in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only services of this cluster (name or id).
    #[arg(long, value_name = "CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one service.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The service's name.
    name: String,
    #[command(flatten)]
    common: Common,
}

/// `service update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The service's name.
    name: String,
    /// Replace the upstreams with these (repeat for more).
    #[arg(long = "upstream", value_name = "HOST:PORT")]
    upstreams: Vec<String>,
    /// New subdomain.
    #[arg(long)]
    subdomain: Option<String>,
    /// The cluster it runs in (name or id).
    #[arg(long, value_name = "CLUSTER", conflicts_with = "no_cluster")]
    cluster: Option<String>,
    /// Forget its cluster.
    #[arg(long)]
    no_cluster: bool,
    /// Its Kubernetes namespace.
    #[arg(long, conflicts_with = "no_namespace")]
    namespace: Option<String>,
    /// Forget its namespace.
    #[arg(long)]
    no_namespace: bool,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    common: Common,
}

impl UpdateArgs {
    /// Whether any flag changes something.
    fn changes(&self) -> bool {
        !self.upstreams.is_empty()
            || self.subdomain.is_some()
            || self.cluster.is_some()
            || self.no_cluster
            || self.namespace.is_some()
            || self.no_namespace
            || self.description.is_some()
    }

    /// The PUT body: `current` with the flags applied; `cluster_id` is the
    /// id of --cluster, resolved by the caller.
    fn body(&self, current: &Value, cluster_id: Option<&str>) -> Value {
        let keep = |field: &str| current[field].clone();
        json!({
            "upstreams": if self.upstreams.is_empty() { keep("upstreams") } else { json!(self.upstreams) },
            "subdomain": self.subdomain.as_ref().map_or_else(|| keep("subdomain"), |s| json!(s)),
            "cluster_id": match (cluster_id, self.no_cluster) {
                (Some(id), _) => json!(id),
                (None, true) => Value::Null,
                (None, false) => keep("cluster_id"),
            },
            "namespace": match (&self.namespace, self.no_namespace) {
                (Some(ns), _) => json!(ns),
                (None, true) => Value::Null,
                (None, false) => keep("namespace"),
            },
            "description": self.description.as_ref().map_or_else(|| keep("description"), |d| json!(d)),
        })
    }
}

/// `service sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Only this cluster (name or id) [default: every registered cluster].
    #[arg(long, value_name = "CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    connect: crate::client::ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = crate::edge_common::ViewFormat::Table)]
    format: crate::edge_common::ViewFormat,
}

/// `service list` columns (over [`service_view`]s).
const COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("SUBDOMAIN", "/subdomain"),
    col("UPSTREAMS", "/upstreams"),
    col("STATE", "/state"),
    col("ORIGIN", "/origin"),
    col("CLUSTER", "/cluster"),
    col("NAMESPACE", "/namespace"),
];

/// One service, field per line (over a [`service_view`]).
const DETAIL: &[Column] = &[
    col("Name", "/name"),
    col("Subdomain", "/subdomain"),
    col("Upstreams", "/upstreams"),
    col("State", "/state"),
    col("Origin", "/origin"),
    col("Cluster", "/cluster"),
    col("Namespace", "/namespace"),
    col("Description", "/description"),
    col("Revision", "/revision"),
    col("Registered", "/created_at"),
    col("Updated", "/updated_at"),
    col("ID", "/id"),
];

/// Every field of a service, named as in the API, for CSV.
const CSV: &[Column] = &[
    col("id", "/id"),
    col("name", "/name"),
    col("subdomain", "/subdomain"),
    col("upstreams", "/upstreams_text"),
    col("cluster_id", "/cluster_id"),
    col("namespace", "/namespace"),
    col("description", "/description"),
    col("state", "/state"),
    col("origin", "/origin"),
    col("revision", "/revision"),
    col("created_at", "/created_at"),
    col("updated_at", "/updated_at"),
];

/// A service for people: upstreams joined, its cluster by name when known.
fn service_view(service: &Value, clusters: &BTreeMap<String, String>) -> Value {
    let mut view = service.clone();
    let upstreams: Vec<&str> = service["upstreams"]
        .as_array()
        .map(|u| u.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    view["upstreams"] = json!(upstreams.join(","));
    view["upstreams_text"] = view["upstreams"].clone();
    if let Some(id) = service["cluster_id"].as_str() {
        view["cluster"] = json!(clusters.get(id).map_or(id, String::as_str));
    }
    view
}

/// Cluster id → name for the clusters `services` name (one lookup each; an
/// id that cannot be read stays an id).
async fn cluster_names(client: &Client, services: &[Value]) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for id in services.iter().filter_map(|s| s["cluster_id"].as_str()) {
        if !names.contains_key(id) {
            let path = format!("/api/v1/clusters/{}", path_segment(id));
            let cluster: Option<Value> = client.send(client.request(Method::GET, &path)).await.ok();
            if let Some(name) = cluster.and_then(|c| c["name"].as_str().map(str::to_owned)) {
                names.insert(id.to_owned(), name);
            }
        }
    }
    names
}

fn path(name: &str) -> String {
    format!("/api/v1/services/{}", path_segment(name))
}

async fn print_service(client: &Client, format: Format, service: &Value) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let names = cluster_names(client, std::slice::from_ref(service)).await;
            print_one(format, &service_view(service, &names), DETAIL)
        }
        Format::Csv => {
            let view = service_view(service, &BTreeMap::new());
            print(format, service, std::slice::from_ref(&view), CSV)
        }
        format => print_whole(format, service),
    }
}

/// The id of the cluster the user named (by name or id).
async fn cluster_id(client: &Client, cluster: &str) -> anyhow::Result<String> {
    Ok(id_of(&fetch(client, cluster).await?)?.to_owned())
}

/// The name of the cluster the user named (by name or id).
async fn cluster_name(client: &Client, cluster: &str) -> anyhow::Result<String> {
    let found = fetch(client, cluster).await?;
    Ok(found["name"].as_str().unwrap_or(cluster).to_owned())
}

/// Runs a service command.
pub async fn run(command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Register(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = match &args.cluster {
                Some(cluster) => Some(cluster_id(&client, cluster).await?),
                None => None,
            };
            let body = json!({
                "name": args.name,
                "upstreams": args.upstreams,
                "subdomain": args.subdomain,
                "cluster_id": cluster,
                "namespace": args.namespace,
                "description": args.description,
            });
            let service: Value = client
                .send(client.request(Method::POST, "/api/v1/services").json(&body))
                .await?;
            print_service(&client, args.common.format, &service).await
        }
        ServiceCommand::List(args) => list(args).await,
        ServiceCommand::Show(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let service: Value = client
                .send(client.request(Method::GET, &path(&args.name)))
                .await?;
            print_service(&client, args.common.format, &service).await
        }
        ServiceCommand::Update(args) => {
            if !args.changes() {
                anyhow::bail!(
                    "nothing to update: give at least one flag to change (see `fleetreg service update --help`)"
                );
            }
            let client = Client::from_args(&args.common.connect)?;
            let current: Value = client
                .send(client.request(Method::GET, &path(&args.name)))
                .await?;
            let cluster = match &args.cluster {
                Some(cluster) => Some(cluster_id(&client, cluster).await?),
                None => None,
            };
            let body = args.body(&current, cluster.as_deref());
            let mut request = client.request(Method::PUT, &path(&args.name)).json(&body);
            if let Some(etag) = if_match(&current) {
                request = request.header("If-Match", etag);
            }
            let service: Value = client.send(request).await?;
            print_service(&client, args.common.format, &service).await
        }
        ServiceCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            client
                .send_raw(client.request(Method::DELETE, &path(&args.name)))
                .await?;
            print_deleted(args.common.format, "service", &args.name)
        }
        ServiceCommand::Sync(args) => sync(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let mut query = Vec::new();
    if let Some(state) = args.state {
        let state = match state {
            StateArg::Active => "active",
            StateArg::Gone => "gone",
        };
        query.push(("state", state.to_owned()));
    }
    if let Some(cluster) = &args.cluster {
        query.push(("cluster", cluster_id(&client, cluster).await?));
    }
    let answer: Value = client
        .send(
            client
                .request(Method::GET, "/api/v1/services")
                .query(&query),
        )
        .await?;
    let rows = items(&answer);
    match args.common.format {
        Format::Table if rows.is_empty() => {
            eprintln!("no services (`fleetreg service register --help`, `fleetreg service sync`)");
            Ok(())
        }
        Format::Table => {
            let names = cluster_names(&client, &rows).await;
            let views: Vec<Value> = rows.iter().map(|s| service_view(s, &names)).collect();
            print(Format::Table, &answer, &views, COLUMNS)
        }
        Format::Csv => {
            let views: Vec<Value> = rows
                .iter()
                .map(|s| service_view(s, &BTreeMap::new()))
                .collect();
            print(Format::Csv, &answer, &views, CSV)
        }
        format => print_whole(format, &answer),
    }
}

/// What one cluster's sync did, as the API reports it.
enum ClusterOutcome {
    /// The cluster was read: what changed, and the annotated Services not
    /// taken (`namespace/name`, why).
    Synced(ServiceSyncReport, Vec<(String, String)>),
    /// It could not be: the error's code and message.
    Failed(String, String),
}

/// The clusters of a `POST /api/v1/services/sync` answer, in order.
fn outcomes(answer: &Value) -> anyhow::Result<Vec<(String, ClusterOutcome)>> {
    let clusters = answer["clusters"].as_array().cloned().unwrap_or_default();
    clusters
        .iter()
        .map(|entry| {
            let name = entry["cluster"].as_str().unwrap_or("?").to_owned();
            let outcome = if entry["error"].is_object() {
                ClusterOutcome::Failed(
                    entry["error"]["code"]
                        .as_str()
                        .unwrap_or("ERROR")
                        .to_owned(),
                    entry["error"]["message"].as_str().unwrap_or("").to_owned(),
                )
            } else {
                let problems = entry["problems"]
                    .as_array()
                    .map(|p| {
                        p.iter()
                            .map(|p| {
                                let text = |k: &str| p[k].as_str().unwrap_or("?").to_owned();
                                (text("service"), text("reason"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ClusterOutcome::Synced(typed(&entry["report"], "service sync report")?, problems)
            };
            Ok((name, outcome))
        })
        .collect()
}

/// The sync answer for people: per cluster, what was registered, updated,
/// marked gone, left unchanged and skipped and the Services not taken, or
/// the error.
fn sync_text(outcomes: &[(String, ClusterOutcome)]) -> String {
    let mut out = String::new();
    for (cluster, outcome) in outcomes {
        out.push_str(&format!("{cluster}:\n"));
        match outcome {
            ClusterOutcome::Synced(report, problems) => {
                let lines = [
                    ("registered", joined(&report.registered)),
                    ("updated", joined(&report.updated)),
                    ("gone", joined(&report.gone)),
                    ("unchanged", report.unchanged.to_string()),
                    ("skipped", joined(&report.skipped)),
                ];
                for (label, value) in lines {
                    out.push_str(&format!("  {:<11} {value}\n", format!("{label}:")));
                }
                if !problems.is_empty() {
                    out.push_str("  not taken:\n");
                    for (service, reason) in problems {
                        out.push_str(&format!("    {service}: {reason}\n"));
                    }
                }
            }
            ClusterOutcome::Failed(code, message) => {
                out.push_str(&format!("  error: {code}: {message}\n"));
            }
        }
    }
    out
}

async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let body = match &args.cluster {
        Some(cluster) => json!({"cluster": cluster_name(&client, cluster).await?}),
        None => json!({}),
    };
    let answer: Value = client
        .send(
            client
                .request(Method::POST, "/api/v1/services/sync")
                .json(&body),
        )
        .await?;
    let outcomes = outcomes(&answer)?;
    match args.format.format() {
        Format::Table if outcomes.is_empty() => {
            eprintln!(
                "no clusters registered: nothing to sync (`fleetreg cluster register --help`)"
            );
        }
        Format::Table => write_stdout(&sync_text(&outcomes))?,
        format => print_whole(format, &answer)?,
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, ClusterOutcome::Failed(..)))
        .map(|(name, _)| name.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} cluster(s) could not be synced: {}",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ServiceCommand,
    }

    fn update(args: &[&str]) -> UpdateArgs {
        match Cli::parse_from([&["service", "update", "immich"], args].concat()).command {
            ServiceCommand::Update(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn updates_keep_what_is_not_given() {
        let current = json!({
            "name": "immich", "subdomain": "photos", "upstreams": ["10.0.0.5:2283"],
            "cluster_id": "c1", "namespace": "immich", "description": "Photos", "revision": 4,
        });
        assert!(!update(&[]).changes());
        let body = update(&["--upstream", "10.0.0.7:2283", "--no-namespace"]).body(&current, None);
        assert_eq!(
            body,
            json!({"upstreams": ["10.0.0.7:2283"], "subdomain": "photos", "cluster_id": "c1",
                   "namespace": null, "description": "Photos"})
        );
        let body = update(&["--cluster", "prod"]).body(&current, Some("c2"));
        assert_eq!(body["cluster_id"], "c2");
        assert_eq!(body["upstreams"], json!(["10.0.0.5:2283"]));
        assert_eq!(
            update(&["--no-cluster"]).body(&current, None)["cluster_id"],
            Value::Null
        );
    }

    #[test]
    fn the_sync_report_per_cluster() {
        let answer = json!({"clusters": [
            {"cluster": "prod-east-1", "report": {
                "registered": ["immich", "open-webui"], "updated": [], "gone": ["old"],
                "unchanged": 3, "skipped": []},
             "problems": [{"service": "wiki/broken", "reason": "fleetreg.io/port: no port named http"}]},
            {"cluster": "edge-2", "error": {"code": "DISCOVERY_FAILED", "message": "connection refused"}},
        ]});
        let text = sync_text(&outcomes(&answer).unwrap());
        assert_eq!(
            text,
            "prod-east-1:\n  registered: immich, open-webui\n  updated:    -\n  \
             gone:       old\n  unchanged:  3\n  skipped:    -\n  not taken:\n    \
             wiki/broken: fleetreg.io/port: no port named http\n\
             edge-2:\n  error: DISCOVERY_FAILED: connection refused\n"
        );
    }

    #[test]
    fn service_views_join_upstreams_and_name_clusters() {
        let names = BTreeMap::from([("c1".to_owned(), "prod-east-1".to_owned())]);
        let view = service_view(
            &json!({"upstreams": ["a:1", "b:2"], "cluster_id": "c1"}),
            &names,
        );
        assert_eq!(view["upstreams"], "a:1,b:2");
        assert_eq!(view["cluster"], "prod-east-1");
    }
}
