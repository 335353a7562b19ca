//! `mcm-perf rdma`: frames from an SDK sender on engine A to an SDK receiver on engine B over
//! an RDMA link, side by side with a raw harness that does the same writes with libfabric and no
//! engine: throughput (frames/s, Gb/s) and put→get latency of each, and their ratio.
//!
//! Both paths write frames of the same size over the same provider with the same number of
//! endpoints; the raw harness's sender runs on A's lcore CPU and its receiver on B's. The
//! engine path is an application's: the sender takes a buffer, writes the frame's first eight
//! bytes and its last (the sequence number, which the receiver checks), and puts it; engine A's
//! link writes it from the pool slot into a slot of B's pool with one `fi_writemsg` (payload and
//! metadata), and the receiver process on B gets it. The raw sender posts one `fi_writedata` per
//! frame from a registered buffer into the receiver's registered buffer, keeping as many writes in
//! flight as the engine's connections have buffers, and its receiver reads each write's remote
//! completion. Latency: engine, from the SDK's timestamp at put to the receiver's get; raw, from
//! the post to the receiver reading the completion (one clock, CLOCK_REALTIME, one host).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use mcm_engine::transport::rdma::fabric::{self, Completion, RemoteIov};
use mcm_engine::transport::rdma::link::{Contexts, Fabric};
use mcm_proto::config::transport::RdmaProvider;
use mcm_proto::config::{ClientConfig, ConnectionConfig, Direction};
use mcm_proto::shm::map::{HugePages, Region};
use mcm_sdk::conn::realtime_ns;
use mcm_sdk::{Client, Timeout};

use crate::engine::{self, Engine, EngineOptions};
use crate::local::{Worker, pace};
use crate::output::{self, LatencySeries, OutputArgs};
use crate::report::{self, Summary};

/// Most writes the raw harness keeps in flight.
const RAW_MAX_WINDOW: usize = 128;

/// Options of `mcm-perf rdma`.
#[derive(Debug, Args)]
pub struct RdmaArgs {
    /// Frames per run.
    #[arg(long, default_value_t = 600)]
    frames: u64,
    /// Send rates, one run of each path per rate and endpoint count (frames/s; 0: as fast as
    /// the path takes them, the throughput run).
    #[arg(long, value_delimiter = ',', default_value = "0,60")]
    fps: Vec<f64>,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// MCM pixel format (sizes the frame).
    #[arg(long, default_value = "yuv422p10rfc4175")]
    pixel_format: String,
    /// bufferQueueCapacity of both connections; the raw harness keeps as many writes in
    /// flight.
    #[arg(long, default_value_t = 16)]
    capacity: u32,
    /// libfabric provider of the link and of the raw harness: tcp or shm (verbs where the
    /// machine has an RDMA NIC).
    #[arg(long, default_value = "tcp")]
    provider: String,
    /// Endpoints the frames are striped over, one run each (1..=8).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    endpoints: Vec<u8>,
    /// The mcm-engine binary to start, twice (default: next to this executable).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// CPU of engine A's lcore, and of the raw harness's sender thread.
    #[arg(long, default_value_t = 1)]
    a_cpu: usize,
    /// CPU of engine B's lcore, and of the raw harness's receiver thread.
    #[arg(long, default_value_t = 0)]
    b_cpu: usize,
    /// CPU of both engines' control threads.
    #[arg(long, default_value_t = 0)]
    control_cpu: usize,
    /// CPUs the SDK sender (this process) and the receiver process run on, once the engines
    /// have started (default: any).
    #[arg(long, value_delimiter = ',')]
    app_cpus: Option<Vec<usize>>,
    /// Idle policy of both engines' lcores: adaptive or busy.
    #[arg(long, default_value = "adaptive")]
    idle: String,
    /// How long an adaptive lcore spins after its last work before parking, µs.
    #[arg(long, default_value_t = 200)]
    spin_us: u64,
    /// Rounds of each measurement, the engine and the raw harness alternating which goes first;
    /// the summary line gives the medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// Files beside the report: `rdma-<path>-<N>ep-<fps>.hgrm` per run, a percentile plot of
    /// every run.
    #[command(flatten)]
    out: OutputArgs,
}

