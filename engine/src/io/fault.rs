//! A receiver that injects faults: wraps any [`PacketRx`] and, from a seed, loses, duplicates,
//! reorders and delays the datagrams it passes on, counting exactly what it did ([`Injected`]),
//! so a test can check that a receiver's own counters agree — with no network namespace.
//!
//! For tests: it copies every datagram into a buffer of its own (a fixed set, allocated once).
//!
//! - **loss**: the datagram is not delivered;
//! - **duplication**: it is delivered twice in a row;
//! - **reordering**: it is held back until `reorder_window` later datagrams have passed it (or
//!   [`HOLD_LIMIT`] has gone by, when the stream pauses); a datagram counts as reordered when it
//!   is delivered after a later one, exactly as a receiver sees it;
//! - **delay**: every datagram is delivered no earlier than `delay` after it was read.
//!
//! Each datagram gets at most one fault, drawn from one xorshift64* number per datagram.
//!
//! [`FaultyTx`] does the same on the sending side (loss, duplication, reordering; no delay):
//! wrapped around a sender, the receiver at the other end of a real socket sees the faults.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Datagram, IoCounters, PacketRx, PacketTx, RxMeta};

/// Bytes of one held datagram (larger ones are cut, which a test never needs).
pub const MAX_DATAGRAM: usize = 9216;
/// Datagrams held at once (ready to deliver, delayed or held back).
pub const CAPACITY: usize = 1024;
/// Longest a reordered datagram waits for later ones to pass it.
pub const HOLD_LIMIT: Duration = Duration::from_millis(20);

/// What to inject, per million datagrams, from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// Seeds the random sequence (the same seed, the same faults).
    pub seed: u64,
    /// Datagrams lost, per million.
    pub loss_ppm: u32,
    /// Datagrams duplicated, per million.
    pub duplicate_ppm: u32,
    /// Datagrams reordered, per million.
    pub reorder_ppm: u32,
    /// How many later datagrams pass a reordered one (at least 1).
    pub reorder_window: u32,
    /// How long every datagram is held before delivery.
    pub delay: Duration,
    /// Faults only among the first this many datagrams (`None`: all).
    pub limit: Option<u64>,
}

/// What a [`FaultyRx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Injected {
    /// Datagrams read from the wrapped receiver.
    pub seen: u64,
    /// Lost.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Delivered after a later datagram.
    pub reordered: u64,
    /// Held back to be reordered (each is `reordered` once something passed it).
    pub held_back: u64,
    /// Datagrams delivered (duplicates twice).
    pub delivered: u64,
}

/// One datagram held.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Its place in the wrapped receiver's stream.
    idx: u64,
    buf: usize,
    len: usize,
    meta: RxMeta,
    /// When it was read.
    at: Instant,
}

/// A reordered datagram waiting for later ones to pass it.
#[derive(Debug, Clone, Copy)]
struct Back {
    held: Held,
    /// Later datagrams still to pass it.
    left: u32,
}

/// Datagrams ready to deliver, in delivery order, with what decides "reordered".
struct Ready {
    queue: VecDeque<Held>,
    /// The highest stream index queued so far.
    highest: Option<u64>,
}

impl Ready {
    /// Queues `h`; counts it reordered when a later datagram went first, and lets it pass every
    /// held-back one.
    fn push(&mut self, h: Held, back: &mut [Back], injected: &mut Injected) {
        if self.highest.is_some_and(|m| h.idx < m) {
            injected.reordered += 1;
        }
        self.highest = self.highest.max(Some(h.idx));
        for b in back.iter_mut() {
            b.left = b.left.saturating_sub(1);
        }
        self.queue.push_back(h);
    }
}

/// A receiver wrapped with faults (see the module documentation).
pub struct FaultyRx<R> {
    inner: R,
    plan: FaultPlan,
    rng: u64,
    bufs: Vec<Box<[u8]>>,
    free: Vec<usize>,
    ready: Ready,
    back: Vec<Back>,
    injected: Injected,
    /// A copy of `injected` for whoever watches (updated at the end of every receive).
    report: Arc<Mutex<Injected>>,
}

