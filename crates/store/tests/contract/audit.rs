//! The audit log: every mutation and every refusal, its filters, and the
//! MAC chain with its head.

use crate::harness::*;
use fleetreg_model::{Audit, AuditEntry, AuditResult, CredentialWrite};
use fleetreg_store::{
    verify_audit_chain, AuditHead, AuditKey, AuditKeys, AuditOnly, AuditQuery, ChainBreak,
    StoreError, StoreOptions,
};
use serde_json::json;
use std::time::Duration as StdDuration;
use uuid::Uuid;

/// What one audit entry should say.
#[derive(Debug, PartialEq)]
struct Expected {
    action: String,
    resource: String,
    resource_id: Option<Uuid>,
    result: AuditResult,
    error_code: Option<String>,
    revision: Option<i64>,
    actor: String,
}

fn seen(entry: &AuditEntry) -> Expected {
    Expected {
        action: entry.action.clone(),
        resource: entry.resource.clone(),
        resource_id: entry.resource_id,
        result: entry.result.clone(),
        error_code: entry.error_code.clone(),
        revision: entry.revision,
        actor: entry.actor.clone(),
    }
}

fn success(action: &'static str, id: Uuid, revision: i64, by: &Audit) -> Expected {
    Expected {
        action: action.to_owned(),
        resource: action.split('.').next().unwrap().to_owned(),
        resource_id: Some(id),
        result: AuditResult::Success,
        error_code: None,
        revision: Some(revision),
        actor: by.actor.clone(),
    }
}

/// The entry a refusal must leave: failure, the error's own code, no revision.
fn refusal<T: std::fmt::Debug>(
    action: &'static str,
    id: Option<Uuid>,
    outcome: Result<T, StoreError>,
    by: &Audit,
) -> Expected {
    let error = outcome.expect_err("a refusal");
    assert!(error.is_logical(), "{error:?}");
    Expected {
        action: action.to_owned(),
        resource: action.split('.').next().unwrap().to_owned(),
        resource_id: id,
        result: AuditResult::Failure,
        error_code: Some(error.code().as_str().to_owned()),
        revision: None,
        actor: by.actor.clone(),
    }
}

