//! `fleetreg sync …`: the push sync of edge nodes (seed
//! service-registry-push-sync.md, `sync-controller.sh push|health|reconcile`):
//! push the desired configuration now, the seed's "Node Health Status" view
//! (per node its status, last sync and applied/desired revision), and the
//! periodic reconciliation; a thin client of `/api/v1/sync/…`.

use crate::client::Client;
use crate::cluster_sync::span;
use crate::edge_common::{joined, seed_time, typed_items, ViewArgs, ViewFormat};
use crate::output::{print_whole, write_stdout};
use clap::{Args, Subcommand};
use fleetreg_model::{NodeKind, NodeSync};
use reqwest::Method;
use serde_json::{json, Value};

const ALL_EXAMPLES: &str = "Examples:
  fleetreg sync health
  fleetreg sync push
  fleetreg sync push --node contabo-vps
  fleetreg sync reconcile --every 4h

Every change of domains, nodes, services or routing is pushed at once to the
agents of the nodes it affects (`fleetreg node token --help`); a push not
acknowledged is retried, and a node is marked failed after 3 attempts. The
periodic reconciliation (hourly by default, or as `sync reconcile --every`
set it) sends every node its full configuration again.";

const HEALTH_EXAMPLES: &str = "Examples:
  fleetreg sync health
  fleetreg sync health -o json

Lists management laptops and VPS edge nodes: status (active, failed after 3
unacknowledged pushes or a reported error, offline without heartbeats), when
each last applied its configuration, and its applied and desired revisions.
A node that routing counts as down says why: no heartbeat, or the HTTP check
through it failing (edge.http_check). Last, how often every node is
reconciled and when next.";

const PUSH_EXAMPLES: &str = "Examples:
  fleetreg sync push                       # every node
  fleetreg sync push --node contabo-vps
  fleetreg sync push --node 100.86.112.112 -o json

Pushes the desired configuration now, also to nodes marked failed (manual
recovery).";

const RECONCILE_EXAMPLES: &str = "Examples:
  fleetreg sync reconcile                  # once, now
  fleetreg sync reconcile --every 4h       # now, then every 4 hours
  fleetreg sync reconcile --every 30m

A duration is a number with s, m, h or d (1h30m also works); a bare number is
hours, as in the seed's `reconcile 4`. The interval is stored: it outlasts
restarts, every server replica uses it, and `sync health` shows it; until
one is set, the server's `edge.reconcile_seconds` applies.";

/// The sync commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum SyncCommand {
    /// The seed's Node Health Status view.
    #[command(after_help = HEALTH_EXAMPLES)]
    Health(ViewArgs),
    /// Push the desired configuration to every node, or one.
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),
    /// Reconcile now; with --every, also set how often it runs.
    #[command(after_help = RECONCILE_EXAMPLES)]
    Reconcile(ReconcileArgs),
}

/// `sync push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Only this node (name or overlay address).
    #[arg(long, value_name = "NODE")]
    node: Option<String>,
    #[command(flatten)]
    view: ViewArgs,
}

/// `sync reconcile`.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// How often reconciliation runs from now on, e.g. 30m, 4h, 1d (stored
    /// by the server).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    every: Option<u64>,
    #[command(flatten)]
    view: ViewArgs,
}

/// Seconds of a duration: numbers with `s`, `m`, `h` or `d`, summed
/// (`1h30m`); a bare number is hours (the seed's `reconcile 4`).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("expected a duration like 30m, 4h, 1d or 1h30m; got {text:?}");
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let hours: u64 = text.parse().map_err(|_| bad())?;
        return positive(hours.checked_mul(3600), text);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let factor = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("unknown unit {c:?} in {text:?}; use s, m, h or d")),
        };
        let value: u64 = std::mem::take(&mut number).parse().map_err(|_| bad())?;
        total = value
            .checked_mul(factor)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() {
        return Err(bad());
    }
    positive(Some(total), text)
}

fn positive(seconds: Option<u64>, text: &str) -> Result<u64, String> {
    match seconds {
        Some(0) => Err(format!("{text:?} is not a positive duration")),
        Some(seconds) => Ok(seconds),
        None => Err(format!("{text:?} is too long")),
    }
}

/// `name (address): status (last sync: TIME)`, as the seed prints a node.
fn head(node: &NodeSync) -> String {
    let last = node
        .last_sync_at
        .as_ref()
        .map_or_else(|| "never".to_owned(), seed_time);
    format!(
        "{} ({}): {} (last sync: {last})",
        node.node, node.overlay_address, node.status
    )
}

