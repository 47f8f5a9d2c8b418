//! The audit log: `GET /api/v1/audit` and its filters, and the tamper-evident
//! chain — verification passes on an untouched log and fails after an entry is
//! altered (even with every MAC after it recomputed as a plain hash), deleted,
//! or cut off the end (caught by the head file), and with a wrong key.

use crate::helpers::*;
use fleetreg_model::{Audit, AuditResult};
use fleetreg_server::audit::{audit_keys, HeadFile};
use fleetreg_store::{
    verify_audit_chain, AuditHead, AuditOnly, ChainBreak, ChainedAuditEntry, StoreOptions,
    VerifyReport,
};
use fleetreg_vault::{Keyring, MasterKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

fn test_keyring() -> Keyring {
    Keyring::from_value(TEST_MASTER_KEY, "test").unwrap()
}

/// Every audit row with its chain fields.
async fn chain(app: &TestApp) -> Vec<ChainedAuditEntry> {
    app.store.list_audit_chain(0, 1000).await.unwrap()
}

fn head_file(app: &TestApp) -> HeadFile {
    HeadFile::new(audit_head_file(&app.database_url))
}

/// Waits until the head file records the last entry (it is written after commit).
async fn settled_head(app: &TestApp) -> AuditHead {
    let last = chain(app).await.last().expect("entries").entry.id;
    for _ in 0..200 {
        if let Some(head) = head_file(app).read().unwrap() {
            if head.id == last {
                return head;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the head file never reached entry {last}");
}

async fn verify(app: &TestApp, keyring: &Keyring, head: Option<&AuditHead>) -> VerifyReport {
    verify_audit_chain(app.store.as_ref(), &audit_keys(keyring), head)
        .await
        .unwrap()
}

/// Registers two clusters, updates one, deletes the other; returns their ids.
async fn some_writes(app: &TestApp) -> (String, String) {
    let a = app.register("audited-a", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.register("audited-b", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let updated = app.put_cluster(&a, &json!({ "region": "eu-1" })).await;
    assert_eq!(updated.status(), 200);
    assert_eq!(app.delete_cluster(&b).await.status(), 204);
    (a, b)
}

async fn audit_page(app: &TestApp, query: &[(&str, &str)]) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/audit"))
        .query(query)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

api_test!(
    list_filters_by_actor_action_resource_time_and_pages,
    |app| {
        let (a, b) = some_writes(&app).await;
        app.store
            .append_audit(
                AuditOnly {
                    action: "credentials.validate",
                    resource_id: Some(a.parse().unwrap()),
                    result: AuditResult::Failure,
                    error_code: Some(fleetreg_model::ErrorCode::CredentialsInvalid),
                },
                &Audit {
                    actor: "alice".into(),
                    role: Some("operator".into()),
                    source: Some("192.0.2.1".into()),
                    request_id: Some("req-1".into()),
                },
            )
            .await
            .unwrap();

        let all = audit_page(&app, &[]).await;
        let items = all["items"].as_array().unwrap().clone();
        let all_ids = ids(&all);
        assert!(all_ids.windows(2).all(|w| w[1] == w[0] + 1), "{all_ids:?}");
        assert_eq!(all["next_after"], json!(all_ids.last().unwrap()));
        let create = items
            .iter()
            .find(|e| e["action"] == "cluster.create" && e["resource_id"] == json!(a))
            .expect("create entry");
        assert_eq!(create["result"], "success");
        assert_eq!(create["resource"], "cluster");
        assert!(create["revision"].as_i64().is_some());
        assert_eq!(create["source"], "127.0.0.1");
        assert!(create["request_id"].as_str().is_some());

        // actor
        let alice = audit_page(&app, &[("actor", "alice")]).await;
        assert_eq!(alice["items"].as_array().unwrap().len(), 1);
        let entry = &alice["items"][0];
        assert_eq!(entry["action"], "credentials.validate");
        assert_eq!(entry["role"], "operator");
        assert_eq!(entry["result"], "failure");
        assert_eq!(entry["error_code"], "CREDENTIALS_INVALID");
        assert_eq!(entry["request_id"], "req-1");
        let api_actor = create["actor"].as_str().unwrap();
        let by_api_actor = audit_page(&app, &[("actor", api_actor)]).await;
        assert!(by_api_actor["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == api_actor));
        assert!(ids(&by_api_actor).contains(&create["id"].as_i64().unwrap()));

        // action
        let updates = audit_page(&app, &[("action", "cluster.update")]).await;
        assert_eq!(updates["items"].as_array().unwrap().len(), 1);
        assert_eq!(updates["items"][0]["resource_id"], json!(a));

        // resource_id
        let of_a = audit_page(&app, &[("resource_id", &a)]).await;
        let actions: Vec<&str> = of_a["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["cluster.create", "cluster.update", "credentials.validate"]
        );
        let of_b = audit_page(&app, &[("resource_id", &b)]).await;
        assert_eq!(
            of_b["items"].as_array().unwrap().len(),
            2,
            "create and delete"
        );

        // since / until (since inclusive, until exclusive)
        let pivot = updates["items"][0]["at"].as_str().unwrap().to_owned();
        let at =
            |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
        let pivot_at = chrono::DateTime::parse_from_rfc3339(&pivot).unwrap();
        let since = audit_page(&app, &[("since", &pivot)]).await;
        let expected: Vec<i64> = items
            .iter()
            .filter(|e| at(e) >= pivot_at)
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids(&since), expected);
        assert!(ids(&since).contains(&updates["items"][0]["id"].as_i64().unwrap()));
        let until = audit_page(&app, &[("until", &pivot)]).await;
        let expected: Vec<i64> = items
            .iter()
            .filter(|e| at(e) < pivot_at)
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids(&until), expected);
        assert!(!expected.is_empty());

        // paging with after / limit / next_after
        let first = audit_page(&app, &[("limit", "2")]).await;
        assert_eq!(ids(&first), all_ids[..2]);
        assert_eq!(first["next_after"], json!(all_ids[1]));
        let after = first["next_after"].to_string();
        let rest = audit_page(&app, &[("after", &after), ("limit", "1000")]).await;
        assert_eq!(ids(&rest), all_ids[2..]);
        let beyond = all_ids.last().unwrap().to_string();
        let empty = audit_page(&app, &[("after", &beyond)]).await;
        assert!(ids(&empty).is_empty());
        assert_eq!(empty["next_after"].to_string(), beyond);

        // bad input
        for query in [
            "bogus=1",
            "since=yesterday",
            "until=2024-13-01",
            "limit=0",
            "limit=1001",
            "after=-1",
            "resource_id=not-a-uuid",
        ] {
            let response = app.get(&format!("/api/v1/audit?{query}")).await;
            assert_error(response, 400, "VALIDATION_ERROR").await;
        }
    }
);

api_test!(verify_passes_on_an_untouched_log, |app| {
    some_writes(&app).await;
    let head = settled_head(&app).await;
    let rows = chain(&app).await;
    let keyring = test_keyring();
    let active = keyring.active_id().to_string();
    assert!(rows
        .iter()
        .all(|r| r.mac.as_deref().is_some_and(|m| m.len() == 64)
            && r.key_id.as_deref() == Some(active.as_str())));
    assert_eq!(head.mac, rows.last().unwrap().mac.clone().unwrap());
    let report = verify(&app, &keyring, Some(&head)).await;
    assert_eq!(report.broken, None);
    assert_eq!(report.verified, rows.len() as u64);
    assert_eq!((report.legacy, report.last_id), (0, head.id));
    assert!(report.head_checked);
});

api_test!(an_altered_entry_fails_even_with_rehashed_macs, |app| {
    some_writes(&app).await;
    let keyring = test_keyring();
    assert!(verify(&app, &keyring, None).await.is_ok());

    run_sql(&app, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2").await;
    assert_eq!(
        verify(&app, &keyring, None).await.broken,
        Some(ChainBreak::Altered { id: 2 })
    );

    // The attacker recomputes every MAC from the edited entry on as an
    // unkeyed hash chain (SHA-256 over prev || entry): still caught.
    let rows = chain(&app).await;
    let mut prev = hex_bytes(rows[0].mac.as_deref().unwrap());
    for row in &rows[1..] {
        let key_id = row.key_id.clone().unwrap();
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(fleetreg_store::audit_chain::canonical_bytes(
            &row.entry, &key_id,
        ));
        let mac: [u8; 32] = hasher.finalize().into();
        run_sql(
            &app,
            &format!(
                "UPDATE audit_log SET mac = '{}' WHERE id = {}",
                hex(&mac),
                row.entry.id
            ),
        )
        .await;
        prev = mac;
    }
    assert_eq!(
        verify(&app, &keyring, None).await.broken,
        Some(ChainBreak::Altered { id: 2 })
    );
});

api_test!(a_deleted_middle_entry_fails_verification, |app| {
    some_writes(&app).await;
    let keyring = test_keyring();
    let before = chain(&app).await.len();
    assert!(before >= 5);
    run_sql(&app, "DELETE FROM audit_log WHERE id = 3").await;
    assert_eq!(
        verify(&app, &keyring, None).await.broken,
        Some(ChainBreak::Missing { first: 3, last: 3 })
    );
});

api_test!(a_truncated_tail_is_caught_by_the_head_file, |app| {
    some_writes(&app).await;
    let keyring = test_keyring();
    let head = settled_head(&app).await;
    run_sql(
        &app,
        &format!("DELETE FROM audit_log WHERE id >= {}", head.id - 1),
    )
    .await;
    // The chain itself is intact: only the head outside the database shows it.
    assert!(verify(&app, &keyring, None).await.is_ok());
    assert_eq!(
        verify(&app, &keyring, Some(&head)).await.broken,
        Some(ChainBreak::Truncated {
            head_id: head.id,
            last_id: head.id - 2
        })
    );
    // A server on the truncated log refuses to start (its next write would
    // move the head onto the truncated log).
    let refused = fleetreg_server::Application::build(test_settings(&app.database_url)).await;
    let error = refused.err().expect("start refused").to_string();
    assert!(error.contains("does not match its head file"), "{error}");
    assert!(error.contains(&format!("entry {}", head.id)), "{error}");
    assert_eq!(
        head_file(&app).read().unwrap(),
        Some(head),
        "the evidence is kept"
    );
});

// Fails before: a head file of another database (a reset, or another
// database used from the same place) made start-up refuse, as if entries had
// been cut off.
api_test!(
    a_head_of_another_database_is_set_aside_and_put_back,
    |app| {
        some_writes(&app).await;
        let head = settled_head(&app).await;
        let own = app.store.database_id().await.unwrap();
        let file = head_file(&app);
        let recorded = file.read_recorded().unwrap().expect("head");
        assert_eq!(recorded.database_id.as_deref(), Some(own.as_str()));
        // Another database's head is in the file, far ahead of this log; this
        // database's own head was set aside while that one was used.
        let other = "00000000000000ff";
        let foreign = AuditHead {
            id: head.id + 100,
            mac: "cd".repeat(32),
        };
        HeadFile::new(file.path())
            .for_database(other)
            .write(&foreign)
            .unwrap();
        HeadFile::new(file.aside_path(&own))
            .for_database(&own)
            .write(&head)
            .unwrap();
        let second = fleetreg_server::Application::build(test_settings(&app.database_url))
            .await
            .expect("another database's head is no alarm");
        second
            .run_until_stopped(std::future::ready(()))
            .await
            .unwrap();
        assert_eq!(
            HeadFile::new(file.aside_path(other)).read().unwrap(),
            Some(foreign),
            "the other database's head is set aside"
        );
        assert_eq!(
            file.read().unwrap(),
            Some(head.clone()),
            "this one's is back"
        );
        assert!(!file.aside_path(&own).exists());
        // Cut short, the same database (same id) is still refused.
        run_sql(
            &app,
            &format!("DELETE FROM audit_log WHERE id = {}", head.id),
        )
        .await;
        let refused = fleetreg_server::Application::build(test_settings(&app.database_url)).await;
        let error = refused.err().expect("start refused").to_string();
        assert!(error.contains("does not match its head file"), "{error}");
        let _ = std::fs::remove_file(file.aside_path(other));
    }
);

api_test!(a_wrong_key_fails_verification, |app| {
    some_writes(&app).await;
    let wrong = Keyring::new(MasterKey::generate());
    let report = verify(&app, &wrong, None).await;
    assert_eq!(
        report.broken,
        Some(ChainBreak::UnknownKey {
            id: 1,
            key_id: test_keyring().active_id().to_string()
        })
    );
    assert_eq!(report.verified, 0);
});

api_test!(
    entries_sealed_before_a_master_key_rotation_stay_verifiable,
    |app| {
        some_writes(&app).await;
        let old = || MasterKey::from_base64(TEST_MASTER_KEY).unwrap();
        let new_key = MasterKey::generate();
        let new_b64 = new_key.to_base64().to_string();
        let new = || MasterKey::from_base64(&new_b64).unwrap();
        // A server restarted after `rotate_key_file`: new key active, old kept.
        let rotated = Keyring::from_keys(vec![new(), old()]).unwrap();
        let store = fleetreg_store::connect_with(
            &app.database_url,
            StoreOptions {
                audit_keys: Some(Arc::new(audit_keys(&rotated))),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        store
            .append_audit(
                AuditOnly {
                    action: "credentials.decrypt",
                    resource_id: None,
                    result: AuditResult::Success,
                    error_code: None,
                },
                &Audit::system("health"),
            )
            .await
            .unwrap();
        store.close().await;
        let rows = chain(&app).await;
        let last = rows.last().unwrap();
        assert_eq!(last.key_id, Some(new_key.id().to_string()));

        let report = verify(&app, &rotated, None).await;
        assert_eq!(report.broken, None);
        assert_eq!(report.verified, rows.len() as u64);
        // Dropping the old key loses the older entries; without the new one, the newest.
        assert!(matches!(
            verify(&app, &Keyring::new(new()), None).await.broken,
            Some(ChainBreak::UnknownKey { id: 1, .. })
        ));
        assert_eq!(
            verify(&app, &Keyring::new(old()), None).await.broken,
            Some(ChainBreak::UnknownKey {
                id: last.entry.id,
                key_id: new_key.id().to_string()
            })
        );
    }
);

api_test!(concurrent_writers_on_two_replicas_keep_one_chain, |app| {
    let replica = app.spawn_replica().await;
    let mut tasks = Vec::new();
    for (n, server) in [&app, &replica].into_iter().enumerate() {
        for i in 0..15 {
            let (client, url) = (server.client.clone(), server.url("/api/v1/clusters"));
            tasks.push(tokio::spawn(async move {
                let name = format!("chained-{n}-{i}");
                let body = json!({ "name": name, "api_server_url": format!("https://api.{name}.example.com:6443") });
                client.post(url).json(&body).send().await.unwrap().status()
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
    }
    let rows = chain(&app).await;
    assert!(rows.len() >= 30);
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.entry.id == i as i64 + 1));
    let report = verify(&app, &test_keyring(), None).await;
    assert_eq!(report.broken, None);
    assert_eq!(report.verified, rows.len() as u64);
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_bytes(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}
