//! How client resources are shown: list and CSV rows, the detailed status
//! view, the summary, the history, an import's plan and its problems.

use crate::output::Column;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// The statuses in lifecycle order.
pub const STATUSES: &[&str] = &[
    "pending",
    "deployed",
    "maintenance",
    "offboarding",
    "destroyed",
];
/// The roles.
pub const ROLES: &[&str] = &["canary", "production"];
/// The maintenance fields (wire form), with the word shown for each.
pub const MAINTENANCE: &[(&str, &str)] = &[
    ("last_full_update", "Full update"),
    ("last_security_patch", "Security patch"),
    ("last_os_update", "OS update"),
    ("last_backup_verified", "Backup verified"),
];

const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer }
}

/// The table of `client list`, as the seed's list-clients.sh shows it.
pub const LIST_COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("STATUS", "/status"),
    col("ROLE", "/role"),
    col("TYPE", "/server_type"),
    col("LOCATION", "/server_location"),
    col("IP", "/server_ip"),
    col("DEPLOYED", "/deployed_date"),
    col("APPS", "/apps"),
];

/// Every field of a client, one column each, for CSV (lists and maps as
/// `a,b` and `k=v,k=v` in one cell).
pub const CSV_COLUMNS: &[Column] = &[
    col("name", "/name"),
    col("status", "/status"),
    col("role", "/role"),
    col("deployed_date", "/deployed_date"),
    col("destroyed_date", "/destroyed_date"),
    col("server_type", "/server_type"),
    col("server_location", "/server_location"),
    col("server_ip", "/server_ip"),
    col("server_id", "/server_id"),
    col("apps", "/apps"),
    col("versions", "/versions"),
    col("last_full_update", "/last_full_update"),
    col("last_security_patch", "/last_security_patch"),
    col("last_os_update", "/last_os_update"),
    col("last_backup_verified", "/last_backup_verified"),
    col("urls", "/urls"),
    col("notes", "/notes"),
    col("revision", "/revision"),
    col("updated_at", "/updated_at"),
];

/// The table of `client history`.
pub const HISTORY_COLUMNS: &[Column] = &[
    col("REVISION", "/history_revision"),
    col("AT", "/at"),
    col("TYPE", "/type"),
    col("ACTOR", "/actor"),
    col("STATUS", "/status"),
    col("ROLE", "/role"),
    col("IP", "/server_ip"),
    col("DEPLOYED", "/deployed_date"),
];

/// The CSV of `client history`: who and when, then the client as it was.
pub fn history_csv_columns() -> Vec<Column> {
    let mut columns = vec![
        col("history_revision", "/history_revision"),
        col("at", "/at"),
        col("type", "/type"),
        col("actor", "/actor"),
    ];
    columns.extend(
        CSV_COLUMNS
            .iter()
            .filter(|c| c.header != "revision")
            .map(|c| col(c.header, c.pointer)),
    );
    columns
}

/// The table of `client stale`.
pub const STALE_COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("STATUS", "/status"),
    col("ROLE", "/role"),
    col("FIELD", "/stale_field"),
    col("LAST DONE", "/stale_date"),
    col("AGE", "/stale_age"),
];

/// One flat row of a client: every field at the top level, lists joined
/// with `,`, maps as `k=v,k=v`.
pub fn flat(client: &Value) -> Value {
    let mut row = Map::new();
    for key in [
        "name",
        "status",
        "role",
        "deployed_date",
        "destroyed_date",
        "notes",
    ] {
        row.insert(key.into(), client[key].clone());
    }
    for key in ["type", "location", "ip", "id"] {
        row.insert(format!("server_{key}"), client["server"][key].clone());
    }
    for (key, _) in MAINTENANCE {
        row.insert((*key).into(), client["maintenance"][key].clone());
    }
    let apps: Vec<String> = client["apps"]
        .as_array()
        .map(|a| a.iter().map(scalar_text).collect())
        .unwrap_or_default();
    row.insert("apps".into(), Value::String(apps.join(",")));
    for key in ["versions", "urls"] {
        row.insert(key.into(), client[key].clone());
    }
    for key in ["revision", "updated_at", "created_at", "id"] {
        row.insert(key.into(), client[key].clone());
    }
    Value::Object(row)
}

