//! A client speaking the SDK protocol by hand over the Unix socket: to misbehave, and to hold
//! the very fds the engine hands out.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use mcm_proto::sdk::engine_message::Body;
use mcm_proto::sdk::{
    Activate, ClientMessage, ConnectionCreated, ConnectionKind, CreateConnection, EngineMessage,
};
use mcm_proto::shm::conn::{ClientSide, ConnKind};

use super::Engine;

/// A client speaking the SDK protocol by hand over the Unix socket, to misbehave.
pub struct Raw {
    pub sock: std::os::unix::net::UnixStream,
    pub decoder: mcm_proto::frame::FrameDecoder,
}

impl Raw {
    pub fn connect(e: &Engine) -> Raw {
        let sock = std::os::unix::net::UnixStream::connect(&e.unix).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut r = Raw {
            sock,
            decoder: mcm_proto::frame::FrameDecoder::new(),
        };
        let mut h = mcm_proto::sdk::Hello::new();
        h.protocol_version = mcm_proto::PROTOCOL_VERSION;
        let mut m = ClientMessage::new();
        m.set_hello(h);
        assert!(matches!(r.request(&m).0, Body::HelloReply(_)));
        r
    }

    pub fn request(&mut self, m: &ClientMessage) -> (Body, Vec<OwnedFd>) {
        mcm_proto::frame::write_message(&mut self.sock, m).unwrap();
        self.recv()
    }

    pub fn recv(&mut self) -> (Body, Vec<OwnedFd>) {
        let mut fds = Vec::new();
        loop {
            if let Some(body) = self.decoder.next_frame().unwrap() {
                let msg: EngineMessage = mcm_proto::frame::decode(body).unwrap();
                return (msg.body.unwrap(), fds);
            }
            let mut buf = [0u8; 4096];
            let (n, got) = mcm_proto::shm::map::recv_fds(self.sock.as_fd(), &mut buf, 8).unwrap();
            assert!(n > 0, "the engine closed the session");
            fds.extend(got);
            self.decoder.buffer(&buf[..n]);
        }
    }

    /// Creates and activates a connection; returns its id and its mapped block.
    pub fn connect_group(&mut self, kind: ConnectionKind, json: &str) -> (u64, ClientSide) {
        let (c, fds) = self.create(kind, json);
        let id = c.conn_id;
        let [_pool, block, cb, eb]: [OwnedFd; 4] = fds.try_into().unwrap();
        let side = Self::attach(kind, block, cb, eb);
        self.activate(id);
        (id, side)
    }

    /// Creates a connection: the engine's answer and the fds (the pool's first, unless it
    /// comes later).
    pub fn create(
        &mut self,
        kind: ConnectionKind,
        json: &str,
    ) -> (ConnectionCreated, Vec<OwnedFd>) {
        let mut m = ClientMessage::new();
        m.set_create_connection(CreateConnection {
            kind: kind.into(),
            config_json: json.to_owned(),
            ..CreateConnection::new()
        });
        let (Body::ConnectionCreated(c), fds) = self.request(&m) else {
            panic!("no ConnectionCreated")
        };
        (c, fds)
    }

    /// Maps a connection's block from its three fds.
    pub fn attach(kind: ConnectionKind, block: OwnedFd, cb: OwnedFd, eb: OwnedFd) -> ClientSide {
        let k = match kind {
            ConnectionKind::CONNECTION_KIND_TX => ConnKind::Tx,
            _ => ConnKind::Rx,
        };
        ClientSide::attach(block.as_fd(), cb, eb, k).unwrap()
    }

    /// Activates connection `id`.
    pub fn activate(&mut self, id: u64) {
        let mut m = ClientMessage::new();
        m.set_activate(Activate {
            conn_id: id,
            ..Activate::new()
        });
        assert!(matches!(self.request(&m).0, Body::Activated(_)));
    }
}
