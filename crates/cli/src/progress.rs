//! Progress on long operations (`client import`, `vault rotate-master-key`;
//! `bench` has its own for its set-up): drawn on stderr only when stderr is a
//! terminal, so piped output, logs and the tests see none of it.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether progress is drawn: stderr is a terminal.
fn shown() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner titled `message` while one long request runs; hidden unless
/// stderr is a terminal. Clear it before printing the result.
pub fn spinner(message: &str) -> ProgressBar {
    spinner_on(shown(), message)
}

fn spinner_on(terminal: bool, message: &str) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner().with_message(message.to_owned());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    // Drawn at once, however quick the request turns out to be.
    spinner.tick();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// A bar of `len` steps titled `message`; hidden unless stderr is a terminal.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    bar_on(shown(), len, message)
}

fn bar_on(terminal: bool, len: u64, message: &str) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message.to_owned());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} (~{eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The re-wrap pass of `vault rotate-master-key` as a bar of clusters.
pub struct RewrapBar(ProgressBar);

impl RewrapBar {
    /// A bar shown only on a terminal.
    pub fn new() -> Self {
        RewrapBar(bar(0, "re-wrapping credentials"))
    }
}

impl fleetreg_server::credentials::rotate::RewrapProgress for RewrapBar {
    fn start(&self, clusters: u64) {
        self.0.set_length(clusters);
        self.0.set_position(0);
    }

    fn advance(&self) {
        self.0.inc(1);
        // Credentials stored since the count: the bar grows, never overflows.
        if self.0.length().is_some_and(|len| self.0.position() > len) {
            self.0.set_length(self.0.position());
        }
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use fleetreg_server::credentials::rotate::RewrapProgress;

    #[test]
    fn hidden_unless_on_a_terminal() {
        assert!(super::spinner_on(false, "importing").is_hidden());
        assert!(super::bar_on(false, 3, "re-wrapping").is_hidden());
        let spinner = super::spinner_on(true, "importing");
        assert_eq!(spinner.message(), "importing");
        spinner.finish_and_clear();
        let bar = super::bar_on(true, 3, "re-wrapping");
        assert_eq!(bar.length(), Some(3));
        bar.finish_and_clear();
    }

    #[test]
    fn the_rewrap_bar_follows_the_pass() {
        let bar = super::RewrapBar(super::bar_on(false, 0, "re-wrapping"));
        bar.start(2);
        assert_eq!(bar.0.length(), Some(2));
        for _ in 0..3 {
            bar.advance();
        }
        assert_eq!((bar.0.position(), bar.0.length()), (3, Some(3)));
        bar.finish();
    }
}