/// A history entry as a flat row: its revision, time, type and actor, then
/// the client as it was.
pub fn history_row(entry: &Value) -> Value {
    let mut row = flat(&entry["client"]);
    if let Some(map) = row.as_object_mut() {
        map.insert("history_revision".into(), entry["revision"].clone());
        for key in ["at", "type", "actor"] {
            map.insert(key.into(), entry[key].clone());
        }
    }
    row
}

/// A stale client as a flat row with the field looked at, its date and age.
pub fn stale_row(client: &Value, field: &str, today: NaiveDate) -> Value {
    let mut row = flat(client);
    let date = client["maintenance"][field].as_str();
    if let Some(map) = row.as_object_mut() {
        map.insert("stale_field".into(), json!(field));
        map.insert("stale_date".into(), json!(date.unwrap_or("never")));
        let age = date
            .and_then(|d| age_days(d, today))
            .map_or_else(|| "-".to_owned(), days_text);
        map.insert("stale_age".into(), json!(age));
    }
    row
}

fn scalar_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// Days from `date` (`YYYY-MM-DD`) to `today`.
pub fn age_days(date: &str, today: NaiveDate) -> Option<i64> {
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((today - date).num_days())
}

/// `today`, `1 day ago`, `12 days ago`, `in 3 days`.
pub fn days_text(days: i64) -> String {
    match days {
        0 => "today".into(),
        1 => "1 day ago".into(),
        -1 => "in 1 day".into(),
        d if d < 0 => format!("in {} days", -d),
        d => format!("{d} days ago"),
    }
}

/// `label:  value` lines, labels padded to one width, at `indent`.
fn pairs(out: &mut String, indent: usize, rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let pad = " ".repeat(indent);
    for (label, value) in rows {
        let label = format!("{label}:");
        let line = format!("{pad}{label:<width$}  {value}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn or_dash(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        other => scalar_text(other),
    }
}

/// A date with its age: `2026-01-17 (12 days ago)`; `never` when absent.
fn dated(value: &Value, today: NaiveDate, absent: &str) -> String {
    match value.as_str() {
        None => absent.into(),
        Some(date) => match age_days(date, today) {
            Some(days) => format!("{date} ({})", days_text(days)),
            None => date.to_owned(),
        },
    }
}

/// A `{k: v}` object as indented aligned lines, or ` -` when empty.
fn map_block(out: &mut String, title: &str, value: &Value) {
    let map = value.as_object().filter(|m| !m.is_empty());
    match map {
        None => {
            let _ = writeln!(out, "{title}: -");
        }
        Some(map) => {
            let _ = writeln!(out, "{title}:");
            let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, v) in map {
                let _ = writeln!(out, "  {k:<width$}  {}", scalar_text(v));
            }
        }
    }
}

