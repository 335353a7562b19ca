//! The receiver side: packets into rfc4175 frame buffers, with loss and order accounting.

use super::{Format, PacketError, Payload, Srd};
use crate::st2110::rtp::{self, SeqClass, SeqExtender};

/// Where a [`Depacketizer`] puts frames.
pub trait FrameSink {
    /// A frame with this RTP timestamp begins; return false when there is no buffer for it (the
    /// frame is dropped and counted, its packets are not written, and `end` is not called).
    fn begin(&mut self, rtp_timestamp: u32) -> bool;

    /// The buffer of the frame in progress (at least `format.frame_bytes()` long; a shorter one
    /// gets nothing written and its packets count as dropped).
    fn buffer(&mut self) -> &mut [u8];

    /// The frame in progress ended (its marker was seen and it is complete, a packet of a newer
    /// timestamp arrived, or [`Depacketizer::flush`] was called): complete or not.
    fn end(&mut self, report: &FrameReport);
}

/// What became of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameReport {
    /// The frame's RTP timestamp.
    pub rtp_timestamp: u32,
    /// Valid packets of the frame that arrived in time (all written, unless the sink's buffer
    /// was short).
    pub packets: u32,
    /// Pixel octets written (overlapping SRDs count each time).
    pub bytes: u64,
    /// Sequence numbers in `first_ext_seq..=last_ext_seq` that did not arrive.
    pub lost: u64,
    /// Packets written after a packet with a higher sequence number.
    pub reordered: u32,
    /// Whether the marker packet arrived.
    pub marker: bool,
    /// Marker seen, `lost == 0`, and every pgroup of the frame written.
    pub complete: bool,
    /// The frame's first extended sequence number: one after the previous frame's marker
    /// packet when that frame's marker arrived, else the lowest that arrived.
    pub first_ext_seq: u64,
    /// The highest extended sequence number that arrived (the marker packet's, normally).
    pub last_ext_seq: u64,
}

/// Cumulative counters of a [`Depacketizer`]. Every packet pushed counts in exactly one of
/// `packets`, `late`, `duplicates`, `malformed`, `stray` and `dropped_packets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    /// Packets written into a frame (in order or reordered).
    pub packets: u64,
    /// Pixel octets written.
    pub bytes: u64,
    /// Packets written after a packet with a higher sequence number.
    pub reordered: u64,
    /// Packets of a frame that had already ended: not written.
    pub late: u64,
    /// Packets whose sequence number had already arrived: not written.
    pub duplicates: u64,
    /// Packets refused as malformed: not written; their sequence numbers count as lost.
    pub malformed: u64,
    /// Packets too far from the stream's sequence to place (see [`SeqExtender`]): not written.
    pub stray: u64,
    /// Valid packets of frames without a buffer: not written.
    pub dropped_packets: u64,
    /// Sequence numbers that never arrived (RFC 3550: expected minus received; late arrivals
    /// are received).
    pub lost: u64,
    /// Times the sequence was resynchronised (a restarted sender).
    pub resyncs: u64,
    /// Frames ended complete.
    pub frames_complete: u64,
    /// Frames ended incomplete.
    pub frames_incomplete: u64,
    /// Frames the sink had no buffer for.
    pub frames_dropped: u64,
}

/// What [`Depacketizer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushed {
    /// Written into the frame in progress.
    Written,
    /// Written into the frame in progress, after a packet with a higher sequence number.
    Reordered,
    /// Belongs to a frame that has ended: not written.
    Late,
    /// Its sequence number already arrived: not written.
    Duplicate,
    /// Its frame has no buffer: not written.
    Dropped,
    /// Too far from the stream's sequence: not written.
    Stray,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    ts: u32,
    buffered: bool,
    first_ext: u64,
    highest: u64,
    marker_ext: Option<u64>,
    packets: u32,
    bytes: u64,
    reordered: u32,
    covered: usize,
}

impl Frame {
    fn lost(&self) -> u64 {
        (self.highest + 1 - self.first_ext).saturating_sub(u64::from(self.packets))
    }
}

#[derive(Debug, Clone, Copy)]
struct Ended {
    ts: u32,
    marker_ext: Option<u64>,
}

