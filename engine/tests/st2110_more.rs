//! ST 2110-22 (JPEG XS passthrough, RFC 9134) and ST 2110-40 (ancillary data, RFC 8331)
//! sessions: our tx to our rx through two SDK connections over loopback, every frame compared
//! bit-exact, and the SDP files the tx sessions publish read back with our strict parser.
//!
//! No third-party peer takes part: neither GStreamer 1.22 nor FFmpeg 5.1 (the versions
//! `scripts/setup_build_env.sh` installs) has a JPEG XS RTP (de)payloader or an ST 291 / RFC 8331
//! one, so nothing here can decode our -22 or -40 streams but ourselves.

mod common;
#[path = "common/peer.rs"]
mod peer;

use common::Engine;
use mcm_proto::st2110::rfc8331::{self, AncRepr};
use mcm_proto::st2110::sdp;
use mcm_sdk::Client;
use peer::{client, free_port, pattern, recv, send};

/// Frame rate of our paced senders here (see `TX_FPS` in `st2110.rs`).
const TX_FPS: u32 = 10;
/// The largest codestream of the -22 test (`maxPayloadSize`).
const MAX_CODESTREAM: usize = 600_000;

fn jxs_json(port: u16, sdp_file: Option<&str>) -> String {
    // With an sdpFile, the file's payload type (98) wins over the JSON's.
    let (sdp, pt) = sdp_file.map_or((String::new(), 98), |p| {
        (format!(r#", "sdpFile": "{p}""#), 99)
    });
    format!(
        r#"{{"bufferQueueCapacity": 8, "maxPayloadSize": {MAX_CODESTREAM},
            "connection": {{"st2110": {{"transport": "st2110-22", "ipAddr": "127.0.0.1",
                "port": {port}, "payloadType": {pt}{sdp}}}}},
            "payload": {{"video": {{"width": 1920, "height": 1080, "fps": {TX_FPS},
                "pixelFormat": "yuv422p10le"}}}}}}"#
    )
}

fn anc_json(port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 8,
            "connection": {{"st2110": {{"transport": "st2110-40", "ipAddr": "127.0.0.1",
                "port": {port}, "payloadType": 100}}}},
            "payload": {{"ancillary": {{"fps": {TX_FPS}}}}}}}"#
    )
}

/// The tx and rx bridges' counters.
fn bridges(c: &Client) -> (mcm_proto::sdk::BridgeStats, mcm_proto::sdk::BridgeStats) {
    let stats = c.stats().unwrap();
    let b = |dir: &str| {
        stats
            .bridges
            .iter()
            .find(|b| b.group.starts_with(dir))
            .unwrap_or_else(|| panic!("no {dir} bridge in {stats:?}"))
            .clone()
    };
    (b("st2110-tx"), b("st2110-rx"))
}

fn published_sdp(e: &Engine, port: u16) -> sdp::Session {
    let path = e.shm.join(format!("st2110-tx-127.0.0.1-{port}.sdp"));
    let text = std::fs::read_to_string(&path).unwrap();
    sdp::Session::parse_strict(&text).unwrap_or_else(|err| panic!("{err}:\n{text}"))
}

