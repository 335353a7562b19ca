//! The paced frame sender of the ST 2110 video-like sessions (-20 raw video, -22 JPEG XS
//! codestreams, -40 ancillary frames) and the RTP receive end of the -22 and -40 receivers.
//!
//! [`PacedTx`] is the sink bridge: it takes the group's frames in a [`FrameQueue`], asks its
//! [`Packetize`] format how many packets a frame makes (refusing, and counting in
//! `frames_refused`, a frame the format cannot carry), and sends them in place from the pool
//! slot, each datagram gathered from a header built on the stack and a slice of the slot.
//!
//! Pacing: every frame gets its own ST 2110-21 [`Timing`] built from its own packet count, so
//! its packets are spread evenly over the active part of its frame period (TRS = TFRAME ·
//! RACTIVE / Npackets), starting at the frame's TVD, in batches of at most the sender type's
//! CMAX. For -20 Npackets is the same every frame; for -22 (the -21 model ST 2110-22 applies to
//! compressed video) and -40 it is taken per frame, since a codestream's or an ANC frame's size
//! changes from one frame to the next. A late lcore finishes a frame late rather than cutting
//! it. The frame's RTP timestamp is its frame period's start (ST 2110-10).
//!
//! [`RtpRx`] is the socket end of the matching receivers: it filters by sender and payload
//! type, parses the RTP header and counts lost and reordered packets from the sequence numbers.

use std::fmt::Display;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mcm_control::dataplane::{EdgeCounters, Violation};
use mcm_proto::st2110::rtp::{self, HEADER_LEN};
use mcm_proto::st2110::st21::{Budget, Pacer, SenderType, Timing};
use mcm_proto::st2110::{FrameRate, rfc4175};

use super::clock::Clock;
use super::session::SdpFile;
use crate::group::{Frame, FrameQueue, Sink, SinkIo};
use crate::io::udp::MAX_BATCH;
use crate::io::{Datagram, PacketRx, PacketTx, RxMeta, publish_rx};

/// Most bytes of a payload header after the RTP header that a [`Packetize`] format writes (the
/// largest: RFC 4175's ESN and three SRD headers).
pub const MAX_PAYLOAD_HEADER: usize = rfc4175::MAX_HEADERS_LEN;

/// The most a packet may leave before its read time: the lead that absorbs late wake-ups of
/// the lcore (on the project's VM, an idle CPU loses over 20 µs about 150 times a second), within
/// what VRX_FULL allows. A frame of few packets (slots longer than this) leaves at its read times.
const MAX_EARLY_NS: u64 = 500_000;

/// How a format cuts one frame into RTP packets.
pub trait Packetize: Send {
    /// Why a frame is refused (data path: small and `Copy`).
    type Error: Copy + Display;

    /// Checks `frame` (the slot's `payload_len` bytes) and prepares its packets; returns how
    /// many (at least 1), or why the frame cannot be sent.
    fn begin(&mut self, frame: &[u8]) -> Result<u32, Self::Error>;

    /// The bytes the frame's packets are cut from: the slot's (`slot`, `payload_len` long), or
    /// the format's own copy of them (a converted frame).
    fn source<'a>(&'a self, slot: &'a [u8]) -> &'a [u8] {
        slot
    }

    /// Makes the first `upto` bytes of [`source`](Self::source) ready before packets cut from
    /// them are sent: a converting format converts the lines they need (a band per call, so a
    /// frame is converted across the polls that send it, never all in one).
    fn prepare(&mut self, slot: &[u8], upto: usize) {
        let _ = (slot, upto);
    }

    /// Writes the payload header of packet `index` of the frame [`begin`](Self::begin) took
    /// (`seq`: the packet's 32-bit extended sequence number) into `out`; returns the header's
    /// length and the bytes of the frame the packet carries after it.
    fn packet(&self, index: u32, seq: u32, out: &mut [u8]) -> (usize, Range<usize>);
}

/// Once a second at most: how lcore code logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogLimit {
    last_ns: Option<u64>,
}

impl LogLimit {
    /// Whether a message may be logged at `now_ns` (and, if so, starts a new second).
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let ok = self
            .last_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= 1_000_000_000);
        if ok {
            self.last_ns = Some(now_ns);
        }
        ok
    }
}

