//! Domains, edge nodes, services, routings and the nodes' push-sync state.
//! Every registry change appends its event and an audit entry, then
//! [`recompute`]s the routing plan in the same transaction: a node whose
//! desired configuration changed gets it stored at the revision of its own
//! `NODE_CONFIG_CHANGED`. Heartbeats, push retries and liveness are
//! observations: events only when a node's sync status changes
//! (`NODE_SYNC_CHANGED`), a push is sent again (`NODE_PUSH`) or a route fails
//! over (`ROUTING_FAILOVER`), no audit entry (manual pushes and
//! reconciliations are audited).

use super::{check_revision, to_json, Write, WriteCx};
use crate::edge_rows::{
    ids_by_name, load_all_node_sync, load_domain, load_edge_state, load_node, load_routing,
    load_service, load_services, node_sync_from_row, services_routed_via, ROUTED_VIA_DOMAIN,
    ROUTED_VIA_NODE, ROUTED_VIA_SERVICE, SYNC_SELECT,
};
use crate::sql::{Sql, Value};
use crate::sync_rows::lock_cluster;
use crate::{LivenessChange, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    DiscoveredService, DnsLabel, Domain, DomainFields, DomainName, EventType, Node, NodeAck,
    NodeFields, NodeKind, NodeSync, NodeSyncStatus, PushReason, Routing, RoutingFields,
    RoutingPlan, Service, ServiceFields, ServiceOrigin, ServiceState, ServiceSyncReport,
    MAX_AGENT_ERROR,
};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// What a [`recompute`] changed.
#[derive(Debug, Default)]
pub(crate) struct Recomputed {
    /// Hostnames whose serving node moved: `(hostname, from, to)`.
    pub failovers: Vec<(String, DnsLabel, DnsLabel)>,
    /// Nodes whose desired configuration changed, with its new revision.
    pub configs: Vec<(Uuid, i64)>,
}

impl Recomputed {
    /// The new desired revision of `node`, if its configuration changed.
    pub(crate) fn revision_of(&self, node: Uuid) -> Option<i64> {
        self.configs
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, revision)| *revision)
    }
}

/// Recomputes the routing plan inside the transaction (one `SELECT` per
/// table) and stores every node's desired configuration that changed, at the
/// revision of the `NODE_CONFIG_CHANGED` appended for it (push attempts
/// reset). `liveness` gives nodes' new `up` (not yet stored): hostnames whose
/// serving node moved between the plan before and after it get a
/// `ROUTING_FAILOVER` with `reason`.
pub(crate) async fn recompute(
    cx: &mut WriteCx<'_>,
    liveness: &[(Uuid, bool)],
    reason: &str,
) -> Result<Recomputed, StoreError> {
    let state = load_edge_state(cx.tx).await?;
    let mut snapshot = state.snapshot;
    let before = (!liveness.is_empty()).then(|| RoutingPlan::compute(&snapshot));
    for (view, (id, _)) in snapshot.nodes.iter_mut().zip(&state.stored) {
        if let Some((_, up)) = liveness.iter().find(|(node, _)| node == id) {
            view.up = *up;
        }
    }
    let plan = RoutingPlan::compute(&snapshot);
    let mut done = Recomputed::default();
    let mut changed_configs = Vec::new();
    if let Some(before) = &before {
        for (hostname, service, from, to) in before.moves(&plan) {
            let service_id = snapshot
                .services
                .iter()
                .find(|s| &s.name == service)
                .map_or(Uuid::nil(), |s| s.id);
            let payload = json!({
                "service": service,
                "hostname": hostname,
                "from": from,
                "to": to,
                "reason": reason,
            });
            let event = cx.append_event(EventType::RoutingFailover, service_id, payload)?;
            // Every move is audited too (issue 13: "each move is an event and an audit entry").
            cx.audit_success("routing.failover", Some(service_id), Some(event.revision))
                .await?;
            done.failovers
                .push((hostname.to_owned(), from.clone(), to.clone()));
        }
    }
    for (view, (id, stored)) in snapshot.nodes.iter().zip(&state.stored) {
        let config = serde_json::to_string(&plan.node_config(view))
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a node configuration: {e}")))?;
        if &config == stored {
            continue;
        }
        let revision = cx.upcoming_revision();
        let payload = json!({ "node": view.name, "desired_revision": revision });
        cx.append_event(EventType::NodeConfigChanged, *id, payload)?;
        changed_configs.push(vec![
            Value::from(*id),
            Value::from(config),
            Value::from(revision),
        ]);
        done.configs.push((*id, revision));
    }
    // A routing change rewrites every node's configuration: a few
    // multi-row statements instead of a round trip per node.
    cx.tx
        .execute_rows(CONFIG_UPDATE_HEAD, changed_configs, CONFIG_UPDATE_TAIL)
        .await?;
    Ok(done)
}

/// The start of the multi-row `UPDATE` of desired configurations (the rows
/// as a common table expression `v`, as `node_sync_batch` writes sync rows).
const CONFIG_UPDATE_HEAD: &str = "WITH v (node_id, desired_config, desired_revision) AS (VALUES ";

/// The end of the multi-row `UPDATE` of desired configurations; push
/// attempts start again.
const CONFIG_UPDATE_TAIL: &str = ") UPDATE edge_node_sync SET desired_config = v.desired_config, \
     desired_revision = v.desired_revision, push_attempts = 0 \
     FROM v WHERE edge_node_sync.node_id = v.node_id";

