//! ST 2110-40 ancillary data (RFC 8331): one SDK buffer per video frame period, holding that
//! frame's ANC packets.
//!
//! # In-slot format
//!
//! A buffer holds exactly the RFC 8331 payload that follows the RTP header, as if the whole
//! frame went in one RTP packet: the 8-byte payload header (Extended Sequence Number, ignored on
//! tx and 0 on rx; Length, the bytes of ANC packets after the header; ANC_Count; F, the field)
//! and then `ANC_Count` ANC packets, each padded to a 32-bit boundary. The buffer's payload
//! length is `8 + Length`. [`rfc8331::emit`] writes it; [`rfc8331::Packet`] reads it.
//!
//! Tx ([`AncFrame`] in a [`PacedTx`]) checks each buffer in full (Length, ANC_Count, F, every
//! packet's parity and checksum) and refuses a malformed one, counting it in `frames_refused`
//! and logging why (rate-limited); nothing of it is sent. A valid frame is cut at ANC packet
//! boundaries into RTP packets of at most [`MAX_RTP_PAYLOAD`] bytes, each with its own payload
//! header, sent in place from the slot; the last carries the marker. A frame without ANC
//! packets is sent as one packet with `ANC_Count = 0` and the marker.
//!
//! [`St40Rx`] gathers a frame's packets (one RTP timestamp) into a slot, checking each, and
//! publishes it in the same format when the marker arrives. A frame with a lost or malformed
//! packet, one whose marker never came, or one larger than the slot or the format (255 ANC
//! packets, 65535 bytes) is counted in `frames_incomplete` and not delivered.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use mcm_control::dataplane::{EdgeCounters, Violation};
use mcm_proto::st2110::rfc8331::{self, AncError, HEADER_LEN, MAX_ANC};
use mcm_proto::st2110::rtp;

use super::clock::Clock;
use super::paced::{Packetize, RtpRx};
use crate::group::{Frame, Source, SourceIo};

#[cfg(doc)]
use super::paced::PacedTx;

/// Most bytes of an RTP payload (after the RTP header) a tx session sends: a 1460-byte
/// datagram, the standard ST 2110 limit.
pub const MAX_RTP_PAYLOAD: usize = 1460 - rtp::HEADER_LEN;

/// Why an ancillary buffer is refused on tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AncFrameError {
    /// The payload does not parse or check (see [`AncError`]).
    Anc(AncError),
    /// The payload length is not the 8-byte header plus the Length field.
    Length {
        /// The buffer's payload length.
        payload_len: usize,
        /// The Length field.
        length: u16,
    },
    /// `F` is 0b01, which RFC 8331 calls invalid.
    Field,
}

impl fmt::Display for AncFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anc(e) => write!(f, "malformed ANC data: {e}"),
            Self::Length {
                payload_len,
                length,
            } => write!(
                f,
                "ANC buffer of {payload_len} bytes, but its Length field says {length} bytes \
                 after the 8-byte header (the payload length must be 8 + Length)"
            ),
            Self::Field => f.write_str(
                "ANC F field 0b01 is invalid (allowed: 0 progressive, 2 first field, 3 second)",
            ),
        }
    }
}

/// One RTP packet of a frame: ANC bytes `start..end` after the in-slot header, `count` ANC
/// packets.
#[derive(Debug, Clone, Copy, Default)]
struct Cut {
    start: u32,
    end: u32,
    count: u8,
}

/// The ST 2110-40 tx format: a frame's ANC packets cut into RTP packets at packet boundaries.
#[derive(Debug, Clone)]
pub struct AncFrame {
    max_payload: usize,
    field: u8,
    cuts: [Cut; MAX_ANC + 1],
    n: usize,
}