/// The stream a [`PacedTx`] sends: its RTP identity and its -21 parameters.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// RTP payload type.
    pub payload_type: u8,
    /// RTP SSRC.
    pub ssrc: u32,
    /// Frame rate (of the video the stream is or accompanies).
    pub rate: FrameRate,
    /// Active lines (RACTIVE and TROFFSET follow them).
    pub height: u32,
    /// The ST 2110-21 sender type.
    pub sender: SenderType,
}

/// The frame being sent.
#[derive(Debug, Clone, Copy)]
struct Sending {
    frame: Frame,
    /// Next packet index.
    next: u32,
    /// Packets of the frame.
    total: u32,
    rtp_timestamp: u32,
}

/// A paced transmitter of frames cut by `P`: a sink bridge of its group.
pub struct PacedTx<P: Packetize> {
    name: String,
    udp: Box<dyn PacketTx>,
    format: P,
    stream: Stream,
    pacer: Pacer,
    /// Late packets of `pacer` already counted.
    late_seen: u64,
    clock: Clock,
    /// Extended sequence number of the next packet.
    seq: u32,
    queue: FrameQueue,
    sending: Option<Sending>,
    /// The last frame period used, so two frames never share an epoch.
    last_epoch: Option<u64>,
    counters: Arc<EdgeCounters>,
    refusals: LogLimit,
    /// The SDP file published for this session; removed when the session ends.
    sdp_file: Option<SdpFile>,
    /// The lcore's time and TAI at the last poll (deadlines are computed from them; the
    /// instant is the older of the two readings, so a deadline maps early, never late).
    anchor: (Instant, u64),
}

impl<P: Packetize> PacedTx<P> {
    /// A transmitter of `format`'s packets of `stream` through `udp`.
    pub fn new(
        name: String,
        udp: impl PacketTx + 'static,
        format: P,
        stream: Stream,
        counters: Arc<EdgeCounters>,
        clock: Clock,
    ) -> Self {
        let timing = Self::timing(&stream, 1);
        Self {
            name,
            udp: Box::new(udp),
            format,
            stream,
            pacer: Pacer::new(timing),
            late_seen: 0,
            clock,
            seq: 0,
            queue: FrameQueue::default(),
            sending: None,
            last_epoch: None,
            counters,
            refusals: LogLimit::default(),
            sdp_file: None,
            anchor: (Instant::now(), 0),
        }
    }

    /// Removes `path` (the session's published SDP) when the session ends.
    pub fn with_sdp_file(mut self, file: SdpFile) -> Self {
        self.sdp_file = Some(file);
        self
    }

    /// The -21 timing of a frame of `packets` packets.
    fn timing(stream: &Stream, packets: u32) -> Timing {
        Timing::new(stream.rate, stream.height, false, packets, stream.sender)
    }

    /// A pacer for one frame of `timing`: as much lead and batching (one GSO `sendmsg` a
    /// batch) as the sender type allows with no packet more than [`MAX_EARLY_NS`] early (see
    /// [`Pacer::for_software`]); late frames finished rather than cut.
    fn pacer(timing: Timing) -> Pacer {
        Pacer::for_software(timing, MAX_EARLY_NS).keep_late_frames()
    }

    /// Starts the oldest queued frame at the next free frame epoch, or refuses it.
    fn start_next(&mut self, now_ns: u64, io: &mut SinkIo<'_>) {
        let Some(frame) = self.queue.pop() else {
            return;
        };
        let data = match io.payload(frame.slot) {
            Some(p) => &p[..(frame.payload_len as usize).min(p.len())],
            None => &[],
        };
        let total = match self.format.begin(data) {
            Ok(n) => n.max(1),
            Err(e) => {
                EdgeCounters::add(&self.counters.frames_refused, 1);
                if self.refusals.allow(now_ns) {
                    tracing::warn!("{}: frame refused, not sent: {e}", self.name);
                }
                io.release(frame.slot);
                return;
            }
        };
        let timing = Self::timing(&self.stream, total);
        let mut n = timing.next_frame_after(now_ns);
        if let Some(last) = self.last_epoch {
            n = n.max(last + 1);
        }
        self.last_epoch = Some(n);
        self.account_late();
        self.pacer = Self::pacer(timing);
        self.late_seen = 0;
        self.pacer.start_frame(n);
        self.sending = Some(Sending {
            frame,
            next: 0,
            total,
            rtp_timestamp: timing.rtp_timestamp(n),
        });
    }

