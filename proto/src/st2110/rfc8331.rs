//! SMPTE ST 2110-40 ancillary data: SMPTE ST 291-1 ANC packets in the RTP payload of RFC 8331
//! (`a=rtpmap:<pt> smpte291/90000`).
//!
//! # Payload layout
//!
//! After the RTP header, an 8-byte payload header, big-endian:
//!
//! | bits | field | meaning |
//! |------|-------|---------|
//! | 16   | Extended Sequence Number | high 16 bits of the 32-bit sequence number |
//! | 16   | Length | octets of ANC data after this header (all ANC packets, padding included) |
//! | 8    | ANC_Count | ANC packets in this RTP packet (0: none, e.g. a lone marker packet) |
//! | 2    | F | 00 progressive or unspecified, 01 invalid, 10 first field, 11 second field |
//! | 22   | reserved | zero |
//!
//! Then `ANC_Count` ANC packets, each starting on a 32-bit boundary:
//!
//! | bits | field | meaning |
//! |------|-------|---------|
//! | 1    | C | 1: the colour-difference data stream; 0: luma, or no specific stream |
//! | 11   | Line_Number | 0x7FF: no specific line |
//! | 12   | Horizontal_Offset | in samples from SAV; 0xFFF: no specific position |
//! | 1    | S | StreamNum is meaningful |
//! | 7    | StreamNum | source data stream number (link of a multi-link interface) |
//! | 10   | DID | data identifier |
//! | 10   | SDID | secondary data identifier (or DBN) |
//! | 10   | Data_Count | number of user data words in bits 0–7 |
//! | 10 × n | User_Data_Words | as ST 291-1 carries them |
//! | 10   | Checksum_Word | |
//! | 0–31 | word_align | zero bits up to the next 32-bit boundary |
//!
//! The 10-bit words follow one another without gaps, most significant bit first. DID, SDID and
//! Data_Count carry ST 291 parity: bits 0–7 the value, bit 8 its even parity (set when bits 0–7
//! hold an odd number of ones), bit 9 the inverse of bit 8 ([`parity10`]). The checksum word is
//! the 9-bit sum of bits 0–8 of DID, SDID, Data_Count and every user data word, with bit 9 the
//! inverse of bit 8 ([`checksum`]). User data words are carried as given: their parity is the
//! application's (ST 291 allows 9-bit data).
//!
//! [`Packet`] is the checked view over a received payload; [`Packet::iter`] yields borrowing
//! [`Anc`] views; [`emit`] writes a payload from [`AncRepr`]s.

/// Bytes of the payload header before the first ANC packet.
pub const HEADER_LEN: usize = 8;

/// Most user data words in one ANC packet.
pub const MAX_UDW: usize = 255;

/// Most ANC packets in one RTP payload.
pub const MAX_ANC: usize = 255;

/// Line_Number meaning "without a specific line".
pub const LINE_UNSPECIFIED: u16 = 0x7FF;

/// Horizontal_Offset meaning "without a specific horizontal position".
pub const HORIZONTAL_OFFSET_UNSPECIFIED: u16 = 0xFFF;

/// `F` value: progressive, or no field specified.
pub const FIELD_PROGRESSIVE: u8 = 0b00;

/// `F` value: the first field of an interlaced frame.
pub const FIELD_FIRST: u8 = 0b10;

/// `F` value: the second field of an interlaced frame.
pub const FIELD_SECOND: u8 = 0b11;

/// The 10-bit ST 291 word for an 8-bit value: bit 8 the even parity of bits 0–7 (set when they
/// hold an odd number of ones), bit 9 the inverse of bit 8.
pub const fn parity10(value: u8) -> u16 {
    let b8 = (value.count_ones() & 1) as u16;
    value as u16 | (b8 << 8) | ((b8 ^ 1) << 9)
}

/// The ST 291 checksum word over `words` (DID, SDID, Data_Count, then the user data words):
/// the sum of their bits 0–8 modulo 512, with bit 9 the inverse of bit 8.
pub fn checksum<I: IntoIterator<Item = u16>>(words: I) -> u16 {
    let sum = words
        .into_iter()
        .fold(0u16, |acc, w| acc.wrapping_add(w & 0x1FF))
        & 0x1FF;
    sum | ((!sum >> 8 & 1) << 9)
}

/// Bytes one ANC packet with `udw_count` user data words takes on the wire: the 32-bit header,
/// `udw_count + 4` ten-bit words, padded to a 32-bit boundary.
pub const fn anc_len(udw_count: usize) -> usize {
    (32 + 10 * (udw_count + 4)).div_ceil(32) * 4
}

/// Which parity-protected word of an ANC packet is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Word {
    /// The data identifier.
    Did,
    /// The secondary data identifier.
    Sdid,
    /// The data count.
    DataCount,
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Did => "DID",
            Self::Sdid => "SDID",
            Self::DataCount => "Data_Count",
        })
    }
}

/// What is wrong with a received payload (data path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AncError {
    /// The payload is shorter than the 8-byte payload header.
    #[error("ANC payload of {len} bytes is shorter than its 8-byte header")]
    Truncated {
        /// Bytes in the payload.
        len: usize,
    },
    /// The Length field announces more bytes than the payload holds.
    #[error("ANC Length field says {length} bytes but only {available} follow the header")]
    LengthExceedsPayload {
        /// The Length field.
        length: u16,
        /// Bytes after the payload header.
        available: usize,
    },
    /// ANC packet `index` runs past the Length field: ANC_Count is too large or a Data_Count
    /// is wrong.
    #[error(
        "ANC packet {index} of {count} does not fit the {length} bytes the Length field gives \
         (ANC_Count too large, or a wrong Data_Count)"
    )]
    AncTruncated {
        /// Index of the packet, from 0.
        index: u8,
        /// ANC_Count.
        count: u8,
        /// The Length field.
        length: u16,
    },
    /// The ANC packets take fewer bytes than the Length field gives.
    #[error("ANC Length field says {length} bytes but the {count} ANC packets take {used}")]
    LengthMismatch {
        /// The Length field.
        length: u16,
        /// Bytes the packets take.
        used: usize,
        /// ANC_Count.
        count: u8,
    },
    /// Bits 8–9 of DID, SDID or Data_Count are not the parity of bits 0–7.
    #[error("bad parity on {word} (word {value:#05x}) of ANC packet {index}")]
    Parity {
        /// Index of the ANC packet.
        index: u8,
        /// Which word.
        word: Word,
        /// The 10-bit word as received.
        value: u16,
    },
    /// The checksum word does not match the words it covers.
    #[error(
        "checksum mismatch in ANC packet {index}: computed {expected:#05x}, carried {found:#05x}"
    )]
    Checksum {
        /// Index of the ANC packet.
        index: u8,
        /// The checksum computed over the packet.
        expected: u16,
        /// The checksum word carried.
        found: u16,
    },
}