/// What one run of either path measured.
#[derive(Debug)]
struct Run {
    path: &'static str,
    endpoints: u8,
    fps: f64,
    sent: u64,
    received: u64,
    bad: u64,
    /// First frame sent to last frame received, seconds.
    wall_s: f64,
    hist: Histogram<u64>,
    /// CPU seconds of the sending end (engine A; the raw sender thread) and of the receiving
    /// end (engine B; the raw receiver thread, which polls without pause).
    cpu_a: f64,
    cpu_b: f64,
    /// CPU seconds of the SDK sender and receiver (engine runs).
    cpu_apps: f64,
    /// Payload bytes either engine copied (engine runs).
    copied: u64,
}

impl Run {
    fn frames_per_s(&self) -> f64 {
        self.received as f64 / self.wall_s.max(1e-9)
    }

    fn gbit_per_s(&self, frame: usize) -> f64 {
        self.frames_per_s() * frame as f64 * 8.0 / 1e9
    }
}

/// Runs `mcm-perf rdma`.
pub fn run(a: &RdmaArgs) -> Result<(), String> {
    let provider = RdmaProvider::ALL
        .iter()
        .find(|(n, _)| *n == a.provider)
        .map(|&(_, p)| p)
        .ok_or_else(|| format!("--provider {}: allowed: tcp, shm, verbs", a.provider))?;
    if let Some(n) = a.endpoints.iter().find(|&&n| !(1..=8).contains(&n)) {
        return Err(format!("--endpoints {n}: allowed: 1 to 8"));
    }
    if a.capacity as usize > RAW_MAX_WINDOW {
        return Err(format!(
            "--capacity {}: allowed: at most {RAW_MAX_WINDOW}",
            a.capacity
        ));
    }
    let probe = connection_json(a, "probe", "");
    let frame = ConnectionConfig::from_json(&probe, Direction::Tx)
        .map_err(|e| format!("the frame: {e}"))?
        .payload_size() as usize;
    let binary = a.engine.clone().unwrap_or_else(engine::default_binary);
    let options = |cpu: usize| EngineOptions {
        binary: binary.clone(),
        lcores: vec![cpu],
        control_cpu: a.control_cpu,
        idle: a.idle.clone(),
        spin_us: a.spin_us,
        wake_margin_us: 1000,
        rx_read_interval_us: 25,
        args: Vec::new(),
        sdk_lines: String::new(),
    };
    let (ea, eb) = (
        Engine::start(&options(a.a_cpu))?,
        Engine::start(&options(a.b_cpu))?,
    );
    if let Some(cpus) = &a.app_cpus {
        engine::pin_this_thread(cpus)?;
    }
    if !a.json {
        println!(
            "mcm-perf rdma: {}x{} {} ({frame} bytes a frame), provider {}, {} frames a run, \
             capacity {}, engine A lcore CPU {}, B lcore CPU {} ({})",
            a.width,
            a.height,
            a.pixel_format,
            a.provider,
            a.frames,
            a.capacity,
            a.a_cpu,
            a.b_cpu,
            a.idle
        );
        println!(
            "{:>6} {:>3} {:>5} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}",
            "path",
            "ep",
            "fps",
            "frames/s",
            "Gb/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "lost",
            "cpu A",
            "cpu B",
            "apps",
            "ratio"
        );
    }
    let mut series = Vec::new();
    for &n in &a.endpoints {
        for (k, &fps) in a.fps.iter().enumerate() {
            let rate = if fps > 0.0 {
                format!("{fps}fps")
            } else {
                "max".to_owned()
            };
            let (mut engine_runs, mut raw_runs) = (Vec::new(), Vec::new());
            for round in 0..a.rounds {
                let group = format!("mcm-perf-rdma-{}-{n}-{k}-{round}", std::process::id());
                // Alternate which path goes first: this VM's speed drifts.
                let (e, r) = if round % 2 == 0 {
                    let e = engine_once(a, &ea, &eb, &group, provider, n, fps)?;
                    (e, raw_once(a, provider, n, frame, fps)?)
                } else {
                    let r = raw_once(a, provider, n, frame, fps)?;
                    (engine_once(a, &ea, &eb, &group, provider, n, fps)?, r)
                };
                let ratio = e.frames_per_s() / r.frames_per_s().max(1e-9);
                report_run(a, &e, frame, Some(ratio))?;
                report_run(a, &r, frame, None)?;
                if e.bad > 0 {
                    return Err(format!("{} frames arrived with the wrong content", e.bad));
                }
                engine_runs.push(e);
                raw_runs.push(r);
            }
            let (me, mr) = (median_fps(&engine_runs), median_fps(&raw_runs));
            let merged_e = merged(&engine_runs)?;
            let merged_r = merged(&raw_runs)?;
            let (se, sr) = (report::summarize(&merged_e), report::summarize(&merged_r));
            let gbit = |fps: f64| fps * frame as f64 * 8.0 / 1e9;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "summary": {"endpoints": n, "target_fps": fps, "rounds": a.rounds,
                            "engine_median_frames_per_s": me, "raw_median_frames_per_s": mr,
                            "engine_median_gbit_per_s": gbit(me), "raw_median_gbit_per_s": gbit(mr),
                            "ratio_of_medians": me / mr.max(1e-9),
                            "engine_latency_us": {"p50": se.p50, "p99": se.p99, "max": se.max},
                            "raw_latency_us": {"p50": sr.p50, "p99": sr.p99, "max": sr.max}}
                    })
                );
            } else {
                println!(
                    "  {n} ep, {rate}, median of {} rounds: engine {me:.1} frames/s ({:.2} Gb/s), \
                     raw {mr:.1} frames/s ({:.2} Gb/s), ratio {:.3}; latency p50/p99 engine \
                     {:.1}/{:.1} us, raw {:.1}/{:.1} us",
                    a.rounds,
                    gbit(me),
                    gbit(mr),
                    me / mr.max(1e-9),
                    se.p50,
                    se.p99,
                    sr.p50,
                    sr.p99
                );
            }
            for (path, hist) in [("engine", merged_e), ("raw", merged_r)] {
                a.out.write_in_dir(
                    &format!("rdma-{path}-{n}ep-{rate}.hgrm"),
                    &output::hgrm(&hist),
                )?;
                series.push(LatencySeries {
                    label: format!("{path} {n} ep, {rate}"),
                    hist,
                });
            }
        }
    }
    drop((ea, eb));
    a.out.write_svg(|| {
        output::svg(&output::Plot {
            latency_title: format!(
                "mcm-perf rdma: put->get latency, {}x{} {}, provider {}",
                a.width, a.height, a.pixel_format, a.provider
            ),
            latency: &series,
            ..output::Plot::default()
        })
    })
}

