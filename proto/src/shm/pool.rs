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
    /// The validated geometry and its offsets.
    layout: Layout,
    /// The memory; `region.len() >= layout.len`.
    region: Region,
    /// Free slot indices, a stack; capacity `slot_count`, so pushes never allocate.
    free: Vec<u32>,
    /// `allocated[i]` is true while slot `i` is out of the free list; length `slot_count`.
    allocated: Vec<bool>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.id)
            .field("name", &self.region.name())
            .field("geometry", &self.layout.geometry)
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
        let count = geometry.slot_count;
        Ok(Self {
            id,
            layout,
            region,
            free: (0..count).rev().collect(),
            allocated: vec![false; count as usize],
        })
    }

    /// Takes a free slot, lowest index first on a fresh pool; `None` when all are allocated.
    pub fn alloc(&mut self) -> Option<u32> {
        let slot = self.free.pop()?;
        debug_assert!(!self.allocated[slot as usize]);
        self.allocated[slot as usize] = true;
        Some(slot)
    }

    /// Returns an allocated slot to the free list. Never allocates.
    pub fn free(&mut self, slot: u32) -> Result<(), SlotError> {
        self.check_allocated(slot)?;
        self.allocated[slot as usize] = false;
        debug_assert!(
            self.free.len() < self.free.capacity(),
            "a free slot was allocated"
        );
        self.free.push(slot);
        Ok(())
    }

    /// Whether `slot` is allocated (false when out of range).
    pub fn is_allocated(&self, slot: u32) -> bool {
        self.allocated.get(slot as usize).copied().unwrap_or(false)
    }

    /// Number of free slots.
    pub fn available(&self) -> u32 {
        // At most slot_count, a u32.
        self.free.len() as u32
    }

    /// The pool's identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The pool's geometry.
    pub fn geometry(&self) -> PoolGeometry {
        self.layout.geometry
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
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: offset + 64 <= layout.len <= region.len(); slot offsets are multiples of 64
        // from a page-aligned base.
        Ok(unsafe { read_plain(self.region.as_ptr().add(offset)) })
    }

    /// Writes `slot`'s header; the slot must be allocated.
    pub fn set_header(&mut self, slot: u32, header: &SlotHeader) -> Result<(), SlotError> {
        self.check_allocated(slot)?;
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: in bounds and aligned as in `header`; &mut self means no reference into the
        // region is alive.
        unsafe { write_plain(self.region.as_ptr().add(offset), *header) };
        Ok(())
    }

    /// The whole payload area of an allocated slot.
    pub fn payload(&self, slot: u32) -> Result<&[u8], SlotError> {
        let capacity = self.layout.geometry.payload_capacity;
        self.part(slot, SlotPart::Payload, capacity)
    }

    /// The whole payload area of an allocated slot, writable.
    ///
    /// Sound while the slot is allocated and not lent to a peer: `&mut self` excludes every other
    /// reference into the pool from this process, and peers do not write a slot they do not hold
    /// (see [`Pool`]'s sharing rules).
    pub fn payload_mut(&mut self, slot: u32) -> Result<&mut [u8], SlotError> {
        let capacity = self.layout.geometry.payload_capacity;
        self.part_mut(slot, SlotPart::Payload, capacity)
    }

    /// The whole metadata area of an allocated slot.
    pub fn metadata(&self, slot: u32) -> Result<&[u8], SlotError> {
        let capacity = self.layout.geometry.metadata_capacity;
        self.part(slot, SlotPart::Metadata, capacity)
    }

    /// The whole metadata area of an allocated slot, writable; sound as for
    /// [`payload_mut`](Self::payload_mut).
    pub fn metadata_mut(&mut self, slot: u32) -> Result<&mut [u8], SlotError> {
        let capacity = self.layout.geometry.metadata_capacity;
        self.part_mut(slot, SlotPart::Metadata, capacity)
    }

    /// Fails unless `slot` is in range and allocated.
    fn check_allocated(&self, slot: u32) -> Result<(), SlotError> {
        self.layout.slot_offset(slot)?;
        if self.allocated[slot as usize] {
            return Ok(());
        }
        Err(SlotError::NotAllocated { slot })
    }

    /// `len` bytes of `part` of an allocated slot.
    fn part(&self, slot: u32, part: SlotPart, len: u32) -> Result<&[u8], SlotError> {
        self.check_allocated(slot)?;
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: offset + len lies within the slot, inside the live mapping, for as long as
        // &self; peers do not write an allocated slot they do not hold (see Pool).
        Ok(unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(offset), len) })
    }

    /// `len` bytes of `part` of an allocated slot, writable.
    fn part_mut(&mut self, slot: u32, part: SlotPart, len: u32) -> Result<&mut [u8], SlotError> {
        self.check_allocated(slot)?;
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: as in `part`, the mapping is read-write, and &mut self excludes every other
        // reference into it.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().add(offset), len) })
    }
}

