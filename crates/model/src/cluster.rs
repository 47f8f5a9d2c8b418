//! The cluster resource, its status and capabilities, and the create/update requests.

use crate::enums::{ClusterState, ClusterType, Connectivity, Environment, Platform};
use crate::labels::{validate_labels, Labels};
use crate::url_field::validate_url;
use crate::{nullable, ClusterName, Error};
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Maximum lengths of the text fields (seed 7.1; `platform_version` widened to 64
/// because discovered version strings such as `v1.29.4+k3s1-rc.2` outgrow 20).
pub const FIELD_LIMITS: FieldLimits = FieldLimits {
    display_name: 128,
    api_server_url: 512,
    platform_version: 64,
    region: 64,
    endpoint_url: 512,
};

/// The maximum lengths of a cluster's text fields, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct FieldLimits {
    /// `display_name`.
    pub display_name: usize,
    /// `api_server_url`.
    pub api_server_url: usize,
    /// `platform_version`.
    pub platform_version: usize,
    /// `region`.
    pub region: usize,
    /// Each URL in `endpoints`.
    pub endpoint_url: usize,
}

/// A registered cluster, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    /// Generated UUID (v7).
    pub id: Uuid,
    /// Unique DNS-label name, immutable.
    #[schema(value_type = String, example = "prod-east-1")]
    pub name: ClusterName,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// URL of the Kubernetes API server.
    pub api_server_url: String,
    /// Role in the fleet.
    pub cluster_type: ClusterType,
    /// Kubernetes distribution.
    pub platform: Platform,
    /// Version of the platform, when known.
    pub platform_version: Option<String>,
    /// Region the cluster runs in.
    pub region: Option<String>,
    /// Environment the cluster serves.
    pub environment: Environment,
    /// Health as observed by the last check.
    pub status: ClusterStatus,
    /// Discovered capabilities; `null` until discovery ran.
    pub capabilities: Option<Capabilities>,
    /// Observability endpoints.
    pub endpoints: Endpoints,
    /// Kubernetes-style labels.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub labels: Labels,
    /// Change-log revision of the last change to this cluster's metadata;
    /// also sent as the `ETag` and checked against `If-Match`.
    pub revision: i64,
    /// When the cluster was registered.
    pub created_at: DateTime<Utc>,
    /// When its metadata last changed.
    pub updated_at: DateTime<Utc>,
    /// When a check last reached its API server.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Health of a cluster (seed 8). Checks update it without bumping `revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// State of the state machine of seed 8.2.
    pub state: ClusterState,
    /// 0–100, see seed 8.1.
    pub health_score: i32,
    /// Whether the API server answered the last check.
    pub connectivity: Connectivity,
    /// API server check result; `null` before the first check.
    #[serde(default)]
    pub api_server_healthy: Option<bool>,
    /// Prometheus check result; `null` when not configured or not checked.
    #[serde(default)]
    pub prometheus_healthy: Option<bool>,
    /// Tempo check result; `null` when not configured or not checked.
    #[serde(default)]
    pub tempo_healthy: Option<bool>,
    /// Loki check result; `null` when not configured or not checked.
    #[serde(default)]
    pub loki_healthy: Option<bool>,
    /// When the last check finished.
    #[serde(default)]
    pub checked_at: Option<DateTime<Utc>>,
    /// Why the state is what it is, in words.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Default for ClusterStatus {
    fn default() -> Self {
        ClusterStatus {
            state: ClusterState::Unknown,
            health_score: 0,
            connectivity: Connectivity::Disconnected,
            api_server_healthy: None,
            prometheus_healthy: None,
            tempo_healthy: None,
            loki_healthy: None,
            checked_at: None,
            reason: None,
        }
    }
}

/// Observability endpoints of a cluster; absent ones are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Prometheus (or Thanos querier) base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Tempo base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_url: Option<String>,
    /// Loki base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki_url: Option<String>,
}

impl Endpoints {
    fn validate(&self) -> Result<(), Error> {
        let limit = FIELD_LIMITS.endpoint_url;
        for (field, value) in [
            ("endpoints.prometheus_url", &self.prometheus_url),
            ("endpoints.tempo_url", &self.tempo_url),
            ("endpoints.loki_url", &self.loki_url),
        ] {
            if let Some(url) = value {
                validate_url(field, url, limit)?;
            }
        }
        Ok(())
    }
}

