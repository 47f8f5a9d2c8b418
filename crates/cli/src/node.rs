//! `fleetreg node …`: the edge nodes configuration is pushed to (seed
//! service-registry-push-sync.md): VPS nodes (`register-vps OVERLAY PUBLIC
//! REGION PROVIDER`) that run the reverse proxy, management laptops
//! (`register management_laptops ADDRESS NAME USER`) that get DNS, and the
//! agent token a node's `fleetreg agent` authenticates with; a thin client of
//! `/api/v1/nodes`. Also how the other edge commands find a node given by
//! name or overlay address.

use crate::client::{path_segment, Client};
use crate::cluster_sync::{col, Common};
use crate::edge_common::{items, print_deleted, typed_items};
use crate::output::{print, print_one, write_stdout, Column, Format};
use clap::{Args, Subcommand, ValueEnum};
use fleetreg_model::Node;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::IpAddr;

const ALL_EXAMPLES: &str = "Examples:
  fleetreg node register vps 100.68.225.92 45.8.133.192 eu contabo --name contabo-vps --user root
  fleetreg node register vps 100.70.123.45 167.99.1.1 us digitalocean   # named digitalocean-us
  fleetreg node register laptop 100.86.112.112 vinay-laptop vinaysachdeva
  fleetreg node list --kind vps
  fleetreg node show contabo-vps
  fleetreg node token contabo-vps
  fleetreg node delete digitalocean-us

A VPS carries the proxy routes of the services routed through it
(`fleetreg routing --help`); a laptop gets a DNS record for every published
hostname. Each node's agent keeps it in sync (`fleetreg sync health`).";

const REGISTER_EXAMPLES: &str = "Examples:
  fleetreg node register vps 100.68.225.92 45.8.133.192 eu contabo --name contabo-vps --user root
  fleetreg node register vps 100.72.200.50 203.0.113.100 asia linode   # named linode-asia
  fleetreg node register laptop 100.86.112.112 vinay-laptop vinaysachdeva
  fleetreg node register laptop 100.87.123.45 work-laptop vinaysachdeva -o json";

const VPS_EXAMPLES: &str = "Examples:
  fleetreg node register vps 100.68.225.92 45.8.133.192 eu contabo --name contabo-vps --user root
  fleetreg node register vps 100.70.123.45 167.99.1.1 us digitalocean   # named digitalocean-us

The overlay address is the node's address on the private network (e.g.
`tailscale ip -4`); laptops resolve hostnames it serves to it. The public
address is where the internet reaches it. Without --name the node is named
PROVIDER-REGION.";

const LAPTOP_EXAMPLES: &str = "Examples:
  fleetreg node register laptop 100.86.112.112 vinay-laptop vinaysachdeva
  fleetreg node register laptop 100.87.123.45 work-laptop vinaysachdeva";

const TOKEN_EXAMPLES: &str = "Examples:
  fleetreg node token contabo-vps
  fleetreg node token contabo-vps -o json | jq -r .token > agent.token   # only the token

Creates a token that may only read that node's configuration and acknowledge
it. It is shown once: store it on the node in a file only the agent reads.
Creating one again revokes the node's previous agent token.";

/// The node commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum NodeCommand {
    /// Register a VPS edge node or a management laptop.
    #[command(subcommand, after_help = REGISTER_EXAMPLES)]
    Register(RegisterCommand),
    /// List the registered nodes.
    List(ListArgs),
    /// Show one node.
    Show(NameArgs),
    /// Delete a node (its routing and sync state go with it).
    Delete(NameArgs),
    /// Create the token a node's agent authenticates with; it is shown once.
    #[command(after_help = TOKEN_EXAMPLES)]
    Token(NameArgs),
}

/// `node register vps|laptop`.
#[derive(Subcommand, Debug)]
pub enum RegisterCommand {
    /// A VPS running the reverse proxy (seed `register-vps`).
    #[command(after_help = VPS_EXAMPLES)]
    Vps(VpsArgs),
    /// A management laptop that gets DNS (seed `register management_laptops`).
    #[command(after_help = LAPTOP_EXAMPLES)]
    Laptop(LaptopArgs),
}

/// `node register vps`.
#[derive(Args, Debug)]
pub struct VpsArgs {
    /// Its overlay (e.g. Tailscale) address.
    overlay: String,
    /// Its public address.
    public: String,
    /// Region tag, e.g. eu (what `geo` routing matches domains against).
    region: String,
    /// Hosting provider, e.g. contabo.
    provider: String,
    /// Its name [default: PROVIDER-REGION, lower case].
    #[arg(long)]
    name: Option<String>,
    /// The user the operator logs in as, e.g. root.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    common: Common,
}

