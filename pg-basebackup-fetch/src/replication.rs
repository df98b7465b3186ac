//! The vanilla primary source: `BASE_BACKUP` over a physical replication connection.
//!
//! The `postgres` crate cannot open a replication connection, so this module uses the shared
//! client [`pg_wire`]: startup with `replication=true`, authentication, then
//! `SHOW server_version_num`: a primary of another major than the compute's Postgres is
//! refused at once, naming both versions ([`crate::version`]), and every later error names
//! the primary's version. The command and its stream depend on that version:
//! - 15 and later: `BASE_BACKUP (LABEL 'compute-tools', CHECKPOINT 'fast', WAL true, WAIT
//!   false, MANIFEST 'no')`. One COPY OUT whose CopyData payloads are tagged `n` (new
//!   archive), `d` (archive data), `p` (progress), `m` (manifest); result sets come before
//!   and after.
//! - 14 (and older): `BASE_BACKUP LABEL 'compute-tools' FAST WAL NOWAIT` (15's parenthesized
//!   options are a syntax error there). A result set lists the tablespaces (the data
//!   directory last, with a NULL oid), then one COPY OUT per tablespace carries its tar as
//!   plain CopyData (no tags).
//!
//! Only the main archive (`base.tar`) is accepted: tablespaces are not supported.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use compute_spec::quote::quote_literal;
use pg_wire::{AnswerLimit, Connection, CopyOut, WireError};

use crate::error::{classify_read, classify_wire, BasebackupError, ServerMessage};
use crate::progress::Counting;
use crate::spliced::{self, ArchiveSource};
use crate::unpack::{self, UnpackError};
use crate::version::{check_same_major, ComputeVersion, ServerVersion};
use crate::{Fetched, Timeouts};
use stage_kit::retry::Progress;

/// The command sent to a primary of PostgreSQL 15 or later.
pub const BASE_BACKUP: &str =
    "BASE_BACKUP (LABEL 'compute-tools', CHECKPOINT 'fast', WAL true, WAIT false, MANIFEST 'no')";

/// The command sent to a primary of PostgreSQL 14 (and older): the same options in the
/// keyword syntax (no manifest unless asked for).
pub const BASE_BACKUP_14: &str = "BASE_BACKUP LABEL 'compute-tools' FAST WAL NOWAIT";

/// The `BASE_BACKUP` command for a primary of `version`.
pub fn base_backup_command(version: ServerVersion) -> &'static str {
    match version.major() >= 15 {
        true => BASE_BACKUP,
        false => BASE_BACKUP_14,
    }
}

/// Where the primary's socket is when the connection string names no host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Clones the primary at `connstr` into the (empty) `pgdata`, when it runs the major version
/// of `compute`; archive bytes tick `clock`.
pub fn fetch(
    connstr: &str,
    pgdata: &Path,
    timeouts: &Timeouts,
    clock: &Progress,
    compute: &ComputeVersion,
) -> Result<Fetched, BasebackupError> {
    let mut config: postgres::Config = connstr.parse().map_err(|error| {
        BasebackupError::Document(format!("upstream_connstring is not valid: {error}"))
    })?;
    if config.get_hosts().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    if config.get_user().is_none() {
        config.user("postgres");
    }
    let timeout = startup_timeout(&config, timeouts);
    let started = Instant::now();
    let extra = [("replication", "true"), ("application_name", "compute_ctl")];
    let mut connection = Connection::from_config(&config, &extra, timeout)
        .map_err(|error| classify_wire(&server_name(error.endpoint()), &error))?;
    let connect_micros = started.elapsed().as_micros() as u64;
    // A big archive takes long: no overall deadline from here on, only a bound on silence
    // (the primary's fast checkpoint, before it answers, included).
    connection.set_deadline(None);
    connection.set_read_timeout(Some(timeouts.idle));
    let server = server_name(connection.endpoint());
    let version = primary_version(&mut connection, &server)?;
    let server = format!("{server} (PostgreSQL {version})");
    check_same_major(&server, version, compute)?;
    let asked = Instant::now();
    let (tablespaces, mut copy) = connection
        .copy_out_with_rows(base_backup_command(version))
        .map_err(|error| classify_wire(&server, &error))?;
    let framed = version.major() >= 15;
    if !framed {
        check_tablespaces(&tablespaces).map_err(|message| message.into_error(&server))?;
    }
    // The archive has started (after the checkpoint): from now on it must keep a minimum rate.
    copy.set_min_rate(timeouts.min_rate);
    // The server checkpoints before it answers: a slow start here is the primary's.
    tracing::info!(
        "{server}: backup started after {} ms (the primary's checkpoint)",
        asked.elapsed().as_millis()
    );
    let mut stream = ArchiveStream::new(copy, framed, clock);
    let unpacked = spliced::unpack(&mut stream, pgdata).map_err(|error| match error {
        UnpackError::Read(error) => classify_read(&server, error),
        UnpackError::Write(error) => error,
    })?;
    unpack::drain(&mut stream).map_err(|error| classify_read(&server, error))?;
    let wire_bytes = Counting::bytes(&stream.progress);
    stream
        .copy
        .finish()
        .map_err(|error| classify_wire(&server, &error))?;
    connection.close();
    Ok(Fetched {
        connect_micros: Some(connect_micros),
        wire_bytes,
        unpacked,
    })
}

