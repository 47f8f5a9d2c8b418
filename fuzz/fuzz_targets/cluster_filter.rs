//! The query of `GET /api/v1/clusters` (`ClusterFilter::from_query`), fed as
//! `&`-separated `key=value` pairs like a query string, and a single label
//! selector.
#![no_main]

use fleetreg_model::{ClusterFilter, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")));
    if let Ok((filter, page)) = ClusterFilter::from_query(pairs) {
        let _ = page.offset();
        let _ = page.total_pages(u64::MAX);
        assert!(
            filter.labels.windows(2).all(|w| w[0] != w[1]),
            "labels deduplicated"
        );
    }
    let _ = LabelSelector::parse(query);
});
