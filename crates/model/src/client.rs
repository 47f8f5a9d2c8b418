//! The client resource (seed client-registry.md): a tenant deployment, its
//! server, apps, versions, maintenance dates, URLs and notes, and the
//! create/update requests.

use crate::cluster::validate_text;
use crate::enums::{ClientRole, ClientStatus, MaintenanceField};
use crate::url_field::validate_url;
use crate::{nullable, ClientName, Error};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most entries in `apps`, `versions` and `urls` each.
pub const MAX_CLIENT_ENTRIES: usize = 100;
/// Longest `notes`, in characters.
pub const MAX_NOTES: usize = 4096;
/// Longest server type, location or id, and version string.
const MAX_SHORT: usize = 64;
/// Longest URL.
const MAX_URL: usize = 2048;

/// The server a client runs on (seed: Hetzner type, location, IP, id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    /// Server type, e.g. `cx22`.
    #[serde(rename = "type", default)]
    pub server_type: Option<String>,
    /// Data-centre location, e.g. `nbg1`.
    #[serde(default)]
    pub location: Option<String>,
    /// Public address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    /// The provider's server id (a string; a bare number is accepted).
    #[serde(default, deserialize_with = "string_or_number")]
    pub id: Option<String>,
}

impl ServerInfo {
    /// Replaces the fields `other` gives; keeps the rest.
    pub fn overlay(&mut self, other: &ServerInfo) {
        if other.server_type.is_some() {
            self.server_type.clone_from(&other.server_type);
        }
        if other.location.is_some() {
            self.location.clone_from(&other.location);
        }
        if other.ip.is_some() {
            self.ip = other.ip;
        }
        if other.id.is_some() {
            self.id.clone_from(&other.id);
        }
    }

    fn validate(&self, field: &str) -> Result<(), Error> {
        let parts = [
            ("type", &self.server_type),
            ("location", &self.location),
            ("id", &self.id),
        ];
        for (name, value) in parts {
            if let Some(value) = value {
                check_token(&format!("{field}.{name}"), value, MAX_SHORT)?;
            }
        }
        Ok(())
    }
}

/// Accepts `"12345678"` and `12345678` alike (an unquoted YAML id).
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    }))
}

/// When maintenance was last done (`null`: never recorded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// The last full update (a rebuild sets it).
    #[serde(default)]
    pub last_full_update: Option<NaiveDate>,
    /// The last security patch.
    #[serde(default)]
    pub last_security_patch: Option<NaiveDate>,
    /// The last operating-system update.
    #[serde(default)]
    pub last_os_update: Option<NaiveDate>,
    /// The last verified backup.
    #[serde(default)]
    pub last_backup_verified: Option<NaiveDate>,
}

impl Maintenance {
    /// The date of one field.
    pub fn get(&self, field: MaintenanceField) -> Option<NaiveDate> {
        match field {
            MaintenanceField::LastFullUpdate => self.last_full_update,
            MaintenanceField::LastSecurityPatch => self.last_security_patch,
            MaintenanceField::LastOsUpdate => self.last_os_update,
            MaintenanceField::LastBackupVerified => self.last_backup_verified,
        }
    }

    /// Sets one field.
    pub fn set(&mut self, field: MaintenanceField, date: Option<NaiveDate>) {
        let slot = match field {
            MaintenanceField::LastFullUpdate => &mut self.last_full_update,
            MaintenanceField::LastSecurityPatch => &mut self.last_security_patch,
            MaintenanceField::LastOsUpdate => &mut self.last_os_update,
            MaintenanceField::LastBackupVerified => &mut self.last_backup_verified,
        };
        *slot = date;
    }
}

