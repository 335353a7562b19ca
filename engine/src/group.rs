//! A local multipoint group as an lcore port: zero-copy fan-out from one source to many sinks.
//!
//! The group owns its frame [`Pool`]. Every slot is in one of three states:
//!
//! - **free**: in the pool's free list;
//! - **at the source**: lent to the sender (in its free ring, being written, or in its frame ring);
//! - **shared**: published; held by the sinks whose bit is set in the slot's mask.
//!
//! A frame the source publishes is stamped (sequence number, lengths, its timestamp) into the
//! slot's header and its descriptor goes to every sink whose quota has room; a sink that is full
//! drops the frame and counts it, nobody waits. When the last sink releases the slot it is free
//! again. Nothing is copied: every sink reads the same slot through its own read-only mapping.
//!
//! Everything a client writes is checked before use: the pool id, the slot index, the slot's
//! state (a sender may only publish a slot it was lent, a sink may only release a slot it holds),
//! and the lengths. A client that breaks a rule, or corrupts a ring's indices, is detached on the
//! spot (its slots reclaimed) and reported with [`Event::ConnFailed`]; the group goes on.
//!
//! A group may also have a [`Bridge`]: its network end. A sink bridge (ST 2110 tx) is offered
//! every published frame after the SDK sinks and holds the slot until it has sent it; a source
//! bridge (ST 2110 rx) fills free slots and publishes them as the SDK source would.
//!
//! The poll loop does not allocate: slot states, masks and the member table are sized at
//! creation; batches live on the stack.

pub mod bridge;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use rustix::event::epoll;

use crossbeam_channel::Sender;
use mcm_control::dataplane::{Attachment, ConnCounters, ConnId, Event, Notifier, Role};
use mcm_proto::shm::conn::{Doorbell, EngineSide};
use mcm_proto::shm::desc::Descriptor;
use mcm_proto::shm::pool::{Pool, SlotHeader};

use crate::lcore::{Port, PortMsg, Progress};
pub use bridge::{Bridge, BridgeIo, Frame};

/// Most sinks one group can have: one bit each in a slot's mask.
pub const MAX_SINKS: usize = 64;
/// Descriptors moved per ring operation.
const BATCH: usize = 32;

/// A change to a running group, sent to its port through the lcore's command ring.
#[derive(Debug)]
pub enum GroupMsg {
    /// A connection joins.
    Attach(Attachment),
    /// A connection leaves; its slots return to the pool.
    Detach {
        /// The connection.
        conn: ConnId,
    },
}

/// Where a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    AtSource,
    Shared,
}

/// One connection of the group.
#[derive(Debug)]
struct Member {
    conn: ConnId,
    side: EngineSide,
    quota: u32,
    /// Slots it holds now (source: lent; sink: delivered and not released).
    held: u32,
    counters: Arc<ConnCounters>,
}

/// How the port reports a lying client to the control thread.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The lcores' event channel.
    pub events: Sender<Event>,
    /// Wakes the control thread.
    pub notifier: Option<Notifier>,
}

/// A multipoint group, polled by one lcore.
pub struct GroupPort {
    name: String,
    pool: Pool,
    bell: Doorbell,
    states: Vec<SlotState>,
    masks: Vec<u64>,
    source: Option<Member>,
    sinks: Vec<Option<Member>>,
    /// Bit `i` set when `sinks[i]` is occupied (MAX_SINKS is 64), so a poll visits only them.
    sink_mask: u64,
    seq: u64,
    /// Where the next poll starts scanning sinks.
    next_sink: usize,
    reporter: Reporter,
    bridge: Option<BridgeState>,
    /// An epoll set of the doorbell and the bridge's fd, when the bridge has one.
    wake: Option<OwnedFd>,
}

/// The group's bridge and the slots it holds.
struct BridgeState {
    bridge: Box<dyn Bridge>,
    held: Vec<bool>,
    count: u32,
    quota: u32,
}

impl GroupPort {
    /// A group with no members over `pool`; its connections ring `bell`.
    pub fn new(urn: &str, pool: Pool, bell: Doorbell, reporter: Reporter) -> Self {
        let slots = pool.geometry().slot_count as usize;
        let mut sinks = Vec::with_capacity(MAX_SINKS);
        sinks.resize_with(MAX_SINKS, || None);
        Self {
            bridge: None,
            wake: None,
            name: format!("group {urn:?}"),
            pool,
            bell,
            states: vec![SlotState::Free; slots],
            masks: vec![0; slots],
            source: None,
            sinks,
            sink_mask: 0,
            seq: 0,
            next_sink: 0,
            reporter,
        }
    }

