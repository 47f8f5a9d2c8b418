//! The SQL of every write, once for both engines: [`WriteTx`] is one write
//! transaction of the group-commit writer (`writer.rs` holds the rules; this
//! file only reads and writes rows).
//!
//! Change-log and audit rows are only appended inside a write transaction,
//! never read back by it, so they are buffered and written with one multi-row
//! `INSERT` each just before `COMMIT` (one statement per batch instead of one
//! per write). Registrations of a batch are buffered the same way:
//! [`WriteTx::prepare_inserts`] looks up which of the batch's names are taken
//! (one statement), and while that set is known an insert is decided in memory
//! and written with the others in one multi-row `INSERT`. Any other write
//! first flushes the buffer (so it sees the rows), and a delete forgets the set
//! (it may free a name). The `UNIQUE` constraint still stands behind this: a
//! conflict (another replica registered the name meanwhile) fails the batch,
//! which the writer then retries one write at a time. Node sync rows are read
//! and written per batch the same way ([`NodeSyncBatch`]), and so are health
//! observations of clusters ([`ObservationBatch`]).

use crate::audit_chain::{AuditLink, TxChain};
use crate::decode::{
    audit_result_str, cluster_from_row, credentials_from_row, state_str, CLUSTER_COLUMNS,
    CREDENTIAL_COLUMNS, EVENT_COLUMNS,
};
use crate::dialect::{Dialect, LabelMatch};
use crate::engine::Tx;
use crate::node_sync_batch::NodeSyncBatch;
use crate::observation_batch::{ObservationBatch, Observed};
use crate::sql::{Sql, Value};
use crate::writer::{AuditRecord, RewrapCredentials};
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    ApiToken, Capabilities, Cluster, ClusterStatus, DnsLabel, ErrorCode, Event, NodeSync,
    StoredCredentials,
};
use std::collections::HashSet;
use uuid::Uuid;

/// Most rows in one multi-row statement (well below either engine's limit on
/// bound parameters).
pub(crate) const ROWS_PER_STATEMENT: usize = 256;

/// The rows of the next multi-row statement: the largest power of two not
/// above `left` or [`ROWS_PER_STATEMENT`].
fn chunk_size(left: usize) -> usize {
    let cap = left.clamp(1, ROWS_PER_STATEMENT);
    1 << cap.ilog2()
}

/// `head (…), (…) tail` in chunks of power-of-two sizes: a statement has at
/// most a handful of texts, so both engines prepare each once per connection
/// and reuse it (a text per batch size would be parsed and planned again for
/// almost every batch).
pub(crate) async fn write_rows(
    tx: &mut dyn Tx,
    head: &str,
    rows: Vec<Vec<Value>>,
    tail: &str,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    let mut left = rows.len();
    while left > 0 {
        let chunk = chunk_size(left);
        left -= chunk;
        let mut sql = Sql::new(head);
        for (i, row) in rows.by_ref().take(chunk).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_tuple(row);
        }
        sql.push(tail);
        tx.execute(&sql).await?;
    }
    Ok(())
}

const CLUSTER_INSERT: &str = "INSERT INTO clusters (id, name, display_name, api_server_url, \
     cluster_type, platform, platform_version, region, environment, labels, endpoints, \
     capabilities, status, state, health_score, revision, created_at, updated_at) VALUES ";

const AUDIT_INSERT: &str = "INSERT INTO audit_log (at, actor, role, action, resource, \
     resource_id, result, error_code, revision, source, request_id, id, mac, key_id) VALUES ";

/// One write transaction.
pub(crate) struct WriteTx {
    tx: Box<dyn Tx>,
    dialect: &'static Dialect,
    chain: TxChain,
    /// Names taken, while a batch of registrations is being decided in memory.
    taken: Option<HashSet<String>>,
    /// The batch's node sync rows, read and written together.
    node_syncs: NodeSyncBatch,
    /// The batch's health observations, read and written together.
    observations: ObservationBatch,
    clusters: Vec<Cluster>,
    events: Vec<Vec<Value>>,
    audits: Vec<Vec<Value>>,
}