/// Reassembles ST 2110-20 packets into rfc4175 frame buffers a [`FrameSink`] lends.
///
/// Every SRD of a packet is checked against the format before anything is written; a refused
/// packet writes nothing. Packets are placed by RTP timestamp: a new timestamp in sequence
/// order ends the frame in progress and begins the next; a packet of an ended frame is late.
/// A frame ends as soon as its marker packet has arrived and it is complete; a marker with
/// holes keeps it open for reordered packets until a newer frame begins (or
/// [`flush`](Self::flush)).
///
/// A frame is complete when its marker arrived, no sequence number between its first and its
/// last is missing, and each of its pgroups was written. The first sequence number is one
/// after the previous frame's marker packet, so a lost first packet makes a frame incomplete
/// (its data is missing too); when the previous marker itself was lost, the numbers between the
/// two frames cannot be attributed and count only in [`Counters::lost`]. A peer joined mid-frame
/// yields one incomplete frame first.
///
/// Sequence numbers are extended from the RTP header alone ([`SeqExtender`]); the payload's
/// ESN field is never trusted. Setup allocates a coverage bitmap (one bit per pgroup); nothing
/// is allocated per packet.
#[derive(Debug, Clone)]
pub struct Depacketizer {
    format: Format,
    seq: SeqExtender,
    frame: Option<Frame>,
    last_ended: Option<Ended>,
    /// Lowest extended sequence number of the current sequence run (for `Counters::lost`).
    base: u64,
    /// One bit per pgroup of the frame in progress, set once written.
    coverage: Vec<u64>,
    counters: Counters,
}

impl Depacketizer {
    /// A depacketizer for `format` with the default [`SeqExtender`].
    pub fn new(format: Format) -> Self {
        Self::with_extender(format, SeqExtender::new())
    }

    /// A depacketizer for `format` extending sequence numbers with `seq`.
    pub fn with_extender(format: Format, seq: SeqExtender) -> Self {
        Self {
            format,
            seq,
            frame: None,
            last_ended: None,
            base: 0,
            coverage: vec![0; format.frame_pgroups().div_ceil(64)],
            counters: Counters::default(),
        }
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Ends the frame in progress, if any (the stream stopped, or waited too long).
    pub fn flush(&mut self, sink: &mut impl FrameSink) {
        self.end_frame(sink);
    }

    /// Takes one whole RTP packet. `Err` when it is malformed (counted, nothing written).
    pub fn push(
        &mut self,
        packet: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<Pushed, PacketError> {
        let (rtp, payload) = match self.check(packet) {
            Ok(ok) => ok,
            Err(e) => {
                self.counters.malformed += 1;
                return Err(e);
            }
        };
        let (ts, marker) = (rtp.timestamp, rtp.marker);
        let ext = self.seq.extend(rtp.sequence_number);
        let reordered = match ext.class {
            SeqClass::Stray => return Ok(self.count(Pushed::Stray)),
            SeqClass::Duplicate => return Ok(self.count(Pushed::Duplicate)),
            SeqClass::First | SeqClass::Resync => {
                self.counters.resyncs += u64::from(ext.class == SeqClass::Resync);
                self.end_frame(sink);
                self.last_ended = None;
                self.base = ext.seq;
                self.begin_frame(ts, ext.seq, sink);
                false
            }
            SeqClass::InOrder { gap } => {
                self.counters.lost += u64::from(gap);
                if self.frame.is_none_or(|f| f.ts != ts) {
                    if self.last_ended.is_some_and(|e| e.ts == ts) {
                        return Ok(self.count(Pushed::Late));
                    }
                    self.end_frame(sink);
                    self.begin_frame(ts, ext.seq, sink);
                }
                false
            }
            SeqClass::Late { .. } => {
                self.arrived_late(ext.seq);
                if self.frame.is_none_or(|f| f.ts != ts) {
                    return Ok(self.count(Pushed::Late));
                }
                true
            }
        };
        Ok(self.write(&payload, ext.seq, marker, reordered, sink))
    }

    /// Validates the RTP header, the payload header and every SRD against the format.
    fn check<'a>(&self, packet: &'a [u8]) -> Result<(rtp::Header, Payload<&'a [u8]>), PacketError> {
        let rtp = rtp::Packet::new_checked(packet)?;
        let payload =
            Payload::new_checked(&packet[rtp.header_len()..packet.len() - rtp.padding_len()])?;
        for (srd, _) in payload.segments() {
            self.check_srd(&srd)?;
        }
        Ok((rtp::Header::parse(&rtp), payload))
    }

    fn check_srd(&self, srd: &Srd) -> Result<(), PacketError> {
        let f = &self.format;
        let pg = f.pgroup().bytes;
        if srd.field {
            return Err(PacketError::FieldBit);
        }
        let length = u32::from(srd.length);
        if length == 0 || length % pg != 0 {
            return Err(PacketError::BadLength);
        }
        let line = u32::from(srd.line);
        if line >= f.height() || line % f.pgroup_lines() != 0 {
            return Err(PacketError::BadLine);
        }
        let offset = u32::from(srd.offset);
        let pixels = length / pg * f.pgroup_width();
        if offset % f.pgroup_width() != 0 || offset + pixels > f.width() {
            return Err(PacketError::BadOffset);
        }
        Ok(())
    }

    fn count(&mut self, pushed: Pushed) -> Pushed {
        let c = &mut self.counters;
        match pushed {
            Pushed::Written => c.packets += 1,
            Pushed::Reordered => {
                c.packets += 1;
                c.reordered += 1;
            }
            Pushed::Late => c.late += 1,
            Pushed::Duplicate => c.duplicates += 1,
            Pushed::Dropped => c.dropped_packets += 1,
            Pushed::Stray => c.stray += 1,
        }
        pushed
    }

    /// A sequence number below the highest arrived: it was counted lost, or it extends the run
    /// downwards.
    fn arrived_late(&mut self, ext: u64) {
        if ext < self.base {
            self.counters.lost += self.base - ext - 1;
            self.base = ext;
        } else {
            self.counters.lost = self.counters.lost.saturating_sub(1);
        }
    }

    fn begin_frame(&mut self, ts: u32, ext: u64, sink: &mut impl FrameSink) {
        let after_marker = self.last_ended.and_then(|e| e.marker_ext).map(|m| m + 1);
        let buffered = sink.begin(ts);
        if buffered {
            self.coverage.fill(0);
        } else {
            self.counters.frames_dropped += 1;
        }
        self.frame = Some(Frame {
            ts,
            buffered,
            first_ext: after_marker.unwrap_or(ext).min(ext),
            highest: ext,
            marker_ext: None,
            packets: 0,
            bytes: 0,
            reordered: 0,
            covered: 0,
        });
    }

    fn end_frame(&mut self, sink: &mut impl FrameSink) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        self.last_ended = Some(Ended {
            ts: frame.ts,
            marker_ext: frame.marker_ext,
        });
        if !frame.buffered {
            return;
        }
        let report = self.report(&frame);
        if report.complete {
            self.counters.frames_complete += 1;
        } else {
            self.counters.frames_incomplete += 1;
        }
        sink.end(&report);
    }

