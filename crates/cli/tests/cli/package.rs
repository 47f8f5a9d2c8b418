//! The Debian package (packaging/build-deb.sh, cargo-deb): built from the
//! debug binary these tests run (`--dev --no-build`: a release build takes
//! minutes), inspected with dpkg-deb (files, modes, conffiles, the configuration
//! loads), and — with `FLEETREG_REQUIRE_DEB=1` (CI), as it changes the machine —
//! installed with `dpkg -i`, its units checked with `systemd-analyze verify`
//! (which a unit with a typo fails: the negative control) and `security`, the
//! installed server started as its unit would start it (the `fleetreg` user,
//! the installed config, a state directory of its own, no new privileges)
//! until `/health` and `/ready` answer and the installed CLI reads through it,
//! then purged.
//!
//! Without cargo-deb, dpkg-deb or systemd-analyze both print a `SKIP` line
//! unless `FLEETREG_REQUIRE_DEB=1`; scripts/install-test-deps.sh installs them.

use crate::common::BIN;
use fleetreg_server::settings::Settings;
use fleetreg_testkit::spawn::{http_get, listening_address, sigterm, wait_exit, PATIENCE};
use fleetreg_testkit::{required, skip, skip_or_fail};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REQUIRE: &str = "FLEETREG_REQUIRE_DEB";
const UNITS: [&str; 2] = ["fleetreg.service", "fleetreg-agent.service"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const CONFIG: &str = "/etc/fleetreg/config.yaml";
const AGENT_ENV: &str = "/etc/fleetreg/agent.env";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `program args`, panicking with its output unless it succeeds.
fn ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// cargo-deb on PATH or in target/tools/bin.
fn cargo_deb_found() -> bool {
    runs("cargo-deb", "--version") || root().join("target/tools/bin/cargo-deb").is_file()
}

/// What is missing to build and inspect the package, if anything.
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        ("cargo-deb", cargo_deb_found()),
        ("dpkg-deb", runs("dpkg-deb", "--version")),
        ("systemd-analyze", runs("systemd-analyze", "--version")),
        ("objcopy", runs("objcopy", "--version")),
    ]
    .into_iter()
    .filter(|(_, found)| !found)
    .map(|(tool, _)| tool)
    .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The package of the binary under test, built once per test process into a
/// directory of its own.
fn package() -> &'static Path {
    static PACKAGE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, deb) = PACKAGE.get_or_init(|| {
        let out = tempfile::Builder::new()
            .prefix("fleetreg-deb-")
            .tempdir()
            .unwrap();
        // The target directory of the binary under test (…/target/debug/fleetreg).
        let target = Path::new(BIN).parent().unwrap().parent().unwrap();
        let started = Instant::now();
        let output = Command::new(root().join("packaging/build-deb.sh"))
            .args(["--dev", "--no-build", "--output"])
            .arg(out.path())
            .env("CARGO_TARGET_DIR", target)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "packaging/build-deb.sh: {}\n{}",
            output.status,
            text(&output)
        );
        let debs: Vec<PathBuf> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        assert_eq!(debs.len(), 1, "{debs:?}\n{}", text(&output));
        eprintln!(
            "built {} in {:.1} s",
            debs[0].display(),
            started.elapsed().as_secs_f64()
        );
        let deb = debs[0].clone();
        (out, deb)
    });
    deb
}

/// The unit directives both units must set (the sandbox), as `Key=value`.
const HARDENING: [&str; 13] = [
    "User=fleetreg",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "SystemCallFilter=@system-service",
    "SystemCallArchitectures=native",
];

