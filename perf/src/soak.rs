//! `mcm-perf soak`: a realistic mix against one engine for a set time, then checks that nothing
//! leaked and every counter adds up.
//!
//! The mix:
//! - a local group with a steady sender and a steady receiver (in this process), and receiver
//!   processes (`soak-worker`) that join and leave cleanly, crash (SIGKILL) or hang (SIGSTOP,
//!   reaped by the engine's keepalive timeout, then killed);
//! - an ST 2110-20 video stream and an ST 2110-30 audio stream, each sent by an SDK sender to
//!   127.0.0.1 and received by an SDK receiver of the same engine;
//! - TCP clients that connect, create a receiver, take a frame and leave.
//!
//! At the end, with every client gone: the engine has no session, connection or group left,
//! its fd count and resident memory are where they were after a warm-up, its runtime folder
//! holds only its socket and lock, the steady receiver's counters add up exactly (frames sent =
//! frames delivered + frames dropped for it, and it read every frame delivered), the ST 2110
//! streams' counters add up, and no receiver saw a wrong byte. Every loop is bounded by the
//! deadline and by a count.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grpcio::{ChannelBuilder, EnvBuilder};
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::EngineClient;
use mcm_proto::config::ClientConfig;
use mcm_sdk::{Client, Timeout};

use crate::engine::{Engine, EngineOptions, default_binary};

/// `mcm-perf soak` options.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the mix runs, in seconds.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// The engine binary (default: the one next to this tool).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// CPUs of the engine's lcores.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    lcores: Vec<usize>,
    /// CPU of the engine's control thread.
    #[arg(long, default_value_t = 0)]
    control_cpu: usize,
    /// Seed of the churn's choices (the same seed makes the same sequence of actions).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First UDP port of the two ST 2110 streams (it and the next one).
    #[arg(long, default_value_t = 47000)]
    port: u16,
}

/// `mcm-perf soak-worker` (started by `soak`): a receiver process of the local group.
#[derive(Debug, clap::Args)]
pub struct SoakWorkerArgs {
    /// The engine's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// Frames to take before leaving.
    #[arg(long)]
    count: u64,
}

/// The local group's connection JSON.
const LOCAL_JSON: &str = r#"{"bufferQueueCapacity": 16,
    "connection": {"multipointGroup": {"urn": "soak-local"}},
    "payload": {"video": {"width": 64, "height": 32, "pixelFormat": "yuv422p10rfc4175"}}}"#;
/// Most churn workers alive at once.
const MAX_WORKERS: usize = 8;
/// The engine's keepalive timeout in the soak (a hung client is reaped after it).
const KEEPALIVE_MS: u64 = 1500;
/// Slack of the end-of-run fd check (lazily opened descriptors of the engine's libraries).
const FD_SLACK: i64 = 4;
/// Most the engine's resident memory may grow between the warm-up and the end.
const RSS_SLACK_KB: i64 = 32 << 10;

