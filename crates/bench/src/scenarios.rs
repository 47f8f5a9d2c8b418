//! The request scenarios: registrations, seeding, GET by id, filtered list, RSS.

use crate::load::{self, describe_failure, Limits, Outcome};
use crate::procfs;
use crate::stats::Row;
use crate::{BenchArgs, BenchError};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environments, in the order clusters cycle through them.
const ENVIRONMENTS: [&str; 4] = ["PRODUCTION", "STAGING", "DEVELOPMENT", "LAB"];
/// Teams, correlated with the environment so the list filter matches a quarter.
const TEAMS: [&str; 4] = ["payments", "search", "storage", "identity"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];
/// The list filter: matches every cluster with index ≡ 0 (mod 4).
pub(crate) const FILTER_ENVIRONMENT: &str = "PRODUCTION";
/// The label of the list filter, `key=value`.
pub(crate) const FILTER_LABEL: (&str, &str) = ("team", "payments");
const LIST_PAGE_SIZE: u64 = 20;
/// Seeding stops after this long even if the store is not full yet.
const SEED_TIME_LIMIT: Duration = Duration::from_secs(3600);
/// Full verification of every Nth list page (the total is checked on all).
const LIST_FULL_CHECK_EVERY: u64 = 16;

/// Shared state of one benchmark run.
pub(crate) struct Context {
    pub(crate) args: BenchArgs,
    /// Base URL without a trailing slash.
    pub(crate) base: Arc<str>,
    pub(crate) token: Option<Arc<str>>,
    /// Short random tag that makes this run's cluster names unique.
    pub(crate) run: String,
    /// A client for setup requests.
    pub(crate) control: reqwest::Client,
    pub(crate) backend: String,
    pub(crate) durability: String,
    pub(crate) server_pid: Option<u32>,
    /// Ids of all stored clusters and the exact number matching the list filter.
    pub(crate) catalog: Option<Arc<Catalog>>,
}

/// What paging through every stored cluster found.
pub(crate) struct Catalog {
    pub(crate) ids: Vec<String>,
    pub(crate) filter_matches: u64,
}

#[derive(Deserialize)]
struct ListPage {
    items: Vec<ListItem>,
    total: u64,
}

#[derive(Deserialize)]
struct ListItem {
    id: String,
    environment: String,
    #[serde(default)]
    labels: HashMap<String, String>,
}

impl ListItem {
    fn matches_filter(&self) -> bool {
        self.environment == FILTER_ENVIRONMENT
            && self
                .labels
                .get(FILTER_LABEL.0)
                .is_some_and(|v| v == FILTER_LABEL.1)
    }
}

#[derive(Deserialize)]
struct Ready {
    #[serde(default)]
    store: String,
    #[serde(default)]
    durability: String,
}

/// Adds the bearer token, if any.
pub(crate) fn authed(
    request: reqwest::RequestBuilder,
    token: &Option<Arc<str>>,
) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

impl Context {
    /// Checks the flags, reaches the server and finds its process.
    pub(crate) async fn connect(args: &BenchArgs) -> Result<Context, BenchError> {
        let url = reqwest::Url::parse(&args.server).map_err(|e| {
            BenchError::Usage(format!("--server {:?} is not a URL: {e}", args.server))
        })?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1");
        if !loopback && !args.allow_remote {
            return Err(BenchError::Usage(format!(
                "--server {} is not on the loopback interface; pass --allow-remote to load it anyway",
                args.server
            )));
        }
        if args.clusters == 0 {
            return Err(BenchError::Usage("--clusters must be at least 1".into()));
        }
        let control = load::one_connection_client()?;
        let base: Arc<str> = Arc::from(args.server.trim_end_matches('/'));
        let token = args.token.as_deref().map(Arc::from);
        let response = authed(control.get(format!("{base}/ready")), &token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(BenchError::Server {
                what: "GET /ready".into(),
                detail: describe_failure(response).await,
            });
        }
        let ready: Ready = response.json().await?;
        let server_pid = args.server_pid.or_else(|| {
            if loopback {
                url.port_or_known_default()
                    .and_then(procfs::pid_listening_on)
            } else {
                None
            }
        });
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Ok(Context {
            args: args.clone(),
            base,
            token,
            run,
            control,
            backend: ready.store,
            durability: ready.durability,
            server_pid,
            catalog: None,
        })
    }

