//! Lock-free single-producer single-consumer ring of [`Plain`] elements.
//!
//! One [`Producer`] and one [`Consumer`] share a fixed-size array of slots and two free-running
//! `u64` indices: `head` (next slot to read, written only by the consumer) and `tail` (next slot to
//! write, written only by the producer). The ring holds `tail - head` elements (wrapping
//! arithmetic), always in `0..=capacity`; slot `i` lives at array position `i & (capacity - 1)`.
//!
//! Two ways to build one:
//!
//! - [`with_capacity`]: in-process, between engine threads; the memory lives on the heap as long
//!   as either end does.
//! - [`init_in`] then [`Producer::attach`] / [`Consumer::attach`]: inside memory shared with
//!   another process (a client). The layout is fixed and documented on [`RingHeader`].
//!
//! # Memory ordering
//!
//! - The producer writes slots, then stores `tail` with `Release`; the consumer loads `tail` with
//!   `Acquire` before reading those slots.
//! - The consumer reads slots, then stores `head` with `Release`; the producer loads `head` with
//!   `Acquire` before overwriting those slots.
//!
//! Each end keeps its own index locally (it is the only writer) and caches the other end's,
//! reloading it only when the cache says the ring is full (producer) or empty (consumer), so a
//! push or pop that the cache can answer reads no cache line the other end writes except the
//! slot itself (rtrb's technique).
//!
//! # Untrusted peers
//!
//! When the other end lives in another process, every byte of the ring may be garbage:
//!
//! - [`Producer::attach`] and [`Consumer::attach`] validate the header and the indices and return
//!   a [`RingError`] naming what was wrong.
//! - The header's first line is read once, at attach; capacity and element size are kept
//!   locally, so a peer rewriting them later changes nothing.
//! - After attaching, an end never reloads its *own* index from memory, and every index loaded
//!   from the peer is checked: a peer index that puts more than `capacity` elements (or fewer
//!   than zero) in the ring marks the end *corrupt*. A corrupt end is dead for good: `push`
//!   returns [`Full`], `pop` returns `None`, and [`Producer::is_corrupt`] /
//!   [`Consumer::is_corrupt`] say why. The owner should drop it and tear the ring down.
//! - Slot positions are always `index & mask`, so no index, valid or not, can address memory
//!   outside the slot array.
//! - Slots are read and written with volatile accesses: the peer may write them at any time, and
//!   since elements are [`Plain`] any bytes it leaves there are a valid `T`.

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::desc::Plain;
use super::primitive::{AtomicU32, AtomicU64, Ordering, Slot};

/// Value of [`RingHeader`]'s `magic` field once initialised: `"MCMR"` read as a big-endian `u32`.
pub const MAGIC: u32 = 0x4d43_4d52;
/// Layout version written to, and required in, [`RingHeader`]'s `version` field.
pub const VERSION: u32 = 1;
/// Smallest allowed capacity, in elements.
pub const MIN_CAPACITY: usize = 2;
/// Largest allowed capacity, in elements (2^24).
pub const MAX_CAPACITY: usize = 1 << 24;
/// Required alignment of ring memory, in bytes (two cache lines, what x86 prefetches as a pair).
pub const RING_ALIGN: usize = 128;
/// Byte offset of the consumer index `head` from the start of the ring.
pub const HEAD_OFFSET: usize = 128;
/// Byte offset of the producer index `tail` from the start of the ring.
pub const TAIL_OFFSET: usize = 256;
/// Byte offset of the slot array from the start of the ring.
pub const SLOTS_OFFSET: usize = 384;

/// The header at the start of every ring, `#[repr(C)]`, 384 bytes, aligned to [`RING_ALIGN`].
///
/// Native byte order (both processes run on the same machine). Offsets in bytes:
///
/// | offset | size | field        | contents                                        | written by  |
/// |-------:|-----:|--------------|-------------------------------------------------|-------------|
/// | 0      | 4    | `magic`      | [`MAGIC`], stored last with release ordering    | initialiser |
/// | 4      | 4    | `version`    | [`VERSION`]                                     | initialiser |
/// | 8      | 4    | `capacity`   | power of two in `MIN_CAPACITY..=MAX_CAPACITY`   | initialiser |
/// | 12     | 4    | `elem_size`  | `size_of::<T>()`                                | initialiser |
/// | 16     | 4    | `elem_align` | `align_of::<T>()`                               | initialiser |
/// | 20     | 108  | reserved     | zero                                            | initialiser |
/// | 128    | 8    | `head`       | consumer index, free-running `u64`              | consumer    |
/// | 136    | 120  | padding      |                                                 |             |
/// | 256    | 8    | `tail`       | producer index, free-running `u64`              | producer    |
/// | 264    | 120  | padding      |                                                 |             |
/// | 384    | capacity × elem_size | slots | element `i` at `384 + (i & (capacity - 1)) × elem_size` | producer |
///
/// The first 128 bytes are immutable after initialisation; `head` and `tail` each own a
/// 128-byte line so the two ends never write the same cache line. [`layout_size`] gives the total.
/// The fields are private: the ring's ends are the only code that touches them.
#[repr(C)]
pub struct RingHeader {
    meta: Meta,
    head: IndexLine,
    tail: IndexLine,
}

/// The immutable first line of [`RingHeader`].
#[repr(C)]
struct Meta {
    /// [`MAGIC`] once the header is complete; 0 while it is being written.
    magic: AtomicU32,
    /// [`VERSION`].
    version: u32,
    /// Number of slots: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    capacity: u32,
    /// Size of one element in bytes.
    elem_size: u32,
    /// Alignment of one element in bytes.
    elem_align: u32,
    /// Zero; room for later versions.
    _reserved: [u32; 27],
}

/// One index alone on its own 128-byte line.
#[repr(C, align(128))]
struct IndexLine(AtomicU64);

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Meta>() == HEAD_OFFSET);
    assert!(std::mem::offset_of!(RingHeader, head) == HEAD_OFFSET);
    assert!(std::mem::offset_of!(RingHeader, tail) == TAIL_OFFSET);
    assert!(size_of::<RingHeader>() == SLOTS_OFFSET);
    assert!(align_of::<RingHeader>() == RING_ALIGN);
};

impl RingHeader {
    /// A header for `capacity` elements of `T`, with both indices 0 and `magic` still 0.
    fn new<T>(capacity: u32) -> Self {
        const {
            assert!(
                align_of::<T>() <= RING_ALIGN,
                "ring elements may be aligned to at most RING_ALIGN"
            )
        };
        const {
            assert!(
                size_of::<T>() <= u32::MAX as usize,
                "ring elements must be smaller than 4 GiB"
            )
        };
        RingHeader {
            meta: Meta {
                magic: AtomicU32::new(0),
                version: VERSION,
                capacity,
                elem_size: size_of::<T>() as u32,
                elem_align: align_of::<T>() as u32,
                _reserved: [0; 27],
            },
            head: IndexLine(AtomicU64::new(0)),
            tail: IndexLine(AtomicU64::new(0)),
        }
    }
}

/// Total bytes of a ring of `capacity` elements of `T`: the header plus the slot array.
///
/// Equals `SLOTS_OFFSET + capacity * size_of::<T>()`. Saturates at `usize::MAX` instead of
/// overflowing, a size no memory region can satisfy.
pub const fn layout_size<T: Plain>(capacity: usize) -> usize {
    size_of::<RingHeader>().saturating_add(capacity.saturating_mul(size_of::<Slot<T>>()))
}

/// A push found the ring full (or the producer corrupt); the item is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is full")
    }
}

