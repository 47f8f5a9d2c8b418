//! Token values and their stored form.
//!
//! - Generated tokens: 256 random bits, `frg_` + 43 base64url characters.
//! - Stored form: `hmac:{key_id}:{hex}` with `hex = HMAC-SHA256(k, SHA-256-hex(token))`
//!   and `k` derived (HKDF) from the master key `key_id` for
//!   [`TOKEN_KEY_PURPOSE`], so the database alone cannot confirm a guessed
//!   token. Older databases hold the bare SHA-256 hex; start-up re-keys them
//!   before anything is served ([`rekey_stored_tokens`], possible without the
//!   tokens since the MAC is over that digest), and a bare digest is never
//!   accepted as a stored form (someone who can write the database could
//!   otherwise plant one). After a master-key rotation, forms under a previous
//!   master key still in the key file are found too ([`TokenHasher::candidates`])
//!   and re-keyed under the active key at their first use, so a previous key
//!   can be retired once every token was used or re-issued; new tokens are
//!   stored under the active key.

use base64::Engine;
use fleetreg_model::Audit;
use fleetreg_store::{Store, StoreError, TokenRekey};
use fleetreg_vault::{DerivedKey, Keyring};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Every token starts with this, so leaked tokens are easy to recognise (and
/// secret scanners can be taught the pattern).
pub const TOKEN_PREFIX: &str = "frg_";

/// The HKDF purpose of the key of the stored token form.
pub const TOKEN_KEY_PURPOSE: &str = "fleetreg/api-tokens/v1";

/// Characters after [`TOKEN_PREFIX`] in a generated token (32 bytes, base64url).
const GENERATED_LEN: usize = 43;

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Lowercase hex SHA-256 of `token`: the in-memory cache key, the input of
/// the stored form's MAC, and the stored form of databases before re-keying.
pub(crate) fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Whether `stored` is the bare SHA-256 hex of databases before re-keying.
fn is_plain_digest(stored: &str) -> bool {
    stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The prefix shown in listings: the first 10 characters of a token the server
/// generated (`frg_` and 6 random characters), nothing for any other (an
/// admin-chosen `FLEETREG_ADMIN_TOKEN`, whose characters are all secret).
pub(crate) fn listed_prefix(token: &str) -> String {
    let generated = token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == GENERATED_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if generated {
        token.chars().take(TOKEN_PREFIX.len() + 6).collect()
    } else {
        String::new()
    }
}

/// Computes stored token forms with keys derived from the master keys. Cheap
/// to clone.
#[derive(Clone)]
pub struct TokenHasher {
    /// The active key first, then the previous ones.
    keys: Arc<Vec<DerivedKey>>,
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenHasher")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl TokenHasher {
    /// Keys for every master key of `keyring` (the active one stores).
    pub fn new(keyring: &Keyring) -> TokenHasher {
        TokenHasher {
            keys: Arc::new(keyring.derive_keys(TOKEN_KEY_PURPOSE)),
        }
    }

    fn keyed(key: &DerivedKey, digest: &str) -> String {
        format!("hmac:{}:{}", key.key_id(), hex(&key.mac(digest.as_bytes())))
    }

    /// The stored form of `token` under the active key.
    pub fn stored(&self, token: &str) -> String {
        self.stored_from_digest(&digest(token))
    }

    /// The stored form of a token whose [`digest`] is `digest`.
    pub(crate) fn stored_from_digest(&self, digest: &str) -> String {
        Self::keyed(&self.keys[0], digest)
    }

    /// The forms a token with `digest` may be stored in, the current one first:
    /// under the active key, then under each previous key.
    pub(crate) fn candidates(&self, digest: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| Self::keyed(key, digest))
            .collect()
    }

    /// The stored token with `digest`, looked up in each of its
    /// [`TokenHasher::candidates`] forms in turn: the form it was found under
    /// (its position: 0 is the active key) and the token.
    pub(crate) async fn find(
        &self,
        store: &dyn Store,
        digest: &str,
    ) -> Result<Option<(usize, String, fleetreg_model::ApiToken)>, StoreError> {
        for (position, stored) in self.candidates(digest).into_iter().enumerate() {
            if let Some(token) = store.find_token(&stored).await? {
                return Ok(Some((position, stored, token)));
            }
        }
        Ok(None)
    }
}

/// At start-up: rewrites every stored bare SHA-256 digest (databases before
/// keyed hashes) into the keyed form, audited as `token.rekey`. Returns how
/// many were rewritten.
pub async fn rekey_stored_tokens(
    store: &dyn Store,
    hasher: &TokenHasher,
) -> Result<u64, StoreError> {
    let changes: Vec<TokenRekey> = store
        .token_hashes()
        .await?
        .into_iter()
        .filter(|(_, stored)| is_plain_digest(stored))
        .map(|(id, from)| TokenRekey {
            id,
            to: hasher.stored_from_digest(&from),
            from,
        })
        .collect();
    let changed = store
        .rekey_tokens(changes, &Audit::system("bootstrap"))
        .await?;
    if changed > 0 {
        tracing::info!(
            tokens = changed,
            "API token hashes re-keyed with a key derived from the master key"
        );
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_vault::MasterKey;

    #[test]
    fn tokens_are_random_and_stored_forms_keyed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + GENERATED_LEN);
        let one = TokenHasher::new(&Keyring::new(MasterKey::from_bytes([1; 32])));
        let two = TokenHasher::new(&Keyring::new(MasterKey::from_bytes([2; 32])));
        assert_eq!(one.stored(&a), one.stored(&a));
        assert_ne!(one.stored(&a), two.stored(&a), "keyed by the master key");
        assert_ne!(one.stored(&a), digest(&a), "not the bare digest");
        assert!(!one.stored(&a).contains(&a[4..]));
        let candidates = one.candidates(&digest(&a));
        assert_eq!(candidates, [one.stored(&a)], "never the bare digest");
        assert!(is_plain_digest(&digest(&a)) && !is_plain_digest(&one.stored(&a)));
    }

    #[test]
    fn previous_keys_are_candidates_after_the_active_one() {
        let old = MasterKey::from_bytes([1; 32]);
        let before = TokenHasher::new(&Keyring::new(MasterKey::from_bytes([1; 32])));
        let mut ring = Keyring::new(MasterKey::from_bytes([2; 32]));
        ring.add_previous(old).unwrap();
        let after = TokenHasher::new(&ring);
        let d = digest("frg_x");
        assert_eq!(after.candidates(&d)[1], before.stored("frg_x"));
        assert_eq!(after.candidates(&d)[0], after.stored("frg_x"));
    }

    #[test]
    fn only_generated_tokens_show_a_prefix() {
        let generated = new_token();
        assert_eq!(listed_prefix(&generated), generated[..10]);
        assert_eq!(listed_prefix("my-own-admin-token-value"), "");
        assert_eq!(listed_prefix("frg_chosen-by-an-admin"), "");
    }
}
