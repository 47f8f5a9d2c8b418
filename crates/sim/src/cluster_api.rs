//! `/c/{name}/…`: what one simulated cluster answers. The API server subset at the
//! prefix itself, Prometheus under `prometheus/`, Tempo under `tempo/`, Loki under
//! `loki/`. Every request goes to the request log.

use crate::log::{LogEntry, Service};
use crate::objects::{self, Namespaced};
use crate::observability::{prometheus, readiness};
use crate::selector::Selector;
use crate::spec::ClusterSpec;
use crate::state::{Sim, Snapshot};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// Serves every request under `/c/{name}/`.
pub async fn handle(
    State(sim): State<Sim>,
    Path((cluster, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let time = chrono::Utc::now();
    let (service, sub_path) = split_service(&rest);
    let bearer_token = bearer(&headers);
    let response = match sim.snapshot(&cluster) {
        None => kube_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such simulated cluster",
        ),
        Some(snapshot) => {
            let request = Request {
                method: &method,
                path: sub_path,
                query: query.as_deref().unwrap_or(""),
                body: &body,
                bearer_token: bearer_token.as_deref(),
            };
            match service {
                Service::ApiServer => api_server(&snapshot, &request).await,
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
        time,
        cluster,
        service,
        method: method.to_string(),
        path,
        bearer_token,
        client_cert_subject: None,
        status: response.status().as_u16(),
    });
    response
}

pub(crate) struct Request<'a> {
    method: &'a Method,
    pub(crate) path: &'a str,
    query: &'a str,
    body: &'a [u8],
    bearer_token: Option<&'a str>,
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

fn kube_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        Json(objects::status(status.as_u16(), reason, message)),
    )
        .into_response()
}

