//! Pixel-format conversion at the SDK edge of ST 2110-20 video sessions.
//!
//! The wire, and the frames in an ST 2110 session's rx/tx pools, carry `yuv422p10rfc4175`; an
//! application may ask for `yuv422p10le` or `v210` instead ([`PixelFormat`], parsed from the
//! connection's `pixelFormat`). [`to_rfc4175`] converts an application frame for transmission,
//! [`from_rfc4175`] a received frame for the application; the `_lines` variants convert a band of
//! lines so that an lcore can spread one frame over several polls.
//!
//! # Layouts
//!
//! All three carry 4:2:2 video with 10 bits per sample, lines top to bottom with no padding
//! between them. `w`×`h` pixels:
//!
//! | format | one line | frame bytes |
//! |---|---|---|
//! | `yuv422p10rfc4175` | `w/2` pgroups of 5 bytes: Cb Y0 Cr Y1, 10 bits each, packed MSB first | `w·h·5/2` |
//! | `yuv422p10le` | planar: a Y plane (`w` u16 per line), then Cb, then Cr (`w/2` u16 each), little-endian, the value in bits 0–9 | `w·h·4` |
//! | `v210` | `w/6` blocks of 4 little-endian u32, 3 samples per word in bits 0–9, 10–19, 20–29: Cb0 Y0 Cr0 \| Y1 Cb1 Y2 \| Cr1 Y3 Cb2 \| Y4 Cr2 Y5 | `w·h·8/3` |
//!
//! The frame sizes are MCM's (`mcm_proto::config::payload::Video::frame_size`). For `v210` that
//! formula leaves no room for the 128-byte line alignment of the original v210 definition, so the
//! lines here are packed back to back, each `w·8/3` bytes.
//!
//! # Geometry
//!
//! MCM only requires `w·h` to pack into a whole frame; conversion works line by line and needs
//! more (see [`width_multiple`]): `w` even for `yuv422p10le` and `yuv422p10rfc4175` (a pgroup and
//! a chroma sample cover two pixels of one line) and `w` a multiple of 6 for `v210` (a block
//! covers six pixels of one line); `w` and `h` at least 1. Other geometries are refused with
//! [`ConvertError::Width`] or [`ConvertError::ZeroHeight`].
//!
//! # Values out of range
//!
//! `yuv422p10le` samples are 16-bit words of which only bits 0–9 are read: a value above 1023 is
//! masked to its low 10 bits and never spills into a neighbouring sample. Likewise bits 30–31 of a
//! `v210` word are ignored on input and written as zero on output.
//!
//! # Buffers
//!
//! Sizes are checked before anything is written: each buffer must hold at least a whole frame
//! ([`frame_bytes`]); bytes past the frame are neither read nor written. Nothing allocates.

use std::ops::Range;

pub use mcm_proto::config::payload::PixelFormat;

/// Largest value of a 10-bit sample, also the mask of its bits.
const MAX_10: u16 = 0x3ff;
/// Bytes of one RFC 4175 4:2:2 10-bit pgroup (two pixels).
const PGROUP: usize = 5;
/// Bytes of one v210 block (six pixels).
const V210_BLOCK: usize = 16;
/// Bytes of the same six pixels in RFC 4175 (three pgroups).
const RFC_BLOCK: usize = 15;

/// Why a frame could not be converted. Small and `Copy`: conversion runs on the lcores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The width does not split into whole pgroups or blocks of one line.
    #[error(
        "width {width} cannot be converted as {}: it must be a positive multiple of {}",
        .format.as_str(),
        width_multiple(*.format)
    )]
    Width {
        /// The application-side format whose rule the width breaks.
        format: PixelFormat,
        /// The width asked for.
        width: u32,
    },
    /// The format is not a 10-bit 4:2:2 format (`uyvy` is 8-bit: it travels as it is).
    #[error(
        "{} frames are not converted (allowed: yuv422p10le, v210, yuv422p10rfc4175)",
        .format.as_str()
    )]
    Format {
        /// The format asked for.
        format: PixelFormat,
    },
    /// The height is 0.
    #[error("height 0 cannot be converted: a frame has at least one line")]
    ZeroHeight,
    /// The frame's size in bytes does not fit `usize`.
    #[error("a {width}x{height} {} frame does not fit in memory", .format.as_str())]
    TooLarge {
        /// The format whose frame is too large.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in lines.
        height: u32,
    },
    /// The band of lines asked for is not inside the frame.
    #[error("lines {start}..{end} are not a band inside a frame of lines 0..{height}")]
    Lines {
        /// First line of the band.
        start: u32,
        /// One past the last line of the band.
        end: u32,
        /// Lines in the frame.
        height: u32,
    },
    /// The source buffer is smaller than a frame.
    #[error("source buffer is {len} bytes, a {} frame needs {needed}", .format.as_str())]
    SrcTooSmall {
        /// The source's format.
        format: PixelFormat,
        /// Bytes of one frame.
        needed: usize,
        /// Bytes in the buffer.
        len: usize,
    },
    /// The destination buffer is smaller than a frame.
    #[error("destination buffer is {len} bytes, a {} frame needs {needed}", .format.as_str())]
    DstTooSmall {
        /// The destination's format.
        format: PixelFormat,
        /// Bytes of one frame.
        needed: usize,
        /// Bytes in the buffer.
        len: usize,
    },
}

