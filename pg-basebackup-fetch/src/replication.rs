//! The vanilla primary source: `BASE_BACKUP` over a physical replication connection.
//!
//! The `postgres` crate cannot open a replication connection, so this module speaks the
//! protocol itself on `postgres-protocol`'s encoders and parsers over a plain socket:
//! startup with `replication=true`, authentication (trust, cleartext, md5, SCRAM-SHA-256),
//! then PG15's `BASE_BACKUP (LABEL 'compute-tools', CHECKPOINT 'fast', WAL true, WAIT false,
//! MANIFEST 'no')`. Its COPY OUT stream carries CopyData payloads tagged `n` (new archive),
//! `d` (archive data), `p` (progress), `m` (manifest); result sets come before and after.
//! Only the main archive (`base.tar`) is accepted: tablespaces are not supported.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres::config::Host;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend::Message, frontend};

use crate::error::{classify_read, BasebackupError, ServerMessage};
use crate::progress::Counting;
use crate::unpack::{self, UnpackError};
use crate::Fetched;

/// The command sent to the primary.
pub const BASE_BACKUP: &str =
    "BASE_BACKUP (LABEL 'compute-tools', CHECKPOINT 'fast', WAL true, WAIT false, MANIFEST 'no')";

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 1 << 20;

/// Clones the primary at `connstr` into the (empty) `pgdata`.
pub fn fetch(connstr: &str, pgdata: &Path) -> Result<Fetched, BasebackupError> {
    let config: postgres::Config = connstr.parse().map_err(|error| {
        BasebackupError::Document(format!("upstream_connstring is not valid: {error}"))
    })?;
    let started = Instant::now();
    let mut connection = Connection::open(&config)?;
    connection.startup(&config)?;
    let connect_micros = started.elapsed().as_micros() as u64;
    connection.start_base_backup()?;
    let server = connection.server.clone();
    let mut copy = Counting::new(
        CopyStream::new(&mut connection),
        "basebackup from the primary",
    );
    let unpacked = unpack::unpack(&mut copy, pgdata).map_err(|error| match error {
        UnpackError::Read(error) => classify_read(&server, error),
        UnpackError::Write(error) => error,
    })?;
    unpack::drain(&mut copy).map_err(|error| classify_read(&server, error))?;
    let wire_bytes = Counting::bytes(&copy);
    drop(copy);
    connection.finish()?;
    Ok(Fetched {
        connect_micros: Some(connect_micros),
        wire_bytes,
        unpacked,
    })
}

/// Makes sure the compute's admin role exists on the primary (for standbys, which cannot
/// create it). Asks over an ordinary connection; when that connection is not possible
/// (e.g. `pg_hba.conf` allows only replication), logs a warning and goes on.
pub fn check_admin_role(connstr: &str, admin: &str) -> Result<(), BasebackupError> {
    let mut config: postgres::Config = connstr.parse().map_err(|error| {
        BasebackupError::Document(format!("upstream_connstring is not valid: {error}"))
    })?;
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    config
        .application_name("compute_ctl")
        .connect_timeout(Duration::from_secs(10));
    let found = config.connect(postgres::NoTls).and_then(|mut client| {
        client.query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&admin],
        )
    });
    match found {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BasebackupError::Document(format!(
            "the admin role {admin:?} (the -C user) does not exist on the primary, and a \
             standby cannot create it: create it on the primary (CREATE ROLE … SUPERUSER \
             LOGIN) or pass -C with a role the primary has"
        ))),
        Err(error) => {
            tracing::warn!(
                "could not check on the primary that the admin role {admin:?} exists ({error}); \
                 going on"
            );
            Ok(())
        }
    }
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

struct Connection {
    socket: Socket,
    buffer: BytesMut,
    scratch: Vec<u8>,
    server: String,
}

