//! The client-registry scenarios (issue 12's speed targets): with
//! `--bench-clients` clients and `--bench-hosts` hosts stored, a filtered
//! client list page (status + role + app) and the stale query, each p99 ≤
//! 20 ms; importing a 1,000-client registry file end to end ≤ 2 s; the
//! deregistration preview of a cluster with 200 deployments ≤ 50 ms.
//!
//! Clients carry no URLs (their health would be checked) and server
//! addresses are IP literals: nothing here resolves a name.

use crate::load::{self, describe_failure, Limits, Rng};
use crate::scenarios::{authed, row_from, Context};
use crate::stats::Row;
use crate::BenchError;
use serde_json::{json, Value};
use std::time::Instant;

/// Clients per import request while seeding.
const SEED_CHUNK: u64 = 1000;
/// Clients in the timed import.
const IMPORT_SIZE: u64 = 1000;
/// Deployments on the cluster whose deregistration preview is timed.
const PREVIEW_DEPLOYMENTS: u64 = 200;
/// Timed deregistration previews.
const PREVIEW_RUNS: u64 = 100;
/// Apps a client may run.
const APPS: [&str; 5] = ["nextcloud", "authentik", "keycloak", "matrix", "gitea"];
/// The filtered list's query.
const LIST_QUERY: &str = "status=deployed&role=production&app=nextcloud&page_size=20";
/// The stale query.
const STALE_QUERY: &str = "stale_days=30&stale_field=last_security_patch&page_size=20";

/// One registry entry, varied by `index` (70 % deployed, 10 % canary, one to
/// three apps, a fifth never patched).
fn entry(index: u64) -> Value {
    let mut rng = Rng::new(index.wrapping_mul(0x2545_F491_4F6C_DD1D) + 1);
    let status = match index % 20 {
        0..=13 => "deployed",
        14 | 15 => "maintenance",
        16 | 17 => "pending",
        18 => "offboarding",
        _ => "destroyed",
    };
    let role = if index.is_multiple_of(10) {
        "canary"
    } else {
        "production"
    };
    let apps: Vec<&str> = APPS
        .iter()
        .copied()
        .filter(|_| rng.next_u64().is_multiple_of(2))
        .collect();
    let day = |rng: &mut Rng| -> Value {
        if rng.next_u64().is_multiple_of(5) {
            Value::Null
        } else {
            let ago = rng.next_u64() % 90;
            json!(
                (chrono::Utc::now().date_naive() - chrono::Duration::days(ago as i64)).to_string()
            )
        }
    };
    let mut versions = serde_json::Map::new();
    for app in &apps {
        versions.insert(
            (*app).to_owned(),
            json!(format!("30.0.{}", rng.next_u64() % 20)),
        );
    }
    let server_type = ["cx22", "cx32", "cx42"][(index % 3) as usize];
    let location = ["nbg1", "fsn1", "hel1"][(index % 7 % 3) as usize];
    json!({
        "status": status,
        "role": role,
        "destroyed_date": if status == "destroyed" { json!("2026-01-01") } else { Value::Null },
        "server": {
            "type": server_type,
            "location": location,
            "ip": format!("10.{}.{}.{}", index / 65536 % 256, index / 256 % 256, index % 256),
            "id": format!("{}", 10_000_000 + index),
        },
        "apps": apps,
        "versions": versions,
        "maintenance": {
            "last_full_update": day(&mut rng),
            "last_security_patch": day(&mut rng),
            "last_os_update": day(&mut rng),
            "last_backup_verified": day(&mut rng),
        },
        "notes": "",
    })
}

/// A registry document of `count` clients named `{prefix}-{n}`.
fn registry(prefix: &str, from: u64, count: u64) -> Value {
    let clients: serde_json::Map<String, Value> = (from..from + count)
        .map(|i| (format!("{prefix}-{i:05}"), entry(i)))
        .collect();
    json!({ "clients": clients })
}