impl AncFrame {
    /// RTP payloads of at most `max_payload` bytes (header included; at least room for the
    /// largest ANC packet, [`rfc8331::anc_len`]`(255)` bytes, after the 8-byte header).
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload.max(HEADER_LEN + rfc8331::anc_len(rfc8331::MAX_UDW)),
            field: 0,
            cuts: [Cut::default(); MAX_ANC + 1],
            n: 0,
        }
    }

    fn check(frame: &[u8]) -> Result<rfc8331::Packet<&[u8]>, AncFrameError> {
        let p = rfc8331::Packet::new_checked(frame).map_err(AncFrameError::Anc)?;
        if frame.len() != HEADER_LEN + usize::from(p.length()) {
            return Err(AncFrameError::Length {
                payload_len: frame.len(),
                length: p.length(),
            });
        }
        if p.field() == 1 {
            return Err(AncFrameError::Field);
        }
        p.check().map_err(AncFrameError::Anc)?;
        Ok(p)
    }
}

impl Packetize for AncFrame {
    type Error = AncFrameError;

    fn begin(&mut self, frame: &[u8]) -> Result<u32, AncFrameError> {
        let p = Self::check(frame)?;
        self.field = p.field();
        let room = self.max_payload - HEADER_LEN;
        let mut cut = Cut::default();
        self.n = 0;
        for anc in p.iter() {
            // Checked above: every packet parses.
            let len = anc.map_err(AncFrameError::Anc)?.wire_len() as u32;
            if cut.count > 0 && (cut.end - cut.start + len) as usize > room {
                self.cuts[self.n] = cut;
                self.n += 1;
                cut = Cut {
                    start: cut.end,
                    end: cut.end,
                    count: 0,
                };
            }
            cut.end += len;
            cut.count += 1;
        }
        self.cuts[self.n] = cut;
        self.n += 1;
        Ok(self.n as u32)
    }

    fn packet(&self, index: u32, seq: u32, out: &mut [u8]) -> (usize, Range<usize>) {
        let c = self.cuts[index as usize];
        let mut h = rfc8331::Packet::new_unchecked(&mut out[..HEADER_LEN]);
        h.set_ext_seq((seq >> 16) as u16);
        h.set_length((c.end - c.start) as u16);
        h.set_anc_count(c.count);
        h.set_field(self.field);
        let at = |x: u32| HEADER_LEN + x as usize;
        (HEADER_LEN, at(c.start)..at(c.end))
    }
}

/// The frame being gathered.
#[derive(Debug, Clone, Copy)]
struct Gathering {
    slot: Option<u32>,
    rtp_timestamp: u32,
    field: u8,
    /// ANC bytes written after the header.
    len: usize,
    count: usize,
    /// A packet was lost or refused, or the frame outgrew the slot or the format.
    broken: bool,
}

/// An ST 2110-40 receiver: the source bridge of its group.
pub struct St40Rx {
    name: String,
    rtp: RtpRx,
    current: Option<Gathering>,
    /// A slot kept from a frame that was not delivered, for the next one.
    spare: Option<u32>,
    clock: Clock,
    counters: Arc<EdgeCounters>,
}

impl St40Rx {
    /// A receiver of ANC frames from `rtp`.
    pub fn new(name: String, rtp: RtpRx, counters: Arc<EdgeCounters>, clock: Clock) -> Self {
        Self {
            name,
            rtp,
            current: None,
            spare: None,
            clock,
            counters,
        }
    }
}

/// What one poll of an [`St40Rx`] works with.
struct Gather<'s, 'io> {
    io: &'s mut SourceIo<'io>,
    current: &'s mut Option<Gathering>,
    spare: &'s mut Option<u32>,
    counters: &'s EdgeCounters,
    clock: &'s Clock,
}

impl Gather<'_, '_> {
    fn push(&mut self, p: &rtp::Packet<&[u8]>, gap: bool) -> bool {
        let anc = rfc8331::Packet::new_checked(p.payload());
        let valid = anc.as_ref().is_ok_and(|a| a.check().is_ok());
        let ts = p.timestamp();
        if self.current.is_some_and(|g| g.rtp_timestamp != ts) {
            self.end(false); // its marker never came
        }
        let g = match *self.current {
            Some(g) => g,
            None => self.start(ts, gap),
        };
        let mut g = Gathering {
            broken: g.broken || gap || !valid,
            ..g
        };
        if let (false, Ok(a)) = (g.broken, &anc) {
            g.field = a.field();
            g.broken = !self.append(&mut g, a.anc_data(), usize::from(a.anc_count()));
        }
        *self.current = Some(g);
        if p.marker() {
            self.end(true);
        }
        valid
    }

