//! Reading what an operator hands us — a spec or config file, a TLS certificate or key, a
//! document on stdin — with a size cap, so that no path can grow our memory or hang us.
//!
//! [`read_file`] opens the path with `O_NONBLOCK` (a FIFO with no writer does not block the
//! `open`) and `O_NOCTTY`, then checks the opened file with `fstat`: it must be a **regular
//! file** (a FIFO, a device such as `/dev/zero`, a socket or a directory is refused before a
//! byte is read) no larger than the cap (a 2 GiB sparse file is refused by its size, unread).
//! It then reads at most `cap + 1` bytes, so a file that grows while it is read is refused
//! too. Symbolic links are followed: Kubernetes mounts ConfigMaps and Secrets as links.
//!
//! [`read_stdin`] cannot choose what stdin is: a regular file there is checked by size first,
//! a character device that is not a terminal (`/dev/zero`) is refused unread, anything else (a
//! pipe, a terminal) is read up to `cap + 1` bytes and refused beyond the cap, so memory stays
//! within the cap.
//!
//! The caps are constants here ([`SPEC_MAX_BYTES`] …), each said in the README.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest spec (`-S`, `-c`, `--spec`, or on stdin of `compute-spec`): far above any real
/// spec (thousands of roles and databases are a few MiB), far below what hurts.
pub const SPEC_MAX_BYTES: u64 = 64 << 20;
/// The largest compute document a stage reads (on stdin or `--document`): a spec plus the
/// sections the stages add.
pub const DOCUMENT_MAX_BYTES: u64 = 2 * SPEC_MAX_BYTES;
/// The largest TLS certificate chain or private key file.
pub const TLS_FILE_MAX_BYTES: u64 = 1 << 20;
/// The largest configuration file of a sidecar (`pgbouncer.ini`).
pub const CONFIG_FILE_MAX_BYTES: u64 = 16 << 20;
/// The largest pid file (pgbouncer's, local_proxy's): a number and a newline, in practice.
pub const PID_FILE_MAX_BYTES: u64 = 4 << 10;

/// Why a file could not be read; the message names the file (`stdin` for stdin).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ReadError {
    /// The path as given, or `stdin`.
    pub path: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.problem, Problem::Open(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// What is wrong with a file.
#[derive(Debug)]
pub enum Problem {
    /// It cannot be opened (missing, no permission …).
    Open(io::Error),
    /// It is not a regular file: its kind ("a FIFO", "a character device" …).
    NotRegular(&'static str),
    /// It holds more than `cap` bytes; `size` when known before reading.
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
        /// Its size, when its metadata said so.
        size: Option<u64>,
    },
    /// Stdin is a character device that is not a terminal (`/dev/zero`): it could never end.
    StdinDevice,
    /// Reading it failed.
    Read(io::Error),
    /// Text was expected and it is not UTF-8.
    NotUtf8,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Open(error) => write!(f, "cannot open it: {error}"),
            Problem::NotRegular(kind) => write!(
                f,
                "it is {kind}, not a regular file; only regular files are read (a FIFO or a \
                 device could block us or never end)"
            ),
            Problem::TooLarge {
                cap,
                size: Some(size),
            } => write!(
                f,
                "it is {size} bytes, over the {} cap; nothing was read",
                human(*cap)
            ),
            Problem::TooLarge { cap, size: None } => {
                write!(f, "it holds more than the {} cap", human(*cap))
            }
            Problem::StdinDevice => write!(
                f,
                "it is a character device, not a terminal, and could never end; redirect a \
                 regular file or a pipe to it"
            ),
            Problem::Read(error) => write!(f, "cannot read it: {error}"),
            Problem::NotUtf8 => write!(f, "it is not UTF-8 text"),
        }
    }
}

/// `bytes` as people say it: `64 MiB`, `1 MiB`, `512 KiB`, or a byte count.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

