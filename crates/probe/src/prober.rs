//! [`Prober`]: the pooled HTTP clients every check and discovery shares.

use crate::error::Error;
use crate::target::{Credential, Target};
use http::header::{HeaderValue, AUTHORIZATION};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use std::time::Duration;

type KubeHttp = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector>,
    kube::client::Body,
>;

/// Talks to clusters. Create one per process and share it: both of its clients
/// keep one keep-alive pool per host across every cluster it checks.
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
    kube_http: KubeHttp,
}

impl Prober {
    /// Sets up the pooled clients (TLS roots from the platform).
    pub fn new() -> Result<Prober, Error> {
        let setup = |reason: String| Error::Setup { reason };
        let http = reqwest::Client::builder()
            // A readiness endpoint that redirects is not ready; following redirects
            // would also let a user-supplied URL steer the probe elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| setup(crate::cause_chain(&e)))?;
        let base = kube::Config::new(http::Uri::from_static("http://localhost"));
        let connector = base
            .rustls_https_connector()
            .map_err(|e| setup(crate::cause_chain(&e)))?;
        let kube_http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Prober { http, kube_http })
    }

    /// The plain HTTP client (readiness endpoints, Prometheus queries).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A kube-rs client for the target's API server, built from an in-memory
    /// `Config` (never a kubeconfig file) over the shared pool. The URL's path is
    /// kept as a prefix of every request.
    pub(crate) fn kube_client(&self, target: &Target) -> Result<kube::Client, Error> {
        let url = &target.api_server_url;
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(invalid("expected http:// or https:// with a host"));
        }
        let mut config = kube::Config::new(uri);
        if let Credential::BearerToken(token) = &target.credential {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Setup {
                    reason: "the bearer token is not a valid header value".into(),
                })?;
            value.set_sensitive(true);
            config.headers.push((AUTHORIZATION, value));
        }
        let headers = config.extra_headers_layer().map_err(|e| Error::Setup {
            reason: crate::cause_chain(&e),
        })?;
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .layer(headers)
            .service(self.kube_http.clone());
        Ok(kube::Client::new(service, "default"))
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

/// `base` + `path`, without a doubled slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}
