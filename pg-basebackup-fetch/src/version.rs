//! PostgreSQL versions of a clone: the primary's (`SHOW server_version_num` on the replication
//! connection) and the compute's (`<pgbin> --version`). A data directory is readable only by
//! the major version that wrote it, so a primary of another major than the compute's Postgres
//! is refused before any byte is copied, naming both versions. The primary's version also
//! chooses the `BASE_BACKUP` form ([`crate::replication`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child::{command_line, failure};
use crate::error::BasebackupError;

/// How long `postgres --version` may take.
const VERSION_DEADLINE: Duration = Duration::from_secs(30);

/// A server's version, from `server_version_num` (e.g. 140023 for 14.23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerVersion(pub u32);

impl ServerVersion {
    /// Parses `server_version_num`'s text.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        text.trim().parse().ok().map(ServerVersion)
    }

    /// The major version: 14 for 140023 (10 and later); 906 for 9.6's 90624.
    pub fn major(self) -> u32 {
        match self.0 {
            n if n >= 100_000 => n / 10_000,
            n => n / 100,
        }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            n if n >= 100_000 => write!(f, "{}.{}", n / 10_000, n % 10_000),
            n => write!(f, "{}.{}.{}", n / 10_000, n / 100 % 100, n % 100),
        }
    }
}

/// The compute's Postgres: its major version and what `--version` printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeVersion {
    /// The major version (15 for `postgres (PostgreSQL) 15.8`).
    pub major: u32,
    /// The version as printed (`15.8`).
    pub text: String,
}

/// Runs `<postgres> --version` (bounded) and reads its major version.
pub fn compute_version(postgres: &Path) -> Result<ComputeVersion, BasebackupError> {
    let mut command = Command::new(postgres);
    command.arg("--version").current_dir("/");
    let line = command_line(&command);
    let output = stage_kit::child::run(&mut command, VERSION_DEADLINE, 4096)
        .map_err(|error| failure(&line, error))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output
        .status
        .success()
        .then(|| parse_version_output(&stdout))
    {
        Some(Some(version)) => Ok(version),
        _ => Err(BasebackupError::Child {
            command: line,
            detail: format!(
                "{}: cannot read a PostgreSQL version from {:?}; check -b (the compute's \
                 postgres binary)",
                output.status,
                stdout.trim()
            ),
        }),
    }
}

/// The version in `postgres --version`'s output: `postgres (PostgreSQL) 17.10`,
/// `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`, `postgres (PostgreSQL) 18beta1`.
pub fn parse_version_output(text: &str) -> Option<ComputeVersion> {
    let after = text
        .split_once("(PostgreSQL)")
        .map_or(text, |(_, rest)| rest);
    let word = after
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    let mut major: u32 = digits.parse().ok()?;
    if major < 10 {
        // 9.6.24: the major is "9.6", as ServerVersion::major counts it (906).
        let minor: String = word[digits.len()..]
            .strip_prefix('.')?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        major = major * 100 + minor.parse::<u32>().ok()?;
    }
    Some(ComputeVersion {
        major,
        text: word.to_string(),
    })
}

/// Refuses a primary of another major version than the compute's, naming both.
pub fn check_same_major(
    server: &str,
    primary: ServerVersion,
    compute: &ComputeVersion,
) -> Result<(), BasebackupError> {
    if primary.major() == compute.major {
        return Ok(());
    }
    Err(BasebackupError::Document(format!(
        "{server} runs PostgreSQL {primary}, but the compute's postgres (-b) is PostgreSQL {}: \
         a clone needs both of one major version (a data directory is readable only by the \
         major that wrote it); point -b at PostgreSQL {} binaries, or upstream_connstring at \
         a PostgreSQL {} primary",
        compute.text,
        primary.major(),
        compute.major
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_read_as_postgres_prints_them() {
        let v14 = ServerVersion::parse("140023\n").unwrap();
        assert_eq!((v14.major(), v14.to_string()), (14, "14.23".to_string()));
        let v96 = ServerVersion::parse("90624").unwrap();
        assert_eq!((v96.major(), v96.to_string()), (906, "9.6.24".to_string()));
        assert_eq!(ServerVersion::parse("x"), None);
    }

    #[test]
    fn compute_versions_are_read_from_every_known_output() {
        for (text, major, version) in [
            ("postgres (PostgreSQL) 17.10\n", 17, "17.10"),
            (
                "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n",
                15,
                "15.8",
            ),
            ("postgres (PostgreSQL) 18beta1\n", 18, "18beta1"),
            ("postgres (PostgreSQL) 9.6.24\n", 906, "9.6.24"),
        ] {
            let parsed = parse_version_output(text).unwrap();
            assert_eq!(
                (parsed.major, parsed.text.as_str()),
                (major, version),
                "{text}"
            );
        }
        assert_eq!(parse_version_output("postgres (PostgreSQL)\n"), None);
        assert_eq!(parse_version_output(""), None);
    }

    #[test]
    fn another_major_is_refused_naming_both_versions() {
        let compute = parse_version_output("postgres (PostgreSQL) 17.10").unwrap();
        let message = check_same_major("primary db:5432", ServerVersion(150018), &compute)
            .unwrap_err()
            .to_string();
        assert!(message.contains("PostgreSQL 15.18"), "{message}");
        assert!(message.contains("PostgreSQL 17.10"), "{message}");
        assert!(message.contains("primary db:5432"), "{message}");
        assert!(check_same_major("p", ServerVersion(170002), &compute).is_ok());
    }
}
