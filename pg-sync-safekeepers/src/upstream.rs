//! A vanilla upstream primary (`upstream_connstring`): its current WAL position, read with
//! `IDENTIFY_SYSTEM` on a physical replication connection (`replication=true`).
//!
//! Each connection (connect, startup, authentication and the query) has
//! [`UpstreamTimeouts::attempt`]; a refused, cut or silent connection is tried again (each
//! host in turn, pausing [`crate::slow_path::BACKOFF`] between rounds) until
//! [`UpstreamTimeouts::overall`] runs out. A server's answer (wrong password, an error) is
//! final at once.

use std::time::{Duration, Instant};

use compute_spec::Lsn;
use pg_wire::{endpoints, AnswerLimit, Connection, Endpoint, Startup, WireError};
use stage_kit::retry::{Policy, Retry, Stop};

use crate::error::SyncError;

/// The `application_name` this stage connects with.
pub const APPLICATION_NAME: &str = "pg-sync-safekeepers";

/// Time limits of the upstream query.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    /// All attempts together (`--timeout`).
    pub overall: Duration,
    /// One connection, from connect to the answer (`--startup-timeout`).
    pub attempt: Duration,
}

/// Connects to the upstream (each host in turn, again while time is left) and returns
/// `IDENTIFY_SYSTEM`'s `xlogpos`.
pub fn current_wal_position(connstr: &str, timeouts: UpstreamTimeouts) -> Result<Lsn, SyncError> {
    let config: postgres::Config =
        connstr
            .parse()
            .map_err(|error: postgres::Error| SyncError::UpstreamConnstr {
                message: error.to_string(),
            })?;
    let startup = startup(&config);
    let endpoints = endpoints(&config);
    if endpoints.is_empty() {
        return Err(SyncError::UpstreamConnstr {
            message: "it names no host".to_string(),
        });
    }
    let deadline = stage_kit::deadline::after(timeouts.overall);
    let policy = Policy {
        attempts: u32::MAX,
        backoff: crate::slow_path::BACKOFF,
        deadline: Some(timeouts.overall),
    };
    let mut attempts = 0;
    // One attempt of the loop is a round: every host in turn.
    let outcome = Retry::new(&policy)
        .when(|round: &Round| matches!(round, Round::Retry(_)))
        .before_pause(|_, round, pause| {
            tracing::info!(
                "no upstream answered IDENTIFY_SYSTEM (round {round}); trying again in {} ms",
                pause.as_millis()
            );
        })
        .run(|_| {
            let mut last_error = None;
            for endpoint in &endpoints {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                attempts += 1;
                match identify_system(endpoint, &startup, timeouts.attempt.min(left)) {
                    Ok(lsn) => return Ok(lsn),
                    Err(SyncError::Upstream(error)) if worth_retrying(&error) => {
                        tracing::warn!("{error}");
                        last_error = Some(error);
                    }
                    Err(error) => return Err(Round::Final(error)),
                }
            }
            match last_error {
                Some(last) => Err(Round::Retry(last)),
                None => Err(Round::Final(out_of_time(timeouts.overall))),
            }
        });
    let last = match outcome {
        Ok((lsn, _)) => return Ok(lsn),
        Err(
            Stop::Final { error: last, .. }
            | Stop::Exhausted { last, .. }
            | Stop::OutOfTime { last, .. },
        ) => last,
    };
    Err(match last {
        Round::Final(error) => error,
        Round::Retry(last) => SyncError::UpstreamGaveUp {
            overall: timeouts.overall,
            attempts,
            last,
        },
    })
}

/// How a round over the hosts failed.
enum Round {
    /// Every host tried failed in a way worth another round; the last host's error.
    Retry(WireError),
    /// An answer, or no time left for any host: final.
    Final(SyncError),
}

/// A refused, cut or silent connection may work the next time; an answer will not change.
fn worth_retrying(error: &WireError) -> bool {
    matches!(
        error,
        WireError::Io { .. } | WireError::Timeout { .. } | WireError::Closed { .. }
    )
}

fn out_of_time(overall: Duration) -> SyncError {
    SyncError::UpstreamAnswer(format!(
        "no answer within --timeout {overall:?}; check that the primary is up, or raise \
         --timeout"
    ))
}

fn identify_system(
    endpoint: &Endpoint,
    startup: &Startup,
    timeout: Duration,
) -> Result<Lsn, SyncError> {
    let mut connection =
        Connection::connect(endpoint, startup, timeout).map_err(SyncError::Upstream)?;
    // One row of four short columns: anything more is not a primary's answer.
    let rows = connection
        .simple_query_limited("IDENTIFY_SYSTEM", AnswerLimit::ONE_ROW)
        .map_err(|error| match error {
            WireError::TooLarge { .. } => SyncError::UpstreamAnswer(error.to_string()),
            other => SyncError::Upstream(other),
        })?;
    connection.close();
    let text = rows
        .first()
        .and_then(|row| row.get("xlogpos"))
        .ok_or_else(|| SyncError::UpstreamAnswer(format!("{endpoint} returned no xlogpos")))?;
    text.parse().map_err(|_| {
        SyncError::UpstreamAnswer(format!("{endpoint} returned xlogpos {text:?}, not an LSN"))
    })
}

/// The startup packet: the connstr's user (default: our OS user), database, options and
/// application name (default [`APPLICATION_NAME`]), with `replication=true`.
fn startup(config: &postgres::Config) -> Startup {
    let mut startup = Startup::from_config(config, &[("replication", "true")]);
    if startup.get("application_name").is_none() {
        startup.set("application_name", APPLICATION_NAME);
    }
    startup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_startup_come_from_the_connstr() {
        let config: postgres::Config = "host=/run/pg,db1 port=5433 user=rep dbname=x password=pw"
            .parse()
            .unwrap();
        assert_eq!(
            endpoints(&config),
            vec![
                Endpoint::Unix("/run/pg/.s.PGSQL.5433".into()),
                Endpoint::Tcp("db1".into(), 5433)
            ]
        );
        let startup = startup(&config);
        assert_eq!(startup.user, "rep");
        assert_eq!(startup.password.as_deref(), Some(&b"pw"[..]));
        assert!(startup
            .params
            .contains(&("replication".to_string(), "true".to_string())));
    }
}