/// The median of the runs' frames/s.
fn median_fps(runs: &[Run]) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(Run::frames_per_s).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Every run's latencies in one histogram.
fn merged(runs: &[Run]) -> Result<Histogram<u64>, String> {
    let mut h = report::new_histogram();
    for r in runs {
        h.add(&r.hist).map_err(|e| format!("histogram: {e:?}"))?;
    }
    Ok(h)
}

/// Prints one run; `ratio`: the engine run's frames/s over the raw run's beside it.
fn report_run(a: &RdmaArgs, r: &Run, frame: usize, ratio: Option<f64>) -> Result<(), String> {
    let s: Summary = report::summarize(&r.hist);
    let lost = r.sent - r.received;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "path": r.path, "endpoints": r.endpoints, "target_fps": r.fps,
                "frame_bytes": frame, "sent": r.sent, "received": r.received, "lost": lost,
                "bad_frames": r.bad, "frames_per_s": r.frames_per_s(),
                "gbit_per_s": r.gbit_per_s(frame), "wall_s": r.wall_s,
                "latency_us": {"count": s.count, "p50": s.p50, "p90": s.p90, "p99": s.p99,
                    "p99_9": s.p999, "max": s.max},
                "cpu_s": {"sending_end": r.cpu_a, "receiving_end": r.cpu_b,
                    "sdk_sender_and_receiver": r.cpu_apps},
                "payload_bytes_copied": r.copied,
                "engine_to_raw_frames_per_s": ratio,
            })
        );
        return Ok(());
    }
    let engine = r.path == "engine";
    println!(
        "{:>6} {:>3} {:>5} {:>9.1} {:>7.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>6.2} {:>6.2} {:>6} {:>6}",
        r.path,
        r.endpoints,
        if r.fps > 0.0 {
            format!("{}", r.fps)
        } else {
            "max".to_owned()
        },
        r.frames_per_s(),
        r.gbit_per_s(frame),
        s.p50,
        s.p99,
        s.p999,
        s.max,
        lost,
        r.cpu_a,
        r.cpu_b,
        if engine {
            format!("{:.2}", r.cpu_apps)
        } else {
            "-".to_owned()
        },
        ratio.map(|v| format!("{v:.3}")).unwrap_or_default()
    );
    if engine && r.copied != 0 {
        return Err(format!("the engines copied {} payload bytes", r.copied));
    }
    Ok(())
}

