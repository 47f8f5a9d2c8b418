//! `fleetreg context add|use|list|current|delete`: named connections (server,
//! token, CA certificate) in the CLI's configuration file, like kubectl's and
//! argocd's contexts, and [`Selected`], the context a client command uses.
//!
//! The file is `$FLEETREG_CLI_CONFIG`, else `$XDG_CONFIG_HOME/fleetreg/config.yaml`,
//! else `~/.config/fleetreg/config.yaml`; written atomically (a temporary file
//! renamed over it) with mode 0600 in a directory created 0700. A file that
//! others may read is still used, with a warning. Tokens are kept by file
//! reference (`token_file`, read at each use) or inline (`token`, from
//! `--token-stdin`) and never printed.

use crate::output::{print, Column, Format};
use anyhow::{anyhow, bail, Context as _};
use clap::{ArgGroup, Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Names another configuration file.
pub const CONFIG_ENV: &str = "FLEETREG_CLI_CONFIG";

/// Selects a context for one command (below `--context`).
pub const CONTEXT_ENV: &str = "FLEETREG_CONTEXT";

const EXAMPLES: &str = "Examples:
  fleetreg context add local --server http://127.0.0.1:8080 --token-file ./fleetreg-admin.token
  cat prod.token | fleetreg context add prod --server https://fleetreg.example.com --token-stdin --ca-cert ./prod-ca.pem
  fleetreg context use prod
  fleetreg context list
  fleetreg context current
  fleetreg cluster list --context local    # one command against another context
  fleetreg context delete local

Where a client command connects (the first found wins):
  server: --server, the --context's server, FLEETREG_URL, the server of the context
          FLEETREG_CONTEXT names or else of the current one, http://127.0.0.1:8080
  token:  --token, the --context's token, FLEETREG_TOKEN, FLEETREG_ADMIN_TOKEN, the token
          of the FLEETREG_CONTEXT or current context, then ./fleetreg-admin.token (only
          when no context is in use: a context without a token sends none)
A context's --ca-cert is trusted besides the built-in roots.

Contexts are kept in $XDG_CONFIG_HOME/fleetreg/config.yaml (else
~/.config/fleetreg/config.yaml; FLEETREG_CLI_CONFIG names another file), mode 0600.";

/// The context commands.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum ContextCommand {
    /// Save a named connection: a server, its token (a file, or stdin) and
    /// optionally a CA certificate.
    Add(AddArgs),
    /// Make a context the current one.
    Use(NameArg),
    /// List the contexts, marking the current one (never their tokens).
    List(ListArgs),
    /// Print the name of the context in use (FLEETREG_CONTEXT, else the current one).
    Current,
    /// Delete a context (an inline token goes with it).
    Delete(NameArg),
}

/// `context add`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("token_source").required(true).args(["token_file", "token_stdin"])))]
pub struct AddArgs {
    /// The context's name: 1-63 lowercase letters, digits and '-', like a DNS label.
    #[arg(value_parser = parse_name)]
    name: String,
    /// The server's URL, e.g. https://fleetreg.example.com.
    #[arg(long, value_name = "URL")]
    server: String,
    /// Read the token from this file at each use (the path is kept, not the token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Read the token from stdin now and keep it in the configuration file (mode 0600).
    #[arg(long)]
    token_stdin: bool,
    /// Trust the PEM CA certificate(s) in this file for the server's TLS
    /// certificate, besides the built-in roots (the path is kept).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Replace a context of the same name.
    #[arg(long)]
    overwrite: bool,
}

/// A context's name.
#[derive(Args, Debug)]
pub struct NameArg {
    /// The context's name.
    #[arg(value_parser = parse_name)]
    name: String,
}

