//! ST 2110 sessions on the lcores: tx and rx edges over any packet I/O backend ([`crate::io`]),
//! and the pixel-format conversion at the SDK edge. Wire formats, SDP and -21 timing live in [`mcm_proto::st2110`].

pub mod ancillary;
pub mod audio;
pub mod clock;
pub mod compressed;
pub mod convert;
pub mod paced;
pub mod session;
pub mod video;

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// The validated `[st2110]` settings every session is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Interface name (for logs and SDP).
    pub interface: String,
    /// Source address of tx streams; where unicast rx listens; the multicast interface.
    pub local_ip: Ipv4Addr,
    /// Source ports of tx sessions.
    pub tx_ports: RangeInclusive<u16>,
    /// Ports rx sessions may listen on.
    pub rx_ports: RangeInclusive<u16>,
    /// DSCP of video and ancillary streams.
    pub dscp_video: u8,
    /// DSCP of audio streams.
    pub dscp_audio: u8,
    /// Socket buffer bytes per session.
    pub socket_buffer: usize,
    /// TTL of sent multicast.
    pub multicast_ttl: u8,
    /// Whether tx uses UDP GSO.
    pub gso: bool,
    /// How long an rx session lets datagrams gather after finding its socket empty.
    pub rx_read_interval: std::time::Duration,
    /// Where tx sessions publish their SDP files.
    pub sdp_dir: PathBuf,
    /// ST 2022-7: the interface and address second paths use (`None`: the first path's).
    pub redundant: Option<(String, Ipv4Addr)>,
    /// ST 2022-7 rx: how long the merge waits for a packet one path lost (see
    /// [`crate::io::redundant`]).
    pub redundancy_window: std::time::Duration,
}

impl Settings {
    /// The interface name and address of path `leg` (0: the first, 1: the redundant one).
    pub fn path(&self, leg: usize) -> (&str, Ipv4Addr) {
        match (&self.redundant, leg) {
            (Some((name, ip)), 1) => (name, *ip),
            _ => (&self.interface, self.local_ip),
        }
    }
}
