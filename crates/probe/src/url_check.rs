//! [`UrlChecker`]: one `GET` of a client's URL, as the seed's live health
//! check does it: the status, how long the answer took, and for https the
//! server certificate's end of validity.
//!
//! The same egress rules as every other probe request bind it: an IP literal
//! the [`EgressPolicy`] refuses is never connected to, and names resolve
//! through the [`FilteringResolver`], so a host that resolves only to refused
//! addresses is not fetched (`REFUSED`). No proxy is used; redirects are not
//! followed (a 3xx answer counts as an answer); each check opens its own
//! connection, so the certificate seen is the one served now.

use crate::egress::{literal_address, EgressPolicy};
use crate::error::Error;
use crate::resolver::FilteringResolver;
use chrono::{DateTime, Utc};
use fleetreg_model::UrlOutcome;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one fetch of a URL found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// How it went.
    pub outcome: UrlOutcome,
    /// The answer's status, when there was one.
    pub status_code: Option<u16>,
    /// Time until the answer's head arrived, when there was one.
    pub latency: Option<Duration>,
    /// The server certificate's NotAfter (https, after a good handshake).
    pub tls_not_after: Option<DateTime<Utc>>,
    /// Why it is not [`UrlOutcome::Ok`], in words (remote text escaped).
    pub error: Option<String>,
}

impl UrlCheck {
    fn failed(outcome: UrlOutcome, error: String) -> UrlCheck {
        UrlCheck {
            outcome,
            status_code: None,
            latency: None,
            tls_not_after: None,
            error: Some(error),
        }
    }
}

/// Fetches URLs under an egress policy, trusting the built-in web PKI roots
/// plus optional extra CAs. Cheap to clone; create one per process.
#[derive(Clone)]
pub struct UrlChecker {
    http: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl std::fmt::Debug for UrlChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlChecker").finish_non_exhaustive()
    }
}

impl UrlChecker {
    /// A checker connecting only where `policy` allows, verifying https
    /// servers against the web PKI roots and the certificates of `extra_ca_pem`
    /// (PEM text, e.g. an internal CA; `None` for the roots alone).
    pub fn new(policy: EgressPolicy, extra_ca_pem: Option<&str>) -> Result<UrlChecker, Error> {
        let policy = Arc::new(policy);
        let setup = |reason: String| Error::Setup { reason };
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(FilteringResolver::new(policy.clone())))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .tls_info(true)
            .user_agent(concat!(
                "fleetreg-client-health/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(pem) = extra_ca_pem {
            for root in crate::pki::reqwest_roots(pem)? {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder.build().map_err(|e| setup(crate::cause_chain(&e)))?;
        Ok(UrlChecker { http, policy })
    }

    /// `GET url`, answered within `timeout` or [`UrlOutcome::Timeout`]
    /// (resolving, connecting and the TLS handshake included). The body is
    /// not read. Healthy ([`UrlOutcome::Ok`]) is a 2xx or 3xx answer.
    pub async fn check(&self, url: &str, timeout: Duration) -> UrlCheck {
        let parsed = match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            _ => {
                return UrlCheck::failed(
                    UrlOutcome::ConnectionError,
                    format!("invalid URL {:?}", crate::escape_remote(url)),
                )
            }
        };
        if let Some(addr) = parsed.host_str().and_then(literal_address) {
            if let Err(blocked) = self.policy.check(None, addr) {
                return UrlCheck::failed(UrlOutcome::Refused, blocked.to_string());
            }
        }
        let start = Instant::now();
        let sent = tokio::time::timeout(timeout, self.http.get(parsed).send()).await;
        let response = match sent {
            Err(_) => {
                return UrlCheck::failed(
                    UrlOutcome::Timeout,
                    format!("no answer within {:.1} s", timeout.as_secs_f64()),
                )
            }
            Ok(Err(error)) => {
                return UrlCheck::failed(classify(&error), crate::cause_chain(&error))
            }
            Ok(Ok(response)) => response,
        };
        let latency = start.elapsed();
        let status = response.status();
        let tls_not_after = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(not_after);
        let answered = status.is_success() || status.is_redirection();
        UrlCheck {
            outcome: if answered {
                UrlOutcome::Ok
            } else {
                UrlOutcome::HttpStatus
            },
            status_code: Some(status.as_u16()),
            latency: Some(latency),
            tls_not_after,
            error: (!answered).then(|| format!("answered HTTP {}", status.as_u16())),
        }
    }
}

/// What kind of failure a request error is: refused by the egress policy,
/// a TLS failure, a timeout, or any other failure to connect or read.
fn classify(error: &reqwest::Error) -> UrlOutcome {
    if crate::find_blocked(error).is_some() {
        return UrlOutcome::Refused;
    }
    if is_tls(error) {
        return UrlOutcome::TlsError;
    }
    if error.is_timeout() {
        return UrlOutcome::Timeout;
    }
    UrlOutcome::ConnectionError
}

/// Whether a rustls error is in `error`'s source chain, also inside
/// `io::Error`s (whose `source` skips the error they wrap; hyper-rustls wraps
/// tokio-rustls's `io::Error` in another).
pub(crate) fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(inner) = current {
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            let wrapped: &(dyn std::error::Error + 'static) = wrapped;
            if is_tls(wrapped) {
                return true;
            }
        }
        current = inner.source();
    }
    false
}

/// The NotAfter of a DER certificate.
fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(certificate.validity().not_after.timestamp(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_literals_outside_the_policy_without_connecting() {
        let only_two = EgressPolicy::parse(&["127.0.0.2/32".into()]).unwrap();
        let checker = UrlChecker::new(only_two, None).unwrap();
        let refused = checker
            .check("http://127.0.0.1:9/", Duration::from_secs(1))
            .await;
        assert_eq!(refused.outcome, UrlOutcome::Refused);
        assert!(
            refused
                .error
                .as_deref()
                .unwrap()
                .contains("allowed_networks"),
            "{refused:?}"
        );
        let by_name = checker
            .check("http://localhost:9/", Duration::from_secs(1))
            .await;
        assert_eq!(by_name.outcome, UrlOutcome::Refused, "{by_name:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connection_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let checker = UrlChecker::new(EgressPolicy::default(), None).unwrap();
        let closed = checker
            .check(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2))
            .await;
        assert_eq!(closed.outcome, UrlOutcome::ConnectionError, "{closed:?}");
        let bad = checker.check("ftp://x", Duration::from_secs(1)).await;
        assert_eq!(bad.outcome, UrlOutcome::ConnectionError);
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let error = UrlChecker::new(EgressPolicy::default(), Some("not pem")).unwrap_err();
        assert!(error.to_string().contains("CERTIFICATE"), "{error}");
    }
}
