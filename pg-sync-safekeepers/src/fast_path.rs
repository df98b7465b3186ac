//! The fast path: ask every safekeeper for `TIMELINE_STATUS` at once and, when a quorum agrees
//! that everything is committed, skip `postgres --sync-safekeepers`.
//!
//! As upstream: connect as `no_user` with options `-c timeline_id=<tl> tenant_id=<t>` and the
//! storage token as password, 100 ms per safekeeper, stop at a quorum (n/2+1) of answers or of
//! failures. "Synced" iff every answer of the quorum has `commit_lsn == flush_lsn` and all
//! answers have the same LSN. Anything else (including failures) means "take the slow path".

use std::sync::mpsc;
use std::time::{Duration, Instant};

use compute_spec::ids::{TenantId, TimelineId};
use compute_spec::Lsn;

use pg_wire::{AnswerLimit, Connection, Endpoint, Startup, WireError};

/// Extra time allowed to the whole check beyond one safekeeper's timeout.
const RESOLVE_MARGIN: Duration = Duration::from_millis(100);

/// What to ask the safekeepers.
#[derive(Clone, Debug)]
pub struct StatusQuery {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
    /// The storage token (`storage_auth_token`), sent as the password.
    pub token: Option<String>,
    /// Time allowed per safekeeper.
    pub timeout: Duration,
}

/// One safekeeper's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineStatus {
    /// `flush_lsn`.
    pub flush_lsn: Lsn,
    /// `commit_lsn`.
    pub commit_lsn: Lsn,
}

/// The fast path's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A quorum agreed: start from this LSN.
    Synced(Lsn),
    /// Take the slow path, for this reason.
    NotSynced(String),
}

/// Asks every safekeeper (`host:port`) concurrently and decides.
pub fn check(safekeepers: &[String], query: &StatusQuery) -> Verdict {
    if safekeepers.is_empty() {
        return Verdict::NotSynced("the spec names no safekeeper".to_string());
    }
    let quorum = safekeepers.len() / 2 + 1;
    let (sender, receiver) = mpsc::channel();
    for safekeeper in safekeepers {
        let sender = sender.clone();
        let safekeeper = safekeeper.clone();
        let query = query.clone();
        std::thread::spawn(move || {
            let result = ask(&safekeeper, &query);
            drop(sender.send((safekeeper, result)));
        });
    }
    drop(sender);
    // Name resolution is not bounded by the per-safekeeper timeout; this bounds the whole.
    let deadline = stage_kit::deadline::after(query.timeout.saturating_add(RESOLVE_MARGIN));
    let mut answers = Vec::new();
    let mut failures = 0;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok((safekeeper, result)) = receiver.recv_timeout(remaining) else {
            break;
        };
        match result {
            Ok(status) => {
                tracing::debug!(%safekeeper, flush_lsn = %status.flush_lsn,
                    commit_lsn = %status.commit_lsn, "TIMELINE_STATUS");
                answers.push(status);
            }
            Err(error) => {
                tracing::info!(%safekeeper, "TIMELINE_STATUS failed: {error}");
                failures += 1;
            }
        }
        if answers.len() >= quorum || failures >= quorum {
            break;
        }
    }
    if answers.len() < quorum {
        return Verdict::NotSynced(format!(
            "only {} of {} safekeepers answered TIMELINE_STATUS ({failures} failed)",
            answers.len(),
            safekeepers.len()
        ));
    }
    decide(&answers)
}

/// Decides from a quorum of answers: synced iff all are equal and committed.
pub fn decide(answers: &[TimelineStatus]) -> Verdict {
    let Some(first) = answers.first() else {
        return Verdict::NotSynced("no answers".to_string());
    };
    if let Some(pending) = answers.iter().find(|a| a.commit_lsn != a.flush_lsn) {
        return Verdict::NotSynced(format!(
            "a safekeeper has commit_lsn {} below flush_lsn {}",
            pending.commit_lsn, pending.flush_lsn
        ));
    }
    if answers.iter().any(|a| a.flush_lsn != first.flush_lsn) {
        let lsns: Vec<String> = answers.iter().map(|a| a.flush_lsn.to_string()).collect();
        return Verdict::NotSynced(format!("safekeepers disagree: {}", lsns.join(", ")));
    }
    Verdict::Synced(first.flush_lsn)
}

