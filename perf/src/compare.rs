//! `mcm-perf compare`: the same workload through our engine and through the programs users
//! would pick instead (GStreamer, FFmpeg), in one run, alternating side by side round by round,
//! with each side's CPU seconds per stream-second, frames delivered and lost, and latency where
//! it can be measured.
//!
//! CPU time is summed over every process of a side, from the kernel's accounting: for ours the
//! engine (`/proc/PID/stat` over the run), the sender and the receivers (as `local` and
//! `st2110` count them); for a peer every `gst-launch-1.0` / `ffmpeg` process of the side, over
//! its whole life (its `wait4` resource usage), so a peer's process start-up is counted too.
//! Peers generate their pictures (`videotestsrc pattern=black`, lavfi `color=black`); each
//! source is also run alone once and reported beside its side.

use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use mcm_proto::st2110::FrameRate;

use crate::engine::{Engine, EngineArgs};
use crate::output::OutputArgs;
use crate::report;
use crate::{local, st2110};

/// How long after its stream should have ended a side is given before it is stopped.
const SLACK: Duration = Duration::from_secs(15);
/// How long a receiver is given after its sender exits, for the last packets in flight.
const DRAIN: Duration = Duration::from_millis(1500);
/// How long FFmpeg's receiver waits on a quiet socket before it ends (`-listen_timeout`).
const FFMPEG_QUIET: Duration = Duration::from_secs(3);
/// The receive buffer the st2110 peers ask for, and `net.core.rmem_max` raised to allow it.
const RMEM: u64 = 268_435_456;

/// Which data path is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Between processes on one host: our local group vs GStreamer shmsink/shmsrc.
    Local,
    /// ST 2110-20 (RFC 4175) over UDP on loopback: ours vs GStreamer and FFmpeg RTP.
    St2110,
}

/// Options of `mcm-perf compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The data path compared: local or st2110.
    #[arg(value_enum)]
    workload: Workload,
    /// Frames per side and round.
    #[arg(long, default_value_t = 300)]
    frames: u64,
    /// Frame rate (59.94 is 60000/1001).
    #[arg(long, default_value_t = 59.94)]
    fps: f64,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Rounds: each runs every side once, ours first.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// The engine started for each of our rounds (`--socket` is refused: the engine's CPU
    /// time must be counted).
    #[command(flatten)]
    target: EngineArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// What one side did in one round.
#[derive(Debug, Clone)]
struct Round {
    /// Frames the receiver got.
    delivered: u64,
    /// CPU seconds by process (or role) of the side.
    cpu: Vec<(String, f64)>,
    /// Whether every process of the side ended on its own (none was stopped at a deadline).
    clean: bool,
}

impl Round {
    fn cpu_s(&self) -> f64 {
        self.cpu.iter().map(|(_, s)| s).sum()
    }
}

/// One side of the comparison over every round.
#[derive(Debug)]
struct Side {
    name: &'static str,
    /// What runs, for the report.
    what: String,
    rounds: Vec<Round>,
    /// Latencies (ns) where measured.
    hist: Option<hdrhistogram::Histogram<u64>>,
    /// Why latency is not measured, or how it is.
    latency_note: &'static str,
    /// CPU seconds per stream-second of the side's picture source alone.
    source_alone: Option<f64>,
    /// What the source-alone run was.
    source_what: String,
}

/// The figures a side reports, derived from its rounds.
#[derive(Debug, Clone, Copy)]
struct Totals {
    sent: u64,
    delivered: u64,
    lost: u64,
    cpu_s: f64,
    stream_s: f64,
    per_stream_s: f64,
}

impl Side {
    fn new(name: &'static str, what: String, latency_note: &'static str) -> Self {
        Self {
            name,
            what,
            rounds: Vec::new(),
            hist: None,
            latency_note,
            source_alone: None,
            source_what: String::new(),
        }
    }

