//! Configuration: the TOML file's serde types, command-line overrides, and validation into the
//! runtime [`EngineConfig`].
//!
//! File types mirror `configs/cores.toml` and reject unknown keys. [`EngineConfig::from_file`]
//! checks every value against this machine (CPUs that exist, addresses that parse, paths that
//! fit) and fails with a [`ConfigError`] naming the key, the value and what is allowed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_UNIX_PATH: usize = 107;

/// A configuration value that is wrong, with the key it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted key path (`lcores.cpus`), or the file name for syntax errors.
    pub key: String,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[lcores]`: data-plane worker threads.
    #[serde(default)]
    pub lcores: LcoresFile,
    /// `[control]`: the control thread.
    #[serde(default)]
    pub control: ControlFile,
    /// `[sdk]`: SDK endpoints.
    #[serde(default)]
    pub sdk: SdkFile,
    /// `[grpc]`: control-plane endpoint.
    #[serde(default)]
    pub grpc: GrpcFile,
    /// `[memory]`: shared memory.
    #[serde(default)]
    pub memory: MemoryFile,
    /// `[st2110]`: ST 2110 sessions.
    #[serde(default)]
    pub st2110: St2110File,
    /// `[rdma]`: links between engines.
    #[serde(default)]
    pub rdma: RdmaFile,
    /// `[agent]`: the cluster's agent.
    #[serde(default)]
    pub agent: AgentFile,
}

/// `[agent]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFile {
    /// The agent's `host:port` (MCM's agent listens on 50051); empty: no agent.
    pub addr: String,
    /// This engine's name in the cluster; empty: `<hostname>:<gRPC port>`.
    pub name: String,
    /// CA that signed the agent's certificate; set: the agent is reached over TLS.
    pub tls_ca: String,
    /// This engine's client certificate and key (PEM), for an agent that requires mutual TLS.
    pub tls_cert: String,
    /// The key of `tls_cert`.
    pub tls_key: String,
    /// A file whose first line is the agent's bearer token.
    pub token_file: String,
}

/// How an lcore behaves when none of its ports has work.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IdleName {
    /// Spin forever: lowest latency, one full core per lcore (bare metal, isolated cores).
    Busy,
    /// Spin for `spin_us`, then park until woken (laptops, CI, shared machines).
    #[default]
    Adaptive,
}

/// Whether pools use huge pages.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HugePagesName {
    /// Always; start-up fails if none are reserved.
    On,
    /// Never.
    Off,
    /// When available, otherwise normal pages (logged).
    #[default]
    Auto,
}

/// `[lcores]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LcoresFile {
    /// CPUs that run one lcore each.
    pub cpus: Vec<usize>,
    /// Idle policy.
    pub idle: IdleName,
    /// `adaptive`: how long an idle lcore spins before parking, in microseconds.
    pub spin_us: u64,
    /// `adaptive`: an lcore whose next deadline (an ST 2110 pacer's next packet) is nearer than
    /// this many microseconds spins instead of parking, and a park ends this long before the
    /// deadline: waking from a nap is late by tens of µs typically and by hundreds at worst.
    pub wake_margin_us: u64,
    /// Most work items one port may do per poll.
    pub budget: u32,
    /// Capacity of each lcore's command ring.
    pub command_ring: usize,
}

impl Default for LcoresFile {
    fn default() -> Self {
        Self {
            cpus: vec![1],
            idle: IdleName::Adaptive,
            spin_us: 200,
            wake_margin_us: 1000,
            budget: 64,
            command_ring: 256,
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlFile {
    /// CPU the control thread is pinned to.
    pub cpu: usize,
    /// Period of the stats log line, in milliseconds; 0 disables it.
    pub stats_interval_ms: u64,
}

impl Default for ControlFile {
    fn default() -> Self {
        Self {
            cpu: 0,
            stats_interval_ms: 10_000,
        }
    }
}

/// `[sdk]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SdkFile {
    /// TCP listen address (MCM's default port is 8002).
    pub tcp: String,
    /// Unix socket path; default `<memory.shm_dir>/sdk.sock`.
    pub unix_socket: Option<String>,
    /// A client must say Hello within this many milliseconds of connecting.
    pub handshake_timeout_ms: u64,
    /// Most concurrent SDK sessions.
    pub max_sessions: usize,
    /// Most receivers one multipoint group may have; sizes each group's frame pool.
    pub max_sinks_per_group: u32,
    /// Most connections one SDK client may have.
    pub max_connections_per_client: usize,
    /// Permission bits of the Unix socket file (who may connect at all), e.g. `0o660`.
    pub unix_socket_mode: u32,
    /// Unix socket peers whose uid is listed are served (`SO_PEERCRED`). With both lists
    /// empty: the engine's own uid and gid, and root.
    pub allowed_uids: Vec<u32>,
    /// Unix socket peers whose primary gid is listed are served.
    pub allowed_gids: Vec<u32>,
    /// A file of `<identity> <token>` lines; when set, a TCP client's Hello must carry one of
    /// the tokens (its identity for quotas). Empty: TCP clients need none.
    pub access_tokens_file: String,
    /// Most sessions one client identity (uid on the Unix socket, token on TCP) may have.
    pub max_sessions_per_identity: usize,
    /// Most connections one client identity may hold.
    pub max_connections_per_identity: usize,
    /// Most groups one client identity may hold connections in.
    pub max_groups_per_identity: usize,
    /// A session holding connections that the engine has not heard from for this many
    /// milliseconds is closed and its connections deleted (the SDK sends a Keepalive every
    /// third of it). 0: never.
    pub keepalive_timeout_ms: u64,
    /// A session holding no connection that the engine has not heard from for this many
    /// milliseconds is closed (the SDK's keepalives count). 0: never.
    pub idle_timeout_ms: u64,
    /// A client that begins a frame must send the rest within this many milliseconds.
    pub frame_timeout_ms: u64,
    /// A connection not activated this many milliseconds after its creation is deleted (over
    /// TCP: its fds were never fetched).
    pub activate_timeout_ms: u64,
    /// Most clients of one peer (TCP address, Unix uid) that have not said Hello yet.
    pub max_waiting_per_peer: usize,
}

impl Default for SdkFile {
    fn default() -> Self {
        Self {
            tcp: "127.0.0.1:8002".into(),
            unix_socket: None,
            handshake_timeout_ms: 10_000,
            max_sessions: 1024,
            max_sinks_per_group: 16,
            max_connections_per_client: 256,
            unix_socket_mode: 0o660,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            access_tokens_file: String::new(),
            max_sessions_per_identity: 256,
            max_connections_per_identity: 1024,
            max_groups_per_identity: 256,
            keepalive_timeout_ms: 15_000,
            idle_timeout_ms: 30_000,
            frame_timeout_ms: 5_000,
            activate_timeout_ms: 10_000,
            max_waiting_per_peer: 64,
        }
    }
}

/// `[grpc]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcFile {
    /// Listen address of the control-plane service (MCM's default port is 8001).
    pub addr: String,
    /// TLS certificate chain (PEM); with `tls_key`, the service speaks TLS only.
    pub tls_cert: String,
    /// TLS private key (PEM).
    pub tls_key: String,
    /// CA that must have signed a client's certificate (mutual TLS); needs `tls_cert`.
    pub tls_client_ca: String,
    /// A file whose first line is the bearer token every call must carry (health checks
    /// excepted).
    pub token_file: String,
}

impl Default for GrpcFile {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8001".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            token_file: String::new(),
        }
    }
}