impl<T: fmt::Debug> std::error::Error for Full<T> {}

/// Why a ring could not be created, initialised or attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The capacity is below [`MIN_CAPACITY`] or above [`MAX_CAPACITY`].
    #[error(
        "ring capacity {capacity} is out of range (allowed: powers of two from {} to {})",
        MIN_CAPACITY,
        MAX_CAPACITY
    )]
    CapacityOutOfRange {
        /// The capacity asked for (or found in the header).
        capacity: u64,
    },
    /// The capacity is in range but not a power of two.
    #[error(
        "ring capacity {capacity} is not a power of two (allowed: powers of two from {} to {})",
        MIN_CAPACITY,
        MAX_CAPACITY
    )]
    CapacityNotPowerOfTwo {
        /// The capacity asked for (or found in the header).
        capacity: u64,
    },
    /// The ring would not fit in the address space.
    #[error(
        "a ring of {capacity} elements of {elem_size} bytes is larger than the address space allows"
    )]
    TooLarge {
        /// Capacity in elements.
        capacity: u64,
        /// Element size in bytes.
        elem_size: usize,
    },
    /// The memory pointer is null.
    #[error("ring memory pointer is null")]
    NullPointer,
    /// The memory is not aligned to [`RING_ALIGN`].
    #[error(
        "ring memory at {addr:#x} is misaligned (allowed: addresses that are multiples of {align})"
    )]
    Misaligned {
        /// Address of the memory.
        addr: usize,
        /// Required alignment, [`RING_ALIGN`].
        align: usize,
    },
    /// The memory is shorter than the layout needs.
    #[error(
        "ring memory is {len} bytes but the ring needs {needed} bytes (allowed: at least {needed})"
    )]
    TooShort {
        /// Length of the memory in bytes.
        len: usize,
        /// Bytes needed: [`SLOTS_OFFSET`] before the header is read, [`layout_size`] after.
        needed: usize,
    },
    /// The header's magic is wrong: not an mcm ring, or not (yet) initialised.
    #[error(
        "ring header magic is {found:#010x} (allowed: {:#010x}, \"MCMR\"): no initialised ring here",
        MAGIC
    )]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// The header's layout version is not [`VERSION`].
    #[error("ring layout version {found} is not supported (allowed: {})", VERSION)]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The header's element size differs from `size_of::<T>()`.
    #[error(
        "ring element size is {found} bytes in the header (allowed: {expected}, the size of this element type)"
    )]
    ElemSizeMismatch {
        /// The size in the header.
        found: u32,
        /// `size_of::<T>()`.
        expected: usize,
    },
    /// The header's element alignment differs from `align_of::<T>()`.
    #[error(
        "ring element alignment is {found} bytes in the header (allowed: {expected}, the alignment of this element type)"
    )]
    ElemAlignMismatch {
        /// The alignment in the header.
        found: u32,
        /// `align_of::<T>()`.
        expected: usize,
    },
    /// The indices in the header put more than `capacity` (or fewer than zero) elements in the ring.
    #[error(
        "ring indices are corrupt: head {head}, tail {tail} (allowed: tail - head from 0 to the capacity {capacity}, wrapping)"
    )]
    CorruptIndices {
        /// The consumer index found.
        head: u64,
        /// The producer index found.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
}

/// Checks a capacity and returns it as `u64`.
fn check_capacity(capacity: usize) -> Result<u64, RingError> {
    let as_u64 = capacity as u64;
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(RingError::CapacityOutOfRange { capacity: as_u64 });
    }
    if !capacity.is_power_of_two() {
        return Err(RingError::CapacityNotPowerOfTwo { capacity: as_u64 });
    }
    Ok(as_u64)
}

/// Checks that `tail - head` (wrapping) is in `0..=capacity`.
fn check_indices(head: u64, tail: u64, capacity: u64) -> Result<(), RingError> {
    if tail.wrapping_sub(head) > capacity {
        return Err(RingError::CorruptIndices {
            head,
            tail,
            capacity,
        });
    }
    Ok(())
}

/// Pointers into one ring's memory, shared by both ends' code.
struct RawRing<T> {
    /// The consumer index, inside the header.
    head: NonNull<AtomicU64>,
    /// The producer index, inside the header.
    tail: NonNull<AtomicU64>,
    /// The first of `mask + 1` slots.
    slots: NonNull<Slot<T>>,
    /// `capacity - 1`; capacity is a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    mask: u64,
    /// Keeps the memory alive.
    _owner: Arc<dyn Send + Sync>,
}

impl<T: Copy> RawRing<T> {
    /// Pointers into the ring whose header starts at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to a [`RingHeader`] followed by `capacity` slots, valid for reads and
    /// writes for as long as `owner` lives; `capacity` must be a power of two.
    unsafe fn new(base: NonNull<u8>, capacity: u64, owner: Arc<dyn Send + Sync>) -> Self {
        debug_assert!(capacity.is_power_of_two());
        let hdr = base.as_ptr().cast::<RingHeader>();
        // SAFETY: the caller guarantees `base` points to a live header followed by the slots;
        // projecting fields with `&raw mut` creates no reference, and field projections and
        // in-bounds offsets of a non-null pointer are non-null.
        unsafe {
            RawRing {
                head: NonNull::new_unchecked(&raw mut (*hdr).head.0),
                tail: NonNull::new_unchecked(&raw mut (*hdr).tail.0),
                slots: NonNull::new_unchecked(hdr.add(1).cast::<Slot<T>>()),
                mask: capacity - 1,
                _owner: owner,
            }
        }
    }

    /// Number of slots.
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The consumer index.
    fn head(&self) -> &AtomicU64 {
        // SAFETY: points into memory kept alive by `_owner` (`RawRing::new`'s contract); an
        // atomic may be shared, so a shared reference is sound even while the peer writes it.
        unsafe { self.head.as_ref() }
    }

    /// The producer index.
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as in `head`.
        unsafe { self.tail.as_ref() }
    }

    /// The slot that free-running index `index` maps to: always inside the slot array.
    fn slot(&self, index: u64) -> *mut Slot<T> {
        let pos = (index & self.mask) as usize;
        debug_assert!((pos as u64) < self.capacity());
        // SAFETY: `pos < capacity` and the slot array holds `capacity` slots (`RawRing::new`'s
        // contract), so the offset stays inside the allocation.
        unsafe { self.slots.as_ptr().add(pos) }
    }
}

/// The heap memory of an in-process ring: header plus slots, freed when both ends are gone.
struct Heap<T> {
    base: NonNull<u8>,
    layout: Layout,
    capacity: usize,
    _elem: PhantomData<T>,
}

// SAFETY: `Heap` only owns the allocation; all access to it goes through the ends, which
// synchronise through the header's atomics, and `T: Plain` is `Send`.
unsafe impl<T: Plain> Send for Heap<T> {}
// SAFETY: `Heap` has no methods that touch the memory; see `Send`.
unsafe impl<T: Plain> Sync for Heap<T> {}

impl<T: Plain> Heap<T> {
    /// Allocates zeroed memory for `capacity` slots and writes a complete header into it.
    fn new(capacity: u64) -> Result<Self, RingError> {
        let size = layout_size::<T>(capacity as usize);
        let too_large = RingError::TooLarge {
            capacity,
            elem_size: size_of::<T>(),
        };
        let layout = Layout::from_size_align(size, RING_ALIGN).map_err(|_| too_large)?;
        // SAFETY: `layout` has a non-zero size (it includes the header).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: `base` is a fresh allocation of `layout_size` bytes aligned to RING_ALIGN, which
        // no one else can see yet.
        unsafe { write_ring::<T>(base.as_ptr(), capacity) };
        Ok(Heap {
            base,
            layout,
            capacity: capacity as usize,
            _elem: PhantomData,
        })
    }
}

