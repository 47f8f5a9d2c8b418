//! Files on the node, written so that a reader (the proxy, the resolver)
//! never sees half of one: each file goes to a temporary file in its own
//! directory, is synced, renamed over the old one, and the directory synced.
//! The output directory keeps a state file, [`STATE_FILE`], with the revision
//! last applied and the files the agent wrote, so that files the new
//! revision no longer has are removed (and nothing else ever is).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The state file in the output directory.
pub const STATE_FILE: &str = ".fleetreg-agent.json";

/// The largest state or hosts file the agent reads back.
const MAX_LOCAL_FILE: u64 = 16 * 1024 * 1024;

/// The suffix of the temporary file beside each file being written.
const TEMP_SUFFIX: &str = ".fleetreg-tmp";

/// Why applying files failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A rendered path is not a plain relative path inside the output
    /// directory (or is listed twice, or is the state file).
    #[error("refusing to write {path:?}: {reason}")]
    BadPath {
        /// The path as rendered.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing`, `removing`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError {
    let path = path.to_owned();
    move |source| ApplyError::Io {
        action,
        path,
        source,
    }
}

/// A file to write: its path relative to the output directory and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Relative path (`/`-separated, no `..`).
    pub path: String,
    /// The whole content.
    pub content: Vec<u8>,
}

/// What one [`OutDir::write_files`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileChanges {
    /// Files written (new or changed).
    pub written: usize,
    /// Files whose content was already right.
    pub unchanged: usize,
    /// Files of the previous set no longer rendered, removed.
    pub removed: usize,
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The node the files are for.
    #[serde(default)]
    pub node: Option<String>,
    /// The revision last applied completely (files written and reloaded).
    #[serde(default)]
    pub revision: Option<i64>,
    /// The files the agent wrote, relative to the output directory.
    #[serde(default)]
    pub files: BTreeSet<String>,
}

/// The output directory and its state.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
    node: String,
    state: AgentState,
}

impl OutDir {
    /// Opens (creating it if needed) the output directory of `node`, reading
    /// its state file. A state file of another node keeps its file list (those
    /// files are still the agent's to remove) but not its revision; an
    /// unreadable one is reported in the returned warning and ignored.
    pub fn open(root: &Path, node: &str) -> Result<(OutDir, Option<String>), ApplyError> {
        std::fs::create_dir_all(root).map_err(io("creating", root))?;
        let path = root.join(STATE_FILE);
        let mut warning = None;
        let state = match read_bounded(&path) {
            Ok(Some(text)) => match serde_json::from_str::<AgentState>(&text) {
                Ok(mut state) => {
                    if state.node.as_deref().is_some_and(|n| n != node) {
                        warning = Some(format!(
                            "{} was written for node {:?}: applying from scratch",
                            path.display(),
                            state.node.as_deref().unwrap_or_default()
                        ));
                        state.revision = None;
                    }
                    state.files.retain(|f| check_path(f).is_ok());
                    state
                }
                Err(error) => {
                    warning = Some(format!(
                        "ignoring {} ({error}): applying from scratch",
                        path.display()
                    ));
                    AgentState::default()
                }
            },
            Ok(None) => AgentState::default(),
            Err(source) => return Err(io("reading", &path)(source)),
        };
        Ok((
            OutDir {
                root: root.to_owned(),
                node: node.to_owned(),
                state,
            },
            warning,
        ))
    }

    /// The revision last applied completely, if any.
    pub fn applied(&self) -> Option<i64> {
        self.state.revision
    }