/// `[memory]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryFile {
    /// The engine's private runtime directory (SDK socket, SDP files, its lock): created with
    /// mode 0700 if missing; an existing one must be the engine user's and writable by nobody
    /// else. Default: `/run/mcm` for root, `$XDG_RUNTIME_DIR/mcm` or `/tmp/mcm-<uid>` otherwise.
    pub shm_dir: String,
    /// A group (name or number) whose members may reach the SDK socket: the directory becomes
    /// 0750 and the socket file belongs to that group. Empty: none.
    pub group: String,
    /// Huge pages for frame pools.
    pub huge_pages: HugePagesName,
}

impl Default for MemoryFile {
    fn default() -> Self {
        Self {
            shm_dir: crate::rundir::default_for_this_user().display().to_string(),
            group: String::new(),
            huge_pages: HugePagesName::Auto,
        }
    }
}

/// `[rdma]`: where this engine's RDMA links listen (MCM's `-r/--rdma_ip`, `-p/--rdma_ports`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RdmaFile {
    /// Address of the interface links use: receiving links listen on it, and libfabric opens
    /// its endpoints there (`tcp`, `verbs`).
    pub ip: String,
    /// Ports receiving links listen on (`"FIRST-LAST"`); a link with no port of its own takes
    /// the first free one.
    pub ports: String,
    /// `[[rdma.link]]`: links of groups, applied to every connection of their group.
    pub link: Vec<RdmaLinkFile>,
}

impl Default for RdmaFile {
    fn default() -> Self {
        Self {
            ip: "127.0.0.1".into(),
            ports: "9100-9999".into(),
            link: Vec::new(),
        }
    }
}

/// `[[rdma.link]]`: one end of a link between this engine and another, for one group. The
/// link is an edge of the group while the group has a connection here, as if every
/// connection's `multipointGroup.edges` named it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RdmaLinkFile {
    /// The group's URN.
    pub urn: String,
    /// `"tx"`: this engine writes the group's frames to `peer`; `"rx"`: it listens on `port`
    /// and the group's frames come from the peer.
    pub direction: String,
    /// Tx: the receiving engine's link address, `"IP:PORT"`.
    pub peer: Option<String>,
    /// Rx: the port to listen on (the peer names it).
    pub port: Option<u16>,
    /// libfabric provider: `"tcp"` (default), `"shm"` or `"verbs"`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Endpoints the frames are striped over, 1..=8 (default 1).
    #[serde(default = "default_endpoints")]
    pub endpoints: u8,
}

fn default_provider() -> String {
    "tcp".into()
}

fn default_endpoints() -> u8 {
    1
}

/// The validated `[rdma]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaSettings {
    /// The links' interface address.
    pub ip: std::net::IpAddr,
    /// Ports receiving links may listen on.
    pub ports: std::ops::RangeInclusive<u16>,
    /// `[[rdma.link]]`: the links each group's connections get, by URN.
    pub links: Vec<(String, mcm_proto::config::transport::Edge)>,
}

/// `[st2110]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct St2110File {
    /// Packet I/O backend: `"kernel"` (UDP sockets). MCM's `-d kernel:<interface>` sets it.
    pub backend: String,
    /// Interface ST 2110 traffic uses (multicast joins and sends go through it).
    pub interface: String,
    /// IPv4 address of that interface: the source of tx streams, where unicast rx listens.
    /// MCM's `-i/--st2110_ip` sets it.
    pub local_ip: String,
    /// Source UDP ports of tx sessions, `"FIRST-LAST"`.
    pub tx_ports: String,
    /// UDP ports rx sessions may listen on, `"FIRST-LAST"`.
    pub rx_ports: String,
    /// DSCP of video and ancillary streams (0..=63; 34 = AF41).
    pub dscp_video: u8,
    /// DSCP of audio streams (0..=63; 46 = EF, as AES67 recommends).
    pub dscp_audio: u8,
    /// Socket buffer size per session, bytes.
    pub socket_buffer_bytes: usize,
    /// TTL of sent multicast.
    pub multicast_ttl: u8,
    /// Use UDP GSO on tx when the kernel has it.
    pub gso: bool,
    /// Microseconds an rx session waits, after finding its socket empty, before reading it
    /// again (0..=1000; 0 reads on every lcore iteration). Fewer, larger `recvmmsg` calls for
    /// at most this much added latency.
    pub rx_read_interval_us: u32,
    /// ST 2022-7: the interface of sessions' second paths (`redundant` in a connection's
    /// `st2110`); empty: the first path's interface.
    pub redundant_interface: String,
    /// IPv4 address of `redundant_interface`: the source of second-path tx streams, where
    /// second-path unicast rx listens. Required with `redundant_interface`.
    pub redundant_local_ip: String,
    /// ST 2022-7 rx: how long (µs, 100..=100000) the merge waits for one path to bring a
    /// packet the other lost before it gives the packet up: the largest delay between the two
    /// paths that stays seamless.
    pub redundancy_window_us: u32,
}

impl Default for St2110File {
    fn default() -> Self {
        Self {
            backend: "kernel".into(),
            interface: "lo".into(),
            local_ip: "127.0.0.1".into(),
            tx_ports: "20000-20999".into(),
            rx_ports: "1024-65535".into(),
            dscp_video: 34,
            dscp_audio: 46,
            socket_buffer_bytes: 32 << 20,
            multicast_ttl: 32,
            gso: true,
            rx_read_interval_us: 25,
            redundant_interface: String::new(),
            redundant_local_ip: String::new(),
            redundancy_window_us: 10_000,
        }
    }
}

/// Idle policy of every lcore, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Never park.
    Busy,
    /// Park after spinning idle for `spin`.
    Adaptive {
        /// Idle time before parking.
        spin: Duration,
    },
}