#[test]
fn the_package_holds_the_binary_units_config_completions_and_man_pages() {
    if let Some(missing) = missing_tools() {
        skip_or_fail(
            REQUIRE,
            &format!("{missing} not found"),
            "scripts/install-test-deps.sh installs them",
        );
        return;
    }
    let deb = package();
    let info = ok("dpkg-deb", &["--info", deb.to_str().unwrap()]);
    for field in [
        "Package: fleetreg",
        "Version: 0.1.0-1",
        "Architecture: amd64",
        "Section: admin",
    ] {
        assert!(info.contains(field), "{field}:\n{info}");
    }
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"));
    assert!(
        depends.contains("libc6") && depends.contains("systemd"),
        "{depends}"
    );
    // Every file under /etc is a conffile; nothing else is.
    let conffiles = ok("dpkg-deb", &["--info", deb.to_str().unwrap(), "conffiles"]);
    let mut conffiles: Vec<&str> = conffiles.lines().map(str::trim).collect();
    conffiles.sort();
    assert_eq!(conffiles, [AGENT_ENV, CONFIG]);
    // The maintainer scripts create the user and handle the units.
    let postinst = ok("dpkg-deb", &["--info", deb.to_str().unwrap(), "postinst"]);
    assert!(
        postinst.contains("systemd-sysusers") && postinst.contains("fleetreg.conf"),
        "{postinst}"
    );
    assert!(postinst.contains("fleetreg.service"), "{postinst}");

    let listing = ok("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(".{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
    };
    // Owned by root (dpkg-deb shows uid/gid, or names when the archive has them).
    let owned = |line: &str, mode: &str| {
        line.starts_with(&format!("{mode} 0/0 ")) || line.starts_with(&format!("{mode} root/root "))
    };
    assert!(
        owned(entry("/usr/bin/fleetreg"), "-rwxr-xr-x"),
        "{}",
        entry("/usr/bin/fleetreg")
    );
    for path in [
        CONFIG,
        AGENT_ENV,
        "/usr/lib/systemd/system/fleetreg.service",
        "/usr/lib/systemd/system/fleetreg-agent.service",
        "/usr/lib/sysusers.d/fleetreg.conf",
        "/usr/share/bash-completion/completions/fleetreg",
        "/usr/share/zsh/vendor-completions/_fleetreg",
        "/usr/share/fish/vendor_completions.d/fleetreg.fish",
        "/usr/share/man/man1/fleetreg.1.gz",
        "/usr/share/man/man1/fleetreg-serve.1.gz",
        "/usr/share/man/man1/fleetreg-cluster-list.1.gz",
        "/usr/share/doc/fleetreg/copyright",
        "/usr/share/doc/fleetreg/README.md",
        "/usr/share/doc/fleetreg/CONFIGURATION.md",
    ] {
        assert!(owned(entry(path), "-rw-r--r--"), "{}", entry(path));
    }

    // What the package holds, extracted: the shipped configuration loads with
    // `serve`'s loader, the units carry the sandbox, the binary is stripped
    // and runs.
    let dir = tempfile::tempdir().unwrap();
    ok(
        "dpkg-deb",
        &[
            "--extract",
            deb.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
    );
    let at = |path: &str| dir.path().join(path.trim_start_matches('/'));
    let config = std::fs::read_to_string(at(CONFIG)).unwrap();
    let settings = Settings::from_yaml(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    assert!(settings.listen.ip().is_loopback(), "{}", settings.listen);
    for unit in UNITS {
        let text = std::fs::read_to_string(at(&format!("{UNIT_DIR}/{unit}"))).unwrap();
        for directive in HARDENING {
            assert!(
                text.lines().any(|l| l.trim() == directive),
                "{unit} lacks {directive}"
            );
        }
    }
    let serve = std::fs::read_to_string(at(&format!("{UNIT_DIR}/fleetreg.service"))).unwrap();
    for directive in [
        "ExecStart=/usr/bin/fleetreg serve --config /etc/fleetreg/config.yaml",
        "StateDirectory=fleetreg",
        "WorkingDirectory=/var/lib/fleetreg",
        // Not the agent's: its reload command runs in its sandbox.
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(serve.lines().any(|l| l.trim() == directive), "{directive}");
    }
    let agent = std::fs::read_to_string(at(&format!("{UNIT_DIR}/fleetreg-agent.service"))).unwrap();
    for directive in [
        "ExecStart=/usr/bin/fleetreg agent",
        "EnvironmentFile=/etc/fleetreg/agent.env",
        "StateDirectory=fleetreg-agent",
    ] {
        assert!(agent.lines().any(|l| l.trim() == directive), "{directive}");
    }
    let env = std::fs::read_to_string(at(AGENT_ENV)).unwrap();
    for variable in [
        "FLEETREG_URL",
        "FLEETREG_NODE",
        "FLEETREG_TOKEN_FILE",
        "FLEETREG_OUT_DIR",
        "FLEETREG_RELOAD_CMD",
        "FLEETREG_CADDY_ADMIN",
    ] {
        assert!(env.contains(&format!("#{variable}=")), "{variable}");
    }
    let binary = at("/usr/bin/fleetreg");
    let sections = ok("objdump", &["--section-headers", binary.to_str().unwrap()]);
    assert!(
        !sections.contains(".debug_line") && !sections.contains(".debug_info"),
        "the packaged binary is not stripped:\n{sections}"
    );
    let version = ok(binary.to_str().unwrap(), &["--version"]);
    assert_eq!(version.trim(), "fleetreg 0.1.0");
}

/// `systemd-analyze verify` of the unit files `paths`: its complaints, if any
/// (an unknown key or bad value is only a warning there, with exit status 0:
/// any line naming one of the units counts).
fn verify(paths: &[&Path]) -> Result<(), String> {
    let mut command = Command::new("systemd-analyze");
    command.arg("verify");
    if !runs("man", "--version") {
        // Documentation=man:… is looked up with man(1).
        command.arg("--man=no");
    }
    let output = command.args(paths).output().unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let all = text(&output);
    let complaints: Vec<&str> = all
        .lines()
        .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
        .collect();
    if output.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {all}", output.status))
    }
}

/// Purges the package when dropped (also when the test fails midway).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "fleetreg"])
            .stdout(Stdio::null())
            .status();
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", "fleetreg"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_installed_package_runs_as_the_service_would() {
    if !required(REQUIRE) {
        skip(&format!(
            "the package test installs fleetreg into this machine (dpkg -i, as root) and \
             purges it; set {REQUIRE}=1 to run it"
        ));
        return;
    }
    if let Some(missing) = missing_tools() {
        panic!("{REQUIRE}=1 but {missing} not found: run scripts/install-test-deps.sh");
    }
    assert_eq!(
        ok("id", &["-u"]).trim(),
        "0",
        "{REQUIRE}=1 but dpkg -i needs root"
    );
    let deb = package();
    if installed() {
        // A run that was killed midway.
        ok("dpkg", &["--purge", "fleetreg"]);
    }
    let guard = Installed;
    let install = ok("dpkg", &["--install", deb.to_str().unwrap()]);
    assert!(installed(), "{install}");

    // The files, where dpkg says they are.
    let files = ok("dpkg", &["--listfiles", "fleetreg"]);
    for path in [
        "/usr/bin/fleetreg",
        CONFIG,
        AGENT_ENV,
        "/usr/lib/systemd/system/fleetreg.service",
        "/usr/lib/systemd/system/fleetreg-agent.service",
        "/usr/share/bash-completion/completions/fleetreg",
        "/usr/share/man/man1/fleetreg-serve.1.gz",
    ] {
        assert!(files.lines().any(|l| l == path), "{path}:\n{files}");
        assert!(Path::new(path).is_file(), "{path}");
    }
    assert_eq!(mode("/usr/bin/fleetreg"), 0o755);
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        std::fs::read_to_string(root().join("packaging/config.yaml")).unwrap()
    );
    let conffiles = ok(
        "dpkg-query",
        &["--show", "--showformat=${Conffiles}", "fleetreg"],
    );
    for path in [CONFIG, AGENT_ENV] {
        assert!(conffiles.contains(path), "{path}: {conffiles}");
    }
    // postinst made the service's user (systemd-sysusers), without a login.
    let user = ok("getent", &["passwd", "fleetreg"]);
    assert!(user.trim_end().ends_with("nologin"), "{user}");
    let version = ok("/usr/bin/fleetreg", &["--version"]);
    assert_eq!(version.trim(), "fleetreg 0.1.0");
    let completion = ok(
        "bash",
        &["-n", "/usr/share/bash-completion/completions/fleetreg"],
    );
    assert!(completion.is_empty());

    // systemd-analyze verify passes both installed units (the binary they
    // start exists, every key and value is known) ...
    let units: Vec<PathBuf> = UNITS.iter().map(|u| Path::new(UNIT_DIR).join(u)).collect();
    for unit in &units {
        if let Err(complaint) = verify(&[unit]) {
            panic!("systemd-analyze verify {}: {complaint}", unit.display());
        }
    }
    // ... and fails a unit with a typo, a bad value or a missing binary.
    let scratch = tempfile::tempdir().unwrap();
    let serve_unit = std::fs::read_to_string(&units[0]).unwrap();
    for (name, from, to) in [
        ("typo-key", "ProtectSystem=strict", "ProtectSystm=strict"),
        ("typo-value", "ProtectSystem=strict", "ProtectSystem=strcit"),
        (
            "no-binary",
            "/usr/bin/fleetreg serve",
            "/usr/bin/fleetreg-nope serve",
        ),
    ] {
        assert!(serve_unit.contains(from), "{from}");
        let broken = scratch.path().join(format!("fleetreg-{name}.service"));
        std::fs::write(&broken, serve_unit.replace(from, to)).unwrap();
        assert!(
            verify(&[&broken]).is_err(),
            "systemd-analyze verify passed {name}"
        );
    }
    // The sandbox, as systemd scores it (0 safest … 10 exposed; "OK" ≤ 3.9).
    for unit in &units {
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=25", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let all = text(&output);
        let level = all
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no exposure level:\n{all}"));
        assert!(
            level <= 2.5,
            "{}: exposure {level}, want at most 2.5:\n{all}",
            unit.display()
        );
    }

    // A changed conffile survives reinstalling the package.
    let mut changed = std::fs::read_to_string(CONFIG).unwrap();
    changed.push_str("# changed by the operator\n");
    std::fs::write(CONFIG, &changed).unwrap();
    ok(
        "dpkg",
        &["--install", "--force-confold", deb.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), changed);

    // The installed binary and configuration, started as fleetreg.service
    // would: as the fleetreg user, without new privileges or capabilities,
    // in a state directory of its own (mode 0700) as its working directory,
    // on a free loopback port instead of 8080 (--listen overrides the file).
    let state = tempfile::Builder::new()
        .prefix("fleetreg-state-")
        .tempdir()
        .unwrap();
    ok(
        "chown",
        &["fleetreg:fleetreg", state.path().to_str().unwrap()],
    );
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = scratch.path().join("serve.log");
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=fleetreg",
            "--regid=fleetreg",
            "--init-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "/usr/bin/fleetreg",
            "serve",
            "--config",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(state.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("setpriv");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + PATIENCE;
    let url = loop {
        if let Some(addr) = listening_address(&log_text()) {
            break format!("http://{addr}");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the installed serve exited with {status}:\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "the installed serve did not start:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for path in ["/health", "/ready"] {
        let answered = loop {
            let answer = http_get(&url, path).unwrap_or_default();
            if answer.starts_with("HTTP/1.1 200") || Instant::now() >= deadline {
                break answer;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            answered.starts_with("HTTP/1.1 200"),
            "{path}: {answered}\n{}",
            log_text()
        );
    }
    // It wrote its state as the fleetreg user, private, where its unit says.
    let owner = std::fs::metadata(state.path()).unwrap().uid();
    for file in ["fleetreg.db", "fleetreg-master.key", "fleetreg-admin.token"] {
        let path = state.path().join(file);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.uid(), owner, "{file}");
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{file} is private");
    }
    // The installed CLI, from the state directory, reads the admin token there.
    let listed = Command::new("/usr/bin/fleetreg")
        .args(["cluster", "list", "-o", "json"])
        .current_dir(state.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", scratch.path())
        .env("FLEETREG_URL", &url)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    sigterm(&child);
    let status = wait_exit(&mut child, PATIENCE).expect("serve stops on SIGTERM");
    assert!(status.success(), "{status}:\n{}", log_text());

    // Purged: the files and the conffiles go (the state directory and the
    // user stay, as on any Debian system).
    drop(guard);
    assert!(!installed());
    for path in [
        "/usr/bin/fleetreg",
        CONFIG,
        AGENT_ENV,
        "/usr/lib/systemd/system/fleetreg.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after --purge");
    }
}