    fn report(&self, frame: &Frame) -> FrameReport {
        FrameReport {
            rtp_timestamp: frame.ts,
            packets: frame.packets,
            bytes: frame.bytes,
            lost: frame.lost(),
            reordered: frame.reordered,
            marker: frame.marker_ext.is_some(),
            complete: self.is_complete(frame),
            first_ext_seq: frame.first_ext,
            last_ext_seq: frame.highest,
        }
    }

    fn is_complete(&self, frame: &Frame) -> bool {
        frame.marker_ext.is_some()
            && frame.lost() == 0
            && frame.covered == self.format.frame_pgroups()
    }

    /// Writes a validated packet into the frame in progress (which has its timestamp) and ends
    /// the frame when this completes it.
    fn write(
        &mut self,
        payload: &Payload<&[u8]>,
        ext: u64,
        marker: bool,
        reordered: bool,
        sink: &mut impl FrameSink,
    ) -> Pushed {
        let mut frame = self.frame.expect("a frame is in progress");
        frame.first_ext = frame.first_ext.min(ext);
        frame.highest = frame.highest.max(ext);
        if marker {
            frame.marker_ext = frame.marker_ext.max(Some(ext));
        }
        frame.packets = frame.packets.saturating_add(1);
        let buffer = if frame.buffered {
            Some(sink.buffer())
        } else {
            None
        };
        let pushed = match buffer {
            Some(buffer) if buffer.len() >= self.format.frame_bytes() => {
                let bytes = self.copy(payload, buffer, &mut frame.covered);
                frame.bytes += bytes;
                self.counters.bytes += bytes;
                frame.reordered = frame.reordered.saturating_add(u32::from(reordered));
                if reordered {
                    Pushed::Reordered
                } else {
                    Pushed::Written
                }
            }
            _ => Pushed::Dropped,
        };
        self.frame = Some(frame);
        if pushed != Pushed::Dropped && self.is_complete(&frame) {
            self.end_frame(sink);
        }
        self.count(pushed)
    }

