use super::{required, start};
use fleetreg_sim::AuthSpec;
use serde_json::{json, Value};

struct Secrets {
    http: reqwest::Client,
    base: String,
}

impl Secrets {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth("bootstrap").send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }

    async fn merge_patch(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self
            .http
            .patch(self.url(path))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn secrets_crud_with_kubernetes_semantics() {
    let (_sim, admin, view) = start("vault", required()).await;
    let api = Secrets {
        http: reqwest::Client::new(),
        base: format!("{}/api/v1/namespaces/fleetreg", view.api_server_url),
    };
    let db = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "labels": {"app": "fleetreg", "tier": "data"}},
        "stringData": {"password": "s3cret-value"},
    });
    let (status, created) = api.post("/secrets", db.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["password"], "czNjcmV0LXZhbHVl");
    assert_eq!(created["metadata"]["namespace"], "fleetreg");
    let rv1: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let (status, conflict) = api.post("/secrets", db).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["reason"], "AlreadyExists");
    assert_eq!(conflict["message"], "secrets \"db\" already exists");
    assert_eq!(
        conflict["details"],
        json!({"name": "db", "kind": "secrets"})
    );

    let other = json!({"metadata": {"name": "api-key", "labels": {"app": "other"}},
                       "data": {"key": "a2V5"}});
    assert_eq!(api.post("/secrets", other).await.0, 201);

    let (status, got) = api.get("/secrets/db").await;
    assert_eq!(
        (status, got["metadata"]["uid"].clone()),
        (200, created["metadata"]["uid"].clone())
    );
    let (status, missing) = api.get("/secrets/nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        (
            missing["kind"].as_str(),
            missing["reason"].as_str(),
            missing["message"].as_str()
        ),
        (
            Some("Status"),
            Some("NotFound"),
            Some("secrets \"nope\" not found")
        )
    );

    let (_, all) = api.get("/secrets").await;
    assert_eq!(all["kind"], "SecretList");
    assert_eq!(names(&all), vec!["api-key", "db"]);
    let (_, selected) = api.get("/secrets?labelSelector=app%3Dfleetreg,tier").await;
    assert_eq!(names(&selected), vec!["db"]);
    let (_, none) = api.get("/secrets?labelSelector=app%20in%20(x,y)").await;
    assert!(names(&none).is_empty());
    assert_eq!(api.get("/secrets?labelSelector=a%20b%20c").await.0, 400);
    let everywhere = format!("{}/api/v1/secrets", view.api_server_url);
    let (_, cluster_wide) = api.send(api.http.get(everywhere)).await;
    assert_eq!(names(&cluster_wide).len(), 2);

    let (status, patched) = api
        .merge_patch("/secrets/db", json!({"data": {"user": "YWRtaW4="}}))
        .await;
    assert_eq!(status, 200, "{patched}");
    let rv2: u64 = patched["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(patched["data"]["password"], "czNjcmV0LXZhbHVl");

    let stale = json!({"metadata": {"name": "db", "resourceVersion": rv1.to_string()},
                       "data": {"password": "bmV3"}});
    let (status, stale_answer) = api.put("/secrets/db", stale).await;
    assert_eq!(
        (status, stale_answer["reason"].as_str()),
        (409, Some("Conflict"))
    );
    let fresh = json!({"metadata": {"name": "db", "resourceVersion": rv2.to_string()},
                       "data": {"password": "bmV3"}});
    let (status, replaced) = api.put("/secrets/db", fresh).await;
    assert_eq!(status, 200, "{replaced}");
    assert!(
        replaced["data"].get("user").is_none(),
        "PUT replaces data whole"
    );
    assert_eq!(
        api.put("/secrets/ghost", json!({"metadata": {"name": "ghost"}}))
            .await
            .0,
        404
    );

    let raw = admin.secrets("vault").await.unwrap();
    let stored = raw.iter().find(|r| r.name == "db").unwrap();
    assert_eq!(stored.namespace, "fleetreg");
    assert_eq!(stored.decoded["password"], "new");
    assert_eq!(
        stored.object["metadata"]["resourceVersion"],
        replaced["metadata"]["resourceVersion"]
    );

    let (status, deleted) = api.delete("/secrets/db").await;
    assert_eq!((status, deleted["status"].as_str()), (200, Some("Success")));
    assert_eq!(api.delete("/secrets/db").await.0, 404);
    assert_eq!(api.get("/secrets/db").await.0, 404);
    assert_eq!(admin.secrets("vault").await.unwrap().len(), 1);
}

#[tokio::test]
async fn secrets_need_a_credential_when_required() {
    let (_sim, admin, view) = start("guarded", required()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/x/secrets", view.api_server_url);
    let body = json!({"metadata": {"name": "a"}, "stringData": {"k": "v"}});
    let response = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(admin.secrets("guarded").await.unwrap().is_empty());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn unsupported_patch_types_and_bad_bodies() {
    let (_sim, _admin, view) = start("patchy", AuthSpec::default()).await;
    let api = Secrets {
        http: reqwest::Client::new(),
        base: format!("{}/api/v1/namespaces/default", view.api_server_url),
    };
    assert_eq!(
        api.post("/secrets", json!({"metadata": {"name": "p"}}))
            .await
            .0,
        201
    );
    let json_patch = api
        .http
        .patch(api.url("/secrets/p"))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"add","path":"/data","value":{}}]"#);
    let (status, body) = api.send(json_patch).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let not_json = api.http.post(api.url("/secrets")).body("{nope");
    assert_eq!(api.send(not_json).await.0, 400);
    let (status, invalid) = api
        .post("/secrets", json!({"metadata": {"name": "UPPER"}}))
        .await;
    assert_eq!((status, invalid["reason"].as_str()), (422, Some("Invalid")));
    // Other resources stay read-only.
    let (status, _) = api.post("/pods", json!({})).await;
    assert_eq!(status, 405);
}
