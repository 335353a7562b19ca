//! Everything that crosses an mcm process boundary.
//!
//! - [`sdk`]: the SDK protocol's protobuf messages (generated from `proto/sdk.proto`).
//! - [`frame`]: the length-prefixed framing those messages travel in.
//! - [`link`]: RDMA links between engines: the handshake's messages (`proto/link.proto`), the
//!   credit messages and the completion data of each frame written.
//! - [`config`]: MCM's client and connection JSON, parsed and validated, and MCM's error codes.
//! - [`shm`]: shared-memory layouts (rings, descriptors, mappings) with the code that reads and
//!   writes them.
//! - [`net`]: kernel UDP sockets (datagrams cross hosts and processes), shared by the engine's
//!   packet I/O and `mcm-perf`. `shm` and `net` are the only modules of the crate that use
//!   `unsafe`.
//! - [`st2110`]: SMPTE ST 2110 wire formats, SDP and -21 timing, pure code over byte slices.

pub mod config;
pub mod frame;
pub mod link;
pub mod net;
pub mod shm;
pub mod st2110;

#[allow(missing_docs, clippy::all, clippy::pedantic, unsafe_code)]
mod protos {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}

/// Protobuf messages of the SDK protocol, generated at build time from `proto/sdk.proto`.
pub mod sdk {
    pub use crate::protos::sdk::*;
}

/// Version of the SDK protocol this crate speaks. A Hello with another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;
