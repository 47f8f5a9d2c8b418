//! API tokens: stored by hash, unique names, revocation, all audited.

use crate::harness::*;
use chrono::Duration;
use fleetreg_model::{ApiToken, AuditEntry, AuditResult, Role};
use fleetreg_store::{AuditQuery, StoreError, TokenRekey};
use uuid::Uuid;

fn token(name: &str, role: Role) -> ApiToken {
    ApiToken {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        role,
        prefix: format!("frg_{}", &name[..name.len().min(4)]),
        created_at: fleetreg_model::now(),
        expires_at: None,
        revoked_at: None,
        node: None,
    }
}

/// The audit entries of token actions, oldest first.
async fn token_audit(store: &StoreRef) -> Vec<AuditEntry> {
    audit_log(store)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("token."))
        .collect()
}

store_test!(tokens_are_found_by_hash_and_listed, |store| async move {
    let admin = token("admin", Role::Admin);
    let viewer = ApiToken {
        expires_at: Some(fleetreg_model::now() + Duration::days(1)),
        created_at: admin.created_at + Duration::milliseconds(1),
        ..token("dashboard", Role::Viewer)
    };
    let created = store
        .create_token(admin.clone(), "hash-admin".into(), false, &operator())
        .await
        .unwrap();
    assert_eq!(created, admin);
    store
        .create_token(viewer.clone(), "hash-viewer".into(), false, &operator())
        .await
        .unwrap();

    assert_eq!(
        store.find_token("hash-admin").await.unwrap(),
        Some(admin.clone())
    );
    assert_eq!(
        store.find_token("hash-viewer").await.unwrap(),
        Some(viewer.clone())
    );
    assert_eq!(store.find_token("hash-nobody").await.unwrap(), None);
    assert_eq!(store.find_token("").await.unwrap(), None);
    assert_eq!(
        store.list_tokens().await.unwrap(),
        [admin.clone(), viewer],
        "oldest first"
    );

    let log = token_audit(&store).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.action == "token.create"
        && e.resource == "token"
        && e.result == AuditResult::Success
        && e.actor == "alice"));
    assert_eq!(log[0].resource_id, Some(admin.id));
    assert_eq!(
        store.latest_revision().await.unwrap(),
        0,
        "tokens are not in the change log"
    );
});

store_test!(token_names_are_unique_unless_replaced, |store| async move {
    let first = token("ci", Role::Operator);
    store
        .create_token(first.clone(), "hash-1".into(), false, &operator())
        .await
        .unwrap();
    let second = token("ci", Role::Admin);
    assert_err!(
        store
            .create_token(second.clone(), "hash-2".into(), false, &operator())
            .await,
        StoreError::TokenNameTaken(name) if name == "ci"
    );
    assert_eq!(store.find_token("hash-2").await.unwrap(), None);
    assert_eq!(
        store.list_tokens().await.unwrap(),
        std::slice::from_ref(&first)
    );

    let replaced = store
        .create_token(second.clone(), "hash-2".into(), true, &actor("bootstrap"))
        .await
        .unwrap();
    assert_eq!(replaced, second);
    assert_eq!(
        store.find_token("hash-2").await.unwrap(),
        Some(second.clone())
    );
    // The replaced token is kept, revoked and renamed aside, so its value
    // still answers "revoked" (a bootstrap value must not come back).
    let old = store
        .find_token("hash-1")
        .await
        .unwrap()
        .expect("the replaced token is kept");
    assert_eq!(old.id, first.id);
    assert_eq!(old.revoked_at, Some(second.created_at));
    assert!(
        !old.is_active(second.created_at),
        "the replaced token no longer authenticates"
    );
    assert_ne!(old.name, "ci", "the name is free for the new token");
    let listed: Vec<(String, bool)> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name.clone(), t.is_active(second.created_at)))
        .collect();
    assert_eq!(listed, [(old.name.clone(), false), ("ci".into(), true)]);

    let log = token_audit(&store).await;
    let outcomes: Vec<(&str, AuditResult, Option<&str>)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.result.clone(), e.error_code.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice", AuditResult::Success, None),
            ("alice", AuditResult::Failure, Some("VALIDATION_ERROR")),
            ("bootstrap", AuditResult::Success, None),
        ]
    );
});

