//! RDMA links between engines: what crosses between the two engines of a link.
//!
//! - The handshake ([`LinkHello`], then [`LinkReply`]), protobuf messages from
//!   `proto/link.proto` in the SDK protocol's [framing](crate::frame), over a TCP connection
//!   from the sender to the receiver's link port.
//! - [`Credits`]: the receiver grants the sender free slots of its pool, with the memory key
//!   and the address of each, in small messages sent over the fabric (`fi_send`).
//! - [`Tag`]: the 64-bit remote completion data of each frame the sender writes
//!   (`fi_writedata`): which slot, the frame's sequence on the link and its payload length.
//!   The receiver treats every tag as untrusted and checks it against what it granted.
//!
//! Byte order on the fabric is little-endian.

pub use crate::protos::link::{LinkHello, LinkRefused, LinkReply, LinkWelcome, link_reply};

/// Version of the link protocol; a hello with another one is refused.
pub const VERSION: u32 = 1;
/// Most endpoints one link stripes its frames over.
pub const MAX_ENDPOINTS: usize = 8;
/// Bytes of one credit message on the fabric.
pub const CREDITS_LEN: usize = 256;
/// Credits one message carries at most.
pub const CREDITS_PER_MESSAGE: usize = (CREDITS_LEN - HEADER) / ENTRY;
/// Longest provider address accepted in a handshake.
pub const MAX_ADDRESS_LEN: usize = 512;

const MAGIC: u32 = u32::from_le_bytes(*b"MCMc");
const HEADER: usize = 16;
const ENTRY: usize = 16;

/// One free slot granted to the sender: write the frame at `addr` (in the receiver's key
/// space: an offset into its registered pool, or a virtual address) with memory key `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credit {
    /// The slot.
    pub slot: u32,
    /// Where the slot starts, as the sender's writes name it.
    pub addr: u64,
}

/// A batch of credits: `key` and up to [`CREDITS_PER_MESSAGE`] slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credits {
    /// Memory key of the receiver's pool.
    pub key: u64,
    count: usize,
    entries: [Credit; CREDITS_PER_MESSAGE],
}

/// Why a credit message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditsError {
    /// Shorter than its header or its entries.
    #[error("credit message of {len} bytes is truncated")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Not a credit message.
    #[error("credit message has a bad magic number {magic:#010x}")]
    Magic {
        /// What was there.
        magic: u32,
    },
    /// More entries than a message holds.
    #[error("credit message names {count} credits (allowed: 1..={CREDITS_PER_MESSAGE})")]
    Count {
        /// What it named.
        count: usize,
    },
}

impl Credits {
    /// An empty batch for pool key `key`.
    pub const fn new(key: u64) -> Self {
        Self {
            key,
            count: 0,
            entries: [Credit { slot: 0, addr: 0 }; CREDITS_PER_MESSAGE],
        }
    }

    /// Adds a credit; false when the batch is full.
    pub fn push(&mut self, credit: Credit) -> bool {
        if self.count == CREDITS_PER_MESSAGE {
            return false;
        }
        self.entries[self.count] = credit;
        self.count += 1;
        true
    }

    /// The credits.
    pub fn entries(&self) -> &[Credit] {
        &self.entries[..self.count]
    }

    /// Whether it holds no credit.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether it holds [`CREDITS_PER_MESSAGE`] credits.
    pub fn is_full(&self) -> bool {
        self.count == CREDITS_PER_MESSAGE
    }

    /// Writes the message into `out`; returns the bytes used.
    pub fn encode(&self, out: &mut [u8; CREDITS_LEN]) -> usize {
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(self.count as u32).to_le_bytes());
        out[8..16].copy_from_slice(&self.key.to_le_bytes());
        for (i, c) in self.entries().iter().enumerate() {
            let at = HEADER + i * ENTRY;
            out[at..at + 4].copy_from_slice(&c.slot.to_le_bytes());
            out[at + 4..at + 8].fill(0);
            out[at + 8..at + 16].copy_from_slice(&c.addr.to_le_bytes());
        }
        HEADER + self.count * ENTRY
    }

    /// Reads a message the peer sent (untrusted: every length is checked; the slots and
    /// addresses are the caller's to check against the welcome's geometry).
    pub fn decode(bytes: &[u8]) -> Result<Self, CreditsError> {
        let len = bytes.len();
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let quad = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if len < HEADER {
            return Err(CreditsError::Truncated { len });
        }
        if word(0) != MAGIC {
            return Err(CreditsError::Magic { magic: word(0) });
        }
        let count = word(4) as usize;
        if count == 0 || count > CREDITS_PER_MESSAGE {
            return Err(CreditsError::Count { count });
        }
        if len < HEADER + count * ENTRY {
            return Err(CreditsError::Truncated { len });
        }
        let mut credits = Self::new(quad(8));
        for i in 0..count {
            let at = HEADER + i * ENTRY;
            credits.push(Credit {
                slot: word(at),
                addr: quad(at + 8),
            });
        }
        Ok(credits)
    }
}

