//! Known answers derived by hand, round trips over seeded random frames, bands, the vector
//! kernels against the scalar ones, and every error.

use mcm_proto::config::payload::Video;

use super::*;

const LE: PixelFormat = PixelFormat::Yuv422p10le;
const V210: PixelFormat = PixelFormat::V210;
const RFC: PixelFormat = PixelFormat::Yuv422p10rfc4175;
/// The formats this module converts (`uyvy`, 8-bit, is refused).
const CONVERTED: [PixelFormat; 3] = [LE, V210, RFC];

/// SplitMix64: seeded random frames. (`proptest` is not a dev-dependency of this crate;
/// every case below runs a fixed list of seeds instead.)
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A valid frame in `fmt`: 10-bit samples (v210 top bits clear); any bytes for RFC 4175.
    fn frame(&mut self, fmt: PixelFormat, w: u32, h: u32) -> Vec<u8> {
        let mut buf = self.bytes(frame_bytes(fmt, w, h).unwrap());
        match fmt {
            LE => buf.chunks_exact_mut(2).for_each(|s| s[1] &= 0x03),
            V210 => buf.chunks_exact_mut(4).for_each(|s| s[3] &= 0x3f),
            RFC | PixelFormat::Uyvy => {}
        }
        buf
    }
}

// ---- Known answers ------------------------------------------------------------------
//
// Twelve samples, Cb0 Y0 Cr0 Y1 Cb1 Y2 Cr1 Y3 Cb2 Y4 Cr2 Y5 (six pixels):
//   3C0 040 2A5 11B | 001 200 3FF 000 | 155 2AA 0F0 30F
//
// RFC 4175, 10 bits each MSB first, 40 bits per pgroup:
//   1111000000 0001000000 1010100101 0100011011 = 11110000 00000100 00001010 10010101 00011011
//                                               = F0 04 0A 95 1B
//   0000000001 1000000000 1111111111 0000000000 = 00000000 01100000 00001111 11111100 00000000
//                                               = 00 60 0F FC 00
//   0101010101 1010101010 0011110000 1100001111 = 01010101 01101010 10100011 11000011 00001111
//                                               = 55 6A A3 C3 0F
// v210, word = s0 | s1 << 10 | s2 << 20, little-endian:
//   3C0 | 040 << 10 | 2A5 << 20 = 0x2A5103C0 = C0 03 51 2A
//   11B | 001 << 10 | 200 << 20 = 0x2000051B = 1B 05 00 20
//   3FF | 000 << 10 | 155 << 20 = 0x155003FF = FF 03 50 15
//   2AA | 0F0 << 10 | 30F << 20 = 0x30F3C2AA = AA C2 F3 30
// yuv422p10le: Y 040 11B 200 000 2AA 30F, Cb 3C0 001 155, Cr 2A5 3FF 0F0, little-endian u16.

const KAT_RFC: [u8; 15] = [
    0xF0, 0x04, 0x0A, 0x95, 0x1B, 0x00, 0x60, 0x0F, 0xFC, 0x00, 0x55, 0x6A, 0xA3, 0xC3, 0x0F,
];
const KAT_V210: [u8; 16] = [
    0xC0, 0x03, 0x51, 0x2A, 0x1B, 0x05, 0x00, 0x20, 0xFF, 0x03, 0x50, 0x15, 0xAA, 0xC2, 0xF3, 0x30,
];
const KAT_Y: [u16; 6] = [0x040, 0x11B, 0x200, 0x000, 0x2AA, 0x30F];
const KAT_CB: [u16; 3] = [0x3C0, 0x001, 0x155];
const KAT_CR: [u16; 3] = [0x2A5, 0x3FF, 0x0F0];

