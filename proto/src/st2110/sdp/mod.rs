//! Session descriptions (SDP, RFC 8866) of ST 2110 streams, parsed and written.
//!
//! A [`Session`] holds the `o=`, `s=`, `c=` and `t=` lines, the session-level attributes and one
//! [`Media`] per `m=` section. Each media section carries one payload type, its [`RtpMap`] and
//! an [`Fmtp`] typed by encoding: [`VideoFmtp`] for `raw/90000` (ST 2110-20, RFC 4175),
//! [`JxsvFmtp`] for `jxsv/90000` (ST 2110-22, RFC 9134), [`AncFmtp`] for `smpte291/90000`
//! (ST 2110-40, RFC 8331) and [`AudioFmtp`] for `L16` / `L24` (ST 2110-30). Anything else is
//! kept verbatim, so an SDP parses, prints and parses again to the same value.
//!
//! Two parsers:
//!
//! - [`Session::parse`] is lenient: it takes what FFmpeg and GStreamer write (LF or CRLF, any
//!   case of encoding names, `;`, `; ` or nothing after the last fmtp parameter, unknown lines
//!   and attributes), yet refuses what it cannot read correctly (a bad address, `depth=11`,
//!   `width=0`, `exactframerate=60000/0`, an rtpmap for a payload type the `m=` line lacks, ...).
//!   ST 2110 fields it does not find are `None`; [`Session::warnings`] lists them.
//! - [`Session::parse_strict`] also requires every field ST 2110-10/-20/-22/-30 makes mandatory.
//!
//! Every refusal is an [`SdpError`] naming the 1-based line, the line itself, what was wrong and
//! what is allowed, e.g.
//! `line 7 "a=fmtp:96 sampling=YCbCr-4:2:2; depth=11": depth must be 8, 10, 12, 16 or 16f`.
//!
//! Writing: `Display` for [`Session`] prints CRLF lines in RFC 8866 order (v, o, s, i, u, e, p,
//! c, b, t, r, z, k, a, then the media sections), and [`Session::st2110_20`],
//! [`Session::st2110_22`], [`Session::st2110_30`] and [`Session::st2110_40`] build the SDP of
//! one of our senders (with [`Session::with_st2022_7`] adding a second leg).
//!
//! This is control-path code: values are owned `String`s and `Vec`s.

mod parse;
mod write;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use super::{Depth, FrameRate, Sampling};

pub use write::{AudioEncoding, AudioParams, TxParams};

/// A session description: the session-level lines and the media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `o=`: who made the session and which version of it this is.
    pub origin: Origin,
    /// `s=`: the session name.
    pub name: String,
    /// The session-level `c=`, used by media sections without their own.
    pub connection: Option<Connection>,
    /// `t=`: start and stop time (`0 0` for an unbounded session).
    pub timing: Timing,
    /// The other session-level lines (`i= u= e= p= b= r= z= k=`), kept verbatim in RFC 8866
    /// order (a parsed session has them sorted by type, in document order within a type).
    pub fields: Vec<Field>,
    /// Session-level `a=` lines in document order, e.g. `group:DUP primary secondary`, or a
    /// `ts-refclk` that applies to every media section.
    pub attributes: Vec<Attribute>,
    /// The `m=` sections in document order.
    pub media: Vec<Media>,
}

/// The `o=` line: `<username> <session id> <session version> IN IP4|IP6 <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The originator's login, `-` when there is none.
    pub username: String,
    /// A number that identifies the session together with the other fields.
    pub session_id: u64,
    /// Incremented whenever the session description changes.
    pub session_version: u64,
    /// The address of the machine that made the session.
    pub addr: IpAddr,
}

/// A `c=` line: `IN IP4 <address>[/<ttl>]` or `IN IP6 <address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The destination (a multicast group or a unicast address).
    pub addr: IpAddr,
    /// The multicast TTL (`/64`); written for IPv4 addresses only.
    pub ttl: Option<u8>,
}

/// The `t=` line: start and stop times in NTP seconds, `0 0` for an unbounded session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Start time, 0 when unbounded.
    pub start: u64,
    /// Stop time, 0 when unbounded.
    pub stop: u64,
}

/// A line this module keeps without interpreting it: `<kind>=<value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The type letter: one of `i u e p b r z k` (session level) or `i b k` (media level).
    pub kind: char,
    /// Everything after the `=`.
    pub value: String,
}