/// The detailed view of one client (the seed's client-status.sh): status,
/// role, dates, server, apps and versions, maintenance with each date's age
/// in days, URLs and notes. Sections are separated by blank lines, so more
/// (e.g. live health) can follow.
pub fn status_text(client: &Value, today: NaiveDate) -> String {
    let mut out = String::new();
    pairs(
        &mut out,
        0,
        &[
            ("Client".into(), or_dash(&client["name"])),
            ("Status".into(), or_dash(&client["status"])),
            ("Role".into(), or_dash(&client["role"])),
            (
                "Deployed".into(),
                dated(&client["deployed_date"], today, "-"),
            ),
            (
                "Destroyed".into(),
                dated(&client["destroyed_date"], today, "-"),
            ),
        ],
    );
    out.push_str("\nServer:\n");
    let server = &client["server"];
    pairs(
        &mut out,
        2,
        &[
            ("Type".into(), or_dash(&server["type"])),
            ("Location".into(), or_dash(&server["location"])),
            ("IP".into(), or_dash(&server["ip"])),
            ("ID".into(), or_dash(&server["id"])),
        ],
    );
    out.push('\n');
    let apps: Vec<String> = client["apps"]
        .as_array()
        .map(|a| a.iter().map(scalar_text).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Apps: {}",
        if apps.is_empty() {
            "-".into()
        } else {
            apps.join(", ")
        }
    );
    map_block(&mut out, "Versions", &client["versions"]);
    out.push_str("\nMaintenance:\n");
    let rows: Vec<(String, String)> = MAINTENANCE
        .iter()
        .map(|(key, label)| {
            (
                (*label).to_owned(),
                dated(&client["maintenance"][key], today, "never"),
            )
        })
        .collect();
    pairs(&mut out, 2, &rows);
    out.push('\n');
    map_block(&mut out, "URLs", &client["urls"]);
    match client["notes"].as_str().filter(|n| !n.is_empty()) {
        None => out.push_str("\nNotes: -\n"),
        Some(notes) => {
            out.push_str("\nNotes:\n");
            for line in notes.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nRevision {}, updated {}, registered {}",
        or_dash(&client["revision"]),
        or_dash(&client["updated_at"]),
        or_dash(&client["created_at"])
    );
    out
}

/// `{key: n}` as rows in `order` first (every key of it, 0 when absent),
/// then the other keys.
fn count_table(out: &mut String, value: &Value, order: &[&str], headers: [&str; 2]) {
    let map = value.as_object().cloned().unwrap_or_default();
    let mut rows: Vec<(String, String)> = order
        .iter()
        .map(|k| ((*k).to_owned(), map.get(*k).map_or("0".into(), scalar_text)))
        .collect();
    rows.extend(
        map.iter()
            .filter(|(k, _)| !order.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), scalar_text(v))),
    );
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([headers[0].len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "{:<width$}  {}", headers[0], headers[1]);
    for (k, n) in rows {
        let _ = writeln!(out, "{k:<width$}  {n}");
    }
}

/// The summary view (`GET /api/v1/clients/summary`) for people.
pub fn summary_text(summary: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "TOTAL CLIENTS:  {}", or_dash(&summary["total"]));
    out.push('\n');
    count_table(
        &mut out,
        &summary["by_status"],
        STATUSES,
        ["STATUS", "CLIENTS"],
    );
    out.push_str("\n(not destroyed)\n");
    count_table(&mut out, &summary["by_role"], ROLES, ["ROLE", "CLIENTS"]);
    out.push('\n');
    count_table(&mut out, &summary["apps"], &[], ["APP", "CLIENTS"]);
    out.push('\n');
    let mut rows = Vec::new();
    if let Some(components) = summary["versions"].as_object() {
        for (component, versions) in components {
            for (version, n) in versions.as_object().into_iter().flatten() {
                rows.push(json!({"c": component, "v": version, "n": n}));
            }
        }
    }
    out.push_str(&crate::output::table(
        &rows,
        &[
            col("COMPONENT", "/c"),
            col("VERSION", "/v"),
            col("CLIENTS", "/n"),
        ],
    ));
    out.push('\n');
    let fields: Vec<&str> = MAINTENANCE.iter().map(|(k, _)| *k).collect();
    let days = or_dash(&summary["stale_days"]);
    count_table(
        &mut out,
        &summary["stale"],
        &fields,
        [&format!("OLDER THAN {days} DAYS OR NEVER"), "CLIENTS"],
    );
    out
}

/// The plan of an import (`created`, `updated`, `unchanged`) for people.
pub fn plan_text(plan: &Value, source: &str) -> String {
    let names = |key: &str| -> Vec<String> {
        plan[key]
            .as_array()
            .map(|a| a.iter().map(scalar_text).collect())
            .unwrap_or_default()
    };
    let dry_run = plan["dry_run"].as_bool().unwrap_or(false);
    let groups = [
        ("created", if dry_run { "would create" } else { "created" }),
        ("updated", if dry_run { "would update" } else { "updated" }),
        ("unchanged", "unchanged"),
    ];
    let counts: Vec<String> = groups
        .iter()
        .map(|(key, _)| format!("{} {key}", names(key).len()))
        .collect();
    let mut out = format!(
        "{}{source}: {}\n",
        if dry_run {
            "dry run, nothing written: "
        } else {
            ""
        },
        counts.join(", ")
    );
    let width = groups.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
    for (key, word) in groups {
        for name in names(key) {
            let _ = writeln!(out, "  {word:<width$}  {name}");
        }
    }
    out
}

/// A plan as rows `{name, action}` for CSV.
pub fn plan_rows(plan: &Value) -> Vec<Value> {
    ["created", "updated", "unchanged"]
        .iter()
        .flat_map(|key| {
            plan[*key]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |name| json!({"name": name, "action": key}))
        })
        .collect()
}

