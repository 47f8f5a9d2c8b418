//! `fleetreg credentials …`: a thin client of `/api/v1/clusters/{id}/credentials`
//! and `/api/v1/credentials/expiring`.
//!
//! Secrets are read from files (or stdin with `-`), never from command-line
//! values, which would leak into shell history and `ps`; nothing secret is
//! ever printed (the server never returns it).

use crate::client::{Client, ConnectArgs, ServerError};
use crate::cluster::{fetch, id_of};
use crate::output::{print, print_whole, table, write_stdout, Column, Format};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

const STORE_EXAMPLES: &str = "Examples:
  fleetreg credentials store prod-east-1 --kubeconfig ./prod-east-1.kubeconfig
  fleetreg credentials store prod-east-1 --token-file ./sa.token --ca-cert ./api-ca.pem \\
      --prometheus-token-file ./prom.token --expires-at 2026-01-24T10:00:00Z
  vault read -field=kubeconfig secret/prod-east-1 | fleetreg credentials store prod-east-1 --kubeconfig -

Secrets are read from files, or from stdin when FILE is `-` (one of them at most);
never pass a secret as a command-line value. The server validates the credentials
against the cluster first and stores nothing when a component refuses them.";

const ROTATE_EXAMPLES: &str = "Examples:
  fleetreg credentials rotate prod-east-1 --kubeconfig ./prod-east-1-new.kubeconfig
  fleetreg credentials rotate prod-east-1 --token-file - --ca-cert ./api-ca.pem < new.token

The new credentials are validated before they replace the stored ones; when they
fail, the old ones stay in force.";

const EXPIRING_EXAMPLES: &str = "Examples:
  fleetreg credentials expiring                  # within credentials.rotation_warning_days (7)
  fleetreg credentials expiring --within-days 30 -o json
  fleetreg credentials expiring --within-days 90 -o csv > expiring.csv";

const ALL_EXAMPLES: &str = "Examples:
  fleetreg credentials store prod-east-1 --kubeconfig ./prod-east-1.kubeconfig
  fleetreg credentials rotate prod-east-1 --token-file ./new.token --ca-cert ./api-ca.pem
  fleetreg credentials validate prod-east-1
  fleetreg credentials expiring --within-days 30
  fleetreg credentials delete prod-east-1

A cluster's credential expiry also shows in `fleetreg cluster status` and
`fleetreg fleet health`.";

/// The credentials commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum CredentialsCommand {
    /// Upload a cluster's credentials (validated against it first; nothing is
    /// stored when a component refuses them).
    #[command(after_help = STORE_EXAMPLES)]
    Store(Box<PutArgs>),
    /// Replace a cluster's stored credentials (the new ones are validated first;
    /// the old stay in force when they fail).
    #[command(after_help = ROTATE_EXAMPLES)]
    Rotate(Box<PutArgs>),
    /// Validate a cluster's stored credentials against it now (`--rebind`:
    /// also after its URLs moved to another origin, binding them there).
    Validate(ValidateArgs),
    /// Delete a cluster's stored credentials.
    Delete(TargetArgs),
    /// List clusters whose credentials expire soon or have expired.
    #[command(after_help = EXPIRING_EXAMPLES)]
    Expiring(ExpiringArgs),
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum CredentialsFormat {
    /// Lines and a small table for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
}

/// Output and connection flags.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CredentialsFormat::Table, global = true)]
    format: CredentialsFormat,
}

/// `credentials store` and `credentials rotate`: where each secret is read from.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("credential").required(true).args(["kubeconfig", "token_file"])))]
pub struct PutArgs {
    /// Cluster id or name.
    cluster: String,
    /// Kubeconfig file (inline data only: no exec, auth-provider or file paths);
    /// `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// File holding the API server's bearer token; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA bundle of the API server (with --token-file; needed for https).
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the API server's certificate (with --token-file; the
    /// server logs and audits it).
    #[arg(long, conflicts_with_all = ["kubeconfig", "ca_cert"])]
    insecure_skip_tls_verify: bool,
    /// File holding the bearer token for the cluster's Prometheus.
    #[arg(long, value_name = "FILE")]
    prometheus_token_file: Option<PathBuf>,
    /// File holding the bearer token for Tempo.
    #[arg(long, value_name = "FILE")]
    tempo_token_file: Option<PathBuf>,
    /// File holding the bearer token for Loki.
    #[arg(long, value_name = "FILE")]
    loki_token_file: Option<PathBuf>,
    /// When the credentials expire (RFC 3339), if the credential does not say
    /// itself (a certificate's NotAfter or a JWT's `exp` take precedence).
    #[arg(long, value_name = "RFC3339")]
    expires_at: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one cluster.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Cluster id or name.
    cluster: String,
    #[command(flatten)]
    common: Common,
}

