//! `fleetreg fleet …`: a thin client of `/api/v1/fleet/{summary,health,capabilities}`.

use crate::client::{Client, ConnectArgs};
use crate::output::{detail, print_whole, table, write_stdout, Column, Format};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

const ALL_EXAMPLES: &str = "Examples:
  fleetreg fleet summary
  fleetreg fleet health --limit 20
  fleetreg fleet capabilities -o json

The server is --server, else $FLEETREG_URL, else http://127.0.0.1:8080.";

/// The fleet commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum FleetCommand {
    /// Clusters by state, type and environment; GPUs, CNF, average health (seed 4.2).
    Summary(FleetArgs),
    /// Counts by state, score distribution, least healthy and stale clusters.
    Health(HealthArgs),
    /// GPU totals by type, CNF, SR-IOV, PTP and observability coverage.
    Capabilities(FleetArgs),
}

/// How fleet views are printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum FleetFormat {
    /// Sections of fields and small tables for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
}

/// Output and connection flags.
#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = FleetFormat::Table)]
    format: FleetFormat,
}

/// Flags of `fleet health`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    common: FleetArgs,
    /// How many least-healthy and stale clusters to list (1–1000).
    #[arg(long, default_value_t = 10)]
    limit: u32,
}

const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer }
}

/// Runs a fleet command.
pub async fn run(command: FleetCommand) -> anyhow::Result<()> {
    let (args, path) = match &command {
        FleetCommand::Summary(args) => (args, "/api/v1/fleet/summary".to_owned()),
        FleetCommand::Health(h) => (&h.common, format!("/api/v1/fleet/health?limit={}", h.limit)),
        FleetCommand::Capabilities(args) => (args, "/api/v1/fleet/capabilities".to_owned()),
    };
    let client = Client::from_args(&args.connect)?;
    let body: Value = client.send(client.request(Method::GET, &path)).await?;
    match args.format {
        FleetFormat::Json => print_whole(Format::Json, &body),
        FleetFormat::Yaml => print_whole(Format::Yaml, &body),
        FleetFormat::Table => write_stdout(&match command {
            FleetCommand::Summary(_) => summary_text(&body),
            FleetCommand::Health(_) => health_text(&body),
            FleetCommand::Capabilities(_) => capabilities_text(&body),
        }),
    }
}

/// A `{key: n}` object as rows `{key, n}` under two headers.
fn counts(value: &Value, key_header: &'static str, count_header: &'static str) -> String {
    let rows: Vec<Value> = value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| json!({ "k": k, "n": v })).collect())
        .unwrap_or_default();
    table(&rows, &[col(key_header, "/k"), col(count_header, "/n")])
}

fn rows(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn summary_text(body: &Value) -> String {
    let mut out = detail(
        body,
        &[
            col("TOTAL CLUSTERS", "/total_clusters"),
            col("AVG HEALTH SCORE", "/avg_health_score"),
            col("TOTAL GPUS", "/total_gpu_count"),
            col("CLUSTERS WITH CNF", "/clusters_with_cnf"),
        ],
    );
    for (key, header) in [
        ("by_state", "STATE"),
        ("by_type", "TYPE"),
        ("by_environment", "ENVIRONMENT"),
    ] {
        out.push('\n');
        out.push_str(&counts(&body[key], header, "CLUSTERS"));
    }
    out
}

const CLUSTER_COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("TYPE", "/cluster_type"),
    col("STATE", "/state"),
    col("SCORE", "/health_score"),
    col("LAST SEEN", "/last_seen_at"),
];

fn health_text(body: &Value) -> String {
    let mut out = detail(
        body,
        &[
            col("TOTAL CLUSTERS", "/total_clusters"),
            col("STALE", "/stale_count"),
            col("NEVER SEEN", "/never_seen"),
            col("CREDENTIALS EXPIRING", "/credentials_expiring_count"),
            col("CREDENTIALS EXPIRED", "/credentials_expired_count"),
        ],
    );
    out.push('\n');
    out.push_str(&counts(&body["by_state"], "STATE", "CLUSTERS"));
    out.push('\n');
    out.push_str(&table(
        &rows(&body["score_distribution"]),
        &[col("SCORE", "/range"), col("CLUSTERS", "/clusters")],
    ));
    out.push_str("\nLeast healthy:\n");
    out.push_str(&table(&rows(&body["least_healthy"]), CLUSTER_COLUMNS));
    out.push_str("\nNot seen within twice their check interval:\n");
    out.push_str(&table(&rows(&body["stale"]), CLUSTER_COLUMNS));
    out.push_str("\nCredentials expiring soon or expired:\n");
    out.push_str(&table(
        &rows(&body["credentials_expiring"]),
        &[
            col("NAME", "/cluster_name"),
            col("AUTH TYPE", "/auth_type"),
            col("EXPIRES AT", "/expires_at"),
            col("EXPIRED", "/expired"),
        ],
    ));
    out
}

fn capabilities_text(body: &Value) -> String {
    let mut out = detail(
        body,
        &[
            col("TOTAL CLUSTERS", "/total_clusters"),
            col("DISCOVERED", "/clusters_discovered"),
            col("WITH GPU", "/clusters_with_gpu"),
            col("TOTAL GPUS", "/total_gpu_count"),
            col("WITH CNF", "/clusters_with_cnf"),
            col("WITH SR-IOV", "/clusters_with_sriov"),
            col("WITH PTP", "/clusters_with_ptp"),
            col("PROMETHEUS", "/observability/prometheus"),
            col("THANOS", "/observability/thanos"),
            col("TEMPO", "/observability/tempo"),
            col("LOKI", "/observability/loki"),
        ],
    );
    let gpu: Vec<Value> = body["gpu_types"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({ "type": k, "clusters": v["clusters"], "gpus": v["gpu_count"] }))
                .collect()
        })
        .unwrap_or_default();
    out.push('\n');
    out.push_str(&table(
        &gpu,
        &[
            col("GPU TYPE", "/type"),
            col("CLUSTERS", "/clusters"),
            col("GPUS", "/gpus"),
        ],
    ));
    out.push('\n');
    out.push_str(&counts(&body["cnf_types"], "CNF TYPE", "CLUSTERS"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_group() {
        let text = summary_text(&json!({
            "total_clusters": 3, "avg_health_score": 87.5, "total_gpu_count": 8, "clusters_with_cnf": 1,
            "by_state": {"ONLINE": 3}, "by_type": {"HUB": 1, "SPOKE": 2}, "by_environment": {"LAB": 3}
        }));
        assert!(text.contains("AVG HEALTH SCORE:   87.5"), "{text}");
        assert!(text.contains("SPOKE  2"), "{text}");
        assert!(
            text.contains("ENVIRONMENT  CLUSTERS\nLAB          3"),
            "{text}"
        );
    }
}
