//! The PostgreSQL store: a group-commit writer on its own connection that holds
//! the `meta.revision` row lock until commit (so revisions become visible in
//! order even with several replicas), and a pool of readers.

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
    Audit, AuditEntry, Capabilities, Cluster, ClusterFilter, ClusterPatch, ClusterStatus, Event,
    ExpiringCredentials, HealthSample, NewCluster, Page, StoredCredentials,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row;
use sqlx::{Postgres, QueryBuilder, Transaction};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    read: PgPool,
    write: PgPool,
    writer: Writer,
    // std Mutex: taken once at close, never held across an await.
    writer_task: Mutex<Option<JoinHandle<()>>>,
    revision: watch::Receiver<i64>,
    audit_head: watch::Receiver<Option<crate::AuditHead>>,
    counts: CountCache,
    durability: String,
}

impl PostgresStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`PostgresStore::open`] with non-default options.
    pub async fn open_with(url: &str, store_options: StoreOptions) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let write = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&write).await?;
        let read = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&write)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&write).await?;
        let durability = format!("postgres synchronous_commit={synchronous_commit} fsync={fsync}");
        let latest: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&write)
            .await?;
        let (revision_tx, revision) = watch::channel(latest);
        let (head_tx, audit_head) = watch::channel(None);
        let (writer, task) = Writer::spawn(
            PgWriteBackend {
                pool: write.clone(),
                chain: Arc::new(ChainConfig {
                    keys: store_options.audit_keys.clone(),
                    head: head_tx,
                }),
            },
            revision_tx,
            store_options.history_sample,
        );
        Ok(PostgresStore {
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

    /// The read pool, for tests that inspect query plans.
    pub fn read_pool(&self) -> &PgPool {
        &self.read
    }
}

struct PgWriteBackend {
    pool: PgPool,
    chain: Arc<ChainConfig>,
}

#[async_trait]
impl WriteBackend for PgWriteBackend {
    async fn begin(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(PgTx {
            tx: self.pool.begin().await?,
            chain: TxChain::new(self.chain.clone()),
        }))
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    chain: TxChain,
}

#[async_trait]
impl WriteTx for PgTx {
    async fn lock_revision(&mut self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision' FOR UPDATE")
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }

    async fn save_revision(&mut self, revision: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'revision'")
            .bind(revision)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_cluster(&mut self, c: &Cluster) -> Result<bool, StoreError> {
        Ok(sqlx::query(
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
        .bind(c.created_at)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1)
    }

    async fn load_cluster(&mut self, id: Uuid) -> Result<Option<Cluster>, StoreError> {
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters c WHERE c.id = $1 FOR UPDATE");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(cluster_from_row).transpose()
    }

    async fn update_cluster(&mut self, c: &Cluster) -> Result<(), StoreError> {
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
        .bind(c.updated_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_cluster(&mut self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM clusters WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn update_status(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        last_seen_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE clusters SET status = $2, state = $3, health_score = $4, last_seen_at = $5 WHERE id = $1")
            .bind(id)
            .bind(Json(status))
            .bind(state_str(status))
            .bind(status.health_score)
            .bind(last_seen_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn update_capabilities(
        &mut self,
        id: Uuid,
        caps: &Capabilities,
        platform_version: Option<&str>,
    ) -> Result<(), StoreError> {
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
        .execute(&mut *self.tx)
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
                .execute(&mut *self.tx)
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
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_token(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(at)
        .execute(&mut *self.tx)
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
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn upsert_credentials(&mut self, c: &StoredCredentials) -> Result<(), StoreError> {
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
        .bind(c.expires_at)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_credentials(&mut self, cluster_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM cluster_credentials WHERE cluster_id = $1")
            .bind(cluster_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rewrap_credentials(&mut self, r: &RewrapCredentials) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE cluster_credentials SET sealed = $1, key_id = $2 \
             WHERE cluster_id = $3 AND version = $4",
        )
        .bind(Json(&r.sealed))
        .bind(&r.key_id)
        .bind(r.cluster_id)
        .bind(r.expected_version)
        .execute(&mut *self.tx)
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
        .bind(at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn last_history_at(&mut self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT checked_at FROM cluster_health_history WHERE cluster_id = $1 \
             ORDER BY checked_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn append_history(
        &mut self,
        id: Uuid,
        status: &ClusterStatus,
        checked_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cluster_health_history (cluster_id, status, state, health_score, checked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(Json(status))
        .bind(state_str(status))
        .bind(status.health_score)
        .bind(checked_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn append_event(&mut self, e: &Event) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO changes ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(e.revision)
        .bind(e.event_type.as_str())
        .bind(e.occurred_at)
        .bind(&e.resource)
        .bind(e.resource_id)
        .bind(Json(&e.payload))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    fn chain(&mut self) -> &mut TxChain {
        &mut self.chain
    }

    async fn audit_tail(&mut self) -> Result<(i64, Option<String>), StoreError> {
        // Called after `lock_revision`: under the `meta.revision` row lock, so
        // no other replica extends the chain until this transaction commits.
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, mac FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(row.unwrap_or((0, None)))
    }

    async fn insert_audit(
        &mut self,
        r: &AuditRecord<'_>,
        link: &AuditLink,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, role, action, resource, resource_id, result, error_code, revision, source, request_id, id, mac, key_id) \
             VALUES ($1, $2, $3, $4, $11, $5, $6, $7, $8, $9, $10, $12, $13, $14)",
        )
        .bind(r.at)
        .bind(&r.audit.actor)
        .bind(&r.audit.role)
        .bind(r.action)
        .bind(r.resource_id)
        .bind(audit_result_str(&r.result))
        .bind(r.error_code)
        .bind(r.revision)
        .bind(&r.audit.source)
        .bind(&r.audit.request_id)
        .bind(r.resource())
        .bind(link.id)
        .bind(&link.mac)
        .bind(&link.key_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        self.chain.publish();
        Ok(())
    }
}

async fn snapshot(pool: &PgPool) -> Result<(Transaction<'static, Postgres>, i64), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let revision = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
        .fetch_one(&mut *tx)
        .await?;
    Ok((tx, revision))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
        let (mut tx, revision) = snapshot(&self.read).await?;
        let total = match self.counts.get(filter, revision) {
            Some(total) => total,
            None => {
                let mut qb: QueryBuilder<Postgres> =
                    QueryBuilder::new("SELECT COUNT(*) FROM clusters c");
                push_cluster_filter(&mut qb, filter, LabelMatch::JsonbContains);
                let total: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await?;
                let total = u64::try_from(total).unwrap_or_default();
                self.counts.put(filter, revision, total);
                total
            }
        };
        let items = if page.offset() >= total {
            Vec::new()
        } else {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new(format!("SELECT {CLUSTER_COLUMNS} FROM clusters c"));
            push_cluster_filter(&mut qb, filter, LabelMatch::JsonbContains);
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
        let mut tx = self.read.begin().await?;
        // Small test tables make sequential scans cheapest; this shows which
        // index the filter can use, as it would on a large table.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
        let mut plan = String::new();
        for select in [
            "SELECT COUNT(*) FROM clusters c".to_owned(),
            format!("SELECT {CLUSTER_COLUMNS} FROM clusters c"),
        ] {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("EXPLAIN {select}"));
            push_cluster_filter(&mut qb, filter, LabelMatch::JsonbContains);
            if !select.contains("COUNT") {
                qb.push(" ORDER BY c.name LIMIT 20");
            }
            for row in qb.build().fetch_all(&mut *tx).await? {
                use sqlx::Row;
                plan.push_str(&row.try_get::<String, _>(0)?);
                plan.push('\n');
            }
        }
        tx.rollback().await?;
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
        let (mut tx, latest) = snapshot(&self.read).await?;
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
        .bind(before)
        .bind(keep_from)
        .fetch_one(&self.read)
        .await?;
        let Some(cutoff) = cutoff else { return Ok(0) };
        let mut removed = 0;
        loop {
            // Batched deletes keep each transaction short.
            let mut tx = self.write.begin().await?;
            let n = sqlx::query("DELETE FROM changes WHERE revision IN (SELECT revision FROM changes WHERE revision <= $1 ORDER BY revision LIMIT 5000)")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE meta SET value = GREATEST(value, $1) WHERE key = 'pruned_through'")
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
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM clusters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let rows = sqlx::query(
            "SELECT status, checked_at FROM cluster_health_history \
             WHERE cluster_id = $1 AND ($2::timestamptz IS NULL OR checked_at >= $2) \
             ORDER BY checked_at DESC, id DESC LIMIT $3",
        )
        .bind(id)
        .bind(since)
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
            // Batched deletes keep each transaction short.
            let n = sqlx::query(
                "DELETE FROM cluster_health_history WHERE id IN \
                 (SELECT id FROM cluster_health_history WHERE checked_at < $1 LIMIT 5000)",
            )
            .bind(before)
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
        sqlx::query("UPDATE meta SET value = GREATEST(value, $1) WHERE key = 'outbox_published'")
            .bind(revision)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        push_audit_filter(&mut qb, query, |t, qb| {
            qb.push_bind(t);
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
        crate::fleet::postgres::fleet_summary(&self.read).await
    }

    async fn fleet_health(
        &self,
        stale_before: &[(fleetreg_model::ClusterType, DateTime<Utc>)],
        limit: u32,
    ) -> Result<fleetreg_model::FleetHealth, StoreError> {
        crate::fleet::postgres::fleet_health(&self.read, stale_before, limit).await
    }

    async fn fleet_capabilities(&self) -> Result<fleetreg_model::FleetCapabilities, StoreError> {
        crate::fleet::postgres::fleet_capabilities(&self.read).await
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
        .bind(before)
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
        .bind(before)
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
        .bind(fleetreg_model::now())
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
        crate::vault::postgres::list_sealed_credentials(&self.read, after, limit).await
    }

    async fn rewrap_credentials(
        &self,
        rewrap: RewrapCredentials,
        audit: &Audit,
    ) -> Result<bool, StoreError> {
        self.writer.rewrap_credentials(rewrap, audit).await
    }

    async fn credential_key_usage(&self) -> Result<Vec<crate::KeyUsage>, StoreError> {
        crate::vault::postgres::credential_key_usage(&self.read).await
    }
}