/// The format spelled `name` in MCM's `pixelFormat` (exact match), e.g. `"v210"`.
pub fn parse_format(name: &str) -> Option<PixelFormat> {
    PixelFormat::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// What a width must be a multiple of for `format` to be converted: 6 for `v210`, else 2.
pub const fn width_multiple(format: PixelFormat) -> u32 {
    match format {
        PixelFormat::V210 => 6,
        PixelFormat::Yuv422p10le | PixelFormat::Yuv422p10rfc4175 | PixelFormat::Uyvy => 2,
    }
}

/// Bytes of one `width`×`height` frame in `format` (MCM's frame size); `None` where the geometry
/// cannot be converted (see the module docs) or the size does not fit `usize`.
pub fn frame_bytes(format: PixelFormat, width: u32, height: u32) -> Option<usize> {
    Frame::new(format, width, height).ok().map(|f| f.bytes)
}

/// Converts one frame in `src_fmt` to `yuv422p10rfc4175` (for transmission).
///
/// `src` and `dst` must each hold at least one frame ([`frame_bytes`]); `yuv422p10le` values are
/// masked to 10 bits. With `src_fmt` = `yuv422p10rfc4175` this is a copy.
pub fn to_rfc4175(
    src_fmt: PixelFormat,
    width: u32,
    height: u32,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    to_rfc4175_lines(src_fmt, width, height, 0..height, src, dst)
}

/// Converts one received `yuv422p10rfc4175` frame to `dst_fmt` (for the application).
///
/// `src` and `dst` must each hold at least one frame ([`frame_bytes`]). With `dst_fmt` =
/// `yuv422p10rfc4175` this is a copy.
pub fn from_rfc4175(
    dst_fmt: PixelFormat,
    width: u32,
    height: u32,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    from_rfc4175_lines(dst_fmt, width, height, 0..height, src, dst)
}

/// [`to_rfc4175`] for the band `lines` of the frame only: `src` and `dst` are whole frames, and
/// only the band's bytes are read and written. An empty band is allowed and does nothing.
pub fn to_rfc4175_lines(
    src_fmt: PixelFormat,
    width: u32,
    height: u32,
    lines: Range<u32>,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let (app, wire) = Frame::pair(src_fmt, width, height, &lines)?;
    app.check_src(src)?;
    wire.check_dst(dst)?;
    let out = wire.packed_mut(dst, &lines);
    match src_fmt {
        PixelFormat::Yuv422p10le => {
            let (y, cb, cr) = app.planes(src, &lines);
            planar_to_rfc(y, cb, cr, out);
        }
        PixelFormat::V210 => v210_to_rfc(app.packed(src, &lines), out),
        // `Frame::new` refuses uyvy, so only the copy can be reached.
        PixelFormat::Yuv422p10rfc4175 | PixelFormat::Uyvy => {
            out.copy_from_slice(app.packed(src, &lines));
        }
    }
    Ok(())
}

/// [`from_rfc4175`] for the band `lines` of the frame only: `src` and `dst` are whole frames, and
/// only the band's bytes are read and written. An empty band is allowed and does nothing.
pub fn from_rfc4175_lines(
    dst_fmt: PixelFormat,
    width: u32,
    height: u32,
    lines: Range<u32>,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let (app, wire) = Frame::pair(dst_fmt, width, height, &lines)?;
    wire.check_src(src)?;
    app.check_dst(dst)?;
    let inp = wire.packed(src, &lines);
    match dst_fmt {
        PixelFormat::Yuv422p10le => {
            let (y, cb, cr) = app.planes_mut(dst, &lines);
            rfc_to_planar(inp, y, cb, cr);
        }
        PixelFormat::V210 => rfc_to_v210(inp, app.packed_mut(dst, &lines)),
        // `Frame::new` refuses uyvy, so only the copy can be reached.
        PixelFormat::Yuv422p10rfc4175 | PixelFormat::Uyvy => {
            app.packed_mut(dst, &lines).copy_from_slice(inp);
        }
    }
    Ok(())
}

/// Drives both directions over arbitrary bytes for a fuzzer: `data[0]` picks the format, `data[1]`
/// the width, `data[2] % 8` the height, the rest is the source frame. Asserts that nothing
/// panics, that errors are the ones due, and that wire → app → wire is exact and app → wire →
/// app gives the app frame with its unused bits cleared.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let [f, w, h, src @ ..] = data else {
        return;
    };
    let fmt = PixelFormat::ALL[usize::from(*f) % PixelFormat::ALL.len()].1;
    let (width, height) = (u32::from(*w), u32::from(*h % 8));
    let wire_fmt = PixelFormat::Yuv422p10rfc4175;
    let sizes = frame_bytes(fmt, width, height).zip(frame_bytes(wire_fmt, width, height));
    let Some((app_len, wire_len)) = sizes else {
        assert!(to_rfc4175(fmt, width, height, src, &mut []).is_err());
        assert!(from_rfc4175(fmt, width, height, src, &mut []).is_err());
        return;
    };
    let (mut app, mut wire) = (vec![0; app_len], vec![0; wire_len]);
    match from_rfc4175(fmt, width, height, src, &mut app) {
        Err(e) => assert!(src.len() < wire_len && matches!(e, ConvertError::SrcTooSmall { .. })),
        Ok(()) => {
            to_rfc4175(fmt, width, height, &app, &mut wire).expect("sizes are right");
            assert_eq!(wire, src[..wire_len], "wire -> app -> wire");
        }
    }
    match to_rfc4175(fmt, width, height, src, &mut wire) {
        Err(e) => assert!(src.len() < app_len && matches!(e, ConvertError::SrcTooSmall { .. })),
        Ok(()) => {
            from_rfc4175(fmt, width, height, &wire, &mut app).expect("sizes are right");
            let mut want = src[..app_len].to_vec();
            match fmt {
                PixelFormat::Yuv422p10le => want.chunks_exact_mut(2).for_each(|s| s[1] &= 0x03),
                PixelFormat::V210 => want.chunks_exact_mut(4).for_each(|s| s[3] &= 0x3f),
                PixelFormat::Yuv422p10rfc4175 | PixelFormat::Uyvy => {}
            }
            assert_eq!(app, want, "app -> wire -> app");
        }
    }
}

