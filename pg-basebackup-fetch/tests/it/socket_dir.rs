//! The socket directory outside PGDATA (`/tmp/compute-tools-<hash>` when the socket path
//! would not fit in PGDATA) lives where anyone can create a name first: a link or another
//! user's directory planted there is refused, naming the path; our own from an earlier
//! start is accepted.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use compute_spec::exit_code;
use pg_test_support::{free_tcp_port, TestDir};

use crate::util;

/// A parent like `/tmp` (1777) and a PGDATA beside it.
fn setup() -> (TestDir, TestDir) {
    let shared = TestDir::new("sock");
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    (shared, TestDir::new("bbf-sock"))
}

/// Runs the stage (initdb source) with `socket_dir`; its exit code and error message.
fn run(pgdata: &Path, socket_dir: &Path) -> (i32, String) {
    let mut document = util::document(pgdata, free_tcp_port(), |_| {});
    document.instance.socket_dir = socket_dir.to_path_buf();
    let outcome = util::run_stage(&document, &[]);
    let message = outcome.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (outcome.code, message)
}

/// A link planted at the socket directory's name, to a directory of root's: refused, and
/// the target keeps its mode and owner (it is not made 0700 nor given to postgres).
#[test]
fn a_socket_dir_planted_as_a_link_is_refused() {
    let (shared, data) = setup();
    let target = shared.path().join("etc");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let socket_dir = shared.path().join("compute-tools-0123456789abcdef");
    std::os::unix::fs::symlink(&target, &socket_dir).unwrap();
    let (code, message) = run(&data.path().join("pgdata"), &socket_dir);
    assert_ne!(
        code,
        i32::from(exit_code::OK),
        "a planted link was accepted"
    );
    assert!(
        message.contains(&socket_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("symbolic link"), "{message}");
    assert!(message.contains("--socket-dir"), "{message}");
    let metadata = fs::metadata(&target).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o755);
    assert_eq!((metadata.uid(), metadata.gid()), (0, 0));
}

/// Another user's world-writable directory planted at the name: refused and left alone.
#[test]
fn a_socket_dir_planted_by_another_user_is_refused() {
    let (shared, data) = setup();
    let socket_dir = shared.path().join("compute-tools-fedcba9876543210");
    fs::create_dir(&socket_dir).unwrap();
    fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&socket_dir, Some(12_345), Some(12_345)).unwrap();
    let (code, message) = run(&data.path().join("pgdata"), &socket_dir);
    assert_ne!(
        code,
        i32::from(exit_code::OK),
        "a planted directory was accepted"
    );
    assert!(
        message.contains(&socket_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("belongs to uid 12345"), "{message}");
    let metadata = fs::metadata(&socket_dir).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o777);
    assert_eq!(metadata.uid(), 12_345);
}

/// The directory made by an earlier start (postgres's, 0700) is accepted by the next one.
#[test]
fn our_socket_dir_from_an_earlier_start_is_accepted() {
    let (shared, data) = setup();
    let socket_dir = shared.path().join("compute-tools-00000000000000aa");
    let pgdata = data.path().join("pgdata");
    for start in 1..=2 {
        let (code, message) = run(&pgdata, &socket_dir);
        assert_eq!(code, i32::from(exit_code::OK), "start {start}: {message}");
        let metadata = fs::symlink_metadata(&socket_dir).unwrap();
        assert!(metadata.is_dir());
        assert_eq!(metadata.mode() & 0o7777, 0o700, "start {start}");
        assert_eq!(metadata.uid(), fs::metadata(&pgdata).unwrap().uid());
    }
}
