//! The seed's `registry.yml` as text: read (YAML → the API's JSON, syntax
//! errors with line and column, before anything is sent) and written
//! (deterministic YAML in the seed's field order, so a git diff of two
//! exports shows only real changes).

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A registry file that could not be read as YAML.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}{}: {message}", position(*.line, *.column))]
pub struct YamlError {
    /// The file as the user named it (`(stdin)` for `-`).
    pub source_name: String,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// 1-based column of the problem, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// Parses a registry document and converts it to the JSON the import
/// endpoint takes (`{"clients": {name: entry}}`). `clients:` left empty
/// reads as no clients. Map keys that YAML reads as numbers or booleans
/// (`123:`) become their text.
pub fn parse_registry(source_name: &str, text: &str) -> Result<Value, YamlError> {
    let fail = |line, column, message: String| YamlError {
        source_name: source_name.to_owned(),
        line,
        column,
        message,
    };
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| {
        let location = error.location();
        let mut message = error.to_string();
        if let Some(at) = &location {
            let mark = format!(" at line {} column {}", at.line(), at.column());
            message = message.replacen(&mark, "", 1);
        }
        fail(
            location.as_ref().map(|l| l.line()),
            location.as_ref().map(|l| l.column()),
            format!("invalid YAML: {message}"),
        )
    })?;
    let mut json = to_json(&yaml, "").map_err(|message| fail(None, None, message))?;
    let Some(document) = json.as_object_mut() else {
        return Err(fail(
            None,
            None,
            "expected a mapping with a top-level `clients:` key (the seed's registry.yml)".into(),
        ));
    };
    match document.get("clients") {
        None => {
            return Err(fail(
                None,
                None,
                "no top-level `clients:` key (the seed's registry.yml: clients: {NAME: entry})"
                    .into(),
            ))
        }
        Some(Value::Null) => {
            document.insert("clients".into(), Value::Object(Map::new()));
        }
        Some(_) => {}
    }
    Ok(json)
}

/// A YAML value as JSON; `path` names where it is (for errors).
fn to_json(value: &serde_yaml::Value, path: &str) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    let at = |path: &str| {
        if path.is_empty() {
            "the document".to_owned()
        } else {
            path.to_owned()
        }
    };
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{}: {n} is not a number JSON can carry", at(path)))?
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "{}: a key must be a plain word, not {}",
                            at(path),
                            kind(key)
                        ))
                    }
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let item = to_json(item, &child)?;
                if object.insert(key.clone(), item).is_some() {
                    return Err(format!("{}: the key {key:?} is given twice", at(path)));
                }
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => {
            return Err(format!(
                "{}: YAML tags ({}) are not supported",
                at(path),
                tagged.tag
            ))
        }
    })
}

fn kind(value: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => "null",
        Y::Bool(_) => "a boolean",
        Y::Number(_) => "a number",
        Y::String(_) => "a string",
        Y::Sequence(_) => "a list",
        Y::Mapping(_) => "a mapping",
        Y::Tagged(_) => "a tagged value",
    }
}

/// How a string field is written.
#[derive(Clone, Copy)]
enum Style {
    /// A word (status, type, location, IP, app): bare unless YAML would read
    /// it as something else (`yes`, `123`, `null`).
    Word,
    /// Always in double quotes (ids, versions, URLs, notes), as in the seed.
    Quoted,
    /// A `YYYY-MM-DD` date: bare (anything else quoted).
    Date,
}

/// The shape of a known field.
enum Shape {
    Scalar(Style),
    /// An object with these sub-fields first, in this order.
    Object(&'static [(&'static str, Style)]),
    /// A list of scalars.
    List(Style),
    /// A map of scalars, keys sorted.
    Map(Style),
}

