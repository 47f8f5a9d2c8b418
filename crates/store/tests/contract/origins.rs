//! Credentials bound to origins: stored with the origins they were validated
//! against, unbound by the cluster update that moves a URL elsewhere (same
//! transaction, event and audit entry), re-bound by `bind_credentials`.

use crate::harness::*;
use fleetreg_model::{
    AuditResult, CredentialBinding, CredentialOrigins, CredentialWrite, ErrorCode, EventType,
};
use fleetreg_store::{AuditQuery, BindCredentials, PutCredentials, StoreError};
use serde_json::json;
use uuid::Uuid;

/// The credentials' `credentials.*` audit entries of `action` for `id`.
async fn audited(store: &StoreRef, action: &str, id: Uuid) -> Vec<fleetreg_model::AuditEntry> {
    audit_where(
        store,
        AuditQuery {
            action: Some(action.to_owned()),
            resource_id: Some(id),
            ..AuditQuery::default()
        },
    )
    .await
}

store_test!(
    credentials_keep_the_origins_they_were_validated_against,
    |store| async move {
        let cluster = insert(&store, "bound").await;
        let origins = CredentialOrigins::of(&cluster);
        let stored = store
            .put_credentials(
                PutCredentials {
                    origins: origins.clone(),
                    ..sealed_token(cluster.id, CredentialWrite::Store)
                },
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(stored.binding(), CredentialBinding::Bound);
        assert_eq!(stored.unbound_at, None);
        assert!(stored.presentable_to(&cluster));
        let read = store.get_credentials(cluster.id).await.unwrap().unwrap();
        assert_eq!(read, stored);
        assert_eq!(read.origins, origins);

        // Validated against origins the cluster no longer has: stored unbound.
        let elsewhere = CredentialOrigins::of_urls("https://10.9.9.9:6443", &Default::default());
        let stale = store
            .put_credentials(
                PutCredentials {
                    origins: elsewhere.clone(),
                    ..sealed_token(cluster.id, CredentialWrite::Rotate)
                },
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(stale.binding(), CredentialBinding::OriginChanged);
        assert!(!stale.presentable_to(&cluster));
        let read = store.get_credentials(cluster.id).await.unwrap().unwrap();
        assert_eq!(read.origins, elsewhere);
        assert_eq!(read.unbound_at, stale.unbound_at);
    }
);

store_test!(
    an_update_moving_a_url_unbinds_them_in_the_same_transaction,
    |store| async move {
        let cluster = insert(&store, "moving").await;
        let bound = store
            .put_credentials(
                PutCredentials {
                    origins: CredentialOrigins::of(&cluster),
                    ..sealed_token(cluster.id, CredentialWrite::Store)
                },
                &operator(),
            )
            .await
            .unwrap();
        let origin = cluster.api_server_url.clone();

        // Same origin, another path: still bound, no credential event.
        let before = store.latest_revision().await.unwrap();
        let same = store
            .update_cluster(
                cluster.id,
                None,
                patch(json!({ "api_server_url": format!("{origin}/c/x") })),
                &operator(),
            )
            .await
            .unwrap();
        let events = events_from(&store, before).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let read = store.get_credentials(cluster.id).await.unwrap().unwrap();
        assert_eq!(read.binding(), CredentialBinding::Bound);
        assert!(read.presentable_to(&same));

        // Another origin (API server and a new Prometheus): unbound, with
        // the event and audit entry of the same write.
        let before = store.latest_revision().await.unwrap();
        let moved = store
            .update_cluster(
                cluster.id,
                None,
                patch(json!({ "api_server_url": "http://127.0.0.1:18990/x",
                    "endpoints": { "prometheus_url": "http://127.0.0.1:18990/y" } })),
                &actor("mallory"),
            )
            .await
            .unwrap();
        let events = events_from(&store, before).await;
        let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::ClusterUpdated,
                EventType::ClusterCredentialsUpdated
            ]
        );
        assert_eq!(
            events[1].payload,
            json!({ "cluster_id": cluster.id.to_string(), "binding": "ORIGIN_CHANGED",
                    "moved": ["api_server", "prometheus"] })
        );
        let read = store.get_credentials(cluster.id).await.unwrap().unwrap();
        assert_eq!(read.binding(), CredentialBinding::OriginChanged);
        assert_eq!(read.version, bound.version, "the secrets are unchanged");
        assert_eq!(
            read.origins, bound.origins,
            "still bound to where they were"
        );
        assert!(!read.presentable_to(&moved));
        assert!(
            !read.presentable_to(&cluster),
            "not even at the old origin: presented nowhere"
        );
        let unbinds = audited(&store, "credentials.unbind", cluster.id).await;
        assert_eq!(unbinds.len(), 1, "{unbinds:?}");
        assert_eq!(unbinds[0].actor, "mallory");
        assert_eq!(unbinds[0].result, AuditResult::Success);
        assert_eq!(unbinds[0].revision, Some(events[1].revision));

        // Moving again while unbound records nothing more.
        let before = store.latest_revision().await.unwrap();
        store
            .update_cluster(
                cluster.id,
                None,
                patch(json!({ "api_server_url": "https://10.7.7.7:6443" })),
                &operator(),
            )
            .await
            .unwrap();
        assert_eq!(events_from(&store, before).await.len(), 1);
        assert_eq!(
            audited(&store, "credentials.unbind", cluster.id)
                .await
                .len(),
            1
        );
    }
);

