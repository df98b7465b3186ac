//! A pageserver stand-in: a small libpq server speaking the subset the page service does
//! (startup, cleartext password, a simple Query or Parse/Describe/Bind/Execute/Sync/Close)
//! that serves a gzip tar for exactly one `basebackup` command and records what it was
//! asked. With `replication`, it serves a plain tar the way a primary answers `BASE_BACKUP`
//! (CopyData payloads tagged `n`, then `d`). It can also fall silent: accept and never
//! answer, or stop in the middle of the stream while keeping the connection open.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the stand-in serves and expects.
#[derive(Clone, Default)]
pub struct StandinConfig {
    /// The password (storage token) it accepts.
    pub password: String,
    /// The exact command it serves the archive for.
    pub command: String,
    /// The gzip tar.
    pub archive: Vec<u8>,
    /// How many of the first connections are cut in the middle of the stream.
    pub cut_first: usize,
    /// Send an error after the whole archive instead of ending the COPY.
    pub late_error: bool,
    /// Where to fall silent, keeping the connection open until the client hangs up.
    pub silence: Silence,
    /// Answer like a primary's `BASE_BACKUP`: an `n` payload naming `base.tar`, then the
    /// archive in `d` payloads.
    pub replication: bool,
}

/// Where the stand-in stops answering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Silence {
    /// It always answers.
    #[default]
    Never,
    /// It accepts the connection, reads the startup packet and never answers.
    AtStartup,
    /// It starts up, takes the command and never answers it.
    AfterCommand,
    /// It sends the first half of the archive, then nothing more.
    MidStream,
}

/// One connection as the stand-in saw it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Startup parameters.
    pub params: Vec<(String, String)>,
    /// The password sent.
    pub password: String,
    /// Commands executed.
    pub commands: Vec<String>,
}

/// A running stand-in; the listener thread lives as long as the test process.
pub struct Standin {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Standin {
    /// Starts the stand-in on a free port.
    pub fn start(config: StandinConfig) -> Standin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let cut = index < config.cut_first;
                recorder.lock().unwrap().push(Seen::default());
                let (config, recorder) = (config.clone(), recorder.clone());
                // One thread a connection: a silent one must not hold up the next.
                thread::spawn(move || {
                    let record = Record {
                        all: &recorder,
                        index,
                    };
                    let _ = serve(stream, &config, cut, &record);
                });
            }
        });
        Standin { port, seen }
    }

    /// The connections served so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The libpq URL of the stand-in.
    pub fn url(&self) -> String {
        format!("postgresql://no_user@127.0.0.1:{}", self.port)
    }
}

/// Records what one connection did, as it happens (the test may look before it ends).
struct Record<'a> {
    all: &'a Mutex<Vec<Seen>>,
    index: usize,
}

impl Record<'_> {
    fn update(&self, change: impl FnOnce(&mut Seen)) {
        change(&mut self.all.lock().unwrap()[self.index]);
    }
}

