//! One test per error code and per kind of bad input: status, code and envelope.

use crate::helpers::*;
use serde_json::{json, Value};

fn body(name: &str) -> Value {
    json!({ "name": name, "api_server_url": "https://api.example.com:6443" })
}

api_test!(invalid_cluster_name, |app| {
    for name in [
        "Prod",
        "ab",
        "-abc",
        "abc-",
        "a_b",
        "prod.east",
        &"a".repeat(64),
        "",
    ] {
        let response = app.post_cluster(&body(name)).await;
        let error = assert_error(response, 400, "INVALID_CLUSTER_NAME").await;
        assert_eq!(error["error"]["details"]["field"], "name", "{name}");
    }
    let numeric = app
        .post_cluster(&json!({ "name": 42, "api_server_url": "https://x" }))
        .await;
    assert_error(numeric, 400, "VALIDATION_ERROR").await;
    let list: Value = app.list("").await.json().await.unwrap();
    assert_eq!(list["total"], 0, "nothing was stored");
});

api_test!(cluster_already_exists, |app| {
    app.register("taken", json!({})).await;
    let error = assert_error(
        app.post_cluster(&body("taken")).await,
        409,
        "CLUSTER_ALREADY_EXISTS",
    )
    .await;
    assert_eq!(error["error"]["details"]["name"], "taken");
});

api_test!(cluster_not_found, |app| {
    let missing = uuid::Uuid::now_v7();
    assert_error(
        app.get_cluster(&missing.to_string()).await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(
        app.put_cluster(&missing.to_string(), &json!({ "region": "x" }))
            .await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(
        app.delete_cluster(&missing.to_string()).await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get(&format!("/api/v1/clusters/{missing}/status")).await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/v1/clusters/by-name/nobody-here").await,
        404,
        "CLUSTER_NOT_FOUND",
    )
    .await;
    // Malformed ids are unknown clusters too, never a 500 or a plain-text 400.
    for bad in [
        "not-a-uuid",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        "%20",
    ] {
        assert_error(app.get_cluster(bad).await, 404, "CLUSTER_NOT_FOUND").await;
        assert_error(
            app.put_cluster(bad, &json!({})).await,
            404,
            "CLUSTER_NOT_FOUND",
        )
        .await;
        assert_error(app.delete_cluster(bad).await, 404, "CLUSTER_NOT_FOUND").await;
    }
});

api_test!(malformed_json, |app| {
    for raw in ["{", "not json", "{\"name\": \"abc\",}", "", "{} {}", "[1,2"] {
        let response = app.post_raw("/api/v1/clusters", raw).await;
        assert_error(response, 400, "MALFORMED_JSON").await;
    }
    let created = app.register("json-target", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let response = app
        .client
        .put(app.url(&format!("/api/v1/clusters/{id}")))
        .header("content-type", "application/json")
        .body("{\"region\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "MALFORMED_JSON").await;
});

api_test!(wrong_shapes_and_unknown_fields, |app| {
    let cases = [
        (
            json!({ "name": "abc", "api_server_url": "https://x", "colour": "red" }),
            "colour",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "labels": ["a"] }),
            "labels",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "labels": { "a": 1 } }),
            "labels.a",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "endpoints": { "grafana_url": "https://g" } }),
            "endpoints",
        ),
        (
            json!({ "name": "abc", "api_server_url": 7 }),
            "api_server_url",
        ),
        (json!([1, 2, 3]), "body"),
    ];
    for (request, field) in cases {
        let error = assert_error(app.post_cluster(&request).await, 400, "VALIDATION_ERROR").await;
        let actual = error["error"]["details"]["field"].as_str().unwrap();
        assert!(
            actual.starts_with(field),
            "{request}: field {actual}, expected {field}"
        );
    }
});

