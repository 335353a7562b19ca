//! SMPTE ST 2110-30 (AES67) PCM audio: linear PCM, big-endian, channels interleaved.
//!
//! An RTP payload is `samples_per_packet` sample frames; a sample frame is one sample of every
//! channel, channel 0 first; a sample is 2 bytes (`L16`) or 3 bytes (`L24`), two's complement,
//! most significant byte first. The RTP clock runs at the sample rate and advances by
//! `samples_per_packet` from one packet to the next.
//!
//! - [`Format`]: encoding, channels, sample rate and packet size, validated; the SDP strings
//!   (`a=rtpmap:<pt> L24/48000/8`, `a=ptime:1`) and the ST 2110-30 conformance level.
//! - [`Payload`]: a checked view over one payload, with sample accessors and setters.
//! - [`Receiver`]: RTP-timestamp continuity of consecutive packets, for loss reporting.
//!
//! The SDK carries PCM exactly as on the wire (big-endian, interleaved), one packet per SDK
//! buffer, so nothing here converts sample formats.

use std::fmt;

/// Largest UDP payload (RTP header included) of a standard ST 2110 stream (ST 2110-10).
pub const MAX_DATAGRAM: usize = 1460;

/// Length of an RTP header without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;

/// Largest RTP payload that fits [`MAX_DATAGRAM`]: 1448 bytes.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - RTP_HEADER_LEN;

/// Most channels a stream may carry.
pub const MAX_CHANNELS: u16 = 64;

/// Sample rates accepted: 48 kHz (mandatory in ST 2110-30), 96 kHz, and 44.1 kHz (carried for
/// compatibility with MCM's audio payloads; outside ST 2110-30's conformance levels).
pub const SAMPLE_RATES: [u32; 3] = [48_000, 96_000, 44_100];

/// Sample encoding (the SDP `rtpmap` encoding name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// 16-bit linear PCM, `L16`.
    L16,
    /// 24-bit linear PCM, `L24`.
    L24,
}

impl Encoding {
    /// Bytes per sample: 2 or 3.
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            Self::L16 => 2,
            Self::L24 => 3,
        }
    }

    /// Bits per sample: 16 or 24.
    pub const fn bits(self) -> u32 {
        self.bytes_per_sample() as u32 * 8
    }

    /// The SDP encoding name, `"L16"` or `"L24"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::L16 => "L16",
            Self::L24 => "L24",
        }
    }

    /// Parses the SDP encoding name (ASCII case-insensitive, as RFC 4855 media subtypes are).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::L16, Self::L24]
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The packet times MCM offers. Each has a sample count per packet at each rate where it is
/// defined: the first six at 48 and 96 kHz, the last three at 44.1 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketTime {
    /// 1 ms: 48 samples at 48 kHz, 96 at 96 kHz.
    Ms1,
    /// 125 us: 6 samples at 48 kHz, 12 at 96 kHz.
    Us125,
    /// 250 us: 12 samples at 48 kHz, 24 at 96 kHz.
    Us250,
    /// 333 us: 16 samples at 48 kHz, 32 at 96 kHz.
    Us333,
    /// 4 ms: 192 samples at 48 kHz, 384 at 96 kHz.
    Ms4,
    /// 80 us (nominal; 4 samples at 48 kHz are 83.3 us): 4 samples at 48 kHz, 8 at 96 kHz.
    Us80,
    /// 1.09 ms: 48 samples at 44.1 kHz.
    Ms1_09,
    /// 0.14 ms: 6 samples at 44.1 kHz.
    Ms0_14,
    /// 0.09 ms: 4 samples at 44.1 kHz.
    Ms0_09,
}

impl PacketTime {
    /// Every packet time.
    pub const ALL: [PacketTime; 9] = [
        Self::Ms1,
        Self::Us125,
        Self::Us250,
        Self::Us333,
        Self::Ms4,
        Self::Us80,
        Self::Ms1_09,
        Self::Ms0_14,
        Self::Ms0_09,
    ];

    /// Samples per packet at 48 kHz, or at 44.1 kHz for the 44.1 kHz packet times.
    const fn base_samples(self) -> u32 {
        match self {
            Self::Ms1 | Self::Ms1_09 => 48,
            Self::Us125 | Self::Ms0_14 => 6,
            Self::Us250 => 12,
            Self::Us333 => 16,
            Self::Ms4 => 192,
            Self::Us80 | Self::Ms0_09 => 4,
        }
    }

    const fn is_44k1(self) -> bool {
        matches!(self, Self::Ms1_09 | Self::Ms0_14 | Self::Ms0_09)
    }

    /// Samples per packet at `sample_rate`, or `None` where this packet time is not defined.
    pub const fn samples(self, sample_rate: u32) -> Option<u32> {
        match (sample_rate, self.is_44k1()) {
            (48_000, false) | (44_100, true) => Some(self.base_samples()),
            (96_000, false) => Some(self.base_samples() * 2),
            _ => None,
        }
    }

