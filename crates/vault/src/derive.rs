//! Purpose-bound keys derived from master keys (HKDF-SHA256), e.g. the audit
//! log's MAC key, so one master key serves several uses without any two sharing
//! key material.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::key::{KeyId, MasterKey};

/// Length of a derived key in bytes.
pub const DERIVED_KEY_LEN: usize = 32;

/// HKDF salt: fixed and public, it separates fleetreg's derivations from any
/// other use of the same key bytes.
const DERIVE_SALT: &[u8] = b"fleetreg-vault/v1/derive";

/// A key derived from one master key for one purpose.
///
/// It names the master key it came from ([`DerivedKey::key_id`]), so data
/// protected with it can say which master key is needed to check it after the
/// master key was rotated. Bytes are zeroed on drop; `Debug` shows ids only.
pub struct DerivedKey {
    key_id: KeyId,
    bytes: Zeroizing<[u8; DERIVED_KEY_LEN]>,
}

impl DerivedKey {
    /// `HKDF-SHA256(salt = "fleetreg-vault/v1/derive", ikm = master key,
    /// info = purpose)`, 32 bytes.
    pub(crate) fn derive(master: &MasterKey, purpose: &str) -> DerivedKey {
        let hkdf = Hkdf::<Sha256>::new(Some(DERIVE_SALT), master.bytes());
        let mut bytes = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        if hkdf
            .expand(purpose.as_bytes(), bytes.as_mut_slice())
            .is_err()
        {
            unreachable!("HKDF-SHA256 refused a 32-byte output");
        }
        DerivedKey {
            key_id: master.id(),
            bytes,
        }
    }

    /// The id of the master key this was derived from.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The key bytes. Handle with care: this is a secret.
    pub fn expose(&self) -> &[u8; DERIVED_KEY_LEN] {
        &self.bytes
    }

    /// HMAC-SHA256 of `data` under this key (e.g. the stored form of API tokens,
    /// so the database alone cannot confirm a guessed token).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        use hkdf::hmac::{Mac, SimpleHmac};
        // HMAC takes keys of any length, so this cannot fail.
        let Ok(mut mac) = SimpleHmac::<Sha256>::new_from_slice(self.bytes.as_slice()) else {
            unreachable!("HMAC-SHA256 refused a 32-byte key");
        };
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedKey")
            .field("key_id", &self.key_id)
            .field("bytes", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_purpose_bound() {
        let key = MasterKey::from_bytes([9u8; 32]);
        let a = DerivedKey::derive(&key, "fleetreg/audit-log/v1");
        let b = DerivedKey::derive(&key, "fleetreg/audit-log/v1");
        let c = DerivedKey::derive(&key, "something-else");
        assert_eq!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert_ne!(a.expose(), &[9u8; 32], "not the master key itself");
        assert_eq!(a.key_id(), key.id());
        let other = DerivedKey::derive(&MasterKey::from_bytes([8u8; 32]), "fleetreg/audit-log/v1");
        assert_ne!(a.expose(), other.expose());
        assert!(!format!("{a:?}").contains("9, 9"));
    }

    #[test]
    fn mac_is_keyed() {
        let a = DerivedKey::derive(&MasterKey::from_bytes([9u8; 32]), "p");
        let b = DerivedKey::derive(&MasterKey::from_bytes([8u8; 32]), "p");
        assert_eq!(a.mac(b"x"), a.mac(b"x"));
        assert_ne!(a.mac(b"x"), a.mac(b"y"));
        assert_ne!(a.mac(b"x"), b.mac(b"x"));
    }

    #[test]
    fn matches_rfc5869_construction() {
        // HKDF-Extract then Expand with one block: T(1) = HMAC(PRK, info || 0x01).
        use hkdf::hmac::{Mac, SimpleHmac};
        let key = MasterKey::from_bytes([1u8; 32]);
        let mut extract = SimpleHmac::<Sha256>::new_from_slice(DERIVE_SALT).unwrap();
        extract.update(&[1u8; 32]);
        let prk = extract.finalize().into_bytes();
        let mut expand = SimpleHmac::<Sha256>::new_from_slice(&prk).unwrap();
        expand.update(b"purpose");
        expand.update(&[1]);
        let t1 = expand.finalize().into_bytes();
        assert_eq!(
            DerivedKey::derive(&key, "purpose").expose().as_slice(),
            t1.as_slice()
        );
    }
}
