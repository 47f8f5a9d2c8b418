//! [`authorize`]: the bearer token of each request, checked against the store
//! (with a short cache) and the permission matrix; refusals by role are audited.

use super::permissions::{access, action, Access};
use super::tokens::{digest, TokenHasher};
use crate::error::ApiError;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fleetreg_model::{ApiToken, Audit, AuditResult, Clock, ErrorCode, Role};
use fleetreg_store::{AuditOnly, Store, TokenRekey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// How long a looked-up token is trusted before the store is asked again (a
/// revocation by another replica takes effect within this; by this process, at once).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// The one answer for a token that is presented but not usable, whether it is
/// unknown, revoked or expired (so the answer does not tell which).
const INVALID_TOKEN: &str = "the bearer token is not valid (unknown, revoked or expired)";

/// Who is calling: the token's name and role (the audit log's actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The edge node an `agent` token is bound to.
    pub node: Option<String>,
}

impl Principal {
    /// Whether this caller may act for the edge node `name`: any role the
    /// route admits, except an agent bound to another node.
    pub fn may_act_for_node(&self, name: &str) -> bool {
        self.role != Role::Agent || self.node.as_deref() == Some(name)
    }
}

/// The token a request was authorized with, for work that outlives the
/// request (an event stream re-checks it with [`AuthState::still_valid`]).
#[derive(Clone)]
pub struct Session {
    id: Uuid,
    expires_at: Option<DateTime<Utc>>,
    /// SHA-256 hex of the token (the lookup key); never shown.
    digest: String,
}

impl Session {
    /// When the token expires, if ever.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What [`authorize`] needs. Cheap to clone.
#[derive(Clone)]
pub struct AuthState {
    store: Arc<dyn Store>,
    hasher: TokenHasher,
    metrics_open: bool,
    cache: Arc<Mutex<TokenCache>>,
    /// Bumped by every revocation through this server, so open streams re-check at once.
    revocations: Arc<watch::Sender<u64>>,
    /// Expiry is judged by the store's clock.
    clock: Clock,
}

/// Token lookups by digest: when they were made and what they found.
type TokenCache = HashMap<String, (Instant, Option<ApiToken>)>;

impl AuthState {
    /// Authorization over `store`'s tokens, stored in `hasher`'s form.
    pub fn new(store: Arc<dyn Store>, hasher: TokenHasher, metrics_open: bool) -> AuthState {
        AuthState {
            clock: store.clock().clone(),
            store,
            hasher,
            metrics_open,
            cache: Arc::default(),
            revocations: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The stored form of tokens.
    pub fn hasher(&self) -> &TokenHasher {
        &self.hasher
    }

    /// The clock token expiry is judged by (the store's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Forgets cached lookups and tells open streams to re-check their token
    /// (after a revocation).
    pub fn forget(&self) {
        self.map().clear();
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever [`AuthState::forget`] is called.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the token of `session` is still known, unrevoked and unexpired
    /// (through the cache: a revocation by another replica shows within
    /// [`CACHE_TTL`]). A store failure counts as valid: the next check decides.
    pub async fn still_valid(&self, session: &Session) -> bool {
        match self.lookup_digest(&session.digest).await {
            Ok(Some(token)) => token.id == session.id && token.is_active(self.clock.now()),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn lookup_digest(&self, digest: &str) -> Result<Option<ApiToken>, ApiError> {
        if let Some((at, found)) = self.map().get(digest) {
            if at.elapsed() < CACHE_TTL {
                return Ok(found.clone());
            }
        }
        let found = match self.hasher.find(self.store.as_ref(), digest).await? {
            Some((position, stored, token)) => {
                if position > 0 {
                    self.rekey_under_active_key(&token, stored, digest).await;
                }
                Some(token)
            }
            None => None,
        };
        let mut map = self.map();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(digest.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Moves a token found under a previous master key to the active one, so
    /// the previous key can be retired; a failure is logged and retried at
    /// the next uncached use.
    async fn rekey_under_active_key(&self, token: &ApiToken, from: String, digest: &str) {
        let change = TokenRekey {
            id: token.id,
            to: self.hasher.stored_from_digest(digest),
            from,
        };
        if let Err(error) = self
            .store
            .rekey_tokens(vec![change], &Audit::system("bootstrap"))
            .await
        {
            tracing::warn!(%error, token = %token.name, "could not re-key a token under the active master key");
        }
    }

    /// Audits a refusal by role (403, see [`refusal`]); a failure to write is
    /// logged, the refusal stands.
    async fn audit_refusal(&self, (entry, audit): (AuditOnly, Audit)) {
        if let Err(error) = self.store.append_audit(entry, &audit).await {
            tracing::warn!(%error, "a refused request could not be audited");
        }
    }
}

/// The audit entry of a refusal by role, and its actor.
fn refusal(token: &ApiToken, request: &Request, path: &str) -> (AuditOnly, Audit) {
    let entry = AuditOnly {
        action: action(request.method(), path),
        resource_id: target_id(path, request.uri().path()),
        result: AuditResult::Failure,
        error_code: Some(ErrorCode::Forbidden),
    };
    let audit = Audit {
        actor: token.name.clone(),
        role: Some(token.role.as_str().to_owned()),
        source: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string()),
        request_id: request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    (entry, audit)
}

/// The id in the `{id}` segment of the route `template`, read from `path`.
fn target_id(template: &str, path: &str) -> Option<Uuid> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == "{id}")
        .and_then(|(_, segment)| Uuid::parse_str(segment).ok())
}

fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The bearer token of `headers`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Checks the request's bearer token and role; puts the [`Principal`] and the
/// [`Session`] into the request's extensions. `UNAUTHENTICATED` 401 without a
/// valid token (one message for unknown, revoked and expired ones), `FORBIDDEN`
/// 403 (audited) when the role may not call the route.
pub async fn authorize(
    State(auth): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let rule = access(request.method(), &path, auth.metrics_open);
    if rule == Access::Open {
        return next.run(request).await;
    }
    let Some(presented) = bearer(request.headers()) else {
        return unauthenticated("a bearer token is required (Authorization: Bearer <token>)");
    };
    let presented = digest(presented);
    let token = match auth.lookup_digest(&presented).await {
        Ok(Some(token)) if token.is_active(auth.clock.now()) => token,
        Ok(_) => return unauthenticated(INVALID_TOKEN),
        Err(error) => return error.into_response(),
    };
    if !rule.allows(Some(token.role)) {
        // Read out before awaiting: a request (its body) is not `Sync`.
        let refused = refusal(&token, &request, &path);
        auth.audit_refusal(refused).await;
        return ApiError::new(
            ErrorCode::Forbidden,
            format!("role {} may not {} {path}", token.role, request.method()),
        )
        .with_details(serde_json::json!({ "role": token.role }))
        .into_response();
    }
    request.extensions_mut().insert(Session {
        id: token.id,
        expires_at: token.expires_at,
        digest: presented,
    });
    request.extensions_mut().insert(Principal {
        name: token.name,
        role: token.role,
        node: token.node,
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_id_segment() {
        let id = Uuid::now_v7();
        assert_eq!(
            target_id(
                "/api/v1/clusters/{id}/refresh",
                &format!("/api/v1/clusters/{id}/refresh")
            ),
            Some(id)
        );
        assert_eq!(target_id("/api/v1/clusters", "/api/v1/clusters"), None);
        assert_eq!(
            target_id("/api/v1/clusters/{id}", "/api/v1/clusters/not-a-uuid"),
            None
        );
    }
}