    /// The SDP `a=ptime:` value in milliseconds: `"1"`, `"0.125"`, `"0.25"`, `"0.333"`, `"4"`,
    /// `"0.08"`, `"1.09"`, `"0.14"`, `"0.09"`.
    pub const fn ptime_str(self) -> &'static str {
        match self {
            Self::Ms1 => "1",
            Self::Us125 => "0.125",
            Self::Us250 => "0.25",
            Self::Us333 => "0.333",
            Self::Ms4 => "4",
            Self::Us80 => "0.08",
            Self::Ms1_09 => "1.09",
            Self::Ms0_14 => "0.14",
            Self::Ms0_09 => "0.09",
        }
    }

    /// The packet time of `samples` samples per packet at `sample_rate`, if it is one of these.
    pub fn from_samples(samples: u32, sample_rate: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.samples(sample_rate) == Some(samples))
    }

    /// Parses an SDP `a=ptime:` value (milliseconds, decimal) at `sample_rate`. Accepts the
    /// canonical spellings and any value within 4 us of one (`"0.3333"`, `"1.0"`, `"0.083"`).
    pub fn from_ptime(s: &str, sample_rate: u32) -> Option<Self> {
        let ms: f64 = s.trim().parse().ok()?;
        Self::ALL.into_iter().find(|p| {
            p.samples(sample_rate).is_some()
                && p.ptime_str()
                    .parse::<f64>()
                    .is_ok_and(|nominal| (nominal - ms).abs() < 0.004)
        })
    }
}

impl fmt::Display for PacketTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.ptime_str())
    }
}

/// ST 2110-30 receiver conformance levels. A stream's level is the lowest level whose receivers
/// must accept it. The `X` levels add 96 kHz with the same packet times, for as many channels as
/// fit one packet (at 1 ms, 4 channels of L24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConformanceLevel {
    /// 48 kHz, 1 to 8 channels, 1 ms packets.
    A,
    /// Level A, and the same at 96 kHz.
    AX,
    /// Level A, and 1 to 8 channels at 125 us.
    B,
    /// Level B, and the same at 96 kHz.
    BX,
    /// Level A, and 1 to 64 channels at 125 us.
    C,
    /// Level C, and the same at 96 kHz.
    CX,
}

/// Why an audio format is refused (control path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Channel count outside 1..=64.
    #[error("{0} audio channels requested; a stream carries 1 to 64")]
    Channels(u16),
    /// Sample rate other than 48000, 96000 or 44100 Hz.
    #[error("sample rate {0} Hz is not supported; use 48000, 96000 or 44100")]
    SampleRate(u32),
    /// Zero samples per packet.
    #[error("a packet must carry at least one sample per channel")]
    NoSamples,
    /// The packet time is not defined at this sample rate.
    #[error(
        "packet time {ptime} ms is not defined at {rate} Hz (1.09, 0.14 and 0.09 ms are \
         44.1 kHz packet times; the others are for 48 and 96 kHz)"
    )]
    PacketTimeRate {
        /// The packet time, as in SDP.
        ptime: &'static str,
        /// The sample rate asked for.
        rate: u32,
    },
    /// The payload would not fit a standard datagram.
    #[error(
        "a packet would carry {bytes} bytes of audio, over the {max}-byte payload limit of a \
         1460-byte datagram; use fewer channels, L16, or a shorter packet time"
    )]
    PacketTooLarge {
        /// Payload bytes one packet would need.
        bytes: usize,
        /// The limit, [`MAX_PAYLOAD`].
        max: usize,
    },
}

/// A validated audio format: what one RTP payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    encoding: Encoding,
    channels: u8,
    sample_rate: u32,
    samples_per_packet: u32,
}

impl Format {
    /// A format of `samples_per_packet` sample frames per packet. Checks the channel count
    /// (1..=64), the rate (48000, 96000, 44100), a non-zero sample count, and that a packet fits
    /// [`MAX_PAYLOAD`].
    pub fn new(
        encoding: Encoding,
        channels: u16,
        sample_rate: u32,
        samples_per_packet: u32,
    ) -> Result<Self, FormatError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(FormatError::Channels(channels));
        }
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(FormatError::SampleRate(sample_rate));
        }
        if samples_per_packet == 0 {
            return Err(FormatError::NoSamples);
        }
        let bytes = samples_per_packet as usize * channels as usize * encoding.bytes_per_sample();
        if bytes > MAX_PAYLOAD {
            return Err(FormatError::PacketTooLarge {
                bytes,
                max: MAX_PAYLOAD,
            });
        }
        Ok(Self {
            encoding,
            channels: channels as u8,
            sample_rate,
            samples_per_packet,
        })
    }

    /// A format with one of MCM's packet times.
    pub fn from_packet_time(
        encoding: Encoding,
        channels: u16,
        sample_rate: u32,
        packet_time: PacketTime,
    ) -> Result<Self, FormatError> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(FormatError::SampleRate(sample_rate));
        }
        let samples = packet_time
            .samples(sample_rate)
            .ok_or(FormatError::PacketTimeRate {
                ptime: packet_time.ptime_str(),
                rate: sample_rate,
            })?;
        Self::new(encoding, channels, sample_rate, samples)
    }

    /// Sample encoding.
    pub const fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Channels, 1..=64.
    pub const fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Sample rate in Hz, also the RTP clock rate.
    pub const fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Sample frames per packet, also the RTP timestamp step from one packet to the next.
    pub const fn samples_per_packet(&self) -> u32 {
        self.samples_per_packet
    }

    /// Bytes of one sample frame (one sample of every channel).
    pub const fn frame_bytes(&self) -> usize {
        self.channels as usize * self.encoding.bytes_per_sample()
    }

    /// Bytes of one RTP payload.
    pub const fn packet_bytes(&self) -> usize {
        self.samples_per_packet as usize * self.frame_bytes()
    }

    /// Duration of one packet in nanoseconds, rounded down.
    pub const fn packet_duration_ns(&self) -> u64 {
        self.samples_per_packet as u64 * 1_000_000_000 / self.sample_rate as u64
    }

    /// The named packet time this format uses, if any.
    pub fn packet_time(&self) -> Option<PacketTime> {
        PacketTime::from_samples(self.samples_per_packet, self.sample_rate)
    }

    /// The SDP `a=ptime:` value: the packet time's own spelling (`"1"`, `"0.125"`, ...), or else
    /// the duration in milliseconds rounded to 1 us, trailing zeros dropped (`"0.5"`).
    pub fn ptime_str(&self) -> String {
        if let Some(p) = self.packet_time() {
            return p.ptime_str().to_owned();
        }
        let rate = u64::from(self.sample_rate);
        let us = (u64::from(self.samples_per_packet) * 1_000_000 + rate / 2) / rate;
        let (ms, frac) = (us / 1000, us % 1000);
        if frac == 0 {
            return ms.to_string();
        }
        let digits = format!("{frac:03}");
        format!("{ms}.{}", digits.trim_end_matches('0'))
    }

    /// The SDP `a=rtpmap:` encoding part, e.g. `"L24/48000/8"`.
    pub fn rtpmap(&self) -> String {
        format!("{}/{}/{}", self.encoding, self.sample_rate, self.channels)
    }

    /// The lowest ST 2110-30 conformance level whose receivers must accept this format, or
    /// `None` when it lies outside every level (44.1 kHz, other packet times, 1 ms with more than
    /// 8 channels).
    pub fn conformance_level(&self) -> Option<ConformanceLevel> {
        use ConformanceLevel as L;
        let x96 = match self.sample_rate {
            48_000 => false,
            96_000 => true,
            _ => return None,
        };
        let level = match (self.packet_time()?, self.channels) {
            (PacketTime::Ms1, 1..=8) => L::A,
            (PacketTime::Us125, 1..=8) => L::B,
            (PacketTime::Us125, _) => L::C,
            _ => return None,
        };
        Some(match (level, x96) {
            (L::A, true) => L::AX,
            (L::B, true) => L::BX,
            (L::C, true) => L::CX,
            (l, _) => l,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} x {} samples per packet ({} ms)",
            self.rtpmap(),
            self.samples_per_packet,
            self.ptime_str()
        )
    }
}