impl WriteTx {
    /// Wraps an engine transaction.
    pub(crate) fn new(tx: Box<dyn Tx>, dialect: &'static Dialect, chain: TxChain) -> WriteTx {
        WriteTx {
            tx,
            dialect,
            chain,
            taken: None,
            node_syncs: NodeSyncBatch::default(),
            observations: ObservationBatch::default(),
            clusters: Vec::new(),
            events: Vec::new(),
            audits: Vec::new(),
        }
    }

    /// The dialect of the transaction's database.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        self.dialect
    }

    /// Runs a statement of another resource's module (`client_rows`, …)
    /// inside the transaction, after the buffered registrations, node sync
    /// rows and observations are written (and forgetting the rows read).
    pub(crate) async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        self.flush_all().await?;
        self.tx.execute(sql).await
    }

    /// Writes `rows` with multi-row statements `head (…), (…) tail` inside
    /// the transaction (see [`WriteTx::execute`] and [`write_rows`]).
    pub(crate) async fn execute_rows(
        &mut self,
        head: &str,
        rows: Vec<Vec<Value>>,
        tail: &str,
    ) -> Result<(), StoreError> {
        self.flush_all().await?;
        write_rows(&mut *self.tx, head, rows, tail).await
    }

    /// Reads rows inside the transaction (see [`WriteTx::execute`]).
    pub(crate) async fn fetch(&mut self, sql: &Sql) -> Result<Vec<crate::sql::Row>, StoreError> {
        self.flush_all().await?;
        self.tx.fetch(sql).await
    }

    /// Notes the nodes whose sync rows the batch's writes will read, in
    /// batch order, so the first read loads them all.
    pub(crate) fn expect_node_syncs<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.node_syncs.expect(names);
    }

    /// A node's id and sync state by name, with the batch's staged changes
    /// (see [`NodeSyncBatch::read`]).
    pub(crate) async fn node_sync(
        &mut self,
        name: &DnsLabel,
    ) -> Result<Option<(Uuid, NodeSync)>, StoreError> {
        self.flush_clusters().await?;
        self.node_syncs
            .read(&mut *self.tx, self.dialect, name)
            .await
    }

    /// Changes a node's sync row (the columns an observation changes),
    /// written with the batch's others before the next other statement or
    /// at commit.
    pub(crate) fn stage_node_sync(&mut self, id: Uuid, sync: &NodeSync) {
        self.node_syncs.stage(id, sync);
    }

    /// Locks (PostgreSQL: row lock until commit, so revisions become visible
    /// in order across replicas) and reads the last assigned revision.
    pub(crate) async fn lock_revision(&mut self) -> Result<i64, StoreError> {
        let sql = Sql::new(format!(
            "SELECT value FROM meta WHERE key = 'revision'{}",
            self.dialect.lock_row
        ));
        self.tx.fetch_one(&sql).await?.get_at(0)
    }

    /// Stores the last assigned revision.
    pub(crate) async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        let sql = Sql::new("UPDATE meta SET value = $1 WHERE key = 'revision'").arg(revision);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// Looks up which of `names` are taken, so that the batch's registrations
    /// can be decided in memory and written together.
    pub(crate) async fn prepare_inserts(&mut self, names: &[&str]) -> Result<(), StoreError> {
        // Padded to a power of two by repeating the last name (harmless in
        // `IN`), so the statement texts are few and SQLite prepares each once;
        // planned at every execution, so PostgreSQL plans for the table's
        // size now, statistics or not.
        let padded = names.len().next_power_of_two();
        let last = names.last().copied().unwrap_or_default();
        let mut sql = Sql::new("SELECT name FROM clusters WHERE name IN ");
        sql.planned_each_time().bind_tuple(
            names
                .iter()
                .copied()
                .chain(std::iter::repeat(last))
                .take(padded)
                .map(Value::from),
        );
        let scope = self.dialect.name_lookup_scope;
        if let Some((before, _)) = scope {
            self.tx.execute(&Sql::new(before)).await?;
        }
        let rows = self.tx.fetch(&sql).await?;
        if let Some((_, after)) = scope {
            self.tx.execute(&Sql::new(after)).await?;
        }
        self.taken = Some(
            rows.iter()
                .map(|row| row.get_at::<String>(0))
                .collect::<Result<_, _>>()?,
        );
        Ok(())
    }

    /// Inserts a cluster; `false` when the name is taken (nothing written).
    pub(crate) async fn insert_cluster(&mut self, cluster: &Cluster) -> Result<bool, StoreError> {
        if let Some(taken) = self.taken.as_mut() {
            if !taken.insert(cluster.name.as_str().to_owned()) {
                return Ok(false);
            }
            self.clusters.push(cluster.clone());
            return Ok(true);
        }
        let mut sql = Sql::new(CLUSTER_INSERT);
        sql.bind_tuple(cluster_values(cluster)?)
            .push(" ON CONFLICT (name) DO NOTHING");
        let inserted = self.tx.execute(&sql).await? == 1;
        if inserted {
            self.insert_labels(std::slice::from_ref(cluster)).await?;
        }
        Ok(inserted)
    }

    /// Reads a cluster inside the transaction (locking its row on PostgreSQL).
    pub(crate) async fn load_cluster(&mut self, id: Uuid) -> Result<Option<Cluster>, StoreError> {
        self.flush_clusters().await?;
        self.observations.write(&mut *self.tx).await?;
        let mut sql = Sql::new(format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.id = "
        ));
        sql.bind(id).push(self.dialect.lock_row);
        let row = self.tx.fetch_optional(&sql).await?;
        row.as_ref().map(cluster_from_row).transpose()
    }

    /// Rewrites a cluster's metadata, labels and revision.
    pub(crate) async fn update_cluster(&mut self, c: &Cluster) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        let sql = Sql::new(
            "UPDATE clusters SET display_name = $2, api_server_url = $3, cluster_type = $4, \
             platform = $5, platform_version = $6, region = $7, environment = $8, labels = $9, \
             endpoints = $10, revision = $11, updated_at = $12 WHERE id = $1",
        )
        .arg(c.id)
        .arg(&c.display_name)
        .arg(&c.api_server_url)
        .arg(c.cluster_type.as_str())
        .arg(c.platform.as_str())
        .arg(&c.platform_version)
        .arg(&c.region)
        .arg(c.environment.as_str())
        .arg(Value::json(&c.labels)?)
        .arg(Value::json(&c.endpoints)?)
        .arg(c.revision)
        .arg(c.updated_at);
        self.tx.execute(&sql).await?;
        self.delete_labels(c.id).await?;
        self.insert_labels(std::slice::from_ref(c)).await
    }

    /// Deletes a cluster and its labels.
    pub(crate) async fn delete_cluster(&mut self, id: Uuid) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        self.taken = None;
        self.observations.write(&mut *self.tx).await?;
        self.observations.forget();
        self.delete_labels(id).await?;
        let sql = Sql::new("DELETE FROM clusters WHERE id = $1").arg(id);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// Notes the clusters the batch's health observations are of, so the
    /// first one reads them all.
    pub(crate) fn expect_observations(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        self.observations.expect(ids);
    }

    /// What an observation needs of cluster `id` (`None`: no such cluster),
    /// with the batch's observations before it (see [`ObservationBatch`]).
    /// Buffered registrations are not flushed first: their ids were made in
    /// this batch, so no observation can name them.
    pub(crate) async fn observed(&mut self, id: Uuid) -> Result<Option<Observed>, StoreError> {
        self.observations
            .read(&mut *self.tx, self.dialect, id)
            .await
    }

    /// Records a health observation of cluster `id`: status, score and
    /// `last_seen_at`, plus a history sample taken at `sample_at` when
    /// given; written with the batch's others.
    pub(crate) fn stage_observation(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
        sample_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.observations.stage(id, status, last_seen_at, sample_at)
    }

    /// Writes capabilities and their indexed columns.
    pub(crate) async fn update_capabilities(
        &mut self,
        id: Uuid,
        caps: &Capabilities,
        platform_version: Option<&str>,
    ) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        let sql = Sql::new(
            "UPDATE clusters SET capabilities = $2, has_gpu = $3, gpu_count = $4, has_cnf = $5, \
             platform_version = COALESCE($6, platform_version) WHERE id = $1",
        )
        .arg(id)
        .arg(Value::json(caps)?)
        .arg(caps.has_gpu_nodes)
        .arg(caps.gpu_count)
        .arg(caps.has_cnf)
        .arg(platform_version);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// The current credentials of a cluster, inside the transaction.
    pub(crate) async fn load_credentials(
        &mut self,
        cluster_id: Uuid,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials WHERE cluster_id = $1"
        ))
        .arg(cluster_id);
        let row = self.tx.fetch_optional(&sql).await?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    /// Inserts or replaces a cluster's credentials row.
    pub(crate) async fn upsert_credentials(
        &mut self,
        c: &StoredCredentials,
    ) -> Result<(), StoreError> {
        let sql = Sql::new(
            "INSERT INTO cluster_credentials (cluster_id, version, auth_type, sealed, key_id, \
             expires_at, created_at, updated_at, origins, unbound_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (cluster_id) DO UPDATE SET version = excluded.version, \
             auth_type = excluded.auth_type, sealed = excluded.sealed, key_id = excluded.key_id, \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
             origins = excluded.origins, unbound_at = excluded.unbound_at",
        )
        .arg(c.cluster_id)
        .arg(c.version)
        .arg(c.auth_type.as_str())
        .arg(Value::json(&c.sealed)?)
        .arg(&c.key_id)
        .arg(c.expires_at)
        .arg(c.created_at)
        .arg(c.updated_at)
        .arg(Value::json(&c.origins)?)
        .arg(c.unbound_at);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// Sets the origins a cluster's credentials are bound to and when they
    /// were unbound (`None`: bound); version, secrets and timestamps kept.
    pub(crate) async fn set_credentials_binding(
        &mut self,
        cluster_id: Uuid,
        origins: &fleetreg_model::CredentialOrigins,
        unbound_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let sql = Sql::new(
            "UPDATE cluster_credentials SET origins = $1, unbound_at = $2 WHERE cluster_id = $3",
        )
        .arg(Value::json(origins)?)
        .arg(unbound_at)
        .arg(cluster_id);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// Deletes a cluster's credentials; `false` when there were none.
    pub(crate) async fn delete_credentials(
        &mut self,
        cluster_id: Uuid,
    ) -> Result<bool, StoreError> {
        let sql = Sql::new("DELETE FROM cluster_credentials WHERE cluster_id = $1").arg(cluster_id);
        Ok(self.tx.execute(&sql).await? > 0)
    }

    /// Sets a cluster's sealed map and key id (version and timestamps kept)
    /// while its version is `rewrap.expected_version`; `false` when it is not
    /// (or there are no credentials).
    pub(crate) async fn rewrap_credentials(
        &mut self,
        r: &RewrapCredentials,
    ) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "UPDATE cluster_credentials SET sealed = $1, key_id = $2 \
             WHERE cluster_id = $3 AND version = $4",
        )
        .arg(Value::json(&r.sealed)?)
        .arg(&r.key_id)
        .arg(r.cluster_id)
        .arg(r.expected_version);
        Ok(self.tx.execute(&sql).await? == 1)
    }

    /// Inserts or replaces the vault canary.
    pub(crate) async fn replace_vault_canary(
        &mut self,
        sealed: &str,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = Sql::new(
            "INSERT INTO vault_canary (id, sealed, key_id, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, key_id = excluded.key_id, \
             created_at = excluded.created_at",
        )
        .arg(sealed)
        .arg(key_id)
        .arg(at);
        self.tx.execute(&sql).await?;
        Ok(())
    }

    /// Inserts an API token (by hash); with `replace`, one of the same name is
    /// replaced: revoked (if it was not already) and renamed aside, never
    /// deleted, so its hash keeps answering "revoked" if it is offered again.
    /// `false` when the name is taken and not replaced.
    pub(crate) async fn insert_token(
        &mut self,
        t: &ApiToken,
        hash: &str,
        replace: bool,
    ) -> Result<bool, StoreError> {
        if replace {
            let sql = Sql::new(
                "UPDATE api_tokens SET name = name || $2, revoked_at = COALESCE(revoked_at, $3) \
                 WHERE name = $1",
            )
            .arg(&t.name)
            .arg(format!("~replaced-by-{}", t.id))
            .arg(t.created_at);
            self.tx.execute(&sql).await?;
        }
        let sql = Sql::new(
            "INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_at, expires_at, \
             revoked_at, node) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8) \
             ON CONFLICT (name) DO NOTHING",
        )
        .arg(t.id)
        .arg(&t.name)
        .arg(t.role.as_str())
        .arg(hash)
        .arg(&t.prefix)
        .arg(t.created_at)
        .arg(t.expires_at)
        .arg(t.node.as_deref());
        Ok(self.tx.execute(&sql).await? == 1)
    }

    /// Marks a token revoked at `at`; `false` when there is no such active token.
    pub(crate) async fn revoke_token(
        &mut self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql =
            Sql::new("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .arg(id)
                .arg(at);
        Ok(self.tx.execute(&sql).await? == 1)
    }

    /// Replaces a token's stored hash `from` by `to`; `false` when the token
    /// no longer has `from`.
    pub(crate) async fn rekey_token(
        &mut self,
        id: Uuid,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let sql =
            Sql::new("UPDATE api_tokens SET token_hash = $3 WHERE id = $1 AND token_hash = $2")
                .arg(id)
                .arg(from)
                .arg(to);
        Ok(self.tx.execute(&sql).await? == 1)
    }

    /// Appends a change-log entry (written at commit).
    pub(crate) fn append_event(&mut self, e: &Event) -> Result<(), StoreError> {
        self.events.push(vec![
            Value::from(e.revision),
            Value::from(e.event_type.as_str()),
            Value::from(e.occurred_at),
            Value::from(&e.resource),
            Value::from(e.resource_id),
            Value::json(&e.payload)?,
        ]);
        Ok(())
    }

    /// Appends an audit entry: the next id in the chain, sealed with the audit
    /// key (`mac = HMAC(key, prev_mac || entry)`), in insert order (written
    /// at commit).
    pub(crate) async fn append_audit(
        &mut self,
        record: &AuditRecord<'_>,
    ) -> Result<(), StoreError> {
        if !self.chain.is_loaded() {
            // Under the write lock (SQLite's, or PostgreSQL's `meta.revision`
            // row lock): no other writer extends the chain until commit.
            let sql = Sql::new("SELECT id, mac FROM audit_log ORDER BY id DESC LIMIT 1");
            let tail = match self.tx.fetch_optional(&sql).await? {
                Some(row) => (row.get::<i64>("id")?, row.get::<Option<String>>("mac")?),
                None => (0, None),
            };
            self.chain.load(tail.0, tail.1.as_deref());
        }
        let mut entry = record.to_entry();
        let link: AuditLink = self.chain.extend(&mut entry)?;
        self.audits.push(vec![
            Value::from(record.at),
            Value::from(&record.audit.actor),
            Value::from(&record.audit.role),
            Value::from(record.action),
            Value::from(record.resource()),
            Value::from(record.resource_id),
            Value::from(audit_result_str(&record.result)),
            Value::from(record.error_code.map(ErrorCode::as_str)),
            Value::from(record.revision),
            Value::from(&record.audit.source),
            Value::from(&record.audit.request_id),
            Value::from(link.id),
            Value::from(link.mac),
            Value::from(link.key_id),
        ]);
        Ok(())
    }

    /// Writes what is buffered and commits durably; then publishes the new
    /// audit chain head.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        self.flush_all().await?;
        let events = std::mem::take(&mut self.events);
        let head = format!("INSERT INTO changes ({EVENT_COLUMNS}) VALUES ");
        self.insert_rows(&head, events).await?;
        let audits = std::mem::take(&mut self.audits);
        self.insert_rows(AUDIT_INSERT, audits).await?;
        self.tx.commit().await?;
        self.chain.publish();
        Ok(())
    }

    /// `INSERT … VALUES (…), (…)` (see [`write_rows`]).
    async fn insert_rows(&mut self, head: &str, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
        write_rows(&mut *self.tx, head, rows, "").await
    }

    /// Writes everything buffered (registrations, staged node sync rows and
    /// observations) before another statement, which may change the rows
    /// read.
    async fn flush_all(&mut self) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        self.node_syncs.write(&mut *self.tx).await?;
        self.node_syncs.forget();
        self.observations.write(&mut *self.tx).await?;
        self.observations.forget();
        Ok(())
    }

    /// Writes the buffered registrations and their labels.
    async fn flush_clusters(&mut self) -> Result<(), StoreError> {
        if self.clusters.is_empty() {
            return Ok(());
        }
        let clusters = std::mem::take(&mut self.clusters);
        let rows = clusters
            .iter()
            .map(cluster_values)
            .collect::<Result<Vec<_>, _>>()?;
        self.insert_rows(CLUSTER_INSERT, rows).await?;
        self.insert_labels(&clusters).await
    }

    /// Mirrors labels into the `cluster_labels` side table (SQLite only).
    async fn insert_labels(&mut self, clusters: &[Cluster]) -> Result<(), StoreError> {
        if self.dialect.labels != LabelMatch::SideTable {
            return Ok(());
        }
        let rows: Vec<Vec<Value>> = clusters
            .iter()
            .flat_map(|c| {
                c.labels
                    .iter()
                    .map(|(k, v)| vec![Value::from(k), Value::from(v), Value::from(c.id)])
            })
            .collect();
        self.insert_rows(
            "INSERT INTO cluster_labels (key, value, cluster_id) VALUES ",
            rows,
        )
        .await
    }

    async fn delete_labels(&mut self, id: Uuid) -> Result<(), StoreError> {
        if self.dialect.labels != LabelMatch::SideTable {
            return Ok(());
        }
        let sql = Sql::new("DELETE FROM cluster_labels WHERE cluster_id = $1").arg(id);
        self.tx.execute(&sql).await?;
        Ok(())
    }
}

