use super::*;
use crate::st2110::rtp::{HEADER_LEN, Header, SeqExtender};
use crate::st2110::{Depth, Sampling};
use proptest::prelude::*;

const ALL_SAMPLINGS: [Sampling; 4] = [
    Sampling::YCbCr422,
    Sampling::YCbCr420,
    Sampling::YCbCr444,
    Sampling::Rgb,
];
const ALL_DEPTHS: [Depth; 4] = [Depth::D8, Depth::D10, Depth::D12, Depth::D16];

fn format(sampling: Sampling, depth: Depth, width: u32, height: u32) -> Format {
    Format::new(sampling, depth, width, height).unwrap()
}

fn uhd422_10(width: u32, height: u32) -> Format {
    format(Sampling::YCbCr422, Depth::D10, width, height)
}

/// Every supported format, at a small size that fits three pgroups per row.
fn small_formats() -> Vec<Format> {
    let mut out = Vec::new();
    for s in ALL_SAMPLINGS {
        for d in ALL_DEPTHS {
            if let Some(pg) = pgroup(s, d) {
                let lines = if s == Sampling::YCbCr420 { 2 } else { 1 };
                out.push(format(s, d, 3 * pg.pixels / lines, 4 * lines));
            }
        }
    }
    out
}

/// A frame of pseudo-random bytes (xorshift).
fn picture(format: &Format, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..format.frame_bytes())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Whole RTP packets of one frame, as a sender using `pk` builds them.
fn send(pk: &Packetizer, frame: &[u8], ts: u32, first_seq: u32) -> Vec<Vec<u8>> {
    let n = pk.packets_per_frame();
    (0..n)
        .map(|i| {
            let ext = first_seq.wrapping_add(i);
            let header = Header {
                marker: i + 1 == n,
                payload_type: 96,
                sequence_number: ext as u16,
                timestamp: ts,
                ssrc: 7,
            };
            let mut p = header.to_bytes().to_vec();
            let mut heads = [0; MAX_HEADERS_LEN];
            let len = pk.headers(i, ext, &mut heads);
            p.extend_from_slice(&heads[..len]);
            p.extend_from_slice(&frame[pk.data(i)]);
            p
        })
        .collect()
}

/// A packet from raw parts: RTP header, then payload bytes.
fn raw(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        marker,
        payload_type: 96,
        sequence_number: seq,
        timestamp: ts,
        ssrc: 7,
    };
    let mut p = header.to_bytes().to_vec();
    p.extend_from_slice(payload);
    p
}

fn payload_of(srds: &[Srd], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    for (i, srd) in srds.iter().enumerate() {
        let mut head = [0; Srd::LEN];
        Srd {
            continuation: i + 1 < srds.len(),
            ..*srd
        }
        .emit(&mut head);
        out.extend_from_slice(&head);
    }
    out.extend_from_slice(data);
    out
}

#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    refuse: bool,
    begins: Vec<u32>,
    frames: Vec<(FrameReport, Vec<u8>)>,
    open: bool,
}

impl Sink {
    const FILL: u8 = 0xee;

    fn new(format: &Format) -> Self {
        Self {
            buf: vec![Self::FILL; format.frame_bytes()],
            ..Self::default()
        }
    }

    fn reports(&self) -> Vec<FrameReport> {
        self.frames.iter().map(|(r, _)| *r).collect()
    }
}

impl FrameSink for Sink {
    fn begin(&mut self, rtp_timestamp: u32) -> bool {
        assert!(!self.open);
        self.begins.push(rtp_timestamp);
        self.buf.fill(Self::FILL);
        self.open = !self.refuse;
        !self.refuse
    }

    fn buffer(&mut self) -> &mut [u8] {
        assert!(self.open);
        &mut self.buf
    }

    fn end(&mut self, report: &FrameReport) {
        assert!(self.open);
        self.open = false;
        self.frames.push((*report, self.buf.clone()));
    }
}

fn push_all<'a>(
    d: &mut Depacketizer,
    sink: &mut Sink,
    packets: impl IntoIterator<Item = &'a Vec<u8>>,
) -> Vec<Pushed> {
    packets
        .into_iter()
        .map(|p| d.push(p, sink).unwrap())
        .collect()
}

