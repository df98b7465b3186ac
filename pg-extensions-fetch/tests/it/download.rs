//! Downloads from a real HTTP server into a scratch installation: errors from the server,
//! damaged and hostile archives, the size cap, and one download per archive with waiters
//! that have a deadline.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::{Duration, Instant};

use crate::common::{
    archive, archive_with_symlink, scratch_installation, tree, Answer, ArchiveServer,
};
use pg_extensions_fetch::{Downloader, FetchError, Fetched, Limits};
use pg_test_support::probe::eventually;

fn downloader(server: &ArchiveServer, root: &std::path::Path, limits: Limits) -> Downloader {
    Downloader::new(server.base_url.clone(), scratch_installation(root), limits)
}

#[test]
fn an_archive_is_unpacked_into_both_directories_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let body = archive(&[
        ("share/extension/demo.control", b"default_version = '1.0'\n"),
        ("share/extension/demo--1.0.sql", b"SELECT 1;\n"),
        ("./lib/demo.so", b"\x7fELF not really"),
        ("lib/demo/sub/data.bin", b"nested"),
        ("README", b"ignored: outside share/extension and lib"),
    ]);
    server.serve("v15", "demo", Answer::ok(body.clone()));
    let downloader = downloader(&server, dir.path(), Limits::default());
    assert_eq!(
        downloader.fetch("demo").unwrap(),
        Fetched::Downloaded(body.len() as u64)
    );
    assert_eq!(downloader.fetch("demo").unwrap(), Fetched::AlreadyPresent);
    assert_eq!(server.requests("v15", "demo"), 1);
    assert_eq!(
        tree(dir.path()),
        [
            "lib",
            "lib/demo",
            "lib/demo.so",
            "lib/demo/sub",
            "lib/demo/sub/data.bin",
            "share",
            "share/extension",
            "share/extension/demo--1.0.sql",
            "share/extension/demo.control",
        ]
    );
    assert_eq!(
        std::fs::read(dir.path().join("lib/demo/sub/data.bin")).unwrap(),
        b"nested"
    );
    let requests = downloader.requests();
    assert_eq!(
        requests,
        [("demo.tar.zst".to_string(), "200 OK".to_string(), 1)]
    );
}

#[test]
fn server_errors_fail_with_their_status_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    server.serve("v15", "broken", Answer::status(500));
    let downloader = downloader(&server, dir.path(), Limits::default());
    let missing = downloader.fetch("missing").unwrap_err();
    assert!(
        matches!(&missing, FetchError::Download(m) if m.contains("404")),
        "{missing}"
    );
    assert_eq!(missing.http_status(), 500);
    let broken = downloader.fetch("broken").unwrap_err();
    assert!(broken.to_string().contains("500"), "{broken}");
    // A failed download is not remembered: the next request tries again.
    assert!(downloader.fetch("broken").is_err());
    assert_eq!(server.requests("v15", "broken"), 2);
    assert_eq!(
        downloader.requests(),
        [
            (
                "broken.tar.zst".into(),
                "500 Internal Server Error".into(),
                2
            ),
            ("missing.tar.zst".into(), "404 Not Found".into(), 1),
        ]
    );
    assert_eq!(tree(dir.path()), ["lib", "share", "share/extension"]);
}

#[test]
fn an_unreachable_server_is_an_error_counted_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let port = pg_test_support::free_tcp_port();
    let downloader = Downloader::new(
        format!("http://127.0.0.1:{port}/"),
        scratch_installation(dir.path()),
        Limits::default(),
    );
    let error = downloader.fetch("demo").unwrap_err();
    assert!(matches!(error, FetchError::Download(_)), "{error}");
    assert_eq!(
        downloader.requests(),
        [("demo.tar.zst".into(), "unknown".into(), 1)]
    );
}

#[test]
fn a_truncated_archive_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
    let mut body = archive(&[
        ("share/extension/cut.control", b"default_version = '1.0'\n"),
        ("lib/cut.so", &big),
    ]);
    body.truncate(body.len() * 2 / 3);
    server.serve("v15", "cut", Answer::ok(body));
    let downloader = downloader(&server, dir.path(), Limits::default());
    let error = downloader.fetch("cut").unwrap_err();
    assert!(matches!(error, FetchError::Archive(_)), "{error}");
    assert_eq!(tree(dir.path()), ["lib", "share", "share/extension"]);
}

#[test]
fn hostile_archives_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("install");
    let server = ArchiveServer::start();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "dotdot",
            archive(&[
                ("share/extension/ok.control", b"x"),
                ("lib/../../escaped", b"x"),
            ]),
            "contains `..`",
        ),
        (
            "absolute",
            archive(&[("/tmp/escaped-absolute", b"x")]),
            "absolute path",
        ),
        (
            "symlink",
            archive_with_symlink("lib/evil.so", "/etc/passwd"),
            "Symlink",
        ),
        (
            "symlinkdir",
            archive_with_symlink("share/extension/d", "../../.."),
            "Symlink",
        ),
        (
            "garbage",
            b"this is not zstd".to_vec(),
            "archive garbage.tar.zst",
        ),
    ];
    let downloader = downloader(&server, &root, Limits::default());
    for (name, body, expected) in cases {
        server.serve("v15", name, Answer::ok(body));
        let error = downloader.fetch(name).unwrap_err();
        assert!(matches!(error, FetchError::Archive(_)), "{name}: {error}");
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
    assert_eq!(
        tree(dir.path()),
        [
            "install",
            "install/lib",
            "install/share",
            "install/share/extension"
        ]
    );
    assert!(!std::path::Path::new("/tmp/escaped-absolute").exists());
}

