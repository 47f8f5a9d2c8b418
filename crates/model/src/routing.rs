//! Routing as a pure function: from the edge registry and which nodes are up
//! to every hostname's serving node, and from that to each node's desired
//! configuration (a VPS's proxy routes, a laptop's DNS records). The sync
//! controller pushes a node's [`NodeConfig`] when it changes; the renderers
//! (`render`) turn it into Traefik, Caddy, hosts-file and zone-file text.

use crate::{
    DnsLabel, Domain, DomainName, NodeKind, Routing, RoutingStrategy, Service, ServiceState,
    Upstream,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use utoipa::ToSchema;

/// What routing knows of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Its name.
    pub name: DnsLabel,
    /// `vps` or `laptop`.
    pub kind: NodeKind,
    /// Its overlay address (what laptops resolve a hostname to).
    pub overlay_address: IpAddr,
    /// Its region tag.
    pub region: Option<String>,
    /// Whether it counts as up (its agent's heartbeats arrive).
    pub up: bool,
}

/// Everything routing reads: the registry and node liveness.
#[derive(Debug, Clone, Default)]
pub struct EdgeSnapshot {
    /// Registered domains.
    pub domains: Vec<Domain>,
    /// Registered nodes.
    pub nodes: Vec<NodeView>,
    /// Registered services.
    pub services: Vec<Service>,
    /// Routing configurations.
    pub routings: Vec<Routing>,
}

/// How a proxy spreads one hostname's requests over the service's upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Every upstream in turn.
    RoundRobin,
    /// The first upstream that is up; the next ones only while it is down.
    Failover,
}

/// One published hostname and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostRoute {
    /// `subdomain.domain`.
    pub hostname: String,
    /// The service.
    pub service: DnsLabel,
    /// The domain.
    pub domain: DomainName,
    /// The service's strategy.
    pub strategy: RoutingStrategy,
    /// The node DNS sends this hostname to.
    pub serving: DnsLabel,
    /// That node's overlay address.
    #[schema(value_type = String)]
    pub serving_address: IpAddr,
    /// Every node whose proxy carries the route: every listed node, whatever
    /// the strategy. With primary-backup and geo the others stand by, so a
    /// failover only moves DNS, and the HTTP check can tell a node whose own
    /// path to the service is broken from a service down everywhere.
    pub carriers: Vec<DnsLabel>,
    /// The service's upstreams.
    pub upstreams: Vec<Upstream>,
    /// How the proxy spreads requests over them.
    pub balance: Balance,
}

/// A proxy route on a VPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyRoute {
    /// The hostname matched (`Host(...)`).
    pub hostname: String,
    /// The service (names the proxy's service object).
    pub service: DnsLabel,
    /// Where requests go.
    pub upstreams: Vec<Upstream>,
    /// How they are spread.
    pub balance: Balance,
}

/// A DNS record for a laptop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsRecord {
    /// The hostname.
    pub hostname: String,
    /// The zone it belongs to.
    pub domain: DomainName,
    /// The serving node's overlay address.
    #[schema(value_type = String)]
    pub address: IpAddr,
}

/// One node's desired configuration: what its agent applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfig {
    /// The node.
    pub node: DnsLabel,
    /// `vps` or `laptop`.
    pub kind: NodeKind,
    /// A VPS's proxy routes, by hostname (empty for a laptop).
    pub routes: Vec<ProxyRoute>,
    /// A laptop's DNS records, by hostname (empty for a VPS).
    pub records: Vec<DnsRecord>,
}

/// Every published hostname of the registry, by hostname.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutingPlan {
    /// The routes (one per hostname; a hostname two services claim goes to
    /// the service whose name sorts first).
    pub routes: Vec<HostRoute>,
}