/// One node's line: its [`head`] padded to `width`, then its revisions (and
/// its last error on a line of its own).
fn node_line(node: &NodeSync, width: usize) -> String {
    let applied = node
        .applied_revision
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    let mut state = format!("applied {applied}, desired {}", node.desired_revision);
    if node.in_sync() {
        state.push_str(", in sync");
    } else if node.push_attempts > 0 {
        state.push_str(&format!(", {} push(es) unacknowledged", node.push_attempts));
    }
    let mut line = format!("  • {:<width$}  {state}\n", head(node));
    if let Some(error) = &node.last_error {
        line.push_str(&format!("      last error: {error}\n"));
    }
    if let Some(reason) = node.down_reason() {
        line.push_str(&format!("      down for routing: {reason}\n"));
    }
    line
}

/// The seed's "Node Health Status" view: laptops, then VPS nodes, by name.
pub fn health_text(nodes: &[NodeSync]) -> String {
    let mut sorted: Vec<&NodeSync> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.node.cmp(&b.node));
    let width = sorted
        .iter()
        .map(|n| head(n).chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("Node Health Status\n");
    for (title, kind) in [
        ("Management Laptops:", NodeKind::Laptop),
        ("VPS Edge Nodes:", NodeKind::Vps),
    ] {
        out.push_str(&format!("\n{title}\n"));
        let group: Vec<&NodeSync> = sorted.iter().copied().filter(|n| n.kind == kind).collect();
        if group.is_empty() {
            out.push_str("  (none)\n");
        }
        for node in group {
            out.push_str(&node_line(node, width));
        }
    }
    out
}

/// The reconciliation line of `sync health`: `reconcile every 4h, next in
/// 3h59m` (from the answer's `reconcile`), or that it is off; nothing when
/// the answer has no such object.
fn reconcile_text(answer: &Value) -> String {
    let reconcile = &answer["reconcile"];
    let Some(every) = reconcile["every_seconds"].as_i64() else {
        return String::new();
    };
    if every == 0 {
        return "\nReconciliation: off (only on request: fleetreg sync reconcile)\n".into();
    }
    let source = match reconcile["source"].as_str() {
        Some("stored") => " (set by sync reconcile --every)",
        _ => " (server configuration)",
    };
    let next = match reconcile["next_in_seconds"].as_i64() {
        Some(0) => "due now".to_owned(),
        Some(seconds) => format!("next in {}", span(seconds)),
        None => "not scheduled yet".to_owned(),
    };
    format!("\nReconciliation: every {}{source}, {next}\n", span(every))
}

