//! The group port over real shared memory: clients attach through fds as an SDK would.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, unbounded};
use mcm_control::dataplane::{Attachment, ConnCounters, ConnId, Role};
use mcm_proto::shm::conn::{ClientSide, ConnKind, ConnLayout, EngineSide};
use mcm_proto::shm::desc::Descriptor;
use mcm_proto::shm::map::{Access, HugePages};
use mcm_proto::shm::pool::{PoolGeometry, PoolView};

use super::*;

const POOL_ID: u32 = 7;
const GEOMETRY: PoolGeometry = PoolGeometry {
    slot_count: 16,
    payload_capacity: 1000,
    metadata_capacity: 16,
};

struct Rig {
    port: GroupPort,
    bell: Doorbell,
    events: Receiver<Event>,
    view: PoolView,
}

struct Client {
    side: ClientSide,
    counters: Arc<ConnCounters>,
    /// The engine side's mapping of the connection block (to corrupt it as a client could).
    engine_block: *mut u8,
}

fn rig() -> Rig {
    let pool = Pool::create(POOL_ID, "mcm-test-group", GEOMETRY, HugePages::Off).unwrap();
    let view = PoolView::attach(pool.fd(), GEOMETRY, Access::ReadOnly).unwrap();
    let bell = Doorbell::new().unwrap();
    let (tx, events) = unbounded();
    let (garbage, _) = unbounded();
    let reporter = Reporter {
        events: tx,
        notifier: None,
        garbage,
    };
    let port = GroupPort::new("test", pool, bell.try_clone().unwrap(), reporter).unwrap();
    Rig {
        port,
        bell,
        events,
        view,
    }
}

impl Rig {
    /// The pool's fd (for a test that writes as the source client would).
    fn view_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.port.pool.fd()
    }

    /// Attaches a connection the way the registry does and maps its block as a client would.
    fn join(&mut self, conn: ConnId, role: Role, capacity: u32, quota: u32) -> Client {
        let (client, part) = self.connect(conn, role, capacity, quota);
        self.attach(conn, part);
        client
    }

    /// Builds a connection's edge and maps its block as a client would (not yet attached).
    fn connect(&mut self, conn: ConnId, role: Role, capacity: u32, quota: u32) -> (Client, Part) {
        let kind = match role {
            Role::Source => ConnKind::Tx,
            Role::Sink => ConnKind::Rx,
        };
        let layout = ConnLayout::new(kind, capacity).unwrap();
        let side =
            EngineSide::create_with_bell("mcm-test-conn", layout, self.bell.try_clone().unwrap())
                .unwrap();
        let fd = side.region().dup_fd().unwrap();
        let cb = side.client_bell().fd().try_clone_to_owned().unwrap();
        let eb = side.engine_bell().fd().try_clone_to_owned().unwrap();
        let client = ClientSide::attach(fd.as_fd(), cb, eb, kind).unwrap();
        let counters = Arc::new(ConnCounters::default());
        let engine_block = side.region().as_ptr();
        let part = crate::transport::shm::build(
            Attachment {
                conn,
                role,
                side,
                quota,
                counters: counters.clone(),
            },
            self.port.pool.id(),
        );
        let client = Client {
            side: client,
            counters,
            engine_block,
        };
        (client, part)
    }

    fn attach(&mut self, edge: EdgeId, part: Part) {
        self.send(GroupMsg::Attach { edge, part });
        assert!(
            self.events
                .try_iter()
                .any(|e| e == Event::EdgeAttached { edge }),
            "an attached edge is reported"
        );
    }

    fn send(&mut self, msg: GroupMsg) {
        self.port.message(Box::new(msg), Instant::now());
    }

    fn poll(&mut self) -> u32 {
        self.port.poll(Instant::now(), 64).items()
    }

    fn failures(&self) -> Vec<(ConnId, String)> {
        self.events
            .try_iter()
            .filter_map(|e| match e {
                Event::EdgeFailed { edge, reason } => Some((edge, reason.to_string())),
                Event::EdgeAttached { .. } | Event::EdgeDetached { .. } => None,
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }
}

impl Client {
    fn pop_all(&mut self) -> Vec<Descriptor> {
        std::iter::from_fn(|| self.side.pop()).collect()
    }
}

/// A frame descriptor for a lent slot.
fn frame(slot: u32, len: u32, ts: u64) -> Descriptor {
    Descriptor {
        pool: POOL_ID,
        slot,
        payload_len: len,
        metadata_len: 0,
        seq: 999,
        timestamp_ns: ts,
    }
}

#[test]
fn source_is_lent_its_quota_and_frames_reach_every_sink_by_reference() {
    let mut r = rig();
    let mut a = r.join(1, Role::Sink, 8, 8);
    let mut b = r.join(2, Role::Sink, 8, 8);
    let mut src = r.join(3, Role::Source, 4, 4);
    let lent = src.pop_all();
    assert_eq!(lent.len(), 4, "the source is lent exactly its quota");
    assert_eq!(r.port.free_slots(), 12);
    for (i, d) in lent.iter().enumerate() {
        assert_eq!((d.pool, d.payload_len), (POOL_ID, 1000));
        src.side.push(frame(d.slot, 100 + i as u32, 42)).unwrap();
    }
    r.poll();
    for sink in [&mut a, &mut b] {
        let got = sink.pop_all();
        assert_eq!(got.len(), 4);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.slot, lent[i].slot, "the same slot, not a copy");
            assert_eq!(d.seq, i as u64, "the engine numbers frames, not the client");
            assert_eq!((d.payload_len, d.timestamp_ns), (100 + i as u32, 42));
            let h = r.view.header(d.slot).unwrap();
            assert_eq!(
                (h.seq, h.payload_len, h.timestamp_ns),
                (i as u64, 100 + i as u32, 42)
            );
        }
        assert_eq!(sink.counters.snapshot(), (4, 100 + 101 + 102 + 103, 0));
    }
    assert_eq!(src.counters.snapshot().0, 4);
    // The source got 4 fresh slots back after publishing; published slots are held by sinks.
    assert_eq!(src.pop_all().len(), 4);
    assert_eq!(r.port.free_slots(), 8);
    // A slot returns to the pool only when the last sink releases it.
    let held_by_a: Vec<_> = (0..4).map(|i| lent[i].slot).collect();
    for &s in &held_by_a {
        a.side.push(frame(s, 0, 0)).unwrap();
    }
    r.poll();
    assert_eq!(r.port.free_slots(), 8, "b still holds all four");
    for &s in &held_by_a {
        b.side.push(frame(s, 0, 0)).unwrap();
    }
    r.poll();
    assert_eq!(r.port.free_slots(), 12);
    assert!(r.failures().is_empty());
}

