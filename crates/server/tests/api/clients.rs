//! The client registry over HTTP: lifecycle and its refusals, `If-Match`,
//! filters, summary, history, and registry-file import/export with the
//! example registry.

use crate::helpers::*;
use serde_json::{json, Value};

/// The example registry of `shared/examples/registry.yml`, as JSON.
pub fn example_registry() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/registry.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let body = ok_json(app.get(&format!("/api/v1/clients{query}")).await).await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

api_test!(a_client_walks_its_lifecycle, |app| {
    let deploy = json!({"role": "production", "date": "2026-01-17",
        "server": {"type": "cx22", "location": "nbg1", "ip": "203.0.113.7", "id": "12345678"}});
    let response = app
        .post_json("/api/v1/clients/acme/deploy", deploy.clone())
        .await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let deployed = ok_json(response).await;
    assert_eq!(deployed["status"], "deployed");
    assert_eq!(deployed["deployed_date"], "2026-01-17");
    assert_eq!(deployed["server"]["ip"], "203.0.113.7");
    assert_eq!(deployed["maintenance"]["last_security_patch"], "2026-01-17");
    assert_eq!(deployed["maintenance"]["last_backup_verified"], Value::Null);
    assert_eq!(etag, format!("\"{}\"", deployed["revision"]));

    // If-Match: a stale tag is refused, the current one accepted.
    let stale = app
        .client
        .post(app.url("/api/v1/clients/acme/status"))
        .header("if-match", "\"999\"")
        .json(&json!({"status": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_error(stale, 412, "PRECONDITION_FAILED").await;
    let maintenance = app
        .client
        .post(app.url("/api/v1/clients/acme/status"))
        .header("if-match", &etag)
        .json(&json!({"status": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(maintenance).await["status"], "maintenance");

    let rebuilt = ok_json(
        app.post_json(
            "/api/v1/clients/acme/rebuild",
            json!({"server": {"ip": "203.0.113.8"}, "date": "2026-02-01"}),
        )
        .await,
    )
    .await;
    assert_eq!(rebuilt["server"]["ip"], "203.0.113.8");
    assert_eq!(
        rebuilt["server"]["id"], "12345678",
        "absent details are kept"
    );
    assert_eq!(rebuilt["maintenance"]["last_full_update"], "2026-02-01");

    let stamped = ok_json(
        app.post_json(
            "/api/v1/clients/acme/maintenance",
            json!({"field": "last_backup_verified"}),
        )
        .await,
    )
    .await;
    assert!(stamped["maintenance"]["last_backup_verified"].is_string());
    let versioned = ok_json(
        app.post_json(
            "/api/v1/clients/acme/versions",
            json!({"versions": {"nextcloud": "31.0.2", "ubuntu": "24.04"}}),
        )
        .await,
    )
    .await;
    assert_eq!(versioned["versions"]["nextcloud"], "31.0.2");

    let destroyed = ok_json(
        app.post_json("/api/v1/clients/acme/destroy", json!({}))
            .await,
    )
    .await;
    assert_eq!(destroyed["status"], "destroyed");
    assert!(destroyed["destroyed_date"].is_string());
    assert_eq!(
        destroyed["server"], rebuilt["server"],
        "kept for the audit trail"
    );

    // Destroyed is terminal: an illegal move names both states.
    let refused = app
        .post_json(
            "/api/v1/clients/acme/status",
            json!({"status": "maintenance"}),
        )
        .await;
    let body = assert_error(refused, 409, "INVALID_STATUS_TRANSITION").await;
    assert_eq!(body["error"]["details"]["from"], "destroyed");
    assert_eq!(body["error"]["details"]["to"], "maintenance");
    let rebuild = app
        .post_json("/api/v1/clients/acme/rebuild", json!({}))
        .await;
    assert_error(rebuild, 409, "INVALID_STATUS_TRANSITION").await;
    let stamp = app
        .post_json(
            "/api/v1/clients/acme/maintenance",
            json!({"field": "last_os_update"}),
        )
        .await;
    assert_error(stamp, 409, "CLIENT_DESTROYED").await;
    let notes = ok_json(
        app.post_json("/api/v1/clients/acme/notes", json!({"notes": "archived"}))
            .await,
    )
    .await;
    assert_eq!(notes["notes"], "archived");
    let redeployed = ok_json(app.post_json("/api/v1/clients/acme/deploy", deploy).await).await;
    assert_eq!(redeployed["status"], "deployed");
    assert_eq!(redeployed["destroyed_date"], Value::Null);

    // Every past state is retrievable, newest first.
    let history: Value = ok_json(app.get("/api/v1/clients/acme/history").await).await;
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CLIENT_STATUS_CHANGED",
            "CLIENT_UPDATED",
            "CLIENT_DESTROYED",
            "CLIENT_UPDATED",
            "CLIENT_UPDATED",
            "CLIENT_UPDATED",
            "CLIENT_STATUS_CHANGED",
            "CLIENT_REGISTERED",
        ]
    );
    assert_eq!(history[2]["client"]["status"], "destroyed");
    assert_eq!(history[7]["client"]["server"]["ip"], "203.0.113.7");
    assert_eq!(history[0]["actor"], "bootstrap-admin");

    // The change log and the audit log saw every step.
    let events = ok_json(app.get("/api/v1/events?after=0").await).await;
    let client_events = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"] == "client")
        .count();
    assert_eq!(client_events, 8);
    let audit = ok_json(app.get("/api/v1/audit?action=client.status").await).await;
    let results: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert!(
        results.contains(&"failure") && results.contains(&"success"),
        "{audit}"
    );
});

api_test!(create_update_delete_and_name_rules, |app| {
    let created = app
        .post_json(
            "/api/v1/clients",
            json!({"name": "beta", "apps": ["nextcloud"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/api/v1/clients/beta");
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["role"], "production");
    let again = app
        .post_json("/api/v1/clients", json!({"name": "beta"}))
        .await;
    assert_error(again, 409, "CLIENT_ALREADY_EXISTS").await;
    for bad in ["Beta", "summary", "-x", "a_b"] {
        let response = app
            .post_json("/api/v1/clients", json!({ "name": bad }))
            .await;
        assert_error(response, 400, "VALIDATION_ERROR").await;
    }
    let unknown = app
        .post_json("/api/v1/clients", json!({"name": "x", "colour": "red"}))
        .await;
    assert_error(unknown, 400, "VALIDATION_ERROR").await;
    let bad_ip = app
        .post_json(
            "/api/v1/clients",
            json!({"name": "x", "server": {"ip": "1.2.3"}}),
        )
        .await;
    assert_error(bad_ip, 400, "VALIDATION_ERROR").await;
    assert_error(
        app.get("/api/v1/clients/nobody").await,
        404,
        "CLIENT_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/v1/clients/NOT_A_NAME").await,
        404,
        "CLIENT_NOT_FOUND",
    )
    .await;
    let deploy_bad_name = app
        .post_json("/api/v1/clients/Bad_Name/deploy", json!({}))
        .await;
    assert_error(deploy_bad_name, 400, "VALIDATION_ERROR").await;

    let put = app
        .client
        .put(app.url("/api/v1/clients/beta"))
        .json(&json!({"role": "canary", "urls": {"nextcloud": "https://nc.beta.example.org"}}))
        .send()
        .await
        .unwrap();
    let updated = ok_json(put).await;
    assert_eq!(updated["role"], "canary");
    assert_eq!(updated["apps"], json!(["nextcloud"]), "absent fields stay");
    let skip = app
        .client
        .put(app.url("/api/v1/clients/beta"))
        .json(&json!({"status": "maintenance"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(skip, 409, "INVALID_STATUS_TRANSITION").await;
    assert_eq!(body["error"]["details"]["from"], "pending");

    let deleted = app
        .client
        .delete(app.url("/api/v1/clients/beta"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_error(
        app.get("/api/v1/clients/beta").await,
        404,
        "CLIENT_NOT_FOUND",
    )
    .await;
    let history = ok_json(app.get("/api/v1/clients/beta/history").await).await;
    assert_eq!(history[0]["type"], "CLIENT_DELETED");
});

api_test!(import_filters_summary_and_export_round_trip, |app| {
    let registry = example_registry();
    let dry = ok_json(
        app.post_json("/api/v1/clients/import?dry_run=true", registry.clone())
            .await,
    )
    .await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(names(&app, "").await.len(), 0, "a dry run writes nothing");
    let plan = ok_json(
        app.post_json("/api/v1/clients/import", registry.clone())
            .await,
    )
    .await;
    let count = registry["clients"].as_object().unwrap().len();
    assert_eq!(plan["created"].as_array().unwrap().len(), count);
    let again = ok_json(
        app.post_json("/api/v1/clients/import", registry.clone())
            .await,
    )
    .await;
    assert_eq!(again["unchanged"].as_array().unwrap().len(), count);

    assert_eq!(names(&app, "?role=canary").await, ["dev"]);
    assert_eq!(
        names(&app, "?status=deployed&role=production&app=nextcloud").await,
        ["acme"]
    );
    assert_eq!(names(&app, "?location=hel1").await, ["beta"]);
    assert_eq!(names(&app, "?server_type=cx32").await, ["acme"]);
    let stale = names(&app, "?stale_days=30&stale_field=last_backup_verified").await;
    assert!(
        stale.contains(&"acme".to_owned()),
        "never verified counts: {stale:?}"
    );
    assert!(
        !stale.contains(&"oldco".to_owned()),
        "destroyed needs no updates"
    );
    let bad = app.get("/api/v1/clients?status=DEPLOYED").await;
    assert_error(bad, 400, "VALIDATION_ERROR").await;
    let typo = app.get("/api/v1/clients?staus=deployed").await;
    assert_error(typo, 400, "VALIDATION_ERROR").await;

    let summary = ok_json(app.get("/api/v1/clients/summary").await).await;
    assert_eq!(summary["total"], count);
    assert_eq!(summary["by_status"]["destroyed"], 1);
    assert_eq!(summary["by_status"]["offboarding"], 0);
    assert!(summary["versions"]["nextcloud"].is_object());

    // Export gives back an equivalent document.
    let exported = ok_json(app.get("/api/v1/clients/export").await).await;
    assert_eq!(normalise(&exported), normalise(&registry));
});

/// Entries with their defaults filled in and apps sorted, for comparing documents.
fn normalise(document: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (name, entry) in document["clients"].as_object().unwrap() {
        let spec: fleetreg_model::ClientSpec = serde_json::from_value(entry.clone()).unwrap();
        let spec = spec.validate().unwrap();
        out.insert(name.clone(), serde_json::to_value(spec).unwrap());
    }
    Value::Object(out)
}

api_test!(
    a_bad_import_changes_nothing_and_names_every_problem,
    |app| {
        let before = ok_json(
            app.post_json(
                "/api/v1/clients",
                json!({"name": "kept", "notes": "original"}),
            )
            .await,
        )
        .await;
        let file = json!({"clients": {
            "kept": {"notes": "overwritten"},
            "bad-ip": {"server": {"ip": "999.1.1.1"}},
            "bad-enum": {"status": "deploy"},
            "bad-date": {"deployed_date": "2026-13-01"},
            "Bad_Name": {},
        }});
        let refused = app.post_json("/api/v1/clients/import", file).await;
        let body = assert_error(refused, 400, "VALIDATION_ERROR").await;
        let problems = body["error"]["details"]["problems"].as_array().unwrap();
        let pairs: Vec<(String, String)> = problems
            .iter()
            .map(|p| {
                (
                    p["client"].as_str().unwrap().into(),
                    p["field"].as_str().unwrap().into(),
                )
            })
            .collect();
        for expected in [
            ("bad-ip", "server.ip"),
            ("bad-enum", "status"),
            ("bad-date", "deployed_date"),
            ("Bad_Name", "name"),
        ] {
            assert!(
                pairs.contains(&(expected.0.into(), expected.1.into())),
                "{expected:?} in {pairs:?}"
            );
        }
        let after = ok_json(app.get("/api/v1/clients/kept").await).await;
        assert_eq!(after, before, "nothing was applied");
        assert_eq!(names(&app, "").await, ["kept"]);
        // The lifecycle holds for imports too: a deployed client cannot go back
        // to pending (an entry without a status), a destroyed one not to deployed.
        ok_json(
            app.post_json("/api/v1/clients/kept/deploy", json!({}))
                .await,
        )
        .await;
        let backwards = app
            .post_json(
                "/api/v1/clients/import",
                json!({"clients": {"kept": {"notes": "x"}, "fresh": {}}}),
            )
            .await;
        let body = assert_error(backwards, 400, "VALIDATION_ERROR").await;
        assert_eq!(body["error"]["details"]["problems"][0]["client"], "kept");
        assert_eq!(body["error"]["details"]["problems"][0]["field"], "status");
        assert_error(
            app.get("/api/v1/clients/fresh").await,
            404,
            "CLIENT_NOT_FOUND",
        )
        .await;
        let far = app
            .post_json(
                "/api/v1/clients",
                json!({"name": "far", "deployed_date": "+12345-01-01"}),
            )
            .await;
        assert_error(far, 400, "VALIDATION_ERROR").await;
        let not_yaml = app.post_raw("/api/v1/clients/import", "clients: [").await;
        assert_error(not_yaml, 400, "MALFORMED_JSON").await;
    }
);

api_test!(an_import_takes_up_to_its_own_body_limit, |app| {
    // 1,200 clients with 900-character notes: ~1.2 MB, over the 1 MiB every
    // other endpoint takes.
    let clients: serde_json::Map<String, Value> = (0..1_200)
        .map(|i| (format!("big-{i}"), json!({"notes": "n".repeat(900)})))
        .collect();
    let file = json!({ "clients": clients });
    assert!(file.to_string().len() > 1024 * 1024);
    let planned = ok_json(
        app.post_json("/api/v1/clients/import?dry_run=true", file)
            .await,
    )
    .await;
    assert_eq!(
        planned["created"].as_array().map(Vec::len),
        Some(1_200),
        "{planned}"
    );
    let over = " ".repeat(32 * 1024 * 1024 + 1);
    let body = assert_error(
        app.post_raw("/api/v1/clients/import", &over).await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("33554432"),
        "{body}"
    );
});
