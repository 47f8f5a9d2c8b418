//! The SQLite store: one WAL database file, `synchronous=FULL`, one write
//! connection driven by the group-commit writer and a small pool of readers.

use crate::audit_chain::{AuditLink, ChainConfig, TxChain};
use crate::count_cache::CountCache;
use crate::decode::{
    audit_from_row, audit_result_str, cluster_from_row, credentials_from_row, event_from_row,
    expiring_from_row, state_str, token_from_row, AUDIT_COLUMNS, CLUSTER_COLUMNS,
    CREDENTIAL_COLUMNS, EVENT_COLUMNS, TOKEN_COLUMNS,
};
use crate::decode::{chained_audit_from_row, AUDIT_CHAIN_COLUMNS};
use crate::query::{push_audit_filter, push_cluster_filter, LabelMatch};
use crate::writer::{
    AuditOnly, AuditRecord, PutCredentials, RewrapCredentials, WriteBackend, WriteTx, Writer,
};
use crate::{AuditQuery, Backend, ClusterList, EventPage, Store, StoreError, StoreOptions};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    format_timestamp, Audit, AuditEntry, Capabilities, Cluster, ClusterFilter, ClusterPatch,
    ClusterStatus, Event, ExpiringCredentials, HealthSample, NewCluster, Page, StoredCredentials,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

const READERS: u32 = 4;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    writer: Writer,
    // std Mutex: taken once at close, never held across an await.
    writer_task: Mutex<Option<JoinHandle<()>>>,
    revision: watch::Receiver<i64>,
    audit_head: watch::Receiver<Option<crate::AuditHead>>,
    counts: CountCache,
    durability: String,
}

fn ts(t: &DateTime<Utc>) -> String {
    format_timestamp(t)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`SqliteStore::open`] with non-default options.
    pub async fn open_with(url: &str, store_options: StoreOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&write)
            .await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&write)
            .await?;
        let durability = format!(
            "sqlite journal_mode={journal} synchronous={}",
            match synchronous {
                0 => "OFF",
                1 => "NORMAL",
                2 => "FULL",
                3 => "EXTRA",
                _ => "UNKNOWN",
            }
        );
        let latest: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&write)
            .await?;
        let (revision_tx, revision) = watch::channel(latest);
        let (head_tx, audit_head) = watch::channel(None);
        let (writer, task) = Writer::spawn(
            SqliteWriteBackend {
                pool: write.clone(),
                chain: Arc::new(ChainConfig {
                    keys: store_options.audit_keys.clone(),
                    head: head_tx,
                }),
            },
            revision_tx,
            store_options.history_sample,
        );
        Ok(SqliteStore {
            read,
            write,
            writer,
            writer_task: Mutex::new(Some(task)),
            revision,
            audit_head,
            counts: CountCache::default(),
            durability,
        })
    }

    /// The common case of a list in ONE statement (each statement is a round trip
    /// to the connection's worker thread): the page and the revision it was read
    /// at come from the same snapshot, and the total from the count cache at that
    /// revision. `None` when the page is empty or the total is not cached; the
    /// caller then takes the transaction path, which fills the cache.
    async fn list_clusters_one_statement(
        &self,
        filter: &ClusterFilter,
        page: Page,
    ) -> Result<Option<ClusterList>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT (SELECT value FROM meta WHERE key = 'revision') AS read_revision, \
             {CLUSTER_COLUMNS} FROM clusters c"
        ));
        push_cluster_filter(&mut qb, filter, LabelMatch::SideTable);
        qb.push(" ORDER BY c.name LIMIT ")
            .push_bind(i64::from(page.page_size))
            .push(" OFFSET ")
            .push_bind(i64::try_from(page.offset()).unwrap_or(i64::MAX));
        let rows = qb.build().fetch_all(&self.read).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let revision: i64 = first.try_get("read_revision")?;
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

    /// The read pool, for tests that inspect query plans.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }
}

struct SqliteWriteBackend {
    pool: SqlitePool,
    chain: Arc<ChainConfig>,
}

#[async_trait]
impl WriteBackend for SqliteWriteBackend {
    async fn begin(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // IMMEDIATE takes the write lock up front instead of upgrading mid-batch.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        Ok(Box::new(SqliteTx {
            conn: Some(conn),
            taken: None,
            clusters: Vec::new(),
            events: Vec::new(),
            audits: Vec::new(),
            chain: TxChain::new(self.chain.clone()),
        }))
    }
}