/// An `a=` line: `a=<name>` or `a=<name>:<value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name (before the first `:`).
    pub name: String,
    /// Everything after the first `:`; `None` for a property attribute such as `a=recvonly`.
    pub value: Option<String>,
}

impl Attribute {
    /// An attribute with a value.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value.to_owned()),
        }
    }
}

/// One `m=` section. ST 2110 media sections carry exactly one payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The media type of the `m=` line.
    pub kind: MediaKind,
    /// The UDP destination port.
    pub port: u16,
    /// The transport protocol, `RTP/AVP` for ST 2110.
    pub protocol: String,
    /// The RTP payload type, 0 to 127.
    pub payload_type: u8,
    /// The media-level `c=`; `None` means the session-level one applies.
    pub connection: Option<Connection>,
    /// The other media-level lines (`i= b= k=`) verbatim, e.g. ST 2110-22's `b=AS:<kb/s>`.
    pub fields: Vec<Field>,
    /// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
    pub rtpmap: RtpMap,
    /// `a=fmtp:<pt> ...`, typed by the rtpmap's encoding.
    pub fmtp: Fmtp,
    /// `a=ptime:` (ST 2110-30 packet time).
    pub ptime: Option<Ptime>,
    /// The first `a=ts-refclk:` of the section (ST 2110-10, RFC 7273); later ones stay in
    /// [`attributes`](Self::attributes).
    pub ts_refclk: Option<RefClock>,
    /// `a=mediaclk:` verbatim, e.g. `direct=0` (RFC 7273).
    pub mediaclk: Option<String>,
    /// `a=source-filter: incl IN IP4 <group> <source>` (RFC 4570).
    pub source_filter: Option<SourceFilter>,
    /// `a=mid:` (RFC 5888), naming the section in an ST 2022-7 `a=group:DUP`.
    pub mid: Option<String>,
    /// The other media-level `a=` lines in document order.
    pub attributes: Vec<Attribute>,
}

/// The media type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    /// `video`
    Video,
    /// `audio`
    Audio,
    /// Anything else (e.g. `application`), verbatim.
    Other(String),
}

impl MediaKind {
    /// The `m=` spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Other(s) => s,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The encoding name as written (`raw`, `RAW`, `L24`, ...); compared without regard to case.
    pub encoding: String,
    /// The RTP clock rate in Hz (90000 for video, the sample rate for audio).
    pub clock_rate: u32,
    /// The audio channel count; `None` when not written (which means 1).
    pub channels: Option<u16>,
}

impl RtpMap {
    /// An rtpmap without a channel count.
    pub fn new(encoding: &str, clock_rate: u32) -> Self {
        Self {
            encoding: encoding.to_owned(),
            clock_rate,
            channels: None,
        }
    }

    /// The channel count, 1 when not written.
    pub fn channel_count(&self) -> u16 {
        self.channels.unwrap_or(1)
    }
}

/// The format parameters of a media section, typed by its rtpmap's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fmtp {
    /// `raw/90000`: ST 2110-20 uncompressed video.
    Raw(VideoFmtp),
    /// `jxsv/90000`: ST 2110-22 JPEG XS (RFC 9134).
    Jxsv(JxsvFmtp),
    /// `smpte291/90000`: ST 2110-40 ancillary data (RFC 8331).
    Smpte291(AncFmtp),
    /// `L16` or `L24`: ST 2110-30 PCM audio.
    Audio(AudioFmtp),
    /// Another encoding's parameters, verbatim (the text after `a=fmtp:<pt> `).
    Other(String),
    /// Another encoding without an `a=fmtp` line.
    None,
}

/// A format parameter this module does not interpret: `name=value`, or a bare `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The parameter name.
    pub name: String,
    /// The value; `None` for a bare flag.
    pub value: Option<String>,
}

/// ST 2110-20 packing mode (`PM=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackingMode {
    /// `2110GPM`: general packing, packets may span lines.
    General,
    /// `2110BPM`: block packing, 180-octet blocks.
    Block,
}

/// ST 2110-21 sender type (`TP=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderType {
    /// `2110TPN`: narrow, gapped.
    Narrow,
    /// `2110TPNL`: narrow linear.
    NarrowLinear,
    /// `2110TPW`: wide.
    Wide,
}