store_test!(
    bind_credentials_rebinds_the_validated_version,
    |store| async move {
        let cluster = insert(&store, "rebind").await;
        let ghost = Uuid::now_v7();
        let bind = |id: Uuid, expected_version: i64, origins: CredentialOrigins| BindCredentials {
            cluster_id: id,
            expected_version,
            origins,
        };
        assert_err!(
            store
                .bind_credentials(bind(cluster.id, 1, CredentialOrigins::of(&cluster)), &operator())
                .await,
            StoreError::CredentialsNotFound(id) if id == cluster.id
        );
        assert_err!(
            store
                .bind_credentials(bind(ghost, 1, CredentialOrigins::default()), &operator())
                .await,
            StoreError::NotFound(_)
        );
        store
            .put_credentials(
                PutCredentials {
                    origins: CredentialOrigins::of(&cluster),
                    ..sealed_token(cluster.id, CredentialWrite::Store)
                },
                &operator(),
            )
            .await
            .unwrap();
        let moved = store
            .update_cluster(
                cluster.id,
                None,
                patch(json!({ "api_server_url": "https://10.8.8.8:6443" })),
                &operator(),
            )
            .await
            .unwrap();
        let now = CredentialOrigins::of(&moved);

        assert_err!(
            store
                .bind_credentials(bind(cluster.id, 2, now.clone()), &operator())
                .await,
            StoreError::PreconditionFailed {
                expected: 2,
                actual: 1,
                ..
            }
        );
        let before = store.latest_revision().await.unwrap();
        let rebound = store
            .bind_credentials(bind(cluster.id, 1, now.clone()), &operator())
            .await
            .unwrap();
        assert_eq!(rebound.binding(), CredentialBinding::Bound);
        assert_eq!(rebound.version, 1, "same secrets, same version");
        assert!(rebound.presentable_to(&moved));
        assert_eq!(
            store.get_credentials(cluster.id).await.unwrap(),
            Some(rebound.clone())
        );
        let events = events_from(&store, before).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::ClusterCredentialsUpdated);
        assert_eq!(events[0].payload["binding"], "BOUND");
        assert_eq!(
            events[0].payload["origins"]["api_server"],
            "https://10.8.8.8:6443"
        );
        let entries = audited(&store, "credentials.rebind", cluster.id).await;
        let results: Vec<_> = entries
            .iter()
            .map(|e| (e.result.clone(), e.error_code.as_deref()))
            .collect();
        assert_eq!(
            results,
            [
                (
                    AuditResult::Failure,
                    Some(ErrorCode::CredentialsNotFound.as_str())
                ),
                (
                    AuditResult::Failure,
                    Some(ErrorCode::PreconditionFailed.as_str())
                ),
                (AuditResult::Success, None),
            ]
        );

        // Validated against origins the cluster left meanwhile: stays unbound.
        let old = CredentialOrigins::of(&cluster);
        let stale = store
            .bind_credentials(bind(cluster.id, 1, old), &operator())
            .await
            .unwrap();
        assert_eq!(stale.binding(), CredentialBinding::OriginChanged);
        assert!(!stale.presentable_to(&moved));
    }
);
