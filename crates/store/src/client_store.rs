//! [`ClientStore`]: the client registry's part of the store boundary, and its
//! one implementation on [`SqlStore`] (reads here, writes queued to the
//! group-commit writer, SQL in `client_rows.rs`).

use crate::client_health_rows::{health_by_name, health_from_row};
use crate::client_rows::{
    client_from_row, history_from_row, maintenance_column, push_client_filter, CLIENT_COLUMNS,
    HISTORY_COLUMNS,
};
use crate::sql::Sql;
use crate::writer::{
    ChangeClient, ClientChange, CreateClient, DeleteClient, ImportClients, RecordClientHealth,
};
use crate::{SqlStore, StoreError};
use async_trait::async_trait;
use chrono::NaiveDate;
use fleetreg_model::{
    stale_cutoff, Audit, Client, ClientAction, ClientFilter, ClientHealth, ClientHistoryEntry,
    ClientName, ClientRole, ClientStatus, ClientSummary, ClientUpdateRequest, Event, ImportPlan,
    MaintenanceField, NewClient, Page,
};

/// One page of clients and the revision the list was read at.
#[derive(Debug, Clone)]
pub struct ClientList {
    /// The clients of the page, sorted by name.
    pub items: Vec<Client>,
    /// How many clients match the filter in all.
    pub total: u64,
    /// The change-log revision the list reflects.
    pub revision: i64,
}

