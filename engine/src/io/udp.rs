//! The kernel UDP backend: the socket code lives in [`mcm_proto::net::udp`], shared with
//! `mcm-perf`; [`super`] implements the packet I/O traits for it.

pub use mcm_proto::net::udp::*;
