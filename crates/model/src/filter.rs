//! List filters and pagination of `GET /api/v1/clusters` (seed 4.3).

use crate::enums::{ClusterState, ClusterType, Environment};
use crate::labels::{validate_label_key, validate_label_value};
use crate::Error;

/// Default `page_size`.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest `page_size` accepted.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Most `label=` conditions in one list request: each is a join or a
/// containment test, and the database's expression limits are far below
/// what a query string can carry.
pub const MAX_LABEL_SELECTORS: usize = 16;

/// One `label=key=value` condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Label key.
    pub key: String,
    /// Required value.
    pub value: String,
}

impl LabelSelector {
    /// Parses `key=value`, checking both halves against label syntax.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| Error::invalid("label", format!("expected key=value, got {raw:?}")))?;
        validate_label_key(key).map_err(|e| Error::invalid("label", e.reason()))?;
        validate_label_value(key, value).map_err(|e| Error::invalid("label", e.reason()))?;
        Ok(LabelSelector {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// The filters of a cluster list; every given condition must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClusterFilter {
    /// Substring of the name (case-insensitive).
    pub name: Option<String>,
    /// Exact type.
    pub cluster_type: Option<ClusterType>,
    /// Exact environment.
    pub environment: Option<Environment>,
    /// Exact region.
    pub region: Option<String>,
    /// Exact status state.
    pub state: Option<ClusterState>,
    /// Discovered GPU nodes present (true) or absent/unknown (false).
    pub has_gpu: Option<bool>,
    /// Discovered CNF workloads present (true) or absent/unknown (false).
    pub has_cnf: Option<bool>,
    /// Labels that must all match.
    pub labels: Vec<LabelSelector>,
}

/// A page request: 1-based `page`, `page_size` in 1..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    /// 1-based page number.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl Page {
    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.page_size)
    }

    /// Number of pages for `total` items (0 when there are none).
    pub fn total_pages(&self, total: u64) -> u64 {
        total.div_ceil(u64::from(self.page_size))
    }
}

/// Reads a boolean query value (`true`/`false`/`1`/`0`, any case).
pub fn parse_bool(field: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::invalid(
            field,
            format!("must be true or false; got {value:?}"),
        )),
    }
}

pub(crate) fn parse_number(field: &str, value: &str, min: u32, max: u32) -> Result<u32, Error> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("must be an integer from {min} to {max}; got {value:?}"),
            )
        })
}

pub(crate) fn parse_enum<T>(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    expected: String,
) -> Result<T, Error> {
    // Exactly as the API writes it, like a body: `SPOKE`, not `spoke`.
    parse(value)
        .ok_or_else(|| Error::invalid(field, format!("must be one of {expected}; got {value:?}")))
}