/// Everything the registry keeps about a client, as in the seed's
/// `registry.yml` entry: the part an import, a create or a replace gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Lifecycle state (default `pending`).
    #[serde(default)]
    pub status: ClientStatus,
    /// `canary` receives updates first (default `production`).
    #[serde(default)]
    pub role: ClientRole,
    /// When it was (last) deployed.
    #[serde(default)]
    pub deployed_date: Option<NaiveDate>,
    /// When it was destroyed (only while `destroyed`).
    #[serde(default)]
    pub destroyed_date: Option<NaiveDate>,
    /// The server it runs on.
    #[serde(default)]
    pub server: ServerInfo,
    /// Installed applications (kept sorted, without repeats).
    #[serde(default)]
    pub apps: Vec<String>,
    /// Version per component (apps, proxy, OS).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Maintenance history.
    #[serde(default)]
    pub maintenance: Maintenance,
    /// Access URL per app.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// Operational notes.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub notes: String,
}

/// `notes: null` (or absent) reads as no notes.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl ClientSpec {
    /// Checks every field and brings `apps` into its stored form (sorted,
    /// without repeats). Errors name the field (`server.ip`, `urls.nextcloud`).
    pub fn validate(mut self) -> Result<ClientSpec, Error> {
        let dates = [
            ("deployed_date", self.deployed_date),
            ("destroyed_date", self.destroyed_date),
            (
                "maintenance.last_full_update",
                self.maintenance.last_full_update,
            ),
            (
                "maintenance.last_security_patch",
                self.maintenance.last_security_patch,
            ),
            (
                "maintenance.last_os_update",
                self.maintenance.last_os_update,
            ),
            (
                "maintenance.last_backup_verified",
                self.maintenance.last_backup_verified,
            ),
        ];
        for (field, date) in dates {
            check_year(field, date)?;
        }
        self.server.validate("server")?;
        if self.apps.len() > MAX_CLIENT_ENTRIES {
            return Err(Error::invalid(
                "apps",
                format!("at most {MAX_CLIENT_ENTRIES} apps"),
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            check_key(&format!("apps[{i}]"), app)?;
        }
        self.apps.sort();
        self.apps.dedup();
        check_map("versions", &self.versions, |field, version| {
            if version.is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
            validate_text(field, version, MAX_SHORT)
        })?;
        check_map("urls", &self.urls, |field, url| {
            validate_url(field, url, MAX_URL)
        })?;
        if self.notes.chars().count() > MAX_NOTES {
            return Err(Error::invalid(
                "notes",
                format!("must be at most {MAX_NOTES} characters"),
            ));
        }
        if self
            .notes
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(Error::invalid(
                "notes",
                "must not contain control characters other than newline and tab",
            ));
        }
        if self.destroyed_date.is_some() && self.status != ClientStatus::Destroyed {
            return Err(Error::invalid(
                "destroyed_date",
                format!(
                    "only a destroyed client has one; this one is {}",
                    self.status
                ),
            ));
        }
        if let (Some(deployed), Some(destroyed)) = (self.deployed_date, self.destroyed_date) {
            if destroyed < deployed {
                return Err(Error::invalid(
                    "destroyed_date",
                    format!("{destroyed} is before deployed_date {deployed}"),
                ));
            }
        }
        Ok(self)
    }
}

/// A date both databases store and order as written: years 1 to 9999
/// (chrono also reads `+12345-01-01` and negative years).
fn check_year(field: &str, date: Option<NaiveDate>) -> Result<(), Error> {
    use chrono::Datelike;
    match date {
        Some(date) if !(1..=9999).contains(&date.year()) => {
            Err(Error::invalid(field, "the year must be 1 to 9999"))
        }
        _ => Ok(()),
    }
}

/// The characters allowed in a server type, location or id.
fn check_token(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(Error::invalid(
            field,
            format!("character {bad:?} is not allowed; use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// An app or component name: a lower-case key of up to 63 characters.
fn check_key(field: &str, key: &str) -> Result<(), Error> {
    let valid = !key.is_empty()
        && key.len() <= 63
        && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{key:?} is not a valid name: 1 to 63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ))
    }
}

fn check_map(
    field: &str,
    map: &BTreeMap<String, String>,
    check_value: impl Fn(&str, &str) -> Result<(), Error>,
) -> Result<(), Error> {
    if map.len() > MAX_CLIENT_ENTRIES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_CLIENT_ENTRIES} entries"),
        ));
    }
    for (key, value) in map {
        let entry = format!("{field}.{key}");
        check_key(&entry, key)?;
        check_value(&entry, value)?;
    }
    Ok(())
}

