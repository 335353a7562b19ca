//! The shared-memory control block of one SDK connection: two descriptor rings and the wake-up
//! protocol around them.
//!
//! The engine creates one small memfd per connection (a [`Region`] of normal pages) and passes it,
//! with two eventfd doorbells, to the client over the SDK's Unix socket. Both sides map it
//! read-write: each writes its own ring indices and its own wait flag.
//!
//! ```text
//! offset  size  contents                                              written by
//! 0       128   magic u32, version u32, kind u32, ring_capacity u32,  engine, once (magic last,
//!               region_len u64                                        Release)
//! 128     128   client_waiting: AtomicU32                             client
//! 256     128   engine_sleeping: AtomicU32                            engine
//! 384     128   closed: AtomicU32                                     engine
//! 512           to_client ring of Descriptor                          engine produces
//! 512+R         to_engine ring of Descriptor (R = ring size rounded   client produces
//!               up to 128 bytes)
//! ```
//!
//! For a tx connection `to_client` carries free slots and `to_engine` filled frames; for an rx
//! connection `to_client` carries frames and `to_engine` the slots the client releases.
//!
//! Wake-ups follow the lcore parker's pattern (Dekker): a side about to sleep sets its flag,
//! fences (SeqCst), re-checks its ring, and only then waits on its doorbell; a side that pushed
//! fences and rings the other's doorbell only if that side's flag is set. No wake-up is lost and a
//! side that is not sleeping costs its peer no syscall. Everything the client writes is untrusted:
//! ring indices are validated by the rings (a corrupt ring stops moving), flags are only ever
//! compared with zero.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

use super::desc::Descriptor;
use super::map::{Access, HugePages, MapError, Mapping, Region};
use super::primitive::{AtomicU32, Ordering, fence};
use super::ring::{self, Consumer, Full, Producer, RING_ALIGN, RingError};

/// "MCMC": marks an initialised connection block.
pub const MAGIC: u32 = 0x4d43_4d43;
/// Layout version; a client refuses any other.
pub const VERSION: u32 = 1;
/// Bytes before the first ring.
pub const HEADER_LEN: usize = 512;
/// Largest ring capacity a connection may have.
pub const MAX_RING_CAPACITY: u32 = 1 << 16;

const KIND_OFFSET: usize = 8;
const CAPACITY_OFFSET: usize = 12;
const REGION_LEN_OFFSET: usize = 16;
const CLIENT_WAITING_OFFSET: usize = 128;
const ENGINE_SLEEPING_OFFSET: usize = 256;
const CLOSED_OFFSET: usize = 384;

/// Which way frames flow, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ConnKind {
    /// The client sends frames (the source of its group).
    Tx = 1,
    /// The client receives frames (a sink of its group).
    Rx = 2,
}

impl ConnKind {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Tx),
            2 => Some(Self::Rx),
            _ => None,
        }
    }
}

/// Why a connection block could not be created or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The ring capacity is not allowed.
    #[error(
        "connection ring capacity {0} is not allowed (allowed: a power of two from 2 to {MAX_RING_CAPACITY})"
    )]
    Capacity(u32),
    /// The memory could not be created or mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// A ring could not be initialised or attached.
    #[error("connection ring: {0}")]
    Ring(#[from] RingError),
    /// The header found in the memory is not a valid connection block.
    #[error("connection block: {0}")]
    Header(String),
    /// A doorbell eventfd could not be created.
    #[error("connection doorbell: {0}")]
    Doorbell(io::Error),
}

/// Offsets and sizes of a connection block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLayout {
    kind: ConnKind,
    ring_capacity: u32,
}

impl ConnLayout {
    /// A layout for `kind` whose two rings hold `ring_capacity` descriptors each.
    pub fn new(kind: ConnKind, ring_capacity: u32) -> Result<Self, ConnError> {
        if !(2..=MAX_RING_CAPACITY).contains(&ring_capacity) || !ring_capacity.is_power_of_two() {
            return Err(ConnError::Capacity(ring_capacity));
        }
        Ok(Self {
            kind,
            ring_capacity,
        })
    }

