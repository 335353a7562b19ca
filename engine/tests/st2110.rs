//! ST 2110 sessions against real peers: our tx and rx over loopback, GStreamer's `rtpvrawpay` /
//! `rtpvrawdepay` and L24 elements, FFmpeg reading our SDP. Every frame is compared bit-exact.
//!
//! The peers are installed by `scripts/setup_build_env.sh`; a missing peer fails the test.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::path::PathBuf;
use std::time::Duration;

use common::Engine;
use mcm_sdk::Timeout;
use peer::{
    H, Peer, RmemMax, W, audio_json, client, free_port, pattern, recv, send, video_json, wait_file,
    wait_udp_bound,
};

/// Bytes of a 1080p 10-bit 4:2:2 frame as RFC 4175 carries it (UYVP in GStreamer).
const UYVP_BYTES: usize = (W * H * 5 / 2) as usize;
/// Frame rate of our paced senders in these tests: 43 200 packets/s, which a debug-build engine
/// keeps up with on a loaded 2-core machine (at 60 fps, 259 200 packets/s, a starved lcore falls
/// a frame behind and the pacer skips the rest of that frame, as ST 2110-21 senders do).
const TX_FPS: u32 = 10;
/// Bytes of a 1080p 8-bit 4:2:2 frame (UYVY).
const UYVY_BYTES: usize = (W * H * 2) as usize;

fn video_caps(depth: u32, port: u16) -> String {
    format!(
        "udpsrc address=127.0.0.1 port={port} buffer-size=67108864 \
         caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,\
         sampling=YCbCr-4:2:2,depth=(string){depth},width=(string){W},height=(string){H},\
         colorimetry=(string)BT709-2,payload=96"
    )
}

