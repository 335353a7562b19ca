//! The link's handshake over its TCP connection, as a non-blocking exchange an lcore drives a
//! step per poll: queue a message, flush what the socket takes, take a message once it has
//! arrived whole. And what the receiving end checks in a hello before it answers.

use std::io::{self, Read, Write};

use mcm_control::dataplane::{LinkFault, LinkStage, ShortText};
use mcm_proto::frame::{self, FrameDecoder, FrameError};
use mcm_proto::link::{LinkHello, MAX_ADDRESS_LEN, MAX_ENDPOINTS, VERSION};
use protobuf::Message;

/// Framed messages over a non-blocking stream.
#[derive(Debug)]
pub struct Channel<S> {
    stream: S,
    out: Vec<u8>,
    sent: usize,
    decoder: FrameDecoder,
}

impl<S: Read + Write> Channel<S> {
    /// A channel over `stream` (already non-blocking).
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            out: Vec::new(),
            sent: 0,
            decoder: FrameDecoder::new(),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Queues `msg` to be sent by [`flush`](Self::flush).
    ///
    /// # Errors
    /// A message over the framing's limit.
    pub fn queue<M: Message>(&mut self, msg: &M) -> Result<(), LinkFault> {
        frame::encode(msg, &mut self.out).map_err(|e| text_fault(&e))
    }

    /// Sends what the socket takes now; `Ok(true)` once everything queued is sent.
    ///
    /// # Errors
    /// [`LinkFault::Closed`] when the peer has gone.
    pub fn flush(&mut self, stage: LinkStage) -> Result<bool, LinkFault> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(LinkFault::Closed(stage)),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(LinkFault::Closed(stage)),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// The next message, once it has arrived whole (one read per call).
    ///
    /// # Errors
    /// [`LinkFault::Closed`] when the peer closed; [`LinkFault::Handshake`] when what arrived is
    /// not a valid `M` (or announces more than the framing's limit).
    pub fn receive<M: Message>(&mut self, stage: LinkStage) -> Result<Option<M>, LinkFault> {
        if let Some(m) = self.take()? {
            return Ok(Some(m));
        }
        match self.decoder.read_from(&mut self.stream) {
            Ok(0) => Err(LinkFault::Closed(stage)),
            Ok(_) => self.take(),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(_) => Err(LinkFault::Closed(stage)),
        }
    }

    fn take<M: Message>(&mut self) -> Result<Option<M>, LinkFault> {
        match self.decoder.next_frame() {
            Ok(Some(body)) => frame::decode(body).map(Some).map_err(|e| text_fault(&e)),
            Ok(None) => Ok(None),
            Err(e) => Err(text_fault(&e)),
        }
    }

    /// Whether the peer has closed its end (checked without blocking; bytes that arrive after
    /// the handshake are a protocol error, reported as a close too).
    pub fn peer_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            // 0: end of stream; otherwise a byte nobody should send after the handshake.
            Ok(n) => n <= b.len(),
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }
}

fn text_fault(e: &FrameError) -> LinkFault {
    LinkFault::Handshake(ShortText::new(&format!("handshake: {e}")))
}

/// What the receiving end of a link serves, for checking a hello.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The group.
    pub urn: &'a str,
    /// Its provider (`"tcp"`, ...).
    pub provider: &'a str,
    /// Its slots' capacities.
    pub payload_capacity: u32,
    /// Its slots' metadata capacity.
    pub metadata_capacity: u32,
    /// What one frame is.
    pub payload_kind: &'a str,
    /// Its endpoints.
    pub endpoints: usize,
}

