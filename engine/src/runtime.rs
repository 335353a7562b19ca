//! Start-up and shutdown of the whole engine.
//!
//! Order: signals first (so an early SIGTERM is never fatal), the shared-memory directory and a
//! memory probe, the lcores (pinned, behind a barrier), the control server's listeners, then the
//! control thread. Shutdown runs the same list backwards.

use std::io;

use mcm_control::agent::client::AgentClientConfig;
use mcm_control::grpc::proto::control::EngineInfo;
use mcm_control::mesh::MeshConfig;
use mcm_control::server::{ControlServer, GrpcConfig, ServerConfig, ServerError};
use mcm_proto::shm::map::{HugePages, MapError, MemKind, Region};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{EngineConfig, HugePagesName};
use crate::lcores::{Lcores, StartError, describe_idle};

/// Size of the start-up memory probe: one 2 MiB huge page.
const PROBE_LEN: usize = 2 << 20;

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Signal handlers could not be installed.
    #[error("cannot install SIGINT/SIGTERM handlers: {0}")]
    Signals(io::Error),
    /// The runtime directory cannot be created or trusted.
    #[error("memory.shm_dir: {0}")]
    ShmDir(#[from] crate::rundir::RunDirError),
    /// The directory of an `sdk.unix_socket` outside `memory.shm_dir` cannot be trusted.
    #[error("sdk.unix_socket: {0}")]
    SocketDir(crate::rundir::RunDirError),
    /// Shared memory of the configured kind is not available.
    #[error("memory.huge_pages: {0}")]
    Memory(#[from] MapError),
    /// The kernel cannot seal frame pools against writers, which keeps receivers read-only.
    #[error("frame pools: {0}")]
    Seal(String),
    /// The lcores could not start.
    #[error(transparent)]
    Lcores(#[from] StartError),
    /// The control server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The control thread could not be created or failed.
    #[error("control thread: {0}")]
    Control(io::Error),
}

/// Installs the log subscriber: `filter`, else `$RUST_LOG`, else `info`; to stderr.
pub fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .try_init();
    // gRPC core's own lines (TLS handshakes it refuses among them) go through the same log.
    mcm_control::grpc::corelog::install();
}

/// Signals whose handlers a linked library may have taken before `main`.
const INHERITED_SIGNALS: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Gives the signals back their default actions before the engine installs its own.
///
/// libfabric's psm provider links libinfinipath, whose constructor (run before `main`) installs
/// handlers for SIGINT, SIGTERM and the fatal signals that call `exit(1)`. The SIGINT/SIGTERM
/// handlers registered next would chain to it and turn a graceful stop into exit status 1 with
/// nothing cleaned up; a crash would exit 1 instead of dumping core. Ignored signals stay ignored
/// except SIGINT/SIGTERM, which the engine always handles.
fn restore_default_signal_actions() {
    for sig in INHERITED_SIGNALS {
        // SAFETY: single-threaded at this point (no engine thread exists yet); `signal` only
        // replaces the process's disposition for a valid signal number with SIG_DFL, and its
        // return value (the previous handler) is just compared.
        let previous = unsafe { libc::signal(sig, libc::SIG_DFL) };
        if previous == libc::SIG_IGN && sig != libc::SIGINT && sig != libc::SIGTERM {
            // SAFETY: as above; puts back the ignore the parent asked for.
            unsafe { libc::signal(sig, libc::SIG_IGN) };
        }
    }
}

/// Runs the engine until SIGINT or SIGTERM, then shuts down gracefully.
pub fn run(cfg: &EngineConfig) -> Result<(), RunError> {
    restore_default_signal_actions();
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(RunError::Signals)?;
    tracing::info!(
        "mcm-engine {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    let shm_dir = crate::rundir::RunDir::open(&cfg.shm_dir, cfg.shm_group)?;
    tracing::info!(
        "runtime directory {} ({}, {})",
        shm_dir.path().display(),
        if shm_dir.created() {
            "created"
        } else {
            "verified"
        },
        match cfg.shm_group {
            Some(g) => format!("mode 0750, group {g}"),
            None => "mode 0700".to_owned(),
        }
    );
    if shm_dir.stale_removed() > 0 {
        tracing::info!(
            "memory.shm_dir: removed {} file(s) a previous engine left",
            shm_dir.stale_removed()
        );
    }
    if let Some(parent) = cfg.sdk_unix.parent()
        && parent != cfg.shm_dir
    {
        crate::rundir::check_ancestors(parent).map_err(RunError::SocketDir)?;
    }
    probe_memory(cfg.huge_pages)?;
    let lcores = Lcores::start(cfg)?;
    for cpu in lcores.cpus() {
        tracing::info!(
            "lcore mcm-lcore-{cpu} pinned to CPU {cpu}, idle policy {}",
            describe_idle(cfg.idle)
        );
    }
    let server_cfg = ServerConfig {
        tcp: cfg.sdk_tcp,
        unix: cfg.sdk_unix.clone(),
        stats_interval: cfg.stats_interval,
        handshake_timeout: cfg.handshake_timeout,
        max_sessions: cfg.max_sessions,
        unix_access: cfg.unix_access.clone(),
        access: cfg.sdk_access.clone(),
        keepalive_timeout: cfg.keepalive_timeout,
        idle_timeout: cfg.idle_timeout,
        frame_timeout: cfg.frame_timeout,
        activate_timeout: cfg.activate_timeout,
        max_waiting_per_peer: cfg.max_waiting_per_peer,
        mesh: MeshConfig {
            huge_pages: huge_pages(cfg.huge_pages),
            max_sinks_per_group: cfg.max_sinks_per_group,
            max_conns_per_session: cfg.max_connections_per_client,
            unix_path: cfg.sdk_unix.display().to_string(),
            links: cfg.rdma.links.clone(),
        },
        grpc: Some(GrpcConfig {
            addr: cfg.grpc,
            info: engine_info(cfg, &lcores),
            security: cfg.grpc_security.clone(),
        }),
        agent: cfg.agent.as_ref().map(|a| AgentClientConfig {
            addr: a.addr.clone(),
            name: a.name.clone(),
            security: a.security.clone(),
        }),
    };
    let (server, shutdown) = ControlServer::bind(server_cfg, Box::new(lcores))?;
    let tcp = server.tcp_addr().map_err(RunError::Control)?;
    tracing::info!("TCP Server listening on {tcp}");
    tracing::info!("Unix socket listening on {}", server.unix_path().display());
    if let Some(addr) = server.grpc_addr() {
        tracing::info!(
            "gRPC Server listening on {addr} ({})",
            cfg.grpc_security.describe()
        );
    }
    let control_cpu = cfg.control_cpu;
    let closer = signals.handle();
    let control = std::thread::Builder::new()
        .name("mcm-control".into())
        .spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: control_cpu }) {
                tracing::warn!("control.cpu: cannot pin the control thread to CPU {control_cpu}; running unpinned");
            }
            let res = server.run();
            // Wakes the main thread if the loop ended on its own (an error), not by a signal.
            closer.close();
            res
        })
        .map_err(RunError::Control)?;
    tracing::info!(
        "control thread pinned to CPU {control_cpu}; engine running (SIGINT/SIGTERM to stop)"
    );
    if let Some(sig) = signals.forever().next() {
        let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
        tracing::info!("{name} received: stopping");
    }
    shutdown.shutdown();
    let res = control
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("control thread panicked")));
    drop(shm_dir);
    res.map_err(RunError::Control)?;
    tracing::info!("mcm-engine stopped");
    Ok(())
}

