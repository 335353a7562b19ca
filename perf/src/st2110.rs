//! `mcm-perf st2110`: one SDK ST 2110-20 sender and K SDK receivers through an engine, over a
//! multicast group on loopback, with the sender's pacing graded on the same stream.
//!
//! The tx session sends to a 239.x group through `lo` (the engine's default interface,
//! `127.0.0.1`); the engine's rx session joins it, and so does a [`pacing`](crate::pacing)
//! receiver in this process: multicast loopback delivers every datagram to both sockets, so the
//! stream the receivers decode is the stream graded. (`lo` lacks the MULTICAST flag, yet joins
//! and sends with `IP_MULTICAST_IF 127.0.0.1` work without `ip link set lo multicast on`.)
//!
//! Latency is get time − the frame's timestamp; the rx session stamps each frame with its RTP
//! sampling instant (TAI), so the get time is read as CLOCK_REALTIME + (TAI − REALTIME). It
//! includes the sender's TROFFSET and the frame's transmission time (about one frame period at
//! narrow pacing).

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Args;
use mcm_proto::config::ClientConfig;
use mcm_proto::sdk::BridgeStats;
use mcm_proto::st2110::FrameRate;
use mcm_proto::st2110::st21::SenderType;
use mcm_sdk::conn::realtime_ns;
use mcm_sdk::{Client, Timeout};

use crate::engine::{self, Engine, EngineArgs};
use crate::output::{self, LatencySeries, OutputArgs};
use crate::pacing::{self, Meter, Receiver, Stream};
use crate::report;

/// How long the sender, the receivers and the grader wait for progress before giving up.
const IDLE: Duration = Duration::from_secs(5);

/// Options of `mcm-perf st2110`.
#[derive(Debug, Args)]
pub struct St2110Args {
    /// Frames to send.
    #[arg(long, default_value_t = 600)]
    pub(crate) frames: u64,
    /// Frame rate (59.94 is 60000/1001).
    #[arg(long, default_value_t = 59.94)]
    pub(crate) fps: f64,
    /// SDK receivers of the stream (one engine rx session, shared).
    #[arg(long, default_value_t = 1)]
    pub(crate) receivers: usize,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1920)]
    pub(crate) width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    pub(crate) height: u32,
    /// Pixel format, application and wire (yuv422p10rfc4175 or uyvy).
    #[arg(long, default_value = "yuv422p10rfc4175")]
    pub(crate) pixel_format: String,
    /// Sender type: narrow, narrow_linear or wide.
    #[arg(long, default_value = "narrow")]
    pub(crate) pacing: String,
    /// Multicast group of the stream (on loopback).
    #[arg(long, default_value = "239.77.0.1")]
    pub(crate) group: Ipv4Addr,
    /// bufferQueueCapacity of every connection.
    #[arg(long, default_value_t = 8)]
    pub(crate) capacity: u32,
    /// The engine measured.
    #[command(flatten)]
    pub(crate) target: EngineArgs,
    /// Do not grade the pacing (the grader's socket costs a CPU core at 1080p; on a small
    /// machine it competes with the engine).
    #[arg(long)]
    pub(crate) no_grade: bool,
    /// Datagrams to flood a second rx session of the same engine with while the stream runs
    /// (an unpaced RFC 4175 stream of the same format, sent as fast as one socket can, to
    /// 127.0.0.1 on another port; 0: no flood). With `--lcores 1` the flooded session shares
    /// the sender's lcore.
    #[arg(long, default_value_t = 0)]
    pub(crate) flood: u64,
    /// Send the stream to a second destination too: the sender's group gets a second ST 2110
    /// tx edge (to the next multicast address, same port), named by a monitoring connection
    /// of this tool. The measured stream is the first destination's.
    #[arg(long)]
    pub(crate) second_destination: bool,
    /// ST 2022-7: the stream (tx and rx) takes a second path, to the group's multicast address
    /// plus 2 on the same port and interface; the rx session merges the two.
    #[arg(long)]
    pub(crate) redundant: bool,
    /// With `--second-destination`: delete the monitoring connection after this many frames,
    /// which detaches the second edge mid-stream.
    #[arg(long)]
    pub(crate) detach_second_after: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Files beside the report: `st2110.hgrm`, `st2110-pacing.csv` (graded frames), a plot of
    /// the latency distribution and of VRX per graded frame.
    #[command(flatten)]
    pub(crate) out: OutputArgs,
}

