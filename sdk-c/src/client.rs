//! [`Client`]: a session with the local engine, which creates connections.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use mcm_proto::config::{ClientConfig, ConnectionConfig, Direction, MeshErr};
use mcm_proto::sdk::{ClientMessage, DeleteConnection, GetStats, Stats, engine_message};

use crate::channel::{Channel, unexpected};
use crate::conn::{Core, RxConnection, TxConnection};
use crate::error::{Error, Result};

/// Environment variable: when set, the client connects to the engine's Unix socket at this path
/// instead of the TCP address of `apiConnectionString` (the fds then come inline).
pub const ENV_UNIX_SOCKET: &str = "MCM_SDK_UNIX_SOCKET";
/// How long a control request (create, activate, delete) may take the engine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by a client and its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    chan: Mutex<Channel>,
    /// A duplicate of the session socket, polled by blocked gets without the lock.
    pub(crate) sock_fd: OwnedFd,
    /// Open connections.
    pub(crate) conns: AtomicUsize,
    /// The keepalive thread, woken to exit when this is dropped.
    keepalive: OnceLock<std::thread::Thread>,
    /// The engine's end of the session was seen closed.
    gone: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(t) = self.keepalive.get() {
            t.unpark();
        }
    }
}

impl Shared {
    /// Whether the engine's end of the session is closed — it exited, crashed or ended the
    /// session: a poll with no timeout for `POLLRDHUP`, remembered once seen. A sender checks it
    /// before every put, so no frame is reported sent once the engine is known to be gone.
    pub(crate) fn session_closed(&self) -> bool {
        // Acquire: pairs with the Release store below (another thread saw it first).
        if self.gone.load(Ordering::Acquire) {
            return true;
        }
        use rustix::event::{PollFd, PollFlags, Timespec};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::from_borrowed_fd(
            self.sock_fd.as_fd(),
            PollFlags::RDHUP,
        )];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let ended = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR;
        let closed = matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
            && fds[0].revents().intersects(ended);
        if closed {
            self.gone.store(true, Ordering::Release);
        }
        closed
    }

    /// The session, locked (a poisoned lock is still usable: the channel has no invariants a
    /// panic could break half-way that a later request does not re-check).
    pub(crate) fn chan(&self) -> MutexGuard<'_, Channel> {
        self.chan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the engine ended the session, if it did; reads pending input without blocking, and
    /// never waits for the lock (a request in progress on another thread answers for it).
    pub(crate) fn engine_gone(&self) -> Option<String> {
        let reason = |c: &mut Channel| {
            c.poll_dead();
            c.dead().map(str::to_owned)
        };
        match self.chan.try_lock() {
            Ok(mut c) => reason(&mut c),
            Err(std::sync::TryLockError::Poisoned(p)) => reason(&mut p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Deletes connection `id` on the engine (best effort: a dead session deleted it already).
    pub(crate) fn delete(&self, id: u64) {
        let mut msg = ClientMessage::new();
        msg.set_delete_connection(DeleteConnection {
            conn_id: id,
            ..DeleteConnection::new()
        });
        let mut chan = self.chan();
        if chan.dead().is_none() {
            let _ = chan.request(&msg, REQUEST_TIMEOUT);
        }
    }
}

/// A session with the local mcm engine. Cheap to clone; connections keep it alive.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Connects with MCM's client JSON (`None` or empty: all defaults).
    pub fn new(config_json: Option<&str>) -> Result<Self> {
        Self::with_config(ClientConfig::from_json(config_json)?)
    }

    /// Connects with a parsed configuration: to the Unix socket named by [`ENV_UNIX_SOCKET`]
    /// when set, otherwise over TCP to `config.proxy`.
    pub fn with_config(config: ClientConfig) -> Result<Self> {
        match std::env::var_os(ENV_UNIX_SOCKET).filter(|v| !v.is_empty()) {
            Some(path) => Self::with_unix_socket(Path::new(&path), config),
            None => {
                let token = config.access_token.as_ref().map(|t| t.expose());
                let chan = Channel::tcp(
                    &config.proxy.to_string(),
                    &client_name(),
                    token,
                    REQUEST_TIMEOUT,
                )?;
                Self::from_channel(chan, config)
            }
        }
    }

    /// Connects to the engine's Unix socket at `path` (the fds come inline, no second socket).
    pub fn with_unix_socket(path: &Path, config: ClientConfig) -> Result<Self> {
        let chan = Channel::unix(path, &client_name(), REQUEST_TIMEOUT)?;
        Self::from_channel(chan, config)
    }

    fn from_channel(chan: Channel, config: ClientConfig) -> Result<Self> {
        let sock_fd = chan
            .fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os(e.raw_os_error().unwrap_or(libc_eio()), e.to_string()))?;
        let interval = chan.keepalive_interval();
        let shared = Arc::new(Shared {
            config,
            chan: Mutex::new(chan),
            sock_fd,
            conns: AtomicUsize::new(0),
            keepalive: OnceLock::new(),
            gone: AtomicBool::new(false),
        });
        if let Some(every) = interval {
            let weak = Arc::downgrade(&shared);
            let thread = std::thread::Builder::new()
                .name("mcm-keepalive".to_owned())
                .spawn(move || keepalive_loop(&weak, every))
                .map_err(|e| {
                    Error::os(
                        e.raw_os_error().unwrap_or(libc_eio()),
                        format!("cannot start the SDK keepalive thread: {e}"),
                    )
                })?;
            let _ = shared.keepalive.set(thread.thread().clone());
        }
        Ok(Self { shared })
    }

    /// The validated configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The engine's id for this client's session.
    pub fn session_id(&self) -> u64 {
        self.shared.chan().session_id()
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        // Relaxed: a count, not a synchronisation point.
        self.shared.conns.load(Ordering::Relaxed)
    }

    /// Creates a sender from MCM's connection JSON.
    pub fn create_tx(&self, config_json: &str) -> Result<TxConnection> {
        let cfg = ConnectionConfig::from_json(config_json, Direction::Tx)?;
        Core::create(&self.shared, config_json, cfg).map(TxConnection::new)
    }

    /// Creates a receiver from MCM's connection JSON.
    pub fn create_rx(&self, config_json: &str) -> Result<RxConnection> {
        let cfg = ConnectionConfig::from_json(config_json, Direction::Rx)?;
        Core::create(&self.shared, config_json, cfg).map(RxConnection::new)
    }

    /// Counters of this client's connections, and the engine's copy counter.
    pub fn stats(&self) -> Result<Stats> {
        let mut msg = ClientMessage::new();
        msg.set_get_stats(GetStats::new());
        match self.shared.chan().request(&msg, REQUEST_TIMEOUT)?.0 {
            engine_message::Body::Stats(s) => Ok(s),
            other => Err(unexpected("Stats", &other)),
        }
    }

    /// Checks that a new connection is allowed by `maxMediaConnections` and counts it.
    pub(crate) fn reserve(shared: &Shared) -> Result<()> {
        let max = shared.config.max_connections as usize;
        // Relaxed: the counter itself is the only shared state.
        let took = shared
            .conns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            });
        took.map(|_| ()).map_err(|n| {
            Error::mesh(
                MeshErr::MaxConn,
                format!("the client has {n} connections (maxMediaConnections = {max})"),
            )
        })
    }

    /// The shared state (for the C API).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Tells the engine every `every` that this process is alive, so it keeps the session's
/// connections; a process that is stopped (SIGSTOP, a frozen container) stops telling it. A
/// request in progress holds the lock and is itself heard by the engine, so that turn is
/// skipped. Ends when the client is gone.
fn keepalive_loop(shared: &Weak<Shared>, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        if let Ok(mut chan) = shared.chan.try_lock() {
            if chan.dead().is_some() {
                return;
            }
            chan.keepalive();
        }
    }
}

/// The program's name, for the engine's logs.
fn client_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mcm-sdk".to_owned())
}

/// `EIO`, for OS errors without a number.
fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}
