//! SMPTE ST 2022-7 seamless protection over any packet I/O backend: a stream that travels two
//! paths (two interfaces, or two destinations) with identical RTP headers and payloads.
//!
//! - [`RedundantTx`] sends every datagram on both paths. A path whose queue is full (or that
//!   fails) lets the datagrams go that the other path took: they are counted as that path's
//!   loss, and the session never waits for its slower path.
//! - [`RedundantRx`] receives both paths and hands on one copy of each RTP sequence number, in
//!   sequence order, so the receiver behind it sees one clean stream. It merges like two sorted
//!   lists: each path's next packet is looked at, the lower sequence number goes first, a copy
//!   of one already handed on is discarded (`packets_redundant`). When one path skips numbers
//!   (it lost packets) and the other path has nothing yet, the merge waits up to its window
//!   (`st2110.redundancy_window_us`) for the other path to bring them, and only then gives them
//!   up. While it waits, the packets behind the one it holds stay in the socket (the kernel's
//!   buffer is the reorder buffer): the merge copies at most one datagram per path, and only
//!   at a gap. A path that is down costs nothing until the other one loses a packet.
//!
//! Each path filters its own sender. Sequence numbers are extended against the merged stream,
//! so a path that comes back after an outage of any length counts exactly the numbers it
//! missed ([`PathCounters::lost`]), as long as the two paths are less than 16384 packets
//! apart (`STRAY_DISTANCE`; about 63 ms at 1080p59.94): a copy further behind the merge is
//! taken for another stream's packet and discarded.
//! A new SSRC (a restarted sender) starts the merge over; so do sequence numbers far behind the
//! merge once the merged stream has been quiet for a window.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcm_control::dataplane::{EdgeCounters, PathCounters};
use mcm_proto::st2110::rtp;
use rustix::event::epoll;

use super::{Datagram, IoCounters, PacketRx, PacketTx, RxMeta};

/// Paths of a redundant stream.
pub const PATHS: usize = 2;
/// Largest datagram the merge can hold back at a gap (jumbo frames); a larger one is handed
/// on at once.
pub const MAX_HELD: usize = 9216;
/// Sequence numbers this far behind the merge are not a late copy from the other path but
/// another stream (a restarted sender).
const STRAY_DISTANCE: u64 = 1 << 14;
/// Consecutive stray packets on one path (with the merged stream quiet) that start the merge
/// over on them.
const RESYNC_RUN: u32 = 16;

/// Sends every datagram on two paths.
pub struct RedundantTx {
    legs: [Box<dyn PacketTx>; PATHS],
    /// Datagrams the session got out (on either path), and their bytes.
    sent: IoCounters,
    counters: Arc<EdgeCounters>,
}

impl RedundantTx {
    /// Sends on `primary` and `secondary`; per-path counts go to `counters.paths`.
    pub fn new(
        primary: impl PacketTx + 'static,
        secondary: impl PacketTx + 'static,
        counters: Arc<EdgeCounters>,
    ) -> Self {
        Self {
            legs: [Box::new(primary), Box::new(secondary)],
            sent: IoCounters::default(),
            counters,
        }
    }

    fn publish(&self) {
        for (leg, c) in self.legs.iter().zip(&self.counters.paths) {
            let got_out = leg.counters().datagrams;
            EdgeCounters::set(&c.packets, got_out);
            EdgeCounters::set(&c.lost, self.sent.datagrams.saturating_sub(got_out));
        }
    }
}

impl PacketTx for RedundantTx {
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        let first = self.legs[0].send(dgrams);
        let second = self.legs[1].send(dgrams);
        // The path that took fewer lets the rest go (counted as its loss): the other one
        // carried them, and a later call would send them twice on the path that took them.
        let n = first.max(second);
        self.sent.datagrams += n as u64;
        self.sent.bytes += dgrams[..n].iter().map(|d| d.len() as u64).sum::<u64>();
        self.publish();
        n
    }

    fn counters(&self) -> IoCounters {
        both(self.legs[0].counters(), self.legs[1].counters(), self.sent)
    }
}

