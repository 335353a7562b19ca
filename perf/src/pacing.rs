//! `mcm-perf pacing`: grades a live ST 2110-20 stream against ST 2110-21 from the kernel's
//! software receive timestamps.
//!
//! The stream is described by an SDP file (`raw/90000`). A UDP socket is bound to its
//! destination (the multicast group is joined, source-specific when the SDP has a
//! `source-filter`), `SO_TIMESTAMPNS` asks the kernel to stamp each datagram when it reaches the
//! socket, and every packet's (arrival, RTP timestamp, marker) goes through [`Meter::on_packet`]:
//! the first complete frame (marker to marker) gives NPACKETS, then a
//! [`Grader`](mcm_proto::st2110::st21::Grader) grades every following frame.
//!
//! # Clocks
//!
//! The kernel stamps with `CLOCK_REALTIME`, while ST 2110 senders schedule on TAI. The offset
//! `CLOCK_TAI − CLOCK_REALTIME` is read once at start (rounded to whole seconds, as the kernel
//! keeps it) and added to every arrival. Where no PTP daemon has set the kernel's TAI offset it
//! is 0 and TAI == REALTIME (so on the project's machines); the report prints the offset used.
//! Loopback and software timestamps put the figures within a few µs of the wire's.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use mcm_proto::net::udp::{RxAddr, SocketOptions, UdpRx};
use mcm_proto::st2110::FrameRate;
use mcm_proto::st2110::rtp::Packet;
use mcm_proto::st2110::sdp::{self, Fmtp, MediaKind, Session};
use mcm_proto::st2110::st21::{
    Compliance, FrameGrade, GradeSummary, Grader, SenderType, Timing, Violation,
};

/// Options of `mcm-perf pacing`.
#[derive(Debug, Args)]
pub struct PacingArgs {
    /// SDP file of the stream (ST 2110-20, `raw/90000`).
    #[arg(long)]
    pub sdp: PathBuf,
    /// Frames to grade (after the one used to count packets per frame).
    #[arg(long, default_value_t = 120)]
    pub frames: u64,
    /// Give up when no packet comes for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    /// Frame rate when the SDP has no `exactframerate` (FFmpeg's), e.g. 59.94.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Address of the interface to join multicast on (0.0.0.0: the kernel's choice by route).
    #[arg(long, default_value = "0.0.0.0")]
    pub interface: Ipv4Addr,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Files beside the report: `pacing.csv` (the graded frames), a plot of VRX per frame.
    #[command(flatten)]
    pub out: crate::output::OutputArgs,
}

/// What the grader needs to know about a stream, from its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Destination address: the multicast group, or the unicast address to bind.
    pub addr: Ipv4Addr,
    /// Destination UDP port.
    pub port: u16,
    /// The only source accepted (SDP `source-filter`), multicast only.
    pub source: Option<Ipv4Addr>,
    /// RTP payload type.
    pub payload_type: u8,
    /// Frame rate.
    pub rate: FrameRate,
    /// Active lines of a frame.
    pub height: u32,
    /// Interlaced (the schedule counts fields).
    pub interlaced: bool,
    /// Sender type from `TP=`, narrow (gapped) when absent.
    pub sender: SenderType,
}

