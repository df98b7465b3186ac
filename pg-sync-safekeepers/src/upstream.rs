//! A vanilla upstream primary (`upstream_connstring`): its current WAL position, read with
//! `IDENTIFY_SYSTEM` on a physical replication connection (`replication=true`).

use std::time::Duration;

use compute_spec::Lsn;
use postgres::config::Host;

use crate::error::SyncError;
use crate::wire::{Connection, Endpoint, Startup};

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

/// The startup packet: user (default: our OS user), database, options, `replication=true`.
fn startup(config: &postgres::Config) -> Startup {
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(os_user)
        .unwrap_or_else(|| "postgres".to_string());
    let mut params = vec![
        ("replication".to_string(), "true".to_string()),
        (
            "application_name".to_string(),
            config
                .get_application_name()
                .unwrap_or(APPLICATION_NAME)
                .to_string(),
        ),
    ];
    if let Some(database) = config.get_dbname() {
        params.push(("database".to_string(), database.to_string()));
    }
    if let Some(options) = config.get_options() {
        params.push(("options".to_string(), options.to_string()));
    }
    Startup {
        user,
        params,
        password: config.get_password().map(<[u8]>::to_vec),
    }
}

fn endpoints(config: &postgres::Config) -> Vec<Endpoint> {
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

fn os_user() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    Some(user.name)
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