impl Connection {
    fn open(config: &postgres::Config) -> Result<Connection, BasebackupError> {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let host = config
            .get_hosts()
            .first()
            .cloned()
            .unwrap_or_else(|| Host::Unix("/var/run/postgresql".into()));
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        let (server, socket) = match host {
            Host::Tcp(host) => {
                let server = format!("primary {host}:{port}");
                (
                    server.clone(),
                    connect_tcp(&server, &host, port, timeout).map(Socket::Tcp),
                )
            }
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let server = format!("primary {}", path.display());
                let socket = UnixStream::connect(&path).map(Socket::Unix);
                (server, socket)
            }
        };
        let socket = socket.map_err(|error| BasebackupError::Network {
            server: server.clone(),
            detail: format!("cannot connect: {error}"),
        })?;
        Ok(Connection {
            socket,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            scratch: vec![0; READ_CHUNK],
            server,
        })
    }

    fn network(&self, detail: impl std::fmt::Display) -> BasebackupError {
        BasebackupError::Network {
            server: self.server.clone(),
            detail: detail.to_string(),
        }
    }

    fn send(&mut self, message: &[u8]) -> Result<(), BasebackupError> {
        let result = match &mut self.socket {
            Socket::Tcp(socket) => socket.write_all(message),
            Socket::Unix(socket) => socket.write_all(message),
        };
        result.map_err(|error| self.network(format!("sending: {error}")))
    }

    /// The next backend message, reading from the socket as needed.
    fn next_message(&mut self) -> io::Result<Message> {
        loop {
            if let Some(message) = Message::parse(&mut self.buffer)? {
                return Ok(message);
            }
            let n = match &mut self.socket {
                Socket::Tcp(socket) => socket.read(&mut self.scratch)?,
                Socket::Unix(socket) => socket.read(&mut self.scratch)?,
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.buffer.extend_from_slice(&self.scratch[..n]);
        }
    }

    fn message(&mut self) -> Result<Message, BasebackupError> {
        self.next_message()
            .map_err(|error| classify_read(&self.server.clone(), error))
    }

    fn startup(&mut self, config: &postgres::Config) -> Result<(), BasebackupError> {
        let user = config.get_user().unwrap_or("postgres").to_string();
        let mut buffer = BytesMut::new();
        let parameters = [
            ("user", user.as_str()),
            ("replication", "true"),
            ("application_name", "compute_ctl"),
        ];
        frontend::startup_message(parameters.iter().copied(), &mut buffer)
            .map_err(|error| self.network(error))?;
        self.send(&buffer)?;
        let password = config.get_password().map(<[u8]>::to_vec);
        authenticate(self, &user, password.as_deref())
    }

    fn start_base_backup(&mut self) -> Result<(), BasebackupError> {
        let mut buffer = BytesMut::new();
        frontend::query(BASE_BACKUP, &mut buffer).map_err(|error| self.network(error))?;
        self.send(&buffer)?;
        loop {
            match self.message()? {
                Message::CopyOutResponse(_) => return Ok(()),
                Message::ErrorResponse(body) => {
                    return Err(server_message(&body).into_error(&self.server))
                }
                _ => {}
            }
        }
    }

    /// Reads the result set after the archive up to ReadyForQuery, then says goodbye.
    fn finish(&mut self) -> Result<(), BasebackupError> {
        loop {
            match self.message()? {
                Message::ReadyForQuery(_) => break,
                Message::ErrorResponse(body) => {
                    return Err(server_message(&body).into_error(&self.server))
                }
                _ => {}
            }
        }
        let mut buffer = BytesMut::new();
        frontend::terminate(&mut buffer);
        // The backup is complete; a failed goodbye changes nothing.
        let _ = self.send(&buffer);
        Ok(())
    }
}

