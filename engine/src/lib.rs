//! mcm-engine: the data plane of the mcm media mesh.
//!
//! - [`config`]: the configuration file, flags, and validation.
//! - [`group`]: a local multipoint group as an lcore port (zero-copy fan-out).
//! - [`lcore`]: one pinned poll-mode worker — ports, the poll loop, parking.
//! - [`lcores`]: the set of workers, implementing the control thread's `Dataplane`.
//! - [`runtime`]: start-up and shutdown of the whole engine.

pub mod cli;
pub mod config;
pub mod group;
pub mod lcore;
pub mod lcores;
pub mod runtime;
pub mod st2110;
