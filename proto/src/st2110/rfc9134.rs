//! SMPTE ST 2110-22 compressed video with the JPEG XS payload format of RFC 9134, passthrough:
//! the application hands over one whole codestream per frame (per field when interlaced) and
//! receives the same bytes back; nothing here encodes or decodes JPEG XS.
//!
//! # Payload header
//!
//! Every RTP payload starts with 4 bytes, big-endian, most significant bit first:
//!
//! | bits  | field | meaning |
//! |-------|-------|---------|
//! | 31    | T     | transmission mode: 1 = packets sent in order (sequential), 0 = out of order allowed |
//! | 30    | K     | packetization mode: 0 = codestream, 1 = slice |
//! | 29    | L     | last packet of the packetization unit |
//! | 28–27 | I     | 00 progressive, 01 reserved, 10 first field, 11 second field |
//! | 26–22 | F     | frame counter, modulo 32, the same in every packet of a frame |
//! | 21–11 | SEP   | in codestream mode: incremented each time P wraps |
//! | 10–0  | P     | packet counter within the packetization unit, from 0, modulo 2048 |
//!
//! In codestream mode (the only mode [`Packetizer`] and [`Depacketizer`] handle) the
//! packetization unit is the whole codestream of a frame or field, `SEP:P` together count its
//! packets from 0 as one 22-bit number, and `L` is set on exactly the packet that carries the RTP
//! marker bit. RFC 9134 calls the unit a picture segment: the codestream preceded by its ISO/IEC
//! 21122-3 boxes when the sender has them; in passthrough the unit is whatever bytes the
//! application gives. In slice mode (`K = 1`) SEP numbers the slices and P the packets of each
//! slice; such packets parse here but are not reassembled. All packets of a frame share one RTP
//! timestamp (90 kHz clock).
//!
//! # SDP
//!
//! `a=rtpmap:<pt> jxsv/90000`, and an `a=fmtp:` line (written and parsed by [`super::sdp`])
//! carrying `packetmode` (0 codestream, 1 slice), `transmode` (1 sequential, 0 out of order),
//! `profile`, `level` and `sublevel` (of the JPEG XS codestream), `sampling`, `depth`, `width`,
//! `height`, `exactframerate`, `colorimetry` and `TCS` (as for ST 2110-20).

use std::ops::Range;

/// Bytes of the payload header.
pub const HEADER_LEN: usize = 4;

/// Packets one codestream can number before `SEP:P` wraps: 2^22.
pub const PACKET_INDEX_MODULUS: u32 = 1 << 22;

const INDEX_MASK: u32 = PACKET_INDEX_MODULUS - 1;
const T_BIT: u32 = 1 << 31;
const K_BIT: u32 = 1 << 30;
const L_BIT: u32 = 1 << 29;
const I_SHIFT: u32 = 27;
const F_SHIFT: u32 = 22;
const SEP_SHIFT: u32 = 11;
const COUNTER_MASK: u32 = 0x7FF;

/// Packetization mode (`K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketMode {
    /// `K = 0`: the codestream is cut into packets as a byte string.
    Codestream,
    /// `K = 1`: each packet carries data of one slice.
    Slice,
}

/// Interlace information (`I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interlace {
    /// `00`: a progressive frame.
    Progressive,
    /// `01`: reserved.
    Reserved,
    /// `10`: the first field of an interlaced frame.
    FirstField,
    /// `11`: the second field of an interlaced frame.
    SecondField,
}

impl Interlace {
    /// The 2-bit field value.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Progressive => 0,
            Self::Reserved => 1,
            Self::FirstField => 2,
            Self::SecondField => 3,
        }
    }

    /// The value of the low two bits of `bits`.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Progressive,
            1 => Self::Reserved,
            2 => Self::FirstField,
            _ => Self::SecondField,
        }
    }
}

/// Why a packet was refused (data path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The payload is shorter than the 4-byte payload header.
    #[error("JPEG XS payload of {len} bytes is shorter than its 4-byte header")]
    Truncated {
        /// Bytes in the payload.
        len: usize,
    },
    /// Slice packetization mode (`K = 1`), which is not reassembled.
    #[error("JPEG XS slice packetization mode (K=1) is not supported; only codestream mode (K=0)")]
    SliceMode,
    /// The interlace field holds the reserved value `01`.
    #[error("JPEG XS payload header has the reserved interlace value 01")]
    ReservedInterlace,
    /// The codestream is longer than the buffer it is reassembled into; nothing was written past
    /// the buffer, and the frame is dropped.
    #[error(
        "JPEG XS codestream needs at least {needed} bytes but the frame buffer holds {capacity}"
    )]
    BufferTooSmall {
        /// Bytes the codestream needs so far.
        needed: usize,
        /// Bytes in the buffer.
        capacity: usize,
    },
}

