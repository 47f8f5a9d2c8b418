//! `/api/v1/clusters/{id}/credentials`: upload, rotate, validate and delete a
//! cluster's credentials (seed 4.1). Uploads are validated against the cluster
//! before anything is stored; nothing secret is ever returned.
//! `/api/v1/credentials/expiring`: which clusters' credentials expire soon.

use super::audit_of;
use crate::credentials::Presentation;
use crate::credentials::{
    replace, validate_against, CredentialsError, Replace, ReplaceError, Replaced, MAX_WINDOW_DAYS,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ClusterId, Peer, QueryPairs};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fleetreg_model::{
    Audit, AuditResult, Component, CredentialBinding, CredentialInput, CredentialOrigins,
    CredentialStatus, CredentialValidation, CredentialWrite, ErrorCode, ExpiringCredentialsList,
    StoredCredentials,
};
use fleetreg_probe::Failure;
use fleetreg_store::{AuditOnly, BindCredentials, StoreError};
use serde_json::json;

/// The credential routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/clusters/{id}/credentials",
            post(store).delete(delete),
        )
        .route("/api/v1/clusters/{id}/credentials/rotate", post(rotate))
        .route("/api/v1/clusters/{id}/credentials/validate", post(validate))
        .route("/api/v1/clusters/{id}/credentials/rebind", post(rebind))
        .route("/api/v1/credentials/expiring", get(expiring))
}

/// Default length of the expiring list.
pub const DEFAULT_EXPIRING_LIMIT: u32 = 100;
/// Longest expiring list.
pub const MAX_EXPIRING_LIMIT: u32 = 1000;

/// Clusters whose credentials expire within `within_days` (default
/// `credentials.rotation_warning_days`) or have expired: counts of each and the
/// soonest first (expired first). Metadata only.
#[utoipa::path(get, path = "/api/v1/credentials/expiring", tag = "credentials",
    params(("within_days" = Option<u64>, Query, description = "Window in days from now (default credentials.rotation_warning_days, 0–36500)"),
           ("limit" = Option<u32>, Query, description = "Length of `items` (default 100, 1–1000)")),
    responses((status = 200, body = ExpiringCredentialsList), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn expiring(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<ExpiringCredentialsList>, ApiError> {
    let credentials = &state.health.credentials;
    let mut within_days = credentials.rotation_warning_days();
    let mut limit = DEFAULT_EXPIRING_LIMIT;
    for (key, value) in &pairs {
        match key.as_str() {
            "within_days" => {
                within_days = crate::query::integer("within_days", value, 0, MAX_WINDOW_DAYS)?
            }
            "limit" => limit = crate::query::integer("limit", value, 1, MAX_EXPIRING_LIMIT)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; accepted: within_days, limit",
                ))
            }
        }
    }
    Ok(Json(credentials.expiring(within_days, limit).await?))
}

/// Upload credentials: validated against the cluster first (`CREDENTIALS_INVALID`
/// and nothing stored when they fail), then sealed and stored as a new version,
/// replacing any; a health check and discovery with them follow.
#[utoipa::path(post, path = "/api/v1/clusters/{id}/credentials", tag = "credentials",
    params(crate::openapi::ClusterPath),
    request_body = CredentialInput,
    responses((status = 200, body = CredentialStatus),
              (status = 400, description = "CREDENTIALS_INVALID, VALIDATION_ERROR, MALFORMED_JSON"),
              (status = 404, description = "CLUSTER_NOT_FOUND"),
              (status = 412, description = "PRECONDITION_FAILED: another write of the credentials won")))]
pub async fn store(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CredentialInput>,
) -> Result<Response, ApiError> {
    let audit = audit_of(&headers, peer);
    put(&state, id, CredentialWrite::Store, input, &audit).await
}

/// Rotate credentials with zero downtime: the new ones are validated before they
/// replace the old; a failed rotation leaves the old ones in force.
#[utoipa::path(post, path = "/api/v1/clusters/{id}/credentials/rotate", tag = "credentials",
    params(crate::openapi::ClusterPath),
    request_body = CredentialInput,
    responses((status = 200, body = CredentialStatus),
              (status = 400, description = "CREDENTIALS_INVALID, VALIDATION_ERROR, MALFORMED_JSON"),
              (status = 404, description = "CLUSTER_NOT_FOUND, CREDENTIALS_NOT_FOUND"),
              (status = 412, description = "PRECONDITION_FAILED: another write of the credentials won")))]
pub async fn rotate(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CredentialInput>,
) -> Result<Response, ApiError> {
    let audit = audit_of(&headers, peer);
    if state.store.get_credentials(id).await?.is_none() {
        state.store.get_cluster(id).await?;
        return Err(fleetreg_store::StoreError::CredentialsNotFound(id).into());
    }
    put(&state, id, CredentialWrite::Rotate, input, &audit).await
}

