//! One configuration document, `{"node", "revision", "config"}`, from parse
//! to the acknowledgement to send: render, write, update the hosts file,
//! reload. A document of the revision already applied (the first frame of
//! every connection, a reconciliation, a manual push) is rendered again and
//! repairs what differs on disk: a file edited or removed by hand is
//! rewritten, and the reload runs only when something was.

use super::apply::{rewrite_hosts_file, FileChanges, OutDir, OutFile};
use super::log;
use super::reload::{load_caddy, run_command, truncate};
use fleetreg_model::{
    render_caddy, render_file_set, render_hosts_block, replace_hosts_block, CaddyOptions,
    NodeConfig, RenderOptions, MAX_AGENT_ERROR,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A configuration as the server sends it (a stream frame's data, the
/// answer of `GET /api/v1/nodes/{name}/config`); `config` is decoded on
/// apply, so that a configuration this agent cannot read is reported as a
/// failure of its revision.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigDocument {
    /// The node it is for.
    pub node: String,
    /// The node's desired revision.
    pub revision: i64,
    /// The [`NodeConfig`], undecoded.
    pub config: Value,
}

/// What the agent was started with, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The node's name.
    pub node: String,
    /// The output directory, opened.
    pub out: OutDir,
    /// Its absolute path (for the reload command's environment).
    pub out_dir: PathBuf,
    /// How Caddy is rendered (file and `/load`).
    pub caddy: CaddyOptions,
    /// Caddy's admin API, when the agent loads Caddy itself.
    pub caddy_admin: Option<String>,
    /// The hosts file whose fleetreg block the agent keeps.
    pub hosts_file: Option<PathBuf>,
    /// The reload command.
    pub reload_cmd: Option<String>,
    /// Its time limit.
    pub reload_timeout: Duration,
}

/// What handling one document came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The revision was already applied: files that differed from its
    /// rendering (if any) were rewritten.
    AlreadyApplied(i64),
    /// The revision is applied now.
    Applied(i64),
    /// Applying the revision failed.
    Failed {
        /// The revision.
        revision: i64,
        /// Why (at most [`MAX_AGENT_ERROR`] bytes).
        error: String,
    },
}

impl Outcome {
    /// The body of `POST /api/v1/nodes/{name}/ack` reporting it.
    pub fn ack(&self) -> Value {
        match self {
            Outcome::AlreadyApplied(revision) | Outcome::Applied(revision) => {
                json!({ "applied_revision": revision })
            }
            Outcome::Failed { revision, error } => {
                json!({ "failed_revision": revision, "error": error })
            }
        }
    }
}

/// The node side of the agent: its settings, its output directory, and
/// whether the last reload went through.
#[derive(Debug)]
pub struct NodeAgent {
    settings: Settings,
    options: RenderOptions,
    /// Whether a reload is due even if no file changes (set at start and
    /// after a failed reload).
    reload_due: bool,
    /// Whether the last reload failed: a repair of the applied revision then
    /// reloads even if no file changes (at start the state file says the
    /// applied revision was reloaded).
    reload_failed: bool,
    caddy_http: reqwest::Client,
}