/// A validated frame geometry in one format.
#[derive(Debug, Clone, Copy)]
struct Frame {
    format: PixelFormat,
    /// Pixels per line (a multiple of [`width_multiple`]).
    width: usize,
    /// Lines.
    height: usize,
    /// Bytes of the whole frame; every product below it fits `usize`.
    bytes: usize,
}

impl Frame {
    /// Checks the geometry and that the frame's size fits `usize`.
    fn new(format: PixelFormat, width: u32, height: u32) -> Result<Self, ConvertError> {
        if format == PixelFormat::Uyvy {
            return Err(ConvertError::Format { format });
        }
        if width == 0 || !width.is_multiple_of(width_multiple(format)) {
            return Err(ConvertError::Width { format, width });
        }
        if height == 0 {
            return Err(ConvertError::ZeroHeight);
        }
        let too_large = ConvertError::TooLarge {
            format,
            width,
            height,
        };
        let (w, h) = (
            usize::try_from(width).map_err(|_| too_large)?,
            usize::try_from(height).map_err(|_| too_large)?,
        );
        let line = match format {
            PixelFormat::Yuv422p10le => w.checked_mul(4),
            PixelFormat::V210 => (w / 6).checked_mul(V210_BLOCK),
            PixelFormat::Yuv422p10rfc4175 | PixelFormat::Uyvy => (w / 2).checked_mul(PGROUP),
        };
        let bytes = line.and_then(|l| l.checked_mul(h)).ok_or(too_large)?;
        Ok(Self {
            format,
            width: w,
            height: h,
            bytes,
        })
    }

    /// The application format's frame and the wire frame of the same geometry, with `lines`
    /// checked against the height.
    fn pair(
        app: PixelFormat,
        width: u32,
        height: u32,
        lines: &Range<u32>,
    ) -> Result<(Self, Self), ConvertError> {
        let app = Self::new(app, width, height)?;
        let wire = Self::new(PixelFormat::Yuv422p10rfc4175, width, height)?;
        if lines.start > lines.end || lines.end > height {
            return Err(ConvertError::Lines {
                start: lines.start,
                end: lines.end,
                height,
            });
        }
        Ok((app, wire))
    }

    fn check_src(&self, src: &[u8]) -> Result<(), ConvertError> {
        if src.len() < self.bytes {
            return Err(ConvertError::SrcTooSmall {
                format: self.format,
                needed: self.bytes,
                len: src.len(),
            });
        }
        Ok(())
    }

    fn check_dst(&self, dst: &[u8]) -> Result<(), ConvertError> {
        if dst.len() < self.bytes {
            return Err(ConvertError::DstTooSmall {
                format: self.format,
                needed: self.bytes,
                len: dst.len(),
            });
        }
        Ok(())
    }

    /// Byte range of `lines` in a packed (one-plane) frame.
    fn band(&self, lines: &Range<u32>) -> Range<usize> {
        let line = self.bytes / self.height;
        line * lines.start as usize..line * lines.end as usize
    }

    /// Byte ranges of `lines` in the Y plane and in each chroma plane of a `yuv422p10le` frame,
    /// relative to the plane.
    fn plane_bands(&self, lines: &Range<u32>) -> (Range<usize>, Range<usize>) {
        let (first, end) = (lines.start as usize, lines.end as usize);
        let chroma = self.width * first..self.width * end;
        (2 * chroma.start..2 * chroma.end, chroma)
    }

