//! The receiving end of a link: the group's source on the engine frames are written to.
//!
//! It listens on its TCP port for one sender. The sender's hello is checked against this group
//! (URN, provider, payload kind, capacities, endpoint count); a bad one is refused with the
//! reason and the link listens again. Once welcomed, the link grants the sender free slots of
//! the group's pool (credits, sent on the first endpoint), takes every remote write's tag as
//! untrusted input ([`Window::accept`]) and publishes the frames in sequence order, each slot
//! as the sender wrote it: no byte is copied. The peer closing its TCP connection, a
//! completion error or a tag that breaks the rules ends the link with its reason; the group
//! reclaims every slot the link held.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcm_control::dataplane::{EdgeCounters, LinkFault, LinkStage, Violation};
use mcm_proto::link::{
    CREDITS_LEN, Credit, Credits, LinkHello, LinkRefused, LinkReply, LinkWelcome, Tag, link_reply,
};
use mcm_proto::shm::map::Access;

use super::fabric::{FiAddr, Mr, is_remote_write};
use super::handshake::{Channel, Expect, check_hello};
use super::link::{
    Completions, Contexts, Fabric, HANDSHAKE_TIMEOUT, LIVENESS, LinkMemory, POLL_INTERVAL, Waker,
    watch_cq,
};
use super::window::{WINDOW, Window, Written};
use crate::group::{Frame, IO_BATCH, Source, SourceIo};

/// Credit messages that can be in flight at once.
const OUTBOX: usize = WINDOW / mcm_proto::link::CREDITS_PER_MESSAGE + 2;

/// What the receiving end serves, owned.
pub struct Serves {
    /// The group.
    pub urn: String,
    /// The provider's name in hellos.
    pub provider: &'static str,
    /// The group's payload kind.
    pub payload_kind: &'static str,
}

enum State {
    Listening,
    Handshake {
        chan: Channel<TcpStream>,
        deadline: Instant,
    },
    Streaming {
        chan: Channel<TcpStream>,
        peer: FiAddr,
    },
}

/// Credit messages being sent: buffers that stay put until their send completes.
struct Outbox {
    bufs: Box<[[u8; CREDITS_LEN]; OUTBOX]>,
    /// Bytes of each message; 0: the buffer is free.
    lens: [usize; OUTBOX],
    /// Whether each message was handed to the provider (else it waits to be posted).
    posted: [bool; OUTBOX],
    ctx: Contexts<OUTBOX>,
    mr: Option<Mr>,
}

/// The group's source on a receiving engine.
pub struct RdmaSource {
    name: String,
    // Field order is drop order: the endpoints close before the memory they write.
    fabric: Fabric,
    outbox: Outbox,
    memory: LinkMemory,
    listener: TcpListener,
    waker: Waker,
    state: State,
    window: Window,
    serves: Serves,
    /// Where slot 0 starts in the sender's writes, and the pool's key.
    base: u64,
    key: u64,
    counters: Arc<EdgeCounters>,
    completions: Completions,
    checked: Instant,
    /// A rule the sender broke: the link ends once what came before is published.
    fault: Option<Violation>,
    /// When a refused handshake was last logged.
    refusal_logged: Option<Instant>,
}

