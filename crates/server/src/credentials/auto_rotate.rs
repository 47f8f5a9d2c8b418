//! Automatic rotation of service account tokens before they expire (seed 13.3).
//!
//! [`AutoRotation`] runs a round every `credentials.auto_rotation.check_interval_seconds`
//! (and when a backoff ends): every cluster whose credentials expire within
//! `credentials.rotation_warning_days` — or have expired: a cluster may still
//! accept the token (clock skew) and otherwise it refuses the request, which is
//! reported like any failure — is looked at:
//!
//! - KUBECONFIG credentials and tokens that are not service account JWTs are
//!   left alone: `rotation.mode` is `unsupported`, with the reason.
//! - A service account token (the JWT's `kubernetes.io` claim or
//!   `sub: system:serviceaccount:{ns}:{name}`, read without verifying; the
//!   cluster judges the token) is used to ask the cluster's TokenRequest API for
//!   a fresh token of the same service account valid for `token_ttl_hours`. The
//!   new credentials — the stored ones with the new token: same CA or insecure
//!   flag, same observability tokens — go through [`super::replace`] like a
//!   manual rotation: validated before they replace the old, stored as a new
//!   version with `CLUSTER_CREDENTIALS_UPDATED` and the audit entry
//!   (`credentials.rotate` by `system:credential-rotation`), only while the
//!   version read is still current (a manual rotation in between wins).
//! - A failure (TokenRequest refused or unreachable, the new token invalid)
//!   writes nothing, is audited (`credentials.rotate`, failure, with the error
//!   code) and is retried after a backoff doubling from [`INITIAL_BACKOFF`] up
//!   to `max_backoff_seconds`, kept per cluster in memory; the last attempt,
//!   error, failures in a row and the next attempt show in the `rotation`
//!   object of the credentials summary and of `/api/v1/credentials/expiring`.
//! - A cluster capping token lifetimes below the warning window grants a
//!   token that is within the window from the start: instead of rotating it
//!   again every round, the next rotation waits until two thirds of the
//!   granted lifetime have passed (noted as `last_error`, with
//!   `next_attempt_at`). The cap is remembered per cluster (any version waits
//!   so, also another replica's) until a rotation gets a longer token.
//!
//! The `rotation` object is read without opening credentials: the mode comes
//! from credentials this process has opened (checks, rotation rounds, its own
//! writes), else it is `pending`.
//!
//! One credential write per cluster at a time in this process
//! ([`Credentials::lock_writes`], shared with the API); across replicas the
//! store's version check keeps an automatic rotation from writing over a newer
//! version.

use super::replace::audit_failure;
use super::{replace, Credentials, CredentialsError, Replace, ReplaceError};
use crate::health::{ClusterGuard, ClusterLocks, HealthContext};
use crate::metrics;
use chrono::{DateTime, Duration as Span, Utc};
use fleetreg_model::{
    Audit, AuthType, CredentialWrite, ErrorCode, ExpiringCredentials, RotationMode, RotationStatus,
    StoredCredentials,
};
use fleetreg_probe::{ClusterCredential, Target};
use fleetreg_store::{Store, StoreError};
use secrecy::SecretString;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The audit actor of automatic rotations (`system:credential-rotation`).
pub const WORKER: &str = "credential-rotation";
/// The first retry after a failure; doubled after each further failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(60);
/// Most credentials looked at per round (soonest expiry first).
pub const MAX_PER_ROUND: u32 = 10_000;
/// Rotations running at once.
const MAX_CONCURRENT: usize = 8;

/// `credentials.auto_rotation` as the worker uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRotationSettings {
    /// Whether the worker rotates at all (`false`: `rotation.mode` is `manual`).
    pub enabled: bool,
    /// Time between rounds.
    pub check_interval: Duration,
    /// The lifetime asked of the TokenRequest API.
    pub token_ttl: Duration,
    /// The longest backoff after failures.
    pub max_backoff: Duration,
}

