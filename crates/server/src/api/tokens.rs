//! `/api/v1/tokens`: create (the token is shown once), list and revoke API
//! tokens. Admins only (see `auth::permissions`).

use super::audit_of;
use crate::auth::{listed_prefix, new_token};
use crate::error::ApiError;
use crate::extract::{ApiJson, Peer};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use fleetreg_model::{ApiToken, Audit, CreatedToken, ErrorCode, Role, TokenCreateRequest};

/// The token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}", delete(revoke))
}

/// Create a token; the answer is the only time the token is shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreateRequest,
    responses((status = 201, body = CreatedToken), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn create(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<TokenCreateRequest>,
) -> Result<Response, ApiError> {
    request.validate()?;
    let created = issue(
        &state,
        request.name,
        request.role,
        request.expires_in_seconds,
        None,
        false,
        &audit_of(&headers, peer),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Mints a token named `name` with `role`, lasting `expires_in_seconds`
/// (forever when `None`), bound to the edge `node` if given; `replace`
/// revokes an existing token of that name first. The answer holds the token.
pub(crate) async fn issue(
    state: &AppState,
    name: String,
    role: Role,
    expires_in_seconds: Option<u64>,
    node: Option<String>,
    replace: bool,
    audit: &Audit,
) -> Result<CreatedToken, ApiError> {
    let token = new_token();
    let now = state.clock.now();
    let expires_at = match expires_in_seconds {
        Some(seconds) => Some(
            i64::try_from(seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| now.checked_add_signed(d))
                .filter(|t| fleetreg_model::is_storable_seconds(t.timestamp()))
                .ok_or_else(|| {
                    ApiError::validation("expires_in_seconds", "too large: ends after year 9999")
                })?,
        ),
        None => None,
    };
    let record = ApiToken {
        id: uuid::Uuid::now_v7(),
        name,
        role,
        prefix: listed_prefix(&token),
        created_at: now,
        expires_at,
        revoked_at: None,
        node,
    };
    let stored = state
        .store
        .create_token(record, state.auth.hasher().stored(&token), replace, audit)
        .await?;
    if replace {
        state.auth.forget();
    }
    Ok(CreatedToken {
        token,
        record: stored,
    })
}

/// Every token (never the token values), oldest first.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [ApiToken])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.store.list_tokens().await?))
}

/// Revoke a token; it stops working at once on this server (within seconds on
/// other replicas).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(crate::openapi::TokenPath),
    responses((status = 204, description = "revoked"), (status = 404, description = "TOKEN_NOT_FOUND")))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    // A malformed id names no token; a well-formed one that is not active is
    // the store's `TokenNotFound`, which maps to the same answer.
    let uuid = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::new(ErrorCode::TokenNotFound, format!("no active token {id}")))?;
    state
        .store
        .revoke_token(uuid, &audit_of(&headers, peer))
        .await?;
    state.auth.forget();
    Ok(StatusCode::NO_CONTENT)
}
