//! Packet I/O: how transports' datagrams reach a wire, in the spirit of smoltcp's
//! `phy::Device`. A transport sends a batch of datagrams ([`PacketTx`]; GSO where the backend
//! has it) and receives at most N datagrams with their metadata ([`PacketRx`]); it never knows
//! which backend carries them.
//!
//! - [`udp`]: kernel UDP sockets (`sendmsg` + UDP GSO, `recvmmsg` + GRO, multicast joins).
//! - [`fault`]: wraps any receiver (or sender) and injects loss, reordering, duplication (and,
//!   receiving, delay) from a seed, counting what it injected (tests).
//! - [`pcap`]: wraps any sender or receiver and writes every datagram to a pcap file (tests,
//!   debugging).
//! - [`redundant`]: SMPTE ST 2022-7 over any two senders or receivers: every datagram sent on
//!   both paths; both received and merged by RTP sequence number.
//!
//! DPDK (physical NICs, `net_af_xdp`, `net_memif`) is the next backend (its own issue).

pub mod fault;
pub mod pcap;
pub mod redundant;
pub mod udp;

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mcm_control::dataplane::EdgeCounters;

pub use udp::{Datagram, IoCounters, RxMeta};

/// The sending half of a packet I/O backend.
pub trait PacketTx: Send {
    /// Sends `dgrams` in order, each gathered from its header and data slices; returns how many
    /// left (the rest — a full queue — is for a later call). Never blocks.
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize;
    /// The backend's counters.
    fn counters(&self) -> IoCounters;
}

/// The receiving half of a packet I/O backend.
pub trait PacketRx: Send {
    /// Lends at most `max` received datagrams to `f`, one by one, with their metadata; returns
    /// how many. `now` is the caller's clock. Never blocks.
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize;
    /// The backend's counters.
    fn counters(&self) -> IoCounters;
    /// A descriptor readable when datagrams wait (for parking lcores); `None`: none.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Whether datagrams wait that `wake_fd` does not show (already read, not handed out): the
    /// caller must not park.
    fn has_pending(&self) -> bool;
    /// When a read the backend is resting from is next allowed (`None`: not resting).
    fn next_read(&self) -> Option<Instant> {
        None
    }
    /// Datagrams the backend dropped itself for coming from a sender it does not accept (a
    /// [`redundant::RedundantRx`] filters each path by its own sender).
    fn foreign(&self) -> u64 {
        0
    }
}

impl<T: PacketTx + ?Sized> PacketTx for Box<T> {
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        (**self).send(dgrams)
    }
    fn counters(&self) -> IoCounters {
        (**self).counters()
    }
}

impl<R: PacketRx + ?Sized> PacketRx for Box<R> {
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        (**self).recv(max, now, f)
    }
    fn counters(&self) -> IoCounters {
        (**self).counters()
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).wake_fd()
    }
    fn has_pending(&self) -> bool {
        (**self).has_pending()
    }
    fn next_read(&self) -> Option<Instant> {
        (**self).next_read()
    }
    fn foreign(&self) -> u64 {
        (**self).foreign()
    }
}

impl PacketTx for udp::UdpTx {
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        udp::UdpTx::send(self, dgrams)
    }
    fn counters(&self) -> IoCounters {
        udp::UdpTx::counters(self)
    }
}

impl PacketRx for udp::UdpRx {
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        udp::UdpRx::recv(self, max, now, f)
    }
    fn counters(&self) -> IoCounters {
        udp::UdpRx::counters(self)
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd())
    }
    fn has_pending(&self) -> bool {
        udp::UdpRx::has_pending(self)
    }
    fn next_read(&self) -> Option<Instant> {
        udp::UdpRx::next_read(self)
    }
}

/// Mirrors a receiver's bytes and kernel drops into an rx edge's counters.
pub fn publish_rx(io: IoCounters, c: &EdgeCounters) {
    // Relaxed stores: statistics with one writer (the lcore).
    c.bytes.store(io.bytes, Ordering::Relaxed);
    c.socket_drops.store(io.kernel_drops, Ordering::Relaxed);
}
