//! Service discovery (issue 13, "app installed → service registry updated"):
//! a cluster's Kubernetes `Service`s that opt in with the annotation
//! `fleetreg.io/expose: "true"`, turned into the model's
//! [`DiscoveredService`]s.
//!
//! Nothing read here is trusted: the list comes through the same byte budget
//! and paging as every other read ([`list_pages`]), each object is read
//! field by field from JSON (a malformed Service is one problem, not a failed
//! listing), every value goes through the model's `ServiceRequest`
//! validation, upstreams may not point at loopback, link-local, cloud
//! metadata, unspecified or multicast addresses (the edge proxy would publish
//! them), and every problem's text is escaped and truncated
//! ([`escape_remote`]).

use crate::egress::{canonical, literal_address, EgressPolicy};
use crate::error::Error;
use crate::prober::Prober;
use crate::remote::{escape_remote, list_pages};
use crate::target::Target;
use fleetreg_model::{DiscoveredService, ServiceRequest};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::Resource;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The opt-in annotation: only Services carrying it with the value `"true"`
/// are discovered.
pub const EXPOSE_ANNOTATION: &str = "fleetreg.io/expose";
/// The registry name (default: the Service's name).
pub const NAME_ANNOTATION: &str = "fleetreg.io/name";
/// The hostname's first label (default: the registry name).
pub const SUBDOMAIN_ANNOTATION: &str = "fleetreg.io/subdomain";
/// The upstream port (default: the Service's first port).
pub const PORT_ANNOTATION: &str = "fleetreg.io/port";
/// A whole `host:port` upstream, overriding the address and the port.
pub const UPSTREAM_ANNOTATION: &str = "fleetreg.io/upstream";
/// The description (default: empty).
pub const DESCRIPTION_ANNOTATION: &str = "fleetreg.io/description";

/// Most Services one cluster may expose. A cluster exposing more fails the
/// listing as a whole rather than being cut short: a truncated list would
/// make the registry mark the rest gone.
pub const MAX_EXPOSED_SERVICES: usize = 1000;

/// What [`Prober::discover_services`] found in one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceDiscovery {
    /// The exposed Services that passed validation, in list order (by
    /// namespace and name, as the API server lists them); registry names are
    /// unique.
    pub services: Vec<DiscoveredService>,
    /// The exposed Services that did not, each with why.
    pub problems: Vec<ServiceProblem>,
}

/// An exposed Service that was not turned into a [`DiscoveredService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProblem {
    /// `namespace/name` of the Kubernetes Service (escaped; `?` for a part
    /// that is missing).
    pub service: String,
    /// Why, naming the annotation or field at fault (escaped, truncated).
    pub reason: String,
}

impl Prober {
    /// Lists the Services of every namespace (page by page, through the byte
    /// budget of every read) and keeps those annotated
    /// `fleetreg.io/expose: "true"`, each turned into a [`DiscoveredService`]:
    ///
    /// - name: `fleetreg.io/name`, else the Service's name;
    /// - subdomain: `fleetreg.io/subdomain`, else the name;
    /// - upstream: `fleetreg.io/upstream` (a whole `host:port`), else the
    ///   first load-balancer ingress IP, else the cluster IP, with the port
    ///   `fleetreg.io/port`, else the Service's first port;
    /// - description: `fleetreg.io/description`; namespace: the Service's.
    ///
    /// A Service whose values fail validation (the model's `ServiceRequest`
    /// rules, plus upstreams never at loopback, link-local, metadata,
    /// unspecified or multicast addresses), or that claims a registry name an
    /// earlier one took, becomes a [`ServiceProblem`] instead. A failed read,
    /// an answer over the byte budget, or more than
    /// [`MAX_EXPOSED_SERVICES`] exposed fails the whole call; so does
    /// running past `timeout`.
    pub async fn discover_services(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> Result<ServiceDiscovery, Error> {
        match tokio::time::timeout(timeout, self.discover_services_unbounded(target)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { after: timeout }),
        }
    }

    async fn discover_services_unbounded(
        &self,
        target: &Target,
    ) -> Result<ServiceDiscovery, Error> {
        let api = self.api_server(target)?;
        let url = Service::url_path(&(), None);
        let mut found = ServiceDiscovery::default();
        let mut exposed = 0usize;
        let mut taken: BTreeMap<String, String> = BTreeMap::new();
        let what = "list services";
        list_pages(
            &api,
            &url,
            &ListParams::default(),
            what,
            |page: Vec<Value>| {
                for object in page.iter().filter(|o| is_exposed(o)) {
                    exposed += 1;
                    if exposed > MAX_EXPOSED_SERVICES {
                        continue;
                    }
                    let service = service_label(object);
                    match discovered(object) {
                        Ok(discovered) => {
                            let name = discovered.name.to_string();
                            if let Some(first) = taken.get(&name) {
                                found.problems.push(ServiceProblem {
                                    reason: escape_remote(&format!(
                                        "the registry name {name:?} is taken by {first}"
                                    )),
                                    service,
                                });
                            } else {
                                taken.insert(name, service);
                                found.services.push(discovered);
                            }
                        }
                        Err(reason) => found.problems.push(ServiceProblem {
                            service,
                            reason: escape_remote(&reason),
                        }),
                    }
                }
            },
        )
        .await?;
        if exposed > MAX_EXPOSED_SERVICES {
            return Err(Error::UnexpectedResponse {
                what,
                reason: format!(
                    "{exposed} services are annotated {EXPOSE_ANNOTATION}; at most \
                     {MAX_EXPOSED_SERVICES} are read from one cluster"
                ),
            });
        }
        Ok(found)
    }
}

