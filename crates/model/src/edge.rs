//! The edge registry (seed service-registry-push-sync.md): domains, edge
//! nodes (VPS and laptops), services and their routing. Requests carry plain
//! strings and `validate` into typed values, so a bad field is a
//! `VALIDATION_ERROR` naming that field.

use crate::cluster::validate_text;
use crate::name::dns_label_problem;
use crate::{Error, NodeKind, NodeSyncStatus, RoutingStrategy, ServiceOrigin, ServiceState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest description of a domain, node or service.
pub const MAX_DESCRIPTION: usize = 256;
/// Most upstreams of one service.
pub const MAX_UPSTREAMS: usize = 16;
/// Most domains or nodes in one routing configuration.
pub const MAX_ROUTING_TARGETS: usize = 64;
/// Longest region, provider or user name.
const MAX_TAG: usize = 63;

/// A DNS label (`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`): the names of
/// services and nodes, and a service's subdomain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
pub struct DnsLabel(String);

impl DnsLabel {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        match dns_label_problem(text, 1) {
            Some(reason) => Err(Error::invalid(field, format!("{text:?} {reason}"))),
            None => Ok(DnsLabel(text.to_owned())),
        }
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DnsLabel {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        DnsLabel::parse("name", &value)
    }
}

impl From<DnsLabel> for String {
    fn from(label: DnsLabel) -> String {
        label.0
    }
}

impl std::fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully qualified domain name without the trailing dot: two or more DNS
/// labels, at most 253 characters, lowercase, a top-level label that is not
/// all digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "curiios.com")]
pub struct DomainName(String);

impl DomainName {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Err(Error::invalid(field, format!("{text:?} {reason}")));
        if text.is_empty() || text.len() > 253 {
            return bad("must be 1 to 253 characters".into());
        }
        let labels: Vec<&str> = text.split('.').collect();
        if labels.len() < 2 {
            return bad("must have at least two labels, like example.com".into());
        }
        for label in &labels {
            if let Some(reason) = dns_label_problem(label, 1) {
                return bad(format!("has a label {label:?} that {reason}"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("must not end in an all-digit label".into());
        }
        Ok(DomainName(text.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        DomainName::parse("name", &value)
    }
}

impl From<DomainName> for String {
    fn from(name: DomainName) -> String {
        name.0
    }
}

impl std::fmt::Display for DomainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a service's traffic goes: `host:port`, the host an IP address
/// (`[v6]:port` for IPv6) or a DNS name (for example a Kubernetes service's
/// cluster-internal name reached over the overlay).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "10.0.0.5:8080")]
pub struct Upstream(String);

impl Upstream {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Err(Error::invalid(field, format!("{text:?} {reason}")));
        let Some((host, port)) = text.rsplit_once(':') else {
            return bad("must be host:port");
        };
        if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() || port.starts_with('0') {
            return bad("must end in a port 1-65535");
        }
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok()
                || DomainName::parse(field, host).is_ok()
                || dns_label_problem(host, 1).is_none()
        };
        if !host_ok {
            return bad("must name an IPv4 address, a [IPv6] address or a DNS name");
        }
        Ok(Upstream(text.to_owned()))
    }

    /// The whole `host:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Upstream {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Upstream::parse("upstreams", &value)
    }
}

impl From<Upstream> for String {
    fn from(upstream: Upstream) -> String {
        upstream.0
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn optional_tag(field: &str, value: Option<&str>) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(text) => {
            if text.is_empty()
                || text.len() > MAX_TAG
                || !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{text:?} must be 1 to {MAX_TAG} characters of letters, digits and . _ -"
                    ),
                ));
            }
            Ok(Some(text.to_owned()))
        }
    }
}

fn address(field: &str, text: &str) -> Result<IpAddr, Error> {
    text.parse()
        .map_err(|_| Error::invalid(field, format!("{text:?} is not an IP address")))
}

/// A registered domain (seed `register-domain NAME "description"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Domain {
    /// Its id.
    pub id: Uuid,
    /// The domain, e.g. `curiios.com`.
    pub name: DomainName,
    /// What it is for.
    pub description: String,
    /// Region tag for `geo` routing (matched against node regions).
    pub region: Option<String>,
    /// Bumped on every change (the `ETag`).
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/domains` and (without `name`) `PUT /api/v1/domains/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainRequest {
    /// The domain name (create only; the path names it on update).
    #[serde(default)]
    pub name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Region tag for `geo` routing.
    #[serde(default)]
    pub region: Option<String>,
}

