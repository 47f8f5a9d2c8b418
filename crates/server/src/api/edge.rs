//! The edge registry (seed service-registry-push-sync.md): domains, edge
//! nodes and services by name, each with `If-Match` on writes, and the
//! routing of each service with its computed hostname table.

use super::{audit_of, with_etag, IfMatch};
use crate::error::ApiError;
use crate::extract::{ApiJson, PathText, Peer, QueryPairs};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use fleetreg_model::{
    DnsLabel, Domain, DomainName, DomainRequest, ErrorCode, HostRoute, Node, NodeKind, NodeRequest,
    Routing, RoutingRequest, Service, ServiceRequest, ServiceState,
};
use serde::Serialize;
use std::future::Future;
use utoipa::ToSchema;

/// The edge registry routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/domains", get(list_domains).post(create_domain))
        .route(
            "/api/v1/domains/{name}",
            get(get_domain).put(update_domain).delete(delete_domain),
        )
        .route("/api/v1/nodes", get(list_nodes).post(create_node))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).put(update_node).delete(delete_node),
        )
        .route("/api/v1/services", get(list_services).post(create_service))
        .route(
            "/api/v1/services/{name}",
            get(get_service).put(update_service).delete(delete_service),
        )
        .route("/api/v1/routing", get(list_routings))
        .route(
            "/api/v1/routing/{service}",
            get(get_routing)
                .put(configure_routing)
                .delete(delete_routing),
        )
        .route("/api/v1/routes", get(routes))
}

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    /// The items, by name.
    pub items: Vec<T>,
}

/// The computed hostname table.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteTable {
    /// Every published hostname, its serving node and carriers.
    pub routes: Vec<HostRoute>,
}

/// A DNS label from a path; anything else names no such `kind` (404 `code`).
pub(crate) fn label_in_path(raw: &str, code: ErrorCode, kind: &str) -> Result<DnsLabel, ApiError> {
    DnsLabel::parse("name", raw).map_err(|_| ApiError::not_found(code, kind, raw))
}

fn domain_in_path(raw: &str) -> Result<DomainName, ApiError> {
    DomainName::parse("name", raw)
        .map_err(|_| ApiError::not_found(ErrorCode::DomainNotFound, "domain", raw))
}

/// The revision `If-Match` requires, decided against `current` when it lists several.
async fn expected<F>(headers: &HeaderMap, current: F) -> Result<Option<i64>, ApiError>
where
    F: Future<Output = Result<i64, fleetreg_store::StoreError>>,
{
    IfMatch::from_headers(headers)?
        .required_revision(async { Ok(current.await?) })
        .await
}

/// 201 with the resource, its `ETag` and `Location`.
fn created<T: Serialize>(revision: i64, location: String, body: T) -> Response {
    let mut response = with_etag(StatusCode::CREATED, revision, body);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

const IF_MATCH: &str = "ETags (`\"revision\"`) of which one must be current";

/// Register a domain.
#[utoipa::path(post, path = "/api/v1/domains", tag = "edge", request_body = DomainRequest,
    responses((status = 201, body = Domain), (status = 400, description = "VALIDATION_ERROR"),
              (status = 409, description = "DOMAIN_ALREADY_EXISTS")))]
pub async fn create_domain(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DomainRequest>,
) -> Result<Response, ApiError> {
    let (name, fields) = request.validate_create()?;
    let domain = state
        .store
        .create_domain(name, fields, &audit_of(&headers, peer))
        .await?;
    Ok(created(
        domain.revision,
        format!("/api/v1/domains/{}", domain.name),
        domain,
    ))
}

/// Every domain, by name.
#[utoipa::path(get, path = "/api/v1/domains", tag = "edge",
    responses((status = 200, body = Items<Domain>)))]
pub async fn list_domains(State(state): State<AppState>) -> Result<Json<Items<Domain>>, ApiError> {
    Ok(Json(Items {
        items: state.store.list_domains().await?,
    }))
}