    /// Sends what the pacer allows now; returns packets sent.
    fn send_due(&mut self, now_ns: u64, budget: u32, io: &mut SinkIo<'_>) -> u32 {
        let Some(mut s) = self.sending else {
            return 0;
        };
        match self.pacer.due(now_ns) {
            Budget::Send(k) => {
                let k = k.min(budget).min(MAX_BATCH as u32) as usize;
                let slot: &[u8] = match io.payload(s.frame.slot) {
                    Some(p) => &p[..(s.frame.payload_len as usize).min(p.len())],
                    None => &[],
                };
                let frame_len = self.format.source(slot).len();
                let mut headers = [[0u8; HEADER_LEN + MAX_PAYLOAD_HEADER]; MAX_BATCH];
                let mut lens = [0usize; MAX_BATCH];
                let mut ranges = [(0usize, 0usize); MAX_BATCH];
                let mut n = 0;
                while n < k {
                    let index = s.next + n as u32;
                    let seq = self.seq.wrapping_add(n as u32);
                    let header = rtp::Header {
                        marker: index + 1 == s.total,
                        payload_type: self.stream.payload_type,
                        sequence_number: seq as u16,
                        timestamp: s.rtp_timestamp,
                        ssrc: self.stream.ssrc,
                    };
                    let (rtp, rest) = headers[n].split_at_mut(HEADER_LEN);
                    header.emit(rtp.try_into().expect("HEADER_LEN bytes"));
                    let (len, range) = self.format.packet(index, seq, rest);
                    if range.end > frame_len {
                        break; // a frame shorter than its format: send what exists
                    }
                    lens[n] = HEADER_LEN + len;
                    ranges[n] = (range.start, range.end);
                    n += 1;
                }
                let upto = ranges[..n].iter().map(|r| r.1).max().unwrap_or(0);
                self.format.prepare(slot, upto);
                let frame = self.format.source(slot);
                let mut dgrams = [Datagram::default(); MAX_BATCH];
                for i in 0..n {
                    dgrams[i] = Datagram {
                        header: &headers[i][..lens[i]],
                        data: &frame[ranges[i].0..ranges[i].1],
                    };
                }
                // The model takes the packets as sent when the call is made, not when they were
                // granted (see `Pacer::sent_at`): a sender preempted in between does not let the
                // next batch follow this one back to back. (Not when the call returns: that
                // would add the call's own time to every batch's spacing, which the model's 5 %
                // drain margin cannot absorb.)
                let at = self.clock.now_ns();
                let sent = if n == 0 {
                    0
                } else {
                    self.udp.send(&dgrams[..n])
                };
                self.pacer.sent_at(sent as u32, at);
                self.seq = self.seq.wrapping_add(sent as u32);
                s.next += sent as u32;
                if n < k && sent == n {
                    s.next = s.total;
                }
                self.sending = Some(s);
                self.account(sent);
                if s.next >= s.total {
                    self.finish(io, true);
                }
                sent as u32
            }
            Budget::Done => {
                self.finish(io, true);
                0
            }
            Budget::Skipped(_) => {
                self.finish(io, false);
                0
            }
            Budget::Wait | Budget::Idle => 0,
        }
    }

    fn account_late(&mut self) {
        let late = self.pacer.stats().packets_late;
        EdgeCounters::add(&self.counters.packets_late, late - self.late_seen);
        self.late_seen = late;
    }

    fn account(&mut self, sent: usize) {
        let c = &self.counters;
        EdgeCounters::add(&c.packets, sent as u64);
        let io = self.udp.counters();
        // Relaxed: statistics mirrored from the socket (one writer).
        c.bytes.store(io.bytes, Ordering::Relaxed);
        c.send_errors.store(io.errors, Ordering::Relaxed);
        self.account_late();
    }