/// A `yuv422p10le` frame from its planes.
fn planar(y: &[u16], cb: &[u16], cr: &[u16]) -> Vec<u8> {
    [y, cb, cr]
        .concat()
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

/// The known-answer pattern repeated `reps` times along a line, over `h` lines.
fn kat_frames(reps: usize, h: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let n = reps * h;
    let (y, cb, cr) = (KAT_Y.repeat(n), KAT_CB.repeat(n), KAT_CR.repeat(n));
    (planar(&y, &cb, &cr), KAT_V210.repeat(n), KAT_RFC.repeat(n))
}

fn to_wire(fmt: PixelFormat, w: u32, h: u32, src: &[u8]) -> Vec<u8> {
    let mut dst = vec![0xee; frame_bytes(RFC, w, h).unwrap()];
    to_rfc4175(fmt, w, h, src, &mut dst).unwrap();
    dst
}

fn from_wire(fmt: PixelFormat, w: u32, h: u32, src: &[u8]) -> Vec<u8> {
    let mut dst = vec![0xee; frame_bytes(fmt, w, h).unwrap()];
    from_rfc4175(fmt, w, h, src, &mut dst).unwrap();
    dst
}

#[test]
fn one_pgroup_known_answer() {
    let le = planar(&[0x040, 0x11B], &[0x3C0], &[0x2A5]);
    assert_eq!(le, [0x40, 0x00, 0x1B, 0x01, 0xC0, 0x03, 0xA5, 0x02]);
    assert_eq!(to_wire(LE, 2, 1, &le), KAT_RFC[..5]);
    assert_eq!(from_wire(LE, 2, 1, &KAT_RFC[..5]), le);
    assert_eq!(to_wire(RFC, 2, 1, &KAT_RFC[..5]), KAT_RFC[..5]);
    assert_eq!(from_wire(RFC, 2, 1, &KAT_RFC[..5]), KAT_RFC[..5]);
}

#[test]
fn one_v210_block_known_answer() {
    let (le, v210, rfc) = kat_frames(1, 1);
    assert_eq!(to_wire(V210, 6, 1, &v210), rfc);
    assert_eq!(from_wire(V210, 6, 1, &rfc), v210);
    assert_eq!(to_wire(LE, 6, 1, &le), rfc);
    assert_eq!(from_wire(LE, 6, 1, &rfc), le);
}

/// The same answers through the vector kernels: wide enough for whole chunks and tails.
#[test]
fn known_answers_over_many_blocks() {
    for (reps, h) in [(2, 1), (3, 2), (4, 3), (7, 2), (320, 2)] {
        let w = 6 * reps as u32;
        let (le, v210, rfc) = kat_frames(reps, h as usize);
        assert_eq!(to_wire(V210, w, h, &v210), rfc, "{w}x{h}");
        assert_eq!(from_wire(V210, w, h, &rfc), v210, "{w}x{h}");
        assert_eq!(to_wire(LE, w, h, &le), rfc, "{w}x{h}");
        assert_eq!(from_wire(LE, w, h, &rfc), le, "{w}x{h}");
    }
}

/// Bits 10..16 of a `yuv422p10le` word count for nothing, in the scalar tail and the vectors.
#[test]
fn planar_values_above_10_bits_are_masked() {
    let (le, _, rfc) = kat_frames(4, 1);
    let mut dirty = le.clone();
    dirty.chunks_exact_mut(2).for_each(|s| s[1] |= 0xfc);
    assert_eq!(to_wire(LE, 24, 1, &dirty), rfc);
    for w in [2, 6, 16, 22] {
        let mut rng = Rng(u64::from(w));
        let clean = rng.frame(LE, w, 3);
        let mut dirty = clean.clone();
        dirty
            .chunks_exact_mut(2)
            .for_each(|s| s[1] |= (rng.next() as u8) & 0xfc);
        assert_eq!(to_wire(LE, w, 3, &dirty), to_wire(LE, w, 3, &clean), "{w}");
    }
}

#[test]
fn v210_top_bits_ignored_and_written_zero() {
    let (_, v210, rfc) = kat_frames(4, 2);
    let mut dirty = v210.clone();
    dirty.chunks_exact_mut(4).for_each(|s| s[3] |= 0xc0);
    assert_eq!(to_wire(V210, 24, 2, &dirty), rfc);
    let back = from_wire(V210, 24, 2, &[0xff; 60 * 2]);
    for word in back.chunks_exact(4) {
        assert_eq!(word, [0xff, 0xff, 0xff, 0x3f]);
    }
}

// ---- Round trips ----------------------------------------------------------------------

const WIDTHS: [u32; 10] = [2, 4, 6, 8, 10, 12, 18, 30, 1280, 1920];

#[test]
fn round_trips_over_random_frames() {
    let mut rng = Rng(7);
    for fmt in [LE, V210] {
        let widths = WIDTHS.iter().filter(|w| *w % width_multiple(fmt) == 0);
        for &w in widths {
            for h in [1, 2, 3, 5] {
                for _ in 0..4 {
                    let app = rng.frame(fmt, w, h);
                    let wire = to_wire(fmt, w, h, &app);
                    assert_eq!(from_wire(fmt, w, h, &wire), app, "{fmt:?} {w}x{h}");
                    let wire = rng.frame(RFC, w, h);
                    let app = from_wire(fmt, w, h, &wire);
                    assert_eq!(to_wire(fmt, w, h, &app), wire, "{fmt:?} {w}x{h}");
                }
            }
        }
    }
}

#[test]
fn round_trip_full_hd() {
    let mut rng = Rng(1080);
    for fmt in [LE, V210, RFC] {
        let app = rng.frame(fmt, 1920, 1080);
        let wire = to_wire(fmt, 1920, 1080, &app);
        assert_eq!(from_wire(fmt, 1920, 1080, &wire), app, "{fmt:?}");
    }
}

/// Converting a frame band by band gives the whole-frame result, and a band touches only
/// its own lines (of every plane).
#[test]
fn bands_match_whole_frames() {
    let mut rng = Rng(3);
    for fmt in [LE, V210, RFC] {
        for (w, h) in [(6, 1), (12, 7), (1920, 9)] {
            let app = rng.frame(fmt, w, h);
            let wire = rng.frame(RFC, w, h);
            let whole = (to_wire(fmt, w, h, &app), from_wire(fmt, w, h, &wire));
            let (mut tx, mut rx) = (vec![0xee; whole.0.len()], vec![0xee; whole.1.len()]);
            let mut start = 0;
            while start < h {
                let end = (start + 1 + rng.below(3) as u32).min(h);
                let (tx_before, rx_before) = (tx.clone(), rx.clone());
                to_rfc4175_lines(fmt, w, h, start..end, &app, &mut tx).unwrap();
                from_rfc4175_lines(fmt, w, h, start..end, &wire, &mut rx).unwrap();
                assert_only_band_changed(RFC, w, h, start..end, &tx_before, &tx);
                assert_only_band_changed(fmt, w, h, start..end, &rx_before, &rx);
                start = end;
            }
            assert_eq!((tx, rx), whole, "{fmt:?} {w}x{h}");
        }
    }
}

/// Every byte outside lines `band` of `fmt` is as it was.
fn assert_only_band_changed(
    fmt: PixelFormat,
    w: u32,
    h: u32,
    band: Range<u32>,
    before: &[u8],
    after: &[u8],
) {
    let frame = Frame::new(fmt, w, h).unwrap();
    let pixels = frame.width * frame.height;
    let (luma, chroma) = frame.plane_bands(&band);
    let inside = |i: usize| match fmt {
        LE if i < 2 * pixels => luma.contains(&i),
        LE => chroma.contains(&((i - 2 * pixels) % pixels)),
        _ => frame.band(&band).contains(&i),
    };
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if !inside(i) {
            assert_eq!(
                b, a,
                "{fmt:?} {w}x{h} {band:?}: byte {i} outside the band changed"
            );
        }
    }
}

