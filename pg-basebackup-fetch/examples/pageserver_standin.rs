//! The tests' pageserver stand-in (the test kit's scripted fake backend,
//! `pg_test_support::FakeBackend`) as a program, for `scripts/bench-basebackup.sh`: serves a
//! gzip tar from a file for `basebackup <tenant> <timeline> --gzip` over the page-service
//! (libpq COPY OUT) protocol on 127.0.0.1, prints its port on stdout, and runs until killed.
//!
//! Usage: `pageserver_standin ARCHIVE.tar.gz TENANT TIMELINE PASSWORD [--replica]`
//! (`--replica`: expect the command a Replica or Static compute sends).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::ExitCode;

use pg_test_support::{Answer, FakeBackend, Script};

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
    let standin = FakeBackend::start(Script {
        password: password.clone(),
        command: format!("basebackup {tenant} {timeline} --gzip{suffix}"),
        answer: Answer::Copy {
            bytes: archive,
            replication: false,
        },
        ..Script::default()
    });
    println!("{}", standin.port);
    loop {
        std::thread::park();
    }
}
