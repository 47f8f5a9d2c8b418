//! The seed's `registry.yml` document (`clients: {name: entry}`), as imported
//! and exported: validation of a whole file at once, and the plan of an import.

use crate::client::{Client, ClientSpec};
use crate::{ClientName, Error, NewClient};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most clients one import may carry.
pub const MAX_IMPORT_CLIENTS: usize = 20_000;

/// A registry document. Entries stay raw until [`RegistryFile::validate`],
/// so every bad entry is reported, each with its client and field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// Client name → entry (the seed's structure).
    #[schema(value_type = BTreeMap<String, Object>)]
    pub clients: BTreeMap<String, serde_json::Value>,
}

/// One problem of an import: which client, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportProblem {
    /// The client's name as written in the file.
    pub client: String,
    /// The field (`server.ip`, `status`, `name` for the key itself).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl RegistryFile {
    /// The document for `clients`, sorted by name (serialising it gives the
    /// same text for the same registry).
    pub fn from_clients<'a>(clients: impl IntoIterator<Item = &'a Client>) -> RegistryFile {
        RegistryFile {
            clients: clients
                .into_iter()
                .map(|c| {
                    let entry = serde_json::to_value(&c.spec).unwrap_or_default();
                    (c.name.to_string(), entry)
                })
                .collect(),
        }
    }

    /// Every entry validated, or every problem found (nothing is taken from
    /// a file with any problem).
    pub fn validate(&self) -> Result<Vec<NewClient>, Vec<ImportProblem>> {
        let mut problems = Vec::new();
        if self.clients.len() > MAX_IMPORT_CLIENTS {
            problems.push(ImportProblem {
                client: String::new(),
                field: "clients".into(),
                reason: format!("at most {MAX_IMPORT_CLIENTS} clients per import"),
            });
            return Err(problems);
        }
        let mut valid = Vec::with_capacity(self.clients.len());
        for (name, entry) in &self.clients {
            let problem = |field: String, reason: String| ImportProblem {
                client: name.clone(),
                field,
                reason,
            };
            let parsed_name = ClientName::parse(name);
            let spec = serde_path_to_error::deserialize::<_, ClientSpec>(entry)
                .map_err(|e| {
                    let field = e.path().to_string();
                    let reason = e.into_inner().to_string();
                    problem(field, reason)
                })
                .and_then(|spec| {
                    spec.validate()
                        .map_err(|e: Error| problem(e.field().to_owned(), e.reason().to_owned()))
                });
            match (parsed_name, spec) {
                (Ok(name), Ok(spec)) => valid.push(NewClient { name, spec }),
                (name, spec) => {
                    if let Err(e) = name {
                        problems.push(problem("name".into(), e.reason().to_owned()));
                    }
                    if let Err(p) = spec {
                        problems.push(p);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(valid)
        } else {
            Err(problems)
        }
    }
}

/// What an import did (or, with `dry_run`, would do), by client name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportPlan {
    /// Clients that did not exist.
    pub created: Vec<String>,
    /// Clients whose entry differs.
    pub updated: Vec<String>,
    /// Clients already as in the file.
    pub unchanged: Vec<String>,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_is_reported_with_client_and_field() {
        let file: RegistryFile = serde_json::from_value(json!({"clients": {
            "good": {"status": "deployed"},
            "bad-ip": {"server": {"ip": "300.1.1.1"}},
            "Bad_Name": {},
            "bad-enum": {"role": "beta"},
            "bad-date": {"maintenance": {"last_os_update": "yesterday"}},
        }}))
        .unwrap();
        let problems = file.validate().unwrap_err();
        let seen: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.client.as_str(), p.field.as_str()))
            .collect();
        assert!(seen.contains(&("bad-ip", "server.ip")), "{problems:?}");
        assert!(seen.contains(&("Bad_Name", "name")), "{problems:?}");
        assert!(seen.contains(&("bad-enum", "role")), "{problems:?}");
        assert!(
            seen.contains(&("bad-date", "maintenance.last_os_update")),
            "{problems:?}"
        );
        assert!(!seen.iter().any(|(c, _)| *c == "good"));
    }
}
