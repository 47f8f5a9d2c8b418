//! `fleetreg token create|list|revoke`: manage API tokens (admin only). A new
//! token is printed once; the server keeps only its hash.

use crate::client::{Client, ConnectArgs};
use crate::output::{print, print_one, Column, Format};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

const EXAMPLES: &str = "Examples:
  fleetreg token create ci-bot --role operator --expires-in 30d
  fleetreg token list
  fleetreg token revoke 0192f0c4-…

The admin token `serve` created is in ./fleetreg-admin.token (read automatically
on this machine), or set FLEETREG_TOKEN.";

/// The token commands.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum TokenCommand {
    /// Create a token; it is shown once.
    Create(CreateArgs),
    /// List tokens (never their values).
    List(Common),
    /// Revoke a token by id; it stops working at once.
    Revoke(RevokeArgs),
}

/// Output and connection flags.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A role, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// Everything, including tokens.
    Admin,
    /// Read and write the inventory, upload credentials.
    Operator,
    /// Read the inventory.
    Viewer,
    /// Read the audit log.
    Auditor,
}

/// `token create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A unique name (the audit log's actor).
    name: String,
    /// Its role.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// Lifetime: seconds, or a number with s, m, h or d (e.g. 30d); forever when absent.
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<u64>,
    #[command(flatten)]
    common: Common,
}

/// `token revoke`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The token's id (from `token list`).
    id: String,
    #[command(flatten)]
    common: Common,
}

fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("expected e.g. 3600, 90m, 12h or 30d; got {text:?}"))?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        other => return Err(format!("unknown unit {other:?}; use s, m, h or d")),
    };
    match value.checked_mul(factor) {
        Some(0) | None => Err(format!("{text:?} is not a positive lifetime")),
        Some(seconds) => Ok(seconds),
    }
}

const COLUMNS: &[Column] = &[
    Column {
        header: "ID",
        pointer: "/id",
    },
    Column {
        header: "NAME",
        pointer: "/name",
    },
    Column {
        header: "ROLE",
        pointer: "/role",
    },
    Column {
        header: "PREFIX",
        pointer: "/prefix",
    },
    Column {
        header: "CREATED",
        pointer: "/created_at",
    },
    Column {
        header: "EXPIRES",
        pointer: "/expires_at",
    },
    Column {
        header: "REVOKED",
        pointer: "/revoked_at",
    },
];

const CREATED: &[Column] = &[
    Column {
        header: "Token (shown once)",
        pointer: "/token",
    },
    Column {
        header: "ID",
        pointer: "/id",
    },
    Column {
        header: "Name",
        pointer: "/name",
    },
    Column {
        header: "Role",
        pointer: "/role",
    },
    Column {
        header: "Expires at",
        pointer: "/expires_at",
    },
];

/// Runs a token command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let role = format!("{:?}", args.role).to_lowercase();
            let mut body = json!({ "name": args.name, "role": role });
            if let Some(seconds) = args.expires_in {
                body["expires_in_seconds"] = json!(seconds);
            }
            let created: Value = client
                .send(client.request(Method::POST, "/api/v1/tokens").json(&body))
                .await?;
            print_one(args.common.format, &created, CREATED)
        }
        TokenCommand::List(common) => {
            let client = Client::from_args(&common.connect)?;
            let tokens: Value = client
                .send(client.request(Method::GET, "/api/v1/tokens"))
                .await?;
            let rows = tokens.as_array().cloned().unwrap_or_default();
            print(common.format, &tokens, &rows, COLUMNS)
        }
        TokenCommand::Revoke(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = format!("/api/v1/tokens/{}", crate::client::path_segment(&args.id));
            client
                .send_raw(client.request(Method::DELETE, &path))
                .await?;
            eprintln!("revoked token {}", args.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("x").is_err());
    }
}
