//! [`SimAdmin`]: a typed client of the admin API, for tests and the benchmark.

use crate::admin::{ClusterList, CreateCluster};
use crate::error::Error;
use crate::log::RequestPage;
use crate::spec::{ClusterSpec, Faults, FaultsPatch};
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

    fn url(&self, path: &str) -> String {
        format!("{}/admin{path}", self.base_url)
    }

    async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, Error> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(response.json().await?)
    }

    /// `POST /admin/clusters`.
    pub async fn create_cluster(
        &self,
        name: &str,
        spec: ClusterSpec,
    ) -> Result<ClusterView, Error> {
        let body = CreateCluster {
            name: name.to_owned(),
            spec,
            faults: Faults::default(),
        };
        Self::json(self.http.post(self.url("/clusters")).json(&body)).await
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

    /// `GET /admin/requests`: entries after `after`, optionally of one cluster.
    pub async fn requests(&self, after: u64, cluster: Option<&str>) -> Result<RequestPage, Error> {
        let mut query = vec![("after", after.to_string())];
        if let Some(cluster) = cluster {
            query.push(("cluster", cluster.to_owned()));
        }
        Self::json(self.http.get(self.url("/requests")).query(&query)).await
    }
}
