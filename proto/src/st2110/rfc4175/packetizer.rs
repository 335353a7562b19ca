//! The sender side: a precomputed plan of every packet of a frame.

use std::fmt;
use std::ops::Range;

use super::{ESN_LEN, Format, MAX_SRDS, Srd};

/// BPM block: 180 octets, a whole number of pgroups for every pgroup that divides it.
pub const BPM_BLOCK_BYTES: usize = 180;

/// BPM packet: seven blocks, 1260 octets of pixel data (all but the last packet of a frame).
pub const BPM_PACKET_BYTES: usize = 7 * BPM_BLOCK_BYTES;

/// ST 2110-20 packing mode (SDP `PM=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackingMode {
    /// General packing mode (`2110GPM`): a configured amount of pixel data per packet.
    Gpm,
    /// Block packing mode (`2110BPM`): 1260 octets of pixel data per packet.
    Bpm,
}

impl PackingMode {
    /// The SDP spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gpm => "2110GPM",
            Self::Bpm => "2110BPM",
        }
    }

    /// Parses the SDP spelling (exact match).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Gpm, Self::Bpm].into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for PackingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a packetizer cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketizerError {
    /// Less room than one pgroup.
    #[error("max payload of {max_payload_bytes} octets holds no pgroup of {pgroup_bytes} octets")]
    PayloadTooSmall {
        /// The payload limit asked for.
        max_payload_bytes: usize,
        /// Octets per pgroup.
        pgroup_bytes: u32,
    },
    /// More than an SRD length (16 bits) can describe.
    #[error("max payload of {max_payload_bytes} octets is above 65535 (the SRD length is 16 bits)")]
    PayloadTooLarge {
        /// The payload limit asked for.
        max_payload_bytes: usize,
    },
    /// BPM needs 1260 octets of pixel data per packet.
    #[error(
        "BPM sends 1260 octets of pixel data per packet; the max payload is {max_payload_bytes}"
    )]
    BpmPayload {
        /// The payload limit asked for.
        max_payload_bytes: usize,
    },
    /// BPM needs 180-octet blocks of whole pgroups.
    #[error("BPM needs pgroups that divide 180 octets; this format's are {pgroup_bytes} octets")]
    BpmPgroup {
        /// Octets per pgroup.
        pgroup_bytes: u32,
    },
    /// A BPM packet would span more sample rows than three SRDs describe.
    #[error(
        "BPM packets of 1260 octets need more than 3 SRDs at {line_bytes} octets per line; use GPM"
    )]
    BpmTooNarrow {
        /// Octets per sample row.
        line_bytes: usize,
    },
}

/// Plans the packets of every frame of one format and writes their payload headers.
///
/// Packet `i` of a frame carries the frame bytes [`data(i)`](Self::data), described by the
/// SRD headers [`headers(i, ..)`](Self::headers) writes. The caller sends
/// `[RTP header][headers][frame[data(i)]]`, with the marker bit on the last packet
/// (`packets_per_frame() - 1`).
#[derive(Debug, Clone)]
pub struct Packetizer {
    format: Format,
    mode: PackingMode,
    /// Frame offset where each packet's data starts, then the frame length:
    /// `packets_per_frame() + 1` entries, strictly increasing.
    starts: Vec<usize>,
}