api_test!(validation_errors_name_the_field, |app| {
    let long = |n: usize| "x".repeat(n);
    let cases = [
        (json!({ "name": "abc" }), "api_server_url"),
        (json!({ "api_server_url": "https://x" }), "name"),
        (
            json!({ "name": "abc", "api_server_url": "not a url" }),
            "api_server_url",
        ),
        (
            json!({ "name": "abc", "api_server_url": "ftp://files.example.com" }),
            "api_server_url",
        ),
        (
            json!({ "name": "abc", "api_server_url": format!("https://{}.com", long(520)) }),
            "api_server_url",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "cluster_type": "BIG" }),
            "cluster_type",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "cluster_type": "spoke" }),
            "cluster_type",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "platform": "NOMAD" }),
            "platform",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "environment": "PROD" }),
            "environment",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "display_name": long(129) }),
            "display_name",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "region": long(65) }),
            "region",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "platform_version": long(65) }),
            "platform_version",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "labels": { "bad key": "v" } }),
            "labels.bad key",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "labels": { "k": "bad value!" } }),
            "labels.k",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "labels": { long(64): "v" } }),
            "labels.",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "endpoints": { "prometheus_url": "nope" } }),
            "endpoints.prometheus_url",
        ),
        (
            json!({ "name": "abc", "api_server_url": "https://x", "endpoints": { "loki_url": "gopher://x" } }),
            "endpoints.loki_url",
        ),
    ];
    for (request, field) in cases {
        let error = assert_error(app.post_cluster(&request).await, 400, "VALIDATION_ERROR").await;
        let actual = error["error"]["details"]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(
            actual.starts_with(field),
            "{request}: field {actual:?}, expected {field}"
        );
        assert!(error["error"]["details"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    // The boundaries themselves are accepted.
    app.register(
        "limits-ok",
        json!({ "display_name": long(128), "region": long(64), "labels": { long(63): long(63) } }),
    )
    .await;
    let list: Value = app.list("").await.json().await.unwrap();
    assert_eq!(list["total"], 1, "only the valid registration was stored");
});

api_test!(update_validation, |app| {
    let created = app.register("upd-valid", json!({})).await;
    let id = created["id"].as_str().unwrap();
    for (request, field) in [
        (json!({ "api_server_url": null }), "api_server_url"),
        (json!({ "cluster_type": null }), "cluster_type"),
        (json!({ "environment": "NOPE" }), "environment"),
        (json!({ "labels": { "-x": "y" } }), "labels.-x"),
        (json!({ "unknown": 1 }), "unknown"),
        (json!({ "name": "other-name" }), "name"),
    ] {
        let error =
            assert_error(app.put_cluster(id, &request).await, 400, "VALIDATION_ERROR").await;
        assert!(
            error["error"]["details"]["field"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{request}"
        );
    }
    let error = assert_error(
        app.put_cluster(id, &json!({ "name": "Bad_Name" })).await,
        400,
        "INVALID_CLUSTER_NAME",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "name");
    let after: Value = app.get_cluster(id).await.json().await.unwrap();
    assert_eq!(
        after["revision"], created["revision"],
        "no failed update changed anything"
    );
});

api_test!(precondition_failed, |app| {
    let created = app.register("pre-cond", json!({})).await;
    let id = created["id"].as_str().unwrap();
    let response = app
        .client
        .put(app.url(&format!("/api/v1/clusters/{id}")))
        .header("If-Match", "\"999\"")
        .json(&json!({ "region": "x" }))
        .send()
        .await
        .unwrap();
    assert_error(response, 412, "PRECONDITION_FAILED").await;
});

api_test!(list_parameter_errors, |app| {
    for query in [
        "?page=0",
        "?page=-1",
        "?page=abc",
        "?page_size=0",
        "?page_size=101",
        "?page_size=x",
        "?has_gpu=maybe",
        "?has_cnf=2",
        "?state=UP",
        "?cluster_type=BIG",
        "?environment=nope",
        "?label=novalue",
        "?label=bad%20key=v",
        "?sort=name",
    ] {
        assert_error(app.list(query).await, 400, "VALIDATION_ERROR").await;
    }
});

api_test!(unknown_routes_and_methods, |app| {
    assert_error(app.get("/api/v1/nothing").await, 404, "NOT_FOUND").await;
    let response = app
        .client
        .patch(app.url("/api/v1/clusters"))
        .send()
        .await
        .unwrap();
    assert_error(response, 405, "METHOD_NOT_ALLOWED").await;
    let response = app
        .client
        .post(app.url("/api/v1/clusters"))
        .header("content-type", "text/xml")
        .body("<cluster/>")
        .send()
        .await
        .unwrap();
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    let huge = format!(
        "{{\"name\":\"abc\",\"api_server_url\":\"https://x\",\"display_name\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    assert_error(
        app.post_raw("/api/v1/clusters", &huge).await,
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
});

api_test!(every_body_read_is_limited_and_answered_413, |app| {
    // All whitespace: under the limit these bodies are the default request.
    let huge = " ".repeat(2 * 1024 * 1024);
    for path in [
        "/api/v1/sync/push",
        "/api/v1/sync/reconcile",
        "/api/v1/services/sync",
    ] {
        assert_error(app.post_raw(path, &huge).await, 413, "PAYLOAD_TOO_LARGE").await;
    }
    // No Content-Length (chunked): the limit holds as the body arrives.
    let chunks =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let response = app
        .client
        .post(app.url("/api/v1/sync/push"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "PAYLOAD_TOO_LARGE").await;
    let at_limit = " ".repeat(1024 * 1024);
    let response = app.post_raw("/api/v1/sync/push", &at_limit).await;
    assert_eq!(
        response.status(),
        200,
        "a body of exactly the limit is read"
    );
});

api_test!(control_characters_are_refused_not_stored, |app| {
    for body in [
        json!({ "name": "nul-url", "api_server_url": "https://a.b/\u{0}" }),
        json!({ "name": "nul-frag", "api_server_url": "https://a.b/#\u{0}" }),
        json!({ "name": "nul-ep", "api_server_url": "https://a.b", "endpoints": { "loki_url": "https://l/\u{0}" } }),
        json!({ "name": "nul-region", "api_server_url": "https://a.b", "region": "r\u{0}" }),
    ] {
        assert_error(app.post_cluster(&body).await, 400, "VALIDATION_ERROR").await;
    }
    for query in ["?name=a%00b", "?region=%00"] {
        assert_error(app.list(query).await, 400, "VALIDATION_ERROR").await;
    }
    for name in ["a%00b", "%ff", "UPPER"] {
        assert_error(
            app.get(&format!("/api/v1/clusters/by-name/{name}")).await,
            404,
            "CLUSTER_NOT_FOUND",
        )
        .await;
    }
    let list: Value = app.list("").await.json().await.unwrap();
    assert_eq!(list["total"], 0);
});
