//! The Secrets of one simulated cluster, with the API server's semantics: create
//! (409 `AlreadyExists`), get/replace/merge-patch/delete (404 `NotFound`),
//! `resourceVersion` preconditions (409 `Conflict`), a per-cluster
//! `resourceVersion` that increases with every change, `stringData` folded into
//! base64 `data`, `immutable`, and label selectors on lists.
//!
//! Namespaces need not exist: a Secret may be created in any namespace name.

use crate::kube_status::{deleted, KubeError};
use crate::random;
use crate::selector::Selector;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const PLURAL: &str = "secrets";
const KIND: &str = "Secret";

/// A stored Secret as `GET /admin/clusters/{name}/secrets` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `data` decoded from base64 (as UTF-8, invalid bytes replaced).
    pub decoded: BTreeMap<String, String>,
    /// The object exactly as the API serves it.
    pub object: Value,
}

/// Every Secret of one cluster.
#[derive(Debug, Default)]
pub(crate) struct SecretStore {
    items: BTreeMap<(String, String), Value>,
    revision: u64,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str()
}

/// The labels of an object, for selectors.
fn labels(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["labels"]
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl SecretStore {
    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    /// A `SecretList` of one namespace or all, filtered by `selector`.
    pub(crate) fn list(&self, namespace: Option<&str>, selector: &Selector) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .filter(|((ns, _), object)| {
                namespace.is_none_or(|n| n == ns) && selector.matches(&labels(object))
            })
            .map(|(_, object)| object.clone())
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "SecretList",
            "metadata": {"resourceVersion": self.revision.to_string()},
            "items": items,
        })
    }

    /// One Secret.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Result<Value, KubeError> {
        self.items
            .get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| KubeError::not_found(PLURAL, name))
    }

    /// Creates a Secret from a POST body.
    pub(crate) fn create(
        &mut self,
        namespace: &str,
        body: Value,
        now: DateTime<Utc>,
    ) -> Result<Value, KubeError> {
        let mut secret = normalize(namespace, body)?;
        let name = match meta_str(&secret, "name").filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => match meta_str(&secret, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => format!("{prefix}{}", random::name_suffix(5)),
                None => {
                    let cause = "metadata.name: Required value: name or generateName is required";
                    return Err(KubeError::invalid(KIND, PLURAL, "", cause));
                }
            },
        };
        validate_name(&name)?;
        if self.items.contains_key(&key(namespace, &name)) {
            return Err(KubeError::already_exists(PLURAL, &name));
        }
        let revision = self.next_revision();
        let meta = &mut secret["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(random::uid());
        meta["creationTimestamp"] = json!(now.to_rfc3339_opts(SecondsFormat::Secs, true));
        meta["resourceVersion"] = json!(revision);
        self.items.insert(key(namespace, &name), secret.clone());
        Ok(secret)
    }

    /// Replaces a Secret (PUT); 404 when it does not exist.
    pub(crate) fn replace(
        &mut self,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> Result<Value, KubeError> {
        let current = self.get(namespace, name)?;
        let secret = normalize(namespace, body)?;
        self.update(namespace, name, current, secret)
    }

    /// Applies a JSON merge patch (RFC 7386) to a Secret.
    pub(crate) fn merge_patch(
        &mut self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, KubeError> {
        let current = self.get(namespace, name)?;
        if !patch.is_object() {
            return Err(KubeError::bad_request("the patch must be a JSON object"));
        }
        let mut merged = current.clone();
        // A `metadata.resourceVersion` in the patch is a precondition; without
        // one the merged object keeps the current version and always applies.
        apply_merge_patch(&mut merged, patch);
        let secret = normalize(namespace, merged)?;
        self.update(namespace, name, current, secret)
    }

    fn update(
        &mut self,
        namespace: &str,
        name: &str,
        current: Value,
        mut secret: Value,
    ) -> Result<Value, KubeError> {
        let body_name = meta_str(&secret, "name").unwrap_or("");
        if body_name != name {
            return Err(KubeError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(expected) = meta_str(&secret, "resourceVersion") {
            if Some(expected) != meta_str(&current, "resourceVersion") {
                return Err(KubeError::conflict(PLURAL, name));
            }
        }
        if current["immutable"] == json!(true)
            && (secret["data"] != current["data"] || secret["immutable"] != json!(true))
        {
            let cause = "data: Forbidden: field is immutable when `immutable` is set";
            return Err(KubeError::invalid(KIND, PLURAL, name, cause));
        }
        for field in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generateName",
        ] {
            match current["metadata"].get(field) {
                Some(value) => secret["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = secret["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        if secret == current {
            return Ok(current);
        }
        secret["metadata"]["resourceVersion"] = json!(self.next_revision());
        self.items.insert(key(namespace, name), secret.clone());
        Ok(secret)
    }

    /// Deletes a Secret, answering the `Status` a real server sends.
    pub(crate) fn delete(&mut self, namespace: &str, name: &str) -> Result<Value, KubeError> {
        let secret = self
            .items
            .remove(&key(namespace, name))
            .ok_or_else(|| KubeError::not_found(PLURAL, name))?;
        self.revision += 1;
        Ok(deleted(PLURAL, name, &secret["metadata"]["uid"]))
    }

    /// Every Secret, for the admin API.
    pub(crate) fn records(&self) -> Vec<SecretRecord> {
        self.items
            .iter()
            .map(|((namespace, name), object)| {
                let decoded = object["data"]
                    .as_object()
                    .map(|data| {
                        data.iter()
                            .map(|(k, v)| {
                                let bytes = STANDARD
                                    .decode(v.as_str().unwrap_or(""))
                                    .unwrap_or_default();
                                (k.clone(), String::from_utf8_lossy(&bytes).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                SecretRecord {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    decoded,
                    object: object.clone(),
                }
            })
            .collect()
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (k, v) in patch {
            if v.is_null() {
                target.remove(k);
            } else {
                apply_merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn cannot_handle(message: &str) -> KubeError {
    KubeError::bad_request(format!(
        "Secret in version \"v1\" cannot be handled as a Secret: {message}"
    ))
}

fn string_map(value: Option<Value>, field: &str) -> Result<Map<String, Value>, KubeError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) if map.values().all(Value::is_string) => Ok(map),
        Some(_) => Err(cannot_handle(&format!("{field} must be a map of strings"))),
    }
}

/// A request body as the Secret the server would store: known fields only,
/// `stringData` encoded into `data`, `type` defaulted, namespace checked.
fn normalize(namespace: &str, body: Value) -> Result<Value, KubeError> {
    let Value::Object(mut object) = body else {
        return Err(cannot_handle("the body must be a JSON object"));
    };
    if let Some(kind) = object.get("kind").filter(|k| !k.is_null()) {
        if kind != KIND {
            return Err(KubeError::bad_request(format!(
                "the kind {kind} does not match the expected kind \"Secret\""
            )));
        }
    }
    if let Some(version) = object.get("apiVersion").filter(|v| !v.is_null()) {
        if version != "v1" {
            return Err(KubeError::bad_request(format!(
                "the API version {version} does not match the expected API version \"v1\""
            )));
        }
    }
    let mut given = string_or_object(object.remove("metadata"))?;
    if let Some(ns) = given.get("namespace").and_then(Value::as_str) {
        if ns != namespace {
            return Err(KubeError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let mut meta = Map::new();
    for field in [
        "name",
        "generateName",
        "resourceVersion",
        "uid",
        "creationTimestamp",
    ] {
        if let Some(value) = given.remove(field).filter(Value::is_string) {
            meta.insert(field.to_owned(), value);
        }
    }
    meta.insert("namespace".to_owned(), json!(namespace));
    for field in ["labels", "annotations"] {
        let map = string_map(given.remove(field), &format!("metadata.{field}"))?;
        if !map.is_empty() {
            meta.insert(field.to_owned(), Value::Object(map));
        }
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();

    let mut data = string_map(object.remove("data"), "data")?;
    for (k, v) in &data {
        if let Err(error) = STANDARD.decode(v.as_str().unwrap_or("")) {
            return Err(cannot_handle(&format!("data[{k}]: {error}")));
        }
    }
    for (k, v) in string_map(object.remove("stringData"), "stringData")? {
        data.insert(k, json!(STANDARD.encode(v.as_str().unwrap_or(""))));
    }
    if let Some(bad) = data.keys().find(|k| !valid_data_key(k)) {
        let cause = format!(
            "data[{bad}]: Invalid value: {bad:?}: a valid config key must consist of \
             alphanumeric characters, '-', '_' or '.'"
        );
        return Err(KubeError::invalid(KIND, PLURAL, &name, &cause));
    }
    let secret_type = match object.remove("type") {
        None | Some(Value::Null) => json!("Opaque"),
        Some(t @ Value::String(_)) => t,
        Some(_) => return Err(cannot_handle("type must be a string")),
    };

    let mut secret = Map::new();
    secret.insert("apiVersion".to_owned(), json!("v1"));
    secret.insert("kind".to_owned(), json!(KIND));
    secret.insert("metadata".to_owned(), Value::Object(meta));
    if !data.is_empty() {
        secret.insert("data".to_owned(), Value::Object(data));
    }
    secret.insert("type".to_owned(), secret_type);
    match object.remove("immutable") {
        None | Some(Value::Null) => {}
        Some(flag @ Value::Bool(_)) => {
            secret.insert("immutable".to_owned(), flag);
        }
        Some(_) => return Err(cannot_handle("immutable must be a boolean")),
    }
    Ok(Value::Object(secret))
}

fn string_or_object(value: Option<Value>) -> Result<Map<String, Value>, KubeError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(cannot_handle("metadata must be an object")),
    }
}

fn valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// DNS-1123 subdomain, as Kubernetes requires of Secret names.
fn validate_name(name: &str) -> Result<(), KubeError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        let cause = format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist \
             of lower case alphanumeric characters, '-' or '.', and must start and end with an \
             alphanumeric character"
        );
        Err(KubeError::invalid(KIND, PLURAL, name, &cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    fn status(error: KubeError) -> StatusCode {
        error.into_response().status()
    }

    #[test]
    fn create_get_update_delete() {
        let mut store = SecretStore::default();
        let now = Utc::now();
        let body = json!({
            "metadata": {"name": "db", "labels": {"app": "x"}},
            "stringData": {"password": "hunter2"},
        });
        let created = store.create("ns", body.clone(), now).unwrap();
        assert_eq!(created["data"]["password"], "aHVudGVyMg==");
        assert_eq!(created["type"], "Opaque");
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert!(created.get("stringData").is_none());
        assert_eq!(
            status(store.create("ns", body, now).unwrap_err()),
            StatusCode::CONFLICT
        );

        let patched = store
            .merge_patch("ns", "db", &json!({"data": {"user": "YWRtaW4="}}))
            .unwrap();
        assert_eq!(patched["metadata"]["resourceVersion"], "2");
        assert_eq!(patched["data"]["password"], "aHVudGVyMg==");
        assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);
        let unchanged = store
            .merge_patch("ns", "db", &json!({"data": {"user": "YWRtaW4="}}))
            .unwrap();
        assert_eq!(unchanged["metadata"]["resourceVersion"], "2");

        let stale = json!({"metadata": {"name": "db", "resourceVersion": "1"}});
        assert_eq!(
            status(store.replace("ns", "db", stale).unwrap_err()),
            StatusCode::CONFLICT
        );
        let replaced = store
            .replace(
                "ns",
                "db",
                json!({"metadata": {"name": "db", "labels": {"app": "x"}}, "data": {}}),
            )
            .unwrap();
        assert!(replaced.get("data").is_none());
        assert_eq!(replaced["metadata"]["resourceVersion"], "3");

        let selector = Selector::parse("app=x").unwrap();
        assert_eq!(
            store.list(Some("ns"), &selector)["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store.list(Some("other"), &selector)["items"]
                .as_array()
                .unwrap()
                .len(),
            0
        );

        let gone = store.delete("ns", "db").unwrap();
        assert_eq!(gone["status"], "Success");
        assert_eq!(
            status(store.get("ns", "db").unwrap_err()),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(store.delete("ns", "db").unwrap_err()),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn invalid_bodies() {
        let mut store = SecretStore::default();
        let now = Utc::now();
        let cases = [
            (
                json!({"metadata": {"name": "Bad_Name"}}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (json!({"metadata": {}}), StatusCode::UNPROCESSABLE_ENTITY),
            (
                json!({"metadata": {"name": "a"}, "data": {"k": "%%%"}}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"metadata": {"name": "a"}, "data": {"bad/key": "YQ=="}}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "other"}}),
                StatusCode::BAD_REQUEST,
            ),
            (json!([1]), StatusCode::BAD_REQUEST),
        ];
        for (body, expected) in cases {
            let error = store.create("ns", body.clone(), now).unwrap_err();
            assert_eq!(status(error), expected, "{body}");
        }
        let generated = store
            .create("ns", json!({"metadata": {"generateName": "tok-"}}), now)
            .unwrap();
        assert!(generated["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("tok-"));
    }

    #[test]
    fn immutable_secrets_keep_their_data() {
        let mut store = SecretStore::default();
        let body = json!({"metadata": {"name": "a"}, "data": {"k": "YQ=="}, "immutable": true});
        store.create("ns", body, Utc::now()).unwrap();
        let error = store
            .merge_patch("ns", "a", &json!({"data": {"k": "Yg=="}}))
            .unwrap_err();
        assert_eq!(status(error), StatusCode::UNPROCESSABLE_ENTITY);
        store
            .merge_patch("ns", "a", &json!({"metadata": {"labels": {"x": "y"}}}))
            .unwrap();
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        apply_merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