#[test]
fn jpeg_xs_codestreams_of_any_size_reach_our_rx_bit_exact() {
    let e = Engine::start();
    let c = client(&e);
    let port = free_port();
    // The rx session is configured from the SDP the tx session publishes.
    let tx = c.create_tx(&jxs_json(port, None)).unwrap();
    let session = published_sdp(&e, port);
    let media = &session.media[0];
    assert_eq!(media.rtpmap.encoding, "jxsv");
    let sdp::Fmtp::Jxsv(f) = &media.fmtp else {
        panic!("{:?}", media.fmtp)
    };
    assert_eq!((f.width, f.height), (Some(1920), Some(1080)));
    assert_eq!(f.packetmode, Some(sdp::JxsvPacketMode::Codestream));
    assert_eq!(f.depth, Some(mcm_proto::st2110::Depth::D10));
    assert_eq!(f.sender_type, Some(sdp::SenderType::Narrow));
    assert_eq!(f.exactframerate.map(|r| r.to_string()), Some("10".into()));
    // 600 000 bytes ten times a second: 48 000 kbit/s.
    assert_eq!(media.bandwidth_as(), Some(48_000));
    let sdp_path = e.shm.join(format!("st2110-tx-127.0.0.1-{port}.sdp"));
    let rx = c
        .create_rx(&jxs_json(port, Some(&sdp_path.display().to_string())))
        .unwrap();
    // A tiny codestream, one of exactly one packet's data, one spanning hundreds of packets,
    // the largest allowed, and odd sizes between.
    let sizes = [1, 1444, 1445, 450_001, MAX_CODESTREAM, 37, 100_000];
    for (i, &n) in sizes.iter().enumerate() {
        let f = pattern(i as u32, n);
        send(&tx, &f);
        let got = recv(&rx);
        assert_eq!(got.len(), n, "codestream {i}: length");
        assert!(got == f, "codestream {i} differs");
    }
    let (t, r) = bridges(&c);
    let packets: u64 = sizes.iter().map(|n| n.div_ceil(1444) as u64).sum();
    assert_eq!((t.frames, t.packets, t.frames_refused), (7, packets, 0));
    assert_eq!((r.frames, r.packets), (7, packets));
    assert_eq!(
        (r.packets_lost, r.frames_incomplete, r.packets_malformed),
        (0, 0, 0)
    );
}

fn anc_packet(did: u8, words: &[u16]) -> AncRepr<'_> {
    AncRepr {
        c: false,
        line: 10,
        horizontal_offset: rfc8331::HORIZONTAL_OFFSET_UNSPECIFIED,
        s: false,
        stream_num: 0,
        did,
        sdid: 0x01,
        user_data: words,
    }
}

/// One frame in the in-slot format: the RFC 8331 payload after the RTP header.
fn anc_frame(packets: &[AncRepr<'_>]) -> Vec<u8> {
    let mut out = vec![0u8; rfc8331::emitted_len(packets)];
    rfc8331::emit(packets, rfc8331::FIELD_PROGRESSIVE, 0, &mut out).unwrap();
    out
}

#[test]
fn anc_frames_reach_our_rx_bit_exact_and_malformed_ones_are_refused() {
    let e = Engine::start();
    let c = client(&e);
    let port = free_port();
    let rx = c.create_rx(&anc_json(port)).unwrap();
    let tx = c.create_tx(&anc_json(port)).unwrap();
    let session = published_sdp(&e, port);
    let media = &session.media[0];
    assert_eq!(media.rtpmap.encoding, "smpte291");
    let sdp::Fmtp::Smpte291(f) = &media.fmtp else {
        panic!("{:?}", media.fmtp)
    };
    assert_eq!(f.exactframerate.map(|r| r.to_string()), Some("10".into()));

    let cc: Vec<u16> = (0..20).map(|i| 0x200 | i).collect();
    let full: Vec<u16> = (0..255).map(|i| 0x100 | (i as u16)).collect();
    let many: Vec<AncRepr<'_>> = (0..10).map(|i| anc_packet(0x50 + i, &full)).collect();
    let frames = [
        // Captions and a timecode: one RTP packet.
        anc_frame(&[anc_packet(0x61, &cc), anc_packet(0x60, &[0x101; 16])]),
        // Ten full ANC packets, 3280 bytes: three RTP packets.
        anc_frame(&many),
        // No ANC packets this frame.
        anc_frame(&[]),
        anc_frame(&[anc_packet(0x41, &[0x205, 0x106])]),
    ];
    let mut malformed = frames[0].clone();
    malformed[rfc8331::HEADER_LEN + 9] ^= 0x04; // a user data word: the checksum fails
    for (i, f) in frames.iter().enumerate() {
        if i == 2 {
            send(&tx, &malformed); // refused: never reaches rx
        }
        send(&tx, f);
        let got = recv(&rx);
        assert!(got == *f, "ANC frame {i} differs: {got:?}");
    }
    let (t, r) = bridges(&c);
    assert_eq!((t.frames, t.frames_refused), (4, 1));
    assert_eq!(t.packets, 1 + 3 + 1 + 1);
    assert_eq!((r.frames, r.packets), (4, 6));
    assert_eq!(
        (r.packets_lost, r.frames_incomplete, r.packets_malformed),
        (0, 0, 0)
    );
    assert!(
        e.log_text()
            .contains("frame refused, not sent: malformed ANC data: checksum mismatch"),
        "{}",
        e.log_text()
    );
}
