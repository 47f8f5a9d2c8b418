//! Live health of a client (seed client-registry.md, "Live health checks (if
//! deployed)"): the outcome of fetching each of its `urls`, and the state
//! they add up to. Pure data and folds; the probe does the fetching.

use crate::client::Client;
use crate::enums::ClientStatus;
use crate::ClientName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a client's URLs add up to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum ClientHealthState {
    /// Every URL answered well.
    #[serde(rename = "HEALTHY")]
    Healthy,
    /// Some URLs failed, not all.
    #[serde(rename = "DEGRADED")]
    Degraded,
    /// Every URL failed.
    #[serde(rename = "DOWN")]
    Down,
    /// Nothing was checked: the client is not `deployed`, or has no URLs
    /// (the `reason` says which).
    #[serde(rename = "NOT_CHECKED")]
    NotChecked,
}

impl ClientHealthState {
    /// Every value, in declaration order.
    pub const ALL: &'static [ClientHealthState] = &[
        ClientHealthState::Healthy,
        ClientHealthState::Degraded,
        ClientHealthState::Down,
        ClientHealthState::NotChecked,
    ];

    /// The wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientHealthState::Healthy => "HEALTHY",
            ClientHealthState::Degraded => "DEGRADED",
            ClientHealthState::Down => "DOWN",
            ClientHealthState::NotChecked => "NOT_CHECKED",
        }
    }

    /// Parses the wire form (exact, upper case).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == value)
    }

    /// The state of a set of URL results: `NOT_CHECKED` when there are none,
    /// `HEALTHY` when all are healthy, `DOWN` when none is, else `DEGRADED`.
    pub fn of(urls: &[ClientUrlHealth]) -> ClientHealthState {
        let healthy = urls.iter().filter(|u| u.healthy).count();
        match (urls.len(), healthy) {
            (0, _) => ClientHealthState::NotChecked,
            (all, ok) if ok == all => ClientHealthState::Healthy,
            (_, 0) => ClientHealthState::Down,
            _ => ClientHealthState::Degraded,
        }
    }
}

impl std::fmt::Display for ClientHealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How fetching one URL went.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum UrlOutcome {
    /// A 2xx or 3xx answer within the timeout (for https over a verified
    /// certificate): healthy.
    #[serde(rename = "OK")]
    Ok,
    /// An answer with another status (`status_code` says which).
    #[serde(rename = "HTTP_STATUS")]
    HttpStatus,
    /// No answer within the timeout.
    #[serde(rename = "TIMEOUT")]
    Timeout,
    /// The TLS handshake failed: the certificate did not verify (unknown
    /// issuer, expired, wrong name) or the server does not speak TLS.
    #[serde(rename = "TLS_ERROR")]
    TlsError,
    /// Not fetched: the host is, or resolves only to, addresses
    /// `health_check.allowed_networks` does not allow.
    #[serde(rename = "REFUSED")]
    Refused,
    /// The name did not resolve, or the connection failed or broke off.
    #[serde(rename = "CONNECTION_ERROR")]
    ConnectionError,
}

impl UrlOutcome {
    /// Every value, in declaration order.
    pub const ALL: &'static [UrlOutcome] = &[
        UrlOutcome::Ok,
        UrlOutcome::HttpStatus,
        UrlOutcome::Timeout,
        UrlOutcome::TlsError,
        UrlOutcome::Refused,
        UrlOutcome::ConnectionError,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlOutcome::Ok => "OK",
            UrlOutcome::HttpStatus => "HTTP_STATUS",
            UrlOutcome::Timeout => "TIMEOUT",
            UrlOutcome::TlsError => "TLS_ERROR",
            UrlOutcome::Refused => "REFUSED",
            UrlOutcome::ConnectionError => "CONNECTION_ERROR",
        }
    }
}

impl std::fmt::Display for UrlOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of fetching one of a client's URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientUrlHealth {
    /// The app the URL belongs to (its key in `urls`).
    pub app: String,
    /// The URL fetched.
    pub url: String,
    /// A 2xx or 3xx answer within the timeout, over a verified certificate
    /// for https.
    pub healthy: bool,
    /// How it went.
    pub outcome: UrlOutcome,
    /// The HTTP status, when the server answered.
    pub status_code: Option<u16>,
    /// Milliseconds until the answer's head arrived (connecting and the TLS
    /// handshake included), when it answered.
    pub latency_ms: Option<u64>,
    /// The end of the server certificate's validity, for https when the
    /// handshake succeeded.
    pub tls_not_after: Option<DateTime<Utc>>,
    /// Whole days from the check to `tls_not_after` (negative once expired).
    pub tls_days_left: Option<i64>,
    /// Why it is not healthy, in words (remote text escaped).
    pub error: Option<String>,
}

/// A client's live health: every URL checked at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientHealth {
    /// The client's name.
    #[schema(value_type = String)]
    pub client: ClientName,
    /// The client's id.
    pub client_id: Uuid,
    /// When the check ran.
    pub checked_at: DateTime<Utc>,
    /// What the URLs add up to.
    pub state: ClientHealthState,
    /// Why it was not checked, or which URLs failed; `null` when healthy.
    pub reason: Option<String>,
    /// One result per URL, in the order of the apps' names.
    pub urls: Vec<ClientUrlHealth>,
}