struct SqliteTx {
    conn: Option<sqlx::pool::PoolConnection<Sqlite>>,
    // Change-log and audit rows are only appended inside a write transaction,
    // never read back by it, so they are buffered and written with one
    // multi-row INSERT each just before COMMIT (one statement per batch instead
    // of one per write; each statement is a round trip to the worker thread).
    events: Vec<PendingEvent>,
    audits: Vec<PendingAudit>,
    // Registrations of a batch are buffered the same way: `prepare_inserts`
    // looks up which of the batch's names are taken (one statement), and while
    // `taken` is known an insert is decided in memory and written with the
    // others in one multi-row INSERT. Any other write first flushes the buffer
    // (so it sees the rows) and a delete forgets `taken` (it may free a name).
    // The UNIQUE constraint still stands behind this: a conflict fails the
    // batch, which the writer then retries one write at a time.
    taken: Option<std::collections::HashSet<String>>,
    clusters: Vec<Cluster>,
    chain: TxChain,
}

/// A change-log row waiting for the commit, already encoded.
struct PendingEvent {
    revision: i64,
    event_type: &'static str,
    occurred_at: String,
    resource: String,
    resource_id: Uuid,
    payload: String,
}

/// An audit row waiting for the commit.
struct PendingAudit {
    at: String,
    actor: String,
    role: Option<String>,
    action: &'static str,
    resource: &'static str,
    resource_id: Option<Uuid>,
    result: &'static str,
    error_code: Option<&'static str>,
    revision: Option<i64>,
    source: Option<String>,
    request_id: Option<String>,
    link: AuditLink,
}

/// Most rows in one multi-row INSERT (well below SQLite's bound-parameter limit).
const ROWS_PER_INSERT: usize = 500;

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // A transaction dropped without commit is rolled back; the connection is
        // closed rather than returned with an open transaction.
        if let Some(conn) = self.conn.take() {
            let _ = conn.detach();
        }
    }
}

impl SqliteTx {
    fn conn(&mut self) -> Result<&mut sqlx::SqliteConnection, StoreError> {
        self.conn.as_deref_mut().ok_or(StoreError::Closed)
    }

    /// Writes the buffered change-log and audit rows (audit rows in the order
    /// they were appended, so their ids follow the writes).
    async fn flush_appends(&mut self) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.events);
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("INSERT INTO changes ({EVENT_COLUMNS}) "));
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.revision)
                    .push_bind(e.event_type)
                    .push_bind(&e.occurred_at)
                    .push_bind(&e.resource)
                    .push_bind(e.resource_id)
                    .push_bind(&e.payload);
            });
            qb.build().execute(self.conn()?).await?;
        }
        let audits = std::mem::take(&mut self.audits);
        for chunk in audits.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO audit_log (at, actor, role, action, resource, resource_id, result, error_code, revision, source, request_id, id, mac, key_id) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.at)
                    .push_bind(&r.actor)
                    .push_bind(&r.role)
                    .push_bind(r.action)
                    .push_bind(r.resource)
                    .push_bind(r.resource_id)
                    .push_bind(r.result)
                    .push_bind(r.error_code)
                    .push_bind(r.revision)
                    .push_bind(&r.source)
                    .push_bind(&r.request_id)
                    .push_bind(r.link.id)
                    .push_bind(&r.link.mac)
                    .push_bind(&r.link.key_id);
            });
            qb.build().execute(self.conn()?).await?;
        }
        Ok(())
    }

    /// Writes the buffered registrations and their labels.
    async fn flush_clusters(&mut self) -> Result<(), StoreError> {
        if self.clusters.is_empty() {
            return Ok(());
        }
        let clusters = std::mem::take(&mut self.clusters);
        for chunk in clusters.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO clusters (id, name, display_name, api_server_url, cluster_type, platform, platform_version, \
                 region, environment, labels, endpoints, capabilities, status, state, health_score, revision, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                let created = ts(&c.created_at);
                b.push_bind(c.id)
                    .push_bind(c.name.as_str().to_owned())
                    .push_bind(c.display_name.clone())
                    .push_bind(c.api_server_url.clone())
                    .push_bind(c.cluster_type.as_str())
                    .push_bind(c.platform.as_str())
                    .push_bind(c.platform_version.clone())
                    .push_bind(c.region.clone())
                    .push_bind(c.environment.as_str())
                    .push_bind(Json(c.labels.clone()))
                    .push_bind(Json(c.endpoints.clone()))
                    .push("NULL")
                    .push_bind(Json(c.status.clone()))
                    .push_bind(state_str(&c.status))
                    .push_bind(c.status.health_score)
                    .push_bind(c.revision)
                    .push_bind(created.clone())
                    .push_bind(created);
            });
            qb.build().execute(self.conn()?).await?;
        }
        let labels: Vec<(&String, &String, Uuid)> = clusters
            .iter()
            .flat_map(|c| c.labels.iter().map(move |(k, v)| (k, v, c.id)))
            .collect();
        for chunk in labels.chunks(ROWS_PER_INSERT * 2) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO cluster_labels (key, value, cluster_id) ");
            qb.push_values(chunk, |mut b, (key, value, id)| {
                b.push_bind((*key).clone())
                    .push_bind((*value).clone())
                    .push_bind(*id);
            });
            qb.build().execute(self.conn()?).await?;
        }
        Ok(())
    }

    async fn insert_labels(&mut self, cluster: &Cluster) -> Result<(), StoreError> {
        if cluster.labels.is_empty() {
            return Ok(());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO cluster_labels (key, value, cluster_id) ");
        qb.push_values(&cluster.labels, |mut b, (key, value)| {
            b.push_bind(key.clone())
                .push_bind(value.clone())
                .push_bind(cluster.id);
        });
        qb.build().execute(self.conn()?).await?;
        Ok(())
    }
}

