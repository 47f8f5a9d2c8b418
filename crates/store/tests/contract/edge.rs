//! The edge registry (`EdgeStore`): domains, nodes, services, routing, the
//! desired configuration recomputed in every write's transaction, failover
//! on liveness, push-sync state, cluster service sync and the controller
//! lease, on both engines.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::RoutingStrategy::{Geo, PrimaryBackup, RoundRobin};
use fleetreg_model::{
    Audit, AuditResult, Clock, DiscoveredService, DnsLabel, Domain, DomainFields, DomainName,
    ErrorCode, Event, EventType, Node, NodeAck, NodeFields, NodeKind, NodeSync, NodeSyncStatus,
    PushReason, Routing, RoutingFields, RoutingStrategy, Service, ServiceFields, ServiceOrigin,
    ServiceState, ServiceSyncReport, Upstream, MAX_AGENT_ERROR,
};
use fleetreg_store::{AuditQuery, StoreError, StoreOptions};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use uuid::Uuid;

/// The two domains of [`registry`].
const BOTH: [&str; 2] = ["curiios.com", "vinaysachdeva.com"];

fn label(s: &str) -> DnsLabel {
    DnsLabel::parse("name", s).unwrap()
}

fn dname(s: &str) -> DomainName {
    DomainName::parse("name", s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn domain(store: &StoreRef, name: &str, region: Option<&str>) -> Domain {
    let fields = DomainFields {
        description: format!("{name} for tests"),
        region: region.map(str::to_owned),
    };
    store
        .create_domain(dname(name), fields, &operator())
        .await
        .unwrap()
}

fn vps_fields(octet: u8, region: &str) -> NodeFields {
    NodeFields {
        overlay_address: ip(&format!("100.64.0.{octet}")),
        public_address: Some(ip(&format!("45.8.0.{octet}"))),
        region: Some(region.to_owned()),
        provider: Some("contabo".into()),
        user: Some("root".into()),
    }
}

async fn vps(store: &StoreRef, name: &str, octet: u8, region: &str) -> Node {
    store
        .create_node(
            label(name),
            NodeKind::Vps,
            vps_fields(octet, region),
            &operator(),
        )
        .await
        .unwrap()
}

async fn laptop(store: &StoreRef, name: &str, octet: u8) -> Node {
    let fields = NodeFields {
        overlay_address: ip(&format!("100.64.1.{octet}")),
        public_address: None,
        region: None,
        provider: None,
        user: Some("vinay".into()),
    };
    store
        .create_node(label(name), NodeKind::Laptop, fields, &operator())
        .await
        .unwrap()
}

fn service_fields(subdomain: &str, upstreams: &[&str]) -> ServiceFields {
    ServiceFields {
        subdomain: label(subdomain),
        upstreams: upstreams
            .iter()
            .map(|u| Upstream::parse("upstreams", u).unwrap())
            .collect(),
        cluster_id: None,
        namespace: None,
        description: String::new(),
    }
}

async fn service(store: &StoreRef, name: &str, subdomain: &str) -> Service {
    store
        .create_service(
            label(name),
            service_fields(subdomain, &["127.0.0.1:2283"]),
            &operator(),
        )
        .await
        .unwrap()
}

fn routing(domains: &[&str], nodes: &[&str], strategy: RoutingStrategy) -> RoutingFields {
    RoutingFields {
        domains: domains.iter().map(|d| dname(d)).collect(),
        nodes: nodes.iter().map(|n| label(n)).collect(),
        strategy,
    }
}

/// The two domains `curiios.com` (eu) and `vinaysachdeva.com` (us), the
/// nodes `vps1` (eu) and `vps2` (us) and a `laptop`.
async fn registry(store: &StoreRef) {
    domain(store, "curiios.com", Some("eu")).await;
    domain(store, "vinaysachdeva.com", Some("us")).await;
    vps(store, "vps1", 1, "eu").await;
    vps(store, "vps2", 2, "us").await;
    laptop(store, "laptop", 9).await;
}

/// Configures `service`'s routing to `fields` as the operator, `expected`
/// as its `If-Match`.
async fn configure(
    store: &StoreRef,
    service: &str,
    fields: RoutingFields,
    expected: Option<i64>,
) -> Result<Routing, StoreError> {
    store
        .configure_routing(label(service), fields, expected, &operator())
        .await
}

/// Routes `service` to `domains` on `nodes` (no `If-Match`).
async fn route(
    store: &StoreRef,
    service: &str,
    domains: &[&str],
    nodes: &[&str],
    strategy: RoutingStrategy,
) -> Routing {
    let fields = routing(domains, nodes, strategy);
    configure(store, service, fields, None).await.unwrap()
}

/// `node`'s agent acknowledging `ack`, accepted.
async fn ack(store: &StoreRef, node: &str, ack: NodeAck, agent: &Audit) -> NodeSync {
    store.acknowledge(&label(node), ack, agent).await.unwrap()
}

/// `node`'s sync state.
async fn sync_of(store: &StoreRef, node: &str) -> NodeSync {
    store.node_sync(&label(node)).await.unwrap()
}

/// Every node's desired revision, by name.
async fn desired(store: &StoreRef) -> BTreeMap<String, i64> {
    store
        .list_node_sync()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node.to_string(), s.desired_revision))
        .collect()
}

fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

/// The nodes named by the `NODE_CONFIG_CHANGED` events of `events`.
fn config_changes(events: &[Event]) -> Vec<String> {
    let mut nodes: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == EventType::NodeConfigChanged)
        .map(|e| {
            assert_eq!(e.payload["desired_revision"], json!(e.revision));
            e.payload["node"].as_str().unwrap().to_owned()
        })
        .collect();
    nodes.sort();
    nodes
}

store_test!(
    domains_are_registered_changed_and_removed,
    |store| async move {
        let start = store.latest_revision().await.unwrap();
        let curiios = domain(&store, "curiios.com", Some("eu")).await;
        assert_eq!(curiios.revision, start + 1);
        domain(&store, "a-first.example", None).await;
        let again = store
            .create_domain(
                dname("curiios.com"),
                DomainFields {
                    description: String::new(),
                    region: None,
                },
                &operator(),
            )
            .await;
        assert_err!(again, StoreError::DomainExists(ref n) if n == "curiios.com");
        let names: Vec<String> = store
            .list_domains()
            .await
            .unwrap()
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(names, ["a-first.example", "curiios.com"]);
        assert_eq!(
            store.get_domain(&dname("curiios.com")).await.unwrap(),
            curiios
        );

        let fields = DomainFields {
            description: "photos and chat".into(),
            region: Some("us".into()),
        };
        let stale = store
            .update_domain(
                dname("curiios.com"),
                fields.clone(),
                Some(curiios.revision + 100),
                &operator(),
            )
            .await;
        assert_err!(stale, StoreError::PreconditionFailed { actual, .. } if actual == curiios.revision);
        let updated = store
            .update_domain(
                dname("curiios.com"),
                fields.clone(),
                Some(curiios.revision),
                &operator(),
            )
            .await
            .unwrap();
        assert!(updated.revision > curiios.revision);
        assert_eq!(updated.region.as_deref(), Some("us"));
        assert_eq!(updated.created_at, curiios.created_at);
        // The same fields again change nothing.
        let same = store
            .update_domain(dname("curiios.com"), fields, None, &operator())
            .await
            .unwrap();
        assert_eq!(same.revision, updated.revision);
        let missing = store
            .update_domain(
                dname("nowhere.example"),
                DomainFields {
                    description: String::new(),
                    region: None,
                },
                None,
                &operator(),
            )
            .await;
        assert_err!(missing, StoreError::DomainNotFound(_));

        let stale = store
            .delete_domain(dname("curiios.com"), Some(curiios.revision), &operator())
            .await;
        assert_err!(stale, StoreError::PreconditionFailed { .. });
        store
            .delete_domain(dname("curiios.com"), Some(updated.revision), &operator())
            .await
            .unwrap();
        let gone = store.get_domain(&dname("curiios.com")).await;
        assert_err!(gone, StoreError::DomainNotFound(ref n) if n == "curiios.com");
        assert_eq!(gone.unwrap_err().code(), ErrorCode::DomainNotFound);
        let again = store
            .delete_domain(dname("curiios.com"), None, &operator())
            .await;
        assert_err!(again, StoreError::DomainNotFound(_));

        let events = events_from(&store, start).await;
        assert_eq!(
            types(&events),
            [
                EventType::DomainRegistered,
                EventType::DomainRegistered,
                EventType::DomainUpdated,
                EventType::DomainDeleted,
            ]
        );
        assert_eq!(events[0].payload["name"], "curiios.com");
        assert_eq!(events[0].resource, "domain");
        assert_eq!(
            events[3].payload,
            json!({ "domain_id": curiios.id, "name": "curiios.com" })
        );
        let audit = audit_log(&store).await;
        let actions: Vec<(&str, &AuditResult, Option<&str>)> = audit
            .iter()
            .map(|a| (a.action.as_str(), &a.result, a.error_code.as_deref()))
            .collect();
        assert_eq!(
            actions,
            [
                ("domain.create", &AuditResult::Success, None),
                ("domain.create", &AuditResult::Success, None),
                (
                    "domain.create",
                    &AuditResult::Failure,
                    Some("DOMAIN_ALREADY_EXISTS")
                ),
                (
                    "domain.update",
                    &AuditResult::Failure,
                    Some("PRECONDITION_FAILED")
                ),
                ("domain.update", &AuditResult::Success, None),
                (
                    "domain.update",
                    &AuditResult::Failure,
                    Some("DOMAIN_NOT_FOUND")
                ),
                (
                    "domain.delete",
                    &AuditResult::Failure,
                    Some("PRECONDITION_FAILED")
                ),
                ("domain.delete", &AuditResult::Success, None),
                (
                    "domain.delete",
                    &AuditResult::Failure,
                    Some("DOMAIN_NOT_FOUND")
                ),
            ]
        );
        assert_eq!(audit[0].revision, Some(curiios.revision));
        assert_eq!(audit[0].resource, "domain");
    }
);

