//! A minimal blocking PostgreSQL frontend over `std` sockets, built on `postgres-protocol`'s
//! message encoders and parsers: startup (with extra parameters such as `replication=true`,
//! which the `postgres` crate cannot send), authentication (trust, cleartext, MD5,
//! SCRAM-SHA-256) and the simple query protocol, all text. Every read and write is bounded by
//! one deadline, so a silent server cannot hang the caller.
//!
//! Used for safekeepers' `TIMELINE_STATUS` and for `IDENTIFY_SYSTEM` on a physical replication
//! connection to a vanilla primary.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP host (name or address) and port.
    Tcp(String, u16),
    /// A Unix socket file (`<dir>/.s.PGSQL.<port>`).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp(host, port) => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What to send at startup.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// `user`.
    pub user: String,
    /// Other startup parameters (`database`, `options`, `replication`, ...), in order.
    pub params: Vec<(String, String)>,
    /// Password for cleartext, MD5 or SCRAM authentication.
    pub password: Option<Vec<u8>>,
}

/// A failure talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Connecting, reading or writing failed.
    #[error("{endpoint}: {source}")]
    Io {
        /// The server.
        endpoint: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The deadline passed.
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout {
        /// The server.
        endpoint: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The server sent an error.
    #[error("{endpoint}: server error {code}: {message}")]
    Server {
        /// The server.
        endpoint: String,
        /// SQLSTATE.
        code: String,
        /// Its message.
        message: String,
    },
    /// Authentication could not proceed (no password, unsupported method, bad SCRAM).
    #[error("{endpoint}: authentication: {message}")]
    Auth {
        /// The server.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The server broke the protocol.
    #[error("{endpoint}: protocol violation: {message}")]
    Protocol {
        /// The server.
        endpoint: String,
        /// What was unexpected.
        message: String,
    },
}

/// One result row: column names and text values (None = NULL).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// `(column name, value)` in column order.
    pub columns: Vec<(String, Option<String>)>,
}

impl Row {
    /// The value of the named column, if present and not NULL.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// An authenticated connection, ready for simple queries.
pub struct Connection {
    stream: Stream,
    endpoint: String,
    deadline: Instant,
    timeout: Duration,
    input: BytesMut,
}

impl Connection {
    /// Connects, starts up and authenticates, all within `timeout`.
    pub fn connect(
        endpoint: &Endpoint,
        startup: &Startup,
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let deadline = Instant::now() + timeout;
        let name = endpoint.to_string();
        let stream = open(endpoint, &name, deadline, timeout)?;
        let mut connection = Connection {
            stream,
            endpoint: name,
            deadline,
            timeout,
            input: BytesMut::with_capacity(8192),
        };
        connection.start_up(startup)?;
        Ok(connection)
    }

    /// Runs one simple query and returns its rows (of the last result set).
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, WireError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|error| self.io(error))?;
        self.send(&out)?;
        let mut names: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            match self.receive()? {
                Message::RowDescription(body) => {
                    names = body
                        .fields()
                        .map(|field| Ok(field.name().to_string()))
                        .collect()
                        .map_err(|error| self.io(error))?;
                    rows.clear();
                }
                Message::DataRow(body) => rows.push(self.row(&names, &body)?),
                Message::ErrorResponse(body) => failure = Some(self.server_error(&body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(rows),
        }
    }

    /// Says goodbye; errors are ignored (the connection is being dropped anyway).
    pub fn close(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        drop(self.send(&out));
    }

    fn start_up(&mut self, startup: &Startup) -> Result<(), WireError> {
        let mut params: Vec<(&str, &str)> = vec![("user", startup.user.as_str())];
        params.extend(startup.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out).map_err(|error| self.io(error))?;
        self.send(&out)?;
        self.authenticate(startup)?;
        loop {
            match self.receive()? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(self.server_error(&body)),
                _ => {}
            }
        }
    }

    fn authenticate(&mut self, startup: &Startup) -> Result<(), WireError> {
        let endpoint = self.endpoint.clone();
        let password = || {
            startup.password.as_deref().ok_or_else(|| WireError::Auth {
                endpoint: endpoint.clone(),
                message: "the server asks for a password and none was given".to_string(),
            })
        };
        let mut out = BytesMut::new();
        match self.receive()? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?, &mut out).map_err(|e| self.io(e))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(startup.user.as_bytes(), password()?, body.salt());
                frontend::password_message(hash.as_bytes(), &mut out).map_err(|e| self.io(e))?;
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_string()))
                    .collect()
                    .map_err(|e| self.io(e))?;
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(self.auth(format!("unsupported SASL mechanisms {mechanisms:?}")));
                }
                let scram = ScramSha256::new(password()?, ChannelBinding::unsupported());
                return self.scram(scram);
            }
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => return Err(self.auth("unsupported authentication method".to_string())),
        }
        self.send(&out)?;
        self.expect_auth_ok()
    }

    fn scram(&mut self, mut scram: ScramSha256) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut out)
            .map_err(|e| self.io(e))?;
        self.send(&out)?;
        let server_first = match self.receive()? {
            Message::AuthenticationSaslContinue(body) => body.data().to_vec(),
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => return Err(self.protocol("expected SASL continue")),
        };
        scram
            .update(&server_first)
            .map_err(|e| self.auth(e.to_string()))?;
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).map_err(|e| self.io(e))?;
        self.send(&out)?;
        match self.receive()? {
            Message::AuthenticationSaslFinal(body) => scram
                .finish(body.data())
                .map_err(|e| self.auth(format!("server signature: {e}")))?,
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => return Err(self.protocol("expected SASL final")),
        }
        self.expect_auth_ok()
    }

    fn expect_auth_ok(&mut self) -> Result<(), WireError> {
        match self.receive()? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(self.server_error(&body)),
            _ => Err(self.protocol("expected AuthenticationOk")),
        }
    }

    fn row(
        &self,
        names: &[String],
        body: &postgres_protocol::message::backend::DataRowBody,
    ) -> Result<Row, WireError> {
        let buffer = body.buffer();
        let values: Vec<Option<String>> = body
            .ranges()
            .map(|range| Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
            .collect()
            .map_err(|e| self.io(e))?;
        if values.len() != names.len() {
            return Err(self.protocol("a data row does not match its row description"));
        }
        Ok(Row {
            columns: names.iter().cloned().zip(values).collect(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let remaining = self.remaining()?;
        let result = match &mut self.stream {
            Stream::Tcp(s) => s
                .set_write_timeout(Some(remaining))
                .and_then(|()| s.write_all(bytes)),
            Stream::Unix(s) => s
                .set_write_timeout(Some(remaining))
                .and_then(|()| s.write_all(bytes)),
        };
        result.map_err(|error| self.io(error))
    }

    fn receive(&mut self) -> Result<Message, WireError> {
        loop {
            if let Some(message) = Message::parse(&mut self.input).map_err(|e| self.io(e))? {
                return Ok(message);
            }
            let remaining = self.remaining()?;
            let mut chunk = [0u8; 8192];
            let read = match &mut self.stream {
                Stream::Tcp(s) => s
                    .set_read_timeout(Some(remaining))
                    .and_then(|()| s.read(&mut chunk)),
                Stream::Unix(s) => s
                    .set_read_timeout(Some(remaining))
                    .and_then(|()| s.read(&mut chunk)),
            };
            match read {
                Ok(0) => return Err(self.protocol("the server closed the connection")),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(error) if is_timeout(&error) => return Err(self.timed_out()),
                Err(error) => return Err(self.io(error)),
            }
        }
    }

    fn remaining(&self) -> Result<Duration, WireError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match remaining.is_zero() {
            true => Err(self.timed_out()),
            false => Ok(remaining),
        }
    }

    fn server_error(
        &self,
        body: &postgres_protocol::message::backend::ErrorResponseBody,
    ) -> WireError {
        let mut code = String::new();
        let mut message = String::new();
        let mut fields = body.fields();
        while let Ok(Some(field)) = fields.next() {
            match field.type_() {
                b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                _ => {}
            }
        }
        WireError::Server {
            endpoint: self.endpoint.clone(),
            code,
            message,
        }
    }

    fn io(&self, source: io::Error) -> WireError {
        WireError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn auth(&self, message: String) -> WireError {
        WireError::Auth {
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    fn protocol(&self, message: &str) -> WireError {
        WireError::Protocol {
            endpoint: self.endpoint.clone(),
            message: message.to_string(),
        }
    }

    fn timed_out(&self) -> WireError {
        WireError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn open(
    endpoint: &Endpoint,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Stream, WireError> {
    let io_error = |source: io::Error| WireError::Io {
        endpoint: name.to_string(),
        source,
    };
    let timed_out = || WireError::Timeout {
        endpoint: name.to_string(),
        timeout,
    };
    match endpoint {
        Endpoint::Unix(path) => UnixStream::connect(path)
            .map(Stream::Unix)
            .map_err(io_error),
        Endpoint::Tcp(host, port) => {
            let addresses = (host.as_str(), *port).to_socket_addrs().map_err(io_error)?;
            let mut last_error = None;
            for address in addresses {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(timed_out());
                }
                match TcpStream::connect_timeout(&address, remaining) {
                    Ok(stream) => {
                        drop(stream.set_nodelay(true));
                        return Ok(Stream::Tcp(stream));
                    }
                    Err(error) if is_timeout(&error) => return Err(timed_out()),
                    Err(error) => last_error = Some(error),
                }
            }
            Err(io_error(last_error.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the host name resolves to no address",
                )
            })))
        }
    }
}