/// A datagram one path brought ahead of the merge, waiting for the other path.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    len: usize,
    meta: RxMeta,
}

/// What the merge knows of one path.
struct Path {
    /// The only sender accepted on the path (`None`: anyone).
    source: Option<Ipv4Addr>,
    held: Option<Held>,
    buf: Box<[u8]>,
    /// Highest sequence number that arrived on the path.
    highest: Option<u64>,
    /// Packets of the stream that arrived.
    packets: u64,
    /// Sequence numbers skipped (late arrivals taken back).
    lost: u64,
    /// Datagrams from another sender.
    foreign: u64,
    /// Consecutive packets far behind the merge.
    strays: u32,
}

impl Path {
    fn new(source: Option<Ipv4Addr>) -> Self {
        Self {
            source,
            held: None,
            buf: vec![0; MAX_HELD].into_boxed_slice(),
            highest: None,
            packets: 0,
            lost: 0,
            foreign: 0,
            strays: 0,
        }
    }

    /// Counts packet `seq` in the path's own sequence.
    fn arrived(&mut self, seq: u64) {
        self.packets += 1;
        match self.highest {
            Some(h) if seq > h => {
                self.lost += seq - h - 1;
                self.highest = Some(seq);
            }
            Some(h) if seq < h => self.lost = self.lost.saturating_sub(1),
            Some(_) => {}
            None => self.highest = Some(seq),
        }
    }
}

/// The merge's state, apart from the receivers (so a receiver's callback can use it).
struct Merge {
    paths: [Path; PATHS],
    /// The next sequence number to hand on; `None` before the first packet.
    next: Option<u64>,
    ssrc: Option<u32>,
    /// Since when the merge has waited for the other path to fill a gap.
    waiting_since: Option<Instant>,
    /// When the merge last handed a packet on.
    last_out: Option<Instant>,
    window: Duration,
    redundant: u64,
    /// Datagrams handed on, and their bytes.
    out: IoCounters,
}

