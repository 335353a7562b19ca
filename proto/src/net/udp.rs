//! Kernel UDP sockets: the engine's packet I/O backend (`mcm_engine::io` implements its
//! `PacketTx` for [`UdpTx`] and `PacketRx` for [`UdpRx`]) and `mcm-perf`'s receiver.
//!
//! - **tx**: a connected UDP socket. A batch of datagrams goes out in as few system calls as
//!   possible: runs of equal-sized datagrams as one `sendmsg` with UDP GSO (`UDP_SEGMENT`), the
//!   kernel cutting the gathered bytes into datagrams; without GSO, one `sendmmsg`. Each datagram
//!   is gathered from two slices (its headers and its data, which stays in the frame pool), so
//!   the frame is never copied in user space.
//! - **rx**: `recvmmsg` into a buffer owned by the session with UDP GRO (`UDP_GRO`), so one
//!   message may carry many datagrams of one size; the datagrams are lent to a closure one by one
//!   with their source address and (optionally) their software receive timestamp — at most as
//!   many as the caller asks for: what one `recvmmsg` brought beyond that (a GRO train can hold
//!   dozens) is handed out by the next calls before the socket is read again.
//! - **setup**: unicast or multicast (IGMP join on the configured interface, source-specific when
//!   a source is given), DSCP marking, large socket buffers (`SO_SNDBUFFORCE`/`SO_RCVBUFFORCE`
//!   when permitted, the ordinary options capped by `net.core.*mem_max` otherwise).
//!
//! Every call is non-blocking: a full socket buffer is `EAGAIN`, returned to the caller, which
//! retries on a later poll. IPv4 only, as ST 2110 deployments are.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Most datagrams one [`UdpTx::send`] takes.
pub const MAX_BATCH: usize = 64;
/// Most datagrams the kernel accepts in one GSO send.
const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes of one GSO send (the IP datagram limit, less headers).
const MAX_GSO_BYTES: usize = 65_000;
/// Messages per `recvmmsg`: without GRO, the most datagrams one [`UdpRx::recv`] yields.
pub const RX_MESSAGES: usize = 16;
/// Bytes of one receive message: a GRO train of up to 64 KiB.
const RX_MESSAGE_BYTES: usize = 65_536;

/// Options applied to a session's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// DSCP code point (0..=63) written into the IP TOS byte of every datagram sent.
    pub dscp: u8,
    /// Socket buffer size asked for, in bytes (send buffer on tx, receive buffer on rx).
    pub buffer_bytes: usize,
    /// Multicast TTL of sent datagrams.
    pub multicast_ttl: u8,
    /// Address of the interface multicast is sent from and joined on
    /// (`0.0.0.0`: the kernel's choice by route).
    pub interface: Ipv4Addr,
    /// Whether to ask for software receive timestamps (`SO_TIMESTAMPNS`) on rx.
    pub rx_timestamps: bool,
    /// Whether rx asks the kernel to coalesce datagrams (GRO). Off where each datagram needs
    /// its own slot (audio), so one receive never yields more than 16 datagrams.
    pub gro: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            dscp: 34,
            buffer_bytes: 32 << 20,
            multicast_ttl: 32,
            interface: Ipv4Addr::UNSPECIFIED,
            rx_timestamps: false,
            gro: true,
        }
    }
}

/// One datagram to send: `header` then `data`, gathered by the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Datagram<'a> {
    /// RTP and payload headers.
    pub header: &'a [u8],
    /// Payload bytes (in the frame pool).
    pub data: &'a [u8],
}

impl Datagram<'_> {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.header.len() + self.data.len()
    }

    /// Whether the datagram is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of one socket (single writer: its lcore).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoCounters {
    /// Datagrams sent or received.
    pub datagrams: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// System calls made.
    pub syscalls: u64,
    /// Calls that found the socket buffer full (tx) or empty (rx).
    pub would_block: u64,
    /// Calls that failed otherwise (the last error is in `last_errno`).
    pub errors: u64,
    /// The last error other than `EAGAIN`.
    pub last_errno: i32,
    /// rx: datagrams the kernel dropped because the socket buffer was full, as of the last
    /// datagram read (`SO_RXQ_OVFL`: each datagram carries the socket's drop count when it
    /// was queued).
    pub kernel_drops: u64,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Creates a non-blocking, close-on-exec IPv4 UDP socket.