/// A view over one RTP payload: the payload header, then codestream bytes.
#[derive(Debug, Clone)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length. Accessors panic if it is shorter than 4 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, PacketError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the payload header.
    pub fn check_len(&self) -> Result<(), PacketError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated { len });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// `T`: packets are sent in order.
    pub fn sequential(&self) -> bool {
        self.word() & T_BIT != 0
    }

    /// `K`: the packetization mode.
    pub fn mode(&self) -> PacketMode {
        if self.word() & K_BIT == 0 {
            PacketMode::Codestream
        } else {
            PacketMode::Slice
        }
    }

    /// `L`: the last packet of the packetization unit.
    pub fn last(&self) -> bool {
        self.word() & L_BIT != 0
    }

    /// `I`: interlace information.
    pub fn interlace(&self) -> Interlace {
        Interlace::from_bits((self.word() >> I_SHIFT) as u8)
    }

    /// `F`: the frame counter, 0..32.
    pub fn frame_counter(&self) -> u8 {
        ((self.word() >> F_SHIFT) & 0x1F) as u8
    }

    /// `SEP`: 0..2048.
    pub fn sep_counter(&self) -> u16 {
        ((self.word() >> SEP_SHIFT) & COUNTER_MASK) as u16
    }

    /// `P`: 0..2048.
    pub fn packet_counter(&self) -> u16 {
        (self.word() & COUNTER_MASK) as u16
    }

    /// `SEP:P` as one 22-bit packet index (codestream mode).
    pub fn packet_index(&self) -> u32 {
        self.word() & INDEX_MASK
    }

    /// The codestream bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_word(&mut self, mask: u32, value: u32) {
        let word = (self.word() & !mask) | (value & mask);
        self.buffer.as_mut()[..HEADER_LEN].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets `T`.
    pub fn set_sequential(&mut self, sequential: bool) {
        self.set_word(T_BIT, if sequential { T_BIT } else { 0 });
    }

    /// Sets `K`.
    pub fn set_mode(&mut self, mode: PacketMode) {
        self.set_word(K_BIT, if mode == PacketMode::Slice { K_BIT } else { 0 });
    }

    /// Sets `L`.
    pub fn set_last(&mut self, last: bool) {
        self.set_word(L_BIT, if last { L_BIT } else { 0 });
    }

    /// Sets `I`.
    pub fn set_interlace(&mut self, interlace: Interlace) {
        self.set_word(3 << I_SHIFT, u32::from(interlace.bits()) << I_SHIFT);
    }

    /// Sets `F` to `counter` modulo 32.
    pub fn set_frame_counter(&mut self, counter: u8) {
        self.set_word(0x1F << F_SHIFT, u32::from(counter) << F_SHIFT);
    }

    /// Sets `SEP` to `counter` modulo 2048.
    pub fn set_sep_counter(&mut self, counter: u16) {
        self.set_word(COUNTER_MASK << SEP_SHIFT, u32::from(counter) << SEP_SHIFT);
    }

    /// Sets `P` to `counter` modulo 2048.
    pub fn set_packet_counter(&mut self, counter: u16) {
        self.set_word(COUNTER_MASK, u32::from(counter));
    }

    /// Sets `SEP:P` to `index` modulo 2^22.
    pub fn set_packet_index(&mut self, index: u32) {
        self.set_word(INDEX_MASK, index);
    }

    /// The codestream bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The payload header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// `T`: packets are sent in order.
    pub sequential: bool,
    /// `K`.
    pub mode: PacketMode,
    /// `L`: last packet of the packetization unit.
    pub last: bool,
    /// `I`; never [`Interlace::Reserved`] in a parsed header.
    pub interlace: Interlace,
    /// `F`, 0..32.
    pub frame_counter: u8,
    /// `SEP`, 0..2048.
    pub sep_counter: u16,
    /// `P`, 0..2048.
    pub packet_counter: u16,
}

impl Repr {
    /// Reads the header of `packet`; refuses the reserved interlace value.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, PacketError> {
        packet.check_len()?;
        if packet.interlace() == Interlace::Reserved {
            return Err(PacketError::ReservedInterlace);
        }
        Ok(Self {
            sequential: packet.sequential(),
            mode: packet.mode(),
            last: packet.last(),
            interlace: packet.interlace(),
            frame_counter: packet.frame_counter(),
            sep_counter: packet.sep_counter(),
            packet_counter: packet.packet_counter(),
        })
    }

    /// Bytes [`Repr::emit`] writes: [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// `SEP:P` as one 22-bit packet index.
    pub fn packet_index(&self) -> u32 {
        (u32::from(self.sep_counter & 0x7FF) << SEP_SHIFT) | u32::from(self.packet_counter & 0x7FF)
    }

    /// The 4 header bytes; counters are taken modulo their field sizes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let word = (if self.sequential { T_BIT } else { 0 })
            | (if self.mode == PacketMode::Slice {
                K_BIT
            } else {
                0
            })
            | (if self.last { L_BIT } else { 0 })
            | (u32::from(self.interlace.bits()) << I_SHIFT)
            | (u32::from(self.frame_counter & 0x1F) << F_SHIFT)
            | self.packet_index();
        word.to_be_bytes()
    }

    /// Writes the header into `packet`, leaving its payload alone.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.buffer.as_mut()[..HEADER_LEN].copy_from_slice(&self.to_bytes());
    }
}

/// Why a packetizer cannot be built (control path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketizerError {
    /// The payload size leaves no room for codestream bytes after the header.
    #[error(
        "a JPEG XS RTP payload of at most {max_payload} bytes leaves no room for data after the \
         4-byte payload header; allow at least 5 bytes (1448 fits a 1460-byte datagram)"
    )]
    PayloadTooSmall {
        /// The payload size asked for.
        max_payload: usize,
    },
}

/// Cuts a codestream into RTP payloads in codestream mode: every packet but the last carries
/// [`Packetizer::data_per_packet`] bytes; the last carries the rest, `L = 1` and the RTP marker.
/// It only computes headers and ranges; the caller copies (or gathers) the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packetizer {
    data_per_packet: usize,
    interlace: Interlace,
}

