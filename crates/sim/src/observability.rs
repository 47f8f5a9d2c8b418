//! The simulated observability endpoints under `/c/{name}/`: Prometheus
//! (`-/ready`, `-/healthy`, `api/v1/query` with DCGM series), Tempo and Loki
//! (`ready`).

use crate::cluster_api::Request;
use crate::spec::ClusterSpec;
use crate::state::Snapshot;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub(crate) fn readiness(down: bool, path: &str) -> Response {
    match (path, down) {
        ("ready", false) => (StatusCode::OK, "ready\n").into_response(),
        ("ready", true) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready (simulated)\n").into_response()
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

const DCGM_METRIC: &str = "DCGM_FI_DEV_GPU_UTIL";

pub(crate) fn prometheus(snapshot: &Snapshot, request: &Request<'_>) -> Response {
    let down = snapshot.faults.prometheus_down;
    if snapshot.faults.huge_body_bytes > 0 && !down {
        return crate::huge_body::huge(snapshot.faults.huge_body_bytes);
    }
    match (request.path, down) {
        ("-/ready", false) => (StatusCode::OK, "Prometheus Server is Ready.\n").into_response(),
        ("-/healthy", false) => (StatusCode::OK, "Prometheus Server is Healthy.\n").into_response(),
        ("-/ready" | "-/healthy" | "api/v1/query", true) => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
        }
        ("api/v1/query", false) => match request.param("query") {
            Some(query) => Json(query_result(&snapshot.spec, &query)).into_response(),
            None => {
                let body = json!({"status": "error", "errorType": "bad_data", "error": "query is required"});
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        },
        _ => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

/// Answers `count(DCGM_FI_DEV_GPU_UTIL)` and `DCGM_FI_DEV_GPU_UTIL` from the spec
/// (one series per GPU when `dcgm` is on); anything else is an empty vector.
fn query_result(spec: &ClusterSpec, query: &str) -> Value {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut series = Vec::new();
    if spec.dcgm && query.contains(DCGM_METRIC) {
        for (node, count) in spec.gpus_per_node().iter().enumerate() {
            for gpu in 0..*count {
                series.push(json!({
                    "metric": {
                        "__name__": DCGM_METRIC,
                        "gpu": gpu.to_string(),
                        "Hostname": format!("worker-{node}"),
                        "modelName": spec.gpu_type,
                    },
                    "value": [now, "37"],
                }));
            }
        }
    }
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    let result = if compact.starts_with("count(") {
        if series.is_empty() {
            Vec::new()
        } else {
            vec![json!({"metric": {}, "value": [now, series.len().to_string()]})]
        }
    } else {
        series
    };
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_count() {
        let spec = ClusterSpec {
            gpu_count: 6,
            dcgm: true,
            ..ClusterSpec::default()
        };
        let body = query_result(&spec, "count(DCGM_FI_DEV_GPU_UTIL)");
        assert_eq!(body["data"]["result"][0]["value"][1], "6");
        let body = query_result(&ClusterSpec::default(), "count(DCGM_FI_DEV_GPU_UTIL)");
        assert_eq!(body["data"]["result"].as_array().unwrap().len(), 0);
    }
}