impl RoutingPlan {
    /// Plans every routing of `snapshot`. Routings of services that are gone,
    /// and domains or nodes that no longer exist, are skipped.
    pub fn compute(snapshot: &EdgeSnapshot) -> RoutingPlan {
        let domains: BTreeMap<&DomainName, &Domain> =
            snapshot.domains.iter().map(|d| (&d.name, d)).collect();
        let nodes: BTreeMap<&DnsLabel, &NodeView> = snapshot
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Vps)
            .map(|n| (&n.name, n))
            .collect();
        let services: BTreeMap<&DnsLabel, &Service> =
            snapshot.services.iter().map(|s| (&s.name, s)).collect();
        let mut routings: Vec<&Routing> = snapshot.routings.iter().collect();
        routings.sort_by(|a, b| a.service.cmp(&b.service));
        let mut by_hostname: BTreeMap<String, HostRoute> = BTreeMap::new();
        for routing in routings {
            let Some(service) = services.get(&routing.service) else {
                continue;
            };
            if service.state != ServiceState::Active {
                continue;
            }
            let listed: Vec<&NodeView> = routing
                .nodes
                .iter()
                .filter_map(|n| nodes.get(n).copied())
                .collect();
            if listed.is_empty() {
                continue;
            }
            let routed: Vec<&Domain> = routing
                .domains
                .iter()
                .filter_map(|d| domains.get(d).copied())
                .collect();
            for (index, domain) in routed.iter().enumerate() {
                let serving = serving_node(routing.strategy, index, domain, &listed);
                let carriers = listed.iter().map(|n| n.name.clone()).collect();
                let hostname = format!("{}.{}", service.subdomain, domain.name);
                by_hostname
                    .entry(hostname.clone())
                    .or_insert_with(|| HostRoute {
                        hostname,
                        service: service.name.clone(),
                        domain: domain.name.clone(),
                        strategy: routing.strategy,
                        serving: serving.name.clone(),
                        serving_address: serving.overlay_address,
                        carriers,
                        upstreams: service.upstreams.clone(),
                        balance: match routing.strategy {
                            RoutingStrategy::PrimaryBackup => Balance::Failover,
                            _ => Balance::RoundRobin,
                        },
                    });
            }
        }
        RoutingPlan {
            routes: by_hostname.into_values().collect(),
        }
    }

    /// The desired configuration of `node` under this plan.
    pub fn node_config(&self, node: &NodeView) -> NodeConfig {
        let (routes, records) = match node.kind {
            NodeKind::Vps => (
                self.routes
                    .iter()
                    .filter(|r| r.carriers.contains(&node.name))
                    .map(|r| ProxyRoute {
                        hostname: r.hostname.clone(),
                        service: r.service.clone(),
                        upstreams: r.upstreams.clone(),
                        balance: r.balance,
                    })
                    .collect(),
                Vec::new(),
            ),
            NodeKind::Laptop => (
                Vec::new(),
                self.routes
                    .iter()
                    .map(|r| DnsRecord {
                        hostname: r.hostname.clone(),
                        domain: r.domain.clone(),
                        address: r.serving_address,
                    })
                    .collect(),
            ),
        };
        NodeConfig {
            node: node.name.clone(),
            kind: node.kind,
            routes,
            records,
        }
    }

    /// Hostnames whose serving node differs between `self` (before) and
    /// `after`: `(hostname, service, from, to)`.
    pub fn moves<'a>(
        &'a self,
        after: &'a RoutingPlan,
    ) -> Vec<(&'a str, &'a DnsLabel, &'a DnsLabel, &'a DnsLabel)> {
        let before: BTreeMap<&str, &HostRoute> = self
            .routes
            .iter()
            .map(|r| (r.hostname.as_str(), r))
            .collect();
        after
            .routes
            .iter()
            .filter_map(|r| {
                let old = before.get(r.hostname.as_str())?;
                (old.service == r.service && old.serving != r.serving).then_some((
                    r.hostname.as_str(),
                    &r.service,
                    &old.serving,
                    &r.serving,
                ))
            })
            .collect()
    }
}