/// Capabilities found by discovery (seed 9).
///
/// Every field defaults when absent. The defaults are declared per field, not
/// with a container `#[serde(default)]`: from that, utoipa gives the
/// `observability` reference a `default` value, which generated clients
/// cannot process (openapi-python-client dropped the whole schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    /// Whether any node offers `nvidia.com/gpu`.
    #[serde(default)]
    pub has_gpu_nodes: bool,
    /// Total GPUs across nodes.
    #[serde(default)]
    pub gpu_count: i64,
    /// GPU product names.
    #[serde(default)]
    pub gpu_types: Vec<String>,
    /// Whether CNF workloads run on the cluster.
    #[serde(default)]
    pub has_cnf: bool,
    /// Kinds of CNF found (vDU, vCU, UPF, …).
    #[serde(default)]
    pub cnf_types: Vec<String>,
    /// Whether SR-IOV network node policies exist.
    #[serde(default)]
    pub has_sriov: bool,
    /// Whether the PTP operator is installed.
    #[serde(default)]
    pub has_ptp: bool,
    /// Which observability components were found.
    #[serde(default)]
    pub observability: ObservabilityCapabilities,
    /// When discovery ran.
    #[serde(default)]
    pub discovered_at: Option<DateTime<Utc>>,
}

/// Observability components found on a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ObservabilityCapabilities {
    /// Prometheus (openshift-monitoring).
    pub prometheus: bool,
    /// Thanos querier.
    pub thanos: bool,
    /// Tempo.
    pub tempo: bool,
    /// Loki.
    pub loki: bool,
}

/// Body of `POST /api/v1/clusters`: `name` and `api_server_url` are required,
/// everything else defaults as in seed 7.1.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterCreateRequest {
    /// Required; `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`.
    #[schema(required = true, value_type = String, example = "prod-east-1",
             pattern = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    pub name: Option<String>,
    /// At most 128 characters.
    #[schema(max_length = 128)]
    pub display_name: Option<String>,
    /// Required; http(s) URL, at most 512 characters.
    #[schema(required = true, value_type = String, format = "uri", max_length = 512,
             example = "https://api.prod-east-1.example.com:6443")]
    pub api_server_url: Option<String>,
    /// HUB, SPOKE (default), EDGE or FAR_EDGE.
    #[schema(value_type = Option<ClusterType>)]
    pub cluster_type: Option<String>,
    /// OPENSHIFT (default), KUBERNETES or MICROSHIFT.
    #[schema(value_type = Option<Platform>)]
    pub platform: Option<String>,
    /// At most 64 characters; usually discovered.
    pub platform_version: Option<String>,
    /// At most 64 characters.
    pub region: Option<String>,
    /// PRODUCTION, STAGING, DEVELOPMENT (default) or LAB.
    #[schema(value_type = Option<Environment>)]
    pub environment: Option<String>,
    /// Kubernetes-style labels.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub labels: Option<Labels>,
    /// Observability endpoints.
    pub endpoints: Option<Endpoints>,
}

/// A validated registration, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCluster {
    /// The name.
    pub name: ClusterName,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// API server URL.
    pub api_server_url: String,
    /// Role in the fleet.
    pub cluster_type: ClusterType,
    /// Distribution.
    pub platform: Platform,
    /// Platform version.
    pub platform_version: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Environment.
    pub environment: Environment,
    /// Labels.
    pub labels: Labels,
    /// Endpoints.
    pub endpoints: Endpoints,
}

