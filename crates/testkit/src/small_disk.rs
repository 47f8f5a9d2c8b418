//! [`SmallDisk`]: a tiny filesystem of one test's own that the test can fill
//! up (`ENOSPC`) and free again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that, set to `1`, turns a [`small_disk`] that
/// cannot be mounted (not root, no `mount`) from a skip into a failure. CI
/// runs as root, so `.ci/run` could export it beside
/// `FLEETREG_REQUIRE_POSTGRES=1`.
pub const REQUIRE_TMPFS_ENV: &str = "FLEETREG_REQUIRE_TMPFS";

/// The name of the file [`SmallDisk::fill`] writes.
pub const FILLER_NAME: &str = "filler";

/// Whether small-disk tests must run ([`REQUIRE_TMPFS_ENV`] is `1`).
pub fn tmpfs_required() -> bool {
    std::env::var(REQUIRE_TMPFS_ENV).is_ok_and(|v| v == "1")
}

/// A `tmpfs` of a few MiB mounted on a temp dir, made by [`small_disk`].
///
/// Dropping the handle unmounts it (`umount -l`, so files a process still
/// holds open do not keep it busy; the memory is released when the last one
/// closes) and removes the mount point.
#[derive(Debug)]
pub struct SmallDisk {
    mount_point: tempfile::TempDir,
    mib: u64,
}

impl SmallDisk {
    /// The mount point: put the files under test here.
    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// The size the filesystem was mounted with, in MiB.
    pub fn size_mib(&self) -> u64 {
        self.mib
    }

    /// The filler file [`SmallDisk::fill`] writes.
    pub fn filler(&self) -> PathBuf {
        self.path().join(FILLER_NAME)
    }

    /// Fills the filesystem: appends to the filler file (64 KiB writes, then
    /// 4 KiB, then single bytes) until the filesystem answers `ENOSPC` to
    /// each size, so no write of any size fits anymore. Returns the filler's
    /// size. Panics on any other error.
    pub fn fill(&self) -> u64 {
        let path = self.filler();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        for chunk in [64 * 1024, 4 * 1024, 1] {
            let block = vec![0xa5u8; chunk];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if is_enospc(&e) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        file.metadata()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
            .len()
    }

    /// Frees what [`SmallDisk::fill`] took: removes the filler file (no
    /// error when there is none).
    pub fn free(&self) {
        match std::fs::remove_file(self.filler()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", self.filler().display()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        match Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path())
            .output()
        {
            Ok(out) if out.status.success() => {}
            outcome => eprintln!(
                "warning: could not unmount the small disk at {}: {outcome:?}",
                self.mount_point.path().display()
            ),
        }
        // The TempDir then removes the (now empty) mount point.
    }
}

/// Whether `error` is "no space left on device".
pub fn is_enospc(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull || error.raw_os_error() == Some(28)
}

/// Mounts a `tmpfs` of `mib` MiB (`mount -t tmpfs -o size=<mib>m tmpfs DIR`)
/// on a new temp dir.
///
/// Returns `None` after printing a `SKIP:` line to stderr when it cannot be
/// mounted (mounting needs root), unless [`tmpfs_required`], where it
/// panics.
pub fn small_disk(mib: u64) -> Option<SmallDisk> {
    assert!(mib > 0, "a small disk needs at least 1 MiB");
    let skip = |why: String| -> Option<SmallDisk> {
        if tmpfs_required() {
            panic!("{REQUIRE_TMPFS_ENV}=1 but a {mib} MiB tmpfs cannot be mounted: {why}");
        }
        crate::skip(&format!(
            "a {mib} MiB tmpfs cannot be mounted ({why}); run as root, or set \
             {REQUIRE_TMPFS_ENV}=1 to make this a failure"
        ));
        None
    };
    let mount_point = match tempfile::Builder::new().prefix("fleetreg-disk-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return skip(format!("cannot create a temp dir: {e}")),
    };
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0777")])
        .arg("tmpfs")
        .arg(mount_point.path())
        .output();
    match mounted {
        Ok(out) if out.status.success() => Some(SmallDisk { mount_point, mib }),
        Ok(out) => skip(format!(
            "mount failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => skip(format!("cannot run mount: {e}")),
    }
}
