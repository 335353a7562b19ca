//! SMPTE ST 2110-21 sender timing: the packet read schedule, a pacer that follows it, and a
//! receiver-side grader that classifies each frame as narrow, wide or failing.
//!
//! Everything here is pure and clock-injected: every function takes the time as an argument
//! (TAI nanoseconds since the 1970 epoch, `u64`), so tests drive time and nothing reads a clock.
//!
//! # The model, in the standard's names
//!
//! - TFRAME: the frame period (the *field* period when interlaced, see [`Timing::new`]).
//! - NPACKETS: packets per frame (per field when interlaced).
//! - RACTIVE: the active fraction of the frame, 1080/1125 for gapped senders, 1 for linear ones.
//! - TRS = TFRAME · RACTIVE / NPACKETS: the spacing of the packet read schedule.
//! - TROFFSET: the default offset (TRO_DEFAULT) of the first read after the frame's start.
//! - TVD (video transmission datum) of frame N = N · TFRAME + TROFFSET, N counted from the epoch.
//! - TPR_j = TVD + j · TRS: the read time of packet j.
//! - Network compatibility model: a leaky bucket drained once every TDRAIN = TFRAME /
//!   (β · NPACKETS), β = 1.1; its occupancy Cinst may not exceed CMAX. (β exceeds 1/RACTIVE of
//!   every gapped format, so a sender paced at TRS never accumulates; EBU LIST drains the same
//!   way, MTL's checker at β / TRS, slightly faster for gapped senders.)
//! - Virtual receiver buffer (VRX): packets arrive, and packet j is read out at TPR_j; the level
//!   may neither underflow nor exceed VRX_FULL.
//!
//! [`Timing`] holds these numbers for one stream, [`Pacer`] turns them into send budgets for a
//! transmit lcore, and [`Grader`] measures Cinst, VRX and the offsets of received frames the way
//! EBU LIST and Intel's Media Transport Library (MTL) report them.
//!
//! # Rounding
//!
//! Every schedule is computed from exact rationals and floored once to whole nanoseconds, so
//! nothing drifts: `frame_start_ns(n) = floor(n · TFRAME)`, `troffset_ns = floor(TROFFSET)`,
//! `frame_epoch(n) = frame_start_ns(n) + troffset_ns` and `packet_time(n, j) = frame_epoch(n) +
//! floor(j · TRS)`. The frame-relative part, `floor(j · TRS)`, is exact for every `j`, so a frame's
//! schedule is the same in every frame; the epoch may differ from `floor(n·TFRAME + TROFFSET)` by
//! at most 1 ns. Times that would not fit a `u64` saturate at `u64::MAX`.

mod grader;
mod pacer;
#[cfg(test)]
mod tests;

pub use grader::{Compliance, FrameGrade, GradeSummary, Grader, Violation};
pub use pacer::{Budget, Pacer, PacerStats};

use std::fmt;

use super::FrameRate;

/// Largest `packets_per_frame` [`Timing::new`] takes; larger values are clamped to it.
pub const MAX_PACKETS: u32 = 1 << 24;

/// Smallest RTP offset (in 90 kHz ticks) of a compliant frame: the RTP timestamp may precede the
/// frame's epoch by one tick (rounding at the sender).
pub const RTP_OFFSET_MIN: i64 = -1;

const NS_PER_S: u128 = 1_000_000_000;

/// ST 2110-21 sender type, signalled in SDP as `TP=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderType {
    /// Narrow gapped sender, `2110TPN`: packets follow the gapped read schedule closely.
    Narrow,
    /// Narrow linear sender, `2110TPNL`: packets spread over the whole frame (RACTIVE = 1).
    NarrowLinear,
    /// Wide sender, `2110TPW`: bursts allowed up to the wide CMAX and VRX_FULL.
    Wide,
}

