//! A pool of fixed-size frame slots in one shared-memory region.
//!
//! Layout of the region: `slot_count` slots, one after the other, each
//! [`slot_stride`](PoolGeometry::slot_stride) bytes long and starting on a 64-byte boundary:
//!
//! ```text
//! slot i, at i * stride:
//!   +0                      SlotHeader (64 bytes)
//!   +64                     payload    (payload_capacity bytes, padded to 8)
//!   +64 + payload (padded)  metadata   (metadata_capacity bytes, padded to 8)
//!   ...                     padding up to the stride (a multiple of 64)
//! ```
//!
//! - [`Pool`] is the owner's side (the engine): it creates the region and keeps the free list.
//! - [`PoolView`] is the attached side (an SDK client that received an fd): it validates the
//!   geometry and the fd, and checks every slot index and length against the geometry.
//!
//! Data-path calls (alloc, free, slot access) fail with the small `Copy` [`SlotError`]; creating
//! and attaching fail with [`PoolError`].

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use super::desc::Plain;
use super::map::{Access, HugePages, MapError, Mapping, MemKind, Region};

/// Most slots a pool may have.
pub const MAX_SLOT_COUNT: u32 = 65_536;
/// Largest payload capacity of a slot: 256 MiB (one uncompressed 8K frame is about 200 MB).
pub const MAX_PAYLOAD_CAPACITY: u32 = 256 << 20;
/// Largest metadata capacity of a slot: 1 MiB.
pub const MAX_METADATA_CAPACITY: u32 = 1 << 20;
/// Largest pool region: 64 GiB (the same as [`MAX_REGION_LEN`](super::map::MAX_REGION_LEN)).
pub const MAX_POOL_LEN: u64 = super::map::MAX_REGION_LEN;
/// Slots start on, and their stride is a multiple of, this many bytes (a cache line).
pub const SLOT_ALIGN: u64 = 64;

/// The "system header" at the start of every slot: 64 bytes, `#[repr(C)]`, no padding.
///
/// Written by whoever fills the slot, read by everyone else; a reader must treat every field as
/// untrusted and check the lengths against the pool's geometry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotHeader {
    /// Sequence number assigned by the group's source.
    pub seq: u64,
    /// Timestamp in nanoseconds when the source produced the frame.
    pub timestamp_ns: u64,
    /// Bytes of payload in the slot (`<= payload_capacity`).
    pub payload_len: u32,
    /// Bytes of metadata in the slot (`<= metadata_capacity`).
    pub metadata_len: u32,
    /// Reserved for later versions; written as zero, ignored when read.
    pub reserved: [u64; 5],
}

// SAFETY: #[repr(C)] of two u64, two u32 and five u64 in that order: every field is 8-aligned
// after the previous one, so there is no padding, and every bit pattern is a valid value.
unsafe impl Plain for SlotHeader {}

const _: () = assert!(size_of::<SlotHeader>() == SLOT_ALIGN as usize);
const _: () = assert!(align_of::<SlotHeader>() == 8);

/// The shape of a pool: how many slots and how big each part of a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    /// Number of slots, `1..=MAX_SLOT_COUNT`.
    pub slot_count: u32,
    /// Payload bytes per slot, `1..=MAX_PAYLOAD_CAPACITY`.
    pub payload_capacity: u32,
    /// Metadata bytes per slot, `0..=MAX_METADATA_CAPACITY`.
    pub metadata_capacity: u32,
}

impl PoolGeometry {
    /// Checks every field against its allowed range, and the pool's total size against
    /// [`MAX_POOL_LEN`].
    pub fn validate(&self) -> Result<(), PoolError> {
        check_range("slot_count", self.slot_count, 1, MAX_SLOT_COUNT)?;
        check_range(
            "payload_capacity",
            self.payload_capacity,
            1,
            MAX_PAYLOAD_CAPACITY,
        )?;
        check_range(
            "metadata_capacity",
            self.metadata_capacity,
            0,
            MAX_METADATA_CAPACITY,
        )?;
        let len = u64::from(self.slot_count).checked_mul(self.slot_stride());
        match len {
            Some(len) if len <= MAX_POOL_LEN => Ok(()),
            _ => Err(PoolError::TooLarge {
                geometry: *self,
                stride: self.slot_stride(),
                max: MAX_POOL_LEN,
            }),
        }
    }

    /// Bytes from the start of one slot to the next: header, payload and metadata, each padded to
    /// 8 bytes, the sum padded to [`SLOT_ALIGN`]. Below 2^34 for any field values, so the u64
    /// arithmetic cannot overflow.
    pub const fn slot_stride(&self) -> u64 {
        let sum = self.metadata_offset() + pad8(self.metadata_capacity);
        sum.div_ceil(SLOT_ALIGN) * SLOT_ALIGN
    }

    /// Offset of the payload from the start of its slot: just after the [`SlotHeader`].
    pub const fn payload_offset(&self) -> u64 {
        size_of::<SlotHeader>() as u64
    }

    /// Offset of the metadata from the start of its slot: after the payload, padded to 8.
    pub const fn metadata_offset(&self) -> u64 {
        self.payload_offset() + pad8(self.payload_capacity)
    }

    /// Bytes the pool's region needs: `slot_count * slot_stride`, after [`validate`](Self::validate).
    pub fn region_len(&self) -> Result<usize, PoolError> {
        self.validate()?;
        let len = u64::from(self.slot_count) * self.slot_stride();
        usize::try_from(len).map_err(|_| PoolError::TooLarge {
            geometry: *self,
            stride: self.slot_stride(),
            max: usize::MAX as u64,
        })
    }
}

/// `value` rounded up to a multiple of 8, widened so it cannot overflow.
const fn pad8(value: u32) -> u64 {
    (value as u64).div_ceil(8) * 8
}

/// A [`PoolError::InvalidGeometry`] unless `min <= value <= max`.
fn check_range(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), PoolError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(PoolError::InvalidGeometry {
        field,
        value,
        min,
        max,
    })
}

/// Why a pool could not be created or attached (control path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A geometry field is out of its range.
    #[error("pool geometry: {field} = {value} is out of range; allowed {min}..={max}")]
    InvalidGeometry {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The smallest value allowed.
        min: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// The pool as a whole is too large.
    #[error(
        "pool geometry: {} slots of {stride} bytes exceed the largest pool of {max} bytes; \
         use fewer or smaller slots", geometry.slot_count
    )]
    TooLarge {
        /// The geometry asked for.
        geometry: PoolGeometry,
        /// Its slot stride.
        stride: u64,
        /// The largest pool allowed.
        max: u64,
    },
    /// The region could not be created or mapped.
    #[error("pool {name:?}: {source}")]
    Map {
        /// The pool's name (or `fd N` for an attached view).
        name: String,
        /// What went wrong.
        #[source]
        source: MapError,
    },
}

/// Which part of a slot a [`SlotError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotPart {
    /// The payload.
    Payload,
    /// The metadata.
    Metadata,
}

