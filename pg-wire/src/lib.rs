//! pg-wire: a minimal blocking PostgreSQL frontend over `std` sockets, built on `postgres-protocol`'s
//! message encoders and parsers, shared by the stages that need what the `postgres` crate
//! cannot do: a replication connection (`replication=true` at startup), and time limits on
//! everything after the TCP connect (the `postgres` crate bounds only the connect, so a
//! server that accepts and then says nothing would hold its caller forever).
//!
//! * Connecting from a [`postgres::Config`] ([`endpoints`], [`Startup::from_config`],
//!   [`Connection::from_config`]): TCP hosts, or Unix socket directories
//!   (`<dir>/.s.PGSQL.<port>`), user, password, dbname, options, application_name, plus extra
//!   startup parameters.
//! * Authentication: trust, cleartext, MD5, SCRAM-SHA-256 (no channel binding, no TLS).
//! * The simple query protocol, all text ([`Connection::simple_query`] → [`Row`]s with column
//!   names), server errors with their SQLSTATE ([`WireError::Server`]).
//! * A streaming COPY OUT reader ([`Connection::copy_out`] → [`CopyOut`]): CopyData payloads
//!   one by one, read straight from the receive buffer (one copy from the socket to the
//!   caller, whatever the message size), then [`CopyOut::finish`] reads the trailing result
//!   sets and surfaces an error the server sends after the copy.
//! * Size limits: every answer (the start-up exchange, a query's result sets, what a COPY
//!   OUT sends besides its data) has an [`AnswerLimit`] of rows and bytes, chosen by the
//!   caller per call ([`Connection::simple_query_limited`]; [`AnswerLimit::DEFAULT`]
//!   otherwise); an answer over it fails with [`WireError::TooLarge`] before the message
//!   over the limit is received, so a peer cannot make the client hold more than the limit.
//! * Time limits: an overall deadline (set at connect, changeable with
//!   [`Connection::set_deadline`]) and an optional bound on each wait for the server
//!   ([`Connection::set_read_timeout`]: every read, splice and write), so a server that
//!   accepts and then falls silent (or stops reading) cannot hold a caller forever. The
//!   connect itself is bounded by the deadline, for a Unix socket whose server accepts
//!   nothing (a full accept queue) too. Name resolution is not bounded (the system's
//!   resolver decides).
//!
//! Invariants: no password (or hash of one) ever appears in an error or a log line; every
//! error names the server; no answer is held beyond its [`AnswerLimit`]; with a deadline or a read timeout set, no call waits unbounded on
//! the server once the connection is open. Tests: `src/tests.rs` talks to a scripted server on a Unix
//! socket; `tests/it/wire.rs` runs `IDENTIFY_SYSTEM` against a real Postgres.

#![warn(missing_docs)]

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use postgres::config::Host;

mod connection;
mod limit;
mod stream;

pub use connection::{server_error, Connection, CopyOut};
pub use limit::AnswerLimit;

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

/// The servers a connection string names, in order (port 5432 unless given; one port for
/// all hosts, or one per host). Empty when it names no host.
pub fn endpoints(config: &postgres::Config) -> Vec<Endpoint> {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => Endpoint::Tcp(name.clone(), port),
                Host::Unix(dir) => Endpoint::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            }
        })
        .collect()
}

/// What to send at startup.
#[derive(Clone, Default)]
pub struct Startup {
    /// `user`.
    pub user: String,
    /// Other startup parameters (`database`, `options`, `replication`, ...), in order.
    pub params: Vec<(String, String)>,
    /// Password for cleartext, MD5 or SCRAM authentication.
    pub password: Option<Vec<u8>>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("user", &self.user)
            .field("params", &self.params)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|_| compute_spec::secret::REDACTED),
            )
            .finish()
    }
}

