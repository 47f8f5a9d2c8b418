//! Output formats: `-o table|json|yaml|csv`.

use clap::ValueEnum;
use serde_json::Value;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's JSON as YAML.
    Yaml,
    /// Comma-separated, with a header row.
    Csv,
}

/// A column: header and how to read it from a JSON row.
pub struct Column {
    /// Header text.
    pub header: &'static str,
    /// JSON pointer into the row, e.g. `/status/state`.
    pub pointer: &'static str,
}

fn cell(row: &Value, pointer: &str) -> String {
    match row.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Prints `value` whole (json/yaml) or `rows` as columns (table/csv).
pub fn print(format: Format, value: &Value, rows: &[Value], columns: &[Column]) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout());
            writer.write_record(columns.iter().map(|c| c.header))?;
            for row in rows {
                writer.write_record(columns.iter().map(|c| cell(row, c.pointer)))?;
            }
            writer.flush()?;
        }
        Format::Table => print!("{}", table(rows, columns)),
    }
    Ok(())
}

/// Renders rows as space-aligned columns.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|c| cell(r, c.pointer)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.header.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |values: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.header).collect(), &mut out);
    for row in &cells {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
