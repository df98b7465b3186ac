//! Unpacking without copying file data through this process: tar headers are read, file
//! contents go from the socket into a pipe with `splice(2)`, and a writer thread splices
//! them from the pipe into the files.
//!
//! Used for a vanilla primary's `BASE_BACKUP` (an uncompressed tar inside CopyData
//! messages). Reading the stream was the bottleneck of the copying unpacker ([`crate::unpack`]):
//! the reader copied every byte out of the socket, then handed it to the writer, which
//! copied it again into the page cache. Here the only copy is the page cache's own, made
//! by the writer thread, so the reading thread keeps up with the primary.
//!
//! The archive gets the same distrust as in [`crate::unpack`]: the same name checks (through
//! [`crate::unpack::accepted_path`]), only regular files and directories, files created with
//! `O_EXCL|O_NOFOLLOW` through real directories, header checksums verified, a stream that
//! ends inside a file is an error. GNU long names (`L`) and pax `path` records are honoured
//! (up to [`MAX_NAME`] bytes); global pax headers are skipped; every other kind is refused.
//!
//! Invariant: the pipe carries exactly the data of the `File` jobs, in job order: the
//! reading side splices a file's bytes right after queueing its job, and the writer moves
//! exactly that many bytes into that file. If the writer stops (an error), it closes its end
//! of the pipe, so the reading side's next splice fails (`EPIPE`) instead of blocking.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tar::EntryType;

use crate::error::BasebackupError;
use crate::unpack::{
    accepted_path, create_file, ensure_dir, refuse, with_writer, ReadStop, UnpackError, Unpacked,
};

/// The pipe's capacity (Linux's default limit for unprivileged processes).
const PIPE_SIZE: usize = 1 << 20;

/// The longest name accepted from a GNU long-name entry or a pax header.
pub const MAX_NAME: usize = 64 << 10;

/// Jobs the reading side may be ahead of the writer (their data waits in the pipe).
const QUEUE_DEPTH: usize = 1024;

/// A tar stream whose bytes can be read or moved into a pipe.
pub trait ArchiveSource {
    /// Reads archive bytes into `buf`; 0 at the end of the archive.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Moves up to `len` archive bytes into the pipe `to` (without a copy through user
    /// space when the source allows it); the number moved, 0 at the end of the archive.
    fn splice_to(&mut self, to: BorrowedFd<'_>, len: usize) -> io::Result<usize>;
}

/// Any reader as an [`ArchiveSource`]: bytes to move are read, then written to the pipe.
pub struct Copying<R> {
    inner: R,
    buffer: Vec<u8>,
}

impl<R: Read> Copying<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Copying {
            inner,
            buffer: vec![0; 64 << 10],
        }
    }
}

impl<R: Read> ArchiveSource for Copying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }

    fn splice_to(&mut self, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        let want = len.min(self.buffer.len());
        let n = self.inner.read(&mut self.buffer[..want])?;
        let mut written = 0;
        while written < n {
            written += retry(|| nix::unistd::write(to, &self.buffer[written..n]))?;
        }
        Ok(n)
    }
}

/// One step for the writer thread, in archive order.
enum Job {
    /// Create this directory (relative to the destination) and its parents.
    Dir(PathBuf),
    /// Create this file (its parents first) and move `size` bytes from the pipe into it.
    File { relative: PathBuf, size: u64 },
}

