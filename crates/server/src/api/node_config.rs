//! What an edge agent talks to: its node's desired configuration (as JSON
//! or rendered for Traefik, Caddy, a hosts file or zone files), the stream
//! that pushes it on every change, and the acknowledgement that doubles as
//! the heartbeat. An `agent` token reaches only its own node; readers and
//! writers reach every node.

use super::audit_of;
use super::edge::label_in_path;
use crate::auth::{Principal, Session};
use crate::error::ApiError;
use crate::extract::{ApiJson, PathText, Peer, QueryPairs};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use fleetreg_model::{
    CreatedToken, DnsLabel, ErrorCode, NodeAck, NodeConfig, NodeSync, Role, MAX_AGENT_ERROR,
};
use fleetreg_store::DesiredConfig;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// Comment lines that keep an idle stream (and the proxies on its way) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The node configuration routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/nodes/{name}/config", get(config))
        .route("/api/v1/nodes/{name}/config/stream", get(stream))
        .route("/api/v1/nodes/{name}/ack", post(acknowledge))
        .route("/api/v1/nodes/{name}/token", post(create_token))
}

/// A node's desired configuration at the revision it last changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeConfigDocument {
    /// The node.
    pub node: DnsLabel,
    /// The change-log revision of its last change (the zone files' serial).
    pub revision: i64,
    /// What it should run.
    pub config: NodeConfig,
}

impl From<DesiredConfig> for NodeConfigDocument {
    fn from(desired: DesiredConfig) -> Self {
        NodeConfigDocument {
            node: desired.config.node.clone(),
            revision: desired.revision,
            config: desired.config,
        }
    }
}

/// The node named by the path, if the caller may act for it: an agent token
/// only for its own node (403 otherwise, without saying whether it exists).
fn node_for(principal: Option<&Principal>, raw: &str) -> Result<DnsLabel, ApiError> {
    if let Some(principal) = principal {
        if !principal.may_act_for_node(raw) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this agent token is bound to another node",
            ));
        }
    }
    label_in_path(raw, ErrorCode::NodeNotFound, "node")
}

