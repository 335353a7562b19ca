//! The synchronisation primitives `shm` code is built on, swappable for loom's under `--cfg loom`.
//!
//! Normal builds re-export `std::sync::atomic`; `RUSTFLAGS="--cfg loom"` builds re-export
//! `loom::sync::atomic` so the model checker can explore every interleaving (crossbeam-epoch's
//! pattern). Code in `shm` imports atomics from here, never from `std` directly.
//!
//! [`Slot`] does the same for ring slots: under std it is the element itself, read and written
//! with volatile accesses (the memory may be shared with another process); under loom it is a
//! `loom::cell::UnsafeCell`, so loom checks that every slot access is ordered by the ring's
//! acquire/release pairs.
//!
//! Loom's atomics are not layout-compatible with std's, so under loom only in-process structures
//! may be built from these types; anything that maps a layout onto foreign memory is
//! `#[cfg(not(loom))]`.

// Not every `shm` module uses every primitive; the shim offers the whole set.
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// One slot of a ring holding a `T`. Same size and alignment as `T` outside loom.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct Slot<T>(T);

/// One slot of a ring holding a `T`, tracked by loom's causality checker.
#[cfg(loom)]
pub(crate) struct Slot<T>(loom::cell::UnsafeCell<T>);

// Safety contracts shared by both implementations:
//
// `read(slot)`: `slot` must be valid for reads of a `Slot<T>` and aligned; every bit pattern of
// the slot must be a valid `T`; no write to the slot from this process may be concurrent.
//
// `write(slot, value)`: `slot` must be valid for writes of a `Slot<T>` and aligned; no other
// access to the slot from this process may be concurrent.

#[cfg(not(loom))]
impl<T: Copy> Slot<T> {
    /// Copies the value out of the slot at `slot` with a volatile read: the bytes may be written
    /// by another process at any time, so the compiler must neither assume they are stable nor
    /// read them twice.
    ///
    /// # Safety
    ///
    /// See the contract of `read` above.
    #[inline(always)]
    pub(crate) unsafe fn read(slot: *const Self) -> T {
        // SAFETY: `Slot<T>` is `repr(transparent)` over `T`; validity, alignment and the absence
        // of concurrent writes are the caller's contract.
        unsafe { slot.cast::<T>().read_volatile() }
    }

    /// Writes `value` into the slot at `slot` with a volatile write (see [`Slot::read`]).
    ///
    /// # Safety
    ///
    /// See the contract of `write` above.
    #[inline(always)]
    pub(crate) unsafe fn write(slot: *mut Self, value: T) {
        // SAFETY: `Slot<T>` is `repr(transparent)` over `T`; validity, alignment and exclusivity
        // are the caller's contract.
        unsafe { slot.cast::<T>().write_volatile(value) }
    }
}

#[cfg(loom)]
impl<T: Copy> Slot<T> {
    /// A slot holding `value` (std slots are initialised as plain bytes instead).
    pub(crate) fn new(value: T) -> Self {
        Slot(loom::cell::UnsafeCell::new(value))
    }

    /// Copies the value out of the slot at `slot`; loom checks the access is ordered.
    ///
    /// # Safety
    ///
    /// See the contract of `read` above.
    pub(crate) unsafe fn read(slot: *const Self) -> T {
        // SAFETY: the caller guarantees `slot` points to a live, aligned slot.
        unsafe { (*slot).0.with(|p| p.read()) }
    }

    /// Writes `value` into the slot at `slot`; loom checks the access is ordered.
    ///
    /// # Safety
    ///
    /// See the contract of `write` above.
    pub(crate) unsafe fn write(slot: *mut Self, value: T) {
        // SAFETY: the caller guarantees `slot` points to a live, aligned slot.
        unsafe { (*slot).0.with_mut(|p| p.write(value)) }
    }
}
