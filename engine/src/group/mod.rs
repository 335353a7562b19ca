//! A multipoint group as an lcore port: zero-copy fan-out from one source edge to many sink
//! edges, of any transport.
//!
//! The group owns its frame [`Pool`]. Every slot is
//!
//! - **free**: in the pool's free list;
//! - **at the source**: taken by the source edge (lent to an SDK sender, or being filled by a
//!   network receiver) — one bit per slot in `source_held`;
//! - **shared**: published; held by the sinks whose bit is set in the slot's mask.
//!
//! A frame the source publishes is stamped (sequence number, lengths, its timestamp) into the
//! slot's header and offered to every sink whose quota has room; a sink that is full drops the
//! frame and counts it, nobody waits — except that a source whose producer can wait (an SDK
//! sender) is held to the room of the sinks that [pace](Sink::paces_source) the group (ST 2110
//! senders), so it blocks instead of their dropping. When the last sink releases the slot it is
//! free again. Nothing is copied: every sink reads the same slot.
//!
//! Edges ([`edge`]) attach and detach while the group streams. A detached source first
//! publishes what it has accepted; a detached sink first finishes what it took (an ST 2110
//! sender sends its queue), then leaves with [`Event::EdgeDetached`]. An edge that breaks its
//! rules is detached at once (its slots reclaimed) with [`Event::EdgeFailed`]. Removed edges and
//! the group itself are dropped on the control thread (the lcore hands them back), so no
//! `munmap`, `close` or `unlink` runs on an lcore.
//!
//! The poll loop does not allocate: slot tables and the sink table are sized at creation;
//! batches live on the stack.

pub mod edge;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mcm_control::dataplane::{EdgeFailure, EdgeId, Event, Notifier, Violation};
use mcm_proto::shm::conn::Doorbell;
use mcm_proto::shm::pool::{Pool, SlotHeader};
use rustix::event::epoll;

use crate::lcore::{Garbage, Port, PortMsg, Progress};
pub use edge::{
    Fifo, Frame, FrameQueue, IO_BATCH, PoolMove, SINK_QUEUE, Sink, SinkIo, Source, SourceIo,
};

/// Most sinks one group can have: one bit each in a slot's mask.
pub const MAX_SINKS: usize = 64;
/// Longest a detached sink may take to finish the frames it holds; then it is cut off.
pub const LEAVE_LIMIT: Duration = Duration::from_secs(10);
/// Flush rounds of a detached source (each publishes up to [`IO_BATCH`] frames): bounds the
/// work of a source that lies about having more.
const FLUSH_ROUNDS: usize = 64;
/// Longest a move to a new pool waits for the sinks that read through the engine's mapping to
/// finish their frames of the old one; then they are set up again.
pub const POOL_MOVE_LIMIT: Duration = Duration::from_secs(2);
/// Epoll data of the group's doorbell in its wake set (edges use their id, never 0).
const BELL: u64 = 0;

/// An edge built for a group (on the control thread), with the most slots it may hold.
pub enum Part {
    /// Feeds the group.
    Source(Box<dyn Source>, u32),
    /// Takes the group's frames.
    Sink(Box<dyn Sink>, u32),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Source(s, q) => write!(f, "Source({}, quota {q})", s.name()),
            Part::Sink(s, q) => write!(f, "Sink({}, quota {q})", s.name()),
        }
    }
}

/// A change to a running group, sent to its port through the lcore's command ring.
#[derive(Debug)]
pub enum GroupMsg {
    /// An edge joins.
    Attach {
        /// Its id.
        edge: EdgeId,
        /// The edge.
        part: Part,
    },
    /// An edge leaves (see the module documentation).
    Detach {
        /// Its id.
        edge: EdgeId,
    },
    /// The group moves to this pool (see [`Command::ReplacePool`](mcm_control::dataplane::Command)).
    ReplacePool(Pool),
}

/// How the port reports to the control thread and hands it what must be dropped there.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The lcores' event channel.
    pub events: Sender<Event>,
    /// Wakes the control thread.
    pub notifier: Option<Notifier>,
    /// Where removed edges go to be dropped on the control thread.
    pub garbage: Sender<Garbage>,
}