store_test!(every_mutation_and_refusal_is_audited, |store| async move {
    let (alice, bob) = (actor("alice"), actor("bob"));
    let mut expected = Vec::new();
    let a = store
        .insert_cluster(named("audited"), &alice)
        .await
        .unwrap();
    expected.push(success("cluster.create", a.id, a.revision, &alice));
    let dup = store.insert_cluster(named("audited"), &bob).await;
    expected.push(refusal("cluster.create", None, dup, &bob));
    let a2 = store
        .update_cluster(
            a.id,
            Some(a.revision),
            patch(json!({ "region": "r" })),
            &alice,
        )
        .await
        .unwrap();
    expected.push(success("cluster.update", a.id, a2.revision, &alice));
    let stale = store
        .update_cluster(
            a.id,
            Some(a.revision),
            patch(json!({ "region": "s" })),
            &bob,
        )
        .await;
    expected.push(refusal("cluster.update", Some(a.id), stale, &bob));
    let ghost = Uuid::now_v7();
    let missing = store
        .update_cluster(ghost, None, patch(json!({ "region": "s" })), &bob)
        .await;
    expected.push(refusal("cluster.update", Some(ghost), missing, &bob));
    let renamed = store
        .update_cluster(a.id, None, patch(json!({ "name": "other-name" })), &bob)
        .await;
    expected.push(refusal("cluster.update", Some(a.id), renamed, &bob));

    let put = store
        .put_credentials(sealed_token(a.id, CredentialWrite::Store), &alice)
        .await
        .unwrap();
    assert_eq!(put.version, 1);
    let revision = store.latest_revision().await.unwrap();
    expected.push(success("credentials.store", a.id, revision, &alice));
    let rotated = store
        .put_credentials(sealed_token(a.id, CredentialWrite::Rotate), &alice)
        .await
        .unwrap();
    assert_eq!(rotated.version, 2);
    let revision = store.latest_revision().await.unwrap();
    expected.push(success("credentials.rotate", a.id, revision, &alice));
    let nowhere = store
        .put_credentials(sealed_token(ghost, CredentialWrite::Store), &bob)
        .await;
    expected.push(refusal("credentials.store", Some(ghost), nowhere, &bob));
    store.delete_credentials(a.id, &alice).await.unwrap();
    let revision = store.latest_revision().await.unwrap();
    expected.push(success("credentials.delete", a.id, revision, &alice));
    let none = store.delete_credentials(a.id, &bob).await;
    expected.push(refusal("credentials.delete", Some(a.id), none, &bob));
    let no_rotate = store
        .put_credentials(sealed_token(a.id, CredentialWrite::Rotate), &bob)
        .await;
    expected.push(refusal("credentials.rotate", Some(a.id), no_rotate, &bob));

    let stale_delete = store.delete_cluster(a.id, Some(a.revision), &bob).await;
    expected.push(refusal("cluster.delete", Some(a.id), stale_delete, &bob));
    store.delete_cluster(a.id, None, &alice).await.unwrap();
    let revision = store.latest_revision().await.unwrap();
    expected.push(success("cluster.delete", a.id, revision, &alice));
    let gone = store.delete_cluster(a.id, None, &bob).await;
    expected.push(refusal("cluster.delete", Some(a.id), gone, &bob));

    let log = audit_log(&store).await;
    let entries: Vec<Expected> = log.iter().map(seen).collect();
    assert_eq!(entries, expected);
    let codes: Vec<Option<&str>> = log.iter().map(|e| e.error_code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("CLUSTER_ALREADY_EXISTS"),
            None,
            Some("PRECONDITION_FAILED"),
            Some("CLUSTER_NOT_FOUND"),
            Some("VALIDATION_ERROR"),
            None,
            None,
            Some("CLUSTER_NOT_FOUND"),
            None,
            Some("CREDENTIALS_NOT_FOUND"),
            Some("CREDENTIALS_NOT_FOUND"),
            Some("PRECONDITION_FAILED"),
            None,
            Some("CLUSTER_NOT_FOUND"),
        ]
    );
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(entry.id, i as i64 + 1, "audit ids are dense from 1");
        let by = if entry.actor == "alice" { &alice } else { &bob };
        assert_eq!(entry.role, by.role);
        assert_eq!(entry.source, by.source);
        assert_eq!(entry.request_id, by.request_id);
    }
    for pair in log.windows(2) {
        assert!(pair[0].at <= pair[1].at, "entries are in time order");
    }
});

store_test!(audit_only_entries_take_no_revision, |store| async move {
    let cluster = insert(&store, "validated").await;
    let revision = store.latest_revision().await.unwrap();
    let by = actor("carol");
    store
        .append_audit(
            AuditOnly {
                action: "credentials.validate",
                resource_id: Some(cluster.id),
                result: AuditResult::Failure,
                error_code: Some(fleetreg_model::ErrorCode::CredentialsInvalid),
            },
            &by,
        )
        .await
        .unwrap();
    store
        .append_audit(
            AuditOnly {
                action: "credentials.decrypt",
                resource_id: Some(cluster.id),
                result: AuditResult::Success,
                error_code: None,
            },
            &Audit::system("health"),
        )
        .await
        .unwrap();
    assert_eq!(store.latest_revision().await.unwrap(), revision);
    assert_eq!(events_from(&store, 0).await.len(), 1);
    let log = audit_log(&store).await;
    assert_eq!(log.len(), 3);
    let validate = &log[1];
    assert_eq!(validate.action, "credentials.validate");
    assert_eq!(validate.resource, "credentials");
    assert_eq!(validate.resource_id, Some(cluster.id));
    assert_eq!(validate.result, AuditResult::Failure);
    assert_eq!(validate.error_code.as_deref(), Some("CREDENTIALS_INVALID"));
    assert_eq!(validate.revision, None);
    assert_eq!(validate.actor, "carol");
    assert_eq!(validate.request_id.as_deref(), Some("req-carol"));
    let decrypt = &log[2];
    assert_eq!(decrypt.action, "credentials.decrypt");
    assert_eq!(decrypt.actor, "system:health");
    assert_eq!(decrypt.role, None);
    assert_eq!(decrypt.result, AuditResult::Success);
});