    /// Writes `files` (each atomically; unchanged ones are left alone),
    /// removes the files of the previous set that `files` no longer has, and
    /// records the new set (the applied revision stays as it was until
    /// [`OutDir::mark_applied`]).
    pub fn write_files(&mut self, files: &[OutFile]) -> Result<FileChanges, ApplyError> {
        let mut paths = BTreeSet::new();
        for file in files {
            check_path(&file.path).map_err(|reason| ApplyError::BadPath {
                path: file.path.clone(),
                reason,
            })?;
            if !paths.insert(file.path.clone()) {
                return Err(ApplyError::BadPath {
                    path: file.path.clone(),
                    reason: "it is rendered twice",
                });
            }
        }
        let mut changes = FileChanges::default();
        // Every file about to be written is recorded first, so a failure
        // halfway still leaves each file of ours in the state.
        let mut recorded: BTreeSet<String> = self.state.files.union(&paths).cloned().collect();
        self.save(self.state.revision, &recorded)?;
        for file in files {
            let path = self.root.join(&file.path);
            if std::fs::read(&path).is_ok_and(|old| old == file.content) {
                changes.unchanged += 1;
                continue;
            }
            create_dirs(&self.root, Path::new(&file.path))?;
            write_atomic(&path, &file.content)?;
            changes.written += 1;
        }
        let stale: Vec<String> = recorded.difference(&paths).cloned().collect();
        for stale in stale {
            let path = self.root.join(&stale);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    changes.removed += 1;
                    if let Some(parent) = path.parent() {
                        sync_dir(parent)?;
                    }
                    remove_empty_parents(&self.root, &path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    self.save(self.state.revision, &recorded)?;
                    return Err(io("removing", &path)(source));
                }
            }
            recorded.remove(&stale);
        }
        self.save(self.state.revision, &paths)?;
        Ok(changes)
    }

    /// Records `revision` as applied.
    pub fn mark_applied(&mut self, revision: i64) -> Result<(), ApplyError> {
        let files = self.state.files.clone();
        self.save(Some(revision), &files)
    }

    fn save(&mut self, revision: Option<i64>, files: &BTreeSet<String>) -> Result<(), ApplyError> {
        let state = AgentState {
            node: Some(self.node.clone()),
            revision,
            files: files.clone(),
        };
        if state == self.state && self.root.join(STATE_FILE).exists() {
            return Ok(());
        }
        let mut text = serde_json::to_vec_pretty(&state).unwrap_or_default();
        text.push(b'\n');
        write_atomic(&self.root.join(STATE_FILE), &text)?;
        self.state = state;
        Ok(())
    }
}

/// Why `path` may not be written under the output directory, if it may not.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.ends_with('/') {
        return Err("it names no file");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("it has a backslash or NUL");
    }
    let components: Vec<Component> = Path::new(path).components().collect();
    if !components.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err("it is not a plain relative path (absolute, `.` or `..`)");
    }
    if components.len() == 1 && path == STATE_FILE {
        return Err("it is the agent's state file");
    }
    if path.ends_with(TEMP_SUFFIX) {
        return Err("it ends like the agent's temporary files");
    }
    Ok(())
}

/// Reads a local file of at most [`MAX_LOCAL_FILE`] bytes; `None` when absent.
pub fn read_bounded(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_LOCAL_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_LOCAL_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_LOCAL_FILE} bytes"
        )));
    }
    Ok(Some(text))
}

/// Creates the directories between `root` and the file `relative`, syncing
/// the parent of each one created.
fn create_dirs(root: &Path, relative: &Path) -> Result<(), ApplyError> {
    let mut dir = root.to_owned();
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    for component in parent.components() {
        let next = dir.join(component);
        match std::fs::create_dir(&next) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && next.is_dir() => {}
            Err(source) => return Err(io("creating", &next)(source)),
        }
        dir = next;
    }
    Ok(())
}

/// Removes the directories between `file` and `root` (exclusive) that are
/// empty now.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current == root || !current.starts_with(root) || std::fs::remove_dir(current).is_err() {
            return;
        }
        if let Some(parent) = current.parent() {
            let _ = sync_dir(parent);
        }
        dir = current.parent();
    }
}

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Replaces `path` with `content` atomically: a temporary file beside it
/// (with the old file's permissions, else 0644) is written and synced, then
/// renamed over `path`, then the directory is synced. On failure `path` is
/// untouched and the temporary file removed.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), ApplyError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ApplyError::BadPath {
            path: path.display().to_string(),
            reason: "it names no file",
        });
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(TEMP_SUFFIX);
    let temp = dir.join(temp_name);
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        // Not masked by the umask: a replaced file keeps its exact
        // permissions, a new one is readable by the proxy (0644).
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(content)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("writing", &temp)(source));
    }
    if let Err(source) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(io("renaming into", path)(source));
    }
    sync_dir(dir)
}

/// Rewrites the hosts file `path` atomically with `replace` applied to its
/// current text (a missing file counts as empty); returns whether it changed.
pub fn rewrite_hosts_file(
    path: &Path,
    replace: impl FnOnce(&str) -> String,
) -> Result<bool, ApplyError> {
    let old = read_bounded(path)
        .map_err(io("reading", path))?
        .unwrap_or_default();
    let new = replace(&old);
    if new == old && path.exists() {
        return Ok(false);
    }
    write_atomic(path, new.as_bytes())?;
    Ok(true)
}