impl Reporter {
    fn emit(&self, ev: Event) {
        if self.events.send(ev).is_ok()
            && let Some(n) = &self.notifier
        {
            n.notify();
        }
    }

    fn discard(&self, g: Garbage) {
        // The control thread is gone only at shutdown; then dropping here is all that is left.
        let _ = self.garbage.send(g);
    }
}

/// The group's source edge.
struct SourceSlot {
    edge: EdgeId,
    imp: Box<dyn Source>,
    quota: u32,
    /// Slots it holds now (its bits in `source_held`).
    count: u32,
}

/// One sink edge.
struct SinkSlot {
    edge: EdgeId,
    imp: Box<dyn Sink>,
    quota: u32,
    /// Slots it holds now (its bit in the slots' masks).
    held: u32,
    /// Detached and finishing what it holds, until this time.
    leaving: Option<Instant>,
}

/// A multipoint group, polled by one lcore.
pub struct GroupPort {
    name: String,
    pool: Pool,
    /// Per slot: held by the source.
    source_held: Vec<bool>,
    /// Per slot: a bit per sink holding it.
    masks: Vec<u64>,
    /// What the source published and a sink released in the current poll.
    published: [Frame; IO_BATCH],
    released: [u32; IO_BATCH],
    source: Option<SourceSlot>,
    sinks: Vec<Option<SinkSlot>>,
    /// Bit `i` set when `sinks[i]` is occupied (polled).
    sink_mask: u64,
    /// Occupied sinks that are offered frames (not leaving).
    offer_mask: u64,
    /// Offered sinks that pace the source.
    paced_mask: u64,
    seq: u64,
    /// Where the next poll starts scanning sinks.
    next_sink: usize,
    /// The source goes first on every other poll, so neither side always gets the budget.
    source_first: bool,
    /// Sinks leaving (detached, still finishing).
    leaving: u32,
    /// Destroyed: every edge is leaving; the port is done when none is left.
    closing: bool,
    /// A pool to move to, and until when the move waits for draining sinks.
    next_pool: Option<(Pool, Instant)>,
    /// A source that attached while a move waited: attached once the move is done.
    waiting_source: Option<(EdgeId, Box<dyn Source>, u32)>,
    reporter: Reporter,
    /// Keeps the doorbell the group's SDK connections ring open (it is in `wake`).
    _bell: Doorbell,
    /// An epoll set of the doorbell and the edges' wake fds.
    wake: OwnedFd,
}