impl Stream {
    /// Reads the first `m=video` `raw/90000` section of `text`; `fps` stands in for an absent
    /// `exactframerate` (FFmpeg writes none).
    pub fn from_sdp(text: &str, fps: Option<f64>) -> Result<Self, String> {
        let s = Session::parse(text).map_err(|e| format!("SDP: {e}"))?;
        let (media, v) = s
            .media
            .iter()
            .find_map(|m| match (&m.kind, &m.fmtp) {
                (MediaKind::Video, Fmtp::Raw(v)) => Some((m, v)),
                _ => None,
            })
            .ok_or("the SDP has no m=video section with a raw/90000 (ST 2110-20) rtpmap")?;
        let rate = match (v.exactframerate, fps) {
            (_, Some(f)) => FrameRate::from_fps(f)
                .ok_or_else(|| format!("--fps {f} is not a frame rate (allowed: 0.001 to 1000)"))?,
            (Some(r), None) => r,
            (None, None) => {
                return Err(
                    "the SDP has no exactframerate (FFmpeg writes none): give --fps".to_owned(),
                );
            }
        };
        let addr = match s.connection_of(media).map(|c| c.addr) {
            Some(IpAddr::V4(a)) => a,
            Some(IpAddr::V6(a)) => return Err(format!("c= {a}: only IPv4 streams are graded")),
            None => return Err("the SDP has no c= line for its video section".to_owned()),
        };
        let source = match media.source_filter {
            Some(sdp::SourceFilter {
                source: IpAddr::V4(src),
                ..
            }) if addr.is_multicast() => Some(src),
            _ => None,
        };
        let sender = match v.sender_type {
            None | Some(sdp::SenderType::Narrow) => SenderType::Narrow,
            Some(sdp::SenderType::NarrowLinear) => SenderType::NarrowLinear,
            Some(sdp::SenderType::Wide) => SenderType::Wide,
        };
        Ok(Self {
            addr,
            port: media.port,
            source,
            payload_type: media.payload_type,
            rate,
            height: v.height,
            interlaced: v.interlace,
            sender,
        })
    }
}

/// Where [`Meter`] is in a stream.
#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for the first marker: the packets before it belong to a frame seen in part.
    Sync,
    /// Counting the first complete frame's packets.
    Count { packets: u32, ts: u32 },
    /// Grading.
    Grade(Box<Grader>),
}

/// Per-packet handling: infers NPACKETS from the first complete frame, then grades.
///
/// The packets before the first marker (a frame joined in the middle) and those of the first
/// complete frame are not graded: the first defines the timing, which the grader needs from its
/// first packet on. Nothing here allocates after the grader is built.
#[derive(Debug, Clone)]
pub struct Meter {
    stream: Stream,
    phase: Phase,
    /// Packets not graded (before the grader started).
    skipped: u64,
}

impl Meter {
    /// A meter for `stream`, waiting for its first marker.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            phase: Phase::Sync,
            skipped: 0,
        }
    }

    /// One packet arrived at `arrival_ns` (TAI) with `rtp_ts` and `marker`. Returns the grade
    /// of a frame it closed.
    pub fn on_packet(&mut self, arrival_ns: u64, rtp_ts: u32, marker: bool) -> Option<FrameGrade> {
        match &mut self.phase {
            Phase::Grade(g) => g.on_packet(arrival_ns, rtp_ts, marker),
            Phase::Sync => {
                self.skipped += 1;
                if marker {
                    self.phase = Phase::Count { packets: 0, ts: 0 };
                }
                None
            }
            Phase::Count { packets, ts } => {
                self.skipped += 1;
                if *packets > 0 && *ts != rtp_ts {
                    // The marker was lost: count again from this packet.
                    *packets = 0;
                }
                *packets += 1;
                *ts = rtp_ts;
                if marker {
                    let s = &self.stream;
                    let t = Timing::new(s.rate, s.height, s.interlaced, *packets, s.sender);
                    self.phase = Phase::Grade(Box::new(Grader::new(t)));
                }
                None
            }
        }
    }

    /// Closes the frame in progress (end of capture).
    pub fn finish(&mut self) -> Option<FrameGrade> {
        match &mut self.phase {
            Phase::Grade(g) => g.finish(),
            _ => None,
        }
    }

    /// The timing graded against, once NPACKETS is known.
    pub fn timing(&self) -> Option<&Timing> {
        match &self.phase {
            Phase::Grade(g) => Some(g.timing()),
            _ => None,
        }
    }

    /// Totals of the graded frames.
    pub fn summary(&self) -> GradeSummary {
        match &self.phase {
            Phase::Grade(g) => *g.summary(),
            _ => GradeSummary::default(),
        }
    }

    /// Packets seen before grading started.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// `CLOCK_TAI − CLOCK_REALTIME` in ns, rounded to whole seconds (0 where no PTP daemon set it).
