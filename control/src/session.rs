//! One SDK client's session: the protocol state machine, independent of the transport.
//!
//! Bytes read from the socket go into [`Session::decoder`]; [`Session::process`] turns complete
//! frames into replies appended to [`Session::outgoing`] and says whether to keep the session.
//! Anything unexpected — a frame that does not parse, an oversized frame, a wrong version, a
//! message out of order — is answered with one `Error` frame, after which the session closes.
//! Requests that concern the engine's state (connections, fds, stats) go to a [`Handler`]; a
//! refused request gets a non-fatal `Error` and the session goes on.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mcm_proto::PROTOCOL_VERSION;
use mcm_proto::config::MeshErr;
use mcm_proto::frame::{self, FrameDecoder, FrameError};
use mcm_proto::sdk::{
    Activated, ClientMessage, ConnectionCreated, ConnectionDeleted, CreateConnection,
    EngineMessage, ErrorCode, Fds, HelloReply, PoolFd, Stats, client_message,
};

/// Longest accepted `client_name` or `client_id`, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Where a session is in its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected; the first frame must be a Hello.
    AwaitHello,
    /// Hello accepted.
    Ready,
    /// An error was sent; flush what is queued, then close.
    Closing,
}

/// What the server should do with the session after [`Session::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush [`Session::outgoing`], then close the connection.
    Close,
}

/// How the client is connected: only a Unix socket can carry fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: fds must be fetched over the Unix socket.
    Tcp,
    /// The engine's Unix socket: fds travel with the replies.
    Unix,
}

/// Why one request was refused; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable class.
    pub code: ErrorCode,
    /// The MCM error the SDK call should return.
    pub mesh_error: Option<MeshErr>,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl Refusal {
    /// A refusal of class `code` that the SDK reports as `mesh_error`.
    pub fn new(code: ErrorCode, mesh_error: MeshErr, message: impl Into<String>) -> Self {
        Self {
            code,
            mesh_error: Some(mesh_error),
            message: message.into(),
        }
    }
}

/// A reply to [`Handler::create_connection`]: the message and the fds that go with it (none for
/// a TCP session, which is given a token instead).
pub type Created = (ConnectionCreated, Vec<OwnedFd>);

/// The engine state behind the sessions' requests (implemented over the mesh registry).
pub trait Handler {
    /// Admits `session` at its Hello carrying `access_token` (see [`crate::access`]); answers
    /// the keepalive interval to tell the client, in milliseconds (0: none). A refusal closes
    /// the session.
    fn hello(
        &mut self,
        session: u64,
        transport: Transport,
        access_token: &str,
    ) -> Result<u32, Refusal>;
    /// Creates a connection for `session` from MCM's connection JSON.
    fn create_connection(
        &mut self,
        session: u64,
        req: &CreateConnection,
        transport: Transport,
    ) -> Result<Created, Refusal>;
    /// The fds of the connection a one-time `token` was issued for.
    fn fetch_fds(&mut self, session: u64, token: &[u8]) -> Result<(u64, Vec<OwnedFd>), Refusal>;
    /// The read-only fd of pool `pool` of receiver `conn`'s group (see `FetchPool`).
    fn fetch_pool(
        &mut self,
        session: u64,
        conn: u64,
        pool: u32,
        transport: Transport,
    ) -> Result<(PoolFd, Vec<OwnedFd>), Refusal>;
    /// Starts moving frames on `session`'s connection `conn`; the server answers with
    /// [`Session::activated`] when the data plane reports the connection attached.
    fn activate(&mut self, session: u64, conn: u64) -> Result<(), Refusal>;
    /// Deletes `session`'s connection `conn`.
    fn delete(&mut self, session: u64, conn: u64) -> Result<(), Refusal>;
    /// Counters of `session`'s connections.
    fn stats(&mut self, session: u64) -> Stats;
}

/// One client's protocol state.
#[derive(Debug)]
pub struct Session {
    id: u64,
    transport: Transport,
    state: State,
    decoder: FrameDecoder,
    out: Vec<u8>,
    /// Fds to send with the frame that starts at the given offset of `out`, in order.
    fds: VecDeque<(usize, Vec<OwnedFd>)>,
    client_name: String,
    connected_at: Instant,
    last_heard: Instant,
    /// Since when part of a frame has waited for the rest.
    partial_since: Option<Instant>,
}

