//! Progress bars of the set-up phases (seeding clusters, clients and hosts,
//! registering the scheduler's clusters): drawn on stderr only when it is a
//! terminal, so piped and logged runs (and the tests) see none of it.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` steps titled `message`; hidden unless stderr is a terminal.
pub(crate) fn bar(len: u64, message: &str) -> ProgressBar {
    bar_on(std::io::stderr().is_terminal(), len, message)
}

/// [`bar`], with whether stderr is a terminal given.
fn bar_on(terminal: bool, len: u64, message: &str) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} ({per_sec}, ~{eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(message.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_unless_on_a_terminal() {
        let piped = super::bar_on(false, 10, "seed");
        assert!(piped.is_hidden());
        piped.inc(5);
        let shown = super::bar_on(true, 10, "seed");
        assert_eq!(shown.length(), Some(10));
        assert_eq!(shown.message(), "seed");
    }
}
