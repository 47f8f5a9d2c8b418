//! `/api/v1/events` (a page of the change log) and `/api/v1/events/stream`
//! (server-sent events, resumable with `Last-Event-ID`).

use crate::auth::{AuthState, Session};
use crate::error::ApiError;
use crate::events::{render, Subscription};
use crate::extract::QueryPairs;
use crate::memory::EVENT_STREAMS;
use crate::metrics::EVENT_SUBSCRIBERS;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use fleetreg_model::{Event, EventFilter, EventType};
use fleetreg_store::StoreError;
use serde::Serialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an open stream re-checks its token.
const REVALIDATE: Duration = Duration::from_secs(2);

/// The event routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list))
        .route("/api/v1/events/stream", get(stream))
}

/// A page of the change log.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Events in revision order.
    pub items: Vec<Event>,
    /// Pass as `after` to read on. With a filter, the last revision the page
    /// accounts for, which may lie beyond its last item (the latest revision
    /// when the page is not full): nothing up to it was left out.
    pub next_after: i64,
    /// The latest revision when the page was read.
    pub latest_revision: i64,
}

struct EventQuery {
    after: Option<i64>,
    limit: u32,
    filter: EventFilter,
}

fn event_query(pairs: Vec<(String, String)>) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery {
        after: None,
        limit: DEFAULT_LIMIT,
        filter: EventFilter::default(),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "after" => query.after = Some(crate::query::integer("after", &value, 0, i64::MAX)?),
            "limit" => query.limit = crate::query::integer("limit", &value, 1, MAX_LIMIT)?,
            "type" => query.filter.add_type(&value)?,
            "resource" => query.filter.set_resource(&value)?,
            "resource_id" => query.filter.set_resource_id(&value)?,
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown query parameter; expected after, limit, type, resource or resource_id",
                ))
            }
        }
    }
    Ok(query)
}

/// Events after a revision (`after`; without it, from the oldest retained), at most `limit` (default 100, max 1000),
/// optionally only those of some types, of a kind of resource or of one resource. Read on with `after=next_after`:
/// with a filter it may be past the last item (every revision up to it was scanned).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Events after this revision; default: from the oldest retained"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "default 100"),
           ("type" = Option<Vec<EventType>>, Query, style = Form, explode, description = "Only events of these types; repeat for several (any of them)"),
           ("resource" = Option<String>, Query, description = "Only events about this kind of resource: cluster, client, rollout, host, deployment, domain, node, service or routing"),
           ("resource_id" = Option<uuid::Uuid>, Query, description = "Only events about this resource")),
    responses((status = 200, body = EventList),
              (status = 400, description = "VALIDATION_ERROR: `after` or `limit` out of range, `after` beyond the latest revision, \
                                            or an unknown `type` or `resource`, or a `resource_id` that is not a UUID"),
              (status = 410, description = "EVENTS_EXPIRED")))]
pub async fn list(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<EventList>, ApiError> {
    let query = event_query(pairs)?;
    let store = &state.store;
    let read = |after: i64| store.events_matching(after, &query.filter, query.limit);
    // Without `after`, read from the oldest retained event (never EVENTS_EXPIRED).
    let (after, page) = match (query.after, read(query.after.unwrap_or(0)).await) {
        (
            None,
            Err(StoreError::EventsExpired {
                oldest_revision, ..
            }),
        ) => {
            let after = oldest_revision - 1;
            (after, read(after).await?)
        }
        (after, page) => (after.unwrap_or(0), page?),
    };
    if after > page.latest_revision {
        // Following such a cursor would silently skip the revisions in between.
        return Err(ApiError::validation(
            "after",
            format!("is beyond the latest revision {}", page.latest_revision),
        ));
    }
    // Unfiltered, every revision is an event, so both rules agree; filtered,
    // the scan's end keeps a reader of rare events from scanning again.
    let next_after = if query.filter.is_empty() {
        page.items.last().map_or(after, |e| e.revision)
    } else {
        page.scanned_through
    };
    Ok(Json(EventList {
        next_after,
        items: page.items,
        latest_revision: page.latest_revision,
    }))
}

/// Live stream of events (SSE). Starts after `Last-Event-ID` or `?after=`, else
/// at the current revision. A client behind retention gets `event: RESYNC` and
/// the stream closes. With `type`, `resource` or `resource_id`, only the matching
/// events are sent; while others pass, a frame with only `id: <revision>` (no
/// data, not dispatched by EventSource, but its Last-Event-ID) is sent now and then
/// so that a reconnect resumes past them.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Start after this revision; default: now"),
           ("type" = Option<Vec<EventType>>, Query, style = Form, explode, description = "Only events of these types; repeat for several (any of them)"),
           ("resource" = Option<String>, Query, description = "Only events about this kind of resource: cluster, client, rollout, host, deployment, domain, node, service or routing"),
           ("resource_id" = Option<uuid::Uuid>, Query, description = "Only events about this resource"),
           ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this revision (wins over `after`)")),
    responses((status = 200, content_type = "text/event-stream", body = crate::openapi::StreamEvent,
                description = "`id: <revision>`, `event: <type>`, `data: <Event>` frames and keep-alive comments; \
                               `event: RESYNC` with `{oldest_revision, latest_revision}` when behind retention, then the end; \
                               with a filter, also `id: <revision>` alone (no event: where to resume past skipped events)"),
              (status = 400, description = "VALIDATION_ERROR: `after` or `Last-Event-ID` is not a revision, \
                                            an unknown `type` or `resource`, or a `resource_id` that is not a UUID")))]
