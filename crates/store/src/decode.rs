//! Rows → model types, once for both engines.

use crate::sql::Row;
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    ApiToken, AuditEntry, AuditResult, AuthType, Cluster, ClusterName, ClusterState, ClusterStatus,
    ClusterType, Environment, Event, EventType, ExpiringCredentials, Platform, Role,
    StoredCredentials,
};

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

/// The columns [`chained_audit_from_row`] reads.
pub(crate) const AUDIT_CHAIN_COLUMNS: &str =
    "id, at, actor, role, action, resource, resource_id, result, error_code, revision, source, request_id, mac, key_id";

/// Columns of `cluster_credentials`, as [`credentials_from_row`] reads them.
pub(crate) const CREDENTIAL_COLUMNS: &str =
    "cluster_id, version, auth_type, sealed, key_id, expires_at, created_at, updated_at, \
     origins, unbound_at";

/// Columns of `api_tokens` that [`token_from_row`] reads (never the hash).
pub(crate) const TOKEN_COLUMNS: &str =
    "id, name, role, prefix, created_at, expires_at, revoked_at, node";

/// A wire-enum column parsed with `parse`; anything else is corruption.
/// The text of `column` parsed with `parse` (a wire enum or name); anything
/// else stored there is corrupt.
pub(crate) fn parsed<T>(
    row: &Row,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unexpected {column} {text:?}")))
}

/// Reads a [`Cluster`] from a row selected with [`CLUSTER_COLUMNS`].
pub(crate) fn cluster_from_row(row: &Row) -> Result<Cluster, StoreError> {
    Ok(Cluster {
        id: row.get("id")?,
        name: parsed(row, "name", |n| ClusterName::parse(n).ok())?,
        display_name: row.get("display_name")?,
        api_server_url: row.get("api_server_url")?,
        cluster_type: parsed(row, "cluster_type", ClusterType::parse)?,
        platform: parsed(row, "platform", Platform::parse)?,
        platform_version: row.get("platform_version")?,
        region: row.get("region")?,
        environment: parsed(row, "environment", Environment::parse)?,
        labels: row.json("labels")?,
        endpoints: row.json("endpoints")?,
        capabilities: row.json_opt("capabilities")?,
        status: row.json("status")?,
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        last_seen_at: row.get("last_seen_at")?,
    })
}

/// Reads an [`Event`] from a row selected with [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        revision: row.get("revision")?,
        event_type: parsed(row, "event_type", EventType::parse)?,
        occurred_at: row.get("occurred_at")?,
        resource: row.get("resource")?,
        resource_id: row.get("resource_id")?,
        payload: row.json("payload")?,
    })
}

/// Reads an [`AuditEntry`] from a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.get("id")?,
        at: row.get("at")?,
        actor: row.get("actor")?,
        role: row.get("role")?,
        action: row.get("action")?,
        resource: row.get("resource")?,
        resource_id: row.get("resource_id")?,
        result: parsed(row, "result", audit_result_parse)?,
        error_code: row.get("error_code")?,
        revision: row.get("revision")?,
        source: row.get("source")?,
        request_id: row.get("request_id")?,
    })
}

/// Reads an audit entry with its chain fields ([`AUDIT_CHAIN_COLUMNS`]).
pub(crate) fn chained_audit_from_row(row: &Row) -> Result<crate::ChainedAuditEntry, StoreError> {
    Ok(crate::ChainedAuditEntry {
        entry: audit_from_row(row)?,
        mac: row.get("mac")?,
        key_id: row.get("key_id")?,
    })
}

/// Decodes a `cluster_credentials` row (sealed values stay sealed).
pub(crate) fn credentials_from_row(row: &Row) -> Result<StoredCredentials, StoreError> {
    Ok(StoredCredentials {
        cluster_id: row.get("cluster_id")?,
        version: row.get("version")?,
        auth_type: parsed(row, "auth_type", AuthType::parse)?,
        sealed: row.json("sealed")?,
        key_id: row.get("key_id")?,
        expires_at: row.get("expires_at")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        origins: row
            .json::<fleetreg_model::CredentialOrigins>("origins")?
            .normalized(),
        unbound_at: row.get("unbound_at")?,
    })
}

/// Decodes a row of the expiring-credentials query (`cluster_id`, `name`,
/// `version`, `auth_type`, `expires_at`); `expired` relative to `now`.
pub(crate) fn expiring_from_row(
    row: &Row,
    now: DateTime<Utc>,
) -> Result<ExpiringCredentials, StoreError> {
    let expires_at: DateTime<Utc> = row.get("expires_at")?;
    Ok(ExpiringCredentials {
        cluster_id: row.get("cluster_id")?,
        cluster_name: row.get("name")?,
        version: row.get("version")?,
        auth_type: parsed(row, "auth_type", AuthType::parse)?,
        expires_at,
        expired: expires_at <= now,
        rotation: None,
    })
}

/// Decodes an `api_tokens` row.
pub(crate) fn token_from_row(row: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.get("id")?,
        name: row.get("name")?,
        role: parsed(row, "role", Role::parse)?,
        prefix: row.get("prefix")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
        node: row.get("node")?,
    })
}

/// The database's spelling of an audit result.
pub(crate) fn audit_result_str(result: &AuditResult) -> &'static str {
    match result {
        AuditResult::Success => "success",
        AuditResult::Failure => "failure",
    }
}

fn audit_result_parse(text: &str) -> Option<AuditResult> {
    match text {
        "success" => Some(AuditResult::Success),
        "failure" => Some(AuditResult::Failure),
        _ => None,
    }
}

/// The value of the indexed `state` column.
pub(crate) fn state_str(status: &ClusterStatus) -> &'static str {
    let state: ClusterState = status.state;
    state.as_str()
}
