//! The gRPC stand-in pageserver (`pg_page_grpc::standin`) as a program, for
//! `scripts/bench-startup.py grpc`: serves a gzip tar from a file as `GetBaseBackup` (256 KiB
//! chunks, as the pageserver sends) and grants `LeaseLsn`, for one tenant and timeline,
//! shard `0000`, on 127.0.0.1; prints its port on stdout and runs until killed.
//!
//! Usage: `grpc_pageserver_standin ARCHIVE.tar.gz TENANT TIMELINE TOKEN`

use std::process::ExitCode;

use pg_page_grpc::standin::{Config, StandIn};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, tenant, timeline, token] = args.as_slice() else {
        eprintln!("usage: grpc_pageserver_standin ARCHIVE.tar.gz TENANT TIMELINE TOKEN");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(archive) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("cannot read the archive {archive}: {error}; pass a gzip tar");
            return ExitCode::FAILURE;
        }
    };
    let standin = match StandIn::start(Config::new(tenant, timeline, Some(token), bytes)) {
        Ok(standin) => standin,
        Err(error) => {
            eprintln!("cannot start the stand-in: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", standin.port);
    loop {
        std::thread::park();
    }
}
