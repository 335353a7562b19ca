//! The sending end of a link: a sink of the group on the engine frames come from.
//!
//! It dials the receiving engine's link port (a non-blocking connect the lcore steps), offers
//! its hello and takes the welcome: the receiver's pool geometry, key and endpoint addresses,
//! each checked ([`RemotePool::from_welcome`]). Then every frame offered goes out as one
//! `fi_writemsg` from the slot it sits in (header and payload, then metadata) into a slot the
//! receiver granted, with remote CQ data naming slot, sequence and length; frames are striped
//! over the link's endpoints by sequence. The slot is released when the write's local
//! completion comes back. The link paces its group: a sender that can wait is held to the
//! slots the receiver grants. Until the link streams, offered frames are dropped (counted) and
//! released at the next poll: a link that is down holds no slot of the group.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use mcm_control::dataplane::{EdgeCounters, LinkFault, LinkStage, ShortText, Violation};
use mcm_proto::link::{CREDITS_LEN, Credits, LinkHello, LinkReply, MAX_ENDPOINTS, Tag, link_reply};
use mcm_proto::shm::map::Access;
use mcm_proto::shm::pool::{PoolGeometry, SlotHeader};
use rustix::net::{self as rnet, AddressFamily, SocketFlags, SocketType};

use super::credits::{CreditQueue, RemotePool};
use super::fabric::{FiAddr, Mr, is_recv};
use super::handshake::Channel;
use super::link::{
    Completions, Contexts, Fabric, HANDSHAKE_TIMEOUT, LIVENESS, LinkMemory, POLL_INTERVAL, Waker,
    watch_cq,
};
use crate::group::{Fifo, Frame, FrameQueue, IO_BATCH, SINK_QUEUE, Sink, SinkIo};

/// Credit messages that can be received at once (receives posted on the first endpoint).
const INBOX: usize = 8;

const HEADER: usize = size_of::<SlotHeader>();

enum State {
    /// Not dialed yet (the first poll dials).
    Dial {
        peer: SocketAddr,
    },
    /// Between two states, for a moment.
    Moving,
    Connecting {
        sock: OwnedFd,
        deadline: Instant,
    },
    Handshake {
        chan: Channel<TcpStream>,
        deadline: Instant,
    },
    Streaming {
        chan: Channel<TcpStream>,
        peers: [FiAddr; MAX_ENDPOINTS],
        credits: Box<CreditQueue>,
    },
}

/// Receive buffers for credit messages.
struct Inbox {
    bufs: Box<[[u8; CREDITS_LEN]; INBOX]>,
    ctx: Contexts<INBOX>,
    mr: Option<Mr>,
}

/// A test hook: the link's frame `n` goes out with a tag that names slot 65535, never granted
/// by a receiver whose pool is smaller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Corrupt {
    /// Which frame (counted from 0 on the link), if any.
    pub frame: Option<u64>,
}

/// The group's sink on a sending engine.
pub struct RdmaSink {
    name: String,
    // Field order is drop order: the endpoints close before the memory they read.
    fabric: Fabric,
    inbox: Inbox,
    memory: LinkMemory,
    waker: Waker,
    state: State,
    hello: LinkHello,
    /// Frames offered, not written yet.
    queue: FrameQueue,
    /// Per write context: the slot being written.
    writing: [Option<u32>; SINK_QUEUE],
    free: Fifo<u8, SINK_QUEUE>,
    ctx: Contexts<SINK_QUEUE>,
    /// Slots whose writes completed, waiting for room to be released.
    done: Fifo<u32, SINK_QUEUE>,
    /// Frames written on this link: the next one's sequence.
    seq: u64,
    counters: Arc<EdgeCounters>,
    completions: Completions,
    checked: Instant,
    corrupt: Corrupt,
}