impl SenderType {
    /// Every sender type with its SDP spelling.
    pub const ALL: [(&'static str, SenderType); 3] = [
        ("2110TPN", Self::Narrow),
        ("2110TPNL", Self::NarrowLinear),
        ("2110TPW", Self::Wide),
    ];

    /// The SDP spelling, e.g. `"2110TPN"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Narrow => "2110TPN",
            Self::NarrowLinear => "2110TPNL",
            Self::Wide => "2110TPW",
        }
    }

    /// Parses the SDP spelling (exact match).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// Whether this sender follows the linear read schedule (RACTIVE = 1).
    pub const fn is_linear(self) -> bool {
        matches!(self, Self::NarrowLinear)
    }
}

impl fmt::Display for SenderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact non-negative rational `num / den` (`den > 0`), reduced. Arithmetic saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ratio {
    num: u128,
    den: u128,
}

impl Ratio {
    fn new(num: u128, den: u128) -> Self {
        debug_assert!(den > 0);
        let g = gcd(num, den).max(1);
        Self {
            num: num / g,
            den: den / g,
        }
    }

    fn inv(self) -> Self {
        Self {
            num: self.den,
            den: self.num.max(1),
        }
    }

    /// `floor(k · self)`, `u128::MAX` when it does not fit.
    fn floor_mul(self, k: u128) -> u128 {
        let (q, r) = (self.num / self.den, self.num % self.den);
        match (k.checked_mul(q), k.checked_mul(r)) {
            (Some(whole), Some(part)) => whole.saturating_add(part / self.den),
            _ => u128::MAX,
        }
    }

    /// `ceil(k · self)`, `u128::MAX` when it does not fit.
    fn ceil_mul(self, k: u128) -> u128 {
        let (q, r) = (self.num / self.den, self.num % self.den);
        match (k.checked_mul(q), k.checked_mul(r)) {
            (Some(whole), Some(part)) => whole.saturating_add(part.div_ceil(self.den)),
            _ => u128::MAX,
        }
    }

    /// `floor(k · self) mod 2^32`, exact for every `k` (needs `den < 2^64`).
    fn floor_mul_mod32(self, k: u64) -> u32 {
        let (q, r) = (self.num / self.den, self.num % self.den);
        let k = u128::from(k);
        let part = k.checked_mul(r).map_or(0, |p| p / self.den);
        k.wrapping_mul(q).wrapping_add(part) as u32
    }

    fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

const fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `x` as a `u64`, saturating.
fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// `x` as a `u32`, saturating.
fn sat32(x: u128) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The ST 2110-21 timing of one video stream: TFRAME, RACTIVE, TRS, TROFFSET, CMAX and VRX_FULL,
/// and the schedule they define. Cheap to copy; every method is pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    rate: FrameRate,
    height: u32,
    interlaced: bool,
    packets: u32,
    sender: SenderType,
    ractive: (u32, u32),
    troffset_fraction: (u32, u32),
    /// TFRAME in ns.
    period: Ratio,
    /// TRS in ns.
    trs: Ratio,
    /// TROFFSET in ns.
    troffset: Ratio,
    /// TDRAIN in ns.
    tdrain: Ratio,
    /// 90 kHz RTP ticks per TFRAME.
    rtp_ticks: Ratio,
    troffset_ns: u64,
    cmax_narrow: u32,
    cmax_wide: u32,
    vrx_full_narrow: u32,
    vrx_full_wide: u32,
    rtp_offset_max: i64,
}

