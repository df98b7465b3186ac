//! The compute's status (upstream's `ComputeStatus`) as one type whose transitions are the
//! only allowed ones, and the shared state the controller, the HTTP workers and the signal
//! thread read and change under one lock.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use compute_spec::spec::{ComputeCtlConfig, ComputeSpec};
use compute_spec::ComputeDocument;
use serde::Serialize;
use serde_json::Value;

/// Upstream's compute status (JSON snake_case; metric label kebab-case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeStatus {
    /// No spec yet; waiting for `/configure`.
    Empty,
    /// A spec arrived; the controller will apply it.
    ConfigurationPending,
    /// Starting: stages running, Postgres starting.
    Init,
    /// Postgres is up and matches the spec.
    Running,
    /// Applying a new spec to a running compute.
    Configuration,
    /// Start-up or reconfiguration failed; see `error`.
    Failed,
    /// Fast shutdown requested.
    TerminationPendingFast,
    /// Immediate shutdown requested.
    TerminationPendingImmediate,
    /// Postgres has stopped.
    Terminated,
    /// `/refresh_configuration` asked for the configuration to be fetched again.
    RefreshConfigurationPending,
    /// The configuration is being fetched again and applied.
    RefreshConfiguration,
}

impl ComputeStatus {
    /// Every status, for the metric export.
    pub const ALL: [ComputeStatus; 11] = [
        ComputeStatus::Empty,
        ComputeStatus::ConfigurationPending,
        ComputeStatus::Init,
        ComputeStatus::Running,
        ComputeStatus::Configuration,
        ComputeStatus::Failed,
        ComputeStatus::TerminationPendingFast,
        ComputeStatus::TerminationPendingImmediate,
        ComputeStatus::Terminated,
        ComputeStatus::RefreshConfigurationPending,
        ComputeStatus::RefreshConfiguration,
    ];

    /// The JSON name (`configuration_pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeStatus::Empty => "empty",
            ComputeStatus::ConfigurationPending => "configuration_pending",
            ComputeStatus::Init => "init",
            ComputeStatus::Running => "running",
            ComputeStatus::Configuration => "configuration",
            ComputeStatus::Failed => "failed",
            ComputeStatus::TerminationPendingFast => "termination_pending_fast",
            ComputeStatus::TerminationPendingImmediate => "termination_pending_immediate",
            ComputeStatus::Terminated => "terminated",
            ComputeStatus::RefreshConfigurationPending => "refresh_configuration_pending",
            ComputeStatus::RefreshConfiguration => "refresh_configuration",
        }
    }

    /// The metric label (`configuration-pending`), as upstream's Display.
    pub fn label(self) -> String {
        self.as_str().replace('_', "-")
    }

    /// Whether a termination is pending.
    pub fn is_terminating(self) -> bool {
        matches!(
            self,
            ComputeStatus::TerminationPendingFast | ComputeStatus::TerminationPendingImmediate
        )
    }

    /// Whether `self → next` is an allowed transition. Termination may be requested from any
    /// live status (signals); `/terminate` accepts `empty`, `running` and `failed`.
    pub fn can_become(self, next: ComputeStatus) -> bool {
        use ComputeStatus::*;
        matches!(
            (self, next),
            (Empty, ConfigurationPending | Init)
                | (ConfigurationPending, Init | Configuration)
                | (Init, Running | Failed)
                | (Running, ConfigurationPending)
                | (Configuration, Running | Failed)
                | (
                    Running | Failed | RefreshConfigurationPending,
                    RefreshConfigurationPending
                )
                | (RefreshConfigurationPending, RefreshConfiguration)
                | (RefreshConfiguration, Running | RefreshConfigurationPending)
                | (
                    Empty
                        | ConfigurationPending
                        | Init
                        | Running
                        | Configuration
                        | Failed
                        | RefreshConfigurationPending
                        | RefreshConfiguration,
                    TerminationPendingFast | TerminationPendingImmediate,
                )
                | (TerminationPendingFast, TerminationPendingImmediate)
                | (
                    TerminationPendingFast | TerminationPendingImmediate,
                    Terminated
                )
        )
    }
}

impl std::fmt::Display for ComputeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition the state machine refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid compute status: {from} (cannot become {to})")]
pub struct InvalidTransition {
    /// The current status.
    pub from: ComputeStatus,
    /// The refused status.
    pub to: ComputeStatus,
}