    /// The connection's direction.
    pub fn kind(&self) -> ConnKind {
        self.kind
    }

    /// Descriptors each ring holds.
    pub fn ring_capacity(&self) -> u32 {
        self.ring_capacity
    }

    fn ring_len(&self) -> usize {
        ring::layout_size::<Descriptor>(self.ring_capacity as usize).next_multiple_of(RING_ALIGN)
    }

    /// Offset of the engine-to-client ring.
    pub fn to_client_offset(&self) -> usize {
        HEADER_LEN
    }

    /// Offset of the client-to-engine ring.
    pub fn to_engine_offset(&self) -> usize {
        HEADER_LEN + self.ring_len()
    }

    /// Bytes the block needs.
    pub fn len(&self) -> usize {
        HEADER_LEN + 2 * self.ring_len()
    }

    /// Never true: a block always has its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An eventfd one side rings to wake the other.
#[derive(Debug)]
pub struct Doorbell(OwnedFd);

impl Doorbell {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Self> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self(fd))
    }

    /// Wraps an eventfd received from the peer. Rings and drains on anything else fail harmlessly.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Another handle on the same eventfd (`F_DUPFD_CLOEXEC`).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self(rustix::io::fcntl_dupfd_cloexec(&self.0, 0)?))
    }

    /// Wakes whoever waits on this doorbell. Never blocks (EAGAIN means a wake-up is pending).
    pub fn ring(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Clears pending rings. Never blocks.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut buf);
    }

    /// The eventfd (to pass to the peer, or to watch).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Typed access to the header's atomic words. The memory is shared with another process that may
/// write anything; atomics of `u32` accept every bit pattern.
#[derive(Debug, Clone, Copy)]
struct Header {
    base: *mut u8,
}

impl Header {
    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= HEADER_LEN && offset.is_multiple_of(4));
        // SAFETY: `base` points to a live mapping of at least HEADER_LEN bytes (checked by both
        // constructors) that outlives every `Header` copy (held with the mapping's owner); the
        // offset is 4-aligned within it, and the word is only ever accessed atomically.
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        // Relaxed suffices: the Acquire load of the magic before any call orders these reads.
        self.word(offset).load(Ordering::Relaxed)
    }

    fn flag(&self, offset: usize) -> bool {
        self.word(offset).load(Ordering::Relaxed) != 0
    }

    fn set_flag(&self, offset: usize, on: bool) {
        self.word(offset).store(u32::from(on), Ordering::Relaxed);
    }
}

/// The engine's end of a connection block.
pub struct EngineSide {
    region: Arc<Region>,
    header: Header,
    layout: ConnLayout,
    to_client: Producer<Descriptor>,
    to_engine: Consumer<Descriptor>,
    client_bell: Doorbell,
    engine_bell: Doorbell,
}

// SAFETY: `header.base` points into `region`, which this value keeps alive; the header words are
// atomics and the rings are `Send`. Nothing is tied to the creating thread.
unsafe impl Send for EngineSide {}

impl EngineSide {
    /// Creates the memfd, writes the header and both rings, and creates the two doorbells.
    pub fn create(name: &str, layout: ConnLayout) -> Result<Self, ConnError> {
        let engine_bell = Doorbell::new().map_err(ConnError::Doorbell)?;
        Self::create_with_bell(name, layout, engine_bell)
    }

