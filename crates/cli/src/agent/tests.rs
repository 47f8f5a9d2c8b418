//! The agent's parts without a server: the SSE parser, atomic apply with
//! stale file removal, reload failures reported as `failed_revision`, the
//! hosts file's block, the backoff.

use super::apply::{rewrite_hosts_file, write_atomic, OutDir, OutFile, STATE_FILE};
use super::node::{ConfigDocument, NodeAgent, Outcome, Settings};
use super::reload::{load_caddy, run_command, ReloadError, MAX_REPORTED_OUTPUT};
use super::session::Backoff;
use super::stream::{Frame, FrameReader, SseParser, StreamError};
use fleetreg_model::{
    Balance, CaddyOptions, DnsLabel, DnsRecord, DomainName, NodeConfig, NodeKind, ProxyRoute,
    Upstream, CADDY_FILE, HOSTS_FILE, TRAEFIK_FILE,
};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

fn frame(id: Option<&str>, event: &str, data: &str) -> Frame {
    Frame {
        id: id.map(str::to_owned),
        event: event.to_owned(),
        data: data.to_owned(),
    }
}

const TWO_FRAMES: &str = ": keepalive\n\nid: 7\nevent: config\ndata: {\"a\":1}\n\n: keepalive\n\nid: 8\nevent: config\ndata: line one\ndata: line two\n\n";

#[test]
fn frames_split_anywhere_across_chunks_parse_the_same() {
    let expected = vec![
        frame(Some("7"), "config", "{\"a\":1}"),
        frame(Some("8"), "config", "line one\nline two"),
    ];
    let bytes = TWO_FRAMES.as_bytes();
    let mut whole = SseParser::new(1024);
    assert_eq!(whole.push(bytes).unwrap(), expected);
    for split in 0..bytes.len() {
        let mut parser = SseParser::new(1024);
        let mut frames = parser.push(&bytes[..split]).unwrap();
        frames.extend(parser.push(&bytes[split..]).unwrap());
        assert_eq!(frames, expected, "split at {split}");
    }
    let mut parser = SseParser::new(1024);
    let frames: Vec<Frame> = bytes
        .iter()
        .flat_map(|b| parser.push(&[*b]).unwrap())
        .collect();
    assert_eq!(frames, expected, "byte by byte");
}

#[test]
fn line_endings_comments_and_fields_follow_the_sse_rules() {
    let mut parser = SseParser::new(1024);
    // CRLF and lone CR end lines too (a CR at a chunk's end waits for a LF).
    let mut frames = parser
        .push(b"event: config\r\ndata:x\r\r\n: only a comment\r\n\r\ndata\r")
        .unwrap();
    frames.extend(parser.push(b"\ndata:  two spaces\n\n").unwrap());
    assert_eq!(
        frames,
        vec![
            frame(None, "config", "x"),
            frame(None, "message", "\n two spaces"),
        ]
    );
    // A frame with only an id or an event and no data dispatches nothing,
    // nor does its event name leak into the next frame.
    let frames = parser
        .push(b"event: config\nid: 3\n\ndata: {}\nretry: 10\nunknown: x\n\n")
        .unwrap();
    assert_eq!(frames, vec![frame(None, "message", "{}")]);
}

#[test]
fn an_oversize_frame_or_line_is_refused() {
    // Many small lines adding up.
    let mut parser = SseParser::new(64);
    let line = "data: 0123456789\n";
    let mut result = Ok(Vec::new());
    for _ in 0..5 {
        result = parser.push(line.as_bytes());
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(StreamError::FrameTooLarge { limit: 64 })),
        "{result:?}"
    );
    // One line without an end, fed in pieces.
    let mut parser = SseParser::new(64);
    assert!(parser.push(&[b'a'; 40]).is_ok());
    assert!(matches!(
        parser.push(&[b'a'; 40]),
        Err(StreamError::FrameTooLarge { .. })
    ));
    // Comments take no memory: endless keep-alives are fine.
    let mut parser = SseParser::new(64);
    for _ in 0..100 {
        assert_eq!(parser.push(b": keepalive\n").unwrap(), vec![]);
    }
    assert_eq!(
        parser.push(b"data: ok\n\n").unwrap(),
        vec![frame(None, "message", "ok")]
    );
}

