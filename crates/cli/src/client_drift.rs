//! `fleetreg client drift`: the seed's "Registry out of sync" check
//! (client-registry.md, Troubleshooting). The servers are read from the
//! output of `tofu show -json` (or `terraform show -json`): every managed
//! `hcloud_server` under `values.root_module` and its `child_modules`, by its
//! `name`. They are compared with the registry (`GET /api/v1/clients/export`);
//! `--apply` writes the state's server details into the registry
//! (`PUT /api/v1/clients/{name}` with the merged `server`, audited by the
//! server) and never creates or deletes a client.
//!
//! The comparison is pure ([`servers_in_state`], [`registry_clients`],
//! [`compare`], [`merged_server`]); [`run`] does the IO.

use crate::client::{path_segment, Client, ConnectArgs};
use crate::output::{table, write_stdout, Column};
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

/// The exit status when drift remains: found without `--apply`, or of a
/// kind `--apply` does not change (clients only in the state or only in the
/// registry, destroyed clients whose server still exists).
pub const DRIFT_EXIT_STATUS: u8 = 3;

/// `client drift --help`'s examples and exit statuses.
pub const DRIFT_EXAMPLES: &str = "Examples:
  tofu -chdir=tofu show -json > state.json
  fleetreg client drift --tofu-state state.json
  fleetreg client drift --tofu-state state.json -o json
  fleetreg client drift --tofu-state state.json --apply
  tofu -chdir=tofu show -json | fleetreg client drift --tofu-state -
  terraform show -json | fleetreg client drift --tofu-state - --apply

The servers are the managed `hcloud_server` resources anywhere under
values.root_module and its child_modules, matched to clients by their `name`.
Reported: per client the server fields that differ (server.ip from
ipv4_address, server.id, server.type from server_type, server.location),
registry value → state value; servers with no client in the registry; clients
with no server in the state (pending and destroyed clients are expected to
have none and are not reported); destroyed clients whose server is still in
the state.

--apply updates each differing client's server details (PUT, audited by the
server; fields the state does not give are kept) and prints what it changed.
It never creates, destroys or deletes a client.

Exit status: 0 when the registry matches the state (or --apply made it match),
3 when drift was found and not applied (without --apply, or only of the kinds
--apply leaves alone), 1 on any error.";

/// How `client drift` prints.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum DriftFormat {
    /// The differences as a table, then the other findings, for people.
    #[default]
    Table,
    /// The report (and what --apply changed) as JSON.
    Json,
}

/// `client drift`.
#[derive(Args, Debug)]
pub struct DriftArgs {
    /// The output of `tofu show -json` (or `terraform show -json`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    tofu_state: PathBuf,
    /// Update the registry's server details of differing clients to the state's.
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DriftFormat::Table)]
    format: DriftFormat,
}

/// A server field compared: its path in the registry and its attribute in
/// the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Ip,
    Id,
    Type,
    Location,
}

impl Field {
    const ALL: [Field; 4] = [Field::Ip, Field::Id, Field::Type, Field::Location];

    /// The key in the registry's `server` object.
    fn key(self) -> &'static str {
        match self {
            Field::Ip => "ip",
            Field::Id => "id",
            Field::Type => "type",
            Field::Location => "location",
        }
    }

    /// The attribute of an `hcloud_server`.
    fn attribute(self) -> &'static str {
        match self {
            Field::Ip => "ipv4_address",
            Field::Id => "id",
            Field::Type => "server_type",
            Field::Location => "location",
        }
    }
}

/// The server details of one side, by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerFields {
    /// The public IPv4 address.
    pub ip: Option<String>,
    /// The provider's server id.
    pub id: Option<String>,
    /// The server type, e.g. `cx22`.
    #[serde(rename = "type")]
    pub server_type: Option<String>,
    /// The location, e.g. `nbg1`.
    pub location: Option<String>,
}