impl Packetizer {
    /// A packetizer for RTP payloads of at most `max_payload` bytes (header included), for
    /// progressive video.
    pub fn new(max_payload: usize) -> Result<Self, PacketizerError> {
        if max_payload <= HEADER_LEN {
            return Err(PacketizerError::PayloadTooSmall { max_payload });
        }
        Ok(Self {
            data_per_packet: max_payload - HEADER_LEN,
            interlace: Interlace::Progressive,
        })
    }

    /// The same packetizer writing `interlace` into `I` (one codestream per field).
    pub fn with_interlace(self, interlace: Interlace) -> Self {
        Self { interlace, ..self }
    }

    /// Codestream bytes in every packet but the last.
    pub fn data_per_packet(&self) -> usize {
        self.data_per_packet
    }

    /// Packets for a codestream of `len` bytes: `ceil(len / data_per_packet)`, 0 for none.
    pub fn packets(&self, len: usize) -> usize {
        len.div_ceil(self.data_per_packet)
    }

    /// Whether packet `index` of a `len`-byte codestream is the last (`L`, the RTP marker).
    pub fn is_last(&self, index: usize, len: usize) -> bool {
        index + 1 == self.packets(len)
    }

    /// The payload header of packet `index` of a `len`-byte codestream of frame number
    /// `frame_counter` (taken modulo 32). The packet index is taken modulo 2^22.
    pub fn header(&self, index: usize, len: usize, frame_counter: u32) -> [u8; HEADER_LEN] {
        debug_assert!(
            index < self.packets(len),
            "packet {index} of a {len}-byte codestream"
        );
        Repr {
            sequential: true,
            mode: PacketMode::Codestream,
            last: self.is_last(index, len),
            interlace: self.interlace,
            frame_counter: (frame_counter & 0x1F) as u8,
            sep_counter: ((index >> SEP_SHIFT) & 0x7FF) as u16,
            packet_counter: (index & 0x7FF) as u16,
        }
        .to_bytes()
    }

    /// The codestream bytes packet `index` of a `len`-byte codestream carries (empty past the
    /// end).
    pub fn data(&self, index: usize, len: usize) -> Range<usize> {
        let start = index.saturating_mul(self.data_per_packet).min(len);
        start..start.saturating_add(self.data_per_packet).min(len)
    }
}

/// One reassembled codestream (a frame, or a field when interlaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// RTP timestamp shared by its packets.
    pub timestamp: u32,
    /// `F` of its packets.
    pub frame_counter: u8,
    /// `I` of its packets.
    pub interlace: Interlace,
    /// Bytes written at the start of the buffer: the whole codestream when `complete`, else the
    /// part before the first missing packet.
    pub len: usize,
    /// Packets received for it.
    pub packets: u32,
    /// Packets known to be missing (gaps in `SEP:P`); packets lost after the last one received
    /// of an abandoned frame are not counted.
    pub missing: u32,
    /// Every packet arrived, in order, and fitted the buffer.
    pub complete: bool,
    /// The codestream did not fit the buffer.
    pub overflow: bool,
}

/// What one pushed packet did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The codestream this packet finished (it had the marker or `L`): `buf[..frame.len]`.
    pub frame: Option<FrameInfo>,
    /// A codestream given up because this packet belongs to another one (its last packet never
    /// came); its bytes in the buffer are being overwritten.
    pub abandoned: Option<FrameInfo>,
}

/// Counters kept by a [`Depacketizer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Packets pushed, refused ones included.
    pub packets: u64,
    /// Packets refused with an error.
    pub refused: u64,
    /// Codestreams finished complete.
    pub complete: u64,
    /// Codestreams finished incomplete (missing packets or overflow).
    pub incomplete: u64,
    /// Codestreams abandoned without their last packet.
    pub abandoned: u64,
    /// Packets known missing.
    pub missing: u64,
    /// Duplicate or late packets ignored.
    pub late: u64,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    info: FrameInfo,
    next_index: u32,
    /// No more bytes are written: a packet went missing or the buffer overflowed.
    broken: bool,
}

impl Unit {
    fn matches<T: AsRef<[u8]>>(&self, packet: &Packet<T>, timestamp: u32) -> bool {
        self.info.timestamp == timestamp
            && self.info.frame_counter == packet.frame_counter()
            && self.info.interlace == packet.interlace()
    }
}

/// Reassembles codestream-mode packets into a caller's buffer, one codestream at a time.
///
/// The caller passes the same buffer with every packet of a codestream; a codestream starts at
/// the buffer's first byte. A new RTP timestamp, frame counter or interlace value starts a new
/// codestream (abandoning an unfinished one); the marker bit or `L` finishes it. A gap in `SEP:P`
/// marks it incomplete, and no byte after the gap is written, so `buf[..len]` is always a true
/// prefix of the codestream. Nothing is ever written past the buffer.
#[derive(Debug, Clone, Default)]
pub struct Depacketizer {
    unit: Option<Unit>,
    /// Timestamp, frame counter and interlace of the codestream finished last: stray packets of
    /// it are ignored rather than starting a new one.
    finished: Option<(u32, u8, Interlace)>,
    stats: DepacketizerStats,
}

impl Depacketizer {
    /// A depacketizer waiting for its first packet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters so far.
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Whether a codestream is being reassembled.
    pub fn in_progress(&self) -> bool {
        self.unit.is_some()
    }

