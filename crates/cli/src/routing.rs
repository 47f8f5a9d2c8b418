//! `fleetreg routing …`: which domains a service is published under and which
//! VPS nodes carry it (seed service-registry-push-sync.md, `configure-routing
//! SERVICE DOMAINS NODES STRATEGY`), the seed's "Multi-Domain, Multi-VPS
//! Configuration" view with where each hostname is served now, and a node's
//! rendered configuration (Traefik or Caddy routes, hosts or zone records); a
//! thin client of `/api/v1/routing`, `/api/v1/routes` and
//! `/api/v1/nodes/{name}/config`.

use crate::client::{path_segment, Client, ConnectArgs};
use crate::cluster_sync::Common;
use crate::edge_common::{
    joined, print_deleted, split_list, typed, typed_items, ViewArgs, ViewFormat,
};
use crate::node::{list_nodes, node_path, resolve, resolve_in};
use crate::output::{print_whole, write_stdout, Format};
use clap::{Args, Subcommand, ValueEnum};
use fleetreg_model::{Domain, HostRoute, Node, NodeKind, Routing, RoutingStrategy};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::IpAddr;

const ALL_EXAMPLES: &str = "Examples:
  fleetreg routing configure immich \"curiios.com,vinaysachdeva.com\" \"100.68.225.92,100.70.123.45\" round-robin
  fleetreg routing configure open-webui \"curiios.com,vinaysachdeva.com\" \"contabo-vps,digitalocean-vps\" primary-backup
  fleetreg routing show
  fleetreg routing show -o json
  fleetreg routing export-vps contabo-vps --format traefik
  fleetreg routing export-dns vinay-laptop --format hosts
  fleetreg routing delete open-webui

Strategies:
  round-robin     domain i is served through node i mod n; every node carries
                  every hostname, so the load spreads
  primary-backup  the first healthy node serves every hostname; the next healthy
                  one takes over while it is down
  geo             each domain through the first healthy node of the domain's
                  region; primary-backup where none matches

A routing change is pushed to every node it affects (`fleetreg sync health`).";

const CONFIGURE_EXAMPLES: &str = "Examples:
  fleetreg routing configure immich \"curiios.com,vinaysachdeva.com\" \"100.68.225.92,100.70.123.45\" round-robin
  fleetreg routing configure open-webui \"curiios.com,vinaysachdeva.com\" \"contabo-vps,digitalocean-vps\" primary-backup
  fleetreg routing configure immich \"curiios.com,vinaysachdeva.com\" \"100.68.225.92,100.70.123.45,100.72.200.50\" round-robin