impl fmt::Display for SlotPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Payload => "payload",
            Self::Metadata => "metadata",
        })
    }
}

/// Why a slot operation failed (data path: `Copy`, never allocates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The slot index is not in the pool.
    #[error("slot {slot} is out of range; the pool has slots 0..{slot_count}")]
    OutOfRange {
        /// The index given.
        slot: u32,
        /// The pool's slot count.
        slot_count: u32,
    },
    /// The slot is not allocated (a double free, or access to a free slot).
    #[error("slot {slot} is not allocated; only allocated slots may be freed or written")]
    NotAllocated {
        /// The index given.
        slot: u32,
    },
    /// A length is larger than the slot part's capacity.
    #[error("{part} length {len} is out of range; allowed 0..={capacity}")]
    TooLong {
        /// The part concerned.
        part: SlotPart,
        /// The length given.
        len: u32,
        /// The part's capacity.
        capacity: u32,
    },
    /// A write through a read-only view.
    #[error("slot {slot} cannot be written: the pool view is read-only")]
    ReadOnly {
        /// The index given.
        slot: u32,
    },
}

/// A validated geometry with its offsets as `usize`. Every slot lies within `len`, which fits in
/// `usize` and is at most [`MAX_POOL_LEN`].
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The geometry, validated.
    geometry: PoolGeometry,
    /// Bytes from one slot to the next.
    stride: usize,
    /// Offset of the payload within a slot.
    payload_offset: usize,
    /// Offset of the metadata within a slot.
    metadata_offset: usize,
    /// Bytes of the whole pool: `slot_count * stride`.
    len: usize,
}

impl Layout {
    /// Validates `geometry` and computes its offsets.
    fn new(geometry: PoolGeometry) -> Result<Self, PoolError> {
        let len = geometry.region_len()?;
        // The three values below are each at most len (validated), which fits in usize.
        Ok(Self {
            geometry,
            stride: geometry.slot_stride() as usize,
            payload_offset: geometry.payload_offset() as usize,
            metadata_offset: geometry.metadata_offset() as usize,
            len,
        })
    }

    /// Offset of `slot`'s header from the start of the region.
    fn slot_offset(&self, slot: u32) -> Result<usize, SlotError> {
        let slot_count = self.geometry.slot_count;
        if slot >= slot_count {
            return Err(SlotError::OutOfRange { slot, slot_count });
        }
        // slot < slot_count, so slot * stride < len: no overflow.
        let offset = slot as usize * self.stride;
        debug_assert!(offset + self.stride <= self.len);
        Ok(offset)
    }

    /// Offset and capacity of `part` of `slot`, with `len` checked against the capacity.
    fn part(&self, slot: u32, part: SlotPart, len: u32) -> Result<(usize, usize), SlotError> {
        let base = self.slot_offset(slot)?;
        let (offset, capacity) = match part {
            SlotPart::Payload => (self.payload_offset, self.geometry.payload_capacity),
            SlotPart::Metadata => (self.metadata_offset, self.geometry.metadata_capacity),
        };
        if len > capacity {
            return Err(SlotError::TooLong {
                part,
                len,
                capacity,
            });
        }
        Ok((base + offset, len as usize))
    }
}

/// Reads a `T` from shared memory with a volatile read: the peer may change it at any time, and
/// every bit pattern is a valid `T`.
///
/// # Safety
///
/// `ptr` must be valid for reads of `size_of::<T>()` bytes and aligned for `T`.
unsafe fn read_plain<T: Plain>(ptr: *const u8) -> T {
    debug_assert!(ptr.cast::<T>().is_aligned());
    // SAFETY: valid and aligned per this function's contract; T: Plain accepts any bits.
    unsafe { ptr.cast::<T>().read_volatile() }
}

/// Writes a `T` to shared memory with a volatile write.
///
/// # Safety
///
/// `ptr` must be valid for writes of `size_of::<T>()` bytes, aligned for `T`, and not be
/// referenced by any live Rust reference.
unsafe fn write_plain<T: Plain>(ptr: *mut u8, value: T) {
    debug_assert!(ptr.cast::<T>().is_aligned());
    // SAFETY: valid, aligned and unreferenced per this function's contract.
    unsafe { ptr.cast::<T>().write_volatile(value) }
}

/// The free list of a [`Pool`]: which slots are free and which are allocated.
///
/// Allocates only in [`new`](Self::new); [`alloc`](Self::alloc) and [`free`](Self::free) never
/// allocate.
#[derive(Debug)]
struct FreeList {
    /// Free slot indices, a stack; capacity `slot_count`, so pushes never allocate.
    stack: Vec<u32>,
    /// `allocated[i]` is true while slot `i` is out of the stack; length `slot_count`.
    allocated: Vec<bool>,
}

impl FreeList {
    /// A list of `slot_count` slots, every one free; [`alloc`](Self::alloc) hands out the lowest
    /// index first.
    fn new(slot_count: u32) -> Self {
        Self {
            stack: (0..slot_count).rev().collect(),
            allocated: vec![false; slot_count as usize],
        }
    }

    /// Takes a free slot; `None` when all are allocated.
    fn alloc(&mut self) -> Option<u32> {
        let slot = self.stack.pop()?;
        debug_assert!(!self.allocated[slot as usize]);
        self.allocated[slot as usize] = true;
        Some(slot)
    }

    /// Returns an allocated slot to the stack. Never allocates.
    fn free(&mut self, slot: u32) -> Result<(), SlotError> {
        self.check_allocated(slot)?;
        self.allocated[slot as usize] = false;
        debug_assert!(
            self.stack.len() < self.stack.capacity(),
            "a free slot was allocated"
        );
        self.stack.push(slot);
        Ok(())
    }

    /// Whether `slot` is allocated (false when out of range).
    fn is_allocated(&self, slot: u32) -> bool {
        self.allocated.get(slot as usize).copied().unwrap_or(false)
    }

    /// Fails unless `slot` is in range and allocated.
    fn check_allocated(&self, slot: u32) -> Result<(), SlotError> {
        match self.allocated.get(slot as usize) {
            Some(true) => Ok(()),
            Some(false) => Err(SlotError::NotAllocated { slot }),
            None => Err(SlotError::OutOfRange {
                slot,
                // The list was made from a u32 count.
                slot_count: self.allocated.len() as u32,
            }),
        }
    }

    /// Number of free slots.
    fn available(&self) -> u32 {
        // At most slot_count, a u32.
        self.stack.len() as u32
    }
}

/// Checked access to the slots in a pool's memory: the one place this module reads or writes
/// that memory through a raw pointer.
///
/// Every slot index and length is checked against the [`Layout`]. Reads take `&self`; writes
/// take `&mut self` and fail with [`SlotError::ReadOnly`] unless the memory is writable, so within
/// this process the borrow checker keeps the slices it hands out shared or exclusive as Rust
/// requires. Other processes are bound by the contract of [`new`](Self::new) instead.
///
/// Deliberately neither `Clone` nor `Copy`: a copy could hand out a second `&mut` slice.
#[derive(Debug)]
struct SlotMemory {
    /// Start of the memory; aligned to [`SLOT_ALIGN`] (checked in `new`).
    base: *mut u8,
    /// The slots' layout; at least `layout.len` bytes from `base` are valid (`new`'s contract,
    /// the length checked).
    layout: Layout,
    /// Whether the memory may be written.
    writable: bool,
}