store_test!(revoking_a_token, |store| async move {
    let t = token("temporary", Role::Viewer);
    store
        .create_token(t.clone(), "hash-t".into(), false, &operator())
        .await
        .unwrap();
    let before = fleetreg_model::now();
    store.revoke_token(t.id, &operator()).await.unwrap();
    let found = store
        .find_token("hash-t")
        .await
        .unwrap()
        .expect("still found");
    let revoked_at = found.revoked_at.expect("revoked");
    assert!(revoked_at >= before);
    assert!(!found.is_active(fleetreg_model::now()));
    assert_eq!(
        store.list_tokens().await.unwrap(),
        std::slice::from_ref(&found)
    );
    assert_err!(
        store.revoke_token(t.id, &operator()).await,
        StoreError::TokenNotFound(id) if id == t.id
    );
    let ghost = Uuid::now_v7();
    assert_err!(
        store.revoke_token(ghost, &operator()).await,
        StoreError::TokenNotFound(id) if id == ghost
    );
    assert_eq!(
        store
            .find_token("hash-t")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(revoked_at),
        "a second revocation changes nothing"
    );
    let revokes = audit_where(
        &store,
        AuditQuery {
            action: Some("token.revoke".into()),
            ..AuditQuery::default()
        },
    )
    .await;
    let outcomes: Vec<(AuditResult, Option<Uuid>)> = revokes
        .iter()
        .map(|e| (e.result.clone(), e.resource_id))
        .collect();
    assert_eq!(
        outcomes,
        [
            (AuditResult::Success, Some(t.id)),
            (AuditResult::Failure, Some(t.id)),
            (AuditResult::Failure, Some(ghost)),
        ]
    );
    assert!(revokes[1..].iter().all(|e| e.error_code.is_some()));
});

// A refusal's audit entry carries the code of the error the caller got (as
// every cluster and credentials refusal does).
store_test!(
    a_refused_revocation_records_its_error_code,
    |store| async move {
        let ghost = Uuid::now_v7();
        let error = store.revoke_token(ghost, &operator()).await.unwrap_err();
        let entry = token_audit(&store).await.pop().expect("audited");
        assert_eq!(entry.result, AuditResult::Failure);
        assert_eq!(entry.error_code.as_deref(), Some(error.code().as_str()));
    }
);

// Re-keying the stored form (issue 11, item 12): a change applies only while
// the token still has the old hash, each applied change is audited, and the
// token is then found by its new hash only.
store_test!(
    token_hashes_are_rekeyed_only_from_the_current_hash,
    |store| async move {
        let a = token("rekeyed", Role::Admin);
        let b = token("raced", Role::Viewer);
        for (t, hash) in [(&a, "plain-a"), (&b, "plain-b")] {
            store
                .create_token(t.clone(), hash.into(), false, &operator())
                .await
                .unwrap();
        }
        let mut hashes = store.token_hashes().await.unwrap();
        hashes.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(
            hashes,
            [(a.id, "plain-a".to_owned()), (b.id, "plain-b".to_owned())]
        );
        let changes = vec![
            TokenRekey {
                id: a.id,
                from: "plain-a".into(),
                to: "keyed-a".into(),
            },
            // Not b's current hash any more: left alone.
            TokenRekey {
                id: b.id,
                from: "stale-b".into(),
                to: "keyed-b".into(),
            },
        ];
        let changed = store
            .rekey_tokens(changes, &actor("system:bootstrap"))
            .await
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(store.find_token("keyed-a").await.unwrap(), Some(a.clone()));
        assert_eq!(store.find_token("plain-a").await.unwrap(), None);
        assert_eq!(store.find_token("plain-b").await.unwrap(), Some(b.clone()));
        assert_eq!(store.find_token("keyed-b").await.unwrap(), None);
        assert_eq!(
            store.rekey_tokens(Vec::new(), &operator()).await.unwrap(),
            0
        );
        let rekeys: Vec<Option<Uuid>> = token_audit(&store)
            .await
            .iter()
            .filter(|e| e.action == "token.rekey")
            .map(|e| e.resource_id)
            .collect();
        assert_eq!(rekeys, [Some(a.id)]);
    }
);