/// Signal range (`RANGE=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    /// `NARROW` (the default).
    Narrow,
    /// `FULLPROTECT`
    FullProtect,
    /// `FULL`
    Full,
}

/// Pixel aspect ratio (`PAR=<width>:<height>`), both non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AspectRatio {
    /// Horizontal part.
    pub width: u32,
    /// Vertical part.
    pub height: u32,
}

/// The fmtp of `raw/90000` (ST 2110-20, RFC 4175).
///
/// `sampling`, `depth`, `width` and `height` are needed to read the stream at all, so even the
/// lenient parser requires them. The other fields ST 2110-20 makes mandatory (`exactframerate`,
/// `colorimetry`, `PM`, `SSN`) are `None` when absent; [`require_st2110`](Self::require_st2110)
/// names the first one missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFmtp {
    /// `sampling=`
    pub sampling: Sampling,
    /// `depth=`
    pub depth: Depth,
    /// `width=`, 1 to 32767 pixels.
    pub width: u32,
    /// `height=`, 1 to 32767 lines (of a frame, also when interlaced).
    pub height: u32,
    /// `exactframerate=` (frames per second, also when interlaced).
    pub exactframerate: Option<FrameRate>,
    /// `colorimetry=`, e.g. `BT709`, `BT2020`, `BT2100`.
    pub colorimetry: Option<String>,
    /// `PM=`
    pub packing_mode: Option<PackingMode>,
    /// `SSN=`, e.g. `ST2110-20:2017`.
    pub ssn: Option<String>,
    /// `TCS=` transfer characteristic, e.g. `SDR`, `PQ`, `HLG` (absent means SDR).
    pub tcs: Option<String>,
    /// `RANGE=`
    pub range: Option<Range>,
    /// `PAR=`
    pub par: Option<AspectRatio>,
    /// `MAXUDP=`: the largest UDP payload, e.g. 8960 for extended-size datagrams.
    pub maxudp: Option<u16>,
    /// `interlace`: the video is interlaced.
    pub interlace: bool,
    /// `segmented`: progressive segmented frames (with `interlace`).
    pub segmented: bool,
    /// `TP=`
    pub sender_type: Option<SenderType>,
    /// `TROFF=`: the sender's TROFFSET in microseconds.
    pub troff: Option<u32>,
    /// `CMAX=`
    pub cmax: Option<u32>,
    /// Parameters this module does not interpret, in document order.
    pub extra: Vec<Param>,
}

impl VideoFmtp {
    /// What our ST 2110-20 senders announce: BT709 SDR, general packing, SSN `ST2110-20:2017`,
    /// narrow sender, progressive.
    pub fn new(sampling: Sampling, depth: Depth, width: u32, height: u32, rate: FrameRate) -> Self {
        Self {
            exactframerate: Some(rate),
            colorimetry: Some("BT709".to_owned()),
            packing_mode: Some(PackingMode::General),
            ssn: Some("ST2110-20:2017".to_owned()),
            tcs: Some("SDR".to_owned()),
            sender_type: Some(SenderType::Narrow),
            ..Self::bare(sampling, depth, width, height)
        }
    }

    /// Only the four parameters RFC 4175 cannot do without (what FFmpeg writes).
    pub fn bare(sampling: Sampling, depth: Depth, width: u32, height: u32) -> Self {
        Self {
            sampling,
            depth,
            width,
            height,
            exactframerate: None,
            colorimetry: None,
            packing_mode: None,
            ssn: None,
            tcs: None,
            range: None,
            par: None,
            maxudp: None,
            interlace: false,
            segmented: false,
            sender_type: None,
            troff: None,
            cmax: None,
            extra: Vec::new(),
        }
    }

    /// `Ok` when every parameter ST 2110-20 requires is present, else [`SdpError::Missing`]
    /// naming the first one absent (`exactframerate`, `colorimetry`, `PM`, `SSN`).
    pub fn require_st2110(&self) -> Result<(), SdpError> {
        first_missing(self.missing())
    }