fn connection_json(a: &St2110Args, port: u16) -> String {
    let json = stream_json(a, &a.group.to_string(), port);
    if !a.redundant {
        return json;
    }
    let second = Ipv4Addr::from(u32::from(a.group).wrapping_add(2));
    json.replacen(
        r#""payloadType": 96,"#,
        &format!(r#""payloadType": 96, "redundant": {{"ipAddr": "{second}"}},"#),
        1,
    )
}

/// The sender's group with `--second-destination`, and the edge to `addr:port` (tx).
fn fan_json(a: &St2110Args, addr: Ipv4Addr, port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {}, "connection": {{"multipointGroup": {{"urn": "mcm-perf-fan",
            "edges": [{{"st2110": {{"direction": "tx", "transport": "st2110-20",
            "ipAddr": "{addr}", "port": {port}, "payloadType": 96, "pacing": "{}",
            "transportPixelFormat": "{}"}}}}]}}}},
            "payload": {{"video": {{"width": {}, "height": {}, "fps": {},
            "pixelFormat": "{}"}}}}}}"#,
        a.capacity, a.pacing, a.pixel_format, a.width, a.height, a.fps, a.pixel_format
    )
}

/// The second destination of `--second-destination`: the group's next multicast address.
fn second_addr(a: &St2110Args) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a.group).wrapping_add(1))
}

fn stream_json(a: &St2110Args, addr: &str, port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {}, "connection": {{"st2110": {{"transport": "st2110-20",
            "ipAddr": "{addr}", "port": {port}, "payloadType": 96, "pacing": "{}",
            "transportPixelFormat": "{}"}}}},
            "payload": {{"video": {{"width": {}, "height": {}, "fps": {},
            "pixelFormat": "{}"}}}}}}"#,
        a.capacity, a.pacing, a.pixel_format, a.width, a.height, a.fps, a.pixel_format
    )
}

/// The flood of `--flood`: a second rx session of the engine on 127.0.0.1:`port` (kept open
/// by `_rx`) and the socket that floods it.
struct Flood {
    _client: Client,
    _rx: mcm_sdk::RxConnection,
    sock: UdpSocket,
    packets: Vec<Vec<u8>>,
}

impl Flood {
    /// Opens the flooded session (a unicast rx connection) and builds one frame's packets.
    fn open(a: &St2110Args, socket: &std::path::Path) -> Result<Flood, String> {
        use mcm_proto::st2110::rfc4175::{Format, Packetizer, PackingMode};
        use mcm_proto::st2110::{Depth, Sampling, rtp};
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let client = Client::with_unix_socket(socket, ClientConfig::default())
            .map_err(|e| format!("flood: {e}"))?;
        let rx = client
            .create_rx(&stream_json(a, "127.0.0.1", port))
            .map_err(|e| format!("flood rx: {e}"))?;
        let depth = if a.pixel_format == "uyvy" {
            Depth::D8
        } else {
            Depth::D10
        };
        let format = Format::new(Sampling::YCbCr422, depth, a.width, a.height)
            .map_err(|e| format!("flood: {e}"))?;
        let p = Packetizer::new(format, PackingMode::Gpm, 1200).map_err(|e| format!("{e}"))?;
        let frame = vec![0x5au8; format.frame_bytes()];
        let total = p.packets_per_frame();
        let packets = (0..total)
            .map(|i| {
                let mut out = vec![0u8; rtp::HEADER_LEN + 64];
                rtp::Header {
                    marker: i + 1 == total,
                    payload_type: 96,
                    sequence_number: i as u16,
                    timestamp: 0,
                    ssrc: 0xF100D,
                }
                .emit((&mut out[..rtp::HEADER_LEN]).try_into().expect("header"));
                let len = rtp::HEADER_LEN + p.headers(i, i, &mut out[rtp::HEADER_LEN..]);
                out.truncate(len);
                out.extend_from_slice(&frame[p.data(i)]);
                out
            })
            .collect();
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("flood socket: {e}"))?;
        sock.connect(("127.0.0.1", port))
            .map_err(|e| format!("flood socket: {e}"))?;
        Ok(Flood {
            _client: client,
            _rx: rx,
            sock,
            packets,
        })
    }

    /// Sends up to `n` datagrams, frame after frame, until `stop`; returns how many left.
    fn run(&self, n: u64, stop: &std::sync::atomic::AtomicBool) -> u64 {
        let mut sent = 0;
        'frames: loop {
            for p in &self.packets {
                // Relaxed: a stop request; nothing else depends on it.
                if sent >= n || stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break 'frames;
                }
                // A full socket buffer refuses the datagram: the flood counts only what left.
                if self.sock.send(p).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }
}

