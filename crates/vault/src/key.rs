//! Master keys (key-encryption keys) and their ids.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::encoding::{KEY_B64, KEY_B64_LENIENT};
use crate::error::KeyMaterialError;

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// Domain-separation prefix hashed before the key bytes to derive a [`KeyId`].
const KEY_ID_DOMAIN: &[u8] = b"fleetreg-master-key";

/// The public id of a master key: the first 8 bytes of
/// `SHA-256("fleetreg-master-key" || key)`, shown as 16 lowercase hex digits.
///
/// It names the key in envelopes and errors without revealing it (a truncated hash
/// of a 256-bit random key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// Length of the textual form (16 lowercase hex digits).
    pub const STR_LEN: usize = 16;

    /// The raw 8 bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A string is not a key id (exactly 16 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 16 lowercase hex digits")]
pub struct KeyIdParseError;

impl FromStr for KeyId {
    type Err = KeyIdParseError;

    /// Parses exactly 16 lowercase hex digits (the canonical form only, so that
    /// every textual change to an envelope changes what it means).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != Self::STR_LEN {
            return Err(KeyIdParseError);
        }
        let mut out = [0u8; 8];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(KeyId(out))
    }
}

fn hex_digit(c: u8) -> Result<u8, KeyIdParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(KeyIdParseError),
    }
}

/// A 256-bit master key (key-encryption key) that wraps the per-secret data keys.
///
/// The bytes are zeroed on drop; `Debug` shows only the [`KeyId`]. There is no
/// `Display`, `Clone` or serde implementation: a key leaves memory only through
/// [`MasterKey::to_base64`] (for writing a key file).
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_LEN]>,
    id: KeyId,
}

impl MasterKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        MasterKey::from_zeroizing(bytes)
    }

    /// A key from raw bytes. The caller should zero its own copy.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; MASTER_KEY_LEN]>) -> MasterKey {
        let mut hasher = Sha256::new();
        hasher.update(KEY_ID_DOMAIN);
        hasher.update(bytes.as_slice());
        let digest = hasher.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        MasterKey {
            bytes,
            id: KeyId(id),
        }
    }

    /// Parses one key from base64 (standard alphabet, padding optional, surrounding
    /// whitespace ignored). `line` is only used in the error.
    pub(crate) fn parse_base64_line(
        text: &str,
        line: usize,
    ) -> Result<MasterKey, KeyMaterialError> {
        let mut buf = Zeroizing::new([0u8; MASTER_KEY_LEN + 3]);
        let n = KEY_B64_LENIENT
            .decode_slice(text.trim().as_bytes(), buf.as_mut_slice())
            .map_err(|e| match e {
                base64::DecodeSliceError::OutputSliceTooSmall => KeyMaterialError::WrongLength {
                    line,
                    found: base64::decoded_len_estimate(text.trim().len()),
                },
                base64::DecodeSliceError::DecodeError(_) => KeyMaterialError::NotBase64 { line },
            })?;
        if n != MASTER_KEY_LEN {
            return Err(KeyMaterialError::WrongLength { line, found: n });
        }
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        bytes.copy_from_slice(&buf[..MASTER_KEY_LEN]);
        Ok(MasterKey::from_zeroizing(bytes))
    }

    /// Parses a key from base64 (standard alphabet, padding optional, surrounding
    /// whitespace ignored), e.g. the value of an environment variable.
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyMaterialError> {
        MasterKey::parse_base64_line(text, 1)
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key as standard padded base64 (the key file format), in memory that is
    /// zeroed on drop. Handle with care: this is the secret itself.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(KEY_B64.encode(self.bytes.as_slice()))
    }

    /// The raw key bytes, for the AEAD.
    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }

    /// Generates a new key and writes it to a new file at `path` (mode 0600 on
    /// Unix). Never overwrites: fails with [`KeyMaterialError::AlreadyExists`] if
    /// `path` exists. See [`crate::keyfile::write_new_key_file`].
    pub fn write_new_key_file(
        path: impl AsRef<std::path::Path>,
    ) -> Result<MasterKey, crate::VaultError> {
        let key = MasterKey::generate();
        crate::keyfile::write_new_key_file(path.as_ref(), std::slice::from_ref(&key))?;
        Ok(key)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &format_args!("<redacted>"))
            .finish()
    }
}

impl PartialEq for MasterKey {
    /// Keys are equal when their ids are (a 64-bit hash; avoids comparing secret
    /// bytes in variable time).
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for MasterKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_truncated_domain_separated_sha256() {
        let key = MasterKey::from_bytes([7u8; 32]);
        let mut h = Sha256::new();
        h.update(b"fleetreg-master-key");
        h.update([7u8; 32]);
        let d = h.finalize();
        let expected: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.id().to_string(), expected);
        assert_eq!(key.id().to_string().len(), KeyId::STR_LEN);
    }

    #[test]
    fn key_id_parse_round_trips_and_is_strict() {
        let id = MasterKey::generate().id();
        assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
        assert!("0123456789abcde".parse::<KeyId>().is_err());
        assert!("0123456789abcdef0".parse::<KeyId>().is_err());
        assert!("0123456789abcdeg".parse::<KeyId>().is_err());
        assert!("0123456789ABCDEF".parse::<KeyId>().is_err());
        assert_eq!(
            "0123456789abcdef".parse::<KeyId>().map(|k| k.to_string()),
            Ok("0123456789abcdef".to_string())
        );
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(MasterKey::generate().id(), MasterKey::generate().id());
    }

    #[test]
    fn base64_round_trip_with_and_without_padding_and_whitespace() {
        let key = MasterKey::generate();
        let b64 = key.to_base64();
        assert_eq!(b64.len(), 44);
        assert_eq!(
            MasterKey::from_base64(&b64).map(|k| k.id()).ok(),
            Some(key.id())
        );
        let padded = format!("  {}\n", b64.as_str());
        assert_eq!(
            MasterKey::from_base64(&padded).map(|k| k.id()).ok(),
            Some(key.id())
        );
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(
            MasterKey::from_base64(unpadded).map(|k| k.id()).ok(),
            Some(key.id())
        );
    }

    #[test]
    fn base64_rejects_wrong_length_and_garbage() {
        assert!(matches!(
            MasterKey::from_base64("AAAA"),
            Err(KeyMaterialError::WrongLength { found: 3, .. })
        ));
        let long = KEY_B64.encode([1u8; 48]);
        assert!(matches!(
            MasterKey::from_base64(&long),
            Err(KeyMaterialError::WrongLength { .. })
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64 at all!"),
            Err(KeyMaterialError::NotBase64 { .. })
        ));
        assert!(matches!(
            MasterKey::from_base64(""),
            Err(KeyMaterialError::WrongLength { found: 0, .. })
        ));
    }
}