    /// Copies every segment to its place in `buffer` and marks its pgroups covered.
    fn copy(&mut self, payload: &Payload<&[u8]>, buffer: &mut [u8], covered: &mut usize) -> u64 {
        let f = &self.format;
        let (row_bytes, pg) = (f.line_bytes(), f.pgroup().bytes as usize);
        let (lines, width, row_pgroups) = (
            f.pgroup_lines() as usize,
            f.pgroup_width() as usize,
            f.row_pgroups() as usize,
        );
        let mut bytes = 0;
        for (srd, data) in payload.segments() {
            let row = usize::from(srd.line) / lines;
            let column = usize::from(srd.offset) / width;
            let at = row * row_bytes + column * pg;
            buffer[at..at + data.len()].copy_from_slice(data);
            *covered += set_bits(
                &mut self.coverage,
                row * row_pgroups + column,
                data.len() / pg,
            );
            bytes += data.len() as u64;
        }
        bytes
    }
}

/// Sets bits `start..start + len`; returns how many were clear.
fn set_bits(bits: &mut [u64], start: usize, len: usize) -> usize {
    let (mut at, end, mut newly) = (start, start + len, 0);
    while at < end {
        let (word, bit) = (at / 64, at % 64);
        let n = (64 - bit).min(end - at);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << bit
        };
        newly += (mask & !bits[word]).count_ones() as usize;
        bits[word] |= mask;
        at += n;
    }
    newly
}

/// See [`super::fuzz`]. Byte 0 picks a small format and the sink's behaviour; each packet then
/// takes a control byte (bit 7: build a near-valid packet from the bytes that follow, else
/// use them raw; the rest: how many bytes to take).
pub(super) fn fuzz(data: &[u8]) {
    use crate::st2110::{Depth, Sampling};
    const FORMATS: [(Sampling, Depth, u32, u32); 6] = [
        (Sampling::YCbCr422, Depth::D10, 8, 4),
        (Sampling::YCbCr422, Depth::D8, 6, 3),
        (Sampling::YCbCr420, Depth::D8, 4, 4),
        (Sampling::YCbCr420, Depth::D10, 8, 2),
        (Sampling::Rgb, Depth::D8, 3, 2),
        (Sampling::YCbCr444, Depth::D12, 4, 3),
    ];
    let Some((&choice, mut rest)) = data.split_first() else {
        return;
    };
    let (sampling, depth, width, height) = FORMATS[usize::from(choice) % FORMATS.len()];
    let format = Format::new(sampling, depth, width, height).expect("a valid format");
    let mut depack = Depacketizer::with_extender(format, SeqExtender::with_limits(16, 256));
    let mut sink = FuzzSink::new(format, choice);
    let mut near = NearValid {
        seq: u16::from(choice) << 8,
        ts: 0,
        cursor: 0,
    };
    let mut pushes = 0;
    while let Some((&control, tail)) = rest.split_first() {
        let (body, next) = tail.split_at(usize::from(control & 0x7f).min(tail.len()));
        rest = next;
        let packet = if control & 0x80 != 0 {
            near.packet(&format, body)
        } else {
            body.to_vec()
        };
        let before = sink.buf.clone();
        let pushed = depack.push(&packet, &mut sink);
        pushes += 1;
        let want = match pushed {
            Ok(Pushed::Written | Pushed::Reordered) => written(&format, before, &packet),
            _ => before,
        };
        assert_eq!(
            sink.buf, want,
            "{pushed:?}: exactly the packet's segments are written"
        );
        assert!(
            sink.buf[format.frame_bytes()..]
                .iter()
                .all(|&b| b == FuzzSink::GUARD)
        );
    }
    depack.flush(&mut sink);
    let c = depack.counters();
    assert_eq!(
        pushes,
        c.packets + c.late + c.duplicates + c.malformed + c.stray + c.dropped_packets
    );
    assert!(c.reordered <= c.packets);
    assert_eq!(c.frames_complete + c.frames_incomplete, sink.ends);
    assert_eq!(sink.begun, sink.ends, "every begun frame ended");
    assert_eq!(c.frames_dropped, sink.refused);
    assert!(!sink.open);
}

/// Builds packets that are mostly valid and mostly in order from fuzz bytes: each continues
/// the frame where the previous one stopped with one to three SRDs of one to three pgroups,
/// the marker on the one that reaches the frame's end; now and then the sequence number jumps
/// or a header byte is flipped.
struct NearValid {
    seq: u16,
    ts: u32,
    /// Next pgroup of the frame.
    cursor: usize,
}