    fn finish(&mut self, io: &mut SinkIo<'_>, whole: bool) {
        if let Some(s) = self.sending.take() {
            io.release(s.frame.slot);
            let c = if whole {
                &self.counters.frames
            } else {
                &self.counters.frames_dropped
            };
            EdgeCounters::add(c, 1);
        }
        self.pacer.frame_done();
    }
}

impl<P: Packetize> Sink for PacedTx<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, frame: Frame) -> bool {
        super::video::offer_counted(&mut self.queue, frame, &self.counters)
    }

    fn missed(&mut self, _frame: Frame) {
        EdgeCounters::add(&self.counters.frames_dropped, 1);
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation> {
        // A pacer reads TAI itself on every poll: the lcore's `now` was taken before the other
        // ports were polled, and a schedule kept against a time that many µs old sends late.
        let now_ns = self.clock.now_ns();
        self.anchor = (now, now_ns);
        if self.sending.is_none() {
            self.start_next(now_ns, io);
        }
        Ok(self.send_due(now_ns, budget, io))
    }

    fn pending(&self) -> bool {
        self.sending.is_some() || !self.queue.is_empty()
    }

    fn paces_source(&self) -> bool {
        true
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.sending.is_none() {
            return (!self.queue.is_empty()).then_some(now);
        }
        // The pacer's time is TAI; the last poll saw both clocks, so no clock is read here.
        let at = self.pacer.next_deadline()?;
        let (polled, polled_ns) = self.anchor;
        Some(polled + Duration::from_nanos(at.saturating_sub(polled_ns)))
    }
}

/// Receive-side counters of an [`RtpRx`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxCounts {
    /// RTP packets of the stream accepted.
    pub packets: u64,
    /// Sequence numbers skipped.
    pub lost: u64,
    /// Packets late or out of the sequence.
    pub reordered: u64,
    /// Packets seen before.
    pub duplicates: u64,
    /// Datagrams that are not RTP of this stream (or whose payload the format refused).
    pub malformed: u64,
    /// Datagrams from a source the session does not accept (dropped).
    pub foreign: u64,
}

/// The receive loop every ST 2110 receiver shares: datagrams from one sender and payload type
/// (optionally of one payload length), through any [`PacketRx`], as RTP packets with their
/// sequence classified ([`RtpRx::recv`]) or as raw datagrams for a receiver that parses them
/// itself ([`RtpRx::recv_datagrams`]: the RFC 4175 depacketizer tracks sequence numbers on its
/// own). At most the budget's datagrams per call, one GRO segment counting as one.
pub struct RtpRx {
    udp: Box<dyn PacketRx>,
    /// `None`: any payload type.
    payload_type: Option<u8>,
    /// Only packets whose RTP payload is this long (audio: one packet time of samples).
    payload_len: Option<usize>,
    /// Late packets go to the callback too (audio keeps them; video-like formats have already
    /// cut their frame at the gap). Duplicates never do.
    deliver_late: bool,
    /// Unicast: the only sender accepted.
    source_filter: Option<Ipv4Addr>,
    seq: rtp::SeqExtender,
    counts: RxCounts,
}

/// The sender and payload-type filter of an [`RtpRx`], with the counts it keeps.
struct Filter {
    payload_type: Option<u8>,
    source: Option<Ipv4Addr>,
}

impl Filter {
    /// Whether `d` from `meta` is of the stream (byte 1 of an RTP header holds the payload type);
    /// a datagram from another source is counted in `counts.foreign`, one of another payload
    /// type in `counts.malformed`.
    fn admits(&self, d: &[u8], meta: &RxMeta, counts: &mut RxCounts) -> bool {
        if self.source.is_some_and(|s| *meta.source.ip() != s) {
            counts.foreign += 1;
            return false;
        }
        let pt_ok = self
            .payload_type
            .is_none_or(|pt| d.get(1).is_some_and(|b| b & 0x7f == pt));
        if !pt_ok {
            counts.malformed += 1;
        }
        pt_ok
    }
}

