//! ST 2110 between two engines in two network namespaces joined by a veth pair: multicast from
//! an engine in one namespace to an engine in the other, clean and with random loss injected by
//! nftables. Every delivered frame is compared bit-exact; loss counters are compared with the
//! packets nftables dropped.
//!
//! Root is required (namespaces, nftables). The engines run under `ip netns exec`; the SDK
//! side stays in the test process: an engine's SDK socket is a Unix socket named by a path,
//! and such sockets are not network-namespaced, so the test connects to both engines through
//! their socket files. The namespaces (and the veth pair) are deleted when a test ends.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcm_proto::config::ClientConfig;
use mcm_proto::sdk::BridgeStats;
use mcm_sdk::Client;
use peer::{NetnsPair, pattern, recv, send};

const PORT: u16 = 5004;

/// An engine running inside a network namespace (`ip netns exec NS mcm-engine ...`), killed
/// when dropped.
struct NsEngine {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    unix: PathBuf,
    _dir: tempfile::TempDir,
}

impl NsEngine {
    /// Starts an engine in `ns` whose ST 2110 sessions use `interface` with address
    /// `local_ip`, its lcore on `cpu`.
    fn start(ns: &str, interface: &str, local_ip: &str, cpu: u32) -> NsEngine {
        Self::start_with(ns, interface, local_ip, cpu, "")
    }

