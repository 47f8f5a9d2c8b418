//! Store outages, on resources each test starts itself (never the shared
//! PostgreSQL server):
//!
//! - `postgres_outage`: a private PostgreSQL cluster (`fleetreg_testkit::
//!   private_postgres`) crashed (`pg_ctl stop -m immediate`) under 8 writers
//!   and restarted 4 s later. While it is down every request that needs the
//!   store answers 503 `SERVICE_UNAVAILABLE` with `Retry-After` within 2 s
//!   (never 500, never a hang), `/ready` 503 within 1 s, `/health` 200; writes
//!   resume within 2 s of the database's return; nothing acknowledged is lost.
//! - `sqlite_full_disk`: SQLite on an 8 MiB tmpfs (`fleetreg_testkit::
//!   small_disk`) filled up (large enough that the freed space holds the WAL
//!   growth of 50 commits, about 40 KB each before a checkpoint): registrations answer a clear error (503
//!   `SERVICE_UNAVAILABLE` or 507 `INSUFFICIENT_STORAGE` naming the disk, never
//!   500 `INTERNAL_ERROR`), nothing acknowledged is lost, and once the space is
//!   freed the next 50 registrations succeed.
//!
//! Both print a `SKIP:` line and pass when the private resource cannot be had
//! (no PostgreSQL binaries unless `FLEETREG_REQUIRE_POSTGRES=1`; no tmpfs
//! mount, i.e. not root, unless `FLEETREG_REQUIRE_TMPFS=1`).
//!
//! Each test records every answer and checks them all at the end, so a
//! failure lists every violation with its numbers rather than the first.

use crate::helpers::{test_settings, TEST_ADMIN_TOKEN};
use fleetreg_server::Application;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The client gives up after this long: an answer this late is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request that needs the store answers within this while it is down.
const STORE_ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// `/ready` answers within this while the store is down.
const READY_LIMIT: Duration = Duration::from_secs(1);
/// Writes succeed again within this of the database's return.
const RESUME_LIMIT: Duration = Duration::from_secs(2);
/// How long the database stays down.
const DOWNTIME: Duration = Duration::from_secs(4);
/// Concurrent writers during the PostgreSQL outage.
const WRITERS: usize = 8;

