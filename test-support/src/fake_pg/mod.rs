//! A scripted fake PostgreSQL backend: a small libpq server on `127.0.0.1` that stands in for
//! the servers the stages talk to but that a test cannot run for real — a safekeeper
//! (`TIMELINE_STATUS`), a pageserver (`basebackup … --gzip` as COPY OUT), a primary's
//! `BASE_BACKUP` — and that can misbehave on purpose: refuse the password, fall silent at
//! startup, after the command or in the middle of the stream, cut the connection, or send an
//! error after the data.
//!
//! It speaks the subset the stages use: the startup packet (declining SSL), a cleartext
//! password request, the simple Query protocol and the extended one
//! (Parse/Describe/Bind/Execute/Sync/Close). It answers exactly one command ([`Script::command`])
//! with the [`Answer`] and every other one with an error — or, with [`Answer::Computed`],
//! every command with what a test's function says (a page service's `lease lsn`, whose
//! answer changes from one request to the next; [`page_service`] wraps that for leases);
//! it records each connection ([`Seen`]) as it happens, so a test can look while the
//! connection is still open.
//!
//! For a wire client's unit tests, [`scripted`] replays a byte-level transcript on a Unix
//! socket instead, built with the same encoder ([`messages`]).

pub mod messages;
pub mod page_service;
mod scripted;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use messages::{message, read_frontend};
pub use scripted::{scripted, Scripted};

/// Size of the CopyData messages an archive is sent in.
const CHUNK: usize = 16 * 1024;

/// What the fake backend expects and how it answers.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// The cleartext password (e.g. the storage token) it accepts.
    pub password: String,
    /// The exact command it answers with [`Script::answer`].
    pub command: String,
    /// The answer to [`Script::command`].
    pub answer: Answer,
    /// Where it falls silent, keeping the connection open until the client hangs up.
    pub silence: Silence,
    /// How many of the first connections are cut in the middle of a COPY stream.
    pub cut_first: usize,
    /// Send an error after the whole COPY stream instead of ending it.
    pub late_error: bool,
    /// A pause after each CopyData message of a COPY stream (a slow but steady server).
    pub pace: Option<std::time::Duration>,
}

/// The answer to the expected command.
#[derive(Clone, Debug)]
pub enum Answer {
    /// One row of text columns `(name, value)`, tagged with the command.
    Row(Vec<(String, String)>),
    /// The bytes as COPY OUT (in 16 KiB CopyData messages). With `replication`, the way a
    /// primary of the run's major ([`crate::pg_major`]) answers `BASE_BACKUP`: 15 and later,
    /// an `n` payload naming `base.tar`, then the bytes in `d` payloads; 14, a result set
    /// listing the data directory as the only tablespace, then the bytes untagged. It then
    /// answers `SHOW server_version_num` with that major's version too (`<major>0000`).
    Copy {
        /// The bytes to stream (a tar, or a gzip tar).
        bytes: Vec<u8>,
        /// Frame as `BASE_BACKUP` does.
        replication: bool,
    },
    /// Every command (whatever [`Script::command`] says) answered by a function of its
    /// text, called on the connection's thread (it may sleep, to play a slow server).
    Computed(Responder),
    /// The same row of text columns `(name, value)` `count` times: a flood of rows (a peer
    /// answering far more than the protocol allows), streamed as it is written.
    Rows {
        /// The columns of each row.
        columns: Vec<(String, String)>,
        /// How many rows.
        count: usize,
    },
}

/// What an [`Answer::Computed`] function answers one command with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// One row of text columns `(name, value)`, `None` for NULL.
    Row(Vec<(String, Option<String>)>),
    /// An `ERROR` with SQLSTATE `XX000` and this message.
    Error(String),
}

/// The function behind [`Answer::Computed`].
#[derive(Clone)]
pub struct Responder(pub Arc<dyn Fn(&str) -> Response + Send + Sync>);

