//! The control thread's event loop: SDK listeners, sessions, stats, the command path.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use std::os::fd::{AsFd, OwnedFd};

use mcm_proto::config::MeshErr;
use mcm_proto::sdk::{CreateConnection, ErrorCode};
use mcm_proto::shm::map::send_fds_nonblocking;

use crate::access::{Access, AccessConfig, Deadline};
use crate::agent::client::AgentLink;
use crate::dataplane::{Command, Dataplane, Event, LcoreCounters, Notifier};
use crate::grpc::GrpcServer;
use crate::grpc::serve::{ControlPlane, Now as PlaneNow};
use crate::mesh::{IdentityQuota, Mesh, MeshConfig};
use crate::session::{Created, Flow, Handler, Refusal, Session, Transport};

const TCP: Token = Token(0);
const UNIX: Token = Token(1);
const WAKE: Token = Token(2);
const FIRST_SESSION: usize = 16;

/// Most bytes queued for a client that does not read its replies before it is dropped.
const MAX_OUTGOING: usize = 1 << 20;
/// How long a closing connection is drained so the client reads the last error frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most bytes read from one client per readiness event, so one busy client cannot keep the
/// control thread from the others.
const READ_BUDGET: usize = 256 << 10;
/// Period of housekeeping (handshake deadlines, linger expiry).
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// After `accept` failed (out of descriptors), when the listeners are tried again even without
/// a readiness event (they are edge-triggered: a full backlog raises no new one).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Most waiting clients one accept pass closes for lack of descriptors.
const SHED_BATCH: usize = 64;

/// Settings of the control thread.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SDK TCP listen address (port 0 picks a free port).
    pub tcp: SocketAddr,
    /// SDK Unix socket path.
    pub unix: PathBuf,
    /// Period of the stats log line and lcore ping; `None` disables both.
    pub stats_interval: Option<Duration>,
    /// A client that has not sent Hello this long after connecting is closed.
    pub handshake_timeout: Duration,
    /// Most concurrent SDK sessions; further clients are refused with an error.
    pub max_sessions: usize,
    /// The Unix socket's file mode and the peers it serves.
    pub unix_access: UnixAccess,
    /// The TCP port's access tokens and each client identity's quotas.
    pub access: AccessConfig,
    /// A session holding connections that is silent this long is closed; `None`: never.
    pub keepalive_timeout: Option<Duration>,
    /// A session holding no connection that is silent this long is closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// A frame begun must be complete within this.
    pub frame_timeout: Duration,
    /// A connection must be activated within this of its creation, or it is deleted.
    pub activate_timeout: Duration,
    /// Most clients of one peer (a TCP client's address, a Unix peer's uid) that have not said
    /// Hello yet; more are refused.
    pub max_waiting_per_peer: usize,
    /// Groups and connections: pool pages and limits.
    pub mesh: MeshConfig,
    /// The gRPC control plane; `None` serves none.
    pub grpc: Option<GrpcConfig>,
    /// The agent to register with (needs `grpc`); `None`: none.
    pub agent: Option<crate::agent::client::AgentClientConfig>,
}

/// Who may use the SDK's Unix socket: its file mode (the kernel refuses `connect` to others),
/// then the peer's credentials (`SO_PEERCRED`) checked at accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixAccess {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Peers with one of these uids are served.
    pub uids: Vec<u32>,
    /// Peers with one of these primary gids are served. With both lists empty: the engine's
    /// own uid and gid, root, and [`group`](Self::group).
    pub gids: Vec<u32>,
    /// The group the socket file belongs to (`memory.group`); `None`: the engine's.
    pub group: Option<u32>,
}

impl Default for UnixAccess {
    fn default() -> Self {
        Self {
            mode: 0o660,
            uids: Vec::new(),
            gids: Vec::new(),
            group: None,
        }
    }
}

impl UnixAccess {
    /// Whether a peer with `uid` and `gid` is served.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if self.uids.is_empty() && self.gids.is_empty() {
            let me = rustix::process::geteuid().as_raw();
            let my_group = rustix::process::getegid().as_raw();
            return uid == 0 || uid == me || gid == my_group || Some(gid) == self.group;
        }
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }

    fn describe(&self) -> String {
        if self.uids.is_empty() && self.gids.is_empty() {
            let group = match self.group {
                Some(g) => format!(", and gid {g} (memory.group)"),
                None => String::new(),
            };
            return format!(
                "the engine's uid and gid, and root{group} (sdk.allowed_uids, sdk.allowed_gids)"
            );
        }
        format!(
            "uids {:?}, gids {:?} (sdk.allowed_uids, sdk.allowed_gids)",
            self.uids, self.gids
        )
    }
}

