//! Metrics: the startup timings taken from the stage sections (`/metrics.json`) and the
//! Prometheus text exposition (`/metrics`).

use std::fmt::Write;

use compute_spec::ComputeDocument;

use crate::state::{Inner, StartupMetrics};

/// The build tag exported as a label (`BUILD_TAG` at compile time, else `latest`).
pub const BUILD_TAG: &str = match option_env!("BUILD_TAG") {
    Some(tag) => tag,
    None => "latest",
};

/// Copies the timings the stages wrote in their sections.
pub fn absorb_sections(metrics: &mut StartupMetrics, document: &ComputeDocument) {
    if let Some(sync) = &document.sync_safekeepers {
        metrics.sync_sk_check_ms = sync.sync_sk_check_ms.unwrap_or(0);
        metrics.sync_safekeepers_ms = sync.sync_safekeepers_ms.unwrap_or(0);
    }
    if let Some(basebackup) = &document.basebackup {
        metrics.pageserver_connect_micros = basebackup.pageserver_connect_micros.unwrap_or(0);
        metrics.basebackup_ms = basebackup.basebackup_ms;
        metrics.basebackup_bytes = basebackup.basebackup_bytes;
    }
    if let Some(extensions) = &document.extensions {
        metrics.load_ext_ms = extensions.load_ext_ms;
        metrics.num_ext_downloaded = extensions.num_ext_downloaded;
        metrics.largest_ext_size = extensions.largest_ext_size;
        metrics.total_ext_download_size = extensions.total_ext_download_size;
    }
}

/// The Prometheus text for the current state: upstream's families with upstream's names,
/// HELP texts and labels first (`compute_ctl_up` as one series), then our own.
pub fn render(inner: &Inner) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "compute_ctl_up",
        "gauge",
        "Whether compute_ctl is running",
    );
    let _ = writeln!(
        out,
        "compute_ctl_up{{build_tag=\"{}\",status=\"{}\"}} 1",
        escape(BUILD_TAG),
        inner.gauge_status().label()
    );
    let counters = &inner.counters;
    for (name, kind, help, value) in [
        (
            "compute_audit_log_dir_size",
            "gauge",
            "Size of audit log directory in bytes",
            counters.audit_log_dir_size,
        ),
        (
            "compute_pg_current_downtime_ms",
            "gauge",
            "Non-cumulative duration of Postgres downtime in ms; resets after successful check",
            counters.downtime_current_ms,
        ),
        (
            "compute_pg_downtime_ms_total",
            "counter",
            "Cumulative duration of Postgres downtime in ms",
            counters.downtime_total_ms,
        ),
        (
            "pg_cctl_pagestream_request_errors_total",
            "counter",
            "Number of PageStream request errors reported by the postgres process",
            counters.pagestream_request_errors_total,
        ),
        (
            "pg_cctl_configure_statement_timeout_errors_total",
            "counter",
            "Number of compute configuration errors due to Postgres statement timeouts.",
            0,
        ),
        // Ours.
        (
            "compute_ctl_reconciles_total",
            "counter",
            "pg-reconcile runs (start-up and /configure)",
            counters.reconciles_total,
        ),
        (
            "compute_ctl_reconcile_failures_total",
            "counter",
            "pg-reconcile runs that failed",
            counters.reconcile_failures_total,
        ),
        (
            "compute_ctl_reconcile_statements_applied",
            "gauge",
            "statements the last pg-reconcile applied",
            counters.reconcile_statements_applied,
        ),
    ] {
        single(&mut out, (name, kind), help, value);
    }
    // Labelled: dropped while empty, as upstream.
    if !counters.migration_failures.is_empty() {
        family(
            &mut out,
            "compute_ctl_db_migration_failed_total",
            "counter",
            "Total number of failed database migrations",
        );
        for (id, count) in &counters.migration_failures {
            let _ = writeln!(
                out,
                "compute_ctl_db_migration_failed_total{{migration_id=\"{id}\"}} {count}"
            );
        }
    }
    if !counters.cplane_requests.is_empty() {
        family(
            &mut out,
            "compute_ctl_cplane_requests_total",
            "counter",
            "Total number of control plane requests made by compute_ctl by status",
        );
        for ((rpc, status), count) in &counters.cplane_requests {
            let _ = writeln!(
                out,
                "compute_ctl_cplane_requests_total{{http_status=\"{}\",rpc=\"{}\"}} {count}",
                escape(status),
                escape(rpc)
            );
        }
    }
    startup_timings(&mut out, &inner.metrics);
    out
}

