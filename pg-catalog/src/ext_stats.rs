//! Installed-extension statistics (upstream's §4.7): which extension versions are installed
//! in how many databases, logged as one `[NEON_EXT_STAT] {"extensions":[…]}` line and
//! exported as `compute_installed_extensions{extension_name,owned_by_superuser,version}`
//! (series are overwritten by each scan, never removed, as upstream).
//!
//! The scan connects to the system database (`application_name =
//! compute_ctl:get_installed_extensions`), lists at most 500 databases that accept
//! connections and are valid, connects to each and reads `pg_extension`; any error aborts
//! the scan (logged; the metric keeps its previous values).
//!
//! Schedule ([`spawn`]): one scan at once when asked (compute-ctl: after start-up on a
//! primary); then sleep twice the interval, scan, and raise the interval to at least twice
//! the stored one ([`ExtStats::stored_interval`], which the caller may change at any time:
//! compute-ctl stores the spec's `suspend_timeout_seconds` through [`interval_of`]). The loop
//! never shrinks the interval and stops when [`Host::wait_for_stop`] says Postgres stops.
//! The job reaches its caller only through [`Host`]: the current document, the wait, and the
//! [`ExtStats`] it keeps.
//!
//! Unlike upstream, a scan is not user activity: its connections (one session per database)
//! would move the `pg_stat_database.sessions` signal of the activity monitor, so activity
//! reported while a scan runs, and for [`QUIET_MARGIN`] after it, is the scan's own
//! ([`ExtStats::is_scan_activity`]; compute-ctl then leaves `last_active` as it was).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use serde::Serialize;
use stage_kit::local::Limits;

use crate::{connect, CatalogError};

/// The scan's `application_name` (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:get_installed_extensions";
/// Each of the scan's sessions (one per database): 30 s per statement, 5 s per lock wait,
/// a cancel request after 35 s.
pub const LIMITS: Limits = Limits::seconds(30, 5, 35);
/// At most this many databases are scanned (as upstream).
pub const MAX_DATABASES: i64 = 500;
/// Activity reported up to this long after a scan ended is the scan's own (the activity
/// monitor ticks every 500 ms).
pub const QUIET_MARGIN: Duration = Duration::from_secs(2);
/// The stored interval when the spec's `suspend_timeout_seconds` is `-1` or `0`.
pub const DEFAULT_INTERVAL: u64 = 3600;

/// One group of the scan: an extension version, installed by a superuser or not.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InstalledExtension {
    /// `pg_extension.extname`.
    pub extname: String,
    /// `pg_extension.extversion`.
    pub version: String,
    /// How many databases have it.
    pub n_databases: u64,
    /// `"1"` when its owner is the bootstrap superuser (OID 10), else `"0"`.
    pub owned_by_superuser: String,
}

/// The statistics' state, kept by the caller (see [`Host::stats`]).
#[derive(Clone, Debug, Default)]
pub struct ExtStats {
    /// `compute_installed_extensions`: (name, owned_by_superuser, version) → databases.
    pub installed: BTreeMap<(String, String, String), u64>,
    /// The running (or last) scan: when it started, and when it ended.
    pub scan: Option<(SystemTime, Option<SystemTime>)>,
    /// The stored interval (seconds): the loop's floor is twice this (see [`spawn`]).
    pub stored_interval: u64,
}

impl ExtStats {
    /// Whether activity at `time` is the scan's own: during a scan or up to
    /// [`QUIET_MARGIN`] after it.
    pub fn is_scan_activity(&self, time: SystemTime) -> bool {
        match self.scan {
            None => false,
            Some((started, None)) => time >= started,
            Some((started, Some(ended))) => time >= started && time <= ended + QUIET_MARGIN,
        }
    }

    /// Sets the metric from one scan.
    pub fn record(&mut self, extensions: &[InstalledExtension]) {
        for ext in extensions {
            let key = (
                ext.extname.clone(),
                ext.owned_by_superuser.clone(),
                ext.version.clone(),
            );
            self.installed.insert(key, ext.n_databases);
        }
    }
}

/// The stored interval a spec gives: its `suspend_timeout_seconds`, `-1`/`0` → 3600.
pub fn interval_of(spec: &ComputeSpec) -> u64 {
    u64::try_from(spec.suspend_timeout_seconds)
        .ok()
        .filter(|seconds| *seconds > 0)
        .unwrap_or(DEFAULT_INTERVAL)
}

/// The loop's next interval: never shrinks, at least twice the stored one.
pub fn next_interval(current: u64, stored: u64) -> u64 {
    current.max(stored.saturating_mul(2))
}