    /// The bytes of `lines` in a packed frame.
    fn packed<'a>(&self, buf: &'a [u8], lines: &Range<u32>) -> &'a [u8] {
        &buf[self.band(lines)]
    }

    /// The bytes of `lines` in a packed frame, writable.
    fn packed_mut<'a>(&self, buf: &'a mut [u8], lines: &Range<u32>) -> &'a mut [u8] {
        &mut buf[self.band(lines)]
    }

    /// The bytes of `lines` in the Y, Cb and Cr planes of a `yuv422p10le` frame.
    fn planes<'a>(&self, buf: &'a [u8], lines: &Range<u32>) -> (&'a [u8], &'a [u8], &'a [u8]) {
        let pixels = self.width * self.height;
        let (y, chroma_planes) = buf[..self.bytes].split_at(2 * pixels);
        let (cb, cr) = chroma_planes.split_at(pixels);
        let (luma, chroma) = self.plane_bands(lines);
        (&y[luma], &cb[chroma.clone()], &cr[chroma])
    }

    /// The bytes of `lines` in the Y, Cb and Cr planes of a `yuv422p10le` frame, writable.
    fn planes_mut<'a>(
        &self,
        buf: &'a mut [u8],
        lines: &Range<u32>,
    ) -> (&'a mut [u8], &'a mut [u8], &'a mut [u8]) {
        let pixels = self.width * self.height;
        let (y, chroma_planes) = buf[..self.bytes].split_at_mut(2 * pixels);
        let (cb, cr) = chroma_planes.split_at_mut(pixels);
        let (luma, chroma) = self.plane_bands(lines);
        (&mut y[luma], &mut cb[chroma.clone()], &mut cr[chroma])
    }
}

// ---- Kernels -------------------------------------------------------------------------------
//
// Every layout is a run of lines with no padding, and every accepted width is a whole number of
// pgroups and blocks, so a band of lines converts as one run of pixels. On x86-64 with SSSE3
// (checked at run time) the runs go through the vector kernels in [`x86`], which leave the tail
// of a run that does not fill a vector chunk to the scalar kernels in [`scalar`].

/// Planar Y, Cb, Cr words to pgroups: `out` is `n` pgroups, `y` `4n` bytes, `cb` and `cr` `2n`
/// bytes each.
fn planar_to_rfc(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = x86::Ssse3::detect() {
        return cpu.planar_to_rfc(y, cb, cr, out);
    }
    scalar::planar_to_rfc(y, cb, cr, out);
}

/// Pgroups to planar Y, Cb, Cr words (the lengths of [`planar_to_rfc`]).
fn rfc_to_planar(inp: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = x86::Ssse3::detect() {
        return cpu.rfc_to_planar(inp, y, cb, cr);
    }
    scalar::rfc_to_planar(inp, y, cb, cr);
}

/// v210 blocks to RFC 4175: `inp` is `n` blocks of 16 bytes, `out` `15n` bytes.
fn v210_to_rfc(inp: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = x86::Ssse3::detect() {
        return cpu.v210_to_rfc(inp, out);
    }
    scalar::v210_to_rfc(inp, out);
}

/// RFC 4175 to v210 blocks (the lengths of [`v210_to_rfc`]).
fn rfc_to_v210(inp: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = x86::Ssse3::detect() {
        return cpu.rfc_to_v210(inp, out);
    }
    scalar::rfc_to_v210(inp, out);
}

/// Portable kernels. They take runs of any length (whole pgroups, whole blocks; the lengths are
/// those of the dispatchers above) and walk them in fixed-size chunks, which LLVM unrolls.
mod scalar {
    use super::{MAX_10, PGROUP, RFC_BLOCK, V210_BLOCK};

    /// Pixels per chunk of the planar kernels: 4 pgroups, 20 bytes.
    const PIXELS: usize = 8;
    /// Bytes of RFC 4175 per chunk of the planar kernels.
    const RFC: usize = PIXELS / 2 * PGROUP;
    /// v210 blocks per chunk of the v210 kernels.
    const BLOCKS: usize = 2;

    pub(super) fn planar_to_rfc(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
        let (out_c, out_t) = out.as_chunks_mut::<RFC>();
        let (y_c, y_t) = y.as_chunks::<{ PIXELS * 2 }>();
        let (cb_c, cb_t) = cb.as_chunks::<PIXELS>();
        let (cr_c, cr_t) = cr.as_chunks::<PIXELS>();
        for (((o, y), cb), cr) in out_c.iter_mut().zip(y_c).zip(cb_c).zip(cr_c) {
            planar_to_rfc_run(y, cb, cr, o);
        }
        planar_to_rfc_run(y_t, cb_t, cr_t, out_t);
    }