impl Timing {
    /// The timing of a stream of `rate` (the SDP `exactframerate`, frames per second) with
    /// `height` active lines, `packets_per_frame` packets per frame, sent by a `sender`.
    ///
    /// When `interlaced`, the unit of every schedule here is the *field*, as in the standard's
    /// interlaced read schedule (and in MTL and EBU LIST): TFRAME is the field period (half the
    /// frame period of `rate`), frame numbers `n` count fields (even `n` = first field), and
    /// `packets_per_frame` counts one field's packets.
    ///
    /// `packets_per_frame` is clamped to `1..=`[`MAX_PACKETS`].
    ///
    /// RACTIVE (ST 2110-21 gapped read schedules; 1 for [`SenderType::NarrowLinear`]):
    /// progressive 1080/1125 for 1080 lines or more and 720/750 below (the same ratio, 0.96);
    /// interlaced 487/525 below 576 lines, 576/625 below 1080, 1080/1125 from 1080.
    ///
    /// TROFFSET = TRO_DEFAULT, as a fraction of the frame period: progressive 43/1125 for 1080
    /// lines or more (1080p, 2160p, 4320p), 28/750 below (720p); interlaced 22/1125 (1080i),
    /// 26/625 (576i), 20/525 (480i) of the *frame* period, i.e. twice that of the field period.
    /// Linear senders use the same TROFFSET.
    pub fn new(
        rate: FrameRate,
        height: u32,
        interlaced: bool,
        packets_per_frame: u32,
        sender: SenderType,
    ) -> Timing {
        let packets = packets_per_frame.clamp(1, MAX_PACKETS);
        let n = u128::from(packets);
        let fields = if interlaced { 2 } else { 1 };
        let period = Ratio::new(
            u128::from(rate.den()) * NS_PER_S,
            u128::from(rate.num()) * fields,
        );
        let ractive = ractive(height, interlaced, sender);
        let troffset_fraction = troffset_fraction(height, interlaced);
        let (rn, rd) = (u128::from(ractive.0), u128::from(ractive.1));
        let (ta, tb) = (
            u128::from(troffset_fraction.0),
            u128::from(troffset_fraction.1),
        );
        let trs = Ratio::new(period.num * rn, period.den * rd * n);
        let troffset = Ratio::new(period.num * ta, period.den * tb);
        let tdrain = Ratio::new(period.num * 10, period.den * 11 * n);
        let rtp_ticks = Ratio::new(period.num * 90_000, period.den * NS_PER_S);
        let tro_ticks = Ratio::new(rtp_ticks.num * ta, rtp_ticks.den * tb);
        // NPACKETS / (k · TFRAME[s]) = NPACKETS · period.den · 1e9 / (k · period.num).
        let per_second = |k: u128, extra_num: u128, extra_den: u128| {
            sat32(
                Ratio::new(
                    n * period.den * NS_PER_S * extra_num,
                    k * period.num * extra_den,
                )
                .floor_mul(1),
            )
        };
        Timing {
            rate,
            height,
            interlaced,
            packets,
            sender,
            ractive,
            troffset_fraction,
            period,
            trs,
            troffset,
            tdrain,
            rtp_ticks,
            troffset_ns: sat(troffset.floor_mul(1)),
            cmax_narrow: per_second(43_200, rd, rn).max(4),
            cmax_wide: per_second(21_600, 1, 1).max(16),
            vrx_full_narrow: per_second(27_000, 1, 1).max(8),
            vrx_full_wide: per_second(300, 1, 1).max(720),
            rtp_offset_max: i64::try_from(tro_ticks.ceil_mul(1)).unwrap_or(i64::MAX - 1) + 1,
        }
    }

    /// The frame rate this timing was built from.
    pub const fn rate(&self) -> FrameRate {
        self.rate
    }

    /// Active lines of the frame.
    pub const fn height(&self) -> u32 {
        self.height
    }

    /// Whether the schedule counts fields (see [`Timing::new`]).
    pub const fn interlaced(&self) -> bool {
        self.interlaced
    }

    /// NPACKETS: packets per frame (per field when interlaced), after clamping.
    pub const fn packets(&self) -> u32 {
        self.packets
    }

    /// The sender type.
    pub const fn sender(&self) -> SenderType {
        self.sender
    }

    /// RACTIVE as `(numerator, denominator)`, e.g. `(1080, 1125)`.
    pub const fn ractive(&self) -> (u32, u32) {
        self.ractive
    }

