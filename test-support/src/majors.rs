//! PostgreSQL major versions: where each one's binaries are, and which one a test run uses.
//!
//! A major's binaries are Debian's `/usr/lib/postgresql/<major>/bin` when it has a
//! `postgres`, else the cache `scripts/install-pg-majors.sh` fills
//! (`$COMPUTE_TOOLS_PG_CACHE/<major>/bin`, default `/var/cache/compute-tools/pg`): the npm
//! registry's relocatable builds (`postgres`, `initdb`, `pg_ctl`; no client tools).
//!
//! `PG_TEST_MAJOR=<major>` makes the whole run use that major ([`crate::pg_bin_dir`]);
//! `scripts/test-majors.sh` sets it for each installed major. A test that needs one major
//! whatever the run's asks for it with [`require_major`] (skipping, or failing on CI, when it
//! is not installed) and starts it with [`TestPostgresBuilder::major`](crate::TestPostgresBuilder::major).

use std::path::{Path, PathBuf};

use crate::skip_or_fail;

/// The variable naming the cache of other majors' builds (the install script reads it too).
pub const CACHE_ENV: &str = "COMPUTE_TOOLS_PG_CACHE";

/// The cache's default location.
pub const DEFAULT_CACHE: &str = "/var/cache/compute-tools/pg";

/// The variable choosing the major a test run uses.
pub const MAJOR_ENV: &str = "PG_TEST_MAJOR";

/// Where Debian installs its PostgreSQL versions.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The cache of other majors' builds: `$COMPUTE_TOOLS_PG_CACHE`, else `/var/cache/compute-tools/pg`.
pub fn pg_cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

/// The bin directory of PostgreSQL `major`: Debian's when it has a `postgres`, else the
/// cache's complete install (its `.installed` stamp is written last); None when neither is
/// there.
pub fn major_bin_dir(major: u32) -> Option<PathBuf> {
    let debian = Path::new(DEBIAN_ROOT).join(major.to_string()).join("bin");
    if debian.join("postgres").is_file() {
        return Some(debian);
    }
    let cached = pg_cache_dir().join(major.to_string());
    (cached.join(".installed").is_file() && cached.join("bin/postgres").is_file())
        .then(|| cached.join("bin"))
}

/// Every installed major (Debian's and the cache's), lowest first.
pub fn installed_majors() -> Vec<u32> {
    let mut majors: Vec<u32> = [Path::new(DEBIAN_ROOT).to_path_buf(), pg_cache_dir()]
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|major| major_bin_dir(*major).is_some())
        .collect();
    majors.sort_unstable();
    majors.dedup();
    majors
}

/// The major `PG_TEST_MAJOR` asks for, if set.
///
/// # Panics
///
/// When it is set to something other than a major version number.
pub fn test_major() -> Option<u32> {
    let value = std::env::var(MAJOR_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())?;
    match value.trim().parse::<u32>() {
        Ok(major) => Some(major),
        Err(_) => panic!("{MAJOR_ENV}={value:?} is not a major version number (e.g. 14 or 17)"),
    }
}

/// The bin directory `PG_TEST_MAJOR` selects, if set.
///
/// # Panics
///
/// When that major is not installed: every test of the run would otherwise quietly use
/// another one.
pub(crate) fn test_major_bin_dir() -> Option<PathBuf> {
    let major = test_major()?;
    Some(major_bin_dir(major).unwrap_or_else(|| panic!("{}", missing(major))))
}

/// The bin directory of `major`, or None after saying loudly that `test` is skipped (a
/// failure when `CI` is set: see [`skip_or_fail`]). Use it before
/// [`TestPostgresBuilder::major`](crate::TestPostgresBuilder::major):
///
/// ```no_run
/// let Some(_) = pg_test_support::require_major("my_test", 14) else { return };
/// let pg = pg_test_support::TestPostgres::builder().major(14).start();
/// ```
pub fn require_major(test: &str, major: u32) -> Option<PathBuf> {
    let dir = major_bin_dir(major);
    if dir.is_none() {
        skip_or_fail(test, &missing(major));
    }
    dir
}

/// Why `major` cannot be used.
pub(crate) fn missing(major: u32) -> String {
    format!(
        "PostgreSQL {major} is not installed: neither {DEBIAN_ROOT}/{major}/bin/postgres nor a \
         complete {}/{major} (run scripts/install-deps.sh, or scripts/install-pg-majors.sh)",
        pg_cache_dir().display()
    )
}

/// The major version of the server in `bin_dir` (`postgres --version`).
pub fn bin_major(bin_dir: &Path) -> u32 {
    let version = crate::template::server_version(bin_dir);
    major_of(&version).unwrap_or_else(|| {
        panic!(
            "cannot read a major version from {version:?} ({})",
            bin_dir.display()
        )
    })
}

/// The major of a version string: `"15.8"` → 15, `"18beta1"` → 18.
pub(crate) fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The major of the run's server ([`crate::pg_bin_dir`]).
pub fn pg_major() -> u32 {
    bin_major(&crate::pg_bin_dir())
}

/// The client program `name` (`psql`, `pg_basebackup`, …) to use with the server of
/// `bin_dir`: its own when it has one, else the highest Debian version's (the cache's builds
/// ship no client tools; psql talks to servers of every major), else `bin_dir/name` (so the
/// error names the expected place).
pub fn client_program(bin_dir: &Path, name: &str) -> PathBuf {
    let own = bin_dir.join(name);
    if own.is_file() {
        return own;
    }
    match crate::highest_debian_bin_dir() {
        Some(debian) if debian.join(name).is_file() => debian.join(name),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_are_read_from_version_strings() {
        assert_eq!(major_of("15.8"), Some(15));
        assert_eq!(major_of("18beta1"), Some(18));
        assert_eq!(major_of("14.23"), Some(14));
        assert_eq!(major_of("x"), None);
    }

    #[test]
    fn the_run_s_server_has_the_major_asked_for() {
        let major = pg_major();
        if std::env::var_os("PG_BIN_DIR").is_none() {
            assert!(installed_majors().contains(&major), "{major}");
        }
        if let Some(asked) = test_major() {
            assert_eq!(major, asked);
        }
    }
}