    /// As [`create`](Self::create), but the client wakes the engine through `engine_bell`, which
    /// may be shared by several connections (one lcore port watching one fd for all of them).
    pub fn create_with_bell(
        name: &str,
        layout: ConnLayout,
        engine_bell: Doorbell,
    ) -> Result<Self, ConnError> {
        let region = Region::create(name, layout.len(), HugePages::Off)?;
        // Both sides write a connection block; no seal is ever added after these.
        region.seal(false)?;
        let region = Arc::new(region);
        let base = region.as_ptr();
        let header = Header { base };
        let (to_client, to_engine) = {
            let (c, e) = (layout.to_client_offset(), layout.to_engine_offset());
            let cap = layout.ring_capacity as usize;
            let ring_len = layout.ring_len();
            // SAFETY: both rings lie inside the fresh region (offset + ring_len <= layout.len()
            // <= region.len()), which nobody else has mapped yet; the region outlives the ends
            // through the `Arc` owner passed to `attach`.
            unsafe {
                ring::init_in::<Descriptor>(base.add(c), ring_len, cap)?;
                ring::init_in::<Descriptor>(base.add(e), ring_len, cap)?;
                let owner: Arc<dyn Send + Sync> = region.clone();
                let to_client = Producer::attach(base.add(c), ring_len, owner.clone())?;
                let to_engine = Consumer::attach(base.add(e), ring_len, owner)?;
                (to_client, to_engine)
            }
        };
        header
            .word(KIND_OFFSET)
            .store(layout.kind as u32, Ordering::Relaxed);
        header
            .word(CAPACITY_OFFSET)
            .store(layout.ring_capacity, Ordering::Relaxed);
        let len = layout.len() as u64;
        header
            .word(REGION_LEN_OFFSET)
            .store(len as u32, Ordering::Relaxed);
        header
            .word(REGION_LEN_OFFSET + 4)
            .store((len >> 32) as u32, Ordering::Relaxed);
        header.word(4).store(VERSION, Ordering::Relaxed);
        // Release: pairs with the client's Acquire load of the magic; everything above is visible
        // to a client that sees it.
        header.word(0).store(MAGIC, Ordering::Release);
        Ok(Self {
            region,
            header,
            layout,
            to_client,
            to_engine,
            client_bell: Doorbell::new().map_err(ConnError::Doorbell)?,
            engine_bell,
        })
    }

    /// The block's layout.
    pub fn layout(&self) -> ConnLayout {
        self.layout
    }

    /// The memfd, to hand to the client (read-write).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The doorbell the engine rings to wake the client (pass its fd to the client).
    pub fn client_bell(&self) -> &Doorbell {
        &self.client_bell
    }

    /// The doorbell the client rings to wake the engine (the lcore watches its fd).
    pub fn engine_bell(&self) -> &Doorbell {
        &self.engine_bell
    }

    /// Sends `d` to the client and wakes it if it waits.
    pub fn push(&mut self, d: Descriptor) -> Result<(), Full<Descriptor>> {
        self.to_client.push(d)?;
        self.wake_client();
        Ok(())
    }

    /// Sends as many of `ds` as fit, waking the client once; returns how many.
    pub fn push_slice(&mut self, ds: &[Descriptor]) -> usize {
        let n = self.to_client.push_slice(ds);
        if n > 0 {
            self.wake_client();
        }
        n
    }

    /// Free space in the ring to the client.
    pub fn free_slots(&self) -> usize {
        self.to_client.free_slots()
    }

    /// Takes the next descriptor the client sent. Its fields are untrusted.
    pub fn pop(&mut self) -> Option<Descriptor> {
        self.to_engine.pop()
    }

    /// Takes up to `out.len()` descriptors the client sent; returns how many.
    pub fn pop_into(&mut self, out: &mut [Descriptor]) -> usize {
        self.to_engine.pop_into(out)
    }

    /// Whether the client has something queued for the engine.
    pub fn has_input(&self) -> bool {
        !self.to_engine.is_empty()
    }

    /// Whether the client's ring to the engine is untouched since the last pop: nothing queued
    /// and no impossible index (see [`Consumer::is_quiet`](crate::shm::ring)); a poll may skip it.
    pub fn is_quiet(&self) -> bool {
        self.to_engine.is_quiet()
    }

    /// Whether the client made either ring inconsistent (it lies; disconnect it).
    pub fn is_corrupt(&self) -> bool {
        self.to_client.is_corrupt() || self.to_engine.is_corrupt()
    }