fn assert_counters_add_up(d: &Depacketizer, pushes: u64) {
    let c = d.counters();
    assert_eq!(
        pushes,
        c.packets + c.late + c.duplicates + c.malformed + c.stray + c.dropped_packets,
        "{c:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// pgroups and formats

#[test]
fn pgroup_table_is_st2110_20s() {
    let want = |s, d| match (s, d) {
        (Sampling::YCbCr422, Depth::D8) => Some((4, 2)),
        (Sampling::YCbCr422, Depth::D10) => Some((5, 2)),
        (Sampling::YCbCr422, Depth::D12) => Some((6, 2)),
        (Sampling::YCbCr422, Depth::D16) => Some((8, 2)),
        (Sampling::YCbCr420, Depth::D8) => Some((6, 4)),
        (Sampling::YCbCr420, Depth::D10) => Some((15, 8)),
        (Sampling::YCbCr420, Depth::D12) => Some((9, 4)),
        (Sampling::YCbCr420, Depth::D16) => None,
        (_, Depth::D8) => Some((3, 1)),
        (_, Depth::D10) => Some((15, 4)),
        (_, Depth::D12) => Some((9, 2)),
        (_, Depth::D16) => Some((6, 1)),
    };
    for s in ALL_SAMPLINGS {
        for d in ALL_DEPTHS {
            assert_eq!(
                pgroup(s, d).map(|p| (p.bytes, p.pixels)),
                want(s, d),
                "{s} {d}"
            );
            if let Some(pg) = pgroup(s, d) {
                // Bits per pgroup = components per pixel (3; 1.5 for 4:2:0, 2 for 4:2:2) x depth.
                let per_pixel_x2 = match s {
                    Sampling::YCbCr422 => 4,
                    Sampling::YCbCr420 => 3,
                    _ => 6,
                };
                assert_eq!(
                    pg.bytes * 8 * 2,
                    pg.pixels * per_pixel_x2 * d.bits(),
                    "{s} {d}"
                );
            }
        }
    }
}

#[test]
fn format_geometry_known_answers() {
    // (format, pgroup width, lines, rows, line bytes, frame bytes)
    let cases = [
        (uhd422_10(1920, 1080), 2, 1, 1080, 4800, 5_184_000),
        (
            format(Sampling::YCbCr422, Depth::D8, 1920, 1080),
            2,
            1,
            1080,
            3840,
            4_147_200,
        ),
        (uhd422_10(3840, 2160), 2, 1, 2160, 9600, 20_736_000),
        (
            format(Sampling::YCbCr420, Depth::D8, 1920, 1080),
            2,
            2,
            540,
            5760,
            3_110_400,
        ),
        (
            format(Sampling::YCbCr420, Depth::D10, 1920, 1080),
            4,
            2,
            540,
            7200,
            3_888_000,
        ),
        (
            format(Sampling::YCbCr420, Depth::D12, 1920, 1080),
            2,
            2,
            540,
            8640,
            4_665_600,
        ),
        (
            format(Sampling::Rgb, Depth::D8, 1920, 1080),
            1,
            1,
            1080,
            5760,
            6_220_800,
        ),
        (
            format(Sampling::Rgb, Depth::D10, 1920, 1080),
            4,
            1,
            1080,
            7200,
            7_776_000,
        ),
        (
            format(Sampling::YCbCr444, Depth::D16, 1280, 720),
            1,
            1,
            720,
            7680,
            5_529_600,
        ),
    ];
    for (f, width, lines, rows, line_bytes, frame_bytes) in cases {
        assert_eq!(
            (
                f.pgroup_width(),
                f.pgroup_lines(),
                f.rows(),
                f.line_bytes(),
                f.frame_bytes()
            ),
            (width, lines, rows, line_bytes, frame_bytes),
            "{f:?}"
        );
        assert_eq!(
            f.frame_pgroups() * f.pgroup().bytes as usize,
            f.frame_bytes()
        );
        assert_eq!(f.row_pgroups() * f.pgroup_width(), f.width());
    }
    let f = uhd422_10(1920, 1080);
    assert_eq!(
        (f.sampling(), f.depth(), f.width(), f.height()),
        (Sampling::YCbCr422, Depth::D10, 1920, 1080)
    );
}

#[test]
fn formats_are_validated() {
    let e = Format::new(Sampling::YCbCr420, Depth::D16, 16, 16).unwrap_err();
    assert_eq!(
        e,
        FormatError::Unsupported {
            sampling: Sampling::YCbCr420,
            depth: Depth::D16
        }
    );
    assert!(e.to_string().contains("YCbCr-4:2:0 at 16 bits"), "{e}");
    for (s, d, w, multiple) in [
        (Sampling::YCbCr422, Depth::D10, 0, 2),
        (Sampling::YCbCr422, Depth::D10, 1919, 2),
        (Sampling::YCbCr420, Depth::D10, 1918, 4),
        (Sampling::Rgb, Depth::D10, 1918, 4),
        (Sampling::Rgb, Depth::D12, 7, 2),
    ] {
        let e = Format::new(s, d, w, 2).unwrap_err();
        assert_eq!(e, FormatError::Width { width: w, multiple });
        assert!(
            e.to_string()
                .contains(&format!("multiple of {multiple} pixels")),
            "{e}"
        );
    }
    assert_eq!(
        Format::new(Sampling::YCbCr422, Depth::D8, 2, 0).unwrap_err(),
        FormatError::Height {
            height: 0,
            multiple: 1
        }
    );
    let e = Format::new(Sampling::YCbCr420, Depth::D8, 2, 1081).unwrap_err();
    assert_eq!(
        e,
        FormatError::Height {
            height: 1081,
            multiple: 2
        }
    );
    assert!(e.to_string().contains("multiple of 2 lines"), "{e}");
    assert!(Format::new(Sampling::Rgb, Depth::D8, MAX_DIMENSION, MAX_DIMENSION).is_ok());
    for (w, h) in [(MAX_DIMENSION + 2, 2), (2, MAX_DIMENSION + 1)] {
        let e = Format::new(Sampling::YCbCr422, Depth::D8, w, h).unwrap_err();
        assert_eq!(
            e,
            FormatError::TooLarge {
                width: w,
                height: h
            }
        );
        assert!(e.to_string().contains("at most 32768"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// SRD headers and payloads

#[test]
fn srd_known_answers() {
    // Length 1200 = 0x04b0; F=0, line 1079 = 0x0437; C=1, offset 960 = 0x03c0.
    let srd = Srd {
        length: 1200,
        field: false,
        line: 1079,
        continuation: true,
        offset: 960,
    };
    let bytes = [0x04, 0xb0, 0x04, 0x37, 0x83, 0xc0];
    let mut out = [0; 6];
    srd.emit(&mut out);
    assert_eq!(out, bytes);
    assert_eq!(Srd::parse(&bytes), srd);
    // The extreme bits: F=1 with line 0x7fff, C=0 with offset 0x7fff.
    let top = Srd {
        length: 0xffff,
        field: true,
        line: 0x7fff,
        continuation: false,
        offset: 0x7fff,
    };
    top.emit(&mut out);
    assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0x7f, 0xff]);
    assert_eq!(Srd::parse(&out), top);
    // Out-of-range line and offset lose their 16th bit rather than set F or C.
    Srd {
        line: 0x8001,
        offset: 0x8002,
        ..Srd::default()
    }
    .emit(&mut out);
    assert_eq!(out, [0, 0, 0x00, 0x01, 0x00, 0x02]);
}

/// ESN 1; SRD line 0, offset 1918, 5 octets (C=1); SRD line 1, offset 0, 30 octets; the data.
fn two_srd_payload() -> Vec<u8> {
    let mut p = vec![
        0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x87, 0x7e, 0x00, 0x1e, 0x00, 0x01, 0x00, 0x00,
    ];
    p.extend(0..35u8);
    p
}

#[test]
fn two_srd_payload_known_answer() {
    let bytes = two_srd_payload();
    let p = Payload::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        (p.extended_sequence_number(), p.srd_count(), p.headers_len()),
        (1, 2, 14)
    );
    assert_eq!(
        p.srd(0),
        Some(Srd {
            length: 5,
            field: false,
            line: 0,
            continuation: true,
            offset: 1918
        })
    );
    assert_eq!(
        p.srd(1),
        Some(Srd {
            length: 30,
            field: false,
            line: 1,
            continuation: false,
            offset: 0
        })
    );
    assert_eq!(p.srd(2), None);
    let segments: Vec<_> = p.segments().collect();
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[0].1, &[0, 1, 2, 3, 4]);
    assert_eq!(segments[1].1, (5..35).collect::<Vec<u8>>());

    // The packetizer writes these very headers: 1080p 4:2:2 10-bit in 35-octet packets,
    // packet 137 holds frame bytes 4795..4830, the last pgroup of line 0 and six of line 1.
    let pk = Packetizer::new(uhd422_10(1920, 1080), PackingMode::Gpm, 35).unwrap();
    assert_eq!(pk.data(137), 4795..4830);
    let mut out = [0; MAX_HEADERS_LEN];
    assert_eq!(pk.headers(137, 0x0001_0089, &mut out), 14);
    assert_eq!(out[..14], bytes[..14]);
}

#[test]
fn payload_errors() {
    assert_eq!(
        Payload::new_checked(&[][..]).unwrap_err(),
        PacketError::Truncated
    );
    assert_eq!(
        Payload::new_checked(&[0][..]).unwrap_err(),
        PacketError::Truncated
    );
    let bytes = two_srd_payload();
    for len in 0..14 {
        assert_eq!(
            Payload::new_checked(&bytes[..len]).unwrap_err(),
            PacketError::Truncated,
            "len {len}"
        );
    }
    for len in 14..49 {
        assert_eq!(
            Payload::new_checked(&bytes[..len]).unwrap_err(),
            PacketError::DataOverrun,
            "len {len}"
        );
    }
    assert!(Payload::new_checked(&bytes[..]).is_ok());
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[9, 9]);
    let p = Payload::new_checked(&longer[..]).unwrap();
    assert_eq!(p.data().len(), 37, "trailing octets stay in data()");
    assert_eq!(
        p.segments().map(|(_, d)| d.len()).sum::<usize>(),
        35,
        "but belong to no SRD"
    );

    // Exactly MAX_RECEIVED_SRDS headers are fine, one more is refused.
    let srd = Srd {
        length: 1,
        ..Srd::default()
    };
    let data = vec![0; MAX_RECEIVED_SRDS + 1];
    let most = payload_of(&vec![srd; MAX_RECEIVED_SRDS], &data);
    assert_eq!(
        Payload::new_checked(&most[..]).unwrap().srd_count(),
        MAX_RECEIVED_SRDS
    );
    let too_many = payload_of(&vec![srd; MAX_RECEIVED_SRDS + 1], &data);
    assert_eq!(
        Payload::new_checked(&too_many[..]).unwrap_err(),
        PacketError::TooManySrds
    );
    for e in [
        PacketError::Rtp(rtp::Error::Truncated),
        PacketError::Truncated,
        PacketError::TooManySrds,
        PacketError::DataOverrun,
        PacketError::BadLength,
        PacketError::BadLine,
        PacketError::BadOffset,
        PacketError::FieldBit,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Packetizer

/// Every packet's SRDs describe exactly its data range, the ranges tile the frame in order, and
/// the headers obey ST 2110-20 (1..=3 SRDs, C on all but the last, ESN = high half).
fn check_plan(pk: &Packetizer) -> Vec<Vec<Srd>> {
    let f = pk.format();
    let (pg, row) = (f.pgroup().bytes as usize, f.line_bytes());
    let mut next = 0;
    let mut all = Vec::new();
    for i in 0..pk.packets_per_frame() {
        let range = pk.data(i);
        assert_eq!(
            range.start, next,
            "packet {i} starts where the previous ended"
        );
        assert!(
            range.end > range.start && range.len().is_multiple_of(pg),
            "packet {i}: {range:?}"
        );
        next = range.end;
        let mut buf = [0xaa; MAX_HEADERS_LEN + 1];
        let ext = 0x1234_0000 | i;
        let len = pk.headers(i, ext, &mut buf);
        assert_eq!(buf[MAX_HEADERS_LEN], 0xaa);
        let mut bytes = buf[..len].to_vec();
        bytes.extend(std::iter::repeat_n(0, range.len()));
        let p = Payload::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.extended_sequence_number(), 0x1234);
        assert!((1..=MAX_SRDS).contains(&p.srd_count()));
        assert_eq!(p.data().len(), range.len());
        let mut at = range.start;
        let mut srds = Vec::new();
        for (srd, _) in p.segments() {
            let r = usize::from(srd.line) / f.pgroup_lines() as usize;
            assert_eq!(usize::from(srd.line) % f.pgroup_lines() as usize, 0);
            let start = r * row + usize::from(srd.offset) / f.pgroup_width() as usize * pg;
            assert_eq!(start, at, "packet {i}: SRD {srd:?} is where the data is");
            assert!(usize::from(srd.offset) % f.pgroup_width() as usize == 0 && !srd.field);
            assert!(
                start + usize::from(srd.length) <= (r + 1) * row,
                "an SRD stays in its row"
            );
            at += usize::from(srd.length);
            assert_eq!(srd.continuation, srds.len() + 1 < p.srd_count());
            srds.push(Srd {
                continuation: false,
                ..srd
            });
        }
        assert_eq!(at, range.end);
        all.push(srds);
    }
    assert_eq!(next, f.frame_bytes(), "the packets tile the frame");
    all
}

#[test]
fn gpm_1080p_10bit_at_1200_octets_is_4320_packets_four_per_line() {
    let pk = Packetizer::new(uhd422_10(1920, 1080), PackingMode::Gpm, 1200).unwrap();
    assert_eq!(
        (pk.packets_per_frame(), pk.mode(), pk.format()),
        (4320, PackingMode::Gpm, uhd422_10(1920, 1080))
    );
    let plan = check_plan(&pk);
    for (i, srds) in plan.iter().enumerate() {
        let want = Srd {
            length: 1200,
            field: false,
            line: (i / 4) as u16,
            continuation: false,
            offset: (i % 4 * 480) as u16,
        };
        assert_eq!(srds[..], [want]);
    }
    let mut out = [0; MAX_HEADERS_LEN];
    assert_eq!(pk.headers(4319, 0xbeef_10df, &mut out), 8);
    // ESN 0xbeef; length 1200; line 1079; offset 1440 = 0x05a0.
    assert_eq!(out[..8], [0xbe, 0xef, 0x04, 0xb0, 0x04, 0x37, 0x05, 0xa0]);
    assert_eq!(pk.data(4319), 5_182_800..5_184_000);

    let uhd = Packetizer::new(uhd422_10(3840, 2160), PackingMode::Gpm, 1200).unwrap();
    assert_eq!(uhd.packets_per_frame(), 17280);
    check_plan(&uhd);
}

#[test]
fn gpm_gstreamer_like_payloads_span_lines_with_two_srds() {
    // GStreamer's default MTU leaves 1388 payload octets: 2 ESN + 2 SRDs + 1374 of data,
    // rounded down to 1370 (274 pgroups of 5).
    let pk = Packetizer::new(uhd422_10(1920, 1080), PackingMode::Gpm, 1374).unwrap();
    assert_eq!(pk.packets_per_frame(), 5_184_000_u32.div_ceil(1370));
    let plan = check_plan(&pk);
    // 1079 line ends inside the frame; those at multiples of lcm(1370, 4800) = 657600 (7 of
    // them) fall between packets, every other one inside a packet.
    assert_eq!(plan.iter().filter(|s| s.len() == 2).count(), 1079 - 7);
    assert!(plan.iter().all(|s| s.len() <= 2));
    assert_eq!(
        plan[3],
        [
            Srd {
                length: 690,
                line: 0,
                offset: 1644,
                continuation: false,
                field: false
            },
            Srd {
                length: 680,
                line: 1,
                offset: 0,
                ..Srd::default()
            }
        ]
    );
    assert_eq!(pk.data(3784 - 1).len(), 5_184_000 - 3783 * 1370);
}

#[test]
fn gpm_never_puts_more_than_three_srds_in_a_packet() {
    // 32 octets per row: a 1200-octet budget would cover 37 rows, three is the limit.
    let pk = Packetizer::new(
        format(Sampling::YCbCr422, Depth::D8, 16, 8),
        PackingMode::Gpm,
        1200,
    )
    .unwrap();
    let plan = check_plan(&pk);
    assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
    // Starting mid-row, the third row is cut short.
    let pk = Packetizer::new(
        format(Sampling::YCbCr422, Depth::D8, 16, 8),
        PackingMode::Gpm,
        84,
    )
    .unwrap();
    let plan = check_plan(&pk);
    assert_eq!(
        (pk.data(0), pk.data(1)),
        (0..84, 84..160),
        "rows 2, 3, 4 and no part of row 5"
    );
    let row = |length, line, offset| Srd {
        length,
        line,
        offset,
        ..Srd::default()
    };
    assert_eq!(plan[1], [row(12, 2, 10), row(32, 3, 0), row(32, 4, 0)]);
}

#[test]
fn every_format_tiles_in_every_mode() {
    for f in small_formats() {
        for max in [f.pgroup().bytes as usize, 7, 100, 1200, 8960] {
            if let Ok(pk) = Packetizer::new(f, PackingMode::Gpm, max) {
                check_plan(&pk);
            }
        }
    }
    for (s, d) in [
        (Sampling::YCbCr422, Depth::D10),
        (Sampling::YCbCr420, Depth::D8),
        (Sampling::YCbCr420, Depth::D10),
        (Sampling::Rgb, Depth::D8),
        (Sampling::Rgb, Depth::D10),
        (Sampling::YCbCr444, Depth::D12),
    ] {
        check_plan(&Packetizer::new(format(s, d, 1280, 720), PackingMode::Bpm, 1260).unwrap());
        check_plan(&Packetizer::new(format(s, d, 1280, 720), PackingMode::Gpm, 1200).unwrap());
    }
}

#[test]
fn bpm_sends_1260_octets_across_line_ends() {
    let pk = Packetizer::new(uhd422_10(1920, 1080), PackingMode::Bpm, 1460).unwrap();
    assert_eq!(pk.packets_per_frame(), 4115);
    let plan = check_plan(&pk);
    for i in 0..4114 {
        assert_eq!(pk.data(i).len(), BPM_PACKET_BYTES);
    }
    assert_eq!(
        pk.data(4114),
        5_183_640..5_184_000,
        "the last packet carries the last 360 octets"
    );
    // Packet 3 holds 3780..5040: the last 1020 octets of line 0 and the first 240 of line 1.
    assert_eq!(
        plan[3],
        [
            Srd {
                length: 1020,
                line: 0,
                offset: 1512,
                continuation: false,
                field: false
            },
            Srd {
                length: 240,
                line: 1,
                offset: 0,
                continuation: false,
                field: false
            }
        ]
    );
    let mut out = [0; MAX_HEADERS_LEN];
    assert_eq!(pk.headers(3, 3, &mut out), 14);
    assert_eq!(
        out[..14],
        [0, 0, 0x03, 0xfc, 0, 0, 0x85, 0xe8, 0x00, 0xf0, 0, 1, 0, 0]
    );

    let cases = [
        (format(Sampling::YCbCr420, Depth::D8, 1920, 1080), 2469),
        (format(Sampling::YCbCr420, Depth::D10, 1920, 1080), 3086),
        (format(Sampling::Rgb, Depth::D8, 1920, 1080), 4938),
        (uhd422_10(3840, 2160), 16458),
    ];
    for (f, packets) in cases {
        let pk = Packetizer::new(f, PackingMode::Bpm, 1260).unwrap();
        assert_eq!(pk.packets_per_frame(), packets);
        assert_eq!(
            pk.packets_per_frame() as usize,
            f.frame_bytes().div_ceil(1260)
        );
        check_plan(&pk);
    }
}

#[test]
fn packetizer_errors() {
    let f = uhd422_10(1920, 1080);
    let e = Packetizer::new(f, PackingMode::Gpm, 4).unwrap_err();
    assert_eq!(
        e,
        PacketizerError::PayloadTooSmall {
            max_payload_bytes: 4,
            pgroup_bytes: 5
        }
    );
    assert_eq!(
        Packetizer::new(f, PackingMode::Gpm, 5)
            .unwrap()
            .packets_per_frame(),
        1_036_800
    );
    assert_eq!(
        Packetizer::new(f, PackingMode::Gpm, 65536).unwrap_err(),
        PacketizerError::PayloadTooLarge {
            max_payload_bytes: 65536
        }
    );
    assert!(Packetizer::new(f, PackingMode::Gpm, 65535).is_ok());
    assert_eq!(
        Packetizer::new(f, PackingMode::Bpm, 1259).unwrap_err(),
        PacketizerError::BpmPayload {
            max_payload_bytes: 1259
        }
    );
    let f16 = format(Sampling::YCbCr422, Depth::D16, 1920, 1080);
    assert_eq!(
        Packetizer::new(f16, PackingMode::Bpm, 1260).unwrap_err(),
        PacketizerError::BpmPgroup { pgroup_bytes: 8 }
    );
    let narrow = uhd422_10(200, 10);
    assert_eq!(
        Packetizer::new(narrow, PackingMode::Bpm, 1260).unwrap_err(),
        PacketizerError::BpmTooNarrow { line_bytes: 500 }
    );
    for e in [
        PacketizerError::PayloadTooSmall {
            max_payload_bytes: 4,
            pgroup_bytes: 5,
        },
        PacketizerError::PayloadTooLarge {
            max_payload_bytes: 65536,
        },
        PacketizerError::BpmPayload {
            max_payload_bytes: 1259,
        },
        PacketizerError::BpmPgroup { pgroup_bytes: 8 },
        PacketizerError::BpmTooNarrow { line_bytes: 500 },
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(PackingMode::parse("2110BPM"), Some(PackingMode::Bpm));
    assert_eq!(PackingMode::Gpm.to_string(), "2110GPM");
    assert_eq!(PackingMode::parse("2110gpm"), None);
}

#[test]
#[should_panic]
fn headers_of_a_packet_beyond_the_frame_panic() {
    let pk = Packetizer::new(uhd422_10(8, 2), PackingMode::Gpm, 1200).unwrap();
    pk.headers(1, 0, &mut [0; MAX_HEADERS_LEN]);
}

// ---------------------------------------------------------------------------------------------
// Depacketizer

/// A frame buffer.
type Picture = Vec<u8>;
/// The whole RTP packets of one frame.
type FramePackets = Vec<Vec<u8>>;

/// Sends `frames` frames of `pk`'s format and returns (pictures, packets per frame).
fn stream(pk: &Packetizer, frames: u32, first_seq: u32) -> (Vec<Picture>, Vec<FramePackets>) {
    let n = pk.packets_per_frame();
    let pictures: Vec<_> = (0..frames)
        .map(|i| picture(&pk.format(), u64::from(i) + 1))
        .collect();
    let packets = pictures
        .iter()
        .enumerate()
        .map(|(i, p)| {
            send(
                pk,
                p,
                1000 + 1500 * i as u32,
                first_seq.wrapping_add(i as u32 * n),
            )
        })
        .collect();
    (pictures, packets)
}

#[test]
fn every_pgroup_round_trips_bit_exact() {
    for f in small_formats() {
        let mut modes = vec![
            (PackingMode::Gpm, f.pgroup().bytes as usize),
            (
                PackingMode::Gpm,
                2 * f.line_bytes() - f.pgroup().bytes as usize,
            ),
            (PackingMode::Gpm, 1200),
        ];
        let wide = Format::new(
            f.sampling(),
            f.depth(),
            720 / f.pgroup_width() * f.pgroup_width(),
            f.height(),
        )
        .unwrap();
        for (f, (mode, max)) in std::iter::repeat_n(f, 3)
            .zip(modes.drain(..))
            .chain([(wide, (PackingMode::Bpm, 1260))])
        {
            let Ok(pk) = Packetizer::new(f, mode, max) else {
                assert_eq!((f.pgroup().bytes, mode), (8, PackingMode::Bpm));
                continue;
            };
            let (pictures, packets) = stream(&pk, 3, 100);
            let mut d = Depacketizer::new(f);
            let mut sink = Sink::new(&f);
            for frame in &packets {
                assert!(
                    push_all(&mut d, &mut sink, frame)
                        .iter()
                        .all(|p| *p == Pushed::Written)
                );
            }
            assert_eq!(sink.frames.len(), 3, "{f:?} {mode} {max}");
            let n = u64::from(pk.packets_per_frame());
            for (i, (report, buf)) in sink.frames.iter().enumerate() {
                assert_eq!(buf, &pictures[i], "{f:?} {mode} {max}: frame {i} bit-exact");
                let first = 0x1_0000 + 100 + i as u64 * n;
                let want = FrameReport {
                    rtp_timestamp: 1000 + 1500 * i as u32,
                    packets: n as u32,
                    bytes: f.frame_bytes() as u64,
                    lost: 0,
                    reordered: 0,
                    marker: true,
                    complete: true,
                    first_ext_seq: first,
                    last_ext_seq: first + n - 1,
                };
                assert_eq!(*report, want);
            }
            let c = d.counters();
            assert_eq!(
                (c.frames_complete, c.frames_incomplete, c.packets, c.lost),
                (3, 0, 3 * n, 0)
            );
            assert_counters_add_up(&d, 3 * n);
        }
    }
}

fn hd_stream() -> (Packetizer, Vec<Picture>, Vec<FramePackets>) {
    let pk = Packetizer::new(uhd422_10(64, 8), PackingMode::Gpm, 60).unwrap();
    assert_eq!(pk.packets_per_frame(), 22);
    let (pictures, packets) = stream(&pk, 3, 500);
    (pk, pictures, packets)
}

#[test]
fn reordered_packets_are_written_and_counted() {
    let (pk, pictures, mut packets) = hd_stream();
    let f = pk.format();
    // Frame 0: the marker packet first; frame 1: two swaps; frame 2 in order.
    let marker = packets[0].pop().unwrap();
    packets[0].insert(5, marker);
    packets[1].swap(0, 1);
    packets[1].swap(10, 14);
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    let pushed = push_all(&mut d, &mut sink, packets.iter().flatten());
    // Frame 0: 505..=520 arrive after 521. Frame 1: 522 after 523; 533, 534, 535, 532 after 536.
    assert_eq!(
        pushed.iter().filter(|p| **p == Pushed::Reordered).count(),
        16 + 1 + 4
    );
    let reports = sink.reports();
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.complete, r.reordered, r.lost))
            .collect::<Vec<_>>(),
        [(true, 16, 0), (true, 5, 0), (true, 0, 0)]
    );
    assert_eq!(
        sink.frames.iter().map(|(_, b)| b).collect::<Vec<_>>(),
        pictures.iter().collect::<Vec<_>>()
    );
    assert_eq!(d.counters().reordered, 21);
    assert_eq!(d.counters().lost, 0);
    assert_counters_add_up(&d, 66);
}