/// An entry's fields in the seed's order.
const ENTRY: &[(&str, Shape)] = &[
    ("status", Shape::Scalar(Style::Word)),
    ("role", Shape::Scalar(Style::Word)),
    ("deployed_date", Shape::Scalar(Style::Date)),
    ("destroyed_date", Shape::Scalar(Style::Date)),
    (
        "server",
        Shape::Object(&[
            ("type", Style::Word),
            ("location", Style::Word),
            ("ip", Style::Word),
            ("id", Style::Quoted),
        ]),
    ),
    ("apps", Shape::List(Style::Word)),
    ("versions", Shape::Map(Style::Quoted)),
    (
        "maintenance",
        Shape::Object(&[
            ("last_full_update", Style::Date),
            ("last_security_patch", Style::Date),
            ("last_os_update", Style::Date),
            ("last_backup_verified", Style::Date),
        ]),
    ),
    ("urls", Shape::Map(Style::Quoted)),
    ("notes", Shape::Scalar(Style::Quoted)),
];

/// The header line of an exported file.
pub const HEADER: &str =
    "# Client registry (seed client-registry.md format), written by `fleetreg client export`.\n";

/// The export (`{"clients": {name: entry}}`) as the seed's `registry.yml`:
/// clients sorted by name, each entry's fields in the seed's order (fields
/// the CLI does not know follow, sorted), ids, versions, URLs and notes in
/// double quotes. The same registry always gives the same text.
pub fn registry_yaml(export: &Value) -> String {
    let mut out = String::from(HEADER);
    let clients = export["clients"].as_object().cloned().unwrap_or_default();
    if clients.is_empty() {
        out.push_str("clients: {}\n");
        return out;
    }
    out.push_str("clients:\n");
    let mut names: Vec<&String> = clients.keys().collect();
    names.sort();
    for name in names {
        let entry = &clients[name];
        match entry.as_object() {
            Some(fields) if !fields.is_empty() => {
                let _ = writeln!(out, "  {}:", key(name));
                write_entry(&mut out, fields, 4);
            }
            _ => write_field(&mut out, 2, name, entry, None),
        }
    }
    out
}

fn write_entry(out: &mut String, fields: &Map<String, Value>, indent: usize) {
    for (name, shape) in ENTRY {
        if let Some(value) = fields.get(*name) {
            write_field(out, indent, name, value, Some(shape));
        }
    }
    let mut rest: Vec<&String> = fields
        .keys()
        .filter(|k| !ENTRY.iter().any(|(name, _)| name == k))
        .collect();
    rest.sort();
    for name in rest {
        write_field(out, indent, name, &fields[name], None);
    }
}

/// Writes `name: value` at `indent`, in `shape` when the value has it.
fn write_field(out: &mut String, indent: usize, name: &str, value: &Value, shape: Option<&Shape>) {
    let pad = " ".repeat(indent);
    let name = key(name);
    match (shape, value) {
        (Some(Shape::Scalar(style)), v) if !v.is_object() && !v.is_array() => {
            let _ = writeln!(out, "{pad}{name}: {}", scalar(v, *style));
        }
        (Some(Shape::Object(order)), Value::Object(map)) if !map.is_empty() => {
            let _ = writeln!(out, "{pad}{name}:");
            for (sub, style) in *order {
                if let Some(v) = map.get(*sub) {
                    write_field(out, indent + 2, sub, v, Some(&Shape::Scalar(*style)));
                }
            }
            let mut rest: Vec<&String> = map
                .keys()
                .filter(|k| !order.iter().any(|(sub, _)| sub == k))
                .collect();
            rest.sort();
            for sub in rest {
                write_field(out, indent + 2, sub, &map[sub], None);
            }
        }
        (Some(Shape::List(style)), Value::Array(items)) if !items.is_empty() => {
            let _ = writeln!(out, "{pad}{name}:");
            for item in items {
                let _ = writeln!(out, "{pad}  - {}", item_text(item, *style));
            }
        }
        (Some(Shape::Map(style)), Value::Object(map)) if !map.is_empty() => {
            let _ = writeln!(out, "{pad}{name}:");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                write_field(out, indent + 2, k, &map[k], Some(&Shape::Scalar(*style)));
            }
        }
        (_, Value::Object(map)) if map.is_empty() => {
            let _ = writeln!(out, "{pad}{name}: {{}}");
        }
        (_, Value::Array(items)) if items.is_empty() => {
            let _ = writeln!(out, "{pad}{name}: []");
        }
        (_, Value::Object(map)) => {
            let _ = writeln!(out, "{pad}{name}:");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                write_field(out, indent + 2, k, &map[k], None);
            }
        }
        (_, Value::Array(items)) => {
            let _ = writeln!(out, "{pad}{name}:");
            for item in items {
                let _ = writeln!(out, "{pad}  - {}", item_text(item, Style::Word));
            }
        }
        (_, v) => {
            let _ = writeln!(out, "{pad}{name}: {}", scalar(v, Style::Word));
        }
    }
}

