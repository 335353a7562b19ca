//! Bridges: the network end of a group (an ST 2110 session; later RDMA), polled by the group's
//! port on its lcore.
//!
//! A **sink** bridge (an ST 2110 tx session) is offered every frame the group publishes, like an
//! SDK receiver; it reads the frame in place from the pool and releases the slot when the last
//! packet has left. A **source** bridge (an ST 2110 rx session) takes free slots from the pool,
//! writes received payload straight into them and publishes whole frames to the group's sinks.
//! Both reach the pool only through [`BridgeIo`], which checks every slot they name.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use mcm_control::dataplane::Role;
use mcm_proto::shm::pool::Pool;

/// Frames a bridge may publish or release per poll.
pub const IO_BATCH: usize = 32;

/// A frame handed between a group and its bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame {
    /// Pool slot holding the frame.
    pub slot: u32,
    /// Payload bytes.
    pub payload_len: u32,
    /// The frame's timestamp (ns): the sender's capture time, or for a received stream the
    /// sampling instant its RTP timestamp stands for.
    pub timestamp_ns: u64,
    /// The group's sequence number of the frame (0 from a source bridge: the group numbers it).
    pub seq: u64,
}

/// The network end of a group.
pub trait Bridge: Send {
    /// Short name for logs.
    fn name(&self) -> &str;
    /// [`Role::Sink`]: it sends the group's frames out. [`Role::Source`]: it feeds the group.
    fn role(&self) -> Role;
    /// Sink: the group published `frame`; return false when there is no room for it (the frame
    /// is then dropped for this bridge and counted). Never called on a source.
    fn offer(&mut self, frame: Frame) -> bool;
    /// Does at most `budget` items of work (packets) through `io`; returns the items done.
    fn poll(&mut self, now: Instant, budget: u32, io: &mut BridgeIo<'_>) -> u32;
    /// A descriptor readable when the bridge has input (an rx socket).
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// When the bridge must be polled next (a paced sender's next packet).
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// The group is going away: every frame the bridge holds is released by the group.
    fn stop(&mut self) {}
}

/// What a bridge may do with its group's pool during one poll.
#[derive(Debug)]
pub struct BridgeIo<'a> {
    pool: &'a mut Pool,
    /// Whether the bridge holds each slot (allocated by it, or offered to it).
    held: &'a mut [bool],
    /// Slots the bridge holds now, and the most it may hold.
    count: &'a mut u32,
    quota: u32,
    published: [Frame; IO_BATCH],
    n_published: usize,
    released: [u32; IO_BATCH],
    n_released: usize,
}

impl<'a> BridgeIo<'a> {
    /// A context over `pool`; `held[slot]` says which slots the bridge holds (`count` of them,
    /// at most `quota`).
    pub fn new(pool: &'a mut Pool, held: &'a mut [bool], count: &'a mut u32, quota: u32) -> Self {
        Self {
            pool,
            held,
            count,
            quota,
            published: [Frame::default(); IO_BATCH],
            n_published: 0,
            released: [0; IO_BATCH],
            n_released: 0,
        }
    }

    fn holds(&self, slot: u32) -> bool {
        self.held.get(slot as usize).copied().unwrap_or(false)
    }

    /// The payload of a slot the bridge holds (the whole capacity); `None` for any other slot.
    pub fn payload(&self, slot: u32) -> Option<&[u8]> {
        if !self.holds(slot) {
            return None;
        }
        self.pool.payload(slot).ok()
    }

    /// The writable payload of a slot the bridge holds; `None` for any other slot.
    pub fn payload_mut(&mut self, slot: u32) -> Option<&mut [u8]> {
        if !self.holds(slot) {
            return None;
        }
        self.pool.payload_mut(slot).ok()
    }

    /// Source: how many more frames it may publish in this poll.
    pub fn room(&self) -> usize {
        IO_BATCH - self.n_published
    }

    /// Source: takes a free slot (none when the pool is empty, the bridge is at its quota, or
    /// this poll's batch of publications is full).
    pub fn alloc(&mut self) -> Option<u32> {
        if *self.count >= self.quota || self.n_published == IO_BATCH {
            return None;
        }
        let slot = self.pool.alloc()?;
        self.held[slot as usize] = true;
        *self.count += 1;
        Some(slot)
    }

    /// Source: gives back a slot it allocated without publishing it (an incomplete frame).
    pub fn abandon(&mut self, slot: u32) {
        if self.holds(slot) {
            self.held[slot as usize] = false;
            *self.count -= 1;
            // Cannot fail: the slot is allocated (the bridge holds it).
            let _ = self.pool.free(slot);
        }
    }

    /// Source: publishes a frame in a slot it holds to the group's sinks (after the poll).
    /// Returns false (and publishes nothing) for a slot it does not hold or a payload longer
    /// than the slot; [`alloc`](Self::alloc) keeps room for one publication per allocation.
    pub fn publish(&mut self, frame: Frame) -> bool {
        let cap = self.pool.geometry().payload_capacity;
        if !self.holds(frame.slot) || frame.payload_len > cap || self.n_published == IO_BATCH {
            return false;
        }
        self.held[frame.slot as usize] = false;
        *self.count -= 1;
        self.published[self.n_published] = frame;
        self.n_published += 1;
        true
    }

    /// Sink: the bridge is done with an offered frame's slot. Returns false when this poll's
    /// batch of releases is full (release it on the next poll) or the slot is not held.
    pub fn release(&mut self, slot: u32) -> bool {
        if !self.holds(slot) || self.n_released == IO_BATCH {
            return false;
        }
        self.held[slot as usize] = false;
        *self.count -= 1;
        self.released[self.n_released] = slot;
        self.n_released += 1;
        true
    }

    /// Frames published during the poll, as the whole fixed array (the first
    /// `published().len()` are valid); a copy, so the pool can be used again.
    pub(crate) fn published_array(&self) -> [Frame; IO_BATCH] {
        self.published
    }

    /// Slots released during the poll, as the whole fixed array (see `published_array`).
    pub(crate) fn released_array(&self) -> [u32; IO_BATCH] {
        self.released
    }

    /// Frames published during the poll.
    pub fn published(&self) -> &[Frame] {
        &self.published[..self.n_published]
    }

    /// Slots released during the poll.
    pub fn released(&self) -> &[u32] {
        &self.released[..self.n_released]
    }
}

/// Frames a sink bridge may hold at once (queued and being sent).
pub const SINK_QUEUE: usize = 64;

/// The frames offered to a sink bridge, oldest first: a fixed ring, so offering never allocates.
#[derive(Debug, Clone)]
pub struct FrameQueue {
    frames: [Frame; SINK_QUEUE],
    head: usize,
    len: usize,
}

impl Default for FrameQueue {
    fn default() -> Self {
        Self {
            frames: [Frame::default(); SINK_QUEUE],
            head: 0,
            len: 0,
        }
    }
}

impl FrameQueue {
    /// Appends `frame`; false when the queue already holds [`SINK_QUEUE`] frames.
    pub fn push(&mut self, frame: Frame) -> bool {
        if self.len == SINK_QUEUE {
            return false;
        }
        self.frames[(self.head + self.len) % SINK_QUEUE] = frame;
        self.len += 1;
        true
    }

    /// The oldest frame.
    pub fn front(&self) -> Option<Frame> {
        (self.len > 0).then(|| self.frames[self.head])
    }

    /// Removes and returns the oldest frame.
    pub fn pop(&mut self) -> Option<Frame> {
        let f = self.front()?;
        self.head = (self.head + 1) % SINK_QUEUE;
        self.len -= 1;
        Some(f)
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is queued.
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
