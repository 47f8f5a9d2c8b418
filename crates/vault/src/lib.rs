//! `fleetreg-vault`: envelope encryption of credentials.
//!
//! Every secret (a kubeconfig, a token) is encrypted under its own random 256-bit
//! data key (DEK) with AES-256-GCM and a random 96-bit nonce. The DEK is then
//! encrypted ("wrapped"), again with AES-256-GCM, under a master key (the
//! key-encryption key, KEK) that never leaves this process. Only the sealed form
//! reaches the store. Plaintext lives in [`Plaintext`] / [`SecretString`], zeroed on
//! drop and never printed.
//!
//! ```
//! use fleetreg_vault::{Keyring, MasterKey};
//!
//! let ring = Keyring::new(MasterKey::generate());
//! let aad = "cluster/0190c3b6-7d3c-7000-8000-000000000001/kubeconfig/v3";
//! let sealed = ring.seal(b"apiVersion: v1 ...", aad);
//! let stored = sealed.to_string(); // v1.{key_id}.{wrapped_dek}.{nonce}.{ciphertext}
//!
//! let opened = ring.open(&stored.parse()?, aad)?;
//! assert_eq!(opened.expose(), b"apiVersion: v1 ...");
//! // Moved to another record or field, it no longer opens:
//! assert!(ring.open(&stored.parse()?, "cluster/other/kubeconfig/v3").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Envelope format
//!
//! [`Sealed`] prints and parses (and serialises with serde) as one ASCII string:
//!
//! ```text
//! v1.{key_id}.{b64url wrapped_dek}.{b64url nonce}.{b64url ciphertext}
//! ```
//!
//! - `v1`: the format version.
//! - `key_id`: the master key that wrapped the DEK, 16 lowercase hex digits: the first
//!   8 bytes of `SHA-256("fleetreg-master-key" || key)` (a plain hash, not HKDF).
//! - `wrapped_dek` (60 bytes): wrap nonce (12) || DEK encrypted under the master key
//!   (32) || tag (16). Its associated data is
//!   `"fleetreg-vault/v1/dek\0" || key_id || "\0" || aad`.
//! - `nonce` (12 bytes): the payload's nonce.
//! - `ciphertext`: the payload encrypted under the DEK || tag (16). Its associated
//!   data is `"fleetreg-vault/v1/data\0" || aad`.
//!
//! `b64url` is the URL-safe alphabet without padding, canonical only, so any change to
//! the string either fails to parse or fails to authenticate. `aad` is the caller's
//! context string (e.g. `cluster/{id}/kubeconfig/v3`): opening with a different one
//! fails with [`VaultError::AuthenticationFailed`]. The envelope is not secret.
//!
//! # Master keys and the key file
//!
//! A [`Keyring`] holds the active master key (used to seal) and any previous keys
//! (used only to open). It is loaded from a key file ([`Keyring::from_file`]) or an
//! environment variable ([`Keyring::from_env`]):
//!
//! - Key file: one key per line, each the standard base64 (padding optional) of 32
//!   random bytes; **the first key line is the active key**, the others are previous
//!   keys. Surrounding whitespace, blank lines and lines starting with `#` are ignored.
//!   On Unix the file is refused unless its mode denies group and others any access
//!   (`0600` or `0400`); the error names the path and the mode.
//! - Environment variable: the same keys separated by newlines or commas, first active.
//!
//! [`MasterKey::write_new_key_file`] creates a key file with a fresh key (`O_EXCL`,
//! mode 0600, synced); it never overwrites an existing file.
//!
//! # Rotating the master key without downtime
//!
//! 1. [`keyfile::rotate_key_file`] puts a new key on the first line, keeping the old
//!    keys after it (atomically: new 0600 file, then rename; comment lines are not
//!    kept). Restarted or reloaded servers seal with the new key and still open
//!    everything.
//! 2. For each stored envelope with [`Keyring::needs_rewrap`], store
//!    [`Keyring::rewrap`]'s result: only the wrapped DEK changes.
//! 3. When nothing names the old key (and backups made with it have expired), delete
//!    its line.
//!
//! Keys for other purposes (the audit log's MAC key) are derived from a master key
//! with HKDF-SHA256 ([`Keyring::derive_key`], [`Keyring::derive_keys`]) and name
//! the master key they came from: keep a previous key in the ring while anything
//! protected with a key derived from it must still be checked.
//!
//! Store a [`Keyring::canary`] beside the data and call [`Keyring::verify_canary`] at
//! start-up, so a server given the wrong key refuses to start instead of failing on
//! every credential.
//!
//! # Backing up the master key
//!
//! **Losing the master key loses every credential sealed under it**: there is no
//! recovery. Back the key file up when it is created and after every rotation, to a
//! place separate from the database backups (a password manager, a secrets manager,
//! or an offline copy in a safe), since whoever holds both the database and the key
//! can read every credential. Check a backup by loading it and verifying the canary.
//! Never commit the key file, put it in an image, or pass it on a command line.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod derive;
mod encoding;
pub mod envelope;
mod error;
mod key;
pub mod keyfile;
mod keyring;
mod secret;

pub use derive::{DerivedKey, DERIVED_KEY_LEN};
pub use envelope::{EnvelopeError, Sealed};
pub use error::{KeyMaterialError, VaultError};
pub use key::{KeyId, KeyIdParseError, MasterKey, MASTER_KEY_LEN};
pub use keyring::{Keyring, CANARY_AAD};
pub use secret::{ExposeSecret, Plaintext, SecretBox, SecretSlice, SecretString};