    /// Announces that the engine is about to sleep; returns whether the client already sent
    /// something (then do not sleep, and call [`end_sleep`](Self::end_sleep)).
    pub fn prepare_sleep(&self) -> bool {
        self.header.set_flag(ENGINE_SLEEPING_OFFSET, true);
        // Pairs with the fence in `ClientSide::wake_engine`.
        fence(Ordering::SeqCst);
        !self.to_engine.is_empty()
    }

    /// The engine is awake again.
    pub fn end_sleep(&self) {
        self.header.set_flag(ENGINE_SLEEPING_OFFSET, false);
        self.engine_bell.drain();
    }

    /// Marks the connection closed and wakes the client, whose waits then return
    /// [`Wait::Closed`].
    pub fn close(&self) {
        // Release: the client's Acquire load of `closed` sees everything pushed before.
        self.header.word(CLOSED_OFFSET).store(1, Ordering::Release);
        self.client_bell.ring();
    }

    fn wake_client(&self) {
        // Pairs with the fence in `ClientSide::wait`: the push is ordered before the flag load.
        fence(Ordering::SeqCst);
        if self.header.flag(CLIENT_WAITING_OFFSET) {
            self.client_bell.ring();
        }
    }
}

impl Drop for EngineSide {
    /// The engine's end going away closes the connection: a client blocked in a wait wakes up
    /// with [`Wait::Closed`].
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for EngineSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSide")
            .field("layout", &self.layout)
            .field("region", &self.region.name())
            .finish()
    }
}

/// What ended a [`ClientSide::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The ring from the engine has something.
    Ready,
    /// The engine closed the connection.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The extra fd (the SDK socket) is readable or hung up: the caller must look at it.
    Socket,
    /// The caller's own stop flag was set (a local shutdown from another thread).
    Stopped,
}

/// The client's end of a connection block: an [`Inbox`] and an [`Outbox`].
///
/// Split it with [`into_split`](Self::into_split) to take from the engine on one thread while
/// another gives back (each half is single-threaded, like the ring end it holds).
#[derive(Debug)]
pub struct ClientSide {
    inbox: Inbox,
    outbox: Outbox,
}

/// The half of a [`ClientSide`] that takes descriptors from the engine and waits for them.
pub struct Inbox {
    _map: Arc<Mapping>,
    header: Header,
    layout: ConnLayout,
    to_client: Consumer<Descriptor>,
    client_bell: Arc<Doorbell>,
}

/// The half of a [`ClientSide`] that gives descriptors to the engine and wakes it.
pub struct Outbox {
    _map: Arc<Mapping>,
    header: Header,
    to_engine: Producer<Descriptor>,
    engine_bell: Doorbell,
}

// SAFETY: as for `EngineSide`: `header.base` points into the mapping, which each half keeps
// alive through its `Arc`; the header words are atomics and the ring ends are `Send`.
unsafe impl Send for Inbox {}
// SAFETY: as above.
unsafe impl Send for Outbox {}

