//! `fleetreg client health NAME`: a client's live health, checked now by the
//! server (`GET /api/v1/clients/{name}/health`): the state, and per URL the
//! result, HTTP status, latency and TLS certificate expiry. Also the live
//! section of `fleetreg client status`.

use crate::client::{path_segment, Client, ConnectArgs};
use crate::output::{detail, print, print_whole, table, write_stdout, Column, Format};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

/// The `--help` examples of `client health`.
pub const HEALTH_EXAMPLES: &str = "Examples:
  fleetreg client health acme
  fleetreg client health acme -o json
  fleetreg client health acme -o csv > acme-health.csv

The server fetches every URL of the client at once, each within
client_health.timeout_seconds (default 5), and only where
health_check.allowed_networks allows (others show REFUSED). A URL is healthy
when it answers 2xx or 3xx in time over a verified certificate; the client is
HEALTHY when all are, DOWN when none is, DEGRADED otherwise, NOT_CHECKED when
it is not deployed or has no URLs. Nothing is recorded.";

/// `client health` arguments.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Client name.
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

const SUMMARY: &[Column] = &[
    Column {
        header: "Client",
        pointer: "/client",
    },
    Column {
        header: "State",
        pointer: "/state",
    },
    Column {
        header: "Checked at",
        pointer: "/checked_at",
    },
    Column {
        header: "Reason",
        pointer: "/reason",
    },
];

/// The columns of the per-URL table (rows from [`url_rows`]).
const URLS: &[Column] = &[
    Column {
        header: "App",
        pointer: "/app",
    },
    Column {
        header: "Result",
        pointer: "/result",
    },
    Column {
        header: "HTTP",
        pointer: "/status",
    },
    Column {
        header: "Latency",
        pointer: "/latency",
    },
    Column {
        header: "TLS expires",
        pointer: "/tls",
    },
    Column {
        header: "URL",
        pointer: "/url",
    },
    Column {
        header: "Error",
        pointer: "/error",
    },
];

/// The columns of `-o csv`: one row per URL, the API's fields.
const CSV: &[Column] = &[
    Column {
        header: "client",
        pointer: "/client",
    },
    Column {
        header: "state",
        pointer: "/state",
    },
    Column {
        header: "app",
        pointer: "/app",
    },
    Column {
        header: "url",
        pointer: "/url",
    },
    Column {
        header: "healthy",
        pointer: "/healthy",
    },
    Column {
        header: "outcome",
        pointer: "/outcome",
    },
    Column {
        header: "status_code",
        pointer: "/status_code",
    },
    Column {
        header: "latency_ms",
        pointer: "/latency_ms",
    },
    Column {
        header: "tls_not_after",
        pointer: "/tls_not_after",
    },
    Column {
        header: "tls_days_left",
        pointer: "/tls_days_left",
    },
    Column {
        header: "error",
        pointer: "/error",
    },
];

/// Asks the server to check the client named `name` now.
pub async fn fetch(client: &Client, name: &str) -> anyhow::Result<Value> {
    let path = format!("/api/v1/clients/{}/health", path_segment(name));
    client.send(client.request(Method::GET, &path)).await
}

/// Runs `client health`.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let health = fetch(&client, &args.name).await?;
    print_report(args.format, &health)
}

/// Prints a health answer: whole (json/yaml), one row per URL (csv), or the
/// state and a table of URLs (table).
pub fn print_report(format: Format, health: &Value) -> anyhow::Result<()> {
    match format {
        Format::Table => write_stdout(&report_text(health)),
        Format::Csv => {
            let rows: Vec<Value> = urls(health)
                .iter()
                .map(|url| {
                    let mut row = url.clone();
                    row["client"] = health["client"].clone();
                    row["state"] = health["state"].clone();
                    row
                })
                .collect();
            print(format, health, &rows, CSV)
        }
        Format::Json | Format::Yaml => print_whole(format, health),
    }
}

/// The table form: the state, then one line per URL.
pub fn report_text(health: &Value) -> String {
    let mut text = detail(health, SUMMARY);
    let rows = url_rows(health);
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&table(&rows, URLS));
    }
    text
}

