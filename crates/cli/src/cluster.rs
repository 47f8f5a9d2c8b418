//! `fleetreg cluster …`: a thin client of `/api/v1/clusters`.

use crate::client::{Client, ConnectArgs};
use crate::output::{print, Column, Format};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

const EXAMPLES: &str = "Examples:
  fleetreg cluster register prod-east-1 --api-server-url https://api.prod-east-1.example.com:6443 \\
      --type SPOKE --environment PRODUCTION --region us-east-1 --label team=platform
  fleetreg cluster list --environment PRODUCTION --label team=platform -o table
  fleetreg cluster get prod-east-1 -o yaml
  fleetreg cluster update prod-east-1 --region us-east-2 --label team=platform --label tier=gold
  fleetreg cluster status prod-east-1
  fleetreg cluster delete prod-east-1";

/// The cluster commands.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum ClusterCommand {
    /// Register a new cluster.
    #[command(after_help = EXAMPLES)]
    Register(RegisterArgs),
    /// List clusters, filtered and paged.
    #[command(after_help = EXAMPLES)]
    List(ListArgs),
    /// Show one cluster by id or name.
    Get(TargetArgs),
    /// Change a cluster's metadata (only the flags given change).
    #[command(after_help = EXAMPLES)]
    Update(UpdateArgs),
    /// Delete a cluster.
    Delete(TargetArgs),
    /// Show a cluster's health status.
    Status(TargetArgs),
}

/// Output and connection flags.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

/// Metadata flags shared by register and update.
#[derive(Args, Debug, Default)]
pub struct MetadataArgs {
    /// Human-readable name.
    #[arg(long)]
    display_name: Option<String>,
    /// HUB, SPOKE, EDGE or FAR_EDGE.
    #[arg(long = "type", value_name = "TYPE")]
    cluster_type: Option<String>,
    /// OPENSHIFT, KUBERNETES or MICROSHIFT.
    #[arg(long)]
    platform: Option<String>,
    /// Platform version.
    #[arg(long)]
    platform_version: Option<String>,
    /// Region.
    #[arg(long)]
    region: Option<String>,
    /// PRODUCTION, STAGING, DEVELOPMENT or LAB.
    #[arg(long)]
    environment: Option<String>,
    /// Label KEY=VALUE; repeat for several (on update, replaces all labels).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Prometheus URL.
    #[arg(long)]
    prometheus_url: Option<String>,
    /// Tempo URL.
    #[arg(long)]
    tempo_url: Option<String>,
    /// Loki URL.
    #[arg(long)]
    loki_url: Option<String>,
}

/// `cluster register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Cluster name (DNS label, 3–63 characters).
    name: String,
    /// URL of the Kubernetes API server.
    #[arg(long)]
    api_server_url: String,
    #[command(flatten)]
    metadata: MetadataArgs,
    #[command(flatten)]
    common: Common,
}

/// `cluster list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Names containing this text.
    #[arg(long)]
    name: Option<String>,
    /// HUB, SPOKE, EDGE or FAR_EDGE.
    #[arg(long = "type", value_name = "TYPE")]
    cluster_type: Option<String>,
    /// PRODUCTION, STAGING, DEVELOPMENT or LAB.
    #[arg(long)]
    environment: Option<String>,
    /// Region.
    #[arg(long)]
    region: Option<String>,
    /// UNKNOWN, ONLINE, DEGRADED or OFFLINE.
    #[arg(long)]
    state: Option<String>,
    /// Only clusters with (true) or without (false) GPU nodes.
    #[arg(long)]
    has_gpu: Option<bool>,
    /// Only clusters with (true) or without (false) CNF workloads.
    #[arg(long)]
    has_cnf: Option<bool>,
    /// Label KEY=VALUE; repeat to require several.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Page number (from 1).
    #[arg(long)]
    page: Option<u32>,
    /// Items per page (1–100, default 20).
    #[arg(long)]
    page_size: Option<u32>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one cluster.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Cluster id or name.
    cluster: String,
    #[command(flatten)]
    common: Common,
}

/// `cluster update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Cluster id or name.
    cluster: String,
    /// New API server URL.
    #[arg(long)]
    api_server_url: Option<String>,
    #[command(flatten)]
    metadata: MetadataArgs,
    /// Fail unless the cluster is still at this revision.
    #[arg(long)]
    if_match: Option<i64>,
    #[command(flatten)]
    common: Common,
}

const CLUSTER_COLUMNS: &[Column] = &[
    Column { header: "NAME", pointer: "/name" },
    Column { header: "TYPE", pointer: "/cluster_type" },
    Column { header: "ENVIRONMENT", pointer: "/environment" },
    Column { header: "REGION", pointer: "/region" },
    Column { header: "STATE", pointer: "/status/state" },
    Column { header: "SCORE", pointer: "/status/health_score" },
    Column { header: "LABELS", pointer: "/labels" },
    Column { header: "ID", pointer: "/id" },
];