fn udp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned fd is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: `fd` is a freshly created descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and `len` is `v`'s size.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &mut len) };
    if rc < 0 { Err(last_error()) } else { Ok(v) }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn bind(fd: RawFd, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(addr);
    // SAFETY: `sa` is a live sockaddr_in and the length is its size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

fn connect(fd: RawFd, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(addr);
    // SAFETY: as in `bind`.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are live and `len` is `sa`'s size.
    let rc = unsafe { libc::getsockname(fd, (&raw mut sa).cast(), &mut len) };
    if rc < 0 {
        return Err(last_error());
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    ))
}

/// Sets a socket buffer: the privileged `*FORCE` option first (root or `CAP_NET_ADMIN` may pass
/// `net.core.*mem_max`), the ordinary one otherwise. Returns the size the kernel granted.
fn set_buffer(fd: RawFd, force: i32, plain: i32, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, force, &want).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, plain, &want)?;
    }
    let read = if force == libc::SO_SNDBUFFORCE {
        libc::SO_SNDBUF
    } else {
        libc::SO_RCVBUF
    };
    // The kernel reports twice the size asked for (it counts its bookkeeping).
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, read)? as usize / 2)
}

/// A tx session's socket: connected to its destination.
#[derive(Debug)]
pub struct UdpTx {
    fd: OwnedFd,
    dest: SocketAddrV4,
    gso: bool,
    buffer: usize,
    counters: IoCounters,
}