impl ClusterFilter {
    /// Parses the query pairs of a list request into a filter and a page.
    ///
    /// Unknown parameters and repeated single-valued ones are rejected so a typo
    /// never silently widens a query; `label` may repeat.
    pub fn from_query<I, K, V>(pairs: I) -> Result<(ClusterFilter, Page), Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut filter = ClusterFilter::default();
        let mut page = Page::default();
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            if key != "label" {
                if seen.iter().any(|k| k == key) {
                    return Err(Error::invalid(key, "given more than once"));
                }
                seen.push(key.to_owned());
            }
            if value.chars().any(char::is_control) {
                return Err(Error::invalid(key, "must not contain control characters"));
            }
            match key {
                "name" => filter.name = Some(value.to_lowercase()),
                "cluster_type" => {
                    filter.cluster_type = Some(parse_enum(key, value, ClusterType::parse, ClusterType::expected())?)
                }
                "environment" => {
                    filter.environment = Some(parse_enum(key, value, Environment::parse, Environment::expected())?)
                }
                "region" => filter.region = Some(value.to_owned()),
                "state" => filter.state = Some(parse_enum(key, value, ClusterState::parse, ClusterState::expected())?),
                "has_gpu" => filter.has_gpu = Some(parse_bool(key, value)?),
                "has_cnf" => filter.has_cnf = Some(parse_bool(key, value)?),
                "label" => {
                    if filter.labels.len() == MAX_LABEL_SELECTORS {
                        return Err(Error::invalid(
                            key,
                            format!("at most {MAX_LABEL_SELECTORS} label conditions per request"),
                        ));
                    }
                    filter.labels.push(LabelSelector::parse(value)?)
                }
                "page" => page.page = parse_number(key, value, 1, 1_000_000)?,
                "page_size" => page.page_size = parse_number(key, value, 1, MAX_PAGE_SIZE)?,
                other => {
                    return Err(Error::invalid(
                        other,
                        "unknown query parameter; expected name, cluster_type, environment, region, state, has_gpu, has_cnf, label, page or page_size",
                    ))
                }
            }
        }
        filter
            .labels
            .sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
        filter.labels.dedup();
        Ok((filter, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(q: &[(&str, &str)]) -> Result<(ClusterFilter, Page), Error> {
        ClusterFilter::from_query(q.iter().copied())
    }

    #[test]
    fn parses_every_filter() {
        let (f, p) = parse(&[
            ("name", "Prod"),
            ("cluster_type", "SPOKE"),
            ("environment", "PRODUCTION"),
            ("region", "us-east-1"),
            ("state", "ONLINE"),
            ("has_gpu", "true"),
            ("has_cnf", "false"),
            ("label", "team=platform"),
            ("label", "tier="),
            ("page", "2"),
            ("page_size", "50"),
        ])
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("prod"));
        assert_eq!(f.environment, Some(Environment::Production));
        assert_eq!(f.labels.len(), 2);
        assert_eq!((p.page, p.page_size), (2, 50));
        assert_eq!(p.offset(), 50);
    }

    #[test]
    fn rejects_bad_input_with_the_field() {
        for (q, field) in [
            (vec![("page", "0")], "page"),
            (vec![("page_size", "101")], "page_size"),
            (vec![("page_size", "abc")], "page_size"),
            (vec![("has_gpu", "yes")], "has_gpu"),
            (vec![("state", "UP")], "state"),
            (vec![("state", "online")], "state"),
            (vec![("environment", "production")], "environment"),
            (vec![("label", "team")], "label"),
            (vec![("label", "bad key=v")], "label"),
            (vec![("enviroment", "LAB")], "enviroment"),
            (vec![("region", "a"), ("region", "b")], "region"),
            (vec![("name", "a\u{0}b")], "name"),
            (vec![("region", "\u{0}")], "region"),
        ] {
            assert_eq!(parse(&q).unwrap_err().field(), field, "{q:?}");
        }
    }

    #[test]
    fn label_conditions_are_capped() {
        let labels: Vec<(String, String)> = (0..=MAX_LABEL_SELECTORS)
            .map(|i| ("label".to_owned(), format!("k{i}=v")))
            .collect();
        let (f, _) = ClusterFilter::from_query(labels[..MAX_LABEL_SELECTORS].to_vec()).unwrap();
        assert_eq!(f.labels.len(), MAX_LABEL_SELECTORS);
        let error = ClusterFilter::from_query(labels).unwrap_err();
        assert_eq!(error.field(), "label");
    }

    #[test]
    fn total_pages() {
        let p = Page {
            page: 1,
            page_size: 20,
        };
        assert_eq!(p.total_pages(0), 0);
        assert_eq!(p.total_pages(20), 1);
        assert_eq!(p.total_pages(21), 2);
    }

    proptest! {
        #[test]
        fn label_selectors_round_trip(key in "[a-z]([a-z0-9.-]{0,20}[a-z0-9])?", value in "([A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?)?") {
            let s = LabelSelector::parse(&format!("{key}={value}")).unwrap();
            prop_assert_eq!(s.key, key);
            prop_assert_eq!(s.value, value);
        }

        #[test]
        fn arbitrary_queries_never_panic(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..6)) {
            let _ = ClusterFilter::from_query(pairs);
        }

        #[test]
        fn page_size_in_range_is_accepted(n in 1u32..=100) {
            let (_, p) = ClusterFilter::from_query([("page_size", n.to_string())]).unwrap();
            prop_assert_eq!(p.page_size, n);
        }
    }
}