#[test]
fn empty_bands_are_no_ops() {
    for fmt in CONVERTED {
        let (app, wire) = (
            frame_bytes(fmt, 12, 2).unwrap(),
            frame_bytes(RFC, 12, 2).unwrap(),
        );
        for start in 0..=2 {
            let mut dst = vec![0xee; wire];
            to_rfc4175_lines(fmt, 12, 2, start..start, &vec![0; app], &mut dst).unwrap();
            assert_eq!(dst, vec![0xee; wire], "{fmt:?}");
            let mut dst = vec![0xee; app];
            from_rfc4175_lines(fmt, 12, 2, start..start, &vec![0; wire], &mut dst).unwrap();
            assert_eq!(dst, vec![0xee; app], "{fmt:?}");
        }
    }
}

#[test]
fn bytes_past_the_frame_are_left_alone() {
    let (le, v210, rfc) = kat_frames(2, 2);
    for (fmt, app) in [(LE, &le), (V210, &v210), (RFC, &rfc)] {
        let mut wire = vec![0xee; rfc.len() + 7];
        to_rfc4175(fmt, 12, 2, app, &mut wire).unwrap();
        assert_eq!(wire[..rfc.len()], rfc[..]);
        assert_eq!(wire[rfc.len()..], [0xee; 7]);
        let mut out = vec![0xee; app.len() + 7];
        from_rfc4175(fmt, 12, 2, &rfc, &mut out).unwrap();
        assert_eq!(out[..app.len()], app[..]);
        assert_eq!(out[app.len()..], [0xee; 7]);
    }
}