/// Settings of the gRPC control plane.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Listen address (`grpc.addr`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// The engine's description for GetInfo (what does not change while it runs).
    pub info: crate::grpc::proto::control::EngineInfo,
    /// TLS and token of the service.
    pub security: crate::security::ServerSecurity,
}

/// Why the control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be created.
    #[error("{key}: cannot listen on {addr}: {source}{hint}")]
    Listen {
        /// Config key of the address.
        key: &'static str,
        /// The address.
        addr: String,
        /// What the OS said.
        source: io::Error,
        /// Advice on what is allowed.
        hint: &'static str,
    },
    /// The Unix socket path is held by a live engine or by something that is not a socket.
    #[error("sdk.unix_socket: {path} {reason}")]
    UnixPath {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mio poll could not be created.
    #[error("cannot create the control thread's poll: {0}")]
    Poll(#[from] io::Error),
    /// The gRPC service could not start.
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
    /// The agent client's thread could not start.
    #[error("agent.addr: cannot start the agent client: {0}")]
    Agent(io::Error),
}

/// Stops a running [`ControlServer`] from another thread (e.g. the signal handler).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to stop: it closes its listeners and sessions, stops the data plane, and
    /// returns from [`ControlServer::run`].
    pub fn shutdown(&self) {
        // Release pairs with the Acquire load in the control loop after it wakes.
        self.flag.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// A client's byte stream: TCP or Unix.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Writes as much of `data` as the socket takes now, with `fds` attached when given (Unix
    /// only; TCP sessions never queue fds).
    fn write_with_fds(
        &mut self,
        data: &[u8],
        fds: Option<&[std::os::fd::BorrowedFd<'_>]>,
    ) -> io::Result<usize> {
        match (self, fds) {
            (Stream::Unix(s), Some(fds)) => send_fds_nonblocking(s.as_fd(), data, fds),
            (stream, _) => stream.write(data),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// A connected client: its stream, protocol state and close progress.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    session: Session,
    peer: String,
    /// The peer it counts against until it says Hello.
    waiting_as: Option<String>,
    /// Set once the session decided to close: drain input until EOF or this deadline.
    closing_since: Option<Instant>,
    write_interest: bool,
}

/// What happened to a connection after handling its readiness.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    /// Input is left unread (the per-event read budget ran out): read again next loop pass.
    Again,
}

/// Counters of the control thread itself.
#[derive(Debug, Default, Clone, Copy)]
struct ControlCounters {
    accepted: u64,
    refused: u64,
    /// Waiting clients closed because the process was out of descriptors.
    shed: u64,
    closed: u64,
    spurious_events: u64,
}

/// Periodic stats and lcore liveness.
#[derive(Debug)]
struct Stats {
    interval: Duration,
    next_due: Instant,
    last: Vec<LcoreCounters>,
    last_at: Instant,
    ping_token: u64,
    answered: HashMap<usize, (u64, Duration)>,
}

/// The control thread: SDK listeners and sessions on a mio `Poll`.
pub struct ControlServer {
    poll: Poll,
    tcp: TcpListener,
    unix: UnixListener,
    unix_path: PathBuf,
    config: ServerConfig,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    next_session: u64,
    dataplane: Box<dyn Dataplane>,
    mesh: Mesh,
    /// Sessions whose input was left unread by the read budget.
    again: Vec<Token>,
    /// Session id to its connection's token, to find the session an event is about.
    sessions: HashMap<u64, Token>,
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
    counters: ControlCounters,
    stats: Option<Stats>,
    /// The gRPC control plane, when configured.
    plane: Option<ControlPlane>,
    /// Whether gRPC calls were left waiting by the per-turn budget.
    calls_waiting: bool,
    /// The client of the agent, when configured.
    agent: Option<AgentLink>,
    /// Sessions' identities, quotas, refusals.
    access: Access,
    /// A descriptor held in reserve: given up to accept (and close) a waiting client when the
    /// process is out of descriptors, so the backlog drains instead of wedging the listener.
    reserve: Option<OwnedFd>,
    /// When the listeners are tried again after a failed accept.
    accept_retry: Option<Instant>,
    /// Per peer, its clients that have not said Hello yet.
    waiting: HashMap<String, usize>,
}

impl ControlServer {
    /// Binds the SDK listeners and prepares the loop; nothing is served until [`run`](Self::run).
    pub fn bind(
        config: ServerConfig,
        mut dataplane: Box<dyn Dataplane>,
    ) -> Result<(Self, ShutdownHandle), ServerError> {
        let poll = Poll::new()?;
        let mut tcp = TcpListener::bind(config.tcp).map_err(|source| ServerError::Listen {
            key: "sdk.tcp",
            addr: config.tcp.to_string(),
            source,
            hint: " (allowed: an IP address of this host and a free port, e.g. 127.0.0.1:8002)",
        })?;
        let mut unix = bind_unix(&config.unix, &config.unix_access)?;
        poll.registry()
            .register(&mut tcp, TCP, Interest::READABLE)?;
        poll.registry()
            .register(&mut unix, UNIX, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        dataplane.set_notifier(Notifier(waker.clone()));
        let plane = match &config.grpc {
            Some(g) => {
                let (caller, calls) = crate::grpc::channel(Notifier(waker.clone()));
                let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let server =
                    GrpcServer::start(g.addr, caller.clone(), &g.security, refused.clone())?;
                let mut info = g.info.clone();
                info.sdk_tcp = tcp.local_addr()?.to_string();
                info.grpc_security = g.security.describe();
                info.sdk_security = sdk_security(&config);
                info.sdk_keepalive_timeout_ms =
                    config.keepalive_timeout.map_or(0, |t| t.as_millis() as u32);
                Some((ControlPlane::new(server, calls, info, refused), caller))
            }
            None => None,
        };
        let agent = match (&config.agent, &plane) {
            (Some(a), Some((p, caller))) => {
                let mut a = a.clone();
                if a.name.is_empty() {
                    a.name = format!("{}:{}", hostname(), p.addr().port());
                }
                Some(
                    AgentLink::start(a, p.info().clone(), caller.clone())
                        .map_err(ServerError::Agent)?,
                )
            }
            _ => None,
        };
        let plane = plane.map(|(p, _)| p);
        let flag = Arc::new(AtomicBool::new(false));
        let handle = ShutdownHandle {
            flag: flag.clone(),
            waker: waker.clone(),
        };
        let now = Instant::now();
        let stats = config.stats_interval.map(|interval| Stats {
            interval,
            next_due: now + interval,
            last: dataplane.counters(),
            last_at: now,
            ping_token: 0,
            answered: HashMap::new(),
        });
        let server = Self {
            poll,
            tcp,
            unix,
            unix_path: config.unix.clone(),
            mesh: Mesh::new(config.mesh.clone()),
            access: Access::new(config.access.clone()),
            reserve: open_reserve(),
            accept_retry: None,
            waiting: HashMap::new(),
            again: Vec::new(),
            sessions: HashMap::new(),
            config,
            conns: HashMap::new(),
            next_token: FIRST_SESSION,
            next_session: 1,
            dataplane,
            flag,
            waker,
            counters: ControlCounters::default(),
            stats,
            plane,
            calls_waiting: false,
            agent,
        };
        Ok((server, handle))
    }

    /// The bound TCP address (resolves port 0).
    pub fn tcp_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The gRPC control plane's address, when it is served.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.plane.as_ref().map(ControlPlane::addr)
    }

    /// The Unix socket path.
    pub fn unix_path(&self) -> &Path {
        &self.unix_path
    }

    /// A handle that stops the loop from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.flag.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`]; then closes every session, stops the data plane
    /// and removes the Unix socket.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        self.dataplane.maintain();
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        // Acquire pairs with the Release store in ShutdownHandle::shutdown.
        while !self.flag.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut due = self
                .stats
                .as_ref()
                .map_or(next_housekeeping, |s| s.next_due.min(next_housekeeping));
            // Commands an lcore could not take yet are retried every millisecond.
            if self.dataplane.flush() {
                due = due.min(now + Duration::from_millis(1));
            }
            // Failed links are set up again when their back-off ends.
            if let Some(at) = self.mesh.next_retry() {
                due = due.min(at);
            }
            // Metrics streams get their samples on time; calls left waiting are served now.
            if let Some(at) = self.plane.as_ref().and_then(ControlPlane::next_due) {
                due = due.min(at);
            }
            if self.calls_waiting {
                due = now;
            }
            if let Some(a) = &self.agent {
                due = due.min(a.next_due());
            }
            if let Some(at) = self.accept_retry {
                due = due.min(at);
            }
            // Clients with input left unread are served again without waiting.
            let again = std::mem::take(&mut self.again);
            if !again.is_empty() {
                due = now;
            }
            match self
                .poll
                .poll(&mut events, Some(due.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                self.dispatch(
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed(),
                    ev.is_writable(),
                );
            }
            for token in again {
                if self.conns.contains_key(&token) {
                    self.dispatch(token, true, false);
                }
            }
            let now = Instant::now();
            if self.accept_retry.is_some_and(|at| now >= at) {
                self.accept_retry = None;
                self.accept_tcp();
                self.accept_unix();
            }
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
            self.tick_stats(now);
            self.mesh.retry_due(self.dataplane.as_mut(), now);
            self.serve_plane(now);
            if let Some(a) = self.agent.as_mut() {
                let mesh = &self.mesh;
                a.update(mesh.generation(), || mesh.presence(), Instant::now());
            }
        }
        self.stop();
        Ok(())
    }

    fn dispatch(&mut self, token: Token, readable: bool, writable: bool) {
        match token {
            TCP => self.accept_tcp(),
            UNIX => self.accept_unix(),
            WAKE => self.drain_events(),
            t => match self.conns.get_mut(&t) {
                Some(conn) => {
                    let mut handler = MeshHandler {
                        mesh: &mut self.mesh,
                        dataplane: self.dataplane.as_mut(),
                        access: &mut self.access,
                        keepalive: [self.config.keepalive_timeout, self.config.idle_timeout]
                            .into_iter()
                            .flatten()
                            .min(),
                    };
                    let fate =
                        conn.on_ready(readable, writable, self.poll.registry(), t, &mut handler);
                    if conn.session.state() != crate::session::State::AwaitHello {
                        release_waiting(&mut self.waiting, conn);
                    }
                    match fate {
                        Fate::Drop => self.close(t),
                        Fate::Again => self.again.push(t),
                        Fate::Keep => {}
                    }
                }
                None => self.counters.spurious_events += 1,
            },
        }
    }

    /// Answers waiting gRPC calls and sends the metrics samples that are due.
    fn serve_plane(&mut self, now: Instant) {
        let Some(plane) = self.plane.as_mut() else {
            return;
        };
        let sessions = self.conns.len();
        self.calls_waiting = plane.serve(
            &mut self.mesh,
            self.dataplane.as_mut(),
            PlaneNow {
                sessions,
                access: &self.access,
            },
        );
        plane.tick(&self.mesh, self.dataplane.as_ref(), now);
    }

    fn accept_tcp(&mut self) {
        loop {
            match self.tcp.accept() {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let key = peer.ip().to_string();
                    self.admit(Stream::Tcp(s), peer.to_string(), key, Transport::Tcp);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.accept_failed(Transport::Tcp, &e),
            }
        }
    }

    /// `accept` failed with `e`: retried on a timer; when the process is out of descriptors,
    /// waiting clients are taken with the reserved descriptor and closed with an error frame,
    /// so the backlog drains and the listener keeps working once descriptors are free again.
    fn accept_failed(&mut self, listener: Transport, e: &io::Error) {
        let key = match listener {
            Transport::Tcp => "sdk.tcp",
            Transport::Unix => "sdk.unix_socket",
        };
        self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
        let out_of_fds = e.raw_os_error().is_some_and(|n| {
            n == rustix::io::Errno::MFILE.raw_os_error()
                || n == rustix::io::Errno::NFILE.raw_os_error()
        });
        if !out_of_fds {
            crate::warn_limited!(
                "{key}: accept failed: {e}; trying again in {} ms",
                ACCEPT_RETRY.as_millis()
            );
            return;
        }
        let mut shed = 0;
        while shed < SHED_BATCH {
            self.reserve = None;
            let msg = "the engine is out of file descriptors; try again later";
            let taken = match listener {
                Transport::Tcp => self.tcp.accept().map(|(mut s, _)| {
                    let _ = s.write(&Session::error_frame(msg.to_owned()));
                }),
                Transport::Unix => self.unix.accept().map(|(mut s, _)| {
                    let _ = s.write(&Session::error_frame(msg.to_owned()));
                }),
            };
            self.reserve = open_reserve();
            if taken.is_err() {
                break;
            }
            shed += 1;
        }
        self.counters.refused += shed as u64;
        self.counters.shed += shed as u64;
        crate::warn_limited!(
            "{key}: accept failed: {e}: out of file descriptors (raise the limit, `ulimit -n`); \
             {shed} waiting clients closed with an error, accepting again in {} ms",
            ACCEPT_RETRY.as_millis()
        );
    }

    fn accept_unix(&mut self) {
        loop {
            match self.unix.accept() {
                Ok((s, _)) => {
                    let cred = rustix::net::sockopt::socket_peercred(&s);
                    let peer = match &cred {
                        Ok(c) => format!(
                            "unix pid {} uid {} gid {}",
                            c.pid.as_raw_nonzero(),
                            c.uid.as_raw(),
                            c.gid.as_raw()
                        ),
                        Err(_) => "unix".to_owned(),
                    };
                    let verdict = match &cred {
                        Ok(c)
                            if self
                                .config
                                .unix_access
                                .allows(c.uid.as_raw(), c.gid.as_raw()) =>
                        {
                            Ok(c.uid.as_raw())
                        }
                        Ok(c) => Err(format!(
                            "peer uid {} gid {} is not allowed on this socket (allowed: {})",
                            c.uid.as_raw(),
                            c.gid.as_raw(),
                            self.config.unix_access.describe()
                        )),
                        Err(e) => Err(format!("cannot read the peer's credentials: {e}")),
                    };
                    match verdict {
                        Ok(uid) => {
                            let key = format!("uid {uid}");
                            let id = self.admit(Stream::Unix(s), peer, key, Transport::Unix);
                            self.access.unix_peer(id, uid);
                        }
                        Err(why) => self.refuse_unix(s, &peer, why),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.accept_failed(Transport::Unix, &e),
            }
        }
    }

    /// Answers a Unix peer that may not use the engine with an error and closes it (counted and
    /// logged by [`Access::peer_refused`]).
    fn refuse_unix(&mut self, s: UnixStream, peer: &str, why: String) {
        self.counters.refused += 1;
        self.access.peer_refused(peer, &why);
        // The error frame fits a fresh socket's buffer; a peer that does not read loses it.
        let mut s = s;
        let _ = s.write_all(&Session::error_frame(why));
        let _ = s.shutdown(std::net::Shutdown::Both);
    }

    /// Serves a new client (or refuses it when the engine has too many sessions); answers its
    /// session id.
    fn admit(
        &mut self,
        mut stream: Stream,
        peer: String,
        key: String,
        transport: Transport,
    ) -> u64 {
        let token = Token(self.next_token);
        self.next_token += 1;
        let id = self.next_session;
        self.next_session += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = stream.register(self.poll.registry(), token, interest) {
            crate::warn_limited!("cannot register SDK client {peer}: {e}");
            return id;
        }
        let mut conn = Conn {
            stream,
            session: Session::new(id, Instant::now(), transport),
            peer,
            waiting_as: None,
            closing_since: None,
            write_interest: true,
        };
        let waiting = self.waiting.get(&key).copied().unwrap_or(0);
        if self.conns.len() >= self.config.max_sessions {
            self.counters.refused += 1;
            let limit = self.config.max_sessions;
            conn.session
                .refuse(format!("too many SDK sessions (limit {limit})"));
            conn.begin_close();
        } else if waiting >= self.config.max_waiting_per_peer {
            self.counters.refused += 1;
            let limit = self.config.max_waiting_per_peer;
            conn.session.refuse(format!(
                "too many clients from {key} that have not said Hello yet (limit {limit}, \
                 sdk.max_waiting_per_peer)"
            ));
            conn.begin_close();
        } else {
            *self.waiting.entry(key.clone()).or_default() += 1;
            conn.waiting_as = Some(key);
            self.counters.accepted += 1;
            tracing::debug!(session = id, peer = %conn.peer, "SDK client connected");
        }
        self.sessions.insert(id, token);
        self.conns.insert(token, conn);
        id
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = conn.stream.deregister(self.poll.registry());
            let id = conn.session.id();
            release_waiting(&mut self.waiting, &mut conn);
            self.sessions.remove(&id);
            self.mesh.session_closed(self.dataplane.as_mut(), id);
            self.access.closed(id);
            self.counters.closed += 1;
            tracing::debug!(session = conn.session.id(), peer = %conn.peer, "SDK client closed");
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let limit = self.config.handshake_timeout;
        let registry = self.poll.registry();
        let mut expired = Vec::new();
        for (&token, conn) in &mut self.conns {
            if conn.housekeeping(now, limit, registry, token) == Fate::Drop {
                expired.push(token);
                continue;
            }
            if conn.closing_since.is_some() {
                continue;
            }
            // A client that holds connections and says nothing is hung or stopped (SIGSTOP, a
            // paused container); one that holds none and says nothing only takes a session; one
            // that sends a frame a byte at a time holds its session too. Each is closed.
            let id = conn.session.id();
            let closed = match (self.mesh.held_by(id), self.config.keepalive_timeout) {
                (0, _) => self
                    .config
                    .idle_timeout
                    .and_then(|t| conn.session.check_idle(now, t))
                    .map(|w| (Deadline::Idle, w)),
                (_, Some(t)) => conn
                    .session
                    .check_keepalive(now, t)
                    .map(|w| (Deadline::Keepalive, w)),
                (_, None) => None,
            }
            .or_else(|| {
                conn.session
                    .check_partial_frame(now, self.config.frame_timeout)
                    .map(|w| (Deadline::Frame, w))
            });
            if let Some((deadline, why)) = closed {
                self.access.timed_out(deadline, id, &why);
                conn.begin_close();
                if conn.flush(registry, token) == Fate::Drop {
                    expired.push(token);
                }
            }
        }
        for token in expired {
            self.close(token);
        }
        self.mesh.expire_tokens(now);
        let late = self.mesh.expire_unactivated(
            self.dataplane.as_mut(),
            now,
            self.config.activate_timeout,
        );
        for (session, conn) in late {
            self.access.timed_out(
                Deadline::Activate,
                session,
                &format!(
                    "connection {conn} deleted: not activated within {} ms of its creation \
                     (sdk.activate_timeout_ms)",
                    self.config.activate_timeout.as_millis()
                ),
            );
        }
        self.dataplane.maintain();
    }

    fn drain_events(&mut self) {
        let stats = &mut self.stats;
        let mut failed = Vec::new();
        let mut attached = Vec::new();
        let mut detached = Vec::new();
        self.dataplane.drain_events(&mut |ev| match ev {
            Event::Pong { cpu, token, sent } => {
                if let Some(s) = stats.as_mut() {
                    s.answered.insert(cpu, (token, sent.elapsed()));
                }
            }
            Event::EdgeAttached { edge } => attached.push(edge),
            Event::EdgeFailed { edge, reason } => failed.push((edge, reason)),
            Event::EdgeDetached { edge } => detached.push(edge),
        });
        for edge in detached {
            tracing::debug!("edge {edge}: detached by the data plane");
        }
        for conn in attached {
            let Some(token) = self.token_of(conn) else {
                continue;
            };
            if let Some(c) = self.conns.get_mut(&token) {
                c.session.activated(conn);
                if c.flush(self.poll.registry(), token) == Fate::Drop {
                    self.close(token);
                }
            }
        }
        for (conn, reason) in failed {
            let Some(token) = self.token_of(conn) else {
                // Not an SDK connection: a network edge.
                self.mesh
                    .edge_failed(self.dataplane.as_mut(), conn, &reason);
                continue;
            };
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            let message = format!("connection {conn}: {reason}");
            if c.session
                .abort(ErrorCode::ERROR_CODE_PROTOCOL_VIOLATION, message)
                == Flow::Close
            {
                c.begin_close();
                // The other connections of a lying client go now, not after the close linger.
                self.mesh
                    .session_closed(self.dataplane.as_mut(), c.session.id());
                if c.flush(self.poll.registry(), token) == Fate::Drop {
                    self.close(token);
                }
            }
        }
    }

    /// The token of the session that owns connection `conn`.
    fn token_of(&self, conn: u64) -> Option<Token> {
        let session = self.mesh.session_of(conn)?;
        self.sessions.get(&session).copied()
    }

    fn tick_stats(&mut self, now: Instant) {
        let Some(stats) = self.stats.as_mut() else {
            return;
        };
        if now < stats.next_due {
            return;
        }
        let current = self.dataplane.counters();
        let secs = now.duration_since(stats.last_at).as_secs_f64().max(1e-9);
        for c in &current {
            let prev = stats
                .last
                .iter()
                .find(|p| p.cpu == c.cpu)
                .copied()
                .unwrap_or_default();
            let iters = c.iterations - prev.iterations;
            let busy = c.busy_iterations - prev.busy_iterations;
            let ping = match stats.answered.get(&c.cpu) {
                Some(&(token, rtt)) if token == stats.ping_token => {
                    format!("{} us", rtt.as_micros())
                }
                _ if stats.ping_token == 0 => "pending".to_owned(),
                _ => "NO ANSWER".to_owned(),
            };
            tracing::info!(
                "stats: lcore cpu={} iterations/s={:.0} busy={:.1}% work_items={} parks={} ports={} ping={}",
                c.cpu,
                iters as f64 / secs,
                if iters == 0 {
                    0.0
                } else {
                    100.0 * busy as f64 / iters as f64
                },
                c.work_items - prev.work_items,
                c.parks - prev.parks,
                c.ports,
                ping,
            );
        }
        let k = self.counters;
        let a = self.access.counters();
        tracing::info!(
            "stats: control sessions={} groups={} connections={} accepted={} refused={} shed={} peers_refused={} token_refused={} quota_refused={} keepalive_timeouts={} closed={} spurious_events={}",
            self.conns.len(),
            self.mesh.groups(),
            self.mesh.connections(),
            k.accepted,
            k.refused,
            k.shed,
            a.peer,
            a.token,
            a.quota,
            a.keepalive,
            k.closed,
            k.spurious_events
        );
        stats.last = current;
        stats.last_at = now;
        stats.next_due = now + stats.interval;
        stats.ping_token += 1;
        let cmd = Command::Ping {
            token: stats.ping_token,
            sent: now,
        };
        if let Err(e) = self.dataplane.submit(cmd) {
            tracing::warn!("stats ping not delivered: {e}");
        }
    }

    fn stop(&mut self) {
        tracing::info!(
            "control: shutting down ({} SDK sessions open)",
            self.conns.len()
        );
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.stream.shutdown_write();
            }
            self.close(token);
        }
        let agent = self.agent.take();
        if let Some(mut a) = agent {
            a.stop();
            if let Some(plane) = self.plane.take() {
                plane.stop();
            }
            a.join();
        }
        if let Some(plane) = self.plane.take() {
            plane.stop();
        }
        self.dataplane.shutdown();
        remove_socket(&self.unix_path);
    }
}

/// `conn` said Hello (or is gone): it no longer counts against its peer's waiting clients.
fn release_waiting(waiting: &mut HashMap<String, usize>, conn: &mut Conn) {
    let Some(key) = conn.waiting_as.take() else {
        return;
    };
    if let Some(n) = waiting.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            waiting.remove(&key);
        }
    }
}

