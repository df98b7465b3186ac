//! A vanilla upstream primary (`upstream_connstring`): its current WAL position, read with
//! `IDENTIFY_SYSTEM` on a physical replication connection (`replication=true`).

use std::time::Duration;

use compute_spec::wire::{endpoints, Connection, Endpoint, Startup};
use compute_spec::Lsn;

use crate::error::SyncError;

/// The `application_name` this stage connects with.
pub const APPLICATION_NAME: &str = "pg-sync-safekeepers";

/// Connects to the upstream (each host in turn) and returns `IDENTIFY_SYSTEM`'s `xlogpos`.
pub fn current_wal_position(connstr: &str, timeout: Duration) -> Result<Lsn, SyncError> {
    let config: postgres::Config =
        connstr
            .parse()
            .map_err(|error: postgres::Error| SyncError::UpstreamConnstr {
                message: error.to_string(),
            })?;
    let startup = startup(&config);
    let endpoints = endpoints(&config);
    let mut last_error = None;
    for endpoint in &endpoints {
        match identify_system(endpoint, &startup, timeout) {
            Ok(lsn) => return Ok(lsn),
            Err(error) => {
                tracing::warn!("{error}");
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| SyncError::UpstreamConnstr {
        message: "it names no host".to_string(),
    }))
}

fn identify_system(
    endpoint: &Endpoint,
    startup: &Startup,
    timeout: Duration,
) -> Result<Lsn, SyncError> {
    let mut connection =
        Connection::connect(endpoint, startup, timeout).map_err(SyncError::Upstream)?;
    let rows = connection
        .simple_query("IDENTIFY_SYSTEM")
        .map_err(SyncError::Upstream)?;
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
