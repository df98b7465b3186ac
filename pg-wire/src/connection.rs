//! The connection itself: sockets, startup and authentication, the simple query protocol,
//! COPY OUT, and the deadline / read-timeout bookkeeping (see the parent module).

use std::io::{self, Read, Write};

use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{
    DataRowBody, ErrorResponseBody, Message, RowDescriptionBody,
};
use postgres_protocol::message::frontend;

use super::limit::Budget;
use super::stream::{is_timeout, open, retry_interrupted, Stream};
use super::{endpoints, AnswerLimit, Endpoint, Row, Startup, WireError};

mod copy_out;
pub use copy_out::CopyOut;

/// Size of the receive buffer (large for basebackup streams; the OS maps its pages lazily,
/// so small connections do not pay for it). It grows for a larger message.
const READ_CHUNK: usize = 1 << 20;

/// A read asks the socket for at least this much room, so a stream arrives in large reads.
const MIN_READ: usize = 64 << 10;

/// The largest message accepted (PostgreSQL's own limit for a field is 1 GiB).
const MAX_MESSAGE: usize = (1 << 30) + (1 << 20);

/// An authenticated connection, ready for simple queries.
pub struct Connection {
    stream: Stream,
    endpoint: String,
    deadline: Option<(Instant, Duration)>,
    read_timeout: Option<Duration>,
    /// The socket's read timeout as last set (to skip the system call when unchanged).
    socket_timeout: Option<Duration>,
    /// Read only what is asked for, never ahead (so the rest can be spliced).
    exact: bool,
    /// The least the server must deliver per window, once set.
    min_rate: Option<MinRate>,
    /// What the answer under way may still bring.
    answer: Budget,
    /// Received bytes: `buf[start..end]` are not consumed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Connection {
    /// Connects, starts up and authenticates, all within `timeout`, which stays the
    /// connection's overall deadline until [`set_deadline`](Self::set_deadline) changes it.
    pub fn connect(
        endpoint: &Endpoint,
        startup: &Startup,
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let deadline = (stage_kit::deadline::after(timeout), timeout);
        let name = endpoint.to_string();
        let stream = open(endpoint, &name, deadline)?;
        let mut connection = Connection {
            stream,
            endpoint: name,
            deadline: Some(deadline),
            read_timeout: None,
            socket_timeout: None,
            exact: false,
            min_rate: None,
            answer: Budget::new(AnswerLimit::DEFAULT),
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        };
        connection.start_up(startup)?;
        Ok(connection)
    }

