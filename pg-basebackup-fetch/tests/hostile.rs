//! Hostile archives against the unpacker: traversal, absolute paths, symlink escapes,
//! devices and lying sizes are refused, and nothing is written outside PGDATA.

mod util;

use std::path::Path;

use pg_basebackup_fetch::unpack::{unpack, UnpackError, Unpacked};
use pg_basebackup_fetch::BasebackupError;
use pg_test_support::TestDir;
use tar::EntryType;
use util::archive::{raw_entry, raw_tar};

struct Scene {
    _dir: TestDir,
    pgdata: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn scene() -> Scene {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::create_dir(&outside).unwrap();
    Scene {
        _dir: dir,
        pgdata,
        outside,
    }
}

fn assert_refused(scene: &Scene, entries: &[Vec<u8>]) -> String {
    let result = unpack(raw_tar(entries).as_slice(), &scene.pgdata);
    let error = match result {
        Err(UnpackError::Write(error @ BasebackupError::UnsafeEntry { .. })) => error,
        Err(other) => panic!("refused for the wrong reason: {other:?}"),
        Ok(unpacked) => panic!("accepted: {unpacked:?}"),
    };
    assert_eq!(std::fs::read_dir(&scene.outside).unwrap().count(), 0);
    error.to_string()
}

#[test]
fn traversal_is_refused() {
    let scene = scene();
    let message = assert_refused(
        &scene,
        &[raw_entry(
            "base/../../outside/evil",
            EntryType::Regular,
            b"x",
            None,
        )],
    );
    assert!(message.contains(".."), "{message}");
}

#[test]
fn absolute_paths_are_refused() {
    let scene = scene();
    let name = scene.outside.join("evil");
    let message = assert_refused(
        &scene,
        &[raw_entry(
            name.to_str().unwrap(),
            EntryType::Regular,
            b"x",
            None,
        )],
    );
    assert!(message.contains("absolute"), "{message}");
}

#[test]
fn symlink_escapes_are_refused() {
    let scene = scene();
    let link = raw_entry("link", EntryType::Symlink, b"", Some(&scene.outside));
    let through = raw_entry("link/evil", EntryType::Regular, b"x", None);
    assert_refused(&scene, &[link, through]);
    assert!(!scene.pgdata.join("link").exists());
    let hard = raw_entry("hard", EntryType::Link, b"", Some(Path::new("/etc/passwd")));
    assert_refused(&scene, &[hard]);
}

#[test]
fn devices_are_refused() {
    let scene = scene();
    assert_refused(&scene, &[raw_entry("dev", EntryType::Char, b"", None)]);
    assert_refused(&scene, &[raw_entry("fifo", EntryType::Fifo, b"", None)]);
}

#[test]
fn a_file_cut_short_is_an_error_not_a_short_file() {
    let scene = scene();
    let mut tar = raw_entry("big", EntryType::Regular, &[7; 4096], None);
    tar.truncate(512 + 1000);
    let result = unpack(tar.as_slice(), &scene.pgdata);
    assert!(matches!(result, Err(UnpackError::Read(_))), "{result:?}");
}

#[test]
fn a_good_archive_unpacks_with_private_modes() {
    let scene = scene();
    let tar = raw_tar(&[
        raw_entry("./", EntryType::Directory, b"", None),
        raw_entry("base/1/", EntryType::Directory, b"", None),
        raw_entry("base/1/1259", EntryType::Regular, &[1; 1000], None),
        raw_entry("global/pg_control", EntryType::Regular, b"control", None),
    ]);
    // Trailing bytes after the end marker are read too (the stream is drained).
    let unpacked = unpack(tar.as_slice(), &scene.pgdata).unwrap();
    assert_eq!(
        unpacked,
        Unpacked {
            files: 2,
            bytes: 1007
        }
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(scene.pgdata.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("base/1/1259"), 0o600);
    assert_eq!(mode("global"), 0o700);
    assert_eq!(
        std::fs::read(scene.pgdata.join("global/pg_control")).unwrap(),
        b"control"
    );
}
