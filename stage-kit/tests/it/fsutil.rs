//! `stage_kit::fsutil` under attack: links planted (and swapped in during the walk) where
//! root writes, foreign directories where it expects its own. Run as root (the chown tests
//! give files to another uid).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use stage_kit::fsutil::{chown_tree, private_dir, replace_file, FileOptions, Owner};

/// The uid and gid the tests give trees to (nobody has to exist with them).
const TO: Owner = Owner {
    uid: 54_321,
    gid: 54_322,
};

fn owner_of(path: &Path) -> (u32, u32) {
    let metadata = fs::symlink_metadata(path).unwrap();
    (metadata.uid(), metadata.gid())
}

/// A link in the tree to a file outside: the link is changed, the file is not.
#[test]
fn chown_tree_changes_a_planted_link_not_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("passwd"), "root:x:0:0\n").unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/file"), "x").unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), tree.join("sub/passwd")).unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("dirlink")).unwrap();
    chown_tree(&tree, TO).unwrap();
    for mine in ["", "sub", "sub/file", "sub/passwd", "dirlink"] {
        assert_eq!(owner_of(&tree.join(mine)), (TO.uid, TO.gid), "{mine}");
    }
    assert_eq!(owner_of(&outside), (0, 0), "a linked directory was changed");
    assert_eq!(
        owner_of(&outside.join("passwd")),
        (0, 0),
        "a linked file was changed"
    );
    // The root itself a link: only the link changes.
    let top = dir.path().join("top");
    std::os::unix::fs::symlink(&outside, &top).unwrap();
    chown_tree(&top, TO).unwrap();
    assert_eq!(owner_of(&top), (TO.uid, TO.gid));
    assert_eq!(owner_of(&outside), (0, 0));
}

/// While the walk runs, a thread keeps exchanging a directory of the tree with a link to a
/// directory outside holding files of the same names (`renameat2(RENAME_EXCHANGE)`): a walk
/// that lists or changes entries by path goes through the link. Nothing outside may change.
#[test]
fn chown_tree_never_follows_a_link_swapped_in_during_the_walk() {
    const FILES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::create_dir(&outside).unwrap();
    for i in 0..FILES {
        fs::write(tree.join(format!("sub/f{i}")), "mine").unwrap();
        fs::write(outside.join(format!("f{i}")), "not mine").unwrap();
    }
    std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (a, b) = (tree.join("sub"), tree.join("link"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let started = Instant::now();
    let mut walks = 0;
    while started.elapsed() < Duration::from_secs(3) {
        chown_tree(&tree, TO).unwrap();
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swapper ran only {swaps} times");
    let changed: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| owner_of(path) != (0, 0))
        .collect();
    assert!(
        changed.is_empty(),
        "{} files outside the tree were given away in {walks} walks ({swaps} swaps), e.g. {}",
        changed.len(),
        changed[0].display()
    );
    assert_eq!(owner_of(&outside), (0, 0));
}

/// A link planted at the path: replaced by the new file, its target untouched.
#[test]
fn replace_file_replaces_a_planted_link_and_never_writes_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("shadow");
    fs::write(&victim, "secret\n").unwrap();
    let path = dir.path().join("pg_hba.conf");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    replace_file(
        &path,
        b"local all all trust\n",
        FileOptions::mode(0o600).owned_by(Some(TO)),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "secret\n");
    assert_eq!(owner_of(&victim), (0, 0));
    let metadata = fs::symlink_metadata(&path).unwrap();
    assert!(metadata.is_file(), "the path is still a link");
    assert_eq!(metadata.mode() & 0o7777, 0o600);
    assert_eq!((metadata.uid(), metadata.gid()), (TO.uid, TO.gid));
    assert_eq!(fs::read_to_string(&path).unwrap(), "local all all trust\n");
    // Nothing left beside it.
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The file is never written into an existing file: another user's world-readable file
/// that it keeps open (planted at the path) never sees the content.
#[test]
fn replace_file_never_writes_into_a_file_another_user_holds_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.key");
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&path, Some(TO.uid), Some(TO.gid)).unwrap();
    let mut held = fs::File::open(&path).unwrap();
    replace_file(&path, b"PRIVATE KEY", FileOptions::mode(0o600)).unwrap();
    let mut seen = String::new();
    held.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "", "the content went into the planted file");
    assert_eq!(fs::read_to_string(&path).unwrap(), "PRIVATE KEY");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
}

