//! Shared-memory regions: memfds that the engine creates, seals and maps, and the mappings a peer
//! makes of an fd it received.
//!
//! - [`Region`] is the owner's side: `memfd_create`, `ftruncate`, seal, `mmap`, optionally on
//!   2 MiB huge pages. It hands out read-write ([`Region::dup_fd`]) and read-only
//!   ([`Region::readonly_fd`]) fds for peers.
//! - [`Mapping`] is the receiver's side: it checks that the fd is sealed against shrinking and
//!   long enough *before* mapping it, so that a lying peer cannot make us fault (SIGBUS) on access.
//! - [`send_fds`] and [`recv_fds`] move fds over a Unix stream socket (`SCM_RIGHTS`).
//!
//! # Guarantees of a [`Region`]
//!
//! - Its memfd is sealed with `F_SEAL_SHRINK | F_SEAL_GROW` at creation: nobody holding any of its
//!   fds can change its size (which would turn our accesses into SIGBUS). The seals are applied to
//!   huge-page memfds too; that needs Linux 4.16 or later (`MFD_HUGETLB | MFD_ALLOW_SEALING` fails
//!   with `EINVAL` before). There, `On` is an error and `Auto` falls back to normal pages: every
//!   region is sealed, without exception.
//! - [`Region::seal`] closes it: `F_SEAL_SEAL` (no more seals, by anyone), and with `writes`
//!   also `F_SEAL_FUTURE_WRITE` once every writer has mapped it. From then on no fd of the memfd
//!   — whoever holds it, however it was opened, root included — can `write(2)` it or map it
//!   writable (`mmap(PROT_WRITE, MAP_SHARED)` fails with `EPERM`), while the mappings made before
//!   keep writing. That is what makes a receiver's view read-only: a read-only fd alone is not,
//!   since root (or the memfd's owner, after `fchmod`) can reopen `/proc/self/fd/N` read-write.
//! - Its inode mode is set to `0400` once it is mapped, a second fence for unsealed regions.
//!
//! # Huge pages
//!
//! `memfd_create(MFD_HUGETLB)` and `ftruncate` succeed even when no huge page is reserved. For a
//! shared mapping the kernel reserves the pages at `mmap` time, so a shortage shows there as
//! `ENOMEM` (verified on Linux 6.18, with and without `MAP_POPULATE`). The pages are then
//! prefaulted with `madvise(MADV_POPULATE_WRITE)`, which, unlike `MAP_POPULATE` (whose failures
//! the kernel ignores), reports a page that could not be faulted in as an error instead of a
//! SIGBUS on first touch, and moves the zeroing of the pages out of the data path. On kernels
//! before 5.14 (no `MADV_POPULATE_WRITE`) the prefault is skipped; the `mmap` reservation still
//! holds.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Size of the huge pages a [`Region`] uses with [`MemKind::Huge2M`]: 2 MiB.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Largest region [`Region::create`] accepts: 64 GiB.
pub const MAX_REGION_LEN: u64 = 64 << 30;

/// Most fds [`send_fds`] sends and [`recv_fds`] receives in one call (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Whether a region should use huge pages: the configuration value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HugePages {
    /// Use 2 MiB huge pages; fail when they cannot be had.
    On,
    /// Use normal pages.
    Off,
    /// Use 2 MiB huge pages when they can be had, normal pages otherwise.
    #[default]
    Auto,
}

/// What kind of memory a region actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemKind {
    /// Normal pages (tmpfs-backed memfd).
    Normal,
    /// 2 MiB huge pages (hugetlbfs-backed memfd).
    Huge2M,
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal pages",
            Self::Huge2M => "2 MiB huge pages",
        })
    }
}

/// How a [`Mapping`] may be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `PROT_READ`: works with any fd.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`: needs an fd opened read-write.
    ReadWrite,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadOnly => "read-only",
            Self::ReadWrite => "read-write",
        })
    }
}

