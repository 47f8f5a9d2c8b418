//! `fleetreg`: the server (`serve`), the command-line client of its HTTP API,
//! and the benchmark (`bench`).

mod agent;
mod allocator;
mod audit;
mod client;
mod client_drift;
mod client_health;
mod clients;
mod cluster;
mod cluster_health;
mod cluster_sync;
mod completion;
mod context;
mod credentials;
mod deployment;
mod domain;
mod edge_common;
mod edge_sync;
mod events;
mod fleet;
mod host;
mod node;
mod output;
mod progress;
mod rollout;
mod routing;
mod serve;
mod service;
mod token;
mod vault;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const EXAMPLES: &str = "Examples:
  fleetreg serve                                   # SQLite in ./fleetreg.db on 127.0.0.1:8080
  fleetreg cluster register prod-east-1 --api-server-url https://api.prod-east-1.example.com:6443
  fleetreg cluster list --environment PRODUCTION -o json
  fleetreg events watch
  fleetreg fleet summary
  fleetreg audit list --cluster prod-east-1        # auditor or admin token
  fleetreg credentials store prod-east-1 --kubeconfig ./prod-east-1.kubeconfig
  fleetreg routing configure immich \"curiios.com,vinaysachdeva.com\" \"contabo-vps,digitalocean-vps\" round-robin
  fleetreg sync health                             # edge nodes: status, last sync, revisions
  fleetreg agent --node contabo-vps --out-dir /etc/fleetreg --reload-cmd 'systemctl reload traefik'
  fleetreg bench --help

The client commands reach the server at --server (or --context), else FLEETREG_URL (or
FLEETREG_CONTEXT), else the current context (`fleetreg context --help`), else http://127.0.0.1:8080.";

/// fleetreg: the source of truth for a fleet of Kubernetes clusters.
#[derive(Parser)]
#[command(name = "fleetreg", version, about, propagate_version = true, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API server (embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Register, list, inspect, update and delete clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Client deployments: list, lifecycle, maintenance, import/export.
    #[command(subcommand)]
    Client(clients::ClientCommand),
    /// Canary-first rollouts of an app version: start, status, promote, pause, resume, abort.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Hosts of a cluster: register, list, heartbeat; the orphaned ones.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Clients placed on hosts and their sync: create, enable, pause, move,
    /// delete, sync jobs, conflicts.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Edge domains services are published under: register, list, update, delete.
    #[command(subcommand)]
    Domain(domain::DomainCommand),
    /// Edge nodes (VPS and management laptops): register, list, delete, agent tokens.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Routed services: register, list, update, delete; discover them from clusters.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Route services over domains and VPS nodes; the configuration view; node configs.
    #[command(subcommand)]
    Routing(routing::RoutingCommand),
    /// Push sync of edge nodes: health, push now, reconciliation.
    #[command(subcommand)]
    Sync(edge_sync::SyncCommand),
    /// Read the change log or follow it live.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Fleet views: summary, health and capabilities across all clusters.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Store, rotate, validate and delete cluster credentials (secrets read from
    /// files or stdin); list those expiring soon.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Create, list and revoke API tokens (admin only).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Read the audit log, or verify that it was not tampered with.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Rotate the master key that seals stored credentials; show what each key wraps.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Drive a running server with load and print what was measured.
    Bench(fleetreg_bench::BenchArgs),
    /// Serve simulated clusters (Kubernetes API subset, Prometheus, Tempo, Loki)
    /// with faults controllable at run time over /admin.
    Sim(fleetreg_sim::SimArgs),
    /// Named connections (server, token, CA certificate) the client commands use.
    #[command(subcommand)]
    Context(context::ContextCommand),
    /// Run on an edge node: apply the node's pushed configuration (proxy
    /// routes, DNS) as files, reload, acknowledge.
    Agent(agent::AgentArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// Print the fleetreg(1) man page, or write one page per command with --out-dir.
    Man(completion::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        allocator::serve_memory_policy();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::release_when_idle)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Cluster(command) => cluster::run(command).await,
            Command::Client(command) => clients::run(command).await,
            Command::Rollout(command) => rollout::run(command).await,
            Command::Host(command) => host::run(command).await,
            Command::Deployment(command) => deployment::run(command).await,
            Command::Domain(command) => domain::run(command).await,
            Command::Node(command) => node::run(command).await,
            Command::Service(command) => service::run(command).await,
            Command::Routing(command) => routing::run(command).await,
            Command::Sync(command) => edge_sync::run(command).await,
            Command::Events(command) => events::run(command).await,
            Command::Fleet(command) => fleet::run(command).await,
            Command::Credentials(command) => credentials::run(command).await,
            Command::Token(command) => token::run(command).await,
            Command::Audit(command) => audit::run(command).await,
            Command::Vault(command) => vault::run(command).await,
            Command::Bench(args) => fleetreg_bench::run(args).await.map_err(anyhow::Error::from),
            Command::Sim(args) => fleetreg_sim::run_cli(args).await.map_err(Into::into),
            Command::Context(command) => context::run(command).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Completion(args) => completion::completion(args).await,
            Command::Man(args) => completion::man(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            client::print_error(&error);
            if error.downcast_ref::<audit::ChainBroken>().is_some() {
                return ExitCode::from(2);
            }
            if error.downcast_ref::<client_drift::DriftFound>().is_some() {
                return ExitCode::from(client_drift::DRIFT_EXIT_STATUS);
            }
            ExitCode::FAILURE
        }
    }
}

