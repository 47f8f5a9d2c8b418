//! What a simulated cluster holds ([`ClusterSpec`]) and how it misbehaves
//! ([`Faults`]); both are JSON bodies of the admin API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The contents of one simulated cluster. Every field has a default, so `{}` is a
/// small healthy cluster with three nodes and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Nodes in total (GPU nodes included).
    pub nodes: u32,
    /// GPUs in total, spread over `gpu_nodes` nodes as `nvidia.com/gpu` capacity.
    pub gpu_count: u32,
    /// Nodes carrying GPUs; 0 means one node per 8 GPUs (at least one when
    /// `gpu_count > 0`).
    pub gpu_nodes: u32,
    /// Product name in the `nvidia.com/gpu.product` node label.
    pub gpu_type: String,
    /// NVIDIA GPU operator pods in `nvidia-gpu-operator`.
    pub gpu_operator: bool,
    /// DCGM exporter: Prometheus answers `DCGM_FI_DEV_GPU_UTIL` with one sample per GPU.
    pub dcgm: bool,
    /// CNF namespaces, e.g. `du-site1`, `cu-site1`, `upf-core`.
    pub cnf_namespaces: Vec<String>,
    /// SR-IOV network node policies in `openshift-sriov-network-operator`; 0 means
    /// the CRD is not installed (its URLs answer 404).
    pub sriov_policies: u32,
    /// PTP operator installed: the `ptp.openshift.io` CRD exists with one `PtpConfig`
    /// in `openshift-ptp`; otherwise its URLs answer 404.
    pub ptp: bool,
    /// Observability components present as namespaces, services and pods.
    pub observability: ObservabilitySpec,
    /// `gitVersion` served at `/version`.
    pub kubernetes_version: String,
    /// When set, an OpenShift `ClusterVersion` named `version` reports it.
    pub openshift_version: Option<String>,
    /// When set, API server requests must carry `Authorization: Bearer <token>`
    /// (or another credential the cluster accepts); others get 401. The older,
    /// single-token form of [`AuthSpec`](crate::AuthSpec) (`required` plus one
    /// entry of `tokens`).
    pub token: Option<String>,
    /// Kubernetes `Service`s besides those the observability components
    /// imply (a declared one replaces an implied one of the same namespace
    /// and name); their namespaces exist too. Changed at run time with
    /// `PUT`/`DELETE /admin/clusters/{name}/services/{ns}/{svc}`.
    pub services: Vec<ServiceSpec>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            gpu_count: 0,
            gpu_nodes: 0,
            gpu_type: "NVIDIA-A100-SXM4-80GB".to_owned(),
            gpu_operator: false,
            dcgm: false,
            cnf_namespaces: Vec::new(),
            sriov_policies: 0,
            ptp: false,
            observability: ObservabilitySpec::default(),
            kubernetes_version: "v1.29.4".to_owned(),
            openshift_version: None,
            token: None,
            services: Vec::new(),
        }
    }
}

impl ClusterSpec {
    /// A deterministic mixed fleet for demos and load: every cluster runs
    /// OpenShift with Prometheus; every 4th has GPUs (operator + DCGM), every 5th
    /// runs CNFs (du-/cu- namespaces, SR-IOV, PTP); Thanos, Tempo and Loki vary.
    pub fn sample(index: usize) -> ClusterSpec {
        const GPU_TYPES: [&str; 3] = ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "Tesla-T4"];
        let mut spec = ClusterSpec {
            openshift_version: Some("4.15.12".to_owned()),
            kubernetes_version: "v1.28.9+416ecaf".to_owned(),
            observability: ObservabilitySpec {
                prometheus: true,
                thanos: index.is_multiple_of(2),
                tempo: index.is_multiple_of(3),
                loki: !index.is_multiple_of(2),
            },
            ..ClusterSpec::default()
        };
        if index.is_multiple_of(4) {
            spec.gpu_count = 8 * (1 + (index / 4 % 3) as u32);
            spec.gpu_type = GPU_TYPES[index / 4 % 3].to_owned();
            spec.gpu_operator = true;
            spec.dcgm = true;
        }
        if index.is_multiple_of(5) {
            spec.cnf_namespaces = vec![format!("du-site{index}"), format!("cu-site{index}")];
            spec.sriov_policies = 2;
            spec.ptp = true;
        }
        spec
    }

    /// Why the declared services cannot be served: a namespace or name that is
    /// not a DNS label, or a namespace and name declared twice.
    pub(crate) fn services_problem(&self) -> Option<String> {
        let mut seen = std::collections::BTreeSet::new();
        for service in &self.services {
            if let Some(problem) = service.name_problem() {
                return Some(problem);
            }
            if !seen.insert((&service.namespace, &service.name)) {
                return Some(format!(
                    "service {}/{} is declared twice",
                    service.namespace, service.name
                ));
            }
        }
        None
    }

    /// The GPU count of each GPU node (the first nodes take the remainder).
    pub fn gpus_per_node(&self) -> Vec<u32> {
        if self.gpu_count == 0 {
            return Vec::new();
        }
        let n_nodes = if self.gpu_nodes == 0 {
            self.gpu_count.div_ceil(8)
        } else {
            self.gpu_nodes.min(self.gpu_count)
        };
        let base = self.gpu_count / n_nodes;
        let extra = self.gpu_count % n_nodes;
        (0..n_nodes).map(|i| base + u32::from(i < extra)).collect()
    }
}