/// Why a shared-memory region could not be created or mapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The requested length is zero or too large.
    #[error("{what}: length {len} is not allowed; it must be 1..={max} bytes")]
    InvalidLength {
        /// The region (`region "name"`) or fd (`fd N`) concerned.
        what: String,
        /// The length asked for.
        len: u64,
        /// The largest length allowed.
        max: u64,
    },
    /// A system call while creating a region failed.
    #[error("shared-memory region {name:?}: {step} failed: {source}")]
    Create {
        /// The region's name.
        name: String,
        /// The step that failed (`memfd_create`, `ftruncate`, ...).
        step: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Huge pages were asked for ([`HugePages::On`]) and could not be had.
    #[error(
        "shared-memory region {name:?}: cannot get {pages} huge pages of 2 MiB ({len} bytes): \
         {step} failed: {source}; reserve them as root with \
         `echo N > /proc/sys/vm/nr_hugepages`, N covering every pool (see HugePages_Free in \
         /proc/meminfo; sealed huge-page memfds need Linux 4.16+), or set huge pages to auto or off"
    )]
    HugePages {
        /// The region's name.
        name: String,
        /// The region's length, rounded up to whole huge pages.
        len: u64,
        /// How many huge pages that is.
        pages: u64,
        /// The step that failed (`memfd_create`, `mmap`, `madvise(MADV_POPULATE_WRITE)`).
        step: &'static str,
        /// The system's error (usually `ENOMEM`).
        #[source]
        source: io::Error,
    },
    /// `fstat` on an fd to be mapped failed.
    #[error("shared-memory fd {fd}: fstat failed: {source}")]
    Stat {
        /// The fd's number in this process.
        fd: i32,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The fd is shorter than the mapping asked for.
    #[error(
        "shared-memory fd {fd} is {fd_len} bytes long but a mapping of {len} bytes was asked for; \
         the fd must be at least as long as the mapping"
    )]
    FdTooShort {
        /// The fd's number in this process.
        fd: i32,
        /// The fd's size according to `fstat`.
        fd_len: u64,
        /// The length asked for.
        len: u64,
    },
    /// The fd is not a memfd sealed against shrinking.
    #[error(
        "shared-memory fd {fd} is not sealed against shrinking (seals {seals:#x}, 0 also when it \
         is not a memfd); only memfds with F_SEAL_SHRINK are mapped, so that the peer cannot \
         truncate them under us"
    )]
    NotSealed {
        /// The fd's number in this process.
        fd: i32,
        /// The seals it has (`F_GET_SEALS`).
        seals: u32,
    },
    /// `mmap` failed.
    #[error("mmap of shared-memory fd {fd} ({len} bytes, {access}) failed: {source}")]
    Map {
        /// The fd's number in this process.
        fd: i32,
        /// The length mapped (rounded up to the fd's page size).
        len: u64,
        /// The access asked for; `ReadWrite` on a read-only fd fails with `EACCES`.
        access: Access,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Duplicating or reopening a region's fd failed.
    #[error("shared-memory region {name:?}: {step} failed: {source}")]
    Fd {
        /// The region's name.
        name: String,
        /// The step that failed (`dup`, `open /proc/self/fd/N read-only`).
        step: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl MapError {
    /// The `errno` behind this error, when a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Create { source, .. }
            | Self::HugePages { source, .. }
            | Self::Stat { source, .. }
            | Self::Map { source, .. }
            | Self::Fd { source, .. } => source.raw_os_error(),
            Self::InvalidLength { .. } | Self::FdTooShort { .. } | Self::NotSealed { .. } => None,
        }
    }
}

/// A shared mapping of an fd, unmapped on drop.
///
/// Built by [`Mapping::map`] on the side that received an fd, and under every [`Region`].
#[derive(Debug)]
pub struct Mapping {
    /// Start of the mapping; page aligned.
    ptr: NonNull<u8>,
    /// Bytes the owner may access: `1..=map_len`.
    len: usize,
    /// Bytes mapped: `len` rounded up to the fd's page size (2 MiB for huge pages).
    map_len: usize,
    /// Whether the pages are writable.
    access: Access,
}

