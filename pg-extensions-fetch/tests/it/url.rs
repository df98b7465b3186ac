//! An allowed extension name holding `..` or `/` (the spec may list any name) stays one
//! segment of the archive URL: it cannot make the download fetch another object.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common::{archive, scratch_installation, tree, Answer, ArchiveServer};
use pg_extensions_fetch::{Downloader, FetchError, Limits};

#[test]
fn an_extension_name_with_dot_segments_cannot_reach_another_archive() {
    let dir = tempfile::tempdir().unwrap();
    let server = ArchiveServer::start();
    // What `v15/extensions/../../v16/extensions/evil.tar.zst` would reach once normalised.
    let evil = archive(&[("lib/evil.so", b"\x7fELF not really")]);
    server.serve("v16", "evil", Answer::ok(evil));
    let downloader = Downloader::new(
        server.base_url.clone(),
        scratch_installation(dir.path()),
        Limits::default(),
    );
    let error = downloader.fetch("../../v16/extensions/evil").unwrap_err();
    assert!(
        matches!(&error, FetchError::Download(m) if m.contains("404")),
        "{error}"
    );
    assert_eq!(server.requests("v16", "evil"), 0);
    assert_eq!(
        server.requests("v15", "..%2F..%2Fv16%2Fextensions%2Fevil"),
        1,
        "the name was not one encoded segment"
    );
    for dots in [".", ".."] {
        let error = downloader.fetch(dots).unwrap_err();
        assert!(
            matches!(&error, FetchError::Spec(m) if m.contains("relative path segment")),
            "{error}"
        );
    }
    assert!(tree(dir.path()).iter().all(|path| !path.contains("evil")));
}
