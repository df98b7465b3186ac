//! A safekeeper stand-in: a tiny libpq server on 127.0.0.1 that checks the cleartext password
//! (the storage token) and answers `TIMELINE_STATUS` with chosen LSNs, or hangs (at startup,
//! or after it with a query asked), or is down. It also stands in for a silent upstream
//! primary (it never answers `IDENTIFY_SYSTEM` either).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Startup parameters (and the password) of one connection.
pub type Startup = Vec<(String, String)>;

/// How the stand-in behaves.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Answer with these `flush_lsn` / `commit_lsn`.
    Answer(&'static str, &'static str),
    /// Accept, then never answer.
    Hang,
    /// Start up and authenticate, then take every query and never answer it.
    SilentAfterStartup,
}

/// A running stand-in (or a closed port, for "down").
pub struct Safekeeper {
    /// `127.0.0.1:port`.
    pub address: String,
    /// Startup parameters of every connection seen (`user`, `options`, ...), and the password.
    pub seen: Arc<Mutex<Vec<Startup>>>,
}

impl Safekeeper {
    /// Starts a stand-in that expects `token` as password.
    pub fn start(behaviour: Behaviour, token: &'static str) -> Safekeeper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || serve(stream, behaviour, token, &log));
            }
        });
        Safekeeper { address, seen }
    }

    /// An address where nothing listens (connections are refused).
    pub fn down() -> Safekeeper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        Safekeeper {
            address,
            seen: Arc::default(),
        }
    }

    /// Connections seen so far.
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, token: &str, log: &Mutex<Vec<Startup>>) {
    drop(stream.set_nodelay(true));
    let Some(mut params) = read_startup(&mut stream) else {
        return;
    };
    if let Behaviour::Hang = behaviour {
        log.lock().unwrap().push(params);
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    send(&mut stream, b'R', &3i32.to_be_bytes());
    let Some((b'p', body)) = read_message(&mut stream) else {
        return;
    };
    let password = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).to_string();
    params.push(("password".to_string(), password.clone()));
    log.lock().unwrap().push(params);
    if password != token {
        send_error(&mut stream, "28P01", "password authentication failed");
        return;
    }
    send(&mut stream, b'R', &0i32.to_be_bytes());
    send(&mut stream, b'Z', b"I");
    while let Some((b'Q', query)) = read_message(&mut stream) {
        if let Behaviour::SilentAfterStartup = behaviour {
            continue;
        }
        if query != b"TIMELINE_STATUS\0" {
            send_error(&mut stream, "42601", "unsupported query");
            send(&mut stream, b'Z', b"I");
            continue;
        }
        if let Behaviour::Answer(flush, commit) = behaviour {
            let columns = [("term", "7"), ("flush_lsn", flush), ("commit_lsn", commit)];
            send(&mut stream, b'T', &row_description(&columns));
            send(&mut stream, b'D', &data_row(&columns));
            send(&mut stream, b'C', b"TIMELINE_STATUS\0");
            send(&mut stream, b'Z', b"I");
        }
    }
}

fn read_startup(stream: &mut TcpStream) -> Option<Startup> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(length) as usize - 4];
    stream.read_exact(&mut body).ok()?;
    let fields: Vec<String> = body[4..]
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).to_string())
        .collect();
    Some(
        fields
            .chunks(2)
            .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
    )
}

fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).ok()?;
    let length = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; length - 4];
    stream.read_exact(&mut body).ok()?;
    Some((header[0], body))
}

fn send(stream: &mut TcpStream, tag: u8, body: &[u8]) {
    let mut message = vec![tag];
    message.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    drop(stream.write_all(&message));
}

fn send_error(stream: &mut TcpStream, code: &str, message: &str) {
    let body = format!("SFATAL\0C{code}\0M{message}\0\0");
    send(stream, b'E', body.as_bytes());
}

fn row_description(columns: &[(&str, &str)]) -> Vec<u8> {
    let mut body = (columns.len() as i16).to_be_bytes().to_vec();
    for (name, _) in columns {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&0i32.to_be_bytes()); // table oid
        body.extend_from_slice(&0i16.to_be_bytes()); // column
        body.extend_from_slice(&25i32.to_be_bytes()); // text
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    body
}

fn data_row(columns: &[(&str, &str)]) -> Vec<u8> {
    let mut body = (columns.len() as i16).to_be_bytes().to_vec();
    for (_, value) in columns {
        body.extend_from_slice(&(value.len() as i32).to_be_bytes());
        body.extend_from_slice(value.as_bytes());
    }
    body
}
