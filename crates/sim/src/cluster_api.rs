//! `/c/{name}/…`: what one simulated cluster answers. The API server at the prefix
//! itself (reads in [`crate::reads`], Secrets, TokenRequest), Prometheus under
//! `prometheus/`, Tempo under `tempo/`, Loki under `loki/`. Every request goes to
//! the request log with the credential it carried.

use crate::auth::{self, Presented};
use crate::kube_status::KubeError;
use crate::log::{LogEntry, Service};
use crate::observability::{prometheus, readiness};
use crate::reads::kube_get;
use crate::selector::Selector;
use crate::state::{lock, Sim, Snapshot};
use crate::tls::PeerCert;
use crate::token_request;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// Serves every request under `/c/{name}/`.
pub async fn handle(
    State(sim): State<Sim>,
    Path((cluster, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    peer: Option<Extension<PeerCert>>,
    body: Bytes,
) -> Response {
    let now = sim.now();
    let (service, sub_path) = split_service(&rest);
    let bearer_token = bearer(&headers);
    let peer = peer.map(|Extension(peer)| peer);
    let response = match sim.snapshot(&cluster) {
        None => KubeError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such simulated cluster",
        )
        .into_response(),
        Some(snapshot) => {
            let request = Request {
                method: &method,
                path: sub_path,
                query: query.as_deref().unwrap_or(""),
                headers: &headers,
                body: &body,
                presented: Presented {
                    bearer: bearer_token.as_deref(),
                    cert: peer.as_ref(),
                },
                now,
            };
            let auth = &snapshot.auth;
            let bearer = request.presented.bearer;
            match service {
                Service::ApiServer => api_server(&snapshot, &request).await,
                Service::Prometheus if !auth::endpoint_allows(&auth.prometheus_tokens, bearer) => {
                    unauthorized_text()
                }
                Service::Tempo if !auth::endpoint_allows(&auth.tempo_tokens, bearer) => {
                    unauthorized_text()
                }
                Service::Loki if !auth::endpoint_allows(&auth.loki_tokens, bearer) => {
                    unauthorized_text()
                }
                Service::Prometheus => prometheus(&snapshot, &request),
                Service::Tempo => readiness(snapshot.faults.tempo_down, sub_path),
                Service::Loki => readiness(snapshot.faults.loki_down, sub_path),
            }
        }
    };
    let path = match &query {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    sim.record(LogEntry {
        seq: 0,
        time: now,
        cluster,
        service,
        method: method.to_string(),
        path,
        bearer_token,
        client_cert_subject: peer.and_then(|p| p.common_name),
        status: response.status().as_u16(),
    });
    response
}

pub(crate) struct Request<'a> {
    method: &'a Method,
    pub(crate) path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    presented: Presented<'a>,
    now: DateTime<Utc>,
}

impl Request<'_> {
    /// A query parameter, also read from a form body (Prometheus accepts POST).
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        let from = |bytes: &[u8]| {
            url::form_urlencoded::parse(bytes)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        from(self.query.as_bytes()).or_else(|| from(self.body))
    }

    fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
    }

    fn json_body(&self) -> Result<Value, KubeError> {
        serde_json::from_slice(self.body)
            .map_err(|e| KubeError::bad_request(format!("the request body is not JSON: {e}")))
    }
}