/// Counts the control-plane requests a stage made (`compute-spec`'s spec fetches): from its
/// `spec_load` section, or from its error when it failed.
pub fn count_requests(
    counters: &mut crate::state::Counters,
    result: &Result<ComputeDocument, compute_spec::error::StageError>,
) {
    let requests = match result {
        Ok(document) => document
            .spec_load
            .as_ref()
            .map(|section| section.requests.as_slice())
            .unwrap_or_default(),
        Err(error) => error.requests.as_slice(),
    };
    for request in requests {
        *counters
            .cplane_requests
            .entry((request.rpc.clone(), request.http_status.clone()))
            .or_default() += 1;
    }
}

/// The start-up timings of `/metrics.json` in Prometheus's units: one gauge family in seconds
/// with the phase as a label (`compute_ctl_startup_duration_seconds{phase="basebackup"}`), and
/// the byte counts as gauges of their own.
fn startup_timings(out: &mut String, metrics: &StartupMetrics) {
    let Ok(serde_json::Value::Object(timings)) = serde_json::to_value(metrics) else {
        return;
    };
    let mut durations = Vec::new();
    for (name, value) in &timings {
        let value = value.as_u64().unwrap_or(0);
        if let Some(phase) = name.strip_suffix("_ms") {
            durations.push((phase, value as f64 / 1e3));
        } else if let Some(phase) = name.strip_suffix("_micros") {
            durations.push((phase, value as f64 / 1e6));
        } else {
            single(
                out,
                (&format!("compute_ctl_startup_{name}"), "gauge"),
                "start-up count or size (see /metrics.json)",
                value,
            );
        }
    }
    let name = "compute_ctl_startup_duration_seconds";
    family(
        out,
        name,
        "gauge",
        "start-up phase durations of the last start (see /metrics.json)",
    );
    for (phase, seconds) in durations {
        let _ = writeln!(out, "{name}{{phase=\"{}\"}} {seconds}", escape(phase));
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One series without labels, with its `# HELP` and `# TYPE` lines.
pub(crate) fn single(out: &mut String, (name, kind): (&str, &str), help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A Prometheus label value, escaped.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ComputeStatus, Shared};

    #[test]
    fn exposition_names_the_current_status() {
        let shared = Shared::new();
        shared.transition(ComputeStatus::Init).unwrap();
        shared.update(|inner| {
            inner.counters.downtime_total_ms = 1500;
            inner.counters.audit_log_dir_size = 4321;
        });
        let text = render(&shared.lock());
        assert!(text.contains("compute_ctl_up{build_tag=\"latest\",status=\"init\"} 1"));
        assert_eq!(text.matches("compute_ctl_up{").count(), 1, "{text}");
        assert!(text.contains("# HELP compute_ctl_up Whether compute_ctl is running\n"));
        assert!(text.contains("pg_cctl_pagestream_request_errors_total 0"));
        assert!(text.contains("compute_pg_downtime_ms_total 1500"));
        assert!(
            text.contains("\ncompute_audit_log_dir_size 4321\n"),
            "{text}"
        );
        assert!(text.contains("compute_ctl_startup_duration_seconds{phase=\"total_startup\"} 0\n"));
        assert!(text.contains("# TYPE compute_ctl_up gauge"));
    }

    #[test]
    fn timings_are_read_whatever_method_and_source_a_newer_stage_wrote() {
        let document: ComputeDocument = serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "spec": null,
            "pgdata": "/data",
            "pgbin": "/usr/bin/postgres",
            "connstr": "postgresql://cloud_admin@localhost/postgres",
            "instance": {"port": 5432, "socket_dir": "/data"},
            "sync_safekeepers": {"lsn": "0/0", "method": "safekeepers-grpc",
                                 "sync_sk_check_ms": 3, "sync_safekeepers_ms": 4},
            "basebackup": {"source": "s3-snapshot", "pageserver_connect_micros": 5,
                           "basebackup_ms": 6, "basebackup_bytes": 7, "attempts": 2},
        }))
        .unwrap();
        let mut metrics = StartupMetrics::default();
        absorb_sections(&mut metrics, &document);
        assert_eq!(
            (
                metrics.sync_sk_check_ms,
                metrics.sync_safekeepers_ms,
                metrics.pageserver_connect_micros,
                metrics.basebackup_ms,
                metrics.basebackup_bytes,
            ),
            (3, 4, 5, 6, 7)
        );
    }
}