#[tokio::test]
async fn the_reader_ends_on_close_and_on_silence() {
    let chunks: Vec<Result<Vec<u8>, String>> = vec![
        Ok(b"event: config\ndata: {\"x\"".to_vec()),
        Ok(b":1}\n\n".to_vec()),
    ];
    let mut reader = FrameReader::new(futures::stream::iter(chunks), 1024, Duration::from_secs(5));
    let first = reader.next().await.unwrap().unwrap();
    assert_eq!(first.data, "{\"x\":1}");
    assert!(reader.next().await.unwrap().is_none());

    let silent = futures::stream::pending::<Result<Vec<u8>, String>>();
    let mut reader = FrameReader::new(silent, 1024, Duration::from_millis(50));
    assert!(matches!(reader.next().await, Err(StreamError::Idle(_))));

    let broken: Vec<Result<Vec<u8>, String>> = vec![Err("connection reset".into())];
    let mut reader = FrameReader::new(futures::stream::iter(broken), 1024, Duration::from_secs(5));
    assert!(matches!(reader.next().await, Err(StreamError::Read(e)) if e == "connection reset"));
}

fn out_file(path: &str, content: &str) -> OutFile {
    OutFile {
        path: path.to_owned(),
        content: content.as_bytes().to_vec(),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// No temporary file is left anywhere under `dir`.
fn assert_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".fleetreg-tmp"), "left behind: {name}");
        if entry.file_type().unwrap().is_dir() {
            assert_no_temp_files(&entry.path());
        }
    }
}