impl GroupPort {
    /// A group with no edges over `pool`; its SDK connections ring `bell`.
    ///
    /// # Errors
    /// The wake set cannot be created.
    pub fn new(urn: &str, pool: Pool, bell: Doorbell, reporter: Reporter) -> std::io::Result<Self> {
        let slots = pool.geometry().slot_count as usize;
        let mut sinks = Vec::with_capacity(MAX_SINKS);
        sinks.resize_with(MAX_SINKS, || None);
        let wake = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &wake,
            bell.fd(),
            epoll::EventData::new_u64(BELL),
            epoll::EventFlags::IN,
        )?;
        Ok(Self {
            name: format!("group {urn:?}"),
            pool,
            source_held: vec![false; slots],
            masks: vec![0; slots],
            published: [Frame::default(); IO_BATCH],
            released: [0; IO_BATCH],
            source: None,
            sinks,
            sink_mask: 0,
            offer_mask: 0,
            paced_mask: 0,
            seq: 0,
            next_sink: 0,
            source_first: false,
            leaving: 0,
            closing: false,
            next_pool: None,
            waiting_source: None,
            reporter,
            _bell: bell,
            wake,
        })
    }

    /// Number of free slots (for tests and logs).
    pub fn free_slots(&self) -> u32 {
        self.pool.available()
    }

    fn watch(&self, edge: EdgeId, fd: Option<BorrowedFd<'_>>) {
        if let Some(fd) = fd {
            let data = epoll::EventData::new_u64(edge);
            if let Err(e) = epoll::add(&self.wake, fd, data, epoll::EventFlags::IN) {
                // Control path, once per edge: the edge works, it just cannot wake a nap.
                tracing::warn!("{}: edge {edge} cannot wake the lcore: {e}", self.name);
            }
        }
    }

    fn unwatch(&self, fd: Option<BorrowedFd<'_>>) {
        if let Some(fd) = fd {
            let _ = epoll::delete(&self.wake, fd);
        }
    }

    fn attach(&mut self, edge: EdgeId, part: Part, now: Instant) {
        if self.closing {
            self.reporter.discard(Box::new(part));
            return self.reporter.emit(Event::EdgeFailed {
                edge,
                reason: EdgeFailure::NoGroup,
            });
        }
        match part {
            Part::Source(imp, quota) => {
                if self.source.is_some() || self.waiting_source.is_some() {
                    self.reporter.discard(Box::new(imp));
                    return self.reporter.emit(Event::EdgeFailed {
                        edge,
                        reason: EdgeFailure::SecondSource,
                    });
                }
                if self.next_pool.is_some() {
                    // It writes the new pool: it starts when the move is done.
                    self.waiting_source = Some((edge, imp, quota));
                    return self.try_move(now);
                }
                self.watch(edge, imp.wake_fd());
                self.source = Some(SourceSlot {
                    edge,
                    imp,
                    quota,
                    count: 0,
                });
            }
            Part::Sink(imp, quota) => {
                let Some(i) = self.sinks.iter().position(Option::is_none) else {
                    self.reporter.discard(Box::new(imp));
                    return self.reporter.emit(Event::EdgeFailed {
                        edge,
                        reason: EdgeFailure::TooManySinks { limit: MAX_SINKS },
                    });
                };
                self.watch(edge, imp.wake_fd());
                let bit = 1u64 << i;
                self.sink_mask |= bit;
                self.offer_mask |= bit;
                if imp.paces_source() {
                    self.paced_mask |= bit;
                }
                self.sinks[i] = Some(SinkSlot {
                    edge,
                    imp,
                    quota,
                    held: 0,
                    leaving: None,
                });
            }
        }
        self.reporter.emit(Event::EdgeAttached { edge });
        // A new source gets to work at once (an SDK sender is lent its slots).
        self.poll_source(now, IO_BATCH as u32);
    }

    fn detach(&mut self, edge: EdgeId, now: Instant) {
        if self.waiting_source.as_ref().is_some_and(|w| w.0 == edge) {
            let (edge, imp, _) = self.waiting_source.take().expect("checked");
            self.reporter.discard(Box::new(imp));
            return self.report_removed(edge, None);
        }
        if self.source.as_ref().is_some_and(|s| s.edge == edge) {
            let result = self.flush_source();
            let reason = result.err().map(EdgeFailure::Violation);
            return self.remove_source(reason);
        }
        if let Some(i) = self.sink_index(edge) {
            self.leave(i, now);
        }
    }

    /// Takes `pool` as the pool to move to (a later one replaces one still waiting).
    fn replace_pool(&mut self, pool: Pool, now: Instant) {
        if self.closing {
            return self.reporter.discard(Box::new(pool));
        }
        if let Some((older, _)) = self.next_pool.replace((pool, now + POOL_MOVE_LIMIT)) {
            self.reporter.discard(Box::new(older));
        }
        self.try_move(now);
    }

    /// Moves to the waiting pool when the group has no source and no sink that reads through
    /// the engine's mapping holds a frame (or the move's limit has passed: those sinks are set
    /// up again). Sinks with their own mapping keep their frames of the old pool, which the
    /// group forgets; links that registered the old pool are set up again on the new one.
    fn try_move(&mut self, now: Instant) {
        let Some((_, limit)) = &self.next_pool else {
            return;
        };
        if self.source.is_some() {
            // The control thread moves only a group without a source; one that has not
            // finished leaving is waited for.
            return;
        }
        let late = now >= *limit;
        let mut order = self.sink_mask;
        while order != 0 {
            let i = order.trailing_zeros() as usize;
            order &= order - 1;
            if let Some(s) = &self.sinks[i]
                && s.held > 0
                && s.imp.pool_move() == PoolMove::Drain
                && !late
            {
                return;
            }
        }
        let (pool, _) = self.next_pool.take().expect("checked");
        let id = pool.id();
        for i in 0..MAX_SINKS {
            let cut = self.sinks[i]
                .as_ref()
                .is_some_and(|s| match s.imp.pool_move() {
                    PoolMove::Keep => false,
                    PoolMove::Drain => s.held > 0,
                    PoolMove::Rebuild => true,
                });
            if cut {
                self.remove_sink(i, Some(EdgeFailure::PoolMoved));
            }
        }
        for s in self.sinks_iter_mut() {
            s.held = 0;
            s.imp.pool_moved(id);
        }
        self.masks.fill(0);
        self.source_held.fill(false);
        let old = std::mem::replace(&mut self.pool, pool);
        tracing::info!(
            "{}: moved from pool {} to pool {id} (a new writer joins)",
            self.name,
            old.id()
        );
        // Unmapped on the control thread.
        self.reporter.discard(Box::new(old));
        if let Some((edge, imp, quota)) = self.waiting_source.take() {
            self.attach(edge, Part::Source(imp, quota), now);
        }
    }

    /// Stops offering frames to sink `i`; it is removed once it has finished what it holds.
    fn leave(&mut self, i: usize, now: Instant) {
        let bit = 1u64 << i;
        let Some(s) = self.sinks[i].as_mut() else {
            return;
        };
        if s.leaving.is_some() {
            return;
        }
        self.offer_mask &= !bit;
        self.paced_mask &= !bit;
        if s.imp.pending() {
            s.leaving = Some(now + LEAVE_LIMIT);
            self.leaving += 1;
        } else {
            self.remove_sink(i, None);
        }
    }

    /// Removes sinks that finished leaving, or whose time is up.
    fn reap(&mut self, now: Instant) {
        let mut order = self.sink_mask & !self.offer_mask;
        while order != 0 {
            let i = order.trailing_zeros() as usize;
            order &= order - 1;
            let done = self.sinks[i]
                .as_ref()
                .and_then(|s| s.leaving.map(|t| !s.imp.pending() || now >= t));
            if done == Some(true) {
                self.leaving -= 1;
                self.remove_sink(i, None);
            }
        }
    }

    /// Publishes everything the source has accepted (it is leaving).
    fn flush_source(&mut self) -> Result<(), Violation> {
        for _ in 0..FLUSH_ROUNDS {
            // Lend nothing more: the cap is what it holds.
            match self.with_source(|s| s.count, |imp, io| imp.flush(io)) {
                None | Some(Ok(0)) => break,
                Some(Ok(_)) => {}
                Some(Err(v)) => return Err(v),
            }
        }
        Ok(())
    }

    /// Runs `f` on the source with an io capped at `cap(source)` slots, then hands what it
    /// published to the sinks; `None` without a source.
    fn with_source<R>(
        &mut self,
        cap: impl FnOnce(&SourceSlot) -> u32,
        f: impl FnOnce(&mut dyn Source, &mut SourceIo<'_>) -> R,
    ) -> Option<R> {
        let paced = self.paced_mask != 0;
        let src = self.source.as_mut()?;
        let cap = cap(src);
        let out = &mut self.published;
        let mut io = SourceIo::new(
            &mut self.pool,
            &mut self.source_held,
            &mut src.count,
            cap,
            out,
        );
        if paced && src.imp.waits_for_sinks() {
            io = io.capped_by_sinks();
        }
        let r = f(src.imp.as_mut(), &mut io);
        let n = io.published().len();
        for k in 0..n {
            self.fan_out(self.published[k]);
        }
        Some(r)
    }

    fn remove_source(&mut self, failure: Option<EdgeFailure>) {
        let Some(src) = self.source.take() else {
            return;
        };
        self.unwatch(src.imp.wake_fd());
        for slot in 0..self.source_held.len() {
            if self.source_held[slot] {
                self.source_held[slot] = false;
                self.free(slot);
            }
        }
        // Handed back before it is reported: the control thread drops it (closing an SDK
        // client's block) before it acts on the event.
        self.reporter.discard(Box::new(src.imp));
        self.report_removed(src.edge, failure);
    }

    fn remove_sink(&mut self, i: usize, failure: Option<EdgeFailure>) {
        let Some(s) = self.sinks[i].take() else {
            return;
        };
        if s.leaving.is_some() && failure.is_some() {
            self.leaving -= 1;
        }
        self.unwatch(s.imp.wake_fd());
        let bit = 1u64 << i;
        self.sink_mask &= !bit;
        self.offer_mask &= !bit;
        self.paced_mask &= !bit;
        for slot in 0..self.masks.len() {
            if self.masks[slot] & bit != 0 {
                self.masks[slot] &= !bit;
                if self.masks[slot] == 0 {
                    self.free(slot);
                }
            }
        }
        self.reporter.discard(Box::new(s.imp));
        self.report_removed(s.edge, failure);
    }

    fn report_removed(&self, edge: EdgeId, failure: Option<EdgeFailure>) {
        self.reporter.emit(match failure {
            None => Event::EdgeDetached { edge },
            Some(reason) => Event::EdgeFailed { edge, reason },
        });
    }

    fn sink_index(&self, edge: EdgeId) -> Option<usize> {
        self.sinks
            .iter()
            .position(|s| s.as_ref().is_some_and(|m| m.edge == edge))
    }

    /// Returns a slot to the free list.
    fn free(&mut self, slot: usize) {
        // Cannot fail: every slot held by an edge was allocated from this pool.
        let _ = self.pool.free(slot as u32);
    }

    /// The most slots the source may hold now: its quota, and with pacing sinks no more than
    /// their room (frames lent plus frames queued at the fullest of them stay within the
    /// smallest quota), so a waiting producer blocks in `get` instead of a sink dropping.
    fn source_cap(&self, src: &SourceSlot) -> u32 {
        if self.paced_mask == 0 || !src.imp.waits_for_sinks() {
            return src.quota;
        }
        let (mut quota, mut held) = (src.quota, 0u32);
        let mut order = self.paced_mask;
        while order != 0 {
            let i = order.trailing_zeros() as usize;
            order &= order - 1;
            if let Some(s) = &self.sinks[i] {
                quota = quota.min(s.quota);
                held = held.max(s.held);
            }
        }
        quota.saturating_sub(held)
    }

    /// Polls the source with at most `budget`; returns the work done.
    fn poll_source(&mut self, now: Instant, budget: u32) -> u32 {
        let cap = match &self.source {
            Some(src) => self.source_cap(src),
            None => return 0,
        };
        match self.with_source(|_| cap, |imp, io| imp.poll(now, budget, io)) {
            None => 0,
            Some(Ok(work)) => work.min(budget),
            Some(Err(v)) => {
                self.remove_source(Some(EdgeFailure::Violation(v)));
                budget.min(1)
            }
        }
    }

    /// Polls the sinks, starting at a different one each poll so a small budget does not
    /// always favour the first ones; returns the work done, at most `budget`.
    fn poll_sinks(&mut self, now: Instant, budget: u32) -> u32 {
        let mut work = 0;
        let start = self.next_sink;
        self.next_sink = (self.next_sink + 1) % MAX_SINKS;
        let mut order = self.sink_mask.rotate_right(start as u32);
        while order != 0 && work < budget {
            let k = order.trailing_zeros() as usize;
            order &= order - 1;
            let i = (start + k) % MAX_SINKS;
            let Some(s) = self.sinks[i].as_mut() else {
                continue;
            };
            let mut io = SinkIo::new(&self.pool, &mut self.masks, 1 << i, &mut self.released);
            let result = s.imp.poll(now, budget - work, &mut io);
            let n = io.released().len();
            s.held -= n as u32;
            for k in 0..n {
                let slot = self.released[k] as usize;
                if self.masks[slot] == 0 {
                    self.free(slot);
                }
            }
            match result {
                Ok(w) => work += w.min(budget - work),
                Err(v) => {
                    work += (n as u32).min(budget - work);
                    self.remove_sink(i, Some(EdgeFailure::Violation(v)));
                }
            }
        }
        work
    }

    /// Stamps the published frame `f` (its slot allocated, no longer the source's) and offers
    /// it to every sink with room; a frame nobody took goes back to the pool.
    fn fan_out(&mut self, f: Frame) {
        let seq = self.seq;
        self.seq += 1;
        let header = SlotHeader {
            seq,
            timestamp_ns: f.timestamp_ns,
            payload_len: f.payload_len,
            metadata_len: f.metadata_len,
            reserved: [0; 5],
        };
        // Cannot fail: the slot is allocated and in range (checked at publish).
        let _ = self.pool.set_header(f.slot, &header);
        let frame = Frame { seq, ..f };
        let mut mask = 0u64;
        let mut order = self.offer_mask;
        while order != 0 {
            let i = order.trailing_zeros() as usize;
            order &= order - 1;
            let Some(s) = self.sinks[i].as_mut() else {
                continue;
            };
            if s.held >= s.quota {
                s.imp.missed(frame);
            } else if s.imp.offer(frame) {
                s.held += 1;
                mask |= 1 << i;
            }
        }
        self.masks[f.slot as usize] = mask;
        if mask == 0 {
            self.free(f.slot as usize);
        }
    }

    fn sinks_iter_mut(&mut self) -> impl Iterator<Item = &mut SinkSlot> {
        self.sinks.iter_mut().flatten()
    }
}

