//! The host facts the configuration depends on ([`HostFacts`]), probed once by the first
//! stage and carried in the document, so that the model crate renders `postgresql.conf`
//! without touching the file system.

use std::io::Read;
use std::path::Path;

use compute_spec::document::HostFacts;

/// Where the kernel says how it overcommits memory.
const OVERCOMMIT: &str = "/proc/sys/vm/overcommit_memory";

/// The facts of this host for a Postgres binary at `pgbin`. A fact that cannot be read is
/// false (the default rendering).
pub fn probe(pgbin: &Path) -> HostFacts {
    HostFacts {
        overcommit_strict: read_short(Path::new(OVERCOMMIT)).is_some_and(|mode| mode.trim() == "2"),
        neon_library: has_neon_library(pgbin),
    }
}

/// Whether Neon's `neon` library is installed beside `pgbin` (`<bin>/../lib/neon.so`, Neon's
/// image layout, or `<bin>/../lib/postgresql/neon.so`, PostgreSQL's default `pkglibdir`).
pub fn has_neon_library(pgbin: &Path) -> bool {
    let Some(prefix) = pgbin.parent().and_then(Path::parent) else {
        return false;
    };
    ["lib/neon.so", "lib/postgresql/neon.so"]
        .iter()
        .any(|candidate| prefix.join(candidate).is_file())
}

/// The first 64 bytes of a small file as text (a `/proc` setting).
fn read_short(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_neon_library_is_looked_up_beside_pgbin() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let postgres = bin.join("postgres");
        assert!(!has_neon_library(&postgres));
        assert!(!probe(&postgres).neon_library);
        for layout in ["lib", "lib/postgresql"] {
            let lib = dir.path().join(layout);
            std::fs::create_dir_all(&lib).unwrap();
            std::fs::write(lib.join("neon.so"), b"").unwrap();
            assert!(has_neon_library(&postgres), "{layout}");
            assert!(probe(&postgres).neon_library, "{layout}");
            std::fs::remove_file(lib.join("neon.so")).unwrap();
        }
        assert!(!has_neon_library(Path::new("postgres")));
    }

    #[test]
    fn overcommit_is_read_from_proc() {
        let mode = std::fs::read_to_string(OVERCOMMIT).unwrap();
        assert_eq!(
            probe(Path::new("/nonexistent/bin/postgres")).overcommit_strict,
            mode.trim() == "2"
        );
    }
}
