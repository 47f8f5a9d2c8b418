//! A write batch's node sync rows (`edge_node_sync`), read together and
//! written together. The group-commit writer tells the batch which nodes its
//! writes will read (`Write::reads_node_sync`: agents' acknowledgements and
//! push counts, check outcomes); the first read loads all of them with one
//! `SELECT … WHERE n.name IN (…)` (the names bound as one JSON array,
//! `Dialect::json_array_texts`), each write then changes its node's row in
//! memory (several writes of one node see each other's changes, in batch
//! order), and the changed rows are written with one multi-row `UPDATE` per
//! power-of-two chunk before the transaction runs any other statement, and at
//! commit. Any other statement forgets the rows read (it may
//! change them); the next read loads the batch's names still to come again.
//! So 1,000 acknowledgements in one batch are a few statements instead of
//! 2,000 sequential round trips (docs/BENCHMARKS.md, "Edge push").

use crate::dialect::Dialect;
use crate::edge_rows::{node_sync_from_row, SYNC_SELECT};
use crate::engine::Tx;
use crate::sql::{Sql, Value};
use crate::write_tx::write_rows;
use crate::StoreError;
use fleetreg_model::{DnsLabel, NodeSync};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use uuid::Uuid;

/// The node sync rows of one write transaction.
#[derive(Debug, Default)]
pub(crate) struct NodeSyncBatch {
    /// Names the batch's writes will still read, in batch order.
    to_come: VecDeque<String>,
    /// Rows read since the last other statement, with the batch's changes
    /// (`None`: no such node).
    known: HashMap<String, Option<(Uuid, NodeSync)>>,
    /// Changed rows not written yet, by node id (written in id order, so
    /// concurrent transactions lock rows in one order).
    staged: BTreeMap<Uuid, NodeSync>,
}

impl NodeSyncBatch {
    /// Notes the nodes the batch's writes will read, in batch order.
    pub(crate) fn expect<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.to_come.extend(names.into_iter().map(str::to_owned));
    }

    /// A node's sync row with the batch's changes so far; when not read yet,
    /// it is loaded with every node the batch still expects (when it expects
    /// this one).
    pub(crate) async fn read(
        &mut self,
        tx: &mut dyn Tx,
        dialect: &Dialect,
        name: &DnsLabel,
    ) -> Result<Option<(Uuid, NodeSync)>, StoreError> {
        let name = name.as_str();
        let expected = self
            .to_come
            .iter()
            .position(|n| n == name)
            .map(|at| self.to_come.remove(at))
            .is_some();
        if !self.known.contains_key(name) {
            // Rows staged by writes that read them otherwise (liveness) go
            // first, so the load sees them.
            self.write(tx).await?;
            let mut wanted: Vec<&str> = vec![name];
            if expected {
                let mut seen = HashSet::from([name]);
                wanted.extend(
                    self.to_come
                        .iter()
                        .map(String::as_str)
                        .filter(|n| !self.known.contains_key(*n) && seen.insert(n)),
                );
            }
            let loaded = load(tx, dialect, &wanted).await?;
            let mut missing: HashSet<String> = wanted.iter().map(|n| (*n).to_owned()).collect();
            for (id, sync) in loaded {
                missing.remove(sync.node.as_str());
                self.known
                    .insert(sync.node.as_str().to_owned(), Some((id, sync)));
            }
            self.known.extend(missing.into_iter().map(|n| (n, None)));
        }
        Ok(self.known.get(name).cloned().flatten())
    }

    /// Changes node `id`'s row to `sync` (the columns an observation
    /// changes; see [`sync_values`]), written before the next other
    /// statement or at commit.
    pub(crate) fn stage(&mut self, id: Uuid, sync: &NodeSync) {
        if let Some(Some((known_id, row))) = self.known.get_mut(sync.node.as_str()) {
            if *known_id == id {
                *row = sync.clone();
            }
        }
        self.staged.insert(id, sync.clone());
    }

    /// Writes the staged rows: one multi-row `UPDATE` per chunk.
    pub(crate) async fn write(&mut self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.staged)
            .into_iter()
            .map(|(id, sync)| sync_values(id, &sync))
            .collect();
        write_rows(tx, SYNC_UPDATE_HEAD, rows, SYNC_UPDATE_TAIL).await
    }

    /// Forgets the rows read: another statement may have changed them.
    pub(crate) fn forget(&mut self) {
        if !self.known.is_empty() {
            self.known.clear();
        }
    }
}

/// The sync rows of the nodes `names` (in any order; absent when there is no
/// such node): one statement.
async fn load(
    tx: &mut dyn Tx,
    dialect: &Dialect,
    names: &[&str],
) -> Result<Vec<(Uuid, NodeSync)>, StoreError> {
    let sql = Sql::new(format!(
        "{SYNC_SELECT} WHERE n.name IN (SELECT value FROM {}($1))",
        dialect.json_array_texts
    ))
    .arg(Value::json(names)?);
    tx.fetch(&sql)
        .await?
        .iter()
        .map(|row| Ok((row.get("id")?, node_sync_from_row(row)?)))
        .collect()
}

/// The start of the multi-row `UPDATE` of sync rows: the rows' values as a
/// common table expression `v` (one statement on both engines; SQLite has
/// `UPDATE … FROM` since 3.33), in [`sync_values`]' order.
const SYNC_UPDATE_HEAD: &str = "WITH v (node_id, status, applied_revision, last_sync_at, \
     last_heartbeat_at, push_attempts, last_error, up, heartbeat_ok, check_ok, check_error, \
     check_changed_at) AS (VALUES ";

/// The end of the multi-row `UPDATE` of sync rows.
const SYNC_UPDATE_TAIL: &str = ") UPDATE edge_node_sync SET status = v.status, \
     applied_revision = v.applied_revision, last_sync_at = v.last_sync_at, \
     last_heartbeat_at = v.last_heartbeat_at, push_attempts = v.push_attempts, \
     last_error = v.last_error, up = v.up, heartbeat_ok = v.heartbeat_ok, \
     check_ok = v.check_ok, check_error = v.check_error, check_changed_at = v.check_changed_at \
     FROM v WHERE edge_node_sync.node_id = v.node_id";

/// A staged row's values in [`SYNC_UPDATE_HEAD`]'s column order: the sync
/// columns an observation changes (the desired revision and configuration
/// are `recompute`'s).
fn sync_values(id: Uuid, s: &NodeSync) -> Vec<Value> {
    vec![
        Value::from(id),
        Value::from(s.status.as_str()),
        Value::from(s.applied_revision),
        Value::from(s.last_sync_at),
        Value::from(s.last_heartbeat_at),
        Value::from(i64::from(s.push_attempts)),
        Value::from(&s.last_error),
        Value::from(s.up),
        Value::from(s.heartbeat_ok),
        Value::from(s.check_ok),
        Value::from(&s.check_error),
        Value::from(s.check_changed_at),
    ]
}
