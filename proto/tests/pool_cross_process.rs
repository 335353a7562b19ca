//! A pool shared with a real second process: the test binary re-executes itself as the child,
//! passes the pool's fds over a Unix socketpair with `SCM_RIGHTS`, and checks what the child
//! wrote through its own mapping.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mcm_proto::shm::map::{Access, HugePages, MapError, Mapping, recv_fds, send_fds};
use mcm_proto::shm::pool::{Pool, PoolError, PoolGeometry, PoolView, SlotHeader};
use rustix::io::{Errno, FdFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Set in the child: the number of its inherited end of the socketpair.
const CHILD_ENV: &str = "MCM_POOL_CHILD_SOCK";
/// The test the child runs.
const CHILD_TEST: &str = "child_writes_pattern";
/// Every wait is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(30);

const GEOMETRY: PoolGeometry = PoolGeometry {
    slot_count: 3,
    payload_capacity: 5000,
    metadata_capacity: 24,
};

const HEADER: SlotHeader = SlotHeader {
    seq: 0x0123_4567_89ab_cdef,
    timestamp_ns: 1_234_567_890,
    payload_len: 5000,
    metadata_len: 24,
    reserved: [0; 5],
};

/// The byte the child writes at payload offset `i`.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// Kills and reaps the child if the test ends before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits at most [`TIMEOUT`] for the child; kills it and fails the test past that.
fn wait_bounded(child: &mut ChildGuard) -> (ExitStatus, String) {
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            panic!("the child did not exit within {TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut output = String::new();
    if let Some(mut out) = child.0.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    (status, output)
}

#[test]
fn child_process_writes_pool_through_received_fds() {
    let mut pool = Pool::create(9, "mcm-test-xproc", GEOMETRY, HugePages::Off).unwrap();
    let _ = pool.alloc();
    let slot = pool.alloc().unwrap();
    let flags = SocketFlags::CLOEXEC;
    let (parent_end, child_end) =
        rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, flags, None).unwrap();
    // The one fd the child inherits.
    rustix::io::fcntl_setfd(&child_end, FdFlags::empty()).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, child_end.as_raw_fd().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    drop(child_end);

    let rw = pool.dup_fd().unwrap();
    let ro = pool.readonly_fd().unwrap();
    let mut sock = UnixStream::from(parent_end);
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    send_fds(sock.as_fd(), &slot.to_le_bytes(), &[rw.as_fd(), ro.as_fd()]).unwrap();
    let mut ack = [0u8; 2];
    let acked = sock.read_exact(&mut ack);
    let (status, output) = wait_bounded(&mut child);
    assert!(status.success(), "child failed ({status}):\n{output}");
    acked.unwrap_or_else(|e| panic!("no ack from the child: {e}\n{output}"));
    assert_eq!(&ack, b"ok");

    assert_eq!(pool.header(slot).unwrap(), HEADER);
    let payload = pool.payload(slot).unwrap();
    assert!(payload.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert_eq!(pool.metadata(slot).unwrap(), b"written by the child 012");
    assert!(
        pool.payload(0).unwrap().iter().all(|&b| b == 0),
        "other slots untouched"
    );
}

/// The child's half: does nothing unless started by the test above.
#[test]
fn child_writes_pattern() {
    let Ok(raw) = std::env::var(CHILD_ENV) else {
        return;
    };
    let raw: i32 = raw.parse().expect("fd number");
    // SAFETY: the parent cleared CLOEXEC on this end of its socketpair and passed its number;
    // nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut sock = UnixStream::from(sock);
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 4];
    let (n, fds) = recv_fds(sock.as_fd(), &mut buf, 2).unwrap();
    assert_eq!((n, fds.len()), (4, 2), "slot index and two fds");
    for fd in &fds {
        let flags = rustix::io::fcntl_getfd(fd).unwrap();
        assert!(
            flags.contains(FdFlags::CLOEXEC),
            "received fds are close-on-exec"
        );
    }
    let slot = u32::from_le_bytes(buf);
    write_through_rw(&fds[0], slot);
    check_readonly(&fds[1], slot);
    sock.write_all(b"ok").unwrap();
}

/// Writes the pattern, the metadata and the header through a read-write view.
fn write_through_rw(fd: &OwnedFd, slot: u32) {
    let mut view = PoolView::attach(fd.as_fd(), GEOMETRY, Access::ReadWrite).unwrap();
    let payload = view.payload_mut(slot, HEADER.payload_len).unwrap();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = pattern(i);
    }
    let metadata = view.metadata_mut(slot, HEADER.metadata_len).unwrap();
    metadata.copy_from_slice(b"written by the child 012");
    view.set_header(slot, &HEADER).unwrap();
}

/// Checks that the read-only fd cannot be mapped writable, and reads the pattern through it.
fn check_readonly(fd: &OwnedFd, slot: u32) {
    let len = GEOMETRY.region_len().unwrap();
    let err = Mapping::map(fd.as_fd(), len, Access::ReadWrite).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(Errno::ACCESS.raw_os_error()),
        "{err}"
    );
    let err = PoolView::attach(fd.as_fd(), GEOMETRY, Access::ReadWrite).unwrap_err();
    assert!(
        matches!(
            &err,
            PoolError::Map {
                source: MapError::Map { .. },
                ..
            }
        ),
        "{err}"
    );
    let view = PoolView::attach(fd.as_fd(), GEOMETRY, Access::ReadOnly).unwrap();
    assert_eq!(view.header(slot).unwrap(), HEADER);
    let payload = view.payload(slot, HEADER.payload_len).unwrap();
    assert!(payload.iter().enumerate().all(|(i, &b)| b == pattern(i)));
}
