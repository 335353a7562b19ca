//! mcm-engine: the data plane of the mcm media mesh.
//!
//! - [`config`]: the configuration file, flags, and validation.
//! - [`group`]: a multipoint group as an lcore port (zero-copy fan-out from one source edge to
//!   any number of sink edges) and the edge roles every transport implements.
//! - [`io`]: packet I/O — the trait transports send and receive datagrams through, the kernel
//!   UDP backend, and test wrappers that inject faults or write pcap files.
//! - [`lcore`]: one pinned poll-mode worker — ports, the poll loop, parking.
//! - [`lcores`]: the set of workers, implementing the control thread's `Dataplane`.
//! - [`rundir`]: the private runtime directory (`memory.shm_dir`) the engine creates and verifies.
//! - [`runtime`]: start-up and shutdown of the whole engine.
//! - [`transport`]: the edges' transports — SDK connections over shared memory, ST 2110
//!   sessions — and building an edge from its spec.

pub mod cli;
pub mod config;
pub mod group;
pub mod io;
pub mod lcore;
pub mod lcores;
pub mod rundir;
pub mod runtime;
pub mod transport;