/// The live section `client status` ends with, for the client named `name`:
/// its health checked now, or why that failed (the status above it stands
/// either way).
pub async fn status_section(client: &Client, name: &str) -> String {
    match fetch(client, name).await {
        Ok(health) => section(&health),
        Err(error) => format!("\nLive health (checked now):\n  unavailable: {error}\n"),
    }
}

/// The live section of a health answer.
pub fn section(health: &Value) -> String {
    let mut text = String::from("\nLive health (checked now):\n");
    let state = health["state"].as_str().unwrap_or("-");
    match health["reason"].as_str() {
        Some(reason) => text.push_str(&format!("  {state}: {reason}\n")),
        None => text.push_str(&format!("  {state}\n")),
    }
    let rows = url_rows(health);
    if !rows.is_empty() {
        for line in table(&rows, URLS).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

fn urls(health: &Value) -> Vec<Value> {
    health["urls"].as_array().cloned().unwrap_or_default()
}

/// One row per URL, in words: `OK`/the outcome, `200`, `35 ms`,
/// `2026-04-01 (90 days)`.
fn url_rows(health: &Value) -> Vec<Value> {
    urls(health)
        .iter()
        .map(|url| {
            let tls = match (url["tls_not_after"].as_str(), url["tls_days_left"].as_i64()) {
                (Some(at), Some(days)) => {
                    let date = at.get(..10).unwrap_or(at);
                    format!("{date} ({})", days_text(days))
                }
                _ => String::new(),
            };
            json!({
                "app": url["app"],
                "url": url["url"],
                "result": url["outcome"],
                "status": url["status_code"],
                "latency": url["latency_ms"].as_u64().map(|ms| format!("{ms} ms")),
                "tls": tls,
                "error": url["error"],
            })
        })
        .collect()
}

fn days_text(days: i64) -> String {
    match days {
        1 => "1 day left".to_owned(),
        d if d >= 0 => format!("{d} days left"),
        -1 => "expired 1 day ago".to_owned(),
        d => format!("expired {} days ago", -d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "client": "acme", "client_id": "0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e",
            "checked_at": "2026-01-17T12:00:00Z", "state": "DEGRADED",
            "reason": "1 of 2 URLs failed: slow (TIMEOUT)",
            "urls": [
                {"app": "nextcloud", "url": "https://nc.acme.example.org", "healthy": true,
                 "outcome": "OK", "status_code": 200, "latency_ms": 35,
                 "tls_not_after": "2026-04-17T00:00:00Z", "tls_days_left": 89, "error": null},
                {"app": "slow", "url": "http://slow.acme.example.org", "healthy": false,
                 "outcome": "TIMEOUT", "status_code": null, "latency_ms": null,
                 "tls_not_after": null, "tls_days_left": null, "error": "no answer within 5.0 s"}
            ]
        })
    }

    #[test]
    fn the_report_shows_state_and_each_url() {
        let text = report_text(&sample());
        for part in [
            "State:       DEGRADED\n",
            "Reason:      1 of 2 URLs failed: slow (TIMEOUT)\n",
            "nextcloud  OK       200   35 ms    2026-04-17 (89 days left)",
            "slow       TIMEOUT  -     -        -",
            "no answer within 5.0 s",
        ] {
            assert!(text.contains(part), "{part:?} in\n{text}");
        }
    }

    #[test]
    fn the_status_section_is_indented_and_says_why() {
        let text = section(&sample());
        assert!(text.starts_with("\nLive health (checked now):\n  DEGRADED: 1 of 2"));
        assert!(text.contains("\n  App "), "{text}");
        let skipped = section(&json!({
            "state": "NOT_CHECKED", "reason": "the client is maintenance: only deployed clients are checked",
            "urls": []
        }));
        assert_eq!(
            skipped,
            "\nLive health (checked now):\n  NOT_CHECKED: the client is maintenance: only deployed clients are checked\n"
        );
    }

    #[test]
    fn days_read_naturally() {
        assert_eq!(days_text(1), "1 day left");
        assert_eq!(days_text(0), "0 days left");
        assert_eq!(days_text(-3), "expired 3 days ago");
    }
}