impl RdmaSink {
    /// Opens the link's objects, maps the pool behind `pool_fd` (registered where the provider
    /// wants local descriptors) and starts dialing `peer`.
    ///
    /// # Errors
    /// What could not be set up.
    pub fn build(
        name: String,
        fabric: Fabric,
        pool_fd: BorrowedFd<'_>,
        geometry: PoolGeometry,
        peer: SocketAddr,
        hello: LinkHello,
        counters: Arc<EdgeCounters>,
    ) -> Result<Self, String> {
        let local = fabric.domain.info().needs_local_mr();
        let access = local.then_some(u64::from(libfabric_sys::FI_WRITE));
        let memory = LinkMemory::map(&fabric, pool_fd, geometry, Access::ReadOnly, access)?;
        let mut bufs = Box::new([[0u8; CREDITS_LEN]; INBOX]);
        let in_mr = if local {
            // SAFETY: the buffers live in the inbox, which drops after `fabric`'s endpoints.
            let mr = unsafe {
                fabric.register(
                    bufs.as_mut_ptr().cast(),
                    size_of_val(&*bufs),
                    u64::from(libfabric_sys::FI_RECV),
                )
            }?;
            Some(mr)
        } else {
            None
        };
        let waker = Waker::new()?;
        let mut free = Fifo::default();
        for i in 0..SINK_QUEUE as u8 {
            free.push(i);
        }
        let now = Instant::now();
        Ok(Self {
            name,
            fabric,
            inbox: Inbox {
                bufs,
                ctx: Contexts::default(),
                mr: in_mr,
            },
            memory,
            waker,
            state: State::Dial { peer },
            hello,
            queue: FrameQueue::default(),
            writing: [None; SINK_QUEUE],
            free,
            ctx: Contexts::default(),
            done: Fifo::default(),
            seq: 0,
            counters,
            completions: Completions::default(),
            checked: now,
            corrupt: Corrupt::default(),
        })
    }

    /// Sets the test hook that corrupts one frame's tag.
    pub fn with_corrupt(mut self, corrupt: Corrupt) -> Self {
        self.corrupt = corrupt;
        self
    }

    /// Starts the TCP connect.
    fn dial(&mut self, now: Instant) -> Result<bool, LinkFault> {
        let State::Dial { peer } = self.state else {
            return Ok(false);
        };
        let sock = dial(peer).map_err(|e| LinkFault::Connect {
            errno: e.raw_os_error(),
        })?;
        self.waker.watch(sock.as_fd(), true);
        self.state = State::Connecting {
            sock,
            deadline: now + HANDSHAKE_TIMEOUT,
        };
        Ok(true)
    }

    /// One step of the connect; `Ok(true)` when it moved.
    fn connect(&mut self, now: Instant) -> Result<bool, LinkFault> {
        let State::Connecting { sock, deadline } = &self.state else {
            return Ok(false);
        };
        let ready = rustix::event::poll(
            &mut [rustix::event::PollFd::new(
                sock,
                rustix::event::PollFlags::OUT,
            )],
            Some(&rustix::time::Timespec::default()),
        )
        .unwrap_or(0);
        if ready == 0 {
            return match now < *deadline {
                true => Ok(false),
                false => Err(LinkFault::Timeout {
                    stage: LinkStage::Connecting,
                    secs: HANDSHAKE_TIMEOUT.as_secs() as u32,
                }),
            };
        }
        if let Ok(Err(errno)) = rnet::sockopt::socket_error(sock) {
            return Err(LinkFault::Connect {
                errno: errno.raw_os_error(),
            });
        }
        let State::Connecting { sock, .. } = std::mem::replace(&mut self.state, State::Moving)
        else {
            unreachable!("matched above")
        };
        self.waker.unwatch(sock.as_fd());
        let stream = TcpStream::from(sock);
        let _ = stream.set_nodelay(true);
        self.waker.watch(stream.as_fd(), false);
        let mut chan = Channel::new(stream);
        chan.queue(&self.hello)?;
        chan.flush(LinkStage::Handshake)?;
        self.state = State::Handshake {
            chan,
            deadline: now + HANDSHAKE_TIMEOUT,
        };
        Ok(true)
    }