    /// TROFFSET / TFRAME as `(numerator, denominator)`, e.g. `(43, 1125)`.
    pub const fn troffset_fraction(&self) -> (u32, u32) {
        self.troffset_fraction
    }

    /// TFRAME in nanoseconds (informative; schedules use the exact rational).
    pub fn tframe_ns(&self) -> f64 {
        self.period.to_f64()
    }

    /// TRS = TFRAME · RACTIVE / NPACKETS in nanoseconds (informative; see [`Self::packet_offset_ns`]).
    pub fn trs_ns(&self) -> f64 {
        self.trs.to_f64()
    }

    /// TDRAIN = TFRAME / (β · NPACKETS), β = 1.1, in nanoseconds (informative).
    pub fn tdrain_ns(&self) -> f64 {
        self.tdrain.to_f64()
    }

    /// TROFFSET in whole nanoseconds, `floor(TRO_DEFAULT)`.
    pub const fn troffset_ns(&self) -> u64 {
        self.troffset_ns
    }

    /// `floor(j · TRS)`: the offset of packet `j`'s read time from its frame's TVD. Exact.
    pub fn packet_offset_ns(&self, j: u64) -> u64 {
        sat(self.trs.floor_mul(u128::from(j)))
    }

    /// CMAX of this timing's sender type.
    pub const fn cmax(&self) -> u32 {
        match self.sender {
            SenderType::Narrow | SenderType::NarrowLinear => self.cmax_narrow,
            SenderType::Wide => self.cmax_wide,
        }
    }

    /// Narrow CMAX = max(4, floor(NPACKETS / (43200 · RACTIVE · TFRAME))), TFRAME in seconds.
    pub const fn cmax_narrow(&self) -> u32 {
        self.cmax_narrow
    }

    /// Wide CMAX = max(16, floor(NPACKETS / (21600 · TFRAME))), TFRAME in seconds.
    pub const fn cmax_wide(&self) -> u32 {
        self.cmax_wide
    }

    /// VRX_FULL of this timing's sender type.
    pub const fn vrx_full(&self) -> u32 {
        match self.sender {
            SenderType::Narrow | SenderType::NarrowLinear => self.vrx_full_narrow,
            SenderType::Wide => self.vrx_full_wide,
        }
    }

    /// Narrow VRX_FULL = max(8, floor(NPACKETS / (27000 · TFRAME))), TFRAME in seconds; the
    /// minimum of 8 is the standard's value for 1500-byte packets.
    pub const fn vrx_full_narrow(&self) -> u32 {
        self.vrx_full_narrow
    }

    /// Wide VRX_FULL = max(720, floor(NPACKETS / (300 · TFRAME))), TFRAME in seconds; the
    /// minimum of 720 is the standard's value for 1500-byte packets.
    pub const fn vrx_full_wide(&self) -> u32 {
        self.vrx_full_wide
    }

    /// Largest RTP offset (in 90 kHz ticks) of a compliant frame: `ceil(TROFFSET · 90000) + 1`,
    /// since a sender may stamp the time it sends rather than the sampling instant. The smallest
    /// is [`RTP_OFFSET_MIN`].
    pub const fn rtp_offset_max(&self) -> i64 {
        self.rtp_offset_max
    }

    /// Start of frame period `n`, `floor(n · TFRAME)` ns since the epoch.
    pub fn frame_start_ns(&self, n: u64) -> u64 {
        sat(self.period.floor_mul(u128::from(n)))
    }

    /// TVD of frame `n`: `frame_start_ns(n) + floor(TROFFSET)`, the read time of its first packet.
    pub fn frame_epoch(&self, n: u64) -> u64 {
        self.frame_start_ns(n).saturating_add(self.troffset_ns)
    }

    /// TPR_j of frame `n`: `frame_epoch(n) + floor(j · TRS)`. `j` may exceed NPACKETS (the
    /// schedule continues at TRS), which the grader uses to measure late packets.
    pub fn packet_time(&self, n: u64, j: u64) -> u64 {
        self.frame_epoch(n).saturating_add(self.packet_offset_ns(j))
    }

