//! RDMA links between engines through libfabric (`ffi/libfabric-sys`).
//!
//! - [`fabric`]: the safe layer over libfabric: provider discovery, fabric and domain,
//!   completion queues, address vectors, endpoints and memory registration, each closed when
//!   dropped, with errors that carry `fi_strerror` and the call that failed.
//! - [`link`]: what both ends open at set-up (the provider's objects, the pool mapped and
//!   registered, operation contexts, the edge's epoll set).
//! - [`handshake`], [`credits`], [`window`]: the link's TCP handshake, the sender's account of
//!   the credits granted, the receiver's account of the slots it granted and the frames
//!   written back.
//! - [`tx`]: the sending end, a sink of its group; [`rx`]: the receiving end, its group's
//!   source.

pub mod credits;
pub mod fabric;
pub mod handshake;
pub mod link;
pub mod rx;
pub mod spares;
pub mod tx;
pub mod window;

use std::net::{SocketAddr, TcpListener};

use mcm_control::dataplane::{EdgeSpec, RdmaEdge};
use mcm_proto::config::Direction;
use mcm_proto::link::{LinkHello, VERSION};

use super::Context;
use crate::group::Part;

/// Environment variable of a test hook: the sending end of every link this engine builds
/// corrupts the tag of frame N (counted from 0), naming a slot that was never granted.
pub const CORRUPT_TAG_ENV: &str = "MCM_TEST_RDMA_CORRUPT_TAG";

/// Provider settings a link needs, set in the environment at start-up where the operator has
/// not set them (libfabric reads its variables once, at its first call). `ofi_rxm` over `tcp`
/// allocates and clears its bounce buffers when an endpoint is enabled: with its defaults
/// (16 KiB buffers, 4096 receive buffers on the shared receive context, 2048-entry contexts)
/// that is over 60 MB and about 35 ms per endpoint on the VM measured, paid on every link set-up
/// on both ends. A link's messages are 256-byte credit batches (frames are RMA writes straight
/// into the peer's pool, not messages), and at most a window of writes and a few credit
/// messages are in flight, so these sizes still leave room for all of them; enabling an
/// endpoint then takes about 1 ms. And `ofi_rxm` connects a pair of endpoints on their first
/// message, progressing that connection at most every `FI_OFI_RXM_CM_PROGRESS_INTERVAL` µs of
/// CQ reads (default 10 000): 10 ms before a new link's first credit could arrive. At 200 µs
/// (the links' own poll interval) the first message takes under 2 ms.
pub const PROVIDER_ENV: [(&str, &str); 6] = [
    ("FI_OFI_RXM_CM_PROGRESS_INTERVAL", "200"),
    ("FI_OFI_RXM_BUFFER_SIZE", "1024"),
    ("FI_OFI_RXM_MSG_RX_SIZE", "128"),
    ("FI_OFI_RXM_MSG_TX_SIZE", "128"),
    ("FI_OFI_RXM_TX_SIZE", "256"),
    ("FI_OFI_RXM_RX_SIZE", "256"),
];

/// Sets each of [`PROVIDER_ENV`] that is not set already.
///
/// # Safety
/// No other thread may be running (it changes the process environment), and no libfabric call
/// may have been made yet.
pub unsafe fn tune_provider_env() {
    for (key, value) in PROVIDER_ENV {
        if std::env::var_os(key).is_none() {
            // SAFETY: the caller guarantees this process has no other thread yet.
            unsafe { std::env::set_var(key, value) };
        }
    }
}

/// The providers libfabric can serve links with on `ip` here (`tcp`, `shm`, `verbs`), asked
/// once at start-up for the control plane's GetInfo.
pub fn providers(ip: std::net::IpAddr) -> Vec<String> {
    use mcm_proto::config::transport::RdmaProvider;
    RdmaProvider::ALL
        .iter()
        .filter(|(_, p)| fabric::Info::find(*p, Some(ip)).is_ok())
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

/// Builds the link end `e` describes for the group of `cx` (on the control thread).
///
/// # Errors
/// A message naming the link and what could not be set up.
pub fn build(e: RdmaEdge, cx: &Context<'_>) -> Result<Part, String> {
    let (direction, quota, counters) = (e.direction, e.quota, e.counters.clone());
    let name = EdgeSpec::Rdma(e.clone()).describe();
    let fail = |m: String| format!("{name}: {m}");
    let fabric = cx
        .rdma_spares
        .borrow_mut()
        .take(e.link.provider, cx.rdma.ip, usize::from(e.link.endpoints))
        .map_err(fail)?;
    let site = cx.group;
    match direction {
        Direction::Rx => {
            let listener = listen(cx.rdma, e.link.port).map_err(fail)?;
            let at = listener.local_addr().map_err(|e| fail(e.to_string()))?;
            mcm_control::dataplane::EdgeCounters::set(&counters.listen_port, u64::from(at.port()));
            let serves = rx::Serves {
                urn: site.urn.clone(),
                provider: e.link.provider.as_str(),
                payload_kind: e.payload.as_str(),
            };
            let src = rx::RdmaSource::build(
                name.clone(),
                fabric,
                std::os::fd::AsFd::as_fd(&site.pool_fd),
                site.geometry,
                listener,
                serves,
                counters,
            )
            .map_err(fail)?;
            tracing::info!("group {:?}: RDMA link ({name}) listening on {at}", site.urn);
            Ok(Part::Source(Box::new(src), quota))
        }
        Direction::Tx => {
            let peer = e
                .link
                .peer
                .ok_or_else(|| fail("a sending link needs its peer's \"ip:port\"".into()))?;
            let hello = LinkHello {
                version: VERSION,
                group_urn: site.urn.clone(),
                provider: e.link.provider.as_str().into(),
                payload_capacity: site.geometry.payload_capacity,
                metadata_capacity: site.geometry.metadata_capacity,
                payload_kind: e.payload.as_str().into(),
                addresses: fabric.names().map_err(fail)?,
                ..Default::default()
            };
            let corrupt = tx::Corrupt {
                frame: std::env::var(CORRUPT_TAG_ENV)
                    .ok()
                    .and_then(|v| v.parse().ok()),
            };
            let sink = tx::RdmaSink::build(
                name.clone(),
                fabric,
                std::os::fd::AsFd::as_fd(&site.pool_fd),
                site.geometry,
                peer,
                hello,
                counters,
            )
            .map_err(fail)?
            .with_corrupt(corrupt);
            Ok(Part::Sink(Box::new(sink), quota))
        }
    }
}

/// Listens on `port` of the links' address, or on the first free port of the range.
fn listen(s: &crate::config::RdmaSettings, port: Option<u16>) -> Result<TcpListener, String> {
    if let Some(port) = port {
        let at = SocketAddr::new(s.ip, port);
        return TcpListener::bind(at).map_err(|e| format!("cannot listen on {at}: {e}"));
    }
    s.ports
        .clone()
        .find_map(|p| TcpListener::bind(SocketAddr::new(s.ip, p)).ok())
        .ok_or_else(|| {
            format!(
                "no free port in rdma.ports {}-{} on {}",
                s.ports.start(),
                s.ports.end(),
                s.ip
            )
        })
}