#[test]
fn a_full_sink_drops_and_counts_while_the_others_get_everything() {
    let mut r = rig();
    let mut fast = r.join(1, Role::Sink, 8, 8);
    let mut slow = r.join(2, Role::Sink, 2, 2);
    let mut src = r.join(3, Role::Source, 2, 2);
    let mut seqs = Vec::new();
    for _ in 0..10 {
        for d in src.pop_all() {
            src.side.push(frame(d.slot, 10, 1)).unwrap();
        }
        r.poll();
        for d in fast.pop_all() {
            seqs.push(d.seq);
            fast.side.push(d).unwrap();
        }
        r.poll();
    }
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() >= 10, "{seqs:?}");
    let (frames, _, dropped) = slow.counters.snapshot();
    assert_eq!(frames, 2, "the slow sink holds its quota and no more");
    assert_eq!(dropped, seqs.len() as u64 - 2);
    assert_eq!(fast.counters.snapshot().2, 0);
    // The slow sink catches up: it sees the two oldest frames, then new ones again.
    let old = slow.pop_all();
    assert_eq!(old.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![0, 1]);
    for d in old {
        slow.side.push(d).unwrap();
    }
    r.poll();
    for d in src.pop_all() {
        src.side.push(frame(d.slot, 10, 1)).unwrap();
    }
    r.poll();
    assert!(!slow.pop_all().is_empty());
}

#[test]
fn leaving_sinks_and_sources_give_back_every_slot() {
    let mut r = rig();
    let mut sink = r.join(1, Role::Sink, 8, 8);
    let mut src = r.join(2, Role::Source, 4, 4);
    for d in src.pop_all().into_iter().take(3) {
        src.side.push(frame(d.slot, 1, 1)).unwrap();
    }
    r.poll();
    assert_eq!(sink.pop_all().len(), 3);
    assert!(r.port.free_slots() < 16);
    r.send(GroupMsg::Detach { edge: 1 });
    assert!(sink.side.is_closed(), "a detached connection is closed");
    r.send(GroupMsg::Detach { edge: 2 });
    assert!(src.side.is_closed());
    assert_eq!(r.port.free_slots(), 16);
    // A late joiner starts a fresh stream on the same group.
    let mut again = r.join(3, Role::Source, 2, 2);
    assert_eq!(again.pop_all().len(), 2);
}

