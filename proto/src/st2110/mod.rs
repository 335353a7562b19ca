//! SMPTE ST 2110 wire formats, SDP and timing: pure code over byte slices, shared by the engine's
//! ST 2110 sessions and by `mcm-perf` (which grades streams it did not send).
//!
//! - [`rtp`]: the RTP header (RFC 3550), 32-bit sequence extension, RTP timestamps from TAI (ST 2110-10).
//! - [`rfc4175`]: ST 2110-20 uncompressed video: pgroups, packetizer (GPM and BPM), depacketizer.
//! - [`st30`]: ST 2110-30 PCM audio (L16, L24).
//! - [`rfc9134`]: ST 2110-22 compressed video (JPEG XS payload, passthrough).
//! - [`rfc8331`]: ST 2110-40 ancillary data (SMPTE ST 291 packets).
//! - [`sdp`]: session descriptions with the ST 2110 fmtp, parsed and written.
//! - [`st21`]: ST 2110-21 sender timing: the pacing schedule and a receiver-side compliance grader.
//!
//! Parsers follow smoltcp's pattern: `new_checked` validates lengths once, then typed accessors
//! read fields without panicking. Nothing here allocates per packet.

pub mod rfc4175;
pub mod rfc8331;
pub mod rfc9134;
pub mod rtp;
pub mod sdp;
pub mod st21;
pub mod st30;

use std::fmt;

/// Colour sampling of uncompressed video (SDP `sampling=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sampling {
    /// `YCbCr-4:2:2`
    YCbCr422,
    /// `YCbCr-4:2:0`
    YCbCr420,
    /// `YCbCr-4:4:4`
    YCbCr444,
    /// `RGB`
    Rgb,
}

impl Sampling {
    /// Every sampling with its SDP spelling.
    pub const ALL: [(&'static str, Sampling); 4] = [
        ("YCbCr-4:2:2", Self::YCbCr422),
        ("YCbCr-4:2:0", Self::YCbCr420),
        ("YCbCr-4:4:4", Self::YCbCr444),
        ("RGB", Self::Rgb),
    ];

    /// The SDP spelling, e.g. `"YCbCr-4:2:2"`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    /// Parses the SDP spelling (exact match).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bits per component of uncompressed video (SDP `depth=`). `16f` (half float) is not carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// 8 bits.
    D8,
    /// 10 bits.
    D10,
    /// 12 bits.
    D12,
    /// 16 bits.
    D16,
}

impl Depth {
    /// Bits per component.
    pub const fn bits(self) -> u32 {
        match self {
            Self::D8 => 8,
            Self::D10 => 10,
            Self::D12 => 12,
            Self::D16 => 16,
        }
    }

    /// The depth of `bits` bits per component.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            8 => Some(Self::D8),
            10 => Some(Self::D10),
            12 => Some(Self::D12),
            16 => Some(Self::D16),
            _ => None,
        }
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

/// An exact frame rate (SDP `exactframerate=`): `num/den` frames per second, reduced, both non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRate {
    num: u32,
    den: u32,
}

impl FrameRate {
    /// The fastest rate accepted, frames per second.
    pub const MAX_FPS: u32 = 1000;
    /// The longest frame period accepted, seconds (1/1000 fps): far slower rates would put
    /// frame epochs of today's TAI clock near `u64::MAX` nanoseconds.
    pub const MAX_PERIOD_S: u32 = 1000;

    /// `num/den` frames per second, reduced; `None` when either is zero or the rate is outside
    /// 1/[`MAX_PERIOD_S`](Self::MAX_PERIOD_S) ..= [`MAX_FPS`](Self::MAX_FPS).
    pub fn new(num: u32, den: u32) -> Option<Self> {
        let (n, d) = (u64::from(num), u64::from(den));
        if num == 0 || den == 0 || n > d * u64::from(Self::MAX_FPS) {
            return None;
        }
        if n * u64::from(Self::MAX_PERIOD_S) < d {
            return None;
        }
        let g = gcd(num, den);
        Some(Self {
            num: num / g,
            den: den / g,
        })
    }