    /// One step of the handshake; `Ok(true)` when it moved.
    fn handshake(&mut self, now: Instant) -> Result<bool, LinkFault> {
        let State::Handshake { chan, deadline } = &mut self.state else {
            return Ok(false);
        };
        chan.flush(LinkStage::Handshake)?;
        let reply = match chan.receive::<LinkReply>(LinkStage::Handshake)? {
            Some(r) => r,
            None if now < *deadline => return Ok(false),
            None => {
                return Err(LinkFault::Timeout {
                    stage: LinkStage::Handshake,
                    secs: HANDSHAKE_TIMEOUT.as_secs() as u32,
                });
            }
        };
        let welcome = match reply.reply {
            Some(link_reply::Reply::Welcome(w)) => w,
            Some(link_reply::Reply::Refused(r)) => {
                EdgeCounters::add(&self.counters.handshakes_refused, 1);
                return Err(LinkFault::Handshake(ShortText::new(&format!(
                    "refused: {}",
                    r.reason
                ))));
            }
            _ => {
                return Err(LinkFault::Handshake(ShortText::new(
                    "the peer answered neither welcome nor refusal",
                )));
            }
        };
        let g = self.memory.view.geometry();
        let pool = RemotePool::from_welcome(&welcome, g.payload_capacity, g.metadata_capacity)
            .map_err(|e| LinkFault::Handshake(ShortText::new(&e)))?;
        let peers = self.fabric.insert_peers(&welcome.addresses)?;
        let State::Handshake { chan, .. } = std::mem::replace(&mut self.state, State::Moving)
        else {
            unreachable!("matched above")
        };
        for i in 0..INBOX {
            self.post_inbox(i)?;
        }
        watch_cq(&self.waker, &self.fabric.cq);
        self.state = State::Streaming {
            chan,
            peers,
            credits: Box::new(CreditQueue::new(pool)),
        };
        self.checked = now;
        EdgeCounters::add(&self.counters.links_up, 1);
        Ok(true)
    }

    fn post_inbox(&mut self, i: usize) -> Result<(), LinkFault> {
        let desc = self.fabric.desc(self.inbox.mr.as_ref());
        let ctx = self.inbox.ctx.ptr(i);
        let buf = self.inbox.bufs[i].as_mut_ptr();
        // SAFETY: the buffer and its context are left alone until the receive completes, and
        // live as long as the endpoint.
        let r = unsafe { self.fabric.eps[0].recv(buf, CREDITS_LEN, desc, ctx) };
        r.map_err(LinkFault::from)
    }

    /// Reads completions: finished writes free their slots, credit messages are checked and
    /// taken.
    fn complete(&mut self) -> Result<u32, LinkFault> {
        let room = SINK_QUEUE - self.done.len();
        let max = room.min(IO_BATCH);
        if max == 0 {
            return Ok(0);
        }
        let n = self.fabric.cq.read(&mut self.completions.0[..max])?;
        for k in 0..n {
            let c = self.completions.0[k];
            if let Some(i) = self.ctx.index(c.op_context) {
                if let Some(slot) = self.writing[i].take() {
                    self.done.push(slot);
                    self.free.push(i as u8);
                }
            } else if let Some(i) = self.inbox.ctx.index(c.op_context)
                && is_recv(&c)
            {
                let msg = Credits::decode(&self.inbox.bufs[i][..c.len.min(CREDITS_LEN)])
                    .map_err(|_| LinkFault::BadCredit { slot: 0, addr: 0 })?;
                if let State::Streaming { credits, .. } = &mut self.state {
                    credits.accept(&msg)?;
                }
                self.post_inbox(i)?;
            }
        }
        Ok(n as u32)
    }

    /// Writes queued frames while credits and contexts last.
    fn write(&mut self) -> Result<u32, LinkFault> {
        let State::Streaming { peers, credits, .. } = &mut self.state else {
            return Ok(0);
        };
        let n_eps = self.fabric.eps.len() as u64;
        let meta_at = self.memory.view.geometry().metadata_offset() as usize;
        let desc = self.fabric.desc(self.memory.mr.as_ref());
        let mut n = 0;
        while let (Some(f), Some(remote), Some(i)) =
            (self.queue.front(), credits.peek(), self.free.front())
        {
            let at = self.memory.slot_ptr(f.slot).as_ptr();
            // SAFETY: metadata_offset + metadata_len lies inside the slot (the group checked
            // the lengths against the capacities).
            let meta = unsafe { at.add(meta_at) };
            let local = [
                (at.cast_const(), HEADER + f.payload_len as usize, desc),
                (meta.cast_const(), f.metadata_len as usize, desc),
            ];
            let (segs, count) = credits
                .pool()
                .segments(remote, f.payload_len, f.metadata_len);
            let mut tag = Tag {
                slot: remote as u16,
                seq: self.seq as u16,
                payload_len: f.payload_len,
            };
            if self.corrupt.frame == Some(self.seq) {
                tag.slot = u16::MAX;
            }
            let k = (self.seq % n_eps) as usize;
            let ctx = self.ctx.ptr(usize::from(i));
            // SAFETY: the slot is held by this sink until the write's completion releases it,
            // and the group does not write a slot a sink holds; the context is ours until then.
            let r = unsafe {
                self.fabric.eps[k].write_data(
                    &local[..count],
                    peers[k],
                    &segs[..count],
                    tag.encode(),
                    ctx,
                )
            };
            match r {
                Ok(()) => {}
                Err(e) if e.is_again() => break,
                Err(e) => return Err(e.into()),
            }
            self.queue.pop();
            credits.take();
            self.free.pop();
            self.writing[usize::from(i)] = Some(f.slot);
            self.seq += 1;
            EdgeCounters::add(&self.counters.frames, 1);
            EdgeCounters::add(&self.counters.bytes, u64::from(f.payload_len));
            n += 1;
        }
        Ok(n)
    }

