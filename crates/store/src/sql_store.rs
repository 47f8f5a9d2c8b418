//! [`SqlStore`]: the one implementation of [`Store`], for both engines.
//! Reads run here over the engine's readers; writes are queued to the
//! group-commit writer (`writer.rs`, SQL in `write_tx.rs`).

use crate::audit_chain::ChainConfig;
use crate::count_cache::CountCache;
use crate::decode::{
    audit_from_row, chained_audit_from_row, cluster_from_row, credentials_from_row, event_from_row,
    expiring_from_row, token_from_row, AUDIT_CHAIN_COLUMNS, AUDIT_COLUMNS, CLUSTER_COLUMNS,
    CREDENTIAL_COLUMNS, EVENT_COLUMNS, TOKEN_COLUMNS,
};
use crate::engine::Engine;
use crate::query::push_audit_filter;
use crate::query::push_cluster_filter;
use crate::query::push_event_filter;
use crate::sql::{Row, Sql};
use crate::writer::{
    AuditOnly, BindCredentials, CreateToken, DeleteCluster, DeleteCredentials, InsertCluster,
    PutCredentials, RecordStatus, RekeyTokens, ReplaceVaultCanary, RevokeToken, RewrapCredentials,
    SetCapabilities, UpdateCluster, WriteBackend, Writer, WriterTask,
};
use crate::{
    AuditHead, AuditQuery, Backend, ChainedAuditEntry, ClusterList, EventPage, KeyUsage, Store,
    StoreError, StoreOptions, TokenRekey,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    ApiToken, Audit, AuditEntry, Capabilities, Clock, Cluster, ClusterFilter, ClusterPatch,
    ClusterStatus, ClusterType, Event, EventFilter, ExpiringCredentials, FleetCapabilities,
    FleetHealth, FleetSummary, HealthSample, NewCluster, Page, StoredCredentials,
};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// Rows removed per statement by the retention deletes.
const PRUNE_BATCH: i64 = 5000;

/// The store, on SQLite or PostgreSQL.
pub struct SqlStore {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) writer: Writer,
    // std Mutex: taken once at close, never held across an await.
    writer_task: Mutex<Option<WriterTask>>,
    revision: watch::Receiver<i64>,
    audit_head: watch::Receiver<Option<AuditHead>>,
    counts: CountCache<ClusterFilter>,
    pub(crate) client_counts: CountCache<fleetreg_model::ClientFilter>,
    clock: Clock,
}

impl SqlStore {
    /// Opens the database named by `url` (`sqlite://PATH`, created if
    /// missing, or `postgres://…`), migrates it and starts the writer.
    pub async fn open(url: &str, options: StoreOptions) -> Result<SqlStore, StoreError> {
        let engine = crate::engine::open(url).await?;
        let latest: i64 = engine
            .fetch_one(&Sql::new("SELECT value FROM meta WHERE key = 'revision'"))
            .await?
            .get_at(0)?;
        let (revision_tx, revision) = watch::channel(latest);
        let (head_tx, audit_head) = watch::channel(None);
        let backend = WriteBackend {
            engine: engine.clone(),
            chain: Arc::new(ChainConfig {
                keys: options.audit_keys.clone(),
                head: head_tx,
            }),
            clock: options.clock.clone(),
        };
        let (writer, task) = Writer::spawn(backend, revision_tx, options.history_sample)?;
        Ok(SqlStore {
            engine,
            writer,
            writer_task: Mutex::new(Some(task)),
            revision,
            audit_head,
            counts: CountCache::default(),
            client_counts: CountCache::default(),
            clock: options.clock,
        })
    }

    /// The rows of `sql` decoded with `decode`.
    pub(crate) async fn fetch_as<T>(
        &self,
        sql: &Sql,
        decode: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.engine.fetch(sql).await?.iter().map(decode).collect()
    }

