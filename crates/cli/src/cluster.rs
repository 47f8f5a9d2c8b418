//! `fleetreg cluster …`: a thin client of `/api/v1/clusters`.

use crate::client::{path_segment, Client, ConnectArgs, ServerError};
use crate::output::{print, print_one, write_stdout, Column, Format};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

const REGISTER_EXAMPLES: &str = "Examples:
  fleetreg cluster register prod-east-1 --api-server-url https://api.prod-east-1.example.com:6443 \\
      --type SPOKE --environment PRODUCTION --region us-east-1 --label team=platform
  fleetreg cluster register edge-7 --api-server-url https://10.0.0.7:6443 --type EDGE \\
      --platform MICROSHIFT --prometheus-url https://prom.edge-7.example.com -o json";

const LIST_EXAMPLES: &str = "Examples:
  fleetreg cluster list
  fleetreg cluster list --environment PRODUCTION --label team=platform --label tier=gold
  fleetreg cluster list --state ONLINE --has-gpu true -o json
  fleetreg cluster list --name east --page 2 --page-size 50 -o csv > clusters.csv";

const GET_EXAMPLES: &str = "Examples:
  fleetreg cluster get prod-east-1
  fleetreg cluster get 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e -o yaml";

const UPDATE_EXAMPLES: &str = "Examples:
  fleetreg cluster update prod-east-1 --region us-east-2 --environment STAGING
  fleetreg cluster update prod-east-1 --label team=platform --label tier=gold   # replaces all labels
  fleetreg cluster update prod-east-1 --add-label owner=sre --remove-label tier
  fleetreg cluster update prod-east-1 --clear-region --clear-display-name --clear-labels
  fleetreg cluster update prod-east-1 --loki-url https://loki.example.com --clear-tempo-url
  fleetreg cluster update prod-east-1 --platform-version 4.15 --if-match 7";

const DELETE_EXAMPLES: &str = "Examples:
  fleetreg cluster delete prod-east-1
  fleetreg cluster delete prod-east-1 --if-match 7

A cluster with hosts is refused: CLUSTER_HAS_SYNC_CLIENTS (with the report of
`fleetreg cluster deregister`) while deployments on them sync, else
CONFIRMATION_REQUIRED with what would go; `fleetreg cluster deregister` asks and
removes it with its hosts.";

const STATUS_EXAMPLES: &str = "Examples:
  fleetreg cluster status prod-east-1
  fleetreg cluster status prod-east-1 -o json";

const HISTORY_EXAMPLES: &str = "Examples:
  fleetreg cluster history prod-east-1
  fleetreg cluster history prod-east-1 --since 2026-01-01T00:00:00Z --limit 20
  fleetreg cluster history prod-east-1 -o json

Samples are newest first: every state change plus one sample per 5 minutes
(history.sample_minutes).";

const HEALTH_EXAMPLES: &str = "Examples:
  fleetreg cluster health prod-east-1
  fleetreg cluster health prod-east-1 -o json

Shows the last check's state, score and per-component results, when the API
server last answered, and the last few history samples.";

const REFRESH_EXAMPLES: &str = "Examples:
  fleetreg cluster refresh prod-east-1
  fleetreg cluster refresh prod-east-1 -o json

An unreachable API server is `error: CLUSTER_UNREACHABLE: …` (the OFFLINE status
is recorded); a failed discovery is `error: DISCOVERY_FAILED: …`.";

const ALL_EXAMPLES: &str = "Examples:
  fleetreg cluster register prod-east-1 --api-server-url https://api.prod-east-1.example.com:6443 \\
      --type SPOKE --environment PRODUCTION --region us-east-1 --label team=platform
  fleetreg cluster list --environment PRODUCTION --label team=platform
  fleetreg cluster get prod-east-1 -o yaml
  fleetreg cluster update prod-east-1 --region us-east-2 --add-label tier=gold
  fleetreg cluster status prod-east-1
  fleetreg cluster history prod-east-1 --limit 20
  fleetreg cluster refresh prod-east-1
  fleetreg cluster delete prod-east-1
  fleetreg cluster sync-status prod-host-1
  fleetreg cluster deregister prod-host-1 --dry-run

The server is --server, else $FLEETREG_URL, else http://127.0.0.1:8080.
Errors from the server print as `error: CODE: message` and exit with status 1.";

