//! `mcm-perf local`: one sender, N receiver processes, one local multipoint group.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use mcm_proto::config::ClientConfig;
use mcm_sdk::conn::realtime_ns;
use mcm_sdk::{Client, Timeout};

use crate::engine::{self, Engine, EngineArgs};
use crate::output::{self, LatencySeries, OutputArgs};
use crate::report::{self, Summary};

/// Options of `mcm-perf local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Receiver counts to measure, one run each (e.g. 1,2,4,8).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub(crate) receivers: Vec<usize>,
    /// Frames per run.
    #[arg(long, default_value_t = 600)]
    pub(crate) frames: u64,
    /// Frames per second the sender paces to; 0 sends as fast as the group takes them.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) fps: f64,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1920)]
    pub(crate) width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1080)]
    pub(crate) height: u32,
    /// MCM pixel format (sizes the frame).
    #[arg(long, default_value = "yuv422p10rfc4175")]
    pub(crate) pixel_format: String,
    /// bufferQueueCapacity of every connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) capacity: u32,
    /// The engine measured.
    #[command(flatten)]
    pub(crate) target: EngineArgs,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Files beside the report: `local-<N>rx.hgrm` per run, a percentile plot of every run.
    #[command(flatten)]
    pub(crate) out: OutputArgs,
}

/// Options of the hidden receiver process.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The engine's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// Connection JSON.
    #[arg(long)]
    config: String,
    /// Frames the sender sends (sequence numbers 0..frames).
    #[arg(long)]
    frames: u64,
    /// Give up when no frame comes for this long (ms).
    #[arg(long, value_parser = crate::millis, default_value = "5000")]
    idle_timeout: Duration,
}

/// What one receiver process measured.
#[derive(Debug)]
pub(crate) struct WorkerResult {
    /// Frames it got.
    pub(crate) received: u64,
    /// Frames with the wrong content.
    pub(crate) bad: u64,
    /// Its CPU seconds.
    pub(crate) cpu_s: f64,
    /// CLOCK_REALTIME of its last get, ns.
    pub(crate) last_ns: u64,
    /// Put→get latencies, ns.
    pub(crate) hist: hdrhistogram::Histogram<u64>,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct RunResult {
    /// Receiver processes.
    pub(crate) receivers: usize,
    /// Frames sent.
    pub(crate) frames: u64,
    /// Frames per second delivered (first put to last get).
    pub(crate) fps: f64,
    /// Put→get latency percentiles over every receiver.
    pub(crate) latency: Summary,
    /// The latencies themselves (ns), to merge runs.
    pub(crate) hist: hdrhistogram::Histogram<u64>,
    /// Frames some receiver never got.
    pub(crate) drops: u64,
    /// Frames that arrived with the wrong content.
    pub(crate) bad: u64,
    /// CPU seconds of the sender (this process) over the run.
    pub(crate) cpu_sender: f64,
    /// CPU seconds of every receiver process together.
    pub(crate) cpu_receivers: f64,
    /// CPU seconds of the engine (0 when attached to one).
    pub(crate) cpu_engine: f64,
    /// First put to last get, seconds.
    pub(crate) wall_s: f64,
}

fn connection_json(a: &LocalArgs, group: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {}, "connection": {{"multipointGroup": {{"urn": "{group}"}}}},
            "payload": {{"video": {{"width": {}, "height": {}, "fps": {}, "pixelFormat": "{}"}}}}}}"#,
        a.capacity,
        a.width,
        a.height,
        if a.fps > 0.0 { a.fps } else { 60.0 },
        a.pixel_format
    )
}