// SAFETY: a SlotMemory is a pointer to memory that is tied to no thread (a shared mapping, or a
// heap block in tests) plus plain values; whoever owns that memory keeps it alive, wherever the
// SlotMemory is moved.
unsafe impl Send for SlotMemory {}
// SAFETY: through `&SlotMemory` one can only read (volatile header reads, shared slices), which
// any number of threads may do at once; every write needs `&mut SlotMemory`.
unsafe impl Sync for SlotMemory {}

impl SlotMemory {
    /// Slot access to the `len` bytes at `base`, laid out as `layout`.
    ///
    /// # Panics
    ///
    /// If `base` is not aligned to [`SLOT_ALIGN`], or `len < layout.len`.
    ///
    /// # Safety
    ///
    /// For as long as the returned value lives:
    /// - the `len` bytes at `base` must be valid for reads, and for writes too if `writable`,
    ///   all within one allocation or mapping;
    /// - they must not be accessed other than through the value, except by peers (other
    ///   processes mapping the same memory) that keep to the pool's sharing rules: a peer does not
    ///   write a slot's payload or metadata while this side holds it (see [`Pool`] and
    ///   [`PoolView`]), and reads or writes headers only as whole values (volatile, like this
    ///   type).
    unsafe fn new(base: *mut u8, len: usize, layout: Layout, writable: bool) -> Self {
        assert!(
            base.addr().is_multiple_of(SLOT_ALIGN as usize),
            "pool memory at {base:p} is not aligned to {SLOT_ALIGN} bytes"
        );
        assert!(
            len >= layout.len,
            "pool memory of {len} bytes is shorter than the layout's {} bytes",
            layout.len
        );
        Self {
            base,
            layout,
            writable,
        }
    }

    /// The pool's geometry.
    fn geometry(&self) -> PoolGeometry {
        self.layout.geometry
    }

    /// Reads `slot`'s header (a volatile read).
    fn header(&self, slot: u32) -> Result<SlotHeader, SlotError> {
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: offset + 64 <= offset + stride <= layout.len <= len, valid for reads (new's
        // contract); offset is a multiple of the stride, itself a multiple of 64, from a 64-aligned
        // base (asserted in new), so the header is aligned. Headers are in no slice handed out.
        Ok(unsafe { read_plain(self.base.add(offset)) })
    }

    /// Writes `slot`'s header (a volatile write); needs writable memory.
    fn set_header(&mut self, slot: u32, header: &SlotHeader) -> Result<(), SlotError> {
        self.check_writable(slot)?;
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: in bounds and aligned as in `header`; writable (checked, new's contract); headers
        // are in no slice handed out, and &mut self means no slice from self is alive anyway.
        unsafe { write_plain(self.base.add(offset), *header) };
        Ok(())
    }

    /// `len` bytes of `part` of `slot`, checked.
    fn part(&self, slot: u32, part: SlotPart, len: u32) -> Result<&[u8], SlotError> {
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: Layout::part checked the slot and that len <= the part's capacity, so
        // offset + len ends within the slot, within layout.len <= len bytes valid for reads in one
        // allocation for as long as self (new's contract); u8 needs no alignment. The borrow of
        // self keeps every &mut slice from self dead while this one lives, and peers do not write
        // it (new's contract).
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(offset), len) })
    }

    /// Start of `part` of `slot` after checking the slot and that `len` fits the part.
    fn part_ptr(&self, slot: u32, part: SlotPart, len: u32) -> Result<NonNull<u8>, SlotError> {
        let (offset, _) = self.layout.part(slot, part, len)?;
        // SAFETY: Layout::part checked that offset + len ends within the slot, within the
        // layout.len bytes from base (new's contract), so the pointer stays in the allocation.
        let ptr = unsafe { self.base.add(offset) };
        Ok(NonNull::new(ptr).expect("a mapping does not start at address 0"))
    }

    /// `len` bytes of `part` of `slot`, checked, writable; needs writable memory.
    fn part_mut(&mut self, slot: u32, part: SlotPart, len: u32) -> Result<&mut [u8], SlotError> {
        self.check_writable(slot)?;
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: in bounds as in `part`, and writable (checked, new's contract); &mut self
        // excludes every other slice from self while this one lives, and nothing else touches
        // the bytes (new's contract).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) })
    }

    /// Fails unless the memory is writable.
    fn check_writable(&self, slot: u32) -> Result<(), SlotError> {
        if self.writable {
            return Ok(());
        }
        Err(SlotError::ReadOnly { slot })
    }
}

/// A pool of frame slots, owned by the engine: the region and its free list.
///
/// # Sharing
///
/// Peers given [`dup_fd`](Self::dup_fd) can write any slot; they are trusted not to write a slot
/// unless it was lent to them, and [`payload_mut`](Self::payload_mut) and friends rely on that.
/// Peers that are not trusted get [`readonly_fd`](Self::readonly_fd).
pub struct Pool {
    /// Identifier, unique within one engine.
    id: u32,
    /// Access to the slots in `region`, which lives exactly as long.
    slots: SlotMemory,
    /// The memory: at least the geometry's [`region_len`](PoolGeometry::region_len) bytes.
    region: Region,
    /// Which slots are free.
    free_list: FreeList,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.id)
            .field("name", &self.region.name())
            .field("geometry", &self.geometry())
            .field("kind", &self.region.kind())
            .field("available", &self.available())
            .finish()
    }
}

impl Pool {
    /// Creates a pool with every slot free. Allocates the free list once, here.
    pub fn create(
        id: u32,
        name: &str,
        geometry: PoolGeometry,
        huge: HugePages,
    ) -> Result<Self, PoolError> {
        let layout = Layout::new(geometry)?;
        let region = Region::create(name, layout.len, huge).map_err(|source| PoolError::Map {
            name: name.to_owned(),
            source,
        })?;
        // SAFETY: the region is one read-write mapping of region.len() bytes that stays mapped
        // while the region lives, and the pool keeps the two together; only `slots` touches its
        // bytes in this process, and peers keep to the sharing rules on `Pool`.
        let slots = unsafe { SlotMemory::new(region.as_ptr(), region.len(), layout, true) };
        Ok(Self {
            id,
            slots,
            region,
            free_list: FreeList::new(geometry.slot_count),
        })
    }

    /// Takes a free slot, lowest index first on a fresh pool; `None` when all are allocated.
    pub fn alloc(&mut self) -> Option<u32> {
        self.free_list.alloc()
    }

    /// Returns an allocated slot to the free list. Never allocates.
    pub fn free(&mut self, slot: u32) -> Result<(), SlotError> {
        self.free_list.free(slot)
    }

