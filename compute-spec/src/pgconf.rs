//! Rendering `postgresql.conf` from a spec, in Neon's order and quoting.
//!
//! Order: the spec's `postgresql_conf` text; the Neon storage settings; the ids; the locale
//! settings; `neon.compute_mode` (and `hot_standby`, `recovery_target_lsn`); the privileged
//! role name; the managed settings block; `log_destination` for `logs_export_host`; the
//! audit settings of `audit_log_level` ([`audit`]); the settings this project owns for the local
//! instance (port, socket directory, extra lines such as `primary_conninfo`); and last the
//! `include_if_exists = 'compute_ctl_temp_override.conf'` line.
//!
//! Rendering refuses, with an error naming the spec field, anything that could add a line
//! Postgres would apply: a setting name that is not GUC-shaped, a value that does not fit
//! its vartype, a control character in any value, and `postgresql_conf` lines that are not
//! plain settings (see [`crate::guc`]). Validation refuses the same things earlier; this is
//! the second line of defence for documents edited between the stages.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use crate::document::ComputeDocument;
use crate::guc;
use crate::quote::quote_conf_value;
use crate::spec::{ComputeMode, ComputeSpec, GenericOption};

pub mod audit;
pub mod tls;

/// A value that cannot be written to `postgresql.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError {
    /// JSON path of the spec field (or the rendering parameter) it came from.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot write postgresql.conf: {}: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfError {}

fn conf_error(field: impl Into<String>, message: String) -> ConfError {
    ConfError {
        field: field.into(),
        message,
    }
}

/// Checks one `cluster.settings` entry: its name, and its value for its vartype.
pub fn check_setting(option: &GenericOption, index: usize) -> Result<(), ConfError> {
    let field = |part: &str| format!("cluster.settings[{index}].{part}");
    guc::check_name(&option.name).map_err(|message| conf_error(field("name"), message))?;
    if let Some(value) = &option.value {
        let part = if option.vartype.is_known() {
            "value"
        } else {
            "vartype"
        };
        guc::check_value(value, &option.vartype)
            .map_err(|message| conf_error(field(part), message))?;
    }
    Ok(())
}

/// Checks `cluster.postgresql_conf` line by line (see [`guc::check_conf_line`]).
pub fn check_postgresql_conf(text: &str) -> Result<(), ConfError> {
    for (number, line) in text.split('\n').enumerate() {
        guc::check_conf_line(line, &[MANAGED_BEGIN, MANAGED_END]).map_err(|message| {
            conf_error(
                "cluster.postgresql_conf",
                format!("line {}: {message}", number + 1),
            )
        })?;
    }
    Ok(())
}

/// A quoted value, refused when it holds a control character.
fn quoted(field: &str, value: &str) -> Result<String, ConfError> {
    guc::check_text(value).map_err(|message| conf_error(field, message))?;
    Ok(quote_conf_value(value))
}

/// The first and last lines of the block `pg-reconcile` rewrites on reconfiguration.
pub const MANAGED_BEGIN: &str = "# Managed by compute_ctl: begin";
/// See [`MANAGED_BEGIN`].
pub const MANAGED_END: &str = "# Managed by compute_ctl: end";
/// The file included last, for temporary overrides.
pub const TEMP_OVERRIDE_FILE: &str = "compute_ctl_temp_override.conf";

/// What the rendering needs besides the spec.
#[derive(Clone, Debug)]
pub struct ConfParams {
    /// The port the instance listens on.
    pub port: u16,
    /// The Unix socket directory.
    pub socket_dir: PathBuf,
    /// The privileged role name.
    pub privileged_role_name: String,
    /// The internal HTTP port, written as `neon.extension_server_port` when known.
    pub extension_server_port: Option<u16>,
    /// Use `mmap` dynamic shared memory (when overcommit is disabled).
    pub dynamic_shared_memory_mmap: bool,
    /// Extra `name = value` lines (values already quoted), after the managed block.
    pub extra_lines: Vec<(String, String)>,
    /// The installation has Neon's `neon` library: an audited spec without
    /// `shared_preload_libraries` preloads it with the audit libraries (see [`audit`]).
    pub neon_library: bool,
}

/// One settings line, `name = value` (see [`guc::render_value`]), for entry `index` of
/// `cluster.settings`; `None` for a null value; an error for a bad name or value.
pub fn setting_line(option: &GenericOption, index: usize) -> Result<Option<String>, ConfError> {
    check_setting(option, index)?;
    let Some(value) = option.value.as_deref() else {
        return Ok(None);
    };
    let rendered = guc::render_value(value, &option.vartype);
    Ok(Some(format!("{} = {}", option.name, rendered)))
}