/// A domain.
#[utoipa::path(get, path = "/api/v1/domains/{name}", tag = "edge", params(("name" = String, Path)),
    responses((status = 200, body = Domain), (status = 404, description = "DOMAIN_NOT_FOUND")))]
pub async fn get_domain(
    State(state): State<AppState>,
    PathText(name): PathText,
) -> Result<Response, ApiError> {
    let domain = state.store.get_domain(&domain_in_path(&name)?).await?;
    Ok(with_etag(StatusCode::OK, domain.revision, domain))
}

/// Change a domain's description or region tag. Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/domains/{name}", tag = "edge", request_body = DomainRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 200, body = Domain), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "DOMAIN_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn update_domain(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<DomainRequest>,
) -> Result<Response, ApiError> {
    let name = domain_in_path(&name)?;
    let fields = request.validate_update(&name)?;
    let revision = expected(&headers, async {
        Ok(state.store.get_domain(&name).await?.revision)
    })
    .await?;
    let domain = state
        .store
        .update_domain(name, fields, revision, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, domain.revision, domain))
}

/// Remove a domain (refused while a routing names it). Honours `If-Match`.
#[utoipa::path(delete, path = "/api/v1/domains/{name}", tag = "edge",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 204, description = "removed"), (status = 404, description = "DOMAIN_NOT_FOUND"),
              (status = 409, description = "RESOURCE_IN_USE (details: the services routed through it)"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete_domain(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let name = domain_in_path(&name)?;
    let revision = expected(&headers, async {
        Ok(state.store.get_domain(&name).await?.revision)
    })
    .await?;
    state
        .store
        .delete_domain(name, revision, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn node_in_path(raw: &str) -> Result<DnsLabel, ApiError> {
    label_in_path(raw, ErrorCode::NodeNotFound, "node")
}

/// Register an edge node: a `vps` (overlay and public address, region,
/// provider, ssh user) or a `laptop` (overlay address, user).
#[utoipa::path(post, path = "/api/v1/nodes", tag = "edge", request_body = NodeRequest,
    responses((status = 201, body = Node), (status = 400, description = "VALIDATION_ERROR"),
              (status = 409, description = "NODE_ALREADY_EXISTS, NODE_ADDRESS_TAKEN")))]
pub async fn create_node(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NodeRequest>,
) -> Result<Response, ApiError> {
    let (name, kind, fields) = request.validate_create()?;
    let node = state
        .store
        .create_node(name, kind, fields, &audit_of(&headers, peer))
        .await?;
    Ok(created(
        node.revision,
        format!("/api/v1/nodes/{}", node.name),
        node,
    ))
}

/// Every node, by name; `kind` keeps one kind.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "edge",
    params(("kind" = Option<NodeKind>, Query, description = "vps or laptop")),
    responses((status = 200, body = Items<Node>), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn list_nodes(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Items<Node>>, ApiError> {
    let mut kind = None;
    for (key, value) in pairs {
        if key == "kind" {
            kind = Some(NodeKind::parse(&value).ok_or_else(|| {
                ApiError::validation("kind", format!("must be one of {}", NodeKind::expected()))
            })?);
        }
    }
    Ok(Json(Items {
        items: state.store.list_nodes(kind).await?,
    }))
}

/// A node.
#[utoipa::path(get, path = "/api/v1/nodes/{name}", tag = "edge", params(("name" = String, Path)),
    responses((status = 200, body = Node), (status = 404, description = "NODE_NOT_FOUND")))]
pub async fn get_node(
    State(state): State<AppState>,
    PathText(name): PathText,
) -> Result<Response, ApiError> {
    let node = state.store.get_node(&node_in_path(&name)?).await?;
    Ok(with_etag(StatusCode::OK, node.revision, node))
}

/// Change a node's addresses or tags (name and kind are immutable). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/nodes/{name}", tag = "edge", request_body = NodeRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 200, body = Node), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "NODE_NOT_FOUND"), (status = 409, description = "NODE_ADDRESS_TAKEN"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn update_node(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NodeRequest>,
) -> Result<Response, ApiError> {
    let name = node_in_path(&name)?;
    let current = state.store.get_node(&name).await?;
    let fields = request.validate_update(&current)?;
    let revision = expected(&headers, async { Ok(current.revision) }).await?;
    let node = state
        .store
        .update_node(name, fields, revision, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, node.revision, node))
}