/// The reserved descriptor (`/dev/null`, read-only).
fn open_reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// How the SDK ports are protected, for GetInfo.
fn sdk_security(c: &ServerConfig) -> String {
    let tcp = match &c.access.tokens {
        Some(t) => format!("tcp: access token required ({} identities)", t.len()),
        None => "tcp: no access token (sdk.access_tokens_file unset)".to_owned(),
    };
    format!(
        "{tcp}; unix: mode {:#o}, peers {}",
        c.unix_access.mode,
        c.unix_access.describe()
    )
}

/// This host's name, for the default agent name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The sessions' view of the registry: each request is handled against the mesh and the data
/// plane.
struct MeshHandler<'a> {
    mesh: &'a mut Mesh,
    dataplane: &'a mut dyn Dataplane,
    access: &'a mut Access,
    /// The shorter of the keepalive and idle timeouts, if either is on.
    keepalive: Option<Duration>,
}

impl Handler for MeshHandler<'_> {
    fn hello(
        &mut self,
        session: u64,
        transport: Transport,
        access_token: &str,
    ) -> Result<u32, Refusal> {
        let unix = transport == Transport::Unix;
        match self.access.hello(session, unix, access_token) {
            Ok(_) => Ok(self
                .keepalive
                .map_or(0, |t| (t.as_millis() / 3).max(1) as u32)),
            Err((true, msg)) => Err(Refusal::new(
                ErrorCode::ERROR_CODE_UNAUTHENTICATED,
                MeshErr::ClientConfigInval,
                msg,
            )),
            Err((false, msg)) => Err(Refusal::new(
                ErrorCode::ERROR_CODE_QUOTA,
                MeshErr::MaxConn,
                msg,
            )),
        }
    }

    fn create_connection(
        &mut self,
        session: u64,
        req: &CreateConnection,
        transport: Transport,
    ) -> Result<Created, Refusal> {
        let now = Instant::now();
        let res = match self.access.identity(session) {
            Some(who) => {
                let quotas = self.access.config().quotas;
                let member = self.access.sessions_of(who);
                let quota = IdentityQuota {
                    who,
                    member: &member,
                    connections: quotas.connections,
                    groups: quotas.groups,
                };
                self.mesh
                    .create(self.dataplane, session, req, transport, now, Some(&quota))
            }
            None => self
                .mesh
                .create(self.dataplane, session, req, transport, now, None),
        };
        if let Err(r) = &res
            && r.code == ErrorCode::ERROR_CODE_QUOTA
        {
            self.access.quota_refused(session, &r.message);
        }
        res
    }

    fn fetch_fds(&mut self, _session: u64, token: &[u8]) -> Result<(u64, Vec<OwnedFd>), Refusal> {
        self.mesh.fetch_fds(token, Instant::now())
    }

    fn fetch_pool(
        &mut self,
        session: u64,
        conn: u64,
        pool: u32,
        transport: Transport,
    ) -> Result<(mcm_proto::sdk::PoolFd, Vec<OwnedFd>), Refusal> {
        self.mesh
            .fetch_pool(session, conn, pool, transport, Instant::now())
    }

    fn activate(&mut self, session: u64, conn: u64) -> Result<(), Refusal> {
        self.mesh.activate(self.dataplane, session, conn)
    }

    fn delete(&mut self, session: u64, conn: u64) -> Result<(), Refusal> {
        self.mesh.delete(self.dataplane, session, conn)
    }

    fn stats(&mut self, session: u64) -> mcm_proto::sdk::Stats {
        self.mesh
            .stats(session, self.dataplane.payload_bytes_copied())
    }
}

