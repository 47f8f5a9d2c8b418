//! deploy/kubernetes/: every document parses, is a resource the manifests
//! are meant to hold, and fits the others (namespace, labels, ports, probes,
//! the Secrets namespace of the Role and of the configuration); the
//! ConfigMap's config.yaml loads with the loader of `serve --config`; the
//! Deployment's environment names variables `serve` reads; the pod meets the
//! restricted Pod Security Standard's settings; and kubernetes-validate checks
//! every resource against the Kubernetes API schemas (strict: an unknown field
//! fails, as a typo'd copy shows).

use crate::common::fleetreg;
use fleetreg_server::settings::Settings;
use fleetreg_testkit::skip_or_fail;
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIRE_VALIDATE: &str = "FLEETREG_REQUIRE_KUBERNETES_VALIDATE";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// The YAML files of deploy/kubernetes/, sorted, kustomization.yaml included.
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// Every document of `path`.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Every Kubernetes resource of the manifests (not the Kustomization), with its file.
fn resources() -> Vec<(String, Value)> {
    files()
        .iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            documents(p).into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

fn find<'a>(resources: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = resources
        .iter()
        .filter(|(_, r)| r["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    &found[0].1
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

#[test]
fn the_manifests_fit_together_and_the_config_loads() {
    let resources = resources();
    let expected = [
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ];
    let mut kinds: Vec<(String, String)> = resources
        .iter()
        .map(|(file, r)| {
            (
                str_of(&r["apiVersion"], &format!("{file}: apiVersion")).to_owned(),
                str_of(&r["kind"], &format!("{file}: kind")).to_owned(),
            )
        })
        .collect();
    kinds.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect();
    want.sort();
    assert_eq!(kinds, want);

    // One namespace, every namespaced resource in it, every one labelled.
    let namespace = str_of(
        &find(&resources, "Namespace")["metadata"]["name"],
        "namespace",
    );
    assert_eq!(
        find(&resources, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for (file, r) in &resources {
        assert_eq!(
            r["metadata"]["labels"]["app.kubernetes.io/name"], "fleetreg",
            "{file}: {r:?}"
        );
        if r["kind"] != "Namespace" {
            assert_eq!(r["metadata"]["namespace"], namespace, "{file}: {r:?}");
        }
    }

    // kustomization.yaml applies every file.
    let kustomization = documents(&manifests_dir().join("kustomization.yaml"));
    let mut listed: Vec<String> = kustomization[0]["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|v| str_of(v, "resource").to_owned())
        .collect();
    listed.sort();
    let mut on_disk: Vec<String> = files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);

    // The ConfigMap's config.yaml loads as `serve --config` loads it.
    let config_map = find(&resources, "ConfigMap");
    let config_text = str_of(&config_map["data"]["config.yaml"], "config.yaml");
    let settings =
        Settings::from_yaml(config_text).unwrap_or_else(|e| panic!("{e}\n{config_text}"));
    assert_eq!(settings.credentials.secret_namespace, namespace);

    let deployment = find(&resources, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The configuration is mounted where the arguments name it.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args[0], "serve");
    let config_path = args[args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config")
        + 1];
    let mounts = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts");
    let mount_of = |path: &Path| {
        mounts
            .iter()
            .filter(|m| path.starts_with(str_of(&m["mountPath"], "mountPath")))
            .max_by_key(|m| str_of(&m["mountPath"], "mountPath").len())
            .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()))
    };
    let config_mount = mount_of(Path::new(config_path));
    let config_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == config_mount["name"])
        .expect("the config volume");
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    assert_eq!(
        Path::new(config_path).file_name().unwrap(),
        "config.yaml",
        "the ConfigMap's key"
    );
    // The files serve writes are on a writable volume (the root filesystem is read-only).
    for written in [
        settings.audit_head_file(),
        settings.auth.admin_token_file.clone(),
    ] {
        let mount = mount_of(&written);
        assert_ne!(mount["readOnly"], true, "{}", written.display());
    }

    // Listen port = container port = the Service's target; probes on /health and /ready.
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(u64::from(settings.listen.port()), port);
    let port_name = str_of(&container["ports"][0]["name"], "port name");
    let service = find(&resources, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port_name);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    for (probe, path) in [
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
        ("startupProbe", "/health"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], port_name, "{probe}");
    }

    // The restricted Pod Security Standard's settings, and resources.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    for key in ["cpu", "memory"] {
        assert!(
            !container["resources"]["requests"][key].is_null(),
            "requests.{key}"
        );
    }
    assert!(!container["resources"]["limits"]["memory"].is_null());

    // Every variable the container sets is one `serve` reads.
    let help = fleetreg().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in container["env"].as_sequence().expect("env") {
        let name = str_of(&variable["name"], "env name");
        assert!(
            help.contains(&format!("[env: {name}")),
            "`serve` reads no {name}:\n{help}"
        );
        if let Some(secret) = variable["valueFrom"]["secretKeyRef"].as_mapping() {
            assert_eq!(secret[&Value::from("name")], "fleetreg", "{name}");
        }
    }

    // The Role: Secrets of its namespace only, bound to the pod's service account.
    let role = find(&resources, "Role");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"], Value::from(vec!["secrets"]));
    assert_eq!(rules[0]["apiGroups"], Value::from(vec![""]));
    let binding = find(&resources, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    assert_eq!(
        find(&resources, "ServiceAccount")["metadata"]["name"],
        pod["serviceAccountName"]
    );
    assert!(settings.credentials.kubernetes.api_url.is_some());

    // The NetworkPolicy restricts egress and selects the pod; the clusters'
    // networks it opens are where health checks may connect.
    let policy = find(&resources, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let types = &policy["spec"]["policyTypes"];
    assert!(types
        .as_sequence()
        .unwrap()
        .contains(&Value::from("Egress")));
    let egress_cidrs: Vec<String> = policy["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["to"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|to| to["ipBlock"]["cidr"].as_str().map(str::to_owned))
        .collect();
    assert!(!settings.health_check.allowed_networks.is_empty());
    for network in &settings.health_check.allowed_networks {
        assert!(
            egress_cidrs.contains(network),
            "health_check.allowed_networks has {network}, the NetworkPolicy's egress {egress_cidrs:?}"
        );
    }
}

/// target/kubevalidate/bin/kubernetes-validate (scripts/install-test-deps.sh), or on PATH.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = root().join("target/kubevalidate/bin/kubernetes-validate");
    let candidates = [venv, PathBuf::from("kubernetes-validate")];
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas() {
    let Some(validate) = kubernetes_validate() else {
        skip_or_fail(
            REQUIRE_VALIDATE,
            "kubernetes-validate is not installed",
            "scripts/install-test-deps.sh installs it into target/kubevalidate",
        );
        return;
    };
    let manifests: Vec<PathBuf> = files()
        .into_iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    let run = |paths: &[PathBuf]| {
        let output = Command::new(&validate)
            .args(["--strict", "--no-warn"])
            .args(paths)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = run(&manifests);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        resources().len(),
        "every resource checked:\n{text}"
    );
    // The negative control: a field name with a typo fails.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("deployment.yaml");
    let text = std::fs::read_to_string(manifests_dir().join("deployment.yaml")).unwrap();
    assert!(text.contains("readOnlyRootFilesystem"));
    std::fs::write(
        &typo,
        text.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"),
    )
    .unwrap();
    let (ok, text) = run(&[typo]);
    assert!(!ok, "a typo passed:\n{text}");
    assert!(text.contains("readOnlyRootFilesytem"), "{text}");
}
