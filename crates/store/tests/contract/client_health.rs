//! Recorded live health of clients (`ClientStore::record_client_health`,
//! `ClientStore::client_health`): the last state per client, an event only
//! when the state changes, no revision of the client, no history, no audit,
//! nothing recorded for a client that is not deployed.

use crate::harness::*;
use chrono::{Duration, Utc};
use fleetreg_model::{
    Client, ClientAction, ClientCreateRequest, ClientHealth, ClientHealthState, ClientName,
    ClientStatus, ClientUrlHealth, ErrorCode, EventType, StatusRequest, UrlOutcome,
};
use serde_json::json;

async fn deployed(store: &StoreRef, name: &str) -> Client {
    let new = serde_json::from_value::<ClientCreateRequest>(json!({
        "name": name,
        "status": "deployed",
        "urls": {"nextcloud": "https://nc.example.com", "authentik": "https://auth.example.com"},
    }))
    .unwrap()
    .validate()
    .unwrap();
    store.create_client(new, &operator()).await.unwrap()
}

fn url(app: &str, outcome: UrlOutcome) -> ClientUrlHealth {
    ClientUrlHealth {
        app: app.into(),
        url: format!("https://{app}.example.com"),
        healthy: outcome == UrlOutcome::Ok,
        outcome,
        status_code: (outcome == UrlOutcome::Ok).then_some(200),
        latency_ms: Some(12),
        tls_not_after: None,
        tls_days_left: None,
        error: (outcome != UrlOutcome::Ok).then(|| "no".to_owned()),
    }
}

/// `client`'s health with every URL ending in `outcome`, checked `minutes` from now.
fn health(client: &Client, outcome: UrlOutcome, minutes: i64) -> ClientHealth {
    let urls = ["authentik", "nextcloud"]
        .iter()
        .map(|app| url(app, outcome))
        .collect();
    ClientHealth::new(client, Utc::now() + Duration::minutes(minutes), urls, None)
}

store_test!(
    records_the_last_state_and_an_event_per_change,
    |store| async move {
        let client = deployed(&store, "acme").await;
        assert_eq!(store.client_health("acme").await.unwrap(), None);
        let start = store.latest_revision().await.unwrap();

        let healthy = health(&client, UrlOutcome::Ok, 0);
        let first = store
            .record_client_health(healthy.clone())
            .await
            .unwrap()
            .expect("never recorded counts as NOT_CHECKED: a change");
        assert_eq!(first.event_type, EventType::ClientHealthChanged);
        assert_eq!(first.resource, "client");
        assert_eq!(first.resource_id, client.id);
        assert_eq!(first.payload["old_state"], "NOT_CHECKED");
        assert_eq!(first.payload["new_state"], "HEALTHY");
        assert_eq!(first.payload["name"], "acme");
        assert_eq!(first.payload["client_id"], client.id.to_string());
        assert_eq!(
            first.payload["health"],
            serde_json::to_value(&healthy).unwrap()
        );
        assert_eq!(store.client_health("acme").await.unwrap(), Some(healthy));

        // The same state again: stored (newer check), no event.
        let again = health(&client, UrlOutcome::Ok, 1);
        assert_eq!(
            store.record_client_health(again.clone()).await.unwrap(),
            None
        );
        assert_eq!(store.client_health("acme").await.unwrap(), Some(again));

        let down = health(&client, UrlOutcome::Timeout, 2);
        assert_eq!(down.state, ClientHealthState::Down);
        let changed = store
            .record_client_health(down.clone())
            .await
            .unwrap()
            .expect("HEALTHY -> DOWN");
        assert_eq!(changed.payload["old_state"], "HEALTHY");
        assert_eq!(changed.payload["new_state"], "DOWN");
        assert_eq!(
            store
                .record_client_health(health(&client, UrlOutcome::Timeout, 3))
                .await
                .unwrap(),
            None
        );
        let events = events_from(&store, start).await;
        let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::ClientHealthChanged,
                EventType::ClientHealthChanged
            ]
        );

        // An observation: the client, its history and the audit log stay as they were.
        assert_eq!(store.get_client("acme").await.unwrap(), client);
        assert_eq!(
            store.client_history("acme", None, 10).await.unwrap().len(),
            1
        );
        assert!(audit_log(&store)
            .await
            .iter()
            .all(|entry| !entry.actor.contains("client-health")));
    }
);

store_test!(
    nothing_is_recorded_for_a_client_that_is_not_deployed,
    |store| async move {
        let client = deployed(&store, "acme").await;
        store
            .record_client_health(health(&client, UrlOutcome::Ok, 0))
            .await
            .unwrap();
        let acme = ClientName::parse("acme").unwrap();
        let maintenance = ClientAction::Status(StatusRequest {
            status: ClientStatus::Maintenance,
        });
        store
            .act_on_client(&acme, None, maintenance, &operator())
            .await
            .unwrap();
        let before = store.latest_revision().await.unwrap();
        let late = health(&client, UrlOutcome::ConnectionError, 1);
        assert_eq!(store.record_client_health(late).await.unwrap(), None);
        assert_eq!(store.latest_revision().await.unwrap(), before);
        let kept = store.client_health("acme").await.unwrap().unwrap();
        assert_eq!(kept.state, ClientHealthState::Healthy);
    }
);

store_test!(unknown_and_deleted_clients, |store| async move {
    let missing = store.client_health("ghost").await.unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ClientNotFound);
    let client = deployed(&store, "acme").await;
    store
        .record_client_health(health(&client, UrlOutcome::Ok, 0))
        .await
        .unwrap();
    let acme = ClientName::parse("acme").unwrap();
    store.delete_client(&acme, None, &operator()).await.unwrap();
    let gone = store
        .record_client_health(health(&client, UrlOutcome::Ok, 1))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), ErrorCode::ClientNotFound);
    // A new client of the same name starts without a recorded health.
    deployed(&store, "acme").await;
    assert_eq!(store.client_health("acme").await.unwrap(), None);
});