/// A validated domain request.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainFields {
    /// The description.
    pub description: String,
    /// The region tag.
    pub region: Option<String>,
}

impl DomainRequest {
    /// Validates a creation: the name is required.
    pub fn validate_create(&self) -> Result<(DomainName, DomainFields), Error> {
        let Some(name) = &self.name else {
            return Err(Error::invalid("name", "is required"));
        };
        Ok((DomainName::parse("name", name)?, self.validate_fields()?))
    }

    /// Validates an update of the domain `path_name` (a `name` in the body
    /// must equal it: names are immutable).
    pub fn validate_update(&self, path_name: &DomainName) -> Result<DomainFields, Error> {
        if self
            .name
            .as_deref()
            .is_some_and(|n| n != path_name.as_str())
        {
            return Err(Error::invalid("name", "is immutable"));
        }
        self.validate_fields()
    }

    fn validate_fields(&self) -> Result<DomainFields, Error> {
        validate_text("description", &self.description, MAX_DESCRIPTION)?;
        Ok(DomainFields {
            description: self.description.clone(),
            region: optional_tag("region", self.region.as_deref())?,
        })
    }
}

/// An edge node: a VPS running the reverse proxy or a management laptop
/// getting DNS (seed `register-vps`, `sync-controller.sh register`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Its id.
    pub id: Uuid,
    /// A unique name (the agent's `--node`).
    pub name: DnsLabel,
    /// `vps` or `laptop`.
    pub kind: NodeKind,
    /// Its address on the overlay network (e.g. Tailscale); unique.
    #[schema(value_type = String)]
    pub overlay_address: IpAddr,
    /// A VPS's public address; unique. Absent for laptops.
    #[schema(value_type = Option<String>)]
    pub public_address: Option<IpAddr>,
    /// Region tag (`eu`, `us`) for `geo` routing.
    pub region: Option<String>,
    /// Hosting provider (`contabo`).
    pub provider: Option<String>,
    /// The user the operator logs in as (a VPS's ssh user, a laptop's owner).
    pub user: Option<String>,
    /// Bumped on every change (the `ETag`).
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/nodes`, and `PUT /api/v1/nodes/{name}` (name and kind then
/// must match or be absent).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// A unique DNS label (create only).
    #[serde(default)]
    pub name: Option<String>,
    /// `vps` or `laptop` (create only).
    #[serde(default)]
    #[schema(value_type = Option<NodeKind>)]
    pub kind: Option<String>,
    /// Overlay address (required).
    pub overlay_address: String,
    /// Public address (required for a VPS, refused for a laptop).
    #[serde(default)]
    pub public_address: Option<String>,
    /// Region tag.
    #[serde(default)]
    pub region: Option<String>,
    /// Hosting provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Login or owner.
    #[serde(default)]
    pub user: Option<String>,
}

/// A validated node request (everything but name and kind).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFields {
    /// Overlay address.
    pub overlay_address: IpAddr,
    /// Public address.
    pub public_address: Option<IpAddr>,
    /// Region tag.
    pub region: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// User.
    pub user: Option<String>,
}

impl NodeRequest {
    /// Validates a registration.
    pub fn validate_create(&self) -> Result<(DnsLabel, NodeKind, NodeFields), Error> {
        let Some(name) = &self.name else {
            return Err(Error::invalid("name", "is required"));
        };
        let name = DnsLabel::parse("name", name)?;
        let kind = self.kind(None)?;
        Ok((name, kind, self.validate_fields(kind)?))
    }

    /// Validates an update of `node` (name and kind are immutable).
    pub fn validate_update(&self, node: &Node) -> Result<NodeFields, Error> {
        if self
            .name
            .as_deref()
            .is_some_and(|n| n != node.name.as_str())
        {
            return Err(Error::invalid("name", "is immutable"));
        }
        let kind = self.kind(Some(node.kind))?;
        if kind != node.kind {
            return Err(Error::invalid("kind", "is immutable"));
        }
        self.validate_fields(kind)
    }

    fn kind(&self, current: Option<NodeKind>) -> Result<NodeKind, Error> {
        match (&self.kind, current) {
            (Some(text), _) => NodeKind::parse(text).ok_or_else(|| {
                Error::invalid("kind", format!("must be one of {}", NodeKind::expected()))
            }),
            (None, Some(kind)) => Ok(kind),
            (None, None) => Err(Error::invalid("kind", "is required (vps or laptop)")),
        }
    }

    fn validate_fields(&self, kind: NodeKind) -> Result<NodeFields, Error> {
        let public_address = self
            .public_address
            .as_deref()
            .map(|a| address("public_address", a))
            .transpose()?;
        match (kind, public_address) {
            (NodeKind::Vps, None) => {
                return Err(Error::invalid("public_address", "is required for a vps"))
            }
            (NodeKind::Laptop, Some(_)) => {
                return Err(Error::invalid(
                    "public_address",
                    "a laptop has no public address",
                ))
            }
            _ => {}
        }
        Ok(NodeFields {
            overlay_address: address("overlay_address", &self.overlay_address)?,
            public_address,
            region: optional_tag("region", self.region.as_deref())?,
            provider: optional_tag("provider", self.provider.as_deref())?,
            user: optional_tag("user", self.user.as_deref())?,
        })
    }
}

/// A routed service (seed "Service Registry"): where its traffic goes and
/// under which subdomain it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    /// Its id.
    pub id: Uuid,
    /// A unique DNS label (`immich`).
    pub name: DnsLabel,
    /// The hostname's first label (`photos` → `photos.curiios.com`).
    pub subdomain: DnsLabel,
    /// Where its traffic goes, in order (the first is the primary of a
    /// primary-backup service).
    pub upstreams: Vec<Upstream>,
    /// The cluster it runs in, if known.
    pub cluster_id: Option<Uuid>,
    /// Its Kubernetes namespace, if known.
    pub namespace: Option<String>,
    /// What it is.
    pub description: String,
    /// `active`, or `gone` when it disappeared from its cluster.
    pub state: ServiceState,
    /// `manual` or `cluster` (discovered from an annotated Kubernetes Service).
    pub origin: ServiceOrigin,
    /// Bumped on every change (the `ETag`).
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/services`, and `PUT /api/v1/services/{name}` (the name then
/// must match or be absent).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    /// A unique DNS label (create only).
    #[serde(default)]
    pub name: Option<String>,
    /// The hostname's first label; the service's name when absent.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// `host:port` targets, 1 to 16.
    pub upstreams: Vec<String>,
    /// The cluster it runs in (its id).
    #[serde(default)]
    pub cluster_id: Option<Uuid>,
    /// Its Kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// What it is.
    #[serde(default)]
    pub description: String,
}