/// Parses `host:port` (or `[v6]:port`); the port defaults to 5454 as Neon's safekeepers use.
pub fn endpoint(safekeeper: &str) -> Endpoint {
    let (host, port) = match safekeeper.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            (host, port.parse().unwrap_or(5454))
        }
        _ => (safekeeper, 5454),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Endpoint::Tcp(host.to_string(), port)
}

fn ask(safekeeper: &str, query: &StatusQuery) -> Result<TimelineStatus, WireError> {
    let endpoint = endpoint(safekeeper);
    let startup = Startup {
        user: "no_user".to_string(),
        params: vec![(
            "options".to_string(),
            format!(
                "-c timeline_id={} tenant_id={}",
                query.timeline_id, query.tenant_id
            ),
        )],
        password: query.token.as_ref().map(|t| t.as_bytes().to_vec()),
    };
    let mut connection = Connection::connect(&endpoint, &startup, query.timeout)?;
    let rows = connection.simple_query_limited("TIMELINE_STATUS", AnswerLimit::ONE_ROW)?;
    connection.close();
    let protocol = |message: String| WireError::Protocol {
        endpoint: endpoint.to_string(),
        message,
    };
    let row = rows
        .first()
        .ok_or_else(|| protocol("TIMELINE_STATUS returned no row".to_string()))?;
    let lsn = |column: &str| -> Result<Lsn, WireError> {
        let text = row
            .get(column)
            .ok_or_else(|| protocol(format!("TIMELINE_STATUS has no {column}")))?;
        text.parse()
            .map_err(|_| protocol(format!("TIMELINE_STATUS {column} {text:?} is not an LSN")))
    };
    Ok(TimelineStatus {
        flush_lsn: lsn("flush_lsn")?,
        commit_lsn: lsn("commit_lsn")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(flush: u64, commit: u64) -> TimelineStatus {
        TimelineStatus {
            flush_lsn: Lsn(flush),
            commit_lsn: Lsn(commit),
        }
    }

    #[test]
    fn a_timeout_of_u64_max_seconds_does_not_panic() {
        let query = StatusQuery {
            tenant_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".parse().unwrap(),
            timeline_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".parse().unwrap(),
            token: None,
            timeout: Duration::from_secs(u64::MAX),
        };
        // Port 1 refuses at once; the deadline built from the timeout must not overflow.
        let verdict = check(&["127.0.0.1:1".to_string()], &query);
        assert!(matches!(verdict, Verdict::NotSynced(_)), "{verdict:?}");
    }

    #[test]
    fn agreement_is_synced() {
        let verdict = decide(&[status(0x100, 0x100), status(0x100, 0x100)]);
        assert_eq!(verdict, Verdict::Synced(Lsn(0x100)));
    }

    #[test]
    fn disagreement_or_uncommitted_is_not_synced() {
        for answers in [
            vec![status(0x100, 0x100), status(0x200, 0x200)],
            vec![status(0x200, 0x100), status(0x200, 0x100)],
            vec![],
        ] {
            assert!(
                matches!(decide(&answers), Verdict::NotSynced(_)),
                "{answers:?}"
            );
        }
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(endpoint("sk-1:5454"), Endpoint::Tcp("sk-1".into(), 5454));
        assert_eq!(endpoint("[::1]:6000"), Endpoint::Tcp("::1".into(), 6000));
        assert_eq!(endpoint("sk-2"), Endpoint::Tcp("sk-2".into(), 5454));
    }
}
