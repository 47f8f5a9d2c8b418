//! Reading clients: the list filters of `GET /api/v1/clients` (with the seed's
//! "clients needing updates" as `stale_days`), the summary, and the history.

use crate::client::Client;
use crate::enums::{ClientRole, ClientStatus, MaintenanceField};
use crate::event::EventType;
use crate::filter::{parse_enum, parse_number};
use crate::{Error, Page, MAX_PAGE_SIZE};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Days after which a maintenance date counts as stale when no `stale_days`
/// is given (summary).
pub const DEFAULT_STALE_DAYS: u32 = 30;

/// Clients whose maintenance `field` is older than `before`, or was never
/// recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StaleCondition {
    /// The maintenance date looked at.
    pub field: MaintenanceField,
    /// Dates before this are stale.
    pub before: NaiveDate,
}

/// The filters of a client list; every given condition must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientFilter {
    /// Exact status.
    pub status: Option<ClientStatus>,
    /// Exact role.
    pub role: Option<ClientRole>,
    /// Has this app installed.
    pub app: Option<String>,
    /// Exact server location.
    pub location: Option<String>,
    /// Exact server type.
    pub server_type: Option<String>,
    /// Needs maintenance. Unless `status` is given, destroyed clients are
    /// left out: they need no updates.
    pub stale: Option<StaleCondition>,
}

impl ClientFilter {
    /// Parses the query pairs of a list request; `today` anchors `stale_days`.
    /// Unknown and repeated parameters are refused, as for clusters.
    pub fn from_query<I, K, V>(pairs: I, today: NaiveDate) -> Result<(ClientFilter, Page), Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut filter = ClientFilter::default();
        let mut page = Page::default();
        let mut seen: Vec<String> = Vec::new();
        let mut stale_days = None;
        let mut stale_field = None;
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            if seen.iter().any(|k| k == key) {
                return Err(Error::invalid(key, "given more than once"));
            }
            seen.push(key.to_owned());
            if value.chars().any(char::is_control) || value.len() > 256 {
                return Err(Error::invalid(
                    key,
                    "must be at most 256 characters, without control characters",
                ));
            }
            match key {
                "status" => {
                    filter.status = Some(parse_enum(
                        key,
                        value,
                        ClientStatus::parse,
                        ClientStatus::expected(),
                    )?)
                }
                "role" => {
                    filter.role = Some(parse_enum(
                        key,
                        value,
                        ClientRole::parse,
                        ClientRole::expected(),
                    )?)
                }
                "app" => filter.app = Some(value.to_owned()),
                "location" => filter.location = Some(value.to_owned()),
                "server_type" => filter.server_type = Some(value.to_owned()),
                "stale_days" => stale_days = Some(parse_number(key, value, 0, 36_500)?),
                "stale_field" => {
                    stale_field = Some(parse_enum(
                        key,
                        value,
                        MaintenanceField::parse,
                        MaintenanceField::expected(),
                    )?)
                }
                "page" => page.page = parse_number(key, value, 1, 1_000_000)?,
                "page_size" => page.page_size = parse_number(key, value, 1, MAX_PAGE_SIZE)?,
                other => {
                    return Err(Error::invalid(
                        other,
                        "unknown query parameter; expected status, role, app, location, server_type, stale_days, stale_field, page or page_size",
                    ))
                }
            }
        }
        match (stale_days, stale_field) {
            (Some(days), field) => {
                filter.stale = Some(StaleCondition {
                    field: field.unwrap_or(MaintenanceField::LastFullUpdate),
                    before: stale_cutoff(today, days),
                })
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "stale_field",
                    "needs stale_days (how old counts as stale)",
                ))
            }
            (None, None) => {}
        }
        Ok((filter, page))
    }
}

/// The first date that is not stale when `days` old counts as stale.
pub fn stale_cutoff(today: NaiveDate, days: u32) -> NaiveDate {
    today
        .checked_sub_days(chrono::Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MIN)
}

/// `GET /api/v1/clients/summary`: counts by status and role (every value
/// present), and over the clients that are not destroyed: how many run each
/// app, each version of each component, and how many have each maintenance
/// date older than `stale_days` (or none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientSummary {
    /// Every client, destroyed ones included.
    pub total: u64,
    /// Clients per status.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_status: BTreeMap<ClientStatus, u64>,
    /// Clients per role (destroyed ones left out).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_role: BTreeMap<ClientRole, u64>,
    /// Clients per installed app (destroyed ones left out).
    pub apps: BTreeMap<String, u64>,
    /// Per component, clients per version (destroyed ones left out).
    pub versions: BTreeMap<String, BTreeMap<String, u64>>,
    /// The age in days that counts as stale.
    pub stale_days: u32,
    /// Per maintenance field, clients whose date is older or missing
    /// (destroyed ones left out).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub stale: BTreeMap<MaintenanceField, u64>,
}

impl ClientSummary {
    /// An empty summary with every status, role and maintenance field at 0.
    pub fn empty(stale_days: u32) -> ClientSummary {
        ClientSummary {
            total: 0,
            by_status: ClientStatus::ALL.iter().map(|s| (*s, 0)).collect(),
            by_role: ClientRole::ALL.iter().map(|r| (*r, 0)).collect(),
            apps: BTreeMap::new(),
            versions: BTreeMap::new(),
            stale_days,
            stale: MaintenanceField::ALL.iter().map(|f| (*f, 0)).collect(),
        }
    }
}

/// One past state of a client (`GET /api/v1/clients/{name}/history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientHistoryEntry {
    /// The revision of the change.
    pub revision: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Who did it (the token's name).
    pub actor: String,
    /// The client as it was after the change (as it was before, for a deletion).
    pub client: Client,
}

/// How many history entries one request returns at most.
pub const MAX_HISTORY_PAGE: u32 = 500;