    pub(super) fn rfc_to_planar(inp: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<RFC>();
        let (y_c, y_t) = y.as_chunks_mut::<{ PIXELS * 2 }>();
        let (cb_c, cb_t) = cb.as_chunks_mut::<PIXELS>();
        let (cr_c, cr_t) = cr.as_chunks_mut::<PIXELS>();
        for (((i, y), cb), cr) in in_c.iter().zip(y_c).zip(cb_c).zip(cr_c) {
            rfc_to_planar_run(i, y, cb, cr);
        }
        rfc_to_planar_run(in_t, y_t, cb_t, cr_t);
    }

    pub(super) fn v210_to_rfc(inp: &[u8], out: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<{ BLOCKS * V210_BLOCK }>();
        let (out_c, out_t) = out.as_chunks_mut::<{ BLOCKS * RFC_BLOCK }>();
        for (i, o) in in_c.iter().zip(out_c) {
            v210_to_rfc_run(i, o);
        }
        v210_to_rfc_run(in_t, out_t);
    }

    pub(super) fn rfc_to_v210(inp: &[u8], out: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<{ BLOCKS * RFC_BLOCK }>();
        let (out_c, out_t) = out.as_chunks_mut::<{ BLOCKS * V210_BLOCK }>();
        for (i, o) in in_c.iter().zip(out_c) {
            rfc_to_v210_run(i, o);
        }
        rfc_to_v210_run(in_t, out_t);
    }

    /// The 16-bit little-endian word `i` of `b`.
    fn word_le(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
    }

    /// One pgroup from its four samples, each masked to 10 bits.
    pub(super) fn pack_pgroup(cb: u16, y0: u16, cr: u16, y1: u16) -> [u8; PGROUP] {
        let s = |v: u16| u64::from(v & MAX_10);
        let bits = (s(cb) << 30) | (s(y0) << 20) | (s(cr) << 10) | s(y1);
        let b = bits.to_be_bytes();
        [b[3], b[4], b[5], b[6], b[7]]
    }

    /// The samples Cb, Y0, Cr, Y1 of one pgroup.
    pub(super) fn unpack_pgroup(p: &[u8]) -> [u16; 4] {
        let bits = u64::from_be_bytes([0, 0, 0, p[0], p[1], p[2], p[3], p[4]]);
        let s = |shift: u32| (bits >> shift) as u16 & MAX_10;
        [s(30), s(20), s(10), s(0)]
    }

    #[inline(always)]
    fn planar_to_rfc_run(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
        for (i, p) in out.chunks_exact_mut(PGROUP).enumerate() {
            let (y0, y1) = (word_le(y, 2 * i), word_le(y, 2 * i + 1));
            p.copy_from_slice(&pack_pgroup(word_le(cb, i), y0, word_le(cr, i), y1));
        }
    }

    #[inline(always)]
    fn rfc_to_planar_run(inp: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
        for (i, p) in inp.chunks_exact(PGROUP).enumerate() {
            let [s_cb, s_y0, s_cr, s_y1] = unpack_pgroup(p);
            cb[2 * i..2 * i + 2].copy_from_slice(&s_cb.to_le_bytes());
            cr[2 * i..2 * i + 2].copy_from_slice(&s_cr.to_le_bytes());
            y[4 * i..4 * i + 2].copy_from_slice(&s_y0.to_le_bytes());
            y[4 * i + 2..4 * i + 4].copy_from_slice(&s_y1.to_le_bytes());
        }
    }

    /// Both layouts carry the same samples in the same order (Cb Y Cr Y ...). A v210 word holds
    /// three of them low bits first, the pgroup stream high bits first, so each word's fields
    /// are reversed into a 30-bit group and four groups make a block's 120 bits.
    #[inline(always)]
    fn v210_to_rfc_run(inp: &[u8], out: &mut [u8]) {
        let blocks = inp.chunks_exact(V210_BLOCK);
        for (blk, o) in blocks.zip(out.chunks_exact_mut(RFC_BLOCK)) {
            let mut bits = 0u128;
            for w in blk.chunks_exact(4) {
                let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                let field = |k: u32| (word >> (10 * k)) & u32::from(MAX_10);
                let group = (field(0) << 20) | (field(1) << 10) | field(2);
                bits = (bits << 30) | u128::from(group);
            }
            o.copy_from_slice(&bits.to_be_bytes()[1..]);
        }
    }

    #[inline(always)]
    fn rfc_to_v210_run(inp: &[u8], out: &mut [u8]) {
        let runs = inp.chunks_exact(RFC_BLOCK);
        for (pgs, blk) in runs.zip(out.chunks_exact_mut(V210_BLOCK)) {
            let mut be = [0u8; 16];
            be[1..].copy_from_slice(pgs);
            let bits = u128::from_be_bytes(be);
            for (k, w) in blk.chunks_exact_mut(4).enumerate() {
                let group = (bits >> (90 - 30 * k)) as u32;
                let field = |j: u32| (group >> (10 * j)) & u32::from(MAX_10);
                let word = field(2) | (field(1) << 10) | (field(0) << 20);
                w.copy_from_slice(&word.to_le_bytes());
            }
        }
    }
}

