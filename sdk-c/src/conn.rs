//! Connections and the buffers they lend: [`TxConnection`] / [`BufferMut`] to send,
//! [`RxConnection`] / [`Buffer`] to receive.
//!
//! A buffer is a slot of the group's shared pool, lent by the engine: a sender writes the frame
//! in place and puts it (the engine hands the same slot to every receiver), a receiver reads it
//! in place and puts it back. Nothing is copied.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mcm_proto::config::{ConnectionConfig, Direction, MeshErr};
use mcm_proto::sdk::{
    Activate, ClientMessage, ConnectionKind, CreateConnection, FetchFds, FetchPool, engine_message,
};
use mcm_proto::shm::conn::{ClientSide, ConnKind, Doorbell, Inbox, Outbox, Wait};
use mcm_proto::shm::desc::Descriptor;
use mcm_proto::shm::map::Access;
use mcm_proto::shm::pool::{PoolGeometry, PoolView};

use crate::channel::{Channel, unexpected};
use crate::client::{Client, REQUEST_TIMEOUT, Shared};
use crate::error::{Error, Result};

/// How long a blocked get spins before it sleeps on the doorbell.
pub const SPIN: Duration = Duration::from_micros(20);

/// A slot lent to the application, as raw parts (the C API keeps these in its `MeshBuffer`).
#[derive(Debug, Clone, Copy)]
pub struct RawBuf {
    /// The slot's descriptor (lengths, sequence number, timestamp).
    pub desc: Descriptor,
    /// Start of the slot's payload.
    pub payload: NonNull<u8>,
    /// Start of the slot's metadata.
    pub metadata: NonNull<u8>,
}

/// What a get or put waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The client's `apiDefaultTimeoutMicroseconds`.
    Default,
    /// No limit.
    Infinite,
    /// At most this long (zero: do not wait).
    After(Duration),
}

/// One connection's client-side state, shared by its handle and the C API.
#[derive(Debug)]
pub struct Core {
    id: u64,
    shared: Arc<Shared>,
    kind: ConnKind,
    /// The pools mapped: a sender's one; a receiver's current one and any older one it still
    /// has buffers of (its group moves to a new pool when a new sender joins).
    pools: Mutex<Pools>,
    geometry: PoolGeometry,
    inbox: Mutex<Inbox>,
    outbox: Mutex<Outbox>,
    bell: Arc<Doorbell>,
    shut: AtomicBool,
    deleted: AtomicBool,
    payload_size: u32,
    metadata_size: u32,
    group: String,
    /// tx: slots the application got and dropped without sending; lent again first.
    stash: Mutex<Vec<Descriptor>>,
}

/// A connection's pool mappings.
#[derive(Debug, Default)]
struct Pools {
    views: Vec<Mapped>,
}

#[derive(Debug)]
struct Mapped {
    id: u32,
    view: PoolView,
    /// Buffers of it the application holds (receivers).
    lent: u32,
}

impl Pools {
    fn find(&self, id: u32) -> Option<usize> {
        self.views.iter().position(|m| m.id == id)
    }

    /// Unmaps the pools no buffer is lent from, except the newest (pool ids only grow).
    fn prune(&mut self) {
        if self.views.len() < 2 {
            return;
        }
        let newest = self.views.iter().map(|m| m.id).max().unwrap_or(0);
        self.views.retain(|m| m.id == newest || m.lent > 0);
    }
}