/// Runs `mcm-perf local`.
pub fn run(a: &LocalArgs) -> Result<(), String> {
    let (started, socket) = a.target.attach_or_start()?;
    if !a.json {
        println!(
            "mcm-perf local: {}x{} {} frames, {} per run, {}, capacity {}, engine lcores {:?} ({})",
            a.width,
            a.height,
            a.pixel_format,
            a.frames,
            if a.fps > 0.0 {
                format!("{} fps", a.fps)
            } else {
                "as fast as possible".to_owned()
            },
            a.capacity,
            a.target.lcores,
            a.target.idle
        );
        println!(
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>10} {:>8}",
            "receivers",
            "frames/s",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "drops",
            "cpu tx",
            "cpu rx sum",
            "cpu eng"
        );
    }
    let mut series = Vec::new();
    for (i, &n) in a.receivers.iter().enumerate() {
        let group = format!("mcm-perf-{}-{i}-{n}", std::process::id());
        let r = run_once(a, &socket, &group, n, started.as_ref().map(Engine::pid))?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "receivers": r.receivers, "frames": r.frames, "frames_per_s": r.fps,
                    "latency_us": {"count": r.latency.count, "p50": r.latency.p50,
                        "p90": r.latency.p90, "p99": r.latency.p99, "p99_9": r.latency.p999,
                        "max": r.latency.max},
                    "drops": r.drops, "bad_frames": r.bad, "cpu_s": {"sender": r.cpu_sender,
                        "receivers": r.cpu_receivers, "engine": r.cpu_engine},
                    "wall_s": r.wall_s,
                })
            );
        } else {
            println!(
                "{:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>8.2} {:>10.2} {:>8.2}",
                r.receivers,
                r.fps,
                r.latency.p50,
                r.latency.p90,
                r.latency.p99,
                r.latency.p999,
                r.latency.max,
                r.drops,
                r.cpu_sender,
                r.cpu_receivers,
                r.cpu_engine
            );
        }
        a.out
            .write_in_dir(&format!("local-{n}rx.hgrm"), &output::hgrm(&r.hist))?;
        series.push(LatencySeries {
            label: format!("{n} receiver{}", if n == 1 { "" } else { "s" }),
            hist: r.hist,
        });
        if r.bad > 0 {
            return Err(format!("{} frames arrived with the wrong content", r.bad));
        }
        let _ = std::io::stdout().flush();
    }
    a.out.write_svg(|| {
        output::svg(&output::Plot {
            latency_title: format!(
                "mcm-perf local: put->get latency, {}x{} {}",
                a.width, a.height, a.pixel_format
            ),
            latency: &series,
            ..output::Plot::default()
        })
    })
}

/// One sender and `receivers` receiver processes in `group`: every frame sent, then every
/// receiver's report collected.
pub(crate) fn run_once(
    a: &LocalArgs,
    socket: &std::path::Path,
    group: &str,
    receivers: usize,
    engine_pid: Option<u32>,
) -> Result<RunResult, String> {
    let json = connection_json(a, group);
    let mut workers = Vec::new();
    for _ in 0..receivers {
        workers.push(Worker::start(socket, &json, a.frames)?);
    }
    let client = Client::with_unix_socket(socket, ClientConfig::default())
        .map_err(|e| format!("sender: {e}"))?;
    let tx = client
        .create_tx(&json)
        .map_err(|e| format!("sender: {e}"))?;
    let cpu_engine_0 = engine_pid.map_or(0.0, engine::cpu_seconds);
    let cpu_self_0 = engine::self_cpu_seconds();
    let start = Instant::now();
    let start_ns = realtime_ns();
    let wait = Timeout::After(Duration::from_secs(5));
    let mut progress = report::Progress::new("frames sent", a.frames);
    for i in 0..a.frames {
        progress.tick(i);
        pace(start, i, a.fps);
        let mut b = tx
            .get_timeout(wait)
            .map_err(|e| format!("sender get: {e}"))?;
        let p = b.payload_mut();
        p.fill(i as u8);
        p[..8].copy_from_slice(&i.to_le_bytes());
        b.put_timeout(wait)
            .map_err(|e| format!("sender put: {e}"))?;
    }
    let cpu_sender = engine::self_cpu_seconds() - cpu_self_0;
    let mut hist = report::new_histogram();
    let (mut received, mut bad, mut cpu_receivers, mut last_ns) = (0, 0, 0.0, start_ns);
    for w in workers {
        let r = w.finish()?;
        received += r.received;
        bad += r.bad;
        cpu_receivers += r.cpu_s;
        last_ns = last_ns.max(r.last_ns);
        hist.add(&r.hist).map_err(|e| format!("histogram: {e:?}"))?;
    }
    let cpu_engine = engine_pid.map_or(0.0, engine::cpu_seconds) - cpu_engine_0;
    let wall_s = (last_ns.saturating_sub(start_ns)) as f64 / 1e9;
    drop(tx);
    Ok(RunResult {
        receivers,
        frames: a.frames,
        fps: a.frames as f64 / wall_s.max(1e-9),
        latency: report::summarize(&hist),
        hist,
        drops: a.frames * receivers as u64 - received,
        bad,
        cpu_sender,
        cpu_receivers,
        cpu_engine,
        wall_s,
    })
}

