//! The client registry's store methods (`ClientStore`): create, read, list
//! with every filter, lifecycle operations with their events, history and
//! audit, refusals, import in one transaction, summary, query plans.

use crate::harness::*;
use chrono::{Duration, NaiveDate, Utc};
use fleetreg_model::{
    ClientAction, ClientCreateRequest, ClientFilter, ClientName, ClientRole, ClientStatus,
    ClientUpdateRequest, DeployRequest, DestroyRequest, ErrorCode, EventType, MaintenanceField,
    MaintenanceRequest, NewClient, Page, RegistryFile, StatusRequest,
};
use fleetreg_store::{AuditQuery, Backend, StoreError};
use serde_json::{json, Value};

fn new_client(body: Value) -> NewClient {
    serde_json::from_value::<ClientCreateRequest>(body)
        .unwrap()
        .validate()
        .unwrap()
}

fn name(n: &str) -> ClientName {
    ClientName::parse(n).unwrap()
}

fn filter(query: &[(&str, &str)]) -> ClientFilter {
    let today = Utc::now().date_naive();
    ClientFilter::from_query(query.iter().copied(), today)
        .unwrap()
        .0
}

async fn names(store: &StoreRef, query: &[(&str, &str)]) -> Vec<String> {
    let list = store
        .list_clients(&filter(query), Page::default())
        .await
        .unwrap();
    assert_eq!(list.total as usize, list.items.len(), "one page here");
    list.items.iter().map(|c| c.name.to_string()).collect()
}

fn days_ago(days: i64) -> String {
    (Utc::now().date_naive() - Duration::days(days)).to_string()
}

store_test!(create_get_and_refuse_a_taken_name, |store| async move {
    let created = store
        .create_client(
            new_client(json!({"name": "acme", "role": "canary", "apps": ["nextcloud"]})),
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.status, ClientStatus::Pending);
    assert_eq!(store.get_client("acme").await.unwrap(), created);
    let taken = store
        .create_client(new_client(json!({"name": "acme"})), &operator())
        .await
        .unwrap_err();
    assert_eq!(taken.code(), ErrorCode::ClientAlreadyExists);
    assert_eq!(
        store.get_client("nobody").await.unwrap_err().code(),
        ErrorCode::ClientNotFound
    );
    let events = events_from(&store, 0).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::ClientRegistered);
    assert_eq!(events[0].resource, "client");
    let audit = audit_where(
        &store,
        AuditQuery {
            action: Some("client.create".into()),
            limit: 10,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(audit.len(), 2, "the refusal is audited too");
    assert_eq!(
        audit[1].error_code.as_deref(),
        Some("CLIENT_ALREADY_EXISTS")
    );
});

store_test!(lifecycle_events_history_and_refusals, |store| async move {
    let acme = name("acme");
    let deploy = ClientAction::Deploy(DeployRequest {
        role: Some(ClientRole::Production),
        server: serde_json::from_value(json!({"type": "cx22", "ip": "203.0.113.9"})).unwrap(),
        date: NaiveDate::from_ymd_opt(2026, 1, 17),
    });
    let deployed = store
        .act_on_client(&acme, None, deploy.clone(), &operator())
        .await
        .unwrap();
    assert_eq!(deployed.spec.status, ClientStatus::Deployed);
    assert_eq!(deployed.spec.server.server_type.as_deref(), Some("cx22"));

    let to = |status| ClientAction::Status(StatusRequest { status });
    let maintenance = store
        .act_on_client(
            &acme,
            Some(deployed.revision),
            to(ClientStatus::Maintenance),
            &operator(),
        )
        .await
        .unwrap();
    let stale = store
        .act_on_client(
            &acme,
            Some(deployed.revision),
            to(ClientStatus::Deployed),
            &operator(),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code(), ErrorCode::PreconditionFailed);
    let destroyed = store
        .act_on_client(
            &acme,
            None,
            ClientAction::Destroy(DestroyRequest::default()),
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(destroyed.spec.status, ClientStatus::Destroyed);
    assert_eq!(
        destroyed.spec.server, deployed.spec.server,
        "kept for the audit trail"
    );

    let illegal = store
        .act_on_client(&acme, None, to(ClientStatus::Maintenance), &operator())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &illegal,
            StoreError::Invalid(fleetreg_model::Error::Transition {
                from: ClientStatus::Destroyed,
                to: ClientStatus::Maintenance,
                ..
            })
        ),
        "{illegal:?}"
    );
    let stamp = ClientAction::Maintenance(MaintenanceRequest {
        field: MaintenanceField::LastSecurityPatch,
        date: None,
    });
    assert_eq!(
        store
            .act_on_client(&acme, None, stamp, &operator())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::ClientDestroyed
    );
    let redeployed = store
        .act_on_client(&acme, None, deploy, &operator())
        .await
        .unwrap();
    assert_eq!(redeployed.spec.destroyed_date, None);

    let types: Vec<EventType> = events_from(&store, 0)
        .await
        .iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            EventType::ClientRegistered,
            EventType::ClientStatusChanged,
            EventType::ClientDestroyed,
            EventType::ClientStatusChanged,
        ]
    );
    let history = store.client_history("acme", None, 100).await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].client, redeployed, "newest first");
    assert_eq!(history[1].client, destroyed);
    assert_eq!(history[2].client, maintenance);
    assert_eq!(history[3].actor, operator().actor);
    let older = store
        .client_history("acme", Some(history[1].revision), 100)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);

    store.delete_client(&acme, None, &operator()).await.unwrap();
    assert_eq!(
        store.get_client("acme").await.unwrap_err().code(),
        ErrorCode::ClientNotFound
    );
    let after_delete = store.client_history("acme", None, 100).await.unwrap();
    assert_eq!(after_delete.len(), 5, "history outlives the entry");
    assert_eq!(after_delete[0].event_type, EventType::ClientDeleted);
});

