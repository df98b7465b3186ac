//! Local file cache (LFC) sizing through Postgres.
//!
//! The cache size for a VM with `total` bytes is
//! `min(0.75·total, (total − 256 MiB)/1.1)`, rounded down to whole MiB, 0 when
//! `total ≤ 256 MiB`, and capped by `neon.max_file_cache_size` when that
//! setting exists. It is applied with
//! `ALTER SYSTEM SET neon.file_cache_size_limit = <MiB>` + `pg_reload_conf()`.
//!
//! When `neon.file_cache_size_limit` does not exist (the `neon` extension is
//! not loaded) resizing is skipped: that is not an error.
//!
//! The decision logic ([`resize`]) talks to a [`SettingsBackend`], so it is
//! tested with a fake; [`PgSettings`] is the real backend.

use std::time::Duration;

use crate::MIB;

/// Name of the setting that controls the cache size (unit: MB).
pub const LIMIT_SETTING: &str = "neon.file_cache_size_limit";
/// Name of the optional setting that caps the cache size.
pub const MAX_SETTING: &str = "neon.max_file_cache_size";
/// Memory always left outside the cache.
pub const MIN_REMAINING_AFTER_CACHE: u64 = 256 * MIB;

/// A failure talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum FileCacheError {
    /// Could not connect.
    #[error("cannot connect to Postgres for file-cache sizing: {0}")]
    Connect(#[source] postgres::Error),
    /// A query failed.
    #[error("file-cache query `{query}` failed: {source}")]
    Query {
        /// The statement.
        query: String,
        /// The driver error.
        #[source]
        source: postgres::Error,
    },
}

/// Cache size in bytes (a whole number of MiB) for `total` bytes of memory.
pub fn file_cache_size(total: u64) -> u64 {
    if total <= MIN_REMAINING_AFTER_CACHE {
        return 0;
    }
    let total = u128::from(total);
    let from_fraction = total * 3 / 4;
    let from_spread = (total - u128::from(MIN_REMAINING_AFTER_CACHE)) * 10 / 11;
    let bytes = from_fraction.min(from_spread);
    let mib = u128::from(MIB);
    u64::try_from(bytes / mib * mib).unwrap_or(u64::MAX / MIB * MIB)
}

/// What [`resize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeOutcome {
    /// `neon.file_cache_size_limit` does not exist; nothing was done.
    Skipped,
    /// The limit was set to this many MiB.
    Set {
        /// New limit in MiB.
        mib: u64,
    },
}

/// The Postgres operations file-cache sizing needs.
pub trait SettingsBackend {
    /// Value of setting `name` in bytes (`pg_size_bytes(current_setting(name))`),
    /// `None` when the setting does not exist.
    fn setting_bytes(&mut self, name: &str) -> Result<Option<i64>, FileCacheError>;
    /// `ALTER SYSTEM SET neon.file_cache_size_limit = <mib>` then reload.
    fn set_limit_mib(&mut self, mib: u64) -> Result<(), FileCacheError>;
}

/// Sizes the cache for `total` bytes of VM memory.
pub fn resize<B: SettingsBackend + ?Sized>(
    backend: &mut B,
    total: u64,
) -> Result<ResizeOutcome, FileCacheError> {
    if backend.setting_bytes(LIMIT_SETTING)?.is_none() {
        tracing::info!(
            setting = LIMIT_SETTING,
            "file-cache setting absent (neon extension not loaded); skipping file-cache sizing"
        );
        return Ok(ResizeOutcome::Skipped);
    }
    let mut size = file_cache_size(total);
    if let Some(max) = backend.setting_bytes(MAX_SETTING)? {
        let max = u64::try_from(max).unwrap_or(0);
        size = size.min(max);
    }
    let mib = size / MIB;
    backend.set_limit_mib(mib)?;
    tracing::info!(
        total_mib = total / MIB,
        limit_mib = mib,
        "file-cache size set"
    );
    Ok(ResizeOutcome::Set { mib })
}

/// [`SettingsBackend`] over a lazily (re)connected Postgres client.
pub struct PgSettings {
    config: postgres::Config,
    client: Option<postgres::Client>,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl PgSettings {
    /// Wraps a parsed connection config (a 5 s connect timeout is added when
    /// none is set). Does not connect yet.
    pub fn new(mut config: postgres::Config) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        Self {
            config,
            client: None,
        }
    }