    /// How many clusters the server stores now.
    pub(crate) async fn stored(&self) -> Result<u64, BenchError> {
        let url = format!("{}/api/v1/clusters?page_size=1", self.base);
        let response = authed(self.control.get(url), &self.token).send().await?;
        if !response.status().is_success() {
            return Err(BenchError::Server {
                what: "GET /api/v1/clusters".into(),
                detail: describe_failure(response).await,
            });
        }
        #[derive(Deserialize)]
        struct Total {
            total: u64,
        }
        Ok(response.json::<Total>().await?.total)
    }

    /// Pages through every stored cluster (page_size 100, four connections) to
    /// collect the ids and count the clusters matching the list filter. Cached
    /// until the next write scenario.
    pub(crate) async fn catalog(&mut self) -> Result<Arc<Catalog>, BenchError> {
        if let Some(catalog) = &self.catalog {
            return Ok(catalog.clone());
        }
        let stored = self.stored().await?;
        let pages = stored.div_ceil(100);
        let started = Instant::now();
        eprintln!("collecting the ids of {stored} stored clusters ({pages} pages of 100) ...");
        let found: Arc<Mutex<(Vec<String>, u64)>> =
            Arc::new(Mutex::new((Vec::with_capacity(stored as usize), 0)));
        let collected = found.clone();
        let (base, token) = (self.base.clone(), self.token.clone());
        let outcome = load::run(
            Limits {
                concurrency: 4,
                duration: Duration::from_secs(3600),
                max_requests: pages,
            },
            move |client, sequence, _| {
                let url = format!("{base}/api/v1/clusters?page_size=100&page={}", sequence + 1);
                let (token, collected) = (token.clone(), collected.clone());
                async move {
                    let response = authed(client.get(url), &token)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !response.status().is_success() {
                        return Err(describe_failure(response).await);
                    }
                    let page: ListPage = response.json().await.map_err(|e| e.to_string())?;
                    let matches = page.items.iter().filter(|i| i.matches_filter()).count() as u64;
                    let mut found = collected.lock().unwrap_or_else(|e| e.into_inner());
                    found.0.extend(page.items.into_iter().map(|i| i.id));
                    found.1 += matches;
                    Ok(())
                }
            },
        )
        .await?;
        if outcome.failed > 0 {
            return Err(BenchError::Unexpected {
                what: "paging through all clusters".into(),
                detail: format!(
                    "{} of {} pages failed: {:?}",
                    outcome.failed, pages, outcome.failures
                ),
            });
        }
        let (mut ids, filter_matches) =
            std::mem::take(&mut *found.lock().unwrap_or_else(|e| e.into_inner()));
        let listed = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() as u64 != stored || listed != ids.len() {
            return Err(BenchError::Unexpected {
                what: "paging through all clusters".into(),
                detail: format!(
                    "total said {stored}, pages held {listed} ids of which {} distinct",
                    ids.len()
                ),
            });
        }
        eprintln!(
            "  {} ids in {:.1} s; {} match environment={FILTER_ENVIRONMENT}&label={}={}",
            ids.len(),
            started.elapsed().as_secs_f64(),
            filter_matches,
            FILTER_LABEL.0,
            FILTER_LABEL.1
        );
        let catalog = Arc::new(Catalog {
            ids,
            filter_matches,
        });
        self.catalog = Some(catalog.clone());
        Ok(catalog)
    }
}

/// The API server URL of every benchmark cluster: an IP literal on a loopback
/// port where nothing listens, so the health checks and discovery a
/// registration starts fail fast (connection refused) and resolve no name:
/// the machine's resolver is never a load target.
pub(crate) const UNREACHABLE_API_SERVER: &str = "https://127.0.0.1:9";