impl NewCluster {
    /// Builds the stored cluster with defaults for everything not yet observed.
    pub fn into_cluster(self, id: Uuid, revision: i64, now: DateTime<Utc>) -> Cluster {
        Cluster {
            id,
            name: self.name,
            display_name: self.display_name,
            api_server_url: self.api_server_url,
            cluster_type: self.cluster_type,
            platform: self.platform,
            platform_version: self.platform_version,
            region: self.region,
            environment: self.environment,
            status: ClusterStatus::default(),
            capabilities: None,
            endpoints: self.endpoints,
            labels: self.labels,
            revision,
            created_at: now,
            updated_at: now,
            last_seen_at: None,
        }
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, Error> {
    value.ok_or_else(|| Error::invalid(field, "is required"))
}

fn parse_enum<T>(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    expected: String,
) -> Result<T, Error> {
    parse(value)
        .ok_or_else(|| Error::invalid(field, format!("must be one of {expected}; got {value:?}")))
}

pub(crate) fn validate_text(field: &str, value: &str, max_len: usize) -> Result<(), Error> {
    if value.chars().count() > max_len {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn validate_optional_text(field: &str, value: Option<&str>, max_len: usize) -> Result<(), Error> {
    value.map_or(Ok(()), |v| validate_text(field, v, max_len))
}

fn cluster_type(value: &str) -> Result<ClusterType, Error> {
    parse_enum(
        "cluster_type",
        value,
        ClusterType::parse,
        ClusterType::expected(),
    )
}

fn platform(value: &str) -> Result<Platform, Error> {
    parse_enum("platform", value, Platform::parse, Platform::expected())
}

fn environment(value: &str) -> Result<Environment, Error> {
    parse_enum(
        "environment",
        value,
        Environment::parse,
        Environment::expected(),
    )
}

fn api_server_url(value: String) -> Result<String, Error> {
    validate_url("api_server_url", &value, FIELD_LIMITS.api_server_url)?;
    Ok(value)
}

impl ClusterCreateRequest {
    /// Validates every field and applies the defaults of seed 7.1.
    pub fn validate(self) -> Result<NewCluster, Error> {
        let name = ClusterName::parse(&required("name", self.name)?)?;
        validate_optional_text(
            "display_name",
            self.display_name.as_deref(),
            FIELD_LIMITS.display_name,
        )?;
        let api_server_url = api_server_url(required("api_server_url", self.api_server_url)?)?;
        let cluster_type = self
            .cluster_type
            .as_deref()
            .map(cluster_type)
            .transpose()?
            .unwrap_or_default();
        let platform = self
            .platform
            .as_deref()
            .map(platform)
            .transpose()?
            .unwrap_or_default();
        validate_optional_text(
            "platform_version",
            self.platform_version.as_deref(),
            FIELD_LIMITS.platform_version,
        )?;
        validate_optional_text("region", self.region.as_deref(), FIELD_LIMITS.region)?;
        let environment = self
            .environment
            .as_deref()
            .map(environment)
            .transpose()?
            .unwrap_or_default();
        let labels = self.labels.unwrap_or_default();
        validate_labels(&labels)?;
        let endpoints = self.endpoints.unwrap_or_default();
        endpoints.validate()?;
        Ok(NewCluster {
            name,
            display_name: self.display_name,
            api_server_url,
            cluster_type,
            platform,
            platform_version: self.platform_version,
            region: self.region,
            environment,
            labels,
            endpoints,
        })
    }
}

/// Body of `PUT /api/v1/clusters/{id}` (seed `ClusterUpdateRequest`).
///
/// Every field is optional and only the fields given change. `labels` and
/// `endpoints` are replaced whole when given (`null` clears them); `null` clears
/// `display_name`, `platform_version` and `region`. `name` is immutable: sending
/// the current name is accepted, another is rejected. The read-only fields of a
/// cluster (`id`, `status`, `capabilities`, `revision`, timestamps) are
/// accepted and ignored, so a GET body can be edited and sent back. Any other
/// field is rejected.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterUpdateRequest {
    /// Must equal the current name when given.
    pub name: Option<String>,
    /// New display name; `null` clears it.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// New API server URL.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub api_server_url: Option<Option<String>>,
    /// New type.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub cluster_type: Option<Option<String>>,
    /// New platform.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub platform: Option<Option<String>>,
    /// New platform version; `null` clears it.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub platform_version: Option<Option<String>>,
    /// New region; `null` clears it.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub region: Option<Option<String>>,
    /// New environment.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<String>)]
    pub environment: Option<Option<String>>,
    /// Replaces all labels; `null` clears them.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub labels: Option<Option<Labels>>,
    /// Replaces all endpoints; `null` clears them.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<Endpoints>)]
    pub endpoints: Option<Option<Endpoints>>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub id: Option<IgnoredAny>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub status: Option<IgnoredAny>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub capabilities: Option<IgnoredAny>,
    /// Read-only, ignored (use `If-Match` to guard an update).
    #[schema(value_type = Option<Object>)]
    pub revision: Option<IgnoredAny>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub created_at: Option<IgnoredAny>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub updated_at: Option<IgnoredAny>,
    /// Read-only, ignored.
    #[schema(value_type = Option<Object>)]
    pub last_seen_at: Option<IgnoredAny>,
}

/// A validated update: `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterPatch {
    /// The name the request carried, checked against the stored one.
    pub expected_name: Option<ClusterName>,
    /// New display name (`Some(None)` clears).
    pub display_name: Option<Option<String>>,
    /// New API server URL.
    pub api_server_url: Option<String>,
    /// New type.
    pub cluster_type: Option<ClusterType>,
    /// New platform.
    pub platform: Option<Platform>,
    /// New platform version (`Some(None)` clears).
    pub platform_version: Option<Option<String>>,
    /// New region (`Some(None)` clears).
    pub region: Option<Option<String>>,
    /// New environment.
    pub environment: Option<Environment>,
    /// New labels, replacing the old.
    pub labels: Option<Labels>,
    /// New endpoints, replacing the old.
    pub endpoints: Option<Endpoints>,
}

fn not_null<T>(field: &str, value: Option<Option<T>>) -> Result<Option<T>, Error> {
    match value {
        Some(None) => Err(Error::invalid(field, "cannot be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

impl ClusterUpdateRequest {
    /// Validates the given fields.
    pub fn validate(self) -> Result<ClusterPatch, Error> {
        let expected_name = self.name.as_deref().map(ClusterName::parse).transpose()?;
        if let Some(Some(v)) = &self.display_name {
            validate_text("display_name", v, FIELD_LIMITS.display_name)?;
        }
        let api_server_url = not_null("api_server_url", self.api_server_url)?
            .map(api_server_url)
            .transpose()?;
        let cluster_type = not_null("cluster_type", self.cluster_type)?
            .as_deref()
            .map(cluster_type)
            .transpose()?;
        let platform = not_null("platform", self.platform)?
            .as_deref()
            .map(platform)
            .transpose()?;
        if let Some(Some(v)) = &self.platform_version {
            validate_text("platform_version", v, FIELD_LIMITS.platform_version)?;
        }
        if let Some(Some(v)) = &self.region {
            validate_text("region", v, FIELD_LIMITS.region)?;
        }
        let environment = not_null("environment", self.environment)?
            .as_deref()
            .map(environment)
            .transpose()?;
        let labels = self.labels.map(Option::unwrap_or_default);
        if let Some(labels) = &labels {
            validate_labels(labels)?;
        }
        let endpoints = self.endpoints.map(Option::unwrap_or_default);
        if let Some(endpoints) = &endpoints {
            endpoints.validate()?;
        }
        Ok(ClusterPatch {
            expected_name,
            display_name: self.display_name,
            api_server_url,
            cluster_type,
            platform,
            platform_version: self.platform_version,
            region: self.region,
            environment,
            labels,
            endpoints,
        })
    }
}

impl ClusterPatch {
    /// Applies the patch to `cluster`; returns whether anything changed.
    ///
    /// Fails when the patch names a different cluster name (names are immutable).
    pub fn apply(&self, cluster: &mut Cluster) -> Result<bool, Error> {
        if let Some(name) = &self.expected_name {
            if name != &cluster.name {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "is immutable; this cluster is named {:?}",
                        cluster.name.as_str()
                    ),
                ));
            }
        }
        let before = cluster.clone();
        if let Some(v) = &self.display_name {
            cluster.display_name = v.clone();
        }
        if let Some(v) = &self.api_server_url {
            cluster.api_server_url = v.clone();
        }
        if let Some(v) = self.cluster_type {
            cluster.cluster_type = v;
        }
        if let Some(v) = self.platform {
            cluster.platform = v;
        }
        if let Some(v) = &self.platform_version {
            cluster.platform_version = v.clone();
        }
        if let Some(v) = &self.region {
            cluster.region = v.clone();
        }
        if let Some(v) = self.environment {
            cluster.environment = v;
        }
        if let Some(v) = &self.labels {
            cluster.labels = v.clone();
        }
        if let Some(v) = &self.endpoints {
            cluster.endpoints = v.clone();
        }
        Ok(*cluster != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<NewCluster, Error> {
        serde_json::from_str::<ClusterCreateRequest>(json)
            .unwrap()
            .validate()
    }

    #[test]
    fn defaults_follow_the_schema() {
        let c = create(r#"{"name":"abc","api_server_url":"https://x:6443"}"#).unwrap();
        assert_eq!(c.cluster_type, ClusterType::Spoke);
        assert_eq!(c.platform, Platform::Openshift);
        assert_eq!(c.environment, Environment::Development);
        let cluster = c.into_cluster(Uuid::nil(), 1, crate::now());
        assert_eq!(cluster.status.state, ClusterState::Unknown);
        assert_eq!(cluster.status.connectivity, Connectivity::Disconnected);
        assert!(cluster.capabilities.is_none());
    }

    #[test]
    fn field_errors_name_the_field() {
        let err = create(r#"{"name":"abc","api_server_url":"https://x","cluster_type":"BIG"}"#)
            .unwrap_err();
        assert_eq!(err.field(), "cluster_type");
        let err = create(r#"{"name":"abc"}"#).unwrap_err();
        assert_eq!(err.field(), "api_server_url");
        let err = create(r#"{"name":"ABC","api_server_url":"https://x"}"#).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidClusterName);
        let err = create(r#"{"name":"abc","api_server_url":"https://x","labels":{"bad key":"v"}}"#)
            .unwrap_err();
        assert_eq!(err.field(), "labels.bad key");
        let err = create(
            r#"{"name":"abc","api_server_url":"https://x","endpoints":{"loki_url":"nope"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "endpoints.loki_url");
        let long = "r".repeat(65);
        let err = create(&format!(
            r#"{{"name":"abc","api_server_url":"https://x","region":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(err.field(), "region");
    }

    #[test]
    fn patch_semantics() {
        let mut cluster = create(
            r#"{"name":"abc","api_server_url":"https://x","region":"r1","labels":{"a":"1"}}"#,
        )
        .unwrap()
        .into_cluster(Uuid::nil(), 1, crate::now());
        let patch: ClusterUpdateRequest = serde_json::from_str(
            r#"{"region":null,"labels":{"b":"2"},"status":{"state":"ONLINE"},"id":"x"}"#,
        )
        .unwrap();
        let patch = patch.validate().unwrap();
        assert!(patch.apply(&mut cluster).unwrap());
        assert_eq!(cluster.region, None);
        assert_eq!(cluster.labels.len(), 1);
        assert_eq!(cluster.labels["b"], "2");
        assert!(
            !patch.apply(&mut cluster).unwrap(),
            "re-applying changes nothing"
        );

        let rename: ClusterUpdateRequest = serde_json::from_str(r#"{"name":"other"}"#).unwrap();
        assert_eq!(
            rename
                .validate()
                .unwrap()
                .apply(&mut cluster)
                .unwrap_err()
                .field(),
            "name"
        );
        let null_url: ClusterUpdateRequest =
            serde_json::from_str(r#"{"api_server_url":null}"#).unwrap();
        assert_eq!(null_url.validate().unwrap_err().field(), "api_server_url");
        assert!(serde_json::from_str::<ClusterUpdateRequest>(r#"{"colour":"red"}"#).is_err());
    }

    #[test]
    fn a_get_body_can_be_sent_back() {
        let cluster = create(r#"{"name":"abc","api_server_url":"https://x"}"#)
            .unwrap()
            .into_cluster(Uuid::now_v7(), 3, crate::now());
        let body = serde_json::to_string(&cluster).unwrap();
        let patch: ClusterUpdateRequest = serde_json::from_str(&body).unwrap();
        let mut copy = cluster.clone();
        assert!(!patch.validate().unwrap().apply(&mut copy).unwrap());
    }
}