    /// Takes one RTP payload with its RTP marker bit and timestamp, writing its bytes into `buf`.
    ///
    /// Errors refuse this packet alone ([`PacketError::Truncated`], [`PacketError::SliceMode`],
    /// [`PacketError::ReservedInterlace`]), except [`PacketError::BufferTooSmall`], which is
    /// returned once per codestream, for the first packet that does not fit: the codestream is
    /// then finished by its last packet with `overflow` set (or ends at once when that packet was
    /// the last).
    pub fn push(
        &mut self,
        payload: &[u8],
        marker: bool,
        rtp_timestamp: u32,
        buf: &mut [u8],
    ) -> Result<Pushed, PacketError> {
        self.stats.packets += 1;
        let packet = self.accept(payload)?;
        let mut pushed = Pushed::default();
        let key = (rtp_timestamp, packet.frame_counter(), packet.interlace());
        let current = self.unit.filter(|u| u.matches(&packet, rtp_timestamp));
        let mut unit = match current {
            Some(unit) => unit,
            None if self.finished == Some(key) => {
                self.stats.late += 1;
                return Ok(pushed);
            }
            None => {
                pushed.abandoned = self.unit.take().map(|u| self.abandon(u));
                Self::start(&packet, rtp_timestamp)
            }
        };
        let ahead = packet.packet_index().wrapping_sub(unit.next_index) & INDEX_MASK;
        if ahead >= PACKET_INDEX_MODULUS / 2 {
            self.stats.late += 1;
            self.unit = Some(unit);
            return Ok(pushed);
        }
        if ahead > 0 {
            unit.info.missing += ahead;
            self.stats.missing += u64::from(ahead);
            unit.broken = true;
        }
        unit.info.packets += 1;
        unit.next_index = (packet.packet_index() + 1) & INDEX_MASK;
        let written = Self::write(&mut unit, packet.payload(), buf);
        if marker || packet.last() {
            self.unit = None;
            self.finished = Some(key);
            let info = self.finish(unit.info);
            written?;
            pushed.frame = Some(info);
        } else {
            self.unit = Some(unit);
            written?;
        }
        Ok(pushed)
    }

    fn accept<'a>(&mut self, payload: &'a [u8]) -> Result<Packet<&'a [u8]>, PacketError> {
        let checked = Packet::new_checked(payload).and_then(|p| match (p.mode(), p.interlace()) {
            (PacketMode::Slice, _) => Err(PacketError::SliceMode),
            (_, Interlace::Reserved) => Err(PacketError::ReservedInterlace),
            _ => Ok(p),
        });
        if checked.is_err() {
            self.stats.refused += 1;
        }
        checked
    }

    fn start<T: AsRef<[u8]>>(packet: &Packet<T>, timestamp: u32) -> Unit {
        Unit {
            info: FrameInfo {
                timestamp,
                frame_counter: packet.frame_counter(),
                interlace: packet.interlace(),
                len: 0,
                packets: 0,
                missing: 0,
                complete: false,
                overflow: false,
            },
            next_index: 0,
            broken: false,
        }
    }

    /// Appends `data` unless the unit is broken; overflow breaks it and is reported once.
    fn write(unit: &mut Unit, data: &[u8], buf: &mut [u8]) -> Result<(), PacketError> {
        if unit.broken {
            return Ok(());
        }
        let end = unit.info.len + data.len();
        let Some(dst) = buf.get_mut(unit.info.len..end) else {
            unit.broken = true;
            unit.info.overflow = true;
            return Err(PacketError::BufferTooSmall {
                needed: end,
                capacity: buf.len(),
            });
        };
        dst.copy_from_slice(data);
        unit.info.len = end;
        Ok(())
    }

    fn abandon(&mut self, unit: Unit) -> FrameInfo {
        self.stats.abandoned += 1;
        unit.info
    }

    fn finish(&mut self, mut info: FrameInfo) -> FrameInfo {
        info.complete = info.missing == 0 && !info.overflow;
        if info.complete {
            self.stats.complete += 1;
        } else {
            self.stats.incomplete += 1;
        }
        info
    }
}

/// Fuzz entry point: parses the bytes as a payload header (parse and emit must agree), runs a
/// packetizer round trip over them as a codestream (the reassembly must equal the input, and a
/// buffer one byte short must overflow without being written past), and feeds them as a packet
/// sequence to a depacketizer with a guarded buffer.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Ok(packet) = Packet::new_checked(data) {
        match Repr::parse(&packet) {
            Ok(repr) => {
                assert_eq!(repr.to_bytes(), data[..HEADER_LEN]);
                let mut copy = data.to_vec();
                let mut out = Packet::new_unchecked(&mut copy[..]);
                out.set_packet_index(!0);
                repr.emit(&mut out);
                assert_eq!(copy, data);
            }
            Err(e) => assert_eq!(e, PacketError::ReservedInterlace),
        }
    }
    let Some((&first, codestream)) = data.split_first() else {
        return;
    };
    fuzz_round_trip(usize::from(first % 64) + 5, codestream);
    fuzz_stream(data);
}

fn fuzz_round_trip(max_payload: usize, codestream: &[u8]) {
    let packetizer = Packetizer::new(max_payload).expect("over 4 bytes");
    let mut rx = Depacketizer::new();
    let mut buf = vec![0u8; codestream.len()];
    let n = packetizer.packets(codestream.len());
    let mut done = None;
    for i in 0..n {
        let mut payload = packetizer.header(i, codestream.len(), 7).to_vec();
        payload.extend_from_slice(&codestream[packetizer.data(i, codestream.len())]);
        assert!(payload.len() <= max_payload);
        let last = packetizer.is_last(i, codestream.len());
        let pushed = rx.push(&payload, last, 1234, &mut buf).expect("fits");
        assert_eq!(pushed.abandoned, None);
        assert_eq!(pushed.frame.is_some(), last);
        done = done.or(pushed.frame);
    }
    if n > 0 {
        let info = done.expect("last packet finishes");
        assert!(info.complete && info.len == codestream.len());
        assert_eq!(buf, codestream);
        fuzz_overflow(&packetizer, codestream);
    }
}