impl ServerFields {
    fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Ip => self.ip.as_deref(),
            Field::Id => self.id.as_deref(),
            Field::Type => self.server_type.as_deref(),
            Field::Location => self.location.as_deref(),
        }
    }

    fn set(&mut self, field: Field, value: Option<String>) {
        match field {
            Field::Ip => self.ip = value.map(|ip| normalized_ip(&ip)),
            Field::Id => self.id = value,
            Field::Type => self.server_type = value,
            Field::Location => self.location = value,
        }
    }

    /// Reads `object[key]` per field (`keyed` names the key); a number is
    /// taken as its text, an empty string as absent.
    fn read(object: &Value, keyed: impl Fn(Field) -> &'static str) -> ServerFields {
        let mut fields = ServerFields::default();
        for field in Field::ALL {
            let value = match &object[keyed(field)] {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            fields.set(field, value);
        }
        fields
    }
}

/// An address in its canonical text (so `203.0.113.010`-style spellings
/// that parse compare equal); anything else as given.
fn normalized_ip(text: &str) -> String {
    text.parse::<std::net::IpAddr>()
        .map_or_else(|_| text.to_owned(), |ip| ip.to_string())
}

/// One `hcloud_server` of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateServer {
    /// Its `name` attribute: the client it belongs to.
    pub name: String,
    /// Its resource address, e.g. `module.production.hcloud_server.client["acme"]`.
    pub address: String,
    /// Its details.
    #[serde(flatten)]
    pub server: ServerFields,
}

/// One client of the registry, as far as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryClient {
    /// Its name.
    pub name: String,
    /// Its lifecycle status (`deployed`, `destroyed`, …).
    pub status: String,
    /// Its server details.
    pub server: ServerFields,
}

/// The managed `hcloud_server` resources of a `tofu show -json` document,
/// sorted by name. An empty state (no `values`) has none. Refused: a
/// document that is not `show -json` output (a raw `terraform.tfstate` is
/// named as such), a server without a name, two servers with one name.
pub fn servers_in_state(state: &Value) -> anyhow::Result<Vec<StateServer>> {
    if !state.is_object() {
        anyhow::bail!("not the output of `tofu show -json`: not a JSON object");
    }
    if state.get("format_version").is_none() {
        if state.get("resources").is_some() || state.get("terraform_version").is_some() {
            anyhow::bail!(
                "this is a raw state file (terraform.tfstate), not the output of `tofu show -json`; \
                 run `tofu show -json > state.json` where the state is and pass that"
            );
        }
        anyhow::bail!("not the output of `tofu show -json`: it has no format_version");
    }
    let mut servers = Vec::new();
    let root = &state["values"]["root_module"];
    if !root.is_null() {
        collect(root, "values.root_module", &mut servers)?;
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
    if let Some(pair) = servers.windows(2).find(|w| w[0].name == w[1].name) {
        anyhow::bail!(
            "two hcloud_server resources are named {:?} in the state: {} and {}",
            pair[0].name,
            pair[0].address,
            pair[1].address
        );
    }
    Ok(servers)
}

/// The servers of `module` (at JSON path `path`) and its child modules.
fn collect(module: &Value, path: &str, out: &mut Vec<StateServer>) -> anyhow::Result<()> {
    let list = |key: &str| -> anyhow::Result<&[Value]> {
        match &module[key] {
            Value::Null => Ok(&[]),
            Value::Array(items) => Ok(items),
            _ => anyhow::bail!("{path}.{key} is not a list"),
        }
    };
    for (index, resource) in list("resources")?.iter().enumerate() {
        let managed = resource["mode"].as_str().is_none_or(|m| m == "managed");
        if resource["type"] != "hcloud_server" || !managed {
            continue;
        }
        let address = resource["address"]
            .as_str()
            .map_or_else(|| format!("{path}.resources[{index}]"), str::to_owned);
        let values = &resource["values"];
        let name = match &values["name"] {
            Value::String(name) if !name.trim().is_empty() => name.trim().to_owned(),
            _ => anyhow::bail!("{address}: the hcloud_server has no name"),
        };
        out.push(StateServer {
            name,
            address,
            server: ServerFields::read(values, Field::attribute),
        });
    }
    for (index, child) in list("child_modules")?.iter().enumerate() {
        let child_path = child["address"]
            .as_str()
            .map_or_else(|| format!("{path}.child_modules[{index}]"), str::to_owned);
        collect(child, &child_path, out)?;
    }
    Ok(())
}

/// The clients of a registry document (`GET /api/v1/clients/export`:
/// `{"clients": {NAME: {status, server: {type, location, ip, id}, …}}}`).
pub fn registry_clients(document: &Value) -> anyhow::Result<Vec<RegistryClient>> {
    let clients = match &document["clients"] {
        Value::Object(clients) => clients,
        Value::Null => return Ok(Vec::new()),
        _ => anyhow::bail!("the server's registry export has no `clients` object"),
    };
    Ok(clients
        .iter()
        .map(|(name, entry)| RegistryClient {
            name: name.clone(),
            status: entry["status"].as_str().unwrap_or("pending").to_owned(),
            server: ServerFields::read(&entry["server"], Field::key),
        })
        .collect())
}

/// One server field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDrift {
    /// The registry's path, e.g. `server.ip`.
    pub field: String,
    /// What the registry says (`None`: nothing).
    pub registry: Option<String>,
    /// What the state says.
    pub state: String,
}