impl Startup {
    /// The startup of `config`: its user (default: the OS user, else `postgres`), password,
    /// `database`, `options` and `application_name`, then `extra` (which replaces a parameter
    /// of the same name).
    pub fn from_config(config: &postgres::Config, extra: &[(&str, &str)]) -> Startup {
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(os_user)
            .unwrap_or_else(|| "postgres".to_string());
        let mut startup = Startup {
            user,
            params: Vec::new(),
            password: config.get_password().map(<[u8]>::to_vec),
        };
        if let Some(name) = config.get_application_name() {
            startup.set("application_name", name);
        }
        if let Some(database) = config.get_dbname() {
            startup.set("database", database);
        }
        if let Some(options) = config.get_options() {
            startup.set("options", options);
        }
        for (name, value) in extra {
            startup.set(name, value);
        }
        startup
    }

    /// Sets a startup parameter, replacing one of the same name.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.params.iter_mut().find(|(key, _)| key == name) {
            Some(param) => param.1 = value.to_string(),
            None => self.params.push((name.to_string(), value.to_string())),
        }
    }

    /// The value of a startup parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn os_user() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    Some(user.name)
}

/// A failure talking to a server. Each names the server (`endpoint`).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Connecting, reading or writing failed.
    #[error("{endpoint}: {action}: {source}; check that the server runs and is reachable")]
    Io {
        /// The server.
        endpoint: String,
        /// What was being done (`connecting`, `sending`, `receiving`).
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The deadline (or read timeout) passed.
    #[error(
        "{endpoint}: no answer within {timeout:?}; check that the server is up, or allow more time"
    )]
    Timeout {
        /// The server.
        endpoint: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// A stream delivered less than its minimum rate ([`Connection::set_min_rate`]): a
    /// peer trickling bytes just inside the read timeout.
    #[error(
        "{endpoint}: the server sent only {received} bytes in {window:?}, less than the \
         {minimum} a stream must deliver in that time; check the server and the network"
    )]
    TooSlow {
        /// The server.
        endpoint: String,
        /// Bytes received in the window.
        received: u64,
        /// The window.
        window: Duration,
        /// The least allowed in a window.
        minimum: u64,
    },
    /// An answer brought more than its [`AnswerLimit`] (the connection is then mid-answer:
    /// drop it).
    #[error(
        "{endpoint}: the answer is larger than the {} rows and {} bytes allowed for it; \
         check that the server is the one meant (a PostgreSQL-protocol server of the \
         expected kind)", limit.rows, limit.bytes
    )]
    TooLarge {
        /// The server.
        endpoint: String,
        /// The limit it went over.
        limit: AnswerLimit,
    },
    /// The server closed the connection unasked.
    #[error("{endpoint}: the server closed the connection; see the server's log")]
    Closed {
        /// The server.
        endpoint: String,
    },
    /// The server sent an error (`ErrorResponse`).
    #[error("{endpoint}: {severity} {code}: {message}")]
    Server {
        /// The server.
        endpoint: String,
        /// Severity (`ERROR`, `FATAL`).
        severity: String,
        /// SQLSTATE.
        code: String,
        /// Its primary message.
        message: String,
    },
    /// Authentication could not proceed (no password, unsupported method, bad SCRAM).
    #[error("{endpoint}: authentication: {message}")]
    Auth {
        /// The server.
        endpoint: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The server broke the protocol.
    #[error("{endpoint}: protocol violation: {message}; check that it is a PostgreSQL server")]
    Protocol {
        /// The server.
        endpoint: String,
        /// What was unexpected.
        message: String,
    },
}

impl WireError {
    /// The server the error is about.
    pub fn endpoint(&self) -> &str {
        match self {
            WireError::Io { endpoint, .. }
            | WireError::Timeout { endpoint, .. }
            | WireError::TooSlow { endpoint, .. }
            | WireError::TooLarge { endpoint, .. }
            | WireError::Closed { endpoint }
            | WireError::Server { endpoint, .. }
            | WireError::Auth { endpoint, .. }
            | WireError::Protocol { endpoint, .. } => endpoint,
        }
    }

    /// Whether the credentials were refused: SQLSTATE class 28, or authentication could not
    /// proceed.
    pub fn is_auth(&self) -> bool {
        match self {
            WireError::Server { code, .. } => code.starts_with("28"),
            WireError::Auth { .. } => true,
            _ => false,
        }
    }
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

#[cfg(test)]
mod tests;
