//! Change-log events (seed 6) and their envelope.

use crate::Error;
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
    /// A node's sync status changed (active, failed, offline), payload
    /// `{node, old_status, new_status, sync}`; or the HTTP check through it
    /// started or stopped failing, payload `{node, check_ok, check_error, up, sync}`.
    NodeSyncChanged,
    /// The sync controller sent a node its configuration again (a retry of an
    /// unacknowledged push, a manual push or the periodic reconciliation);
    /// payload `{node, desired_revision, attempt, reason}`.
    NodePush,
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
            EventType::NodePush => "NODE_PUSH",
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

/// The kinds of resource an event can be about: every value
/// [`EventType::resource`] returns, and so every value of an event's
/// `resource` and of the `resource=` filter.
pub const EVENT_RESOURCES: &[&str] = &[
    "cluster",
    "client",
    "rollout",
    "host",
    "deployment",
    "domain",
    "node",
    "service",
    "routing",
];

/// Which events a reader subscribes to (seed 5.5 `subscribe(event_types)`),
/// for `GET /api/v1/events` and its stream: every given condition holds
/// (AND); the types are alternatives (OR). The default matches every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these types, in the order first given, without repeats; empty:
    /// every type.
    pub types: Vec<EventType>,
    /// Only events about this kind of resource (one of [`EVENT_RESOURCES`]).
    pub resource: Option<&'static str>,
    /// Only events about this resource.
    pub resource_id: Option<Uuid>,
}

impl EventFilter {
    /// True when the filter matches every event.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.resource.is_none() && self.resource_id.is_none()
    }

    /// Adds a `type=` value (wire form, e.g. `NODE_CONFIG_CHANGED`); a
    /// repeated type is kept once. An unknown type is an error on `type`.
    pub fn add_type(&mut self, value: &str) -> Result<(), Error> {
        let event_type = EventType::parse(value).ok_or_else(|| {
            Error::invalid(
                "type",
                format!(
                    "unknown event type {:?}; expected a type such as CLUSTER_REGISTERED",
                    bounded(value)
                ),
            )
        })?;
        if !self.types.contains(&event_type) {
            self.types.push(event_type);
        }
        Ok(())
    }

    /// Sets the `resource=` kind; one of [`EVENT_RESOURCES`], else an error on `resource`.
    pub fn set_resource(&mut self, value: &str) -> Result<(), Error> {
        let resource = EVENT_RESOURCES
            .iter()
            .copied()
            .find(|r| *r == value)
            .ok_or_else(|| {
                Error::invalid(
                    "resource",
                    format!(
                        "unknown resource {:?}; expected one of {}",
                        bounded(value),
                        EVENT_RESOURCES.join(", ")
                    ),
                )
            })?;
        self.resource = Some(resource);
        Ok(())
    }

    /// Sets the `resource_id=`; a UUID, else an error on `resource_id`.
    pub fn set_resource_id(&mut self, value: &str) -> Result<(), Error> {
        let id =
            Uuid::parse_str(value).map_err(|_| Error::invalid("resource_id", "must be a UUID"))?;
        self.resource_id = Some(id);
        Ok(())
    }

    /// Whether an event of `event_type` about `resource`/`resource_id`
    /// passes the filter (what the store's SQL selects, for live frames).
    pub fn matches(&self, event_type: EventType, resource: &str, resource_id: Uuid) -> bool {
        (self.types.is_empty() || self.types.contains(&event_type))
            && self.resource.is_none_or(|r| r == resource)
            && self.resource_id.is_none_or(|id| id == resource_id)
    }
}

/// At most 64 characters of a caller's value, as quoted back in an error.
fn bounded(value: &str) -> String {
    let mut quoted: String = value.chars().take(64).collect();
    if quoted.len() < value.len() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type the OpenAPI document lists, parsed back.
    fn every_type() -> Vec<EventType> {
        let schema = serde_json::to_value(<EventType as utoipa::PartialSchema>::schema()).unwrap();
        let types: Vec<EventType> = schema["enum"]
            .as_array()
            .expect("EventType is an enum schema")
            .iter()
            .map(|v| EventType::parse(v.as_str().unwrap()).unwrap())
            .collect();
        assert!(types.len() > 30, "{schema}");
        types
    }

    #[test]
    fn every_resource_of_an_event_type_is_listed_and_every_listed_one_is_used() {
        let used: std::collections::BTreeSet<&str> =
            every_type().into_iter().map(EventType::resource).collect();
        let listed: std::collections::BTreeSet<&str> = EVENT_RESOURCES.iter().copied().collect();
        assert_eq!(used, listed);
    }

    #[test]
    fn filters_parse_and_match() {
        let mut filter = EventFilter::default();
        assert!(filter.is_empty());
        let id = Uuid::now_v7();
        assert!(filter.matches(EventType::ClusterUpdated, "cluster", id));
        filter.add_type("NODE_CONFIG_CHANGED").unwrap();
        filter.add_type("ROUTING_FAILOVER").unwrap();
        filter.add_type("NODE_CONFIG_CHANGED").unwrap();
        assert_eq!(
            filter.types,
            [EventType::NodeConfigChanged, EventType::RoutingFailover]
        );
        assert!(filter.matches(EventType::RoutingFailover, "routing", id));
        assert!(!filter.matches(EventType::NodeUpdated, "node", id));
        filter.set_resource("node").unwrap();
        assert!(!filter.matches(EventType::RoutingFailover, "routing", id));
        assert!(filter.matches(EventType::NodeConfigChanged, "node", id));
        filter.set_resource_id(&id.to_string()).unwrap();
        assert!(!filter.matches(EventType::NodeConfigChanged, "node", Uuid::nil()));
        assert!(filter.matches(EventType::NodeConfigChanged, "node", id));

        for (result, field) in [
            (filter.add_type("NODE_EXPLODED"), "type"),
            (filter.add_type("node_config_changed"), "type"),
            (filter.add_type(""), "type"),
            (filter.set_resource("nodes"), "resource"),
            (filter.set_resource(""), "resource"),
            (filter.set_resource_id("42"), "resource_id"),
        ] {
            let error = result.unwrap_err();
            assert_eq!(error.field(), field);
            assert_eq!(error.code(), crate::ErrorCode::ValidationError);
        }
        let long = filter.add_type(&"X".repeat(10_000)).unwrap_err();
        assert!(long.reason().len() < 200, "{}", long.reason());
    }
}
