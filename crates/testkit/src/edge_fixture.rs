//! An edge registry for routing tests (the CLI's views, the API's
//! renderers): [`seed`] is the seed's registry (two domains with region tags,
//! two VPS nodes and a laptop, and a service routed with each strategy), and
//! [`label`], [`domain`], [`node`], [`view`], [`service`] and [`routing`]
//! build the records of registries of a test's own. Ids are nil, revisions 1.
//!
//! (The model crate's own routing tests keep a copy of [`seed`]: the model is
//! below the test kit and cannot use it.)

use fleetreg_model::{
    DnsLabel, Domain, DomainName, EdgeSnapshot, Node, NodeKind, NodeView, Routing, RoutingStrategy,
    Service, ServiceOrigin, ServiceState, Upstream,
};
use uuid::Uuid;

/// `s` as a DNS label (panics when it is not one).
pub fn label(s: &str) -> DnsLabel {
    DnsLabel::parse("name", s).unwrap()
}

/// A registered domain.
pub fn domain(name: &str, description: &str, region: Option<&str>) -> Domain {
    Domain {
        id: Uuid::nil(),
        name: DomainName::parse("name", name).unwrap(),
        description: description.into(),
        region: region.map(str::to_owned),
        revision: 1,
        created_at: fleetreg_model::now(),
        updated_at: fleetreg_model::now(),
    }
}

/// A registered node (a VPS's ssh user `root`, none for a laptop).
pub fn node(
    name: &str,
    kind: NodeKind,
    overlay: &str,
    public: Option<&str>,
    region: Option<&str>,
) -> Node {
    Node {
        id: Uuid::nil(),
        name: label(name),
        kind,
        overlay_address: overlay.parse().unwrap(),
        public_address: public.map(|p| p.parse().unwrap()),
        region: region.map(str::to_owned),
        provider: None,
        user: (kind == NodeKind::Vps).then(|| "root".into()),
        revision: 1,
        created_at: fleetreg_model::now(),
        updated_at: fleetreg_model::now(),
    }
}

/// What routing sees of `node`: up or down.
pub fn view(node: &Node, up: bool) -> NodeView {
    NodeView {
        name: node.name.clone(),
        kind: node.kind,
        overlay_address: node.overlay_address,
        region: node.region.clone(),
        up,
    }
}

/// An active, manually registered service.
pub fn service(name: &str, subdomain: &str, upstreams: &[impl AsRef<str>]) -> Service {
    Service {
        id: Uuid::nil(),
        name: label(name),
        subdomain: label(subdomain),
        upstreams: upstreams
            .iter()
            .map(|u| Upstream::parse("upstreams", u.as_ref()).unwrap())
            .collect(),
        cluster_id: None,
        namespace: None,
        description: String::new(),
        state: ServiceState::Active,
        origin: ServiceOrigin::Manual,
        revision: 1,
        created_at: fleetreg_model::now(),
        updated_at: fleetreg_model::now(),
    }
}

/// `service` routed on `domains` to `nodes` (in order) with `strategy`.
pub fn routing(
    service: &str,
    domains: &[&str],
    nodes: &[&str],
    strategy: RoutingStrategy,
) -> Routing {
    Routing {
        service: label(service),
        domains: domains
            .iter()
            .map(|d| DomainName::parse("domains", d).unwrap())
            .collect(),
        nodes: nodes.iter().map(|n| label(n)).collect(),
        strategy,
        revision: 1,
        created_at: fleetreg_model::now(),
        updated_at: fleetreg_model::now(),
    }
}

/// A whole registry, as the store would list it.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The domains.
    pub domains: Vec<Domain>,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The services.
    pub services: Vec<Service>,
    /// The routings.
    pub routings: Vec<Routing>,
}

impl Seed {
    /// The registry as routing sees it, the nodes named in `down` down.
    pub fn snapshot(&self, down: &[&str]) -> EdgeSnapshot {
        EdgeSnapshot {
            domains: self.domains.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| view(n, !down.contains(&n.name.as_str())))
                .collect(),
            services: self.services.clone(),
            routings: self.routings.clone(),
        }
    }
}

/// The seed's registry: `curiios.com` (region `eu`) and `vinaysachdeva.com`
/// (`us`); `vps1` (`eu`, overlay 100.64.0.1, public 192.0.2.1) and `vps2`
/// (`us`, 100.64.0.2, public 203.0.113.2: a longer one), and `laptop` (`eu`, 100.64.0.9); immich (`photos`, round-robin),
/// open-webui (`chat`, primary-backup) and grafana (`grafana`, geo), each on
/// both domains and both VPS nodes (vps1 first).
pub fn seed() -> Seed {
    let domains = ["curiios.com", "vinaysachdeva.com"];
    let vps = ["vps1", "vps2"];
    Seed {
        domains: vec![
            domain(domains[0], "Personal site", Some("eu")),
            domain(domains[1], "Professional site", Some("us")),
        ],
        nodes: vec![
            node(
                "vps1",
                NodeKind::Vps,
                "100.64.0.1",
                Some("192.0.2.1"),
                Some("eu"),
            ),
            node(
                "vps2",
                NodeKind::Vps,
                "100.64.0.2",
                Some("203.0.113.2"),
                Some("us"),
            ),
            node("laptop", NodeKind::Laptop, "100.64.0.9", None, Some("eu")),
        ],
        services: vec![
            service("immich", "photos", &["127.0.0.1:2283", "127.0.0.1:2284"]),
            service("open-webui", "chat", &["127.0.0.1:3000"]),
            service("grafana", "grafana", &["127.0.0.1:3001"]),
        ],
        routings: vec![
            routing("immich", &domains, &vps, RoutingStrategy::RoundRobin),
            routing("open-webui", &domains, &vps, RoutingStrategy::PrimaryBackup),
            routing("grafana", &domains, &vps, RoutingStrategy::Geo),
        ],
    }
}
