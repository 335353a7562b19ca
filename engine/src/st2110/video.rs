//! ST 2110-20 video sessions: [`St20Tx`] sends a group's frames as RFC 4175 packets paced by
//! ST 2110-21 (the [`PacedTx`] sender with the [`Rfc4175Frames`] format); [`St20Rx`] receives a
//! stream into the group's pool slots.
//!
//! Tx reads each frame in place from its pool slot: every datagram is gathered by the kernel
//! from a header built on the stack and a slice of the slot. Only when the application's pixel
//! format is not the wire's does the frame go through a conversion buffer first (counted).
//! Rx writes each packet's pixel data straight into the slot of the frame in progress (or, when
//! converting, into the conversion buffer, converted into the slot when the frame is whole).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mcm_control::dataplane::{BridgeCounters, Role};
use mcm_proto::st2110::rfc4175::{Depacketizer, FrameReport, FrameSink, Packetizer};

use super::clock::Clock;
use super::convert::{self, PixelFormat};
use super::paced::{PacedTx, Packetize};
use super::udp::UdpRx;
use crate::group::bridge::FrameQueue;
use crate::group::{Bridge, BridgeIo, Frame};

/// The application's frames against the wire's, and the buffer a conversion goes through.
#[derive(Debug)]
pub struct Conversion {
    app: PixelFormat,
    width: u32,
    height: u32,
    /// The frame in wire format (RFC 4175).
    buffer: Vec<u8>,
    copied: Arc<AtomicU64>,
}

impl Conversion {
    /// A conversion between `app` frames and `wire_bytes`-byte RFC 4175 frames.
    pub fn new(
        app: PixelFormat,
        width: u32,
        height: u32,
        wire_bytes: usize,
        copied: Arc<AtomicU64>,
    ) -> Self {
        Self {
            app,
            width,
            height,
            buffer: vec![0; wire_bytes],
            copied,
        }
    }

    fn count(&self, counters: &BridgeCounters, bytes: usize) {
        BridgeCounters::add(&counters.bytes_converted, bytes as u64);
        // Relaxed: a statistic.
        self.copied.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The ST 2110-20 tx format: a frame's RFC 4175 packets (GPM), read from the slot, or from the
/// conversion buffer when the application's pixel format is not the wire's.
pub struct Rfc4175Frames {
    packetizer: Packetizer,
    conversion: Option<Conversion>,
    counters: Arc<BridgeCounters>,
}

impl Rfc4175Frames {
    /// Frames cut by `packetizer`, converted first when `conversion` is given (its copies
    /// counted in `counters`).
    pub fn new(
        packetizer: Packetizer,
        conversion: Option<Conversion>,
        counters: Arc<BridgeCounters>,
    ) -> Self {
        Self {
            packetizer,
            conversion,
            counters,
        }
    }
}

impl Packetize for Rfc4175Frames {
    type Error = convert::ConvertError;

    /// Converts the frame when needed (a frame too short to convert is refused); a frame in the
    /// wire format is sent as far as it goes (a short one ends early).
    fn begin(&mut self, frame: &[u8]) -> Result<u32, convert::ConvertError> {
        if let Some(c) = self.conversion.as_mut() {
            convert::to_rfc4175(c.app, c.width, c.height, frame, &mut c.buffer)?;
            let bytes = c.buffer.len();
            c.count(&self.counters, bytes);
        }
        Ok(self.packetizer.packets_per_frame())
    }

    fn source<'a>(&'a self, slot: &'a [u8]) -> &'a [u8] {
        self.conversion.as_ref().map_or(slot, |c| &c.buffer)
    }

    fn packet(&self, index: u32, seq: u32, out: &mut [u8]) -> (usize, Range<usize>) {
        let len = self.packetizer.headers(index, seq, out);
        (len, self.packetizer.data(index))
    }
}

/// An ST 2110-20 transmitter: a sink bridge of its group, the paced sender with the RFC 4175
/// format.
pub type St20Tx = PacedTx<Rfc4175Frames>;

/// The frame being received.
#[derive(Debug, Clone, Copy)]
struct Receiving {
    slot: u32,
    rtp_timestamp: u32,
}

/// Where received packets go: the group's pool through `io`.
struct Sink<'s, 'io, 'p> {
    io: &'s mut BridgeIo<'io>,
    current: &'s mut Option<Receiving>,
    conversion: &'s mut Option<Conversion>,
    counters: &'s BridgeCounters,
    frame_bytes: usize,
    app_bytes: u32,
    clock: &'p Clock,
    /// A zero-length buffer for a frame without a slot (its packets are counted, not kept).
    nowhere: [u8; 0],
}

impl FrameSink for Sink<'_, '_, '_> {
    fn begin(&mut self, rtp_timestamp: u32) -> bool {
        match self.io.alloc() {
            Some(slot) => {
                *self.current = Some(Receiving {
                    slot,
                    rtp_timestamp,
                });
                true
            }
            None => {
                BridgeCounters::add(&self.counters.frames_dropped, 1);
                false
            }
        }
    }

    fn buffer(&mut self) -> &mut [u8] {
        if let Some(c) = self.conversion.as_mut() {
            return &mut c.buffer;
        }
        match *self.current {
            Some(r) => match self.io.payload_mut(r.slot) {
                Some(p) => {
                    let n = self.frame_bytes.min(p.len());
                    &mut p[..n]
                }
                None => &mut self.nowhere,
            },
            None => &mut self.nowhere,
        }
    }