/// The annotations of a Service object (only string values).
fn annotations(object: &Value) -> BTreeMap<&str, &str> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}

fn is_exposed(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(EXPOSE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

/// `namespace/name`, escaped.
fn service_label(object: &Value) -> String {
    let part = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    escape_remote(&format!(
        "{}/{}",
        part("/metadata/namespace"),
        part("/metadata/name")
    ))
}

/// One exposed Service as a [`DiscoveredService`], or why not (unescaped).
fn discovered(object: &Value) -> Result<DiscoveredService, String> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    let namespace = text("/metadata/namespace").ok_or("metadata.namespace is missing")?;
    let kube_name = text("/metadata/name").ok_or("metadata.name is missing")?;
    let annotations = annotations(object);
    let (upstream, upstream_source) = upstream(object, &annotations)?;
    let name_source = match annotations.get(NAME_ANNOTATION) {
        Some(_) => format!("annotation {NAME_ANNOTATION}"),
        None => "metadata.name".to_owned(),
    };
    let request = ServiceRequest {
        name: Some(
            annotations
                .get(NAME_ANNOTATION)
                .copied()
                .unwrap_or(kube_name)
                .to_owned(),
        ),
        subdomain: annotations
            .get(SUBDOMAIN_ANNOTATION)
            .map(|s| (*s).to_owned()),
        upstreams: vec![upstream],
        cluster_id: None,
        namespace: Some(namespace.to_owned()),
        description: annotations
            .get(DESCRIPTION_ANNOTATION)
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
    };
    let (name, fields) = request.validate_create().map_err(|error| {
        let source = match error.field() {
            "name" => name_source,
            "subdomain" => format!("annotation {SUBDOMAIN_ANNOTATION}"),
            "description" => format!("annotation {DESCRIPTION_ANNOTATION}"),
            "namespace" => "metadata.namespace".to_owned(),
            field if field.starts_with("upstreams") => upstream_source.clone(),
            other => other.to_owned(),
        };
        format!("{source}: {}", error.reason())
    })?;
    Ok(DiscoveredService {
        name,
        namespace: namespace.to_owned(),
        fields,
    })
}

/// The upstream `host:port` and where it came from, or why there is none.
/// Only the address is checked here; the syntax is the model's.
fn upstream(
    object: &Value,
    annotations: &BTreeMap<&str, &str>,
) -> Result<(String, String), String> {
    if let Some(upstream) = annotations.get(UPSTREAM_ANNOTATION) {
        let source = format!("annotation {UPSTREAM_ANNOTATION}");
        let host = upstream
            .rsplit_once(':')
            .map_or(*upstream, |(host, _)| host);
        if let Some(problem) = host_problem(host) {
            return Err(format!("{source}: {upstream:?} {problem}"));
        }
        return Ok(((*upstream).to_owned(), source));
    }
    let port = match annotations.get(PORT_ANNOTATION) {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0 && !text.starts_with('0'))
            .ok_or_else(|| {
                format!("annotation {PORT_ANNOTATION}: {text:?} is not a port 1-65535")
            })?,
        None => {
            let first = object
                .pointer("/spec/ports/0/port")
                .ok_or("spec.ports is empty; set the annotation fleetreg.io/port")?;
            first
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("spec.ports[0].port: {first} is not a port 1-65535"))?
        }
    };
    let ingress_ip = object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find_map(|i| i.get("ip").and_then(Value::as_str))
        });
    let (address, source) = match ingress_ip {
        Some(ip) => (ip, "status.loadBalancer.ingress[].ip"),
        None => {
            let cluster_ip = object
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty() && *ip != "None")
                .ok_or(
                    "no load-balancer ingress IP and no cluster IP (a headless service); \
                     set the annotation fleetreg.io/upstream",
                )?;
            (cluster_ip, "spec.clusterIP")
        }
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{source}: {address:?} is not an IP address"))?;
    if let Some(problem) = host_problem(address) {
        return Err(format!("{source}: {address:?} {problem}"));
    }
    let upstream = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    Ok((upstream, source.to_owned()))
}

