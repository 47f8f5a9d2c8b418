//! Issue 14: contexts (`fleetreg context …`, `--context`, `FLEETREG_CONTEXT`)
//! against a real server, the precedence of flags, environment and contexts,
//! a context's CA certificate, and the generated completion scripts and man
//! pages. Every run has its own `XDG_CONFIG_HOME` (and `HOME`) and a working
//! directory without `fleetreg-admin.token`.

use crate::common::{dead_url, ADMIN_TOKEN, FLEETREG};
use fleetreg_testkit::spawn::{listening_address, Run, Server, PATIENCE};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tempfile::TempDir;

/// A user: a config home and an empty working directory.
struct User {
    home: TempDir,
    cwd: TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: TempDir::new().unwrap(),
            cwd: TempDir::new().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.home.path().join("xdg/fleetreg/config.yaml")
    }

    /// `fleetreg` as this user: no `FLEETREG_*` (not even the admin token).
    fn command(&self) -> Command {
        let mut command = FLEETREG.command_in(self.cwd.path());
        command
            .env_remove("FLEETREG_ADMIN_TOKEN")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"));
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args))
    }

    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut command = self.command();
        command.envs(env.iter().copied());
        Run::of(command.args(args))
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "fleetreg {args:?}: {}", run.all());
        run
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        Run::from_output(child.wait_with_output().unwrap())
    }

    /// A token file outside the working directory.
    fn token_file(&self, name: &str, token: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn add_use_list_current_delete_against_a_server() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "contexts.db");
    let user = User::new();
    let token_file = user.token_file("admin.token", ADMIN_TOKEN);

    let run = user.run(&["context", "current"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no context is in use"), "{}", run.all());

    user.ok(&[
        "context",
        "add",
        "local",
        "--server",
        &server.url,
        "--token-file",
        &token_file,
    ]);
    assert_eq!(mode(&user.config()), 0o600);
    assert_eq!(mode(user.config().parent().unwrap()), 0o700);
    let again = user.run(&[
        "context",
        "add",
        "local",
        "--server",
        &server.url,
        "--token-file",
        &token_file,
    ]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(again.stderr.contains("--overwrite"), "{}", again.stderr);

    user.ok(&["context", "use", "local"]);
    assert_eq!(user.ok(&["context", "current"]).stdout, "local\n");
    assert_eq!(mode(&user.config()), 0o600);

    // No flag, no environment, no token file in the working directory.
    user.ok(&[
        "cluster",
        "register",
        "ctx-east-1",
        "--api-server-url",
        "https://api.ctx-east-1.example.com:6443",
    ]);
    let list = user.ok(&["cluster", "list", "-o", "json"]).json();
    assert_eq!(list["items"][0]["name"], "ctx-east-1", "{list}");

    // An inline token from stdin: kept in the file, never listed.
    let run = user.run_with_stdin(
        &[
            "context",
            "add",
            "inline",
            "--server",
            &server.url,
            "--token-stdin",
        ],
        &format!("{ADMIN_TOKEN}\n"),
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains(ADMIN_TOKEN), "{}", run.all());
    let config = std::fs::read_to_string(user.config()).unwrap();
    assert!(config.contains(ADMIN_TOKEN), "{config}");
    assert_eq!(mode(&user.config()), 0o600);
    for format in ["table", "json", "yaml", "csv"] {
        let run = user.ok(&["context", "list", "-o", format]);
        assert!(!run.all().contains(ADMIN_TOKEN), "{format}: {}", run.all());
        assert!(run.stdout.contains("inline"), "{format}: {}", run.stdout);
    }
    let table = user.ok(&["context", "list"]).stdout;
    let current: Vec<&str> = table.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{table}");
    assert!(
        current[0].contains("local") && current[0].contains(&token_file),
        "{table}"
    );
    let json = user.ok(&["context", "list", "-o", "json"]).json();
    assert_eq!(json["contexts"][0]["current"], true, "{json}");
    assert_eq!(json["contexts"][1]["current"], false, "{json}");

    user.ok(&["context", "use", "inline"]);
    let list = user.ok(&["cluster", "list", "-o", "json"]).json();
    assert_eq!(list["items"][0]["name"], "ctx-east-1", "{list}");

    // Deleting the current context leaves none current.
    let run = user.ok(&["context", "delete", "inline"]);
    assert!(
        run.stderr.contains("no context is current"),
        "{}",
        run.all()
    );
    assert_eq!(user.run(&["context", "current"]).code, 1);
    assert!(!std::fs::read_to_string(user.config())
        .unwrap()
        .contains(ADMIN_TOKEN));
    let table = user.ok(&["context", "list"]).stdout;
    assert!(
        table.contains("local") && !table.contains("inline"),
        "{table}"
    );

    let run = user.run(&["context", "delete", "inline"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("no context \"inline\""),
        "{}",
        run.all()
    );
    let run = user.run(&["context", "use", "Not_A_Label"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("not a context name"), "{}", run.all());
    // A token source is required.
    let run = user.run(&["context", "add", "x", "--server", &server.url]);
    assert_eq!(run.code, 2, "{}", run.all());
}

#[test]
fn flags_beat_environment_beats_context() {
    let dir = TempDir::new().unwrap();
    let server = Server::start(FLEETREG, dir.path(), "precedence.db");
    let user = User::new();
    let good = user.token_file("good.token", ADMIN_TOKEN);
    let bad = user.token_file("bad.token", "frg_not-a-token-0123456789");
    let dead = dead_url();
    for (name, url, token) in [
        ("good", server.url.as_str(), &good),
        ("bad-token", server.url.as_str(), &bad),
        ("dead", dead.as_str(), &good),
    ] {
        user.ok(&[
            "context",
            "add",
            name,
            "--server",
            url,
            "--token-file",
            token,
        ]);
    }
    let list = ["cluster", "list", "-o", "json"];
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["cluster", "list", "-o", "json"][..], extra].concat()
    }
    let unreachable = |run: &Run, url: &str| {
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("cannot reach") && run.stderr.contains(url),
            "{}",
            run.all()
        );
    };

    // The server: --server > --context > FLEETREG_URL > FLEETREG_CONTEXT > current.
    user.ok(&["context", "use", "dead"]);
    unreachable(&user.run(&list), &dead);
    let env_url = [("FLEETREG_URL", server.url.as_str())];
    assert_eq!(user.run_env(&env_url, &list).code, 0);
    let env_context = [("FLEETREG_CONTEXT", "good")];
    assert_eq!(user.run_env(&env_context, &list).code, 0);
    let both = [
        ("FLEETREG_URL", dead.as_str()),
        ("FLEETREG_CONTEXT", "good"),
    ];
    unreachable(&user.run_env(&both, &list), &dead);
    let dead_env = [("FLEETREG_URL", dead.as_str())];
    assert_eq!(
        user.run_env(&dead_env, &with(&["--context", "good"])).code,
        0
    );
    let run = user.run_env(&env_url, &with(&["--server", &dead]));
    unreachable(&run, &dead);
    unreachable(
        &user.run(&with(&["--context", "good", "--server", &dead])),
        &dead,
    );

    // The token: --token > --context > FLEETREG_TOKEN > FLEETREG_CONTEXT > current.
    user.ok(&["context", "use", "bad-token"]);
    let run = user.run(&list);
    run.assert_error("UNAUTHENTICATED");
    assert!(
        run.stderr.contains("context \"bad-token\"") && run.stderr.contains(&bad),
        "the hint names the context and its file: {}",
        run.stderr
    );
    assert!(!run.all().contains("frg_not-a-token"), "{}", run.all());
    let env_token = [("FLEETREG_TOKEN", ADMIN_TOKEN)];
    assert_eq!(user.run_env(&env_token, &list).code, 0);
    let env_admin = [("FLEETREG_ADMIN_TOKEN", ADMIN_TOKEN)];
    assert_eq!(user.run_env(&env_admin, &list).code, 0);
    assert_eq!(user.run(&with(&["--token", ADMIN_TOKEN])).code, 0);
    assert_eq!(user.run(&with(&["--context", "good"])).code, 0);
    let run = user.run_env(&env_token, &with(&["--context", "bad-token"]));
    run.assert_error("UNAUTHENTICATED");
    let run = user.run_env(
        &env_token,
        &with(&["--token", "frg_not-a-token-0123456789"]),
    );
    run.assert_error("UNAUTHENTICATED");
    assert!(
        run.stderr.contains("the token from --token was refused"),
        "{}",
        run.stderr
    );

    // A context never falls back to ./fleetreg-admin.token.
    user.ok(&["context", "use", "good"]);
    std::fs::write(
        user.cwd.path().join("fleetreg-admin.token"),
        "frg_not-a-token-0123456789",
    )
    .unwrap();
    assert_eq!(user.run(&list).code, 0);
    // An unknown context named anywhere is an error naming it.
    let run = user.run(&with(&["--context", "nope"]));
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no context \"nope\""), "{}", run.all());
    let run = user.run_env(&[("FLEETREG_CONTEXT", "nope")], &list);
    assert!(
        run.stderr.contains("FLEETREG_CONTEXT") && run.stderr.contains("nope"),
        "{}",
        run.all()
    );
}