/// One Kubernetes `Service` of a simulated cluster, as the API server lists it
/// (`metadata{name, namespace, annotations, labels, resourceVersion}`,
/// `spec{type, clusterIP, ports}`, `status.loadBalancer.ingress[{ip}]`).
///
/// Only the names are checked (DNS labels, unique per cluster): ports,
/// addresses and annotations are served as given, so a test can hand the
/// probe what a broken or hostile cluster would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Its namespace (a DNS label). In the body of
    /// `PUT /admin/clusters/{name}/services/{ns}/{svc}` it may be left out;
    /// when given it must equal the path's.
    #[serde(default)]
    pub namespace: String,
    /// Its name (a DNS label); like `namespace` in a `PUT` body.
    #[serde(default)]
    pub name: String,
    /// `spec.type`: `ClusterIP` (the default), `NodePort`, `LoadBalancer`, ….
    #[serde(default = "cluster_ip_type", rename = "type")]
    pub service_type: String,
    /// `spec.clusterIP`; a stable address in `172.30.0.0/16` derived from the
    /// namespace and name when absent.
    #[serde(default)]
    pub cluster_ip: Option<String>,
    /// `spec.ports`, in order.
    #[serde(default)]
    pub ports: Vec<ServicePortSpec>,
    /// `metadata.annotations` (e.g. `fleetreg.io/expose: "true"`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.labels` (matched by `labelSelector`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `status.loadBalancer.ingress[].ip`, in order.
    #[serde(default)]
    pub load_balancer_ips: Vec<String>,
}

impl ServiceSpec {
    /// Why its namespace or name cannot be served (not a DNS label).
    pub(crate) fn name_problem(&self) -> Option<String> {
        for (what, text) in [("namespace", &self.namespace), ("name", &self.name)] {
            let ok = !text.is_empty()
                && text.len() <= 63
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !text.starts_with('-')
                && !text.ends_with('-');
            if !ok {
                return Some(format!(
                    "service {what} {text:?} is not a DNS label (1-63 of a-z, 0-9 and '-')"
                ));
            }
        }
        None
    }
}

fn cluster_ip_type() -> String {
    "ClusterIP".to_owned()
}

/// One entry of a Service's `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortSpec {
    /// `name` (left out of the object when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// `port` (not range-checked: see [`ServiceSpec`]).
    pub port: i32,
    /// `targetPort`, a number or a container port's name; `port` when absent.
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    /// `protocol`; `TCP` when absent.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "TCP".to_owned()
}

/// A Service port's `targetPort`: Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number.
    Number(i32),
    /// The name of a container port.
    Name(String),
}

/// Observability components a cluster runs (what discovery should find).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilitySpec {
    /// `openshift-monitoring` with `prometheus-k8s-*` pods.
    pub prometheus: bool,
    /// `thanos-querier` service in `openshift-monitoring`.
    pub thanos: bool,
    /// `tempo-*` pods in `observability`.
    pub tempo: bool,
    /// `loki-*` pods in `openshift-logging`.
    pub loki: bool,
}

