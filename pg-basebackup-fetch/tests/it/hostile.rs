//! Hostile archives against both unpackers (the copying one, for gzip streams, and the
//! splicing one, for a primary's stream): traversal, absolute paths, symlink escapes,
//! devices and lying sizes are refused, and nothing is written outside PGDATA.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;

use crate::util::archive::{raw_entry, raw_gnu_entry, raw_tar};
use pg_basebackup_fetch::spliced::{self, Copying};
use pg_basebackup_fetch::unpack::{self, UnpackError, Unpacked};
use pg_basebackup_fetch::BasebackupError;
use pg_test_support::TestDir;
use tar::EntryType;

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

type Unpacker = fn(&[u8], &Path) -> Result<Unpacked, UnpackError>;

fn copying(tar: &[u8], dest: &Path) -> Result<Unpacked, UnpackError> {
    unpack::unpack(tar, dest)
}

fn splicing(tar: &[u8], dest: &Path) -> Result<Unpacked, UnpackError> {
    spliced::unpack(&mut Copying::new(tar), dest)
}

/// Both unpackers, by name.
const UNPACKERS: [(&str, Unpacker); 2] = [("copying", copying), ("splicing", splicing)];

/// Runs `tar` through each unpacker into a fresh scene; the message of each refusal.
fn assert_refused(entries: &[Vec<u8>]) -> Vec<String> {
    let tar = raw_tar(entries);
    let mut messages = Vec::new();
    for (name, unpacker) in UNPACKERS {
        let scene = scene();
        let error = match unpacker(&tar, &scene.pgdata) {
            Err(UnpackError::Write(error @ BasebackupError::UnsafeEntry { .. })) => error,
            Err(other) => panic!("{name}: refused for the wrong reason: {other:?}"),
            Ok(unpacked) => panic!("{name}: accepted: {unpacked:?}"),
        };
        assert_eq!(
            std::fs::read_dir(&scene.outside).unwrap().count(),
            0,
            "{name}"
        );
        assert!(!scene.pgdata.join("link").exists(), "{name}");
        messages.push(error.to_string());
    }
    messages
}

#[test]
fn traversal_is_refused() {
    let messages = assert_refused(&[raw_entry(
        "base/../../outside/evil",
        EntryType::Regular,
        b"x",
        None,
    )]);
    for message in messages {
        assert!(message.contains(".."), "{message}");
    }
}

#[test]
fn absolute_paths_are_refused() {
    let dir = TestDir::new("bbf-");
    let name = dir.path().join("evil");
    let messages = assert_refused(&[raw_entry(
        name.to_str().unwrap(),
        EntryType::Regular,
        b"x",
        None,
    )]);
    for message in messages {
        assert!(message.contains("absolute"), "{message}");
    }
    assert!(!name.exists());
}

#[test]
fn symlink_escapes_are_refused() {
    let outside = TestDir::new("bbf-");
    let link = raw_entry("link", EntryType::Symlink, b"", Some(outside.path()));
    let through = raw_entry("link/evil", EntryType::Regular, b"x", None);
    assert_refused(&[link, through]);
    let hard = raw_entry("hard", EntryType::Link, b"", Some(Path::new("/etc/passwd")));
    assert_refused(&[hard]);
}

#[test]
fn devices_are_refused() {
    assert_refused(&[raw_entry("dev", EntryType::Char, b"", None)]);
    assert_refused(&[raw_entry("fifo", EntryType::Fifo, b"", None)]);
}

