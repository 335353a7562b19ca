//! The boundary between the control thread and the data plane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mcm_proto::config::Direction;
use mcm_proto::config::payload::Payload;
use mcm_proto::config::transport::{Edge as ConfigEdge, RdmaLink, St2110};
use mcm_proto::shm::conn::{Doorbell, EngineSide};
use mcm_proto::shm::pool::Pool;

/// Identifies a group in commands, unique within the engine's lifetime.
pub type GroupId = u64;
/// Identifies an SDK connection, unique within the engine's lifetime.
pub type ConnId = u64;

/// What an edge is to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Produces the group's frames (an SDK tx connection, an ST 2110 rx session); one per group.
    Source,
    /// Receives every frame of the group (an SDK rx connection, an ST 2110 tx session).
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

/// Counters of a network edge of a group (an ST 2110 session; later RDMA links): written by
/// its lcore, read by the control thread. Relaxed atomics: independent statistics. A transport
/// uses the counters that mean something for it and leaves the others at zero.
#[derive(Debug, Default)]
pub struct EdgeCounters {
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
    /// rx: packets dropped for coming from a source the session does not accept.
    pub packets_foreign: AtomicU64,
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
    /// rx: duplicate packets (a sequence number seen before).
    pub packets_duplicate: AtomicU64,
    /// A gauge: slots of the group the edge holds now (an RDMA link: credits granted and frames
    /// being written); zero once the edge has let go of everything.
    pub slots_held: AtomicU64,
    /// Handshakes refused: a link's peer offered what this end does not serve (rx), or this
    /// end was refused (tx).
    pub handshakes_refused: AtomicU64,
    /// Times the edge failed (a link broken, a peer gone) and was set up again by the registry.
    pub failures: AtomicU64,
    /// Times a link's handshake completed and it started streaming.
    pub links_up: AtomicU64,
    /// An ST 2110 tx session's SDP: where it was written and its text. Set once, by the data
    /// plane when it builds the session (on the control thread), read by the control plane.
    pub sdp: OnceLock<(String, String)>,
    /// An RDMA rx link: the port it listens on (set by the data plane each time it builds the
    /// link, on the control thread); 0 otherwise.
    pub listen_port: AtomicU64,
    /// An ST 2022-7 session's two paths: `[0]` the first (`ipAddr`), `[1]` the redundant one.
    pub paths: [PathCounters; 2],
    /// rx, ST 2022-7: packets discarded because the other path had already delivered their
    /// sequence number (the second copy of every packet, normally).
    pub packets_redundant: AtomicU64,
}

/// Counters of one path of an ST 2022-7 session.
#[derive(Debug, Default)]
pub struct PathCounters {
    /// tx: packets sent on the path. rx: packets of the stream that arrived on it.
    pub packets: AtomicU64,
    /// rx: sequence numbers that never arrived on this path (a late arrival takes its count
    /// back); only numbers before the last that arrived can be known. tx: packets the path
    /// could not send (a full socket buffer or an error), which the other path still carried.
    pub lost: AtomicU64,
}