#[test]
fn files_are_replaced_and_stale_ones_removed() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("out");
    let (mut out, warning) = OutDir::open(&root, "vps1").unwrap();
    assert!(warning.is_none());
    assert_eq!(out.applied(), None);
    // A file of the operator's is never touched.
    std::fs::write(root.join("mine.txt"), "keep").unwrap();
    let changes = out
        .write_files(&[
            out_file("a/one.yml", "1"),
            out_file("a/b/two.json", "2"),
            out_file("top.conf", "3"),
        ])
        .unwrap();
    assert_eq!(
        (changes.written, changes.unchanged, changes.removed),
        (3, 0, 0)
    );
    out.mark_applied(5).unwrap();
    std::fs::set_permissions(
        root.join("top.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();

    let changes = out
        .write_files(&[out_file("a/one.yml", "1"), out_file("top.conf", "3b")])
        .unwrap();
    assert_eq!(
        (changes.written, changes.unchanged, changes.removed),
        (1, 1, 1)
    );
    assert_eq!(read(&root.join("top.conf")), "3b");
    assert_eq!(
        std::fs::metadata(root.join("top.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640,
        "a replaced file keeps its permissions"
    );
    assert!(!root.join("a/b/two.json").exists());
    assert!(!root.join("a/b").exists(), "an emptied directory goes too");
    assert_eq!(read(&root.join("mine.txt")), "keep");
    assert_no_temp_files(&root);
    // The applied revision stays until marked.
    assert_eq!(out.applied(), Some(5));
    let state: serde_json::Value = serde_json::from_str(&read(&root.join(STATE_FILE))).unwrap();
    assert_eq!(
        state,
        json!({"node": "vps1", "revision": 5, "files": ["a/one.yml", "top.conf"]})
    );
    out.mark_applied(6).unwrap();

    // A restart reads the state back: the revision, and what to remove.
    let (mut again, _) = OutDir::open(&root, "vps1").unwrap();
    assert_eq!(again.applied(), Some(6));
    again.write_files(&[]).unwrap();
    assert!(!root.join("a").exists() && !root.join("top.conf").exists());
    assert_eq!(read(&root.join("mine.txt")), "keep");

    // Another node's state keeps its files (to remove) but not its revision.
    let (other, warning) = OutDir::open(&root, "vps2").unwrap();
    assert_eq!(other.applied(), None);
    assert!(warning.unwrap().contains("vps1"));
}

#[test]
fn paths_outside_the_directory_are_refused() {
    let dir = TempDir::new().unwrap();
    let (mut out, _) = OutDir::open(dir.path(), "vps1").unwrap();
    for bad in [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "./x",
        "",
        "dir/",
        STATE_FILE,
        "x.fleetreg-tmp",
    ] {
        let result = out.write_files(&[out_file(bad, "x")]);
        assert!(result.is_err(), "{bad:?} was accepted");
    }
    let twice = out.write_files(&[out_file("a", "1"), out_file("a", "2")]);
    assert!(twice.unwrap_err().to_string().contains("twice"));
    assert!(!dir.path().join("a").exists());
    // A corrupt state file is ignored with a warning.
    std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
    let (out, warning) = OutDir::open(dir.path(), "vps1").unwrap();
    assert_eq!(out.applied(), None);
    assert!(warning.unwrap().contains("ignoring"));
}

#[test]
fn an_atomic_write_that_cannot_rename_leaves_the_old_file() {
    let dir = TempDir::new().unwrap();
    // The target is a non-empty directory: the rename fails after the
    // temporary file was written; nothing is left behind.
    let target = dir.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), "x").unwrap();
    assert!(write_atomic(&target, b"new").is_err());
    assert_eq!(read(&target.join("inside")), "x");
    assert_no_temp_files(dir.path());
    write_atomic(&dir.path().join("plain"), b"one").unwrap();
    write_atomic(&dir.path().join("plain"), b"two").unwrap();
    assert_eq!(read(&dir.path().join("plain")), "two");
    assert_no_temp_files(dir.path());
}

#[test]
fn the_hosts_file_keeps_everything_outside_the_block() {
    let dir = TempDir::new().unwrap();
    let hosts = dir.path().join("hosts");
    let before = "127.0.0.1 localhost\n# BEGIN fleetreg\n100.64.0.9 old.example.com\n# END fleetreg\n::1 localhost ip6-localhost\n";
    std::fs::write(&hosts, before).unwrap();
    std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
    let block = "# BEGIN fleetreg\n100.64.0.1 photos.curiios.com\n# END fleetreg\n";
    let changed = rewrite_hosts_file(&hosts, |old| {
        fleetreg_model::replace_hosts_block(old, block)
    })
    .unwrap();
    assert!(changed);
    assert_eq!(
        read(&hosts),
        format!("127.0.0.1 localhost\n{block}::1 localhost ip6-localhost\n")
    );
    let unchanged = rewrite_hosts_file(&hosts, |old| {
        fleetreg_model::replace_hosts_block(old, block)
    })
    .unwrap();
    assert!(!unchanged);
    // A missing hosts file is created with just the block.
    let fresh = dir.path().join("fresh-hosts");
    rewrite_hosts_file(&fresh, |old| {
        fleetreg_model::replace_hosts_block(old, block)
    })
    .unwrap();
    assert_eq!(read(&fresh), block);
}

fn label(text: &str) -> DnsLabel {
    DnsLabel::parse("name", text).unwrap()
}

fn vps_config(upstream: &str) -> serde_json::Value {
    serde_json::to_value(NodeConfig {
        node: label("vps1"),
        kind: NodeKind::Vps,
        routes: vec![ProxyRoute {
            hostname: "photos.curiios.com".into(),
            service: label("immich"),
            upstreams: vec![Upstream::parse("u", upstream).unwrap()],
            balance: Balance::RoundRobin,
        }],
        records: Vec::new(),
    })
    .unwrap()
}

fn laptop_config(address: &str) -> serde_json::Value {
    serde_json::to_value(NodeConfig {
        node: label("laptop1"),
        kind: NodeKind::Laptop,
        routes: Vec::new(),
        records: vec![DnsRecord {
            hostname: "photos.curiios.com".into(),
            domain: DomainName::parse("d", "curiios.com").unwrap(),
            address: address.parse().unwrap(),
        }],
    })
    .unwrap()
}

fn document(node: &str, revision: i64, config: serde_json::Value) -> ConfigDocument {
    ConfigDocument {
        node: node.to_owned(),
        revision,
        config,
    }
}

fn agent(root: &Path, node: &str, reload_cmd: Option<&str>, hosts: Option<&Path>) -> NodeAgent {
    let (out, _) = OutDir::open(root, node).unwrap();
    NodeAgent::new(Settings {
        node: node.to_owned(),
        out,
        out_dir: root.to_owned(),
        caddy: CaddyOptions::default(),
        caddy_admin: None,
        hosts_file: hosts.map(Path::to_owned),
        reload_cmd: reload_cmd.map(str::to_owned),
        reload_timeout: Duration::from_secs(10),
    })
    .unwrap()
}

#[tokio::test]
async fn a_failing_reload_is_reported_as_the_failed_revision() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("out");
    let flag = dir.path().join("reload-ok");
    let log = dir.path().join("reloads");
    // Fails (with a message on stderr) until the flag file exists; logs
    // every run with its revision.
    let command = format!(
        "echo \"$FLEETREG_REVISION $FLEETREG_NODE\" >> {log}; test -e {flag} || {{ echo 'traefik: bad config' >&2; exit 3; }}",
        log = log.display(),
        flag = flag.display()
    );
    let mut agent = agent(&root, "vps1", Some(&command), None);
    let outcome = agent
        .handle(document("vps1", 4, vps_config("10.0.0.5:80")))
        .await;
    let Outcome::Failed { revision, error } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(*revision, 4);
    assert!(
        error.contains("exit status: 3") && error.contains("traefik: bad config"),
        "{error}"
    );
    assert_eq!(outcome.ack(), json!({"failed_revision": 4, "error": error}));
    // The files were written; the revision is not applied.
    assert!(read(&root.join(TRAEFIK_FILE)).contains("10.0.0.5:80"));
    assert_eq!(agent.applied(), None);

    // The retry of the same revision reloads again although no file changed.
    std::fs::write(&flag, "").unwrap();
    let outcome = agent
        .handle(document("vps1", 4, vps_config("10.0.0.5:80")))
        .await;
    assert_eq!(outcome, Outcome::Applied(4));
    assert_eq!(outcome.ack(), json!({"applied_revision": 4}));
    assert_eq!(agent.applied(), Some(4));
    assert_eq!(
        agent
            .handle(document("vps1", 4, vps_config("10.0.0.5:80")))
            .await,
        Outcome::AlreadyApplied(4)
    );
    // A new revision with the same files needs no reload.
    assert_eq!(
        agent
            .handle(document("vps1", 5, vps_config("10.0.0.5:80")))
            .await,
        Outcome::Applied(5)
    );
    assert_eq!(read(&log), "4 vps1\n4 vps1\n");
    let outcome = agent
        .handle(document("vps1", 6, vps_config("10.0.0.6:80")))
        .await;
    assert_eq!(outcome, Outcome::Applied(6));
    assert_eq!(read(&log), "4 vps1\n4 vps1\n6 vps1\n");
    assert!(read(&root.join(CADDY_FILE)).contains("10.0.0.6:80"));
}