// SAFETY: a Mapping owns its pages like a Box owns its allocation; nothing in it is tied to the
// thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out raw pointers and lengths; what is done through them is the
// caller's (unsafe) business.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, which came from another process.
    ///
    /// Before mapping, checks that the fd is sealed against shrinking and at least `len` bytes
    /// long, so that no access within `len` can fault, whatever the peer does later.
    pub fn map(fd: BorrowedFd<'_>, len: usize, access: Access) -> Result<Self, MapError> {
        let raw = fd.as_raw_fd();
        if len == 0 || len > isize::MAX as usize {
            return Err(MapError::InvalidLength {
                what: format!("fd {raw}"),
                len: len as u64,
                max: isize::MAX as u64,
            });
        }
        let stat = rustix::fs::fstat(fd).map_err(|e| MapError::Stat {
            fd: raw,
            source: e.into(),
        })?;
        check_sealed(fd)?;
        let fd_len = u64::try_from(stat.st_size).unwrap_or(0);
        if fd_len < len as u64 {
            return Err(MapError::FdTooShort {
                fd: raw,
                fd_len,
                len: len as u64,
            });
        }
        // Rounding up stays within the file's last page, so the whole mapping is backed.
        let map_len = round_up(len, block_size(&stat)).ok_or(MapError::InvalidLength {
            what: format!("fd {raw}"),
            len: len as u64,
            max: isize::MAX as u64,
        })?;
        map_shared(fd, len, map_len, access)
    }

    /// Bytes that may be accessed from [`as_ptr`](Self::as_ptr).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the mapping, page aligned. Writing through it needs [`Access::ReadWrite`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// How the mapping may be accessed.
    pub fn access(&self) -> Access {
        self.access
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr and map_len are exactly what mmap returned and mapped; nothing borrows the
        // mapping any more (every borrow is tied to &self).
        let result = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        debug_assert!(result.is_ok(), "munmap failed: {result:?}");
    }
}

/// Fails unless `fd` is sealed against shrinking.
fn check_sealed(fd: BorrowedFd<'_>) -> Result<(), MapError> {
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap_or(SealFlags::empty());
    if seals.contains(SealFlags::SHRINK) {
        return Ok(());
    }
    Err(MapError::NotSealed {
        fd: fd.as_raw_fd(),
        seals: seals.bits(),
    })
}

/// The fd's page size: `st_blksize` is the page size for tmpfs and the huge page size for
/// hugetlbfs; 4096 when it is not a power of two.
fn block_size(stat: &rustix::fs::Stat) -> usize {
    match usize::try_from(stat.st_blksize) {
        Ok(size) if size.is_power_of_two() => size,
        _ => 4096,
    }
}

/// `len` rounded up to a multiple of `align` (a power of two); `None` past `isize::MAX`.
fn round_up(len: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    let rounded = len.checked_add(align - 1)? & !(align - 1);
    (rounded <= isize::MAX as usize).then_some(rounded)
}

/// `mmap(MAP_SHARED)` of `map_len` bytes of `fd`, of which `len` are exposed.
fn map_shared(
    fd: BorrowedFd<'_>,
    len: usize,
    map_len: usize,
    access: Access,
) -> Result<Mapping, MapError> {
    let prot = match access {
        Access::ReadOnly => ProtFlags::READ,
        Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
    };
    // SAFETY: a fresh mapping at an address the kernel picks (null hint, no MAP_FIXED) cannot
    // alias any existing Rust object.
    let ptr =
        unsafe { rustix::mm::mmap(std::ptr::null_mut(), map_len, prot, MapFlags::SHARED, fd, 0) }
            .map_err(|e| MapError::Map {
            fd: fd.as_raw_fd(),
            len: map_len as u64,
            access,
            source: e.into(),
        })?;
    let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap returned null without an error");
    Ok(Mapping {
        ptr,
        len,
        map_len,
        access,
    })
}

/// A shared-memory region this process created: a sealed memfd mapped read-write.
#[derive(Debug)]
pub struct Region {
    /// The read-write mapping of the whole memfd.
    map: Mapping,
    /// The memfd, opened read-write.
    fd: OwnedFd,
    /// What kind of pages back it.
    kind: MemKind,
    /// The name given to `memfd_create` (shows in `/proc/PID/fd` as `memfd:NAME`).
    name: String,
    /// Why huge pages could not be had, when [`HugePages::Auto`] fell back to normal pages.
    huge_fallback: Option<Box<MapError>>,
}

