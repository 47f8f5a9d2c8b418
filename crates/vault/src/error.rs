//! Errors of the vault. No message ever contains plaintext or key material.

use std::path::PathBuf;

use crate::envelope::EnvelopeError;
use crate::key::KeyId;

/// Everything that can go wrong in the vault.
///
/// Messages name key ids, paths, line numbers and lengths only: never plaintext,
/// key bytes or their encodings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The envelope was sealed under a master key this keyring does not hold.
    #[error("no master key with id {key_id} in the keyring (was the key file replaced or a previous key dropped?)")]
    UnknownKeyId {
        /// The key id the envelope names.
        key_id: KeyId,
    },

    /// AES-GCM authentication failed: the key is wrong, the associated data differs
    /// (the ciphertext was moved to another record or field), or the envelope was
    /// tampered with.
    #[error("authentication failed: wrong master key, different associated data, or a tampered envelope")]
    AuthenticationFailed,

    /// The envelope string is not a well-formed `v1` envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] EnvelopeError),

    /// A master key file could not be read, written or parsed.
    #[error("master key file {}: {reason}", path.display())]
    KeyFile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: KeyMaterialError,
    },

    /// Master key material given as a value (e.g. an environment variable) is invalid.
    #[error("master key from {origin}: {reason}")]
    KeyValue {
        /// Where the value came from, e.g. `environment variable FLEETREG_MASTER_KEY`.
        origin: String,
        /// What is wrong with it.
        reason: KeyMaterialError,
    },

    /// The decrypted plaintext is not UTF-8 (from [`crate::Plaintext::to_str`]).
    #[error("plaintext is not valid UTF-8")]
    NotUtf8,

    /// The canary opened but did not hold the expected constant.
    #[error("the canary envelope opened but holds an unexpected value")]
    CanaryMismatch,
}

/// What is wrong with master key material (a key file or a key value).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyMaterialError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),

    /// The file may be read or written by group or others.
    #[error("has mode {mode:04o}, which lets group or others access it; it must be 0600 or stricter (chmod 600 the file)")]
    InsecurePermissions {
        /// The permission bits found (`st_mode & 0o7777`).
        mode: u32,
    },

    /// The file already exists; key files are never overwritten.
    #[error("already exists; refusing to overwrite a master key")]
    AlreadyExists,

    /// No key in the file or value.
    #[error("contains no key")]
    Empty,

    /// A key line is not base64.
    #[error("line {line}: not base64")]
    NotBase64 {
        /// 1-based line (or, for a value, entry) number.
        line: usize,
    },

    /// A key line does not decode to 32 bytes.
    #[error("line {line}: a master key is 32 bytes, found {found}")]
    WrongLength {
        /// 1-based line (or entry) number.
        line: usize,
        /// The decoded length.
        found: usize,
    },

    /// The same key appears twice.
    #[error("line {line}: duplicate of key {key_id}")]
    Duplicate {
        /// 1-based line (or entry) number of the second occurrence.
        line: usize,
        /// The id of the duplicated key.
        key_id: KeyId,
    },
}