    /// Connects to the servers `config` names, each in turn, with its startup plus `extra`
    /// parameters (see [`Startup::from_config`]); returns the first that works or the last
    /// error. `timeout` applies to each server.
    pub fn from_config(
        config: &postgres::Config,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let startup = Startup::from_config(config, extra);
        let mut last_error = WireError::Protocol {
            endpoint: "(no server)".to_string(),
            message: "the connection string names no host; add host=".to_string(),
        };
        for endpoint in endpoints(config) {
            match Connection::connect(&endpoint, &startup, timeout) {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The server, as errors name it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sets the overall deadline to `timeout` from now (None: no deadline).
    pub fn set_deadline(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.map(|timeout| (stage_kit::deadline::after(timeout), timeout));
    }

    /// Bounds each wait for the server by `timeout`: every read (a silent server), and every
    /// write (a server that stops reading). None: only the deadline applies. With no
    /// deadline, this is what keeps a long stream from waiting forever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// From now on, the server must deliver at least `bytes` in every `window` (None: no
    /// minimum): a peer that trickles bytes just inside the read timeout fails with
    /// [`WireError::TooSlow`] once a window ends short. Checked as bytes arrive, on both
    /// receiving paths (reads and splices).
    pub fn set_min_rate(&mut self, minimum: Option<(u64, Duration)>) {
        self.min_rate = minimum.map(|(bytes, window)| MinRate {
            bytes,
            window,
            since: Instant::now(),
            received: 0,
        });
    }

    /// Counts `n` received bytes against the minimum rate; an error when a window ended
    /// with fewer than its minimum.
    fn note_received(&mut self, n: usize) -> Result<(), WireError> {
        let Some(rate) = &mut self.min_rate else {
            return Ok(());
        };
        rate.received = rate.received.saturating_add(n as u64);
        if rate.since.elapsed() < rate.window {
            return Ok(());
        }
        if rate.received < rate.bytes {
            return Err(WireError::TooSlow {
                endpoint: self.endpoint.clone(),
                received: rate.received,
                window: rate.window,
                minimum: rate.bytes,
            });
        }
        rate.since = Instant::now();
        rate.received = 0;
        Ok(())
    }

    /// Runs one simple query and returns its rows (of the last result set), the answer
    /// limited by [`AnswerLimit::DEFAULT`]. An error the server sends is returned after its
    /// ReadyForQuery, so the connection stays usable.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, WireError> {
        self.simple_query_limited(sql, AnswerLimit::DEFAULT)
    }

    /// [`simple_query`](Self::simple_query) with the answer limited by `limit`: an answer
    /// over it fails with [`WireError::TooLarge`] (and the connection, mid-answer, is then
    /// of no further use).
    pub fn simple_query_limited(
        &mut self,
        sql: &str,
        limit: AnswerLimit,
    ) -> Result<Vec<Row>, WireError> {
        self.answer = Budget::new(limit);
        self.send_query(sql)?;
        self.read_results(Vec::new())
    }

    /// Starts `sql`, which must answer with COPY OUT (e.g. `BASE_BACKUP`). What the server
    /// sends besides the CopyData (result sets before and after the copy, notices) is
    /// limited by [`AnswerLimit::DEFAULT`]; the CopyData are streamed, not limited.
    pub fn copy_out(&mut self, sql: &str) -> Result<CopyOut<'_>, WireError> {
        self.copy_out_with_rows(sql).map(|(_, copy)| copy)
    }

    /// Starts `sql` like [`copy_out`](Self::copy_out), and returns the rows of the last
    /// result set the server sent before its COPY OUT too (PG14's `BASE_BACKUP` lists its
    /// tablespaces there).
    pub fn copy_out_with_rows(&mut self, sql: &str) -> Result<(Vec<Row>, CopyOut<'_>), WireError> {
        self.answer = Budget::new(AnswerLimit::DEFAULT);
        self.send_query(sql)?;
        let mut names: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        loop {
            match self.receive()? {
                Message::CopyOutResponse(_) => {
                    let copy = CopyOut {
                        connection: self,
                        done: false,
                        left: 0,
                    };
                    return Ok((rows, copy));
                }
                Message::RowDescription(body) => {
                    names = self.column_names(&body)?;
                    rows.clear();
                }
                Message::DataRow(body) => rows.push(self.row(&names, &body)?),
                Message::ErrorResponse(body) => return Err(self.server_error(&body)),
                Message::ReadyForQuery(_) => {
                    return Err(self.protocol("the command ended without a COPY OUT"))
                }
                _ => {}
            }
        }
    }

    /// Says goodbye; errors are ignored (the connection is being dropped anyway).
    pub fn close(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        drop(self.send(&out));
    }

    fn send_query(&mut self, sql: &str) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| self.io("sending", e))?;
        self.send(&out)
    }

    /// Reads result sets up to ReadyForQuery; rows of the last one, or the server's error.
    fn read_results(&mut self, mut rows: Vec<Row>) -> Result<Vec<Row>, WireError> {
        let mut names: Vec<String> = Vec::new();
        let mut failure = None;
        loop {
            match self.receive()? {
                Message::RowDescription(body) => {
                    names = body
                        .fields()
                        .map(|field| Ok(field.name().to_string()))
                        .collect()
                        .map_err(|e| self.io("receiving", e))?;
                    rows.clear();
                }
                Message::DataRow(body) => {
                    if !self.answer.take_row() {
                        return Err(self.too_large());
                    }
                    rows.push(self.row(&names, &body)?);
                }
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

    fn start_up(&mut self, startup: &Startup) -> Result<(), WireError> {
        let mut params: Vec<(&str, &str)> = vec![("user", startup.user.as_str())];
        params.extend(startup.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out).map_err(|e| self.io("sending", e))?;
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
                message: "the server asks for a password and none was given; add password= \
                          to the connection string"
                    .to_string(),
            })
        };
        let mut out = BytesMut::new();
        match self.receive()? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?, &mut out)
                    .map_err(|e| self.io("sending", e))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(startup.user.as_bytes(), password()?, body.salt());
                frontend::password_message(hash.as_bytes(), &mut out)
                    .map_err(|e| self.io("sending", e))?;
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_string()))
                    .collect()
                    .map_err(|e| self.io("receiving", e))?;
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(self.auth(format!(
                        "unsupported SASL mechanisms {mechanisms:?}; allow scram-sha-256, md5 \
                         or password in the server's pg_hba.conf"
                    )));
                }
                let scram = ScramSha256::new(password()?, ChannelBinding::unsupported());
                return self.scram(scram);
            }
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => {
                return Err(self.auth(
                    "unsupported authentication method; allow trust, password, md5 or \
                     scram-sha-256 in the server's pg_hba.conf"
                        .to_string(),
                ))
            }
        }
        self.send(&out)?;
        self.expect_auth_ok()
    }

    fn scram(&mut self, mut scram: ScramSha256) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut out)
            .map_err(|e| self.io("sending", e))?;
        self.send(&out)?;
        let server_first = match self.receive()? {
            Message::AuthenticationSaslContinue(body) => body.data().to_vec(),
            Message::ErrorResponse(body) => return Err(self.server_error(&body)),
            _ => return Err(self.protocol("expected SASL continue")),
        };
        scram
            .update(&server_first)
            .map_err(|e| self.auth(format!("SCRAM exchange: {e}")))?;
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).map_err(|e| self.io("sending", e))?;
        self.send(&out)?;
        match self.receive()? {
            Message::AuthenticationSaslFinal(body) => scram
                .finish(body.data())
                .map_err(|e| self.auth(format!("the server's SCRAM signature is wrong: {e}")))?,
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

    fn column_names(&self, body: &RowDescriptionBody) -> Result<Vec<String>, WireError> {
        body.fields()
            .map(|field| Ok(field.name().to_string()))
            .collect()
            .map_err(|e| self.io("receiving", e))
    }

    fn row(&self, names: &[String], body: &DataRowBody) -> Result<Row, WireError> {
        let buffer = body.buffer();
        let values: Vec<Option<String>> = body
            .ranges()
            .map(|range| Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
            .collect()
            .map_err(|e| self.io("receiving", e))?;
        if values.len() != names.len() {
            return Err(self.protocol("a data row does not match its row description"));
        }
        Ok(Row {
            columns: names.iter().cloned().zip(values).collect(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let limit = self.wait_limit()?;
        let result = self
            .stream
            .set_write_timeout(limit)
            .and_then(|()| self.stream.write_all(bytes));
        match result {
            Err(error) if is_timeout(&error) => Err(self.timed_out()),
            result => result.map_err(|e| self.io("sending", e)),
        }
    }

    /// The next whole message, charged to the answer under way (refused before it is
    /// received when it does not fit).
    fn receive(&mut self) -> Result<Message, WireError> {
        let (_, total) = self.peek_header(5)?;
        if !self.answer.take_bytes(total) {
            return Err(self.too_large());
        }
        self.fill(total)?;
        let mut bytes = BytesMut::from(&self.buf[self.start..self.start + total]);
        self.start += total;
        match Message::parse(&mut bytes) {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(self.protocol("a message is shorter than its length says")),
            Err(error) => Err(self.io("receiving", error)),
        }
    }

    /// The type byte and the whole length (type byte included) of the next message, which
    /// stays in the buffer. `at_least` bytes are received first (5, or 6 where the server
    /// is known to send more than one header's worth, see [`CopyOut::next_data`]).
    fn peek_header(&mut self, at_least: usize) -> Result<(u8, usize), WireError> {
        if self.buffered() < 5 {
            self.fill(at_least)?;
        }
        let header = &self.buf[self.start..self.start + 5];
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if !(4..=MAX_MESSAGE).contains(&length) {
            return Err(self.protocol(&format!("a message claims a length of {length} bytes")));
        }
        Ok((header[0], length + 1))
    }

    /// Bytes received and not consumed yet.
    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Receives until at least `need` bytes are buffered.
    fn fill(&mut self, need: usize) -> Result<(), WireError> {
        while self.buffered() < need {
            self.read_more(need - self.buffered())?;
        }
        Ok(())
    }

    /// One read from the socket into the buffer, asking for `room` bytes (the unconsumed
    /// bytes move to the front, or the buffer grows, when needed). The buffer at most doubles
    /// per read: memory follows the bytes that arrive, not the length a message claims (a
    /// server claiming 1 GiB and sending nothing must not cost 1 GiB). In exact mode it
    /// reads at most `room` bytes.
    fn read_more(&mut self, room: usize) -> Result<(), WireError> {
        let room = if self.exact { room } else { room.max(MIN_READ) };
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < room {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            let free = self.buf.len() - self.end;
            if free < room {
                let grow = (room - free).min(self.buf.len().max(READ_CHUNK));
                self.buf.resize(self.buf.len() + grow, 0);
            }
        }
        loop {
            self.apply_read_timeout()?;
            let limit = if self.exact {
                (self.end + room).min(self.buf.len())
            } else {
                self.buf.len()
            };
            match self.stream.read(&mut self.buf[self.end..limit]) {
                Ok(0) => {
                    return Err(WireError::Closed {
                        endpoint: self.endpoint.clone(),
                    })
                }
                Ok(n) => {
                    self.end += n;
                    return self.note_received(n);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_timeout(&error) => return Err(self.timed_out()),
                Err(error) => return Err(self.io("receiving", error)),
            }
        }
    }

    /// Sets the socket's read timeout to what is left of the deadline or the per-read
    /// timeout, whichever is shorter (no system call when it is unchanged).
    fn apply_read_timeout(&mut self) -> Result<(), WireError> {
        let limit = self.wait_limit()?;
        if limit != self.socket_timeout {
            self.stream
                .set_read_timeout(limit)
                .map_err(|e| self.io("receiving", e))?;
            self.socket_timeout = limit;
        }
        Ok(())
    }

    /// The longest one wait for the server may take: what is left of the deadline or the
    /// read timeout, whichever is shorter (None: neither is set).
    fn wait_limit(&self) -> Result<Option<Duration>, WireError> {
        Ok(match (self.remaining()?, self.read_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Time left before the deadline (None: no deadline); an error once it has passed.
    fn remaining(&self) -> Result<Option<Duration>, WireError> {
        let Some((deadline, _)) = self.deadline else {
            return Ok(None);
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match remaining.is_zero() {
            true => Err(self.timed_out()),
            false => Ok(Some(remaining)),
        }
    }

    fn server_error(&self, body: &ErrorResponseBody) -> WireError {
        server_error(&self.endpoint, body)
    }

    fn io(&self, action: &'static str, source: io::Error) -> WireError {
        WireError::Io {
            endpoint: self.endpoint.clone(),
            action,
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

    fn too_large(&self) -> WireError {
        WireError::TooLarge {
            endpoint: self.endpoint.clone(),
            limit: self.answer.limit,
        }
    }

    fn timed_out(&self) -> WireError {
        let timeout = match (self.deadline, self.read_timeout) {
            (Some((_, overall)), Some(read)) => overall.min(read),
            (Some((_, overall)), None) => overall,
            (None, read) => read.unwrap_or_default(),
        };
        WireError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout,
        }
    }
}

/// The [`WireError::Server`] an ErrorResponse carries.
pub fn server_error(endpoint: &str, body: &ErrorResponseBody) -> WireError {
    let (mut severity, mut code, mut message) = ("ERROR".to_string(), "XX000".to_string(), None);
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = || String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'V' => severity = value(),
            b'C' => code = value(),
            b'M' => message = Some(value()),
            _ => {}
        }
    }
    WireError::Server {
        endpoint: endpoint.to_string(),
        severity,
        code,
        message: message.unwrap_or_else(|| "(no message)".to_string()),
    }
}

/// The least a stream must deliver per window, and what it delivered in the current one.
#[derive(Clone, Copy, Debug)]
struct MinRate {
    bytes: u64,
    window: Duration,
    since: Instant,
    received: u64,
}
