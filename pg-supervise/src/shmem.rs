//! Removing the shared memory a dead postmaster left behind.
//!
//! A postmaster that exits normally removes its shared memory itself. One killed (`SIGKILL`,
//! the OOM killer) leaves it: the System V segment whose key and id it wrote on line 7 of
//! `postmaster.pid` (`"%9lu %9lu"`, key then id), and its POSIX dynamic shared memory
//! (`dynamic_shared_memory_type = posix`, the default): the control segment
//! `/dev/shm/PostgreSQL.<handle>`, whose handle is kept in the System V segment's header
//! (`PGShmemHeader.dsm_control`), and the segments listed in that control segment. Postgres
//! reclaims them on its next start in the same data directory; compute-tools never starts
//! there again (PGDATA is rebuilt), so the supervisor removes them the way Postgres would
//! (`PGSharedMemoryCreate` and `dsm_cleanup_using_control_segment` in PostgreSQL 15).
//!
//! Only what provably belongs to this postmaster is removed:
//! * `postmaster.pid` must name the postmaster that exited (line 1); otherwise it belongs to
//!   another postmaster (which made ours fail to start) and nothing is touched;
//! * the System V segment must still have the key from `postmaster.pid`, and its header must
//!   carry Postgres's magic number and the device and inode of this data directory;
//! * dynamic segments are only those named by the control segment found through that header
//!   (with its magic number and a sane size), owned by the user who created the System V
//!   segment; main-region handles (odd) have no segment of their own;
//! * the System V segment is removed only once no process is attached to it (backends of the
//!   killed postmaster detach as they exit); after [`ATTACH_WAIT`] it is left, with a warning.
//!
//! Other `dynamic_shared_memory_type`s: `mmap` keeps its segments in `PGDATA/pg_dynshmem`
//! (rebuilt with PGDATA); `sysv` segments are not looked for.

use std::fs;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// Where POSIX shared memory segments live (`shm_open` names them `/dev/shm/<name>`).
pub const POSIX_SHM_DIR: &str = "/dev/shm";
/// How long to wait for processes to detach from the System V segment before leaving it.
pub const ATTACH_WAIT: Duration = Duration::from_secs(2);
/// How often to look whether they have.
const ATTACH_POLL: Duration = Duration::from_millis(10);

/// `PGShmemMagic` (`storage/pg_shmem.h`).
const PG_SHMEM_MAGIC: i32 = 679_834_894;
/// `PG_DYNSHMEM_CONTROL_MAGIC` (`storage/dsm.c`).
const DSM_CONTROL_MAGIC: u32 = 0x9a50_3d32;
/// Line 1 of `postmaster.pid`: the postmaster's pid.
const PID_LINE: usize = 0;
/// Line 7 of `postmaster.pid` (`LOCK_FILE_LINE_SHMEM_KEY`): the System V key and id.
const SHMEM_LINE: usize = 6;

/// The header at the start of Postgres's System V segment (`PGShmemHeader`, unchanged since
/// PostgreSQL 9.4).
#[repr(C)]
#[allow(dead_code)] // Only copied out of shared memory; every field is there for the layout.
#[derive(Clone, Copy)]
struct PgShmemHeader {
    magic: i32,
    creator_pid: libc::pid_t,
    total_size: usize,
    free_offset: usize,
    dsm_control: u32,
    index: usize,
    device: libc::dev_t,
    inode: libc::ino_t,
}

/// The start of the dynamic shared memory control segment (`dsm_control_header`).
#[repr(C)]
#[allow(dead_code)] // Only its layout is used (offset_of!), on bytes read from the segment.
struct DsmControlHeader {
    magic: u32,
    nitems: u32,
    maxitems: u32,
    items: [DsmControlItem; 0],
}

/// One slot of the control segment (`dsm_control_item`, PostgreSQL 14 and later).
#[repr(C)]
#[allow(dead_code)] // Only its layout is used (offset_of!, size_of).
struct DsmControlItem {
    handle: u32,
    refcnt: u32,
    first_page: usize,
    npages: usize,
    impl_private_pm_handle: usize,
    pinned: bool,
}

/// What [`remove_leftovers`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The id of the System V segment removed.
    pub sysv: Option<i32>,
    /// The POSIX segments removed (the control segment last).
    pub posix: Vec<PathBuf>,
}