/// The cluster commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum ClusterCommand {
    /// Register a new cluster.
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(Box<RegisterArgs>),
    /// List clusters, filtered and paged (sorted by name).
    #[command(after_help = LIST_EXAMPLES)]
    List(Box<ListArgs>),
    /// Show one cluster by id or name.
    #[command(after_help = GET_EXAMPLES)]
    Get(TargetArgs),
    /// Change a cluster's metadata (only the flags given change; the name cannot).
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(Box<UpdateArgs>),
    /// Delete a cluster by id or name.
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),
    /// Show a cluster's health status as of its last check.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(TargetArgs),
    /// Show a cluster's health at a glance: state, components, recent history.
    #[command(after_help = HEALTH_EXAMPLES)]
    Health(TargetArgs),
    /// Show a cluster's health history (newest first).
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Check a cluster and discover its capabilities now; shows the updated cluster.
    #[command(after_help = REFRESH_EXAMPLES)]
    Refresh(TargetArgs),
    /// Show a cluster's hosts, leader lease, client deployments and recent sync jobs.
    #[command(after_help = crate::cluster_sync::SYNC_STATUS_EXAMPLES)]
    SyncStatus(crate::cluster_sync::SyncStatusArgs),
    /// Deregister a cluster safely: show what goes with it, ask, then delete.
    #[command(after_help = crate::cluster_sync::DEREGISTER_EXAMPLES)]
    Deregister(crate::cluster_sync::DeregisterArgs),
    /// Take or renew the cluster's leader lease for one of its hosts.
    #[command(after_help = crate::cluster_sync::LEADER_EXAMPLES)]
    Leader(crate::cluster_sync::LeaderArgs),
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

/// A `KEY=VALUE` label from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelArg {
    key: String,
    value: String,
}

/// A wire enum's values, in the API's case (`EDGE`, `FAR_EDGE`).
const CLUSTER_TYPES: &[&str] = &["HUB", "SPOKE", "EDGE", "FAR_EDGE"];
const PLATFORMS: &[&str] = &["OPENSHIFT", "KUBERNETES", "MICROSHIFT"];
const ENVIRONMENTS: &[&str] = &["PRODUCTION", "STAGING", "DEVELOPMENT", "LAB"];
const STATES: &[&str] = &["UNKNOWN", "ONLINE", "DEGRADED", "OFFLINE"];

/// One case rule for every enum flag: any case is accepted (with the arg's
/// `ignore_case`) and the API's upper-case form is sent; anything else is
/// refused before a request, listing the values.
fn wire_enum(
    values: &'static [&'static str],
) -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(values.iter().copied())
        .map(|value| value.to_ascii_uppercase())
}

fn parse_label(text: &str) -> Result<LabelArg, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(LabelArg {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        _ => Err(format!(
            "expected KEY=VALUE, e.g. team=platform; got {text:?}"
        )),
    }
}