    fn start(&mut self, rtp_timestamp: u32, gap: bool) -> Gathering {
        let slot = self.spare.take().or_else(|| self.io.alloc());
        if slot.is_none() {
            EdgeCounters::add(&self.counters.frames_dropped, 1);
        }
        Gathering {
            slot,
            rtp_timestamp,
            field: 0,
            len: 0,
            count: 0,
            broken: gap,
        }
    }

    /// Appends a packet's ANC bytes; false when they do not fit the slot or the format.
    fn append(&mut self, g: &mut Gathering, data: &[u8], count: usize) -> bool {
        let Some(buf) = g.slot.and_then(|s| self.io.payload_mut(s)) else {
            return false;
        };
        let at = HEADER_LEN + g.len;
        let fits = at + data.len() <= buf.len()
            && g.len + data.len() <= usize::from(u16::MAX)
            && g.count + count <= MAX_ANC;
        if fits {
            buf[at..at + data.len()].copy_from_slice(data);
            g.len += data.len();
            g.count += count;
        }
        fits
    }

    /// Ends the frame: delivered when `marked` and whole, else counted and its slot kept.
    fn end(&mut self, marked: bool) {
        let Some(g) = self.current.take() else {
            return;
        };
        let Some(slot) = g.slot else {
            return; // counted as dropped when it began
        };
        if !marked || g.broken {
            EdgeCounters::add(&self.counters.frames_incomplete, 1);
            *self.spare = Some(slot);
            return;
        }
        if let Some(buf) = self.io.payload_mut(slot) {
            let mut h = rfc8331::Packet::new_unchecked(&mut buf[..HEADER_LEN]);
            h.set_ext_seq(0);
            h.set_length(g.len as u16);
            h.set_anc_count(g.count as u8);
            h.set_field(g.field);
        }
        let frame = Frame {
            slot,
            payload_len: (HEADER_LEN + g.len) as u32,
            metadata_len: 0,
            timestamp_ns: self.clock.sampling_instant_ns(g.rtp_timestamp, 90_000),
            seq: 0,
        };
        if self.io.publish(frame) {
            EdgeCounters::add(&self.counters.frames, 1);
        } else {
            *self.spare = Some(slot);
        }
    }
}

