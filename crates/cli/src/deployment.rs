//! `fleetreg deployment …`: registered clients placed on hosts, their sync
//! (seed cluster-lifecycle-deregistration.md): create, enable, pause, move,
//! delete, start a sync job and report its end, the conflict log. A thin
//! client of `/api/v1/hosts/{id}/deployments`, `/api/v1/deployments/…` and
//! `/api/v1/sync-jobs/…`.

use crate::client::{path_segment, Client};
use crate::cluster_sync::{
    col, deployment_view, items, job_view, print_resource, short_time, Common, DEPLOYMENT_CSV,
    DEPLOYMENT_DETAIL, JOB_CSV, JOB_DETAIL,
};
use crate::output::{print, write_stdout, Column, Format};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

const ALL_EXAMPLES: &str = "Examples:
  fleetreg deployment create 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e --client acme \\
      --container openwebui-acme --sync
  fleetreg deployment pause 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f
  fleetreg deployment enable 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f
  fleetreg deployment move 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f --host 0190f5c2-9b2c-7d3e-8f4a-5b6c7d8e9f0a
  fleetreg deployment sync 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f --kind full
  fleetreg deployment finish 0190f5c2-aa3d-7e4f-9a5b-6c7d8e9f0a1b --status success --rows 120
  fleetreg deployment conflicts 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f
  fleetreg deployment delete 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f

`fleetreg cluster sync-status CLUSTER` lists a cluster's deployments with their ids.
Pause, move and delete are the three ways to clear a deployment out of the way
of `fleetreg cluster deregister`.";

const CREATE_EXAMPLES: &str = "Examples:
  fleetreg deployment create 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e --client acme \\
      --container openwebui-acme --sync
  fleetreg deployment create 0190f5c2-7c3e-7d4a-9b1e-2f3a4b5c6d7e --client beta \\
      --container openwebui-beta -o json

The client must be registered (`fleetreg client list`); sync is off unless --sync.";

const SHOW_EXAMPLES: &str = "Examples:
  fleetreg deployment show 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f -o yaml";

const ENABLE_EXAMPLES: &str = "Examples:
  fleetreg deployment enable 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f";

const PAUSE_EXAMPLES: &str = "Examples:
  fleetreg deployment pause 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f

Sync stops (last sync status `stopped`); the deployment no longer blocks
deregistering its cluster, and goes with it.";

const DELETE_EXAMPLES: &str = "Examples:
  fleetreg deployment delete 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f

Removes the deployment's record with its sync jobs and conflict log
(decommission); stop its container and back up its data first. The client's
registry entry stays.";

const MOVE_EXAMPLES: &str = "Examples:
  fleetreg deployment move 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f --host 0190f5c2-9b2c-7d3e-8f4a-5b6c7d8e9f0a

Keeps its sync setting and history (migrate). `fleetreg host list CLUSTER` shows
host ids.";

const SYNC_EXAMPLES: &str = "Examples:
  fleetreg deployment sync 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f
  fleetreg deployment sync 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f --kind full -o json

Starts a sync job (running); its host reports the end with `deployment finish JOB_ID`.";

const FINISH_EXAMPLES: &str = "Examples:
  fleetreg deployment finish 0190f5c2-aa3d-7e4f-9a5b-6c7d8e9f0a1b --status success --rows 120
  fleetreg deployment finish 0190f5c2-aa3d-7e4f-9a5b-6c7d8e9f0a1b --status failed --error \"connection reset\"

Three failures in a row make the deployment SYNC_FAILING (an event, and the
fleetreg_sync_failing_deployments gauge).";

const CONFLICTS_EXAMPLES: &str = "Examples:
  fleetreg deployment conflicts 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f
  fleetreg deployment conflicts 0190f5c2-8a1b-7c2d-9e3f-4a5b6c7d8e9f --limit 20 -o csv";

