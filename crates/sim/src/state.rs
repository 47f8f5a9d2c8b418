//! The shared state of a simulator: its clusters (contents, faults, credentials,
//! Secrets), its request log, its clock and, when serving HTTPS, its CA.

use crate::auth::{AuthSpec, Credentials};
use crate::clock::{ClockView, SimClock};
use crate::error::Error;
use crate::log::{LogEntry, RequestLog, RequestPage};
use crate::pki::Pki;
use crate::secrets::SecretStore;
use crate::spec::{ClusterSpec, Faults, FaultsPatch, ServiceSpec};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A handle on one simulator's state; cheap to clone.
///
/// Locks are `std::sync` ones: none is held across an `.await`.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    clusters: RwLock<BTreeMap<String, Entry>>,
    log: Mutex<RequestLog>,
    clock: SimClock,
    pki: Option<Pki>,
}

#[derive(Clone)]
struct Entry {
    spec: Arc<ClusterSpec>,
    faults: Faults,
    auth: Arc<AuthSpec>,
    credentials: Arc<Mutex<Credentials>>,
    secrets: Arc<Mutex<SecretStore>>,
}

impl Entry {
    fn new(spec: ClusterSpec, faults: Faults, auth: AuthSpec) -> Entry {
        Entry {
            spec: Arc::new(spec),
            faults,
            auth: Arc::new(auth),
            credentials: Arc::default(),
            secrets: Arc::default(),
        }
    }
}

/// What a handler needs of one cluster for one request.
#[derive(Clone)]
pub struct Snapshot {
    /// Its contents.
    pub spec: Arc<ClusterSpec>,
    /// Its faults at the time of the request.
    pub faults: Faults,
    /// Its authentication settings at the time of the request.
    pub auth: Arc<AuthSpec>,
    pub(crate) credentials: Arc<Mutex<Credentials>>,
    pub(crate) secrets: Arc<Mutex<SecretStore>>,
}

/// Locks `mutex`; a poisoned lock only means a panic elsewhere, and every value
/// behind these locks stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cluster as the admin API shows it, with the URLs to register it under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Its name (the path segment after `/c/`).
    pub name: String,
    /// Base URL of its API server (`{base}/c/{name}`).
    pub api_server_url: String,
    /// Prometheus base URL (`{api_server_url}/prometheus`).
    pub prometheus_url: String,
    /// Tempo base URL (`{api_server_url}/tempo`).
    pub tempo_url: String,
    /// Loki base URL (`{api_server_url}/loki`).
    pub loki_url: String,
    /// Its contents.
    pub spec: ClusterSpec,
    /// Its current faults.
    pub faults: Faults,
    /// Its authentication settings.
    pub auth: AuthSpec,
}

impl Sim {
    /// An empty simulator whose clusters live under `base_url` (e.g.
    /// `http://127.0.0.1:9000`), keeping the last `log_capacity` requests.
    pub fn new(base_url: impl Into<String>, log_capacity: usize) -> Sim {
        Sim::with_pki(base_url.into(), log_capacity, None)
    }

    /// Like [`Sim::new`], for a simulator served over HTTPS ([`crate::run_tls`]):
    /// generates a CA and a server certificate for `127.0.0.1`, `::1`,
    /// `localhost` and `extra_hosts`.
    pub fn new_tls(
        base_url: impl Into<String>,
        log_capacity: usize,
        extra_hosts: &[String],
    ) -> Result<Sim, Error> {
        let pki = Pki::generate(extra_hosts)?;
        Ok(Sim::with_pki(base_url.into(), log_capacity, Some(pki)))
    }

    fn with_pki(base_url: String, log_capacity: usize, pki: Option<Pki>) -> Sim {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Sim {
            inner: Arc::new(Inner {
                base_url,
                clusters: RwLock::new(BTreeMap::new()),
                log: Mutex::new(RequestLog::new(log_capacity)),
                clock: SimClock::default(),
                pki,
            }),
        }
    }

    /// The CA and server certificate when serving HTTPS.
    pub fn pki(&self) -> Option<&Pki> {
        self.inner.pki.as_ref()
    }