impl Merge {
    /// Takes datagram `d` of path `i`.
    fn take(
        &mut self,
        i: usize,
        d: &[u8],
        meta: RxMeta,
        now: Instant,
        f: &mut dyn FnMut(&[u8], RxMeta),
    ) {
        if self.paths[i].source.is_some_and(|s| *meta.source.ip() != s) {
            self.paths[i].foreign += 1;
            return;
        }
        let Some((seq16, ssrc)) = rtp_fields(d) else {
            // Not RTP: the receiver counts it as malformed.
            self.hand_on(d, meta, None, now, f);
            return;
        };
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.restart();
            }
            self.ssrc = Some(ssrc);
        }
        let reference = self.next.unwrap_or((1 << 32) | u64::from(seq16));
        let seq = extend(seq16, reference);
        let Some(next) = self.next else {
            self.paths[i].arrived(seq);
            self.hand_on(d, meta, Some(seq), now, f);
            return;
        };
        if seq < next {
            let path = &mut self.paths[i];
            if next - seq > STRAY_DISTANCE {
                path.strays += 1;
                let quiet = self.last_out.is_none_or(|t| now >= t + self.window);
                if path.strays >= RESYNC_RUN && quiet {
                    // The old stream has gone and this path carries a new one.
                    self.restart();
                    self.paths[i].arrived(seq);
                    self.hand_on(d, meta, Some(seq), now, f);
                    return;
                }
            } else {
                path.arrived(seq);
            }
            self.redundant += 1;
            return;
        }
        self.paths[i].arrived(seq);
        if seq == next || d.len() > MAX_HELD {
            // In order, or too large to hold: handed on (a gap before it is given up).
            self.hand_on(d, meta, Some(seq), now, f);
            return;
        }
        let path = &mut self.paths[i];
        path.buf[..d.len()].copy_from_slice(d);
        path.held = Some(Held {
            seq,
            len: d.len(),
            meta,
        });
    }

    fn hand_on(
        &mut self,
        d: &[u8],
        meta: RxMeta,
        seq: Option<u64>,
        now: Instant,
        f: &mut dyn FnMut(&[u8], RxMeta),
    ) {
        f(d, meta);
        self.out.datagrams += 1;
        self.out.bytes += d.len() as u64;
        if let Some(seq) = seq {
            self.next = Some(seq + 1);
            self.waiting_since = None;
            self.last_out = Some(now);
            for p in &mut self.paths {
                p.strays = 0;
            }
        }
    }

    /// Forgets the stream (a new sender): sequence numbers start over on both paths.
    fn restart(&mut self) {
        self.next = None;
        self.waiting_since = None;
        for p in &mut self.paths {
            p.highest = None;
            p.strays = 0;
            if p.held.take().is_some() {
                self.redundant += 1;
            }
        }
    }

    /// Hands on or discards the lowest held datagram when the merge may; returns whether it
    /// did. `empty[i]`: path `i` was just read and had nothing (a wait that is over gives up
    /// only then: after the lcore was kept from running, the other path's copies may be
    /// waiting in its socket).
    fn release(
        &mut self,
        now: Instant,
        empty: [bool; PATHS],
        f: &mut dyn FnMut(&[u8], RxMeta),
    ) -> bool {
        let heads = [self.paths[0].held, self.paths[1].held];
        let Some((i, h)) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h)))
            .min_by_key(|(_, h)| h.seq)
        else {
            return false;
        };
        let next = self.next.unwrap_or(h.seq);
        let both = heads.iter().all(Option::is_some);
        if h.seq < next {
            // The other path filled the gap and went past it.
            self.paths[i].held = None;
            self.redundant += 1;
            return true;
        }
        if h.seq > next && !both {
            // Only this path is ahead: wait for the other to bring the missing numbers.
            let since = *self.waiting_since.get_or_insert(now);
            if now < since + self.window || !empty[1 - i] {
                return false;
            }
        }
        // In order; or both paths skipped the missing numbers, or the window is over: they
        // are given up (the receiver counts them lost).
        self.paths[i].held = None;
        let path = &self.paths[i];
        let data = &path.buf[..h.len];
        f(data, h.meta);
        self.out.datagrams += 1;
        self.out.bytes += h.len as u64;
        self.next = Some(h.seq + 1);
        self.waiting_since = None;
        self.last_out = Some(now);
        if let Some(j) = (0..PATHS).find(|&j| j != i)
            && self.paths[j].held.is_some_and(|o| o.seq == h.seq)
        {
            self.paths[j].held = None;
            self.redundant += 1;
        }
        true
    }

    /// When a wait for the other path ends.
    fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.window)
    }
}

/// Receives a stream on two paths and hands on each sequence number once, in order.
pub struct RedundantRx {
    legs: [Box<dyn PacketRx>; PATHS],
    merge: Merge,
    /// An epoll set of both paths' wake fds (a path holding a datagram is left out of it
    /// while it holds: its socket stays readable, and it is not read until the merge moves).
    wake: Option<OwnedFd>,
    /// Whether path `i`'s fd is in `wake` now.
    watched: [bool; PATHS],
    counters: Arc<EdgeCounters>,
}

impl RedundantRx {
    /// Merges `legs` (`[primary, secondary]`, each with the only sender it accepts), waiting up
    /// to `window` for one path to fill the other's gap. Per-path counts go to
    /// `counters.paths`, discarded copies to `counters.packets_redundant`.
    pub fn new(
        legs: [(Box<dyn PacketRx>, Option<Ipv4Addr>); PATHS],
        window: Duration,
        counters: Arc<EdgeCounters>,
    ) -> std::io::Result<Self> {
        let [(a, sa), (b, sb)] = legs;
        let legs = [a, b];
        let wake = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let mut watched = [false; PATHS];
        for (i, leg) in legs.iter().enumerate() {
            if let Some(fd) = leg.wake_fd() {
                epoll::add(
                    &wake,
                    fd,
                    epoll::EventData::new_u64(i as u64),
                    epoll::EventFlags::IN,
                )?;
                watched[i] = true;
            }
        }
        let any = watched.iter().any(|w| *w);
        Ok(Self {
            legs,
            merge: Merge {
                paths: [Path::new(sa), Path::new(sb)],
                next: None,
                ssrc: None,
                waiting_since: None,
                last_out: None,
                window,
                redundant: 0,
                out: IoCounters::default(),
            },
            wake: any.then_some(wake),
            watched,
            counters,
        })
    }

