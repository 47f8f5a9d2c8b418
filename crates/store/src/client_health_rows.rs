//! The SQL of clients' recorded live health, once for both engines: the
//! statements `writer/client_health.rs` runs inside its transaction and the
//! read behind `ClientStore::client_health`.

use crate::client_rows::{client_from_row, CLIENT_COLUMNS};
use crate::sql::{Row, Sql, Value};
use crate::write_tx::WriteTx;
use crate::StoreError;
use fleetreg_model::{Client, ClientHealth, ClientHealthState};
use uuid::Uuid;

/// The last recorded health of the client named by the bound parameter, with
/// the client's id: one row when the client exists, `health` NULL when
/// nothing was recorded for it.
pub(crate) fn health_by_name(name: &str) -> Sql {
    Sql::new(
        "SELECT c.id, h.health FROM clients c LEFT JOIN client_health h ON h.client_id = c.id \
         WHERE c.name = $1",
    )
    .arg(name)
}

/// The recorded health of a row selected by [`health_by_name`].
pub(crate) fn health_from_row(row: &Row) -> Result<Option<ClientHealth>, StoreError> {
    row.json_opt("health")
}

/// Reads a client by id inside the transaction (locking its row on PostgreSQL).
pub(crate) async fn load_client_by_id(
    tx: &mut WriteTx,
    id: Uuid,
) -> Result<Option<Client>, StoreError> {
    let mut sql = Sql::new(format!(
        "SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.id = "
    ));
    sql.bind(id).push(tx.dialect().lock_row);
    let rows = tx.fetch(&sql).await?;
    rows.first().map(client_from_row).transpose()
}

/// The state last recorded for the client, if any.
pub(crate) async fn recorded_state(
    tx: &mut WriteTx,
    client_id: Uuid,
) -> Result<Option<ClientHealthState>, StoreError> {
    let sql = Sql::new("SELECT state FROM client_health WHERE client_id = $1").arg(client_id);
    let rows = tx.fetch(&sql).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let state: String = row.get("state")?;
    ClientHealthState::parse(&state)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("client health state {state:?}")))
}

/// Stores `health` as its client's last recorded health.
pub(crate) async fn upsert_health(
    tx: &mut WriteTx,
    health: &ClientHealth,
) -> Result<(), StoreError> {
    let sql = Sql::new(
        "INSERT INTO client_health (client_id, state, checked_at, health) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (client_id) DO UPDATE SET state = excluded.state, \
         checked_at = excluded.checked_at, health = excluded.health",
    )
    .arg(health.client_id)
    .arg(health.state.as_str())
    .arg(health.checked_at)
    .arg(Value::json(health)?);
    tx.execute(&sql).await?;
    Ok(())
}