/// Remove a node and its sync state (refused while a routing names it). Honours `If-Match`.
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "edge",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 204, description = "removed"), (status = 404, description = "NODE_NOT_FOUND"),
              (status = 409, description = "RESOURCE_IN_USE (details: the services routed through it)"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete_node(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let name = node_in_path(&name)?;
    let revision = expected(&headers, async {
        Ok(state.store.get_node(&name).await?.revision)
    })
    .await?;
    state
        .store
        .delete_node(name, revision, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn service_in_path(raw: &str) -> Result<DnsLabel, ApiError> {
    label_in_path(raw, ErrorCode::ServiceNotFound, "service")
}

/// Register a service by hand: its upstreams (`host:port`), subdomain
/// (default: its name) and, optionally, the cluster and namespace it runs in.
#[utoipa::path(post, path = "/api/v1/services", tag = "edge", request_body = ServiceRequest,
    responses((status = 201, body = Service), (status = 400, description = "VALIDATION_ERROR"),
              (status = 409, description = "SERVICE_ALREADY_EXISTS")))]
pub async fn create_service(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ServiceRequest>,
) -> Result<Response, ApiError> {
    let (name, fields) = request.validate_create()?;
    let service = state
        .store
        .create_service(name, fields, &audit_of(&headers, peer))
        .await?;
    Ok(created(
        service.revision,
        format!("/api/v1/services/{}", service.name),
        service,
    ))
}

/// Every service, by name; `state` keeps `active` or `gone` ones, `cluster`
/// (a cluster id) those of one cluster.
#[utoipa::path(get, path = "/api/v1/services", tag = "edge",
    params(("state" = Option<ServiceState>, Query, description = "active or gone"),
           ("cluster" = Option<uuid::Uuid>, Query, description = "a cluster id")),
    responses((status = 200, body = Items<Service>), (status = 400, description = "VALIDATION_ERROR")))]
pub async fn list_services(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Items<Service>>, ApiError> {
    let (mut wanted, mut cluster) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "state" => {
                wanted = Some(ServiceState::parse(&value).ok_or_else(|| {
                    ApiError::validation(
                        "state",
                        format!("must be one of {}", ServiceState::expected()),
                    )
                })?)
            }
            "cluster" => {
                cluster =
                    Some(uuid::Uuid::parse_str(&value).map_err(|_| {
                        ApiError::validation("cluster", "must be a cluster id (UUID)")
                    })?)
            }
            _ => {}
        }
    }
    Ok(Json(Items {
        items: state.store.list_services(wanted, cluster).await?,
    }))
}

/// A service.
#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "edge", params(("name" = String, Path)),
    responses((status = 200, body = Service), (status = 404, description = "SERVICE_NOT_FOUND")))]
pub async fn get_service(
    State(state): State<AppState>,
    PathText(name): PathText,
) -> Result<Response, ApiError> {
    let service = state.store.get_service(&service_in_path(&name)?).await?;
    Ok(with_etag(StatusCode::OK, service.revision, service))
}

/// Replace a service's fields (a `gone` service changed by hand becomes an
/// active manual one). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/services/{name}", tag = "edge", request_body = ServiceRequest,
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 200, body = Service), (status = 400, description = "VALIDATION_ERROR"),
              (status = 404, description = "SERVICE_NOT_FOUND"), (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn update_service(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ServiceRequest>,
) -> Result<Response, ApiError> {
    let name = service_in_path(&name)?;
    let fields = request.validate_update(&name)?;
    let revision = expected(&headers, async {
        Ok(state.store.get_service(&name).await?.revision)
    })
    .await?;
    let service = state
        .store
        .update_service(name, fields, revision, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, service.revision, service))
}