// ---- Vector kernels against scalar ones ------------------------------------------------

#[cfg(target_arch = "x86_64")]
#[test]
fn vector_kernels_match_scalar() {
    let Some(cpu) = x86::Ssse3::detect() else {
        eprintln!("no SSSE3 on this CPU: the vector kernels are not compared");
        return;
    };
    let mut rng = Rng(42);
    for _ in 0..300 {
        // Pgroups and blocks around multiples of the chunk sizes (4 pgroups, 2 blocks).
        let n = rng.below(40) as usize;
        let fill = rng.next() as u8;
        let (y, cb, cr) = (rng.bytes(4 * n), rng.bytes(2 * n), rng.bytes(2 * n));
        let (mut a, mut b) = (vec![fill; 5 * n], vec![fill; 5 * n]);
        cpu.planar_to_rfc(&y, &cb, &cr, &mut a);
        scalar::planar_to_rfc(&y, &cb, &cr, &mut b);
        assert_eq!(a, b, "planar_to_rfc, {n} pgroups");

        let rfc = rng.bytes(5 * n);
        let mut a = [vec![fill; 4 * n], vec![fill; 2 * n], vec![fill; 2 * n]];
        let mut b = a.clone();
        let [ay, acb, acr] = &mut a;
        cpu.rfc_to_planar(&rfc, ay, acb, acr);
        let [by, bcb, bcr] = &mut b;
        scalar::rfc_to_planar(&rfc, by, bcb, bcr);
        assert_eq!(a, b, "rfc_to_planar, {n} pgroups");

        let v210 = rng.bytes(16 * n);
        let (mut a, mut b) = (vec![fill; 15 * n], vec![fill; 15 * n]);
        cpu.v210_to_rfc(&v210, &mut a);
        scalar::v210_to_rfc(&v210, &mut b);
        assert_eq!(a, b, "v210_to_rfc, {n} blocks");

        let rfc = rng.bytes(15 * n);
        let (mut a, mut b) = (vec![fill; 16 * n], vec![fill; 16 * n]);
        cpu.rfc_to_v210(&rfc, &mut a);
        scalar::rfc_to_v210(&rfc, &mut b);
        assert_eq!(a, b, "rfc_to_v210, {n} blocks");
    }
}