    fn totals(&self, frames: u64, fps: f64) -> Totals {
        let sent = frames * self.rounds.len() as u64;
        let delivered: u64 = self.rounds.iter().map(|r| r.delivered).sum();
        let cpu_s: f64 = self.rounds.iter().map(Round::cpu_s).sum();
        let stream_s = sent as f64 / fps;
        Totals {
            sent,
            delivered,
            lost: sent.saturating_sub(delivered),
            cpu_s,
            stream_s,
            per_stream_s: if stream_s > 0.0 {
                cpu_s / stream_s
            } else {
                0.0
            },
        }
    }
}

/// A peer process: its output collected on threads, its CPU time read when it is reaped.
struct Peer {
    name: String,
    pid: libc::pid_t,
    /// Kept so that its pipes stay open; never waited on through std (reaped with `wait4`).
    _child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    reaped: Option<(bool, f64)>,
}

/// A peer process after it ended.
struct Ended {
    name: String,
    /// It exited by itself, successfully.
    ok: bool,
    /// It had to be stopped (signalled) at its deadline.
    stopped: bool,
    cpu_s: f64,
    stdout: String,
    stderr: String,
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Peer {
    fn spawn(name: &str, mut cmd: Command) -> Result<Self, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {:?} ({e}); install GStreamer (gstreamer1.0-tools, -plugins-base, \
                     -good, -bad) and FFmpeg: scripts/setup_build_env.sh",
                    cmd.get_program()
                )
            })?;
        let out = child.stdout.take().map(collect);
        let err = child.stderr.take().map(collect);
        Ok(Self {
            name: name.to_owned(),
            pid: child.id() as libc::pid_t,
            _child: child,
            out,
            err,
            reaped: None,
        })
    }

    /// Reaps the process if it ended (`block`: waits for it); its exit and CPU seconds.
    fn reap(&mut self, block: bool) -> Option<(bool, f64)> {
        if self.reaped.is_none() {
            let mut status = 0;
            // SAFETY: rusage is plain old data; all zeroes is a valid value.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            let flags = if block { 0 } else { libc::WNOHANG };
            // SAFETY: `pid` is our own child, not yet reaped (std never waits on it); the
            // pointers are valid for the call.
            let r = unsafe { libc::wait4(self.pid, &mut status, flags, &mut ru) };
            if r == self.pid {
                let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                self.reaped = Some((ok, tv(ru.ru_utime) + tv(ru.ru_stime)));
            } else if r < 0 {
                self.reaped = Some((false, 0.0));
            }
        }
        self.reaped
    }

    fn alive(&mut self) -> bool {
        self.reap(false).is_none()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.reaped.is_none() {
            // SAFETY: `pid` is our child and not yet reaped, so it names no other process.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Waits for the process until `deadline`, then interrupts it (SIGINT: both programs stop
    /// cleanly and print their totals), killing it 5 s later.
    fn finish(mut self, deadline: Instant) -> Ended {
        let mut stopped = false;
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.alive() {
            stopped = true;
            self.signal(libc::SIGINT);
            let kill_at = Instant::now() + Duration::from_secs(5);
            while self.alive() && Instant::now() < kill_at {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.signal(libc::SIGKILL);
        }
        let (exit_ok, cpu_s) = self.reap(true).unwrap_or((false, 0.0));
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ended {
            name: std::mem::take(&mut self.name),
            ok: !stopped && exit_ok,
            stopped,
            cpu_s,
            stdout: text(self.out.take()),
            stderr: text(self.err.take()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.signal(libc::SIGKILL);
            self.reap(true);
        }
    }
}

/// Restores `net.core.rmem_max` on drop.
struct RmemMax {
    old: Option<String>,
}

const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";

impl RmemMax {
    /// Raises `net.core.rmem_max` to at least `want`; says so on stderr when it cannot.
    fn raise(want: u64) -> Self {
        let old = std::fs::read_to_string(RMEM_MAX).ok();
        let cur = old.as_deref().and_then(|s| s.trim().parse::<u64>().ok());
        if cur.is_some_and(|c| c >= want) {
            return Self { old: None };
        }
        if let Err(e) = std::fs::write(RMEM_MAX, want.to_string()) {
            eprintln!(
                "mcm-perf compare: cannot raise net.core.rmem_max to {want} ({e}): receivers \
                 may lose packets"
            );
            return Self { old: None };
        }
        Self { old }
    }
}

impl Drop for RmemMax {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(RMEM_MAX, old.trim());
        }
    }
}

/// Whether something is bound to UDP `port` (from /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| a.ends_with(&want))
    })
}

