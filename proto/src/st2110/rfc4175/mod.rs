//! ST 2110-20 uncompressed video (RFC 4175): pgroups, the payload header, a packetizer (GPM and
//! BPM) and a depacketizer.
//!
//! # Wire format
//!
//! After the 12-byte RTP header comes the payload header: the Extended Sequence Number (the high
//! 16 bits of a 32-bit sequence) and one or more 6-byte Sample Row Data (SRD) headers, every
//! header before any data; then each SRD's pixel data in header order.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Extended Sequence Number    |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |F|          Line No            |C|           Offset            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Length             |F|          Line No            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C|           Offset            |        pixel data ...         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `Length` counts octets (whole pgroups), `F` is the field (0 when progressive), `Line No` the
//! scan line from 0, `C` says another SRD header follows, `Offset` is the pixel (luma column)
//! where the data starts. One SRD stays within one sample row.
//!
//! # 4:2:0
//!
//! RFC 4175 §4.3 orders a 4:2:0 pgroup as `Y'00 Y'01 Y'10 Y'11 Cb00 Cr00`: two luma samples from
//! each of two vertically adjacent scan lines and the chroma pair they share (10-bit: four
//! columns, 15 octets for 8 pixels). So a pgroup spans two lines, and an SRD addresses a pair of
//! lines: `Line No` is the first (even) line of the pair and the next pair starts at
//! `Line No + 2`; `Offset` is the column of the first pgroup, a multiple of the pgroup's width
//! (`pixels / 2`); `Length` counts the octets of both lines' samples together. GStreamer's
//! `rtpvrawpay`/`rtpvrawdepay` treat I420 the same way (line step 2, column step 2). Here a
//! 4:2:0 frame has `height / 2` sample rows, each covering two scan lines
//! ([`Format::rows`], [`Format::pgroup_lines`]); a line number that is odd or not below the
//! height is refused.
//!
//! # Frame buffers
//!
//! Frames are "rfc4175 frames": the concatenation, in wire order, of every sample row's pgroups,
//! with no padding ([`Format::frame_bytes`]). That is what GStreamer's `rtpvrawdepay` outputs
//! for UYVY (8-bit 4:2:2) and UYVP (10-bit 4:2:2) at widths such as 1920, and what FFmpeg's
//! `bitpacked` encoder expects for yuv422p10. Every packet's data is then one contiguous range
//! of the frame, so a sender sends `[RTP header][payload headers][frame[range]]` by
//! scatter-gather without copying ([`Packetizer`]).
//!
//! # Packing modes
//!
//! - GPM (`PM=2110GPM`): each packet carries up to a configured number of octets of pixel data,
//!   packets run across line ends and then carry several SRDs (at most [`MAX_SRDS`], the
//!   ST 2110-20 limit). 1080p 4:2:2 10-bit at 1200 octets: 4320 packets, four per line.
//! - BPM (`PM=2110BPM`): pixel data is counted in 180-octet blocks (a whole number of pgroups
//!   for every pgroup that divides 180: all but 4:2:2 16-bit) and every packet carries seven of
//!   them, 1260 octets, except the last of the frame, which carries the rest. Line ends fall
//!   anywhere in a packet: the data simply continues on the next line under a second SRD (the
//!   behaviour of MTL; 1080p 4:2:2 10-bit is 4115 packets, the last 360 octets).
//!
//! Interlace (F = 1, per-field markers) is not carried yet; SRDs with F set are refused.

#![forbid(unsafe_code)]

mod depacketizer;
mod packetizer;
mod pgroup;

pub use depacketizer::{Counters, Depacketizer, FrameReport, FrameSink, Pushed};
pub use packetizer::{BPM_BLOCK_BYTES, BPM_PACKET_BYTES, Packetizer, PacketizerError, PackingMode};
pub use pgroup::{Format, FormatError, MAX_DIMENSION, PGroup, pgroup};

use std::fmt;

use crate::st2110::rtp;

/// Length of the Extended Sequence Number field.
pub const ESN_LEN: usize = 2;

/// Most SRD headers in one packet a sender may write (ST 2110-20: one, two or three).
pub const MAX_SRDS: usize = 3;

