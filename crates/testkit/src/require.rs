//! DESIGN.md's skip rule for a tool or service a test needs: absent, the test
//! prints a `SKIP:` line and passes, unless its `FLEETREG_REQUIRE_…` variable
//! is `1` (CI), where that is a failure.

/// Whether the environment variable `env` is `1`.
pub fn required(env: &str) -> bool {
    std::env::var(env).is_ok_and(|v| v == "1")
}

/// Called when something a test needs is missing (`why`): panics when
/// [`required`]`(env)`, else prints `SKIP: {why}; {hint}` to stderr. The test
/// then returns.
pub fn skip_or_fail(env: &str, why: &str, hint: &str) {
    if required(env) {
        panic!("{env}=1 but {why}; {hint}");
    }
    eprintln!("SKIP: {why}; {hint}, or set {env}=1 to make this a failure");
}
