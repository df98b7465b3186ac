//! A reconfiguration's `postgresql.conf`: the whole file rendered from the new spec by the
//! start-up renderer (`compute_spec::pgconf::render_with` with
//! `compute_spec::pgconf::params_for_start`), written atomically (temporary file, fsync,
//! rename, fsync of the directory), reloaded, and read back setting by setting.
//!
//! **Rejected values**: when Postgres refuses a changed setting (an invalid value, an
//! unknown name), the previous file is written back and reloaded, and the stage fails
//! naming each refused setting with Postgres's message; nothing else of the new spec is
//! applied (the catalog work has not started yet). A valid value of a setting that needs a
//! restart is not a refusal: it is reported `pending_restart` and the old value stays in
//! effect until the next start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::pgconf::{self, entries, subscribers_line, unquote};
use compute_spec::section::{SettingChange, SettingOutcome};
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use postgres::Client;

use crate::settings::{self, SettingsError};
use crate::{apply, STAGE};

/// How long a reload may take to reach this session.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// What [`replace`] did.
#[derive(Debug, Default)]
pub struct Replaced {
    /// The file changed (or, dry, would change).
    pub changed: bool,
    /// Per changed setting, what the server made of it (empty when dry).
    pub settings: Vec<SettingChange>,
}

/// The whole `postgresql.conf` a start of `spec` renders; `subscriptions_dropped` as
/// `pgconf::render_with`.
pub fn render(
    document: &ComputeDocument,
    spec: &ComputeSpec,
    subscriptions_dropped: bool,
) -> Result<String, StageError> {
    let params = pgconf::params_for_start(document, spec);
    pgconf::render_with(spec, &params, subscriptions_dropped).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!("{error}; nothing was changed"),
        )
    })
}

fn io(error: SettingsError) -> StageError {
    StageError::new(STAGE, ErrorKind::Io, error.to_string())
}

/// Replaces `path` with `text`, reloads, and reports each changed setting; restores the
/// previous file (and fails) when Postgres refuses one. Dry: only says whether it differs.
pub fn replace(
    client: &mut Client,
    path: &Path,
    text: &str,
    dry_run: bool,
) -> Result<Replaced, StageError> {
    let previous = settings::read(path).map_err(io)?;
    if previous == text {
        return Ok(Replaced::default());
    }
    if dry_run {
        return Ok(Replaced {
            changed: true,
            settings: Vec::new(),
        });
    }
    let changes = diff(&previous, text);
    settings::write(path, text).map_err(io)?;
    tracing::info!(file = %path.display(), changed = changes.len(), "rewrote postgresql.conf from the spec");
    // An unknown setting name or a line Postgres cannot parse makes it ignore the whole file
    // on reload (and its load time does not move): `pg_file_settings`, which parses the file
    // anew, finds those before any reload.
    let errors = file_errors(client)?;
    let whole_file_refused = !whole_file_refusals(&errors).is_empty();
    let reports = if whole_file_refused {
        let mut reports = reports_of(client, &changes, &errors, &BTreeMap::new())?;
        if reports
            .iter()
            .all(|r| r.outcome != SettingOutcome::Rejected)
        {
            // The refusal is in a line this spec did not change (or another file): nothing
            // of the new file can load either, so it is refused all the same.
            let refusals = errors
                .iter()
                .filter(|(name, error)| name.is_empty() || *error == UNKNOWN_NAME);
            reports.extend(refusals.map(|(name, error)| SettingChange {
                name: name.clone(),
                value: None,
                live: None,
                outcome: SettingOutcome::Rejected,
                message: Some(format!(
                    "{error}: the server ignores its configuration files"
                )),
            }));
        }
        reports
    } else {
        reload_and_wait(client)?;
        let errors = file_errors(client)?;
        let live = live_values(client, &changes)?;
        reports_of(client, &changes, &errors, &live)?
    };
    let rejected: Vec<String> = reports
        .iter()
        .filter(|report| report.outcome == SettingOutcome::Rejected)
        .map(|report| {
            format!(
                "{} = {:?} ({})",
                report.name,
                report.value.as_deref().unwrap_or_default(),
                report.message.as_deref().unwrap_or("refused")
            )
        })
        .collect();
    if rejected.is_empty() {
        return Ok(Replaced {
            changed: true,
            settings: reports,
        });
    }
    settings::write(path, &previous).map_err(io)?;
    if !whole_file_refused {
        reload_and_wait(client)?;
    }
    Err(StageError::new(
        STAGE,
        ErrorKind::InvalidSpec,
        format!(
            "Postgres rejected the new {}: {}; the previous file was restored and \
             reloaded, and nothing else of the new spec was applied: fix the spec's \
             cluster.postgresql_conf or cluster.settings and configure again",
            path.display(),
            rejected.join("; ")
        ),
    ))
}