    fn missing(&self) -> Vec<Missing> {
        let st20 = |present: bool, field| (!present).then_some(Missing::fmtp(field, "ST 2110-20"));
        [
            st20(self.exactframerate.is_some(), "exactframerate"),
            st20(self.colorimetry.is_some(), "colorimetry"),
            st20(self.packing_mode.is_some(), "PM"),
            st20(self.ssn.is_some(), "SSN"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// RFC 9134 packetization mode (`packetmode=`, the K bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JxsvPacketMode {
    /// `0`: codestream mode.
    Codestream,
    /// `1`: slice mode.
    Slice,
}

/// RFC 9134 transmission mode (`transmode=`, the T bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JxsvTransMode {
    /// `0`: packets may be sent out of order.
    OutOfOrder,
    /// `1`: sequential (the default).
    Sequential,
}

/// The fmtp of `jxsv/90000` (ST 2110-22, RFC 9134). All fields are optional to the lenient
/// parser; [`require_st2110`](Self::require_st2110) checks `packetmode`, `width`, `height`
/// and `TP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JxsvFmtp {
    /// `packetmode=` (required by RFC 9134).
    pub packetmode: Option<JxsvPacketMode>,
    /// `transmode=` (absent means sequential).
    pub transmode: Option<JxsvTransMode>,
    /// `profile=`, e.g. `High444.12`.
    pub profile: Option<String>,
    /// `level=`, e.g. `2k-1`.
    pub level: Option<String>,
    /// `sublevel=`, e.g. `Sublev3bpp`.
    pub sublevel: Option<String>,
    /// `sampling=`
    pub sampling: Option<Sampling>,
    /// `depth=`
    pub depth: Option<Depth>,
    /// `width=`, 1 to 32767.
    pub width: Option<u32>,
    /// `height=`, 1 to 32767.
    pub height: Option<u32>,
    /// `exactframerate=`
    pub exactframerate: Option<FrameRate>,
    /// `colorimetry=`
    pub colorimetry: Option<String>,
    /// `TCS=`
    pub tcs: Option<String>,
    /// `TP=`
    pub sender_type: Option<SenderType>,
    /// `SSN=`, e.g. `ST2110-22:2019`.
    pub ssn: Option<String>,
    /// Parameters this module does not interpret, in document order.
    pub extra: Vec<Param>,
}

impl JxsvFmtp {
    /// What our ST 2110-22 senders announce: codestream packetization, sequential, narrow
    /// sender, SSN `ST2110-22:2019`, BT709 SDR.
    pub fn new(width: u32, height: u32, rate: FrameRate) -> Self {
        Self {
            packetmode: Some(JxsvPacketMode::Codestream),
            transmode: Some(JxsvTransMode::Sequential),
            width: Some(width),
            height: Some(height),
            exactframerate: Some(rate),
            colorimetry: Some("BT709".to_owned()),
            tcs: Some("SDR".to_owned()),
            sender_type: Some(SenderType::Narrow),
            ssn: Some("ST2110-22:2019".to_owned()),
            ..Self::default()
        }
    }

    /// `Ok` when `packetmode` (RFC 9134), `width`, `height` and `TP` (ST 2110-22) are present,
    /// else [`SdpError::Missing`] naming the first one absent.
    pub fn require_st2110(&self) -> Result<(), SdpError> {
        first_missing(self.missing())
    }

    fn missing(&self) -> Vec<Missing> {
        let need =
            |present: bool, field, standard| (!present).then_some(Missing::fmtp(field, standard));
        [
            need(self.packetmode.is_some(), "packetmode", "RFC 9134"),
            need(self.width.is_some(), "width", "ST 2110-22"),
            need(self.height.is_some(), "height", "ST 2110-22"),
            need(self.sender_type.is_some(), "TP", "ST 2110-22"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// One `DID_SDID={0xDD,0xSS}` of an ancillary-data fmtp: the (8-bit) data identifier and
/// secondary data identifier of an ANC packet type the stream may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DidSdid {
    /// Data identifier.
    pub did: u8,
    /// Secondary data identifier.
    pub sdid: u8,
}

/// The fmtp of `smpte291/90000` (ST 2110-40, RFC 8331). Nothing in it is mandatory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AncFmtp {
    /// Every `DID_SDID=` in document order.
    pub did_sdid: Vec<DidSdid>,
    /// `VPID_Code=`: byte 1 of the SMPTE ST 352 payload identifier.
    pub vpid_code: Option<u8>,
    /// `exactframerate=`
    pub exactframerate: Option<FrameRate>,
    /// `TM=`: the transmission model, verbatim.
    pub tm: Option<String>,
    /// `SSN=`, e.g. `ST2110-40:2023`.
    pub ssn: Option<String>,
    /// Parameters this module does not interpret, in document order.
    pub extra: Vec<Param>,
}

/// The fmtp of `L16` / `L24` (ST 2110-30). Absent when the section has no `a=fmtp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioFmtp {
    /// `channel-order=`, e.g. `SMPTE2110.(ST)`, verbatim.
    pub channel_order: Option<String>,
    /// Parameters this module does not interpret, in document order.
    pub extra: Vec<Param>,
}

/// A packet time (`a=ptime:`), kept in whole microseconds: `1` is 1000 µs, `0.125` is 125 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ptime(u32);

impl Ptime {
    /// 1 ms, ST 2110-30 level A.
    pub const MS_1: Self = Self(1000);
    /// 125 µs, ST 2110-30 levels B and C.
    pub const US_125: Self = Self(125);