impl<T> Drop for Heap<T> {
    fn drop(&mut self) {
        let hdr = self.base.as_ptr().cast::<RingHeader>();
        // SAFETY: both ends are gone (they hold the `Arc` around us), so nothing else accesses
        // the memory; the header and `capacity` slots were written in `Heap::new`.
        unsafe {
            let slots = hdr.add(1).cast::<Slot<T>>();
            hdr.drop_in_place();
            std::ptr::slice_from_raw_parts_mut(slots, self.capacity).drop_in_place();
            alloc::dealloc(self.base.as_ptr(), self.layout);
        }
    }
}

/// Writes a complete header (and, under loom, the slot cells) at `mem`, publishing it by storing
/// [`MAGIC`] last.
///
/// # Safety
///
/// `mem` must be aligned to [`RING_ALIGN`] and valid for writes of `layout_size::<T>(capacity)`
/// bytes, with no other access from this process while this runs; `capacity` must be valid.
unsafe fn write_ring<T: Plain>(mem: *mut u8, capacity: u64) {
    let hdr = mem.cast::<RingHeader>();
    // SAFETY: the caller guarantees `mem` is aligned, valid for writes of the header and unshared.
    unsafe {
        mem.write_bytes(0, size_of::<RingHeader>());
        hdr.write(RingHeader::new::<T>(capacity as u32));
    }
    #[cfg(loom)]
    for i in 0..capacity as usize {
        // SAFETY: the caller guarantees room for `capacity` slots after the header; `T: Plain`
        // accepts the all-zero bit pattern.
        unsafe {
            let slot = hdr.add(1).cast::<Slot<T>>().add(i);
            slot.write(Slot::new(std::mem::zeroed()));
        }
    }
    // SAFETY: the header was just written.
    let magic = unsafe { &(*hdr).meta.magic };
    // Release: pairs with the Acquire load of `magic` in `read_header`: whoever sees MAGIC also
    // sees the rest of the header and the zeroed indices.
    magic.store(MAGIC, Ordering::Release);
}

/// Checks that `len` bytes at `mem` can hold `needed` bytes of ring.
#[cfg(not(loom))]
fn check_region(mem: *mut u8, len: usize, needed: usize) -> Result<(), RingError> {
    if mem.is_null() {
        return Err(RingError::NullPointer);
    }
    if !(mem as usize).is_multiple_of(RING_ALIGN) {
        return Err(RingError::Misaligned {
            addr: mem as usize,
            align: RING_ALIGN,
        });
    }
    if len < needed {
        return Err(RingError::TooShort { len, needed });
    }
    Ok(())
}

/// Validates the header at `mem` for elements of `T` and returns the ring's capacity.
///
/// # Safety
///
/// `mem` must be valid for reads of `len` bytes.
#[cfg(not(loom))]
unsafe fn read_header<T: Plain>(mem: *mut u8, len: usize) -> Result<u64, RingError> {
    check_region(mem, len, SLOTS_OFFSET)?;
    let meta = mem.cast::<Meta>();
    // SAFETY: `mem` is aligned and at least a header long (checked above, validity by the
    // caller); an atomic may be shared with the writer.
    let magic = unsafe { &(*meta).magic };
    // Acquire: pairs with the Release store of `magic` in `write_ring`, so the fields read below
    // are the initialiser's.
    let found = magic.load(Ordering::Acquire);
    if found != MAGIC {
        return Err(RingError::BadMagic { found });
    }
    // SAFETY: as above; volatile because another process may write these bytes at any time.
    let (version, capacity, elem_size, elem_align) = unsafe {
        (
            (&raw const (*meta).version).read_volatile(),
            (&raw const (*meta).capacity).read_volatile(),
            (&raw const (*meta).elem_size).read_volatile(),
            (&raw const (*meta).elem_align).read_volatile(),
        )
    };
    if version != VERSION {
        return Err(RingError::UnsupportedVersion { found: version });
    }
    let capacity = check_capacity(capacity as usize)?;
    if elem_size as usize != size_of::<T>() {
        let expected = size_of::<T>();
        return Err(RingError::ElemSizeMismatch {
            found: elem_size,
            expected,
        });
    }
    if elem_align as usize != align_of::<T>() {
        let expected = align_of::<T>();
        return Err(RingError::ElemAlignMismatch {
            found: elem_align,
            expected,
        });
    }
    check_region(mem, len, layout_size::<T>(capacity as usize))?;
    Ok(capacity)
}

/// Validates the ring at `mem` and returns its pointers with the current `(head, tail)`.
///
/// # Safety
///
/// As for [`Producer::attach`].
#[cfg(not(loom))]
unsafe fn attach_raw<T: Plain>(
    mem: *mut u8,
    len: usize,
    owner: Arc<dyn Send + Sync>,
) -> Result<(RawRing<T>, u64, u64), RingError> {
    // SAFETY: the caller guarantees `mem` is valid for `len` bytes.
    let capacity = unsafe { read_header::<T>(mem, len) }?;
    // SAFETY: `read_header` checked non-null, alignment, a valid capacity and
    // `len >= layout_size`; the caller keeps the memory alive as long as `owner`.
    let ring = unsafe { RawRing::new(NonNull::new_unchecked(mem), capacity, owner) };
    // Acquire (both): pairs with the Release stores of the ends that last held the ring, so their
    // slot accesses happen before ours. (The hand-over itself is the caller's to synchronise.)
    let head = ring.head().load(Ordering::Acquire);
    let tail = ring.tail().load(Ordering::Acquire);
    check_indices(head, tail, capacity)?;
    Ok((ring, head, tail))
}

/// Creates an in-process ring of `capacity` elements and returns its two ends.
///
/// The memory is zeroed heap memory, freed when both ends have been dropped. `capacity` must be
/// a power of two from [`MIN_CAPACITY`] to [`MAX_CAPACITY`].
pub fn with_capacity<T: Plain>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), RingError> {
    let capacity = check_capacity(capacity)?;
    let heap = Arc::new(Heap::<T>::new(capacity)?);
    let base = heap.base;
    let owner: Arc<dyn Send + Sync> = heap;
    // SAFETY: `Heap::new` wrote a header followed by `capacity` slots at `base`; `owner` keeps
    // it alive and each `RawRing` holds a clone.
    let (p, c) = unsafe {
        (
            RawRing::new(base, capacity, Arc::clone(&owner)),
            RawRing::new(base, capacity, owner),
        )
    };
    Ok((Producer::new(p, 0, 0), Consumer::new(c, 0, 0)))
}

/// Writes a fresh, empty ring of `capacity` elements of `T` into `mem`.
///
/// Zeroes the header, writes it, and stores [`MAGIC`] last with release ordering, so a process
/// that attaches and sees the magic sees the whole header. The slots are left as they are (any
/// bytes are a valid `T`). Fails, writing nothing, if `capacity` is invalid or the memory is null,
/// misaligned (see [`RING_ALIGN`]) or shorter than [`layout_size`].
///
/// # Safety
///
/// `mem` must be valid for writes of `len` bytes, and no [`Producer`] or [`Consumer`] may be
/// attached to this memory, in any process, while this runs or afterwards without attaching anew.
#[cfg(not(loom))]
pub unsafe fn init_in<T: Plain>(
    mem: *mut u8,
    len: usize,
    capacity: usize,
) -> Result<(), RingError> {
    let capacity = check_capacity(capacity)?;
    check_region(mem, len, layout_size::<T>(capacity as usize))?;
    // SAFETY: checked aligned and long enough; the caller guarantees validity and exclusivity.
    unsafe { write_ring::<T>(mem, capacity) };
    Ok(())
}

