//! ST 2110 sessions against FFmpeg 5.1: FFmpeg receives our 10-bit and 8-bit video and our L24
//! audio from the SDP files our tx sessions publish, and sends RFC 4175 video that our rx
//! delivers to an SDK receiver. Every frame and sample is compared bit-exact.
//!
//! FFmpeg is installed by `scripts/setup_build_env.sh`; a missing peer fails the test. Its
//! receiving side loses packets unless `net.core.rmem_max` is raised and `-buffer_size` given,
//! so the receiving tests hold [`RmemMax`] (they run as root).
//!
//! FFmpeg writes every frame it decodes once (`-fps_mode passthrough`). Its default for the
//! rawvideo muxer is constant frame rate at the SDP's `exactframerate`: when our sender, late
//! on a loaded machine, sends a frame at the next free epoch rather than the one after its
//! predecessor (an RTP timestamp two periods on, as ST 2110-21 has it), FFmpeg repeats the
//! previous frame to fill the period. Captured on the wire at 30 fps: timestamps 6000 ticks
//! apart, and FFmpeg's output was input frames 0, 1, 1, 2, 2, 3, ... (frame 2 on "differed").
//!
//! FFmpeg's sender bursts each frame (no pacing): 4320 packets of 1220 bytes, the marker on the
//! last, for every frame (counted with a plain UDP socket). A debug-build engine converting
//! 1080p 10-bit frames to planar on its lcore reads slower than that at 30 fps; its socket
//! backlog reached the 64 MiB the kernel gave a 32 MiB buffer, and the kernel dropped the last
//! 1113 packets of frame 8 (`/proc/net/udp` drops). So the sender here runs at [`TX_FPS`] and
//! the engine's receive buffer holds the whole stream.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::path::Path;
use std::time::Duration;

use common::Engine;
use mcm_engine::transport::st2110::convert::{PixelFormat, from_rfc4175};
use mcm_sdk::{Timeout, TxConnection};
use peer::{
    H, Peer, RmemMax, W, audio_json, client, free_port, pattern, send, video_json, wait_udp_bound,
    wait_udp_rcvbuf,
};

/// Frame rate of the video streams in these tests (ours paced, FFmpeg's at `-re`): one a debug
/// build keeps up with on a loaded 2-core machine.
const TX_FPS: u32 = 10;
/// The engine's socket buffer for these tests: a whole test stream (8 or 10 1080p frames, about
/// 2 KiB of kernel memory a packet) fits even if the engine reads nothing until its end.
const SOCKET_BUFFER: &str = "[st2110]\nsocket_buffer_bytes = 134217728\n";
/// Bytes of a 1080p 10-bit 4:2:2 frame in RFC 4175 pgroups.
const RFC4175_BYTES: usize = (W * H * 5 / 2) as usize;
/// Bytes of a 1080p 10-bit 4:2:2 planar frame (`yuv422p10le`: 2 bytes a sample).
const P10_BYTES: usize = (W * H * 2 * 2) as usize;
/// Bytes of a 1080p 8-bit 4:2:2 frame (UYVY).
const UYVY_BYTES: usize = (W * H * 2) as usize;

/// An engine with [`SOCKET_BUFFER`].
fn engine() -> Engine {
    Engine::start_with(|t| t + SOCKET_BUFFER, &[])
}

/// The SDP our tx session to `127.0.0.1:port` published, copied to `dir` (FFmpeg reads it
/// while the session, and so the file, exists; the copy outlives it for failure reports).
fn our_sdp(e: &Engine, port: u16, dir: &Path) -> std::path::PathBuf {
    let published = e.shm.join(format!("st2110-tx-127.0.0.1-{port}.sdp"));
    let text = std::fs::read_to_string(&published)
        .unwrap_or_else(|err| panic!("no SDP at {}: {err}", published.display()));
    let copy = dir.join("our.sdp");
    std::fs::write(&copy, text).unwrap();
    copy
}

