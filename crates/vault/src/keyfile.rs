//! Master key files: reading (with a permission check), creating, rotating.
//!
//! Format: one base64 key (32 bytes, standard alphabet, padding optional) per line;
//! the first key line is the active key, later lines are previous keys kept so
//! older envelopes still open. Blank lines and lines starting with `#` are ignored.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use zeroize::Zeroizing;

use crate::error::{KeyMaterialError, VaultError};
use crate::key::MasterKey;
use crate::keyring::Keyring;

/// Key files larger than this are refused (a key line is 45 bytes).
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

fn file_error(path: &Path, reason: impl Into<KeyMaterialError>) -> VaultError {
    VaultError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses keys separated by any byte of `separators`; see the module docs.
/// Entry numbers in errors are 1-based and count blank and comment entries.
pub(crate) fn parse_keys(
    text: &[u8],
    separators: &[u8],
) -> Result<Vec<MasterKey>, KeyMaterialError> {
    let mut keys: Vec<MasterKey> = Vec::new();
    for (i, entry) in text.split(|b| separators.contains(b)).enumerate() {
        let line = i + 1;
        let entry = entry.trim_ascii();
        if entry.is_empty() || entry.starts_with(b"#") {
            continue;
        }
        let entry = std::str::from_utf8(entry).map_err(|_| KeyMaterialError::NotBase64 { line })?;
        let key = MasterKey::parse_base64_line(entry, line)?;
        if keys.iter().any(|k| k.id() == key.id()) {
            return Err(KeyMaterialError::Duplicate {
                line,
                key_id: key.id(),
            });
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyMaterialError::Empty);
    }
    Ok(keys)
}

/// Refuses a key file that group or others may read or write (Unix only).
#[cfg(unix)]
fn check_permissions(file: &File) -> Result<(), KeyMaterialError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyMaterialError::InsecurePermissions { mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_file: &File) -> Result<(), KeyMaterialError> {
    Ok(())
}

/// Reads the keys of a key file, active first. Refuses (on Unix) a file whose mode
/// gives group or others any access, naming the path and the mode.
pub fn read_key_file(path: &Path) -> Result<Vec<MasterKey>, VaultError> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    check_permissions(&file).map_err(|e| file_error(path, e))?;
    let mut text = Zeroizing::new(Vec::with_capacity(4096));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| file_error(path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(file_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_KEY_FILE_LEN} bytes; not a key file"),
            ),
        ));
    }
    parse_keys(&text, b"\n").map_err(|e| file_error(path, e))
}

/// The file contents for `keys`: one standard base64 key per line, active first.
fn render(keys: &[&MasterKey]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(keys.len() * 45));
    for key in keys {
        out.extend_from_slice(key.to_base64().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Creates `path` exclusively (fails if it exists) with mode 0600 on Unix.
fn create_exclusive(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a rename or creation in `path`'s directory durable (Unix only).
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `contents` to a freshly created file and syncs it; removes the file if
/// anything fails after creating it.
fn write_created(path: &Path, mut file: File, contents: &[u8]) -> std::io::Result<()> {
    let result = file.write_all(contents).and_then(|()| file.sync_all());
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Writes `keys` (the first active) to a new key file at `path`, created with
/// `O_EXCL` and mode 0600 (Unix) and synced to disk. Never overwrites: an existing
/// `path` is [`KeyMaterialError::AlreadyExists`].
pub fn write_new_key_file(path: &Path, keys: &[MasterKey]) -> Result<(), VaultError> {
    let refs: Vec<&MasterKey> = keys.iter().collect();
    write_new_key_file_refs(path, &refs)
}

pub(crate) fn write_new_key_file_refs(path: &Path, keys: &[&MasterKey]) -> Result<(), VaultError> {
    if keys.is_empty() {
        return Err(file_error(path, KeyMaterialError::Empty));
    }
    let file = create_exclusive(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            file_error(path, KeyMaterialError::AlreadyExists)
        } else {
            file_error(path, e)
        }
    })?;
    write_created(path, file, &render(keys)).map_err(|e| file_error(path, e))?;
    sync_parent_dir(path).map_err(|e| file_error(path, e))
}

/// Rotates the key file at `path`: generates a new active key and rewrites the file
/// with it first and every existing key after it, atomically (a new 0600 file
/// beside it, synced, then renamed over). Returns the new keyring.
///
/// Existing envelopes still open (their keys are kept); seal new ones with the new
/// active key and [`Keyring::rewrap`] old ones before removing old key lines.
pub fn rotate_key_file(path: &Path) -> Result<Keyring, VaultError> {
    let old = read_key_file(path)?;
    let mut keys = Vec::with_capacity(old.len() + 1);
    keys.push(MasterKey::generate());
    keys.extend(old);
    let ring = Keyring::from_keys(keys).map_err(|e| file_error(path, e))?;

    let tmp = temp_path(path);
    let file = create_exclusive(&tmp).map_err(|e| file_error(&tmp, e))?;
    let refs: Vec<&MasterKey> = ring.keys().collect();
    write_created(&tmp, file, &render(&refs)).map_err(|e| file_error(&tmp, e))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error(path, e));
    }
    sync_parent_dir(path).map_err(|e| file_error(path, e))?;
    Ok(ring)
}

/// `.<name>.tmp-<random>` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "master-key".to_string());
    path.with_file_name(format!(".{name}.tmp-{:016x}", OsRng.next_u64()))
}
