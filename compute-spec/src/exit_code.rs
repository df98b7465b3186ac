//! The one exit-code policy of every binary in the workspace.
//!
//! * [`OK`] (0): success.
//! * [`RUNTIME`] (1): a failure at run time: a server, a file, a child process.
//! * [`USAGE`] (2): bad input or usage: fix the spec, the document or the flags and run again.
//!
//! A stage that fails exits with its error's [`ErrorKind::exit_code`](crate::ErrorKind::exit_code).
//!
//! The long-running binaries (`pg-supervise`, `compute-ctl`) end when Postgres ends, and then
//! pass its exit code through ([`of_postgres`]): Postgres's own code when it exited (so a
//! clean shutdown is 0), [`RUNTIME`] when a signal killed it or the status is unknown. A code
//! passed through this way is Postgres's, not the table above: Postgres exiting with 2 is not a
//! usage error.
//!
//! No production code writes a bare `0`, `1` or `2` as an exit code; it names one of these.

/// Success.
pub const OK: u8 = 0;
/// A failure at run time: a server, a file, a child process.
pub const RUNTIME: u8 = 1;
/// Bad input or usage: fix the spec, document or flags and run again.
pub const USAGE: u8 = 2;

/// The process exit code for a Postgres (postmaster) that ended with exit `code` or was killed
/// by `signal`, as a child's wait status reports them: the code itself when it exited,
/// [`RUNTIME`] when a signal killed it, when neither is known, or when the code does not fit an
/// exit code.
pub fn of_postgres(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(code), None) => u8::try_from(code).unwrap_or(RUNTIME),
        (_, Some(_)) | (None, None) => RUNTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_codes_pass_through_and_signals_are_runtime_failures() {
        assert_eq!(of_postgres(Some(0), None), OK);
        assert_eq!(of_postgres(Some(1), None), 1);
        assert_eq!(of_postgres(Some(2), None), 2);
        assert_eq!(of_postgres(Some(255), None), 255);
        assert_eq!(of_postgres(None, Some(9)), RUNTIME);
        assert_eq!(of_postgres(Some(0), Some(15)), RUNTIME);
        assert_eq!(of_postgres(None, None), RUNTIME);
        assert_eq!(of_postgres(Some(256), None), RUNTIME);
        assert_eq!(of_postgres(Some(-1), None), RUNTIME);
    }

    #[test]
    fn the_policy_values() {
        assert_eq!((OK, RUNTIME, USAGE), (0, 1, 2));
    }
}
