//! A private installation of the server: the real `postgres` binary copied into a tree of
//! its own, whose share directory is the real one plus extra extension files, so a test can
//! offer an extension (`neon`, say) without writing into the system's extension directory.
//!
//! Postgres finds its share and library directories relative to its own executable: it
//! replaces the compiled-in bin directory's tail by the compiled-in share (or lib) path.
//! The tree mirrors the real absolute paths under the test's directory, so that rule finds
//! `<root>/<real share dir>`. Only the binary and the `extension` directory are real
//! entries; everything else is a symbolic link into the real installation (never written
//! through: the kit's `chown` does not follow links).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the tree under `root` for the installation of `bin_dir`, with `files` (name,
/// contents) added to its extension directory; the path of its `postgres`.
///
/// # Panics
///
/// Panics naming the path or program that failed.
pub(crate) fn private_install(root: &Path, bin_dir: &Path, files: &[(String, String)]) -> PathBuf {
    let pg_config = |flag: &str| -> PathBuf {
        let program = bin_dir.join("pg_config");
        let out = Command::new(&program)
            .arg(flag)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(out.status.success(), "{} {flag} failed", program.display());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    let under_root = |real: &Path| root.join(real.strip_prefix("/").unwrap_or(real));
    let share = pg_config("--sharedir");
    let pkglib = pg_config("--pkglibdir");
    let real_bin = pg_config("--bindir");

    let bin = under_root(&real_bin);
    create_dir(&bin);
    let postgres = bin.join("postgres");
    fs::copy(bin_dir.join("postgres"), &postgres)
        .unwrap_or_else(|e| panic!("cannot copy postgres to {}: {e}", postgres.display()));
    let lib = under_root(&pkglib);
    if let Some(parent) = lib.parent() {
        create_dir(parent);
    }
    link(&pkglib, &lib);

    let private_share = under_root(&share);
    create_dir(&private_share);
    for entry in read_dir(&share) {
        if entry.file_name() != "extension" {
            link(&entry.path(), &private_share.join(entry.file_name()));
        }
    }
    let extension = private_share.join("extension");
    create_dir(&extension);
    for entry in read_dir(&share.join("extension")) {
        link(&entry.path(), &extension.join(entry.file_name()));
    }
    for (name, contents) in files {
        assert!(
            !name.contains('/') && !name.starts_with('.'),
            "extension file name {name:?} is not a plain name"
        );
        let path = extension.join(name);
        // An extra file replaces the real installation's file of that name.
        let _ = fs::remove_file(&path);
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    postgres
}

fn create_dir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

fn link(target: &Path, path: &Path) {
    symlink(target, path).unwrap_or_else(|e| {
        panic!(
            "cannot link {} to {}: {e}",
            path.display(),
            target.display()
        )
    });
}

fn read_dir(path: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
        .collect()
}