/// What one SDK receiver measured.
#[derive(Debug)]
struct RxResult {
    received: u64,
    hist: hdrhistogram::Histogram<u64>,
    /// Get time of the first and the last frame.
    first_ns: u64,
    last_ns: u64,
    /// The engine's counters of the groups this receiver belongs to (its rx session).
    bridges: Vec<BridgeStats>,
}

fn bridge_line(b: &BridgeStats) -> String {
    format!(
        "edge {} ({}): packets {} frames {} incomplete {} dropped {} refused {} lost {} \
         reordered {} malformed {} late {} send errors {} socket drops {}",
        b.group,
        b.edge_kind,
        b.packets,
        b.frames,
        b.frames_incomplete,
        b.frames_dropped,
        b.frames_refused,
        b.packets_lost,
        b.packets_reordered,
        b.packets_malformed,
        b.packets_late,
        b.send_errors,
        b.socket_drops
    )
}

fn bridge_json(b: &BridgeStats) -> serde_json::Value {
    serde_json::json!({
        "group": b.group, "edge_id": b.edge_id, "edge_kind": b.edge_kind,
        "packets": b.packets, "frames": b.frames,
        "frames_incomplete": b.frames_incomplete, "frames_dropped": b.frames_dropped,
        "frames_refused": b.frames_refused,
        "packets_lost": b.packets_lost, "packets_reordered": b.packets_reordered,
        "packets_malformed": b.packets_malformed, "packets_late": b.packets_late,
        "send_errors": b.send_errors, "socket_drops": b.socket_drops,
    })
}

/// What one `st2110` run measured.
#[derive(Debug)]
pub(crate) struct Measured {
    /// The stream's frame rate.
    pub(crate) rate: FrameRate,
    /// The stream's UDP port.
    port: u16,
    sender: SenderType,
    /// Frames every receiver got, together.
    pub(crate) received: u64,
    /// Frames per second delivered per receiver (first to last get), averaged.
    fps: f64,
    /// Put→get latencies (ns) over every receiver.
    pub(crate) hist: hdrhistogram::Histogram<u64>,
    /// The engine's CPU seconds from the sender's connection to its last packet (0 when
    /// attached to an engine).
    pub(crate) cpu_engine: f64,
    /// This process's CPU seconds over the run: the SDK sender and receivers (threads here),
    /// and the grader unless `--no-grade`.
    pub(crate) cpu_self: f64,
    /// The tx and rx sessions' counters.
    bridges: Vec<BridgeStats>,
    /// Datagrams the `--flood` socket sent.
    pub(crate) flooded: u64,
    grades: Vec<mcm_proto::st2110::st21::FrameGrade>,
    meter: Meter,
    grader_malformed: u64,
    offset: i64,
}