/// A registered client, as the API returns it (its OpenAPI schema is in
/// `client_schema.rs`: the spec's fields beside these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Server-assigned id.
    pub id: Uuid,
    /// Unique DNS-label name.
    pub name: ClientName,
    /// Everything else the registry keeps.
    #[serde(flatten)]
    pub spec: ClientSpec,
    /// The change-log revision of its last change (for `If-Match`).
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/clients`: a name and a [`ClientSpec`] in one object (its
/// OpenAPI schema is in `client_schema.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCreateRequest {
    /// The new client's name (a DNS label).
    pub name: String,
    /// Its fields.
    #[serde(flatten)]
    pub spec: ClientSpec,
}

impl<'de> Deserialize<'de> for ClientCreateRequest {
    /// `{"name": …, <ClientSpec fields>}`; unknown fields are refused (serde
    /// cannot combine `flatten` with `deny_unknown_fields`, so the name is
    /// taken out first).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match object.remove("name") {
            Some(serde_json::Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("name must be a string")),
            None => return Err(D::Error::missing_field("name")),
        };
        let spec =
            ClientSpec::deserialize(serde_json::Value::Object(object)).map_err(D::Error::custom)?;
        Ok(ClientCreateRequest { name, spec })
    }
}

/// A validated registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// The name.
    pub name: ClientName,
    /// Its fields, validated.
    pub spec: ClientSpec,
}

impl ClientCreateRequest {
    /// Validates the name and every field.
    pub fn validate(self) -> Result<NewClient, Error> {
        Ok(NewClient {
            name: ClientName::parse(&self.name)?,
            spec: self.spec.validate()?,
        })
    }
}

/// `PUT /api/v1/clients/{name}`: absent fields stay, `null` clears a date,
/// objects and lists are replaced whole. `status` moves only along the
/// lifecycle (see [`ClientStatus::check_move`]). `name` may be repeated but
/// not changed; read-only fields (`id`, `revision`, times) are ignored, so a
/// fetched client can be edited and sent back.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdateRequest {
    /// Must equal the client's name if given.
    #[serde(default)]
    pub name: Option<String>,
    /// New state (lifecycle rules apply).
    #[serde(default)]
    pub status: Option<ClientStatus>,
    /// New role.
    #[serde(default)]
    pub role: Option<ClientRole>,
    /// New deployment date; `null` clears.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<NaiveDate>)]
    pub deployed_date: Option<Option<NaiveDate>>,
    /// New destruction date; `null` clears.
    #[serde(default, deserialize_with = "nullable::double")]
    #[schema(value_type = Option<NaiveDate>)]
    pub destroyed_date: Option<Option<NaiveDate>>,
    /// Replaces the server details.
    #[serde(default)]
    pub server: Option<ServerInfo>,
    /// Replaces the app list.
    #[serde(default)]
    pub apps: Option<Vec<String>>,
    /// Replaces the versions.
    #[serde(default)]
    pub versions: Option<BTreeMap<String, String>>,
    /// Replaces the maintenance dates.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// Replaces the URLs.
    #[serde(default)]
    pub urls: Option<BTreeMap<String, String>>,
    /// Replaces the notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Read-only; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub id: Option<serde::de::IgnoredAny>,
    /// Read-only; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub revision: Option<serde::de::IgnoredAny>,
    /// Read-only; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub created_at: Option<serde::de::IgnoredAny>,
    /// Read-only; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub updated_at: Option<serde::de::IgnoredAny>,
}