/// The registration body of cluster number `index` of scenario `tag`.
pub(crate) fn registration_body(run: &str, tag: &str, index: u64) -> String {
    let k = (index % 4) as usize;
    let name = format!("bench-{run}-{tag}-{index}");
    json!({
        "name": name,
        "display_name": format!("Bench cluster {index}"),
        "api_server_url": format!("{UNREACHABLE_API_SERVER}/{name}"),
        "cluster_type": match index % 5 { 0 => "EDGE", _ => "SPOKE" },
        "region": REGIONS[(index % 3) as usize],
        "environment": ENVIRONMENTS[k],
        "labels": { "team": TEAMS[k], "bench": run, "shard": format!("s{}", index % 16) },
    })
    .to_string()
}

/// A report row from a load run's outcome.
pub(crate) fn row_from(scenario: &str, how: String, mut outcome: Outcome) -> Row {
    let mut row = Row::new(scenario, how);
    row.requests = outcome.requests;
    row.failed = outcome.failed;
    row.elapsed_secs = outcome.elapsed.as_secs_f64();
    row.throughput = Some(outcome.throughput());
    row.set_latencies(&mut outcome.latencies);
    row.notes.extend(
        outcome
            .failures
            .into_iter()
            .map(|f| format!("failure: {f}")),
    );
    row
}

fn throughput_target(row: &mut Row, minimum: f64) {
    row.target = Some(format!(">= {minimum:.0} req/s"));
    row.met = row.throughput.map(|t| t >= minimum && row.failed == 0);
}

