//! ST 2110-22 compressed video, JPEG XS passthrough (RFC 9134 codestream mode): one whole
//! codestream per SDK buffer, its length the buffer's payload length.
//!
//! Tx is a [`PacedTx`] with the [`Codestream`] format: the codestream is cut into payloads of
//! [`rfc9134::Packetizer`] size, sent in place from the slot, the last one with `L` and the RTP
//! marker. [`St22Rx`] reassembles each codestream straight into a pool slot (the
//! [`rfc9134::Depacketizer`] writes each packet's bytes at their offset) and publishes it with
//! its length when the last packet arrives and nothing is missing; an incomplete codestream is
//! counted in `frames_incomplete` and its slot reused.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use mcm_control::dataplane::{EdgeCounters, Violation};
use mcm_proto::st2110::rfc9134::{self, Depacketizer, FrameInfo, PacketError};

use super::clock::Clock;
use super::paced::{Packetize, RtpRx};
use crate::group::{Frame, Source, SourceIo};

#[cfg(doc)]
use super::paced::PacedTx;

/// Why a codestream is refused on tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodestreamError {
    /// The buffer's payload length is 0.
    Empty,
}

impl fmt::Display for CodestreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str(
                "an empty JPEG XS codestream (payload length 0; set it with \
                 mesh_buffer_set_payload_len to the codestream's bytes)",
            ),
        }
    }
}

/// The ST 2110-22 tx format: a codestream cut into RFC 9134 codestream-mode packets.
#[derive(Debug, Clone, Copy)]
pub struct Codestream {
    packetizer: rfc9134::Packetizer,
    /// Bytes of the frame being sent.
    len: usize,
    /// `F` of the frame being sent (taken modulo 32 on the wire).
    frame_counter: u32,
}

impl Codestream {
    /// Packets of at most `max_payload` bytes after the RTP header (payload header included).
    pub fn new(max_payload: usize) -> Result<Self, rfc9134::PacketizerError> {
        Ok(Self {
            packetizer: rfc9134::Packetizer::new(max_payload)?,
            len: 0,
            frame_counter: u32::MAX,
        })
    }

    /// Codestream bytes in every packet but a frame's last.
    pub fn data_per_packet(&self) -> usize {
        self.packetizer.data_per_packet()
    }
}

impl Packetize for Codestream {
    type Error = CodestreamError;

    fn begin(&mut self, frame: &[u8]) -> Result<u32, CodestreamError> {
        if frame.is_empty() {
            return Err(CodestreamError::Empty);
        }
        self.len = frame.len();
        self.frame_counter = self.frame_counter.wrapping_add(1);
        // A slot holds at most 256 MiB: fewer than 2^32 packets.
        Ok(self.packetizer.packets(self.len) as u32)
    }

    fn packet(&self, index: u32, _seq: u32, out: &mut [u8]) -> (usize, Range<usize>) {
        let i = index as usize;
        let h = self.packetizer.header(i, self.len, self.frame_counter);
        out[..rfc9134::HEADER_LEN].copy_from_slice(&h);
        (rfc9134::HEADER_LEN, self.packetizer.data(i, self.len))
    }
}

/// An ST 2110-22 receiver: the source bridge of its group.
pub struct St22Rx {
    name: String,
    rtp: RtpRx,
    depacketizer: Depacketizer,
    /// The slot the codestream in progress is written into.
    slot: Option<u32>,
    clock: Clock,
    counters: Arc<EdgeCounters>,
}

impl St22Rx {
    /// A receiver of codestreams from `rtp`.
    pub fn new(name: String, rtp: RtpRx, counters: Arc<EdgeCounters>, clock: Clock) -> Self {
        Self {
            name,
            rtp,
            depacketizer: Depacketizer::new(),
            slot: None,
            clock,
            counters,
        }
    }

    /// A codestream ended (finished by its last packet, or abandoned for the next one).
    fn ended(
        slot: &mut Option<u32>,
        info: &FrameInfo,
        io: &mut SourceIo<'_>,
        counters: &EdgeCounters,
        clock: &Clock,
    ) {
        let Some(s) = *slot else {
            // No slot was free when it began: its bytes went nowhere.
            EdgeCounters::add(&counters.frames_dropped, 1);
            return;
        };
        if !info.complete {
            // The slot stays for the next codestream.
            EdgeCounters::add(&counters.frames_incomplete, 1);
            return;
        }
        let frame = Frame {
            slot: s,
            payload_len: info.len as u32,
            metadata_len: 0,
            timestamp_ns: clock.sampling_instant_ns(info.timestamp, 90_000),
            seq: 0,
        };
        if io.publish(frame) {
            *slot = None;
            EdgeCounters::add(&counters.frames, 1);
        }
    }
}