store_test!(nodes_keep_names_and_addresses_unique, |store| async move {
    let start = store.latest_revision().await.unwrap();
    let vps1 = vps(&store, "vps1", 1, "eu").await;
    assert_eq!(vps1.overlay_address, ip("100.64.0.1"));
    assert_eq!(vps1.user.as_deref(), Some("root"));
    let lap = laptop(&store, "laptop", 9).await;
    assert_eq!(store.get_node(&label("vps1")).await.unwrap(), vps1);

    let again = store
        .create_node(
            label("vps1"),
            NodeKind::Vps,
            vps_fields(7, "eu"),
            &operator(),
        )
        .await;
    assert_err!(again, StoreError::NodeExists(ref n) if n == "vps1");
    let overlay = store
        .create_node(
            label("vps2"),
            NodeKind::Vps,
            vps_fields(1, "eu"),
            &operator(),
        )
        .await;
    assert_err!(
        overlay,
        StoreError::NodeAddressTaken { ref field, ref address, ref node }
            if field == "overlay_address" && address == "100.64.0.1" && node == "vps1"
    );
    assert_eq!(overlay.unwrap_err().code(), ErrorCode::NodeAddressTaken);
    let public = NodeFields {
        overlay_address: ip("100.64.0.2"),
        ..vps_fields(1, "eu")
    };
    let public = store
        .create_node(label("vps2"), NodeKind::Vps, public, &operator())
        .await;
    assert_err!(
        public,
        StoreError::NodeAddressTaken { ref field, ref node, .. }
            if field == "public_address" && node == "vps1"
    );
    // One node's public address is not another's overlay address either.
    let crossed = NodeFields {
        overlay_address: ip("45.8.0.1"),
        ..vps_fields(2, "us")
    };
    let crossed = store
        .create_node(label("vps2"), NodeKind::Vps, crossed, &operator())
        .await;
    assert_err!(crossed, StoreError::NodeAddressTaken { ref field, .. } if field == "overlay_address");
    let vps2 = vps(&store, "vps2", 2, "us").await;

    // Updates: its own addresses are its own; another's are taken.
    let moved = NodeFields {
        region: Some("us".into()),
        ..vps_fields(1, "eu")
    };
    let updated = store
        .update_node(
            label("vps1"),
            moved.clone(),
            Some(vps1.revision),
            &operator(),
        )
        .await
        .unwrap();
    assert!(updated.revision > vps1.revision);
    assert_eq!(updated.region.as_deref(), Some("us"));
    let stale = store
        .update_node(label("vps1"), moved, Some(vps1.revision), &operator())
        .await;
    assert_err!(stale, StoreError::PreconditionFailed { .. });
    let taken = store
        .update_node(label("vps1"), vps_fields(2, "us"), None, &operator())
        .await;
    assert_err!(taken, StoreError::NodeAddressTaken { ref node, .. } if node == "vps2");
    let missing = store
        .update_node(label("vps9"), vps_fields(9, "us"), None, &operator())
        .await;
    assert_err!(missing, StoreError::NodeNotFound(_));

    let laptops = store.list_nodes(Some(NodeKind::Laptop)).await.unwrap();
    assert_eq!(laptops, std::slice::from_ref(&lap));
    let all: Vec<String> = store
        .list_nodes(None)
        .await
        .unwrap()
        .iter()
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(all, ["laptop", "vps1", "vps2"]);

    // Sync state starts offline (counted up) with its configuration stored.
    let sync = sync_of(&store, "laptop").await;
    assert_eq!(sync.status, NodeSyncStatus::Offline);
    assert!(sync.up);
    assert_eq!((sync.push_attempts, sync.applied_revision), (0, None));
    assert_eq!(sync.overlay_address, ip("100.64.1.9"));
    let config = store.desired_config(&label("laptop")).await.unwrap();
    assert_eq!(config.revision, sync.desired_revision);
    assert_eq!(config.config.node.as_str(), "laptop");
    assert_eq!(config.config.kind, NodeKind::Laptop);
    assert!(config.config.records.is_empty());
    let order: Vec<String> = store
        .list_node_sync()
        .await
        .unwrap()
        .iter()
        .map(|s| s.node.to_string())
        .collect();
    assert_eq!(order, ["laptop", "vps1", "vps2"], "laptops first");

    store
        .delete_node(label("vps2"), Some(vps2.revision), &operator())
        .await
        .unwrap();
    assert_err!(
        store.get_node(&label("vps2")).await,
        StoreError::NodeNotFound(_)
    );
    assert_err!(
        store.node_sync(&label("vps2")).await,
        StoreError::NodeNotFound(_)
    );
    assert_err!(
        store.desired_config(&label("vps2")).await,
        StoreError::NodeNotFound(_)
    );
    // Many nodes' configurations in one read: the ones that exist, each as
    // read alone.
    let mut many = store
        .desired_configs(&[label("vps2"), label("vps1"), label("laptop"), label("vps1")])
        .await
        .unwrap();
    many.sort_by(|a, b| a.config.node.cmp(&b.config.node));
    let alone = [
        store.desired_config(&label("laptop")).await.unwrap(),
        store.desired_config(&label("vps1")).await.unwrap(),
    ];
    assert_eq!(many, alone, "vps2 is gone, vps1 once");
    assert!(store.desired_configs(&[]).await.unwrap().is_empty());
    // Its addresses are free again.
    vps(&store, "vps3", 2, "us").await;

    let events = events_from(&store, start).await;
    let registered = &events[0];
    assert_eq!(registered.event_type, EventType::NodeRegistered);
    assert_eq!(registered.payload["name"], "vps1");
    // Each registration stores the node's configuration: its own
    // NODE_CONFIG_CHANGED right after.
    assert_eq!(events[1].event_type, EventType::NodeConfigChanged);
    assert_eq!(
        events[1].payload,
        json!({ "node": "vps1", "desired_revision": events[1].revision })
    );
    let deleted = events
        .iter()
        .find(|e| e.event_type == EventType::NodeDeleted)
        .unwrap();
    assert_eq!(
        deleted.payload,
        json!({ "node_id": vps2.id, "name": "vps2" })
    );
    assert!(events
        .iter()
        .any(|e| e.event_type == EventType::NodeUpdated));
});

