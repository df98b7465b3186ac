//! Skipping a test that cannot run on this machine: loudly, and never on CI.

use std::io::Write as _;

/// Says on the process's stderr, loudly, that `test` does not run here because of `why`; the
/// caller then returns early. Straight to stderr: the test harness hides what `eprintln!`
/// says in a passing test, and a skip must be seen.
///
/// # Panics
///
/// When the `CI` environment variable is set: on CI a skip is a failure (the machine lacks
/// something the suite needs), never a silent pass.
pub fn skip_or_fail(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run: {why} (CI is set, where a skipped test is a failure)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED {test}: {why} (with CI set, this is a failure) !!!!!!!!\n"
    );
}