/// `credentials validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Present the stored credentials to the cluster's current origins even
    /// though its URLs moved since they were validated (status
    /// `ORIGIN_CHANGED`), and bind them there when they pass (audited; admin
    /// token only: this sends the stored secrets to the new origins).
    #[arg(long)]
    rebind: bool,
}

/// `credentials expiring`.
#[derive(Args, Debug)]
pub struct ExpiringArgs {
    /// Window in days from now [default: the server's credentials.rotation_warning_days].
    #[arg(long, value_name = "N")]
    within_days: Option<u64>,
    /// Most clusters to list (1–1000) [default: 100].
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (csv: one row per cluster, the table's columns).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The server refused the credentials: its message plus what each component
/// said, so the user sees which one failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}{lines}")]
struct Rejected {
    code: String,
    message: String,
    /// Indented lines, each starting with a newline.
    lines: String,
}

/// Runs a credentials command.
pub async fn run(command: CredentialsCommand) -> anyhow::Result<()> {
    match command {
        CredentialsCommand::Store(args) => put(*args, "").await,
        CredentialsCommand::Rotate(args) => put(*args, "/rotate").await,
        CredentialsCommand::Validate(ValidateArgs {
            target: args,
            rebind,
        }) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            let action = if rebind { "rebind" } else { "validate" };
            let path = format!("/api/v1/clusters/{}/credentials/{action}", id_of(&cluster)?);
            let request = client.request(Method::POST, &path).json(&json!({}));
            let status: Value = client.send(request).await.map_err(rejected)?;
            print_status(args.common.format, name_of(&cluster), &status)
        }
        CredentialsCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let cluster = fetch(&client, &args.cluster).await?;
            let id = id_of(&cluster)?;
            let path = format!("/api/v1/clusters/{id}/credentials");
            client
                .send_raw(client.request(Method::DELETE, &path))
                .await?;
            let name = name_of(&cluster);
            match args.common.format {
                CredentialsFormat::Table => {
                    write_stdout(&format!("credentials of cluster {name} deleted ({id})\n"))
                }
                format => print_whole(
                    whole(format),
                    &json!({ "cluster_id": id, "cluster_name": name, "deleted": true }),
                ),
            }
        }
        CredentialsCommand::Expiring(args) => expiring(args).await,
    }
}

/// `store` (`suffix` empty) or `rotate` (`/rotate`).
async fn put(args: PutArgs, suffix: &str) -> anyhow::Result<()> {
    let client = Client::from_args(&args.common.connect)?;
    let cluster = fetch(&client, &args.cluster).await?;
    let path = format!("/api/v1/clusters/{}/credentials{suffix}", id_of(&cluster)?);
    let body = args.body()?;
    let request = client.request(Method::POST, &path).json(&body);
    drop(body);
    let status: Value = client.send(request).await.map_err(rejected)?;
    print_status(args.common.format, name_of(&cluster), &status)
}