impl<R: PacketRx> FaultyRx<R> {
    /// `inner` with the faults of `plan`.
    pub fn new(inner: R, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            // xorshift needs a non-zero state.
            rng: plan.seed ^ 0x9E37_79B9_7F4A_7C15,
            bufs: (0..CAPACITY)
                .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
                .collect(),
            free: (0..CAPACITY).rev().collect(),
            ready: Ready {
                queue: VecDeque::with_capacity(CAPACITY),
                highest: None,
            },
            back: Vec::with_capacity(CAPACITY),
            injected: Injected::default(),
            report: Arc::default(),
        }
    }

    /// What was injected, readable after the receiver has moved into a session.
    pub fn report(&self) -> Arc<Mutex<Injected>> {
        self.report.clone()
    }

    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        self.injected
    }

    /// Reads up to `max` datagrams from the wrapped receiver and files each as its fault says.
    fn pull(&mut self, max: usize, now: Instant) -> usize {
        // Room for every datagram read twice (a duplicate takes a second buffer).
        let max = max.min(self.free.len() / 2);
        if max == 0 {
            return 0;
        }
        let Self {
            inner,
            plan,
            rng,
            bufs,
            free,
            ready,
            back,
            injected,
            ..
        } = self;
        inner.recv(max, now, &mut |d, meta| {
            let idx = injected.seen;
            injected.seen += 1;
            let faulty = plan.limit.is_none_or(|l| injected.seen <= l);
            let roll = if faulty {
                (next(rng) % 1_000_000) as u32
            } else {
                u32::MAX
            };
            let (loss, dup, reorder) = (plan.loss_ppm, plan.duplicate_ppm, plan.reorder_ppm);
            if roll < loss {
                injected.lost += 1;
                return;
            }
            let mut keep = |free: &mut Vec<usize>| {
                let buf = free.pop().expect("room for two per datagram was kept");
                let len = d.len().min(MAX_DATAGRAM);
                bufs[buf][..len].copy_from_slice(&d[..len]);
                Held {
                    idx,
                    buf,
                    len,
                    meta,
                    at: now,
                }
            };
            if roll < loss + dup {
                injected.duplicated += 1;
                let (a, b) = (keep(free), keep(free));
                ready.push(a, back, injected);
                ready.push(b, back, injected);
            } else if roll < loss + dup + reorder {
                injected.held_back += 1;
                let held = keep(free);
                back.push(Back {
                    held,
                    left: plan.reorder_window.max(1),
                });
            } else {
                let h = keep(free);
                ready.push(h, back, injected);
            }
            // Held-back datagrams whose window has passed go next, oldest first.
            release(back, ready, injected, |b| b.left == 0);
        })
    }

    /// Delivers ready datagrams whose delay is over, up to `max`.
    fn deliver(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        let mut n = 0;
        while n < max {
            let Some(h) = self.ready.queue.front().copied() else {
                break;
            };
            if now < h.at + self.plan.delay {
                break;
            }
            self.ready.queue.pop_front();
            f(&self.bufs[h.buf][..h.len], h.meta);
            self.free.push(h.buf);
            n += 1;
        }
        self.injected.delivered += n as u64;
        n
    }
}

/// Moves held-back datagrams for which `due` holds to the end of `ready`, in the order they
/// were held.
fn release(
    back: &mut Vec<Back>,
    ready: &mut Ready,
    injected: &mut Injected,
    due: impl Fn(&Back) -> bool,
) {
    let mut i = 0;
    while i < back.len() {
        if due(&back[i]) {
            let b = back.remove(i);
            ready.push(b.held, back, injected);
        } else {
            i += 1;
        }
    }
}

/// xorshift64*: a fast, seedable sequence (not for cryptography).
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A sender wrapped with faults: loss, duplication and reordering (see the module
/// documentation); every datagram it sends is a copy of its own (tests only).
pub struct FaultyTx<T> {
    inner: T,
    plan: FaultPlan,
    rng: u64,
    /// Held-back copies and how many later datagrams must pass each.
    back: Vec<(Vec<u8>, u32)>,
    injected: Injected,
    /// Datagrams the wrapped sender did not take (its queue was full): gone, as on a wire.
    refused: u64,
}

impl<T: PacketTx> FaultyTx<T> {
    /// `inner` with the faults of `plan` (`delay` is not applied on this side).
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            rng: plan.seed ^ 0x9E37_79B9_7F4A_7C15,
            back: Vec::new(),
            injected: Injected::default(),
            refused: 0,
        }
    }

    /// What was injected so far (`reordered` counts the datagrams held back and sent after a
    /// later one).
    pub fn injected(&self) -> Injected {
        self.injected
    }

    /// Datagrams the wrapped sender refused.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Sends every held-back datagram now (the end of a stream).
    pub fn flush(&mut self) {
        for (copy, _) in std::mem::take(&mut self.back) {
            self.out(&copy);
        }
    }

    fn out(&mut self, bytes: &[u8]) {
        let d = Datagram {
            header: bytes,
            data: &[],
        };
        if self.inner.send(&[d]) == 1 {
            self.injected.delivered += 1;
        } else {
            self.refused += 1;
        }
    }

    /// Lets one datagram pass the held-back ones; sends those whose window has passed.
    fn passed(&mut self) {
        let mut i = 0;
        while i < self.back.len() {
            self.back[i].1 = self.back[i].1.saturating_sub(1);
            if self.back[i].1 == 0 {
                let (copy, _) = self.back.remove(i);
                self.injected.reordered += 1;
                self.out(&copy);
            } else {
                i += 1;
            }
        }
    }
}

