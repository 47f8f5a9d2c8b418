//! Change-log events (seed 6) and their envelope.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The event types of seed section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A cluster was registered; payload is the cluster.
    ClusterRegistered,
    /// A cluster's metadata changed; payload is the cluster.
    ClusterUpdated,
    /// A cluster was removed; payload `{cluster_id}`.
    ClusterDeleted,
    /// The status state changed; payload `{cluster_id, old_state, new_state}`.
    ClusterStatusChanged,
    /// Credentials were stored, rotated or deleted; payload `{cluster_id}`.
    ClusterCredentialsUpdated,
    /// Discovered capabilities changed; payload `{cluster_id, capabilities}`.
    ClusterCapabilitiesChanged,
    /// A client was registered (created, deployed or imported); payload is the client.
    ClientRegistered,
    /// A client's fields changed, not its status; payload is the client.
    ClientUpdated,
    /// A client's status changed (not to destroyed); payload
    /// `{client_id, name, old_status, new_status, client}`.
    ClientStatusChanged,
    /// A client was destroyed (kept for the audit trail); payload as
    /// `CLIENT_STATUS_CHANGED`.
    ClientDestroyed,
    /// A client's entry was removed from the registry; payload `{client_id, name}`.
    ClientDeleted,
    /// A deployed client's live health state changed (periodic URL checks);
    /// payload `{client_id, name, old_state, new_state, health}`.
    ClientHealthChanged,
    /// A host was registered under a cluster; payload is the host.
    HostRegistered,
    /// A host sent no heartbeat for longer than the threshold (once per
    /// episode); payload is the host.
    HostOrphaned,
    /// An orphaned host sent a heartbeat again; payload is the host.
    HostRecovered,
    /// A deployment was created, changed (sync enabled or paused), moved or
    /// removed; payload `{action, deployment}`.
    DeploymentChanged,
    /// A deployment's syncs failed several times in a row (once per
    /// episode); payload `{deployment, consecutive_failures}`.
    SyncFailing,
    /// A cluster's leader lease changed hands; payload is the lease.
    LeaderChanged,
    /// A rollout started, moved (a client done or failed, a wave, a status)
    /// or was commanded; payload is the rollout.
    RolloutChanged,
    /// A domain was registered; payload is the domain.
    DomainRegistered,
    /// A domain's description or region changed; payload is the domain.
    DomainUpdated,
    /// A domain was removed; payload `{domain_id, name}`.
    DomainDeleted,
    /// An edge node (VPS or laptop) was registered; payload is the node.
    NodeRegistered,
    /// An edge node's fields changed; payload is the node.
    NodeUpdated,
    /// An edge node was removed; payload `{node_id, name}`.
    NodeDeleted,
    /// A node's desired configuration changed; payload `{node, desired_revision}`.
    NodeConfigChanged,
    /// A node's sync status changed (active, failed, offline); payload `{node, old_status, new_status, sync}`.
    NodeSyncChanged,
    /// A service was registered (by hand or from a cluster); payload is the service.
    ServiceRegistered,
    /// A service's fields changed; payload is the service.
    ServiceUpdated,
    /// A service discovered in a cluster disappeared from it (kept, not routed); payload is the service.
    ServiceGone,
    /// A service was removed; payload `{service_id, name}`.
    ServiceDeleted,
    /// A service's routing (domains, nodes, strategy) was set; payload is the routing.
    RoutingConfigured,
    /// A service's routing was removed; payload `{service}`.
    RoutingDeleted,
    /// A hostname's serving node moved because a node went down or came back; payload `{service, hostname, from, to, reason}`.
    RoutingFailover,
}

impl EventType {
    /// The type as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ClusterRegistered => "CLUSTER_REGISTERED",
            EventType::ClusterUpdated => "CLUSTER_UPDATED",
            EventType::ClusterDeleted => "CLUSTER_DELETED",
            EventType::ClusterStatusChanged => "CLUSTER_STATUS_CHANGED",
            EventType::ClusterCredentialsUpdated => "CLUSTER_CREDENTIALS_UPDATED",
            EventType::ClusterCapabilitiesChanged => "CLUSTER_CAPABILITIES_CHANGED",
            EventType::ClientRegistered => "CLIENT_REGISTERED",
            EventType::ClientUpdated => "CLIENT_UPDATED",
            EventType::ClientStatusChanged => "CLIENT_STATUS_CHANGED",
            EventType::ClientDestroyed => "CLIENT_DESTROYED",
            EventType::ClientDeleted => "CLIENT_DELETED",
            EventType::ClientHealthChanged => "CLIENT_HEALTH_CHANGED",
            EventType::HostRegistered => "HOST_REGISTERED",
            EventType::HostOrphaned => "HOST_ORPHANED",
            EventType::HostRecovered => "HOST_RECOVERED",
            EventType::DeploymentChanged => "DEPLOYMENT_CHANGED",
            EventType::SyncFailing => "SYNC_FAILING",
            EventType::LeaderChanged => "LEADER_CHANGED",
            EventType::RolloutChanged => "ROLLOUT_CHANGED",
            EventType::DomainRegistered => "DOMAIN_REGISTERED",
            EventType::DomainUpdated => "DOMAIN_UPDATED",
            EventType::DomainDeleted => "DOMAIN_DELETED",
            EventType::NodeRegistered => "NODE_REGISTERED",
            EventType::NodeUpdated => "NODE_UPDATED",
            EventType::NodeDeleted => "NODE_DELETED",
            EventType::NodeConfigChanged => "NODE_CONFIG_CHANGED",
            EventType::NodeSyncChanged => "NODE_SYNC_CHANGED",
            EventType::ServiceRegistered => "SERVICE_REGISTERED",
            EventType::ServiceUpdated => "SERVICE_UPDATED",
            EventType::ServiceGone => "SERVICE_GONE",
            EventType::ServiceDeleted => "SERVICE_DELETED",
            EventType::RoutingConfigured => "ROUTING_CONFIGURED",
            EventType::RoutingDeleted => "ROUTING_DELETED",
            EventType::RoutingFailover => "ROUTING_FAILOVER",
        }
    }

    /// The kind of resource the event is about (`cluster`, `client`).
    pub fn resource(self) -> &'static str {
        let wire = self.as_str();
        if wire.starts_with("CLIENT_") {
            "client"
        } else if wire.starts_with("ROLLOUT_") {
            "rollout"
        } else if wire.starts_with("HOST_") {
            "host"
        } else if wire.starts_with("DOMAIN_") {
            "domain"
        } else if wire.starts_with("NODE_") {
            "node"
        } else if wire.starts_with("SERVICE_") {
            "service"
        } else if wire.starts_with("ROUTING_") {
            "routing"
        } else if wire.starts_with("DEPLOYMENT_") || wire.starts_with("SYNC_") {
            "deployment"
        } else {
            "cluster"
        }
    }

    /// Parses the wire form.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change-log entry, as served by `/api/v1/events`, the stream and Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Global, strictly increasing revision.
    pub revision: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it was committed.
    pub occurred_at: DateTime<Utc>,
    /// The kind of resource (`cluster`, `client`).
    pub resource: String,
    /// The resource's id.
    pub resource_id: Uuid,
    /// The payload of seed section 6.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}