/// The nodes a push or reconciliation reached, for people.
fn pushed_text(answer: &Value) -> String {
    let pushed: Vec<&str> = answer["pushed"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if pushed.is_empty() {
        "nothing to push: no node matched\n".into()
    } else {
        format!("pushed to {} node(s): {}\n", pushed.len(), joined(&pushed))
    }
}

/// Runs a sync command.
pub async fn run(command: SyncCommand) -> anyhow::Result<()> {
    match command {
        SyncCommand::Health(args) => {
            let client = Client::from_args(&args.connect)?;
            let answer: Value = client
                .send(client.request(Method::GET, "/api/v1/sync/health"))
                .await?;
            match args.format {
                ViewFormat::Table => {
                    let nodes: Vec<NodeSync> = typed_items(&answer, "node sync state")?;
                    write_stdout(&(health_text(&nodes) + &reconcile_text(&answer)))
                }
                format => print_whole(format.format(), &answer),
            }
        }
        SyncCommand::Push(args) => {
            let client = Client::from_args(&args.view.connect)?;
            let body = match &args.node {
                Some(node) => json!({"node": crate::node::resolve(&client, node).await?}),
                None => json!({}),
            };
            let answer: Value = client
                .send(
                    client
                        .request(Method::POST, "/api/v1/sync/push")
                        .json(&body),
                )
                .await?;
            match args.view.format {
                ViewFormat::Table => write_stdout(&pushed_text(&answer)),
                format => print_whole(format.format(), &answer),
            }
        }
        SyncCommand::Reconcile(args) => {
            let client = Client::from_args(&args.view.connect)?;
            let body = match args.every {
                Some(seconds) => json!({"every_seconds": seconds}),
                None => json!({}),
            };
            let answer: Value = client
                .send(
                    client
                        .request(Method::POST, "/api/v1/sync/reconcile")
                        .json(&body),
                )
                .await?;
            match args.view.format {
                ViewFormat::Table => {
                    let mut text = pushed_text(&answer);
                    if let Some(every) = answer["every_seconds"].as_i64() {
                        text.push_str(&format!("reconciliation runs every {}\n", span(every)));
                    }
                    write_stdout(&text)
                }
                format => print_whole(format.format(), &answer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("4h"), Ok(14_400));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("4"), Ok(14_400), "a bare number is hours");
        for bad in [
            "",
            "0",
            "0m",
            "h",
            "4x",
            "4h5",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn sync(name: &str, kind: &str, address: &str, status: &str, applied: Option<i64>) -> NodeSync {
        serde_json::from_value(json!({
            "node": name, "kind": kind, "overlay_address": address, "status": status,
            "desired_revision": 12, "applied_revision": applied,
            "last_sync_at": applied.map(|_| "2025-11-06T18:30:00.250Z"),
            "last_heartbeat_at": null, "push_attempts": if applied == Some(12) { 0 } else { 3 },
            "last_error": if status == "failed" { json!("traefik: permission denied") } else { Value::Null },
            "up": status != "offline", "heartbeat_ok": status != "offline",
        }))
        .unwrap()
    }

    #[test]
    fn the_seeds_health_view() {
        let nodes = [
            sync("work-laptop", "laptop", "100.87.123.45", "active", Some(12)),
            sync(
                "vinay-laptop",
                "laptop",
                "100.86.112.112",
                "active",
                Some(12),
            ),
            sync("contabo-vps", "vps", "100.68.225.92", "active", Some(12)),
            sync(
                "digitalocean-vps",
                "vps",
                "100.70.123.45",
                "failed",
                Some(9),
            ),
        ];
        let text = health_text(&nodes);
        let expected = "Node Health Status

Management Laptops:
  • vinay-laptop (100.86.112.112): active (last sync: 2025-11-06T18:30:00Z)     applied 12, desired 12, in sync
  • work-laptop (100.87.123.45): active (last sync: 2025-11-06T18:30:00Z)       applied 12, desired 12, in sync

VPS Edge Nodes:
  • contabo-vps (100.68.225.92): active (last sync: 2025-11-06T18:30:00Z)       applied 12, desired 12, in sync
  • digitalocean-vps (100.70.123.45): failed (last sync: 2025-11-06T18:30:00Z)  applied 9, desired 12, 3 push(es) unacknowledged
      last error: traefik: permission denied
";
        assert_eq!(text, expected, "{text}");
        let none = health_text(&[]);
        assert_eq!(none.matches("(none)").count(), 2, "{none}");
        let never = health_text(&[sync("new-vps", "vps", "100.1.1.1", "offline", None)]);
        assert!(
            never
                .contains("new-vps (100.1.1.1): offline (last sync: never)  applied -, desired 12"),
            "{never}"
        );
    }

    #[test]
    fn down_nodes_say_why() {
        let mut failing = sync("vps1", "vps", "100.1.1.1", "active", Some(12));
        failing.up = false;
        failing.check_ok = false;
        failing.check_error = Some("connect to 45.8.133.192:80: Connection refused".into());
        let text = health_text(&[
            failing,
            sync("vps2", "vps", "100.1.1.2", "offline", Some(12)),
        ]);
        assert!(
            text.contains(
                "in sync\n      down for routing: check failed: connect to 45.8.133.192:80: \
                 Connection refused\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("in sync\n      down for routing: no heartbeat\n"),
            "{text}"
        );
        let up = health_text(&[sync("vps3", "vps", "100.1.1.3", "active", Some(12))]);
        assert!(!up.contains("down for routing"), "{up}");
    }

    #[test]
    fn the_reconciliation_line() {
        let line = |reconcile: Value| reconcile_text(&json!({"items": [], "reconcile": reconcile}));
        assert_eq!(
            line(json!({"every_seconds": 14_400, "source": "stored", "next_in_seconds": 14_340})),
            "\nReconciliation: every 4h (set by sync reconcile --every), next in 3h59m\n"
        );
        assert_eq!(
            line(json!({"every_seconds": 3600, "source": "config", "next_in_seconds": 0})),
            "\nReconciliation: every 1h (server configuration), due now\n"
        );
        assert!(
            line(json!({"every_seconds": 3600, "source": "config", "next_in_seconds": null}))
                .ends_with("not scheduled yet\n")
        );
        assert!(line(json!({"every_seconds": 0, "source": "config"})).contains("off"));
        assert_eq!(reconcile_text(&json!({"items": []})), "");
    }

    #[test]
    fn pushes_name_the_nodes() {
        assert_eq!(
            pushed_text(&json!({"pushed": ["a", "b"]})),
            "pushed to 2 node(s): a, b\n"
        );
        assert!(pushed_text(&json!({"pushed": []})).starts_with("nothing"));
    }
}