impl ClientSide {
    /// Maps a block received from the engine and checks that it is a valid block of `kind`.
    pub fn attach(
        region: BorrowedFd<'_>,
        client_bell: OwnedFd,
        engine_bell: OwnedFd,
        kind: ConnKind,
    ) -> Result<Self, ConnError> {
        // First map only the header, to learn the layout; the probe is unmapped once it is read.
        let probe = Mapping::map(region, HEADER_LEN, Access::ReadWrite)?;
        let header = Header {
            base: probe.as_ptr(),
        };
        // Acquire: pairs with the engine's Release store of the magic.
        let magic = header.word(0).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(ConnError::Header(format!(
                "bad magic {magic:#010x} (expected {MAGIC:#010x})"
            )));
        }
        let version = header.read_u32(4);
        if version != VERSION {
            return Err(ConnError::Header(format!(
                "version {version} is not supported (expected {VERSION})"
            )));
        }
        let found = header.read_u32(KIND_OFFSET);
        if ConnKind::from_u32(found) != Some(kind) {
            return Err(ConnError::Header(format!(
                "kind {found} does not match the expected {kind:?} ({})",
                kind as u32
            )));
        }
        let layout = ConnLayout::new(kind, header.read_u32(CAPACITY_OFFSET))?;
        let len = u64::from(header.read_u32(REGION_LEN_OFFSET))
            | u64::from(header.read_u32(REGION_LEN_OFFSET + 4)) << 32;
        if len != layout.len() as u64 {
            return Err(ConnError::Header(format!(
                "region length {len} does not match the layout's {}",
                layout.len()
            )));
        }
        drop(probe);
        // Map again at the full length now that it is known (Mapping::map checks the fd's size).
        let map = Arc::new(Mapping::map(region, layout.len(), Access::ReadWrite)?);
        let base = map.as_ptr();
        let ring_len = layout.ring_len();
        let owner: Arc<dyn Send + Sync> = map.clone();
        // SAFETY: both rings lie inside the mapping (offset + ring_len <= layout.len(), the mapped
        // length), which `owner` keeps alive; this client is the only consumer of `to_client` and
        // the only producer of `to_engine` (the engine hands each block to one client).
        let (to_client, to_engine) = unsafe {
            let c = Consumer::attach(base.add(layout.to_client_offset()), ring_len, owner.clone())?;
            let e = Producer::attach(base.add(layout.to_engine_offset()), ring_len, owner)?;
            (c, e)
        };
        let header = Header { base };
        Ok(Self {
            inbox: Inbox {
                _map: map.clone(),
                header,
                layout,
                to_client,
                client_bell: Arc::new(Doorbell::from_fd(client_bell)),
            },
            outbox: Outbox {
                _map: map,
                header,
                to_engine,
                engine_bell: Doorbell::from_fd(engine_bell),
            },
        })
    }

    /// The two halves, to use from different threads.
    pub fn into_split(self) -> (Inbox, Outbox) {
        (self.inbox, self.outbox)
    }

    /// The block's layout.
    pub fn layout(&self) -> ConnLayout {
        self.inbox.layout
    }

    /// Takes the next descriptor from the engine.
    pub fn pop(&mut self) -> Option<Descriptor> {
        self.inbox.pop()
    }

    /// Sends `d` to the engine and wakes it if it sleeps.
    pub fn push(&mut self, d: Descriptor) -> Result<(), Full<Descriptor>> {
        self.outbox.push(d)
    }

    /// Whether the engine closed the connection.
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }

    /// Whether the engine made a ring inconsistent.
    pub fn is_corrupt(&self) -> bool {
        self.inbox.is_corrupt() || self.outbox.is_corrupt()
    }

    /// See [`Inbox::wait`] (with no stop flag).
    pub fn wait(
        &mut self,
        deadline: Option<Instant>,
        spin: Duration,
        socket: Option<BorrowedFd<'_>>,
    ) -> Wait {
        self.inbox.wait(deadline, spin, socket, None)
    }
}

impl Inbox {
    /// The block's layout.
    pub fn layout(&self) -> ConnLayout {
        self.layout
    }

    /// Takes the next descriptor from the engine. Its fields are untrusted.
    pub fn pop(&mut self) -> Option<Descriptor> {
        self.to_client.pop()
    }