impl Conn {
    fn on_ready(
        &mut self,
        readable: bool,
        writable: bool,
        reg: &Registry,
        token: Token,
        handler: &mut dyn Handler,
    ) -> Fate {
        // `read_input` handles each frame as it completes, so replies are queued by now.
        let input = if readable {
            self.read_input(handler)
        } else {
            Fate::Keep
        };
        if input == Fate::Drop {
            // The peer is gone or done sending: still hand it what was queued (best effort).
            let _ = self.flush(reg, token);
            return Fate::Drop;
        }
        if (writable || !self.session.outgoing().is_empty()) && self.flush(reg, token) == Fate::Drop
        {
            return Fate::Drop;
        }
        input
    }

    /// Reads until the socket would block. Drops the connection at EOF or on error.
    fn read_input(&mut self, handler: &mut dyn Handler) -> Fate {
        let mut read = 0;
        loop {
            if read >= READ_BUDGET {
                return Fate::Again;
            }
            let res = match self.closing_since {
                Some(_) => self.stream.read(&mut [0u8; 4096]),
                None => self.session.decoder().read_from(&mut self.stream),
            };
            match res {
                Ok(0) => return Fate::Drop,
                Ok(n) if self.closing_since.is_none() => {
                    read += n;
                    // Handle frames as they complete so the buffer stays bounded.
                    if self.session.process(Instant::now(), handler) == Flow::Close {
                        self.begin_close();
                    }
                    // A client that sends requests but does not read the replies is dropped
                    // before its replies can pile up.
                    if self.session.outgoing().len() > MAX_OUTGOING {
                        return Fate::Drop;
                    }
                }
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fate::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Fate::Drop,
            }
        }
    }

