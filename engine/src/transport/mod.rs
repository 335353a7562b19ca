//! Transports: each is a module that builds the edges of its kind from their spec and
//! implements [`Source`](crate::group::Source) and/or [`Sink`](crate::group::Sink).
//!
//! - [`shm`]: SDK connections, shared-memory rings with an application.
//! - [`st2110`]: ST 2110 -20/-22/-30/-40 sessions over kernel UDP.
//! - `rdma` (feature `rdma`, on by default): libfabric links between engines.
//!
//! Adding a transport is a module here, one [`EdgeSpec`] variant and one arm in [`build`]; the
//! group, the registry and the control boundary do not change.

#[cfg(feature = "rdma")]
pub mod rdma;
pub mod shm;
pub mod st2110;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mcm_control::dataplane::EdgeSpec;
use mcm_proto::shm::pool::PoolGeometry;

use crate::group::Part;

/// What the engine knows of a group an edge joins: its name and its pool, which a link maps
/// and registers for itself.
#[derive(Debug)]
pub struct GroupSite {
    /// The group's URN.
    pub urn: String,
    /// A read-write descriptor of its pool.
    pub pool_fd: OwnedFd,
    /// The pool's geometry.
    pub geometry: PoolGeometry,
}

/// What building an edge needs besides its spec: the engine's transport settings and the
/// group it joins.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The `[st2110]` settings.
    pub st2110: &'a st2110::Settings,
    /// The `[rdma]` settings.
    pub rdma: &'a crate::config::RdmaSettings,
    /// The group.
    pub group: &'a GroupSite,
    /// Where conversions count the payload bytes they copy.
    pub copied: &'a Arc<AtomicU64>,
    /// The group's pool id (descriptors to SDK clients name it).
    pub pool_id: u32,
    /// Provider objects opened ahead for RDMA links.
    #[cfg(feature = "rdma")]
    pub rdma_spares: &'a std::cell::RefCell<rdma::spares::Spares>,
}

/// Builds the edge `spec` describes, on the control thread (sockets opened, files written);
/// it then moves to its group's lcore.
///
/// # Errors
/// A message naming what is wrong with the edge's configuration or why it could not be set up.
pub fn build(spec: EdgeSpec, cx: &Context<'_>) -> Result<Part, String> {
    match spec {
        EdgeSpec::Sdk(a) => Ok(shm::build(a, cx.pool_id)),
        EdgeSpec::St2110(s) => st2110::session::build(&s, cx.st2110, cx.copied.clone()),
        #[cfg(feature = "rdma")]
        EdgeSpec::Rdma(r) => rdma::build(r, cx),
        #[cfg(not(feature = "rdma"))]
        EdgeSpec::Rdma(r) => Err(format!(
            "{}: this engine was built without RDMA links (feature \"rdma\", which needs \
             libfabric-dev)",
            EdgeSpec::Rdma(r).describe()
        )),
    }
}