fn free_port() -> Result<u16, String> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Waits until `ready()` or `peer` exits or 30 s pass.
fn wait_ready(peer: &mut Peer, what: &str, ready: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if !peer.alive() {
            return Err(format!("{} exited before {what}", peer.name));
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not get to {what} within 30 s", peer.name));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Frames a `gst-launch-1.0 -v ... ! fakesink silent=false` reported, one line each.
fn gst_frames(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| l.contains("last-message = chain"))
        .count() as u64
}

/// The last `frame=` count FFmpeg printed on stderr.
fn ffmpeg_frames(stderr: &str) -> u64 {
    stderr
        .rsplit("frame=")
        .next()
        .filter(|_| stderr.contains("frame="))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn ended_round(ended: &[Ended], delivered: u64) -> Round {
    Round {
        delivered,
        cpu: ended.iter().map(|e| (e.name.clone(), e.cpu_s)).collect(),
        clean: ended.iter().all(|e| !e.stopped),
    }
}

/// The parameters every side shares.
struct Stream {
    frames: u64,
    rate: FrameRate,
    width: u32,
    height: u32,
    dir: PathBuf,
}

impl Stream {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames as f64 / self.rate.fps())
    }

    /// Raw 10-bit 4:2:2 caps (UYVP: the RFC 4175 pgroup, 5 bytes per 2 pixels, as ours).
    fn gst_caps(&self) -> String {
        format!(
            "video/x-raw,format=UYVP,width={},height={},framerate={}/{}",
            self.width,
            self.height,
            self.rate.num(),
            self.rate.den()
        )
    }

    fn gst_source(&self) -> Vec<String> {
        [
            "videotestsrc".to_owned(),
            "is-live=true".to_owned(),
            "pattern=black".to_owned(),
            format!("num-buffers={}", self.frames),
            "!".to_owned(),
            self.gst_caps(),
            "!".to_owned(),
        ]
        .into()
    }

    fn ffmpeg_source(&self) -> Vec<String> {
        [
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([
            format!(
                "color=c=black:size={}x{}:rate={}/{}",
                self.width,
                self.height,
                self.rate.num(),
                self.rate.den()
            ),
            "-frames:v".to_owned(),
            self.frames.to_string(),
            "-pix_fmt".to_owned(),
            "yuv422p10le".to_owned(),
        ])
        .collect()
    }

    fn bytes_per_frame(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 5 / 2
    }
}

fn gst(args: &[String]) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.args(args);
    c
}

/// GStreamer between processes: `videotestsrc ! shmsink` and `shmsrc ! fakesink`.
fn gst_local_round(s: &Stream, round: u32) -> Result<Round, String> {
    let sock = s.dir.join(format!("gst-{round}.sock"));
    let _ = std::fs::remove_file(&sock);
    let mut tx = s.gst_source();
    tx.splice(0..0, ["-q".to_owned()]);
    tx.extend([
        "shmsink".to_owned(),
        format!("socket-path={}", sock.display()),
        // Room for 8 frames, as our local group's queue holds a few.
        format!("shm-size={}", s.bytes_per_frame() * 8 + 65536),
        "wait-for-connection=true".to_owned(),
        "sync=false".to_owned(),
    ]);
    let mut sender = Peer::spawn("gst-launch shmsink", gst(&tx))?;
    wait_ready(&mut sender, "creating its socket", || sock.exists())?;
    let rx = [
        "-v".to_owned(),
        "shmsrc".to_owned(),
        format!("socket-path={}", sock.display()),
        "is-live=true".to_owned(),
        format!("num-buffers={}", s.frames),
        "!".to_owned(),
        s.gst_caps(),
        "!".to_owned(),
        "fakesink".to_owned(),
        "silent=false".to_owned(),
        "sync=false".to_owned(),
    ];
    let receiver = Peer::spawn("gst-launch shmsrc", gst(&rx))?;
    let deadline = Instant::now() + s.duration() + SLACK;
    let r = receiver.finish(deadline);
    let t = sender.finish(Instant::now().max(deadline) + Duration::from_secs(2));
    let delivered = gst_frames(&r.stdout);
    Ok(ended_round(&[t, r], delivered))
}

