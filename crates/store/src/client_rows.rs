//! The SQL of the client registry, once for both engines: columns and
//! decoding, the list filter, and the statements the writer runs inside its
//! transaction (`writer/client.rs` holds the rules).

use crate::decode::parsed;
use crate::sql::{Row, Sql, Value};
use crate::write_tx::WriteTx;
use crate::StoreError;
use chrono::{DateTime, Utc};
use fleetreg_model::{
    Client, ClientFilter, ClientHistoryEntry, ClientName, ClientRole, ClientSpec, ClientStatus,
    EventType, Maintenance, MaintenanceField, ServerInfo,
};

/// The columns [`client_from_row`] reads, from `clients c`.
pub(crate) const CLIENT_COLUMNS: &str = "c.id, c.name, c.status, c.role, c.deployed_date, \
     c.destroyed_date, c.server_type, c.server_location, c.server_ip, c.server_id, c.apps, \
     c.versions, c.urls, c.last_full_update, c.last_security_patch, c.last_os_update, \
     c.last_backup_verified, c.notes, c.revision, c.created_at, c.updated_at";

/// The columns [`history_from_row`] reads, from `client_history h`.
pub(crate) const HISTORY_COLUMNS: &str = "h.revision, h.at, h.event_type, h.actor, h.snapshot";

/// The column of a maintenance date.
pub(crate) fn maintenance_column(field: MaintenanceField) -> &'static str {
    match field {
        MaintenanceField::LastFullUpdate => "c.last_full_update",
        MaintenanceField::LastSecurityPatch => "c.last_security_patch",
        MaintenanceField::LastOsUpdate => "c.last_os_update",
        MaintenanceField::LastBackupVerified => "c.last_backup_verified",
    }
}

