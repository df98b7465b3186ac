//! The template cluster: one `initdb` per (PostgreSQL version, superuser), shared by all
//! tests and test processes through a file lock.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::{as_postgres_user, chown_to_postgres, postgres_os_user, test_root};

/// Bumped whenever the way templates are built changes, so stale templates are not reused.
const TEMPLATE_FORMAT: u32 = 1;

/// The PostgreSQL version reported by `postgres --version` in `bin_dir`, e.g. `"15.8"`.
pub(crate) fn server_version(bin_dir: &Path) -> String {
    static CACHE: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(v) = cache.get(bin_dir) {
        return v.clone();
    }
    let postgres = bin_dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", postgres.display()));
    assert!(
        out.status.success(),
        "{} --version failed: {}",
        postgres.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" -> "15.8"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("cannot parse the output of postgres --version: {text:?}"));
    let version = sanitize(version);
    cache.insert(bin_dir.to_path_buf(), version.clone());
    version
}

/// Keeps `[A-Za-z0-9._-]`, replaces everything else, so `s` is usable in a file name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Returns the path of a complete template data directory for `bin_dir` and `superuser`,
/// building it first if needed (at most once across all concurrent test processes).
pub(crate) fn ensure_template(bin_dir: &Path, superuser: &str) -> PathBuf {
    // Per-process fast path: once a template was found, later tests skip the file lock.
    static KNOWN: Mutex<Option<HashMap<(PathBuf, String), PathBuf>>> = Mutex::new(None);
    let key = (bin_dir.to_path_buf(), superuser.to_string());
    if let Some(path) = KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return path.clone();
    }

    let version = server_version(bin_dir);
    let mut name = format!("template-{version}-{}", sanitize(superuser));
    name.push_str(&format!("-f{TEMPLATE_FORMAT}"));
    // Include a hash of the exact inputs: distinct binaries or names that sanitize to the
    // same text must not share a template.
    name.push_str(&format!("-{:08x}", fingerprint(bin_dir, superuser)));
    if postgres_os_user().is_none() {
        // A non-root user cannot read a template built by root for the postgres user.
        name.push_str(&format!("-u{}", nix::unistd::geteuid().as_raw()));
    }
    let root = test_root();
    let final_path = root.join(&name);
    let lock_path = root.join(format!("{name}.lock"));

    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", lock_path.display()));
    lock_file
        .lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));

    if !final_path.join("PG_VERSION").is_file() {
        build_template(bin_dir, superuser, &root, &name, &final_path);
    }
    drop(lock_file); // releases the lock

    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, final_path.clone());
    final_path
}

/// A small stable hash (FNV-1a) of the template's inputs.
fn fingerprint(bin_dir: &Path, superuser: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let bytes = bin_dir.as_os_str().as_encoded_bytes().iter();
    for &b in bytes.chain([0u8].iter()).chain(superuser.as_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Runs `initdb` into a temporary directory and renames it to `final_path` on success.
/// Must be called with the template's lock held.
fn build_template(bin_dir: &Path, superuser: &str, root: &Path, name: &str, final_path: &Path) {
    // Leftovers of an interrupted build, or an incomplete final dir, are garbage now.
    let tmp_prefix = format!("{name}.tmp");
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    if final_path.exists() {
        fs::remove_dir_all(final_path).unwrap_or_else(|e| {
            panic!(
                "cannot remove broken template {}: {e}",
                final_path.display()
            )
        });
    }

    let tmp = root.join(format!("{tmp_prefix}.{}", std::process::id()));
    let mut failures = Vec::new();
    for locale in ["C.UTF-8", "C"] {
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        chown_to_postgres(&tmp);
        let initdb = bin_dir.join("initdb");
        let mut cmd = Command::new(&initdb);
        as_postgres_user(&mut cmd)
            .args(["--no-sync", "-A", "trust", "-E", "UTF8"])
            .arg("-U")
            .arg(superuser)
            .arg(format!("--locale={locale}"))
            .arg("-D")
            .arg(&tmp)
            .env("LC_ALL", "C");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", initdb.display()));
        if out.status.success() {
            fs::rename(&tmp, final_path).unwrap_or_else(|e| {
                panic!(
                    "cannot rename {} to {}: {e}",
                    tmp.display(),
                    final_path.display()
                )
            });
            return;
        }
        failures.push(format!(
            "--locale={locale}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = fs::remove_dir_all(&tmp);
    panic!(
        "initdb failed for the template cluster {}:\n{}",
        final_path.display(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_safe_characters() {
        assert_eq!(sanitize("cloud_admin-1.2"), "cloud_admin-1.2");
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }

    #[test]
    fn fingerprint_distinguishes_inputs() {
        let dir = Path::new("/usr/lib/postgresql/15/bin");
        assert_ne!(fingerprint(dir, "a/b"), fingerprint(dir, "a_b"));
        assert_eq!(fingerprint(dir, "x"), fingerprint(dir, "x"));
    }

    #[test]
    fn fsutil_copy_preserves_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::TestDir::new("cp");
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), b"hello").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        let dst = dir.path().join("dst");
        crate::fsutil::copy_dir_recursive(&src, &dst);
        assert_eq!(fs::read(dst.join("sub/f")).unwrap(), b"hello");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dst.join("sub/f")), 0o600);
        assert_eq!(mode(&dst.join("sub")), 0o750);
    }
}