/// A document of the revision applied (a reconciliation, a reconnect)
/// rewrites what differs from its rendering, reloading only then.
#[tokio::test]
async fn the_applied_revision_again_repairs_hand_edits() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("out");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let log = dir.path().join("reloads");
    let command = format!("echo \"$FLEETREG_REVISION\" >> {}", log.display());
    let mut laptop = agent(&root, "laptop1", Some(&command), Some(&hosts));
    let config = || document("laptop1", 7, laptop_config("100.64.0.1"));
    assert_eq!(laptop.handle(config()).await, Outcome::Applied(7));
    let (file, block) = (read(&root.join(HOSTS_FILE)), read(&hosts));
    assert_eq!(read(&log), "7\n");
    // Nothing differs: nothing is written, nothing reloaded.
    assert_eq!(laptop.handle(config()).await, Outcome::AlreadyApplied(7));
    assert_eq!(read(&log), "7\n");
    // Edited by hand: both are put back, and the reload runs.
    std::fs::write(root.join(HOSTS_FILE), "# mine\n").unwrap();
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.0.9 photos.curiios.com\n").unwrap();
    assert_eq!(laptop.handle(config()).await, Outcome::AlreadyApplied(7));
    assert_eq!(read(&root.join(HOSTS_FILE)), file);
    assert!(read(&hosts).ends_with(&file), "{}", read(&hosts));
    assert_eq!(read(&log), "7\n7\n");
    assert_eq!(laptop.applied(), Some(7));
    // A new agent on the same directory (a restart) does not reload for
    // the revision its state file records.
    drop(laptop);
    let mut laptop = agent(&root, "laptop1", Some(&command), Some(&hosts));
    std::fs::write(&hosts, &block).unwrap();
    assert_eq!(laptop.handle(config()).await, Outcome::AlreadyApplied(7));
    assert_eq!(read(&log), "7\n7\n");
}