store_test!(services_are_registered_by_hand, |store| async move {
    let cluster = insert(&store, "home-lab").await;
    let nowhere = ServiceFields {
        cluster_id: Some(Uuid::now_v7()),
        ..service_fields("photos", &["127.0.0.1:2283"])
    };
    let refused = store
        .create_service(label("immich"), nowhere, &operator())
        .await;
    assert_err!(refused, StoreError::Invalid(ref e) if e.field() == "cluster_id");
    let fields = ServiceFields {
        cluster_id: Some(cluster.id),
        namespace: Some("immich".into()),
        description: "photos".into(),
        ..service_fields("photos", &["10.0.0.5:2283", "10.0.0.6:2283"])
    };
    let immich = store
        .create_service(label("immich"), fields.clone(), &operator())
        .await
        .unwrap();
    assert_eq!(
        (immich.state, immich.origin),
        (ServiceState::Active, ServiceOrigin::Manual)
    );
    assert_eq!(immich.upstreams.len(), 2);
    let again = store
        .create_service(label("immich"), fields, &operator())
        .await;
    assert_err!(again, StoreError::ServiceExists(_));
    let grafana = service(&store, "grafana", "grafana").await;
    assert_eq!(store.get_service(&label("immich")).await.unwrap(), immich);

    let of_cluster = store.list_services(None, Some(cluster.id)).await.unwrap();
    assert_eq!(of_cluster, std::slice::from_ref(&immich));
    let active: Vec<String> = store
        .list_services(Some(ServiceState::Active), None)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(active, ["grafana", "immich"]);
    assert!(store
        .list_services(Some(ServiceState::Gone), None)
        .await
        .unwrap()
        .is_empty());

    let changed = service_fields("grafana", &["127.0.0.1:3001"]);
    let stale = store
        .update_service(
            label("grafana"),
            changed.clone(),
            Some(grafana.revision - 1),
            &operator(),
        )
        .await;
    assert_err!(stale, StoreError::PreconditionFailed { .. });
    let updated = store
        .update_service(
            label("grafana"),
            changed,
            Some(grafana.revision),
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(updated.upstreams[0].as_str(), "127.0.0.1:3001");
    assert!(updated.revision > grafana.revision);
    let missing = store
        .update_service(
            label("ghost"),
            service_fields("ghost", &["127.0.0.1:1"]),
            None,
            &operator(),
        )
        .await;
    assert_err!(missing, StoreError::ServiceNotFound(_));

    // A deregistered cluster leaves its services without a cluster.
    store
        .delete_cluster(cluster.id, None, &operator())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_service(&label("immich"))
            .await
            .unwrap()
            .cluster_id,
        None
    );

    let start = store.latest_revision().await.unwrap();
    store
        .delete_service(label("grafana"), Some(updated.revision), &operator())
        .await
        .unwrap();
    assert_err!(
        store.get_service(&label("grafana")).await,
        StoreError::ServiceNotFound(_)
    );
    let events = events_from(&store, start).await;
    assert_eq!(types(&events), [EventType::ServiceDeleted]);
    assert_eq!(
        events[0].payload,
        json!({ "service_id": grafana.id, "name": "grafana" })
    );
    let audit = audit_where(
        &store,
        AuditQuery {
            resource_id: Some(grafana.id),
            ..AuditQuery::default()
        },
    )
    .await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "service.create",
            "service.update",
            "service.update",
            "service.delete"
        ]
    );
});

store_test!(routings_are_checked_and_replaced, |store| async move {
    registry(&store).await;
    let immich = service(&store, "immich", "photos").await;

    let fields = routing(&BOTH, &["vps1"], RoundRobin);
    let nothing = configure(&store, "ghost", fields, None).await;
    assert_err!(nothing, StoreError::ServiceNotFound(_));
    let fields = routing(&["curiios.com", "nowhere.example"], &["vps1"], RoundRobin);
    let no_domain = configure(&store, "immich", fields, None).await;
    assert_err!(no_domain, StoreError::DomainNotFound(ref d) if d == "nowhere.example");
    let fields = routing(&BOTH, &["vps1", "vps9"], RoundRobin);
    let no_node = configure(&store, "immich", fields, None).await;
    assert_err!(no_node, StoreError::NodeNotFound(ref n) if n == "vps9");
    let fields = routing(&BOTH, &["vps1", "laptop"], RoundRobin);
    let on_laptop = configure(&store, "immich", fields, None).await;
    assert_err!(on_laptop, StoreError::Invalid(ref e) if e.field() == "nodes");
    assert_eq!(on_laptop.unwrap_err().code(), ErrorCode::ValidationError);
    let fields = routing(&BOTH, &["vps1"], RoundRobin);
    let if_match = configure(&store, "immich", fields, Some(1)).await;
    assert_err!(if_match, StoreError::RoutingNotFound(_));
    assert_err!(
        store.get_routing(&label("immich")).await,
        StoreError::RoutingNotFound(_)
    );

    let first = route(&store, "immich", &BOTH, &["vps1", "vps2"], RoundRobin).await;
    assert_eq!(first.service.as_str(), "immich");
    assert_eq!(store.get_routing(&label("immich")).await.unwrap(), first);
    let plan = store.routing_plan().await.unwrap();
    let serving: Vec<(&str, &str)> = plan
        .routes
        .iter()
        .map(|r| (r.hostname.as_str(), r.serving.as_str()))
        .collect();
    assert_eq!(
        serving,
        [
            ("photos.curiios.com", "vps1"),
            ("photos.vinaysachdeva.com", "vps2")
        ]
    );
    // The same routing again writes nothing.
    let same = route(&store, "immich", &BOTH, &["vps1", "vps2"], RoundRobin).await;
    assert_eq!(same.revision, first.revision);
    let fields = routing(&BOTH, &["vps2"], Geo);
    let stale = configure(&store, "immich", fields, Some(first.revision - 1)).await;
    assert_err!(stale, StoreError::PreconditionFailed { .. });
    let fields = routing(&["curiios.com"], &["vps2"], Geo);
    let second = configure(&store, "immich", fields, Some(first.revision))
        .await
        .unwrap();
    assert!(second.revision > first.revision);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(
        store.list_routings().await.unwrap(),
        std::slice::from_ref(&second)
    );
    // Replaced whole: vps1 and the second domain are no longer named.
    store
        .delete_domain(dname("vinaysachdeva.com"), None, &operator())
        .await
        .unwrap();
    store
        .delete_node(label("vps1"), None, &operator())
        .await
        .unwrap();

    let stale = store
        .delete_routing(label("immich"), Some(first.revision), &operator())
        .await;
    assert_err!(stale, StoreError::PreconditionFailed { .. });
    let start = store.latest_revision().await.unwrap();
    store
        .delete_routing(label("immich"), Some(second.revision), &operator())
        .await
        .unwrap();
    assert!(store.list_routings().await.unwrap().is_empty());
    assert!(store.routing_plan().await.unwrap().routes.is_empty());
    let again = store
        .delete_routing(label("immich"), None, &operator())
        .await;
    assert_err!(again, StoreError::RoutingNotFound(_));
    let events = events_from(&store, start).await;
    assert_eq!(events[0].event_type, EventType::RoutingDeleted);
    assert_eq!(events[0].payload, json!({ "service": "immich" }));
    assert_eq!(events[0].resource_id, immich.id);
    // vps2 and the laptop lose the route.
    assert_eq!(config_changes(&events), ["laptop", "vps2"]);
    let audit = audit_where(
        &store,
        AuditQuery {
            resource_id: Some(immich.id),
            ..AuditQuery::default()
        },
    )
    .await;
    let actions: Vec<(&str, Option<&str>)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.error_code.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("service.create", None),
            ("routing.configure", Some("DOMAIN_NOT_FOUND")),
            ("routing.configure", Some("NODE_NOT_FOUND")),
            ("routing.configure", Some("VALIDATION_ERROR")),
            ("routing.configure", Some("ROUTING_NOT_FOUND")),
            ("routing.configure", None),
            ("routing.configure", Some("PRECONDITION_FAILED")),
            ("routing.configure", None),
            ("routing.delete", Some("PRECONDITION_FAILED")),
            ("routing.delete", None),
            ("routing.delete", Some("ROUTING_NOT_FOUND")),
        ]
    );
    assert_eq!(audit[5].resource, "routing");
});

store_test!(what_a_routing_names_is_not_removed, |store| async move {
    domain(&store, "curiios.com", None).await;
    vps(&store, "vps1", 1, "eu").await;
    service(&store, "immich", "photos").await;
    service(&store, "grafana", "grafana").await;
    for name in ["immich", "grafana"] {
        route(&store, name, &["curiios.com"], &["vps1"], PrimaryBackup).await;
    }
    let domain = store
        .delete_domain(dname("curiios.com"), None, &operator())
        .await;
    assert_err!(
        domain,
        StoreError::InUse { what: "domain", ref services, .. }
            if services == &["grafana".to_owned(), "immich".to_owned()]
    );
    assert_eq!(domain.unwrap_err().code(), ErrorCode::ResourceInUse);
    let node = store.delete_node(label("vps1"), None, &operator()).await;
    assert_err!(node, StoreError::InUse { what: "node", ref name, .. } if name == "vps1");
    let service = store
        .delete_service(label("immich"), None, &operator())
        .await;
    assert_err!(
        service,
        StoreError::InUse { what: "service", ref services, .. } if services == &["immich".to_owned()]
    );
    let refusals: Vec<(String, Option<String>)> = audit_log(&store)
        .await
        .into_iter()
        .filter(|a| a.result == AuditResult::Failure)
        .map(|a| (a.action, a.error_code))
        .collect();
    let in_use = Some("RESOURCE_IN_USE".to_owned());
    assert_eq!(
        refusals,
        [
            ("domain.delete".to_owned(), in_use.clone()),
            ("node.delete".to_owned(), in_use.clone()),
            ("service.delete".to_owned(), in_use),
        ]
    );
    for name in ["immich", "grafana"] {
        store
            .delete_routing(label(name), None, &operator())
            .await
            .unwrap();
    }
    store
        .delete_domain(dname("curiios.com"), None, &operator())
        .await
        .unwrap();
    store
        .delete_node(label("vps1"), None, &operator())
        .await
        .unwrap();
    store
        .delete_service(label("immich"), None, &operator())
        .await
        .unwrap();
});

