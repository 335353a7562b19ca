//! A tap that writes every datagram a sender sends or a receiver receives to a pcap file (link
//! type `LINKTYPE_IPV4`: an IPv4 and a UDP header are made up around each payload, so Wireshark
//! and tshark decode the RTP inside).
//!
//! For tests and debugging only: it writes the file from the caller's thread (buffered), which
//! an lcore must never do in production.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddrV4;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Datagram, IoCounters, PacketRx, PacketTx, RxMeta};

/// `LINKTYPE_IPV4`: each record is an IPv4 packet.
const LINKTYPE_IPV4: u32 = 228;

/// A pcap file being written.
pub struct PcapWriter {
    out: BufWriter<File>,
    /// The IPv4 identification field of the next packet.
    id: u16,
}

impl PcapWriter {
    /// Creates `path` with a pcap header.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?; // microsecond timestamps
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&65_535u32.to_le_bytes())?; // snaplen
        out.write_all(&LINKTYPE_IPV4.to_le_bytes())?;
        Ok(Self { out, id: 0 })
    }

    /// Writes one UDP datagram from `src` to `dst` whose payload is `parts` concatenated.
    /// A write error is dropped: a tap never stops the traffic it watches.
    pub fn record(&mut self, src: SocketAddrV4, dst: SocketAddrV4, parts: &[&[u8]]) {
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        let udp_len = 8 + payload;
        let ip_len = 20 + udp_len;
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len.min(65_535) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.id.to_be_bytes());
        self.id = self.id.wrapping_add(1);
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let sum = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip[20..22].copy_from_slice(&src.port().to_be_bytes());
        ip[22..24].copy_from_slice(&dst.port().to_be_bytes());
        ip[24..26].copy_from_slice(&(udp_len.min(65_535) as u16).to_be_bytes());
        // UDP checksum 0: not computed (allowed over IPv4).
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(t.as_secs() as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&t.subsec_micros().to_le_bytes());
        rec[8..12].copy_from_slice(&(ip_len as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(ip_len as u32).to_le_bytes());
        let _ = self.out.write_all(&rec);
        let _ = self.out.write_all(&ip);
        for p in parts {
            let _ = self.out.write_all(p);
        }
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

impl Drop for PcapWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The IPv4 header checksum of `h`.
fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A sender that also writes what it sent from `src` to `dst` to a pcap file.
pub struct PcapTx<T> {
    inner: T,
    pcap: PcapWriter,
    src: SocketAddrV4,
    dst: SocketAddrV4,
}

impl<T: PacketTx> PcapTx<T> {
    /// `inner`, tapped into `pcap` as datagrams from `src` to `dst`.
    pub fn new(inner: T, pcap: PcapWriter, src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        Self {
            inner,
            pcap,
            src,
            dst,
        }
    }
}

impl<T: PacketTx> PacketTx for PcapTx<T> {
    fn send(&mut self, dgrams: &[Datagram<'_>]) -> usize {
        let n = self.inner.send(dgrams);
        for d in &dgrams[..n] {
            self.pcap.record(self.src, self.dst, &[d.header, d.data]);
        }
        n
    }

    fn counters(&self) -> IoCounters {
        self.inner.counters()
    }
}

/// A receiver that also writes what it received (to `local`) to a pcap file.
pub struct PcapRx<R> {
    inner: R,
    pcap: PcapWriter,
    local: SocketAddrV4,
}

impl<R: PacketRx> PcapRx<R> {
    /// `inner`, tapped into `pcap` as datagrams to `local`.
    pub fn new(inner: R, pcap: PcapWriter, local: SocketAddrV4) -> Self {
        Self { inner, pcap, local }
    }
}

impl<R: PacketRx> PacketRx for PcapRx<R> {
    fn recv(&mut self, max: usize, now: Instant, f: &mut dyn FnMut(&[u8], RxMeta)) -> usize {
        let Self { inner, pcap, local } = self;
        inner.recv(max, now, &mut |d, meta| {
            pcap.record(meta.source, *local, &[d]);
            f(d, meta);
        })
    }

    fn counters(&self) -> IoCounters {
        self.inner.counters()
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.wake_fd()
    }

    fn has_pending(&self) -> bool {
        self.inner.has_pending()
    }

    fn next_read(&self) -> Option<Instant> {
        self.inner.next_read()
    }

    fn foreign(&self) -> u64 {
        self.inner.foreign()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::udp::{RxAddr, SocketOptions, UdpRx, UdpTx};
    use super::*;

    /// The UDP payloads of every record of a `LINKTYPE_IPV4` pcap file, with the ports.
    fn payloads(file: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        assert_eq!(&file[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&file[20..24], &LINKTYPE_IPV4.to_le_bytes());
        let mut out = Vec::new();
        let mut at = 24;
        while at < file.len() {
            let len = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
            let ip = &file[at + 16..at + 16 + len];
            assert_eq!(checksum(&ip[..20]), 0, "a valid IPv4 header checksum");
            let port = |i: usize| u16::from_be_bytes([ip[i], ip[i + 1]]);
            out.push((port(20), port(22), ip[28..].to_vec()));
            at += 16 + len;
        }
        out
    }

    #[test]
    fn sent_and_received_datagrams_are_written_as_udp_over_ipv4() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SocketOptions::default();
        let at = RxAddr {
            addr: Ipv4Addr::LOCALHOST,
            port: 0,
            source: None,
        };
        let rx = UdpRx::open(at, &opts).unwrap();
        let dst = rx.local().unwrap();
        let tx = UdpTx::open(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), dst, &opts).unwrap();
        let src = tx.local().unwrap();
        let tx_file = dir.path().join("tx.pcap");
        let rx_file = dir.path().join("rx.pcap");
        let mut tx = PcapTx::new(tx, PcapWriter::create(&tx_file).unwrap(), src, dst);
        let mut rx = PcapRx::new(rx, PcapWriter::create(&rx_file).unwrap(), dst);
        let sent: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let dgrams: Vec<Datagram<'_>> = sent
            .iter()
            .map(|p| Datagram {
                header: &p[..10],
                data: &p[10..],
            })
            .collect();
        assert_eq!(tx.send(&dgrams), 5);
        let mut got = Vec::new();
        for _ in 0..1000 {
            rx.recv(16, Instant::now(), &mut |d, _| got.push(d.to_vec()));
            if got.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, sent);
        drop((tx, rx));
        for file in [tx_file, rx_file] {
            let records = payloads(&std::fs::read(&file).unwrap());
            let want: Vec<(u16, u16, Vec<u8>)> = sent
                .iter()
                .map(|p| (src.port(), dst.port(), p.clone()))
                .collect();
            assert_eq!(records, want, "{}", file.display());
        }
    }
}