/// The managed block: begin marker, one line per setting, end marker.
pub fn managed_block(settings: &[GenericOption]) -> Result<String, ConfError> {
    let mut block = format!("{MANAGED_BEGIN}\n");
    for (index, option) in settings.iter().enumerate() {
        if let Some(line) = setting_line(option, index)? {
            block.push_str(&line);
            block.push('\n');
        }
    }
    block.push_str(MANAGED_END);
    block.push('\n');
    Ok(block)
}

/// The setting that keeps logical-replication subscribers from starting while
/// `drop_subscriptions_before_start` has not yet been carried out for the timeline.
pub const SUBSCRIBERS_SETTING: &str = "neon.disable_logical_replication_subscribers";

/// Renders the whole file as a start renders it before the catalog apply (subscribers
/// disabled when the spec says `drop_subscriptions_before_start`), or says which field holds
/// what cannot be written.
pub fn render(spec: &ComputeSpec, params: &ConfParams) -> Result<String, ConfError> {
    render_with(spec, params, false)
}

/// Renders the whole file; `subscriptions_dropped` says the drop of
/// `drop_subscriptions_before_start` is recorded for this timeline, so the subscribers run
/// again (`neon.disable_logical_replication_subscribers=false`): the file a start leaves
/// once its catalog apply is done, and the one every reconfiguration writes afterwards.
pub fn render_with(
    spec: &ComputeSpec,
    params: &ConfParams,
    subscriptions_dropped: bool,
) -> Result<String, ConfError> {
    let mut conf = String::new();
    if let Some(text) = &spec.cluster.postgresql_conf {
        check_postgresql_conf(text)?;
        conf.push_str(text);
        if !text.ends_with('\n') {
            conf.push('\n');
        }
    }
    storage_settings(spec, &mut conf)?;
    let ids = [
        (
            "neon.tenant_id",
            "tenant_id",
            spec.tenant_id.map(|id| id.to_string()),
        ),
        (
            "neon.timeline_id",
            "timeline_id",
            spec.timeline_id.map(|id| id.to_string()),
        ),
        ("neon.project_id", "project_id", spec.project_id.clone()),
        ("neon.branch_id", "branch_id", spec.branch_id.clone()),
        ("neon.endpoint_id", "endpoint_id", spec.endpoint_id.clone()),
    ];
    for (name, field, value) in ids {
        if let Some(value) = value {
            line(&mut conf, name, &quoted(field, &value)?);
        }
    }
    for name in ["lc_messages", "lc_monetary", "lc_time", "lc_numeric"] {
        line(&mut conf, name, "'C.UTF-8'");
    }
    line(&mut conf, "neon.compute_mode", spec.mode.as_setting());
    match spec.mode {
        ComputeMode::Primary => {}
        ComputeMode::Static(lsn) => {
            line(&mut conf, "hot_standby", "on");
            line(
                &mut conf,
                "recovery_target_lsn",
                &quote_conf_value(&lsn.to_string()),
            );
        }
        ComputeMode::Replica => line(&mut conf, "hot_standby", "on"),
    }
    if params.dynamic_shared_memory_mmap {
        line(&mut conf, "dynamic_shared_memory_type", "mmap");
    }
    line(
        &mut conf,
        "neon.privileged_role_name",
        &quoted("privileged_role_name", &params.privileged_role_name)?,
    );
    conf.push_str(&managed_block(
        spec.cluster.settings.as_deref().unwrap_or(&[]),
    )?);
    if let Some(port) = params.extension_server_port {
        line(&mut conf, "neon.extension_server_port", &port.to_string());
    }
    let disabled = spec.drop_subscriptions_before_start && !subscriptions_dropped;
    line(&mut conf, SUBSCRIBERS_SETTING, subscribers_value(disabled));
    if spec.logs_export_host.is_some() {
        line(&mut conf, "log_destination", "'stderr,syslog'");
    }
    conf.push_str(&audit::block(spec, params.neon_library)?);
    conf.push_str("# compute-tools: the local instance\n");
    line(&mut conf, "port", &params.port.to_string());
    let socket_dir = params.socket_dir.to_string_lossy();
    line(
        &mut conf,
        "unix_socket_directories",
        &quoted("instance.socket_dir", &socket_dir)?,
    );
    for (name, value) in &params.extra_lines {
        // Extra lines come from the stages, values already quoted: each must be one line
        // with one setting.
        guc::check_conf_line(&format!("{name} = {value}"), &[MANAGED_BEGIN, MANAGED_END])
            .map_err(|message| conf_error(format!("the {name} line"), message))?;
        line(&mut conf, name, value);
    }
    let _ = writeln!(conf, "include_if_exists = '{TEMP_OVERRIDE_FILE}'");
    Ok(conf)
}