    /// Whether the engine closed the connection.
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `EngineSide::close`.
        self.header.word(CLOSED_OFFSET).load(Ordering::Acquire) != 0
    }

    /// Whether the engine made the inbound ring inconsistent.
    pub fn is_corrupt(&self) -> bool {
        self.to_client.is_corrupt()
    }

    /// The doorbell a [`wait`](Self::wait) sleeps on: ring it (after setting the stop flag) to
    /// end a wait from another thread.
    pub fn bell(&self) -> Arc<Doorbell> {
        self.client_bell.clone()
    }

    /// Waits until the engine sends something, closes the connection, `socket` (if given) becomes
    /// readable, `stop` (if given) is set, or `deadline` passes (`None`: no deadline). Spins for
    /// `spin` first, then sleeps on the doorbell; never sleeps past the deadline.
    pub fn wait(
        &mut self,
        deadline: Option<Instant>,
        spin: Duration,
        socket: Option<BorrowedFd<'_>>,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Wait {
        let spin_until = Instant::now() + spin;
        loop {
            if let Some(w) = self.ready(stop) {
                return w;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Wait::TimedOut;
            }
            if now < spin_until {
                std::hint::spin_loop();
                continue;
            }
            if let Some(w) = self.sleep(deadline.map(|d| d - now), socket, stop) {
                return w;
            }
        }
    }

    fn ready(&self, stop: Option<&std::sync::atomic::AtomicBool>) -> Option<Wait> {
        // Acquire: pairs with the Release store of whoever sets the flag before ringing.
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Acquire)) {
            return Some(Wait::Stopped);
        }
        if !self.to_client.is_empty() {
            return Some(Wait::Ready);
        }
        self.is_closed().then_some(Wait::Closed)
    }

    /// One nap on the doorbell (and the socket). Returns `Some` when the socket needs attention.
    fn sleep(
        &mut self,
        timeout: Option<Duration>,
        socket: Option<BorrowedFd<'_>>,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Option<Wait> {
        self.header.set_flag(CLIENT_WAITING_OFFSET, true);
        // Pairs with the fence in `EngineSide::wake_client`.
        fence(Ordering::SeqCst);
        if self.ready(stop).is_some() {
            self.header.set_flag(CLIENT_WAITING_OFFSET, false);
            return None;
        }
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let bell = self.client_bell.fd();
        let mut fds = [
            PollFd::from_borrowed_fd(bell, PollFlags::IN),
            PollFd::from_borrowed_fd(bell, PollFlags::IN),
        ];
        let n = match socket {
            Some(s) => {
                fds[1] = PollFd::from_borrowed_fd(s, PollFlags::IN);
                2
            }
            None => 1,
        };
        // EINTR or a timeout just end the nap; the caller's loop re-checks.
        let _ = rustix::event::poll(&mut fds[..n], ts.as_ref());
        let socket_ready = n == 2 && !fds[1].revents().is_empty();
        self.client_bell.drain();
        self.header.set_flag(CLIENT_WAITING_OFFSET, false);
        (socket_ready && self.ready(stop).is_none()).then_some(Wait::Socket)
    }
}

impl Outbox {
    /// Sends `d` to the engine and wakes it if it sleeps.
    pub fn push(&mut self, d: Descriptor) -> Result<(), Full<Descriptor>> {
        self.to_engine.push(d)?;
        self.wake_engine();
        Ok(())
    }

    /// Free space in the ring to the engine.
    pub fn free_slots(&self) -> usize {
        self.to_engine.free_slots()
    }

    /// Whether the engine made the outbound ring inconsistent.
    pub fn is_corrupt(&self) -> bool {
        self.to_engine.is_corrupt()
    }

