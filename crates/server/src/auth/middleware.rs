//! [`authorize`]: the bearer token of each request, checked against the store
//! (with a short cache) and the permission matrix.

use super::permissions::{access, Access};
use super::tokens::hash_token;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetreg_model::{ApiToken, ErrorCode, Role};
use fleetreg_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a looked-up token is trusted before the store is asked again (a
/// revocation by another replica takes effect within this; by this process, at once).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// Who is calling: the token's name and role (the audit log's actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// What [`authorize`] needs. Cheap to clone.
#[derive(Clone)]
pub struct AuthState {
    store: Arc<dyn Store>,
    metrics_open: bool,
    cache: Arc<Mutex<TokenCache>>,
}

/// Token lookups by hash: when they were made and what they found.
type TokenCache = HashMap<String, (Instant, Option<ApiToken>)>;

impl AuthState {
    /// Authorization over `store`'s tokens.
    pub fn new(store: Arc<dyn Store>, metrics_open: bool) -> AuthState {
        AuthState {
            store,
            metrics_open,
            cache: Arc::default(),
        }
    }

    /// Forgets cached lookups (after a revocation).
    pub fn forget(&self) {
        self.map().clear();
    }

    fn map(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn lookup(&self, token: &str) -> Result<Option<ApiToken>, ApiError> {
        let hash = hash_token(token);
        if let Some((at, found)) = self.map().get(&hash) {
            if at.elapsed() < CACHE_TTL {
                return Ok(found.clone());
            }
        }
        let found = self.store.find_token(&hash).await?;
        let mut map = self.map();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(hash, (Instant::now(), found.clone()));
        Ok(found)
    }
}

fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Checks the request's bearer token and role; puts the [`Principal`] into the
/// request's extensions. `UNAUTHENTICATED` 401 without a valid token,
/// `FORBIDDEN` 403 when the role may not call the route.
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
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(presented) = presented else {
        return unauthenticated("a bearer token is required (Authorization: Bearer <token>)");
    };
    let token = match auth.lookup(&presented).await {
        Ok(Some(token)) if token.is_active(fleetreg_model::now()) => token,
        Ok(Some(_)) => return unauthenticated("the token is revoked or expired"),
        Ok(None) => return unauthenticated("unknown token"),
        Err(error) => return error.into_response(),
    };
    if !rule.allows(Some(token.role)) {
        return ApiError::new(
            ErrorCode::Forbidden,
            format!("role {} may not {} {path}", token.role, request.method()),
        )
        .with_details(serde_json::json!({ "role": token.role }))
        .into_response();
    }
    request.extensions_mut().insert(Principal {
        name: token.name,
        role: token.role,
    });
    next.run(request).await
}