    /// The first row of `sql` decoded with `decode`, if any.
    pub(crate) async fn fetch_optional_as<T>(
        &self,
        sql: &Sql,
        decode: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.engine
            .fetch_optional(sql)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// A `meta` counter.
    async fn meta(&self, key: &str) -> Result<i64, StoreError> {
        let sql = Sql::new("SELECT value FROM meta WHERE key = $1").arg(key);
        self.engine.fetch_one(&sql).await?.get_at(0)
    }

    /// `SELECT <columns> FROM clusters c WHERE <filter> ORDER BY c.name LIMIT … OFFSET …`.
    fn page_sql(&self, columns: &str, filter: &ClusterFilter, page: Page) -> Sql {
        let mut sql = Sql::new(format!("SELECT {columns} FROM clusters c"));
        push_cluster_filter(&mut sql, filter, self.engine.dialect().labels);
        sql.push(" ORDER BY c.name LIMIT ")
            .bind(i64::from(page.page_size))
            .push(" OFFSET ")
            .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX));
        sql
    }

    /// The common case of a list in ONE statement: the page and the revision
    /// it was read at come from the same snapshot, and the total from the
    /// count cache at that revision. `None` when the page is empty or the
    /// total is not cached; the caller then takes the transaction path, which
    /// fills the cache.
    async fn list_clusters_one_statement(
        &self,
        filter: &ClusterFilter,
        page: Page,
    ) -> Result<Option<ClusterList>, StoreError> {
        let columns = format!(
            "(SELECT value FROM meta WHERE key = 'revision') AS read_revision, {CLUSTER_COLUMNS}"
        );
        let rows = self
            .engine
            .fetch(&self.page_sql(&columns, filter, page))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let revision: i64 = first.get("read_revision")?;
        let Some(total) = self.counts.get(filter, revision) else {
            return Ok(None);
        };
        let items = rows
            .iter()
            .map(cluster_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ClusterList {
            items,
            total,
            revision,
        }))
    }

    /// The database's plans for a list's count and page queries over
    /// `table c` with the filter `push_filter` appends, one line per step.
    pub(crate) async fn explain_list(
        &self,
        table: &str,
        columns: &str,
        push_filter: impl Fn(&mut Sql),
    ) -> Result<String, StoreError> {
        let dialect = self.engine.dialect();
        let mut tx = self.engine.snapshot().await?;
        if let Some(setup) = dialect.explain_setup {
            tx.execute(&Sql::new(setup)).await?;
        }
        let mut plan = String::new();
        for select in [
            format!("SELECT COUNT(*) FROM {table} c"),
            format!("SELECT {columns} FROM {table} c"),
        ] {
            let mut sql = Sql::new(format!("{}{select}", dialect.explain));
            push_filter(&mut sql);
            if !select.contains("COUNT") {
                sql.push(" ORDER BY c.name LIMIT 20");
            }
            for row in tx.fetch(&sql).await? {
                plan.push_str(&row.get_at::<String>(dialect.explain_column)?);
                plan.push('\n');
            }
        }
        tx.commit().await?;
        Ok(plan)
    }

    /// Deletes with `delete` (one batch of at most [`PRUNE_BATCH`] rows per
    /// call, each its own short transaction) until a batch comes back short.
    async fn delete_in_batches(&self, delete: impl Fn() -> Sql) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let n = self.engine.execute(&delete()).await?;
            removed += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.engine.dialect().backend
    }

    fn durability(&self) -> &str {
        self.engine.durability()
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.engine.fetch(&Sql::new("SELECT 1")).await?;
        Ok(())
    }

    async fn insert_cluster(&self, new: NewCluster, audit: &Audit) -> Result<Cluster, StoreError> {
        self.writer.write(InsertCluster(new), audit).await
    }

    async fn get_cluster(&self, id: Uuid) -> Result<Cluster, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.id = "
        ));
        sql.bind(id);
        self.fetch_optional_as(&sql, cluster_from_row)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn find_cluster_by_name(&self, name: &str) -> Result<Option<Cluster>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.name = "
        ));
        sql.bind(name);
        self.fetch_optional_as(&sql, cluster_from_row).await
    }

    async fn list_clusters(
        &self,
        filter: &ClusterFilter,
        page: Page,
    ) -> Result<ClusterList, StoreError> {
        if let Some(list) = self.list_clusters_one_statement(filter, page).await? {
            return Ok(list);
        }
        let mut tx = self.engine.snapshot().await?;
        let revision: i64 = tx
            .fetch_one(&Sql::new("SELECT value FROM meta WHERE key = 'revision'"))
            .await?
            .get_at(0)?;
        let total = match self.counts.get(filter, revision) {
            Some(total) => total,
            None => {
                let mut sql = Sql::new("SELECT COUNT(*) FROM clusters c");
                push_cluster_filter(&mut sql, filter, self.engine.dialect().labels);
                let total: i64 = tx.fetch_one(&sql).await?.get_at(0)?;
                let total = u64::try_from(total).unwrap_or_default();
                self.counts.put(filter, revision, total);
                total
            }
        };
        let items = if page.offset() >= total {
            Vec::new()
        } else {
            let rows = tx
                .fetch(&self.page_sql(CLUSTER_COLUMNS, filter, page))
                .await?;
            rows.iter()
                .map(cluster_from_row)
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.commit().await?;
        Ok(ClusterList {
            items,
            total,
            revision,
        })
    }

    async fn explain_list_clusters(&self, filter: &ClusterFilter) -> Result<String, StoreError> {
        let labels = self.engine.dialect().labels;
        self.explain_list("clusters", CLUSTER_COLUMNS, |sql| {
            push_cluster_filter(sql, filter, labels)
        })
        .await
    }

    async fn update_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        patch: ClusterPatch,
        audit: &Audit,
    ) -> Result<Cluster, StoreError> {
        let update = UpdateCluster {
            id,
            expected_revision,
            patch,
        };
        self.writer.write(update, audit).await
    }

    async fn delete_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let delete = DeleteCluster {
            id,
            expected_revision,
            confirm: false,
            dry_run: false,
        };
        self.writer.write(delete, audit).await.map(drop)
    }

    async fn record_status(
        &self,
        id: Uuid,
        status: ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Event>, StoreError> {
        let observation = RecordStatus {
            id,
            status,
            last_seen_at,
        };
        self.writer
            .write(observation, &Audit::system("health"))
            .await
    }

    async fn set_capabilities(
        &self,
        id: Uuid,
        capabilities: Capabilities,
        platform_version: Option<String>,
    ) -> Result<Option<Event>, StoreError> {
        let discovered = SetCapabilities {
            id,
            capabilities,
            platform_version,
        };
        self.writer
            .write(discovered, &Audit::system("discovery"))
            .await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<EventPage, StoreError> {
        self.events_matching(after, &EventFilter::default(), limit)
            .await
    }

    async fn events_matching(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let mut tx = self.engine.snapshot().await?;
        let row = tx
            .fetch_one(&Sql::new(
                "SELECT (SELECT value FROM meta WHERE key = 'revision'), \
                 (SELECT value FROM meta WHERE key = 'pruned_through')",
            ))
            .await?;
        let (latest, pruned): (i64, i64) = (row.get_at(0)?, row.get_at(1)?);
        if after < pruned {
            tx.commit().await?;
            return Err(StoreError::EventsExpired {
                after,
                oldest_revision: pruned + 1,
                latest_revision: latest,
            });
        }
        let mut sql = Sql::new(format!(
            "SELECT {EVENT_COLUMNS} FROM changes WHERE revision > "
        ));
        sql.bind(after);
        push_event_filter(&mut sql, filter);
        sql.push(" ORDER BY revision LIMIT ").bind(i64::from(limit));
        let items = tx
            .fetch(&sql)
            .await?
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        let scanned_through = match items.last() {
            Some(last) if items.len() >= limit as usize => last.revision,
            last => latest.max(after).max(last.map_or(after, |e| e.revision)),
        };
        Ok(EventPage {
            items,
            latest_revision: latest,
            scanned_through,
        })
    }

    async fn latest_revision(&self) -> Result<i64, StoreError> {
        self.meta("revision").await
    }

    async fn prune_events(&self, before: DateTime<Utc>, keep_from: i64) -> Result<u64, StoreError> {
        // A prefix of the log: up to the oldest event that is kept (it
        // occurred at or after `before`), found by reading in revision order
        // from the oldest, which needs no index on the time (one b-tree fewer
        // for every event written); every event when none is kept. A clock
        // stepped back keeps events longer; it never removes one that
        // occurred after `before`. One statement, so one snapshot: an event
        // committed meanwhile is neither the one kept nor below the cut.
        let sql = Sql::new(
            "SELECT COALESCE((SELECT revision FROM changes \
             WHERE revision <= $2 AND occurred_at >= $1 ORDER BY revision LIMIT 1) - 1, \
             (SELECT MAX(revision) FROM changes WHERE revision <= $2))",
        )
        .arg(before)
        .arg(keep_from);
        let cutoff = self
            .engine
            .fetch_one(&sql)
            .await?
            .get_at::<Option<i64>>(0)?;
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        // Raise the mark first: a reader must never find a hole below it
        // without being told the events expired.
        let mark = Sql::new(format!(
            "UPDATE meta SET value = {}(value, $1) WHERE key = 'pruned_through'",
            self.engine.dialect().greatest
        ))
        .arg(cutoff);
        self.engine.execute(&mark).await?;
        self.delete_in_batches(|| {
            Sql::new(
                "DELETE FROM changes WHERE revision IN \
                 (SELECT revision FROM changes WHERE revision <= $1 ORDER BY revision LIMIT $2)",
            )
            .arg(cutoff)
            .arg(PRUNE_BATCH)
        })
        .await
    }

    async fn list_health_history(
        &self,
        id: Uuid,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<HealthSample>, StoreError> {
        let exists = Sql::new("SELECT COUNT(*) FROM clusters WHERE id = $1").arg(id);
        if self.engine.fetch_one(&exists).await?.get_at::<i64>(0)? == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let mut sql =
            Sql::new("SELECT status, checked_at FROM cluster_health_history WHERE cluster_id = ");
        sql.bind(id);
        if let Some(since) = since {
            sql.push(" AND checked_at >= ").bind(since);
        }
        sql.push(" ORDER BY checked_at DESC, id DESC LIMIT ")
            .bind(i64::from(limit));
        self.fetch_as(&sql, |row| {
            let status: ClusterStatus = row.json("status")?;
            Ok(HealthSample {
                checked_at: row.get("checked_at")?,
                state: status.state,
                health_score: status.health_score,
                status,
            })
        })
        .await
    }

    async fn prune_health_history(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_in_batches(|| {
            Sql::new(
                "DELETE FROM cluster_health_history WHERE id IN \
                 (SELECT id FROM cluster_health_history WHERE checked_at < $1 LIMIT $2)",
            )
            .arg(before)
            .arg(PRUNE_BATCH)
        })
        .await
    }

    async fn outbox_cursor(&self) -> Result<i64, StoreError> {
        self.meta("outbox_published").await
    }

    async fn set_outbox_cursor(&self, revision: i64) -> Result<(), StoreError> {
        let sql = Sql::new(format!(
            "UPDATE meta SET value = {}(value, $1) WHERE key = 'outbox_published'",
            self.engine.dialect().greatest
        ))
        .arg(revision);
        self.engine.execute(&sql).await?;
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = Sql::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        push_audit_filter(&mut sql, query);
        self.engine
            .scan(&sql)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn list_audit_chain(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ChainedAuditEntry>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {AUDIT_CHAIN_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .arg(after_id)
        .arg(i64::from(limit));
        self.fetch_as(&sql, chained_audit_from_row).await
    }

    fn watch_audit_head(&self) -> watch::Receiver<Option<AuditHead>> {
        self.audit_head.clone()
    }

    fn watch_revision(&self) -> watch::Receiver<i64> {
        self.revision.clone()
    }

    async fn close(&self) {
        let task = self
            .writer_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.stop().await;
        }
        self.engine.close().await;
    }

    async fn fleet_summary(&self) -> Result<FleetSummary, StoreError> {
        crate::fleet::fleet_summary(self.engine.as_ref()).await
    }

    async fn fleet_health(
        &self,
        stale_before: &[(ClusterType, DateTime<Utc>)],
        limit: u32,
    ) -> Result<FleetHealth, StoreError> {
        crate::fleet::fleet_health(self.engine.as_ref(), stale_before, limit).await
    }

    async fn fleet_capabilities(&self) -> Result<FleetCapabilities, StoreError> {
        crate::fleet::fleet_capabilities(self.engine.as_ref()).await
    }

    async fn get_credentials(
        &self,
        cluster_id: Uuid,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials WHERE cluster_id = $1"
        ))
        .arg(cluster_id);
        self.fetch_optional_as(&sql, credentials_from_row).await
    }

    async fn put_credentials(
        &self,
        put: PutCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError> {
        self.writer.write(put, audit).await
    }

    async fn bind_credentials(
        &self,
        bind: BindCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError> {
        self.writer.write(bind, audit).await
    }

    async fn delete_credentials(&self, cluster_id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.writer
            .write(DeleteCredentials(cluster_id), audit)
            .await
    }

    async fn append_audit(&self, entry: AuditOnly, audit: &Audit) -> Result<(), StoreError> {
        self.writer.write(entry, audit).await
    }

    async fn expiring_credentials(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiringCredentials>, StoreError> {
        let sql = Sql::new(
            "SELECT k.cluster_id, c.name, k.version, k.auth_type, k.expires_at \
             FROM cluster_credentials k JOIN clusters c ON c.id = k.cluster_id \
             WHERE k.expires_at IS NOT NULL AND k.expires_at < $1 \
             ORDER BY k.expires_at, c.name LIMIT $2",
        )
        .arg(before)
        .arg(i64::from(limit));
        let now = self.clock.now();
        self.engine
            .fetch(&sql)
            .await?
            .iter()
            .map(|row| expiring_from_row(row, now))
            .collect()
    }

    async fn count_expiring_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "SELECT COUNT(*) FROM cluster_credentials \
             WHERE expires_at IS NOT NULL AND expires_at < $1",
        )
        .arg(before);
        let count: i64 = self.engine.fetch_one(&sql).await?.get_at(0)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn create_token(
        &self,
        token: ApiToken,
        hash: String,
        replace: bool,
        audit: &Audit,
    ) -> Result<ApiToken, StoreError> {
        let create = CreateToken {
            token,
            hash,
            replace,
        };
        self.writer.write(create, audit).await
    }

    async fn revoke_token(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.writer.write(RevokeToken(id), audit).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
        ))
        .arg(hash);
        self.fetch_optional_as(&sql, token_from_row).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, name"
        ));
        self.fetch_as(&sql, token_from_row).await
    }

    async fn token_hashes(&self) -> Result<Vec<(Uuid, String)>, StoreError> {
        let sql = Sql::new("SELECT id, token_hash FROM api_tokens ORDER BY created_at, name");
        self.fetch_as(&sql, |row| Ok((row.get("id")?, row.get("token_hash")?)))
            .await
    }

    async fn rekey_tokens(
        &self,
        changes: Vec<TokenRekey>,
        audit: &Audit,
    ) -> Result<u64, StoreError> {
        if changes.is_empty() {
            return Ok(0);
        }
        self.writer.write(RekeyTokens(changes), audit).await
    }

    async fn database_id(&self) -> Result<String, StoreError> {
        // Stored as a signed 64-bit integer; shown as its 16 hex digits.
        Ok(format!("{:016x}", self.meta("database_id").await? as u64))
    }

    async fn vault_canary(&self) -> Result<Option<String>, StoreError> {
        let sql = Sql::new("SELECT sealed FROM vault_canary WHERE id = 1");
        self.fetch_optional_as(&sql, |row| row.get_at(0)).await
    }

    async fn init_vault_canary(&self, sealed: &str, key_id: &str) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "INSERT INTO vault_canary (id, sealed, key_id, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .arg(sealed)
        .arg(key_id)
        .arg(self.clock.now());
        Ok(self.engine.execute(&sql).await? == 1)
    }

    async fn replace_vault_canary(
        &self,
        sealed: &str,
        key_id: &str,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let canary = ReplaceVaultCanary {
            sealed: sealed.to_owned(),
            key_id: key_id.to_owned(),
        };
        self.writer.write(canary, audit).await
    }

    async fn list_sealed_credentials(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<StoredCredentials>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials"
        ));
        if let Some(after) = after {
            sql.push(" WHERE cluster_id > ").bind(after);
        }
        sql.push(" ORDER BY cluster_id LIMIT ")
            .bind(i64::from(limit));
        self.fetch_as(&sql, credentials_from_row).await
    }

    async fn rewrap_credentials(
        &self,
        rewrap: RewrapCredentials,
        audit: &Audit,
    ) -> Result<bool, StoreError> {
        self.writer.write(rewrap, audit).await
    }

    async fn credential_key_usage(&self) -> Result<Vec<KeyUsage>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT key_id, COUNT(*), CAST(COALESCE(SUM({}), 0) AS BIGINT) \
             FROM cluster_credentials GROUP BY key_id ORDER BY key_id",
            (self.engine.dialect().json_key_count)("sealed")
        ));
        self.fetch_as(&sql, |row| {
            Ok(KeyUsage {
                key_id: row.get_at(0)?,
                clusters: u64::try_from(row.get_at::<i64>(1)?).unwrap_or_default(),
                envelopes: u64::try_from(row.get_at::<i64>(2)?).unwrap_or_default(),
            })
        })
        .await
    }
}