impl UdpTx {
    /// Opens a socket bound to `local` (port 0: any) and connected to `dest`, with `opts`.
    pub fn open(local: SocketAddrV4, dest: SocketAddrV4, opts: &SocketOptions) -> io::Result<Self> {
        let fd = udp_socket()?;
        let raw = fd.as_raw_fd();
        let tos = libc::c_int::from(opts.dscp & 0x3f) << 2;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_TOS, &tos)?;
        let buffer = set_buffer(
            raw,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            opts.buffer_bytes,
        )?;
        if dest.ip().is_multicast() {
            let ttl = libc::c_int::from(opts.multicast_ttl);
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl)?;
            let ifaddr = libc::in_addr {
                s_addr: u32::from(opts.interface).to_be(),
            };
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &ifaddr)?;
        }
        bind(raw, local)?;
        connect(raw, dest)?;
        // GSO is probed by asking for it; a kernel without it refuses the option.
        let probe: libc::c_int = 0;
        let gso = setsockopt(raw, libc::SOL_UDP, libc::UDP_SEGMENT, &probe).is_ok();
        Ok(Self {
            fd,
            dest,
            gso,
            buffer,
            counters: IoCounters::default(),
        })
    }

    /// Turns UDP GSO off (for comparisons); `sendmmsg` is used instead.
    pub fn disable_gso(&mut self) {
        self.gso = false;
    }

    /// Whether sends use UDP GSO.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Where datagrams go.
    pub fn dest(&self) -> SocketAddrV4 {
        self.dest
    }

    /// The local address the socket is bound to.
    pub fn local(&self) -> io::Result<SocketAddrV4> {
        local_addr(self.fd.as_raw_fd())
    }

    /// Send buffer size granted by the kernel.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer
    }

    /// Counters so far.
    pub fn counters(&self) -> IoCounters {
        self.counters
    }

    /// Sends `dgrams` (at most [`MAX_BATCH`]) in order; returns how many left. Stops at the first
    /// datagram the socket cannot take now (`EAGAIN`): the rest is for a later call. A hard error
    /// (`ECONNREFUSED` from an ICMP port unreachable on loopback, say) is counted and the batch
    /// reported sent, as a network would have lost it: a tx session never stalls on its peer.
    pub fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        let dgrams = &dgrams[..dgrams.len().min(MAX_BATCH)];
        let mut done = 0;
        while done < dgrams.len() {
            let n = if self.gso {
                self.send_gso(&dgrams[done..])
            } else {
                self.send_mmsg(&dgrams[done..])
            };
            match n {
                Ok(0) => break,
                Ok(n) => {
                    for d in &dgrams[done..done + n] {
                        self.counters.bytes += d.len() as u64;
                    }
                    self.counters.datagrams += n as u64;
                    done += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.counters.would_block += 1;
                    break;
                }
                Err(e) => {
                    self.counters.errors += 1;
                    self.counters.last_errno = e.raw_os_error().unwrap_or(0);
                    // Dropped, as on a wire: account the rest of the run and go on.
                    done = dgrams.len();
                }
            }
        }
        done
    }

    /// One `sendmsg` with `UDP_SEGMENT` carrying the leading run of equal-sized datagrams (the
    /// run's last one may be shorter, as GSO allows).
    fn send_gso(&mut self, dgrams: &[Datagram<'_>]) -> io::Result<usize> {
        let seg = dgrams[0].len();
        let mut n = 0;
        let mut bytes = 0;
        while n < dgrams.len().min(MAX_GSO_SEGMENTS) {
            let len = dgrams[n].len();
            if len > seg || bytes + len > MAX_GSO_BYTES {
                break;
            }
            bytes += len;
            n += 1;
            if len < seg {
                break;
            }
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2 * MAX_GSO_SEGMENTS];
        for (i, d) in dgrams[..n].iter().enumerate() {
            iov[2 * i] = iovec(d.header);
            iov[2 * i + 1] = iovec(d.data);
        }
        // cmsg space for one u16 (UDP_SEGMENT), as CMSG_SPACE computes: aligned to 8 bytes.
        let mut cbuf = [0u64; 4];
        // SAFETY: msghdr is plain old data; all zeroes is a valid value.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2 * n;
        if n > 1 {
            // SAFETY: CMSG_SPACE is a pure size computation.
            let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: `msg` points at `cbuf`, which holds `space` bytes, enough for one cmsg
            // carrying a u16; CMSG_FIRSTHDR returns a pointer inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                libc::CMSG_DATA(c).cast::<u16>().write_unaligned(seg as u16);
            }
        }
        self.counters.syscalls += 1;
        // SAFETY: every iovec points into a live slice of `dgrams`; the kernel only reads them.
        let rc = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if rc < 0 { Err(last_error()) } else { Ok(n) }
    }

    /// One `sendmmsg` of up to [`MAX_BATCH`] datagrams.
    fn send_mmsg(&mut self, dgrams: &[Datagram<'_>]) -> io::Result<usize> {
        let n = dgrams.len().min(MAX_BATCH);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2 * MAX_BATCH];
        for (i, d) in dgrams[..n].iter().enumerate() {
            iov[2 * i] = iovec(d.header);
            iov[2 * i + 1] = iovec(d.data);
        }
        // SAFETY: mmsghdr is plain old data; all zeroes is a valid value.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for (i, m) in msgs[..n].iter_mut().enumerate() {
            m.msg_hdr.msg_iov = iov[2 * i..].as_mut_ptr();
            m.msg_hdr.msg_iovlen = 2;
        }
        self.counters.syscalls += 1;
        // SAFETY: each message's iovecs point into live slices of `dgrams` (read only).
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            Err(last_error())
        } else {
            Ok(rc as usize)
        }
    }
}

fn iovec(s: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: s.as_ptr().cast_mut().cast(),
        iov_len: s.len(),
    }
}

/// Where an rx socket listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxAddr {
    /// Unicast: the local address to bind. Multicast: the group.
    pub addr: Ipv4Addr,
    /// UDP port.
    pub port: u16,
    /// Source-specific multicast: the only sender accepted (IGMPv3 include filter).
    pub source: Option<Ipv4Addr>,
}

/// A received datagram's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// Sender.
    pub source: SocketAddrV4,
    /// Software receive timestamp (CLOCK_REALTIME ns) when asked for and given.
    pub timestamp_ns: Option<u64>,
}