/// What a descriptor from the engine turned out to be.
enum Lent {
    /// A buffer for the application.
    Buf(RawBuf),
    /// A frame of a pool the engine no longer gives out: released unread.
    Skip,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the ring end consistent (ring operations
    // complete or do nothing), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// Creates, maps and activates a connection (see the SDK protocol in `sdk.proto`).
    pub(crate) fn create(
        shared: &Arc<Shared>,
        json: &str,
        cfg: ConnectionConfig,
    ) -> Result<Arc<Self>> {
        Client::reserve(shared)?;
        let made = Self::create_reserved(shared, json, &cfg);
        if made.is_err() {
            // Relaxed: the counter is the only shared state.
            shared.conns.fetch_sub(1, Ordering::Relaxed);
        }
        made
    }

    fn create_reserved(
        shared: &Arc<Shared>,
        json: &str,
        cfg: &ConnectionConfig,
    ) -> Result<Arc<Self>> {
        let (kind, wire_kind) = match cfg.direction() {
            Direction::Tx => (ConnKind::Tx, ConnectionKind::CONNECTION_KIND_TX),
            Direction::Rx => (ConnKind::Rx, ConnectionKind::CONNECTION_KIND_RX),
        };
        std::thread::sleep(cfg.conn_creation_delay());
        let mut msg = ClientMessage::new();
        msg.set_create_connection(CreateConnection {
            kind: wire_kind.into(),
            config_json: json.to_owned(),
            ..CreateConnection::new()
        });
        let (reply, fds) = shared.chan().request(&msg, REQUEST_TIMEOUT)?;
        let created = match reply {
            engine_message::Body::ConnectionCreated(c) => c,
            other => return Err(unexpected("ConnectionCreated", &other)),
        };
        let id = created.conn_id;
        let attached = (|| {
            let fds = if created.fds_attached {
                fds
            } else {
                fetch_fds(&created.fd_socket, &created.fd_token, id)?
            };
            Self::attach(shared, &created, kind, cfg, fds)
        })();
        let core = match attached {
            Ok(core) => core,
            Err(e) => {
                shared.delete(id);
                return Err(e);
            }
        };
        let mut msg = ClientMessage::new();
        msg.set_activate(Activate {
            conn_id: id,
            ..Activate::new()
        });
        match shared.chan().request(&msg, REQUEST_TIMEOUT) {
            Ok((engine_message::Body::Activated(_), _)) => Ok(core),
            Ok((other, _)) => {
                shared.delete(id);
                Err(unexpected("Activated", &other))
            }
            Err(e) => {
                shared.delete(id);
                Err(e)
            }
        }
    }

    /// Maps the pool and the control block from the four fds.
    fn attach(
        shared: &Arc<Shared>,
        created: &mcm_proto::sdk::ConnectionCreated,
        kind: ConnKind,
        cfg: &ConnectionConfig,
        fds: Vec<OwnedFd>,
    ) -> Result<Arc<Self>> {
        let failed = |what: String| Error::mesh(MeshErr::ConnFailed, what);
        // A receiver may be created before its group's pool is sealed: then it comes later.
        let later = created.pool_fd_later && kind == ConnKind::Rx;
        let mut fds = fds.into_iter();
        let expected = if later { 3 } else { 4 };
        if fds.len() != expected {
            return Err(failed(format!(
                "the engine sent {} fds (expected {expected})",
                fds.len()
            )));
        }
        let pool_fd = if later { None } else { fds.next() };
        let (Some(block), Some(client_bell), Some(engine_bell)) =
            (fds.next(), fds.next(), fds.next())
        else {
            return Err(failed("the engine sent too few fds".to_owned()));
        };
        let wire = created.pool.as_ref().cloned().unwrap_or_default();
        let geometry = PoolGeometry {
            slot_count: wire.slot_count,
            payload_capacity: wire.payload_capacity,
            metadata_capacity: wire.metadata_capacity,
        };
        if geometry.payload_capacity < cfg.payload_size()
            || geometry.metadata_capacity < cfg.max_metadata_size()
        {
            return Err(failed(format!(
                "the engine's pool holds {} + {} bytes per slot, less than the {} + {} asked for",
                geometry.payload_capacity,
                geometry.metadata_capacity,
                cfg.payload_size(),
                cfg.max_metadata_size()
            )));
        }
        let access = match kind {
            ConnKind::Tx => Access::ReadWrite,
            ConnKind::Rx => Access::ReadOnly,
        };
        let mut pools = Pools::default();
        if let Some(fd) = pool_fd {
            let view = PoolView::attach(fd.as_fd(), geometry, access)
                .map_err(|e| failed(format!("cannot map the frame pool: {e}")))?;
            pools.views.push(Mapped {
                id: wire.pool_id,
                view,
                lent: 0,
            });
        }
        let side = ClientSide::attach(block.as_fd(), client_bell, engine_bell, kind)
            .map_err(|e| failed(format!("cannot map the connection block: {e}")))?;
        if side.layout().ring_capacity() != created.ring_capacity {
            return Err(failed(format!(
                "the connection block holds {} descriptors per ring, not the {} announced",
                side.layout().ring_capacity(),
                created.ring_capacity
            )));
        }
        let (inbox, outbox) = side.into_split();
        Ok(Arc::new(Self {
            id: created.conn_id,
            shared: shared.clone(),
            kind,
            pools: Mutex::new(pools),
            geometry,
            bell: inbox.bell(),
            inbox: Mutex::new(inbox),
            outbox: Mutex::new(outbox),
            shut: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            payload_size: cfg.payload_size(),
            metadata_size: cfg.max_metadata_size(),
            group: created.group.clone(),
            stash: Mutex::new(Vec::new()),
        }))
    }

    /// The engine's id for the connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Payload bytes per buffer.
    pub fn payload_size(&self) -> usize {
        self.payload_size as usize
    }

    /// Metadata bytes per buffer.
    pub fn metadata_size(&self) -> usize {
        self.metadata_size as usize
    }

    /// The group the connection belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The id of the newest frame pool the connection has mapped (a sender's pool; 0 for a
    /// receiver that has mapped none yet).
    pub fn pool_id(&self) -> u32 {
        lock(&self.pools)
            .views
            .iter()
            .map(|m| m.id)
            .max()
            .unwrap_or(0)
    }

    /// Whether this is a sender.
    pub fn is_tx(&self) -> bool {
        self.kind == ConnKind::Tx
    }

    fn deadline(&self, timeout: Timeout) -> Option<Instant> {
        let t = match timeout {
            Timeout::Default => self.shared.config.default_timeout,
            Timeout::Infinite => return None,
            Timeout::After(t) => t,
        };
        // A limit too far away to represent is no limit.
        Instant::now().checked_add(t)
    }

    fn check_open(&self) -> Result<()> {
        // Acquire: pairs with the Release store in `shutdown`.
        if self.shut.load(Ordering::Acquire) {
            return Err(Error::closed(format!(
                "connection {} was shut down",
                self.id
            )));
        }
        Ok(())
    }

    /// Waits for the next buffer: a free slot to fill (tx) or the next frame (rx).
    pub fn get(&self, timeout: Timeout) -> Result<RawBuf> {
        self.check_open()?;
        if self.kind == ConnKind::Tx {
            self.check_session()?;
        }
        if self.kind == ConnKind::Tx
            && let Some(d) = lock(&self.stash).pop()
            && let Lent::Buf(b) = self.lend(d)?
        {
            return Ok(b);
        }
        let deadline = self.deadline(timeout);
        let mut inbox = self.lock_until(&self.inbox, deadline)?;
        loop {
            if let Some(d) = inbox.pop() {
                match self.lend(d)? {
                    Lent::Buf(b) => return Ok(b),
                    Lent::Skip => continue,
                }
            }
            if inbox.is_corrupt() {
                return Err(Error::closed("the engine's ring is corrupt"));
            }
            let sock = self.shared.sock_fd.as_fd();
            match inbox.wait(deadline, SPIN, Some(sock), Some(&self.shut)) {
                Wait::Ready => continue,
                Wait::Closed => {
                    return Err(Error::closed(format!(
                        "connection {}: the engine closed it",
                        self.id
                    )));
                }
                Wait::Stopped => {
                    return Err(Error::closed(format!(
                        "connection {} was shut down",
                        self.id
                    )));
                }
                Wait::TimedOut => {
                    return Err(Error::mesh(
                        MeshErr::Timeout,
                        format!("connection {}: no buffer within the timeout", self.id),
                    ));
                }
                Wait::Socket => {
                    if let Some(why) = self.shared.engine_gone() {
                        return Err(Error::closed(format!(
                            "the engine closed the session: {why}"
                        )));
                    }
                    // Another thread's reply is pending on the socket; let it read.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Checks a descriptor from the engine and makes a buffer of it; a receiver maps a pool
    /// it has not seen first (FetchPool).
    fn lend(&self, mut d: Descriptor) -> Result<Lent> {
        if self.kind == ConnKind::Tx {
            d.payload_len = self.payload_size;
            d.metadata_len = self.metadata_size;
            d.timestamp_ns = 0;
        }
        let invalid = |d: &Descriptor| {
            Error::closed(format!(
                "the engine sent an invalid descriptor (pool {}, slot {}, {} bytes)",
                d.pool, d.slot, d.payload_len
            ))
        };
        if d.payload_len > self.payload_size {
            return Err(invalid(&d));
        }
        let mut pools = lock(&self.pools);
        let i = match pools.find(d.pool) {
            Some(i) => i,
            None if self.kind == ConnKind::Tx => return Err(invalid(&d)),
            None => match self.fetch_pool(d.pool) {
                Ok(Some(view)) => {
                    pools.views.push(Mapped {
                        id: d.pool,
                        view,
                        lent: 0,
                    });
                    pools.views.len() - 1
                }
                Ok(None) => {
                    // The engine has let that pool go (the group moved twice since): the frame
                    // cannot be read; it goes back, and the next one is taken.
                    drop(pools);
                    let _ = self.try_put(d, Timeout::After(Duration::ZERO));
                    return Ok(Lent::Skip);
                }
                Err(e) => return Err(e),
            },
        };
        let (payload, metadata) = pools.views[i]
            .view
            .slot_ptrs(d.slot, d.payload_len, d.metadata_len)
            .map_err(|e| Error::closed(format!("the engine sent an invalid descriptor: {e}")))?;
        if self.kind == ConnKind::Rx {
            pools.views[i].lent += 1;
            pools.prune();
        }
        Ok(Lent::Buf(RawBuf {
            desc: d,
            payload,
            metadata,
        }))
    }

    /// Maps pool `pool` of the group, which a descriptor named (a receiver's).
    /// `None`: the engine refused (it has let that pool go).
    fn fetch_pool(&self, pool: u32) -> Result<Option<PoolView>> {
        let failed = |what: String| Error::mesh(MeshErr::ConnFailed, what);
        let mut msg = ClientMessage::new();
        msg.set_fetch_pool(FetchPool {
            conn_id: self.id,
            pool_id: pool,
            ..FetchPool::new()
        });
        let (reply, fds) = match self.shared.chan().request(&msg, REQUEST_TIMEOUT) {
            Ok(r) => r,
            Err(_) if self.shared.engine_gone().is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        let got = match reply {
            engine_message::Body::PoolFd(p) => p,
            other => return Err(unexpected("PoolFd", &other)),
        };
        let fds = if got.fds_attached {
            fds
        } else {
            fetch_fds(&got.fd_socket, &got.fd_token, self.id)?
        };
        let wire = got.pool.as_ref().cloned().unwrap_or_default();
        let same = wire.pool_id == pool
            && wire.slot_count == self.geometry.slot_count
            && wire.payload_capacity == self.geometry.payload_capacity
            && wire.metadata_capacity == self.geometry.metadata_capacity;
        if !same {
            return Err(failed(format!(
                "the engine answered for pool {pool} with pool {} of another shape",
                wire.pool_id
            )));
        }
        let [fd]: [OwnedFd; 1] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
            failed(format!(
                "the engine sent {} fds for a pool (expected 1)",
                fds.len()
            ))
        })?;
        PoolView::attach(fd.as_fd(), self.geometry, Access::ReadOnly)
            .map(Some)
            .map_err(|e| failed(format!("cannot map frame pool {pool}: {e}")))
    }

    /// A receiver's buffer went back to the engine: its pool may be unmapped now.
    fn returned(&self, d: &Descriptor) {
        let mut pools = lock(&self.pools);
        if let Some(i) = pools.find(d.pool) {
            let m = &mut pools.views[i];
            m.lent = m.lent.saturating_sub(1);
            if m.lent == 0 {
                pools.prune();
            }
        }
    }

    /// Sends (tx) or releases (rx) a buffer. A tx buffer that could not be sent goes back to
    /// the connection (it is lent again by a later get).
    pub fn put(&self, d: Descriptor, timeout: Timeout) -> Result<()> {
        let put = self.try_put(d, timeout);
        if put.is_err() && self.kind == ConnKind::Tx {
            lock(&self.stash).push(d);
        }
        put
    }

    /// Like [`put`](Self::put), but a buffer that could not be sent or released stays with the
    /// caller, who may put it again (the C API: a failed `mesh_put_buffer` leaves the
    /// `MeshBuffer` in the application's hands).
    pub(crate) fn try_put(&self, mut d: Descriptor, timeout: Timeout) -> Result<()> {
        if self.kind == ConnKind::Tx {
            self.check_open()?;
            self.check_session()?;
            if d.timestamp_ns == 0 {
                d.timestamp_ns = realtime_ns();
            }
        }
        let deadline = self.deadline(timeout);
        let mut outbox = self.lock_until(&self.outbox, deadline)?;
        let closed = |outbox: &Outbox| outbox.is_closed() || outbox.is_corrupt();
        if self.kind == ConnKind::Tx && closed(&outbox) {
            return Err(Error::closed(format!(
                "connection {}: the engine closed it",
                self.id
            )));
        }
        loop {
            match outbox.push(d) {
                Ok(()) => {
                    drop(outbox);
                    if self.kind == ConnKind::Rx {
                        self.returned(&d);
                    }
                    return Ok(());
                }
                Err(_) if closed(&outbox) || self.is_shut() => {
                    return Err(Error::closed(format!(
                        "connection {}: closed while the buffer waited for room",
                        self.id
                    )));
                }
                Err(_) if deadline.is_some_and(|t| Instant::now() >= t) => {
                    return Err(Error::mesh(
                        MeshErr::Timeout,
                        format!("connection {}: the engine did not take the buffer", self.id),
                    ));
                }
                // Full only while the engine is behind on this ring; it drains it every poll.
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// A sender's frames only count as sent while the engine is there to take them.
    fn check_session(&self) -> Result<()> {
        if self.shared.session_closed() {
            let why = self
                .shared
                .engine_gone()
                .unwrap_or_else(|| "the engine closed the connection".to_owned());
            return Err(Error::closed(format!(
                "connection {}: the engine closed the session ({why}); nothing more is sent",
                self.id
            )));
        }
        Ok(())
    }

    fn is_shut(&self) -> bool {
        // Acquire: pairs with the Release store in `shutdown`.
        self.shut.load(Ordering::Acquire)
    }

    /// Locks `m`, giving up with `MESH_ERR_TIMEOUT` at `deadline` (another thread may hold it
    /// for the whole of its own wait) and with `MESH_ERR_CONN_CLOSED` on shutdown.
    fn lock_until<'m, T>(
        &self,
        m: &'m Mutex<T>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'m, T>> {
        loop {
            match m.try_lock() {
                Ok(g) => return Ok(g),
                Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if self.is_shut() {
                return Err(Error::closed(format!(
                    "connection {} was shut down",
                    self.id
                )));
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                return Err(Error::mesh(
                    MeshErr::Timeout,
                    format!(
                        "connection {}: another thread kept the connection busy past the timeout",
                        self.id
                    ),
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// A tx buffer the application dropped without sending: lend it again later.
    pub fn unsent(&self, d: Descriptor) {
        lock(&self.stash).push(d);
    }

    /// Stops the connection: blocked and later gets return `MESH_ERR_CONN_CLOSED`.
    pub fn shutdown(&self) {
        // Release: pairs with the Acquire loads in `check_open` and in the inbox wait.
        self.shut.store(true, Ordering::Release);
        self.bell.ring();
    }

    /// Shuts down and deletes the connection on the engine (once).
    pub fn delete(&self) {
        self.shutdown();
        // AcqRel: exactly one caller deletes.
        if !self.deleted.swap(true, Ordering::AcqRel) {
            self.shared.delete(self.id);
            // Relaxed: the counter is the only shared state.
            self.shared.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Fetches a connection's fds over the engine's Unix socket with a one-time token.
fn fetch_fds(path: &str, token: &[u8], id: u64) -> Result<Vec<OwnedFd>> {
    let mut chan = Channel::unix(std::path::Path::new(path), "mcm-sdk-fds", REQUEST_TIMEOUT)?;
    let mut msg = ClientMessage::new();
    msg.set_fetch_fds(FetchFds {
        token: token.to_vec(),
        ..FetchFds::new()
    });
    match chan.request(&msg, REQUEST_TIMEOUT)? {
        (engine_message::Body::Fds(f), fds) if f.conn_id == id => Ok(fds),
        (engine_message::Body::Fds(f), _) => Err(Error::mesh(
            MeshErr::ConnFailed,
            format!(
                "the engine sent the fds of connection {} for {id}",
                f.conn_id
            ),
        )),
        (other, _) => Err(unexpected("Fds", &other)),
    }
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME): the capture timestamp of a frame.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A sender: the source of its multipoint group. Deleted on drop.
#[derive(Debug)]
pub struct TxConnection {
    core: Arc<Core>,
}

impl TxConnection {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The shared state (the C API wraps it).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Waits for a free buffer, up to the client's default timeout.
    pub fn get(&self) -> Result<BufferMut<'_>> {
        self.get_timeout(Timeout::Default)
    }

    /// Waits for a free buffer.
    pub fn get_timeout(&self, timeout: Timeout) -> Result<BufferMut<'_>> {
        let raw = self.core.get(timeout)?;
        Ok(BufferMut {
            core: &self.core,
            raw,
            sent: false,
        })
    }

    /// Stops the connection; blocked gets return `MESH_ERR_CONN_CLOSED`.
    pub fn shutdown(&self) {
        self.core.shutdown();
    }
}

impl Drop for TxConnection {
    fn drop(&mut self) {
        self.core.delete();
    }
}

/// A receiver: a sink of its multipoint group. Deleted on drop.
#[derive(Debug)]
pub struct RxConnection {
    core: Arc<Core>,
}

impl RxConnection {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The shared state (the C API wraps it).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Waits for the next frame, up to the client's default timeout.
    pub fn get(&self) -> Result<Buffer<'_>> {
        self.get_timeout(Timeout::Default)
    }

    /// Waits for the next frame.
    pub fn get_timeout(&self, timeout: Timeout) -> Result<Buffer<'_>> {
        let raw = self.core.get(timeout)?;
        Ok(Buffer {
            core: &self.core,
            raw,
            released: false,
        })
    }

    /// Stops the connection; blocked gets return `MESH_ERR_CONN_CLOSED`.
    pub fn shutdown(&self) {
        self.core.shutdown();
    }
}

impl Drop for RxConnection {
    fn drop(&mut self) {
        self.core.delete();
    }
}

/// A free slot lent to a sender: fill it and [`put`](Self::put) it. Dropped unsent, it goes
/// back to the connection for the next get.
#[derive(Debug)]
pub struct BufferMut<'a> {
    core: &'a Core,
    raw: RawBuf,
    sent: bool,
}

impl BufferMut<'_> {
    /// The whole payload area (`payload_size` bytes), in shared memory.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: the pointer was checked by PoolView::slot_ptrs for payload_size bytes in the
        // read-write mapping the connection keeps alive while `self` borrows it; the engine lent
        // this slot to this buffer alone and neither it nor a receiver touches it until the put;
        // &mut self makes this the only slice of it in this process.
        unsafe {
            std::slice::from_raw_parts_mut(self.raw.payload.as_ptr(), self.core.payload_size())
        }
    }

    /// The whole metadata area (`metadata_size` bytes).
    pub fn metadata_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `payload_mut`, for the metadata part (checked for metadata_size bytes).
        unsafe {
            std::slice::from_raw_parts_mut(self.raw.metadata.as_ptr(), self.core.metadata_size())
        }
    }

    /// Bytes of payload that will be sent (preset to `payload_size`).
    pub fn payload_len(&self) -> usize {
        self.raw.desc.payload_len as usize
    }

    /// Sends only the first `len` payload bytes; `len <= payload_size`.
    pub fn set_payload_len(&mut self, len: usize) -> Result<()> {
        self.raw.desc.payload_len = check_len(len, self.core.payload_size(), "payload")?;
        Ok(())
    }

    /// Sends only the first `len` metadata bytes; `len <= metadata_size`.
    pub fn set_metadata_len(&mut self, len: usize) -> Result<()> {
        self.raw.desc.metadata_len = check_len(len, self.core.metadata_size(), "metadata")?;
        Ok(())
    }

    /// Sets the capture timestamp (ns since the Unix epoch); by default the put time.
    pub fn set_timestamp_ns(&mut self, ns: u64) {
        self.raw.desc.timestamp_ns = ns;
    }

    /// Index of the pool slot this buffer is.
    pub fn slot(&self) -> u32 {
        self.raw.desc.slot
    }

    /// Sends the frame, waiting up to the default timeout for room in the ring.
    pub fn put(self) -> Result<()> {
        self.put_timeout(Timeout::Default)
    }

    /// Sends the frame.
    pub fn put_timeout(mut self, timeout: Timeout) -> Result<()> {
        self.sent = true;
        self.core.put(self.raw.desc, timeout)
    }
}

impl Drop for BufferMut<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.core.unsent(self.raw.desc);
        }
    }
}

/// A frame lent to a receiver: read it in place; dropping or [`put`](Self::put)ting it gives the
/// slot back.
#[derive(Debug)]
pub struct Buffer<'a> {
    core: &'a Core,
    raw: RawBuf,
    released: bool,
}

impl Buffer<'_> {
    /// The frame's payload, in shared memory (read-only mapping).
    ///
    /// The bytes are stable while the buffer is held, as long as the group's sender keeps to the
    /// protocol (it never writes a slot it has put); the engine and other receivers cannot
    /// write it.
    pub fn payload(&self) -> &[u8] {
        // SAFETY: checked by PoolView::slot_ptrs for payload_len bytes of the mapping the
        // connection keeps alive while `self` borrows it; the slot is lent to this receiver and
        // the engine does not reuse it until it is released.
        unsafe {
            std::slice::from_raw_parts(
                self.raw.payload.as_ptr(),
                self.raw.desc.payload_len as usize,
            )
        }
    }

    /// The frame's metadata.
    pub fn metadata(&self) -> &[u8] {
        // SAFETY: as for `payload`, for metadata_len bytes of the metadata part.
        unsafe {
            std::slice::from_raw_parts(
                self.raw.metadata.as_ptr(),
                self.raw.desc.metadata_len as usize,
            )
        }
    }

    /// The group's sequence number of this frame (0 for the first frame of the group).
    pub fn seq(&self) -> u64 {
        self.raw.desc.seq
    }

    /// The sender's capture timestamp, ns since the Unix epoch.
    pub fn timestamp_ns(&self) -> u64 {
        self.raw.desc.timestamp_ns
    }

    /// Index of the pool slot holding the frame.
    pub fn slot(&self) -> u32 {
        self.raw.desc.slot
    }

    /// Gives the slot back.
    pub fn put(mut self) -> Result<()> {
        self.released = true;
        self.core.put(self.raw.desc, Timeout::Default)
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.core.put(self.raw.desc, Timeout::Default);
        }
    }
}

/// `len` as a u32 when it is at most `max`; `MESH_ERR_BAD_BUF_LEN` otherwise.
pub(crate) fn check_len(len: usize, max: usize, what: &str) -> Result<u32> {
    if len > max {
        return Err(Error::mesh(
            MeshErr::BadBufLen,
            format!("{what} length {len} exceeds the buffer's {max} bytes"),
        ));
    }
    // max came from a u32.
    Ok(len as u32)
}