    /// A packet time of `us` microseconds; `None` when zero.
    pub const fn from_micros(us: u32) -> Option<Self> {
        if us == 0 { None } else { Some(Self(us)) }
    }

    /// The packet time in microseconds.
    pub const fn as_micros(self) -> u32 {
        self.0
    }
}

/// The reference clock of `a=ts-refclk:` (RFC 7273, ST 2110-10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefClock {
    /// `ptp=IEEE1588-2008:<gmid>:<domain>`: a PTP grandmaster (EUI-64 clock identity) and
    /// domain number (0 to 127).
    Ptp {
        /// Grandmaster clock identity, written `XX-XX-XX-XX-XX-XX-XX-XX`.
        gmid: [u8; 8],
        /// PTP domain number.
        domain: u8,
    },
    /// `ptp=IEEE1588-2008:traceable`: PTP traceable to TAI, grandmaster not named.
    PtpTraceable,
    /// `localmac=<mac>`: the sender's free-running clock, named by its MAC address.
    LocalMac([u8; 6]),
    /// Any other clock source (`ntp=...`, another PTP version, ...), verbatim.
    Other(String),
}

/// `a=source-filter: incl IN IP4 <dest> <source>`: the one source of a multicast group
/// (IGMPv3 source-specific multicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceFilter {
    /// The destination (multicast group).
    pub dest: IpAddr,
    /// The only source allowed to send to it.
    pub source: IpAddr,
}

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line is malformed, holds a value out of range, or (strict parsing) lacks a field its
    /// standard requires.
    #[error("line {line} \"{text}\": {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line, without its line ending.
        text: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A line every SDP must have is absent.
    #[error("no {kind}= line ({what}): an SDP needs v=, o=, s= and t= lines")]
    MissingLine {
        /// The type letter.
        kind: char,
        /// What the line holds.
        what: &'static str,
    },
    /// A field the standard requires is absent (from [`VideoFmtp::require_st2110`] and
    /// [`JxsvFmtp::require_st2110`]).
    #[error("missing {field}: {standard} requires it")]
    Missing {
        /// The field, e.g. `exactframerate` or `a=ts-refclk`.
        field: &'static str,
        /// The standard that requires it, e.g. `ST 2110-20`.
        standard: &'static str,
    },
}

/// A field ST 2110 requires that the lenient parser did not find ([`Session::warnings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpWarning {
    /// Index of the media section in [`Session::media`].
    pub media: usize,
    /// The missing field, e.g. `exactframerate` or `a=ts-refclk`.
    pub field: &'static str,
    /// The standard that requires it.
    pub standard: &'static str,
}

impl fmt::Display for SdpWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "media {}: missing {}: {} requires it",
            self.media, self.field, self.standard
        )
    }
}

/// A missing field and whether the fmtp line (rather than the `m=` line) is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Missing {
    field: &'static str,
    standard: &'static str,
    in_fmtp: bool,
}

impl Missing {
    const fn fmtp(field: &'static str, standard: &'static str) -> Self {
        Self {
            field,
            standard,
            in_fmtp: true,
        }
    }

    const fn media(field: &'static str, standard: &'static str) -> Self {
        Self {
            field,
            standard,
            in_fmtp: false,
        }
    }

    fn error(self) -> SdpError {
        SdpError::Missing {
            field: self.field,
            standard: self.standard,
        }
    }
}

fn first_missing(missing: Vec<Missing>) -> Result<(), SdpError> {
    missing.first().map_or(Ok(()), |m| Err(m.error()))
}