pub fn tai_offset_ns() -> i64 {
    use rustix::time::{ClockId, DynamicClockId, clock_gettime, clock_gettime_dynamic};
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let real = ns(clock_gettime(ClockId::Realtime));
    let Ok(tai) = clock_gettime_dynamic(DynamicClockId::Tai) else {
        return 0;
    };
    let d = ns(tai) - real;
    (((d + 500_000_000).div_euclid(1_000_000_000)) * 1_000_000_000) as i64
}

/// A socket receiving one stream with kernel receive timestamps: the engine's own kernel UDP
/// receiver ([`UdpRx`], shared through `mcm_proto::net`), with GRO off so every datagram keeps
/// its own timestamp.
#[derive(Debug)]
pub struct Receiver {
    rx: UdpRx,
    /// Datagrams that were not RTP of the stream's payload type.
    pub malformed: u64,
    /// Datagrams without a kernel timestamp (stamped in user space instead).
    pub unstamped: u64,
}

impl Receiver {
    /// Binds `stream`'s destination (reusable, so an engine rx session may share a multicast
    /// group), joins the group on `interface` when multicast, asks for `SO_TIMESTAMPNS`.
    pub fn open(stream: &Stream, interface: Ipv4Addr) -> Result<Self, String> {
        let opts = SocketOptions {
            buffer_bytes: 64 << 20,
            interface,
            rx_timestamps: true,
            gro: false,
            ..SocketOptions::default()
        };
        let at = RxAddr {
            addr: stream.addr,
            port: stream.port,
            source: stream.source.filter(|_| stream.addr.is_multicast()),
        };
        let rx = UdpRx::open(at, &opts)
            .map_err(|e| format!("listen on {}:{}: {e}", stream.addr, stream.port))?;
        Ok(Self {
            rx,
            malformed: 0,
            unstamped: 0,
        })
    }

    /// Receives until `meter` has graded `frames` frames, or no packet came for `idle`. Each
    /// packet's kernel timestamp plus `tai_offset_ns` goes to [`Meter::on_packet`]; `on_grade`
    /// sees every grade. Returns the grades.
    pub fn run(
        &mut self,
        meter: &mut Meter,
        frames: u64,
        idle: Duration,
        tai_offset_ns: i64,
        pt: u8,
    ) -> Result<Vec<FrameGrade>, String> {
        let mut grades = Vec::with_capacity(frames as usize + 1);
        let mut last = Instant::now();
        let mut progress = crate::report::Progress::new("frames graded", frames);
        let Self {
            rx,
            malformed,
            unstamped,
        } = self;
        while (grades.len() as u64) < frames {
            progress.tick(grades.len() as u64);
            // Block until a datagram waits (or the idle time is up); the socket itself never
            // blocks.
            if !rx.has_pending() && !wait_readable(rx, idle.saturating_sub(last.elapsed()))? {
                break;
            }
            let n = rx.recv(usize::MAX, Instant::now(), &mut |d, meta| {
                let ts = meta.timestamp_ns.unwrap_or_else(|| {
                    *unstamped += 1;
                    mcm_sdk::conn::realtime_ns()
                });
                let Ok(p) = Packet::new_checked(d) else {
                    *malformed += 1;
                    return;
                };
                if p.payload_type() != pt {
                    *malformed += 1;
                    return;
                }
                let t = (ts as i64).saturating_add(tai_offset_ns).max(0) as u64;
                if let Some(g) = meter.on_packet(t, p.timestamp(), p.marker()) {
                    grades.push(g);
                }
            });
            if n > 0 {
                last = Instant::now();
            } else if last.elapsed() >= idle {
                break;
            }
        }
        if (grades.len() as u64) < frames
            && let Some(g) = meter.finish()
        {
            grades.push(g);
        }
        grades.truncate(frames as usize);
        Ok(grades)
    }
}

