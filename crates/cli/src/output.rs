//! Output formats: `-o table|json|yaml|csv`.

use clap::ValueEnum;
use serde_json::Value;
use std::io::Write;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people (one resource: one field per line).
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

/// The text of one cell: strings bare, objects as `k=v,k=v`, null as empty.
pub fn cell(row: &Value, pointer: &str) -> String {
    match row.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(map)) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A cell for people: empty shows as `-`.
fn table_cell(row: &Value, pointer: &str) -> String {
    let text = cell(row, pointer);
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
}

/// Prints `value` whole (json/yaml), or `rows` as columns (table/csv).
pub fn print(
    format: Format,
    value: &Value,
    rows: &[Value],
    columns: &[Column],
) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => print_whole(format, value),
        Format::Csv => print_csv(rows, columns),
        Format::Table => write_stdout(&table(rows, columns)),
    }
}

/// Prints one resource: whole (json/yaml), one `FIELD: value` per line (table),
/// or a header and one row (csv).
pub fn print_one(format: Format, value: &Value, fields: &[Column]) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => print_whole(format, value),
        Format::Csv => print_csv(std::slice::from_ref(value), fields),
        Format::Table => write_stdout(&detail(value, fields)),
    }
}

/// Prints `value` as pretty JSON or YAML.
pub fn print_whole(format: Format, value: &Value) -> anyhow::Result<()> {
    match format {
        Format::Yaml => write_stdout(&serde_yaml::to_string(value)?),
        _ => write_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?)),
    }
}

fn print_csv(rows: &[Value], columns: &[Column]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns.iter().map(|c| c.header))?;
    for row in rows {
        writer.write_record(columns.iter().map(|c| cell(row, c.pointer)))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))?;
    write_stdout(&String::from_utf8_lossy(&bytes))
}

/// Writes to stdout; a closed pipe (`fleetreg … | head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Renders rows as space-aligned columns under a header.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| table_cell(r, c.pointer)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |values: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.header).collect(), &mut out);
    for row in &cells {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Renders one resource as `FIELD:  value` lines.
pub fn detail(value: &Value, fields: &[Column]) -> String {
    let width = fields.iter().map(|f| f.header.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for field in fields {
        let label = format!("{}:", field.header);
        out.push_str(format!("{label:<width$}  {}", table_cell(value, field.pointer)).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLUMNS: &[Column] = &[
        Column {
            header: "NAME",
            pointer: "/name",
        },
        Column {
            header: "LABELS",
            pointer: "/labels",
        },
    ];

    #[test]
    fn tables_align_and_show_missing_values_as_dashes() {
        let rows = [
            json!({"name": "a", "labels": {"x": "1", "y": "2"}}),
            json!({"name": "long-name"}),
        ];
        assert_eq!(
            table(&rows, COLUMNS),
            "NAME       LABELS\na          x=1,y=2\nlong-name  -\n"
        );
    }

    #[test]
    fn details_put_one_field_per_line() {
        let text = detail(&json!({"name": "a"}), COLUMNS);
        assert_eq!(text, "NAME:    a\nLABELS:  -\n");
    }
}