/// Names that are routes beside `/api/v1/services/{name}`.
pub const RESERVED_SERVICE_NAMES: &[&str] = &["sync"];

/// A validated service request (everything but the name).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFields {
    /// The subdomain.
    pub subdomain: DnsLabel,
    /// The upstreams.
    pub upstreams: Vec<Upstream>,
    /// The cluster.
    pub cluster_id: Option<Uuid>,
    /// The namespace.
    pub namespace: Option<String>,
    /// The description.
    pub description: String,
}

impl ServiceRequest {
    /// Validates a registration.
    pub fn validate_create(&self) -> Result<(DnsLabel, ServiceFields), Error> {
        let Some(name) = &self.name else {
            return Err(Error::invalid("name", "is required"));
        };
        if RESERVED_SERVICE_NAMES.contains(&name.as_str()) {
            return Err(Error::invalid(
                "name",
                format!("{name:?} is reserved (it is an API route under /api/v1/services)"),
            ));
        }
        let name = DnsLabel::parse("name", name)?;
        let fields = self.validate_fields(&name)?;
        Ok((name, fields))
    }

    /// Validates an update of the service `name`.
    pub fn validate_update(&self, name: &DnsLabel) -> Result<ServiceFields, Error> {
        if self.name.as_deref().is_some_and(|n| n != name.as_str()) {
            return Err(Error::invalid("name", "is immutable"));
        }
        self.validate_fields(name)
    }

