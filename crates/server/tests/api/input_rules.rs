//! One input rule everywhere (issue 11, items 9, 16, 17): query strings carry
//! only the parameters an operation declares, once each; enums are written as
//! the API writes them; a JSON object names each key once; a URL's host is
//! written as it will be contacted; every timestamp fits both stores; `If-Match`
//! compares entity tags strongly. Each refusal is a 400/412 that stores nothing.

use crate::helpers::*;
use base64::Engine;
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

async fn field_of(response: reqwest::Response, code: &str) -> String {
    let status = if code == "PRECONDITION_FAILED" {
        412
    } else {
        400
    };
    let error = assert_error(response, status, code).await;
    error["error"]["details"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

api_test!(
    every_endpoint_refuses_unknown_and_repeated_query_parameters,
    |app| {
        let id = app.register("query-rules", json!({})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for path in [
            format!("/api/v1/clusters/{id}?verbose=1"),
            format!("/api/v1/clusters/{id}/status?x=1"),
            "/api/v1/clusters/by-name/query-rules?x=1".to_owned(),
            "/api/v1/fleet/summary?x=1".to_owned(),
            "/api/v1/fleet/capabilities?limit=1".to_owned(),
            "/api/v1/tokens?all=true".to_owned(),
        ] {
            let field = field_of(get(&app, &path).await, "VALIDATION_ERROR").await;
            assert!(!field.is_empty(), "{path}");
        }
        for (path, field) in [
            ("/api/v1/events?after=1&after=2", "after"),
            ("/api/v1/audit?limit=1&limit=2", "limit"),
            ("/api/v1/clusters?page=1&page=1", "page"),
            ("/api/v1/fleet/health?limit=1&limit=1", "limit"),
        ] {
            assert_eq!(
                field_of(get(&app, path).await, "VALIDATION_ERROR").await,
                field,
                "{path}"
            );
        }
        // A name quoted back is bounded.
        let long = format!("/api/v1/fleet/summary?{}=1", "n".repeat(5000));
        let error = assert_error(get(&app, &long).await, 400, "VALIDATION_ERROR").await;
        assert!(error.to_string().len() < 1000, "{error}");
        // Declared ones still work, `label` repeats.
        let ok = get(&app, "/api/v1/clusters?label=a=b&label=c=d&page=1").await;
        assert_eq!(ok.status(), 200);
    }
);

api_test!(query_enums_are_written_as_bodies_write_them, |app| {
    for query in [
        "environment=production",
        "cluster_type=spoke",
        "state=online",
    ] {
        let field = field_of(app.list(&format!("?{query}")).await, "VALIDATION_ERROR").await;
        assert_eq!(Some(field.as_str()), query.split('=').next(), "{query}");
    }
    assert_eq!(app.list("?environment=PRODUCTION").await.status(), 200);
});

api_test!(label_conditions_are_capped_without_a_server_error, |app| {
    let query = |n: usize| {
        let pairs: Vec<String> = (0..n).map(|i| format!("label=k{i}=v")).collect();
        format!("?{}", pairs.join("&"))
    };
    assert_eq!(app.list(&query(16)).await.status(), 200);
    for n in [17, 300] {
        let field = field_of(app.list(&query(n)).await, "VALIDATION_ERROR").await;
        assert_eq!(field, "label", "{n} labels");
    }
});

api_test!(a_json_object_names_each_key_once, |app| {
    for body in [
        r#"{"name":"dup-a","name":"dup-b","api_server_url":"https://127.0.0.1:6443"}"#,
        r#"{"name":"dup-c","api_server_url":"https://127.0.0.1:6443","labels":{"a":"1","a":"2"}}"#,
    ] {
        let response = app.post_raw("/api/v1/clusters", body).await;
        let error = assert_error(response, 400, "VALIDATION_ERROR").await;
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than once"),
            "{error}"
        );
    }
    let list: Value = app.list("").await.json().await.unwrap();
    assert_eq!(list["total"], 0, "nothing was stored");
});

api_test!(a_host_is_written_as_it_will_be_contacted, |app| {
    for url in [
        "http://%31%36%39.254.169.254/",
        "http://2852039166/",
        "http://0xa9.0xfe.0xa9.0xfe/",
    ] {
        let response = app
            .post_cluster(&json!({ "name": "obfuscated", "api_server_url": url }))
            .await;
        let field = field_of(response, "VALIDATION_ERROR").await;
        assert_eq!(field, "api_server_url", "{url}");
    }
    let created = app.register("plain-host", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let response = app
        .put_cluster(
            id,
            &json!({ "endpoints": { "prometheus_url": "http://%31%32%37.0.0.1:9090/" } }),
        )
        .await;
    assert_error(response, 400, "VALIDATION_ERROR").await;
});

/// A JWT-shaped bearer token whose `exp` is `exp`.
fn jwt_expiring(exp: Value) -> String {
    let part = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        part(json!({ "alg": "RS256" })),
        part(json!({ "exp": exp, "sub": "system:serviceaccount:ns:sa" }))
    )
}

api_test!(timestamps_outside_years_1_to_9999_are_refused, |app| {
    let created = app
        .register(
            "far-future",
            json!({ "api_server_url": "http://127.0.0.1:9/far-future" }),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = app.url(&format!("/api/v1/clusters/{id}/credentials"));
    for exp in [
        json!(253_402_300_800_i64),
        json!(-62_135_596_801_i64),
        json!(1e300),
    ] {
        let response = app
            .client
            .post(&path)
            .json(&json!({ "auth_type": "TOKEN", "token": jwt_expiring(exp.clone()) }))
            .send()
            .await
            .unwrap();
        let error = assert_error(response, 400, "CREDENTIALS_INVALID").await;
        assert_eq!(
            error["error"]["details"]["field"], "token",
            "{exp}: {error}"
        );
    }
    let response = app
        .client
        .post(&path)
        .json(&json!({ "auth_type": "TOKEN", "token": "opaque", "expires_at": "0000-12-31T00:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(field_of(response, "VALIDATION_ERROR").await, "expires_at");
    assert!(app
        .store
        .get_credentials(id.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    let response = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({ "name": "forever", "role": "viewer", "expires_in_seconds": 300_000_000_000_u64 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        field_of(response, "VALIDATION_ERROR").await,
        "expires_in_seconds"
    );
    let response = get(&app, "/api/v1/audit?since=0000-01-01T00:00:00Z").await;
    assert_eq!(field_of(response, "VALIDATION_ERROR").await, "since");
});

api_test!(if_match_compares_entity_tags_strongly, |app| {
    let created = app.register("strong-tags", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let put = |if_match: String| {
        let request = app
            .client
            .put(app.url(&format!("/api/v1/clusters/{id}")))
            .header("If-Match", if_match)
            .json(&json!({ "region": "r" }));
        async move { request.send().await.unwrap() }
    };
    let revision = || async {
        let cluster: Value = app.get_cluster(id).await.json().await.unwrap();
        cluster["revision"].as_i64().unwrap()
    };
    let rev = revision().await;
    // A weak tag never matches under If-Match, even the current revision's.
    assert_error(
        put(format!("W/\"{rev}\"")).await,
        412,
        "PRECONDITION_FAILED",
    )
    .await;
    assert_error(put("unquoted".into()).await, 412, "PRECONDITION_FAILED").await;
    // A list matches when any strong tag is current.
    assert_eq!(put(format!("\"{rev}\", \"{rev}\"")).await.status(), 200);
    let rev = revision().await;
    assert_eq!(
        put(format!("\"{}\", \"{rev}\"", rev - 1)).await.status(),
        200
    );
    let rev = revision().await;
    assert_error(
        put(format!("\"{}\", W/\"{rev}\"", rev - 1)).await,
        412,
        "PRECONDITION_FAILED",
    )
    .await;
    assert_eq!(revision().await, rev, "the refused writes changed nothing");
});