/// Groups `(database, extname, version, owner is superuser)` rows.
pub fn group(rows: &[(String, String, bool)]) -> Vec<InstalledExtension> {
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (name, version, superuser) in rows {
        let owned = if *superuser { "1" } else { "0" };
        let key = (name.clone(), version.clone(), owned.to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(
            |((extname, version, owned_by_superuser), n_databases)| InstalledExtension {
                extname,
                version,
                n_databases,
                owned_by_superuser,
            },
        )
        .collect()
}

/// Scans every connectable, valid database (at most [`MAX_DATABASES`]).
pub fn scan(document: &ComputeDocument) -> Result<Vec<InstalledExtension>, CatalogError> {
    let mut system = connect(document, APPLICATION_NAME, None, LIMITS)?;
    let databases: Vec<String> = system
        .query(
            "SELECT datname::pg_catalog.text FROM pg_catalog.pg_database \
             WHERE datallowconn AND datconnlimit OPERATOR(pg_catalog.<>) -2 LIMIT $1",
            &[&MAX_DATABASES],
        )
        .map_err(|error| CatalogError::Read {
            what: "listing databases".into(),
            message: system.describe(&error),
        })?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(system);
    let mut rows = Vec::new();
    for database in &databases {
        let mut session = connect(document, APPLICATION_NAME, Some(database), LIMITS)?;
        let found = session
            .query(
                "SELECT extname::pg_catalog.text, extversion, \
                 extowner OPERATOR(pg_catalog.=) 10 FROM pg_catalog.pg_extension",
                &[],
            )
            .map_err(|error| CatalogError::Read {
                what: format!("reading the extensions of {database:?}"),
                message: session.describe(&error),
            })?;
        rows.extend(found.iter().map(|row| (row.get(0), row.get(1), row.get(2))));
    }
    Ok(group(&rows))
}

/// What the periodic job needs from its caller.
pub trait Host: Send + Sync + 'static {
    /// The current compute document (`None`: nothing to scan yet).
    fn document(&self) -> Option<ComputeDocument>;
    /// Runs `change` on the statistics the caller keeps (under its lock).
    fn stats(&self, change: &mut dyn FnMut(&mut ExtStats));
    /// Waits up to `pause`, or less once Postgres is stopping; whether it is (the job ends).
    fn wait_for_stop(&self, pause: Duration) -> bool;
}

/// One scan with its window recorded, its log line and the metric's values.
pub fn scan_and_record(host: &dyn Host) {
    let Some(document) = host.document() else {
        return;
    };
    host.stats(&mut |stats| stats.scan = Some((SystemTime::now(), None)));
    let result = scan(&document);
    host.stats(&mut |stats| {
        if let Some((started, _)) = stats.scan {
            stats.scan = Some((started, Some(SystemTime::now())));
        }
    });
    match result {
        Ok(extensions) => {
            tracing::info!("[NEON_EXT_STAT] {}", stat_line(&extensions));
            host.stats(&mut |stats| stats.record(&extensions));
        }
        Err(error) => tracing::warn!(%error, "the installed-extensions scan failed"),
    }
}

/// Starts the schedule in a background thread named `ext-stats`: the first scan at once when
/// `scan_first`, then the loop, starting at `interval` seconds (at least 1).
pub fn spawn(host: Arc<dyn Host>, scan_first: bool, interval: u64) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ext-stats".into())
        .spawn(move || run(host.as_ref(), scan_first, interval.max(1)))
        .map(drop)
}

fn run(host: &dyn Host, scan_first: bool, mut interval: u64) {
    if scan_first {
        scan_and_record(host);
    }
    loop {
        let pause = Duration::from_secs(interval.saturating_mul(2));
        if host.wait_for_stop(pause) {
            return;
        }
        scan_and_record(host);
        let mut stored = 0;
        host.stats(&mut |stats| stored = stats.stored_interval);
        interval = next_interval(interval, stored);
    }
}

/// The `[NEON_EXT_STAT]` payload, fields in upstream's order.
#[derive(Debug, Serialize)]
pub struct StatLine<'a> {
    /// The scan's groups.
    pub extensions: &'a [InstalledExtension],
}

/// The `[NEON_EXT_STAT]` line's JSON.
pub fn stat_line(extensions: &[InstalledExtension]) -> String {
    serde_json::to_string(&StatLine { extensions }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_by_name_version_and_owner() {
        let rows = vec![
            ("plpgsql".to_string(), "1.0".to_string(), true),
            ("plpgsql".to_string(), "1.0".to_string(), true),
            ("pg_trgm".to_string(), "1.6".to_string(), false),
            ("pg_trgm".to_string(), "1.6".to_string(), true),
        ];
        assert_eq!(
            stat_line(&group(&rows)),
            r#"{"extensions":[{"extname":"pg_trgm","version":"1.6","n_databases":1,"owned_by_superuser":"0"},{"extname":"pg_trgm","version":"1.6","n_databases":1,"owned_by_superuser":"1"},{"extname":"plpgsql","version":"1.0","n_databases":2,"owned_by_superuser":"1"}]}"#
        );
    }

    #[test]
    fn the_interval_never_shrinks_and_follows_the_spec() {
        assert_eq!(next_interval(3600, 3600), 7200);
        assert_eq!(next_interval(7200, 60), 7200);
        let spec = |seconds: i64| -> ComputeSpec {
            serde_json::from_value(serde_json::json!({
                "format_version": 1.0,
                "suspend_timeout_seconds": seconds,
                "cluster": {"roles": [], "databases": []},
            }))
            .unwrap()
        };
        assert_eq!(interval_of(&spec(-1)), 3600);
        assert_eq!(interval_of(&spec(0)), 3600);
        assert_eq!(interval_of(&spec(300)), 300);
    }

    #[test]
    fn activity_during_and_just_after_a_scan_is_the_scans() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut stats = ExtStats::default();
        assert!(!stats.is_scan_activity(start));
        stats.scan = Some((start, None));
        assert!(stats.is_scan_activity(start + Duration::from_secs(30)));
        assert!(!stats.is_scan_activity(start - Duration::from_secs(1)));
        stats.scan = Some((start, Some(start + Duration::from_secs(1))));
        assert!(stats.is_scan_activity(start + Duration::from_millis(2500)));
        assert!(!stats.is_scan_activity(start + Duration::from_secs(4)));
    }
}