/// A registration's values in [`CLUSTER_INSERT`]'s column order.
fn cluster_values(c: &Cluster) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::from(c.id),
        Value::from(c.name.as_str()),
        Value::from(&c.display_name),
        Value::from(&c.api_server_url),
        Value::from(c.cluster_type.as_str()),
        Value::from(c.platform.as_str()),
        Value::from(&c.platform_version),
        Value::from(&c.region),
        Value::from(c.environment.as_str()),
        Value::json(&c.labels)?,
        Value::json(&c.endpoints)?,
        Value::Json(None),
        Value::json(&c.status)?,
        Value::from(state_str(&c.status)),
        Value::from(c.status.health_score),
        Value::from(c.revision),
        Value::from(c.created_at),
        Value::from(c.created_at),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        for rows in [1, 2, 3, 60, 255, 256, 257, 1000] {
            let mut left = rows;
            let mut sizes = Vec::new();
            while left > 0 {
                let chunk = super::chunk_size(left);
                assert!(chunk.is_power_of_two() && chunk <= super::ROWS_PER_STATEMENT);
                left -= chunk;
                sizes.push(chunk);
            }
            assert_eq!(sizes.iter().sum::<usize>(), rows);
        }
        assert_eq!(super::chunk_size(60), 32);
    }
}
