//! The receiving end's account of a link: which slots it granted the sender, and the frames
//! written back, put in order.
//!
//! The sender stripes frames over several endpoints, so their completions arrive in any order;
//! each carries a [`Tag`] naming the slot, the frame's sequence on the link and its payload
//! length. Every tag is untrusted: [`Window::accept`] refuses a slot that was not granted (or
//! was already written), a sequence outside the frames that can be in flight or seen before,
//! and lengths over the slot or different from the frame's header. Accepted frames come out of
//! [`Window::pop`] in sequence order, each once.

use mcm_control::dataplane::{LinkFault, TagFault};
use mcm_proto::link::{Tag, extend_seq};

use crate::group::Frame;

/// Most frames a link can have in flight (granted and not yet published): the reorder window.
pub const WINDOW: usize = 64;

/// What the slot's header (written by the sender with the frame) says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Payload bytes.
    pub payload_len: u32,
    /// Metadata bytes.
    pub metadata_len: u32,
    /// The frame's timestamp (ns).
    pub timestamp_ns: u64,
}

/// Slots granted and frames waiting for their turn.
#[derive(Debug)]
pub struct Window {
    /// Per slot of the pool: granted to the sender and not written back yet.
    granted: Vec<bool>,
    granted_count: usize,
    /// Frames accepted, by `seq % WINDOW`, for sequences `next..next + WINDOW`.
    pending: [Option<Frame>; WINDOW],
    /// Sequence of the next frame to publish.
    next: u64,
    payload_capacity: u32,
    metadata_capacity: u32,
}

impl Window {
    /// An empty window over a pool of `slot_count` slots of the given capacities (allocated
    /// here, at set-up).
    pub fn new(slot_count: u32, payload_capacity: u32, metadata_capacity: u32) -> Self {
        Self {
            granted: vec![false; slot_count as usize],
            granted_count: 0,
            pending: [None; WINDOW],
            next: 0,
            payload_capacity,
            metadata_capacity,
        }
    }

    /// Records that `slot` was granted to the sender; false (nothing recorded) when it is
    /// outside the pool, already granted, or the window is full.
    pub fn grant(&mut self, slot: u32) -> bool {
        let ok = self.granted_count < WINDOW && self.granted.get(slot as usize).is_some_and(|g| !g);
        if ok {
            self.granted[slot as usize] = true;
            self.granted_count += 1;
        }
        ok
    }

    /// Slots granted and not yet written back.
    pub fn granted(&self) -> usize {
        self.granted_count
    }

    /// Takes a frame the sender wrote, with completion data `data` and `written` read from the
    /// slot's header.
    ///
    /// # Errors
    /// [`LinkFault::BadTag`] naming the rule broken; nothing is recorded then.
    pub fn accept(&mut self, data: u64, written: Written) -> Result<(), LinkFault> {
        let bad = |why| LinkFault::BadTag { data, why };
        let tag = Tag::decode(data);
        let slot = usize::from(tag.slot);
        if !self.granted.get(slot).copied().unwrap_or(false) {
            return Err(bad(TagFault::NotGranted));
        }
        let seq = extend_seq(self.next, tag.seq);
        let ahead = seq.wrapping_sub(self.next);
        let at = (seq % WINDOW as u64) as usize;
        if ahead >= WINDOW as u64 || self.pending[at].is_some() {
            return Err(bad(TagFault::Sequence));
        }
        if tag.payload_len > self.payload_capacity
            || written.payload_len != tag.payload_len
            || written.metadata_len > self.metadata_capacity
        {
            return Err(bad(TagFault::Length));
        }
        self.granted[slot] = false;
        self.granted_count -= 1;
        self.pending[at] = Some(Frame {
            slot: u32::from(tag.slot),
            payload_len: written.payload_len,
            metadata_len: written.metadata_len,
            timestamp_ns: written.timestamp_ns,
            seq,
        });
        Ok(())
    }

    /// The next frame in sequence order, once it has been accepted.
    pub fn pop(&mut self) -> Option<Frame> {
        let at = (self.next % WINDOW as u64) as usize;
        let f = self.pending[at].take()?;
        self.next += 1;
        Some(f)
    }

