//! Edges: the transports' ends of a group, in two roles.
//!
//! A [`Source`] feeds the group (an SDK sender, an ST 2110 receiver, later an RDMA ingress
//! link): it takes free slots through its [`SourceIo`], fills them (or lends them to its client)
//! and publishes them; the group checks every slot and length it names and hands each frame to
//! every sink at once. A [`Sink`] takes the group's frames (an SDK receiver, an ST 2110 sender,
//! later an RDMA egress link): it is offered each published frame, holds the slot while it
//! reads it in place, and gives it back through its [`SinkIo`]. The group owns what is common —
//! slot states, who holds which slot, quotas, fan-out — and each edge owns only its wire.
//!
//! Edges never reach the pool but through their io, which refuses any slot they do not hold.
//! Errors on this path are small `Copy` values ([`Violation`]), formatted on the control thread.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use mcm_control::dataplane::Violation;
use mcm_proto::shm::pool::Pool;

/// A frame handed between a group and its edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame {
    /// Pool slot holding the frame.
    pub slot: u32,
    /// Payload bytes.
    pub payload_len: u32,
    /// Metadata bytes.
    pub metadata_len: u32,
    /// The frame's timestamp (ns): the sender's capture time, or for a received stream the
    /// sampling instant its RTP timestamp stands for.
    pub timestamp_ns: u64,
    /// The group's sequence number of the frame (ignored when a source publishes: the group
    /// numbers frames itself).
    pub seq: u64,
}

/// An edge that feeds its group.
pub trait Source: Send {
    /// Short name for logs.
    fn name(&self) -> &str;
    /// Does at most `budget` items of work (descriptors, datagrams) through `io`; returns the
    /// items done. An error detaches the source (its slots return to the pool).
    fn poll(&mut self, now: Instant, budget: u32, io: &mut SourceIo<'_>) -> Result<u32, Violation>;
    /// The source is being detached: publish every frame it has already accepted (an SDK
    /// sender's queued puts), whatever the budget. Bounded by what the source can hold.
    fn flush(&mut self, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        let _ = io;
        Ok(0)
    }
    /// Whether its producer can wait for room (an application blocking in `get`): then a sink
    /// that [paces](Sink::paces_source) the group holds the source back instead of dropping.
    fn waits_for_sinks(&self) -> bool {
        false
    }
    /// A descriptor readable when the source has input (an rx socket).
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// When the source must be polled next (`now`: the lcore's clock).
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }
    /// The lcore is about to park: returns whether input is already pending.
    fn prepare_park(&mut self) -> bool {
        false
    }
    /// The lcore is awake again.
    fn end_park(&mut self) {}
}

/// What a sink needs when its group moves to a new frame pool (a writer that maps the pool
/// joined a group whose pool is sealed against writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMove {
    /// It reads its frames through its own mapping of the old pool, which stays valid: it
    /// keeps what it holds, the group forgets it (an SDK receiver, whose client releases the
    /// old frames when done with them).
    Keep,
    /// It reads through the engine's mapping: the move waits until it holds nothing (an
    /// ST 2110 sender sends its queue), and it is set up again when that takes too long.
    Drain,
    /// It mapped or registered the pool itself: it is set up again on the new pool.
    Rebuild,
}

/// An edge that takes its group's frames.
pub trait Sink: Send {
    /// Short name for logs.
    fn name(&self) -> &str;
    /// The group published `frame`, and the sink's quota has room: take it (the sink then
    /// holds the slot until it releases it through its [`SinkIo`]) or return false when it has
    /// no room of its own (the frame is dropped for this sink; count it).
    fn offer(&mut self, frame: Frame) -> bool;
    /// The group published `frame` while the sink held its whole quota: count the drop.
    fn missed(&mut self, frame: Frame);
    /// Does at most `budget` items of work through `io` (packets sent, slots released);
    /// returns the items done. An error detaches the sink (its slots return to the pool).
    fn poll(&mut self, now: Instant, budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation>;
    /// Whether it still has frames it took to finish (an ST 2110 sender's queue): a detached
    /// sink is polled until it has none (or the group's leave limit passes).
    fn pending(&self) -> bool {
        false
    }
    /// Whether the group's source should wait for this sink rather than see it drop frames
    /// (a paced sender: the network sets the rate).
    fn paces_source(&self) -> bool {
        false
    }
    /// What the sink needs when its group moves to a new pool (see [`PoolMove`]).
    fn pool_move(&self) -> PoolMove {
        PoolMove::Drain
    }
    /// The group moved to pool `pool`: the frames offered from now on are its slots.
    fn pool_moved(&mut self, pool: u32) {
        let _ = pool;
    }
    /// A descriptor readable when the sink has work (a release ring's doorbell, a CQ).
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// When the sink must be polled next (a paced sender's next packet; `now`: the lcore's
    /// clock).
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }
    /// The lcore is about to park: returns whether work is already pending.
    fn prepare_park(&mut self) -> bool {
        false
    }
    /// The lcore is awake again.
    fn end_park(&mut self) {}
}

/// Frames an edge may publish or release per poll.
pub const IO_BATCH: usize = 32;

