//! `pg-test-cleanup`: kills PostgreSQL servers left behind under the test root by test
//! processes that were killed from outside. With `--purge`, also removes the whole test
//! root (test directories and template clusters).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut purge = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--purge" => purge = true,
            "-h" | "--help" => {
                println!("usage: pg-test-cleanup [--purge]");
                println!(
                    "Kills leftover test postmasters under {}.",
                    pg_test_support::test_root().display()
                );
                println!("--purge  also remove that directory (test dirs and templates)");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("pg-test-cleanup: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let killed = pg_test_support::kill_leftover_postmasters();
    if killed.is_empty() {
        println!("pg-test-cleanup: no leftover postmasters");
    } else {
        println!("pg-test-cleanup: killed postmasters {killed:?}");
    }
    if purge {
        // Let the killed servers exit (and release their files) first.
        let timeout = std::time::Duration::from_secs(5);
        let gone = pg_test_support::wait_until(timeout, || {
            killed
                .iter()
                .all(|pid| !pg_test_support::process_alive(*pid))
        });
        if !gone {
            eprintln!("pg-test-cleanup: postmasters {killed:?} still run after {timeout:?}");
        }
        let root = pg_test_support::test_root();
        if let Err(e) = std::fs::remove_dir_all(&root) {
            eprintln!("pg-test-cleanup: cannot remove {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
        println!("pg-test-cleanup: removed {}", root.display());
    }
    ExitCode::SUCCESS
}