impl Default for RxMeta {
    fn default() -> Self {
        Self {
            source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            timestamp_ns: None,
        }
    }
}

/// One message of the last `recvmmsg`: its length, GRO segment size and metadata.
#[derive(Debug, Clone, Copy, Default)]
struct Message {
    len: usize,
    seg: usize,
    meta: RxMeta,
}

/// An rx session's socket with its receive buffers.
pub struct UdpRx {
    fd: OwnedFd,
    gro: bool,
    buffer: usize,
    data: Box<[u8]>,
    counters: IoCounters,
    /// After a read that emptied the socket, reads are skipped for this long (0: never).
    read_interval: Duration,
    /// No `recvmmsg` before this instant (the socket was empty at the last read).
    rest_until: Option<Instant>,
    /// The messages of the last `recvmmsg`, and where handing them out stopped: message
    /// `next_msg`, byte `next_off` of it (`next_msg == n_msgs`: all handed out).
    msgs: [Message; RX_MESSAGES],
    n_msgs: usize,
    next_msg: usize,
    next_off: usize,
}

impl std::fmt::Debug for UdpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpRx")
            .field("fd", &self.fd)
            .field("gro", &self.gro)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl UdpRx {
    /// Opens a socket for `at`: bound to the unicast address, or to the group (joined on
    /// `opts.interface`, source-specific when `at.source` is set).
    pub fn open(at: RxAddr, opts: &SocketOptions) -> io::Result<Self> {
        let fd = udp_socket()?;
        let raw = fd.as_raw_fd();
        let on: libc::c_int = 1;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
        let buffer = set_buffer(
            raw,
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            opts.buffer_bytes,
        )?;
        if opts.rx_timestamps {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on)?;
        }
        let gro = opts.gro && setsockopt(raw, libc::SOL_UDP, libc::UDP_GRO, &on).is_ok();
        // Drop counts ride on received datagrams; without them kernel_drops stays 0.
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &on);
        bind(raw, SocketAddrV4::new(at.addr, at.port))?;
        if at.addr.is_multicast() {
            join(raw, at.addr, opts.interface, at.source)?;
            // Only the groups this socket joined, on the interface it joined them on (two
            // sockets of one group on two interfaces, as ST 2022-7 paths can be, stay apart).
            let off: libc::c_int = 0;
            let _ = setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, &off);
        }
        Ok(Self {
            fd,
            gro,
            buffer,
            data: vec![0u8; RX_MESSAGES * RX_MESSAGE_BYTES].into_boxed_slice(),
            counters: IoCounters::default(),
            read_interval: Duration::ZERO,
            rest_until: None,
            msgs: [Message::default(); RX_MESSAGES],
            n_msgs: 0,
            next_msg: 0,
            next_off: 0,
        })
    }

    /// After a read that finds the socket empty (fewer datagrams than one `recvmmsg` takes),
    /// [`UdpRx::recv`] makes no system call for `interval`: datagrams gather in the socket
    /// buffer and the next read takes many at once. A stream then costs one `recvmmsg` per
    /// interval instead of one per lcore iteration, for at most `interval` of added latency.
    /// Zero (the default) reads on every call.
    pub fn with_read_interval(mut self, interval: Duration) -> Self {
        self.read_interval = interval;
        self
    }

    /// When a skipped read is next allowed (`None`: reads are not being skipped).
    pub fn next_read(&self) -> Option<Instant> {
        self.rest_until
    }

    /// Whether the kernel coalesces datagrams (GRO).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Receive buffer size granted by the kernel.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer
    }

    /// The local address the socket is bound to.
    pub fn local(&self) -> io::Result<SocketAddrV4> {
        local_addr(self.fd.as_raw_fd())
    }

    /// Counters so far.
    pub fn counters(&self) -> IoCounters {
        self.counters
    }

    /// The socket, readable when datagrams wait (for parking lcores).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Lends at most `max` received datagrams to `f`, oldest first: first what the last
    /// `recvmmsg` brought and was not handed out yet, then — if that was all — what one new
    /// `recvmmsg` (up to 16 messages) brings. Returns the number of datagrams; 0 when none
    /// waited. Makes no system call while resting (see [`UdpRx::with_read_interval`]; `now` is
    /// the caller's clock).
    pub fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        let mut count = self.hand_out(max, f);
        if count < max && self.next_msg == self.n_msgs && self.read(now) > 0 {
            count += self.hand_out(max - count, f);
        }
        count
    }

    /// Whether datagrams already read wait to be handed out (the socket's readiness does not
    /// show them: a port with these must not park).
    pub fn has_pending(&self) -> bool {
        self.next_msg < self.n_msgs
    }

    /// Hands out up to `max` datagrams of the messages read.
    fn hand_out(&mut self, max: usize, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        let mut count = 0;
        while count < max && self.next_msg < self.n_msgs {
            let m = self.msgs[self.next_msg];
            let start = self.next_msg * RX_MESSAGE_BYTES + self.next_off;
            let len = m.seg.min(m.len - self.next_off);
            f(&self.data[start..start + len], m.meta);
            self.counters.bytes += len as u64;
            count += 1;
            self.next_off += len;
            if self.next_off >= m.len {
                self.next_msg += 1;
                self.next_off = 0;
            }
        }
        self.counters.datagrams += count as u64;
        count
    }

    /// One `recvmmsg` into the message buffers (all handed out before); returns the messages.
    fn read(&mut self, now: Instant) -> usize {
        if !self.read_interval.is_zero() && self.rest_until.is_some_and(|t| now < t) {
            return 0;
        }
        self.rest_until = None;
        self.n_msgs = 0;
        self.next_msg = 0;
        self.next_off = 0;
        // SAFETY: these are plain old data; all zeroes is a valid value.
        let mut msgs: [libc::mmsghdr; RX_MESSAGES] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut addrs: [libc::sockaddr_in; RX_MESSAGES] = unsafe { zeroed() };
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; RX_MESSAGES];
        // Control space per message: a GRO segment size (int), a timespec and a drop count
        // (u32), each CMSG_SPACE'd (24 + 32 + 24 bytes).
        let mut cbuf = [[0u64; 12]; RX_MESSAGES];
        let base = self.data.as_mut_ptr();
        for i in 0..RX_MESSAGES {
            // SAFETY: `i * RX_MESSAGE_BYTES` is inside `data`, which holds RX_MESSAGES of them.
            iov[i].iov_base = unsafe { base.add(i * RX_MESSAGE_BYTES) }.cast();
            iov[i].iov_len = RX_MESSAGE_BYTES;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&raw mut addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = cbuf[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 12]>();
        }
        self.counters.syscalls += 1;
        // SAFETY: every message points at live buffers of the sizes given; MSG_DONTWAIT so
        // the call never blocks; a null timeout.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                RX_MESSAGES as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < RX_MESSAGES as i32 && !self.read_interval.is_zero() {
            // The socket is (or was just) empty: let datagrams gather before the next read.
            self.rest_until = Some(now + self.read_interval);
        }
        if rc < 0 {
            let e = last_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                self.counters.would_block += 1;
            } else {
                self.counters.errors += 1;
                self.counters.last_errno = e.raw_os_error().unwrap_or(0);
            }
            return 0;
        }
        for i in 0..rc as usize {
            let len = (msgs[i].msg_len as usize).min(RX_MESSAGE_BYTES);
            let (seg, ts, drops) = read_cmsgs(&msgs[i].msg_hdr);
            if let Some(d) = drops {
                self.counters.kernel_drops = self.counters.kernel_drops.max(u64::from(d));
            }
            let source = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addrs[i].sin_addr.s_addr)),
                u16::from_be(addrs[i].sin_port),
            );
            self.msgs[i] = Message {
                len,
                // Without GRO a message is one datagram (an empty one is handed out empty).
                seg: if seg == 0 { len.max(1) } else { seg },
                meta: RxMeta {
                    source,
                    timestamp_ns: ts,
                },
            };
        }
        self.n_msgs = rc as usize;
        self.n_msgs
    }
}

