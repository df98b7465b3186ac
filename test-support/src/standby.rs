//! A streaming replica's data directory, made from its primary: `pg_basebackup -R` when a
//! `pg_basebackup` of the primary's major or newer is at hand (it refuses newer servers), else
//! the same by hand — a low-level backup (`pg_backup_start` / `pg_start_backup`, a copy of the
//! primary's directory, `pg_backup_stop` / `pg_stop_backup` and its `backup_label`, then the
//! WAL, held by a temporary replication slot meanwhile), `standby.signal` and
//! `primary_conninfo`.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::majors::client_program;
use crate::{as_postgres_user, chown_to_postgres};

/// The primary a standby is made from.
#[derive(Debug, Clone)]
pub(crate) struct Primary {
    /// Its connection string (as its superuser, over its socket).
    pub connstr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its major version.
    pub major: u32,
}

/// Fills `data_dir` (below `dir`) with a standby of `primary`, owned by the `postgres` user.
pub(crate) fn base_backup(bin_dir: &Path, primary: &Primary, dir: &Path, data_dir: &Path) {
    chown_to_postgres(dir);
    let pg_basebackup = client_program(bin_dir, "pg_basebackup");
    match program_major(&pg_basebackup) {
        Some(major) if major >= primary.major => {
            run_pg_basebackup(&pg_basebackup, primary, data_dir)
        }
        _ => copy_by_hand(primary, data_dir),
    }
    // A backup ends on a WAL segment switch; when nothing is written after it, the primary's
    // insert position lies past the last record the standby can replay (until the next
    // standby snapshot, 15 s later). One record after the backup: a standby that has caught
    // up replays to the primary's insert position, whatever the major.
    let mut client = postgres::Client::connect(&primary.connstr, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the primary {}: {e}", primary.connstr));
    client
        .batch_execute("SELECT pg_catalog.txid_current()")
        .unwrap_or_else(|e| panic!("writing a record on the primary {}: {e}", primary.connstr));
    chown_to_postgres(dir);
}

/// The major version `program --version` prints (`pg_basebackup (PostgreSQL) 15.8`).
fn program_major(program: &Path) -> Option<u32> {
    let output = Command::new(program).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    crate::majors::major_of(version)
}

/// `pg_basebackup -R -X stream` of `primary` into `data_dir`, as the `postgres` user.
fn run_pg_basebackup(pg_basebackup: &Path, primary: &Primary, data_dir: &Path) {
    let mut cmd = Command::new(pg_basebackup);
    as_postgres_user(&mut cmd)
        .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-d"])
        .arg(&primary.connstr)
        .arg("-D")
        .arg(data_dir)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pg_basebackup.display()));
    assert!(
        out.status.success(),
        "pg_basebackup of {} failed ({}):\n{}",
        primary.connstr,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Directories whose contents a base backup leaves out (as `pg_basebackup` does): runtime
/// state, rebuilt by the standby. `pg_wal` is copied after the backup stops.
const EMPTIED: [&str; 8] = [
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files a base backup leaves out.
const SKIPPED: [&str; 4] = [
    "postmaster.pid",
    "postmaster.opts",
    "backup_label.old",
    "tablespace_map.old",
];

/// The low-level backup of `primary` into `data_dir`, plus the standby configuration.
fn copy_by_hand(primary: &Primary, data_dir: &Path) {
    let mut client = postgres::Client::connect(&primary.connstr, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the primary {}: {e}", primary.connstr));
    let run = |client: &mut postgres::Client, sql: &str| {
        client
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql} on the primary {}: {e}", primary.connstr))
    };
    // Holds every WAL segment from now on until this session ends.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let slot = format!(
        "kit_standby_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run(
        &mut client,
        &format!("SELECT pg_catalog.pg_create_physical_replication_slot('{slot}', true, true)"),
    );
    let (start, stop) = match primary.major >= 15 {
        true => (
            "SELECT pg_catalog.pg_backup_start('pg-test-support', true)",
            "SELECT labelfile FROM pg_catalog.pg_backup_stop(false)",
        ),
        false => (
            "SELECT pg_catalog.pg_start_backup('pg-test-support', true, false)",
            "SELECT labelfile FROM pg_catalog.pg_stop_backup(false, false)",
        ),
    };
    run(&mut client, start);
    copy_live_tree(&primary.data_dir, data_dir, true);
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", data_dir.display()));
    let label: String = run(&mut client, stop)[0].get(0);
    write(&data_dir.join("backup_label"), &label);
    // Every segment up to the backup's end is written now (the stop switched segments).
    copy_live_tree(
        &primary.data_dir.join("pg_wal"),
        &data_dir.join("pg_wal"),
        false,
    );
    drop(client);
    write(&data_dir.join("standby.signal"), "");
    let conninfo = primary.connstr.replace('\\', "\\\\").replace('\'', "\\'");
    let auto = data_dir.join("postgresql.auto.conf");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", auto.display()));
    writeln!(file, "primary_conninfo = '{conninfo}'")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", auto.display()));
}

/// Copies the tree of a running server: files that vanish meanwhile are skipped; at the top
/// (`top`), [`SKIPPED`] files and the contents of [`EMPTIED`] directories are left out.
fn copy_live_tree(from: &Path, to: &Path, top: bool) {
    match fs::create_dir(to) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", to.display()),
    }
    let entries = match fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => panic!("cannot list {}: {e}", from.display()),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let (source, target) = (entry.path(), to.join(&name));
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if top && EMPTIED.contains(&name_text.as_ref()) {
                let _ = fs::create_dir(&target);
                if name_text == "pg_wal" {
                    let _ = fs::create_dir(target.join("archive_status"));
                }
            } else if !top && name_text == "archive_status" {
                let _ = fs::create_dir(&target);
            } else {
                copy_live_tree(&source, &target, false);
            }
        } else if kind.is_file() && !(top && SKIPPED.contains(&name_text.as_ref())) {
            match fs::copy(&source, &target) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => panic!("cannot copy {}: {e}", source.display()),
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