/// Runs `mcm-perf st2110`.
pub fn run(a: &St2110Args) -> Result<(), String> {
    let (started, socket) = a.target.attach_or_start()?;
    let m = measure(a, &socket, started.as_ref().map(Engine::pid))?;
    drop(started);
    print(a, &m)
}

/// Sends the stream through the engine serving `socket` (whose process is `engine_pid`, when
/// this tool started it) to the receivers, grading it unless `--no-grade`.
pub(crate) fn measure(
    a: &St2110Args,
    socket: &std::path::Path,
    engine_pid: Option<u32>,
) -> Result<Measured, String> {
    if !a.group.is_multicast() {
        return Err(format!("--group {} is not a multicast address", a.group));
    }
    let rate = FrameRate::from_fps(a.fps).ok_or_else(|| {
        format!(
            "--fps {} is not a frame rate (allowed: 0.001 to 1000)",
            a.fps
        )
    })?;
    let sender = match a.pacing.as_str() {
        "narrow" => SenderType::Narrow,
        "narrow_linear" => SenderType::NarrowLinear,
        "wide" => SenderType::Wide,
        p => {
            return Err(format!(
                "--pacing {p:?}: allowed narrow, narrow_linear, wide"
            ));
        }
    };
    // A port nobody on this host uses now.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("free port: {e}"))?
        .port();
    let json = connection_json(a, port);
    let stream = Stream {
        addr: a.group,
        port,
        source: None,
        payload_type: 96,
        rate,
        height: a.height,
        interlaced: false,
        sender,
    };
    let offset = pacing::tai_offset_ns();
    let mut grader = Receiver::open(&stream, Ipv4Addr::LOCALHOST)?;
    let mut meter = Meter::new(stream);
    let wait = Timeout::After(IDLE);
    let idle = IDLE;
    let ready = Barrier::new(a.receivers + 1);
    let flood = (a.flood > 0).then(|| Flood::open(a, socket)).transpose()?;
    let stop_flood = std::sync::atomic::AtomicBool::new(false);
    let cpu_self_0 = engine::self_cpu_seconds();

    let (rx_results, tx_out, grades, flooded) = std::thread::scope(|sc| {
        let flooding = sc.spawn(|| flood.as_ref().map_or(0, |f| f.run(a.flood, &stop_flood)));
        let grading = sc.spawn(|| {
            if a.no_grade {
                return Ok(Vec::new());
            }
            // Grade every frame but the first two (a partial one and the one counted).
            grader.run(&mut meter, a.frames.saturating_sub(2), idle, offset, 96)
        });
        let rx_threads: Vec<_> = (0..a.receivers)
            .map(|_| {
                let (json, ready) = (&json, &ready);
                sc.spawn(move || -> Result<RxResult, String> {
                    let client = Client::with_unix_socket(socket, ClientConfig::default())
                        .map_err(|e| format!("receiver: {e}"));
                    let rx = client
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|c| c.create_rx(json).map_err(|e| format!("receiver: {e}")));
                    ready.wait();
                    let rx = rx?;
                    let mut hist = report::new_histogram();
                    let (mut received, mut first_ns, mut last_ns) = (0, 0, 0);
                    while let Ok(f) = rx.get_timeout(Timeout::After(idle)) {
                        let now = (realtime_ns() as i64 + offset) as u64;
                        report::record_latency(&mut hist, now, f.timestamp_ns());
                        if received == 0 {
                            first_ns = now;
                        }
                        received += 1;
                        last_ns = now;
                        if received >= a.frames {
                            break;
                        }
                    }
                    let bridges = client
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|c| c.stats().map_err(|e| format!("receiver stats: {e}")))?
                        .bridges;
                    drop(rx);
                    Ok(RxResult {
                        received,
                        hist,
                        first_ns,
                        last_ns,
                        bridges,
                    })
                })
            })
            .collect();
        ready.wait();
        let tx_json = if a.second_destination {
            fan_json(a, a.group, port)
        } else {
            json.clone()
        };
        let tx_out = send(a, socket, &tx_json, port, engine_pid, wait);
        // Relaxed: a stop request; the join below waits for the thread.
        stop_flood.store(true, std::sync::atomic::Ordering::Relaxed);
        let flooded = flooding.join().expect("flood thread");
        let rx_results: Vec<_> = rx_threads
            .into_iter()
            .map(|t| t.join().expect("receiver thread"))
            .collect();
        let grades = grading.join().expect("grader thread");
        (rx_results, tx_out, grades, flooded)
    });
    let cpu_self = engine::self_cpu_seconds() - cpu_self_0;
    let (cpu_engine, mut bridges) = tx_out?;
    let grades = grades?;
    let mut hist = report::new_histogram();
    let (mut received, mut rate_sum) = (0, 0.0);
    for (i, r) in rx_results.into_iter().enumerate() {
        let r = r?;
        received += r.received;
        // Delivered rate: frames after the first over the time from the first to the last.
        let span_s = r.last_ns.saturating_sub(r.first_ns) as f64 / 1e9;
        if r.received > 1 && span_s > 0.0 {
            rate_sum += (r.received - 1) as f64 / span_s;
        }
        hist.add(&r.hist).map_err(|e| format!("histogram: {e:?}"))?;
        if i == 0 {
            bridges.extend(r.bridges);
        }
    }
    let fps = rate_sum / a.receivers.max(1) as f64;
    Ok(Measured {
        rate,
        port,
        sender,
        received,
        fps,
        hist,
        cpu_engine,
        cpu_self,
        bridges,
        flooded,
        grades,
        meter,
        grader_malformed: grader.malformed,
        offset,
    })
}

