//! Plaintext held in memory: zeroed on drop, never printed, never serialised.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::VaultError;

pub use secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};

/// A decrypted secret, returned by [`crate::Keyring::open`].
///
/// The bytes live in memory that is zeroed on drop. `Debug` prints only the length;
/// there is no `Display`, `Clone` or `Serialize`. Read it with [`Plaintext::expose`]
/// or [`Plaintext::to_str`], and do not copy it into ordinary `String`s that
/// outlive the use.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Plaintext {
        Plaintext(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, or [`VaultError::NotUtf8`].
    pub fn to_str(&self) -> Result<&str, VaultError> {
        std::str::from_utf8(&self.0).map_err(|_| VaultError::NotUtf8)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_accessors() {
        let p = Plaintext::new(Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(p.expose(), b"hunter2");
        assert_eq!(p.to_str().unwrap(), "hunter2");
        assert_eq!(p.len(), 7);
        assert!(!p.is_empty());
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted"), "{dbg}");
    }

    #[test]
    fn plaintext_not_utf8() {
        let p = Plaintext::new(Zeroizing::new(vec![0xff, 0xfe]));
        assert!(matches!(p.to_str(), Err(VaultError::NotUtf8)));
    }

    #[test]
    fn secret_string_deserializes_and_debug_is_redacted() {
        #[derive(serde::Deserialize)]
        struct Body {
            token: SecretString,
        }
        let body: Body = serde_json::from_str(r#"{"token":"s3cr3t-value"}"#).unwrap();
        assert_eq!(body.token.expose_secret(), "s3cr3t-value");
        let dbg = format!("{:?}", body.token);
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(
            dbg.contains("REDACTED") || dbg.contains("redacted"),
            "{dbg}"
        );
    }

    /// `IS_SERIALIZE` is true exactly when `T: Serialize` (inherent associated
    /// consts win over the blanket trait's default when their bounds hold).
    struct Probe<T: ?Sized>(std::marker::PhantomData<T>);
    trait NotSerialize {
        const IS_SERIALIZE: bool = false;
    }
    impl<T: ?Sized> NotSerialize for Probe<T> {}
    impl<T: ?Sized + serde::Serialize> Probe<T> {
        const IS_SERIALIZE: bool = true;
    }

    #[test]
    #[allow(clippy::assertions_on_constants)]
    fn secrets_do_not_implement_serialize() {
        // The probe itself works:
        assert!(Probe::<crate::Sealed>::IS_SERIALIZE);
        assert!(Probe::<String>::IS_SERIALIZE);
        // and secrets are not serialisable:
        assert!(!Probe::<SecretString>::IS_SERIALIZE);
        assert!(!Probe::<Plaintext>::IS_SERIALIZE);
        assert!(!Probe::<crate::MasterKey>::IS_SERIALIZE);
    }
}
