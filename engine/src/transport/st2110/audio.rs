//! ST 2110-30 audio sessions: one SDK buffer is one RTP packet of big-endian PCM, as MCM's
//! `pcm_s24be`/`pcm_s16be` buffers already are on the wire.
//!
//! [`St30Tx`] sends each buffer in place (header on the stack, samples from the slot) at its
//! packet time: packet `k` of a run leaves at `t0 + k · ptime`, its RTP timestamp
//! `rtp(t0) + k · samples_per_packet` (ST 2110-10). A sender more than one packet time behind
//! starts a new run at the present, so a stalled application never makes the engine burst.
//! [`St30Rx`] copies each packet's samples into a slot and publishes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mcm_control::dataplane::{EdgeCounters, Violation};
use mcm_proto::st2110::rtp::{self, HEADER_LEN};
use mcm_proto::st2110::st30::{self, Continuity};

use super::clock::Clock;
use super::paced::RtpRx;
use super::session::SdpFile;
use crate::group::{Frame, FrameQueue, Sink, SinkIo, Source, SourceIo};
use crate::io::{Datagram, PacketRx, PacketTx};

/// The packet run a tx session is in.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// When packet 0 of the run was due (TAI ns).
    t0: u64,
    /// Packets sent in the run.
    k: u64,
    rtp0: u32,
}

/// An ST 2110-30 transmitter: a sink bridge of its group.
pub struct St30Tx {
    name: String,
    udp: Box<dyn PacketTx>,
    format: st30::Format,
    clock: Clock,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    queue: FrameQueue,
    run: Option<Run>,
    counters: Arc<EdgeCounters>,
    /// The SDP file published for this session; removed when the session is dropped.
    sdp_file: Option<SdpFile>,
    /// The lcore's time and TAI at the last poll (deadlines are computed from them).
    anchor: (Instant, u64),
}

impl St30Tx {
    /// A transmitter of `format` packets through `udp`.
    pub fn new(
        name: String,
        udp: impl PacketTx + 'static,
        format: st30::Format,
        payload_type: u8,
        ssrc: u32,
        counters: Arc<EdgeCounters>,
        clock: Clock,
    ) -> Self {
        Self {
            name,
            udp: Box::new(udp),
            format,
            clock,
            payload_type,
            ssrc,
            seq: 0,
            queue: FrameQueue::default(),
            run: None,
            counters,
            sdp_file: None,
            anchor: (Instant::now(), 0),
        }
    }

    /// Removes `path` (the session's published SDP) when the session ends.
    pub fn with_sdp_file(mut self, file: SdpFile) -> Self {
        self.sdp_file = Some(file);
        self
    }

    /// When the next packet is due, starting a new run if the last one fell behind.
    fn due_at(&mut self, now_ns: u64) -> (u64, Run) {
        let ptime = self.format.packet_duration_ns();
        let run = match self.run {
            Some(r) if now_ns < r.t0 + (r.k + 1) * ptime => r,
            _ => Run {
                t0: now_ns,
                k: 0,
                rtp0: rtp::rtp_timestamp(now_ns, self.format.sample_rate()),
            },
        };
        self.run = Some(run);
        (run.t0 + run.k * ptime, run)
    }

    fn send_one(&mut self, io: &mut SinkIo<'_>, run: Run) {
        let Some(frame) = self.queue.front() else {
            return;
        };
        let spp = u64::from(self.format.samples_per_packet());
        let header = rtp::Header {
            marker: false,
            payload_type: self.payload_type,
            sequence_number: self.seq,
            timestamp: run.rtp0.wrapping_add((run.k * spp) as u32),
            ssrc: self.ssrc,
        };
        let mut h = [0u8; HEADER_LEN];
        header.emit(&mut h);
        let want = self.format.packet_bytes();
        let sent = match io.payload(frame.slot) {
            Some(p) if frame.payload_len as usize == want && p.len() >= want => {
                self.udp.send(&[Datagram {
                    header: &h,
                    data: &p[..want],
                }])
            }
            _ => {
                // Not one packet's worth of samples: the buffer is refused, not sent short.
                EdgeCounters::add(&self.counters.frames_refused, 1);
                self.queue.pop();
                io.release(frame.slot);
                return;
            }
        };
        if sent == 0 {
            // The socket is full: the buffer stays at the head for the next poll.
            return;
        }
        self.queue.pop();
        io.release(frame.slot);
        self.seq = self.seq.wrapping_add(1);
        self.run = Some(Run {
            k: run.k + 1,
            ..run
        });
        let c = &self.counters;
        EdgeCounters::add(&c.packets, 1);
        EdgeCounters::add(&c.frames, 1);
        let u = self.udp.counters();
        // Relaxed: statistics mirrored from the socket (one writer).
        c.bytes.store(u.bytes, Ordering::Relaxed);
        c.send_errors.store(u.errors, Ordering::Relaxed);
    }
}