store_test!(
    a_routing_change_bumps_exactly_the_affected_nodes,
    |store| async move {
        registry(&store).await;
        vps(&store, "vps3", 3, "eu").await;
        service(&store, "immich", "photos").await;
        let before = desired(&store).await;

        // Primary-backup: both listed nodes carry the route (vps1 serves,
        // vps2 stands by); the laptop gets the records, all to vps1.
        let start = store.latest_revision().await.unwrap();
        route(&store, "immich", &BOTH, &["vps1", "vps2"], PrimaryBackup).await;
        let events = events_from(&store, start).await;
        assert_eq!(events[0].event_type, EventType::RoutingConfigured);
        assert_eq!(types(&events[1..]), [EventType::NodeConfigChanged; 3]);
        assert_eq!(config_changes(&events), ["laptop", "vps1", "vps2"]);
        let after = desired(&store).await;
        assert_eq!(after["vps3"], before["vps3"]);
        let changed: BTreeMap<String, i64> = events[1..]
            .iter()
            .map(|e| (e.payload["node"].as_str().unwrap().to_owned(), e.revision))
            .collect();
        assert_eq!(after["vps1"], changed["vps1"]);
        assert_eq!(after["vps2"], changed["vps2"]);
        assert_eq!(after["laptop"], changed["laptop"]);
        let vps1_config = store.desired_config(&label("vps1")).await.unwrap();
        assert_eq!(vps1_config.revision, changed["vps1"]);
        let hosts: Vec<&str> = vps1_config
            .config
            .routes
            .iter()
            .map(|r| r.hostname.as_str())
            .collect();
        assert_eq!(hosts, ["photos.curiios.com", "photos.vinaysachdeva.com"]);
        let records = store.desired_config(&label("laptop")).await.unwrap();
        assert_eq!(records.config.records.len(), 2);
        assert!(records
            .config
            .records
            .iter()
            .all(|r| r.address == ip("100.64.0.1")));
        let standby = store.desired_config(&label("vps2")).await.unwrap();
        assert_eq!(standby.config.routes, vps1_config.config.routes);

        // A change of the pushes' target resets the attempts.
        let revision = after["vps1"];
        store
            .record_push(&label("vps1"), revision, 5)
            .await
            .unwrap();
        assert_eq!(sync_of(&store, "vps1").await.push_attempts, 1);

        // Unrelated changes bump nobody.
        let start = store.latest_revision().await.unwrap();
        store
            .update_domain(
                dname("curiios.com"),
                DomainFields {
                    description: "a new description".into(),
                    region: Some("eu".into()),
                },
                None,
                &operator(),
            )
            .await
            .unwrap();
        service(&store, "grafana", "grafana").await;
        domain(&store, "third.example", None).await;
        store
            .update_node(
                label("vps3"),
                NodeFields {
                    provider: Some("hetzner".into()),
                    ..vps_fields(3, "eu")
                },
                None,
                &operator(),
            )
            .await
            .unwrap();
        let events = events_from(&store, start).await;
        assert!(config_changes(&events).is_empty(), "{events:?}");
        assert_eq!(desired(&store).await, after);

        // Upstreams of a routed service reach its carriers only.
        let start = store.latest_revision().await.unwrap();
        store
            .update_service(
                label("immich"),
                service_fields("photos", &["127.0.0.1:9999"]),
                None,
                &operator(),
            )
            .await
            .unwrap();
        let events = events_from(&store, start).await;
        assert_eq!(config_changes(&events), ["vps1", "vps2"]);
        assert_eq!(sync_of(&store, "vps1").await.push_attempts, 0);

        // Moving the serving node's overlay address changes the laptop's records.
        let start = store.latest_revision().await.unwrap();
        store
            .update_node(
                label("vps1"),
                NodeFields {
                    overlay_address: ip("100.64.0.101"),
                    ..vps_fields(1, "eu")
                },
                None,
                &operator(),
            )
            .await
            .unwrap();
        let events = events_from(&store, start).await;
        assert_eq!(config_changes(&events), ["laptop"]);

        // Round-robin: the same carriers (their routes change their
        // balance), the second hostname served by vps2.
        let start = store.latest_revision().await.unwrap();
        route(&store, "immich", &BOTH, &["vps1", "vps2"], RoundRobin).await;
        let events = events_from(&store, start).await;
        assert_eq!(config_changes(&events), ["laptop", "vps1", "vps2"]);
        let vps2 = store.desired_config(&label("vps2")).await.unwrap();
        assert_eq!(vps2.config.routes.len(), 2);
        // A routing of an unrelated node set leaves vps3 alone throughout.
        assert_eq!(desired(&store).await["vps3"], before["vps3"]);
    }
);

fn on_a_manual_clock() -> StoreOptions {
    StoreOptions {
        clock: Clock::manual("2031-05-06T07:08:09Z".parse().unwrap()),
        ..test_options()
    }
}

fn heartbeat() -> NodeAck {
    NodeAck {
        applied_revision: None,
        error: None,
        failed_revision: None,
    }
}

/// An acknowledgement of `revision` applied, without error.
fn applied_ack(revision: i64) -> NodeAck {
    NodeAck {
        applied_revision: Some(revision),
        ..heartbeat()
    }
}

store_test!(
    silent_nodes_fail_over_and_return,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let agent = actor("agent");
        domain(&store, "curiios.com", Some("eu")).await;
        vps(&store, "vps1", 1, "eu").await;
        let vps2 = vps(&store, "vps2", 2, "us").await;
        laptop(&store, "laptop", 9).await;
        service(&store, "open-webui", "chat").await;
        route(
            &store,
            "open-webui",
            &["curiios.com"],
            &["vps1", "vps2"],
            PrimaryBackup,
        )
        .await;
        for node in ["vps1", "vps2"] {
            let sync = ack(&store, node, heartbeat(), &agent).await;
            assert_eq!(sync.status, NodeSyncStatus::Active);
        }
        // Nobody is silent yet.
        let quiet = store
            .mark_silent_nodes(clock.now() - Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(quiet, Default::default());

        clock.advance(Duration::seconds(60));
        ack(&store, "vps2", heartbeat(), &agent).await;
        let before = desired(&store).await;
        let start = store.latest_revision().await.unwrap();
        let change = store
            .mark_silent_nodes(clock.now() - Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(
            change.failovers,
            [("chat.curiios.com".to_owned(), label("vps1"), label("vps2"))]
        );
        // The laptop never sent a heartbeat: down, but already offline.
        assert_eq!(
            change.status_changes,
            [(
                label("vps1"),
                NodeSyncStatus::Active,
                NodeSyncStatus::Offline
            )]
        );
        let events = events_from(&store, start).await;
        let failover = events
            .iter()
            .find(|e| e.event_type == EventType::RoutingFailover)
            .unwrap();
        assert_eq!(
            failover.payload,
            json!({
                "service": "open-webui",
                "hostname": "chat.curiios.com",
                "from": "vps1",
                "to": "vps2",
                "reason": "node_down",
            })
        );
        assert_eq!(failover.resource, "routing");
        let changed: Vec<&Event> = events
            .iter()
            .filter(|e| e.event_type == EventType::NodeSyncChanged)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].payload["node"], "vps1");
        assert_eq!(changed[0].payload["old_status"], "active");
        assert_eq!(changed[0].payload["new_status"], "offline");
        assert_eq!(changed[0].payload["sync"]["up"], false);
        // vps2 stood by with the route: only DNS moves.
        assert_eq!(config_changes(&events), ["laptop"]);
        let after = desired(&store).await;
        assert_eq!(after["vps2"], before["vps2"]);
        let records = store.desired_config(&label("laptop")).await.unwrap();
        assert_eq!(records.config.records[0].address, vps2.overlay_address);
        let vps1 = sync_of(&store, "vps1").await;
        assert!(!vps1.up);
        assert_eq!(vps1.status, NodeSyncStatus::Offline);
        assert!(!sync_of(&store, "laptop").await.up);
        // Once per episode.
        let again = store
            .mark_silent_nodes(clock.now() - Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(again, Default::default());
        // Observations are not audited; each route they move is.
        let audit = audit_log(&store).await;
        assert!(audit
            .iter()
            .filter(|a| a.action != "routing.failover")
            .all(|a| a.actor != "agent"
                && a.actor != "system:edge-sync"
                && !a.action.starts_with("sync.")));
        assert!(audit.iter().any(|a| a.action == "routing.failover"));

        // vps1 comes back: the route returns.
        let start = store.latest_revision().await.unwrap();
        let back = ack(&store, "vps1", heartbeat(), &agent).await;
        assert!(back.up);
        assert_eq!(back.status, NodeSyncStatus::Active);
        let events = events_from(&store, start).await;
        let failover = events
            .iter()
            .find(|e| e.event_type == EventType::RoutingFailover)
            .unwrap();
        assert_eq!(failover.payload["from"], "vps2");
        assert_eq!(failover.payload["to"], "vps1");
        assert_eq!(failover.payload["reason"], "node_up");
        assert_eq!(config_changes(&events), ["laptop"]);
        assert_eq!(
            back.desired_revision,
            store.desired_config(&label("vps1")).await.unwrap().revision
        );
        let sync_changes: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == EventType::NodeSyncChanged)
            .map(|e| {
                (
                    e.payload["old_status"].clone(),
                    e.payload["new_status"].clone(),
                )
            })
            .collect();
        assert_eq!(sync_changes, [(json!("offline"), json!("active"))]);
        let plan = store.routing_plan().await.unwrap();
        assert_eq!(plan.routes[0].serving.as_str(), "vps1");
        // A laptop coming back moves nothing.
        let start = store.latest_revision().await.unwrap();
        ack(&store, "laptop", heartbeat(), &agent).await;
        let events = events_from(&store, start).await;
        assert_eq!(types(&events), [EventType::NodeSyncChanged]);
    }
);