#[test]
fn a_lying_source_is_detached_and_its_slots_reclaimed() {
    type Lie = Box<dyn Fn(u32) -> Descriptor>;
    let cases: Vec<(&str, Lie)> = vec![
        ("not lent", Box::new(|_| frame(15, 1, 0))),
        ("slot 99", Box::new(|_| frame(99, 1, 0))),
        (
            "pool 8",
            Box::new(|s| Descriptor {
                pool: 8,
                ..frame(s, 1, 0)
            }),
        ),
        ("payload_len 1001", Box::new(|s| frame(s, 1001, 0))),
    ];
    for (name, lie) in cases {
        let mut r = rig();
        let mut sink = r.join(1, Role::Sink, 8, 8);
        let mut src = r.join(2, Role::Source, 4, 4);
        let lent = src.pop_all();
        src.side.push(frame(lent[0].slot, 1, 0)).unwrap();
        src.side.push(lie(lent[1].slot)).unwrap();
        r.poll();
        let f = r.failures();
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        assert_eq!(f[0].0, 2, "{name}");
        assert!(
            f[0].1.contains(name.split(' ').next().unwrap()),
            "{name}: {}",
            f[0].1
        );
        assert!(src.side.is_closed(), "{name}");
        // The honest frame before the lie was delivered; the rest of the lent slots came back.
        assert_eq!(sink.pop_all().len(), 1, "{name}");
        assert_eq!(r.port.free_slots(), 15, "{name}");
    }
}

#[test]
fn a_sink_releasing_what_it_does_not_hold_is_detached() {
    let mut r = rig();
    let mut honest = r.join(1, Role::Sink, 8, 8);
    let mut liar = r.join(2, Role::Sink, 8, 8);
    let mut src = r.join(3, Role::Source, 4, 4);
    for d in src.pop_all() {
        src.side.push(frame(d.slot, 1, 0)).unwrap();
    }
    r.poll();
    let got = liar.pop_all();
    liar.side.push(got[0]).unwrap();
    liar.side.push(got[0]).unwrap(); // a double release
    r.poll();
    let f = r.failures();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].1.contains("does not hold"), "{}", f[0].1);
    assert!(liar.side.is_closed() && !honest.side.is_closed());
    // The honest sink still holds its four frames; releasing them frees everything published.
    for d in honest.pop_all() {
        honest.side.push(d).unwrap();
    }
    r.poll();
    assert_eq!(
        r.port.free_slots(),
        12,
        "only the source's lent slots are out"
    );
}

#[test]
fn corrupt_ring_indices_detach_the_client() {
    let mut r = rig();
    let src = r.join(1, Role::Source, 4, 4);
    let _sink = r.join(2, Role::Sink, 4, 4);
    let engine_block = src.engine_block;
    let src = Client {
        engine_block,
        ..src
    };
    // Scribble an impossible producer index into the source's frame ring.
    let (_inbox, outbox) = src.side.into_split();
    let layout = ConnLayout::new(ConnKind::Tx, 4).unwrap();
    let tail = layout.to_engine_offset() + mcm_proto::shm::ring::TAIL_OFFSET;
    // SAFETY: the offset lies inside the connection block the engine side maps (still mapped:
    // the edge holds it), 8-aligned.
    unsafe {
        src.engine_block
            .add(tail)
            .cast::<u64>()
            .write_volatile(1 << 40)
    };
    r.poll();
    let f = r.failures();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].1.contains("corrupt"), "{}", f[0].1);
    assert!(r.port.source.is_none());
    assert_eq!(r.port.free_slots(), 16);
    drop(outbox);
}

#[test]
fn parking_is_refused_while_input_is_pending_and_clients_ring_a_parked_group() {
    let mut r = rig();
    let mut src = r.join(1, Role::Source, 4, 4);
    let lent = src.pop_all();
    assert!(!r.port.prepare_park(), "nothing pending");
    src.side.push(frame(lent[0].slot, 1, 0)).unwrap();
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
        r.bell.fd(),
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    assert_eq!(rustix::event::poll(&mut fds, Some(&zero)).unwrap(), 1);
    r.port.end_park();
    assert!(r.port.prepare_park(), "a frame is pending");
    r.port.end_park();
    assert_eq!(r.poll(), 1 + 1, "one frame published, one slot lent again");
}

