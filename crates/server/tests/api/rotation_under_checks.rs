//! Credential rotation under concurrent health checks (issue 5): while refresh
//! loops and scheduler rounds check several clusters without pause, each
//! cluster's TOKEN credentials (API server, Prometheus, Tempo and Loki tokens)
//! are rotated through several sets. The simulator's request log, which records
//! the credential of every request, must show that every check presented one
//! set only (never the API token of one set with an observability token of
//! another), that checks of a cluster move through the sets in order, that
//! checks with the old and with the new set both happened, and that once a
//! rotation has returned no check that starts later presents an older set.
//!
//! Sized for a loaded 2-core CI machine: the loops pause briefly between
//! checks (still overlapping rotations), the log is read incrementally, no
//! check times out (so none abandons a request), and waiting fails only when
//! checks stop coming, not after a fixed time.

use crate::helpers::{is_check_api_call, log_position, scheduled, TestApp};
use fleetreg_server::settings::Settings;
use fleetreg_sim::{
    AuthSpec, ClusterSpec, FaultsPatch, LogEntry, ObservabilitySpec, Service, SpawnedSim,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const CLUSTERS: [&str; 3] = ["rot-one", "rot-two", "rot-three"];
/// Set 0 is "no credentials" (what the scheduler presents before the upload);
/// set 1 is uploaded, sets 2..=LAST_SET are rotated in one after the other.
const LAST_SET: usize = 8;

/// Checks of each cluster with each set before the next rotation (at least).
const CHECKS_PER_SET: usize = 5;
/// Refresh loops per cluster (they contend for the cluster's probe lock).
const REFRESH_LOOPS: usize = 2;
/// The pause of each refresh loop between refreshes, and of the scheduler
/// loop between rounds: checks still overlap every rotation (each takes at
/// least the simulator's 15 ms latency and several loops run), but the loops
/// leave the cores some room.
const PAUSE: Duration = Duration::from_millis(15);
/// How long the test waits without any new check before it gives up.
const STALLED: Duration = Duration::from_secs(60);
/// The check timeout: no loaded CI machine reaches it, so no check gives up on
/// a request the simulator answers later (which would put that request into
/// the next check's part of the log and break the grouping below).
const CHECK_TIMEOUT_SECONDS: u64 = 30;

/// Background checks every second (and the test ticks the scheduler itself).
fn every_second(settings: &mut Settings) {
    scheduled(settings, 1, CHECK_TIMEOUT_SECONDS);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Api,
    Prometheus,
    Tempo,
    Loki,
}

const PARTS: [Part; 4] = [Part::Api, Part::Prometheus, Part::Tempo, Part::Loki];

impl Part {
    fn of(service: Service) -> Part {
        match service {
            Service::ApiServer => Part::Api,
            Service::Prometheus => Part::Prometheus,
            Service::Tempo => Part::Tempo,
            Service::Loki => Part::Loki,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Part::Api => "api",
            Part::Prometheus => "prom",
            Part::Tempo => "tempo",
            Part::Loki => "loki",
        }
    }

    /// Whether `path` is what a health check calls on this service.
    fn is_check_path(self, path: &str) -> bool {
        match self {
            Part::Api => is_check_api_call(path),
            Part::Prometheus => path == "/prometheus/-/ready",
            Part::Tempo => path == "/tempo/ready",
            Part::Loki => path == "/loki/ready",
        }
    }
}

/// The token of `cluster`'s set `set` for `part`, e.g. `rot-one_s3_tempo`.
fn token(cluster: &str, set: usize, part: Part) -> String {
    format!("{cluster}_s{set}_{}", part.label())
}

fn tokens(cluster: &str, part: Part) -> Vec<String> {
    (1..=LAST_SET)
        .map(|set| token(cluster, set, part))
        .collect()
}

fn credentials(cluster: &str, set: usize) -> Value {
    json!({
        "auth_type": "TOKEN",
        "token": token(cluster, set, Part::Api),
        "prometheus_token": token(cluster, set, Part::Prometheus),
        "tempo_token": token(cluster, set, Part::Tempo),
        "loki_token": token(cluster, set, Part::Loki),
    })
}

/// The set an entry's credential belongs to (0: none), checking that the token
/// is one of this cluster's and meant for the service it went to.
fn set_of(entry: &LogEntry) -> usize {
    let Some(token) = &entry.bearer_token else {
        return 0;
    };
    let part = Part::of(entry.service);
    (1..=LAST_SET)
        .find(|&set| *token == self::token(&entry.cluster, set, part))
        .unwrap_or_else(|| {
            panic!(
                "a token that is not {}'s {part:?} token: {entry:?}",
                entry.cluster
            )
        })
}

/// One rotation as the test drove it: the log position before the request was
/// sent and after it returned.
#[derive(Debug, Clone, Copy)]
struct Rotation {
    set: usize,
    sent_after: u64,
    returned_after: u64,
}

/// One check as the log shows it.
#[derive(Debug)]
struct Check {
    first: u64,
    last: u64,
    set: usize,
}

/// The simulator's request log as read so far, by cluster: read on
/// incrementally (the log is a ring; an early, complete copy is kept here).
#[derive(Default)]
struct Log {
    after: u64,
    by_cluster: HashMap<String, Vec<LogEntry>>,
}

impl Log {
    /// Reads the entries logged since the last call.
    fn pull(&mut self, sim: &SpawnedSim) {
        let page = sim.sim.requests(self.after, None, usize::MAX);
        if let Some(first) = page.items.first() {
            assert_eq!(
                first.seq,
                self.after + 1,
                "the request log overflowed before it was read"
            );
        }
        for entry in page.items {
            self.by_cluster
                .entry(entry.cluster.clone())
                .or_default()
                .push(entry);
        }
        self.after = page.next_after;
    }

    fn of(&self, cluster: &str) -> &[LogEntry] {
        self.by_cluster.get(cluster).map_or(&[], Vec::as_slice)
    }

    /// Check API calls of every cluster so far (validations included).
    fn check_calls(&self) -> usize {
        self.by_cluster
            .values()
            .flatten()
            .filter(|e| is_check_api_call(&e.path))
            .count()
    }
}

async fn rotate(app: &TestApp, sim: &SpawnedSim, id: &str, cluster: &str, set: usize) -> Rotation {
    let path = if set == 1 {
        format!("/api/v1/clusters/{id}/credentials")
    } else {
        format!("/api/v1/clusters/{id}/credentials/rotate")
    };
    let sent_after = log_position(sim);
    let response = app
        .client
        .post(app.url(&path))
        .json(&credentials(cluster, set))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let returned_after = log_position(sim);
    assert_eq!(status, 200, "{cluster} to set {set}: {body}");
    assert_eq!(body["version"], set, "{cluster} to set {set}: {body}");
    Rotation {
        set,
        sent_after,
        returned_after,
    }
}

/// Checks of `cluster` with set `set` the log shows so far (validation calls
/// included: the caller allows for them).
fn api_calls_with(log: &Log, cluster: &str, set: usize) -> usize {
    let wanted = token(cluster, set, Part::Api);
    log.of(cluster)
        .iter()
        .filter(|e| is_check_api_call(&e.path) && e.bearer_token.as_deref() == Some(&wanted))
        .count()
}

/// Splits `cluster`'s log into its checks (validation and discovery calls
/// removed), verifying that each group is exactly one call to each service.
fn checks_of(entries: &[LogEntry], cluster: &str, rotations: &[Rotation]) -> Vec<Check> {
    // A rotation validates the new set (API server, Prometheus query, Tempo,
    // Loki) before storing it, so the first call of each service presenting a
    // set's token is that validation; it must lie inside the rotation's window.
    let mut validation_seen: HashMap<(usize, Part), u64> = HashMap::new();
    let mut remaining = Vec::new();
    for entry in entries {
        let part = Part::of(entry.service);
        let set = set_of(entry);
        if set > 0 && !validation_seen.contains_key(&(set, part)) {
            let is_validation = match part {
                Part::Prometheus => entry.path == "/prometheus/api/v1/query?query=up",
                _ => part.is_check_path(&entry.path),
            };
            if is_validation {
                validation_seen.insert((set, part), entry.seq);
                continue;
            }
        }
        if !part.is_check_path(&entry.path) {
            // Discovery (refresh and the scheduler's first round rediscover).
            continue;
        }
        remaining.push(entry);
    }
    for rotation in rotations {
        for part in PARTS {
            let seq = validation_seen
                .get(&(rotation.set, part))
                .unwrap_or_else(|| {
                    let calls: Vec<(&str, u16)> = entries
                        .iter()
                        .filter(|e| Part::of(e.service) == part && set_of(e) == rotation.set)
                        .map(|e| (e.path.as_str(), e.status))
                        .collect();
                    panic!(
                        "{cluster}: no validation of set {} for {part:?} among {calls:?}",
                        rotation.set
                    )
                });
            assert!(
                rotation.sent_after < *seq && *seq <= rotation.returned_after,
                "{cluster}: validation of set {} for {part:?} at {seq} outside its rotation {rotation:?}",
                rotation.set
            );
        }
    }

    // Checks of one cluster never overlap and each answers all its calls
    // before it ends (none times out: see CHECK_TIMEOUT_SECONDS), so the rest
    // splits into groups of four in log order.
    let abandoned = format!(
        "(if a check timed out, a request it abandoned lands among the next check's: \
         the grouping needs every check to finish within {CHECK_TIMEOUT_SECONDS} s)"
    );
    assert!(
        remaining.len() % 4 == 0,
        "{cluster}: {} check calls, not a whole number of checks {abandoned}",
        remaining.len()
    );
    remaining
        .chunks(4)
        .map(|group| {
            let mut parts: Vec<Part> = group.iter().map(|e| Part::of(e.service)).collect();
            parts.sort();
            assert_eq!(
                parts, PARTS,
                "{cluster}: not one call per service {abandoned}: {group:#?}"
            );
            let sets: Vec<usize> = group.iter().map(|e| set_of(e)).collect();
            assert!(
                sets.iter().all(|&s| s == sets[0]),
                "{cluster}: one check presented credentials of sets {sets:?}: {group:#?}"
            );
            if sets[0] > 0 {
                assert!(
                    group.iter().all(|e| e.status == 200),
                    "{cluster}: a check with set {} was refused: {group:#?}",
                    sets[0]
                );
            }
            Check {
                first: group.iter().map(|e| e.seq).min().unwrap(),
                last: group.iter().map(|e| e.seq).max().unwrap(),
                set: sets[0],
            }
        })
        .collect()
}

async fn body(app: TestApp) {
    let sim = SpawnedSim::start().await.unwrap();
    let admin = sim.admin();
    let spec = ClusterSpec {
        observability: ObservabilitySpec {
            prometheus: true,
            thanos: false,
            tempo: true,
            loki: true,
        },
        ..ClusterSpec::default()
    };
    let mut ids = Vec::new();
    for cluster in CLUSTERS {
        // Every set is accepted from the start: what is tested is which one
        // fleetreg presents, not whether the cluster takes it.
        let auth = AuthSpec {
            required: true,
            tokens: tokens(cluster, Part::Api),
            prometheus_tokens: tokens(cluster, Part::Prometheus),
            tempo_tokens: tokens(cluster, Part::Tempo),
            loki_tokens: tokens(cluster, Part::Loki),
        };
        let view = admin
            .create_cluster_with_auth(cluster, spec.clone(), auth)
            .await
            .unwrap();
        // A little latency keeps checks in flight while rotations happen.
        admin
            .set_faults(
                cluster,
                &FaultsPatch {
                    api_latency_ms: Some(15),
                    ..FaultsPatch::default()
                },
            )
            .await
            .unwrap();
        let created = app
            .register(
                cluster,
                json!({
                    "api_server_url": view.api_server_url,
                    "endpoints": {
                        "prometheus_url": view.prometheus_url,
                        "tempo_url": view.tempo_url,
                        "loki_url": view.loki_url,
                    },
                }),
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    let mut rotations: BTreeMap<&str, Vec<Rotation>> = BTreeMap::new();
    for (cluster, id) in CLUSTERS.iter().zip(&ids) {
        rotations
            .entry(cluster)
            .or_default()
            .push(rotate(&app, &sim, id, cluster, 1).await);
    }

    // Checks without pause: refresh loops on every cluster, and scheduler
    // rounds forced due (besides its own background rounds).
    let stop = Arc::new(AtomicBool::new(false));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for id in &ids {
        for _ in 0..REFRESH_LOOPS {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/api/v1/clusters/{id}/refresh")),
            );
            let (stop, refreshes) = (stop.clone(), refreshes.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client.post(&url).send().await.unwrap();
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    assert_eq!(status, 200, "refresh: {text}");
                    refreshes.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(PAUSE).await;
                }
            }));
        }
    }
    let scheduler = app.health.clone().expect("the scheduler runs");
    let ticks = Arc::new(AtomicUsize::new(0));
    {
        let (stop, ticks) = (stop.clone(), ticks.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let tick = scheduler
                    .tick_at(Instant::now() + Duration::from_secs(3600))
                    .await;
                ticks.fetch_add(tick.started(), Ordering::Relaxed);
                tick.finish().await;
                tokio::time::sleep(PAUSE).await;
            }
        }));
    }

    // Rotate every cluster through the sets; before the next rotation, wait
    // until each cluster was checked with the new set (validation aside) a few
    // times, so that every set has checks before and after its successor.
    // However slow the machine, waiting fails only when checks stop coming.
    let mut log = Log::default();
    let mut progress = (0, Instant::now());
    for set in 1..=LAST_SET {
        if set > 1 {
            for (cluster, id) in CLUSTERS.iter().zip(&ids) {
                let rotation = rotate(&app, &sim, id, cluster, set).await;
                rotations.get_mut(cluster).unwrap().push(rotation);
            }
        }
        for cluster in CLUSTERS {
            loop {
                log.pull(&sim);
                // The validation and CHECKS_PER_SET checks.
                if api_calls_with(&log, cluster, set) > CHECKS_PER_SET {
                    break;
                }
                let checks = log.check_calls();
                if checks > progress.0 {
                    progress = (checks, Instant::now());
                }
                assert!(
                    progress.1.elapsed() < STALLED,
                    "{cluster} was not checked with set {set}: no new check for {STALLED:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    log.pull(&sim);
    let mut in_windows = 0;
    let mut total = 0;
    for cluster in CLUSTERS {
        let entries = log.of(cluster);
        let rotations = &rotations[cluster];
        let checks = checks_of(entries, cluster, rotations);
        total += checks.len();

        // In order: a check never presents a set older than the one before it.
        for pair in checks.windows(2) {
            assert!(
                pair[0].set <= pair[1].set,
                "{cluster}: set {} checked after set {}: {pair:?}",
                pair[1].set,
                pair[0].set
            );
        }
        // Every set, old and new around each rotation, was used by checks.
        for set in 1..=LAST_SET {
            assert!(
                checks.iter().any(|c| c.set == set),
                "{cluster}: no check with set {set}"
            );
        }
        for rotation in rotations {
            // The one check possibly in flight when the rotation returned may
            // still present the older set; every later check has the new one.
            let later: Vec<&Check> = checks
                .iter()
                .filter(|c| c.last > rotation.returned_after)
                .collect();
            for check in later.iter().skip(1) {
                assert!(
                    check.set >= rotation.set,
                    "{cluster}: a check after rotation {rotation:?} presented set {}: {check:?}",
                    check.set
                );
            }
            in_windows += checks
                .iter()
                .filter(|c| c.last > rotation.sent_after && c.first <= rotation.returned_after)
                .count();
        }
    }
    eprintln!(
        "rotation_under_checks ({:?}): {total} checks, {} refreshes, {} scheduler checks, {in_windows} checks overlapping a rotation",
        app.backend,
        refreshes.load(Ordering::Relaxed),
        ticks.load(Ordering::Relaxed),
    );
    assert!(
        in_windows > 0,
        "no check ran while a rotation was in progress: the test proved nothing"
    );
}

on_both_stores!(every_second);