/// The caps a GStreamer RTP receiver needs for the stream.
fn rtp_caps(s: &Stream) -> String {
    format!(
        "application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,\
         sampling=YCbCr-4:2:2,depth=(string)10,width=(string){},height=(string){},\
         colorimetry=(string)BT709-2,payload=96",
        s.width, s.height
    )
}

/// GStreamer RTP: `videotestsrc ! rtpvrawpay ! udpsink` and `udpsrc ! rtpvrawdepay ! fakesink`.
fn gst_rtp_round(s: &Stream) -> Result<Round, String> {
    let port = free_port()?;
    let rx = [
        "-v".to_owned(),
        "udpsrc".to_owned(),
        "address=127.0.0.1".to_owned(),
        format!("port={port}"),
        "buffer-size=67108864".to_owned(),
        format!("caps={}", rtp_caps(s)),
        "!".to_owned(),
        "rtpvrawdepay".to_owned(),
        "!".to_owned(),
        "fakesink".to_owned(),
        "silent=false".to_owned(),
        "sync=false".to_owned(),
    ];
    let mut receiver = Peer::spawn("gst-launch udpsrc", gst(&rx))?;
    wait_ready(&mut receiver, "binding its port", || udp_bound(port))?;
    let mut tx = s.gst_source();
    tx.splice(0..0, ["-q".to_owned()]);
    tx.extend([
        "rtpvrawpay".to_owned(),
        "mtu=1220".to_owned(),
        "pt=96".to_owned(),
        "!".to_owned(),
        "udpsink".to_owned(),
        "host=127.0.0.1".to_owned(),
        format!("port={port}"),
        "sync=false".to_owned(),
    ]);
    let sender = Peer::spawn("gst-launch udpsink", gst(&tx))?;
    let t = sender.finish(Instant::now() + s.duration() + SLACK);
    // The receiver runs until told: give the last packets time to arrive, then interrupt it.
    std::thread::sleep(DRAIN);
    let mut r = receiver.finish(Instant::now());
    // Stopped by design, not for being late.
    r.stopped = false;
    let delivered = gst_frames(&r.stdout);
    Ok(ended_round(&[t, r], delivered))
}

/// FFmpeg RTP: `ffmpeg -re -f lavfi color ... -c:v bitpacked -f rtp` and an FFmpeg receiver
/// reading the stream's SDP to `-f null`.
fn ffmpeg_rtp_round(s: &Stream, round: u32) -> Result<Round, String> {
    let port = free_port()?;
    let sdp = s.dir.join(format!("ffmpeg-{round}.sdp"));
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=mcm-perf compare\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=video {port} RTP/AVP 96\r\na=rtpmap:96 raw/90000\r\n\
             a=fmtp:96 sampling=YCbCr-4:2:2; width={}; height={}; depth=10\r\n",
            s.width, s.height
        ),
    )
    .map_err(|e| format!("{}: {e}", sdp.display()))?;
    let mut rx = Command::new("ffmpeg");
    rx.args([
        "-hide_banner",
        "-nostdin",
        "-protocol_whitelist",
        "file,udp,rtp",
    ])
    .args(["-buffer_size", &RMEM.to_string()])
    // It holds the stream's last packets until its socket has been quiet this long (10 s
    // by default), then ends by itself.
    .args(["-listen_timeout", &FFMPEG_QUIET.as_secs().to_string(), "-i"])
    .arg(&sdp)
    .args([
        "-frames:v",
        &s.frames.to_string(),
        "-fps_mode",
        "passthrough",
    ])
    .args(["-f", "null", "-"]);
    let mut receiver = Peer::spawn("ffmpeg rx", rx)?;
    wait_ready(&mut receiver, "binding its port", || udp_bound(port))?;
    let mut tx = Command::new("ffmpeg");
    tx.args(s.ffmpeg_source())
        .args(["-c:v", "bitpacked", "-f", "rtp", "-pkt_size", "1220"])
        .arg(format!("rtp://127.0.0.1:{port}"));
    let sender = Peer::spawn("ffmpeg tx", tx)?;
    let t = sender.finish(Instant::now() + s.duration() + SLACK);
    let r = receiver.finish(Instant::now() + FFMPEG_QUIET * 3 + DRAIN);
    let delivered = ffmpeg_frames(&r.stderr);
    Ok(ended_round(&[t, r], delivered))
}