/// Unpacks the tar `source` into the existing directory `dest`, file data through a pipe.
pub fn unpack(source: &mut impl ArchiveSource, dest: &Path) -> Result<Unpacked, UnpackError> {
    let write_error =
        |e: Errno| UnpackError::Write(BasebackupError::io("making a pipe for", dest, e.into()));
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(write_error)?;
    // A larger pipe means fewer wake-ups; the default 64 KiB still works.
    let _ = fcntl(&pipe_in, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
    let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
    // The reader owns the pipe's writing end: it closes when the reader returns.
    with_writer(
        dest,
        move || write_jobs(dest, queue, pipe_out),
        move || read_entries(source, &jobs, pipe_in.as_fd()),
    )
}

/// The reading side: parses and checks the headers, queues a job per entry and moves file
/// data into the pipe.
fn read_entries(
    source: &mut impl ArchiveSource,
    jobs: &SyncSender<Job>,
    pipe: BorrowedFd<'_>,
) -> Result<Unpacked, ReadStop> {
    let writer_gone = || ReadStop::WriterGone;
    let mut unpacked = Unpacked::default();
    let mut long_name: Option<Vec<u8>> = None;
    let mut block = [0u8; 512];
    while read_block(source, &mut block)? {
        if block.iter().all(|b| *b == 0) {
            continue; // end-of-archive blocks (the stream is still read to its end)
        }
        let header = tar::Header::from_byte_slice(&block);
        check_checksum(&block)?;
        let size = header.entry_size().map_err(UnpackError::Read)?;
        // The entry's data and padding: refused at once when no tar could hold it.
        let stored = padded(size)?;
        let kind = header.entry_type();
        match kind {
            EntryType::GNULongName | EntryType::XHeader => {
                let data = read_small(source, size, kind)?;
                let name = match kind {
                    EntryType::GNULongName => Some(trim_nul(&data).to_vec()),
                    _ => pax_path(&data)?,
                };
                long_name = name.or(long_name);
                continue;
            }
            EntryType::XGlobalHeader => {
                skip(source, stored)?;
                continue;
            }
            _ => {}
        }
        let raw_name = long_name
            .take()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let relative = accepted_path(&name, kind)?;
        let Some(relative) = relative else {
            skip(source, stored)?;
            continue;
        };
        if kind == EntryType::Directory {
            jobs.send(Job::Dir(relative)).map_err(|_| writer_gone())?;
            skip(source, stored)?;
            continue;
        }
        jobs.send(Job::File { relative, size })
            .map_err(|_| writer_gone())?;
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(PIPE_SIZE);
            match source.splice_to(pipe, want) {
                Ok(0) => return Err(cut_short(&name, size - left, size).into()),
                Ok(n) => left -= n as u64,
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(writer_gone())
                }
                Err(error) => return Err(UnpackError::Read(error).into()),
            }
        }
        skip(source, stored - size)?;
        unpacked.files += 1;
        unpacked.bytes += size;
    }
    Ok(unpacked)
}

/// Reads one 512-byte block; false at the end of the stream (before any byte of it).
fn read_block(source: &mut impl ArchiveSource, block: &mut [u8; 512]) -> Result<bool, UnpackError> {
    let mut filled = 0;
    while filled < block.len() {
        match source.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(UnpackError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a tar header",
                )))
            }
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(UnpackError::Read(error)),
        }
    }
    Ok(true)
}

/// Reads `size` bytes (and their padding) of a small entry: a long name or pax records.
fn read_small(
    source: &mut impl ArchiveSource,
    size: u64,
    kind: EntryType,
) -> Result<Vec<u8>, UnpackError> {
    if size > MAX_NAME as u64 {
        return Err(refuse(
            &format!("({kind:?} entry of {size} bytes)"),
            "a long name or pax header over 64 KiB is refused",
        ));
    }
    let mut data = vec![0u8; padded(size)? as usize];
    let mut filled = 0;
    while filled < data.len() {
        match source.read(&mut data[filled..]) {
            Ok(0) => return Err(cut_short("(a long name)", filled as u64, size)),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(UnpackError::Read(error)),
        }
    }
    data.truncate(size as usize);
    Ok(data)
}

/// Reads and drops `count` bytes.
fn skip(source: &mut impl ArchiveSource, mut count: u64) -> Result<(), UnpackError> {
    let mut scratch = [0u8; 4096];
    while count > 0 {
        let want = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(scratch.len());
        match source.read(&mut scratch[..want]) {
            Ok(0) => {
                return Err(UnpackError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside an entry's data",
                )))
            }
            Ok(n) => count -= n as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(UnpackError::Read(error)),
        }
    }
    Ok(())
}