fn connect_tcp(server: &str, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{server}: no address"));
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(socket) => {
                socket.set_nodelay(true)?;
                return Ok(socket);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Answers the server's authentication requests until ReadyForQuery.
fn authenticate(
    connection: &mut Connection,
    user: &str,
    password: Option<&[u8]>,
) -> Result<(), BasebackupError> {
    let mut scram: Option<sasl::ScramSha256> = None;
    let server = connection.server.clone();
    let protocol = |error: io::Error| BasebackupError::Server {
        server: server.clone(),
        message: format!("authentication exchange failed: {error}"),
    };
    loop {
        let mut reply = BytesMut::new();
        match connection.message()? {
            Message::AuthenticationOk
            | Message::ParameterStatus(_)
            | Message::BackendKeyData(_)
            | Message::NoticeResponse(_) => continue,
            Message::ReadyForQuery(_) => return Ok(()),
            Message::ErrorResponse(body) => {
                return Err(server_message(&body).into_error(&connection.server))
            }
            Message::AuthenticationCleartextPassword => {
                let password = need_password(&connection.server, password)?;
                frontend::password_message(password, &mut reply).map_err(protocol)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let password = need_password(&connection.server, password)?;
                let hash = md5_hash(user.as_bytes(), password, body.salt());
                frontend::password_message(hash.as_bytes(), &mut reply).map_err(protocol)?;
            }
            Message::AuthenticationSasl(body) => {
                let password = need_password(&connection.server, password)?;
                let mechanisms: Vec<&str> = body.mechanisms().collect().map_err(protocol)?;
                if !mechanisms.contains(&sasl::SCRAM_SHA_256) {
                    return Err(protocol(io::Error::other(format!(
                        "no supported SASL mechanism among {mechanisms:?}"
                    ))));
                }
                let state = sasl::ScramSha256::new(password, sasl::ChannelBinding::unsupported());
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, state.message(), &mut reply)
                    .map_err(protocol)?;
                scram = Some(state);
            }
            Message::AuthenticationSaslContinue(body) => {
                let state = scram.as_mut().ok_or_else(|| protocol(unexpected()))?;
                state.update(body.data()).map_err(protocol)?;
                frontend::sasl_response(state.message(), &mut reply).map_err(protocol)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let state = scram.as_mut().ok_or_else(|| protocol(unexpected()))?;
                state.finish(body.data()).map_err(protocol)?;
                continue;
            }
            _ => return Err(protocol(unexpected())),
        }
        connection.send(&reply)?;
    }
}

fn unexpected() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "unexpected message")
}

fn need_password<'a>(
    server: &str,
    password: Option<&'a [u8]>,
) -> Result<&'a [u8], BasebackupError> {
    password.ok_or_else(|| BasebackupError::Auth {
        server: server.to_string(),
        message: "the server asks for a password and upstream_connstring has none".into(),
    })
}

/// The fields of an ErrorResponse.
fn server_message(body: &postgres_protocol::message::backend::ErrorResponseBody) -> ServerMessage {
    let mut message = ServerMessage {
        severity: "ERROR".into(),
        code: "XX000".into(),
        message: String::new(),
    };
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'V' => message.severity = value,
            b'C' => message.code = value,
            b'M' => message.message = value,
            _ => {}
        }
    }
    message
}

/// The archive data of the COPY OUT stream as one byte stream.
struct CopyStream<'a> {
    connection: &'a mut Connection,
    chunk: Bytes,
    done: bool,
}

impl<'a> CopyStream<'a> {
    fn new(connection: &'a mut Connection) -> Self {
        CopyStream {
            connection,
            chunk: Bytes::new(),
            done: false,
        }
    }

    /// Fetches the next chunk of archive data; false at CopyDone.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            match self.connection.next_message()? {
                Message::CopyData(body) => {
                    let mut data = body.into_bytes();
                    if data.is_empty() {
                        continue;
                    }
                    let tag = data.get_u8();
                    match tag {
                        b'd' => {
                            self.chunk = data;
                            return Ok(true);
                        }
                        b'n' => check_archive(&data)?,
                        _ => {} // `p` progress, `m` manifest (not requested)
                    }
                }
                Message::CopyDone => return Ok(false),
                Message::ErrorResponse(body) => {
                    return Err(io::Error::other(server_message(&body)))
                }
                _ => {}
            }
        }
    }
}

/// Accepts only the main data directory's archive.
fn check_archive(header: &[u8]) -> io::Result<()> {
    let name = header.split(|b| *b == 0).next().unwrap_or_default();
    if name == b"base.tar" {
        return Ok(());
    }
    Err(io::Error::other(ServerMessage {
        severity: "ERROR".into(),
        code: "0A000".into(),
        message: format!(
            "the primary sent archive {:?}, a tablespace: tablespaces are not supported; \
             clone a primary without tablespaces",
            String::from_utf8_lossy(name)
        ),
    }))
}

impl Read for CopyStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done || !self.refill()? {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
