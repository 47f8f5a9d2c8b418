//! The cluster name: a DNS label of 3 to 63 characters.

use crate::Error;
use serde::{Deserialize, Serialize};

/// A validated cluster name matching `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

/// Why `name` is not a DNS label of `min` to 63 characters, if it is not.
pub(crate) fn dns_label_problem(name: &str, min: usize) -> Option<String> {
    let bytes = name.as_bytes();
    if bytes.len() < min || bytes.len() > 63 {
        return Some(format!(
            "must be {min} to 63 characters of lowercase letters, digits and '-'"
        ));
    }
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "character {bad:?} is not allowed; use lowercase letters, digits and '-'"
        ));
    }
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Some("must start and end with a lowercase letter or digit".to_owned());
    }
    None
}

impl ClusterName {
    /// Validates `name` and wraps it.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match dns_label_problem(name, 3) {
            Some(reason) => Err(Error::InvalidName {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(ClusterName(name.to_owned())),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClusterName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        ClusterName::parse(&value)
    }
}

impl From<ClusterName> for String {
    fn from(name: ClusterName) -> String {
        name.0
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated client name: a DNS label, `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientName(String);

/// Names that are routes beside `/api/v1/clients/{name}`.
pub const RESERVED_CLIENT_NAMES: &[&str] = &["summary", "export", "import"];

impl ClientName {
    /// Validates `name` and wraps it (`VALIDATION_ERROR` on `name` otherwise).
    pub fn parse(name: &str) -> Result<Self, Error> {
        if RESERVED_CLIENT_NAMES.contains(&name) {
            return Err(Error::invalid(
                "name",
                format!("{name:?} is reserved (it is an API route under /api/v1/clients)"),
            ));
        }
        match dns_label_problem(name, 1) {
            Some(reason) => Err(Error::invalid("name", format!("{name:?} {reason}"))),
            None => Ok(ClientName(name.to_owned())),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        ClientName::parse(&value)
    }
}

impl From<ClientName> for String {
    fn from(name: ClientName) -> String {
        name.0
    }
}

impl std::fmt::Display for ClientName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed_regex_matches(s: &str) -> bool {
        let b = s.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        (3..=63).contains(&b.len())
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter().all(|&c| alnum(c) || c == b'-')
    }

    #[test]
    fn examples() {
        assert!(ClusterName::parse("prod-east-1").is_ok());
        assert!(ClusterName::parse("abc").is_ok());
        assert!(ClusterName::parse("a-b").is_ok());
        assert!(ClusterName::parse("ab").is_err());
        assert!(ClusterName::parse("-ab").is_err());
        assert!(ClusterName::parse("ab-").is_err());
        assert!(ClusterName::parse("Prod").is_err());
        assert!(ClusterName::parse("a_b").is_err());
        assert!(ClusterName::parse(&"a".repeat(63)).is_ok());
        assert!(ClusterName::parse(&"a".repeat(64)).is_err());
        assert!(ClusterName::parse("prod\u{e9}1").is_err());
    }

    #[test]
    fn client_names_are_dns_labels_of_one_char_or_more() {
        assert!(ClientName::parse("dev").is_ok());
        assert!(ClientName::parse("a").is_ok());
        assert!(ClientName::parse("a1-b").is_ok());
        assert!(ClientName::parse("").is_err());
        assert!(ClientName::parse("summary").is_err());
        assert!(ClientName::parse("-a").is_err());
        assert!(ClientName::parse("A").is_err());
        assert!(ClientName::parse(&"a".repeat(64)).is_err());
        assert_eq!(ClientName::parse("a_b").unwrap_err().field(), "name");
    }

    proptest! {
        #[test]
        fn agrees_with_seed_regex(s in "[a-z0-9_A-Z.\\-é]{0,70}") {
            prop_assert_eq!(ClusterName::parse(&s).is_ok(), seed_regex_matches(&s));
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z0-9][a-z0-9-]{1,61}[a-z0-9]") {
            let name = ClusterName::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
        }
    }
}