impl Packetizer {
    /// Plans `format` in `mode`. GPM puts `max_payload_bytes` of pixel data in each packet,
    /// rounded down to whole pgroups, across line ends, but never more than [`MAX_SRDS`] sample
    /// rows in one packet. BPM needs `max_payload_bytes >= 1260` and always puts 1260.
    pub fn new(
        format: Format,
        mode: PackingMode,
        max_payload_bytes: usize,
    ) -> Result<Self, PacketizerError> {
        let pgroup_bytes = format.pgroup().bytes;
        let pg = pgroup_bytes as usize;
        if max_payload_bytes < pg {
            return Err(PacketizerError::PayloadTooSmall {
                max_payload_bytes,
                pgroup_bytes,
            });
        }
        if max_payload_bytes > usize::from(u16::MAX) {
            return Err(PacketizerError::PayloadTooLarge { max_payload_bytes });
        }
        let chunk = match mode {
            PackingMode::Gpm => max_payload_bytes / pg * pg,
            PackingMode::Bpm if !BPM_BLOCK_BYTES.is_multiple_of(pg) => {
                return Err(PacketizerError::BpmPgroup { pgroup_bytes });
            }
            PackingMode::Bpm if max_payload_bytes < BPM_PACKET_BYTES => {
                return Err(PacketizerError::BpmPayload { max_payload_bytes });
            }
            PackingMode::Bpm => BPM_PACKET_BYTES,
        };
        let starts = plan(&format, chunk);
        if mode == PackingMode::Bpm
            && starts
                .windows(2)
                .any(|w| w[1] - w[0] < chunk && w[1] != format.frame_bytes())
        {
            return Err(PacketizerError::BpmTooNarrow {
                line_bytes: format.line_bytes(),
            });
        }
        Ok(Self {
            format,
            mode,
            starts,
        })
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The packing mode.
    pub fn mode(&self) -> PackingMode {
        self.mode
    }

    /// Packets per frame.
    pub fn packets_per_frame(&self) -> u32 {
        (self.starts.len() - 1) as u32
    }

    /// Packet `index`'s pixel data: a range of the rfc4175 frame buffer.
    ///
    /// # Panics
    /// When `index >= packets_per_frame()`.
    pub fn data(&self, index: u32) -> Range<usize> {
        let i = index as usize;
        self.starts[i]..self.starts[i + 1]
    }

    /// Writes packet `index`'s payload header into `out`: the ESN (the high 16 bits of
    /// `ext_seq`, whose low 16 bits are the RTP sequence number), then its SRD headers, C set on
    /// all but the last. Returns the octets written (at most [`MAX_HEADERS_LEN`](super::MAX_HEADERS_LEN)).
    ///
    /// # Panics
    /// When `index >= packets_per_frame()` or `out` is shorter than the header.
    pub fn headers(&self, index: u32, ext_seq: u32, out: &mut [u8]) -> usize {
        let range = self.data(index);
        out[..ESN_LEN].copy_from_slice(&((ext_seq >> 16) as u16).to_be_bytes());
        let mut len = ESN_LEN;
        let mut segments = rows(&self.format, range).peekable();
        while let Some(mut srd) = segments.next() {
            srd.continuation = segments.peek().is_some();
            let head = out[len..]
                .first_chunk_mut()
                .expect("room for the SRD header");
            srd.emit(head);
            len += Srd::LEN;
        }
        len
    }
}

/// Cuts the frame into packets of `chunk` octets (the last shorter), never spanning more than
/// [`MAX_SRDS`] sample rows: the starts of every packet, then the frame length.
fn plan(format: &Format, chunk: usize) -> Vec<usize> {
    let frame = format.frame_bytes();
    let row = format.line_bytes();
    let mut starts = Vec::with_capacity(frame.div_ceil(chunk) + 1);
    let mut at = 0;
    while at < frame {
        starts.push(at);
        let rows_end = (at / row + MAX_SRDS) * row;
        at = (at + chunk).min(frame).min(rows_end);
    }
    starts.push(frame);
    starts
}

/// The SRDs (C clear) describing frame bytes `range`: one per sample row it touches.
fn rows(format: &Format, range: Range<usize>) -> impl Iterator<Item = Srd> {
    let row = format.line_bytes();
    let pg = format.pgroup().bytes as usize;
    let (width, lines) = (
        format.pgroup_width() as usize,
        format.pgroup_lines() as usize,
    );
    let mut at = range.start;
    std::iter::from_fn(move || {
        if at >= range.end {
            return None;
        }
        let (r, within) = (at / row, at % row);
        let end = range.end.min((r + 1) * row);
        let srd = Srd {
            length: (end - at) as u16,
            field: false,
            line: (r * lines) as u16,
            continuation: false,
            offset: (within / pg * width) as u16,
        };
        at = end;
        Some(srd)
    })
}