impl Session {
    /// Parses an SDP leniently: ST 2110 fields that are absent become `None` (see
    /// [`warnings`](Self::warnings)); anything present must be well formed.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        parse::parse(text, false)
    }

    /// Parses an SDP and requires what ST 2110 makes mandatory in every media section: an
    /// ST 2110 encoding, the fmtp fields of [`VideoFmtp::require_st2110`] and
    /// [`JxsvFmtp::require_st2110`], `a=ptime` for audio, `b=AS` for ST 2110-22, a `c=` line
    /// and `a=ts-refclk` and `a=mediaclk` (in the section or at session level). The error names
    /// the fmtp line for a missing fmtp field, else the `m=` line.
    pub fn parse_strict(text: &str) -> Result<Self, SdpError> {
        parse::parse(text, true)
    }

    /// Every field that [`parse_strict`](Self::parse_strict) would require and this session
    /// lacks, media section by media section.
    pub fn warnings(&self) -> Vec<SdpWarning> {
        let mut out = Vec::new();
        for (i, media) in self.media.iter().enumerate() {
            let missing = self.missing_st2110(media);
            out.extend(missing.iter().map(|m| SdpWarning {
                media: i,
                field: m.field,
                standard: m.standard,
            }));
        }
        out
    }

    /// The first session-level attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The `c=` that applies to `media`: its own, else the session's.
    pub fn connection_of<'a>(&'a self, media: &'a Media) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    fn missing_st2110(&self, media: &Media) -> Vec<Missing> {
        let mut missing = match &media.fmtp {
            Fmtp::Raw(v) => v.missing(),
            Fmtp::Jxsv(j) => j.missing(),
            Fmtp::Smpte291(_) | Fmtp::Audio(_) => Vec::new(),
            Fmtp::Other(_) | Fmtp::None => {
                vec![Missing::media(NOT_ST2110, "ST 2110")]
            }
        };
        if matches!(media.fmtp, Fmtp::Audio(_)) && media.ptime.is_none() {
            missing.push(Missing::media("a=ptime", "ST 2110-30"));
        }
        if matches!(media.fmtp, Fmtp::Jxsv(_)) && media.bandwidth_as().is_none() {
            missing.push(Missing::media("b=AS", "ST 2110-22"));
        }
        if self.connection_of(media).is_none() {
            missing.push(Missing::media("c=", "RFC 8866"));
        }
        let at_session = |name| self.attribute(name).is_some();
        if media.ts_refclk.is_none() && !at_session("ts-refclk") {
            missing.push(Missing::media("a=ts-refclk", "ST 2110-10"));
        }
        if media.mediaclk.is_none() && !at_session("mediaclk") {
            missing.push(Missing::media("a=mediaclk", "ST 2110-10"));
        }
        missing
    }
}

/// The "field" reported for a media section whose encoding ST 2110 does not define.
const NOT_ST2110: &str = "an ST 2110 encoding (raw, jxsv, smpte291, L16 or L24)";

impl std::str::FromStr for Session {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<Self, SdpError> {
        Self::parse(s)
    }
}

impl Media {
    /// The first media-level attribute called `name` (other than the typed ones).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The `b=AS:<kb/s>` bandwidth of the section, when it has a well-formed one.
    pub fn bandwidth_as(&self) -> Option<u64> {
        self.fields
            .iter()
            .filter(|f| f.kind == 'b')
            .find_map(|f| f.value.strip_prefix("AS:")?.parse().ok())
    }
}

/// Fuzz entry point: parses `data` (as lossy UTF-8) leniently and strictly; whatever parses is
/// written, parsed again and must come back equal, and written again to the same text.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lenient = Session::parse(&text);
    if let Ok(strict) = Session::parse_strict(&text) {
        assert_eq!(
            lenient.as_ref().ok(),
            Some(&strict),
            "strict parse differs from lenient"
        );
        assert!(
            strict.warnings().is_empty(),
            "a strictly parsed session has warnings"
        );
    }
    let Ok(session) = lenient else { return };
    let written = session.to_string();
    assert!(written.ends_with("\r\n"), "written SDP lacks a final CRLF");
    let again = match Session::parse(&written) {
        Ok(again) => again,
        Err(e) => panic!("written SDP does not parse: {e}\n{written}"),
    };
    assert_eq!(again, session, "round trip differs:\n{written}");
    assert_eq!(again.to_string(), written, "second write differs");
    let _ = session.warnings();
}
