//! `/api/v1/clients`: the client registry (seed client-registry.md): create,
//! read, list with filters, update, delete, the lifecycle operations, the
//! history, the summary, and registry-file import and export.

use super::{audit_of, IfMatch, REVISION_HEADER};
use crate::error::ApiError;
use crate::extract::{ApiJson, BodyLimit, PathText, Peer, QueryPairs};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use fleetreg_model::{
    Client, ClientAction, ClientCreateRequest, ClientFilter, ClientHistoryEntry, ClientName,
    ClientSummary, ClientUpdateRequest, DeployRequest, DestroyRequest, ImportPlan,
    MaintenanceRequest, NotesRequest, RebuildRequest, RegistryFile, StatusRequest, VersionsRequest,
    DEFAULT_STALE_DAYS, MAX_HISTORY_PAGE,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Largest registry file an import accepts (a 20,000-client file is ~16 MiB).
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

/// The client routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clients", get(list).post(create))
        .route("/api/v1/clients/summary", get(summary))
        .route("/api/v1/clients/export", get(export))
        .route(
            "/api/v1/clients/import",
            post(import).layer(Extension(BodyLimit(MAX_IMPORT_BYTES))),
        )
        .route(
            "/api/v1/clients/{name}",
            get(get_one).put(update).delete(delete),
        )
        .route("/api/v1/clients/{name}/history", get(history))
        .route("/api/v1/clients/{name}/deploy", post(deploy))
        .route("/api/v1/clients/{name}/rebuild", post(rebuild))
        .route("/api/v1/clients/{name}/destroy", post(destroy))
        .route("/api/v1/clients/{name}/status", post(set_status))
        .route("/api/v1/clients/{name}/maintenance", post(maintenance))
        .route("/api/v1/clients/{name}/versions", post(versions))
        .route("/api/v1/clients/{name}/notes", post(notes))
}

/// A page of clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientPage {
    /// The clients, sorted by name.
    pub items: Vec<Client>,
    /// Clients matching the filter in all.
    pub total: u64,
    /// This page, 1-based.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
    /// Pages in all.
    pub total_pages: u64,
}

fn with_etag(status: StatusCode, client: Client) -> Response {
    super::with_etag(status, client.revision, client)
}

/// A client named in a path. A string that is not a valid name names no
/// client (404), except where the request would create it (400).
fn named(raw: &str) -> Result<ClientName, ApiError> {
    ClientName::parse(raw).map_err(|_| not_found(raw))
}

fn not_found(name: &str) -> ApiError {
    fleetreg_store::StoreError::ClientNotFound(name.to_owned()).into()
}

/// `If-Match`, decided against the client's current revision when it lists several.
async fn expected_revision(
    state: &AppState,
    headers: &HeaderMap,
    name: &ClientName,
) -> Result<Option<i64>, ApiError> {
    let current = async { Ok(state.store.get_client(name.as_str()).await?.revision) };
    IfMatch::from_headers(headers)?
        .required_revision(current)
        .await
}

/// Register a client (status `pending` unless given).
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = ClientCreateRequest,
    responses((status = 201, body = Client, headers(("ETag" = String, description = "The client's revision, for `If-Match`"),
                                                    ("Location" = String, description = "The new client's URL"))),
              (status = 400, description = "VALIDATION_ERROR, MALFORMED_JSON"), (status = 409, description = "CLIENT_ALREADY_EXISTS")))]
pub async fn create(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ClientCreateRequest>,
) -> Result<Response, ApiError> {
    let new = request.validate()?;
    let client = state
        .store
        .create_client(new, &audit_of(&headers, peer))
        .await?;
    let location = HeaderValue::from_str(&format!("/api/v1/clients/{}", client.name)).ok();
    let mut response = with_etag(StatusCode::CREATED, client);
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List clients, sorted by name. `stale_days=N` keeps the clients needing
/// updates: `stale_field` (default `last_full_update`) older than N days or
/// never recorded; destroyed clients are left out unless `status` is given.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients",
    params(("status" = Option<String>, Query), ("role" = Option<String>, Query),
           ("app" = Option<String>, Query, description = "has this app installed"),
           ("location" = Option<String>, Query, description = "server location"), ("server_type" = Option<String>, Query),
           ("stale_days" = Option<u32>, Query, description = "maintenance date older than this many days, or missing"),
           ("stale_field" = Option<String>, Query, description = "last_full_update (default), last_security_patch, last_os_update or last_backup_verified"),
           ("page" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "default 20, max 100")),
    responses((status = 200, body = ClientPage, headers(("X-Fleetreg-Revision" = i64, description = "The revision the list was read at"))),
              (status = 400, description = "VALIDATION_ERROR")))]