fn parse_label_key(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('=') {
        Err(format!(
            "expected a label KEY without a value; got {text:?}"
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// Metadata flags shared by register and update.
#[derive(Args, Debug, Default)]
pub struct MetadataArgs {
    /// Human-readable name.
    #[arg(long, value_name = "TEXT")]
    display_name: Option<String>,
    /// HUB, SPOKE, EDGE or FAR_EDGE, any case [register default: SPOKE].
    #[arg(long = "type", value_name = "TYPE", ignore_case = true, value_parser = wire_enum(CLUSTER_TYPES))]
    cluster_type: Option<String>,
    /// OPENSHIFT, KUBERNETES or MICROSHIFT, any case [register default: OPENSHIFT].
    #[arg(long, ignore_case = true, value_parser = wire_enum(PLATFORMS))]
    platform: Option<String>,
    /// Platform version, e.g. 4.14.
    #[arg(long, value_name = "VERSION")]
    platform_version: Option<String>,
    /// Region, e.g. us-east-1.
    #[arg(long)]
    region: Option<String>,
    /// PRODUCTION, STAGING, DEVELOPMENT or LAB, any case [register default: DEVELOPMENT].
    #[arg(long, ignore_case = true, value_parser = wire_enum(ENVIRONMENTS))]
    environment: Option<String>,
    /// Label KEY=VALUE; repeat for several (on update: replaces all labels).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<LabelArg>,
    /// Prometheus (or Thanos querier) URL.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    /// Tempo URL.
    #[arg(long, value_name = "URL")]
    tempo_url: Option<String>,
    /// Loki URL.
    #[arg(long, value_name = "URL")]
    loki_url: Option<String>,
}

/// `cluster register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Cluster name: 3–63 lowercase letters, digits and '-', starting and ending alphanumeric.
    name: String,
    /// URL of the Kubernetes API server, e.g. https://api.example.com:6443.
    #[arg(long, value_name = "URL")]
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
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// HUB, SPOKE, EDGE or FAR_EDGE, any case.
    #[arg(long = "type", value_name = "TYPE", ignore_case = true, value_parser = wire_enum(CLUSTER_TYPES))]
    cluster_type: Option<String>,
    /// PRODUCTION, STAGING, DEVELOPMENT or LAB, any case.
    #[arg(long, ignore_case = true, value_parser = wire_enum(ENVIRONMENTS))]
    environment: Option<String>,
    /// Region (exact).
    #[arg(long)]
    region: Option<String>,
    /// UNKNOWN, ONLINE, DEGRADED or OFFLINE, any case.
    #[arg(long, ignore_case = true, value_parser = wire_enum(STATES))]
    state: Option<String>,
    /// Only clusters with (true) or without (false) GPU nodes.
    #[arg(long, value_name = "BOOL")]
    has_gpu: Option<bool>,
    /// Only clusters with (true) or without (false) CNF workloads.
    #[arg(long, value_name = "BOOL")]
    has_cnf: Option<bool>,
    /// Label KEY=VALUE; repeat to require several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<LabelArg>,
    /// Page number, from 1 [default: 1].
    #[arg(long, value_name = "N")]
    page: Option<u32>,
    /// Clusters per page, 1–100 [default: 20].
    #[arg(long, value_name = "N")]
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

/// `cluster history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Cluster id or name.
    cluster: String,
    /// Only samples checked at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Most samples to show (server default 100, max 1000).
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    common: Common,
}

/// `cluster delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Cluster id or name.
    cluster: String,
    /// Fail with PRECONDITION_FAILED unless the cluster is still at this revision.
    #[arg(long, value_name = "REVISION")]
    if_match: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `cluster update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Cluster id or name.
    cluster: String,
    /// New API server URL.
    #[arg(long, value_name = "URL")]
    api_server_url: Option<String>,
    #[command(flatten)]
    metadata: MetadataArgs,
    /// Remove the display name.
    #[arg(long, conflicts_with = "display_name")]
    clear_display_name: bool,
    /// Remove the platform version.
    #[arg(long, conflicts_with = "platform_version")]
    clear_platform_version: bool,
    /// Remove the region.
    #[arg(long, conflicts_with = "region")]
    clear_region: bool,
    /// Add or change one label, keeping the others; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label, conflicts_with = "labels")]
    add_label: Vec<LabelArg>,
    /// Remove one label by key, keeping the others; repeatable.
    #[arg(long, value_name = "KEY", value_parser = parse_label_key, conflicts_with = "labels")]
    remove_label: Vec<String>,
    /// Remove every label.
    #[arg(long, conflicts_with_all = ["labels", "add_label", "remove_label"])]
    clear_labels: bool,
    /// Remove the Prometheus URL (other endpoints are kept).
    #[arg(long, conflicts_with = "prometheus_url")]
    clear_prometheus_url: bool,
    /// Remove the Tempo URL (other endpoints are kept).
    #[arg(long, conflicts_with = "tempo_url")]
    clear_tempo_url: bool,
    /// Remove the Loki URL (other endpoints are kept).
    #[arg(long, conflicts_with = "loki_url")]
    clear_loki_url: bool,
    /// Remove every endpoint.
    #[arg(long, conflicts_with_all = ["prometheus_url", "tempo_url", "loki_url"])]
    clear_endpoints: bool,
    /// Fail with PRECONDITION_FAILED unless the cluster is still at this revision
    /// (the `revision` field, or the ETag of a GET).
    #[arg(long, value_name = "REVISION")]
    if_match: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Compact columns for `list` tables.
const LIST_COLUMNS: &[Column] = &[
    Column {
        header: "NAME",
        pointer: "/name",
    },
    Column {
        header: "TYPE",
        pointer: "/cluster_type",
    },
    Column {
        header: "ENVIRONMENT",
        pointer: "/environment",
    },
    Column {
        header: "REGION",
        pointer: "/region",
    },
    Column {
        header: "STATE",
        pointer: "/status/state",
    },
    Column {
        header: "SCORE",
        pointer: "/status/health_score",
    },
    Column {
        header: "LABELS",
        pointer: "/labels",
    },
    Column {
        header: "ID",
        pointer: "/id",
    },
];

/// Every scalar field, named as in the API, for CSV.
const CSV_COLUMNS: &[Column] = &[
    Column {
        header: "id",
        pointer: "/id",
    },
    Column {
        header: "name",
        pointer: "/name",
    },
    Column {
        header: "display_name",
        pointer: "/display_name",
    },
    Column {
        header: "cluster_type",
        pointer: "/cluster_type",
    },
    Column {
        header: "platform",
        pointer: "/platform",
    },
    Column {
        header: "platform_version",
        pointer: "/platform_version",
    },
    Column {
        header: "environment",
        pointer: "/environment",
    },
    Column {
        header: "region",
        pointer: "/region",
    },
    Column {
        header: "api_server_url",
        pointer: "/api_server_url",
    },
    Column {
        header: "prometheus_url",
        pointer: "/endpoints/prometheus_url",
    },
    Column {
        header: "tempo_url",
        pointer: "/endpoints/tempo_url",
    },
    Column {
        header: "loki_url",
        pointer: "/endpoints/loki_url",
    },
    Column {
        header: "labels",
        pointer: "/labels",
    },
    Column {
        header: "state",
        pointer: "/status/state",
    },
    Column {
        header: "health_score",
        pointer: "/status/health_score",
    },
    Column {
        header: "connectivity",
        pointer: "/status/connectivity",
    },
    Column {
        header: "has_gpu",
        pointer: "/capabilities/has_gpu_nodes",
    },
    Column {
        header: "gpu_count",
        pointer: "/capabilities/gpu_count",
    },
    Column {
        header: "has_cnf",
        pointer: "/capabilities/has_cnf",
    },
    Column {
        header: "last_seen_at",
        pointer: "/last_seen_at",
    },
    Column {
        header: "revision",
        pointer: "/revision",
    },
    Column {
        header: "created_at",
        pointer: "/created_at",
    },
    Column {
        header: "updated_at",
        pointer: "/updated_at",
    },
];

/// One field per line for a single cluster in table form.
const DETAIL_FIELDS: &[Column] = &[
    Column {
        header: "Name",
        pointer: "/name",
    },
    Column {
        header: "ID",
        pointer: "/id",
    },
    Column {
        header: "Display name",
        pointer: "/display_name",
    },
    Column {
        header: "Type",
        pointer: "/cluster_type",
    },
    Column {
        header: "Platform",
        pointer: "/platform",
    },
    Column {
        header: "Platform version",
        pointer: "/platform_version",
    },
    Column {
        header: "Environment",
        pointer: "/environment",
    },
    Column {
        header: "Region",
        pointer: "/region",
    },
    Column {
        header: "API server",
        pointer: "/api_server_url",
    },
    Column {
        header: "Endpoints",
        pointer: "/endpoints",
    },
    Column {
        header: "Labels",
        pointer: "/labels",
    },
    Column {
        header: "State",
        pointer: "/status/state",
    },
    Column {
        header: "Health score",
        pointer: "/status/health_score",
    },
    Column {
        header: "Connectivity",
        pointer: "/status/connectivity",
    },
    Column {
        header: "Checked at",
        pointer: "/status/checked_at",
    },
    Column {
        header: "Reason",
        pointer: "/status/reason",
    },
    Column {
        header: "Last seen",
        pointer: "/last_seen_at",
    },
    Column {
        header: "GPU nodes",
        pointer: "/capabilities/has_gpu_nodes",
    },
    Column {
        header: "GPUs",
        pointer: "/capabilities/gpu_count",
    },
    Column {
        header: "CNF",
        pointer: "/capabilities/has_cnf",
    },
    Column {
        header: "Discovered at",
        pointer: "/capabilities/discovered_at",
    },
    Column {
        header: "Revision",
        pointer: "/revision",
    },
    Column {
        header: "Created",
        pointer: "/created_at",
    },
    Column {
        header: "Updated",
        pointer: "/updated_at",
    },
];

const HISTORY_COLUMNS: &[Column] = &[
    Column {
        header: "Checked at",
        pointer: "/checked_at",
    },
    Column {
        header: "State",
        pointer: "/state",
    },
    Column {
        header: "Health score",
        pointer: "/health_score",
    },
    Column {
        header: "Connectivity",
        pointer: "/status/connectivity",
    },
    Column {
        header: "Reason",
        pointer: "/status/reason",
    },
];

const STATUS_DETAIL: &[Column] = &[
    Column {
        header: "State",
        pointer: "/state",
    },
    Column {
        header: "Health score",
        pointer: "/health_score",
    },
    Column {
        header: "Connectivity",
        pointer: "/connectivity",
    },
    Column {
        header: "API server healthy",
        pointer: "/api_server_healthy",
    },
    Column {
        header: "Prometheus healthy",
        pointer: "/prometheus_healthy",
    },
    Column {
        header: "Tempo healthy",
        pointer: "/tempo_healthy",
    },
    Column {
        header: "Loki healthy",
        pointer: "/loki_healthy",
    },
    Column {
        header: "Checked at",
        pointer: "/checked_at",
    },
    Column {
        header: "Reason",
        pointer: "/reason",
    },
    Column {
        header: "Credentials stored",
        pointer: "/credentials/stored",
    },
    Column {
        header: "Credentials expiry",
        pointer: "/credentials/expiry",
    },
    Column {
        header: "Credentials expire at",
        pointer: "/credentials/expires_at",
    },
    Column {
        header: "Credentials rotation",
        pointer: "/credentials/rotation/mode",
    },
    Column {
        header: "Rotation failures",
        pointer: "/credentials/rotation/consecutive_failures",
    },
    Column {
        header: "Rotation last error",
        pointer: "/credentials/rotation/last_error",
    },
    Column {
        header: "Rotation next attempt",
        pointer: "/credentials/rotation/next_attempt_at",
    },
];

const STATUS_CSV: &[Column] = &[
    Column {
        header: "state",
        pointer: "/state",
    },
    Column {
        header: "health_score",
        pointer: "/health_score",
    },
    Column {
        header: "connectivity",
        pointer: "/connectivity",
    },
    Column {
        header: "api_server_healthy",
        pointer: "/api_server_healthy",
    },
    Column {
        header: "prometheus_healthy",
        pointer: "/prometheus_healthy",
    },
    Column {
        header: "tempo_healthy",
        pointer: "/tempo_healthy",
    },
    Column {
        header: "loki_healthy",
        pointer: "/loki_healthy",
    },
    Column {
        header: "checked_at",
        pointer: "/checked_at",
    },
    Column {
        header: "reason",
        pointer: "/reason",
    },
    Column {
        header: "credentials_stored",
        pointer: "/credentials/stored",
    },
    Column {
        header: "credentials_expiry",
        pointer: "/credentials/expiry",
    },
    Column {
        header: "credentials_expires_at",
        pointer: "/credentials/expires_at",
    },
    Column {
        header: "credentials_rotation",
        pointer: "/credentials/rotation/mode",
    },
    Column {
        header: "rotation_failures",
        pointer: "/credentials/rotation/consecutive_failures",
    },
    Column {
        header: "rotation_last_error",
        pointer: "/credentials/rotation/last_error",
    },
    Column {
        header: "rotation_next_attempt_at",
        pointer: "/credentials/rotation/next_attempt_at",
    },
];

fn labels_object(labels: Vec<LabelArg>) -> Map<String, Value> {
    labels
        .into_iter()
        .map(|l| (l.key, Value::String(l.value)))
        .collect()
}

impl MetadataArgs {
    /// Puts the scalar fields and labels that were given into `body`.
    fn scalars_into(&mut self, body: &mut Map<String, Value>) {
        let fields = [
            ("display_name", self.display_name.take()),
            ("cluster_type", self.cluster_type.take()),
            ("platform", self.platform.take()),
            ("platform_version", self.platform_version.take()),
            ("region", self.region.take()),
            ("environment", self.environment.take()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                body.insert(key.into(), Value::String(value));
            }
        }
        if !self.labels.is_empty() {
            body.insert(
                "labels".into(),
                Value::Object(labels_object(std::mem::take(&mut self.labels))),
            );
        }
    }

    /// The endpoint URLs that were given, by API field name.
    fn endpoint_changes(&mut self) -> [(&'static str, Option<String>); 3] {
        [
            ("prometheus_url", self.prometheus_url.take()),
            ("tempo_url", self.tempo_url.take()),
            ("loki_url", self.loki_url.take()),
        ]
    }
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ServerError>()
        .is_some_and(|e| e.status == StatusCode::NOT_FOUND)
}

/// Fetches a cluster named by id or by name.
///
/// A UUID is tried as an id first and then as a name, since a valid name can
/// look like a UUID.
pub(crate) async fn fetch(client: &Client, cluster: &str) -> anyhow::Result<Value> {
    if uuid::Uuid::parse_str(cluster).is_ok() {
        match client
            .send(client.request(Method::GET, &format!("/api/v1/clusters/{cluster}")))
            .await
        {
            Err(error) if is_not_found(&error) => {}
            other => return other,
        }
    }
    let path = format!("/api/v1/clusters/by-name/{}", path_segment(cluster));
    client.send(client.request(Method::GET, &path)).await
}

pub(crate) fn id_of(cluster: &Value) -> anyhow::Result<&str> {
    cluster["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the server answered a cluster without an id"))
}

/// An `If-Match` header value: a bare revision is quoted as an ETag.
fn if_match_header(revision: &str) -> String {
    let revision = revision.trim();
    if !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit()) {
        format!("\"{revision}\"")
    } else {
        revision.to_owned()
    }
}

fn print_cluster(format: Format, cluster: &Value) -> anyhow::Result<()> {
    match format {
        Format::Csv => print(format, cluster, std::slice::from_ref(cluster), CSV_COLUMNS),
        _ => print_one(format, cluster, DETAIL_FIELDS),
    }
}

impl UpdateArgs {
    /// Whether the change must be merged into the current labels or endpoints.
    fn merges(&self) -> bool {
        let metadata = &self.metadata;
        !self.add_label.is_empty()
            || !self.remove_label.is_empty()
            || self.clear_prometheus_url
            || self.clear_tempo_url
            || self.clear_loki_url
            || metadata.prometheus_url.is_some()
            || metadata.tempo_url.is_some()
            || metadata.loki_url.is_some()
    }

    /// The `PUT` body: only what the flags change, merged into `current` where needed.
    fn into_body(mut self, current: &Value) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(url) = self.api_server_url.take() {
            body.insert("api_server_url".into(), Value::String(url));
        }
        self.metadata.scalars_into(&mut body);
        for (key, clear) in [
            ("display_name", self.clear_display_name),
            ("platform_version", self.clear_platform_version),
            ("region", self.clear_region),
            ("labels", self.clear_labels),
            ("endpoints", self.clear_endpoints),
        ] {
            if clear {
                body.insert(key.into(), Value::Null);
            }
        }
        if !self.add_label.is_empty() || !self.remove_label.is_empty() {
            let mut labels = current["labels"].as_object().cloned().unwrap_or_default();
            for key in &self.remove_label {
                labels.remove(key);
            }
            labels.extend(labels_object(std::mem::take(&mut self.add_label)));
            body.insert("labels".into(), Value::Object(labels));
        }
        let clears = [
            self.clear_prometheus_url,
            self.clear_tempo_url,
            self.clear_loki_url,
        ];
        let changes = self.metadata.endpoint_changes();
        if changes.iter().any(|(_, v)| v.is_some()) || clears.contains(&true) {
            let mut endpoints = current["endpoints"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for ((key, value), clear) in changes.into_iter().zip(clears) {
                if clear {
                    endpoints.remove(key);
                }
                if let Some(value) = value {
                    endpoints.insert(key.into(), Value::String(value));
                }
            }
            body.insert("endpoints".into(), Value::Object(endpoints));
        }
        body
    }
}

/// Runs a cluster command.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Register(mut args) => {
            let client = Client::from_args(&args.common.connect)?;
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            body.insert("api_server_url".into(), json!(args.api_server_url));
            args.metadata.scalars_into(&mut body);
            let endpoints: Map<String, Value> = args
                .metadata
                .endpoint_changes()
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Value::String(v))))
                .collect();
            if !endpoints.is_empty() {
                body.insert("endpoints".into(), Value::Object(endpoints));
            }
            let request = client.request(Method::POST, "/api/v1/clusters").json(&body);
            let cluster: Value = client.send(request).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::List(args) => list(*args).await,
        ClusterCommand::Get(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::Update(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}", id_of(&current)?);
            // A merge is a read-modify-write: guard it with the revision read,
            // unless the user asked for a revision of their own.
            let if_match = match (&args.if_match, args.merges()) {
                (Some(revision), _) => Some(if_match_header(revision)),
                (None, true) => current["revision"].as_i64().map(|r| format!("\"{r}\"")),
                (None, false) => None,
            };
            let format = args.common.format;
            let body = (*args).into_body(&current);
            if body.is_empty() {
                anyhow::bail!("nothing to update: give at least one flag to change (see `fleetreg cluster update --help`)");
            }
            let mut request = client.request(Method::PUT, &path).json(&body);
            if let Some(value) = if_match {
                request = request.header("If-Match", value);
            }
            let cluster: Value = client.send(request).await?;
            print_cluster(format, &cluster)
        }
        ClusterCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current = fetch(&client, &args.cluster).await?;
            let id = id_of(&current)?;
            let mut request = client.request(Method::DELETE, &format!("/api/v1/clusters/{id}"));
            if let Some(revision) = &args.if_match {
                request = request.header("If-Match", if_match_header(revision));
            }
            let name = current["name"].as_str().unwrap_or(&args.cluster);
            client
                .send_raw(request)
                .await
                .map_err(|e| crate::cluster_sync::explain_refusal(e, name, args.common.format))?;
            match args.common.format {
                Format::Table => write_stdout(&format!("cluster {name} deleted ({id})\n")),
                format => {
                    let result = json!({"id": id, "name": name, "deleted": true});
                    let columns = [
                        Column {
                            header: "id",
                            pointer: "/id",
                        },
                        Column {
                            header: "name",
                            pointer: "/name",
                        },
                        Column {
                            header: "deleted",
                            pointer: "/deleted",
                        },
                    ];
                    print(format, &result, std::slice::from_ref(&result), &columns)
                }
            }
        }
        ClusterCommand::Status(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/status", id_of(&current)?);
            let status: Value = client.send(client.request(Method::GET, &path)).await?;
            match args.common.format {
                Format::Csv => print(
                    Format::Csv,
                    &status,
                    std::slice::from_ref(&status),
                    STATUS_CSV,
                ),
                format => print_one(format, &status, STATUS_DETAIL),
            }
        }
        ClusterCommand::Health(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/health/history", id_of(&cluster)?);
            let limit = [("limit", crate::cluster_health::RECENT_SAMPLES.to_string())];
            let recent: Value = client
                .send(client.request(Method::GET, &path).query(&limit))
                .await?;
            let report = crate::cluster_health::report(&cluster, &recent);
            crate::cluster_health::print_report(args.common.format, &report)
        }
        ClusterCommand::History(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/health/history", id_of(&current)?);
            let query: Vec<(&str, String)> = [
                ("since", args.since),
                ("limit", args.limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let samples: Value = client
                .send(client.request(Method::GET, &path).query(&query))
                .await?;
            let items = samples.as_array().cloned().unwrap_or_default();
            match args.common.format {
                Format::Table if items.is_empty() => {
                    eprintln!("no health history");
                    Ok(())
                }
                format => print(format, &samples, &items, HISTORY_COLUMNS),
            }
        }
        ClusterCommand::Refresh(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/refresh", id_of(&current)?);
            let cluster: Value = client.send(client.request(Method::POST, &path)).await?;
            print_cluster(args.common.format, &cluster)
        }
        ClusterCommand::SyncStatus(args) => crate::cluster_sync::sync_status(args).await,
        ClusterCommand::Deregister(args) => crate::cluster_sync::deregister(args).await,
        ClusterCommand::Leader(args) => crate::cluster_sync::leader(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let mut query: Vec<(&str, String)> = [
        ("name", args.name),
        ("cluster_type", args.cluster_type),
        ("environment", args.environment),
        ("region", args.region),
        ("state", args.state),
        ("has_gpu", args.has_gpu.map(|b| b.to_string())),
        ("has_cnf", args.has_cnf.map(|b| b.to_string())),
        ("page", args.page.map(|n| n.to_string())),
        ("page_size", args.page_size.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    query.extend(
        args.labels
            .into_iter()
            .map(|l| ("label", format!("{}={}", l.key, l.value))),
    );
    let page: Value = client
        .send(
            client
                .request(Method::GET, "/api/v1/clusters")
                .query(&query),
        )
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    match args.common.format {
        Format::Table if items.is_empty() => {
            if page["total"].as_u64().unwrap_or(0) == 0 {
                eprintln!("no clusters found");
            } else {
                eprintln!(
                    "no clusters on page {} of {} ({} clusters)",
                    page["page"], page["total_pages"], page["total"]
                );
            }
            Ok(())
        }
        Format::Table => {
            print(Format::Table, &page, &items, LIST_COLUMNS)?;
            eprintln!(
                "page {} of {} ({} clusters)",
                page["page"], page["total_pages"], page["total"]
            );
            Ok(())
        }
        Format::Csv => print(Format::Csv, &page, &items, CSV_COLUMNS),
        format => print(format, &page, &items, LIST_COLUMNS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Test {
        #[command(subcommand)]
        command: ClusterCommand,
    }

    fn update(args: &[&str]) -> UpdateArgs {
        let argv = ["test", "update", "c1"].iter().chain(args);
        match Test::try_parse_from(argv).map(|t| t.command) {
            Ok(ClusterCommand::Update(args)) => *args,
            other => panic!("not an update: {:?}", other.err()),
        }
    }

    #[test]
    fn update_bodies_carry_only_what_changes() {
        let current = json!({"labels": {"a": "1", "b": "2"}, "endpoints": {"tempo_url": "http://t", "loki_url": "http://l"}});
        let body = update(&["--region", "r1", "--clear-display-name"]).into_body(&current);
        assert_eq!(
            Value::Object(body),
            json!({"region": "r1", "display_name": null})
        );
        let body = update(&["--add-label", "c=3", "--remove-label", "a"]).into_body(&current);
        assert_eq!(Value::Object(body), json!({"labels": {"b": "2", "c": "3"}}));
        let body = update(&["--label", "x=y"]).into_body(&current);
        assert_eq!(Value::Object(body), json!({"labels": {"x": "y"}}));
        let body = update(&["--clear-labels", "--clear-endpoints"]).into_body(&current);
        assert_eq!(
            Value::Object(body),
            json!({"labels": null, "endpoints": null})
        );
        let args = update(&["--prometheus-url", "http://p", "--clear-tempo-url"]);
        assert!(args.merges());
        let body = args.into_body(&current);
        assert_eq!(
            Value::Object(body),
            json!({"endpoints": {"prometheus_url": "http://p", "loki_url": "http://l"}})
        );
    }

    #[test]
    fn conflicting_update_flags_are_refused() {
        let argv = ["test", "update", "c1", "--region", "r", "--clear-region"];
        assert!(Test::try_parse_from(argv).is_err());
        let argv = [
            "test",
            "update",
            "c1",
            "--label",
            "a=b",
            "--add-label",
            "c=d",
        ];
        assert!(Test::try_parse_from(argv).is_err());
        let argv = ["test", "update", "c1", "--label", "nolabel"];
        assert!(Test::try_parse_from(argv).is_err());
    }

    #[test]
    fn enum_flags_take_any_case_and_send_the_api_form_everywhere() {
        let parse = |args: &[&str]| Test::try_parse_from(["test"].iter().chain(args));
        let url = "https://a.example.com:6443";
        let register = |value: &str| match parse(&[
            "register",
            "c1",
            "--api-server-url",
            url,
            "--type",
            value,
        ]) {
            Ok(Test {
                command: ClusterCommand::Register(args),
            }) => args.metadata.cluster_type,
            other => panic!("register --type {value}: {:?}", other.err()),
        };
        let list = |value: &str| match parse(&["list", "--type", value]) {
            Ok(Test {
                command: ClusterCommand::List(args),
            }) => args.cluster_type,
            other => panic!("list --type {value}: {:?}", other.err()),
        };
        for value in ["edge", "Edge", "EDGE"] {
            assert_eq!(register(value).as_deref(), Some("EDGE"));
            assert_eq!(list(value).as_deref(), Some("EDGE"));
        }
        assert_eq!(list("far_edge").as_deref(), Some("FAR_EDGE"));
        let update = update(&["--environment", "staging", "--platform", "microshift"]);
        assert_eq!(update.metadata.environment.as_deref(), Some("STAGING"));
        assert_eq!(update.metadata.platform.as_deref(), Some("MICROSHIFT"));
        match parse(&["list", "--state", "online"]) {
            Ok(Test {
                command: ClusterCommand::List(args),
            }) => assert_eq!(args.state.as_deref(), Some("ONLINE")),
            other => panic!("list --state online: {:?}", other.err()),
        }
        // Anything else is refused by both, naming the values.
        for args in [
            &[
                "register",
                "c1",
                "--api-server-url",
                url,
                "--type",
                "mainframe",
            ][..],
            &["list", "--type", "mainframe"],
        ] {
            let error = parse(args).err().expect("refused").to_string();
            assert!(
                error.contains("HUB") && error.contains("FAR_EDGE"),
                "{args:?}: {error}"
            );
        }
    }

    #[test]
    fn if_match_quotes_bare_revisions() {
        assert_eq!(if_match_header("7"), "\"7\"");
        assert_eq!(if_match_header("\"7\""), "\"7\"");
        assert_eq!(if_match_header("W/\"7\""), "W/\"7\"");
    }
}
