//! `fleetreg rollout …`: a thin client of `/api/v1/rollouts`, the seed's
//! canary deployment workflow (client-registry.md): the canary wave first,
//! then production in waves; the server's rollout driver moves a running
//! rollout as clients report the new version and pass their URL health checks.

use crate::client::{path_segment, Client, ConnectArgs};
use crate::output::{detail, print, print_whole, table, write_stdout, Column, Format};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

const ALL_EXAMPLES: &str = "Examples:
  fleetreg rollout start nextcloud 31.0.3
  fleetreg rollout status
  fleetreg client version dev nextcloud=31.0.3     # the canary reports the new version
  fleetreg rollout promote 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e
  fleetreg rollout list --status running
  fleetreg rollout pause 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e
  fleetreg rollout resume 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e
  fleetreg rollout abort 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e

A rollout's first wave is every deployed canary client running the app; a wave
is done when its clients report the version and pass a URL health check after
it. Production waits for `promote` (unless started with --no-promotion-gate); a
client failing its health check halts the rollout. A rollout id may be
shortened to a unique prefix. A command the rollout's status does not allow
prints `error: ROLLOUT_CONFLICT: …` and exits with status 1.";

const START_EXAMPLES: &str = "Examples:
  fleetreg rollout start nextcloud 31.0.3
  fleetreg rollout start nextcloud 31.0.3 --wave-size 10 --location nbg1
  fleetreg rollout start authentik 2025.10.4 --client dev --client acme -o json
  fleetreg rollout start nextcloud 31.0.3 --no-promotion-gate

Plans the waves over the deployed clients with the app (those at --location,
or named by --client, only): every canary first, then production in waves of
--wave-size, by name. Refused (VALIDATION_ERROR) when no deployed canary runs
the app: the workflow is canary first.";

const STATUS_EXAMPLES: &str = "Examples:
  fleetreg rollout status                 # the newest rollout
  fleetreg rollout status 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e
  fleetreg rollout status 0190f5c2-7c3e -o json     # a unique prefix is enough

Shows the status, the current wave, why it halted, and per wave each client's
state (pending, updating, done, failed), reported version, health and reason.";

const LIST_EXAMPLES: &str = "Examples:
  fleetreg rollout list
  fleetreg rollout list --status awaiting_promotion
  fleetreg rollout list --status completed --limit 10 -o csv

Newest first.";

const COMMAND_EXAMPLES: &str = "Examples:
  fleetreg rollout promote 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e   # awaiting_promotion → production
  fleetreg rollout pause 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e     # running or awaiting_promotion → paused
  fleetreg rollout resume 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e    # paused → where it was
  fleetreg rollout abort 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e -o json   # not finished → aborted

An id may be shortened to a unique prefix. A command the rollout's status does
not allow prints `error: ROLLOUT_CONFLICT: …` and exits with status 1.";

/// The rollout commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum RolloutCommand {
    /// Start a rollout of APP at VERSION: canary wave first, then production waves.
    #[command(after_help = START_EXAMPLES)]
    Start(StartArgs),
    /// Show a rollout (default: the newest): status, current wave, each wave's clients.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// List rollouts, newest first.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Start the production waves after the canary wave is done.
    #[command(after_help = COMMAND_EXAMPLES)]
    Promote(IdArgs),
    /// Stop advancing (a running rollout or one awaiting promotion).
    #[command(after_help = COMMAND_EXAMPLES)]
    Pause(IdArgs),
    /// Continue a paused rollout.
    #[command(after_help = COMMAND_EXAMPLES)]
    Resume(IdArgs),
    /// Stop a rollout for good.
    #[command(after_help = COMMAND_EXAMPLES)]
    Abort(IdArgs),
}

/// How one rollout prints.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum RolloutFormat {
    /// Its status and one table per wave, for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
}

