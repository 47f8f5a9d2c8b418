//! The read-only Kubernetes API subset a [`ClusterSpec`] implies: discovery
//! (`/version`, `/api`, `/apis`), namespaces, nodes, pods and services with
//! `labelSelector`, SR-IOV and PTP custom resources (404 when not installed) and
//! OpenShift's `ClusterVersion`.

use crate::kube_status::KubeError;
use crate::objects::{self, Namespaced};
use crate::selector::Selector;
use crate::spec::ClusterSpec;
use serde_json::{json, Value};

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
pub(crate) fn kube_get(
    spec: &ClusterSpec,
    segments: &[&str],
    selector: &Selector,
) -> Option<Value> {
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
                ("namespaces", "Namespace", false, READ),
                ("nodes", "Node", false, READ),
                ("pods", "Pod", true, READ),
                ("secrets", "Secret", true, READ_WRITE),
                ("serviceaccounts/token", "TokenRequest", true, &["create"]),
                ("services", "Service", true, READ),
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
                &[(plural, kind, *namespaced, READ)],
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

/// Kubernetes list paging on a list answer (one with an `items` array): at
/// most `limit` items from the offset a `continue` token names, with
/// `metadata.continue` (the offset of the next page) and
/// `metadata.remainingItemCount` when more remain. A `limit` that is not a
/// number, or a `continue` token this simulator did not hand out, is 400.
/// Other answers pass unchanged.
pub(crate) fn paginate(
    mut list: Value,
    limit: Option<&str>,
    continue_token: Option<&str>,
) -> Result<Value, KubeError> {
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
        return Ok(list);
    };
    let limit = match limit {
        None | Some("") | Some("0") => None,
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| KubeError::bad_request(format!("limit: invalid value {text:?}")))?,
        ),
    };
    let start = match continue_token {
        None | Some("") => 0,
        Some(token) => token
            .strip_prefix(CONTINUE_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= items.len())
            .ok_or_else(|| KubeError::bad_request("continue: invalid continue token"))?,
    };
    let total = items.len();
    let end = limit.map_or(total, |limit| start.saturating_add(limit).min(total));
    let page: Vec<Value> = items.drain(start..end).collect();
    *items = page;
    if let Some(metadata) = list.get_mut("metadata").and_then(Value::as_object_mut) {
        if end < total {
            metadata.insert("continue".into(), json!(format!("{CONTINUE_PREFIX}{end}")));
            metadata.insert("remainingItemCount".into(), json!(total - end));
        }
    }
    Ok(list)
}

/// The prefix of the simulator's `continue` tokens (the rest is an offset).
const CONTINUE_PREFIX: &str = "sim-offset-";

/// For `[plural]` → all namespaces; `["namespaces", ns, plural]` → that namespace.
fn custom_list_namespace<'a>(rest: &[&'a str], plural: &str) -> Option<Option<&'a str>> {
    match rest {
        [p] if *p == plural => Some(None),
        ["namespaces", ns, p] if *p == plural => Some(Some(ns)),
        _ => None,
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &["create", "delete", "get", "list", "patch", "update"];

/// An `APIResourceList`; each resource is (plural, kind, namespaced, verbs).
fn resource_list(group_version: &str, resources: &[(&str, &str, bool, &[&str])]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(plural, kind, namespaced, verbs)| {
            json!({
                "name": plural,
                "singularName": if plural.contains('/') { String::new() } else { kind.to_lowercase() },
                "namespaced": namespaced,
                "kind": kind,
                "verbs": verbs,
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_paged_with_limit_and_continue() {
        let list = objects::list("v1", "NamespaceList", (0..5).map(|i| json!(i)).collect());
        let first = paginate(list.clone(), Some("2"), None).unwrap();
        assert_eq!(first["items"], json!([0, 1]));
        assert_eq!(first["metadata"]["remainingItemCount"], 3);
        let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
        let second = paginate(list.clone(), Some("2"), Some(&token)).unwrap();
        assert_eq!(second["items"], json!([2, 3]));
        let token = second["metadata"]["continue"].as_str().unwrap().to_owned();
        let last = paginate(list.clone(), Some("2"), Some(&token)).unwrap();
        assert_eq!(last["items"], json!([4]));
        assert!(last["metadata"].get("continue").is_none());
        assert_eq!(paginate(list.clone(), None, None).unwrap(), list);
        assert!(paginate(list.clone(), Some("x"), None).is_err());
        assert!(paginate(list.clone(), None, Some("forged")).is_err());
        assert!(paginate(list, None, Some("sim-offset-99")).is_err());
        let object = json!({"kind": "Namespace"});
        assert_eq!(paginate(object.clone(), Some("1"), None).unwrap(), object);
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