    /// The CA certificate (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki().map(Pki::ca_pem)
    }

    /// The simulator's clock: wall time plus the offset tests move forward.
    /// Token and client-certificate expiry is judged by it.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Moves the simulator's clock by `seconds`.
    pub fn advance_clock(&self, seconds: i64) -> ClockView {
        self.inner.clock.advance(seconds)
    }

    /// The simulator's clock and its offset.
    pub fn clock(&self) -> ClockView {
        self.inner.clock.view()
    }

    /// The base URL clusters live under.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.inner
            .clusters
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .clusters
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.inner.log)
    }

    fn view(&self, name: &str, entry: &Entry) -> ClusterView {
        let api = format!("{}/c/{name}", self.inner.base_url);
        ClusterView {
            name: name.to_owned(),
            prometheus_url: format!("{api}/prometheus"),
            tempo_url: format!("{api}/tempo"),
            loki_url: format!("{api}/loki"),
            api_server_url: api,
            spec: (*entry.spec).clone(),
            faults: entry.faults.clone(),
            auth: (*entry.auth).clone(),
        }
    }

    /// Adds a cluster; fails when the name is taken or not a valid cluster name.
    pub fn create(
        &self,
        name: &str,
        spec: ClusterSpec,
        faults: Faults,
    ) -> Result<ClusterView, Error> {
        self.create_with_auth(name, spec, faults, AuthSpec::default())
    }

    /// Adds a cluster with authentication settings.
    pub fn create_with_auth(
        &self,
        name: &str,
        spec: ClusterSpec,
        faults: Faults,
        auth: AuthSpec,
    ) -> Result<ClusterView, Error> {
        validate_name(name)?;
        validate_services(&spec)?;
        let mut clusters = self.write();
        if clusters.contains_key(name) {
            return Err(Error::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let entry = Entry::new(spec, faults, auth);
        let view = self.view(name, &entry);
        clusters.insert(name.to_owned(), entry);
        Ok(view)
    }

    /// Adds `count` clusters named `{prefix}-00000`, `{prefix}-00001`, …, each with
    /// the spec `spec_of(index)`; names already taken are skipped. Returns how many
    /// were added.
    pub fn create_many(
        &self,
        prefix: &str,
        count: usize,
        spec_of: impl Fn(usize) -> ClusterSpec,
    ) -> Result<usize, Error> {
        self.create_many_with_auth(prefix, count, spec_of, &AuthSpec::default())
    }

    /// [`Sim::create_many`] with the same authentication settings for each cluster.
    pub fn create_many_with_auth(
        &self,
        prefix: &str,
        count: usize,
        spec_of: impl Fn(usize) -> ClusterSpec,
        auth: &AuthSpec,
    ) -> Result<usize, Error> {
        validate_name(&format!("{prefix}-00000"))?;
        let mut clusters = self.write();
        let mut added = 0;
        for i in 0..count {
            let name = format!("{prefix}-{i:05}");
            if clusters.contains_key(&name) {
                continue;
            }
            let spec = spec_of(i);
            validate_services(&spec)?;
            let entry = Entry::new(spec, Faults::default(), auth.clone());
            clusters.insert(name, entry);
            added += 1;
        }
        Ok(added)
    }

    /// One cluster.
    pub fn get(&self, name: &str) -> Result<ClusterView, Error> {
        let clusters = self.read();
        let entry = clusters.get(name).ok_or_else(|| not_found(name))?;
        Ok(self.view(name, entry))
    }

    /// Every cluster, by name.
    pub fn list(&self) -> Vec<ClusterView> {
        self.read()
            .iter()
            .map(|(name, entry)| self.view(name, entry))
            .collect()
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there is no cluster.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Removes a cluster.
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        self.write()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    /// Replaces a cluster's contents.
    pub fn set_spec(&self, name: &str, spec: ClusterSpec) -> Result<ClusterView, Error> {
        validate_services(&spec)?;
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        entry.spec = Arc::new(spec);
        Ok(self.view(name, entry))
    }

    /// A cluster's declared services ([`ClusterSpec::services`]).
    pub fn services(&self, name: &str) -> Result<Vec<ServiceSpec>, Error> {
        let clusters = self.read();
        let entry = clusters.get(name).ok_or_else(|| not_found(name))?;
        Ok(entry.spec.services.clone())
    }

    /// Declares `service` in cluster `name`, replacing the one of the same
    /// namespace and name; `true` when it is new.
    pub fn put_service(&self, name: &str, service: ServiceSpec) -> Result<bool, Error> {
        if let Some(reason) = service.name_problem() {
            return Err(Error::InvalidRequest { reason });
        }
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut spec = (*entry.spec).clone();
        let existing = spec
            .services
            .iter_mut()
            .find(|s| s.namespace == service.namespace && s.name == service.name);
        let created = match existing {
            Some(slot) => {
                *slot = service;
                false
            }
            None => {
                spec.services.push(service);
                true
            }
        };
        entry.spec = Arc::new(spec);
        Ok(created)
    }

    /// Removes the declared service `namespace/service` of cluster `name`
    /// ([`Error::UnknownService`] when it has none).
    pub fn delete_service(&self, name: &str, namespace: &str, service: &str) -> Result<(), Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut spec = (*entry.spec).clone();
        let before = spec.services.len();
        spec.services
            .retain(|s| !(s.namespace == namespace && s.name == service));
        if spec.services.len() == before {
            return Err(Error::UnknownService {
                cluster: name.to_owned(),
                service: format!("{namespace}/{service}"),
            });
        }
        entry.spec = Arc::new(spec);
        Ok(())
    }

    /// Changes a cluster's faults with `change`.
    pub fn edit_faults(
        &self,
        name: &str,
        change: impl FnOnce(&mut Faults),
    ) -> Result<ClusterView, Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        change(&mut entry.faults);
        Ok(self.view(name, entry))
    }

    /// Changes some of a cluster's faults.
    pub fn patch_faults(&self, name: &str, patch: &FaultsPatch) -> Result<ClusterView, Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        patch.apply(&mut entry.faults);
        Ok(self.view(name, entry))
    }

    /// Replaces a cluster's authentication settings; run-time credentials stay.
    pub fn set_auth(&self, name: &str, auth: AuthSpec) -> Result<ClusterView, Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        entry.auth = Arc::new(auth);
        Ok(self.view(name, entry))
    }

    /// Makes a cluster's TokenRequest API fail (500) or work again.
    pub fn set_token_request_fault(&self, name: &str, fail: bool) -> Result<ClusterView, Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        entry.faults.token_request_fail = fail;
        Ok(self.view(name, entry))
    }

    /// Caps the lifetime of the tokens a cluster's TokenRequest API issues
    /// (`None`: no cap).
    pub fn set_token_request_max_seconds(
        &self,
        name: &str,
        max: Option<i64>,
    ) -> Result<ClusterView, Error> {
        let mut clusters = self.write();
        let entry = clusters.get_mut(name).ok_or_else(|| not_found(name))?;
        entry.faults.token_request_max_seconds = max;
        Ok(self.view(name, entry))
    }

    /// What a request to `name` sees; `None` for an unknown cluster.
    pub fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let clusters = self.read();
        clusters.get(name).map(|entry| Snapshot {
            spec: entry.spec.clone(),
            faults: entry.faults.clone(),
            auth: entry.auth.clone(),
            credentials: entry.credentials.clone(),
            secrets: entry.secrets.clone(),
        })
    }

    /// Like [`Sim::snapshot`], failing with [`Error::NotFound`].
    pub(crate) fn cluster(&self, name: &str) -> Result<Snapshot, Error> {
        self.snapshot(name).ok_or_else(|| not_found(name))
    }

    /// Appends to the request log.
    pub fn record(&self, entry: LogEntry) {
        self.log().push(entry);
    }

    /// Log entries after sequence number `after`, of one cluster or all, at most `limit`.
    pub fn requests(&self, after: u64, cluster: Option<&str>, limit: usize) -> RequestPage {
        self.log().page(after, cluster, limit)
    }

    /// Empties the request log (sequence numbers keep increasing).
    pub fn clear_requests(&self) {
        self.log().clear();
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        name: name.to_owned(),
    }
}

