//! The sealed envelope and its compact string form
//! `v1.{key_id}.{b64url wrapped_dek}.{b64url nonce}.{b64url ciphertext}`.

use std::fmt;
use std::str::FromStr;

use base64::Engine;

use crate::encoding::ENVELOPE_B64;
use crate::key::KeyId;

/// Version tag of the only envelope format so far.
pub const VERSION: &str = "v1";

/// Length of an AES-GCM nonce (96 bits).
pub const NONCE_LEN: usize = 12;

/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// Length of a data key (AES-256).
pub const DEK_LEN: usize = 32;

/// Length of a wrapped data key: wrap nonce, encrypted data key, tag.
pub const WRAPPED_DEK_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

/// The parts of an envelope, named in parse errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The version tag.
    Version,
    /// The master key id.
    KeyId,
    /// The wrapped data key.
    WrappedDek,
    /// The nonce of the payload.
    Nonce,
    /// The encrypted payload with its tag.
    Ciphertext,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Version => "version",
            Part::KeyId => "key id",
            Part::WrappedDek => "wrapped data key",
            Part::Nonce => "nonce",
            Part::Ciphertext => "ciphertext",
        })
    }
}

/// Why a string is not an envelope. Never echoes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not five `.`-separated parts.
    #[error("expected 5 '.'-separated parts, found {found}")]
    PartCount {
        /// How many parts there were.
        found: usize,
    },
    /// The first part is not a known version.
    #[error("unsupported envelope version (expected {VERSION})")]
    UnsupportedVersion,
    /// The key id is not 16 lowercase hex digits.
    #[error("the key id is not 16 lowercase hex digits")]
    BadKeyId,
    /// A part is not canonical unpadded URL-safe base64.
    #[error("the {part} is not canonical unpadded URL-safe base64")]
    BadBase64 {
        /// Which part.
        part: Part,
    },
    /// A part decodes to the wrong number of bytes.
    #[error("the {part} is {found} bytes, expected {expected}")]
    BadLength {
        /// Which part.
        part: Part,
        /// What it should be (a minimum for the ciphertext).
        expected: usize,
        /// What it is.
        found: usize,
    },
}

/// A sealed secret: a data key wrapped by a master key, and the secret encrypted
/// under that data key.
///
/// Safe to store, log and show: it holds no plaintext and no usable key. Its string
/// form (`Display`/`FromStr`, and serde as a string) is
/// `v1.{key_id}.{b64url wrapped_dek}.{b64url nonce}.{b64url ciphertext}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub(crate) key_id: KeyId,
    /// wrap nonce (12) || encrypted data key (32) || tag (16)
    pub(crate) wrapped_dek: [u8; WRAPPED_DEK_LEN],
    pub(crate) nonce: [u8; NONCE_LEN],
    /// encrypted payload || tag (16)
    pub(crate) ciphertext: Vec<u8>,
}

impl Sealed {
    /// The id of the master key that wrapped the data key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The wrapped data key (its own nonce, the encrypted key, the tag).
    pub fn wrapped_dek(&self) -> &[u8] {
        &self.wrapped_dek
    }

    /// The nonce of the payload.
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// The encrypted payload followed by its 16-byte tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Length of the encrypted payload (the plaintext's length).
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(TAG_LEN)
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION}.{}.{}.{}.{}",
            self.key_id,
            ENVELOPE_B64.encode(self.wrapped_dek),
            ENVELOPE_B64.encode(self.nonce),
            ENVELOPE_B64.encode(&self.ciphertext),
        )
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

fn decode_part(text: &str, part: Part) -> Result<Vec<u8>, EnvelopeError> {
    ENVELOPE_B64
        .decode(text)
        .map_err(|_| EnvelopeError::BadBase64 { part })
}

fn decode_fixed<const N: usize>(text: &str, part: Part) -> Result<[u8; N], EnvelopeError> {
    let bytes = decode_part(text, part)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| EnvelopeError::BadLength {
        part,
        expected: N,
        found: bytes.len(),
    })
}

impl FromStr for Sealed {
    type Err = EnvelopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        let [version, key_id, wrapped_dek, nonce, ciphertext] = parts.as_slice() else {
            return Err(EnvelopeError::PartCount { found: parts.len() });
        };
        if *version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion);
        }
        let key_id = key_id.parse().map_err(|_| EnvelopeError::BadKeyId)?;
        let wrapped_dek = decode_fixed::<WRAPPED_DEK_LEN>(wrapped_dek, Part::WrappedDek)?;
        let nonce = decode_fixed::<NONCE_LEN>(nonce, Part::Nonce)?;
        let ciphertext = decode_part(ciphertext, Part::Ciphertext)?;
        if ciphertext.len() < TAG_LEN {
            return Err(EnvelopeError::BadLength {
                part: Part::Ciphertext,
                expected: TAG_LEN,
                found: ciphertext.len(),
            });
        }
        Ok(Sealed {
            key_id,
            wrapped_dek,
            nonce,
            ciphertext,
        })
    }
}

impl serde::Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sealed {
        Sealed {
            key_id: "0011223344556677".parse().unwrap(),
            wrapped_dek: [1u8; WRAPPED_DEK_LEN],
            nonce: [2u8; NONCE_LEN],
            ciphertext: vec![3u8; TAG_LEN + 5],
        }
    }

    #[test]
    fn string_form_round_trips() {
        let s = sample();
        let text = s.to_string();
        assert!(text.starts_with("v1.0011223344556677."));
        assert_eq!(text.split('.').count(), 5);
        assert!(!text.contains('='), "no padding: {text}");
        assert_eq!(text.parse::<Sealed>(), Ok(s));
    }

    #[test]
    fn serde_is_the_string_form() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Sealed>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Sealed>("\"v2.x\"").is_err());
    }

    #[test]
    fn parse_errors_are_typed() {
        let good = sample().to_string();
        let parts: Vec<&str> = good.split('.').collect();
        let with = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            p.join(".")
        };
        assert_eq!(
            "".parse::<Sealed>(),
            Err(EnvelopeError::PartCount { found: 1 })
        );
        assert_eq!(
            format!("{good}.x").parse::<Sealed>(),
            Err(EnvelopeError::PartCount { found: 6 })
        );
        assert_eq!(
            with(0, "v2").parse::<Sealed>(),
            Err(EnvelopeError::UnsupportedVersion)
        );
        assert_eq!(
            with(1, "00112233445566").parse::<Sealed>(),
            Err(EnvelopeError::BadKeyId)
        );
        assert_eq!(
            with(1, "00112233445566FF").parse::<Sealed>(),
            Err(EnvelopeError::BadKeyId)
        );
        assert_eq!(
            with(2, "!!").parse::<Sealed>(),
            Err(EnvelopeError::BadBase64 {
                part: Part::WrappedDek
            })
        );
        assert_eq!(
            with(3, "AAAA").parse::<Sealed>(),
            Err(EnvelopeError::BadLength {
                part: Part::Nonce,
                expected: NONCE_LEN,
                found: 3
            })
        );
        assert_eq!(
            with(4, "AAAA").parse::<Sealed>(),
            Err(EnvelopeError::BadLength {
                part: Part::Ciphertext,
                expected: TAG_LEN,
                found: 3
            })
        );
        // Padded base64 is not canonical here.
        let padded = format!("{}=", parts[4]);
        assert!(with(4, &padded).parse::<Sealed>().is_err());
    }

    #[test]
    fn debug_shows_no_bytes() {
        let dbg = format!("{:?}", sample());
        assert!(dbg.contains("0011223344556677"));
        assert!(!dbg.contains("[3, 3"), "{dbg}");
    }
}
