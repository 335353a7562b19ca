//! The receive side: per-frame ST 2110-21 compliance from arrival times.

use super::{Bucket, RTP_OFFSET_MIN, Timing};

/// The class of a frame (or a sender) under ST 2110-21.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compliance {
    /// Within the narrow limits: Cinst <= narrow CMAX and VRX <= narrow VRX_FULL.
    Narrow,
    /// Within the wide limits but not the narrow ones.
    Wide,
    /// Outside the wide limits, or first packet or RTP timestamp out of range.
    Fail,
}

/// Why a frame failed, the first rule it broke in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// The first packet arrived later than TROFFSET after the frame's start.
    FirstPacketLate,
    /// The RTP timestamp is outside [`RTP_OFFSET_MIN`] ..= [`Timing::rtp_offset_max`] ticks of
    /// the frame's epoch.
    RtpOffset,
    /// A packet arrived after the read time of the packet after it: the VRX buffer underflowed.
    VrxUnderflow,
    /// The VRX buffer exceeded the wide VRX_FULL.
    VrxOverflow,
    /// Cinst exceeded the wide CMAX.
    CinstOverflow,
}

/// The grade of one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGrade {
    /// RTP timestamp the frame's packets carried.
    pub rtp_timestamp: u32,
    /// Index `n` of the frame period its first packet arrived in.
    pub frame: u64,
    /// Packets received.
    pub packets: u32,
    /// First arrival minus the start of frame period `n` (`floor(n · TFRAME)`), in ns.
    pub first_packet_offset_ns: u64,
    /// RTP timestamp minus [`Timing::rtp_timestamp`]`(n)`, in 90 kHz ticks (modulo 2^32, signed).
    pub rtp_offset: i64,
    /// Highest VRX level at an arrival.
    pub vrx_peak: i64,
    /// Lowest VRX level at an arrival; negative means underflow.
    pub vrx_min: i64,
    /// Highest Cinst at an arrival.
    pub cinst_peak: u64,
    /// The class.
    pub class: Compliance,
    /// Why it failed, when [`Compliance::Fail`].
    pub violation: Option<Violation>,
}

/// Totals over the frames a [`Grader`] has graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GradeSummary {
    /// Frames graded.
    pub frames: u64,
    /// Narrow frames.
    pub narrow: u64,
    /// Wide frames.
    pub wide: u64,
    /// Failed frames.
    pub failed: u64,
    /// Packets of graded frames.
    pub packets: u64,
    /// Packets that carried the timestamp of the frame graded last (duplicates or stragglers),
    /// counted in the network model but graded in no frame.
    pub stray_packets: u64,
    /// Worst Cinst.
    pub cinst_peak: u64,
    /// Worst (highest) VRX level.
    pub vrx_peak: i64,
    /// Worst (lowest) VRX level.
    pub vrx_min: i64,
    /// Latest first packet, in ns after its frame's start.
    pub first_packet_offset_max_ns: u64,
    /// Lowest RTP offset in ticks.
    pub rtp_offset_min: i64,
    /// Highest RTP offset in ticks.
    pub rtp_offset_max: i64,
}

impl GradeSummary {
    /// The class of the whole stream so far: its worst frame's (`None` before the first frame).
    pub fn class(&self) -> Option<Compliance> {
        match self {
            s if s.frames == 0 => None,
            s if s.failed > 0 => Some(Compliance::Fail),
            s if s.wide > 0 => Some(Compliance::Wide),
            _ => Some(Compliance::Narrow),
        }
    }

    fn add(&mut self, g: &FrameGrade) {
        if self.frames == 0 {
            self.vrx_peak = g.vrx_peak;
            self.vrx_min = g.vrx_min;
            self.rtp_offset_min = g.rtp_offset;
            self.rtp_offset_max = g.rtp_offset;
        }
        self.frames += 1;
        match g.class {
            Compliance::Narrow => self.narrow += 1,
            Compliance::Wide => self.wide += 1,
            Compliance::Fail => self.failed += 1,
        }
        self.packets += u64::from(g.packets);
        self.cinst_peak = self.cinst_peak.max(g.cinst_peak);
        self.vrx_peak = self.vrx_peak.max(g.vrx_peak);
        self.vrx_min = self.vrx_min.min(g.vrx_min);
        self.first_packet_offset_max_ns = self
            .first_packet_offset_max_ns
            .max(g.first_packet_offset_ns);
        self.rtp_offset_min = self.rtp_offset_min.min(g.rtp_offset);
        self.rtp_offset_max = self.rtp_offset_max.max(g.rtp_offset);
    }
}

/// A frame being received.
#[derive(Debug, Clone, Copy)]
struct Open {
    ts: u32,
    frame: u64,
    first: u64,
    packets: u32,
    vrx_peak: i64,
    vrx_min: i64,
    cinst_peak: u64,
    /// Its marker packet arrived but another frame closed on the same call.
    complete: bool,
}

