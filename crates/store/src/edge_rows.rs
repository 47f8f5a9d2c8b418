//! The SQL of the edge registry, once for both engines: columns and
//! decoding, the edge snapshot routing is computed from, and the loaders the
//! writer runs inside its transaction (`writer/edge.rs` holds the rules,
//! `edge_store.rs` the reads).

use crate::decode::parsed;
use crate::dialect::Dialect;
use crate::edge_store::ReconcileSchedule;
use crate::sql::{Row, Sql, Value};
use crate::write_tx::WriteTx;
use crate::StoreError;
use fleetreg_model::{
    DnsLabel, Domain, DomainName, EdgeSnapshot, Node, NodeKind, NodeSync, NodeSyncStatus, NodeView,
    Routing, RoutingStrategy, Service, ServiceOrigin, ServiceState,
};
use std::net::IpAddr;
use uuid::Uuid;

/// `SELECT` of domains (`edge_domains d`), read by [`domain_from_row`].
pub(crate) const DOMAIN_SELECT: &str = "SELECT d.id, d.name, d.description, d.region, \
     d.revision, d.created_at, d.updated_at FROM edge_domains d";

/// `SELECT` of nodes (`edge_nodes n`), read by [`node_from_row`].
pub(crate) const NODE_SELECT: &str = "SELECT n.id, n.name, n.kind, n.overlay_address, \
     n.public_address, n.region, n.provider, n.login, n.revision, n.created_at, n.updated_at \
     FROM edge_nodes n";

/// `SELECT` of services (`edge_services s`), read by [`service_from_row`].
pub(crate) const SERVICE_SELECT: &str = "SELECT s.id, s.name, s.subdomain, s.upstreams, \
     s.cluster_id, s.namespace, s.description, s.state, s.origin, s.revision, s.created_at, \
     s.updated_at FROM edge_services s";

/// `SELECT` of routings with their service's name and id (`edge_routings r`
/// joined to `edge_services s`), read by [`routing_from_row`].
pub(crate) const ROUTING_SELECT: &str = "SELECT r.service_id, s.name AS service, r.domains, \
     r.nodes, r.strategy, r.revision, r.created_at, r.updated_at \
     FROM edge_routings r JOIN edge_services s ON s.id = r.service_id";

/// `SELECT` of nodes' sync state (`edge_nodes n` joined to
/// `edge_node_sync y`), read by [`node_sync_from_row`].
pub(crate) const SYNC_SELECT: &str = "SELECT n.id, n.name, n.kind, n.overlay_address, \
     y.status, y.desired_revision, y.applied_revision, y.last_sync_at, y.last_heartbeat_at, \
     y.push_attempts, y.last_error, y.up, y.heartbeat_ok, y.check_ok, y.check_error, \
     y.check_changed_at \
     FROM edge_nodes n JOIN edge_node_sync y ON y.node_id = n.id";

/// The order of [`SYNC_SELECT`] lists: laptops first, then by name.
pub(crate) const SYNC_ORDER: &str = " ORDER BY CASE n.kind WHEN 'laptop' THEN 0 ELSE 1 END, n.name";

/// A DNS label column.
fn label(row: &Row, column: &str) -> Result<DnsLabel, StoreError> {
    parsed(row, column, |text| DnsLabel::parse("name", text).ok())
}

/// An IP address column (stored as its canonical text).
fn address(row: &Row, column: &str) -> Result<Option<IpAddr>, StoreError> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| {
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("column {column:?} holds {text:?}")))
    })
    .transpose()
}

/// An IP address column that is never NULL.
fn required_address(row: &Row, column: &str) -> Result<IpAddr, StoreError> {
    address(row, column)?.ok_or_else(|| StoreError::Corrupt(format!("column {column:?} is NULL")))
}