/// What a source may do with its group's pool during one poll. What it publishes reaches the
/// group's sinks when the poll returns.
#[derive(Debug)]
pub struct SourceIo<'a> {
    pool: &'a mut Pool,
    /// Whether the source holds each slot (taken and not yet published or given back).
    held: &'a mut [bool],
    /// Slots it holds now, and the most it may hold now.
    count: &'a mut u32,
    cap: u32,
    /// Each publication lowers `cap` (the cap counts what pacing sinks hold, and every frame
    /// published will be held by them once the poll hands it on).
    capped_by_sinks: bool,
    /// Where publications are written (the caller's, reused poll after poll: nothing is
    /// initialised or copied per poll).
    published: &'a mut [Frame; IO_BATCH],
    n_published: usize,
}

impl<'a> SourceIo<'a> {
    /// A context over `pool`; `held[slot]` says which slots the source holds (`count` of them,
    /// at most `cap`); publications go to `out`.
    pub fn new(
        pool: &'a mut Pool,
        held: &'a mut [bool],
        count: &'a mut u32,
        cap: u32,
        out: &'a mut [Frame; IO_BATCH],
    ) -> Self {
        Self {
            pool,
            held,
            count,
            cap,
            capped_by_sinks: false,
            published: out,
            n_published: 0,
        }
    }

    /// Counts every publication against the cap, as the pacing sinks will hold it: a source
    /// that publishes and lends again in one poll never has more frames in flight than its cap.
    pub fn capped_by_sinks(mut self) -> Self {
        self.capped_by_sinks = true;
        self
    }

    fn holds(&self, slot: u32) -> bool {
        self.held.get(slot as usize).copied().unwrap_or(false)
    }

    /// The group's pool id (descriptors name it).
    pub fn pool_id(&self) -> u32 {
        self.pool.id()
    }

    /// Payload and metadata bytes a slot holds.
    pub fn capacities(&self) -> (u32, u32) {
        let g = self.pool.geometry();
        (g.payload_capacity, g.metadata_capacity)
    }

    /// How many more frames it may publish in this poll.
    pub fn room(&self) -> usize {
        IO_BATCH - self.n_published
    }

    /// How many more slots it may take now (quota, pacing sinks, this poll's batch).
    pub fn can_take(&self) -> usize {
        (self.cap.saturating_sub(*self.count) as usize).min(self.room())
    }

    /// Takes a free slot (none when the pool is empty, the source is at its quota, or this
    /// poll's batch of publications is full).
    pub fn alloc(&mut self) -> Option<u32> {
        if *self.count >= self.cap || self.n_published == IO_BATCH {
            return None;
        }
        let slot = self.pool.alloc()?;
        self.held[slot as usize] = true;
        *self.count += 1;
        Some(slot)
    }

    /// Gives back a slot it took without publishing it (an incomplete frame, a slot its
    /// client could not be lent).
    pub fn abandon(&mut self, slot: u32) {
        if self.holds(slot) {
            self.held[slot as usize] = false;
            *self.count -= 1;
            // Cannot fail: the slot is allocated (the source holds it).
            let _ = self.pool.free(slot);
        }
    }

    /// The writable payload of a slot it holds; `None` for any other slot.
    pub fn payload_mut(&mut self, slot: u32) -> Option<&mut [u8]> {
        if !self.holds(slot) {
            return None;
        }
        self.pool.payload_mut(slot).ok()
    }

    /// Publishes a frame in a slot it holds to the group's sinks (after the poll). Returns
    /// false (and publishes nothing) for a slot it does not hold, lengths over the slot, or a
    /// full batch; [`alloc`](Self::alloc) keeps room for one publication per allocation.
    pub fn publish(&mut self, frame: Frame) -> bool {
        let pool = self.pool.id();
        self.publish_checked(pool, frame).is_ok()
    }

    /// [`publish`](Self::publish) for a frame a peer named (an SDK client's descriptor of
    /// `pool`): says which rule it broke. A full batch is refused as [`Violation::NotLent`]
    /// only if the slot is not held; callers never publish more than [`room`](Self::room).
    pub fn publish_checked(&mut self, pool: u32, frame: Frame) -> Result<(), Violation> {
        let count = self.pool.geometry().slot_count;
        if pool != self.pool.id() {
            return Err(Violation::ForeignPool {
                pool,
                expected: self.pool.id(),
            });
        }
        if frame.slot >= count {
            return Err(Violation::SlotOutOfRange {
                slot: frame.slot,
                count,
            });
        }
        if !self.holds(frame.slot) || self.n_published == IO_BATCH {
            return Err(Violation::NotLent { slot: frame.slot });
        }
        let (payload_capacity, metadata_capacity) = self.capacities();
        if frame.payload_len > payload_capacity || frame.metadata_len > metadata_capacity {
            return Err(Violation::Lengths {
                slot: frame.slot,
                payload_len: frame.payload_len,
                metadata_len: frame.metadata_len,
                payload_capacity,
                metadata_capacity,
            });
        }
        self.held[frame.slot as usize] = false;
        *self.count -= 1;
        if self.capped_by_sinks {
            self.cap = self.cap.saturating_sub(1);
        }
        self.published[self.n_published] = frame;
        self.n_published += 1;
        Ok(())
    }