impl Responder {
    /// Wraps `respond`.
    pub fn new(respond: impl Fn(&str) -> Response + Send + Sync + 'static) -> Responder {
        Responder(Arc::new(respond))
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder(…)")
    }
}

impl Default for Answer {
    fn default() -> Answer {
        Answer::Row(Vec::new())
    }
}

/// Where the fake backend stops answering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Silence {
    /// It always answers.
    #[default]
    Never,
    /// It accepts the connection, reads the startup packet and never answers.
    AtStartup,
    /// It starts up, takes the command and never answers it.
    AfterCommand,
    /// It sends the first half of a COPY stream, then nothing more.
    MidStream,
}

/// One connection as the fake backend saw it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Startup parameters (`user`, `options`, …).
    pub params: Vec<(String, String)>,
    /// The password sent.
    pub password: String,
    /// Commands executed.
    pub commands: Vec<String>,
    /// When each of [`Seen::commands`] arrived.
    pub command_times: Vec<Instant>,
}

impl Seen {
    /// The startup parameter `key`, if it was sent.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A running fake backend (or a closed port, see [`FakeBackend::down`]); the listener thread
/// lives as long as the test process.
pub struct FakeBackend {
    /// Its TCP port on `127.0.0.1`.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeBackend {
    /// Starts a fake backend following `script` on a free port.
    ///
    /// # Panics
    ///
    /// Panics when no TCP socket can be bound on `127.0.0.1`.
    pub fn start(script: Script) -> FakeBackend {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind a TCP socket on 127.0.0.1:0");
        let port = local_port(&listener);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let cut = index < script.cut_first;
                lock(&recorder).push(Seen::default());
                let (script, recorder) = (script.clone(), recorder.clone());
                // One thread a connection: a silent one must not hold up the next.
                thread::spawn(move || {
                    let record = Record {
                        all: &recorder,
                        index,
                    };
                    // An I/O error means the client went away: nothing to report.
                    let _ = serve(stream, &script, cut, &record);
                });
            }
        });
        FakeBackend { port, seen }
    }

    /// An address where nothing listens: connections are refused.
    ///
    /// # Panics
    ///
    /// Panics when no TCP socket can be bound on `127.0.0.1`.
    pub fn down() -> FakeBackend {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind a TCP socket on 127.0.0.1:0");
        let port = local_port(&listener);
        drop(listener);
        FakeBackend {
            port,
            seen: Arc::default(),
        }
    }

    /// The connections accepted so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.seen).len()
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A libpq URL of the fake backend (user `no_user`, as Neon's storage connections).
    pub fn url(&self) -> String {
        format!("postgresql://no_user@127.0.0.1:{}", self.port)
    }
}

fn local_port(listener: &TcpListener) -> u16 {
    listener
        .local_addr()
        .expect("cannot read the local address of a bound TCP socket")
        .port()
}

/// Locks the record, also after a panicking connection thread poisoned it (the data is plain).
fn lock(seen: &Mutex<Vec<Seen>>) -> std::sync::MutexGuard<'_, Vec<Seen>> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records what one connection did, as it happens.
struct Record<'a> {
    all: &'a Mutex<Vec<Seen>>,
    index: usize,
}

impl Record<'_> {
    fn update(&self, change: impl FnOnce(&mut Seen)) {
        if let Some(seen) = lock(self.all).get_mut(self.index) {
            change(seen);
        }
    }
}

/// A connection that sends each protocol response in one write, as a real server does: what
/// is written is buffered, and sent when the backend next reads (it waits for the client),
/// when the buffer holds a COPY chunk's worth or more, or when the connection ends.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
}

impl Write for Conn {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.flush()?;
        self.stream.read(buffer)
    }
}

fn serve(
    stream: TcpStream,
    script: &Script,
    cut: bool,
    record: &Record<'_>,
) -> std::io::Result<()> {
    // No Nagle delay: with a client's delayed ACK it would stall small answers by ~40 ms.
    stream.set_nodelay(true)?;
    let mut conn = Conn {
        stream,
        out: Vec::with_capacity(2 * CHUNK),
    };
    let served = serve_on(&mut conn, script, cut, record);
    conn.flush()?;
    served
}