/// The failovers of `events`: `(from, to, reason)`.
fn failovers(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e.event_type == EventType::RoutingFailover)
        .map(|e| {
            let text = |key: &str| e.payload[key].as_str().unwrap_or_default().to_owned();
            (text("from"), text("to"), text("reason"))
        })
        .collect()
}

store_test!(
    failing_http_checks_fail_over_and_return,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let agent = actor("agent");
        domain(&store, "curiios.com", Some("eu")).await;
        vps(&store, "vps1", 1, "eu").await;
        vps(&store, "vps2", 2, "us").await;
        laptop(&store, "laptop", 9).await;
        service(&store, "open-webui", "chat").await;
        route(
            &store,
            "open-webui",
            &["curiios.com"],
            &["vps1", "vps2"],
            PrimaryBackup,
        )
        .await;
        for node in ["vps1", "vps2", "laptop"] {
            let sync = ack(&store, node, heartbeat(), &agent).await;
            assert!(sync.up && sync.heartbeat_ok && sync.check_ok);
            assert_eq!((sync.check_error, sync.check_changed_at), (None, None));
        }
        let vps1 = label("vps1");

        // The check through vps1 fails: down, the route moves to vps2.
        clock.advance(Duration::seconds(5));
        let start = store.latest_revision().await.unwrap();
        let error = format!(
            "connect to 45.8.0.1:80: refused\n\u{1b}[31m{}",
            "x".repeat(600)
        );
        let down = store
            .record_node_check(&vps1, false, Some(error))
            .await
            .unwrap();
        assert!(!down.up && !down.check_ok && down.heartbeat_ok);
        assert_eq!(down.status, NodeSyncStatus::Active, "its agent is fine");
        let kept = down.check_error.clone().unwrap();
        assert!(
            kept.starts_with("connect to 45.8.0.1:80: refused[31mxxx"),
            "{kept}"
        );
        assert_eq!(kept.chars().count(), fleetreg_model::MAX_CHECK_ERROR);
        assert_eq!(down.check_changed_at, Some(clock.now()));
        assert_eq!(down.down_reason().unwrap(), format!("check failed: {kept}"));
        assert_eq!(sync_of(&store, "vps1").await, down);
        let events = events_from(&store, start).await;
        assert_eq!(
            failovers(&events),
            [("vps1".into(), "vps2".into(), "check_failed".into())]
        );
        assert_eq!(config_changes(&events), ["laptop"]);
        let changed: Vec<&Event> = events
            .iter()
            .filter(|e| e.event_type == EventType::NodeSyncChanged)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].payload["node"], "vps1");
        assert_eq!(changed[0].payload["check_ok"], false);
        assert_eq!(changed[0].payload["check_error"], json!(kept));
        assert_eq!(changed[0].payload["up"], false);
        assert_eq!(
            down.desired_revision,
            store.desired_config(&vps1).await.unwrap().revision
        );
        assert_eq!(
            store.routing_plan().await.unwrap().routes[0]
                .serving
                .as_str(),
            "vps2"
        );
        // The move is audited as the controller's; the observation is not.
        let audit = audit_log(&store).await;
        let moves: Vec<_> = audit
            .iter()
            .filter(|a| a.action == "routing.failover")
            .collect();
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].actor, "system:edge-sync");
        assert!(moves[0].revision.is_some());

        // The same outcome again writes nothing.
        let start = store.latest_revision().await.unwrap();
        let again = store
            .record_node_check(&vps1, false, Some("other".into()))
            .await
            .unwrap();
        assert_eq!(again, down);
        assert_eq!(store.latest_revision().await.unwrap(), start);

        // A heartbeat does not bring it up while the check fails; a failed
        // apply and a manual push leave it active (its heartbeats arrive).
        let beat = ack(&store, "vps1", heartbeat(), &agent).await;
        assert!(!beat.up && beat.heartbeat_ok);
        let failed = ack(&store, "vps1", failed_ack(beat.desired_revision), &agent).await;
        assert_eq!(failed.status, NodeSyncStatus::Failed);
        let reset = store
            .reset_pushes(Some(&vps1), PushReason::Push, &operator())
            .await
            .unwrap();
        assert_eq!(reset[0].status, NodeSyncStatus::Active);
        assert!(failovers(&events_from(&store, start).await).is_empty());

        // The check passes again: up, the route moves back.
        clock.advance(Duration::seconds(5));
        let start = store.latest_revision().await.unwrap();
        let up = store.record_node_check(&vps1, true, None).await.unwrap();
        assert!(up.up && up.check_ok);
        assert_eq!(up.check_error, None);
        assert_eq!(up.check_changed_at, Some(clock.now()));
        assert_eq!(up.down_reason(), None);
        let events = events_from(&store, start).await;
        assert_eq!(
            failovers(&events),
            [("vps2".into(), "vps1".into(), "check_passed".into())]
        );

        // Silent and failing: a passing check does not bring it up, its next
        // heartbeat does.
        store
            .record_node_check(&vps1, false, Some("timeout".into()))
            .await
            .unwrap();
        clock.advance(Duration::seconds(60));
        ack(&store, "vps2", heartbeat(), &agent).await;
        ack(&store, "laptop", heartbeat(), &agent).await;
        let start = store.latest_revision().await.unwrap();
        let change = store
            .mark_silent_nodes(clock.now() - Duration::seconds(30))
            .await
            .unwrap();
        assert!(change.failovers.is_empty(), "already down: {change:?}");
        let silent = sync_of(&store, "vps1").await;
        assert!(!silent.up && !silent.heartbeat_ok && !silent.check_ok);
        assert_eq!(silent.status, NodeSyncStatus::Offline);
        assert_eq!(
            silent.down_reason().unwrap(),
            "no heartbeat; check failed: timeout"
        );
        let passing = store.record_node_check(&vps1, true, None).await.unwrap();
        assert!(!passing.up && passing.check_ok);
        assert_eq!(passing.down_reason().unwrap(), "no heartbeat");
        assert!(failovers(&events_from(&store, start).await).is_empty());
        let back = ack(&store, "vps1", heartbeat(), &agent).await;
        assert!(back.up);
        assert_eq!(
            failovers(&events_from(&store, start).await),
            [("vps2".into(), "vps1".into(), "node_up".into())]
        );

        // A laptop's check moves nothing; an unknown node is not found.
        let start = store.latest_revision().await.unwrap();
        store
            .record_node_check(&label("laptop"), false, None)
            .await
            .unwrap();
        let events = events_from(&store, start).await;
        assert_eq!(types(&events), [EventType::NodeSyncChanged]);
        assert!(matches!(
            store.record_node_check(&label("nope"), false, None).await,
            Err(StoreError::NodeNotFound(_))
        ));
    }
);