impl ClientUpdateRequest {
    /// Applies the request to `current` (the client named `name`): the new
    /// spec, validated, or why not. A status change must be a lifecycle move.
    pub fn apply_to(&self, name: &ClientName, current: &ClientSpec) -> Result<ClientSpec, Error> {
        if let Some(given) = &self.name {
            if given != name.as_str() {
                return Err(Error::invalid("name", "a client cannot be renamed"));
            }
        }
        let mut next = current.clone();
        if let Some(status) = self.status {
            current.status.check_move(status)?;
            next.status = status;
        }
        if current.status == ClientStatus::Destroyed
            && next.status == ClientStatus::Destroyed
            && self.changes_more_than_notes()
        {
            return Err(Error::Destroyed(name.to_string()));
        }
        if let Some(role) = self.role {
            next.role = role;
        }
        if let Some(date) = self.deployed_date {
            next.deployed_date = date;
        }
        if let Some(date) = self.destroyed_date {
            next.destroyed_date = date;
        }
        if next.status != ClientStatus::Destroyed {
            next.destroyed_date = None;
        }
        if let Some(server) = &self.server {
            next.server = server.clone();
        }
        if let Some(apps) = &self.apps {
            next.apps = apps.clone();
        }
        if let Some(versions) = &self.versions {
            next.versions = versions.clone();
        }
        if let Some(maintenance) = &self.maintenance {
            next.maintenance = maintenance.clone();
        }
        if let Some(urls) = &self.urls {
            next.urls = urls.clone();
        }
        if let Some(notes) = &self.notes {
            next.notes = notes.clone();
        }
        next.validate()
    }

    fn changes_more_than_notes(&self) -> bool {
        self.role.is_some()
            || self.deployed_date.is_some()
            || self.destroyed_date.is_some()
            || self.server.is_some()
            || self.apps.is_some()
            || self.versions.is_some()
            || self.maintenance.is_some()
            || self.urls.is_some()
    }
}