/// Validate the stored credentials against the cluster now. Credentials are
/// bound to the origins (scheme, host, port) they were validated against:
/// after an update moved a URL elsewhere (`ORIGIN_CHANGED`) they are not
/// presented, and this answers `CREDENTIALS_ORIGIN_CHANGED` without
/// contacting anything (upload them again, or an admin re-binds them with
/// `POST …/credentials/rebind`).
#[utoipa::path(post, path = "/api/v1/clusters/{id}/credentials/validate", tag = "credentials",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = CredentialStatus),
              (status = 400, description = "CREDENTIALS_INVALID"),
              (status = 404, description = "CLUSTER_NOT_FOUND, CREDENTIALS_NOT_FOUND"),
              (status = 409, description = "CREDENTIALS_ORIGIN_CHANGED: the credentials are not bound to the cluster's origins (upload them again, or rebind)")))]
pub async fn validate(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audit = audit_of(&headers, peer);
    let cluster = state.store.get_cluster(id).await?;
    let stored = state
        .store
        .get_credentials(id)
        .await?
        .ok_or(fleetreg_store::StoreError::CredentialsNotFound(id))?;
    let credential = match state
        .health
        .credentials
        .for_cluster(&cluster)
        .await
        .map_err(credentials_error)?
    {
        Presentation::Present(credential) => credential,
        Presentation::Nothing => {
            return Err(fleetreg_store::StoreError::CredentialsNotFound(id).into())
        }
        Presentation::Withheld => {
            let entry = AuditOnly {
                action: "credentials.validate",
                resource_id: Some(id),
                result: AuditResult::Failure,
                error_code: Some(ErrorCode::CredentialsOriginChanged),
            };
            state.store.append_audit(entry, &audit).await?;
            return Err(origin_changed(&stored, &cluster));
        }
    };
    let (validation, failures) = validate_against(&state.health, &cluster, credential).await;
    audit_validation(&state, "credentials.validate", id, &validation, &audit).await?;
    if !validation.passed() {
        return Err(invalid(&validation, &failures));
    }
    Ok(Json(CredentialStatus {
        status: "valid".into(),
        validation,
        expires_at: stored.expires_at,
        version: stored.version,
    })
    .into_response())
}

/// Re-bind unbound credentials: the stored credentials are validated against
/// the cluster's current URLs (whatever they are bound to) and, when they
/// pass, bound to those origins (audited as `credentials.rebind`, with
/// `CLUSTER_CREDENTIALS_UPDATED`). Admin only: this sends the stored secrets
/// to wherever the URLs now point, which an operator may have chosen. One
/// credential write per cluster at a time; a failure is audited and changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/clusters/{id}/credentials/rebind", tag = "credentials",
    params(crate::openapi::ClusterPath),
    responses((status = 200, body = CredentialStatus, description = "status `rebound`"),
              (status = 400, description = "CREDENTIALS_INVALID: the new origins refused them; still unbound"),
              (status = 404, description = "CLUSTER_NOT_FOUND, CREDENTIALS_NOT_FOUND"),
              (status = 412, description = "PRECONDITION_FAILED: the credentials or the cluster changed during the rebind")))]
pub async fn rebind(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audit = &audit_of(&headers, peer);
    let cluster = state.store.get_cluster(id).await?;
    let credentials = &state.health.credentials;
    let _writes = credentials.lock_writes(id).await;
    let stored = state
        .store
        .get_credentials(id)
        .await?
        .ok_or(fleetreg_store::StoreError::CredentialsNotFound(id))?;
    let version = stored.version;
    let credential = credentials
        .opened(stored)
        .await
        .map_err(credentials_error)?;
    let origins = CredentialOrigins::of(&cluster);
    let (validation, failures) = validate_against(&state.health, &cluster, credential).await;
    audit_validation(&state, "credentials.validate", id, &validation, audit).await?;
    if !validation.passed() {
        let entry = AuditOnly {
            action: "credentials.rebind",
            resource_id: Some(id),
            result: AuditResult::Failure,
            error_code: Some(ErrorCode::CredentialsInvalid),
        };
        state.store.append_audit(entry, audit).await?;
        return Err(invalid(&validation, &failures));
    }
    let bind = BindCredentials {
        cluster_id: id,
        expected_version: version,
        origins,
    };
    let bound = state
        .store
        .bind_credentials(bind, audit)
        .await
        .map_err(|e| credentials_error(e.into()))?;
    if bound.binding() != CredentialBinding::Bound {
        // The cluster moved again while it was being validated.
        let now = state.store.get_cluster(id).await?;
        return Err(origin_changed(&bound, &now));
    }
    crate::credentials::check_in_background(&state.store, &state.health, cluster);
    Ok(Json(CredentialStatus {
        status: "rebound".into(),
        validation,
        expires_at: bound.expires_at,
        version: bound.version,
    })
    .into_response())
}

