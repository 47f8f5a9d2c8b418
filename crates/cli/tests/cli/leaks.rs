//! The marker leak test of issue 5 at the level of the real binaries: `fleetreg
//! sim` and `fleetreg serve` run as child processes with `RUST_LOG=trace`, their
//! stdout and stderr in files. Credentials carrying unique marker strings (a
//! kubeconfig with a marker token, then a token from stdin, and marker tokens
//! for Prometheus, Tempo and Loki) go in through `fleetreg credentials …`; the
//! simulator's request log proves that each marker really reached the
//! component it is for. After validate, a refused rotation, a rotation,
//! refreshes, the fleet/audit/events listings and deletes, the server is
//! stopped and everything it left is searched — its complete log (every
//! thread, every crate, from the first line to the last), its stdout, every
//! file in its directory (SQLite database, `-wal` and `-shm`, also as copied
//! while it ran; key and audit head files), the simulator's output and all the
//! CLI printed — for every marker, plain or base64 (standard or URL-safe, any
//! offset, padded or not; see `fleetreg_testkit::leak_search`, shared with the
//! in-process test `crates/server/tests/api/leaks.rs`). The log must really be
//! at TRACE, from several crates, so that a clean search means something.

use crate::common::FLEETREG;
use fleetreg_sim::{AuthSpec, ClusterSpec, ObservabilitySpec, RequestPage, Service, SimAdmin};
use fleetreg_testkit::leak_search::{assert_search_finds_markers, marker, LeakReport};
use fleetreg_testkit::spawn::{Run, Server, Sim};
use std::path::{Path, PathBuf};

const CLUSTER: &str = "leaky";

/// The secrets of one run, each unique.
struct Markers {
    /// Set 1: the API token inside the uploaded kubeconfig, and the tokens of
    /// the observability endpoints.
    api: String,
    prom: String,
    tempo: String,
    loki: String,
    /// Set 2, rotated to: the API token from stdin, and new endpoint tokens.
    api2: String,
    prom2: String,
    tempo2: String,
    loki2: String,
    /// An API token the cluster refuses (a failed rotation carries it).
    rejected: String,
}

impl Markers {
    fn new() -> Markers {
        Markers {
            api: marker("api"),
            prom: marker("prom"),
            tempo: marker("tempo"),
            loki: marker("loki"),
            api2: marker("apitwo"),
            prom2: marker("promtwo"),
            tempo2: marker("tempotwo"),
            loki2: marker("lokitwo"),
            rejected: marker("rej"),
        }
    }

    fn all(&self) -> Vec<&str> {
        vec![
            &self.api,
            &self.prom,
            &self.tempo,
            &self.loki,
            &self.api2,
            &self.prom2,
            &self.tempo2,
            &self.loki2,
            &self.rejected,
        ]
    }
}

/// Asserts that `page` holds a request of `service` that carried `token` and
/// was answered `status`.
fn assert_reached(page: &RequestPage, service: Service, token: &str, status: u16, what: &str) {
    assert!(
        page.items.iter().any(|r| r.service == service
            && r.bearer_token.as_deref() == Some(token)
            && r.status == status),
        "{what}: no {service:?} request with the marker answered {status} in the simulator's log: {:#?}",
        page.items
    );
}

/// How many lines of the `tracing` text log each (level, crate) wrote. A line
/// is `TIME LEVEL span{fields}:span: target: message`; the target is the first
/// `a::b` path after the spans.
fn levels_by_crate(log: &str) -> std::collections::BTreeMap<(String, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines() {
        let mut words = line.split_whitespace();
        let (Some(_time), Some(level)) = (words.next(), words.next()) else {
            continue;
        };
        if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
            continue;
        }
        let rest = &line[line.find(level).unwrap_or(0) + level.len()..];
        // Drop span fields (`{…}`), then take the first module path.
        let mut plain = String::with_capacity(rest.len());
        let mut depth = 0usize;
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        let target = plain.split(": ").map(str::trim).find(|segment| {
            segment.contains("::")
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if let Some(target) = target {
            let krate = target.split("::").next().unwrap_or(target).to_owned();
            *counts.entry((level.to_owned(), krate)).or_insert(0) += 1;
        }
    }
    counts
}

/// Every file directly in `dir` with its contents.
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            path.is_file()
                .then(|| std::fs::read(&path).ok().map(|bytes| (path, bytes)))?
        })
        .collect();
    files.sort();
    files
}