store_test!(an_unchanged_update_writes_nothing, |store| async move {
    let acme = name("acme");
    let created = store
        .create_client(
            new_client(json!({"name": "acme", "notes": "n"})),
            &operator(),
        )
        .await
        .unwrap();
    let same: ClientUpdateRequest = serde_json::from_value(json!({"notes": "n"})).unwrap();
    let unchanged = store
        .update_client(&acme, None, same, &operator())
        .await
        .unwrap();
    assert_eq!(unchanged.revision, created.revision);
    assert_eq!(events_from(&store, 0).await.len(), 1);
    let change: ClientUpdateRequest =
        serde_json::from_value(json!({"apps": ["b", "a"], "role": "canary"})).unwrap();
    let changed = store
        .update_client(&acme, Some(created.revision), change, &operator())
        .await
        .unwrap();
    assert_eq!(changed.spec.apps, ["a", "b"]);
    assert!(changed.revision > created.revision);
    assert_eq!(names(&store, &[("app", "b")]).await, ["acme"]);
    let missing = store
        .update_client(
            &name("ghost"),
            None,
            ClientUpdateRequest::default(),
            &operator(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ClientNotFound);
});

store_test!(every_filter_and_the_stale_query, |store| async move {
    let rows = [
        json!({"name": "dev", "status": "deployed", "role": "canary", "apps": ["nextcloud", "authentik"],
               "server": {"type": "cx22", "location": "nbg1"},
               "maintenance": {"last_security_patch": days_ago(2), "last_full_update": days_ago(2)}}),
        json!({"name": "acme", "status": "deployed", "role": "production", "apps": ["nextcloud"],
               "server": {"type": "cx32", "location": "fsn1"},
               "maintenance": {"last_security_patch": days_ago(60), "last_full_update": days_ago(2)}}),
        json!({"name": "beta", "status": "maintenance", "role": "production", "apps": ["authentik"],
               "server": {"type": "cx22", "location": "hel1"}}),
        json!({"name": "oldco", "status": "destroyed", "role": "production", "apps": ["nextcloud"],
               "destroyed_date": days_ago(1)}),
    ];
    for row in rows {
        store
            .create_client(new_client(row), &operator())
            .await
            .unwrap();
    }
    assert_eq!(names(&store, &[]).await, ["acme", "beta", "dev", "oldco"]);
    assert_eq!(
        names(&store, &[("status", "deployed")]).await,
        ["acme", "dev"]
    );
    assert_eq!(names(&store, &[("role", "canary")]).await, ["dev"]);
    assert_eq!(
        names(&store, &[("app", "nextcloud")]).await,
        ["acme", "dev", "oldco"]
    );
    assert_eq!(names(&store, &[("location", "hel1")]).await, ["beta"]);
    assert_eq!(
        names(&store, &[("server_type", "cx22")]).await,
        ["beta", "dev"]
    );
    assert_eq!(
        names(
            &store,
            &[
                ("status", "deployed"),
                ("role", "production"),
                ("app", "nextcloud")
            ]
        )
        .await,
        ["acme"]
    );
    // Never patched counts as stale; destroyed clients need no updates.
    assert_eq!(
        names(
            &store,
            &[("stale_days", "30"), ("stale_field", "last_security_patch")]
        )
        .await,
        ["acme", "beta"]
    );
    assert_eq!(names(&store, &[("stale_days", "30")]).await, ["beta"]);
    assert_eq!(
        names(&store, &[("stale_days", "0"), ("status", "destroyed")]).await,
        ["oldco"]
    );
    let page = store
        .list_clients(
            &filter(&[]),
            Page {
                page: 2,
                page_size: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (4, 1));

    let summary = store
        .client_summary(30, Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(summary.total, 4);
    assert_eq!(summary.by_status[&ClientStatus::Deployed], 2);
    assert_eq!(summary.by_status[&ClientStatus::Offboarding], 0);
    assert_eq!(
        summary.by_role[&ClientRole::Production],
        2,
        "destroyed left out"
    );
    assert_eq!(summary.apps["nextcloud"], 2);
    assert_eq!(summary.stale[&MaintenanceField::LastSecurityPatch], 2);
    assert_eq!(summary.stale[&MaintenanceField::LastBackupVerified], 3);
});

store_test!(version_spread_in_the_summary, |store| async move {
    for (n, version) in [("a", "30.0.17"), ("b", "30.0.17"), ("c", "31.0.2")] {
        store
            .create_client(
                new_client(
                    json!({"name": n, "versions": {"nextcloud": version, "ubuntu": "24.04"}}),
                ),
                &operator(),
            )
            .await
            .unwrap();
    }
    let summary = store
        .client_summary(30, Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(summary.versions["nextcloud"]["30.0.17"], 2);
    assert_eq!(summary.versions["nextcloud"]["31.0.2"], 1);
    assert_eq!(summary.versions["ubuntu"]["24.04"], 3);
});

store_test!(import_is_one_transaction_with_a_plan, |store| async move {
    store
        .create_client(
            new_client(json!({"name": "kept", "notes": "x"})),
            &operator(),
        )
        .await
        .unwrap();
    store
        .create_client(
            new_client(json!({"name": "same", "role": "canary"})),
            &operator(),
        )
        .await
        .unwrap();
    let file: RegistryFile = serde_json::from_value(json!({"clients": {
        "new": {"status": "deployed", "apps": ["nextcloud"]},
        "kept": {"notes": "changed"},
        "same": {"role": "canary"},
    }}))
    .unwrap();
    let entries = file.validate().unwrap();
    let revision = store.latest_revision().await.unwrap();
    let dry = store
        .import_clients(entries.clone(), true, &operator())
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        store.latest_revision().await.unwrap(),
        revision,
        "dry run writes nothing"
    );
    let plan = store
        .import_clients(entries, false, &operator())
        .await
        .unwrap();
    assert_eq!(
        (plan.created, plan.updated, plan.unchanged),
        (dry.created, dry.updated, dry.unchanged)
    );
    assert_eq!(
        store.get_client("kept").await.unwrap().spec.notes,
        "changed"
    );
    assert_eq!(names(&store, &[("app", "nextcloud")]).await, ["new"]);
    let exported = RegistryFile::from_clients(&store.all_clients().await.unwrap());
    assert_eq!(exported.clients.len(), 3);
});

store_test!(client_filters_use_indexes, |store| async move {
    for query in [
        vec![("status", "deployed")],
        vec![("status", "deployed"), ("role", "production")],
        vec![("role", "canary")],
        vec![("app", "nextcloud")],
        vec![("location", "nbg1")],
        vec![("server_type", "cx22")],
        vec![("stale_days", "30"), ("stale_field", "last_security_patch")],
    ] {
        let plan = store.explain_list_clients(&filter(&query)).await.unwrap();
        match store.backend() {
            Backend::Sqlite => {
                // SEARCH lines are index lookups; a SCAN must at least walk an index.
                for line in plan.lines().filter(|l| l.starts_with("SCAN")) {
                    assert!(
                        line.contains("USING") && line.contains("INDEX"),
                        "{query:?}: full scan in plan:\n{plan}"
                    );
                }
                assert!(
                    plan.contains("idx_clients") || plan.contains("SEARCH a USING"),
                    "{query:?}: no filter index in plan:\n{plan}"
                );
            }
            Backend::Postgres => assert!(
                !plan.contains("Seq Scan on client"),
                "{query:?}: sequential scan in plan:\n{plan}"
            ),
        }
    }
});
