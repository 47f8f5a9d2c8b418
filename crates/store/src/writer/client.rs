//! Registering, changing, importing and deleting clients. Every change that
//! takes effect appends one change-log event, one history row (the client's
//! state after it) and one audit entry; a change that changes nothing writes
//! nothing.

use super::{check_revision, to_json, Write, WriteCx};
use crate::client_rows::{
    append_history, delete_client, insert_client, load_client, update_client,
};
use crate::sync_rows::client_deployments;
use crate::StoreError;
use async_trait::async_trait;
use fleetreg_model::{
    Client, ClientAction, ClientName, ClientSpec, ClientStatus, ClientUpdateRequest, EventType,
    ImportPlan, ImportProblem, NewClient,
};
use serde_json::json;
use uuid::Uuid;

/// Registers a client (`ClientExists` when the name is taken).
pub(crate) struct CreateClient(pub NewClient);

#[async_trait]
impl Write for CreateClient {
    type Reply = Client;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Client, StoreError>, StoreError> {
        let action = "client.create";
        match register(cx, &self.0.name, self.0.spec.clone(), action).await? {
            Some(client) => Ok(Ok(client)),
            None => {
                let taken = StoreError::ClientExists(self.0.name.to_string());
                cx.refuse(action, None, taken).await
            }
        }
    }
}

/// What a [`ChangeClient`] does to the client's spec.
pub(crate) enum ClientChange {
    /// `PUT`: replace the given fields.
    Update(ClientUpdateRequest),
    /// A lifecycle operation (deploy creates a missing client).
    Action(ClientAction),
}

impl ClientChange {
    fn audit_action(&self) -> &'static str {
        match self {
            ClientChange::Update(_) => "client.update",
            ClientChange::Action(action) => action.audit_action(),
        }
    }
}

/// Changes a client, optionally guarded by the expected revision.
pub(crate) struct ChangeClient {
    pub name: ClientName,
    pub expected_revision: Option<i64>,
    pub change: ClientChange,
}

#[async_trait]
impl Write for ChangeClient {
    type Reply = Client;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<Client, StoreError>, StoreError> {
        let action = self.change.audit_action();
        let today = cx.at.date_naive();
        let current = match load_client(cx.tx, self.name.as_str()).await? {
            Some(current) => current,
            None => {
                let created = match &self.change {
                    // `If-Match` names a revision of an existing client: it never creates one.
                    ClientChange::Action(change)
                        if change.creates() && self.expected_revision.is_none() =>
                    {
                        match change.apply(self.name.as_str(), &ClientSpec::default(), today) {
                            Ok(spec) => register(cx, &self.name, spec, action).await?,
                            Err(invalid) => {
                                return cx.refuse(action, None, invalid.into()).await;
                            }
                        }
                    }
                    _ => None,
                };
                return match created {
                    Some(client) => Ok(Ok(client)),
                    None => {
                        let missing = StoreError::ClientNotFound(self.name.to_string());
                        cx.refuse(action, None, missing).await
                    }
                };
            }
        };
        if let Err(stale) = check_revision(self.expected_revision, current.revision, current.id) {
            return cx.refuse(action, Some(current.id), stale).await;
        }
        let next = match &self.change {
            ClientChange::Update(update) => update.apply_to(&self.name, &current.spec),
            ClientChange::Action(change) => change.apply(self.name.as_str(), &current.spec, today),
        };
        match next {
            Err(invalid) => cx.refuse(action, Some(current.id), invalid.into()).await,
            Ok(spec) => Ok(Ok(replace(cx, current, spec, action).await?)),
        }
    }
}

/// Removes a client's entry (its history stays), optionally guarded by the
/// expected revision.
pub(crate) struct DeleteClient {
    pub name: ClientName,
    pub expected_revision: Option<i64>,
}

#[async_trait]
impl Write for DeleteClient {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let action = "client.delete";
        let Some(client) = load_client(cx.tx, self.name.as_str()).await? else {
            let missing = StoreError::ClientNotFound(self.name.to_string());
            return cx.refuse(action, None, missing).await;
        };
        if let Err(stale) = check_revision(self.expected_revision, client.revision, client.id) {
            return cx.refuse(action, Some(client.id), stale).await;
        }
        let placed = client_deployments(cx.tx, client.id).await?;
        if !placed.is_empty() {
            let refused = StoreError::ClientHasDeployments(placed);
            return cx.refuse(action, Some(client.id), refused).await;
        }
        delete_client(cx.tx, &client).await?;
        let payload = json!({ "client_id": client.id, "name": client.name });
        let event = cx.append_event(EventType::ClientDeleted, client.id, payload)?;
        append_history(
            cx.tx,
            &client,
            EventType::ClientDeleted,
            event.revision,
            &cx.audit.actor,
            cx.at,
        )
        .await?;
        cx.audit_success(action, Some(client.id), Some(event.revision))
            .await?;
        Ok(Ok(()))
    }
}