/// The validated configuration the engine runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// One lcore per CPU, in this order.
    pub lcore_cpus: Vec<usize>,
    /// Idle policy of the lcores.
    pub idle: IdlePolicy,
    /// Work budget per port poll.
    pub budget: u32,
    /// How long before a port's deadline a parked lcore wakes (and nearer than which it spins).
    pub wake_margin: Duration,
    /// Command ring capacity per lcore.
    pub command_ring: usize,
    /// CPU of the control thread.
    pub control_cpu: usize,
    /// Stats period; `None` when disabled.
    pub stats_interval: Option<Duration>,
    /// SDK TCP address.
    pub sdk_tcp: SocketAddr,
    /// SDK Unix socket path.
    pub sdk_unix: PathBuf,
    /// Hello deadline.
    pub handshake_timeout: Duration,
    /// Session limit.
    pub max_sessions: usize,
    /// Receivers per group.
    pub max_sinks_per_group: u32,
    /// Connections per SDK client.
    pub max_connections_per_client: usize,
    /// Unix socket file mode, and the peers it serves.
    pub unix_access: mcm_control::server::UnixAccess,
    /// TCP access tokens and per-identity quotas.
    pub sdk_access: mcm_control::access::AccessConfig,
    /// SDK keepalive timeout; `None`: none.
    pub keepalive_timeout: Option<Duration>,
    /// Idle session timeout; `None`: none.
    pub idle_timeout: Option<Duration>,
    /// Partial frame deadline.
    pub frame_timeout: Duration,
    /// Activation deadline of a connection.
    pub activate_timeout: Duration,
    /// Clients per peer before Hello.
    pub max_waiting_per_peer: usize,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Shared-memory directory.
    pub shm_dir: PathBuf,
    /// The group that may enter it and reach the SDK socket (`memory.group`).
    pub shm_group: Option<u32>,
    /// Huge page policy.
    pub huge_pages: HugePagesName,
    /// ST 2110 sessions.
    pub st2110: crate::transport::st2110::Settings,
    /// RDMA links.
    pub rdma: RdmaSettings,
    /// TLS and token of the gRPC service.
    pub grpc_security: mcm_control::security::ServerSecurity,
    /// The agent; `None`: none.
    pub agent: Option<AgentSettings>,
}

/// `[agent]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// The agent's `host:port`.
    pub addr: String,
    /// This engine's name there; empty: the default.
    pub name: String,
    /// How the agent is reached.
    pub security: mcm_control::security::ClientSecurity,
}

/// Parses TOML text into the file types; errors name the key and the line.
pub fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error("", text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        toml_error(&key, text, e.inner())
    })
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let msg = format!(
            "cannot read {}: {e} (allowed: a readable TOML file)",
            path.display()
        );
        ConfigError::new("--config", msg)
    })?;
    parse(&text)
}

fn toml_error(key: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let message = match line {
        Some(l) => format!("{} (line {l})", e.message().trim_end()),
        None => e.message().trim_end().to_owned(),
    };
    let key = if key.is_empty() || key == "." {
        "config"
    } else {
        key
    };
    ConfigError::new(key, message.replace('\n', " "))
}

/// Overrides from the command line, applied on top of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-t/--sdk`: a port number or an `IP:PORT`.
    pub sdk: Option<String>,
    /// `-g/--grpc`: a port number or an `IP:PORT`.
    pub grpc: Option<String>,
    /// `--lcores`.
    pub lcores: Option<Vec<usize>>,
    /// `--control-cpu`.
    pub control_cpu: Option<usize>,
    /// `--idle`.
    pub idle: Option<IdleName>,
    /// `--unix-socket`.
    pub unix_socket: Option<String>,
    /// `--shm-dir`.
    pub shm_dir: Option<String>,
    /// `--huge-pages`.
    pub huge_pages: Option<HugePagesName>,
    /// `--stats-interval-ms`.
    pub stats_interval_ms: Option<u64>,
    /// `-d/--st2110_dev`: `kernel:<interface>`.
    pub st2110_dev: Option<String>,
    /// `-i/--st2110_ip`.
    pub st2110_ip: Option<String>,
    /// `-r/--rdma_ip`.
    pub rdma_ip: Option<String>,
    /// `-p/--rdma_ports`.
    pub rdma_ports: Option<String>,
    /// `-a/--agent`: the agent's `host:port`.
    pub agent: Option<String>,
}

impl Overrides {
    /// Applies the overrides to `file`.
    pub fn apply(&self, file: &mut ConfigFile) -> Result<(), ConfigError> {
        if let Some(v) = &self.sdk {
            file.sdk.tcp = port_or_addr("sdk.tcp", &file.sdk.tcp, v)?;
        }
        if let Some(v) = &self.grpc {
            file.grpc.addr = port_or_addr("grpc.addr", &file.grpc.addr, v)?;
        }
        if let Some(v) = &self.agent {
            file.agent.addr.clone_from(v);
        }
        set(&mut file.lcores.cpus, &self.lcores);
        set(&mut file.control.cpu, &self.control_cpu);
        set(&mut file.lcores.idle, &self.idle);
        set(&mut file.memory.shm_dir, &self.shm_dir);
        set(&mut file.memory.huge_pages, &self.huge_pages);
        set(&mut file.control.stats_interval_ms, &self.stats_interval_ms);
        if self.unix_socket.is_some() {
            file.sdk.unix_socket.clone_from(&self.unix_socket);
        }
        if let Some(dev) = &self.st2110_dev {
            let Some(interface) = dev.strip_prefix("kernel:") else {
                let msg = format!(
                    "`{dev}` is not a device of this build (allowed: kernel:<interface>, e.g. \
                     kernel:eth0; PCI addresses and native_af_xdp: need the DPDK and AF_XDP backends)"
                );
                return Err(ConfigError::new("st2110.interface", msg));
            };
            file.st2110.backend = "kernel".into();
            file.st2110.interface = interface.into();
        }
        set(&mut file.st2110.local_ip, &self.st2110_ip);
        set(&mut file.rdma.ip, &self.rdma_ip);
        set(&mut file.rdma.ports, &self.rdma_ports);
        Ok(())
    }
}

fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
    if let Some(v) = src {
        *dst = v.clone();
    }
}

/// MCM's flags take a bare port; we also accept `IP:PORT`. A bare port keeps the file's IP.
fn port_or_addr(key: &str, current: &str, value: &str) -> Result<String, ConfigError> {
    let Ok(port) = value.parse::<u16>() else {
        return Ok(value.to_owned());
    };
    let mut addr = parse_addr(key, current)?;
    addr.set_port(port);
    Ok(addr.to_string())
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        let msg = format!("`{value}` is not a socket address (allowed: IP:PORT, e.g. 127.0.0.1:8002 or [::1]:8002)");
        ConfigError::new(key, msg)
    })
}