impl VpsArgs {
    /// The registration request.
    fn body(&self) -> Value {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.provider, self.region).to_ascii_lowercase());
        json!({
            "name": name,
            "kind": "vps",
            "overlay_address": self.overlay,
            "public_address": self.public,
            "region": self.region,
            "provider": self.provider,
            "user": self.user,
        })
    }
}

/// `node register laptop`.
#[derive(Args, Debug)]
pub struct LaptopArgs {
    /// Its overlay (e.g. Tailscale) address.
    address: String,
    /// Its name, e.g. vinay-laptop.
    name: String,
    /// Its owner's user name.
    user: String,
    #[command(flatten)]
    common: Common,
}

impl LaptopArgs {
    /// The registration request.
    fn body(&self) -> Value {
        json!({
            "name": self.name,
            "kind": "laptop",
            "overlay_address": self.address,
            "user": self.user,
        })
    }
}

/// A node kind, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    /// VPS edge nodes.
    Vps,
    /// Management laptops.
    Laptop,
}

/// `node list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only nodes of this kind.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one node.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The node's name.
    name: String,
    #[command(flatten)]
    common: Common,
}

/// `node list` columns.
const COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("KIND", "/kind"),
    col("OVERLAY", "/overlay_address"),
    col("PUBLIC", "/public_address"),
    col("REGION", "/region"),
    col("PROVIDER", "/provider"),
    col("USER", "/user"),
    col("REVISION", "/revision"),
];

/// One node, field per line.
const DETAIL: &[Column] = &[
    col("Name", "/name"),
    col("Kind", "/kind"),
    col("Overlay address", "/overlay_address"),
    col("Public address", "/public_address"),
    col("Region", "/region"),
    col("Provider", "/provider"),
    col("User", "/user"),
    col("Revision", "/revision"),
    col("Registered", "/created_at"),
    col("Updated", "/updated_at"),
    col("ID", "/id"),
];

/// Every field of a node, named as in the API, for CSV.
const CSV: &[Column] = &[
    col("id", "/id"),
    col("name", "/name"),
    col("kind", "/kind"),
    col("overlay_address", "/overlay_address"),
    col("public_address", "/public_address"),
    col("region", "/region"),
    col("provider", "/provider"),
    col("user", "/user"),
    col("revision", "/revision"),
    col("created_at", "/created_at"),
    col("updated_at", "/updated_at"),
];

/// A new agent token, field per line.
const TOKEN_DETAIL: &[Column] = &[
    col("Token (shown once)", "/token"),
    col("Node", "/node"),
    col("Role", "/role"),
    col("Name", "/name"),
    col("ID", "/id"),
    col("Expires at", "/expires_at"),
];

/// `/api/v1/nodes/{name}`.
pub fn node_path(name: &str) -> String {
    format!("/api/v1/nodes/{}", path_segment(name))
}

/// Every registered node.
pub async fn list_nodes(client: &Client) -> anyhow::Result<Vec<Node>> {
    let answer: Value = client
        .send(client.request(Method::GET, "/api/v1/nodes"))
        .await?;
    typed_items(&answer, "node")
}

/// The node a user named: `text` is a node name, or an overlay address that
/// one of `nodes` has.
pub fn resolve_in(nodes: &[Node], text: &str) -> anyhow::Result<String> {
    let Ok(address) = text.parse::<IpAddr>() else {
        return Ok(text.to_owned());
    };
    nodes
        .iter()
        .find(|n| n.overlay_address == address)
        .map(|n| n.name.to_string())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no registered node has the overlay address {address} (`fleetreg node list` shows them; register it with `fleetreg node register`)"
            )
        })
}

/// The name of the node `text` names (a name, or an overlay address looked
/// up in the node list).
pub async fn resolve(client: &Client, text: &str) -> anyhow::Result<String> {
    if text.parse::<IpAddr>().is_err() {
        return Ok(text.to_owned());
    }
    resolve_in(&list_nodes(client).await?, text)
}

fn print_node(format: Format, node: &Value) -> anyhow::Result<()> {
    match format {
        Format::Csv => print(format, node, std::slice::from_ref(node), CSV),
        format => print_one(format, node, DETAIL),
    }
}

async fn register(body: Value, common: &Common) -> anyhow::Result<()> {
    let client = Client::from_args(&common.connect)?;
    let node: Value = client
        .send(client.request(Method::POST, "/api/v1/nodes").json(&body))
        .await?;
    print_node(common.format, &node)
}

/// The hint under a new agent token: where it goes and how the agent uses it.
fn token_hint(node: &str) -> String {
    format!(
        "  hint: the token is not shown again. On {node}, save it in a file only the agent's user can read \
         (e.g. /etc/fleetreg/agent.token, mode 0600) and run (`fleetreg agent --help`):\n    \
         fleetreg agent --node {node} --out-dir /etc/fleetreg --token-file /etc/fleetreg/agent.token\n"
    )
}

