//! The SDK protocol's client end: one blocking socket (TCP or Unix), one request at a time.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mcm_proto::config::MeshErr;
use mcm_proto::frame::{self, FrameDecoder};
use mcm_proto::sdk::{ClientMessage, EngineMessage, Hello, engine_message};
use mcm_proto::shm::map::recv_fds;

use crate::error::{Error, Result};

/// Most fds one reply carries (a connection's four).
const MAX_FDS: usize = 8;
/// Characters of the client name sent in Hello (the engine accepts up to 256 bytes).
const MAX_NAME_CHARS: usize = 64;

/// A connected socket.
#[derive(Debug)]
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A session with the engine.
#[derive(Debug)]
pub(crate) struct Channel {
    sock: Sock,
    decoder: FrameDecoder,
    /// Fds received and not yet claimed by a reply.
    fds: Vec<OwnedFd>,
    /// The engine said this session is over (fatal error or end of stream).
    dead: Option<String>,
    session_id: u64,
    /// How often the engine wants to hear from this session; `None`: it does not time out.
    keepalive: Option<Duration>,
}

impl Channel {
    /// Connects over TCP to `addr` and says Hello, with the SDK access token if there is one.
    pub(crate) fn tcp(
        addr: &str,
        name: &str,
        access_token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let sock = connect_tcp(addr, timeout).map_err(|e| {
            Error::mesh(
                MeshErr::ConnFailed,
                format!("cannot connect to the media proxy at {addr}: {e}"),
            )
        })?;
        let _ = sock.set_nodelay(true);
        Self::greet(Sock::Tcp(sock), name, access_token, timeout)
    }

    /// Connects to the engine's Unix socket at `path` and says Hello.
    pub(crate) fn unix(path: &Path, name: &str, timeout: Duration) -> Result<Self> {
        let sock = UnixStream::connect(path).map_err(|e| {
            Error::mesh(
                MeshErr::ConnFailed,
                format!(
                    "cannot connect to the engine socket {}: {e}",
                    path.display()
                ),
            )
        })?;
        // The Unix socket knows its peers by their uid: no access token travels over it.
        Self::greet(Sock::Unix(sock), name, None, timeout)
    }

    fn greet(
        sock: Sock,
        name: &str,
        access_token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let mut chan = Self {
            sock,
            decoder: FrameDecoder::new(),
            fds: Vec::new(),
            dead: None,
            session_id: 0,
            keepalive: None,
        };
        let mut hello = Hello::new();
        hello.protocol_version = mcm_proto::PROTOCOL_VERSION;
        hello.client_name = name.chars().take(MAX_NAME_CHARS).collect();
        hello.client_id = "mcm-sdk/v1".to_owned();
        hello.access_token = access_token.unwrap_or_default().to_owned();
        let mut msg = ClientMessage::new();
        msg.set_hello(hello);
        let (reply, _) = chan.request(&msg, timeout)?;
        match reply {
            engine_message::Body::HelloReply(r) => {
                chan.session_id = r.session_id;
                chan.keepalive = (r.keepalive_interval_ms > 0)
                    .then(|| Duration::from_millis(r.keepalive_interval_ms.into()));
                Ok(chan)
            }
            other => Err(unexpected("HelloReply", &other)),
        }
    }

    /// The engine's id for this session.
    pub(crate) fn session_id(&self) -> u64 {
        self.session_id
    }