/// What `postmaster.pid` says about the postmaster's shared memory.
#[derive(Debug, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's pid (line 1).
    pub pid: i32,
    /// The System V key and id (line 7), once the postmaster created the segment.
    pub shmem: Option<(u64, i32)>,
}

/// Parses `postmaster.pid`; None when it is not one.
pub fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.get(PID_LINE)?.trim().parse().ok()?;
    let shmem = lines.get(SHMEM_LINE).and_then(|line| {
        let mut fields = line.split_whitespace();
        let key = fields.next()?.parse().ok()?;
        let id = fields.next()?.parse::<u64>().ok()?;
        Some((key, i32::try_from(id).ok()?))
    });
    Some(PidFile { pid, shmem })
}

/// After `postmaster` exited: removes the shared memory it left, if `pgdata/postmaster.pid`
/// shows it was this postmaster's. Never fails: what cannot be removed is logged and left.
pub fn remove_leftovers(pgdata: &Path, postmaster: Pid) -> Removed {
    let mut removed = Removed::default();
    let pid_path = pgdata.join("postmaster.pid");
    let text = match fs::read_to_string(&pid_path) {
        Ok(text) => text,
        // A postmaster that shut down cleanly removed it, and its shared memory.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return removed,
        Err(error) => {
            tracing::warn!(
                "cannot read {} to remove the shared memory of postgres: {error}",
                pid_path.display()
            );
            return removed;
        }
    };
    let Some(pid_file) = parse_pid_file(&text) else {
        tracing::warn!(
            "{} is not a postmaster.pid; leaving any shared memory alone",
            pid_path.display()
        );
        return removed;
    };
    if pid_file.pid != postmaster.as_raw() {
        tracing::debug!(
            "{} is another postmaster's (pid {}); leaving its shared memory alone",
            pid_path.display(),
            pid_file.pid
        );
        return removed;
    }
    let Some((key, id)) = pid_file.shmem else {
        return removed;
    };
    let Some(segment) = SysvSegment::ours(id, key, pgdata) else {
        return removed;
    };
    if segment.dsm_control != 0 {
        removed.posix =
            remove_dynamic_segments(Path::new(POSIX_SHM_DIR), segment.dsm_control, segment.owner);
    }
    if segment.remove_when_detached(stage_kit::deadline::after(ATTACH_WAIT)) {
        removed.sysv = Some(id);
    }
    if removed.sysv.is_some() || !removed.posix.is_empty() {
        tracing::info!(
            "removed the shared memory postgres (pid {postmaster}) left: {}{} POSIX segment(s)",
            match removed.sysv {
                Some(id) => format!("System V segment {id}, "),
                None => String::new(),
            },
            removed.posix.len()
        );
    }
    removed
}

/// The System V segment of a dead postmaster, checked to be this data directory's.
struct SysvSegment {
    id: i32,
    key: u64,
    /// The user who created it.
    owner: u32,
    /// The handle of the dynamic shared memory control segment, 0 for none.
    dsm_control: u32,
}

impl SysvSegment {
    /// Segment `id`, if it still has `key` and its header says it is `pgdata`'s.
    fn ours(id: i32, key: u64, pgdata: &Path) -> Option<SysvSegment> {
        let status = match shm_status(id) {
            Ok(status) => status,
            // EINVAL, EIDRM: gone already.
            Err(_) => return None,
        };
        if sysv_key(&status) != key {
            tracing::debug!("System V segment {id} has another key now; leaving it alone");
            return None;
        }
        let header = match read_header(id, status.shm_segsz) {
            Ok(header) => header,
            Err(error) => {
                tracing::warn!("cannot read System V segment {id} of postgres: {error}");
                return None;
            }
        };
        let directory = match fs::metadata(pgdata) {
            Ok(metadata) => metadata,
            Err(error) => {
                tracing::warn!("cannot stat {}: {error}", pgdata.display());
                return None;
            }
        };
        let belongs = header.magic == PG_SHMEM_MAGIC
            && header.device == directory.dev()
            && header.inode == directory.ino();
        if !belongs {
            tracing::warn!(
                "System V segment {id} named in {}/postmaster.pid is not this data directory's; \
                 leaving it alone",
                pgdata.display()
            );
            return None;
        }
        Some(SysvSegment {
            id,
            key,
            owner: status.shm_perm.cuid,
            dsm_control: header.dsm_control,
        })
    }