pub async fn stream(
    State(state): State<AppState>,
    session: Option<Extension<Session>>,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let query = event_query(pairs)?;
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(crate::query::integer(
            "Last-Event-ID",
            v.to_str().unwrap_or_default().trim(),
            0,
            i64::MAX,
        )?),
        None => None,
    };
    // Subscribe before reading the backlog so nothing falls between the two.
    let live = state.hub.subscribe();
    let start = last_event_id.or(query.after).unwrap_or(live.head);
    // A start behind retention is not refused with 410: the stream opens and
    // `catch_up` sends `event: RESYNC` with {oldest_revision, latest_revision},
    // then closes (DESIGN.md), so EventSource clients learn to resync.
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    // The stream lives only as long as its token: it ends when the token is
    // revoked or expires, like the token's REST calls start failing then.
    let auth = state.auth.clone();
    tokio::spawn(async move {
        let token_ended = token_ended(auth, session.map(|Extension(s)| s));
        tokio::select! {
            () = feed(state, start, query.filter, live, tx.clone()) => {}
            () = token_ended => {
                let _ = tx
                    .send(Ok(Bytes::from_static(b": the token was revoked or has expired\n\n")))
                    .await;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx));
    Ok((
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
            (
                axum::http::header::HeaderName::from_static("x-accel-buffering"),
                "no",
            ),
        ],
        body,
    )
        .into_response())
}

