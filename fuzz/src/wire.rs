//! The wire client (`pg_wire::Connection`) against a scripted server: the input is
//! the whole byte stream a server sends (startup answers, authentication requests — cleartext,
//! MD5, SCRAM —, parameter statuses, row descriptions, data rows, COPY OUT, errors, notices),
//! written to a Unix socket of a server thread, which then closes its side.
//!
//! The first input byte picks what the client does after authentication: a simple query, or
//! a COPY OUT read by payloads or by `read`. Invariants: no panic and no hang (the stream
//! ends; every wait is bounded by the client's own deadline and read timeout).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use pg_wire::{Connection, Endpoint, Startup};

struct Server {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        crate::ignore_sigpipe();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(".s.PGSQL.5432");
        let listener = UnixListener::bind(&path).expect("binding the scripted server");
        Server {
            _dir: dir,
            path,
            listener,
        }
    })
}

fn startup() -> Startup {
    let config: postgres::Config = "host=/tmp user=fuzz password=fuzz-password dbname=postgres"
        .parse()
        .expect("a fixed connection string");
    Startup::from_config(&config, &[("replication", "true")])
}

fn serve(mut stream: UnixStream, script: Vec<u8>) {
    let _ = stream.write_all(&script);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn client(path: PathBuf, mode: u8) {
    let timeout = Duration::from_secs(10);
    let Ok(mut connection) = Connection::connect(&Endpoint::Unix(path), &startup(), timeout) else {
        return;
    };
    connection.set_read_timeout(Some(timeout));
    let _ = connection.endpoint();
    match mode % 3 {
        0 => {
            if let Ok(rows) = connection.simple_query("IDENTIFY_SYSTEM") {
                for row in &rows {
                    let _ = row.get("xlogpos");
                }
            }
        }
        1 => {
            if let Ok(mut copy) = connection.copy_out("BASE_BACKUP") {
                while let Ok(Some(_payload)) = copy.next_payload() {}
                let _ = copy.finish();
            }
        }
        _ => {
            if let Ok(mut copy) = connection.copy_out("basebackup") {
                let mut buf = [0u8; 777];
                while matches!(copy.read(&mut buf), Ok(n) if n > 0) {}
                let _ = copy.finish();
            }
        }
    }
    connection.close();
}

/// The body.
pub fn run(data: &[u8]) {
    let Some((&mode, script)) = data.split_first() else {
        return;
    };
    let server = server();
    let script = script.to_vec();
    let path = server.path.clone();
    let client = std::thread::spawn(move || client(path, mode));
    let (stream, _) = server.listener.accept().expect("the client connects");
    serve(stream, script);
    if let Err(panic) = client.join() {
        std::panic::resume_unwind(panic);
    }
}
