//! `fleetreg events …`: read the change log or follow the live stream.

use crate::client::{Client, ConnectArgs};
use crate::output::{print, Column, Format};
use clap::{Args, Subcommand};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

/// The event commands.
#[derive(Subcommand, Debug)]
#[command(after_help = "Examples:\n  fleetreg events list --after 0 --limit 50\n  fleetreg events watch\n  fleetreg events watch --after 120")]
pub enum EventsCommand {
    /// Print events after a revision.
    List(ListArgs),
    /// Follow the live stream, one JSON event per line, until interrupted.
    Watch(WatchArgs),
}

/// `events list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Events with a revision above this.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `events watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Resume after this revision (default: only new events).
    #[arg(long)]
    after: Option<i64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

const COLUMNS: &[Column] = &[
    Column { header: "REVISION", pointer: "/revision" },
    Column { header: "TYPE", pointer: "/type" },
    Column { header: "OCCURRED", pointer: "/occurred_at" },
    Column { header: "RESOURCE_ID", pointer: "/resource_id" },
];

/// Runs an events command.
pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List(args) => {
            let client = Client::from_args(&args.connect)?;
            let query = [("after", args.after.to_string()), ("limit", args.limit.to_string())];
            let page: Value = client.send(client.request(Method::GET, "/api/v1/events").query(&query)).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            print(args.format, &page, &items, COLUMNS)
        }
        EventsCommand::Watch(args) => {
            let client = Client::from_args(&args.connect)?;
            let mut request = client.request(Method::GET, "/api/v1/events/stream");
            if let Some(after) = args.after {
                request = request.header("Last-Event-ID", after.to_string());
            }
            let response = client.send_raw(request).await?;
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(chunk) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk?));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let event = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default();
                    let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                    match (event, data) {
                        ("RESYNC", Some(data)) => anyhow::bail!("the server asks to resync (events expired): {data}"),
                        (_, Some(data)) => println!("{data}"),
                        _ => {}
                    }
                }
            }
            Ok(())
        }
    }
}