impl PutArgs {
    /// The upload body, every secret read from its file (stdin at most once).
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut stdin_taken = false;
        let mut body = Map::new();
        let mut read = |flag: &str, path: &Path, trim: bool| -> anyhow::Result<Value> {
            let text = read_source(flag, path, &mut stdin_taken)?;
            let text = if trim { text.trim().to_owned() } else { text };
            if text.trim().is_empty() {
                anyhow::bail!("{flag} {}: is empty", shown(path));
            }
            Ok(Value::String(text))
        };
        if let Some(path) = &self.kubeconfig {
            body.insert("auth_type".into(), json!("KUBECONFIG"));
            body.insert("kubeconfig".into(), read("--kubeconfig", path, false)?);
        }
        if let Some(path) = &self.token_file {
            body.insert("auth_type".into(), json!("TOKEN"));
            body.insert("token".into(), read("--token-file", path, true)?);
        }
        if let Some(path) = &self.ca_cert {
            body.insert("ca_cert".into(), read("--ca-cert", path, false)?);
        }
        if self.insecure_skip_tls_verify {
            body.insert("insecure_skip_tls_verify".into(), json!(true));
        }
        for (field, flag, path) in [
            (
                "prometheus_token",
                "--prometheus-token-file",
                &self.prometheus_token_file,
            ),
            ("tempo_token", "--tempo-token-file", &self.tempo_token_file),
            ("loki_token", "--loki-token-file", &self.loki_token_file),
        ] {
            if let Some(path) = path {
                body.insert(field.into(), read(flag, path, true)?);
            }
        }
        if let Some(at) = &self.expires_at {
            body.insert("expires_at".into(), json!(at.trim()));
        }
        Ok(body)
    }
}

/// A path as the user gave it (`-` is stdin).
fn shown(path: &Path) -> String {
    if is_stdin(path) {
        "(stdin)".into()
    } else {
        path.display().to_string()
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The text of `path`, or of stdin for `-` (only once per command). Errors
/// name the flag and the path, never the content.
fn read_source(flag: &str, path: &Path, stdin_taken: &mut bool) -> anyhow::Result<String> {
    if is_stdin(path) {
        if std::mem::replace(stdin_taken, true) {
            anyhow::bail!("{flag} -: stdin was already read for another flag; give a file instead");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("{flag} -: cannot read stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot read: {e}", path.display()))
}

/// `CREDENTIALS_INVALID` with what each component said; other errors unchanged.
fn rejected(error: anyhow::Error) -> anyhow::Error {
    match error.downcast::<ServerError>() {
        Ok(server) if server.code == "CREDENTIALS_INVALID" => Rejected {
            lines: rejection_lines(&server.details),
            code: server.code,
            message: server.message,
        }
        .into(),
        Ok(server) => server.into(),
        Err(error) => error,
    }
}

/// `details` of `CREDENTIALS_INVALID` as indented lines: per component its
/// outcome and cause (`{validation, causes}`), or the kubeconfig field refused
/// (`{field}`).
fn rejection_lines(details: &Value) -> String {
    let mut out = String::new();
    if let Some(validation) = details["validation"].as_object() {
        let width = validation.keys().map(String::len).max().unwrap_or(0);
        for (component, outcome) in validation {
            if outcome.is_null() {
                continue;
            }
            let outcome = outcome.as_str().unwrap_or_default();
            out.push_str(&format!("\n  {component:<width$}  {outcome}"));
            if let Some(cause) = details["causes"][component].as_str() {
                out.push_str(&format!(": {cause}"));
            }
        }
    }
    if let Some(field) = details["field"].as_str() {
        out.push_str(&format!("\n  refused field: {field}"));
    }
    out
}

fn name_of(cluster: &Value) -> &str {
    cluster["name"].as_str().unwrap_or_default()
}

fn whole(format: CredentialsFormat) -> Format {
    match format {
        CredentialsFormat::Yaml => Format::Yaml,
        _ => Format::Json,
    }
}

const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer }
}

/// The answer to store, rotate or validate: JSON/YAML as the server gave it,
/// or a line, the expiry and each component's result.
fn print_status(format: CredentialsFormat, cluster: &str, status: &Value) -> anyhow::Result<()> {
    match format {
        CredentialsFormat::Table => write_stdout(&status_text(cluster, status)),
        format => print_whole(whole(format), status),
    }
}

fn status_text(cluster: &str, status: &Value) -> String {
    let verb = match status["status"].as_str() {
        Some("stored") => "stored for",
        Some("rotated") => "rotated for",
        Some("valid") => "valid for",
        _ => "answered for",
    };
    let mut out = format!(
        "credentials {verb} cluster {cluster} (version {})\n",
        status["version"]
    );
    let expires = status["expires_at"].as_str().unwrap_or("unknown");
    out.push_str(&format!("expires at: {expires}\n"));
    let rows: Vec<Value> = status["validation"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| json!({ "component": k, "result": v }))
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(
        &rows,
        &[col("COMPONENT", "/component"), col("RESULT", "/result")],
    ));
    out
}