/// What a test bridge is told to do and what it saw, shared with the test.
#[derive(Default)]
struct Script {
    /// Sink: frames offered and accepted, with the first payload byte read in place.
    offered: Vec<(Frame, u8)>,
    /// Sink: how many more offers to accept.
    room: usize,
    /// Sink: slots to release on the next poll.
    release: Vec<u32>,
    /// Source: frames to receive on the next poll (payload byte, length), and slots to abandon.
    receive: Vec<(u8, u32)>,
    abandon_next: bool,
    /// Source: slots it could not get.
    starved: usize,
    /// Slots it was refused (publish or release of a slot it does not hold).
    refused: Vec<u32>,
}

struct TestEdge {
    script: Arc<std::sync::Mutex<Script>>,
    /// As a sink: whether it paces the source (an ST 2110 sender would).
    paces: bool,
}

impl Sink for TestEdge {
    fn name(&self) -> &str {
        "test sink"
    }
    fn paces_source(&self) -> bool {
        self.paces
    }
    fn offer(&mut self, frame: Frame) -> bool {
        let mut s = self.script.lock().unwrap();
        if s.room == 0 {
            return false;
        }
        s.room -= 1;
        s.offered.push((frame, 0));
        true
    }
    fn missed(&mut self, _frame: Frame) {}
    fn poll(&mut self, _now: Instant, _budget: u32, io: &mut SinkIo<'_>) -> Result<u32, Violation> {
        let mut s = self.script.lock().unwrap();
        let mut work = 0;
        for i in 0..s.offered.len() {
            let slot = s.offered[i].0.slot;
            if let Some(p) = io.payload(slot) {
                s.offered[i].1 = p[0];
            }
        }
        for slot in std::mem::take(&mut s.release) {
            if !io.release(slot) {
                s.refused.push(slot);
            }
            work += 1;
        }
        // Slots it never held are refused.
        assert!(io.payload(u32::MAX).is_none());
        assert!(!io.release(u32::MAX));
        Ok(work)
    }
}

impl Source for TestEdge {
    fn name(&self) -> &str {
        "test source"
    }
    fn poll(
        &mut self,
        _now: Instant,
        _budget: u32,
        io: &mut SourceIo<'_>,
    ) -> Result<u32, Violation> {
        let mut s = self.script.lock().unwrap();
        let mut work = 0;
        for (byte, len) in std::mem::take(&mut s.receive) {
            let Some(slot) = io.alloc() else {
                s.starved += 1;
                continue;
            };
            io.payload_mut(slot).unwrap()[..len as usize].fill(byte);
            if s.abandon_next {
                s.abandon_next = false;
                io.abandon(slot);
                continue;
            }
            let frame = Frame {
                slot,
                payload_len: len,
                metadata_len: 0,
                timestamp_ns: u64::from(byte),
                seq: 0,
            };
            assert!(io.publish(frame));
            assert!(
                !io.publish(frame),
                "a published slot is no longer the source's"
            );
            work += 1;
        }
        Ok(work)
    }
}

fn bridged(role: Role, quota: u32) -> (Rig, Arc<std::sync::Mutex<Script>>) {
    let mut r = rig();
    let script = Arc::new(std::sync::Mutex::new(Script::default()));
    let edge = TestEdge {
        script: script.clone(),
        paces: false,
    };
    let part = match role {
        Role::Sink => Part::Sink(Box::new(edge), quota),
        Role::Source => Part::Source(Box::new(edge), quota),
    };
    r.attach(100, part);
    (r, script)
}

