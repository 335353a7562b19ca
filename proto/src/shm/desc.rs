//! Descriptors: what moves through rings. Frames never move; descriptors do.

/// Types that may be placed in memory shared with another process.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` (or a primitive), contain no padding whose contents matter,
/// no pointers, references or niches, and every bit pattern must be a valid value: a peer process
/// can write anything into shared memory, and reading it must never be undefined behaviour.
pub unsafe trait Plain: Copy + Send + 'static {}

// SAFETY: primitive integers accept every bit pattern and hold no pointers.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for usize {}

/// One frame's reference: which slot of which pool, how much of it is filled, and when.
///
/// 32 bytes, `#[repr(C)]`, no padding: the same layout in every process. Every field is untrusted
/// when it was written by a client and must be checked against the pool's geometry before use.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Pool identifier, unique within one engine.
    pub pool: u32,
    /// Slot index within the pool (`< slot_count`).
    pub slot: u32,
    /// Bytes of payload in the slot (`<= payload capacity`).
    pub payload_len: u32,
    /// Bytes of metadata in the slot (`<= metadata capacity`).
    pub metadata_len: u32,
    /// Sequence number assigned by the group's source, starting at 0.
    pub seq: u64,
    /// Timestamp in nanoseconds (CLOCK_REALTIME/TAI as configured) when the source produced it.
    pub timestamp_ns: u64,
}

// SAFETY: #[repr(C)] of four u32 and two u64 in that order: no padding, every bit pattern valid.
unsafe impl Plain for Descriptor {}

const _: () = assert!(std::mem::size_of::<Descriptor>() == 32);
const _: () = assert!(std::mem::align_of::<Descriptor>() == 8);