/// Grades a received stream against ST 2110-21, frame by frame, as MTL's and EBU LIST's
/// checkers do.
///
/// A frame is the run of packets carrying one RTP timestamp; it closes at its marker packet,
/// or when a packet with another timestamp arrives (lost marker). Its frame number `n` is the
/// frame period its first packet arrived in, its epoch `floor(n · TFRAME)` and its TVD
/// [`Timing::frame_epoch`]`(n)`; then:
///
/// - first packet offset = first arrival − epoch; it must not exceed TROFFSET;
/// - RTP offset = RTP timestamp − [`Timing::rtp_timestamp`]`(n)`, within
///   [`RTP_OFFSET_MIN`] ..= [`Timing::rtp_offset_max`];
/// - VRX at the arrival of the frame's k-th packet (k from 1) = k − the reads TPR_j <= arrival
///   (j = 0, 1, ... not capped at NPACKETS). Negative means the packet came after the next
///   packet's read time (underflow); the peak may not exceed VRX_FULL;
/// - Cinst: the network compatibility model (a leaky bucket drained every TDRAIN = TFRAME /
///   (β · NPACKETS) from the stream's first packet; see the module docs), across frames; the
///   peak may not exceed CMAX.
///
/// Narrow when within the narrow CMAX and VRX_FULL, wide when within the wide ones, else fail.
/// Arrival times are clamped to be monotonic. Nothing here allocates.
#[derive(Debug, Clone)]
pub struct Grader {
    timing: Timing,
    bucket: Bucket,
    last_arrival: u64,
    open: Option<Open>,
    last_closed_ts: Option<u32>,
    summary: GradeSummary,
}

impl Grader {
    /// A grader for a stream of this timing (its sender type picks RACTIVE and so TRS).
    pub fn new(timing: Timing) -> Grader {
        Grader {
            timing,
            bucket: Bucket::new(&timing),
            last_arrival: 0,
            open: None,
            last_closed_ts: None,
            summary: GradeSummary::default(),
        }
    }

    /// The timing graded against.
    pub const fn timing(&self) -> &Timing {
        &self.timing
    }

    /// One packet arrived at `arrival_ns` carrying `rtp_timestamp` and the `marker` bit. Returns
    /// the grade of the frame this packet closed: its own (marker) or the previous one
    /// (timestamp change). When a packet does both, the previous frame's grade is returned and
    /// its own follows on the next call or [`Grader::finish`].
    pub fn on_packet(
        &mut self,
        arrival_ns: u64,
        rtp_timestamp: u32,
        marker: bool,
    ) -> Option<FrameGrade> {
        let t = arrival_ns.max(self.last_arrival);
        self.last_arrival = t;
        let cinst = self.bucket.arrive(t, 1);
        let mut closed = match self.open {
            Some(o) if o.complete || o.ts != rtp_timestamp => self.close(),
            _ => None,
        };
        if self.open.is_none() && self.last_closed_ts == Some(rtp_timestamp) {
            self.summary.stray_packets += 1;
            return closed;
        }
        let open = self.open.get_or_insert(Open {
            ts: rtp_timestamp,
            frame: self.timing.frame_at(t),
            first: t,
            packets: 0,
            vrx_peak: i64::MIN,
            vrx_min: i64::MAX,
            cinst_peak: 0,
            complete: false,
        });
        open.packets = open.packets.saturating_add(1);
        let read = self.timing.packets_due(open.frame, t);
        let vrx = i64::from(open.packets).saturating_sub(i64::try_from(read).unwrap_or(i64::MAX));
        open.vrx_peak = open.vrx_peak.max(vrx);
        open.vrx_min = open.vrx_min.min(vrx);
        open.cinst_peak = open.cinst_peak.max(cinst);
        if marker {
            match closed {
                None => closed = self.close(),
                Some(_) => open.complete = true,
            }
        }
        closed
    }

    /// Closes and grades the frame in progress, if any (end of stream).
    pub fn finish(&mut self) -> Option<FrameGrade> {
        self.close()
    }

    /// Totals so far.
    pub const fn summary(&self) -> &GradeSummary {
        &self.summary
    }

    fn close(&mut self) -> Option<FrameGrade> {
        let o = self.open.take()?;
        let t = &self.timing;
        let rtp_offset = i64::from(o.ts.wrapping_sub(t.rtp_timestamp(o.frame)) as i32);
        let mut grade = FrameGrade {
            rtp_timestamp: o.ts,
            frame: o.frame,
            packets: o.packets,
            first_packet_offset_ns: o.first.saturating_sub(t.frame_start_ns(o.frame)),
            rtp_offset,
            vrx_peak: o.vrx_peak,
            vrx_min: o.vrx_min,
            cinst_peak: o.cinst_peak,
            class: Compliance::Fail,
            violation: None,
        };
        grade.violation = violation(t, &grade);
        let narrow = grade.cinst_peak <= u64::from(t.cmax_narrow())
            && grade.vrx_peak <= i64::from(t.vrx_full_narrow());
        grade.class = match (grade.violation, narrow) {
            (Some(_), _) => Compliance::Fail,
            (None, true) => Compliance::Narrow,
            (None, false) => Compliance::Wide,
        };
        self.summary.add(&grade);
        self.last_closed_ts = Some(o.ts);
        Some(grade)
    }
}

/// The first rule a frame breaks, if any.
fn violation(t: &Timing, g: &FrameGrade) -> Option<Violation> {
    if g.first_packet_offset_ns > t.troffset_ns() {
        Some(Violation::FirstPacketLate)
    } else if !(RTP_OFFSET_MIN..=t.rtp_offset_max()).contains(&g.rtp_offset) {
        Some(Violation::RtpOffset)
    } else if g.vrx_min < 0 {
        Some(Violation::VrxUnderflow)
    } else if g.vrx_peak > i64::from(t.vrx_full_wide()) {
        Some(Violation::VrxOverflow)
    } else if g.cinst_peak > u64::from(t.cmax_wide()) {
        Some(Violation::CinstOverflow)
    } else {
        None
    }
}