#[test]
fn a_sink_bridge_reads_frames_in_place_and_holds_them_until_it_releases_them() {
    let (mut r, script) = bridged(Role::Sink, 4);
    let mut sink = r.join(1, Role::Sink, 8, 8);
    let mut src = r.join(2, Role::Source, 4, 4);
    script.lock().unwrap().room = 3;
    let lent = src.pop_all();
    for (i, d) in lent.iter().enumerate() {
        // The client writes its frame into the slot (through its own mapping in real life;
        // the test writes through the pool view's fd).
        let mut w = PoolView::attach(r.view_fd(), GEOMETRY, Access::ReadWrite).unwrap();
        w.payload_mut(d.slot, 1).unwrap()[0] = 0xA0 + i as u8;
        src.side.push(frame(d.slot, 500, 7)).unwrap();
    }
    r.poll();
    r.poll();
    let offered: Vec<(Frame, u8)> = script.lock().unwrap().offered.clone();
    assert_eq!(offered.len(), 3, "the bridge took what it had room for");
    for (i, (f, byte)) in offered.iter().enumerate() {
        assert_eq!(
            (f.slot, f.payload_len, f.seq),
            (lent[i].slot, 500, i as u64)
        );
        assert_eq!(
            *byte,
            0xA0 + i as u8,
            "the bridge reads the very slot the source wrote"
        );
    }
    // The SDK sink releases everything: the three bridged slots stay out of the pool.
    let free_before = r.port.free_slots();
    for d in sink.pop_all() {
        sink.side.push(d).unwrap();
    }
    r.poll();
    assert_eq!(
        r.port.free_slots(),
        free_before + 1,
        "only the unbridged frame came back"
    );
    // The bridge releases two; a slot it never held is refused.
    script.lock().unwrap().release = vec![offered[0].0.slot, offered[1].0.slot, lent[3].slot];
    r.poll();
    assert_eq!(r.port.free_slots(), free_before + 3);
    assert_eq!(script.lock().unwrap().refused, vec![lent[3].slot]);
}

#[test]
fn a_source_bridge_fills_slots_that_reach_every_sink_and_may_abandon_them() {
    let (mut r, script) = bridged(Role::Source, 2);
    let mut a = r.join(1, Role::Sink, 8, 8);
    let mut b = r.join(2, Role::Sink, 8, 8);
    let free = r.port.free_slots();
    {
        let mut s = script.lock().unwrap();
        s.abandon_next = true;
        s.receive = vec![(1, 10), (2, 20), (3, 30)];
    }
    r.poll();
    for sink in [&mut a, &mut b] {
        let got = sink.pop_all();
        assert_eq!(got.len(), 2, "the abandoned frame is not delivered");
        for (i, d) in got.iter().enumerate() {
            let byte = 2 + i as u8;
            assert_eq!(
                (d.seq, d.payload_len, d.timestamp_ns),
                (i as u64, 10 * u32::from(byte), u64::from(byte))
            );
            assert_eq!(r.view.payload(d.slot, d.payload_len).unwrap()[0], byte);
        }
        for d in got {
            sink.side.push(d).unwrap();
        }
    }
    assert_eq!(r.port.free_slots(), free - 2);
    r.poll();
    assert_eq!(
        r.port.free_slots(),
        free,
        "released by both sinks: back in the pool"
    );
    // Its quota bounds what it holds at once, not what it publishes: three frames in one poll
    // with a quota of 2 all go through, as each publication hands its slot on.
    script.lock().unwrap().receive = vec![(5, 1); 3];
    r.poll();
    assert_eq!(
        a.pop_all().len(),
        3,
        "each publication frees the quota again"
    );
    assert_eq!(script.lock().unwrap().starved, 0);
    assert!(r.failures().is_empty());
}

/// A sink that paces the group holds the SDK sender to its room: frames the sender has, lent
/// or queued at the sink, never exceed the smaller quota, even in a poll that takes frames and
/// lends slots again (the sink then misses none).
#[test]
fn a_pacing_sink_caps_what_the_sender_has_in_flight() {
    let mut r = rig();
    let script = Arc::new(std::sync::Mutex::new(Script {
        room: 100,
        ..Script::default()
    }));
    let sink = TestEdge {
        script: script.clone(),
        paces: true,
    };
    r.attach(100, Part::Sink(Box::new(sink), 4));
    let mut src = r.join(1, Role::Source, 8, 8);
    let lent = src.pop_all();
    assert_eq!(lent.len(), 4, "lent up to the pacing sink's quota");
    for d in &lent {
        src.side.push(frame(d.slot, 1, 0)).unwrap();
    }
    r.poll();
    assert_eq!(script.lock().unwrap().offered.len(), 4);
    assert!(
        src.pop_all().is_empty(),
        "the sink holds 4 of its 4: nothing more is lent"
    );
    // The sink finishes two frames: two slots are lent again, no more.
    let done: Vec<u32> = script.lock().unwrap().offered[..2]
        .iter()
        .map(|(f, _)| f.slot)
        .collect();
    script.lock().unwrap().release = done;
    r.poll();
    r.poll();
    assert_eq!(src.pop_all().len(), 2);
    assert!(r.failures().is_empty());
}