/// The deployment commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum DeploymentCommand {
    /// Place a registered client on a host.
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Show one deployment.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(IdArgs),
    /// Turn a deployment's sync on.
    #[command(after_help = ENABLE_EXAMPLES)]
    Enable(IdArgs),
    /// Turn a deployment's sync off (remediation 1: disable sync).
    #[command(after_help = PAUSE_EXAMPLES)]
    Pause(IdArgs),
    /// Delete a deployment with its jobs and conflicts (remediation 3: decommission).
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(IdArgs),
    /// Move a deployment to another host (remediation 2: migrate).
    #[command(name = "move", after_help = MOVE_EXAMPLES)]
    Move(MoveArgs),
    /// Start a sync job for a deployment.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
    /// Report how a running sync job ended.
    #[command(after_help = FINISH_EXAMPLES)]
    Finish(FinishArgs),
    /// A deployment's conflict log, newest first.
    #[command(after_help = CONFLICTS_EXAMPLES)]
    Conflicts(ConflictsArgs),
}

/// `deployment create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The host's id (`fleetreg host list CLUSTER` shows it).
    host_id: String,
    /// The client's name (a registered client).
    #[arg(long, value_name = "NAME")]
    client: String,
    /// The container running it: letters, digits, '-', '_', '.'.
    #[arg(long, value_name = "CONTAINER")]
    container: String,
    /// Sync on from the start [default: off].
    #[arg(long)]
    sync: bool,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one deployment.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// Deployment id (`fleetreg cluster sync-status CLUSTER` shows it).
    id: String,
    #[command(flatten)]
    common: Common,
}

/// `deployment move`.
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// Deployment id.
    id: String,
    /// The host to move to (of any cluster).
    #[arg(long = "host", value_name = "HOST_ID")]
    host: String,
    #[command(flatten)]
    common: Common,
}

/// Full or incremental.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Kind {
    /// Everything.
    Full,
    /// Changes since the last sync.
    #[default]
    Incremental,
}

/// `deployment sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Deployment id (its sync must be enabled).
    id: String,
    /// Full or incremental.
    #[arg(long, value_enum, default_value_t = Kind::Incremental)]
    kind: Kind,
    #[command(flatten)]
    common: Common,
}

/// How a sync job ended.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Outcome {
    /// It finished well.
    Success,
    /// It failed.
    Failed,
}