    /// Removes the segment once nothing is attached, waiting until `deadline`; whether it did.
    fn remove_when_detached(&self, deadline: Instant) -> bool {
        loop {
            let status = match shm_status(self.id) {
                Ok(status) => status,
                Err(_) => return false,
            };
            if sysv_key(&status) != self.key {
                return false;
            }
            if status.shm_nattch == 0 {
                return match shm_remove(self.id) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(
                            "cannot remove System V segment {} of postgres: {error}",
                            self.id
                        );
                        false
                    }
                };
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "System V segment {} of postgres is still attached by {} process(es); \
                     leaving it (remove it with `ipcrm -m {}` once they exit)",
                    self.id,
                    status.shm_nattch,
                    self.id
                );
                return false;
            }
            std::thread::sleep(ATTACH_POLL);
        }
    }
}

/// The key of a segment, as Postgres writes it (`(unsigned long) key`).
fn sysv_key(status: &libc::shmid_ds) -> u64 {
    i64::from(status.shm_perm.__key) as u64
}

fn shm_status(id: i32) -> io::Result<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain data (integers only), for which all zero bytes are a valid value.
    let mut status: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `status` is a valid, writable shmid_ds that IPC_STAT fills in; no pointer is kept.
    let result = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut status) };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(status)
}

fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer (null is allowed) and touches no memory of ours.
    let result = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    if result == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the header of segment `id` (`size` bytes long), attached read-only for as long as it
/// takes.
fn read_header(id: i32, size: usize) -> io::Result<PgShmemHeader> {
    if size < size_of::<PgShmemHeader>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{size} bytes are too few for Postgres's header"),
        ));
    }
    // SAFETY: attaching at an address the kernel chooses, read-only, maps new pages and
    // changes no memory we use.
    let address = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    if address as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the segment is at least a header long (checked above); `address` is its start,
    // readable while attached. Every bit pattern is a valid PgShmemHeader (integers
    // only), and read_unaligned copies it out without assuming alignment.
    let header = unsafe { std::ptr::read_unaligned(address.cast::<PgShmemHeader>()) };
    // SAFETY: `address` was returned by shmat above and is detached once; nothing refers to the
    // mapping afterwards (the header was copied).
    if unsafe { libc::shmdt(address) } == -1 {
        tracing::warn!(
            "detaching from System V segment {id}: {}",
            io::Error::last_os_error()
        );
    }
    Ok(header)
}

/// The handles of the segments that the control segment `bytes` lists (used slots, not in the
/// main region); None when it is not a sane control segment.
pub fn listed_segments(bytes: &[u8]) -> Option<Vec<u32>> {
    let read_u32 = |offset: usize| -> Option<u32> {
        let field = bytes.get(offset..offset + 4)?;
        Some(u32::from_ne_bytes(field.try_into().ok()?))
    };
    if read_u32(offset_of!(DsmControlHeader, magic))? != DSM_CONTROL_MAGIC {
        return None;
    }
    let nitems = usize::try_from(read_u32(offset_of!(DsmControlHeader, nitems))?).ok()?;
    let maxitems = usize::try_from(read_u32(offset_of!(DsmControlHeader, maxitems))?).ok()?;
    let items = offset_of!(DsmControlHeader, items);
    let needed = maxitems
        .checked_mul(size_of::<DsmControlItem>())?
        .checked_add(items)?;
    if nitems > maxitems || needed > bytes.len() {
        return None;
    }
    let mut handles = Vec::new();
    for slot in 0..nitems {
        let item = items + slot * size_of::<DsmControlItem>();
        let handle = read_u32(item + offset_of!(DsmControlItem, handle))?;
        let refcnt = read_u32(item + offset_of!(DsmControlItem, refcnt))?;
        // refcnt 0: a free slot. An odd handle is carved out of the main segment.
        if refcnt != 0 && handle != 0 && handle % 2 == 0 {
            handles.push(handle);
        }
    }
    Some(handles)
}

/// The path of POSIX dynamic shared memory segment `handle` (`/PostgreSQL.<handle>`).
pub fn posix_segment_path(directory: &Path, handle: u32) -> PathBuf {
    directory.join(format!("PostgreSQL.{handle}"))
}