    /// Frames published during the poll (the first ones of the caller's `out`).
    pub fn published(&self) -> &[Frame] {
        &self.published[..self.n_published]
    }
}

/// What a sink may do with its group's slots during one poll. What it releases is free again
/// when the poll returns and no other sink holds it.
#[derive(Debug)]
pub struct SinkIo<'a> {
    pool: &'a Pool,
    /// Per slot, a bit per sink holding it.
    masks: &'a mut [u64],
    /// This sink's bit.
    bit: u64,
    /// Where releases are written (the caller's, reused).
    released: &'a mut [u32; IO_BATCH],
    n_released: usize,
}

impl<'a> SinkIo<'a> {
    /// A context over `pool` for the sink whose bit in `masks` (per slot: who holds it) is
    /// `bit`; releases go to `out`.
    pub fn new(
        pool: &'a Pool,
        masks: &'a mut [u64],
        bit: u64,
        out: &'a mut [u32; IO_BATCH],
    ) -> Self {
        Self {
            pool,
            masks,
            bit,
            released: out,
            n_released: 0,
        }
    }

    fn holds(&self, slot: u32) -> bool {
        self.masks
            .get(slot as usize)
            .is_some_and(|m| m & self.bit != 0)
    }

    /// The group's pool id.
    pub fn pool_id(&self) -> u32 {
        self.pool.id()
    }

    /// The payload of a slot it holds (the whole capacity); `None` for any other slot.
    pub fn payload(&self, slot: u32) -> Option<&[u8]> {
        if !self.holds(slot) {
            return None;
        }
        self.pool.payload(slot).ok()
    }

    /// How many more slots it may release in this poll.
    pub fn room(&self) -> usize {
        IO_BATCH - self.n_released
    }

    /// The sink is done with a slot it holds. Returns false when this poll's batch of releases
    /// is full (release it on the next poll) or the slot is not held.
    pub fn release(&mut self, slot: u32) -> bool {
        let pool = self.pool.id();
        self.release_checked(pool, slot).is_ok()
    }

    /// [`release`](Self::release) of a slot a peer named (an SDK client's descriptor of
    /// `pool`): says which rule it broke.
    pub fn release_checked(&mut self, pool: u32, slot: u32) -> Result<(), Violation> {
        let count = self.pool.geometry().slot_count;
        if pool != self.pool.id() {
            return Err(Violation::ForeignPool {
                pool,
                expected: self.pool.id(),
            });
        }
        if slot >= count {
            return Err(Violation::SlotOutOfRange { slot, count });
        }
        if !self.holds(slot) || self.n_released == IO_BATCH {
            return Err(Violation::NotHeld { slot });
        }
        self.masks[slot as usize] &= !self.bit;
        self.released[self.n_released] = slot;
        self.n_released += 1;
        Ok(())
    }

    /// Slots released during the poll (the first ones of the caller's `out`).
    pub fn released(&self) -> &[u32] {
        &self.released[..self.n_released]
    }
}

/// Frames a network sink may hold at once (queued and being sent).
pub const SINK_QUEUE: usize = 64;

/// The frames offered to a sink, oldest first: a fixed ring, so offering never allocates.
pub type FrameQueue = Fifo<Frame, SINK_QUEUE>;

/// A first-in first-out queue of at most `N` items in a fixed array: pushing never allocates.
#[derive(Debug, Clone)]
pub struct Fifo<T, const N: usize> {
    items: [T; N],
    head: usize,
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for Fifo<T, N> {
    fn default() -> Self {
        Self {
            items: [T::default(); N],
            head: 0,
            len: 0,
        }
    }
}

impl<T: Copy, const N: usize> Fifo<T, N> {
    /// Appends `item`; false when the queue already holds `N` items.
    pub fn push(&mut self, item: T) -> bool {
        if self.len == N {
            return false;
        }
        self.items[(self.head + self.len) % N] = item;
        self.len += 1;
        true
    }

    /// The oldest item.
    pub fn front(&self) -> Option<T> {
        (self.len > 0).then(|| self.items[self.head])
    }

    /// Removes and returns the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let f = self.front()?;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(f)
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_fifo_bounded_and_wraps() {
        let mut q = FrameQueue::default();
        let f = |slot| Frame {
            slot,
            ..Frame::default()
        };
        for round in 0..3u32 {
            for i in 0..SINK_QUEUE as u32 {
                assert!(q.push(f(round * 100 + i)));
            }
            assert!(!q.push(f(999)), "a full queue refuses");
            assert_eq!(q.len(), SINK_QUEUE);
            for i in 0..SINK_QUEUE as u32 {
                assert_eq!(q.front().map(|x| x.slot), Some(round * 100 + i));
                assert_eq!(q.pop().map(|x| x.slot), Some(round * 100 + i));
            }
            assert!(q.is_empty() && q.pop().is_none());
            q.push(f(7));
            q.pop();
        }
    }
}