/// Prints what [`measure`] measured: one JSON object, or the report.
fn print(a: &St2110Args, m: &Measured) -> Result<(), String> {
    let Measured {
        rate,
        port,
        sender,
        received,
        fps,
        ref hist,
        cpu_engine,
        ref bridges,
        flooded,
        ref grades,
        ref meter,
        grader_malformed,
        offset,
        ..
    } = *m;
    let lat = report::summarize(hist);
    let stream_s = a.frames as f64 / rate.fps();
    let summary = meter.summary();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "frames": a.frames, "rate": rate.to_string(), "receivers": a.receivers,
                "received": received, "frames_per_s": fps,
                "latency_us": {"count": lat.count, "p50": lat.p50, "p90": lat.p90,
                    "p99": lat.p99, "p99_9": lat.p999, "max": lat.max},
                "engine_cpu_s_per_stream_s": cpu_engine / stream_s,
                "bridges": bridges.iter().map(bridge_json).collect::<Vec<_>>(),
                "flood_datagrams": flooded,
                "pacing": pacing::summary_json(&summary, meter.timing()),
                "pacing_violations": pacing::violations_json(grades),
                "pacing_frames": grades.iter().map(pacing::grade_json).collect::<Vec<_>>(),
                "tai_offset_s": offset / 1_000_000_000,
            })
        );
    } else {
        println!(
            "mcm-perf st2110: {}x{} {} at {} fps ({}), {} frames to {}:{} on lo, {} SDK \
             receiver(s); engine lcores {:?} ({})",
            a.width,
            a.height,
            a.pixel_format,
            rate,
            sender,
            a.frames,
            a.group,
            port,
            a.receivers,
            a.target.lcores,
            a.target.idle
        );
        println!(
            "put->get latency (get time - RTP sampling instant) us: p50 {:.1} p90 {:.1} p99 {:.1} \
             p99.9 {:.1} max {:.1} ({} frames)",
            lat.p50, lat.p90, lat.p99, lat.p999, lat.max, lat.count
        );
        println!(
            "frames/s per receiver (first to last get) {fps:.2}; received {received} of {}; engine CPU {:.3} s per \
             stream-second",
            a.frames * a.receivers as u64,
            cpu_engine / stream_s
        );
        for b in bridges {
            println!("{}", bridge_line(b));
        }
        if a.flood > 0 {
            println!("flood: {flooded} datagrams sent to a second rx session while the stream ran");
        }
        if !a.no_grade {
            println!(
                "pacing (graded on a second member of the group, kernel timestamps): {} packets \
                 before grading, {} not of the stream",
                meter.skipped(),
                grader_malformed
            );
            pacing::print_timing(meter, offset);
            pacing::print_summary(grades, meter);
        }
    }
    a.out.write_in_dir("st2110.hgrm", &output::hgrm(hist))?;
    if !a.no_grade {
        a.out
            .write_in_dir("st2110-pacing.csv", &output::pacing_csv(grades))?;
    }
    a.out.write_svg(|| {
        let series = [LatencySeries {
            label: format!(
                "{} receiver{}",
                a.receivers,
                if a.receivers == 1 { "" } else { "s" }
            ),
            hist: hist.clone(),
        }];
        output::svg(&output::Plot {
            latency_title: format!(
                "mcm-perf st2110: put->get latency, {}x{} at {rate} fps ({sender})",
                a.width, a.height
            ),
            latency: &series,
            pacing_title: format!("ST 2110-21 VRX and Cinst per frame ({sender})"),
            pacing: (!a.no_grade).then_some((grades, meter.timing())),
        })
    })
}