/// Startup timings, named as upstream's `/metrics.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StartupMetrics {
    /// Time spent waiting for a spec (pooled computes).
    pub wait_for_spec_ms: u64,
    /// Safekeeper fast-path check.
    pub sync_sk_check_ms: u64,
    /// `postgres --sync-safekeepers`.
    pub sync_safekeepers_ms: u64,
    /// Pageserver connect.
    pub pageserver_connect_micros: u64,
    /// Basebackup (or initdb).
    pub basebackup_ms: u64,
    /// Compressed basebackup bytes.
    pub basebackup_bytes: u64,
    /// Spawn to ready.
    pub start_postgres_ms: u64,
    /// Ready to running.
    pub config_ms: u64,
    /// Start to running.
    pub total_startup_ms: u64,
    /// Remote extensions preloaded before start (0 until remote extensions exist).
    pub load_ext_ms: u64,
    /// Remote extensions downloaded.
    pub num_ext_downloaded: u64,
    /// Largest downloaded extension archive, bytes.
    pub largest_ext_size: u64,
    /// All downloaded extension archives, bytes.
    pub total_ext_download_size: u64,
}

/// Counters and gauges beside the startup timings.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Reconciles run (start-up and `/configure`).
    pub reconciles_total: u64,
    /// Reconciles that failed.
    pub reconcile_failures_total: u64,
    /// Statements applied by the last reconcile.
    pub reconcile_statements_applied: u64,
    /// Current downtime, from pg-supervise's `downtime` events.
    pub downtime_current_ms: u64,
    /// Total downtime.
    pub downtime_total_ms: u64,
    /// `/refresh_configuration` calls (upstream's `pg_cctl_pagestream_request_errors_total`).
    pub pagestream_request_errors_total: u64,
    /// Failed catalog migrations by id (`compute_ctl_db_migration_failed_total`).
    pub migration_failures: std::collections::BTreeMap<i64, u64>,
    /// Bytes of the `*log` files in `<PGDATA>/log` (`compute_audit_log_dir_size`, set by
    /// `compute_sidecars::audit::cleanup`).
    pub audit_log_dir_size: u64,
    /// Requests to the control plane by (rpc, http_status)
    /// (`compute_ctl_cplane_requests_total`).
    pub cplane_requests: std::collections::BTreeMap<(String, String), u64>,
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Inner {
    status: ComputeStatus,
    /// The status `compute_ctl_up` exports: not moved by `terminated` or the refresh path's
    /// direct switches, as upstream.
    gauge: ComputeStatus,
    /// When the compute started (reset when a pooled compute gets its spec).
    pub start_time: SystemTime,
    /// Monotonic twin of `start_time`.
    pub started: Instant,
    /// The error of a failed start or reconfiguration.
    pub error: Option<String>,
    /// From pg-supervise's `activity` events.
    pub last_active: Option<SystemTime>,
    /// The current document (after the last stage that succeeded).
    pub document: Option<ComputeDocument>,
    /// A spec received by `/configure`, waiting for the controller.
    pub pending: Option<PendingConfig>,
    /// Startup timings.
    pub metrics: StartupMetrics,
    /// Counters.
    pub counters: Counters,
    /// The LSN reported by the post-shutdown sync (`/terminate`).
    pub terminate_lsn: Option<String>,
    /// The safekeeper sync after Postgres exited failed (on a Primary): the status never
    /// becomes `terminated`, `/terminate` answers 500 with this, compute-ctl exits 1.
    pub final_sync_error: Option<String>,
    /// JWT keys and TLS as given at start; never replaced (`/configure` ignores its own).
    pub compute_ctl_config: ComputeCtlConfig,
    /// The mode of the `/terminate` that is under way or done (the HTTP API stays up after
    /// `terminated`: 30 s after a fast one, 300 ms after an immediate one).
    pub terminate_requested: Option<ComputeStatus>,
    /// SIGQUIT asked for PostgreSQL's immediate shutdown. `/terminate` always asks for a fast
    /// one (SIGINT to the postmaster), in both of its modes, as upstream.
    pub immediate_shutdown: bool,
}

/// A spec received by `/configure`, parsed and validated once at the edge.
#[derive(Clone, Debug)]
pub struct PendingConfig {
    /// The spec.
    pub spec: ComputeSpec,
}

impl Inner {
    /// The current status.
    pub fn status(&self) -> ComputeStatus {
        self.status
    }