#[test]
fn a_file_cut_short_is_an_error_not_a_short_file() {
    let mut tar = raw_entry("big", EntryType::Regular, &[7; 4096], None);
    tar.truncate(512 + 1000);
    for (name, unpacker) in UNPACKERS {
        let scene = scene();
        let result = unpacker(&tar, &scene.pgdata);
        assert!(
            matches!(result, Err(UnpackError::Read(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn a_good_archive_unpacks_with_private_modes() {
    let large: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let tar = raw_tar(&[
        raw_entry("./", EntryType::Directory, b"", None),
        raw_entry("base/1/", EntryType::Directory, b"", None),
        raw_entry("base/1/1259", EntryType::Regular, &[1; 1000], None),
        raw_entry("global/pg_control", EntryType::Regular, b"control", None),
        raw_entry("base/1/empty", EntryType::Regular, b"", None),
        raw_entry("base/1/16384", EntryType::Regular, &large, None),
    ]);
    for (name, unpacker) in UNPACKERS {
        let scene = scene();
        let unpacked = unpacker(&tar, &scene.pgdata).unwrap();
        assert_eq!(
            unpacked,
            Unpacked {
                files: 4,
                bytes: 1007 + large.len() as u64
            },
            "{name}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(scene.pgdata.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("base/1/1259"), 0o600, "{name}");
        assert_eq!(mode("global"), 0o700, "{name}");
        let read = |p: &str| std::fs::read(scene.pgdata.join(p)).unwrap();
        assert_eq!(read("global/pg_control"), b"control", "{name}");
        assert_eq!(read("base/1/1259"), vec![1; 1000], "{name}");
        assert!(read("base/1/empty").is_empty(), "{name}");
        assert!(
            read("base/1/16384") == large,
            "{name}: the large file differs"
        );
    }
}

#[test]
fn long_names_are_honoured_and_checked_like_short_ones() {
    let deep = format!("base/{}/1259", "d".repeat(150));
    let mut gnu = raw_gnu_entry("././@LongLink", EntryType::GNULongName, deep.as_bytes());
    gnu.extend(raw_gnu_entry("ignored", EntryType::Regular, b"gnu"));
    let pax_name = format!("base/{}/2608", "p".repeat(150));
    let mut pax = raw_gnu_entry("pax", EntryType::XHeader, &pax_record("path", &pax_name));
    pax.extend(raw_gnu_entry("ignored2", EntryType::Regular, b"pax"));
    for (name, unpacker) in UNPACKERS {
        let scene = scene();
        let tar = raw_tar(&[gnu.clone(), pax.clone()]);
        unpacker(&tar, &scene.pgdata).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            std::fs::read(scene.pgdata.join(&deep)).unwrap(),
            b"gnu",
            "{name}"
        );
        assert_eq!(
            std::fs::read(scene.pgdata.join(&pax_name)).unwrap(),
            b"pax",
            "{name}"
        );
        assert!(!scene.pgdata.join("ignored").exists(), "{name}");
    }
    let evil = raw_gnu_entry("././@LongLink", EntryType::GNULongName, b"a/../../../evil");
    assert_refused(&[evil, raw_gnu_entry("fine", EntryType::Regular, b"x")]);
    let evil = raw_gnu_entry(
        "pax",
        EntryType::XHeader,
        &pax_record("path", "/tmp/evil-pax"),
    );
    assert_refused(&[evil, raw_gnu_entry("fine", EntryType::Regular, b"x")]);
}

/// One pax record, `"<length> <key>=<value>\n"`, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut length = body.len() + 1;
    while format!("{length}{body}").len() != length {
        length += 1;
    }
    format!("{length}{body}").into_bytes()
}

#[test]
fn a_corrupt_header_is_caught_by_its_checksum() {
    let mut entry = raw_entry("base/1/1259", EntryType::Regular, &[1; 600], None);
    entry[10] ^= 0x20; // the name changes, the checksum does not
    let tar = raw_tar(&[entry]);
    let scene = scene();
    let result = splicing(&tar, &scene.pgdata);
    match result {
        Err(UnpackError::Read(error)) => assert!(error.to_string().contains("checksum"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_writer_stops_the_splicing_reader_instead_of_blocking_it() {
    // A file where a directory must go: the writer fails, then more than a pipe's worth of
    // data follows, which the reader could never push into a pipe nobody reads.
    let scene = scene();
    std::fs::write(scene.pgdata.join("base"), b"a file").unwrap();
    let tar = raw_tar(&[
        raw_entry("base/1/1259", EntryType::Regular, &[1; 100], None),
        raw_entry("global/big", EntryType::Regular, &vec![2; 4 << 20], None),
    ]);
    let result = splicing(&tar, &scene.pgdata);
    assert!(matches!(result, Err(UnpackError::Write(_))), "{result:?}");
}

/// A GNU header (binary size field) for `name` of `kind` claiming `size` bytes, with no data.
fn claiming(name: &str, kind: EntryType, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o600);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}

#[test]
fn a_header_claiming_a_size_no_tar_can_hold_is_a_read_error_not_an_overflow() {
    // Rounded up to whole blocks, these sizes pass 2^64 (a debug build panicked, a release
    // one wrapped to a tiny size and read file data as headers).
    for size in [u64::MAX, u64::MAX - 510, (u64::MAX / 512) * 512 + 1] {
        for kind in [
            EntryType::Regular,
            EntryType::Directory,
            EntryType::XGlobalHeader,
        ] {
            let tar = raw_tar(&[claiming("base/huge", kind, size)]);
            for (name, unpacker) in UNPACKERS {
                let scene = scene();
                let result = unpacker(&tar, &scene.pgdata);
                assert!(
                    matches!(result, Err(UnpackError::Read(_))),
                    "{name}, {kind:?} of {size}: {result:?}"
                );
            }
        }
    }
}
