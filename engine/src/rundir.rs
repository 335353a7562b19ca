//! The engine's private runtime directory (`memory.shm_dir`): the SDK socket, published SDP
//! files and the lock that says an engine is using it.
//!
//! The engine trusts no folder it did not make:
//!
//! - Every existing ancestor of the directory must belong to root or to the engine's user and be
//!   writable by no one else, unless it has the sticky bit (`/tmp`, `/dev/shm`), so nobody else
//!   can rename or replace the directory under the engine.
//! - The directory is created with `mkdirat` and its mode set with `fchmod` to `0700` (`0750`
//!   with `memory.group`), whatever the umask. An existing one is opened with `O_NOFOLLOW` (a
//!   symlink is refused) and must belong to the engine's user and be writable by nobody else;
//!   otherwise the engine does not start, and says why.
//! - `engine.lock` inside it is held with `flock` for the engine's life: a second engine on the
//!   same directory is refused, and files a dead engine left (SDP files, half-written temporary
//!   files) are removed at start.
//! - Files are written through the directory's fd: a temporary name opened with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, its mode set explicitly, then renamed over the final name, so
//!   a link planted under that name is replaced, never followed.
//!
//! The default directory is chosen so that another user cannot create it first: `/run/mcm` for
//! root (only root can create entries in `/run`); for another user `$XDG_RUNTIME_DIR/mcm` (the
//! per-user runtime directory, `0700`) when it is set, else `/tmp/mcm-<uid>`, which is guessable
//! but verified like any other: one that another user made is refused at start.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Name of the lock file inside the directory.
pub const LOCK_FILE: &str = "engine.lock";

/// Prefix of the temporary files [`write_file`] renames into place.
const TMP_PREFIX: &str = ".tmp-";

/// Why the runtime directory cannot be used.
#[derive(Debug)]
pub struct RunDirError {
    /// The directory (or the ancestor) at fault.
    pub path: PathBuf,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl fmt::Display for RunDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for RunDirError {}

fn error(path: &Path, reason: impl Into<String>) -> RunDirError {
    RunDirError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The default `memory.shm_dir` for a user with effective uid `uid` and `$XDG_RUNTIME_DIR`
/// `runtime` (see the module documentation).
pub fn default_path(uid: u32, runtime: Option<&OsStr>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/mcm");
    }
    match runtime.map(Path::new) {
        Some(dir) if dir.is_absolute() => dir.join("mcm"),
        _ => PathBuf::from(format!("/tmp/mcm-{uid}")),
    }
}

/// The default `memory.shm_dir` of this process.
pub fn default_for_this_user() -> PathBuf {
    let uid = rustix::process::geteuid().as_raw();
    default_path(uid, std::env::var_os("XDG_RUNTIME_DIR").as_deref())
}

/// Checks that `dir` (an existing directory) and each of its ancestors belong to root or to this
/// user and that no one else can write them, unless they have the sticky bit.
pub fn check_ancestors(dir: &Path) -> Result<(), RunDirError> {
    let real = dir
        .canonicalize()
        .map_err(|e| error(dir, format!("cannot resolve it: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    for p in real.ancestors() {
        let st = rustix::fs::stat(p).map_err(|e| error(p, format!("cannot stat it: {e}")))?;
        let mode = st.st_mode & 0o7777;
        if st.st_uid != 0 && st.st_uid != me {
            let msg = format!(
                "belongs to uid {}, so that user could replace what the engine puts below it \
                 (allowed: directories of root or of uid {me})",
                st.st_uid
            );
            return Err(error(p, msg));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            let msg = format!(
                "mode {mode:04o} lets other users rename or replace what is in it (allowed: no \
                 group or other write permission, or the sticky bit as on /tmp)"
            );
            return Err(error(p, msg));
        }
    }
    Ok(())
}

/// The runtime directory, held for the engine's life: its fd and its lock.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    dir: OwnedFd,
    _lock: OwnedFd,
    created: bool,
    stale: usize,
}

impl RunDir {
    /// Creates or verifies `path` (see the module documentation), takes its lock and removes
    /// what a dead engine left. `group`: the gid that may enter it (mode `0750`).
    pub fn open(path: &Path, group: Option<u32>) -> Result<Self, RunDirError> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                return Err(error(
                    path,
                    "is not a directory below / (allowed: e.g. /run/mcm)",
                ));
            }
        };
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(parent)
                .map_err(|e| error(parent, format!("cannot create it: {e}")))?;
        }
        check_ancestors(parent)?;
        let parent_fd = rustix::fs::open(
            parent,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| error(parent, format!("cannot open it: {e}")))?;
        let mode = if group.is_some() { 0o750 } else { 0o700 };
        let created = match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(error(path, format!("cannot create it: {e}"))),
        };
        let dir = rustix::fs::openat(
            &parent_fd,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => error(
                path,
                "exists and is not a directory (a symbolic link is refused: the engine only \
                 uses a directory it can verify; allowed: a directory of this user, or a path \
                 that does not exist yet)",
            ),
            e => error(path, format!("cannot open it: {e}")),
        })?;
        if !created {
            verify_existing(path, dir.as_fd())?;
        }
        // The mode and group are set on the open directory, whatever the umask was.
        if let Some(gid) = group {
            rustix::fs::fchown(&dir, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| error(path, format!("cannot give it to group {gid}: {e}")))?;
        }
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))
            .map_err(|e| error(path, format!("cannot set its mode to {mode:04o}: {e}")))?;
        let lock = take_lock(path, dir.as_fd())?;
        let stale = remove_stale(dir.as_fd());
        Ok(Self {
            path: path.to_owned(),
            dir,
            _lock: lock,
            created,
            stale,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this engine created it (and removes it at exit).
    pub fn created(&self) -> bool {
        self.created
    }

    /// How many files a dead engine left were removed at start.
    pub fn stale_removed(&self) -> usize {
        self.stale
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir, LOCK_FILE, AtFlags::empty());
        if !self.created {
            return;
        }
        // Everything else this engine put there (the SDK socket, SDP files) is removed before.
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("memory.shm_dir: {} left in place: {e}", self.path.display()),
        }
    }
}

