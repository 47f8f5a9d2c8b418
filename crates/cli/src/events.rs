//! `fleetreg events …`: read the change log or follow the live stream.

use crate::client::{Client, ConnectArgs};
use crate::output::{cell, print, write_stdout, Column, Format};
use clap::{Args, Subcommand};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

const LIST_EXAMPLES: &str = "Examples:
  fleetreg events list
  fleetreg events list --after 120 --limit 50 -o json
  fleetreg events list --type NODE_CONFIG_CHANGED --type ROUTING_FAILOVER
  fleetreg events list --resource client -o json
  fleetreg events list --resource-id 0190c0de-0000-7000-8000-000000000001";

const WATCH_EXAMPLES: &str = "Examples:
  fleetreg events watch
  fleetreg events watch --after 120 -o table
  fleetreg events watch --count 1   # wait for the next change, print it, exit
  fleetreg events watch --type CLUSTER_STATUS_CHANGED -o table
  fleetreg events watch --resource node --type NODE_SYNC_CHANGED";

/// The event commands.
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  fleetreg events list --after 0 --limit 50\n  fleetreg events list --type CLUSTER_DELETED\n  fleetreg events watch\n  fleetreg events watch --after 120 --type ROUTING_FAILOVER"
)]
pub enum EventsCommand {
    /// Print change-log events after a revision.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Follow the live stream until interrupted (one JSON event per line by default).
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),
}

/// Which events to read (`type=`, `resource=`, `resource_id=`); every given
/// condition holds, several types are alternatives. The server checks the values.
#[derive(Args, Debug, Default)]
pub struct FilterArgs {
    /// Only events of this type (e.g. NODE_CONFIG_CHANGED); repeat for several.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Only events about this kind of resource: cluster, client, rollout,
    /// host, deployment, domain, node, service or routing.
    #[arg(long, value_name = "KIND")]
    resource: Option<String>,
    /// Only events about the resource with this id.
    #[arg(long, value_name = "ID")]
    resource_id: Option<String>,
}

impl FilterArgs {
    /// The filter as query parameters.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query: Vec<(&'static str, String)> =
            self.types.iter().map(|t| ("type", t.clone())).collect();
        if let Some(resource) = &self.resource {
            query.push(("resource", resource.clone()));
        }
        if let Some(id) = &self.resource_id {
            query.push(("resource_id", id.clone()));
        }
        query
    }
}

/// `events list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Events with a revision above this [default: from the oldest retained event].
    #[arg(long, value_name = "REVISION")]
    after: Option<i64>,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u32,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// How `events watch` prints each event.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum, PartialEq, Eq)]
pub enum WatchFormat {
    /// One compact JSON envelope per line.
    #[default]
    Json,
    /// One YAML document per event.
    Yaml,
    /// Tab-separated columns: revision, type, time, resource, resource id, detail.
    Table,
    /// Comma-separated columns under a header row.
    Csv,
}

/// `events watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Resume after this revision (default: only events from now on).
    #[arg(long, value_name = "REVISION")]
    after: Option<i64>,
    /// Exit after printing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = WatchFormat::Json)]
    format: WatchFormat,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "REVISION",
        pointer: "/revision",
    },
    Column {
        header: "TYPE",
        pointer: "/type",
    },
    Column {
        header: "OCCURRED",
        pointer: "/occurred_at",
    },
    Column {
        header: "RESOURCE",
        pointer: "/resource",
    },
    Column {
        header: "RESOURCE_ID",
        pointer: "/resource_id",
    },
    Column {
        header: "DETAIL",
        pointer: "/detail",
    },
];

/// The event with a `detail` for the DETAIL column: `OLD → NEW` for a status
/// change (its payload has states, no name), `HOST: FROM → TO` for a
/// failover, `NODE: check failed: …` / `check passes` for an edge node's
/// HTTP check, else the resource's name.
fn with_detail(event: &Value) -> Value {
    let payload = &event["payload"];
    let text = |key: &str| payload[key].as_str();
    let detail = match (
        text("old_state").or(text("old_status")),
        text("new_state").or(text("new_status")),
    ) {
        (Some(old), Some(new)) => match text("node").or(text("name")) {
            Some(name) => Value::String(format!("{name}: {old} → {new}")),
            None => Value::String(format!("{old} → {new}")),
        },
        _ => match (text("hostname"), text("from"), text("to")) {
            (Some(host), Some(from), Some(to)) => Value::String(format!("{host}: {from} → {to}")),
            // The HTTP check through an edge node flipped.
            _ if payload["check_ok"].is_boolean() => {
                let node = text("node").unwrap_or_default();
                match text("check_error") {
                    Some(error) => Value::String(format!("{node}: check failed: {error}")),
                    None => Value::String(format!("{node}: check passes")),
                }
            }
            _ => text("name")
                .or(text("node"))
                .map_or(payload["name"].clone(), |n| Value::String(n.to_owned())),
        },
    };
    let mut event = event.clone();
    if let Some(map) = event.as_object_mut() {
        map.insert("detail".into(), detail);
    }
    event
}

/// Runs an events command.
pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List(args) => {
            let client = Client::from_args(&args.connect)?;
            let mut query = vec![("limit", args.limit.to_string())];
            if let Some(after) = args.after {
                query.push(("after", after.to_string()));
            }
            query.extend(args.filter.query());
            let page: Value = client
                .send(client.request(Method::GET, "/api/v1/events").query(&query))
                .await?;
            let items: Vec<Value> = page["items"]
                .as_array()
                .map(|items| items.iter().map(with_detail).collect())
                .unwrap_or_default();
            if args.format == Format::Table && items.is_empty() {
                eprintln!(
                    "no events after revision {} (latest revision {})",
                    page["next_after"], page["latest_revision"]
                );
                return Ok(());
            }
            print(args.format, &page, &items, COLUMNS)?;
            if args.format == Format::Table {
                eprintln!(
                    "{} events; latest revision {}; continue with --after {}",
                    items.len(),
                    page["latest_revision"],
                    page["next_after"]
                );
            }
            Ok(())
        }
        EventsCommand::Watch(args) => watch(args).await,
    }
}

