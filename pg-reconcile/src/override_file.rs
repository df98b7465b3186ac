//! The temporary override (`compute_ctl_temp_override.conf`, included last by
//! `postgresql.conf`): `neon.max_cluster_size=-1` while the catalog work runs, so creating
//! roles and databases never fails on the cluster size limit; emptied and reloaded after it,
//! also when it failed (upstream forgets that reload, leaving `-1` live).

use std::path::{Path, PathBuf};

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::pgconf::TEMP_OVERRIDE_FILE;
use postgres::Client;

use crate::conf::reload_and_wait;
use crate::settings;
use crate::STAGE;

/// The override's content during the catalog work (no newline, as upstream).
pub const OVERRIDE: &str = "neon.max_cluster_size=-1";

/// The override file of the instance whose data directory is `pgdata`.
pub fn path(pgdata: &Path) -> PathBuf {
    pgdata.join(TEMP_OVERRIDE_FILE)
}

fn write(pgdata: &Path, text: &str) -> Result<(), StageError> {
    let conf = pgdata.join("postgresql.conf");
    let like = std::fs::metadata(&conf).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Io,
            format!("{}: {error}; is PGDATA the instance's?", conf.display()),
        )
    })?;
    settings::write_new(&path(pgdata), text, &like)
        .map_err(|error| StageError::new(STAGE, ErrorKind::Io, error.to_string()))
}

/// Writes the override and reloads.
pub fn set(pgdata: &Path, client: &mut Client) -> Result<(), StageError> {
    write(pgdata, OVERRIDE)?;
    reload_and_wait(client)
}

/// Empties the override, then reloads through a connection from `connect` (the file is
/// emptied first, so even without a connection the next reload drops the `-1`).
pub fn clear(
    pgdata: &Path,
    connect: &dyn Fn() -> Result<Client, StageError>,
) -> Result<(), StageError> {
    write(pgdata, "")?;
    reload_and_wait(&mut connect()?)
}