    /// How many read times TPR_j (j = 0, 1, ..., not capped at NPACKETS) of frame `n` are at or
    /// before `now_ns`: the packets the virtual receiver has read out by then.
    pub fn packets_due(&self, n: u64, now_ns: u64) -> u64 {
        let tvd = self.frame_epoch(n);
        if now_ns < tvd {
            return 0;
        }
        // floor(j · TRS) <= d  <=>  j · TRS < d + 1  <=>  j < (d + 1) / TRS.
        let d = u128::from(now_ns - tvd) + 1;
        sat(self.trs.inv().ceil_mul(d))
    }

    /// Index of the frame period containing `now_ns`: `floor(now / TFRAME)`.
    pub fn frame_at(&self, now_ns: u64) -> u64 {
        sat(self.period.inv().floor_mul(u128::from(now_ns)))
    }

    /// The first frame whose TVD is not before `now_ns`: the earliest frame a sender starting
    /// at `now_ns` can send entirely on schedule.
    pub fn next_frame_after(&self, now_ns: u64) -> u64 {
        let n = self.frame_at(now_ns);
        if self.frame_epoch(n) >= now_ns {
            n
        } else {
            n.saturating_add(1)
        }
    }

    /// RTP timestamp of frame `n` (ST 2110-10): `floor(n · TFRAME · 90000) mod 2^32`, the
    /// sampling instant of the frame's start, not shifted by TROFFSET.
    pub fn rtp_timestamp(&self, n: u64) -> u32 {
        self.rtp_ticks.floor_mul_mod32(n)
    }
}

/// RACTIVE for a sender (see [`Timing::new`]).
fn ractive(height: u32, interlaced: bool, sender: SenderType) -> (u32, u32) {
    match (sender.is_linear(), interlaced, height) {
        (true, _, _) => (1, 1),
        (false, false, h) if h >= 1080 => (1080, 1125),
        (false, false, _) => (720, 750),
        (false, true, h) if h < 576 => (487, 525),
        (false, true, h) if h < 1080 => (576, 625),
        (false, true, _) => (1080, 1125),
    }
}

/// TRO_DEFAULT / TFRAME, TFRAME being the field period when interlaced (see [`Timing::new`]).
fn troffset_fraction(height: u32, interlaced: bool) -> (u32, u32) {
    match (interlaced, height) {
        (false, h) if h >= 1080 => (43, 1125),
        (false, _) => (28, 750),
        (true, h) if h < 576 => (2 * 20, 525),
        (true, h) if h < 1080 => (2 * 26, 625),
        (true, _) => (2 * 22, 1125),
    }
}

/// The network compatibility model of ST 2110-21: a leaky bucket that packets enter on arrival
/// and that drains one packet at each drain slot `t0 + m · TDRAIN`, m = 1, 2, ..., `t0` being the
/// first arrival. A slot that finds the bucket empty is lost (no credit accumulates).
///
/// Cinst is reported as the bucket's level right after an arrival minus one: the packets queued
/// behind the one being drained, as EBU LIST and MTL report it, so a stream paced at TRS reads 0
/// and a burst of `b` packets into an empty bucket reads `b - 1`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// TDRAIN in ns.
    tdrain: Ratio,
    /// First arrival; `None` until then.
    t0: Option<u64>,
    /// Time of the last update (monotonic).
    last: u64,
    /// Drain slots in `(t0, last]`.
    slots: u128,
    /// Packets in the bucket at `last`.
    level: u64,
}

impl Bucket {
    fn new(timing: &Timing) -> Self {
        Self {
            tdrain: timing.tdrain,
            t0: None,
            last: 0,
            slots: 0,
            level: 0,
        }
    }