#[test]
fn scalar_pgroup_known_answer() {
    assert_eq!(
        scalar::pack_pgroup(0x3C0, 0x040, 0x2A5, 0x11B),
        KAT_RFC[..5]
    );
    assert_eq!(
        scalar::pack_pgroup(0xFFC0, 0xFC40, 0x2A5, 0x11B),
        KAT_RFC[..5]
    );
    assert_eq!(
        scalar::unpack_pgroup(&KAT_RFC[..5]),
        [0x3C0, 0x040, 0x2A5, 0x11B]
    );
}

// ---- Geometry and sizes ---------------------------------------------------------------

#[test]
fn frame_sizes_are_mcms() {
    let at_1080 = [(LE, 8_294_400), (V210, 5_529_600), (RFC, 5_184_000)];
    for (fmt, size) in at_1080 {
        assert_eq!(frame_bytes(fmt, 1920, 1080), Some(size), "{fmt:?}");
    }
    for fmt in CONVERTED {
        for w in (1..=64).chain([1280, 1920, 3840]) {
            for h in [1, 2, 3, 720, 1080] {
                let Some(size) = frame_bytes(fmt, w, h) else {
                    assert!(w % width_multiple(fmt) != 0, "{fmt:?} {w}x{h}");
                    continue;
                };
                assert_eq!(w % width_multiple(fmt), 0);
                let video = Video {
                    width: w,
                    height: h,
                    fps: 60.0,
                    pixel_format: fmt,
                };
                assert_eq!(Some(size as u64), video.frame_size(), "{fmt:?} {w}x{h}");
            }
        }
    }
}

#[test]
fn format_names() {
    for fmt in CONVERTED {
        let name = fmt.as_str();
        assert_eq!(parse_format(name), Some(fmt));
        assert_eq!(fmt.as_str(), name);
    }
    assert_eq!(parse_format("yuv422p10le"), Some(LE));
    assert_eq!(parse_format("v210"), Some(V210));
    assert_eq!(parse_format("yuv422p10rfc4175"), Some(RFC));
    for bad in ["", "V210", "yuv422p10be", "v210 ", "nv12"] {
        assert_eq!(parse_format(bad), None, "{bad:?}");
    }
}

/// Both directions with buffers of the right size for `fmt` at `w`×`h` (or 64 bytes).
fn both(fmt: PixelFormat, w: u32, h: u32, lines: Range<u32>) -> [Result<(), ConvertError>; 2] {
    let app = frame_bytes(fmt, w, h).unwrap_or(64);
    let wire = frame_bytes(RFC, w, h).unwrap_or(64);
    let (src, mut dst) = (vec![0; app], vec![0; wire]);
    let tx = to_rfc4175_lines(fmt, w, h, lines.clone(), &src, &mut dst);
    let (src, mut dst) = (vec![0; wire], vec![0; app]);
    let rx = from_rfc4175_lines(fmt, w, h, lines, &src, &mut dst);
    [tx, rx]
}

#[test]
fn widths_that_do_not_split_are_refused() {
    let cases = [
        (LE, [0, 1, 3, 1919].as_slice()),
        (RFC, &[0, 1, 5, 1921]),
        (V210, &[0, 1, 2, 3, 4, 8, 10, 1280, 1922]),
    ];
    for (fmt, widths) in cases {
        for &w in widths {
            assert_eq!(frame_bytes(fmt, w, 2), None, "{fmt:?} {w}");
            let err = ConvertError::Width {
                format: fmt,
                width: w,
            };
            assert_eq!(both(fmt, w, 2, 0..2), [Err(err); 2], "{fmt:?} {w}");
        }
    }
    let err = both(V210, 1280, 720, 0..720)[0].unwrap_err();
    assert_eq!(
        err.to_string(),
        "width 1280 cannot be converted as v210: it must be a positive multiple of 6"
    );
    let err = both(LE, 0, 720, 0..720)[1].unwrap_err();
    assert_eq!(
        err.to_string(),
        "width 0 cannot be converted as yuv422p10le: it must be a positive multiple of 2"
    );
}