#[test]
fn a_marker_with_holes_waits_for_reordered_packets() {
    let (pk, pictures, mut packets) = hd_stream();
    let f = pk.format();
    let third = packets[0].remove(3);
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, &packets[0]);
    assert!(sink.frames.is_empty(), "the frame waits for its hole");
    assert_eq!(d.push(&third, &mut sink), Ok(Pushed::Reordered));
    assert_eq!(sink.frames.len(), 1, "and ends when the hole fills");
    assert!(sink.frames[0].0.complete);
    assert_eq!(sink.frames[0].1, pictures[0]);
    assert_eq!(d.counters().lost, 0);
}

#[test]
fn drops_make_frames_incomplete_and_count_exactly() {
    let (pk, pictures, mut packets) = hd_stream();
    let f = pk.format();
    packets[0].drain(7..10); // three in the middle of frame 0
    packets[1].remove(0); // the first packet of frame 1
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, packets.iter().flatten());
    let r = sink.reports();
    assert_eq!(
        r.len(),
        3,
        "frames 0 and 1 end when the next begins, frame 2 at its marker"
    );
    let (r0, r1) = (r[0], r[1]);
    assert!(r[2].complete);
    assert_eq!(
        (r0.complete, r0.marker, r0.lost, r0.packets),
        (false, true, 3, 19)
    );
    assert_eq!(
        (r1.complete, r1.marker, r1.lost, r1.packets),
        (false, true, 1, 21)
    );
    assert_eq!(
        r1.first_ext_seq,
        r0.last_ext_seq + 1,
        "the lost first packet counts"
    );
    assert_eq!(r0.bytes, (f.frame_bytes() - 3 * 60) as u64);
    assert_eq!(
        sink.frames[0].1[420..600],
        [Sink::FILL; 180],
        "the lost packets' bytes are unwritten"
    );
    assert_eq!(sink.frames[0].1[..420], pictures[0][..420]);
    assert_eq!(d.counters().lost, 4);
    assert_eq!(
        (d.counters().frames_complete, d.counters().frames_incomplete),
        (1, 2)
    );
    d.flush(&mut sink);
    assert_eq!(sink.frames.len(), 3, "nothing was open");
}