/// A list item: a scalar, or (not in the seed's structure) compact JSON,
/// which YAML reads as the same flow collection.
fn item_text(item: &Value, style: Style) -> String {
    if item.is_object() || item.is_array() {
        item.to_string()
    } else {
        scalar(item, style)
    }
}

/// A mapping key: bare when safe, else double-quoted.
fn key(text: &str) -> String {
    if plain_safe(text) {
        text.to_owned()
    } else {
        quoted(text)
    }
}

fn scalar(value: &Value, style: Style) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => match style {
            Style::Quoted => quoted(s),
            Style::Date if is_date(s) => s.clone(),
            Style::Word if plain_safe(s) => s.clone(),
            _ => quoted(s),
        },
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Whether `text` can be written bare and is read back as the same string
/// by YAML 1.2 and 1.1 readers alike (not a number, boolean, null or date).
pub fn plain_safe(text: &str) -> bool {
    let word = !text.is_empty()
        && text.len() <= 256
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !word {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    let reserved =
        ["null", "true", "false", "yes", "no", "on", "off", "y", "n"].contains(&lower.as_str());
    let number = lower.parse::<f64>().is_ok()
        || lower.replace('_', "").parse::<f64>().is_ok()
        || ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p));
    let b = text.as_bytes();
    let date_like = b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit();
    !(reserved || number || date_like)
}