/// The remote completion data of one frame write: slot (bits 0..16), the frame's sequence on
/// the link modulo 2^16 (bits 16..32) and its payload length (bits 32..64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tag {
    /// Slot written (`< 65536`: pools have at most that many slots).
    pub slot: u16,
    /// Sequence of the frame on the link, modulo 2^16.
    pub seq: u16,
    /// Payload bytes of the frame.
    pub payload_len: u32,
}

impl Tag {
    /// The 64-bit completion data.
    pub const fn encode(self) -> u64 {
        self.slot as u64 | (self.seq as u64) << 16 | (self.payload_len as u64) << 32
    }

    /// Splits completion data into its fields (any value splits; checking is the caller's).
    pub const fn decode(data: u64) -> Self {
        Self {
            slot: data as u16,
            seq: (data >> 16) as u16,
            payload_len: (data >> 32) as u32,
        }
    }
}

/// Extends a 16-bit sequence `low` to the full sequence nearest `expected` (within 2^15 of
/// it): the receiver's reorder window is far smaller than that.
pub const fn extend_seq(expected: u64, low: u16) -> u64 {
    let delta = low.wrapping_sub(expected as u16) as i16;
    expected.wrapping_add(delta as i64 as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_round_trip_and_bad_messages_are_refused() {
        let mut c = Credits::new(0xdead_beef_0123_4567);
        for slot in 0..CREDITS_PER_MESSAGE as u32 {
            assert!(c.push(Credit {
                slot,
                addr: u64::from(slot) * 4096 + 7,
            }));
        }
        assert!(c.is_full() && !c.push(Credit::default()));
        let mut buf = [0u8; CREDITS_LEN];
        let n = c.encode(&mut buf);
        assert_eq!(n, CREDITS_LEN - (CREDITS_LEN - HEADER) % ENTRY);
        assert_eq!(Credits::decode(&buf[..n]), Ok(c));
        assert_eq!(
            Credits::decode(&buf[..n - 1]),
            Err(CreditsError::Truncated { len: n - 1 })
        );
        assert_eq!(
            Credits::decode(&buf[..3]),
            Err(CreditsError::Truncated { len: 3 })
        );
        let mut bad = buf;
        bad[0] ^= 1;
        assert!(matches!(
            Credits::decode(&bad),
            Err(CreditsError::Magic { .. })
        ));
        let mut bad = buf;
        bad[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Credits::decode(&bad), Err(CreditsError::Count { count: 0 }));
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Credits::decode(&bad),
            Err(CreditsError::Count { .. })
        ));
    }

    #[test]
    fn tags_split_into_their_fields() {
        let t = Tag {
            slot: 65_535,
            seq: 0x1234,
            payload_len: 5_184_000,
        };
        assert_eq!(Tag::decode(t.encode()), t);
        assert_eq!(
            Tag::decode(u64::MAX),
            Tag {
                slot: u16::MAX,
                seq: u16::MAX,
                payload_len: u32::MAX
            }
        );
    }

    #[test]
    fn sequences_extend_around_the_expected_one() {
        assert_eq!(extend_seq(0, 0), 0);
        assert_eq!(extend_seq(5, 7), 7);
        assert_eq!(extend_seq(65_535, 1), 65_537);
        assert_eq!(extend_seq(65_537, 65_535), 65_535);
        assert_eq!(extend_seq(1 << 20, 3), (1 << 20) + 3);
        assert_eq!(
            extend_seq(10, 9),
            9,
            "a sequence behind the expected one stays behind"
        );
    }
}