impl Sink for St30Tx {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, frame: Frame) -> bool {
        super::video::offer_counted(&mut self.queue, frame, &self.counters)
    }

    fn missed(&mut self, _frame: Frame) {
        EdgeCounters::add(&self.counters.frames_dropped, 1);
    }

    fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    fn paces_source(&self) -> bool {
        true
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation> {
        let mut work = 0;
        // Read on every poll, as the video sender does (the lcore's `now` is older).
        let now_ns = self.clock.now_ns();
        self.anchor = (now, now_ns);
        // One release per packet: never more packets than this poll can release (a slot whose
        // release did not fit would stay held).
        while work < budget && !self.queue.is_empty() && io.room() > 0 {
            let (at, run) = self.due_at(now_ns);
            if at > now_ns {
                break;
            }
            let before = self.queue.len();
            self.send_one(io, run);
            if self.queue.len() == before {
                break; // socket full
            }
            work += 1;
        }
        Ok(work)
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        let Some(r) = self.run else {
            return Some(now);
        };
        let at = r.t0 + r.k * self.format.packet_duration_ns();
        // The schedule is TAI; the last poll saw both clocks, so no clock is read here.
        let (polled, polled_ns) = self.anchor;
        Some(polled + Duration::from_nanos(at.saturating_sub(polled_ns)))
    }
}

/// An ST 2110-30 receiver: the source edge of its group. Every packet of one packet time is
/// published as a buffer (late ones too: audio has no frame to cut), through the shared RTP
/// receive loop ([`RtpRx`]).
pub struct St30Rx {
    name: String,
    rtp: RtpRx,
    format: st30::Format,
    continuity: st30::Receiver,
    clock: Clock,
    counters: Arc<EdgeCounters>,
}

impl St30Rx {
    /// A receiver of `format` packets (payload type `payload_type`) from `udp`.
    pub fn new(
        name: String,
        udp: impl PacketRx + 'static,
        format: st30::Format,
        payload_type: u8,
        counters: Arc<EdgeCounters>,
        clock: Clock,
    ) -> Self {
        let rtp = RtpRx::new(udp, payload_type, None)
            .with_payload_len(format.packet_bytes())
            .delivering_late();
        Self {
            name,
            rtp,
            continuity: st30::Receiver::new(&format),
            format,
            clock,
            counters,
        }
    }

    /// Accepts datagrams from `source` only (`None`: from anyone).
    pub fn with_source_filter(mut self, source: Option<std::net::Ipv4Addr>) -> Self {
        self.rtp.set_source_filter(source);
        self
    }
}

impl Source for St30Rx {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let Self {
            rtp,
            format,
            continuity,
            clock,
            counters,
            ..
        } = self;
        let want = format.packet_bytes();
        let rate = format.sample_rate();
        // Each packet needs a publication: no more packets than this poll can publish.
        let budget = budget.min(io.room() as u32);
        let work = rtp.recv(now, budget, |p, _gap| {
            let _: Continuity = continuity.push(p.timestamp());
            let Some(slot) = io.alloc() else {
                EdgeCounters::add(&counters.frames_dropped, 1);
                return true;
            };
            if let Some(dst) = io.payload_mut(slot) {
                dst[..want].copy_from_slice(p.payload());
            }
            let frame = Frame {
                slot,
                payload_len: want as u32,
                metadata_len: 0,
                timestamp_ns: clock.sampling_instant_ns(p.timestamp(), rate),
                seq: 0,
            };
            if io.publish(frame) {
                EdgeCounters::add(&counters.frames, 1);
            } else {
                io.abandon(slot);
            }
            true
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

    fn next_deadline(&self, _now: Instant) -> Option<Instant> {
        self.rtp.next_read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::st2110::paced::tests::{Rig, published, rtp_packet, sockets};

    #[test]
    fn rx_counts_a_gap_as_lost_and_nothing_as_reordered_in_order() {
        let format =
            st30::Format::from_packet_time(st30::Encoding::L24, 2, 48_000, st30::PacketTime::Ms1)
                .unwrap();
        let mut rig = Rig::new(8, 1000);
        let (_, udp) = sockets();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(udp.local().unwrap()).unwrap();
        let counters = Arc::new(EdgeCounters::default());
        let mut rx = St30Rx::new("r".into(), udp, format, 98, counters.clone(), Clock::Tai);
        let bytes = format.packet_bytes();
        for seq in [0u16, 1, 3] {
            let samples = vec![seq as u8; bytes];
            sock.send(&rtp_packet(seq, 48 * u32::from(seq), false, &samples))
                .unwrap();
        }
        let got = published(&mut rig, &mut rx, 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], vec![3u8; bytes]);
        let get = |c: &std::sync::atomic::AtomicU64| EdgeCounters::get(c);
        assert_eq!(get(&counters.packets_lost), 1);
        assert_eq!(
            get(&counters.packets_reordered),
            0,
            "the first packet is not reordered"
        );
    }

    /// Buffers the format refuses (not one packet long) are released one per packet slot of
    /// the poll's batch: 40 of them need two polls, and none stays held.
    #[test]
    fn refused_buffers_are_released_within_the_polls_batch() {
        let format =
            st30::Format::from_packet_time(st30::Encoding::L24, 2, 48_000, st30::PacketTime::Ms1)
                .unwrap();
        let mut rig = Rig::new(64, 1000);
        let (udp, _rx) = sockets();
        let counters = Arc::new(EdgeCounters::default());
        let mut tx = St30Tx::new("t".into(), udp, format, 98, 1, counters.clone(), Clock::Tai);
        for _ in 0..40 {
            let f = rig.frame(&[1; 10]);
            assert!(tx.offer(f));
        }
        let mut released = 0;
        for _ in 0..2 {
            let mut io = rig.sink_io();
            tx.poll(Instant::now(), 64, &mut io).unwrap();
            assert!(io.released().len() <= crate::group::IO_BATCH);
            released += io.released().len();
        }
        assert_eq!(released, 40);
        assert!(rig.masks.iter().all(|&m| m == 0), "a slot was left held");
        assert_eq!(EdgeCounters::get(&counters.frames_refused), 40);
    }
}