/// Sleeps until frame `i` of a run at `fps` that started at `start` is due (0: never).
pub(crate) fn pace(start: Instant, i: u64, fps: f64) {
    if fps > 0.0 {
        let due = start + Duration::from_secs_f64(i as f64 / fps);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// A receiver process (`mcm-perf rx-worker`), attached and ready.
pub(crate) struct Worker {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Worker {
    /// Starts a receiver of `frames` frames on the engine at `socket` with connection `json`;
    /// returns once its connection is up.
    pub(crate) fn start(socket: &std::path::Path, json: &str, frames: u64) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut child = Command::new(&exe)
            .arg("rx-worker")
            .arg("--socket")
            .arg(socket)
            .args(["--config", json, "--frames", &frames.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a receiver: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)
            .map_err(|e| format!("receiver: {e}"))?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(format!("a receiver did not start: {line:?}"));
        }
        Ok(Self { child, out })
    }

    /// Waits for the receiver's report and for it to exit.
    pub(crate) fn finish(mut self) -> Result<WorkerResult, String> {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .map_err(|e| format!("receiver: {e}"))?;
        let _ = self.child.wait();
        parse_result(&line)
    }
}

/// Parses a receiver process's `result` line.
fn parse_result(line: &str) -> Result<WorkerResult, String> {
    let v: serde_json::Value = line
        .strip_prefix("result ")
        .ok_or_else(|| format!("a receiver said {line:?}"))
        .and_then(|j| serde_json::from_str(j).map_err(|e| format!("receiver result: {e}")))?;
    let num = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| format!("receiver result lacks {k}"))
    };
    Ok(WorkerResult {
        received: num("received")?,
        bad: num("bad")?,
        cpu_s: v["cpu_s"].as_f64().unwrap_or(0.0),
        last_ns: num("last_ns")?,
        hist: report::from_hex(v["hist"].as_str().unwrap_or(""))?,
    })
}

/// The receiver process: get every frame, record put→get latency, check the content.
pub fn worker(a: &WorkerArgs) -> Result<(), String> {
    let client =
        Client::with_unix_socket(&a.socket, ClientConfig::default()).map_err(|e| e.to_string())?;
    let rx = client.create_rx(&a.config).map_err(|e| e.to_string())?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let cpu0 = engine::self_cpu_seconds();
    let mut hist = report::new_histogram();
    let (mut received, mut bad, mut last_ns) = (0u64, 0u64, 0u64);
    while let Ok(f) = rx.get_timeout(Timeout::After(a.idle_timeout)) {
        let now = realtime_ns();
        report::record_latency(&mut hist, now, f.timestamp_ns());
        let p = f.payload();
        if p.len() < 8 || p[..8] != f.seq().to_le_bytes() || p[p.len() - 1] != f.seq() as u8 {
            bad += 1;
        }
        received += 1;
        last_ns = now;
        if f.seq() + 1 >= a.frames {
            break;
        }
    }
    let cpu_s = engine::self_cpu_seconds() - cpu0;
    println!(
        "result {}",
        serde_json::json!({"received": received, "bad": bad, "cpu_s": cpu_s,
                           "last_ns": last_ns, "hist": report::to_hex(&hist)})
    );
    Ok(())
}