/// What the control plane's GetInfo says of this engine (its fixed part).
fn engine_info(cfg: &EngineConfig, lcores: &Lcores) -> EngineInfo {
    let rdma = &cfg.rdma;
    EngineInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sdk_tcp: cfg.sdk_tcp.to_string(),
        sdk_unix: cfg.sdk_unix.display().to_string(),
        lcores: lcores.cpus().into_iter().map(|c| c as u32).collect(),
        idle_policy: describe_idle(cfg.idle),
        huge_pages: match cfg.huge_pages {
            HugePagesName::On => "on",
            HugePagesName::Off => "off",
            HugePagesName::Auto => "auto",
        }
        .to_owned(),
        transports: [
            "sdk",
            "st2110-20",
            "st2110-22",
            "st2110-30",
            "st2110-40",
            "rdma",
        ]
        .map(str::to_owned)
        .to_vec(),
        st2110_backend: "kernel".to_owned(),
        st2110_local_ip: cfg.st2110.local_ip.to_string(),
        rdma_ip: rdma.ip.to_string(),
        rdma_port_first: u32::from(*rdma.ports.start()),
        rdma_port_last: u32::from(*rdma.ports.end()),
        rdma_providers: crate::transport::rdma::providers(rdma.ip),
        max_sessions: cfg.max_sessions as u32,
        max_sinks_per_group: cfg.max_sinks_per_group,
        ..EngineInfo::default()
    }
}

/// The memory policy for the configured name.
fn huge_pages(mode: HugePagesName) -> HugePages {
    match mode {
        HugePagesName::On => HugePages::On,
        HugePagesName::Off => HugePages::Off,
        HugePagesName::Auto => HugePages::Auto,
    }
}

/// Checks that pools of the configured kind can be created, and logs which kind is used.
fn probe_memory(mode: HugePagesName) -> Result<(), RunError> {
    let probe = Region::create("mcm-probe", PROBE_LEN, huge_pages(mode))?;
    // Receivers are read-only only because the kernel enforces the write seal, even on an fd
    // reopened read-write: checked once here, not trusted.
    probe.seal(true).map_err(|e| {
        RunError::Seal(format!(
            "this kernel cannot seal memory against writers (F_SEAL_FUTURE_WRITE needs Linux \
             5.1 or later): {e}"
        ))
    })?;
    if let Some(what) = mcm_proto::shm::map::probe_write_seal(&probe) {
        return Err(RunError::Seal(format!(
            "this kernel let a sealed memfd reopened read-write make {what}; receivers could \
             write frames"
        )));
    }
    match (probe.kind(), probe.huge_fallback()) {
        (MemKind::Huge2M, _) => {
            tracing::info!("memory: frame pools on 2 MiB huge pages (memfd, MFD_HUGETLB)")
        }
        (MemKind::Normal, Some(why)) => {
            tracing::info!(
                "memory: huge pages unavailable ({why}); frame pools on normal pages (memfd)"
            )
        }
        (MemKind::Normal, None) => {
            tracing::info!("memory: frame pools on normal pages (memfd; huge pages off)")
        }
    }
    Ok(())
}