/// Upserts every client of a registry file in this one transaction (entries
/// replace the stored spec whole; clients not in the file are left alone).
/// With `dry_run` only the plan is worked out.
pub(crate) struct ImportClients {
    pub clients: Vec<NewClient>,
    pub dry_run: bool,
}

#[async_trait]
impl Write for ImportClients {
    type Reply = ImportPlan;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<ImportPlan, StoreError>, StoreError> {
        let action = "client.import";
        let mut plan = ImportPlan {
            dry_run: self.dry_run,
            ..ImportPlan::default()
        };
        // First every entry against what is stored: a status change must be
        // a lifecycle move, as everywhere else; any refusal refuses the file.
        let mut stored = Vec::with_capacity(self.clients.len());
        let mut problems = Vec::new();
        for new in &self.clients {
            let current = load_client(cx.tx, new.name.as_str()).await?;
            if let Some(current) = &current {
                if let Err(refused) = current.spec.status.check_move(new.spec.status) {
                    problems.push(ImportProblem {
                        client: new.name.to_string(),
                        field: "status".into(),
                        reason: refused.to_string(),
                    });
                }
            }
            stored.push(current);
        }
        if !problems.is_empty() {
            return cx
                .refuse(action, None, StoreError::ImportRefused(problems))
                .await;
        }
        for (new, current) in self.clients.iter().zip(stored) {
            let name = new.name.to_string();
            match current {
                None => {
                    if !self.dry_run {
                        register(cx, &new.name, new.spec.clone(), action).await?;
                    }
                    plan.created.push(name);
                }
                Some(current) if current.spec == new.spec => plan.unchanged.push(name),
                Some(current) => {
                    if !self.dry_run {
                        replace(cx, current, new.spec.clone(), action).await?;
                    }
                    plan.updated.push(name);
                }
            }
        }
        Ok(Ok(plan))
    }
}

/// Inserts a new client with `spec`: `None` when the name is taken.
async fn register(
    cx: &mut WriteCx<'_>,
    name: &ClientName,
    spec: ClientSpec,
    action: &'static str,
) -> Result<Option<Client>, StoreError> {
    let client = Client {
        id: Uuid::now_v7(),
        name: name.clone(),
        spec,
        revision: cx.upcoming_revision(),
        created_at: cx.at,
        updated_at: cx.at,
    };
    if !insert_client(cx.tx, &client).await? {
        return Ok(None);
    }
    record(cx, &client, EventType::ClientRegistered, None, action).await?;
    Ok(Some(client))
}

/// Stores `spec` as the client's new state (nothing when it is the same).
async fn replace(
    cx: &mut WriteCx<'_>,
    current: Client,
    spec: ClientSpec,
    action: &'static str,
) -> Result<Client, StoreError> {
    if spec == current.spec {
        return Ok(current);
    }
    let old_status = current.spec.status;
    let event_type = match (old_status == spec.status, spec.status) {
        (true, _) => EventType::ClientUpdated,
        (false, ClientStatus::Destroyed) => EventType::ClientDestroyed,
        (false, _) => EventType::ClientStatusChanged,
    };
    let client = Client {
        spec,
        revision: cx.upcoming_revision(),
        updated_at: cx.at,
        ..current
    };
    update_client(cx.tx, &client).await?;
    let old = (event_type != EventType::ClientUpdated).then_some(old_status);
    record(cx, &client, event_type, old, action).await?;
    Ok(client)
}

/// The event, history row and audit entry of a change that took effect.
async fn record(
    cx: &mut WriteCx<'_>,
    client: &Client,
    event_type: EventType,
    old_status: Option<ClientStatus>,
    action: &'static str,
) -> Result<(), StoreError> {
    let payload = match old_status {
        None => to_json(client)?,
        Some(old) => json!({
            "client_id": client.id,
            "name": client.name,
            "old_status": old,
            "new_status": client.spec.status,
            "client": client,
        }),
    };
    let event = cx.append_event(event_type, client.id, payload)?;
    append_history(
        cx.tx,
        client,
        event_type,
        event.revision,
        &cx.audit.actor,
        cx.at,
    )
    .await?;
    cx.audit_success(action, Some(client.id), Some(event.revision))
        .await
}