/// Why a payload could not be written (data path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// More than 255 ANC packets.
    #[error("{count} ANC packets do not fit one RTP payload; ANC_Count allows 255")]
    TooManyPackets {
        /// Packets given.
        count: usize,
    },
    /// More than 255 user data words in one ANC packet.
    #[error("ANC packet {index} has {count} user data words; Data_Count allows 255")]
    TooManyWords {
        /// Index of the ANC packet.
        index: usize,
        /// Words given.
        count: usize,
    },
    /// A user data word wider than 10 bits.
    #[error("user data word {word} of ANC packet {index} is {value:#x}, wider than 10 bits")]
    WordRange {
        /// Index of the ANC packet.
        index: usize,
        /// Index of the word.
        word: usize,
        /// The value given.
        value: u16,
    },
    /// A line number wider than 11 bits.
    #[error("line {line} of ANC packet {index} exceeds the 11-bit Line_Number (max 2047)")]
    Line {
        /// Index of the ANC packet.
        index: usize,
        /// The value given.
        line: u16,
    },
    /// A horizontal offset wider than 12 bits.
    #[error("horizontal offset {offset} of ANC packet {index} exceeds 12 bits (max 4095)")]
    HorizontalOffset {
        /// Index of the ANC packet.
        index: usize,
        /// The value given.
        offset: u16,
    },
    /// A stream number wider than 7 bits.
    #[error("stream number {stream_num} of ANC packet {index} exceeds 7 bits (max 127)")]
    StreamNum {
        /// Index of the ANC packet.
        index: usize,
        /// The value given.
        stream_num: u8,
    },
    /// An `F` value other than 0b00, 0b10, 0b11.
    #[error("field value {0} is not valid; use 0 (progressive), 2 (first field) or 3 (second)")]
    Field(u8),
    /// The ANC data exceeds the 16-bit Length field.
    #[error("{length} bytes of ANC data exceed the 16-bit Length field (65535)")]
    LengthOverflow {
        /// Bytes of ANC data.
        length: usize,
    },
    /// The output buffer is too small.
    #[error("the ANC payload needs {needed} bytes but the buffer holds {available}")]
    BufferTooSmall {
        /// Bytes the payload needs.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
}

/// Reads the 10-bit word starting `bit` bits into `data` (bits past the end read as 0).
fn read10(data: &[u8], bit: usize) -> u16 {
    let at = |k: usize| u32::from(data.get(bit / 8 + k).copied().unwrap_or(0));
    let window = (at(0) << 16) | (at(1) << 8) | at(2);
    ((window >> (14 - bit % 8)) & 0x3FF) as u16
}

/// ORs the 10-bit `word` into `data` starting `bit` bits in (the bits must be zero).
fn write10(data: &mut [u8], bit: usize, word: u16) {
    let window = u32::from(word & 0x3FF) << (14 - bit % 8);
    for (k, byte) in window.to_be_bytes()[1..].iter().enumerate() {
        if let Some(d) = data.get_mut(bit / 8 + k) {
            *d |= byte;
        }
    }
}

/// A checked view over one RFC 8331 RTP payload (the bytes after the RTP header).
#[derive(Debug, Clone)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it. Accessors panic if it is shorter than the header;
    /// [`Packet::anc_data`] panics if it is shorter than the Length field says.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, AncError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the header and the Length field's bytes (bytes after them
    /// are ignored).
    pub fn check_len(&self) -> Result<(), AncError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(AncError::Truncated { len });
        }
        let available = len - HEADER_LEN;
        if usize::from(self.length()) > available {
            return Err(AncError::LengthExceedsPayload {
                length: self.length(),
                available,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Extended Sequence Number: the high 16 bits of the 32-bit RTP sequence number.
    pub fn ext_seq(&self) -> u16 {
        self.u16_at(0)
    }

    /// Length: bytes of ANC data after the header.
    pub fn length(&self) -> u16 {
        self.u16_at(2)
    }

    /// ANC_Count: ANC packets carried.
    pub fn anc_count(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    /// `F`: [`FIELD_PROGRESSIVE`], 0b01 (invalid), [`FIELD_FIRST`] or [`FIELD_SECOND`].
    pub fn field(&self) -> u8 {
        self.buffer.as_ref()[5] >> 6
    }

    /// The ANC data: the Length field's bytes after the header.
    pub fn anc_data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.length())]
    }

    /// The ANC packets. Each item is a view, or the error that ends the walk: an ANC packet
    /// running past Length, or (after the last packet) Length not matching the packets.
    pub fn iter(&self) -> AncIter<'_> {
        AncIter {
            data: self.anc_data(),
            pos: 0,
            index: 0,
            count: self.anc_count(),
            length: self.length(),
            done: false,
        }
    }

    /// Walks every ANC packet and checks its parity and checksum, and that ANC_Count and Length
    /// agree with the packets.
    pub fn check(&self) -> Result<(), AncError> {
        self.iter().try_for_each(|anc| anc?.check())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Extended Sequence Number.
    pub fn set_ext_seq(&mut self, value: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets Length.
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets ANC_Count.
    pub fn set_anc_count(&mut self, value: u8) {
        self.buffer.as_mut()[4] = value;
    }

    /// Sets `F` (low two bits of `field`) and clears the reserved bits.
    pub fn set_field(&mut self, field: u8) {
        self.buffer.as_mut()[5..8].copy_from_slice(&[(field & 3) << 6, 0, 0]);
    }
}

/// Iterator over the ANC packets of a [`Packet`]; see [`Packet::iter`].
#[derive(Debug, Clone)]
pub struct AncIter<'a> {
    data: &'a [u8],
    pos: usize,
    index: u8,
    count: u8,
    length: u16,
    done: bool,
}