#[test]
fn a_missing_sequence_number_alone_makes_a_frame_incomplete() {
    // Every byte of frame 0 arrives, but its sequence skips 510: the sender sent a packet
    // that never came (whatever it carried), so the frame is not known complete.
    let pk = Packetizer::new(uhd422_10(64, 8), PackingMode::Gpm, 60).unwrap();
    let f = pk.format();
    let pictures = [picture(&f, 1), picture(&f, 2)];
    let mut frame0 = send(&pk, &pictures[0], 1000, 500);
    for p in &mut frame0[10..] {
        let seq = u16::from_be_bytes([p[2], p[3]]) + 1;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    let frame1 = send(&pk, &pictures[1], 2500, 523);
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, frame0.iter().chain(&frame1));
    let r = sink.reports();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].complete, r[0].marker, r[0].lost, r[0].bytes),
        (false, true, 1, 1280)
    );
    assert_eq!(sink.frames[0].1, pictures[0]);
    assert_eq!((r[1].complete, r[1].first_ext_seq), (true, 0x1_0000 + 523));
}

#[test]
fn a_lost_marker_packet_is_unattributed() {
    let (pk, pictures, mut packets) = hd_stream();
    let f = pk.format();
    packets[0].pop();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, packets.iter().flatten());
    let r = sink.reports();
    assert_eq!(
        (r[0].complete, r[0].marker, r[0].lost, r[0].last_ext_seq),
        (false, false, 0, 0x1_0000 + 500 + 20)
    );
    assert_eq!(
        (r[1].complete, r[1].lost, r[1].first_ext_seq),
        (true, 0, 0x1_0000 + 500 + 22)
    );
    assert_eq!(sink.frames[1].1, pictures[1]);
    assert_eq!(d.counters().lost, 1);
}