    fn begin_close(&mut self) {
        self.closing_since.get_or_insert_with(Instant::now);
    }

    /// Writes queued frames; once a closing session's queue is empty, half-closes the stream.
    fn flush(&mut self, reg: &Registry, token: Token) -> Fate {
        let mut failed = false;
        while !self.session.outgoing().is_empty() {
            // A frame with fds starts a separate send so the fds ride on its first byte.
            let end = match self.session.next_fd_boundary() {
                0 => self.session.outgoing().len(),
                n => n,
            };
            let fds = self.session.fds_due();
            let res = self
                .stream
                .write_with_fds(&self.session.outgoing()[..end], fds.as_deref());
            drop(fds);
            match res {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    self.session.fds_sent();
                    self.session.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed || self.session.outgoing().len() > MAX_OUTGOING {
            return Fate::Drop;
        }
        let pending = !self.session.outgoing().is_empty();
        if !pending && self.closing_since.is_some() {
            self.stream.shutdown_write();
        }
        if pending != self.write_interest {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self.stream.reregister(reg, token, interest).is_err() {
                return Fate::Drop;
            }
            self.write_interest = pending;
        }
        Fate::Keep
    }

    fn housekeeping(
        &mut self,
        now: Instant,
        limit: Duration,
        reg: &Registry,
        token: Token,
    ) -> Fate {
        if let Some(since) = self.closing_since {
            return if now.duration_since(since) >= CLOSE_LINGER {
                Fate::Drop
            } else {
                Fate::Keep
            };
        }
        if self.session.check_handshake_deadline(now, limit) == Flow::Close {
            self.begin_close();
            return self.flush(reg, token);
        }
        Fate::Keep
    }
}

/// Binds the Unix socket, replacing a stale socket file left by a dead engine.
///
/// The socket is bound under a temporary name in the same directory, given its mode and group
/// there, and renamed into place: it never appears under its real name with the umask's mode,
/// and a stale socket is replaced in one step.
fn bind_unix(path: &Path, access: &UnixAccess) -> Result<UnixListener, ServerError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            let reason = "exists and is not a socket (allowed: a free path or a stale socket)";
            return Err(ServerError::UnixPath {
                path: path.to_owned(),
                reason,
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            let reason = "is in use by a running engine (allowed: a free path or a stale socket)";
            return Err(ServerError::UnixPath {
                path: path.to_owned(),
                reason,
            });
        }
        tracing::info!("replacing stale SDK socket {}", path.display());
    }
    let listen_error = |source| ServerError::Listen {
        key: "sdk.unix_socket",
        addr: path.display().to_string(),
        source,
        hint: " (allowed: a path in an existing, writable directory, at most 107 bytes)",
    };
    let tmp = path.with_file_name(format!(".mcm-sock-{}", std::process::id()));
    let direct = tmp.as_os_str().len() > 107;
    let bound_at = if direct { path } else { tmp.as_path() };
    if !direct {
        remove_socket(&tmp);
    }
    let listener = UnixListener::bind(bound_at).map_err(listen_error)?;
    let mode_error = |source| ServerError::Listen {
        key: "sdk.unix_socket_mode",
        addr: path.display().to_string(),
        source,
        hint: " (cannot set the socket file's mode or group)",
    };
    let prepared = (|| {
        use std::os::unix::fs::PermissionsExt;
        if let Some(gid) = access.group {
            std::os::unix::fs::lchown(bound_at, None, Some(gid))?;
        }
        std::fs::set_permissions(bound_at, std::fs::Permissions::from_mode(access.mode))?;
        if !direct {
            std::fs::rename(bound_at, path)?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        remove_socket(bound_at);
        return Err(mode_error(e));
    }
    Ok(listener)
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}