/// `deployment finish`.
#[derive(Args, Debug)]
pub struct FinishArgs {
    /// The sync job's id (`deployment sync` printed it).
    job_id: String,
    /// success or failed.
    #[arg(long, value_enum)]
    status: Outcome,
    /// Rows synced.
    #[arg(long, value_name = "N")]
    rows: Option<u64>,
    /// Why it failed (at most 1024 characters).
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `deployment conflicts`.
#[derive(Args, Debug)]
pub struct ConflictsArgs {
    /// Deployment id.
    id: String,
    /// At most this many (1–1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    common: Common,
}

const CONFLICT_COLUMNS: &[Column] = &[
    col("AT", "/at"),
    col("TABLE", "/table_name"),
    col("ROW KEY", "/row_key"),
    col("RESOLUTION", "/resolution"),
    col("ID", "/id"),
];

const CONFLICT_CSV: &[Column] = &[
    col("id", "/id"),
    col("deployment_id", "/deployment_id"),
    col("at", "/at"),
    col("table_name", "/table_name"),
    col("row_key", "/row_key"),
    col("resolution", "/resolution"),
];

/// `/api/v1/deployments/{id}{tail}`.
fn deployment_path(id: &str, tail: &str) -> String {
    format!("/api/v1/deployments/{}{tail}", path_segment(id))
}

/// Prints one deployment.
fn print_deployment(format: Format, deployment: &Value) -> anyhow::Result<()> {
    let view = deployment_view(deployment, &HashMap::new());
    print_resource(format, deployment, &view, DEPLOYMENT_DETAIL, DEPLOYMENT_CSV)
}

/// Prints one sync job.
fn print_job(format: Format, job: &Value) -> anyhow::Result<()> {
    let view = job_view(job, &HashMap::new());
    print_resource(format, job, &view, JOB_DETAIL, JOB_CSV)
}

/// Sends `method` to `path` (with `body`, if any) and prints the deployment answered.
async fn change(
    common: &Common,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<()> {
    let client = Client::from_args(&common.connect)?;
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let deployment: Value = client.send(request).await?;
    print_deployment(common.format, &deployment)
}

/// Runs a deployment command.
pub async fn run(command: DeploymentCommand) -> anyhow::Result<()> {
    match command {
        DeploymentCommand::Create(args) => {
            let path = format!("/api/v1/hosts/{}/deployments", path_segment(&args.host_id));
            let body = json!({
                "client": args.client,
                "container_name": args.container,
                "sync_enabled": args.sync,
            });
            change(&args.common, Method::POST, &path, Some(body)).await
        }
        DeploymentCommand::Show(args) => {
            let path = deployment_path(&args.id, "");
            change(&args.common, Method::GET, &path, None).await
        }
        DeploymentCommand::Enable(args) => {
            let path = deployment_path(&args.id, "/enable");
            change(&args.common, Method::POST, &path, None).await
        }
        DeploymentCommand::Pause(args) => {
            let path = deployment_path(&args.id, "/pause");
            change(&args.common, Method::POST, &path, None).await
        }
        DeploymentCommand::Move(args) => {
            let path = deployment_path(&args.id, "/move");
            let body = json!({"host_id": args.host});
            change(&args.common, Method::POST, &path, Some(body)).await
        }
        DeploymentCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let path = deployment_path(&args.id, "");
            let deployment: Value = client.send(client.request(Method::GET, &path)).await?;
            client
                .send_raw(client.request(Method::DELETE, &path))
                .await?;
            let (name, container) = (&deployment["client"], &deployment["container_name"]);
            match args.common.format {
                Format::Table => write_stdout(&format!(
                    "deployment {} of client {} ({}) deleted\n",
                    args.id,
                    name.as_str().unwrap_or("?"),
                    container.as_str().unwrap_or("?")
                )),
                format => {
                    let result = json!({"id": args.id, "client": name, "container_name": container, "deleted": true});
                    let columns = [
                        col("id", "/id"),
                        col("client", "/client"),
                        col("container_name", "/container_name"),
                        col("deleted", "/deleted"),
                    ];
                    print(format, &result, std::slice::from_ref(&result), &columns)
                }
            }
        }
        DeploymentCommand::Sync(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let kind = match args.kind {
                Kind::Full => "full",
                Kind::Incremental => "incremental",
            };
            let request = client
                .request(Method::POST, &deployment_path(&args.id, "/sync"))
                .json(&json!({ "kind": kind }));
            let job: Value = client.send(request).await?;
            print_job(args.common.format, &job)
        }
        DeploymentCommand::Finish(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let status = match args.status {
                Outcome::Success => "success",
                Outcome::Failed => "failed",
            };
            let path = format!("/api/v1/sync-jobs/{}/finish", path_segment(&args.job_id));
            let body = json!({"status": status, "rows": args.rows, "error": args.error});
            let job: Value = client
                .send(client.request(Method::POST, &path).json(&body))
                .await?;
            print_job(args.common.format, &job)
        }
        DeploymentCommand::Conflicts(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let request = client
                .request(Method::GET, &deployment_path(&args.id, "/conflicts"))
                .query(&[("limit", args.limit)]);
            let conflicts: Value = client.send(request).await?;
            let rows = items(&conflicts);
            match args.common.format {
                Format::Table if rows.is_empty() => {
                    eprintln!("no conflicts recorded");
                    Ok(())
                }
                Format::Table => {
                    let views: Vec<Value> = rows
                        .iter()
                        .map(|c| {
                            let mut view = c.clone();
                            view["at"] = json!(short_time(&c["at"]));
                            view
                        })
                        .collect();
                    print(Format::Table, &conflicts, &views, CONFLICT_COLUMNS)
                }
                format => print(format, &conflicts, &rows, CONFLICT_CSV),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Test {
        #[command(subcommand)]
        command: DeploymentCommand,
    }

    #[test]
    fn finish_takes_only_final_states() {
        let parse =
            |args: &[&str]| Test::try_parse_from(["test", "finish", "j1"].iter().chain(args));
        assert!(parse(&["--status", "success", "--rows", "3"]).is_ok());
        assert!(parse(&["--status", "running"]).is_err());
        assert!(parse(&["--status", "failed", "--rows", "-1"]).is_err());
    }
}