/// The GStreamer source alone (`videotestsrc ! fakesink`): CPU seconds per stream-second.
fn gst_source_alone(s: &Stream) -> Result<f64, String> {
    let mut a = s.gst_source();
    a.splice(0..0, ["-q".to_owned()]);
    a.extend(["fakesink".to_owned(), "sync=false".to_owned()]);
    let e = Peer::spawn("gst-launch videotestsrc", gst(&a))?
        .finish(Instant::now() + s.duration() + SLACK);
    if !e.ok {
        return Err(format!("videotestsrc alone failed: {}", e.stderr.trim()));
    }
    Ok(e.cpu_s / s.duration().as_secs_f64())
}

/// The FFmpeg source alone (lavfi color to `-f null`): CPU seconds per stream-second.
fn ffmpeg_source_alone(s: &Stream) -> Result<f64, String> {
    let mut c = Command::new("ffmpeg");
    c.args(s.ffmpeg_source()).args(["-f", "null", "-"]);
    let e = Peer::spawn("ffmpeg color", c)?.finish(Instant::now() + s.duration() + SLACK);
    if !e.ok {
        return Err(format!("lavfi color alone failed: {}", e.stderr.trim()));
    }
    Ok(e.cpu_s / s.duration().as_secs_f64())
}

/// Our local path: one receiver process, one sender, a fresh engine.
fn ours_local(a: &CompareArgs, s: &Stream, round: u32) -> Result<(Round, Hist), String> {
    let la = local::LocalArgs {
        receivers: vec![1],
        frames: s.frames,
        fps: s.rate.fps(),
        width: s.width,
        height: s.height,
        pixel_format: "yuv422p10rfc4175".to_owned(),
        capacity: 16,
        target: a.target.clone(),
        json: true,
        out: OutputArgs::default(),
    };
    // On its own thread: the engine's CPU placement pins the calling thread (and what it
    // starts), which must not restrict the peers started later from this one.
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let (started, socket) = la.target.attach_or_start()?;
            let group = format!("mcm-perf-compare-{}-{round}", std::process::id());
            let r = local::run_once(&la, &socket, &group, 1, started.as_ref().map(Engine::pid))?;
            if r.bad > 0 {
                return Err(format!("{} frames arrived with the wrong content", r.bad));
            }
            let round = Round {
                delivered: r.frames - r.drops,
                cpu: vec![
                    ("engine".to_owned(), r.cpu_engine),
                    ("sender".to_owned(), r.cpu_sender),
                    ("receiver".to_owned(), r.cpu_receivers),
                ],
                clean: true,
            };
            Ok((round, r.hist))
        })
        .join()
        .map_err(|_| "our local round panicked".to_owned())?
    })
}

type Hist = hdrhistogram::Histogram<u64>;