impl Default for AutoRotationSettings {
    fn default() -> Self {
        AutoRotationSettings {
            enabled: true,
            check_interval: Duration::from_secs(300),
            token_ttl: Duration::from_secs(720 * 3600),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// What is known of one cluster's rotation.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The credential version `kind` was read from.
    version: i64,
    kind: Option<Kind>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    consecutive_failures: u32,
    next_attempt_at: Option<DateTime<Utc>>,
    /// The lifetime the cluster granted when this server last asked for
    /// `token_ttl`, when that was shorter than the warning window (the cluster
    /// caps token lifetimes): kept across versions, cleared by a rotation that
    /// got a token outliving the window.
    capped_lifetime: Option<Span>,
}

impl Entry {
    /// Moves on to `version`: attempts of an older one no longer count.
    fn advance(&mut self, version: i64) {
        if self.version != version {
            self.version = version;
            self.last_error = None;
            self.consecutive_failures = 0;
            self.next_attempt_at = None;
            self.kind = None;
        }
    }
}

/// Whether a credential can be rotated automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A service account token: `(namespace, name)`.
    ServiceAccount(String, String),
    Unsupported(&'static str),
    /// Not known yet: this server has not opened the credentials (never
    /// stored in the book; reads do not open credentials).
    Pending,
}

const KUBECONFIG_REASON: &str = "kubeconfig credentials are rotated manually";
const NOT_SA_REASON: &str =
    "the token is not a service account token (no kubernetes.io or system:serviceaccount claims)";
const CERT_REASON: &str = "client certificate credentials are rotated manually";
const PENDING_REASON: &str =
    "not yet known: decided when the credentials are first used (health check or rotation round)";

impl Kind {
    fn of(credential: &ClusterCredential) -> Kind {
        if credential.server().is_some() {
            // From a kubeconfig (even one holding a service account token).
            return Kind::Unsupported(KUBECONFIG_REASON);
        }
        match credential.service_account() {
            Some((namespace, name)) => Kind::ServiceAccount(namespace, name),
            None if matches!(
                credential.api_auth(),
                fleetreg_probe::ApiAuth::BearerToken(_)
            ) =>
            {
                Kind::Unsupported(NOT_SA_REASON)
            }
            None => Kind::Unsupported(CERT_REASON),
        }
    }
}

/// Per-cluster rotation state and write locks, shared by [`Credentials`] (the
/// read side: summaries, the expiring list) and [`AutoRotation`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RotationBook {
    entries: Arc<Mutex<HashMap<Uuid, Entry>>>,
    /// One credential write per cluster at a time (API and worker).
    writes: ClusterLocks,
    /// `credentials.auto_rotation.enabled`.
    disabled: bool,
}

impl RotationBook {
    fn entries(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        // Every update is a few assignments to one entry: a poisoned map is usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes what kind of credential `version` of `cluster_id` is; a new
    /// version (stored by anyone) starts with no failures and no backoff.
    pub(super) fn classify(
        &self,
        cluster_id: Uuid,
        version: i64,
        credential: Option<&ClusterCredential>,
    ) {
        let kind = credential.map(Kind::of);
        let mut entries = self.entries();
        let entry = entries.entry(cluster_id).or_default();
        entry.advance(version);
        if kind.is_some() {
            entry.kind = kind;
        }
    }

    fn kind(&self, cluster_id: Uuid, version: i64) -> Option<Kind> {
        self.entries()
            .get(&cluster_id)
            .filter(|e| e.version == version)
            .and_then(|e| e.kind.clone())
    }

    /// The `rotation` object of `version` of `cluster_id`'s credentials.
    fn status(&self, cluster_id: Uuid, version: i64, kind: &Kind) -> RotationStatus {
        let mut entry = self.entries().get(&cluster_id).cloned().unwrap_or_default();
        // Attempts on an older version say nothing about this one.
        entry.advance(version);
        let (mode, reason, service_account) = match kind {
            Kind::ServiceAccount(ns, name) if self.disabled => (
                RotationMode::Manual,
                Some("credentials.auto_rotation.enabled is false".to_owned()),
                Some(format!("{ns}/{name}")),
            ),
            Kind::ServiceAccount(ns, name) => {
                (RotationMode::Auto, None, Some(format!("{ns}/{name}")))
            }
            Kind::Unsupported(reason) => {
                (RotationMode::Unsupported, Some((*reason).to_owned()), None)
            }
            Kind::Pending => (RotationMode::Pending, Some(PENDING_REASON.to_owned()), None),
        };
        RotationStatus {
            mode,
            reason,
            service_account,
            last_attempt_at: entry.last_attempt_at,
            last_success_at: entry.last_success_at,
            last_error: entry.last_error,
            consecutive_failures: entry.consecutive_failures,
            next_attempt_at: entry.next_attempt_at,
        }
    }

    pub(super) fn forget(&self, cluster_id: Uuid) {
        self.entries().remove(&cluster_id);
    }

    fn in_backoff(&self, cluster_id: Uuid, now: DateTime<Utc>) -> bool {
        self.entries()
            .get(&cluster_id)
            .and_then(|e| e.next_attempt_at)
            .is_some_and(|at| at > now)
    }

    fn attempted(&self, cluster_id: Uuid, at: DateTime<Utc>) {
        self.entries()
            .entry(cluster_id)
            .or_default()
            .last_attempt_at = Some(at);
    }

    fn succeeded(&self, cluster_id: Uuid, at: DateTime<Utc>) {
        let mut entries = self.entries();
        let entry = entries.entry(cluster_id).or_default();
        entry.last_success_at = Some(at);
        entry.last_error = None;
        entry.consecutive_failures = 0;
        entry.next_attempt_at = None;
    }

    /// After a rotation: the cluster granted `lifetime` for a token expiring
    /// at `expires_at`; when that is still within the warning window, the next
    /// rotation waits until `renew_at` (noted as `last_error`).
    fn granted(&self, cluster_id: Uuid, capped: Option<(Span, DateTime<Utc>, String)>) {
        let mut entries = self.entries();
        let entry = entries.entry(cluster_id).or_default();
        match capped {
            Some((lifetime, renew_at, note)) => {
                entry.capped_lifetime = Some(lifetime);
                entry.next_attempt_at = Some(renew_at);
                entry.last_error = Some(note);
            }
            None => entry.capped_lifetime = None,
        }
    }

    /// Whether `version` of `cluster_id`'s credentials (expiring at
    /// `expires_at`) waits: the cluster caps token lifetimes below the warning
    /// window, so a token is renewed only two thirds into a capped lifetime,
    /// not as soon as it is in the window (every round). Notes the wait.
    fn renews_later(
        &self,
        cluster_id: Uuid,
        version: i64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        warning_days: u64,
    ) -> bool {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&cluster_id) else {
            return false;
        };
        let Some(lifetime) = entry.capped_lifetime else {
            return false;
        };
        let renew_at = expires_at - lifetime / 3;
        if renew_at <= now {
            return false;
        }
        if version >= entry.version {
            entry.advance(version);
            entry.next_attempt_at = Some(renew_at);
            entry.last_error = Some(capped_note(lifetime, renew_at, warning_days));
        }
        true
    }