/// Connection JSON of group `group` with `edges` (already joined).
fn connection_json(a: &RdmaArgs, group: &str, edges: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {},
            "connection": {{"multipointGroup": {{"urn": "{group}", "edges": [{edges}]}}}},
            "payload": {{"video": {{"width": {}, "height": {}, "fps": 60, "pixelFormat": "{}"}}}}}}"#,
        a.capacity, a.width, a.height, a.pixel_format
    )
}

/// A TCP port free on loopback now, for B's end of the link.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on loopback: {e}"))
}

/// Waits until the RDMA link of `c`'s groups has come up (at most 20 s).
fn wait_link(c: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = c.stats().map_err(|e| format!("GetStats: {e}"))?;
        let link = stats
            .bridges
            .iter()
            .find(|b| b.edge_kind.starts_with("rdma"));
        if link.is_some_and(|l| l.links_up > 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the RDMA link did not come up within 20 s: {:?}",
                stats.bridges
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One run through the engines: a receiver process on B, the sender here on A.
fn engine_once(
    a: &RdmaArgs,
    ea: &Engine,
    eb: &Engine,
    group: &str,
    provider: RdmaProvider,
    endpoints: u8,
    fps: f64,
) -> Result<Run, String> {
    let port = free_port()?;
    let edge = |end: String| {
        format!(
            r#"{{"rdma": {{"direction": {end}, "provider": "{}", "numEndpoints": {endpoints}}}}}"#,
            provider.as_str()
        )
    };
    let rx_json = connection_json(a, group, &edge(format!(r#""rx", "port": {port}"#)));
    let tx_json = connection_json(
        a,
        group,
        &edge(format!(r#""tx", "peer": "127.0.0.1:{port}""#)),
    );
    let worker = Worker::start(&eb.socket, &rx_json, a.frames)?;
    let ca = Client::with_unix_socket(&ea.socket, ClientConfig::default())
        .map_err(|e| format!("sender: {e}"))?;
    let cb = Client::with_unix_socket(&eb.socket, ClientConfig::default())
        .map_err(|e| format!("engine B: {e}"))?;
    let tx = ca.create_tx(&tx_json).map_err(|e| format!("sender: {e}"))?;
    wait_link(&ca)?;
    let (cpu_a0, cpu_b0) = (engine::cpu_seconds(ea.pid()), engine::cpu_seconds(eb.pid()));
    let cpu_self0 = engine::self_cpu_seconds();
    let start = Instant::now();
    let start_ns = realtime_ns();
    let wait = Timeout::After(Duration::from_secs(5));
    let mut progress = report::Progress::new("frames sent", a.frames);
    for i in 0..a.frames {
        progress.tick(i);
        pace(start, i, fps);
        let mut b = tx
            .get_timeout(wait)
            .map_err(|e| format!("sender get: {e}"))?;
        let p = b.payload_mut();
        p[..8].copy_from_slice(&i.to_le_bytes());
        let last = p.len() - 1;
        p[last] = i as u8;
        b.put_timeout(wait)
            .map_err(|e| format!("sender put: {e}"))?;
    }
    let cpu_sender = engine::self_cpu_seconds() - cpu_self0;
    let r = worker.finish()?;
    let (cpu_a, cpu_b) = (
        engine::cpu_seconds(ea.pid()) - cpu_a0,
        engine::cpu_seconds(eb.pid()) - cpu_b0,
    );
    let copied = [&ca, &cb]
        .iter()
        .map(|c| c.stats().map(|s| s.payload_bytes_copied))
        .sum::<Result<u64, _>>()
        .map_err(|e| format!("GetStats: {e}"))?;
    drop(tx);
    Ok(Run {
        path: "engine",
        endpoints,
        fps,
        sent: a.frames,
        received: r.received,
        bad: r.bad,
        wall_s: r.last_ns.saturating_sub(start_ns) as f64 / 1e9,
        hist: r.hist,
        cpu_a,
        cpu_b,
        cpu_apps: cpu_sender + r.cpu_s,
        copied,
    })
}

/// A raw end's memory: a shared-memory region like a group's pool (memfd, normal pages).
fn raw_memory(name: &str, len: usize) -> Result<Region, String> {
    Region::create(name, len, HugePages::Off).map_err(|e| format!("raw harness: {e}"))
}

/// The address `offset` bytes into `r`.
fn at(r: &Region, offset: usize) -> *const u8 {
    assert!(offset < r.len(), "offset {offset} past the region");
    // SAFETY: `offset` is inside the mapping (checked above).
    unsafe { r.as_ptr().add(offset) }
}

/// One run of the raw harness: `fi_writedata` of `frame` bytes per frame over `provider`
/// with `endpoints` endpoints, `capacity` writes in flight, no engine.
fn raw_once(
    a: &RdmaArgs,
    provider: RdmaProvider,
    endpoints: u8,
    frame: usize,
    fps: f64,
) -> Result<Run, String> {
    let n = usize::from(endpoints);
    let window = a.capacity as usize;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let rx = Fabric::open(provider, lo, n)?;
    let tx = Fabric::open(provider, lo, n)?;
    let rx_mem = raw_memory("mcm-perf-raw-rx", window * frame)?;
    let tx_mem = raw_memory("mcm-perf-raw-tx", window * frame)?;
    // SAFETY: the mapping outlives the registration and the endpoints: they are dropped
    // before it at the end of this function.
    let rx_mr = unsafe {
        rx.register(
            at(&rx_mem, 0),
            window * frame,
            u64::from(libfabric_sys::FI_REMOTE_WRITE),
        )
    }?;
    let tx_mr = if tx.domain.info().needs_local_mr() {
        // SAFETY: as above.
        Some(unsafe {
            tx.register(
                at(&tx_mem, 0),
                window * frame,
                u64::from(libfabric_sys::FI_WRITE),
            )
        }?)
    } else {
        None
    };
    let base = if rx.domain.info().virt_addr() {
        rx_mr.region().0
    } else {
        0
    };
    let key = rx_mr.key();
    let to_rx = tx
        .insert_peers(&rx.names()?)
        .map_err(|e| format!("raw harness: {e}"))?;
    rx.insert_peers(&tx.names()?)
        .map_err(|e| format!("raw harness: {e}"))?;
    let posted: Vec<AtomicU64> = (0..a.frames).map(|_| AtomicU64::new(0)).collect();
    let frames = a.frames;
    let (a_cpu, b_cpu) = (a.a_cpu, a.b_cpu);
    let start_ns = realtime_ns();
    let (sent, received) = std::thread::scope(|s| {
        let receiver = s.spawn(|| raw_receive(&rx, &posted, frames, b_cpu));
        let sender = s.spawn(|| {
            engine::pin_this_thread(&[a_cpu])?;
            let to = RawTarget {
                peers: &to_rx,
                base,
                key,
            };
            let load = RawLoad {
                frame,
                window,
                frames,
                fps,
            };
            raw_send(&tx, tx_mr.as_ref(), &tx_mem, &to, load, &posted)
        });
        (
            sender
                .join()
                .unwrap_or_else(|_| Err("the raw sender panicked".into())),
            receiver
                .join()
                .unwrap_or_else(|_| Err("the raw receiver panicked".into())),
        )
    });
    let (received, last_ns, hist, cpu_rx) = received?;
    let (sent, cpu_tx) = sent?;
    // Endpoints and registrations close before the memory they could still write.
    drop((rx_mr, tx_mr));
    drop((rx, tx));
    drop((rx_mem, tx_mem));
    Ok(Run {
        path: "raw",
        endpoints,
        fps,
        sent,
        received,
        bad: 0,
        wall_s: last_ns.saturating_sub(start_ns) as f64 / 1e9,
        hist,
        cpu_a: cpu_tx,
        cpu_b: cpu_rx,
        cpu_apps: 0.0,
        copied: 0,
    })
}

/// Where the raw sender writes: the receiver's endpoints, its buffer's address and key.
struct RawTarget<'a> {
    peers: &'a [fabric::FiAddr],
    base: u64,
    key: u64,
}

/// What the raw sender sends: frames of `frame` bytes, `window` in flight, at `fps`.
#[derive(Debug, Clone, Copy)]
struct RawLoad {
    frame: usize,
    window: usize,
    frames: u64,
    fps: f64,
}

/// The raw sender: frame `i` from slot `i % window` of `mem` into the receiver's slot of the
/// same index, on endpoint `i % endpoints`, remote data `i`; returns the frames sent and its
/// CPU seconds.
fn raw_send(
    tx: &Fabric,
    mr: Option<&fabric::Mr>,
    mem: &Region,
    to: &RawTarget<'_>,
    load: RawLoad,
    posted: &[AtomicU64],
) -> Result<(u64, f64), String> {
    let cpu0 = thread_cpu_seconds();
    let RawLoad {
        frame,
        window,
        frames,
        fps,
    } = load;
    let mut ctx: Contexts<RAW_MAX_WINDOW> = Contexts::default();
    let mut free: Vec<usize> = (0..window).rev().collect();
    let mut done = vec![Completion::default(); 32];
    let desc = tx.desc(mr);
    let n = tx.eps.len();
    let reap = |free: &mut Vec<usize>, ctx: &Contexts<RAW_MAX_WINDOW>, done: &mut [Completion]| {
        let got = tx.cq.read(done).map_err(|e| format!("raw sender: {e}"))?;
        for c in &done[..got] {
            if let Some(i) = ctx.index(c.op_context) {
                free.push(i);
            }
        }
        Ok::<(), String>(())
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    for i in 0..frames {
        // The provider moves data only while its CQ is read: poll it until the frame is due
        // (the engine's lcore does the same while a write is in flight).
        if fps > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / fps);
            while Instant::now() < due {
                reap(&mut free, &ctx, &mut done)?;
            }
        }
        while free.is_empty() {
            reap(&mut free, &ctx, &mut done)?;
            if Instant::now() > deadline {
                return Err("raw sender: no completion for 120 s".into());
            }
        }
        let slot = free.pop().expect("checked above");
        let ep = (i % n as u64) as usize;
        posted[i as usize].store(realtime_ns(), Ordering::Release);
        loop {
            let remote = RemoteIov {
                addr: to.base + (slot * frame) as u64,
                len: frame,
                key: to.key,
            };
            // SAFETY: the slot's memory and context stay untouched until this write's
            // completion puts the slot back on `free`; the buffer outlives the endpoint's use.
            let r = unsafe {
                tx.eps[ep].write_data(
                    &[(at(mem, slot * frame), frame, desc)],
                    to.peers[ep],
                    &[remote],
                    i,
                    ctx.ptr(slot),
                )
            };
            match r {
                Ok(()) => break,
                Err(e) if e.is_again() => reap(&mut free, &ctx, &mut done)?,
                Err(e) => return Err(format!("raw sender: {e}")),
            }
            if Instant::now() > deadline {
                return Err("raw sender: the provider took no write for 120 s".into());
            }
        }
    }
    while free.len() < window {
        reap(&mut free, &ctx, &mut done)?;
        if Instant::now() > deadline {
            return Err("raw sender: writes did not complete within 120 s".into());
        }
    }
    Ok((frames, thread_cpu_seconds() - cpu0))
}

/// The raw receiver: reads remote-write completions until every frame came or none came for
/// 10 s; returns (frames, realtime of the last, post→completion latencies, its CPU seconds).
fn raw_receive(
    rx: &Fabric,
    posted: &[AtomicU64],
    frames: u64,
    cpu: usize,
) -> Result<(u64, u64, Histogram<u64>, f64), String> {
    engine::pin_this_thread(&[cpu])?;
    let cpu0 = thread_cpu_seconds();
    let mut hist = report::new_histogram();
    let mut done = vec![Completion::default(); 32];
    let (mut got, mut last_ns) = (0u64, 0u64);
    let mut idle_since = Instant::now();
    while got < frames && idle_since.elapsed() < Duration::from_secs(10) {
        let k = rx
            .cq
            .read(&mut done)
            .map_err(|e| format!("raw receiver: {e}"))?;
        for c in &done[..k] {
            if fabric::is_remote_write(c) && c.data < frames {
                let now = realtime_ns();
                report::record_latency(
                    &mut hist,
                    now,
                    posted[c.data as usize].load(Ordering::Acquire),
                );
                got += 1;
                last_ns = now;
            }
        }
        if k > 0 {
            idle_since = Instant::now();
        }
    }
    Ok((got, last_ns, hist, thread_cpu_seconds() - cpu0))
}

/// User + system CPU seconds of the calling thread so far.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