#[test]
fn duplicates_and_late_packets_write_nothing() {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, &packets[0][..5]);
    assert_eq!(d.push(&packets[0][2], &mut sink), Ok(Pushed::Duplicate));
    push_all(&mut d, &mut sink, &packets[0][5..]);
    push_all(&mut d, &mut sink, &packets[1][..3]);
    let before = sink.buf.clone();
    // Frame 0 ended at its marker; its packets are late now (a duplicate of the last one is
    // a duplicate, whatever its frame).
    assert_eq!(d.push(&packets[0][21], &mut sink), Ok(Pushed::Duplicate));
    assert_eq!(d.push(&packets[0][0], &mut sink), Ok(Pushed::Duplicate));
    assert_eq!(sink.buf, before);
    assert_eq!(d.push(&packets[1][1], &mut sink), Ok(Pushed::Duplicate));
    push_all(&mut d, &mut sink, &packets[1][3..]);
    assert_eq!(sink.frames[0].1, pictures[0]);
    assert_eq!(sink.frames[1].1, pictures[1]);
    assert!(sink.frames.iter().all(|(r, _)| r.complete));
    let c = d.counters();
    assert_eq!((c.duplicates, c.late, c.lost), (4, 0, 0));
    assert_counters_add_up(&d, 44 + 4);
}