/// A client whose server details differ from its server's in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientDrift {
    /// The client.
    pub client: String,
    /// Its status in the registry.
    pub status: String,
    /// The server's resource address in the state.
    pub address: String,
    /// The fields that differ.
    pub fields: Vec<FieldDrift>,
}

/// A client with no server in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryOnly {
    /// The client.
    pub client: String,
    /// Its status in the registry.
    pub status: String,
}

/// What differs between the registry and the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    /// Nothing below is non-empty.
    pub in_sync: bool,
    /// How many servers the state has.
    pub servers: usize,
    /// How many clients the registry has.
    pub clients: usize,
    /// Clients whose server details differ (`--apply` updates them).
    pub differing: Vec<ClientDrift>,
    /// Servers with no client of their name in the registry.
    pub only_in_state: Vec<StateServer>,
    /// Clients (not pending, not destroyed) with no server in the state.
    pub only_in_registry: Vec<RegistryOnly>,
    /// Clients destroyed in the registry whose server is still in the state.
    pub destroyed_in_registry: Vec<StateServer>,
}

impl DriftReport {
    /// Whether drift remains that `--apply` does not change.
    pub fn unappliable(&self) -> bool {
        !(self.only_in_state.is_empty()
            && self.only_in_registry.is_empty()
            && self.destroyed_in_registry.is_empty())
    }
}

/// The fields where `state` gives a value other than `registry`'s (a field
/// the state does not give is not compared).
fn differences(registry: &ServerFields, state: &ServerFields) -> Vec<FieldDrift> {
    Field::ALL
        .into_iter()
        .filter_map(|field| {
            let theirs = state.get(field)?;
            let ours = registry.get(field);
            (ours != Some(theirs)).then(|| FieldDrift {
                field: format!("server.{}", field.key()),
                registry: ours.map(str::to_owned),
                state: theirs.to_owned(),
            })
        })
        .collect()
}

