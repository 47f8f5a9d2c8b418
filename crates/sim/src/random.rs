//! Random values: opaque tokens, object uids and `generateName` suffixes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;

/// `n` random bytes.
pub(crate) fn bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rand::rng().fill(out.as_mut_slice());
    out
}

/// 256 random bits as unpadded base64url: an opaque bearer token.
pub(crate) fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes(32))
}

/// A random UUID, as Kubernetes gives every object.
pub(crate) fn uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The suffix Kubernetes appends to `metadata.generateName`: `n` characters from
/// its alphabet without vowels.
pub(crate) fn name_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_differ_and_are_url_safe() {
        let (a, b) = (super::token(), super::token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(super::name_suffix(5).len(), 5);
    }
}