/// The writing end of a ring. `Send`, not `Sync`, not `Clone`: exactly one thread pushes.
pub struct Producer<T: Plain> {
    ring: RawRing<T>,
    /// Next index to write. Only this end writes `tail`, so it is never reloaded from memory.
    /// Invariant: `tail - cached_head` (wrapping) is in `0..=capacity`.
    tail: u64,
    /// The consumer's `head` as last loaded (and validated).
    cached_head: u64,
    /// Set when the consumer published an impossible `head`; sticky.
    corrupt: bool,
}

// SAFETY: the producer's pointers refer to memory kept alive by its `Arc` owner (`Send + Sync`);
// it is the only writer of `tail` and of free slots wherever it runs; `T: Plain` is `Send`.
unsafe impl<T: Plain> Send for Producer<T> {}

impl<T: Plain> Producer<T> {
    fn new(ring: RawRing<T>, head: u64, tail: u64) -> Self {
        Producer {
            ring,
            tail,
            cached_head: head,
            corrupt: false,
        }
    }

    /// Attaches the producing end to a ring written by [`init_in`] (possibly in another process).
    ///
    /// Validates the header (magic, version, capacity, element size and alignment against `T`,
    /// `len` against [`layout_size`], alignment of `mem`) and the indices, continuing from the
    /// `tail` found there.
    ///
    /// # Safety
    ///
    /// - `mem` must be valid for reads and writes of `len` bytes for as long as `owner` lives
    ///   (the returned producer keeps `owner` alive).
    /// - In the whole system (all processes) at most one producer may be attached to this ring at
    ///   a time, and a previous one must be gone (its last store to `tail` visible) before this
    ///   call. The same holds for consumers in [`Consumer::attach`].
    /// - Within this process the memory must be accessed only through this ring's ends while
    ///   they live (no Rust reference to it). Other processes may write anything; that is
    ///   detected, not undefined behaviour.
    #[cfg(not(loom))]
    pub unsafe fn attach(
        mem: *mut u8,
        len: usize,
        owner: Arc<dyn Send + Sync>,
    ) -> Result<Self, RingError> {
        // SAFETY: forwarded contract.
        let (ring, head, tail) = unsafe { attach_raw::<T>(mem, len, owner) }?;
        Ok(Producer::new(ring, head, tail))
    }

    /// Appends `item`, or hands it back in [`Full`] when the ring is full or the producer is
    /// corrupt (see [`Producer::is_corrupt`]).
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), Full<T>> {
        if self.free_cached() == 0 && self.refresh_head() == 0 {
            return Err(Full(item));
        }
        // SAFETY: the slot is inside the array; it is free (the consumer released it, see the
        // Acquire load in `refresh_head`) and only this end writes free slots.
        unsafe { Slot::write(self.ring.slot(self.tail), item) };
        self.publish(self.tail.wrapping_add(1));
        Ok(())
    }

    /// Appends as many of `items` as fit, in order, and returns how many. One release store
    /// publishes them all. Returns 0 when full or corrupt.
    #[inline]
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let mut free = self.free_cached();
        if free < items.len() {
            free = self.refresh_head();
        }
        let n = free.min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            let slot = self.ring.slot(self.tail.wrapping_add(i as u64));
            // SAFETY: as in `push`: `i < free`, so the slot is free.
            unsafe { Slot::write(slot, *item) };
        }
        if n > 0 {
            self.publish(self.tail.wrapping_add(n as u64));
        }
        n
    }

    /// Number of free slots right now (0 when corrupt). A snapshot: the consumer may free more.
    pub fn free_slots(&self) -> usize {
        if self.corrupt {
            return 0;
        }
        // Relaxed: only a count; `refresh_head` reloads with Acquire before any slot is written.
        let head = self.ring.head().load(Ordering::Relaxed);
        let used = self.tail.wrapping_sub(head);
        self.ring.capacity().saturating_sub(used) as usize
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Whether the consumer published an impossible `head` (only possible when it lives in
    /// another process). A corrupt producer pushes nothing, ever; drop the ring.
    pub fn is_corrupt(&self) -> bool {
        self.corrupt
    }

    /// Free slots according to the cached `head` (0 when corrupt).
    fn free_cached(&self) -> usize {
        let used = self.tail.wrapping_sub(self.cached_head);
        debug_assert!(used <= self.ring.capacity());
        if self.corrupt {
            return 0;
        }
        (self.ring.capacity() - used) as usize
    }

    /// Reloads and validates `head`; returns the free slots (0 and sets `corrupt` when invalid).
    #[cold]
    fn refresh_head(&mut self) -> usize {
        if self.corrupt {
            return 0;
        }
        // Acquire: pairs with the Release store of `head` in `Consumer::release`: the consumer's
        // reads of the slots it gave back happen before we overwrite them.
        let head = self.ring.head().load(Ordering::Acquire);
        if check_indices(head, self.tail, self.ring.capacity()).is_err() {
            self.corrupt = true;
            return 0;
        }
        self.cached_head = head;
        self.free_cached()
    }

    /// Makes every slot before `tail` visible to the consumer.
    fn publish(&mut self, tail: u64) {
        debug_assert!(tail.wrapping_sub(self.cached_head) <= self.ring.capacity());
        debug_assert!(tail.wrapping_sub(self.tail) <= self.ring.capacity());
        self.tail = tail;
        // Release: pairs with the Acquire load of `tail` in `Consumer::refresh_tail`: the slot
        // writes above happen before the consumer reads them.
        self.ring.tail().store(tail, Ordering::Release);
    }
}

impl<T: Plain> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity())
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

/// The reading end of a ring. `Send`, not `Sync`, not `Clone`: exactly one thread pops.
pub struct Consumer<T: Plain> {
    ring: RawRing<T>,
    /// Next index to read. Only this end writes `head`, so it is never reloaded from memory.
    /// Invariant: `cached_tail - head` (wrapping) is in `0..=capacity`.
    head: u64,
    /// The producer's `tail` as last loaded (and validated).
    cached_tail: u64,
    /// Set when the producer published an impossible `tail`; sticky.
    corrupt: bool,
}

// SAFETY: as for `Producer`: memory kept alive by the `Arc` owner; the consumer is the only
// writer of `head` and reader of filled slots wherever it runs; `T: Plain` is `Send`.
unsafe impl<T: Plain> Send for Consumer<T> {}

impl<T: Plain> Consumer<T> {
    fn new(ring: RawRing<T>, head: u64, tail: u64) -> Self {
        Consumer {
            ring,
            head,
            cached_tail: tail,
            corrupt: false,
        }
    }

    /// Attaches the consuming end to a ring written by [`init_in`] (possibly in another process).
    ///
    /// Validates as [`Producer::attach`] does, continuing from the `head` found there.
    ///
    /// # Safety
    ///
    /// As for [`Producer::attach`], with "consumer" for "producer" and `head` for `tail`.
    #[cfg(not(loom))]
    pub unsafe fn attach(
        mem: *mut u8,
        len: usize,
        owner: Arc<dyn Send + Sync>,
    ) -> Result<Self, RingError> {
        // SAFETY: forwarded contract.
        let (ring, head, tail) = unsafe { attach_raw::<T>(mem, len, owner) }?;
        Ok(Consumer::new(ring, head, tail))
    }

