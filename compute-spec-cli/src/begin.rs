//! Starting a compute document from flags and a loaded spec: what `compute-spec` does after
//! loading, and what `compute-ctl` reuses when a spec arrives by `/configure`.

use std::path::{Path, PathBuf};

use compute_spec::document::{
    default_socket_dir, ComputeDocument, LocalInstance, DOCUMENT_VERSION,
};
use compute_spec::error::{ErrorKind, StageError};
use compute_spec::parse::LoadedSpec;
use compute_spec::reserved::{Reserved, DEFAULT_ADMIN_ROLE};

use compute_spec::section::SpecLoadSection;

/// Flags that shape the document, already parsed.
#[derive(Clone, Debug)]
pub struct DocumentParams {
    /// `-D`: the data directory.
    pub pgdata: PathBuf,
    /// `-b`: the `postgres` binary (a path or a bare name looked up in PATH).
    pub pgbin: PathBuf,
    /// `-C`: the admin connection string.
    pub connstr: String,
    /// `-i`: the compute id.
    pub compute_id: Option<String>,
    /// `--privileged-role-name`.
    pub privileged_role_name: String,
    /// `--socket-dir`: overrides the chosen Unix socket directory.
    pub socket_dir: Option<PathBuf>,
}

/// Validates the spec (when there is one) and builds the document.
pub fn start_document(
    stage: &str,
    params: &DocumentParams,
    loaded: LoadedSpec,
    source: &str,
    spec_load_ms: u64,
) -> Result<ComputeDocument, StageError> {
    if let Some(spec) = &loaded.spec {
        // The admin role is the user of -C (as stage_kit::local::admin_user reads it from
        // the document); a -C that does not parse is refused below.
        let admin = params
            .connstr
            .parse::<postgres::Config>()
            .ok()
            .and_then(|config| config.get_user().map(str::to_string))
            .unwrap_or_else(|| DEFAULT_ADMIN_ROLE.to_string());
        let reserved = Reserved {
            admin: &admin,
            privileged: &params.privileged_role_name,
        };
        spec.validate_for(&reserved).map_err(|errors| {
            StageError::new(
                stage,
                ErrorKind::InvalidSpec,
                format!("invalid spec: {errors}"),
            )
        })?;
    }
    validate_privileged_role_name(stage, &params.privileged_role_name)?;
    params
        .connstr
        .parse::<postgres::Config>()
        .map_err(|error| {
            StageError::new(
                stage,
                ErrorKind::Usage,
                format!(
                    "-C/--connstr {:?} is not a libpq URL: {error}",
                    params.connstr
                ),
            )
        })?;
    let pgdata = absolute(stage, &params.pgdata)?;
    let pgbin = resolve_pgbin(stage, &params.pgbin)?;
    let port = effective_port(loaded.spec.as_ref(), &params.connstr);
    let socket_dir = match &params.socket_dir {
        Some(dir) => absolute(stage, dir)?,
        None => default_socket_dir(&pgdata, port),
    };
    let host = stage_kit::host::probe(&pgbin);
    Ok(ComputeDocument {
        document_version: DOCUMENT_VERSION,
        spec: loaded.spec,
        compute_ctl_config: loaded.compute_ctl_config,
        pgdata,
        pgbin,
        connstr: params.connstr.clone(),
        compute_id: params.compute_id.clone(),
        privileged_role_name: params.privileged_role_name.clone(),
        instance: LocalInstance {
            port,
            socket_dir,
            extension_server_port: None,
            host,
            extra: Default::default(),
        },
        spec_load: Some(SpecLoadSection {
            source: source.into(),
            spec_load_ms,
            control_plane_attempts: loaded.control_plane_attempts,
            requests: loaded.requests.clone(),
            spans: Vec::new(),
            extra: Default::default(),
        }),
        sync_safekeepers: None,
        basebackup: None,
        extensions: None,
        reconcile: None,
        extra: Default::default(),
    })
}

/// The privileged role name must match `^[a-z_]+$` (as upstream, which pastes it into SQL).
pub fn validate_privileged_role_name(stage: &str, name: &str) -> Result<(), StageError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Ok(());
    }
    Err(StageError::new(
        stage,
        ErrorKind::Usage,
        format!("--privileged-role-name {name:?} must match ^[a-z_]+$"),
    ))
}

fn absolute(stage: &str, path: &Path) -> Result<PathBuf, StageError> {
    std::path::absolute(path).map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::Usage,
            format!("cannot make {} absolute: {error}", path.display()),
        )
    })
}

/// Finds the `postgres` binary: the given path, else a bare name in `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin/postgres` (Debian keeps it off `PATH`).
pub fn resolve_pgbin(stage: &str, pgbin: &Path) -> Result<PathBuf, StageError> {
    let is_bare_name = pgbin.components().count() == 1;
    if !is_bare_name {
        if pgbin.is_file() {
            return absolute(stage, pgbin);
        }
        return Err(StageError::new(
            stage,
            ErrorKind::Usage,
            format!(
                "-b/--pgbin {} does not exist: point it at the postgres binary",
                pgbin.display()
            ),
        ));
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(pgbin))
            .find(|candidate| candidate.is_file())
    });
    if let Some(found) = in_path.or_else(|| newest_debian_postgres(pgbin)) {
        return Ok(found);
    }
    Err(StageError::new(
        stage,
        ErrorKind::Usage,
        format!(
            "no {} binary in PATH or /usr/lib/postgresql/*/bin: install PostgreSQL or pass \
             -b/--pgbin (or set POSTGRES_PATH)",
            pgbin.display()
        ),
    ))
}

fn newest_debian_postgres(name: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let candidate = entry.path().join("bin").join(name);
            candidate.is_file().then_some((version, candidate))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

/// The effective port: the spec's `port` setting, else the port in the connection string,
/// else 5432.
pub fn effective_port(spec: Option<&compute_spec::spec::ComputeSpec>, connstr: &str) -> u16 {
    spec.and_then(|spec| spec.setting("port")?.trim().parse().ok())
        .or_else(|| connstr_port(connstr))
        .unwrap_or(5432)
}

fn connstr_port(connstr: &str) -> Option<u16> {
    let config: postgres::Config = connstr.parse().ok()?;
    config.get_ports().first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_role_name_rule() {
        assert!(validate_privileged_role_name("t", "my_superuser").is_ok());
        for bad in ["", "Neon", "a$'b", "x y", "röle"] {
            assert!(validate_privileged_role_name("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_precedence() {
        let text = include_str!("../../../shared/fixtures/neon/compute_api-cluster_spec.json");
        let spec: compute_spec::spec::ComputeSpec = serde_json::from_str(text).unwrap();
        assert_eq!(
            effective_port(Some(&spec), "postgresql://a@localhost:1234/db"),
            55432
        );
        assert_eq!(
            effective_port(None, "postgresql://a@localhost:1234/db"),
            1234
        );
        assert_eq!(effective_port(None, "postgresql://a@localhost/db"), 5432);
    }
}