/// One changed setting: its name and its new value (as written).
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// Lower-case name.
    pub name: String,
    /// The new value as written, `None` when the line is gone.
    pub value: Option<String>,
}

/// The settings whose effective line differs between two files (the last line of a name
/// wins, as in Postgres), in name order.
pub fn diff(old: &str, new: &str) -> Vec<Change> {
    let last = |text: &str| -> BTreeMap<String, String> { entries(text).into_iter().collect() };
    let (old, new) = (last(old), last(new));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| Change {
            name: name.clone(),
            value: new.get(name).cloned(),
        })
        .collect()
}

const LOAD_TIME: &str = "SELECT pg_catalog.pg_conf_load_time()::pg_catalog.text";

/// `pg_reload_conf()`, then waits until this session has processed the reload (its
/// `pg_conf_load_time()` moves; the postmaster signals every backend after its own reload).
pub fn reload_and_wait(client: &mut Client) -> Result<(), StageError> {
    let failed = |error: postgres::Error| {
        StageError::new(
            STAGE,
            ErrorKind::Postgres,
            format!("reloading the configuration: {}", apply::message(&error)),
        )
    };
    let loaded = |client: &mut Client| -> Result<String, postgres::Error> {
        client.query_one(LOAD_TIME, &[])?.try_get(0)
    };
    let before = loaded(client).map_err(failed)?;
    client
        .batch_execute("SELECT pg_catalog.pg_reload_conf()")
        .map_err(failed)?;
    // A file with an unknown setting name or a line that is not a setting is ignored whole
    // by every reload (the load time does not move): nothing to wait for.
    let refused = whole_file_refusals(&file_errors(client)?);
    if !refused.is_empty() {
        tracing::warn!(
            errors = %refused.join("; "),
            "the server ignores its configuration files on reload until these are fixed"
        );
        return Ok(());
    }
    let deadline = Instant::now() + RELOAD_DEADLINE;
    while Instant::now() < deadline {
        if loaded(client).map_err(failed)? != before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused: Vec<String> = file_errors(client)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, error)| format!("{name}: {error}"))
        .collect();
    let why = if refused.is_empty() {
        "is the postmaster stuck?".to_string()
    } else {
        format!("its files have errors ({})", refused.join("; "))
    };
    Err(StageError::new(
        STAGE,
        ErrorKind::Postgres,
        format!(
            "the server did not reload its configuration within {} s: {why}",
            RELOAD_DEADLINE.as_secs()
        ),
    ))
}

const FILE_ERRORS: &str =
    "SELECT pg_catalog.lower(f.name), f.error FROM pg_catalog.pg_file_settings f \
     WHERE f.error IS NOT NULL";
const LIVE: &str = "SELECT pg_catalog.current_setting($1, true), \
     (SELECT s.pending_restart FROM pg_catalog.pg_settings s \
      WHERE s.name OPERATOR(pg_catalog.=) $1)";

/// The parameter a nameless "cannot be changed without restarting" row is about, lower-case.
fn restart_only_parameter(error: &str) -> Option<String> {
    let rest = error.strip_prefix("parameter \"")?;
    let (name, tail) = rest.split_once('"')?;
    tail.contains("cannot be changed without restarting the server")
        .then(|| name.to_ascii_lowercase())
}

/// `pg_file_settings`'s error for an unknown setting name.
const UNKNOWN_NAME: &str = "unrecognized configuration parameter";