impl EdgeCounters {
    /// Every counter with its name (the names GetStats and the control plane use).
    pub fn named(&self) -> [(&'static str, u64); 24] {
        let get = Self::get;
        [
            ("packets", get(&self.packets)),
            ("bytes", get(&self.bytes)),
            ("frames", get(&self.frames)),
            ("frames_incomplete", get(&self.frames_incomplete)),
            ("frames_dropped", get(&self.frames_dropped)),
            ("packets_lost", get(&self.packets_lost)),
            ("packets_reordered", get(&self.packets_reordered)),
            ("packets_malformed", get(&self.packets_malformed)),
            ("packets_foreign", get(&self.packets_foreign)),
            ("packets_late", get(&self.packets_late)),
            ("send_errors", get(&self.send_errors)),
            ("bytes_converted", get(&self.bytes_converted)),
            ("frames_refused", get(&self.frames_refused)),
            ("socket_drops", get(&self.socket_drops)),
            ("packets_duplicate", get(&self.packets_duplicate)),
            ("slots_held", get(&self.slots_held)),
            ("handshakes_refused", get(&self.handshakes_refused)),
            ("failures", get(&self.failures)),
            ("links_up", get(&self.links_up)),
            ("primary_packets", get(&self.paths[0].packets)),
            ("primary_lost", get(&self.paths[0].lost)),
            ("secondary_packets", get(&self.paths[1].packets)),
            ("secondary_lost", get(&self.paths[1].lost)),
            ("packets_redundant", get(&self.packets_redundant)),
        ]
    }

    /// Adds `n` to `c` (single writer: its lcore).
    pub fn add(c: &AtomicU64, n: u64) {
        // Relaxed: a statistic with one writer, so load + store is not a lost update.
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Sets gauge `c` to `v` (single writer: its lcore).
    pub fn set(c: &AtomicU64, v: u64) {
        // Relaxed: a statistic.
        c.store(v, Ordering::Relaxed);
    }

    /// Reads `c`.
    pub fn get(c: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        c.load(Ordering::Relaxed)
    }
}

/// Identifies an edge of a group (an SDK connection's id is its edge id), unique within the
/// engine's lifetime.
pub type EdgeId = u64;

/// An ST 2110 session as an edge of a group.
#[derive(Debug, Clone)]
pub struct St2110Edge {
    /// Tx: the session sends the group's frames (a sink of the group). Rx: it receives frames
    /// into the group (the group's source).
    pub direction: Direction,
    /// The stream, as the connection that named the edge asked for it.
    pub st2110: St2110,
    /// What one frame of the group is (format, size).
    pub payload: Payload,
    /// Bytes of one buffer's payload (a pool slot's capacity): for st2110-22 the largest
    /// codestream, for st2110-40 the largest ANC frame.
    pub payload_size: u32,
    /// Most frames the edge may hold at once (the group's per-member quota, which its pool is
    /// sized for).
    pub quota: u32,
    /// Where the session counts what it does.
    pub counters: Arc<EdgeCounters>,
}

/// An RDMA link to another engine as an edge of a group.
#[derive(Debug, Clone)]
pub struct RdmaEdge {
    /// Tx: the edge writes the group's frames to the peer engine (a sink of the group). Rx: it
    /// listens for a peer and feeds the group (the group's source).
    pub direction: Direction,
    /// The link, as the connection or configuration that named the edge asked for it.
    pub link: RdmaLink,
    /// What one frame of the group is (both ends of a link must agree).
    pub payload: Payload,
    /// Most frames the edge may hold at once (the group's per-member quota).
    pub quota: u32,
    /// Where the link counts what it does.
    pub counters: Arc<EdgeCounters>,
}

/// What one edge of a group is, transport by transport: the data plane builds the edge from it.
/// A new transport is one more variant (and its module in the engine); the group, the registry
/// and this boundary do not change otherwise.
#[derive(Debug)]
pub enum EdgeSpec {
    /// An SDK connection: shared-memory rings with an application.
    Sdk(Attachment),
    /// An ST 2110 session on the network.
    St2110(St2110Edge),
    /// An RDMA link to another engine.
    Rdma(RdmaEdge),
}

impl EdgeSpec {
    /// The spec of the network edge `edge` names, for a group of `payload` in slots of
    /// `payload_size` bytes whose members hold at most `quota` frames, counting into
    /// `counters`.
    pub fn network(
        edge: &ConfigEdge,
        payload: Payload,
        payload_size: u32,
        quota: u32,
        counters: Arc<EdgeCounters>,
    ) -> Self {
        match edge {
            ConfigEdge::St2110 { direction, stream } => Self::St2110(St2110Edge {
                direction: *direction,
                st2110: stream.clone(),
                payload,
                payload_size,
                quota,
                counters,
            }),
            ConfigEdge::Rdma { direction, link } => Self::Rdma(RdmaEdge {
                direction: *direction,
                link: link.clone(),
                payload,
                quota,
                counters,
            }),
        }
    }

    /// Source (it feeds the group) or sink (it takes the group's frames).
    pub fn role(&self) -> Role {
        match self {
            Self::Sdk(a) => a.role,
            Self::St2110(St2110Edge { direction, .. }) | Self::Rdma(RdmaEdge { direction, .. }) => {
                match direction {
                    Direction::Tx => Role::Sink,
                    Direction::Rx => Role::Source,
                }
            }
        }
    }

    /// What the edge is, for stats and logs, e.g. `"sdk rx"`, `"st2110-20 tx 239.1.1.1:5004"`.
    pub fn describe(&self) -> String {
        let dir = |d: Direction| match d {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        };
        match self {
            Self::Sdk(a) => match a.role {
                Role::Source => "sdk tx".to_owned(),
                Role::Sink => "sdk rx".to_owned(),
            },
            Self::St2110(s) => format!(
                "{} {} {}",
                s.st2110.transport.as_str(),
                dir(s.direction),
                s.st2110.group_urn()
            ),
            Self::Rdma(r) => {
                let at = match (r.link.peer, r.link.port) {
                    (Some(peer), _) => peer.to_string(),
                    (None, Some(port)) => format!("port {port}"),
                    (None, None) => "a port of the range".to_owned(),
                };
                format!(
                    "rdma {} {at} ({} x{})",
                    dir(r.direction),
                    r.link.provider.as_str(),
                    r.link.endpoints
                )
            }
        }
    }
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
    /// Start serving a multipoint group whose frames live in `pool`, with no edge yet. Its SDK
    /// connections wake the data plane through `bell` (each connection's block shares it).
    CreateGroup {
        /// The group.
        group: GroupId,
        /// Its URN, for logs.
        urn: String,
        /// The frame pool; the data plane owns its free list from now on.
        pool: Pool,
        /// The doorbell every SDK connection of the group rings.
        bell: Doorbell,
    },
    /// Build the edge `spec` describes and attach it to `group`: [`Event::EdgeAttached`] once
    /// frames published from then on reach it (a sink) or it may publish (a source), or
    /// [`Event::EdgeFailed`]. A transport that cannot be set up (socket, address, format) is
    /// refused by `submit` itself with [`DataplaneError::EdgeSetup`].
    AttachEdge {
        /// The group (created before).
        group: GroupId,
        /// The edge's id (an SDK connection's is its connection id).
        edge: EdgeId,
        /// What to build.
        spec: EdgeSpec,
    },
    /// Detach an edge. A source first publishes every frame it has already accepted (an SDK
    /// sender's queued puts); a sink first finishes the frames it has taken (an ST 2110 sender
    /// sends its queue), except an SDK receiver, whose held frames return to the pool at once.
    /// [`Event::EdgeDetached`] follows.
    DetachEdge {
        /// The group.
        group: GroupId,
        /// The edge.
        edge: EdgeId,
    },
    /// Move `group` to a new frame pool `pool` (same geometry, another id): a writer that maps
    /// the pool itself joins a group whose pool is sealed against new writers. Applied when the
    /// group has no source: SDK receivers keep the frames they hold (their own mappings of the
    /// old pool) and are offered the new pool's from then on; network sinks that read through
    /// the engine's mapping first finish what they hold; links that registered the old pool
    /// are detached with [`EdgeFailure::PoolMoved`] to be set up again. A source attached
    /// meanwhile starts once the move is done.
    ReplacePool {
        /// The group.
        group: GroupId,
        /// The new pool.
        pool: Pool,
    },
    /// Stop serving a group: its remaining edges are detached as [`Command::DetachEdge`] does
    /// (sinks finish what they hold), then its pool is freed, off the lcore.
    DestroyGroup {
        /// The group.
        group: GroupId,
    },
}

/// Why an edge could not be attached, or was detached by the data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeFailure {
    /// The group already has a source (a group has one).
    #[error("the group already has a source (allowed: one source per group)")]
    SecondSource,
    /// The group has its most sinks.
    #[error("the group has {limit} sinks already (allowed: at most {limit})")]
    TooManySinks {
        /// The limit.
        limit: usize,
    },
    /// The peer broke the transport's protocol (an SDK client wrote a slot it does not hold,
    /// corrupted a ring, ...): the edge was detached and its slots reclaimed.
    #[error("{0}")]
    Violation(Violation),
    /// The group is not served (destroyed before the command arrived).
    #[error("the group is not served by the data plane")]
    NoGroup,
    /// The group moved to a new frame pool and the edge had to let go of the old one (it mapped
    /// the pool itself, or did not finish its frames in time): set it up again.
    #[error("the group moved to a new frame pool; the edge is set up again on it")]
    PoolMoved,
}

/// A rule an edge's peer broke, found on the data path: small and `Copy`, formatted only when
/// the control thread reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A descriptor named another pool.
    #[error("its descriptor names pool {pool} (allowed: this group's pool {expected})")]
    ForeignPool {
        /// The pool named.
        pool: u32,
        /// The group's pool.
        expected: u32,
    },
    /// A descriptor named a slot past the pool's end.
    #[error("its descriptor names slot {slot} (allowed: 0..{count})")]
    SlotOutOfRange {
        /// The slot named.
        slot: u32,
        /// Slots in the pool.
        count: u32,
    },
    /// A source published a slot it was not lent.
    #[error("it sent slot {slot}, which was not lent to it")]
    NotLent {
        /// The slot.
        slot: u32,
    },
    /// A sink released a slot it does not hold.
    #[error("it released slot {slot}, which it does not hold")]
    NotHeld {
        /// The slot.
        slot: u32,
    },
    /// A frame's lengths exceed the slot.
    #[error(
        "slot {slot}: payload_len {payload_len} / metadata_len {metadata_len} (allowed: at most \
         {payload_capacity} / {metadata_capacity})"
    )]
    Lengths {
        /// The slot.
        slot: u32,
        /// Payload bytes claimed.
        payload_len: u32,
        /// Metadata bytes claimed.
        metadata_len: u32,
        /// The slot's payload capacity.
        payload_capacity: u32,
        /// The slot's metadata capacity.
        metadata_capacity: u32,
    },
    /// A ring's indices are impossible.
    #[error("its {0} ring's indices are corrupt")]
    CorruptRing(RingName),
    /// An RDMA link failed or its peer broke the link protocol.
    #[error("RDMA link: {0}")]
    Link(LinkFault),
}