fn split_service(rest: &str) -> (Service, &str) {
    for (prefix, service) in [
        ("prometheus", Service::Prometheus),
        ("tempo", Service::Tempo),
        ("loki", Service::Loki),
    ] {
        if let Some(after) = rest.strip_prefix(prefix) {
            if after.is_empty() || after.starts_with('/') {
                return (service, after.trim_start_matches('/'));
            }
        }
    }
    (Service::ApiServer, rest)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// What Prometheus, Tempo and Loki behind an auth proxy answer without a token.
fn unauthorized_text() -> Response {
    (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response()
}

async fn api_server(snapshot: &Snapshot, request: &Request<'_>) -> Response {
    if snapshot.faults.api_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(snapshot.faults.api_latency_ms)).await;
    }
    if snapshot.faults.api_down {
        return KubeError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the API server is down (simulated)",
        )
        .into_response();
    }
    let allowed = !auth::required(&snapshot.spec, &snapshot.auth)
        || auth::api_server_allows(
            &snapshot.spec,
            &snapshot.auth,
            &lock(&snapshot.credentials),
            request.presented,
            request.now,
        );
    if !allowed {
        return KubeError::unauthorized().into_response();
    }
    if *request.method == Method::GET {
        if snapshot.faults.huge_body_bytes > 0 {
            return crate::huge_body::huge(snapshot.faults.huge_body_bytes);
        }
        if let Some(text) = &snapshot.faults.raw_body {
            return crate::huge_body::raw(text);
        }
    }
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    match api_call(snapshot, request, &segments) {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn selector(request: &Request<'_>) -> Result<Selector, KubeError> {
    match request.query_param("labelSelector") {
        None => Ok(Selector::default()),
        Some(text) => Selector::parse(&text).ok_or_else(|| {
            KubeError::bad_request(format!("unable to parse requirement: {text:?}"))
        }),
    }
}

/// Routes one authenticated API server request.
fn api_call(
    snapshot: &Snapshot,
    request: &Request<'_>,
    segments: &[&str],
) -> Result<(StatusCode, Value), KubeError> {
    let method = request.method;
    match segments {
        ["api", "v1", "namespaces", ns, "serviceaccounts", sa, "token"] => {
            if method != Method::POST {
                return Err(method_not_allowed());
            }
            if snapshot.faults.token_request_fail {
                return Err(KubeError::internal(
                    "Internal error occurred: failed to create token (simulated TokenRequest failure)",
                ));
            }
            let mut credentials = lock(&snapshot.credentials);
            let answer = token_request::create(
                &mut credentials,
                ns,
                sa,
                request.body,
                request.now,
                snapshot.faults.token_request_max_seconds,
            )?;
            Ok((StatusCode::CREATED, answer))
        }
        ["api", "v1", "secrets"] if method == Method::GET => {
            let selector = selector(request)?;
            let list = lock(&snapshot.secrets).list(None, &selector);
            Ok((StatusCode::OK, page(request, list)?))
        }
        ["api", "v1", "namespaces", ns, "secrets"] => match *method {
            Method::GET => {
                let selector = selector(request)?;
                let list = lock(&snapshot.secrets).list(Some(ns), &selector);
                Ok((StatusCode::OK, page(request, list)?))
            }
            Method::POST => {
                let body = request.json_body()?;
                let created = lock(&snapshot.secrets).create(ns, body, request.now)?;
                Ok((StatusCode::CREATED, created))
            }
            _ => Err(method_not_allowed()),
        },
        ["api", "v1", "namespaces", ns, "secrets", name] => {
            let mut secrets = lock(&snapshot.secrets);
            let answer = match *method {
                Method::GET => secrets.get(ns, name)?,
                Method::PUT => secrets.replace(ns, name, request.json_body()?)?,
                Method::PATCH => match request.content_type() {
                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                        secrets.merge_patch(ns, name, &request.json_body()?)?
                    }
                    other => return Err(unsupported_patch(other)),
                },
                Method::DELETE => secrets.delete(ns, name)?,
                _ => return Err(method_not_allowed()),
            };
            Ok((StatusCode::OK, answer))
        }
        _ if method == Method::GET => {
            let selector = selector(request)?;
            let body =
                kube_get(&snapshot.spec, segments, &selector).ok_or_else(KubeError::no_route)?;
            Ok((StatusCode::OK, page(request, body)?))
        }
        _ => Err(method_not_allowed()),
    }
}

/// A list answer cut to the request's `limit` and `continue` (Kubernetes list
/// paging); any other answer unchanged.
fn page(request: &Request<'_>, body: Value) -> Result<Value, KubeError> {
    crate::reads::paginate(
        body,
        request.query_param("limit").as_deref(),
        request.query_param("continue").as_deref(),
    )
}

fn method_not_allowed() -> KubeError {
    KubeError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the simulator serves reads only, besides Secrets and TokenRequest",
    )
}

fn unsupported_patch(content_type: &str) -> KubeError {
    KubeError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format ({content_type:?}) - the simulator \
             accepts application/merge-patch+json, application/strategic-merge-patch+json"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_prefixes() {
        assert_eq!(
            split_service("prometheus/-/ready"),
            (Service::Prometheus, "-/ready")
        );
        assert_eq!(split_service("loki/ready"), (Service::Loki, "ready"));
        assert_eq!(
            split_service("api/v1/namespaces"),
            (Service::ApiServer, "api/v1/namespaces")
        );
        assert_eq!(
            split_service("tempology"),
            (Service::ApiServer, "tempology")
        );
    }
}
