//! `fleetreg host …`: the hosts of a cluster (seed
//! cluster-lifecycle-deregistration.md), their heartbeats, and the hosts
//! orphaned fleet-wide; a thin client of `/api/v1/clusters/{id}/hosts` and
//! `/api/v1/hosts/…`.

use crate::client::{path_segment, Client};
use crate::cluster::{fetch, id_of};
use crate::cluster_sync::{
    col, host_view, items, print_resource, Common, HOST_COLUMNS, HOST_CSV, HOST_DETAIL,
};
use crate::output::{print, Column, Format};
use chrono::Utc;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ALL_EXAMPLES: &str = "Examples:
  fleetreg host register prod-host-1 node-a --address 10.0.0.5
  fleetreg host list prod-host-1
  fleetreg host heartbeat 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e
  fleetreg host orphaned -o json

A host without a heartbeat for longer than sync.orphan_after_seconds (300) is
orphaned: listed by `host orphaned`, counted by the fleetreg_orphaned_hosts
gauge, until its next heartbeat.";

const REGISTER_EXAMPLES: &str = "Examples:
  fleetreg host register prod-host-1 node-a --address 10.0.0.5
  fleetreg host register prod-host-1 node-b.example.net -o json";

const LIST_EXAMPLES: &str = "Examples:
  fleetreg host list prod-host-1
  fleetreg host list prod-host-1 -o csv > hosts.csv";

const HEARTBEAT_EXAMPLES: &str = "Examples:
  fleetreg host heartbeat 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e

An orphaned host recovers with its next heartbeat (event HOST_RECOVERED).";

const ORPHANED_EXAMPLES: &str = "Examples:
  fleetreg host orphaned
  fleetreg host orphaned -o json

Longest silent first, across every cluster.";

/// The host commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum HostCommand {
    /// Register a host under a cluster.
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(RegisterArgs),
    /// List a cluster's hosts: last heartbeat, its age, ORPHANED.
    #[command(after_help = LIST_EXAMPLES)]
    List(ClusterArgs),
    /// Record a host's heartbeat now.
    #[command(after_help = HEARTBEAT_EXAMPLES)]
    Heartbeat(HostArgs),
    /// List the hosts without a recent heartbeat, fleet-wide.
    #[command(after_help = ORPHANED_EXAMPLES)]
    Orphaned(Common),
}

/// `host register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Cluster id or name.
    cluster: String,
    /// Host name (unique within the cluster): letters, digits, '-', '.'.
    hostname: String,
    /// Where it is reached: an IP address or DNS name.
    #[arg(long, value_name = "ADDRESS")]
    address: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one cluster.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Cluster id or name.
    cluster: String,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one host.
#[derive(Args, Debug)]
pub struct HostArgs {
    /// Host id (`fleetreg host list CLUSTER` shows it).
    host_id: String,
    #[command(flatten)]
    common: Common,
}

/// `host orphaned` columns: the cluster first.
const ORPHANED_COLUMNS: &[Column] = &[
    col("CLUSTER", "/cluster"),
    col("HOSTNAME", "/hostname"),
    col("ADDRESS", "/address"),
    col("LAST HEARTBEAT", "/last_heartbeat"),
    col("AGE", "/age"),
    col("ID", "/id"),
];

/// Prints one host.
fn print_host(format: Format, host: &Value) -> anyhow::Result<()> {
    let view = host_view(host, Utc::now());
    print_resource(format, host, &view, HOST_DETAIL, HOST_CSV)
}

/// Runs a host command.
pub async fn run(command: HostCommand) -> anyhow::Result<()> {
    match command {
        HostCommand::Register(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/hosts", id_of(&cluster)?);
            let body = json!({"hostname": args.hostname, "address": args.address});
            let host: Value = client
                .send(client.request(Method::POST, &path).json(&body))
                .await?;
            print_host(args.common.format, &host)
        }
        HostCommand::List(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            let path = format!("/api/v1/clusters/{}/hosts", id_of(&cluster)?);
            let hosts: Value = client.send(client.request(Method::GET, &path)).await?;
            let rows = items(&hosts);
            match args.common.format {
                Format::Table if rows.is_empty() => {
                    eprintln!(
                        "no hosts registered for cluster {}",
                        cluster["name"].as_str().unwrap_or(&args.cluster)
                    );
                    Ok(())
                }
                Format::Table => {
                    let now = Utc::now();
                    let views: Vec<Value> = rows.iter().map(|h| host_view(h, now)).collect();
                    print(Format::Table, &hosts, &views, HOST_COLUMNS)
                }
                format => print(format, &hosts, &rows, HOST_CSV),
            }
        }
        HostCommand::Heartbeat(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = format!("/api/v1/hosts/{}/heartbeat", path_segment(&args.host_id));
            let host: Value = client.send(client.request(Method::POST, &path)).await?;
            print_host(args.common.format, &host)
        }
        HostCommand::Orphaned(common) => orphaned(common).await,
    }
}

/// `host orphaned`: with each host's cluster by name (one lookup per cluster).
async fn orphaned(common: Common) -> anyhow::Result<()> {
    let client = Client::from_args(&common.connect)?;
    let hosts: Value = client
        .send(client.request(Method::GET, "/api/v1/hosts/orphaned"))
        .await?;
    let rows = items(&hosts);
    match common.format {
        Format::Table if rows.is_empty() => {
            eprintln!("no orphaned hosts");
            Ok(())
        }
        Format::Table => {
            let mut clusters = BTreeMap::new();
            for id in rows.iter().filter_map(|h| h["cluster_id"].as_str()) {
                if !clusters.contains_key(id) {
                    let path = format!("/api/v1/clusters/{}", path_segment(id));
                    let cluster: Option<Value> =
                        client.send(client.request(Method::GET, &path)).await.ok();
                    let name = cluster
                        .and_then(|c| c["name"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| id.to_owned());
                    clusters.insert(id.to_owned(), name);
                }
            }
            let now = Utc::now();
            let views: Vec<Value> = rows
                .iter()
                .map(|h| {
                    let mut view = host_view(h, now);
                    let id = h["cluster_id"].as_str().unwrap_or_default();
                    view["cluster"] = json!(clusters.get(id).map_or(id, String::as_str));
                    view
                })
                .collect();
            print(Format::Table, &hosts, &views, ORPHANED_COLUMNS)?;
            eprintln!("{} orphaned host(s)", rows.len());
            Ok(())
        }
        format => print(format, &hosts, &rows, HOST_CSV),
    }
}
