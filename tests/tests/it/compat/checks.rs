//! Custom checks on responses, the expected key sets, and the specs the rows send.

use super::*;

pub fn status_body(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    let start = body["start_time"].as_str().unwrap_or_default();
    if !start.ends_with('Z') || start.len() < 20 || start.as_bytes().get(10) != Some(&b'T') {
        return Err(format!("start_time {start:?} is not RFC 3339 ending in Z"));
    }
    if let Some(active) = body["last_active"].as_str() {
        if !active.ends_with("+00:00") {
            return Err(format!("last_active {active:?} does not end in +00:00"));
        }
    }
    for (key, expected) in [("tenant", TENANT), ("timeline", TIMELINE)] {
        if body[key] != expected {
            return Err(format!("{key} is {}", body[key]));
        }
    }
    Ok(())
}

pub fn one_compute_ctl_up(reply: &Reply) -> Result<(), String> {
    let text = reply.text();
    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("compute_ctl_up"))
        .collect();
    let help = "# HELP compute_ctl_up Whether compute_ctl is running";
    let kind = "# TYPE compute_ctl_up gauge";
    if !text.lines().any(|line| line == help) || !text.lines().any(|line| line == kind) {
        return Err("compute_ctl_up lacks its HELP or TYPE line".to_string());
    }
    match series.as_slice() {
        [_] => Ok(()),
        _ => Err(format!("compute_ctl_up series: {series:?}")),
    }
}

/// Upstream's unlabelled families (§14): always exported, with upstream's HELP and TYPE.
pub fn upstream_families(reply: &Reply) -> Result<(), String> {
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for (name, kind, help) in [
        ("compute_audit_log_dir_size", "gauge", "Size of audit log directory in bytes"),
        (
            "compute_pg_current_downtime_ms",
            "gauge",
            "Non-cumulative duration of Postgres downtime in ms; resets after successful check",
        ),
        (
            "compute_pg_downtime_ms_total",
            "counter",
            "Cumulative duration of Postgres downtime in ms",
        ),
        (
            "compute_ctl_lfc_prewarms_total",
            "counter",
            "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
        ),
        (
            "compute_ctl_lfc_prewarm_errors_total",
            "counter",
            "Total number of LFC prewarm errors",
        ),
        (
            "compute_ctl_lfc_offloads_total",
            "counter",
            "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
        ),
        (
            "compute_ctl_lfc_offload_errors_total",
            "counter",
            "Total number of LFC offload errors",
        ),
        (
            "pg_cctl_pagestream_request_errors_total",
            "counter",
            "Number of PageStream request errors reported by the postgres process",
        ),
        (
            "pg_cctl_configure_statement_timeout_errors_total",
            "counter",
            "Number of compute configuration errors due to Postgres statement timeouts.",
        ),
    ] {
        let help_line = format!("# HELP {name} {help}");
        let type_line = format!("# TYPE {name} {kind}");
        let sample = format!("{name} ");
        if !lines.contains(&help_line.as_str()) {
            problems.push(format!("no `{help_line}`"));
        }
        if !lines.contains(&type_line.as_str()) {
            problems.push(format!("no `{type_line}`"));
        }
        let samples = lines
            .iter()
            .filter(|line| line.starts_with(&sample))
            .count();
        if samples != 1 {
            problems.push(format!("{samples} samples of {name}"));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

pub fn request_id_is_uuid(reply: &Reply) -> Result<(), String> {
    let id = reply.header("x-request-id").unwrap_or_default();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    let hex = id.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
    match (groups.as_slice(), hex) {
        ([8, 4, 4, 4, 12], true) => Ok(()),
        _ => Err(format!("x-request-id {id:?} is not a UUID")),
    }
}

pub fn dbs_and_roles(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    let roles = body["roles"].as_array().ok_or("no roles array")?;
    let databases = body["databases"].as_array().ok_or("no databases array")?;
    let role_keys = ["name", "encrypted_password", "options"];
    let db_keys = ["name", "owner", "options", "restrict_conn", "invalid"];
    for (items, keys) in [(roles, &role_keys[..]), (databases, &db_keys[..])] {
        for item in items {
            let object = item.as_object().ok_or(format!("not an object: {item}"))?;
            let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
            names.sort_unstable();
            let mut wanted = keys.to_vec();
            wanted.sort_unstable();
            if names != wanted || !item["options"].is_null() {
                return Err(format!("entry {item} is not {keys:?} with options null"));
            }
        }
    }
    let owner = databases.iter().find(|db| db["name"] == "app");
    match owner {
        Some(db) if db["owner"] == "app_owner" && db["restrict_conn"] == false => Ok(()),
        _ => Err("database app owned by app_owner is missing".to_string()),
    }
}

pub fn prewarm_ran(reply: &Reply) -> Result<(), String> {
    let state = reply.json()?;
    match state["status"].as_str() {
        Some("prewarming" | "failed" | "cancelled" | "completed" | "skipped") => Ok(()),
        _ => Err(format!("prewarm state {state}")),
    }
}

pub fn offload_ran(reply: &Reply) -> Result<(), String> {
    let state = reply.json()?;
    match state["status"].as_str() {
        Some("offloading" | "failed" | "completed" | "skipped") => Ok(()),
        _ => Err(format!("offload state {state}")),
    }
}

// ---------------------------------------------------------------------------------------
// The table

pub const STATUS_KEYS: &[(&str, Ty)] = &[
    ("start_time", Ty::Str),
    ("tenant", Ty::StrOrNull),
    ("timeline", Ty::StrOrNull),
    ("status", Ty::Str),
    ("last_active", Ty::StrOrNull),
    ("error", Ty::StrOrNull),
];

pub const METRICS_KEYS: &[(&str, Ty)] = &[
    ("wait_for_spec_ms", Ty::Uint),
    ("sync_sk_check_ms", Ty::Uint),
    ("sync_safekeepers_ms", Ty::Uint),
    ("pageserver_connect_micros", Ty::Uint),
    ("basebackup_ms", Ty::Uint),
    ("basebackup_bytes", Ty::Uint),
    ("start_postgres_ms", Ty::Uint),
    ("config_ms", Ty::Uint),
    ("total_startup_ms", Ty::Uint),
    ("load_ext_ms", Ty::Uint),
    ("num_ext_downloaded", Ty::Uint),
    ("largest_ext_size", Ty::Uint),
    ("total_ext_download_size", Ty::Uint),
];

pub fn running_status() -> Vec<Check> {
    vec![
        Check::Keys(STATUS_KEYS),
        Check::Field("/status", json!("running")),
        Check::Field("/error", Value::Null),
        Check::Custom("start_time Z, tenant, timeline", status_body),
    ]
}

/// A spec upstream's `ParsedSpec` accepts too (Neon storage: pageserver, ids, safekeepers).
pub fn neon_spec(safekeepers: &[&str]) -> Value {
    json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "mode": "Primary",
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": "postgresql://no_user@pageserver.invalid:6400",
        "safekeeper_connstrings": safekeepers,
    })
}
