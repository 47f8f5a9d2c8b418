//! `fleetreg completion SHELL` (clap_complete) and `fleetreg man` (clap_mangen):
//! shell completion scripts and roff man pages generated from the clap
//! definitions, so they always match `--help`.

use crate::output::write_stdout;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::PathBuf;

const COMPLETION_EXAMPLES: &str = "Examples:
  fleetreg completion bash > ~/.local/share/bash-completion/completions/fleetreg
  fleetreg completion zsh > ~/.zfunc/_fleetreg    # with fpath+=(~/.zfunc) before compinit
  fleetreg completion fish > ~/.config/fish/completions/fleetreg.fish
  fleetreg completion powershell >> $PROFILE";

const MAN_EXAMPLES: &str = "Examples:
  fleetreg man | man -l -
  fleetreg man --out-dir ~/.local/share/man/man1    # then: man fleetreg-cluster-list";

/// `fleetreg completion`.
#[derive(Args, Debug)]
#[command(after_help = COMPLETION_EXAMPLES)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `fleetreg man`.
#[derive(Args, Debug)]
#[command(after_help = MAN_EXAMPLES)]
pub struct ManArgs {
    /// Write fleetreg.1 and one page per subcommand (fleetreg-cluster-list.1, …)
    /// into this directory, creating it; without it, print fleetreg(1).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub async fn completion(args: CompletionArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::Cli::command(),
        "fleetreg",
        &mut script,
    );
    write_stdout(&String::from_utf8_lossy(&script))
}

/// Prints the top man page, or writes every page into `--out-dir`.
pub async fn man(args: ManArgs) -> anyhow::Result<()> {
    let command = crate::Cli::command();
    match args.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            write_stdout(&String::from_utf8_lossy(&page))
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .map_err(|e| anyhow::anyhow!("cannot write man pages to {}: {e}", dir.display()))?;
            eprintln!(
                "wrote fleetreg.1 and a page per subcommand to {}",
                dir.display()
            );
            Ok(())
        }
    }
}
