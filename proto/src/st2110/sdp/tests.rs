use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const GMID: [u8; 8] = [0x08, 0x00, 0x11, 0xFF, 0xFE, 0x21, 0xE1, 0xB0];
const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1));

fn rate(num: u32, den: u32) -> FrameRate {
    FrameRate::new(num, den).unwrap()
}

fn tx() -> TxParams {
    TxParams {
        name: "mcm video".to_owned(),
        session_id: 123_456,
        session_version: 7,
        source: SOURCE,
        destination: GROUP,
        port: 5004,
        ttl: 64,
        payload_type: 96,
        ref_clock: RefClock::Ptp {
            gmid: GMID,
            domain: 127,
        },
    }
}

fn crlf(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

fn lf(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Asserts `x` is written as `text`, parses back (leniently and strictly) to `x`.
fn assert_known_answer(x: &Session, text: &str) {
    assert_eq!(x.to_string(), text);
    assert_eq!(Session::parse(text).as_ref(), Ok(x));
    assert_eq!(Session::parse_strict(text).as_ref(), Ok(x));
    assert_eq!(x.warnings(), []);
    fuzz(text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Known answers: our senders' SDPs.

/// 1080p59.94 10-bit 4:2:2 ST 2110-20, multicast, with every field a progressive stream uses.
fn full_video() -> VideoFmtp {
    VideoFmtp {
        range: Some(Range::Narrow),
        par: Some(AspectRatio {
            width: 1,
            height: 1,
        }),
        maxudp: Some(1460),
        troff: Some(637),
        cmax: Some(6),
        extra: vec![
            Param {
                name: "x-vendor".to_owned(),
                value: Some("a=b".to_owned()),
            },
            Param {
                name: "x-flag".to_owned(),
                value: None,
            },
        ],
        ..VideoFmtp::new(
            Sampling::YCbCr422,
            Depth::D10,
            1920,
            1080,
            rate(60000, 1001),
        )
    }
}

const FULL_VIDEO_SDP: &[&str] = &[
    "v=0",
    "o=- 123456 7 IN IP4 192.168.1.10",
    "s=mcm video",
    "t=0 0",
    "m=video 5004 RTP/AVP 96",
    "c=IN IP4 239.1.1.1/64",
    "a=source-filter: incl IN IP4 239.1.1.1 192.168.1.10",
    "a=rtpmap:96 raw/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; exactframerate=60000/1001; \
     depth=10; TCS=SDR; colorimetry=BT709; PM=2110GPM; SSN=ST2110-20:2017; TP=2110TPN; \
     RANGE=NARROW; PAR=1:1; MAXUDP=1460; TROFF=637; CMAX=6; x-vendor=a=b; x-flag",
    "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:127",
    "a=mediaclk:direct=0",
];

#[test]
fn st2110_20_1080p5994_multicast_known_answer() {
    let session = Session::st2110_20(&tx(), full_video());
    assert_known_answer(&session, &crlf(FULL_VIDEO_SDP));
    let media = &session.media[0];
    assert_eq!(media.kind, MediaKind::Video);
    assert_eq!(
        media.connection,
        Some(Connection {
            addr: GROUP,
            ttl: Some(64)
        })
    );
    assert_eq!(
        media.source_filter,
        Some(SourceFilter {
            dest: GROUP,
            source: SOURCE
        })
    );
    let Fmtp::Raw(v) = &media.fmtp else {
        panic!("not raw: {:?}", media.fmtp)
    };
    assert_eq!(v.exactframerate, Some(rate(60000, 1001)));
    assert_eq!(
        (v.sampling, v.depth, v.width, v.height),
        (Sampling::YCbCr422, Depth::D10, 1920, 1080)
    );
    assert_eq!(v.require_st2110(), Ok(()));
}

#[test]
fn st2110_20_interlaced_unicast_ipv6_localmac() {
    let mut tx = tx();
    tx.destination = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    tx.source = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    tx.ref_clock = RefClock::LocalMac([0x7C, 0xE9, 0xD3, 0x1B, 0x9A, 0xAF]);
    let video = VideoFmtp {
        interlace: true,
        segmented: true,
        packing_mode: Some(PackingMode::Block),
        sender_type: Some(SenderType::Wide),
        range: Some(Range::FullProtect),
        ..VideoFmtp::new(Sampling::Rgb, Depth::D12, 1920, 1080, rate(25, 1))
    };
    let text = crlf(&[
        "v=0",
        "o=- 123456 7 IN IP6 2001:db8::1",
        "s=mcm video",
        "t=0 0",
        "m=video 5004 RTP/AVP 96",
        "c=IN IP6 2001:db8::2",
        "a=rtpmap:96 raw/90000",
        "a=fmtp:96 sampling=RGB; width=1920; height=1080; exactframerate=25; depth=12; TCS=SDR; \
         colorimetry=BT709; PM=2110BPM; SSN=ST2110-20:2017; TP=2110TPW; RANGE=FULLPROTECT; \
         interlace; segmented",
        "a=ts-refclk:localmac=7C-E9-D3-1B-9A-AF",
        "a=mediaclk:direct=0",
    ]);
    assert_known_answer(&Session::st2110_20(&tx, video), &text);
}

#[test]
fn st2110_30_known_answer() {
    let audio = AudioParams {
        encoding: AudioEncoding::L24,
        sample_rate: 48_000,
        channels: 8,
        ptime: Ptime::US_125,
        channel_order: Some("SMPTE2110.(SGRP,SGRP)".to_owned()),
    };
    let mut tx = tx();
    tx.payload_type = 97;
    tx.ref_clock = RefClock::PtpTraceable;
    let text = crlf(&[
        "v=0",
        "o=- 123456 7 IN IP4 192.168.1.10",
        "s=mcm video",
        "t=0 0",
        "m=audio 5004 RTP/AVP 97",
        "c=IN IP4 239.1.1.1/64",
        "a=source-filter: incl IN IP4 239.1.1.1 192.168.1.10",
        "a=rtpmap:97 L24/48000/8",
        "a=fmtp:97 channel-order=SMPTE2110.(SGRP,SGRP)",
        "a=ptime:0.125",
        "a=ts-refclk:ptp=IEEE1588-2008:traceable",
        "a=mediaclk:direct=0",
    ]);
    let session = Session::st2110_30(&tx, &audio);
    assert_known_answer(&session, &text);
    // Without a channel order there is no fmtp line at all.
    let plain = Session::st2110_30(
        &tx,
        &AudioParams {
            channel_order: None,
            ..audio
        },
    );
    assert!(!plain.to_string().contains("a=fmtp"), "{plain}");
    assert_eq!(Session::parse(&plain.to_string()), Ok(plain));
}

#[test]
fn st2110_22_known_answer() {
    let jxsv = JxsvFmtp {
        profile: Some("High444.12".to_owned()),
        level: Some("2k-1".to_owned()),
        sublevel: Some("Sublev3bpp".to_owned()),
        sampling: Some(Sampling::YCbCr422),
        depth: Some(Depth::D10),
        ..JxsvFmtp::new(1920, 1080, rate(50, 1))
    };
    let mut tx = tx();
    tx.destination = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    tx.payload_type = 112;
    let text = crlf(&[
        "v=0",
        "o=- 123456 7 IN IP4 192.168.1.10",
        "s=mcm video",
        "t=0 0",
        "m=video 5004 RTP/AVP 112",
        "c=IN IP4 10.0.0.2",
        "b=AS:200000",
        "a=rtpmap:112 jxsv/90000",
        "a=fmtp:112 packetmode=0; transmode=1; profile=High444.12; level=2k-1; \
         sublevel=Sublev3bpp; sampling=YCbCr-4:2:2; depth=10; width=1920; height=1080; \
         exactframerate=50; colorimetry=BT709; TCS=SDR; TP=2110TPN; SSN=ST2110-22:2019",
        "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:127",
        "a=mediaclk:direct=0",
    ]);
    let session = Session::st2110_22(&tx, jxsv, 200_000);
    assert_known_answer(&session, &text);
    assert_eq!(session.media[0].bandwidth_as(), Some(200_000));
}

#[test]
fn st2110_40_known_answer() {
    let anc = AncFmtp {
        did_sdid: vec![
            DidSdid {
                did: 0x61,
                sdid: 0x02,
            },
            DidSdid {
                did: 0x41,
                sdid: 0x05,
            },
        ],
        vpid_code: Some(132),
        exactframerate: Some(rate(60000, 1001)),
        tm: Some("CTM".to_owned()),
        ssn: Some("ST2110-40:2023".to_owned()),
        extra: Vec::new(),
    };
    let mut tx = tx();
    tx.payload_type = 100;
    let text = crlf(&[
        "v=0",
        "o=- 123456 7 IN IP4 192.168.1.10",
        "s=mcm video",
        "t=0 0",
        "m=video 5004 RTP/AVP 100",
        "c=IN IP4 239.1.1.1/64",
        "a=source-filter: incl IN IP4 239.1.1.1 192.168.1.10",
        "a=rtpmap:100 smpte291/90000",
        "a=fmtp:100 DID_SDID={0x61,0x02}; DID_SDID={0x41,0x05}; VPID_Code=132; \
         exactframerate=60000/1001; TM=CTM; SSN=ST2110-40:2023",
        "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:127",
        "a=mediaclk:direct=0",
    ]);
    assert_known_answer(&Session::st2110_40(&tx, anc), &text);
    // An ANC stream without parameters has no fmtp line.
    let bare = Session::st2110_40(&tx, AncFmtp::default());
    assert!(!bare.to_string().contains("a=fmtp"));
    assert_eq!(Session::parse_strict(&bare.to_string()), Ok(bare));
}

#[test]
fn source_filter_needs_a_multicast_group_of_the_source_family() {
    let mut v6_source = tx();
    v6_source.source = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut unicast = tx();
    unicast.destination = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    for tx in [v6_source, unicast] {
        let video = VideoFmtp::new(Sampling::YCbCr422, Depth::D8, 640, 480, rate(30, 1));
        let s = Session::st2110_20(&tx, video);
        assert_eq!(s.media[0].source_filter, None);
        assert!(!s.to_string().contains("source-filter"));
        assert_eq!(Session::parse_strict(&s.to_string()), Ok(s));
    }
}

#[test]
fn st2022_7_adds_a_second_leg_and_a_dup_group() {
    let mut secondary = tx();
    secondary.destination = IpAddr::V4(Ipv4Addr::new(239, 2, 2, 2));
    secondary.source = IpAddr::V4(Ipv4Addr::new(192, 168, 2, 10));
    secondary.port = 5006;
    secondary.ttl = 16;
    let video = VideoFmtp::new(Sampling::YCbCr422, Depth::D10, 1280, 720, rate(50, 1));
    let session = Session::st2110_20(&tx(), video).with_st2022_7(&secondary);
    let text = session.to_string();
    let expected_tail = crlf(&[
        "a=mediaclk:direct=0",
        "a=mid:primary",
        "m=video 5006 RTP/AVP 96",
        "c=IN IP4 239.2.2.2/16",
        "a=source-filter: incl IN IP4 239.2.2.2 192.168.2.10",
    ]);
    assert!(
        text.contains("t=0 0\r\na=group:DUP primary secondary\r\nm=video 5004"),
        "{text}"
    );
    assert!(text.contains(&expected_tail), "{text}");
    assert!(
        text.ends_with("a=mediaclk:direct=0\r\na=mid:secondary\r\n"),
        "{text}"
    );
    assert_known_answer(&session, &text);
    let empty = Session {
        media: Vec::new(),
        ..session
    };
    assert_eq!(empty.clone().with_st2022_7(&secondary), empty);
}

// ---------------------------------------------------------------------------------------------
// What other programs write.

const FFMPEG_VIDEO: &[&str] = &[
    "v=0",
    "o=- 0 0 IN IP4 127.0.0.1",
    "s=No Name",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:libavformat 59.27.100",
    "m=video 5046 RTP/AVP 96",
    "a=rtpmap:96 raw/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10",
];

#[test]
fn ffmpeg_video_parses_leniently_with_warnings() {
    let text = lf(FFMPEG_VIDEO);
    let s = Session::parse(&text).unwrap();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let origin = Origin {
        username: "-".into(),
        session_id: 0,
        session_version: 0,
        addr: localhost,
    };
    assert_eq!(s.origin, origin);
    assert_eq!(s.name, "No Name");
    assert_eq!(
        s.connection,
        Some(Connection {
            addr: localhost,
            ttl: None
        })
    );
    assert_eq!(s.timing, Timing { start: 0, stop: 0 });
    assert_eq!(
        s.attributes,
        [Attribute::new("tool", "libavformat 59.27.100")]
    );
    let m = &s.media[0];
    assert_eq!(
        (m.port, m.protocol.as_str(), m.payload_type),
        (5046, "RTP/AVP", 96)
    );
    assert_eq!(m.rtpmap, RtpMap::new("raw", 90_000));
    let expected = VideoFmtp::bare(Sampling::YCbCr422, Depth::D10, 1920, 1080);
    assert_eq!(m.fmtp, Fmtp::Raw(expected.clone()));
    assert_eq!(
        expected.require_st2110().unwrap_err().to_string(),
        "missing exactframerate: ST 2110-20 requires it"
    );
    let warnings: Vec<String> = s.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "media 0: missing exactframerate: ST 2110-20 requires it",
            "media 0: missing colorimetry: ST 2110-20 requires it",
            "media 0: missing PM: ST 2110-20 requires it",
            "media 0: missing SSN: ST 2110-20 requires it",
            "media 0: missing a=ts-refclk: ST 2110-10 requires it",
            "media 0: missing a=mediaclk: ST 2110-10 requires it",
        ]
    );
    assert_eq!(
        Session::parse_strict(&text).unwrap_err().to_string(),
        "line 9 \"a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10\": \
         missing exactframerate: ST 2110-20 requires it"
    );
    // CRLF and LF read the same; the writer uses CRLF.
    assert_eq!(Session::parse(&crlf(FFMPEG_VIDEO)), Ok(s.clone()));
    assert_eq!(s.to_string(), crlf(FFMPEG_VIDEO));
}

#[test]
fn ffmpeg_audio_parses_leniently() {
    let text = lf(&[
        "v=0",
        "o=- 0 0 IN IP4 127.0.0.1",
        "s=No Name",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "a=tool:libavformat 59.27.100",
        "m=audio 5048 RTP/AVP 97",
        "a=rtpmap:97 L24/48000/2",
    ]);
    let s = Session::parse(&text).unwrap();
    let m = &s.media[0];
    assert_eq!(m.kind, MediaKind::Audio);
    assert_eq!(
        m.rtpmap,
        RtpMap {
            encoding: "L24".into(),
            clock_rate: 48_000,
            channels: Some(2)
        }
    );
    assert_eq!(m.rtpmap.channel_count(), 2);
    assert_eq!(m.fmtp, Fmtp::Audio(AudioFmtp::default()));
    let fields: Vec<&str> = s.warnings().iter().map(|w| w.field).collect();
    assert_eq!(fields, ["a=ptime", "a=ts-refclk", "a=mediaclk"]);
    assert_eq!(
        Session::parse_strict(&text).unwrap_err().to_string(),
        "line 7 \"m=audio 5048 RTP/AVP 97\": missing a=ptime: ST 2110-30 requires it"
    );
    assert_eq!(Session::parse(&s.to_string()), Ok(s));
}

const GSTREAMER_VIDEO: &[&str] = &[
    "v=0",
    "o=- 1188340656180883 1 IN IP4 127.0.0.1",
    "s=Session streamed with GStreamer",
    "i=rtsp-server",
    "t=0 0",
    "a=tool:GStreamer",
    "a=type:broadcast",
    "a=range:npt=now-",
    "a=control:*",
    "m=video 5004 RTP/AVP 96",
    "c=IN IP4 127.0.0.1",
    "a=rtpmap:96 RAW/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2;depth=10;width=1920;height=1080;colorimetry=BT709-2;",
    "a=framerate:30",
    "a=control:stream=0",
];

#[test]
fn gstreamer_style_parses_leniently() {
    let s = Session::parse(&crlf(GSTREAMER_VIDEO)).unwrap();
    assert_eq!(s.origin.session_id, 1_188_340_656_180_883);
    assert_eq!(
        s.fields,
        [Field {
            kind: 'i',
            value: "rtsp-server".into()
        }]
    );
    let names: Vec<&str> = s.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["tool", "type", "range", "control"]);
    assert_eq!(
        s.attribute("control").and_then(|a| a.value.as_deref()),
        Some("*")
    );
    let m = &s.media[0];
    assert_eq!(m.rtpmap.encoding, "RAW");
    let Fmtp::Raw(v) = &m.fmtp else {
        panic!("{:?}", m.fmtp)
    };
    assert_eq!(v.colorimetry.as_deref(), Some("BT709-2"));
    assert_eq!((v.width, v.height, v.depth), (1920, 1080, Depth::D10));
    assert_eq!(
        m.attributes,
        [
            Attribute::new("framerate", "30"),
            Attribute::new("control", "stream=0")
        ]
    );
    assert_eq!(
        m.attribute("framerate").and_then(|a| a.value.as_deref()),
        Some("30")
    );
    assert_eq!(s.connection_of(m), m.connection.as_ref());
    assert_eq!(Session::parse(&s.to_string()), Ok(s));
}

#[test]
fn fmtp_separators_and_case_are_lenient() {
    let expected = {
        let text = lf(&[
            FFMPEG_VIDEO[..8].join("\n").as_str(),
            "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10",
        ]);
        Session::parse(&text).unwrap()
    };
    for fmtp in [
        "a=fmtp:96 sampling=YCbCr-4:2:2;width=1920;height=1080;depth=10",
        "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10;",
        "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10; ",
        "a=fmtp:96   sampling = ycbcr-4:2:2 ;WIDTH=1920 ; Height=1080;;DEPTH=10 ;",
        "a=fmtp: 96\tsampling=YCbCr-4:2:2; width=1920; height=1080; depth=10",
    ] {
        let mut lines = FFMPEG_VIDEO[..8].to_vec();
        lines.push(fmtp);
        assert_eq!(Session::parse(&lf(&lines)), Ok(expected.clone()), "{fmtp}");
    }
}

#[test]
fn enumerations_are_read_without_regard_to_case() {
    let mut lines = FFMPEG_VIDEO[..8].to_vec();
    lines.push(
        "a=fmtp:96 sampling=rgb; width=8; height=8; depth=8; pm=2110bpm; tp=2110tpnl; range=full",
    );
    let s = Session::parse(&lf(&lines)).unwrap();
    let Fmtp::Raw(v) = &s.media[0].fmtp else {
        panic!()
    };
    assert_eq!(v.sampling, Sampling::Rgb);
    assert_eq!(v.packing_mode, Some(PackingMode::Block));
    assert_eq!(v.sender_type, Some(SenderType::NarrowLinear));
    assert_eq!(v.range, Some(Range::Full));
    assert!(
        s.to_string()
            .contains("PM=2110BPM; TP=2110TPNL; RANGE=FULL"),
        "{s}"
    );
}

#[test]
fn blank_lines_are_skipped_but_counted() {
    let text = "\r\nv=0\n\no=- 0 0 IN IP4 127.0.0.1\n  \ns=x\nt=0 0\nm=video 1 RTP/AVP 96\nq=1\n";
    assert_eq!(
        Session::parse(text).unwrap_err().to_string(),
        "line 9 \"q=1\": unknown line type q=; RFC 8866 defines v o s i u e p c b t r z k a m"
    );
    assert!(
        Session::parse("v=0\no=- 0 0 IN IP4 1.2.3.4\ns=x\nt=0 0").is_ok(),
        "no final newline"
    );
}

#[test]
fn other_lines_are_kept_and_written_in_rfc_order() {
    let text = lf(&[
        "v=0",
        "o=jdoe 1 2 IN IP4 10.0.0.1",
        "s=order",
        "k=clear:x",
        "t=0 0",
        "a=recvonly",
        "b=CT:1000",
        "r=604800 3600 0",
        "z=2882844526 -1h",
        "c=IN IP4 10.0.0.2",
        "p=+1 617 555-6011",
        "e=j@example.com",
        "u=http://example.com/",
        "i=info",
        "m=application 9 UDP/BFCP 100",
        "a=rtpmap:100 x-app/1000",
        "a=fmtp:100 anything at all; really",
        "k=prompt",
        "b=AS:10",
        "i=media info",
        "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0",
        "a=ts-refclk:localmac=00-11-22-33-44-55",
    ]);
    let s = Session::parse(&text).unwrap();
    let expected = crlf(&[
        "v=0",
        "o=jdoe 1 2 IN IP4 10.0.0.1",
        "s=order",
        "i=info",
        "u=http://example.com/",
        "e=j@example.com",
        "p=+1 617 555-6011",
        "c=IN IP4 10.0.0.2",
        "b=CT:1000",
        "t=0 0",
        "r=604800 3600 0",
        "z=2882844526 -1h",
        "k=clear:x",
        "a=recvonly",
        "m=application 9 UDP/BFCP 100",
        "i=media info",
        "b=AS:10",
        "k=prompt",
        "a=rtpmap:100 x-app/1000",
        "a=fmtp:100 anything at all; really",
        "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0",
        "a=ts-refclk:localmac=00-11-22-33-44-55",
    ]);
    assert_eq!(s.to_string(), expected);
    assert_eq!(
        s.attributes,
        [Attribute {
            name: "recvonly".into(),
            value: None
        }]
    );
    let m = &s.media[0];
    assert_eq!(m.kind, MediaKind::Other("application".into()));
    assert_eq!(m.fmtp, Fmtp::Other("anything at all; really".into()));
    assert_eq!(
        m.ts_refclk,
        Some(RefClock::Ptp {
            gmid: GMID,
            domain: 0
        })
    );
    assert_eq!(
        m.attributes,
        [Attribute::new("ts-refclk", "localmac=00-11-22-33-44-55")]
    );
    assert_eq!(Session::parse(&expected), Ok(s.clone()));
    let fields: Vec<&str> = s.warnings().iter().map(|w| w.field).collect();
    assert_eq!(fields, [NOT_ST2110, "a=mediaclk"]);
    assert_eq!(
        Session::parse_strict(&text).unwrap_err().to_string(),
        "line 15 \"m=application 9 UDP/BFCP 100\": encoding x-app is not an ST 2110 encoding; \
         strict parsing accepts raw, jxsv, smpte291, L16 and L24"
    );
}

#[test]
fn other_encodings_keep_their_fmtp_or_its_absence() {
    let base = [
        "v=0",
        "o=- 0 0 IN IP4 127.0.0.1",
        "s=x",
        "t=0 0",
        "m=audio 5000 RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
    ];
    let none = Session::parse(&lf(&base)).unwrap();
    assert_eq!(none.media[0].fmtp, Fmtp::None);
    assert!(!none.to_string().contains("fmtp"));
    let mut lines = base.to_vec();
    lines.push("a=fmtp:8");
    let empty = Session::parse(&lf(&lines)).unwrap();
    assert_eq!(empty.media[0].fmtp, Fmtp::Other(String::new()));
    assert!(empty.to_string().ends_with("a=fmtp:8\r\n"));
    assert_eq!(Session::parse(&empty.to_string()), Ok(empty));
}

#[test]
fn session_level_clock_and_connection_satisfy_strict_parsing() {
    let text = lf(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=x",
        "c=IN IP4 239.0.0.1/32",
        "t=0 0",
        "a=ts-refclk:ptp=IEEE1588-2008:traceable",
        "a=mediaclk:direct=0",
        "m=audio 5004 RTP/AVP 97",
        "a=rtpmap:97 L16/96000",
        "a=ptime:1",
    ]);
    let s = Session::parse_strict(&text).unwrap();
    assert_eq!(s.media[0].rtpmap.channel_count(), 1);
    assert_eq!(s.media[0].ptime, Some(Ptime::MS_1));
    assert_eq!(s.connection_of(&s.media[0]), s.connection.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Error paths, each with its exact message.

/// Seven lines; the fmtp is line 7.
const BASE: &[&str] = &[
    "v=0",
    "o=- 1 1 IN IP4 192.168.1.10",
    "s=test",
    "t=0 0",
    "m=video 5004 RTP/AVP 96",
    "a=rtpmap:96 raw/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10",
];

/// `BASE` with line `no` (1-based) replaced by `text`, or `text` appended when `no` is 8.
fn with_line(no: usize, text: &str) -> String {
    let mut lines = BASE.to_vec();
    if no > lines.len() {
        lines.push(text);
    } else {
        lines[no - 1] = text;
    }
    lf(&lines)
}

fn error(text: &str) -> String {
    match Session::parse(text) {
        Ok(s) => panic!("parsed: {s:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that line `no` set to `text` is refused on that line with `problem`.
fn assert_refused(no: usize, text: &str, problem: &str) {
    assert_eq!(
        error(&with_line(no, text)),
        format!("line {no} \"{text}\": {problem}")
    );
}

#[test]
fn base_is_valid() {
    assert!(Session::parse(&lf(BASE)).is_ok());
}

#[test]
fn the_brief_example_message() {
    assert_eq!(
        error(&with_line(7, "a=fmtp:96 sampling=YCbCr-4:2:2; depth=11")),
        "line 7 \"a=fmtp:96 sampling=YCbCr-4:2:2; depth=11\": depth must be 8, 10, 12, 16 or 16f"
    );
}

#[test]
fn structural_errors() {
    let missing = |kind, what| SdpError::MissingLine { kind, what }.to_string();
    assert_eq!(error(""), missing('v', "version"));
    assert_eq!(
        error("\r\n \n"),
        "no v= line (version): an SDP needs v=, o=, s= and t= lines"
    );
    assert_eq!(error(&lf(&BASE[..1])), missing('o', "origin"));
    assert_eq!(
        error(&lf(&[BASE[0], BASE[1], BASE[3]])),
        missing('s', "session name")
    );
    assert_eq!(error(&lf(&BASE[..3])), missing('t', "timing"));
    let start = "an SDP must start with v=0";
    assert_refused(1, "o=- 1 1 IN IP4 192.168.1.10", start);
    assert_refused(1, "v=1", "the version must be 0 (v=0)");
    let format = "expected <type>=<value> with a lower-case type letter, e.g. a=...";
    assert_refused(1, "V=0", format);
    assert_refused(3, "hello", format);
    assert_refused(3, "s", format);
    assert_refused(3, " s=x", format);
    assert_refused(3, "é=x", format);
    let unknown = "unknown line type x=; RFC 8866 defines v o s i u e p c b t r z k a m";
    assert_refused(3, "x=1", unknown);
    assert_refused(8, "x=1", unknown);
    assert_refused(2, "v=0", "v= may appear only once, as the first line");
    assert_refused(
        3,
        "o=- 1 1 IN IP4 192.168.1.10",
        "a second o= line; only one is allowed here",
    );
    assert_refused(4, "s=again", "a second s= line; only one is allowed here");
    assert_refused(5, "t=1 2", "a second t= line; only one is allowed here");
    let two_c = lf(&[
        BASE[0],
        BASE[1],
        BASE[2],
        "c=IN IP4 1.1.1.1",
        "c=IN IP4 1.1.1.2",
    ]);
    assert_eq!(
        error(&two_c),
        "line 5 \"c=IN IP4 1.1.1.2\": a second session-level c= line; only one is allowed here"
    );
    for (no, kind) in [
        (8, 'v'),
        (8, 'o'),
        (8, 's'),
        (8, 'u'),
        (8, 'e'),
        (8, 'p'),
        (8, 'z'),
        (8, 't'),
        (8, 'r'),
    ] {
        let text = format!("{kind}=1");
        let problem =
            format!("{kind}= belongs to the session and cannot follow an m= line (line 5)");
        assert_refused(no, &text, &problem);
    }
    let mut lines = BASE.to_vec();
    lines.extend(["c=IN IP4 1.1.1.1", "c=IN IP4 1.1.1.2"]);
    assert_eq!(
        error(&lf(&lines)),
        "line 9 \"c=IN IP4 1.1.1.2\": a second c= line in this media section; only one is \
         allowed here"
    );
}

#[test]
fn origin_errors() {
    let format = "o= must be <username> <session id> <session version> IN IP4|IP6 <address>, \
                  e.g. o=- 0 0 IN IP4 192.168.1.10";
    assert_refused(2, "o=- 1 1 IN IP4", format);
    assert_refused(2, "o=- 1 1 IN IP4 1.2.3.4 extra", format);
    assert_refused(2, "o=", format);
    assert_refused(
        2,
        "o=- x 1 IN IP4 1.2.3.4",
        "session id x must be a number from 0 to 18446744073709551615",
    );
    assert_refused(
        2,
        "o=- -1 1 IN IP4 1.2.3.4",
        "session id -1 must be a number from 0 to 18446744073709551615",
    );
    assert_refused(
        2,
        "o=- 18446744073709551616 1 IN IP4 1.2.3.4",
        "session id 18446744073709551616 must be a number from 0 to 18446744073709551615",
    );
    assert_refused(
        2,
        "o=- 1 +1 IN IP4 1.2.3.4",
        "session version +1 must be a number from 0 to 18446744073709551615",
    );
    assert_refused(
        2,
        "o=- 1 1 ATM IP4 1.2.3.4",
        "network type ATM is not allowed; it must be IN",
    );
    assert_refused(
        2,
        "o=- 1 1 IN IP5 1.2.3.4",
        "address type IP5 is not allowed; it must be IP4 or IP6",
    );
    let not_v4 = |a: &str| format!("{a} is not an IPv4 address (host names are not supported)");
    assert_refused(
        2,
        "o=- 1 1 IN IP4 host.example.com",
        &not_v4("host.example.com"),
    );
    assert_refused(2, "o=- 1 1 IN IP4 256.1.1.1", &not_v4("256.1.1.1"));
    assert_refused(2, "o=- 1 1 IN IP4 ::1", &not_v4("::1"));
    assert_refused(
        2,
        "o=- 1 1 IN IP6 10.0.0.1",
        "10.0.0.1 is not an IPv6 address (host names are not supported)",
    );
    let s = Session::parse(&with_line(2, "o=alice 18446744073709551615 0 IN IP6 ::1")).unwrap();
    assert_eq!(s.origin.session_id, u64::MAX);
    assert_eq!(s.origin.addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn connection_errors() {
    let format =
        "c= must be IN IP4 <address>[/<ttl>] or IN IP6 <address>, e.g. c=IN IP4 239.1.1.1/64";
    assert_refused(8, "c=IN IP4", format);
    assert_refused(8, "c=IN IP4 1.2.3.4 5", format);
    assert_refused(
        8,
        "c=IN IP4 239.1.1.1/256",
        "TTL 256 must be a number from 0 to 255",
    );
    assert_refused(
        8,
        "c=IN IP4 239.1.1.1/",
        "TTL  must be a number from 0 to 255",
    );
    let count = |spec: &str| {
        format!(
            "{spec}: only <IPv4 address>/<ttl> or a bare address is supported (no address counts)"
        )
    };
    assert_refused(8, "c=IN IP4 239.1.1.1/64/2", &count("239.1.1.1/64/2"));
    assert_refused(8, "c=IN IP6 ff15::1/3", &count("ff15::1/3"));
    assert_refused(
        8,
        "c=IN IP4 239.1.1",
        "239.1.1 is not an IPv4 address (host names are not supported)",
    );
    assert_refused(
        8,
        "c=IN IP4 /64",
        " is not an IPv4 address (host names are not supported)",
    );
    assert_refused(
        8,
        "c=XX IP4 1.2.3.4",
        "network type XX is not allowed; it must be IN",
    );
    assert_refused(
        8,
        "c=IN IP4 a.b/1",
        "a.b is not an IPv4 address (host names are not supported)",
    );
    for (line, addr, ttl) in [
        ("c=IN IP4 239.1.1.1/0", "239.1.1.1", Some(0)),
        ("c=IN IP4 239.1.1.1/255", "239.1.1.1", Some(255)),
        ("c=IN IP4 10.1.1.1", "10.1.1.1", None),
        ("c=IN IP6 ff3e::8000:1", "ff3e::8000:1", None),
    ] {
        let s = Session::parse(&with_line(8, line)).unwrap();
        assert_eq!(
            s.media[0].connection,
            Some(Connection {
                addr: addr.parse().unwrap(),
                ttl
            })
        );
        assert!(s.to_string().contains(&format!("{line}\r\n")), "{s}");
    }
}

#[test]
fn timing_errors() {
    let format = "t= must be <start> <stop> in decimal NTP seconds, e.g. t=0 0";
    for t in [
        "t=",
        "t=0",
        "t=0 0 0",
        "t=now 0",
        "t=0 -1",
        "t=0 18446744073709551616",
    ] {
        assert_refused(4, t, format);
    }
    let s = Session::parse(&with_line(4, "t=3034423619 3042462419")).unwrap();
    assert_eq!(
        s.timing,
        Timing {
            start: 3_034_423_619,
            stop: 3_042_462_419
        }
    );
}

#[test]
fn media_line_errors() {
    let format =
        "m= must be <media> <port> <protocol> <payload type>, e.g. m=video 5004 RTP/AVP 96";
    assert_refused(5, "m=video 5004 RTP/AVP", format);
    assert_refused(5, "m=video", format);
    assert_refused(5, "m=", format);
    assert_refused(
        5,
        "m=video x RTP/AVP 96",
        "port x must be a number from 0 to 65535 (no port count)",
    );
    assert_refused(
        5,
        "m=video 65536 RTP/AVP 96",
        "port 65536 must be a number from 0 to 65535 (no port count)",
    );
    assert_refused(
        5,
        "m=video 5004/2 RTP/AVP 96",
        "port 5004/2 must be a number from 0 to 65535 (no port count)",
    );
    assert_refused(
        5,
        "m=video 5004 RTP/AVP 128",
        "payload type 128 must be a number from 0 to 127",
    );
    assert_refused(
        5,
        "m=video 5004 RTP/AVP x",
        "payload type x must be a number from 0 to 127",
    );
    assert_refused(
        5,
        "m=video 5004 RTP/AVP 96 97",
        "one payload type per media section is supported, found 2 (96 97)",
    );
    let s = Session::parse(&with_line(5, "m=video  65535   RTP/AVP\t96 ")).unwrap();
    assert_eq!(s.media[0].port, 65535);
    assert_eq!(
        s.media[0].to_string().lines().next(),
        Some("m=video 65535 RTP/AVP 96")
    );
}

#[test]
fn rtpmap_errors() {
    let usage =
        "a=rtpmap:<payload type> <encoding>/<clock rate>[/<channels>], e.g. a=rtpmap:96 raw/90000";
    assert_refused(6, "a=rtpmap", &format!("expected {usage}"));
    assert_refused(6, "a=rtpmap:96", &format!("expected {usage}"));
    assert_refused(6, "a=rtpmap:96 raw", &format!("expected {usage}"));
    assert_refused(6, "a=rtpmap:96 raw/90000/1/2", &format!("expected {usage}"));
    assert_refused(
        6,
        "a=rtpmap:96 /90000",
        &format!("the encoding name is empty; expected {usage}"),
    );
    assert_refused(
        6,
        "a=rtpmap:97 raw/90000",
        "payload type 97 is not on the m= line (line 5 carries 96)",
    );
    assert_refused(
        6,
        "a=rtpmap:x raw/90000",
        "payload type x must be a number from 0 to 127",
    );
    assert_refused(
        6,
        "a=rtpmap:200 raw/90000",
        "payload type 200 must be a number from 0 to 127",
    );
    let clock = |c: &str| format!("clock rate {c} must be a number of Hz from 1 to 4294967295");
    assert_refused(6, "a=rtpmap:96 raw/0", &clock("0"));
    assert_refused(6, "a=rtpmap:96 raw/90kHz", &clock("90kHz"));
    assert_refused(6, "a=rtpmap:96 raw/4294967296", &clock("4294967296"));
    assert_refused(
        6,
        "a=rtpmap:96 raw/48000",
        "raw must be raw/90000 (a 90 kHz clock, no channel count)",
    );
    assert_refused(
        6,
        "a=rtpmap:96 RAW/90000/1",
        "raw must be raw/90000 (a 90 kHz clock, no channel count)",
    );
    assert_refused(
        6,
        "a=rtpmap:96 jxsv/48000",
        "jxsv must be jxsv/90000 (a 90 kHz clock, no channel count)",
    );
    assert_refused(
        6,
        "a=rtpmap:96 SMPTE291/9000",
        "smpte291 must be smpte291/90000 (a 90 kHz clock, no channel count)",
    );
    assert_refused(
        6,
        "a=rtpmap:96 L24/48000/0",
        "channel count 0 must be 1 to 65535",
    );
    assert_refused(
        6,
        "a=rtpmap:96 L24/48000/x",
        "channel count x must be 1 to 65535",
    );
    assert_refused(
        8,
        "a=rtpmap:96 raw/90000",
        "a second a=rtpmap for this payload type; only one is allowed here",
    );
    let no_rtpmap = lf(&[BASE[0], BASE[1], BASE[2], BASE[3], BASE[4], BASE[6]]);
    assert_eq!(
        error(&no_rtpmap),
        "line 5 \"m=video 5004 RTP/AVP 96\": no a=rtpmap:96 in this media section; the encoding \
         and clock rate are unknown"
    );
    let no_fmtp = lf(&BASE[..6]);
    assert_eq!(
        error(&no_fmtp),
        "line 5 \"m=video 5004 RTP/AVP 96\": raw video needs an a=fmtp:96 line with sampling, \
         depth, width and height"
    );
}

#[test]
fn fmtp_line_errors() {
    assert_refused(7, "a=fmtp", "expected a=fmtp:<payload type> <parameters>");
    assert_refused(
        7,
        "a=fmtp:97 width=1",
        "payload type 97 is not on the m= line (line 5 carries 96)",
    );
    assert_refused(7, "a=fmtp:", "payload type  must be a number from 0 to 127");
    assert_refused(
        8,
        BASE[6],
        "a second a=fmtp for this payload type; only one is allowed here",
    );
    // The fmtp may come before the rtpmap; its errors still name its own line.
    let swapped = lf(&[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        BASE[4],
        "a=fmtp:96 depth=9",
        BASE[5],
    ]);
    assert_eq!(
        error(&swapped),
        "line 6 \"a=fmtp:96 depth=9\": depth must be 8, 10, 12, 16 or 16f"
    );
}

/// Asserts the raw-video fmtp `params` is refused with `problem`.
fn assert_raw_refused(params: &str, problem: &str) {
    assert_refused(7, &format!("a=fmtp:96 {params}"), problem);
}

const GEOMETRY: &str = "sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10";

#[test]
fn raw_video_fmtp_errors() {
    let needs =
        |what| format!("raw video needs sampling, depth, width and height; {what} is missing");
    assert_raw_refused("", &needs("sampling"));
    assert_raw_refused("width=1920; height=1080; depth=10", &needs("sampling"));
    assert_raw_refused("sampling=RGB; width=1920; height=1080", &needs("depth"));
    assert_raw_refused("sampling=RGB; depth=8; height=1080", &needs("width"));
    assert_raw_refused("sampling=RGB; depth=8; width=1080", &needs("height"));
    let sampling = "sampling must be YCbCr-4:2:2, YCbCr-4:2:0, YCbCr-4:4:4 or RGB";
    assert_raw_refused("sampling=YCbCr-4:1:1", sampling);
    assert_raw_refused("sampling=", sampling);
    assert_raw_refused("sampling", "sampling needs a value (sampling=...)");
    let depth = "depth must be 8, 10, 12, 16 or 16f";
    for d in ["11", "0", "x", "", "-8", "010a"] {
        assert_raw_refused(&format!("depth={d}"), depth);
    }
    assert_raw_refused(
        "depth=16f",
        "depth 16f (half float) is valid ST 2110-20 but not supported; use 8, 10, 12 or 16",
    );
    for (name, v) in [
        ("width", "0"),
        ("width", "32768"),
        ("height", "0"),
        ("height", "x"),
        ("width", ""),
    ] {
        assert_raw_refused(
            &format!("{name}={v}"),
            &format!("{name} must be 1 to 32767"),
        );
    }
    assert_raw_refused("width", "width needs a value (width=...)");
    let fps = "exactframerate must be an integer or a fraction such as 60000/1001, neither part zero, from 1/1000 to 1000 frames per second";
    for r in [
        "60000/0",
        "0",
        "0/1",
        "59.94",
        "",
        "/1001",
        "60000/",
        "30/1/1",
        "+50",
        "4294967296",
        "1001",
        "1/1001",
        "4000000000/1",
    ] {
        assert_raw_refused(&format!("{GEOMETRY}; exactframerate={r}"), fps);
    }
    assert_raw_refused(&format!("{GEOMETRY}; width=1280"), "width appears twice");
    assert_raw_refused(&format!("{GEOMETRY}; DEPTH=8"), "DEPTH appears twice");
    assert_raw_refused(
        &format!("{GEOMETRY}; PM=2110GPM; pm=2110BPM"),
        "pm appears twice",
    );
    assert_raw_refused(
        &format!("{GEOMETRY}; =5"),
        "parameter =5 has no name before =",
    );
    for name in ["colorimetry", "SSN", "TCS"] {
        assert_raw_refused(
            &format!("{GEOMETRY}; {name}="),
            &format!("{name} needs a value ({name}=...)"),
        );
        assert_raw_refused(
            &format!("{GEOMETRY}; {name}"),
            &format!("{name} needs a value ({name}=...)"),
        );
    }
    assert_raw_refused(
        &format!("{GEOMETRY}; PM=GPM"),
        "PM must be 2110GPM or 2110BPM",
    );
    assert_raw_refused(
        &format!("{GEOMETRY}; TP=2110TPX"),
        "TP must be 2110TPN, 2110TPNL or 2110TPW",
    );
    assert_raw_refused(
        &format!("{GEOMETRY}; RANGE=LIMITED"),
        "RANGE must be NARROW, FULLPROTECT or FULL",
    );
    let par = "PAR must be <width>:<height>, both 1 or more, e.g. PAR=1:1";
    for p in ["1", "1:0", "0:1", "x:1", "1/1", ""] {
        assert_raw_refused(&format!("{GEOMETRY}; PAR={p}"), par);
    }
    let maxudp = "MAXUDP must be a number of octets from 1 to 65535, e.g. 8960";
    for m in ["0", "65536", "big"] {
        assert_raw_refused(&format!("{GEOMETRY}; MAXUDP={m}"), maxudp);
    }
    for flag in ["interlace", "segmented"] {
        assert_raw_refused(
            &format!("{GEOMETRY}; {flag}=yes"),
            &format!("{flag} is a flag: write {flag} alone (or {flag}=1, {flag}=0)"),
        );
        assert_raw_refused(
            &format!("{GEOMETRY}; {flag}; {flag}"),
            &format!("{flag} appears twice"),
        );
    }
    for name in ["TROFF", "CMAX"] {
        assert_raw_refused(
            &format!("{GEOMETRY}; {name}=-1"),
            &format!("{name} must be a number from 0 to 4294967295"),
        );
    }
}

#[test]
fn raw_video_flags_accept_their_spellings() {
    for (flags, interlace, segmented) in [
        ("interlace", true, false),
        ("interlace=1; segmented=1", true, true),
        ("interlace=0; segmented", false, true),
    ] {
        let s = Session::parse(&with_line(7, &format!("a=fmtp:96 {GEOMETRY}; {flags}"))).unwrap();
        let Fmtp::Raw(v) = &s.media[0].fmtp else {
            panic!()
        };
        assert_eq!(
            (v.interlace, v.segmented),
            (interlace, segmented),
            "{flags}"
        );
        assert_eq!(Session::parse(&s.to_string()), Ok(s));
    }
}

#[test]
fn jxsv_fmtp_errors_and_defaults() {
    let jxsv = |params: &str| {
        with_line(6, "a=rtpmap:96 jxsv/90000").replace(BASE[6], &format!("a=fmtp:96 {params}"))
    };
    let refused = |params: &str, problem: &str| {
        let line = format!("a=fmtp:96 {params}");
        assert_eq!(
            error(&jxsv(params)),
            format!("line 7 \"{line}\": {problem}")
        );
    };
    refused(
        "packetmode=2",
        "packetmode must be 0 (codestream) or 1 (slice)",
    );
    refused(
        "packetmode",
        "packetmode must be 0 (codestream) or 1 (slice)",
    );
    refused(
        "transmode=x",
        "transmode must be 0 (out of order) or 1 (sequential)",
    );
    refused("packetmode=0; packetmode=1", "packetmode appears twice");
    refused("profile=", "profile needs a value (profile=...)");
    refused("depth=9", "depth must be 8, 10, 12, 16 or 16f");
    refused("width=0", "width must be 1 to 32767");
    refused(
        "sampling=XYZ",
        "sampling must be YCbCr-4:2:2, YCbCr-4:2:0, YCbCr-4:4:4 or RGB",
    );
    refused("TP=N", "TP must be 2110TPN, 2110TPNL or 2110TPW");
    refused(
        "exactframerate=1/0",
        "exactframerate must be an integer or a fraction such as 60000/1001, neither part zero, from 1/1000 to 1000 frames per second",
    );
    let s = Session::parse(&jxsv("packetmode=1; transmode=0; SSN=ST2110-22:2019; x=y")).unwrap();
    let Fmtp::Jxsv(j) = &s.media[0].fmtp else {
        panic!()
    };
    assert_eq!(j.packetmode, Some(JxsvPacketMode::Slice));
    assert_eq!(j.transmode, Some(JxsvTransMode::OutOfOrder));
    assert_eq!(
        j.extra,
        [Param {
            name: "x".into(),
            value: Some("y".into())
        }]
    );
    assert_eq!(
        j.require_st2110().unwrap_err().to_string(),
        "missing width: ST 2110-22 requires it"
    );
    assert_eq!(
        JxsvFmtp::default()
            .require_st2110()
            .unwrap_err()
            .to_string(),
        "missing packetmode: RFC 9134 requires it"
    );
    // Without an fmtp line a JPEG XS section has all fields absent; strict parsing names the
    // m= line.
    let bare = lf(&BASE[..6]).replace("raw/90000", "jxsv/90000");
    let s = Session::parse(&bare).unwrap();
    assert_eq!(s.media[0].fmtp, Fmtp::Jxsv(JxsvFmtp::default()));
    assert_eq!(
        Session::parse_strict(&bare).unwrap_err().to_string(),
        "line 5 \"m=video 5004 RTP/AVP 96\": missing packetmode: RFC 9134 requires it"
    );
    assert_eq!(Session::parse(&s.to_string()), Ok(s));
}

#[test]
fn anc_fmtp_errors() {
    let anc = |params: &str| {
        with_line(6, "a=rtpmap:96 smpte291/90000").replace(BASE[6], &format!("a=fmtp:96 {params}"))
    };
    let refused = |params: &str, problem: &str| {
        let line = format!("a=fmtp:96 {params}");
        assert_eq!(error(&anc(params)), format!("line 7 \"{line}\": {problem}"));
    };
    let did = "DID_SDID must be {0xDD,0xSS} with two hex octets, e.g. {0x61,0x02}";
    for v in [
        "0x61,0x02",
        "{0x61}",
        "{61,02}",
        "{0x161,0x02}",
        "{0x61,0x}",
        "{0xG1,0x02}",
        "{0x61,0x02",
    ] {
        refused(&format!("DID_SDID={v}"), did);
    }
    refused("DID_SDID", "DID_SDID needs a value (DID_SDID=...)");
    refused("VPID_Code=256", "VPID_Code must be a number from 0 to 255");
    refused("VPID_Code=1; VPID_Code=2", "VPID_Code appears twice");
    refused("TM=", "TM needs a value (TM=...)");
    let s = Session::parse(&anc(
        "DID_SDID={0x61,0x2};did_sdid={ 0X41 , 0xaB };VPID_Code=0",
    ))
    .unwrap();
    let Fmtp::Smpte291(a) = &s.media[0].fmtp else {
        panic!()
    };
    assert_eq!(
        a.did_sdid,
        [
            DidSdid {
                did: 0x61,
                sdid: 0x02
            },
            DidSdid {
                did: 0x41,
                sdid: 0xAB
            }
        ]
    );
    assert_eq!(a.vpid_code, Some(0));
    assert!(
        s.to_string()
            .contains("a=fmtp:96 DID_SDID={0x61,0x02}; DID_SDID={0x41,0xAB}; VPID_Code=0\r\n")
    );
    assert_eq!(Session::parse(&s.to_string()), Ok(s));
}

#[test]
fn audio_attribute_errors() {
    let audio = |extra: &[&str]| {
        let mut lines = vec![
            BASE[0],
            BASE[1],
            BASE[2],
            BASE[3],
            "m=audio 5004 RTP/AVP 97",
            "a=rtpmap:97 L16/48000/2",
        ];
        lines.extend(extra);
        lf(&lines)
    };
    assert_eq!(
        error(&audio(&["a=fmtp:97 channel-order="])),
        "line 7 \"a=fmtp:97 channel-order=\": channel-order needs a value (channel-order=...)"
    );
    let ptime = |v: &str| {
        format!(
            "ptime {v} must be milliseconds with at most 3 decimals, greater than 0, e.g. 1 or \
             0.125"
        )
    };
    for v in [
        "0", "0.000", "", "abc", "0.1234", "1.", ".", "-1", "1.5ms", "4294968",
    ] {
        let line = format!("a=ptime:{v}");
        assert_eq!(
            error(&audio(&[&line])),
            format!("line 7 \"{line}\": {}", ptime(v)),
            "{v}"
        );
    }
    assert_eq!(
        error(&audio(&["a=ptime"])),
        "line 7 \"a=ptime\": expected a=ptime:<milliseconds>, e.g. a=ptime:1"
    );
    assert_eq!(
        error(&audio(&["a=ptime:1", "a=ptime:1"])),
        "line 8 \"a=ptime:1\": a second a=ptime in this media section; only one is allowed here"
    );
    let s = Session::parse(&audio(&[
        "a=fmtp:97 channel-order=SMPTE2110.(ST); foo; bar=",
    ]))
    .unwrap();
    let Fmtp::Audio(a) = &s.media[0].fmtp else {
        panic!()
    };
    assert_eq!(a.channel_order.as_deref(), Some("SMPTE2110.(ST)"));
    let foo = Param {
        name: "foo".into(),
        value: None,
    };
    assert_eq!(
        a.extra,
        [
            foo,
            Param {
                name: "bar".into(),
                value: Some(String::new())
            }
        ]
    );
    assert_eq!(Session::parse(&s.to_string()), Ok(s));
}

#[test]
fn ptime_values() {
    for (text, us, written) in [
        ("1", 1000, "1"),
        ("0.125", 125, "0.125"),
        (".125", 125, "0.125"),
        ("0.25", 250, "0.25"),
        ("0.5", 500, "0.5"),
        ("1.000", 1000, "1"),
        ("0.333", 333, "0.333"),
        ("4", 4000, "4"),
        ("0.001", 1, "0.001"),
        ("4294967.295", u32::MAX, "4294967.295"),
    ] {
        let line = format!("a=ptime:{text}");
        let s = Session::parse(&with_line(8, &line)).unwrap();
        assert_eq!(s.media[0].ptime.map(Ptime::as_micros), Some(us), "{text}");
        assert_eq!(s.media[0].ptime.unwrap().to_string(), written);
    }
    assert_eq!(Ptime::from_micros(0), None);
    assert_eq!(Ptime::from_micros(125), Some(Ptime::US_125));
}

#[test]
fn ts_refclk_values_and_errors() {
    for (value, clock, written) in [
        (
            "ptp=IEEE1588-2008:08-00-11-ff-fe-21-e1-b0:0",
            RefClock::Ptp {
                gmid: GMID,
                domain: 0,
            },
            None,
        ),
        (
            "ptp=IEEE1588-2008:08:00:11:FF:FE:21:E1:B0:127",
            RefClock::Ptp {
                gmid: GMID,
                domain: 127,
            },
            None,
        ),
        (
            "ptp=IEEE1588-2008:traceable",
            RefClock::PtpTraceable,
            Some("ptp=IEEE1588-2008:traceable"),
        ),
        (
            "localmac=7c-e9-d3-1b-9a-af",
            RefClock::LocalMac([0x7C, 0xE9, 0xD3, 0x1B, 0x9A, 0xAF]),
            Some("localmac=7C-E9-D3-1B-9A-AF"),
        ),
        (
            "ptp=IEEE1588-2002:08-00-11-FF-FE-21-E1-B0",
            RefClock::Other("ptp=IEEE1588-2002:08-00-11-FF-FE-21-E1-B0".into()),
            None,
        ),
        (
            "ntp=203.0.113.10",
            RefClock::Other("ntp=203.0.113.10".into()),
            Some("ntp=203.0.113.10"),
        ),
    ] {
        let s = Session::parse(&with_line(8, &format!("a=ts-refclk:{value}"))).unwrap();
        assert_eq!(s.media[0].ts_refclk.as_ref(), Some(&clock), "{value}");
        if let Some(w) = written {
            assert_eq!(clock.to_string(), w);
        }
        assert_eq!(Session::parse(&s.to_string()), Ok(s));
    }
    assert_eq!(
        RefClock::Ptp {
            gmid: GMID,
            domain: 0
        }
        .to_string(),
        "ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0"
    );
    let ptp = |v: &str| {
        format!(
            "{v}: PTP must be ptp=IEEE1588-2008:<GMID as 8 hex octets XX-XX-XX-XX-XX-XX-XX-XX>:\
             <domain 0 to 127> or ptp=IEEE1588-2008:traceable"
        )
    };
    for v in [
        "ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0",
        "ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:128",
        "ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1:0",
        "ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0-00:0",
        "ptp=IEEE1588-2008:8-00-11-FF-FE-21-E1-B0:0",
        "ptp=IEEE1588-2008:0G-00-11-FF-FE-21-E1-B0:0",
        "ptp=IEEE1588-2008:",
    ] {
        assert_refused(8, &format!("a=ts-refclk:{v}"), &ptp(v));
    }
    let mac =
        |v: &str| format!("{v}: localmac must be 6 hex octets, e.g. localmac=7C-E9-D3-1B-9A-AF");
    for v in [
        "localmac=",
        "localmac=7C-E9-D3-1B-9A",
        "localmac=7C-E9-D3-1B-9A-AF-00",
        "localmac=7CE9D31B9AAF",
    ] {
        assert_refused(8, &format!("a=ts-refclk:{v}"), &mac(v));
    }
    let usage = "expected a=ts-refclk:ptp=IEEE1588-2008:<GMID>:<domain>, \
                 a=ts-refclk:ptp=IEEE1588-2008:traceable or a=ts-refclk:localmac=<MAC>";
    assert_refused(8, "a=ts-refclk:", usage);
    assert_refused(8, "a=ts-refclk", usage);
}

#[test]
fn other_typed_attribute_errors() {
    assert_refused(
        8,
        "a=mediaclk",
        "expected a=mediaclk:<clock>, e.g. a=mediaclk:direct=0",
    );
    assert_refused(8, "a=mid", "expected a=mid:<identification tag>");
    let filter = "a=source-filter: incl IN IP4 <group> <source> (one source)";
    assert_refused(8, "a=source-filter", &format!("expected {filter}"));
    let lists = format!("expected {filter}; excl, wildcards and lists are not supported");
    assert_refused(8, "a=source-filter: incl IN IP4 239.1.1.1", &lists);
    assert_refused(
        8,
        "a=source-filter: incl IN IP4 239.1.1.1 10.0.0.1 10.0.0.2",
        &lists,
    );
    assert_refused(
        8,
        "a=source-filter: excl IN IP4 239.1.1.1 10.0.0.1",
        &format!("filter mode excl is not supported; expected {filter}"),
    );
    assert_refused(
        8,
        "a=source-filter: incl IN IP4 * 10.0.0.1",
        "* is not an IPv4 address (host names are not supported)",
    );
    assert_refused(
        8,
        "a=source-filter: incl IN IP4 239.1.1.1 ::1",
        "::1 is not an IPv4 address (host names are not supported)",
    );
    assert_refused(
        8,
        "a=source-filter: incl IN * 239.1.1.1 10.0.0.1",
        "address type * is not allowed; it must be IP4 or IP6",
    );
    for (attr, what) in [
        ("a=mediaclk:direct=0", "a=mediaclk in this media section"),
        ("a=mid:x", "a=mid in this media section"),
        (
            "a=source-filter: incl IN IP4 239.1.1.1 10.0.0.1",
            "a=source-filter in this section",
        ),
    ] {
        let mut lines = BASE.to_vec();
        lines.extend([attr, attr]);
        assert_eq!(
            error(&lf(&lines)),
            format!("line 9 \"{attr}\": a second {what}; only one is allowed here")
        );
    }
    for bad in ["a=", "a=:x"] {
        for no in [4, 8] {
            let mut lines = BASE.to_vec();
            lines.insert(no - 1, bad);
            assert_eq!(
                error(&lf(&lines)),
                format!(
                    "line {no} \"{bad}\": an attribute needs a name: a=<name> or a=<name>:<value>"
                )
            );
        }
    }
    let s = Session::parse(&with_line(
        8,
        "a=source-filter:incl IN IP6 ff3e::1 2001:db8::1",
    ))
    .unwrap();
    let filter = s.media[0].source_filter.unwrap();
    assert_eq!(filter.dest, "ff3e::1".parse::<IpAddr>().unwrap());
    assert!(
        s.to_string()
            .contains("a=source-filter: incl IN IP6 ff3e::1 2001:db8::1\r\n")
    );
}

#[test]
fn strict_parsing_names_each_missing_field() {
    let full = crlf(FULL_VIDEO_SDP);
    let fmtp_line = FULL_VIDEO_SDP[8];
    for (param, field) in [
        ("exactframerate=60000/1001; ", "exactframerate"),
        ("colorimetry=BT709; ", "colorimetry"),
        ("PM=2110GPM; ", "PM"),
        ("SSN=ST2110-20:2017; ", "SSN"),
    ] {
        let text = full.replace(param, "");
        let line = fmtp_line.replace(param, "");
        assert!(Session::parse(&text).is_ok());
        assert_eq!(
            Session::parse_strict(&text).unwrap_err().to_string(),
            format!("line 9 \"{line}\": missing {field}: ST 2110-20 requires it")
        );
    }
    let m_line = "line 5 \"m=video 5004 RTP/AVP 96\"";
    for (drop, field, standard) in [
        ("c=IN IP4 239.1.1.1/64\r\n", "c=", "RFC 8866"),
        (
            "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:127\r\n",
            "a=ts-refclk",
            "ST 2110-10",
        ),
        ("a=mediaclk:direct=0\r\n", "a=mediaclk", "ST 2110-10"),
    ] {
        let text = full.replace(drop, "");
        assert_eq!(
            Session::parse_strict(&text).unwrap_err().to_string(),
            format!("{m_line}: missing {field}: {standard} requires it")
        );
        let s = Session::parse(&text).unwrap();
        assert_eq!(
            s.warnings(),
            [SdpWarning {
                media: 0,
                field,
                standard
            }]
        );
    }
    let mut tx = tx();
    tx.payload_type = 112;
    let jxsv = Session::st2110_22(&tx, JxsvFmtp::new(1920, 1080, rate(50, 1)), 1000).to_string();
    let no_bandwidth = jxsv.replace("b=AS:1000\r\n", "");
    assert_eq!(
        Session::parse_strict(&no_bandwidth)
            .unwrap_err()
            .to_string(),
        "line 5 \"m=video 5004 RTP/AVP 112\": missing b=AS: ST 2110-22 requires it"
    );
    let no_tp = jxsv.replace("; TP=2110TPN", "");
    assert!(
        Session::parse_strict(&no_tp)
            .unwrap_err()
            .to_string()
            .ends_with(": missing TP: ST 2110-22 requires it"),
        "{no_tp}"
    );
    // A second media section is checked as well, with its own line numbers.
    let two = format!("{full}m=audio 5006 RTP/AVP 97\r\na=rtpmap:97 L24/48000\r\n");
    assert_eq!(
        Session::parse_strict(&two).unwrap_err().to_string(),
        "line 12 \"m=audio 5006 RTP/AVP 97\": missing a=ptime: ST 2110-30 requires it"
    );
    let fields: Vec<(usize, &str)> = Session::parse(&two)
        .unwrap()
        .warnings()
        .iter()
        .map(|w| (w.media, w.field))
        .collect();
    assert_eq!(
        fields,
        [
            (1, "a=ptime"),
            (1, "c="),
            (1, "a=ts-refclk"),
            (1, "a=mediaclk")
        ]
    );
}

#[test]
fn session_parses_through_from_str() {
    let s: Session = crlf(FULL_VIDEO_SDP).parse().unwrap();
    assert_eq!(s, Session::st2110_20(&tx(), full_video()));
    assert!("v=0".parse::<Session>().is_err());
}

// ---------------------------------------------------------------------------------------------
// Round trips of generated sessions, and fuzzing.

fn sampling() -> impl Strategy<Value = Sampling> {
    prop::sample::select(Sampling::ALL.map(|(_, s)| s).to_vec())
}

fn depth() -> impl Strategy<Value = Depth> {
    prop::sample::select(vec![Depth::D8, Depth::D10, Depth::D12, Depth::D16])
}

fn frame_rate() -> impl Strategy<Value = FrameRate> {
    (1u32..=240_000, 1u32..=1001)
        .prop_filter_map("a rate within bounds", |(n, d)| FrameRate::new(n, d))
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:()-]{1,12}"
}

fn extra_params() -> impl Strategy<Value = Vec<Param>> {
    let param = ("x-[a-z]{1,6}", prop::option::of("[A-Za-z0-9=.,]{0,8}"))
        .prop_map(|(name, value)| Param { name, value });
    prop::collection::vec(param, 0..3)
}

fn ref_clock() -> impl Strategy<Value = RefClock> {
    prop_oneof![
        (any::<[u8; 8]>(), 0u8..=127).prop_map(|(gmid, domain)| RefClock::Ptp { gmid, domain }),
        Just(RefClock::PtpTraceable),
        any::<[u8; 6]>().prop_map(RefClock::LocalMac),
        "ntp=[a-z0-9.]{1,12}".prop_map(RefClock::Other),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn tx_params() -> impl Strategy<Value = TxParams> {
    let name = "[ -~]{0,16}";
    (
        name,
        any::<u64>(),
        any::<u64>(),
        ip(),
        ip(),
        any::<u16>(),
        any::<u8>(),
        0u8..=127,
        ref_clock(),
    )
        .prop_map(
            |(
                name,
                session_id,
                session_version,
                source,
                destination,
                port,
                ttl,
                payload_type,
                ref_clock,
            )| {
                TxParams {
                    name,
                    session_id,
                    session_version,
                    source,
                    destination,
                    port,
                    ttl,
                    payload_type,
                    ref_clock,
                }
            },
        )
}

fn video() -> impl Strategy<Value = VideoFmtp> {
    let geometry = (
        sampling(),
        depth(),
        1u32..=32767,
        1u32..=32767,
        frame_rate(),
    );
    let options = (
        prop::option::of(prop::sample::select(PACKING_MODES_ALL.to_vec())),
        prop::option::of(prop::sample::select(SENDER_TYPES_ALL.to_vec())),
        prop::option::of(prop::sample::select(RANGES_ALL.to_vec())),
        prop::option::of(
            (1u32..100, 1u32..100).prop_map(|(width, height)| AspectRatio { width, height }),
        ),
        prop::option::of(1u16..),
        any::<(bool, bool)>(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        (prop::option::of(token()), extra_params()),
    );
    (geometry, options).prop_map(
        |((s, d, w, h, r), (pm, tp, range, par, maxudp, flags, troff, cmax, (tcs, extra)))| {
            VideoFmtp {
                packing_mode: pm,
                sender_type: tp,
                range,
                par,
                maxudp,
                interlace: flags.0,
                segmented: flags.1,
                troff,
                cmax,
                tcs,
                extra,
                ..VideoFmtp::new(s, d, w, h, r)
            }
        },
    )
}

const PACKING_MODES_ALL: [PackingMode; 2] = [PackingMode::General, PackingMode::Block];
const SENDER_TYPES_ALL: [SenderType; 3] = [
    SenderType::Narrow,
    SenderType::NarrowLinear,
    SenderType::Wide,
];
const RANGES_ALL: [Range; 3] = [Range::Narrow, Range::FullProtect, Range::Full];

fn jxsv() -> impl Strategy<Value = JxsvFmtp> {
    (
        prop::option::of(prop::sample::select(vec![
            JxsvPacketMode::Codestream,
            JxsvPacketMode::Slice,
        ])),
        prop::option::of(prop::sample::select(vec![
            JxsvTransMode::OutOfOrder,
            JxsvTransMode::Sequential,
        ])),
        (
            prop::option::of(token()),
            prop::option::of(token()),
            prop::option::of(token()),
        ),
        (prop::option::of(sampling()), prop::option::of(depth())),
        (
            prop::option::of(1u32..=32767),
            prop::option::of(1u32..=32767),
            prop::option::of(frame_rate()),
        ),
        extra_params(),
    )
        .prop_map(
            |(
                packetmode,
                transmode,
                (profile, level, sublevel),
                (sampling, depth),
                (width, height, rate),
                extra,
            )| {
                JxsvFmtp {
                    packetmode,
                    transmode,
                    profile,
                    level,
                    sublevel,
                    sampling,
                    depth,
                    width,
                    height,
                    exactframerate: rate,
                    extra,
                    ..JxsvFmtp::default()
                }
            },
        )
}

fn anc() -> impl Strategy<Value = AncFmtp> {
    let id = any::<(u8, u8)>().prop_map(|(did, sdid)| DidSdid { did, sdid });
    (
        prop::collection::vec(id, 0..4),
        prop::option::of(any::<u8>()),
        prop::option::of(frame_rate()),
        prop::option::of(token()),
        extra_params(),
    )
        .prop_map(|(did_sdid, vpid_code, exactframerate, tm, extra)| AncFmtp {
            did_sdid,
            vpid_code,
            exactframerate,
            tm,
            ssn: None,
            extra,
        })
}

fn audio() -> impl Strategy<Value = AudioParams> {
    (
        prop::sample::select(vec![AudioEncoding::L16, AudioEncoding::L24]),
        prop::sample::select(vec![44_100u32, 48_000, 96_000]),
        1u16..=64,
        (1u32..=4_000_000).prop_map(|us| Ptime::from_micros(us).unwrap()),
        prop::option::of(token()),
    )
        .prop_map(
            |(encoding, sample_rate, channels, ptime, channel_order)| AudioParams {
                encoding,
                sample_rate,
                channels,
                ptime,
                channel_order,
            },
        )
}

fn session() -> impl Strategy<Value = Session> {
    let built = prop_oneof![
        (tx_params(), video()).prop_map(|(tx, v)| Session::st2110_20(&tx, v)),
        (tx_params(), jxsv(), any::<u64>())
            .prop_map(|(tx, j, kbps)| Session::st2110_22(&tx, j, kbps)),
        (tx_params(), audio()).prop_map(|(tx, a)| Session::st2110_30(&tx, &a)),
        (tx_params(), anc()).prop_map(|(tx, a)| Session::st2110_40(&tx, a)),
    ];
    (built, prop::option::of(tx_params())).prop_map(|(s, dup)| match dup {
        Some(secondary) => s.with_st2022_7(&secondary),
        None => s,
    })
}

/// Session-level lines a fuzzer stitches after the header.
const SESSION_LINES: &[&str] = &[
    "c=IN IP4 239.1.1.1/32",
    "c=IN IP6 ff3e::1",
    "i=info",
    "b=CT:1000",
    "r=1 2 3",
    "z=1 -1h",
    "a=group:DUP primary secondary",
    "a=ts-refclk:ptp=IEEE1588-2008:traceable",
    "a=mediaclk:direct=0",
    "a=tool:x y",
    "v=0",
    "t=0 0",
];

/// The lines a media section starts with, one template per encoding.
const SECTIONS: &[&[&str]] = &[
    &[
        "m=video 5004 RTP/AVP 96",
        "a=rtpmap:96 raw/90000",
        "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10; exactframerate=50; \
         colorimetry=BT709; PM=2110GPM; SSN=ST2110-20:2017; TP=2110TPN; RANGE=FULL; PAR=1:1; \
         MAXUDP=8960; interlace; segmented=0; TROFF=1; CMAX=4; x=1; y",
        "c=IN IP4 239.1.1.1/32",
        "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0",
        "a=mediaclk:direct=0",
    ],
    &[
        "m=video 5004 RTP/AVP 96",
        "a=rtpmap:96 RAW/90000",
        "a=fmtp:96 sampling=RGB;depth=8;width=8;height=8;",
    ],
    &["m=audio 5006 RTP/AVP 97", "a=rtpmap:97 L24/48000/2"],
    &[
        "m=audio 5006 RTP/AVP 97",
        "a=rtpmap:97 L16/96000",
        "a=fmtp:97 channel-order=SMPTE2110.(ST)",
    ],
    &[
        "m=video 5008 RTP/AVP 98",
        "a=rtpmap:98 jxsv/90000",
        "a=fmtp:98 packetmode=1; transmode=0; profile=High444.12; level=2k-1; sublevel=Sublev3bpp; \
         sampling=YCbCr-4:2:2; depth=10; width=1920; height=1080; exactframerate=60000/1001; \
         colorimetry=BT709; TCS=SDR; TP=2110TPN; SSN=ST2110-22:2019",
        "b=AS:100000",
    ],
    &[
        "m=video 5010 RTP/AVP 100",
        "a=rtpmap:100 smpte291/90000",
        "a=fmtp:100 DID_SDID={0x61,0x02}; DID_SDID={0x41,0x05}; VPID_Code=132; TM=CTM",
        "c=IN IP6 ff3e::1",
        "a=ts-refclk:localmac=00-11-22-33-44-55",
        "a=mediaclk:direct=0",
    ],
    &["m=application 9 UDP 99", "a=rtpmap:99 x/1", "a=fmtp:99 ;;="],
];

/// Lines a fuzzer adds to a media section.
const MEDIA_LINES: &[&str] = &[
    "c=IN IP4 239.1.1.1/32",
    "c=IN IP6 ff3e::1",
    "i=media",
    "b=AS:1000",
    "k=prompt",
    "a=ptime:1",
    "a=ptime:0.125",
    "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0",
    "a=ts-refclk:localmac=00-11-22-33-44-55",
    "a=ts-refclk:ntp=1.2.3.4",
    "a=mediaclk:direct=0",
    "a=mid:primary",
    "a=source-filter: incl IN IP4 239.1.1.1 10.0.0.1",
    "a=recvonly",
    "a=x:",
    "",
];

/// `line`, damaged one time in eight: a character inserted, removed or the line cut short.
fn damaged(line: &'static str) -> impl Strategy<Value = String> {
    let damage = prop_oneof![
        7 => Just(None),
        1 => (any::<prop::sample::Index>(), any::<char>(), 0u8..4).prop_map(Some),
    ];
    damage.prop_map(move |damage| {
        let mut chars: Vec<char> = line.chars().collect();
        if let Some((at, c, how)) = damage {
            let i = at.index(chars.len() + 1);
            match how {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                2 => chars.truncate(i),
                _ => chars.insert(i, ';'),
            }
        }
        chars.into_iter().collect()
    })
}

fn lines_from(
    pool: &'static [&'static str],
    n: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(pool).prop_flat_map(damaged), n)
}

fn section() -> impl Strategy<Value = Vec<String>> {
    let template = prop::sample::select(SECTIONS)
        .prop_flat_map(|lines| lines.iter().map(|l| damaged(l)).collect::<Vec<_>>());
    (template, lines_from(MEDIA_LINES, 0..6)).prop_map(|(mut head, tail)| {
        head.extend(tail);
        head
    })
}

fn stitched() -> impl Strategy<Value = String> {
    let header = ["v=0", "o=- 1 2 IN IP4 10.0.0.1", "s=x", "t=0 0"];
    let header: Vec<_> = header.into_iter().map(damaged).collect();
    let eol = prop::sample::select(vec!["\n", "\r\n", "\r"]);
    let sections = prop::collection::vec(section(), 0..3);
    (header, lines_from(SESSION_LINES, 0..4), sections, eol).prop_map(
        |(head, session, sections, eol)| {
            let all = head
                .into_iter()
                .chain(session)
                .chain(sections.into_iter().flatten());
            all.map(|l| format!("{l}{eol}")).collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_sessions_round_trip(s in session()) {
        let text = s.to_string();
        prop_assert_eq!(Session::parse(&text), Ok(s.clone()), "{}", text);
        prop_assert_eq!(Session::parse_strict(&text).is_ok(), s.warnings().is_empty());
        fuzz(text.as_bytes());
    }

    #[test]
    fn fuzz_random_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz(&data);
    }

    #[test]
    fn fuzz_stitched_lines(text in stitched()) {
        fuzz(text.as_bytes());
    }

    #[test]
    fn fuzz_damaged_known_answers(
        cut in any::<prop::sample::Index>(),
        c in any::<char>(),
        which in 0usize..3,
    ) {
        let base = [crlf(FULL_VIDEO_SDP), lf(FFMPEG_VIDEO), crlf(GSTREAMER_VIDEO)][which].clone();
        let mut chars: Vec<char> = base.chars().collect();
        let i = cut.index(chars.len());
        chars[i] = c;
        fuzz(chars.iter().collect::<String>().as_bytes());
    }
}

#[test]
fn stitched_fuzzing_reaches_both_outcomes() {
    // Guards against a fuzz strategy that only ever produces refused (or only accepted) input.
    use proptest::strategy::ValueTree;

    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut accepted, mut with_media, mut strict, mut refused) = (0, 0, 0, 0);
    for _ in 0..4000 {
        let text = stitched().new_tree(&mut runner).unwrap().current();
        match Session::parse(&text) {
            Ok(s) if !s.media.is_empty() => with_media += 1,
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
        strict += usize::from(Session::parse_strict(&text).is_ok_and(|s| !s.media.is_empty()));
    }
    let counts = [accepted, with_media, strict, refused];
    assert!(
        counts.iter().all(|&n| n >= 20),
        "accepted, with media, strict, refused: {counts:?}"
    );
}
