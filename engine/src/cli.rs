//! Command-line flags. Every flag overrides the matching key of the configuration file.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, ConfigError, EngineConfig, HugePagesName, IdleName, Overrides};

/// mcm-engine: the mcm media mesh data plane (one per node).
#[derive(Debug, Parser)]
#[command(name = "mcm-engine", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults (those of configs/cores.toml).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SDK API TCP port or IP:PORT (MCM-compatible; overrides sdk.tcp).
    #[arg(short = 't', long = "sdk", value_name = "PORT|IP:PORT")]
    pub sdk: Option<String>,
    /// gRPC control-plane port or IP:PORT (MCM-compatible; overrides grpc.addr).
    #[arg(short = 'g', long = "grpc", value_name = "PORT|IP:PORT")]
    pub grpc: Option<String>,
    /// CPUs that run lcores, comma-separated (overrides lcores.cpus).
    #[arg(long, value_name = "CPU,...", value_delimiter = ',')]
    pub lcores: Option<Vec<usize>>,
    /// CPU of the control thread (overrides control.cpu).
    #[arg(long, value_name = "CPU")]
    pub control_cpu: Option<usize>,
    /// Idle policy of the lcores (overrides lcores.idle).
    #[arg(long, value_enum)]
    pub idle: Option<IdleName>,
    /// SDK Unix socket path (overrides sdk.unix_socket).
    #[arg(long, value_name = "PATH")]
    pub unix_socket: Option<String>,
    /// Shared-memory directory (overrides memory.shm_dir).
    #[arg(long, value_name = "DIR")]
    pub shm_dir: Option<String>,
    /// Huge pages for frame pools (overrides memory.huge_pages).
    #[arg(long, value_enum)]
    pub huge_pages: Option<HugePagesName>,
    /// Stats log period in milliseconds, 0 to disable (overrides control.stats_interval_ms).
    #[arg(long, value_name = "MS")]
    pub stats_interval_ms: Option<u64>,
    /// ST 2110 device: `kernel:<interface>` (MCM-compatible; overrides st2110.interface).
    #[arg(
        short = 'd',
        long = "st2110_dev",
        visible_alias = "dev",
        value_name = "kernel:IF"
    )]
    pub st2110_dev: Option<String>,
    /// ST 2110 data-plane IPv4 address (MCM-compatible; overrides st2110.local_ip).
    #[arg(
        short = 'i',
        long = "st2110_ip",
        visible_alias = "ip",
        value_name = "IP"
    )]
    pub st2110_ip: Option<String>,
    /// RDMA links' interface address (MCM-compatible; overrides rdma.ip).
    #[arg(short = 'r', long = "rdma_ip", value_name = "IP")]
    pub rdma_ip: Option<String>,
    /// Ports receiving RDMA links listen on, `FIRST-LAST` (MCM-compatible; overrides rdma.ports).
    #[arg(short = 'p', long = "rdma_ports", value_name = "FIRST-LAST")]
    pub rdma_ports: Option<String>,
    /// The cluster's agent, host:port (MCM-compatible; overrides agent.addr).
    #[arg(short = 'a', long = "agent", value_name = "HOST:PORT")]
    pub agent: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive); default: $RUST_LOG, else info.
    #[arg(short = 'l', long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub check: bool,
}

impl Cli {
    /// Reads the file (if any), applies the flags, and validates the result.
    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let mut file = match &self.config {
            Some(path) => config::load(path).map_err(|e| ConfigError {
                key: e.key,
                message: format!("{} (in {})", e.message, path.display()),
            })?,
            None => config::ConfigFile::default(),
        };
        self.overrides().apply(&mut file)?;
        EngineConfig::from_file(&file)
    }

    fn overrides(&self) -> Overrides {
        Overrides {
            sdk: self.sdk.clone(),
            grpc: self.grpc.clone(),
            lcores: self.lcores.clone(),
            control_cpu: self.control_cpu,
            idle: self.idle,
            unix_socket: self.unix_socket.clone(),
            shm_dir: self.shm_dir.clone(),
            huge_pages: self.huge_pages,
            stats_interval_ms: self.stats_interval_ms,
            st2110_dev: self.st2110_dev.clone(),
            st2110_ip: self.st2110_ip.clone(),
            rdma_ip: self.rdma_ip.clone(),
            rdma_ports: self.rdma_ports.clone(),
            agent: self.agent.clone(),
        }
    }
}