fn fuzz_overflow(packetizer: &Packetizer, codestream: &[u8]) {
    let mut rx = Depacketizer::new();
    let mut backing = vec![0xA5u8; codestream.len() + 8];
    let (buf, guard) = backing.split_at_mut(codestream.len() - 1);
    let mut errors = 0;
    for i in 0..packetizer.packets(codestream.len()) {
        let mut payload = packetizer.header(i, codestream.len(), 0).to_vec();
        payload.extend_from_slice(&codestream[packetizer.data(i, codestream.len())]);
        let last = packetizer.is_last(i, codestream.len());
        match rx.push(&payload, last, 9, buf) {
            Err(PacketError::BufferTooSmall { .. }) => errors += 1,
            Ok(p) => assert!(p.frame.is_none_or(|f| f.overflow && !f.complete)),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(errors, 1);
    assert!(guard.iter().all(|&b| b == 0xA5));
}

fn fuzz_stream(data: &[u8]) {
    let mut rx = Depacketizer::new();
    let mut backing = [0x5Au8; 96];
    let (buf, guard) = backing.split_at_mut(64);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let take = usize::from(len % 32).min(tail.len());
        let (payload, tail) = tail.split_at(take);
        rest = tail;
        let marker = len & 0x80 != 0;
        let ts = u32::from((len >> 5) & 1);
        if let Ok(p) = rx.push(payload, marker, ts, buf) {
            for info in p.frame.iter().chain(p.abandoned.iter()) {
                assert!(info.len <= buf.len());
                assert!(!info.complete || (info.missing == 0 && !info.overflow));
            }
        }
    }
    assert!(guard.iter().all(|&b| b == 0x5A));
    let s = rx.stats();
    assert!(s.refused + s.late <= s.packets);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_fields_sit_where_rfc9134_puts_them() {
        // T=1 K=0 L=1 I=10 F=00101 SEP=00000000001 P=00000000011
        // 1011 0001 0100 0000 0000 1000 0000 0011 = B1 40 08 03
        let bytes = [0xB1, 0x40, 0x08, 0x03, 0xAA, 0xBB];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.sequential());
        assert_eq!(p.mode(), PacketMode::Codestream);
        assert!(p.last());
        assert_eq!(p.interlace(), Interlace::FirstField);
        assert_eq!(p.frame_counter(), 5);
        assert_eq!(p.sep_counter(), 1);
        assert_eq!(p.packet_counter(), 3);
        assert_eq!(p.packet_index(), 2048 + 3);
        assert_eq!(p.payload(), &[0xAA, 0xBB]);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr {
                sequential: true,
                mode: PacketMode::Codestream,
                last: true,
                interlace: Interlace::FirstField,
                frame_counter: 5,
                sep_counter: 1,
                packet_counter: 3,
            }
        );
        assert_eq!(repr.to_bytes(), [0xB1, 0x40, 0x08, 0x03]);
        assert_eq!(repr.packet_index(), 2051);
        assert_eq!(repr.header_len(), 4);
        let mut out = [0u8; 6];
        let mut packet = Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&[0xAA, 0xBB]);
        assert_eq!(out, bytes);
    }

    #[test]
    fn each_setter_touches_only_its_bits() {
        type Set = fn(&mut Packet<&mut [u8]>);
        let cases: [(Set, [u8; 4]); 8] = [
            (|p| p.set_sequential(true), [0x80, 0, 0, 0]),
            (|p| p.set_mode(PacketMode::Slice), [0x40, 0, 0, 0]),
            (|p| p.set_last(true), [0x20, 0, 0, 0]),
            (|p| p.set_interlace(Interlace::SecondField), [0x18, 0, 0, 0]),
            (|p| p.set_frame_counter(31), [0x07, 0xC0, 0, 0]),
            (|p| p.set_sep_counter(2047), [0x00, 0x3F, 0xF8, 0]),
            (|p| p.set_packet_counter(2047), [0, 0, 0x07, 0xFF]),
            (|p| p.set_packet_index(u32::MAX), [0x00, 0x3F, 0xFF, 0xFF]),
        ];
        for (set, want) in cases {
            let mut buf = [0u8; 4];
            set(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, want);
            // And clearing on a full word clears only those bits.
            let mut buf = [0xFFu8; 4];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            set(&mut p);
            assert_eq!(buf, [0xFF; 4], "setting to the maximum keeps all ones");
        }
        let mut buf = [0xFFu8; 5];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_sequential(false);
        p.set_mode(PacketMode::Codestream);
        p.set_last(false);
        p.set_interlace(Interlace::Progressive);
        p.set_frame_counter(33); // modulo 32: 1
        p.set_sep_counter(2049); // modulo 2048: 1
        p.set_packet_counter(2048 + 5);
        assert_eq!(p.frame_counter(), 1);
        assert_eq!(p.sep_counter(), 1);
        assert_eq!(p.packet_counter(), 5);
        assert_eq!(p.into_inner(), &[0x00, 0x40, 0x08, 0x05, 0xFF]);
    }

    #[test]
    fn interlace_values_round_trip() {
        for bits in 0..4 {
            assert_eq!(Interlace::from_bits(bits).bits(), bits);
        }
        assert_eq!(Interlace::from_bits(6), Interlace::FirstField);
    }

    #[test]
    fn short_and_reserved_headers_are_refused() {
        for len in 0..4 {
            let buf = [0u8; 4];
            assert_eq!(
                Packet::new_checked(&buf[..len]).unwrap_err(),
                PacketError::Truncated { len }
            );
        }
        assert!(
            Packet::new_checked(&[0u8; 4][..])
                .unwrap()
                .payload()
                .is_empty()
        );
        let reserved = [0x88, 0, 0, 0]; // T=1, I=01
        let p = Packet::new_checked(&reserved[..]).unwrap();
        assert_eq!(p.interlace(), Interlace::Reserved);
        assert_eq!(Repr::parse(&p), Err(PacketError::ReservedInterlace));
        let short = Packet::new_unchecked(&reserved[..2]);
        assert_eq!(Repr::parse(&short), Err(PacketError::Truncated { len: 2 }));
    }

    #[test]
    fn packetizer_needs_room_for_data() {
        for max_payload in 0..=4 {
            assert_eq!(
                Packetizer::new(max_payload),
                Err(PacketizerError::PayloadTooSmall { max_payload })
            );
        }
        assert_eq!(Packetizer::new(5).unwrap().data_per_packet(), 1);
        assert_eq!(Packetizer::new(1448).unwrap().data_per_packet(), 1444);
        let msg = PacketizerError::PayloadTooSmall { max_payload: 4 }.to_string();
        assert!(
            msg.contains("at most 4 bytes") && msg.contains("at least 5"),
            "{msg}"
        );
    }

    #[test]
    fn codestreams_of_whole_packets_and_one_byte_more() {
        let px = Packetizer::new(1448).unwrap();
        assert_eq!(px.packets(0), 0);
        assert_eq!(px.packets(1), 1);
        assert_eq!(px.packets(1444), 1);
        assert_eq!(px.packets(1445), 2);
        let len = 3 * 1444;
        assert_eq!(px.packets(len), 3);
        assert_eq!(px.data(0, len), 0..1444);
        assert_eq!(px.data(2, len), 2888..4332);
        assert!(!px.is_last(1, len) && px.is_last(2, len));
        // T=1, F=33 mod 32 = 1: 1000 0000 0100 0000 ...; the last adds L (0x20) and P=2.
        assert_eq!(px.header(0, len, 33), [0x80, 0x40, 0x00, 0x00]);
        assert_eq!(px.header(1, len, 33), [0x80, 0x40, 0x00, 0x01]);
        assert_eq!(px.header(2, len, 33), [0xA0, 0x40, 0x00, 0x02]);
        let len = len + 1;
        assert_eq!(px.packets(len), 4);
        assert_eq!(px.data(2, len), 2888..4332);
        assert_eq!(px.data(3, len), 4332..4333);
        assert_eq!(px.header(2, len, 0), [0x80, 0x00, 0x00, 0x02]);
        assert_eq!(px.header(3, len, 0), [0xA0, 0x00, 0x00, 0x03]);
        assert_eq!(px.data(9, len), 4333..4333);
    }

    #[test]
    fn packet_counter_carries_into_sep_and_wraps_at_22_bits() {
        let px = Packetizer::new(5).unwrap(); // one byte per packet
        assert_eq!(px.header(2047, 2049, 0), [0x80, 0x00, 0x07, 0xFF]);
        assert_eq!(px.header(2048, 2049, 0), [0xA0, 0x00, 0x08, 0x00]);
        let len = (1 << 22) + 1;
        assert_eq!(px.header((1 << 22) - 1, len, 0), [0x80, 0x3F, 0xFF, 0xFF]);
        assert_eq!(px.header(1 << 22, len, 0), [0xA0, 0x00, 0x00, 0x00]);
        let fields = px.with_interlace(Interlace::SecondField);
        assert_eq!(fields.header(0, 1, 2), [0xB8, 0x80, 0x00, 0x00]);
    }

    /// Packetizes `codestream` into owned payloads with their marker bits.
    fn packets(px: &Packetizer, codestream: &[u8], frame: u32) -> Vec<(Vec<u8>, bool)> {
        (0..px.packets(codestream.len()))
            .map(|i| {
                let mut p = px.header(i, codestream.len(), frame).to_vec();
                p.extend_from_slice(&codestream[px.data(i, codestream.len())]);
                (p, px.is_last(i, codestream.len()))
            })
            .collect()
    }

    fn codestream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn whole_codestreams_reassemble_at_every_boundary_length() {
        let px = Packetizer::new(4 + 10).unwrap();
        for len in [1, 9, 10, 11, 30, 31] {
            let cs = codestream(len);
            let mut rx = Depacketizer::new();
            let mut buf = vec![0u8; len];
            let pkts = packets(&px, &cs, 3);
            for (i, (p, m)) in pkts.iter().enumerate() {
                let pushed = rx.push(p, *m, 90_000, &mut buf).unwrap();
                assert_eq!(pushed.abandoned, None);
                assert_eq!(rx.in_progress(), i + 1 < pkts.len());
                if i + 1 < pkts.len() {
                    assert_eq!(pushed.frame, None);
                    continue;
                }
                let want = FrameInfo {
                    timestamp: 90_000,
                    frame_counter: 3,
                    interlace: Interlace::Progressive,
                    len,
                    packets: pkts.len() as u32,
                    missing: 0,
                    complete: true,
                    overflow: false,
                };
                assert_eq!(pushed.frame, Some(want), "len {len}");
            }
            assert_eq!(buf, cs);
            assert_eq!(rx.stats().complete, 1);
        }
    }

    #[test]
    fn a_missing_packet_leaves_a_true_prefix() {
        let px = Packetizer::new(4 + 10).unwrap();
        let cs = codestream(35);
        let pkts = packets(&px, &cs, 0);
        let mut rx = Depacketizer::new();
        let mut buf = vec![0xEEu8; 35];
        for (i, (p, m)) in pkts.iter().enumerate() {
            if i == 1 {
                continue;
            }
            let pushed = rx.push(p, *m, 1, &mut buf).unwrap();
            if *m {
                let info = pushed.frame.unwrap();
                assert_eq!((info.len, info.packets, info.missing), (10, 3, 1));
                assert!(!info.complete && !info.overflow);
            }
        }
        assert_eq!(buf[..10], cs[..10]);
        assert!(
            buf[10..].iter().all(|&b| b == 0xEE),
            "nothing after the gap is written"
        );
        assert_eq!(
            rx.stats(),
            DepacketizerStats {
                packets: 3,
                incomplete: 1,
                missing: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn joining_mid_frame_counts_the_packets_before() {
        let px = Packetizer::new(4 + 4).unwrap();
        let cs = codestream(16);
        let pkts = packets(&px, &cs, 0);
        let mut rx = Depacketizer::new();
        let mut buf = [0u8; 16];
        assert_eq!(
            rx.push(&pkts[2].0, false, 5, &mut buf).unwrap(),
            Pushed::default()
        );
        let info = rx
            .push(&pkts[3].0, true, 5, &mut buf)
            .unwrap()
            .frame
            .unwrap();
        assert_eq!(
            (info.len, info.packets, info.missing, info.complete),
            (0, 2, 2, false)
        );
        assert_eq!(buf, [0u8; 16]);
    }

    #[test]
    fn a_lost_last_packet_abandons_the_frame_at_the_next_timestamp() {
        let px = Packetizer::new(4 + 8).unwrap();
        let a = codestream(20);
        let b: Vec<u8> = codestream(12).iter().map(|x| !x).collect();
        let (pa, pb) = (packets(&px, &a, 0), packets(&px, &b, 1));
        let mut rx = Depacketizer::new();
        let mut buf = vec![0u8; 32];
        rx.push(&pa[0].0, false, 100, &mut buf).unwrap();
        rx.push(&pa[1].0, false, 100, &mut buf).unwrap();
        let pushed = rx.push(&pb[0].0, false, 200, &mut buf).unwrap();
        let abandoned = pushed.abandoned.unwrap();
        assert_eq!(abandoned.timestamp, 100);
        assert_eq!(
            (abandoned.len, abandoned.packets, abandoned.complete),
            (16, 2, false)
        );
        assert_eq!(pushed.frame, None);
        let info = rx
            .push(&pb[1].0, true, 200, &mut buf)
            .unwrap()
            .frame
            .unwrap();
        assert!(info.complete);
        assert_eq!((info.timestamp, info.frame_counter, info.len), (200, 1, 12));
        assert_eq!(buf[..12], b[..]);
        let s = rx.stats();
        assert_eq!((s.abandoned, s.complete, s.packets), (1, 1, 4));
    }

    #[test]
    fn a_new_frame_counter_or_field_starts_a_new_codestream() {
        let px = Packetizer::new(4 + 8).unwrap();
        let cs = codestream(16);
        let mut rx = Depacketizer::new();
        let mut buf = [0u8; 16];
        // Frame counter 0 then 1 under the same timestamp.
        rx.push(&packets(&px, &cs, 0)[0].0, false, 7, &mut buf)
            .unwrap();
        let pushed = rx
            .push(&packets(&px, &cs, 1)[0].0, false, 7, &mut buf)
            .unwrap();
        assert_eq!(pushed.abandoned.unwrap().frame_counter, 0);
        // Two fields of one frame: same timestamp and counter, I differs.
        let first = px.with_interlace(Interlace::FirstField);
        let second = px.with_interlace(Interlace::SecondField);
        let mut rx = Depacketizer::new();
        for (i, p) in [first, second].iter().enumerate() {
            for (pkt, m) in packets(p, &cs, 4) {
                let pushed = rx.push(&pkt, m, 9, &mut buf).unwrap();
                assert_eq!(pushed.abandoned, None);
                if m {
                    let info = pushed.frame.unwrap();
                    assert!(info.complete);
                    assert_eq!(
                        info.interlace,
                        [Interlace::FirstField, Interlace::SecondField][i]
                    );
                }
            }
        }
        assert_eq!(rx.stats().complete, 2);
    }

    #[test]
    fn duplicates_and_stray_packets_are_ignored() {
        let px = Packetizer::new(4 + 4).unwrap();
        let cs = codestream(12);
        let pkts = packets(&px, &cs, 2);
        let mut rx = Depacketizer::new();
        let mut buf = [0u8; 12];
        rx.push(&pkts[0].0, false, 3, &mut buf).unwrap();
        rx.push(&pkts[1].0, false, 3, &mut buf).unwrap();
        assert_eq!(
            rx.push(&pkts[0].0, false, 3, &mut buf).unwrap(),
            Pushed::default()
        );
        assert_eq!(
            rx.push(&pkts[1].0, false, 3, &mut buf).unwrap(),
            Pushed::default()
        );
        assert!(
            rx.push(&pkts[2].0, true, 3, &mut buf)
                .unwrap()
                .frame
                .unwrap()
                .complete
        );
        // A duplicate of the finished frame does not open a new one.
        assert_eq!(
            rx.push(&pkts[1].0, false, 3, &mut buf).unwrap(),
            Pushed::default()
        );
        assert!(!rx.in_progress());
        assert_eq!(buf[..], cs[..]);
        let s = rx.stats();
        assert_eq!((s.late, s.complete, s.missing), (3, 1, 0));
    }

    #[test]
    fn marker_or_l_alone_ends_the_codestream() {
        let mut rx = Depacketizer::new();
        let mut buf = [0u8; 8];
        // L=1 without the RTP marker.
        let l_only = [0xA0, 0, 0, 0, 1, 2];
        let info = rx.push(&l_only, false, 1, &mut buf).unwrap().frame.unwrap();
        assert_eq!((info.len, info.complete), (2, true));
        // The RTP marker without L.
        let m_only = [0x80, 0, 0, 0, 3];
        let info = rx.push(&m_only, true, 2, &mut buf).unwrap().frame.unwrap();
        assert_eq!((info.len, info.complete), (1, true));
        // A header-only packet is a valid, empty codestream.
        let info = rx
            .push(&[0xA0, 0, 0, 0], true, 3, &mut buf)
            .unwrap()
            .frame
            .unwrap();
        assert_eq!((info.len, info.packets, info.complete), (0, 1, true));
    }

    #[test]
    fn a_codestream_longer_than_the_buffer_is_refused_without_writing_past_it() {
        let px = Packetizer::new(4 + 4).unwrap();
        let cs = codestream(12);
        let pkts = packets(&px, &cs, 0);
        let mut backing = [0x11u8; 16];
        let (buf, guard) = backing.split_at_mut(6);
        let mut rx = Depacketizer::new();
        assert!(rx.push(&pkts[0].0, false, 1, buf).is_ok());
        assert_eq!(
            rx.push(&pkts[1].0, false, 1, buf),
            Err(PacketError::BufferTooSmall {
                needed: 8,
                capacity: 6
            })
        );
        let info = rx.push(&pkts[2].0, true, 1, buf).unwrap().frame.unwrap();
        assert_eq!(
            (info.len, info.overflow, info.complete, info.packets),
            (4, true, false, 3)
        );
        assert_eq!(buf[..4], cs[..4]);
        assert_eq!(buf[4..], [0x11, 0x11]);
        assert!(guard.iter().all(|&b| b == 0x11));
        // Overflowing on the last packet: the error, and the codestream ends.
        let mut rx = Depacketizer::new();
        let small = &mut backing[..10];
        rx.push(&pkts[0].0, false, 1, small).unwrap();
        rx.push(&pkts[1].0, false, 1, small).unwrap();
        assert_eq!(
            rx.push(&pkts[2].0, true, 1, small),
            Err(PacketError::BufferTooSmall {
                needed: 12,
                capacity: 10
            })
        );
        assert!(!rx.in_progress());
        assert_eq!(backing[10..], [0x11; 6]);
        assert_eq!(rx.stats().incomplete, 1);
        let msg = PacketError::BufferTooSmall {
            needed: 12,
            capacity: 10,
        }
        .to_string();
        assert!(msg.contains("12") && msg.contains("10"), "{msg}");
    }

    #[test]
    fn malformed_packets_are_refused_and_counted() {
        let mut rx = Depacketizer::new();
        let mut buf = [0u8; 8];
        assert_eq!(
            rx.push(&[0x80, 0], true, 0, &mut buf),
            Err(PacketError::Truncated { len: 2 })
        );
        assert_eq!(
            rx.push(&[0xC0, 0, 0, 0, 1], true, 0, &mut buf),
            Err(PacketError::SliceMode)
        );
        assert_eq!(
            rx.push(&[0x88, 0, 0, 0, 1], true, 0, &mut buf),
            Err(PacketError::ReservedInterlace)
        );
        assert_eq!(
            rx.stats(),
            DepacketizerStats {
                packets: 3,
                refused: 3,
                ..Default::default()
            }
        );
        assert_eq!(buf, [0u8; 8]);
        assert!(PacketError::SliceMode.to_string().contains("K=1"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_holds_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            fuzz(&data);
        }

        #[test]
        fn lossy_reassembly_keeps_a_true_prefix(
            len in 1usize..400,
            data_len in 1usize..40,
            drop in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let px = Packetizer::new(4 + data_len).unwrap();
            let cs = codestream(len);
            let pkts = packets(&px, &cs, 11);
            let mut rx = Depacketizer::new();
            let mut buf = vec![0u8; len];
            let mut frame = None;
            for (i, (p, m)) in pkts.iter().enumerate() {
                if drop.get(i).copied().unwrap_or(false) {
                    continue;
                }
                frame = frame.or(rx.push(p, *m, 0, &mut buf).unwrap().frame);
            }
            let dropped = (0..pkts.len()).filter(|&i| drop.get(i).copied().unwrap_or(false));
            let first_drop = dropped.clone().next();
            if let Some(info) = frame {
                let want = first_drop.map_or(len, |i| i * data_len);
                prop_assert_eq!(info.len, want);
                prop_assert_eq!(&buf[..info.len], &cs[..info.len]);
                prop_assert_eq!(info.complete, first_drop.is_none());
                prop_assert_eq!(info.missing as usize, dropped.count());
            } else {
                prop_assert!(drop.get(pkts.len() - 1).copied().unwrap_or(false));
            }
        }
    }
}