/// Our ST 2110 path: SDK tx → engine tx session → loopback → engine rx session → SDK rx.
fn ours_st2110(a: &CompareArgs, s: &Stream) -> Result<(Round, Hist), String> {
    let sa = st2110::St2110Args {
        frames: s.frames,
        fps: s.rate.fps(),
        receivers: 1,
        width: s.width,
        height: s.height,
        pixel_format: "yuv422p10rfc4175".to_owned(),
        pacing: "narrow".to_owned(),
        group: Ipv4Addr::new(239, 77, 0, 41),
        capacity: 8,
        target: a.target.clone(),
        no_grade: true,
        flood: 0,
        second_destination: false,
        redundant: false,
        detach_second_after: None,
        json: true,
        out: OutputArgs::default(),
    };
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let (started, socket) = sa.target.attach_or_start()?;
            let m = st2110::measure(&sa, &socket, started.as_ref().map(Engine::pid))?;
            let round = Round {
                delivered: m.received,
                cpu: vec![
                    ("engine".to_owned(), m.cpu_engine),
                    ("sender+receiver".to_owned(), m.cpu_self),
                ],
                clean: true,
            };
            Ok((round, m.hist))
        })
        .join()
        .map_err(|_| "our st2110 round panicked".to_owned())?
    })
}

const GST_LATENCY: &str = "not measured: the sender and receiver are separate gst-launch \
    processes with their own pipeline clocks and base times, and no capture time crosses \
    shm or RTP in a form the receiver can read (GST_TRACERS=latency measures within one \
    pipeline only)";
const FFMPEG_LATENCY: &str = "not measured: FFmpeg's RTP timestamps start at a random offset \
    and its receiver prints no per-frame arrival time";
const OURS_LATENCY: &str = "get time - the frame's timestamp, from the SDK";

/// Runs `mcm-perf compare`.
pub fn run(a: &CompareArgs) -> Result<(), String> {
    if a.target.socket.is_some() {
        return Err(
            "--socket: compare starts its own engine each round so that its CPU time is \
             counted; attaching is not allowed"
                .into(),
        );
    }
    if a.frames == 0 || a.rounds == 0 {
        return Err("--frames and --rounds must be at least 1".into());
    }
    if a.width == 0 || a.height == 0 || !a.width.is_multiple_of(2) {
        return Err(format!(
            "{}x{}: 4:2:2 needs a non-zero even width and a non-zero height",
            a.width, a.height
        ));
    }
    let rate = FrameRate::from_fps(a.fps).ok_or_else(|| {
        format!(
            "--fps {} is not a frame rate (allowed: 0.001 to 1000)",
            a.fps
        )
    })?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let s = Stream {
        frames: a.frames,
        rate,
        width: a.width,
        height: a.height,
        dir: dir.path().to_owned(),
    };
    let _rmem = (a.workload == Workload::St2110).then(|| RmemMax::raise(RMEM));
    let mut sides = match a.workload {
        Workload::Local => vec![
            Side::new(
                "mcm",
                "engine + SDK sender + 1 SDK receiver process, local group (shared memory)".into(),
                OURS_LATENCY,
            ),
            Side::new(
                "gstreamer",
                format!(
                    "gst-launch-1.0 videotestsrc pattern=black ! {} ! shmsink | shmsrc ! fakesink",
                    s.gst_caps()
                ),
                GST_LATENCY,
            ),
        ],
        Workload::St2110 => vec![
            Side::new(
                "mcm",
                "SDK tx -> engine tx session (narrow) -> 239.77.0.41 on lo -> engine rx session \
                 -> SDK rx"
                    .into(),
                OURS_LATENCY,
            ),
            Side::new(
                "gstreamer",
                "gst-launch-1.0 videotestsrc pattern=black ! UYVP ! rtpvrawpay mtu=1220 ! \
                 udpsink 127.0.0.1 | udpsrc ! rtpvrawdepay ! fakesink"
                    .into(),
                GST_LATENCY,
            ),
            Side::new(
                "ffmpeg",
                "ffmpeg -re lavfi color=black -c:v bitpacked -f rtp -pkt_size 1220 127.0.0.1 | \
                 ffmpeg -i SDP -f null"
                    .into(),
                FFMPEG_LATENCY,
            ),
        ],
    };
    for round in 0..a.rounds {
        for side in &mut sides {
            if !a.json {
                eprintln!("round {}/{}: {}", round + 1, a.rounds, side.name);
            }
            let r = match (a.workload, side.name) {
                (Workload::Local, "mcm") | (Workload::St2110, "mcm") => {
                    let (r, h) = if a.workload == Workload::Local {
                        ours_local(a, &s, round)?
                    } else {
                        ours_st2110(a, &s)?
                    };
                    let all = side.hist.get_or_insert_with(report::new_histogram);
                    all.add(&h).map_err(|e| format!("histogram: {e:?}"))?;
                    r
                }
                (Workload::Local, _) => gst_local_round(&s, round)?,
                (_, "gstreamer") => gst_rtp_round(&s)?,
                _ => ffmpeg_rtp_round(&s, round)?,
            };
            side.rounds.push(r);
        }
    }
    for side in &mut sides {
        match side.name {
            "gstreamer" => {
                side.source_alone = Some(gst_source_alone(&s)?);
                side.source_what = "videotestsrc pattern=black ! fakesink".into();
            }
            "ffmpeg" => {
                side.source_alone = Some(ffmpeg_source_alone(&s)?);
                side.source_what = "lavfi color=black -pix_fmt yuv422p10le -f null".into();
            }
            _ => {}
        }
    }
    if a.json {
        println!("{}", to_json(a, &s, &sides));
    } else {
        print_table(a, &s, &sides);
    }
    Ok(())
}