fn read_failed(error: postgres::Error) -> StageError {
    StageError::new(
        STAGE,
        ErrorKind::Postgres,
        format!(
            "reading the settings back after the reload: {}",
            apply::message(&error)
        ),
    )
}

/// The errors that make Postgres ignore its configuration files whole on reload: an unknown
/// setting name, a line that is not a setting.
fn whole_file_refusals(errors: &BTreeMap<String, String>) -> Vec<String> {
    errors
        .iter()
        .filter(|(name, error)| name.is_empty() || *error == UNKNOWN_NAME)
        .map(|(name, error)| format!("{name}: {error}"))
        .collect()
}

/// The errors `pg_file_settings` reports for the configuration files now (it parses them
/// anew), by lower-case name (the empty name for a line that is not a setting).
fn file_errors(client: &mut Client) -> Result<BTreeMap<String, String>, StageError> {
    let mut errors = BTreeMap::new();
    for row in client.query(FILE_ERRORS, &[]).map_err(read_failed)? {
        let name: Option<String> = row.try_get(0).map_err(read_failed)?;
        let error: String = row.try_get(1).map_err(read_failed)?;
        // A restart-only setting whose line was removed is reported on a row without a name
        // (`parameter "x" cannot be changed without restarting the server`); Postgres applies
        // the rest of the file, so it is that setting's pending restart, not a refusal.
        let name = name.or_else(|| restart_only_parameter(&error));
        errors.insert(name.unwrap_or_default(), error);
    }
    Ok(errors)
}

/// Per changed name: the value in effect and whether it waits for a restart.
fn live_values(
    client: &mut Client,
    changes: &[Change],
) -> Result<BTreeMap<String, (Option<String>, bool)>, StageError> {
    let mut live = BTreeMap::new();
    for change in changes {
        let row = client
            .query_one(LIVE, &[&change.name])
            .map_err(read_failed)?;
        let value: Option<String> = row.try_get(0).map_err(read_failed)?;
        let pending: Option<bool> = row.try_get(1).map_err(read_failed)?;
        live.insert(change.name.clone(), (value, pending == Some(true)));
    }
    Ok(live)
}

/// What the server made of each change: pending a restart, else refused when the file has
/// an error for it, else applied.
fn reports_of(
    client: &mut Client,
    changes: &[Change],
    errors: &BTreeMap<String, String>,
    live: &BTreeMap<String, (Option<String>, bool)>,
) -> Result<Vec<SettingChange>, StageError> {
    let mut reports = Vec::new();
    for change in changes {
        let (current, pending) = live.get(&change.name).cloned().unwrap_or_default();
        let value = change.value.as_deref().map(unquote);
        let (outcome, message) = if pending {
            (SettingOutcome::PendingRestart, None)
        } else if let Some(error) = errors.get(&change.name) {
            let message = postgres_message(client, &change.name, value.as_deref(), error);
            (SettingOutcome::Rejected, Some(message))
        } else {
            (SettingOutcome::Applied, None)
        };
        let hide = |text: Option<String>| text.map(|text| redact_connection(&change.name, &text));
        reports.push(SettingChange {
            name: change.name.clone(),
            value: hide(value),
            live: hide(current),
            outcome,
            message: hide(message),
        });
    }
    // A line Postgres cannot parse has no name: it refuses the whole file.
    if let Some(error) = errors.get("") {
        reports.push(SettingChange {
            name: String::new(),
            value: None,
            live: None,
            outcome: SettingOutcome::Rejected,
            message: Some(error.clone()),
        });
    }
    Ok(reports)
}