store_test!(audit_queries_filter_and_page, |store| async move {
    let (alice, bob) = (actor("alice"), actor("bob"));
    let mut ids = Vec::new();
    for i in 0..6 {
        let by = if i % 2 == 0 { &alice } else { &bob };
        let cluster = store
            .insert_cluster(named(&format!("audit-{i}")), by)
            .await
            .unwrap();
        ids.push(cluster.id);
        // Distinct timestamps, so time bounds fall between entries.
        tokio::time::sleep(StdDuration::from_millis(3)).await;
    }
    store
        .update_cluster(ids[0], None, patch(json!({ "region": "x" })), &bob)
        .await
        .unwrap();
    store.delete_cluster(ids[1], None, &alice).await.unwrap();
    let log = audit_log(&store).await;
    assert_eq!(log.len(), 8);

    let by_actor = audit_where(
        &store,
        AuditQuery {
            actor: Some("bob".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    let expected: Vec<&AuditEntry> = log.iter().filter(|e| e.actor == "bob").collect();
    assert_eq!(by_actor.iter().collect::<Vec<_>>(), expected);
    assert_eq!(by_actor.len(), 4);

    let creates = audit_where(
        &store,
        AuditQuery {
            action: Some("cluster.create".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(creates.len(), 6);
    assert!(creates.iter().all(|e| e.action == "cluster.create"));

    let about_first = audit_where(
        &store,
        AuditQuery {
            resource_id: Some(ids[0]),
            ..AuditQuery::default()
        },
    )
    .await;
    let actions: Vec<&str> = about_first.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["cluster.create", "cluster.update"]);

    let combined = audit_where(
        &store,
        AuditQuery {
            actor: Some("alice".into()),
            action: Some("cluster.create".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(combined.len(), 3);

    let since = log[2].at;
    let until = log[5].at;
    let window = audit_where(
        &store,
        AuditQuery {
            since: Some(since),
            until: Some(until),
            ..AuditQuery::default()
        },
    )
    .await;
    let expected: Vec<i64> = log
        .iter()
        .filter(|e| e.at >= since && e.at < until)
        .map(|e| e.id)
        .collect();
    let got: Vec<i64> = window.iter().map(|e| e.id).collect();
    assert_eq!(got, expected, "since is inclusive, until exclusive");
    assert_eq!(got.first(), Some(&log[2].id));
    assert!(!got.contains(&log[5].id));

    let first_page = audit_where(
        &store,
        AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        },
    )
    .await;
    let got: Vec<i64> = first_page.iter().map(|e| e.id).collect();
    assert_eq!(got, [1, 2, 3]);
    let next_page = audit_where(
        &store,
        AuditQuery {
            after_id: Some(3),
            limit: 3,
            ..AuditQuery::default()
        },
    )
    .await;
    let got: Vec<i64> = next_page.iter().map(|e| e.id).collect();
    assert_eq!(got, [4, 5, 6]);
    let nothing = audit_where(
        &store,
        AuditQuery {
            actor: Some("mallory".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    assert!(nothing.is_empty());
});

/// Does some audited writes: a create, an update, a refusal, a delete.
async fn audited_writes(store: &StoreRef) {
    let cluster = insert(store, "chained").await;
    store
        .update_cluster(
            cluster.id,
            None,
            patch(json!({ "region": "r" })),
            &operator(),
        )
        .await
        .unwrap();
    let _ = store.insert_cluster(named("chained"), &operator()).await;
    store
        .delete_cluster(cluster.id, None, &operator())
        .await
        .unwrap();
}

store_test!(
    the_audit_chain_verifies_up_to_its_head,
    |store| async move {
        let mut head_watch = store.watch_audit_head();
        audited_writes(&store).await;
        let chain = store.list_audit_chain(0, 1000).await.unwrap();
        assert_eq!(chain.len(), 4);
        let log = audit_log(&store).await;
        for (row, entry) in chain.iter().zip(&log) {
            assert_eq!(&row.entry, entry, "the chain lists the same entries");
            let mac = row.mac.as_deref().expect("sealed");
            assert_eq!(mac.len(), 64);
            assert!(mac.chars().all(|c| c.is_ascii_hexdigit()), "{mac}");
            assert_eq!(row.key_id.as_deref(), Some(AUDIT_KEY_ID));
        }
        let macs: std::collections::HashSet<_> = chain.iter().map(|r| r.mac.clone()).collect();
        assert_eq!(macs.len(), 4, "every MAC differs");

        let head: AuditHead = head_watch.borrow_and_update().clone().expect("a head");
        assert_eq!(head.id, 4);
        assert_eq!(Some(&head.mac), chain[3].mac.as_ref());

        let keys = audit_keys();
        let report = verify_audit_chain(&*store, &keys, Some(&head))
            .await
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.verified, report.legacy, report.last_id), (4, 0, 4));
        assert!(report.head_checked);

        let wrong = AuditKeys::new(AuditKey::new(AUDIT_KEY_ID, [8; 32]), vec![]);
        let report = verify_audit_chain(&*store, &wrong, None).await.unwrap();
        assert_eq!(report.broken, Some(ChainBreak::Altered { id: 1 }));
        let other = AuditKeys::new(AuditKey::new("another-key", [7; 32]), vec![]);
        let report = verify_audit_chain(&*store, &other, None).await.unwrap();
        assert!(
            matches!(report.broken, Some(ChainBreak::UnknownKey { id: 1, .. })),
            "{report:?}"
        );
        let beyond = AuditHead {
            id: 9,
            mac: head.mac.clone(),
        };
        let report = verify_audit_chain(&*store, &keys, Some(&beyond))
            .await
            .unwrap();
        assert_eq!(
            report.broken,
            Some(ChainBreak::Truncated {
                head_id: 9,
                last_id: 4
            })
        );

        let paged = store.list_audit_chain(2, 2).await.unwrap();
        let ids: Vec<i64> = paged.iter().map(|r| r.entry.id).collect();
        assert_eq!(ids, [3, 4]);

        // The head moves with the next commit, and the chain still verifies.
        insert(&store, "later").await;
        tokio::time::timeout(StdDuration::from_secs(5), head_watch.changed())
            .await
            .expect("the head moves")
            .unwrap();
        let moved = head_watch.borrow().clone().expect("a head");
        assert_eq!(moved.id, 5);
        assert_ne!(moved.mac, head.mac);
        let report = verify_audit_chain(&*store, &keys, Some(&moved))
            .await
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.verified, 5);
        let report = verify_audit_chain(&*store, &keys, Some(&head))
            .await
            .unwrap();
        assert!(report.is_ok(), "a head behind the end is fine: {report:?}");
    }
);

store_test!(
    without_keys_entries_are_unsealed,
    options = StoreOptions::default(),
    |store| async move {
        audited_writes(&store).await;
        let chain = store.list_audit_chain(0, 1000).await.unwrap();
        assert_eq!(chain.len(), 4);
        assert!(chain.iter().all(|r| r.mac.is_none()), "{chain:?}");
        assert!(store.watch_audit_head().borrow().is_none());
        let report = verify_audit_chain(&*store, &audit_keys(), None)
            .await
            .unwrap();
        assert!(report.is_ok());
        assert_eq!((report.legacy, report.verified), (4, 0));
    }
);