/// A YAML double-quoted scalar: `"`, `\` and every character a YAML reader
/// might not take literally (controls, line separators, BOM) escaped.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// The characters YAML allows unescaped in a quoted scalar, less the line
/// breaks of YAML 1.1 (NEL, LS, PS) and the byte-order mark.
fn printable(c: char) -> bool {
    matches!(u32::from(c),
        0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_back(text: &str) -> Value {
        parse_registry("t.yml", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn writes_the_seed_layout_and_reads_it_back() {
        let export = json!({"clients": {
            "zeta": {"status": "pending", "role": "production", "deployed_date": null,
                     "destroyed_date": null,
                     "server": {"type": null, "location": null, "ip": null, "id": null},
                     "apps": [], "versions": {}, "urls": {}, "notes": "",
                     "maintenance": {"last_full_update": null, "last_security_patch": null,
                                     "last_os_update": null, "last_backup_verified": null}},
            "acme": {"notes": "two\nlines \"quoted\" ✓", "status": "deployed", "role": "canary",
                     "deployed_date": "2026-01-17", "destroyed_date": null,
                     "server": {"id": "12345678", "ip": "203.0.113.21", "type": "cx32", "location": "fsn1"},
                     "apps": ["authentik", "nextcloud"],
                     "versions": {"ubuntu": "24.04", "traefik": "v3.0", "yes": "1"},
                     "urls": {"nextcloud": "https://nextcloud.acme.example.org"},
                     "maintenance": {"last_os_update": "2026-01-17", "last_full_update": "2026-01-17",
                                     "last_security_patch": "2025-11-02", "last_backup_verified": null},
                     "future_field": {"b": 1, "a": [true]}}
        }});
        let text = registry_yaml(&export);
        let expected_acme = "  acme:
    status: deployed
    role: canary
    deployed_date: 2026-01-17
    destroyed_date: null
    server:
      type: cx32
      location: fsn1
      ip: 203.0.113.21
      id: \"12345678\"
    apps:
      - authentik
      - nextcloud
    versions:
      traefik: \"v3.0\"
      ubuntu: \"24.04\"
      \"yes\": \"1\"
    maintenance:
      last_full_update: 2026-01-17
      last_security_patch: 2025-11-02
      last_os_update: 2026-01-17
      last_backup_verified: null
    urls:
      nextcloud: \"https://nextcloud.acme.example.org\"
    notes: \"two\\nlines \\\"quoted\\\" ✓\"
    future_field:
      a:
        - true
      b: 1
  zeta:
";
        assert!(text.starts_with(HEADER), "{text}");
        assert!(text.contains(expected_acme), "{text}");
        assert!(text.contains("    apps: []\n    versions: {}\n"), "{text}");
        assert_eq!(read_back(&text), export);
        assert_eq!(registry_yaml(&read_back(&text)), text, "deterministic");
        assert_eq!(
            registry_yaml(&json!({"clients": {}})),
            format!("{HEADER}clients: {{}}\n")
        );
    }

    #[test]
    fn ambiguous_words_are_quoted_and_read_back_as_strings() {
        let words = [
            "yes",
            "No",
            "ON",
            "null",
            "Null",
            "~",
            "true",
            "123",
            "1.5",
            "1e5",
            "0x1F",
            "1_000",
            "inf",
            ".nan",
            "2026-01-01",
            "2026-1-1",
            "-a",
            "a: b",
            "a #b",
            "",
            " x",
            "x ",
            "2001:db8::1",
            "é",
            "tab\there",
            "nel\u{85}",
            "ls\u{2028}",
            "bom\u{feff}",
            "bell\u{7}",
            "emoji 🦀",
            "'",
            "\"",
            "\\",
            "[a]",
            "{a}",
            "*a",
            "&a",
            "!a",
            "%a",
            "@a",
            "`a",
        ];
        for word in words {
            let text = format!(
                "clients:\n  {}:\n    notes: {}\n    ip: {}\n",
                key(word),
                quoted(word),
                scalar(&json!(word), Style::Word)
            );
            let value = read_back(&text);
            assert_eq!(value["clients"][word]["notes"], word, "{text}");
            assert_eq!(value["clients"][word]["ip"], word, "{text}");
        }
        for word in [
            "cx22",
            "nbg1",
            "203.0.113.10",
            "authentik",
            "a-b_c.d",
            "v3.0",
        ] {
            assert!(plain_safe(word), "{word}");
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let error = parse_registry(
            "r.yml",
            "clients:\n  acme:\n    status: [deployed\n    role: x\n",
        )
        .unwrap_err();
        assert_eq!(error.source_name, "r.yml");
        assert!(error.line.is_some() && error.column.is_some(), "{error:?}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("r.yml:{}:", error.line.unwrap())),
            "{text}"
        );
        let mark = format!(
            "at line {} column {}",
            error.line.unwrap(),
            error.column.unwrap()
        );
        assert!(!text.contains(&mark), "location given once: {text}");
        let error = parse_registry("r.yml", "clients:\n  a: 1\n  a: 2\n").unwrap_err();
        assert!(error.to_string().contains("duplicate"), "{error}");
        for (text, why) in [
            ("- a\n", "top-level"),
            ("other: 1\n", "clients"),
            ("clients:\n  ? [a]\n  : 1\n", "key"),
            ("clients:\n  a: !tag x\n", "tags"),
        ] {
            let error = parse_registry("r.yml", text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
        assert_eq!(read_back("clients:\n"), json!({"clients": {}}));
        assert_eq!(
            read_back("clients:\n  123:\n    server: {id: 42}\n"),
            json!({"clients": {"123": {"server": {"id": 42}}}})
        );
    }
}