Replaces the service's routing whole. Domains must be registered (`fleetreg
domain register`); nodes are registered VPS nodes, named or given by overlay
address, in order (the first is the primary).";

const SHOW_EXAMPLES: &str = "Examples:
  fleetreg routing show
  fleetreg routing show -o json     # {domains, nodes (VPS), routing, routes}

The seed's view: registered domains, VPS nodes (overlay → public (region) and
name), and per routed service its domains, nodes, strategy, and the node each
of its hostnames is served through now (after failovers).";

const EXPORT_VPS_EXAMPLES: &str = "Examples:
  fleetreg routing export-vps contabo-vps --format traefik > /etc/traefik/dynamic/fleetreg.yml
  fleetreg routing export-vps 100.68.225.92 --format caddy

Prints the VPS's proxy routes as its agent applies them (Traefik dynamic
configuration as YAML, or Caddy's JSON configuration).";

const EXPORT_DNS_EXAMPLES: &str = "Examples:
  fleetreg routing export-dns vinay-laptop --format hosts
  fleetreg routing export-dns 100.86.112.112 --format zone

Prints the laptop's DNS records as its agent applies them: a hosts-file block,
or one zone file per domain.";

/// The routing commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum RoutingCommand {
    /// Route a service: its domains, its VPS nodes, the strategy.
    #[command(after_help = CONFIGURE_EXAMPLES)]
    Configure(ConfigureArgs),
    /// The seed's multi-domain, multi-VPS configuration view.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ViewArgs),
    /// Delete a service's routing (its hostnames stop being published).
    Delete(DeleteArgs),
    /// Print a VPS's proxy configuration (Traefik or Caddy).
    #[command(after_help = EXPORT_VPS_EXAMPLES)]
    ExportVps(ExportVpsArgs),
    /// Print a laptop's DNS records (hosts file or zone files).
    #[command(after_help = EXPORT_DNS_EXAMPLES)]
    ExportDns(ExportDnsArgs),
}

/// A routing strategy, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum StrategyArg {
    /// Spread the domains over the nodes; every node carries every hostname.
    RoundRobin,
    /// The first healthy node serves; the next ones are backups.
    PrimaryBackup,
    /// Each domain through a node of its region.
    Geo,
}

impl StrategyArg {
    /// The model's strategy.
    fn strategy(self) -> RoutingStrategy {
        match self {
            StrategyArg::RoundRobin => RoutingStrategy::RoundRobin,
            StrategyArg::PrimaryBackup => RoutingStrategy::PrimaryBackup,
            StrategyArg::Geo => RoutingStrategy::Geo,
        }
    }
}

/// `routing configure`.
#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// The service, e.g. immich.
    service: String,
    /// Its domains, comma-separated: "curiios.com,vinaysachdeva.com".
    domains: String,
    /// Its VPS nodes by name or overlay address, comma-separated, primary first.
    nodes: String,
    /// How hostnames are spread over the nodes.
    #[arg(value_enum)]
    strategy: StrategyArg,
    #[command(flatten)]
    common: Common,
}

/// `routing delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The service whose routing goes.
    service: String,
    #[command(flatten)]
    common: Common,
}

/// A proxy configuration format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ProxyFormat {
    /// Traefik's dynamic configuration (YAML).
    Traefik,
    /// Caddy's JSON configuration.
    Caddy,
}

/// A DNS records format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum DnsFormat {
    /// A hosts-file block.
    Hosts,
    /// Zone files, one per domain.
    Zone,
}

