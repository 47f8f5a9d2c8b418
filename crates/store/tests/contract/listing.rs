//! `list_clusters`: order, paging, totals, every filter against an independent
//! count over what the test wrote, and the query plans of the filters.

use crate::harness::*;
use fleetreg_model::{Capabilities, ClusterFilter, ClusterState, ClusterType, Environment, Page};
use fleetreg_store::Backend;
use fleetreg_testkit::fleet_fixture::{self, seeded, Seeded};
use serde_json::json;

/// Registers `n` clusters (in reverse name order), with states and capabilities.
async fn seed(store: &StoreRef, n: usize) -> Vec<Seeded> {
    let all: Vec<Seeded> = (0..n).map(seeded).collect();
    let now = fleetreg_model::now();
    for s in all.iter().rev() {
        let mut labels = json!({ "team": s.team });
        if let Some(tier) = s.tier {
            labels["tier"] = json!(tier);
        }
        let cluster = store
            .insert_cluster(
                registration(json!({
                    "name": s.name,
                    "cluster_type": s.cluster_type,
                    "environment": s.environment,
                    "region": s.region,
                    "labels": labels,
                })),
                &operator(),
            )
            .await
            .unwrap();
        if s.state != ClusterState::Unknown {
            let score = if s.state == ClusterState::Online {
                100
            } else {
                30
            };
            store
                .record_status(cluster.id, status(s.state, score, now), Some(now))
                .await
                .unwrap();
        }
        if s.gpu.is_some() || s.cnf.is_some() {
            let capabilities = Capabilities {
                has_gpu_nodes: s.gpu.unwrap_or(false),
                gpu_count: if s.gpu == Some(true) { 8 } else { 0 },
                has_cnf: s.cnf.unwrap_or(false),
                discovered_at: Some(now),
                ..Capabilities::default()
            };
            store
                .set_capabilities(cluster.id, capabilities, None)
                .await
                .unwrap();
        }
    }
    all
}

fn filter(query: &str) -> ClusterFilter {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    ClusterFilter::from_query(pairs).unwrap().0
}

/// The names and total of one page of 100 under `filter`.
async fn names(store: &StoreRef, filter: &ClusterFilter) -> (Vec<String>, u64) {
    let page = Page {
        page: 1,
        page_size: 100,
    };
    let list = store.list_clusters(filter, page).await.unwrap();
    let names = list.items.iter().map(|c| c.name.to_string()).collect();
    (names, list.total)
}

fn expect(all: &[Seeded], keep: impl Fn(&Seeded) -> bool) -> Vec<String> {
    fleet_fixture::expect(all, keep).into_iter().collect()
}

store_test!(lists_are_sorted_by_name_and_paged, |store| async move {
    let all = seed(&store, 25).await;
    let mut sorted: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    sorted.sort();
    let latest = store.latest_revision().await.unwrap();

    let everything = store
        .list_clusters(
            &ClusterFilter::default(),
            Page {
                page: 1,
                page_size: 100,
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = everything
        .items
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, sorted);
    assert_eq!(everything.total, 25);
    assert_eq!(
        everything.revision, latest,
        "the list says which revision it reflects"
    );

    let mut paged = Vec::new();
    for page in 1..=4 {
        let list = store
            .list_clusters(&ClusterFilter::default(), Page { page, page_size: 7 })
            .await
            .unwrap();
        assert_eq!(list.total, 25, "page {page}");
        assert_eq!(list.items.len(), if page < 4 { 7 } else { 4 });
        paged.extend(list.items.iter().map(|c| c.name.to_string()));
    }
    assert_eq!(paged, sorted, "pages partition the sorted list");
    let beyond = store
        .list_clusters(
            &ClusterFilter::default(),
            Page {
                page: 9,
                page_size: 7,
            },
        )
        .await
        .unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 25, "a page beyond the end still counts");
    let none = store
        .list_clusters(&filter("region=nowhere"), Page::default())
        .await
        .unwrap();
    assert_eq!((none.items.len(), none.total), (0, 0));
    let first = store
        .list_clusters(&ClusterFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 20, "the default page size");
});

store_test!(
    every_filter_matches_an_independent_count,
    |store| async move {
        let all = seed(&store, 36).await;
        let cases = fleet_fixture::filter_cases();
        for (query, keep) in &cases {
            let expected = expect(&all, keep);
            let (names, total) = names(&store, &filter(query)).await;
            assert_eq!(names, expected, "{query}");
            assert_eq!(total, expected.len() as u64, "{query}: total");
        }
        // The cases are not vacuous: most select some but not all clusters.
        let selective = cases
            .iter()
            .filter(|(_, keep)| {
                let n = expect(&all, keep).len();
                n > 0 && n < all.len()
            })
            .count();
        assert!(selective >= 15, "only {selective} selective cases");
    }
);