impl EngineConfig {
    /// Validates `file` against this machine's CPUs.
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let available: BTreeSet<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        Self::validate(file, &available)
    }

    /// Validates `file` against an explicit set of usable CPUs.
    pub fn validate(file: &ConfigFile, available: &BTreeSet<usize>) -> Result<Self, ConfigError> {
        let lcore_cpus = validate_cpus(&file.lcores.cpus, available)?;
        let control_cpu = validate_cpu("control.cpu", file.control.cpu, available)?;
        let idle = validate_idle(&file.lcores)?;
        if idle == IdlePolicy::Busy && lcore_cpus.contains(&control_cpu) {
            let msg = format!(
                "CPU {control_cpu} also runs a busy-polling lcore, which never yields and would starve \
                 the control thread (allowed: a CPU not in lcores.cpus, or lcores.idle = \"adaptive\")"
            );
            return Err(ConfigError::new("control.cpu", msg));
        }
        let budget = in_range("lcores.budget", file.lcores.budget as u64, 1, 4096)? as u32;
        let wake_margin = Duration::from_micros(in_range(
            "lcores.wake_margin_us",
            file.lcores.wake_margin_us,
            0,
            100_000,
        )?);
        let command_ring = in_range(
            "lcores.command_ring",
            file.lcores.command_ring as u64,
            2,
            65536,
        )? as usize;
        let sdk_tcp = parse_addr("sdk.tcp", &file.sdk.tcp)?;
        let grpc = parse_addr("grpc.addr", &file.grpc.addr)?;
        if grpc == sdk_tcp && sdk_tcp.port() != 0 {
            let msg = format!("{grpc} is also sdk.tcp (allowed: a different address or port)");
            return Err(ConfigError::new("grpc.addr", msg));
        }
        let shm_dir = validate_shm_dir(&file.memory.shm_dir)?;
        let shm_group = validate_group(&file.memory.group)?;
        let sdk_unix = match &file.sdk.unix_socket {
            Some(p) => PathBuf::from(p),
            None => shm_dir.join("sdk.sock"),
        };
        validate_unix_path(&sdk_unix)?;
        let handshake_ms = in_range(
            "sdk.handshake_timeout_ms",
            file.sdk.handshake_timeout_ms,
            100,
            600_000,
        )?;
        let max_sessions =
            in_range("sdk.max_sessions", file.sdk.max_sessions as u64, 1, 65536)? as usize;
        if file.sdk.unix_socket_mode & !0o777 != 0 || file.sdk.unix_socket_mode & 0o600 != 0o600 {
            let msg = format!(
                "{:#o} is not allowed (allowed: permission bits within 0o777 that let the owner \
                 read and write, e.g. 0o660 or 0o600)",
                file.sdk.unix_socket_mode
            );
            return Err(ConfigError::new("sdk.unix_socket_mode", msg));
        }
        let max_sinks_per_group = in_range(
            "sdk.max_sinks_per_group",
            u64::from(file.sdk.max_sinks_per_group),
            1,
            crate::group::MAX_SINKS as u64,
        )? as u32;
        let max_connections_per_client = in_range(
            "sdk.max_connections_per_client",
            file.sdk.max_connections_per_client as u64,
            1,
            65536,
        )? as usize;
        let sdk_access = validate_sdk_access(&file.sdk)?;
        let keepalive_ms = file.sdk.keepalive_timeout_ms;
        if keepalive_ms != 0 {
            in_range("sdk.keepalive_timeout_ms", keepalive_ms, 300, 3_600_000)?;
        }
        let idle_ms = file.sdk.idle_timeout_ms;
        if idle_ms != 0 {
            in_range("sdk.idle_timeout_ms", idle_ms, 300, 86_400_000)?;
        }
        let frame_ms = in_range(
            "sdk.frame_timeout_ms",
            file.sdk.frame_timeout_ms,
            100,
            600_000,
        )?;
        let activate_ms = in_range(
            "sdk.activate_timeout_ms",
            file.sdk.activate_timeout_ms,
            100,
            600_000,
        )?;
        let stats_ms = file.control.stats_interval_ms;
        if stats_ms != 0 {
            in_range("control.stats_interval_ms", stats_ms, 100, 86_400_000)?;
        }
        Ok(Self {
            lcore_cpus,
            idle,
            budget,
            wake_margin,
            command_ring,
            control_cpu,
            stats_interval: (stats_ms != 0).then(|| Duration::from_millis(stats_ms)),
            sdk_tcp,
            sdk_unix,
            handshake_timeout: Duration::from_millis(handshake_ms),
            max_sessions,
            unix_access: mcm_control::server::UnixAccess {
                mode: file.sdk.unix_socket_mode,
                uids: file.sdk.allowed_uids.clone(),
                gids: file.sdk.allowed_gids.clone(),
                group: shm_group,
            },
            max_sinks_per_group,
            max_connections_per_client,
            sdk_access,
            keepalive_timeout: (keepalive_ms != 0).then(|| Duration::from_millis(keepalive_ms)),
            idle_timeout: (idle_ms != 0).then(|| Duration::from_millis(idle_ms)),
            frame_timeout: Duration::from_millis(frame_ms),
            activate_timeout: Duration::from_millis(activate_ms),
            max_waiting_per_peer: in_range(
                "sdk.max_waiting_per_peer",
                file.sdk.max_waiting_per_peer as u64,
                1,
                65536,
            )? as usize,
            grpc,
            st2110: validate_st2110(&file.st2110, &shm_dir)?,
            rdma: validate_rdma(&file.rdma)?,
            grpc_security: validate_grpc_security(&file.grpc)?,
            agent: validate_agent(&file.agent)?,
            shm_dir,
            shm_group,
            huge_pages: file.memory.huge_pages,
        })
    }
}

fn validate_sdk_access(f: &SdkFile) -> Result<mcm_control::access::AccessConfig, ConfigError> {
    let tokens = match f.access_tokens_file.as_str() {
        "" => None,
        p => Some(
            mcm_control::access::AccessTokens::load("sdk.access_tokens_file", Path::new(p))
                .map_err(|e| {
                    let msg = e.trim_start_matches("sdk.access_tokens_file: ").to_owned();
                    ConfigError::new("sdk.access_tokens_file", msg)
                })?,
        ),
    };
    let quota = |key: &'static str, v: usize| -> Result<usize, ConfigError> {
        Ok(in_range(key, v as u64, 1, 65536)? as usize)
    };
    Ok(mcm_control::access::AccessConfig {
        tokens,
        quotas: mcm_control::access::Quotas {
            sessions: quota("sdk.max_sessions_per_identity", f.max_sessions_per_identity)?,
            connections: quota(
                "sdk.max_connections_per_identity",
                f.max_connections_per_identity,
            )?,
            groups: quota("sdk.max_groups_per_identity", f.max_groups_per_identity)?,
        },
    })
}

fn validate_agent(f: &AgentFile) -> Result<Option<AgentSettings>, ConfigError> {
    if f.addr.is_empty() {
        return Ok(None);
    }
    let ok = f
        .addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !ok {
        let msg = format!(
            "`{}` is not host:port (allowed: an address or host name and a port, e.g. \
             127.0.0.1:50051 or agent.mesh:50051)",
            f.addr
        );
        return Err(ConfigError::new("agent.addr", msg));
    }
    if f.name.len() > 128 || f.name.chars().any(char::is_control) {
        let msg = "at most 128 characters, no control characters".to_owned();
        return Err(ConfigError::new("agent.name", msg));
    }
    let cert = pair("agent", &f.tls_cert, &f.tls_key)?;
    let token = match f.token_file.as_str() {
        "" => None,
        p => Some(
            mcm_control::security::read_token("agent.token_file", Path::new(p))
                .map_err(security_error)?,
        ),
    };
    Ok(Some(AgentSettings {
        addr: f.addr.clone(),
        name: f.name.clone(),
        security: mcm_control::security::ClientSecurity {
            ca: non_empty_path(&f.tls_ca),
            cert,
            token,
        },
    }))
}