#[test]
fn zero_height_is_refused() {
    for fmt in CONVERTED {
        assert_eq!(frame_bytes(fmt, 12, 0), None);
        assert_eq!(both(fmt, 12, 0, 0..0), [Err(ConvertError::ZeroHeight); 2]);
    }
    assert_eq!(
        ConvertError::ZeroHeight.to_string(),
        "height 0 cannot be converted: a frame has at least one line"
    );
}

#[test]
fn frames_too_large_for_memory_are_refused() {
    let (w, h) = (u32::MAX - 3, u32::MAX); // a multiple of 6
    for fmt in CONVERTED {
        assert_eq!(frame_bytes(fmt, w, h), None, "{fmt:?}");
        let err = ConvertError::TooLarge {
            format: fmt,
            width: w,
            height: h,
        };
        assert_eq!(both(fmt, w, h, 0..1), [Err(err); 2], "{fmt:?}");
    }
    let err = both(V210, w, h, 0..1)[0].unwrap_err();
    assert_eq!(
        err.to_string(),
        "a 4294967292x4294967295 v210 frame does not fit in memory"
    );
    // The largest MCM frame (16384 lines of 16384 pixels) is fine.
    assert_eq!(frame_bytes(LE, 16384, 16384), Some(1 << 30));
}

#[test]
fn bands_outside_the_frame_are_refused() {
    let bad = [(0, 3), (2, 3), (3, 3), (2, 1), (u32::MAX, 0), (0, u32::MAX)];
    for fmt in CONVERTED {
        for (start, end) in bad {
            let err = ConvertError::Lines {
                start,
                end,
                height: 2,
            };
            assert_eq!(both(fmt, 6, 2, start..end), [Err(err); 2], "{fmt:?}");
        }
        for (start, end) in [(0, 0), (0, 1), (1, 2), (0, 2), (2, 2)] {
            assert_eq!(both(fmt, 6, 2, start..end), [Ok(()); 2], "{fmt:?}");
        }
    }
    let err = both(RFC, 6, 2, 1..3)[1].unwrap_err();
    assert_eq!(
        err.to_string(),
        "lines 1..3 are not a band inside a frame of lines 0..2"
    );
}

#[test]
fn buffers_too_small_are_refused_before_writing() {
    for fmt in CONVERTED {
        let (app, wire) = (
            frame_bytes(fmt, 12, 2).unwrap(),
            frame_bytes(RFC, 12, 2).unwrap(),
        );
        let mut dst = vec![0xee; wire];
        let err = to_rfc4175(fmt, 12, 2, &vec![0; app - 1], &mut dst);
        let want = ConvertError::SrcTooSmall {
            format: fmt,
            needed: app,
            len: app - 1,
        };
        assert_eq!(err, Err(want), "{fmt:?}");
        let mut dst = vec![0xee; wire - 1];
        let err = to_rfc4175(fmt, 12, 2, &vec![0; app], &mut dst);
        let want = ConvertError::DstTooSmall {
            format: RFC,
            needed: wire,
            len: wire - 1,
        };
        assert_eq!(err, Err(want), "{fmt:?}");
        assert!(dst.iter().all(|b| *b == 0xee));

        let mut dst = vec![0xee; app];
        let err = from_rfc4175(fmt, 12, 2, &vec![0; wire - 1], &mut dst);
        let want = ConvertError::SrcTooSmall {
            format: RFC,
            needed: wire,
            len: wire - 1,
        };
        assert_eq!(err, Err(want), "{fmt:?}");
        assert!(dst.iter().all(|b| *b == 0xee));
        let mut dst = vec![0xee; app - 1];
        let err = from_rfc4175_lines(fmt, 12, 2, 0..1, &vec![0; wire], &mut dst);
        let want = ConvertError::DstTooSmall {
            format: fmt,
            needed: app,
            len: app - 1,
        };
        assert_eq!(err, Err(want), "{fmt:?}");
        assert!(dst.iter().all(|b| *b == 0xee));
    }
    let err = to_rfc4175(V210, 12, 2, &[0; 63], &mut [0; 60]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "source buffer is 63 bytes, a v210 frame needs 64"
    );
    let err = from_rfc4175(LE, 12, 2, &[0; 60], &mut [0; 95]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "destination buffer is 95 bytes, a yuv422p10le frame needs 96"
    );
}

