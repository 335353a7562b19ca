//! `mcm-perf agent`: how long an application on engine A waits, from its create-connection
//! call, until its first frame reaches a receiver on engine B — with nothing but the agent
//! joining the two (no edge in either connection's JSON, no wait before sending).
//!
//! One `mcm-agent` and two engines are started with `--agent`. Each run uses a new group: the
//! receiver joins it on B first, and once the agent's view shows B's receiver, the clock starts,
//! the sender's `create_tx` is called on A, and the sender puts a small frame every
//! `--interval-us` until the receiver gets one. What the time covers: A's CreateConnection, A's
//! report to the agent, the agent's order of an rx link on B and B's answer, its order of a tx
//! link on A, the link's dial and handshake, and the first frame's write. Frames put before the
//! link streams are dropped by design (a group with no sink), so the figure's resolution is the
//! put interval. Between runs both connections go and the agent removes the link.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use grpcio::{ChannelBuilder, EnvBuilder};
use hdrhistogram::Histogram;
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::AgentClient;
use mcm_proto::config::ClientConfig;
use mcm_sdk::{Client, Timeout};

use crate::engine::{self, Engine, EngineOptions};

/// Options of `mcm-perf agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Runs (one group each).
    #[arg(long, default_value_t = 50)]
    runs: u32,
    /// Between two puts of the sender while it waits for the first frame, µs.
    #[arg(long, default_value_t = 100)]
    interval_us: u64,
    /// The mcm-engine binary (default: next to this executable).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// The mcm-agent binary (default: next to this executable).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// CPU of engine A's lcore.
    #[arg(long, default_value_t = 1)]
    a_cpu: usize,
    /// CPU of engine B's lcore.
    #[arg(long, default_value_t = 0)]
    b_cpu: usize,
    /// CPU of both engines' control threads.
    #[arg(long, default_value_t = 0)]
    control_cpu: usize,
    /// Idle policy of both engines' lcores: adaptive or busy.
    #[arg(long, default_value = "adaptive")]
    idle: String,
    /// libfabric provider of the agent's links.
    #[arg(long, default_value = "tcp")]
    provider: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Kills the agent when dropped.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mcm-agent` on a free loopback port; returns it and its address.
fn start_agent(binary: &PathBuf, provider: &str) -> Result<(AgentProc, String), String> {
    let mut child = Command::new(binary)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--provider",
            provider,
            "--log-level",
            "info",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let agent = AgentProc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ERROR") {
                eprintln!("agent: {line}");
            }
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the agent did not start within 30 s".to_owned())?;
        if let Some(rest) = line.split(" listening on ").nth(1) {
            let addr = rest.split(' ').next().unwrap_or_default().to_owned();
            return Ok((agent, addr));
        }
    }
}

/// Polls the agent's view every millisecond until `ready` holds (at most 10 s).
fn wait_view(
    agent: &AgentClient,
    what: &str,
    ready: impl Fn(&pb::ListEnginesReply) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = agent
            .list_engines(&pb::ListEnginesRequest::default())
            .map_err(|e| format!("ListEngines: {e}"))?;
        if ready(&v) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within 10 s ({v:?})"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn json(urn: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16, "maxPayloadSize": 1000,
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"blob": {{}}}}}}"#
    )
}

/// Runs `mcm-perf agent`.
pub fn run(a: &AgentArgs) -> Result<(), String> {
    let beside = |name: &str| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(name)))
            .unwrap_or_else(|| PathBuf::from(name))
    };
    let agent_bin = a.agent.clone().unwrap_or_else(|| beside("mcm-agent"));
    let (_agent, addr) = start_agent(&agent_bin, &a.provider)?;
    let binary = a.engine.clone().unwrap_or_else(engine::default_binary);
    let options = |cpu: usize| EngineOptions {
        binary: binary.clone(),
        lcores: vec![cpu],
        control_cpu: a.control_cpu,
        idle: a.idle.clone(),
        spin_us: 200,
        wake_margin_us: 1000,
        rx_read_interval_us: 25,
        args: vec!["--agent".to_owned(), addr.clone()],
        sdk_lines: String::new(),
    };
    let (ea, eb) = (
        Engine::start(&options(a.a_cpu))?,
        Engine::start(&options(a.b_cpu))?,
    );
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let view = AgentClient::new(ChannelBuilder::new(env).connect(&addr));
    wait_view(&view, "both engines registered", |v| v.engines.len() == 2)?;
    let ca = Client::with_unix_socket(&ea.socket, ClientConfig::default())
        .map_err(|e| format!("engine A: {e}"))?;
    let cb = Client::with_unix_socket(&eb.socket, ClientConfig::default())
        .map_err(|e| format!("engine B: {e}"))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut puts_total = 0u64;
    let interval = Duration::from_micros(a.interval_us);
    for i in 0..a.runs {
        let urn = format!("agent-latency-{i}");
        let rx = cb
            .create_rx(&json(&urn))
            .map_err(|e| format!("receiver on B: {e}"))?;
        wait_view(&view, "the agent sees B's receiver", |v| {
            v.engines
                .iter()
                .any(|e| e.groups.iter().any(|g| g.urn == urn && g.receivers > 0))
        })?;
        let t0 = Instant::now();
        let tx = ca
            .create_tx(&json(&urn))
            .map_err(|e| format!("sender on A: {e}"))?;
        let deadline = t0 + Duration::from_secs(10);
        let mut puts = 0u64;
        let latency = loop {
            let mut b = tx
                .get_timeout(Timeout::After(Duration::from_secs(1)))
                .map_err(|e| format!("sender get: {e}"))?;
            b.payload_mut()[..8].copy_from_slice(&puts.to_le_bytes());
            b.put().map_err(|e| format!("sender put: {e}"))?;
            puts += 1;
            if rx.get_timeout(Timeout::After(interval)).is_ok() {
                break t0.elapsed();
            }
            if Instant::now() > deadline {
                return Err(format!("run {i}: no frame at B within 10 s of create_tx"));
            }
        };
        puts_total += puts;
        hist.record(latency.as_micros().max(1) as u64)
            .map_err(|e| format!("histogram: {e}"))?;
        drop(tx);
        drop(rx);
        wait_view(&view, "the link removed", |v| {
            !v.links.iter().any(|l| l.urn == urn)
        })?;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "runs": a.runs, "interval_us": a.interval_us, "provider": a.provider,
                "idle": a.idle, "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
                "max_ms": hist.max() as f64 / 1000.0, "min_ms": hist.min() as f64 / 1000.0,
                "puts_per_run": puts_total as f64 / f64::from(a.runs.max(1)),
            })
        );
    } else {
        println!(
            "mcm-perf agent: create_tx on engine A to the first frame at a receiver on engine B, \
             linked by the agent ({} link, {} lcores, a put every {} us)",
            a.provider, a.idle, a.interval_us
        );
        println!(
            "runs {}  min {:.2} ms  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  \
             ({:.1} puts a run)",
            a.runs,
            hist.min() as f64 / 1000.0,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            hist.max() as f64 / 1000.0,
            puts_total as f64 / f64::from(a.runs.max(1))
        );
    }
    Ok(())
}