impl<'a> AncIter<'a> {
    fn fail(&mut self, error: AncError) -> Option<Result<Anc<'a>, AncError>> {
        self.done = true;
        Some(Err(error))
    }
}

impl<'a> Iterator for AncIter<'a> {
    type Item = Result<Anc<'a>, AncError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.count {
            self.done = true;
            return (self.pos != self.data.len()).then_some(Err(AncError::LengthMismatch {
                length: self.length,
                used: self.pos,
                count: self.count,
            }));
        }
        let rest = &self.data[self.pos..];
        let truncated = AncError::AncTruncated {
            index: self.index,
            count: self.count,
            length: self.length,
        };
        // The header and DID, SDID, Data_Count end within the first 8 bytes.
        if rest.len() < 8 {
            return self.fail(truncated);
        }
        let len = anc_len(usize::from(read10(rest, 32 + 20) as u8));
        let Some(bytes) = rest.get(..len) else {
            return self.fail(truncated);
        };
        let anc = Anc {
            bytes,
            index: self.index,
        };
        self.pos += len;
        self.index += 1;
        Some(Ok(anc))
    }
}

/// A borrowed view over one ANC packet inside a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anc<'a> {
    bytes: &'a [u8],
    index: u8,
}

impl<'a> Anc<'a> {
    fn header(&self) -> u32 {
        let b = self.bytes;
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    fn word(&self, k: usize) -> u16 {
        read10(self.bytes, 32 + 10 * k)
    }

    /// Position of this packet in its payload, from 0.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Bytes it takes, padding included.
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    /// Its bytes, padding included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// `C`: carried in the colour-difference data stream.
    pub fn c(&self) -> bool {
        self.header() >> 31 != 0
    }

    /// Line_Number (11 bits).
    pub fn line(&self) -> u16 {
        ((self.header() >> 20) & 0x7FF) as u16
    }

    /// Horizontal_Offset (12 bits).
    pub fn horizontal_offset(&self) -> u16 {
        ((self.header() >> 8) & 0xFFF) as u16
    }

    /// `S`: StreamNum is meaningful.
    pub fn s(&self) -> bool {
        self.header() & 0x80 != 0
    }

    /// StreamNum (7 bits).
    pub fn stream_num(&self) -> u8 {
        (self.header() & 0x7F) as u8
    }

    /// The DID word, parity bits included.
    pub fn did_word(&self) -> u16 {
        self.word(0)
    }

    /// The SDID word, parity bits included.
    pub fn sdid_word(&self) -> u16 {
        self.word(1)
    }

    /// The Data_Count word, parity bits included.
    pub fn data_count_word(&self) -> u16 {
        self.word(2)
    }

    /// The checksum word.
    pub fn checksum_word(&self) -> u16 {
        self.word(3 + usize::from(self.data_count()))
    }

    /// DID (bits 0–7).
    pub fn did(&self) -> u8 {
        self.did_word() as u8
    }

    /// SDID (bits 0–7).
    pub fn sdid(&self) -> u8 {
        self.sdid_word() as u8
    }

    /// Number of user data words (bits 0–7 of Data_Count).
    pub fn data_count(&self) -> u8 {
        self.data_count_word() as u8
    }

    /// User data word `i` (10 bits).
    ///
    /// # Panics
    /// When `i >= data_count()`.
    pub fn udw(&self, i: usize) -> u16 {
        let count = usize::from(self.data_count());
        assert!(i < count, "user data word {i} of {count}");
        self.word(3 + i)
    }

    /// The user data words in order.
    pub fn udws(&self) -> impl Iterator<Item = u16> + 'a {
        let anc = *self;
        (0..usize::from(self.data_count())).map(move |i| anc.word(3 + i))
    }

    /// Copies the user data words into `out` (as many as fit); returns how many there are.
    pub fn read_udws(&self, out: &mut [u16]) -> usize {
        for (dst, w) in out.iter_mut().zip(self.udws()) {
            *dst = w;
        }
        usize::from(self.data_count())
    }

    /// The packet as an [`AncRepr`] whose user data lives in `scratch`. DID and SDID lose their
    /// parity bits ([`emit`] recomputes them).
    pub fn repr<'b>(&self, scratch: &'b mut [u16; MAX_UDW]) -> AncRepr<'b> {
        let n = self.read_udws(scratch);
        AncRepr {
            c: self.c(),
            line: self.line(),
            horizontal_offset: self.horizontal_offset(),
            s: self.s(),
            stream_num: self.stream_num(),
            did: self.did(),
            sdid: self.sdid(),
            user_data: &scratch[..n],
        }
    }

    /// Checks the parity of DID, SDID and Data_Count, then the checksum word.
    pub fn check(&self) -> Result<(), AncError> {
        let words = [
            (Word::Did, self.did_word()),
            (Word::Sdid, self.sdid_word()),
            (Word::DataCount, self.data_count_word()),
        ];
        for (word, value) in words {
            if value != parity10(value as u8) {
                return Err(AncError::Parity {
                    index: self.index,
                    word,
                    value,
                });
            }
        }
        let expected = checksum(words.iter().map(|(_, w)| *w).chain(self.udws()));
        let found = self.checksum_word();
        if expected != found {
            return Err(AncError::Checksum {
                index: self.index,
                expected,
                found,
            });
        }
        Ok(())
    }
}

