//! Archives for the tests: a gzip tar of a real, cleanly shut down data directory, and
//! hand-made hostile tars (built from raw headers, as `tar::Builder` refuses bad names).

use std::path::Path;

use pg_test_support::TestPostgres;

/// A gzip tar of a cleanly shut down data directory whose `cloud_admin` cluster holds a
/// table `fetched(v int)` with the rows 1, 2, 3. `extra` entries are appended (name, data).
pub fn clean_cluster_tar_gz(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut postgres = TestPostgres::start();
    postgres.psql("CREATE TABLE fetched(v int); INSERT INTO fetched VALUES (1), (2), (3);");
    postgres.stop_fast();
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", postgres.data_dir()).unwrap();
    for (name, data) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, *data).unwrap();
    }
    gzip(&tar.into_inner().unwrap())
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// One raw tar entry (a pre-POSIX header): `name` written verbatim into the header.
pub fn raw_entry(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&Path>) -> Vec<u8> {
    entry_with(tar::Header::new_old(), name, kind, data, link)
}

/// One raw tar entry with a GNU header (which long-name and pax entries need).
pub fn raw_gnu_entry(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    entry_with(tar::Header::new_gnu(), name, kind, data, None)
}

fn entry_with(
    mut header: tar::Header,
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&Path>,
) -> Vec<u8> {
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    let mut entry = header.as_bytes().to_vec();
    entry.extend_from_slice(data);
    entry.resize(entry.len().div_ceil(512) * 512, 0);
    entry
}

/// A whole tar from raw entries, with the end-of-archive blocks.
pub fn raw_tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut tar: Vec<u8> = entries.concat();
    tar.extend_from_slice(&[0; 1024]);
    tar
}
