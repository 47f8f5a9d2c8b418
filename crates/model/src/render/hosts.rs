//! A laptop's records as a marked block of `/etc/hosts` lines, and the
//! replacement of that block in an existing hosts file.

use crate::NodeConfig;
use std::collections::BTreeSet;

/// The line that opens fleetreg's block in a hosts file.
pub const HOSTS_BEGIN: &str = "# BEGIN fleetreg";
/// The line that closes fleetreg's block in a hosts file.
pub const HOSTS_END: &str = "# END fleetreg";

/// `config`'s records as hosts-file lines `ADDRESS HOSTNAME`, sorted by
/// hostname (then address) without repeats, between a [`HOSTS_BEGIN`] and a
/// [`HOSTS_END`] line; every line ends in `\n`. No records: just the two
/// markers (which removes earlier entries when written with
/// [`replace_hosts_block`]).
pub fn render_hosts_block(config: &NodeConfig) -> String {
    let lines: BTreeSet<(&str, String)> = config
        .records
        .iter()
        .map(|r| (r.hostname.as_str(), r.address.to_string()))
        .collect();
    let mut block = format!("{HOSTS_BEGIN}\n");
    for (hostname, address) in lines {
        block.push_str(&format!("{address} {hostname}\n"));
    }
    block.push_str(HOSTS_END);
    block.push('\n');
    block
}

/// Whether `line` (without its `\n`) is the marker `marker`, ignoring
/// trailing whitespace (a `\r` of a CRLF file included).
fn is_marker(line: &str, marker: &str) -> bool {
    line.trim_end() == marker
}

/// The byte range of the block to replace in `file`: from the start of the
/// last [`HOSTS_BEGIN`] line before the first [`HOSTS_END`] line that has a
/// `HOSTS_BEGIN` before it, to the end of that `HOSTS_END` line (its `\n`
/// included). `None` when there is no such pair.
fn find_block(file: &str) -> Option<(usize, usize)> {
    let mut begin = None;
    let mut offset = 0;
    for line in file.split_inclusive('\n') {
        let text = line.strip_suffix('\n').unwrap_or(line);
        if is_marker(text, HOSTS_BEGIN) {
            begin = Some(offset);
        } else if is_marker(text, HOSTS_END) {
            if let Some(start) = begin {
                return Some((start, offset + line.len()));
            }
        }
        offset += line.len();
    }
    None
}

