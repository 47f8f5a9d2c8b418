//! [`Knot`]: a real Knot DNS server (`knotd`) of one test's own, serving zone
//! files on a free loopback port; [`check_zone`] (`knotc zone-check`, the
//! zone loader with Knot's semantic checks, offline) and [`kdig`] to query.
//!
//! DESIGN.md's skip rule: missing `knotd`, `knotc` or `kdig` (Debian packages
//! `knot` and `knot-dnsutils`, installed by `scripts/install-test-deps.sh`),
//! or a server that does not start, is a `SKIP:` unless
//! `FLEETREG_REQUIRE_KNOT=1` ([`REQUIRE_KNOT_ENV`]), where it is a failure.
//! (`kzonecheck` is in `knot-dnssecutils` on Debian bookworm; `knotc
//! zone-check` runs the same checks and ships with `knotd`.)

use crate::spawn::PATIENCE;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that, set to `1`, makes missing Knot tools or a
/// server that does not start a failure instead of a skip (CI sets it).
pub const REQUIRE_KNOT_ENV: &str = "FLEETREG_REQUIRE_KNOT";

/// Where Debian installs `knotd` and `knotc` (often not on a user's `PATH`).
const SBIN: &str = "/usr/sbin";

/// A running `knotd -c DIR/knot.conf`: listening on `127.0.0.1@PORT` (UDP
/// and TCP), its control socket, timer database and zone files
/// (`DIR/zones/<origin>.zone`) in its temp dir, zone files loaded whole (no
/// journal), semantic checks on, log in `DIR/knotd.log`. Made by [`knot`];
/// killed (and the directory removed) on drop, also while a panicking test
/// unwinds. The calls block the calling thread.
#[derive(Debug)]
pub struct Knot {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    knotc: PathBuf,
}

/// The path of `name` on `PATH` or in `/usr/sbin`.
fn tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(std::iter::once(PathBuf::from(SBIN)))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The configuration of a server in `dir` on `port` serving `origins`.
fn config(dir: &Path, port: u16, origins: &[&str]) -> String {
    let d = dir.display();
    let mut conf = format!(
        "server:\n    rundir: \"{d}/run\"\n    listen: 127.0.0.1@{port}\n\
         control:\n    listen: \"{d}/run/knot.sock\"\n\
         database:\n    storage: \"{d}/db\"\n\
         log:\n  - target: stderr\n    any: info\n\
         template:\n  - id: default\n    storage: \"{d}/zones\"\n    file: \"%s.zone\"\n\
         \x20   zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
         \x20   semantic-checks: on\n"
    );
    if !origins.is_empty() {
        conf.push_str("zone:\n");
        for origin in origins {
            conf.push_str(&format!("  - domain: {origin}\n"));
        }
    }
    conf
}