/// Why an RDMA link ended: small and `Copy`, like every data-path error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkFault {
    /// The TCP connection to the peer engine could not be made.
    #[error("cannot connect to the peer engine: {}", std::io::Error::from_raw_os_error(*.errno))]
    Connect {
        /// What the OS said.
        errno: i32,
    },
    /// The peer closed the link's connection (it stopped, or dropped the link).
    #[error("the peer engine closed the link's connection during {0}")]
    Closed(LinkStage),
    /// The handshake did not complete within its limit.
    #[error("no answer from the peer engine within {secs} s during {stage}")]
    Timeout {
        /// What was being waited for.
        stage: LinkStage,
        /// The limit.
        secs: u32,
    },
    /// The peer refused the link, or sent a handshake that is not valid; the text says why.
    #[error("{0}")]
    Handshake(ShortText),
    /// A libfabric call failed.
    #[error("{op}: {text} ({code})")]
    Fabric {
        /// The call.
        op: &'static str,
        /// libfabric's error code (negative).
        code: i32,
        /// `fi_strerror` of it.
        text: &'static str,
    },
    /// The peer wrote a frame whose completion data the engine did not grant: refused, not
    /// published.
    #[error("refused the completion data {data:#018x} of a frame: {why}")]
    BadTag {
        /// The 64-bit completion data.
        data: u64,
        /// Which rule it broke.
        why: TagFault,
    },
    /// The peer granted a slot its welcome did not describe.
    #[error(
        "refused a credit for slot {slot} at {addr:#x} (allowed: a slot of the welcome's pool at its own address)"
    )]
    BadCredit {
        /// The slot.
        slot: u32,
        /// The address.
        addr: u64,
    },
}

