//! Capability discovery (seed 9): GPUs, CNF workloads, the observability stack and
//! the platform version, read from the API server (and Prometheus for DCGM).

use crate::error::Error;
use crate::observability::Observability;
use crate::prober::{join, Prober};
use crate::remote::{escape_remote, fetch, list_pages, read_body};
use crate::target::Target;
use fleetreg_model::{Capabilities, ObservabilityCapabilities, FIELD_LIMITS};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{ApiResource, DynamicObject, GetParams, ListParams};
use kube::core::ObjectList;
use kube::Resource;
use std::collections::BTreeSet;
use std::time::Duration;

/// What discovery found.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// The capabilities to store (`discovered_at` set to now).
    pub capabilities: Capabilities,
    /// OpenShift's `ClusterVersion` when present, else the API server's
    /// `gitVersion`; at most 64 characters.
    pub platform_version: Option<String>,
    /// Evidence behind the GPU fields, for logs and operators.
    pub gpu_evidence: GpuEvidence,
}

/// The three GPU signals of seed 9.1, kept apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuEvidence {
    /// Sum of `nvidia.com/gpu` capacity over nodes.
    pub node_gpus: i64,
    /// Pods labelled `app=gpu-operator` exist.
    pub gpu_operator: bool,
    /// `count(DCGM_FI_DEV_GPU_UTIL)` from Prometheus; `None` when Prometheus is not
    /// configured or did not answer.
    pub dcgm_gpus: Option<i64>,
}

/// Namespace prefixes of CNF workloads and the CNF type each names.
const CNF_PREFIXES: [(&str, &str); 3] = [("du-", "vDU"), ("cu-", "vCU"), ("upf-", "UPF")];
const GPU_RESOURCE: &str = "nvidia.com/gpu";
const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
const DCGM_QUERY: &str = "count(DCGM_FI_DEV_GPU_UTIL)";
/// Most distinct GPU products kept (a hostile cluster could label every node
/// differently).
const MAX_GPU_TYPES: usize = 32;
/// Most characters of one GPU product name kept.
const MAX_GPU_TYPE_CHARS: usize = 64;

