//! Leak markers and the search for them, shared by the marker leak tests of
//! issue 5: `crates/server/tests/api/leaks.rs` (in-process server) and
//! `crates/cli/tests/cli/leaks.rs` (the real binaries as child processes).
//!
//! A marker ([`marker`]) is a unique string a test uses as a secret. It is
//! found plain, by its random part alone, or inside base64 of any data that
//! holds it (standard and URL-safe alphabets, padded or not, at each of the
//! three byte offsets).

use base64::Engine;

/// A fresh leak marker of `kind`: `leakmark-KIND-RANDOM`, where `RANDOM` is
/// 32 hex digits (a UUID) that nothing else contains. `kind` (letters only,
/// no `-`) tells the markers of one test apart in a report.
pub fn marker(kind: &str) -> String {
    format!("leakmark-{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// One form in which a marker could appear.
pub struct Needle {
    marker: String,
    form: String,
    bytes: Vec<u8>,
}

/// Every form of `marker` searched for: itself, its random part alone, and the
/// base64 of any data containing it, in the standard and URL-safe alphabets.
/// Base64 encodes 3 bytes as 4 characters, so the encoding of data holding the
/// marker depends on the marker's offset modulo 3; for each offset the characters
/// of the groups made only of marker bytes are the same whatever surrounds it
/// (and whether or not there is padding), and that core is the needle.
pub fn needles(marker: &str) -> Vec<Needle> {
    let random = marker.rsplit('-').next().unwrap();
    let mut out = vec![
        Needle {
            marker: marker.into(),
            form: "plain".into(),
            bytes: marker.as_bytes().to_vec(),
        },
        Needle {
            marker: marker.into(),
            form: "plain (random part)".into(),
            bytes: random.as_bytes().to_vec(),
        },
    ];
    let engines = [
        ("base64", base64::engine::general_purpose::STANDARD_NO_PAD),
        (
            "base64url",
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ];
    for (name, engine) in engines {
        for shift in 0..3usize {
            let mut data = vec![b'x'; shift];
            data.extend_from_slice(marker.as_bytes());
            let encoded = engine.encode(&data);
            let whole_groups = data.len() / 3 * 4;
            let start = if shift == 0 { 0 } else { 4 };
            out.push(Needle {
                marker: marker.into(),
                form: format!("{name} at offset {shift}"),
                bytes: encoded.as_bytes()[start..whole_groups].to_vec(),
            });
        }
    }
    out
}

/// The markers (and forms) found in `haystack`, each with some context.
///
/// Every needle is ASCII, and a lossy UTF-8 conversion keeps every ASCII byte,
/// so searching the converted text finds exactly what a byte search would; it
/// uses the standard library's substring search, fast enough for the many
/// megabytes of a TRACE log even in an unoptimised test build.
pub fn find_markers(haystack: &[u8], needles: &[Needle]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    needles
        .iter()
        .filter_map(|n| {
            let needle = std::str::from_utf8(&n.bytes).expect("ASCII needle");
            let at = text.find(needle)?;
            let mut from = at.saturating_sub(200);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (at + needle.len() + 200).min(text.len());
            while !text.is_char_boundary(to) {
                to += 1;
            }
            Some(format!(
                "{} ({}) at byte {at}: …{}…",
                n.marker,
                n.form,
                &text[from..to]
            ))
        })
        .collect()
}

/// Searches every `(where, bytes)` and collects each hit with where it was.
pub struct LeakReport {
    needles: Vec<Needle>,
    /// Every place searched, with its size.
    pub searched: Vec<String>,
    leaks: Vec<String>,
}

impl LeakReport {
    /// A report searching for every form of each of `markers`.
    pub fn new(markers: &[&str]) -> LeakReport {
        LeakReport {
            needles: markers.iter().flat_map(|m| needles(m)).collect(),
            searched: Vec::new(),
            leaks: Vec::new(),
        }
    }

    /// Searches `haystack`, naming it `place` in the report.
    pub fn search(&mut self, place: &str, haystack: &[u8]) {
        self.searched
            .push(format!("{place} ({} bytes)", haystack.len()));
        for hit in find_markers(haystack, &self.needles) {
            self.leaks.push(format!("{place}: {hit}"));
        }
    }

    /// Panics listing every hit, if there was one.
    pub fn assert_clean(&self) {
        assert!(
            self.leaks.is_empty(),
            "secret markers leaked:\n{}\n(searched: {:?})",
            self.leaks.join("\n"),
            self.searched
        );
    }
}

/// The control: the same search finds the markers where they are, in every form.
pub fn assert_search_finds_markers(markers: &[&str]) {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let b64url = &base64::engine::general_purpose::URL_SAFE;
    for &marker in markers {
        let needles = needles(marker);
        let holders: Vec<String> = vec![
            format!("{{\"token\":\"{marker}\"}}"),
            format!("Authorization: Bearer {marker}\r\n"),
            b64.encode(marker),
            b64.encode(format!("a{marker}")),
            b64.encode(format!("ab{marker}zz")),
            b64url.encode(format!("user:{marker}")),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{marker}!")),
            b64.encode(format!(
                "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: {marker}\n"
            )),
        ];
        for holder in holders {
            assert!(
                !find_markers(holder.as_bytes(), &needles).is_empty(),
                "the search misses {marker} in {holder}"
            );
        }
        assert!(
            find_markers(b"nothing to see here", &needles).is_empty(),
            "the search finds {marker} where it is not"
        );
    }
}
