//! Reads behind master-key rotation: paging through every cluster's sealed
//! credentials, and how much each master key id wraps. The writes (re-wrap,
//! canary) go through the writer like every other write.

use crate::decode::{credentials_from_row, CREDENTIAL_COLUMNS};
use crate::{KeyUsage, StoreError};
use fleetreg_model::StoredCredentials;
use uuid::Uuid;

/// `SELECT … FROM cluster_credentials` after `after` (if any) in id order.
fn list_sql(after: Option<Uuid>) -> String {
    let filter = if after.is_some() {
        "WHERE cluster_id > $1 ORDER BY cluster_id LIMIT $2"
    } else {
        "ORDER BY cluster_id LIMIT $1"
    };
    format!("SELECT {CREDENTIAL_COLUMNS} FROM cluster_credentials {filter}")
}

fn usage(rows: Vec<(String, i64, i64)>) -> Vec<KeyUsage> {
    rows.into_iter()
        .map(|(key_id, clusters, envelopes)| KeyUsage {
            key_id,
            clusters: u64::try_from(clusters).unwrap_or_default(),
            envelopes: u64::try_from(envelopes).unwrap_or_default(),
        })
        .collect()
}

pub(crate) mod sqlite {
    use super::*;
    use sqlx::SqlitePool;

    /// See `Store::list_sealed_credentials`.
    pub(crate) async fn list_sealed_credentials(
        pool: &SqlitePool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<StoredCredentials>, StoreError> {
        let sql = list_sql(after);
        let mut query = sqlx::query(&sql);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(pool).await?;
        rows.iter().map(credentials_from_row).collect()
    }

    /// See `Store::credential_key_usage`.
    pub(crate) async fn credential_key_usage(
        pool: &SqlitePool,
    ) -> Result<Vec<KeyUsage>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, COUNT(*), \
             COALESCE(SUM((SELECT COUNT(*) FROM json_each(sealed))), 0) \
             FROM cluster_credentials GROUP BY key_id ORDER BY key_id",
        )
        .fetch_all(pool)
        .await?;
        Ok(usage(rows))
    }
}

pub(crate) mod postgres {
    use super::*;
    use sqlx::PgPool;

    /// See `Store::list_sealed_credentials`.
    pub(crate) async fn list_sealed_credentials(
        pool: &PgPool,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<StoredCredentials>, StoreError> {
        let sql = list_sql(after);
        let mut query = sqlx::query(&sql);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(pool).await?;
        rows.iter().map(credentials_from_row).collect()
    }

    /// See `Store::credential_key_usage`.
    pub(crate) async fn credential_key_usage(pool: &PgPool) -> Result<Vec<KeyUsage>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, COUNT(*)::BIGINT, \
             COALESCE(SUM((SELECT COUNT(*) FROM jsonb_object_keys(sealed))), 0)::BIGINT \
             FROM cluster_credentials GROUP BY key_id ORDER BY key_id",
        )
        .fetch_all(pool)
        .await?;
        Ok(usage(rows))
    }
}