/// Every example shown in `--help` (and in the README's and
/// docs/CONFIGURATION.md's shell blocks) parses, and a `serve` example would
/// not be refused at start-up for listening in plain HTTP off loopback.
#[cfg(test)]
mod examples {
    use super::{Cli, Command};
    use clap::{CommandFactory, Parser};

    /// The commands of a shell line: words per command, with comments,
    /// redirections (and their targets), quotes and escapes handled.
    fn shell_commands(line: &str) -> Vec<Vec<String>> {
        let mut commands = vec![Vec::new()];
        let mut word: Option<String> = None;
        let mut skip_next = false;
        let mut chars = line.chars().peekable();
        let finish =
            |word: &mut Option<String>, skip: &mut bool, commands: &mut Vec<Vec<String>>| {
                if let Some(w) = word.take() {
                    if std::mem::take(skip) {
                        return;
                    }
                    commands.last_mut().expect("one").push(w);
                }
            };
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let w = word.get_or_insert_with(String::new);
                    for q in chars.by_ref() {
                        if q == '\'' {
                            break;
                        }
                        w.push(q);
                    }
                }
                '"' => {
                    let w = word.get_or_insert_with(String::new);
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => break,
                            '\\' => w.extend(chars.next()),
                            q => w.push(q),
                        }
                    }
                }
                '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
                '#' if word.is_none() => break,
                c if c.is_whitespace() => finish(&mut word, &mut skip_next, &mut commands),
                '|' | ';' | '&' => {
                    finish(&mut word, &mut skip_next, &mut commands);
                    commands.push(Vec::new());
                }
                '<' | '>' => {
                    finish(&mut word, &mut skip_next, &mut commands);
                    skip_next = true;
                }
                c => word.get_or_insert_with(String::new).push(c),
            }
        }
        finish(&mut word, &mut skip_next, &mut commands);
        commands.retain(|c| !c.is_empty());
        commands
    }

    /// The `fleetreg …` commands in `text`: lines (continued with a trailing
    /// `\`) whose first word, after an optional `$ ` prompt, is `fleetreg`,
    /// and the `fleetreg` commands piped into or following others on them.
    fn fleetreg_commands(text: &str) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let mut joined = String::new();
        for line in text.lines() {
            if let Some(head) = line.trim_end().strip_suffix('\\') {
                joined.push_str(head);
                joined.push(' ');
                continue;
            }
            joined.push_str(line);
            let line = std::mem::take(&mut joined);
            let trimmed = line.trim_start();
            let trimmed = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
            let commands = shell_commands(trimmed);
            let leads = commands.first().is_some_and(|c| c[0] == "fleetreg");
            let piped = commands.len() > 1 && commands.iter().any(|c| c[0] == "fleetreg");
            if leads || piped {
                out.extend(
                    commands
                        .into_iter()
                        .filter(|c| c[0] == "fleetreg")
                        .map(|c| (line.trim().to_owned(), c)),
                );
            }
        }
        out
    }

    /// Every help text of `command` and its subcommands.
    fn help_texts(command: &clap::Command, out: &mut Vec<(String, String)>) {
        let texts = [
            command.get_after_help(),
            command.get_after_long_help(),
            command.get_before_help(),
            command.get_before_long_help(),
            command.get_long_about(),
            command.get_about(),
        ];
        for text in texts.into_iter().flatten() {
            out.push((command.get_name().to_owned(), text.to_string()));
        }
        for sub in command.get_subcommands() {
            help_texts(sub, out);
        }
    }

    /// Why `argv` is not a working example, if it is not.
    fn problem(argv: &[String]) -> Option<String> {
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Serve(args),
            }) => crate::serve::refused_listen(&args).map(|listen| {
                format!("serve would refuse to listen on {listen} without TLS or --allow-insecure-listen")
            }),
            Ok(_) => None,
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    fn check(source: &str, examples: &[(String, Vec<String>)]) -> Vec<String> {
        examples
            .iter()
            .filter_map(|(line, argv)| {
                problem(argv).map(|why| format!("{source}: `{line}`:\n    {}", why.trim()))
            })
            .collect()
    }

    #[test]
    fn every_help_example_parses() {
        let mut texts = Vec::new();
        help_texts(&Cli::command(), &mut texts);
        let mut failures = Vec::new();
        let mut count = 0;
        for (name, text) in &texts {
            let examples = fleetreg_commands(text);
            count += examples.len();
            failures.extend(check(&format!("`{name} --help`"), &examples));
        }
        assert!(count > 50, "only {count} examples found in the help texts");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_shell_example_in_the_docs_parses() {
        let mut failures = Vec::new();
        let mut count = 0;
        for (source, text) in [
            ("README.md", include_str!("../../../README.md")),
            (
                "docs/CONFIGURATION.md",
                include_str!("../../../docs/CONFIGURATION.md"),
            ),
        ] {
            let mut in_sh = false;
            let mut block = String::new();
            for line in text.lines() {
                match line.trim() {
                    "```sh" | "```bash" | "```console" | "```shell" => in_sh = true,
                    "```" if in_sh => {
                        in_sh = false;
                        let examples = fleetreg_commands(&std::mem::take(&mut block));
                        count += examples.len();
                        failures.extend(check(source, &examples));
                    }
                    _ if in_sh => {
                        block.push_str(line);
                        block.push('\n');
                    }
                    _ => {}
                }
            }
        }
        assert!(count > 30, "only {count} examples found in the docs");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_serve_help_configuration_block_loads() {
        let help = Cli::command()
            .find_subcommand("serve")
            .and_then(|c| c.get_after_help().map(ToString::to_string))
            .expect("serve has examples");
        let block: String = help
            .lines()
            .skip_while(|l| l.trim() != "cluster_registry:")
            .take_while(|l| !l.trim().is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
            .collect();
        assert!(!block.is_empty(), "{help}");
        if let Err(error) = fleetreg_server::settings::Settings::from_yaml(&block) {
            panic!("{error}\n{block}");
        }
    }

    /// The first ```yaml block of docs/CONFIGURATION.md loads as a
    /// configuration file, says where it listens, and names hosts a reader's
    /// machine resolves (loopback addresses, not compose service names).
    #[test]
    fn the_configuration_example_loads() {
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let block: String = doc
            .lines()
            .skip_while(|l| l.trim() != "```yaml")
            .skip(1)
            .take_while(|l| l.trim() != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            !block.is_empty(),
            "no ```yaml block in docs/CONFIGURATION.md"
        );
        let settings = match fleetreg_server::settings::Settings::from_yaml(&block) {
            Ok(settings) => settings,
            Err(error) => panic!("{error}\n{block}"),
        };
        let yaml: serde_yaml::Value = serde_yaml::from_str(&block).expect("YAML");
        assert!(
            yaml["cluster_registry"]["listen"].is_string(),
            "the example names its listen address:\n{block}"
        );
        assert!(
            settings.listen.ip().is_loopback(),
            "plain HTTP off loopback is refused at start-up: {}",
            settings.listen
        );
        let urls = [
            Some(settings.database_url.clone()),
            settings.redis_url.clone(),
        ];
        for url in urls.into_iter().flatten() {
            let host = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            let resolves = host.as_deref().is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok()
            });
            assert!(
                resolves || url.starts_with("sqlite:"),
                "{url}: use a host that resolves anywhere (127.0.0.1)"
            );
        }
    }

    #[test]
    fn the_shell_reader_finds_commands() {
        let found = fleetreg_commands(
            "  fleetreg a --x 'b c' \\\n      --y \"d\" # note\n\
             vault read x | fleetreg b - < in.txt\n\
             sleep 1; fleetreg c -o csv > out.csv &\n\
             The server is --server.\n$ fleetreg d\n",
        );
        let argv: Vec<Vec<String>> = found.into_iter().map(|(_, argv)| argv).collect();
        assert_eq!(
            argv,
            [
                vec!["fleetreg", "a", "--x", "b c", "--y", "d"],
                vec!["fleetreg", "b", "-"],
                vec!["fleetreg", "c", "-o", "csv"],
                vec!["fleetreg", "d"],
            ]
        );
        // The old serve example is caught.
        let argv: Vec<String> = ["fleetreg", "serve", "--listen", "0.0.0.0:8080"]
            .map(String::from)
            .to_vec();
        assert!(problem(&argv).is_some());
    }
}
