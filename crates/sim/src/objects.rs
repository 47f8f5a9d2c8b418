//! The Kubernetes objects a [`ClusterSpec`] implies, as the JSON a real API server
//! returns (`kind`, `apiVersion`, `metadata`, `spec`, `status`). Built per request:
//! ten thousand clusters cost nothing while nobody asks.

use crate::spec::{ClusterSpec, ServiceSpec, TargetPort};
use serde_json::{json, Map, Value};

/// Namespace of the NVIDIA GPU operator.
pub const GPU_OPERATOR_NAMESPACE: &str = "nvidia-gpu-operator";
/// Namespace of the OpenShift monitoring stack (Prometheus, Thanos querier).
pub const MONITORING_NAMESPACE: &str = "openshift-monitoring";
/// Namespace of Tempo.
pub const TEMPO_NAMESPACE: &str = "observability";
/// Namespace of Loki.
pub const LOKI_NAMESPACE: &str = "openshift-logging";
/// Namespace of the SR-IOV network operator.
pub const SRIOV_NAMESPACE: &str = "openshift-sriov-network-operator";
/// Namespace of the PTP operator.
pub const PTP_NAMESPACE: &str = "openshift-ptp";

const CREATED: &str = "2024-01-01T00:00:00Z";

/// A namespaced object with the labels a selector matches against.
pub struct Namespaced {
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// The full object.
    pub object: Value,
}

fn metadata(name: &str, namespace: Option<&str>, labels: &[(String, String)]) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    let uid_seed = format!("{}/{name}", namespace.unwrap_or(""));
    meta.insert("uid".into(), json!(fake_uid(&uid_seed)));
    meta.insert("resourceVersion".into(), json!("1"));
    meta.insert("creationTimestamp".into(), json!(CREATED));
    if !labels.is_empty() {
        let map: Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        meta.insert("labels".into(), Value::Object(map));
    }
    Value::Object(meta)
}

/// A stable UUID-shaped id derived from a string (FNV-1a), so objects keep their
/// uid across requests.
fn fake_uid(seed: &str) -> String {
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for byte in seed.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Names of every namespace, in the order listed.
pub fn namespace_names(spec: &ClusterSpec) -> Vec<String> {
    let mut names: Vec<String> = ["default", "kube-system", "kube-public", "kube-node-lease"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let obs = &spec.observability;
    let mut add = |present: bool, name: &str| {
        if present && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    add(obs.prometheus || obs.thanos, MONITORING_NAMESPACE);
    add(obs.tempo, TEMPO_NAMESPACE);
    add(obs.loki, LOKI_NAMESPACE);
    add(spec.gpu_operator, GPU_OPERATOR_NAMESPACE);
    add(spec.sriov_policies > 0, SRIOV_NAMESPACE);
    add(spec.ptp, PTP_NAMESPACE);
    for ns in &spec.cnf_namespaces {
        add(true, ns);
    }
    for service in &spec.services {
        add(true, &service.namespace);
    }
    names
}

/// One `Namespace`.
pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(name, None, &labels(&[("kubernetes.io/metadata.name", name)])),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// Every `Node`: GPU nodes first (`nvidia.com/gpu` capacity and GPU labels), then
/// plain workers up to `spec.nodes`.
pub fn nodes(spec: &ClusterSpec) -> Vec<Value> {
    let gpus = spec.gpus_per_node();
    let total = (spec.nodes as usize).max(gpus.len());
    (0..total)
        .map(|i| {
            let name = format!("worker-{i}");
            let mut node_labels = labels(&[
                ("kubernetes.io/hostname", &name),
                ("kubernetes.io/os", "linux"),
                ("node-role.kubernetes.io/worker", ""),
            ]);
            let (cpu, memory) = if gpus.get(i).is_some() {
                ("64", "512Gi")
            } else {
                ("16", "64Gi")
            };
            let mut capacity = json!({"cpu": cpu, "memory": memory, "pods": "250"});
            if let Some(count) = gpus.get(i) {
                node_labels.extend(labels(&[
                    ("nvidia.com/gpu.present", "true"),
                    ("nvidia.com/gpu.product", &spec.gpu_type),
                    ("nvidia.com/gpu.count", &count.to_string()),
                ]));
                capacity["nvidia.com/gpu"] = json!(count.to_string());
            }
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": metadata(&name, None, &node_labels),
                "spec": {},
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": [{
                        "type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED,
                    }],
                    "nodeInfo": {
                        "kubeletVersion": spec.kubernetes_version,
                        "architecture": "amd64", "operatingSystem": "linux",
                        "containerRuntimeVersion": "cri-o://1.29.4",
                        "kernelVersion": "5.14.0", "kubeProxyVersion": spec.kubernetes_version,
                        "machineID": "", "systemUUID": "", "bootID": "", "osImage": "Linux",
                    },
                },
            })
        })
        .collect()
}