#[test]
fn packets_of_an_ended_frame_are_late() {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    // Frame 0 without packet 4; frame 1 begins; packet 4 of frame 0 arrives.
    let mut first = packets[0].clone();
    let fourth = first.remove(4);
    push_all(&mut d, &mut sink, &first);
    push_all(&mut d, &mut sink, &packets[1][..2]);
    assert_eq!(sink.frames.len(), 1);
    assert!(!sink.frames[0].0.complete);
    let before = sink.buf.clone();
    assert_eq!(d.push(&fourth, &mut sink), Ok(Pushed::Late));
    assert_eq!(sink.buf, before, "nothing written into frame 1");
    assert_eq!(
        (d.counters().late, d.counters().lost),
        (1, 0),
        "late is received, not lost"
    );
    push_all(&mut d, &mut sink, &packets[1][2..]);
    assert_eq!(sink.frames.len(), 2);
    assert!(sink.frames[1].0.complete);
    assert_eq!(sink.frames[1].1, pictures[1]);
    // An in-order packet carrying an ended frame's timestamp is late too.
    let stale = raw(
        500 + 44,
        2500,
        false,
        &payload_of(
            &[Srd {
                length: 5,
                ..Srd::default()
            }],
            &[1; 5],
        ),
    );
    assert_eq!(d.push(&stale, &mut sink), Ok(Pushed::Late));
    assert_eq!(sink.frames[1].1, pictures[1]);
    assert_eq!((d.counters().late, d.counters().lost), (2, 0));
    assert_counters_add_up(&d, 22 + 22 + 1);
}

#[test]
fn sequence_wrap_is_seamless() {
    let pk = Packetizer::new(uhd422_10(64, 8), PackingMode::Gpm, 60).unwrap();
    let (pictures, packets) = stream(&pk, 4, 65535 - 30);
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, packets.iter().flatten());
    assert_eq!(sink.frames.len(), 4);
    for (i, (r, buf)) in sink.frames.iter().enumerate() {
        assert!(r.complete);
        assert_eq!(r.first_ext_seq, 0x1_0000 + 65535 - 30 + 22 * i as u64);
        assert_eq!(r.last_ext_seq, r.first_ext_seq + 21);
        assert_eq!(buf, &pictures[i]);
    }
    assert!(
        sink.frames[1].0.first_ext_seq < 0x2_0000 && sink.frames[1].0.last_ext_seq >= 0x2_0000,
        "frame 1 spans the wrap"
    );
    assert_eq!(d.counters().lost, 0);
}

#[test]
fn the_esn_field_is_never_trusted() {
    let pk = Packetizer::new(uhd422_10(64, 8), PackingMode::Gpm, 60).unwrap();
    let (pictures, mut packets) = stream(&pk, 2, 65530);
    for p in packets.iter_mut().flatten() {
        p[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&[0xde, 0xad]);
    }
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, packets.iter().flatten());
    assert!(sink.frames.iter().all(|(r, _)| r.complete));
    assert_eq!(sink.frames[1].1, pictures[1]);
}

#[test]
fn first_packet_mid_frame_gives_one_incomplete_frame() {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, packets.iter().flatten().skip(9));
    let r = sink.reports();
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[0].complete, r[0].marker, r[0].lost, r[0].packets),
        (false, true, 0, 13)
    );
    assert_eq!(r[0].first_ext_seq, 0x1_0000 + 509);
    assert!(r[1].complete);
    assert_eq!(sink.frames[1].1, pictures[1]);
    assert_eq!(sink.begins, [1000, 2500, 4000]);
}

fn one_srd(srd: Srd, data_len: usize) -> Vec<u8> {
    raw(1, 9, false, &payload_of(&[srd], &vec![7; data_len]))
}

fn with_seq(mut packet: Vec<u8>, seq: u16) -> Vec<u8> {
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet
}

