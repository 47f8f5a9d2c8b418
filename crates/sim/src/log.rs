//! The request log: every request to a simulated cluster, with the credential it
//! carried, kept in a bounded ring so a long benchmark cannot exhaust memory.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Which simulated service a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// The Kubernetes API server.
    ApiServer,
    /// Prometheus.
    Prometheus,
    /// Tempo.
    Tempo,
    /// Loki.
    Loki,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 1, strictly increasing.
    pub seq: u64,
    /// When the request arrived, by the simulator's clock (entries are appended
    /// when it is answered).
    pub time: DateTime<Utc>,
    /// The cluster named in the path.
    pub cluster: String,
    /// Which service.
    pub service: Service,
    /// HTTP method.
    pub method: String,
    /// Path below the cluster's prefix, with the query string.
    pub path: String,
    /// The bearer token sent, if any. The simulated cluster is the token's own
    /// verifier, so recording it here discloses nothing it did not already hold.
    pub bearer_token: Option<String>,
    /// Subject common name of the verified TLS client certificate, if one was
    /// presented (accepted by the cluster or not); always `None` over plain HTTP.
    pub client_cert_subject: Option<String>,
    /// Status code answered.
    pub status: u16,
}

/// A page of the request log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestPage {
    /// The entries, oldest first.
    pub items: Vec<LogEntry>,
    /// Pass as `after` to read on.
    pub next_after: u64,
    /// Entries dropped from the ring so far (older than the oldest kept).
    pub dropped: u64,
}

/// A bounded log of requests.
pub struct RequestLog {
    capacity: usize,
    entries: VecDeque<LogEntry>,
    next_seq: u64,
    dropped: u64,
}

impl RequestLog {
    /// An empty log keeping at most `capacity` entries.
    pub fn new(capacity: usize) -> RequestLog {
        RequestLog {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            next_seq: 1,
            dropped: 0,
        }
    }

    /// Appends an entry, assigning its `seq`; drops the oldest when full.
    pub fn push(&mut self, mut entry: LogEntry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
    }

    /// Entries with `seq > after`, of one cluster or all, at most `limit`.
    pub fn page(&self, after: u64, cluster: Option<&str>, limit: usize) -> RequestPage {
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let skip =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut next_after = after.max(first.saturating_sub(1));
        for entry in self.entries.iter().skip(skip) {
            if items.len() == limit {
                break;
            }
            next_after = entry.seq;
            if cluster.is_none_or(|c| c == entry.cluster) {
                items.push(entry.clone());
            }
        }
        RequestPage {
            items,
            next_after,
            dropped: self.dropped,
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.dropped += self.entries.len() as u64;
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cluster: &str) -> LogEntry {
        LogEntry {
            seq: 0,
            time: Utc::now(),
            cluster: cluster.into(),
            service: Service::ApiServer,
            method: "GET".into(),
            path: "/api/v1/namespaces".into(),
            bearer_token: None,
            client_cert_subject: None,
            status: 200,
        }
    }

    #[test]
    fn pages_follow_sequence_numbers_across_the_ring() {
        let mut log = RequestLog::new(3);
        for c in ["a", "b", "a", "b", "a"] {
            log.push(entry(c));
        }
        let all = log.page(0, None, 10);
        assert_eq!(
            all.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!((all.next_after, all.dropped), (5, 2));
        let a = log.page(3, Some("a"), 10);
        assert_eq!(a.items.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
        let first = log.page(0, None, 1);
        assert_eq!((first.items.len(), first.next_after), (1, 3));
        assert!(log.page(5, None, 10).items.is_empty());
        assert_eq!(log.page(5, None, 10).next_after, 5);
    }
}
