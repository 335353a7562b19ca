//! The ST 2022-7 merge over real loopback sockets: which copy of each sequence number is handed
//! on, in what order, and what each path's counters say. Time is the caller's clock, so the
//! window is tested without sleeping.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::Ordering;

use super::*;
use crate::io::udp::{RxAddr, SocketOptions, UdpRx, UdpTx};

const SSRC: u32 = 0x2022_0007;

/// An RTP packet whose payload names its sequence number and SSRC.
fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u32::from(seq).wrapping_mul(1500).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

struct Rig {
    /// Path `i`'s sender, from 127.0.0.1.
    senders: [UdpSocket; PATHS],
    to: [SocketAddrV4; PATHS],
    rx: RedundantRx,
    counters: Arc<EdgeCounters>,
    t0: Instant,
}

impl Rig {
    fn new(window: Duration, sources: [Option<Ipv4Addr>; PATHS]) -> Rig {
        let leg = || {
            let at = RxAddr {
                addr: Ipv4Addr::LOCALHOST,
                port: 0,
                source: None,
            };
            UdpRx::open(at, &SocketOptions::default()).unwrap()
        };
        let (a, b) = (leg(), leg());
        let to = [a.local().unwrap(), b.local().unwrap()];
        let counters = Arc::new(EdgeCounters::default());
        let rx = RedundantRx::new(
            [(Box::new(a), sources[0]), (Box::new(b), sources[1])],
            window,
            counters.clone(),
        )
        .unwrap();
        let sender = || UdpSocket::bind("127.0.0.1:0").unwrap();
        Rig {
            senders: [sender(), sender()],
            to,
            rx,
            counters,
            t0: Instant::now(),
        }
    }

    fn send(&self, path: usize, seq: u16) {
        self.send_as(path, seq, SSRC);
    }

    fn send_as(&self, path: usize, seq: u16, ssrc: u32) {
        self.senders[path]
            .send_to(&packet(seq, ssrc), self.to[path])
            .unwrap();
    }

    /// Everything the merge hands on at `now` (µs after the start), as (sequence, ssrc).
    fn drain_at(&mut self, us: u64) -> Vec<(u16, u32)> {
        let now = self.t0 + Duration::from_micros(us);
        let mut got = Vec::new();
        for _ in 0..100_000 {
            let n = self.rx.recv(64, now, &mut |d, _| {
                let seq = u16::from_be_bytes([d[12], d[13]]);
                let ssrc = u32::from_be_bytes([d[14], d[15], d[16], d[17]]);
                assert_eq!(u16::from_be_bytes([d[2], d[3]]), seq, "header and payload");
                got.push((seq, ssrc));
            });
            if n == 0 {
                return got;
            }
        }
        panic!("the merge never ran dry");
    }

    fn drain(&mut self) -> Vec<u16> {
        self.drain_at(0).into_iter().map(|(s, _)| s).collect()
    }

    fn path(&self, i: usize) -> (u64, u64) {
        let p = &self.counters.paths[i];
        (
            p.packets.load(Ordering::Relaxed),
            p.lost.load(Ordering::Relaxed),
        )
    }

    fn redundant(&self) -> u64 {
        self.counters.packets_redundant.load(Ordering::Relaxed)
    }
}

const WINDOW: Duration = Duration::from_millis(5);

#[test]
fn each_sequence_number_is_handed_on_once_and_in_order_whichever_path_brings_it() {
    let mut r = Rig::new(WINDOW, [None, None]);
    // Path 0 misses every 7th packet, path 1 every 11th; both miss 1 in 77. The sequence
    // numbers wrap during the run; the last packet travels both paths.
    let first = 65_000u16;
    let n = 3_000u32;
    let missed = |path: usize, k: u32| k + 1 < n && [k % 7 == 3, k % 11 == 5][path];
    let mut want = Vec::new();
    let (mut sent, mut both) = ([0u64; 2], 0u64);
    let mut got = Vec::new();
    for k in 0..n {
        let seq = first.wrapping_add(k as u16);
        for (path, sent) in sent.iter_mut().enumerate() {
            if !missed(path, k) {
                r.send(path, seq);
                *sent += 1;
            }
        }
        if !missed(0, k) || !missed(1, k) {
            want.push(seq);
        }
        both += u64::from(!missed(0, k) && !missed(1, k));
        if k % 100 == 99 {
            got.extend(r.drain());
        }
    }
    got.extend(r.drain());
    assert_eq!(got, want, "one copy of each, in order");
    let lost = |path| (0..n).filter(|&k| missed(path, k)).count() as u64;
    assert_eq!(r.path(0), (sent[0], lost(0)));
    assert_eq!(r.path(1), (sent[1], lost(1)));
    assert_eq!(
        r.redundant(),
        both,
        "the second copy of every packet both paths brought"
    );
    let io = r.rx.counters();
    assert_eq!(io.datagrams, want.len() as u64);
    assert_eq!(r.rx.foreign(), 0);
}

