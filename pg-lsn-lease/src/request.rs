//! One lease request: `lease lsn` over the page-service protocol (libpq, simple query, no
//! TLS) through [`pg_wire`], or `LeaseLsn` over gRPC through [`pg_page_grpc`]
//! (`FAILED_PRECONDITION` is the refusal), so that every wait on the pageserver has a time
//! limit either way.

use std::time::{Duration, SystemTime};

use compute_spec::ids::Lsn;
use pg_wire::{AnswerLimit, Connection};

use crate::targets::{Endpoint, Target};
use crate::Failure;

/// The latest `valid_until` taken: the end of the year 9999 (RFC 3339 has four-digit years).
const LATEST_MS: u64 = 253_402_300_799_999;

/// What a pageserver answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Leased until this time.
    ValidUntil(SystemTime),
    /// Refused (NULL): the LSN is below the pageserver's GC cutoff.
    Refused,
}

/// A pageserver's answer, and which server gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The endpoint that answered (`host:port` or a socket path).
    pub server: String,
    /// Its answer.
    pub answer: Answer,
}

/// The command, exactly as upstream sends it (with its trailing space).
pub fn command(target: &Target, lsn: Lsn) -> String {
    format!(
        "lease lsn {} {} {lsn} ",
        target.tenant_shard_id, target.timeline_id
    )
}

/// Leases `lsn` at `target`, the storage token as the password (libpq) or the bearer token
/// (gRPC); connecting within `connect_timeout`, the answer within `request_timeout`. The
/// error names the pageserver (its endpoint, never the connection string, which may hold a
/// password).
pub fn lease(
    target: &Target,
    token: Option<&str>,
    lsn: Lsn,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Granted, Failure> {
    let connstr = match &target.endpoint {
        Endpoint::Libpq(connstr) => connstr,
        Endpoint::Grpc(shard) => {
            let answer =
                pg_page_grpc::lease_lsn(shard, token, lsn.0, connect_timeout, request_timeout)
                    .map_err(|error| Failure::Grpc(Box::new(error)))?;
            let answer = match answer {
                pg_page_grpc::LeaseAnswer::Until(valid_until) => Answer::ValidUntil(valid_until),
                pg_page_grpc::LeaseAnswer::Refused(message) => {
                    tracing::info!("pageserver {} refused the lease: {message}", shard.url);
                    Answer::Refused
                }
            };
            return Ok(Granted {
                server: shard.url.to_string(),
                answer,
            });
        }
    };
    let mut config: postgres::Config = connstr
        .parse()
        .map_err(|error: postgres::Error| Failure::Connstr(error.to_string()))?;
    if let Some(token) = token {
        config.password(token);
    }
    let extra = [("application_name", "compute_ctl:lsn_lease")];
    let mut connection = Connection::from_config(&config, &extra, connect_timeout)
        .map_err(|error| Failure::Connect(Box::new(error)))?;
    connection.set_deadline(Some(request_timeout));
    let rows = connection
        .simple_query_limited(&command(target, lsn), AnswerLimit::ONE_ROW)
        .map_err(|error| Failure::Request(Box::new(error)))?;
    let server = connection.endpoint().to_string();
    connection.close();
    let answer = read_answer(&server, &rows)?;
    Ok(Granted { server, answer })
}

/// The lease in `rows`: one row with a `valid_until` column, milliseconds since the epoch,
/// NULL for a refusal.
fn read_answer(server: &str, rows: &[pg_wire::Row]) -> Result<Answer, Failure> {
    let [row] = rows else {
        return Err(Failure::Answer(format!(
            "pageserver {server} answered lease lsn with {} rows, not 1",
            rows.len()
        )));
    };
    let Some((_, value)) = row.columns.iter().find(|(name, _)| name == "valid_until") else {
        return Err(Failure::Answer(format!(
            "pageserver {server} answered lease lsn without a valid_until column"
        )));
    };
    let Some(value) = value else {
        return Ok(Answer::Refused);
    };
    let millis: u64 = value.trim().parse().map_err(|_| {
        Failure::Answer(format!(
            "pageserver {server} answered valid_until {value:?}, not milliseconds since the epoch"
        ))
    })?;
    let valid_until = stage_kit::deadline::since_epoch(Duration::from_millis(millis))
        .filter(|_| millis <= LATEST_MS)
        .ok_or_else(|| {
            Failure::Answer(format!(
                "pageserver {server} answered valid_until {millis}, past the year 9999"
            ))
        })?;
    Ok(Answer::ValidUntil(valid_until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_wire::Row;

    fn answer(value: Option<&str>) -> Result<Answer, String> {
        let row = Row {
            columns: vec![("valid_until".to_string(), value.map(str::to_string))],
        };
        read_answer("ps:1", &[row]).map_err(|error| error.to_string())
    }

    #[test]
    fn answers_are_read_or_named() {
        let at = |millis| {
            Ok(Answer::ValidUntil(
                SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
            ))
        };
        assert_eq!(answer(Some("1700000000123")), at(1_700_000_000_123));
        assert_eq!(answer(Some(" 42 ")), at(42));
        assert_eq!(answer(Some(&LATEST_MS.to_string())), at(LATEST_MS));
        assert_eq!(answer(None), Ok(Answer::Refused));
        assert_eq!(
            answer(Some("soon")).unwrap_err(),
            "pageserver ps:1 answered valid_until \"soon\", not milliseconds since the epoch"
        );
        for past in [LATEST_MS + 1, u64::MAX] {
            assert_eq!(
                answer(Some(&past.to_string())).unwrap_err(),
                format!("pageserver ps:1 answered valid_until {past}, past the year 9999")
            );
        }
        assert_eq!(
            read_answer("ps:1", &[]).unwrap_err().to_string(),
            "pageserver ps:1 answered lease lsn with 0 rows, not 1"
        );
        let other = Row {
            columns: vec![("lsn".to_string(), Some("0/0".to_string()))],
        };
        assert_eq!(
            read_answer("ps:1", &[other]).unwrap_err().to_string(),
            "pageserver ps:1 answered lease lsn without a valid_until column"
        );
    }
}
