//! The tamper-evident audit log: every entry carries
//! `mac = HMAC-SHA256(key, prev_mac || canonical(entry))`, where `prev_mac` is the
//! MAC of the entry before it (32 zero bytes for the first chained entry) and
//! `canonical` covers every stored field including the entry's id and the id of
//! the master key the MAC key was derived from.
//!
//! - Ids are dense: the writer assigns `id = previous id + 1` under the write
//!   lock (SQLite's single writer; on PostgreSQL the `meta.revision` row lock
//!   every batch holds until commit), so a gap is a deleted entry.
//! - Editing an entry breaks its MAC; deleting one breaks the next entry's MAC
//!   (and leaves a gap); without the key neither can be recomputed, unlike a
//!   plain hash chain.
//! - Removing entries from the END leaves an intact chain: that is what the
//!   head ([`AuditHead`], kept in a file outside the database) is for.
//! - Rows written before the chain existed (migration 0005) have no MAC: they
//!   form a legacy prefix that is counted, not verified. An entry without a MAC
//!   after a chained one is a failure.

use crate::{Store, StoreError};
use fleetreg_model::{AuditEntry, AuditResult};
use hmac::{Mac, SimpleHmac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// What the vault derives the audit MAC key for (HKDF `info`).
pub const AUDIT_KEY_PURPOSE: &str = "fleetreg/audit-log/v1";

/// Length of a MAC in bytes.
pub const MAC_LEN: usize = 32;

/// The `prev_mac` of the first chained entry.
pub(crate) const GENESIS: [u8; MAC_LEN] = [0u8; MAC_LEN];

/// Domain prefix of the canonical encoding (its version).
const DOMAIN: &[u8] = b"fleetreg-audit/v1\0";

/// Entries read per query while verifying.
const VERIFY_PAGE: u32 = 1000;

type HmacSha256 = SimpleHmac<Sha256>;

/// One MAC key of the audit chain: derived from a master key, named by that
/// master key's id. The bytes are zeroed on drop; `Debug` shows the id only.
pub struct AuditKey {
    key_id: String,
    key: Zeroizing<[u8; 32]>,
}

impl AuditKey {
    /// A key named by the id of the master key it was derived from.
    pub fn new(key_id: impl Into<String>, key: [u8; 32]) -> AuditKey {
        AuditKey {
            key_id: key_id.into(),
            key: Zeroizing::new(key),
        }
    }

    /// The master key id recorded with every entry this key seals.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn mac(&self, prev: &[u8; MAC_LEN], message: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        let mut mac = match HmacSha256::new_from_slice(self.key.as_slice()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC refused a 32-byte key"),
        };
        mac.update(prev);
        mac.update(message);
        mac
    }

    /// `HMAC-SHA256(key, prev || canonical(entry, key_id))`.
    pub(crate) fn seal(&self, prev: &[u8; MAC_LEN], entry: &AuditEntry) -> [u8; MAC_LEN] {
        self.mac(prev, &canonical_bytes(entry, &self.key_id))
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` seals `entry` after `prev` (constant-time comparison).
    fn verifies(&self, prev: &[u8; MAC_LEN], entry: &AuditEntry, mac: &[u8; MAC_LEN]) -> bool {
        self.mac(prev, &canonical_bytes(entry, &self.key_id))
            .verify_slice(mac)
            .is_ok()
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.key_id)
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// The audit MAC keys a store knows: the first seals new entries, every one
/// verifies entries naming its id (keys derived from previous master keys).
#[derive(Debug)]
pub struct AuditKeys {
    signing: AuditKey,
    previous: Vec<AuditKey>,
}

impl AuditKeys {
    /// `signing` seals new entries; `previous` only verify.
    pub fn new(signing: AuditKey, previous: Vec<AuditKey>) -> AuditKeys {
        AuditKeys { signing, previous }
    }

    /// The key that seals new entries.
    pub fn signing(&self) -> &AuditKey {
        &self.signing
    }

    /// The key named `key_id`, if known.
    pub fn get(&self, key_id: &str) -> Option<&AuditKey> {
        std::iter::once(&self.signing)
            .chain(&self.previous)
            .find(|k| k.key_id == key_id)
    }
}

/// The last entry of the chain as last committed: its id and MAC (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The entry's id.
    pub id: i64,
    /// Its MAC, 64 lowercase hex digits.
    pub mac: String,
}

/// An audit entry with its chain fields, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedAuditEntry {
    /// The entry.
    pub entry: AuditEntry,
    /// Its MAC (hex); `None` for entries written before the chain existed.
    pub mac: Option<String>,
    /// The id of the master key its MAC key was derived from.
    pub key_id: Option<String>,
}

/// The bytes an entry's MAC covers (after `prev_mac`): a version prefix, then
/// every field in a fixed order, integers as 8 big-endian bytes, `at` as
/// microseconds since the epoch, strings as a 4-byte big-endian length and
/// UTF-8 bytes, optional values as `0` (absent) or `1` and the value.
pub fn canonical_bytes(entry: &AuditEntry, key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&entry.id.to_be_bytes());
    out.extend_from_slice(&entry.at.timestamp_micros().to_be_bytes());
    put_str(&mut out, &entry.actor);
    put_opt(&mut out, entry.role.as_deref(), put_str);
    put_str(&mut out, &entry.action);
    put_str(&mut out, &entry.resource);
    put_opt(&mut out, entry.resource_id.as_ref(), |out, id| {
        out.extend_from_slice(id.as_bytes())
    });
    put_str(
        &mut out,
        match entry.result {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
        },
    );
    put_opt(&mut out, entry.error_code.as_deref(), put_str);
    put_opt(&mut out, entry.revision, |out, r| {
        out.extend_from_slice(&r.to_be_bytes())
    });
    put_opt(&mut out, entry.source.as_deref(), put_str);
    put_opt(&mut out, entry.request_id.as_deref(), put_str);
    put_str(&mut out, key_id);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

/// A MAC as stored: lowercase hex.
pub(crate) fn mac_hex(mac: &[u8; MAC_LEN]) -> String {
    hex::encode(mac)
}

/// A stored MAC back to bytes; `None` when it is not 64 hex digits.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; MAC_LEN]> {
    let mut out = [0u8; MAC_LEN];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The first thing wrong with an audit chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The entry's MAC does not match its content and the entry before it.
    #[error("entry {id} does not verify: it was altered (or the entry before it was replaced)")]
    Altered {
        /// The entry.
        id: i64,
    },
    /// Ids jump: entries in between were deleted.
    #[error("entries {first} to {last} are missing (deleted)")]
    Missing {
        /// First missing id.
        first: i64,
        /// Last missing id.
        last: i64,
    },
    /// An entry after the legacy prefix has no MAC.
    #[error("entry {id} has no MAC although entries before it do (written without the audit key, or its MAC was removed)")]
    Unsealed {
        /// The entry.
        id: i64,
    },
    /// The entry's MAC is not 64 hex digits.
    #[error("entry {id} has a malformed MAC")]
    Malformed {
        /// The entry.
        id: i64,
    },
    /// The entry names a master key the keyring lacks.
    #[error("entry {id} was sealed with a key derived from master key {key_id}, which is not in the keyring (wrong key, or a previous key was dropped)")]
    UnknownKey {
        /// The entry.
        id: i64,
        /// The master key id it names.
        key_id: String,
    },
    /// The head file names an entry beyond the end of the log.
    #[error("the audit head records entry {head_id}, but the log ends at {last_id}: entries were removed from the end")]
    Truncated {
        /// The id in the head file.
        head_id: i64,
        /// The last id in the database (0 when empty).
        last_id: i64,
    },
    /// The entry at the head's id is not the one the head recorded.
    #[error(
        "entry {id} is not the entry the audit head recorded: the log was rewritten from there"
    )]
    HeadMismatch {
        /// The id in the head file.
        id: i64,
    },
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries before the chain began (written before migration 0005), not verifiable.
    pub legacy: u64,
    /// Entries whose MAC verified.
    pub verified: u64,
    /// The last entry read.
    pub last_id: i64,
    /// Whether a head was given and matched the log.
    pub head_checked: bool,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

impl VerifyReport {
    /// Whether the log verified.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Recomputes the chain of `store`'s audit log with `keys` and compares its end
/// with `head` (when given); stops at the first break. Reads the log in pages.
///
/// A head behind the log's end is fine when the log continues validly from it
/// (a crash between a commit and the head write); a head beyond the end, or a
/// different entry at the head's id, is a break.
pub async fn verify_audit_chain(
    store: &dyn Store,
    keys: &AuditKeys,
    head: Option<&AuditHead>,
) -> Result<VerifyReport, StoreError> {
    let mut verifier = Verifier::new(keys, head);
    let mut after = 0;
    loop {
        let page = store.list_audit_chain(after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.entry.id;
        for row in &page {
            if let Err(broken) = verifier.push(row) {
                return Ok(verifier.report(Some(broken)));
            }
        }
        if page.len() < VERIFY_PAGE as usize {
            break;
        }
    }
    let broken = verifier.finish().err();
    Ok(verifier.report(broken))
}

/// The chain state while reading entries in id order.
struct Verifier<'a> {
    keys: &'a AuditKeys,
    head: Option<&'a AuditHead>,
    /// The previous row: its id and MAC (`None` while in the legacy prefix).
    prev: Option<(i64, Option<[u8; MAC_LEN]>)>,
    legacy: u64,
    verified: u64,
    head_seen: bool,
}

impl<'a> Verifier<'a> {
    fn new(keys: &'a AuditKeys, head: Option<&'a AuditHead>) -> Self {
        Verifier {
            keys,
            head,
            prev: None,
            legacy: 0,
            verified: 0,
            head_seen: false,
        }
    }

    fn push(&mut self, row: &ChainedAuditEntry) -> Result<(), ChainBreak> {
        let id = row.entry.id;
        let chained_before = matches!(self.prev, Some((_, Some(_))));
        let Some(text) = &row.mac else {
            if chained_before {
                return Err(ChainBreak::Unsealed { id });
            }
            self.legacy += 1;
            self.prev = Some((id, None));
            return self.check_head(id, None);
        };
        // Chained entries follow the previous row (of any kind) densely; the
        // first row of a log that was chained from the start has id 1.
        let expected = self.prev.map_or(1, |(prev_id, _)| prev_id + 1);
        if id != expected {
            return Err(ChainBreak::Missing {
                first: expected,
                last: id - 1,
            });
        }
        let mac = parse_mac(text).ok_or(ChainBreak::Malformed { id })?;
        let key_id = row.key_id.as_deref().unwrap_or_default();
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| ChainBreak::UnknownKey {
                id,
                key_id: key_id.to_owned(),
            })?;
        let prev = self.prev.and_then(|(_, mac)| mac).unwrap_or(GENESIS);
        if !key.verifies(&prev, &row.entry, &mac) {
            return Err(ChainBreak::Altered { id });
        }
        self.verified += 1;
        self.prev = Some((id, Some(mac)));
        self.check_head(id, Some(text))
    }

    fn check_head(&mut self, id: i64, mac: Option<&str>) -> Result<(), ChainBreak> {
        match self.head {
            Some(head) if head.id == id => {
                self.head_seen = true;
                if mac == Some(head.mac.as_str()) {
                    Ok(())
                } else {
                    Err(ChainBreak::HeadMismatch { id })
                }
            }
            _ => Ok(()),
        }
    }

    fn last_id(&self) -> i64 {
        self.prev.map_or(0, |(id, _)| id)
    }

    fn finish(&self) -> Result<(), ChainBreak> {
        match self.head {
            Some(head) if !self.head_seen => {
                if head.id > self.last_id() {
                    Err(ChainBreak::Truncated {
                        head_id: head.id,
                        last_id: self.last_id(),
                    })
                } else {
                    // Below the end but never read: the entry is gone.
                    Err(ChainBreak::HeadMismatch { id: head.id })
                }
            }
            _ => Ok(()),
        }
    }

    fn report(&self, broken: Option<ChainBreak>) -> VerifyReport {
        VerifyReport {
            legacy: self.legacy,
            verified: self.verified,
            last_id: self.last_id(),
            head_checked: self.head.is_some() && broken.is_none(),
            broken,
        }
    }
}

/// How a store's writer extends the chain: the keys (none: entries get no MAC,
/// e.g. a store opened without a keyring in tests) and where committed heads go.
#[derive(Debug)]
pub(crate) struct ChainConfig {
    pub keys: Option<Arc<AuditKeys>>,
    pub head: watch::Sender<Option<AuditHead>>,
}

/// The id and MAC the writer gives one audit row.
#[derive(Debug, Clone)]
pub(crate) struct AuditLink {
    pub id: i64,
    pub mac: Option<String>,
    pub key_id: Option<String>,
}

/// The chain inside one write transaction: the tail is read once (under the
/// write lock) at the first audit entry, then extended in memory.
#[derive(Debug)]
pub(crate) struct TxChain {
    config: Arc<ChainConfig>,
    tail: Option<ChainTail>,
}

impl TxChain {
    pub fn new(config: Arc<ChainConfig>) -> TxChain {
        TxChain { config, tail: None }
    }

    /// Whether the tail was read in this transaction.
    pub fn is_loaded(&self) -> bool {
        self.tail.is_some()
    }

    /// Sets the tail read from the database (`id` 0 and no MAC when empty).
    pub fn load(&mut self, id: i64, mac: Option<&str>) {
        self.tail = Some(ChainTail::from_stored(id, mac));
    }

    /// Gives `entry` the next id and seals it; `Corrupt` if the tail was not loaded.
    pub fn extend(&mut self, entry: &mut AuditEntry) -> Result<AuditLink, StoreError> {
        let tail = self
            .tail
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("audit chain tail not loaded".into()))?;
        let key = self.config.keys.as_deref().map(AuditKeys::signing);
        let mac = tail.extend(entry, key);
        Ok(AuditLink {
            id: entry.id,
            key_id: mac.as_ref().and(key).map(|k| k.key_id().to_owned()),
            mac,
        })
    }

    /// After a durable commit: publishes the new head (when the chain moved).
    pub fn publish(&self) {
        if let Some(head) = self.tail.as_ref().and_then(ChainTail::head) {
            self.config.head.send_if_modified(|current| {
                let newer = current.as_ref().is_none_or(|c| c.id < head.id);
                if newer {
                    *current = Some(head);
                }
                newer
            });
        }
    }
}

/// The last entry of the chain inside a write transaction.
#[derive(Debug)]
pub(crate) struct ChainTail {
    /// The last entry's id (0 when the log is empty).
    pub id: i64,
    /// Its MAC, when it has one.
    pub mac: Option<[u8; MAC_LEN]>,
}

impl ChainTail {
    /// The tail as read from the database: the last row's id and stored MAC.
    /// A malformed MAC (tampering) is logged and chained over as if absent:
    /// writes go on, and verification reports that entry.
    pub fn from_stored(id: i64, mac: Option<&str>) -> ChainTail {
        let mac = mac.and_then(|text| {
            let parsed = parse_mac(text);
            if parsed.is_none() {
                tracing::error!(
                    id,
                    "the last audit entry has a malformed MAC; run `fleetreg audit verify`"
                );
            }
            parsed
        });
        ChainTail { id, mac }
    }

    /// Assigns the next id to `entry` and, with `key`, seals it after this tail;
    /// returns the MAC (hex) and moves the tail to it.
    pub fn extend(&mut self, entry: &mut AuditEntry, key: Option<&AuditKey>) -> Option<String> {
        self.id += 1;
        entry.id = self.id;
        let mac = key.map(|key| key.seal(&self.mac.unwrap_or(GENESIS), entry));
        self.mac = mac;
        mac.as_ref().map(mac_hex)
    }

    /// The head to publish after commit, when the tail is sealed.
    pub fn head(&self) -> Option<AuditHead> {
        self.mac.as_ref().map(|mac| AuditHead {
            id: self.id,
            mac: mac_hex(mac),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn entry(actor: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: actor.into(),
            role: None,
            action: "cluster.create".into(),
            resource: "cluster".into(),
            resource_id: Some(uuid::Uuid::nil()),
            result: AuditResult::Success,
            error_code: None,
            revision: Some(1),
            source: Some("127.0.0.1".into()),
            request_id: None,
        }
    }

    fn keys(byte: u8) -> AuditKeys {
        AuditKeys::new(AuditKey::new(format!("k{byte}"), [byte; 32]), vec![])
    }

    /// A chain of `actors` sealed with `keys`' signing key.
    fn chain(keys: &AuditKeys, actors: &[&str]) -> Vec<ChainedAuditEntry> {
        let mut tail = ChainTail { id: 0, mac: None };
        actors
            .iter()
            .map(|actor| {
                let mut e = entry(actor);
                let mac = tail.extend(&mut e, Some(keys.signing()));
                ChainedAuditEntry {
                    entry: e,
                    mac,
                    key_id: Some(keys.signing().key_id().to_owned()),
                }
            })
            .collect()
    }

    fn verify(
        keys: &AuditKeys,
        rows: &[ChainedAuditEntry],
        head: Option<&AuditHead>,
    ) -> VerifyReport {
        let mut v = Verifier::new(keys, head);
        for row in rows {
            if let Err(b) = v.push(row) {
                return v.report(Some(b));
            }
        }
        let broken = v.finish().err();
        v.report(broken)
    }

    #[test]
    fn an_untouched_chain_verifies_with_its_head() {
        let k = keys(1);
        let rows = chain(&k, &["a", "b", "c"]);
        let head = AuditHead {
            id: 3,
            mac: rows[2].mac.clone().unwrap(),
        };
        let report = verify(&k, &rows, Some(&head));
        assert_eq!(report.broken, None);
        assert_eq!((report.verified, report.legacy, report.last_id), (3, 0, 3));
        assert!(report.head_checked);
        // A head behind the end is fine while the chain continues from it.
        let behind = AuditHead {
            id: 2,
            mac: rows[1].mac.clone().unwrap(),
        };
        assert!(verify(&k, &rows, Some(&behind)).is_ok());
    }

    #[test]
    fn breaks_are_found_and_named() {
        let k = keys(1);
        let rows = chain(&k, &["a", "b", "c", "d"]);
        let mut edited = rows.clone();
        edited[1].entry.actor = "mallory".into();
        assert_eq!(
            verify(&k, &edited, None).broken,
            Some(ChainBreak::Altered { id: 2 })
        );
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&k, &deleted, None).broken,
            Some(ChainBreak::Missing { first: 2, last: 2 })
        );
        let head = AuditHead {
            id: 4,
            mac: rows[3].mac.clone().unwrap(),
        };
        assert!(
            verify(&k, &rows[..2], None).is_ok(),
            "no head: undetectable"
        );
        assert_eq!(
            verify(&k, &rows[..2], Some(&head)).broken,
            Some(ChainBreak::Truncated {
                head_id: 4,
                last_id: 2
            })
        );
        assert_eq!(
            verify(&keys(2), &rows, None).broken,
            Some(ChainBreak::UnknownKey {
                id: 1,
                key_id: "k1".into()
            })
        );
        // Same key id, other key bytes.
        let impostor = AuditKeys::new(AuditKey::new("k1", [2; 32]), vec![]);
        assert_eq!(
            verify(&impostor, &rows, None).broken,
            Some(ChainBreak::Altered { id: 1 })
        );
        let mut unsealed = rows.clone();
        unsealed[2].mac = None;
        assert_eq!(
            verify(&k, &unsealed, None).broken,
            Some(ChainBreak::Unsealed { id: 3 })
        );
    }

    #[test]
    fn a_legacy_prefix_is_counted_and_the_chain_starts_after_it() {
        let k = keys(1);
        let mut legacy: Vec<ChainedAuditEntry> = (1..=2)
            .map(|id| ChainedAuditEntry {
                entry: AuditEntry { id, ..entry("old") },
                mac: None,
                key_id: None,
            })
            .collect();
        let mut tail = ChainTail { id: 2, mac: None };
        let mut e = entry("new");
        let mac = tail.extend(&mut e, Some(k.signing()));
        legacy.push(ChainedAuditEntry {
            entry: e,
            mac,
            key_id: Some("k1".into()),
        });
        let report = verify(&k, &legacy, None);
        assert_eq!(report.broken, None);
        assert_eq!((report.legacy, report.verified), (2, 1));
        // Removing MACs from the front to pass entries off as legacy breaks the next one.
        let rows = chain(&k, &["a", "b"]);
        let mut stripped = rows.clone();
        stripped[0].mac = None;
        assert_eq!(
            verify(&k, &stripped, None).broken,
            Some(ChainBreak::Altered { id: 2 })
        );
    }

    #[test]
    fn rotated_keys_verify_entries_of_previous_keys() {
        let old = keys(1);
        let mut rows = chain(&old, &["a", "b"]);
        let rotated = AuditKeys::new(
            AuditKey::new("k2", [2; 32]),
            vec![AuditKey::new("k1", [1; 32])],
        );
        let mut tail = ChainTail::from_stored(2, rows[1].mac.as_deref());
        let mut e = entry("c");
        let mac = tail.extend(&mut e, Some(rotated.signing()));
        rows.push(ChainedAuditEntry {
            entry: e,
            mac,
            key_id: Some("k2".into()),
        });
        assert!(verify(&rotated, &rows, None).is_ok());
        assert_eq!(
            verify(&keys(2), &rows, None).broken,
            Some(ChainBreak::UnknownKey {
                id: 1,
                key_id: "k1".into()
            })
        );
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let mut a = entry("ab");
        a.role = Some("c".into());
        let mut b = entry("a");
        b.role = Some("bc".into());
        assert_ne!(canonical_bytes(&a, "k"), canonical_bytes(&b, "k"));
        assert_ne!(canonical_bytes(&a, "k"), canonical_bytes(&a, "j"));
        let mut c = entry("ab");
        c.source = None;
        assert_ne!(canonical_bytes(&entry("ab"), "k"), canonical_bytes(&c, "k"));
    }
}