/// Which rule a frame's completion data broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFault {
    /// It names a slot the sender was not granted.
    NotGranted,
    /// Its sequence is outside the window of frames in flight, or repeats one.
    Sequence,
    /// Its payload length exceeds the slot, or disagrees with the slot's header.
    Length,
}

impl std::fmt::Display for TagFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotGranted => "it names a slot the sender was not granted",
            Self::Sequence => "its sequence is outside the frames in flight or repeats one",
            Self::Length => "its lengths exceed the slot or disagree with the frame's header",
        })
    }
}

/// A stage of an RDMA link's life, for [`LinkFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStage {
    /// Connecting to the peer, or waiting for one.
    Connecting,
    /// Exchanging the hello and its reply.
    Handshake,
    /// Carrying frames.
    Streaming,
}

impl std::fmt::Display for LinkStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connecting => "connecting",
            Self::Handshake => "the handshake",
            Self::Streaming => "streaming",
        })
    }
}

/// A message of at most [`ShortText::CAPACITY`] bytes kept inline (longer ones are cut at a
/// character boundary and end in `…`), so a data-path error can carry a peer's reason without
/// allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortText {
    len: u8,
    bytes: [u8; ShortText::CAPACITY],
}

impl ShortText {
    /// Most bytes kept.
    pub const CAPACITY: usize = 112;

