//! The sending end's account of a link: the receiver's pool as its welcome described it, and
//! the credits it granted, each checked against that description before a frame is written.

use mcm_control::dataplane::LinkFault;
use mcm_proto::link::{Credits, LinkWelcome};
use mcm_proto::shm::pool::{MAX_SLOT_COUNT, SlotHeader};

use super::fabric::RemoteIov;
use super::window::WINDOW;
use crate::group::Fifo;

const HEADER: u64 = size_of::<SlotHeader>() as u64;

/// The receiver's pool, as its welcome described it and checked against what this end sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePool {
    slot_count: u32,
    slot_stride: u64,
    metadata_offset: u64,
    base: u64,
    key: u64,
}

impl RemotePool {
    /// Checks a welcome: a geometry that holds this end's frames (`payload_capacity` and
    /// `metadata_capacity` at most) and whose slots do not overlap.
    ///
    /// # Errors
    /// What is wrong with it, for the link's failure.
    pub fn from_welcome(
        w: &LinkWelcome,
        payload_capacity: u32,
        metadata_capacity: u32,
    ) -> Result<Self, String> {
        if w.slot_count == 0 || w.slot_count > MAX_SLOT_COUNT {
            return Err(format!(
                "the receiver's pool has {} slots (allowed: 1..={MAX_SLOT_COUNT})",
                w.slot_count
            ));
        }
        if w.payload_capacity < payload_capacity || w.metadata_capacity < metadata_capacity {
            return Err(format!(
                "the receiver's slots hold {} payload / {} metadata bytes, less than this \
                 group's {payload_capacity} / {metadata_capacity}",
                w.payload_capacity, w.metadata_capacity
            ));
        }
        let payload_end = HEADER + u64::from(w.payload_capacity);
        let meta_end = w
            .metadata_offset
            .checked_add(u64::from(w.metadata_capacity));
        let fits = w.metadata_offset >= payload_end && meta_end.is_some_and(|e| e <= w.slot_stride);
        let span = u64::from(w.slot_count).checked_mul(w.slot_stride);
        if !fits || span.and_then(|s| s.checked_add(w.base)).is_none() {
            return Err(format!(
                "the receiver's slot layout is impossible (stride {}, metadata at {}, payload \
                 capacity {}, metadata capacity {}, {} slots from {:#x})",
                w.slot_stride,
                w.metadata_offset,
                w.payload_capacity,
                w.metadata_capacity,
                w.slot_count,
                w.base
            ));
        }
        Ok(Self {
            slot_count: w.slot_count,
            slot_stride: w.slot_stride,
            metadata_offset: w.metadata_offset,
            base: w.base,
            key: w.key,
        })
    }

    /// Where a frame of `payload_len` and `metadata_len` bytes goes in granted `slot`: its
    /// header and payload from the slot's start, its metadata at the metadata offset (no
    /// second segment when there is none).
    pub fn segments(
        &self,
        slot: u32,
        payload_len: u32,
        metadata_len: u32,
    ) -> ([RemoteIov; 2], usize) {
        let at = self.base + u64::from(slot) * self.slot_stride;
        let first = RemoteIov {
            addr: at,
            len: (HEADER + u64::from(payload_len)) as usize,
            key: self.key,
        };
        let meta = RemoteIov {
            addr: at + self.metadata_offset,
            len: metadata_len as usize,
            key: self.key,
        };
        ([first, meta], if metadata_len > 0 { 2 } else { 1 })
    }
}

/// Credits granted and not yet used, oldest first (a fixed ring: taking one never allocates).
#[derive(Debug)]
pub struct CreditQueue {
    pool: RemotePool,
    slots: Fifo<u32, WINDOW>,
}

impl CreditQueue {
    /// No credit yet, for the pool a welcome described.
    pub fn new(pool: RemotePool) -> Self {
        Self {
            pool,
            slots: Fifo::default(),
        }
    }

    /// The receiver's pool.
    pub fn pool(&self) -> &RemotePool {
        &self.pool
    }

    /// Takes a credit message: every entry must name a slot of the pool at its own address,
    /// under the pool's key, and the credits outstanding stay within [`WINDOW`].
    ///
    /// # Errors
    /// [`LinkFault::BadCredit`] for the first entry that breaks a rule; none of the message's
    /// credits are taken then.
    pub fn accept(&mut self, msg: &Credits) -> Result<(), LinkFault> {
        let p = &self.pool;
        for (i, c) in msg.entries().iter().enumerate() {
            let at = p.base + u64::from(c.slot) * p.slot_stride;
            if msg.key != p.key
                || c.slot >= p.slot_count
                || c.addr != at
                || self.slots.len() + i >= WINDOW
            {
                return Err(LinkFault::BadCredit {
                    slot: c.slot,
                    addr: c.addr,
                });
            }
        }
        for c in msg.entries() {
            self.slots.push(c.slot);
        }
        Ok(())
    }