/// Registrations within `limits`, advancing `progress` per answer.
async fn register_until(
    ctx: &mut Context,
    scenario: &str,
    tag: &'static str,
    limits: Limits,
    how: String,
    progress: indicatif::ProgressBar,
) -> Result<Row, BenchError> {
    let (base, token, run) = (ctx.base.clone(), ctx.token.clone(), ctx.run.clone());
    let outcome = load::run_with_progress(limits, progress, move |client, index, _| {
        let body = registration_body(&run, tag, index);
        let request = authed(client.post(format!("{base}/api/v1/clusters")), &token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status() != reqwest::StatusCode::CREATED {
                return Err(describe_failure(response).await);
            }
            response.bytes().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    ctx.catalog = None;
    Ok(row_from(scenario, how, outcome))
}

/// Registrations at `concurrency` connections for `--duration-secs`, stopping
/// early when the store reaches `--clusters`.
pub(crate) async fn register(ctx: &mut Context, concurrency: usize) -> Result<Row, BenchError> {
    let before = ctx.stored().await?;
    let room = ctx.args.clusters.saturating_sub(before);
    let duration = ctx.args.duration();
    let (max_requests, bound) = if room > 0 {
        (
            room,
            format!(
                "{} s or until {} stored",
                duration.as_secs(),
                ctx.args.clusters
            ),
        )
    } else {
        (u64::MAX, format!("{} s", duration.as_secs()))
    };
    let scenario = format!("register-{concurrency}");
    eprintln!("{scenario}: POST /api/v1/clusters over {concurrency} connection(s), {bound} ({before} stored) ...");
    let tag = if concurrency == 1 { "r1" } else { "r64" };
    let how = format!("{concurrency} conn, {bound}, store at {before}");
    let limits = Limits {
        concurrency,
        duration,
        max_requests,
    };
    // A timed scenario: no progress bar (it would cost the measured client CPU).
    let hidden = indicatif::ProgressBar::hidden();
    let mut row = register_until(ctx, &scenario, tag, limits, how, hidden).await?;
    throughput_target(&mut row, if concurrency == 1 { 1_500.0 } else { 10_000.0 });
    if room == 0 {
        row.notes.push(format!(
            "the store already held {before} >= --clusters; this run grew it"
        ));
    }
    Ok(row)
}

/// Registers clusters at 64 connections until the store holds `--clusters`.
pub(crate) async fn seed(ctx: &mut Context) -> Result<Row, BenchError> {
    let before = ctx.stored().await?;
    let wanted = ctx.args.clusters;
    let how = format!(
        "64 conn, {} registrations ({before} -> {wanted})",
        wanted.saturating_sub(before)
    );
    if before >= wanted {
        let mut row = Row::new("seed", how);
        row.notes.push(format!(
            "the store already holds {before} clusters; nothing to seed"
        ));
        return Ok(row);
    }
    eprintln!(
        "seed: registering {} clusters over 64 connections ...",
        wanted - before
    );
    let limits = Limits {
        concurrency: 64,
        duration: SEED_TIME_LIMIT,
        max_requests: wanted - before,
    };
    let progress = crate::progress::bar(wanted - before, "seed: registering clusters");
    let mut row = register_until(ctx, "seed", "s", limits, how, progress).await?;
    let after = ctx.stored().await?;
    row.notes
        .push(format!("store holds {after} clusters after seeding"));
    Ok(row)
}

/// GET /api/v1/clusters/{id} with random ids across every stored cluster.
pub(crate) async fn get_by_id(ctx: &mut Context) -> Result<Row, BenchError> {
    let catalog = ctx.catalog().await?;
    if catalog.ids.is_empty() {
        return Err(BenchError::Usage(
            "get: the store holds no clusters; run seed first".into(),
        ));
    }
    let concurrency = ctx.args.read_concurrency as usize;
    let duration = ctx.args.duration();
    eprintln!(
        "get: GET /api/v1/clusters/{{id}} over {concurrency} connections for {} s ...",
        duration.as_secs()
    );
    let (base, token, ids) = (ctx.base.clone(), ctx.token.clone(), catalog.clone());
    let outcome = load::run(
        Limits {
            concurrency,
            duration,
            max_requests: u64::MAX,
        },
        move |client, _, random| {
            let id = &ids.ids[(random % ids.ids.len() as u64) as usize];
            let request = authed(client.get(format!("{base}/api/v1/clusters/{id}")), &token);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status() != reqwest::StatusCode::OK {
                    return Err(describe_failure(response).await);
                }
                response.bytes().await.map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await?;
    let how = format!(
        "{concurrency} conn, {} s, random ids of {}",
        duration.as_secs(),
        catalog.ids.len()
    );
    let mut row = row_from("get", how, outcome);
    throughput_target(&mut row, 20_000.0);
    Ok(row)
}

/// Finds `"total":N` near the end of a list body (it follows `items`).
fn total_of(body: &[u8]) -> Option<u64> {
    let needle = b"\"total\":";
    let at = body.windows(needle.len()).rposition(|w| w == needle)?;
    let digits: String = body[at + needle.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| char::from(*b))
        .collect();
    digits.parse().ok()
}

/// The filtered list: environment + label, page_size 20, a random page among
/// the first `--list-pages`; checks `total` against the exact count found by
/// paging through everything.
pub(crate) async fn filtered_list(ctx: &mut Context) -> Result<Row, BenchError> {
    let catalog = ctx.catalog().await?;
    let expected = catalog.filter_matches;
    let pages = expected
        .div_ceil(LIST_PAGE_SIZE)
        .clamp(1, u64::from(ctx.args.list_pages));
    let concurrency = ctx.args.read_concurrency as usize;
    let duration = ctx.args.duration();
    let query = format!(
        "environment={FILTER_ENVIRONMENT}&label={}%3D{}&page_size={LIST_PAGE_SIZE}",
        FILTER_LABEL.0, FILTER_LABEL.1
    );
    eprintln!("list: GET /api/v1/clusters?{query}&page=1..{pages} over {concurrency} connections for {} s ...", duration.as_secs());
    let (base, token) = (ctx.base.clone(), ctx.token.clone());
    let wrong = Arc::new(AtomicU64::new(0));
    let wrong_count = wrong.clone();
    let outcome = load::run(
        Limits {
            concurrency,
            duration,
            max_requests: u64::MAX,
        },
        move |client, sequence, random| {
            let page = 1 + random % pages;
            let request = authed(
                client.get(format!("{base}/api/v1/clusters?{query}&page={page}")),
                &token,
            );
            let wrong = wrong_count.clone();
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status() != reqwest::StatusCode::OK {
                    return Err(describe_failure(response).await);
                }
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                let fail = |why: String| {
                    wrong.fetch_add(1, Ordering::Relaxed);
                    Err(why)
                };
                match total_of(&body) {
                    Some(total) if total == expected => {}
                    other => {
                        return fail(format!("page {page}: total {other:?}, expected {expected}"))
                    }
                }
                if sequence % LIST_FULL_CHECK_EVERY == 0 {
                    let parsed: ListPage =
                        serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                    let want = expected
                        .saturating_sub((page - 1) * LIST_PAGE_SIZE)
                        .min(LIST_PAGE_SIZE);
                    if parsed.total != expected
                        || parsed.items.len() as u64 != want
                        || !parsed.items.iter().all(ListItem::matches_filter)
                    {
                        return fail(format!(
                            "page {page}: {} items (expected {want}) or an item outside the filter",
                            parsed.items.len()
                        ));
                    }
                }
                Ok(())
            }
        },
    )
    .await?;
    let how = format!(
        "{concurrency} conn, {} s, pages 1..{pages} of {expected} matches / {} stored",
        duration.as_secs(),
        catalog.ids.len()
    );
    let mut row = row_from("list", how, outcome);
    row.target = Some(">= 3000 req/s, p99 <= 20 ms".into());
    row.met = Some(
        row.throughput.unwrap_or_default() >= 3000.0
            && row.p99_ms.is_some_and(|p| p <= 20.0)
            && row.failed == 0,
    );
    let share = if catalog.ids.is_empty() {
        0.0
    } else {
        100.0 * expected as f64 / catalog.ids.len() as f64
    };
    row.notes.push(format!(
        "filter matches {expected} of {} ({share:.1} %); total checked on every response, items on every {LIST_FULL_CHECK_EVERY}th; {} wrong",
        catalog.ids.len(),
        wrong.load(Ordering::Relaxed)
    ));
    Ok(row)
}

/// The server's resident memory now, with the number of stored clusters.
pub(crate) async fn rss(ctx: &mut Context) -> Result<Row, BenchError> {
    let stored = ctx.stored().await?;
    let mut row = Row::new("rss", format!("/proc/PID/status at {stored} clusters"));
    let Some(pid) = ctx.server_pid else {
        row.notes
            .push("server process not found; pass --server-pid".into());
        return Ok(row);
    };
    match procfs::memory(pid) {
        Some(memory) => {
            row.value = Some(format!(
                "VmRSS {:.1} MB (peak VmHWM {:.1} MB), pid {pid}",
                mb(memory.rss),
                mb(memory.hwm)
            ));
            row.target = Some("<= 100 MB".into());
            row.met = Some(mb(memory.rss) <= 100.0);
        }
        None => row.notes.push(format!("cannot read /proc/{pid}/status")),
    }
    Ok(row)
}

/// Bytes in MB (10^6).
pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    #[test]
    fn quarter_of_registrations_match_the_filter() {
        let matching = (0..1000)
            .filter(|i| {
                let body: serde_json::Value =
                    serde_json::from_str(&super::registration_body("abcd1234", "s", *i))
                        .unwrap_or_default();
                body["environment"] == super::FILTER_ENVIRONMENT
                    && body["labels"][super::FILTER_LABEL.0] == super::FILTER_LABEL.1
            })
            .count();
        assert_eq!(matching, 250);
    }

    #[test]
    fn finds_total_at_the_end() {
        assert_eq!(
            super::total_of(br#"{"items":[{"total":3}],"total":25000,"page":1}"#),
            Some(25000)
        );
        assert_eq!(super::total_of(b"{}"), None);
    }
}
