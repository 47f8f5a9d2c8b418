//! Decoding rows into model types, shared by both backends.

use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    AuditEntry, AuditResult, Capabilities, Cluster, ClusterName, ClusterState, ClusterStatus,
    ClusterType, Endpoints, Environment, Event, EventType, Labels, Platform,
};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

/// The columns [`cluster_from_row`] reads, in `SELECT` form.
pub(crate) const CLUSTER_COLUMNS: &str = "c.id, c.name, c.display_name, c.api_server_url, c.cluster_type, \
     c.platform, c.platform_version, c.region, c.environment, c.labels, c.endpoints, c.capabilities, \
     c.status, c.revision, c.created_at, c.updated_at, c.last_seen_at";

/// The columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "revision, event_type, occurred_at, resource, resource_id, payload";

/// The columns [`audit_from_row`] reads.
pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, actor, role, action, resource, resource_id, result, error_code, revision, source, request_id";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected {what} {value:?}"))
}

fn parse_with<T>(what: &str, value: String, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(&value).ok_or_else(|| corrupt(what, &value))
}

/// Reads a [`Cluster`] from a row selected with [`CLUSTER_COLUMNS`].
pub(crate) fn cluster_from_row<'r, R>(row: &'r R) -> Result<Cluster, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    Json<Labels>: Decode<'r, R::Database> + Type<R::Database>,
    Json<Endpoints>: Decode<'r, R::Database> + Type<R::Database>,
    Json<Capabilities>: Decode<'r, R::Database> + Type<R::Database>,
    Json<ClusterStatus>: Decode<'r, R::Database> + Type<R::Database>,
{
    let name: String = row.try_get("name")?;
    Ok(Cluster {
        id: row.try_get("id")?,
        name: ClusterName::parse(&name).map_err(|_| corrupt("cluster name", &name))?,
        display_name: row.try_get("display_name")?,
        api_server_url: row.try_get("api_server_url")?,
        cluster_type: parse_with(
            "cluster_type",
            row.try_get("cluster_type")?,
            ClusterType::parse,
        )?,
        platform: parse_with("platform", row.try_get("platform")?, Platform::parse)?,
        platform_version: row.try_get("platform_version")?,
        region: row.try_get("region")?,
        environment: parse_with(
            "environment",
            row.try_get("environment")?,
            Environment::parse,
        )?,
        labels: row.try_get::<Json<Labels>, _>("labels")?.0,
        endpoints: row.try_get::<Json<Endpoints>, _>("endpoints")?.0,
        capabilities: row
            .try_get::<Option<Json<Capabilities>>, _>("capabilities")?
            .map(|j| j.0),
        status: row.try_get::<Json<ClusterStatus>, _>("status")?.0,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

/// Reads an [`Event`] from a row selected with [`EVENT_COLUMNS`].
pub(crate) fn event_from_row<'r, R>(row: &'r R) -> Result<Event, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Event {
        revision: row.try_get("revision")?,
        event_type: parse_with("event type", row.try_get("event_type")?, EventType::parse)?,
        occurred_at: row.try_get("occurred_at")?,
        resource: row.try_get("resource")?,
        resource_id: row.try_get("resource_id")?,
        payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
    })
}

/// Reads an [`AuditEntry`] from a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row<'r, R>(row: &'r R) -> Result<AuditEntry, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let result: String = row.try_get("result")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        resource_id: row.try_get("resource_id")?,
        result: match result.as_str() {
            "success" => AuditResult::Success,
            "failure" => AuditResult::Failure,
            _ => return Err(corrupt("audit result", &result)),
        },
        error_code: row.try_get("error_code")?,
        revision: row.try_get("revision")?,
        source: row.try_get("source")?,
        request_id: row.try_get("request_id")?,
    })
}

/// The database's spelling of an audit result.
/// Columns of `cluster_credentials`, in the order [`credentials_from_row`] reads.
pub(crate) const CREDENTIAL_COLUMNS: &str =
    "cluster_id, version, auth_type, sealed, key_id, expires_at, created_at, updated_at";

/// Decodes a `cluster_credentials` row (sealed values stay sealed).
pub(crate) fn credentials_from_row<'r, R>(
    row: &'r R,
) -> Result<fleetreg_model::StoredCredentials, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    Json<std::collections::BTreeMap<String, String>>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(fleetreg_model::StoredCredentials {
        cluster_id: row.try_get("cluster_id")?,
        version: row.try_get("version")?,
        auth_type: parse_with(
            "auth_type",
            row.try_get("auth_type")?,
            fleetreg_model::AuthType::parse,
        )?,
        sealed: row
            .try_get::<Json<std::collections::BTreeMap<String, String>>, _>("sealed")?
            .0,
        key_id: row.try_get("key_id")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Decodes a row of the expiring-credentials query (`cluster_id`, `name`,
/// `version`, `auth_type`, `expires_at`); `expired` relative to `now`.
pub(crate) fn expiring_from_row<'r, R>(
    row: &'r R,
    now: DateTime<Utc>,
) -> Result<fleetreg_model::ExpiringCredentials, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
    Ok(fleetreg_model::ExpiringCredentials {
        cluster_id: row.try_get("cluster_id")?,
        cluster_name: row.try_get("name")?,
        version: row.try_get("version")?,
        auth_type: parse_with(
            "auth_type",
            row.try_get("auth_type")?,
            fleetreg_model::AuthType::parse,
        )?,
        expires_at,
        expired: expires_at <= now,
        rotation: None,
    })
}

/// Columns of `api_tokens` that [`token_from_row`] reads (never the hash).
pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, prefix, created_at, expires_at, revoked_at";

/// Decodes an `api_tokens` row.
pub(crate) fn token_from_row<'r, R>(row: &'r R) -> Result<fleetreg_model::ApiToken, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(fleetreg_model::ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: parse_with("role", row.try_get("role")?, fleetreg_model::Role::parse)?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(crate) fn audit_result_str(result: &AuditResult) -> &'static str {
    match result {
        AuditResult::Success => "success",
        AuditResult::Failure => "failure",
    }
}

/// The value of the indexed `state` column.
pub(crate) fn state_str(status: &ClusterStatus) -> &'static str {
    let state: ClusterState = status.state;
    state.as_str()
}

/// The columns [`chained_audit_from_row`] reads.
pub(crate) const AUDIT_CHAIN_COLUMNS: &str =
    "id, at, actor, role, action, resource, resource_id, result, error_code, revision, source, request_id, mac, key_id";

/// Reads an audit entry with its chain fields from a row selected with
/// [`AUDIT_CHAIN_COLUMNS`].
pub(crate) fn chained_audit_from_row<'r, R>(
    row: &'r R,
) -> Result<crate::ChainedAuditEntry, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(crate::ChainedAuditEntry {
        entry: audit_from_row(row)?,
        mac: row.try_get("mac")?,
        key_id: row.try_get("key_id")?,
    })
}
