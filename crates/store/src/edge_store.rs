//! [`EdgeStore`]: domains, edge nodes, services, routing and each node's
//! push-sync state (seed service-registry-push-sync.md), and its one
//! implementation on [`SqlStore`] (SQL in `edge_rows.rs`, writes in
//! `writer/edge.rs`).
//!
//! Every write that can change what a node should run (a domain, node,
//! service or routing change, a node going down or coming back) recomputes
//! the routing plan in the same transaction and, for each node whose
//! [`NodeConfig`] changed, stores the new configuration at the write's
//! revision and appends `NODE_CONFIG_CHANGED`: the sync controller and the
//! agents' streams act on that event.

use crate::decode::parsed;
use crate::edge_rows::{
    domain_from_row, edge_state_from_rows, edge_state_statements, node_from_row,
    node_sync_from_row, pending_condition, routing_from_row, schedule_from_row, service_from_row,
    sync_counts_sql, DOMAIN_SELECT, NODE_SELECT, ROUTING_SELECT, SCHEDULE_SELECT, SERVICE_SELECT,
    SYNC_ORDER, SYNC_SELECT,
};
use crate::sql::{Row, Sql, Value};
use crate::writer::{
    Acknowledge, ClaimController, ConfigureRouting, CreateDomain, CreateNode, CreateService,
    DeleteDomain, DeleteNode, DeleteRouting, DeleteService, MarkSilentNodes, RecordNodeCheck,
    RecordPush, ResetPushes, SetReconcileEvery, StartReconcileSchedule, SyncClusterServices,
    UpdateDomain, UpdateNode, UpdateService,
};
use crate::{SqlStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    Audit, DnsLabel, Domain, DomainFields, DomainName, Node, NodeAck, NodeConfig, NodeFields,
    NodeKind, NodeSync, NodeSyncStatus, PushReason, Routing, RoutingFields, RoutingPlan, Service,
    ServiceFields, ServiceState,
};
pub use fleetreg_model::{DiscoveredService, ServiceSyncReport};
use uuid::Uuid;

/// A node's desired configuration at the revision it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConfig {
    /// The change-log revision of its last change (the zone's SOA serial).
    pub revision: i64,
    /// What the node should run.
    pub config: NodeConfig,
}

/// What a liveness pass changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LivenessChange {
    /// Nodes whose sync status changed: `(node, old, new)`.
    pub status_changes: Vec<(DnsLabel, NodeSyncStatus, NodeSyncStatus)>,
    /// Hostnames whose serving node moved: `(hostname, from, to)`.
    pub failovers: Vec<(String, DnsLabel, DnsLabel)>,
}

/// The periodic reconciliation as stored, shared by every replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileSchedule {
    /// The interval `sync reconcile --every` set, in seconds; `None`: the
    /// configuration file's (`edge.reconcile_seconds`).
    pub every_seconds: Option<u64>,
    /// When every node was last sent its full configuration (before the
    /// first reconciliation: when the first controller started the
    /// schedule); `None` before that.
    pub reconciled_at: Option<DateTime<Utc>>,
}

/// How many nodes are in each sync status, and how many are not running
/// their desired revision (the `/metrics` gauges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSyncCounts {
    /// Per status, every status present (zero when no node has it), in
    /// [`NodeSyncStatus::ALL`] order.
    pub by_status: Vec<(NodeSyncStatus, u64)>,
    /// Nodes whose applied revision is not the desired one (any status).
    pub out_of_sync: u64,
}