/// The primary's `server_version_num`.
fn primary_version(
    connection: &mut Connection,
    server: &str,
) -> Result<ServerVersion, BasebackupError> {
    let rows = connection
        .simple_query("SHOW server_version_num")
        .map_err(|error| classify_wire(server, &error))?;
    let text = rows.first().and_then(|row| row.get("server_version_num"));
    text.and_then(ServerVersion::parse)
        .ok_or_else(|| BasebackupError::Server {
            server: server.to_string(),
            message: format!(
            "SHOW server_version_num answered {text:?}, not a version number; check that it is \
             a PostgreSQL server"
        ),
        })
}

/// Accepts PG14's tablespace list only when it names the data directory alone (a NULL oid).
fn check_tablespaces(rows: &[pg_wire::Row]) -> Result<(), ServerMessage> {
    let others: Vec<String> = rows
        .iter()
        .filter(|row| row.get("spcoid").is_some())
        .map(|row| row.get("spclocation").unwrap_or("?").to_string())
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(ServerMessage {
        severity: "ERROR".into(),
        code: "0A000".into(),
        message: format!(
            "the primary has tablespaces ({}): tablespaces are not supported; clone a primary \
             without tablespaces",
            others.join(", ")
        ),
    })
}

/// How errors name the primary.
fn server_name(endpoint: &str) -> String {
    format!("primary {endpoint}")
}

/// The time allowed to connect, start up and authenticate: the connection string's
/// `connect_timeout` when it has one, else [`Timeouts::startup`]; at most
/// [`Timeouts::attempt_cap`].
fn startup_timeout(config: &postgres::Config, timeouts: &Timeouts) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(timeouts.startup)
        .min(timeouts.attempt_cap)
}

/// Makes sure the compute's admin role exists on the primary (for standbys, which cannot
/// create it). Asks over an ordinary connection (bounded like the fetch); when that
/// connection is not possible (e.g. `pg_hba.conf` allows only replication) or the primary
/// does not answer, logs a warning and goes on: the fetch that follows will say more.
pub fn check_admin_role(
    connstr: &str,
    admin: &str,
    timeouts: &Timeouts,
    compute: &ComputeVersion,
) -> Result<(), BasebackupError> {
    let mut config: postgres::Config = connstr.parse().map_err(|error| {
        BasebackupError::Document(format!("upstream_connstring is not valid: {error}"))
    })?;
    if config.get_hosts().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    if config.get_user().is_none() {
        config.user("postgres");
    }
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    // The version too: a primary of another major is refused here, before the role question.
    let query = format!(
        "SELECT pg_catalog.current_setting('server_version_num') AS server_version_num, \
         EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) AS has_role",
        quote_literal(admin)
    );
    let extra = [("application_name", "compute_ctl")];
    let found = Connection::from_config(&config, &extra, startup_timeout(&config, timeouts))
        .and_then(|mut connection| {
            connection.set_deadline(None);
            connection.set_read_timeout(Some(timeouts.idle));
            let server = server_name(connection.endpoint());
            let rows = connection.simple_query_limited(&query, AnswerLimit::ONE_ROW);
            connection.close();
            rows.map(|rows| (server, rows))
        });
    match found {
        Ok((server, rows)) => {
            let row = rows.first();
            let version = row.and_then(|row| row.get("server_version_num"));
            if let Some(version) = version.and_then(ServerVersion::parse) {
                let server = format!("{server} (PostgreSQL {version})");
                check_same_major(&server, version, compute)?;
            }
            match row.and_then(|row| row.get("has_role")) {
                Some("t") => Ok(()),
                _ => Err(BasebackupError::Document(format!(
                    "the admin role {admin:?} (the -C user) does not exist on the primary, and \
                     a standby cannot create it: create it on the primary (CREATE ROLE … \
                     SUPERUSER LOGIN) or pass -C with a role the primary has"
                ))),
            }
        }
        Err(error) => {
            tracing::warn!(
                "could not check on the primary that the admin role {admin:?} exists ({error}); \
                 going on"
            );
            Ok(())
        }
    }
}