    /// Drain slots in `(t0, t]`.
    fn slots_at(&self, t0: u64, t: u64) -> u128 {
        self.tdrain
            .inv()
            .floor_mul(u128::from(t.saturating_sub(t0)))
    }

    /// The level at `t >= last`, without changing the bucket.
    fn level_at(&self, t: u64) -> u64 {
        match self.t0 {
            None => 0,
            Some(t0) => {
                let drained = self.slots_at(t0, t.max(self.last)) - self.slots;
                self.level.saturating_sub(sat(drained))
            }
        }
    }

    /// Adds `k` packets arriving at `t` (clamped to be monotonic) and returns Cinst after them.
    fn arrive(&mut self, t: u64, k: u64) -> u64 {
        let t = t.max(self.last);
        let t0 = *self.t0.get_or_insert(t);
        self.level = self.level_at(t).saturating_add(k);
        self.slots = self.slots_at(t0, t);
        self.last = t;
        self.level.saturating_sub(1)
    }

    /// How many packets may arrive at `t` keeping Cinst <= `cmax`, at most `cmax`.
    fn room(&self, t: u64, cmax: u32) -> u64 {
        let cmax = u64::from(cmax);
        (cmax + 1).saturating_sub(self.level_at(t)).min(cmax)
    }

    /// The earliest time at which [`Bucket::room`] is at least `want` (1 ..= `cmax`).
    fn free_at(&self, cmax: u32, want: u32) -> u64 {
        let keep = (u64::from(cmax) + 1).saturating_sub(u64::from(want.max(1)));
        let (Some(t0), Some(excess)) = (self.t0, self.level.checked_sub(keep)) else {
            return self.last;
        };
        if excess == 0 {
            return self.last;
        }
        let slot = self.slots.saturating_add(u128::from(excess));
        t0.saturating_add(sat(self.tdrain.ceil_mul(slot)))
    }
}

/// Reads fuzz input: bytes, or zeros once the input is exhausted.
struct FuzzInput<'a>(&'a [u8]);

impl FuzzInput<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A timing: a common format for most inputs, arbitrary parameters for the rest.
    fn timing(&mut self) -> Timing {
        const RATES: [(u32, u32); 6] = [
            (60000, 1001),
            (50, 1),
            (30000, 1001),
            (25, 1),
            (24, 1),
            (120, 1),
        ];
        let sel = self.u8();
        let (num, den) = RATES[usize::from(sel >> 1) % RATES.len()];
        let rate = if sel & 1 == 0 {
            FrameRate::new(num, den)
        } else {
            FrameRate::new(self.u32().max(1), self.u32().max(1))
        };
        let rate = rate.unwrap_or(FrameRate::new(50, 1).expect("50 is a frame rate"));
        let height = u32::from(u16::from_le_bytes(self.bytes()));
        let flags = self.u8();
        let sender = SenderType::ALL[usize::from(flags >> 1) % 3].1;
        let packets = u32::from(u16::from_le_bytes(self.bytes()));
        // Mostly small frames, so that the pacer's inputs reach frame ends.
        let packets = if flags & 0x40 == 0 {
            packets % 64
        } else {
            packets
        };
        Timing::new(rate, height, flags & 1 == 1, packets, sender)
    }
}

/// Fuzz entry point: builds a [`Timing`] from the first bytes, feeds arbitrary `(arrival,
/// timestamp, marker)` triples to a [`Grader`] and arbitrary poll times to a [`Pacer`], and
/// asserts the invariants: no batch exceeds CMAX, every frame's packets are either sent or
/// counted as skipped, a deadline is accurate, grades agree with their own numbers, and the
/// pacer's output, graded, never exceeds CMAX.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let mut input = FuzzInput(data);
    let timing = input.timing();
    fuzz_grader(&timing, &mut input);
    fuzz_pacer(&timing, &mut input);
}

