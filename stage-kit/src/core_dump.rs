//! Core dump file names: what a crashed backend leaves in PGDATA, its working directory,
//! under the kernel's default `core_pattern` (`core`, or `core.<pid>` with
//! `core_uses_pid`). pg-supervise looks for them after Postgres dies; the PGDATA wipe
//! accepts them as Postgres's own.

/// Whether `name` is `core` or `core.<pid>` (a pid of 1 to 10 digits).
pub fn is_core_dump_name(name: &str) -> bool {
    match name.strip_prefix("core") {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|pid| {
            !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_core_dump_name;

    #[test]
    fn dump_names() {
        for name in ["core", "core.1", "core.4294967295"] {
            assert!(is_core_dump_name(name), "{name}");
        }
        for name in [
            "core.",
            "core.x",
            "core.1.sql",
            "cores",
            "score",
            "core.12345678901",
        ] {
            assert!(!is_core_dump_name(name), "{name}");
        }
    }
}