fn serve_on(
    stream: &mut Conn,
    script: &Script,
    cut: bool,
    record: &Record<'_>,
) -> std::io::Result<()> {
    let params = read_startup(stream)?;
    let user = params
        .iter()
        .find(|(key, _)| key == "user")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    record.update(|seen| seen.params = params);
    if script.silence == Silence::AtStartup {
        return wait_for_hang_up(stream);
    }
    send(stream, b'R', &3u32.to_be_bytes())?;
    let (tag, body) = read_message(stream)?;
    if tag != b'p' {
        return send_error(stream, "FATAL", "08P01", "expected a password message");
    }
    let password = cstring(&body);
    record.update(|seen| seen.password = password.clone());
    if password != script.password {
        let error = format!("password authentication failed for user \"{user}\"");
        return send_error(stream, "FATAL", "28P01", &error);
    }
    send(stream, b'R', &0u32.to_be_bytes())?;
    send(stream, b'Z', b"I")?;
    let mut statement = String::new();
    loop {
        let (tag, body) = read_message(stream)?;
        match tag {
            b'P' => {
                let name_end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                statement = cstring(body.get(name_end + 1..).unwrap_or_default());
                send(stream, b'1', &[])?;
            }
            b'D' => {
                send(stream, b't', &0u16.to_be_bytes())?;
                send(stream, b'n', &[])?;
            }
            b'B' => send(stream, b'2', &[])?,
            b'C' => send(stream, b'3', &[])?,
            b'S' => send(stream, b'Z', b"I")?,
            b'E' => {
                if !run_command(stream, script, cut, record, &statement)? {
                    return Ok(());
                }
            }
            b'Q' => {
                let query = cstring(&body);
                if !run_command(stream, script, cut, record, &query)? {
                    return Ok(());
                }
                send(stream, b'Z', b"I")?;
            }
            b'X' => return Ok(()),
            _ => send_error(stream, "ERROR", "08P01", "unsupported message")?,
        }
    }
}

/// Reads the startup packet (declining SSL requests); its parameters.
fn read_startup(stream: &mut Conn) -> std::io::Result<Vec<(String, String)>> {
    const SSL_REQUEST: [u8; 4] = 80877103u32.to_be_bytes();
    let body = loop {
        let (_, body) = read_frontend(stream, true)?;
        if body.get(..4) == Some(&SSL_REQUEST[..]) {
            stream.write_all(b"N")?;
            continue;
        }
        break body;
    };
    let fields: Vec<String> = body
        .get(4..)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Ok(fields
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect())
}