/// Why the edge proxy must not forward to `host`: an address (in any
/// notation) that is loopback, unspecified, multicast, broadcast,
/// link-local or a cloud metadata service, or the name `localhost`.
fn host_problem(host: &str) -> Option<&'static str> {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Some("names this host (localhost)");
    }
    let address = literal_address(host)?;
    let judged = canonical(address);
    let local = match judged {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_multicast(),
    };
    if local {
        return Some("is a loopback, multicast or broadcast address");
    }
    EgressPolicy::default()
        .check(None, address)
        .err()
        .map(|_| "is a link-local, cloud metadata or unspecified address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(annotations: Value, spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "immich", "namespace": "photos", "annotations": annotations},
            "spec": spec,
            "status": status,
        })
    }

    fn exposed(extra: Value) -> Value {
        let mut annotations = json!({EXPOSE_ANNOTATION: "true"});
        if let Some(map) = extra.as_object() {
            for (k, v) in map {
                annotations[k] = v.clone();
            }
        }
        annotations
    }

    fn cluster_ip(ip: &str, port: i64) -> Value {
        json!({"clusterIP": ip, "ports": [{"port": port}, {"port": 9}]})
    }

    #[test]
    fn defaults_come_from_the_service() {
        let object = service(
            exposed(json!({})),
            cluster_ip("172.30.0.7", 2283),
            json!({}),
        );
        assert!(is_exposed(&object));
        let found = discovered(&object).unwrap();
        assert_eq!(found.name.as_str(), "immich");
        assert_eq!(found.namespace, "photos");
        assert_eq!(found.fields.subdomain.as_str(), "immich");
        assert_eq!(found.fields.upstreams[0].as_str(), "172.30.0.7:2283");
        assert_eq!(found.fields.namespace.as_deref(), Some("photos"));
        assert_eq!(found.fields.description, "");
    }

    #[test]
    fn annotations_override_and_the_load_balancer_wins_over_the_cluster_ip() {
        let annotations = exposed(json!({
            NAME_ANNOTATION: "photos-app",
            SUBDOMAIN_ANNOTATION: "photos",
            PORT_ANNOTATION: "8080",
            DESCRIPTION_ANNOTATION: "Photo library",
        }));
        let status = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "2001:db8::5"}]}});
        let object = service(annotations, cluster_ip("172.30.0.7", 2283), status);
        let found = discovered(&object).unwrap();
        assert_eq!(found.name.as_str(), "photos-app");
        assert_eq!(found.fields.subdomain.as_str(), "photos");
        assert_eq!(found.fields.upstreams[0].as_str(), "[2001:db8::5]:8080");
        assert_eq!(found.fields.description, "Photo library");

        let overridden = service(
            exposed(json!({UPSTREAM_ANNOTATION: "immich.photos.svc:2283", PORT_ANNOTATION: "1"})),
            json!({"clusterIP": "None"}),
            json!({}),
        );
        let found = discovered(&overridden).unwrap();
        assert_eq!(found.fields.upstreams[0].as_str(), "immich.photos.svc:2283");
    }

    #[test]
    fn bad_values_are_problems_naming_their_source() {
        let cases = [
            (
                json!({NAME_ANNOTATION: "Not_A_Label"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/name",
            ),
            (
                json!({SUBDOMAIN_ANNOTATION: "a.b"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/subdomain",
            ),
            (
                json!({PORT_ANNOTATION: "70000"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/port",
            ),
            (
                json!({PORT_ANNOTATION: "080"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/port",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "nope"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "127.0.0.1:2019"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "169.254.169.254:80"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "localhost:80"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "2130706433:80"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({UPSTREAM_ANNOTATION: "[::ffff:127.0.0.1]:80"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/upstream",
            ),
            (
                json!({DESCRIPTION_ANNOTATION: "a\nb"}),
                cluster_ip("10.0.0.1", 80),
                "annotation fleetreg.io/description",
            ),
            (
                json!({}),
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
                "no load-balancer ingress IP",
            ),
            (
                json!({}),
                json!({"clusterIP": "10.0.0.1", "ports": []}),
                "spec.ports is empty",
            ),
            (
                json!({}),
                json!({"clusterIP": "10.0.0.1", "ports": [{"port": "80"}]}),
                "spec.ports[0].port",
            ),
            (
                json!({}),
                json!({"clusterIP": "10.0.0.1", "ports": [{"port": 0}]}),
                "spec.ports[0].port",
            ),
            (json!({}), cluster_ip("not-an-ip", 80), "spec.clusterIP"),
            (json!({}), cluster_ip("0.0.0.0", 80), "spec.clusterIP"),
            (json!({}), cluster_ip("224.0.0.1", 80), "spec.clusterIP"),
        ];
        for (extra, spec, source) in cases {
            let object = service(exposed(extra.clone()), spec, json!({}));
            let error = discovered(&object).unwrap_err();
            assert!(error.starts_with(source), "{extra} → {error}");
        }
        let namespace_missing =
            json!({"metadata": {"name": "x", "annotations": exposed(json!({}))}});
        assert!(discovered(&namespace_missing)
            .unwrap_err()
            .contains("metadata.namespace"));
        assert_eq!(service_label(&namespace_missing), "?/x");
    }

    #[test]
    fn only_the_exact_opt_in_counts() {
        for value in [json!("True"), json!("yes"), json!(true), json!("")] {
            let object = service(
                json!({EXPOSE_ANNOTATION: value}),
                cluster_ip("10.0.0.1", 80),
                json!({}),
            );
            assert!(!is_exposed(&object));
        }
        let no_annotations = json!({"metadata": {"name": "a"}});
        assert!(!is_exposed(&no_annotations));
    }
}