    /// Adds the group's network end, which may hold up to `quota` slots at once.
    ///
    /// # Errors
    /// The bridge's fd cannot be watched together with the doorbell.
    pub fn with_bridge(mut self, bridge: Box<dyn Bridge>, quota: u32) -> std::io::Result<Self> {
        if let Some(fd) = bridge.wake_fd() {
            let set = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            let flags = epoll::EventFlags::IN;
            epoll::add(&set, self.bell.fd(), epoll::EventData::new_u64(0), flags)?;
            epoll::add(&set, fd, epoll::EventData::new_u64(1), flags)?;
            self.wake = Some(set);
        }
        self.name = format!("{} + {}", self.name, bridge.name());
        self.bridge = Some(BridgeState {
            bridge,
            held: vec![false; self.states.len()],
            count: 0,
            quota,
        });
        Ok(self)
    }

    /// Number of free slots (for tests and logs).
    pub fn free_slots(&self) -> u32 {
        self.pool.available()
    }

    fn attach(&mut self, a: Attachment) {
        let conn = a.conn;
        let member = Member {
            conn,
            side: a.side,
            quota: a.quota,
            held: 0,
            counters: a.counters,
        };
        match a.role {
            Role::Source => {
                if self.source.is_some() {
                    // The registry allows one source; never two. Dropping the block closes it.
                    return self.report(conn, "the group already has a source".to_owned());
                }
                self.source = Some(member);
                self.lend_to_source();
            }
            Role::Sink => match self.sinks.iter().position(Option::is_none) {
                Some(i) => {
                    self.sinks[i] = Some(member);
                    self.sink_mask |= 1 << i;
                }
                None => {
                    return self.report(conn, format!("the group has {MAX_SINKS} sinks already"));
                }
            },
        }
        self.emit(Event::Attached { conn });
    }

    fn detach(&mut self, conn: ConnId) {
        if self.source.as_ref().is_some_and(|m| m.conn == conn) {
            self.source = None;
            for slot in 0..self.states.len() {
                if self.states[slot] == SlotState::AtSource {
                    self.release_slot(slot);
                }
            }
            return;
        }
        if let Some(i) = self.sink_index(conn) {
            self.sinks[i] = None;
            let bit = 1u64 << i;
            self.sink_mask &= !bit;
            for slot in 0..self.masks.len() {
                if self.masks[slot] & bit != 0 {
                    self.masks[slot] &= !bit;
                    if self.unheld(slot) {
                        self.release_slot(slot);
                    }
                }
            }
        }
    }

    fn sink_index(&self, conn: ConnId) -> Option<usize> {
        self.sinks
            .iter()
            .position(|s| s.as_ref().is_some_and(|m| m.conn == conn))
    }

    /// Whether no sink (SDK or bridge) holds the shared `slot` any more.
    fn unheld(&self, slot: usize) -> bool {
        self.masks[slot] == 0 && !self.bridge.as_ref().is_some_and(|b| b.held[slot])
    }

    /// Returns a slot to the free list.
    fn release_slot(&mut self, slot: usize) {
        self.states[slot] = SlotState::Free;
        self.masks[slot] = 0;
        // Cannot fail: every non-free slot was allocated from this pool.
        let _ = self.pool.free(slot as u32);
    }

    /// Detaches `conn` for breaking the protocol and tells the control thread.
    fn fail(&mut self, conn: ConnId, reason: String) {
        self.detach(conn);
        self.report(conn, reason);
    }

    fn report(&self, conn: ConnId, reason: String) {
        self.emit(Event::ConnFailed { conn, reason });
    }

    fn emit(&self, ev: Event) {
        if self.reporter.events.send(ev).is_ok()
            && let Some(n) = &self.reporter.notifier
        {
            n.notify();
        }
    }

    /// Takes released slots back from every sink, starting at a different sink each poll so a
    /// small budget does not always favour the first ones.
    fn poll_sinks(&mut self, budget: u32) -> u32 {
        let mut work = 0;
        let start = self.next_sink;
        self.next_sink = (self.next_sink + 1) % MAX_SINKS;
        // Occupied sinks, from `start` on (a rotated mask); a quiet release ring (nothing to
        // take back, no corrupt index to find) is skipped before the batch is even set up.
        let mut batch = None;
        let mut order = self.sink_mask.rotate_right(start as u32);
        while order != 0 {
            let k = order.trailing_zeros() as usize;
            order &= order - 1;
            let i = (start + k) % MAX_SINKS;
            let Some(sink) = self.sinks[i].as_mut() else {
                continue;
            };
            let room = (budget - work).min(BATCH as u32) as usize;
            if room == 0 {
                break;
            }
            if sink.side.is_quiet() {
                continue;
            }
            let batch = batch.get_or_insert([Descriptor::default(); BATCH]);
            let n = sink.side.pop_into(&mut batch[..room]);
            let corrupt = sink.side.is_corrupt();
            let conn = sink.conn;
            work += n as u32;
            for d in &batch[..n] {
                if let Err(why) = self.take_back(i, d) {
                    self.fail(conn, why);
                    break;
                }
            }
            if corrupt && self.sinks[i].is_some() {
                self.fail(conn, "its release ring's indices are corrupt".to_owned());
            }
        }
        work
    }

