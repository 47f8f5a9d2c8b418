//! [`Prober`]: the pooled HTTP clients every check and discovery shares, plus
//! per-credential ones for credentials with TLS settings of their own, all
//! bound by one [`EgressPolicy`].

use crate::api_server::ApiServer;
use crate::client_cache::ClientCache;
use crate::credential::ClusterCredential;
use crate::egress::{literal_address, EgressPolicy};
use crate::error::Error;
use crate::resolver::FilteringResolver;
use crate::target::Target;
use http::header::{HeaderValue, AUTHORIZATION};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use secrecy::{ExposeSecret, SecretString};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The connection pool under every API server's request stack.
pub(crate) type KubeHttp = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector<FilteringResolver>>,
    kube::client::Body,
>;

/// Most redirects a readiness or Prometheus request follows.
const MAX_REDIRECTS: usize = 5;
/// How long an idle keep-alive connection stays in a pool.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Talks to clusters. Create one per process and share it: its clients keep
/// keep-alive pools across every cluster it checks.
///
/// Uncredentialed targets, and targets with only a bearer token over the
/// platform's roots, share one pool per client. A credential with TLS settings
/// of its own (a CA, skipped verification, a client certificate, a server
/// name) gets its own pools, cached by [`ClusterCredential::id`] (see
/// `client_cache`: dropped after 10 minutes unused, at most 4096). Every client
/// resolves names through the same filtering resolver, so the egress policy
/// binds them all.
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
    kube_http: KubeHttp,
    policy: Arc<EgressPolicy>,
    resolver: FilteringResolver,
    pools: Arc<ClientCache<CredentialClients>>,
    /// Whether bearer tokens may go over plain `http://` to hosts that are
    /// not loopback (`credentials.allow_plain_http`; off by default).
    plain_http_tokens: bool,
    /// The most bytes of a response body read (`health_check.max_response_bytes`).
    max_response_bytes: u64,
}

/// The clients one credential's TLS set-up needs; `None` where the shared one
/// serves.
#[derive(Clone)]
pub(crate) struct CredentialClients {
    /// The API server's, with the credential's trust and client identity.
    kube_http: Option<KubeHttp>,
    /// The observability endpoints', trusting the credential's CA besides the
    /// platform's roots.
    http: Option<reqwest::Client>,
}