/// `text` with the passwords of connection strings shown as `********`, for settings that
/// hold one (`primary_conninfo`, `*conninfo`, `*connstring*`): key/value `password=…` and
/// URL `user:…@` forms. Other settings are returned as they are.
pub fn redact_connection(name: &str, text: &str) -> String {
    if !(name.ends_with("conninfo") || name.contains("connstring")) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("password") {
        let (before, after) = rest.split_at(at + "password".len());
        out.push_str(before);
        let trimmed = after.trim_start();
        let Some(value) = trimmed.strip_prefix('=') else {
            rest = after;
            continue;
        };
        out.push_str(&after[..after.len() - trimmed.len()]);
        out.push('=');
        let value_start = value.len() - value.trim_start().len();
        out.push_str(&value[..value_start]);
        let value = &value[value_start..];
        let end = if value.starts_with('\'') {
            compute_spec::guc::quoted_len(value).unwrap_or(value.len())
        } else {
            value.find([' ', '&', '"']).unwrap_or(value.len())
        };
        out.push_str("********");
        rest = &value[end..];
    }
    out.push_str(rest);
    // URL form: scheme://user:password@host
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        redacted.push_str(head);
        let authority_end = tail.find(['/', ' ', '?', '"', ',']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at_sign), Some(colon)) if colon < at_sign => {
                redacted.push_str(&authority[..=colon]);
                redacted.push_str("********");
                redacted.push_str(&authority[at_sign..]);
            }
            _ => redacted.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    redacted.push_str(rest);
    redacted
}

/// Postgres's own message for a refused value: the error of `set_config` on it, in a
/// transaction that is rolled back; where a session may not set it (a `sighup` or
/// `postmaster` setting) the generic `pg_file_settings` error, pointing at the server log.
fn postgres_message(
    client: &mut Client,
    name: &str,
    value: Option<&str>,
    file_error: &str,
) -> String {
    let fallback = format!("{file_error}; the server log has Postgres's reason");
    let Some(value) = value else {
        return fallback;
    };
    let Ok(mut transaction) = client.transaction() else {
        return fallback;
    };
    let tried = transaction.query_one(
        "SELECT pg_catalog.set_config($1, $2, true)",
        &[&name, &value],
    );
    let _ = transaction.rollback();
    match tried {
        Err(error) => match error.code() {
            Some(code)
                if *code == postgres::error::SqlState::CANT_CHANGE_RUNTIME_PARAM
                    || *code == postgres::error::SqlState::INSUFFICIENT_PRIVILEGE =>
            {
                fallback
            }
            _ => apply::message(&error),
        },
        Ok(_) => fallback,
    }
}

/// After the drop of `drop_subscriptions_before_start` is recorded: turns
/// `neon.disable_logical_replication_subscribers=true` into `=false` (what
/// `pgconf::render_with` writes once the drop is done) and reloads; false when the file had
/// no such line.
pub fn enable_subscribers(client: &mut Client, path: &Path) -> Result<bool, StageError> {
    let text = settings::read(path).map_err(io)?;
    let (disabled, enabled) = (subscribers_line(true), subscribers_line(false));
    if !text.lines().any(|line| line == disabled) {
        return Ok(false);
    }
    let new_text: String = text
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_end_matches('\n') == disabled {
                format!("{enabled}\n")
            } else {
                line.to_string()
            }
        })
        .collect();
    settings::write(path, &new_text).map_err(io)?;
    reload_and_wait(client)?;
    tracing::info!("logical replication subscribers enabled again");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_passwords_are_hidden() {
        assert_eq!(
            redact_connection("primary_conninfo", "host=a password=s3cret user=u"),
            "host=a password=******** user=u"
        );
        assert_eq!(
            redact_connection("primary_conninfo", "host=a password = 'it''s' port=1"),
            "host=a password = ******** port=1"
        );
        assert_eq!(
            redact_connection(
                "neon.pageserver_connstring",
                "postgresql://u:pw@ps:6400/x,postgresql://v@ps2"
            ),
            "postgresql://u:********@ps:6400/x,postgresql://v@ps2"
        );
        assert_eq!(redact_connection("work_mem", "password=x"), "password=x");
    }

    #[test]
    fn diff_names_added_changed_and_removed_settings() {
        let old = "a = 1\nb = 'x'\nc = 3\nc = 4\n";
        let new = "a = 1\nb = 'y'\nd = on\nc=4\n";
        let changes = diff(old, new);
        let names: Vec<(&str, Option<&str>)> = changes
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect();
        assert_eq!(names, [("b", Some("'y'")), ("d", Some("on"))]);
        let removed = diff("a = 1\n", "");
        assert_eq!(
            removed,
            [Change {
                name: "a".into(),
                value: None
            }]
        );
    }
}