/// `size` rounded up to whole 512-byte blocks; an error (a corrupt header) when that does
/// not fit in 64 bits.
fn padded(size: u64) -> Result<u64, UnpackError> {
    size.checked_next_multiple_of(512).ok_or_else(|| {
        UnpackError::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a tar header claims {size} bytes, more than any archive holds: the stream is corrupt"),
        ))
    })
}

fn cut_short(name: &str, got: u64, expected: u64) -> UnpackError {
    UnpackError::Read(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the stream ended inside {name} ({got} of {expected} bytes)"),
    ))
}

/// Verifies a header's checksum (the sum of its bytes, the checksum field counted as
/// spaces), so a misaligned or corrupt stream is caught at its first header.
fn check_checksum(block: &[u8; 512]) -> Result<(), UnpackError> {
    let header = tar::Header::from_byte_slice(block);
    let stored = header.cksum().map_err(UnpackError::Read)?;
    let sum: u32 = block[..148]
        .iter()
        .chain([b' '; 8].iter())
        .chain(block[156..].iter())
        .map(|b| u32::from(*b))
        .sum();
    if sum != stored {
        return Err(UnpackError::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a tar header's checksum is wrong ({stored} stored, {sum} computed): the stream is corrupt"),
        )));
    }
    Ok(())
}

fn trim_nul(name: &[u8]) -> &[u8] {
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    &name[..end]
}

/// The `path` record of pax extended-header data, if any.
fn pax_path(data: &[u8]) -> Result<Option<Vec<u8>>, UnpackError> {
    let mut path = None;
    for extension in tar::PaxExtensions::new(data) {
        let extension = extension.map_err(UnpackError::Read)?;
        if extension.key_bytes() == b"path" {
            path = Some(extension.value_bytes().to_vec());
        }
    }
    Ok(path)
}

/// The writing side: creates directories and files in queue order, moving each file's
/// bytes from the pipe, until the queue closes. Dropping `pipe` on an error unblocks the
/// reading side.
fn write_jobs(dest: &Path, queue: Receiver<Job>, pipe: OwnedFd) -> Result<(), BasebackupError> {
    let mut made_dirs: HashSet<PathBuf> = HashSet::new();
    for job in queue {
        match job {
            Job::Dir(relative) => ensure_dir(dest, &relative, &mut made_dirs)?,
            Job::File { relative, size } => {
                if let Some(parent) = relative.parent() {
                    ensure_dir(dest, parent, &mut made_dirs)?;
                }
                let target = dest.join(&relative);
                let file = create_file(&target)?;
                drain_into(pipe.as_fd(), &file, size)
                    .map_err(|e| BasebackupError::io("writing", &target, e))?;
            }
        }
    }
    Ok(())
}

/// Moves `size` bytes from the pipe into `file`: with `splice(2)`, or by reading and
/// writing where the file system cannot splice.
fn drain_into(pipe: BorrowedFd<'_>, file: &fs::File, size: u64) -> io::Result<()> {
    let mut left = size;
    let mut buffer: Vec<u8> = Vec::new();
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(PIPE_SIZE);
        let moved = if buffer.is_empty() {
            match retry(|| splice(pipe, None, file, None, want, SpliceFFlags::SPLICE_F_MOVE)) {
                Err(error) if error.raw_os_error() == Some(Errno::EINVAL as i32) => {
                    buffer = vec![0; 128 << 10];
                    continue;
                }
                result => result?,
            }
        } else {
            let want = want.min(buffer.len());
            let n = retry(|| nix::unistd::read(pipe, &mut buffer[..want]))?;
            io::Write::write_all(&mut &*file, &buffer[..n])?;
            n
        };
        if moved == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside the file",
            ));
        }
        left -= moved as u64;
    }
    Ok(())
}

/// Runs a system call again while a signal interrupts it.
fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}