    /// `text`, cut to [`Self::CAPACITY`] bytes (the last of them `…` where it was cut).
    pub fn new(text: &str) -> Self {
        const CUT: &str = "…";
        let mut bytes = [0; Self::CAPACITY];
        if text.len() <= Self::CAPACITY {
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            return Self {
                len: text.len() as u8,
                bytes,
            };
        }
        let mut end = Self::CAPACITY - CUT.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        bytes[end..end + CUT.len()].copy_from_slice(CUT.as_bytes());
        Self {
            len: (end + CUT.len()) as u8,
            bytes,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Cut at a character boundary of a str in `new`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Display for ShortText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ShortText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Which ring of an SDK connection a [`Violation::CorruptRing`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingName {
    /// The sender's ring of frames to the engine.
    Frame,
    /// The receiver's ring of released slots.
    Release,
}

impl std::fmt::Display for RingName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Frame => "frame",
            Self::Release => "release",
        })
    }
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
    /// An edge was attached to its group: frames published from now on reach it (a sink), or
    /// it may publish (a source).
    EdgeAttached {
        /// The edge (an SDK connection's id).
        edge: EdgeId,
    },
    /// An edge could not be attached, or broke its protocol and was detached: its frames are
    /// back in the pool; an SDK client's session must be closed.
    EdgeFailed {
        /// The edge.
        edge: EdgeId,
        /// Why.
        reason: EdgeFailure,
    },
    /// An edge left its group after [`Command::DetachEdge`] (or the group's destruction) and
    /// finished what it held.
    EdgeDetached {
        /// The edge.
        edge: EdgeId,
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
    /// An edge's transport could not be set up (socket, address, format): what and why.
    #[error("{0}")]
    EdgeSetup(String),
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
    /// Work the data plane keeps for the control thread's quiet moments (e.g. opening
    /// provider objects ahead of the next link), called at start and every housekeeping turn.
    fn maintain(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_keeps_what_fits_and_cuts_at_a_character() {
        assert_eq!(
            ShortText::new("refused: payload differs").as_str(),
            "refused: payload differs"
        );
        let fits = "x".repeat(ShortText::CAPACITY);
        assert_eq!(
            ShortText::new(&fits).as_str(),
            fits,
            "what fits is kept whole"
        );
        let long = "é".repeat(ShortText::CAPACITY);
        let cut = ShortText::new(&long);
        // 112 bytes at most: 54 two-byte characters and the three-byte mark.
        assert_eq!(cut.as_str(), format!("{}…", "é".repeat(54)));
        let odd = format!("a{}", "é".repeat(ShortText::CAPACITY));
        let cut = ShortText::new(&odd);
        assert_eq!(cut.as_str().len(), ShortText::CAPACITY);
        assert!(cut.as_str().ends_with("é…"));
        let v = Violation::Link(LinkFault::Handshake(ShortText::new(
            "group \"g\" is not served",
        )));
        assert_eq!(v.to_string(), "RDMA link: group \"g\" is not served");
        let f = LinkFault::BadTag {
            data: 0x10,
            why: TagFault::NotGranted,
        };
        assert!(
            f.to_string()
                .ends_with("it names a slot the sender was not granted"),
            "{f}"
        );
    }
}