    /// How often the engine wants to hear from this session, if it times sessions out.
    pub(crate) fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Sends a Keepalive without waiting for its answer (read, and dropped, by the next
    /// request or [`poll_dead`](Self::poll_dead)), then reads what the engine sent.
    pub(crate) fn keepalive(&mut self) {
        if self.dead.is_some() {
            return;
        }
        let mut msg = ClientMessage::new();
        msg.set_keepalive(mcm_proto::sdk::Keepalive::new());
        let mut bytes = Vec::new();
        if frame::encode(&msg, &mut bytes).is_err() {
            return;
        }
        let written = match &mut self.sock {
            Sock::Tcp(s) => s.write_all(&bytes),
            Sock::Unix(s) => s.write_all(&bytes),
        };
        if let Err(e) = written {
            let _ = self.die(format!("cannot send to the engine: {e}"));
            return;
        }
        self.poll_dead();
    }

    /// The socket (to watch for the engine going away).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }

    /// Why the session is over, if it is.
    pub(crate) fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Sends `msg` and waits up to `timeout` for its reply (skipping keepalive answers). An
    /// engine `Error` becomes an [`Error`] with the MCM code the engine chose.
    pub(crate) fn request(
        &mut self,
        msg: &ClientMessage,
        timeout: Duration,
    ) -> Result<(engine_message::Body, Vec<OwnedFd>)> {
        if let Some(why) = &self.dead {
            return Err(Error::closed(format!(
                "the engine closed the session: {why}"
            )));
        }
        let mut bytes = Vec::new();
        frame::encode(msg, &mut bytes)
            .map_err(|e| Error::mesh(MeshErr::ConnFailed, format!("cannot encode: {e}")))?;
        let written = match &mut self.sock {
            Sock::Tcp(s) => s.write_all(&bytes),
            Sock::Unix(s) => s.write_all(&bytes),
        };
        if let Err(e) = written {
            return Err(self.die(format!("cannot send to the engine: {e}")));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.next_message(deadline)?;
            match reply {
                engine_message::Body::Keepalive(_) => continue,
                engine_message::Body::Error(e) => {
                    if e.fatal {
                        self.dead = Some(e.message.clone());
                    }
                    let class = MeshErr::from_code(e.mesh_error as i32).unwrap_or(if e.fatal {
                        MeshErr::ConnClosed
                    } else {
                        MeshErr::ConnFailed
                    });
                    self.fds.clear();
                    return Err(Error::mesh(class, format!("engine: {}", e.message)));
                }
                other => return Ok((other, std::mem::take(&mut self.fds))),
            }
        }
    }

    /// Reads whatever the engine sent without waiting: an unsolicited fatal error or the end of
    /// the stream marks the session dead. Returns whether it is dead.
    pub(crate) fn poll_dead(&mut self) -> bool {
        if self.dead.is_none() {
            let _ = self.set_nonblocking(true);
            loop {
                match self.fill() {
                    Ok(0) => {
                        self.dead = Some("the engine closed the connection".to_owned());
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = self.set_nonblocking(false);
            while let Ok(Some(body)) = self.decoder.next_frame() {
                if let Ok(m) = frame::decode::<EngineMessage>(body)
                    && let Some(engine_message::Body::Error(e)) = m.body
                    && e.fatal
                {
                    self.dead = Some(e.message);
                }
            }
        }
        self.dead.is_some()
    }

    /// The next complete message, waiting until `deadline`.
    fn next_message(&mut self, deadline: Instant) -> Result<engine_message::Body> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    let msg = frame::decode::<EngineMessage>(body).map_err(|e| {
                        self.die(format!("the engine sent a frame that does not parse: {e}"))
                    })?;
                    match msg.body {
                        Some(b) => return Ok(b),
                        None => continue,
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(self.die(format!("bad frame from the engine: {e}"))),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // A late reply would answer the next request: the session cannot be trusted.
                return Err(self.die("the engine did not answer in time".to_owned()));
            }
            self.set_read_timeout(left)
                .map_err(|e| self.die(format!("cannot set the socket timeout: {e}")))?;
            match self.fill() {
                Ok(0) => return Err(self.die("the engine closed the connection".to_owned())),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.die(format!("cannot read from the engine: {e}"))),
            }
        }
    }

    /// One read into the decoder, collecting fds on a Unix socket.
    fn fill(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 4096];
        let n = match &mut self.sock {
            Sock::Tcp(s) => s.read(&mut buf)?,
            Sock::Unix(s) => {
                let (n, fds) = recv_fds(s.as_fd(), &mut buf, MAX_FDS)?;
                self.fds.extend(fds);
                n
            }
        };
        self.decoder.buffer(&buf[..n]);
        Ok(n)
    }

    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match &self.sock {
            Sock::Tcp(s) => s.set_read_timeout(t),
            Sock::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match &self.sock {
            Sock::Tcp(s) => s.set_nonblocking(on),
            Sock::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn die(&mut self, why: String) -> Error {
        self.dead.get_or_insert_with(|| why.clone());
        Error::closed(why)
    }
}

/// An error for a reply of the wrong type.
pub(crate) fn unexpected(wanted: &str, got: &engine_message::Body) -> Error {
    let got = match got {
        engine_message::Body::HelloReply(_) => "HelloReply",
        engine_message::Body::ConnectionCreated(_) => "ConnectionCreated",
        engine_message::Body::Activated(_) => "Activated",
        engine_message::Body::ConnectionDeleted(_) => "ConnectionDeleted",
        engine_message::Body::Fds(_) => "Fds",
        engine_message::Body::Stats(_) => "Stats",
        _ => "another message",
    };
    Error::mesh(
        MeshErr::ConnFailed,
        format!("the engine answered {got} where {wanted} was expected"),
    )
}

/// Connects to the first address of `addr` that answers within `timeout`.
fn connect_tcp(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