#[async_trait]
impl WriteTx for SqliteTx {
    async fn lock_revision(&mut self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
                .fetch_one(self.conn()?)
                .await?,
        )
    }

    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'revision'")
            .bind(revision)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn prepare_inserts(&mut self, names: &[&str]) -> Result<(), StoreError> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT name FROM clusters WHERE name IN (");
        let mut list = qb.separated(", ");
        for name in names {
            list.push_bind(*name);
        }
        qb.push(")");
        let taken: Vec<String> = qb.build_query_scalar().fetch_all(self.conn()?).await?;
        self.taken = Some(taken.into_iter().collect());
        Ok(())
    }

    async fn insert_cluster(&mut self, c: &Cluster) -> Result<bool, StoreError> {
        if let Some(taken) = self.taken.as_mut() {
            if !taken.insert(c.name.as_str().to_owned()) {
                return Ok(false);
            }
            self.clusters.push(c.clone());
            return Ok(true);
        }
        let inserted = sqlx::query(
            "INSERT INTO clusters (id, name, display_name, api_server_url, cluster_type, platform, platform_version, \
             region, environment, labels, endpoints, capabilities, status, state, health_score, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14, $15, $16, $16) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(c.id)
        .bind(c.name.as_str())
        .bind(&c.display_name)
        .bind(&c.api_server_url)
        .bind(c.cluster_type.as_str())
        .bind(c.platform.as_str())
        .bind(&c.platform_version)
        .bind(&c.region)
        .bind(c.environment.as_str())
        .bind(Json(&c.labels))
        .bind(Json(&c.endpoints))
        .bind(Json(&c.status))
        .bind(state_str(&c.status))
        .bind(c.status.health_score)
        .bind(c.revision)
        .bind(ts(&c.created_at))
        .execute(self.conn()?)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            self.insert_labels(c).await?;
        }
        Ok(inserted)
    }

    async fn load_cluster(&mut self, id: Uuid) -> Result<Option<Cluster>, StoreError> {
        self.flush_clusters().await?;
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.conn()?)
            .await?;
        row.as_ref().map(cluster_from_row).transpose()
    }

    async fn update_cluster(&mut self, c: &Cluster) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        sqlx::query(
            "UPDATE clusters SET display_name = $2, api_server_url = $3, cluster_type = $4, platform = $5, \
             platform_version = $6, region = $7, environment = $8, labels = $9, endpoints = $10, revision = $11, \
             updated_at = $12 WHERE id = $1",
        )
        .bind(c.id)
        .bind(&c.display_name)
        .bind(&c.api_server_url)
        .bind(c.cluster_type.as_str())
        .bind(c.platform.as_str())
        .bind(&c.platform_version)
        .bind(&c.region)
        .bind(c.environment.as_str())
        .bind(Json(&c.labels))
        .bind(Json(&c.endpoints))
        .bind(c.revision)
        .bind(ts(&c.updated_at))
        .execute(self.conn()?)
        .await?;
        sqlx::query("DELETE FROM cluster_labels WHERE cluster_id = $1")
            .bind(c.id)
            .execute(self.conn()?)
            .await?;
        self.insert_labels(c).await
    }

    async fn delete_cluster(&mut self, id: Uuid) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        self.taken = None;
        sqlx::query("DELETE FROM cluster_labels WHERE cluster_id = $1")
            .bind(id)
            .execute(self.conn()?)
            .await?;
        sqlx::query("DELETE FROM clusters WHERE id = $1")
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn update_status(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        sqlx::query("UPDATE clusters SET status = $2, state = $3, health_score = $4, last_seen_at = $5 WHERE id = $1")
            .bind(id)
            .bind(Json(status))
            .bind(state_str(status))
            .bind(status.health_score)
            .bind(last_seen_at.as_ref().map(ts))
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn update_capabilities(
        &mut self,
        id: Uuid,
        caps: &Capabilities,
        platform_version: Option<&str>,
    ) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        sqlx::query(
            "UPDATE clusters SET capabilities = $2, has_gpu = $3, gpu_count = $4, has_cnf = $5, \
             platform_version = COALESCE($6, platform_version) WHERE id = $1",
        )
        .bind(id)
        .bind(Json(caps))
        .bind(caps.has_gpu_nodes)
        .bind(caps.gpu_count)
        .bind(caps.has_cnf)
        .bind(platform_version)
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    async fn insert_token(
        &mut self,
        t: &fleetreg_model::ApiToken,
        hash: &str,
        replace: bool,
    ) -> Result<bool, StoreError> {
        if replace {
            sqlx::query("DELETE FROM api_tokens WHERE name = $1")
                .bind(&t.name)
                .execute(self.conn()?)
                .await?;
        }
        let done = sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) ON CONFLICT (name) DO NOTHING",
        )
        .bind(t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(hash)
        .bind(&t.prefix)
        .bind(ts(&t.created_at))
        .bind(t.expires_at.as_ref().map(ts))
        .execute(self.conn()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_token(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(ts(&at))
        .execute(self.conn()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_credentials(
        &mut self,
        cluster_id: Uuid,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let sql =
            format!("SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials WHERE cluster_id = $1");
        let row = sqlx::query(&sql)
            .bind(cluster_id)
            .fetch_optional(self.conn()?)
            .await?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn upsert_credentials(&mut self, c: &StoredCredentials) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        sqlx::query(
            "INSERT INTO cluster_credentials (cluster_id, version, auth_type, sealed, key_id, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (cluster_id) DO UPDATE SET version = excluded.version, auth_type = excluded.auth_type, \
             sealed = excluded.sealed, key_id = excluded.key_id, expires_at = excluded.expires_at, \
             updated_at = excluded.updated_at",
        )
        .bind(c.cluster_id)
        .bind(c.version)
        .bind(c.auth_type.as_str())
        .bind(Json(&c.sealed))
        .bind(&c.key_id)
        .bind(c.expires_at.as_ref().map(ts))
        .bind(ts(&c.created_at))
        .bind(ts(&c.updated_at))
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    async fn delete_credentials(&mut self, cluster_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM cluster_credentials WHERE cluster_id = $1")
            .bind(cluster_id)
            .execute(self.conn()?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rewrap_credentials(&mut self, r: &RewrapCredentials) -> Result<bool, StoreError> {
        self.flush_clusters().await?;
        let done = sqlx::query(
            "UPDATE cluster_credentials SET sealed = $1, key_id = $2 \
             WHERE cluster_id = $3 AND version = $4",
        )
        .bind(Json(&r.sealed))
        .bind(&r.key_id)
        .bind(r.cluster_id)
        .bind(r.expected_version)
        .execute(self.conn()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_vault_canary(
        &mut self,
        sealed: &str,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vault_canary (id, sealed, key_id, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, key_id = excluded.key_id, \
             created_at = excluded.created_at",
        )
        .bind(sealed)
        .bind(key_id)
        .bind(ts(&at))
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    async fn last_history_at(&mut self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT checked_at FROM cluster_health_history WHERE cluster_id = $1 \
             ORDER BY checked_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.conn()?)
        .await?)
    }

    async fn append_history(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        checked_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.flush_clusters().await?;
        sqlx::query(
            "INSERT INTO cluster_health_history (cluster_id, status, state, health_score, checked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(Json(status))
        .bind(state_str(status))
        .bind(status.health_score)
        .bind(ts(&checked_at))
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    async fn append_event(&mut self, e: &Event) -> Result<(), StoreError> {
        // Encoded as `Json(&payload)` would be: compact JSON text.
        let payload =
            serde_json::to_string(&e.payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.events.push(PendingEvent {
            revision: e.revision,
            event_type: e.event_type.as_str(),
            occurred_at: ts(&e.occurred_at),
            resource: e.resource.clone(),
            resource_id: e.resource_id,
            payload,
        });
        Ok(())
    }

    fn chain(&mut self) -> &mut TxChain {
        &mut self.chain
    }

    async fn audit_tail(&mut self) -> Result<(i64, Option<String>), StoreError> {
        // Buffered rows are not in the table yet: the writer asks once per
        // transaction, before its first audit entry.
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, mac FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(self.conn()?)
                .await?;
        Ok(row.unwrap_or((0, None)))
    }

    async fn insert_audit(
        &mut self,
        r: &AuditRecord<'_>,
        link: &AuditLink,
    ) -> Result<(), StoreError> {
        self.audits.push(PendingAudit {
            link: link.clone(),
            at: ts(&r.at),
            actor: r.audit.actor.clone(),
            role: r.audit.role.clone(),
            action: r.action,
            resource: r.resource(),
            resource_id: r.resource_id,
            result: audit_result_str(&r.result),
            error_code: r.error_code,
            revision: r.revision,
            source: r.audit.source.clone(),
            request_id: r.audit.request_id.clone(),
        });
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        // On failure the transaction is dropped: rolled back, connection closed.
        self.flush_clusters().await?;
        self.flush_appends().await?;
        let mut conn = self.conn.take().ok_or(StoreError::Closed)?;
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => {
                self.chain.publish();
                Ok(())
            }
            Err(e) => {
                let _ = conn.detach();
                Err(e.into())
            }
        }
    }
}

async fn read_revision(tx: &mut Transaction<'static, Sqlite>) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&mut **tx)
            .await?,
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn durability(&self) -> &str {
        &self.durability
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn insert_cluster(&self, new: NewCluster, audit: &Audit) -> Result<Cluster, StoreError> {
        self.writer.insert_cluster(new, audit).await
    }

    async fn get_cluster(&self, id: Uuid) -> Result<Cluster, StoreError> {
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref()
            .map(cluster_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn find_cluster_by_name(&self, name: &str) -> Result<Option<Cluster>, StoreError> {
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(cluster_from_row).transpose()
    }

    async fn list_clusters(
        &self,
        filter: &ClusterFilter,
        page: Page,
    ) -> Result<ClusterList, StoreError> {
        if let Some(list) = self.list_clusters_one_statement(filter, page).await? {
            return Ok(list);
        }
        let mut tx = self.read.begin().await?;
        let revision = read_revision(&mut tx).await?;
        let total = match self.counts.get(filter, revision) {
            Some(total) => total,
            None => {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("SELECT COUNT(*) FROM clusters c");
                push_cluster_filter(&mut qb, filter, LabelMatch::SideTable);
                let total: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await?;
                let total = u64::try_from(total).unwrap_or_default();
                self.counts.put(filter, revision, total);
                total
            }
        };
        let items = if page.offset() >= total {
            Vec::new()
        } else {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {CLUSTER_COLUMNS} FROM clusters c"));
            push_cluster_filter(&mut qb, filter, LabelMatch::SideTable);
            qb.push(" ORDER BY c.name LIMIT ")
                .push_bind(i64::from(page.page_size))
                .push(" OFFSET ")
                .push_bind(i64::try_from(page.offset()).unwrap_or(i64::MAX));
            let rows = qb.build().fetch_all(&mut *tx).await?;
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
        let mut plan = String::new();
        for select in [
            "SELECT COUNT(*) FROM clusters c".to_owned(),
            format!("SELECT {CLUSTER_COLUMNS} FROM clusters c"),
        ] {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("EXPLAIN QUERY PLAN {select}"));
            push_cluster_filter(&mut qb, filter, LabelMatch::SideTable);
            if !select.contains("COUNT") {
                qb.push(" ORDER BY c.name LIMIT 20");
            }
            for row in qb.build().fetch_all(&self.read).await? {
                use sqlx::Row;
                plan.push_str(&row.try_get::<String, _>("detail")?);
                plan.push('\n');
            }
        }
        Ok(plan)
    }

    async fn update_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        patch: ClusterPatch,
        audit: &Audit,
    ) -> Result<Cluster, StoreError> {
        self.writer
            .update_cluster(id, expected_revision, patch, audit)
            .await
    }

    async fn delete_cluster(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        self.writer
            .delete_cluster(id, expected_revision, audit)
            .await
    }

    async fn record_status(
        &self,
        id: Uuid,
        status: ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Event>, StoreError> {
        self.writer.record_status(id, status, last_seen_at).await
    }

    async fn set_capabilities(
        &self,
        id: Uuid,
        capabilities: Capabilities,
        platform_version: Option<String>,
    ) -> Result<Option<Event>, StoreError> {
        self.writer
            .set_capabilities(id, capabilities, platform_version)
            .await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<EventPage, StoreError> {
        let mut tx = self.read.begin().await?;
        let latest = read_revision(&mut tx).await?;
        let pruned: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'pruned_through'")
            .fetch_one(&mut *tx)
            .await?;
        if after < pruned {
            return Err(StoreError::EventsExpired {
                after,
                oldest_revision: pruned + 1,
                latest_revision: latest,
            });
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM changes WHERE revision > $1 ORDER BY revision LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(EventPage {
            items,
            latest_revision: latest,
        })
    }

    async fn latest_revision(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    async fn prune_events(&self, before: DateTime<Utc>, keep_from: i64) -> Result<u64, StoreError> {
        let cutoff: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(revision) FROM changes WHERE occurred_at < $1 AND revision <= $2",
        )
        .bind(ts(&before))
        .bind(keep_from)
        .fetch_one(&self.read)
        .await?;
        let Some(cutoff) = cutoff else { return Ok(0) };
        let mut removed = 0;
        loop {
            // Batched deletes keep each write transaction short.
            let mut tx = self.write.begin().await?;
            let n = sqlx::query("DELETE FROM changes WHERE revision IN (SELECT revision FROM changes WHERE revision <= $1 ORDER BY revision LIMIT 5000)")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE meta SET value = MAX(value, $1) WHERE key = 'pruned_through'")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            removed += n;
            if n < 5000 {
                return Ok(removed);
            }
        }
    }

    async fn list_health_history(
        &self,
        id: Uuid,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<HealthSample>, StoreError> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM clusters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let rows = sqlx::query(
            "SELECT status, checked_at FROM cluster_health_history \
             WHERE cluster_id = $1 AND ($2 IS NULL OR checked_at >= $2) \
             ORDER BY checked_at DESC, id DESC LIMIT $3",
        )
        .bind(id)
        .bind(since.as_ref().map(ts))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let status = row.try_get::<Json<ClusterStatus>, _>("status")?.0;
                Ok(HealthSample {
                    checked_at: row.try_get("checked_at")?,
                    state: status.state,
                    health_score: status.health_score,
                    status,
                })
            })
            .collect()
    }

    async fn prune_health_history(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            // Batched deletes keep each write transaction short.
            let n = sqlx::query(
                "DELETE FROM cluster_health_history WHERE id IN \
                 (SELECT id FROM cluster_health_history WHERE checked_at < $1 LIMIT 5000)",
            )
            .bind(ts(&before))
            .execute(&self.write)
            .await?
            .rows_affected();
            removed += n;
            if n < 5000 {
                return Ok(removed);
            }
        }
    }

    async fn outbox_cursor(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'outbox_published'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    async fn set_outbox_cursor(&self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE meta SET value = MAX(value, $1) WHERE key = 'outbox_published'")
            .bind(revision)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        push_audit_filter(&mut qb, query, |t, qb| {
            qb.push_bind(ts(&t));
        });
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter().map(audit_from_row).collect()
    }

    fn watch_revision(&self) -> watch::Receiver<i64> {
        self.revision.clone()
    }

    async fn list_audit_chain(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<crate::ChainedAuditEntry>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_CHAIN_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(chained_audit_from_row).collect()
    }

    fn watch_audit_head(&self) -> watch::Receiver<Option<crate::AuditHead>> {
        self.audit_head.clone()
    }

    async fn close(&self) {
        let task = self
            .writer_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.read.close().await;
        self.write.close().await;
    }

    async fn fleet_summary(&self) -> Result<fleetreg_model::FleetSummary, StoreError> {
        crate::fleet::sqlite::fleet_summary(&self.read).await
    }

    async fn fleet_health(
        &self,
        stale_before: &[(fleetreg_model::ClusterType, DateTime<Utc>)],
        limit: u32,
    ) -> Result<fleetreg_model::FleetHealth, StoreError> {
        crate::fleet::sqlite::fleet_health(&self.read, stale_before, limit).await
    }

    async fn fleet_capabilities(&self) -> Result<fleetreg_model::FleetCapabilities, StoreError> {
        crate::fleet::sqlite::fleet_capabilities(&self.read).await
    }

    async fn get_credentials(
        &self,
        cluster_id: Uuid,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let sql =
            format!("SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials WHERE cluster_id = $1");
        let row = sqlx::query(&sql)
            .bind(cluster_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn put_credentials(
        &self,
        put: PutCredentials,
        audit: &Audit,
    ) -> Result<StoredCredentials, StoreError> {
        self.writer.put_credentials(put, audit).await
    }

    async fn delete_credentials(&self, cluster_id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.writer.delete_credentials(cluster_id, audit).await
    }

    async fn append_audit(&self, entry: AuditOnly, audit: &Audit) -> Result<(), StoreError> {
        self.writer.append_audit(entry, audit).await
    }

    async fn expiring_credentials(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiringCredentials>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.cluster_id, c.name, k.version, k.auth_type, k.expires_at \
             FROM cluster_credentials k JOIN clusters c ON c.id = k.cluster_id \
             WHERE k.expires_at IS NOT NULL AND k.expires_at < $1 \
             ORDER BY k.expires_at, c.name LIMIT $2",
        )
        .bind(ts(&before))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        let now = fleetreg_model::now();
        rows.iter().map(|row| expiring_from_row(row, now)).collect()
    }

    async fn count_expiring_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM cluster_credentials WHERE expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(ts(&before))
        .fetch_one(&self.read)
        .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn create_token(
        &self,
        token: fleetreg_model::ApiToken,
        hash: String,
        replace: bool,
        audit: &Audit,
    ) -> Result<fleetreg_model::ApiToken, StoreError> {
        self.writer.create_token(token, hash, replace, audit).await
    }

    async fn revoke_token(&self, id: Uuid, audit: &Audit) -> Result<(), StoreError> {
        self.writer.revoke_token(id, audit).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<fleetreg_model::ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<fleetreg_model::ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, name");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn vault_canary(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM vault_canary WHERE id = 1")
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn init_vault_canary(&self, sealed: &str, key_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO vault_canary (id, sealed, key_id, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(sealed)
        .bind(key_id)
        .bind(ts(&fleetreg_model::now()))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_vault_canary(
        &self,
        sealed: &str,
        key_id: &str,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        self.writer
            .replace_vault_canary(sealed, key_id, audit)
            .await
    }

    async fn list_sealed_credentials(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<StoredCredentials>, StoreError> {
        crate::vault::sqlite::list_sealed_credentials(&self.read, after, limit).await
    }

    async fn rewrap_credentials(
        &self,
        rewrap: RewrapCredentials,
        audit: &Audit,
    ) -> Result<bool, StoreError> {
        self.writer.rewrap_credentials(rewrap, audit).await
    }

    async fn credential_key_usage(&self) -> Result<Vec<crate::KeyUsage>, StoreError> {
        crate::vault::sqlite::credential_key_usage(&self.read).await
    }
}