impl NearValid {
    fn packet(&mut self, format: &Format, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.iter().copied().chain(std::iter::repeat(0));
        let mut next = || b.next().unwrap_or(0);
        let mode = next();
        let seq = match mode & 0x0f {
            0 => u16::from_be_bytes([next(), next()]),
            1 => self.seq.wrapping_add(u16::from(next() % 8)),
            _ => self.seq,
        };
        self.seq = seq.wrapping_add(1);
        let (pg, row_pgroups) = (
            format.pgroup().bytes as usize,
            format.row_pgroups() as usize,
        );
        let mut srds = Vec::new();
        for _ in 0..1 + next() % 3 {
            if self.cursor == format.frame_pgroups() {
                break;
            }
            let (row, column) = (self.cursor / row_pgroups, self.cursor % row_pgroups);
            let n = (1 + usize::from(next() % 3)).min(row_pgroups - column);
            srds.push(Srd {
                length: (n * pg) as u16,
                field: false,
                line: (row as u32 * format.pgroup_lines()) as u16,
                continuation: false,
                offset: (column as u32 * format.pgroup_width()) as u16,
            });
            self.cursor += n;
        }
        let marker = self.cursor == format.frame_pgroups();
        let header = rtp::Header {
            marker,
            payload_type: 96,
            sequence_number: seq,
            timestamp: self.ts,
            ssrc: 1,
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&[next(), next()]);
        for (i, srd) in srds.iter().enumerate() {
            let mut head = [0; Srd::LEN];
            Srd {
                continuation: i + 1 < srds.len(),
                ..*srd
            }
            .emit(&mut head);
            out.extend_from_slice(&head);
        }
        let total: usize = srds.iter().map(|s| usize::from(s.length)).sum();
        out.extend((0..total).map(|_| next()));
        if mode & 0xe0 == 0xe0 {
            let at = usize::from(next()) % (rtp::HEADER_LEN + 2 + Srd::LEN * srds.len());
            out[at] ^= next() | 1;
        }
        if marker {
            self.cursor = 0;
            self.ts = self.ts.wrapping_add(1500);
        }
        out
    }
}

struct FuzzSink {
    buf: Vec<u8>,
    len: usize,
    accept: u8,
    begins: u32,
    begun: u64,
    refused: u64,
    ends: u64,
    open: bool,
}

impl FuzzSink {
    const GUARD: u8 = 0xa5;

    fn new(format: Format, choice: u8) -> Self {
        let short = usize::from(choice & 0x80 != 0 && choice & 0x40 != 0);
        Self {
            buf: vec![Self::GUARD; format.frame_bytes() + 16],
            len: format.frame_bytes() - short,
            accept: choice >> 3,
            begins: 0,
            begun: 0,
            refused: 0,
            ends: 0,
            open: false,
        }
    }
}

/// `buf` with `packet`'s segments written where their SRDs say, in order.
fn written(format: &Format, mut buf: Vec<u8>, packet: &[u8]) -> Vec<u8> {
    let rtp = rtp::Packet::new_checked(packet).expect("written packets are valid");
    let payload = Payload::new_checked(rtp.payload()).expect("written packets are valid");
    let (pg, lines, width) = (
        format.pgroup().bytes as usize,
        format.pgroup_lines(),
        format.pgroup_width(),
    );
    for (srd, data) in payload.segments() {
        let row = usize::from(srd.line) / lines as usize;
        let at = row * format.line_bytes() + usize::from(srd.offset) / width as usize * pg;
        buf[at..at + data.len()].copy_from_slice(data);
    }
    buf
}

impl FrameSink for FuzzSink {
    fn begin(&mut self, _rtp_timestamp: u32) -> bool {
        assert!(!self.open, "begin while a frame is open");
        self.begins += 1;
        let accept = self.accept & (1 << (self.begins % 5)) == 0;
        if accept {
            self.open = true;
            self.begun += 1;
        } else {
            self.refused += 1;
        }
        accept
    }

    fn buffer(&mut self) -> &mut [u8] {
        assert!(self.open, "buffer of a frame not begun");
        &mut self.buf[..self.len]
    }

    fn end(&mut self, report: &FrameReport) {
        assert!(self.open, "end without begin");
        self.open = false;
        self.ends += 1;
        let span = report.last_ext_seq + 1 - report.first_ext_seq;
        assert_eq!(report.lost + u64::from(report.packets), span);
        assert!(u64::from(report.reordered) <= u64::from(report.packets));
        if report.complete {
            assert!(report.marker && report.lost == 0);
            assert!(report.bytes >= self.len as u64 && self.len == self.buf.len() - 16);
        }
    }
}