/// A pool attached from an fd another process sent: every index and length is checked.
///
/// Slices it returns point into memory the owner shares: their contents are only stable while
/// the protocol lends the slot to this side; a reader must check any length it reads from them.
#[derive(Debug)]
pub struct PoolView {
    /// The validated geometry and its offsets.
    layout: Layout,
    /// The mapping, `layout.len` bytes.
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
        Ok(Self { layout, map })
    }

    /// The pool's geometry.
    pub fn geometry(&self) -> PoolGeometry {
        self.layout.geometry
    }

    /// How the view may be accessed.
    pub fn access(&self) -> Access {
        self.map.access()
    }

    /// Reads `slot`'s header (a volatile read; the fields are untrusted).
    pub fn header(&self, slot: u32) -> Result<SlotHeader, SlotError> {
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: offset + 64 <= layout.len == map.len(); 64-aligned from a page-aligned base.
        Ok(unsafe { read_plain(self.map.as_ptr().add(offset)) })
    }

    /// Writes `slot`'s header; needs a read-write view.
    pub fn set_header(&mut self, slot: u32, header: &SlotHeader) -> Result<(), SlotError> {
        self.check_writable(slot)?;
        let offset = self.layout.slot_offset(slot)?;
        // SAFETY: in bounds and aligned as in `header`, mapped writable (checked), and &mut self
        // means no reference into the mapping is alive.
        unsafe { write_plain(self.map.as_ptr().add(offset), *header) };
        Ok(())
    }

    /// The first `len` payload bytes of `slot`.
    pub fn payload(&self, slot: u32, len: u32) -> Result<&[u8], SlotError> {
        self.part(slot, SlotPart::Payload, len)
    }

    /// The first `len` payload bytes of `slot`, writable; needs a read-write view, and is sound
    /// while the protocol lends the slot to this side.
    pub fn payload_mut(&mut self, slot: u32, len: u32) -> Result<&mut [u8], SlotError> {
        self.part_mut(slot, SlotPart::Payload, len)
    }

    /// The first `len` metadata bytes of `slot`.
    pub fn metadata(&self, slot: u32, len: u32) -> Result<&[u8], SlotError> {
        self.part(slot, SlotPart::Metadata, len)
    }

    /// The first `len` metadata bytes of `slot`, writable; as for
    /// [`payload_mut`](Self::payload_mut).
    pub fn metadata_mut(&mut self, slot: u32, len: u32) -> Result<&mut [u8], SlotError> {
        self.part_mut(slot, SlotPart::Metadata, len)
    }

    /// Fails unless the view is read-write.
    fn check_writable(&self, slot: u32) -> Result<(), SlotError> {
        match self.map.access() {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(SlotError::ReadOnly { slot }),
        }
    }

    /// `len` bytes of `part` of `slot`, checked.
    fn part(&self, slot: u32, part: SlotPart, len: u32) -> Result<&[u8], SlotError> {
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: offset + len lies within the slot, inside the live mapping, for as long as
        // &self; the owner does not write a slot it lent to us.
        Ok(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) })
    }

    /// `len` bytes of `part` of `slot`, checked, writable.
    fn part_mut(&mut self, slot: u32, part: SlotPart, len: u32) -> Result<&mut [u8], SlotError> {
        self.check_writable(slot)?;
        let (offset, len) = self.layout.part(slot, part, len)?;
        // SAFETY: as in `part`, mapped writable (checked), and &mut self excludes every other
        // reference into the mapping.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(offset), len) })
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
        let capacity = pool.free.capacity();
        for _ in 0..3 {
            while pool.alloc().is_some() {}
            for slot in 0..4 {
                pool.free(slot).unwrap();
            }
            assert!(pool.free(0).is_err());
        }
        assert_eq!(pool.free.capacity(), capacity);
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
}