/// Sends `frames`, then further frames (not part of the comparison) while FFmpeg has not yet
/// written all it was asked for: a receiver may need the start of the next frame to finish
/// one. Bounded by `extra` frames.
fn send_until_done(tx: &TxConnection, frames: &[Vec<u8>], peer: &mut Peer, extra: u32) {
    for f in frames {
        send(tx, f);
    }
    for i in 0..extra {
        if peer.child.try_wait().unwrap().is_some() {
            return;
        }
        send(tx, &pattern(1000 + i, frames[0].len()));
    }
}

/// Which of `candidates` (frame numbers and contents) `frame` equals, for failure messages.
fn which(frame: &[u8], candidates: &[(u32, Vec<u8>)]) -> Option<u32> {
    candidates
        .iter()
        .find(|(_, c)| c[..] == frame[..])
        .map(|(i, _)| *i)
}

/// FFmpeg reads our SDP and writes `pix_fmt` frames; compared with `expect(frame)` of each
/// frame we sent.
fn ffmpeg_receives_our_video(
    wire: &str,
    bytes: usize,
    pix_fmt: &str,
    expect: impl Fn(&[u8]) -> Vec<u8>,
) {
    let _rmem = RmemMax::raise();
    let e = engine();
    let c = client(&e);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.raw");
    let port = free_port();
    let n = 10u32;
    let extra = 60;
    let tx = c.create_tx(&video_json(port, wire, wire, TX_FPS)).unwrap();
    let sdp = our_sdp(&e, port, dir.path());
    let frames_arg = n.to_string();
    let mut peer = Peer::ffmpeg(&[
        "-protocol_whitelist",
        "file,udp,rtp",
        "-buffer_size",
        "134217728",
        "-i",
        sdp.to_str().unwrap(),
        "-fps_mode",
        "passthrough",
        "-frames:v",
        &frames_arg,
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        out.to_str().unwrap(),
    ]);
    wait_udp_bound(port);
    // FFmpeg sets its 128 MiB buffer after binding (the kernel reports twice that).
    wait_udp_rcvbuf(port, 128 << 20);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| pattern(i, bytes)).collect();
    send_until_done(&tx, &frames, &mut peer, extra);
    peer.wait(Duration::from_secs(30));
    let got = std::fs::read(&out).unwrap();
    let want: Vec<Vec<u8>> = frames.iter().map(|f| expect(f)).collect();
    let len = want[0].len();
    // Every frame we sent, extras included, to name what a differing output frame is.
    let sent: Vec<(u32, Vec<u8>)> = (0..n)
        .map(|i| (i, want[i as usize].clone()))
        .chain((0..extra).map(|i| (1000 + i, expect(&pattern(1000 + i, bytes)))))
        .collect();
    assert_eq!(
        got.len(),
        len * n as usize,
        "{wire}: FFmpeg wrote a wrong number of bytes; engine stats {:?}",
        c.stats().unwrap().bridges
    );
    for (i, w) in want.iter().enumerate() {
        let g = &got[i * len..(i + 1) * len];
        assert!(
            g == &w[..],
            "{wire}: output frame {i} differs; it equals sent frame {:?}",
            which(g, &sent)
        );
    }
    // Late packets are allowed (a starved debug build); dropped frames are not. Send errors
    // are expected: the extra frames meet a closed port once FFmpeg has exited.
    let stats = c.stats().unwrap();
    let t = &stats.bridges[0];
    assert!(t.frames >= u64::from(n), "{t:?}");
    assert_eq!(t.frames_dropped, 0, "{t:?}");
}

#[test]
fn ffmpeg_decodes_our_10_bit_video_from_our_sdp_bit_exact() {
    ffmpeg_receives_our_video("yuv422p10rfc4175", RFC4175_BYTES, "yuv422p10le", |f| {
        let mut planar = vec![0u8; P10_BYTES];
        from_rfc4175(PixelFormat::Yuv422p10le, W, H, f, &mut planar).unwrap();
        planar
    });
}

#[test]
fn ffmpeg_decodes_our_8_bit_video_from_our_sdp_bit_exact() {
    ffmpeg_receives_our_video("uyvy", UYVY_BYTES, "uyvy422", |f| f.to_vec());
}

/// A `yuv422p10le` frame whose every sample is a valid 10-bit value (upper 6 bits clear).
fn planar_10_bit(i: u32) -> Vec<u8> {
    let mut f = pattern(i, P10_BYTES);
    for s in f.chunks_exact_mut(2) {
        s[1] &= 0x03;
    }
    f
}