/// The client registry's storage (a supertrait of [`crate::Store`]).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Registers a client; `ClientExists` when the name is taken.
    async fn create_client(&self, new: NewClient, audit: &Audit) -> Result<Client, StoreError>;

    /// Reads a client by name; `ClientNotFound` when there is none.
    async fn get_client(&self, name: &str) -> Result<Client, StoreError>;

    /// Lists clients matching `filter`, sorted by name, one page of them.
    async fn list_clients(
        &self,
        filter: &ClientFilter,
        page: Page,
    ) -> Result<ClientList, StoreError>;

    /// Every client, sorted by name, read in one snapshot (export).
    async fn all_clients(&self) -> Result<Vec<Client>, StoreError>;

    /// The database's plans for the count and page queries of a list with
    /// `filter`, one line per plan step (for tests and diagnosis).
    async fn explain_list_clients(&self, filter: &ClientFilter) -> Result<String, StoreError>;

    /// Replaces the fields `update` gives (`PUT`); with `expected_revision`
    /// fails unless it is current.
    async fn update_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        update: ClientUpdateRequest,
        audit: &Audit,
    ) -> Result<Client, StoreError>;

    /// Applies a lifecycle operation (deploy creates a missing client).
    async fn act_on_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        action: ClientAction,
        audit: &Audit,
    ) -> Result<Client, StoreError>;

    /// Removes a client's entry; its history stays readable.
    async fn delete_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError>;

    /// Upserts validated registry entries in one transaction (or, with
    /// `dry_run`, only says what it would do).
    async fn import_clients(
        &self,
        clients: Vec<NewClient>,
        dry_run: bool,
        audit: &Audit,
    ) -> Result<ImportPlan, StoreError>;

    /// Counts by status and role, app and version spread and stale counts,
    /// aggregated in the database in one snapshot.
    async fn client_summary(
        &self,
        stale_days: u32,
        today: NaiveDate,
    ) -> Result<ClientSummary, StoreError>;

    /// A client's past states, newest first, at most `limit`, with revisions
    /// below `before` when given; kept after destroy and deletion.
    /// `ClientNotFound` when the name never existed.
    async fn client_history(
        &self,
        name: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ClientHistoryEntry>, StoreError>;

    /// Records a client's live health (the periodic URL checks) as its last
    /// state. An observation, not a change: no revision of the client, no
    /// history row, no audit entry. Appends `CLIENT_HEALTH_CHANGED` (returned)
    /// only when `health.state` differs from the last recorded state (none
    /// recorded counts as `NOT_CHECKED`). Records nothing, and returns `None`,
    /// unless the client is `deployed` now (a check finishing after a move to
    /// maintenance says nothing about the client). `ClientNotFound` when the
    /// client (`health.client_id`) no longer exists.
    async fn record_client_health(&self, health: ClientHealth)
        -> Result<Option<Event>, StoreError>;

    /// The last live health recorded for the client named `name` (`None`
    /// when none was); `ClientNotFound` when there is no such client.
    async fn client_health(&self, name: &str) -> Result<Option<ClientHealth>, StoreError>;
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn create_client(&self, new: NewClient, audit: &Audit) -> Result<Client, StoreError> {
        self.writer.write(CreateClient(new), audit).await
    }

    async fn get_client(&self, name: &str) -> Result<Client, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.name = "
        ));
        sql.bind(name);
        self.fetch_optional_as(&sql, client_from_row)
            .await?
            .ok_or_else(|| StoreError::ClientNotFound(name.to_owned()))
    }

    async fn list_clients(
        &self,
        filter: &ClientFilter,
        page: Page,
    ) -> Result<ClientList, StoreError> {
        let mut tx = self.engine.snapshot().await?;
        let revision: i64 = tx
            .fetch_one(&Sql::new("SELECT value FROM meta WHERE key = 'revision'"))
            .await?
            .get_at(0)?;
        let total = match self.client_counts.get(filter, revision) {
            Some(total) => total,
            None => {
                let mut sql = Sql::new("SELECT COUNT(*) FROM clients c");
                push_client_filter(&mut sql, filter);
                let total = count(tx.fetch_one(&sql).await?.get_at(0)?);
                self.client_counts.put(filter, revision, total);
                total
            }
        };
        let items = if page.offset() >= total {
            Vec::new()
        } else {
            let mut sql = Sql::new(format!("SELECT {CLIENT_COLUMNS} FROM clients c"));
            push_client_filter(&mut sql, filter);
            sql.push(" ORDER BY c.name LIMIT ")
                .bind(i64::from(page.page_size))
                .push(" OFFSET ")
                .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX));
            let rows = tx.fetch(&sql).await?;
            rows.iter().map(client_from_row).collect::<Result<_, _>>()?
        };
        tx.commit().await?;
        Ok(ClientList {
            items,
            total,
            revision,
        })
    }

    async fn all_clients(&self) -> Result<Vec<Client>, StoreError> {
        let sql = Sql::new(format!(
            "SELECT {CLIENT_COLUMNS} FROM clients c ORDER BY c.name"
        ));
        let rows = self.engine.scan(&sql).await?;
        rows.iter().map(client_from_row).collect()
    }

    async fn explain_list_clients(&self, filter: &ClientFilter) -> Result<String, StoreError> {
        self.explain_list("clients", CLIENT_COLUMNS, |sql| {
            push_client_filter(sql, filter)
        })
        .await
    }

    async fn update_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        update: ClientUpdateRequest,
        audit: &Audit,
    ) -> Result<Client, StoreError> {
        let change = ChangeClient {
            name: name.clone(),
            expected_revision,
            change: ClientChange::Update(update),
        };
        self.writer.write(change, audit).await
    }

    async fn act_on_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        action: ClientAction,
        audit: &Audit,
    ) -> Result<Client, StoreError> {
        let change = ChangeClient {
            name: name.clone(),
            expected_revision,
            change: ClientChange::Action(action),
        };
        self.writer.write(change, audit).await
    }

    async fn delete_client(
        &self,
        name: &ClientName,
        expected_revision: Option<i64>,
        audit: &Audit,
    ) -> Result<(), StoreError> {
        let delete = DeleteClient {
            name: name.clone(),
            expected_revision,
        };
        self.writer.write(delete, audit).await
    }

    async fn import_clients(
        &self,
        clients: Vec<NewClient>,
        dry_run: bool,
        audit: &Audit,
    ) -> Result<ImportPlan, StoreError> {
        let import = ImportClients { clients, dry_run };
        self.writer.write(import, audit).await
    }

    async fn client_summary(
        &self,
        stale_days: u32,
        today: NaiveDate,
    ) -> Result<ClientSummary, StoreError> {
        let dialect = self.engine.dialect();
        let mut summary = ClientSummary::empty(stale_days);
        let mut tx = self.engine.snapshot().await?;
        let groups =
            Sql::new("SELECT c.status, c.role, COUNT(*) FROM clients c GROUP BY c.status, c.role");
        for row in tx.fetch(&groups).await? {
            let (status, role, n): (String, String, i64) =
                (row.get_at(0)?, row.get_at(1)?, row.get_at(2)?);
            let status = ClientStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("client status {status:?}")))?;
            let role = ClientRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("client role {role:?}")))?;
            summary.total += count(n);
            *summary.by_status.entry(status).or_default() += count(n);
            if status != ClientStatus::Destroyed {
                *summary.by_role.entry(role).or_default() += count(n);
            }
        }
        let apps = Sql::new(
            "SELECT a.app, COUNT(*) FROM client_apps a JOIN clients c ON c.id = a.client_id \
             WHERE c.status <> 'destroyed' GROUP BY a.app",
        );
        for row in tx.fetch(&apps).await? {
            summary.apps.insert(row.get_at(0)?, count(row.get_at(1)?));
        }
        let versions = Sql::new(format!(
            "SELECT j.key, j.value, COUNT(*) FROM clients c, {}(c.versions) j \
             WHERE c.status <> 'destroyed' GROUP BY j.key, j.value",
            dialect.json_object_entries
        ));
        for row in tx.fetch(&versions).await? {
            summary
                .versions
                .entry(row.get_at(0)?)
                .or_default()
                .insert(row.get_at(1)?, count(row.get_at(2)?));
        }
        let cutoff = stale_cutoff(today, stale_days);
        let mut stale = Sql::new("SELECT ");
        for (i, field) in MaintenanceField::ALL.iter().enumerate() {
            let column = maintenance_column(*field);
            if i > 0 {
                stale.push(", ");
            }
            stale
                .push("COUNT(*) FILTER (WHERE ")
                .push(column)
                .push(" IS NULL OR ")
                .push(column)
                .push(" < ")
                .bind(cutoff)
                .push(")");
        }
        stale.push(" FROM clients c WHERE c.status <> 'destroyed'");
        let row = tx.fetch_one(&stale).await?;
        for (i, field) in MaintenanceField::ALL.iter().enumerate() {
            summary.stale.insert(*field, count(row.get_at(i)?));
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn client_history(
        &self,
        name: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ClientHistoryEntry>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {HISTORY_COLUMNS} FROM client_history h WHERE h.name = "
        ));
        sql.bind(name);
        if let Some(before) = before {
            sql.push(" AND h.revision < ").bind(before);
        }
        sql.push(" ORDER BY h.revision DESC LIMIT ")
            .bind(i64::from(limit));
        let entries = self.fetch_as(&sql, history_from_row).await?;
        if entries.is_empty() && before.is_none() {
            return Err(StoreError::ClientNotFound(name.to_owned()));
        }
        Ok(entries)
    }

    async fn record_client_health(
        &self,
        health: ClientHealth,
    ) -> Result<Option<Event>, StoreError> {
        self.writer
            .write(RecordClientHealth(health), &Audit::system("client-health"))
            .await
    }

    async fn client_health(&self, name: &str) -> Result<Option<ClientHealth>, StoreError> {
        self.fetch_optional_as(&health_by_name(name), health_from_row)
            .await?
            .ok_or_else(|| StoreError::ClientNotFound(name.to_owned()))
    }
}
