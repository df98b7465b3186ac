//! Where things are: the Postgres installation's extension and library directories (from
//! `pg_config` beside the `postgres` binary; Debian keeps them apart from `bin/`), its major
//! version, and the archive URL in remote extension storage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stage_kit::child::RunError;

use crate::FetchError;

/// The build tag in archive URLs (`BUILD_TAG` at compile time, else `latest`, as upstream).
pub const BUILD_TAG: &str = match option_env!("BUILD_TAG") {
    Some(tag) => tag,
    None => "latest",
};

/// How long `pg_config` may take.
const PG_CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// The directories extension archives are unpacked into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// `$(pg_config --sharedir)/extension`: control and SQL files.
    pub extension_dir: PathBuf,
    /// `$(pg_config --pkglibdir)`: shared libraries.
    pub library_dir: PathBuf,
    /// The major version as in archive URLs: `v14`, `v15`, …
    pub pg_major: String,
}

impl Installation {
    /// Asks `pg_config` beside `pgbin` (the `postgres` binary) where the directories are.
    pub fn discover(pgbin: &Path) -> Result<Installation, FetchError> {
        let pg_config = pgbin.with_file_name("pg_config");
        let output = run_pg_config(&pg_config)?;
        let lines: Vec<&str> = output.lines().collect();
        let [sharedir, pkglibdir, version] = lines[..] else {
            return Err(FetchError::Setup(format!(
                "{} printed {} lines for --sharedir --pkglibdir --version, expected 3",
                pg_config.display(),
                lines.len()
            )));
        };
        Ok(Installation {
            extension_dir: Path::new(sharedir).join("extension"),
            library_dir: PathBuf::from(pkglibdir),
            pg_major: major_version(version).ok_or_else(|| {
                FetchError::Setup(format!(
                    "{} --version printed {version:?}, not `PostgreSQL <major>.<minor>`",
                    pg_config.display()
                ))
            })?,
        })
    }
}

/// `v15` for `PostgreSQL 15.8 (Debian 15.8-0+deb12u1)`.
pub fn major_version(version: &str) -> Option<String> {
    let number = version.strip_prefix("PostgreSQL ")?;
    let major: String = number.chars().take_while(char::is_ascii_digit).collect();
    let rest = &number[major.len()..];
    (!major.is_empty() && rest.starts_with(['.', 'b', 'r', 'd'])).then(|| format!("v{major}"))
}

fn run_pg_config(pg_config: &Path) -> Result<String, FetchError> {
    let setup = |what: String| FetchError::Setup(format!("{}: {what}", pg_config.display()));
    let mut command = Command::new(pg_config);
    command.args(["--sharedir", "--pkglibdir", "--version"]);
    let output = match stage_kit::child::run(&mut command, PG_CONFIG_TIMEOUT, 64 << 10) {
        Ok(output) => output,
        Err(RunError::Spawn { source, .. }) => {
            return Err(setup(format!(
                "cannot run it: {source} (it must be beside the postgres binary given as -b)"
            )))
        }
        Err(RunError::TimedOut { .. }) => {
            return Err(setup(format!(
                "did not finish within {PG_CONFIG_TIMEOUT:?}"
            )))
        }
        Err(error) => return Err(setup(error.to_string())),
    };
    if !output.status.success() {
        return Err(setup(format!(
            "failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout).map_err(|_| setup("its output is not UTF-8".into()))
}

/// The CPU architecture in archive URLs: `amd64`, `arm64`, else Rust's name.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Normalises `--remote-ext-base-url`: trailing `/` stripped and one added; a query string
/// or a non-HTTP scheme is refused.
pub fn normalize_base_url(url: &str) -> Result<String, String> {
    if url.contains('?') {
        return Err(format!(
            "remote extension storage URL {url:?} has a query string; give it without one"
        ));
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "remote extension storage URL {url:?} is not an http:// or https:// URL"
        ));
    };
    if rest.trim_end_matches('/').is_empty() || url.contains(char::is_whitespace) {
        return Err(format!(
            "remote extension storage URL {url:?} names no host"
        ));
    }
    Ok(format!("{}/", url.trim_end_matches('/')))
}

/// The archive file name of `extension`: `<extension>.tar.zst`.
pub fn archive_name(extension: &str) -> String {
    format!("{extension}.tar.zst")
}

/// `{base}{BUILD_TAG}/{arch}/{pg_major}/extensions/{extension}.tar.zst`, as upstream, the
/// extension's name percent-encoded as one path segment: a name holding `/` or `..` (the
/// spec allows any) cannot reach another object. An empty name, `.` and `..` are refused.
pub fn archive_url(base_url: &str, pg_major: &str, extension: &str) -> Result<String, String> {
    let segment = stage_kit::url::path_segment(extension)
        .map_err(|why| format!("extension name {extension:?} cannot be downloaded: {why}"))?;
    Ok(format!(
        "{base_url}{BUILD_TAG}/{}/{pg_major}/extensions/{}",
        arch(),
        archive_name(&segment)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_as_upstream() {
        let base = normalize_base_url("http://pg-ext-s3-gateway//").unwrap();
        assert_eq!(base, "http://pg-ext-s3-gateway/");
        assert_eq!(
            archive_url(&base, "v17", "postgis"),
            Ok(format!(
                "http://pg-ext-s3-gateway/latest/{}/v17/extensions/postgis.tar.zst",
                arch()
            ))
        );
        assert_eq!(
            archive_url(&base, "v17", "../../x"),
            Ok(format!(
                "http://pg-ext-s3-gateway/latest/{}/v17/extensions/..%2F..%2Fx.tar.zst",
                arch()
            ))
        );
        for refused in ["", ".", ".."] {
            assert!(archive_url(&base, "v17", refused).is_err(), "{refused:?}");
        }
        assert!(normalize_base_url("http://x/?a=b").is_err());
        assert!(normalize_base_url("ftp://x").is_err());
        assert!(normalize_base_url("http://").is_err());
    }

    #[test]
    fn major_versions() {
        assert_eq!(
            major_version("PostgreSQL 15.8 (Debian 15.8-0+deb12u1)").as_deref(),
            Some("v15")
        );
        assert_eq!(major_version("PostgreSQL 17beta1").as_deref(), Some("v17"));
        assert_eq!(major_version("PostgreSQL 15"), None);
        assert_eq!(major_version("Postgres 15.1"), None);
    }
}