/// Runs one command: the answer for the expected one, an error for any other. False when the
/// connection is done with (cut, or silent until the client hung up).
fn run_command(
    stream: &mut Conn,
    script: &Script,
    cut: bool,
    record: &Record<'_>,
    statement: &str,
) -> std::io::Result<bool> {
    record.update(|seen| {
        seen.commands.push(statement.to_string());
        seen.command_times.push(Instant::now());
    });
    if matches!(
        script.answer,
        Answer::Copy {
            replication: true,
            ..
        }
    ) && statement == "SHOW server_version_num"
    {
        let version = (crate::pg_major() * 10_000).to_string();
        stream.write_all(&messages::row_description(&["server_version_num"]))?;
        stream.write_all(&messages::data_row(&[Some(&version)]))?;
        send(stream, b'C', b"SHOW\0")?;
        return Ok(true);
    }
    if script.silence == Silence::AfterCommand {
        wait_for_hang_up(stream)?;
        return Ok(false);
    }
    if let Answer::Computed(responder) = &script.answer {
        match (responder.0)(statement) {
            Response::Row(columns) => {
                let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
                let values: Vec<Option<&str>> =
                    columns.iter().map(|(_, value)| value.as_deref()).collect();
                stream.write_all(&messages::row_description(&names))?;
                stream.write_all(&messages::data_row(&values))?;
                send(stream, b'C', b"SELECT 1\0")?;
            }
            Response::Error(text) => send_error(stream, "ERROR", "XX000", &text)?,
        }
        return Ok(true);
    }
    if statement != script.command {
        let message = format!("unexpected command or unknown timeline: {statement}");
        send_error(stream, "ERROR", "XX000", &message)?;
        return Ok(true);
    }
    match &script.answer {
        Answer::Row(columns) => {
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let values: Vec<Option<&str>> = columns
                .iter()
                .map(|(_, value)| Some(value.as_str()))
                .collect();
            stream.write_all(&messages::row_description(&names))?;
            stream.write_all(&messages::data_row(&values))?;
            send(stream, b'C', format!("{statement}\0").as_bytes())?;
            Ok(true)
        }
        Answer::Copy { bytes, replication } => copy_out(stream, script, cut, bytes, *replication),
        Answer::Rows { columns, count } => {
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let values: Vec<Option<&str>> = columns
                .iter()
                .map(|(_, value)| Some(value.as_str()))
                .collect();
            stream.write_all(&messages::row_description(&names))?;
            let row = messages::data_row(&values);
            for _ in 0..*count {
                stream.write_all(&row)?;
            }
            send(stream, b'C', format!("SELECT {count}\0").as_bytes())?;
            Ok(true)
        }
        Answer::Computed(_) => Ok(true),
    }
}

/// Streams `bytes` as COPY OUT, following the script's faults.
fn copy_out(
    stream: &mut Conn,
    script: &Script,
    cut: bool,
    bytes: &[u8],
    replication: bool,
) -> std::io::Result<bool> {
    // PG14 and older: the tablespaces first (only the data directory), then untagged data.
    let tagged = replication && crate::pg_major() >= 15;
    if replication && !tagged {
        stream.write_all(&messages::row_description(&[
            "spcoid",
            "spclocation",
            "size",
        ]))?;
        stream.write_all(&messages::data_row(&[None, None, None]))?;
        send(stream, b'C', b"SELECT 1\0")?;
    }
    send(stream, b'H', &[0, 0, 0])?;
    if tagged {
        send(stream, b'd', b"nbase.tar\0\0")?;
    }
    let half = bytes.len() / 2;
    for (index, chunk) in bytes.chunks(CHUNK).enumerate() {
        if index * CHUNK >= half {
            if cut {
                stream.flush()?;
                stream.stream.shutdown(Shutdown::Both)?;
                return Ok(false);
            }
            if script.silence == Silence::MidStream {
                wait_for_hang_up(stream)?;
                return Ok(false);
            }
        }
        match tagged {
            true => send(stream, b'd', &[b"d", chunk].concat())?,
            false => send(stream, b'd', chunk)?,
        }
        if let Some(pace) = script.pace {
            stream.flush()?;
            thread::sleep(pace);
        }
    }
    if script.late_error {
        send_error(stream, "ERROR", "XX000", "late failure after the archive")?;
        return Ok(true);
    }
    send(stream, b'c', &[])?;
    send(stream, b'C', b"COPY 0\0")?;
    Ok(true)
}

/// Says nothing, reading (and dropping) whatever comes, until the client hangs up.
fn wait_for_hang_up(stream: &mut Conn) -> std::io::Result<()> {
    let mut sink = [0; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

fn cstring(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn read_message(stream: &mut Conn) -> std::io::Result<(u8, Vec<u8>)> {
    read_frontend(stream, false)
}

fn send(stream: &mut Conn, tag: u8, body: &[u8]) -> std::io::Result<()> {
    stream.write_all(&message(tag, body))
}

fn send_error(stream: &mut Conn, severity: &str, code: &str, text: &str) -> std::io::Result<()> {
    stream.write_all(&messages::error(severity, code, text))
}