impl RtpRx {
    /// Packets of `payload_type` from `udp`, from `source` only when given.
    pub fn new(udp: impl PacketRx + 'static, payload_type: u8, source: Option<Ipv4Addr>) -> Self {
        Self {
            udp: Box::new(udp),
            payload_type: Some(payload_type),
            payload_len: None,
            deliver_late: false,
            source_filter: source,
            seq: rtp::SeqExtender::new(),
            counts: RxCounts::default(),
        }
    }

    /// Packets of any payload type from `udp`, from anyone.
    pub fn any(udp: impl PacketRx + 'static) -> Self {
        Self {
            payload_type: None,
            ..Self::new(udp, 0, None)
        }
    }

    /// Accepts datagrams from `source` only (`None`: from anyone).
    pub fn set_source_filter(&mut self, source: Option<Ipv4Addr>) {
        self.source_filter = source;
    }

    /// Accepts packets of payload type `pt` only (`None`: any).
    pub fn set_payload_type(&mut self, pt: Option<u8>) {
        self.payload_type = pt;
    }

    /// Accepts only packets whose RTP payload is `len` bytes (others are malformed).
    pub fn with_payload_len(mut self, len: usize) -> Self {
        self.payload_len = Some(len);
        self
    }

    /// Hands late packets to the callback too (still counted as reordered); duplicates never.
    pub fn delivering_late(mut self) -> Self {
        self.deliver_late = true;
        self
    }

    /// Receives up to `budget` datagrams (`now`: the lcore's clock) and lends each RTP packet of
    /// the stream to `f` with whether a sequence gap came just before it. `f` returns false
    /// for a payload it refuses (counted as malformed). Returns the datagrams received.
    pub fn recv(
        &mut self,
        now: Instant,
        budget: u32,
        mut f: impl FnMut(&rtp::Packet<&[u8]>, bool) -> bool,
    ) -> u32 {
        let Self {
            udp,
            payload_type,
            payload_len,
            deliver_late,
            source_filter,
            seq,
            counts,
        } = self;
        let filter = Filter {
            payload_type: *payload_type,
            source: *source_filter,
        };
        let (len, late_too) = (*payload_len, *deliver_late);
        let mut work = 0;
        while work < budget {
            let n = udp.recv((budget - work) as usize, now, &mut |d, meta| {
                if !filter.admits(d, &meta, counts) {
                    return;
                }
                let Ok(p) = rtp::Packet::new_checked(d) else {
                    counts.malformed += 1;
                    return;
                };
                if len.is_some_and(|l| p.payload().len() != l) {
                    counts.malformed += 1;
                    return;
                }
                counts.packets += 1;
                let gap = match seq.extend(p.sequence_number()).class {
                    rtp::SeqClass::InOrder { gap } => {
                        counts.lost += u64::from(gap);
                        gap > 0
                    }
                    rtp::SeqClass::First => false,
                    rtp::SeqClass::Resync => true,
                    rtp::SeqClass::Duplicate => {
                        counts.duplicates += 1;
                        return; // already handed on once
                    }
                    _ => {
                        counts.reordered += 1;
                        if !late_too {
                            return; // late or duplicate: its frame was already cut at the gap
                        }
                        false
                    }
                };
                if !f(&p, gap) {
                    counts.malformed += 1;
                }
            });
            if n == 0 {
                break;
            }
            work += n as u32;
        }
        work
    }

    /// Receives up to `budget` datagrams and lends each one of the stream (its sender and
    /// payload type) to `f` as it came, unparsed; others count as malformed. Returns the
    /// datagrams received: fewer than `budget` when the receiver ran dry.
    pub fn recv_datagrams(&mut self, now: Instant, budget: u32, mut f: impl FnMut(&[u8])) -> u32 {
        let filter = Filter {
            payload_type: self.payload_type,
            source: self.source_filter,
        };
        let counts = &mut self.counts;
        let mut work = 0;
        while work < budget {
            let n = self
                .udp
                .recv((budget - work) as usize, now, &mut |d, meta| {
                    if filter.admits(d, &meta, counts) {
                        f(d);
                    }
                });
            if n == 0 {
                break;
            }
            work += n as u32;
        }
        work
    }

    /// The receiver's own counters (bytes, kernel drops).
    pub fn io_counters(&self) -> crate::io::IoCounters {
        self.udp.counters()
    }