    /// [`NsEngine::start`] with `extra` lines in its `[st2110]` table.
    fn start_with(ns: &str, interface: &str, local_ip: &str, cpu: u32, extra: &str) -> NsEngine {
        let dir = tempfile::tempdir().unwrap();
        let text = common::config(
            dir.path(),
            &format!("[st2110]\ninterface = \"{interface}\"\nlocal_ip = \"{local_ip}\"\n{extra}"),
        )
        .replace("cpus = [1]", &format!("cpus = [{cpu}]"));
        let path = dir.path().join("cores.toml");
        std::fs::write(&path, text).unwrap();
        // `ip netns exec` enters the namespace and executes the engine in its own process.
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, common::BIN, "--config"])
            .arg(&path)
            .args(["--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut e = NsEngine {
            child,
            log,
            unix: PathBuf::new(),
            _dir: dir,
        };
        let line = e.wait_log("Unix socket listening on ");
        e.unix = PathBuf::from(line.rsplit(' ').next().unwrap());
        e.wait_log("engine running");
        e
    }

    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + common::WAIT;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("engine exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The SDP file of this engine's tx session to `dest` (`ip:port`), once written.
    fn sdp_file(&self, dest: &str) -> PathBuf {
        let name = format!("st2110-tx-{}.sdp", dest.replace(':', "-"));
        let path = self._dir.path().join("shm").join(name);
        let deadline = Instant::now() + common::WAIT;
        while !path.exists() {
            assert!(Instant::now() < deadline, "no {}", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        path
    }

    fn client(&self) -> Client {
        Client::with_unix_socket(&self.unix, ClientConfig::default()).unwrap()
    }

    /// Panics with the log if the engine has exited (crashed).
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("engine exited ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for NsEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn video_json(group: &str, w: u32, h: u32, fps: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 8,
            "connection": {{"st2110": {{"transport": "st2110-20", "ipAddr": "{group}",
                "port": {PORT}, "payloadType": 96,
                "transportPixelFormat": "yuv422p10rfc4175"}}}},
            "payload": {{"video": {{"width": {w}, "height": {h}, "fps": {fps},
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

fn bridge(c: &Client, dir: &str) -> BridgeStats {
    let stats = c.stats().unwrap();
    stats
        .bridges
        .iter()
        .find(|b| b.group.starts_with(dir))
        .unwrap_or_else(|| panic!("no {dir} bridge in {stats:?}"))
        .clone()
}

#[test]
fn multicast_between_engines_in_two_namespaces_is_bit_exact() {
    let net = NetnsPair::create("mc", 21);
    let group = "239.99.21.1";
    let mut a = NsEngine::start(&net.a, &net.veth_a, &net.ip_a, 0);
    let mut b = NsEngine::start(&net.b, &net.veth_b, &net.ip_b, 1);
    let (ca, cb) = (a.client(), b.client());
    let (w, h) = (1920, 1080);
    let bytes = (w * h * 5 / 2) as usize;
    let rx = cb.create_rx(&video_json(group, w, h, 30)).unwrap();
    let tx = ca.create_tx(&video_json(group, w, h, 30)).unwrap();
    let n = 20u32;
    for i in 0..n {
        let f = pattern(i, bytes);
        send(&tx, &f);
        let got = recv(&rx);
        assert!(got == f, "frame {i} differs");
    }
    let (t, r) = (bridge(&ca, "st2110-tx"), bridge(&cb, "st2110-rx"));
    assert_eq!(t.frames, u64::from(n));
    assert_eq!(t.packets, u64::from(n) * 4320, "4320 packets per frame");
    assert_eq!(r.frames, u64::from(n));
    assert_eq!(r.packets, t.packets);
    assert_eq!(
        (
            r.packets_lost,
            r.frames_incomplete,
            r.frames_dropped,
            r.packets_malformed
        ),
        (0, 0, 0, 0),
        "{r:?}"
    );
    a.assert_running();
    b.assert_running();
}

/// The packets the drop rule of table `lossy` in `ns` has dropped (`counter packets N`).
fn nft_dropped(net: &NetnsPair, ns: &str) -> u64 {
    nft_rule_dropped(net, ns, "lossy", "")
}

/// Polls `f` until it returns true (bounded); panics with `what` otherwise.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn random_loss_between_namespaces_is_counted_exactly_and_only_whole_frames_are_delivered() {
    let net = NetnsPair::create("ls", 22);
    // nftables counts socket buffers, and a UDP GSO buffer of several packets crosses a veth
    // whole: one random drop would take several packets and count one. A NIC segments before
    // the wire; so does the sending veth when it takes one segment at a time.
    peer::run(
        "ip",
        &[
            "-n",
            &net.a,
            "link",
            "set",
            "dev",
            &net.veth_a,
            "gso_max_segs",
            "1",
        ],
    );
    let group = "239.99.22.1";
    let mut a = NsEngine::start(&net.a, &net.veth_a, &net.ip_a, 0);
    let mut b = NsEngine::start(&net.b, &net.veth_b, &net.ip_b, 1);
    let (ca, cb) = (a.client(), b.client());
    // Small frames (10240 bytes: 9 packets) so that about 60% of them get through whole at 5%
    // loss.
    let (w, h) = (256, 16);
    let bytes = (w * h * 5 / 2) as usize;
    let rx = cb.create_rx(&video_json(group, w, h, 60)).unwrap();
    let tx = ca.create_tx(&video_json(group, w, h, 60)).unwrap();

    // A first frame before any loss: the receiver learns the sequence numbers (a packet lost
    // before the first one it sees cannot be known as lost).
    let prime = pattern(10_000, bytes);
    send(&tx, &prime);
    assert!(recv(&rx) == prime, "first frame differs");

    // 5% random loss on the receiving side, counted by nftables.
    let port = PORT.to_string();
    for cmd in [
        "add table ip lossy",
        "add chain ip lossy pre { type filter hook prerouting priority 0 ; }",
        &format!("add rule ip lossy pre udp dport {port} numgen random mod 100 < 5 counter drop"),
    ] {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        net.exec(&net.b, "nft", &args);
    }

    // The SDK receiver drains the connection while frames are sent; it stops at the last
    // frame (sent after the loss ends, so it always arrives whole).
    let n = 200u32;
    let last = pattern(20_000, bytes);
    let expected_last = last.clone();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let f = recv(&rx);
            let done = f == expected_last;
            got.push(f);
            if done {
                // The connection is handed back: its bridge's counters live while it does.
                return (rx, got);
            }
        }
    });
    let frames: Vec<Vec<u8>> = (0..n).map(|i| pattern(i, bytes)).collect();
    for f in &frames {
        send(&tx, f);
    }
    wait_until("the tx session to send every frame", || {
        bridge(&ca, "st2110-tx").frames == u64::from(n) + 1
    });
    // End the loss: an accept rule ahead of the drop rule, which keeps its counter.
    net.exec(
        &net.b,
        "nft",
        &[
            "insert", "rule", "ip", "lossy", "pre", "udp", "dport", &port, "accept",
        ],
    );
    let dropped = nft_dropped(&net, &net.b);
    // The last frame arrives whole; its first packet's sequence number also reveals any
    // packets dropped at the end of the frame before it.
    send(&tx, &last);
    let (_rx, got) = receiver.join().unwrap();
    assert_eq!(
        nft_dropped(&net, &net.b),
        dropped,
        "packets dropped after the loss ended"
    );
    a.assert_running();
    b.assert_running();

    let (t, r) = (bridge(&ca, "st2110-tx"), bridge(&cb, "st2110-rx"));
    let total = u64::from(n) + 2;
    assert_eq!(t.frames, total);
    assert!(
        dropped > 0 && dropped < t.packets / 10,
        "{dropped} of {} packets dropped",
        t.packets
    );
    assert_eq!(
        r.packets_lost,
        dropped,
        "lost packets: {r:?}; receiving namespace's counters:\n{}",
        net.exec(&net.b, "nstat", &["-az"])
    );
    assert_eq!(r.packets + r.packets_lost, t.packets, "{r:?} {t:?}");
    assert_eq!(
        (r.packets_reordered, r.packets_malformed, r.frames_dropped),
        (0, 0, 0),
        "{r:?}"
    );
    // Every frame either arrived whole (and was delivered) or ended incomplete (and was not).
    assert_eq!(r.frames + r.frames_incomplete, total, "{r:?}");
    assert_eq!(
        got.len() as u64 + 1,
        r.frames,
        "delivered frames (besides the first)"
    );
    assert!(r.frames_incomplete > 0, "{r:?}");
    // Delivered frames are whole, bit-exact and in order.
    let mut next = 0usize;
    for (k, g) in got[..got.len() - 1].iter().enumerate() {
        let i = frames[next..]
            .iter()
            .position(|f| f == g)
            .unwrap_or_else(|| panic!("delivered frame {k} is none of the frames sent (in order)"));
        next += i + 1;
    }
}

// ---- ST 2022-7: two paths between the namespaces ----

/// Two engines in two namespaces joined by two veth pairs; each engine's ST 2022-7 second
/// path is the second pair. The sending veths take one GSO segment at a time, so nftables
/// counts packets (see the random-loss test above).
struct Dual {
    a: NsEngine,
    b: NsEngine,
    link: peer::Link,
    net: NetnsPair,
}

fn dual(tag: &str, subnet: u8) -> Dual {
    let net = NetnsPair::create(tag, subnet);
    let link = net.add_link(tag, subnet + 1);
    for dev in [&net.veth_a, &link.veth_a] {
        peer::run(
            "ip",
            &["-n", &net.a, "link", "set", "dev", dev, "gso_max_segs", "1"],
        );
    }
    // A 100 ms merge window: this suite runs several engines' lcores on two vCPUs, and an
    // lcore kept off its CPU for longer than the default 10 ms would give up packets whose
    // copies wait in the other path's socket.
    let second = |veth: &str, ip: &str| {
        format!(
            "redundant_interface = \"{veth}\"\nredundant_local_ip = \"{ip}\"\n\
             redundancy_window_us = 100000\n"
        )
    };
    let a = NsEngine::start_with(
        &net.a,
        &net.veth_a,
        &net.ip_a,
        0,
        &second(&link.veth_a, &link.ip_a),
    );
    let b = NsEngine::start_with(
        &net.b,
        &net.veth_b,
        &net.ip_b,
        1,
        &second(&link.veth_b, &link.ip_b),
    );
    Dual { a, b, link, net }
}

/// A video connection whose `st2110` object holds `st2110` (JSON members).
fn st2110_json(st2110: &str, w: u32, h: u32, fps: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 8,
            "connection": {{"st2110": {{"transport": "st2110-20", "port": {PORT},
                "payloadType": 96, "transportPixelFormat": "yuv422p10rfc4175", {st2110}}}}},
            "payload": {{"video": {{"width": {w}, "height": {h}, "fps": {fps},
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

/// Runs nftables commands (one per string, split at whitespace) in `ns`.
fn nft(net: &NetnsPair, ns: &str, cmds: &[String]) {
    for cmd in cmds {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        net.exec(ns, "nft", &args);
    }
}

/// The packets dropped by the rule of chain `pre` in `table` whose text contains `needle`.
fn nft_rule_dropped(net: &NetnsPair, ns: &str, table: &str, needle: &str) -> u64 {
    let text = net.exec(ns, "nft", &["list", "chain", "ip", table, "pre"]);
    let line = text
        .lines()
        .find(|l| l.contains(needle) && l.contains("drop"))
        .unwrap_or_else(|| panic!("no drop rule with {needle:?} in {text}"));
    let mut words = line.split_whitespace();
    words
        .find(|w| *w == "packets")
        .and_then(|_| words.next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet counter in {line:?}"))
}

/// Receives `n` frames from `rx` on a thread of its own (fewer when one does not come in
/// time).
fn collect(
    rx: mcm_sdk::RxConnection,
    n: usize,
) -> std::thread::JoinHandle<(mcm_sdk::RxConnection, Vec<Vec<u8>>)> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n {
            let Ok(b) = rx.get_timeout(peer::T) else {
                break;
            };
            got.push(b.payload().to_vec());
        }
        (rx, got)
    })
}

#[test]
fn st2022_7_loses_no_frame_when_a_path_is_cut_mid_stream_and_a_single_path_gstreamer_decodes_it() {
    let _rmem = peer::RmemMax::raise();
    let mut d = dual("dc", 23);
    let (g1, g2) = ("239.99.23.1", "239.99.24.1");
    let (ca, cb) = (d.a.client(), d.b.client());
    let (w, h, fps) = (320u32, 180u32, 30u32);
    let bytes = (w * h * 5 / 2) as usize;
    let tx = ca
        .create_tx(&st2110_json(
            &format!(r#""ipAddr": "{g1}", "redundant": {{"ipAddr": "{g2}"}}"#),
            w,
            h,
            fps,
        ))
        .unwrap();
    // The sender's SDP names both legs (RFC 7104).
    let sdp_path = d.a.sdp_file(&format!("{g1}:{PORT}"));
    let sdp = std::fs::read_to_string(&sdp_path).unwrap();
    for want in [
        "a=group:DUP primary secondary".to_owned(),
        format!("c=IN IP4 {g2}/"),
        format!("a=source-filter: incl IN IP4 {g1} {}", d.net.ip_a),
        format!("a=source-filter: incl IN IP4 {g2} {}", d.link.ip_a),
        "a=mid:secondary".to_owned(),
    ] {
        assert!(sdp.contains(&want), "no {want:?} in\n{sdp}");
    }

    // GStreamer on the second path only: an ordinary RFC 4175 receiver.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gst.raw");
    let pipeline = format!(
        "udpsrc address={g2} port={PORT} multicast-iface={} buffer-size=67108864 \
         caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,\
         sampling=YCbCr-4:2:2,depth=(string)10,width=(string){w},height=(string){h},\
         colorimetry=(string)BT709-2,payload=96 ! rtpvrawdepay ! filesink location={}",
        d.link.veth_b,
        out.display()
    );
    let args: Vec<&str> = ["netns", "exec", &d.net.b, "gst-launch-1.0", "-q", "-e"]
        .into_iter()
        .chain(pipeline.split_whitespace())
        .collect();
    let gst = peer::Peer::spawn("ip", &args);
    peer::wait_udp_bound_in(&format!("/proc/{}/net/udp", gst.child.id()), PORT);

    // The engine's receiver takes both paths from the sender's SDP.
    let rx = cb
        .create_rx(&st2110_json(
            &format!(r#""ipAddr": "{g1}", "sdpFile": "{}""#, sdp_path.display()),
            w,
            h,
            fps,
        ))
        .unwrap();
    let n = 90u32;
    let receiver = collect(rx, n as usize);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| pattern(i, bytes)).collect();
    let cut = [
        "add table ip cut".to_owned(),
        "add chain ip cut pre { type filter hook prerouting priority 0 ; }".to_owned(),
        format!("add rule ip cut pre ip daddr {g1} udp dport {PORT} counter drop"),
    ];
    for (i, f) in frames.iter().enumerate() {
        send(&tx, f);
        // The sender blocks once its 8 slots are queued: frames leave at 30 fps, and the
        // first path is down for about 40 of them.
        if i == 20 {
            nft(&d.net, &d.net.b, &cut);
        }
        if i == 60 {
            let restore = format!("insert rule ip cut pre ip daddr {g1} accept");
            nft(&d.net, &d.net.b, &[restore]);
        }
    }
    let (_rx, got) = receiver.join().unwrap();
    d.a.assert_running();
    d.b.assert_running();
    assert_eq!(
        got.len(),
        frames.len(),
        "frames received; {:?}",
        bridge(&cb, "st2110-rx")
    );
    for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
        assert!(g == f, "frame {i} differs");
    }
    let dropped = nft_rule_dropped(&d.net, &d.net.b, "cut", g1);
    let (t, r) = (bridge(&ca, "st2110-tx"), bridge(&cb, "st2110-rx"));
    assert_eq!(t.frames, u64::from(n));
    assert!(
        dropped > 0 && dropped < t.packets,
        "the cut took {dropped} of {} packets",
        t.packets
    );
    assert_eq!(
        (
            t.primary_packets,
            t.secondary_packets,
            t.primary_lost,
            t.secondary_lost
        ),
        (t.packets, t.packets, 0, 0),
        "{t:?}"
    );
    assert_eq!(
        (r.frames, r.frames_incomplete, r.packets_lost, r.packets),
        (u64::from(n), 0, 0, t.packets),
        "{r:?}"
    );
    assert_eq!((r.primary_lost, r.secondary_lost), (dropped, 0), "{r:?}");
    assert_eq!(r.primary_packets + dropped, t.packets, "{r:?}");
    assert_eq!(r.secondary_packets, t.packets, "{r:?}");
    assert_eq!(r.packets_redundant, t.packets - dropped, "{r:?}");

    let decoded = peer::wait_file(&out, bytes * n as usize, Duration::from_secs(20));
    gst.interrupt(Duration::from_secs(10));
    assert_eq!(decoded.len(), bytes * n as usize, "GStreamer's frames");
    for (i, f) in frames.iter().enumerate() {
        assert!(
            decoded[i * bytes..(i + 1) * bytes] == f[..],
            "GStreamer's frame {i} differs"
        );
    }
}

#[test]
fn st2022_7_with_5_percent_loss_on_each_path_loses_no_frame_and_counts_each_path_exactly() {
    let mut d = dual("dl", 25);
    let (g1, g2) = ("239.99.25.1", "239.99.26.1");
    let (ca, cb) = (d.a.client(), d.b.client());
    let (w, h, fps) = (640u32, 360u32, 60u32);
    let bytes = (w * h * 5 / 2) as usize;
    let rx = cb
        .create_rx(&st2110_json(
            &format!(
                r#""ipAddr": "{g1}", "multicastSourceIpAddr": "{}",
                   "redundant": {{"ipAddr": "{g2}", "multicastSourceIpAddr": "{}"}}"#,
                d.net.ip_a, d.link.ip_a
            ),
            w,
            h,
            fps,
        ))
        .unwrap();
    let tx = ca
        .create_tx(&st2110_json(
            &format!(r#""ipAddr": "{g1}", "redundant": {{"ipAddr": "{g2}"}}"#),
            w,
            h,
            fps,
        ))
        .unwrap();
    // A first frame before any loss: both paths learn the sequence numbers.
    let prime = pattern(10_000, bytes);
    send(&tx, &prime);
    assert!(recv(&rx) == prime, "first frame differs");

    // 5% loss on each path, drawn from a hash of the RTP sequence number (bits 80..96 of the
    // UDP datagram): pseudo-random, and never the same packet on both paths.
    let rule = |g: &str, k: u32| {
        format!(
            "add rule ip lossy pre ip daddr {g} udp dport {PORT} jhash @th,80,16 mod 20 seed \
             0x7 == {k} counter drop"
        )
    };
    nft(
        &d.net,
        &d.net.b,
        &[
            "add table ip lossy".to_owned(),
            "add chain ip lossy pre { type filter hook prerouting priority 0 ; }".to_owned(),
            rule(g1, 0),
            rule(g2, 1),
        ],
    );
    let n = 150u32;
    let receiver = collect(rx, n as usize + 1);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| pattern(i, bytes)).collect();
    for f in &frames {
        send(&tx, f);
    }
    wait_until("the tx session to send every frame", || {
        bridge(&ca, "st2110-tx").frames == u64::from(n) + 1
    });
    nft(
        &d.net,
        &d.net.b,
        &[format!("insert rule ip lossy pre udp dport {PORT} accept")],
    );
    let dropped = [g1, g2].map(|g| nft_rule_dropped(&d.net, &d.net.b, "lossy", g));
    // A last frame after the loss: each path's last sequence number reveals what it lost at
    // the end of the frame before.
    let last = pattern(20_000, bytes);
    send(&tx, &last);
    let (_rx, got) = receiver.join().unwrap();
    d.a.assert_running();
    d.b.assert_running();
    assert_eq!(
        got.len(),
        frames.len() + 1,
        "frames received; {:?} {:?}",
        bridge(&cb, "st2110-rx"),
        bridge(&ca, "st2110-tx")
    );
    for (i, (g, f)) in got.iter().zip(frames.iter().chain([&last])).enumerate() {
        assert!(g == f, "frame {i} differs");
    }
    let (t, r) = (bridge(&ca, "st2110-tx"), bridge(&cb, "st2110-rx"));
    let total = u64::from(n) + 2;
    assert_eq!(t.frames, total);
    for (path, lost) in dropped.iter().enumerate() {
        assert!(
            *lost > t.packets / 50 && *lost < t.packets / 12,
            "path {path}: {lost} of {} packets dropped",
            t.packets
        );
    }
    assert_eq!(
        (r.frames, r.frames_incomplete, r.packets_lost, r.packets),
        (total, 0, 0, t.packets),
        "{r:?}"
    );
    assert_eq!(
        (r.primary_lost, r.secondary_lost),
        (dropped[0], dropped[1]),
        "{r:?}; receiving namespace's counters:\n{}",
        d.net.exec(&d.net.b, "nstat", &["-az"])
    );
    assert_eq!(r.primary_packets + dropped[0], t.packets, "{r:?}");
    assert_eq!(r.secondary_packets + dropped[1], t.packets, "{r:?}");
    assert_eq!(
        r.packets_redundant,
        t.packets - dropped[0] - dropped[1],
        "{r:?}"
    );
    assert_eq!(r.socket_drops, 0, "{r:?}");
}