/// An existing directory must be this user's and writable by nobody else.
fn verify_existing(path: &Path, dir: BorrowedFd<'_>) -> Result<(), RunDirError> {
    let st = rustix::fs::fstat(dir).map_err(|e| error(path, format!("cannot stat it: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        let msg = format!(
            "exists and belongs to uid {}, not to the engine's uid {me}: someone else made it \
             (allowed: a directory of uid {me}, or a path that does not exist yet; remove it if \
             it is not needed)",
            st.st_uid
        );
        return Err(error(path, msg));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        let msg = format!(
            "exists with mode {mode:04o}: other users can write it, so what is in it cannot be \
             trusted (allowed: no group or other write permission; the engine sets 0700 itself \
             on a directory it creates)"
        );
        return Err(error(path, msg));
    }
    Ok(())
}

/// Takes `engine.lock` (refused when another engine holds it) and writes this pid into it.
fn take_lock(path: &Path, dir: BorrowedFd<'_>) -> Result<OwnedFd, RunDirError> {
    let lock = rustix::fs::openat(
        dir,
        LOCK_FILE,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| error(path, format!("cannot open {LOCK_FILE}: {e}")))?;
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let pid = std::fs::read_to_string(path.join(LOCK_FILE)).unwrap_or_default();
            let msg = format!(
                "is in use by another engine (pid {}; allowed: one engine per directory, give \
                 each its own memory.shm_dir)",
                pid.trim()
            );
            return Err(error(path, msg));
        }
        Err(e) => return Err(error(path, format!("cannot lock {LOCK_FILE}: {e}"))),
    }
    let _ = rustix::fs::ftruncate(&lock, 0);
    let _ = rustix::io::pwrite(&lock, format!("{}\n", std::process::id()).as_bytes(), 0);
    Ok(lock)
}

/// Whether `name` is one of the files an engine writes and a dead one may leave behind.
fn is_engine_file(name: &[u8]) -> bool {
    (name.starts_with(b"st2110-") && name.ends_with(b".sdp"))
        || name.starts_with(TMP_PREFIX.as_bytes())
}

/// Removes the SDP and temporary files a dead engine left; returns how many.
fn remove_stale(dir: BorrowedFd<'_>) -> usize {
    let Ok(fd) = rustix::fs::openat(
        dir,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return 0;
    };
    let Ok(mut entries) = rustix::fs::Dir::read_from(&fd) else {
        return 0;
    };
    let mut names = Vec::new();
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        let plain = matches!(
            entry.file_type(),
            FileType::RegularFile | FileType::Symlink | FileType::Unknown
        );
        if plain && is_engine_file(name) {
            names.push(entry.file_name().to_owned());
        }
    }
    let mut removed = 0;
    for name in names {
        match rustix::fs::unlinkat(dir, name.as_c_str(), AtFlags::empty()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("memory.shm_dir: cannot remove stale {name:?}: {e}"),
        }
    }
    removed
}

