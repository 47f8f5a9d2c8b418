//! Reading counters and histograms from the server's `/metrics` (Prometheus
//! text format), for the scheduler's own view next to the simulator's.

/// Sum of every sample of metric `name` over all its label sets; `None` when absent.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    samples(text, name)
        .map(|(_, value)| value)
        .fold(None, |total, v| Some(total.unwrap_or(0.0) + v))
}

/// Cumulative counts of histogram `name` by bucket bound (`le`, `+Inf` as
/// infinity), summed over label sets, sorted by bound.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    for (labels, value) in samples(text, &bucket) {
        let Some(bound) = label(labels, "le").and_then(|le| match le {
            "+Inf" => Some(f64::INFINITY),
            other => other.parse().ok(),
        }) else {
            continue;
        };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some(entry) => entry.1 += value,
            None => by_bound.push((bound, value)),
        }
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_bound
}

/// `after − before`, bucket by bucket (bounds missing before count from 0).
pub fn delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c);
            (bound, count - earlier)
        })
        .collect()
}

/// The smallest bucket bound with at least fraction `q` of the observations at
/// or below it; `None` without observations.
pub fn quantile_bound(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= q * total)
        .map(|(bound, _)| *bound)
}

/// `(labels, value)` of every sample line of exactly metric `name`.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inner) => inner.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None, // a longer name with this prefix
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
}

/// The value of label `key` in `a="x",b="y"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP fleetreg_health_checks_total x\n\
        # TYPE fleetreg_health_checks_total counter\n\
        fleetreg_health_checks_total{result=\"ok\"} 120\n\
        fleetreg_health_checks_total{result=\"failed\"} 3\n\
        fleetreg_health_checks_total_other 99\n\
        fleetreg_health_missed_intervals_total 0\n\
        lag_seconds_bucket{le=\"0.1\"} 50\n\
        lag_seconds_bucket{le=\"0.25\"} 98\n\
        lag_seconds_bucket{le=\"1\"} 100\n\
        lag_seconds_bucket{le=\"+Inf\"} 100\n\
        lag_seconds_sum 9.5\n\
        lag_seconds_count 100\n";

    #[test]
    fn sums_a_metric_over_its_label_sets() {
        assert_eq!(sum(TEXT, "fleetreg_health_checks_total"), Some(123.0));
        assert_eq!(
            sum(TEXT, "fleetreg_health_missed_intervals_total"),
            Some(0.0)
        );
        assert_eq!(sum(TEXT, "fleetreg_nothing"), None);
    }

    #[test]
    fn reads_histogram_buckets_and_bounds() {
        let after = buckets(TEXT, "lag_seconds");
        assert_eq!(
            after,
            vec![
                (0.1, 50.0),
                (0.25, 98.0),
                (1.0, 100.0),
                (f64::INFINITY, 100.0)
            ]
        );
        assert_eq!(quantile_bound(&after, 0.5), Some(0.1));
        assert_eq!(quantile_bound(&after, 0.99), Some(1.0));
        let before = vec![
            (0.1, 10.0),
            (0.25, 10.0),
            (1.0, 10.0),
            (f64::INFINITY, 10.0),
        ];
        let window = delta(&before, &after);
        assert_eq!(window[1], (0.25, 88.0));
        // 88 of 90 within 0.25 s: the p99 bound is the next bucket.
        assert_eq!(quantile_bound(&window, 0.97), Some(0.25));
        assert_eq!(quantile_bound(&window, 0.99), Some(1.0));
        assert_eq!(quantile_bound(&[], 0.99), None);
    }
}