    /// Whether `slot` is allocated (false when out of range).
    pub fn is_allocated(&self, slot: u32) -> bool {
        self.free_list.is_allocated(slot)
    }

    /// Number of free slots.
    pub fn available(&self) -> u32 {
        self.free_list.available()
    }

    /// The pool's identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The pool's geometry.
    pub fn geometry(&self) -> PoolGeometry {
        self.slots.geometry()
    }

    /// What kind of pages back the pool.
    pub fn kind(&self) -> MemKind {
        self.region.kind()
    }

    /// The region under the pool.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The region's fd, read-write.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// A new read-write fd for a trusted peer (see [`Region::dup_fd`]).
    pub fn dup_fd(&self) -> Result<OwnedFd, MapError> {
        self.region.dup_fd()
    }

    /// A new read-only fd for an untrusted peer (see [`Region::readonly_fd`]).
    pub fn readonly_fd(&self) -> Result<OwnedFd, MapError> {
        self.region.readonly_fd()
    }

    /// Reads `slot`'s header (any slot in range; a volatile read).
    pub fn header(&self, slot: u32) -> Result<SlotHeader, SlotError> {
        self.slots.header(slot)
    }

    /// Writes `slot`'s header; the slot must be allocated.
    pub fn set_header(&mut self, slot: u32, header: &SlotHeader) -> Result<(), SlotError> {
        self.free_list.check_allocated(slot)?;
        self.slots.set_header(slot, header)
    }

    /// The whole payload area of an allocated slot.
    pub fn payload(&self, slot: u32) -> Result<&[u8], SlotError> {
        let capacity = self.geometry().payload_capacity;
        self.part(slot, SlotPart::Payload, capacity)
    }

    /// The whole payload area of an allocated slot, writable.
    ///
    /// Sound while the slot is allocated and not lent to a peer: `&mut self` excludes every other
    /// reference into the pool from this process, and peers do not write a slot they do not hold
    /// (see [`Pool`]'s sharing rules).
    pub fn payload_mut(&mut self, slot: u32) -> Result<&mut [u8], SlotError> {
        let capacity = self.geometry().payload_capacity;
        self.part_mut(slot, SlotPart::Payload, capacity)
    }

    /// The whole metadata area of an allocated slot.
    pub fn metadata(&self, slot: u32) -> Result<&[u8], SlotError> {
        let capacity = self.geometry().metadata_capacity;
        self.part(slot, SlotPart::Metadata, capacity)
    }

    /// The whole metadata area of an allocated slot, writable; sound as for
    /// [`payload_mut`](Self::payload_mut).
    pub fn metadata_mut(&mut self, slot: u32) -> Result<&mut [u8], SlotError> {
        let capacity = self.geometry().metadata_capacity;
        self.part_mut(slot, SlotPart::Metadata, capacity)
    }

    /// `len` bytes of `part` of an allocated slot.
    fn part(&self, slot: u32, part: SlotPart, len: u32) -> Result<&[u8], SlotError> {
        self.free_list.check_allocated(slot)?;
        self.slots.part(slot, part, len)
    }

    /// `len` bytes of `part` of an allocated slot, writable.
    fn part_mut(&mut self, slot: u32, part: SlotPart, len: u32) -> Result<&mut [u8], SlotError> {
        self.free_list.check_allocated(slot)?;
        self.slots.part_mut(slot, part, len)
    }
}

/// A pool attached from an fd another process sent: every index and length is checked.
///
/// Slices it returns point into memory the owner shares: their contents are only stable while
/// the protocol lends the slot to this side; a reader must check any length it reads from them.
#[derive(Debug)]
pub struct PoolView {
    /// Access to the slots in `map`, which lives exactly as long; writable iff `map` is.
    slots: SlotMemory,
    /// The mapping: the geometry's [`region_len`](PoolGeometry::region_len) bytes.
    map: Mapping,
}