/// Re-routes when node `id`'s `up` flips from `before.up` to `up` (VPS
/// nodes only: a laptop carries no route), each move with `reason`; the
/// node's desired revision and push attempts after it ([`pushes_after`]:
/// with today's plan its own configuration does not change, as a VPS not
/// serving stands by with the same routes; its sync row stays right should
/// that change).
pub(crate) async fn reroute_if_flipped(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    before: &NodeSync,
    up: bool,
    reason: &str,
) -> Result<(i64, u32), StoreError> {
    let new_config = if before.up == up || before.kind != NodeKind::Vps {
        None
    } else {
        recompute(cx, &[(id, up)], reason).await?.revision_of(id)
    };
    Ok(pushes_after(before, new_config))
}

/// A node's desired revision and push attempts after a write that gave it
/// `new_config` (its new desired revision, if its configuration changed:
/// the attempts start again) or not.
pub(crate) fn pushes_after(before: &NodeSync, new_config: Option<i64>) -> (i64, u32) {
    match new_config {
        Some(revision) => (revision, 0),
        None => (before.desired_revision, before.push_attempts),
    }
}

/// Registers a domain.
pub(crate) struct CreateDomain {
    pub name: DomainName,
    pub fields: DomainFields,
}

#[async_trait]
impl Write for CreateDomain {
    type Reply = Domain;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Domain, StoreError>, StoreError> {
        let action = "domain.create";
        let domain = Domain {
            id: Uuid::now_v7(),
            name: self.name.clone(),
            description: self.fields.description.clone(),
            region: self.fields.region.clone(),
            revision: cx.upcoming_revision(),
            created_at: cx.at,
            updated_at: cx.at,
        };
        let sql = Sql::new(
            "INSERT INTO edge_domains (id, name, description, region, revision, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
        )
        .arg(domain.id)
        .arg(domain.name.as_str())
        .arg(domain.description.as_str())
        .arg(&domain.region)
        .arg(domain.revision)
        .arg(domain.created_at)
        .arg(domain.updated_at);
        if cx.tx.execute(&sql).await? == 0 {
            let taken = StoreError::DomainExists(self.name.to_string());
            return cx.refuse(action, None, taken).await;
        }
        changed(cx, action, EventType::DomainRegistered, domain.id, &domain).await?;
        Ok(Ok(domain))
    }
}