fn validate_services(spec: &ClusterSpec) -> Result<(), Error> {
    match spec.services_problem() {
        Some(reason) => Err(Error::InvalidRequest { reason }),
        None => Ok(()),
    }
}

/// Cluster names are DNS labels (1–63 of `a-z0-9-`, alphanumeric at both ends), so
/// they are safe as a path segment and registrable in fleetreg.
fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_patch_delete() {
        let sim = Sim::new("http://h:1/", 10);
        let view = sim
            .create("a1", ClusterSpec::default(), Faults::default())
            .unwrap();
        assert_eq!(view.api_server_url, "http://h:1/c/a1");
        assert_eq!(view.loki_url, "http://h:1/c/a1/loki");
        assert!(matches!(
            sim.create("a1", ClusterSpec::default(), Faults::default()),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            sim.create("A/b", ClusterSpec::default(), Faults::default()),
            Err(Error::InvalidName { .. })
        ));
        let patch = FaultsPatch {
            tempo_down: Some(true),
            ..FaultsPatch::default()
        };
        assert!(sim.patch_faults("a1", &patch).unwrap().faults.tempo_down);
        assert_eq!(
            sim.create_many("s", 3, |_| ClusterSpec::default()).unwrap(),
            3
        );
        assert_eq!(sim.len(), 4);
        sim.delete("a1").unwrap();
        assert!(matches!(sim.get("a1"), Err(Error::NotFound { .. })));
    }
}