/// Completes when the token of `session` stops being valid: at its expiry,
/// when this server revokes a token (then re-checked at once), and otherwise
/// re-checked every [`REVALIDATE`] (a revocation on another replica shows
/// within that plus the token cache's few seconds).
///
/// Expiry is judged by the store's clock ([`AuthState::clock`]), never by the
/// timer alone. The timer sleeps (tokio, monotonic) for the time the clock
/// says is left; when it fires, the clock decides, and if the expiry is still
/// ahead (a manual clock standing still, the wall clock stepped back) it
/// sleeps again for what is left. A clock that jumps past the expiry while
/// the timer sleeps (a test advancing a manual clock, the wall clock stepped
/// forward) is noticed at the next re-check, within [`REVALIDATE`]: the clock
/// cannot wake sleepers, and with a 2 s bound it needs not.
async fn token_ended(auth: AuthState, session: Option<Session>) {
    let Some(session) = session else {
        // Only on a route without authentication, which this is not.
        return std::future::pending().await;
    };
    let clock = auth.clock().clone();
    let expired = || session.expires_at().is_some_and(|at| at <= clock.now());
    let expiry = async {
        match session.expires_at() {
            Some(at) => loop {
                match (at - clock.now()).to_std() {
                    Ok(left) if !left.is_zero() => tokio::time::sleep(left).await,
                    _ => return,
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let mut revocations = auth.revocations();
    let mut every = tokio::time::interval(REVALIDATE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut expiry => return,
            changed = revocations.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
            _ = every.tick() => {}
        }
        if expired() || !auth.still_valid(&session).await {
            return;
        }
    }
}

/// Counts an open stream in the metrics and in [`EVENT_STREAMS`] (which asks
/// for memory back when many have ended) while it lives.
struct SubscriberGauge;

impl SubscriberGauge {
    fn new() -> Self {
        metrics::gauge!(EVENT_SUBSCRIBERS).increment(1.0);
        EVENT_STREAMS.opened();
        SubscriberGauge
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        metrics::gauge!(EVENT_SUBSCRIBERS).decrement(1.0);
        EVENT_STREAMS.closed();
    }
}

type Sink = mpsc::Sender<Result<Bytes, Infallible>>;

/// Where a stream stands.
struct Cursor {
    /// Every event up to this revision was sent or filtered out.
    at: i64,
    /// The last revision the client was given as an `id`: where it resumes.
    told: i64,
    /// When `told` was last moved by a progress frame (or the stream opened).
    told_at: Instant,
}

impl Cursor {
    fn new(start: i64) -> Cursor {
        Cursor {
            at: start,
            told: start,
            told_at: Instant::now(),
        }
    }

    /// A frame with only `id: <at>`, when a filter skipped events since the
    /// client was last given an id and `due` (idle, or [`KEEP_ALIVE`] since the
    /// last one): EventSource dispatches no event for it but resumes after it,
    /// so a reconnect does not scan the skipped revisions again.
    fn progress(&mut self, filter: &EventFilter, due: bool) -> Option<Bytes> {
        let due = due || self.told_at.elapsed() >= KEEP_ALIVE;
        if filter.is_empty() || self.at <= self.told || !due {
            return None;
        }
        self.told = self.at;
        self.told_at = Instant::now();
        Some(Bytes::from(format!("id: {}\n\n", self.at)))
    }

    fn sent(&mut self, revision: i64) {
        self.at = revision;
        self.told = revision;
    }
}

/// Sends the backlog after `cursor` from the store (only what `filter`
/// matches, filtered in SQL); `false` when the client left or was told to
/// resync.
async fn catch_up(state: &AppState, filter: &EventFilter, cursor: &mut Cursor, tx: &Sink) -> bool {
    loop {
        match state.store.events_matching(cursor.at, filter, 500).await {
            Ok(page) => {
                let n = page.items.len();
                for event in &page.items {
                    if tx.send(Ok(render(event))).await.is_err() {
                        return false;
                    }
                    cursor.sent(event.revision);
                }
                // Past the last match: what the filter skipped is accounted for.
                cursor.at = cursor.at.max(page.scanned_through);
                if n < 500 {
                    return true;
                }
            }
            Err(StoreError::EventsExpired {
                oldest_revision,
                latest_revision,
                ..
            }) => {
                let data = json!({ "oldest_revision": oldest_revision, "latest_revision": latest_revision });
                let _ = tx
                    .send(Ok(Bytes::from(format!("event: RESYNC\ndata: {data}\n\n"))))
                    .await;
                return false;
            }
            Err(error) => {
                tracing::warn!(%error, "event stream could not read the change log");
                return false;
            }
        }
    }
}

async fn feed(state: AppState, start: i64, filter: EventFilter, live: Subscription, tx: Sink) {
    let _gauge = SubscriberGauge::new();
    if tx
        .send(Ok(Bytes::from_static(b": connected\n\n")))
        .await
        .is_err()
    {
        return;
    }
    let mut cursor = Cursor::new(start);
    // Every frame after the hub's head comes live; only a start before it
    // (a resume) has a backlog in the store. A stream that starts now reads
    // nothing there, so a thousand subscribers connecting at once cost the
    // store nothing.
    if start < live.head && !catch_up(&state, &filter, &mut cursor, &tx).await {
        return;
    }
    let mut live = live.frames;
    loop {
        let next = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            next = tokio::time::timeout(KEEP_ALIVE, live.recv()) => next,
        };
        let sent = match next {
            Err(_) => match cursor.progress(&filter, true) {
                Some(progress) => tx.send(Ok(progress)).await,
                None => tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await,
            },
            Ok(Ok(frame)) if frame.revision() <= cursor.at => Ok(()),
            Ok(Ok(frame)) if frame.revision() > cursor.at + 1 => {
                // The hub is ahead of what this client has read: fill the gap from the store.
                if !catch_up(&state, &filter, &mut cursor, &tx).await {
                    return;
                }
                Ok(())
            }
            Ok(Ok(frame)) if !frame.matches(&filter) => {
                cursor.at = frame.revision();
                match cursor.progress(&filter, false) {
                    Some(progress) => tx.send(Ok(progress)).await,
                    None => Ok(()),
                }
            }
            Ok(Ok(frame)) => {
                cursor.sent(frame.revision());
                tx.send(Ok(frame.bytes())).await
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                if !catch_up(&state, &filter, &mut cursor, &tx).await {
                    return;
                }
                Ok(())
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_stream_tells_where_to_resume_past_what_it_skipped() {
        let mut filter = EventFilter::default();
        let mut cursor = Cursor::new(10);
        cursor.at = 14;
        assert_eq!(
            cursor.progress(&filter, true),
            None,
            "unfiltered, every event is sent"
        );
        filter.add_type("CLUSTER_DELETED").unwrap();
        assert_eq!(cursor.progress(&filter, false), None, "not due yet");
        assert_eq!(
            cursor.progress(&filter, true).as_deref(),
            Some(&b"id: 14\n\n"[..])
        );
        assert_eq!(cursor.progress(&filter, true), None, "told already");
        cursor.sent(15);
        assert_eq!(cursor.progress(&filter, true), None);
        cursor.at = 16;
        cursor.told_at -= KEEP_ALIVE;
        assert_eq!(
            cursor.progress(&filter, false).as_deref(),
            Some(&b"id: 16\n\n"[..]),
            "due once KEEP_ALIVE has passed while events are skipped"
        );
    }
}