/// Runs a node command.
pub async fn run(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Register(RegisterCommand::Vps(args)) => {
            register(args.body(), &args.common).await
        }
        NodeCommand::Register(RegisterCommand::Laptop(args)) => {
            register(args.body(), &args.common).await
        }
        NodeCommand::List(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let mut request = client.request(Method::GET, "/api/v1/nodes");
            if let Some(kind) = args.kind {
                let kind = match kind {
                    KindArg::Vps => "vps",
                    KindArg::Laptop => "laptop",
                };
                request = request.query(&[("kind", kind)]);
            }
            let answer: Value = client.send(request).await?;
            let rows = items(&answer);
            match args.common.format {
                Format::Table if rows.is_empty() => {
                    eprintln!("no nodes registered (`fleetreg node register --help`)");
                    Ok(())
                }
                Format::Csv => print(Format::Csv, &answer, &rows, CSV),
                format => print(format, &answer, &rows, COLUMNS),
            }
        }
        NodeCommand::Show(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let name = resolve(&client, &args.name).await?;
            let node: Value = client
                .send(client.request(Method::GET, &node_path(&name)))
                .await?;
            print_node(args.common.format, &node)
        }
        NodeCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let name = resolve(&client, &args.name).await?;
            client
                .send_raw(client.request(Method::DELETE, &node_path(&name)))
                .await?;
            print_deleted(args.common.format, "node", &name)
        }
        NodeCommand::Token(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let name = resolve(&client, &args.name).await?;
            let path = format!("{}/token", node_path(&name));
            let token: Value = client.send(client.request(Method::POST, &path)).await?;
            match args.common.format {
                Format::Table => {
                    write_stdout(&crate::output::detail(&token, TOKEN_DETAIL))?;
                    eprint!("{}", token_hint(&name));
                    Ok(())
                }
                format => print_one(format, &token, TOKEN_DETAIL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: NodeCommand,
    }

    fn parse(args: &[&str]) -> NodeCommand {
        Cli::parse_from([&["node"], args].concat()).command
    }

    #[test]
    fn a_vps_is_named_after_its_provider_and_region_by_default() {
        let NodeCommand::Register(RegisterCommand::Vps(args)) = parse(&[
            "register",
            "vps",
            "100.68.225.92",
            "45.8.133.192",
            "eu",
            "Contabo",
        ]) else {
            panic!("not a vps registration");
        };
        let body = args.body();
        assert_eq!(body["name"], "contabo-eu");
        assert_eq!(body["kind"], "vps");
        assert_eq!(body["overlay_address"], "100.68.225.92");
        assert_eq!(body["public_address"], "45.8.133.192");
        assert_eq!(body["provider"], "Contabo");
        assert_eq!(body["user"], Value::Null);
        let NodeCommand::Register(RegisterCommand::Vps(args)) = parse(&[
            "register",
            "vps",
            "100.68.225.92",
            "45.8.133.192",
            "eu",
            "contabo",
            "--name",
            "contabo-vps",
            "--user",
            "root",
        ]) else {
            panic!("not a vps registration");
        };
        assert_eq!(args.body()["name"], "contabo-vps");
        assert_eq!(args.body()["user"], "root");
    }

    #[test]
    fn a_laptop_takes_the_seeds_arguments() {
        let NodeCommand::Register(RegisterCommand::Laptop(args)) = parse(&[
            "register",
            "laptop",
            "100.86.112.112",
            "vinay-laptop",
            "vinaysachdeva",
        ]) else {
            panic!("not a laptop registration");
        };
        assert_eq!(
            args.body(),
            json!({"name": "vinay-laptop", "kind": "laptop",
                   "overlay_address": "100.86.112.112", "user": "vinaysachdeva"})
        );
    }

    fn node(name: &str, overlay: &str) -> Node {
        serde_json::from_value(json!({
            "id": uuid::Uuid::nil(), "name": name, "kind": "vps",
            "overlay_address": overlay, "public_address": "203.0.113.1",
            "region": "eu", "provider": "contabo", "user": null, "revision": 1,
            "created_at": Utc::now(), "updated_at": Utc::now(),
        }))
        .unwrap()
    }

    #[test]
    fn nodes_are_found_by_name_or_overlay_address() {
        let nodes = [
            node("contabo-vps", "100.68.225.92"),
            node("do-vps", "100.70.123.45"),
        ];
        assert_eq!(resolve_in(&nodes, "100.70.123.45").unwrap(), "do-vps");
        assert_eq!(resolve_in(&nodes, "anything").unwrap(), "anything");
        let error = resolve_in(&nodes, "100.1.1.1").unwrap_err().to_string();
        assert!(error.contains("100.1.1.1"), "{error}");
    }
}