/// Waits up to `limit` for `rx`'s socket to be readable; returns whether it is.
fn wait_readable(rx: &UdpRx, limit: Duration) -> Result<bool, String> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::from_borrowed_fd(rx.fd(), PollFlags::IN)];
    let limit = limit.max(Duration::from_millis(1));
    let t = Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: i64::from(limit.subsec_nanos()),
    };
    match poll(&mut fds, Some(&t)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(true),
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// Name of a class as the report prints it.
pub fn class_name(c: Compliance) -> &'static str {
    match c {
        Compliance::Narrow => "narrow",
        Compliance::Wide => "wide",
        Compliance::Fail => "fail",
    }
}

/// One grade as JSON.
pub fn grade_json(g: &FrameGrade) -> serde_json::Value {
    serde_json::json!({
        "rtp_timestamp": g.rtp_timestamp, "frame": g.frame, "packets": g.packets,
        "vrx_peak": g.vrx_peak, "vrx_min": g.vrx_min, "cinst_peak": g.cinst_peak,
        "first_packet_offset_us": g.first_packet_offset_ns as f64 / 1000.0,
        "rtp_offset": g.rtp_offset, "class": class_name(g.class),
        "violation": g.violation.map(|v| format!("{v:?}")),
    })
}

/// The summary and the timing as JSON.
pub fn summary_json(s: &GradeSummary, t: Option<&Timing>) -> serde_json::Value {
    serde_json::json!({
        "frames": s.frames, "narrow": s.narrow, "wide": s.wide, "fail": s.failed,
        "class": s.class().map(class_name), "packets": s.packets,
        "stray_packets": s.stray_packets, "cinst_peak": s.cinst_peak, "vrx_peak": s.vrx_peak,
        "vrx_min": s.vrx_min, "first_packet_offset_max_us": s.first_packet_offset_max_ns as f64 / 1000.0,
        "rtp_offset_min": s.rtp_offset_min, "rtp_offset_max": s.rtp_offset_max,
        "timing": t.map(|t| serde_json::json!({
            "rate": t.rate().to_string(), "packets_per_frame": t.packets(),
            "sender": t.sender().as_str(), "cmax_narrow": t.cmax_narrow(),
            "cmax_wide": t.cmax_wide(), "vrx_full_narrow": t.vrx_full_narrow(),
            "vrx_full_wide": t.vrx_full_wide(), "troffset_us": t.troffset_ns() as f64 / 1000.0,
        })),
    })
}

/// Prints the timing graded against.
pub fn print_timing(meter: &Meter, tai_offset_ns: i64) {
    if let Some(t) = meter.timing() {
        println!(
            "timing: {} fps, {} packets/frame, {} (CMAX narrow {} wide {}, VRX_FULL narrow {} \
             wide {}, TROFFSET {:.1} us); TAI - REALTIME = {} s",
            t.rate(),
            t.packets(),
            t.sender(),
            t.cmax_narrow(),
            t.cmax_wide(),
            t.vrx_full_narrow(),
            t.vrx_full_wide(),
            t.troffset_ns() as f64 / 1000.0,
            tai_offset_ns / 1_000_000_000
        );
    }
}