impl Port for GroupPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, now: Instant, budget: u32) -> Progress {
        let first_source = self.source_first;
        self.source_first = !first_source;
        let mut work = 0;
        if first_source {
            work += self.poll_source(now, budget);
            work += self.poll_sinks(now, budget - work);
        } else {
            work += self.poll_sinks(now, budget);
            work += self.poll_source(now, budget - work);
        }
        if self.leaving > 0 {
            self.reap(now);
        }
        if self.next_pool.is_some() {
            // After the sinks' releases of this poll.
            self.try_move(now);
        }
        match work {
            0 => Progress::Idle,
            n => Progress::Worked(n),
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.wake.as_fd())
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut at = self.source.as_ref().and_then(|s| s.imp.next_deadline(now));
        if let Some((_, limit)) = &self.next_pool {
            at = Some(at.map_or(*limit, |a| a.min(*limit)));
        }
        for s in self.sinks.iter().flatten() {
            let t = s.imp.next_deadline(now).or(s.leaving);
            at = match (at, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        at
    }

    fn prepare_park(&mut self) -> bool {
        let mut pending = false;
        if let Some(s) = self.source.as_mut() {
            pending |= s.imp.prepare_park();
        }
        for s in self.sinks_iter_mut() {
            pending |= s.imp.prepare_park();
        }
        pending
    }

    fn end_park(&mut self) {
        if let Some(s) = self.source.as_mut() {
            s.imp.end_park();
        }
        for s in self.sinks_iter_mut() {
            s.imp.end_park();
        }
    }

    fn message(&mut self, msg: PortMsg, now: Instant) {
        match msg.downcast::<GroupMsg>().map(|m| *m) {
            Ok(GroupMsg::Attach { edge, part }) => self.attach(edge, part, now),
            Ok(GroupMsg::Detach { edge }) => self.detach(edge, now),
            Ok(GroupMsg::ReplacePool(pool)) => self.replace_pool(pool, now),
            Err(msg) => {
                tracing::error!("{}: ignored a message that is not a GroupMsg", self.name);
                self.reporter.discard(msg);
            }
        }
    }

    fn close(&mut self, now: Instant) {
        self.closing = true;
        if let Some((pool, _)) = self.next_pool.take() {
            self.reporter.discard(Box::new(pool));
        }
        if let Some(edge) = self.waiting_source.as_ref().map(|w| w.0) {
            self.detach(edge, now);
        }
        if let Some(edge) = self.source.as_ref().map(|s| s.edge) {
            self.detach(edge, now);
        }
        for i in 0..MAX_SINKS {
            self.leave(i, now);
        }
    }

    fn is_closed(&self) -> bool {
        self.closing && self.sink_mask == 0 && self.source.is_none()
    }
}

#[cfg(test)]
mod tests;