store_test!(
    acknowledgements_and_pushes_move_the_sync_state,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let agent = actor("agent");
        vps(&store, "vps1", 1, "eu").await;
        laptop(&store, "laptop", 9).await;
        let unknown = store
            .acknowledge(&label("ghost"), heartbeat(), &agent)
            .await;
        assert_err!(unknown, StoreError::NodeNotFound(_));
        assert_err!(
            store.record_push(&label("ghost"), 1, 3).await,
            StoreError::NodeNotFound(_)
        );

        let desired = sync_of(&store, "vps1").await.desired_revision;
        let start = store.latest_revision().await.unwrap();
        // Pushes of the desired revision count; at the third the node fails.
        for attempt in 1..=3u32 {
            let sync = store.record_push(&label("vps1"), desired, 3).await.unwrap();
            assert_eq!(sync.push_attempts, attempt);
            let expected = if attempt == 3 {
                NodeSyncStatus::Failed
            } else {
                NodeSyncStatus::Offline
            };
            assert_eq!(sync.status, expected);
        }
        // A revision no longer desired is not counted.
        let stale = store
            .record_push(&label("vps1"), desired - 1, 3)
            .await
            .unwrap();
        assert_eq!(stale.push_attempts, 3);
        // Each retry wakes the node's streams (NODE_PUSH); the last one fails it.
        let events = events_from(&store, start).await;
        assert_eq!(
            types(&events),
            [
                EventType::NodePush,
                EventType::NodePush,
                EventType::NodeSyncChanged
            ]
        );
        assert_eq!(
            events[1].payload,
            json!({ "node": "vps1", "desired_revision": desired, "attempt": 2, "reason": "retry" })
        );
        assert_eq!(events[2].payload["new_status"], "failed");
        assert_eq!(events[2].payload["sync"]["push_attempts"], 3);

        // A bare heartbeat keeps a failed node failed.
        clock.advance(Duration::seconds(5));
        let beat = ack(&store, "vps1", heartbeat(), &agent).await;
        assert_eq!(beat.status, NodeSyncStatus::Failed);
        assert_eq!(beat.last_heartbeat_at, Some(clock.now()));
        assert_eq!(beat.last_sync_at, None);

        // The agent applies the desired revision: active, in sync.
        clock.advance(Duration::seconds(5));
        let applied = ack(&store, "vps1", applied_ack(desired), &agent).await;
        assert_eq!(applied.status, NodeSyncStatus::Active);
        assert!(applied.in_sync());
        assert_eq!(applied.push_attempts, 0);
        assert_eq!(applied.last_sync_at, Some(clock.now()));
        assert_eq!(sync_of(&store, "vps1").await, applied);

        // It reports a failure: failed, the error kept clean and bounded.
        let long = format!("caddy reload failed:\n\u{1b}[31m{}", "x".repeat(2000));
        let report = NodeAck {
            applied_revision: Some(desired),
            error: Some(long),
            failed_revision: Some(desired + 1),
        };
        let failed = ack(&store, "vps1", report, &agent).await;
        assert_eq!(failed.status, NodeSyncStatus::Failed);
        let error = failed.last_error.clone().unwrap();
        assert_eq!(error.chars().count(), MAX_AGENT_ERROR);
        assert!(error.starts_with("caddy reload failed:[31mxxx"), "{error}");
        assert!(!error.chars().any(char::is_control));
        // Then applies it after all: active, error cleared.
        let ok = ack(&store, "vps1", applied_ack(desired), &agent).await;
        assert_eq!((ok.status, ok.last_error), (NodeSyncStatus::Active, None));

        // Manual pushes reset the attempts (audited); a failed node that is
        // up gets its retries back as `active`.
        for _ in 0..3 {
            store.record_push(&label("vps1"), desired, 3).await.unwrap();
        }
        assert_eq!(sync_of(&store, "vps1").await.status, NodeSyncStatus::Failed);
        let laptop_desired = sync_of(&store, "laptop").await.desired_revision;
        store
            .record_push(&label("laptop"), laptop_desired, 3)
            .await
            .unwrap();
        let one = store
            .reset_pushes(Some(&label("vps1")), PushReason::Push, &operator())
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].node.as_str(), one[0].push_attempts), ("vps1", 0));
        assert_eq!(one[0].status, NodeSyncStatus::Active);
        assert_eq!(sync_of(&store, "vps1").await, one[0]);
        assert_eq!(sync_of(&store, "laptop").await.push_attempts, 1);
        let all = store
            .reset_pushes(None, PushReason::Reconcile, &operator())
            .await
            .unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, ["laptop", "vps1"]);
        assert!(store
            .list_node_sync()
            .await
            .unwrap()
            .iter()
            .all(|s| s.push_attempts == 0));
        let missing = store
            .reset_pushes(Some(&label("ghost")), PushReason::Push, &operator())
            .await;
        assert_err!(missing, StoreError::NodeNotFound(_));
        let pushes: Vec<(String, Option<Uuid>, AuditResult)> = audit_where(
            &store,
            AuditQuery {
                resource_id: None,
                ..AuditQuery::default()
            },
        )
        .await
        .into_iter()
        .filter(|a| a.action.starts_with("sync."))
        .map(|a| (a.action, a.resource_id, a.result))
        .collect();
        let vps1 = store.get_node(&label("vps1")).await.unwrap();
        assert_eq!(
            pushes,
            [
                ("sync.push".to_owned(), Some(vps1.id), AuditResult::Success),
                ("sync.reconcile".to_owned(), None, AuditResult::Success),
                ("sync.push".to_owned(), None, AuditResult::Failure),
            ]
        );
        // Heartbeats are not audited.
        assert!(audit_log(&store).await.iter().all(|a| a.actor != "agent"));
    }
);

fn discovered(name: &str, upstream: &str) -> DiscoveredService {
    DiscoveredService {
        name: label(name),
        namespace: name.to_owned(),
        fields: service_fields(name, &[upstream]),
    }
}

/// Syncs `cluster`'s discovered services (`(name, upstream)` each) as the
/// service sync does, accepted.
async fn sync_services(
    store: &StoreRef,
    cluster: Uuid,
    found: &[(&str, &str)],
) -> ServiceSyncReport {
    let found = found
        .iter()
        .map(|(name, up)| discovered(name, up))
        .collect();
    let system = Audit::system("service-sync");
    store
        .sync_cluster_services(cluster, found, &system)
        .await
        .unwrap()
}

store_test!(cluster_services_are_synced, |store| async move {
    let cluster = insert(&store, "home-lab").await;
    let other = insert(&store, "other-lab").await;
    let grafana = service(&store, "grafana", "grafana").await;
    let system = Audit::system("service-sync");

    let report = sync_services(
        &store,
        cluster.id,
        &[
            ("immich", "10.0.0.5:2283"),
            ("grafana", "10.0.0.6:3000"),
            ("web", "10.0.0.7:80"),
        ],
    )
    .await;
    assert_eq!(report.registered, ["immich", "web"]);
    assert_eq!(report.skipped, ["grafana"]);
    assert_eq!(
        (report.updated.len(), report.gone.len(), report.unchanged),
        (0, 0, 0)
    );
    let immich = store.get_service(&label("immich")).await.unwrap();
    assert_eq!(immich.origin, ServiceOrigin::Cluster);
    assert_eq!(immich.cluster_id, Some(cluster.id));
    assert_eq!(immich.namespace.as_deref(), Some("immich"));
    assert_eq!(store.get_service(&label("grafana")).await.unwrap(), grafana);

    // The same again changes nothing and is not audited again.
    let audited = audit_log(&store).await.len();
    let report = sync_services(
        &store,
        cluster.id,
        &[("immich", "10.0.0.5:2283"), ("web", "10.0.0.7:80")],
    )
    .await;
    assert_eq!(report.unchanged, 2);
    assert!(report.registered.is_empty() && report.updated.is_empty() && report.gone.is_empty());
    assert_eq!(audit_log(&store).await.len(), audited);

    // Another cluster's service of the same name is skipped.
    let report = sync_services(&store, other.id, &[("immich", "10.9.0.5:1")]).await;
    assert_eq!(report.skipped, ["immich"]);

    // Changed, and gone.
    let start = store.latest_revision().await.unwrap();
    let report = sync_services(&store, cluster.id, &[("immich", "10.0.0.5:2284")]).await;
    assert_eq!(report.updated, ["immich"]);
    assert_eq!(report.gone, ["web"]);
    let events = events_from(&store, start).await;
    assert_eq!(
        types(&events),
        [EventType::ServiceUpdated, EventType::ServiceGone]
    );
    assert_eq!(events[1].payload["state"], "gone");
    let web = store.get_service(&label("web")).await.unwrap();
    assert_eq!(web.state, ServiceState::Gone);
    let gone: Vec<String> = store
        .list_services(Some(ServiceState::Gone), None)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(gone, ["web"]);
    let entry = audit_log(&store).await.pop().unwrap();
    assert_eq!(
        (entry.action.as_str(), entry.resource_id, entry.revision),
        ("service.sync", Some(cluster.id), Some(events[1].revision))
    );
    assert_eq!(entry.actor, "system:service-sync");

    // Back from gone.
    let report = sync_services(
        &store,
        cluster.id,
        &[("immich", "10.0.0.5:2284"), ("web", "10.0.0.7:80")],
    )
    .await;
    assert_eq!(
        (report.updated, report.unchanged),
        (vec!["web".to_owned()], 1)
    );
    assert_eq!(
        store.get_service(&label("web")).await.unwrap().state,
        ServiceState::Active
    );

    // A gone service is not routed; changed by hand it is an active manual one.
    domain(&store, "curiios.com", None).await;
    vps(&store, "vps1", 1, "eu").await;
    route(&store, "web", &["curiios.com"], &["vps1"], PrimaryBackup).await;
    assert_eq!(store.routing_plan().await.unwrap().routes.len(), 1);
    let start = store.latest_revision().await.unwrap();
    let report = sync_services(&store, cluster.id, &[("immich", "10.0.0.5:2284")]).await;
    assert_eq!(report.gone, ["web"]);
    assert!(store.routing_plan().await.unwrap().routes.is_empty());
    assert_eq!(config_changes(&events_from(&store, start).await), ["vps1"]);
    let manual = store
        .update_service(
            label("web"),
            service_fields("web", &["10.0.0.8:80"]),
            None,
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(
        (manual.state, manual.origin),
        (ServiceState::Active, ServiceOrigin::Manual)
    );
    assert_eq!(store.routing_plan().await.unwrap().routes.len(), 1);

    let missing = store
        .sync_cluster_services(Uuid::now_v7(), vec![], &system)
        .await;
    assert_err!(missing, StoreError::NotFound(_));
});

store_test!(
    one_sync_controller_holds_the_lease,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let until = clock.now() + Duration::seconds(30);
        assert!(store.claim_controller("replica-a", until).await.unwrap());
        assert!(!store.claim_controller("replica-b", until).await.unwrap());
        // The holder renews.
        clock.advance(Duration::seconds(20));
        let renewed = clock.now() + Duration::seconds(30);
        assert!(store.claim_controller("replica-a", renewed).await.unwrap());
        clock.advance(Duration::seconds(20));
        assert!(!store
            .claim_controller("replica-b", clock.now() + Duration::seconds(30))
            .await
            .unwrap());
        // Expired: the other takes it, and the first no longer can.
        clock.advance(Duration::seconds(15));
        assert!(store
            .claim_controller("replica-b", clock.now() + Duration::seconds(30))
            .await
            .unwrap());
        assert!(!store
            .claim_controller("replica-a", clock.now() + Duration::seconds(30))
            .await
            .unwrap());
    }
);