impl Session {
    /// A new session, waiting for Hello.
    pub fn new(id: u64, now: Instant, transport: Transport) -> Self {
        Self {
            id,
            transport,
            state: State::AwaitHello,
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            fds: VecDeque::new(),
            client_name: String::new(),
            connected_at: now,
            last_heard: now,
            partial_since: None,
        }
    }

    /// Session identifier, unique within the engine's lifetime.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Current protocol state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The client's name from its Hello (empty before).
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// Where the transport puts received bytes.
    pub fn decoder(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// Encoded frames waiting to be written to the client.
    pub fn outgoing(&self) -> &[u8] {
        &self.out
    }

    /// Where the transport must stop a plain write: the offset in [`outgoing`](Self::outgoing)
    /// of the next frame that carries fds (send from there with them), or its length.
    pub fn next_fd_boundary(&self) -> usize {
        self.fds.front().map_or(self.out.len(), |(at, _)| *at)
    }

    /// The fds due at offset 0 of [`outgoing`](Self::outgoing), if any: send them with the bytes
    /// from there, then call [`fds_sent`](Self::fds_sent).
    pub fn fds_due(&self) -> Option<Vec<BorrowedFd<'_>>> {
        match self.fds.front() {
            Some((0, fds)) => Some(fds.iter().map(|f| f.as_fd()).collect()),
            _ => None,
        }
    }

    /// The fds due at offset 0 went out (they are closed here, the peer holds its copies).
    pub fn fds_sent(&mut self) {
        if matches!(self.fds.front(), Some((0, _))) {
            self.fds.pop_front();
        }
    }

    /// `n` bytes from the front of [`outgoing`](Self::outgoing) were written.
    pub fn consume(&mut self, n: usize) {
        self.out.drain(..n);
        for (at, _) in &mut self.fds {
            *at = at.saturating_sub(n);
        }
    }