/// A node's desired configuration: JSON by default, or rendered with
/// `format=traefik` (file-provider YAML), `caddy` (JSON for `POST /load`),
/// `hosts` (a marked hosts-file block) or `zone` (RFC 1035 zone files).
#[utoipa::path(get, path = "/api/v1/nodes/{name}/config", tag = "edge",
    params(("name" = String, Path), ("format" = Option<String>, Query, description = "json (default), traefik, caddy, hosts or zone")),
    responses((status = 200, body = NodeConfigDocument, description = "JSON, or text/plain when rendered"),
              (status = 400, description = "VALIDATION_ERROR: unknown format, or one the node's kind has no use for"),
              (status = 403, description = "FORBIDDEN: an agent token of another node"),
              (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn config(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    PathText(name): PathText,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let node = node_for(principal.as_deref(), &name)?;
    let format = pairs
        .into_iter()
        .find(|(key, _)| key == "format")
        .map(|(_, value)| value);
    let desired = state.store.desired_config(&node).await?;
    match format.as_deref() {
        None | Some("json") => Ok(Json(NodeConfigDocument::from(desired)).into_response()),
        Some(format) => {
            let text = crate::edge_sync::render(&desired, format)?;
            Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
    }
}

/// One `config` frame of the stream.
fn config_frame(desired: DesiredConfig) -> Bytes {
    let revision = desired.revision;
    let data =
        serde_json::to_string(&NodeConfigDocument::from(desired)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {revision}\nevent: config\ndata: {data}\n\n"))
}

/// What the stream's loop carries from one frame to the next.
struct StreamState {
    state: AppState,
    node: DnsLabel,
    signal: tokio::sync::watch::Receiver<u64>,
    session: Option<Session>,
    first: Option<Bytes>,
}

/// The node's configuration, pushed (SSE): one `config` frame at once, then
/// one whenever its desired configuration changes or the sync controller
/// re-sends it (retry, manual push, reconciliation); `: keepalive` comments
/// every 15 s. The agent applies each frame and acknowledges the revision.
#[utoipa::path(get, path = "/api/v1/nodes/{name}/config/stream", tag = "edge",
    params(("name" = String, Path), ("applied" = Option<i64>, Query, description = "the revision the agent runs (informational; the current configuration is always sent first)")),
    responses((status = 200, content_type = "text/event-stream", body = NodeConfigDocument,
                description = "`id: <revision>`, `event: config`, `data: <NodeConfigDocument>` frames and keep-alive comments"),
              (status = 403, description = "FORBIDDEN: an agent token of another node"),
              (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn stream(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    session: Option<Extension<Session>>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let node = node_for(principal.as_deref(), &name)?;
    if principal.as_deref().is_some_and(|p| p.role == Role::Agent) {
        // The node's own agent connecting is a heartbeat: a node that was
        // down is up again (its hostnames move back) before its
        // configuration is read.
        state
            .store
            .acknowledge(&node, NodeAck::default(), &audit_of(&headers, peer))
            .await?;
    }
    // Wake-ups come by the node's id (its events' resource id). Subscribe
    // before reading, so a change in between wakes the stream.
    let id = state.store.get_node(&node).await?.id;
    let signal = state.signals.subscribe(id);
    let first = config_frame(state.store.desired_config(&node).await?);
    let start = StreamState {
        state,
        node,
        signal,
        session: session.map(|Extension(s)| s),
        first: Some(first),
    };
    let frames = futures::stream::unfold(start, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((Ok::<Bytes, std::convert::Infallible>(first), s));
        }
        loop {
            tokio::select! {
                _ = s.state.shutdown.cancelled() => return None,
                changed = s.signal.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    match s.state.config_reads.read(&s.node).await {
                        Ok(Some(desired)) => return Some((Ok(config_frame(desired)), s)),
                        // The node was removed: end the stream.
                        Ok(None) => return None,
                        Err(error) => {
                            tracing::warn!(%error, node = %s.node, "cannot read a node's configuration for its stream");
                        }
                    }
                }
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    if let Some(session) = &s.session {
                        if !s.state.auth.still_valid(session).await {
                            return None;
                        }
                    }
                    return Some((Ok(Bytes::from_static(b": keepalive\n\n")), s));
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

/// An agent's heartbeat and acknowledgement: `{}` (alive),
/// `{"applied_revision": N}` (runs N), or `{"failed_revision": N, "error": "…"}`
/// (could not apply N; the node becomes `failed`).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/ack", tag = "edge", request_body = NodeAck,
    params(("name" = String, Path)),
    responses((status = 200, body = NodeSync), (status = 400, description = "VALIDATION_ERROR"),
              (status = 403, description = "FORBIDDEN: an agent token of another node"),
              (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn acknowledge(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(ack): ApiJson<NodeAck>,
) -> Result<Json<NodeSync>, ApiError> {
    let node = node_for(principal.as_deref(), &name)?;
    for (field, value) in [
        ("applied_revision", ack.applied_revision),
        ("failed_revision", ack.failed_revision),
    ] {
        if value.is_some_and(|r| r < 0) {
            return Err(ApiError::validation(
                field,
                "must be a revision (0 or more)",
            ));
        }
    }
    if ack.error.is_some() != ack.failed_revision.is_some() {
        return Err(ApiError::validation(
            "error",
            "error and failed_revision go together",
        ));
    }
    let mut ack = ack;
    ack.error = ack.error.map(|e| {
        e.chars()
            .filter(|c| !c.is_control())
            .take(MAX_AGENT_ERROR)
            .collect()
    });
    Ok(Json(
        state
            .store
            .acknowledge(&node, ack, &audit_of(&headers, peer))
            .await?,
    ))
}

/// Create the node's agent token (role `agent`: it reads this node's
/// configuration and acknowledges it, nothing else). Shown once; a new one
/// replaces (revokes) the previous token of the node.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/token", tag = "edge",
    params(("name" = String, Path)),
    responses((status = 201, body = CreatedToken), (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn create_token(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let node = label_in_path(&name, ErrorCode::NodeNotFound, "node")?;
    state.store.get_node(&node).await?;
    let created = crate::api::tokens::issue(
        &state,
        format!("agent-{node}"),
        Role::Agent,
        None,
        Some(node.to_string()),
        true,
        &audit_of(&headers, peer),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}