/// Reads the GRO segment size, the receive timestamp and the socket's drop count from a
/// received message's control data.
fn read_cmsgs(h: &libc::msghdr) -> (usize, Option<u64>, Option<u32>) {
    let mut seg = 0;
    let mut ts = None;
    let mut drops = None;
    // SAFETY: `h` was filled by recvmmsg; the CMSG_* macros walk its control buffer within
    // `msg_controllen`, and each payload is read unaligned with the size its type implies.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    seg = data.cast::<libc::c_int>().read_unaligned().max(0) as usize;
                }
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let t = data.cast::<libc::timespec>().read_unaligned();
                    ts = Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64);
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    drops = Some(data.cast::<u32>().read_unaligned());
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (seg, ts, drops)
}

/// Joins `group` on the interface with address `interface`; source-specific with `source`.
fn join(
    fd: RawFd,
    group: Ipv4Addr,
    interface: Ipv4Addr,
    source: Option<Ipv4Addr>,
) -> io::Result<()> {
    let be = |a: Ipv4Addr| libc::in_addr {
        s_addr: u32::from(a).to_be(),
    };
    match source {
        Some(src) => {
            let m = libc::ip_mreq_source {
                imr_multiaddr: be(group),
                imr_interface: be(interface),
                imr_sourceaddr: be(src),
            };
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_ADD_SOURCE_MEMBERSHIP, &m)
        }
        None => {
            let m = libc::ip_mreq {
                imr_multiaddr: be(group),
                imr_interface: be(interface),
            };
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_pair(opts: &SocketOptions) -> (UdpTx, UdpRx) {
        let rx = UdpRx::open(
            RxAddr {
                addr: Ipv4Addr::LOCALHOST,
                port: 0,
                source: None,
            },
            opts,
        )
        .unwrap();
        let dest = rx.local().unwrap();
        let tx = UdpTx::open(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), dest, opts).unwrap();
        (tx, rx)
    }

    /// Receives until `want` datagrams arrived (bounded: 2 s of polls).
    fn drain(rx: &mut UdpRx, want: usize) -> Vec<(Vec<u8>, RxMeta)> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < want && std::time::Instant::now() < deadline {
            if rx.recv(usize::MAX, Instant::now(), &mut |d, m| {
                got.push((d.to_vec(), m))
            }) == 0
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        got
    }

    fn datagrams(sizes: &[usize]) -> (Vec<[u8; 4]>, Vec<Vec<u8>>) {
        let headers = (0..sizes.len()).map(|i| (i as u32).to_be_bytes()).collect();
        let data = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b + i) as u8).collect())
            .collect();
        (headers, data)
    }

    fn check(sizes: &[usize], gso: bool, opts: &SocketOptions) {
        let (mut tx, mut rx) = loopback_pair(opts);
        if !gso {
            tx.disable_gso();
        }
        let (headers, data) = datagrams(sizes);
        let dgrams: Vec<Datagram<'_>> = headers
            .iter()
            .zip(&data)
            .map(|(h, d)| Datagram { header: h, data: d })
            .collect();
        assert_eq!(tx.send(&dgrams), sizes.len());
        let got = drain(&mut rx, sizes.len());
        assert_eq!(got.len(), sizes.len(), "gso {gso} sizes {sizes:?}");
        for (i, (bytes, meta)) in got.iter().enumerate() {
            assert_eq!(
                &bytes[..4],
                &headers[i],
                "datagram {i} out of order or merged"
            );
            assert_eq!(&bytes[4..], &data[i][..]);
            assert_eq!(meta.source, tx.local().unwrap());
            assert_eq!(meta.timestamp_ns.is_some(), opts.rx_timestamps);
        }
        let c = tx.counters();
        assert_eq!(c.datagrams, sizes.len() as u64);
        assert_eq!(c.bytes, sizes.iter().map(|n| n + 4).sum::<usize>() as u64);
        if gso && tx.gso() && sizes.len() > 1 {
            // Runs of equal sizes go out in one call each.
            assert!(c.syscalls < sizes.len() as u64, "{c:?}");
        }
    }

    #[test]
    fn datagrams_arrive_whole_and_in_order_with_and_without_gso() {
        let opts = SocketOptions {
            rx_timestamps: true,
            ..SocketOptions::default()
        };
        let equal = [1196usize; 40];
        let mut mixed = vec![1196usize; 10];
        mixed.extend([600, 1196, 1196, 20, 1300, 1300, 1]);
        for gso in [true, false] {
            check(&equal, gso, &opts);
            check(&mixed, gso, &opts);
            check(&[0], gso, &SocketOptions::default());
        }
    }

    #[test]
    fn gso_is_available_here_and_counts_one_call_per_run() {
        let (mut tx, _rx) = loopback_pair(&SocketOptions::default());
        assert!(tx.gso(), "UDP GSO is expected on this kernel");
        let (h, d) = datagrams(&[1100; 64]);
        let dg: Vec<_> = h
            .iter()
            .zip(&d)
            .map(|(h, d)| Datagram { header: h, data: d })
            .collect();
        assert_eq!(tx.send(&dg), 64);
        // 64 × 1104 bytes exceed one GSO send's 65000 bytes: two calls.
        assert_eq!(tx.counters().syscalls, 2);
    }

    #[test]
    fn options_are_applied() {
        let opts = SocketOptions {
            dscp: 46,
            buffer_bytes: 4 << 20,
            ..SocketOptions::default()
        };
        let (tx, rx) = loopback_pair(&opts);
        let tos = getsockopt_int(tx.fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_TOS).unwrap();
        assert_eq!(tos, 46 << 2);
        // As root the FORCE options grant the full size; otherwise rmem_max caps it.
        assert!(tx.buffer_bytes() > 0 && rx.buffer_bytes() > 0);
        if rustix::process::geteuid().is_root() {
            assert_eq!(tx.buffer_bytes(), 4 << 20);
            assert_eq!(rx.buffer_bytes(), 4 << 20);
        }
    }

    #[test]
    fn an_unreachable_peer_does_not_stall_the_sender() {
        // Bind a socket, learn its port, close it: the port is now (very likely) closed and
        // loopback answers with ICMP port unreachable.
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let mut tx = UdpTx::open(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            dest,
            &SocketOptions::default(),
        )
        .unwrap();
        let d = [Datagram {
            header: b"x",
            data: b"y",
        }];
        for _ in 0..10 {
            assert_eq!(tx.send(&d), 1);
        }
        assert!(tx.counters().errors >= 1, "{:?}", tx.counters());
        assert_eq!(tx.counters().last_errno, libc::ECONNREFUSED);
    }

    #[test]
    fn an_empty_socket_receives_nothing_without_blocking() {
        let (_tx, mut rx) = loopback_pair(&SocketOptions::default());
        assert_eq!(
            rx.recv(usize::MAX, Instant::now(), &mut |_, _| panic!(
                "no datagram expected"
            )),
            0
        );
        assert_eq!(rx.counters().would_block, 1);
        assert_eq!(rx.next_read(), None, "no read interval: never resting");
    }

    fn one(tx: &mut UdpTx, byte: u8) {
        let d = [Datagram {
            header: &[byte],
            data: &[],
        }];
        assert_eq!(tx.send(&d), 1);
    }

    /// After a read that empties the socket, reads within the interval make no system call;
    /// what arrived meanwhile waits in the socket and the first read after it takes it all.
    #[test]
    fn a_read_interval_skips_reads_of_an_emptied_socket() {
        let (mut tx, rx) = loopback_pair(&SocketOptions::default());
        let mut rx = rx.with_read_interval(Duration::from_secs(3600));
        one(&mut tx, 1);
        assert_eq!(drain(&mut rx, 1).len(), 1);
        let calls = rx.counters().syscalls;
        let resting = rx.next_read().expect("resting after an emptying read");
        assert!(resting > Instant::now() + Duration::from_secs(3000));
        one(&mut tx, 2);
        one(&mut tx, 3);
        assert_eq!(
            rx.recv(usize::MAX, Instant::now(), &mut |_, _| panic!(
                "a read while resting"
            )),
            0
        );
        assert_eq!(rx.counters().syscalls, calls, "no recvmmsg while resting");

        // A short interval: once it has passed, one read takes both waiting datagrams.
        rx.read_interval = Duration::from_millis(1);
        rx.rest_until = Some(Instant::now() + Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        let mut got = Vec::new();
        assert_eq!(
            rx.recv(usize::MAX, Instant::now(), &mut |d, _| got.push(d[0])),
            2
        );
        assert_eq!(got, [2, 3]);
        assert_eq!(rx.counters().syscalls, calls + 1);
        assert!(rx.next_read().is_some(), "the read emptied the socket");
    }

    /// Datagrams the kernel dropped for a full socket buffer are counted: each one sent is
    /// either received or dropped, and the count arrives with the next datagram queued.
    #[test]
    fn kernel_drops_of_a_full_socket_are_counted() {
        let (mut tx, mut rx) = loopback_pair(&SocketOptions {
            buffer_bytes: 4096, // the kernel's minimum, doubled: a few datagrams
            gro: false,
            ..SocketOptions::default()
        });
        let payload = [7u8; 1000];
        const SENT: usize = 200;
        for i in 0..SENT {
            let d = [Datagram {
                header: &[i as u8],
                data: &payload,
            }];
            assert_eq!(tx.send(&d), 1);
        }
        let mut got = 0;
        while rx.recv(usize::MAX, Instant::now(), &mut |_, _| got += 1) > 0 {}
        assert!(got > 0 && got < SENT, "{got} of {SENT} fit");
        // The drops so far ride on the next datagram queued.
        one(&mut tx, 0xff);
        assert_eq!(drain(&mut rx, 1).len(), 1);
        assert_eq!(rx.counters().kernel_drops, (SENT - got) as u64);
    }

    /// A read that fills every message slot leaves the socket possibly non-empty: no rest.
    #[test]
    fn a_full_read_does_not_rest() {
        let (mut tx, rx) = loopback_pair(&SocketOptions {
            gro: false,
            ..SocketOptions::default()
        });
        let mut rx = rx.with_read_interval(Duration::from_secs(3600));
        for i in 0..RX_MESSAGES + 1 {
            one(&mut tx, i as u8);
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            rx.recv(usize::MAX, Instant::now(), &mut |_, _| {}),
            RX_MESSAGES
        );
        assert_eq!(rx.next_read(), None);
        let mut last = None;
        assert_eq!(
            rx.recv(usize::MAX, Instant::now(), &mut |d, _| last = Some(d[0])),
            1
        );
        assert_eq!(last, Some(RX_MESSAGES as u8));
    }

    /// A GRO train of 40 datagrams read by one `recvmmsg` is handed out at most `max` at a time,
    /// the rest on later calls without another system call, in order.
    #[test]
    fn a_receive_never_hands_out_more_than_asked() {
        let (mut tx, mut rx) = loopback_pair(&SocketOptions::default());
        let (headers, data) = datagrams(&[1000; 40]);
        let dgrams: Vec<Datagram<'_>> = headers
            .iter()
            .zip(&data)
            .map(|(h, d)| Datagram { header: h, data: d })
            .collect();
        assert_eq!(tx.send(&dgrams), 40);
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..100 {
            let n = rx.recv(3, Instant::now(), &mut |d, _| {
                got.push(u32::from_be_bytes(d[..4].try_into().unwrap()))
            });
            assert!(n <= 3, "{n} datagrams for a max of 3");
            calls.push(rx.counters().syscalls);
            if got.len() == 40 {
                break;
            }
        }
        assert_eq!(got, (0..40).collect::<Vec<_>>());
        if rx.gro() {
            assert!(
                *calls.last().unwrap() < 14,
                "whole GRO trains are read once: {calls:?}"
            );
        }
        assert!(!rx.has_pending());
    }
}
