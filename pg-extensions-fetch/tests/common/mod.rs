//! Shared test parts: a private Postgres installation (a copy/symlink farm of the Debian
//! one, so nothing is written under /usr), the remote extension storage (on the kit's HTTP
//! stand-in), and archive builders.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_extensions_fetch::Installation;
use pg_test_support::fake_http::{FakeHttp, Response};

/// A private installation: `root/usr/lib/postgresql/<v>/{bin,lib}` and
/// `root/usr/share/postgresql/<v>`, laid out as Debian's so `pg_config` and `postgres`
/// (copied, not linked: they find their directories relative to their own real path) see
/// the private directories. Everything else is a symlink, except the directories archives
/// are unpacked into, which are real directories of symlinks.
pub struct Farm {
    pub root: PathBuf,
    pub bin: PathBuf,
}

impl Farm {
    /// Lays a farm out under `root`, leaving out the files named in `without` (so the test
    /// can download them).
    pub fn new(root: &Path, without: &[&str]) -> Farm {
        let real_bin = real_bin_dir();
        let version_dir = real_bin.parent().unwrap();
        let version = version_dir.file_name().unwrap();
        let real_share = Path::new("/usr/share/postgresql").join(version);
        let bin = root.join("usr/lib/postgresql").join(version).join("bin");
        let lib = root.join("usr/lib/postgresql").join(version).join("lib");
        let share = root.join("usr/share/postgresql").join(version);
        for dir in [&bin, &lib, &share.join("extension")] {
            fs::create_dir_all(dir).unwrap();
        }
        for entry in fs::read_dir(&real_bin).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let target = bin.join(&name);
            if name == "postgres" || name == "pg_config" {
                fs::copy(entry.path(), &target).unwrap();
            } else {
                symlink(entry.path(), &target).unwrap();
            }
        }
        link_each(&version_dir.join("lib"), &lib, without);
        for entry in fs::read_dir(&real_share).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "extension" {
                symlink(entry.path(), share.join(entry.file_name())).unwrap();
            }
        }
        link_each(
            &real_share.join("extension"),
            &share.join("extension"),
            without,
        );
        set_mode_tree(root);
        Farm {
            root: root.to_path_buf(),
            bin,
        }
    }

    pub fn postgres(&self) -> PathBuf {
        self.bin.join("postgres")
    }
}

/// The real installation's `bin/` (`$PG_BIN_DIR_REAL`, else the highest
/// `/usr/lib/postgresql/<v>/bin`), found without `pg_test_support::pg_bin_dir`, which a
/// test points at the farm.
pub fn real_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR_REAL") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/<v>/bin/postgres")
        .1
}

fn link_each(from: &Path, to: &Path, without: &[&str]) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if without.iter().any(|skip| name.starts_with(skip)) {
            continue;
        }
        symlink(entry.path(), to.join(&name)).unwrap();
    }
}

/// Directories readable by the `postgres` user (the tests run as root; Postgres does not).
fn set_mode_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

/// An installation of two empty directories (for tests without Postgres).
pub fn scratch_installation(root: &Path) -> Installation {
    let installation = Installation {
        extension_dir: root.join("share/extension"),
        library_dir: root.join("lib"),
        pg_major: "v15".into(),
    };
    fs::create_dir_all(&installation.extension_dir).unwrap();
    fs::create_dir_all(&installation.library_dir).unwrap();
    installation
}

/// Every path under `root`, relative, sorted (to show nothing else was written).
pub fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            found.push(
                entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string(),
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// One answer of the archive server.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn ok(body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            body,
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: format!("status {status}").into_bytes(),
            delay: Duration::ZERO,
        }
    }
}

/// The remote extension storage: answers GET by path (404 for unknown paths) and counts the
/// requests per path, on the kit's HTTP stand-in. It stops when dropped.
pub struct ArchiveServer {
    pub base_url: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    server: FakeHttp,
}

impl ArchiveServer {
    pub fn start() -> ArchiveServer {
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let known = answers.clone();
        let server = FakeHttp::start(move |request| {
            let answer = known.lock().unwrap().get(&request.target).cloned();
            let answer = answer.unwrap_or_else(|| Answer::status(404));
            Response::new(answer.status, answer.body).after(answer.delay)
        });
        ArchiveServer {
            base_url: format!("{}/", server.url()),
            answers,
            server,
        }
    }

    /// The URL path of `extension`'s archive for Postgres `pg_major`.
    pub fn path_of(pg_major: &str, extension: &str) -> String {
        format!(
            "/latest/{}/{pg_major}/extensions/{extension}.tar.zst",
            pg_extensions_fetch::layout::arch()
        )
    }

    pub fn serve(&self, pg_major: &str, extension: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(Self::path_of(pg_major, extension), answer);
    }

    pub fn requests(&self, pg_major: &str, extension: &str) -> u64 {
        self.server.count(&Self::path_of(pg_major, extension)) as u64
    }
}

/// A zstd tar of `entries` (name → content), every one a regular file.
pub fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        set_raw_name(&mut header, name);
        builder.append(&header, *data).unwrap();
    }
    compress(builder.into_inner().unwrap())
}

/// The Debian installation's `hstore` (its library, control file and scripts) repackaged as a
/// remote-extension archive: a real extension with a shared library.
pub fn hstore_archive() -> Vec<u8> {
    let bin = real_bin_dir();
    let real_lib = bin.parent().unwrap().join("lib");
    let version = bin.parent().unwrap().file_name().unwrap().to_owned();
    let real_ext = Path::new("/usr/share/postgresql")
        .join(version)
        .join("extension");
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "lib/hstore.so".into(),
        std::fs::read(real_lib.join("hstore.so")).unwrap(),
    )];
    for entry in std::fs::read_dir(&real_ext).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("hstore") && !name.starts_with("hstore_") {
            files.push((
                format!("share/extension/{name}"),
                std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, data)| (name.as_str(), data.as_slice()))
        .collect();
    archive(&entries)
}

/// A zstd tar with one symbolic link `name` → `target`.
pub fn archive_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o777);
    header.set_entry_type(tar::EntryType::Symlink);
    set_raw_name(&mut header, name);
    header.set_link_name(target).unwrap();
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
    compress(builder.into_inner().unwrap())
}

/// Sets the name bytes as given (`tar` refuses `..` and absolute names through `set_path`,
/// and a hostile archive is what the test needs).
fn set_raw_name(header: &mut tar::Header, name: &str) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
}

pub fn compress(tar: Vec<u8>) -> Vec<u8> {
    zstd::encode_all(&tar[..], 3).unwrap()
}
