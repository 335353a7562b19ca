//! The boundary between the control thread and the data plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mcm_proto::config::Direction;
use mcm_proto::config::payload::Payload;
use mcm_proto::config::transport::St2110;
use mcm_proto::shm::conn::{Doorbell, EngineSide};
use mcm_proto::shm::pool::Pool;

/// Identifies a group in commands, unique within the engine's lifetime.
pub type GroupId = u64;
/// Identifies an SDK connection, unique within the engine's lifetime.
pub type ConnId = u64;

/// What a connection is to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Produces the group's frames (an SDK tx connection).
    Source,
    /// Receives every frame of the group (an SDK rx connection).
    Sink,
}

/// Per-connection counters: written by the lcore that serves the connection, read by the
/// control thread. Relaxed atomics: independent statistics.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Source: frames accepted from the client. Sink: frames delivered to it.
    pub frames: AtomicU64,
    /// Payload bytes of those frames (passed by reference).
    pub payload_bytes: AtomicU64,
    /// Sink: frames dropped because its queue was full.
    pub dropped: AtomicU64,
}

impl ConnCounters {
    /// Adds one frame of `bytes` payload bytes.
    pub fn count_frame(&self, bytes: u64) {
        // Relaxed: statistics; one writer, so load + store is not a lost update.
        self.frames
            .store(self.frames.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.payload_bytes.store(
            self.payload_bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
    }

    /// Adds one dropped frame.
    pub fn count_drop(&self) {
        // Relaxed: as above.
        self.dropped
            .store(self.dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// `(frames, payload_bytes, dropped)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        // Relaxed: each value is a statistic on its own.
        (
            self.frames.load(Ordering::Relaxed),
            self.payload_bytes.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Counters of a bridge (the network end of a group): written by its lcore, read by the control
/// thread. Relaxed atomics: independent statistics.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Packets sent (tx) or received and accepted (rx).
    pub packets: AtomicU64,
    /// Bytes of those packets (UDP payload).
    pub bytes: AtomicU64,
    /// Frames sent whole (tx) or received complete and handed to the group (rx).
    pub frames: AtomicU64,
    /// rx: frames that ended with missing packets or bytes (not delivered).
    pub frames_incomplete: AtomicU64,
    /// tx: frames dropped because the session's queue was full. rx: frames dropped because the
    /// group had no free slot.
    pub frames_dropped: AtomicU64,
    /// rx: packets missing from the sequence.
    pub packets_lost: AtomicU64,
    /// rx: packets that arrived out of order (late ones included).
    pub packets_reordered: AtomicU64,
    /// rx: packets rejected as malformed or not of this stream.
    pub packets_malformed: AtomicU64,
    /// tx: packets sent later than their -21 schedule allowed.
    pub packets_late: AtomicU64,
    /// tx: send errors other than a full socket buffer (e.g. ICMP unreachable on loopback).
    pub send_errors: AtomicU64,
    /// Payload bytes copied by a pixel-format conversion at the SDK edge.
    pub bytes_converted: AtomicU64,
    /// tx: frames the application handed in that the wire format refuses (malformed ANC data,
    /// an empty codestream, a video frame too short to convert, an audio buffer that is not one
    /// packet long); never sent.
    pub frames_refused: AtomicU64,
    /// rx: datagrams the kernel dropped because the socket buffer was full.
    pub socket_drops: AtomicU64,
}

impl BridgeCounters {
    /// Adds `n` to `c` (single writer: its lcore).
    pub fn add(c: &AtomicU64, n: u64) {
        // Relaxed: a statistic with one writer, so load + store is not a lost update.
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Reads `c`.
    pub fn get(c: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        c.load(Ordering::Relaxed)
    }
}

/// The network end of a group, built by the data plane together with the group.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    /// Tx: the bridge sends the group's frames (it is a sink of the group). Rx: the bridge
    /// receives frames into the group (it is the group's source).
    pub direction: Direction,
    /// The ST 2110 stream, as the connection that created the group asked for it.
    pub st2110: St2110,
    /// What one frame of the group is (format, size).
    pub payload: Payload,
    /// Bytes of one buffer's payload (a pool slot's capacity): for st2110-22 the largest
    /// codestream, for st2110-40 the largest ANC frame.
    pub payload_size: u32,
    /// Where the bridge counts what it does.
    pub counters: Arc<BridgeCounters>,
}

/// An activated connection, as handed to its group on the data plane.
#[derive(Debug)]
pub struct Attachment {
    /// The connection.
    pub conn: ConnId,
    /// Source or sink.
    pub role: Role,
    /// The engine's end of the connection's shared-memory block.
    pub side: EngineSide,
    /// Most frames the client may hold at once.
    pub quota: u32,
    /// Where the data plane counts the connection's frames.
    pub counters: Arc<ConnCounters>,
}

/// A request from the control thread to the data plane.
#[derive(Debug)]
pub enum Command {
    /// Every lcore answers with [`Event::Pong`] carrying `token` and `sent`: proves each lcore
    /// drains its command ring and measures how long the round trip takes.
    Ping {
        /// Echoed back in the answer.
        token: u64,
        /// When the control thread sent it.
        sent: Instant,
    },
    /// Start serving a multipoint group whose frames live in `pool`. Its connections wake the
    /// data plane through `bell` (each connection's block shares it).
    CreateGroup {
        /// The group.
        group: GroupId,
        /// Its URN, for logs.
        urn: String,
        /// The frame pool; the data plane owns its free list from now on.
        pool: Pool,
        /// The doorbell every connection of the group rings.
        bell: Doorbell,
        /// The group's network end, if any (an ST 2110 session).
        bridge: Option<BridgeSpec>,
    },
    /// Attach an activated connection to its group.
    Attach {
        /// The group (created before).
        group: GroupId,
        /// The connection.
        member: Attachment,
    },
    /// Detach a connection: frames it holds return to the pool, its block is closed.
    Detach {
        /// The group.
        group: GroupId,
        /// The connection.
        conn: ConnId,
    },
    /// Stop serving a group that has no connection left; frees its pool.
    DestroyGroup {
        /// The group.
        group: GroupId,
    },
}

/// Something the data plane reports to the control thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An lcore's answer to [`Command::Ping`].
    Pong {
        /// CPU the answering lcore is pinned to.
        cpu: usize,
        /// The ping's token.
        token: u64,
        /// When the ping was sent.
        sent: Instant,
    },
    /// A connection was attached to its group: frames sent from now on reach it.
    Attached {
        /// The connection.
        conn: ConnId,
    },
    /// A client broke the shared-memory protocol: the data plane detached the connection
    /// (its frames are back in the pool) and the control thread must close the client's session.
    ConnFailed {
        /// The connection.
        conn: ConnId,
        /// What the client did wrong.
        reason: String,
    },
}

/// Counters one lcore publishes, as read by the control thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LcoreCounters {
    /// CPU the lcore is pinned to.
    pub cpu: usize,
    /// Loop iterations since start.
    pub iterations: u64,
    /// Iterations in which at least one port did work.
    pub busy_iterations: u64,
    /// Work items (packets, descriptors, commands) handled since start.
    pub work_items: u64,
    /// Times the lcore parked (adaptive idle policy only).
    pub parks: u64,
    /// Ports currently polled.
    pub ports: u64,
}

/// Why a command could not be delivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataplaneError {
    /// The data plane is stopping or an lcore has exited.
    #[error("the data plane is not running (lcore on CPU {cpu} has stopped)")]
    Stopped {
        /// CPU of the lcore that could not be reached.
        cpu: usize,
    },
    /// A group's bridge could not be set up (socket, address, format).
    #[error("{0}")]
    Bridge(String),
    /// A command named a group the data plane does not serve.
    #[error("group {group} is not served by the data plane")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
}

/// Wakes the control thread from another thread; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier(pub(crate) Arc<mio::Waker>);

impl Notifier {
    /// Wakes the control thread so it drains [`Dataplane::drain_events`]. Never blocks.
    pub fn notify(&self) {
        // An eventfd write: fails only if the counter would overflow, which means the control
        // thread already has a pending wake-up.
        let _ = self.0.wake();
    }
}

/// What the control thread needs from the data plane. Implemented by the engine over its lcores.
pub trait Dataplane: Send {
    /// Gives the data plane the handle it uses to wake the control thread after queueing events.
    fn set_notifier(&mut self, notifier: Notifier);
    /// Delivers `cmd` to the lcores it concerns without blocking. A command an lcore cannot
    /// take yet (its ring is full) is kept, in order, until [`flush`](Self::flush) delivers it.
    fn submit(&mut self, cmd: Command) -> Result<(), DataplaneError>;
    /// Delivers kept commands that fit now; returns whether some are still kept (call again
    /// soon).
    fn flush(&mut self) -> bool;
    /// Hands every queued event to `sink`, without blocking.
    fn drain_events(&mut self, sink: &mut dyn FnMut(Event));
    /// A snapshot of every lcore's counters.
    fn counters(&self) -> Vec<LcoreCounters>;
    /// Payload bytes the data plane has copied since start (format conversions; the local
    /// multipoint path never copies).
    fn payload_bytes_copied(&self) -> u64;
    /// Stops every lcore and waits for it to exit. Called once, at shutdown.
    fn shutdown(&mut self);
}
