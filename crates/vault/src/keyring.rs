//! The keyring: the active master key plus previous ones, and the envelope
//! operations (seal, open, rewrap, canary).

use std::fmt;
use std::path::Path;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use zeroize::Zeroizing;

use crate::derive::DerivedKey;
use crate::envelope::{Sealed, DEK_LEN, NONCE_LEN, TAG_LEN, WRAPPED_DEK_LEN};
use crate::error::{KeyMaterialError, VaultError};
use crate::key::{KeyId, MasterKey};
use crate::keyfile;
use crate::secret::Plaintext;

/// Associated data of the canary envelope.
pub const CANARY_AAD: &str = "fleetreg/canary";

/// The constant the canary envelope holds.
const CANARY_PLAINTEXT: &[u8] = b"fleetreg vault canary v1";

/// Domain prefix of the payload's associated data; the caller's string follows.
const DATA_AAD_PREFIX: &[u8] = b"fleetreg-vault/v1/data\0";

/// Domain prefix of the wrap's associated data; key id and caller's string follow.
const WRAP_AAD_PREFIX: &[u8] = b"fleetreg-vault/v1/dek\0";

/// The active master key (seals) and previous master keys (open only).
///
/// Every envelope names the id of the key that wrapped its data key, so data sealed
/// under any key in the ring opens; [`Keyring::rewrap`] moves it to the active key.
/// `Debug` shows key ids only.
pub struct Keyring {
    active: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring with one key.
    pub fn new(active: MasterKey) -> Keyring {
        Keyring {
            active,
            previous: Vec::new(),
        }
    }

    /// A keyring from keys in order of preference: the first is active, the rest
    /// are previous keys. Fails on an empty list or a duplicate key.
    pub fn from_keys(keys: Vec<MasterKey>) -> Result<Keyring, KeyMaterialError> {
        let mut keys = keys.into_iter();
        let active = keys.next().ok_or(KeyMaterialError::Empty)?;
        let mut ring = Keyring::new(active);
        for (i, key) in keys.enumerate() {
            ring.add_previous(key)
                .map_err(|key_id| KeyMaterialError::Duplicate {
                    line: i + 2,
                    key_id,
                })?;
        }
        Ok(ring)
    }

    /// Adds a previous (open-only) key; returns its id as the error if a key with
    /// the same id is already in the ring.
    pub fn add_previous(&mut self, key: MasterKey) -> Result<(), KeyId> {
        if self.key(key.id()).is_some() {
            return Err(key.id());
        }
        self.previous.push(key);
        Ok(())
    }

    /// Reads a key file (see the crate docs for its format; the first key is active)
    /// and refuses one that group or others may access.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Keyring, VaultError> {
        let path = path.as_ref();
        let keys = keyfile::read_key_file(path)?;
        Keyring::from_keys(keys).map_err(|reason| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses keys from a value such as an environment variable: base64 keys
    /// separated by newlines or commas, the first active. `origin` names the
    /// source in errors (e.g. `environment variable FLEETREG_MASTER_KEY`).
    pub fn from_value(value: &str, origin: &str) -> Result<Keyring, VaultError> {
        keyfile::parse_keys(value.as_bytes(), b"\n,")
            .and_then(Keyring::from_keys)
            .map_err(|reason| VaultError::KeyValue {
                origin: origin.to_string(),
                reason,
            })
    }

    /// Reads the keys from environment variable `var` (format of
    /// [`Keyring::from_value`]). An unset variable is [`KeyMaterialError::Empty`].
    pub fn from_env(var: &str) -> Result<Keyring, VaultError> {
        let value = std::env::var_os(var)
            .and_then(|v| v.into_string().ok())
            .map(Zeroizing::new)
            .unwrap_or_default();
        Keyring::from_value(&value, &format!("environment variable {var}"))
    }

    /// Writes every key of the ring, active first, to a new file at `path`
    /// (mode 0600 on Unix); never overwrites an existing file.
    pub fn write_new_key_file(&self, path: impl AsRef<Path>) -> Result<(), VaultError> {
        let keys: Vec<&MasterKey> = self.keys().collect();
        keyfile::write_new_key_file_refs(path.as_ref(), &keys)
    }

    /// The active key's id: every new envelope names it.
    pub fn active_id(&self) -> KeyId {
        self.active.id()
    }

    /// Ids of all keys, active first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys().map(MasterKey::id).collect()
    }