impl RdmaSource {
    /// Takes the link's objects, maps and registers the pool behind `pool_fd`, and waits for
    /// its sender on `listener`.
    ///
    /// # Errors
    /// What could not be set up.
    pub fn build(
        name: String,
        fabric: Fabric,
        pool_fd: BorrowedFd<'_>,
        geometry: mcm_proto::shm::pool::PoolGeometry,
        listener: TcpListener,
        serves: Serves,
        counters: Arc<EdgeCounters>,
    ) -> Result<Self, String> {
        let access = u64::from(libfabric_sys::FI_REMOTE_WRITE);
        let memory = LinkMemory::map(&fabric, pool_fd, geometry, Access::ReadWrite, Some(access))?;
        let mr = memory.mr.as_ref().expect("registered above");
        let base = match fabric.domain.info().virt_addr() {
            true => mr.region().0,
            false => 0,
        };
        let key = mr.key();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("link listener: {e}"))?;
        let waker = Waker::new()?;
        waker.watch(listener.as_fd(), false);
        let mut bufs = Box::new([[0u8; CREDITS_LEN]; OUTBOX]);
        let out_mr = if fabric.domain.info().needs_local_mr() {
            // SAFETY: the buffers live in the outbox, which drops after `fabric`'s endpoints.
            let mr = unsafe {
                fabric.register(
                    bufs.as_mut_ptr().cast(),
                    size_of_val(&*bufs),
                    u64::from(libfabric_sys::FI_SEND),
                )
            }?;
            Some(mr)
        } else {
            None
        };
        let window = Window::new(
            geometry.slot_count,
            geometry.payload_capacity,
            geometry.metadata_capacity,
        );
        Ok(Self {
            name,
            fabric,
            outbox: Outbox {
                bufs,
                lens: [0; OUTBOX],
                posted: [false; OUTBOX],
                ctx: Contexts::default(),
                mr: out_mr,
            },
            memory,
            listener,
            waker,
            state: State::Listening,
            window,
            serves,
            base,
            key,
            counters,
            completions: Completions::default(),
            checked: Instant::now(),
            fault: None,
            refusal_logged: None,
        })
    }

    /// The port it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn welcome(&self) -> Result<LinkWelcome, LinkFault> {
        let g = self.memory.view.geometry();
        let addresses = self
            .fabric
            .names()
            .map_err(|e| LinkFault::Handshake(mcm_control::dataplane::ShortText::new(&e)))?;
        Ok(LinkWelcome {
            addresses,
            slot_count: g.slot_count,
            slot_stride: g.slot_stride(),
            metadata_offset: g.metadata_offset(),
            payload_capacity: g.payload_capacity,
            metadata_capacity: g.metadata_capacity,
            base: self.base,
            key: self.key,
            ..Default::default()
        })
    }

    /// Takes a connection waiting on the listener: the sender's, or one too many (closed at
    /// once while a sender holds the link).
    fn accept(&mut self, now: Instant) -> u32 {
        let Ok((stream, _)) = self.listener.accept() else {
            return 0;
        };
        if !matches!(self.state, State::Listening) || stream.set_nonblocking(true).is_err() {
            return 1; // dropped: closed
        }
        let _ = stream.set_nodelay(true);
        self.waker.watch(stream.as_fd(), false);
        self.state = State::Handshake {
            chan: Channel::new(stream),
            deadline: now + HANDSHAKE_TIMEOUT,
        };
        1
    }

    /// One step of the handshake; `Ok(true)` when it moved.
    fn handshake(&mut self, now: Instant) -> Result<bool, LinkFault> {
        let State::Handshake { chan, deadline } = &mut self.state else {
            return Ok(false);
        };
        let hello = match chan.receive::<LinkHello>(LinkStage::Handshake) {
            Ok(Some(h)) => h,
            Ok(None) if now < *deadline => return Ok(false),
            Ok(None) | Err(_) => {
                // A sender that went away or never spoke: listen again.
                self.counters_refused();
                self.listen_again();
                return Ok(true);
            }
        };
        let g = self.memory.view.geometry();
        let expect = Expect {
            urn: &self.serves.urn,
            provider: self.serves.provider,
            payload_capacity: g.payload_capacity,
            metadata_capacity: g.metadata_capacity,
            payload_kind: self.serves.payload_kind,
            endpoints: self.fabric.eps.len(),
        };
        let answer = check_hello(&hello, &expect).and_then(|()| {
            self.fabric
                .insert_peers(&hello.addresses)
                .map_err(|f| f.to_string())
        });
        let peers = match answer {
            Ok(p) => p,
            Err(reason) => {
                let reply = LinkReply {
                    reply: Some(link_reply::Reply::Refused(LinkRefused {
                        reason: reason.clone(),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let mut from = None;
                if let State::Handshake { chan, .. } = &mut self.state {
                    let _ = chan.queue(&reply);
                    let _ = chan.flush(LinkStage::Handshake);
                    from = chan.stream().peer_addr().ok();
                }
                // A sender retries with back-off: at most one line a second says why.
                if self
                    .refusal_logged
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    self.refusal_logged = Some(now);
                    let from = from.map_or_else(|| "?".to_owned(), |a| a.to_string());
                    tracing::warn!("{}: refused the sender at {from}: {reason}", self.name);
                }
                self.counters_refused();
                self.listen_again();
                return Ok(true);
            }
        };
        let reply = LinkReply {
            reply: Some(link_reply::Reply::Welcome(self.welcome()?)),
            ..Default::default()
        };
        let State::Handshake { mut chan, .. } =
            std::mem::replace(&mut self.state, State::Listening)
        else {
            unreachable!("matched above")
        };
        chan.queue(&reply)?;
        chan.flush(LinkStage::Handshake)?;
        watch_cq(&self.waker, &self.fabric.cq);
        self.state = State::Streaming {
            chan,
            peer: peers[0],
        };
        self.checked = now;
        EdgeCounters::add(&self.counters.links_up, 1);
        Ok(true)
    }

    fn counters_refused(&self) {
        EdgeCounters::add(&self.counters.handshakes_refused, 1);
    }

    fn listen_again(&mut self) {
        if let State::Handshake { chan, .. } | State::Streaming { chan, .. } = &self.state {
            self.waker.unwatch(chan.stream().as_fd());
        }
        self.state = State::Listening;
    }

    /// Grants free slots to the sender, up to the window and the source's quota.
    fn grant(&mut self, io: &mut SourceIo<'_>) -> Result<u32, LinkFault> {
        let State::Streaming { peer, .. } = self.state else {
            return Ok(0);
        };
        let stride = self.memory.view.geometry().slot_stride();
        let mut granted = 0;
        while self.window.granted() < WINDOW && io.can_take() > 0 {
            let Some(i) = self.outbox.lens.iter().position(|&l| l == 0) else {
                break;
            };
            let mut msg = Credits::new(self.key);
            while !msg.is_full() && self.window.granted() < WINDOW && io.can_take() > 0 {
                let Some(slot) = io.alloc() else { break };
                self.window.grant(slot);
                msg.push(Credit {
                    slot,
                    addr: self.base + u64::from(slot) * stride,
                });
            }
            if msg.is_empty() {
                break;
            }
            granted += msg.entries().len() as u32;
            self.outbox.lens[i] = msg.encode(&mut self.outbox.bufs[i]);
            self.outbox.posted[i] = false;
        }
        self.post_credits(peer)?;
        Ok(granted)
    }

    /// Hands waiting credit messages to the provider (one that lacks resources waits).
    fn post_credits(&mut self, peer: FiAddr) -> Result<(), LinkFault> {
        let desc = self.fabric.desc(self.outbox.mr.as_ref());
        for i in 0..OUTBOX {
            if self.outbox.lens[i] == 0 || self.outbox.posted[i] {
                continue;
            }
            let ctx = self.outbox.ctx.ptr(i);
            let buf = self.outbox.bufs[i].as_ptr();
            // SAFETY: the buffer and its context stay untouched until the send's completion
            // frees them (lens[i] = 0), and live as long as the endpoint.
            let r = unsafe { self.fabric.eps[0].send(buf, self.outbox.lens[i], desc, peer, ctx) };
            match r {
                Ok(()) => self.outbox.posted[i] = true,
                Err(e) if e.is_again() => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads completions: remote writes are checked and put in order, sent credits free their
    /// buffers. A tag that breaks the rules stops the reading with its fault (what was accepted
    /// before it is still published).
    fn complete(&mut self, budget: usize) -> Result<u32, Violation> {
        let max = budget.min(IO_BATCH);
        let n = self
            .fabric
            .cq
            .read(&mut self.completions.0[..max])
            .map_err(|e| Violation::Link(e.into()))?;
        for c in &self.completions.0[..n] {
            if is_remote_write(c) {
                let written = self.written(c.data);
                if let Err(f) = self.window.accept(c.data, written) {
                    EdgeCounters::add(&self.counters.frames_refused, 1);
                    self.fault = Some(Violation::Link(f));
                    break;
                }
                EdgeCounters::add(&self.counters.packets, 1);
            } else if let Some(i) = self.outbox.ctx.index(c.op_context) {
                self.outbox.lens[i] = 0;
                self.outbox.posted[i] = false;
            }
        }
        Ok(n as u32)
    }

    /// What the header of the slot a tag names says (nothing valid for a slot outside the
    /// pool: the window refuses such a tag first).
    fn written(&self, data: u64) -> Written {
        match self.memory.view.header(u32::from(Tag::decode(data).slot)) {
            Ok(h) => Written {
                payload_len: h.payload_len,
                metadata_len: h.metadata_len,
                timestamp_ns: h.timestamp_ns,
            },
            Err(_) => Written {
                payload_len: u32::MAX,
                metadata_len: u32::MAX,
                timestamp_ns: 0,
            },
        }
    }

    /// Publishes the frames that are next in sequence.
    fn publish(&mut self, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let mut n = 0;
        while io.room() > 0 {
            let Some(f) = self.window.pop() else { break };
            io.publish_checked(io.pool_id(), Frame { seq: 0, ..f })?;
            EdgeCounters::add(&self.counters.frames, 1);
            EdgeCounters::add(&self.counters.bytes, u64::from(f.payload_len));
            n += 1;
        }
        Ok(n)
    }

    /// Whether the sender still holds the link (checked every [`LIVENESS`]).
    fn alive(&mut self, now: Instant) -> Result<(), Violation> {
        if now.duration_since(self.checked) < LIVENESS {
            return Ok(());
        }
        self.checked = now;
        self.accept(now); // one too many: closed
        match &mut self.state {
            State::Streaming { chan, .. } => match chan.peer_closed() {
                true => Err(Violation::Link(LinkFault::Closed(LinkStage::Streaming))),
                false => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl Drop for RdmaSource {
    fn drop(&mut self) {
        // Dropped on the control thread once the group has taken every slot back.
        EdgeCounters::set(&self.counters.slots_held, 0);
    }
}

impl Source for RdmaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let mut work = 0;
        match self.state {
            State::Listening => Ok(self.accept(now)),
            State::Handshake { .. } => {
                work += u32::from(self.handshake(now).map_err(Violation::Link)?);
                Ok(work)
            }
            State::Streaming { .. } => {
                work += self.complete(budget as usize)?;
                work += self.publish(io)?;
                if let Some(v) = self.fault {
                    return Err(v);
                }
                work += self.grant(io).map_err(Violation::Link)?;
                self.alive(now)?;
                EdgeCounters::set(&self.counters.slots_held, self.window.granted() as u64);
                Ok(work)
            }
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.waker.fd())
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match &self.state {
            State::Listening => None,
            State::Handshake { deadline, .. } => Some(*deadline),
            State::Streaming { .. } if self.fabric.cq.wait_fd().is_none() => {
                Some(now + POLL_INTERVAL)
            }
            State::Streaming { .. } => Some(self.checked + LIVENESS),
        }
    }

    fn prepare_park(&mut self) -> bool {
        match self.state {
            State::Streaming { .. } => {
                !self.fabric.may_park() && self.fabric.cq.wait_fd().is_some()
            }
            _ => false,
        }
    }
}