#[test]
fn malformed_packets_write_nothing() {
    let f = uhd422_10(64, 8); // 32 pgroups of 5 octets per line
    let ok = Srd {
        length: 10,
        line: 7,
        offset: 60,
        ..Srd::default()
    };
    let c420 = format(Sampling::YCbCr420, Depth::D10, 64, 8); // 16 pgroups of 15 per row pair
    let cases: Vec<(Format, Vec<u8>, PacketError)> = vec![
        (f, one_srd(Srd { line: 8, ..ok }, 10), PacketError::BadLine),
        (
            f,
            one_srd(Srd { line: 0x7fff, ..ok }, 10),
            PacketError::BadLine,
        ),
        (
            f,
            one_srd(Srd { offset: 62, ..ok }, 10),
            PacketError::BadOffset,
        ),
        (
            f,
            one_srd(
                Srd {
                    offset: 64,
                    length: 5,
                    ..ok
                },
                5,
            ),
            PacketError::BadOffset,
        ),
        (
            f,
            one_srd(Srd { offset: 61, ..ok }, 10),
            PacketError::BadOffset,
        ),
        (
            f,
            one_srd(Srd { length: 12, ..ok }, 12),
            PacketError::BadLength,
        ),
        (
            f,
            one_srd(Srd { length: 0, ..ok }, 0),
            PacketError::BadLength,
        ),
        (
            f,
            one_srd(Srd { field: true, ..ok }, 10),
            PacketError::FieldBit,
        ),
        (f, one_srd(ok, 9), PacketError::DataOverrun),
        (
            f,
            raw(1, 9, false, &payload_of(&[ok], &[1; 10])[..7]),
            PacketError::Truncated,
        ),
        (f, raw(1, 9, false, &[0]), PacketError::Truncated),
        (
            f,
            raw(
                1,
                9,
                false,
                &payload_of(
                    &vec![
                        Srd {
                            length: 5,
                            ..Srd::default()
                        };
                        MAX_RECEIVED_SRDS + 1
                    ],
                    &[0; 400],
                ),
            ),
            PacketError::TooManySrds,
        ),
        (
            f,
            one_srd(ok, 10)[..11].to_vec(),
            PacketError::Rtp(rtp::Error::Truncated),
        ),
        (
            f,
            {
                let mut p = one_srd(ok, 10);
                p[0] = 0x40;
                p
            },
            PacketError::Rtp(rtp::Error::BadVersion),
        ),
        (
            c420,
            one_srd(
                Srd {
                    line: 1,
                    length: 15,
                    offset: 0,
                    ..ok
                },
                15,
            ),
            PacketError::BadLine,
        ),
        (
            c420,
            one_srd(
                Srd {
                    line: 8,
                    length: 15,
                    offset: 0,
                    ..ok
                },
                15,
            ),
            PacketError::BadLine,
        ),
        (
            c420,
            one_srd(
                Srd {
                    line: 6,
                    length: 15,
                    offset: 2,
                    ..ok
                },
                15,
            ),
            PacketError::BadOffset,
        ),
        (
            c420,
            one_srd(
                Srd {
                    line: 6,
                    length: 30,
                    offset: 60,
                    ..ok
                },
                30,
            ),
            PacketError::BadOffset,
        ),
        // A good SRD followed by a bad one: the good one's data is not written either.
        (
            f,
            raw(
                1,
                9,
                false,
                &payload_of(&[ok, Srd { line: 9, ..ok }], &[7; 20]),
            ),
            PacketError::BadLine,
        ),
    ];
    for (i, (f, packet, err)) in cases.into_iter().enumerate() {
        let mut d = Depacketizer::new(f);
        let mut sink = Sink::new(&f);
        assert_eq!(d.push(&packet, &mut sink), Err(err), "case {i}");
        assert!(
            sink.begins.is_empty() && sink.buf.iter().all(|&b| b == Sink::FILL),
            "case {i}"
        );
        assert_eq!(d.counters().malformed, 1);
        assert_counters_add_up(&d, 1);
        // The same geometry, corrected, is accepted.
        assert_eq!(
            d.push(
                &one_srd(
                    Srd {
                        line: 6,
                        length: 15,
                        offset: 0,
                        ..ok
                    },
                    15
                ),
                &mut sink
            ),
            Ok(Pushed::Written),
            "case {i}"
        );
    }
    // The extremes that are valid: last line, last pgroup, a whole line.
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    for (seq, srd) in [
        Srd {
            line: 7,
            offset: 62,
            length: 5,
            ..ok
        },
        Srd {
            line: 0,
            offset: 0,
            length: 160,
            ..ok
        },
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            d.push(
                &with_seq(one_srd(srd, usize::from(srd.length)), seq as u16),
                &mut sink
            ),
            Ok(Pushed::Written)
        );
    }
    assert_eq!(sink.buf[155..160], [7; 5]);
    assert_eq!(sink.buf[..160], [7; 160]);
}

#[test]
fn frames_without_a_buffer_are_dropped() {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    sink.refuse = true;
    let pushed = push_all(&mut d, &mut sink, &packets[0]);
    assert!(pushed.iter().all(|p| *p == Pushed::Dropped));
    sink.refuse = false;
    push_all(&mut d, &mut sink, packets[1..].iter().flatten());
    assert_eq!(sink.begins, [1000, 2500, 4000]);
    assert_eq!(sink.frames.len(), 2, "no end for the dropped frame");
    assert!(sink.frames.iter().all(|(r, _)| r.complete));
    assert_eq!(sink.frames[0].1, pictures[1]);
    let c = d.counters();
    assert_eq!(
        (c.frames_dropped, c.dropped_packets, c.frames_complete),
        (1, 22, 2)
    );
    assert_counters_add_up(&d, 66);
}

#[test]
fn a_short_buffer_gets_nothing() {
    struct Short(Vec<u8>, Vec<FrameReport>);
    impl FrameSink for Short {
        fn begin(&mut self, _: u32) -> bool {
            true
        }
        fn buffer(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn end(&mut self, report: &FrameReport) {
            self.1.push(*report);
        }
    }
    let (pk, _, packets) = hd_stream();
    let mut d = Depacketizer::new(pk.format());
    let mut sink = Short(vec![0; pk.format().frame_bytes() - 1], Vec::new());
    for p in packets.iter().flatten() {
        assert_eq!(d.push(p, &mut sink), Ok(Pushed::Dropped));
    }
    d.flush(&mut sink);
    assert!(sink.0.iter().all(|&b| b == 0));
    assert_eq!(sink.1.len(), 3);
    assert!(
        sink.1
            .iter()
            .all(|r| !r.complete && r.bytes == 0 && r.packets == 22 && r.lost == 0)
    );
}

#[test]
fn a_restarted_sender_resynchronises() {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let (_, restarted) = stream(&pk, 2, 30_000);
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, &packets[0]);
    let pushed = push_all(&mut d, &mut sink, restarted.iter().flatten());
    assert_eq!(pushed[0], Pushed::Stray);
    assert!(pushed[1..].iter().all(|p| *p == Pushed::Written));
    let r = sink.reports();
    assert_eq!(r.len(), 3);
    assert!(r[0].complete && !r[1].complete && r[2].complete);
    assert_eq!(
        (r[1].packets, r[1].lost),
        (21, 0),
        "the stray first packet is simply missing"
    );
    assert_eq!(sink.frames[0].1, pictures[0]);
    let c = d.counters();
    assert_eq!((c.resyncs, c.stray, c.lost), (1, 1, 0));
    assert_counters_add_up(&d, 66);
}