store_test!(
    concurrent_writes_leave_every_configuration_as_planned,
    |store| async move {
        registry(&store).await;
        // Registrations and routings of many services at once: the writer
        // groups them into batches, each write recomputing what the ones
        // before it in the same transaction changed.
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..24usize {
            let store = store.clone();
            writes.spawn(async move {
                let name = format!("svc{i}");
                store
                    .create_service(
                        label(&name),
                        service_fields(&name, &[&format!("127.0.0.1:{}", 3000 + i)]),
                        &operator(),
                    )
                    .await
                    .unwrap();
                let strategy = [RoundRobin, PrimaryBackup, Geo][i % 3];
                route(&store, &name, &BOTH, &["vps2", "vps1"], strategy).await;
            });
        }
        while let Some(done) = writes.join_next().await {
            done.unwrap();
        }
        let plan = store.routing_plan().await.unwrap();
        assert_eq!(plan.routes.len(), 48);
        for node in store.list_nodes(None).await.unwrap() {
            let sync = store.node_sync(&node.name).await.unwrap();
            let view = fleetreg_model::NodeView {
                name: node.name.clone(),
                kind: node.kind,
                overlay_address: node.overlay_address,
                region: node.region.clone(),
                up: sync.up,
            };
            let stored = store.desired_config(&node.name).await.unwrap();
            assert_eq!(stored.config, plan.node_config(&view), "{}", node.name);
            assert_eq!(stored.revision, sync.desired_revision);
        }
    }
);

/// An acknowledgement of a failure to apply `revision`.
fn failed_ack(revision: i64) -> NodeAck {
    NodeAck {
        applied_revision: None,
        error: Some("boom".into()),
        failed_revision: Some(revision),
    }
}

/// The acknowledgements of node pattern `pattern`, its desired revision `d`:
/// every way `Acknowledge` moves a node, some of them repeated.
fn ack_sequence(pattern: usize, d: i64) -> Vec<NodeAck> {
    match pattern {
        0 => vec![heartbeat()],
        1 => vec![applied_ack(d)],
        2 => vec![failed_ack(d), heartbeat()],
        3 => vec![failed_ack(d), applied_ack(d), heartbeat()],
        4 => vec![applied_ack(d - 1)],
        _ => vec![applied_ack(d), applied_ack(d), heartbeat()],
    }
}

/// `sync` with its node's name and address blanked and its revisions
/// relative to `d`, to compare twins.
fn relative(sync: &NodeSync, d: i64) -> NodeSync {
    NodeSync {
        node: label("twin"),
        overlay_address: ip("0.0.0.0"),
        desired_revision: sync.desired_revision - d,
        applied_revision: sync.applied_revision.map(|r| r - d),
        ..sync.clone()
    }
}

/// `(old, new)` status of each `NODE_SYNC_CHANGED` of `node` among `events`.
fn status_moves(events: &[Event], node: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.event_type == EventType::NodeSyncChanged && e.payload["node"] == node)
        .map(|e| {
            let status = |key: &str| e.payload[key].as_str().unwrap().to_owned();
            (status("old_status"), status("new_status"))
        })
        .collect()
}

/// Starts `writes` in order (one poll each queues it with the writer, so
/// most of them land in one batch, in this order), then waits for them all.
async fn queued_in_order<T>(
    writes: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    let mut writes: Vec<_> = writes.into_iter().map(|w| (w, None)).collect();
    // Unconstrained: tokio's cooperative budget would otherwise stop the
    // queueing after 128 sends.
    tokio::task::unconstrained(std::future::poll_fn(|cx| {
        for (write, done) in writes.iter_mut() {
            if let std::task::Poll::Ready(out) = write.as_mut().poll(cx) {
                *done = Some(out);
            }
        }
        std::task::Poll::Ready(())
    }))
    .await;
    let mut outs = Vec::with_capacity(writes.len());
    for (write, done) in writes {
        outs.push(match done {
            Some(out) => out,
            None => write.await,
        });
    }
    outs
}

