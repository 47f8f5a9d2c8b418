//! What the edge commands (`domain`, `node`, `service`, `routing`, `sync`)
//! share: reading `{"items": [...]}` answers, decoding them into the model's
//! types, the `If-Match` of a read-modify-write, the report of a deletion and
//! the output flag of the sectioned views.

use crate::client::ConnectArgs;
use crate::output::{print, write_stdout, Column, Format};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// The `items` of a list answer (`{"items": [...]}`); none when absent.
pub fn items(answer: &Value) -> Vec<Value> {
    answer["items"].as_array().cloned().unwrap_or_default()
}

/// `value` decoded as the model's `T`; `what` names it in the error.
pub fn typed<T: DeserializeOwned>(value: &Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| {
        anyhow::anyhow!("the server answered a {what} this fleetreg does not understand ({e})")
    })
}

/// Every item of a list answer decoded as `T`.
pub fn typed_items<T: DeserializeOwned>(answer: &Value, what: &str) -> anyhow::Result<Vec<T>> {
    items(answer).iter().map(|v| typed(v, what)).collect()
}

/// The `If-Match` value for a resource read just before: its revision as an ETag.
pub fn if_match(resource: &Value) -> Option<String> {
    resource["revision"].as_i64().map(|r| format!("\"{r}\""))
}

/// A time as the seed shows it: `2025-11-06T18:30:00Z`.
pub fn seed_time(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reports that the `kind` named `name` was deleted: a line for people, or
/// `{"name", "deleted": true}` in the machine formats.
pub fn print_deleted(format: Format, kind: &str, name: &str) -> anyhow::Result<()> {
    match format {
        Format::Table => write_stdout(&format!("{kind} {name} deleted\n")),
        format => {
            let result = json!({"name": name, "deleted": true});
            let columns = [
                Column {
                    header: "name",
                    pointer: "/name",
                },
                Column {
                    header: "deleted",
                    pointer: "/deleted",
                },
            ];
            print(format, &result, std::slice::from_ref(&result), &columns)
        }
    }
}

/// How a sectioned view (`routing show`, `sync health`) prints.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum ViewFormat {
    /// The seed's sections, for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
}

impl ViewFormat {
    /// The same format among the CLI's output formats.
    pub fn format(self) -> Format {
        match self {
            ViewFormat::Table => Format::Table,
            ViewFormat::Json => Format::Json,
            ViewFormat::Yaml => Format::Yaml,
        }
    }
}

/// Connection and output flags of a sectioned view.
#[derive(Args, Debug)]
pub struct ViewArgs {
    #[command(flatten)]
    /// Where the server is and which token to send.
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ViewFormat::Table)]
    pub format: ViewFormat,
}

/// `a, b, c`, or `-` for none.
pub fn joined<T: std::fmt::Display>(values: &[T]) -> String {
    if values.is_empty() {
        "-".into()
    } else {
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The comma-separated list of a positional argument (`"a.com,b.com"`),
/// without blanks; empty entries are dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_and_join() {
        assert_eq!(
            split_list(" curiios.com, vinaysachdeva.com,,"),
            ["curiios.com", "vinaysachdeva.com"]
        );
        assert_eq!(joined(&["a", "b"]), "a, b");
        assert_eq!(joined::<String>(&[]), "-");
    }

    #[test]
    fn if_match_quotes_the_revision() {
        assert_eq!(if_match(&json!({"revision": 7})).as_deref(), Some("\"7\""));
        assert_eq!(if_match(&json!({})), None);
    }

    #[test]
    fn seed_times() {
        let t = DateTime::parse_from_rfc3339("2025-11-06T18:30:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(seed_time(&t), "2025-11-06T18:30:00Z");
    }
}
