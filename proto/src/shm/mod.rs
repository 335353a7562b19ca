//! Shared-memory layouts and the code that reads and writes them.
//!
//! Everything here may live in memory that another process maps too. Such memory is untrusted:
//! every index and length read from it is bounds-checked before it is used.

// Shared-memory rings only: loom models in-process rings, whose atomics cannot live in a mapping.
#[cfg(not(loom))]
pub mod conn;
pub mod desc;
pub mod map;
pub mod pool;
pub(crate) mod primitive;
pub mod ring;