fn storage_settings(spec: &ComputeSpec, conf: &mut String) -> Result<(), ConfError> {
    let connstrings = spec.pageserver_connstrings();
    let safekeepers = spec.safekeepers();
    let shard_map = spec.pageserver_connection_info.as_ref();
    if connstrings.is_none() && shard_map.is_none() && safekeepers.is_empty() {
        return Ok(());
    }
    conf.push_str("# Neon storage settings\n");
    // Whenever the spec sets a stripe size (as upstream), before the connection string; also
    // for a gRPC-only shard map, which has no connection string.
    if connstrings.is_some() || shard_map.is_some() {
        let stripe_size = shard_map
            .and_then(|info| info.stripe_size)
            .or(spec.shard_stripe_size);
        if let Some(stripe_size) = stripe_size {
            line(conf, "neon.stripe_size", &stripe_size.to_string());
        }
    }
    if let Some(connstrings) = connstrings {
        let joined = connstrings.join(",");
        line(
            conf,
            "neon.pageserver_connstring",
            &quoted("pageserver_connection_info", &joined)?,
        );
    }
    if !safekeepers.is_empty() {
        let mut value = String::new();
        if let Some(generation) = spec.safekeepers_generation {
            let _ = write!(value, "g#{generation}:");
        }
        value.push_str(&safekeepers.join(","));
        line(
            conf,
            "neon.safekeepers",
            &quoted("safekeeper_connstrings", &value)?,
        );
    }
    Ok(())
}

fn line(conf: &mut String, name: &str, value: &str) {
    let _ = writeln!(conf, "{name}={value}");
}

fn subscribers_value(disabled: bool) -> &'static str {
    if disabled {
        "true"
    } else {
        "false"
    }
}

/// The line [`render_with`] writes for [`SUBSCRIBERS_SETTING`] (`disabled`: `true`).
pub fn subscribers_line(disabled: bool) -> String {
    format!("{SUBSCRIBERS_SETTING}={}", subscribers_value(disabled))
}

/// The rendering parameters of a start of `spec` in `document`: [`params_for`], plus the
/// `primary_conninfo` line of a standby cloned from a vanilla primary, and the TLS lines
/// ([`tls::lines`]) when [`tls::wanted`]. The start
/// (`pg-basebackup-fetch`) and every reconfiguration render with these, so a reconfigured
/// file is byte for byte the one a fresh start writes.
pub fn params_for_start(document: &ComputeDocument, spec: &ComputeSpec) -> ConfParams {
    let mut params = params_for(document);
    if spec.mode != ComputeMode::Primary {
        if let Some(connstr) = spec
            .upstream_connstring
            .as_deref()
            .filter(|connstr| !connstr.trim().is_empty())
        {
            params
                .extra_lines
                .push(("primary_conninfo".into(), quote_conf_value(connstr)));
        }
    }
    if tls::wanted(document, spec).is_some() {
        params.extra_lines.extend(tls::lines());
    }
    params
}

/// The settings of a `postgresql.conf` text, in file order: `(name, value)` with the name
/// lower-cased (as Postgres matches names) and the value as written (quoted or bare).
/// Comments, blank lines and `include` directives are skipped; a line that is not a plain
/// setting is skipped too (Postgres reports those itself, in `pg_file_settings`).
pub fn entries(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(entry).collect()
}

fn entry(line: &str) -> Option<(String, String)> {
    let text = line.trim_matches([' ', '\t', '\r']);
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let name = text[..name_end].to_ascii_lowercase();
    if name.is_empty() || name.starts_with("include") {
        return None;
    }
    let mut rest = text[name_end..].trim_start_matches([' ', '\t']);
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start_matches([' ', '\t']);
    }
    let len = if rest.starts_with('\'') {
        crate::guc::quoted_len(rest)?
    } else {
        rest.find([' ', '\t', '#']).unwrap_or(rest.len())
    };
    Some((name, rest[..len].to_string()))
}

/// A value as written in the file (see [`entries`]) → the value Postgres gets: quotes
/// removed, `''` and backslash escapes undone.
pub fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
    else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// The rendering parameters a document implies: its port, socket directory, privileged role,