/// A parent like `/tmp` (1777).
fn shared_parent() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// A link planted where the private directory goes (in a world-writable parent) is refused,
/// and its target keeps its mode and owner.
#[test]
fn private_dir_refuses_a_planted_link() {
    let parent = shared_parent();
    let target = parent.path().join("etc");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let path = parent.path().join("compute-tools-0123456789abcdef");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let error = private_dir(&path, Some(TO)).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("symbolic link"), "{error}");
    assert!(error.contains("remove it"), "{error}");
    let metadata = fs::metadata(&target).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o755);
    assert_eq!((metadata.uid(), metadata.gid()), (0, 0));
}

/// In a world-writable parent, a directory that is another user's, or ours but open to
/// others, is refused and left as it is; ours with 0700 is accepted and given to the owner.
#[test]
fn private_dir_refuses_a_planted_directory_in_a_shared_parent() {
    let parent = shared_parent();
    let foreign = parent.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(12_345), Some(12_345)).unwrap();
    let error = private_dir(&foreign, Some(TO)).unwrap_err().to_string();
    assert!(error.contains("belongs to uid 12345"), "{error}");
    assert_eq!(owner_of(&foreign), (12_345, 12_345));

    let open = parent.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let error = private_dir(&open, Some(TO)).unwrap_err().to_string();
    assert!(error.contains("mode is 0777"), "{error}");
    assert_eq!(fs::metadata(&open).unwrap().mode() & 0o7777, 0o777);

    // Ours from an earlier start (given to the owner then): accepted.
    let earlier = parent.path().join("earlier");
    fs::create_dir(&earlier).unwrap();
    fs::set_permissions(&earlier, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&earlier, Some(TO.uid), Some(TO.gid)).unwrap();
    private_dir(&earlier, Some(TO)).unwrap();

    let fresh = parent.path().join("fresh");
    private_dir(&fresh, Some(TO)).unwrap();
    let metadata = fs::symlink_metadata(&fresh).unwrap();
    assert!(metadata.is_dir());
    assert_eq!(metadata.mode() & 0o7777, 0o700);
    assert_eq!((metadata.uid(), metadata.gid()), (TO.uid, TO.gid));
}

/// In a parent only root writes, an existing directory is adopted (0700, chowned); a link
/// there is still refused.
#[test]
fn private_dir_adopts_an_existing_directory_in_a_private_parent() {
    let parent = tempfile::tempdir().unwrap();
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let existing = parent.path().join("pgdata");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
    private_dir(&existing, Some(TO)).unwrap();
    let metadata = fs::metadata(&existing).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o700);
    assert_eq!((metadata.uid(), metadata.gid()), (TO.uid, TO.gid));
    let link = parent.path().join("link");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    assert!(private_dir(&link, None).is_err());
    let nested = parent.path().join("a/b/c");
    private_dir(&nested, None).unwrap();
    assert_eq!(fs::metadata(&nested).unwrap().mode() & 0o7777, 0o700);
}

/// A link planted where PGDATA's lock file goes (beside PGDATA, or in `/tmp` for the
/// fallback): the lock is refused naming it, and the link's target is neither truncated nor
/// given the holder's text.
#[test]
fn the_pgdata_lock_never_opens_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("shadow");
    fs::write(&victim, "root:secret\n").unwrap();
    let pgdata = dir.path().join("pgdata");
    let lock = stage_kit::pgdata_lock::lock_path(&pgdata).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let error = stage_kit::pgdata_lock::acquire(&pgdata, "test", Duration::from_millis(100))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&lock.display().to_string()), "{error}");
    assert!(error.contains("symbolic link"), "{error}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root:secret\n");
}

/// In a directory like `/tmp`, a lock file another user created first (and could hold the
/// lock on, or read) is refused.
#[test]
fn the_pgdata_lock_refuses_another_user_s_file_in_a_shared_directory() {
    let parent = shared_parent();
    let pgdata = parent.path().join("pgdata");
    let lock = stage_kit::pgdata_lock::lock_path(&pgdata).unwrap();
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&lock, Some(12_345), Some(12_345)).unwrap();
    let error = stage_kit::pgdata_lock::acquire(&pgdata, "test", Duration::from_millis(100))
        .unwrap_err()
        .to_string();
    assert!(error.contains("belongs to uid 12345"), "{error}");
    assert_eq!(fs::read_to_string(&lock).unwrap(), "");
}