fn serve(
    mut stream: TcpStream,
    config: &StandinConfig,
    cut: bool,
    record: &Record<'_>,
) -> std::io::Result<()> {
    let body = loop {
        let len = read_u32(&mut stream)? as usize;
        let mut body = vec![0; len - 4];
        stream.read_exact(&mut body)?;
        if body[..4] == 80877103u32.to_be_bytes() {
            stream.write_all(b"N")?;
            continue;
        }
        break body;
    };
    let fields: Vec<String> = body[4..]
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let params: Vec<(String, String)> = fields
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let user = params
        .iter()
        .find(|(key, _)| key == "user")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    record.update(|seen| seen.params = params);
    if config.silence == Silence::AtStartup {
        return wait_for_hang_up(&mut stream);
    }
    send(&mut stream, b'R', &3u32.to_be_bytes())?;
    let (tag, body) = read_message(&mut stream)?;
    assert_eq!(tag, b'p');
    let password = cstring(&body);
    record.update(|seen| seen.password = password.clone());
    if password != config.password {
        let error = format!("password authentication failed for user \"{user}\"");
        return send_error(&mut stream, "FATAL", "28P01", &error);
    }
    send(&mut stream, b'R', &0u32.to_be_bytes())?;
    send(&mut stream, b'Z', b"I")?;
    let mut statement = String::new();
    loop {
        let (tag, body) = read_message(&mut stream)?;
        match tag {
            b'P' => {
                let name_end = body.iter().position(|b| *b == 0).unwrap();
                statement = cstring(&body[name_end + 1..]);
                send(&mut stream, b'1', &[])?;
            }
            b'D' => {
                send(&mut stream, b't', &0u16.to_be_bytes())?;
                send(&mut stream, b'n', &[])?;
            }
            b'B' => send(&mut stream, b'2', &[])?,
            b'C' => send(&mut stream, b'3', &[])?,
            b'S' => send(&mut stream, b'Z', b"I")?,
            b'E' => {
                if !run_command(&mut stream, config, cut, record, &statement)? {
                    return Ok(());
                }
            }
            b'Q' => {
                let query = cstring(&body);
                if !run_command(&mut stream, config, cut, record, &query)? {
                    return Ok(());
                }
                send(&mut stream, b'Z', b"I")?;
            }
            b'X' => return Ok(()),
            _ => send_error(&mut stream, "ERROR", "08P01", "unsupported message")?,
        }
    }
}

/// Runs one command: the archive as COPY OUT for the expected one, an error for any other.
/// False when the connection is done with (cut, or silent until the client hung up).
fn run_command(
    stream: &mut TcpStream,
    config: &StandinConfig,
    cut: bool,
    record: &Record<'_>,
    statement: &str,
) -> std::io::Result<bool> {
    record.update(|seen| seen.commands.push(statement.to_string()));
    if statement != config.command {
        let message = format!("unexpected command or unknown timeline: {statement}");
        send_error(stream, "ERROR", "XX000", &message)?;
        return Ok(true);
    }
    if config.silence == Silence::AfterCommand {
        wait_for_hang_up(stream)?;
        return Ok(false);
    }
    send(stream, b'H', &[0, 0, 0])?;
    if config.replication {
        send(stream, b'd', b"nbase.tar\0\0")?;
    }
    let half = config.archive.len() / 2;
    for (index, chunk) in config.archive.chunks(16 * 1024).enumerate() {
        if index * 16 * 1024 >= half {
            if cut {
                stream.shutdown(std::net::Shutdown::Both)?;
                return Ok(false);
            }
            if config.silence == Silence::MidStream {
                wait_for_hang_up(stream)?;
                return Ok(false);
            }
        }
        match config.replication {
            true => send(stream, b'd', &[b"d", chunk].concat())?,
            false => send(stream, b'd', chunk)?,
        }
    }
    if config.late_error {
        send_error(stream, "ERROR", "XX000", "late failure after the archive")?;
        return Ok(true);
    }
    send(stream, b'c', &[])?;
    send(stream, b'C', b"COPY 0\0")?;
    Ok(true)
}

/// Says nothing, reading (and dropping) whatever comes, until the client hangs up.
fn wait_for_hang_up(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut sink = [0; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

fn cstring(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn read_u32(stream: &mut TcpStream) -> std::io::Result<u32> {
    let mut bytes = [0; 4];
    stream.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_message(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut tag = [0];
    stream.read_exact(&mut tag)?;
    let len = read_u32(stream)? as usize;
    let mut body = vec![0; len - 4];
    stream.read_exact(&mut body)?;
    Ok((tag[0], body))
}

fn send(stream: &mut TcpStream, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let mut message = vec![tag];
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    stream.write_all(&message)
}

fn send_error(
    stream: &mut TcpStream,
    severity: &str,
    code: &str,
    text: &str,
) -> std::io::Result<()> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    send(stream, b'E', &body)
}