#[test]
fn flush_ends_the_frame_in_progress() {
    let (pk, _, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    push_all(&mut d, &mut sink, &packets[0][..10]);
    d.flush(&mut sink);
    d.flush(&mut sink);
    assert_eq!(sink.frames.len(), 1);
    let r = sink.frames[0].0;
    assert_eq!((r.complete, r.marker, r.packets), (false, false, 10));
    assert_eq!(d.format(), f);
}

/// Packs like a greedy sender with a fixed payload budget (GStreamer's rtpvrawpay does this):
/// as many whole pgroups of the current line as fit after one more SRD header, then the next
/// line in the same packet, any number of SRDs.
fn greedy(format: &Format, frame: &[u8], budget: usize, ts: u32, first_seq: u16) -> Vec<Vec<u8>> {
    let (pg, row) = (format.pgroup().bytes as usize, format.line_bytes());
    let mut packets = Vec::new();
    let mut at = 0;
    while at < frame.len() {
        let mut srds = Vec::new();
        let start = at;
        let mut room = budget - 2;
        while at < frame.len() && room >= Srd::LEN + pg && srds.len() < MAX_RECEIVED_SRDS {
            room -= Srd::LEN;
            let r = at / row;
            let take = ((r + 1) * row - at).min(room / pg * pg);
            srds.push(Srd {
                length: take as u16,
                line: (r as u32 * format.pgroup_lines()) as u16,
                offset: ((at % row) / pg) as u16 * format.pgroup_width() as u16,
                ..Srd::default()
            });
            room -= take;
            at += take;
        }
        let seq = first_seq.wrapping_add(packets.len() as u16);
        packets.push(raw(
            seq,
            ts,
            at == frame.len(),
            &payload_of(&srds, &frame[start..at]),
        ));
    }
    packets
}

#[test]
fn greedy_multi_srd_packets_round_trip() {
    for f in [
        uhd422_10(1920, 1080),
        format(Sampling::YCbCr420, Depth::D8, 64, 16),
        format(Sampling::Rgb, Depth::D10, 8, 40),
        format(Sampling::YCbCr422, Depth::D8, 4, 100),
    ] {
        let pic = picture(&f, 9);
        let packets = greedy(&f, &pic, 1388, 77, 65000);
        let mut d = Depacketizer::new(f);
        let mut sink = Sink::new(&f);
        push_all(&mut d, &mut sink, &packets);
        assert_eq!(sink.frames.len(), 1, "{f:?}");
        assert!(sink.frames[0].0.complete);
        assert_eq!(sink.frames[0].1, pic);
        if f.line_bytes() < 100 {
            assert!(
                packets.iter().any(
                    |p| Payload::new_checked(&p[HEADER_LEN..]).unwrap().srd_count() > MAX_SRDS
                )
            );
        }
    }
}

#[test]
fn a_depacketizer_with_a_custom_extender_uses_it() {
    let (pk, _, packets) = hd_stream();
    let mut d = Depacketizer::with_extender(pk.format(), SeqExtender::with_limits(1, 4));
    let mut sink = Sink::new(&pk.format());
    push_all(&mut d, &mut sink, &packets[0][..3]);
    assert_eq!(
        d.push(&packets[0][9], &mut sink),
        Ok(Pushed::Stray),
        "a jump of 7 > max dropout 4"
    );
    assert_eq!(
        d.push(&packets[0][1], &mut sink),
        Ok(Pushed::Duplicate),
        "within a window of 1: seen"
    );
    assert_eq!(
        d.push(&packets[0][0], &mut sink),
        Ok(Pushed::Stray),
        "behind by 2 > window 1"
    );
}

/// Applies a loss/duplicate plan to a 3-frame stream and checks the reports against a model.
fn lossy_run(drops: &[bool], dups: &[bool]) {
    let (pk, pictures, packets) = hd_stream();
    let f = pk.format();
    let mut d = Depacketizer::new(f);
    let mut sink = Sink::new(&f);
    let all: Vec<_> = packets.iter().flatten().collect();
    let mut pushes = 0;
    for (i, p) in all.iter().enumerate() {
        if drops[i] {
            continue;
        }
        d.push(p, &mut sink).unwrap();
        pushes += 1;
        if dups[i] {
            assert_eq!(d.push(p, &mut sink), Ok(Pushed::Duplicate));
            pushes += 1;
        }
    }
    d.flush(&mut sink);
    assert_counters_add_up(&d, pushes);
    let n = 22;
    let first_kept = drops.iter().position(|d| !d);
    let last_kept = drops.iter().rposition(|d| !d);
    let (Some(first_kept), Some(last_kept)) = (first_kept, last_kept) else {
        assert!(sink.frames.is_empty());
        return;
    };
    assert_eq!(
        d.counters().lost as usize,
        drops[first_kept..=last_kept].iter().filter(|d| **d).count()
    );
    assert_eq!(
        d.counters().duplicates as usize,
        dups.iter().zip(drops).filter(|(u, d)| **u && !**d).count()
    );
    for (report, buf) in &sink.frames {
        let i = ((report.rtp_timestamp - 1000) / 1500) as usize;
        let whole = drops[i * n..(i + 1) * n].iter().all(|d| !d);
        assert_eq!(report.complete, whole, "frame {i}: {report:?}");
        if whole {
            assert_eq!(buf, &pictures[i]);
        }
        let kept = drops[i * n..(i + 1) * n].iter().filter(|d| !**d).count();
        assert_eq!(report.packets as usize, kept);
    }
    let frames_with_packets = (0..3)
        .filter(|i| drops[i * n..(i + 1) * n].iter().any(|d| !d))
        .count();
    assert_eq!(sink.frames.len(), frames_with_packets);
}

#[test]
fn losing_everything_but_one_packet() {
    let mut drops = vec![true; 66];
    drops[30] = false;
    lossy_run(&drops, &[false; 66]);
    lossy_run(&[true; 66], &[false; 66]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_never_fails(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz(&data);
    }

    #[test]
    fn fuzz_on_near_valid_streams(
        choice in any::<u8>(),
        packets in proptest::collection::vec((0u8..48, proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
    ) {
        let mut data = vec![choice];
        for (len, body) in packets {
            let len = (usize::from(len)).min(body.len());
            data.push(0x80 | len as u8);
            data.extend_from_slice(&body[..len]);
        }
        fuzz(&data);
    }

    #[test]
    fn srd_lists_round_trip(srds in proptest::collection::vec((any::<u16>(), any::<bool>(), 0u16..0x8000, 0u16..0x8000), 1..8), esn in any::<u16>()) {
        let srds: Vec<Srd> = srds.into_iter().map(|(length, field, line, offset)| Srd { length: length % 64, field, line, offset, continuation: false }).collect();
        let total: usize = srds.iter().map(|s| usize::from(s.length)).sum();
        let mut bytes = payload_of(&srds, &vec![3; total]);
        bytes[..2].copy_from_slice(&esn.to_be_bytes());
        let p = Payload::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(p.extended_sequence_number(), esn);
        let got: Vec<Srd> = p.segments().map(|(s, _)| Srd { continuation: false, ..s }).collect();
        prop_assert_eq!(got, srds);
        fuzz(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_loss_and_duplication_match_the_model(drops in proptest::collection::vec(proptest::bool::weighted(0.05), 66), dups in proptest::collection::vec(proptest::bool::weighted(0.05), 66)) {
        lossy_run(&drops, &dups);
    }

    #[test]
    fn reordering_within_a_frame_loses_nothing(swaps in proptest::collection::vec((0usize..22, 0usize..22), 0..12), frame in 0usize..3) {
        let (pk, pictures, mut packets) = hd_stream();
        for (a, b) in swaps {
            packets[frame].swap(a, b);
        }
        let f = pk.format();
        let mut d = Depacketizer::new(f);
        let mut sink = Sink::new(&f);
        let pushed = push_all(&mut d, &mut sink, packets.iter().flatten());
        d.flush(&mut sink);
        prop_assert_eq!(sink.frames.len(), 3);
        for (i, (r, buf)) in sink.frames.iter().enumerate() {
            prop_assert!(r.complete);
            prop_assert_eq!(buf, &pictures[i]);
        }
        // A packet is reordered when a higher sequence number arrived before it.
        let seqs: Vec<u16> = packets[frame].iter().map(|p| u16::from_be_bytes([p[2], p[3]])).collect();
        let want = (0..22).filter(|&i| seqs[..i].iter().any(|&s| s > seqs[i])).count();
        prop_assert_eq!(pushed.iter().filter(|p| **p == Pushed::Reordered).count(), want);
        prop_assert_eq!(sink.frames[frame].0.reordered as usize, want);
        prop_assert_eq!(d.counters().lost, 0);
    }
}