/// Geometry is judged before buffer sizes, the band before buffer sizes.
#[test]
fn error_order() {
    assert_eq!(
        to_rfc4175(V210, 8, 0, &[], &mut []),
        Err(ConvertError::Width {
            format: V210,
            width: 8
        })
    );
    assert_eq!(
        to_rfc4175(V210, 6, 0, &[], &mut []),
        Err(ConvertError::ZeroHeight)
    );
    assert_eq!(
        from_rfc4175_lines(V210, 6, 1, 0..2, &[], &mut []),
        Err(ConvertError::Lines {
            start: 0,
            end: 2,
            height: 1
        })
    );
}

/// Converts a 1920x1080 frame many times each way and prints the rate; it checks only that
/// the last round trip is exact. For a figure, run in release:
/// `cargo test --release -p mcm-engine --lib st2110::convert::tests::rate -- --nocapture`.
#[test]
fn rate_at_1080p() {
    use std::hint::black_box;
    use std::time::Instant;
    let (w, h) = (1920, 1080);
    let iters = if cfg!(debug_assertions) { 2 } else { 200 };
    let mut rng = Rng(60);
    let wire = rng.frame(RFC, w, h);
    let mut back = vec![0; wire.len()];
    for fmt in [LE, V210] {
        let mut app = vec![0; frame_bytes(fmt, w, h).unwrap()];
        let t = Instant::now();
        for _ in 0..iters {
            from_rfc4175(fmt, w, h, black_box(&wire), &mut app).unwrap();
        }
        let rx = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..iters {
            to_rfc4175(fmt, w, h, black_box(&app), &mut back).unwrap();
        }
        let tx = t.elapsed().as_secs_f64();
        assert_eq!(back, wire, "{fmt:?}");
        let mb = (wire.len() * iters) as f64 / 1e6;
        println!(
            "1920x1080 {}: from_rfc4175 {:.0} MB/s ({:.0} frames/s), to_rfc4175 {:.0} MB/s \
             ({:.0} frames/s); MB counted on the rfc4175 side",
            fmt.as_str(),
            mb / rx,
            iters as f64 / rx,
            mb / tx,
            iters as f64 / tx,
        );
    }
}

#[test]
fn fuzz_random_inputs() {
    let mut rng = Rng(2110);
    for _ in 0..2000 {
        let (w, h) = (rng.below(64) as u8, rng.below(8) as u8);
        let fmt = rng.next() as u8;
        let len = rng.below(3 * 4 * 64 * 8) as usize;
        let data = [vec![fmt, w, h], rng.bytes(len)].concat();
        fuzz(&data);
    }
    for len in 0..4 {
        fuzz(&vec![2; len]);
    }
}

#[test]
fn eight_bit_uyvy_is_refused_with_a_reason() {
    let mut out = vec![0u8; 64];
    let e = to_rfc4175(PixelFormat::Uyvy, 2, 2, &[0; 8], &mut out).unwrap_err();
    assert_eq!(
        e,
        ConvertError::Format {
            format: PixelFormat::Uyvy
        }
    );
    assert!(
        e.to_string().contains("uyvy frames are not converted"),
        "{e}"
    );
    assert!(from_rfc4175(PixelFormat::Uyvy, 2, 2, &[0; 5], &mut out).is_err());
    assert_eq!(frame_bytes(PixelFormat::Uyvy, 2, 2), None);
}