/// `existing_file` with its fleetreg block replaced by `block` (from
/// [`render_hosts_block`]), or `block` appended (after a `\n` if the file
/// does not end in one) when it has none. Every byte outside the block is
/// kept as it was.
///
/// The block is the first [`HOSTS_END`] line that has a [`HOSTS_BEGIN`] line
/// before it, from the last such `HOSTS_BEGIN` line (a stray opening marker
/// above it, or a stray closing marker before any opening one, is left
/// alone as ordinary text). Replacing is idempotent:
/// `replace_hosts_block(&replace_hosts_block(f, b), b)` equals
/// `replace_hosts_block(f, b)`, and a newer block replaces an older one.
pub fn replace_hosts_block(existing_file: &str, block: &str) -> String {
    match find_block(existing_file) {
        Some((start, end)) => {
            let mut out = String::with_capacity(existing_file.len() + block.len());
            out.push_str(&existing_file[..start]);
            out.push_str(block);
            out.push_str(&existing_file[end..]);
            out
        }
        None => {
            let mut out = existing_file.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::laptop;
    use proptest::prelude::*;

    const BLOCK_A: &str = "# BEGIN fleetreg\n100.64.0.1 a.example.com\n# END fleetreg\n";
    const BLOCK_B: &str = "# BEGIN fleetreg\n100.64.0.2 b.example.com\n# END fleetreg\n";

    #[test]
    fn the_block_lists_records_by_hostname() {
        assert_eq!(
            render_hosts_block(&laptop()),
            "# BEGIN fleetreg\n\
             fd7a:115c:a1e0::1 chat.curiios.com\n\
             100.64.0.1 photos.curiios.com\n\
             100.64.0.2 photos.vinaysachdeva.com\n\
             # END fleetreg\n"
        );
        let mut reversed = laptop();
        reversed.records.reverse();
        assert_eq!(render_hosts_block(&reversed), render_hosts_block(&laptop()));
    }

    #[test]
    fn a_file_without_a_block_gets_it_appended() {
        assert_eq!(replace_hosts_block("", BLOCK_A), BLOCK_A);
        let hosts = "127.0.0.1 localhost\n::1 localhost";
        assert_eq!(
            replace_hosts_block(hosts, BLOCK_A),
            format!("{hosts}\n{BLOCK_A}")
        );
    }

    #[test]
    fn an_existing_block_is_replaced_in_place() {
        let before = "127.0.0.1 localhost\n";
        let after = "# keep me\n10.0.0.1 other\n";
        let file = format!("{before}{BLOCK_A}{after}");
        assert_eq!(
            replace_hosts_block(&file, BLOCK_B),
            format!("{before}{BLOCK_B}{after}")
        );
        // CRLF files and trailing blanks on the markers still match.
        let crlf = "a\r\n# BEGIN fleetreg \r\nold\r\n# END fleetreg\r\nb\r\n";
        assert_eq!(
            replace_hosts_block(crlf, BLOCK_B),
            format!("a\r\n{BLOCK_B}b\r\n")
        );
        // A closing marker on the last line without a newline.
        assert_eq!(
            replace_hosts_block("x\n# BEGIN fleetreg\n# END fleetreg", BLOCK_B),
            format!("x\n{BLOCK_B}")
        );
    }

    #[test]
    fn stray_markers_are_left_alone() {
        let file = "# END fleetreg\n# BEGIN fleetreg\nmine\n";
        let once = replace_hosts_block(file, BLOCK_A);
        assert_eq!(once, format!("{file}{BLOCK_A}"));
        assert_eq!(
            replace_hosts_block(&once, BLOCK_B),
            format!("{file}{BLOCK_B}")
        );
    }

    /// Lines a hosts file may hold, markers (with variations) included.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(HOSTS_BEGIN.to_owned()),
            Just(HOSTS_END.to_owned()),
            Just(format!("{HOSTS_BEGIN}\r")),
            Just(format!("  {HOSTS_END}")),
            Just(String::new()),
            "[0-9.]{1,15} [a-z.-]{1,20}",
            "# [ -~]{0,30}",
            "[ -~\t\r]{0,40}",
        ]
    }

    fn file() -> impl Strategy<Value = String> {
        (prop::collection::vec(line(), 0..12), any::<bool>()).prop_map(|(lines, final_newline)| {
            let mut text = lines.join("\n");
            if final_newline && !text.is_empty() {
                text.push('\n');
            }
            text
        })
    }

    /// Files without marker lines.
    fn plain_file() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(line().prop_filter("a marker", |l| !has_marker(l)), 0..12),
            any::<bool>(),
        )
            .prop_map(|(lines, final_newline)| {
                let mut text = lines.join("\n");
                if final_newline && !text.is_empty() {
                    text.push('\n');
                }
                text
            })
    }

    fn block() -> impl Strategy<Value = String> {
        prop::collection::vec(
            "[0-9]{1,3}(\\.[0-9]{1,3}){3} [a-z]{1,10}\\.example\\.com",
            0..5,
        )
        .prop_map(|lines| {
            let mut block = format!("{HOSTS_BEGIN}\n");
            for line in lines {
                block.push_str(&line);
                block.push('\n');
            }
            format!("{block}{HOSTS_END}\n")
        })
    }

    fn has_marker(text: &str) -> bool {
        text.lines()
            .any(|l| is_marker(l, HOSTS_BEGIN) || is_marker(l, HOSTS_END))
    }

    proptest! {
        #[test]
        fn replacing_is_idempotent(file in file(), block in block()) {
            let once = replace_hosts_block(&file, &block);
            prop_assert_eq!(&replace_hosts_block(&once, &block), &once);
            prop_assert!(once.contains(&block));
        }

        #[test]
        fn a_newer_block_replaces_an_older_one(file in file(), a in block(), b in block()) {
            let via_a = replace_hosts_block(&replace_hosts_block(&file, &a), &b);
            prop_assert_eq!(via_a, replace_hosts_block(&file, &b));
        }

        #[test]
        fn text_outside_the_block_is_kept(
            before in plain_file(),
            after in plain_file(),
            old in block(),
            new in block(),
        ) {
            // Without markers around it, the block is exactly the old one.
            let before = if before.is_empty() || before.ends_with('\n') {
                before
            } else {
                format!("{before}\n")
            };
            let file = format!("{before}{old}{after}");
            prop_assert_eq!(
                replace_hosts_block(&file, &new),
                format!("{before}{new}{after}")
            );
        }

        #[test]
        fn any_file_keeps_its_bytes_outside_the_block(file in file(), block in block()) {
            let out = replace_hosts_block(&file, &block);
            match find_block(&file) {
                Some((start, end)) => {
                    prop_assert_eq!(&out[..start], &file[..start]);
                    prop_assert_eq!(&out[start..start + block.len()], block.as_str());
                    prop_assert_eq!(&out[start + block.len()..], &file[end..]);
                }
                None => {
                    prop_assert!(out.starts_with(&file));
                    prop_assert!(out.ends_with(&block));
                    prop_assert!(out.len() <= file.len() + 1 + block.len());
                }
            }
        }
    }
}