/// Prints the grades as a table, then the summary.
pub fn print_table(grades: &[FrameGrade], meter: &Meter, tai_offset_ns: i64) {
    print_timing(meter, tai_offset_ns);
    println!(
        "{:>12} {:>8} {:>9} {:>9} {:>10} {:>13} {:>10} {:>7}  violation",
        "rtp ts",
        "packets",
        "vrx peak",
        "vrx min",
        "cinst peak",
        "first pkt us",
        "rtp off",
        "class"
    );
    for g in grades {
        println!(
            "{:>12} {:>8} {:>9} {:>9} {:>10} {:>13.1} {:>10} {:>7}  {}",
            g.rtp_timestamp,
            g.packets,
            g.vrx_peak,
            g.vrx_min,
            g.cinst_peak,
            g.first_packet_offset_ns as f64 / 1000.0,
            g.rtp_offset,
            class_name(g.class),
            g.violation.map(|v| format!("{v:?}")).unwrap_or_default()
        );
    }
    print_summary(grades, meter);
}

/// Prints the totals of the graded frames.
pub fn print_summary(grades: &[FrameGrade], meter: &Meter) {
    let s = meter.summary();
    println!(
        "summary: {} frames: {} narrow, {} wide, {} fail -> {}; worst cinst {}, vrx {}..{}, \
         first packet <= {:.1} us, rtp offset {}..{}",
        s.frames,
        s.narrow,
        s.wide,
        s.failed,
        s.class().map_or("no frame", class_name),
        s.cinst_peak,
        s.vrx_min,
        s.vrx_peak,
        s.first_packet_offset_max_ns as f64 / 1000.0,
        s.rtp_offset_min,
        s.rtp_offset_max
    );
    let v = violations(grades);
    if !v.is_empty() {
        let text: Vec<String> = v.iter().map(|(k, n)| format!("{n} {k:?}")).collect();
        println!("failed frames by first violation: {}", text.join(", "));
    }
}

/// How many frames failed for each reason, in [`Violation`] order.
pub fn violations(grades: &[FrameGrade]) -> Vec<(Violation, u64)> {
    use Violation::*;
    [
        FirstPacketLate,
        RtpOffset,
        VrxUnderflow,
        VrxOverflow,
        CinstOverflow,
    ]
    .into_iter()
    .map(|k| {
        (
            k,
            grades.iter().filter(|g| g.violation == Some(k)).count() as u64,
        )
    })
    .filter(|&(_, n)| n > 0)
    .collect()
}