/// `rollout start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// The app to update (clients with it in their apps), e.g. nextcloud.
    app: String,
    /// The version to reach, e.g. 31.0.3.
    #[arg(value_name = "VERSION")]
    target_version: String,
    /// Production clients per wave, 1 to 1000 [server default: 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    wave_size: Option<u32>,
    /// Only clients at this server location, e.g. nbg1.
    #[arg(long)]
    location: Option<String>,
    /// Only this client (repeat for more).
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
    /// Go on to production as soon as the canary wave is done, without `promote`.
    #[arg(long)]
    no_promotion_gate: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = RolloutFormat::Table)]
    format: RolloutFormat,
}

/// `rollout status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The rollout's id (or a unique prefix of it) [default: the newest rollout].
    id: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = RolloutFormat::Table)]
    format: RolloutFormat,
}

/// The rollout statuses, as the API spells them.
const STATUSES: &[&str] = &[
    "running",
    "awaiting_promotion",
    "paused",
    "completed",
    "halted",
    "aborted",
];

/// A status in any case, `-` or `_`; the API's form is sent.
fn status_value() -> impl TypedValueParser<Value = String> {
    let values = STATUSES.iter().map(|s| match *s {
        "awaiting_promotion" => PossibleValue::new(*s).alias("awaiting-promotion"),
        s => PossibleValue::new(s),
    });
    PossibleValuesParser::new(values).map(|s| s.to_ascii_lowercase().replace('-', "_"))
}

/// `rollout list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// running, awaiting_promotion, paused, completed, halted or aborted, any case.
    #[arg(long, ignore_case = true, value_parser = status_value())]
    status: Option<String>,
    /// At most this many, 1 to 500 [server default: 50].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: Option<u32>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// promote, pause, resume, abort.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The rollout's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = RolloutFormat::Table)]
    format: RolloutFormat,
}

/// Runs a rollout command.
pub async fn run(command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Start(args) => start(args).await,
        RolloutCommand::Status(args) => status(args).await,
        RolloutCommand::List(args) => list(args).await,
        RolloutCommand::Promote(args) => act(args, "promote", "promoted").await,
        RolloutCommand::Pause(args) => act(args, "pause", "paused").await,
        RolloutCommand::Resume(args) => act(args, "resume", "resumed").await,
        RolloutCommand::Abort(args) => act(args, "abort", "aborted").await,
    }
}

/// The body of `POST /api/v1/rollouts`: only what was given.
fn start_body(args: &StartArgs) -> Value {
    let mut body = json!({"app": args.app, "version": args.target_version});
    if let Some(size) = args.wave_size {
        body["wave_size"] = json!(size);
    }
    if let Some(location) = &args.location {
        body["location"] = json!(location);
    }
    if !args.clients.is_empty() {
        body["clients"] = json!(args.clients);
    }
    if args.no_promotion_gate {
        body["require_promotion"] = json!(false);
    }
    body
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let rollout: Value = client
        .send(
            client
                .request(Method::POST, "/api/v1/rollouts")
                .json(&start_body(&args)),
        )
        .await?;
    print_rollout(args.format, &rollout)?;
    if args.format == RolloutFormat::Table {
        eprintln!(
            "rollout {} started; follow it with `fleetreg rollout status`",
            text(&rollout["id"])
        );
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let rollout = match &args.id {
        Some(id) => {
            let id = resolve_id(&client, id).await?;
            client
                .send(client.request(Method::GET, &rollout_path(&id, "")))
                .await?
        }
        None => {
            let newest: Value = client
                .send(
                    client
                        .request(Method::GET, "/api/v1/rollouts")
                        .query(&[("limit", "1")]),
                )
                .await?;
            match newest.as_array().and_then(|a| a.first()) {
                Some(rollout) => rollout.clone(),
                None => anyhow::bail!(
                    "there are no rollouts yet; start one with `fleetreg rollout start APP VERSION`"
                ),
            }
        }
    };
    print_rollout(args.format, &rollout)
}

/// The list's columns, over [`list_row`]s.
const LIST_COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        pointer: "/id",
    },
    Column {
        header: "APP",
        pointer: "/app",
    },
    Column {
        header: "VERSION",
        pointer: "/version",
    },
    Column {
        header: "STATUS",
        pointer: "/status",
    },
    Column {
        header: "WAVE",
        pointer: "/wave",
    },
    Column {
        header: "DONE",
        pointer: "/done",
    },
    Column {
        header: "CREATED",
        pointer: "/created_at",
    },
];