/// A TLS or token file that could not be used, as a configuration error of its key.
fn security_error(e: mcm_control::security::SecurityError) -> ConfigError {
    ConfigError::new(
        &e.key,
        format!("cannot read {}: {}", e.path.display(), e.source),
    )
}

fn non_empty_path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A certificate and its key: both or neither.
fn pair(section: &str, cert: &str, key: &str) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((PathBuf::from(cert), PathBuf::from(key)))),
        (false, true) => Err(ConfigError::new(
            &format!("{section}.tls_key"),
            "required with tls_cert (allowed: both, or neither)".to_owned(),
        )),
        (true, false) => Err(ConfigError::new(
            &format!("{section}.tls_cert"),
            "required with tls_key (allowed: both, or neither)".to_owned(),
        )),
    }
}

fn validate_grpc_security(
    f: &GrpcFile,
) -> Result<mcm_control::security::ServerSecurity, ConfigError> {
    use mcm_control::security::{ServerSecurity, ServerTls, read_file, read_token};
    let tls = match pair("grpc", &f.tls_cert, &f.tls_key)? {
        Some((cert, key)) => {
            // Read now, so a missing file is a configuration error naming its key.
            for (k, p) in [("grpc.tls_cert", &cert), ("grpc.tls_key", &key)] {
                read_file(k, p).map_err(security_error)?;
            }
            let client_ca = non_empty_path(&f.tls_client_ca);
            if let Some(ca) = &client_ca {
                read_file("grpc.tls_client_ca", ca).map_err(security_error)?;
            }
            Some(ServerTls {
                cert,
                key,
                client_ca,
            })
        }
        None if !f.tls_client_ca.is_empty() => {
            return Err(ConfigError::new(
                "grpc.tls_client_ca",
                "needs grpc.tls_cert and grpc.tls_key (mutual TLS is TLS first)".to_owned(),
            ));
        }
        None => None,
    };
    let token = match f.token_file.as_str() {
        "" => None,
        p => Some(read_token("grpc.token_file", Path::new(p)).map_err(security_error)?),
    };
    Ok(ServerSecurity { tls, token })
}

fn validate_st2110(
    f: &St2110File,
    shm_dir: &Path,
) -> Result<crate::transport::st2110::Settings, ConfigError> {
    if f.backend != "kernel" {
        let msg = format!(
            "`{}` is not a backend of this build (allowed: \"kernel\")",
            f.backend
        );
        return Err(ConfigError::new("st2110.backend", msg));
    }
    interface_name("st2110.interface", &f.interface)?;
    let local_ip = ipv4_of("st2110.local_ip", &f.local_ip)?;
    let redundant = match (
        f.redundant_interface.as_str(),
        f.redundant_local_ip.as_str(),
    ) {
        ("", "") => None,
        ("", _) => {
            let msg = "required with st2110.redundant_local_ip: the interface that address is on";
            return Err(ConfigError::new("st2110.redundant_interface", msg));
        }
        (_, "") => {
            let msg = "required with st2110.redundant_interface: that interface's IPv4 address";
            return Err(ConfigError::new("st2110.redundant_local_ip", msg));
        }
        (name, ip) => {
            interface_name("st2110.redundant_interface", name)?;
            let ip = ipv4_of("st2110.redundant_local_ip", ip)?;
            if ip == local_ip {
                let msg = format!(
                    "`{ip}` is st2110.local_ip (allowed: the second interface's own address)"
                );
                return Err(ConfigError::new("st2110.redundant_local_ip", msg));
            }
            Some((name.to_owned(), ip))
        }
    };
    let window = in_range(
        "st2110.redundancy_window_us",
        u64::from(f.redundancy_window_us),
        100,
        100_000,
    )?;
    for (key, v) in [
        ("st2110.dscp_video", f.dscp_video),
        ("st2110.dscp_audio", f.dscp_audio),
    ] {
        in_range(key, u64::from(v), 0, 63)?;
    }
    let socket_buffer = in_range(
        "st2110.socket_buffer_bytes",
        f.socket_buffer_bytes as u64,
        65_536,
        1 << 30,
    )?;
    in_range("st2110.multicast_ttl", u64::from(f.multicast_ttl), 1, 255)?;
    let rx_read_interval = in_range(
        "st2110.rx_read_interval_us",
        u64::from(f.rx_read_interval_us),
        0,
        1000,
    )?;
    Ok(crate::transport::st2110::Settings {
        interface: f.interface.clone(),
        local_ip,
        tx_ports: port_range("st2110.tx_ports", &f.tx_ports)?,
        rx_ports: port_range("st2110.rx_ports", &f.rx_ports)?,
        dscp_video: f.dscp_video,
        dscp_audio: f.dscp_audio,
        socket_buffer: socket_buffer as usize,
        multicast_ttl: f.multicast_ttl,
        gso: f.gso,
        rx_read_interval: std::time::Duration::from_micros(rx_read_interval),
        sdp_dir: shm_dir.to_path_buf(),
        redundant,
        redundancy_window: std::time::Duration::from_micros(window),
    })
}

fn interface_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
        let msg = format!(
            "`{name}` is not an interface name (allowed: 1 to 15 characters, no '/' or space)"
        );
        return Err(ConfigError::new(key, msg));
    }
    Ok(())
}

fn ipv4_of(key: &str, text: &str) -> Result<std::net::Ipv4Addr, ConfigError> {
    text.parse().map_err(|_| {
        let msg = format!("`{text}` is not an IPv4 address (allowed: e.g. 192.168.96.1)");
        ConfigError::new(key, msg)
    })
}

fn validate_rdma(f: &RdmaFile) -> Result<RdmaSettings, ConfigError> {
    let ip = f.ip.parse().map_err(|_| {
        let msg = format!(
            "`{}` is not an IP address (allowed: the address of the interface RDMA links use, \
             e.g. 192.168.96.1, or 127.0.0.1 on one host)",
            f.ip
        );
        ConfigError::new("rdma.ip", msg)
    })?;
    let links = f
        .link
        .iter()
        .enumerate()
        .map(|(i, l)| validate_link(i, l))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, l) in links.iter().enumerate() {
        if links[..i].contains(l) {
            let msg = format!("the same link as an earlier one for group {:?}", l.0);
            return Err(ConfigError::new(&format!("rdma.link[{i}]"), msg));
        }
        let port = |e: &mcm_proto::config::transport::Edge| match e {
            mcm_proto::config::transport::Edge::Rdma { link, .. } => link.port,
            _ => None,
        };
        if let Some(p) = port(&l.1)
            && let Some(j) = links[..i].iter().position(|o| port(&o.1) == Some(p))
        {
            let msg =
                format!("port {p} is also rdma.link[{j}]'s (each rx link listens on its own port)");
            return Err(ConfigError::new(&format!("rdma.link[{i}].port"), msg));
        }
    }
    Ok(RdmaSettings {
        ip,
        ports: port_range("rdma.ports", &f.ports)?,
        links,
    })
}