store_test!(
    acknowledgements_in_one_batch_end_as_one_by_one,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        let agent = actor("agent");
        // A routed pair whose primary is down: its acknowledgement in the
        // batch brings it up and routes back (a recompute in mid-batch).
        domain(&store, "curiios.com", Some("eu")).await;
        vps(&store, "vps1", 1, "eu").await;
        vps(&store, "vps2", 2, "us").await;
        service(&store, "open-webui", "chat").await;
        let nodes = ["vps1", "vps2"];
        route(
            &store,
            "open-webui",
            &["curiios.com"],
            &nodes,
            PrimaryBackup,
        )
        .await;
        clock.advance(Duration::seconds(60));
        ack(&store, "vps2", heartbeat(), &agent).await;
        let since = clock.now() - Duration::seconds(30);
        store.mark_silent_nodes(since).await.unwrap();
        assert!(!sync_of(&store, "vps1").await.up);

        // Twins: `a<i>` acknowledged in one batch, `b<i>` one by one, the
        // same acknowledgements; every other node counted a push first.
        let patterns = 6;
        let count = patterns * 5;
        let mut desired_of = BTreeMap::new();
        for i in 0..count {
            for (twin, base) in [("a", 10), ("b", 100)] {
                let name = format!("{twin}{i}");
                // VPSs (laptops would get vps1's move as a new configuration).
                vps(&store, &name, u8::try_from(base + i).unwrap(), "eu").await;
                let d = sync_of(&store, &name).await.desired_revision;
                if i % 2 == 0 {
                    store.record_push(&label(&name), d, 5).await.unwrap();
                }
                desired_of.insert(name, d);
            }
        }
        clock.advance(Duration::seconds(5));

        // Round by round, so one node's acknowledgements are apart in the
        // batch; vps1's and an unknown node's among them.
        let mut batch: Vec<(DnsLabel, NodeAck)> = Vec::new();
        for round in 0..3 {
            for i in 0..count {
                let name = format!("a{i}");
                let acks = ack_sequence(i % patterns, desired_of[&name]);
                if let Some(ack) = acks.get(round) {
                    batch.push((label(&name), ack.clone()));
                }
                if round == 0 && i == count / 2 {
                    batch.push((label("vps1"), heartbeat()));
                    batch.push((label("ghost"), heartbeat()));
                }
            }
        }
        let start = store.latest_revision().await.unwrap();
        let writes = batch
            .iter()
            .map(|(node, ack)| store.acknowledge(node, ack.clone(), &agent))
            .collect();
        let replies = queued_in_order(writes).await;
        let batch_events = events_from(&store, start).await;
        let middle = store.latest_revision().await.unwrap();

        let mut sequential: BTreeMap<String, Vec<NodeSync>> = BTreeMap::new();
        for i in 0..count {
            let name = format!("b{i}");
            for ack_b in ack_sequence(i % patterns, desired_of[&name]) {
                let reply = ack(&store, &name, ack_b, &agent).await;
                sequential.entry(name.clone()).or_default().push(reply);
            }
        }
        let one_by_one = events_from(&store, middle).await;

        // Each reply is the state its twin had after the same acknowledgement.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for ((node, _), reply) in batch.iter().zip(&replies) {
            match node.as_str() {
                "ghost" => assert_err!(reply, StoreError::NodeNotFound(_)),
                "vps1" => {
                    let vps1 = reply.as_ref().unwrap();
                    assert!(vps1.up);
                    assert_eq!(vps1.status, NodeSyncStatus::Active);
                }
                name => {
                    let reply = reply.as_ref().unwrap();
                    let twin = format!("b{}", &name[1..]);
                    let step = seen.entry(name.to_owned()).or_default();
                    let expected = &sequential[&twin][*step];
                    *step += 1;
                    assert_eq!(
                        relative(reply, desired_of[name]),
                        relative(expected, desired_of[&twin]),
                        "{name}, acknowledgement {step}"
                    );
                }
            }
        }

        // The stored states and the status events match the twins' and the
        // rules.
        for i in 0..count {
            let (a, b) = (format!("a{i}"), format!("b{i}"));
            let (da, db) = (desired_of[&a], desired_of[&b]);
            let stored = sync_of(&store, &a).await;
            assert_eq!(
                relative(&stored, da),
                relative(&sync_of(&store, &b).await, db),
                "{a}"
            );
            assert_eq!(
                status_moves(&batch_events, &a),
                status_moves(&one_by_one, &b),
                "{a}"
            );
            let pushed = u32::from(i % 2 == 0);
            let (status, applied, error, attempts) = match i % patterns {
                0 => (NodeSyncStatus::Active, None, None, pushed),
                1 => (NodeSyncStatus::Active, Some(da), None, 0),
                2 => (NodeSyncStatus::Failed, None, Some("boom"), pushed),
                3 => (NodeSyncStatus::Active, Some(da), None, 0),
                4 => (NodeSyncStatus::Active, Some(da - 1), None, pushed),
                _ => (NodeSyncStatus::Active, Some(da), None, 0),
            };
            assert_eq!(stored.status, status, "{a}");
            assert_eq!(stored.applied_revision, applied, "{a}");
            assert_eq!(stored.last_error.as_deref(), error, "{a}");
            assert_eq!(stored.push_attempts, attempts, "{a}");
            assert_eq!(stored.last_heartbeat_at, Some(clock.now()), "{a}");
            let synced = applied.is_some().then(|| clock.now());
            assert_eq!(stored.last_sync_at, synced, "{a}");
            assert!(stored.up, "{a}");
        }
        // vps1 came back in the batch: the route moved back to it.
        let failover = batch_events
            .iter()
            .find(|e| e.event_type == EventType::RoutingFailover)
            .unwrap();
        assert_eq!(failover.payload["to"], "vps1");
        assert_eq!(failover.payload["reason"], "node_up");
        assert_eq!(sync_of(&store, "vps1").await.status, NodeSyncStatus::Active);
        let plan = store.routing_plan().await.unwrap();
        assert_eq!(plan.routes[0].serving.as_str(), "vps1");
    }
);

store_test!(
    the_reconciliation_interval_and_schedule_are_stored,
    options = on_a_manual_clock(),
    |store| async move {
        let clock = store.clock().clone();
        vps(&store, "vps1", 1, "eu").await;
        // Nothing stored: the configuration's interval, no schedule yet.
        let fresh = store.reconcile_schedule().await.unwrap();
        assert_eq!(fresh, fleetreg_store::ReconcileSchedule::default());
        // The first controller starts the schedule; later starts keep it.
        let started = store.start_reconcile_schedule().await.unwrap();
        assert_eq!(started.reconciled_at, Some(clock.now()));
        let start = clock.now();
        clock.advance(Duration::minutes(5));
        let again = store.start_reconcile_schedule().await.unwrap();
        assert_eq!(again.reconciled_at, Some(start));

        let set = store
            .set_reconcile_every(14_400, &operator())
            .await
            .unwrap();
        assert_eq!(set.every_seconds, Some(14_400));
        assert_eq!(
            set.reconciled_at,
            Some(start),
            "setting it does not reconcile"
        );
        assert_eq!(store.reconcile_schedule().await.unwrap(), set);
        assert_err!(
            store.set_reconcile_every(0, &operator()).await,
            StoreError::Invalid(_)
        );
        assert_eq!(store.reconcile_schedule().await.unwrap(), set);

        // Pushes do not count as a reconciliation; reconciling every node does.
        clock.advance(Duration::hours(1));
        for node in [Some(label("vps1")), None] {
            store
                .reset_pushes(node.as_ref(), PushReason::Push, &operator())
                .await
                .unwrap();
        }
        assert_eq!(
            store.reconcile_schedule().await.unwrap().reconciled_at,
            Some(start)
        );
        store
            .reset_pushes(None, PushReason::Reconcile, &Audit::system("reconcile"))
            .await
            .unwrap();
        let reconciled = store.reconcile_schedule().await.unwrap();
        assert_eq!(reconciled.reconciled_at, Some(clock.now()));
        assert_eq!(reconciled.every_seconds, Some(14_400));

        let changes: Vec<(String, AuditResult)> = audit_log(&store)
            .await
            .into_iter()
            .filter(|a| a.action == "sync.reconcile_interval")
            .map(|a| (a.actor, a.result))
            .collect();
        let operator = operator().actor;
        assert_eq!(
            changes,
            [
                (operator.clone(), AuditResult::Success),
                (operator, AuditResult::Failure),
            ]
        );
    }
);

store_test!(
    pending_pushes_and_sync_counts_come_from_the_database,
    options = on_a_manual_clock(),
    |store| async move {
        let agent = actor("agent");
        for (name, octet) in [("vps1", 1), ("vps2", 2)] {
            vps(&store, name, octet, "eu").await;
        }
        for (name, octet) in [("laptop", 9), ("laptop2", 10)] {
            laptop(&store, name, octet).await;
        }
        let pending_names = |nodes: Vec<NodeSync>| -> Vec<String> {
            nodes.into_iter().map(|s| s.node.to_string()).collect()
        };
        // New nodes have applied nothing: a push is pending for each.
        assert_eq!(
            pending_names(store.list_pending_node_sync().await.unwrap()),
            ["laptop", "laptop2", "vps1", "vps2"]
        );
        // laptop runs its desired revision; laptop2 an older one (not NULL,
        // still out of sync); vps2 fails after its one allowed push.
        let desired = sync_of(&store, "laptop").await.desired_revision;
        ack(&store, "laptop", applied_ack(desired), &agent).await;
        let older = sync_of(&store, "laptop2").await.desired_revision - 1;
        let behind = ack(&store, "laptop2", applied_ack(older), &agent).await;
        assert_eq!(behind.applied_revision, Some(older));
        let vps2 = sync_of(&store, "vps2").await.desired_revision;
        let failed = store.record_push(&label("vps2"), vps2, 1).await.unwrap();
        assert_eq!(failed.status, NodeSyncStatus::Failed);

        let all = store.list_node_sync().await.unwrap();
        let pending = store.list_pending_node_sync().await.unwrap();
        assert_eq!(pending_names(pending.clone()), ["laptop2", "vps1"]);
        let by_definition: Vec<NodeSync> = all
            .iter()
            .filter(|s| !s.in_sync() && s.status != NodeSyncStatus::Failed)
            .cloned()
            .collect();
        assert_eq!(pending, by_definition);

        let counts = store.count_node_sync().await.unwrap();
        let by_status: Vec<(NodeSyncStatus, u64)> = NodeSyncStatus::ALL
            .iter()
            .map(|status| {
                let n = all.iter().filter(|s| s.status == *status).count();
                (*status, n as u64)
            })
            .collect();
        assert_eq!(counts.by_status, by_status);
        let count = |status| {
            counts
                .by_status
                .iter()
                .find(|(s, _)| *s == status)
                .unwrap()
                .1
        };
        assert_eq!(count(NodeSyncStatus::Failed), 1);
        assert_eq!(count(NodeSyncStatus::Active), 2);
        assert_eq!(count(NodeSyncStatus::Offline), 1);
        assert_eq!(
            counts.out_of_sync, 3,
            "all but laptop, the failed one included"
        );
    }
);