    fn validate_fields(&self, name: &DnsLabel) -> Result<ServiceFields, Error> {
        if self.upstreams.is_empty() || self.upstreams.len() > MAX_UPSTREAMS {
            return Err(Error::invalid(
                "upstreams",
                format!("must list 1 to {MAX_UPSTREAMS} host:port targets"),
            ));
        }
        let upstreams = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Upstream::parse(&format!("upstreams[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(dup) = first_duplicate(&upstreams) {
            return Err(Error::invalid(
                "upstreams",
                format!("{dup} is listed twice"),
            ));
        }
        let subdomain = match &self.subdomain {
            Some(text) => DnsLabel::parse("subdomain", text)?,
            None => name.clone(),
        };
        if let Some(ns) = &self.namespace {
            if dns_label_problem(ns, 1).is_some() {
                return Err(Error::invalid("namespace", "must be a DNS label"));
            }
        }
        validate_text("description", &self.description, MAX_DESCRIPTION)?;
        Ok(ServiceFields {
            subdomain,
            upstreams,
            cluster_id: self.cluster_id,
            namespace: self.namespace.clone(),
            description: self.description.clone(),
        })
    }
}

fn first_duplicate<T: PartialEq + std::fmt::Display>(items: &[T]) -> Option<&T> {
    items
        .iter()
        .enumerate()
        .find(|(i, item)| items[..*i].contains(item))
        .map(|(_, item)| item)
}

/// A service's routing (seed `configure-routing SERVICE DOMAINS NODES
/// STRATEGY`): one per service, replaced whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Routing {
    /// The service routed.
    pub service: DnsLabel,
    /// The domains it is published under, in order.
    pub domains: Vec<DomainName>,
    /// The VPS nodes that may carry it, in order (the first is the primary).
    pub nodes: Vec<DnsLabel>,
    /// How hostnames are spread over the nodes.
    pub strategy: RoutingStrategy,
    /// Bumped on every change (the `ETag`).
    pub revision: i64,
    /// When it was first configured.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `PUT /api/v1/routing/{service}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRequest {
    /// Registered domains, 1 to 64, no repeats.
    pub domains: Vec<String>,
    /// Registered VPS nodes by name, 1 to 64, no repeats.
    pub nodes: Vec<String>,
    /// `round-robin`, `primary-backup` or `geo`.
    #[schema(value_type = RoutingStrategy)]
    pub strategy: String,
}

/// A validated routing request (that the domains and nodes exist, and that
/// the nodes are VPSs, is the store's check).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingFields {
    /// The domains.
    pub domains: Vec<DomainName>,
    /// The nodes.
    pub nodes: Vec<DnsLabel>,
    /// The strategy.
    pub strategy: RoutingStrategy,
}

impl RoutingRequest {
    /// Validates names, counts, repeats and the strategy.
    pub fn validate(&self) -> Result<RoutingFields, Error> {
        let count = |field: &str, n: usize| {
            if n == 0 || n > MAX_ROUTING_TARGETS {
                Err(Error::invalid(
                    field,
                    format!("must list 1 to {MAX_ROUTING_TARGETS} names"),
                ))
            } else {
                Ok(())
            }
        };
        count("domains", self.domains.len())?;
        count("nodes", self.nodes.len())?;
        let domains = self
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| DomainName::parse(&format!("domains[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| DnsLabel::parse(&format!("nodes[{i}]"), n))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(dup) = first_duplicate(&domains) {
            return Err(Error::invalid("domains", format!("{dup} is listed twice")));
        }
        if let Some(dup) = first_duplicate(&nodes) {
            return Err(Error::invalid("nodes", format!("{dup} is listed twice")));
        }
        let strategy = RoutingStrategy::parse(&self.strategy).ok_or_else(|| {
            Error::invalid(
                "strategy",
                format!("must be one of {}", RoutingStrategy::expected()),
            )
        })?;
        Ok(RoutingFields {
            domains,
            nodes,
            strategy,
        })
    }
}

/// A node's push-sync state (seed "Node Health Status"), kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeSync {
    /// The node.
    pub node: DnsLabel,
    /// `vps` or `laptop`.
    pub kind: NodeKind,
    /// Its overlay address.
    #[schema(value_type = String)]
    pub overlay_address: IpAddr,
    /// `active`, `failed` or `offline`.
    pub status: NodeSyncStatus,
    /// The change-log revision at which its desired configuration last changed.
    pub desired_revision: i64,
    /// The revision its agent last acknowledged as applied.
    pub applied_revision: Option<i64>,
    /// When its agent last acknowledged an applied revision.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// When its agent last sent a heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Pushes of the desired revision not acknowledged so far.
    pub push_attempts: u32,
    /// The agent's last reported error, if its last apply failed.
    pub last_error: Option<String>,
    /// Whether routing counts the node as up: its agent's heartbeats arrive
    /// (`heartbeat_ok`) and the HTTP check through it passes (`check_ok`).
    pub up: bool,
    /// Whether its agent's heartbeats arrive: false once it was silent for
    /// `edge.offline_after_seconds`, until the next one.
    #[serde(default = "yes")]
    pub heartbeat_ok: bool,
    /// Whether the HTTP check through the node passes (`edge.http_check`:
    /// false after its configured consecutive failures, until the next
    /// success); always true for laptops and with the check off.
    #[serde(default = "yes")]
    pub check_ok: bool,
    /// Why the HTTP check fails, while it does (at most
    /// [`MAX_CHECK_ERROR`] characters, no control characters).
    #[serde(default)]
    pub check_error: Option<String>,
    /// When the HTTP check's outcome last changed (from passing to failing
    /// or back); `None` while it never did.
    #[serde(default)]
    pub check_changed_at: Option<DateTime<Utc>>,
}