/// `context list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The configuration file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The context used when neither `--context` nor `FLEETREG_CONTEXT` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// The contexts, in the order they were added.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One named connection.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Its name (DNS-label-like).
    pub name: String,
    /// The server's URL.
    pub server: String,
    /// A file holding the token, read at each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM CA certificate(s) trusted for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl Context {
    /// Where its token comes from, for people: `file PATH`, `inline` or `none`.
    fn token_kind(&self) -> String {
        match (&self.token_file, &self.token) {
            (Some(file), _) => format!("file {}", file.display()),
            (None, Some(_)) => "inline".into(),
            (None, None) => "none".into(),
        }
    }
}

/// Whether `text` is a context name: 1-63 of `a-z`, `0-9`, `-`, not starting
/// or ending with `-`.
pub fn parse_name(text: &str) -> Result<String, String> {
    let valid = (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a context name: 1-63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// The configuration file's path: `FLEETREG_CLI_CONFIG` (not `FLEETREG_CONFIG`,
/// which is `serve --config`), else
/// `$XDG_CONFIG_HOME/fleetreg/config.yaml`, else `~/.config/fleetreg/config.yaml`.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = non_empty_env(CONFIG_ENV) {
        return Ok(PathBuf::from(path));
    }
    let base = non_empty_env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty_env("HOME").map(|home| Path::new(&home).join(".config")))
        .ok_or_else(|| {
            anyhow!(
                "no place for the CLI's configuration: set HOME, XDG_CONFIG_HOME or {CONFIG_ENV}"
            )
        })?;
    Ok(base.join("fleetreg").join("config.yaml"))
}

impl Config {
    /// Reads `path` (a missing file is an empty configuration), warning on
    /// stderr when others may read or write it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} is open to other users (mode {mode:04o}) and may hold tokens; \
                     chmod 600 it",
                    path.display()
                );
            }
        }
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a fleetreg CLI configuration", path.display()))?;
        for (i, context) in config.contexts.iter().enumerate() {
            parse_name(&context.name).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            if config.contexts[..i].iter().any(|c| c.name == context.name) {
                bail!(
                    "{}: context {:?} is defined twice",
                    path.display(),
                    context.name
                );
            }
        }
        Ok(config)
    }

    /// Writes `path` atomically: a new file (mode 0600) in the same directory,
    /// synced, then renamed over it. A missing directory is created 0700.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = format!(
            "# fleetreg CLI contexts (`fleetreg context --help`); may hold tokens: keep it mode 0600.\n{}",
            serde_yaml::to_string(self)?
        );
        let file_name = path
            .file_name()
            .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?
            .to_string_lossy();
        let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = (|| {
            let _ = fs::remove_file(&temp);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            bail!("cannot write {}: {e}", path.display());
        }
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }
}

/// The context a client command uses, and whether `--context` chose it
/// (then it ranks with the flags, above the environment).
pub struct Selected {
    /// The context.
    pub context: Context,
    /// Chosen by `--context` (not `FLEETREG_CONTEXT` or the current context).
    pub by_flag: bool,
}