/// Compares the registry with the state's servers (each list by name).
pub fn compare(registry: &[RegistryClient], servers: &[StateServer]) -> DriftReport {
    let by_name: BTreeMap<&str, &RegistryClient> =
        registry.iter().map(|c| (c.name.as_str(), c)).collect();
    let in_state: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let mut report = DriftReport {
        in_sync: true,
        servers: servers.len(),
        clients: registry.len(),
        differing: Vec::new(),
        only_in_state: Vec::new(),
        only_in_registry: Vec::new(),
        destroyed_in_registry: Vec::new(),
    };
    for server in servers {
        match by_name.get(server.name.as_str()) {
            None => report.only_in_state.push(server.clone()),
            Some(client) if client.status == "destroyed" => {
                report.destroyed_in_registry.push(server.clone())
            }
            Some(client) => {
                let fields = differences(&client.server, &server.server);
                if !fields.is_empty() {
                    report.differing.push(ClientDrift {
                        client: client.name.clone(),
                        status: client.status.clone(),
                        address: server.address.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for (name, client) in &by_name {
        let expected_absent = matches!(client.status.as_str(), "destroyed" | "pending");
        if !in_state.contains(name) && !expected_absent {
            report.only_in_registry.push(RegistryOnly {
                client: client.name.clone(),
                status: client.status.clone(),
            });
        }
    }
    report.in_sync = report.differing.is_empty() && !report.unappliable();
    report
}

/// The registry's `server` object with the state's values put in: the
/// fields the state gives replace the registry's, the rest (and any other
/// key) are kept.
pub fn merged_server(registry_server: &Value, state: &ServerFields) -> Value {
    let mut merged: Map<String, Value> = registry_server.as_object().cloned().unwrap_or_default();
    for field in Field::ALL {
        if let Some(value) = state.get(field) {
            merged.insert(field.key().to_owned(), json!(value));
        }
    }
    Value::Object(merged)
}

/// `registry → state` of each field, for a line of text.
fn changes_text(fields: &[FieldDrift]) -> String {
    fields
        .iter()
        .map(|f| {
            format!(
                "{} {} → {}",
                f.field,
                f.registry.as_deref().unwrap_or("(none)"),
                f.state
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const DIFF_COLUMNS: &[Column] = &[
    Column {
        header: "CLIENT",
        pointer: "/client",
    },
    Column {
        header: "FIELD",
        pointer: "/field",
    },
    Column {
        header: "REGISTRY",
        pointer: "/registry",
    },
    Column {
        header: "STATE",
        pointer: "/state",
    },
];

/// The report for people: the differing fields as a table (unless
/// `applied`, which prints its own lines), then the other findings.
pub fn report_text(report: &DriftReport, applied: bool) -> String {
    let mut out = String::new();
    if report.in_sync {
        out.push_str(&format!(
            "in sync: the registry's {} clients match the state's {} servers\n",
            report.clients, report.servers
        ));
        return out;
    }
    if !report.differing.is_empty() && !applied {
        let rows: Vec<Value> = report
            .differing
            .iter()
            .flat_map(|c| {
                c.fields.iter().map(|f| {
                    json!({"client": c.client, "field": f.field, "registry": f.registry, "state": f.state})
                })
            })
            .collect();
        out.push_str(&table(&rows, DIFF_COLUMNS));
    }
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(title);
            out.push('\n');
            for line in lines {
                out.push_str(&format!("  {line}\n"));
            }
        }
    };
    let server_line = |s: &StateServer| {
        format!(
            "{}  {}  {}",
            s.name,
            s.server.ip.as_deref().unwrap_or("-"),
            s.address
        )
    };
    section(
        "Servers in the state with no client in the registry:",
        report.only_in_state.iter().map(server_line).collect(),
    );
    section(
        "Clients with no server in the state:",
        report
            .only_in_registry
            .iter()
            .map(|c| format!("{} ({})", c.client, c.status))
            .collect(),
    );
    section(
        "Clients destroyed in the registry whose server is still in the state:",
        report
            .destroyed_in_registry
            .iter()
            .map(server_line)
            .collect(),
    );
    out
}

/// What `--apply` changed for one client.
#[derive(Debug, Clone, Serialize)]
struct Applied {
    client: String,
    fields: Vec<FieldDrift>,
    revision: Value,
}

/// `-o json`: the report's fields in order, then (with `--apply`) `applied`.
#[derive(Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    report: &'a DriftReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a [Applied]>,
}

/// The text of `path`, or of stdin for `-`, and how to name it.
fn read_state(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
        return Ok(("(stdin)".into(), text));
    }
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
    Ok((name, text))
}

/// Runs `client drift`: exits with [`DRIFT_EXIT_STATUS`] when drift remains.
pub async fn run(args: DriftArgs) -> anyhow::Result<()> {
    // Read and parse the state before anything is sent.
    let (source, text) = read_state(&args.tofu_state)?;
    let state: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{source} is not JSON ({e}); expected the output of `tofu show -json`")
    })?;
    let servers = servers_in_state(&state).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let client = Client::from_args(&args.connect)?;
    let document: Value = client
        .send(client.request(Method::GET, "/api/v1/clients/export"))
        .await?;
    let report = compare(&registry_clients(&document)?, &servers);
    let mut applied = Vec::new();
    if args.apply {
        for drift in &report.differing {
            let Some(server) = servers.iter().find(|s| s.name == drift.client) else {
                continue;
            };
            if let Some(done) = apply_one(&client, server).await? {
                if args.format == DriftFormat::Table {
                    write_stdout(&format!(
                        "updated {}: {} (revision {})\n",
                        done.client,
                        changes_text(&done.fields),
                        done.revision
                    ))?;
                }
                applied.push(done);
            }
        }
    }
    match args.format {
        DriftFormat::Table => write_stdout(&report_text(&report, args.apply))?,
        DriftFormat::Json => {
            let whole = JsonOutput {
                report: &report,
                applied: args.apply.then_some(applied.as_slice()),
            };
            write_stdout(&format!("{}\n", serde_json::to_string_pretty(&whole)?))?;
        }
    }
    let remaining = report.unappliable() || (!args.apply && !report.differing.is_empty());
    if !remaining {
        if args.apply && !applied.is_empty() {
            eprintln!(
                "{} clients updated; the registry now matches the state",
                applied.len()
            );
        }
        return Ok(());
    }
    let mut found = Vec::new();
    if !report.differing.is_empty() && !args.apply {
        found.push(format!("{} clients differ", report.differing.len()));
    }
    if !report.only_in_state.is_empty() {
        found.push(format!(
            "{} servers only in the state",
            report.only_in_state.len()
        ));
    }
    if !report.only_in_registry.is_empty() {
        found.push(format!(
            "{} clients only in the registry",
            report.only_in_registry.len()
        ));
    }
    if !report.destroyed_in_registry.is_empty() {
        found.push(format!(
            "{} destroyed clients with a server",
            report.destroyed_in_registry.len()
        ));
    }
    let advice = if !args.apply && !report.differing.is_empty() {
        "; --apply updates the differing clients' server details"
    } else {
        "; --apply does not create, destroy or delete clients: use `fleetreg client update NAME deploy|destroy`"
    };
    Err(DriftFound(format!("{}{advice}", found.join(", "))).into())
}

/// Drift remains after the command (exit status [`DRIFT_EXIT_STATUS`]).
#[derive(Debug, thiserror::Error)]
#[error("drift: {0}")]
pub struct DriftFound(pub String);

/// Puts the state's details of `server` into its client, as the client is
/// now (read again, and written only if it did not change meanwhile); `None`
/// when it already matches.
async fn apply_one(client: &Client, server: &StateServer) -> anyhow::Result<Option<Applied>> {
    let path = format!("/api/v1/clients/{}", path_segment(&server.name));
    let current: Value = client.send(client.request(Method::GET, &path)).await?;
    let ours = ServerFields::read(&current["server"], Field::key);
    let fields = differences(&ours, &server.server);
    if fields.is_empty() {
        return Ok(None);
    }
    let mut request = client
        .request(Method::PUT, &path)
        .json(&json!({"server": merged_server(&current["server"], &server.server)}));
    if let Some(revision) = current["revision"].as_i64() {
        request = request.header("If-Match", format!("\"{revision}\""));
    }
    let updated: Value = client.send(request).await?;
    Ok(Some(Applied {
        client: server.name.clone(),
        fields,
        revision: updated["revision"].clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// crates/cli/tests/data/tofu-show.json: the example registry's servers,
    /// acme rebuilt (new ip and id) and beta resized (cx32).
    const SAMPLE: &str = include_str!("../tests/data/tofu-show.json");

    /// docs/examples/registry.yml's clients as the export gives them.
    fn example_registry() -> Value {
        json!({"clients": {
            "acme": {"status": "deployed", "server": {"type": "cx32", "location": "fsn1", "ip": "203.0.113.21", "id": "12345678"}},
            "beta": {"status": "maintenance", "server": {"type": "cx22", "location": "hel1", "ip": "203.0.113.33", "id": "23456789"}},
            "dev": {"status": "deployed", "server": {"type": "cx22", "location": "nbg1", "ip": "203.0.113.10", "id": "11111111"}},
            "oldco": {"status": "destroyed", "server": {"type": "cx22", "location": "nbg1", "ip": "203.0.113.44", "id": "34567890"}}
        }})
    }

    fn server(name: &str, ip: &str) -> StateServer {
        StateServer {
            name: name.into(),
            address: format!("hcloud_server.client[\"{name}\"]"),
            server: ServerFields {
                ip: Some(ip.into()),
                id: Some("1".into()),
                server_type: Some("cx22".into()),
                location: Some("nbg1".into()),
            },
        }
    }

    fn registry(entries: &[(&str, &str, &str)]) -> Vec<RegistryClient> {
        entries
            .iter()
            .map(|(name, status, ip)| RegistryClient {
                name: (*name).into(),
                status: (*status).into(),
                server: server(name, ip).server,
            })
            .collect()
    }

    #[test]
    fn the_sample_state_has_every_server_of_root_and_child_modules() {
        let state: Value = serde_json::from_str(SAMPLE).unwrap();
        let servers = servers_in_state(&state).unwrap();
        let names: Vec<(&str, &str)> = servers
            .iter()
            .map(|s| (s.name.as_str(), s.address.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("acme", "module.production.hcloud_server.client[\"acme\"]"),
                ("beta", "module.production.hcloud_server.client[\"beta\"]"),
                ("dev", "hcloud_server.client[\"dev\"]"),
            ]
        );
        assert_eq!(
            servers[2].server,
            ServerFields {
                ip: Some("203.0.113.10".into()),
                id: Some("11111111".into()),
                server_type: Some("cx22".into()),
                location: Some("nbg1".into()),
            }
        );
    }

    #[test]
    fn the_sample_differs_from_the_example_registry_exactly_as_meant() {
        let state: Value = serde_json::from_str(SAMPLE).unwrap();
        let servers = servers_in_state(&state).unwrap();
        let report = compare(&registry_clients(&example_registry()).unwrap(), &servers);
        assert!(!report.in_sync);
        let fields: Vec<(&str, &str, Option<&str>, &str)> = report
            .differing
            .iter()
            .flat_map(|c| {
                c.fields.iter().map(move |f| {
                    (
                        c.client.as_str(),
                        f.field.as_str(),
                        f.registry.as_deref(),
                        f.state.as_str(),
                    )
                })
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("acme", "server.ip", Some("203.0.113.21"), "203.0.113.121"),
                ("acme", "server.id", Some("12345678"), "48151623"),
                ("beta", "server.type", Some("cx22"), "cx32"),
            ]
        );
        // oldco is destroyed and has no server: expected, not reported.
        assert!(!report.unappliable(), "{report:?}");
        let text = report_text(&report, false);
        assert!(
            text.starts_with(
                "CLIENT  FIELD        REGISTRY      STATE\n\
                 acme    server.ip    203.0.113.21  203.0.113.121\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn other_resources_data_sources_and_nested_modules() {
        let state = json!({
            "format_version": "1.0",
            "values": {"root_module": {
                "resources": [
                    {"address": "data.hcloud_server.old", "mode": "data", "type": "hcloud_server",
                     "values": {"name": "old", "ipv4_address": "203.0.113.1"}},
                    {"address": "hcloud_ssh_key.a", "mode": "managed", "type": "hcloud_ssh_key",
                     "values": {"name": "a"}}
                ],
                "child_modules": [{"address": "module.a", "child_modules": [{
                    "address": "module.a.module.b",
                    "resources": [{"address": "module.a.module.b.hcloud_server.x", "mode": "managed",
                        "type": "hcloud_server",
                        "values": {"name": "x", "id": 42, "ipv4_address": "", "server_type": "cx22"}}]
                }]}]
            }}
        });
        let servers = servers_in_state(&state).unwrap();
        assert_eq!(servers.len(), 1, "{servers:?}");
        assert_eq!(servers[0].address, "module.a.module.b.hcloud_server.x");
        assert_eq!(servers[0].server.id.as_deref(), Some("42"));
        assert_eq!(servers[0].server.ip, None, "an empty address is none");
        // No values: an empty state.
        assert!(servers_in_state(&json!({"format_version": "1.0"}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn documents_that_are_not_show_json_are_refused() {
        let raw = json!({"version": 4, "terraform_version": "1.8.0", "resources": []});
        let error = servers_in_state(&raw).unwrap_err().to_string();
        assert!(error.contains("raw state file"), "{error}");
        assert!(servers_in_state(&json!([])).is_err());
        let twice = json!({"format_version": "1.0", "values": {"root_module": {"resources": [
            {"address": "hcloud_server.a", "type": "hcloud_server", "mode": "managed", "values": {"name": "a"}},
            {"address": "module.m.hcloud_server.a", "type": "hcloud_server", "mode": "managed", "values": {"name": "a"}}
        ]}}});
        let error = servers_in_state(&twice).unwrap_err().to_string();
        assert!(
            error.contains("hcloud_server.a and module.m.hcloud_server.a"),
            "{error}"
        );
        let nameless = json!({"format_version": "1.0", "values": {"root_module": {"resources": [
            {"address": "hcloud_server.a", "type": "hcloud_server", "mode": "managed", "values": {}}
        ]}}});
        assert!(servers_in_state(&nameless).is_err());
    }

    #[test]
    fn clients_missing_on_either_side() {
        let clients = registry(&[
            ("gone", "destroyed", "203.0.113.1"),
            ("lost", "deployed", "203.0.113.2"),
            ("new", "pending", "203.0.113.3"),
            ("old", "destroyed", "203.0.113.4"),
            ("same", "deployed", "203.0.113.5"),
        ]);
        let servers = [
            server("old", "203.0.113.4"),
            server("same", "203.0.113.5"),
            server("stray", "203.0.113.6"),
        ];
        let report = compare(&clients, &servers);
        assert!(report.differing.is_empty());
        assert_eq!(report.only_in_state, [servers[2].clone()]);
        assert_eq!(
            report.only_in_registry,
            [RegistryOnly {
                client: "lost".into(),
                status: "deployed".into()
            }],
            "pending and destroyed clients are expected to have no server"
        );
        assert_eq!(report.destroyed_in_registry, [servers[0].clone()]);
        assert!(report.unappliable() && !report.in_sync);
        let text = report_text(&report, false);
        assert!(
            text.contains(
                "Servers in the state with no client in the registry:\n  \
                 stray  203.0.113.6  hcloud_server.client[\"stray\"]\n"
            ),
            "{text}"
        );
        assert!(text.contains("Clients with no server in the state:\n  lost (deployed)\n"));
        let in_sync = compare(
            &registry(&[("same", "deployed", "203.0.113.5")]),
            &servers[1..2],
        );
        assert!(in_sync.in_sync);
        assert_eq!(
            report_text(&in_sync, false),
            "in sync: the registry's 1 clients match the state's 1 servers\n"
        );
    }

    #[test]
    fn only_what_the_state_gives_is_compared_and_merged() {
        let ours = ServerFields {
            ip: Some("203.0.113.5".into()),
            id: None,
            server_type: Some("cx22".into()),
            location: Some("nbg1".into()),
        };
        let theirs = ServerFields {
            ip: Some("203.0.113.9".into()),
            id: Some("77".into()),
            server_type: None,
            location: Some("nbg1".into()),
        };
        let fields = differences(&ours, &theirs);
        assert_eq!(
            changes_text(&fields),
            "server.ip 203.0.113.5 → 203.0.113.9, server.id (none) → 77"
        );
        let merged = merged_server(
            &json!({"type": "cx22", "location": "nbg1", "ip": "203.0.113.5", "id": null}),
            &theirs,
        );
        assert_eq!(
            merged,
            json!({"type": "cx22", "location": "nbg1", "ip": "203.0.113.9", "id": "77"})
        );
        assert_eq!(normalized_ip(" 2001:DB8::1 ".trim()), "2001:db8::1");
    }
}
