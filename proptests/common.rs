//! Shared settings of the property tests.

use proptest::test_runner::Config;

/// Cases per property: 256 in CI, `PYALLOC_PROPTEST_CASES` or 20000 with `long-proptests`.
pub fn config() -> Config {
    let default = if cfg!(feature = "long-proptests") {
        20_000
    } else {
        256
    };
    let cases = std::env::var("PYALLOC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        ..Config::default()
    }
}