impl<T: PacketTx> PacketTx for FaultyTx<T> {
    /// Takes every datagram: each is lost, sent, sent twice or held back by its fault.
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        for d in dgrams {
            self.injected.seen += 1;
            let faulty = self.plan.limit.is_none_or(|l| self.injected.seen <= l);
            let roll = if faulty {
                (next(&mut self.rng) % 1_000_000) as u32
            } else {
                u32::MAX
            };
            let p = self.plan;
            let mut copy = Vec::with_capacity(d.len());
            copy.extend_from_slice(d.header);
            copy.extend_from_slice(d.data);
            if roll < p.loss_ppm {
                self.injected.lost += 1;
            } else if roll < p.loss_ppm + p.duplicate_ppm {
                self.injected.duplicated += 1;
                self.out(&copy);
                self.out(&copy);
                self.passed();
            } else if roll < p.loss_ppm + p.duplicate_ppm + p.reorder_ppm {
                self.injected.held_back += 1;
                self.back.push((copy, p.reorder_window.max(1)));
            } else {
                self.out(&copy);
                self.passed();
            }
        }
        dgrams.len()
    }

    fn counters(&self) -> IoCounters {
        self.inner.counters()
    }
}

impl<R: PacketRx> PacketRx for FaultyRx<R> {
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        self.pull(max, now);
        let Self {
            back,
            ready,
            injected,
            ..
        } = self;
        release(back, ready, injected, |b| now >= b.held.at + HOLD_LIMIT);
        let n = self.deliver(max, now, f);
        if let Ok(mut r) = self.report.lock() {
            *r = self.injected;
        }
        n
    }

    fn counters(&self) -> IoCounters {
        self.inner.counters()
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.wake_fd()
    }

    fn has_pending(&self) -> bool {
        !self.ready.queue.is_empty() || !self.back.is_empty() || self.inner.has_pending()
    }

    fn next_read(&self) -> Option<Instant> {
        let delayed = self.ready.queue.front().map(|h| h.at + self.plan.delay);
        let held = self.back.iter().map(|b| b.held.at + HOLD_LIMIT).min();
        [delayed, held, self.inner.next_read()]
            .into_iter()
            .flatten()
            .min()
    }

    fn foreign(&self) -> u64 {
        self.inner.foreign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver of datagrams 0..n (each a big-endian u32), `per_call` at a time.
    struct Counting {
        next: u32,
        n: u32,
    }

    impl PacketRx for Counting {
        fn recv(&mut self, max: usize, _now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
            let mut k = 0;
            while k < max && self.next < self.n {
                f(&self.next.to_be_bytes(), RxMeta::default());
                self.next += 1;
                k += 1;
            }
            k
        }
        fn counters(&self) -> IoCounters {
            IoCounters::default()
        }
        fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
        fn has_pending(&self) -> bool {
            self.next < self.n
        }
    }

    /// What a receiver of numbered datagrams counts: distinct numbers, repeats, and numbers
    /// that arrived after a higher one.
    fn as_seen(got: &[u32]) -> (u64, u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let (mut dups, mut late, mut highest) = (0, 0, None::<u32>);
        for &x in got {
            if !seen.insert(x) {
                dups += 1;
                continue;
            }
            if highest.is_some_and(|h| x < h) {
                late += 1;
            }
            highest = highest.max(Some(x));
        }
        (seen.len() as u64, dups, late)
    }

    fn run(plan: FaultPlan, n: u32, now: Instant) -> (Vec<u32>, Injected) {
        let mut rx = FaultyRx::new(Counting { next: 0, n }, plan);
        let mut got = Vec::new();
        for step in 0..10_000u64 {
            let t = now + Duration::from_millis(step);
            rx.recv(7, t, &mut |d, _| {
                got.push(u32::from_be_bytes(d.try_into().unwrap()))
            });
            if !rx.has_pending() {
                break;
            }
        }
        (got, rx.injected())
    }

    #[test]
    fn what_is_injected_is_exactly_what_a_receiver_sees() {
        let plan = FaultPlan {
            seed: 42,
            loss_ppm: 50_000,
            duplicate_ppm: 30_000,
            reorder_ppm: 30_000,
            reorder_window: 3,
            ..FaultPlan::default()
        };
        let (got, inj) = run(plan, 10_000, Instant::now());
        assert_eq!(inj.seen, 10_000);
        // Roughly the rates asked for (5 %, 3 %, 3 % of 10 000).
        assert!((400..600).contains(&inj.lost), "{inj:?}");
        assert!((200..400).contains(&inj.duplicated), "{inj:?}");
        assert!((200..400).contains(&inj.held_back), "{inj:?}");
        assert!(
            inj.reordered > 0 && inj.reordered <= inj.held_back,
            "{inj:?}"
        );
        assert_eq!(got.len() as u64, 10_000 - inj.lost + inj.duplicated);
        assert_eq!(inj.delivered, got.len() as u64);
        // Count what a receiver would: distinct numbers missing, repeats, and late arrivals.
        let (distinct, dups, late) = as_seen(&got);
        assert_eq!(10_000 - distinct, inj.lost);
        assert_eq!(dups, inj.duplicated);
        assert_eq!(late, inj.reordered);
        // The same seed gives the same faults.
        assert_eq!(run(plan, 10_000, Instant::now()).0, got);
    }

    #[test]
    fn delay_holds_every_datagram_and_limit_ends_the_faults() {
        let now = Instant::now();
        let plan = FaultPlan {
            seed: 7,
            loss_ppm: 1_000_000,
            limit: Some(5),
            delay: Duration::from_millis(3),
            ..FaultPlan::default()
        };
        let mut rx = FaultyRx::new(Counting { next: 0, n: 10 }, plan);
        let mut got = Vec::new();
        let mut push = |d: &[u8], _: RxMeta| got.push(u32::from_be_bytes(d.try_into().unwrap()));
        assert_eq!(rx.recv(100, now, &mut push), 0, "nothing before the delay");
        assert_eq!(rx.next_read(), Some(now + Duration::from_millis(3)));
        assert_eq!(rx.recv(100, now + Duration::from_millis(3), &mut push), 5);
        assert_eq!(
            got,
            [5, 6, 7, 8, 9],
            "the first five were lost, the rest not"
        );
        assert_eq!(rx.injected().lost, 5);
    }

    /// Faults injected on the sending side reach a real receiver as injected.
    #[test]
    fn a_faulty_sender_delivers_what_it_injected_to_a_real_socket() {
        use super::super::udp::{RxAddr, SocketOptions, UdpRx, UdpTx};
        use std::net::{Ipv4Addr, SocketAddrV4};
        let opts = SocketOptions::default();
        let at = RxAddr {
            addr: Ipv4Addr::LOCALHOST,
            port: 0,
            source: None,
        };
        let mut rx = UdpRx::open(at, &opts).unwrap();
        let udp = UdpTx::open(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            rx.local().unwrap(),
            &opts,
        )
        .unwrap();
        let plan = FaultPlan {
            seed: 9,
            loss_ppm: 50_000,
            duplicate_ppm: 30_000,
            reorder_ppm: 30_000,
            reorder_window: 3,
            ..FaultPlan::default()
        };
        let mut tx = FaultyTx::new(udp, plan);
        for i in 0..2000u32 {
            let b = i.to_be_bytes();
            let d = Datagram {
                header: &b,
                data: &[],
            };
            assert_eq!(tx.send(&[d]), 1);
        }
        tx.flush();
        let inj = tx.injected();
        assert_eq!(tx.refused(), 0);
        let mut got = Vec::new();
        for _ in 0..1000 {
            rx.recv(usize::MAX, Instant::now(), &mut |d, _| {
                got.push(u32::from_be_bytes(d.try_into().unwrap()))
            });
            if got.len() as u64 == inj.delivered {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.len() as u64, inj.delivered);
        let (distinct, dups, late) = as_seen(&got);
        assert!(
            inj.lost > 50 && inj.duplicated > 20 && inj.held_back > 20,
            "{inj:?}"
        );
        assert_eq!(2000 - distinct, inj.lost);
        assert_eq!(dups, inj.duplicated);
        // Every held-back datagram went after a later one (the last few only at the flush).
        assert_eq!(late, inj.held_back);
    }
}
