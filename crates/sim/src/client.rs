//! [`SimAdmin`]: a typed client of the admin API, for tests and the benchmark.

use crate::admin::{AdvanceClock, ClusterList, CreateCluster, Items, KubeconfigQuery};
use crate::auth::{AddToken, AuthSpec, ClientCertView, TokenView};
use crate::clock::ClockView;
use crate::credentials::{IssueClientCert, IssuedClientCert};
use crate::error::Error;
use crate::kubeconfig::KubeconfigAuth;
use crate::log::RequestPage;
use crate::secrets::SecretRecord;
use crate::spec::{ClusterSpec, Faults, FaultsPatch, ServiceSpec};
use crate::state::ClusterView;
use serde::de::DeserializeOwned;

/// Talks to a running simulator's `/admin` API.
#[derive(Debug, Clone)]
pub struct SimAdmin {
    base_url: String,
    http: reqwest::Client,
}

impl SimAdmin {
    /// A client of the simulator at `base_url` (e.g. `http://127.0.0.1:9000`).
    pub fn new(base_url: impl Into<String>) -> SimAdmin {
        SimAdmin {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// A client of a simulator served over HTTPS, trusting its CA (`ca_pem`).
    pub fn with_ca_pem(base_url: impl Into<String>, ca_pem: &str) -> Result<SimAdmin, Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()?;
        Ok(SimAdmin {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin{path}", self.base_url)
    }

    /// `/admin/clusters/{name}/{what}` with `name` and the extra segments
    /// percent-encoded.
    fn cluster_url(&self, name: &str, segments: &[&str]) -> Result<url::Url, Error> {
        let mut url =
            url::Url::parse(&self.url("/clusters")).map_err(|e| Error::InvalidRequest {
                reason: format!("bad simulator URL {:?}: {e}", self.base_url),
            })?;
        url.path_segments_mut()
            .map_err(|()| Error::InvalidRequest {
                reason: format!("bad simulator URL {:?}", self.base_url),
            })?
            .push(name)
            .extend(segments);
        Ok(url)
    }

    async fn checked(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(response)
    }

    async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, Error> {
        Ok(Self::checked(request).await?.json().await?)
    }

    async fn text(request: reqwest::RequestBuilder) -> Result<String, Error> {
        Ok(Self::checked(request).await?.text().await?)
    }

    /// `POST /admin/clusters`.
    pub async fn create_cluster(
        &self,
        name: &str,
        spec: ClusterSpec,
    ) -> Result<ClusterView, Error> {
        self.create_cluster_with_auth(name, spec, AuthSpec::default())
            .await
    }

    /// `POST /admin/clusters` with authentication settings.
    pub async fn create_cluster_with_auth(
        &self,
        name: &str,
        spec: ClusterSpec,
        auth: AuthSpec,
    ) -> Result<ClusterView, Error> {
        let body = CreateCluster {
            name: name.to_owned(),
            spec,
            faults: Faults::default(),
            auth,
        };
        Self::json(self.http.post(self.url("/clusters")).json(&body)).await
    }

    /// `GET /admin/clusters/{name}`.
    pub async fn cluster(&self, name: &str) -> Result<ClusterView, Error> {
        Self::json(self.http.get(self.cluster_url(name, &[])?)).await
    }

    /// `PUT /admin/clusters/{name}/auth`.
    pub async fn set_auth(&self, name: &str, auth: &AuthSpec) -> Result<ClusterView, Error> {
        Self::json(self.http.put(self.cluster_url(name, &["auth"])?).json(auth)).await
    }

    /// `PATCH /admin/clusters/{name}/faults` with `{"token_request_fail": fail}`:
    /// the TokenRequest API answers 500 while set.
    pub async fn set_token_request_fault(
        &self,
        name: &str,
        fail: bool,
    ) -> Result<ClusterView, Error> {
        let body = serde_json::json!({ "token_request_fail": fail });
        Self::json(
            self.http
                .patch(self.cluster_url(name, &["faults"])?)
                .json(&body),
        )
        .await
    }

    /// `PATCH /admin/clusters/{name}/faults` with
    /// `{"token_request_max_seconds": max}`: the TokenRequest API issues no
    /// token longer than `max` seconds (`None`: no cap).
    pub async fn set_token_request_max_seconds(
        &self,
        name: &str,
        max: Option<i64>,
    ) -> Result<ClusterView, Error> {
        let body = serde_json::json!({ "token_request_max_seconds": max });
        Self::json(
            self.http
                .patch(self.cluster_url(name, &["faults"])?)
                .json(&body),
        )
        .await
    }

    /// `PATCH /admin/clusters/{name}/faults` with `{"huge_body_bytes": bytes}`:
    /// API server reads and Prometheus answer with a generated body of that
    /// many bytes (0: off). See [`Faults::huge_body_bytes`](crate::Faults::huge_body_bytes).
    pub async fn set_huge_body(&self, name: &str, bytes: u64) -> Result<ClusterView, Error> {
        let body = serde_json::json!({ "huge_body_bytes": bytes });
        Self::json(
            self.http
                .patch(self.cluster_url(name, &["faults"])?)
                .json(&body),
        )
        .await
    }

    /// `PATCH /admin/clusters/{name}/faults` with `{"raw_body": text}`: API
    /// server reads answer 200 with `text` verbatim (`None`: off).
    pub async fn set_raw_body(&self, name: &str, text: Option<&str>) -> Result<ClusterView, Error> {
        let body = serde_json::json!({ "raw_body": text });
        Self::json(
            self.http
                .patch(self.cluster_url(name, &["faults"])?)
                .json(&body),
        )
        .await
    }

    /// `POST /admin/clusters/{name}/tokens`.
    pub async fn add_token(&self, name: &str, request: &AddToken) -> Result<TokenView, Error> {
        Self::json(
            self.http
                .post(self.cluster_url(name, &["tokens"])?)
                .json(request),
        )
        .await
    }

    /// `GET /admin/clusters/{name}/tokens`.
    pub async fn tokens(&self, name: &str) -> Result<Vec<TokenView>, Error> {
        let items: Items<TokenView> =
            Self::json(self.http.get(self.cluster_url(name, &["tokens"])?)).await?;
        Ok(items.items)
    }

    /// `DELETE /admin/clusters/{name}/tokens/{token}`.
    pub async fn revoke_token(&self, name: &str, token: &str) -> Result<(), Error> {
        Self::checked(
            self.http
                .delete(self.cluster_url(name, &["tokens", token])?),
        )
        .await?;
        Ok(())
    }

    /// `POST /admin/clusters/{name}/client-certs`: a client certificate with
    /// `CN={user}` that this cluster (only) accepts.
    pub async fn issue_client_cert(
        &self,
        name: &str,
        request: &IssueClientCert,
    ) -> Result<IssuedClientCert, Error> {
        Self::json(
            self.http
                .post(self.cluster_url(name, &["client-certs"])?)
                .json(request),
        )
        .await
    }

    /// `GET /admin/clusters/{name}/client-certs`.
    pub async fn client_certs(&self, name: &str) -> Result<Vec<ClientCertView>, Error> {
        let items: Items<ClientCertView> =
            Self::json(self.http.get(self.cluster_url(name, &["client-certs"])?)).await?;
        Ok(items.items)
    }

    /// `DELETE /admin/clusters/{name}/client-certs/{serial}`.
    pub async fn revoke_client_cert(&self, name: &str, serial: &str) -> Result<(), Error> {
        Self::checked(
            self.http
                .delete(self.cluster_url(name, &["client-certs", serial])?),
        )
        .await?;
        Ok(())
    }

    /// `GET /admin/clusters/{name}/secrets`: what the cluster stores, decoded.
    pub async fn secrets(&self, name: &str) -> Result<Vec<SecretRecord>, Error> {
        let items: Items<SecretRecord> =
            Self::json(self.http.get(self.cluster_url(name, &["secrets"])?)).await?;
        Ok(items.items)
    }

    /// `GET /admin/clusters/{name}/kubeconfig`: YAML with a new credential.
    pub async fn kubeconfig(
        &self,
        name: &str,
        user: &str,
        auth: KubeconfigAuth,
    ) -> Result<String, Error> {
        let query = KubeconfigQuery {
            user: Some(user.to_owned()),
            auth: Some(auth),
        };
        Self::text(
            self.http
                .get(self.cluster_url(name, &["kubeconfig"])?)
                .query(&query),
        )
        .await
    }

    /// `GET /admin/ca.pem`: the simulator's CA (HTTPS only).
    pub async fn ca_pem(&self) -> Result<String, Error> {
        Self::text(self.http.get(self.url("/ca.pem"))).await
    }

    /// `GET /admin/clock`.
    pub async fn clock(&self) -> Result<ClockView, Error> {
        Self::json(self.http.get(self.url("/clock"))).await
    }

    /// `POST /admin/clock/advance`: moves the simulator's clock (token and
    /// certificate expiry) by `seconds`.
    pub async fn advance_clock(&self, seconds: i64) -> Result<ClockView, Error> {
        let body = AdvanceClock { seconds };
        Self::json(self.http.post(self.url("/clock/advance")).json(&body)).await
    }

    /// `GET /admin/clusters`.
    pub async fn list_clusters(&self) -> Result<ClusterList, Error> {
        Self::json(self.http.get(self.url("/clusters"))).await
    }

    /// `PUT /admin/clusters/{name}/spec`.
    pub async fn set_spec(&self, name: &str, spec: &ClusterSpec) -> Result<ClusterView, Error> {
        Self::json(
            self.http
                .put(self.url(&format!("/clusters/{name}/spec")))
                .json(spec),
        )
        .await
    }

    /// `PATCH /admin/clusters/{name}/faults`.
    pub async fn set_faults(&self, name: &str, patch: &FaultsPatch) -> Result<ClusterView, Error> {
        Self::json(
            self.http
                .patch(self.url(&format!("/clusters/{name}/faults")))
                .json(patch),
        )
        .await
    }

    /// `GET /admin/clusters/{name}/services`: the declared services.
    pub async fn services(&self, name: &str) -> Result<Vec<ServiceSpec>, Error> {
        let items: Items<ServiceSpec> =
            Self::json(self.http.get(self.cluster_url(name, &["services"])?)).await?;
        Ok(items.items)
    }

    /// `PUT /admin/clusters/{name}/services/{namespace}/{name}` with `service`
    /// (its namespace and name give the path): declares it, replacing one of
    /// the same namespace and name.
    pub async fn put_service(&self, name: &str, service: &ServiceSpec) -> Result<(), Error> {
        let url = self.cluster_url(name, &["services", &service.namespace, &service.name])?;
        Self::checked(self.http.put(url).json(service))
            .await
            .map(|_| ())
    }

    /// `DELETE /admin/clusters/{name}/services/{namespace}/{service}`.
    pub async fn delete_service(
        &self,
        name: &str,
        namespace: &str,
        service: &str,
    ) -> Result<(), Error> {
        let url = self.cluster_url(name, &["services", namespace, service])?;
        Self::checked(self.http.delete(url)).await.map(|_| ())
    }

    /// `GET /admin/requests`: entries after `after`, optionally of one cluster.
    pub async fn requests(&self, after: u64, cluster: Option<&str>) -> Result<RequestPage, Error> {
        let mut query = vec![("after", after.to_string())];
        if let Some(cluster) = cluster {
            query.push(("cluster", cluster.to_owned()));
        }
        Self::json(self.http.get(self.url("/requests")).query(&query)).await
    }

    /// The sequence number of the last logged request: a mark after which
    /// only requests made from now on appear (one page of [`SimAdmin::requests`]
    /// ends at its page size, not at the end of the log).
    pub async fn log_end(&self) -> Result<u64, Error> {
        let mut end = 0;
        loop {
            let page = self.requests(end, None).await?;
            if page.next_after == end {
                return Ok(end);
            }
            end = page.next_after;
        }
    }

    /// [`SimAdmin::log_end`] once no request has been logged for `quiet`
    /// (at most 30 s): work a server started in the background (a check
    /// after a credential upload) has finished calling in.
    pub async fn log_end_when_quiet(&self, quiet: std::time::Duration) -> Result<u64, Error> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut end = self.log_end().await?;
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.log_end().await?;
            if now == end || std::time::Instant::now() >= deadline {
                return Ok(now);
            }
            end = now;
        }
    }
}