pub async fn list(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let today = state.clock.now().date_naive();
    let (filter, page) = ClientFilter::from_query(pairs, today)?;
    let list = state.store.list_clients(&filter, page).await?;
    let body = ClientPage {
        total_pages: page.total_pages(list.total),
        items: list.items,
        total: list.total,
        page: page.page,
        page_size: page.page_size,
    };
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&list.revision.to_string()) {
        response.headers_mut().insert(REVISION_HEADER, value);
    }
    Ok(response)
}

/// Counts by status and role, app and version spread, and stale counts.
#[utoipa::path(get, path = "/api/v1/clients/summary", tag = "clients",
    params(("stale_days" = Option<u32>, Query, description = "age that counts as stale (default 30)")),
    responses((status = 200, body = ClientSummary), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn summary(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<ClientSummary>, ApiError> {
    let mut stale_days = DEFAULT_STALE_DAYS;
    for (key, value) in pairs {
        match key.as_str() {
            "stale_days" => stale_days = crate::query::integer("stale_days", &value, 0, 36_500)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected stale_days",
                ))
            }
        }
    }
    let today = state.clock.now().date_naive();
    Ok(Json(state.store.client_summary(stale_days, today).await?))
}

/// The whole registry in the seed's `registry.yml` structure (as JSON),
/// sorted by name.
#[utoipa::path(get, path = "/api/v1/clients/export", tag = "clients",
    responses((status = 200, body = RegistryFile)))]
pub async fn export(State(state): State<AppState>) -> Result<Json<RegistryFile>, ApiError> {
    let clients = state.store.all_clients().await?;
    Ok(Json(RegistryFile::from_clients(&clients)))
}

/// Import a registry file: every entry is validated first (each problem is
/// listed in `details.problems` with its client and field, and nothing is
/// applied), then all are upserted in one transaction. Clients not in the
/// file are left alone. `dry_run=true` only reports the plan.
#[utoipa::path(post, path = "/api/v1/clients/import", tag = "clients", request_body = RegistryFile,
    params(("dry_run" = Option<bool>, Query, description = "only say what would change")),
    responses((status = 200, body = ImportPlan), (status = 400, description = "VALIDATION_ERROR (details.problems), MALFORMED_JSON")))]
pub async fn import(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
    ApiJson(file): ApiJson<RegistryFile>,
) -> Result<Json<ImportPlan>, ApiError> {
    let mut dry_run = false;
    for (key, value) in pairs {
        match key.as_str() {
            "dry_run" => dry_run = crate::query::boolean("dry_run", &value)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected dry_run",
                ))
            }
        }
    }
    let clients = file
        .validate()
        .map_err(|problems| ApiError::import_problems(&problems))?;
    let plan = state
        .store
        .import_clients(clients, dry_run, &audit_of(&headers, peer))
        .await?;
    Ok(Json(plan))
}

/// Get a client by name.
#[utoipa::path(get, path = "/api/v1/clients/{name}", tag = "clients",
    params(("name" = String, Path, description = "the client's name")),
    responses((status = 200, body = Client, headers(("ETag" = String, description = "The client's revision, for `If-Match`"))),
              (status = 404, description = "CLIENT_NOT_FOUND")))]
pub async fn get_one(
    State(state): State<AppState>,
    PathText(name): PathText,
) -> Result<Response, ApiError> {
    let name = named(&name)?;
    Ok(with_etag(
        StatusCode::OK,
        state.store.get_client(name.as_str()).await?,
    ))
}