    /// The oldest credit's slot, left in the queue.
    pub fn peek(&self) -> Option<u32> {
        self.slots.front()
    }

    /// The oldest credit's slot.
    pub fn take(&mut self) -> Option<u32> {
        self.slots.pop()
    }

    /// Credits not yet used.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use mcm_proto::link::Credit;

    use super::*;

    fn welcome() -> LinkWelcome {
        LinkWelcome {
            slot_count: 8,
            slot_stride: 4096,
            metadata_offset: 64 + 3000,
            payload_capacity: 3000,
            metadata_capacity: 256,
            base: 0x10_0000,
            key: 77,
            ..Default::default()
        }
    }

    #[test]
    fn a_welcome_must_hold_the_frames_in_slots_that_do_not_overlap() {
        assert!(RemotePool::from_welcome(&welcome(), 3000, 256).is_ok());
        let small = RemotePool::from_welcome(&welcome(), 3001, 0).unwrap_err();
        assert!(small.contains("less than this group's 3001 / 0"), "{small}");
        let mut w = welcome();
        w.metadata_offset = 100;
        assert!(
            RemotePool::from_welcome(&w, 1, 0)
                .unwrap_err()
                .contains("impossible")
        );
        let mut w = welcome();
        w.slot_stride = 3000;
        assert!(
            RemotePool::from_welcome(&w, 1, 0)
                .unwrap_err()
                .contains("impossible")
        );
        let mut w = welcome();
        w.base = u64::MAX - 10;
        assert!(
            RemotePool::from_welcome(&w, 1, 0)
                .unwrap_err()
                .contains("impossible")
        );
        let mut w = welcome();
        w.slot_count = 0;
        assert!(
            RemotePool::from_welcome(&w, 1, 0)
                .unwrap_err()
                .contains("0 slots")
        );
    }

    #[test]
    fn credits_are_checked_kept_in_order_and_bounded() {
        let pool = RemotePool::from_welcome(&welcome(), 3000, 256).unwrap();
        let mut q = CreditQueue::new(pool);
        let credit = |slot: u32| Credit {
            slot,
            addr: 0x10_0000 + u64::from(slot) * 4096,
        };
        let mut m = Credits::new(77);
        m.push(credit(3));
        m.push(credit(5));
        q.accept(&m).unwrap();
        let bad = |key: u64, c: Credit| {
            let mut m = Credits::new(key);
            m.push(credit(1));
            m.push(c);
            m
        };
        let refused = LinkFault::BadCredit {
            slot: 8,
            addr: credit(8).addr,
        };
        assert_eq!(
            q.accept(&bad(77, credit(8))),
            Err(refused),
            "outside the pool"
        );
        let moved = Credit {
            addr: credit(2).addr + 64,
            ..credit(2)
        };
        assert!(
            q.accept(&bad(77, moved)).is_err(),
            "not at its slot's address"
        );
        assert!(q.accept(&bad(78, credit(2))).is_err(), "another key");
        assert_eq!(q.len(), 2, "a refused message adds nothing");
        assert_eq!((q.take(), q.take(), q.take()), (Some(3), Some(5), None));
        let mut n = 0;
        while n < WINDOW {
            let mut m = Credits::new(77);
            while !m.is_full() && n < WINDOW {
                m.push(credit((n % 8) as u32));
                n += 1;
            }
            q.accept(&m).unwrap();
        }
        let mut one = Credits::new(77);
        one.push(credit(0));
        assert!(q.accept(&one).is_err(), "more than a window outstanding");
    }

    #[test]
    fn a_frame_goes_to_its_slot_start_and_its_metadata_offset() {
        let pool = RemotePool::from_welcome(&welcome(), 3000, 256).unwrap();
        let (segs, n) = pool.segments(2, 1000, 10);
        assert_eq!(n, 2);
        assert_eq!(
            segs[0],
            RemoteIov {
                addr: 0x10_0000 + 8192,
                len: 1064,
                key: 77
            }
        );
        assert_eq!(
            segs[1],
            RemoteIov {
                addr: 0x10_0000 + 8192 + 3064,
                len: 10,
                key: 77
            }
        );
        assert_eq!(pool.segments(0, 5, 0).1, 1, "no metadata, one segment");
    }
}
