//! mcm-engine: the data plane of the mcm media mesh.
//!
//! - [`config`]: the configuration file, flags, and validation.
//! - [`lcore`]: one pinned poll-mode worker — ports, the poll loop, parking.
//! - [`lcores`]: the set of workers, implementing the control thread's `Dataplane`.
//! - [`runtime`]: start-up and shutdown of the whole engine.

pub mod cli;
pub mod config;
pub mod lcore;
pub mod lcores;
pub mod runtime;