/// One ANC packet to [`emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AncRepr<'a> {
    /// `C`: carried in the colour-difference data stream.
    pub c: bool,
    /// Line_Number, at most 0x7FF ([`LINE_UNSPECIFIED`]).
    pub line: u16,
    /// Horizontal_Offset, at most 0xFFF ([`HORIZONTAL_OFFSET_UNSPECIFIED`]).
    pub horizontal_offset: u16,
    /// `S`: `stream_num` is meaningful.
    pub s: bool,
    /// StreamNum, at most 127.
    pub stream_num: u8,
    /// DID; its parity bits are added on the wire.
    pub did: u8,
    /// SDID; its parity bits are added on the wire.
    pub sdid: u8,
    /// User data words, 10 bits each, at most 255 of them, carried as given.
    pub user_data: &'a [u16],
}

impl AncRepr<'_> {
    /// Bytes it takes on the wire, padding included.
    pub fn wire_len(&self) -> usize {
        anc_len(self.user_data.len())
    }

    fn validate(&self, index: usize) -> Result<(), EmitError> {
        if self.user_data.len() > MAX_UDW {
            return Err(EmitError::TooManyWords {
                index,
                count: self.user_data.len(),
            });
        }
        if let Some((word, &value)) = self.user_data.iter().enumerate().find(|(_, w)| **w > 0x3FF) {
            return Err(EmitError::WordRange { index, word, value });
        }
        if self.line > 0x7FF {
            return Err(EmitError::Line {
                index,
                line: self.line,
            });
        }
        if self.horizontal_offset > 0xFFF {
            return Err(EmitError::HorizontalOffset {
                index,
                offset: self.horizontal_offset,
            });
        }
        if self.stream_num > 0x7F {
            return Err(EmitError::StreamNum {
                index,
                stream_num: self.stream_num,
            });
        }
        Ok(())
    }

    /// Writes the packet into `out` (exactly `wire_len()` bytes, already zeroed).
    fn write(&self, out: &mut [u8]) {
        let header = (u32::from(self.c) << 31)
            | (u32::from(self.line) << 20)
            | (u32::from(self.horizontal_offset) << 8)
            | (u32::from(self.s) << 7)
            | u32::from(self.stream_num);
        out[..4].copy_from_slice(&header.to_be_bytes());
        let head = [
            parity10(self.did),
            parity10(self.sdid),
            parity10(self.user_data.len() as u8),
        ];
        let sum = checksum(head.iter().chain(self.user_data).copied());
        let words = head.iter().chain(self.user_data).chain([&sum]);
        for (k, &w) in words.enumerate() {
            write10(out, 32 + 10 * k, w);
        }
    }
}

