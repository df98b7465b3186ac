//! The tests' pageserver stand-in as a program, for `scripts/bench-basebackup.sh`: serves a
//! gzip tar from a file for `basebackup <tenant> <timeline> --gzip` over the page-service
//! (libpq COPY OUT) protocol on 127.0.0.1, prints its port on stdout, and runs until killed.
//!
//! Usage: `pageserver_standin ARCHIVE.tar.gz TENANT TIMELINE PASSWORD [--replica]`
//! (`--replica`: expect the command a Replica or Static compute sends).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

#[allow(dead_code)]
#[path = "../tests/util/standin.rs"]
mod standin;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (archive, tenant, timeline, password, suffix) = match args.as_slice() {
        [archive, tenant, timeline, password] => (archive, tenant, timeline, password, ""),
        [archive, tenant, timeline, password, flag] if flag == "--replica" => {
            (archive, tenant, timeline, password, " --replica")
        }
        _ => {
            eprintln!(
                "usage: pageserver_standin ARCHIVE.tar.gz TENANT TIMELINE PASSWORD [--replica]"
            );
            return ExitCode::from(2);
        }
    };
    let archive = match std::fs::read(archive) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("cannot read the archive {archive}: {error}; pass a gzip tar");
            return ExitCode::FAILURE;
        }
    };
    let standin = standin::Standin::start(standin::StandinConfig {
        password: password.clone(),
        command: format!("basebackup {tenant} {timeline} --gzip{suffix}"),
        archive,
        cut_first: 0,
        late_error: false,
        ..Default::default()
    });
    println!("{}", standin.port);
    loop {
        std::thread::park();
    }
}
