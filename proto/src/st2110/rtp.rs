//! The RTP fixed header (RFC 3550 §5.1), 16-bit sequence extension, and RTP timestamps from TAI
//! (ST 2110-10).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | extension (X=1): profile (16) | length in 32-bit words (16)   |
//! |                        extension data ...                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 payload ...   | padding (P=1), last octet = count |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - [`Packet`]: a checked view over a buffer holding one RTP packet, with typed accessors and
//!   setters; [`Header`] is the small `Copy` representation a sender fills in and emits.
//! - [`SeqExtender`]: turns the wire's 16-bit sequence numbers into a monotone 64-bit extended
//!   sequence and classifies each packet (in order with a gap, late, duplicate, stray). It never
//!   looks at a payload's extended-sequence field: GStreamer and FFmpeg always send it as 0.
//! - [`rtp_timestamp`]: the ST 2110-10 media clock, exact.

#![forbid(unsafe_code)]

use std::fmt;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;

/// The only RTP version there is.
pub const VERSION: u8 = 2;

mod field {
    use std::ops::Range;

    pub const FLAGS: usize = 0;
    pub const MARKER_PT: usize = 1;
    pub const SEQ: Range<usize> = 2..4;
    pub const TIMESTAMP: Range<usize> = 4..8;
    pub const SSRC: Range<usize> = 8..12;
}

/// Why a buffer is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Shorter than its fixed header, CSRC list or header extension.
    Truncated,
    /// The version field is not 2.
    BadVersion,
    /// The padding bit is set but the padding count is 0 or runs into the header.
    BadPadding,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "RTP packet truncated (fixed header, CSRC list or extension)",
            Self::BadVersion => "RTP version is not 2",
            Self::BadPadding => "RTP padding count is 0 or longer than the payload",
        })
    }
}

impl std::error::Error for Error {}

/// A read/write view of one RTP packet in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len): afterwards no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, that the CSRC list and the extension (when X is set) fit, and that
    /// the padding (when P is set) is at least one octet and fits after the header.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let header_len = self.checked_header_len().ok_or(Error::Truncated)?;
        if self.padding() {
            let pad = usize::from(self.buffer.as_ref()[len - 1]);
            if pad == 0 || header_len + pad > len {
                return Err(Error::BadPadding);
            }
        }
        Ok(())
    }

    /// The header length with CSRCs and extension, or `None` when they overrun the buffer.
    fn checked_header_len(&self) -> Option<usize> {
        let data = self.buffer.as_ref();
        let mut len = HEADER_LEN + 4 * usize::from(self.csrc_count());
        if self.extension() {
            let words = data.get(len + 2..len + 4)?;
            len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        (len <= data.len()).then_some(len)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (2 for every packet [`new_checked`](Self::new_checked) accepts).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] >> 6
    }

    /// Padding bit: the last octet counts padding octets at the end of the packet.
    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & 0x20 != 0
    }

    /// Extension bit: a header extension follows the CSRC list.
    pub fn extension(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & 0x10 != 0
    }

    /// Number of CSRC identifiers after the fixed header (0..=15).
    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & 0x0f
    }

    /// Marker bit (ST 2110-20: last packet of a frame or field).
    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[field::MARKER_PT] & 0x80 != 0
    }

    /// Payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[field::MARKER_PT] & 0x7f
    }

    /// Sequence number (16 bits; see [`SeqExtender`]).
    pub fn sequence_number(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::TIMESTAMP])
    }

    /// Synchronization source identifier.
    pub fn ssrc(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SSRC])
    }

    /// CSRC identifier `index` (`< csrc_count()`), or `None`.
    pub fn csrc(&self, index: u8) -> Option<u32> {
        if index >= self.csrc_count() {
            return None;
        }
        let at = HEADER_LEN + 4 * usize::from(index);
        self.buffer.as_ref().get(at..at + 4).map(be32)
    }

    /// Length of the header: fixed part, CSRC list and extension.
    pub fn header_len(&self) -> usize {
        self.checked_header_len()
            .unwrap_or(self.buffer.as_ref().len())
    }

    /// Number of padding octets at the end (0 when the padding bit is clear).
    pub fn padding_len(&self) -> usize {
        let data = self.buffer.as_ref();
        match (self.padding(), data.last()) {
            (true, Some(&n)) => usize::from(n),
            _ => 0,
        }
    }

    /// The payload: after the CSRCs and the extension, before the padding.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let start = self.header_len();
        let end = data.len().saturating_sub(self.padding_len()).max(start);
        &data[start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the marker bit.
    pub fn set_marker(&mut self, marker: bool) {
        let b = &mut self.buffer.as_mut()[field::MARKER_PT];
        *b = (*b & 0x7f) | (u8::from(marker) << 7);
    }

    /// Sets the payload type (the high bit of `pt` is ignored).
    pub fn set_payload_type(&mut self, pt: u8) {
        let b = &mut self.buffer.as_mut()[field::MARKER_PT];
        *b = (*b & 0x80) | (pt & 0x7f);
    }

    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, timestamp: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&timestamp.to_be_bytes());
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = self
            .buffer
            .as_ref()
            .len()
            .saturating_sub(self.padding_len())
            .max(start);
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields a sender sets in a 12-byte header (version 2, no padding, no extension, no CSRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits; the high bit is dropped on emit).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
}