/// `true`, for serde defaults.
fn yes() -> bool {
    true
}

impl NodeSync {
    /// Whether the node runs the desired revision.
    pub fn in_sync(&self) -> bool {
        self.applied_revision == Some(self.desired_revision)
    }

    /// Why routing counts the node as down (`no heartbeat`, `check failed:
    /// …`, or both); `None` while it is up.
    pub fn down_reason(&self) -> Option<String> {
        if self.up {
            return None;
        }
        let mut reasons = Vec::new();
        if !self.heartbeat_ok {
            reasons.push("no heartbeat".to_owned());
        }
        if !self.check_ok {
            let why = self.check_error.as_deref().unwrap_or("no reason recorded");
            reasons.push(format!("check failed: {why}"));
        }
        if reasons.is_empty() {
            reasons.push("down".to_owned());
        }
        Some(reasons.join("; "))
    }
}

/// `POST /api/v1/nodes/{name}/ack`: an agent's heartbeat, with the revision it
/// applied (or failed to apply).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeAck {
    /// The revision now applied on the node, if any.
    #[serde(default)]
    pub applied_revision: Option<i64>,
    /// Set when applying `failed_revision` failed: why (at most 512 characters kept).
    #[serde(default)]
    pub error: Option<String>,
    /// The revision that failed to apply.
    #[serde(default)]
    pub failed_revision: Option<i64>,
}

/// A Kubernetes `Service` read from a cluster with the opt-in annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredService {
    /// The service's registry name (the annotation `fleetreg.io/name`, else
    /// the Kubernetes name).
    pub name: DnsLabel,
    /// Its namespace.
    pub namespace: String,
    /// The validated fields (subdomain, upstreams, description).
    pub fields: ServiceFields,
}

/// What one cluster's service sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceSyncReport {
    /// Services registered from the cluster.
    pub registered: Vec<String>,
    /// Services whose fields changed (or that came back from `gone`).
    pub updated: Vec<String>,
    /// Services no longer in the cluster, now `gone`.
    pub gone: Vec<String>,
    /// Services seen and unchanged.
    pub unchanged: usize,
    /// Services skipped because a manual service of that name exists.
    pub skipped: Vec<String>,
}

/// Longest agent error message kept.
pub const MAX_AGENT_ERROR: usize = 512;