/// The node serving the `index`-th domain of a routing, `listed` non-empty.
fn serving_node<'a>(
    strategy: RoutingStrategy,
    index: usize,
    domain: &Domain,
    listed: &[&'a NodeView],
) -> &'a NodeView {
    let first_up_from = |start: usize, among: &[&'a NodeView]| -> Option<&'a NodeView> {
        (0..among.len())
            .map(|k| among[(start + k) % among.len()])
            .find(|n| n.up)
    };
    let primary_backup = || first_up_from(0, listed).unwrap_or(listed[0]);
    match strategy {
        RoutingStrategy::RoundRobin => {
            let own = index % listed.len();
            first_up_from(own, listed).unwrap_or(listed[own])
        }
        RoutingStrategy::PrimaryBackup => primary_backup(),
        RoutingStrategy::Geo => {
            let regional: Vec<&'a NodeView> = listed
                .iter()
                .copied()
                .filter(|n| n.region.is_some() && n.region == domain.region)
                .collect();
            first_up_from(0, &regional).unwrap_or_else(primary_backup)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceOrigin;
    use chrono::Utc;
    use uuid::Uuid;

    fn label(s: &str) -> DnsLabel {
        DnsLabel::parse("name", s).unwrap()
    }

    fn domain(name: &str, region: Option<&str>) -> Domain {
        Domain {
            id: Uuid::nil(),
            name: DomainName::parse("name", name).unwrap(),
            description: String::new(),
            region: region.map(str::to_owned),
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn node(name: &str, kind: NodeKind, last_octet: u8, region: &str, up: bool) -> NodeView {
        NodeView {
            name: label(name),
            kind,
            overlay_address: IpAddr::from([100, 64, 0, last_octet]),
            region: Some(region.to_owned()),
            up,
        }
    }

    fn service(name: &str, subdomain: &str, upstreams: &[&str]) -> Service {
        Service {
            id: Uuid::nil(),
            name: label(name),
            subdomain: label(subdomain),
            upstreams: upstreams
                .iter()
                .map(|u| Upstream::parse("u", u).unwrap())
                .collect(),
            cluster_id: None,
            namespace: None,
            description: String::new(),
            state: ServiceState::Active,
            origin: ServiceOrigin::Manual,
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn routing(service: &str, strategy: RoutingStrategy) -> Routing {
        Routing {
            service: label(service),
            domains: vec![
                DomainName::parse("d", "curiios.com").unwrap(),
                DomainName::parse("d", "vinaysachdeva.com").unwrap(),
            ],
            nodes: vec![label("vps1"), label("vps2")],
            strategy,
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn seed_snapshot(vps1_up: bool) -> EdgeSnapshot {
        EdgeSnapshot {
            domains: vec![
                domain("curiios.com", Some("eu")),
                domain("vinaysachdeva.com", Some("us")),
            ],
            nodes: vec![
                node("vps1", NodeKind::Vps, 1, "eu", vps1_up),
                node("vps2", NodeKind::Vps, 2, "us", true),
                node("laptop", NodeKind::Laptop, 9, "eu", true),
            ],
            services: vec![
                service("immich", "photos", &["127.0.0.1:2283", "127.0.0.1:2284"]),
                service("open-webui", "chat", &["127.0.0.1:3000"]),
                service("grafana", "grafana", &["127.0.0.1:3001"]),
            ],
            routings: vec![
                routing("immich", RoutingStrategy::RoundRobin),
                routing("open-webui", RoutingStrategy::PrimaryBackup),
                routing("grafana", RoutingStrategy::Geo),
            ],
        }
    }

    fn serving(plan: &RoutingPlan, hostname: &str) -> String {
        plan.routes
            .iter()
            .find(|r| r.hostname == hostname)
            .unwrap()
            .serving
            .to_string()
    }

    #[test]
    fn the_seeds_example() {
        let plan = RoutingPlan::compute(&seed_snapshot(true));
        assert_eq!(serving(&plan, "photos.curiios.com"), "vps1");
        assert_eq!(serving(&plan, "photos.vinaysachdeva.com"), "vps2");
        assert_eq!(serving(&plan, "chat.curiios.com"), "vps1");
        assert_eq!(serving(&plan, "chat.vinaysachdeva.com"), "vps1");
        assert_eq!(serving(&plan, "grafana.curiios.com"), "vps1");
        assert_eq!(serving(&plan, "grafana.vinaysachdeva.com"), "vps2");
        let vps2 = plan.node_config(&seed_snapshot(true).nodes[1]);
        let hosts: Vec<&str> = vps2.routes.iter().map(|r| r.hostname.as_str()).collect();
        // vps2 serves grafana.vinaysachdeva.com and photos.vinaysachdeva.com
        // and stands by for the others: every listed node carries every route.
        assert_eq!(
            hosts,
            [
                "chat.curiios.com",
                "chat.vinaysachdeva.com",
                "grafana.curiios.com",
                "grafana.vinaysachdeva.com",
                "photos.curiios.com",
                "photos.vinaysachdeva.com"
            ]
        );
        let laptop = plan.node_config(&seed_snapshot(true).nodes[2]);
        assert_eq!(laptop.records.len(), 6);
        assert!(laptop.routes.is_empty());
    }

    #[test]
    fn a_down_primary_fails_over_and_returns() {
        let healthy = RoutingPlan::compute(&seed_snapshot(true));
        let degraded = RoutingPlan::compute(&seed_snapshot(false));
        for hostname in [
            "chat.curiios.com",
            "photos.curiios.com",
            "grafana.curiios.com",
        ] {
            assert_eq!(serving(&degraded, hostname), "vps2", "{hostname}");
        }
        let moves = healthy.moves(&degraded);
        assert_eq!(moves.len(), 4, "{moves:?}");
        let back = degraded.moves(&healthy);
        assert_eq!(back.len(), 4);
        let vps2 = degraded.node_config(&seed_snapshot(false).nodes[1]);
        assert!(vps2
            .routes
            .iter()
            .any(|r| r.hostname == "chat.curiios.com" && r.balance == Balance::Failover));
        // The proxies stood by: a failover and its return move DNS only.
        for node in &seed_snapshot(true).nodes {
            let (before, after) = (healthy.node_config(node), degraded.node_config(node));
            assert_eq!(before == after, node.kind == NodeKind::Vps, "{}", node.name);
        }
    }

    #[test]
    fn gone_services_and_missing_nodes_are_not_routed() {
        let mut snapshot = seed_snapshot(true);
        snapshot.services[0].state = ServiceState::Gone;
        snapshot.routings[1].nodes = vec![label("nowhere")];
        let plan = RoutingPlan::compute(&snapshot);
        assert!(plan.routes.iter().all(|r| r.service.as_str() == "grafana"));
    }

    #[test]
    fn a_claimed_hostname_goes_to_the_first_service() {
        let mut snapshot = seed_snapshot(true);
        snapshot.services[2].subdomain = label("photos");
        let plan = RoutingPlan::compute(&snapshot);
        let photos: Vec<&HostRoute> = plan
            .routes
            .iter()
            .filter(|r| r.hostname == "photos.curiios.com")
            .collect();
        assert_eq!(photos.len(), 1);
        assert_eq!(photos[0].service.as_str(), "grafana");
    }

    #[test]
    fn all_nodes_down_keeps_the_listed_order() {
        let mut snapshot = seed_snapshot(true);
        for n in &mut snapshot.nodes {
            n.up = false;
        }
        let plan = RoutingPlan::compute(&snapshot);
        assert_eq!(serving(&plan, "photos.vinaysachdeva.com"), "vps2");
        assert_eq!(serving(&plan, "chat.vinaysachdeva.com"), "vps1");
    }
}