impl Region {
    /// Creates a region of at least `len` bytes, named `name`, mapped read-write.
    ///
    /// The length is rounded up to the page size (2 MiB with huge pages). With
    /// [`HugePages::Auto`], any failure to get huge pages falls back to normal pages; see
    /// [`kind`](Self::kind) and [`huge_fallback`](Self::huge_fallback).
    pub fn create(name: &str, len: usize, huge: HugePages) -> Result<Self, MapError> {
        if len == 0 || len as u64 > MAX_REGION_LEN {
            return Err(MapError::InvalidLength {
                what: format!("region {name:?}"),
                len: len as u64,
                max: MAX_REGION_LEN,
            });
        }
        match huge {
            HugePages::Off => Self::create_kind(name, len, MemKind::Normal),
            HugePages::On => Self::create_kind(name, len, MemKind::Huge2M),
            HugePages::Auto => Self::create_kind(name, len, MemKind::Huge2M).or_else(|err| {
                let mut region = Self::create_kind(name, len, MemKind::Normal)?;
                region.huge_fallback = Some(Box::new(err));
                Ok(region)
            }),
        }
    }

    /// Creates, sizes, seals and maps a memfd of the given kind.
    fn create_kind(name: &str, len: usize, kind: MemKind) -> Result<Self, MapError> {
        let fd = memfd(name, kind).map_err(|e| step_error(name, len, kind, "memfd_create", e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| create_error(name, "fstat", e))?;
        let size = round_up(len, block_size(&stat)).ok_or_else(|| MapError::InvalidLength {
            what: format!("region {name:?}"),
            len: len as u64,
            max: MAX_REGION_LEN,
        })?;
        rustix::fs::ftruncate(&fd, size as u64).map_err(|e| create_error(name, "ftruncate", e))?;
        let seals = SealFlags::SHRINK | SealFlags::GROW;
        rustix::fs::fcntl_add_seals(&fd, seals)
            .map_err(|e| create_error(name, "F_ADD_SEALS", e))?;
        let map = Mapping::map(fd.as_fd(), size, Access::ReadWrite).map_err(|e| match e {
            MapError::Map { source, .. } => huge_or(name, size, kind, "mmap", source),
            other => other,
        })?;
        if kind == MemKind::Huge2M {
            populate(&map).map_err(|e| step_error(name, size, kind, "madvise(POPULATE)", e))?;
        }
        rustix::fs::fchmod(&fd, Mode::RUSR).map_err(|e| create_error(name, "fchmod 0400", e))?;
        Ok(Self {
            map,
            fd,
            kind,
            name: name.to_owned(),
            huge_fallback: None,
        })
    }

    /// Bytes in the region: the length asked for, rounded up to the page size.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Start of the region, page aligned, writable.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// What kind of pages back the region.
    pub fn kind(&self) -> MemKind {
        self.kind
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why huge pages could not be had, when [`HugePages::Auto`] fell back to normal pages.
    pub fn huge_fallback(&self) -> Option<&MapError> {
        self.huge_fallback.as_deref()
    }

    /// The memfd, read-write.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A new read-write fd for the region (`F_DUPFD_CLOEXEC`), to hand to a trusted peer.
    pub fn dup_fd(&self) -> Result<OwnedFd, MapError> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(|e| self.fd_error("dup", e))
    }

    /// Adds the final seals: `F_SEAL_SEAL`, and with `writes` `F_SEAL_FUTURE_WRITE` (see the
    /// module documentation). Fails if a peer holding an fd sealed it first (`EPERM`).
    pub fn seal(&self, writes: bool) -> Result<(), MapError> {
        let mut seals = SealFlags::SEAL;
        if writes {
            seals |= SealFlags::FUTURE_WRITE;
        }
        rustix::fs::fcntl_add_seals(&self.fd, seals).map_err(|e| self.fd_error("F_ADD_SEALS", e))
    }

    /// A new read-only fd for the region, to hand to a peer that must not write it.
    ///
    /// Reopens `/proc/self/fd/N` with `O_RDONLY | O_CLOEXEC`: a new open file description, so a
    /// `PROT_WRITE` shared mapping of it fails with `EACCES`.
    pub fn readonly_fd(&self) -> Result<OwnedFd, MapError> {
        reopen_readonly(self.fd.as_fd())
            .map_err(|e| self.fd_error("open /proc/self/fd/N read-only", e))
    }

    /// A [`MapError::Fd`] for this region.
    fn fd_error(&self, step: &'static str, err: Errno) -> MapError {
        MapError::Fd {
            name: self.name.clone(),
            step,
            source: err.into(),
        }
    }
}

/// Whether the memfd behind `fd` refuses new writes and writable mappings
/// (`F_SEAL_FUTURE_WRITE` or `F_SEAL_WRITE`).
pub fn is_write_sealed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd)
        .is_ok_and(|s| s.intersects(SealFlags::FUTURE_WRITE | SealFlags::WRITE))
}

