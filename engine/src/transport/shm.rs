//! SDK connections as edges: an application's shared-memory rings with the engine.
//!
//! A sender ([`ShmSource`]) is lent free slots through the ring to the client, writes frames
//! into them and hands them back through the ring to the engine; each descriptor it sends is
//! checked (pool, slot, that the slot was lent to it, lengths) before the frame is published. A
//! receiver ([`ShmSink`]) is pushed the descriptor of each frame it is offered and hands the
//! slot back through its release ring; a slot it did not hold is a violation. A corrupt ring
//! index is one too: the group then detaches the connection and the control thread closes the
//! client's session. Both ends ring the group's doorbell, which the group watches itself.

use std::sync::Arc;
use std::time::Instant;

use mcm_control::dataplane::{Attachment, ConnCounters, RingName, Role, Violation};
use mcm_proto::shm::conn::EngineSide;
use mcm_proto::shm::desc::Descriptor;

use crate::group::{Frame, IO_BATCH, Part, PoolMove, Sink, SinkIo, Source, SourceIo};

/// The edge of an activated connection, with its quota.
pub fn build(a: Attachment, pool_id: u32) -> Part {
    let name = format!("sdk connection {}", a.conn);
    match a.role {
        Role::Source => Part::Source(
            Box::new(ShmSource {
                name,
                side: a.side,
                counters: a.counters,
            }),
            a.quota,
        ),
        Role::Sink => Part::Sink(
            Box::new(ShmSink {
                name,
                side: a.side,
                pool_id,
                first_pool: pool_id,
                counters: a.counters,
            }),
            a.quota,
        ),
    }
}

/// An SDK sender: the group's source.
pub struct ShmSource {
    name: String,
    side: EngineSide,
    counters: Arc<ConnCounters>,
}

impl ShmSource {
    /// Publishes up to `max` of the frames the client sent; returns how many were taken from
    /// the ring.
    fn take_frames(&mut self, max: usize, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        if max == 0 || self.side.is_quiet() {
            return Ok(0);
        }
        let mut batch = [Descriptor::default(); IO_BATCH];
        let room = max.min(IO_BATCH).min(io.room());
        let n = self.side.pop_into(&mut batch[..room]);
        let corrupt = self.side.is_corrupt();
        for d in &batch[..n] {
            let frame = Frame {
                slot: d.slot,
                payload_len: d.payload_len,
                metadata_len: d.metadata_len,
                timestamp_ns: d.timestamp_ns,
                seq: 0,
            };
            io.publish_checked(d.pool, frame)?;
            self.counters.count_frame(u64::from(d.payload_len));
        }
        if corrupt {
            return Err(Violation::CorruptRing(RingName::Frame));
        }
        Ok(n as u32)
    }

    /// Lends the client free slots, up to `max`, its quota and its ring's room.
    fn lend(&mut self, max: usize, io: &mut SourceIo<'_>) -> u32 {
        let want = io.can_take().min(self.side.free_slots()).min(max);
        if want == 0 {
            return 0;
        }
        let (payload_capacity, metadata_capacity) = io.capacities();
        let mut batch = [Descriptor::default(); IO_BATCH];
        let mut n = 0;
        while n < want {
            let Some(slot) = io.alloc() else { break };
            batch[n] = Descriptor {
                pool: io.pool_id(),
                slot,
                payload_len: payload_capacity,
                metadata_len: metadata_capacity,
                seq: 0,
                timestamp_ns: 0,
            };
            n += 1;
        }
        // All fit unless the client moved its consumer index backwards since `free_slots` (it
        // lies; only it suffers): what was not lent goes back to the pool.
        let pushed = self.side.push_slice(&batch[..n]);
        for d in &batch[pushed..n] {
            io.abandon(d.slot);
        }
        pushed as u32
    }
}

impl Source for ShmSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(
        &mut self,
        _now: Instant,
        budget: u32,
        io: &mut SourceIo<'_>,
    ) -> Result<u32, Violation> {
        let taken = self.take_frames(budget as usize, io)?;
        let lent = self.lend((budget - taken) as usize, io);
        Ok(taken + lent)
    }

    fn flush(&mut self, io: &mut SourceIo<'_>) -> Result<u32, Violation> {
        self.take_frames(IO_BATCH, io)
    }

    fn waits_for_sinks(&self) -> bool {
        true
    }

    fn prepare_park(&mut self) -> bool {
        self.side.prepare_sleep()
    }

    fn end_park(&mut self) {
        self.side.end_sleep();
    }
}

/// An SDK receiver: a sink of the group.
pub struct ShmSink {
    name: String,
    side: EngineSide,
    /// The group's pool now.
    pool_id: u32,
    /// Its pool when it attached: releases of the pools between (pool ids only grow) are of
    /// frames the group forgot when it moved, and are let go.
    first_pool: u32,
    counters: Arc<ConnCounters>,
}

impl Sink for ShmSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, f: Frame) -> bool {
        let d = Descriptor {
            pool: self.pool_id,
            slot: f.slot,
            payload_len: f.payload_len,
            metadata_len: f.metadata_len,
            seq: f.seq,
            timestamp_ns: f.timestamp_ns,
        };
        let ok = self.side.push(d).is_ok();
        if ok {
            self.counters.count_frame(u64::from(f.payload_len));
        } else {
            self.counters.count_drop();
        }
        ok
    }

    fn missed(&mut self, _frame: Frame) {
        self.counters.count_drop();
    }

    fn pool_move(&self) -> PoolMove {
        PoolMove::Keep
    }

    fn pool_moved(&mut self, pool: u32) {
        self.pool_id = pool;
    }

    fn poll(&mut self, _now: Instant, budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation> {
        // A quiet release ring (nothing to take back, no corrupt index to find) costs two loads.
        if budget == 0 || self.side.is_quiet() {
            return Ok(0);
        }
        let mut batch = [Descriptor::default(); IO_BATCH];
        let room = (budget as usize).min(IO_BATCH).min(io.room());
        let n = self.side.pop_into(&mut batch[..room]);
        let corrupt = self.side.is_corrupt();
        for d in &batch[..n] {
            if (self.first_pool..self.pool_id).contains(&d.pool) {
                continue;
            }
            io.release_checked(d.pool, d.slot)?;
        }
        if corrupt {
            return Err(Violation::CorruptRing(RingName::Release));
        }
        Ok(n as u32)
    }

    fn prepare_park(&mut self) -> bool {
        self.side.prepare_sleep()
    }

    fn end_park(&mut self) {
        self.side.end_sleep();
    }
}
