//! Capability discovery (seed 9): GPUs, CNF workloads, the observability stack and
//! the platform version, read from the API server (and Prometheus for DCGM).

use crate::error::Error;
use crate::observability::Observability;
use crate::prober::{join, Prober};
use crate::target::Target;
use fleetreg_model::{Capabilities, ObservabilityCapabilities, FIELD_LIMITS};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
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
        let client = self.kube_client(target)?;
        let kube = |what: &'static str| move |source: kube::Error| Error::kube(what, source);
        let all = ListParams::default();

        let version = async {
            client
                .apiserver_version()
                .await
                .map_err(kube("read /version"))
        };
        let openshift = async {
            let api: Api<DynamicObject> = Api::all_with(
                client.clone(),
                &custom("config.openshift.io", "ClusterVersion", "clusterversions"),
            );
            not_found_as_none(api.get("version").await).map_err(kube("read ClusterVersion"))
        };
        let nodes = async {
            Api::<Node>::all(client.clone())
                .list(&all)
                .await
                .map_err(kube("list nodes"))
        };
        let operator = async {
            let params = ListParams::default().labels("app=gpu-operator").limit(1);
            Api::<Pod>::all(client.clone())
                .list(&params)
                .await
                .map_err(kube("list GPU operator pods"))
        };
        let namespaces = async {
            Api::<Namespace>::all(client.clone())
                .list(&all)
                .await
                .map_err(kube("list namespaces"))
        };
        let sriov = async {
            let resource = custom(
                "sriovnetwork.openshift.io",
                "SriovNetworkNodePolicy",
                "sriovnetworknodepolicies",
            );
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            not_found_as_none(api.list(&all).await)
                .map_err(kube("list SR-IOV network node policies"))
        };
        let ptp = async {
            let api: Api<DynamicObject> = Api::all_with(
                client.clone(),
                &custom("ptp.openshift.io", "PtpConfig", "ptpconfigs"),
            );
            not_found_as_none(api.list(&all).await).map_err(kube("list PTP configs"))
        };
        let services = async {
            let api: Api<Service> = Api::namespaced(client.clone(), "openshift-monitoring");
            api.list(&all)
                .await
                .map_err(kube("list services in openshift-monitoring"))
        };
        let tempo_pods = async {
            Api::<Pod>::namespaced(client.clone(), "observability")
                .list(&all)
                .await
                .map_err(kube("list pods in observability"))
        };
        let loki_pods = async {
            Api::<Pod>::namespaced(client.clone(), "openshift-logging")
                .list(&all)
                .await
                .map_err(kube("list pods in openshift-logging"))
        };
        let dcgm = self.dcgm_gpu_count(target);

        let (
            version,
            openshift,
            nodes,
            operator,
            namespaces,
            sriov,
            ptp,
            services,
            tempo_pods,
            loki_pods,
            dcgm,
        ) = tokio::join!(
            version, openshift, nodes, operator, namespaces, sriov, ptp, services, tempo_pods,
            loki_pods, dcgm
        );
        let (version, openshift, nodes, operator, namespaces) =
            (version?, openshift?, nodes?, operator?, namespaces?);
        let (sriov, ptp, services, tempo_pods, loki_pods) =
            (sriov?, ptp?, services?, tempo_pods?, loki_pods?);

        let mut node_gpus = 0i64;
        let mut gpu_types = BTreeSet::new();
        for node in &nodes.items {
            let gpus = node
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get(GPU_RESOURCE))
                .and_then(|q| q.0.parse::<i64>().ok())
                .unwrap_or(0);
            if gpus > 0 {
                node_gpus += gpus;
                if let Some(product) = node
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(GPU_PRODUCT_LABEL))
                {
                    gpu_types.insert(product.clone());
                }
            }
        }
        let gpu_evidence = GpuEvidence {
            node_gpus,
            gpu_operator: !operator.items.is_empty(),
            dcgm_gpus: dcgm,
        };
        let gpu_count = node_gpus.max(dcgm.unwrap_or(0));

        let namespace_names: Vec<&str> = namespaces
            .items
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let cnf_types: Vec<String> = CNF_PREFIXES
            .iter()
            .filter(|(prefix, _)| namespace_names.iter().any(|n| n.starts_with(prefix)))
            .map(|(_, kind)| (*kind).to_owned())
            .collect();
        let pod_named = |pods: &kube::core::ObjectList<Pod>, prefix: &str| {
            pods.items.iter().any(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
        };
        let observability = ObservabilityCapabilities {
            prometheus: namespace_names.contains(&"openshift-monitoring"),
            thanos: services
                .items
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some("thanos-querier")),
            tempo: pod_named(&tempo_pods, "tempo-"),
            loki: pod_named(&loki_pods, "loki-"),
        };

        let openshift_version = openshift.as_ref().and_then(|cv| {
            cv.data
                .pointer("/status/desired/version")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        let platform_version = openshift_version
            .unwrap_or(version.git_version)
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
    /// not configured, not answering, or without DCGM series. Never fails
    /// discovery.
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
        let body: serde_json::Value = match response {
            Ok(r) if r.status().is_success() => r.json().await.ok()?,
            Ok(r) => {
                tracing::debug!(status = r.status().as_u16(), "DCGM query refused");
                return None;
            }
            Err(error) => {
                tracing::debug!(error = %crate::cause_chain(&error), "DCGM query failed");
                return None;
            }
        };
        body.pointer("/data/result/0/value/1")?
            .as_str()?
            .parse::<f64>()
            .ok()
            .map(|v| v as i64)
    }
}

/// A 404 from the API server (type or object not served) as `None`.
fn not_found_as_none<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}
