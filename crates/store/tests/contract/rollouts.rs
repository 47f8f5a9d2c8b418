//! Rollouts (`RolloutStore`): stored whole, moved by commands and
//! observations inside the writer's transaction, listed by status.

use crate::harness::*;
use chrono::Utc;
use fleetreg_model::{
    ClientCreateRequest, ClientHealthState, ErrorCode, EventType, Rollout, RolloutCommand,
    RolloutObservation, RolloutRequest, RolloutStatus,
};
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

store_test!(rollouts_persist_and_move, |store| async move {
    for (name, role) in [("dev", "canary"), ("a", "production")] {
        let request: ClientCreateRequest = serde_json::from_value(json!({
            "name": name, "role": role, "status": "deployed", "apps": ["nextcloud"]
        }))
        .unwrap();
        store
            .create_client(request.validate().unwrap(), &operator())
            .await
            .unwrap();
    }
    let request = RolloutRequest {
        app: "nextcloud".into(),
        version: "31".into(),
        wave_size: None,
        location: None,
        clients: None,
        require_promotion: true,
    };
    let clients = store.all_clients().await.unwrap();
    let planned = Rollout::plan(&request, &clients, Uuid::now_v7(), Utc::now()).unwrap();
    let created = store
        .create_rollout(planned.clone(), &operator())
        .await
        .unwrap();
    assert_eq!(store.get_rollout(created.id).await.unwrap(), planned);
    let refused = store
        .command_rollout(created.id, RolloutCommand::Promote, &operator())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::RolloutConflict);
    let seen: BTreeMap<String, RolloutObservation> = [(
        "dev".to_owned(),
        RolloutObservation {
            deployed: true,
            version: Some("31".into()),
            changed_at: Utc::now(),
            health: Some((
                Utc::now() + chrono::Duration::seconds(1),
                ClientHealthState::Healthy,
            )),
        },
    )]
    .into();
    let moved = store
        .observe_rollout(created.id, 0, seen.clone())
        .await
        .unwrap();
    assert_eq!(moved.status, RolloutStatus::AwaitingPromotion);
    assert_eq!(store.get_rollout(created.id).await.unwrap(), moved);
    let again = store.observe_rollout(created.id, 0, seen).await.unwrap();
    assert_eq!(
        again, moved,
        "an observation of a waiting rollout changes nothing"
    );
    let running = store
        .list_rollouts(Some(RolloutStatus::Running), 10)
        .await
        .unwrap();
    assert!(running.is_empty());
    let waiting = store
        .list_rollouts(Some(RolloutStatus::AwaitingPromotion), 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    store
        .command_rollout(created.id, RolloutCommand::Abort, &operator())
        .await
        .unwrap();
    let missing = store
        .command_rollout(Uuid::now_v7(), RolloutCommand::Abort, &operator())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::RolloutNotFound);
    let changes = events_from(&store, 0)
        .await
        .iter()
        .filter(|e| e.event_type == EventType::RolloutChanged)
        .count();
    assert_eq!(changes, 3, "started, awaiting promotion, aborted");
});