    /// Moves to `next` if the transition is allowed, logging it.
    pub fn transition(&mut self, next: ComputeStatus) -> Result<(), InvalidTransition> {
        if !self.status.can_become(next) {
            return Err(InvalidTransition {
                from: self.status,
                to: next,
            });
        }
        tracing::info!(from = %self.status, to = %next, "compute status changed");
        self.status = next;
        if next != ComputeStatus::Terminated {
            self.gauge = next;
        }
        tell_systemd(next);
        Ok(())
    }

    /// Moves to `next` like [`Inner::transition`] but leaves `compute_ctl_up` where it was
    /// (upstream's direct switches on the refresh path).
    pub fn transition_direct(&mut self, next: ComputeStatus) -> Result<(), InvalidTransition> {
        let gauge = self.gauge;
        self.transition(next)?;
        self.gauge = gauge;
        Ok(())
    }

    /// The status `compute_ctl_up` exports.
    pub fn gauge_status(&self) -> ComputeStatus {
        self.gauge
    }

    /// The `/metrics.json` body.
    pub fn metrics_json(&self) -> Value {
        serde_json::to_value(&self.metrics).unwrap_or(Value::Null)
    }

    /// The `/status` body.
    pub fn status_body(&self) -> Value {
        let spec = self.document.as_ref().and_then(|doc| doc.spec.as_ref());
        let tenant = spec.and_then(|spec| {
            spec.tenant_id
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| spec.setting("neon.tenant_id").map(str::to_string))
        });
        let timeline = spec.and_then(|spec| {
            spec.timeline_id
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| spec.setting("neon.timeline_id").map(str::to_string))
        });
        serde_json::json!({
            "start_time": rfc3339(self.start_time, "Z"),
            "tenant": tenant,
            "timeline": timeline,
            "status": self.status,
            "last_active": self.last_active.map(|time| rfc3339(time, "+00:00")),
            "error": self.error,
        })
    }
}

/// The shared state and the condition variable that announces every change.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    /// HTTP requests being answered right now (counted by the servers).
    pub inflight: Arc<AtomicUsize>,
}