#[test]
fn a_path_down_longer_than_the_sequence_space_counts_exactly_what_it_missed() {
    let mut r = Rig::new(WINDOW, [None, None]);
    let mut got = Vec::new();
    let (before, down, after) = (100u32, 70_000u32, 100u32);
    for k in 0..before + down + after {
        let seq = k as u16;
        r.send(0, seq);
        if k < before || k >= before + down {
            r.send(1, seq);
        }
        if k % 500 == 499 {
            got.extend(r.drain());
        }
    }
    got.extend(r.drain());
    let total = before + down + after;
    assert_eq!(got.len() as u32, total);
    assert!(
        got.iter().enumerate().all(|(k, s)| *s == k as u16),
        "in order"
    );
    assert_eq!(r.path(0), (u64::from(total), 0));
    assert_eq!(r.path(1), (u64::from(before + after), u64::from(down)));
    assert_eq!(r.redundant(), u64::from(before + after));
}

#[test]
fn a_gap_on_one_path_waits_for_the_other_up_to_the_window() {
    let mut r = Rig::new(WINDOW, [None, None]);
    for seq in 0..2 {
        r.send(0, seq);
        r.send(1, seq);
    }
    // Path 0 loses 2 and goes on; path 1 lags behind.
    r.send(0, 3);
    r.send(0, 4);
    assert_eq!(r.drain(), [0, 1], "3 waits for path 1");
    assert!(
        !r.rx.has_pending(),
        "waiting: nothing to do before the deadline"
    );
    assert_eq!(r.rx.next_read(), Some(r.t0 + WINDOW));
    for seq in 2..5 {
        r.send(1, seq);
    }
    assert_eq!(r.drain(), [2, 3, 4], "path 1 filled the gap");
    assert_eq!(r.rx.next_read(), None);

    // Now 5 is lost on both paths and path 1 has gone quiet: 6 waits a window, then goes.
    r.send(0, 6);
    r.send(0, 7);
    assert!(r.drain_at(1_000).is_empty());
    assert!(r.drain_at(5_999).is_empty());
    assert_eq!(r.rx.next_read(), Some(r.t0 + Duration::from_micros(6_000)));
    let late: Vec<u16> = r.drain_at(6_000).into_iter().map(|(s, _)| s).collect();
    assert_eq!(late, [6, 7], "given up on 5 after the window");
    // Path 1 returns with 5..8: 5 is too late, the rest are copies.
    for seq in 5..9 {
        r.send(1, seq);
    }
    let tail: Vec<u16> = r.drain_at(6_000).into_iter().map(|(s, _)| s).collect();
    assert_eq!(tail, [8]);
    assert_eq!(r.path(0), (6, 2), "path 0 skipped 2 and 5");
    assert_eq!(r.path(1), (9, 0), "path 1 brought every number, 5 too late");
    assert_eq!(
        r.redundant(),
        2 + 2 + 3,
        "copies of 0, 1, 3, 4; 5, 6, 7 too late"
    );
}

#[test]
fn both_paths_past_a_gap_give_it_up_at_once() {
    let mut r = Rig::new(WINDOW, [None, None]);
    for seq in [0, 1, 3, 4] {
        r.send(0, seq);
        r.send(1, seq);
    }
    assert_eq!(r.drain(), [0, 1, 3, 4], "2 lost on both: no wait");
    assert_eq!((r.path(0).1, r.path(1).1), (1, 1));
}

