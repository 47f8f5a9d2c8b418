//! A write batch's health observations of clusters (`Store::record_status`),
//! read together and written together. The group-commit writer tells the
//! batch which clusters its writes observe (`Write::observes`); the first
//! read loads all of them with one `SELECT … WHERE c.id IN (…)` per
//! [`ROWS_PER_STATEMENT`] ids (state, `last_seen_at` and the newest history
//! sample's time, which decide the event and the sampling), each observation
//! then changes its cluster in memory (several observations of one cluster
//! see each other's, in batch order), and the changed rows are written with
//! one multi-row `UPDATE` and the history samples with one multi-row `INSERT`
//! per chunk before any statement that reads or changes clusters otherwise,
//! and at commit. A statement that may change them (a deregistration, another
//! resource's SQL) also forgets the rows read; the next read loads the
//! batch's ids still to come again. So a batch of 200 observations is a few
//! statements instead of 800 sequential ones (docs/BENCHMARKS.md, issue 10).

use crate::decode::state_str;
use crate::dialect::Dialect;
use crate::engine::Tx;
use crate::sql::{Sql, Value};
use crate::write_tx::{write_rows, ROWS_PER_STATEMENT};
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{ClusterState, ClusterStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// What an observation needs of its cluster as stored (with the batch's
/// observations before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The cluster's health state.
    pub state: ClusterState,
    /// When its API server last answered.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When its newest health history sample was taken.
    pub last_sample_at: Option<DateTime<Utc>>,
}

/// The observed clusters of one write transaction.
#[derive(Debug, Default)]
pub(crate) struct ObservationBatch {
    /// Clusters the batch's writes will still observe.
    to_come: HashSet<Uuid>,
    /// Rows read since they were last forgotten, with the batch's changes
    /// (`None`: no such cluster).
    known: HashMap<Uuid, Option<Observed>>,
    /// Changed rows not written yet, by cluster id (written in id order, so
    /// concurrent transactions lock rows in one order).
    staged: BTreeMap<Uuid, Vec<Value>>,
    /// History samples not written yet, in batch order.
    samples: Vec<Vec<Value>>,
}

impl ObservationBatch {
    /// Notes the clusters the batch's writes will observe.
    pub(crate) fn expect(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        self.to_come.extend(ids);
    }

    /// Cluster `id` as stored with the batch's changes so far (`None`: no
    /// such cluster); when not read yet, it is loaded with every cluster the
    /// batch still expects.
    pub(crate) async fn read(
        &mut self,
        tx: &mut dyn Tx,
        dialect: &Dialect,
        id: Uuid,
    ) -> Result<Option<Observed>, StoreError> {
        self.to_come.remove(&id);
        if !self.known.contains_key(&id) {
            let mut wanted = vec![id];
            wanted.extend(
                self.to_come
                    .iter()
                    .filter(|other| !self.known.contains_key(*other)),
            );
            let mut missing: HashSet<Uuid> = wanted.iter().copied().collect();
            for (found, observed) in load(tx, dialect, &wanted).await? {
                missing.remove(&found);
                self.known.insert(found, Some(observed));
            }
            self.known.extend(missing.into_iter().map(|id| (id, None)));
        }
        Ok(self.known.get(&id).copied().flatten())
    }

    /// Records an observation of cluster `id` (read before with
    /// [`ObservationBatch::read`]): its status and `last_seen_at`, and a
    /// history sample taken at `sample_at` when given.
    pub(crate) fn stage(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
        sample_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        if let Some(Some(observed)) = self.known.get_mut(&id) {
            observed.state = status.state;
            observed.last_seen_at = last_seen_at;
            if let Some(at) = sample_at {
                observed.last_sample_at = Some(observed.last_sample_at.map_or(at, |l| l.max(at)));
            }
        }
        let json = Value::json(status)?;
        if let Some(at) = sample_at {
            self.samples.push(vec![
                Value::from(id),
                json.clone(),
                Value::from(state_str(status)),
                Value::from(status.health_score),
                Value::from(at),
            ]);
        }
        self.staged.insert(
            id,
            vec![
                Value::from(id),
                json,
                Value::from(state_str(status)),
                Value::from(status.health_score),
                Value::from(last_seen_at),
            ],
        );
        Ok(())
    }

    /// Writes the staged rows and samples: one multi-row statement each per
    /// chunk.
    pub(crate) async fn write(&mut self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        if !self.staged.is_empty() {
            let rows = std::mem::take(&mut self.staged).into_values().collect();
            write_rows(tx, STATUS_UPDATE_HEAD, rows, STATUS_UPDATE_TAIL).await?;
        }
        if !self.samples.is_empty() {
            let rows = std::mem::take(&mut self.samples);
            write_rows(tx, SAMPLE_INSERT, rows, "").await?;
        }
        Ok(())
    }

    /// Forgets the rows read: another statement may have changed them.
    pub(crate) fn forget(&mut self) {
        if !self.known.is_empty() {
            self.known.clear();
        }
    }
}

/// The observed columns of clusters `ids` (absent: no such cluster), locking
/// their rows on PostgreSQL.
async fn load(
    tx: &mut dyn Tx,
    dialect: &Dialect,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Observed)>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(
            "SELECT c.id, c.state, c.last_seen_at, (SELECT h.checked_at FROM \
             cluster_health_history h WHERE h.cluster_id = c.id ORDER BY h.checked_at DESC \
             LIMIT 1) AS last_sample_at FROM clusters c WHERE c.id IN ",
        );
        // Padded to a power of two by repeating the last id (harmless in
        // `IN`), so the statement texts are few and prepared once.
        let last = chunk.last().copied().unwrap_or_default();
        sql.bind_tuple(
            chunk
                .iter()
                .copied()
                .chain(std::iter::repeat(last))
                .take(chunk.len().next_power_of_two())
                .map(Value::from),
        )
        .push(dialect.lock_row);
        for row in tx.fetch(&sql).await? {
            let state: String = row.get("state")?;
            let state = ClusterState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown cluster state {state:?}")))?;
            found.push((
                row.get("id")?,
                Observed {
                    state,
                    last_seen_at: row.get("last_seen_at")?,
                    last_sample_at: row.get("last_sample_at")?,
                },
            ));
        }
    }
    Ok(found)
}

/// The start of the multi-row `UPDATE` of observed clusters: the rows'
/// values as a common table expression `v` (one statement on both engines;
/// SQLite has `UPDATE … FROM` since 3.33), in [`ObservationBatch::stage`]'s
/// order.
const STATUS_UPDATE_HEAD: &str =
    "WITH v (id, status, state, health_score, last_seen_at) AS (VALUES ";

/// The end of the multi-row `UPDATE` of observed clusters.
const STATUS_UPDATE_TAIL: &str = ") UPDATE clusters SET status = v.status, state = v.state, \
     health_score = v.health_score, last_seen_at = v.last_seen_at FROM v WHERE clusters.id = v.id";

/// The multi-row `INSERT` of health history samples.
const SAMPLE_INSERT: &str = "INSERT INTO cluster_health_history (cluster_id, status, state, \
     health_score, checked_at) VALUES ";