const EXPIRING_COLUMNS: &[Column] = &[
    col("CLUSTER", "/cluster_name"),
    col("AUTH TYPE", "/auth_type"),
    col("VERSION", "/version"),
    col("EXPIRES AT", "/expires_at"),
    col("STATUS", "/status"),
    col("ROTATION", "/rotation_text"),
];

/// The ROTATION cell: the mode, and after failures how many and when the next
/// automatic attempt is due.
fn rotation_text(rotation: &Value) -> String {
    let Some(mode) = rotation["mode"].as_str() else {
        return String::new();
    };
    match rotation["consecutive_failures"].as_u64() {
        Some(failures) if failures > 0 => {
            let next = rotation["next_attempt_at"].as_str().unwrap_or("-");
            format!("{mode} ({failures} failed, next {next})")
        }
        _ => mode.to_owned(),
    }
}

async fn expiring(args: ExpiringArgs) -> anyhow::Result<()> {
    let client = Client::from_args(&args.connect)?;
    let query: Vec<(&str, String)> = [
        ("within_days", args.within_days.map(|n| n.to_string())),
        ("limit", args.limit.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let list: Value = client
        .send(
            client
                .request(Method::GET, "/api/v1/credentials/expiring")
                .query(&query),
        )
        .await?;
    match args.format {
        Format::Table => {
            let text = expiring_text(&list);
            if !text.is_empty() {
                write_stdout(&text)?;
            }
            eprintln!(
                "within {} days: {} expiring, {} expired",
                list["within_days"], list["expiring_count"], list["expired_count"]
            );
            Ok(())
        }
        format => print(format, &list, &expiring_rows(&list), EXPIRING_COLUMNS),
    }
}

/// The expiring list's items with the STATUS (`EXPIRED` or `EXPIRING`) and
/// ROTATION cells filled in.
fn expiring_rows(list: &Value) -> Vec<Value> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let mut row = item.clone();
                    let status = if item["expired"].as_bool() == Some(true) {
                        "EXPIRED"
                    } else {
                        "EXPIRING"
                    };
                    row["status"] = json!(status);
                    row["rotation_text"] = json!(rotation_text(&item["rotation"]));
                    row
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The expiring list as a table, `EXPIRED` or `EXPIRING` per row; empty
/// without rows.
fn expiring_text(list: &Value) -> String {
    let rows = expiring_rows(list);
    if rows.is_empty() {
        return String::new();
    }
    let mut text = table(&rows, EXPIRING_COLUMNS);
    for row in &rows {
        if let Some(error) = row["rotation"]["last_error"].as_str() {
            let cluster = row["cluster_name"].as_str().unwrap_or_default();
            text.push_str(&format!(
                "{cluster}: last rotation attempt failed: {error}\n"
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Test {
        #[command(subcommand)]
        command: CredentialsCommand,
    }

    fn parse(args: &[&str]) -> Result<CredentialsCommand, clap::Error> {
        Test::try_parse_from(["test"].iter().chain(args)).map(|t| t.command)
    }

    #[test]
    fn a_credential_source_is_required_and_exclusive() {
        assert!(parse(&["store", "c1"]).is_err());
        assert!(parse(&["store", "c1", "--kubeconfig", "k", "--token-file", "t"]).is_err());
        assert!(parse(&["store", "c1", "--kubeconfig", "k", "--ca-cert", "ca"]).is_err());
        assert!(parse(&[
            "store",
            "c1",
            "--token-file",
            "t",
            "--ca-cert",
            "ca",
            "--insecure-skip-tls-verify"
        ])
        .is_err());
        assert!(parse(&["rotate", "c1", "--token-file", "t", "--ca-cert", "ca"]).is_ok());
        // No flag takes a cluster secret inline.
        assert!(parse(&[
            "store",
            "c1",
            "--token-file",
            "t",
            "--prometheus-token",
            "x"
        ])
        .is_err());
    }

    #[test]
    fn bodies_read_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-marker\n").unwrap();
        let prom = dir.path().join("prom");
        std::fs::write(&prom, "prom-marker").unwrap();
        let args = [
            "store",
            "c1",
            "--token-file",
            token.to_str().unwrap(),
            "--insecure-skip-tls-verify",
            "--prometheus-token-file",
            prom.to_str().unwrap(),
            "--expires-at",
            "2030-01-01T00:00:00Z",
        ];
        let Ok(CredentialsCommand::Store(put)) = parse(&args) else {
            panic!("not a store");
        };
        let body = put.body().unwrap();
        assert_eq!(
            Value::Object(body),
            json!({ "auth_type": "TOKEN", "token": "tok-marker",
                    "insecure_skip_tls_verify": true, "prometheus_token": "prom-marker",
                    "expires_at": "2030-01-01T00:00:00Z" })
        );
        // The Debug of the arguments holds paths, never the secrets.
        assert!(!format!("{put:?}").contains("tok-marker"));
        // Empty and missing files are refused, naming the flag, not the content.
        std::fs::write(&token, "\n").unwrap();
        let error = put.body().unwrap_err().to_string();
        assert!(
            error.contains("--token-file") && error.contains("empty"),
            "{error}"
        );
    }

    #[test]
    fn rejections_show_each_component() {
        let lines = rejection_lines(&json!({
            "validation": { "api_server": "failed", "prometheus": "success", "tempo": null },
            "causes": { "api_server": "401 Unauthorized" }
        }));
        assert_eq!(
            lines,
            "\n  api_server  failed: 401 Unauthorized\n  prometheus  success"
        );
        assert_eq!(
            rejection_lines(&json!({ "field": "users[0].user.exec" })),
            "\n  refused field: users[0].user.exec"
        );
    }

    #[test]
    fn expiring_rows_say_expired_or_expiring() {
        let text = expiring_text(&json!({ "within_days": 7, "items": [
            { "cluster_name": "a", "auth_type": "TOKEN", "version": 1,
              "expires_at": "2020-01-01T00:00:00Z", "expired": true },
            { "cluster_name": "bb", "auth_type": "KUBECONFIG", "version": 2,
              "expires_at": "2030-01-01T00:00:00Z", "expired": false }
        ]}));
        assert!(text.starts_with("CLUSTER  AUTH TYPE"), "{text}");
        assert!(
            text.contains("a        TOKEN       1        2020-01-01T00:00:00Z  EXPIRED"),
            "{text}"
        );
        assert!(text.contains("EXPIRING"), "{text}");
    }

    #[test]
    fn expiring_takes_csv_like_the_other_lists() {
        match parse(&["expiring", "--within-days", "30", "-o", "csv"]) {
            Ok(CredentialsCommand::Expiring(args)) => assert_eq!(args.format, Format::Csv),
            other => panic!("expiring -o csv: {other:?}"),
        }
        let rows = expiring_rows(&json!({ "items": [
            { "cluster_name": "a", "auth_type": "TOKEN", "version": 1,
              "expires_at": "2020-01-01T00:00:00Z", "expired": true,
              "rotation": { "mode": "manual", "consecutive_failures": 0 } }
        ]}));
        assert_eq!(rows[0]["status"], "EXPIRED");
        assert_eq!(rows[0]["rotation_text"], "manual");
    }

    #[test]
    fn expiring_rows_show_rotation_and_its_failures() {
        let text = expiring_text(&json!({ "within_days": 7, "items": [
            { "cluster_name": "sa", "auth_type": "TOKEN", "version": 3,
              "expires_at": "2030-01-01T00:00:00Z", "expired": false,
              "rotation": { "mode": "auto", "consecutive_failures": 2,
                            "next_attempt_at": "2030-01-01T00:02:00Z",
                            "last_error": "TokenRequest for ns/sa failed: HTTP 500" } },
            { "cluster_name": "kc", "auth_type": "KUBECONFIG", "version": 1,
              "expires_at": "2030-01-01T00:00:00Z", "expired": false,
              "rotation": { "mode": "unsupported", "consecutive_failures": 0 } }
        ]}));
        assert!(text.lines().next().unwrap().contains("ROTATION"), "{text}");
        assert!(
            text.contains("auto (2 failed, next 2030-01-01T00:02:00Z)"),
            "{text}"
        );
        assert!(text.contains("unsupported"), "{text}");
        assert!(
            text.contains(
                "sa: last rotation attempt failed: TokenRequest for ns/sa failed: HTTP 500"
            ),
            "{text}"
        );
    }
}