fn fuzz_grader(timing: &Timing, input: &mut FuzzInput<'_>) {
    let mut grader = Grader::new(*timing);
    let mut t = input.u64();
    let mut graded = 0;
    for _ in 0..input.u8() {
        let step = input.u32();
        t = t.saturating_add(u64::from(step >> 1));
        let ts = input.u32();
        if let Some(g) = grader.on_packet(t, ts, step & 1 == 1) {
            check_grade(timing, &g);
            graded += 1;
        }
    }
    if let Some(g) = grader.finish() {
        check_grade(timing, &g);
        graded += 1;
    }
    let s = grader.summary();
    assert_eq!(s.frames, graded);
    assert_eq!(s.narrow + s.wide + s.failed, s.frames);
}

fn check_grade(timing: &Timing, g: &FrameGrade) {
    assert!(g.packets >= 1);
    assert!(g.vrx_min <= g.vrx_peak);
    let narrow = g.cinst_peak <= u64::from(timing.cmax_narrow())
        && g.vrx_peak <= i64::from(timing.vrx_full_narrow());
    match g.class {
        Compliance::Fail => assert!(g.violation.is_some()),
        Compliance::Narrow => assert!(g.violation.is_none() && narrow),
        Compliance::Wide => assert!(g.violation.is_none() && !narrow),
    }
}

fn fuzz_pacer(timing: &Timing, input: &mut FuzzInput<'_>) {
    let mut pacer = Pacer::with_lead(*timing, u32::from(input.u8() % 16));
    let mut grader = Grader::new(*timing);
    // TAI nanoseconds below 2^62 (the year 2116): nearer u64::MAX (2554) packet times saturate,
    // and "Wait implies a deadline after now" cannot hold.
    let mut now = (input.u64() >> (input.u8() % 64)) & ((1 << 62) - 1);
    let mut frame = timing
        .frame_at(now)
        .saturating_add(u64::from(input.u8() % 4));
    let mut in_frame = 0u32;
    let n = timing.packets();
    pacer.start_frame(frame);
    let mut must_progress = false;
    for _ in 0..4096 {
        if input.is_empty() {
            break;
        }
        let step = input.u8();
        if !must_progress {
            now = now.saturating_add(match step >> 6 {
                0 => u64::from(step & 63),
                1 => timing.packet_offset_ns(u64::from(step & 63)),
                2 => timing.frame_start_ns(u64::from(step & 3)),
                _ => pacer.next_deadline().unwrap_or(now).saturating_sub(now),
            });
        }
        let budget = pacer.due(now);
        assert!(!must_progress || matches!(budget, Budget::Send(_) | Budget::Skipped(_)));
        must_progress = false;
        match budget {
            Budget::Send(b) => {
                assert!(b >= 1 && b <= timing.cmax());
                let k = if step & 1 == 0 { b } else { b / 2 };
                pacer.sent(k);
                for _ in 0..k {
                    in_frame += 1;
                    let ts = timing.rtp_timestamp(frame);
                    if let Some(g) = grader.on_packet(now, ts, in_frame == n) {
                        assert!(g.cinst_peak <= u64::from(timing.cmax()));
                    }
                }
            }
            Budget::Wait => {
                let deadline = pacer
                    .next_deadline()
                    .expect("a frame in progress has a deadline");
                assert!(deadline > now);
                now = deadline;
                must_progress = true;
            }
            Budget::Done => {
                assert_eq!(in_frame, n);
                pacer.frame_done();
            }
            Budget::Skipped(skipped) => assert_eq!(in_frame + skipped, n),
            Budget::Idle => {
                frame = frame.saturating_add(1).max(timing.next_frame_after(now));
                in_frame = 0;
                pacer.start_frame(frame);
            }
        }
    }
    if let Some(g) = grader.finish() {
        assert!(g.cinst_peak <= u64::from(timing.cmax()));
    }
    let s = pacer.stats();
    assert!(s.packets_late <= s.packets_sent);
    assert!(grader.summary().cinst_peak <= u64::from(timing.cmax()));
}