/// Why a buffer is not a payload of the expected format (data path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The length is not the format's packet size.
    #[error("audio payload of {len} bytes; the format's packets are {expected} bytes")]
    Length {
        /// Bytes in the buffer.
        len: usize,
        /// [`Format::packet_bytes`].
        expected: usize,
    },
    /// The length is not a non-zero whole number of sample frames.
    #[error("audio payload of {len} bytes is not a whole number of {frame_bytes}-byte frames")]
    Frames {
        /// Bytes in the buffer.
        len: usize,
        /// [`Format::frame_bytes`].
        frame_bytes: usize,
    },
}

/// A checked view over one ST 2110-30 RTP payload (the bytes after the RTP header).
#[derive(Debug, Clone)]
pub struct Payload<T> {
    buffer: T,
    encoding: Encoding,
    channels: u8,
}

impl<T: AsRef<[u8]>> Payload<T> {
    /// Wraps `buffer` without checking its length; [`Payload::check_len`] checks it later.
    /// Accessors panic on a buffer shorter than the frame they read.
    pub fn new_unchecked(buffer: T, format: &Format) -> Self {
        Self {
            buffer,
            encoding: format.encoding,
            channels: format.channels,
        }
    }

    /// Wraps `buffer`, which must be exactly one packet of `format`.
    pub fn new_checked(buffer: T, format: &Format) -> Result<Self, PayloadError> {
        let len = buffer.as_ref().len();
        if len != format.packet_bytes() {
            return Err(PayloadError::Length {
                len,
                expected: format.packet_bytes(),
            });
        }
        Ok(Self::new_unchecked(buffer, format))
    }

    /// Wraps `buffer`, which must hold one or more whole sample frames of `format` (a packet
    /// from a sender using another packet time).
    pub fn new_frames(buffer: T, format: &Format) -> Result<Self, PayloadError> {
        let payload = Self::new_unchecked(buffer, format);
        payload.check_len()?;
        Ok(payload)
    }