    /// Handles every complete frame received so far.
    pub fn process(&mut self, now: Instant, handler: &mut dyn Handler) -> Flow {
        while self.state != State::Closing {
            let msg = match self.decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(body)) => frame::decode::<ClientMessage>(body),
                Err(e) => Err(e),
            };
            self.last_heard = now;
            match msg {
                Ok(msg) => self.handle(msg, handler),
                Err(e) => self.frame_error(&e),
            }
        }
        // The bytes of a frame not complete yet: the clock of sdk.frame_timeout_ms runs.
        if self.decoder.pending() == 0 {
            self.partial_since = None;
        } else {
            self.partial_since.get_or_insert(now);
        }
        self.flow()
    }

    /// Answers the client's Activate: the data plane has attached connection `conn_id`, so every
    /// frame sent from now on reaches it.
    pub fn activated(&mut self, conn_id: u64) {
        let mut reply = EngineMessage::new();
        reply.set_activated(Activated {
            conn_id,
            ..Activated::new()
        });
        self.send(&reply);
    }

    /// Closes the session with a fatal error of class `code` (e.g. the client broke the
    /// shared-memory protocol).
    pub fn abort(&mut self, code: ErrorCode, message: String) -> Flow {
        self.fail(code, message);
        self.flow()
    }

    /// Closes a session that has not said Hello within `limit` of connecting.
    pub fn check_handshake_deadline(&mut self, now: Instant, limit: Duration) -> Flow {
        if self.state == State::AwaitHello && now.duration_since(self.connected_at) >= limit {
            let msg = format!("no Hello within {} ms of connecting", limit.as_millis());
            self.fail(ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE, msg);
        }
        self.flow()
    }

    /// Closes a session that holds connections and has not been heard from within `timeout`
    /// (its client is hung or stopped). Answers whether it was closed and why.
    pub fn check_keepalive(&mut self, now: Instant, timeout: Duration) -> Option<String> {
        self.close_if_silent(now, timeout, |silent| {
            format!(
                "nothing heard from the client for {silent} ms while it holds connections \
                 (limit sdk.keepalive_timeout_ms = {}; the SDK sends a Keepalive every {} ms): \
                 it is taken for hung, and its connections are deleted",
                timeout.as_millis(),
                timeout.as_millis() / 3
            )
        })
    }

    /// Closes a session that holds no connection and has not been heard from within
    /// `timeout` (`sdk.idle_timeout_ms`; the SDK's keepalives count). Answers why, if closed.
    pub fn check_idle(&mut self, now: Instant, timeout: Duration) -> Option<String> {
        self.close_if_silent(now, timeout, |silent| {
            format!(
                "nothing heard from the client for {silent} ms and it holds no connection \
                 (limit sdk.idle_timeout_ms = {})",
                timeout.as_millis()
            )
        })
    }

    /// Closes a Ready session silent for `timeout`, with the reason `why` gives for the
    /// milliseconds of silence; answers that reason.
    fn close_if_silent(
        &mut self,
        now: Instant,
        timeout: Duration,
        why: impl FnOnce(u128) -> String,
    ) -> Option<String> {
        let silent = now.duration_since(self.last_heard);
        if self.state != State::Ready || silent < timeout {
            return None;
        }
        let msg = why(silent.as_millis());
        self.close_with(ErrorCode::ERROR_CODE_KEEPALIVE_TIMEOUT, None, msg.clone());
        Some(msg)
    }

    /// Closes a session whose client began a frame more than `timeout` ago and has not sent the
    /// rest (`sdk.frame_timeout_ms`). Answers why, if closed.
    pub fn check_partial_frame(&mut self, now: Instant, timeout: Duration) -> Option<String> {
        let since = self.partial_since?;
        if self.state == State::Closing || now.duration_since(since) < timeout {
            return None;
        }
        let msg = format!(
            "a frame begun {} ms ago is still incomplete ({} bytes of it arrived; allowed: a \
             whole frame within sdk.frame_timeout_ms = {})",
            now.duration_since(since).as_millis(),
            self.decoder.pending(),
            timeout.as_millis()
        );
        self.fail(ErrorCode::ERROR_CODE_MALFORMED_FRAME, msg.clone());
        Some(msg)
    }

    /// One fatal `Error` frame saying `message`, for a client refused before it has a session
    /// (the caller logs why).
    pub fn error_frame(message: String) -> Vec<u8> {
        let mut s = Self::new(0, Instant::now(), Transport::Tcp);
        s.close_with(ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE, None, message);
        s.out
    }

    /// Refuses the session before any frame is handled (e.g. too many sessions).
    pub fn refuse(&mut self, message: String) -> Flow {
        self.fail(ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE, message);
        self.flow()
    }

    fn flow(&self) -> Flow {
        match self.state {
            State::Closing => Flow::Close,
            _ => Flow::Continue,
        }
    }

    fn handle(&mut self, msg: ClientMessage, handler: &mut dyn Handler) {
        use client_message::Body;
        let id = self.id;
        match (self.state, msg.body) {
            (State::AwaitHello, Some(Body::Hello(h))) => self.hello(h, handler),
            (State::Ready, Some(Body::Keepalive(k))) => {
                let mut reply = EngineMessage::new();
                reply.set_keepalive(k);
                self.send(&reply);
            }
            (State::Ready, Some(Body::CreateConnection(req))) => {
                match handler.create_connection(id, &req, self.transport) {
                    Ok((created, fds)) => {
                        let mut reply = EngineMessage::new();
                        reply.set_connection_created(created);
                        self.send_with_fds(&reply, fds);
                    }
                    Err(r) => self.reject(r),
                }
            }
            (State::Ready, Some(Body::FetchFds(req))) => match self.transport {
                Transport::Unix => match handler.fetch_fds(id, &req.token) {
                    Ok((conn_id, fds)) => {
                        let mut reply = EngineMessage::new();
                        reply.set_fds(Fds {
                            conn_id,
                            ..Fds::new()
                        });
                        self.send_with_fds(&reply, fds);
                    }
                    Err(r) => self.reject(r),
                },
                Transport::Tcp => self.reject(Refusal::new(
                    ErrorCode::ERROR_CODE_INVALID_ARGUMENT,
                    MeshErr::ConnFailed,
                    "FetchFds needs a Unix-socket session (fds cannot travel over TCP)",
                )),
            },
            (State::Ready, Some(Body::FetchPool(req))) => {
                match handler.fetch_pool(id, req.conn_id, req.pool_id, self.transport) {
                    Ok((pool, fds)) => {
                        let mut reply = EngineMessage::new();
                        reply.set_pool_fd(pool);
                        self.send_with_fds(&reply, fds);
                    }
                    Err(r) => self.reject(r),
                }
            }
            // The reply comes from `activated`, once the data plane has attached the connection.
            (State::Ready, Some(Body::Activate(req))) => {
                if let Err(r) = handler.activate(id, req.conn_id) {
                    self.reject(r);
                }
            }
            (State::Ready, Some(Body::DeleteConnection(req))) => {
                match handler.delete(id, req.conn_id) {
                    Ok(()) => {
                        let mut reply = EngineMessage::new();
                        reply.set_connection_deleted(ConnectionDeleted {
                            conn_id: req.conn_id,
                            ..ConnectionDeleted::new()
                        });
                        self.send(&reply);
                    }
                    Err(r) => self.reject(r),
                }
            }
            (State::Ready, Some(Body::GetStats(_))) => {
                let mut reply = EngineMessage::new();
                reply.set_stats(handler.stats(id));
                self.send(&reply);
            }
            (state, body) => {
                let got = match body {
                    Some(Body::Hello(_)) => "Hello",
                    Some(Body::Keepalive(_)) => "Keepalive",
                    Some(Body::CreateConnection(_)) => "CreateConnection",
                    Some(Body::Activate(_)) => "Activate",
                    Some(Body::DeleteConnection(_)) => "DeleteConnection",
                    Some(Body::FetchFds(_)) => "FetchFds",
                    Some(Body::FetchPool(_)) => "FetchPool",
                    Some(Body::GetStats(_)) => "GetStats",
                    Some(_) => "an unknown message",
                    None => "a message with no body",
                };
                let allowed = match state {
                    State::AwaitHello => "Hello",
                    _ => {
                        "Keepalive, CreateConnection, FetchFds, FetchPool, Activate, DeleteConnection, \
                         GetStats"
                    }
                };
                let msg = format!("unexpected {got} in state {state:?} (allowed: {allowed})");
                self.fail(ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE, msg);
            }
        }
    }

    fn hello(&mut self, h: mcm_proto::sdk::Hello, handler: &mut dyn Handler) {
        if h.protocol_version != PROTOCOL_VERSION {
            let msg = format!(
                "protocol version {} is not supported (this engine speaks version {PROTOCOL_VERSION})",
                h.protocol_version
            );
            return self.fail(ErrorCode::ERROR_CODE_UNSUPPORTED_VERSION, msg);
        }
        for (field, value) in [
            ("client_name", &h.client_name),
            ("client_id", &h.client_id),
            ("access_token", &h.access_token),
        ] {
            if value.len() > MAX_NAME_LEN {
                let msg = format!(
                    "{field} is {} bytes long (allowed: at most {MAX_NAME_LEN})",
                    value.len()
                );
                return self.fail(ErrorCode::ERROR_CODE_INVALID_ARGUMENT, msg);
            }
        }
        self.client_name = h.client_name;
        let keepalive_interval_ms = match handler.hello(self.id, self.transport, &h.access_token) {
            Ok(ms) => ms,
            Err(r) => return self.fail_refusal(r),
        };
        self.state = State::Ready;
        let mut reply = HelloReply::new();
        reply.keepalive_interval_ms = keepalive_interval_ms;
        reply.protocol_version = PROTOCOL_VERSION;
        reply.engine_version = env!("CARGO_PKG_VERSION").to_owned();
        reply.session_id = self.id;
        let mut msg = EngineMessage::new();
        msg.set_hello_reply(reply);
        self.send(&msg);
    }

    fn frame_error(&mut self, e: &FrameError) {
        let code = match e {
            FrameError::Oversized { .. } => ErrorCode::ERROR_CODE_OVERSIZED_FRAME,
            _ => ErrorCode::ERROR_CODE_MALFORMED_FRAME,
        };
        self.fail(code, e.to_string());
    }

    fn fail(&mut self, code: ErrorCode, message: String) {
        crate::warn_limited!(
            "session {} ({}): closing: {message}",
            self.id,
            self.client_name
        );
        self.close_with(code, None, message);
    }

    /// Closes the session for a refusal the handler logged and counted already.
    fn fail_refusal(&mut self, r: Refusal) {
        self.close_with(r.code, r.mesh_error, r.message);
    }

    fn close_with(&mut self, code: ErrorCode, mesh_error: Option<MeshErr>, message: String) {
        let mut err = mcm_proto::sdk::Error::new();
        err.code = code.into();
        err.mesh_error = mesh_error.map_or(0, |e| e.code() as u32);
        err.message = message;
        err.fatal = true;
        let mut msg = EngineMessage::new();
        msg.set_error(err);
        self.send(&msg);
        self.state = State::Closing;
    }

    /// Refuses one request; the session goes on.
    fn reject(&mut self, r: Refusal) {
        crate::log_limited!(
            info,
            "session {} ({}): request refused: {}",
            self.id,
            self.client_name,
            r.message
        );
        let mut err = mcm_proto::sdk::Error::new();
        err.code = r.code.into();
        err.mesh_error = r.mesh_error.map_or(0, |e| e.code() as u32);
        err.message = r.message;
        err.fatal = false;
        let mut msg = EngineMessage::new();
        msg.set_error(err);
        self.send(&msg);
    }

    /// Queues `msg` with `fds` attached to its first byte (plain when `fds` is empty).
    fn send_with_fds(&mut self, msg: &EngineMessage, fds: Vec<OwnedFd>) {
        let at = self.out.len();
        self.send(msg);
        if !fds.is_empty() && self.out.len() > at {
            self.fds.push_back((at, fds));
        }
    }

    fn send(&mut self, msg: &EngineMessage) {
        // Replies are small and bounded (error texts are built from bounded inputs), so encoding
        // cannot exceed the frame limit; if it ever did, close rather than send a broken frame.
        if frame::encode(msg, &mut self.out).is_err() {
            self.state = State::Closing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcm_proto::sdk::{FetchFds, Hello, Keepalive, engine_message};

    fn client_frame(body: client_message::Body) -> Vec<u8> {
        let mut m = ClientMessage::new();
        m.body = Some(body);
        let mut out = Vec::new();
        frame::encode(&m, &mut out).unwrap();
        out
    }

    fn hello(version: u32, name: &str) -> Vec<u8> {
        let mut h = Hello::new();
        h.protocol_version = version;
        h.client_name = name.to_owned();
        client_frame(client_message::Body::Hello(h))
    }

    /// A handler with no engine behind it: every request is refused.
    struct Refuse;

    impl Handler for Refuse {
        fn hello(&mut self, _: u64, _: Transport, token: &str) -> Result<u32, Refusal> {
            match token {
                "wrong" => Err(Refusal::new(
                    ErrorCode::ERROR_CODE_UNAUTHENTICATED,
                    MeshErr::ClientConfigInval,
                    "a wrong access token",
                )),
                _ => Ok(5000),
            }
        }
        fn create_connection(
            &mut self,
            _: u64,
            _: &CreateConnection,
            _: Transport,
        ) -> Result<Created, Refusal> {
            Err(refusal())
        }
        fn fetch_pool(
            &mut self,
            _: u64,
            _: u64,
            _: u32,
            _: Transport,
        ) -> Result<(mcm_proto::sdk::PoolFd, Vec<OwnedFd>), Refusal> {
            Err(no_pool())
        }
        fn fetch_fds(&mut self, _: u64, _: &[u8]) -> Result<(u64, Vec<OwnedFd>), Refusal> {
            Err(refusal())
        }
        fn activate(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
            Err(refusal())
        }
        fn delete(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
            Err(refusal())
        }
        fn stats(&mut self, _: u64) -> Stats {
            Stats::new()
        }
    }

    fn no_pool() -> Refusal {
        Refusal::new(
            ErrorCode::ERROR_CODE_NOT_FOUND,
            MeshErr::ConnFailed,
            "no pool",
        )
    }

    fn refusal() -> Refusal {
        Refusal::new(
            ErrorCode::ERROR_CODE_NOT_FOUND,
            MeshErr::BadConnPtr,
            "no such connection",
        )
    }

    fn new_session(id: u64, now: Instant) -> Session {
        Session::new(id, now, Transport::Tcp)
    }

    trait ProcessRefused {
        fn process_r(&mut self, now: Instant) -> Flow;
    }

    impl ProcessRefused for Session {
        fn process_r(&mut self, now: Instant) -> Flow {
            self.process(now, &mut Refuse)
        }
    }

    fn replies(s: &mut Session) -> Vec<engine_message::Body> {
        let bytes = s.outgoing().to_vec();
        s.consume(bytes.len());
        let mut src = &bytes[..];
        let mut out = Vec::new();
        while let Some(m) = frame::read_message::<EngineMessage, _>(&mut src).unwrap() {
            out.push(m.body.unwrap());
        }
        out
    }

    fn error_of(body: &engine_message::Body) -> (ErrorCode, String) {
        match body {
            engine_message::Body::Error(e) => (e.code.enum_value().unwrap(), e.message.clone()),
            other => panic!("expected an Error, got {other:?}"),
        }
    }

    #[test]
    fn hello_then_keepalive() {
        let now = Instant::now();
        let mut s = new_session(7, now);
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "app"));
        assert_eq!(s.process_r(now), Flow::Continue);
        assert_eq!(s.state(), State::Ready);
        assert_eq!(s.client_name(), "app");
        let r = replies(&mut s);
        let engine_message::Body::HelloReply(h) = &r[0] else {
            panic!("{r:?}")
        };
        assert_eq!((h.protocol_version, h.session_id), (PROTOCOL_VERSION, 7));
        assert_eq!(h.engine_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(h.keepalive_interval_ms, 5000, "the handler's interval");

        let mut k = Keepalive::new();
        k.nonce = 99;
        s.decoder()
            .buffer(&client_frame(client_message::Body::Keepalive(k)));
        assert_eq!(s.process_r(now), Flow::Continue);
        let r = replies(&mut s);
        assert!(matches!(&r[0], engine_message::Body::Keepalive(k) if k.nonce == 99));
    }

    #[test]
    fn a_hello_the_handler_refuses_closes_the_session_with_its_reason() {
        let now = Instant::now();
        let mut s = new_session(3, now);
        let mut h = Hello::new();
        h.protocol_version = PROTOCOL_VERSION;
        h.access_token = "wrong".into();
        s.decoder()
            .buffer(&client_frame(client_message::Body::Hello(h)));
        assert_eq!(s.process_r(now), Flow::Close);
        let r = replies(&mut s);
        let engine_message::Body::Error(e) = &r[0] else {
            panic!("{r:?}")
        };
        assert!(e.fatal);
        assert_eq!(
            e.code.enum_value(),
            Ok(ErrorCode::ERROR_CODE_UNAUTHENTICATED)
        );
        assert_eq!(e.mesh_error, MeshErr::ClientConfigInval.code() as u32);
        assert_eq!(e.message, "a wrong access token");
        // An access token longer than allowed never reaches the handler.
        let mut s = new_session(4, now);
        let mut h = Hello::new();
        h.protocol_version = PROTOCOL_VERSION;
        h.access_token = "x".repeat(MAX_NAME_LEN + 1);
        s.decoder()
            .buffer(&client_frame(client_message::Body::Hello(h)));
        assert_eq!(s.process_r(now), Flow::Close);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_INVALID_ARGUMENT);
        assert!(msg.starts_with("access_token is 257 bytes long"), "{msg}");
    }

    #[test]
    fn a_silent_session_is_closed_at_its_keepalive_timeout() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(15);
        let mut s = new_session(5, t0);
        assert_eq!(
            s.check_keepalive(t0 + limit * 2, limit),
            None,
            "not before Hello (the handshake deadline covers that)"
        );
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "app"));
        s.process_r(t0);
        replies(&mut s);
        s.decoder()
            .buffer(&client_frame(client_message::Body::Keepalive(
                Keepalive::new(),
            )));
        let t1 = t0 + Duration::from_secs(10);
        s.process_r(t1);
        replies(&mut s);
        assert_eq!(s.check_keepalive(t1 + limit / 2, limit), None);
        let why = s.check_keepalive(t1 + limit, limit).unwrap();
        assert!(
            why.starts_with(
                "nothing heard from the client for 15000 ms while it holds connections"
            ),
            "{why}"
        );
        assert_eq!(s.state(), State::Closing);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_KEEPALIVE_TIMEOUT);
        assert_eq!(msg, why);
    }

    #[test]
    fn a_refused_request_is_answered_and_the_session_goes_on() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "app"));
        let mut create = CreateConnection::new();
        create.config_json = "{}".into();
        s.decoder()
            .buffer(&client_frame(client_message::Body::CreateConnection(
                create,
            )));
        s.decoder()
            .buffer(&client_frame(client_message::Body::Keepalive(
                Keepalive::new(),
            )));
        assert_eq!(s.process_r(now), Flow::Continue);
        let r = replies(&mut s);
        assert_eq!(r.len(), 3, "{r:?}");
        let engine_message::Body::Error(e) = &r[1] else {
            panic!("{r:?}")
        };
        assert!(!e.fatal);
        assert_eq!(e.mesh_error, MeshErr::BadConnPtr.code() as u32);
        assert!(matches!(r[2], engine_message::Body::Keepalive(_)));
    }

    /// Hands out two fds with every connection.
    struct WithFds;

    impl Handler for WithFds {
        fn hello(&mut self, _: u64, _: Transport, _: &str) -> Result<u32, Refusal> {
            Ok(0)
        }
        fn create_connection(
            &mut self,
            _: u64,
            _: &CreateConnection,
            _: Transport,
        ) -> Result<Created, Refusal> {
            let fd = std::fs::File::open("/dev/null").unwrap();
            Ok((
                ConnectionCreated::new(),
                vec![fd.into(), std::fs::File::open("/dev/null").unwrap().into()],
            ))
        }
        fn fetch_pool(
            &mut self,
            _: u64,
            _: u64,
            _: u32,
            _: Transport,
        ) -> Result<(mcm_proto::sdk::PoolFd, Vec<OwnedFd>), Refusal> {
            Err(no_pool())
        }
        fn fetch_fds(&mut self, _: u64, _: &[u8]) -> Result<(u64, Vec<OwnedFd>), Refusal> {
            Err(refusal())
        }
        fn activate(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
            Ok(())
        }
        fn delete(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
            Ok(())
        }
        fn stats(&mut self, _: u64) -> Stats {
            Stats::new()
        }
    }

    #[test]
    fn fds_are_queued_at_the_first_byte_of_their_frame() {
        let now = Instant::now();
        let mut s = Session::new(1, now, Transport::Unix);
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "app"));
        s.decoder()
            .buffer(&client_frame(client_message::Body::CreateConnection(
                CreateConnection::new(),
            )));
        s.process(now, &mut WithFds);
        let hello_len = s.next_fd_boundary();
        assert!(hello_len > 0 && hello_len < s.outgoing().len());
        assert!(s.fds_due().is_none(), "the HelloReply carries no fds");
        s.consume(hello_len - 1);
        assert_eq!(s.next_fd_boundary(), 1);
        s.consume(1);
        assert_eq!(s.fds_due().map(|f| f.len()), Some(2));
        s.fds_sent();
        assert!(s.fds_due().is_none());
        assert_eq!(s.next_fd_boundary(), s.outgoing().len());
        // Over TCP, FetchFds is refused without ending the session.
        let mut t = new_session(2, now);
        t.decoder().buffer(&hello(PROTOCOL_VERSION, "app"));
        t.decoder()
            .buffer(&client_frame(client_message::Body::FetchFds(
                FetchFds::new(),
            )));
        assert_eq!(t.process(now, &mut WithFds), Flow::Continue);
        let r = replies(&mut t);
        let engine_message::Body::Error(e) = &r[1] else {
            panic!("{r:?}")
        };
        assert!(
            !e.fatal && e.message.contains("Unix-socket session"),
            "{e:?}"
        );
    }

    #[test]
    fn wrong_version_is_refused_with_allowed_version() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder().buffer(&hello(PROTOCOL_VERSION + 1, "x"));
        assert_eq!(s.process_r(now), Flow::Close);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_UNSUPPORTED_VERSION);
        assert!(msg.contains("protocol version 2 is not supported"), "{msg}");
        assert!(msg.contains("speaks version 1"), "{msg}");
    }

    #[test]
    fn keepalive_before_hello_is_out_of_order() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder()
            .buffer(&client_frame(client_message::Body::Keepalive(
                Keepalive::new(),
            )));
        assert_eq!(s.process_r(now), Flow::Close);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE);
        assert!(
            msg.contains("unexpected Keepalive in state AwaitHello (allowed: Hello)"),
            "{msg}"
        );
    }

    #[test]
    fn second_hello_is_out_of_order() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "a"));
        s.decoder().buffer(&hello(PROTOCOL_VERSION, "a"));
        assert_eq!(s.process_r(now), Flow::Close);
        let r = replies(&mut s);
        assert_eq!(r.len(), 2);
        assert_eq!(error_of(&r[1]).0, ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE);
    }

    #[test]
    fn garbage_and_oversized_frames_get_an_error_then_close() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder().buffer(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
        assert_eq!(s.process_r(now), Flow::Close);
        assert_eq!(
            error_of(&replies(&mut s)[0]).0,
            ErrorCode::ERROR_CODE_MALFORMED_FRAME
        );

        let mut s = new_session(2, now);
        s.decoder().buffer(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.process_r(now), Flow::Close);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_OVERSIZED_FRAME);
        assert!(msg.contains("exceeds the maximum of 65536 bytes"), "{msg}");
    }

    #[test]
    fn overlong_name_is_invalid() {
        let now = Instant::now();
        let mut s = new_session(1, now);
        s.decoder()
            .buffer(&hello(PROTOCOL_VERSION, &"n".repeat(MAX_NAME_LEN + 1)));
        assert_eq!(s.process_r(now), Flow::Close);
        let (code, msg) = error_of(&replies(&mut s)[0]);
        assert_eq!(code, ErrorCode::ERROR_CODE_INVALID_ARGUMENT);
        assert!(
            msg.contains("client_name is 257 bytes long (allowed: at most 256)"),
            "{msg}"
        );
    }

    proptest::proptest! {
        /// Whatever bytes a client sends, in whatever pieces, the session never panics, and when
        /// it decides to close, the last frame it queued is an Error saying why.
        #[test]
        fn arbitrary_input_never_panics_and_closing_always_explains(
            prefix_hello in proptest::bool::ANY,
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            cut in 1usize..64,
        ) {
            let now = Instant::now();
            let mut s = new_session(1, now);
            let mut input = if prefix_hello { hello(PROTOCOL_VERSION, "p") } else { Vec::new() };
            input.extend_from_slice(&junk);
            let mut flow = Flow::Continue;
            for piece in input.chunks(cut) {
                s.decoder().buffer(piece);
                flow = s.process_r(now);
                if flow == Flow::Close {
                    break;
                }
            }
            let r = replies(&mut s);
            if flow == Flow::Close {
                let last = r.last().expect("a closing session queues an Error");
                proptest::prop_assert!(matches!(last, engine_message::Body::Error(e) if !e.message.is_empty()));
            } else {
                proptest::prop_assert!(r.iter().all(|b| !matches!(b, engine_message::Body::Error(_))));
            }
        }
    }

    #[test]
    fn silent_client_times_out_but_greeted_one_does_not() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(5);
        let mut quiet = new_session(1, t0);
        assert_eq!(
            quiet.check_handshake_deadline(t0 + Duration::from_secs(4), limit),
            Flow::Continue
        );
        assert_eq!(
            quiet.check_handshake_deadline(t0 + limit, limit),
            Flow::Close
        );
        assert!(
            error_of(&replies(&mut quiet)[0])
                .1
                .contains("no Hello within 5000 ms")
        );

        let mut greeted = new_session(2, t0);
        greeted.decoder().buffer(&hello(PROTOCOL_VERSION, "g"));
        greeted.process_r(t0);
        assert_eq!(
            greeted.check_handshake_deadline(t0 + limit * 10, limit),
            Flow::Continue
        );
    }
}
