//! Edges of a group against a real engine: nothing accepted is lost when a sender deletes its
//! connection, a group that receives an ST 2110 stream and re-sends it, and one sender fanned
//! out to two ST 2110 destinations, one of which leaves mid-stream.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::time::Duration;

use common::Engine;
use mcm_sdk::{MeshErr, RxConnection, Timeout};
use peer::{H, Peer, RmemMax, T, W, client, free_port, pattern, send, wait_file, wait_udp_bound};

/// A small raw video group: 1000 bytes of blob per buffer.
fn blob_json(urn: &str, capacity: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {capacity}, "maxPayloadSize": 1000,
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"blob": {{}}}}}}"#
    )
}

/// The next frame of `rx`, with its payload.
fn next(rx: &RxConnection) -> (u64, Vec<u8>) {
    let f = rx.get_timeout(T).unwrap();
    (f.seq(), f.payload().to_vec())
}

/// 1000 senders in a row each put one frame and delete their connection at once: every one of
/// the 1000 frames reaches each of the three receivers, in order.
#[test]
fn a_frame_put_right_before_delete_reaches_every_receiver() {
    let e = Engine::start();
    let c = client(&e);
    let rxs: Vec<RxConnection> = (0..3)
        .map(|_| c.create_rx(&blob_json("last-put", 16)).unwrap())
        .collect();
    let tx_client = client(&e);
    for i in 0..1000u32 {
        let tx = tx_client.create_tx(&blob_json("last-put", 16)).unwrap();
        send(&tx, &pattern(i, 1000));
        drop(tx); // mesh_delete_connection right after the put
        for (k, rx) in rxs.iter().enumerate() {
            let (seq, got) = next(rx);
            assert_eq!(seq, u64::from(i), "receiver {k}, sender {i}");
            assert!(got == pattern(i, 1000), "receiver {k}: frame {i} differs");
        }
    }
    for rx in &rxs {
        let err = rx
            .get_timeout(Timeout::After(Duration::from_millis(50)))
            .unwrap_err();
        assert_eq!(
            err.mesh_err(),
            Some(MeshErr::Timeout),
            "nothing more: {err}"
        );
    }
    let stats = c.stats().unwrap();
    for s in &stats.connections {
        assert_eq!((s.frames, s.dropped), (1000, 0), "{s:?}");
    }
}

/// An MCM application ends its stream with a zero-length buffer and deletes its connection:
/// the receiver gets the whole stream and that empty buffer, run after run.
#[test]
fn a_zero_length_last_buffer_arrives_every_time() {
    let e = Engine::start();
    let c = client(&e);
    for run in 0..100u32 {
        let urn = format!("eos-{run}");
        let rx = c.create_rx(&blob_json(&urn, 8)).unwrap();
        let tx = c.create_tx(&blob_json(&urn, 8)).unwrap();
        for i in 0..5 {
            send(&tx, &pattern(run * 10 + i, 1000));
        }
        let mut b = tx.get_timeout(T).unwrap();
        b.set_payload_len(0).unwrap();
        b.put().unwrap();
        drop(tx);
        for i in 0..5 {
            assert!(
                next(&rx).1 == pattern(run * 10 + i, 1000),
                "run {run} frame {i}"
            );
        }
        let (seq, last) = next(&rx);
        assert_eq!(
            (seq, last.len()),
            (5, 0),
            "run {run}: the end-of-stream buffer"
        );
    }
}

/// A small ST 2110-20 connection of `port`: 64x32 10-bit at 100 fps, 5120-byte frames.
fn small_video_json(port: u16, fps: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"st2110": {{"transport": "st2110-20", "ipAddr": "127.0.0.1",
                "port": {port}, "payloadType": 96}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "fps": {fps},
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

/// Bytes of a 64x32 10-bit 4:2:2 frame.
const SMALL: usize = 64 * 32 * 5 / 2;

/// Receives up to `n` frames of `rx` on a thread, waiting at most `wait` for each; the
/// thread gives the connection back with them.
fn collect_within(rx: RxConnection, n: usize, wait: Duration) -> Collector {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n {
            match rx.get_timeout(Timeout::After(wait)) {
                Ok(f) => got.push(f.payload().to_vec()),
                Err(_) => break,
            }
        }
        (got, rx)
    })
}