    /// The nearest SMPTE rate to `fps` (59.94 → 60000/1001, 50 → 50/1, 29.97 → 30000/1001, ...):
    /// an integer rate when `fps` is within 0.001 of one, `n·1000/1001` when within 0.001 of
    /// that, else `fps` rounded to 1/1000.
    pub fn from_fps(fps: f64) -> Option<Self> {
        if !fps.is_finite() || fps <= 0.0 || fps > 1000.0 {
            return None;
        }
        let int = fps.round();
        if (fps - int).abs() < 1e-3 {
            return Self::new(int as u32, 1);
        }
        let ntsc = (fps * 1.001).round();
        if (fps - ntsc * 1000.0 / 1001.0).abs() < 1e-3 {
            return Self::new(ntsc as u32 * 1000, 1001);
        }
        Self::new((fps * 1000.0).round() as u32, 1000)
    }

    /// Parses `"50"` or `"60000/1001"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('/') {
            Some((n, d)) => Self::new(n.trim().parse().ok()?, d.trim().parse().ok()?),
            None => Self::new(s.trim().parse().ok()?, 1),
        }
    }

    /// Numerator (frames).
    pub const fn num(self) -> u32 {
        self.num
    }

    /// Denominator (seconds).
    pub const fn den(self) -> u32 {
        self.den
    }

    /// Frames per second as a float.
    pub fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// Start of frame `n` counted from the epoch, in nanoseconds: `floor(n · den · 1e9 / num)`.
    /// Exact, so frame epochs never drift.
    pub const fn frame_start_ns(self, n: u64) -> u64 {
        ((n as u128 * self.den as u128 * 1_000_000_000) / self.num as u128) as u64
    }

    /// Index of the frame period containing `t_ns` (ns since the epoch).
    pub const fn frame_at(self, t_ns: u64) -> u64 {
        ((t_ns as u128 * self.num as u128) / (self.den as u128 * 1_000_000_000)) as u64
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_reduce_parse_and_print() {
        assert_eq!(FrameRate::parse("60000/1001"), FrameRate::new(60000, 1001));
        assert_eq!(FrameRate::parse("50").unwrap().to_string(), "50");
        assert_eq!(FrameRate::new(100, 2).unwrap().to_string(), "50");
        assert_eq!(
            FrameRate::from_fps(59.94).unwrap().to_string(),
            "60000/1001"
        );
        assert_eq!(
            FrameRate::from_fps(29.97).unwrap().to_string(),
            "30000/1001"
        );
        assert_eq!(FrameRate::from_fps(25.0).unwrap().to_string(), "25");
        assert_eq!(FrameRate::from_fps(12.5).unwrap().to_string(), "25/2");
        for bad in ["", "0", "1/0", "x", "-5", "60000/"] {
            assert_eq!(FrameRate::parse(bad), None, "{bad:?}");
        }
        assert_eq!(FrameRate::from_fps(f64::NAN), None);
        assert_eq!(FrameRate::from_fps(0.0), None);
    }

    /// Rates from one frame in 1000 s to 1000 fps; nothing slower (frame epochs of today's TAI
    /// time would near u64::MAX ns) or faster.
    #[test]
    fn frame_rates_are_bounded() {
        assert!(FrameRate::new(1000, 1).is_some());
        assert_eq!(FrameRate::new(1001, 1), None);
        assert_eq!(FrameRate::new(u32::MAX, 1), None);
        assert!(FrameRate::new(1, 1000).is_some());
        assert_eq!(FrameRate::new(1, 1001), None);
        assert_eq!(FrameRate::new(1, u32::MAX), None);
        assert_eq!(FrameRate::parse("4000000000/1"), None);
        assert_eq!(FrameRate::parse("1/4000000000"), None);
        assert!(FrameRate::new(240_000, 1001).is_some());
    }

    #[test]
    fn frame_epochs_are_exact() {
        let r = FrameRate::new(60000, 1001).unwrap();
        assert_eq!(r.frame_start_ns(0), 0);
        assert_eq!(r.frame_start_ns(60000), 1001 * 1_000_000_000);
        let t = r.frame_start_ns(123_456_789);
        assert_eq!(r.frame_at(t), 123_456_789);
        assert_eq!(r.frame_at(t - 1), 123_456_788);
    }

    #[test]
    fn samplings_and_depths_round_trip() {
        for (name, s) in Sampling::ALL {
            assert_eq!(Sampling::parse(name), Some(s));
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(Sampling::parse("YCbCr-4:2:2 "), None);
        for b in [8, 10, 12, 16] {
            assert_eq!(Depth::from_bits(b).unwrap().bits(), b);
        }
        assert_eq!(Depth::from_bits(9), None);
    }
}