/// One row of the list: the wave as `N/M` (1-based) and clients done as `D/T`.
fn list_row(rollout: &Value) -> Value {
    let waves = rollout["waves"].as_array().map_or(&[][..], Vec::as_slice);
    let clients = waves
        .iter()
        .flat_map(|w| w["clients"].as_array().map_or(&[][..], Vec::as_slice));
    let (total, done) = clients.fold((0, 0), |(t, d), c| {
        (t + 1, d + usize::from(c["state"] == "done"))
    });
    json!({
        "id": rollout["id"],
        "app": rollout["app"],
        "version": rollout["version"],
        "status": rollout["status"],
        "wave": format!("{}/{}", rollout["current_wave"].as_u64().unwrap_or(0) + 1, waves.len()),
        "done": format!("{done}/{total}"),
        "created_at": rollout["created_at"],
    })
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(status) = &args.status {
        query.push(("status", status.clone()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let rollouts: Value = client
        .send(
            client
                .request(Method::GET, "/api/v1/rollouts")
                .query(&query),
        )
        .await?;
    let rows: Vec<Value> = rollouts
        .as_array()
        .map(|a| a.iter().map(list_row).collect())
        .unwrap_or_default();
    if args.format == Format::Table && rows.is_empty() {
        eprintln!("no rollouts found");
        return Ok(());
    }
    print(args.format, &rollouts, &rows, LIST_COLUMNS)
}

async fn act(args: IdArgs, operation: &str, done: &str) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let id = resolve_id(&client, &args.id).await?;
    let rollout: Value = client
        .send(
            client
                .request(Method::POST, &rollout_path(&id, &format!("/{operation}")))
                .json(&json!({})),
        )
        .await?;
    match args.format {
        RolloutFormat::Table => write_stdout(&format!(
            "rollout {id} {done}: status {}, {}\n",
            text(&rollout["status"]),
            wave_position(&rollout)
        )),
        format => print_rollout(format, &rollout),
    }
}

/// `/api/v1/rollouts/{id}` and below.
fn rollout_path(id: &str, rest: &str) -> String {
    format!("/api/v1/rollouts/{}{rest}", path_segment(id))
}

/// `text` when it is a rollout id, else the one id among the newest 500
/// rollouts that starts with it (any case); an unknown full id is left to
/// the server (`ROLLOUT_NOT_FOUND`).
async fn resolve_id(client: &Client, text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if uuid::Uuid::parse_str(text).is_ok() {
        return Ok(text.to_owned());
    }
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        anyhow::bail!("{text:?} is not a rollout id (e.g. 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e, or a prefix of one)");
    }
    let rollouts: Value = client
        .send(
            client
                .request(Method::GET, "/api/v1/rollouts")
                .query(&[("limit", "500")]),
        )
        .await?;
    let ids: Vec<&str> = rollouts
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    match matching_ids(&ids, text).as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => {
            anyhow::bail!("no rollout id starts with {text} (`fleetreg rollout list` shows them)")
        }
        many => anyhow::bail!(
            "{text} is the start of {} rollout ids ({}); give more of it",
            many.len(),
            many.join(", ")
        ),
    }
}

/// The ids starting with `prefix`, case-insensitively.
fn matching_ids<'a>(ids: &[&'a str], prefix: &str) -> Vec<&'a str> {
    let prefix = prefix.to_ascii_lowercase();
    ids.iter()
        .copied()
        .filter(|id| id.to_ascii_lowercase().starts_with(&prefix))
        .collect()
}

fn print_rollout(format: RolloutFormat, rollout: &Value) -> anyhow::Result<()> {
    match format {
        RolloutFormat::Table => write_stdout(&status_text(rollout)),
        RolloutFormat::Json => print_whole(Format::Json, rollout),
        RolloutFormat::Yaml => print_whole(Format::Yaml, rollout),
    }
}