impl Shared {
    /// A fresh state in `empty`, started now.
    pub fn new() -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                status: ComputeStatus::Empty,
                gauge: ComputeStatus::Empty,
                start_time: SystemTime::now(),
                started: Instant::now(),
                error: None,
                last_active: None,
                document: None,
                pending: None,
                metrics: StartupMetrics::default(),
                counters: Counters::default(),
                terminate_lsn: None,
                final_sync_error: None,
                compute_ctl_config: ComputeCtlConfig::default(),
                terminate_requested: None,
                immediate_shutdown: false,
            }),
            changed: Condvar::new(),
            inflight: Arc::default(),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the data stays consistent per field).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` under the lock and wakes every waiter.
    pub fn update<T>(&self, change: impl FnOnce(&mut Inner) -> T) -> T {
        let result = change(&mut self.lock());
        self.changed.notify_all();
        result
    }

    /// Moves to `next` and wakes every waiter.
    pub fn transition(&self, next: ComputeStatus) -> Result<(), InvalidTransition> {
        self.update(|inner| inner.transition(next))
    }

    /// The current status.
    pub fn status(&self) -> ComputeStatus {
        self.lock().status
    }

    /// Waits until `done` holds or `timeout` passes; returns the guard either way.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Inner) -> bool,
    ) -> MutexGuard<'_, Inner> {
        let guard = self.lock();
        match self
            .changed
            .wait_timeout_while(guard, timeout, |inner| !done(inner))
        {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// RFC 3339 UTC as upstream's chrono writes it: no fraction, or 3, 6 or 9 digits, whichever
/// is shortest without loss; `zone` is `Z` (`start_time`) or `+00:00` (`last_active`).
pub fn rfc3339(time: SystemTime, zone: &str) -> String {
    let nanos = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let written = if nanos == 0 {
        humantime::format_rfc3339_seconds(time).to_string()
    } else if nanos % 1_000_000 == 0 {
        humantime::format_rfc3339_millis(time).to_string()
    } else if nanos % 1_000 == 0 {
        humantime::format_rfc3339_micros(time).to_string()
    } else {
        humantime::format_rfc3339_nanos(time).to_string()
    };
    // humantime writes UTC as `Z`.
    match written.strip_suffix('Z') {
        Some(stem) => format!("{stem}{zone}"),
        None => written,
    }
}

/// Under systemd (`Type=notify`), `READY=1` once the compute runs and `STOPPING=1` when
/// shutdown begins; nothing when `NOTIFY_SOCKET` is not set.
fn tell_systemd(status: ComputeStatus) {
    let state = match status {
        ComputeStatus::Running => "READY=1",
        ComputeStatus::TerminationPendingFast | ComputeStatus::TerminationPendingImmediate => {
            "STOPPING=1"
        }
        _ => return,
    };
    if let Err(error) = stage_kit::notify::notify(state) {
        tracing::warn!(%error, "cannot notify systemd ({state})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComputeStatus::*;

    #[test]
    fn only_listed_transitions() {
        let allowed = [
            (Empty, ConfigurationPending),
            (Empty, Init),
            (ConfigurationPending, Init),
            (ConfigurationPending, Configuration),
            (Init, Running),
            (Init, Failed),
            (Running, ConfigurationPending),
            (Configuration, Running),
            (Configuration, Failed),
            (Running, RefreshConfigurationPending),
            (Failed, RefreshConfigurationPending),
            (RefreshConfigurationPending, RefreshConfigurationPending),
            (RefreshConfigurationPending, RefreshConfiguration),
            (RefreshConfiguration, Running),
            (RefreshConfiguration, RefreshConfigurationPending),
            (TerminationPendingFast, TerminationPendingImmediate),
            (TerminationPendingFast, Terminated),
            (TerminationPendingImmediate, Terminated),
        ];
        for from in ComputeStatus::ALL {
            for to in ComputeStatus::ALL {
                let expected = allowed.contains(&(from, to))
                    || (to.is_terminating()
                        && !from.is_terminating()
                        && from != Terminated
                        && to != from);
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn transition_is_refused() {
        let shared = Shared::new();
        assert_eq!(
            shared.transition(Running),
            Err(InvalidTransition {
                from: Empty,
                to: Running
            })
        );
        shared.transition(Init).unwrap();
        shared.transition(Running).unwrap();
        assert_eq!(shared.status(), Running);
        assert_eq!(Running.label(), "running");
        assert_eq!(ConfigurationPending.label(), "configuration-pending");
    }

    /// The refresh path as the controller walks it: requested directly (gauge kept), then
    /// unchanged (back to running directly), failed (back to pending), or applied.
    #[test]
    fn refresh_edges_and_the_gauge() {
        let shared = Shared::new();
        shared.transition(Init).unwrap();
        shared.transition(Running).unwrap();
        shared
            .update(|inner| inner.transition_direct(RefreshConfigurationPending))
            .unwrap();
        assert_eq!(shared.lock().gauge_status(), Running);
        shared.transition(RefreshConfiguration).unwrap();
        assert_eq!(shared.lock().gauge_status(), RefreshConfiguration);
        // A fetch error: pending again, the gauge says so.
        shared.transition(RefreshConfigurationPending).unwrap();
        assert_eq!(shared.lock().gauge_status(), RefreshConfigurationPending);
        shared.transition(RefreshConfiguration).unwrap();
        // The same pageserver: running at once, the gauge untouched (as upstream).
        shared
            .update(|inner| inner.transition_direct(Running))
            .unwrap();
        assert_eq!(shared.status(), Running);
        assert_eq!(shared.lock().gauge_status(), RefreshConfiguration);
        // From a failed reconfiguration the refresh path leads back to running too.
        shared.transition(ConfigurationPending).unwrap();
        shared.transition(Configuration).unwrap();
        shared.transition(Failed).unwrap();
        shared
            .update(|inner| inner.transition_direct(RefreshConfigurationPending))
            .unwrap();
        shared.transition(RefreshConfiguration).unwrap();
        shared.transition(Running).unwrap();
        assert_eq!(shared.lock().gauge_status(), Running);
        // Nothing else leaves refresh_configuration but a termination.
        for next in [Init, Failed, Configuration, ConfigurationPending, Empty] {
            assert!(!RefreshConfiguration.can_become(next), "{next}");
        }
        assert!(RefreshConfiguration.can_become(TerminationPendingFast));
    }

    #[test]
    fn timestamps() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_986_000_123);
        assert_eq!(rfc3339(time, "Z"), "2026-11-29T21:00:00.123Z");
        let micros = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_986_000_123_456);
        assert_eq!(rfc3339(micros, "Z"), "2026-11-29T21:00:00.123456Z");
        let nanos = micros + Duration::from_nanos(7);
        assert_eq!(rfc3339(nanos, "Z"), "2026-11-29T21:00:00.123456007Z");
        let leap_day = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap_day, "+00:00"), "2000-02-29T00:00:00+00:00");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH, "Z"), "1970-01-01T00:00:00Z");
    }
}