fn custom(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: "v1".to_owned(),
        api_version: format!("{group}/v1"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

impl Prober {
    /// Discovers a cluster's capabilities (seed 9), every read concurrently, the
    /// whole bounded by `timeout`.
    ///
    /// - GPU: `nvidia.com/gpu` node capacity (count, and `nvidia.com/gpu.product`
    ///   labels for types); GPU operator pods; DCGM's GPU count from Prometheus when
    ///   `prometheus_url` is configured. `gpu_count` is the larger of the node and
    ///   DCGM counts; `has_gpu_nodes` is `gpu_count > 0` (an operator without GPUs
    ///   is only evidence).
    /// - CNF: namespaces `du-*` (vDU), `cu-*` (vCU), `upf-*` (UPF) give `cnf_types`
    ///   and `has_cnf`; `has_sriov` when SR-IOV network node policies exist;
    ///   `has_ptp` when the PTP operator's `PtpConfig` type is served.
    /// - Observability: `openshift-monitoring` namespace (Prometheus),
    ///   `thanos-querier` service there (Thanos), `tempo-*` pods in `observability`,
    ///   `loki-*` pods in `openshift-logging`.
    ///
    /// A custom resource type the cluster does not serve (404) means false, not a
    /// failure. Any other failed read fails discovery.
    pub async fn discover(&self, target: &Target, timeout: Duration) -> Result<Discovery, Error> {
        match tokio::time::timeout(timeout, self.discover_unbounded(target)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { after: timeout }),
        }
    }

    async fn discover_unbounded(&self, target: &Target) -> Result<Discovery, Error> {
        let api = self.api_server(target)?;
        let all = ListParams::default();
        let api = &api;
        let url_of = |resource: &ApiResource, namespace: Option<&str>| {
            DynamicObject::url_path(resource, namespace)
        };

        let version = async {
            let request = http::Request::get("/version")
                .body(Vec::new())
                .map_err(kube::core::request::Error::BuildRequest);
            fetch::<Info>(api, request, "read /version").await
        };
        let openshift = async {
            let resource = custom("config.openshift.io", "ClusterVersion", "clusterversions");
            let request = kube::core::Request::new(url_of(&resource, None))
                .get("version", &GetParams::default());
            not_found_as_none(fetch::<DynamicObject>(api, request, "read ClusterVersion").await)
        };
        let nodes = async {
            let mut node_gpus = 0i64;
            let mut gpu_types = BTreeSet::new();
            let url = Node::url_path(&(), None);
            list_pages(api, &url, &all, "list nodes", |page: Vec<Node>| {
                for node in page {
                    let (gpus, product) = node_gpus_of(&node);
                    if gpus > 0 {
                        node_gpus = node_gpus.saturating_add(gpus);
                        if let Some(product) = product {
                            if gpu_types.len() < MAX_GPU_TYPES {
                                gpu_types.insert(product);
                            }
                        }
                    }
                }
            })
            .await
            .map(|()| (node_gpus, gpu_types))
        };
        let operator = async {
            let params = ListParams::default().labels("app=gpu-operator").limit(1);
            let request = kube::core::Request::new(Pod::url_path(&(), None)).list(&params);
            fetch::<ObjectList<Pod>>(api, request, "list GPU operator pods")
                .await
                .map(|list| !list.items.is_empty())
        };
        let namespaces = async {
            let mut cnf = [false; CNF_PREFIXES.len()];
            let mut monitoring = false;
            let url = Namespace::url_path(&(), None);
            list_pages(
                api,
                &url,
                &all,
                "list namespaces",
                |page: Vec<Namespace>| {
                    for name in page.iter().filter_map(|n| n.metadata.name.as_deref()) {
                        for (seen, (prefix, _)) in cnf.iter_mut().zip(CNF_PREFIXES) {
                            *seen |= name.starts_with(prefix);
                        }
                        monitoring |= name == "openshift-monitoring";
                    }
                },
            )
            .await
            .map(|()| (cnf, monitoring))
        };
        let sriov = async {
            let resource = custom(
                "sriovnetwork.openshift.io",
                "SriovNetworkNodePolicy",
                "sriovnetworknodepolicies",
            );
            let request =
                kube::core::Request::new(url_of(&resource, None)).list(&all.clone().limit(1));
            let what = "list SR-IOV network node policies";
            not_found_as_none(fetch::<ObjectList<DynamicObject>>(api, request, what).await)
        };
        let ptp = async {
            let resource = custom("ptp.openshift.io", "PtpConfig", "ptpconfigs");
            let request =
                kube::core::Request::new(url_of(&resource, None)).list(&all.clone().limit(1));
            not_found_as_none(
                fetch::<ObjectList<DynamicObject>>(api, request, "list PTP configs").await,
            )
        };
        let named = |url: String, what: &'static str, prefix: &'static str, exact: bool| async move {
            let mut found = false;
            list_pages(
                api,
                &url,
                &ListParams::default(),
                what,
                |page: Vec<DynamicObject>| {
                    found |= page
                        .iter()
                        .filter_map(|o| o.metadata.name.as_deref())
                        .any(|n| {
                            if exact {
                                n == prefix
                            } else {
                                n.starts_with(prefix)
                            }
                        });
                },
            )
            .await
            .map(|()| found)
        };
        let thanos = named(
            Service::url_path(&(), Some("openshift-monitoring")),
            "list services in openshift-monitoring",
            "thanos-querier",
            true,
        );
        let tempo = named(
            Pod::url_path(&(), Some("observability")),
            "list pods in observability",
            "tempo-",
            false,
        );
        let loki = named(
            Pod::url_path(&(), Some("openshift-logging")),
            "list pods in openshift-logging",
            "loki-",
            false,
        );
        let dcgm = self.dcgm_gpu_count(target);

        // `/version` first, alone: an API server that does not answer it fails
        // the discovery, and the other ten calls are not made (an unreachable
        // cluster costs one connection attempt, not eleven).
        let version = version.await.inspect_err(|error| {
            tracing::debug!(%error, "discovery stopped: the API server did not answer /version");
        })?;
        let (openshift, nodes, operator, namespaces, sriov, ptp, thanos, tempo, loki, dcgm) = tokio::join!(
            openshift, nodes, operator, namespaces, sriov, ptp, thanos, tempo, loki, dcgm
        );
        let (openshift, (node_gpus, gpu_types), gpu_operator, (cnf, monitoring)) =
            (openshift?, nodes?, operator?, namespaces?);
        let (sriov, ptp, thanos, tempo, loki) = (sriov?, ptp?, thanos?, tempo?, loki?);

        let gpu_evidence = GpuEvidence {
            node_gpus,
            gpu_operator,
            dcgm_gpus: dcgm,
        };
        let gpu_count = node_gpus.max(dcgm.unwrap_or(0));

        let cnf_types: Vec<String> = CNF_PREFIXES
            .iter()
            .zip(cnf)
            .filter(|(_, seen)| *seen)
            .map(|((_, kind), _)| (*kind).to_owned())
            .collect();
        let observability = ObservabilityCapabilities {
            prometheus: monitoring,
            thanos,
            tempo,
            loki,
        };

        let openshift_version = openshift.as_ref().and_then(|cv| {
            cv.data
                .pointer("/status/desired/version")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        // Remote text: escaped before it is stored, then cut to the field.
        let platform_version = escape_remote(&openshift_version.unwrap_or(version.git_version))
            .chars()
            .take(FIELD_LIMITS.platform_version)
            .collect::<String>();

        Ok(Discovery {
            capabilities: Capabilities {
                has_gpu_nodes: gpu_count > 0,
                gpu_count,
                gpu_types: gpu_types.into_iter().collect(),
                has_cnf: !cnf_types.is_empty(),
                cnf_types,
                has_sriov: sriov.is_some_and(|list| !list.items.is_empty()),
                has_ptp: ptp.is_some(),
                observability,
                discovered_at: Some(fleetreg_model::now()),
            },
            platform_version: Some(platform_version).filter(|v| !v.is_empty()),
            gpu_evidence,
        })
    }

    /// `count(DCGM_FI_DEV_GPU_UTIL)` from Prometheus (with its token); `None` when
    /// not configured, not answering, answering more than `max_response_bytes`,
    /// or without DCGM series. Never fails discovery.
    async fn dcgm_gpu_count(&self, target: &Target) -> Option<i64> {
        let prometheus = Observability::Prometheus;
        let url = join(prometheus.base(target)?, "/api/v1/query");
        let request = match self.get(target, &url, prometheus.token(target)) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, "DCGM query not sent");
                return None;
            }
        };
        let response = request.query(&[("query", DCGM_QUERY)]).send().await;
        let body = match response {
            Ok(r) if r.status().is_success() => {
                match read_body(r, self.max_response_bytes(), "DCGM query").await {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::debug!(%error, "DCGM answer not read");
                        return None;
                    }
                }
            }
            Ok(r) => {
                tracing::debug!(status = r.status().as_u16(), "DCGM query refused");
                return None;
            }
            Err(error) => {
                tracing::debug!(error = %crate::cause_chain(&error), "DCGM query failed");
                return None;
            }
        };
        let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
        body.pointer("/data/result/0/value/1")?
            .as_str()?
            .parse::<f64>()
            .ok()
            .map(|v| v as i64)
    }
}

/// A node's `nvidia.com/gpu` capacity and its `nvidia.com/gpu.product` label
/// (escaped and cut to 64 characters: it is stored).
fn node_gpus_of(node: &Node) -> (i64, Option<String>) {
    let gpus = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get(GPU_RESOURCE))
        .and_then(|q| q.0.parse::<i64>().ok())
        .unwrap_or(0);
    let product = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(GPU_PRODUCT_LABEL))
        .map(|p| escape_remote(p).chars().take(MAX_GPU_TYPE_CHARS).collect());
    (gpus, product)
}

/// A 404 from the API server (type or object not served) as `None`.
fn not_found_as_none<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Kube {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}