impl Header {
    /// Reads the sender fields of `packet` (padding, extension and CSRCs are not represented).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Self {
        Self {
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            sequence_number: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
        }
    }

    /// Writes the 12-byte header: V=2, P=0, X=0, CC=0 and these fields.
    pub fn emit(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[field::FLAGS] = VERSION << 6;
        buf[field::MARKER_PT] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        buf[field::SEQ].copy_from_slice(&self.sequence_number.to_be_bytes());
        buf[field::TIMESTAMP].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[field::SSRC].copy_from_slice(&self.ssrc.to_be_bytes());
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`; `Err(Truncated)` when
    /// `buf` is shorter.
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<(), Error> {
        let head = buf
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(Error::Truncated)?;
        self.emit(head);
        Ok(())
    }

    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0; HEADER_LEN];
        self.emit(&mut buf);
        buf
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// ST 2110-10 RTP timestamp of TAI instant `tai_ns` (ns since the 1970 TAI epoch):
/// `floor(tai_ns · clock_rate / 10^9) mod 2^32`, exact (128-bit arithmetic).
pub fn rtp_timestamp(tai_ns: u64, clock_rate: u32) -> u32 {
    ((u128::from(tai_ns) * u128::from(clock_rate)) / 1_000_000_000) as u32
}

/// Number of sequence numbers below the highest that a [`SeqExtender`] remembers (to tell a
/// duplicate from a late packet): the largest reorder window it accepts.
pub const MAX_REORDER_WINDOW: u16 = 2048;

const SEEN_BITS: u64 = 2 * MAX_REORDER_WINDOW as u64;
const SEEN_WORDS: usize = (SEEN_BITS / 64) as usize;

/// How a packet's sequence number relates to the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqClass {
    /// The first packet the extender saw.
    First,
    /// Newer than every packet before; `gap` sequence numbers were skipped (0: contiguous).
    InOrder {
        /// Sequence numbers skipped between the previous highest and this one.
        gap: u32,
    },
    /// Older than the highest, not seen before, at most the reorder window behind.
    Late {
        /// How far behind the highest (1 = the one just before it).
        behind: u32,
    },
    /// Seen before (the highest itself, or within the reorder window).
    Duplicate,
    /// Too far from the highest in either direction (more than the maximum dropout ahead, or
    /// more than the reorder window behind): not adopted. A second stray packet that directly
    /// follows this one resynchronises.
    Stray,
    /// The second of two consecutive stray packets: the extender jumped to it (as a forward
    /// jump, so the extended sequence stays monotone) and forgot the history.
    Resync,
}

/// An extended sequence number with its classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extended {
    /// The 64-bit extended sequence number; its low 16 bits are the wire's. For
    /// [`SeqClass::Stray`] it is the value the packet would have as a forward jump, not adopted.
    pub seq: u64,
    /// What the packet is relative to those before it.
    pub class: SeqClass,
}

/// Extends 16-bit RTP sequence numbers to a monotone 64-bit sequence (RFC 3550 Appendix A.1
/// style: cycles are counted from the wire numbers alone, never from a payload's ESN field).
///
/// A packet up to `max_dropout` ahead of the highest is in order (the numbers in between were
/// skipped); up to `reorder_window` behind it is late or a duplicate; anything else is stray,
/// and two consecutive stray packets resynchronise (a restarted sender). The first packet gets
/// `65536 + seq` (cycle 1), so that late packets before it still have an extended number.
#[derive(Debug, Clone)]
pub struct SeqExtender {
    highest: Option<u64>,
    reorder_window: u16,
    max_dropout: u16,
    probation: Option<u16>,
    /// Bit `ext % SEEN_BITS` is set when `ext` arrived, for `ext` in
    /// `(highest - SEEN_BITS, highest]`.
    seen: [u64; SEEN_WORDS],
}

impl Default for SeqExtender {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqExtender {
    /// Default reorder window: 1024 packets (about 4 ms of 1080p59.94 video).
    pub const DEFAULT_REORDER_WINDOW: u16 = 1024;
    /// Default maximum dropout: 16384 packets (about 63 ms of 1080p59.94 video).
    pub const DEFAULT_MAX_DROPOUT: u16 = 16384;

    /// An extender with the default window and dropout.
    pub fn new() -> Self {
        Self::with_limits(Self::DEFAULT_REORDER_WINDOW, Self::DEFAULT_MAX_DROPOUT)
    }

    /// An extender accepting late packets up to `reorder_window` behind the highest (clamped to
    /// `1..=MAX_REORDER_WINDOW`) and jumps up to `max_dropout` ahead (clamped to at least 1 and
    /// to less than `65536 - reorder_window`).
    pub fn with_limits(reorder_window: u16, max_dropout: u16) -> Self {
        let reorder_window = reorder_window.clamp(1, MAX_REORDER_WINDOW);
        let max_dropout = max_dropout.clamp(1, u16::MAX - reorder_window);
        Self {
            highest: None,
            reorder_window,
            max_dropout,
            probation: None,
            seen: [0; SEEN_WORDS],
        }
    }

    /// The reorder window in use.
    pub fn reorder_window(&self) -> u16 {
        self.reorder_window
    }

    /// The maximum dropout in use.
    pub fn max_dropout(&self) -> u16 {
        self.max_dropout
    }

    /// The highest extended sequence number adopted so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Forgets everything: the next packet is [`SeqClass::First`].
    pub fn reset(&mut self) {
        *self = Self::with_limits(self.reorder_window, self.max_dropout);
    }

    /// Extends and classifies the wire sequence number `seq`.
    pub fn extend(&mut self, seq: u16) -> Extended {
        let Some(highest) = self.highest else {
            return self.restart(0x1_0000 | u64::from(seq), SeqClass::First);
        };
        let ahead = seq.wrapping_sub(highest as u16);
        if ahead == 0 {
            return Extended {
                seq: highest,
                class: SeqClass::Duplicate,
            };
        }
        if ahead <= self.max_dropout {
            self.probation = None;
            self.advance(highest, u64::from(ahead));
            return Extended {
                seq: highest + u64::from(ahead),
                class: SeqClass::InOrder {
                    gap: u32::from(ahead) - 1,
                },
            };
        }
        let behind = 0x1_0000 - u32::from(ahead);
        if behind <= u32::from(self.reorder_window) {
            let ext = highest - u64::from(behind);
            let class = if self.test_and_set(ext) {
                SeqClass::Duplicate
            } else {
                SeqClass::Late { behind }
            };
            return Extended { seq: ext, class };
        }
        let candidate = highest + u64::from(ahead);
        if self.probation == Some(seq) {
            return self.restart(candidate, SeqClass::Resync);
        }
        self.probation = Some(seq.wrapping_add(1));
        Extended {
            seq: candidate,
            class: SeqClass::Stray,
        }
    }

    fn restart(&mut self, ext: u64, class: SeqClass) -> Extended {
        self.seen = [0; SEEN_WORDS];
        self.probation = None;
        self.highest = Some(ext);
        self.test_and_set(ext);
        Extended { seq: ext, class }
    }

    /// Moves the highest from `highest` to `highest + ahead`, clearing the bits it passes.
    fn advance(&mut self, highest: u64, ahead: u64) {
        if ahead >= SEEN_BITS {
            self.seen = [0; SEEN_WORDS];
        } else {
            for ext in highest + 1..=highest + ahead {
                let (word, bit) = Self::slot(ext);
                self.seen[word] &= !bit;
            }
        }
        self.highest = Some(highest + ahead);
        self.test_and_set(highest + ahead);
    }

    /// Marks `ext` seen; returns whether it already was.
    fn test_and_set(&mut self, ext: u64) -> bool {
        let (word, bit) = Self::slot(ext);
        let was = self.seen[word] & bit != 0;
        self.seen[word] |= bit;
        was
    }

    fn slot(ext: u64) -> (usize, u64) {
        let i = ext % SEEN_BITS;
        ((i / 64) as usize, 1 << (i % 64))
    }
}

/// Fuzz entry point: parses `data` as an RTP packet and checks the view's invariants and the
/// header round trip, then feeds `data` as big-endian sequence numbers to a [`SeqExtender`]
/// and checks its classification against a model.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    fuzz_packet(data);
    fuzz_extender(data);
}

fn fuzz_packet(data: &[u8]) {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    assert_eq!(
        packet.header_len() + packet.payload().len() + packet.padding_len(),
        data.len()
    );
    assert!(packet.header_len() >= HEADER_LEN + 4 * usize::from(packet.csrc_count()));
    for i in 0..packet.csrc_count() {
        assert!(packet.csrc(i).is_some());
    }
    assert_eq!(packet.csrc(packet.csrc_count()), None);
    let header = Header::parse(&packet);
    let bytes = header.to_bytes();
    assert_eq!(
        Header::parse(&Packet::new_checked(&bytes[..]).expect("emitted header parses")),
        header
    );

    let mut copy = data.to_vec();
    let mut rewritten = Packet::new_unchecked(&mut copy[..]);
    let other = Header {
        marker: !header.marker,
        payload_type: header.payload_type ^ 0x55,
        sequence_number: header.sequence_number.wrapping_add(1),
        timestamp: !header.timestamp,
        ssrc: header.ssrc.rotate_left(8),
    };
    rewritten.set_marker(other.marker);
    rewritten.set_payload_type(other.payload_type);
    rewritten.set_sequence_number(other.sequence_number);
    rewritten.set_timestamp(other.timestamp);
    rewritten.set_ssrc(other.ssrc);
    let rewritten = Packet::new_checked(&copy[..]).expect("setters keep the packet valid");
    assert_eq!(
        Header::parse(&rewritten),
        Header {
            payload_type: other.payload_type & 0x7f,
            ..other
        }
    );
    assert_eq!(rewritten.payload(), packet.payload());
    assert_eq!(copy[0], data[0]);
}

fn fuzz_extender(data: &[u8]) {
    let Some((limits, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let window = u16::from_be_bytes([limits[0], limits[1]]) % (MAX_REORDER_WINDOW + 1);
    let dropout = u16::from_be_bytes([limits[2], limits[3]]);
    let mut ext = SeqExtender::with_limits(window, dropout);
    let mut received = std::collections::BTreeSet::new();
    for pair in rest.chunks_exact(2) {
        let seq = u16::from_be_bytes([pair[0], pair[1]]);
        let before = ext.highest();
        let e = ext.extend(seq);
        let after = ext.highest().expect("started");
        assert_eq!(e.seq as u16, seq);
        assert!(
            before.is_none_or(|b| b <= after),
            "the highest never decreases"
        );
        match e.class {
            SeqClass::First => assert!(before.is_none()),
            SeqClass::InOrder { gap } => {
                assert_eq!(e.seq, before.expect("started") + u64::from(gap) + 1);
                assert!(gap < u32::from(ext.max_dropout()));
            }
            SeqClass::Late { behind } => {
                assert_eq!(e.seq + u64::from(behind), after);
                assert!(behind >= 1 && behind <= u32::from(ext.reorder_window()));
                assert!(!received.contains(&e.seq));
            }
            SeqClass::Duplicate => assert!(received.contains(&e.seq)),
            SeqClass::Stray => assert_eq!(before, Some(after)),
            SeqClass::Resync => received.clear(),
        }
        if e.class != SeqClass::Stray {
            assert!(e.seq <= after);
            received.insert(e.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// V=2 M=1 PT=96 seq=0x1234 ts=0xdeadbeef ssrc=0x01020304, by hand from RFC 3550 §5.1.
    const KNOWN: [u8; 12] = [
        0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
    ];

    fn known_header() -> Header {
        Header {
            marker: true,
            payload_type: 96,
            sequence_number: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        }
    }

    #[test]
    fn header_known_answer_both_ways() {
        assert_eq!(known_header().to_bytes(), KNOWN);
        let p = Packet::new_checked(&KNOWN[..]).unwrap();
        assert_eq!(
            (p.version(), p.padding(), p.extension(), p.csrc_count()),
            (2, false, false, 0)
        );
        assert_eq!(Header::parse(&p), known_header());
        assert_eq!(p.header_len(), HEADER_LEN);
        assert_eq!(p.payload(), &[] as &[u8]);
        let mut buf = [0xffu8; 13];
        known_header().emit_into(&mut buf).unwrap();
        assert_eq!(buf[..12], KNOWN);
        assert_eq!(buf[12], 0xff, "emit_into writes 12 bytes only");
        assert_eq!(
            known_header().emit_into(&mut [0; 11]),
            Err(Error::Truncated)
        );
        let high_pt = Header {
            payload_type: 0xff,
            marker: false,
            ..known_header()
        };
        assert_eq!(
            high_pt.to_bytes()[1],
            0x7f,
            "the payload type's high bit is dropped"
        );
    }

    #[test]
    fn csrcs_extension_and_padding_frame_the_payload() {
        // V=2 P=1 X=1 CC=2, M=0 PT=33; 2 CSRCs; extension profile 0xbede with 1 word;
        // payload "abc"; 3 octets of padding (last one is the count).
        let mut pkt = vec![0xb2, 33, 0, 7, 0, 0, 0, 9, 0, 0, 0, 5];
        pkt.extend_from_slice(&[0xaa, 0xaa, 0xaa, 0x01, 0xbb, 0xbb, 0xbb, 0x02]);
        pkt.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]);
        pkt.extend_from_slice(b"abc");
        pkt.extend_from_slice(&[0, 0, 3]);
        let p = Packet::new_checked(&pkt[..]).unwrap();
        assert!(p.padding() && p.extension() && !p.marker());
        assert_eq!(
            (p.csrc_count(), p.payload_type(), p.sequence_number()),
            (2, 33, 7)
        );
        assert_eq!((p.timestamp(), p.ssrc()), (9, 5));
        assert_eq!(
            (p.csrc(0), p.csrc(1), p.csrc(2)),
            (Some(0xaaaa_aa01), Some(0xbbbb_bb02), None)
        );
        assert_eq!((p.header_len(), p.padding_len()), (28, 3));
        assert_eq!(p.payload(), b"abc");

        let mut owned = Packet::new_checked(pkt.clone()).unwrap();
        owned.payload_mut().copy_from_slice(b"xyz");
        assert_eq!(owned.payload(), b"xyz");
        assert_eq!(owned.into_inner()[28..31], *b"xyz");
    }

    #[test]
    fn every_malformed_header_is_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&KNOWN[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        for version in [0u8, 1, 3] {
            let mut b = KNOWN;
            b[0] = version << 6;
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::BadVersion);
        }
        // CC=1 needs 16 bytes.
        let mut b = KNOWN.to_vec();
        b[0] |= 1;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        b.extend_from_slice(&[0; 3]);
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        b.push(0);
        assert!(
            Packet::new_checked(&b[..]).is_ok(),
            "CSRC list fits exactly"
        );

        // X=1: the 4-byte extension header, then its words, must fit.
        let mut x = KNOWN.to_vec();
        x[0] |= 0x10;
        for partial in 0..4 {
            let mut y = x.clone();
            y.extend(std::iter::repeat_n(0, partial));
            assert_eq!(Packet::new_checked(&y[..]).unwrap_err(), Error::Truncated);
        }
        x.extend_from_slice(&[0, 0, 0, 2]);
        x.extend_from_slice(&[0; 7]);
        assert_eq!(Packet::new_checked(&x[..]).unwrap_err(), Error::Truncated);
        x.push(0);
        let p = Packet::new_checked(&x[..]).unwrap();
        assert_eq!((p.header_len(), p.payload().len()), (24, 0));

        // P=1: count 0 is invalid; the count may cover everything after the header, no more.
        let mut pad = KNOWN.to_vec();
        pad[0] |= 0x20;
        assert_eq!(
            Packet::new_checked(&pad[..]).unwrap_err(),
            Error::BadPadding,
            "count = 0x04 > 0"
        );
        pad.extend_from_slice(&[9, 9, 0]);
        assert_eq!(
            Packet::new_checked(&pad[..]).unwrap_err(),
            Error::BadPadding,
            "zero count"
        );
        *pad.last_mut().unwrap() = 4;
        assert_eq!(
            Packet::new_checked(&pad[..]).unwrap_err(),
            Error::BadPadding,
            "into the header"
        );
        *pad.last_mut().unwrap() = 3;
        let p = Packet::new_checked(&pad[..]).unwrap();
        assert_eq!((p.payload().len(), p.padding_len()), (0, 3));
        *pad.last_mut().unwrap() = 1;
        assert_eq!(Packet::new_checked(&pad[..]).unwrap().payload(), &[9, 9]);
        for e in [Error::Truncated, Error::BadVersion, Error::BadPadding] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn setters_touch_their_field_only() {
        let mut b = KNOWN;
        let mut p = Packet::new_unchecked(&mut b);
        p.set_marker(false);
        assert_eq!(
            p.as_bytes(),
            [0x80, 0x60, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]
        );
        p.set_payload_type(0xff);
        p.set_marker(true);
        assert_eq!(p.as_bytes()[1], 0xff);
        p.set_payload_type(0);
        assert_eq!(p.as_bytes()[1], 0x80);
        p.set_sequence_number(0xfffe);
        p.set_timestamp(0x0a0b_0c0d);
        p.set_ssrc(0xcafe_f00d);
        assert_eq!(
            p.as_bytes(),
            [
                0x80, 0x80, 0xff, 0xfe, 0x0a, 0x0b, 0x0c, 0x0d, 0xca, 0xfe, 0xf0, 0x0d
            ]
        );
    }

    impl Packet<&mut [u8; 12]> {
        fn as_bytes(&self) -> [u8; 12] {
            *self.buffer
        }
    }

    #[test]
    fn rtp_timestamps_are_exact_floors_modulo_2_32() {
        assert_eq!(rtp_timestamp(0, 90_000), 0);
        assert_eq!(rtp_timestamp(1_000_000_000, 90_000), 90_000);
        // 1/90000 s = 11111.1 ns: 11111 ns is still tick 0, 11112 ns is tick 1.
        assert_eq!(rtp_timestamp(11_111, 90_000), 0);
        assert_eq!(rtp_timestamp(11_112, 90_000), 1);
        assert_eq!(rtp_timestamp(20_833, 48_000), 0);
        assert_eq!(rtp_timestamp(20_834, 48_000), 1);
        // 2^32 ticks at 90 kHz = 47721.858844444.. s; the tick count wraps there.
        let wrap_ns = (1u128 << 32) * 1_000_000_000 / 90_000;
        assert_eq!(rtp_timestamp(wrap_ns as u64, 90_000), u32::MAX);
        assert_eq!(rtp_timestamp(wrap_ns as u64 + 1, 90_000), 0);
        // 2026-01-01T00:00:00 UTC is 1767225600 s + 37 s of TAI offset; half a second later:
        // 1767225637.5 s x 90000 = 159050307375000 ticks = 3373436824 mod 2^32 (by hand).
        assert_eq!(
            rtp_timestamp(1_767_225_637_500_000_000, 90_000),
            3_373_436_824
        );
        assert_eq!(
            rtp_timestamp(1_767_225_637_500_000_000, 48_000),
            1_226_504_000
        );
        // u64::MAX ns = 18446744073.709551615 s: 1660206966633859 ticks = 243266947 mod 2^32.
        assert_eq!(rtp_timestamp(u64::MAX, 90_000), 243_266_947);
    }

    fn classes(ext: &mut SeqExtender, seqs: &[u16]) -> Vec<(u64, SeqClass)> {
        seqs.iter()
            .map(|&s| ext.extend(s))
            .map(|e| (e.seq, e.class))
            .collect()
    }

    #[test]
    fn extender_counts_cycles_and_gaps() {
        let mut ext = SeqExtender::new();
        assert_eq!(ext.highest(), None);
        let got = classes(&mut ext, &[65533, 65534, 65535, 0, 1, 5, 65535]);
        use SeqClass::*;
        assert_eq!(
            got,
            [
                (0x1_fffd, First),
                (0x1_fffe, InOrder { gap: 0 }),
                (0x1_ffff, InOrder { gap: 0 }),
                (0x2_0000, InOrder { gap: 0 }),
                (0x2_0001, InOrder { gap: 0 }),
                (0x2_0005, InOrder { gap: 3 }),
                (0x1_ffff, Duplicate),
            ]
        );
        assert_eq!(ext.highest(), Some(0x2_0005));
        // Three whole cycles in order.
        for i in 6..6 + 3 * 65536u64 {
            let e = ext.extend(i as u16);
            assert_eq!((e.seq, e.class), (0x2_0000 + i, InOrder { gap: 0 }));
        }
    }

    #[test]
    fn extender_tells_late_from_duplicate() {
        use SeqClass::*;
        let mut ext = SeqExtender::new();
        let got = classes(&mut ext, &[10, 13, 12, 12, 11, 13, 10, 9]);
        assert_eq!(
            got,
            [
                (0x1_000a, First),
                (0x1_000d, InOrder { gap: 2 }),
                (0x1_000c, Late { behind: 1 }),
                (0x1_000c, Duplicate),
                (0x1_000b, Late { behind: 2 }),
                (0x1_000d, Duplicate),
                (0x1_000a, Duplicate),
                (0x1_0009, Late { behind: 4 }),
            ]
        );
        // Late across the wrap, before the first packet.
        let mut ext = SeqExtender::new();
        assert_eq!(
            classes(&mut ext, &[1, 65535]),
            [(0x1_0001, First), (0xffff, Late { behind: 2 })]
        );
    }

    #[test]
    fn extender_window_and_dropout_boundaries() {
        use SeqClass::*;
        let mut ext = SeqExtender::with_limits(100, 1000);
        assert_eq!((ext.reorder_window(), ext.max_dropout()), (100, 1000));
        ext.extend(5000);
        assert_eq!(ext.extend(4900).class, Late { behind: 100 });
        assert_eq!(ext.extend(4899).class, Stray, "one beyond the window");
        assert_eq!(
            ext.highest(),
            Some(0x1_0000 + 5000),
            "a stray packet is not adopted"
        );
        assert_eq!(
            ext.extend(6000).class,
            InOrder { gap: 999 },
            "exactly the max dropout"
        );
        let e = ext.extend(7001);
        assert_eq!(
            (e.seq, e.class),
            (0x1_0000 + 7001, Stray),
            "one beyond the max dropout"
        );
        assert_eq!(
            ext.extend(6001).class,
            InOrder { gap: 0 },
            "an in-order packet ends probation"
        );
        assert_eq!(ext.extend(7002).class, Stray);
        let e = ext.extend(7003);
        assert_eq!(
            (e.seq, e.class),
            (0x1_0000 + 7003, Resync),
            "two consecutive strays resync"
        );
        assert_eq!(
            ext.extend(7002).class,
            Late { behind: 1 },
            "history was forgotten"
        );
        assert_eq!(ext.extend(7004).class, InOrder { gap: 0 });

        // A restart far behind: resynchronises too, and the sequence stays monotone.
        let mut ext = SeqExtender::new();
        ext.extend(40000);
        assert_eq!(ext.extend(10000).class, Stray);
        let e = ext.extend(10001);
        assert_eq!((e.seq, e.class), (0x2_0000 + 10001, Resync));

        // Clamping.
        let ext = SeqExtender::with_limits(0, 0);
        assert_eq!((ext.reorder_window(), ext.max_dropout()), (1, 1));
        let ext = SeqExtender::with_limits(u16::MAX, u16::MAX);
        assert_eq!(
            (ext.reorder_window(), ext.max_dropout()),
            (MAX_REORDER_WINDOW, u16::MAX - MAX_REORDER_WINDOW)
        );
        let mut ext = SeqExtender::with_limits(MAX_REORDER_WINDOW, 1);
        ext.extend(0);
        ext.extend(1);
        assert_eq!(
            ext.extend(0u16.wrapping_sub(MAX_REORDER_WINDOW - 1)).class,
            Late {
                behind: u32::from(MAX_REORDER_WINDOW)
            }
        );
    }

    #[test]
    fn extender_duplicate_memory_spans_the_window_after_big_gaps() {
        use SeqClass::*;
        let mut ext = SeqExtender::with_limits(MAX_REORDER_WINDOW, 60000);
        ext.extend(0);
        for s in 1..=3000u16 {
            ext.extend(s);
        }
        // Jump by more than the memory: everything before is forgotten, nothing is "seen".
        assert_eq!(ext.extend(3000 + 5000).class, InOrder { gap: 4999 });
        assert_eq!(ext.extend(8000 - 1).class, Late { behind: 1 });
        assert_eq!(
            ext.extend(8000 - MAX_REORDER_WINDOW).class,
            Late {
                behind: u32::from(MAX_REORDER_WINDOW)
            }
        );
        assert_eq!(ext.extend(8000 - MAX_REORDER_WINDOW).class, Duplicate);
        // A small jump clears exactly the slots it passes.
        assert_eq!(ext.extend(8010).class, InOrder { gap: 9 });
        assert_eq!(ext.extend(8005).class, Late { behind: 5 });
        assert_eq!(ext.extend(7999).class, Duplicate);
        ext.reset();
        assert_eq!(ext.extend(3).class, First);
    }

    /// A header, CSRCs, an extension (profile, words), a payload and a padding count.
    type Parts = (Header, Vec<u32>, Option<(u16, Vec<u8>)>, Vec<u8>, u8);

    fn packet_strategy() -> impl Strategy<Value = Parts> {
        (
            (
                any::<bool>(),
                0u8..128,
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
            ),
            proptest::collection::vec(any::<u32>(), 0..16),
            proptest::option::of((
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..3).prop_map(|w| w.repeat(4)),
            )),
            proptest::collection::vec(any::<u8>(), 0..64),
            0u8..8,
        )
            .prop_map(
                |((marker, payload_type, sequence_number, timestamp, ssrc), c, x, p, pad)| {
                    (
                        Header {
                            marker,
                            payload_type,
                            sequence_number,
                            timestamp,
                            ssrc,
                        },
                        c,
                        x,
                        p,
                        pad,
                    )
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_never_fails(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            fuzz(&data);
        }

        #[test]
        fn fuzz_on_near_valid_packets(header in any::<[u8; 12]>(), rest in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut data = header.to_vec();
            data[0] = (data[0] & 0x3f) | 0x80;
            data.extend_from_slice(&rest);
            fuzz(&data);
        }

        #[test]
        fn built_packets_parse_back((header, csrcs, ext, payload, pad) in packet_strategy()) {
            let mut b = header.to_bytes().to_vec();
            b[0] |= csrcs.len() as u8;
            for c in &csrcs {
                b.extend_from_slice(&c.to_be_bytes());
            }
            if let Some((profile, words)) = &ext {
                b[0] |= 0x10;
                b.extend_from_slice(&profile.to_be_bytes());
                b.extend_from_slice(&((words.len() / 4) as u16).to_be_bytes());
                b.extend_from_slice(words);
            }
            let header_len = b.len();
            b.extend_from_slice(&payload);
            if pad > 0 {
                b[0] |= 0x20;
                b.extend(std::iter::repeat_n(0, usize::from(pad) - 1));
                b.push(pad);
            }
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Header::parse(&p), header);
            prop_assert_eq!(p.header_len(), header_len);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.padding_len(), usize::from(pad));
            for (i, c) in csrcs.iter().enumerate() {
                prop_assert_eq!(p.csrc(i as u8), Some(*c));
            }
        }

        #[test]
        fn extender_recovers_any_permutation_within_the_window(start in any::<u16>(), swaps in proptest::collection::vec((0usize..3000, 1usize..64), 0..50)) {
            let mut order: Vec<u64> = (0..3000).collect();
            for (at, by) in swaps {
                let to = (at + by).min(order.len() - 1);
                order.swap(at, to);
            }
            let mut ext = SeqExtender::new();
            let first = ext.extend(start.wrapping_add(order[0] as u16)).seq;
            let mut got = vec![first];
            for &i in &order[1..] {
                got.push(ext.extend(start.wrapping_add(i as u16)).seq);
            }
            // The first packet anchors the numbering; everything else is exact relative to it.
            let base = first - order[0];
            for (g, i) in got.iter().zip(&order) {
                prop_assert_eq!(*g, base + i);
            }
        }
    }
}
