//! Property tests over everything swarmgate reads from outside: service labels in the three
//! dialects (and their merge), the TOML config, the Traefik rule language and the bytes an
//! upstream answers with. Each property says what a user relies on: no input panics, spins or
//! grows memory without bound; a problem names the service and label at fault; one hostile
//! service never changes another's routes; chunked bodies decode the same however they are cut.
//!
//! Bounded for CI by case count (each property picks its own, by cost); `PROPTEST_CASES`
//! overrides them all for a longer local run, e.g. `PROPTEST_CASES=20000 cargo test --test
//! properties`. Crash inputs found by these runs are kept as named regression tests next to the
//! property that found them.

mod config;
mod labels;
mod rule;
mod upstream;

use proptest::test_runner::Config;

/// A proptest config with `cases` cases unless `PROPTEST_CASES` says otherwise. No failure
/// files are written: a failure found is turned into a named regression test by hand.
pub fn cases(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, max_shrink_iters: 2048, ..Config::default() }
}