/// Writes `text` to `dir/name` with mode `0644` through the directory: a temporary file opened
/// with `O_CREAT | O_EXCL | O_NOFOLLOW`, then renamed over `name` (a link there is replaced, not
/// followed). Returns the path written.
pub fn write_file(dir: &Path, name: &str, text: &str) -> io::Result<PathBuf> {
    if name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    let dfd = open_dir(dir)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!("{TMP_PREFIX}{}-{n}", std::process::id());
    let fd = rustix::fs::openat(
        &dfd,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let written = write_all(fd.as_fd(), text.as_bytes())
        .and_then(|()| rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644)).map_err(io::Error::from))
        .and_then(|()| {
            rustix::fs::renameat(&dfd, tmp.as_str(), &dfd, name).map_err(io::Error::from)
        });
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dfd, tmp.as_str(), AtFlags::empty());
        return Err(e);
    }
    Ok(dir.join(name))
}

/// Removes `dir/name` if it still holds exactly `text` (read without following a link).
pub fn remove_if_unchanged(dir: &Path, name: &str, text: &str) {
    let Ok(dfd) = open_dir(dir) else { return };
    let Ok(fd) = rustix::fs::openat(
        &dfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let mut buf = vec![0u8; text.len() + 1];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(&fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
    if &buf[..got] == text.as_bytes() {
        let _ = rustix::fs::unlinkat(&dfd, name, AtFlags::empty());
    }
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn default_paths_are_per_user() {
        assert_eq!(default_path(0, None), PathBuf::from("/run/mcm"));
        assert_eq!(
            default_path(0, Some(OsStr::new("/run/user/0"))),
            PathBuf::from("/run/mcm")
        );
        assert_eq!(
            default_path(1000, Some(OsStr::new("/run/user/1000"))),
            PathBuf::from("/run/user/1000/mcm")
        );
        assert_eq!(default_path(1000, None), PathBuf::from("/tmp/mcm-1000"));
        assert_eq!(
            default_path(1000, Some(OsStr::new("relative"))),
            PathBuf::from("/tmp/mcm-1000")
        );
    }

    #[test]
    fn a_new_directory_is_private_and_locked() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run");
        let d = RunDir::open(&path, None).unwrap();
        assert!(d.created());
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        assert!(path.join(LOCK_FILE).exists());
        // A second engine on it is refused while the first holds the lock.
        let e = RunDir::open(&path, None).unwrap_err();
        assert!(e.reason.contains("is in use by another engine"), "{e}");
        drop(d);
        assert!(!path.exists(), "removed at exit because it was created");
    }

    #[test]
    fn a_group_gets_0750() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run");
        let d = RunDir::open(&path, Some(65534)).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        if rustix::process::geteuid().is_root() {
            assert_eq!(m.gid(), 65534);
        }
        drop(d);
    }

    #[test]
    fn writable_or_linked_directories_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = RunDir::open(&open, None).unwrap_err();
        assert!(e.reason.contains("other users can write it"), "{e}");
        let link = t.path().join("link");
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = RunDir::open(&link, None).unwrap_err();
        assert!(e.reason.contains("a symbolic link is refused"), "{e}");
        // Below a world-writable parent without the sticky bit.
        let below = open.join("mcm");
        let e = RunDir::open(&below, None).unwrap_err();
        assert_eq!(e.path, open.canonicalize().unwrap());
        assert!(e.reason.contains("lets other users rename"), "{e}");
    }

    #[test]
    fn stale_files_are_removed_and_writes_replace_links() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("st2110-tx-239.0.0.1-5004.sdp"), "old").unwrap();
        std::fs::write(path.join(".tmp-1-0"), "half").unwrap();
        std::fs::write(path.join("keep.txt"), "not ours").unwrap();
        let d = RunDir::open(&path, None).unwrap();
        assert_eq!(d.stale_removed(), 2);
        assert!(!d.created());
        assert!(path.join("keep.txt").exists());
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, path.join("st2110-tx-x.sdp")).unwrap();
        let p = write_file(&path, "st2110-tx-x.sdp", "v=0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "v=0\n");
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        remove_if_unchanged(&path, "st2110-tx-x.sdp", "other");
        assert!(p.exists());
        remove_if_unchanged(&path, "st2110-tx-x.sdp", "v=0\n");
        assert!(!p.exists());
        assert!(write_file(&path, "../escape", "x").is_err());
        assert!(is_engine_file(b"st2110-rx-1.2.3.4-5.sdp"));
        assert!(!is_engine_file(b"sdk.sock"));
        drop(d);
        assert!(path.exists(), "a directory the engine did not create stays");
    }
}