/// A move to a new pool waits for a sink that reads through the engine's mapping to finish
/// its frames, and a source that attaches meanwhile starts on the new pool once it is done; an
/// SDK receiver keeps the frames of the old pool it holds, and its releases of them are let go.
#[test]
fn a_move_to_a_new_pool_waits_for_a_draining_sink_and_sdk_receivers_keep_their_frames() {
    let (mut r, script) = bridged(Role::Sink, 4);
    script.lock().unwrap().room = 4;
    let mut sdk = r.join(1, Role::Sink, 8, 8);
    let mut src = r.join(2, Role::Source, 4, 4);
    for d in src.pop_all().iter().take(2) {
        src.side.push(frame(d.slot, 10, 0)).unwrap();
    }
    r.poll();
    let held = sdk.pop_all();
    assert_eq!(held.len(), 2);
    // The sender leaves; the registry moves the group and a new sender joins.
    r.send(GroupMsg::Detach { edge: 2 });
    let next = Pool::create(POOL_ID + 1, "mcm-test-moved", GEOMETRY, HugePages::Off).unwrap();
    r.send(GroupMsg::ReplacePool(next));
    let (mut src2, part) = r.connect(3, Role::Source, 4, 4);
    r.send(GroupMsg::Attach { edge: 3, part });
    r.poll();
    assert_eq!(
        r.port.pool.id(),
        POOL_ID,
        "the bridge still holds two frames"
    );
    let early: Vec<Event> = r.events.try_iter().collect();
    assert!(
        !early.contains(&Event::EdgeAttached { edge: 3 }),
        "{early:?}"
    );
    assert!(src2.pop_all().is_empty(), "nothing is lent before the move");
    let bridged: Vec<u32> = script
        .lock()
        .unwrap()
        .offered
        .iter()
        .map(|(f, _)| f.slot)
        .collect();
    script.lock().unwrap().release = bridged;
    r.poll();
    assert_eq!(
        r.port.pool.id(),
        POOL_ID + 1,
        "moved once the bridge let go"
    );
    assert!(
        r.events
            .try_iter()
            .any(|e| e == Event::EdgeAttached { edge: 3 }),
        "the waiting sender attached"
    );
    // The SDK receiver releases its old frames: let go, no violation.
    for d in held {
        sdk.side.push(d).unwrap();
    }
    let lent = src2.pop_all();
    assert_eq!(lent.len(), 4);
    assert!(lent.iter().all(|d| d.pool == POOL_ID + 1));
    src2.side
        .push(Descriptor {
            pool: POOL_ID + 1,
            ..frame(lent[0].slot, 20, 0)
        })
        .unwrap();
    r.poll();
    let got = sdk.pop_all();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].pool, got[0].seq),
        (POOL_ID + 1, 2),
        "numbering goes on"
    );
    assert!(r.failures().is_empty());
    assert_eq!(r.port.free_slots(), GEOMETRY.slot_count - 4 - 1);
}

/// A draining sink that does not finish within the move's limit is cut off with
/// `PoolMoved` (the registry sets it up again) and the move goes ahead.
#[test]
fn a_sink_that_does_not_drain_in_time_is_set_up_again_after_the_move() {
    let (mut r, script) = bridged(Role::Sink, 4);
    script.lock().unwrap().room = 4;
    let mut src = r.join(2, Role::Source, 4, 4);
    let d = src.pop_all()[0];
    src.side.push(frame(d.slot, 10, 0)).unwrap();
    r.poll();
    r.send(GroupMsg::Detach { edge: 2 });
    let next = Pool::create(POOL_ID + 1, "mcm-test-moved", GEOMETRY, HugePages::Off).unwrap();
    r.send(GroupMsg::ReplacePool(next));
    r.poll();
    assert_eq!(r.port.pool.id(), POOL_ID);
    r.port.poll(Instant::now() + POOL_MOVE_LIMIT, 64);
    assert_eq!(r.port.pool.id(), POOL_ID + 1);
    assert_eq!(
        r.failures(),
        vec![(100, EdgeFailure::PoolMoved.to_string())]
    );
    assert_eq!(r.port.free_slots(), GEOMETRY.slot_count);
}