/// and from its host facts `mmap` shared memory when overcommit is strict (as upstream) and
/// whether the `neon` library is there.
pub fn params_for(document: &ComputeDocument) -> ConfParams {
    let host = document.instance.host;
    ConfParams {
        port: document.instance.port,
        socket_dir: document.instance.socket_dir.clone(),
        privileged_role_name: document.privileged_role_name.clone(),
        extension_server_port: document.instance.extension_server_port,
        dynamic_shared_memory_mmap: host.overcommit_strict,
        extra_lines: Vec::new(),
        neon_library: host.neon_library,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_spec() -> ComputeSpec {
        let text = include_str!("../../../shared/fixtures/neon/compute_api-cluster_spec.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn settings_render_as_upstream() {
        let spec = fixture_spec();
        let block = managed_block(spec.cluster.settings.as_deref().unwrap()).unwrap();
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 27);
        assert_eq!(lines[0], MANAGED_BEGIN);
        assert_eq!(lines[1], "fsync = off");
        assert_eq!(
            lines[6],
            "neon.safekeepers = '127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501'"
        );
        assert_eq!(lines[10], "port = 55432");
        assert_eq!(
            lines[25],
            "test.escaping = 'here''s a backslash \\\\ and a quote '' and a double-quote \" hooray'"
        );
        assert_eq!(lines[26], MANAGED_END);
    }

    #[test]
    fn full_file_order() {
        let spec = fixture_spec();
        let params = ConfParams {
            port: 55432,
            socket_dir: PathBuf::from("/run/pg"),
            privileged_role_name: "neon_superuser".to_string(),
            extension_server_port: Some(3081),
            dynamic_shared_memory_mmap: false,
            extra_lines: vec![("primary_conninfo".to_string(), "'host=x'".to_string())],
            neon_library: false,
        };
        let conf = render(&spec, &params).unwrap();
        let position = |needle: &str| {
            conf.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from:\n{conf}"))
        };
        let order = [
            "# Neon storage settings",
            "neon.pageserver_connstring='host=127.0.0.1 port=6400'",
            "neon.safekeepers='127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501'",
            "lc_messages='C.UTF-8'",
            "neon.compute_mode=primary",
            "neon.privileged_role_name='neon_superuser'",
            MANAGED_BEGIN,
            MANAGED_END,
            "neon.extension_server_port=3081",
            "port=55432",
            "unix_socket_directories='/run/pg'",
            "primary_conninfo='host=x'",
            "include_if_exists = 'compute_ctl_temp_override.conf'",
        ];
        for pair in order.windows(2) {
            assert!(
                position(pair[0]) < position(pair[1]),
                "{pair:?} out of order"
            );
        }
        assert!(conf.ends_with("include_if_exists = 'compute_ctl_temp_override.conf'\n"));
    }

    #[test]
    fn static_mode_adds_recovery_target() {
        let mut spec = fixture_spec();
        spec.mode = ComputeMode::Static("0/16B5A50".parse().unwrap());
        let params = ConfParams {
            port: 1,
            socket_dir: PathBuf::from("/s"),
            privileged_role_name: "p".to_string(),
            extension_server_port: None,
            dynamic_shared_memory_mmap: true,
            extra_lines: Vec::new(),
            neon_library: false,
        };
        let conf = render(&spec, &params).unwrap();
        assert!(conf.contains(
            "neon.compute_mode=static\nhot_standby=on\nrecovery_target_lsn='0/16B5A50'\n"
        ));
        assert!(conf.contains("dynamic_shared_memory_type=mmap\n"));
    }

    #[test]
    fn entries_and_unquote() {
        let text = "# c\nwork_mem = '4MB'\nStatement_Timeout=12345 # x\n\
                    include_if_exists = 'x.conf'\nbad line\nq = 'a''b\\\\c'\n";
        let found = entries(text);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["work_mem", "statement_timeout", "bad", "q"]);
        assert_eq!(found[1].1, "12345");
        assert_eq!(unquote(&found[0].1), "4MB");
        assert_eq!(unquote(&found[3].1), "a'b\\c");
        assert_eq!(unquote("on"), "on");
    }

    #[test]
    fn subscribers_follow_the_drop() {
        let mut spec = fixture_spec();
        let params = ConfParams {
            port: 1,
            socket_dir: PathBuf::from("/s"),
            privileged_role_name: "p".to_string(),
            extension_server_port: None,
            dynamic_shared_memory_mmap: false,
            extra_lines: Vec::new(),
            neon_library: false,
        };
        let enabled = format!("\n{}\n", subscribers_line(false));
        assert!(render(&spec, &params).unwrap().contains(&enabled));
        spec.drop_subscriptions_before_start = true;
        let before = render(&spec, &params).unwrap();
        assert!(before.contains(&format!("\n{}\n", subscribers_line(true))));
        let after = render_with(&spec, &params, true).unwrap();
        assert_eq!(
            before.replace(&subscribers_line(true), &subscribers_line(false)),
            after
        );
    }
}