fn pod(name: &str, namespace: &str, pod_labels: Vec<(String, String)>, node: &str) -> Namespaced {
    let object = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, Some(namespace), &pod_labels),
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": format!("registry.example/{name}:latest")}],
        },
        "status": {"phase": "Running", "podIP": "10.128.0.10"},
    });
    Namespaced {
        namespace: namespace.to_owned(),
        labels: pod_labels,
        object,
    }
}

/// Every `Pod` the spec implies.
pub fn pods(spec: &ClusterSpec) -> Vec<Namespaced> {
    let mut out = vec![pod(
        "coredns-0",
        "kube-system",
        labels(&[("k8s-app", "kube-dns")]),
        "worker-0",
    )];
    let obs = &spec.observability;
    if obs.prometheus {
        for i in 0..2 {
            let l = labels(&[
                ("app.kubernetes.io/name", "prometheus"),
                ("prometheus", "k8s"),
            ]);
            out.push(pod(
                &format!("prometheus-k8s-{i}"),
                MONITORING_NAMESPACE,
                l,
                "worker-0",
            ));
        }
    }
    if obs.thanos {
        let l = labels(&[("app.kubernetes.io/name", "thanos-query")]);
        out.push(pod(
            "thanos-querier-6d4f8-x2kqp",
            MONITORING_NAMESPACE,
            l,
            "worker-0",
        ));
    }
    if obs.tempo {
        for name in [
            "tempo-distributor-5c9b7-k8w2z",
            "tempo-ingester-0",
            "tempo-query-frontend-0",
        ] {
            let l = labels(&[("app.kubernetes.io/name", "tempo")]);
            out.push(pod(name, TEMPO_NAMESPACE, l, "worker-0"));
        }
    }
    if obs.loki {
        for name in [
            "loki-distributor-7b8c9-q4m5n",
            "loki-ingester-0",
            "loki-querier-0",
        ] {
            let l = labels(&[("app.kubernetes.io/name", "loki")]);
            out.push(pod(name, LOKI_NAMESPACE, l, "worker-0"));
        }
    }
    if spec.gpu_operator {
        let l = labels(&[
            ("app", "gpu-operator"),
            ("app.kubernetes.io/component", "gpu-operator"),
        ]);
        out.push(pod(
            "gpu-operator-7f9c8-abcde",
            GPU_OPERATOR_NAMESPACE,
            l,
            "worker-0",
        ));
        for (i, _) in spec.gpus_per_node().iter().enumerate() {
            let node = format!("worker-{i}");
            let l = labels(&[("app", "nvidia-device-plugin-daemonset")]);
            out.push(pod(
                &format!("nvidia-device-plugin-daemonset-{i}"),
                GPU_OPERATOR_NAMESPACE,
                l,
                &node,
            ));
            if spec.dcgm {
                let l = labels(&[("app", "nvidia-dcgm-exporter")]);
                out.push(pod(
                    &format!("nvidia-dcgm-exporter-{i}"),
                    GPU_OPERATOR_NAMESPACE,
                    l,
                    &node,
                ));
            }
        }
    }
    for ns in &spec.cnf_namespaces {
        let l = labels(&[("app", ns)]);
        out.push(pod(&format!("{ns}-app-0"), ns, l, "worker-0"));
    }
    out
}

fn service(name: &str, namespace: &str, port: u16) -> Namespaced {
    let l = labels(&[("app.kubernetes.io/name", name)]);
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, Some(namespace), &l),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "172.30.0.10",
            "ports": [{"name": "web", "port": port, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {}},
    });
    Namespaced {
        namespace: namespace.to_owned(),
        labels: l,
        object,
    }
}