    /// Removes and returns the oldest element, or `None` when the ring is empty or the consumer is
    /// corrupt (see [`Consumer::is_corrupt`]).
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available_cached() == 0 && self.refresh_tail() == 0 {
            return None;
        }
        // SAFETY: the slot is inside the array and filled (the producer published it, see the
        // Acquire load in `refresh_tail`); only this end reads filled slots.
        let item = unsafe { Slot::read(self.ring.slot(self.head)) };
        self.release(self.head.wrapping_add(1));
        Some(item)
    }

    /// Moves as many elements as are available, up to `out.len()`, into `out` in order and
    /// returns how many. One release store gives all their slots back. Returns 0 when empty or
    /// corrupt.
    #[inline]
    pub fn pop_into(&mut self, out: &mut [T]) -> usize {
        let mut available = self.available_cached();
        if available < out.len() {
            available = self.refresh_tail();
        }
        let n = available.min(out.len());
        for (i, item) in out[..n].iter_mut().enumerate() {
            let slot = self.ring.slot(self.head.wrapping_add(i as u64));
            // SAFETY: as in `pop`: `i < available`, so the slot is filled.
            *item = unsafe { Slot::read(slot) };
        }
        if n > 0 {
            self.release(self.head.wrapping_add(n as u64));
        }
        n
    }

    /// Number of elements in the ring right now (0 when corrupt or when the producer's index is
    /// impossible). A snapshot: the producer may add more.
    pub fn len(&self) -> usize {
        if self.corrupt {
            return 0;
        }
        // Relaxed: only a count; `refresh_tail` reloads with Acquire before any slot is read.
        let tail = self.ring.tail().load(Ordering::Relaxed);
        let available = tail.wrapping_sub(self.head);
        if available > self.ring.capacity() {
            return 0;
        }
        available as usize
    }

    /// Whether `pop` would return `None` right now. Cheap: no shared memory is touched while the
    /// cached `tail` says elements are waiting. True when corrupt.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.available_cached() == 0 && self.len() == 0
    }

    /// Whether the producer's `tail` equals our `head`: nothing to pop and nothing impossible
    /// published. A poll loop may skip a quiet ring; one that is not quiet must be popped,
    /// which also detects a corrupt `tail` ([`is_empty`](Self::is_empty) reads a corrupt ring
    /// as empty).
    #[inline]
    pub fn is_quiet(&self) -> bool {
        // Relaxed: a hint; `pop_into` reloads with Acquire before any slot is read.
        self.available_cached() == 0
            && !self.corrupt
            && self.ring.tail().load(Ordering::Relaxed) == self.head
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Whether the producer published an impossible `tail` (only possible when it lives in
    /// another process). A corrupt consumer pops nothing, ever; drop the ring.
    pub fn is_corrupt(&self) -> bool {
        self.corrupt
    }

    /// Elements available according to the cached `tail` (0 when corrupt).
    fn available_cached(&self) -> usize {
        let available = self.cached_tail.wrapping_sub(self.head);
        debug_assert!(available <= self.ring.capacity());
        if self.corrupt {
            return 0;
        }
        available as usize
    }

    /// Reloads and validates `tail`; returns the elements available (0 and sets `corrupt` when
    /// invalid).
    #[cold]
    fn refresh_tail(&mut self) -> usize {
        if self.corrupt {
            return 0;
        }
        // Acquire: pairs with the Release store of `tail` in `Producer::publish`: the producer's
        // slot writes happen before our reads.
        let tail = self.ring.tail().load(Ordering::Acquire);
        if check_indices(self.head, tail, self.ring.capacity()).is_err() {
            self.corrupt = true;
            return 0;
        }
        self.cached_tail = tail;
        self.available_cached()
    }

    /// Gives every slot before `head` back to the producer.
    fn release(&mut self, head: u64) {
        debug_assert!(self.cached_tail.wrapping_sub(head) <= self.ring.capacity());
        debug_assert!(head.wrapping_sub(self.head) <= self.ring.capacity());
        self.head = head;
        // Release: pairs with the Acquire load of `head` in `Producer::refresh_head`: our slot
        // reads above happen before the producer overwrites them.
        self.ring.head().store(head, Ordering::Release);
    }
}

impl<T: Plain> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity())
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(not(loom))]
    mod unit {
        use std::alloc::{self, Layout};
        use std::collections::VecDeque;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

        use proptest::prelude::*;

        use super::super::*;
        use crate::shm::desc::Descriptor;

        /// Miri runs everything ~1000× slower: shrink loop counts under it.
        const SCALE: u64 = if cfg!(miri) { 1 } else { 100 };

        /// Zeroed, `RING_ALIGN`-aligned test memory standing in for a shared mapping.
        struct TestMem {
            ptr: *mut u8,
            layout: Layout,
        }

        // SAFETY: `TestMem` only owns the allocation; tests access it through raw pointers.
        unsafe impl Send for TestMem {}
        // SAFETY: as above.
        unsafe impl Sync for TestMem {}

        impl TestMem {
            fn new(len: usize) -> Arc<TestMem> {
                let layout = Layout::from_size_align(len, RING_ALIGN).unwrap();
                // SAFETY: `len` is non-zero in every test.
                let ptr = unsafe { alloc::alloc_zeroed(layout) };
                assert!(!ptr.is_null());
                Arc::new(TestMem { ptr, layout })
            }

            /// Memory holding a fresh ring of `capacity` elements of `T`.
            fn ring<T: Plain>(capacity: usize) -> Arc<TestMem> {
                let mem = TestMem::new(layout_size::<T>(capacity));
                // SAFETY: `mem` is valid for its whole length and nothing is attached yet.
                unsafe { init_in::<T>(mem.ptr, mem.layout.size(), capacity) }.unwrap();
                mem
            }

            fn len(&self) -> usize {
                self.layout.size()
            }

            /// The index at `offset` (`HEAD_OFFSET` or `TAIL_OFFSET`), as a peer sees it.
            fn index(&self, offset: usize) -> &AtomicU64 {
                // SAFETY: the offset is inside the header, 8-aligned; atomics may be shared.
                unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() }
            }

            /// Writes a `u32` header field as a (possibly hostile) peer would.
            fn poke_u32(&self, offset: usize, value: u32) {
                // SAFETY: the offset is inside the header and 4-aligned.
                unsafe { self.ptr.add(offset).cast::<u32>().write_volatile(value) };
            }

            fn producer<T: Plain>(self: &Arc<Self>) -> Result<Producer<T>, RingError> {
                // SAFETY: valid for `len` bytes while `self` lives; one producer per test.
                unsafe { Producer::attach(self.ptr, self.len(), self.clone()) }
            }

            fn consumer<T: Plain>(self: &Arc<Self>) -> Result<Consumer<T>, RingError> {
                // SAFETY: valid for `len` bytes while `self` lives; one consumer per test.
                unsafe { Consumer::attach(self.ptr, self.len(), self.clone()) }
            }
        }

        impl Drop for TestMem {
            fn drop(&mut self) {
                // SAFETY: allocated in `new` with this layout; every end holding it is gone.
                unsafe { alloc::dealloc(self.ptr, self.layout) };
            }
        }

        #[test]
        fn layout_matches_documented_offsets() {
            assert_eq!(layout_size::<Descriptor>(1024), 384 + 1024 * 32);
            assert_eq!(layout_size::<u8>(2), 386);
            assert_eq!(layout_size::<u64>(usize::MAX), usize::MAX);
            let mem = TestMem::ring::<u64>(8);
            // SAFETY: the header is initialised and 128-aligned.
            let magic = unsafe { &*mem.ptr.cast::<AtomicU32>() }.load(Ordering::Relaxed);
            assert_eq!(magic, MAGIC);
            assert_eq!(&magic.to_be_bytes(), b"MCMR");
            // SAFETY: bytes 4..20 of the header are initialised u32s.
            let fields: [u32; 4] =
                std::array::from_fn(|i| unsafe { mem.ptr.add(4 + 4 * i).cast::<u32>().read() });
            assert_eq!(fields, [VERSION, 8, 8, 8]);
        }

        #[test]
        fn push_pop_in_order() {
            let (mut p, mut c) = with_capacity::<u64>(4).unwrap();
            assert!(c.is_empty());
            assert_eq!(c.pop(), None);
            for i in 0..3 {
                p.push(i).unwrap();
            }
            assert_eq!(c.len(), 3);
            assert!(!c.is_empty());
            assert_eq!(p.free_slots(), 1);
            assert_eq!(
                (c.pop(), c.pop(), c.pop(), c.pop()),
                (Some(0), Some(1), Some(2), None)
            );
            assert_eq!((p.capacity(), c.capacity()), (4, 4));
        }

        #[test]
        fn full_hands_the_item_back() {
            let (mut p, mut c) = with_capacity::<u64>(2).unwrap();
            p.push(1).unwrap();
            p.push(2).unwrap();
            let err = p.push(3).unwrap_err();
            assert_eq!(err, Full(3));
            assert_eq!(err.into_inner(), 3);
            assert_eq!(err.to_string(), "ring is full");
            assert_eq!(p.free_slots(), 0);
            assert_eq!(c.pop(), Some(1));
            p.push(3).unwrap();
            assert_eq!((c.pop(), c.pop(), c.pop()), (Some(2), Some(3), None));
            assert!(!p.is_corrupt() && !c.is_corrupt());
        }

        #[test]
        fn wraps_over_many_laps() {
            let (mut p, mut c) = with_capacity::<u64>(4).unwrap();
            let total = 100 * SCALE;
            let (mut next_in, mut next_out) = (0u64, 0u64);
            while next_out < total {
                // Uneven fill levels so the slot position drifts against the lap boundary.
                for _ in 0..(next_in % 4 + 1) {
                    if next_in < total && p.push(next_in.wrapping_mul(0x9e37_79b9)).is_ok() {
                        next_in += 1;
                    }
                }
                while let Some(v) = c.pop() {
                    assert_eq!(v, next_out.wrapping_mul(0x9e37_79b9));
                    next_out += 1;
                }
            }
            assert_eq!(next_in, total);
        }

        #[test]
        fn indices_wrap_past_u64_max() {
            let mem = TestMem::ring::<u64>(4);
            let start = u64::MAX - 5;
            mem.index(HEAD_OFFSET).store(start, Ordering::Relaxed);
            mem.index(TAIL_OFFSET).store(start, Ordering::Relaxed);
            let (mut p, mut c) = (
                mem.producer::<u64>().unwrap(),
                mem.consumer::<u64>().unwrap(),
            );
            for i in 0..20u64 {
                assert_eq!(p.push_slice(&[i, i + 100, i + 200]), 3);
                assert_eq!(c.len(), 3);
                let mut out = [0; 4];
                assert_eq!(c.pop_into(&mut out), 3);
                assert_eq!(out[..3], [i, i + 100, i + 200]);
            }
            assert_eq!(
                mem.index(TAIL_OFFSET).load(Ordering::Relaxed),
                start.wrapping_add(60)
            );
            assert!(!p.is_corrupt() && !c.is_corrupt());
        }

        #[test]
        fn push_slice_pushes_what_fits() {
            let (mut p, mut c) = with_capacity::<u32>(8).unwrap();
            assert_eq!(p.push_slice(&[]), 0);
            assert_eq!(p.push_slice(&[1, 2, 3, 4, 5]), 5);
            assert_eq!(p.push_slice(&[6, 7, 8, 9, 10]), 3);
            assert_eq!(p.push_slice(&[11]), 0);
            assert_eq!(c.pop(), Some(1));
            assert_eq!(p.push_slice(&[9, 10]), 1);
            let mut out = [0; 16];
            assert_eq!(c.pop_into(&mut out), 8);
            assert_eq!(out[..8], [2, 3, 4, 5, 6, 7, 8, 9]);
        }

        #[test]
        fn pop_into_pops_what_is_there() {
            let (mut p, mut c) = with_capacity::<u32>(8).unwrap();
            let mut out = [0; 3];
            assert_eq!(c.pop_into(&mut out), 0);
            assert_eq!(c.pop_into(&mut []), 0);
            assert_eq!(p.push_slice(&[1, 2, 3, 4, 5, 6, 7]), 7);
            assert_eq!(c.pop_into(&mut out), 3);
            assert_eq!(out, [1, 2, 3]);
            assert_eq!(c.pop_into(&mut out), 3);
            assert_eq!(out, [4, 5, 6]);
            assert_eq!(c.pop_into(&mut out), 1);
            assert_eq!(out[0], 7);
            assert!(c.is_empty());
        }

        #[test]
        fn capacity_errors_say_what_is_allowed() {
            let err = |capacity| with_capacity::<u64>(capacity).unwrap_err().to_string();
            let allowed = "(allowed: powers of two from 2 to 16777216)";
            assert_eq!(
                err(1000),
                format!("ring capacity 1000 is not a power of two {allowed}")
            );
            assert_eq!(
                err(3),
                format!("ring capacity 3 is not a power of two {allowed}")
            );
            assert_eq!(err(0), format!("ring capacity 0 is out of range {allowed}"));
            assert_eq!(err(1), format!("ring capacity 1 is out of range {allowed}"));
            assert_eq!(
                err(1 << 25),
                format!("ring capacity 33554432 is out of range {allowed}")
            );
            assert!(with_capacity::<u8>(2).is_ok());
        }

        #[test]
        fn init_in_checks_the_region() {
            let mem = TestMem::new(layout_size::<u64>(8) + RING_ALIGN);
            let init = |ptr, len, cap| {
                // SAFETY: every (ptr, len) below lies inside `mem`; nothing is attached.
                unsafe { init_in::<u64>(ptr, len, cap) }
            };
            let len = layout_size::<u64>(8);
            assert_eq!(
                init(std::ptr::null_mut(), len, 8),
                Err(RingError::NullPointer)
            );
            // SAFETY: 8 bytes past the start is still inside `mem`.
            let misaligned = unsafe { mem.ptr.add(8) };
            assert!(matches!(
                init(misaligned, len, 8),
                Err(RingError::Misaligned { .. })
            ));
            let short = init(mem.ptr, len - 1, 8);
            assert_eq!(
                short,
                Err(RingError::TooShort {
                    len: len - 1,
                    needed: len
                })
            );
            assert_eq!(
                short.unwrap_err().to_string(),
                "ring memory is 447 bytes but the ring needs 448 bytes (allowed: at least 448)"
            );
            assert_eq!(
                init(mem.ptr, len, 6),
                Err(RingError::CapacityNotPowerOfTwo { capacity: 6 })
            );
            assert_eq!(init(mem.ptr, len, 8), Ok(()));
        }

        #[test]
        fn attach_rejects_bad_magic() {
            let mem = TestMem::new(layout_size::<u64>(8));
            let err = mem.consumer::<u64>().unwrap_err();
            assert_eq!(err, RingError::BadMagic { found: 0 });
            assert_eq!(
                err.to_string(),
                "ring header magic is 0x00000000 (allowed: 0x4d434d52, \"MCMR\"): no initialised ring here"
            );
            let mem = TestMem::ring::<u64>(8);
            mem.poke_u32(0, 0x5243_4d4d);
            assert_eq!(
                mem.producer::<u64>().unwrap_err(),
                RingError::BadMagic { found: 0x5243_4d4d }
            );
        }

        #[test]
        fn attach_rejects_bad_version_and_capacity() {
            let mem = TestMem::ring::<u64>(8);
            mem.poke_u32(4, 2);
            let err = mem.producer::<u64>().unwrap_err();
            assert_eq!(
                err.to_string(),
                "ring layout version 2 is not supported (allowed: 1)"
            );
            mem.poke_u32(4, VERSION);
            mem.poke_u32(8, 7);
            assert_eq!(
                mem.consumer::<u64>().unwrap_err(),
                RingError::CapacityNotPowerOfTwo { capacity: 7 }
            );
            mem.poke_u32(8, u32::MAX);
            let err = mem.consumer::<u64>().unwrap_err();
            assert_eq!(
                err,
                RingError::CapacityOutOfRange {
                    capacity: u64::from(u32::MAX)
                }
            );
            // A valid but larger capacity than the memory holds.
            mem.poke_u32(8, 16);
            let needed = layout_size::<u64>(16);
            assert_eq!(
                mem.consumer::<u64>().unwrap_err(),
                RingError::TooShort {
                    len: mem.len(),
                    needed
                }
            );
        }

        #[test]
        fn attach_rejects_wrong_element_type() {
            let mem = TestMem::ring::<u64>(8);
            let err = mem.consumer::<u32>().unwrap_err();
            assert_eq!(
                err,
                RingError::ElemSizeMismatch {
                    found: 8,
                    expected: 4
                }
            );
            assert_eq!(
                err.to_string(),
                "ring element size is 8 bytes in the header (allowed: 4, the size of this element type)"
            );
            mem.poke_u32(12, 32);
            let err = mem.producer::<Descriptor>().unwrap_err();
            assert_eq!(
                err,
                RingError::TooShort {
                    len: mem.len(),
                    needed: layout_size::<Descriptor>(8)
                }
            );
            let mem = TestMem::ring::<u64>(8);
            mem.poke_u32(16, 4);
            let err = mem.producer::<u64>().unwrap_err();
            assert_eq!(
                err,
                RingError::ElemAlignMismatch {
                    found: 4,
                    expected: 8
                }
            );
        }

        #[test]
        fn attach_rejects_short_or_misaligned_memory() {
            let mem = TestMem::ring::<u64>(8);
            let attach = |ptr, len| {
                // SAFETY: every (ptr, len) below lies inside `mem`.
                unsafe { Consumer::<u64>::attach(ptr, len, mem.clone()) }.unwrap_err()
            };
            let len = mem.len();
            assert_eq!(
                attach(mem.ptr, len - 8),
                RingError::TooShort {
                    len: len - 8,
                    needed: len
                }
            );
            assert_eq!(
                attach(mem.ptr, 100),
                RingError::TooShort {
                    len: 100,
                    needed: SLOTS_OFFSET
                }
            );
            assert_eq!(attach(std::ptr::null_mut(), len), RingError::NullPointer);
            // SAFETY: 64 bytes past the start is inside `mem`.
            let misaligned = unsafe { mem.ptr.add(64) };
            let err = attach(misaligned, len - 64);
            assert_eq!(
                err,
                RingError::Misaligned {
                    addr: misaligned as usize,
                    align: RING_ALIGN
                }
            );
            assert!(
                err.to_string()
                    .ends_with("is misaligned (allowed: addresses that are multiples of 128)")
            );
        }

        #[test]
        fn attach_rejects_corrupt_indices() {
            let mem = TestMem::ring::<u64>(8);
            mem.index(TAIL_OFFSET).store(9, Ordering::Relaxed);
            let err = mem.producer::<u64>().unwrap_err();
            assert_eq!(
                err,
                RingError::CorruptIndices {
                    head: 0,
                    tail: 9,
                    capacity: 8
                }
            );
            mem.index(HEAD_OFFSET).store(10, Ordering::Relaxed);
            assert!(matches!(
                mem.consumer::<u64>(),
                Err(RingError::CorruptIndices { .. })
            ));
            mem.index(HEAD_OFFSET).store(1, Ordering::Relaxed);
            assert!(mem.consumer::<u64>().is_ok());
        }

        #[test]
        fn attached_ends_share_the_ring() {
            let mem = TestMem::ring::<Descriptor>(4);
            let mut p = mem.producer::<Descriptor>().unwrap();
            let mut c = mem.consumer::<Descriptor>().unwrap();
            drop(mem);
            let d = Descriptor {
                pool: 1,
                slot: 2,
                payload_len: 3,
                metadata_len: 4,
                seq: 5,
                timestamp_ns: 6,
            };
            p.push(d).unwrap();
            drop(p);
            assert_eq!(c.pop(), Some(d));
        }

        #[test]
        fn a_quiet_ring_has_nothing_to_pop_and_nothing_impossible() {
            let mem = TestMem::ring::<u64>(8);
            let (mut p, mut c) = (
                mem.producer::<u64>().unwrap(),
                mem.consumer::<u64>().unwrap(),
            );
            assert!(c.is_quiet());
            p.push_slice(&[1, 2]);
            assert!(!c.is_quiet());
            assert_eq!(c.pop(), Some(1));
            assert!(!c.is_quiet(), "one element still waits");
            assert_eq!(c.pop(), Some(2));
            assert!(c.is_quiet());
            // An impossible tail reads as empty, but not as quiet: a poll must pop to find out.
            mem.index(TAIL_OFFSET).store(1 << 40, Ordering::Relaxed);
            assert!(c.is_empty());
            assert!(!c.is_quiet());
            assert_eq!(c.pop(), None);
            assert!(c.is_corrupt());
            assert!(!c.is_quiet(), "a corrupt ring is never quiet");
        }

        #[test]
        fn consumer_treats_impossible_tail_as_corruption() {
            for bogus in [9, 100, u64::MAX, u64::MAX - 7] {
                let mem = TestMem::ring::<u64>(8);
                let (mut p, mut c) = (
                    mem.producer::<u64>().unwrap(),
                    mem.consumer::<u64>().unwrap(),
                );
                p.push_slice(&[1, 2, 3]);
                assert_eq!(c.pop(), Some(1));
                // The peer publishes a tail more than `capacity` ahead of head (1), or behind it.
                mem.index(TAIL_OFFSET).store(bogus, Ordering::Relaxed);
                assert_eq!(c.len(), if bogus == 9 { 8 } else { 0 }, "tail {bogus}");
                if bogus == 9 {
                    // 9 - 1 = 8 = capacity: a full ring, legal. Pops stay inside the array.
                    let mut out = [0; 16];
                    assert_eq!(c.pop_into(&mut out), 8);
                    assert_eq!(out[..2], [2, 3]);
                    assert!(!c.is_corrupt());
                    continue;
                }
                assert_eq!(c.pop(), Some(2), "cached elements are still served");
                assert_eq!(c.pop(), Some(3));
                assert_eq!(c.pop(), None);
                assert!(c.is_corrupt());
                assert!(c.is_empty());
                assert_eq!(c.pop_into(&mut [0; 4]), 0);
                // Sticky: a valid tail afterwards does not revive it.
                mem.index(TAIL_OFFSET).store(4, Ordering::Relaxed);
                assert_eq!(c.pop(), None);
                assert_eq!(mem.index(HEAD_OFFSET).load(Ordering::Relaxed), 3);
            }
        }

        #[test]
        fn producer_treats_impossible_head_as_corruption() {
            for bogus in [5, u64::MAX, 1 << 40] {
                let mem = TestMem::ring::<u64>(4);
                let mut p = mem.producer::<u64>().unwrap();
                assert_eq!(p.push_slice(&[1, 2, 3, 4]), 4);
                // The peer publishes a head beyond tail (4), or more than `capacity` behind it.
                mem.index(HEAD_OFFSET).store(bogus, Ordering::Relaxed);
                assert_eq!(p.free_slots(), 0);
                assert_eq!(p.push(5), Err(Full(5)));
                assert!(p.is_corrupt());
                mem.index(HEAD_OFFSET).store(4, Ordering::Relaxed);
                assert_eq!(p.push_slice(&[5]), 0, "sticky");
                assert_eq!(p.free_slots(), 0);
                assert_eq!(
                    mem.index(TAIL_OFFSET).load(Ordering::Relaxed),
                    4,
                    "tail untouched"
                );
            }
        }

        #[test]
        fn producer_never_reloads_its_own_index() {
            let mem = TestMem::ring::<u64>(4);
            let (mut p, mut c) = (
                mem.producer::<u64>().unwrap(),
                mem.consumer::<u64>().unwrap(),
            );
            p.push(7).unwrap();
            // A hostile peer rewinds tail; the producer's next push republishes its own.
            mem.index(TAIL_OFFSET).store(0, Ordering::Relaxed);
            p.push(8).unwrap();
            assert_eq!((c.pop(), c.pop(), c.pop()), (Some(7), Some(8), None));
        }

        #[test]
        fn ends_are_send_not_sync_not_clone() {
            fn assert_send<T: Send>() {}
            assert_send::<Producer<Descriptor>>();
            assert_send::<Consumer<Descriptor>>();
            // Compiles only if the type does NOT implement the trait: with the trait the call is
            // ambiguous between the two blanket impls.
            trait AmbiguousIfSync<A> {
                fn check() {}
            }
            impl<T: ?Sized> AmbiguousIfSync<()> for T {}
            impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
            <Producer<u64> as AmbiguousIfSync<_>>::check();
            <Consumer<u64> as AmbiguousIfSync<_>>::check();
            trait AmbiguousIfClone<A> {
                fn check() {}
            }
            impl<T> AmbiguousIfClone<()> for T {}
            impl<T: Clone> AmbiguousIfClone<u8> for T {}
            <Producer<u64> as AmbiguousIfClone<_>>::check();
            <Consumer<u64> as AmbiguousIfClone<_>>::check();
        }

        #[test]
        fn two_threads_keep_order() {
            let (mut p, mut c) = with_capacity::<u64>(16).unwrap();
            let total = 20 * SCALE * SCALE;
            let producer = std::thread::spawn(move || {
                let mut next = 0;
                while next < total {
                    let batch: Vec<u64> = (next..total.min(next + next % 7 + 1)).collect();
                    next += p.push_slice(&batch) as u64;
                    std::thread::yield_now();
                }
            });
            let (mut expected, mut out) = (0, [0; 5]);
            while expected < total {
                let n = c.pop_into(&mut out);
                for v in &out[..n] {
                    assert_eq!(*v, expected);
                    expected += 1;
                }
                if n == 0 {
                    std::thread::yield_now();
                }
            }
            producer.join().unwrap();
            assert!(c.is_empty());
        }

        #[test]
        fn debug_shows_indices() {
            let (mut p, c) = with_capacity::<u8>(2).unwrap();
            p.push(1).unwrap();
            assert_eq!(
                format!("{p:?}"),
                "Producer { capacity: 2, tail: 1, cached_head: 0, corrupt: false }"
            );
            assert_eq!(
                format!("{c:?}"),
                "Consumer { capacity: 2, head: 0, cached_tail: 0, corrupt: false }"
            );
        }

        #[derive(Debug, Clone)]
        enum Op {
            Push(u64),
            PushSlice(Vec<u64>),
            Pop,
            PopInto(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                any::<u64>().prop_map(Op::Push),
                proptest::collection::vec(any::<u64>(), 0..12).prop_map(Op::PushSlice),
                Just(Op::Pop),
                (0usize..12).prop_map(Op::PopInto),
            ]
        }

        fn config() -> ProptestConfig {
            if cfg!(miri) {
                // Miri: few cases, and no regression files (file access is isolated).
                ProptestConfig {
                    cases: 4,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                }
            } else {
                ProptestConfig::with_cases(512)
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn matches_vecdeque_model(log2_cap in 1u32..5, ops in proptest::collection::vec(op(), 0..64)) {
                let capacity = 1usize << log2_cap;
                let (mut p, mut c) = with_capacity::<u64>(capacity).unwrap();
                let mut model = VecDeque::new();
                for op in ops {
                    match op {
                        Op::Push(v) => {
                            let fits = model.len() < capacity;
                            prop_assert_eq!(p.push(v), if fits { Ok(()) } else { Err(Full(v)) });
                            if fits {
                                model.push_back(v);
                            }
                        }
                        Op::PushSlice(items) => {
                            let n = p.push_slice(&items);
                            prop_assert_eq!(n, items.len().min(capacity - model.len()));
                            model.extend(&items[..n]);
                        }
                        Op::Pop => prop_assert_eq!(c.pop(), model.pop_front()),
                        Op::PopInto(k) => {
                            let mut out = vec![0; k];
                            let n = c.pop_into(&mut out);
                            let expected: Vec<u64> = model.drain(..k.min(model.len())).collect();
                            prop_assert_eq!(&out[..n], &expected[..]);
                        }
                    }
                    prop_assert_eq!(c.len(), model.len());
                    prop_assert_eq!(c.is_empty(), model.is_empty());
                    prop_assert_eq!(p.free_slots(), capacity - model.len());
                }
            }
        }
    }

    #[cfg(loom)]
    mod loom {
        use super::super::with_capacity;

        /// Three items through a capacity-2 ring: the producer must wait for a freed slot once.
        #[test]
        fn loom_single_items_keep_order_and_count() {
            loom::model(|| {
                let (mut p, mut c) = with_capacity::<u64>(2).unwrap();
                let producer = loom::thread::spawn(move || {
                    for i in 0..3 {
                        while p.push(i).is_err() {
                            loom::thread::yield_now();
                        }
                    }
                });
                let mut next = 0;
                while next < 3 {
                    match c.pop() {
                        Some(v) => {
                            assert_eq!(v, next);
                            next += 1;
                        }
                        None => loom::thread::yield_now(),
                    }
                }
                producer.join().unwrap();
                assert_eq!(c.pop(), None);
            });
        }

        /// Four items in batches through a capacity-2 ring.
        #[test]
        fn loom_batches_keep_order_and_count() {
            loom::model(|| {
                let (mut p, mut c) = with_capacity::<u64>(2).unwrap();
                let producer = loom::thread::spawn(move || {
                    let items = [10, 11, 12, 13];
                    let mut sent = 0;
                    while sent < items.len() {
                        match p.push_slice(&items[sent..]) {
                            0 => loom::thread::yield_now(),
                            n => sent += n,
                        }
                    }
                });
                let mut got = Vec::new();
                let mut out = [0; 3];
                while got.len() < 4 {
                    match c.pop_into(&mut out) {
                        0 => loom::thread::yield_now(),
                        n => got.extend_from_slice(&out[..n]),
                    }
                }
                producer.join().unwrap();
                assert_eq!(got, [10, 11, 12, 13]);
                assert!(c.is_empty());
            });
        }
    }
}