#[test]
fn ffmpeg_bitpacked_frames_reach_an_sdk_receiver_bit_exact() {
    // Our rx converts to yuv422p10le for the application, or hands over the pgroups as sent.
    for pixel in ["yuv422p10le", "yuv422p10rfc4175"] {
        let e = engine();
        let c = client(&e);
        let dir = tempfile::tempdir().unwrap();
        let n = 8u32;
        let frames: Vec<Vec<u8>> = (0..n).map(planar_10_bit).collect();
        let input = dir.path().join("frames.raw");
        std::fs::write(&input, frames.concat()).unwrap();
        let port = free_port();
        let rx = c
            .create_rx(&video_json(port, pixel, "yuv422p10rfc4175", TX_FPS))
            .unwrap();
        let dest = format!("rtp://127.0.0.1:{port}");
        let size = format!("{W}x{H}");
        let rate = TX_FPS.to_string();
        let peer = Peer::ffmpeg(&[
            "-re",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv422p10le",
            "-s",
            &size,
            "-r",
            &rate,
            "-i",
            input.to_str().unwrap(),
            "-c:v",
            "bitpacked",
            "-pix_fmt",
            "yuv422p10le",
            "-f",
            "rtp",
            "-pkt_size",
            "1220",
            &dest,
        ]);
        let mut got = Vec::new();
        while got.len() < n as usize {
            match rx.get_timeout(Timeout::After(Duration::from_secs(5))) {
                Ok(f) => got.push(f.payload().to_vec()),
                Err(_) => break,
            }
        }
        peer.wait(Duration::from_secs(30));
        let stats = c.stats().unwrap();
        assert_eq!(got.len(), n as usize, "{pixel}: frames missing; {stats:?}");
        for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
            let want = if pixel == "yuv422p10le" {
                f.clone()
            } else {
                let mut wire = vec![0u8; RFC4175_BYTES];
                mcm_engine::transport::st2110::convert::to_rfc4175(
                    PixelFormat::Yuv422p10le,
                    W,
                    H,
                    f,
                    &mut wire,
                )
                .unwrap();
                wire
            };
            assert!(
                g[..] == want[..],
                "{pixel}: frame {i} differs from FFmpeg's input"
            );
        }
        let r = &stats.bridges[0];
        assert_eq!(
            (
                r.frames,
                r.packets_lost,
                r.frames_incomplete,
                r.packets_malformed
            ),
            (u64::from(n), 0, 0, 0),
            "{pixel}: {r:?}"
        );
    }
}

#[test]
fn ffmpeg_decodes_our_l24_audio_from_our_sdp_bit_exact() {
    let _rmem = RmemMax::raise();
    let e = Engine::start();
    let c = client(&e);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("audio.raw");
    let port = free_port();
    let channels = 2u16;
    let tx = c.create_tx(&audio_json(port, channels)).unwrap();
    let sdp = our_sdp(&e, port, dir.path());
    // 1 ms packets of 48 samples; FFmpeg's decoder outputs one audio frame a packet.
    let n = 200u32;
    let frames_arg = n.to_string();
    let mut peer = Peer::ffmpeg(&[
        "-protocol_whitelist",
        "file,udp,rtp",
        "-buffer_size",
        "134217728",
        "-i",
        sdp.to_str().unwrap(),
        "-frames:a",
        &frames_arg,
        "-c:a",
        "pcm_s24be",
        "-f",
        "s24be",
        out.to_str().unwrap(),
    ]);
    wait_udp_bound(port);
    wait_udp_rcvbuf(port, 128 << 20);
    let packet = 48 * usize::from(channels) * 3;
    let packets: Vec<Vec<u8>> = (0..n).map(|i| pattern(i, packet)).collect();
    send_until_done(&tx, &packets, &mut peer, 500);
    peer.wait(Duration::from_secs(30));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(
        got.len(),
        packet * n as usize,
        "audio bytes; engine stats {:?}",
        c.stats().unwrap().bridges
    );
    assert!(got == packets.concat(), "audio differs");
}
