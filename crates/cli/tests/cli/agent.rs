//! `fleetreg agent` against a real `fleetreg serve` (issue 13 item 5): a
//! laptop and a VPS registered, a service routed, agents (with their own
//! node tokens) writing the files `GET /api/v1/nodes/{name}/config?format=…`
//! renders; a change pushed to a running agent within a second; an agent
//! stopped during a change, and one whose server restarted, converging;
//! `--once` for cron, its failures reported to the server; when Caddy is
//! installed, an agent loading a real Caddy through its admin API; an agent
//! moving to another replica (PostgreSQL) when its server dies; a
//! reconciliation repairing a hand-edited file; failover with real
//! agents, there and back, also when the HTTP check through a VPS fails
//! (real Caddy); and one HTTP/2 connection per agent, HTTP/1.1
//! (two connections, and `--once`) through a proxy without HTTP/2.

use crate::common::{ADMIN_TOKEN, FLEETREG};
use fleetreg_testkit::free_port;
use fleetreg_testkit::spawn::{sigterm, wait_exit, Run, Server, PATIENCE};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The server's HTTP API, called with the admin token.
struct Api {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            // No pooled connections: one test restarts the server.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// `METHOD path` with `body`: the status and the answer as text.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
        self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(ADMIN_TOKEN);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    }

    /// A call expected to succeed, its answer as JSON (`null` when empty).
    fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.call(method.clone(), path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body))
    }

    fn put(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::PUT, path, Some(body))
    }

    /// `GET /api/v1/nodes/{node}/config?format=…` as text.
    fn rendered(&self, node: &str, format: &str) -> String {
        let path = format!("/api/v1/nodes/{node}/config?format={format}");
        let (status, text) = self.call(reqwest::Method::GET, &path, None);
        assert_eq!(status, 200, "{path}: {text}");
        text
    }

    fn desired(&self, node: &str) -> i64 {
        self.get(&format!("/api/v1/nodes/{node}/config"))["revision"]
            .as_i64()
            .expect("a revision")
    }

    /// Registers the VPS `name`, overlay `100.68.225.N` and public
    /// `45.8.133.(N+100)`, in `region` at `provider`.
    fn register_vps(&self, name: &str, n: u8, region: &str, provider: &str) {
        let public = format!("45.8.133.{}", u16::from(n) + 100);
        self.register_vps_at(name, n, &public, region, provider);
    }

    /// Registers the VPS `name`, overlay `100.68.225.N` and public `public`,
    /// in `region` at `provider`.
    fn register_vps_at(&self, name: &str, n: u8, public: &str, region: &str, provider: &str) {
        self.post(
            "/api/v1/nodes",
            json!({"name": name, "kind": "vps", "overlay_address": format!("100.68.225.{n}"),
                   "public_address": public, "region": region, "provider": provider}),
        );
    }

    /// immich served by `upstreams` (a JSON array).
    fn set_upstreams(&self, upstreams: Value) {
        self.put(
            "/api/v1/services/immich",
            json!({"subdomain": "photos", "upstreams": upstreams}),
        );
    }

    /// A second domain, vinaysachdeva.com, and immich routed (round-robin)
    /// on both domains to vps1.
    fn add_second_domain(&self) {
        self.post(
            "/api/v1/domains",
            json!({"name": "vinaysachdeva.com", "description": "Professional site"}),
        );
        self.put(
            "/api/v1/routing/immich",
            json!({"domains": ["curiios.com", "vinaysachdeva.com"], "nodes": ["vps1"], "strategy": "round-robin"}),
        );
    }

    /// The node's entry of `GET /api/v1/sync/health`.
    fn sync(&self, node: &str) -> Value {
        let health = self.get("/api/v1/sync/health");
        health["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["node"] == node).cloned())
            .unwrap_or_else(|| panic!("{node} not in {health}"))
    }
}

/// `fleetreg serve --listen LISTEN --database-url DATABASE
/// --no-health-checks EXTRA` in `dir`, started.
fn serve(dir: &Path, listen: &str, database: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--listen",
        listen,
        "--database-url",
        database,
        "--no-health-checks",
    ];
    args.extend_from_slice(extra);
    Server::start_with(FLEETREG, dir, &args)
}

/// The SQLite database `agent.db` in `dir`, as a URL.
fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("agent.db").display())
}

/// A test's fleet on a running server: a domain, a laptop (`laptop1`), a VPS
/// (`vps1`) and the service immich (`photos.curiios.com`) routed to the VPS;
/// each node's agent token in a file (0600) in the temp dir.
struct Fleet {
    server: Server,
    api: Api,
    // Last: removed after the server is gone.
    dir: TempDir,
}

impl Fleet {
    /// `serve` on SQLite in a new temp dir, the fleet registered.
    fn start() -> Fleet {
        let dir = TempDir::new().unwrap();
        let server = Server::start(FLEETREG, dir.path(), "agent.db");
        Fleet::register(dir, server)
    }

    /// The fleet registered on `server`, whose files are in `dir`.
    fn register(dir: TempDir, server: Server) -> Fleet {
        Fleet::register_with(dir, server, "45.8.133.192")
    }