store_test!(name_filters_match_wildcards_literally, |store| async move {
    for name in ["abc", "a-c", "axc-1"] {
        insert(&store, name).await;
    }
    for (needle, expected) in [
        ("a_c", vec![]),
        ("%", vec![]),
        ("a%c", vec![]),
        ("_", vec![]),
        ("\\", vec![]),
        ("a-c", vec!["a-c"]),
        ("c", vec!["a-c", "abc", "axc-1"]),
    ] {
        let f = ClusterFilter {
            name: Some(needle.to_owned()),
            ..ClusterFilter::default()
        };
        let (mut names, total) = names(&store, &f).await;
        names.sort();
        assert_eq!(names, expected, "name={needle}");
        assert_eq!(total, expected.len() as u64, "name={needle}");
    }
});

// Names sort by their bytes on both engines (as SQLite does), whatever the
// PostgreSQL server's default collation.
store_test!(names_sort_bytewise, |store| async move {
    for name in ["abc", "a-c", "a0c", "ab-1", "ab1"] {
        insert(&store, name).await;
    }
    let (names, _) = names(&store, &ClusterFilter::default()).await;
    assert_eq!(names, ["a-c", "a0c", "ab-1", "ab1", "abc"]);
});

// `ClusterFilter::name` is documented as a case-insensitive substring; the
// API lowercases it first, but the store's contract should not differ by engine.
store_test!(name_filters_ignore_case, |store| async move {
    insert(&store, "alpha-01").await;
    insert(&store, "beta-01").await;
    let f = ClusterFilter {
        name: Some("ALPHA".to_owned()),
        ..ClusterFilter::default()
    };
    let (names, total) = names(&store, &f).await;
    assert_eq!((names, total), (vec!["alpha-01".to_owned()], 1));
});

store_test!(totals_follow_observations, |store| async move {
    let a = insert(&store, "obs-a").await;
    insert(&store, "obs-b").await;
    let online = filter("state=ONLINE");
    let gpu = filter("has_gpu=true");
    assert_eq!(names(&store, &online).await.1, 0);
    assert_eq!(names(&store, &gpu).await.1, 0);
    let now = fleetreg_model::now();
    store
        .record_status(a.id, status(ClusterState::Online, 100, now), Some(now))
        .await
        .unwrap();
    let caps = Capabilities {
        has_gpu_nodes: true,
        gpu_count: 2,
        ..Capabilities::default()
    };
    store.set_capabilities(a.id, caps, None).await.unwrap();
    let (names_online, total) = names(&store, &online).await;
    assert_eq!((names_online, total), (vec!["obs-a".to_owned()], 1));
    assert_eq!(names(&store, &gpu).await.1, 1);
    let list = store.list_clusters(&online, Page::default()).await.unwrap();
    assert_eq!(list.revision, store.latest_revision().await.unwrap());
    store.delete_cluster(a.id, None, &operator()).await.unwrap();
    assert_eq!(names(&store, &online).await, (vec![], 0));
    store
        .update_cluster(
            store
                .find_cluster_by_name("obs-b")
                .await
                .unwrap()
                .unwrap()
                .id,
            None,
            patch(json!({ "cluster_type": "HUB", "environment": "LAB" })),
            &operator(),
        )
        .await
        .unwrap();
    let hub = ClusterFilter {
        cluster_type: Some(ClusterType::Hub),
        environment: Some(Environment::Lab),
        ..ClusterFilter::default()
    };
    assert_eq!(names(&store, &hub).await, (vec!["obs-b".to_owned()], 1));
});

// Plans must reach clusters through an index for every indexed filter (the
// same assertions as the API's `listing::filters_use_indexes`).
store_test!(filters_use_indexes, |store| async move {
    seed(&store, 12).await;
    let queries = [
        "cluster_type=EDGE",
        "environment=PRODUCTION",
        "region=us-east-1",
        "state=ONLINE",
        "has_gpu=true",
        "has_cnf=true",
        "label=team=data",
        "environment=PRODUCTION&label=team=platform",
    ];
    for query in queries {
        let plan = store.explain_list_clusters(&filter(query)).await.unwrap();
        match store.backend() {
            Backend::Sqlite => {
                // SEARCH lines are index lookups; a SCAN must at least walk an index.
                for line in plan.lines().filter(|l| l.starts_with("SCAN")) {
                    assert!(
                        line.contains("USING") && line.contains("INDEX"),
                        "{query}: full scan in plan:\n{plan}"
                    );
                }
                let label_index = plan.contains("SEARCH l USING PRIMARY KEY (key=? AND value=?");
                assert!(
                    plan.contains("idx_") || label_index,
                    "{query}: no filter index in plan:\n{plan}"
                );
                if query.contains("label=") {
                    assert!(label_index, "label filters search the label index:\n{plan}");
                }
                if query == "cluster_type=EDGE" {
                    assert!(
                        plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"),
                        "{query}:\n{plan}"
                    );
                }
            }
            Backend::Postgres => {
                assert!(
                    !plan.contains("Seq Scan on clusters"),
                    "{query}: sequential scan in plan:\n{plan}"
                );
                assert!(
                    plan.contains("idx_clusters"),
                    "{query}: no filter index in plan:\n{plan}"
                );
                assert!(plan.contains("Index"), "{query}:\n{plan}");
                if query.starts_with("label=") {
                    assert!(
                        plan.contains("idx_clusters_labels"),
                        "label filter uses the GIN index:\n{plan}"
                    );
                }
            }
        }
    }
});