fn ours_per_stream_s(s: &Stream, sides: &[Side]) -> f64 {
    sides
        .iter()
        .find(|side| side.name == "mcm")
        .map_or(0.0, |side| side.totals(s.frames, s.rate.fps()).per_stream_s)
}

fn ratio(x: f64, ours: f64) -> Option<f64> {
    (ours > 0.0).then(|| x / ours)
}

fn to_json(a: &CompareArgs, s: &Stream, sides: &[Side]) -> serde_json::Value {
    let ours = ours_per_stream_s(s, sides);
    let sides: Vec<_> = sides
        .iter()
        .map(|side| {
            let t = side.totals(s.frames, s.rate.fps());
            let lat = side.hist.as_ref().map(|h| {
                let l = report::summarize(h);
                serde_json::json!({"count": l.count, "p50": l.p50, "p90": l.p90,
                    "p99": l.p99, "p99_9": l.p999, "max": l.max})
            });
            serde_json::json!({
                "name": side.name, "what": side.what,
                "frames": t.sent, "delivered": t.delivered, "lost": t.lost,
                "comparable": t.lost == 0,
                "cpu_s": t.cpu_s, "stream_s": t.stream_s, "cpu_s_per_stream_s": t.per_stream_s,
                "cpu_ratio_to_mcm": ratio(t.per_stream_s, ours),
                "latency_us": lat, "latency_note": side.latency_note,
                "source_alone_cpu_s_per_stream_s": side.source_alone,
                "source_alone": (!side.source_what.is_empty()).then_some(&side.source_what),
                "rounds": side.rounds.iter().map(|r| serde_json::json!({
                    "delivered": r.delivered, "cpu_s": r.cpu_s(), "clean": r.clean,
                    "cpu_s_by_process": r.cpu.iter()
                        .map(|(n, c)| (n.clone(), serde_json::json!(c)))
                        .collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "workload": match a.workload { Workload::Local => "local", Workload::St2110 => "st2110" },
        "width": s.width, "height": s.height, "rate": s.rate.to_string(), "fps": a.fps,
        "frames": s.frames, "rounds": a.rounds, "bytes_per_frame": s.bytes_per_frame(),
        "sides": sides,
    })
}

fn print_table(a: &CompareArgs, s: &Stream, sides: &[Side]) {
    let ours = ours_per_stream_s(s, sides);
    println!(
        "mcm-perf compare {}: {}x{} 10-bit 4:2:2 ({} bytes a frame) at {} fps, {} frames \
         ({:.2} s of stream) per side and round, {} round(s), sides alternating",
        match a.workload {
            Workload::Local => "local",
            Workload::St2110 => "st2110",
        },
        s.width,
        s.height,
        s.bytes_per_frame(),
        s.rate,
        s.frames,
        s.duration().as_secs_f64(),
        a.rounds
    );
    println!(
        "{:<10} {:>7} {:>9} {:>5} {:>8} {:>12} {:>7}  latency us p50 / p99 / max",
        "side", "frames", "delivered", "lost", "CPU s", "CPU s/str-s", "x mcm"
    );
    for side in sides {
        let t = side.totals(s.frames, s.rate.fps());
        let lat = side.hist.as_ref().map_or_else(
            || "not measured".to_owned(),
            |h| {
                let l = report::summarize(h);
                format!("{:.0} / {:.0} / {:.0}", l.p50, l.p99, l.max)
            },
        );
        println!(
            "{:<10} {:>7} {:>9} {:>5} {:>8.3} {:>12.4} {:>7}  {lat}",
            side.name,
            t.sent,
            t.delivered,
            t.lost,
            t.cpu_s,
            t.per_stream_s,
            ratio(t.per_stream_s, ours).map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
        );
    }
    println!();
    for side in sides {
        let t = side.totals(s.frames, s.rate.fps());
        println!("{}: {}", side.name, side.what);
        let mut by: Vec<(String, f64)> = Vec::new();
        for (n, c) in side.rounds.iter().flat_map(|r| r.cpu.iter()) {
            match by.iter_mut().find(|(m, _)| m == n) {
                Some((_, sum)) => *sum += c,
                None => by.push((n.clone(), *c)),
            }
        }
        let parts: Vec<String> = by
            .iter()
            .map(|(n, c)| format!("{n} {:.4}", c / t.stream_s.max(1e-9)))
            .collect();
        println!("  CPU s per stream-second by process: {}", parts.join(", "));
        if let Some(src) = side.source_alone {
            println!(
                "  its picture source alone ({}): {src:.4} CPU s per stream-second (counted in \
                 the row above; without it: {:.4})",
                side.source_what,
                (t.per_stream_s - src).max(0.0)
            );
        }
        println!("  latency: {}", side.latency_note);
        if t.lost > 0 {
            println!(
                "  LOST {} of {} frames: not comparable at equal CPU (work not done costs nothing)",
                t.lost, t.sent
            );
        }
        if side.rounds.iter().any(|r| !r.clean) {
            println!("  some process of this side did not end cleanly (stopped at the deadline)");
        }
    }
    println!(
        "\nCPU is summed over every process of a side (kernel utime+stime); peers' process \
         start-up is included. Ours paints each frame with a memset in the sender; peers \
         generate black frames. See perf/README.md for what else differs."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_are_read_from_peer_output() {
        let gst = "/GstPipeline:pipeline0/GstFakeSink:fakesink0: last-message = chain   ***\n\
                   other\n/GstPipeline:pipeline0/GstFakeSink:fakesink0: last-message = chain  x\n\
                   /GstPipeline:pipeline0/GstFakeSink:fakesink0: last-message = event  y\n";
        assert_eq!(gst_frames(gst), 2);
        let ff = "frame=    3 fps=0.0 q=-0.0 size=N/A\rframe=   20 fps=1.8 q=-0.0 Lsize=N/A\n";
        assert_eq!(ffmpeg_frames(ff), 20);
        assert_eq!(ffmpeg_frames("no progress"), 0);
    }

    #[test]
    fn totals_divide_cpu_by_stream_seconds() {
        let mut side = Side::new("x", String::new(), "");
        for d in [10, 8] {
            side.rounds.push(Round {
                delivered: d,
                cpu: vec![("a".into(), 0.5), ("b".into(), 0.25)],
                clean: true,
            });
        }
        let t = side.totals(10, 10.0);
        assert_eq!((t.sent, t.delivered, t.lost), (20, 18, 2));
        assert!((t.cpu_s - 1.5).abs() < 1e-9);
        assert!((t.stream_s - 2.0).abs() < 1e-9);
        assert!((t.per_stream_s - 0.75).abs() < 1e-9);
        assert_eq!(ratio(1.5, 0.75), Some(2.0));
        assert_eq!(ratio(1.5, 0.0), None);
    }
}