/// SSSE3 kernels: 16-bit lanes, `pshufb` to gather and scatter bytes, `pmullw` for per-lane
/// shifts, `pmaddwd` to join samples. Each takes whole vector chunks (8 pixels of planar, 12
/// pixels of v210) and hands the rest of its run to [`scalar`].
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cvtsi128_si32, _mm_loadl_epi64, _mm_loadu_si128,
        _mm_madd_epi16, _mm_mullo_epi16, _mm_or_si128, _mm_set1_epi16, _mm_setr_epi8,
        _mm_setr_epi16, _mm_setzero_si128, _mm_shuffle_epi8, _mm_slli_epi32, _mm_slli_epi64,
        _mm_slli_si128, _mm_srli_epi16, _mm_srli_epi64, _mm_srli_si128, _mm_storel_epi64,
        _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpacklo_epi16,
    };

    use super::{PGROUP, RFC_BLOCK, V210_BLOCK, scalar};

    /// Pixels in one chunk of the planar kernels (4 pgroups, 20 bytes).
    const PLANAR_PIXELS: usize = 8;
    /// Bytes of one chunk of RFC 4175 in the planar kernels.
    const PLANAR_RFC: usize = PLANAR_PIXELS / 2 * PGROUP;
    /// Bytes of one chunk of v210 in the v210 kernels (2 blocks, 12 pixels).
    const V210_V: usize = 2 * V210_BLOCK;
    /// Bytes of one chunk of RFC 4175 in the v210 kernels.
    const V210_RFC: usize = 2 * RFC_BLOCK;

    /// Proof that this CPU has SSSE3: only [`Ssse3::detect`] makes one.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Ssse3(());

    impl Ssse3 {
        /// A token if the CPU has SSSE3 (std caches the answer).
        pub(super) fn detect() -> Option<Self> {
            is_x86_feature_detected!("ssse3").then_some(Self(()))
        }

        pub(super) fn planar_to_rfc(self, y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
            // SAFETY: a `Ssse3` exists only where the CPU has SSSE3.
            unsafe { planar_to_rfc(y, cb, cr, out) }
        }

        pub(super) fn rfc_to_planar(self, inp: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
            // SAFETY: a `Ssse3` exists only where the CPU has SSSE3.
            unsafe { rfc_to_planar(inp, y, cb, cr) }
        }

        pub(super) fn v210_to_rfc(self, inp: &[u8], out: &mut [u8]) {
            // SAFETY: a `Ssse3` exists only where the CPU has SSSE3.
            unsafe { v210_to_rfc(inp, out) }
        }

        pub(super) fn rfc_to_v210(self, inp: &[u8], out: &mut [u8]) {
            // SAFETY: a `Ssse3` exists only where the CPU has SSSE3.
            unsafe { rfc_to_v210(inp, out) }
        }
    }

    /// The `N` bytes of `b` from `at`; constant offsets into arrays compile to no check.
    #[inline(always)]
    fn window<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
        b[at..at + N].try_into().expect("the slice is N bytes")
    }

    /// The `N` bytes of `b` from `at`, writable.
    #[inline(always)]
    fn window_mut<const N: usize>(b: &mut [u8], at: usize) -> &mut [u8; N] {
        (&mut b[at..at + N])
            .try_into()
            .expect("the slice is N bytes")
    }

    #[inline(always)]
    fn load16(b: &[u8; 16]) -> __m128i {
        // SAFETY: `b` is 16 readable bytes and `loadu` needs no alignment.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline(always)]
    fn load8(b: &[u8; 8]) -> __m128i {
        // SAFETY: `b` is 8 readable bytes, all that `loadl` reads, with no alignment needed.
        unsafe { _mm_loadl_epi64(b.as_ptr().cast()) }
    }

    #[inline(always)]
    fn store16(b: &mut [u8; 16], v: __m128i) {
        // SAFETY: `b` is 16 writable bytes and `storeu` needs no alignment.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
    }

    #[inline(always)]
    fn store8(b: &mut [u8; 8], v: __m128i) {
        // SAFETY: `b` is 8 writable bytes, all that `storel` writes, with no alignment needed.
        unsafe { _mm_storel_epi64(b.as_mut_ptr().cast(), v) }
    }

    /// Gathers 16-bit lanes of bytes of `v` with `pshufb` (index -1 gives a zero byte).
    macro_rules! gather {
        ($v:expr, [$($i:expr),* $(,)?]) => {
            _mm_shuffle_epi8($v, _mm_setr_epi8($($i),*))
        };
    }

    /// The 10-bit samples in `lanes`, where lane `i` holds its sample at bit `6 - log2(mul[i])`:
    /// the multiply moves each to bits 6..16, dropping the bits above, the shift drops those below.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn samples(lanes: __m128i, mul: __m128i) -> __m128i {
        _mm_srli_epi16::<6>(_mm_mullo_epi16(lanes, mul))
    }

    /// Two pgroups from eight 10-bit samples in stream order (Cb Y0 Cr Y1 Cb Y2 Cr Y3): their 10
    /// bytes in bytes 0..10, zeros above.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn pack_pgroups(s: __m128i) -> __m128i {
        // 32-bit lanes Cb<<10|Y0 and Cr<<10|Y1, then in each 64-bit lane the pgroup's 40 bits
        // (Cb<<10|Y0)<<20 | (Cr<<10|Y1), with bits above 40 left as they fall.
        let pairs = _mm_madd_epi16(s, _mm_setr_epi16(1024, 1, 1024, 1, 1024, 1, 1024, 1));
        let bits = _mm_or_si128(_mm_slli_epi64::<20>(pairs), _mm_srli_epi64::<32>(pairs));
        gather!(
            bits,
            [4, 3, 2, 1, 0, 12, 11, 10, 9, 8, -1, -1, -1, -1, -1, -1]
        )
    }

    #[target_feature(enable = "ssse3")]
    fn planar_to_rfc(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
        let (out_c, out_t) = out.as_chunks_mut::<PLANAR_RFC>();
        let (y_c, y_t) = y.as_chunks::<{ PLANAR_PIXELS * 2 }>();
        let (cb_c, cb_t) = cb.as_chunks::<PLANAR_PIXELS>();
        let (cr_c, cr_t) = cr.as_chunks::<PLANAR_PIXELS>();
        for (((o, y), cb), cr) in out_c.iter_mut().zip(y_c).zip(cb_c).zip(cr_c) {
            planar_to_rfc_chunk(y, cb, cr, o);
        }
        scalar::planar_to_rfc(y_t, cb_t, cr_t, out_t);
    }

    /// 8 pixels: Y0..Y7, Cb0..Cb3, Cr0..Cr3 to four pgroups.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn planar_to_rfc_chunk(y: &[u8; 16], cb: &[u8; 8], cr: &[u8; 8], out: &mut [u8; 20]) {
        let mask = _mm_set1_epi16(0x3ff);
        let y = _mm_and_si128(load16(y), mask);
        let cbcr = _mm_and_si128(_mm_unpacklo_epi16(load8(cb), load8(cr)), mask);
        // Cb0 Y0 Cr0 Y1 Cb1 Y2 Cr1 Y3, then Cb2 Y4 Cr2 Y5 Cb3 Y6 Cr3 Y7.
        let lo = pack_pgroups(_mm_unpacklo_epi16(cbcr, y));
        let hi = pack_pgroups(_mm_unpackhi_epi16(cbcr, y));
        store16(
            window_mut(out, 0),
            _mm_or_si128(lo, _mm_slli_si128::<10>(hi)),
        );
        let tail = _mm_cvtsi128_si32(_mm_srli_si128::<6>(hi));
        out[16..].copy_from_slice(&tail.to_le_bytes());
    }

    #[target_feature(enable = "ssse3")]
    fn rfc_to_planar(inp: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<PLANAR_RFC>();
        let (y_c, y_t) = y.as_chunks_mut::<{ PLANAR_PIXELS * 2 }>();
        let (cb_c, cb_t) = cb.as_chunks_mut::<PLANAR_PIXELS>();
        let (cr_c, cr_t) = cr.as_chunks_mut::<PLANAR_PIXELS>();
        for (((i, y), cb), cr) in in_c.iter().zip(y_c).zip(cb_c).zip(cr_c) {
            rfc_to_planar_chunk(i, y, cb, cr);
        }
        scalar::rfc_to_planar(in_t, y_t, cb_t, cr_t);
    }

    /// Four pgroups to Y0..Y7, Cb0..Cb3, Cr0..Cr3.
    ///
    /// Pgroup `p` is bytes `5p..5p+5`; its samples Cb, Y0, Cr, Y1 sit in the byte pairs
    /// (0,1), (1,2), (2,3), (3,4) at 6, 4, 2, 0 bits from the bottom; a pair is gathered
    /// swapped, as a little-endian lane. Bytes 0..16 come from `a`, 16..20 from `b` (bytes 4..20).
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn rfc_to_planar_chunk(inp: &[u8; 20], y: &mut [u8; 16], cb: &mut [u8; 8], cr: &mut [u8; 8]) {
        let (a, b) = (load16(window(inp, 0)), load16(window(inp, 4)));
        let luma = _mm_or_si128(
            gather!(a, [2, 1, 4, 3, 7, 6, 9, 8, 12, 11, 14, 13, -1, -1, -1, -1]),
            gather!(
                b,
                [
                    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 13, 12, 15, 14
                ]
            ),
        );
        let chroma = _mm_or_si128(
            gather!(a, [1, 0, 6, 5, 11, 10, -1, -1, 3, 2, 8, 7, 13, 12, -1, -1]),
            gather!(
                b,
                [
                    -1, -1, -1, -1, -1, -1, 12, 11, -1, -1, -1, -1, -1, -1, 14, 13
                ]
            ),
        );
        let luma = samples(luma, _mm_setr_epi16(4, 64, 4, 64, 4, 64, 4, 64));
        let chroma = samples(chroma, _mm_setr_epi16(1, 1, 1, 1, 16, 16, 16, 16));
        store16(y, luma);
        store8(cb, chroma);
        store8(cr, _mm_srli_si128::<8>(chroma));
    }

    #[target_feature(enable = "ssse3")]
    fn v210_to_rfc(inp: &[u8], out: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<V210_V>();
        let (out_c, out_t) = out.as_chunks_mut::<V210_RFC>();
        for (i, o) in in_c.iter().zip(out_c) {
            v210_to_rfc_chunk(i, o);
        }
        scalar::v210_to_rfc(in_t, out_t);
    }

    /// Two v210 blocks (24 samples) to six pgroups.
    ///
    /// Sample `j` of a block is field `j % 3` of word `j / 3`: the byte pair `4k+f, 4k+f+1` at
    /// `2f` bits from the bottom. Gathered in stream order as three vectors of eight samples,
    /// each packs into two pgroups (10 bytes).
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn v210_to_rfc_chunk(inp: &[u8; 32], out: &mut [u8; 30]) {
        let (a, b) = (load16(window(inp, 0)), load16(window(inp, 16)));
        let s0 = gather!(a, [0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7, 8, 9, 9, 10]);
        let s1 = _mm_or_si128(
            gather!(
                a,
                [
                    10, 11, 12, 13, 13, 14, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1
                ]
            ),
            gather!(b, [-1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 1, 2, 2, 3, 4, 5]),
        );
        let s2 = gather!(b, [5, 6, 6, 7, 8, 9, 9, 10, 10, 11, 12, 13, 13, 14, 14, 15]);
        let p0 = pack_pgroups(samples(s0, _mm_setr_epi16(64, 16, 4, 64, 16, 4, 64, 16)));
        let p1 = pack_pgroups(samples(s1, _mm_setr_epi16(4, 64, 16, 4, 64, 16, 4, 64)));
        let p2 = pack_pgroups(samples(s2, _mm_setr_epi16(16, 4, 64, 16, 4, 64, 16, 4)));
        // Bytes 0..16, then 14..30: the two stores agree on bytes 14 and 15.
        store16(
            window_mut(out, 0),
            _mm_or_si128(p0, _mm_slli_si128::<10>(p1)),
        );
        let upper = _mm_or_si128(_mm_srli_si128::<4>(p1), _mm_slli_si128::<6>(p2));
        store16(window_mut(out, 14), upper);
    }

    #[target_feature(enable = "ssse3")]
    fn rfc_to_v210(inp: &[u8], out: &mut [u8]) {
        let (in_c, in_t) = inp.as_chunks::<V210_RFC>();
        let (out_c, out_t) = out.as_chunks_mut::<V210_V>();
        for (i, o) in in_c.iter().zip(out_c) {
            rfc_to_v210_chunk(i, o);
        }
        scalar::rfc_to_v210(in_t, out_t);
    }

    /// Six pgroups (24 samples) to two v210 blocks.
    ///
    /// Samples are gathered as in [`rfc_to_planar_chunk`], per block as `P` = the samples
    /// 0 1, 3 4, 6 7, 9 10 (the low two fields of each word) and `Q` = 2, 5, 8, 11 (the top
    /// field). Block A is bytes 0..15 (all in `a`), block B bytes 15..30 (in `b`, bytes 14..30).
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn rfc_to_v210_chunk(inp: &[u8; 30], out: &mut [u8; 32]) {
        let (a, b) = (load16(window(inp, 0)), load16(window(inp, 14)));
        let p_mul = _mm_setr_epi16(1, 4, 64, 1, 16, 64, 4, 16);
        let p_a = gather!(a, [1, 0, 2, 1, 4, 3, 6, 5, 8, 7, 9, 8, 12, 11, 13, 12]);
        let p_b = gather!(b, [2, 1, 3, 2, 5, 4, 7, 6, 9, 8, 10, 9, 13, 12, 14, 13]);
        let q = _mm_or_si128(
            gather!(
                a,
                [3, 2, 7, 6, 11, 10, 14, 13, -1, -1, -1, -1, -1, -1, -1, -1]
            ),
            gather!(
                b,
                [-1, -1, -1, -1, -1, -1, -1, -1, 4, 3, 8, 7, 12, 11, 15, 14]
            ),
        );
        let (p_a, p_b) = (samples(p_a, p_mul), samples(p_b, p_mul));
        let q = samples(q, _mm_setr_epi16(16, 4, 1, 64, 16, 4, 1, 64));
        let zero = _mm_setzero_si128();
        let words = |p: __m128i, top: __m128i| {
            let low = _mm_madd_epi16(p, _mm_setr_epi16(1, 1024, 1, 1024, 1, 1024, 1, 1024));
            _mm_or_si128(low, _mm_slli_epi32::<20>(top))
        };
        store16(window_mut(out, 0), words(p_a, _mm_unpacklo_epi16(q, zero)));
        store16(window_mut(out, 16), words(p_b, _mm_unpackhi_epi16(q, zero)));
    }
}

#[cfg(test)]
mod tests;