/// Bytes [`emit`] writes for `packets`: the header plus every packet's [`AncRepr::wire_len`].
pub fn emitted_len(packets: &[AncRepr<'_>]) -> usize {
    HEADER_LEN + packets.iter().map(AncRepr::wire_len).sum::<usize>()
}

/// Writes an RTP payload carrying `packets` into `out`: Extended Sequence Number `ext_seq_hi`,
/// `F` = `field` ([`FIELD_PROGRESSIVE`], [`FIELD_FIRST`], [`FIELD_SECOND`]), DID, SDID and
/// Data_Count with parity, checksums, zero padding and reserved bits. Returns the bytes written;
/// nothing is written on error.
pub fn emit(
    packets: &[AncRepr<'_>],
    field: u8,
    ext_seq_hi: u16,
    out: &mut [u8],
) -> Result<usize, EmitError> {
    if packets.len() > MAX_ANC {
        return Err(EmitError::TooManyPackets {
            count: packets.len(),
        });
    }
    if field == 1 || field > 3 {
        return Err(EmitError::Field(field));
    }
    for (index, p) in packets.iter().enumerate() {
        p.validate(index)?;
    }
    let needed = emitted_len(packets);
    let length = u16::try_from(needed - HEADER_LEN).map_err(|_| EmitError::LengthOverflow {
        length: needed - HEADER_LEN,
    })?;
    let Some(out) = out.get_mut(..needed) else {
        return Err(EmitError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    };
    out.fill(0);
    let mut header = Packet::new_unchecked(&mut *out);
    header.set_ext_seq(ext_seq_hi);
    header.set_length(length);
    header.set_anc_count(packets.len() as u8);
    header.set_field(field);
    let mut at = HEADER_LEN;
    for p in packets {
        p.write(&mut out[at..at + p.wire_len()]);
        at += p.wire_len();
    }
    Ok(needed)
}

/// Fuzz entry point: walks the bytes as a payload (views must stay inside the Length field's
/// bytes and agree with [`anc_len`]), then re-emits what parsed and parses that again: the
/// fields and user data must survive, and the re-emitted payload must pass [`Packet::check`].
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let mut words: Vec<Vec<u16>> = Vec::new();
    let mut views = Vec::new();
    let mut clean = true;
    for item in packet.iter() {
        match item {
            Ok(anc) => {
                assert_eq!(anc.wire_len(), anc_len(usize::from(anc.data_count())));
                assert_eq!(anc.udws().count(), usize::from(anc.data_count()));
                let _ = anc.check();
                words.push(anc.udws().collect());
                views.push(anc);
            }
            Err(_) => clean = false,
        }
    }
    assert!(views.len() <= usize::from(packet.anc_count()));
    let reprs: Vec<AncRepr<'_>> = views
        .iter()
        .zip(&words)
        .map(|(anc, udw)| AncRepr {
            c: anc.c(),
            line: anc.line(),
            horizontal_offset: anc.horizontal_offset(),
            s: anc.s(),
            stream_num: anc.stream_num(),
            did: anc.did(),
            sdid: anc.sdid(),
            user_data: udw,
        })
        .collect();
    let field = if packet.field() == 1 {
        0
    } else {
        packet.field()
    };
    let mut out = vec![0u8; emitted_len(&reprs)];
    let n = emit(&reprs, field, packet.ext_seq(), &mut out).expect("parsed packets re-emit");
    if clean {
        assert_eq!(n, HEADER_LEN + usize::from(packet.length()));
    }
    let again = Packet::new_checked(&out[..]).expect("emitted payloads are well formed");
    again.check().expect("emitted payloads check");
    assert_eq!(again.anc_count() as usize, reprs.len());
    for (anc, want) in again.iter().zip(&reprs) {
        let mut scratch = [0; MAX_UDW];
        assert_eq!(anc.expect("well formed").repr(&mut scratch), *want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ESN 0x0001, Length 16, ANC_Count 1, F = 10 (first field), then one CEA-708 caption ANC
    /// packet (SMPTE 334: DID 0x61, SDID 0x01) with the three user data words 0x96 0x69 0x55
    /// (the start of a caption distribution packet), 8-bit data with ST 291 parity.
    ///
    /// ANC header, C=1 Line=10 HOffset=0x123 S=1 StreamNum=5:
    ///   1 | 000 0000 1010 | 0001 0010 0011 | 1 | 000 0101
    ///   = 1000 0000  1010 0001  0010 0011  1000 0101 = 80 A1 23 85
    /// Words (parity10; bit 8 set when bits 0-7 hold an odd number of ones, bit 9 = !bit 8):
    ///   DID  0x61 = 0110 0001, 3 ones -> 01 0110 0001 = 0x161
    ///   SDID 0x01,             1 one  -> 01 0000 0001 = 0x101
    ///   DC   0x03,             2 ones -> 10 0000 0011 = 0x203
    ///   UDW  0x96 = 1001 0110, 4 ones -> 10 1001 0110 = 0x296
    ///   UDW  0x69 = 0110 1001, 4 ones -> 10 0110 1001 = 0x269
    ///   UDW  0x55 = 0101 0101, 4 ones -> 10 0101 0101 = 0x255
    ///   CS: 0x161 + 0x101 + 0x003 + 0x096 + 0x069 + 0x055 = 0x3B9; 9 bits: 0x1B9;
    ///       bit 8 = 1 so bit 9 = 0 -> 01 1011 1001 = 0x1B9
    /// The 70 bits, 8 at a time:
    ///   0101100001 0100000001 1000000011 1010010110 1001101001 1001010101 0110111001
    ///   01011000 01010000 00011000 00001110 10010110 10011010 01100101 01010110 111001|00
    ///   = 58 50 18 0E 96 9A 65 56 E4
    /// 32 + 70 = 102 bits pad to 128: three more zero bytes.
    const CAPTION: [u8; 24] = [
        0x00, 0x01, 0x00, 0x10, 0x01, 0x80, 0x00, 0x00, // payload header
        0x80, 0xA1, 0x23, 0x85, // C, Line, HOffset, S, StreamNum
        0x58, 0x50, 0x18, 0x0E, 0x96, 0x9A, 0x65, 0x56, 0xE4, 0x00, 0x00, 0x00,
    ];
    const CAPTION_UDW: [u16; 3] = [0x296, 0x269, 0x255];

    fn caption() -> AncRepr<'static> {
        AncRepr {
            c: true,
            line: 10,
            horizontal_offset: 0x123,
            s: true,
            stream_num: 5,
            did: 0x61,
            sdid: 0x01,
            user_data: &CAPTION_UDW,
        }
    }

    /// No user data: DID 0x41 SDID 0x05, no specific line or position.
    ///   header 0 | 111 1111 1111 | 1111 1111 1111 | 0 | 000 0000 = 7F FF FF 00
    ///   DID 0x41 (2 ones) 0x241, SDID 0x05 (2 ones) 0x205, DC 0 -> 0x200,
    ///   CS 0x041 + 0x005 + 0x000 = 0x046, bit 8 = 0 so bit 9 = 1 -> 0x246
    ///   1001000001 1000000101 1000000000 1001000110
    ///   = 10010000 01100000 01011000 00000010 01000110 = 90 60 58 02 46, then 3 zero bytes.
    const EMPTY_ANC: [u8; 12] = [
        0x7F, 0xFF, 0xFF, 0x00, 0x90, 0x60, 0x58, 0x02, 0x46, 0x00, 0x00, 0x00,
    ];

    fn empty_anc() -> AncRepr<'static> {
        AncRepr {
            c: false,
            line: LINE_UNSPECIFIED,
            horizontal_offset: HORIZONTAL_OFFSET_UNSPECIFIED,
            s: false,
            stream_num: 0,
            did: 0x41,
            sdid: 0x05,
            user_data: &[],
        }
    }

    /// Overwrites the 10-bit word `k` of the ANC packet starting at payload byte `at`.
    fn set_word(bytes: &mut [u8], at: usize, k: usize, word: u16) {
        let bit = 32 + 10 * k;
        for i in 0..10 {
            let b = bit + i;
            bytes[at + b / 8] &= !(0x80 >> (b % 8));
        }
        write10(&mut bytes[at..], bit, word);
    }

    #[test]
    fn parity_words_follow_st291() {
        for v in 0..=255u8 {
            let w = parity10(v);
            assert_eq!(w & 0xFF, u16::from(v));
            let b8 = (w >> 8) & 1;
            assert_eq!((u32::from(v).count_ones() + u32::from(b8)) % 2, 0, "{v:#x}");
            assert_eq!((w >> 9) & 1, b8 ^ 1, "{v:#x}");
        }
        assert_eq!(parity10(0x61), 0x161);
        assert_eq!(parity10(0x01), 0x101);
        assert_eq!(parity10(0x00), 0x200);
        assert_eq!(parity10(0xFF), 0x2FF);
        assert_eq!(parity10(0x80), 0x180);
    }

    #[test]
    fn checksums_sum_nine_bits_and_invert_bit_eight_into_nine() {
        assert_eq!(checksum([0x161, 0x101, 0x203, 0x296, 0x269, 0x255]), 0x1B9);
        assert_eq!(checksum([0x241, 0x205, 0x200]), 0x246);
        assert_eq!(checksum([]), 0x200);
        // Bit 9 of the inputs does not count; the sum wraps at 512.
        assert_eq!(checksum([0x3FF]), 0x1FF);
        assert_eq!(checksum([0x1FF, 0x001]), 0x200);
        assert_eq!(checksum([0x1FF, 0x1FF]), 0x1FE);
        // 255 * 0x1FF = 130305 = 254 * 512 + 257: 0x101, bit 8 set so bit 9 clear.
        assert_eq!(checksum(vec![0x1FF; 255]), 0x101);
    }

    #[test]
    fn anc_lengths_pad_to_32_bits() {
        let table = [
            (0, 12),
            (1, 12),
            (2, 12),
            (3, 16),
            (6, 20),
            (9, 24),
            (255, 328),
        ];
        for (udw, bytes) in table {
            assert_eq!(anc_len(udw), bytes, "{udw} words");
            assert_eq!((32 + 10 * (udw + 4)).div_ceil(32) * 4, bytes);
        }
    }

    #[test]
    fn caption_packet_emits_the_hand_derived_bytes() {
        let mut out = [0xEEu8; 40];
        let n = emit(&[caption()], FIELD_FIRST, 0x0001, &mut out).unwrap();
        assert_eq!(n, 24);
        assert_eq!(out[..n], CAPTION);
        assert_eq!(out[n..], [0xEE; 16], "nothing past the payload");
        assert_eq!(emitted_len(&[caption()]), 24);
        assert_eq!(caption().wire_len(), 16);
    }

    #[test]
    fn caption_packet_parses() {
        let p = Packet::new_checked(&CAPTION[..]).unwrap();
        assert_eq!(
            (p.ext_seq(), p.length(), p.anc_count(), p.field()),
            (1, 16, 1, FIELD_FIRST)
        );
        assert_eq!(p.anc_data(), &CAPTION[8..]);
        p.check().unwrap();
        let mut it = p.iter();
        let anc = it.next().unwrap().unwrap();
        assert!(it.next().is_none() && it.next().is_none());
        assert_eq!(
            (anc.index(), anc.wire_len(), anc.as_bytes()),
            (0, 16, &CAPTION[8..])
        );
        assert!(anc.c() && anc.s());
        assert_eq!(
            (anc.line(), anc.horizontal_offset(), anc.stream_num()),
            (10, 0x123, 5)
        );
        assert_eq!(
            (anc.did_word(), anc.sdid_word(), anc.data_count_word()),
            (0x161, 0x101, 0x203)
        );
        assert_eq!((anc.did(), anc.sdid(), anc.data_count()), (0x61, 0x01, 3));
        assert_eq!(anc.checksum_word(), 0x1B9);
        assert_eq!([anc.udw(0), anc.udw(1), anc.udw(2)], CAPTION_UDW);
        assert_eq!(anc.udws().collect::<Vec<_>>(), CAPTION_UDW);
        let mut two = [0u16; 2];
        assert_eq!(anc.read_udws(&mut two), 3);
        assert_eq!(two, [0x296, 0x269]);
        let mut scratch = [0; MAX_UDW];
        assert_eq!(anc.repr(&mut scratch), caption());
        assert_eq!(anc.check(), Ok(()));
    }

    #[test]
    #[should_panic(expected = "user data word 3 of 3")]
    fn reading_past_the_user_data_panics() {
        let p = Packet::new_checked(&CAPTION[..]).unwrap();
        let _ = p.iter().next().unwrap().unwrap().udw(3);
    }

    #[test]
    fn two_packets_one_without_user_data() {
        let mut out = [0u8; 64];
        let n = emit(
            &[caption(), empty_anc()],
            FIELD_PROGRESSIVE,
            0xBEEF,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 8 + 16 + 12);
        assert_eq!(out[..8], [0xBE, 0xEF, 0x00, 0x1C, 0x02, 0x00, 0x00, 0x00]);
        assert_eq!(out[8..24], CAPTION[8..]);
        assert_eq!(out[24..36], EMPTY_ANC);
        let p = Packet::new_checked(&out[..n]).unwrap();
        p.check().unwrap();
        let all: Vec<_> = p.iter().map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].index(), 1);
        assert_eq!((all[1].line(), all[1].horizontal_offset()), (0x7FF, 0xFFF));
        assert_eq!(
            (all[1].data_count_word(), all[1].checksum_word()),
            (0x200, 0x246)
        );
        assert_eq!(all[1].udws().count(), 0);
        let mut scratch = [0; MAX_UDW];
        assert_eq!(all[1].repr(&mut scratch), empty_anc());
    }

    #[test]
    fn a_payload_without_anc_packets() {
        let mut out = [0xFFu8; 8];
        assert_eq!(emit(&[], FIELD_SECOND, 7, &mut out), Ok(8));
        assert_eq!(out, [0x00, 0x07, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00]);
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!((p.anc_count(), p.length(), p.field()), (0, 0, FIELD_SECOND));
        assert!(p.iter().next().is_none());
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn two_hundred_fifty_five_user_data_words_round_trip() {
        let words: Vec<u16> = (0..255u16).map(|i| (i * 37 + 1) & 0x3FF).collect();
        let repr = AncRepr {
            user_data: &words,
            ..caption()
        };
        assert_eq!(repr.wire_len(), 328);
        let mut out = vec![0u8; 8 + 328];
        assert_eq!(emit(&[repr], FIELD_PROGRESSIVE, 0, &mut out), Ok(336));
        let p = Packet::new_checked(&out[..]).unwrap();
        p.check().unwrap();
        let anc = p.iter().next().unwrap().unwrap();
        assert_eq!(anc.data_count_word(), parity10(255));
        assert_eq!(anc.udws().collect::<Vec<_>>(), words);
        assert_eq!(anc.udw(254), words[254]);
        let too_many = vec![0u16; 256];
        assert_eq!(
            emit(
                &[AncRepr {
                    user_data: &too_many,
                    ..caption()
                }],
                0,
                0,
                &mut out
            ),
            Err(EmitError::TooManyWords {
                index: 0,
                count: 256
            })
        );
    }

    #[test]
    fn two_hundred_fifty_five_packets_fit_and_more_do_not() {
        let packets = vec![empty_anc(); 255];
        let mut out = vec![0u8; emitted_len(&packets)];
        assert_eq!(emit(&packets, 0, 0, &mut out), Ok(8 + 255 * 12));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!((p.anc_count(), p.length()), (255, 3060));
        assert_eq!(p.iter().filter(|a| a.is_ok()).count(), 255);
        p.check().unwrap();
        let packets = vec![empty_anc(); 256];
        assert_eq!(
            emit(&packets, 0, 0, &mut out),
            Err(EmitError::TooManyPackets { count: 256 })
        );
        // 255 packets of 255 words: 83640 bytes, past the 16-bit Length field.
        let words = [0u16; 255];
        let big = vec![
            AncRepr {
                user_data: &words,
                ..caption()
            };
            255
        ];
        assert_eq!(
            emit(&big, 0, 0, &mut out),
            Err(EmitError::LengthOverflow { length: 83_640 })
        );
    }

    #[test]
    fn emit_refuses_out_of_range_fields_and_writes_nothing() {
        let mut out = [0x77u8; 64];
        let cases = [
            (
                AncRepr {
                    line: 0x800,
                    ..caption()
                },
                EmitError::Line {
                    index: 1,
                    line: 0x800,
                },
            ),
            (
                AncRepr {
                    horizontal_offset: 0x1000,
                    ..caption()
                },
                EmitError::HorizontalOffset {
                    index: 1,
                    offset: 0x1000,
                },
            ),
            (
                AncRepr {
                    stream_num: 0x80,
                    ..caption()
                },
                EmitError::StreamNum {
                    index: 1,
                    stream_num: 0x80,
                },
            ),
            (
                AncRepr {
                    user_data: &[0x3FF, 0x400],
                    ..caption()
                },
                EmitError::WordRange {
                    index: 1,
                    word: 1,
                    value: 0x400,
                },
            ),
        ];
        for (bad, err) in cases {
            assert_eq!(emit(&[empty_anc(), bad], 0, 0, &mut out), Err(err));
        }
        assert_eq!(emit(&[caption()], 1, 0, &mut out), Err(EmitError::Field(1)));
        assert_eq!(emit(&[caption()], 4, 0, &mut out), Err(EmitError::Field(4)));
        assert_eq!(
            emit(&[caption()], 0, 0, &mut out[..23]),
            Err(EmitError::BufferTooSmall {
                needed: 24,
                available: 23
            })
        );
        assert_eq!(out, [0x77; 64]);
        // The widest values that are allowed.
        let max = AncRepr {
            line: 0x7FF,
            horizontal_offset: 0xFFF,
            stream_num: 0x7F,
            user_data: &[0x3FF],
            ..caption()
        };
        let n = emit(&[max], 0, 0, &mut out).unwrap();
        let p = Packet::new_checked(&out[..n]).unwrap();
        let anc = p.iter().next().unwrap().unwrap();
        assert_eq!(anc.as_bytes()[..4], [0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(anc.udw(0), 0x3FF);
        p.check().unwrap();
    }

    #[test]
    fn short_payloads_and_lengths_past_the_payload_are_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&CAPTION[..len]).unwrap_err(),
                AncError::Truncated { len }
            );
        }
        assert_eq!(
            Packet::new_checked(&CAPTION[..23]).unwrap_err(),
            AncError::LengthExceedsPayload {
                length: 16,
                available: 15
            }
        );
        // Bytes after Length are ignored.
        let mut longer = CAPTION.to_vec();
        longer.extend([1, 2, 3, 4]);
        let p = Packet::new_checked(&longer[..]).unwrap();
        assert_eq!(p.anc_data().len(), 16);
        p.check().unwrap();
    }

    #[test]
    fn counts_and_lengths_that_disagree_with_the_packets_are_named() {
        // ANC_Count 2 with one packet: the second does not fit.
        let mut b = CAPTION;
        b[4] = 2;
        let p = Packet::new_checked(&b[..]).unwrap();
        let items: Vec<_> = p.iter().collect();
        assert!(items[0].is_ok());
        assert_eq!(
            items[1],
            Err(AncError::AncTruncated {
                index: 1,
                count: 2,
                length: 16
            })
        );
        assert_eq!(items.len(), 2);
        assert_eq!(
            p.check(),
            Err(AncError::AncTruncated {
                index: 1,
                count: 2,
                length: 16
            })
        );
        // Length 20 with one 16-byte packet: 4 bytes unaccounted for.
        let mut b = CAPTION.to_vec();
        b.extend([0; 4]);
        b[3] = 20;
        let p = Packet::new_checked(&b[..]).unwrap();
        let err = AncError::LengthMismatch {
            length: 20,
            used: 16,
            count: 1,
        };
        assert_eq!(p.check(), Err(err));
        // ... and with ANC_Count 2 those 4 bytes are too short for a second packet.
        b[4] = 2;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.check(),
            Err(AncError::AncTruncated {
                index: 1,
                count: 2,
                length: 20
            })
        );
        // A Data_Count of 7 asks for a 20-byte packet in 16 bytes.
        let mut b = CAPTION;
        set_word(&mut b, 8, 2, parity10(7));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.check(),
            Err(AncError::AncTruncated {
                index: 0,
                count: 1,
                length: 16
            })
        );
        // Length 12, cutting the packet short.
        let mut b = CAPTION;
        b[3] = 12;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.check(),
            Err(AncError::AncTruncated {
                index: 0,
                count: 1,
                length: 12
            })
        );
        // ANC_Count 0 with data: a length mismatch.
        let mut b = CAPTION;
        b[4] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.check(),
            Err(AncError::LengthMismatch {
                length: 16,
                used: 0,
                count: 0
            })
        );
    }

    #[test]
    fn bad_parity_is_named_per_word() {
        // Bit 8 of DID is ANC bit 33 (payload byte 12, 0x40); of SDID bit 43 (byte 13, 0x10);
        // of Data_Count bit 53 (byte 14, 0x04).
        let cases = [
            (12, 0x40, Word::Did, 0x061),
            (13, 0x10, Word::Sdid, 0x001),
            (14, 0x04, Word::DataCount, 0x303),
        ];
        for (byte, mask, word, value) in cases {
            let mut b = CAPTION;
            b[byte] ^= mask;
            let p = Packet::new_checked(&b[..]).unwrap();
            let err = AncError::Parity {
                index: 0,
                word,
                value,
            };
            assert_eq!(p.check(), Err(err), "{word}");
            // Bit 9 alone is also checked.
            let mut b = CAPTION;
            b[byte] ^= mask << 1;
            let p = Packet::new_checked(&b[..]).unwrap();
            assert!(matches!(p.check(), Err(AncError::Parity { word: w, .. }) if w == word));
        }
    }

    #[test]
    fn checksum_mismatches_are_named() {
        // Bit 0 of the first user data word is ANC bit 71 (payload byte 16, 0x01): 0x296 -> 0x297.
        let mut b = CAPTION;
        b[16] ^= 0x01;
        let p = Packet::new_checked(&b[..]).unwrap();
        let err = AncError::Checksum {
            index: 0,
            expected: 0x1BA,
            found: 0x1B9,
        };
        assert_eq!(p.check(), Err(err));
        // Bit 9 of the checksum word is ANC bit 92 (payload byte 19, 0x08).
        let mut b = CAPTION;
        b[19] ^= 0x08;
        let p = Packet::new_checked(&b[..]).unwrap();
        let err = AncError::Checksum {
            index: 0,
            expected: 0x1B9,
            found: 0x3B9,
        };
        assert_eq!(p.check(), Err(err));
        // The second of two packets is named by its index.
        let mut out = [0u8; 36];
        emit(&[caption(), empty_anc()], 0, 0, &mut out).unwrap();
        out[8 + 16 + 8] ^= 0x40; // inside the checksum word of the second packet
        let p = Packet::new_checked(&out[..]).unwrap();
        assert!(matches!(
            p.check(),
            Err(AncError::Checksum { index: 1, .. })
        ));
    }

    #[test]
    fn header_setters_write_their_fields() {
        let mut b = [0xFFu8; 8];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_ext_seq(0x1234);
        p.set_length(0x0567);
        p.set_anc_count(9);
        p.set_field(FIELD_FIRST | 0xFC);
        assert_eq!(
            (p.ext_seq(), p.length(), p.anc_count(), p.field()),
            (0x1234, 0x567, 9, 2)
        );
        assert_eq!(
            p.into_inner(),
            &[0x12, 0x34, 0x05, 0x67, 0x09, 0x80, 0x00, 0x00]
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases: [(String, &[&str]); 6] = [
            (
                AncError::Parity {
                    index: 2,
                    word: Word::Did,
                    value: 0x61,
                }
                .to_string(),
                &["parity", "DID", "0x061", "2"],
            ),
            (
                AncError::Checksum {
                    index: 0,
                    expected: 0x1BA,
                    found: 0x1B9,
                }
                .to_string(),
                &["checksum", "0x1ba", "0x1b9"],
            ),
            (
                AncError::LengthMismatch {
                    length: 20,
                    used: 16,
                    count: 1,
                }
                .to_string(),
                &["Length", "20", "16"],
            ),
            (
                AncError::AncTruncated {
                    index: 1,
                    count: 2,
                    length: 16,
                }
                .to_string(),
                &["ANC_Count too large"],
            ),
            (
                EmitError::TooManyPackets { count: 256 }.to_string(),
                &["256", "255"],
            ),
            (
                EmitError::Field(1).to_string(),
                &["field value 1", "progressive"],
            ),
        ];
        for (msg, parts) in cases {
            for part in parts {
                assert!(msg.contains(part), "{msg:?} lacks {part:?}");
            }
        }
        assert_eq!(Word::DataCount.to_string(), "Data_Count");
    }

    fn arb_anc() -> impl Strategy<Value = (bool, u16, u16, bool, u8, u8, u8, Vec<u16>)> {
        (
            any::<bool>(),
            0u16..=0x7FF,
            0u16..=0xFFF,
            any::<bool>(),
            0u8..=0x7F,
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(0u16..=0x3FF, 0..=255),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_holds_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz(&data);
        }

        #[test]
        fn fuzz_holds_on_valid_payloads(
            ancs in proptest::collection::vec(arb_anc(), 0..6),
            flips in proptest::collection::vec(any::<u16>(), 0..3),
        ) {
            let reprs: Vec<_> = ancs
                .iter()
                .map(|(c, line, horizontal_offset, s, stream_num, did, sdid, udw)| AncRepr {
                    c: *c,
                    line: *line,
                    horizontal_offset: *horizontal_offset,
                    s: *s,
                    stream_num: *stream_num,
                    did: *did,
                    sdid: *sdid,
                    user_data: udw,
                })
                .collect();
            let mut out = vec![0u8; emitted_len(&reprs)];
            let n = emit(&reprs, FIELD_SECOND, 0x55AA, &mut out).unwrap();
            prop_assert_eq!(n, out.len());
            let p = Packet::new_checked(&out[..]).unwrap();
            prop_assert_eq!(p.check(), Ok(()));
            prop_assert_eq!(p.iter().count(), reprs.len());
            for (anc, want) in p.iter().zip(&reprs) {
                let mut scratch = [0; MAX_UDW];
                prop_assert_eq!(anc.unwrap().repr(&mut scratch), *want);
            }
            fuzz(&out);
            // A flipped bit anywhere must still never panic.
            for f in flips {
                let at = usize::from(f) % (out.len() * 8);
                out[at / 8] ^= 0x80 >> (at % 8);
            }
            fuzz(&out);
        }
    }
}