/// A JSON string bare, anything else as JSON, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `wave N of M (canary|production)`, 1-based.
fn wave_position(rollout: &Value) -> String {
    let waves = rollout["waves"].as_array().map_or(&[][..], Vec::as_slice);
    let current = rollout["current_wave"].as_u64().unwrap_or(0) as usize;
    let kind = match waves.get(current) {
        Some(wave) if wave["canary"] == true => " (canary)",
        Some(_) => " (production)",
        None => "",
    };
    format!("wave {} of {}{kind}", current + 1, waves.len())
}

const WAVE_COLUMNS: &[Column] = &[
    Column {
        header: "CLIENT",
        pointer: "/name",
    },
    Column {
        header: "STATE",
        pointer: "/state",
    },
    Column {
        header: "VERSION",
        pointer: "/reported_version",
    },
    Column {
        header: "HEALTH",
        pointer: "/health",
    },
    Column {
        header: "REASON",
        pointer: "/reason",
    },
];

const SUMMARY_FIELDS: &[Column] = &[
    Column {
        header: "ROLLOUT",
        pointer: "/id",
    },
    Column {
        header: "APP",
        pointer: "/app",
    },
    Column {
        header: "STATUS",
        pointer: "/status",
    },
    Column {
        header: "CURRENT WAVE",
        pointer: "/position",
    },
    Column {
        header: "HALTED",
        pointer: "/halted_reason",
    },
    Column {
        header: "PROMOTION",
        pointer: "/promotion",
    },
    Column {
        header: "STARTED",
        pointer: "/created_at",
    },
    Column {
        header: "UPDATED",
        pointer: "/updated_at",
    },
];