    fn end(&mut self, report: &FrameReport) {
        let Some(r) = self.current.take() else {
            return;
        };
        if !report.complete {
            BridgeCounters::add(&self.counters.frames_incomplete, 1);
            self.io.abandon(r.slot);
            return;
        }
        if let Some(c) = self.conversion.as_mut() {
            let Some(dst) = self.io.payload_mut(r.slot) else {
                return;
            };
            if convert::from_rfc4175(c.app, c.width, c.height, &c.buffer, dst).is_err() {
                self.io.abandon(r.slot);
                return;
            }
            let n = c.buffer.len();
            c.count(self.counters, n);
        }
        let frame = Frame {
            slot: r.slot,
            payload_len: self.app_bytes,
            timestamp_ns: self.clock.sampling_instant_ns(r.rtp_timestamp, 90_000),
            seq: 0,
        };
        if self.io.publish(frame) {
            BridgeCounters::add(&self.counters.frames, 1);
        } else {
            self.io.abandon(r.slot);
        }
    }
}

/// An ST 2110-20 receiver: the source bridge of its group.
pub struct St20Rx {
    name: String,
    udp: UdpRx,
    depacketizer: Depacketizer,
    current: Option<Receiving>,
    conversion: Option<Conversion>,
    counters: Arc<BridgeCounters>,
    frame_bytes: usize,
    app_bytes: u32,
    clock: Clock,
    /// Unicast: the only sender accepted.
    source_filter: Option<std::net::Ipv4Addr>,
    /// Datagrams from other senders or of another payload type, dropped.
    foreign: u64,
    /// The RTP payload type of the stream (`None`: any).
    payload_type: Option<u8>,
}

impl St20Rx {
    /// Accepts datagrams from `source` only (`None`: from anyone).
    pub fn with_source_filter(mut self, source: Option<std::net::Ipv4Addr>) -> Self {
        self.source_filter = source;
        self
    }

    /// A receiver of `depacketizer`'s format from `udp`; frames of `app_bytes` go to the group.
    pub fn new(
        name: String,
        udp: UdpRx,
        depacketizer: Depacketizer,
        conversion: Option<Conversion>,
        app_bytes: u32,
        counters: Arc<BridgeCounters>,
        clock: Clock,
    ) -> Self {
        let frame_bytes = depacketizer.format().frame_bytes();
        Self {
            name,
            udp,
            depacketizer,
            current: None,
            conversion,
            counters,
            frame_bytes,
            app_bytes,
            clock,
            source_filter: None,
            foreign: 0,
            payload_type: None,
        }
    }

    /// Accepts packets of payload type `pt` only.
    pub fn with_payload_type(mut self, pt: u8) -> Self {
        self.payload_type = Some(pt);
        self
    }

    fn publish_counters(&self) {
        let d = self.depacketizer.counters();
        let c = &self.counters;
        // Relaxed stores: statistics mirrored from the depacketizer (one writer).
        c.packets.store(d.packets, Ordering::Relaxed);
        c.bytes.store(self.udp.counters().bytes, Ordering::Relaxed);
        c.packets_lost.store(d.lost, Ordering::Relaxed);
        c.packets_reordered
            .store(d.reordered + d.late, Ordering::Relaxed);
        c.packets_malformed
            .store(d.malformed + self.foreign, Ordering::Relaxed);
    }
}

impl Bridge for St20Rx {
    fn name(&self) -> &str {
        &self.name
    }

    fn role(&self) -> Role {
        Role::Source
    }

    fn offer(&mut self, _frame: Frame) -> bool {
        false
    }

    fn poll(&mut self, _now: Instant, budget: u32, io: &mut BridgeIo<'_>) -> u32 {
        let Self {
            udp,
            depacketizer,
            current,
            conversion,
            counters,
            frame_bytes,
            app_bytes,
            clock,
            source_filter,
            payload_type,
            ..
        } = self;
        let filter = *source_filter;
        let pt = *payload_type;
        let mut foreign = 0u64;
        let mut sink = Sink {
            io,
            current,
            conversion,
            counters,
            frame_bytes: *frame_bytes,
            app_bytes: *app_bytes,
            clock,
            nowhere: [],
        };
        let mut work = 0;
        while work < budget {
            let n = udp.recv(|packet, meta| {
                // Byte 1 of an RTP header: marker bit and payload type.
                let wrong_pt = pt.is_some_and(|pt| packet.get(1).is_some_and(|b| b & 0x7f != pt));
                if filter.is_some_and(|f| *meta.source.ip() != f) || wrong_pt {
                    foreign += 1;
                    return;
                }
                // Malformed packets are counted by the depacketizer.
                let _ = depacketizer.push(packet, &mut sink);
            });
            if n == 0 {
                break;
            }
            work += n as u32;
        }
        self.foreign += foreign;
        self.publish_counters();
        work
    }

    fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.udp.fd())
    }
}

/// Queues a frame offered to a tx session; a full queue drops it and counts the drop.
pub(super) fn offer_counted(
    queue: &mut FrameQueue,
    frame: Frame,
    counters: &BridgeCounters,
) -> bool {
    let taken = queue.push(frame);
    if !taken {
        BridgeCounters::add(&counters.frames_dropped, 1);
    }
    taken
}