    /// Whether the engine closed the connection.
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `EngineSide::close`.
        self.header.word(CLOSED_OFFSET).load(Ordering::Acquire) != 0
    }

    fn wake_engine(&self) {
        // Pairs with the fence in `EngineSide::prepare_sleep`.
        fence(Ordering::SeqCst);
        if self.header.flag(ENGINE_SLEEPING_OFFSET) {
            self.engine_bell.ring();
        }
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("layout", &self.layout)
            .finish()
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn desc(slot: u32) -> Descriptor {
        Descriptor {
            pool: 1,
            slot,
            payload_len: 100 + slot,
            metadata_len: 0,
            seq: u64::from(slot),
            timestamp_ns: 7,
        }
    }

    fn pair(kind: ConnKind, cap: u32) -> (EngineSide, ClientSide) {
        let e = EngineSide::create("mcm-test-conn", ConnLayout::new(kind, cap).unwrap()).unwrap();
        let fd = e.region().dup_fd().unwrap();
        let cb = rustix::io::dup(e.client_bell().fd()).unwrap();
        let eb = rustix::io::dup(e.engine_bell().fd()).unwrap();
        let c = ClientSide::attach(fd.as_fd(), cb, eb, kind).unwrap();
        (e, c)
    }

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).unwrap() == 1
    }

    #[test]
    fn layout_is_aligned_and_capacity_checked() {
        let l = ConnLayout::new(ConnKind::Tx, 16).unwrap();
        assert_eq!(l.to_client_offset(), 512);
        assert_eq!(l.to_client_offset() % RING_ALIGN, 0);
        assert_eq!(l.to_engine_offset() % RING_ALIGN, 0);
        assert!(l.to_engine_offset() >= l.to_client_offset() + ring::layout_size::<Descriptor>(16));
        assert!(l.len() >= l.to_engine_offset() + ring::layout_size::<Descriptor>(16));
        for bad in [0, 1, 3, 100, MAX_RING_CAPACITY * 2] {
            let e = ConnLayout::new(ConnKind::Rx, bad).unwrap_err().to_string();
            assert!(e.contains(&format!("capacity {bad} is not allowed")), "{e}");
            assert!(e.contains("power of two from 2 to 65536"), "{e}");
        }
    }

    #[test]
    fn descriptors_flow_both_ways_through_separate_mappings() {
        let (mut e, mut c) = pair(ConnKind::Tx, 8);
        for s in 0..8 {
            e.push(desc(s)).unwrap();
        }
        assert_eq!(e.push(desc(99)), Err(Full(desc(99))));
        for s in 0..8 {
            let d = c.pop().unwrap();
            assert_eq!(d, desc(s));
            c.push(d).unwrap();
        }
        let mut out = [Descriptor::default(); 16];
        assert_eq!(e.pop_into(&mut out), 8);
        assert_eq!(out[7], desc(7));
        assert!(!e.is_corrupt() && !c.is_corrupt());
    }

    #[test]
    fn client_is_woken_only_while_it_waits() {
        let (mut e, mut c) = pair(ConnKind::Rx, 4);
        // Not waiting: a push rings nothing.
        e.push(desc(1)).unwrap();
        assert!(!readable(e.client_bell().fd()));
        assert_eq!(c.wait(None, Duration::ZERO, None), Wait::Ready);
        c.pop().unwrap();
        // Waiting on another thread: the push wakes it (a lost wake-up would hang the join).
        let waiter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let w = c.wait(Some(deadline), Duration::ZERO, None);
            (w, c.pop())
        });
        std::thread::sleep(Duration::from_millis(20));
        e.push(desc(2)).unwrap();
        let (w, got) = waiter.join().unwrap();
        assert_eq!((w, got), (Wait::Ready, Some(desc(2))));
    }

    #[test]
    fn wait_times_out_and_reports_close_and_socket() {
        let (e, mut c) = pair(ConnKind::Rx, 4);
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(c.wait(Some(soon), Duration::ZERO, None), Wait::TimedOut);
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(c.wait(None, Duration::ZERO, Some(b.as_fd())), Wait::Socket);
        e.close();
        assert_eq!(c.wait(None, Duration::ZERO, None), Wait::Closed);
        assert!(c.is_closed());
    }

    #[test]
    fn a_stop_flag_ends_a_wait_from_another_thread() {
        let (_e, c) = pair(ConnKind::Rx, 4);
        let (mut inbox, _outbox) = c.into_split();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bell = inbox.bell();
        let flag = stop.clone();
        let waiter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            inbox.wait(Some(deadline), Duration::ZERO, None, Some(&flag))
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::Release);
        bell.ring();
        assert_eq!(waiter.join().unwrap(), Wait::Stopped);
    }

    #[test]
    fn dropping_the_engine_side_closes_and_a_shared_bell_wakes_the_engine() {
        let bell = Doorbell::new().unwrap();
        let layout = ConnLayout::new(ConnKind::Tx, 4).unwrap();
        let mk =
            || EngineSide::create_with_bell("mcm-test-conn", layout, bell.try_clone().unwrap());
        let (e1, e2) = (mk().unwrap(), mk().unwrap());
        let attach = |e: &EngineSide| {
            let fd = e.region().dup_fd().unwrap();
            let cb = rustix::io::dup(e.client_bell().fd()).unwrap();
            let eb = rustix::io::dup(e.engine_bell().fd()).unwrap();
            ClientSide::attach(fd.as_fd(), cb, eb, ConnKind::Tx).unwrap()
        };
        let (mut c1, mut c2) = (attach(&e1), attach(&e2));
        assert!(!e1.prepare_sleep() && !e2.prepare_sleep());
        c2.push(desc(3)).unwrap();
        assert!(
            readable(bell.fd()),
            "either connection's push rings the shared bell"
        );
        assert!(e2.has_input() && !e1.has_input());
        e1.end_sleep();
        e2.end_sleep();
        assert!(!c1.is_closed());
        drop(e1);
        assert!(c1.is_closed());
        assert_eq!(c1.wait(None, Duration::ZERO, None), Wait::Closed);
        assert!(!c2.is_closed());
    }

    #[test]
    fn engine_is_woken_only_while_it_sleeps() {
        let (e, mut c) = pair(ConnKind::Tx, 4);
        c.push(desc(1)).unwrap();
        assert!(
            !readable(e.engine_bell().fd()),
            "a push to an awake engine must not ring"
        );
        assert!(e.prepare_sleep(), "pending input must cancel the sleep");
        e.end_sleep();
        let (mut e, mut c) = pair(ConnKind::Tx, 4);
        assert!(!e.prepare_sleep());
        c.push(desc(2)).unwrap();
        assert!(
            readable(e.engine_bell().fd()),
            "a push to a sleeping engine must ring"
        );
        e.end_sleep();
        assert!(!readable(e.engine_bell().fd()));
        assert_eq!(e.pop(), Some(desc(2)));
    }

    #[test]
    fn attach_rejects_wrong_kind_and_damaged_headers() {
        let e =
            EngineSide::create("mcm-test-conn", ConnLayout::new(ConnKind::Tx, 4).unwrap()).unwrap();
        let attach = |kind| {
            let fd = e.region().dup_fd().unwrap();
            let cb = rustix::io::dup(e.client_bell().fd()).unwrap();
            let eb = rustix::io::dup(e.engine_bell().fd()).unwrap();
            ClientSide::attach(fd.as_fd(), cb, eb, kind)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(attach(ConnKind::Rx).contains("kind 1 does not match the expected Rx (2)"));
        let h = e.header;
        h.word(CAPACITY_OFFSET).store(5, Ordering::Relaxed);
        assert!(attach(ConnKind::Tx).contains("capacity 5 is not allowed"));
        h.word(CAPACITY_OFFSET).store(8, Ordering::Relaxed);
        assert!(attach(ConnKind::Tx).contains("does not match the layout's"));
        h.word(4).store(9, Ordering::Relaxed);
        assert!(attach(ConnKind::Tx).contains("version 9 is not supported"));
        h.word(0).store(0xdead_beef, Ordering::Relaxed);
        assert!(attach(ConnKind::Tx).contains("bad magic 0xdeadbeef"));
    }

    #[test]
    fn lying_client_indices_are_detected_not_followed() {
        let (mut e, c) = pair(ConnKind::Tx, 4);
        // The client's producer index lives in the to_engine ring header; scribble over it.
        let tail = e.layout().to_engine_offset() + ring::TAIL_OFFSET;
        // SAFETY: the offset lies inside the mapped block, aligned for a u64.
        unsafe {
            e.region()
                .as_ptr()
                .add(tail)
                .cast::<u64>()
                .write_volatile(1 << 40)
        };
        assert_eq!(e.pop(), None);
        assert!(e.is_corrupt());
        drop(c);
    }
}
