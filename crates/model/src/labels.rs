//! Kubernetes label syntax for cluster labels.

use crate::Error;
use std::collections::BTreeMap;

/// Cluster labels: Kubernetes-style `key: value` pairs, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// The most labels one cluster may carry.
pub const MAX_LABELS: usize = 64;

fn is_name_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters `[A-Za-z0-9._-]` that starts and ends alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), Error> {
    let field = || format!("labels.{key}");
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Err(Error::invalid(
                field(),
                "label key prefix must be a DNS subdomain (lowercase, at most 253 characters)",
            ));
        }
    }
    if !is_name_segment(name) {
        return Err(Error::invalid(
            field(),
            "label key name must be 1 to 63 characters [A-Za-z0-9._-], starting and ending alphanumeric",
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters `[A-Za-z0-9._-]` that
/// start and end alphanumeric.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || is_name_segment(value) {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("labels.{key}"),
            "label value must be empty or 1 to 63 characters [A-Za-z0-9._-], starting and ending alphanumeric",
        ))
    }
}

/// Checks every label of a set and their count.
pub fn validate_labels(labels: &Labels) -> Result<(), Error> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            "labels",
            format!("at most {MAX_LABELS} labels are allowed"),
        ));
    }
    for (key, value) in labels {
        validate_label_key(key)?;
        validate_label_value(key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys() {
        for ok in [
            "team",
            "cost-center",
            "app.kubernetes.io/name",
            "a",
            "A_b.c-9",
            "x/y",
        ] {
            assert!(validate_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-team",
            "team-",
            "a/b/c",
            "/x",
            "Example.com/x",
            "x/",
            &"k".repeat(64),
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        for ok in ["", "platform", "eng-001", "v1.2_3"] {
            assert!(validate_label_value("k", ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "x-", "a b", "ä", &"v".repeat(64)] {
            assert!(validate_label_value("k", bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn generated_valid_keys_pass(prefix in proptest::option::of("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,3}"),
                                     name in "[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?") {
            let key = match prefix { Some(p) => format!("{p}/{name}"), None => name };
            prop_assert!(validate_label_key(&key).is_ok());
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = validate_label_key(&s);
            let _ = validate_label_value("k", &s);
        }

        #[test]
        fn whitespace_is_rejected(a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
            let s = format!("{a} {b}");
            prop_assert!(validate_label_key(&s).is_err());
            prop_assert!(validate_label_value("k", &s).is_err());
        }
    }
}