/// Checks a sender's hello against what this end serves.
///
/// # Errors
/// What is wrong and what is allowed: the text of the refusal sent back.
pub fn check_hello(h: &LinkHello, e: &Expect<'_>) -> Result<(), String> {
    if h.version != VERSION {
        return Err(format!(
            "link protocol version {} (allowed: {VERSION})",
            h.version
        ));
    }
    if h.group_urn != e.urn {
        return Err(format!(
            "this link serves group {:?}, not {:?}",
            e.urn, h.group_urn
        ));
    }
    if h.provider != e.provider {
        return Err(format!(
            "provider {:?} (this link uses {:?})",
            h.provider, e.provider
        ));
    }
    if h.payload_kind != e.payload_kind {
        return Err(format!(
            "payload {:?} (the group carries {:?})",
            h.payload_kind, e.payload_kind
        ));
    }
    if h.payload_capacity > e.payload_capacity || h.metadata_capacity > e.metadata_capacity {
        return Err(format!(
            "frames of up to {} payload / {} metadata bytes (allowed: at most {} / {})",
            h.payload_capacity, h.metadata_capacity, e.payload_capacity, e.metadata_capacity
        ));
    }
    let n = h.addresses.len();
    if n != e.endpoints || n == 0 || n > MAX_ENDPOINTS {
        return Err(format!(
            "{n} endpoint addresses (allowed: exactly {}, this link's endpoints)",
            e.endpoints
        ));
    }
    if let Some(a) = h
        .addresses
        .iter()
        .find(|a| a.is_empty() || a.len() > MAX_ADDRESS_LEN)
    {
        return Err(format!(
            "an endpoint address of {} bytes (allowed: 1..={MAX_ADDRESS_LEN})",
            a.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use mcm_proto::link::{LinkReply, LinkWelcome, link_reply};

    use super::*;

    fn hello() -> LinkHello {
        LinkHello {
            version: VERSION,
            group_urn: "g".into(),
            provider: "tcp".into(),
            payload_capacity: 5_184_000,
            metadata_capacity: 0,
            payload_kind: "video".into(),
            addresses: vec![vec![1; 16], vec![2; 16]],
            ..Default::default()
        }
    }

    fn expect() -> Expect<'static> {
        Expect {
            urn: "g",
            provider: "tcp",
            payload_capacity: 5_184_000,
            metadata_capacity: 64,
            payload_kind: "video",
            endpoints: 2,
        }
    }

    #[test]
    fn a_hello_that_does_not_fit_is_refused_with_the_reason() {
        assert_eq!(check_hello(&hello(), &expect()), Ok(()));
        let refuse = |f: fn(&mut LinkHello)| {
            let mut h = hello();
            f(&mut h);
            check_hello(&h, &expect()).unwrap_err()
        };
        assert_eq!(
            refuse(|h| h.version = 9),
            "link protocol version 9 (allowed: 1)"
        );
        assert_eq!(
            refuse(|h| h.group_urn = "x".into()),
            "this link serves group \"g\", not \"x\""
        );
        assert!(refuse(|h| h.provider = "shm".into()).contains("\"shm\""));
        assert!(refuse(|h| h.payload_kind = "audio".into()).contains("carries \"video\""));
        assert!(refuse(|h| h.payload_capacity += 1).contains("allowed: at most 5184000 / 64"));
        assert!(refuse(|h| h.metadata_capacity = 65).contains("65 metadata"));
        assert!(refuse(|h| h.addresses.pop().map(drop).unwrap_or(())).contains("1 endpoint"));
        assert!(refuse(|h| h.addresses[1].clear()).contains("0 bytes"));
        assert!(refuse(|h| h.addresses[0] = vec![0; MAX_ADDRESS_LEN + 1]).contains("513 bytes"));
    }

    /// Drives both ends until `done` says so, at most 10 s.
    fn until(mut step: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !step() {
            assert!(Instant::now() < deadline, "the exchange did not finish");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn messages_cross_a_real_non_blocking_connection_and_a_close_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        dialer.set_nonblocking(true).unwrap();
        accepted.set_nonblocking(true).unwrap();
        let (mut a, mut b) = (Channel::new(dialer), Channel::new(accepted));
        let stage = LinkStage::Handshake;
        assert_eq!(b.receive::<LinkHello>(stage), Ok(None), "nothing yet");
        let mut big = hello();
        big.addresses = vec![vec![7; MAX_ADDRESS_LEN]; MAX_ENDPOINTS];
        a.queue(&big).unwrap();
        let mut got = None;
        until(|| {
            a.flush(stage).unwrap();
            got = b.receive::<LinkHello>(stage).unwrap();
            got.is_some()
        });
        assert_eq!(got.unwrap(), big);
        let reply = LinkReply {
            reply: Some(link_reply::Reply::Welcome(LinkWelcome {
                slot_count: 3,
                ..Default::default()
            })),
            ..Default::default()
        };
        b.queue(&reply).unwrap();
        let mut got = None;
        until(|| {
            b.flush(stage).unwrap();
            got = a.receive::<LinkReply>(stage).unwrap();
            got.is_some()
        });
        assert_eq!(got.unwrap(), reply);
        assert!(!a.peer_closed(), "b is still there");
        drop(b);
        until(|| a.peer_closed());
        assert_eq!(a.receive::<LinkReply>(stage), Err(LinkFault::Closed(stage)));
    }

    #[test]
    fn garbage_from_the_peer_is_a_handshake_fault_that_names_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut dialer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut b = Channel::new(accepted);
        dialer.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        let mut got = Ok(None);
        until(|| {
            got = b.receive::<LinkHello>(LinkStage::Handshake);
            got != Ok(None)
        });
        let Err(LinkFault::Handshake(text)) = got else {
            panic!("{got:?}")
        };
        assert!(text.as_str().contains("exceeds the maximum"), "{text}");
    }
}