fn video_json(port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16, "connection": {{"st2110": {{"transport": "st2110-20",
            "ipAddr": "127.0.0.1", "port": {port}, "payloadType": 96}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "fps": 50,
            "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

fn audio_json(port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16, "connection": {{"st2110": {{"transport": "st2110-30",
            "ipAddr": "127.0.0.1", "port": {port}, "payloadType": 97}}}},
            "payload": {{"audio": {{"channels": 2, "sampleRate": 48000,
            "format": "pcm_s24be", "packetTime": "1ms"}}}}}}"#
    )
}

/// Fills `p` with frame `seq`'s pattern: its sequence number, then a byte derived from it.
fn fill(p: &mut [u8], seq: u64) {
    p.fill((seq as u8) ^ 0x5a);
    let n = p.len().min(8);
    p[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// The sequence number a frame carries if its pattern is intact.
fn check(p: &[u8]) -> Option<u64> {
    if p.len() < 8 {
        return None;
    }
    let seq = u64::from_le_bytes(p[..8].try_into().ok()?);
    p[8..]
        .iter()
        .all(|&b| b == (seq as u8) ^ 0x5a)
        .then_some(seq)
}

/// A receiver process of the soak's local group.
pub fn worker(a: &SoakWorkerArgs) -> Result<(), String> {
    let client =
        Client::with_unix_socket(&a.socket, ClientConfig::default()).map_err(|e| e.to_string())?;
    let rx = client.create_rx(LOCAL_JSON).map_err(|e| e.to_string())?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let (mut received, mut bad) = (0u64, 0u64);
    while received < a.count {
        let Ok(f) = rx.get_timeout(Timeout::After(Duration::from_secs(3))) else {
            break;
        };
        if check(f.payload()).is_none() {
            bad += 1;
        }
        received += 1;
    }
    println!("result received={received} bad={bad}");
    Ok(())
}

/// What one stream's threads counted.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    received: AtomicU64,
    bad: AtomicU64,
}

/// What a sender's thread returns: its ST 2110 tx session's counters once they account for
/// every frame put (`None` for the local group).
type SenderResult = Result<Option<mcm_proto::sdk::BridgeStats>, String>;

/// Sends frames of `json` until `stop`, about every `period`; counts what the engine took.
fn sender(
    client: Client,
    json: String,
    period: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> std::thread::JoinHandle<SenderResult> {
    std::thread::spawn(move || {
        let tx = client
            .create_tx(&json)
            .map_err(|e| format!("sender: {e}"))?;
        let mut seq = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut b = tx
                .get_timeout(Timeout::After(Duration::from_secs(5)))
                .map_err(|e| format!("sender: get: {e}"))?;
            fill(b.payload_mut(), seq);
            b.put_timeout(Timeout::After(Duration::from_secs(5)))
                .map_err(|e| format!("sender: put: {e}"))?;
            tally.sent.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        // An ST 2110 tx session must account for every frame put: sent, dropped or refused.
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while json.contains("\"st2110\"") && Instant::now() < deadline {
            let stats = client.stats().map_err(|e| format!("sender: stats: {e}"))?;
            let b = stats
                .bridges
                .into_iter()
                .find(|b| b.edge_kind.contains(" tx "));
            let done = b.as_ref().is_some_and(|b| {
                b.frames + b.frames_dropped + b.frames_refused == tally.sent.load(Ordering::Relaxed)
            });
            last = b;
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(tx);
        Ok(last)
    })
}

/// Receives `rx`'s frames until `stop` and then until it has been quiet for a moment.
fn receiver(
    rx: mcm_sdk::RxConnection,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> std::thread::JoinHandle<mcm_sdk::RxConnection> {
    std::thread::spawn(move || {
        let mut quiet_since: Option<Instant> = None;
        loop {
            match rx.get_timeout(Timeout::After(Duration::from_millis(200))) {
                Ok(f) => {
                    quiet_since = None;
                    if check(f.payload()).is_none() {
                        tally.bad.fetch_add(1, Ordering::Relaxed);
                    }
                    tally.received.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) if stop.load(Ordering::Relaxed) => {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        rx
    })
}

/// A churn worker and what is to become of it.
struct Worker {
    child: Child,
    fate: Fate,
    /// When to kill it (crash, hang).
    until: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Leaves,
    Crashes,
    Hangs,
}

/// xorshift64*: the churn's choices, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn spawn_worker(socket: &Path, fate: Fate, rng: &mut Rng) -> Result<Worker, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let count = 20 + rng.next() % 200;
    let mut child = Command::new(exe)
        .args(["soak-worker", "--socket"])
        .arg(socket)
        .args(["--count", &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))?;
    let mut line = String::new();
    let out = child.stdout.as_mut().expect("piped");
    let _ = BufReader::new(out).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("a worker did not attach: {line:?}"));
    }
    let after = match fate {
        Fate::Leaves => Duration::from_secs(30),
        Fate::Crashes => Duration::from_millis(50 + rng.next() % 500),
        Fate::Hangs => Duration::from_millis(KEEPALIVE_MS * 2),
    };
    if fate == Fate::Hangs {
        signal(&child, libc::SIGSTOP);
    }
    Ok(Worker {
        child,
        fate,
        until: Instant::now() + after,
    })
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; it has not been reaped yet (we hold its Child).
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// What the churn did and saw.
#[derive(Debug, Default)]
struct Churn {
    left: u64,
    crashed: u64,
    hung: u64,
    tcp_clients: u64,
    worker_frames: u64,
    worker_bad: u64,
    refused: u64,
}

/// Ends workers whose time has come (all of them with `all`).
fn reap(workers: &mut Vec<Worker>, churn: &mut Churn, all: bool) -> Result<(), String> {
    let now = Instant::now();
    let mut i = 0;
    while i < workers.len() {
        let w = &mut workers[i];
        let done = match w.fate {
            Fate::Leaves => w.child.try_wait().map_err(|e| e.to_string())?.is_some() || all,
            _ => now >= w.until || all,
        };
        if !done {
            i += 1;
            continue;
        }
        let mut w = workers.swap_remove(i);
        match w.fate {
            Fate::Leaves => {
                let out = w.child.wait_with_output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout);
                let field = |k: &str| {
                    text.split_whitespace()
                        .find_map(|t| t.strip_prefix(k))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match (field("received="), field("bad=")) {
                    (Some(r), Some(b)) => {
                        churn.worker_frames += r;
                        churn.worker_bad += b;
                        churn.left += 1;
                    }
                    _ => return Err(format!("a worker ended without its result: {text:?}")),
                }
            }
            Fate::Crashes | Fate::Hangs => {
                signal(&w.child, libc::SIGKILL);
                let _ = w.child.wait();
                // A hung worker killed at the end before its keepalive deadline is a crash
                // to the engine (its socket closes), not a keepalive timeout.
                if w.fate == Fate::Crashes || now < w.until {
                    churn.crashed += 1;
                } else {
                    churn.hung += 1;
                }
            }
        }
    }
    Ok(())
}

/// The engine process's open fds and resident memory (kB).
fn footprint(pid: u32) -> (i64, i64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(-1, |d| d.count() as i64);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(-1);
    (fds, rss)
}

fn info(control: &EngineClient) -> Result<pb::EngineInfo, String> {
    control
        .get_info(&pb::GetInfoRequest::default())
        .map_err(|e| format!("GetInfo: {e}"))
}

/// Waits (bounded) until the engine has no session, connection or group.
fn wait_empty(control: &EngineClient) -> Result<pb::EngineInfo, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = info(control)?;
        if i.sessions == 0 && i.connections == 0 && i.groups == 0 {
            return Ok(i);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the engine still has {} sessions, {} connections, {} groups 30 s after every \
                 client left",
                i.sessions, i.connections, i.groups
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One round of every kind of client, to open what the engine opens lazily.
fn warm_up(e: &Engine, a: &SoakArgs) -> Result<(), String> {
    let c =
        Client::with_unix_socket(&e.socket, ClientConfig::default()).map_err(|e| e.to_string())?;
    let rx = c.create_rx(LOCAL_JSON).map_err(|e| e.to_string())?;
    let tx = c.create_tx(LOCAL_JSON).map_err(|e| e.to_string())?;
    let mut b = tx.get().map_err(|e| e.to_string())?;
    fill(b.payload_mut(), 0);
    b.put().map_err(|e| e.to_string())?;
    rx.get().map_err(|e| e.to_string())?;
    for json in [video_json(a.port), audio_json(a.port + 1)] {
        let r = c.create_rx(&json).map_err(|e| e.to_string())?;
        let t = c.create_tx(&json).map_err(|e| e.to_string())?;
        drop((t, r));
    }
    Ok(())
}

/// Runs the soak; fails with the list of checks that did not hold.
pub fn run(a: &SoakArgs) -> Result<(), String> {
    let e = Engine::start(&EngineOptions {
        binary: a.engine.clone().unwrap_or_else(default_binary),
        lcores: a.lcores.clone(),
        control_cpu: a.control_cpu,
        idle: "adaptive".to_owned(),
        spin_us: 200,
        wake_margin_us: 1000,
        rx_read_interval_us: 25,
        args: Vec::new(),
        sdk_lines: format!("keepalive_timeout_ms = {KEEPALIVE_MS}"),
    })?;
    let grpc = e
        .grpc
        .clone()
        .ok_or("the engine did not log its gRPC address")?;
    let control = EngineClient::new(
        ChannelBuilder::new(Arc::new(EnvBuilder::new().cq_count(1).build())).connect(&grpc),
    );
    warm_up(&e, a)?;
    wait_empty(&control)?;
    let (fds0, rss0) = footprint(e.pid());

    let unix = || Client::with_unix_socket(&e.socket, ClientConfig::default());
    let client = unix().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let local = Arc::new(Tally::default());
    let video = Arc::new(Tally::default());
    let audio = Arc::new(Tally::default());
    // Receivers first, so they see every frame from the first.
    let rx_local = client.create_rx(LOCAL_JSON).map_err(|e| e.to_string())?;
    let rx_video = client
        .create_rx(&video_json(a.port))
        .map_err(|e| e.to_string())?;
    let rx_audio = client
        .create_rx(&audio_json(a.port + 1))
        .map_err(|e| e.to_string())?;
    let receivers = [
        receiver(rx_local, stop.clone(), local.clone()),
        receiver(rx_video, stop.clone(), video.clone()),
        receiver(rx_audio, stop.clone(), audio.clone()),
    ];
    let senders = [
        sender(
            unix().map_err(|e| e.to_string())?,
            LOCAL_JSON.to_owned(),
            Duration::from_millis(2),
            stop.clone(),
            local.clone(),
        ),
        sender(
            unix().map_err(|e| e.to_string())?,
            video_json(a.port),
            Duration::from_millis(20),
            stop.clone(),
            video.clone(),
        ),
        sender(
            unix().map_err(|e| e.to_string())?,
            audio_json(a.port + 1),
            Duration::from_millis(1),
            stop.clone(),
            audio.clone(),
        ),
    ];

    let tcp_json = {
        let port = info(&control)?
            .sdk_tcp
            .rsplit(':')
            .next()
            .unwrap_or("0")
            .to_owned();
        format!(r#"{{"apiConnectionString": "Server=127.0.0.1; Port={port}"}}"#)
    };
    let mut rng = Rng(a.seed.max(1));
    let mut churn = Churn::default();
    let mut workers: Vec<Worker> = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration_s);
    // At most one action every 100 ms: bounded by the count as well as the time.
    let rounds = a.duration_s * 10;
    for _ in 0..rounds {
        if Instant::now() >= end {
            break;
        }
        reap(&mut workers, &mut churn, false)?;
        match rng.next() % 8 {
            0..=2 if workers.len() < MAX_WORKERS => {
                workers.push(spawn_worker(&e.socket, Fate::Leaves, &mut rng)?)
            }
            3 if workers.len() < MAX_WORKERS => {
                workers.push(spawn_worker(&e.socket, Fate::Crashes, &mut rng)?)
            }
            4 if workers.len() < MAX_WORKERS => {
                workers.push(spawn_worker(&e.socket, Fate::Hangs, &mut rng)?)
            }
            5 => match Client::new(Some(&tcp_json)).and_then(|c| c.create_rx(LOCAL_JSON)) {
                // A TCP client that creates a receiver and goes away without a word.
                Ok(rx) => {
                    let _ = rx.get_timeout(Timeout::After(Duration::from_millis(50)));
                    drop(rx);
                    churn.tcp_clients += 1;
                }
                Err(_) => churn.refused += 1,
            },
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Workers that leave are given their time; then everything stops.
    let settle = Instant::now() + Duration::from_secs(20);
    while workers.iter().any(|w| w.fate == Fate::Leaves) && Instant::now() < settle {
        reap(&mut workers, &mut churn, false)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    reap(&mut workers, &mut churn, true)?;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut tx_bridges = Vec::new();
    for s in senders {
        match s.join().map_err(|_| "a sender panicked".to_owned())? {
            Ok(b) => tx_bridges.push(b),
            Err(e) => {
                failures.push(e);
                tx_bridges.push(None);
            }
        }
    }
    let mut rxs = Vec::new();
    for r in receivers {
        rxs.push(r.join().map_err(|_| "a receiver panicked")?);
    }
    let stats = client.stats().map_err(|e| e.to_string())?;
    let ids: Vec<u64> = rxs.iter().map(|r| r.core().id()).collect();
    let conn = |id: u64| stats.connections.iter().find(|c| c.conn_id == id).cloned();
    let (lf, ld) = conn(ids[0]).map_or((0, 0), |c| (c.frames, c.dropped));
    let sent = |t: &Tally| t.sent.load(Ordering::Relaxed);
    let got = |t: &Tally| t.received.load(Ordering::Relaxed);
    let bad = |t: &Tally| t.bad.load(Ordering::Relaxed);
    if sent(&local) != lf + ld {
        failures.push(format!(
            "local group: {} frames sent, but the steady receiver was delivered {lf} and \
             dropped {ld}",
            sent(&local)
        ));
    }
    if got(&local) != lf {
        failures.push(format!(
            "local group: the engine delivered {lf} frames to the steady receiver, it read {}",
            got(&local)
        ));
    }
    let bridge = |kind: &str, port: u16| {
        let name = format!("st2110-{kind} 127.0.0.1:{port}");
        stats
            .bridges
            .iter()
            .find(|b| b.edge_kind.contains(&name))
            .cloned()
    };
    let mut streams = Vec::new();
    for (name, t, i, port) in [
        ("st2110-20", &video, 1usize, a.port),
        ("st2110-30", &audio, 2, a.port + 1),
    ] {
        let (df, dd) = conn(ids[i]).map_or((0, 0), |c| (c.frames, c.dropped));
        let tx = tx_bridges[i].clone();
        let rx = bridge(&format!("{} rx", &name[7..]), port);
        let tx_frames = tx.as_ref().map_or(0, |b| b.frames);
        let tx_lost = tx
            .as_ref()
            .map_or(0, |b| b.frames_dropped + b.frames_refused);
        if tx_frames + tx_lost != sent(t) {
            failures.push(format!(
                "{name}: {} frames put, the tx session sent {tx_frames} and dropped or refused \
                 {tx_lost}",
                sent(t)
            ));
        }
        let rx_frames = rx.as_ref().map_or(0, |b| b.frames);
        let rx_lost = rx
            .as_ref()
            .map_or(0, |b| b.frames_incomplete + b.frames_dropped);
        if got(t) != df {
            failures.push(format!(
                "{name}: the engine delivered {df} frames to the receiver, it read {}",
                got(t)
            ));
        }
        if rx_frames != df + dd {
            failures.push(format!(
                "{name}: the rx session completed {rx_frames} frames, the receiver was \
                 delivered {df} and dropped {dd}"
            ));
        }
        if rx_frames + rx_lost > tx_frames {
            failures.push(format!(
                "{name}: {tx_frames} frames sent, {rx_frames} received whole and {rx_lost} \
                 incomplete or dropped"
            ));
        }
        if got(t) == 0 {
            failures.push(format!("{name}: no frame arrived"));
        }
        streams.push(serde_json::json!({"stream": name, "put": sent(t), "sent": tx_frames, "tx_dropped_or_refused": tx_lost,
            "received": rx_frames, "incomplete_or_dropped": rx_lost, "delivered": df,
            "dropped_at_receiver": dd, "read": got(t), "bad": bad(t)}));
    }
    let all_bad = bad(&local) + bad(&video) + bad(&audio) + churn.worker_bad;
    if all_bad != 0 {
        failures.push(format!("{all_bad} frames with wrong bytes"));
    }
    drop(rxs);
    drop(client);
    let end_info = wait_empty(&control);
    let keepalive_timeouts = match &end_info {
        Ok(i) => i.sdk_keepalive_timeouts,
        Err(e) => {
            failures.push(e.clone());
            0
        }
    };
    if keepalive_timeouts < churn.hung {
        failures.push(format!(
            "{} hung workers, but only {keepalive_timeouts} keepalive timeouts",
            churn.hung
        ));
    }
    let (fds1, rss1) = footprint(e.pid());
    if fds1 > fds0 + FD_SLACK {
        failures.push(format!(
            "the engine holds {fds1} fds, {fds0} after the warm-up"
        ));
    }
    if rss1 > rss0 + RSS_SLACK_KB {
        failures.push(format!(
            "the engine's resident memory grew from {rss0} kB to {rss1} kB"
        ));
    }
    let dir = e.socket.parent().map(Path::to_owned).unwrap_or_default();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "sdk.sock" && n != "engine.lock")
        .collect();
    files.sort();
    if !files.is_empty() {
        failures.push(format!("files left in the runtime folder: {files:?}"));
    }
    let summary = serde_json::json!({
        "duration_s": start.elapsed().as_secs_f64(),
        "local": {"sent": sent(&local), "delivered": lf, "dropped": ld, "read": got(&local)},
        "streams": streams,
        "churn": {"left": churn.left, "crashed": churn.crashed, "hung": churn.hung,
                  "tcp_clients": churn.tcp_clients, "refused": churn.refused,
                  "worker_frames": churn.worker_frames},
        "keepalive_timeouts": keepalive_timeouts,
        "engine_fds": {"after_warm_up": fds0, "end": fds1},
        "engine_rss_kb": {"after_warm_up": rss0, "end": rss1},
        "failures": failures,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak: {} check(s) failed", failures.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_survive_and_damage_is_seen() {
        let mut p = vec![0u8; 5120];
        fill(&mut p, 1234);
        assert_eq!(check(&p), Some(1234));
        p[100] ^= 1;
        assert_eq!(check(&p), None);
        let mut short = [0u8; 4];
        fill(&mut short, 7);
        assert_eq!(check(&short), None);
    }

    #[test]
    fn the_churn_is_reproducible() {
        let (mut a, mut b) = (Rng(9), Rng(9));
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
    }
}