/// [`violations`] as a JSON object.
pub fn violations_json(grades: &[FrameGrade]) -> serde_json::Value {
    violations(grades)
        .into_iter()
        .map(|(k, n)| (format!("{k:?}"), serde_json::Value::from(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Runs `mcm-perf pacing`.
pub fn run(a: &PacingArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&a.sdp).map_err(|e| format!("{}: {e}", a.sdp.display()))?;
    let stream = Stream::from_sdp(&text, a.fps)?;
    let mut rx = Receiver::open(&stream, a.interface)?;
    let offset = tai_offset_ns();
    let mut meter = Meter::new(stream);
    let grades = rx.run(
        &mut meter,
        a.frames,
        Duration::from_secs_f64(a.timeout_s.max(0.001)),
        offset,
        stream.payload_type,
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "stream": format!("{}:{}", stream.addr, stream.port),
                "tai_offset_s": offset / 1_000_000_000,
                "skipped_packets": meter.skipped(), "malformed": rx.malformed,
                "unstamped": rx.unstamped,
                "summary": summary_json(&meter.summary(), meter.timing()),
                "violations": violations_json(&grades),
                "frames": grades.iter().map(grade_json).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "mcm-perf pacing: {}:{} ({} packets before grading, {} not of the stream, {} \
             without kernel timestamp)",
            stream.addr,
            stream.port,
            meter.skipped(),
            rx.malformed,
            rx.unstamped
        );
        print_table(&grades, &meter, offset);
    }
    a.out
        .write_in_dir("pacing.csv", &crate::output::pacing_csv(&grades))?;
    a.out.write_svg(|| {
        crate::output::svg(&crate::output::Plot {
            pacing_title: format!(
                "ST 2110-21 VRX and Cinst per frame, {}:{}",
                stream.addr, stream.port
            ),
            pacing: Some((grades.as_slice(), meter.timing())),
            ..crate::output::Plot::default()
        })
    })?;
    if grades.is_empty() {
        return Err(format!(
            "no frame graded within {} s of silence",
            a.timeout_s
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=t\r\nt=0 0\r\n\
        m=video 5004 RTP/AVP 96\r\nc=IN IP4 239.1.2.3/32\r\n\
        a=source-filter: incl IN IP4 239.1.2.3 10.0.0.9\r\na=rtpmap:96 raw/90000\r\n\
        a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10; \
        exactframerate=60000/1001; TP=2110TPW\r\n";

    fn stream(sender: SenderType) -> Stream {
        Stream {
            sender,
            ..Stream::from_sdp(SDP, None).unwrap()
        }
    }

    #[test]
    fn sdp_gives_address_source_rate_height_and_sender_type() {
        let s = Stream::from_sdp(SDP, None).unwrap();
        assert_eq!(s.addr, Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(s.port, 5004);
        assert_eq!(s.source, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(s.payload_type, 96);
        assert_eq!(s.rate, FrameRate::new(60000, 1001).unwrap());
        assert_eq!(
            (s.height, s.interlaced, s.sender),
            (1080, false, SenderType::Wide)
        );
        // --fps overrides; without exactframerate it is required.
        let ff = SDP.replace("; exactframerate=60000/1001; TP=2110TPW", "");
        assert!(Stream::from_sdp(&ff, None).unwrap_err().contains("--fps"));
        let s = Stream::from_sdp(&ff, Some(50.0)).unwrap();
        assert_eq!(
            (s.rate, s.sender),
            (FrameRate::new(50, 1).unwrap(), SenderType::Narrow)
        );
        assert!(Stream::from_sdp(&ff, Some(0.0)).is_err());
        let audio = SDP.replace("raw/90000", "L24/48000/2");
        assert!(
            Stream::from_sdp(&audio, None)
                .unwrap_err()
                .contains("raw/90000")
        );
    }

    /// Feeds frames `first..first+count` of `t`'s schedule, the first of them cut to its last
    /// `partial` packets (joined in the middle), packet `j` of frame `f` arriving at
    /// `at(t, f, j)`; returns the grades.
    fn feed(
        m: &mut Meter,
        t: &Timing,
        first: u64,
        count: u64,
        partial: u64,
        at: impl Fn(&Timing, u64, u64) -> u64,
    ) -> Vec<FrameGrade> {
        let n = u64::from(t.packets());
        let mut out = Vec::new();
        for f in first..first + count {
            let start = if f == first { n - partial } else { 0 };
            for j in start..n {
                if let Some(g) = m.on_packet(at(t, f, j), t.rtp_timestamp(f), j == n - 1) {
                    out.push(g);
                }
            }
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn packets_per_frame_come_from_the_first_complete_frame_and_a_paced_stream_grades_narrow() {
        let s = stream(SenderType::Narrow);
        let t = Timing::new(s.rate, s.height, false, 4320, SenderType::Narrow);
        let mut m = Meter::new(s);
        let base = 1_000_000;
        // A partial frame of 100 packets, one whole frame to count, then 10 graded frames.
        let grades = feed(&mut m, &t, base, 12, 100, |t, f, j| t.packet_time(f, j));
        assert_eq!(m.skipped(), 100 + 4320);
        assert_eq!(m.timing().unwrap().packets(), 4320);
        assert_eq!(grades.len(), 10);
        assert!(
            grades.iter().all(|g| g.class == Compliance::Narrow),
            "{grades:?}"
        );
        assert!(
            grades
                .iter()
                .all(|g| g.packets == 4320 && g.cinst_peak <= 1)
        );
        let sm = m.summary();
        assert_eq!((sm.frames, sm.narrow, sm.wide, sm.failed), (10, 10, 0, 0));
        assert_eq!(sm.class(), Some(Compliance::Narrow));
    }

    #[test]
    fn a_sender_that_bursts_each_frame_is_not_narrow() {
        let s = stream(SenderType::Narrow);
        let t = Timing::new(s.rate, s.height, false, 4320, SenderType::Narrow);
        let mut m = Meter::new(s);
        // Every frame's packets back to back, 100 ns apart, from the frame's TVD (as a sender
        // without pacing writes a whole frame at once).
        let grades = feed(&mut m, &t, 5_000, 8, 1, |t, f, j| {
            t.frame_epoch(f) + 100 * j
        });
        assert_eq!(m.timing().unwrap().packets(), 4320);
        // The first frame's marker synchronises, the second is counted, six are graded.
        assert_eq!(m.skipped(), 1 + 4320);
        assert_eq!(grades.len(), 6);
        for g in &grades {
            assert_ne!(g.class, Compliance::Narrow, "{g:?}");
            assert!(g.cinst_peak > u64::from(t.cmax_narrow()), "{g:?}");
        }
        assert_eq!(m.summary().class(), Some(Compliance::Fail));
        let v = violations(&grades);
        assert_eq!(v.iter().map(|(_, n)| n).sum::<u64>(), 6, "{v:?}");
        assert_eq!(violations_json(&grades).as_object().unwrap().len(), v.len());
    }

    #[test]
    fn a_lost_marker_while_counting_restarts_the_count() {
        let s = stream(SenderType::Narrow);
        let mut m = Meter::new(s);
        assert!(m.on_packet(10, 7, true).is_none()); // end of a partial frame
        for i in 0..5 {
            m.on_packet(20 + i, 8, false); // frame 8 loses its marker
        }
        for i in 0..3 {
            m.on_packet(40 + i, 9, i == 2);
        }
        assert_eq!(m.timing().unwrap().packets(), 3);
        assert_eq!(m.skipped(), 1 + 5 + 3);
        assert_eq!(m.summary().frames, 0);
    }

    #[test]
    fn nothing_is_graded_before_a_marker() {
        let mut m = Meter::new(stream(SenderType::Narrow));
        for i in 0..100 {
            assert!(m.on_packet(i, 1, false).is_none());
        }
        assert!(m.timing().is_none());
        assert!(m.finish().is_none());
        assert_eq!(m.summary(), GradeSummary::default());
    }

    #[test]
    fn the_tai_offset_is_whole_seconds() {
        assert_eq!(tai_offset_ns() % 1_000_000_000, 0);
    }

    #[test]
    fn a_loopback_receiver_stamps_and_grades_datagrams() {
        // Through the socket path: datagrams to 127.0.0.1, graded; no timing is asserted,
        // only that every datagram carried a kernel timestamp and reached the meter.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let s = Stream {
            addr: Ipv4Addr::LOCALHOST,
            port,
            source: None,
            ..stream(SenderType::Narrow)
        };
        let mut rx = Receiver::open(&s, Ipv4Addr::UNSPECIFIED).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut pkt = [0u8; 32];
        for (ts, count) in [(1u32, 2u8), (2, 4), (3, 4), (4, 4)] {
            for j in 0..count {
                pkt[0] = 0x80;
                pkt[1] = 96 | if j == count - 1 { 0x80 } else { 0 };
                pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                tx.send_to(&pkt, ("127.0.0.1", port)).unwrap();
            }
        }
        tx.send_to(b"junk", ("127.0.0.1", port)).unwrap();
        let mut m = Meter::new(s);
        let grades = rx
            .run(&mut m, 2, Duration::from_millis(500), 0, 96)
            .unwrap();
        assert_eq!(m.timing().unwrap().packets(), 4);
        assert_eq!(grades.len(), 2);
        assert_eq!(grades.iter().map(|g| g.packets).collect::<Vec<_>>(), [4, 4]);
        assert_eq!(rx.unstamped, 0);
    }
}