/// A receiving thread of [`collect_within`].
type Collector = std::thread::JoinHandle<(Vec<Vec<u8>>, RxConnection)>;

/// Receives `n` frames of `rx` on a thread (bounded by `T` per frame).
fn collect(rx: RxConnection, n: usize) -> Collector {
    collect_within(rx, n, Duration::from_secs(10))
}

/// An ST 2110 tx connection deleted right after its last put still sends every frame it
/// accepted: its queue (up to the connection's 16) drains before the session goes.
#[test]
fn an_st2110_sender_deleted_after_its_last_put_sends_every_frame() {
    let e = Engine::start();
    let c = client(&e);
    let port = free_port();
    let rx = c.create_rx(&small_video_json(port, 100)).unwrap();
    let got = collect(rx, 120);
    let tx = c.create_tx(&small_video_json(port, 100)).unwrap();
    for i in 0..120 {
        send(&tx, &pattern(i, SMALL));
    }
    drop(tx);
    let (got, _rx) = got.join().unwrap();
    assert_eq!(got.len(), 120, "frames lost at delete");
    for (i, f) in got.iter().enumerate() {
        assert!(f[..] == pattern(i as u32, SMALL)[..], "frame {i} differs");
    }
}

/// An edge of a multipoint group, as `multipointGroup.edges` names it.
fn edge(direction: &str, port: u16) -> String {
    format!(
        r#"{{"st2110": {{"direction": "{direction}", "transport": "st2110-20",
            "ipAddr": "127.0.0.1", "port": {port}, "payloadType": 96}}}}"#
    )
}