/// Reads a [`Client`] from a row selected with [`CLIENT_COLUMNS`].
pub(crate) fn client_from_row(row: &Row) -> Result<Client, StoreError> {
    let ip: Option<String> = row.get("server_ip")?;
    let ip = ip
        .map(|ip| {
            ip.parse()
                .map_err(|_| StoreError::Corrupt(format!("column \"server_ip\" holds {ip:?}")))
        })
        .transpose()?;
    Ok(Client {
        id: row.get("id")?,
        name: parsed(row, "name", |n| ClientName::parse(n).ok())?,
        spec: ClientSpec {
            status: parsed(row, "status", ClientStatus::parse)?,
            role: parsed(row, "role", ClientRole::parse)?,
            deployed_date: row.get("deployed_date")?,
            destroyed_date: row.get("destroyed_date")?,
            server: ServerInfo {
                server_type: row.get("server_type")?,
                location: row.get("server_location")?,
                ip,
                id: row.get("server_id")?,
            },
            apps: row.json("apps")?,
            versions: row.json("versions")?,
            maintenance: Maintenance {
                last_full_update: row.get("last_full_update")?,
                last_security_patch: row.get("last_security_patch")?,
                last_os_update: row.get("last_os_update")?,
                last_backup_verified: row.get("last_backup_verified")?,
            },
            urls: row.json("urls")?,
            notes: row.get("notes")?,
        },
        revision: row.get("revision")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Reads a history entry from a row selected with [`HISTORY_COLUMNS`].
pub(crate) fn history_from_row(row: &Row) -> Result<ClientHistoryEntry, StoreError> {
    Ok(ClientHistoryEntry {
        revision: row.get("revision")?,
        at: row.get("at")?,
        event_type: parsed(row, "event_type", EventType::parse)?,
        actor: row.get("actor")?,
        client: row.json("snapshot")?,
    })
}

/// Appends the filter's conditions (`WHERE …`), all in indexed columns.
pub(crate) fn push_client_filter(sql: &mut Sql, filter: &ClientFilter) {
    let mut first = true;
    let mut and = |sql: &mut Sql| {
        sql.push(if first { " WHERE " } else { " AND " });
        first = false;
    };
    let exact = [
        ("c.status", filter.status.map(|s| s.as_str().to_owned())),
        ("c.role", filter.role.map(|r| r.as_str().to_owned())),
        ("c.server_location", filter.location.clone()),
        ("c.server_type", filter.server_type.clone()),
    ];
    for (column, value) in exact {
        if let Some(value) = value {
            and(sql);
            sql.push(column).push(" = ").bind(value);
        }
    }
    if let Some(app) = &filter.app {
        and(sql);
        // A probe of client_apps' primary key per candidate row: the page
        // walks an index in name order and stops after its rows (an `IN`
        // list would first collect every client with the app).
        sql.push("EXISTS (SELECT 1 FROM client_apps a WHERE a.app = ")
            .bind(app.as_str())
            .push(" AND a.client_id = c.id)");
    }
    if let Some(stale) = filter.stale {
        if filter.status.is_none() {
            and(sql);
            sql.push("c.status <> 'destroyed'");
        }
        let column = maintenance_column(stale.field);
        and(sql);
        sql.push("(")
            .push(column)
            .push(" IS NULL OR ")
            .push(column)
            .push(" < ")
            .bind(stale.before)
            .push(")");
    }
}

/// The row values of `client`, in the column order of [`CLIENT_INSERT`].
fn client_values(c: &Client) -> Result<Vec<Value>, StoreError> {
    let s = &c.spec;
    Ok(vec![
        Value::from(c.id),
        Value::from(c.name.as_str()),
        Value::from(s.status.as_str()),
        Value::from(s.role.as_str()),
        Value::from(s.deployed_date),
        Value::from(s.destroyed_date),
        Value::from(&s.server.server_type),
        Value::from(&s.server.location),
        Value::from(s.server.ip.map(|ip| ip.to_string())),
        Value::from(&s.server.id),
        Value::json(&s.apps)?,
        Value::json(&s.versions)?,
        Value::json(&s.urls)?,
        Value::from(s.maintenance.last_full_update),
        Value::from(s.maintenance.last_security_patch),
        Value::from(s.maintenance.last_os_update),
        Value::from(s.maintenance.last_backup_verified),
        Value::from(s.notes.as_str()),
        Value::from(c.revision),
        Value::from(c.created_at),
        Value::from(c.updated_at),
    ])
}

const CLIENT_INSERT: &str = "INSERT INTO clients (id, name, status, role, deployed_date, \
     destroyed_date, server_type, server_location, server_ip, server_id, apps, versions, urls, \
     last_full_update, last_security_patch, last_os_update, last_backup_verified, notes, \
     revision, created_at, updated_at) VALUES ";

/// Reads a client by name inside the transaction (locking its row on PostgreSQL).
pub(crate) async fn load_client(
    tx: &mut WriteTx,
    name: &str,
) -> Result<Option<Client>, StoreError> {
    let mut sql = Sql::new(format!(
        "SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.name = "
    ));
    sql.bind(name).push(tx.dialect().lock_row);
    let rows = tx.fetch(&sql).await?;
    rows.first().map(client_from_row).transpose()
}

/// Inserts a client; `false` when the name is taken (nothing written).
pub(crate) async fn insert_client(tx: &mut WriteTx, client: &Client) -> Result<bool, StoreError> {
    let mut sql = Sql::new(CLIENT_INSERT);
    sql.bind_tuple(client_values(client)?)
        .push(" ON CONFLICT (name) DO NOTHING");
    let inserted = tx.execute(&sql).await? == 1;
    if inserted {
        insert_apps(tx, client).await?;
    }
    Ok(inserted)
}

/// Rewrites every column of a client (by id) and its app rows.
pub(crate) async fn update_client(tx: &mut WriteTx, client: &Client) -> Result<(), StoreError> {
    let mut values = client_values(client)?;
    // id and name stay; created_at stays.
    let id = values.remove(0);
    values.remove(0);
    let created_at_index = values.len() - 2;
    values.remove(created_at_index);
    let columns = [
        "status",
        "role",
        "deployed_date",
        "destroyed_date",
        "server_type",
        "server_location",
        "server_ip",
        "server_id",
        "apps",
        "versions",
        "urls",
        "last_full_update",
        "last_security_patch",
        "last_os_update",
        "last_backup_verified",
        "notes",
        "revision",
        "updated_at",
    ];
    let mut sql = Sql::new("UPDATE clients SET ");
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push(column).push(" = ").bind(value);
    }
    sql.push(" WHERE id = ").bind(id);
    tx.execute(&sql).await?;
    delete_apps(tx, client).await?;
    insert_apps(tx, client).await
}

/// Removes a client (its app rows go with it; its history stays).
pub(crate) async fn delete_client(tx: &mut WriteTx, client: &Client) -> Result<(), StoreError> {
    delete_apps(tx, client).await?;
    let sql = Sql::new("DELETE FROM clients WHERE id = $1").arg(client.id);
    tx.execute(&sql).await?;
    Ok(())
}

async fn delete_apps(tx: &mut WriteTx, client: &Client) -> Result<(), StoreError> {
    let sql = Sql::new("DELETE FROM client_apps WHERE client_id = $1").arg(client.id);
    tx.execute(&sql).await?;
    Ok(())
}

async fn insert_apps(tx: &mut WriteTx, client: &Client) -> Result<(), StoreError> {
    if client.spec.apps.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("INSERT INTO client_apps (app, client_id) VALUES ");
    for (i, app) in client.spec.apps.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_tuple([Value::from(app.as_str()), Value::from(client.id)]);
    }
    tx.execute(&sql).await?;
    Ok(())
}

/// Records one past state of a client.
pub(crate) async fn append_history(
    tx: &mut WriteTx,
    client: &Client,
    event_type: EventType,
    revision: i64,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = Sql::new(
        "INSERT INTO client_history (client_id, name, revision, at, event_type, actor, snapshot) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .arg(client.id)
    .arg(client.name.as_str())
    .arg(revision)
    .arg(at)
    .arg(event_type.as_str())
    .arg(actor)
    .arg(Value::json(client)?);
    tx.execute(&sql).await?;
    Ok(())
}