/// The edge registry and push-sync state (a supertrait of [`crate::Store`]).
#[async_trait]
pub trait EdgeStore: Send + Sync {
    /// Registers a domain (`DomainExists`).
    async fn create_domain(
        &self,
        name: DomainName,
        fields: DomainFields,
        audit: &Audit,
    ) -> Result<Domain, StoreError>;
    /// Changes a domain's description or region (`DomainNotFound`, `Precondition`).
    async fn update_domain(
        &self,
        name: DomainName,
        fields: DomainFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Domain, StoreError>;
    /// Removes a domain (`DomainNotFound`, `InUse` while a routing names it).
    async fn delete_domain(
        &self,
        name: DomainName,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;
    /// A domain (`DomainNotFound`).
    async fn get_domain(&self, name: &DomainName) -> Result<Domain, StoreError>;
    /// Every domain, by name.
    async fn list_domains(&self) -> Result<Vec<Domain>, StoreError>;

    /// Registers a node (`NodeExists`, `NodeAddressTaken`); its sync state
    /// starts `offline` with its desired configuration computed.
    async fn create_node(
        &self,
        name: DnsLabel,
        kind: NodeKind,
        fields: NodeFields,
        audit: &Audit,
    ) -> Result<Node, StoreError>;
    /// Changes a node's addresses or tags (`NodeNotFound`, `NodeAddressTaken`,
    /// `Precondition`).
    async fn update_node(
        &self,
        name: DnsLabel,
        fields: NodeFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Node, StoreError>;
    /// Removes a node and its sync state (`NodeNotFound`, `InUse` while a
    /// routing names it).
    async fn delete_node(
        &self,
        name: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;
    /// A node (`NodeNotFound`).
    async fn get_node(&self, name: &DnsLabel) -> Result<Node, StoreError>;
    /// Every node, by name, optionally of one kind.
    async fn list_nodes(&self, kind: Option<NodeKind>) -> Result<Vec<Node>, StoreError>;

    /// Registers a service by hand (`ServiceExists`).
    async fn create_service(
        &self,
        name: DnsLabel,
        fields: ServiceFields,
        audit: &Audit,
    ) -> Result<Service, StoreError>;
    /// Changes a service (`ServiceNotFound`, `Precondition`); a `gone`
    /// service changed by hand becomes an `active` manual one.
    async fn update_service(
        &self,
        name: DnsLabel,
        fields: ServiceFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Service, StoreError>;
    /// Removes a service (`ServiceNotFound`, `InUse` while a routing names it).
    async fn delete_service(
        &self,
        name: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;
    /// A service (`ServiceNotFound`).
    async fn get_service(&self, name: &DnsLabel) -> Result<Service, StoreError>;
    /// Every service, by name, optionally in one state and/or of one cluster.
    async fn list_services(
        &self,
        state: Option<ServiceState>,
        cluster_id: Option<Uuid>,
    ) -> Result<Vec<Service>, StoreError>;
    /// Brings the cluster's discovered services into the registry in one
    /// transaction: new ones registered (origin `cluster`), changed ones
    /// updated, ones no longer seen marked `gone` (`SERVICE_GONE`), never
    /// deleted; a manual service of the same name is left alone (`skipped`).
    /// `NotFound` when the cluster does not exist.
    async fn sync_cluster_services(
        &self,
        cluster_id: Uuid,
        discovered: Vec<DiscoveredService>,
        audit: &Audit,
    ) -> Result<ServiceSyncReport, StoreError>;

    /// Sets a service's routing, replacing any (`ServiceNotFound`,
    /// `DomainNotFound`, `NodeNotFound`; a laptop listed is a validation
    /// error on `nodes`; `Precondition`).
    async fn configure_routing(
        &self,
        service: DnsLabel,
        fields: RoutingFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Routing, StoreError>;
    /// Removes a service's routing (`RoutingNotFound`).
    async fn delete_routing(
        &self,
        service: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;
    /// A service's routing (`RoutingNotFound`).
    async fn get_routing(&self, service: &DnsLabel) -> Result<Routing, StoreError>;
    /// Every routing, by service.
    async fn list_routings(&self) -> Result<Vec<Routing>, StoreError>;
    /// The current routing plan (every hostname and its serving node).
    async fn routing_plan(&self) -> Result<RoutingPlan, StoreError>;

    /// A node's desired configuration (`NodeNotFound`).
    async fn desired_config(&self, node: &DnsLabel) -> Result<DesiredConfig, StoreError>;
    /// The desired configurations of the named nodes that exist, in no
    /// particular order, read with one statement (what many agent streams
    /// woken by one change share).
    async fn desired_configs(&self, nodes: &[DnsLabel]) -> Result<Vec<DesiredConfig>, StoreError>;
    /// A node's sync state (`NodeNotFound`).
    async fn node_sync(&self, node: &DnsLabel) -> Result<NodeSync, StoreError>;
    /// Every node's sync state, laptops first, then by name.
    async fn list_node_sync(&self) -> Result<Vec<NodeSync>, StoreError>;
    /// The sync state of the nodes a push is pending for (not running their
    /// desired revision, not `failed`), laptops first, then by name: what
    /// the controller may retry, read from a partial index.
    async fn list_pending_node_sync(&self) -> Result<Vec<NodeSync>, StoreError>;
    /// Nodes per sync status and out of sync, counted by the database.
    async fn count_node_sync(&self) -> Result<NodeSyncCounts, StoreError>;

    /// An agent's heartbeat and acknowledgement: stamps the heartbeat; an
    /// `applied_revision` equal to the desired one makes the node `active`
    /// in sync (`last_sync_at`, attempts reset); an error makes it `failed`
    /// (kept at most [`fleetreg_model::MAX_AGENT_ERROR`] characters). A node
    /// that was down for its silence is up again, unless its HTTP check
    /// fails, and re-routes (failover back).
    async fn acknowledge(
        &self,
        node: &DnsLabel,
        ack: NodeAck,
        audit: &Audit,
    ) -> Result<NodeSync, StoreError>;
    /// Retries the push of the desired `revision` to `node`: increments its
    /// attempts and appends `NODE_PUSH` (reason `retry`, which wakes its
    /// streams); at `max_attempts` the node becomes `failed` instead
    /// (`NODE_SYNC_CHANGED`, nothing sent). A revision no longer desired is
    /// ignored.
    async fn record_push(
        &self,
        node: &DnsLabel,
        revision: i64,
        max_attempts: u32,
    ) -> Result<NodeSync, StoreError>;
    /// Sends `node` (or every node) its configuration again now (`NODE_PUSH`
    /// with `reason`, which wakes its streams) and resets its push attempts;
    /// a `failed` node gets its retries back (`active` while its heartbeats
    /// arrive, else `offline`; `NODE_SYNC_CHANGED`). A full reconciliation
    /// first stores every node's configuration as the routing plan makes it
    /// now where the stored one differs (`NODE_CONFIG_CHANGED`; one stored
    /// by an older version). Audited `sync.push` or `sync.reconcile`.
    /// Returns the nodes as they are now.
    async fn reset_pushes(
        &self,
        node: Option<&DnsLabel>,
        reason: PushReason,
        audit: &Audit,
    ) -> Result<Vec<NodeSync>, StoreError>;
    /// Liveness: nodes without a heartbeat since `silent_since` become
    /// `offline` and count as down for routing; routes fail over in the same
    /// transaction (`ROUTING_FAILOVER` per moved hostname, `NODE_SYNC_CHANGED`).
    async fn mark_silent_nodes(
        &self,
        silent_since: DateTime<Utc>,
    ) -> Result<LivenessChange, StoreError>;
    /// The HTTP check through `node` changed its outcome (`edge.http_check`):
    /// failing (`ok` false, with `error`, kept at most
    /// [`fleetreg_model::MAX_CHECK_ERROR`] characters) makes it down, passing
    /// makes it up again while its heartbeats arrive; routes fail over or move
    /// back in the same transaction (`ROUTING_FAILOVER` per moved hostname,
    /// each audited, and `NODE_SYNC_CHANGED`). The outcome already stored
    /// changes nothing (`NodeNotFound` for an unknown node).
    async fn record_node_check(
        &self,
        node: &DnsLabel,
        ok: bool,
        error: Option<String>,
    ) -> Result<NodeSync, StoreError>;

    /// The stored reconciliation interval and schedule.
    async fn reconcile_schedule(&self) -> Result<ReconcileSchedule, StoreError>;
    /// Stores the reconciliation interval (`sync reconcile --every`) for
    /// every replica and restart; audited `sync.reconcile_interval`. Zero is
    /// `Invalid`. Returns the schedule now.
    async fn set_reconcile_every(
        &self,
        every_seconds: u64,
        audit: &Audit,
    ) -> Result<ReconcileSchedule, StoreError>;
    /// Starts the schedule when none is recorded (a new database): now
    /// counts as the last reconciliation. The controller calls it when it
    /// takes the lease; returns the schedule (unchanged when it had started).
    async fn start_reconcile_schedule(&self) -> Result<ReconcileSchedule, StoreError>;

    /// Takes or renews the sync controller's lease for `holder` until
    /// `until`; true when `holder` holds it (one controller across replicas).
    async fn claim_controller(
        &self,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

impl SqlStore {
    /// The row of `select` whose `column` is `name`, decoded with `decode`;
    /// `missing(name)` when there is none.
    async fn fetch_named<T>(
        &self,
        select: &str,
        column: &str,
        name: &(impl std::fmt::Display + Sync),
        decode: fn(&Row) -> Result<T, StoreError>,
        missing: fn(String) -> StoreError,
    ) -> Result<T, StoreError> {
        let name = name.to_string();
        let sql = Sql::new(format!("{select} WHERE {column} = $1")).arg(name.as_str());
        self.fetch_optional_as(&sql, decode)
            .await?
            .ok_or_else(|| missing(name))
    }
}

/// A node's desired revision and configuration; `WHERE` follows.
const DESIRED_SELECT: &str = "SELECT y.desired_revision, y.desired_config FROM edge_nodes n \
     JOIN edge_node_sync y ON y.node_id = n.id";

fn desired_from_row(row: &Row) -> Result<DesiredConfig, StoreError> {
    Ok(DesiredConfig {
        revision: row.get("desired_revision")?,
        config: row.json("desired_config")?,
    })
}

/// The actor of the sync controller's observations (pushes, liveness, lease).
fn controller() -> Audit {
    Audit::system("edge-sync")
}

#[async_trait]
impl EdgeStore for SqlStore {
    async fn create_domain(
        &self,
        name: DomainName,
        fields: DomainFields,
        audit: &Audit,
    ) -> Result<Domain, StoreError> {
        self.writer
            .write(CreateDomain { name, fields }, audit)
            .await
    }

    async fn update_domain(
        &self,
        name: DomainName,
        fields: DomainFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Domain, StoreError> {
        let write = UpdateDomain {
            name,
            fields,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn delete_domain(
        &self,
        name: DomainName,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let write = DeleteDomain {
            name,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn get_domain(&self, name: &DomainName) -> Result<Domain, StoreError> {
        let missing = StoreError::DomainNotFound;
        self.fetch_named(DOMAIN_SELECT, "d.name", name, domain_from_row, missing)
            .await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        let sql = Sql::new(format!("{DOMAIN_SELECT} ORDER BY d.name"));
        self.fetch_as(&sql, domain_from_row).await
    }

    async fn create_node(
        &self,
        name: DnsLabel,
        kind: NodeKind,
        fields: NodeFields,
        audit: &Audit,
    ) -> Result<Node, StoreError> {
        self.writer
            .write(CreateNode { name, kind, fields }, audit)
            .await
    }

    async fn update_node(
        &self,
        name: DnsLabel,
        fields: NodeFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Node, StoreError> {
        let write = UpdateNode {
            name,
            fields,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn delete_node(
        &self,
        name: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let write = DeleteNode {
            name,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn get_node(&self, name: &DnsLabel) -> Result<Node, StoreError> {
        let missing = StoreError::NodeNotFound;
        self.fetch_named(NODE_SELECT, "n.name", name, node_from_row, missing)
            .await
    }

    async fn list_nodes(&self, kind: Option<NodeKind>) -> Result<Vec<Node>, StoreError> {
        let mut sql = Sql::new(NODE_SELECT);
        if let Some(kind) = kind {
            sql.push(" WHERE n.kind = ").bind(kind.as_str());
        }
        sql.push(" ORDER BY n.name");
        self.fetch_as(&sql, node_from_row).await
    }

    async fn create_service(
        &self,
        name: DnsLabel,
        fields: ServiceFields,
        audit: &Audit,
    ) -> Result<Service, StoreError> {
        self.writer
            .write(CreateService { name, fields }, audit)
            .await
    }

    async fn update_service(
        &self,
        name: DnsLabel,
        fields: ServiceFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Service, StoreError> {
        let write = UpdateService {
            name,
            fields,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn delete_service(
        &self,
        name: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let write = DeleteService {
            name,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn get_service(&self, name: &DnsLabel) -> Result<Service, StoreError> {
        let missing = StoreError::ServiceNotFound;
        self.fetch_named(SERVICE_SELECT, "s.name", name, service_from_row, missing)
            .await
    }

    async fn list_services(
        &self,
        state: Option<ServiceState>,
        cluster_id: Option<Uuid>,
    ) -> Result<Vec<Service>, StoreError> {
        let mut sql = Sql::new(SERVICE_SELECT);
        let mut joiner = " WHERE ";
        if let Some(state) = state {
            sql.push(joiner).push("s.state = ").bind(state.as_str());
            joiner = " AND ";
        }
        if let Some(cluster_id) = cluster_id {
            sql.push(joiner).push("s.cluster_id = ").bind(cluster_id);
        }
        sql.push(" ORDER BY s.name");
        self.fetch_as(&sql, service_from_row).await
    }

    async fn sync_cluster_services(
        &self,
        cluster_id: Uuid,
        discovered: Vec<DiscoveredService>,
        audit: &Audit,
    ) -> Result<ServiceSyncReport, StoreError> {
        let write = SyncClusterServices {
            cluster_id,
            discovered,
        };
        self.writer.write(write, audit).await
    }

    async fn configure_routing(
        &self,
        service: DnsLabel,
        fields: RoutingFields,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<Routing, StoreError> {
        let write = ConfigureRouting {
            service,
            fields,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn delete_routing(
        &self,
        service: DnsLabel,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let write = DeleteRouting {
            service,
            expected_revision,
        };
        self.writer.write(write, audit).await
    }

    async fn get_routing(&self, service: &DnsLabel) -> Result<Routing, StoreError> {
        let missing = StoreError::RoutingNotFound;
        self.fetch_named(ROUTING_SELECT, "s.name", service, routing_from_row, missing)
            .await
    }

    async fn list_routings(&self) -> Result<Vec<Routing>, StoreError> {
        let sql = Sql::new(format!("{ROUTING_SELECT} ORDER BY s.name"));
        self.fetch_as(&sql, routing_from_row).await
    }

    async fn routing_plan(&self) -> Result<RoutingPlan, StoreError> {
        let mut tx = self.engine.snapshot().await?;
        let [a, b, c, d] = edge_state_statements(false);
        let rows = [
            tx.fetch(&a).await?,
            tx.fetch(&b).await?,
            tx.fetch(&c).await?,
            tx.fetch(&d).await?,
        ];
        tx.commit().await?;
        let state = edge_state_from_rows(rows)?;
        Ok(RoutingPlan::compute(&state.snapshot))
    }

    async fn desired_config(&self, node: &DnsLabel) -> Result<DesiredConfig, StoreError> {
        let missing = StoreError::NodeNotFound;
        self.fetch_named(DESIRED_SELECT, "n.name", node, desired_from_row, missing)
            .await
    }

    async fn desired_configs(&self, nodes: &[DnsLabel]) -> Result<Vec<DesiredConfig>, StoreError> {
        let names: Vec<&str> = nodes.iter().map(DnsLabel::as_str).collect();
        let sql = Sql::new(format!(
            "{DESIRED_SELECT} WHERE n.name IN (SELECT value FROM {}($1))",
            self.engine.dialect().json_array_texts
        ))
        .arg(Value::json(&names)?);
        self.fetch_as(&sql, desired_from_row).await
    }

    async fn node_sync(&self, node: &DnsLabel) -> Result<NodeSync, StoreError> {
        let missing = StoreError::NodeNotFound;
        self.fetch_named(SYNC_SELECT, "n.name", node, node_sync_from_row, missing)
            .await
    }

    async fn list_node_sync(&self) -> Result<Vec<NodeSync>, StoreError> {
        let sql = Sql::new(format!("{SYNC_SELECT}{SYNC_ORDER}"));
        self.fetch_as(&sql, node_sync_from_row).await
    }

    async fn list_pending_node_sync(&self) -> Result<Vec<NodeSync>, StoreError> {
        let pending = pending_condition(self.engine.dialect());
        let sql = Sql::new(format!("{SYNC_SELECT} WHERE {pending}{SYNC_ORDER}"));
        self.fetch_as(&sql, node_sync_from_row).await
    }

    async fn count_node_sync(&self) -> Result<NodeSyncCounts, StoreError> {
        let rows = self
            .engine
            .fetch(&sync_counts_sql(self.engine.dialect()))
            .await?;
        let mut counts = NodeSyncCounts {
            by_status: NodeSyncStatus::ALL.iter().map(|s| (*s, 0)).collect(),
            out_of_sync: 0,
        };
        for row in &rows {
            let status = parsed(row, "status", NodeSyncStatus::parse)?;
            let nodes: i64 = row.get("nodes")?;
            let behind: i64 = row.get("out_of_sync")?;
            if let Some(entry) = counts.by_status.iter_mut().find(|(s, _)| *s == status) {
                entry.1 = nodes.max(0).unsigned_abs();
            }
            counts.out_of_sync += behind.max(0).unsigned_abs();
        }
        Ok(counts)
    }

    async fn acknowledge(
        &self,
        node: &DnsLabel,
        ack: NodeAck,
        audit: &Audit,
    ) -> Result<NodeSync, StoreError> {
        let write = Acknowledge {
            node: node.clone(),
            ack,
        };
        self.writer.write(write, audit).await
    }

    async fn record_push(
        &self,
        node: &DnsLabel,
        revision: i64,
        max_attempts: u32,
    ) -> Result<NodeSync, StoreError> {
        let write = RecordPush {
            node: node.clone(),
            revision,
            max_attempts,
        };
        self.writer.write(write, &controller()).await
    }

    async fn reset_pushes(
        &self,
        node: Option<&DnsLabel>,
        reason: PushReason,
        audit: &Audit,
    ) -> Result<Vec<NodeSync>, StoreError> {
        let write = ResetPushes {
            node: node.cloned(),
            reason,
        };
        self.writer.write(write, audit).await
    }

    async fn mark_silent_nodes(
        &self,
        silent_since: DateTime<Utc>,
    ) -> Result<LivenessChange, StoreError> {
        let write = MarkSilentNodes {
            since: silent_since,
        };
        self.writer.write(write, &controller()).await
    }

    async fn record_node_check(
        &self,
        node: &DnsLabel,
        ok: bool,
        error: Option<String>,
    ) -> Result<NodeSync, StoreError> {
        let write = RecordNodeCheck {
            node: node.clone(),
            ok,
            error,
        };
        self.writer.write(write, &controller()).await
    }

    async fn reconcile_schedule(&self) -> Result<ReconcileSchedule, StoreError> {
        let row = self.engine.fetch_one(&Sql::new(SCHEDULE_SELECT)).await?;
        schedule_from_row(&row)
    }

    async fn set_reconcile_every(
        &self,
        every_seconds: u64,
        audit: &Audit,
    ) -> Result<ReconcileSchedule, StoreError> {
        self.writer
            .write(SetReconcileEvery { every_seconds }, audit)
            .await
    }

    async fn start_reconcile_schedule(&self) -> Result<ReconcileSchedule, StoreError> {
        self.writer
            .write(StartReconcileSchedule, &controller())
            .await
    }

    async fn claim_controller(
        &self,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let write = ClaimController {
            holder: holder.to_owned(),
            until,
        };
        self.writer.write(write, &controller()).await
    }
}