/// Most payload-header octets a [`Packetizer`] writes: the ESN and [`MAX_SRDS`] SRD headers.
pub const MAX_HEADERS_LEN: usize = ESN_LEN + MAX_SRDS * Srd::LEN;

/// Most SRD headers in one packet a receiver accepts. RFC 4175 sets no limit; GStreamer packs a
/// narrow picture's lines into one packet with one SRD each, so this is well above [`MAX_SRDS`].
pub const MAX_RECEIVED_SRDS: usize = 64;

/// Why a packet was refused. Nothing of a refused packet is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketError {
    /// Not an RTP packet.
    Rtp(rtp::Error),
    /// The payload ends before the ESN or before an SRD header (the last header has C = 0).
    Truncated,
    /// More than [`MAX_RECEIVED_SRDS`] SRD headers.
    TooManySrds,
    /// The SRD lengths add up to more than the data after the headers.
    DataOverrun,
    /// An SRD length is 0 or not a multiple of the pgroup size.
    BadLength,
    /// An SRD line is not below the height, or (4:2:0) odd.
    BadLine,
    /// An SRD offset is not on a pgroup boundary, or its data runs past the width.
    BadOffset,
    /// An SRD has F = 1 on a progressive format.
    FieldBit,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rtp(e) => write!(f, "{e}"),
            Self::Truncated => f.write_str("payload header truncated (ESN or SRD header)"),
            Self::TooManySrds => write!(f, "more than {MAX_RECEIVED_SRDS} SRD headers"),
            Self::DataOverrun => f.write_str("SRD lengths exceed the packet's data"),
            Self::BadLength => f.write_str("SRD length is 0 or not a whole number of pgroups"),
            Self::BadLine => f.write_str("SRD line number outside the picture"),
            Self::BadOffset => {
                f.write_str("SRD offset off a pgroup boundary or data past the line end")
            }
            Self::FieldBit => f.write_str("SRD field bit set on a progressive format"),
        }
    }
}

impl std::error::Error for PacketError {}

impl From<rtp::Error> for PacketError {
    fn from(e: rtp::Error) -> Self {
        Self::Rtp(e)
    }
}

/// One Sample Row Data header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Srd {
    /// Octets of pixel data for this SRD.
    pub length: u16,
    /// F: second field (interlaced); false when progressive.
    pub field: bool,
    /// Scan line (15 bits).
    pub line: u16,
    /// C: another SRD header follows this one.
    pub continuation: bool,
    /// Pixel offset of the first pgroup in the line (15 bits).
    pub offset: u16,
}

impl Srd {
    /// Octets of one SRD header.
    pub const LEN: usize = 6;

    /// Reads a header.
    pub fn parse(bytes: &[u8; Self::LEN]) -> Self {
        let line = u16::from_be_bytes([bytes[2], bytes[3]]);
        let offset = u16::from_be_bytes([bytes[4], bytes[5]]);
        Self {
            length: u16::from_be_bytes([bytes[0], bytes[1]]),
            field: line & 0x8000 != 0,
            line: line & 0x7fff,
            continuation: offset & 0x8000 != 0,
            offset: offset & 0x7fff,
        }
    }

    /// Writes the header; `line` and `offset` lose any bit above their 15.
    pub fn emit(&self, bytes: &mut [u8; Self::LEN]) {
        let line = (u16::from(self.field) << 15) | (self.line & 0x7fff);
        let offset = (u16::from(self.continuation) << 15) | (self.offset & 0x7fff);
        bytes[0..2].copy_from_slice(&self.length.to_be_bytes());
        bytes[2..4].copy_from_slice(&line.to_be_bytes());
        bytes[4..6].copy_from_slice(&offset.to_be_bytes());
    }
}

/// A checked view of an RFC 4175 payload (the RTP payload: ESN, SRD headers, data).
///
/// [`new_checked`](Self::new_checked) walks the headers until C = 0, refusing more than
/// [`MAX_RECEIVED_SRDS`], and checks that the SRD lengths fit the data; the geometry (lines,
/// offsets, pgroup multiples) is the [`Depacketizer`]'s to check, as it needs the format.
/// Octets after the last SRD's data are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<T: AsRef<[u8]>> {
    buffer: T,
    srds: usize,
}