fn tmp(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn our_tx_reaches_our_rx_bit_exact_over_loopback() {
    let e = Engine::start();
    let c = client(&e);
    let port = free_port();
    let rx = c
        .create_rx(&video_json(
            port,
            "yuv422p10rfc4175",
            "yuv422p10rfc4175",
            TX_FPS,
        ))
        .unwrap();
    let tx = c
        .create_tx(&video_json(
            port,
            "yuv422p10rfc4175",
            "yuv422p10rfc4175",
            TX_FPS,
        ))
        .unwrap();
    let frames: Vec<Vec<u8>> = (0..20).map(|i| pattern(i, UYVP_BYTES)).collect();
    for (i, f) in frames.iter().enumerate() {
        send(&tx, f);
        let got = recv(&rx);
        assert!(got == *f, "frame {i} differs");
    }
    let stats = c.stats().unwrap();
    let b = |dir: &str| {
        stats
            .bridges
            .iter()
            .find(|b| b.group.starts_with(dir))
            .unwrap_or_else(|| panic!("no {dir} bridge in {stats:?}"))
            .clone()
    };
    let (t, r) = (b("st2110-tx"), b("st2110-rx"));
    assert_eq!(t.frames, 20);
    assert_eq!(
        t.packets,
        20 * 4320,
        "1200-byte payloads: 4320 packets per frame"
    );
    assert_eq!(r.frames, 20);
    assert_eq!(
        (r.packets_lost, r.frames_incomplete, r.packets_malformed),
        (0, 0, 0)
    );
    // The tx session published its SDP while it ran.
    let sdp =
        std::fs::read_to_string(e.shm.join(format!("st2110-tx-127.0.0.1-{port}.sdp"))).unwrap();
    assert!(sdp.contains("a=rtpmap:96 raw/90000"), "{sdp}");
    assert!(sdp.contains("exactframerate=10"), "{sdp}");
}

#[test]
fn gstreamer_rtpvrawdepay_decodes_our_10_and_8_bit_streams_bit_exact() {
    let _rmem = RmemMax::raise();
    for (depth, pixel, bytes) in [
        (10, "yuv422p10rfc4175", UYVP_BYTES),
        (8, "uyvy", UYVY_BYTES),
    ] {
        let e = Engine::start();
        let c = client(&e);
        let dir = tempfile::tempdir().unwrap();
        let out = tmp(&dir, "rx.raw");
        let port = free_port();
        let peer = Peer::gst(&format!(
            "{} ! rtpvrawdepay ! filesink location={}",
            video_caps(depth, port),
            out.display()
        ));
        wait_udp_bound(port);
        let tx = c
            .create_tx(&video_json(port, pixel, pixel, TX_FPS))
            .unwrap();
        let frames: Vec<Vec<u8>> = (0..10).map(|i| pattern(i, bytes)).collect();
        for f in &frames {
            send(&tx, f);
        }
        let _ = wait_file(&out, bytes * frames.len(), Duration::from_secs(20));
        peer.interrupt(Duration::from_secs(10));
        let got = std::fs::read(&out).unwrap();
        assert_eq!(
            got.len(),
            bytes * frames.len(),
            "{depth}-bit: frames lost or cut; engine stats {:?}",
            c.stats().unwrap().bridges
        );
        for (i, f) in frames.iter().enumerate() {
            assert!(
                got[i * bytes..(i + 1) * bytes] == f[..],
                "{depth}-bit frame {i} differs"
            );
        }
    }
}

/// GStreamer's reference frames: `videotestsrc` is deterministic, so the same pipeline into a
/// file gives the frames its payloader sends.
fn gst_reference(dir: &tempfile::TempDir, format: &str, n: u32) -> Vec<u8> {
    let path = tmp(dir, "reference.raw");
    Peer::gst(&format!(
        "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format={format},width={W},\
         height={H},framerate=30/1 ! filesink location={}",
        path.display()
    ))
    .wait(Duration::from_secs(60));
    std::fs::read(path).unwrap()
}

#[test]
fn gstreamer_rtpvrawpay_frames_reach_an_sdk_receiver_bit_exact() {
    // mtu=1220: one SRD per 1200-byte payload; default mtu: packets span lines with two SRDs.
    for mtu in ["mtu=1220", ""] {
        let e = Engine::start();
        let c = client(&e);
        let dir = tempfile::tempdir().unwrap();
        let n = 10;
        let reference = gst_reference(&dir, "UYVP", n);
        assert_eq!(reference.len(), UYVP_BYTES * n as usize);
        let port = free_port();
        let rx = c
            .create_rx(&video_json(
                port,
                "yuv422p10rfc4175",
                "yuv422p10rfc4175",
                30,
            ))
            .unwrap();
        let peer = Peer::gst(&format!(
            "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format=UYVP,width={W},\
             height={H},framerate=30/1 ! rtpvrawpay {mtu} pt=96 ! udpsink host=127.0.0.1 \
             port={port}"
        ));
        let mut got = Vec::new();
        while got.len() < n as usize {
            match rx.get_timeout(Timeout::After(Duration::from_secs(5))) {
                Ok(f) => got.push(f.payload().to_vec()),
                Err(_) => break,
            }
        }
        peer.wait(Duration::from_secs(30));
        assert_eq!(got.len(), n as usize, "{mtu:?}: frames missing");
        for (i, f) in got.iter().enumerate() {
            let want = &reference[i * UYVP_BYTES..(i + 1) * UYVP_BYTES];
            assert!(
                f[..] == *want,
                "{mtu:?}: frame {i} differs from GStreamer's"
            );
        }
        let stats = c.stats().unwrap();
        let r = &stats.bridges[0];
        assert_eq!((r.packets_lost, r.frames_incomplete), (0, 0), "{r:?}");
    }
}

#[test]
fn gstreamer_rtpl24depay_decodes_our_audio_bit_exact() {
    let e = Engine::start();
    let c = client(&e);
    let dir = tempfile::tempdir().unwrap();
    let out = tmp(&dir, "audio.raw");
    let port = free_port();
    let peer = Peer::gst(&format!(
        "udpsrc address=127.0.0.1 port={port} caps=application/x-rtp,media=audio,\
         clock-rate=48000,encoding-name=L24,channels=2,payload=97 ! rtpL24depay ! filesink \
         location={}",
        out.display()
    ));
    wait_udp_bound(port);
    let tx = c.create_tx(&audio_json(port, 2)).unwrap();
    let packet = 48 * 2 * 3;
    let packets: Vec<Vec<u8>> = (0..200).map(|i| pattern(i, packet)).collect();
    for p in &packets {
        send(&tx, p);
    }
    // filesink buffers 64 KiB: the file is whole after end-of-stream flushes it.
    let _ = wait_file(&out, packet * packets.len(), Duration::from_secs(2));
    peer.interrupt(Duration::from_secs(10));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(
        got.len(),
        packet * packets.len(),
        "audio packets lost; engine stats {:?}",
        c.stats().unwrap().bridges
    );
    assert!(got == packets.concat(), "audio differs");
}