/// A declared [`ServiceSpec`] as the API server lists it.
pub fn declared_service(declared: &ServiceSpec) -> Namespaced {
    let (ns, name) = (declared.namespace.as_str(), declared.name.as_str());
    let labels: Vec<(String, String)> = declared
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut meta = metadata(name, Some(ns), &labels);
    if !declared.annotations.is_empty() {
        meta["annotations"] = json!(declared.annotations);
    }
    // Changes whenever the declaration does, like a real resourceVersion.
    let content = serde_json::to_string(declared).unwrap_or_default();
    meta["resourceVersion"] = json!(stable_hash(&content).to_string());
    let ports: Vec<Value> = declared
        .ports
        .iter()
        .map(|p| {
            let mut port = Map::new();
            if let Some(name) = &p.name {
                port.insert("name".into(), json!(name));
            }
            port.insert("protocol".into(), json!(p.protocol));
            port.insert("port".into(), json!(p.port));
            let target = match &p.target_port {
                None => json!(p.port),
                Some(TargetPort::Number(n)) => json!(n),
                Some(TargetPort::Name(name)) => json!(name),
            };
            port.insert("targetPort".into(), target);
            Value::Object(port)
        })
        .collect();
    let cluster_ip = declared.cluster_ip.clone().unwrap_or_else(|| {
        let h = stable_hash(&format!("{ns}/{name}"));
        format!("172.30.{}.{}", (h >> 8) & 0xff, (h & 0xff).max(1))
    });
    let ingress: Vec<Value> = declared
        .load_balancer_ips
        .iter()
        .map(|ip| json!({"ip": ip}))
        .collect();
    let load_balancer = if ingress.is_empty() {
        json!({})
    } else {
        json!({"ingress": ingress})
    };
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": declared.service_type,
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": ports,
        },
        "status": {"loadBalancer": load_balancer},
    });
    Namespaced {
        namespace: ns.to_owned(),
        labels,
        object,
    }
}

/// A stable 64-bit FNV-1a hash of `text`.
fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

/// Every `Service`, by namespace and name: those the spec implies (the API
/// server's `kubernetes`, the observability components') and the declared
/// ones ([`ClusterSpec::services`]), which replace an implied one of the same
/// namespace and name.
pub fn services(spec: &ClusterSpec) -> Vec<Namespaced> {
    let declared = |ns: &str, name: &str| {
        spec.services
            .iter()
            .any(|s| s.namespace == ns && s.name == name)
    };
    let mut out = implied_services(spec);
    out.retain(|s| {
        let name = s.object["metadata"]["name"].as_str().unwrap_or_default();
        !declared(&s.namespace, name)
    });
    out.extend(spec.services.iter().map(declared_service));
    // In key order, as an API server lists from etcd.
    out.sort_by(|a, b| {
        let name = |s: &Namespaced| s.object["metadata"]["name"].as_str().map(str::to_owned);
        (&a.namespace, name(a)).cmp(&(&b.namespace, name(b)))
    });
    out
}

fn implied_services(spec: &ClusterSpec) -> Vec<Namespaced> {
    let mut out = vec![service("kubernetes", "default", 443)];
    let obs = &spec.observability;
    if obs.prometheus {
        out.push(service("prometheus-k8s", MONITORING_NAMESPACE, 9091));
    }
    if obs.thanos {
        out.push(service("thanos-querier", MONITORING_NAMESPACE, 9091));
    }
    if obs.tempo {
        out.push(service("tempo-query-frontend", TEMPO_NAMESPACE, 3200));
    }
    if obs.loki {
        out.push(service("loki-gateway-http", LOKI_NAMESPACE, 8080));
    }
    out
}

/// Every `SriovNetworkNodePolicy` (group `sriovnetwork.openshift.io/v1`).
pub fn sriov_policies(spec: &ClusterSpec) -> Vec<Namespaced> {
    (0..spec.sriov_policies)
        .map(|i| {
            let name = format!("policy-ens1f{i}");
            let object = json!({
                "apiVersion": "sriovnetwork.openshift.io/v1",
                "kind": "SriovNetworkNodePolicy",
                "metadata": metadata(&name, Some(SRIOV_NAMESPACE), &[]),
                "spec": {
                    "resourceName": format!("sriovnic{i}"),
                    "numVfs": 8,
                    "deviceType": "netdevice",
                    "priority": 99,
                    "nicSelector": {"pfNames": [format!("ens1f{i}")]},
                    "nodeSelector": {"feature.node.kubernetes.io/network-sriov.capable": "true"},
                },
            });
            Namespaced {
                namespace: SRIOV_NAMESPACE.to_owned(),
                labels: Vec::new(),
                object,
            }
        })
        .collect()
}

