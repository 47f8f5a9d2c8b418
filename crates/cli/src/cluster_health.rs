//! `fleetreg cluster health`: one cluster's health at a glance — state, score,
//! each component's last result, when it was last seen, and its recent history.

use crate::output::{detail, print_whole, table, write_stdout, Column, Format};
use serde_json::{json, Value};

/// Samples of recent history shown.
pub const RECENT_SAMPLES: u32 = 5;

const SUMMARY: &[Column] = &[
    Column {
        header: "Cluster",
        pointer: "/cluster",
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
        pointer: "/connectivity",
    },
    Column {
        header: "API server",
        pointer: "/components/api_server",
    },
    Column {
        header: "Prometheus",
        pointer: "/components/prometheus",
    },
    Column {
        header: "Tempo",
        pointer: "/components/tempo",
    },
    Column {
        header: "Loki",
        pointer: "/components/loki",
    },
    Column {
        header: "Checked at",
        pointer: "/checked_at",
    },
    Column {
        header: "Last seen at",
        pointer: "/last_seen_at",
    },
    Column {
        header: "Reason",
        pointer: "/reason",
    },
];

const RECENT: &[Column] = &[
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
        header: "Reason",
        pointer: "/status/reason",
    },
];

/// A component's last result in words: `pass`, `fail`, `not configured`, or
/// `not checked yet`.
fn component(status: &Value, field: &str, configured: bool) -> &'static str {
    match status[field].as_bool() {
        Some(true) => "pass",
        Some(false) => "fail",
        None if !configured => "not configured",
        None => "not checked yet",
    }
}

/// The report `cluster health` prints, from the cluster and its recent history.
pub fn report(cluster: &Value, recent: &Value) -> Value {
    let status = &cluster["status"];
    let endpoints = &cluster["endpoints"];
    let configured = |key: &str| endpoints[key].is_string();
    json!({
        "id": cluster["id"],
        "cluster": cluster["name"],
        "state": status["state"],
        "health_score": status["health_score"],
        "connectivity": status["connectivity"],
        "components": {
            "api_server": component(status, "api_server_healthy", true),
            "prometheus": component(status, "prometheus_healthy", configured("prometheus_url")),
            "tempo": component(status, "tempo_healthy", configured("tempo_url")),
            "loki": component(status, "loki_healthy", configured("loki_url")),
        },
        "checked_at": status["checked_at"],
        "last_seen_at": cluster["last_seen_at"],
        "reason": status["reason"],
        "recent": recent,
    })
}

/// Prints the report: whole as JSON/YAML, or as a detail block and a table of
/// recent samples.
pub fn print_report(format: Format, report: &Value) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => print_whole(format, report),
        Format::Csv => print_whole(Format::Json, report),
        Format::Table => {
            let mut text = detail(report, SUMMARY);
            let recent = report["recent"].as_array().cloned().unwrap_or_default();
            if recent.is_empty() {
                text.push_str("\nNo health history yet.\n");
            } else {
                text.push_str("\nRecent history (newest first):\n");
                text.push_str(&table(&recent, RECENT));
            }
            write_stdout(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_distinguish_fail_from_not_configured() {
        let cluster = json!({
            "id": "x", "name": "a",
            "status": { "state": "DEGRADED", "health_score": 80, "connectivity": "CONNECTED",
                        "api_server_healthy": true, "prometheus_healthy": false },
            "endpoints": { "prometheus_url": "http://p", "loki_url": "http://l" },
        });
        let r = report(&cluster, &json!([]));
        assert_eq!(r["components"]["api_server"], "pass");
        assert_eq!(r["components"]["prometheus"], "fail");
        assert_eq!(r["components"]["tempo"], "not configured");
        assert_eq!(r["components"]["loki"], "not checked yet");
    }
}