/// Longest HTTP check error kept ([`NodeSync::check_error`]).
pub const MAX_CHECK_ERROR: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        assert!(DomainName::parse("name", "curiios.com").is_ok());
        assert!(DomainName::parse("name", "a.b.example.test").is_ok());
        assert!(DomainName::parse("name", "com").is_err());
        assert!(DomainName::parse("name", "Example.com").is_err());
        assert!(DomainName::parse("name", "example..com").is_err());
        assert!(DomainName::parse("name", "example.com.").is_err());
        assert!(DomainName::parse("name", "1.2.3.4").is_err());
        assert!(DomainName::parse("name", &format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn upstreams() {
        for ok in [
            "10.0.0.5:8080",
            "[::1]:80",
            "immich.photos.svc:2283",
            "web:80",
        ] {
            assert!(Upstream::parse("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.5",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            "::1:80",
            "a b:80",
            ":80",
            "x:080",
        ] {
            assert!(Upstream::parse("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_requests_check_kind_and_addresses() {
        let vps = NodeRequest {
            name: Some("contabo-vps".into()),
            kind: Some("vps".into()),
            overlay_address: "100.68.225.92".into(),
            public_address: Some("45.8.133.192".into()),
            region: Some("eu".into()),
            provider: Some("contabo".into()),
            user: Some("root".into()),
        };
        let (name, kind, fields) = vps.validate_create().unwrap();
        assert_eq!((name.as_str(), kind), ("contabo-vps", NodeKind::Vps));
        assert_eq!(fields.overlay_address.to_string(), "100.68.225.92");
        let no_public = NodeRequest {
            public_address: None,
            ..vps.clone()
        };
        assert_eq!(
            no_public.validate_create().unwrap_err().field(),
            "public_address"
        );
        let laptop_with_public = NodeRequest {
            kind: Some("laptop".into()),
            ..vps.clone()
        };
        assert_eq!(
            laptop_with_public.validate_create().unwrap_err().field(),
            "public_address"
        );
        let bad_address = NodeRequest {
            overlay_address: "100.68.225".into(),
            ..vps
        };
        assert_eq!(
            bad_address.validate_create().unwrap_err().field(),
            "overlay_address"
        );
    }

    #[test]
    fn routing_requests() {
        let request = RoutingRequest {
            domains: vec!["curiios.com".into(), "vinaysachdeva.com".into()],
            nodes: vec!["vps1".into(), "vps2".into()],
            strategy: "round-robin".into(),
        };
        assert_eq!(
            request.validate().unwrap().strategy,
            RoutingStrategy::RoundRobin
        );
        let repeated = RoutingRequest {
            nodes: vec!["vps1".into(), "vps1".into()],
            ..request.clone()
        };
        assert_eq!(repeated.validate().unwrap_err().field(), "nodes");
        let unknown = RoutingRequest {
            strategy: "random".into(),
            ..request
        };
        assert_eq!(unknown.validate().unwrap_err().field(), "strategy");
    }

    #[test]
    fn services_default_their_subdomain_to_the_name() {
        let request = ServiceRequest {
            name: Some("immich".into()),
            subdomain: None,
            upstreams: vec!["127.0.0.1:2283".into()],
            cluster_id: None,
            namespace: Some("immich".into()),
            description: String::new(),
        };
        let (name, fields) = request.validate_create().unwrap();
        assert_eq!(fields.subdomain, name);
        let dup = ServiceRequest {
            upstreams: vec!["127.0.0.1:1".into(), "127.0.0.1:1".into()],
            ..request
        };
        assert_eq!(dup.validate_create().unwrap_err().field(), "upstreams");
    }

    #[test]
    fn a_down_node_says_why() {
        // An older server's answer has no check fields: heartbeat and check ok.
        let mut sync: NodeSync = serde_json::from_value(serde_json::json!({
            "node": "vps1", "kind": "vps", "overlay_address": "100.64.0.1",
            "status": "active", "desired_revision": 3, "applied_revision": 3,
            "last_sync_at": null, "last_heartbeat_at": null, "push_attempts": 0,
            "last_error": null, "up": true,
        }))
        .unwrap();
        assert!(sync.heartbeat_ok && sync.check_ok);
        assert_eq!(sync.down_reason(), None);
        sync.up = false;
        sync.check_ok = false;
        sync.check_error = Some("connection refused".into());
        assert_eq!(
            sync.down_reason().as_deref(),
            Some("check failed: connection refused")
        );
        sync.heartbeat_ok = false;
        assert_eq!(
            sync.down_reason().as_deref(),
            Some("no heartbeat; check failed: connection refused")
        );
        sync.check_ok = true;
        assert_eq!(sync.down_reason().as_deref(), Some("no heartbeat"));
    }
}