/// The archive data of the COPY OUT stream as one byte stream, read straight from the
/// connection's receive buffer.
struct ArchiveStream<'a> {
    copy: CopyOut<'a>,
    /// Payloads are tagged (`n`, `d`, `p`, `m`: PG15 and later), else all archive data.
    framed: bool,
    /// Inside a payload of archive data (`d`).
    in_data: bool,
    done: bool,
    /// Archive bytes so far, with progress lines.
    progress: Counting<io::Empty>,
}

/// The longest non-data payload read whole (`n` names an archive, `p` is a progress count).
const MAX_CONTROL_PAYLOAD: usize = 64 << 10;

impl<'a> ArchiveStream<'a> {
    fn new(mut copy: CopyOut<'a>, framed: bool, clock: &Progress) -> Self {
        copy.read_exactly();
        ArchiveStream {
            copy,
            framed,
            in_data: false,
            done: false,
            progress: Counting::new(io::empty(), "basebackup from the primary").ticking(clock),
        }
    }

    /// Makes sure the stream is inside a payload of archive data; false at its end.
    fn in_data(&mut self) -> io::Result<bool> {
        if !self.in_data && !self.done {
            match self.next_data()? {
                true => self.in_data = true,
                false => self.done = true,
            }
        }
        Ok(self.in_data)
    }

    /// Moves to the next payload of archive data; false at CopyDone.
    fn next_data(&mut self) -> io::Result<bool> {
        while let Some(length) = self.copy.next_data().map_err(io::Error::other)? {
            if length == 0 {
                continue;
            }
            if !self.framed {
                return Ok(true);
            }
            let mut kind = [0u8];
            self.copy.read(&mut kind).map_err(io::Error::other)?;
            match kind[0] {
                b'd' => return Ok(true),
                b'n' if length <= MAX_CONTROL_PAYLOAD => {
                    let mut header = vec![0; length - 1];
                    let mut filled = 0;
                    while filled < header.len() {
                        filled += self
                            .copy
                            .read(&mut header[filled..])
                            .map_err(io::Error::other)?;
                    }
                    check_archive(&header)?;
                }
                b'n' => check_archive(b"(a name too long)")?,
                _ => {} // `p` progress, `m` manifest (not requested): skipped
            }
        }
        Ok(false)
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

impl Read for ArchiveStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.in_data()? {
            let n = self.copy.read(buf).map_err(io::Error::other)?;
            if n > 0 {
                self.progress.add(n);
                return Ok(n);
            }
            self.in_data = false;
        }
        Ok(0)
    }
}

impl ArchiveSource for ArchiveStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn splice_to(&mut self, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        while self.in_data()? {
            let n = self.copy.splice_to(to, len).map_err(splice_error)?;
            if n > 0 {
                self.progress.add(n);
                return Ok(n);
            }
            self.in_data = false;
        }
        Ok(0)
    }
}

/// The error of a splice into the unpacker's pipe: a closed pipe (the writer stopped) stays a
/// plain `BrokenPipe`, so the unpacker reports the writer's error, not a broken stream.
fn splice_error(error: WireError) -> io::Error {
    match error {
        WireError::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => source,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_told_apart_from_a_broken_stream() {
        let closed = WireError::Io {
            endpoint: "primary /tmp/.s.PGSQL.5432".into(),
            action: "splicing",
            source: nix::errno::Errno::EPIPE.into(),
        };
        assert_eq!(splice_error(closed).kind(), io::ErrorKind::BrokenPipe);
        let cut = WireError::Closed {
            endpoint: "primary /tmp/.s.PGSQL.5432".into(),
        };
        assert_eq!(splice_error(cut).kind(), io::ErrorKind::Other);
    }
}
