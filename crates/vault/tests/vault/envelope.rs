//! Sealing, opening, rotation and redaction through the public API.

use base64::Engine as _;
use fleetreg_vault::{
    EnvelopeError, Keyring, MasterKey, Plaintext, Sealed, VaultError, CANARY_AAD,
};

const AAD: &str = "cluster/0190c3b6-7d3c-7000-8000-000000000001/kubeconfig/v3";

fn ring() -> Keyring {
    Keyring::new(MasterKey::generate())
}

fn b64_forms(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

fn hex_forms(bytes: &[u8]) -> Vec<String> {
    let lower: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![lower.to_uppercase(), lower]
}

/// Every printable form of `bytes` that a careless `Debug` might produce.
fn forbidden_forms(bytes: &[u8]) -> Vec<String> {
    let mut forms = b64_forms(bytes);
    forms.extend(hex_forms(bytes));
    forms.push(format!("{bytes:?}"));
    // A prefix is enough to leak: also look for the first 8 bytes.
    forms.extend(hex_forms(&bytes[..8]));
    forms.push(
        format!("{:?}", &bytes[..8])
            .trim_end_matches(']')
            .to_string(),
    );
    forms
}

fn assert_no_leak(text: &str, secret: &[u8]) {
    for form in forbidden_forms(secret) {
        assert!(!text.contains(&form), "{text:?} contains {form:?}");
    }
}

#[test]
fn round_trip() {
    let ring = ring();
    let sealed = ring.seal(b"kubeconfig bytes", AAD);
    assert_eq!(sealed.key_id(), ring.active_id());
    let parsed: Sealed = sealed.to_string().parse().unwrap();
    assert_eq!(parsed, sealed);
    let opened = ring.open(&parsed, AAD).unwrap();
    assert_eq!(opened.expose(), b"kubeconfig bytes");
    assert_eq!(opened.to_str().unwrap(), "kubeconfig bytes");
}

#[test]
fn empty_plaintext_round_trips() {
    let ring = ring();
    let sealed = ring.seal(b"", "");
    assert_eq!(sealed.plaintext_len(), 0);
    assert!(ring.open(&sealed, "").unwrap().is_empty());
}

#[test]
fn wrong_aad_fails() {
    let ring = ring();
    let sealed = ring.seal(b"secret", "cluster/a/kubeconfig/v1");
    for other in [
        "cluster/b/kubeconfig/v1",
        "cluster/a/kubeconfig/v2",
        "cluster/a/token/v1",
        "",
        "cluster/a/kubeconfig/v1\0",
    ] {
        assert!(
            matches!(
                ring.open(&sealed, other),
                Err(VaultError::AuthenticationFailed)
            ),
            "opened with {other:?}"
        );
    }
}

#[test]
fn other_master_key_with_same_id_string_fails() {
    // An envelope relabelled with another key's id fails to authenticate.
    let a = ring();
    let b = ring();
    let sealed = a.seal(b"secret", AAD);
    let relabelled =
        sealed
            .to_string()
            .replacen(&a.active_id().to_string(), &b.active_id().to_string(), 1);
    let relabelled: Sealed = relabelled.parse().unwrap();
    assert!(matches!(
        b.open(&relabelled, AAD),
        Err(VaultError::AuthenticationFailed)
    ));
}

#[test]
fn each_seal_uses_fresh_dek_and_nonce() {
    let ring = ring();
    let one = ring.seal(b"same plaintext", AAD);
    let two = ring.seal(b"same plaintext", AAD);
    assert_ne!(one.nonce(), two.nonce());
    assert_ne!(
        one.wrapped_dek()[..12],
        two.wrapped_dek()[..12],
        "wrap nonce reused"
    );
    assert_ne!(one.wrapped_dek(), two.wrapped_dek());
    assert_ne!(one.ciphertext(), two.ciphertext());
    assert_ne!(one.to_string(), two.to_string());
    // Swapping the wrapped data keys proves the data keys differ: each envelope's
    // ciphertext only opens under its own data key.
    let mixed: Sealed = {
        let a = one.to_string();
        let b = two.to_string();
        let pa: Vec<&str> = a.split('.').collect();
        let pb: Vec<&str> = b.split('.').collect();
        [pa[0], pa[1], pb[2], pa[3], pa[4]]
            .join(".")
            .parse()
            .unwrap()
    };
    assert!(matches!(
        ring.open(&mixed, AAD),
        Err(VaultError::AuthenticationFailed)
    ));
}

#[test]
fn unknown_key_id_is_named() {
    let a = ring();
    let b = ring();
    let sealed = a.seal(b"secret", AAD);
    let err = b.open(&sealed, AAD).unwrap_err();
    match &err {
        VaultError::UnknownKeyId { key_id } => assert_eq!(*key_id, a.active_id()),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains(&a.active_id().to_string()),
        "{err}"
    );
    assert!(matches!(
        b.rewrap(&sealed, AAD),
        Err(VaultError::UnknownKeyId { .. })
    ));
}

/// A second handle on the same key (keys are deliberately not `Clone`).
fn copy(key: &MasterKey) -> MasterKey {
    MasterKey::from_base64(&key.to_base64()).unwrap()
}

#[test]
fn rotation_opens_old_and_rewrap_moves_to_active() {
    let old_key = MasterKey::generate();
    let old_ring = Keyring::new(copy(&old_key));
    let sealed = old_ring.seal(b"long-lived token", AAD);

    // rotate: a new active key, the old one kept as previous
    let new_key = MasterKey::generate();
    let ring = Keyring::from_keys(vec![copy(&new_key), copy(&old_key)]).unwrap();
    assert_eq!(ring.active_id(), new_key.id());
    assert_eq!(ring.key_ids(), vec![new_key.id(), old_key.id()]);

    assert!(ring.needs_rewrap(&sealed));
    assert_eq!(
        ring.open(&sealed, AAD).unwrap().expose(),
        b"long-lived token"
    );

    let rewrapped = ring.rewrap(&sealed, AAD).unwrap();
    assert_eq!(rewrapped.key_id(), new_key.id());
    assert!(!ring.needs_rewrap(&rewrapped));
    assert_eq!(
        rewrapped.ciphertext(),
        sealed.ciphertext(),
        "ciphertext must not change"
    );
    assert_eq!(rewrapped.nonce(), sealed.nonce());
    assert_ne!(rewrapped.wrapped_dek(), sealed.wrapped_dek());
    assert_eq!(
        ring.open(&rewrapped, AAD).unwrap().expose(),
        b"long-lived token"
    );

    // after retiring the old key, only the rewrapped envelope opens
    let only_new = Keyring::new(copy(&new_key));
    assert_eq!(
        only_new.open(&rewrapped, AAD).unwrap().expose(),
        b"long-lived token"
    );
    assert!(matches!(
        only_new.open(&sealed, AAD),
        Err(VaultError::UnknownKeyId { .. })
    ));
    // the old key alone no longer opens the rewrapped envelope
    assert!(matches!(
        old_ring.open(&rewrapped, AAD),
        Err(VaultError::UnknownKeyId { .. })
    ));

    // a new seal always uses the active key
    assert_eq!(ring.seal(b"x", AAD).key_id(), new_key.id());
    // rewrap with the wrong aad fails
    assert!(matches!(
        ring.rewrap(&sealed, "cluster/x"),
        Err(VaultError::AuthenticationFailed)
    ));
}

#[test]
fn canary_verifies_only_with_a_key_that_sealed_it() {
    let ring = ring();
    let canary = ring.canary();
    ring.verify_canary(&canary).unwrap();
    // Survives the string form (it is stored).
    ring.verify_canary(&canary.to_string().parse().unwrap())
        .unwrap();
    assert!(matches!(
        Keyring::new(MasterKey::generate()).verify_canary(&canary),
        Err(VaultError::UnknownKeyId { .. })
    ));
    // Some other envelope is not a canary.
    let other = ring.seal(b"not the canary", CANARY_AAD);
    assert!(matches!(
        ring.verify_canary(&other),
        Err(VaultError::CanaryMismatch)
    ));
    let wrong_aad = ring.seal(b"fleetreg vault canary v1", "x");
    assert!(matches!(
        ring.verify_canary(&wrong_aad),
        Err(VaultError::AuthenticationFailed)
    ));
}

#[test]
fn envelope_never_contains_plaintext() {
    let ring = ring();
    let secret = b"super-secret-token-0123456789-abcdefghij";
    let text = ring.seal(secret, AAD).to_string();
    assert!(!text.contains("super-secret"));
    for form in b64_forms(secret).into_iter().chain(hex_forms(secret)) {
        assert!(!text.contains(&form[..16]), "{text} contains {form}");
    }
    let dbg = format!("{:?}", ring.seal(secret, AAD));
    assert!(!dbg.contains("super-secret"), "{dbg}");
}

#[test]
fn debug_never_shows_key_bytes() {
    let raw = [
        0x5au8, 0x11, 0xc3, 0x7e, 0x42, 0x99, 0x01, 0xfe, 0x33, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
        0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x0f, 0x1f, 0x2f, 0x3f, 0x4f, 0x5f,
        0x6f, 0x7f,
    ];
    let key = MasterKey::from_bytes(raw);
    let dbg = format!("{key:?} {key:#?}");
    assert!(dbg.contains("redacted"), "{dbg}");
    assert!(dbg.contains(&key.id().to_string()), "{dbg}");
    assert_no_leak(&dbg, &raw);
    // the test's own check works: the key's own base64 is one of the forbidden forms
    assert!(forbidden_forms(&raw).contains(&*key.to_base64()));

    let previous = MasterKey::from_bytes([0xabu8; 32]);
    let mut ring = Keyring::new(key);
    ring.add_previous(previous).unwrap();
    let dbg = format!("{ring:?} {ring:#?}");
    assert_no_leak(&dbg, &raw);
    assert_no_leak(&dbg, &[0xabu8; 32]);

    let plaintext: Plaintext = ring.open(&ring.seal(&raw, AAD), AAD).unwrap();
    let dbg = format!("{plaintext:?} {plaintext:#?}");
    assert!(dbg.contains("redacted"), "{dbg}");
    assert_no_leak(&dbg, &raw);
}

#[test]
fn errors_never_contain_secret_material() {
    let raw = [0x42u8; 32];
    let ring = Keyring::new(MasterKey::from_bytes(raw));
    let secret = b"the-plaintext-credential";
    let sealed = ring.seal(secret, AAD);
    let errors = [
        ring.open(&sealed, "other").unwrap_err(),
        Keyring::new(MasterKey::generate())
            .open(&sealed, AAD)
            .unwrap_err(),
        VaultError::from("v1.zz".parse::<Sealed>().unwrap_err()),
    ];
    for err in errors {
        let text = format!("{err} {err:?}");
        assert!(!text.contains("the-plaintext"), "{text}");
        assert_no_leak(&text, &raw);
    }
}

#[test]
fn parse_errors_are_typed() {
    assert_eq!(
        "nope".parse::<Sealed>(),
        Err(EnvelopeError::PartCount { found: 1 })
    );
    let sealed = ring().seal(b"x", AAD).to_string();
    let v2 = sealed.replacen("v1.", "v2.", 1);
    assert_eq!(v2.parse::<Sealed>(), Err(EnvelopeError::UnsupportedVersion));
}

#[test]
fn duplicate_keys_are_refused() {
    let key = MasterKey::generate();
    assert!(Keyring::from_keys(vec![copy(&key), copy(&key)]).is_err());
    assert!(Keyring::from_keys(vec![]).is_err());
    let mut ring = Keyring::new(copy(&key));
    assert_eq!(ring.add_previous(copy(&key)), Err(key.id()));
    assert!(ring.add_previous(MasterKey::generate()).is_ok());
}

#[test]
fn keyring_from_value_and_env() {
    let a = MasterKey::generate();
    let b = MasterKey::generate();
    let value = format!("{}, {}\n", a.to_base64().as_str(), b.to_base64().as_str());
    let ring = Keyring::from_value(&value, "test").unwrap();
    assert_eq!(ring.key_ids(), vec![a.id(), b.id()]);

    let err = Keyring::from_value("AAAA", "environment variable X").unwrap_err();
    assert!(err.to_string().contains("environment variable X"), "{err}");
    let err = Keyring::from_value("", "environment variable X").unwrap_err();
    assert!(err.to_string().contains("no key"), "{err}");

    let var = "FLEETREG_VAULT_TEST_MASTER_KEY_UNSET_7f3a";
    let err = Keyring::from_env(var).unwrap_err();
    assert!(err.to_string().contains(var), "{err}");
}

/// Opens an envelope by hand with AES-256-GCM, following the format documented in
/// the crate docs, so the format cannot drift silently.
#[test]
fn format_matches_documentation() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Key, Nonce};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    let raw = [9u8; 32];
    let ring = Keyring::new(MasterKey::from_bytes(raw));
    let text = ring.seal(b"documented", AAD).to_string();
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts[0], "v1");
    assert_eq!(parts[1], ring.active_id().to_string());
    let wrapped = B64.decode(parts[2]).unwrap();
    assert_eq!(wrapped.len(), 60);
    let nonce = B64.decode(parts[3]).unwrap();
    assert_eq!(nonce.len(), 12);
    let ciphertext = B64.decode(parts[4]).unwrap();
    assert_eq!(ciphertext.len(), b"documented".len() + 16);

    let kek = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&raw));
    let wrap_aad = [
        b"fleetreg-vault/v1/dek\0",
        parts[1].as_bytes(),
        b"\0",
        AAD.as_bytes(),
    ]
    .concat();
    let dek = kek
        .decrypt(
            Nonce::from_slice(&wrapped[..12]),
            Payload {
                msg: &wrapped[12..],
                aad: &wrap_aad,
            },
        )
        .unwrap();
    assert_eq!(dek.len(), 32);
    // The key id is part of the wrap's associated data.
    let without_id = [b"fleetreg-vault/v1/dek\0".as_slice(), b"\0", AAD.as_bytes()].concat();
    assert!(kek
        .decrypt(
            Nonce::from_slice(&wrapped[..12]),
            Payload {
                msg: &wrapped[12..],
                aad: &without_id
            }
        )
        .is_err());

    let data_aad = [b"fleetreg-vault/v1/data\0".as_slice(), AAD.as_bytes()].concat();
    let plaintext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&dek))
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &data_aad,
            },
        )
        .unwrap();
    assert_eq!(plaintext, b"documented");
}