    /// [`Fleet::register`] with `vps1_public` as vps1's public address.
    fn register_with(dir: TempDir, server: Server, vps1_public: &str) -> Fleet {
        let api = Api::new(&server.url);
        api.post(
            "/api/v1/domains",
            json!({"name": "curiios.com", "description": "Personal site"}),
        );
        api.post(
            "/api/v1/nodes",
            json!({"name": "laptop1", "kind": "laptop", "overlay_address": "100.86.112.112", "user": "vinay"}),
        );
        api.register_vps_at("vps1", 92, vps1_public, "eu", "contabo");
        api.post(
            "/api/v1/services",
            json!({"name": "immich", "subdomain": "photos", "upstreams": ["127.0.0.1:2283"]}),
        );
        api.put(
            "/api/v1/routing/immich",
            json!({"domains": ["curiios.com"], "nodes": ["vps1"], "strategy": "round-robin"}),
        );
        let fleet = Fleet { server, api, dir };
        fleet.create_token("laptop1");
        fleet.create_token("vps1");
        fleet
    }

    /// A path in the temp dir.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `node`'s agent token file.
    fn token(&self, node: &str) -> PathBuf {
        self.path(&format!("{node}.token"))
    }

    /// Creates a token for `node` and writes it to [`Fleet::token`] (0600).
    fn create_token(&self, node: &str) {
        let created = self
            .api
            .post(&format!("/api/v1/nodes/{node}/token"), json!({}));
        let token = created["token"].as_str().expect("a token").to_owned();
        let path = self.token(node);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `node`'s agent on the fleet's server with `extra` flags and `env`
    /// added, and its out dir (`NODE-out` in the temp dir).
    fn agent(&self, node: &str, extra: &[&str], env: &[(&str, &str)]) -> (Agent, PathBuf) {
        let out = self.path(&format!("{node}-out"));
        let token = self.token(node);
        let mut args = vec![
            "--node",
            node,
            "--out-dir",
            out.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let agent = Agent::start(&self.server.url, self.dir.path(), &args, env);
        (agent, out)
    }

    /// Waits until `agent`, writing `out`, applied `node`'s desired revision.
    fn wait_applied(&self, node: &str, out: &Path, agent: &Agent) {
        wait_applied(&self.api, node, out, agent);
    }

    /// Stops the server gracefully (SIGTERM), in place.
    fn stop_server(&mut self) {
        sigterm(&self.server.child);
        wait_exit(&mut self.server.child, PATIENCE).expect("the server stops");
    }
}

/// A running `fleetreg agent`, its stderr in a file; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// `fleetreg agent ARGS` pointed at `server` (`FLEETREG_URL`), with
    /// `env` added.
    fn start(server_url: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let log = dir.join(format!("agent-{}.log", fleetreg_testkit::spawn::unique()));
        let mut command = FLEETREG.command_in(dir);
        command
            .arg("agent")
            .args(args)
            .env("FLEETREG_URL", server_url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        Agent {
            child: command.spawn().expect("start fleetreg agent"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM; expects a clean exit and returns the log.
    fn stop(mut self) -> String {
        sigterm(&self.child);
        let status = wait_exit(&mut self.child, PATIENCE)
            .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", self.log_text()));
        assert!(status.success(), "{status}:\n{}", self.log_text());
        self.log_text()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms until it holds or `patience` passed; how long
/// it took.
fn wait_until(patience: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < patience, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The revision the agent's state file records as applied.
fn applied(out: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(out.join(".fleetreg-agent.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["revision"].as_i64()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until the agent writing `out` applied `node`'s desired revision.
fn wait_applied(api: &Api, node: &str, out: &Path, agent: &Agent) {
    let patience = PATIENCE;
    let started = Instant::now();
    loop {
        let desired = api.desired(node);
        if applied(out) == Some(desired) {
            return;
        }
        assert!(
            started.elapsed() < patience,
            "{node} never applied revision {desired} (applied {:?}):\n{}",
            applied(out),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The VPS's files are what the server renders for it.
fn assert_vps_files_match(api: &Api, out: &Path) {
    assert_eq!(
        read(&out.join("traefik/fleetreg.yml")),
        api.rendered("vps1", "traefik")
    );
    let caddy: Value = serde_json::from_str(&read(&out.join("caddy/fleetreg.json"))).unwrap();
    let served: Value = serde_json::from_str(&api.rendered("vps1", "caddy")).unwrap();
    assert_eq!(caddy, served);
}

#[test]
fn agents_write_what_the_server_renders_and_follow_changes() {
    let fleet = Fleet::start();
    let api = &fleet.api;
    let vps_token_text = read(&fleet.token("vps1")).trim().to_owned();

    // The VPS agent: a token file, a reload command logging each revision.
    let reloads = fleet.path("reloads");
    let reload_cmd = format!("echo \"$FLEETREG_REVISION\" >> {}", reloads.display());
    let (vps, vps_out) = fleet.agent(
        "vps1",
        &["--reload-cmd", &reload_cmd, "--heartbeat-seconds", "1"],
        &[],
    );
    // The laptop agent: its token in FLEETREG_TOKEN, the flags in the
    // environment; the reload command checks it sees no token.
    let laptop_out = fleet.path("laptop1-out");
    let hosts = fleet.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.1.1.1 printer.lan\n").unwrap();
    let laptop_token_text = read(&fleet.token("laptop1")).trim().to_owned();
    let laptop = Agent::start(
        &fleet.server.url,
        fleet.dir.path(),
        &["--hosts-file", hosts.to_str().unwrap()],
        &[
            ("FLEETREG_NODE", "laptop1"),
            ("FLEETREG_OUT_DIR", laptop_out.to_str().unwrap()),
            ("FLEETREG_TOKEN", &laptop_token_text),
            (
                "FLEETREG_RELOAD_CMD",
                "test -z \"$FLEETREG_TOKEN$FLEETREG_ADMIN_TOKEN$FLEETREG_TOKEN_FILE\"",
            ),
        ],
    );
    fleet.wait_applied("vps1", &vps_out, &vps);
    fleet.wait_applied("laptop1", &laptop_out, &laptop);

    assert_vps_files_match(api, &vps_out);
    assert!(read(&vps_out.join("traefik/fleetreg.yml")).contains("photos.curiios.com"));
    let block = api.rendered("laptop1", "hosts");
    assert!(block.contains("photos.curiios.com"), "{block}");
    assert_eq!(read(&laptop_out.join("hosts/fleetreg.hosts")), block);
    assert_eq!(
        read(&hosts),
        format!("127.0.0.1 localhost\n10.1.1.1 printer.lan\n{block}"),
        "the rest of the hosts file is kept"
    );
    let zone = read(&laptop_out.join("zones/curiios.com.zone"));
    assert!(
        api.rendered("laptop1", "zone").contains(zone.trim()),
        "{zone}"
    );

    // The server knows both applied their revision, and that they are alive.
    for (node, out) in [("vps1", &vps_out), ("laptop1", &laptop_out)] {
        wait_until(PATIENCE, "the acknowledgement", || {
            api.sync(node)["applied_revision"].as_i64() == applied(out)
        });
        let sync = api.sync(node);
        assert_eq!(sync["status"], "active", "{sync}");
        assert!(sync["last_heartbeat_at"].is_string(), "{sync}");
        assert!(sync["last_error"].is_null(), "{sync}");
    }

    // A change reaches the running agent within a second.
    let before = applied(&vps_out).unwrap();
    api.set_upstreams(json!(["127.0.0.1:2284"]));
    let took = wait_until(Duration::from_secs(1), "the pushed change", || {
        read(&vps_out.join("traefik/fleetreg.yml")).contains("127.0.0.1:2284")
    });
    eprintln!("the change reached the agent in {} ms", took.as_millis());
    fleet.wait_applied("vps1", &vps_out, &vps);
    assert!(applied(&vps_out).unwrap() > before);
    assert_vps_files_match(api, &vps_out);
    let revisions = read(&reloads);
    assert!(
        revisions.lines().count() >= 2
            && revisions.lines().last() == Some(&applied(&vps_out).unwrap().to_string()[..]),
        "{revisions}"
    );

    let vps_log = vps.stop();
    let laptop_log = laptop.stop();
    for (log, token) in [
        (&vps_log, &vps_token_text),
        (&laptop_log, &laptop_token_text),
    ] {
        assert!(log.contains("connected"), "{log}");
        assert!(log.contains("applied revision"), "{log}");
        assert!(log.contains("stopping (SIGTERM)"), "{log}");
        assert!(
            !log.contains(token.as_str()),
            "the token is never logged:\n{log}"
        );
        assert!(!log.contains("failed"), "{log}");
    }
}

#[test]
fn stopped_agents_and_restarted_servers_converge() {
    let dir = TempDir::new().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let database = sqlite(dir.path());
    let server = serve(dir.path(), &listen, &database, &[]);
    let mut fleet = Fleet::register(dir, server);
    let (agent, out) = fleet.agent("vps1", &[], &[]);
    fleet.wait_applied("vps1", &out, &agent);
    agent.stop();

    // Changed while the agent is down: it catches up when started again.
    fleet.api.set_upstreams(json!(["127.0.0.1:3001"]));
    let (agent, _) = fleet.agent("vps1", &[], &[]);
    fleet.wait_applied("vps1", &out, &agent);
    assert!(read(&out.join("traefik/fleetreg.yml")).contains("127.0.0.1:3001"));
    assert_vps_files_match(&fleet.api, &out);

    // The server goes away and comes back on the same address: the agent
    // reconnects and gets what changed meanwhile.
    fleet.stop_server();
    wait_until(PATIENCE, "the agent to notice", || {
        agent.log_text().contains("reconnecting in")
    });
    fleet.server = serve(fleet.dir.path(), &listen, &database, &[]);
    fleet.api.set_upstreams(json!(["127.0.0.1:3002"]));
    wait_until(PATIENCE, "the change after the restart", || {
        read(&out.join("traefik/fleetreg.yml")).contains("127.0.0.1:3002")
    });
    fleet.wait_applied("vps1", &out, &agent);
    assert_vps_files_match(&fleet.api, &out);
    let log = agent.stop();
    assert!(log.matches("connected;").count() >= 2, "{log}");
    fleet.stop_server();
}

#[test]
fn once_applies_acknowledges_and_fails_loudly() {
    let fleet = Fleet::start();
    let (server, api) = (&fleet.server, &fleet.api);
    let laptop_token = fleet.token("laptop1");
    let out = fleet.path("out");
    let hosts = fleet.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let once = |extra: &[&str]| {
        let mut command = server.command();
        command.args([
            "agent",
            "--once",
            "--node",
            "laptop1",
            "--out-dir",
            out.to_str().unwrap(),
            "--token-file",
            laptop_token.to_str().unwrap(),
            "--hosts-file",
            hosts.to_str().unwrap(),
        ]);
        Run::of(command.args(extra))
    };

    let run = once(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let desired = api.desired("laptop1");
    assert_eq!(applied(&out), Some(desired));
    assert_eq!(
        read(&hosts),
        format!("127.0.0.1 localhost\n{}", api.rendered("laptop1", "hosts"))
    );
    assert_eq!(api.sync("laptop1")["applied_revision"], desired);
    // Again: nothing to do, still acknowledged.
    let run = once(&[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("already applied"), "{}", run.stderr);

    // A change and a reload command that fails: exit non-zero, and the
    // server learns why.
    api.put(
        "/api/v1/routing/immich",
        json!({"domains": ["curiios.com"], "nodes": ["vps1"], "strategy": "primary-backup"}),
    );
    api.add_second_domain();
    let desired = api.desired("laptop1");
    let run = once(&["--reload-cmd", "echo 'dnsmasq: bad zone' >&2; exit 4"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("revision {desired} was not applied")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("dnsmasq: bad zone"), "{}", run.stderr);
    let sync = api.sync("laptop1");
    assert_ne!(sync["applied_revision"], desired, "{sync}");
    assert!(
        sync["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("dnsmasq: bad zone")),
        "{sync}"
    );
    // Fixed: the same revision applies.
    let run = once(&["--reload-cmd", "true"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(applied(&out), Some(desired));
    assert!(read(&hosts).contains("photos.vinaysachdeva.com"));
    assert!(out.join("zones/vinaysachdeva.com.zone").exists());

    // Another node's configuration is refused to this node's token, and an
    // unreachable server is an error.
    let run = Run::of(server.command().args([
        "agent",
        "--once",
        "--node",
        "vps1",
        "--out-dir",
        fleet.path("other").to_str().unwrap(),
        "--token-file",
        laptop_token.to_str().unwrap(),
    ]));
    assert_eq!(run.code, 1, "{}", run.all());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let run = once(&["--server", &dead]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);
    // With a fallback server, --once gets its configuration there.
    let run = once(&["--server", &dead, "--fallback-server", &server.url]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(&format!("trying {}", server.url)),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flags_are_refused_before_connecting() {
    for (args, expected) in [
        (vec!["agent", "--out-dir", "/tmp/x"], "--node"),
        (
            vec!["agent", "--node", "Bad_Name", "--out-dir", "/tmp/x"],
            "--node",
        ),
        (vec!["agent", "--node", "vps1"], "--out-dir"),
        (
            vec![
                "agent",
                "--node",
                "vps1",
                "--out-dir",
                "/tmp/x",
                "--heartbeat-seconds",
                "0",
            ],
            "--heartbeat-seconds",
        ),
    ] {
        let run = Run::of(FLEETREG.command().args(&args));
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
}

/// An agent drives a real Caddy (testkit's) through its admin API: a
/// request to the routed hostname reaches the upstream, a routing change
/// moves it, and the admin API stays where it was.
#[test]
fn an_agent_loads_caddy() {
    let Some(caddy) = fleetreg_testkit::caddy() else {
        return;
    };
    let fleet = Fleet::start();
    // Two upstreams answering with their names.
    let (first, second) = (Upstream::start("first"), Upstream::start("second"));
    fleet.api.set_upstreams(json!([first.address]));
    let http_port = free_port();
    let admin = format!("http://{}", caddy.admin_listen());
    let listen = format!("127.0.0.1:{http_port}");
    let (agent, out) = fleet.agent(
        "vps1",
        &[
            "--caddy-admin",
            &admin,
            "--caddy-listen",
            &listen,
            "--no-https",
        ],
        &[],
    );
    fleet.wait_applied("vps1", &out, &agent);
    let get = |host: &str| get_through("127.0.0.1", http_port, host);
    wait_until(PATIENCE, "caddy to route photos.curiios.com", || {
        get("photos.curiios.com").is_some_and(|a| a.ends_with("from first"))
    });
    // What Caddy runs is the file the agent wrote.
    let written: Value = serde_json::from_str(&read(&out.join("caddy/fleetreg.json"))).unwrap();
    assert_eq!(caddy.config().unwrap(), written, "{}", caddy.log());
    assert_eq!(written["admin"]["listen"], caddy.admin_listen());
    fleet.api.set_upstreams(json!([second.address]));
    wait_until(PATIENCE, "caddy to follow the change", || {
        get("photos.curiios.com").is_some_and(|a| a.ends_with("from second"))
    });
    let log = agent.stop();
    assert!(!log.contains("failed"), "{log}");
}

/// `GET /` with `Host: host` sent to `address:port` (a proxy): the whole
/// answer, or `None` when it cannot be had.
fn get_through(address: &str, port: u16, host: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((address, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A tiny HTTP upstream on loopback answering `from NAME` to everything.
struct Upstream {
    address: String,
}

impl Upstream {
    fn start(name: &'static str) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let body = format!("from {name}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Upstream { address }
    }
}

/// `fleetreg serve` on `database` in `dir` (its own audit head file; the
/// master key file shared by every replica of the test).
fn replica(dir: &Path, database: &str, master_key: &Path) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let head = dir.join("audit.head");
    let extra = [
        "--master-key-file",
        master_key.to_str().unwrap(),
        "--audit-head-file",
        head.to_str().unwrap(),
    ];
    serve(dir, "127.0.0.1:0", database, &extra)
}

/// Two `serve` replicas on one PostgreSQL database; an agent streaming from
/// replica A with a dead server and replica B as fallbacks
/// (`FLEETREG_FALLBACK_SERVERS`). A is killed and a change made through B
/// at once: the agent reaches B, applies the change, and B's `sync health`
/// shows the node in sync.
#[test]
fn an_agent_survives_a_replicas_death() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(database) = runtime.block_on(fleetreg_testkit::postgres_database()) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let master_key = dir.path().join("master.key");
    let a = replica(&dir.path().join("a"), &database.url, &master_key);
    let b = replica(&dir.path().join("b"), &database.url, &master_key);
    let api_b = Api::new(&b.url);
    let mut fleet = Fleet::register(dir, a);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let fallbacks = format!("{dead},{}", b.url);
    let (agent, out) = fleet.agent(
        "vps1",
        &["--heartbeat-seconds", "1"],
        &[("FLEETREG_FALLBACK_SERVERS", &fallbacks)],
    );
    fleet.wait_applied("vps1", &out, &agent);
    assert!(
        agent
            .log_text()
            .contains(&format!("on {}", fleet.server.url)),
        "{}",
        agent.log_text()
    );

    let _ = fleet.server.child.kill();
    let _ = fleet.server.child.wait();
    api_b.add_second_domain();
    let took = wait_until(Duration::from_secs(10), "the change through B", || {
        std::fs::read_to_string(out.join("traefik/fleetreg.yml"))
            .is_ok_and(|t| t.contains("photos.vinaysachdeva.com"))
    });
    eprintln!(
        "the agent applied the change through B {} ms after A died",
        took.as_millis()
    );
    wait_applied(&api_b, "vps1", &out, &agent);
    assert_vps_files_match(&api_b, &out);
    let desired = api_b.desired("vps1");
    wait_until(
        Duration::from_secs(5),
        "B to learn the acknowledgement",
        || api_b.sync("vps1")["applied_revision"].as_i64() == Some(desired),
    );
    let health = b.ok(&["sync", "health"]);
    let line = health
        .lines()
        .find(|l| l.contains("vps1"))
        .unwrap_or_else(|| panic!("{health}"));
    assert!(
        line.contains("active")
            && line.contains(&format!("applied {desired}, desired {desired}, in sync")),
        "{health}"
    );
    let log = agent.stop();
    assert!(log.contains(&format!("on {}", b.url)), "{log}");
    assert!(
        log.contains(&format!("cannot reach the fleetreg server at {dead}")),
        "{log}"
    );
    // A's death may cost an acknowledgement (heartbeats to B carry the
    // revision) and the stream, never a revision.
    assert!(
        !log.lines()
            .any(|l| l.contains("revision") && l.contains("failed")),
        "{log}"
    );
    drop(b);
    drop(database);
}

/// A hand-edited rendered file is put back by the next reconciliation (a
/// frame of the revision already applied), and the reload runs then, not
/// for a reconciliation that finds nothing to repair.
#[test]
fn a_reconcile_repairs_a_hand_edited_file() {
    let fleet = Fleet::start();
    let api = &fleet.api;
    let reloads = fleet.path("reloads");
    let reload_cmd = format!("echo \"$FLEETREG_REVISION\" >> {}", reloads.display());
    let (agent, out) = fleet.agent("vps1", &["--reload-cmd", &reload_cmd], &[]);
    fleet.wait_applied("vps1", &out, &agent);
    let revision = applied(&out).unwrap();
    assert_eq!(read(&reloads), format!("{revision}\n"));

    let traefik = out.join("traefik/fleetreg.yml");
    std::fs::write(&traefik, "# edited by hand\nhttp: {}\n").unwrap();
    std::fs::remove_file(out.join("caddy/fleetreg.json")).unwrap();
    fleet.server.ok(&["sync", "reconcile"]);
    let took = wait_until(Duration::from_secs(5), "the repair", || {
        std::fs::read_to_string(&traefik).is_ok_and(|t| t == api.rendered("vps1", "traefik"))
    });
    eprintln!(
        "the reconciliation repaired the file in {} ms",
        took.as_millis()
    );
    assert_vps_files_match(api, &out);
    wait_until(
        Duration::from_secs(5),
        "the reload after the repair",
        || read(&reloads) == format!("{revision}\n{revision}\n"),
    );
    assert_eq!(applied(&out), Some(revision));

    // Nothing to repair: no reload.
    api.post("/api/v1/sync/reconcile", json!({}));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(read(&reloads), format!("{revision}\n{revision}\n"));
    let log = agent.stop();
    assert_eq!(log.matches("repaired").count(), 1, "{log}");
    assert!(log.contains("2 rewritten"), "{log}");
    assert!(!log.contains("failed"), "{log}");
}

/// Failover with real agents: two VPS nodes serving a primary-backup
/// service, a laptop; the server counts a node down after 2 s without a
/// heartbeat. VPS2's proxy files carry the routes throughout (it stands
/// by). VPS1's agent dies: the laptop's hosts file moves the hostnames to
/// VPS2; VPS1's agent comes back: they move back.
#[test]
fn failover_follows_a_dead_agent_and_back() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("fleetreg.yaml");
    std::fs::write(
        &config,
        "cluster_registry:\n  edge:\n    offline_after_seconds: 2\n    controller_tick_ms: 200\n",
    )
    .unwrap();
    let server = serve(
        dir.path(),
        "127.0.0.1:0",
        &sqlite(dir.path()),
        &["--config", config.to_str().unwrap()],
    );
    let fleet = Fleet::register(dir, server);
    let api = &fleet.api;
    api.register_vps("vps2", 93, "us", "digitalocean");
    api.put(
        "/api/v1/routing/immich",
        json!({"domains": ["curiios.com"], "nodes": ["vps1", "vps2"], "strategy": "primary-backup"}),
    );
    fleet.create_token("vps2");

    let hosts = fleet.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let heartbeat = ["--heartbeat-seconds", "1"];
    let laptop_flags = [&heartbeat[..], &["--hosts-file", hosts.to_str().unwrap()]].concat();
    let (laptop, laptop_out) = fleet.agent("laptop1", &laptop_flags, &[]);
    let (vps1, vps1_out) = fleet.agent("vps1", &heartbeat, &[]);
    let (vps2, vps2_out) = fleet.agent("vps2", &heartbeat, &[]);
    fleet.wait_applied("laptop1", &laptop_out, &laptop);
    fleet.wait_applied("vps1", &vps1_out, &vps1);
    fleet.wait_applied("vps2", &vps2_out, &vps2);
    let on_vps1 = "100.68.225.92 photos.curiios.com";
    let on_vps2 = "100.68.225.93 photos.curiios.com";
    let vps2_routes = || {
        let traefik = read(&vps2_out.join("traefik/fleetreg.yml"));
        let caddy = read(&vps2_out.join("caddy/fleetreg.json"));
        traefik.contains("photos.curiios.com") && caddy.contains("photos.curiios.com")
    };
    assert!(read(&hosts).contains(on_vps1), "{}", read(&hosts));
    assert!(read(&vps1_out.join("traefik/fleetreg.yml")).contains("photos.curiios.com"));
    // The backup stands by: its proxy carries the routes while the
    // primary serves, so a failover only moves DNS.
    assert!(
        vps2_routes(),
        "{}",
        read(&vps2_out.join("traefik/fleetreg.yml"))
    );

    // VPS1's agent dies (SIGKILL): its heartbeats stop.
    drop(vps1);
    let took = wait_until(Duration::from_secs(8), "the failover to vps2", || {
        let text = read(&hosts);
        text.contains(on_vps2) && !text.contains(on_vps1) && vps2_routes()
    });
    eprintln!(
        "failover reached the laptop and vps2 {} ms after the agent died",
        took.as_millis()
    );
    assert_eq!(
        read(&laptop_out.join("hosts/fleetreg.hosts")),
        api.rendered("laptop1", "hosts")
    );
    assert_eq!(
        api.sync("vps1")["status"],
        "offline",
        "{}",
        api.sync("vps1")
    );

    // It comes back: so do the hostnames.
    let (vps1, _) = fleet.agent("vps1", &heartbeat, &[]);
    let took = wait_until(Duration::from_secs(8), "the move back to vps1", || {
        let text = read(&hosts);
        text.contains(on_vps1) && !text.contains(on_vps2)
    });
    eprintln!(
        "back on vps1 {} ms after its agent restarted",
        took.as_millis()
    );
    fleet.wait_applied("vps1", &vps1_out, &vps1);
    fleet.wait_applied("vps2", &vps2_out, &vps2);
    assert!(vps2_routes(), "vps2 still stands by");
    assert_vps_files_match(api, &vps1_out);
    for agent in [laptop, vps1, vps2] {
        let log = agent.stop();
        assert!(!log.contains("failed"), "{log}");
    }
}

/// Health-driven failover by the HTTP check (issue 13 item 10): two VPS
/// nodes at public addresses 127.0.0.2 and 127.0.0.3, each agent driving a
/// Caddy of its own listening there on one shared port (the server checks
/// that port every second, down after 2 failures), a primary-backup service.
/// VPS1's Caddy dies while its agent keeps heartbeating: the route moves to
/// VPS2 (`ROUTING_FAILOVER`, reason `check_failed`), whose Caddy then serves
/// the hostname; `sync health` says why VPS1 is down. Its Caddy comes back
/// (with the configuration it last loaded, as a supervisor restarts it): the
/// route moves back (`check_passed`). Then only VPS1's own path to the
/// service breaks (its live Caddy dials a dead port): the route moves to
/// VPS2, whose standby Caddy reaches the service, and back once it is mended.
#[test]
fn an_http_check_failure_fails_over_and_back() {
    let Some(mut caddy1) = fleetreg_testkit::caddy() else {
        return;
    };
    let Some(caddy2) = fleetreg_testkit::caddy() else {
        return;
    };
    let port = free_port();
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("fleetreg.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster_registry:\n  edge:\n    controller_tick_ms: 200\n    http_check:\n      \
             interval_seconds: 1\n      timeout_ms: 500\n      failures: 2\n      port: {port}\n"
        ),
    )
    .unwrap();
    // Not `serve()`: its --no-health-checks would turn the check off.
    let database = sqlite(dir.path());
    let server = Server::start_with(
        FLEETREG,
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let fleet = Fleet::register_with(dir, server, "127.0.0.2");
    let api = &fleet.api;
    api.register_vps_at("vps2", 93, "127.0.0.3", "us", "digitalocean");
    let upstream = Upstream::start("immich");
    api.set_upstreams(json!([upstream.address]));
    api.put(
        "/api/v1/routing/immich",
        json!({"domains": ["curiios.com"], "nodes": ["vps1", "vps2"], "strategy": "primary-backup"}),
    );
    fleet.create_token("vps2");
    let start_agent = |node: &str, caddy: &fleetreg_testkit::Caddy, address: &str| {
        let admin = format!("http://{}", caddy.admin_listen());
        let listen = format!("{address}:{port}");
        let flags = [
            "--caddy-admin",
            &admin,
            "--caddy-listen",
            &listen,
            "--no-https",
            "--heartbeat-seconds",
            "1",
        ];
        fleet.agent(node, &flags, &[])
    };
    let (vps1, vps1_out) = start_agent("vps1", &caddy1, "127.0.0.2");
    let (vps2, vps2_out) = start_agent("vps2", &caddy2, "127.0.0.3");
    fleet.wait_applied("vps1", &vps1_out, &vps1);
    fleet.wait_applied("vps2", &vps2_out, &vps2);
    let host = "photos.curiios.com";
    let serving = || {
        let table = api.get("/api/v1/routes");
        table["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["hostname"] == host))
            .and_then(|r| r["serving"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let through = |address: &str| {
        get_through(address, port, host).is_some_and(|a| a.ends_with("from immich"))
    };
    // Both proxies answer the check: up, vps1 serves.
    wait_until(PATIENCE, "both nodes up and checked", || {
        ["vps1", "vps2"].iter().all(|n| {
            let sync = api.sync(n);
            sync["up"] == true && sync["check_ok"] == true
        })
    });
    assert_eq!(serving(), "vps1");
    wait_until(PATIENCE, "vps1's Caddy serving the hostname", || {
        through("127.0.0.2")
    });
    let after = api.get("/api/v1/events?limit=1")["latest_revision"]
        .as_i64()
        .unwrap();

    // VPS1's Caddy dies; its agent lives on.
    caddy1.stop();
    let took = wait_until(Duration::from_secs(15), "the failover to vps2", || {
        serving() == "vps2"
    });
    eprintln!(
        "the route moved to vps2 {} ms after vps1's Caddy died",
        took.as_millis()
    );
    wait_until(PATIENCE, "vps2's Caddy serving the hostname", || {
        through("127.0.0.3")
    });
    let sync = api.sync("vps1");
    assert_eq!(sync["up"], false, "{sync}");
    assert_eq!(sync["check_ok"], false, "{sync}");
    assert_eq!(sync["heartbeat_ok"], true, "{sync}");
    let error = sync["check_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.starts_with(&format!("connect to 127.0.0.2:{port}: ")),
        "{sync}"
    );
    let health = fleet.server.ok(&["sync", "health"]);
    assert!(
        health.contains(&format!("down for routing: check failed: {error}")),
        "{health}"
    );
    let moves = |after: i64| -> Vec<(String, String, String)> {
        let page = api.get(&format!(
            "/api/v1/events?type=ROUTING_FAILOVER&after={after}&limit=100"
        ));
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let text = |k: &str| e["payload"][k].as_str().unwrap_or_default().to_owned();
                (text("from"), text("to"), text("reason"))
            })
            .collect()
    };
    let failed_over = moves(after);
    assert_eq!(
        failed_over,
        [("vps1".into(), "vps2".into(), "check_failed".into())]
    );

    // It comes back with what it last loaded: the route moves back.
    let after = api.get("/api/v1/events?limit=1")["latest_revision"]
        .as_i64()
        .unwrap();
    caddy1.restart().expect("caddy restarts");
    let took = wait_until(Duration::from_secs(15), "the move back to vps1", || {
        serving() == "vps1"
    });
    eprintln!(
        "the route moved back {} ms after vps1's Caddy restarted",
        took.as_millis()
    );
    assert_eq!(
        moves(after),
        [("vps2".into(), "vps1".into(), "check_passed".into())]
    );
    fleet.wait_applied("vps1", &vps1_out, &vps1);
    wait_until(PATIENCE, "vps1's Caddy serving the hostname again", || {
        through("127.0.0.2")
    });
    let sync = api.sync("vps1");
    assert!(
        sync["up"] == true && sync["check_error"].is_null(),
        "{sync}"
    );

    // Only vps1's own path to the service breaks (as a firewall on that
    // VPS would): its Caddy, still up, dials a port where nothing listens
    // (502 in the end), while vps2's, standing by, reaches the service.
    let good = caddy1.config().expect("vps1's Caddy configuration");
    let dead = format!("127.0.0.1:{}", free_port());
    let broken = good.to_string().replace(&upstream.address, &dead);
    assert_ne!(broken, good.to_string(), "the upstream is in {good}");
    let after = api.get("/api/v1/events?limit=1")["latest_revision"]
        .as_i64()
        .unwrap();
    let broke = std::time::Instant::now();
    caddy1
        .load(&serde_json::from_str(&broken).unwrap())
        .expect("a broken path loads");
    wait_until(
        Duration::from_secs(15),
        "the failover off vps1's broken path",
        || serving() == "vps2",
    );
    eprintln!(
        "the route moved to vps2 {} ms after vps1's path broke",
        broke.elapsed().as_millis()
    );
    // Its Caddy dials for 5 s before it answers 502 (`try_duration`), longer
    // than the check waits: the check's error says "no answer".
    let sync = api.sync("vps1");
    assert!(
        sync["up"] == false && sync["heartbeat_ok"] == true && sync["check_error"].is_string(),
        "{sync}"
    );
    assert!(through("127.0.0.3"), "vps2 serves the hostname");
    // The path is mended: the route moves back.
    caddy1.load(&good).expect("the mended path loads");
    wait_until(
        Duration::from_secs(15),
        "the move back to the mended vps1",
        || serving() == "vps1",
    );
    assert_eq!(
        moves(after),
        [
            ("vps1".into(), "vps2".into(), "check_failed".into()),
            ("vps2".into(), "vps1".into(), "check_passed".into())
        ]
    );

    // Every upstream of the service goes away: vps1's Caddy answers the
    // check 502, and so does vps2's, standing by with the route. The route
    // stays where it is (it moved on and back every few checks).
    let gone = format!("127.0.0.1:{}", free_port());
    api.set_upstreams(json!([gone]));
    fleet.wait_applied("vps1", &vps1_out, &vps1);
    wait_until(PATIENCE, "vps1's Caddy answering 502", || {
        get_through("127.0.0.2", port, host).is_some_and(|a| a.starts_with("HTTP/1.1 502"))
    });
    let after = api.get("/api/v1/events?limit=1")["latest_revision"]
        .as_i64()
        .unwrap();
    // Three times the failures needed, one check a second.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(serving(), "vps1");
    assert_eq!(moves(after), []);
    let sync = api.sync("vps1");
    assert!(sync["up"] == true && sync["check_ok"] == true, "{sync}");
    // vps1's agent may have tried to load a configuration into its dead
    // Caddy (reported, retried); vps2's had nothing to fail.
    vps1.stop();
    let log = vps2.stop();
    assert!(!log.contains("failed"), "{log}");
    drop(caddy2);
}

/// The established TCP connections process `pid` holds to `port` on
/// 127.0.0.1 (its socket descriptors, looked up in `/proc/net/tcp`).
fn connections_to(pid: u32, port: u16) -> usize {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let remote = format!("0100007F:{port:04X}");
    read(Path::new("/proc/net/tcp"))
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[2] == remote && f[3] == "01" && sockets.contains(f[9]))
        .count()
}

/// A plain-HTTP proxy to a server that speaks HTTP/1.1 only, as a server or
/// proxy from before HTTP/2 would: the HTTP/2 preface gets an HTTP/1.1 error
/// and a closed connection; anything else is passed to `upstream`.
struct Http1OnlyProxy {
    url: String,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Http1OnlyProxy {
    fn start(upstream: u16) -> Http1OnlyProxy {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(mut client) = client else { continue };
                std::thread::spawn(move || {
                    let mut start = [0u8; 3];
                    if client.peek(&mut start).is_ok_and(|n| n > 0) && &start == b"PRI" {
                        let _ = client.write_all(
                            b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    };
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || pipe(c, s));
                    pipe(server, client);
                });
            }
        });
        Http1OnlyProxy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            stop,
        }
    }
}

impl Drop for Http1OnlyProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The port of a `http://127.0.0.1:PORT` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn one_http2_connection_per_agent_and_http1_where_the_server_has_none() {
    let fleet = Fleet::start();
    let api = &fleet.api;
    let server_port = port_of(&fleet.server.url);
    let heartbeats = |node: &str| {
        let before = api.sync(node)["last_heartbeat_at"].clone();
        wait_until(PATIENCE, "a heartbeat", || {
            api.sync(node)["last_heartbeat_at"] != before
        });
    };

    // The stream, the acknowledgement and the heartbeats on one connection.
    let (agent, out) = fleet.agent("laptop1", &["--heartbeat-seconds", "1"], &[]);
    fleet.wait_applied("laptop1", &out, &agent);
    heartbeats("laptop1");
    assert_eq!(
        connections_to(agent.child.id(), server_port),
        1,
        "{}",
        agent.log_text()
    );
    let log = agent.stop();
    assert!(!log.contains("HTTP/1.1"), "{log}");

    // A server without HTTP/2: the same over HTTP/1.1, a connection for the
    // stream and one kept for acknowledgements.
    let proxy = Http1OnlyProxy::start(server_port);
    let (agent, out) = fleet.agent(
        "vps1",
        &["--heartbeat-seconds", "1", "--server", &proxy.url],
        &[],
    );
    fleet.wait_applied("vps1", &out, &agent);
    heartbeats("vps1");
    wait_until(PATIENCE, "two connections", || {
        connections_to(agent.child.id(), proxy.port) == 2
    });
    let log = agent.stop();
    assert!(
        log.contains(&format!(
            "{} does not speak HTTP/2; using HTTP/1.1",
            proxy.url
        )),
        "{log}"
    );
    // And --once.
    let laptop_out = fleet.path("once-out");
    let token = fleet.token("laptop1");
    let run = Run::of(fleet.server.command().args([
        "agent",
        "--once",
        "--node",
        "laptop1",
        "--out-dir",
        laptop_out.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
        "--server",
        &proxy.url,
    ]));
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(applied(&laptop_out), Some(api.desired("laptop1")));
    assert_eq!(
        api.sync("laptop1")["applied_revision"],
        api.desired("laptop1")
    );
}