const STATUS_COLUMNS: &[Column] = &[
    Column { header: "STATE", pointer: "/state" },
    Column { header: "SCORE", pointer: "/health_score" },
    Column { header: "CONNECTIVITY", pointer: "/connectivity" },
    Column { header: "CHECKED", pointer: "/checked_at" },
    Column { header: "REASON", pointer: "/reason" },
];

fn labels(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| anyhow::anyhow!("--label expects KEY=VALUE, got {pair:?}"))?;
            Ok((k.to_owned(), Value::String(v.to_owned())))
        })
        .collect()
}

impl MetadataArgs {
    fn into_body(self, body: &mut Map<String, Value>, replace_labels_when_empty: bool) -> anyhow::Result<()> {
        let fields = [
            ("display_name", self.display_name),
            ("cluster_type", self.cluster_type),
            ("platform", self.platform),
            ("platform_version", self.platform_version),
            ("region", self.region),
            ("environment", self.environment),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                body.insert(key.into(), Value::String(value));
            }
        }
        if !self.labels.is_empty() || replace_labels_when_empty {
            body.insert("labels".into(), Value::Object(labels(&self.labels)?));
        }
        let endpoints: Map<String, Value> = [
            ("prometheus_url", self.prometheus_url),
            ("tempo_url", self.tempo_url),
            ("loki_url", self.loki_url),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Value::String(v))))
        .collect();
        if !endpoints.is_empty() {
            body.insert("endpoints".into(), Value::Object(endpoints));
        }
        Ok(())
    }
}

/// The path of a cluster given by id or name (a name is resolved first).
async fn cluster_path(client: &Client, cluster: &str) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(cluster).is_ok() {
        return Ok(format!("/api/v1/clusters/{cluster}"));
    }
    let found: Value = client.send(client.request(Method::GET, &format!("/api/v1/clusters/by-name/{cluster}"))).await?;
    let id = found["id"].as_str().ok_or_else(|| anyhow::anyhow!("server answered without an id"))?;
    Ok(format!("/api/v1/clusters/{id}"))
}

fn print_cluster(format: Format, cluster: &Value) -> anyhow::Result<()> {
    print(format, cluster, std::slice::from_ref(cluster), CLUSTER_COLUMNS)
}

/// Runs a cluster command.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Register(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            body.insert("api_server_url".into(), json!(args.api_server_url));
            args.metadata.into_body(&mut body, false)?;
            let cluster: Value = client.send(client.request(Method::POST, "/api/v1/clusters").json(&body)).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::List(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let mut query: Vec<(&str, String)> = Vec::new();
            let optional = [
                ("name", args.name),
                ("cluster_type", args.cluster_type),
                ("environment", args.environment),
                ("region", args.region),
                ("state", args.state),
                ("has_gpu", args.has_gpu.map(|b| b.to_string())),
                ("has_cnf", args.has_cnf.map(|b| b.to_string())),
                ("page", args.page.map(|n| n.to_string())),
                ("page_size", args.page_size.map(|n| n.to_string())),
            ];
            query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            query.extend(args.labels.into_iter().map(|l| ("label", l)));
            let page: Value = client.send(client.request(Method::GET, "/api/v1/clusters").query(&query)).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            print(args.common.format, &page, &items, CLUSTER_COLUMNS)?;
            if args.common.format == Format::Table {
                eprintln!(
                    "page {} of {} ({} clusters)",
                    page["page"], page["total_pages"], page["total"]
                );
            }
            Ok(())
        }
        ClusterCommand::Get(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = if uuid::Uuid::parse_str(&args.cluster).is_ok() {
                format!("/api/v1/clusters/{}", args.cluster)
            } else {
                format!("/api/v1/clusters/by-name/{}", args.cluster)
            };
            let cluster: Value = client.send(client.request(Method::GET, &path)).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::Update(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = cluster_path(&client, &args.cluster).await?;
            let mut body = Map::new();
            if let Some(url) = args.api_server_url {
                body.insert("api_server_url".into(), json!(url));
            }
            args.metadata.into_body(&mut body, false)?;
            let mut request = client.request(Method::PUT, &path).json(&body);
            if let Some(revision) = args.if_match {
                request = request.header("If-Match", format!("\"{revision}\""));
            }
            let cluster: Value = client.send(request).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = cluster_path(&client, &args.cluster).await?;
            client.send_raw(client.request(Method::DELETE, &path)).await?;
            eprintln!("deleted {}", args.cluster);
            Ok(())
        }
        ClusterCommand::Status(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = cluster_path(&client, &args.cluster).await?;
            let status: Value = client.send(client.request(Method::GET, &format!("{path}/status"))).await?;
            print(args.common.format, &status, std::slice::from_ref(&status), STATUS_COLUMNS)
        }
    }
}