/// Writes `zones` (origin, master file) into `dir/zones` and the
/// configuration serving them to `dir/knot.conf`.
fn write_setup(dir: &Path, port: u16, zones: &[(&str, &str)]) -> Result<PathBuf, String> {
    for sub in ["run", "db", "zones"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    for (origin, text) in zones {
        if origin.contains('/') || origin.starts_with('.') {
            return Err(format!("{origin:?} is not a zone name"));
        }
        std::fs::write(dir.join("zones").join(format!("{origin}.zone")), text)
            .map_err(|e| e.to_string())?;
    }
    let origins: Vec<&str> = zones.iter().map(|(o, _)| *o).collect();
    let conf = dir.join("knot.conf");
    std::fs::write(&conf, config(dir, port, &origins)).map_err(|e| e.to_string())?;
    Ok(conf)
}

impl Knot {
    /// The DNS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir (`knot.conf`, `knotd.log`, `zones/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    /// `knotc -c CONF args…`: its output, or why it failed.
    pub fn knotc(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.knotc)
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run knotc: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "knotc {args:?}: {}\n{}",
                describe(&out),
                self.log()
            ))
        }
    }

    /// Serves exactly `zones` (origin, master file) from now on: writes the
    /// files and the configuration, then `knotc reload` (which reads the
    /// configuration and the zone files that changed). Loading is
    /// asynchronous: wait with [`Knot::wait_for_serial`].
    pub fn set_zones(&self, zones: &[(&str, &str)]) -> Result<(), String> {
        write_setup(self.dir.path(), self.port, zones)?;
        self.knotc(&["reload"]).map(|_| ())
    }

    /// `kdig @127.0.0.1 -p PORT +short name rtype`: the answers' data, one
    /// per line.
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        kdig(self.port, name, rtype)
    }

    /// Waits up to 30 s until the zone `origin` is served with SOA serial
    /// `serial`; whether it was.
    pub fn wait_for_serial(&self, origin: &str, serial: u32) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let soa = self.query(origin, "SOA");
            if soa
                .first()
                .and_then(|s| s.split_whitespace().nth(2))
                .is_some_and(|s| s == serial.to_string())
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kdig @127.0.0.1 -p port +short name rtype` (1 s timeout, 2 tries): the
/// answers' data, one per line (empty on no answer or when kdig fails).
pub fn kdig(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let Some(kdig) = tool("kdig") else {
        return Vec::new();
    };
    let out = Command::new(kdig)
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+short", "+time=1", "+retry=1"])
        .arg(name)
        .arg(rtype)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Checks the master file `text` of zone `origin` with Knot's zone loader
/// and semantic checks (`knotc zone-check`, offline, in a temp dir of its
/// own): `Ok` with knotc's output (warnings, if any) when the zone loads,
/// `Err` with the errors when it does not or knotc cannot run.
pub fn check_zone(origin: &str, text: &str) -> Result<String, String> {
    let knotc = tool("knotc").ok_or("knotc is not installed")?;
    let dir = tempfile::Builder::new()
        .prefix("fleetreg-zonecheck-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let conf = write_setup(dir.path(), crate::free_port(), &[(origin, text)])?;
    let out = Command::new(knotc)
        .arg("-c")
        .arg(&conf)
        .args(["zone-check", origin])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run knotc: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(said)
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

/// Starts a [`Knot`] serving `zones` (origin, master file; may be empty) and
/// waits until it runs (`knotc status`) and its port accepts TCP.
///
/// Returns `None` after a `SKIP:` line when `knotd`, `knotc` or `kdig` is
/// missing or the server does not come up, unless `FLEETREG_REQUIRE_KNOT=1`,
/// where that panics.
pub fn knot(zones: &[(&str, &str)]) -> Option<Knot> {
    let hint = "install the Debian packages knot and knot-dnsutils (scripts/install-test-deps.sh)";
    let (Some(knotd), Some(knotc), Some(_)) = (tool("knotd"), tool("knotc"), tool("kdig")) else {
        crate::skip_or_fail(
            REQUIRE_KNOT_ENV,
            "knotd, knotc or kdig is not installed",
            hint,
        );
        return None;
    };
    let mut last_error = String::new();
    for _ in 0..5 {
        match start(&knotd, &knotc, zones) {
            Ok(knot) => return Some(knot),
            Err(error) => last_error = error,
        }
        if !last_error.contains("in use") {
            break;
        }
    }
    crate::skip_or_fail(
        REQUIRE_KNOT_ENV,
        &format!("knotd did not start: {last_error}"),
        hint,
    );
    None
}

fn start(knotd: &Path, knotc: &Path, zones: &[(&str, &str)]) -> Result<Knot, String> {
    let dir = tempfile::Builder::new()
        .prefix("fleetreg-knot-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let port = crate::free_port();
    let conf = write_setup(dir.path(), port, zones)?;
    let log = std::fs::File::create(dir.path().join("knotd.log")).map_err(|e| e.to_string())?;
    let child = Command::new(knotd)
        .arg("-c")
        .arg(&conf)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start knotd: {e}"))?;
    let mut knot = Knot {
        dir,
        child,
        port,
        knotc: knotc.to_owned(),
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listening = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok();
        if listening && knot.knotc(&["status"]).is_ok() {
            return Ok(knot);
        }
        if let Ok(Some(status)) = knot.child.try_wait() {
            return Err(format!("knotd exited ({status}): {}", knot.log()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "knotd did not answer on port {port} within {PATIENCE:?}: {}",
                knot.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$ORIGIN example.test.\n$TTL 60\n\
        @ IN SOA ns.example.test. hostmaster.example.test. ( SERIAL 3600 900 1209600 60 )\n\
        @ IN NS ns.example.test.\nns IN A 127.0.0.1\nwww IN A ADDRESS\n";

    fn zone(serial: u32, address: &str) -> String {
        ZONE.replace("SERIAL", &serial.to_string())
            .replace("ADDRESS", address)
    }

    #[test]
    fn knot_serves_checks_and_reloads() {
        let Some(knot) = knot(&[]) else { return };
        assert!(knot.query("www.example.test", "A").is_empty());
        let first = zone(1, "192.0.2.1");
        check_zone("example.test", &first).expect("a valid zone");
        assert!(check_zone("example.test", &zone(1, "192.0.2")).is_err());
        assert!(check_zone("example.test", &format!("{first}www IN CNAME ns\n")).is_err());
        knot.set_zones(&[("example.test", &first)]).unwrap();
        assert!(knot.wait_for_serial("example.test", 1), "{}", knot.log());
        assert_eq!(knot.query("www.example.test", "A"), ["192.0.2.1"]);
        knot.set_zones(&[("example.test", &zone(2, "192.0.2.2"))])
            .unwrap();
        assert!(knot.wait_for_serial("example.test", 2), "{}", knot.log());
        assert_eq!(knot.query("www.example.test", "A"), ["192.0.2.2"]);
        let dir = knot.dir().to_owned();
        drop(knot);
        assert!(!dir.exists());
    }
}