#[test]
fn no_marker_leaks_in_the_trace_log_of_the_real_binaries() {
    let markers = Markers::new();
    assert_search_finds_markers(&markers.all());
    let root = tempfile::tempdir().expect("tempdir");
    let (inputs, server_dir, sim_dir) = (
        root.path().join("inputs"),
        root.path().join("server"),
        root.path().join("sim"),
    );
    for dir in [&inputs, &server_dir, &sim_dir] {
        std::fs::create_dir(dir).expect("mkdir");
    }

    // The simulator, with a cluster accepting both sets (and nothing else).
    let mut sim = Sim::start(FLEETREG, &sim_dir, &[("RUST_LOG", "trace")]);
    let admin = SimAdmin::new(&sim.base_url);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let view = runtime
        .block_on(admin.create_cluster_with_auth(
            CLUSTER,
            ClusterSpec {
                observability: ObservabilitySpec {
                    prometheus: true,
                    thanos: false,
                    tempo: true,
                    loki: true,
                },
                ..ClusterSpec::default()
            },
            AuthSpec {
                required: true,
                tokens: vec![markers.api.clone(), markers.api2.clone()],
                prometheus_tokens: vec![markers.prom.clone(), markers.prom2.clone()],
                tempo_tokens: vec![markers.tempo.clone(), markers.tempo2.clone()],
                loki_tokens: vec![markers.loki.clone(), markers.loki2.clone()],
            },
        ))
        .expect("sim cluster");
    let requests_after = |after: u64| -> RequestPage {
        runtime
            .block_on(admin.requests(after, Some(CLUSTER)))
            .expect("request log")
    };
    let position = || requests_after(0).next_after;

    // The server, logging everything at TRACE (health checks on as well).
    let db = server_dir.join("fleetreg.db");
    let database_url = format!("sqlite://{}", db.display());
    let server = Server::start_with_env(
        FLEETREG,
        &server_dir,
        &["--listen", "127.0.0.1:0", "--database-url", &database_url],
        &[("RUST_LOG", "trace")],
    );
    let mut printed = String::new();
    let mut record = |run: Run| -> Run {
        printed.push_str(&run.all());
        run
    };

    let register = server.ok_run(&[
        "cluster",
        "register",
        CLUSTER,
        "--api-server-url",
        &view.api_server_url,
        "--prometheus-url",
        &view.prometheus_url,
        "--tempo-url",
        &view.tempo_url,
        "--loki-url",
        &view.loki_url,
    ]);
    record(register);

    let write = |name: &str, text: &str| -> String {
        let path = inputs.join(name);
        std::fs::write(&path, text).expect("write input");
        path.display().to_string()
    };
    let kubeconfig = write(
        "leaky.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n\
             users:\n- name: fleetreg\n  user:\n    token: {}\n\
             contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: fleetreg\n\
             current-context: sim\n",
            view.api_server_url, markers.api
        ),
    );
    let token_file = |name: &str, marker: &str| write(name, &format!("{marker}\n"));
    let (prom, tempo, loki) = (
        token_file("prom.token", &markers.prom),
        token_file("tempo.token", &markers.tempo),
        token_file("loki.token", &markers.loki),
    );
    let (prom2, tempo2, loki2) = (
        token_file("prom2.token", &markers.prom2),
        token_file("tempo2.token", &markers.tempo2),
        token_file("loki2.token", &markers.loki2),
    );
    let rejected = token_file("rejected.token", &markers.rejected);

    // Store set 1 from the kubeconfig: validated against the simulator, which
    // saw every marker of the set at the component it is for.
    let before = position();
    let stored = record(server.ok_run(&[
        "credentials",
        "store",
        CLUSTER,
        "--kubeconfig",
        &kubeconfig,
        "--prometheus-token-file",
        &prom,
        "--tempo-token-file",
        &tempo,
        "--loki-token-file",
        &loki,
    ]));
    assert!(stored.stdout.contains("(version 1)"), "{}", stored.stdout);
    let seen = requests_after(before);
    assert_reached(&seen, Service::ApiServer, &markers.api, 200, "store");
    assert_reached(&seen, Service::Prometheus, &markers.prom, 200, "store");
    assert_reached(&seen, Service::Tempo, &markers.tempo, 200, "store");
    assert_reached(&seen, Service::Loki, &markers.loki, 200, "store");

    // Validate and refresh use them too.
    let before = position();
    let valid = record(server.ok_run(&["credentials", "validate", CLUSTER, "-o", "json"]));
    assert_eq!(valid.json()["status"], "valid", "{}", valid.stdout);
    let refreshed = record(server.ok_run(&["cluster", "refresh", CLUSTER, "-o", "json"]));
    assert_eq!(
        refreshed.json()["status"]["state"],
        "ONLINE",
        "{}",
        refreshed.stdout
    );
    let seen = requests_after(before);
    assert_reached(
        &seen,
        Service::ApiServer,
        &markers.api,
        200,
        "validate/refresh",
    );
    assert_reached(&seen, Service::Loki, &markers.loki, 200, "validate/refresh");

    // A rotation to a token the cluster refuses: it reached the cluster (401),
    // the command fails with each component's outcome, nothing changes.
    let before = position();
    let refused = record(server.run(&[
        "credentials",
        "rotate",
        CLUSTER,
        "--token-file",
        &rejected,
        "--prometheus-token-file",
        &prom,
        "--tempo-token-file",
        &tempo,
        "--loki-token-file",
        &loki,
    ]));
    refused.assert_error("CREDENTIALS_INVALID");
    assert_reached(
        &requests_after(before),
        Service::ApiServer,
        &markers.rejected,
        401,
        "refused rotation",
    );

    // Rotate to set 2, the API token from stdin.
    let before = position();
    let rotated = record(server.run_with_stdin(
        &[
            "credentials",
            "rotate",
            CLUSTER,
            "--token-file",
            "-",
            "--prometheus-token-file",
            &prom2,
            "--tempo-token-file",
            &tempo2,
            "--loki-token-file",
            &loki2,
            "-o",
            "json",
        ],
        &format!("{}\n", markers.api2),
    ));
    assert_eq!(rotated.code, 0, "{}", rotated.all());
    assert_eq!(rotated.json()["version"], 2, "{}", rotated.stdout);
    record(server.ok_run(&["cluster", "refresh", CLUSTER]));
    record(server.ok_run(&["credentials", "validate", CLUSTER]));
    let seen = requests_after(before);
    assert_reached(&seen, Service::ApiServer, &markers.api2, 200, "rotate");
    assert_reached(&seen, Service::Prometheus, &markers.prom2, 200, "rotate");
    assert_reached(&seen, Service::Tempo, &markers.tempo2, 200, "rotate");
    assert_reached(&seen, Service::Loki, &markers.loki2, 200, "rotate");

    // Everything that reads: the cluster, the fleet views, audit, events.
    for args in [
        &["cluster", "get", CLUSTER, "-o", "json"][..],
        &["cluster", "status", CLUSTER, "-o", "json"],
        &["cluster", "health", CLUSTER, "-o", "json"],
        &["cluster", "history", CLUSTER, "-o", "json"],
        &["cluster", "list", "-o", "json"],
        &["credentials", "expiring", "-o", "json"],
        &["fleet", "summary", "-o", "json"],
        &["fleet", "health", "-o", "json"],
        &["fleet", "capabilities", "-o", "json"],
        &["audit", "list", "-o", "json"],
        &["audit", "list", "--cluster", CLUSTER],
        &["events", "list", "-o", "json"],
        &["events", "list"],
    ] {
        record(server.ok_run(args));
    }

    // Deletes.
    record(server.ok_run(&["credentials", "delete", CLUSTER]));
    record(server.ok_run(&["cluster", "delete", CLUSTER]));

    // The database files as the running server has them (the WAL is
    // checkpointed away at shutdown), then a graceful stop.
    let mut live_files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            live_files.push((PathBuf::from(path), bytes));
        }
    }
    assert!(
        live_files
            .iter()
            .any(|(p, b)| p.to_string_lossy().ends_with("-wal") && !b.is_empty()),
        "no WAL while the server ran: {:?}",
        live_files
            .iter()
            .map(|(p, b)| (p, b.len()))
            .collect::<Vec<_>>()
    );
    let log_path = server.log.clone();
    let (status, log) = server.terminate();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    let requests = requests_after(0);
    sim.stop();

    // The log is really at TRACE, from several crates (the HTTP server and
    // client stacks), with DEBUG from the database driver, the server's HTTP
    // middleware, TLS and fleetreg itself (none emits TRACE events), TRACE
    // events inside fleetreg's check spans, and it runs from start-up to
    // shutdown. `tower` and `kube_client` no longer log here: the probe sends
    // through kube-rs' request stack without a `kube::Client`, whose
    // `tower::Buffer` worker logged at TRACE and whose failed-answer handling
    // logged the answer at DEBUG (`fleetreg_probe::api_server`); the requests
    // themselves are in `hyper_util`'s lines.
    let levels = levels_by_crate(&log);
    let crates_at = |level: &str| -> Vec<&str> {
        levels
            .iter()
            .filter(|((l, _), _)| l == level)
            .map(|((_, krate), _)| krate.as_str())
            .collect()
    };
    let traced = crates_at("TRACE");
    for krate in ["hyper_util", "reqwest"] {
        assert!(
            traced.contains(&krate),
            "no TRACE line from {krate} in the serve log: {levels:?}"
        );
    }
    let debugged = crates_at("DEBUG");
    for krate in [
        "sqlx",
        "fleetreg_server",
        "fleetreg_probe",
        "tower_http",
        "rustls",
    ] {
        assert!(
            debugged.contains(&krate),
            "no DEBUG line from {krate} in the serve log: {levels:?}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains(" TRACE ") && l.contains("check_and_record")),
        "no TRACE line inside a health check span"
    );
    assert!(
        log.contains("listening on http://") && log.contains("fleetreg::serve"),
        "the log does not start at the start"
    );

    // Search everything for every marker.
    let mut report = LeakReport::new(&markers.all());
    report.search("serve log (stderr, RUST_LOG=trace)", log.as_bytes());
    for (path, bytes) in &live_files {
        report.search(&format!("{} (while serving)", path.display()), bytes);
    }
    for (path, bytes) in files_in(&server_dir).into_iter().chain(files_in(&sim_dir)) {
        report.search(&path.display().to_string(), &bytes);
    }
    report.search("everything the CLI printed", printed.as_bytes());
    eprintln!(
        "leak search over: {:#?}\n({} simulator requests, serve log {})",
        report.searched,
        requests.items.len(),
        log_path.display()
    );
    report.assert_clean();
    drop(sim);
}