/// Faults of one simulated cluster, changeable at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every API server request answers 503.
    pub api_down: bool,
    /// Every API server request waits this long before answering.
    pub api_latency_ms: u64,
    /// Prometheus `/-/ready` and queries answer 503.
    pub prometheus_down: bool,
    /// Tempo `/ready` answers 503.
    pub tempo_down: bool,
    /// Loki `/ready` answers 503.
    pub loki_down: bool,
    /// The TokenRequest API answers 500 (for credential-rotation failure tests).
    /// Set it with `{"token_request_fail": true}` in the body of `PATCH …/faults`
    /// or [`SimAdmin::set_token_request_fault`](crate::SimAdmin::set_token_request_fault);
    /// it is not a field of [`FaultsPatch`], whose struct literals elsewhere list
    /// every field.
    pub token_request_fail: bool,
    /// The longest token the TokenRequest API issues (like kube-apiserver's
    /// `--service-account-max-token-expiration`): longer requests are capped
    /// silently. Set it with `{"token_request_max_seconds": N}` (`null`: no
    /// cap) in the body of `PATCH …/faults` or
    /// [`SimAdmin::set_token_request_max_seconds`](crate::SimAdmin::set_token_request_max_seconds);
    /// not a field of [`FaultsPatch`] either.
    pub token_request_max_seconds: Option<i64>,
    /// When non-zero, every API server `GET` (`/version`, namespaces, nodes,
    /// …) and Prometheus (`-/ready`, queries) answers 200 with a body of this
    /// many bytes, generated while it is sent (never held in memory) and
    /// without `Content-Length`, so only a client counting while it reads can
    /// stop early. Set it with `{"huge_body_bytes": N}` in `PATCH …/faults` or
    /// [`SimAdmin::set_huge_body`](crate::SimAdmin::set_huge_body); not a field
    /// of [`FaultsPatch`].
    pub huge_body_bytes: u64,
    /// When set, every API server `GET` answers 200 with this text as its
    /// body, verbatim (a cluster whose answers do not decode, or that tries
    /// to forge log lines). Set it with `{"raw_body": "…"}` in `PATCH …/faults`
    /// or [`SimAdmin::set_raw_body`](crate::SimAdmin::set_raw_body); not a
    /// field of [`FaultsPatch`].
    pub raw_body: Option<String>,
}

/// A partial [`Faults`]: fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// See [`Faults::api_down`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_down: Option<bool>,
    /// See [`Faults::api_latency_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_latency_ms: Option<u64>,
    /// See [`Faults::prometheus_down`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_down: Option<bool>,
    /// See [`Faults::tempo_down`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_down: Option<bool>,
    /// See [`Faults::loki_down`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki_down: Option<bool>,
}

impl FaultsPatch {
    /// Applies the fields that are present.
    pub fn apply(&self, faults: &mut Faults) {
        if let Some(v) = self.api_down {
            faults.api_down = v;
        }
        if let Some(v) = self.api_latency_ms {
            faults.api_latency_ms = v;
        }
        if let Some(v) = self.prometheus_down {
            faults.prometheus_down = v;
        }
        if let Some(v) = self.tempo_down {
            faults.tempo_down = v;
        }
        if let Some(v) = self.loki_down {
            faults.loki_down = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_spread_over_nodes() {
        let spec = |gpu_count, gpu_nodes| ClusterSpec {
            gpu_count,
            gpu_nodes,
            ..ClusterSpec::default()
        };
        assert_eq!(spec(0, 0).gpus_per_node(), Vec::<u32>::new());
        assert_eq!(spec(4, 0).gpus_per_node(), vec![4]);
        assert_eq!(spec(20, 0).gpus_per_node(), vec![7, 7, 6]);
        assert_eq!(spec(5, 2).gpus_per_node(), vec![3, 2]);
        assert_eq!(spec(2, 5).gpus_per_node(), vec![1, 1]);
    }

    #[test]
    fn faults_patch_keeps_absent_fields() {
        let mut faults = Faults {
            api_down: true,
            loki_down: true,
            ..Faults::default()
        };
        let patch: FaultsPatch =
            serde_json::from_str(r#"{"api_down": false, "api_latency_ms": 50}"#).unwrap();
        patch.apply(&mut faults);
        assert_eq!(
            faults,
            Faults {
                api_latency_ms: 50,
                loki_down: true,
                ..Faults::default()
            }
        );
    }
}