/// Every `PtpConfig` (group `ptp.openshift.io/v1`).
pub fn ptp_configs(spec: &ClusterSpec) -> Vec<Namespaced> {
    if !spec.ptp {
        return Vec::new();
    }
    let object = json!({
        "apiVersion": "ptp.openshift.io/v1",
        "kind": "PtpConfig",
        "metadata": metadata("du-ptp-slave", Some(PTP_NAMESPACE), &[]),
        "spec": {"profile": [{"name": "slave", "interface": "ens5f0", "ptp4lOpts": "-2 -s"}]},
    });
    vec![Namespaced {
        namespace: PTP_NAMESPACE.to_owned(),
        labels: Vec::new(),
        object,
    }]
}

/// The OpenShift `ClusterVersion` named `version`, when the spec has one.
pub fn cluster_version(spec: &ClusterSpec) -> Option<Value> {
    let version = spec.openshift_version.as_deref()?;
    Some(json!({
        "apiVersion": "config.openshift.io/v1",
        "kind": "ClusterVersion",
        "metadata": metadata("version", None, &[]),
        "spec": {"channel": "stable-4.15", "clusterID": fake_uid("cluster-id")},
        "status": {
            "desired": {"version": version, "image": format!("quay.io/openshift-release-dev/ocp-release:{version}")},
            "history": [{"state": "Completed", "version": version, "startedTime": CREATED, "completionTime": CREATED}],
        },
    }))
}

/// `/version`.
pub fn version(spec: &ClusterSpec) -> Value {
    let git = &spec.kubernetes_version;
    let trimmed = git.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": CREATED,
        "goVersion": "go1.21.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// A `List` of `kind` holding `items`.
pub fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "1"},
        "items": items,
    })
}

/// A `Status` failure body, as the API server sends with 4xx/5xx.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ObservabilitySpec;

    #[test]
    fn gpu_nodes_carry_capacity_and_labels() {
        let spec = ClusterSpec {
            gpu_count: 10,
            nodes: 1,
            ..ClusterSpec::default()
        };
        let nodes = nodes(&spec);
        assert_eq!(
            nodes.len(),
            2,
            "GPU nodes are added when nodes is too small"
        );
        assert_eq!(nodes[0]["status"]["capacity"]["nvidia.com/gpu"], "5");
        assert_eq!(
            nodes[0]["metadata"]["labels"]["nvidia.com/gpu.product"],
            spec.gpu_type
        );
    }

    #[test]
    fn namespaces_follow_the_spec() {
        let spec = ClusterSpec {
            cnf_namespaces: vec!["du-a".into(), "upf-b".into()],
            observability: ObservabilitySpec {
                loki: true,
                ..ObservabilitySpec::default()
            },
            ..ClusterSpec::default()
        };
        let names = namespace_names(&spec);
        assert!(names.contains(&"du-a".to_owned()) && names.contains(&LOKI_NAMESPACE.to_owned()));
        assert!(!names.contains(&MONITORING_NAMESPACE.to_owned()));
        assert_eq!(version(&spec)["minor"], "29");
        assert_eq!(fake_uid("a"), fake_uid("a"));
    }

    #[test]
    fn declared_services_replace_implied_ones_and_get_an_address() {
        let declared = |namespace: &str, name: &str| ServiceSpec {
            namespace: namespace.into(),
            name: name.into(),
            service_type: "ClusterIP".into(),
            cluster_ip: None,
            ports: Vec::new(),
            annotations: Default::default(),
            labels: Default::default(),
            load_balancer_ips: Vec::new(),
        };
        let spec = ClusterSpec {
            services: vec![declared("default", "kubernetes"), declared("apps", "web")],
            ..ClusterSpec::default()
        };
        let all = services(&spec);
        assert_eq!(
            all.len(),
            2,
            "the declared kubernetes service replaced the implied one"
        );
        assert_eq!(all[0].namespace, "apps", "listed by namespace and name");
        let kubernetes = &all[1].object;
        assert_eq!(kubernetes["spec"]["ports"], json!([]));
        let ip = kubernetes["spec"]["clusterIP"].as_str().unwrap();
        assert!(ip.starts_with("172.30."), "{ip}");
        assert_eq!(
            services(&spec)[1].object,
            *kubernetes,
            "stable across requests"
        );
        assert!(kubernetes["metadata"].get("annotations").is_none());
        assert_eq!(kubernetes["status"]["loadBalancer"], json!({}));
        assert!(namespace_names(&spec).contains(&"apps".to_owned()));
    }
}