    fn failed(&self, cluster_id: Uuid, at: DateTime<Utc>, error: String, max_backoff: Duration) {
        let mut entries = self.entries();
        let entry = entries.entry(cluster_id).or_default();
        entry.last_error = Some(error);
        entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
        let delay = backoff(entry.consecutive_failures, max_backoff);
        entry.next_attempt_at = Some(at + Span::from_std(delay).unwrap_or(Span::hours(1)));
    }

    /// The earliest end of a backoff after `now`, if any.
    fn next_retry(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries()
            .values()
            .filter_map(|e| e.next_attempt_at)
            .filter(|at| *at > now)
            .min()
    }
}

/// When a token the cluster granted only `lifetime` (less than the warning
/// window) is renewed: two thirds into it, and not sooner than
/// [`INITIAL_BACKOFF`] from `now` (no tight loop on absurdly short tokens).
fn renew_at(expires_at: DateTime<Utc>, lifetime: Span, now: DateTime<Utc>) -> DateTime<Utc> {
    let floor = now + Span::from_std(INITIAL_BACKOFF).unwrap_or(Span::minutes(1));
    (expires_at - lifetime / 3).max(floor)
}

/// The `last_error` of a capped token (never a secret).
fn capped_note(lifetime: Span, renew_at: DateTime<Utc>, warning_days: u64) -> String {
    format!(
        "the cluster issued a token valid for only {} minutes, within the {warning_days}-day \
         warning window (it caps token lifetimes below token_ttl_hours): renewed two thirds \
         into its lifetime, next at {}",
        lifetime.num_minutes(),
        renew_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The wait after `failures` failures in a row: [`INITIAL_BACKOFF`] doubled
/// per further failure, at most `max` (and at least one second).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    INITIAL_BACKOFF
        .saturating_mul(1 << doublings)
        .min(max)
        .max(Duration::from_secs(1))
}

impl Credentials {
    /// Sets whether automatic rotation runs (`false`: service account tokens
    /// show `rotation.mode: manual`).
    pub fn with_auto_rotation(mut self, enabled: bool) -> Credentials {
        self.rotation.disabled = !enabled;
        self
    }

    /// Waits until no other credential write of `cluster_id` runs in this
    /// process (upload, manual or automatic rotation), then holds the cluster.
    pub async fn lock_writes(&self, cluster_id: Uuid) -> ClusterGuard {
        self.rotation.writes.lock(cluster_id).await
    }

    /// The `rotation` object of `stored`: from the kind of credential and the
    /// automatic attempts. Never opens credentials (reads are viewer-level
    /// and may list a thousand clusters): a TOKEN credential this process has
    /// not opened yet is `pending` until a health check or rotation round
    /// opens it (the first check of every cluster does).
    pub(super) async fn rotation_status(
        &self,
        stored: &StoredCredentials,
    ) -> Option<RotationStatus> {
        let id = stored.cluster_id;
        let kind = self.rotation_kind(id, stored.version, stored.auth_type);
        Some(self.rotation.status(id, stored.version, &kind))
    }

    /// [`Credentials::rotation_status`] for each item of the expiring list.
    pub(super) async fn with_rotation(&self, items: &mut [ExpiringCredentials]) {
        for item in items {
            let kind = self.rotation_kind(item.cluster_id, item.version, item.auth_type);
            item.rotation = Some(self.rotation.status(item.cluster_id, item.version, &kind));
        }
    }

    /// Whether `version` of `cluster_id`'s credentials can rotate
    /// automatically, from what is known without opening them.
    fn rotation_kind(&self, id: Uuid, version: i64, auth_type: AuthType) -> Kind {
        if let Some(kind) = self.rotation.kind(id, version) {
            return kind;
        }
        if auth_type == AuthType::Kubeconfig {
            return Kind::Unsupported(KUBECONFIG_REASON);
        }
        let opened = self
            .cache()
            .get(&id)
            .filter(|(opened, _)| *opened == version)
            .map(|(_, credential)| credential.clone());
        match opened {
            Some(credential) => {
                self.rotation.classify(id, version, Some(&credential));
                Kind::of(&credential)
            }
            None => Kind::Pending,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Clusters whose credentials were rotated.
    pub rotated: Vec<Uuid>,
    /// Clusters whose rotation failed (retried after the backoff).
    pub failed: Vec<Uuid>,
    /// Clusters left alone: not rotatable automatically.
    pub unsupported: Vec<Uuid>,
    /// Clusters skipped: in backoff, being rotated, or changed meanwhile.
    pub skipped: Vec<Uuid>,
}

/// A cluster this worker is rotating; released on drop (even when the attempt
/// panics).
struct Claimed {
    running: Arc<Mutex<HashSet<Uuid>>>,
    id: Uuid,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// How one attempt ended.
enum Outcome {
    Rotated,
    Failed,
    Unsupported,
    Skipped,
}

/// The automatic rotation worker. Cheap to clone; `run` drives it, tests call
/// [`AutoRotation::tick`] / [`AutoRotation::tick_at`].
#[derive(Clone)]
pub struct AutoRotation {
    store: Arc<dyn Store>,
    health: HealthContext,
    settings: AutoRotationSettings,
    warning_days: u64,
    /// Clusters being rotated by this worker (a concurrent round skips them).
    running: Arc<Mutex<HashSet<Uuid>>>,
}

impl std::fmt::Debug for AutoRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoRotation")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AutoRotation {
    /// The worker over `store`, rotating with `health`'s prober and credentials.
    pub fn new(
        store: Arc<dyn Store>,
        health: HealthContext,
        settings: AutoRotationSettings,
    ) -> AutoRotation {
        let warning_days = health.credentials.rotation_warning_days();
        AutoRotation {
            store,
            health,
            settings,
            warning_days,
            running: Arc::default(),
        }
    }

    fn book(&self) -> &RotationBook {
        &self.health.credentials.rotation
    }

    /// Runs until `shutdown`: a round every `check_interval`, or earlier when a
    /// backoff ends. The first round comes one interval after start.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let mut wait = self.settings.check_interval.max(Duration::from_secs(1));
            let now = self.store.clock().now();
            if let Some(at) = self.book().next_retry(now) {
                let until = (at - now).to_std().unwrap_or_default();
                wait = wait.min(until.max(Duration::from_secs(1)));
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
            let round = self.tick().await;
            if !(round.rotated.is_empty() && round.failed.is_empty()) {
                tracing::info!(
                    rotated = round.rotated.len(),
                    failed = round.failed.len(),
                    "credential rotation round"
                );
            }
        }
    }

    /// One round now.
    pub async fn tick(&self) -> Round {
        self.tick_at(self.store.clock().now()).await
    }

    /// One round as if it were `now` (the expiry window and backoffs are
    /// judged against it; tests pass a later time to end a backoff).
    pub async fn tick_at(&self, now: DateTime<Utc>) -> Round {
        let mut round = Round::default();
        if !self.settings.enabled {
            return round;
        }
        let before = now + super::expiry::window(self.warning_days) + Span::microseconds(1);
        let items = match self.store.expiring_credentials(before, MAX_PER_ROUND).await {
            Ok(items) => items,
            Err(error) => {
                tracing::warn!(%error, "credential rotation: cannot list expiring credentials");
                return round;
            }
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let mut tasks = tokio::task::JoinSet::new();
        for item in items {
            let id = item.cluster_id;
            if item.auth_type == AuthType::Kubeconfig {
                self.book().classify(id, item.version, None);
                round.unsupported.push(id);
                continue;
            }
            let waits = self.book().in_backoff(id, now)
                || self.book().renews_later(
                    id,
                    item.version,
                    item.expires_at,
                    now,
                    self.warning_days,
                );
            if waits || !self.claim(id) {
                round.skipped.push(id);
                continue;
            }
            let claimed = Claimed {
                running: self.running.clone(),
                id,
            };
            let (this, permits) = (self.clone(), permits.clone());
            tasks.spawn(async move {
                let _claimed = claimed;
                let _permit = permits.acquire_owned().await;
                let outcome = this.attempt(&item, now, before).await;
                (id, outcome)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((id, outcome)) = joined else { continue };
            match outcome {
                Outcome::Rotated => round.rotated.push(id),
                Outcome::Failed => round.failed.push(id),
                Outcome::Unsupported => round.unsupported.push(id),
                Outcome::Skipped => round.skipped.push(id),
            }
        }
        round
    }

    fn running(&self) -> MutexGuard<'_, HashSet<Uuid>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn claim(&self, id: Uuid) -> bool {
        self.running().insert(id)
    }

    /// Rotates one cluster's TOKEN credentials if they are a service account
    /// token whose own expiry is before `before`.
    async fn attempt(
        &self,
        item: &ExpiringCredentials,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Outcome {
        let id = item.cluster_id;
        let credentials = &self.health.credentials;
        let writes = credentials.lock_writes(id).await;
        // What is stored now (a write may have happened since the list).
        let stored = match self.store.get_credentials(id).await {
            Ok(Some(stored)) if stored.auth_type == AuthType::Token => stored,
            Ok(_) => return Outcome::Skipped,
            Err(error) => {
                tracing::warn!(cluster = %id, %error, "credential rotation: cannot read credentials");
                return Outcome::Skipped;
            }
        };
        let cluster = match self.store.get_cluster(id).await {
            Ok(cluster) => cluster,
            Err(error) => {
                tracing::debug!(cluster = %id, %error, "credential rotation: cluster gone");
                self.book().forget(id);
                return Outcome::Skipped;
            }
        };
        let current = match credentials.for_cluster(&cluster).await {
            Ok(super::Presentation::Present(current)) => current,
            Ok(super::Presentation::Nothing) => return Outcome::Skipped,
            Ok(super::Presentation::Withheld) => {
                // The TokenRequest would present them to an origin they are
                // not bound to: wait for an upload or an explicit rebind.
                tracing::debug!(cluster = %id, "credential rotation: credentials not bound to the cluster's origins");
                return Outcome::Skipped;
            }
            Err(error) => {
                let message = format!("the stored credentials cannot be opened: {error}");
                return self.fail(id, now, message, ErrorCode::InternalError).await;
            }
        };
        let Kind::ServiceAccount(namespace, service_account) = Kind::of(&current) else {
            return Outcome::Unsupported;
        };
        // Only the API server token is renewed: when the expiry comes from an
        // observability token, a new API token would not help.
        if current
            .api_token_expires_at()
            .is_some_and(|exp| exp >= before)
        {
            tracing::debug!(cluster = %id, "credential rotation: the API server token is not the one expiring");
            return Outcome::Skipped;
        }
        self.book().attempted(id, now);
        let timeout = self.health.timing(cluster.cluster_type).timeout;
        let target = Target::from_cluster(&cluster).with_credential(current);
        let ttl = i64::try_from(self.settings.token_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(600);
        let (token, expires_at) = match self
            .health
            .prober
            .request_token(&target, &namespace, &service_account, ttl, timeout)
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                let message =
                    format!("TokenRequest for {namespace}/{service_account} failed: {error}");
                return self
                    .fail(id, now, message, ErrorCode::ClusterUnreachable)
                    .await;
            }
        };
        let mut input = match self.open_for_rotation(&stored).await {
            Ok(input) => input,
            Err(error) => {
                let message = format!("the stored credentials cannot be opened: {error}");
                return self.fail(id, now, message, ErrorCode::InternalError).await;
            }
        };
        input.token = Some(token);
        input.expires_at = Some(expires_at);
        let audit = Audit::system(WORKER);
        let replacement = Replace {
            write: CredentialWrite::Rotate,
            input: &input,
            expected_version: Some(stored.version),
            audit: &audit,
        };
        match replace(&self.store, &self.health, cluster, replacement, &writes).await {
            Ok(replaced) => {
                self.book().succeeded(id, now);
                ::metrics::counter!(metrics::CREDENTIAL_ROTATIONS, "result" => "success")
                    .increment(1);
                // A cluster capping token lifetimes below the window: without
                // a wait, every round would rotate again.
                let capped = (expires_at < before).then(|| {
                    let lifetime = (expires_at - self.store.clock().now()).max(Span::zero());
                    let at = renew_at(expires_at, lifetime, now);
                    let note = capped_note(lifetime, at, self.warning_days);
                    tracing::warn!(cluster = %id, next = %at, "credential rotation: {note}");
                    (lifetime, at, note)
                });
                self.book().granted(id, capped);
                tracing::info!(cluster = %id, version = replaced.stored.version, "credentials rotated automatically");
                Outcome::Rotated
            }
            Err(ReplaceError::Credentials(CredentialsError::Store(
                StoreError::PreconditionFailed { actual, .. },
            ))) => {
                // Written by someone else meanwhile: theirs stands.
                tracing::info!(cluster = %id, version = actual, "credential rotation superseded by another write");
                ::metrics::counter!(metrics::CREDENTIAL_ROTATIONS, "result" => "superseded")
                    .increment(1);
                Outcome::Skipped
            }
            Err(ReplaceError::Rejected { failures, .. }) => {
                let causes: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{:?}: {}", f.component, f.cause))
                    .collect();
                let message = format!(
                    "the new token failed validation against the cluster ({}); the old credentials stay in force",
                    causes.join("; ")
                );
                // `replace` audited the refusal already.
                self.failed_without_audit(id, now, message);
                Outcome::Failed
            }
            Err(ReplaceError::Unusable(error)) => {
                self.failed_without_audit(id, now, format!("the new token is unusable: {error}"));
                Outcome::Failed
            }
            Err(error) => {
                let code = match &error {
                    ReplaceError::Shape(e) => e.code(),
                    _ => ErrorCode::InternalError,
                };
                self.fail(id, now, error.to_string(), code).await
            }
        }
    }

    /// The stored upload, opened to carry everything but the token over (the
    /// opening is audited as `credentials.decrypt` by the worker).
    async fn open_for_rotation(
        &self,
        stored: &StoredCredentials,
    ) -> Result<fleetreg_model::CredentialInput, CredentialsError> {
        let credentials = &self.health.credentials;
        let opened = credentials.open_input(stored).await;
        let entry = super::decrypt_entry(stored.cluster_id, &opened);
        self.store
            .append_audit(entry, &Audit::system(WORKER))
            .await?;
        let mut input = opened?;
        // Never carried over: replaced below.
        input.token = None::<SecretString>;
        Ok(input)
    }

    /// Records and audits a failed attempt.
    async fn fail(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        message: String,
        code: ErrorCode,
    ) -> Outcome {
        let audit = Audit::system(WORKER);
        let action = CredentialWrite::Rotate.action();
        if let Err(error) = audit_failure(&self.store, action, id, code, &audit).await {
            tracing::warn!(cluster = %id, %error, "credential rotation: cannot audit a failure");
        }
        self.failed_without_audit(id, now, message);
        Outcome::Failed
    }

    fn failed_without_audit(&self, id: Uuid, now: DateTime<Utc>, message: String) {
        tracing::warn!(cluster = %id, error = %message, "automatic credential rotation failed");
        ::metrics::counter!(metrics::CREDENTIAL_ROTATIONS, "result" => "failure").increment(1);
        self.book()
            .failed(id, now, message, self.settings.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(3600);
        let secs = |n| backoff(n, max).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(6), secs(7), secs(100)],
            [60, 120, 240, 1920, 3600, 3600]
        );
        assert_eq!(backoff(5, Duration::from_secs(90)).as_secs(), 90);
    }

    #[test]
    fn a_capped_token_is_renewed_two_thirds_into_its_lifetime() {
        let now = Utc::now();
        let hour = now + Span::hours(1);
        assert_eq!(
            renew_at(hour, Span::hours(1), now),
            hour - Span::minutes(20)
        );
        // Absurdly short: no sooner than a minute from now.
        let short = now + Span::seconds(30);
        assert_eq!(
            renew_at(short, Span::seconds(30), now),
            now + Span::minutes(1)
        );

        let book = RotationBook::default();
        let id = Uuid::new_v4();
        book.classify(id, 1, None);
        assert!(!book.renews_later(id, 1, hour, now, 7));
        book.granted(
            id,
            Some((
                Span::hours(1),
                renew_at(hour, Span::hours(1), now),
                "capped".into(),
            )),
        );
        // Any later version waits for two thirds of the capped lifetime too.
        let later = now + Span::minutes(30);
        let next = later + Span::hours(1);
        assert!(book.renews_later(id, 2, next, later, 7));
        assert!(!book.renews_later(id, 2, next, next - Span::minutes(20), 7));
        let status = book.status(id, 2, &Kind::Pending);
        assert_eq!(status.next_attempt_at, Some(next - Span::minutes(20)));
        assert!(status
            .last_error
            .unwrap()
            .contains("valid for only 60 minutes"));
        // A long token ends the wait.
        book.granted(id, None);
        assert!(!book.renews_later(id, 3, next, later, 7));
    }

    #[test]
    fn unopened_credentials_are_pending_without_older_failures() {
        let book = RotationBook::default();
        let id = Uuid::new_v4();
        book.classify(id, 1, None);
        book.failed(id, Utc::now(), "refused".into(), Duration::from_secs(600));
        assert_eq!(book.status(id, 1, &Kind::Pending).consecutive_failures, 1);
        let status = book.status(id, 2, &Kind::Pending);
        assert_eq!(status.mode, RotationMode::Pending);
        assert!(status.reason.unwrap().contains("not yet known"));
        assert_eq!(status.consecutive_failures, 0);
        assert!(status.last_error.is_none() && status.next_attempt_at.is_none());
    }
}