/// Update a client: given fields replace the stored ones, `null` clears a
/// date; a `status` change must be a lifecycle move. Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/clients/{name}", tag = "clients", request_body = ClientUpdateRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "ETags (`\"revision\"`) of which one must be current")),
    responses((status = 200, body = Client), (status = 400, description = "VALIDATION_ERROR"), (status = 404, description = "CLIENT_NOT_FOUND"),
              (status = 409, description = "INVALID_STATUS_TRANSITION, CLIENT_DESTROYED"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn update(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ClientUpdateRequest>,
) -> Result<Response, ApiError> {
    let name = named(&name)?;
    let expected = expected_revision(&state, &headers, &name).await?;
    let client = state
        .store
        .update_client(&name, expected, request, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, client))
}

/// Remove a client's entry (its history stays readable). To keep the entry
/// for the audit trail, destroy the client instead. Honours `If-Match`.
#[utoipa::path(delete, path = "/api/v1/clients/{name}", tag = "clients",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "ETags (`\"revision\"`) of which one must be current")),
    responses((status = 204, description = "deleted"), (status = 404, description = "CLIENT_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let name = named(&name)?;
    let expected = expected_revision(&state, &headers, &name).await?;
    state
        .store
        .delete_client(&name, expected, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every past state of a client, newest first (also after destroy and
/// deletion); `before` pages back by revision.
#[utoipa::path(get, path = "/api/v1/clients/{name}/history", tag = "clients",
    params(("name" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "default 100"),
           ("before" = Option<i64>, Query, description = "only revisions below this")),
    responses((status = 200, body = [ClientHistoryEntry]), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLIENT_NOT_FOUND")))]
pub async fn history(
    State(state): State<AppState>,
    PathText(name): PathText,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Vec<ClientHistoryEntry>>, ApiError> {
    let name = named(&name)?;
    let mut limit = 100;
    let mut before = None;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => limit = crate::query::integer("limit", &value, 1, MAX_HISTORY_PAGE)?,
            "before" => {
                before = Some(crate::query::integer("before", &value, 1, i64::MAX)?);
            }
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected limit or before",
                ))
            }
        }
    }
    Ok(Json(
        state
            .store
            .client_history(name.as_str(), before, limit)
            .await?,
    ))
}

/// Runs a lifecycle operation on the client in the path.
async fn act(
    state: AppState,
    raw_name: &str,
    caller: crate::extract::Caller,
    headers: HeaderMap,
    action: ClientAction,
) -> Result<Response, ApiError> {
    let name = if action.creates() {
        ClientName::parse(raw_name)?
    } else {
        named(raw_name)?
    };
    let expected = expected_revision(&state, &headers, &name).await?;
    let client = state
        .store
        .act_on_client(&name, expected, action, &audit_of(&headers, caller))
        .await?;
    Ok(with_etag(StatusCode::OK, client))
}

/// Deploy: creates the client if missing, sets it `deployed` with the given
/// server details, the deployment date (default today) and maintenance dates;
/// also re-deploys a destroyed client.
#[utoipa::path(post, path = "/api/v1/clients/{name}/deploy", tag = "clients", request_body = DeployRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "CLIENT_NOT_FOUND: only with `If-Match`, which never creates a client"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn deploy(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DeployRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Deploy(request)).await
}

/// Rebuild: refreshes server details and sets `last_full_update` (deployed
/// or maintenance clients only).
#[utoipa::path(post, path = "/api/v1/clients/{name}/rebuild", tag = "clients", request_body = RebuildRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"),
              (status = 409, description = "INVALID_STATUS_TRANSITION"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn rebuild(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RebuildRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Rebuild(request)).await
}

/// Destroy: status `destroyed` with its date; everything else is kept.
#[utoipa::path(post, path = "/api/v1/clients/{name}/destroy", tag = "clients", request_body = DestroyRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn destroy(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DestroyRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Destroy(request)).await
}

/// Move the client to `deployed`, `maintenance` or `offboarding`.
#[utoipa::path(post, path = "/api/v1/clients/{name}/status", tag = "clients", request_body = StatusRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"),
              (status = 409, description = "INVALID_STATUS_TRANSITION (details.from, details.to)"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn set_status(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<StatusRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Status(request)).await
}

/// Stamp one maintenance date (default today).
#[utoipa::path(post, path = "/api/v1/clients/{name}/maintenance", tag = "clients", request_body = MaintenanceRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"),
              (status = 409, description = "CLIENT_DESTROYED"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn maintenance(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<MaintenanceRequest>,
) -> Result<Response, ApiError> {
    act(
        state,
        &name,
        peer,
        headers,
        ClientAction::Maintenance(request),
    )
    .await
}

/// Set component versions (merged; `null` removes one).
#[utoipa::path(post, path = "/api/v1/clients/{name}/versions", tag = "clients", request_body = VersionsRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"),
              (status = 409, description = "CLIENT_DESTROYED"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn versions(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<VersionsRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Versions(request)).await
}

/// Replace the notes (also on a destroyed client).
#[utoipa::path(post, path = "/api/v1/clients/{name}/notes", tag = "clients", request_body = NotesRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Client), (status = 404, description = "CLIENT_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn notes(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NotesRequest>,
) -> Result<Response, ApiError> {
    act(state, &name, peer, headers, ClientAction::Notes(request)).await
}