fn not_found() -> Response {
    kube_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn api_server(snapshot: &Snapshot, request: &Request<'_>) -> Response {
    if snapshot.faults.api_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(snapshot.faults.api_latency_ms)).await;
    }
    if snapshot.faults.api_down {
        return kube_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the API server is down (simulated)",
        );
    }
    if let Some(expected) = &snapshot.spec.token {
        if request.bearer_token != Some(expected.as_str()) {
            return kube_error(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    if request.method != Method::GET {
        return kube_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the simulator serves reads only",
        );
    }
    let selector = match request.param("labelSelector") {
        None => Selector::default(),
        Some(text) => match Selector::parse(&text) {
            Some(selector) => selector,
            None => {
                let message = format!("unable to parse requirement: {text:?}");
                return kube_error(StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
        },
    };
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    match kube_get(&snapshot.spec, &segments, &selector) {
        Some(body) => Json(body).into_response(),
        None => not_found(),
    }
}

const SRIOV_GROUP: &str = "sriovnetwork.openshift.io";
const PTP_GROUP: &str = "ptp.openshift.io";
const CONFIG_GROUP: &str = "config.openshift.io";

/// The custom resource groups installed on a cluster: (group, plural, kind, namespaced).
fn installed_groups(spec: &ClusterSpec) -> Vec<(&'static str, &'static str, &'static str, bool)> {
    let mut groups = Vec::new();
    if spec.sriov_policies > 0 {
        groups.push((
            SRIOV_GROUP,
            "sriovnetworknodepolicies",
            "SriovNetworkNodePolicy",
            true,
        ));
    }
    if spec.ptp {
        groups.push((PTP_GROUP, "ptpconfigs", "PtpConfig", true));
    }
    if spec.openshift_version.is_some() {
        groups.push((CONFIG_GROUP, "clusterversions", "ClusterVersion", false));
    }
    groups
}

/// The body of a GET on the API server, or `None` for 404.
fn kube_get(spec: &ClusterSpec, segments: &[&str], selector: &Selector) -> Option<Value> {
    let namespaced_list =
        |api_version: &str, kind: &str, objects: Vec<Namespaced>, ns: Option<&str>| {
            let items = objects
                .into_iter()
                .filter(|o| ns.is_none_or(|ns| o.namespace == ns) && selector.matches(&o.labels))
                .map(|o| o.object)
                .collect();
            objects::list(api_version, kind, items)
        };
    match segments {
        ["version"] => Some(objects::version(spec)),
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["api", "v1"] => Some(resource_list(
            "v1",
            &[
                ("namespaces", "Namespace", false),
                ("nodes", "Node", false),
                ("pods", "Pod", true),
                ("services", "Service", true),
            ],
        )),
        ["apis"] => {
            let groups: Vec<Value> = installed_groups(spec)
                .iter()
                .map(|(group, ..)| {
                    let version = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
                    json!({"name": group, "versions": [version], "preferredVersion": version})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", group, "v1"] => {
            let installed = installed_groups(spec);
            let (_, plural, kind, namespaced) = installed.iter().find(|(g, ..)| g == group)?;
            Some(resource_list(
                &format!("{group}/v1"),
                &[(plural, kind, *namespaced)],
            ))
        }
        ["api", "v1", "namespaces"] => {
            let items = objects::namespace_names(spec)
                .iter()
                .filter(|ns| {
                    selector.matches(&[("kubernetes.io/metadata.name".to_owned(), (*ns).clone())])
                })
                .map(|ns| objects::namespace(ns))
                .collect();
            Some(objects::list("v1", "NamespaceList", items))
        }
        ["api", "v1", "namespaces", ns] => objects::namespace_names(spec)
            .iter()
            .any(|n| n == ns)
            .then(|| objects::namespace(ns)),
        ["api", "v1", "nodes"] => Some(objects::list("v1", "NodeList", objects::nodes(spec))),
        ["api", "v1", "nodes", name] => objects::nodes(spec)
            .into_iter()
            .find(|n| n["metadata"]["name"] == *name),
        ["api", "v1", "pods"] => Some(namespaced_list("v1", "PodList", objects::pods(spec), None)),
        ["api", "v1", "namespaces", ns, "pods"] => Some(namespaced_list(
            "v1",
            "PodList",
            objects::pods(spec),
            Some(ns),
        )),
        ["api", "v1", "services"] => Some(namespaced_list(
            "v1",
            "ServiceList",
            objects::services(spec),
            None,
        )),
        ["api", "v1", "namespaces", ns, "services"] => Some(namespaced_list(
            "v1",
            "ServiceList",
            objects::services(spec),
            Some(ns),
        )),
        ["apis", SRIOV_GROUP, "v1", rest @ ..] if spec.sriov_policies > 0 => {
            let ns = custom_list_namespace(rest, "sriovnetworknodepolicies")?;
            let api_version = format!("{SRIOV_GROUP}/v1");
            Some(namespaced_list(
                &api_version,
                "SriovNetworkNodePolicyList",
                objects::sriov_policies(spec),
                ns,
            ))
        }
        ["apis", PTP_GROUP, "v1", rest @ ..] if spec.ptp => {
            let ns = custom_list_namespace(rest, "ptpconfigs")?;
            let api_version = format!("{PTP_GROUP}/v1");
            Some(namespaced_list(
                &api_version,
                "PtpConfigList",
                objects::ptp_configs(spec),
                ns,
            ))
        }
        ["apis", CONFIG_GROUP, "v1", "clusterversions"] => {
            let version = objects::cluster_version(spec)?;
            Some(objects::list(
                &format!("{CONFIG_GROUP}/v1"),
                "ClusterVersionList",
                vec![version],
            ))
        }
        ["apis", CONFIG_GROUP, "v1", "clusterversions", "version"] => {
            objects::cluster_version(spec)
        }
        _ => None,
    }
}

/// For `[plural]` → all namespaces; `["namespaces", ns, plural]` → that namespace.
fn custom_list_namespace<'a>(rest: &[&'a str], plural: &str) -> Option<Option<&'a str>> {
    match rest {
        [p] if *p == plural => Some(None),
        ["namespaces", ns, p] if *p == plural => Some(Some(ns)),
        _ => None,
    }
}

fn resource_list(group_version: &str, resources: &[(&str, &str, bool)]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "name": plural,
                "singularName": kind.to_lowercase(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list", "watch"],
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
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

    #[test]
    fn absent_custom_resources_are_not_found() {
        let spec = ClusterSpec::default();
        let all = Selector::default();
        assert!(kube_get(
            &spec,
            &["apis", SRIOV_GROUP, "v1", "sriovnetworknodepolicies"],
            &all
        )
        .is_none());
        let spec = ClusterSpec {
            sriov_policies: 2,
            ..ClusterSpec::default()
        };
        let list = kube_get(
            &spec,
            &["apis", SRIOV_GROUP, "v1", "sriovnetworknodepolicies"],
            &all,
        )
        .unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
    }
}