#[test]
fn config_location_and_permissions() {
    let user = User::new();
    let token = user.token_file("t.token", ADMIN_TOKEN);
    // FLEETREG_CLI_CONFIG names another file; XDG_CONFIG_HOME is then untouched.
    let other = user.home.path().join("elsewhere/contexts.yaml");
    let env = [("FLEETREG_CLI_CONFIG", other.to_str().unwrap())];
    let add = [
        "context",
        "add",
        "a",
        "--server",
        "http://127.0.0.1:1",
        "--token-file",
        &token,
    ];
    assert_eq!(user.run_env(&env, &add).code, 0);
    assert_eq!(mode(&other), 0o600);
    assert!(!user.config().exists());
    assert!(user
        .run_env(&env, &["context", "list"])
        .stdout
        .contains("http://127.0.0.1:1"));
    // Without XDG_CONFIG_HOME: ~/.config/fleetreg/config.yaml.
    let run = Run::of(user.command().env_remove("XDG_CONFIG_HOME").args(add));
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        mode(&user.home.path().join(".config/fleetreg/config.yaml")),
        0o600
    );
    // A file others may read is used, with a warning.
    user.ok(&add);
    std::fs::set_permissions(user.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = user.ok(&["context", "list"]);
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("chmod 600"),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("http://127.0.0.1:1"), "{}", run.all());
    // Rewriting it makes it private again, atomically (no temporary file left).
    user.ok(&["context", "use", "a"]);
    assert_eq!(mode(&user.config()), 0o600);
    let names: Vec<_> = std::fs::read_dir(user.config().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.yaml"]);
    // A malformed file is an error naming it.
    std::fs::write(user.config(), "contexts: [nonsense").unwrap();
    let run = user.run(&["context", "list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("config.yaml"), "{}", run.all());
}

/// A context's --ca-cert is trusted for its server's certificate.
#[test]
fn a_context_trusts_its_ca_certificate() {
    let dir = TempDir::new().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("tls.db").display());
    let server = Server::spawn(
        FLEETREG,
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
            "--no-health-checks",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    let deadline = Instant::now() + PATIENCE;
    let addr = loop {
        if let Some(addr) = listening_address(&server.log_text()) {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "no address: {}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let url = format!("https://{addr}");
    let user = User::new();
    let token = user.token_file("t.token", ADMIN_TOKEN);

    // Without the CA the certificate is refused.
    let run = user.run(&["fleet", "summary", "--server", &url, "--token", ADMIN_TOKEN]);
    assert_eq!(run.code, 1, "{}", run.all());
    user.ok(&[
        "context",
        "add",
        "tls",
        "--server",
        &url,
        "--token-file",
        &token,
        "--ca-cert",
        cert.to_str().unwrap(),
    ]);
    let listed = user.ok(&["context", "list"]).stdout;
    assert!(listed.contains("server.crt"), "{listed}");
    let summary = user.run(&["fleet", "summary", "--context", "tls"]);
    assert_eq!(summary.code, 0, "{}", summary.all());
    // A file that is no certificate is refused when added.
    let run = user.run(&[
        "context",
        "add",
        "bad",
        "--server",
        &url,
        "--token-file",
        &token,
        "--ca-cert",
        &token,
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
}

#[test]
fn completion_scripts_generate() {
    let user = User::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = user.ok(&["completion", shell]);
        assert!(
            run.stdout.contains("fleetreg") && run.stdout.contains("context"),
            "{shell}: {}",
            run.stdout
        );
    }
    let script = user.home.path().join("fleetreg.bash");
    std::fs::write(&script, user.ok(&["completion", "bash"]).stdout).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&script).output();
    match checked {
        Ok(output) => assert!(
            output.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => fleetreg_testkit::skip(&format!("bash -n cannot run: {e}")),
    }
    let run = user.run(&["completion", "tcsh"]);
    assert_eq!(run.code, 2, "{}", run.all());
}

#[test]
fn man_pages_generate() {
    let user = User::new();
    let page = user.ok(&["man"]).stdout;
    assert!(page.contains(".TH fleetreg"), "{page}");
    for name in ["context", "completion", "cluster", "serve"] {
        assert!(page.contains(name), "{name}: {page}");
    }
    let out = user.home.path().join("man/man1");
    user.ok(&["man", "--out-dir", out.to_str().unwrap()]);
    for (file, names) in [
        ("fleetreg.1", &["context", "man"][..]),
        (
            "fleetreg-context.1",
            &["add", "use", "list", "current", "delete"],
        ),
        (
            "fleetreg-context-add.1",
            &["\\-\\-token\\-file", "\\-\\-ca\\-cert"],
        ),
        ("fleetreg-cluster-list.1", &["fleetreg\\-cluster\\-list"]),
    ] {
        let text =
            std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(".TH"), "{file}: {text}");
        for name in names {
            assert!(text.contains(name), "{file} lacks {name}: {text}");
        }
    }
}