/// An import's `details.problems` as `CLIENT: FIELD: REASON` lines, and a
/// hint when YAML read a version or id as a number.
pub fn problems_text(problems: &[Value]) -> String {
    let mut out = String::new();
    let mut numbers = false;
    for problem in problems {
        let client = problem["client"].as_str().unwrap_or_default();
        let field = problem["field"].as_str().unwrap_or_default();
        let reason = problem["reason"].as_str().unwrap_or_default();
        numbers |= reason.contains("invalid type: floating point")
            || reason.contains("invalid type: integer");
        let client = if client.is_empty() { "(file)" } else { client };
        let field = if field.is_empty() || field == "." {
            "(entry)"
        } else {
            field
        };
        let _ = writeln!(out, "{client}: {field}: {reason}");
    }
    if numbers {
        out.push_str(
            "  hint: YAML reads bare 24.04 or 1.0 as numbers: quote versions and ids (\"24.04\")\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn status_shows_every_section_with_ages() {
        let client = json!({
            "name": "acme", "status": "deployed", "role": "production",
            "deployed_date": "2026-01-17", "destroyed_date": null,
            "server": {"type": "cx32", "location": "fsn1", "ip": "203.0.113.21", "id": "12345678"},
            "apps": ["authentik", "nextcloud"], "versions": {"nextcloud": "30.0.17"},
            "maintenance": {"last_full_update": "2026-01-17", "last_security_patch": "2025-11-02",
                            "last_os_update": "2026-01-29", "last_backup_verified": null},
            "urls": {"nextcloud": "https://nextcloud.acme.example.org"},
            "notes": "line one\nline two", "revision": 7
        });
        let text = status_text(&client, day("2026-01-29"));
        for part in [
            "Client:     acme\n",
            "Deployed:   2026-01-17 (12 days ago)\n",
            "Destroyed:  -\n",
            "  ID:        12345678\n",
            "Apps: authentik, nextcloud\n",
            "  nextcloud  30.0.17\n",
            "  Security patch:   2025-11-02 (88 days ago)\n",
            "  OS update:        2026-01-29 (today)\n",
            "  Backup verified:  never\n",
            "URLs:\n  nextcloud  https://nextcloud.acme.example.org\n",
            "Notes:\n  line one\n  line two\n",
        ] {
            assert!(text.contains(part), "{part:?} in\n{text}");
        }
    }

    #[test]
    fn rows_flatten_lists_and_maps() {
        let row = flat(
            &json!({"name": "a", "apps": ["x", "y"], "versions": {"x": "1"},
                               "server": {"ip": "203.0.113.1"}}),
        );
        assert_eq!(row["apps"], "x,y");
        assert_eq!(row["server_ip"], "203.0.113.1");
        assert_eq!(crate::output::cell(&row, "/versions"), "x=1");
        let stale = stale_row(
            &json!({"maintenance": {}}),
            "last_os_update",
            day("2026-01-01"),
        );
        assert_eq!(
            (stale["stale_date"].as_str(), stale["stale_age"].as_str()),
            (Some("never"), Some("-"))
        );
    }

    #[test]
    fn problems_are_one_line_each() {
        let text = problems_text(&[
            json!({"client": "bad-ip", "field": "server.ip", "reason": "invalid IP"}),
            json!({"client": "v", "field": "versions.ubuntu", "reason": "invalid type: floating point `24.04`, expected a string"}),
        ]);
        assert!(
            text.starts_with("bad-ip: server.ip: invalid IP\nv: versions.ubuntu: "),
            "{text}"
        );
        assert!(text.contains("hint: "), "{text}");
    }

    #[test]
    fn plans_list_every_client() {
        let plan =
            json!({"created": ["a"], "updated": [], "unchanged": ["b", "c"], "dry_run": true});
        let text = plan_text(&plan, "r.yml");
        assert!(
            text.starts_with(
                "dry run, nothing written: r.yml: 1 created, 0 updated, 2 unchanged\n"
            ),
            "{text}"
        );
        assert!(text.contains("  would create  a\n"), "{text}");
        assert_eq!(plan_rows(&plan).len(), 3);
    }
}