/// Changes a domain's description or region.
pub(crate) struct UpdateDomain {
    pub name: DomainName,
    pub fields: DomainFields,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for UpdateDomain {
    type Reply = Domain;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Domain, StoreError>, StoreError> {
        let action = "domain.update";
        let loaded = load_domain(cx.tx, &self.name).await?;
        let current = match found(cx, action, loaded, &self.name, self.expected_revision).await? {
            Ok(current) => current,
            Err(refused) => return Ok(Err(refused)),
        };
        if current.description == self.fields.description && current.region == self.fields.region {
            return Ok(Ok(current));
        }
        let domain = Domain {
            description: self.fields.description.clone(),
            region: self.fields.region.clone(),
            revision: cx.upcoming_revision(),
            updated_at: cx.at,
            ..current
        };
        let sql = Sql::new(
            "UPDATE edge_domains SET description = $2, region = $3, revision = $4, \
             updated_at = $5 WHERE id = $1",
        )
        .arg(domain.id)
        .arg(domain.description.as_str())
        .arg(&domain.region)
        .arg(domain.revision)
        .arg(domain.updated_at);
        cx.tx.execute(&sql).await?;
        changed(cx, action, EventType::DomainUpdated, domain.id, &domain).await?;
        Ok(Ok(domain))
    }
}

/// Removes a domain no routing names.
pub(crate) struct DeleteDomain {
    pub name: DomainName,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for DeleteDomain {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let loaded = load_domain(cx.tx, &self.name).await?;
        let action = "domain.delete";
        delete_unrouted(cx, action, loaded, &self.name, self.expected_revision).await
    }
}

/// The record of a registry change that took effect: its event
/// (`event_type` on `id`, with `payload` as JSON), the recompute and the
/// audit entry of `action` at the event's revision.
async fn changed(
    cx: &mut WriteCx<'_>,
    action: &'static str,
    event_type: EventType,
    id: Uuid,
    payload: &(impl serde::Serialize + Sync),
) -> Result<(), StoreError> {
    let event = cx.append_event(event_type, id, to_json(payload)?)?;
    recompute(cx, &[], "").await?;
    cx.audit_success(action, Some(id), Some(event.revision))
        .await
}

/// A registry row that updates and deletes address by name: a domain, a
/// node or a service.
trait Registered: Send {
    /// Its kind, as `InUse` and the `<what>_id` of its removal's payload name it.
    const WHAT: &'static str;
    /// Its table.
    const TABLE: &'static str;
    /// The event of its removal.
    const DELETED: EventType;
    /// The `ROUTED_VIA_*` query of the services whose routing names it.
    const ROUTED_VIA: &'static str;
    /// The refusal when no row has the name.
    const NOT_FOUND: fn(String) -> StoreError;
    /// Its id, revision and name.
    fn key(&self) -> (Uuid, i64, &str);
}

impl Registered for Domain {
    const WHAT: &'static str = "domain";
    const TABLE: &'static str = "edge_domains";
    const DELETED: EventType = EventType::DomainDeleted;
    const ROUTED_VIA: &'static str = ROUTED_VIA_DOMAIN;
    const NOT_FOUND: fn(String) -> StoreError = StoreError::DomainNotFound;
    fn key(&self) -> (Uuid, i64, &str) {
        (self.id, self.revision, self.name.as_str())
    }
}

impl Registered for Node {
    const WHAT: &'static str = "node";
    const TABLE: &'static str = "edge_nodes";
    const DELETED: EventType = EventType::NodeDeleted;
    const ROUTED_VIA: &'static str = ROUTED_VIA_NODE;
    const NOT_FOUND: fn(String) -> StoreError = StoreError::NodeNotFound;
    fn key(&self) -> (Uuid, i64, &str) {
        (self.id, self.revision, self.name.as_str())
    }
}

impl Registered for Service {
    const WHAT: &'static str = "service";
    const TABLE: &'static str = "edge_services";
    const DELETED: EventType = EventType::ServiceDeleted;
    const ROUTED_VIA: &'static str = ROUTED_VIA_SERVICE;
    const NOT_FOUND: fn(String) -> StoreError = StoreError::ServiceNotFound;
    fn key(&self) -> (Uuid, i64, &str) {
        (self.id, self.revision, self.name.as_str())
    }
}

/// The row an update or delete (`action`) of `name` acts on, `loaded` by
/// that name, when it exists at the revision `expected` names; else the
/// refusal, audited: `<what>NotFound` or `PreconditionFailed`.
async fn found<T: Registered>(
    cx: &mut WriteCx<'_>,
    action: &'static str,
    loaded: Option<T>,
    name: &(impl std::fmt::Display + Sync),
    expected: Option<i64>,
) -> Result<Result<T, StoreError>, StoreError> {
    let Some(row) = loaded else {
        return cx
            .refuse(action, None, (T::NOT_FOUND)(name.to_string()))
            .await;
    };
    let (id, revision, _) = row.key();
    if let Err(stale) = check_revision(expected, revision, id) {
        return cx.refuse(action, Some(id), stale).await;
    }
    Ok(Ok(row))
}

/// Deletes the row of `name` (`loaded` by it) at the revision `expected`
/// names, refused while a routing names it (`InUse`, with the services
/// routed through it); its removal event carries its id and name.
async fn delete_unrouted<T: Registered>(
    cx: &mut WriteCx<'_>,
    action: &'static str,
    loaded: Option<T>,
    name: &(impl std::fmt::Display + Sync),
    expected: Option<i64>,
) -> Result<Result<(), StoreError>, StoreError> {
    let row = match found(cx, action, loaded, name, expected).await? {
        Ok(row) => row,
        Err(refused) => return Ok(Err(refused)),
    };
    let (id, _, name) = row.key();
    let services = services_routed_via(cx.tx, T::ROUTED_VIA, id).await?;
    if !services.is_empty() {
        let in_use = StoreError::InUse {
            what: T::WHAT,
            name: name.to_owned(),
            services,
        };
        return cx.refuse(action, Some(id), in_use).await;
    }
    let sql = Sql::new(format!("DELETE FROM {} WHERE id = $1", T::TABLE)).arg(id);
    cx.tx.execute(&sql).await?;
    let payload = json!({ format!("{}_id", T::WHAT): id, "name": name });
    changed(cx, action, T::DELETED, id, &payload).await?;
    Ok(Ok(()))
}

/// `NodeAddressTaken` when another node than `except` has one of the
/// addresses of `fields` (as its overlay or public address).
async fn address_taken(
    cx: &mut WriteCx<'_>,
    fields: &NodeFields,
    except: Option<Uuid>,
) -> Result<Option<StoreError>, StoreError> {
    let mut wanted = vec![("overlay_address", fields.overlay_address.to_string())];
    if let Some(public) = fields.public_address {
        wanted.push(("public_address", public.to_string()));
    }
    let addresses = || wanted.iter().map(|(_, a)| Value::from(a.as_str()));
    let mut sql = Sql::new(
        "SELECT id, name, overlay_address, public_address FROM edge_nodes \
         WHERE overlay_address IN ",
    );
    sql.bind_tuple(addresses())
        .push(" OR public_address IN ")
        .bind_tuple(addresses())
        .push(" ORDER BY name");
    for row in cx.tx.fetch(&sql).await? {
        let id: Uuid = row.get("id")?;
        if Some(id) == except {
            continue;
        }
        let held = [
            row.get::<Option<String>>("overlay_address")?,
            row.get::<Option<String>>("public_address")?,
        ];
        if let Some((field, address)) = wanted
            .iter()
            .find(|(_, address)| held.iter().flatten().any(|h| h == address))
        {
            return Ok(Some(StoreError::NodeAddressTaken {
                field: (*field).to_owned(),
                address: address.clone(),
                node: row.get("name")?,
            }));
        }
    }
    Ok(None)
}

/// Registers a node with its sync state (`offline`, counted up until its
/// agent stays silent) and desired configuration.
pub(crate) struct CreateNode {
    pub name: DnsLabel,
    pub kind: NodeKind,
    pub fields: NodeFields,
}

#[async_trait]
impl Write for CreateNode {
    type Reply = Node;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Node, StoreError>, StoreError> {
        let action = "node.create";
        if load_node(cx.tx, &self.name).await?.is_some() {
            let taken = StoreError::NodeExists(self.name.to_string());
            return cx.refuse(action, None, taken).await;
        }
        if let Some(taken) = address_taken(cx, &self.fields, None).await? {
            return cx.refuse(action, None, taken).await;
        }
        let node = Node {
            id: Uuid::now_v7(),
            name: self.name.clone(),
            kind: self.kind,
            overlay_address: self.fields.overlay_address,
            public_address: self.fields.public_address,
            region: self.fields.region.clone(),
            provider: self.fields.provider.clone(),
            user: self.fields.user.clone(),
            revision: cx.upcoming_revision(),
            created_at: cx.at,
            updated_at: cx.at,
        };
        let sql = Sql::new(
            "INSERT INTO edge_nodes (id, name, kind, overlay_address, public_address, region, \
             provider, login, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .arg(node.id)
        .arg(node.name.as_str())
        .arg(node.kind.as_str())
        .arg(node.overlay_address.to_string())
        .arg(node.public_address.map(|a| a.to_string()))
        .arg(&node.region)
        .arg(&node.provider)
        .arg(&node.user)
        .arg(node.revision)
        .arg(node.created_at)
        .arg(node.updated_at);
        cx.tx.execute(&sql).await?;
        // The configuration is filled in by the recompute below (its own
        // NODE_CONFIG_CHANGED, which the node's agent stream waits for).
        let sync = Sql::new(
            "INSERT INTO edge_node_sync (node_id, status, desired_revision, desired_config, \
             push_attempts, up) VALUES ($1, $2, $3, '', 0, $4)",
        )
        .arg(node.id)
        .arg(NodeSyncStatus::Offline.as_str())
        .arg(node.revision)
        .arg(true);
        cx.tx.execute(&sync).await?;
        changed(cx, action, EventType::NodeRegistered, node.id, &node).await?;
        Ok(Ok(node))
    }
}

/// Changes a node's addresses or tags.
pub(crate) struct UpdateNode {
    pub name: DnsLabel,
    pub fields: NodeFields,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for UpdateNode {
    type Reply = Node;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Node, StoreError>, StoreError> {
        let action = "node.update";
        let loaded = load_node(cx.tx, &self.name).await?;
        let current = match found(cx, action, loaded, &self.name, self.expected_revision).await? {
            Ok(current) => current,
            Err(refused) => return Ok(Err(refused)),
        };
        let f = &self.fields;
        if (
            current.overlay_address,
            current.public_address,
            &current.region,
            &current.provider,
            &current.user,
        ) == (
            f.overlay_address,
            f.public_address,
            &f.region,
            &f.provider,
            &f.user,
        ) {
            return Ok(Ok(current));
        }
        if let Some(taken) = address_taken(cx, f, Some(current.id)).await? {
            return cx.refuse(action, Some(current.id), taken).await;
        }
        let node = Node {
            overlay_address: f.overlay_address,
            public_address: f.public_address,
            region: f.region.clone(),
            provider: f.provider.clone(),
            user: f.user.clone(),
            revision: cx.upcoming_revision(),
            updated_at: cx.at,
            ..current
        };
        let sql = Sql::new(
            "UPDATE edge_nodes SET overlay_address = $2, public_address = $3, region = $4, \
             provider = $5, login = $6, revision = $7, updated_at = $8 WHERE id = $1",
        )
        .arg(node.id)
        .arg(node.overlay_address.to_string())
        .arg(node.public_address.map(|a| a.to_string()))
        .arg(&node.region)
        .arg(&node.provider)
        .arg(&node.user)
        .arg(node.revision)
        .arg(node.updated_at);
        cx.tx.execute(&sql).await?;
        changed(cx, action, EventType::NodeUpdated, node.id, &node).await?;
        Ok(Ok(node))
    }
}

/// Removes a node no routing names, with its sync state.
pub(crate) struct DeleteNode {
    pub name: DnsLabel,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for DeleteNode {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let loaded = load_node(cx.tx, &self.name).await?;
        let action = "node.delete";
        delete_unrouted(cx, action, loaded, &self.name, self.expected_revision).await
    }
}

/// Inserts a service row.
async fn insert_service(cx: &mut WriteCx<'_>, s: &Service) -> Result<(), StoreError> {
    let sql = Sql::new(
        "INSERT INTO edge_services (id, name, subdomain, upstreams, cluster_id, namespace, \
         description, state, origin, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .arg(s.id)
    .arg(s.name.as_str())
    .arg(s.subdomain.as_str())
    .arg(Value::json(&s.upstreams)?)
    .arg(s.cluster_id)
    .arg(&s.namespace)
    .arg(s.description.as_str())
    .arg(s.state.as_str())
    .arg(s.origin.as_str())
    .arg(s.revision)
    .arg(s.created_at)
    .arg(s.updated_at);
    cx.tx.execute(&sql).await?;
    Ok(())
}

/// Rewrites a service row (by id; name and creation time stay).
async fn update_service(cx: &mut WriteCx<'_>, s: &Service) -> Result<(), StoreError> {
    let sql = Sql::new(
        "UPDATE edge_services SET subdomain = $2, upstreams = $3, cluster_id = $4, \
         namespace = $5, description = $6, state = $7, origin = $8, revision = $9, \
         updated_at = $10 WHERE id = $1",
    )
    .arg(s.id)
    .arg(s.subdomain.as_str())
    .arg(Value::json(&s.upstreams)?)
    .arg(s.cluster_id)
    .arg(&s.namespace)
    .arg(s.description.as_str())
    .arg(s.state.as_str())
    .arg(s.origin.as_str())
    .arg(s.revision)
    .arg(s.updated_at);
    cx.tx.execute(&sql).await?;
    Ok(())
}

/// Whether two services carry the same fields (everything but id, name,
/// revision and times).
fn same_fields(a: &Service, b: &Service) -> bool {
    (
        &a.subdomain,
        &a.upstreams,
        a.cluster_id,
        &a.namespace,
        &a.description,
        a.state,
        a.origin,
    ) == (
        &b.subdomain,
        &b.upstreams,
        b.cluster_id,
        &b.namespace,
        &b.description,
        b.state,
        b.origin,
    )
}

/// A validation error on `cluster_id` unless the cluster exists (its row
/// locked until commit, so it is not deleted meanwhile).
async fn check_cluster(
    cx: &mut WriteCx<'_>,
    cluster_id: Option<Uuid>,
) -> Result<Option<StoreError>, StoreError> {
    match cluster_id {
        Some(id) if !lock_cluster(cx.tx, id).await? => Ok(Some(StoreError::Invalid(
            fleetreg_model::Error::invalid("cluster_id", format!("no cluster {id}")),
        ))),
        _ => Ok(None),
    }
}

/// Registers a service by hand.
pub(crate) struct CreateService {
    pub name: DnsLabel,
    pub fields: ServiceFields,
}

#[async_trait]
impl Write for CreateService {
    type Reply = Service;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Service, StoreError>, StoreError> {
        let action = "service.create";
        if load_service(cx.tx, &self.name).await?.is_some() {
            let taken = StoreError::ServiceExists(self.name.to_string());
            return cx.refuse(action, None, taken).await;
        }
        if let Some(invalid) = check_cluster(cx, self.fields.cluster_id).await? {
            return cx.refuse(action, None, invalid).await;
        }
        let f = &self.fields;
        let service = Service {
            id: Uuid::now_v7(),
            name: self.name.clone(),
            subdomain: f.subdomain.clone(),
            upstreams: f.upstreams.clone(),
            cluster_id: f.cluster_id,
            namespace: f.namespace.clone(),
            description: f.description.clone(),
            state: ServiceState::Active,
            origin: ServiceOrigin::Manual,
            revision: cx.upcoming_revision(),
            created_at: cx.at,
            updated_at: cx.at,
        };
        insert_service(cx, &service).await?;
        let event = EventType::ServiceRegistered;
        changed(cx, action, event, service.id, &service).await?;
        Ok(Ok(service))
    }
}

/// Changes a service by hand (a `gone` one becomes an `active` manual one).
pub(crate) struct UpdateService {
    pub name: DnsLabel,
    pub fields: ServiceFields,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for UpdateService {
    type Reply = Service;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Service, StoreError>, StoreError> {
        let action = "service.update";
        let loaded = load_service(cx.tx, &self.name).await?;
        let current = match found(cx, action, loaded, &self.name, self.expected_revision).await? {
            Ok(current) => current,
            Err(refused) => return Ok(Err(refused)),
        };
        let f = &self.fields;
        let origin = match current.state {
            ServiceState::Gone => ServiceOrigin::Manual,
            ServiceState::Active => current.origin,
        };
        let next = Service {
            subdomain: f.subdomain.clone(),
            upstreams: f.upstreams.clone(),
            cluster_id: f.cluster_id,
            namespace: f.namespace.clone(),
            description: f.description.clone(),
            state: ServiceState::Active,
            origin,
            revision: cx.upcoming_revision(),
            updated_at: cx.at,
            ..current.clone()
        };
        if same_fields(&current, &next) {
            return Ok(Ok(current));
        }
        if next.cluster_id != current.cluster_id {
            if let Some(invalid) = check_cluster(cx, next.cluster_id).await? {
                return cx.refuse(action, Some(current.id), invalid).await;
            }
        }
        update_service(cx, &next).await?;
        changed(cx, action, EventType::ServiceUpdated, next.id, &next).await?;
        Ok(Ok(next))
    }
}

/// Removes a service without routing.
pub(crate) struct DeleteService {
    pub name: DnsLabel,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for DeleteService {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let loaded = load_service(cx.tx, &self.name).await?;
        let action = "service.delete";
        delete_unrouted(cx, action, loaded, &self.name, self.expected_revision).await
    }
}

/// Brings a cluster's discovered services into the registry: registers new
/// ones, updates changed ones (and ones back from `gone`), marks the
/// cluster's services no longer seen `gone`; manual services and another
/// cluster's active services of the same name are skipped. Audited only
/// when something changed (the server runs it periodically).
pub(crate) struct SyncClusterServices {
    pub cluster_id: Uuid,
    pub discovered: Vec<DiscoveredService>,
}

#[async_trait]
impl Write for SyncClusterServices {
    type Reply = ServiceSyncReport;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<ServiceSyncReport, StoreError>, StoreError> {
        let action = "service.sync";
        if !lock_cluster(cx.tx, self.cluster_id).await? {
            let missing = StoreError::NotFound(self.cluster_id.to_string());
            return cx.refuse(action, Some(self.cluster_id), missing).await;
        }
        let existing: BTreeMap<DnsLabel, Service> = load_services(cx.tx)
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut report = ServiceSyncReport::default();
        let mut seen = HashSet::new();
        let mut last_revision = None;
        for found in &self.discovered {
            if !seen.insert(found.name.clone()) {
                continue;
            }
            let f = &found.fields;
            let name = found.name.to_string();
            let current = existing.get(&found.name);
            match current {
                Some(s) if s.origin == ServiceOrigin::Manual => report.skipped.push(name),
                Some(s)
                    if s.state == ServiceState::Active
                        && s.cluster_id.is_some_and(|c| c != self.cluster_id) =>
                {
                    report.skipped.push(name)
                }
                Some(s) => {
                    let next = Service {
                        subdomain: f.subdomain.clone(),
                        upstreams: f.upstreams.clone(),
                        cluster_id: Some(self.cluster_id),
                        namespace: Some(found.namespace.clone()),
                        description: f.description.clone(),
                        state: ServiceState::Active,
                        revision: cx.upcoming_revision(),
                        updated_at: cx.at,
                        ..s.clone()
                    };
                    if same_fields(s, &next) {
                        report.unchanged += 1;
                        continue;
                    }
                    update_service(cx, &next).await?;
                    let event =
                        cx.append_event(EventType::ServiceUpdated, next.id, to_json(&next)?)?;
                    last_revision = Some(event.revision);
                    report.updated.push(name);
                }
                None => {
                    let service = Service {
                        id: Uuid::now_v7(),
                        name: found.name.clone(),
                        subdomain: f.subdomain.clone(),
                        upstreams: f.upstreams.clone(),
                        cluster_id: Some(self.cluster_id),
                        namespace: Some(found.namespace.clone()),
                        description: f.description.clone(),
                        state: ServiceState::Active,
                        origin: ServiceOrigin::Cluster,
                        revision: cx.upcoming_revision(),
                        created_at: cx.at,
                        updated_at: cx.at,
                    };
                    insert_service(cx, &service).await?;
                    let payload = to_json(&service)?;
                    let event =
                        cx.append_event(EventType::ServiceRegistered, service.id, payload)?;
                    last_revision = Some(event.revision);
                    report.registered.push(name);
                }
            }
        }
        for s in existing.values() {
            let ours = s.origin == ServiceOrigin::Cluster && s.cluster_id == Some(self.cluster_id);
            if !ours || s.state != ServiceState::Active || seen.contains(&s.name) {
                continue;
            }
            let gone = Service {
                state: ServiceState::Gone,
                revision: cx.upcoming_revision(),
                updated_at: cx.at,
                ..s.clone()
            };
            update_service(cx, &gone).await?;
            let event = cx.append_event(EventType::ServiceGone, gone.id, to_json(&gone)?)?;
            last_revision = Some(event.revision);
            report.gone.push(s.name.to_string());
        }
        report.registered.sort();
        report.updated.sort();
        report.gone.sort();
        report.skipped.sort();
        if let Some(revision) = last_revision {
            recompute(cx, &[], "").await?;
            cx.audit_success(action, Some(self.cluster_id), Some(revision))
                .await?;
        }
        Ok(Ok(report))
    }
}

/// Sets a service's routing, replacing any.
pub(crate) struct ConfigureRouting {
    pub service: DnsLabel,
    pub fields: RoutingFields,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for ConfigureRouting {
    type Reply = Routing;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Routing, StoreError>, StoreError> {
        let action = "routing.configure";
        let Some(service) = load_service(cx.tx, &self.service).await? else {
            let missing = StoreError::ServiceNotFound(self.service.to_string());
            return cx.refuse(action, None, missing).await;
        };
        let current = load_routing(cx.tx, service.id).await?;
        match (&current, self.expected_revision) {
            // `If-Match` names a revision of an existing routing: it never creates one.
            (None, Some(_)) => {
                let missing = StoreError::RoutingNotFound(self.service.to_string());
                return cx.refuse(action, Some(service.id), missing).await;
            }
            (Some(routing), expected) => {
                if let Err(stale) = check_revision(expected, routing.revision, service.id) {
                    return cx.refuse(action, Some(service.id), stale).await;
                }
            }
            (None, None) => {}
        }
        let f = &self.fields;
        let domain_names: Vec<&str> = f.domains.iter().map(DomainName::as_str).collect();
        let domains = ids_by_name(cx.tx, "edge_domains", &domain_names).await?;
        let mut domain_ids = Vec::with_capacity(f.domains.len());
        for name in &domain_names {
            match domains.iter().find(|(_, n, _)| n == name) {
                Some((id, _, _)) => domain_ids.push(*id),
                None => {
                    let missing = StoreError::DomainNotFound((*name).to_owned());
                    return cx.refuse(action, Some(service.id), missing).await;
                }
            }
        }
        let node_names: Vec<&str> = f.nodes.iter().map(DnsLabel::as_str).collect();
        let nodes = ids_by_name(cx.tx, "edge_nodes", &node_names).await?;
        let mut node_ids = Vec::with_capacity(f.nodes.len());
        for name in &node_names {
            match nodes.iter().find(|(_, n, _)| n == name) {
                Some((_, _, kind)) if kind.as_deref() != Some(NodeKind::Vps.as_str()) => {
                    let laptop = StoreError::Invalid(fleetreg_model::Error::invalid(
                        "nodes",
                        format!("{name} is a laptop; only vps nodes carry routes"),
                    ));
                    return cx.refuse(action, Some(service.id), laptop).await;
                }
                Some((id, _, _)) => node_ids.push(*id),
                None => {
                    let missing = StoreError::NodeNotFound((*name).to_owned());
                    return cx.refuse(action, Some(service.id), missing).await;
                }
            }
        }
        if let Some(routing) = &current {
            if (&routing.domains, &routing.nodes, routing.strategy)
                == (&f.domains, &f.nodes, f.strategy)
            {
                return Ok(Ok(routing.clone()));
            }
        }
        let routing = Routing {
            service: service.name.clone(),
            domains: f.domains.clone(),
            nodes: f.nodes.clone(),
            strategy: f.strategy,
            revision: cx.upcoming_revision(),
            created_at: current.as_ref().map_or(cx.at, |r| r.created_at),
            updated_at: cx.at,
        };
        let text = if current.is_some() {
            "UPDATE edge_routings SET domains = $2, nodes = $3, strategy = $4, revision = $5, \
             updated_at = $6 WHERE service_id = $1"
        } else {
            "INSERT INTO edge_routings (service_id, domains, nodes, strategy, revision, \
             updated_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        };
        let mut sql = Sql::new(text)
            .arg(service.id)
            .arg(Value::json(&routing.domains)?)
            .arg(Value::json(&routing.nodes)?)
            .arg(routing.strategy.as_str())
            .arg(routing.revision)
            .arg(routing.updated_at);
        if current.is_none() {
            sql = sql.arg(routing.created_at);
        }
        cx.tx.execute(&sql).await?;
        for (table, column, ids) in [
            ("edge_routing_domains", "domain_id", &domain_ids),
            ("edge_routing_nodes", "node_id", &node_ids),
        ] {
            let clear =
                Sql::new(format!("DELETE FROM {table} WHERE service_id = $1")).arg(service.id);
            cx.tx.execute(&clear).await?;
            if ids.is_empty() {
                continue;
            }
            let mut insert = Sql::new(format!(
                "INSERT INTO {table} (service_id, {column}) VALUES "
            ));
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    insert.push(", ");
                }
                insert.bind_tuple([Value::from(service.id), Value::from(*id)]);
            }
            cx.tx.execute(&insert).await?;
        }
        let event = EventType::RoutingConfigured;
        changed(cx, action, event, service.id, &routing).await?;
        Ok(Ok(routing))
    }
}

/// Removes a service's routing.
pub(crate) struct DeleteRouting {
    pub service: DnsLabel,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for DeleteRouting {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let action = "routing.delete";
        let missing = || StoreError::RoutingNotFound(self.service.to_string());
        let Some(service) = load_service(cx.tx, &self.service).await? else {
            return cx.refuse(action, None, missing()).await;
        };
        let Some(routing) = load_routing(cx.tx, service.id).await? else {
            return cx.refuse(action, Some(service.id), missing()).await;
        };
        if let Err(stale) = check_revision(self.expected_revision, routing.revision, service.id) {
            return cx.refuse(action, Some(service.id), stale).await;
        }
        let sql = Sql::new("DELETE FROM edge_routings WHERE service_id = $1").arg(service.id);
        cx.tx.execute(&sql).await?;
        let payload = json!({ "service": service.name });
        changed(cx, action, EventType::RoutingDeleted, service.id, &payload).await?;
        Ok(Ok(()))
    }
}

/// An agent's error as kept: control characters removed, at most
/// [`MAX_AGENT_ERROR`] characters.
fn agent_error(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_AGENT_ERROR)
        .collect()
}

/// Appends `NODE_SYNC_CHANGED` when the status moved from `old`; its revision.
fn sync_changed(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    old: NodeSyncStatus,
    sync: &NodeSync,
) -> Result<Option<i64>, StoreError> {
    if old == sync.status {
        return Ok(None);
    }
    let payload = json!({
        "node": sync.node,
        "old_status": old,
        "new_status": sync.status,
        "sync": sync,
    });
    Ok(Some(
        cx.append_event(EventType::NodeSyncChanged, id, payload)?
            .revision,
    ))
}

/// An agent's heartbeat and acknowledgement (not audited, like host
/// heartbeats). An error makes the node `failed`; an applied revision equal
/// to the desired one makes it `active` (attempts reset, error cleared); a
/// bare heartbeat brings an `offline` node to `active` and leaves a `failed`
/// one failed. A node that was down for its silence is up again, unless
/// its HTTP check fails, and re-routes.
pub(crate) struct Acknowledge {
    pub node: DnsLabel,
    pub ack: NodeAck,
}

#[async_trait]
impl Write for Acknowledge {
    type Reply = NodeSync;

    fn reads_node_sync(&self) -> Option<&str> {
        Some(self.node.as_str())
    }

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<NodeSync, StoreError>, StoreError> {
        let Some((id, before)) = cx.tx.node_sync(&self.node).await? else {
            return Ok(Err(StoreError::NodeNotFound(self.node.to_string())));
        };
        // Heartbeats arrive; whether the node is up is now the check's say.
        let up = before.check_ok;
        let (desired_revision, push_attempts) =
            reroute_if_flipped(cx, id, &before, up, "node_up").await?;
        let ack = &self.ack;
        let error = ack.error.as_deref().map(agent_error);
        let in_sync = error.is_none() && ack.applied_revision == Some(desired_revision);
        let status = match &error {
            Some(_) => NodeSyncStatus::Failed,
            None if in_sync || before.status == NodeSyncStatus::Offline => NodeSyncStatus::Active,
            None => before.status,
        };
        let last_error = match (&error, ack.applied_revision) {
            (Some(_), _) => error.clone(),
            (None, Some(_)) => None,
            (None, None) => before.last_error.clone(),
        };
        let after = NodeSync {
            status,
            desired_revision,
            applied_revision: ack.applied_revision.or(before.applied_revision),
            // A sync is a newly applied revision (or the first one in sync
            // after a failure), not every heartbeat repeating the same one.
            last_sync_at: match ack.applied_revision {
                Some(applied)
                    if Some(applied) != before.applied_revision
                        || (in_sync && before.status != NodeSyncStatus::Active) =>
                {
                    Some(cx.at)
                }
                _ => before.last_sync_at,
            },
            last_heartbeat_at: Some(cx.at),
            push_attempts: if in_sync { 0 } else { push_attempts },
            last_error,
            up,
            heartbeat_ok: true,
            ..before.clone()
        };
        cx.tx.stage_node_sync(id, &after);
        sync_changed(cx, id, before.status, &after)?;
        Ok(Ok(after))
    }
}

/// Counts a push of the desired revision to a node; at `max_attempts` the
/// node becomes `failed`. A push of a revision no longer desired is not
/// counted.
pub(crate) struct RecordPush {
    pub node: DnsLabel,
    pub revision: i64,
    pub max_attempts: u32,
}

#[async_trait]
impl Write for RecordPush {
    type Reply = NodeSync;

    fn reads_node_sync(&self) -> Option<&str> {
        Some(self.node.as_str())
    }

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<NodeSync, StoreError>, StoreError> {
        let Some((id, before)) = cx.tx.node_sync(&self.node).await? else {
            return Ok(Err(StoreError::NodeNotFound(self.node.to_string())));
        };
        if self.revision != before.desired_revision {
            return Ok(Ok(before));
        }
        let attempts = before.push_attempts.saturating_add(1);
        let status = if attempts >= self.max_attempts {
            NodeSyncStatus::Failed
        } else {
            before.status
        };
        let after = NodeSync {
            status,
            push_attempts: attempts,
            ..before.clone()
        };
        cx.tx.stage_node_sync(id, &after);
        if status != NodeSyncStatus::Failed {
            append_push(cx, id, &after, PushReason::Retry)?;
        }
        sync_changed(cx, id, before.status, &after)?;
        Ok(Ok(after))
    }
}

/// `NODE_PUSH` for `sync`: wakes the node's streams to send its configuration.
fn append_push(
    cx: &mut WriteCx<'_>,
    id: Uuid,
    sync: &NodeSync,
    reason: PushReason,
) -> Result<i64, StoreError> {
    let payload = json!({
        "node": sync.node,
        "desired_revision": sync.desired_revision,
        "attempt": sync.push_attempts,
        "reason": reason,
    });
    Ok(cx.append_event(EventType::NodePush, id, payload)?.revision)
}

/// Sends one node or every node its configuration again (`NODE_PUSH` each,
/// audited `sync.push` or `sync.reconcile`) and resets its push attempts: a
/// `failed` node gets its retries back, `active` while its heartbeats
/// arrive, else `offline`
/// (`NODE_SYNC_CHANGED`). A reconciliation of every node is recorded as the
/// schedule's last one (`edge_sync_settings.reconciled_at`).
pub(crate) struct ResetPushes {
    pub node: Option<DnsLabel>,
    pub reason: PushReason,
}

#[async_trait]
impl Write for ResetPushes {
    type Reply = Vec<NodeSync>;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<Vec<NodeSync>, StoreError>, StoreError> {
        let action = match self.reason {
            PushReason::Reconcile => "sync.reconcile",
            PushReason::Push | PushReason::Retry => "sync.push",
        };
        if self.reason == PushReason::Reconcile && self.node.is_none() {
            // Full state: every node's configuration as the plan makes it
            // now, should one stored differ (one stored by an older version).
            recompute(cx, &[], "reconcile").await?;
        }
        let (resource, targets) = match &self.node {
            Some(name) => match cx.tx.node_sync(name).await? {
                Some((id, sync)) => (Some(id), vec![(id, sync)]),
                None => {
                    let missing = StoreError::NodeNotFound(name.to_string());
                    return cx.refuse(action, None, missing).await;
                }
            },
            None => (None, load_all_node_sync(cx.tx).await?),
        };
        let mut sql =
            Sql::new("UPDATE edge_node_sync SET push_attempts = 0, status = CASE WHEN status = ");
        sql.bind(NodeSyncStatus::Failed.as_str())
            .push(" THEN (CASE WHEN heartbeat_ok THEN ")
            .bind(NodeSyncStatus::Active.as_str())
            .push(" ELSE ")
            .bind(NodeSyncStatus::Offline.as_str())
            .push(" END) ELSE status END");
        if let Some(id) = resource {
            sql.push(" WHERE node_id = ").bind(id);
        }
        cx.tx.execute(&sql).await?;
        let mut reset = Vec::with_capacity(targets.len());
        let mut revision = None;
        for (id, before) in targets {
            let status = match before.status {
                NodeSyncStatus::Failed if before.heartbeat_ok => NodeSyncStatus::Active,
                NodeSyncStatus::Failed => NodeSyncStatus::Offline,
                other => other,
            };
            let after = NodeSync {
                push_attempts: 0,
                status,
                ..before.clone()
            };
            revision = Some(append_push(cx, id, &after, self.reason)?);
            revision = sync_changed(cx, id, before.status, &after)?.or(revision);
            reset.push(after);
        }
        if self.reason == PushReason::Reconcile && self.node.is_none() {
            super::edge_settings::record_reconciled(cx).await?;
        }
        cx.audit_success(action, resource, revision).await?;
        Ok(Ok(reset))
    }
}

/// Liveness: nodes silent since `since` become `offline` and down (their
/// heartbeats no longer arrive); routes fail over in the same transaction.
pub(crate) struct MarkSilentNodes {
    pub since: DateTime<Utc>,
}

#[async_trait]
impl Write for MarkSilentNodes {
    type Reply = LivenessChange;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<LivenessChange, StoreError>, StoreError> {
        let sql = Sql::new(format!(
            "{SYNC_SELECT} WHERE COALESCE(y.last_heartbeat_at, n.created_at) < $1 \
             AND (y.heartbeat_ok OR y.status = $2) ORDER BY n.name"
        ))
        .arg(self.since)
        .arg(NodeSyncStatus::Active.as_str());
        let silent = cx
            .tx
            .fetch(&sql)
            .await?
            .iter()
            .map(|row| Ok((row.get::<Uuid>("id")?, node_sync_from_row(row)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut change = LivenessChange::default();
        if silent.is_empty() {
            return Ok(Ok(change));
        }
        let down: Vec<(Uuid, bool)> = silent
            .iter()
            .filter(|(_, s)| s.up)
            .map(|(id, _)| (*id, false))
            .collect();
        let recomputed = if silent.iter().any(|(_, s)| s.up && s.kind == NodeKind::Vps) {
            recompute(cx, &down, "node_down").await?
        } else {
            Recomputed::default()
        };
        for (id, before) in silent {
            let (desired_revision, push_attempts) =
                pushes_after(&before, recomputed.revision_of(id));
            // A failed node stays failed: its failure is the news.
            let status = match before.status {
                NodeSyncStatus::Failed => NodeSyncStatus::Failed,
                _ => NodeSyncStatus::Offline,
            };
            let after = NodeSync {
                status,
                up: false,
                heartbeat_ok: false,
                desired_revision,
                push_attempts,
                ..before.clone()
            };
            cx.tx.stage_node_sync(id, &after);
            sync_changed(cx, id, before.status, &after)?;
            if before.status != after.status {
                change
                    .status_changes
                    .push((after.node.clone(), before.status, after.status));
            }
        }
        change.failovers = recomputed.failovers;
        Ok(Ok(change))
    }
}

/// Takes or renews the sync controller's lease: a compare-and-swap on its
/// one row (free, expired, or held by `holder`).
pub(crate) struct ClaimController {
    pub holder: String,
    pub until: DateTime<Utc>,
}

#[async_trait]
impl Write for ClaimController {
    type Reply = bool;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<bool, StoreError>, StoreError> {
        let sql = Sql::new(
            "UPDATE edge_controller_lease SET holder = $1, until = $2 WHERE id = 1 \
             AND (holder IS NULL OR holder = $1 OR until IS NULL OR until <= $3)",
        )
        .arg(self.holder.as_str())
        .arg(self.until)
        .arg(cx.at);
        Ok(Ok(cx.tx.execute(&sql).await? == 1))
    }
}
