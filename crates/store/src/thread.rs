//! The store's own threads (the SQLite writer, the WAL checkpoints).

/// Starts thread `name` running `work` with the caller's `tracing`
/// subscriber, so that what it logs goes where the caller's lines go (a
/// test's captured log included), not only to the global subscriber.
pub(crate) fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || tracing::dispatcher::with_default(&dispatch, work))
        .map(drop)
}