/// Removes the control segment `control` in `directory` and the segments it lists, those owned
/// by `owner`; returns what was removed.
fn remove_dynamic_segments(directory: &Path, control: u32, owner: u32) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let control_path = posix_segment_path(directory, control);
    let bytes = match fs::read(&control_path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return removed,
        Err(error) => {
            tracing::warn!("cannot read {}: {error}", control_path.display());
            return removed;
        }
    };
    let Some(handles) = listed_segments(&bytes) else {
        tracing::warn!(
            "{} is not a sane dynamic shared memory control segment; leaving it and its \
             segments alone",
            control_path.display()
        );
        return removed;
    };
    for path in handles
        .into_iter()
        .map(|handle| posix_segment_path(directory, handle))
        .chain(std::iter::once(control_path))
    {
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() && metadata.uid() == owner => {}
            Ok(_) => {
                tracing::warn!(
                    "{} is not a segment of postgres; leaving it",
                    path.display()
                );
                continue;
            }
            Err(_) => continue,
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_gives_the_pid_and_the_segment() {
        let text = "4242\n/pgdata\n1764460000\n55432\n/tmp\n\n  5543201      1234\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            Some(PidFile {
                pid: 4242,
                shmem: Some((5_543_201, 1234))
            })
        );
        // Before the segment exists: no line 7.
        assert_eq!(
            parse_pid_file("4242\n/pgdata\n1764460000\n55432\n/tmp\n\n"),
            Some(PidFile {
                pid: 4242,
                shmem: None
            })
        );
        assert_eq!(parse_pid_file(""), None);
        assert_eq!(parse_pid_file("not a pid\n"), None);
    }

    /// A control segment with `maxitems` slots and `items` (handle, refcnt) used.
    fn control_segment(magic: u32, maxitems: u32, items: &[(u32, u32)]) -> Vec<u8> {
        let item_size = size_of::<DsmControlItem>();
        let start = offset_of!(DsmControlHeader, items);
        let mut bytes = vec![0u8; start + maxitems as usize * item_size];
        bytes[0..4].copy_from_slice(&magic.to_ne_bytes());
        bytes[4..8].copy_from_slice(&(items.len() as u32).to_ne_bytes());
        bytes[8..12].copy_from_slice(&maxitems.to_ne_bytes());
        for (slot, (handle, refcnt)) in items.iter().enumerate() {
            let at = start + slot * item_size;
            bytes[at..at + 4].copy_from_slice(&handle.to_ne_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&refcnt.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn the_control_segment_lists_used_posix_segments() {
        let bytes = control_segment(
            DSM_CONTROL_MAGIC,
            8,
            &[(100, 2), (102, 0), (103, 2), (104, 1), (0, 2)],
        );
        assert_eq!(listed_segments(&bytes), Some(vec![100, 104]));
        assert_eq!(
            listed_segments(&control_segment(DSM_CONTROL_MAGIC, 8, &[])),
            Some(vec![])
        );
    }

    #[test]
    fn insane_control_segments_list_nothing() {
        assert_eq!(
            listed_segments(&control_segment(0x1234, 8, &[(100, 2)])),
            None
        );
        let mut short = control_segment(DSM_CONTROL_MAGIC, 8, &[(100, 2)]);
        short.truncate(short.len() - 1);
        assert_eq!(listed_segments(&short), None);
        let mut overfull = control_segment(DSM_CONTROL_MAGIC, 1, &[(100, 2)]);
        overfull[4..8].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(listed_segments(&overfull), None);
        assert_eq!(listed_segments(&[]), None);
    }

    #[test]
    fn only_listed_segments_of_the_owner_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::getuid().as_raw();
        let control = control_segment(DSM_CONTROL_MAGIC, 4, &[(10, 2), (12, 0), (14, 3)]);
        fs::write(posix_segment_path(dir.path(), 8), control).unwrap();
        for handle in [10, 12, 16] {
            fs::write(posix_segment_path(dir.path(), handle), b"x").unwrap();
        }
        let removed = remove_dynamic_segments(dir.path(), 8, me);
        assert_eq!(
            removed,
            vec![
                posix_segment_path(dir.path(), 10),
                posix_segment_path(dir.path(), 8)
            ],
            "14 is listed but gone already"
        );
        // A free slot's and an unlisted segment are left.
        assert!(posix_segment_path(dir.path(), 12).exists());
        assert!(posix_segment_path(dir.path(), 16).exists());

        // Another owner's: nothing is removed.
        let control = control_segment(DSM_CONTROL_MAGIC, 4, &[(12, 2)]);
        fs::write(posix_segment_path(dir.path(), 8), control).unwrap();
        assert!(remove_dynamic_segments(dir.path(), 8, me.wrapping_add(1)).is_empty());
        assert!(posix_segment_path(dir.path(), 12).exists());
    }
}