/// `routing export-vps`.
#[derive(Args, Debug)]
pub struct ExportVpsArgs {
    /// The VPS, by name or overlay address.
    node: String,
    /// What to render.
    #[arg(long, value_enum, default_value_t = ProxyFormat::Traefik)]
    format: ProxyFormat,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `routing export-dns`.
#[derive(Args, Debug)]
pub struct ExportDnsArgs {
    /// The laptop, by name or overlay address.
    node: String,
    /// What to render.
    #[arg(long, value_enum, default_value_t = DnsFormat::Hosts)]
    format: DnsFormat,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// The node names of a configure's node list: names as given, overlay
/// addresses looked up in `nodes`.
fn node_names(entries: &[String], nodes: &[Node]) -> anyhow::Result<Vec<String>> {
    entries.iter().map(|e| resolve_in(nodes, e)).collect()
}

/// The horizontal rule above and below the view's title.
const RULE: &str = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━";

/// What the configuration view shows.
pub struct ConfigView<'a> {
    /// Registered domains.
    pub domains: &'a [Domain],
    /// Registered nodes (only the VPS nodes are listed).
    pub nodes: &'a [Node],
    /// Every routing.
    pub routings: &'a [Routing],
    /// The computed hostname table.
    pub routes: &'a [HostRoute],
}

impl ConfigView<'_> {
    /// The seed's "Multi-Domain, Multi-VPS Configuration" text.
    pub fn text(&self) -> String {
        let mut out = format!("{RULE}\n  Multi-Domain, Multi-VPS Configuration\n{RULE}\n\n");
        out.push_str("Registered Domains:\n");
        if self.domains.is_empty() {
            out.push_str("  (none)\n");
        }
        for domain in self.domains {
            let mut line = format!("  • {}", domain.name);
            if !domain.description.is_empty() {
                line.push_str(&format!(": {}", domain.description));
            }
            if let Some(region) = &domain.region {
                line.push_str(&format!("  [region {region}]"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("\nRegistered VPS Nodes:\n");
        let vps: Vec<(String, &Node)> = self
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Vps)
            .map(|n| {
                let mut head = n.overlay_address.to_string();
                if let Some(public) = n.public_address {
                    head.push_str(&format!(" → {public}"));
                }
                if let Some(region) = &n.region {
                    head.push_str(&format!(" ({region})"));
                }
                (head, n)
            })
            .collect();
        if vps.is_empty() {
            out.push_str("  (none)\n");
        }
        let width = vps
            .iter()
            .map(|(h, _)| h.chars().count())
            .max()
            .unwrap_or(0);
        for (head, node) in &vps {
            let pad = width - head.chars().count();
            out.push_str(&format!("  • {head}{}  {}\n", " ".repeat(pad), node.name));
        }
        out.push_str("\nService Routing:\n");
        if self.routings.is_empty() {
            out.push_str("  (none)\n");
        }
        for routing in self.routings {
            out.push_str(&self.service_block(routing));
        }
        out
    }

    /// One service's entry: domains, nodes (by overlay address), strategy,
    /// and where each of its hostnames is served now.
    pub fn service_block(&self, routing: &Routing) -> String {
        let address = |name: &fleetreg_model::DnsLabel| -> String {
            self.nodes
                .iter()
                .find(|n| &n.name == name)
                .map_or_else(|| name.to_string(), |n| n.overlay_address.to_string())
        };
        let addresses: Vec<String> = routing.nodes.iter().map(address).collect();
        let mut out = format!(
            "  • {}:\n    Domains: {}\n    VPS: {}\n    Strategy: {}\n",
            routing.service,
            joined(&routing.domains),
            joined(&addresses),
            routing.strategy
        );
        let served: Vec<&HostRoute> = self
            .routes
            .iter()
            .filter(|r| r.service == routing.service)
            .collect();
        if served.is_empty() {
            out.push_str("    Serving now: none (no registered domain, VPS or active service)\n");
            return out;
        }
        out.push_str("    Serving now:\n");
        let width = served.iter().map(|r| r.hostname.len()).max().unwrap_or(0);
        for route in served {
            let mut how = route.serving_address.to_string();
            match routing.strategy {
                RoutingStrategy::PrimaryBackup => {
                    let role = if routing.nodes.first() == Some(&route.serving) {
                        "primary"
                    } else {
                        "backup"
                    };
                    how.push_str(&format!(", {role}"));
                }
                RoutingStrategy::Geo => {
                    if let Some(region) = self
                        .nodes
                        .iter()
                        .find(|n| n.name == route.serving)
                        .and_then(|n| n.region.as_deref())
                    {
                        how.push_str(&format!(", {region}"));
                    }
                }
                RoutingStrategy::RoundRobin => {}
            }
            out.push_str(&format!(
                "      {:<width$} → {} ({how})\n",
                route.hostname, route.serving
            ));
        }
        out
    }
}

/// The view's data: the four answers it is drawn from.
struct Fetched {
    domains: Value,
    nodes: Value,
    routing: Value,
    routes: Value,
}

async fn fetch_all(client: &Client) -> anyhow::Result<Fetched> {
    let get = |path: &str| client.send::<Value>(client.request(Method::GET, path));
    let (domains, nodes, routing, routes) = futures::try_join!(
        get("/api/v1/domains"),
        get("/api/v1/nodes?kind=vps"),
        get("/api/v1/routing"),
        get("/api/v1/routes"),
    )?;
    Ok(Fetched {
        domains,
        nodes,
        routing,
        routes,
    })
}

fn route_items(answer: &Value) -> anyhow::Result<Vec<HostRoute>> {
    answer["routes"]
        .as_array()
        .map_or(Ok(Vec::new()), |routes| {
            routes.iter().map(|r| typed(r, "route")).collect()
        })
}

async fn show(args: ViewArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let fetched = fetch_all(&client).await?;
    match args.format {
        ViewFormat::Table => {
            let domains: Vec<Domain> = typed_items(&fetched.domains, "domain")?;
            let nodes: Vec<Node> = typed_items(&fetched.nodes, "node")?;
            let routings: Vec<Routing> = typed_items(&fetched.routing, "routing")?;
            let routes = route_items(&fetched.routes)?;
            let view = ConfigView {
                domains: &domains,
                nodes: &nodes,
                routings: &routings,
                routes: &routes,
            };
            write_stdout(&view.text())
        }
        format => {
            let whole = json!({
                "domains": fetched.domains["items"],
                "nodes": fetched.nodes["items"],
                "routing": fetched.routing["items"],
                "routes": fetched.routes["routes"],
            });
            print_whole(format.format(), &whole)
        }
    }
}

async fn configure(args: ConfigureArgs) -> anyhow::Result<()> {
    if args.common.format == Format::Csv {
        anyhow::bail!("-o csv does not apply to a routing; use table, json or yaml");
    }
    let client = Client::from_args(&args.common.connect)?;
    let entries = split_list(&args.nodes);
    let by_address = entries.iter().any(|e| e.parse::<IpAddr>().is_ok());
    let nodes = if by_address || args.common.format == Format::Table {
        list_nodes(&client).await?
    } else {
        Vec::new()
    };
    let body = json!({
        "domains": split_list(&args.domains),
        "nodes": node_names(&entries, &nodes)?,
        "strategy": args.strategy.strategy(),
    });
    let path = format!("/api/v1/routing/{}", path_segment(&args.service));
    let answer: Value = client
        .send(client.request(Method::PUT, &path).json(&body))
        .await?;
    match args.common.format {
        Format::Table => {
            let routing: Routing = typed(&answer, "routing")?;
            let routes: Value = client
                .send(client.request(Method::GET, "/api/v1/routes"))
                .await?;
            let routes = route_items(&routes)?;
            let view = ConfigView {
                domains: &[],
                nodes: &nodes,
                routings: std::slice::from_ref(&routing),
                routes: &routes,
            };
            write_stdout(&view.service_block(&routing))
        }
        format => print_whole(format, &answer),
    }
}

/// Prints the rendered configuration of `node` (name or overlay address),
/// which must be of `kind`; `other` names the command for the other kind.
async fn export(
    connect: &ConnectArgs,
    node: &str,
    kind: NodeKind,
    format: &str,
    other: &str,
) -> anyhow::Result<()> {
    let client = Client::from_args(connect)?;
    let name = resolve(&client, node).await?;
    let found: Node = typed(
        &client
            .send::<Value>(client.request(Method::GET, &node_path(&name)))
            .await?,
        "node",
    )?;
    if found.kind != kind {
        anyhow::bail!(
            "{name} is a {}; `fleetreg routing {other} {name}` prints its configuration",
            found.kind
        );
    }
    let path = format!("{}/config", node_path(&name));
    let response = client
        .send_raw(
            client
                .request(Method::GET, &path)
                .query(&[("format", format)]),
        )
        .await?;
    let mut text = response.text().await?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    write_stdout(&text)
}

/// Runs a routing command.
pub async fn run(command: RoutingCommand) -> anyhow::Result<()> {
    match command {
        RoutingCommand::Configure(args) => configure(args).await,
        RoutingCommand::Show(args) => show(args).await,
        RoutingCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = format!("/api/v1/routing/{}", path_segment(&args.service));
            client
                .send_raw(client.request(Method::DELETE, &path))
                .await?;
            print_deleted(args.common.format, "routing of", &args.service)
        }
        RoutingCommand::ExportVps(args) => {
            let format = match args.format {
                ProxyFormat::Traefik => "traefik",
                ProxyFormat::Caddy => "caddy",
            };
            export(
                &args.connect,
                &args.node,
                NodeKind::Vps,
                format,
                "export-dns",
            )
            .await
        }
        RoutingCommand::ExportDns(args) => {
            let format = match args.format {
                DnsFormat::Hosts => "hosts",
                DnsFormat::Zone => "zone",
            };
            export(
                &args.connect,
                &args.node,
                NodeKind::Laptop,
                format,
                "export-vps",
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_model::RoutingPlan;
    use fleetreg_testkit::edge_fixture::{seed, Seed};

    /// The seed's registry (testkit's) and its hostname table, with vps1
    /// down when `vps1_up` is false.
    fn seeded(vps1_up: bool) -> (Seed, Vec<HostRoute>) {
        let seed = seed();
        let down: &[&str] = if vps1_up { &[] } else { &["vps1"] };
        let routes = RoutingPlan::compute(&seed.snapshot(down)).routes;
        (seed, routes)
    }

    fn view<'a>(seed: &'a Seed, routes: &'a [HostRoute]) -> ConfigView<'a> {
        ConfigView {
            domains: &seed.domains,
            nodes: &seed.nodes,
            routings: &seed.routings,
            routes,
        }
    }

    #[test]
    fn the_seeds_configuration_view() {
        let (seed, routes) = seeded(true);
        let text = view(&seed, &routes).text();
        let expected = format!(
            "{RULE}
  Multi-Domain, Multi-VPS Configuration
{RULE}

Registered Domains:
  • curiios.com: Personal site  [region eu]
  • vinaysachdeva.com: Professional site  [region us]

Registered VPS Nodes:
  • 100.64.0.1 → 192.0.2.1 (eu)    vps1
  • 100.64.0.2 → 203.0.113.2 (us)  vps2

Service Routing:
  • immich:
    Domains: curiios.com, vinaysachdeva.com
    VPS: 100.64.0.1, 100.64.0.2
    Strategy: round-robin
    Serving now:
      photos.curiios.com       → vps1 (100.64.0.1)
      photos.vinaysachdeva.com → vps2 (100.64.0.2)
  • open-webui:
    Domains: curiios.com, vinaysachdeva.com
    VPS: 100.64.0.1, 100.64.0.2
    Strategy: primary-backup
    Serving now:
      chat.curiios.com       → vps1 (100.64.0.1, primary)
      chat.vinaysachdeva.com → vps1 (100.64.0.1, primary)
  • grafana:
    Domains: curiios.com, vinaysachdeva.com
    VPS: 100.64.0.1, 100.64.0.2
    Strategy: geo
    Serving now:
      grafana.curiios.com       → vps1 (100.64.0.1, eu)
      grafana.vinaysachdeva.com → vps2 (100.64.0.2, us)
"
        );
        assert_eq!(text, expected, "{text}");
    }

    #[test]
    fn a_failover_shows_the_backup_serving() {
        let (seed, routes) = seeded(false);
        let view = view(&seed, &routes);
        let text = view.service_block(&seed.routings[1]);
        assert!(
            text.contains("chat.curiios.com       → vps2 (100.64.0.2, backup)"),
            "{text}"
        );
        let text = view.service_block(&seed.routings[0]);
        assert!(text.contains("photos.curiios.com       → vps2"), "{text}");
    }

    #[test]
    fn an_empty_registry_says_so() {
        let view = ConfigView {
            domains: &[],
            nodes: &[],
            routings: &[],
            routes: &[],
        };
        assert_eq!(view.text().matches("  (none)\n").count(), 3);
        let seed = seed();
        let view = ConfigView {
            domains: &[],
            nodes: &seed.nodes,
            routings: &seed.routings,
            routes: &[],
        };
        assert!(view
            .service_block(&seed.routings[0])
            .contains("Serving now: none"));
    }

    #[test]
    fn configure_takes_names_or_overlay_addresses() {
        let nodes = seed().nodes;
        let entries = split_list("100.64.0.1, vps2");
        assert_eq!(node_names(&entries, &nodes).unwrap(), ["vps1", "vps2"]);
        let unknown = split_list("100.64.0.1,100.1.2.3");
        assert!(node_names(&unknown, &nodes)
            .unwrap_err()
            .to_string()
            .contains("100.1.2.3"));
    }
}