impl Prober {
    /// Sets up the pooled clients (TLS roots from the platform), connecting only
    /// where `policy` allows. No client uses a proxy: the policy judges the
    /// address actually connected to.
    pub fn new(policy: EgressPolicy) -> Result<Prober, Error> {
        let policy = Arc::new(policy);
        let resolver = FilteringResolver::new(policy.clone());
        let http = build_http(&policy, &resolver, &[])?;
        let base = kube::Config::new(http::Uri::from_static("http://localhost"));
        let kube_http = build_kube_http(&base, &resolver)?;
        Ok(Prober {
            http,
            kube_http,
            policy,
            resolver,
            pools: Arc::new(ClientCache::new()),
            plain_http_tokens: false,
            max_response_bytes: crate::remote::DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// The same prober reading at most `bytes` of any response body
    /// (`health_check.max_response_bytes`; default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`](crate::DEFAULT_MAX_RESPONSE_BYTES)). A
    /// longer answer fails its call with [`Error::TooLarge`] (a failed check
    /// component says so) without the rest being read.
    pub fn with_max_response_bytes(self, bytes: u64) -> Prober {
        Prober {
            max_response_bytes: bytes,
            ..self
        }
    }

    /// The most bytes of a response body read.
    pub(crate) fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes
    }

    /// The same prober, sending bearer tokens over plain `http://` to any host
    /// when `allow` (`credentials.allow_plain_http`); by default only loopback
    /// addresses (and `localhost`) may receive a token unencrypted.
    pub fn with_plain_http_tokens(self, allow: bool) -> Prober {
        Prober {
            plain_http_tokens: allow,
            ..self
        }
    }

    /// The `Authorization: Bearer` value (marked sensitive) for a request to
    /// `scheme://host:port`: the one place a token becomes a header, so every
    /// outbound call refuses plain `http://` to a host that is not loopback
    /// ([`Error::PlainHttpToken`], before anything connects) unless
    /// [`Prober::with_plain_http_tokens`] allowed it.
    fn bearer(
        &self,
        scheme: &str,
        host: &str,
        port: Option<u16>,
        token: &SecretString,
    ) -> Result<HeaderValue, Error> {
        if scheme != "https" && !self.plain_http_tokens && !is_loopback_host(host) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            return Err(Error::PlainHttpToken {
                origin: format!("{scheme}://{host}{port}"),
            });
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| Error::Setup {
                reason: "the bearer token is not a valid header value".into(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// How many per-credential connection pools are cached (for metrics).
    pub fn credential_pools(&self) -> usize {
        self.pools.len()
    }

    /// The clients for `credential`: its cached own ones where its TLS set-up
    /// differs from the shared clients', built on first use.
    fn clients_for(&self, credential: &ClusterCredential) -> Result<CredentialClients, Error> {
        let own_kube = credential.needs_own_tls();
        let own_http = !credential.ca_certificates().is_empty();
        if !own_kube && !own_http {
            return Ok(CredentialClients {
                kube_http: None,
                http: None,
            });
        }
        self.pools.get_or_try_insert(credential.id(), || {
            let kube_http = own_kube
                .then(|| build_kube_http(&credential.kube_tls_config(), &self.resolver))
                .transpose()?;
            let http = own_http
                .then(|| build_http(&self.policy, &self.resolver, credential.ca_certificates()))
                .transpose()?;
            Ok(CredentialClients { kube_http, http })
        })
    }

    /// `GET url` to an observability endpoint of `target`, with `token` as
    /// `Authorization: Bearer` (marked sensitive; reqwest drops it on a redirect
    /// to another host or port). Refused before sending when the URL's host is
    /// an IP literal the policy does not allow (names are judged by the
    /// resolver).
    pub(crate) fn get(
        &self,
        target: &Target,
        url: &str,
        token: Option<&SecretString>,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let parsed = reqwest::Url::parse(url).ok();
        let authorization = match (token, &parsed) {
            (Some(token), Some(parsed)) => {
                let host = parsed.host_str().unwrap_or_default();
                Some(self.bearer(parsed.scheme(), host, parsed.port(), token)?)
            }
            (Some(_), None) => {
                return Err(Error::InvalidUrl {
                    url: url.to_owned(),
                    reason: "not a URL".into(),
                })
            }
            (None, _) => None,
        };
        if let Some(addr) = parsed.as_ref().and_then(url_host_address) {
            self.policy.check(None, addr)?;
        }
        let own = match target.credential.as_deref() {
            Some(credential) => self.clients_for(credential)?.http,
            None => None,
        };
        let request = own.as_ref().unwrap_or(&self.http).get(url);
        Ok(match authorization {
            Some(value) => request.header(AUTHORIZATION, value),
            None => request,
        })
    }

    /// The target's API server, its request stack built from an in-memory
    /// kube-rs `Config` (never a kubeconfig file) over the shared pool, or the
    /// credential's own when its TLS set-up differs. The URL's path is kept as a
    /// prefix of every request; a bearer token goes in a sensitive header. A
    /// host that is an IP literal the policy refuses is [`Error::Blocked`] here
    /// (the connector never resolves literals).
    pub(crate) fn api_server(&self, target: &Target) -> Result<ApiServer, Error> {
        let url = &target.api_server_url;
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(invalid("expected http:// or https:// with a host"));
        }
        let host = uri.host().map(str::to_owned);
        let mut config = kube::Config::new(uri);
        let mut pool = None;
        if let Some(credential) = target.credential.as_deref() {
            pool = self.clients_for(credential)?.kube_http;
            if let Some(token) = credential.api_token() {
                let scheme = config.cluster_url.scheme_str().unwrap_or_default();
                let host = config.cluster_url.host().unwrap_or_default();
                let value = self.bearer(scheme, host, config.cluster_url.port_u16(), token)?;
                config.headers.push((AUTHORIZATION, value));
            }
        }
        if let Some(addr) = host.as_deref().and_then(literal_address) {
            self.policy.check(None, addr)?;
        }
        let headers = config.extra_headers_layer().map_err(|e| Error::Setup {
            reason: crate::cause_chain(&e),
        })?;
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .layer(headers)
            .layer(crate::remote::CapLayer::new(self.max_response_bytes))
            .service(pool.unwrap_or_else(|| self.kube_http.clone()));
        Ok(ApiServer::new(service))
    }
}

/// A reqwest client resolving through `resolver`, following redirects only as
/// [`redirect_policy`] allows, trusting `extra_roots` (DER) besides the
/// built-in roots.
fn build_http(
    policy: &Arc<EgressPolicy>,
    resolver: &FilteringResolver,
    extra_roots: &[Vec<u8>],
) -> Result<reqwest::Client, Error> {
    let setup = |e: reqwest::Error| Error::Setup {
        reason: crate::cause_chain(&e),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(redirect_policy(policy.clone()))
        .dns_resolver(Arc::new(resolver.clone()))
        .no_proxy()
        .pool_idle_timeout(POOL_IDLE);
    for der in extra_roots {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(der).map_err(setup)?);
    }
    builder.build().map_err(setup)
}

/// A hyper client for kube-rs with the TLS settings of `config` (trust, client
/// identity, server name), connecting through `resolver`.
fn build_kube_http(config: &kube::Config, resolver: &FilteringResolver) -> Result<KubeHttp, Error> {
    let mut tcp = HttpConnector::new_with_resolver(resolver.clone());
    tcp.enforce_http(false);
    let connector = config
        .rustls_https_connector_with_connector(tcp)
        .map_err(|e| Error::Setup {
            reason: crate::cause_chain(&e),
        })?;
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector),
    )
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

/// Whether `host` (as a URL writes it: IPv6 in brackets) is a loopback
/// address in any form, or `localhost` (RFC 6761).
fn is_loopback_host(host: &str) -> bool {
    // The URL parser's reading of the host, so `2130706433` and `127.1` are
    // judged as the 127.0.0.1 they connect to.
    // Only addresses that stay on this host: not the deny-list's wider reading
    // of IPv6 forms (a NAT64 or SIIT address carrying 127.0.0.1 goes to a
    // translator across the network).
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Ok(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Ok(url::Host::Domain(name)) => name.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        Err(_) => false,
    }
}

/// The address a parsed URL's host denotes, when it is an IP literal.
fn url_host_address(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, to http(s) only and never from
/// https down to http (a token would then cross the network in the clear to
/// the same host and port, where reqwest keeps it), refusing a target whose
/// host is an IP literal the policy does not allow (a name goes through the
/// filtering resolver like any other).
fn redirect_policy(policy: Arc<EgressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if !matches!(attempt.url().scheme(), "http" | "https") {
            return attempt.error("redirect to a scheme other than http(s)");
        }
        let from_https = attempt
            .previous()
            .last()
            .is_some_and(|previous| previous.scheme() == "https");
        if from_https && attempt.url().scheme() == "http" {
            return attempt.error("redirect from https to http");
        }
        match url_host_address(attempt.url()).map(|addr| policy.check(None, addr)) {
            Some(Err(blocked)) => attempt.error(blocked),
            _ => attempt.follow(),
        }
    })
}

/// `base` + `path`, without a doubled slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "localhost",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "192.0.2.1",
            "[2001:db8::1]",
            "localhost.example.com",
            "10.0.0.1",
            "example.com",
            // 127.0.0.1 inside NAT64, SIIT and IPv4-compatible forms leaves the host.
            "[64:ff9b::7f00:1]",
            "[64:ff9b:1::7f00:1]",
            "[::ffff:0:7f00:1]",
            "[::7f00:1]",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_go_over_plain_http_only_to_loopback_unless_allowed() {
        let prober = Prober::new(EgressPolicy::parse(&[]).unwrap()).unwrap();
        let token = SecretString::from("secret-token".to_owned());
        let refused = prober
            .bearer("http", "192.0.2.1", Some(9), &token)
            .unwrap_err();
        assert!(
            matches!(&refused, Error::PlainHttpToken { origin } if origin == "http://192.0.2.1:9"),
            "{refused:?}"
        );
        assert!(!refused.to_string().contains("secret-token"));
        let value = prober.bearer("http", "127.0.0.1", Some(9), &token).unwrap();
        assert!(value.is_sensitive());
        assert!(prober.bearer("https", "192.0.2.1", None, &token).is_ok());
        let allowed = prober.with_plain_http_tokens(true);
        assert!(allowed.bearer("http", "192.0.2.1", Some(9), &token).is_ok());
    }
}