impl ClientStatus {
    /// Whether a client may move from `self` to `to` by a status change or
    /// update: pending → deployed | destroyed; deployed, maintenance and
    /// offboarding move among themselves and to destroyed; destroyed is
    /// terminal (only an explicit re-deploy leaves it); nothing returns to
    /// pending. Staying put is always allowed.
    pub fn check_move(self, to: ClientStatus) -> Result<(), Error> {
        use ClientStatus as S;
        let allowed = self == to
            || matches!(
                (self, to),
                (S::Pending, S::Deployed | S::Destroyed)
                    | (
                        S::Deployed | S::Maintenance | S::Offboarding,
                        S::Deployed | S::Maintenance | S::Offboarding | S::Destroyed
                    )
            );
        if allowed {
            Ok(())
        } else {
            let hint = match (self, to) {
                (S::Destroyed, _) => {
                    "a destroyed client leaves that state only by an explicit deploy"
                }
                (_, S::Pending) => "no client returns to pending",
                _ => "not a lifecycle move",
            };
            Err(Error::Transition {
                from: self,
                to,
                reason: hint.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> Result<ClientSpec, String> {
        serde_json::from_value::<ClientSpec>(value)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_seed_entry_parses_and_validates() {
        let parsed = spec(json!({
            "status": "deployed", "role": "production", "deployed_date": "2026-01-17",
            "destroyed_date": null,
            "server": {"type": "cx22", "location": "nbg1", "ip": "1.2.3.4", "id": "12345678"},
            "apps": ["nextcloud", "authentik", "nextcloud"],
            "versions": {"authentik": "2025.10.3", "ubuntu": "24.04"},
            "maintenance": {"last_full_update": "2026-01-17", "last_backup_verified": null},
            "urls": {"authentik": "https://auth.clientname.vrije.cloud"},
            "notes": ""
        }))
        .unwrap();
        assert_eq!(parsed.apps, ["authentik", "nextcloud"]);
        assert_eq!(parsed.server.ip, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parsed.maintenance.last_full_update,
            NaiveDate::from_ymd_opt(2026, 1, 17)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |v| spec(v).unwrap_err();
        assert!(err(json!({"status": "deploy"})).contains("unknown variant"));
        assert!(err(json!({"server": {"ip": "1.2.3"}})).contains("invalid IP"));
        assert!(err(json!({"deployed_date": "17-01-2026"})).contains("input"));
        assert!(err(json!({"urls": {"x": "ftp://a"}})).contains("urls.x"));
        assert!(err(json!({"apps": ["Next Cloud"]})).contains("apps[0]"));
        assert!(err(json!({"server": {"location": "nbg 1"}})).contains("server.location"));
        assert!(err(json!({"destroyed_date": "2026-01-01"})).contains("destroyed_date"));
        assert!(err(json!({"colour": "red"})).contains("unknown field"));
        assert!(err(json!({"deployed_date": "+12345-01-01"})).contains("deployed_date"));
        assert!(err(json!({"maintenance": {"last_os_update": "-0300-01-01"}})).contains("year"));
        let long = "x".repeat(MAX_NOTES + 1);
        assert!(err(json!({ "notes": long })).contains("notes"));
    }

    #[test]
    fn a_numeric_server_id_reads_as_text() {
        let parsed = spec(json!({"server": {"id": 12345678}})).unwrap();
        assert_eq!(parsed.server.id.as_deref(), Some("12345678"));
    }

    #[test]
    fn lifecycle_moves() {
        use ClientStatus as S;
        assert!(S::Pending.check_move(S::Deployed).is_ok());
        assert!(S::Deployed.check_move(S::Maintenance).is_ok());
        assert!(S::Maintenance.check_move(S::Deployed).is_ok());
        assert!(S::Offboarding.check_move(S::Destroyed).is_ok());
        assert!(S::Destroyed.check_move(S::Destroyed).is_ok());
        for (from, to) in [
            (S::Destroyed, S::Deployed),
            (S::Destroyed, S::Maintenance),
            (S::Deployed, S::Pending),
            (S::Pending, S::Maintenance),
        ] {
            let error = from.check_move(to).unwrap_err();
            assert_eq!(error.code(), crate::ErrorCode::InvalidStatusTransition);
            assert!(error.to_string().contains(from.as_str()), "{error}");
            assert!(error.to_string().contains(to.as_str()), "{error}");
        }
    }

    #[test]
    fn create_request_takes_the_name_out_and_refuses_unknown_fields() {
        let req: ClientCreateRequest =
            serde_json::from_value(json!({"name": "acme", "role": "canary"})).unwrap();
        assert_eq!(req.name, "acme");
        assert_eq!(req.spec.role, ClientRole::Canary);
        assert!(serde_json::from_value::<ClientCreateRequest>(json!({"role": "canary"})).is_err());
        assert!(
            serde_json::from_value::<ClientCreateRequest>(json!({"name": "a", "x": 1})).is_err()
        );
    }

    #[test]
    fn update_keeps_absent_fields_and_guards_destroyed_clients() {
        let name = ClientName::parse("acme").unwrap();
        let current = ClientSpec {
            status: ClientStatus::Deployed,
            notes: "old".into(),
            ..ClientSpec::default()
        };
        let req: ClientUpdateRequest =
            serde_json::from_value(json!({"role": "canary", "revision": 4, "name": "acme"}))
                .unwrap();
        let next = req.apply_to(&name, &current).unwrap();
        assert_eq!(next.role, ClientRole::Canary);
        assert_eq!(next.notes, "old");
        let rename: ClientUpdateRequest = serde_json::from_value(json!({"name": "b"})).unwrap();
        assert!(rename.apply_to(&name, &current).is_err());
        let destroyed = ClientSpec {
            status: ClientStatus::Destroyed,
            ..ClientSpec::default()
        };
        let notes: ClientUpdateRequest =
            serde_json::from_value(json!({"notes": "archived"})).unwrap();
        assert!(notes.apply_to(&name, &destroyed).is_ok());
        assert_eq!(
            req.apply_to(&name, &destroyed).unwrap_err().code(),
            crate::ErrorCode::ClientDestroyed
        );
    }
}