fn print_event(format: WatchFormat, data: &str) -> anyhow::Result<()> {
    let event: Value = match format {
        WatchFormat::Json => return write_stdout(&format!("{data}\n")),
        WatchFormat::Yaml => serde_json::from_str(data)?,
        _ => with_detail(&serde_json::from_str(data)?),
    };
    match format {
        WatchFormat::Yaml => write_stdout(&format!("---\n{}", serde_yaml::to_string(&event)?)),
        WatchFormat::Table => {
            let cells: Vec<String> = COLUMNS.iter().map(|c| cell(&event, c.pointer)).collect();
            write_stdout(&format!("{}\n", cells.join("\t")))
        }
        _ => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(COLUMNS.iter().map(|c| cell(&event, c.pointer)))?;
            let bytes = writer
                .into_inner()
                .map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))?;
            write_stdout(&String::from_utf8_lossy(&bytes))
        }
    }
}

/// Follows the stream; reconnects from the last revision seen when the
/// connection drops after it was established.
async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let headers: Vec<&str> = COLUMNS.iter().map(|c| c.header).collect();
    match args.format {
        WatchFormat::Table => eprintln!("{}", headers.join("\t")),
        WatchFormat::Csv => write_stdout(&format!("{}\n", headers.join(",")))?,
        _ => {}
    }
    // Without --after, pin "from now on" to a revision, so that a reconnect
    // resumes there instead of skipping what happened while disconnected.
    let mut last = match args.after {
        Some(after) => Some(after),
        None => {
            // Any page carries the latest revision; the smallest one is cheapest.
            let query = [("limit", "1".to_owned())];
            let page: Value = client
                .send(client.request(Method::GET, "/api/v1/events").query(&query))
                .await?;
            page["latest_revision"].as_i64()
        }
    };
    let mut printed = 0u64;
    let mut connected_once = false;
    let mut warned = false;
    let filter = args.filter.query();
    loop {
        let mut request = client
            .request_unbounded(Method::GET, "/api/v1/events/stream")
            .query(&filter);
        if let Some(after) = last {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let response = match client.send_raw(request).await {
            Ok(response) => response,
            Err(error) if !connected_once => return Err(error),
            Err(error) => {
                if !warned {
                    eprintln!("warning: {error}");
                    eprintln!("retrying every 2 s (Ctrl-C to stop)");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if warned {
            eprintln!("reconnected");
            warned = false;
        }
        connected_once = true;
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim_start)
                };
                match (field("event:"), field("data:")) {
                    (Some("RESYNC"), Some(data)) => anyhow::bail!(
                        "the server asks to resync: events after the requested revision are expired ({data}); \
                         list the clusters again, then watch with --after the latest revision"
                    ),
                    (_, Some(data)) => {
                        print_event(args.format, data)?;
                        if let Some(id) = field("id:").and_then(|id| id.parse::<i64>().ok()) {
                            last = Some(id);
                        }
                        printed += 1;
                        if args.count.is_some_and(|count| printed >= count) {
                            return Ok(());
                        }
                    }
                    // An `id` alone: a filtered stream passed over events up
                    // to it; a reconnect resumes there.
                    (None, None) => {
                        if let Some(id) = field("id:").and_then(|id| id.parse::<i64>().ok()) {
                            last = Some(id);
                        }
                    }
                    _ => {}
                }
            }
        }
        let from = last.map_or_else(|| "now".to_owned(), |r| format!("revision {r}"));
        eprintln!("warning: the event stream closed; reconnecting after {from}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_changes_show_old_and_new_state() {
        let changed = json!({"revision": 7, "type": "CLUSTER_STATUS_CHANGED", "resource": "cluster",
            "resource_id": "0190", "payload": {"cluster_id": "0190", "old_state": "UNKNOWN", "new_state": "ONLINE"}});
        let registered = json!({"revision": 6, "type": "CLUSTER_REGISTERED", "resource": "cluster",
            "resource_id": "0190", "payload": {"id": "0190", "name": "edge-a"}});
        let text =
            crate::output::table(&[with_detail(&registered), with_detail(&changed)], COLUMNS);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("DETAIL"), "{text}");
        assert!(lines[1].ends_with("edge-a"), "{text}");
        assert!(lines[2].ends_with("UNKNOWN → ONLINE"), "{text}");
    }

    #[test]
    fn edge_events_show_what_moved() {
        let detail = |payload: Value| with_detail(&json!({"payload": payload}))["detail"].clone();
        assert_eq!(
            detail(
                json!({"service": "chat", "hostname": "chat.a.test", "from": "vps1", "to": "vps2"})
            ),
            "chat.a.test: vps1 → vps2"
        );
        assert_eq!(
            detail(json!({"node": "vps1", "old_status": "active", "new_status": "offline"})),
            "vps1: active → offline"
        );
        assert_eq!(
            detail(json!({"node": "vps1", "desired_revision": 9})),
            "vps1"
        );
        assert_eq!(
            detail(
                json!({"node": "vps1", "check_ok": false, "check_error": "refused", "up": false})
            ),
            "vps1: check failed: refused"
        );
        assert_eq!(
            detail(json!({"node": "vps1", "check_ok": true, "check_error": null, "up": true})),
            "vps1: check passes"
        );
    }
}