fn validate_link(
    i: usize,
    l: &RdmaLinkFile,
) -> Result<(String, mcm_proto::config::transport::Edge), ConfigError> {
    use mcm_proto::config::Direction;
    use mcm_proto::config::transport::{Edge, MAX_RDMA_ENDPOINTS, RdmaLink, RdmaProvider};
    let key = |k: &str| format!("rdma.link[{i}].{k}");
    if l.urn.is_empty() || l.urn.len() > 256 {
        let msg = "a group URN of 1 to 256 bytes is required";
        return Err(ConfigError::new(&key("urn"), msg));
    }
    let direction = match l.direction.as_str() {
        "tx" => Direction::Tx,
        "rx" => Direction::Rx,
        d => {
            let msg = format!("`{d}` is not a direction (allowed: \"tx\", \"rx\")");
            return Err(ConfigError::new(&key("direction"), msg));
        }
    };
    let peer = match (&l.peer, direction) {
        (Some(p), Direction::Tx) => Some(parse_addr(&key("peer"), p)?),
        (None, Direction::Tx) => {
            let msg = "required for a tx link: the receiving engine's \"IP:PORT\"";
            return Err(ConfigError::new(&key("peer"), msg));
        }
        (Some(_), Direction::Rx) => {
            let msg = "not allowed for an rx link (it listens on `port`; the peer dials it)";
            return Err(ConfigError::new(&key("peer"), msg));
        }
        (None, Direction::Rx) => None,
    };
    match (l.port, direction) {
        (None, Direction::Rx) | (Some(0), _) => {
            let msg = "required for an rx link: a port in 1..=65535 the sending engine names";
            return Err(ConfigError::new(&key("port"), msg));
        }
        (Some(_), Direction::Tx) => {
            let msg = "not allowed for a tx link (its peer names the receiving port)";
            return Err(ConfigError::new(&key("port"), msg));
        }
        _ => {}
    }
    let provider = RdmaProvider::ALL
        .iter()
        .find(|(n, _)| *n == l.provider)
        .map(|&(_, p)| p)
        .ok_or_else(|| {
            let msg = format!(
                "`{}` is not a provider (allowed: \"tcp\", \"shm\", \"verbs\")",
                l.provider
            );
            ConfigError::new(&key("provider"), msg)
        })?;
    in_range(
        &key("endpoints"),
        u64::from(l.endpoints),
        1,
        u64::from(MAX_RDMA_ENDPOINTS),
    )?;
    let link = RdmaLink {
        peer,
        port: l.port,
        provider,
        endpoints: l.endpoints,
    };
    Ok((l.urn.clone(), Edge::Rdma { direction, link }))
}

fn port_range(key: &str, v: &str) -> Result<std::ops::RangeInclusive<u16>, ConfigError> {
    let bad = || {
        let msg = format!(
            "`{v}` is not a port range (allowed: \"FIRST-LAST\", 1 <= FIRST <= LAST <= 65535)"
        );
        ConfigError::new(key, msg)
    };
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

fn describe_cpus(available: &BTreeSet<usize>) -> String {
    if available.is_empty() {
        return "none".into();
    }
    let v: Vec<String> = available.iter().map(|c| c.to_string()).collect();
    v.join(", ")
}

fn validate_cpu(key: &str, cpu: usize, available: &BTreeSet<usize>) -> Result<usize, ConfigError> {
    if available.contains(&cpu) {
        return Ok(cpu);
    }
    let msg = format!(
        "CPU {cpu} does not exist or is not available to this process (allowed: {})",
        describe_cpus(available)
    );
    Err(ConfigError::new(key, msg))
}

fn validate_cpus(cpus: &[usize], available: &BTreeSet<usize>) -> Result<Vec<usize>, ConfigError> {
    let key = "lcores.cpus";
    if cpus.is_empty() {
        let msg = format!(
            "the list is empty (allowed: one or more of CPUs {})",
            describe_cpus(available)
        );
        return Err(ConfigError::new(key, msg));
    }
    let mut seen = BTreeSet::new();
    for &cpu in cpus {
        validate_cpu(key, cpu, available)?;
        if !seen.insert(cpu) {
            let msg = format!("CPU {cpu} is listed twice (allowed: each CPU at most once)");
            return Err(ConfigError::new(key, msg));
        }
    }
    Ok(cpus.to_vec())
}

fn validate_idle(l: &LcoresFile) -> Result<IdlePolicy, ConfigError> {
    Ok(match l.idle {
        IdleName::Busy => IdlePolicy::Busy,
        IdleName::Adaptive => {
            let us = in_range("lcores.spin_us", l.spin_us, 0, 1_000_000)?;
            IdlePolicy::Adaptive {
                spin: Duration::from_micros(us),
            }
        }
    })
}

fn in_range(key: &str, v: u64, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        return Ok(v);
    }
    Err(ConfigError::new(
        key,
        format!("{v} is out of range (allowed: {lo} to {hi})"),
    ))
}

fn validate_shm_dir(dir: &str) -> Result<PathBuf, ConfigError> {
    let key = "memory.shm_dir";
    let path = PathBuf::from(dir);
    if !path.is_absolute() {
        let msg = format!(
            "`{dir}` is not an absolute path (allowed: an absolute directory path, e.g. /run/mcm)"
        );
        return Err(ConfigError::new(key, msg));
    }
    if path.exists() && !path.is_dir() {
        let msg = format!(
            "`{dir}` exists and is not a directory (allowed: a directory, or a path that can be created)"
        );
        return Err(ConfigError::new(key, msg));
    }
    Ok(path)
}

/// `memory.group`: empty, a number, or a name from the group database.
fn validate_group(name: &str) -> Result<Option<u32>, ConfigError> {
    if name.is_empty() {
        return Ok(None);
    }
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    match lookup_group(name) {
        Some(gid) => Ok(Some(gid)),
        None => Err(ConfigError::new(
            "memory.group",
            format!(
                "`{name}` is not a group of this host (allowed: a group name from /etc/group or \
                 a number, or empty for none)"
            ),
        )),
    }
}

/// The gid of group `name` (`getgrnam_r`).
fn lookup_group(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: an all-zero `group` is a valid value of this plain C struct; it is only written by
    // getgrnam_r below.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `buf` is writable
    // for its length, and `grp`/`out` are local; getgrnam_r is reentrant.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
}