/// `CREDENTIALS_ORIGIN_CHANGED` for `stored`, not bound to `cluster`'s origins.
fn origin_changed(stored: &StoredCredentials, cluster: &fleetreg_model::Cluster) -> ApiError {
    let current = CredentialOrigins::of(cluster);
    let moved: Vec<&str> = stored
        .origins
        .moved(&current)
        .into_iter()
        .map(CredentialOrigins::field)
        .collect();
    ApiError::new(
        ErrorCode::CredentialsOriginChanged,
        format!(
            "the credentials of cluster {} are bound to the origins they were validated \
             against, and the cluster's URLs have moved since; they are presented nowhere until \
             uploaded again or re-bound by an admin (POST …/credentials/rebind)",
            cluster.id
        ),
    )
    .with_details(json!({
        "binding": stored.binding(),
        "bound_origins": stored.origins,
        "current_origins": current,
        "moved": moved,
    }))
}

/// Delete a cluster's credentials; checks continue without them.
#[utoipa::path(delete, path = "/api/v1/clusters/{id}/credentials", tag = "credentials",
    params(crate::openapi::ClusterPath),
    responses((status = 204, description = "deleted"),
              (status = 404, description = "CLUSTER_NOT_FOUND, CREDENTIALS_NOT_FOUND")))]
pub async fn delete(
    State(state): State<AppState>,
    ClusterId(id): ClusterId,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let audit = audit_of(&headers, peer);
    state
        .health
        .credentials
        .delete(id, &audit)
        .await
        .map_err(credentials_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Store or rotate through [`replace`] (shape check, kubeconfig safety,
/// validation against the cluster, then seal and store; then a check and
/// discovery in the background), one credential write per cluster at a time.
async fn put(
    state: &AppState,
    id: uuid::Uuid,
    write: CredentialWrite,
    input: CredentialInput,
    audit: &Audit,
) -> Result<Response, ApiError> {
    let cluster = state.store.get_cluster(id).await?;
    let writes = state.health.credentials.lock_writes(id).await;
    let replacement = Replace {
        write,
        input: &input,
        expected_version: None,
        audit,
    };
    let Replaced { stored, validation } =
        match replace(&state.store, &state.health, cluster, replacement, &writes).await {
            Ok(replaced) => replaced,
            Err(ReplaceError::Shape(error)) => return Err(error.into()),
            Err(ReplaceError::Unusable(error)) => {
                return Err(
                    ApiError::new(ErrorCode::CredentialsInvalid, error.to_string())
                        .with_details(json!({ "field": error.field() })),
                )
            }
            Err(ReplaceError::Rejected {
                validation,
                failures,
            }) => return Err(invalid(&validation, &failures)),
            Err(ReplaceError::Credentials(error)) => return Err(credentials_error(error)),
        };
    Ok(Json(CredentialStatus {
        status: write.status().into(),
        validation,
        expires_at: stored.expires_at,
        version: stored.version,
    })
    .into_response())
}

/// `CREDENTIALS_INVALID` with the per-component outcome and causes, both keyed
/// by the component's field in `validation` (causes never contain credentials).
fn invalid(validation: &CredentialValidation, failures: &[Failure]) -> ApiError {
    let causes: serde_json::Map<String, serde_json::Value> = failures
        .iter()
        .map(|f| (validation_field(f.component).to_owned(), json!(f.cause)))
        .collect();
    ApiError::new(
        ErrorCode::CredentialsInvalid,
        "the credentials failed validation against the cluster; nothing was stored",
    )
    .with_details(json!({ "validation": validation, "causes": causes }))
}

/// The field of [`CredentialValidation`] that holds `component`'s outcome.
fn validation_field(component: Component) -> &'static str {
    match component {
        Component::ApiServer => "api_server",
        Component::Prometheus => "prometheus",
        Component::Tempo => "tempo",
        Component::Loki => "loki",
    }
}

async fn audit_validation(
    state: &AppState,
    action: &'static str,
    id: uuid::Uuid,
    validation: &CredentialValidation,
    audit: &Audit,
) -> Result<(), ApiError> {
    let passed = validation.passed();
    let entry = AuditOnly {
        action,
        resource_id: Some(id),
        result: if passed {
            AuditResult::Success
        } else {
            AuditResult::Failure
        },
        error_code: (!passed).then_some(ErrorCode::CredentialsInvalid),
    };
    Ok(state.store.append_audit(entry, audit).await?)
}

fn credentials_error(error: CredentialsError) -> ApiError {
    match error {
        CredentialsError::Store(StoreError::PreconditionFailed {
            expected,
            actual,
            id,
        }) => {
            let read = match expected {
                0 => "none were stored".to_owned(),
                version => format!("version {version} was read"),
            };
            ApiError::new(
                ErrorCode::PreconditionFailed,
                format!(
                    "the credentials of cluster {id} changed while this write was in progress \
                     ({read}; another write has version {actual}); nothing was stored, try again"
                ),
            )
            .with_details(json!({ "read_version": expected, "current_version": actual }))
        }
        CredentialsError::Store(error) => error.into(),
        CredentialsError::Invalid(error) => {
            ApiError::new(ErrorCode::CredentialsInvalid, error.to_string())
                .with_details(json!({ "field": error.field() }))
        }
        vault @ CredentialsError::Vault { .. } => ApiError::internal(vault),
        secret @ CredentialsError::Secret { .. } => ApiError::internal(secret),
    }
}