/// Seals the memfd behind `fd` against every new write and writable mapping
/// (`F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`, see [`Region::seal`]) through any of its fds. Done
/// when it is write-sealed already; fails when a peer holding an fd sealed it against new seals
/// first, leaving it writable (`EPERM`), or when the kernel has no `F_SEAL_FUTURE_WRITE` (before
/// Linux 5.1, `EINVAL`).
pub fn seal_against_writes(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    if is_write_sealed(fd) {
        return Ok(());
    }
    rustix::fs::fcntl_add_seals(fd, SealFlags::SEAL | SealFlags::FUTURE_WRITE)
        .map_err(std::io::Error::from)
}

/// Checks that the kernel enforces a write seal on a region of `kind`: reopens it read-write
/// through `/proc/self/fd/N` (which works even for root) and tries a writable shared mapping and
/// a `write(2)`; both must fail. Returns what went through, if anything did.
pub fn probe_write_seal(region: &Region) -> Option<String> {
    let path = format!("/proc/self/fd/{}", region.fd().as_raw_fd());
    let rw = match rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        // Cannot even be reopened read-write: nothing to get around.
        Err(_) => return None,
    };
    // SAFETY: a fresh shared mapping of the region's first page, unmapped right away; nothing
    // reads or writes it.
    let mapped = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            region.len().min(HUGE_PAGE_SIZE),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &rw,
            0,
        )
    };
    if let Ok(p) = mapped {
        // SAFETY: exactly the mapping made above.
        let _ = unsafe { rustix::mm::munmap(p, region.len().min(HUGE_PAGE_SIZE)) };
        return Some("a writable shared mapping".to_owned());
    }
    if rustix::io::pwrite(&rw, &[], 0).is_ok() && rustix::io::pwrite(&rw, &[0], 0).is_ok() {
        return Some("write(2)".to_owned());
    }
    None
}