    /// Checks that the buffer holds a non-zero whole number of sample frames.
    pub fn check_len(&self) -> Result<(), PayloadError> {
        let len = self.buffer.as_ref().len();
        let frame_bytes = self.frame_bytes();
        if len == 0 || !len.is_multiple_of(frame_bytes) {
            return Err(PayloadError::Frames { len, frame_bytes });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Sample encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Channels per sample frame.
    pub fn channels(&self) -> usize {
        usize::from(self.channels)
    }

    fn frame_bytes(&self) -> usize {
        self.channels() * self.encoding.bytes_per_sample()
    }

    /// Whole sample frames in the buffer.
    pub fn frames(&self) -> usize {
        self.buffer.as_ref().len() / self.frame_bytes()
    }

    fn offset(&self, frame: usize, channel: usize) -> usize {
        assert!(
            channel < self.channels(),
            "channel {channel} of a {}-channel payload",
            self.channels
        );
        (frame * self.channels() + channel) * self.encoding.bytes_per_sample()
    }

    /// The sample of `channel` in sample frame `frame`, sign-extended.
    ///
    /// # Panics
    /// When `channel >= channels()` or `frame >= frames()`.
    pub fn sample(&self, frame: usize, channel: usize) -> i32 {
        let at = self.offset(frame, channel);
        let b = self.buffer.as_ref();
        match self.encoding {
            Encoding::L16 => i32::from(i16::from_be_bytes([b[at], b[at + 1]])),
            Encoding::L24 => i32::from_be_bytes([b[at], b[at + 1], b[at + 2], 0]) >> 8,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Payload<T> {
    /// Writes the sample of `channel` in sample frame `frame`: the low 16 or 24 bits of `value`
    /// (values outside the encoding's range wrap).
    ///
    /// # Panics
    /// When `channel >= channels()` or `frame >= frames()`.
    pub fn set_sample(&mut self, frame: usize, channel: usize, value: i32) {
        let at = self.offset(frame, channel);
        let n = self.encoding.bytes_per_sample();
        let be = value.to_be_bytes();
        self.buffer.as_mut()[at..at + n].copy_from_slice(&be[4 - n..]);
    }

    /// The payload bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// What one packet's RTP timestamp says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The first packet seen (or the first after [`Receiver::reset`]).
    First,
    /// The timestamp expected: the previous one plus `samples_per_packet`.
    InOrder,
    /// The timestamp is ahead of the expected one: packets were lost (or the sender skipped).
    Gap {
        /// Samples missing.
        samples: u32,
        /// Packets missing, rounded up.
        packets: u32,
    },
    /// The timestamp is behind the expected one: a duplicate or reordered packet. The expected
    /// timestamp does not move.
    Late {
        /// How far behind the expected timestamp, in samples.
        samples: u32,
    },
    /// The timestamp moved by more than one second of samples either way: the sender restarted
    /// or the stream changed; counting restarts from this packet, nothing is counted lost.
    Resync,
}

/// Counters kept by a [`Receiver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets pushed.
    pub packets: u64,
    /// Packets counted missing in gaps (an upper bound when packets arrive reordered: a late
    /// packet was counted lost when its gap opened).
    pub lost: u64,
    /// Gaps seen.
    pub gaps: u64,
    /// Late (duplicate or reordered) packets.
    pub late: u64,
    /// Resynchronisations.
    pub resyncs: u64,
}

/// RTP-timestamp continuity of one audio stream: each packet's timestamp should be the previous
/// one plus `samples_per_packet` (mod 2^32).
#[derive(Debug, Clone)]
pub struct Receiver {
    samples_per_packet: u32,
    resync_after: u32,
    next: Option<u32>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver for packets of `format`.
    pub fn new(format: &Format) -> Self {
        Self {
            samples_per_packet: format.samples_per_packet,
            resync_after: format.sample_rate,
            next: None,
            stats: ReceiverStats::default(),
        }
    }

    /// Accounts the packet with RTP timestamp `rtp_timestamp`.
    pub fn push(&mut self, rtp_timestamp: u32) -> Continuity {
        self.stats.packets += 1;
        let Some(expected) = self.next else {
            self.next = Some(rtp_timestamp.wrapping_add(self.samples_per_packet));
            return Continuity::First;
        };
        let ahead = rtp_timestamp.wrapping_sub(expected);
        let behind = expected.wrapping_sub(rtp_timestamp);
        if ahead == 0 {
            self.next = Some(rtp_timestamp.wrapping_add(self.samples_per_packet));
            Continuity::InOrder
        } else if ahead <= self.resync_after {
            let packets = ahead.div_ceil(self.samples_per_packet);
            self.stats.gaps += 1;
            self.stats.lost += u64::from(packets);
            self.next = Some(rtp_timestamp.wrapping_add(self.samples_per_packet));
            Continuity::Gap {
                samples: ahead,
                packets,
            }
        } else if behind <= self.resync_after {
            self.stats.late += 1;
            Continuity::Late { samples: behind }
        } else {
            self.stats.resyncs += 1;
            self.next = Some(rtp_timestamp.wrapping_add(self.samples_per_packet));
            Continuity::Resync
        }
    }

    /// The timestamp the next in-order packet will carry, once a packet was seen.
    pub fn next_timestamp(&self) -> Option<u32> {
        self.next
    }

    /// The counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Forgets the expected timestamp (the counters stay): the next packet is [`Continuity::First`].
    pub fn reset(&mut self) {
        self.next = None;
    }
}

/// Fuzz entry point: builds a format from the first two bytes, views the rest as a payload,
/// rewrites every sample through the setter (the bytes must come back unchanged), and feeds
/// RTP timestamps made of the bytes to a [`Receiver`] (its counters must add up).
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let [a, b, rest @ ..] = data else { return };
    let encoding = if a & 1 == 0 {
        Encoding::L16
    } else {
        Encoding::L24
    };
    let rate = SAMPLE_RATES[usize::from(a >> 1) % 3];
    let channels = u16::from(*b % 66);
    let spp = u32::from(a >> 3).max(1);
    let Ok(format) = Format::new(encoding, channels, rate, spp) else {
        let bytes = spp as usize * usize::from(channels) * encoding.bytes_per_sample();
        assert!(channels == 0 || channels > MAX_CHANNELS || bytes > MAX_PAYLOAD);
        return;
    };
    assert!(format.packet_bytes() <= MAX_PAYLOAD);
    assert!(!format.ptime_str().is_empty());
    if let Ok(p) = Payload::new_checked(rest, &format) {
        assert_eq!(p.frames(), format.samples_per_packet() as usize);
    }
    if let Ok(p) = Payload::new_frames(rest, &format) {
        let mut copy = rest.to_vec();
        let mut out = Payload::new_frames(&mut copy[..], &format).expect("same length");
        out.as_bytes_mut().fill(0);
        for f in 0..p.frames() {
            for c in 0..p.channels() {
                let s = p.sample(f, c);
                let bits = encoding.bits();
                assert!(s >= -(1 << (bits - 1)) && s < (1 << (bits - 1)));
                out.set_sample(f, c, s);
            }
        }
        assert_eq!(copy, rest);
    } else {
        assert!(rest.is_empty() || !rest.len().is_multiple_of(format.frame_bytes()));
    }
    let mut rx = Receiver::new(&format);
    let mut outcomes = 0u64;
    for chunk in rest.chunks_exact(4) {
        let ts = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if !matches!(rx.push(ts), Continuity::First) {
            outcomes += 1;
        }
    }
    let s = rx.stats();
    assert_eq!(s.packets, (rest.len() / 4) as u64);
    assert!(s.gaps + s.late + s.resyncs <= outcomes);
    assert!(s.lost >= s.gaps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(encoding: Encoding, channels: u16, rate: u32, pt: PacketTime) -> Format {
        Format::from_packet_time(encoding, channels, rate, pt).unwrap()
    }

    #[test]
    fn encodings_have_their_sizes_and_names() {
        assert_eq!(Encoding::L16.bytes_per_sample(), 2);
        assert_eq!(Encoding::L24.bytes_per_sample(), 3);
        assert_eq!(Encoding::L16.bits(), 16);
        assert_eq!(Encoding::L24.bits(), 24);
        assert_eq!(Encoding::L24.to_string(), "L24");
        assert_eq!(Encoding::parse("L16"), Some(Encoding::L16));
        assert_eq!(Encoding::parse("l24"), Some(Encoding::L24));
        for bad in ["", "L20", "L24 ", "L8", "AM824"] {
            assert_eq!(Encoding::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn packet_times_have_their_sample_counts_at_each_rate() {
        use PacketTime as P;
        let table = [
            (P::Ms1, Some(48), Some(96), None),
            (P::Us125, Some(6), Some(12), None),
            (P::Us250, Some(12), Some(24), None),
            (P::Us333, Some(16), Some(32), None),
            (P::Ms4, Some(192), Some(384), None),
            (P::Us80, Some(4), Some(8), None),
            (P::Ms1_09, None, None, Some(48)),
            (P::Ms0_14, None, None, Some(6)),
            (P::Ms0_09, None, None, Some(4)),
        ];
        assert_eq!(table.len(), P::ALL.len());
        for (p, s48, s96, s44) in table {
            assert_eq!(p.samples(48_000), s48, "{p:?}");
            assert_eq!(p.samples(96_000), s96, "{p:?}");
            assert_eq!(p.samples(44_100), s44, "{p:?}");
            assert_eq!(p.samples(32_000), None, "{p:?}");
            for (rate, s) in [(48_000, s48), (96_000, s96), (44_100, s44)] {
                if let Some(s) = s {
                    assert_eq!(P::from_samples(s, rate), Some(p));
                }
            }
        }
        assert_eq!(P::from_samples(24, 48_000), None);
        assert_eq!(P::from_samples(48, 32_000), None);
    }

    #[test]
    fn packet_times_spell_and_parse_their_ptime() {
        use PacketTime as P;
        let spelled: Vec<_> = P::ALL.iter().map(|p| p.ptime_str()).collect();
        assert_eq!(
            spelled,
            [
                "1", "0.125", "0.25", "0.333", "4", "0.08", "1.09", "0.14", "0.09"
            ]
        );
        for p in P::ALL {
            let rate = if p.samples(48_000).is_some() {
                48_000
            } else {
                44_100
            };
            assert_eq!(P::from_ptime(p.ptime_str(), rate), Some(p), "{p:?}");
        }
        assert_eq!(P::from_ptime("0.125", 96_000), Some(P::Us125));
        assert_eq!(P::from_ptime("0.3333", 48_000), Some(P::Us333));
        assert_eq!(P::from_ptime(" 1.0 ", 48_000), Some(P::Ms1));
        assert_eq!(P::from_ptime("0.083", 48_000), Some(P::Us80));
        assert_eq!(P::from_ptime("1.09", 48_000), None);
        assert_eq!(P::from_ptime("1", 44_100), None);
        assert_eq!(P::from_ptime("0.125", 44_100), None);
        for bad in ["", "x", "2", "0.2", "-1", "NaN"] {
            assert_eq!(P::from_ptime(bad, 48_000), None, "{bad:?}");
        }
        assert_eq!(P::Us125.to_string(), "0.125 ms");
    }

    #[test]
    fn formats_compute_their_packet_sizes() {
        let f = fmt(Encoding::L24, 2, 48_000, PacketTime::Ms1);
        assert_eq!(
            (
                f.encoding(),
                f.channels(),
                f.sample_rate(),
                f.samples_per_packet()
            ),
            (Encoding::L24, 2, 48_000, 48)
        );
        assert_eq!(f.frame_bytes(), 6);
        assert_eq!(f.packet_bytes(), 288);
        assert_eq!(f.packet_duration_ns(), 1_000_000);
        assert_eq!(f.rtpmap(), "L24/48000/2");
        assert_eq!(f.to_string(), "L24/48000/2 x 48 samples per packet (1 ms)");
        assert_eq!(
            fmt(Encoding::L16, 8, 48_000, PacketTime::Ms1).packet_bytes(),
            768
        );
        assert_eq!(
            fmt(Encoding::L16, 1, 96_000, PacketTime::Ms4).packet_bytes(),
            768
        );
        assert_eq!(
            fmt(Encoding::L24, 1, 44_100, PacketTime::Ms1_09).packet_bytes(),
            144
        );
        assert_eq!(
            fmt(Encoding::L24, 2, 48_000, PacketTime::Us333).packet_duration_ns(),
            333_333
        );
        assert_eq!(
            fmt(Encoding::L24, 2, 44_100, PacketTime::Ms1_09).packet_duration_ns(),
            1_088_435
        );
    }

    #[test]
    fn sixty_four_channels_fit_at_125_us() {
        let f = fmt(Encoding::L24, 64, 48_000, PacketTime::Us125);
        assert_eq!(f.channels(), 64);
        assert_eq!(f.frame_bytes(), 192);
        assert_eq!(f.packet_bytes(), 1152);
        assert_eq!(f.conformance_level(), Some(ConformanceLevel::C));
        let f = fmt(Encoding::L16, 64, 48_000, PacketTime::Us80);
        assert_eq!(f.packet_bytes(), 512);
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 64, 96_000, PacketTime::Us125),
            Err(FormatError::PacketTooLarge {
                bytes: 2304,
                max: 1448
            })
        );
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 65, 48_000, PacketTime::Us125),
            Err(FormatError::Channels(65))
        );
    }

    #[test]
    fn formats_refuse_what_is_out_of_range() {
        use FormatError as E;
        assert_eq!(
            Format::new(Encoding::L24, 0, 48_000, 48),
            Err(E::Channels(0))
        );
        assert_eq!(
            Format::new(Encoding::L24, 65, 48_000, 6),
            Err(E::Channels(65))
        );
        assert_eq!(
            Format::new(Encoding::L24, 2, 32_000, 48),
            Err(E::SampleRate(32_000))
        );
        assert_eq!(Format::new(Encoding::L24, 2, 48_000, 0), Err(E::NoSamples));
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 2, 48_000, PacketTime::Ms1_09),
            Err(E::PacketTimeRate {
                ptime: "1.09",
                rate: 48_000
            })
        );
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 2, 44_100, PacketTime::Ms1),
            Err(E::PacketTimeRate {
                ptime: "1",
                rate: 44_100
            })
        );
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 2, 22_050, PacketTime::Ms1),
            Err(E::SampleRate(22_050))
        );
        // 1 ms of L24: 144 bytes per channel; 10 channels fill 1440 of 1448 bytes, 11 do not fit.
        assert!(Format::from_packet_time(Encoding::L24, 10, 48_000, PacketTime::Ms1).is_ok());
        assert_eq!(
            Format::from_packet_time(Encoding::L24, 11, 48_000, PacketTime::Ms1),
            Err(E::PacketTooLarge {
                bytes: 1584,
                max: 1448
            })
        );
        // The payload limit itself: 1448 bytes pass, one more sample does not.
        assert_eq!(
            Format::new(Encoding::L16, 1, 48_000, 724)
                .unwrap()
                .packet_bytes(),
            1448
        );
        assert_eq!(
            Format::new(Encoding::L16, 1, 48_000, 725),
            Err(E::PacketTooLarge {
                bytes: 1450,
                max: 1448
            })
        );
        assert_eq!(
            Format::new(Encoding::L24, 1, 48_000, 482)
                .unwrap()
                .packet_bytes(),
            1446
        );
        assert_eq!(
            Format::new(Encoding::L24, 1, 48_000, 483),
            Err(E::PacketTooLarge {
                bytes: 1449,
                max: 1448
            })
        );
        assert_eq!(MAX_PAYLOAD, 1448);
    }

    #[test]
    fn format_errors_say_what_is_allowed() {
        let msg = FormatError::Channels(65).to_string();
        assert!(msg.contains("65") && msg.contains("1 to 64"), "{msg}");
        let msg = FormatError::SampleRate(32_000).to_string();
        assert!(
            msg.contains("32000") && msg.contains("48000, 96000 or 44100"),
            "{msg}"
        );
        let msg = FormatError::PacketTooLarge {
            bytes: 1584,
            max: 1448,
        }
        .to_string();
        assert!(msg.contains("1584") && msg.contains("1448"), "{msg}");
        let msg = FormatError::PacketTimeRate {
            ptime: "1.09",
            rate: 48_000,
        }
        .to_string();
        assert!(msg.contains("1.09 ms") && msg.contains("48000 Hz"), "{msg}");
        assert!(FormatError::NoSamples.to_string().contains("at least one"));
    }

    #[test]
    fn ptime_strings_cover_named_and_other_packet_sizes() {
        for p in PacketTime::ALL {
            let rate = if p.samples(48_000).is_some() {
                48_000
            } else {
                44_100
            };
            assert_eq!(fmt(Encoding::L24, 1, rate, p).ptime_str(), p.ptime_str());
        }
        assert_eq!(
            fmt(Encoding::L24, 1, 96_000, PacketTime::Us333).ptime_str(),
            "0.333"
        );
        let ptime = |rate, samples| {
            Format::new(Encoding::L16, 1, rate, samples)
                .unwrap()
                .ptime_str()
        };
        assert_eq!(ptime(48_000, 24), "0.5");
        assert_eq!(ptime(48_000, 5), "0.104");
        assert_eq!(ptime(48_000, 96), "2");
        assert_eq!(ptime(44_100, 441), "10");
        assert_eq!(ptime(44_100, 1), "0.023");
        assert_eq!(ptime(96_000, 48), "0.5");
    }

    #[test]
    fn conformance_levels_follow_st2110_30() {
        use ConformanceLevel as L;
        use PacketTime as P;
        let level = |ch, rate, p| fmt(Encoding::L24, ch, rate, p).conformance_level();
        assert_eq!(level(1, 48_000, P::Ms1), Some(L::A));
        assert_eq!(level(8, 48_000, P::Ms1), Some(L::A));
        assert_eq!(level(4, 96_000, P::Ms1), Some(L::AX));
        // 8 channels of 1 ms L24 at 96 kHz (2304 bytes) do not fit a packet at all.
        assert!(Format::from_packet_time(Encoding::L24, 8, 96_000, P::Ms1).is_err());
        assert_eq!(
            Format::from_packet_time(Encoding::L16, 7, 96_000, P::Ms1)
                .unwrap()
                .conformance_level(),
            Some(L::AX)
        );
        assert_eq!(level(2, 48_000, P::Us125), Some(L::B));
        assert_eq!(level(8, 96_000, P::Us125), Some(L::BX));
        assert_eq!(level(9, 48_000, P::Us125), Some(L::C));
        assert_eq!(level(64, 48_000, P::Us125), Some(L::C));
        assert_eq!(level(32, 96_000, P::Us125), Some(L::CX));
        assert_eq!(level(9, 48_000, P::Ms1), None);
        assert_eq!(level(2, 48_000, P::Us250), None);
        assert_eq!(level(2, 48_000, P::Ms4), None);
        assert_eq!(level(2, 44_100, P::Ms1_09), None);
        let odd = Format::new(Encoding::L24, 2, 48_000, 24).unwrap();
        assert_eq!(odd.conformance_level(), None);
        assert!(L::A < L::AX && L::AX < L::B && L::B < L::BX && L::BX < L::C && L::C < L::CX);
    }

    #[test]
    fn l24_samples_read_sign_extended() {
        let f = Format::new(Encoding::L24, 2, 48_000, 2).unwrap();
        let bytes = [
            0x7F, 0xFF, 0xFF, 0x80, 0x00, 0x00, // frame 0: +max, -max-1
            0x00, 0x00, 0x01, 0xFF, 0xFF, 0xFF, // frame 1: 1, -1
        ];
        let p = Payload::new_checked(&bytes[..], &f).unwrap();
        assert_eq!(
            (p.frames(), p.channels(), p.encoding()),
            (2, 2, Encoding::L24)
        );
        assert_eq!(p.sample(0, 0), 8_388_607);
        assert_eq!(p.sample(0, 1), -8_388_608);
        assert_eq!(p.sample(1, 0), 1);
        assert_eq!(p.sample(1, 1), -1);
        assert_eq!(p.as_bytes(), &bytes);
    }

    #[test]
    fn l16_samples_read_sign_extended() {
        let f = Format::new(Encoding::L16, 3, 48_000, 1).unwrap();
        let bytes = [0x80, 0x00, 0x7F, 0xFF, 0x12, 0x34];
        let p = Payload::new_checked(bytes, &f).unwrap();
        assert_eq!(p.sample(0, 0), -32_768);
        assert_eq!(p.sample(0, 1), 32_767);
        assert_eq!(p.sample(0, 2), 0x1234);
        assert_eq!(p.into_inner(), bytes);
    }

    #[test]
    fn samples_write_big_endian_and_wrap() {
        let f = Format::new(Encoding::L24, 2, 48_000, 2).unwrap();
        let mut buf = [0u8; 12];
        let mut p = Payload::new_checked(&mut buf[..], &f).unwrap();
        p.set_sample(0, 0, 0x12_3456);
        p.set_sample(0, 1, -2);
        p.set_sample(1, 0, 0x0100_0005); // wraps to 5
        p.set_sample(1, 1, -8_388_608);
        assert_eq!(p.sample(1, 0), 5);
        assert_eq!(
            buf,
            [
                0x12, 0x34, 0x56, 0xFF, 0xFF, 0xFE, 0x00, 0x00, 0x05, 0x80, 0x00, 0x00
            ]
        );
        let f = Format::new(Encoding::L16, 1, 48_000, 2).unwrap();
        let mut buf = [0u8; 4];
        let mut p = Payload::new_checked(&mut buf[..], &f).unwrap();
        p.set_sample(0, 0, -1);
        p.set_sample(1, 0, 0x1_2345); // wraps to 0x2345
        p.as_bytes_mut()[0] ^= 0x80;
        assert_eq!(buf, [0x7F, 0xFF, 0x23, 0x45]);
    }

    #[test]
    fn payload_lengths_are_checked() {
        let f = fmt(Encoding::L24, 2, 48_000, PacketTime::Ms1);
        let buf = [0u8; 300];
        assert!(Payload::new_checked(&buf[..288], &f).is_ok());
        assert_eq!(
            Payload::new_checked(&buf[..287], &f).unwrap_err(),
            PayloadError::Length {
                len: 287,
                expected: 288
            }
        );
        assert_eq!(
            Payload::new_checked(&buf[..294], &f).unwrap_err(),
            PayloadError::Length {
                len: 294,
                expected: 288
            }
        );
        assert_eq!(Payload::new_frames(&buf[..294], &f).unwrap().frames(), 49);
        assert_eq!(Payload::new_frames(&buf[..6], &f).unwrap().frames(), 1);
        assert_eq!(
            Payload::new_frames(&buf[..0], &f).unwrap_err(),
            PayloadError::Frames {
                len: 0,
                frame_bytes: 6
            }
        );
        assert_eq!(
            Payload::new_frames(&buf[..7], &f).unwrap_err(),
            PayloadError::Frames {
                len: 7,
                frame_bytes: 6
            }
        );
        let p = Payload::new_unchecked(&buf[..5], &f);
        assert!(p.check_len().is_err());
        assert_eq!(p.frames(), 0);
        let msg = PayloadError::Length {
            len: 287,
            expected: 288,
        }
        .to_string();
        assert!(msg.contains("287") && msg.contains("288"), "{msg}");
    }

    #[test]
    #[should_panic(expected = "channel 2 of a 2-channel payload")]
    fn reading_a_channel_past_the_last_panics() {
        let f = Format::new(Encoding::L16, 2, 48_000, 1).unwrap();
        let _ = Payload::new_checked([0u8; 4], &f).unwrap().sample(0, 2);
    }

    #[test]
    #[should_panic]
    fn reading_a_frame_past_the_last_panics() {
        let f = Format::new(Encoding::L16, 2, 48_000, 1).unwrap();
        let _ = Payload::new_checked([0u8; 4], &f).unwrap().sample(1, 0);
    }

    #[test]
    fn receiver_reports_order_gaps_late_packets_and_resyncs() {
        let f = fmt(Encoding::L24, 2, 48_000, PacketTime::Ms1);
        let mut rx = Receiver::new(&f);
        assert_eq!(rx.next_timestamp(), None);
        assert_eq!(rx.push(1000), Continuity::First);
        assert_eq!(rx.next_timestamp(), Some(1048));
        assert_eq!(rx.push(1048), Continuity::InOrder);
        // 1096 lost.
        assert_eq!(
            rx.push(1144),
            Continuity::Gap {
                samples: 48,
                packets: 1
            }
        );
        // 1096 arrives after all: 96 samples behind the expected 1192.
        assert_eq!(rx.push(1096), Continuity::Late { samples: 96 });
        assert_eq!(rx.push(1192), Continuity::InOrder);
        // A gap that is not a whole number of packets rounds up.
        assert_eq!(
            rx.push(1250),
            Continuity::Gap {
                samples: 10,
                packets: 1
            }
        );
        assert_eq!(
            rx.push(1298 + 58),
            Continuity::Gap {
                samples: 58,
                packets: 2
            }
        );
        // Up to one second ahead is a gap, beyond it a resync.
        let next = rx.next_timestamp().unwrap();
        assert_eq!(
            rx.push(next + 48_000),
            Continuity::Gap {
                samples: 48_000,
                packets: 1000
            }
        );
        let next = rx.next_timestamp().unwrap();
        assert_eq!(rx.push(next + 48_001), Continuity::Resync);
        let next = rx.next_timestamp().unwrap();
        assert_eq!(rx.push(next - 48_000), Continuity::Late { samples: 48_000 });
        assert_eq!(rx.push(next - 48_001), Continuity::Resync);
        assert_eq!(
            rx.stats(),
            ReceiverStats {
                packets: 11,
                lost: 1004,
                gaps: 4,
                late: 2,
                resyncs: 2
            }
        );
        rx.reset();
        assert_eq!(rx.push(7), Continuity::First);
        assert_eq!(rx.stats().packets, 12);
    }

    #[test]
    fn receiver_follows_timestamps_across_the_wrap() {
        let f = fmt(Encoding::L16, 2, 96_000, PacketTime::Us125);
        let mut rx = Receiver::new(&f);
        assert_eq!(rx.push(u32::MAX - 11), Continuity::First);
        assert_eq!(rx.push(0), Continuity::InOrder);
        assert_eq!(
            rx.push(24),
            Continuity::Gap {
                samples: 12,
                packets: 1
            }
        );
        assert_eq!(rx.push(u32::MAX - 11), Continuity::Late { samples: 48 });
        assert_eq!(rx.stats().lost, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_holds_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            fuzz(&data);
        }

        #[test]
        fn samples_round_trip(
            l24 in any::<bool>(),
            channels in 1u16..=64,
            values in proptest::collection::vec(any::<i32>(), 1..200),
        ) {
            let encoding = if l24 { Encoding::L24 } else { Encoding::L16 };
            let frames = values.len().div_ceil(usize::from(channels));
            let f = Format::new(encoding, channels, 48_000, frames as u32).unwrap_or_else(|_| {
                Format::new(encoding, channels, 48_000, 1).unwrap()
            });
            let mut buf = vec![0u8; f.packet_bytes()];
            let mut p = Payload::new_checked(&mut buf[..], &f).unwrap();
            let shift = 32 - encoding.bits();
            for (i, v) in values.iter().enumerate().take(p.frames() * p.channels()) {
                let (frame, ch) = (i / p.channels(), i % p.channels());
                p.set_sample(frame, ch, *v);
                prop_assert_eq!(p.sample(frame, ch), (*v << shift) >> shift);
            }
        }

        #[test]
        fn in_order_streams_never_report_loss(start in any::<u32>(), n in 1usize..300) {
            let f = fmt(Encoding::L24, 8, 48_000, PacketTime::Us125);
            let mut rx = Receiver::new(&f);
            for i in 0..n {
                let c = rx.push(start.wrapping_add(6 * i as u32));
                prop_assert_eq!(c, if i == 0 { Continuity::First } else { Continuity::InOrder });
            }
            prop_assert_eq!(rx.stats(), ReceiverStats { packets: n as u64, ..Default::default() });
        }
    }
}