/// Reads a [`Domain`].
pub(crate) fn domain_from_row(row: &Row) -> Result<Domain, StoreError> {
    Ok(Domain {
        id: row.get("id")?,
        name: parsed(row, "name", |text| DomainName::parse("name", text).ok())?,
        description: row.get("description")?,
        region: row.get("region")?,
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Reads a [`Node`].
pub(crate) fn node_from_row(row: &Row) -> Result<Node, StoreError> {
    Ok(Node {
        id: row.get("id")?,
        name: label(row, "name")?,
        kind: parsed(row, "kind", NodeKind::parse)?,
        overlay_address: required_address(row, "overlay_address")?,
        public_address: address(row, "public_address")?,
        region: row.get("region")?,
        provider: row.get("provider")?,
        user: row.get("login")?,
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Reads a [`Service`].
pub(crate) fn service_from_row(row: &Row) -> Result<Service, StoreError> {
    Ok(Service {
        id: row.get("id")?,
        name: label(row, "name")?,
        subdomain: label(row, "subdomain")?,
        upstreams: row.json("upstreams")?,
        cluster_id: row.get("cluster_id")?,
        namespace: row.get("namespace")?,
        description: row.get("description")?,
        state: parsed(row, "state", ServiceState::parse)?,
        origin: parsed(row, "origin", ServiceOrigin::parse)?,
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Reads a [`Routing`].
pub(crate) fn routing_from_row(row: &Row) -> Result<Routing, StoreError> {
    Ok(Routing {
        service: label(row, "service")?,
        domains: row.json("domains")?,
        nodes: row.json("nodes")?,
        strategy: parsed(row, "strategy", RoutingStrategy::parse)?,
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Reads a [`NodeSync`].
pub(crate) fn node_sync_from_row(row: &Row) -> Result<NodeSync, StoreError> {
    let attempts: i64 = row.get("push_attempts")?;
    Ok(NodeSync {
        node: label(row, "name")?,
        kind: parsed(row, "kind", NodeKind::parse)?,
        overlay_address: required_address(row, "overlay_address")?,
        status: parsed(row, "status", NodeSyncStatus::parse)?,
        desired_revision: row.get("desired_revision")?,
        applied_revision: row.get("applied_revision")?,
        last_sync_at: row.get("last_sync_at")?,
        last_heartbeat_at: row.get("last_heartbeat_at")?,
        push_attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        last_error: row.get("last_error")?,
        up: row.get("up")?,
        heartbeat_ok: row.get("heartbeat_ok")?,
        check_ok: row.get("check_ok")?,
        check_error: row.get("check_error")?,
        check_changed_at: row.get("check_changed_at")?,
    })
}

/// Everything routing reads, with what the writer compares against: each
/// node's id and stored desired configuration (parallel to
/// `snapshot.nodes`; empty text when not read).
#[derive(Debug, Clone, Default)]
pub(crate) struct EdgeState {
    /// The registry and node liveness.
    pub snapshot: EdgeSnapshot,
    /// Per node of `snapshot.nodes`: its id and stored desired configuration.
    pub stored: Vec<(Uuid, String)>,
}

/// The four statements of an [`EdgeState`] (one per table: domains, nodes
/// with their liveness, services, routings); `with_config` also reads each
/// node's stored desired configuration.
pub(crate) fn edge_state_statements(with_config: bool) -> [Sql; 4] {
    let config = if with_config {
        "y.desired_config"
    } else {
        "'' AS desired_config"
    };
    [
        Sql::new(format!("{DOMAIN_SELECT} ORDER BY d.name")),
        Sql::new(format!(
            "SELECT n.id, n.name, n.kind, n.overlay_address, n.region, y.up, {config} \
             FROM edge_nodes n JOIN edge_node_sync y ON y.node_id = n.id ORDER BY n.name"
        )),
        Sql::new(format!("{SERVICE_SELECT} ORDER BY s.name")),
        Sql::new(format!("{ROUTING_SELECT} ORDER BY s.name")),
    ]
}

/// Decodes the rows of [`edge_state_statements`], in their order.
pub(crate) fn edge_state_from_rows(rows: [Vec<Row>; 4]) -> Result<EdgeState, StoreError> {
    let [domains, nodes, services, routings] = rows;
    let mut state = EdgeState::default();
    for row in &nodes {
        state.snapshot.nodes.push(NodeView {
            name: label(row, "name")?,
            kind: parsed(row, "kind", NodeKind::parse)?,
            overlay_address: required_address(row, "overlay_address")?,
            region: row.get("region")?,
            up: row.get("up")?,
        });
        state
            .stored
            .push((row.get("id")?, row.get("desired_config")?));
    }
    state.snapshot.domains = domains
        .iter()
        .map(domain_from_row)
        .collect::<Result<_, _>>()?;
    state.snapshot.services = services
        .iter()
        .map(service_from_row)
        .collect::<Result<_, _>>()?;
    state.snapshot.routings = routings
        .iter()
        .map(routing_from_row)
        .collect::<Result<_, _>>()?;
    Ok(state)
}

/// The edge state inside the write transaction, with stored configurations.
pub(crate) async fn load_edge_state(tx: &mut WriteTx) -> Result<EdgeState, StoreError> {
    let [a, b, c, d] = edge_state_statements(true);
    let rows = [
        tx.fetch(&a).await?,
        tx.fetch(&b).await?,
        tx.fetch(&c).await?,
        tx.fetch(&d).await?,
    ];
    edge_state_from_rows(rows)
}

/// The first row of `sql`, decoded, inside the transaction.
async fn first<T>(
    tx: &mut WriteTx,
    sql: &Sql,
    decode: fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    tx.fetch(sql).await?.first().map(decode).transpose()
}

/// A domain by name, inside the transaction (row-locked on PostgreSQL).
pub(crate) async fn load_domain(
    tx: &mut WriteTx,
    name: &DomainName,
) -> Result<Option<Domain>, StoreError> {
    let lock = tx.dialect().lock_row;
    let sql = Sql::new(format!("{DOMAIN_SELECT} WHERE d.name = $1{lock}")).arg(name.as_str());
    first(tx, &sql, domain_from_row).await
}

/// A node by name, inside the transaction (row-locked on PostgreSQL).
pub(crate) async fn load_node(
    tx: &mut WriteTx,
    name: &DnsLabel,
) -> Result<Option<Node>, StoreError> {
    let lock = tx.dialect().lock_row;
    let sql = Sql::new(format!("{NODE_SELECT} WHERE n.name = $1{lock}")).arg(name.as_str());
    first(tx, &sql, node_from_row).await
}

/// A service by name, inside the transaction (row-locked on PostgreSQL).
pub(crate) async fn load_service(
    tx: &mut WriteTx,
    name: &DnsLabel,
) -> Result<Option<Service>, StoreError> {
    let lock = tx.dialect().lock_row;
    let sql = Sql::new(format!("{SERVICE_SELECT} WHERE s.name = $1{lock}")).arg(name.as_str());
    first(tx, &sql, service_from_row).await
}

/// Every service, inside the transaction.
pub(crate) async fn load_services(tx: &mut WriteTx) -> Result<Vec<Service>, StoreError> {
    let sql = Sql::new(format!("{SERVICE_SELECT} ORDER BY s.name"));
    tx.fetch(&sql).await?.iter().map(service_from_row).collect()
}

/// A service's routing (by the service's id), inside the transaction.
pub(crate) async fn load_routing(
    tx: &mut WriteTx,
    service_id: Uuid,
) -> Result<Option<Routing>, StoreError> {
    let sql = Sql::new(format!("{ROUTING_SELECT} WHERE r.service_id = $1")).arg(service_id);
    first(tx, &sql, routing_from_row).await
}

/// Every node's sync state, laptops first, inside the transaction.
pub(crate) async fn load_all_node_sync(
    tx: &mut WriteTx,
) -> Result<Vec<(Uuid, NodeSync)>, StoreError> {
    let sql = Sql::new(format!("{SYNC_SELECT}{SYNC_ORDER}"));
    tx.fetch(&sql)
        .await?
        .iter()
        .map(|row| Ok((row.get("id")?, node_sync_from_row(row)?)))
        .collect()
}

/// Selects, by name, the services whose routing names the domain `$1`.
pub(crate) const ROUTED_VIA_DOMAIN: &str = "SELECT s.name FROM edge_routing_domains x \
     JOIN edge_services s ON s.id = x.service_id WHERE x.domain_id = $1 ORDER BY s.name";

/// Selects, by name, the services whose routing names the node `$1`.
pub(crate) const ROUTED_VIA_NODE: &str = "SELECT s.name FROM edge_routing_nodes x \
     JOIN edge_services s ON s.id = x.service_id WHERE x.node_id = $1 ORDER BY s.name";

/// Selects the service `$1`'s own name when it has a routing.
pub(crate) const ROUTED_VIA_SERVICE: &str = "SELECT s.name FROM edge_routings r \
     JOIN edge_services s ON s.id = r.service_id WHERE r.service_id = $1";

/// The names of the services one of the `ROUTED_VIA_*` queries (`routed_via`)
/// selects for the row `id`, inside the transaction.
pub(crate) async fn services_routed_via(
    tx: &mut WriteTx,
    routed_via: &'static str,
    id: Uuid,
) -> Result<Vec<String>, StoreError> {
    let sql = Sql::new(routed_via).arg(id);
    tx.fetch(&sql)
        .await?
        .iter()
        .map(|row| row.get_at::<String>(0))
        .collect()
}

/// `(id, name, kind)` of the named rows of `table` (`edge_domains` or
/// `edge_nodes`), in any order; names not found are absent.
pub(crate) async fn ids_by_name(
    tx: &mut WriteTx,
    table: &'static str,
    names: &[&str],
) -> Result<Vec<(Uuid, String, Option<String>)>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let kind = if table == "edge_nodes" {
        "kind"
    } else {
        "NULL AS kind"
    };
    let mut sql = Sql::new(format!(
        "SELECT id, name, {kind} FROM {table} WHERE name IN "
    ));
    sql.bind_tuple(names.iter().copied().map(Value::from));
    tx.fetch(&sql)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.get("id")?,
                row.get("name")?,
                row.get::<Option<String>>("kind")?,
            ))
        })
        .collect()
}

/// `SELECT` of the stored reconciliation settings (one row), read by
/// [`schedule_from_row`].
pub(crate) const SCHEDULE_SELECT: &str =
    "SELECT reconcile_seconds, reconciled_at FROM edge_sync_settings WHERE id = 1";

/// Reads a [`ReconcileSchedule`].
pub(crate) fn schedule_from_row(row: &Row) -> Result<ReconcileSchedule, StoreError> {
    let seconds: Option<i64> = row.get("reconcile_seconds")?;
    let every_seconds = seconds
        .map(|s| {
            u64::try_from(s)
                .map_err(|_| StoreError::Corrupt(format!("reconcile_seconds holds {s}")))
        })
        .transpose()?;
    Ok(ReconcileSchedule {
        every_seconds,
        reconciled_at: row.get("reconciled_at")?,
    })
}

/// The condition on `edge_node_sync y` of the nodes a push is pending for:
/// not running their desired revision, not failed. Word for word the
/// predicate of the partial index `idx_edge_node_sync_pending` (migration
/// 0017), so both engines read it from that index.
pub(crate) fn pending_condition(dialect: &Dialect) -> String {
    format!(
        "y.applied_revision{}y.desired_revision AND y.status <> '{}'",
        dialect.distinct_from,
        NodeSyncStatus::Failed.as_str()
    )
}

/// `(status, nodes, out_of_sync)` per sync status that has nodes, where
/// `out_of_sync` counts those not running their desired revision.
pub(crate) fn sync_counts_sql(dialect: &Dialect) -> Sql {
    Sql::new(format!(
        "SELECT y.status, COUNT(*) AS nodes, \
         COUNT(CASE WHEN y.applied_revision{}y.desired_revision THEN 1 END) AS out_of_sync \
         FROM edge_node_sync y GROUP BY y.status",
        dialect.distinct_from
    ))
}