/// The people's view of one rollout: its fields, one table per wave
/// (CLIENT STATE VERSION HEALTH REASON), and what to do next.
pub fn status_text(rollout: &Value) -> String {
    let id = text(&rollout["id"]);
    let status = rollout["status"].as_str().unwrap_or("?");
    let summary = json!({
        "id": id,
        "app": format!("{} → {}", text(&rollout["app"]), text(&rollout["version"])),
        "status": status,
        "position": wave_position(rollout),
        "halted_reason": rollout["halted_reason"],
        "promotion": if rollout["require_promotion"] == false {
            "not required"
        } else {
            "required after the canary wave"
        },
        "created_at": rollout["created_at"],
        "updated_at": rollout["updated_at"],
    });
    let mut out = detail(&summary, SUMMARY_FIELDS);
    let current = rollout["current_wave"].as_u64().unwrap_or(0) as usize;
    let waves = rollout["waves"].as_array().map_or(&[][..], Vec::as_slice);
    for (index, wave) in waves.iter().enumerate() {
        let clients = wave["clients"].as_array().map_or(&[][..], Vec::as_slice);
        let done = clients.iter().filter(|c| c["state"] == "done").count();
        let kind = if wave["canary"] == true {
            "canary"
        } else {
            "production"
        };
        let marker = if index == current { ", current" } else { "" };
        out.push_str(&format!(
            "\nWAVE {} ({kind}{marker}): {done} of {} done\n",
            index + 1,
            clients.len()
        ));
        out.push_str(&table(clients, WAVE_COLUMNS));
    }
    let app = text(&rollout["app"]);
    let version = text(&rollout["version"]);
    let next = match status {
        "awaiting_promotion" => Some(format!(
            "the canary wave is done: `fleetreg rollout promote {id}` starts production"
        )),
        "paused" => Some(format!("`fleetreg rollout resume {id}` continues")),
        "running" => Some(format!(
            "waiting for the current wave to report {app} {version} (`fleetreg client version \
             NAME {app}={version}`) and pass a health check after it"
        )),
        _ => None,
    };
    if let Some(next) = next {
        out.push_str(&format!("\nNEXT: {next}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Test {
        #[command(subcommand)]
        command: RolloutCommand,
    }

    fn parse(args: &[&str]) -> Result<RolloutCommand, clap::Error> {
        Test::try_parse_from(["test"].iter().chain(args)).map(|t| t.command)
    }

    #[test]
    fn start_sends_only_what_was_given() {
        match parse(&["start", "nextcloud", "31.0.3"]) {
            Ok(RolloutCommand::Start(args)) => assert_eq!(
                start_body(&args),
                json!({"app": "nextcloud", "version": "31.0.3"})
            ),
            other => panic!("{:?}", other.err()),
        }
        match parse(&[
            "start",
            "nextcloud",
            "31.0.3",
            "--wave-size",
            "2",
            "--location",
            "nbg1",
            "--client",
            "dev",
            "--client",
            "acme",
            "--no-promotion-gate",
        ]) {
            Ok(RolloutCommand::Start(args)) => assert_eq!(
                start_body(&args),
                json!({"app": "nextcloud", "version": "31.0.3", "wave_size": 2,
                       "location": "nbg1", "clients": ["dev", "acme"], "require_promotion": false})
            ),
            other => panic!("{:?}", other.err()),
        }
        for bad in [
            &["start", "nextcloud"][..],
            &["start", "nextcloud", "1", "--wave-size", "0"],
            &["start", "nextcloud", "1", "--wave-size", "1001"],
            &["list", "--status", "done"],
            &["promote"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_status_takes_any_case_and_dashes() {
        match parse(&["list", "--status", "Awaiting-Promotion"]) {
            Ok(RolloutCommand::List(args)) => {
                assert_eq!(args.status.as_deref(), Some("awaiting_promotion"))
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn ids_match_by_prefix() {
        let ids = ["0190aaaa-0000", "0190abbb-0000", "0191cccc-0000"];
        assert_eq!(
            matching_ids(&ids, "0190A"),
            ["0190aaaa-0000", "0190abbb-0000"]
        );
        assert_eq!(matching_ids(&ids, "0191"), ["0191cccc-0000"]);
        assert!(matching_ids(&ids, "02").is_empty());
    }

    fn rollout(status: &str) -> Value {
        json!({
            "id": "0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e", "app": "nextcloud", "version": "31.0.3",
            "status": status, "current_wave": 0, "require_promotion": true,
            "halted_reason": null,
            "created_at": "2026-03-01T00:00:00Z", "updated_at": "2026-03-01T00:01:00Z",
            "waves": [
                {"canary": true, "clients": [
                    {"name": "dev", "state": "done", "reported_version": "31.0.3",
                     "health": "HEALTHY", "reason": null}]},
                {"canary": false, "clients": [
                    {"name": "acme", "state": "pending", "reported_version": "30.0.17",
                     "health": null, "reason": null}]}
            ]
        })
    }

    #[test]
    fn status_shows_each_wave_and_the_next_step() {
        let text = status_text(&rollout("awaiting_promotion"));
        assert!(
            text.starts_with("ROLLOUT:       0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e\n"),
            "{text}"
        );
        for line in [
            "APP:           nextcloud → 31.0.3\n",
            "STATUS:        awaiting_promotion\n",
            "CURRENT WAVE:  wave 1 of 2 (canary)\n",
            "HALTED:        -\n",
            "\nWAVE 1 (canary, current): 1 of 1 done\n\
             CLIENT  STATE  VERSION  HEALTH   REASON\n\
             dev     done   31.0.3   HEALTHY  -\n",
            "\nWAVE 2 (production): 0 of 1 done\n\
             CLIENT  STATE    VERSION  HEALTH  REASON\n\
             acme    pending  30.0.17  -       -\n",
            "NEXT: the canary wave is done: `fleetreg rollout promote 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e`",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        let mut halted = rollout("halted");
        halted["halted_reason"] = json!("canary dev failed: health check Down");
        let text = status_text(&halted);
        assert!(
            text.contains("HALTED:        canary dev failed: health check Down\n"),
            "{text}"
        );
        assert!(!text.contains("NEXT:"), "{text}");
        assert_eq!(
            list_row(&rollout("running"))["done"],
            "1/2",
            "clients done of all"
        );
        assert_eq!(list_row(&rollout("running"))["wave"], "1/2");
    }
}