/// A server of the test's own on `database_url`.
struct Server {
    address: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts the server like `helpers::spawn_app` does, on `database_url`,
    /// with the audit head file at `head_file` (the helpers' default for a
    /// PostgreSQL URL is named after the database, `postgres` here, and would
    /// be shared between runs).
    async fn start(database_url: &str, head_file: PathBuf) -> Server {
        init_logging();
        let mut settings = test_settings(database_url);
        settings.audit.head_file = Some(head_file);
        let app = Application::build(settings).await.expect("server starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            client: client(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops the server and waits (at most 20 s) for it to finish.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(20), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(outcome) => eprintln!("outage: the server stopped with {outcome:?}"),
                Err(_) => eprintln!("outage: the server did not stop within 20 s"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The server's log on the test's stderr when `TEST_LOG` is set (as
/// `helpers::spawn_app` does).
fn init_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
    }
}

/// A client sending the bootstrap admin token, giving up after
/// [`CLIENT_TIMEOUT`].
fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TEST_ADMIN_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

/// What one request got.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    started: Instant,
    elapsed: Duration,
    /// `None`: no answer (timeout after [`CLIENT_TIMEOUT`] or a transport error).
    status: Option<u16>,
    code: Option<String>,
    message: String,
    retry_after: Option<String>,
    body: Value,
    failure: Option<String>,
}

impl Answer {
    fn finished(&self) -> Instant {
        self.started + self.elapsed
    }

    /// Whether the request was in flight at some moment of `[from, to)`.
    fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.started < to && self.finished() > from
    }

    fn is_clear_unavailable(&self) -> bool {
        self.status == Some(503)
            && self.code.as_deref() == Some("SERVICE_UNAVAILABLE")
            && self
                .retry_after
                .as_deref()
                .is_some_and(|v| v.trim().parse::<u64>().is_ok())
    }

    fn is_internal_error(&self) -> bool {
        self.status == Some(500) || self.code.as_deref() == Some("INTERNAL_ERROR")
    }

    fn describe(&self) -> String {
        match &self.failure {
            Some(failure) => format!(
                "{} after {:?}: no answer ({failure})",
                self.what, self.elapsed
            ),
            None => format!(
                "{} after {:?}: {} {} Retry-After={:?} {:?}",
                self.what,
                self.elapsed,
                self.status.unwrap_or(0),
                self.code.as_deref().unwrap_or("-"),
                self.retry_after,
                self.message
            ),
        }
    }
}

/// Sends `request`, timing it.
async fn call(what: &'static str, request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let outcome = request.send().await;
    let (status, retry_after, body, failure) = match outcome {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap_or("<not text>").to_owned());
            match response.text().await {
                Ok(text) => {
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (Some(status), retry_after, body, None)
                }
                Err(e) => (Some(status), retry_after, Value::Null, Some(e.to_string())),
            }
        }
        Err(e) => (None, None, Value::Null, Some(error_chain(&e))),
    };
    Answer {
        what,
        started,
        elapsed: started.elapsed(),
        status,
        code: body["error"]["code"].as_str().map(str::to_owned),
        message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
        retry_after,
        body,
        failure,
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn registration(name: &str) -> Value {
    json!({ "name": name, "api_server_url": format!("https://api.{name}.example.com:6443") })
}

async fn register(server: &Server, name: &str) -> Answer {
    call(
        "POST /api/v1/clusters",
        server
            .client
            .post(server.url("/api/v1/clusters"))
            .json(&registration(name)),
    )
    .await
}

/// An acknowledged registration: `(id, name)`.
type Acked = (String, String);

fn acked_of(answer: &Answer, name: &str) -> Option<Acked> {
    (answer.status == Some(201)).then(|| {
        let id = answer.body["id"].as_str().expect("201 carries an id");
        (id.to_owned(), name.to_owned())
    })
}

/// GETs every acknowledged cluster; the ones not answering 200 with their
/// name, described.
async fn unreadable(server: &Server, acked: &[Acked]) -> Vec<String> {
    let mut missing = Vec::new();
    for chunk in acked.chunks(16) {
        let reads = chunk.iter().map(|(id, name)| async move {
            let answer = call(
                "GET /api/v1/clusters/{id}",
                server
                    .client
                    .get(server.url(&format!("/api/v1/clusters/{id}"))),
            )
            .await;
            let ok = answer.status == Some(200) && answer.body["name"] == name.as_str();
            (!ok).then(|| format!("{name} ({id}): {}", answer.describe()))
        });
        missing.extend(futures::future::join_all(reads).await.into_iter().flatten());
    }
    missing
}

/// Counts per status (0: no answer), for the report.
fn histogram<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        let key = match (&a.failure, a.status) {
            (Some(_), None) => "no answer".to_owned(),
            _ => format!(
                "{} {}",
                a.status.unwrap_or(0),
                a.code.as_deref().unwrap_or("")
            )
            .trim()
            .to_owned(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn max_elapsed<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> Duration {
    answers
        .into_iter()
        .map(|a| a.elapsed)
        .max()
        .unwrap_or_default()
}

/// Records `violation` (at most 40 of a kind are kept, the rest counted).
#[derive(Default)]
struct Violations {
    kinds: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Violations {
    fn add(&mut self, kind: &'static str, detail: String) {
        let (count, examples) = self.kinds.entry(kind).or_default();
        *count += 1;
        if examples.len() < 40 {
            examples.push(detail);
        }
    }

    fn assert_none(&self, test: &str) {
        if self.kinds.is_empty() {
            return;
        }
        let mut report = format!("{test}: the outage requirements are not met:\n");
        for (kind, (count, examples)) in &self.kinds {
            report.push_str(&format!("- {kind}: {count} time(s), e.g.\n"));
            for example in examples.iter().take(5) {
                report.push_str(&format!("    {example}\n"));
            }
        }
        panic!("{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage() {
    let Some(pg) = tokio::task::block_in_place(fleetreg_testkit::private_postgres) else {
        return;
    };
    let server = Arc::new(Server::start(&pg.url(), pg.dir().join("audit.head")).await);

    // 8 writers registering in a loop; every answer and every 201 recorded.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (server, stop, acked) = (server.clone(), stop_writing.clone(), acked.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("writer{w}-{i}");
                    i += 1;
                    let answer = register(&server, &name).await;
                    match acked_of(&answer, &name) {
                        Some(ack) => acked.lock().unwrap().push(ack),
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                    answers.push(answer);
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before_crash = acked.lock().unwrap().len();

    // Crash; while down, probe every 200 ms: each probe its own task, so a
    // slow answer does not delay the next probe.
    let crash_started = Instant::now();
    tokio::task::block_in_place(|| pg.crash());
    let down = Instant::now();
    eprintln!(
        "outage: {acked_before_crash} registrations acknowledged before the crash; \
         pg_ctl stop -m immediate took {:?}",
        down - crash_started
    );
    let mut probes = Vec::new();
    let mut n = 0u64;
    while down.elapsed() < DOWNTIME {
        let s = server.clone();
        let name = format!("probe-down-{n}");
        n += 1;
        probes.push(tokio::spawn(async move {
            let c = &s.client;
            let (post, list, ready, health) = tokio::join!(
                register(&s, &name),
                call("GET /api/v1/clusters", c.get(s.url("/api/v1/clusters"))),
                call("GET /ready", c.get(s.url("/ready"))),
                call("GET /health", c.get(s.url("/health"))),
            );
            vec![post, list, ready, health]
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The database returns.
    let restart_started = Instant::now();
    tokio::task::block_in_place(|| pg.start());
    let up = Instant::now();
    eprintln!(
        "outage: database down {:?} (pg_ctl start took {:?})",
        up - crash_started,
        up - restart_started
    );

    // Writes resume: poll a registration every 100 ms from the moment the
    // database accepts connections.
    let mut resumed = None;
    let mut recovery = Vec::new();
    for k in 0.. {
        let name = format!("probe-up-{k}");
        let answer = register(&server, &name).await;
        let ok = acked_of(&answer, &name);
        recovery.push(answer);
        if let Some(ack) = ok {
            acked.lock().unwrap().push(ack);
            resumed = Some(up.elapsed());
            break;
        }
        if up.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `/ready` comes back too.
    let mut ready_again = None;
    while up.elapsed() < Duration::from_secs(15) {
        let answer = call("GET /ready", server.client.get(server.url("/ready"))).await;
        if answer.status == Some(200) {
            ready_again = Some(up.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The writers carry on a while after the recovery, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_writing.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    let mut probed = Vec::new();
    for probe in probes {
        probed.extend(probe.await.expect("probe task"));
    }

    // Check every answer against the requirement.
    let mut v = Violations::default();
    let store_needing = |a: &Answer| a.what.contains("/api/v1/clusters");
    for a in written.iter().chain(&probed).chain(&recovery) {
        if let Some(failure) = &a.failure {
            v.add(
                "no answer within the client's 5 s (a hang) or a broken answer",
                format!("{}: {failure}", a.describe()),
            );
            continue;
        }
        if a.is_internal_error() {
            v.add("500 / INTERNAL_ERROR", a.describe());
        }
        let during_outage = a.overlaps(crash_started, up);
        if a.what == "GET /health" {
            if a.status != Some(200) {
                v.add("/health not 200 while the store is down", a.describe());
            }
            continue;
        }
        if a.what == "GET /ready" {
            if during_outage && a.elapsed > READY_LIMIT {
                v.add(
                    "/ready slower than 1 s while the store is down",
                    a.describe(),
                );
            }
            // Answered before the restart began: the store was down all along.
            if a.finished() < restart_started && a.started >= down && a.status != Some(503) {
                v.add("/ready not 503 while the store is down", a.describe());
            }
            if a.status == Some(503) && a.code.as_deref() != Some("SERVICE_UNAVAILABLE") {
                v.add("/ready 503 without SERVICE_UNAVAILABLE", a.describe());
            }
            continue;
        }
        debug_assert!(store_needing(a));
        if during_outage && a.elapsed > STORE_ANSWER_LIMIT {
            v.add(
                "a store-needing request slower than 2 s while the store is down",
                a.describe(),
            );
        }
        let must_be_unavailable =
            a.started >= down && a.finished() < restart_started && a.status != Some(503);
        if must_be_unavailable {
            v.add(
                "a store-needing request not 503 while the store is down",
                a.describe(),
            );
        }
        if a.status == Some(503) && !a.is_clear_unavailable() {
            v.add(
                "a 503 without code SERVICE_UNAVAILABLE and an integer Retry-After",
                a.describe(),
            );
        }
        let expected = if a.what.starts_with("POST") {
            [201, 503]
        } else {
            [200, 503]
        };
        if !a.status.is_some_and(|s| expected.contains(&s)) && !a.is_internal_error() {
            v.add(
                "an answer other than success or 503 SERVICE_UNAVAILABLE",
                a.describe(),
            );
        }
    }
    match resumed {
        Some(after) if after <= RESUME_LIMIT => {}
        Some(after) => v.add(
            "writes resumed later than 2 s after the database's return",
            format!(
                "first 201 after {after:?}; answers before it: {:?}",
                histogram(&recovery)
            ),
        ),
        None => v.add(
            "writes did not resume within 15 s of the database's return",
            format!("answers: {:?}", histogram(&recovery)),
        ),
    }
    if ready_again.is_none() {
        v.add(
            "/ready not 200 again within 15 s of the database's return",
            String::new(),
        );
    }

    // Nothing acknowledged was lost.
    let acked = acked.lock().unwrap().clone();
    let lost = unreadable(&server, &acked).await;
    for missing in &lost {
        v.add(
            "an acknowledged registration is not readable",
            missing.clone(),
        );
    }
    let writes_after_recovery = written
        .iter()
        .filter(|a| a.started >= up && a.status == Some(201))
        .count();
    if writes_after_recovery == 0 {
        v.add(
            "the writers got no 201 after the database's return",
            format!(
                "their answers after it: {:?}",
                histogram(written.iter().filter(|a| a.started >= up))
            ),
        );
    }

    // The numbers, whatever the outcome.
    let outage_answers = |what: &str| -> Vec<&Answer> {
        written
            .iter()
            .chain(&probed)
            .filter(|a| a.what == what && a.overlaps(crash_started, up))
            .collect()
    };
    eprintln!("outage: report");
    for what in [
        "POST /api/v1/clusters",
        "GET /api/v1/clusters",
        "GET /ready",
        "GET /health",
    ] {
        let answers = outage_answers(what);
        eprintln!(
            "  during the outage {what}: {} answers, max {:?}, {:?}",
            answers.len(),
            max_elapsed(answers.iter().copied()),
            histogram(answers.iter().copied())
        );
    }
    eprintln!(
        "  writers overall: {} requests, {} acknowledged, {:?}",
        written.len(),
        acked.len(),
        histogram(&written)
    );
    eprintln!(
        "  writers after the return: {:?}",
        histogram(written.iter().filter(|a| a.started >= up))
    );
    eprintln!(
        "  first write after the return: {resumed:?} ({} attempts: {:?}); /ready 200 again after {ready_again:?}",
        recovery.len(),
        histogram(&recovery)
    );
    eprintln!(
        "  acknowledged but unreadable: {} of {}",
        lost.len(),
        acked.len()
    );

    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => eprintln!("outage: a writer still holds the server"),
    }
    tokio::task::block_in_place(|| drop(pg));
    v.assert_none("postgres_outage");
}

/// The error a full disk must answer: 503 `SERVICE_UNAVAILABLE` or 507
/// `INSUFFICIENT_STORAGE`, with a message that says what is wrong.
fn is_clear_disk_full_error(a: &Answer) -> bool {
    let status_and_code = matches!(
        (a.status, a.code.as_deref()),
        (Some(503), Some("SERVICE_UNAVAILABLE")) | (Some(507), Some("INSUFFICIENT_STORAGE"))
    );
    let message = a.message.to_lowercase();
    let names_the_cause = ["disk", "space", "storage", "full"]
        .iter()
        .any(|word| message.contains(word));
    status_and_code && names_the_cause
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_full_disk() {
    let Some(disk) = fleetreg_testkit::small_disk(8) else {
        return;
    };
    // Only the database on the small disk: the audit head file elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let head_file = elsewhere.path().join("fleet.db.audit.head");
    let database_url = format!("sqlite://{}", disk.path().join("fleet.db").display());
    let server = Server::start(&database_url, head_file.clone()).await;
    let mut v = Violations::default();
    let mut acked = Vec::<Acked>::new();

    for i in 0..20 {
        let name = format!("before-{i}");
        let answer = register(&server, &name).await;
        let ack = acked_of(&answer, &name);
        assert!(
            ack.is_some(),
            "registration on the empty disk: {}",
            answer.describe()
        );
        acked.extend(ack);
    }

    let filler = disk.fill();
    eprintln!("full disk: the filler took {filler} bytes");

    // Register until the disk refuses (5 refusals in a row).
    let mut errors = Vec::new();
    let mut accepted_while_full = 0;
    let mut in_a_row = 0;
    for i in 0..3000 {
        let name = format!("full-{i}");
        let answer = register(&server, &name).await;
        match acked_of(&answer, &name) {
            Some(ack) => {
                acked.push(ack);
                accepted_while_full += 1;
                in_a_row = 0;
            }
            None => {
                errors.push(answer);
                in_a_row += 1;
                if in_a_row == 5 {
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        v.add(
            "the full disk never refused a registration",
            format!("{accepted_while_full} accepted"),
        );
    }
    for a in &errors {
        if a.failure.is_some() {
            v.add("no answer on the full disk (a hang)", a.describe());
        } else if a.is_internal_error() {
            v.add("500 / INTERNAL_ERROR on the full disk", a.describe());
        } else if !is_clear_disk_full_error(a) {
            v.add(
                "not a clear disk-full error (503 SERVICE_UNAVAILABLE or 507 \
                 INSUFFICIENT_STORAGE naming the disk/space)",
                a.describe(),
            );
        }
    }

    // While full: the process lives and reads never answer 500.
    let health = call("GET /health", server.client.get(server.url("/health"))).await;
    if health.status != Some(200) {
        v.add("/health not 200 on the full disk", health.describe());
    }
    let while_full = unreadable(&server, &acked).await;
    for missing in &while_full {
        if missing.contains(" 500 ") || missing.contains("no answer") {
            v.add(
                "an acknowledged registration unreadable (500 or no answer) on the full disk",
                missing.clone(),
            );
        }
    }

    // Space returns: the next 50 registrations all succeed.
    disk.free();
    let mut after_free = Vec::new();
    for i in 0..50 {
        let name = format!("after-{i}");
        let answer = register(&server, &name).await;
        match acked_of(&answer, &name) {
            Some(ack) => acked.push(ack),
            None => v.add(
                "a registration failed after the space was freed",
                format!("#{i}: {}", answer.describe()),
            ),
        }
        after_free.push(answer);
    }

    // Nothing acknowledged was lost: readable now, and after a restart on
    // the same file.
    let lost = unreadable(&server, &acked).await;
    for missing in &lost {
        v.add(
            "an acknowledged registration is not readable",
            missing.clone(),
        );
    }
    server.stop().await;
    let server = Server::start(&database_url, head_file).await;
    let lost_on_restart = unreadable(&server, &acked).await;
    for missing in &lost_on_restart {
        v.add(
            "an acknowledged registration is not readable after a restart",
            missing.clone(),
        );
    }
    server.stop().await;

    eprintln!("full disk: report");
    eprintln!(
        "  accepted after the fill: {accepted_while_full}; refusals: {:?}",
        histogram(&errors)
    );
    if let Some(first) = errors.first() {
        eprintln!("  first refusal: {} body {}", first.describe(), first.body);
    }
    eprintln!(
        "  reads of acknowledged clusters while full: {} of {} not 200",
        while_full.len(),
        acked.len() - after_free.iter().filter(|a| a.status == Some(201)).count()
    );
    eprintln!(
        "  the 50 registrations after freeing: {:?}",
        histogram(&after_free)
    );
    eprintln!(
        "  acknowledged {}: unreadable {} (running), {} (after a restart)",
        acked.len(),
        lost.len(),
        lost_on_restart.len()
    );
    drop(disk);
    v.assert_none("sqlite_full_disk");
}
