//! The PGDATA tar unpackers of `pg-basebackup-fetch`: the copying one (`unpack::unpack`, a
//! pageserver's gunzipped stream) and the splicing one (`spliced::unpack` through
//! `spliced::Copying`, a primary's plain tar), each into its own empty directory inside a
//! fresh temporary directory.
//!
//! Invariants: no panic (and no hang: the stream is finite); nothing is created outside the
//! destination; inside it there are only regular files and directories (no links, devices,
//! FIFOs); when both unpackers accept the stream, they leave the same tree and report the
//! same counts.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::Path;

use pg_basebackup_fetch::spliced::{self, Copying};
use pg_basebackup_fetch::unpack::{self, Unpacked};

/// A tree: relative path → `None` for a directory, the content for a file.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
    let entries = fs::read_dir(dir).expect("the unpacked tree is readable");
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("below the root")
            .to_string_lossy()
            .into_owned();
        let kind = fs::symlink_metadata(&path).expect("metadata").file_type();
        if kind.is_dir() {
            tree.insert(relative, None);
            walk(root, &path, tree);
        } else if kind.is_file() {
            tree.insert(
                relative,
                Some(fs::read(&path).expect("a written file reads")),
            );
        } else {
            panic!("the unpacker created {relative:?}, neither a file nor a directory: {kind:?}");
        }
    }
}

fn only(root: &Path, name: &str) {
    let names: Vec<String> = fs::read_dir(root)
        .expect("the temporary directory is readable")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, [name], "the unpacker wrote outside its destination");
}

fn one(data: &[u8], spliced_unpacker: bool) -> Option<(Unpacked, Tree)> {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dest = root.path().join("pgdata");
    fs::create_dir(&dest).expect("the destination");
    let result = if spliced_unpacker {
        spliced::unpack(&mut Copying::new(Cursor::new(data)), &dest)
    } else {
        unpack::unpack(Cursor::new(data), &dest)
    };
    only(root.path(), "pgdata");
    let mut tree = Tree::new();
    walk(&dest, &dest, &mut tree);
    result.ok().map(|unpacked| (unpacked, tree))
}

/// The body.
pub fn run(data: &[u8]) {
    crate::ignore_sigpipe();
    let copying = one(data, false);
    let splicing = one(data, true);
    if let (Some(copying), Some(splicing)) = (copying, splicing) {
        assert_eq!(copying, splicing, "the two unpackers disagree");
    }
}