impl PoolView {
    /// Maps a pool from `fd`, after checking `geometry` and that the fd is sealed and holds at
    /// least the geometry's [`region_len`](PoolGeometry::region_len).
    pub fn attach(
        fd: BorrowedFd<'_>,
        geometry: PoolGeometry,
        access: Access,
    ) -> Result<Self, PoolError> {
        let layout = Layout::new(geometry)?;
        let map = Mapping::map(fd, layout.len, access).map_err(|source| PoolError::Map {
            name: format!("fd {}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            source,
        })?;
        let writable = match map.access() {
            Access::ReadWrite => true,
            Access::ReadOnly => false,
        };
        // SAFETY: the mapping is map.len() bytes, readable, and writable iff `writable`; it stays
        // mapped while `map` lives, and the view keeps the two together; only `slots` touches its
        // bytes in this process, and the owner does not write a slot it lent to us.
        let slots = unsafe { SlotMemory::new(map.as_ptr(), map.len(), layout, writable) };
        Ok(Self { slots, map })
    }

    /// The pool's geometry.
    pub fn geometry(&self) -> PoolGeometry {
        self.slots.geometry()
    }

    /// How the view may be accessed.
    pub fn access(&self) -> Access {
        self.map.access()
    }

    /// Start and length of the whole mapping, slot 0 first: for registering the pool with a
    /// network provider. Slot `i` starts `i * slot_stride` bytes in.
    pub fn region(&self) -> (NonNull<u8>, usize) {
        let p = NonNull::new(self.map.as_ptr()).expect("a mapping is never at address 0");
        (p, self.map.len())
    }

    /// Reads `slot`'s header (a volatile read; the fields are untrusted).
    pub fn header(&self, slot: u32) -> Result<SlotHeader, SlotError> {
        self.slots.header(slot)
    }

    /// Writes `slot`'s header; needs a read-write view.
    pub fn set_header(&mut self, slot: u32, header: &SlotHeader) -> Result<(), SlotError> {
        self.slots.set_header(slot, header)
    }

    /// The first `len` payload bytes of `slot`.
    pub fn payload(&self, slot: u32, len: u32) -> Result<&[u8], SlotError> {
        self.slots.part(slot, SlotPart::Payload, len)
    }

    /// The first `len` payload bytes of `slot`, writable; needs a read-write view, and is sound
    /// while the protocol lends the slot to this side.
    pub fn payload_mut(&mut self, slot: u32, len: u32) -> Result<&mut [u8], SlotError> {
        self.slots.part_mut(slot, SlotPart::Payload, len)
    }

    /// The first `len` metadata bytes of `slot`.
    pub fn metadata(&self, slot: u32, len: u32) -> Result<&[u8], SlotError> {
        self.slots.part(slot, SlotPart::Metadata, len)
    }

    /// Raw pointers to the payload and metadata of `slot`, after checking the slot index and that
    /// `payload_len` and `metadata_len` fit the slot's capacities.
    ///
    /// For an SDK that lends slots to its application (several at once, across threads): the
    /// pointers stay valid while the view lives. Reading through them is sound while the
    /// protocol lends the slot to this side (the owner does not write it then); writing needs a
    /// read-write view and is sound under the same condition, for a slot lent to no one else in
    /// this process.
    pub fn slot_ptrs(
        &self,
        slot: u32,
        payload_len: u32,
        metadata_len: u32,
    ) -> Result<(NonNull<u8>, NonNull<u8>), SlotError> {
        let payload = self.slots.part_ptr(slot, SlotPart::Payload, payload_len)?;
        let metadata = self
            .slots
            .part_ptr(slot, SlotPart::Metadata, metadata_len)?;
        Ok((payload, metadata))
    }

    /// The first `len` metadata bytes of `slot`, writable; as for
    /// [`payload_mut`](Self::payload_mut).
    pub fn metadata_mut(&mut self, slot: u32, len: u32) -> Result<&mut [u8], SlotError> {
        self.slots.part_mut(slot, SlotPart::Metadata, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::map::tests::NrHugepages;
    use std::os::fd::AsFd;

    const SMALL: PoolGeometry = PoolGeometry {
        slot_count: 4,
        payload_capacity: 1000,
        metadata_capacity: 13,
    };

    fn small_pool(name: &str) -> Pool {
        Pool::create(7, name, SMALL, HugePages::Off).unwrap()
    }

    #[test]
    fn slot_header_is_one_cache_line() {
        assert_eq!(size_of::<SlotHeader>(), 64);
    }

    #[test]
    fn geometry_offsets_are_padded_and_aligned() {
        assert_eq!(SMALL.payload_offset(), 64);
        assert_eq!(SMALL.metadata_offset(), 64 + 1000);
        // 64 + 1000 + 16 = 1080, rounded up to 1088.
        assert_eq!(SMALL.slot_stride(), 1088);
        assert_eq!(SMALL.region_len().unwrap(), 4 * 1088);
        let odd = PoolGeometry {
            slot_count: 1,
            payload_capacity: 1,
            metadata_capacity: 0,
        };
        assert_eq!(odd.metadata_offset(), 72);
        assert_eq!(odd.slot_stride(), 128);
    }

    #[test]
    fn geometry_errors_name_field_and_range() {
        let cases = [
            (
                PoolGeometry {
                    slot_count: 0,
                    ..SMALL
                },
                "slot_count = 0",
                "1..=65536",
            ),
            (
                PoolGeometry {
                    slot_count: 65_537,
                    ..SMALL
                },
                "slot_count = 65537",
                "1..=65536",
            ),
            (
                PoolGeometry {
                    payload_capacity: 0,
                    ..SMALL
                },
                "payload_capacity = 0",
                "1..=268435456",
            ),
            (
                PoolGeometry {
                    metadata_capacity: u32::MAX,
                    ..SMALL
                },
                "metadata_capacity",
                "0..=1048576",
            ),
        ];
        for (geometry, field, range) in cases {
            let err = geometry.validate().unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(range), "{err}");
        }
    }

    #[test]
    fn geometry_total_size_is_checked_without_overflow() {
        let huge = PoolGeometry {
            slot_count: MAX_SLOT_COUNT,
            payload_capacity: MAX_PAYLOAD_CAPACITY,
            metadata_capacity: MAX_METADATA_CAPACITY,
        };
        let err = huge.region_len().unwrap_err();
        assert!(matches!(err, PoolError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("68719476736"), "{err}");
        let extreme = PoolGeometry {
            slot_count: u32::MAX,
            payload_capacity: u32::MAX,
            metadata_capacity: u32::MAX,
        };
        assert!(extreme.slot_stride() < 1 << 34);
        assert!(extreme.validate().is_err());
        let exactly_max = PoolGeometry {
            slot_count: 256,
            payload_capacity: MAX_PAYLOAD_CAPACITY - 64,
            metadata_capacity: 0,
        };
        assert_eq!(exactly_max.region_len().unwrap() as u64, MAX_POOL_LEN);
    }

    #[test]
    fn alloc_and_free_track_every_slot() {
        let mut pool = small_pool("mcm-test-alloc");
        assert_eq!(pool.available(), 4);
        let slots: Vec<u32> = std::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert_eq!(pool.alloc(), None);
        assert_eq!(pool.available(), 0);
        pool.free(2).unwrap();
        assert!(!pool.is_allocated(2));
        assert_eq!(pool.free(2), Err(SlotError::NotAllocated { slot: 2 }));
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.alloc(), Some(2));
        let err = pool.free(4).unwrap_err();
        assert_eq!(
            err,
            SlotError::OutOfRange {
                slot: 4,
                slot_count: 4
            }
        );
        assert!(err.to_string().contains("0..4"), "{err}");
        assert_eq!(
            pool.free(u32::MAX),
            Err(SlotError::OutOfRange {
                slot: u32::MAX,
                slot_count: 4
            })
        );
    }

    #[test]
    fn free_list_never_grows() {
        let mut pool = small_pool("mcm-test-cap");
        let capacity = pool.free_list.stack.capacity();
        for _ in 0..3 {
            while pool.alloc().is_some() {}
            for slot in 0..4 {
                pool.free(slot).unwrap();
            }
            assert!(pool.free(0).is_err());
        }
        assert_eq!(pool.free_list.stack.capacity(), capacity);
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn owner_access_needs_an_allocated_slot() {
        let mut pool = small_pool("mcm-test-owner");
        assert_eq!(
            pool.payload_mut(0).unwrap_err(),
            SlotError::NotAllocated { slot: 0 }
        );
        assert!(pool.set_header(0, &SlotHeader::default()).is_err());
        let slot = pool.alloc().unwrap();
        assert_eq!(pool.payload_mut(slot).unwrap().len(), 1000);
        assert_eq!(pool.metadata_mut(slot).unwrap().len(), 13);
        assert_eq!(
            pool.header(9).unwrap_err(),
            SlotError::OutOfRange {
                slot: 9,
                slot_count: 4
            }
        );
    }

    #[test]
    fn written_by_pool_read_through_readonly_view() {
        let mut pool = small_pool("mcm-test-view");
        let _ = pool.alloc();
        let slot = pool.alloc().unwrap();
        pool.payload_mut(slot).unwrap().fill(0x5A);
        pool.metadata_mut(slot)
            .unwrap()
            .copy_from_slice(b"metadata-ok!!");
        let header = SlotHeader {
            seq: 42,
            timestamp_ns: 1_700_000_000_000_000_000,
            payload_len: 1000,
            metadata_len: 13,
            reserved: [0; 5],
        };
        pool.set_header(slot, &header).unwrap();
        let ro = pool.readonly_fd().unwrap();
        let mut view = PoolView::attach(ro.as_fd(), SMALL, Access::ReadOnly).unwrap();
        assert_eq!(view.header(slot).unwrap(), header);
        assert!(view.payload(slot, 1000).unwrap().iter().all(|&b| b == 0x5A));
        assert_eq!(view.metadata(slot, 13).unwrap(), b"metadata-ok!!");
        assert_eq!(view.payload(slot - 1, 10).unwrap(), [0; 10]);
        assert_eq!(
            view.payload_mut(slot, 1).unwrap_err(),
            SlotError::ReadOnly { slot }
        );
        assert!(view.set_header(slot, &header).is_err());
    }

    #[test]
    fn view_checks_peer_indices_and_lengths() {
        let pool = small_pool("mcm-test-check");
        let fd = pool.dup_fd().unwrap();
        let mut view = PoolView::attach(fd.as_fd(), SMALL, Access::ReadWrite).unwrap();
        let err = view.payload(4, 1).unwrap_err();
        assert!(
            err.to_string().contains("slot 4") && err.to_string().contains("0..4"),
            "{err}"
        );
        let err = view.payload(0, 1001).unwrap_err();
        assert_eq!(
            err,
            SlotError::TooLong {
                part: SlotPart::Payload,
                len: 1001,
                capacity: 1000
            }
        );
        assert!(err.to_string().contains("0..=1000"), "{err}");
        let err = view.metadata(3, 14).unwrap_err();
        assert!(err.to_string().contains("metadata length 14"), "{err}");
        view.payload_mut(3, 1000).unwrap().fill(1);
        assert_eq!(
            view.metadata(3, 13).unwrap(),
            [0; 13],
            "payload writes stay in the payload"
        );
    }

    #[test]
    fn view_rejects_bad_geometry_and_short_fd() {
        let pool = small_pool("mcm-test-short");
        let fd = pool.readonly_fd().unwrap();
        let bad = PoolGeometry {
            slot_count: 0,
            ..SMALL
        };
        let err = PoolView::attach(fd.as_fd(), bad, Access::ReadOnly).unwrap_err();
        assert!(
            matches!(
                err,
                PoolError::InvalidGeometry {
                    field: "slot_count",
                    ..
                }
            ),
            "{err}"
        );
        // The region is 4352 bytes rounded up to a 4096-byte page: 8192. Ask for more.
        let bigger = PoolGeometry {
            slot_count: 8,
            ..SMALL
        };
        let err = PoolView::attach(fd.as_fd(), bigger, Access::ReadOnly).unwrap_err();
        let PoolError::Map { source, .. } = &err else {
            panic!("unexpected {err}");
        };
        assert!(matches!(source, MapError::FdTooShort { .. }), "{err}");
    }

    #[test]
    fn readonly_fd_cannot_attach_read_write() {
        let pool = small_pool("mcm-test-rw");
        let fd = pool.readonly_fd().unwrap();
        let err = PoolView::attach(fd.as_fd(), SMALL, Access::ReadWrite).unwrap_err();
        let PoolError::Map { source, .. } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(
            source.raw_os_error(),
            Some(rustix::io::Errno::ACCESS.raw_os_error())
        );
    }

    /// A `/proc/meminfo` counter.
    fn meminfo(key: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The only test that changes `nr_hugepages`; restores it on drop of the guard, panics
    /// included. Skipped (with a note) when not root or when the kernel cannot reserve pages.
    #[test]
    fn huge_pages_on_auto_and_shortage() {
        let Some(_guard) = NrHugepages::set(0) else {
            eprintln!("skipped: cannot write /proc/sys/vm/nr_hugepages (not root?)");
            return;
        };
        let geometry = PoolGeometry {
            slot_count: 2,
            payload_capacity: (1 << 20) - 64,
            metadata_capacity: 0,
        };
        // Slots of exactly 1 MiB: one huge page per two slots.
        let auto = Pool::create(1, "mcm-test-auto", geometry, HugePages::Auto).unwrap();
        assert_eq!(auto.kind(), MemKind::Normal);
        let why = auto
            .region()
            .huge_fallback()
            .expect("fallback reason recorded");
        assert!(
            matches!(why, MapError::HugePages { step: "mmap", .. }),
            "{why}"
        );
        drop(auto);
        let err = Pool::create(2, "mcm-test-on0", geometry, HugePages::On).unwrap_err();
        assert!(err.to_string().contains("nr_hugepages"), "{err}");

        let _guard = {
            drop(_guard);
            NrHugepages::set(4).expect("writable a moment ago")
        };
        if NrHugepages::total() < 4 {
            eprintln!(
                "skipped: the kernel reserved {} of 4 huge pages",
                NrHugepages::total()
            );
            return;
        }
        let mut pool = Pool::create(3, "mcm-test-on", geometry, HugePages::On).unwrap();
        assert_eq!(pool.kind(), MemKind::Huge2M);
        assert_eq!(pool.region().len(), 2 << 20);
        // Prefaulted at creation (MADV_POPULATE_WRITE), not merely reserved for later.
        assert_eq!(
            (meminfo("HugePages_Free"), meminfo("HugePages_Rsvd")),
            (3, 0)
        );
        let seals = rustix::fs::fcntl_get_seals(pool.fd()).unwrap();
        assert!(seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW));
        let slot = pool.alloc().unwrap();
        pool.payload_mut(slot).unwrap()[..4].copy_from_slice(b"huge");
        let ro = pool.readonly_fd().unwrap();
        let view = PoolView::attach(ro.as_fd(), geometry, Access::ReadOnly).unwrap();
        assert_eq!(view.payload(slot, 4).unwrap(), b"huge");
        assert!(PoolView::attach(ro.as_fd(), geometry, Access::ReadWrite).is_err());

        // 4 pages, with 3 left: an error at mmap, not a SIGBUS later.
        let big = PoolGeometry {
            slot_count: 8,
            ..geometry
        };
        let err = Pool::create(4, "mcm-test-short", big, HugePages::On).unwrap_err();
        assert!(err.to_string().contains("nr_hugepages"), "{err}");
        let auto = Pool::create(5, "mcm-test-auto2", big, HugePages::Auto).unwrap();
        assert_eq!(auto.kind(), MemKind::Normal);
    }

    /// The pool's pure logic and its unsafe slot access over heap memory instead of a memfd
    /// mapping, so Miri can run them: `cargo +nightly miri test -p mcm-proto --lib
    /// shm::pool::tests::heap`. They run in every `cargo test` too.
    mod heap {
        use super::*;
        use std::alloc::{self, Layout as AllocLayout};

        /// A zeroed heap block, aligned to [`SLOT_ALIGN`] as a mapping is, behind a
        /// [`SlotMemory`] laid out as a geometry; the block is freed on drop.
        struct HeapSlots {
            /// Access to the block; the only way the tests touch it, but for `bytes`.
            mem: SlotMemory,
            /// Start of the block.
            ptr: *mut u8,
            /// Size and alignment of the block.
            block: AllocLayout,
        }

        impl HeapSlots {
            /// A writable block of exactly the geometry's region length.
            fn new(geometry: PoolGeometry) -> Self {
                Self::with_len(geometry, geometry.region_len().unwrap(), true)
            }

            /// A block of `len` bytes (more than the geometry needs, or fewer, to test the
            /// checks in `SlotMemory::new`) with the memory starting `skew` bytes into it.
            fn with_skew(geometry: PoolGeometry, len: usize, skew: usize, writable: bool) -> Self {
                let block = AllocLayout::from_size_align(len, SLOT_ALIGN as usize).unwrap();
                // SAFETY: len > 0 in every caller.
                let ptr = unsafe { alloc::alloc_zeroed(block) };
                if ptr.is_null() {
                    alloc::handle_alloc_error(block);
                }
                // Freed on the way out should SlotMemory::new panic.
                struct Free(*mut u8, AllocLayout);
                impl Drop for Free {
                    fn drop(&mut self) {
                        // SAFETY: allocated above with this layout; nothing uses it afterwards.
                        unsafe { alloc::dealloc(self.0, self.1) };
                    }
                }
                let free = Free(ptr, block);
                let layout = Layout::new(geometry).unwrap();
                // SAFETY: the len - skew bytes at ptr + skew are one zeroed heap block, readable
                // and writable, freed only when the returned value (which owns `mem`) is dropped;
                // the tests touch them only through `mem`, or through `bytes` while no slice from
                // `mem` is alive.
                let mem = unsafe { SlotMemory::new(ptr.add(skew), len - skew, layout, writable) };
                std::mem::forget(free);
                Self { mem, ptr, block }
            }

            /// A block of `len` bytes.
            fn with_len(geometry: PoolGeometry, len: usize, writable: bool) -> Self {
                Self::with_skew(geometry, len, 0, writable)
            }

            /// The whole block, to check where writes through `mem` landed.
            fn bytes(&mut self) -> &[u8] {
                // SAFETY: the block is block.size() initialised bytes at ptr, alive while self
                // is; &mut self means no slice from `mem` is alive.
                unsafe { std::slice::from_raw_parts(self.ptr, self.block.size()) }
            }
        }

        impl Drop for HeapSlots {
            fn drop(&mut self) {
                // SAFETY: allocated in `with_skew` with this layout; `mem` dies with self and is
                // not used again.
                unsafe { alloc::dealloc(self.ptr, self.block) };
            }
        }

        /// Odd capacities, so the padding between parts and slots is exercised.
        const GEOMETRIES: [PoolGeometry; 3] = [
            SMALL,
            PoolGeometry {
                slot_count: 3,
                payload_capacity: 1,
                metadata_capacity: 0,
            },
            PoolGeometry {
                slot_count: 2,
                payload_capacity: 64,
                metadata_capacity: 7,
            },
        ];

        /// A header that differs for every `tag`.
        fn header_for(tag: u64) -> SlotHeader {
            SlotHeader {
                seq: tag,
                timestamp_ns: u64::MAX - tag,
                payload_len: tag as u32 ^ 0xDEAD_BEEF,
                metadata_len: (tag as u32).rotate_left(16),
                reserved: [tag.wrapping_mul(0x9E37_79B9_7F4A_7C15); 5],
            }
        }

        #[test]
        fn free_list_hands_out_lowest_first_and_tracks_every_slot() {
            let mut list = FreeList::new(4);
            assert_eq!(list.available(), 4);
            assert!((0..4).all(|slot| !list.is_allocated(slot)));
            let slots: Vec<u32> = std::iter::from_fn(|| list.alloc()).collect();
            assert_eq!(slots, [0, 1, 2, 3]);
            assert!((0..4).all(|slot| list.is_allocated(slot)));
            assert!(!list.is_allocated(4) && !list.is_allocated(u32::MAX));
            list.free(1).unwrap();
            list.free(3).unwrap();
            assert_eq!((list.available(), list.is_allocated(1)), (2, false));
            // A stack: the last freed comes back first.
            assert_eq!(
                (list.alloc(), list.alloc(), list.alloc()),
                (Some(3), Some(1), None)
            );
        }

        #[test]
        fn free_list_rejects_double_free_and_out_of_range() {
            let mut list = FreeList::new(3);
            assert_eq!(list.free(0), Err(SlotError::NotAllocated { slot: 0 }));
            let slot = list.alloc().unwrap();
            list.free(slot).unwrap();
            assert_eq!(list.free(slot), Err(SlotError::NotAllocated { slot }));
            assert_eq!(list.available(), 3, "a double free does not add a slot");
            for slot in [3, 4, u32::MAX] {
                let out = SlotError::OutOfRange {
                    slot,
                    slot_count: 3,
                };
                assert_eq!(list.free(slot), Err(out));
                assert_eq!(list.check_allocated(slot), Err(out));
            }
            assert_eq!(list.available(), 3);
        }

        #[test]
        fn free_list_exhausts_and_never_reallocates() {
            let mut list = FreeList::new(MAX_SLOT_COUNT.min(if cfg!(miri) { 64 } else { 4096 }));
            let count = list.allocated.len() as u32;
            let (ptr, capacity) = (list.stack.as_ptr(), list.stack.capacity());
            for round in 0..3 {
                for expected in 0..count {
                    assert_eq!(list.alloc(), Some(expected), "round {round}");
                }
                assert_eq!((list.alloc(), list.available()), (None, 0));
                for slot in (0..count).rev() {
                    list.free(slot).unwrap();
                }
                assert_eq!(list.available(), count);
            }
            assert_eq!(
                (list.stack.as_ptr(), list.stack.capacity()),
                (ptr, capacity)
            );
            let single = &mut FreeList::new(1);
            assert_eq!((single.alloc(), single.alloc()), (Some(0), None));
        }

        #[test]
        fn slot_memory_header_round_trip() {
            for geometry in GEOMETRIES {
                let mut heap = HeapSlots::new(geometry);
                for slot in 0..geometry.slot_count {
                    assert_eq!(heap.mem.header(slot).unwrap(), SlotHeader::default());
                }
                for slot in 0..geometry.slot_count {
                    heap.mem.set_header(slot, &header_for(slot.into())).unwrap();
                }
                for slot in 0..geometry.slot_count {
                    assert_eq!(heap.mem.header(slot).unwrap(), header_for(slot.into()));
                }
                let all_ones = SlotHeader {
                    seq: u64::MAX,
                    timestamp_ns: u64::MAX,
                    payload_len: u32::MAX,
                    metadata_len: u32::MAX,
                    reserved: [u64::MAX; 5],
                };
                let last = geometry.slot_count - 1;
                heap.mem.set_header(last, &all_ones).unwrap();
                assert_eq!(heap.mem.header(last).unwrap(), all_ones);
            }
        }

        #[test]
        fn slot_memory_parts_at_exact_capacity_edges() {
            for geometry in GEOMETRIES {
                let mut heap = HeapSlots::new(geometry);
                let parts = [
                    (SlotPart::Payload, geometry.payload_capacity),
                    (SlotPart::Metadata, geometry.metadata_capacity),
                ];
                for slot in 0..geometry.slot_count {
                    for (part, capacity) in parts {
                        assert!(heap.mem.part(slot, part, 0).unwrap().is_empty());
                        assert!(heap.mem.part_mut(slot, part, 0).unwrap().is_empty());
                        let full = heap.mem.part_mut(slot, part, capacity).unwrap();
                        assert_eq!(full.len(), capacity as usize);
                        for (i, byte) in full.iter_mut().enumerate() {
                            *byte = (i as u8).wrapping_add(slot as u8) | 1;
                        }
                        let read = heap.mem.part(slot, part, capacity).unwrap();
                        assert!(
                            read.iter()
                                .enumerate()
                                .all(|(i, &b)| b == (i as u8).wrapping_add(slot as u8) | 1)
                        );
                        let too_long = SlotError::TooLong {
                            part,
                            len: capacity + 1,
                            capacity,
                        };
                        assert_eq!(heap.mem.part(slot, part, capacity + 1), Err(too_long));
                        assert_eq!(heap.mem.part_mut(slot, part, capacity + 1), Err(too_long));
                        let max = heap.mem.part(slot, part, u32::MAX).unwrap_err();
                        assert!(matches!(max, SlotError::TooLong { len: u32::MAX, .. }));
                    }
                }
            }
        }

        #[test]
        fn slot_memory_rejects_every_out_of_range_slot() {
            for geometry in GEOMETRIES {
                let mut heap = HeapSlots::new(geometry);
                let count = geometry.slot_count;
                for slot in [count, count + 1, u32::MAX / 2, u32::MAX] {
                    let out = Err(SlotError::OutOfRange {
                        slot,
                        slot_count: count,
                    });
                    assert_eq!(heap.mem.header(slot), out);
                    assert_eq!(heap.mem.set_header(slot, &header_for(1)), out.map(|_| ()));
                    for part in [SlotPart::Payload, SlotPart::Metadata] {
                        // Out of range wins over a length that would also be rejected.
                        for len in [0, 1, u32::MAX] {
                            assert_eq!(heap.mem.part(slot, part, len), out.map(|_| &[][..]));
                            assert_eq!(
                                heap.mem.part_mut(slot, part, len).map(|s| s.len()),
                                out.map(|_| 0)
                            );
                        }
                    }
                }
                assert!(heap.bytes().iter().all(|&b| b == 0), "nothing was written");
            }
        }

        #[test]
        fn slot_memory_adjacent_slots_do_not_overlap() {
            for geometry in GEOMETRIES {
                let mut heap = HeapSlots::new(geometry);
                let (payload, metadata) = (geometry.payload_capacity, geometry.metadata_capacity);
                let count = geometry.slot_count;
                // Fill each slot whole, then check its neighbours are still zero, or still hold
                // what was written to them.
                for slot in 0..count {
                    let fill = 0xA0 | slot as u8;
                    heap.mem
                        .set_header(slot, &header_for(u64::from(slot) + 1))
                        .unwrap();
                    heap.mem
                        .part_mut(slot, SlotPart::Payload, payload)
                        .unwrap()
                        .fill(fill);
                    heap.mem
                        .part_mut(slot, SlotPart::Metadata, metadata)
                        .unwrap()
                        .fill(!fill);
                    for neighbour in [slot.wrapping_sub(1), slot + 1] {
                        if neighbour >= count {
                            continue;
                        }
                        let written = neighbour < slot;
                        let (header, fill) = match written {
                            true => (header_for(u64::from(neighbour) + 1), 0xA0 | neighbour as u8),
                            false => (SlotHeader::default(), 0),
                        };
                        let metadata_fill = if written { !fill } else { 0 };
                        assert_eq!(heap.mem.header(neighbour).unwrap(), header);
                        let bytes = heap
                            .mem
                            .part(neighbour, SlotPart::Payload, payload)
                            .unwrap();
                        assert!(bytes.iter().all(|&b| b == fill), "{neighbour} after {slot}");
                        let bytes = heap.mem.part(neighbour, SlotPart::Metadata, metadata);
                        assert!(bytes.unwrap().iter().all(|&b| b == metadata_fill));
                    }
                }
                // Every byte of the block is where the layout says: header, payload, metadata,
                // and padding still zero.
                let stride = geometry.slot_stride() as usize;
                let payload_at = geometry.payload_offset() as usize;
                let metadata_at = geometry.metadata_offset() as usize;
                let mut expected = vec![0u8; heap.block.size()];
                for slot in 0..count as usize {
                    let start = slot * stride;
                    let header = header_for(slot as u64 + 1);
                    let fields = [header.seq, header.timestamp_ns]
                        .into_iter()
                        .flat_map(u64::to_ne_bytes)
                        .chain(header.payload_len.to_ne_bytes())
                        .chain(header.metadata_len.to_ne_bytes())
                        .chain(header.reserved.into_iter().flat_map(u64::to_ne_bytes));
                    for (i, byte) in fields.enumerate() {
                        expected[start + i] = byte;
                    }
                    let fill = 0xA0 | slot as u8;
                    expected[start + payload_at..][..payload as usize].fill(fill);
                    expected[start + metadata_at..][..metadata as usize].fill(!fill);
                }
                assert!(heap.bytes() == expected, "{geometry:?}");
            }
        }

        #[test]
        fn slot_memory_read_only_rejects_every_write() {
            let mut heap = HeapSlots::with_len(SMALL, SMALL.region_len().unwrap(), false);
            for slot in [0, 3, 4, u32::MAX] {
                let read_only = SlotError::ReadOnly { slot };
                assert_eq!(heap.mem.set_header(slot, &header_for(9)), Err(read_only));
                for part in [SlotPart::Payload, SlotPart::Metadata] {
                    for len in [0, 13, u32::MAX] {
                        assert_eq!(heap.mem.part_mut(slot, part, len), Err(read_only));
                    }
                }
            }
            assert_eq!(heap.mem.header(3).unwrap(), SlotHeader::default());
            assert_eq!(heap.mem.part(3, SlotPart::Metadata, 13).unwrap(), [0; 13]);
            assert!(heap.bytes().iter().all(|&b| b == 0), "nothing was written");
        }

        #[test]
        fn slot_memory_accepts_longer_memory() {
            let len = SMALL.region_len().unwrap() + 4096;
            let mut heap = HeapSlots::with_len(SMALL, len, true);
            heap.mem
                .part_mut(3, SlotPart::Metadata, 13)
                .unwrap()
                .fill(7);
            let end = 3 * SMALL.slot_stride() as usize + SMALL.metadata_offset() as usize + 13;
            assert!(heap.bytes()[end..].iter().all(|&b| b == 0));
            assert_eq!(heap.bytes()[end - 13..end], [7; 13]);
        }

        #[test]
        #[should_panic = "shorter than the layout"]
        fn slot_memory_rejects_short_memory() {
            HeapSlots::with_len(SMALL, SMALL.region_len().unwrap() - 1, true);
        }

        #[test]
        #[should_panic = "not aligned to 64 bytes"]
        fn slot_memory_rejects_misaligned_memory() {
            HeapSlots::with_skew(SMALL, SMALL.region_len().unwrap() + 64, 8, true);
        }

        #[test]
        fn pool_types_stay_send_and_sync() {
            fn send_sync<T: Send + Sync>() {}
            send_sync::<Pool>();
            send_sync::<PoolView>();
        }
    }
}