/// A new read-only fd for the file behind `fd`: reopens `/proc/self/fd/N` with
/// `O_RDONLY | O_CLOEXEC`, a new open file description, so a `PROT_WRITE` shared mapping of it
/// fails with `EACCES` (a `dup` would share the read-write description instead).
pub fn reopen_readonly(fd: BorrowedFd<'_>) -> rustix::io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `memfd_create` with close-on-exec and sealing allowed, on huge pages for [`MemKind::Huge2M`].
fn memfd(name: &str, kind: MemKind) -> rustix::io::Result<OwnedFd> {
    let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    if kind == MemKind::Huge2M {
        flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB;
    }
    rustix::fs::memfd_create(name, flags)
}

/// Faults in every page of a huge-page mapping now, reporting a shortage as an error rather than
/// as SIGBUS on first touch. `EINVAL` (kernel before 5.14) is ignored: the `mmap` reservation
/// already holds the pages.
fn populate(map: &Mapping) -> rustix::io::Result<()> {
    // SAFETY: the range is exactly our own mapping; MADV_POPULATE_WRITE only faults pages in and
    // does not change their contents.
    let result = unsafe {
        rustix::mm::madvise(map.as_ptr().cast(), map.map_len, Advice::LinuxPopulateWrite)
    };
    match result {
        Err(Errno::INVAL) => Ok(()),
        other => other,
    }
}

/// A [`MapError::Create`].
fn create_error(name: &str, step: &'static str, err: Errno) -> MapError {
    MapError::Create {
        name: name.to_owned(),
        step,
        source: err.into(),
    }
}

/// A [`MapError::HugePages`] for huge pages, [`MapError::Create`] otherwise.
fn step_error(name: &str, len: usize, kind: MemKind, step: &'static str, err: Errno) -> MapError {
    huge_or(name, len, kind, step, err.into())
}

/// A [`MapError::HugePages`] for huge pages, [`MapError::Create`] otherwise.
fn huge_or(
    name: &str,
    len: usize,
    kind: MemKind,
    step: &'static str,
    source: io::Error,
) -> MapError {
    match kind {
        MemKind::Huge2M => MapError::HugePages {
            name: name.to_owned(),
            len: len as u64,
            pages: (len as u64).div_ceil(HUGE_PAGE_SIZE as u64),
            step,
            source,
        },
        MemKind::Normal => MapError::Create {
            name: name.to_owned(),
            step,
            source,
        },
    }
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`) over the Unix stream socket `sock`.
///
/// `data` must not be empty: the fds travel with its first byte. Sends all of `data`, retrying
/// on `EINTR` and after short writes; `MSG_NOSIGNAL`, so a closed peer is `EPIPE`, not SIGPIPE.
/// At most [`MAX_FDS`] fds.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut sent = sendmsg_fds(sock, data, fds, SendFlags::NOSIGNAL)?;
    while sent < data.len() {
        sent += retry_eintr(|| rustix::net::send(sock, &data[sent..], SendFlags::NOSIGNAL))?;
    }
    Ok(())
}

/// One non-blocking attempt to send `data` with `fds` attached (`SCM_RIGHTS`) over the Unix
/// stream socket `sock`: returns the bytes sent (the fds went with the first of them), or
/// `WouldBlock` when nothing was sent. `MSG_NOSIGNAL | MSG_DONTWAIT`. At most [`MAX_FDS`] fds.
pub fn send_fds_nonblocking(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    sendmsg_fds(sock, data, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
}

/// One `sendmsg` of `data` with `fds` attached, retried on `EINTR`; returns the bytes sent.
fn sendmsg_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    if data.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "send_fds: {} bytes and {} fds; at least 1 byte and at most {MAX_FDS} fds allowed",
                data.len(),
                fds.len()
            ),
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
        debug_assert!(pushed, "the buffer is sized for MAX_FDS fds");
    }
    let iov = [IoSlice::new(data)];
    retry_eintr(|| rustix::net::sendmsg(sock, &iov, &mut control, flags))
}

/// Receives bytes into `buf` and up to `max_fds` fds (`SCM_RIGHTS`) from the Unix stream socket
/// `sock`. Returns the byte count (0 at end of stream) and the fds, each close-on-exec
/// (`MSG_CMSG_CLOEXEC`).
///
/// Fds arrive with the first byte of the `sendmsg` that carried them; a call may return fewer
/// bytes than were sent. When the peer sent more than `max_fds` fds, all of them are closed and
/// the call fails with `InvalidData`. At most [`MAX_FDS`].
pub fn recv_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    if max_fds > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("recv_fds: max_fds {max_fds} is not allowed; at most {MAX_FDS}"),
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control =
        RecvAncillaryBuffer::new(&mut space[..rustix::cmsg_space!(ScmRights(max_fds))]);
    let flags = RecvFlags::CMSG_CLOEXEC;
    let mut iov = [IoSliceMut::new(buf)];
    let msg = retry_eintr(|| rustix::net::recvmsg(sock, &mut iov, &mut control, flags))?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("recv_fds: the peer sent more than {max_fds} fds; all were closed"),
        ));
    }
    Ok((msg.bytes, fds))
}

/// Calls `op` until it does not fail with `EINTR`.
fn retry_eintr<T>(mut op: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// Serialises every test that changes `/proc/sys/vm/nr_hugepages`.
    static HUGEPAGES: Mutex<()> = Mutex::new(());

    const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

    /// Sets `nr_hugepages` while alive and restores the old value on drop, panics included.
    pub(crate) struct NrHugepages {
        old: String,
        _lock: MutexGuard<'static, ()>,
    }

    impl NrHugepages {
        /// Sets `nr_hugepages` to `pages`; `None` when this process may not (not root).
        pub(crate) fn set(pages: u64) -> Option<Self> {
            let lock = HUGEPAGES.lock().unwrap_or_else(|e| e.into_inner());
            let old = std::fs::read_to_string(NR_HUGEPAGES).ok()?;
            let guard = Self { old, _lock: lock };
            std::fs::write(NR_HUGEPAGES, pages.to_string()).ok()?;
            Some(guard)
        }

        /// How many huge pages the kernel reserved (it may get fewer than asked).
        pub(crate) fn total() -> u64 {
            let text = std::fs::read_to_string(NR_HUGEPAGES).unwrap_or_default();
            text.trim().parse().unwrap_or(0)
        }
    }

    impl Drop for NrHugepages {
        fn drop(&mut self) {
            let restored = std::fs::write(NR_HUGEPAGES, self.old.trim());
            assert!(
                restored.is_ok(),
                "could not restore nr_hugepages: {restored:?}"
            );
        }
    }

    fn memfd_of(len: u64, seals: SealFlags) -> OwnedFd {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = rustix::fs::memfd_create("mcm-test", flags).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
        }
        fd
    }

    #[test]
    fn region_is_rounded_sealed_and_owner_only() {
        let region = Region::create("mcm-test-region", 5000, HugePages::Off).unwrap();
        assert_eq!(region.kind(), MemKind::Normal);
        assert!(region.huge_fallback().is_none());
        assert_eq!(region.len() % 4096, 0);
        assert!(region.len() >= 5000);
        let seals = rustix::fs::fcntl_get_seals(region.fd()).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW));
        assert!(
            !seals.contains(SealFlags::SEAL),
            "closed later by Region::seal"
        );
        let grow = rustix::fs::ftruncate(region.fd(), 1 << 20);
        assert_eq!(grow, Err(Errno::PERM), "sealed against growing");
        let shrink = rustix::fs::ftruncate(region.fd(), 0);
        assert_eq!(shrink, Err(Errno::PERM), "sealed against shrinking");
        let stat = rustix::fs::fstat(region.fd()).unwrap();
        assert_eq!(stat.st_mode & 0o777, 0o400);
    }

    #[test]
    fn region_rejects_bad_lengths() {
        let err = Region::create("mcm-test-zero", 0, HugePages::Off).unwrap_err();
        assert!(
            matches!(err, MapError::InvalidLength { len: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("1..=68719476736"), "{err}");
        let too_big = (MAX_REGION_LEN + 1) as usize;
        let err = Region::create("mcm-test-big", too_big, HugePages::Off).unwrap_err();
        assert!(err.to_string().contains("mcm-test-big"), "{err}");
    }

    #[test]
    fn readonly_fd_cannot_be_mapped_writable() {
        let region = Region::create("mcm-test-ro", 4096, HugePages::Off).unwrap();
        // SAFETY: the region is ours and nothing else references it.
        unsafe { region.as_ptr().write_bytes(0xA5, 4096) };
        let ro = region.readonly_fd().unwrap();
        let err = Mapping::map(ro.as_fd(), 4096, Access::ReadWrite).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_eacces()), "{err}");
        assert!(err.to_string().contains("read-write"), "{err}");
        let map = Mapping::map(ro.as_fd(), 4096, Access::ReadOnly).unwrap();
        // SAFETY: in bounds of a live read-only mapping.
        assert_eq!(unsafe { map.as_ptr().add(4095).read_volatile() }, 0xA5);
        let flags = rustix::io::fcntl_getfd(&ro).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    fn libc_eacces() -> i32 {
        Errno::ACCESS.raw_os_error()
    }

    #[test]
    fn a_write_seal_stops_every_new_writer_but_not_the_owner() {
        let r = Region::create("seal-test", 4096, HugePages::Off).unwrap();
        // Before the seal, a reopened read-write fd (root, or the owner after fchmod) can map it
        // writable: the attack the seal exists for.
        assert!(probe_write_seal(&r).is_some() || !rustix::process::geteuid().is_root());
        assert!(!is_write_sealed(r.fd()));
        r.seal(true).unwrap();
        assert!(is_write_sealed(r.fd()));
        assert_eq!(probe_write_seal(&r), None);
        // A read-only mapping is still allowed, and the owner's mapping still writes.
        let ro = Mapping::map(r.readonly_fd().unwrap().as_fd(), 4096, Access::ReadOnly).unwrap();
        // SAFETY: both mappings are 4096 bytes of the same live region.
        unsafe {
            r.as_ptr().write_volatile(42);
            assert_eq!(ro.as_ptr().read_volatile(), 42);
        }
        // Nobody can add or change seals afterwards.
        assert!(r.seal(false).is_err());
        // A region sealed without `writes` stays writable for new mappings.
        let c = Region::create("seal-test-rw", 4096, HugePages::Off).unwrap();
        c.seal(false).unwrap();
        assert!(!is_write_sealed(c.fd()));
        assert!(Mapping::map(c.dup_fd().unwrap().as_fd(), 4096, Access::ReadWrite).is_ok());
    }

    #[test]
    fn dup_fd_maps_writable_and_shares_pages() {
        let region = Region::create("mcm-test-dup", 4096, HugePages::Off).unwrap();
        let rw = region.dup_fd().unwrap();
        let map = Mapping::map(rw.as_fd(), 100, Access::ReadWrite).unwrap();
        assert_eq!(map.len(), 100);
        // SAFETY: in bounds of both live mappings; single-threaded test.
        unsafe {
            map.as_ptr().add(99).write_volatile(7);
            assert_eq!(region.as_ptr().add(99).read_volatile(), 7);
        }
    }

    #[test]
    fn map_rejects_short_fd_before_mapping() {
        let fd = memfd_of(4096, SealFlags::SHRINK);
        let err = Mapping::map(fd.as_fd(), 8192, Access::ReadOnly).unwrap_err();
        match err {
            MapError::FdTooShort { fd_len, len, .. } => assert_eq!((fd_len, len), (4096, 8192)),
            other => panic!("unexpected {other}"),
        }
        assert!(Mapping::map(fd.as_fd(), 4096, Access::ReadOnly).is_ok());
    }

    #[test]
    fn map_rejects_unsealed_fd_and_zero_length() {
        let fd = memfd_of(4096, SealFlags::GROW);
        let err = Mapping::map(fd.as_fd(), 4096, Access::ReadOnly).unwrap_err();
        assert!(matches!(err, MapError::NotSealed { .. }), "{err}");
        assert!(err.to_string().contains("F_SEAL_SHRINK"), "{err}");
        let sealed = memfd_of(4096, SealFlags::SHRINK);
        let err = Mapping::map(sealed.as_fd(), 0, Access::ReadOnly).unwrap_err();
        assert!(
            matches!(err, MapError::InvalidLength { len: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn fds_pass_over_a_socketpair_with_cloexec() {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let region = Region::create("mcm-test-pass", 4096, HugePages::Off).unwrap();
        let ro = region.readonly_fd().unwrap();
        send_fds(a.as_fd(), b"hello", &[region.fd(), ro.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 2).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
        let err = Mapping::map(fds[1].as_fd(), 4096, Access::ReadWrite).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_eacces()), "{err}");
    }

    #[test]
    fn recv_fds_refuses_more_fds_than_asked() {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let fd = memfd_of(4096, SealFlags::SHRINK);
        let many: Vec<BorrowedFd<'_>> = (0..8).map(|_| fd.as_fd()).collect();
        send_fds(a.as_fd(), b"x", &many).unwrap();
        let mut buf = [0u8; 4];
        let err = recv_fds(b.as_fd(), &mut buf, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let err = send_fds(a.as_fd(), b"", &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = recv_fds(b.as_fd(), &mut buf, MAX_FDS + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