    /// Keeps a path's fd in the wake set exactly while it holds nothing (control of readiness
    /// only at a gap: one `epoll_ctl`, which never blocks).
    fn rewatch(&mut self) {
        let Some(wake) = &self.wake else {
            return;
        };
        for i in 0..PATHS {
            let want = self.merge.paths[i].held.is_none();
            if want == self.watched[i] {
                continue;
            }
            if let Some(fd) = self.legs[i].wake_fd() {
                let flags = if want {
                    epoll::EventFlags::IN
                } else {
                    epoll::EventFlags::empty()
                };
                let data = epoll::EventData::new_u64(i as u64);
                if epoll::modify(wake, fd, data, flags).is_ok() {
                    self.watched[i] = want;
                }
            }
        }
    }

    fn publish(&self) {
        for (p, c) in self.merge.paths.iter().zip(&self.counters.paths) {
            let PathCounters { packets, lost } = c;
            EdgeCounters::set(packets, p.packets);
            EdgeCounters::set(lost, p.lost);
        }
        EdgeCounters::set(&self.counters.packets_redundant, self.merge.redundant);
    }
}

impl PacketRx for RedundantRx {
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        let mut work = 0;
        while work < max {
            let mut moved = false;
            // Whether path i was read this round and had nothing.
            let mut empty = [false; PATHS];
            for (i, empty) in empty.iter_mut().enumerate() {
                if work >= max || self.merge.paths[i].held.is_some() {
                    continue;
                }
                let merge = &mut self.merge;
                let n = self.legs[i].recv(1, now, &mut |d, meta| {
                    merge.take(i, d, meta, now, f);
                });
                work += n;
                moved |= n > 0;
                *empty = n == 0;
            }
            while self.merge.release(now, empty, f) {
                moved = true;
            }
            if !moved {
                break;
            }
        }
        self.rewatch();
        self.publish();
        work
    }

    fn counters(&self) -> IoCounters {
        both(
            self.legs[0].counters(),
            self.legs[1].counters(),
            self.merge.out,
        )
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.as_ref().map(|w| w.as_fd())
    }

    fn has_pending(&self) -> bool {
        let paths = &self.merge.paths;
        let readable = (0..PATHS).any(|i| paths[i].held.is_none() && self.legs[i].has_pending());
        readable || paths.iter().all(|p| p.held.is_some())
    }

    fn next_read(&self) -> Option<Instant> {
        [
            self.merge.deadline(),
            self.legs[0].next_read(),
            self.legs[1].next_read(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn foreign(&self) -> u64 {
        self.merge.paths.iter().map(|p| p.foreign).sum()
    }
}

/// Two paths' counters as one: the system calls, full or empty sockets, errors and kernel
/// drops of both (the last error of either), with `stream`'s datagrams and bytes (what the
/// session got out or handed on, each packet once).
fn both(a: IoCounters, b: IoCounters, stream: IoCounters) -> IoCounters {
    IoCounters {
        syscalls: a.syscalls + b.syscalls,
        would_block: a.would_block + b.would_block,
        errors: a.errors + b.errors,
        last_errno: if b.last_errno != 0 {
            b.last_errno
        } else {
            a.last_errno
        },
        kernel_drops: a.kernel_drops + b.kernel_drops,
        ..stream
    }
}

/// The sequence number and SSRC of an RTP packet (`None`: not RTP).
fn rtp_fields(d: &[u8]) -> Option<(u16, u32)> {
    let p = rtp::Packet::new_checked(d).ok()?;
    Some((p.sequence_number(), p.ssrc()))
}

/// The extended sequence number of `seq` nearest `reference` (within ±32768).
fn extend(seq: u16, reference: u64) -> u64 {
    let delta = i64::from(seq.wrapping_sub(reference as u16) as i16);
    reference.saturating_add_signed(delta)
}

#[cfg(test)]
mod tests;
