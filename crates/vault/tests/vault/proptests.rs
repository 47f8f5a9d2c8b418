//! Property tests: round trip, AAD binding, tamper detection, no plaintext leak.

use fleetreg_vault::{Keyring, MasterKey, Sealed, VaultError};
use proptest::prelude::*;
use std::sync::OnceLock;

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let mut ring = Keyring::new(MasterKey::generate());
        ring.add_previous(MasterKey::generate()).unwrap();
        ring
    })
}

/// The characters that can appear in an envelope string.
const ENVELOPE_CHARS: &[u8] =
    b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ-_.=+/";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), aad in ".{0,80}") {
        let sealed = ring().seal(&plaintext, &aad);
        let reparsed: Sealed = sealed.to_string().parse().unwrap();
        prop_assert_eq!(&reparsed, &sealed);
        let opened = ring().open(&reparsed, &aad).unwrap();
        prop_assert_eq!(opened.expose(), plaintext.as_slice());
        prop_assert_eq!(sealed.plaintext_len(), plaintext.len());
    }

    #[test]
    fn different_aad_fails(plaintext in proptest::collection::vec(any::<u8>(), 0..256),
                           aad in ".{0,40}", other in ".{0,40}") {
        prop_assume!(aad != other);
        let sealed = ring().seal(&plaintext, &aad);
        prop_assert!(matches!(ring().open(&sealed, &other), Err(VaultError::AuthenticationFailed)));
    }

    /// Any change to any character of the string form is refused: it fails to
    /// parse, names an unknown key, or fails to authenticate.
    #[test]
    fn tampering_any_character_fails(plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                     pos in any::<prop::sample::Index>(),
                                     replacement in prop::sample::select(ENVELOPE_CHARS)) {
        let aad = "cluster/1/kubeconfig/v1";
        let text = ring().seal(&plaintext, aad).to_string();
        let i = pos.index(text.len());
        prop_assume!(text.as_bytes()[i] != replacement);
        let mut bytes = text.into_bytes();
        bytes[i] = replacement;
        let tampered = String::from_utf8(bytes).unwrap();
        if let Ok(sealed) = tampered.parse::<Sealed>() {
            let result = ring().open(&sealed, aad);
            prop_assert!(
                matches!(result, Err(VaultError::AuthenticationFailed) | Err(VaultError::UnknownKeyId { .. })),
                "tampered envelope opened: {:?}", result.map(|p| p.len())
            );
        }
    }

    /// Flipping any bit of any decoded part (key id, wrapped key, nonce,
    /// ciphertext) is refused.
    #[test]
    fn flipping_any_bit_of_any_part_fails(plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                          part in 1usize..5, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let aad = "cluster/2/token/v7";
        let text = ring().seal(&plaintext, aad).to_string();
        let mut parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if part == 1 {
            let mut id = u64::from_str_radix(&parts[1], 16).unwrap().to_be_bytes();
            let i = pos.index(id.len());
            id[i] ^= 1 << bit;
            parts[1] = id.iter().map(|b| format!("{b:02x}")).collect();
        } else {
            let mut bytes = b64.decode(&parts[part]).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            parts[part] = b64.encode(bytes);
        }
        let sealed: Sealed = parts.join(".").parse().unwrap();
        let result = ring().open(&sealed, aad);
        prop_assert!(
            matches!(result, Err(VaultError::AuthenticationFailed) | Err(VaultError::UnknownKeyId { .. })),
            "bit-flipped envelope opened: {:?}", result.map(|p| p.len())
        );
        prop_assert!(ring().rewrap(&sealed, aad).is_err());
    }

    #[test]
    fn envelope_never_contains_plaintext(plaintext in "[a-zA-Z0-9]{12,64}") {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let text = ring().seal(plaintext.as_bytes(), "x").to_string();
        prop_assert!(!text.contains(&plaintext));
        // Every base64 rendering of the plaintext starts with the same 16 chars
        // (12 bytes encode to 16 chars with no padding).
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(plaintext.as_bytes());
            prop_assert!(!text.contains(&encoded[..16]), "{} contains base64 of the plaintext", text);
        }
    }

    #[test]
    fn rewrap_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..256), aad in ".{0,40}") {
        let old = ring();
        let sealed = old.seal(&plaintext, &aad);
        // A keyring in which the old active key is now previous.
        let rotated = rotated_ring();
        prop_assert!(rotated.needs_rewrap(&sealed));
        let rewrapped = rotated.rewrap(&sealed, &aad).unwrap();
        prop_assert_eq!(rewrapped.key_id(), rotated.active_id());
        prop_assert_eq!(rewrapped.ciphertext(), sealed.ciphertext());
        let opened = rotated.open(&rewrapped, &aad).unwrap();
        prop_assert_eq!(opened.expose(), plaintext.as_slice());
    }
}

fn rotated_ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        ring().write_new_key_file(&path).unwrap();
        fleetreg_vault::keyfile::rotate_key_file(&path).unwrap()
    })
}
