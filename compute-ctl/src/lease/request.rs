//! One `lease lsn` request over the page-service protocol (libpq, simple query, no TLS),
//! through [`stage_kit::wire`] so that every wait on the pageserver has a time limit.

use std::time::{Duration, SystemTime};

use compute_spec::ids::Lsn;
use stage_kit::wire::Connection;

use super::targets::Target;

/// What a pageserver answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Leased until this time.
    ValidUntil(SystemTime),
    /// Refused (NULL): the LSN is below the pageserver's GC cutoff.
    Refused,
}

/// The command, exactly as upstream sends it (with its trailing space).
pub fn command(target: &Target, lsn: Lsn) -> String {
    format!(
        "lease lsn {} {} {lsn} ",
        target.tenant_shard_id, target.timeline_id
    )
}

/// Leases `lsn` at `target`, the storage token as the password; connecting within
/// `connect_timeout`, the answer within `request_timeout`. The error names the pageserver
/// (its endpoint, never the connection string, which may hold a password).
pub fn lease(
    target: &Target,
    token: Option<&str>,
    lsn: Lsn,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Answer, String> {
    let mut config: postgres::Config = target
        .connstr
        .parse()
        .map_err(|error| format!("a pageserver connection string does not parse: {error}"))?;
    if let Some(token) = token {
        config.password(token);
    }
    let extra = [("application_name", "compute_ctl:lsn_lease")];
    let mut connection = Connection::from_config(&config, &extra, connect_timeout)
        .map_err(|error| format!("connecting to pageserver: {error}"))?;
    connection.set_deadline(Some(request_timeout));
    let rows = connection
        .simple_query(&command(target, lsn))
        .map_err(|error| format!("lease lsn on pageserver: {error}"))?;
    let server = connection.endpoint().to_string();
    connection.close();
    let [row] = rows.as_slice() else {
        return Err(format!(
            "pageserver {server} answered lease lsn with {} rows, not 1",
            rows.len()
        ));
    };
    let Some((_, value)) = row.columns.iter().find(|(name, _)| name == "valid_until") else {
        return Err(format!(
            "pageserver {server} answered lease lsn without a valid_until column"
        ));
    };
    let Some(value) = value else {
        return Ok(Answer::Refused);
    };
    let millis: u64 = value.trim().parse().map_err(|_| {
        format!(
            "pageserver {server} answered valid_until {value:?}, not milliseconds since the epoch"
        )
    })?;
    let valid_until =
        stage_kit::deadline::since_epoch(Duration::from_millis(millis)).ok_or_else(|| {
            format!("pageserver {server} answered valid_until {millis}, past the clock's range")
        })?;
    Ok(Answer::ValidUntil(valid_until))
}