impl ClientHealth {
    /// Why `client` is not checked, if it is not: only `deployed` clients
    /// with at least one URL are.
    pub fn skip_reason(client: &Client) -> Option<String> {
        if client.spec.status != ClientStatus::Deployed {
            Some(format!(
                "the client is {}: only deployed clients are checked",
                client.spec.status
            ))
        } else if client.spec.urls.is_empty() {
            Some("the client has no URLs".to_owned())
        } else {
            None
        }
    }

    /// The health of `client` as checked at `checked_at` with `urls`' results
    /// (`NOT_CHECKED` with `reason` when nothing was checked).
    pub fn new(
        client: &Client,
        checked_at: DateTime<Utc>,
        urls: Vec<ClientUrlHealth>,
        reason: Option<String>,
    ) -> ClientHealth {
        let state = ClientHealthState::of(&urls);
        let reason = match state {
            ClientHealthState::Healthy => None,
            ClientHealthState::NotChecked => {
                reason.or_else(|| Some("nothing was checked".to_owned()))
            }
            ClientHealthState::Degraded | ClientHealthState::Down => {
                let failed: Vec<String> = urls
                    .iter()
                    .filter(|u| !u.healthy)
                    .map(|u| format!("{} ({})", u.app, u.outcome))
                    .collect();
                Some(format!(
                    "{} of {} URLs failed: {}",
                    failed.len(),
                    urls.len(),
                    failed.join(", ")
                ))
            }
        };
        ClientHealth {
            client: client.name.clone(),
            client_id: client.id,
            checked_at,
            state,
            reason,
            urls,
        }
    }
}

/// Whole days from `now` to `not_after`, rounded towards the past (so a
/// certificate expiring in 23 hours has 0 days left, one expired an hour ago
/// -1).
pub fn tls_days_left(not_after: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (not_after - now).num_seconds().div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientSpec;
    use chrono::TimeZone;

    fn url(app: &str, outcome: UrlOutcome) -> ClientUrlHealth {
        ClientUrlHealth {
            app: app.into(),
            url: format!("https://{app}.example.com"),
            healthy: outcome == UrlOutcome::Ok,
            outcome,
            status_code: None,
            latency_ms: None,
            tls_not_after: None,
            tls_days_left: None,
            error: None,
        }
    }

    fn client(status: ClientStatus, urls: &[&str]) -> Client {
        let at = Utc.with_ymd_and_hms(2026, 1, 17, 12, 0, 0).unwrap();
        Client {
            id: Uuid::nil(),
            name: ClientName::parse("acme").unwrap(),
            spec: ClientSpec {
                status,
                urls: urls
                    .iter()
                    .map(|a| (a.to_string(), format!("https://{a}.example.com")))
                    .collect(),
                ..ClientSpec::default()
            },
            revision: 1,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn states_fold_from_the_urls() {
        use ClientHealthState as S;
        use UrlOutcome as O;
        assert_eq!(S::of(&[]), S::NotChecked);
        assert_eq!(S::of(&[url("a", O::Ok), url("b", O::Ok)]), S::Healthy);
        assert_eq!(S::of(&[url("a", O::Ok), url("b", O::Timeout)]), S::Degraded);
        assert_eq!(
            S::of(&[url("a", O::TlsError), url("b", O::Refused)]),
            S::Down
        );
        for state in S::ALL {
            assert_eq!(S::parse(state.as_str()), Some(*state));
            let wire = serde_json::to_value(state).unwrap();
            assert_eq!(wire, state.as_str());
        }
        for outcome in O::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
    }

    #[test]
    fn only_deployed_clients_with_urls_are_checked() {
        assert!(ClientHealth::skip_reason(&client(ClientStatus::Deployed, &["a"])).is_none());
        let maintenance = ClientHealth::skip_reason(&client(ClientStatus::Maintenance, &["a"]));
        assert!(maintenance.unwrap().contains("maintenance"));
        let bare = ClientHealth::skip_reason(&client(ClientStatus::Deployed, &[]));
        assert!(bare.unwrap().contains("no URLs"));
    }

    #[test]
    fn reasons_name_the_failed_urls() {
        let c = client(ClientStatus::Deployed, &["a", "b"]);
        let at = c.created_at;
        let degraded = ClientHealth::new(
            &c,
            at,
            vec![url("a", UrlOutcome::Ok), url("b", UrlOutcome::Timeout)],
            None,
        );
        assert_eq!(degraded.state, ClientHealthState::Degraded);
        assert_eq!(
            degraded.reason.as_deref(),
            Some("1 of 2 URLs failed: b (TIMEOUT)")
        );
        let healthy = ClientHealth::new(&c, at, vec![url("a", UrlOutcome::Ok)], None);
        assert_eq!(healthy.reason, None);
        let skipped = ClientHealth::new(&c, at, vec![], Some("why".into()));
        assert_eq!(skipped.state, ClientHealthState::NotChecked);
        assert_eq!(skipped.reason.as_deref(), Some("why"));
        let back: ClientHealth =
            serde_json::from_value(serde_json::to_value(&degraded).unwrap()).unwrap();
        assert_eq!(back, degraded);
    }

    #[test]
    fn days_left_round_towards_the_past() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let hours = |h: i64| now + chrono::Duration::hours(h);
        assert_eq!(tls_days_left(hours(23), now), 0);
        assert_eq!(tls_days_left(hours(24), now), 1);
        assert_eq!(tls_days_left(hours(24 * 90 + 5), now), 90);
        assert_eq!(tls_days_left(hours(-1), now), -1);
    }
}