    /// Releases slots whose writes completed, as the poll's room allows.
    fn release(&mut self, io: &mut SinkIo<'_>) -> u32 {
        let mut n = 0;
        while io.room() > 0 {
            let Some(slot) = self.done.pop() else { break };
            io.release(slot);
            n += 1;
        }
        n
    }

    fn alive(&mut self, now: Instant) -> Result<(), LinkFault> {
        if now.duration_since(self.checked) < LIVENESS {
            return Ok(());
        }
        self.checked = now;
        match &mut self.state {
            State::Streaming { chan, .. } => match chan.peer_closed() {
                true => Err(LinkFault::Closed(LinkStage::Streaming)),
                false => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn held(&self) -> usize {
        self.queue.len() + (SINK_QUEUE - self.free.len()) + self.done.len()
    }
}

impl Drop for RdmaSink {
    fn drop(&mut self) {
        // Dropped on the control thread once the group has taken every slot back.
        EdgeCounters::set(&self.counters.slots_held, 0);
    }
}

impl Sink for RdmaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, frame: Frame) -> bool {
        if matches!(self.state, State::Streaming { .. }) && self.queue.push(frame) {
            return true;
        }
        // Not streaming (or, never while pacing, no room): dropped, and released at the next
        // poll, so a link that is down holds the group back for no longer than that.
        EdgeCounters::add(&self.counters.frames_dropped, 1);
        self.done.push(frame.slot)
    }

    fn missed(&mut self, _frame: Frame) {
        EdgeCounters::add(&self.counters.frames_dropped, 1);
    }

    fn pool_move(&self) -> crate::group::PoolMove {
        // Its memory registration is of the old pool's mapping.
        crate::group::PoolMove::Rebuild
    }

    fn poll(&mut self, now: Instant, _budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation> {
        let step = |s: &mut Self| -> Result<u32, LinkFault> {
            Ok(match s.state {
                State::Moving => 0,
                State::Dial { .. } => u32::from(s.dial(now)?),
                State::Connecting { .. } => u32::from(s.connect(now)?),
                State::Handshake { .. } => u32::from(s.handshake(now)?),
                State::Streaming { .. } => {
                    let n = s.complete()? + s.write()?;
                    s.alive(now)?;
                    n
                }
            })
        };
        let r = step(self);
        let released = self.release(io);
        EdgeCounters::set(&self.counters.slots_held, self.held() as u64);
        Ok(r.map_err(Violation::Link)? + released)
    }

    fn paces_source(&self) -> bool {
        // The link sets the rate: a sender that can wait does, rather than see frames dropped
        // here while the receiving engine grants no slot.
        true
    }

    fn pending(&self) -> bool {
        !self.done.is_empty() || (matches!(self.state, State::Streaming { .. }) && self.held() > 0)
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.waker.fd())
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match &self.state {
            State::Dial { .. } | State::Moving => Some(now),
            State::Connecting { deadline, .. } | State::Handshake { deadline, .. } => {
                Some(*deadline)
            }
            State::Streaming { .. } if self.fabric.cq.wait_fd().is_none() => {
                Some(now + POLL_INTERVAL)
            }
            State::Streaming { .. } => Some(self.checked + LIVENESS),
        }
    }

    fn prepare_park(&mut self) -> bool {
        if !self.done.is_empty() {
            return true;
        }
        match self.state {
            State::Streaming { .. } => {
                !self.fabric.may_park() && self.fabric.cq.wait_fd().is_some()
            }
            _ => false,
        }
    }
}

/// Starts a non-blocking TCP connect to `peer`.
fn dial(peer: SocketAddr) -> rustix::io::Result<OwnedFd> {
    let family = match peer {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let sock = rnet::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rnet::connect(&sock, &peer) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(sock),
        Err(e) => Err(e),
    }
}
