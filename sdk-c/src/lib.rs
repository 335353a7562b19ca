//! mcm SDK: send and receive media frames through the local mcm engine, with no copies.
//!
//! Two faces over one implementation:
//! - the Rust API: [`Client`] creates [`TxConnection`]s (senders) and [`RxConnection`]s
//!   (receivers) from MCM's JSON; a sender fills a [`BufferMut`] in place and puts it, a receiver
//!   reads a [`Buffer`] in place and drops it (or puts it);
//! - the C API ([`capi`]): MCM's `mesh_dp.h`, every function, type and error code, so an
//!   application written for Media Communications Mesh relinks against `libmcm_dp` unchanged.
//!
//! Frames live in a shared-memory pool owned by the engine. A sender writes into a slot the
//! engine lent it; every receiver of the group maps the same slot read-only. Blocked gets spin
//! for [`conn::SPIN`], then sleep on an eventfd until the engine rings, the deadline passes, or
//! the connection is shut down.
//!
//! ```no_run
//! let client = mcm_dp::Client::new(None)?;
//! let json = r#"{"connection": {"multipointGroup": {"urn": "cam-1"}},
//!                "payload": {"video": {"width": 1920, "height": 1080,
//!                                      "pixelFormat": "yuv422p10rfc4175"}}}"#;
//! let rx = client.create_rx(json)?;
//! let frame = rx.get()?;
//! println!("frame {} of {} bytes", frame.seq(), frame.payload().len());
//! # Ok::<(), mcm_dp::Error>(())
//! ```

pub mod capi;
mod channel;
pub mod client;
pub mod conn;
pub mod error;

pub use client::Client;
pub use conn::{Buffer, BufferMut, RawBuf, RxConnection, Timeout, TxConnection};
pub use error::{Error, Kind, Result};
pub use mcm_proto::config::MeshErr;