async fn send_json(
    ctx: &Context,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> Result<Value, BenchError> {
    let request = ctx
        .control
        .request(method.clone(), format!("{}{path}", ctx.base))
        .json(body);
    let response = authed(request, &ctx.token).send().await?;
    if !response.status().is_success() {
        return Err(BenchError::Server {
            what: format!("{method} {path}"),
            detail: describe_failure(response).await,
        });
    }
    Ok(response.json().await.unwrap_or(Value::Null))
}

async fn stored_clients(ctx: &Context) -> Result<u64, BenchError> {
    let request = ctx
        .control
        .get(format!("{}/api/v1/clients?page_size=1", ctx.base));
    let body: Value = authed(request, &ctx.token).send().await?.json().await?;
    Ok(body["total"].as_u64().unwrap_or_default())
}

/// Imports clients until `--bench-clients` are stored, and registers hosts
/// (200 per cluster) until this run added `--bench-hosts`.
async fn seed(ctx: &Context) -> Result<Row, BenchError> {
    let want = ctx.args.bench_clients;
    let started = Instant::now();
    let mut stored = stored_clients(ctx).await?;
    let before = stored;
    let progress = crate::progress::bar(want.saturating_sub(stored), "clients: importing clients");
    while stored < want {
        let count = SEED_CHUNK.min(want - stored);
        let doc = registry(&format!("bc{}", ctx.run), stored, count);
        send_json(ctx, reqwest::Method::POST, "/api/v1/clients/import", &doc).await?;
        stored = stored_clients(ctx).await?;
        progress.set_position(stored - before);
    }
    progress.finish_and_clear();
    let hosts = ctx.args.bench_hosts;
    let clusters = hosts.div_ceil(200);
    let mut made = 0;
    let progress = crate::progress::bar(hosts, "clients: registering hosts");
    for c in 0..clusters {
        let name = format!("bh-{}-{c}", ctx.run);
        let cluster = send_json(
            ctx,
            reqwest::Method::POST,
            "/api/v1/clusters",
            &json!({"name": name, "api_server_url": format!("https://127.0.0.1:1/{c}")}),
        )
        .await?;
        let id = cluster["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/api/v1/clusters/{id}/hosts");
        while made < hosts && made < (c + 1) * 200 {
            send_json(
                ctx,
                reqwest::Method::POST,
                &path,
                &json!({"hostname": format!("node-{made}"), "address": "10.255.0.1"}),
            )
            .await?;
            made += 1;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let mut row = Row::new(
        "clients-seed",
        format!("import in chunks of {SEED_CHUNK} until {want} clients; {hosts} hosts over {clusters} clusters, one request each"),
    );
    row.elapsed_secs = started.elapsed().as_secs_f64();
    row.value = Some(format!(
        "{stored} clients ({} new), {made} hosts",
        stored - before
    ));
    Ok(row)
}

/// One timed import of a fresh 1,000-client registry file.
async fn import(ctx: &Context) -> Result<Row, BenchError> {
    let doc = registry(&format!("bi{}", ctx.run), 0, IMPORT_SIZE);
    let bytes = serde_json::to_vec(&doc)?.len();
    let started = Instant::now();
    let plan = send_json(ctx, reqwest::Method::POST, "/api/v1/clients/import", &doc).await?;
    let elapsed = started.elapsed();
    let created = plan["created"].as_array().map_or(0, Vec::len) as u64;
    let mut row = Row::new(
        "clients-import",
        format!("POST /api/v1/clients/import of {IMPORT_SIZE} new clients ({} KiB), validate + one transaction + answer", bytes / 1024),
    );
    row.requests = 1;
    row.elapsed_secs = elapsed.as_secs_f64();
    row.value = Some(format!("{:.3} s", elapsed.as_secs_f64()));
    row.target = Some("<= 2 s".into());
    row.met = Some(created == IMPORT_SIZE && elapsed.as_secs_f64() <= 2.0);
    if created != IMPORT_SIZE {
        row.failed = 1;
        row.notes
            .push(format!("created {created}, expected {IMPORT_SIZE}"));
    }
    Ok(row)
}

/// GETs `/api/v1/clients?{query}` on random pages among the first ten.
async fn list(ctx: &Context, scenario: &str, query: &'static str) -> Result<Row, BenchError> {
    let total = {
        let request = ctx
            .control
            .get(format!("{}/api/v1/clients?{query}", ctx.base));
        let body: Value = authed(request, &ctx.token).send().await?.json().await?;
        body["total"].as_u64().unwrap_or_default()
    };
    let pages = total.div_ceil(20).clamp(1, 10);
    let concurrency = ctx.args.read_concurrency as usize;
    let duration = ctx.args.duration();
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let outcome = load::run(
        Limits {
            concurrency,
            duration,
            max_requests: u64::MAX,
        },
        move |client, _, random| {
            let page = 1 + random % pages;
            let request = authed(
                client.get(format!("{base}/api/v1/clients?{query}&page={page}")),
                &token,
            );
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(describe_failure(response).await);
                }
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                match body["total"].as_u64() {
                    Some(t) if t == total => Ok(()),
                    other => Err(format!("total {other:?}, expected {total}")),
                }
            }
        },
    )
    .await?;
    let how = format!(
        "GET /api/v1/clients?{query}, pages 1..{pages} of {total} matches, {concurrency} conn, {} s",
        duration.as_secs()
    );
    let mut row = row_from(scenario, how, outcome);
    row.target = Some("p99 <= 20 ms".into());
    row.met = Some(row.failed == 0 && row.p99_ms.is_some_and(|p| p <= 20.0));
    Ok(row)
}

/// Times `DELETE /api/v1/clusters/{id}?dry_run=true` of a cluster whose one
/// host runs 200 sync-disabled deployments.
async fn preview(ctx: &Context) -> Result<Row, BenchError> {
    let cluster = send_json(
        ctx,
        reqwest::Method::POST,
        "/api/v1/clusters",
        &json!({"name": format!("bd-{}", ctx.run), "api_server_url": "https://127.0.0.1:1/"}),
    )
    .await?;
    let id = cluster["id"].as_str().unwrap_or_default().to_owned();
    let host = send_json(
        ctx,
        reqwest::Method::POST,
        &format!("/api/v1/clusters/{id}/hosts"),
        &json!({"hostname": "bench-node"}),
    )
    .await?;
    let host_id = host["id"].as_str().unwrap_or_default().to_owned();
    for i in 0..PREVIEW_DEPLOYMENTS {
        send_json(
            ctx,
            reqwest::Method::POST,
            &format!("/api/v1/hosts/{host_id}/deployments"),
            &json!({"client": format!("bi{}-{i:05}", ctx.run), "container_name": format!("app-{i}")}),
        )
        .await?;
    }
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let outcome = load::run(
        Limits {
            concurrency: 1,
            duration: ctx.args.duration(),
            max_requests: PREVIEW_RUNS,
        },
        move |client, _, _| {
            let request = authed(
                client.delete(format!("{base}/api/v1/clusters/{id}?dry_run=true")),
                &token,
            );
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(describe_failure(response).await);
                }
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                let listed = body["deployments"].as_array().map_or(0, Vec::len) as u64;
                if listed == PREVIEW_DEPLOYMENTS {
                    Ok(())
                } else {
                    Err(format!(
                        "{listed} deployments listed, expected {PREVIEW_DEPLOYMENTS}"
                    ))
                }
            }
        },
    )
    .await?;
    let how = format!("DELETE /api/v1/clusters/{{id}}?dry_run=true, {PREVIEW_DEPLOYMENTS} deployments, 1 conn, {PREVIEW_RUNS} runs");
    let mut row = row_from("deregistration-preview", how, outcome);
    row.target = Some("<= 50 ms (p99)".into());
    row.met = Some(row.failed == 0 && row.p99_ms.is_some_and(|p| p <= 50.0));
    Ok(row)
}

/// Every client-registry scenario, in order.
pub(crate) async fn run(ctx: &mut Context) -> Result<Vec<Row>, BenchError> {
    Ok(vec![
        seed(ctx).await?,
        import(ctx).await?,
        list(ctx, "clients-list", LIST_QUERY).await?,
        list(ctx, "clients-stale", STALE_QUERY).await?,
        preview(ctx).await?,
    ])
}
