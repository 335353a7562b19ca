//! The control half of mcm-engine: everything that talks to the outside world except the data.
//!
//! It knows nothing of lcores. The [`server::ControlServer`] runs on one thread with a mio
//! `Poll`: it accepts SDK clients over TCP and a Unix socket, runs each client's
//! [`session::Session`] state machine, and drives the data plane only through the
//! [`dataplane::Dataplane`] trait — `Command`s in, `Event`s out — which the engine implements
//! over its lcores. Engine configuration state has this one owner; nothing here takes a lock.

#![deny(unsafe_code)]

pub mod access;
pub mod agent;
pub mod dataplane;
pub mod grpc;
pub mod mesh;
pub mod security;
pub mod server;
pub mod session;
