//! RDMA links between engines through libfabric (`ffi/libfabric-sys`).
//!
//! - [`fabric`]: the safe layer over libfabric: provider discovery, fabric and domain,
//!   completion queues, address vectors, endpoints and memory registration, each closed when
//!   dropped, with errors that carry `fi_strerror` and the call that failed.
//!
//! The link edges themselves (a sink on the sending engine writing each frame with one
//! `fi_writedata` into a slot the receiving engine granted, a source on the receiving engine
//! checking every completion and publishing in order) are being built on this layer; until they
//! land, an `rdma` edge is refused at set-up with a message that says so.

pub mod credits;
pub mod fabric;
pub mod handshake;
pub mod window;
