//! Kubernetes `labelSelector` query parameters: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)`, `k notin (a,b)`, joined by commas.

/// A parsed selector; every requirement must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    /// Parses a selector; `None` when it is malformed (the API server answers 400).
    pub fn parse(text: &str) -> Option<Selector> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Some(Selector { requirements })
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let get = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        self.requirements.iter().all(|req| match req {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key).then(|| Requirement::NotExists(key.to_owned()));
    }
    if let Some((k, v)) = part.split_once("!=") {
        let k = k.trim();
        return valid_key(k).then(|| Requirement::NotEquals(k.to_owned(), v.trim().to_owned()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        let k = k.trim();
        return valid_key(k).then(|| Requirement::Equals(k.to_owned(), v.trim().to_owned()));
    }
    if let Some((k, rest)) = part.split_once(" notin ") {
        let k = k.trim();
        return valid_key(k)
            .then_some(())
            .and(parse_set(rest))
            .map(|set| Requirement::NotIn(k.to_owned(), set));
    }
    if let Some((k, rest)) = part.split_once(" in ") {
        let k = k.trim();
        return valid_key(k)
            .then_some(())
            .and(parse_set(rest))
            .map(|set| Requirement::In(k.to_owned(), set));
    }
    valid_key(part).then(|| Requirement::Exists(part.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let labels = l(&[("app", "gpu-operator"), ("tier", "infra")]);
        let yes = [
            "",
            "app=gpu-operator",
            "app==gpu-operator,tier",
            "!missing",
            "app in (x, gpu-operator)",
            "tier notin (web)",
            "app!=web",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        let no = [
            "app=web",
            "missing",
            "!app",
            "app in (x,y)",
            "tier notin (infra)",
            "app!=gpu-operator",
        ];
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        assert_eq!(Selector::parse("a b c"), None);
        assert_eq!(Selector::parse("app in x"), None);
    }
}