/// A multipoint group of 1080p 10-bit video at `fps` with `edges`.
fn group_json(urn: &str, fps: u32, edges: &[String]) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"multipointGroup": {{"urn": "{urn}", "edges": [{}]}}}},
            "payload": {{"video": {{"width": {W}, "height": {H}, "fps": {fps},
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#,
        edges.join(",")
    )
}

/// Bytes of a 1080p 10-bit 4:2:2 frame as RFC 4175 carries it (UYVP in GStreamer).
const UYVP_BYTES: usize = (W * H * 5 / 2) as usize;

/// A gateway: GStreamer's RFC 4175 stream comes into a group through an ST 2110 rx edge, a tx
/// edge of the same group re-sends it paced to another port, where GStreamer decodes it
/// bit-exact, while an SDK receiver of the group gets every frame too.
#[test]
fn a_received_stream_is_re_sent_and_delivered_at_once() {
    let _rmem = RmemMax::raise();
    let e = Engine::start();
    let c = client(&e);
    let dir = tempfile::tempdir().unwrap();
    let n = 8u32;
    let reference = dir.path().join("reference.raw");
    let source = |sink: &str| {
        format!(
            "videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format=UYVP,width={W},\
             height={H},framerate=30/1 ! {sink}"
        )
    };
    Peer::gst(&source(&format!(
        "filesink location={}",
        reference.display()
    )))
    .wait(Duration::from_secs(60));
    let reference = std::fs::read(reference).unwrap();
    let (port_in, port_out) = (free_port(), free_port());
    let out = dir.path().join("resent.raw");
    let decoder = Peer::gst(&format!(
        "udpsrc address=127.0.0.1 port={port_out} buffer-size=67108864 \
         caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,\
         sampling=YCbCr-4:2:2,depth=(string)10,width=(string){W},height=(string){H},\
         colorimetry=(string)BT709-2,payload=96 ! rtpvrawdepay ! filesink location={}",
        out.display()
    ));
    wait_udp_bound(port_out);
    let gateway = c
        .create_rx(&group_json(
            "gateway",
            10,
            &[edge("rx", port_in), edge("tx", port_out)],
        ))
        .unwrap();
    let got = collect(gateway, n as usize);
    let sender = Peer::gst(&source(&format!(
        "rtpvrawpay pt=96 ! udpsink host=127.0.0.1 port={port_in}"
    )));
    sender.wait(Duration::from_secs(30));
    let (got, _gateway) = got.join().unwrap();
    let resent = wait_file(&out, UYVP_BYTES * n as usize, Duration::from_secs(30));
    decoder.interrupt(Duration::from_secs(10));
    let stats = c.stats().unwrap();
    assert_eq!(got.len(), n as usize, "SDK receiver: {stats:?}");
    assert_eq!(resent.len(), UYVP_BYTES * n as usize, "re-sent: {stats:?}");
    for i in 0..n as usize {
        let want = &reference[i * UYVP_BYTES..(i + 1) * UYVP_BYTES];
        assert!(got[i][..] == *want, "SDK receiver: frame {i} differs");
        let again = &resent[i * UYVP_BYTES..(i + 1) * UYVP_BYTES];
        assert!(again == want, "re-sent frame {i} differs");
    }
    let kinds: Vec<&str> = stats.bridges.iter().map(|b| b.edge_kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            format!("st2110-20 rx 127.0.0.1:{port_in}"),
            format!("st2110-20 tx 127.0.0.1:{port_out}")
        ],
        "{stats:?}"
    );
    assert!(
        stats.bridges.iter().all(|b| b.frames == u64::from(n)),
        "{stats:?}"
    );
}

/// One SDK sender fanned out to two ST 2110 destinations through two tx edges (one named by
/// the sender, one by a monitoring receiver); the monitor leaves mid-stream, which detaches its
/// edge: the other destination gets every frame bit-exact, the leaving one a whole prefix.
#[test]
fn one_sender_two_destinations_and_one_leaves_mid_stream() {
    let e = Engine::start();
    let c = client(&e);
    let (a, b) = (free_port(), free_port());
    let json = |edges: &[String]| {
        format!(
            r#"{{"bufferQueueCapacity": 8,
                "connection": {{"multipointGroup": {{"urn": "fan", "edges": [{}]}}}},
                "payload": {{"video": {{"width": 64, "height": 32, "fps": 100,
                    "pixelFormat": "yuv422p10rfc4175"}}}}}}"#,
            edges.join(",")
        )
    };
    let at_a = collect(c.create_rx(&small_video_json(a, 100)).unwrap(), 60);
    let rx_b = c.create_rx(&small_video_json(b, 100)).unwrap();
    let at_b = collect_within(rx_b, 60, Duration::from_secs(2));
    let mut monitor = Some(c.create_rx(&json(&[edge("tx", b)])).unwrap());
    let tx = c.create_tx(&json(&[edge("tx", a)])).unwrap();
    for i in 0..60 {
        if i == 30 {
            drop(monitor.take()); // its edge to B goes with it
        }
        send(&tx, &pattern(i, SMALL));
    }
    drop(tx);
    let (got_a, got_b) = (at_a.join().unwrap().0, at_b.join().unwrap().0);
    assert_eq!(got_a.len(), 60, "the staying destination lost frames");
    for (i, f) in got_a.iter().enumerate() {
        assert!(
            f[..] == pattern(i as u32, SMALL)[..],
            "A: frame {i} differs"
        );
    }
    // Before frame 29 could be put, every frame up to 29 - 8 (the sender's quota) had been
    // taken by B's edge; what it took it sent. Nothing after frame 29 reaches B.
    assert!(
        (21..=30).contains(&got_b.len()),
        "B gets the frames it took before it left: {}",
        got_b.len()
    );
    for (i, f) in got_b.iter().enumerate() {
        assert!(
            f[..] == pattern(i as u32, SMALL)[..],
            "B: frame {i} differs"
        );
    }
}