/// Sends `a.frames` frames at the frame rate; returns the engine's CPU seconds over the run and
/// the tx session's counters.
fn send(
    a: &St2110Args,
    socket: &std::path::Path,
    json: &str,
    port: u16,
    engine_pid: Option<u32>,
    wait: Timeout,
) -> Result<(f64, Vec<BridgeStats>), String> {
    let client = Client::with_unix_socket(socket, ClientConfig::default())
        .map_err(|e| format!("sender: {e}"))?;
    // The second edge's owner: created before the sender, so the group has both edges from
    // the first frame.
    let mut monitor = if a.second_destination {
        let j = fan_json(a, second_addr(a), port);
        Some(client.create_rx(&j).map_err(|e| format!("monitor: {e}"))?)
    } else {
        None
    };
    let tx = client.create_tx(json).map_err(|e| format!("sender: {e}"))?;
    let cpu0 = engine_pid.map_or(0.0, engine::cpu_seconds);
    let start = Instant::now();
    let mut progress = report::Progress::new("frames sent", a.frames);
    for i in 0..a.frames {
        progress.tick(i);
        if a.detach_second_after == Some(i) {
            drop(monitor.take());
        }
        let due = start + Duration::from_secs_f64(i as f64 / a.fps);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let mut b = tx
            .get_timeout(wait)
            .map_err(|e| format!("sender get: {e}"))?;
        let p = b.payload_mut();
        p.fill(i as u8);
        b.put_timeout(wait)
            .map_err(|e| format!("sender put: {e}"))?;
    }
    // The tx session may still hold queued frames (a late sender): closing the connection now
    // would drop them. Wait until it has sent every frame, or made no progress for the idle
    // timeout, then let the last packets arrive before the CPU time is read.
    let first = format!("st2110-20 tx {}:{port}", a.group);
    let tx_done = |bridges: &[BridgeStats]| {
        bridges
            .iter()
            .find(|b| b.group.starts_with("st2110-tx://") || b.edge_kind == first)
            .map_or(0, |b| b.frames + b.frames_dropped)
    };
    let (mut done, mut progress) = (0, Instant::now());
    let bridges = loop {
        let bridges = client
            .stats()
            .map_err(|e| format!("sender stats: {e}"))?
            .bridges;
        let now_done = tx_done(&bridges);
        if now_done >= a.frames || progress.elapsed() > IDLE {
            break bridges;
        }
        if now_done > done {
            (done, progress) = (now_done, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let cpu = engine_pid.map_or(0.0, engine::cpu_seconds) - cpu0;
    drop(tx);
    drop(monitor);
    Ok((cpu, bridges))
}