    /// When a read the receiver rests from is next allowed.
    pub fn next_read(&self) -> Option<Instant> {
        self.udp.next_read()
    }

    /// Mirrors the counters into `c`.
    pub fn publish(&self, c: &EdgeCounters) {
        let n = self.counts();
        // Relaxed stores: statistics (one writer).
        c.packets.store(n.packets, Ordering::Relaxed);
        publish_rx(self.udp.counters(), c);
        c.packets_lost.store(n.lost, Ordering::Relaxed);
        c.packets_reordered.store(n.reordered, Ordering::Relaxed);
        c.packets_duplicate.store(n.duplicates, Ordering::Relaxed);
        c.packets_malformed.store(n.malformed, Ordering::Relaxed);
        c.packets_foreign.store(n.foreign, Ordering::Relaxed);
    }

    /// The counters so far (datagrams from senders not accepted include those the receiver
    /// itself dropped: each path of an ST 2022-7 merge filters its own sender).
    pub fn counts(&self) -> RxCounts {
        RxCounts {
            foreign: self.counts.foreign + self.udp.foreign(),
            ..self.counts
        }
    }

    /// The socket, readable when datagrams wait.
    pub fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.udp.wake_fd()
    }

    /// Whether datagrams already read wait (the lcore must not park).
    pub fn has_pending(&self) -> bool {
        self.udp.has_pending()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::AtomicU64;

    use mcm_proto::shm::map::HugePages;
    use mcm_proto::shm::pool::{Pool, PoolGeometry};

    use crate::group::{Source, SourceIo};

    use super::*;
    use crate::io::udp::{RxAddr, SocketOptions, UdpRx, UdpTx};
    use crate::transport::st2110::compressed::Codestream;

    /// A pool a bridge works on, with the slots it holds.
    pub struct Rig {
        pub pool: Pool,
        pub held: Vec<bool>,
        pub count: u32,
        /// Per slot, bit 1: held by the sink under test.
        pub masks: Vec<u64>,
        /// The io's publication and release buffers.
        pub out: [Frame; crate::group::IO_BATCH],
        pub rel: [u32; crate::group::IO_BATCH],
    }

    impl Rig {
        pub fn new(slots: u32, payload: u32) -> Rig {
            let geometry = PoolGeometry {
                slot_count: slots,
                payload_capacity: payload,
                metadata_capacity: 16,
            };
            Rig {
                pool: Pool::create(3, "mcm-test-paced", geometry, HugePages::Off).unwrap(),
                held: vec![false; slots as usize],
                count: 0,
                masks: vec![0; slots as usize],
                out: [Frame::default(); crate::group::IO_BATCH],
                rel: [0; crate::group::IO_BATCH],
            }
        }

        /// A source's context for one poll.
        pub fn source_io(&mut self) -> SourceIo<'_> {
            let n = self.held.len() as u32;
            SourceIo::new(
                &mut self.pool,
                &mut self.held,
                &mut self.count,
                n,
                &mut self.out,
            )
        }

        /// A sink's context for one poll (the sink's bit is 1).
        pub fn sink_io(&mut self) -> SinkIo<'_> {
            SinkIo::new(&self.pool, &mut self.masks, 1, &mut self.rel)
        }

        /// A slot holding `data`, offered to a sink bridge as the group would.
        pub fn frame(&mut self, data: &[u8]) -> Frame {
            let slot = self.pool.alloc().unwrap();
            self.pool.payload_mut(slot).unwrap()[..data.len()].copy_from_slice(data);
            self.masks[slot as usize] |= 1;
            Frame {
                slot,
                payload_len: data.len() as u32,
                metadata_len: 0,
                timestamp_ns: 0,
                seq: 0,
            }
        }
    }

    /// A loopback socket pair: a tx socket and the rx socket it sends to.
    pub fn sockets() -> (UdpTx, UdpRx) {
        let opts = SocketOptions::default();
        let at = RxAddr {
            addr: Ipv4Addr::LOCALHOST,
            port: 0,
            source: None,
        };
        let rx = UdpRx::open(at, &opts).unwrap();
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let tx = UdpTx::open(local, rx.local().unwrap(), &opts).unwrap();
        (tx, rx)
    }

    /// An RTP packet of payload type 98 carrying `payload`.
    pub fn rtp_packet(seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let header = rtp::Header {
            marker,
            payload_type: 98,
            sequence_number: seq,
            timestamp,
            ssrc: 5,
        };
        let mut p = header.to_bytes().to_vec();
        p.extend_from_slice(payload);
        p
    }

    /// An [`RtpRx`] for payload type 98 and a socket that sends to it.
    pub fn rtp_pair() -> (std::net::UdpSocket, RtpRx) {
        let (_, rx) = sockets();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(rx.local().unwrap()).unwrap();
        (s, RtpRx::new(rx, 98, None))
    }

    /// Polls `bridge` until `want` frames were published or 2 s passed; returns their bytes.
    pub fn published(rig: &mut Rig, bridge: &mut dyn Source, want: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.len() < want && Instant::now() < deadline {
            let frames = {
                let mut io = rig.source_io();
                bridge.poll(Instant::now(), 64, &mut io).unwrap();
                io.published().to_vec()
            };
            for f in frames {
                let p = rig.pool.payload(f.slot).unwrap();
                out.push(p[..f.payload_len as usize].to_vec());
                rig.pool.free(f.slot).unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        out
    }

    const START_NS: u64 = 1_000_000_000_123;

    fn stream() -> Stream {
        Stream {
            payload_type: 98,
            ssrc: 5,
            rate: FrameRate::from_fps(10.0).unwrap(),
            height: 1080,
            sender: SenderType::Narrow,
        }
    }

    #[test]
    fn a_frame_is_spread_over_its_period_never_faster_than_cmax() {
        let mut rig = Rig::new(4, 200_000);
        let (udp, mut rx) = sockets();
        let now = Arc::new(AtomicU64::new(START_NS));
        let counters = Arc::new(EdgeCounters::default());
        let format = Codestream::new(1448).unwrap();
        let mut tx = PacedTx::new(
            "t".into(),
            udp,
            format,
            stream(),
            counters.clone(),
            Clock::Manual(now.clone()),
        );
        // 100 packets at 10 fps: TRS = 100 ms · 1080/1125 / 100 = 0.96 ms, CMAX 4, no lead.
        let data: Vec<u8> = (0..100 * 1444).map(|i| (i % 251) as u8).collect();
        let frame = rig.frame(&data);
        assert!(tx.offer(frame));
        let timing = PacedTx::<Codestream>::timing(&stream(), 100);
        let n = timing.next_frame_after(START_NS);
        let tvd = timing.frame_epoch(n);
        assert_eq!(timing.cmax(), 4);
        let mut got = Vec::new();
        let mut released = false;
        let mut t = START_NS;
        // 100 us steps through the frame period and a bit more (bounded).
        for _ in 0..2_500 {
            now.store(t, Ordering::Relaxed);
            let mut io = rig.sink_io();
            let sent = tx.poll(Instant::now(), 1000, &mut io).unwrap();
            released |= io.released().contains(&frame.slot);
            assert!(sent <= 4, "a burst of {sent} packets");
            if sent > 0 {
                assert!(t >= tvd, "a packet before the frame's TVD");
            }
            rx.recv(usize::MAX, Instant::now(), &mut |d, _| got.push(d.to_vec()));
            if t < tvd + 48_000_000 {
                assert!(got.len() <= 51, "{} packets by TVD + 48 ms", got.len());
            }
            t += 100_000;
        }
        assert_eq!(got.len(), 100);
        assert!(released, "the slot goes back when the frame is sent");
        let mut codestream = Vec::new();
        for (i, d) in got.iter().enumerate() {
            let p = rtp::Packet::new_checked(&d[..]).unwrap();
            assert_eq!(p.timestamp(), timing.rtp_timestamp(n));
            assert_eq!(p.marker(), i == 99);
            assert_eq!(p.payload_type(), 98);
            codestream.extend_from_slice(&p.payload()[4..]);
        }
        assert!(codestream == data);
        assert_eq!(EdgeCounters::get(&counters.frames), 1);
        assert_eq!(EdgeCounters::get(&counters.packets), 100);
    }

    #[test]
    fn a_refused_frame_is_counted_released_and_not_sent() {
        let mut rig = Rig::new(4, 1000);
        let (udp, mut rx) = sockets();
        let now = Arc::new(AtomicU64::new(START_NS));
        let counters = Arc::new(EdgeCounters::default());
        let format = Codestream::new(1448).unwrap();
        let mut tx = PacedTx::new(
            "t".into(),
            udp,
            format,
            stream(),
            counters.clone(),
            Clock::Manual(now.clone()),
        );
        let empty = rig.frame(&[]);
        let one = rig.frame(&[9; 10]);
        assert!(tx.offer(empty) && tx.offer(one));
        let mut io = rig.sink_io();
        assert_eq!(tx.poll(Instant::now(), 100, &mut io).unwrap(), 0);
        assert_eq!(io.released(), &[empty.slot]);
        assert_eq!(EdgeCounters::get(&counters.frames_refused), 1);
        // The next frame starts on the next poll and goes at its TVD.
        let mut got = 0;
        for i in 0..3 {
            if i > 0 {
                now.store(START_NS + 200_000_000, Ordering::Relaxed);
            }
            let mut io = rig.sink_io();
            tx.poll(Instant::now(), 100, &mut io).unwrap();
            rx.recv(usize::MAX, Instant::now(), &mut |_, _| got += 1);
        }
        assert_eq!(got, 1);
        assert_eq!(EdgeCounters::get(&counters.frames), 1);
    }

    /// The shared receive loop tells a duplicate from a late packet, hands late ones on only
    /// when asked and duplicates never, and filters on payload length.
    #[test]
    fn the_receive_loop_counts_duplicates_apart_from_late_packets() {
        for late_too in [false, true] {
            let (s, rx) = rtp_pair();
            let mut rx = rx.with_payload_len(4);
            if late_too {
                rx = rx.delivering_late();
            }
            for seq in [0u16, 1, 1, 3, 2] {
                s.send(&rtp_packet(seq, 0, false, &[seq as u8; 4])).unwrap();
            }
            s.send(&rtp_packet(4, 0, false, &[0; 5])).unwrap(); // wrong length
            let mut got = Vec::new();
            for _ in 0..200 {
                rx.recv(Instant::now(), 64, |p, _| {
                    got.push(p.sequence_number());
                    true
                });
                if rx.counts().malformed == 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let c = rx.counts();
            assert_eq!(
                (c.packets, c.lost, c.reordered, c.duplicates, c.malformed),
                (5, 1, 1, 1, 1),
                "{c:?}"
            );
            let want: &[u16] = if late_too { &[0, 1, 3, 2] } else { &[0, 1, 3] };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn logging_is_limited_to_once_a_second() {
        let mut l = LogLimit::default();
        assert!(l.allow(5));
        assert!(!l.allow(6));
        assert!(!l.allow(999_999_999));
        assert!(l.allow(1_000_000_005));
        assert!(!l.allow(1_000_000_006));
    }

    #[test]
    fn lead_is_kept_only_where_packet_slots_are_short() {
        let rate = FrameRate::from_fps(50.0).unwrap();
        let stream = |n| {
            PacedTx::<Never>::timing(
                &Stream {
                    payload_type: 96,
                    ssrc: 1,
                    rate,
                    height: 1080,
                    sender: SenderType::Narrow,
                },
                n,
            )
        };
        // 4000 packets at 50 fps: TRS ~ 4.8 us, so two slots of lead.
        assert!(PacedTx::<Never>::pacer(stream(4000)).lead_ns() > 0);
        // One packet per frame: no lead, it leaves at TVD.
        assert_eq!(PacedTx::<Never>::pacer(stream(1)).lead_ns(), 0);
    }

    /// A format that is never used to send (for the associated functions above).
    struct Never;

    impl Packetize for Never {
        type Error = &'static str;
        fn begin(&mut self, _: &[u8]) -> Result<u32, Self::Error> {
            Err("never")
        }
        fn packet(&self, _: u32, _: u32, _: &mut [u8]) -> (usize, Range<usize>) {
            (0, 0..0)
        }
    }
}