impl NodeAgent {
    /// An agent for `settings`.
    pub fn new(settings: Settings) -> anyhow::Result<NodeAgent> {
        let options = RenderOptions {
            caddy: settings.caddy.clone(),
            ..RenderOptions::default()
        };
        // Caddy's admin API gets a client of its own: it never sees the
        // fleetreg token.
        let caddy_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("fleetreg-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(NodeAgent {
            settings,
            options,
            reload_due: true,
            reload_failed: false,
            caddy_http,
        })
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.settings.node
    }

    /// The revision applied, if any.
    pub fn applied(&self) -> Option<i64> {
        self.settings.out.applied()
    }

    /// Applies `document`, or when its revision is the one applied repairs
    /// what differs from it on disk; logs what happened.
    pub async fn handle(&mut self, document: ConfigDocument) -> Outcome {
        let revision = document.revision;
        let repair = self.applied() == Some(revision);
        let started = Instant::now();
        match self.apply(document, repair).await {
            Ok((changes, hosts)) if repair => {
                if changes.written + changes.removed > 0 || hosts {
                    log(format!(
                        "revision {revision} is applied; repaired what differed from it in {} ms ({} rewritten, {} unchanged, {} removed{})",
                        started.elapsed().as_millis(),
                        changes.written,
                        changes.unchanged,
                        changes.removed,
                        if hosts { ", hosts file rewritten" } else { "" }
                    ));
                }
                Outcome::AlreadyApplied(revision)
            }
            Ok((changes, _)) => {
                log(format!(
                    "applied revision {revision} in {} ms ({} written, {} unchanged, {} removed)",
                    started.elapsed().as_millis(),
                    changes.written,
                    changes.unchanged,
                    changes.removed
                ));
                Outcome::Applied(revision)
            }
            Err(error) => {
                let error = truncate(&error, MAX_AGENT_ERROR);
                log(format!("revision {revision} failed: {error}"));
                Outcome::Failed { revision, error }
            }
        }
    }

    /// Renders `document` and brings the files, the hosts file and the proxy
    /// in step with it: the files changed and whether the hosts file did.
    /// `repair`: its revision is the one applied (the reload command then
    /// runs only when something changed or the last reload failed).
    async fn apply(
        &mut self,
        document: ConfigDocument,
        repair: bool,
    ) -> Result<(FileChanges, bool), String> {
        let node = &self.settings.node;
        if document.node != *node {
            return Err(format!(
                "the server sent the configuration of node {:?} to node {node:?}",
                truncate(&document.node, 64)
            ));
        }
        let config: NodeConfig = serde_json::from_value(document.config)
            .map_err(|e| format!("the configuration does not decode: {e}"))?;
        if config.node.as_str() != node {
            return Err(format!(
                "the configuration is for node {:?}, not {node:?}",
                config.node.as_str()
            ));
        }
        let files: Vec<OutFile> = render_file_set(&config, document.revision, &self.options)
            .into_iter()
            .map(|file| OutFile {
                path: file.path,
                content: file.content.into_bytes(),
            })
            .collect();
        let changes = self
            .settings
            .out
            .write_files(&files)
            .map_err(|e| e.to_string())?;
        let mut changed = changes.written + changes.removed > 0;
        let mut hosts = false;
        if let Some(path) = &self.settings.hosts_file {
            let block = render_hosts_block(&config);
            hosts = rewrite_hosts_file(path, |old| replace_hosts_block(old, &block))
                .map_err(|e| format!("hosts file: {e}"))?;
            changed |= hosts;
        }
        let due = if repair {
            self.reload_failed
        } else {
            self.reload_due
        };
        if let Some(command) = &self.settings.reload_cmd {
            if changed || due {
                self.reload_due = true;
                self.reload_failed = true;
                let env = [
                    ("FLEETREG_NODE", node.clone()),
                    ("FLEETREG_REVISION", document.revision.to_string()),
                    (
                        "FLEETREG_OUT_DIR",
                        self.settings.out_dir.display().to_string(),
                    ),
                ];
                run_command(command, self.settings.reload_timeout, &env)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if let Some(admin) = &self.settings.caddy_admin {
            // Always loaded (a repair too): Caddy ignores an unchanged
            // configuration, and a restarted Caddy gets its routes back.
            self.reload_due = true;
            self.reload_failed = true;
            let caddy = render_caddy(&config, &self.settings.caddy);
            load_caddy(&self.caddy_http, admin, &caddy)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.reload_due = false;
        self.reload_failed = false;
        self.settings
            .out
            .mark_applied(document.revision)
            .map_err(|e| e.to_string())?;
        Ok((changes, hosts))
    }
}