/// Remove a service (refused while it has a routing). Honours `If-Match`.
#[utoipa::path(delete, path = "/api/v1/services/{name}", tag = "edge",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 204, description = "removed"), (status = 404, description = "SERVICE_NOT_FOUND"),
              (status = 409, description = "RESOURCE_IN_USE: remove its routing first"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete_service(
    State(state): State<AppState>,
    PathText(name): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let name = service_in_path(&name)?;
    let revision = expected(&headers, async {
        Ok(state.store.get_service(&name).await?.revision)
    })
    .await?;
    state
        .store
        .delete_service(name, revision, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every service's routing, by service.
#[utoipa::path(get, path = "/api/v1/routing", tag = "edge",
    responses((status = 200, body = Items<Routing>)))]
pub async fn list_routings(
    State(state): State<AppState>,
) -> Result<Json<Items<Routing>>, ApiError> {
    Ok(Json(Items {
        items: state.store.list_routings().await?,
    }))
}

/// A service's routing.
#[utoipa::path(get, path = "/api/v1/routing/{service}", tag = "edge", params(("service" = String, Path)),
    responses((status = 200, body = Routing), (status = 404, description = "ROUTING_NOT_FOUND")))]
pub async fn get_routing(
    State(state): State<AppState>,
    PathText(service): PathText,
) -> Result<Response, ApiError> {
    let service = label_in_path(&service, ErrorCode::RoutingNotFound, "service")?;
    let routing = state.store.get_routing(&service).await?;
    Ok(with_etag(StatusCode::OK, routing.revision, routing))
}

/// Route a service (seed `configure-routing SERVICE DOMAINS NODES STRATEGY`):
/// its hostnames `subdomain.domain` for every domain, through the listed VPS
/// nodes, by `round-robin`, `primary-backup` or `geo`. Replaces any routing
/// of the service; every affected node is pushed its new configuration.
/// Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/routing/{service}", tag = "edge", request_body = RoutingRequest,
    params(("service" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 200, body = Routing), (status = 400, description = "VALIDATION_ERROR (a laptop among the nodes, a repeated name)"),
              (status = 404, description = "SERVICE_NOT_FOUND, DOMAIN_NOT_FOUND, NODE_NOT_FOUND"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn configure_routing(
    State(state): State<AppState>,
    PathText(service): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RoutingRequest>,
) -> Result<Response, ApiError> {
    let service = service_in_path(&service)?;
    let fields = request.validate()?;
    let revision = expected(&headers, async {
        Ok(state.store.get_routing(&service).await?.revision)
    })
    .await?;
    let routing = state
        .store
        .configure_routing(service, fields, revision, &audit_of(&headers, peer))
        .await?;
    Ok(with_etag(StatusCode::OK, routing.revision, routing))
}

/// Remove a service's routing: its hostnames leave every node. Honours `If-Match`.
#[utoipa::path(delete, path = "/api/v1/routing/{service}", tag = "edge",
    params(("service" = String, Path), ("If-Match" = Option<String>, Header, description = IF_MATCH)),
    responses((status = 204, description = "removed"), (status = 404, description = "ROUTING_NOT_FOUND"),
              (status = 412, description = "PRECONDITION_FAILED")))]
pub async fn delete_routing(
    State(state): State<AppState>,
    PathText(service): PathText,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let service = label_in_path(&service, ErrorCode::RoutingNotFound, "service")?;
    let revision = expected(&headers, async {
        Ok(state.store.get_routing(&service).await?.revision)
    })
    .await?;
    state
        .store
        .delete_routing(service, revision, &audit_of(&headers, peer))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every published hostname now: its service, domain, strategy, the node
/// serving it (after failover), the nodes carrying it and its upstreams.
#[utoipa::path(get, path = "/api/v1/routes", tag = "edge",
    responses((status = 200, body = RouteTable)))]
pub async fn routes(State(state): State<AppState>) -> Result<Json<RouteTable>, ApiError> {
    Ok(Json(RouteTable {
        routes: state.store.routing_plan().await?.routes,
    }))
}
