//! The `postgresql.conf` lines of `audit_log_level` (upstream's §11.1): pgaudit's settings
//! and `shared_preload_libraries` with `pgaudit` (and `pgauditlogtofile` at the compliance
//! levels) added, rendered after the spec's settings so they win, between [`AUDIT_BEGIN`] and
//! [`AUDIT_END`].
//!
//! | level | lines |
//! |---|---|
//! | `Disabled` | none |
//! | `Log`, `Base` | `pgaudit.log='ddl,role'`, `pgaudit.log_catalog=off`, the libraries + `pgaudit` |
//! | `Hipaa`, `Extended` | `pgaudit.log_parameter=off`, `pgaudit.log='all, -misc'`, `pgaudit.log_catalog=off`, `pgaudit.log_rotation_age=5`, the libraries + `pgaudit`, `pgauditlogtofile` |
//! | `Full` | as `Extended`, with `pgaudit.log_parameter=on` and `pgaudit.log='all'` |
//!
//! The libraries: the spec's effective `shared_preload_libraries` (the last of
//! `cluster.settings`, else the last line of `cluster.postgresql_conf`), each audit library
//! appended when its name is not a substring of the value (upstream's rule: a value naming
//! only `pgauditlogtofile` gets no `pgaudit`). Without a spec value upstream writes
//! `neon,pgaudit…`; here `neon` is named only when the installation has the library
//! ([`super::ConfParams::neon_library`]), because Postgres refuses to start with a preload
//! library it cannot find.

use crate::spec::{AuditLogLevel, ComputeSpec};

use super::{conf_error, entries, quoted, unquote, ConfError};

/// The comment line before the audit settings.
pub const AUDIT_BEGIN: &str = "# compute_ctl audit settings: begin";
/// The comment line after the audit settings.
pub const AUDIT_END: &str = "# compute_ctl audit settings: end";

const PRELOAD: &str = "shared_preload_libraries";

/// The audit libraries a level preloads, in order.
pub fn libraries(level: AuditLogLevel) -> &'static [&'static str] {
    match level {
        AuditLogLevel::Disabled => &[],
        AuditLogLevel::Log | AuditLogLevel::Base => &["pgaudit"],
        AuditLogLevel::Hipaa | AuditLogLevel::Extended | AuditLogLevel::Full => {
            &["pgaudit", "pgauditlogtofile"]
        }
    }
}

/// Whether the level exports the audit log through rsyslog (upstream's compliance levels).
pub fn is_compliance(level: AuditLogLevel) -> bool {
    matches!(
        level,
        AuditLogLevel::Hipaa | AuditLogLevel::Extended | AuditLogLevel::Full
    )
}

/// The spec's effective `shared_preload_libraries` (the value Postgres would use without the
/// audit lines) and the JSON path it came from.
pub fn spec_preload(spec: &ComputeSpec) -> Option<(String, String)> {
    let settings = spec.cluster.settings.as_deref().unwrap_or(&[]);
    let from_settings = settings
        .iter()
        .enumerate()
        .rev()
        .find_map(|(index, option)| {
            let value = option.value.as_ref()?;
            option
                .name
                .eq_ignore_ascii_case(PRELOAD)
                .then(|| (value.clone(), format!("cluster.settings[{index}].value")))
        });
    from_settings.or_else(|| {
        let text = spec.cluster.postgresql_conf.as_deref()?;
        entries(text)
            .into_iter()
            .rev()
            .find(|(name, _)| name == PRELOAD)
            .map(|(_, value)| (unquote(&value), "cluster.postgresql_conf".to_string()))
    })
}

/// `shared_preload_libraries` with the level's libraries added (see the module docs).
pub fn preload_value(spec_value: Option<&str>, level: AuditLogLevel, neon_library: bool) -> String {
    let mut value = match spec_value.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) => value.to_string(),
        None if neon_library => "neon".to_string(),
        None => String::new(),
    };
    for library in libraries(level) {
        if !value.contains(library) {
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(library);
        }
    }
    value
}