    /// Sink `i` releases the slot of `d`.
    fn take_back(&mut self, i: usize, d: &Descriptor) -> Result<(), String> {
        let slot = self.check_slot(d)?;
        let bit = 1u64 << i;
        if self.states[slot] != SlotState::Shared || self.masks[slot] & bit == 0 {
            return Err(format!("it released slot {slot}, which it does not hold"));
        }
        self.masks[slot] &= !bit;
        if let Some(sink) = self.sinks[i].as_mut() {
            sink.held -= 1;
        }
        if self.unheld(slot) {
            self.release_slot(slot);
        }
        Ok(())
    }

    /// The slot index of `d` after checking its pool and range.
    fn check_slot(&self, d: &Descriptor) -> Result<usize, String> {
        let count = self.states.len();
        if d.pool != self.pool.id() {
            return Err(format!(
                "its descriptor names pool {} (allowed: this group's pool {})",
                d.pool,
                self.pool.id()
            ));
        }
        if d.slot as usize >= count {
            return Err(format!(
                "its descriptor names slot {} (allowed: 0..{count})",
                d.slot
            ));
        }
        Ok(d.slot as usize)
    }

    /// Publishes the source's frames and lends it free slots.
    fn poll_source(&mut self, budget: u32) -> u32 {
        let Some(src) = self.source.as_mut() else {
            return 0;
        };
        if src.side.is_quiet() {
            return self.lend_to_source();
        }
        let mut batch = [Descriptor::default(); BATCH];
        let room = budget.min(BATCH as u32) as usize;
        let n = src.side.pop_into(&mut batch[..room]);
        let corrupt = src.side.is_corrupt();
        let conn = src.conn;
        for d in &batch[..n] {
            if let Err(why) = self.publish(d) {
                self.fail(conn, why);
                return n as u32;
            }
        }
        if corrupt {
            self.fail(conn, "its frame ring's indices are corrupt".to_owned());
            return n as u32;
        }
        n as u32 + self.lend_to_source()
    }

    /// Stamps the source's frame `d` and hands it to every sink with room.
    fn publish(&mut self, d: &Descriptor) -> Result<(), String> {
        let slot = self.check_slot(d)?;
        if self.states[slot] != SlotState::AtSource {
            return Err(format!("it sent slot {slot}, which was not lent to it"));
        }
        let g = self.pool.geometry();
        if d.payload_len > g.payload_capacity || d.metadata_len > g.metadata_capacity {
            return Err(format!(
                "slot {slot}: payload_len {} / metadata_len {} (allowed: at most {} / {})",
                d.payload_len, d.metadata_len, g.payload_capacity, g.metadata_capacity
            ));
        }
        if let Some(src) = self.source.as_mut() {
            src.held -= 1;
            src.counters.count_frame(u64::from(d.payload_len));
        }
        self.fan_out(slot, d.payload_len, d.metadata_len, d.timestamp_ns);
        Ok(())
    }