    /// Slots granted but never written and frames accepted but not popped, all handed back
    /// (the link ended): the caller returns them to the pool.
    pub fn drain(&mut self, mut give_back: impl FnMut(u32)) {
        for (slot, g) in self.granted.iter_mut().enumerate() {
            if std::mem::take(g) {
                give_back(slot as u32);
            }
        }
        self.granted_count = 0;
        for p in &mut self.pending {
            if let Some(f) = p.take() {
                give_back(f.slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(slot: u16, seq: u16, payload_len: u32) -> u64 {
        Tag {
            slot,
            seq,
            payload_len,
        }
        .encode()
    }

    fn written(payload_len: u32) -> Written {
        Written {
            payload_len,
            metadata_len: 0,
            timestamp_ns: 7,
        }
    }

    #[test]
    fn frames_striped_out_of_order_come_out_in_sequence() {
        let mut w = Window::new(16, 1000, 64);
        for slot in 0..4 {
            assert!(w.grant(slot));
        }
        assert!(!w.grant(2), "a slot is granted once");
        assert!(!w.grant(16), "outside the pool");
        assert_eq!(w.granted(), 4);
        w.accept(tag(2, 1, 10), written(10)).unwrap();
        assert_eq!(w.pop(), None, "frame 0 has not come yet");
        w.accept(tag(3, 3, 30), written(30)).unwrap();
        w.accept(tag(0, 0, 0), written(0)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| w.pop())
            .map(|f| (f.seq, f.slot))
            .collect();
        assert_eq!(order, vec![(0, 0), (1, 2)], "2 waits for its turn");
        w.accept(tag(1, 2, 20), written(20)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| w.pop())
            .map(|f| (f.seq, f.slot))
            .collect();
        assert_eq!(order, vec![(2, 1), (3, 3)]);
        assert_eq!(w.granted(), 0);
    }

    #[test]
    fn sequences_wrap_past_16_bits() {
        let mut w = Window::new(4, 100, 0);
        for i in 0..70_000u64 {
            assert!(w.grant(1));
            w.accept(tag(1, i as u16, 5), written(5)).unwrap();
            assert_eq!(w.pop().map(|f| f.seq), Some(i));
        }
    }

    #[test]
    fn every_bad_tag_is_refused_and_changes_nothing() {
        let mut w = Window::new(8, 100, 16);
        assert!(w.grant(3));
        let why = |r: Result<(), LinkFault>| match r {
            Err(LinkFault::BadTag { why, .. }) => why,
            r => panic!("{r:?}"),
        };
        assert_eq!(
            why(w.accept(tag(4, 0, 1), written(1))),
            TagFault::NotGranted
        );
        assert_eq!(
            why(w.accept(tag(900, 0, 1), written(1))),
            TagFault::NotGranted
        );
        assert_eq!(why(w.accept(tag(3, 64, 1), written(1))), TagFault::Sequence);
        assert_eq!(
            why(w.accept(tag(3, u16::MAX, 1), written(1))),
            TagFault::Sequence
        );
        assert_eq!(
            why(w.accept(tag(3, 0, 101), written(101))),
            TagFault::Length
        );
        assert_eq!(why(w.accept(tag(3, 0, 5), written(6))), TagFault::Length);
        let meta = Written {
            metadata_len: 17,
            ..written(5)
        };
        assert_eq!(why(w.accept(tag(3, 0, 5), meta)), TagFault::Length);
        assert_eq!(w.granted(), 1, "refusals record nothing");
        w.accept(tag(3, 0, 5), written(5)).unwrap();
        assert!(w.grant(3));
        assert_eq!(
            why(w.accept(tag(3, 0, 5), written(5))),
            TagFault::Sequence,
            "a sequence accepted and not yet popped is not taken twice"
        );
        assert_eq!(w.pop().map(|f| (f.slot, f.payload_len)), Some((3, 5)));
        assert_eq!(
            why(w.accept(tag(3, 0, 5), written(5))),
            TagFault::Sequence,
            "behind"
        );
    }

    #[test]
    fn drain_gives_back_every_slot_granted_or_waiting() {
        let mut w = Window::new(8, 100, 0);
        for slot in [1, 4, 6] {
            assert!(w.grant(slot));
        }
        w.accept(tag(4, 1, 2), written(2)).unwrap();
        let mut back = Vec::new();
        w.drain(|s| back.push(s));
        back.sort_unstable();
        assert_eq!(back, vec![1, 4, 6]);
        assert_eq!((w.granted(), w.pop()), (0, None));
    }

    #[test]
    fn the_window_holds_at_most_its_size() {
        let mut w = Window::new(200, 100, 0);
        assert!((0..WINDOW as u32).all(|s| w.grant(s)));
        assert!(!w.grant(WINDOW as u32));
    }
}