#[test]
fn a_new_sender_starts_the_merge_over() {
    let mut r = Rig::new(WINDOW, [None, None]);
    for seq in 30_000..30_010 {
        r.send_as(0, seq, 1);
        r.send_as(1, seq, 1);
    }
    // A restarted sender: a new SSRC, and sequence numbers far behind.
    for seq in 100..110 {
        r.send_as(0, seq, 2);
        r.send_as(1, seq, 2);
    }
    let got = r.drain_at(0);
    let want: Vec<(u16, u32)> = (30_000..30_010)
        .map(|s| (s, 1))
        .chain((100..110).map(|s| (s, 2)))
        .collect();
    assert_eq!(got, want);

    // One that keeps its SSRC and jumps back: once the stream has been quiet for a window, a
    // run of such packets on one path starts the merge over on them.
    let start = 110u16.wrapping_sub(20_000);
    for i in 0..40 {
        r.send_as(0, start.wrapping_add(i), 2);
    }
    let got = r.drain_at(10_000);
    let resynced = (RESYNC_RUN as u16 - 1..40).map(|i| (start.wrapping_add(i), 2));
    assert_eq!(
        got,
        resynced.collect::<Vec<_>>(),
        "the run before the resync is discarded"
    );
}

#[test]
fn each_path_accepts_only_its_own_sender() {
    let mut r = Rig::new(
        WINDOW,
        [Some(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::LOCALHOST)],
    );
    let spoofer = UdpSocket::bind("127.0.0.2:0").unwrap();
    r.send(0, 0);
    spoofer.send_to(&packet(1, SSRC), r.to[0]).unwrap();
    spoofer.send_to(&packet(1, SSRC), r.to[1]).unwrap();
    r.send(1, 0);
    r.send(1, 1);
    assert_eq!(r.drain(), [0, 1]);
    assert_eq!(r.rx.foreign(), 2);
    assert_eq!((r.path(0), r.path(1)), ((1, 0), (2, 0)));
}

#[test]
fn a_datagram_that_is_not_rtp_is_handed_on_for_the_receiver_to_count() {
    let mut r = Rig::new(WINDOW, [None, None]);
    r.senders[0].send_to(b"not rtp", r.to[0]).unwrap();
    r.send(0, 7);
    let mut lens = Vec::new();
    let _ = r.rx.recv(64, r.t0, &mut |d, _| lens.push(d.len()));
    assert_eq!(lens, [7, packet(7, SSRC).len()]);
}

#[test]
fn the_sender_puts_every_datagram_on_both_paths() {
    let opts = SocketOptions::default();
    let leg = || {
        let at = RxAddr {
            addr: Ipv4Addr::LOCALHOST,
            port: 0,
            source: None,
        };
        let rx = UdpRx::open(at, &opts).unwrap();
        let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let tx = UdpTx::open(from, rx.local().unwrap(), &opts).unwrap();
        (tx, rx)
    };
    let ((ta, mut ra), (tb, mut rb)) = (leg(), leg());
    let counters = Arc::new(EdgeCounters::default());
    let mut tx = RedundantTx::new(ta, tb, counters.clone());
    let packets: Vec<Vec<u8>> = (0..10).map(|s| packet(s, SSRC)).collect();
    let dgrams: Vec<Datagram<'_>> = packets
        .iter()
        .map(|p| Datagram {
            header: &p[..12],
            data: &p[12..],
        })
        .collect();
    assert_eq!(tx.send(&dgrams), 10);
    let io = tx.counters();
    assert_eq!((io.datagrams, io.bytes), (10, 10 * packets[0].len() as u64));
    for rx in [&mut ra, &mut rb] {
        let mut got = Vec::new();
        for _ in 0..100 {
            if rx.recv(64, Instant::now(), &mut |d, _| got.push(d.to_vec())) == 0 && got.len() >= 10
            {
                break;
            }
        }
        assert_eq!(got, packets);
    }
    for p in &counters.paths {
        assert_eq!(
            (
                p.packets.load(Ordering::Relaxed),
                p.lost.load(Ordering::Relaxed)
            ),
            (10, 0)
        );
    }
}