#[tokio::test]
async fn configurations_of_other_nodes_or_undecodable_ones_fail() {
    let dir = TempDir::new().unwrap();
    let mut agent = agent(dir.path(), "vps1", None, None);
    let cases = [
        (
            document("vps2", 1, vps_config("10.0.0.5:80")),
            "node \"vps2\"",
        ),
        (document("vps1", 2, laptop_config("100.64.0.1")), "laptop1"),
        (
            document("vps1", 3, json!({"routes": "nope"})),
            "does not decode",
        ),
    ];
    for (document, expected) in cases {
        let revision = document.revision;
        match agent.handle(document).await {
            Outcome::Failed {
                revision: failed,
                error,
            } => {
                assert_eq!(failed, revision);
                assert!(error.contains(expected), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!dir.path().join(TRAEFIK_FILE).exists());
}

#[tokio::test]
async fn a_laptop_agent_keeps_its_hosts_block() {
    let dir = TempDir::new().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.1.1.1 printer\n").unwrap();
    let root = dir.path().join("out");
    let mut agent = agent(&root, "laptop1", None, Some(&hosts));
    let outcome = agent
        .handle(document("laptop1", 9, laptop_config("100.64.0.1")))
        .await;
    assert_eq!(outcome, Outcome::Applied(9));
    assert_eq!(
        read(&hosts),
        "127.0.0.1 localhost\n10.1.1.1 printer\n# BEGIN fleetreg\n100.64.0.1 photos.curiios.com\n# END fleetreg\n"
    );
    assert_eq!(
        read(&root.join(HOSTS_FILE)),
        "# BEGIN fleetreg\n100.64.0.1 photos.curiios.com\n# END fleetreg\n"
    );
    assert!(root.join("zones/curiios.com.zone").exists());
    agent
        .handle(document("laptop1", 10, laptop_config("100.64.0.2")))
        .await;
    assert_eq!(
        read(&hosts),
        "127.0.0.1 localhost\n10.1.1.1 printer\n# BEGIN fleetreg\n100.64.0.2 photos.curiios.com\n# END fleetreg\n"
    );
}

#[tokio::test]
async fn the_reload_command_is_bounded() {
    // Killed at the time limit.
    let started = std::time::Instant::now();
    let result = run_command(
        "echo starting >&2; sleep 30",
        Duration::from_millis(300),
        &[],
    )
    .await;
    assert!(
        matches!(&result, Err(ReloadError::TimedOut { stderr, .. }) if stderr.contains("starting")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Its stderr is kept bounded.
    let result = run_command(
        "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1",
        Duration::from_secs(10),
        &[],
    )
    .await;
    let Err(ReloadError::Failed { stderr, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(stderr.len() <= MAX_REPORTED_OUTPUT, "{}", stderr.len());
    // Its own variables are given (that the tokens are withheld is tested
    // end to end: setting one here would race the other tests).
    let result = run_command(
        "test \"$FLEETREG_REVISION\" = 12",
        Duration::from_secs(10),
        &[("FLEETREG_REVISION", "12".to_owned())],
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn caddy_refusals_are_reported_with_their_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // Headers, then the body of the length they give.
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        let body = "{\"error\":\"loading config: unknown module\"}";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&request).to_string()
    });
    let http = reqwest::Client::new();
    let result = load_caddy(&http, &format!("http://{address}/"), &json!({"apps": {}})).await;
    let request = server.await.unwrap();
    assert!(request.starts_with("POST /load HTTP/1.1"), "{request}");
    assert!(
        !request.to_ascii_lowercase().contains("authorization"),
        "{request}"
    );
    assert!(request.ends_with("{\"apps\":{}}"), "{request}");
    let Err(ReloadError::CaddyRefused { status, body }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(status.as_u16(), 400);
    assert!(body.contains("unknown module"), "{body}");
    // Nothing listening.
    let dead = format!("http://127.0.0.1:{}", address.port());
    assert!(matches!(
        load_caddy(&http, &dead, &json!({})).await,
        Err(ReloadError::CaddyUnreachable { .. })
    ));
}

#[test]
fn backoff_grows_to_its_cap_with_full_jitter_and_resets() {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut ceilings = Vec::new();
    for _ in 0..12 {
        let ceiling = backoff.ceiling();
        ceilings.push(ceiling.as_millis());
        assert!(backoff.next_delay() <= ceiling);
    }
    assert_eq!(
        ceilings,
        [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]
    );
    backoff.reset();
    assert_eq!(backoff.ceiling(), Duration::from_millis(250));
    // Jitter: not every delay is the same.
    let delays: std::collections::BTreeSet<Duration> = (0..50)
        .map(|_| {
            let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
            b.next_delay()
        })
        .collect();
    assert!(delays.len() > 10, "{delays:?}");
}
