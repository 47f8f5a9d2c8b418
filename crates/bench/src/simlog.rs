//! The simulator's admin API as the scheduler scenario uses it: clusters in
//! bulk, its clock, and its request log read incrementally ([`LogTail`]).

use crate::load::describe_failure;
use crate::BenchError;
use fleetreg_sim::admin::CreateMany;
use fleetreg_sim::{ClockView, ClusterSpec, LogEntry, ObservabilitySpec, RequestPage};
use std::time::Duration;

/// Log entries asked for per request (the simulator's maximum).
const PAGE_LIMIT: usize = 10_000;
/// Timeout of one admin request.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one simulator's `/admin` API.
#[derive(Debug, Clone)]
pub struct SimClient {
    base: String,
    http: reqwest::Client,
}

impl SimClient {
    /// A client of the simulator at `base` (e.g. `http://127.0.0.1:9000`).
    pub fn new(base: &str) -> Result<SimClient, BenchError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(SimClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The simulator's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn checked(
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BenchError> {
        let response = request.send().await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(BenchError::Server {
                what: format!("simulator: {what}"),
                detail: describe_failure(response).await,
            })
        }
    }

    /// `POST /admin/clusters/bulk`: clusters `{prefix}-00000`… up to `count`
    /// (existing names are kept), each with Prometheus, Tempo and Loki and
    /// nothing else. Returns how many were added.
    pub async fn create_clusters(&self, prefix: &str, count: usize) -> Result<usize, BenchError> {
        let body = CreateMany {
            prefix: prefix.to_owned(),
            count,
            spec: Some(ClusterSpec {
                observability: ObservabilitySpec {
                    prometheus: true,
                    tempo: true,
                    loki: true,
                    ..ObservabilitySpec::default()
                },
                ..ClusterSpec::default()
            }),
            auth: Default::default(),
        };
        let url = format!("{}/admin/clusters/bulk", self.base);
        let response =
            Self::checked("POST /admin/clusters/bulk", self.http.post(url).json(&body)).await?;
        #[derive(serde::Deserialize)]
        struct Added {
            added: usize,
        }
        Ok(response.json::<Added>().await?.added)
    }

    /// The simulator's clock now, microseconds since the Unix epoch (the time
    /// base of its request log).
    pub async fn now_us(&self) -> Result<i64, BenchError> {
        let url = format!("{}/admin/clock", self.base);
        let view: ClockView = Self::checked("GET /admin/clock", self.http.get(url))
            .await?
            .json()
            .await?;
        Ok(view.now.timestamp_micros())
    }

    /// `DELETE /admin/requests`: empties the request log (sequence numbers go on).
    pub async fn clear_log(&self) -> Result<(), BenchError> {
        let url = format!("{}/admin/requests", self.base);
        Self::checked("DELETE /admin/requests", self.http.delete(url)).await?;
        Ok(())
    }

    async fn page(&self, after: u64) -> Result<RequestPage, BenchError> {
        let url = format!(
            "{}/admin/requests?after={after}&limit={PAGE_LIMIT}",
            self.base
        );
        let response = Self::checked("GET /admin/requests", self.http.get(url)).await?;
        Ok(response.json().await?)
    }
}

/// Reads the request log from where it last stopped and counts entries the
/// ring dropped before they were read (gaps in the sequence numbers).
#[derive(Debug, Default)]
pub struct LogTail {
    /// The last sequence number read; `None` before the first entry.
    cursor: Option<u64>,
    /// Entries lost between two reads.
    pub lost: u64,
    /// Entries read.
    pub read: u64,
}

impl LogTail {
    /// A tail that starts with the oldest entry the log holds.
    pub fn new() -> LogTail {
        LogTail::default()
    }

    /// Reads every entry appended since the last call, oldest first, handing
    /// each to `each`; returns how many were read.
    pub async fn poll(
        &mut self,
        sim: &SimClient,
        mut each: impl FnMut(&LogEntry),
    ) -> Result<u64, BenchError> {
        let mut read = 0u64;
        loop {
            let page = sim.page(self.cursor.unwrap_or(0)).await?;
            let full = page.items.len() >= PAGE_LIMIT;
            for entry in &page.items {
                if let Some(cursor) = self.cursor {
                    self.lost += entry.seq.saturating_sub(cursor + 1);
                }
                self.cursor = Some(entry.seq);
                each(entry);
            }
            read += page.items.len() as u64;
            if !full {
                break;
            }
        }
        self.read += read;
        Ok(read)
    }
}