    fn client(&mut self) -> Result<&mut postgres::Client, FileCacheError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        match &mut self.client {
            Some(c) => Ok(c),
            slot @ None => {
                let c = self
                    .config
                    .connect(postgres::NoTls)
                    .map_err(FileCacheError::Connect)?;
                Ok(slot.insert(c))
            }
        }
    }

    /// Runs `f`, reconnecting and retrying once if it fails.
    fn with_retry<T>(
        &mut self,
        mut f: impl FnMut(&mut postgres::Client) -> Result<T, FileCacheError>,
    ) -> Result<T, FileCacheError> {
        match f(self.client()?) {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::debug!(error = %e, "file-cache query failed; reconnecting once");
                self.client = None;
                f(self.client()?)
            }
        }
    }
}

impl SettingsBackend for PgSettings {
    fn setting_bytes(&mut self, name: &str) -> Result<Option<i64>, FileCacheError> {
        const Q: &str = "SELECT pg_size_bytes(current_setting($1, true))";
        self.with_retry(|c| {
            let row = c
                .query_one(Q, &[&name])
                .map_err(|source| FileCacheError::Query {
                    query: Q.into(),
                    source,
                })?;
            row.try_get::<_, Option<i64>>(0)
                .map_err(|source| FileCacheError::Query {
                    query: Q.into(),
                    source,
                })
        })
    }

    fn set_limit_mib(&mut self, mib: u64) -> Result<(), FileCacheError> {
        // `mib` is an integer, so formatting it into the statement is safe.
        let alter = format!("ALTER SYSTEM SET {LIMIT_SETTING} = {mib}");
        self.with_retry(|c| {
            c.batch_execute(&alter)
                .map_err(|source| FileCacheError::Query {
                    query: alter.clone(),
                    source,
                })?;
            c.batch_execute("SELECT pg_reload_conf()")
                .map_err(|source| FileCacheError::Query {
                    query: "SELECT pg_reload_conf()".into(),
                    source,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const GIB: u64 = 1 << 30;

    #[test]
    fn formula() {
        assert_eq!(file_cache_size(0), 0);
        assert_eq!(file_cache_size(256 * MIB), 0);
        // Just above 256 MiB the spread term dominates: (1 MiB)/1.1 → 0 MiB.
        assert_eq!(file_cache_size(257 * MIB), 0);
        // 1 GiB: min(768 MiB, 768/1.1 = 698.18 MiB) → 698 MiB.
        assert_eq!(file_cache_size(GIB), 698 * MIB);
        // 4 GiB: min(3072, 3840/1.1 = 3490.9) → 3072 MiB.
        assert_eq!(file_cache_size(4 * GIB), 3072 * MIB);
        // Crossover where 0.75 t = (t − 256)/1.1 → t = 256/0.175 ≈ 1462.86 MiB.
        assert_eq!(file_cache_size(1400 * MIB), 1040 * MIB); // 1144/1.1 = 1040
        assert_eq!(file_cache_size(1500 * MIB), 1125 * MIB); // 0.75·1500
        for t in [300 * MIB, GIB + 12345, 7 * GIB + 1] {
            assert_eq!(file_cache_size(t) % MIB, 0);
            assert!(file_cache_size(t) <= t * 3 / 4);
        }
        assert_eq!(file_cache_size(u64::MAX) % MIB, 0);
    }

    #[derive(Default)]
    struct Fake {
        settings: HashMap<&'static str, i64>,
        set_calls: Vec<u64>,
    }

    impl SettingsBackend for Fake {
        fn setting_bytes(&mut self, name: &str) -> Result<Option<i64>, FileCacheError> {
            Ok(self.settings.get(name).copied())
        }
        fn set_limit_mib(&mut self, mib: u64) -> Result<(), FileCacheError> {
            self.set_calls.push(mib);
            Ok(())
        }
    }

    #[test]
    fn absent_setting_is_skipped() {
        let mut f = Fake::default();
        assert_eq!(resize(&mut f, 4 * GIB).unwrap(), ResizeOutcome::Skipped);
        assert!(f.set_calls.is_empty());
    }

    #[test]
    fn sets_limit_and_honours_cap() {
        let mut f = Fake::default();
        f.settings.insert(LIMIT_SETTING, 0);
        assert_eq!(
            resize(&mut f, GIB).unwrap(),
            ResizeOutcome::Set { mib: 698 }
        );
        f.settings.insert(MAX_SETTING, 512 * MIB as i64);
        assert_eq!(
            resize(&mut f, GIB).unwrap(),
            ResizeOutcome::Set { mib: 512 }
        );
        assert_eq!(
            resize(&mut f, 256 * MIB).unwrap(),
            ResizeOutcome::Set { mib: 0 }
        );
        assert_eq!(f.set_calls, [698, 512, 0]);
    }
}