impl Source for St40Rx {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let mut g = Gather {
            io,
            current: &mut self.current,
            spare: &mut self.spare,
            counters: &self.counters,
            clock: &self.clock,
        };
        let work = self.rtp.recv(now, budget, |p, gap| g.push(p, gap));
        self.rtp.publish(&self.counters);
        Ok(work)
    }

    fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.rtp.wake_fd()
    }

    fn prepare_park(&mut self) -> bool {
        self.rtp.has_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::st2110::paced::tests::{Rig, published, rtp_packet, rtp_pair};
    use rfc8331::AncRepr;

    #[test]
    fn rx_gathers_frames_and_drops_those_with_a_lost_or_bad_packet() {
        let mut rig = Rig::new(4, 8 + 65_535);
        let (sock, rtp) = rtp_pair();
        let counters = Arc::new(EdgeCounters::default());
        let mut rx = St40Rx::new("r".into(), rtp, counters.clone(), Clock::Tai);
        let words: Vec<u16> = (0..255).map(|i| 0x100 | i).collect();
        let many: Vec<AncRepr<'_>> = (0..6).map(|i| anc(0x40 + i, &words)).collect();
        let frames = [frame(&many), frame(&many[..1]), frame(&many), frame(&[])];
        let mut a = AncFrame::new(MAX_RTP_PAYLOAD);
        let mut seq = 0u16;
        for (i, f) in frames.iter().enumerate() {
            let payloads = cut(&mut a, f);
            for (k, p) in payloads.iter().enumerate() {
                let last = k + 1 == payloads.len();
                let mut p = p.clone();
                match (i, k) {
                    (1, 0) => p[HEADER_LEN + 4] ^= 0x01, // frame 1: a DID parity error
                    (2, 0) => {
                        seq += 1; // frame 2: its first packet is lost
                        continue;
                    }
                    _ => {}
                }
                sock.send(&rtp_packet(seq, 3000 * i as u32, last, &p))
                    .unwrap();
                seq += 1;
            }
        }
        let got = published(&mut rig, &mut rx, 2);
        assert_eq!(got, vec![frames[0].clone(), frames[3].clone()]);
        let get = |c: &std::sync::atomic::AtomicU64| EdgeCounters::get(c);
        assert_eq!(get(&counters.frames), 2);
        assert_eq!(get(&counters.frames_incomplete), 2);
        assert_eq!(get(&counters.packets_lost), 1);
        assert_eq!(get(&counters.packets_malformed), 1);
    }

    fn anc(did: u8, words: &[u16]) -> AncRepr<'_> {
        AncRepr {
            c: false,
            line: 9,
            horizontal_offset: rfc8331::HORIZONTAL_OFFSET_UNSPECIFIED,
            s: false,
            stream_num: 0,
            did,
            sdid: 1,
            user_data: words,
        }
    }

    fn frame(packets: &[AncRepr<'_>]) -> Vec<u8> {
        let mut out = vec![0u8; rfc8331::emitted_len(packets)];
        rfc8331::emit(packets, rfc8331::FIELD_PROGRESSIVE, 0, &mut out).unwrap();
        out
    }

    /// Cuts `f` and rebuilds each RTP payload from the header written and the slot's bytes.
    fn cut(a: &mut AncFrame, f: &[u8]) -> Vec<Vec<u8>> {
        let n = a.begin(f).unwrap();
        (0..n)
            .map(|i| {
                let mut out = [0u8; 16];
                let (len, range) = a.packet(i, 0x0003_0000 + i, &mut out);
                let mut p = out[..len].to_vec();
                p.extend_from_slice(&f[range]);
                p
            })
            .collect()
    }

    #[test]
    fn a_frame_is_cut_at_anc_packet_boundaries_under_the_mtu() {
        let words: Vec<u16> = (0..255).map(|i| 0x100 | i).collect();
        let big: Vec<AncRepr<'_>> = (0..10).map(|i| anc(0x40 + i, &words)).collect();
        let f = frame(&big);
        let mut a = AncFrame::new(MAX_RTP_PAYLOAD);
        let payloads = cut(&mut a, &f);
        // 328 bytes per packet, 4 per 1448-byte payload: 4 + 4 + 2.
        assert_eq!(payloads.len(), 3);
        let mut seen = 0;
        for p in &payloads {
            assert!(p.len() <= MAX_RTP_PAYLOAD);
            let parsed = rfc8331::Packet::new_checked(&p[..]).unwrap();
            parsed.check().unwrap();
            assert_eq!(parsed.ext_seq(), 3);
            for x in parsed.iter() {
                assert_eq!(x.unwrap().did(), 0x40 + seen);
                seen += 1;
            }
        }
        assert_eq!(seen, 10);
        // No ANC packets: one empty packet (with this sequence number's ESN, 3).
        let empty = frame(&[]);
        let payloads = cut(&mut a, &empty);
        assert_eq!(payloads, vec![vec![0, 3, 0, 0, 0, 0, 0, 0]]);
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let mut a = AncFrame::new(MAX_RTP_PAYLOAD);
        let good = frame(&[anc(0x61, &[0x101, 0x202])]);
        assert_eq!(a.begin(&good), Ok(1));
        let mut checksum = good.clone();
        checksum[HEADER_LEN + 8] ^= 0x10; // a user data word: the checksum no longer matches
        let cases: [(&[u8], &str); 4] = [
            (&good[..4], "shorter than its 8-byte header"),
            (
                &[&good[..], &[0, 0, 0, 0]].concat(),
                "the payload length must be 8 + Length",
            ),
            (&checksum, "checksum mismatch"),
            (&[0, 0, 0, 0, 0, 0x40, 0, 0], "F field 0b01 is invalid"),
        ];
        for (f, why) in cases {
            let e = a.begin(f).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