impl Selected {
    /// The context `flag` (`--context`), else `FLEETREG_CONTEXT`, else the
    /// configuration's current context names; `None` when none does.
    pub fn resolve(flag: Option<&str>) -> anyhow::Result<Option<Selected>> {
        let env = non_empty_env(CONTEXT_ENV);
        let (wanted, by) = match (flag, &env) {
            (Some(name), _) => (Some(name.to_owned()), "from --context"),
            (None, Some(name)) => (
                Some(parse_name(name.trim()).map_err(|e| anyhow!("{CONTEXT_ENV}: {e}"))?),
                "from FLEETREG_CONTEXT",
            ),
            (None, None) => (None, "the current context"),
        };
        let path = match config_path() {
            Ok(path) => path,
            Err(_) if wanted.is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        let config = Config::load(&path)?;
        let Some(name) = wanted.or_else(|| config.current_context.clone()) else {
            return Ok(None);
        };
        let context = config.get(&name).cloned().ok_or_else(|| {
            anyhow!(
                "no context {name:?} ({by}) in {}\n  hint: `fleetreg context list` shows the contexts",
                path.display()
            )
        })?;
        Ok(Some(Selected {
            context,
            by_flag: flag.is_some(),
        }))
    }

    /// Where its values come from, for messages: `context "prod"`.
    pub fn source(&self) -> String {
        format!("context {:?}", self.context.name)
    }

    /// Its token and where it came from; `None` when it has none, an error
    /// when its token file cannot be read.
    pub fn token(&self) -> Option<anyhow::Result<(String, String)>> {
        let context = &self.context;
        if let Some(file) = &context.token_file {
            let source = format!("{} (token_file {})", self.source(), file.display());
            return Some(
                read_token_file(file)
                    .map(|t| (t, source))
                    .map_err(|e| anyhow!("{}: {e}", self.source())),
            );
        }
        let token = context.token.as_ref()?.trim();
        (!token.is_empty()).then(|| Ok((token.to_owned(), self.source())))
    }

    /// The CA certificates it trusts besides the built-in roots.
    pub fn ca_certs(&self) -> anyhow::Result<Vec<reqwest::Certificate>> {
        match &self.context.ca_cert {
            None => Ok(Vec::new()),
            Some(file) => read_ca_certs(file).map_err(|e| anyhow!("{}: {e}", self.source())),
        }
    }
}

fn read_token_file(file: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(file)
        .map_err(|e| anyhow!("cannot read the token file {}: {e}", file.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", file.display());
    }
    Ok(token.to_owned())
}

fn read_ca_certs(file: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = fs::read(file)
        .map_err(|e| anyhow!("cannot read the CA certificate {}: {e}", file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow!("{} is not a PEM certificate bundle: {e}", file.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", file.display());
    }
    Ok(certs)
}

/// `path` made absolute, so a context works from any directory.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    fs::canonicalize(path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Runs a context command.
pub async fn run(command: ContextCommand) -> anyhow::Result<()> {
    let path = config_path()?;
    match command {
        ContextCommand::Add(args) => add(&path, args),
        ContextCommand::Use(NameArg { name }) => {
            let mut config = Config::load(&path)?;
            let server = config
                .get(&name)
                .map(|c| c.server.clone())
                .ok_or_else(|| missing(&name, &path))?;
            config.current_context = Some(name.clone());
            config.save(&path)?;
            eprintln!("using context {name:?} ({server})");
            Ok(())
        }
        ContextCommand::List(args) => list(&path, args.format),
        ContextCommand::Current => match Selected::resolve(None)? {
            Some(selected) => crate::output::write_stdout(&format!("{}\n", selected.context.name)),
            None => bail!(
                "no context is in use (none in {CONTEXT_ENV}, no current one in {})\n  \
                 hint: `fleetreg context use NAME` picks one",
                path.display()
            ),
        },
        ContextCommand::Delete(NameArg { name }) => {
            let mut config = Config::load(&path)?;
            let before = config.contexts.len();
            config.contexts.retain(|c| c.name != name);
            if config.contexts.len() == before {
                return Err(missing(&name, &path));
            }
            let was_current = config.current_context.as_deref() == Some(name.as_str());
            if was_current {
                config.current_context = None;
            }
            config.save(&path)?;
            if was_current {
                eprintln!("deleted context {name:?}, the current one; no context is current now");
            } else {
                eprintln!("deleted context {name:?}");
            }
            Ok(())
        }
    }
}

fn missing(name: &str, path: &Path) -> anyhow::Error {
    anyhow!(
        "no context {name:?} in {}\n  hint: `fleetreg context list` shows the contexts",
        path.display()
    )
}

fn add(path: &Path, args: AddArgs) -> anyhow::Result<()> {
    let server = crate::client::check_server_url(&args.server, "--server")?;
    let (token_file, token) = match &args.token_file {
        Some(file) => {
            read_token_file(file)?;
            (Some(absolute(file)?), None)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("paste the token, then press Enter and Ctrl-D:");
            }
            let text =
                std::io::read_to_string(stdin).context("cannot read the token from stdin")?;
            let token = text.trim();
            if token.is_empty() {
                bail!("--token-stdin: stdin held no token");
            }
            if token.chars().any(char::is_whitespace) {
                bail!("--token-stdin: a token is one word; stdin held several");
            }
            (None, Some(token.to_owned()))
        }
    };
    let ca_cert = match &args.ca_cert {
        Some(file) => {
            read_ca_certs(file)?;
            Some(absolute(file)?)
        }
        None => None,
    };
    let mut config = Config::load(path)?;
    let context = Context {
        name: args.name.clone(),
        server: server.clone(),
        token_file,
        token,
        ca_cert,
    };
    match config.contexts.iter_mut().find(|c| c.name == args.name) {
        Some(_) if !args.overwrite => bail!(
            "context {:?} exists in {}\n  hint: pass --overwrite to replace it",
            args.name,
            path.display()
        ),
        Some(existing) => *existing = context,
        None => config.contexts.push(context),
    }
    config.save(path)?;
    let current = config.current_context.as_deref() == Some(args.name.as_str());
    if current {
        eprintln!("saved context {:?} ({server}), the current one", args.name);
    } else {
        eprintln!(
            "saved context {:?} ({server}); `fleetreg context use {}` makes it current",
            args.name, args.name
        );
    }
    Ok(())
}

const COLUMNS: &[Column] = &[
    Column {
        header: "CURRENT",
        pointer: "/mark",
    },
    Column {
        header: "NAME",
        pointer: "/name",
    },
    Column {
        header: "SERVER",
        pointer: "/server",
    },
    Column {
        header: "TOKEN",
        pointer: "/token",
    },
    Column {
        header: "CA CERT",
        pointer: "/ca_cert",
    },
];

fn list(path: &Path, format: Format) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let rows: Vec<serde_json::Value> = config
        .contexts
        .iter()
        .map(|c| {
            let current = config.current_context.as_deref() == Some(c.name.as_str());
            json!({
                "name": c.name,
                "current": current,
                "mark": if current { "*" } else { " " },
                "server": c.server,
                "token": c.token_kind(),
                "ca_cert": c.ca_cert,
            })
        })
        .collect();
    let whole: Vec<serde_json::Value> = rows
        .iter()
        .cloned()
        .map(|mut row| {
            row.as_object_mut().map(|o| o.remove("mark"));
            row
        })
        .collect();
    if rows.is_empty() && format == Format::Table {
        eprintln!(
            "no contexts in {}; `fleetreg context add --help` shows how to add one",
            path.display()
        );
        return Ok(());
    }
    print(format, &json!({ "contexts": whole }), &rows, COLUMNS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["prod", "a", "prod-east-1", "0", &"a".repeat(63)] {
            assert!(parse_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Prod", "a_b", "a.b", "a b", &"a".repeat(64)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn saves_atomically_with_mode_0600_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/fleetreg/config.yaml");
        let config = Config {
            current_context: Some("prod".into()),
            contexts: vec![Context {
                name: "prod".into(),
                server: "https://fleetreg.example.com".into(),
                token_file: None,
                token: Some("frg_secret".into()),
                ca_cert: None,
            }],
        };
        config.save(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        config.save(&path).unwrap();
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.yaml"], "no temporary file is left behind");
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded.current_context.as_deref(), Some("prod"));
        assert_eq!(loaded.contexts[0].token.as_deref(), Some("frg_secret"));
        assert!(!format!("{loaded:?}").contains("frg_secret"));
    }

    #[test]
    fn refuses_unknown_fields_and_duplicate_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(
            &path,
            "contexts:\n- name: a\n  server: http://x\n  tokenfile: /t\n",
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
        fs::write(
            &path,
            "contexts:\n- name: a\n  server: http://x\n- name: a\n  server: http://y\n",
        )
        .unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("twice"), "{error}");
        fs::write(&path, "").unwrap();
        assert!(Config::load(&path).unwrap().contexts.is_empty());
        assert!(Config::load(&dir.path().join("missing.yaml"))
            .unwrap()
            .contexts
            .is_empty());
    }
}
