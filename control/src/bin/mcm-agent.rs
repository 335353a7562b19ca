//! `mcm-agent`: the cluster's agent. Engines started with `-a/--agent <this address>` register
//! with it, and it joins each group across engines with RDMA links (see `mcm_control::agent`).
//! Runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mcm_control::agent::{Agent, AgentConfig};
use mcm_control::security::{ServerSecurity, ServerTls, read_token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The mcm cluster agent: knows every engine, joins groups across engines with RDMA links.
#[derive(Debug, Parser)]
#[command(name = "mcm-agent", version)]
struct Cli {
    /// Listen address (loopback by default; MCM's agent uses port 50051).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// How often engines report, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    heartbeat_ms: u64,
    /// An engine silent this many heartbeats is forgotten and its links removed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100))]
    missed_heartbeats: u32,
    /// libfabric provider of the links.
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "shm", "verbs"])]
    provider: String,
    /// TLS certificate chain (PEM); with --tls-key, the agent speaks TLS only.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA that must have signed each engine's client certificate (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// A file whose first line is the bearer token every engine must send.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace); default: $RUST_LOG, else info.
    #[arg(short = 'l', long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.log_level {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    mcm_control::grpc::corelog::install();
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcm-agent: cannot install SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let token = match &cli.token_file {
        Some(p) => match read_token("--token-file", p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("mcm-agent: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let security = ServerSecurity {
        tls: match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: cli.tls_client_ca.clone(),
            }),
            _ => None,
        },
        token,
    };
    let described = security.describe();
    let heartbeat = Duration::from_millis(cli.heartbeat_ms);
    let cfg = AgentConfig {
        addr: cli.addr,
        heartbeat,
        timeout: heartbeat * cli.missed_heartbeats,
        provider: cli.provider.clone(),
        security,
    };
    let agent = match Agent::start(cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcm-agent: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        "mcm-agent {} listening on {} ({described}; heartbeat {} ms, links over {})",
        env!("CARGO_PKG_VERSION"),
        agent.addr(),
        cli.heartbeat_ms,
        cli.provider
    );
    if let Some(sig) = signals.forever().next() {
        let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
        tracing::info!("{name} received: stopping (engines keep their links)");
    }
    agent.stop();
    ExitCode::SUCCESS
}
