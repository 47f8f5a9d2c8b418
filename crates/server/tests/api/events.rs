//! The change log as a client sees it: `/api/v1/events` pages and the
//! `/api/v1/events/stream` server-sent events, on both stores.

use crate::helpers::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleetreg_model::{Capabilities, ClusterState, ClusterStatus, Connectivity};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;
use uuid::Uuid;

/// How long any single expected thing may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// Reads `/api/v1/events?{query}`, asserting 200.
async fn events(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/api/v1/events?{query}")).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "events?{query}: {body}");
    body
}

/// Every event after `after`, following `next_after` in pages of `limit`.
async fn all_events_after(app: &TestApp, after: i64) -> Vec<Value> {
    let mut cursor = after;
    let mut all = Vec::new();
    loop {
        let page = events(app, &format!("after={cursor}&limit=1000")).await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return all;
        }
        cursor = page["next_after"].as_i64().unwrap();
        all.extend(items);
    }
}

async fn latest_revision(app: &TestApp) -> i64 {
    events(app, "limit=1").await["latest_revision"]
        .as_i64()
        .unwrap()
}

fn revisions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect()
}

fn assert_strictly_increasing(revs: &[i64]) {
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions not strictly increasing: {revs:?}"
    );
}

/// Checks the envelope `{revision, type, occurred_at, resource, resource_id, payload}`.
fn assert_envelope(event: &Value, event_type: &str, id: &str) {
    let keys: BTreeSet<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "revision",
            "type",
            "occurred_at",
            "resource",
            "resource_id",
            "payload"
        ]),
        "{event}"
    );
    assert!(event["revision"].as_i64().is_some_and(|r| r > 0), "{event}");
    assert_eq!(event["type"], event_type, "{event}");
    assert_eq!(event["resource"], "cluster", "{event}");
    assert_eq!(event["resource_id"], id, "{event}");
    let at = event["occurred_at"].as_str().unwrap();
    assert!(at.ends_with('Z'), "occurred_at is UTC: {at}");
    DateTime::parse_from_rfc3339(at).unwrap();
}

fn online_status(score: i32) -> ClusterStatus {
    ClusterStatus {
        state: ClusterState::Online,
        health_score: score,
        connectivity: Connectivity::Connected,
        api_server_healthy: Some(true),
        checked_at: Some(Utc::now()),
        ..ClusterStatus::default()
    }
}

fn capabilities(gpu_count: i64) -> Capabilities {
    Capabilities {
        has_gpu_nodes: gpu_count > 0,
        gpu_count,
        gpu_types: if gpu_count > 0 {
            vec!["NVIDIA-A100".into()]
        } else {
            vec![]
        },
        discovered_at: Some(Utc::now()),
        ..Capabilities::default()
    }
}

// ---------------------------------------------------------------------------
// A minimal server-sent-events client.

#[derive(Debug)]
struct SseFrame {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl SseFrame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", self.data))
    }
    fn revision(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("frame without numeric id: {self:?}"))
    }
}

struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    /// Opens `/api/v1/events/stream{query}`, optionally with `Last-Event-ID`.
    /// Once this returns, the server has subscribed: later writes reach it.
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Sse {
        let mut request = app
            .client
            .get(app.url(&format!("/api/v1/events/stream{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("stream opens in time")
            .unwrap();
        assert_eq!(response.status(), 200, "stream{query}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Sse {
            body: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next frame that is not only comments; `None` once the server closed
    /// the stream. Panics after `DEADLINE`.
    async fn next(&mut self) -> Option<SseFrame> {
        tokio::time::timeout(DEADLINE, self.next_unbounded())
            .await
            .expect("no SSE frame within the deadline")
    }

    async fn next_unbounded(&mut self) -> Option<SseFrame> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = SseFrame {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => continue, // a comment (keep-alive, connected)
                        "id" => frame.id = Some(value.to_owned()),
                        "event" => frame.event = Some(value.to_owned()),
                        "data" => {
                            if !frame.data.is_empty() {
                                frame.data.push('\n');
                            }
                            frame.data.push_str(value);
                        }
                        other => panic!("unexpected SSE field {other:?} in {block:?}"),
                    }
                    fields += 1;
                }
                if fields > 0 {
                    return Some(frame);
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self
                    .buf
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream")),
                Some(Err(error)) => panic!("stream failed: {error}"),
                None => {
                    assert!(
                        self.buf.trim().is_empty(),
                        "stream ended inside a frame: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }

    /// The next frame, which must be a change-log event; checks that
    /// `id`, `event` and `data` agree and returns the envelope.
    async fn next_event(&mut self) -> Value {
        let frame = self
            .next()
            .await
            .expect("stream closed while an event was expected");
        let envelope = frame.json();
        assert_eq!(
            Some(frame.revision()),
            envelope["revision"].as_i64(),
            "id matches data: {frame:?}"
        );
        assert_eq!(
            frame.event.as_deref(),
            envelope["type"].as_str(),
            "event matches data: {frame:?}"
        );
        envelope
    }
}

// ---------------------------------------------------------------------------
// The change log over `GET /api/v1/events`.

api_test!(each_mutation_appends_one_event, |app| {
    assert_eq!(
        events(&app, "after=0").await["items"],
        json!([]),
        "a fresh store has no events"
    );
    let created = app
        .register(
            "events-a",
            json!({ "labels": { "team": "sre" }, "region": "eu-west-1" }),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let fetched: Value = app.get_cluster(&id).await.json().await.unwrap();
    assert_eq!(fetched, created);

    let response = app
        .put_cluster(
            &id,
            &json!({ "region": "eu-west-2", "labels": { "team": "core" } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    let fetched_updated: Value = app.get_cluster(&id).await.json().await.unwrap();
    assert_eq!(fetched_updated, updated);

    assert_eq!(app.delete_cluster(&id).await.status(), 204);

    let page = events(&app, "after=0").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    assert_envelope(&items[0], "CLUSTER_REGISTERED", &id);
    assert_eq!(
        items[0]["payload"], created,
        "REGISTERED carries the cluster as GET returns it"
    );
    assert_envelope(&items[1], "CLUSTER_UPDATED", &id);
    assert_eq!(
        items[1]["payload"], updated,
        "UPDATED carries the cluster as GET returns it"
    );
    assert_envelope(&items[2], "CLUSTER_DELETED", &id);
    assert_eq!(
        items[2]["payload"],
        json!({ "cluster_id": id }),
        "DELETED carries only the id"
    );

    let revs = revisions(items);
    assert_strictly_increasing(&revs);
    assert_eq!(page["next_after"], revs[2]);
    assert_eq!(page["latest_revision"], revs[2]);
    let times: Vec<DateTime<Utc>> = items
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "occurred_at follows revision order: {times:?}"
    );
});

api_test!(paging_follows_next_after, |app| {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.register(&format!("page-{i}"), json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let latest = latest_revision(&app).await;
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = events(&app, &format!("after={cursor}&limit=2")).await;
        assert_eq!(page["latest_revision"], latest, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "limit honoured: {page}");
        if items.is_empty() {
            assert_eq!(
                page["next_after"], cursor,
                "an empty page keeps the cursor: {page}"
            );
            break;
        }
        assert_eq!(
            page["next_after"],
            items.last().unwrap()["revision"],
            "{page}"
        );
        assert!(items[0]["revision"].as_i64().unwrap() > cursor);
        cursor = page["next_after"].as_i64().unwrap();
        seen.extend(items.iter().cloned());
        pages += 1;
        assert!(pages <= 5, "paging must terminate");
    }
    assert_eq!(pages, 3, "5 events in pages of 2");
    assert_strictly_increasing(&revisions(&seen));
    let seen_ids: Vec<&str> = seen
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(seen_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(seen.iter().all(|e| e["type"] == "CLUSTER_REGISTERED"));
    assert_eq!(cursor, latest);

    // Default: after=0, limit 100.
    let page = events(&app, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let page = events(&app, &format!("after={latest}")).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["next_after"], latest);
});

api_test!(failed_writes_append_no_event, |app| {
    let created = app.register("fails", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let before = latest_revision(&app).await;

    let duplicate =
        json!({ "name": "fails", "api_server_url": "https://api.fails.example.com:6443" });
    assert_error(
        app.post_cluster(&duplicate).await,
        409,
        "CLUSTER_ALREADY_EXISTS",
    )
    .await;
    assert_error(
        app.post_cluster(&json!({ "name": "Bad_Name", "api_server_url": "https://x.example.com" }))
            .await,
        400,
        "INVALID_CLUSTER_NAME",
    )
    .await;
    let unknown = Uuid::now_v7().to_string();
    assert_error(
        app.put_cluster(&unknown, &json!({ "region": "x" })).await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(app.delete_cluster(&unknown).await, 404, "CLUSTER_NOT_FOUND").await;
    let stale = format!("\"{}\"", created["revision"].as_i64().unwrap() + 1000);
    let response = app
        .client
        .put(app.url(&format!("/api/v1/clusters/{id}")))
        .header("If-Match", &stale)
        .json(&json!({ "region": "x" }))
        .send()
        .await
        .unwrap();
    assert_error(response, 412, "PRECONDITION_FAILED").await;
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/clusters/{id}")))
        .header("If-Match", &stale)
        .send()
        .await
        .unwrap();
    assert_error(response, 412, "PRECONDITION_FAILED").await;

    let page = events(&app, &format!("after={before}")).await;
    assert_eq!(
        page["items"],
        json!([]),
        "failed writes appended events: {page}"
    );
    assert_eq!(page["latest_revision"], before);
    let fetched: Value = app.get_cluster(&id).await.json().await.unwrap();
    assert_eq!(fetched, created, "failed writes changed the cluster");
});

api_test!(status_events_only_on_state_transitions, |app| {
    let created = app.register("status-events", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let uuid = Uuid::parse_str(&id).unwrap();
    let before = latest_revision(&app).await;

    let event = app
        .store
        .record_status(uuid, online_status(90), Some(Utc::now()))
        .await
        .unwrap();
    assert!(event.is_some(), "UNKNOWN -> ONLINE is a transition");
    let event = app
        .store
        .record_status(uuid, online_status(95), Some(Utc::now()))
        .await
        .unwrap();
    assert!(
        event.is_none(),
        "ONLINE -> ONLINE with another score is no transition"
    );
    let offline = ClusterStatus {
        state: ClusterState::Offline,
        checked_at: Some(Utc::now()),
        ..ClusterStatus::default()
    };
    assert!(app
        .store
        .record_status(uuid, offline.clone(), None)
        .await
        .unwrap()
        .is_some());
    assert!(app
        .store
        .record_status(uuid, offline, None)
        .await
        .unwrap()
        .is_none());

    let items = all_events_after(&app, before).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_envelope(&items[0], "CLUSTER_STATUS_CHANGED", &id);
    assert_eq!(
        items[0]["payload"],
        json!({ "cluster_id": id, "old_state": "UNKNOWN", "new_state": "ONLINE" })
    );
    assert_envelope(&items[1], "CLUSTER_STATUS_CHANGED", &id);
    assert_eq!(
        items[1]["payload"],
        json!({ "cluster_id": id, "old_state": "ONLINE", "new_state": "OFFLINE" })
    );
    assert_strictly_increasing(&revisions(&items));

    let fetched: Value = app.get_cluster(&id).await.json().await.unwrap();
    assert_eq!(fetched["status"]["state"], "OFFLINE");
    assert_eq!(
        fetched["revision"], created["revision"],
        "health observations do not bump the cluster's revision"
    );
    assert_eq!(
        fetched["updated_at"], created["updated_at"],
        "health observations are not updates"
    );
});

api_test!(capability_events_only_on_change, |app| {
    let created = app.register("caps-events", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let uuid = Uuid::parse_str(&id).unwrap();
    let before = latest_revision(&app).await;

    let first = capabilities(2);
    assert!(
        app.store
            .set_capabilities(uuid, first.clone(), None)
            .await
            .unwrap()
            .is_some(),
        "null -> some is a change"
    );
    let rediscovered = Capabilities {
        discovered_at: Some(Utc::now() + chrono::Duration::seconds(60)),
        ..first.clone()
    };
    assert!(
        app.store
            .set_capabilities(uuid, rediscovered, None)
            .await
            .unwrap()
            .is_none(),
        "only discovered_at differs"
    );
    let more_gpus = capabilities(4);
    assert!(app
        .store
        .set_capabilities(uuid, more_gpus.clone(), None)
        .await
        .unwrap()
        .is_some());

    let items = all_events_after(&app, before).await;
    assert_eq!(items.len(), 2, "{items:?}");
    for (event, caps) in items.iter().zip([&first, &more_gpus]) {
        assert_envelope(event, "CLUSTER_CAPABILITIES_CHANGED", &id);
        assert_eq!(event["payload"]["cluster_id"], id);
        assert_eq!(
            event["payload"]["capabilities"]["gpu_count"],
            caps.gpu_count
        );
        assert_eq!(event["payload"]["capabilities"]["has_gpu_nodes"], true);
    }
    let fetched: Value = app.get_cluster(&id).await.json().await.unwrap();
    assert_eq!(fetched["capabilities"]["gpu_count"], 4);
});

api_test!(bad_event_queries_are_validation_errors, |app| {
    for query in [
        "after=-1",
        "after=abc",
        "after=",
        "limit=0",
        "limit=1001",
        "limit=-5",
        "limit=ten",
        "after=1.5",
        "since=3",
    ] {
        let body = assert_error(
            app.get(&format!("/api/v1/events?{query}")).await,
            400,
            "VALIDATION_ERROR",
        )
        .await;
        let field = query.split('=').next().unwrap();
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
    // Bounds are inclusive.
    events(&app, "limit=1").await;
    events(&app, "limit=1000").await;
    for query in ["?after=abc", "?limit=0"] {
        assert_error(
            app.get(&format!("/api/v1/events/stream{query}")).await,
            400,
            "VALIDATION_ERROR",
        )
        .await;
    }
    let response = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .header("Last-Event-ID", "not-a-number")
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "VALIDATION_ERROR").await;
});

api_test!(events_expire_after_retention, |app| {
    for i in 0..3 {
        app.register(&format!("expire-{i}"), json!({})).await;
    }
    let latest = latest_revision(&app).await;
    let removed = app
        .retention
        .prune_older_than(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, 3, "all three events are older than zero");

    let body = assert_error(
        app.get("/api/v1/events?after=0").await,
        410,
        "EVENTS_EXPIRED",
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    assert_error(
        app.get(&format!("/api/v1/events?after={}", latest - 1))
            .await,
        410,
        "EVENTS_EXPIRED",
    )
    .await;

    // A client that is up to date is not expired, and sees later writes.
    let page = events(&app, &format!("after={latest}")).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["latest_revision"], latest);
    let created = app.register("expire-later", json!({})).await;
    let items = all_events_after(&app, latest).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["payload"], created);
});

// On a manual clock: the retention worker keeps `events_retention` (7 days
// by default) back from the clock's now, stamped by the same clock.
mod events_expire_once_the_clock_passes_retention {
    use super::*;

    async fn body(app: TestApp) {
        let start = app.clock.now();
        for i in 0..3 {
            app.register(&format!("aged-{i}"), json!({})).await;
        }
        let first = all_events_after(&app, 0).await;
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|e| e["occurred_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
            == start));
        app.clock.advance(chrono::Duration::days(1));
        let later = app.register("younger", json!({})).await;

        // Seven days after the first three: none is older than that yet.
        app.clock.set(start + chrono::Duration::days(7));
        assert_eq!(app.retention.tick().await.unwrap(), 0);
        assert_eq!(all_events_after(&app, 0).await.len(), 4);
        // A second later: the first three, not the younger one.
        app.clock.advance(chrono::Duration::seconds(1));
        assert_eq!(app.retention.tick().await.unwrap(), 3);
        assert_error(
            app.get("/api/v1/events?after=0").await,
            410,
            "EVENTS_EXPIRED",
        )
        .await;
        let kept = all_events_after(&app, 3).await;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["payload"], later);
    }

    on_both_stores!(crate::rbac::manual_clock);
}

api_test!(huge_retention_prunes_nothing, |app| {
    app.register("kept", json!({})).await;
    // Beyond chrono's range, and beyond what std can convert: neither may panic.
    for age in [
        Duration::from_secs(10_000_000_000_000),
        Duration::from_secs(u64::MAX / 4),
    ] {
        assert_eq!(
            app.retention.prune_older_than(age).await.unwrap(),
            0,
            "{age:?}"
        );
    }
    assert_eq!(all_events_after(&app, 0).await.len(), 1);
});

api_test!(list_revision_lets_a_client_read_on_from_there, |app| {
    let a = app.register("rev-a", json!({})).await;
    app.register("rev-b", json!({})).await;
    let response = app.list("").await;
    assert_eq!(response.status(), 200);
    let listed_at: i64 = response.headers()["x-fleetreg-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let listed: Value = response.json().await.unwrap();
    assert_eq!(listed["total"], 2);
    assert_eq!(
        listed_at,
        latest_revision(&app).await,
        "the list reflects every committed write"
    );

    let c = app.register("rev-c", json!({})).await;
    let a_id = a["id"].as_str().unwrap();
    let updated: Value = app
        .put_cluster(a_id, &json!({ "region": "r1" }))
        .await
        .json()
        .await
        .unwrap();

    let later = all_events_after(&app, listed_at).await;
    let summary: Vec<(&str, &str)> = later
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["resource_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("CLUSTER_REGISTERED", c["id"].as_str().unwrap()),
            ("CLUSTER_UPDATED", a_id)
        ]
    );
    assert_eq!(later[1]["payload"], updated);

    // A filtered, paged list carries the revision too.
    let response = app.list("?name=rev&page_size=1").await;
    assert_eq!(response.status(), 200);
    let revision: i64 = response.headers()["x-fleetreg-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(revision, latest_revision(&app).await);
});

// ---------------------------------------------------------------------------
// The stream.

api_test!(stream_delivers_a_new_write_live, |app| {
    let mut stream = Sse::open(&app, "", None).await;
    let created = app.register("live-a", json!({})).await;
    let event = stream.next_event().await;
    assert_envelope(
        &event,
        "CLUSTER_REGISTERED",
        created["id"].as_str().unwrap(),
    );
    assert_eq!(event["payload"], created);
    let logged = all_events_after(&app, 0).await;
    assert_eq!(
        logged,
        vec![event],
        "the stream sends the same envelope as the log"
    );

    let id = created["id"].as_str().unwrap();
    assert_eq!(app.delete_cluster(id).await.status(), 204);
    let event = stream.next_event().await;
    assert_envelope(&event, "CLUSTER_DELETED", id);
});

/// Writes `n` clusters named `{prefix}-{i}`; returns their revisions from the log.
async fn write_some(app: &TestApp, prefix: &str, n: usize) -> Vec<i64> {
    let before = latest_revision(app).await;
    for i in 0..n {
        app.register(&format!("{prefix}-{i}"), json!({})).await;
    }
    let revs = revisions(&all_events_after(app, before).await);
    assert_eq!(revs.len(), n);
    revs
}

/// Resuming (by header or query) delivers exactly the missed events, in order,
/// then live ones, with nothing repeated.
async fn check_resume(app: &TestApp, by_header: bool) {
    let missed_from = write_some(app, "before", 4).await;
    let resume_at = missed_from[0];
    let mut stream = if by_header {
        Sse::open(app, "", Some(resume_at)).await
    } else {
        Sse::open(app, &format!("?after={resume_at}"), None).await
    };
    let logged = all_events_after(app, resume_at).await;
    for expected in &logged {
        assert_eq!(&stream.next_event().await, expected, "backlog in order");
    }
    let live = write_some(app, "after", 3).await;
    for rev in &live {
        assert_eq!(
            stream.next_event().await["revision"],
            *rev,
            "live events follow the backlog"
        );
    }
    // Nothing repeated: the next frame is the next new write.
    let last = app.register("last", json!({})).await;
    let event = stream.next_event().await;
    assert_eq!(
        event["payload"], last,
        "a duplicate or stray frame came before the newest write"
    );
}

api_test!(stream_resumes_from_last_event_id, |app| {
    check_resume(&app, true).await;
});

api_test!(stream_resumes_from_after_query, |app| {
    check_resume(&app, false).await;
});

api_test!(stream_behind_retention_is_told_to_resync, |app| {
    write_some(&app, "old", 3).await;
    let latest = latest_revision(&app).await;
    assert_eq!(
        app.retention
            .prune_older_than(Duration::ZERO)
            .await
            .unwrap(),
        3
    );

    for (query, header) in [("", Some(0)), ("", Some(1)), ("?after=0", None)] {
        let mut stream = Sse::open(&app, query, header).await;
        let frame = stream
            .next()
            .await
            .expect("a RESYNC frame before the stream closes");
        assert_eq!(frame.event.as_deref(), Some("RESYNC"), "{frame:?}");
        let data = frame.json();
        assert_eq!(data["latest_revision"], latest, "{data}");
        let oldest = data["oldest_revision"].as_i64().unwrap();
        assert!(oldest > 1 && oldest <= latest + 1, "{data}");
        assert!(
            stream.next().await.is_none(),
            "the stream closes after RESYNC"
        );
    }

    // A client that is current is not told to resync.
    let mut stream = Sse::open(&app, "", Some(latest)).await;
    let created = app.register("fresh", json!({})).await;
    let event = stream.next_event().await;
    assert_eq!(event["payload"], created);
});

api_test!(stream_sees_every_revision_of_concurrent_writers, |app| {
    let start = latest_revision(&app).await;
    let mut stream = Sse::open(&app, "", Some(start)).await;
    let writers = run_concurrent_writers(&app, 8, 25).await;
    let expected = revisions(&all_events_after(&app, start).await);
    assert_eq!(expected.len(), writers, "one event per acknowledged write");
    let mut got = Vec::with_capacity(expected.len());
    while got.len() < expected.len() {
        got.push(stream.next_event().await["revision"].as_i64().unwrap());
    }
    assert_eq!(
        got, expected,
        "the stream delivers every revision once, in order"
    );
});

/// `tasks` writers each registering, then updating every other cluster;
/// returns how many writes were acknowledged (all must succeed).
async fn run_concurrent_writers(app: &TestApp, tasks: usize, per_task: usize) -> usize {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = app.client.clone();
        let base = app.url("/api/v1/clusters");
        handles.push(tokio::spawn(async move {
            let mut writes = 0;
            let mut i = 0;
            while writes < per_task {
                let name = format!("w{t}-{i}");
                let body = json!({ "name": name, "api_server_url": format!("https://api.{name}.example.com:6443") });
                let response = client.post(&base).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 201, "register {name}");
                writes += 1;
                let created: Value = response.json().await.unwrap();
                if i % 2 == 1 && writes < per_task {
                    let url = format!("{base}/{}", created["id"].as_str().unwrap());
                    let response = client.put(&url).json(&json!({ "region": "r" })).send().await.unwrap();
                    assert_eq!(response.status(), 200, "update {name}");
                    writes += 1;
                }
                i += 1;
            }
            writes
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("writers finish")
            .unwrap();
    }
    total
}

api_test!(poller_never_finds_a_revision_behind_its_cursor, |app| {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let write = async {
        let writes = run_concurrent_writers(&app, 8, 25).await;
        done.store(true, Ordering::SeqCst);
        writes
    };
    let poll = async {
        let mut cursor = 0;
        let mut seen = Vec::new();
        let stop_at = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            // Read `done` before the page: an empty page after it means the poller is current.
            let finished = done.load(Ordering::SeqCst);
            let page = events(&app, &format!("after={cursor}&limit=50")).await;
            let items = page["items"].as_array().unwrap();
            for event in items {
                let rev = event["revision"].as_i64().unwrap();
                assert!(
                    rev > cursor,
                    "revision {rev} appeared behind cursor {cursor}"
                );
                cursor = rev;
                seen.push(rev);
            }
            if finished && items.is_empty() {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < stop_at,
                "poller did not finish; at {cursor}"
            );
            tokio::task::yield_now().await;
        }
    };
    let (writes, seen) = tokio::join!(write, poll);
    assert_eq!(writes, 200);
    // Every revision the log holds now was seen by the poller as it went: none
    // became visible later below a cursor the poller had already passed.
    let all = revisions(&all_events_after(&app, 0).await);
    assert_eq!(all.len(), 200);
    assert_eq!(
        seen, all,
        "the poller missed revisions that appeared behind its cursor"
    );
});

api_test!(
    listing_without_after_starts_at_the_oldest_retained_event,
    |app| {
        app.register("old-one", json!({})).await;
        app.register("old-two", json!({})).await;
        app.retention
            .prune_older_than(Duration::ZERO)
            .await
            .unwrap();
        let kept = app.register("kept", json!({})).await;
        assert_error(
            app.get("/api/v1/events?after=0").await,
            410,
            "EVENTS_EXPIRED",
        )
        .await;
        let page: Value = app.get("/api/v1/events").await.json().await.unwrap();
        let revisions: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(revisions, [kept["revision"].as_i64().unwrap()]);
        assert_eq!(page["next_after"], kept["revision"]);
    }
);

api_test!(a_cursor_beyond_the_latest_revision_is_refused, |app| {
    let created = app.register("cursor", json!({})).await;
    let latest = created["revision"].as_i64().unwrap();
    let ok: Value = app
        .get(&format!("/api/v1/events?after={latest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["items"], json!([]));
    let error = assert_error(
        app.get(&format!("/api/v1/events?after={}", latest + 1))
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "after");
});

// ---------------------------------------------------------------------------
// Selective subscriptions: `type=`, `resource=`, `resource_id=` (issue 13 item 7).

impl Sse {
    /// The next event of a filtered stream, passing over frames that carry only
    /// an `id` (where to resume past skipped events).
    async fn next_matching(&mut self) -> Value {
        loop {
            let frame = self
                .next()
                .await
                .expect("stream closed while an event was expected");
            if frame.event.is_none() && frame.data.is_empty() {
                frame.revision();
                continue;
            }
            let envelope = frame.json();
            assert_eq!(Some(frame.revision()), envelope["revision"].as_i64());
            assert_eq!(frame.event.as_deref(), envelope["type"].as_str());
            return envelope;
        }
    }
}

/// `(type, resource_id)` of each event.
fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["resource_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every event after `after` that `filter` selects, following `next_after`
/// in pages of `limit`; also returns the last page's `next_after`.
async fn all_matching(app: &TestApp, filter: &str, after: i64, limit: u32) -> (Vec<Value>, i64) {
    let mut cursor = after;
    let mut all = Vec::new();
    loop {
        let page = events(app, &format!("{filter}&after={cursor}&limit={limit}")).await;
        let items = page["items"].as_array().unwrap().clone();
        let next = page["next_after"].as_i64().unwrap();
        assert!(next >= cursor, "next_after went back: {page}");
        if let Some(last) = items.last() {
            assert!(next >= last["revision"].as_i64().unwrap(), "{page}");
        }
        cursor = next;
        if items.is_empty() {
            assert_eq!(next, page["latest_revision"], "{page}");
            return (all, cursor);
        }
        all.extend(items);
    }
}

/// Registers `a` and `b`, updates `a`, creates client `c`, deletes `b`;
/// returns the ids of a, b and c.
async fn mixed_history(app: &TestApp) -> (String, String, String) {
    let a = app.register("filter-a", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.register("filter-b", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.put_cluster(&a, &json!({ "region": "r1" }))
            .await
            .status(),
        200
    );
    let c = ok_json(
        app.post_json("/api/v1/clients", json!({ "name": "filter-c" }))
            .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.delete_cluster(&b).await.status(), 204);
    (a, b, c)
}

/// `(type, resource_id)` of the events `/api/v1/events?{query}` lists, a page
/// that is not full; checks that it says to read on at the latest revision.
async fn filtered(app: &TestApp, query: &str) -> Vec<(String, String)> {
    let page = events(app, query).await;
    let items = page["items"].as_array().unwrap();
    assert!(items.len() < 100, "{query}: {page}");
    assert_eq!(
        page["next_after"], page["latest_revision"],
        "{query}: a page that is not full was scanned to the end: {page}"
    );
    kinds(items)
}

fn pair(event_type: &str, id: &str) -> (String, String) {
    (event_type.to_owned(), id.to_owned())
}

api_test!(filtered_lists_select_by_type_resource_and_id, |app| {
    let (a, b, c) = mixed_history(&app).await;
    let all = all_events_after(&app, 0).await;
    assert_eq!(all.len(), 5);

    assert_eq!(
        filtered(&app, "type=CLUSTER_UPDATED").await,
        [pair("CLUSTER_UPDATED", &a)]
    );
    assert_eq!(
        filtered(
            &app,
            "type=CLUSTER_REGISTERED&type=CLIENT_REGISTERED&type=CLUSTER_REGISTERED"
        )
        .await,
        [
            pair("CLUSTER_REGISTERED", &a),
            pair("CLUSTER_REGISTERED", &b),
            pair("CLIENT_REGISTERED", &c)
        ],
        "several types are alternatives, in revision order, a repeat counts once"
    );
    assert_eq!(
        filtered(&app, "resource=client").await,
        [pair("CLIENT_REGISTERED", &c)]
    );
    assert_eq!(filtered(&app, "resource=cluster").await.len(), 4);
    assert_eq!(filtered(&app, "resource=node").await, []);
    assert_eq!(
        filtered(&app, &format!("resource_id={a}")).await,
        [pair("CLUSTER_REGISTERED", &a), pair("CLUSTER_UPDATED", &a)]
    );
    assert_eq!(
        filtered(
            &app,
            &format!("resource_id={b}&resource=cluster&type=CLUSTER_DELETED")
        )
        .await,
        [pair("CLUSTER_DELETED", &b)],
        "every condition holds"
    );
    assert_eq!(
        filtered(&app, &format!("resource_id={a}&type=CLUSTER_DELETED")).await,
        []
    );
    assert_eq!(
        filtered(&app, "type=CLIENT_REGISTERED&resource=cluster").await,
        []
    );
    assert_eq!(
        filtered(&app, &format!("resource_id={}", Uuid::now_v7())).await,
        []
    );
    // With `after`: only later matches.
    let second = all[1]["revision"].as_i64().unwrap();
    assert_eq!(
        filtered(&app, &format!("type=CLUSTER_REGISTERED&after={second}")).await,
        []
    );
    assert_eq!(
        filtered(
            &app,
            &format!("type=CLUSTER_REGISTERED&after={}", second - 1)
        )
        .await,
        [pair("CLUSTER_REGISTERED", &b)]
    );
    // Without a filter, nothing changed.
    assert_eq!(events(&app, "").await["items"], json!(all));
});

api_test!(a_filtered_page_says_where_to_resume, |app| {
    let start = latest_revision(&app).await;
    write_some(&app, "page-a", 5).await;
    let client = ok_json(
        app.post_json("/api/v1/clients", json!({ "name": "rare" }))
            .await,
    )
    .await;
    write_some(&app, "page-b", 4).await;
    let latest = latest_revision(&app).await;

    // Full pages end at their last item, the last one at the latest revision.
    let first = events(
        &app,
        &format!("type=CLUSTER_REGISTERED&after={start}&limit=3"),
    )
    .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    assert_eq!(first["next_after"], first["items"][2]["revision"]);
    let (registered, end) = all_matching(&app, "type=CLUSTER_REGISTERED", start, 3).await;
    assert_eq!(registered.len(), 9);
    assert_strictly_increasing(&revisions(&registered));
    assert_eq!(end, latest);

    // A rare filter reads one page and resumes at the latest revision, past
    // the events it skipped, not at its last match.
    let rare = events(&app, &format!("type=CLIENT_REGISTERED&after={start}")).await;
    assert_eq!(rare["items"][0]["payload"], client);
    assert_eq!(rare["next_after"], latest);
    let none = events(&app, &format!("type=CLIENT_REGISTERED&after={latest}")).await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["next_after"], latest);
    // Nothing matches at all: still the latest revision.
    let empty = events(&app, "type=CLUSTER_DELETED&limit=1").await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["next_after"], latest);

    // Reading on from there finds the next match, and only it.
    write_some(&app, "page-c", 2).await;
    let later = ok_json(
        app.post_json("/api/v1/clients", json!({ "name": "rare-2" }))
            .await,
    )
    .await;
    let (next, _) = all_matching(&app, "type=CLIENT_REGISTERED", latest, 100).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["payload"], later);
});

api_test!(bad_event_filters_are_validation_errors, |app| {
    let id = Uuid::now_v7();
    for (query, field) in [
        ("type=NODE_EXPLODED".to_owned(), "type"),
        ("type=CLUSTER_REGISTERED&type=bogus".to_owned(), "type"),
        ("type=cluster_registered".to_owned(), "type"),
        ("type=".to_owned(), "type"),
        ("resource=nodes".to_owned(), "resource"),
        ("resource=".to_owned(), "resource"),
        ("resource=node&resource=client".to_owned(), "resource"),
        ("resource_id=42".to_owned(), "resource_id"),
        (format!("resource_id={id}&resource_id={id}"), "resource_id"),
    ] {
        for path in ["/api/v1/events", "/api/v1/events/stream"] {
            let body = assert_error(
                app.get(&format!("{path}?{query}")).await,
                400,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(
                body["error"]["details"]["field"], field,
                "{path}?{query}: {body}"
            );
        }
    }
});

api_test!(
    stream_with_a_type_filter_sends_only_matching_events,
    |app| {
        let mut stream =
            Sse::open(&app, "?type=CLUSTER_DELETED&type=CLIENT_REGISTERED", None).await;
        let mut clients = Sse::open(&app, "?resource=client", None).await;
        let (a, b, c) = mixed_history(&app).await;
        let x = app.register("filter-x", json!({})).await;
        let x = x["id"].as_str().unwrap();
        assert_eq!(app.delete_cluster(&a).await.status(), 204);
        assert_eq!(app.delete_cluster(x).await.status(), 204);

        let client = clients.next_matching().await;
        assert_eq!(client["type"], "CLIENT_REGISTERED");
        assert_eq!(client["resource_id"], c.as_str());

        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(stream.next_matching().await);
        }
        let pair = |t: &str, id: &str| (t.to_owned(), id.to_owned());
        assert_eq!(
            kinds(&got),
            [
                pair("CLIENT_REGISTERED", &c),
                pair("CLUSTER_DELETED", &b),
                pair("CLUSTER_DELETED", &a),
                pair("CLUSTER_DELETED", x)
            ]
        );
        // The same events as the filtered list.
        let (listed, _) =
            all_matching(&app, "type=CLUSTER_DELETED&type=CLIENT_REGISTERED", 0, 1000).await;
        assert_eq!(listed, got);

        // Nothing stray: the next frame is the next matching write.
        app.register("filter-y", json!({})).await;
        let z = app.register("filter-z", json!({})).await;
        let z = z["id"].as_str().unwrap();
        assert_eq!(app.delete_cluster(z).await.status(), 204);
        let next = stream.next_matching().await;
        assert_eq!(kinds(&[next]), [pair("CLUSTER_DELETED", z)]);
    }
);

api_test!(a_filtered_stream_resumes_with_last_event_id, |app| {
    let (a, b, _) = mixed_history(&app).await;
    let deleted_b = all_matching(&app, "type=CLUSTER_DELETED", 0, 10).await.0;
    assert_eq!(deleted_b.len(), 1);
    let resume_at = deleted_b[0]["revision"].as_i64().unwrap();

    // From the start: the backlog's matches (from the store), then live ones.
    let mut from_start = Sse::open(&app, &format!("?resource_id={a}"), Some(0)).await;
    assert_eq!(
        from_start.next_matching().await["type"],
        "CLUSTER_REGISTERED"
    );
    assert_eq!(from_start.next_matching().await["type"], "CLUSTER_UPDATED");

    // From the last event the client saw: nothing before it again.
    let mut resumed = Sse::open(&app, "?type=CLUSTER_DELETED", Some(resume_at)).await;
    let mut by_query = Sse::open(
        &app,
        &format!("?type=CLUSTER_DELETED&after={resume_at}"),
        None,
    )
    .await;
    write_some(&app, "skipped", 3).await;
    assert_eq!(app.delete_cluster(&a).await.status(), 204);
    for stream in [&mut resumed, &mut by_query] {
        let event = stream.next_matching().await;
        assert_eq!(event["type"], "CLUSTER_DELETED");
        assert_eq!(event["resource_id"], a.as_str(), "not {b} again");
    }
    let deleted = from_start.next_matching().await;
    assert_eq!(deleted["type"], "CLUSTER_DELETED");
    assert_eq!(deleted["resource_id"], a.as_str());
});