fn validate_unix_path(path: &Path) -> Result<(), ConfigError> {
    let len = path.as_os_str().len();
    if len == 0 || len > MAX_UNIX_PATH {
        let msg = format!(
            "`{}` is {len} bytes long (allowed: 1 to {MAX_UNIX_PATH} bytes, the kernel's limit for socket paths)",
            path.display()
        );
        return Err(ConfigError::new("sdk.unix_socket", msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(v: &[usize]) -> BTreeSet<usize> {
        v.iter().copied().collect()
    }

    fn check(text: &str) -> Result<EngineConfig, ConfigError> {
        EngineConfig::validate(&parse(text)?, &cpus(&[0, 1]))
    }

    fn err(text: &str) -> String {
        check(text).unwrap_err().to_string()
    }

    #[test]
    fn agent_address_and_name_are_checked() {
        assert_eq!(check("").unwrap().agent, None);
        let c = check("[agent]\naddr = \"agent.mesh:50051\"\n").unwrap();
        let a = c.agent.unwrap();
        assert_eq!((a.addr.as_str(), a.name.as_str()), ("agent.mesh:50051", ""));
        for bad in ["50051", "host:", ":50051", "host:0", "host:70000"] {
            let e = err(&format!("[agent]\naddr = \"{bad}\"\n"));
            assert!(e.starts_with("agent.addr: "), "{e}");
            assert!(
                e.contains("allowed: an address or host name and a port"),
                "{e}"
            );
        }
        let e = err("[agent]\naddr = \"a:1\"\nname = \"x\\ny\"\n");
        assert!(e.starts_with("agent.name: "), "{e}");
        let e = err("[agent]\nport = 1\n");
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn shipped_configs_parse_and_default_is_laptop_safe() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/");
        let cores = check(&std::fs::read_to_string(format!("{dir}cores.toml")).unwrap()).unwrap();
        assert_eq!(cores.lcore_cpus, vec![1]);
        assert_eq!(cores.control_cpu, 0);
        assert!(matches!(cores.idle, IdlePolicy::Adaptive { .. }));
        assert_eq!(cores.sdk_tcp, "127.0.0.1:8002".parse().unwrap());
        assert_eq!(cores.grpc, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(cores.huge_pages, HugePagesName::Auto);
        let bare =
            parse(&std::fs::read_to_string(format!("{dir}bare-metal.toml")).unwrap()).unwrap();
        let many: BTreeSet<usize> = (0..64).collect();
        let bare = EngineConfig::validate(&bare, &many).unwrap();
        assert_eq!(bare.idle, IdlePolicy::Busy);
        assert_eq!(bare.huge_pages, HugePagesName::On);
        assert!(!bare.lcore_cpus.contains(&bare.control_cpu));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = check("").unwrap();
        assert_eq!(
            c.sdk_unix,
            crate::rundir::default_for_this_user().join("sdk.sock")
        );
        assert_eq!(c.stats_interval, Some(Duration::from_secs(10)));
        assert_eq!(c.budget, 64);
    }

    #[test]
    fn unknown_key_names_key_and_allowed_keys() {
        let e = err("[lcores]\ncpus = [1]\nspeed = 3\n");
        assert!(e.starts_with("lcores"), "{e}");
        assert!(e.contains("unknown field `speed`"), "{e}");
        assert!(e.contains("`cpus`"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn wrong_type_and_enum_value() {
        let e = err("[lcores]\ncpus = \"one\"\n");
        assert!(
            e.starts_with("lcores.cpus: invalid type: string \"one\", expected a sequence"),
            "{e}"
        );
        let e = err("[lcores]\nidle = \"spin\"\n");
        assert!(
            e.starts_with("lcores.idle: unknown variant `spin`, expected `busy` or `adaptive`"),
            "{e}"
        );
        let e = err("[memory]\nhuge_pages = \"maybe\"\n");
        assert!(e.contains("expected one of `on`, `off`, `auto`"), "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("[lcores\ncpus = [1]\n");
        assert!(e.starts_with("config: "), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn cpu_checks() {
        let e = err("[lcores]\ncpus = [7]\n");
        assert_eq!(
            e,
            "lcores.cpus: CPU 7 does not exist or is not available to this process (allowed: 0, 1)"
        );
        assert!(
            err("[lcores]\ncpus = []\n")
                .contains("the list is empty (allowed: one or more of CPUs 0, 1)")
        );
        assert!(err("[lcores]\ncpus = [1, 1]\n").contains("CPU 1 is listed twice"));
        assert!(err("[control]\ncpu = 9\n").starts_with("control.cpu: CPU 9 does not exist"));
        let e = err("[lcores]\ncpus = [0, 1]\nidle = \"busy\"\n");
        assert!(
            e.starts_with("control.cpu: CPU 0 also runs a busy-polling lcore"),
            "{e}"
        );
        assert!(check("[lcores]\ncpus = [0, 1]\nidle = \"adaptive\"\n").is_ok());
    }

    #[test]
    fn address_and_range_checks() {
        let e = err("[sdk]\ntcp = \"localhost\"\n");
        assert_eq!(
            e,
            "sdk.tcp: `localhost` is not a socket address (allowed: IP:PORT, e.g. 127.0.0.1:8002 or [::1]:8002)"
        );
        assert!(
            err("[grpc]\naddr = \"127.0.0.1:8002\"\n")
                .starts_with("grpc.addr: 127.0.0.1:8002 is also sdk.tcp")
        );
        assert_eq!(
            err("[lcores]\nbudget = 0\n"),
            "lcores.budget: 0 is out of range (allowed: 1 to 4096)"
        );
        assert!(
            err("[memory]\nshm_dir = \"rel/dir\"\n")
                .starts_with("memory.shm_dir: `rel/dir` is not an absolute path")
        );
        let long = format!("[sdk]\nunix_socket = \"/{}\"\n", "x".repeat(120));
        assert!(err(&long).contains("allowed: 1 to 107 bytes"));
        assert!(err("[control]\nstats_interval_ms = 5\n").contains("allowed: 100 to 86400000"));
        assert_eq!(
            check("[control]\nstats_interval_ms = 0\n")
                .unwrap()
                .stats_interval,
            None
        );
    }

    #[test]
    fn st2110_settings_are_checked_and_named() {
        let c = check("").unwrap().st2110;
        assert_eq!(c.local_ip, std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(
            (c.tx_ports.clone(), c.rx_ports.clone()),
            (20000..=20999, 1024..=65535)
        );
        assert_eq!((c.dscp_video, c.dscp_audio, c.gso), (34, 46, true));
        assert_eq!(
            err("[st2110]\nbackend = \"dpdk\"\n"),
            "st2110.backend: `dpdk` is not a backend of this build (allowed: \"kernel\")"
        );
        assert!(
            err("[st2110]\nlocal_ip = \"::1\"\n")
                .starts_with("st2110.local_ip: `::1` is not an IPv4")
        );
        assert!(err("[st2110]\ninterface = \"a/b\"\n").starts_with("st2110.interface:"));
        for bad in ["0-10", "10-5", "x", "5", "1-70000"] {
            let e = err(&format!("[st2110]\ntx_ports = \"{bad}\"\n"));
            assert!(
                e.starts_with(&format!("st2110.tx_ports: `{bad}` is not a port range")),
                "{e}"
            );
        }
        assert_eq!(
            err("[st2110]\ndscp_audio = 64\n"),
            "st2110.dscp_audio: 64 is out of range (allowed: 0 to 63)"
        );
        assert!(err("[st2110]\nsocket_buffer_bytes = 10\n").contains("allowed: 65536 to"));
        // ST 2022-7's second interface: both keys or neither, another address.
        assert_eq!(
            (&c.redundant, c.redundancy_window.as_micros()),
            (&None, 10_000)
        );
        let two = "[st2110]\nredundant_interface = \"eth1\"\nredundant_local_ip = \"10.2.0.1\"\n";
        assert_eq!(
            check(two).unwrap().st2110.path(1),
            ("eth1", "10.2.0.1".parse().unwrap())
        );
        assert_eq!(check(two).unwrap().st2110.path(0).0, "lo");
        assert_eq!(c.path(1), ("lo", std::net::Ipv4Addr::LOCALHOST));
        assert!(
            err("[st2110]\nredundant_interface = \"eth1\"\n")
                .starts_with("st2110.redundant_local_ip: required")
        );
        assert!(
            err("[st2110]\nredundant_local_ip = \"10.2.0.1\"\n")
                .starts_with("st2110.redundant_interface: required")
        );
        assert!(
            err("[st2110]\nredundant_interface = \"e\"\nredundant_local_ip = \"127.0.0.1\"\n")
                .contains("is st2110.local_ip")
        );
        assert!(err("[st2110]\nredundancy_window_us = 50\n").contains("allowed: 100 to 100000"));
        // MCM's flags.
        let mut f = ConfigFile::default();
        let o = Overrides {
            st2110_dev: Some("kernel:eth7".into()),
            st2110_ip: Some("10.1.2.3".into()),
            ..Default::default()
        };
        o.apply(&mut f).unwrap();
        let c = EngineConfig::validate(&f, &cpus(&[0, 1])).unwrap().st2110;
        assert_eq!(
            (c.interface.as_str(), c.local_ip),
            ("eth7", "10.1.2.3".parse().unwrap())
        );
        let pci = Overrides {
            st2110_dev: Some("0000:31:00.0".into()),
            ..Default::default()
        };
        let e = pci
            .apply(&mut ConfigFile::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed: kernel:<interface>"), "{e}");
    }

    #[test]
    fn rdma_links_are_checked_and_named() {
        use mcm_proto::config::Direction;
        use mcm_proto::config::transport::{Edge, RdmaLink, RdmaProvider};
        let c = check(
            "[[rdma.link]]\nurn = \"a\"\ndirection = \"tx\"\npeer = \"127.0.0.1:9100\"\n\
             [[rdma.link]]\nurn = \"b\"\ndirection = \"rx\"\nport = 9200\nprovider = \"shm\"\nendpoints = 4\n",
        )
        .unwrap()
        .rdma;
        assert_eq!(
            c.links,
            vec![
                (
                    "a".to_owned(),
                    Edge::Rdma {
                        direction: Direction::Tx,
                        link: RdmaLink {
                            peer: Some("127.0.0.1:9100".parse().unwrap()),
                            port: None,
                            provider: RdmaProvider::Tcp,
                            endpoints: 1,
                        },
                    }
                ),
                (
                    "b".to_owned(),
                    Edge::Rdma {
                        direction: Direction::Rx,
                        link: RdmaLink {
                            peer: None,
                            port: Some(9200),
                            provider: RdmaProvider::Shm,
                            endpoints: 4,
                        },
                    }
                ),
            ]
        );
        assert!(check("").unwrap().rdma.links.is_empty());
        let link = |body: &str| err(&format!("[[rdma.link]]\nurn = \"g\"\n{body}"));
        assert_eq!(
            link("direction = \"tx\"\n"),
            "rdma.link[0].peer: required for a tx link: the receiving engine's \"IP:PORT\""
        );
        assert!(
            link("direction = \"tx\"\npeer = \"127.0.0.1:1\"\nport = 5\n")
                .starts_with("rdma.link[0].port: not allowed for a tx link")
        );
        assert!(
            link("direction = \"rx\"\n").starts_with("rdma.link[0].port: required for an rx link")
        );
        assert!(
            link("direction = \"rx\"\nport = 9\npeer = \"127.0.0.1:1\"\n")
                .starts_with("rdma.link[0].peer: not allowed for an rx link")
        );
        assert_eq!(
            link("direction = \"up\"\n"),
            "rdma.link[0].direction: `up` is not a direction (allowed: \"tx\", \"rx\")"
        );
        assert!(
            link("direction = \"tx\"\npeer = \"nowhere\"\n")
                .starts_with("rdma.link[0].peer: `nowhere` is not a socket address")
        );
        assert_eq!(
            link("direction = \"rx\"\nport = 9\nprovider = \"psm3\"\n"),
            "rdma.link[0].provider: `psm3` is not a provider (allowed: \"tcp\", \"shm\", \"verbs\")"
        );
        assert_eq!(
            link("direction = \"rx\"\nport = 9\nendpoints = 9\n"),
            "rdma.link[0].endpoints: 9 is out of range (allowed: 1 to 8)"
        );
        assert!(
            err("[[rdma.link]]\nurn = \"\"\ndirection = \"rx\"\nport = 9\n")
                .starts_with("rdma.link[0].urn: a group URN")
        );
        assert!(
            err("[[rdma.link]]\nurn = \"g\"\ndirection = \"rx\"\nport = 9\ncolour = 1\n")
                .contains("colour")
        );
        let two = "[[rdma.link]]\nurn = \"g\"\ndirection = \"rx\"\nport = 9\n";
        assert!(
            err(&format!("{two}{two}"))
                .starts_with("rdma.link[1]: the same link as an earlier one for group \"g\"")
        );
        let other = "[[rdma.link]]\nurn = \"h\"\ndirection = \"rx\"\nport = 9\n";
        assert_eq!(
            err(&format!("{two}{other}")),
            "rdma.link[1].port: port 9 is also rdma.link[0]'s (each rx link listens on its own port)"
        );
    }

    #[test]
    fn overrides_replace_ports_and_values() {
        let mut f = ConfigFile::default();
        let o = Overrides {
            sdk: Some("9002".into()),
            grpc: Some("[::1]:9001".into()),
            lcores: Some(vec![0]),
            idle: Some(IdleName::Busy),
            control_cpu: Some(1),
            ..Default::default()
        };
        o.apply(&mut f).unwrap();
        let c = EngineConfig::validate(&f, &cpus(&[0, 1])).unwrap();
        assert_eq!(c.sdk_tcp, "127.0.0.1:9002".parse().unwrap());
        assert_eq!(c.grpc, "[::1]:9001".parse().unwrap());
        assert_eq!(
            (c.lcore_cpus.clone(), c.control_cpu, c.idle),
            (vec![0], 1, IdlePolicy::Busy)
        );
        let bad = Overrides {
            sdk: Some("nonsense".into()),
            ..Default::default()
        };
        let mut f = ConfigFile::default();
        bad.apply(&mut f).unwrap();
        assert!(
            EngineConfig::validate(&f, &cpus(&[0, 1]))
                .unwrap_err()
                .to_string()
                .starts_with("sdk.tcp: `nonsense`")
        );
    }
}