impl Source for St22Rx {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let Self {
            rtp,
            depacketizer,
            slot,
            clock,
            counters,
            ..
        } = self;
        let mut empty = [0u8; 0];
        let work = rtp.recv(now, budget, |p, _gap| {
            if slot.is_none() && io.room() > 0 {
                *slot = io.alloc();
            }
            let buf = match slot.and_then(|s| io.payload_mut(s)) {
                Some(b) => b,
                None => &mut empty[..],
            };
            let pushed = depacketizer.push(p.payload(), p.marker(), p.timestamp(), buf);
            let ok = match pushed {
                Ok(_) | Err(PacketError::BufferTooSmall { .. }) => true,
                Err(_) => false,
            };
            if let Ok(done) = pushed {
                if let Some(a) = done.abandoned {
                    Self::ended(slot, &a, io, counters, clock);
                }
                if let Some(f) = done.frame {
                    Self::ended(slot, &f, io, counters, clock);
                }
            }
            ok
        });
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

    #[test]
    fn rx_delivers_whole_codestreams_and_counts_an_incomplete_one() {
        let mut rig = Rig::new(4, 10_000);
        let (sock, rtp) = rtp_pair();
        let counters = Arc::new(EdgeCounters::default());
        let mut rx = St22Rx::new("r".into(), rtp, counters.clone(), Clock::Tai);
        let mut c = Codestream::new(104).unwrap(); // 100 bytes per packet
        let frames: Vec<Vec<u8>> = [250usize, 300, 120, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect();
        let mut seq = 0u16;
        for (i, f) in frames.iter().enumerate() {
            let n = c.begin(f).unwrap();
            for k in 0..n {
                let mut h = [0u8; 16];
                let (len, range) = c.packet(k, u32::from(seq), &mut h);
                let mut payload = h[..len].to_vec();
                payload.extend_from_slice(&f[range]);
                // Frame 1 loses its second packet.
                if !(i == 1 && k == 1) {
                    let p = rtp_packet(seq, 9000 * i as u32, k + 1 == n, &payload);
                    sock.send(&p).unwrap();
                }
                seq += 1;
            }
        }
        let got = published(&mut rig, &mut rx, 3);
        assert_eq!(
            got,
            vec![frames[0].clone(), frames[2].clone(), frames[3].clone()]
        );
        let get = |c: &std::sync::atomic::AtomicU64| EdgeCounters::get(c);
        assert_eq!(get(&counters.frames), 3);
        assert_eq!(get(&counters.frames_incomplete), 1);
        assert_eq!(get(&counters.packets_lost), 1);
        assert_eq!(get(&counters.packets_malformed), 0);
    }

    #[test]
    fn a_codestream_is_cut_with_l_on_the_last_packet_only() {
        let mut c = Codestream::new(1448).unwrap();
        assert_eq!(c.data_per_packet(), 1444);
        let frame = vec![7u8; 1444 * 3 + 1];
        assert_eq!(c.begin(&frame), Ok(4));
        let mut covered = 0;
        for i in 0..4 {
            let mut out = [0u8; 16];
            let (len, range) = c.packet(i, 100 + i, &mut out);
            assert_eq!(len, rfc9134::HEADER_LEN);
            let p = rfc9134::Packet::new_checked(&out[..len]).unwrap();
            assert_eq!(p.last(), i == 3);
            assert_eq!(p.packet_index(), i);
            assert_eq!(p.frame_counter(), 0);
            assert_eq!(range.start, covered);
            covered = range.end;
        }
        assert_eq!(covered, frame.len());
        // The next frame: counter 1, one packet.
        assert_eq!(c.begin(&[1]), Ok(1));
        let mut out = [0u8; 16];
        let (len, range) = c.packet(0, 0, &mut out);
        let p = rfc9134::Packet::new_checked(&out[..len]).unwrap();
        assert!(p.last() && p.frame_counter() == 1 && range == (0..1));
        assert_eq!(c.begin(&[]), Err(CodestreamError::Empty));
        assert!(
            CodestreamError::Empty
                .to_string()
                .contains("payload length 0")
        );
    }
}