    /// All keys, active first.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.active).chain(self.previous.iter())
    }

    fn key(&self, id: KeyId) -> Option<&MasterKey> {
        self.keys().find(|k| k.id() == id)
    }

    /// A key for `purpose` (e.g. `fleetreg/audit-log/v1`) derived with
    /// HKDF-SHA256 from the ACTIVE master key; it names that key's id. See
    /// [`Keyring::derive_keys`] to check data protected before a rotation.
    pub fn derive_key(&self, purpose: &str) -> DerivedKey {
        DerivedKey::derive(&self.active, purpose)
    }

    /// The key for `purpose` derived from every master key of the ring, active
    /// first: what was protected under a previous master key stays checkable as
    /// long as that key stays in the ring.
    pub fn derive_keys(&self, purpose: &str) -> Vec<DerivedKey> {
        self.keys()
            .map(|key| DerivedKey::derive(key, purpose))
            .collect()
    }

    /// Encrypts `plaintext` under a fresh random data key and nonce, binding it to
    /// `aad` (e.g. `cluster/{id}/kubeconfig/v3`), and wraps the data key with the
    /// active master key (the wrap also binds the master key id and `aad`).
    ///
    /// # Panics
    ///
    /// Only if `plaintext` exceeds AES-GCM's limit of 2^36 - 32 bytes (64 GiB).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Sealed {
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        OsRng.fill_bytes(dek.as_mut_slice());

        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
        ciphertext.extend_from_slice(plaintext);
        let tag = cipher(&dek)
            .encrypt_in_place_detached(&nonce, &data_aad(aad), &mut ciphertext)
            .unwrap_or_else(|_| panic!("plaintext longer than AES-GCM allows"));
        ciphertext.extend_from_slice(&tag);

        Sealed {
            key_id: self.active.id(),
            wrapped_dek: wrap_dek(&self.active, &dek, aad),
            nonce: nonce.into(),
            ciphertext,
        }
    }

    /// Decrypts an envelope sealed with `aad` under any key of the ring.
    ///
    /// Fails with [`VaultError::UnknownKeyId`] when the ring lacks the key, and with
    /// [`VaultError::AuthenticationFailed`] when the key is wrong, `aad` differs or
    /// any byte was changed.
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Plaintext, VaultError> {
        let dek = self.unwrap_dek(sealed, aad)?;
        let (body, tag) = sealed
            .ciphertext
            .split_at(sealed.ciphertext.len().saturating_sub(TAG_LEN));
        if tag.len() != TAG_LEN {
            return Err(VaultError::AuthenticationFailed);
        }
        let mut buf = Zeroizing::new(body.to_vec());
        cipher(&dek)
            .decrypt_in_place_detached(
                Nonce::from_slice(&sealed.nonce),
                &data_aad(aad),
                buf.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| VaultError::AuthenticationFailed)?;
        Ok(Plaintext::new(buf))
    }

    /// Re-wraps the data key of `sealed` under the active master key, leaving the
    /// nonce and ciphertext unchanged. The whole envelope is opened first (and the
    /// plaintext zeroed), so a rewrap succeeds only for an envelope that opens.
    pub fn rewrap(&self, sealed: &Sealed, aad: &str) -> Result<Sealed, VaultError> {
        drop(self.open(sealed, aad)?);
        let dek = self.unwrap_dek(sealed, aad)?;
        Ok(Sealed {
            key_id: self.active.id(),
            wrapped_dek: wrap_dek(&self.active, &dek, aad),
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext.clone(),
        })
    }

    /// Whether `sealed` names a key other than the active one (and so should be
    /// passed to [`Keyring::rewrap`] before that key is retired).
    pub fn needs_rewrap(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.active.id()
    }

    /// An envelope of a known constant with associated data [`CANARY_AAD`], to be
    /// stored beside the data; see [`Keyring::verify_canary`].
    pub fn canary(&self) -> Sealed {
        self.seal(CANARY_PLAINTEXT, CANARY_AAD)
    }

    /// Checks that this keyring opens a stored canary, so a server can refuse to
    /// start with a key that cannot decrypt its data.
    pub fn verify_canary(&self, sealed: &Sealed) -> Result<(), VaultError> {
        let plaintext = self.open(sealed, CANARY_AAD)?;
        if plaintext.expose() == CANARY_PLAINTEXT {
            Ok(())
        } else {
            Err(VaultError::CanaryMismatch)
        }
    }

    fn unwrap_dek(
        &self,
        sealed: &Sealed,
        aad: &str,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, VaultError> {
        let key = self.key(sealed.key_id).ok_or(VaultError::UnknownKeyId {
            key_id: sealed.key_id,
        })?;
        let (nonce, rest) = sealed.wrapped_dek.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(DEK_LEN);
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        dek.copy_from_slice(body);
        cipher(key.bytes())
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &wrap_aad(key.id(), aad),
                dek.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| VaultError::AuthenticationFailed)?;
        Ok(dek)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active.id())
            .field(
                "previous",
                &self.previous.iter().map(MasterKey::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An AES-256-GCM instance for a 32-byte key (its key schedule is zeroed on drop).
fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

/// Encrypts a data key under a master key: wrap nonce || encrypted key || tag.
fn wrap_dek(master: &MasterKey, dek: &[u8; DEK_LEN], aad: &str) -> [u8; WRAPPED_DEK_LEN] {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let mut out = [0u8; WRAPPED_DEK_LEN];
    out[..NONCE_LEN].copy_from_slice(&nonce);
    let body = &mut out[NONCE_LEN..NONCE_LEN + DEK_LEN];
    body.copy_from_slice(dek);
    match cipher(master.bytes()).encrypt_in_place_detached(
        &nonce,
        &wrap_aad(master.id(), aad),
        body,
    ) {
        Ok(tag) => out[NONCE_LEN + DEK_LEN..].copy_from_slice(&tag),
        // AES-GCM fails only above 64 GiB; never return the data key unencrypted.
        Err(_) => unreachable!("AES-GCM refused to encrypt a 32-byte data key"),
    }
    out
}

fn data_aad(aad: &str) -> Vec<u8> {
    [DATA_AAD_PREFIX, aad.as_bytes()].concat()
}

fn wrap_aad(key_id: KeyId, aad: &str) -> Vec<u8> {
    let id = key_id.to_string();
    [WRAP_AAD_PREFIX, id.as_bytes(), b"\0", aad.as_bytes()].concat()
}