#[test]
fn the_unpacked_size_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let zeros = vec![0u8; 1 << 20];
    server.serve(
        "v15",
        "bomb",
        Answer::ok(archive(&[("lib/a.so", &zeros), ("lib/b.so", &zeros)])),
    );
    let limits = Limits {
        max_unpacked_bytes: 1_500_000,
        ..Limits::default()
    };
    let downloader = downloader(&server, dir.path(), limits);
    let error = downloader.fetch("bomb").unwrap_err();
    assert!(
        error.to_string().contains("more than 1500000 bytes"),
        "{error}"
    );
    assert_eq!(tree(dir.path()), ["lib", "share", "share/extension"]);
}

/// 100,000 empty files cost a few hundred KiB compressed and a file each to unpack: refused
/// at the entry cap, with nothing installed and nothing staged left behind.
#[test]
fn an_archive_of_too_many_entries_is_refused_and_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let names: Vec<String> = (0..100_000).map(|i| format!("lib/many-{i}.so")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let body = archive(&entries);
    eprintln!("100,000 empty files: {} bytes compressed", body.len());
    server.serve("v15", "many", Answer::ok(body));
    let default = downloader(&server, dir.path(), Limits::default());
    let started = Instant::now();
    let error = default.fetch("many").unwrap_err();
    let took = started.elapsed();
    eprintln!("refused in {took:?}");
    assert!(
        error
            .to_string()
            .contains("more than 10000 entries (the --max-entries cap); nothing was installed"),
        "{error}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(tree(dir.path()), ["lib", "share", "share/extension"]);
    // At the cap exactly, an archive is installed.
    let limits = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let exact = downloader(&server, dir.path(), limits);
    server.serve(
        "v15",
        "three",
        Answer::ok(archive(&[
            ("lib/a.so", b"a"),
            ("lib/b.so", b"b"),
            ("share/extension/c.control", b"c"),
        ])),
    );
    assert!(
        exact.fetch("three").is_ok(),
        "an archive of exactly the cap is installed"
    );
    assert!(dir.path().join("share/extension/c.control").is_file());
}

#[test]
fn concurrent_requests_download_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let mut answer = Answer::ok(archive(&[("lib/slow.so", b"slow")]));
    answer.delay = Duration::from_millis(300);
    server.serve("v15", "slow", answer);
    let downloader = downloader(&server, dir.path(), Limits::default());
    let results: Vec<Fetched> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| downloader.fetch("slow").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(server.requests("v15", "slow"), 1);
    let downloaded = results
        .iter()
        .filter(|r| matches!(r, Fetched::Downloaded(_)))
        .count();
    assert_eq!(downloaded, 1, "{results:?}");
    assert!(dir.path().join("lib/slow.so").is_file());
}

#[test]
fn a_waiter_gives_up_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let mut answer = Answer::ok(archive(&[("lib/stuck.so", b"stuck")]));
    answer.delay = Duration::from_secs(3);
    server.serve("v15", "stuck", answer);
    let limits = Limits {
        wait_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let downloader = downloader(&server, dir.path(), limits);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| downloader.fetch("stuck"));
        // The waiter must arrive while the first download runs: wait until the server saw it.
        eventually(
            Duration::from_secs(10),
            "the first request at the server",
            || server.requests("v15", "stuck") > 0,
        );
        let started = Instant::now();
        let error = downloader.fetch("stuck").unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(error, FetchError::Busy(_)), "{error}");
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(first.join().unwrap().is_ok());
    });
    assert_eq!(server.requests("v15", "stuck"), 1);
}

#[test]
fn a_download_has_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let mut answer = Answer::ok(archive(&[("lib/late.so", b"late")]));
    answer.delay = Duration::from_secs(3);
    server.serve("v15", "late", answer);
    let limits = Limits {
        download_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let downloader = downloader(&server, dir.path(), limits);
    let started = Instant::now();
    let error = downloader.fetch("late").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{error}");
    assert!(matches!(error, FetchError::Download(_)), "{error}");
}

#[test]
fn the_download_size_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    // Incompressible data, so the compressed archive is larger than the cap.
    let mut state = 1u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    server.serve(
        "v15",
        "huge",
        Answer::ok(archive(&[("lib/huge.so", &noise)])),
    );
    let limits = Limits {
        max_download_bytes: 100_000,
        ..Limits::default()
    };
    let downloader = downloader(&server, dir.path(), limits);
    let error = downloader.fetch("huge").unwrap_err();
    assert!(matches!(error, FetchError::Download(_)), "{error}");
    assert!(
        error.to_string().contains("at most 100000 bytes"),
        "{error}"
    );
    assert_eq!(tree(dir.path()), ["lib", "share", "share/extension"]);
}

#[test]
fn a_waiter_takes_over_when_the_first_download_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    let mut answer = Answer::status(500);
    answer.delay = Duration::from_millis(300);
    server.serve("v15", "flaky", answer);
    let downloader = downloader(&server, dir.path(), Limits::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| downloader.fetch("flaky"));
        eventually(
            Duration::from_secs(10),
            "the first request at the server",
            || server.requests("v15", "flaky") > 0,
        );
        // Arrives while the first download runs, waits for it, then tries itself.
        let second = downloader.fetch("flaky").unwrap_err();
        assert!(second.to_string().contains("500"), "{second}");
        assert!(first.join().unwrap().is_err());
    });
    assert_eq!(server.requests("v15", "flaky"), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}