/// The regular file at `path`, opened for reading without blocking (a FIFO, a device or
/// anything else not a regular file is refused), and its size.
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadError> {
    let fail = |problem| ReadError {
        path: path.display().to_string(),
        problem,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| fail(Problem::Open(error)))?;
    let metadata = file
        .metadata()
        .map_err(|error| fail(Problem::Read(error)))?;
    match irregular(&metadata.file_type()) {
        Some(kind) => Err(fail(Problem::NotRegular(kind))),
        None => Ok((file, metadata.len())),
    }
}

/// The regular file at `path`, whole, if it holds at most `cap` bytes (see the module doc).
pub fn read_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let fail = |problem| ReadError {
        path: path.display().to_string(),
        problem,
    };
    let (file, size) = open_regular(path)?;
    if size > cap {
        return Err(fail(Problem::TooLarge {
            cap,
            size: Some(size),
        }));
    }
    read_capped(file, cap, size).map_err(fail)
}

/// [`read_file`], as UTF-8 text.
pub fn read_file_string(path: &Path, cap: u64) -> Result<String, ReadError> {
    let bytes = read_file(path, cap)?;
    String::from_utf8(bytes).map_err(|_| ReadError {
        path: path.display().to_string(),
        problem: Problem::NotUtf8,
    })
}

/// Stdin to its end, if it holds at most `cap` bytes (see the module doc).
pub fn read_stdin(cap: u64) -> Result<Vec<u8>, ReadError> {
    let fail = |problem| ReadError {
        path: "stdin".to_string(),
        problem,
    };
    let stdin = io::stdin();
    let mut expected = 0;
    if let Ok(stat) = nix::sys::stat::fstat(stdin.as_fd()) {
        let regular = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if regular && size > cap {
            return Err(fail(Problem::TooLarge {
                cap,
                size: Some(size),
            }));
        }
        if regular {
            expected = size;
        }
        let device = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
        if device && !stdin.is_terminal() {
            return Err(fail(Problem::StdinDevice));
        }
    }
    read_capped(stdin.lock(), cap, expected).map_err(fail)
}

/// [`read_stdin`], as UTF-8 text.
pub fn read_stdin_string(cap: u64) -> Result<String, ReadError> {
    String::from_utf8(read_stdin(cap)?).map_err(|_| ReadError {
        path: "stdin".to_string(),
        problem: Problem::NotUtf8,
    })
}

/// Reads `reader` to its end, at most `cap + 1` bytes; `expected` sizes the buffer.
fn read_capped(reader: impl Read, cap: u64, expected: u64) -> Result<Vec<u8>, Problem> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected.min(cap)).unwrap_or(0));
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Problem::Read)?;
    if bytes.len() as u64 > cap {
        return Err(Problem::TooLarge { cap, size: None });
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, for the message; None for a regular file.
fn irregular(kind: &std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("not a plain file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_said_in_units() {
        assert_eq!(human(SPEC_MAX_BYTES), "64 MiB");
        assert_eq!(human(DOCUMENT_MAX_BYTES), "128 MiB");
        assert_eq!(human(TLS_FILE_MAX_BYTES), "1 MiB");
        assert_eq!(human(3 << 30), "3 GiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn a_file_at_the_cap_is_read_and_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_file(&path, 100).unwrap().len(), 100);
        let error = read_file(&path, 99).unwrap_err();
        assert!(
            matches!(
                error.problem,
                Problem::TooLarge {
                    cap: 99,
                    size: Some(100)
                }
            ),
            "{error}"
        );
        assert!(read_file(&dir.path().join("missing"), 1)
            .unwrap_err()
            .is_not_found());
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_file_string(&path, 10).unwrap_err().problem,
            Problem::NotUtf8
        ));
    }

    #[test]
    fn a_reader_longer_than_the_cap_is_refused_after_cap_plus_one_bytes() {
        let mut source = io::repeat(b'z').take(1 << 20);
        let error = read_capped(&mut source, 1000, 0).unwrap_err();
        assert!(matches!(
            error,
            Problem::TooLarge {
                cap: 1000,
                size: None
            }
        ));
        // Only cap + 1 bytes were taken from the source.
        assert_eq!(source.limit(), (1 << 20) - 1001);
    }
}