    /// Stamps the frame in `slot` (allocated, not yet shared) and hands it to every sink with
    /// room, the bridge last; a frame nobody took goes back to the pool.
    fn fan_out(&mut self, slot: usize, payload_len: u32, metadata_len: u32, timestamp_ns: u64) {
        let seq = self.seq;
        self.seq += 1;
        let header = SlotHeader {
            seq,
            timestamp_ns,
            payload_len,
            metadata_len,
            reserved: [0; 5],
        };
        // Cannot fail: the slot is allocated and in range.
        let _ = self.pool.set_header(slot as u32, &header);
        let out = Descriptor {
            pool: self.pool.id(),
            slot: slot as u32,
            payload_len,
            metadata_len,
            seq,
            timestamp_ns,
        };
        let d = &out;
        let mut mask = 0u64;
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            let Some(sink) = sink else { continue };
            if sink.held < sink.quota && sink.side.push(out).is_ok() {
                sink.held += 1;
                mask |= 1 << i;
                sink.counters.count_frame(u64::from(d.payload_len));
            } else {
                sink.counters.count_drop();
            }
        }
        self.masks[slot] = mask;
        if let Some(b) = self.bridge.as_mut()
            && b.bridge.role() == Role::Sink
            && b.count < b.quota
        {
            let frame = Frame {
                slot: slot as u32,
                payload_len,
                timestamp_ns,
                seq,
            };
            if b.bridge.offer(frame) {
                b.held[slot] = true;
                b.count += 1;
            }
        }
        if self.unheld(slot) {
            self.release_slot(slot);
        } else {
            self.states[slot] = SlotState::Shared;
        }
    }

    /// Polls the bridge, then publishes what it received and frees what it sent.
    fn poll_bridge(&mut self, now: Instant, budget: u32) -> u32 {
        let Some(b) = self.bridge.as_mut() else {
            return 0;
        };
        let mut io = BridgeIo::new(&mut self.pool, &mut b.held, &mut b.count, b.quota);
        let work = b.bridge.poll(now, budget, &mut io);
        let (published, n_pub) = (io.published_array(), io.published().len());
        let (released, n_rel) = (io.released_array(), io.released().len());
        for &slot in &released[..n_rel] {
            let slot = slot as usize;
            if self.states[slot] == SlotState::Shared && self.unheld(slot) {
                self.release_slot(slot);
            }
        }
        for f in &published[..n_pub] {
            self.fan_out(f.slot as usize, f.payload_len, 0, f.timestamp_ns);
        }
        work + n_pub as u32
    }

    /// Lends free slots to the source up to its quota; returns how many.
    fn lend_to_source(&mut self) -> u32 {
        let Some(src) = self.source.as_mut() else {
            return 0;
        };
        let g = self.pool.geometry();
        // With a sink bridge (an ST 2110 sender, paced by the network) the sender is held back
        // instead of dropping frames: its frames in flight (lent plus queued at the bridge)
        // stay within its quota and the bridge's, so a get blocks until the bridge has sent a
        // frame and the bridge never has to refuse one.
        let (in_flight, cap) = match &self.bridge {
            Some(b) if b.bridge.role() == Role::Sink => {
                (src.held + b.count, src.quota.min(b.quota))
            }
            _ => (src.held, src.quota),
        };
        let want = (cap.saturating_sub(in_flight) as usize)
            .min(src.side.free_slots())
            .min(BATCH);
        let mut batch = [Descriptor::default(); BATCH];
        let mut n = 0;
        while n < want {
            let Some(slot) = self.pool.alloc() else { break };
            self.states[slot as usize] = SlotState::AtSource;
            batch[n] = Descriptor {
                pool: self.pool.id(),
                slot,
                payload_len: g.payload_capacity,
                metadata_len: g.metadata_capacity,
                seq: 0,
                timestamp_ns: 0,
            };
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        // All fit unless the client moved its consumer index backwards since `free_slots`
        // (it lies; only it suffers): what was not lent goes back to the pool.
        let pushed = src.side.push_slice(&batch[..n]);
        src.held += pushed as u32;
        for d in &batch[pushed..n] {
            self.release_slot(d.slot as usize);
        }
        pushed as u32
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.source.iter().chain(self.sinks.iter().flatten())
    }
}

impl Port for GroupPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32) -> Progress {
        let released = self.poll_sinks(budget);
        let published = self.poll_source(budget.saturating_sub(released).max(1));
        let bridged = self.poll_bridge(now, budget);
        match released + published + bridged {
            0 => Progress::Idle,
            n => Progress::Worked(n.min(budget)),
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.wake {
            Some(set) => Some(set.as_fd()),
            None => Some(self.bell.fd()),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.bridge.as_ref().and_then(|b| b.bridge.next_deadline())
    }

    fn prepare_park(&mut self) -> bool {
        let mut pending = false;
        for m in self.members() {
            pending |= m.side.prepare_sleep();
        }
        pending
    }

    fn end_park(&mut self) {
        for m in self.members() {
            m.side.end_sleep();
        }
    }

    fn message(&mut self, msg: PortMsg) {
        match msg.downcast::<GroupMsg>().map(|m| *m) {
            Ok(GroupMsg::Attach(a)) => self.attach(a),
            Ok(GroupMsg::Detach { conn }) => self.detach(conn),
            Err(_) => tracing::error!("{}: ignored a message that is not a GroupMsg", self.name),
        }
    }
}

#[cfg(test)]
mod tests;