/// The block for `spec`'s level (empty for `Disabled`): markers and `name=value` lines.
pub fn block(spec: &ComputeSpec, neon_library: bool) -> Result<String, ConfError> {
    let level = spec.audit_log_level;
    let settings: &[(&str, &str)] = match level {
        AuditLogLevel::Disabled => return Ok(String::new()),
        AuditLogLevel::Log | AuditLogLevel::Base => &[
            ("pgaudit.log", "'ddl,role'"),
            ("pgaudit.log_catalog", "off"),
        ],
        AuditLogLevel::Hipaa | AuditLogLevel::Extended => &[
            ("pgaudit.log_parameter", "off"),
            ("pgaudit.log", "'all, -misc'"),
            ("pgaudit.log_catalog", "off"),
            ("pgaudit.log_rotation_age", "5"),
        ],
        AuditLogLevel::Full => &[
            ("pgaudit.log_parameter", "on"),
            ("pgaudit.log", "'all'"),
            ("pgaudit.log_catalog", "off"),
            ("pgaudit.log_rotation_age", "5"),
        ],
    };
    let (spec_value, field) = match spec_preload(spec) {
        Some((value, field)) => (Some(value), field),
        None => (None, "audit_log_level".to_string()),
    };
    let preload = preload_value(spec_value.as_deref(), level, neon_library);
    let preload = quoted(&field, &preload)
        .map_err(|error| conf_error(field.clone(), format!("{PRELOAD}: {}", error.message)))?;
    let mut text = format!("{AUDIT_BEGIN}\n");
    for (name, value) in settings {
        text.push_str(&format!("{name}={value}\n"));
    }
    text.push_str(&format!("{PRELOAD}={preload}\n{AUDIT_END}\n"));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgconf::{render, ConfParams, MANAGED_END};
    use std::path::PathBuf;

    fn spec(level: &str, settings: serde_json::Value, conf: Option<&str>) -> ComputeSpec {
        serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "audit_log_level": level,
            "cluster": {"roles": [], "databases": [], "settings": settings,
                        "postgresql_conf": conf},
        }))
        .unwrap()
    }

    fn preload(value: &str) -> serde_json::Value {
        serde_json::json!([
            {"name": "shared_preload_libraries", "value": value, "vartype": "string"}
        ])
    }

    fn params(neon_library: bool) -> ConfParams {
        ConfParams {
            port: 5432,
            socket_dir: PathBuf::from("/run/pg"),
            privileged_role_name: "neon_superuser".to_string(),
            extension_server_port: None,
            dynamic_shared_memory_mmap: false,
            extra_lines: Vec::new(),
            neon_library,
        }
    }

    #[test]
    fn blocks_per_level_are_exact() {
        let none = serde_json::json!([]);
        assert_eq!(
            block(&spec("Disabled", none.clone(), None), true),
            Ok(String::new())
        );
        for level in ["Log", "Base"] {
            assert_eq!(
                block(&spec(level, preload("neon,pg_stat_statements"), None), true).unwrap(),
                "# compute_ctl audit settings: begin\n\
                 pgaudit.log='ddl,role'\n\
                 pgaudit.log_catalog=off\n\
                 shared_preload_libraries='neon,pg_stat_statements,pgaudit'\n\
                 # compute_ctl audit settings: end\n"
            );
        }
        for level in ["Hipaa", "Extended"] {
            assert_eq!(
                block(&spec(level, none.clone(), None), true).unwrap(),
                "# compute_ctl audit settings: begin\n\
                 pgaudit.log_parameter=off\n\
                 pgaudit.log='all, -misc'\n\
                 pgaudit.log_catalog=off\n\
                 pgaudit.log_rotation_age=5\n\
                 shared_preload_libraries='neon,pgaudit,pgauditlogtofile'\n\
                 # compute_ctl audit settings: end\n"
            );
        }
        assert_eq!(
            block(&spec("Full", none, None), false).unwrap(),
            "# compute_ctl audit settings: begin\n\
             pgaudit.log_parameter=on\n\
             pgaudit.log='all'\n\
             pgaudit.log_catalog=off\n\
             pgaudit.log_rotation_age=5\n\
             shared_preload_libraries='pgaudit,pgauditlogtofile'\n\
             # compute_ctl audit settings: end\n"
        );
    }

    #[test]
    fn libraries_follow_the_substring_rule() {
        let hipaa = AuditLogLevel::Hipaa;
        assert_eq!(
            preload_value(Some("pgauditlogtofile"), hipaa, true),
            "pgauditlogtofile"
        );
        assert_eq!(
            preload_value(Some("pgaudit"), hipaa, true),
            "pgaudit,pgauditlogtofile"
        );
        assert_eq!(
            preload_value(Some("  "), AuditLogLevel::Log, false),
            "pgaudit"
        );
        assert_eq!(
            preload_value(None, AuditLogLevel::Log, true),
            "neon,pgaudit"
        );
        assert_eq!(preload_value(None, AuditLogLevel::Log, false), "pgaudit");
        assert_eq!(preload_value(Some("x"), AuditLogLevel::Disabled, true), "x");
    }

    /// The last `cluster.settings` value wins, then `postgresql_conf`'s last line, as in the
    /// rendered file.
    #[test]
    fn the_effective_spec_value_is_used() {
        let settings = serde_json::json!([
            {"name": "shared_preload_libraries", "value": "a", "vartype": "string"},
            {"name": "Shared_Preload_Libraries", "value": "b", "vartype": "string"},
        ]);
        let both = spec("Log", settings, Some("shared_preload_libraries = 'c'\n"));
        assert_eq!(
            spec_preload(&both),
            Some(("b".into(), "cluster.settings[1].value".into()))
        );
        let conf = "shared_preload_libraries = 'c'\nshared_preload_libraries = 'd''x'\n";
        let conf_only = spec("Log", serde_json::json!([]), Some(conf));
        assert_eq!(
            spec_preload(&conf_only),
            Some(("d'x".into(), "cluster.postgresql_conf".into()))
        );
        let text = block(&conf_only, true).unwrap();
        assert!(
            text.contains("shared_preload_libraries='d''x,pgaudit'\n"),
            "{text}"
        );
    }

    /// The block follows the managed block (so it wins), the file still has one setting a
    /// line, and the last `shared_preload_libraries` is the audit one.
    #[test]
    fn rendered_after_the_spec_settings_and_parses_back() {
        let hostile = "neon' , evil = 'x";
        let spec = spec("Hipaa", preload(hostile), None);
        let text = render(&spec, &params(false)).unwrap();
        let begin = text.find(AUDIT_BEGIN).unwrap();
        assert!(text.find(MANAGED_END).unwrap() < begin, "{text}");
        let found = entries(&text);
        assert!(found.iter().all(|(name, _)| name != "evil"), "{found:?}");
        let last = found
            .iter()
            .rev()
            .find(|(name, _)| name == PRELOAD)
            .unwrap();
        assert_eq!(
            unquote(&last.1),
            format!("{hostile},pgaudit,pgauditlogtofile")
        );
        let lines = text
            .lines()
            .filter(|line| line.starts_with("pgaudit."))
            .count();
        assert_eq!(lines, 4, "{text}");
    }

    #[test]
    fn a_control_character_in_the_libraries_is_refused_naming_the_field() {
        let mut bad = spec("Log", preload("neon"), None);
        if let Some(settings) = bad.cluster.settings.as_mut() {
            settings[0].value = Some("neon\npgaudit.log = none".into());
        }
        let error = block(&bad, true).unwrap_err();
        assert_eq!(error.field, "cluster.settings[0].value");
        assert!(error.message.contains("control character"), "{error}");
    }
}