impl<T: AsRef<[u8]>> Payload<T> {
    /// Validates and wraps `buffer`.
    pub fn new_checked(buffer: T) -> Result<Self, PacketError> {
        let data = buffer.as_ref();
        if data.len() < ESN_LEN {
            return Err(PacketError::Truncated);
        }
        let mut srds = 0;
        let mut total = 0usize;
        loop {
            if srds == MAX_RECEIVED_SRDS {
                return Err(PacketError::TooManySrds);
            }
            let srd = header_at(data, srds).ok_or(PacketError::Truncated)?;
            srds += 1;
            total += usize::from(srd.length);
            if !srd.continuation {
                break;
            }
        }
        if ESN_LEN + srds * Srd::LEN + total > data.len() {
            return Err(PacketError::DataOverrun);
        }
        Ok(Self { buffer, srds })
    }

    /// The Extended Sequence Number field (the high half of the sender's 32-bit sequence;
    /// GStreamer and FFmpeg send 0).
    pub fn extended_sequence_number(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Number of SRD headers (at least 1).
    pub fn srd_count(&self) -> usize {
        self.srds
    }

    /// SRD header `index`, or `None` beyond [`srd_count`](Self::srd_count).
    pub fn srd(&self, index: usize) -> Option<Srd> {
        (index < self.srds)
            .then(|| header_at(self.buffer.as_ref(), index))
            .flatten()
    }

    /// Octets of the payload header: ESN and SRD headers.
    pub fn headers_len(&self) -> usize {
        ESN_LEN + self.srds * Srd::LEN
    }

    /// Everything after the payload header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[self.headers_len()..]
    }

    /// Each SRD with its data, in order.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            headers: &self.buffer.as_ref()[ESN_LEN..self.headers_len()],
            data: self.data(),
        }
    }
}

fn header_at(data: &[u8], index: usize) -> Option<Srd> {
    let at = ESN_LEN + index * Srd::LEN;
    data.get(at..at + Srd::LEN)?.first_chunk().map(Srd::parse)
}

/// Iterator over a [`Payload`]'s SRDs and their data.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    headers: &'a [u8],
    data: &'a [u8],
}

impl<'a> Iterator for Segments<'a> {
    type Item = (Srd, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.headers.split_first_chunk::<{ Srd::LEN }>()?;
        let srd = Srd::parse(head);
        let (data, after) = self.data.split_at_checked(usize::from(srd.length))?;
        self.headers = rest;
        self.data = after;
        Some((srd, data))
    }
}

/// Fuzz entry point. Parses `data` as a payload and checks the view (header round trip, the
/// segments tile the data), then drives a small [`Depacketizer`] with packets cut from `data`
/// and checks that nothing is written outside the frame buffer, that refused packets write
/// nothing, that accepted ones land where their SRDs say, and that the counters add up.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    fuzz_payload(data);
    depacketizer::fuzz(data);
}

fn fuzz_payload(data: &[u8]) {
    let Ok(payload) = Payload::new_checked(data) else {
        return;
    };
    let n = payload.srd_count();
    assert!((1..=MAX_RECEIVED_SRDS).contains(&n));
    assert_eq!(payload.srd(n), None);
    let mut rebuilt = payload.extended_sequence_number().to_be_bytes().to_vec();
    let mut covered = 0;
    for (i, (srd, bytes)) in payload.segments().enumerate() {
        assert_eq!(payload.srd(i), Some(srd));
        assert_eq!(srd.continuation, i + 1 < n);
        assert_eq!(bytes.len(), usize::from(srd.length));
        let mut head = [0; Srd::LEN];
        srd.emit(&mut head);
        rebuilt.extend_from_slice(&head);
        covered += bytes.len();
    }
    assert_eq!(payload.segments().count(), n);
    assert_eq!(rebuilt[..], data[..payload.headers_len()]);
    assert!(covered <= payload.data().len());
}

#[cfg(test)]
mod tests;
