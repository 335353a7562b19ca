//! Helpers for tests against third-party peers (GStreamer, FFmpeg) and network namespaces:
//! peer processes killed on drop, waits bounded in time, `rmem_max` raised while held, test
//! frames, free ports, and namespaces with a veth pair deleted on drop.
//!
//! Include it next to the engine harness with
//!
//! ```ignore
//! mod common;
//! #[path = "common/peer.rs"]
//! mod peer;
//! ```

#![allow(dead_code)]

use std::io::Read;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A UDP port nobody listens on now (bound and released).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Frame `i` of a test sequence: every byte depends on its position and `i`, so a frame that
/// is shifted, mixed with another or reordered never compares equal.
pub fn pattern(i: u32, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ i.wrapping_mul(0x85EB_CA6B);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A peer process, killed when dropped.
pub struct Peer {
    pub child: Child,
    pub what: String,
}

impl Peer {
    /// Starts `program` with `args` (stdin and stdout closed, stderr kept for failures).
    pub fn spawn(program: &str, args: &[&str]) -> Peer {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} (run scripts/setup_build_env.sh): {e}")
            });
        Peer {
            child,
            what: format!("{program} {}", args.join(" ")),
        }
    }

    /// `gst-launch-1.0 -q -e PIPELINE` (the pipeline split at whitespace).
    pub fn gst(pipeline: &str) -> Peer {
        let args: Vec<&str> = std::iter::once("-q")
            .chain(std::iter::once("-e"))
            .chain(pipeline.split_whitespace())
            .collect();
        Peer::spawn("gst-launch-1.0", &args)
    }

    /// `ffmpeg -nostdin -hide_banner -loglevel warning -y ARGS`.
    pub fn ffmpeg(args: &[&str]) -> Peer {
        let all: Vec<&str> = ["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Peer::spawn("ffmpeg", &all)
    }

    /// Waits for the process to exit by itself (bounded); panics with its stderr on failure.
    pub fn wait(self, limit: Duration) {
        self.wait_stderr(limit);
    }

    /// [`Peer::wait`], returning what the process wrote to stderr.
    pub fn wait_stderr(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                assert!(status.success(), "{} failed ({status}):\n{err}", self.what);
                return err;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGINT (GStreamer's `-e` turns it into end-of-stream, flushing files) and waits.
    pub fn interrupt(self, limit: Duration) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        self.wait(limit);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `table` (the text of `/proc/net/udp`) has a socket bound to `port`.
fn udp_table_has(table: &str, port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| format!("{local} ").ends_with(&needle))
    })
}

/// Waits until some process has a UDP socket bound to `port` (a peer is listening), bounded.
pub fn wait_udp_bound(port: u16) {
    wait_udp_bound_in("/proc/net/udp", port)
}

/// [`wait_udp_bound`] reading the UDP table `table` (e.g. `/proc/<pid>/net/udp` of a process in
/// another network namespace).
pub fn wait_udp_bound_in(table: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if udp_table_has(&std::fs::read_to_string(table).unwrap_or_default(), port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on UDP port {port} ({table})");
}

/// Waits until a UDP socket bound to `port` has a receive buffer of at least `bytes` (`ss -m`
/// shows `rb<N>`): a peer sets its buffer size after binding, and packets that arrive in
/// between meet the small default buffer. Bounded.
pub fn wait_udp_rcvbuf(port: u16, bytes: usize) {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = Command::new("ss")
            .args(["-u", "-a", "-m", "-n", "-H", &filter])
            .output()
            .expect("cannot run ss (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        let rb = text
            .split(|c: char| c == ',' || c == '(' || c == ')' || c.is_whitespace())
            .filter_map(|f| f.strip_prefix("rb"))
            .filter_map(|n| n.parse::<usize>().ok())
            .max();
        if rb.is_some_and(|rb| rb >= bytes) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no UDP socket on port {port} with a {bytes}-byte receive buffer");
}

/// Raises `net.core.rmem_max` (so a peer's 64 MiB receive buffer is granted, as the peers'
/// documentation asks) while held; one test at a time holds it, and the old value comes back.
pub struct RmemMax {
    old: String,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl RmemMax {
    pub fn raise() -> RmemMax {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let path = "/proc/sys/net/core/rmem_max";
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, "268435456").expect("the peer tests run as root to raise rmem_max");
        RmemMax {
            old,
            _serial: serial,
        }
    }
}

impl Drop for RmemMax {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/core/rmem_max", self.old.trim());
    }
}

/// Waits until `path` holds at least `len` bytes (bounded).
pub fn wait_file(path: &Path, len: usize, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    loop {
        let data = std::fs::read(path).unwrap_or_default();
        if data.len() >= len || Instant::now() > deadline {
            return data;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two network namespaces joined by a veth pair, `10.99.<subnet>.1/24` on `veth` of
/// namespace `a` and `10.99.<subnet>.2/24` on `peer` of namespace `b`; both deleted (with the
/// veth pair) when dropped.
pub struct NetnsPair {
    /// The first namespace's name.
    pub a: String,
    /// The second namespace's name.
    pub b: String,
    /// The veth end in `a`.
    pub veth_a: String,
    /// The veth end in `b`.
    pub veth_b: String,
    /// `10.99.<subnet>.1`.
    pub ip_a: String,
    /// `10.99.<subnet>.2`.
    pub ip_b: String,
}

impl NetnsPair {
    /// Creates the pair; `tag` (a few characters) and the process id make the names unique.
    pub fn create(tag: &str, subnet: u8) -> NetnsPair {
        let id = std::process::id() % 100_000;
        let p = NetnsPair {
            a: format!("mcm{tag}{id}a"),
            b: format!("mcm{tag}{id}b"),
            veth_a: format!("v{tag}{id}a"),
            veth_b: format!("v{tag}{id}b"),
            ip_a: format!("10.99.{subnet}.1"),
            ip_b: format!("10.99.{subnet}.2"),
        };
        assert!(p.veth_a.len() <= 15, "interface name {} too long", p.veth_a);
        // Built before the first command, so whatever was created is deleted on a failure.
        run("ip", &["netns", "add", &p.a]);
        run("ip", &["netns", "add", &p.b]);
        run(
            "ip",
            &[
                "link", "add", &p.veth_a, "type", "veth", "peer", "name", &p.veth_b,
            ],
        );
        run("ip", &["link", "set", &p.veth_a, "netns", &p.a]);
        run("ip", &["link", "set", &p.veth_b, "netns", &p.b]);
        for (ns, dev, ip) in [(&p.a, &p.veth_a, &p.ip_a), (&p.b, &p.veth_b, &p.ip_b)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// A second veth pair between the two namespaces (an ST 2022-7 second path):
    /// `10.99.<subnet>.1/24` on the returned `a` end, `.2` on the `b` end. Deleted with the
    /// namespaces.
    pub fn add_link(&self, tag: &str, subnet: u8) -> Link {
        let id = std::process::id() % 100_000;
        let l = Link {
            veth_a: format!("w{tag}{id}a"),
            veth_b: format!("w{tag}{id}b"),
            ip_a: format!("10.99.{subnet}.1"),
            ip_b: format!("10.99.{subnet}.2"),
        };
        run(
            "ip",
            &[
                "link", "add", &l.veth_a, "type", "veth", "peer", "name", &l.veth_b,
            ],
        );
        run("ip", &["link", "set", &l.veth_a, "netns", &self.a]);
        run("ip", &["link", "set", &l.veth_b, "netns", &self.b]);
        for (ns, dev, ip) in [(&self.a, &l.veth_a, &l.ip_a), (&self.b, &l.veth_b, &l.ip_b)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        l
    }

    /// `ip netns exec NS program args`, panicking on failure.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> String {
        let all: Vec<&str> = ["netns", "exec", ns, program]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        run("ip", &all)
    }
}

/// A further veth pair of a [`NetnsPair`] (see [`NetnsPair::add_link`]).
pub struct Link {
    pub veth_a: String,
    pub veth_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "delete", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.veth_a])
            .stderr(Stdio::null())
            .status();
    }
}

// ---- SDK helpers shared by the ST 2110 tests ----

/// How long a test waits for one frame.
pub const T: mcm_sdk::Timeout = mcm_sdk::Timeout::After(Duration::from_secs(10));
/// Width of the tests' video.
pub const W: u32 = 1920;
/// Height of the tests' video.
pub const H: u32 = 1080;

/// An SDK client of `e` over its Unix socket.
pub fn client(e: &crate::common::Engine) -> mcm_sdk::Client {
    mcm_sdk::Client::with_unix_socket(&e.unix, mcm_proto::config::ClientConfig::default()).unwrap()
}

/// Sends `frame` as one buffer of its length.
pub fn send(tx: &mcm_sdk::TxConnection, frame: &[u8]) {
    let mut b = tx.get_timeout(T).unwrap();
    b.payload_mut()[..frame.len()].copy_from_slice(frame);
    b.set_payload_len(frame.len()).unwrap();
    b.put().unwrap();
}

/// The next frame's payload.
pub fn recv(rx: &mcm_sdk::RxConnection) -> Vec<u8> {
    rx.get_timeout(T).unwrap().payload().to_vec()
}

/// A 1080p st2110-20 connection to `127.0.0.1:port`.
pub fn video_json(port: u16, pixel: &str, wire: &str, fps: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 8,
            "connection": {{"st2110": {{"transport": "st2110-20", "ipAddr": "127.0.0.1",
                "port": {port}, "payloadType": 96, "transportPixelFormat": "{wire}"}}}},
            "payload": {{"video": {{"width": {W}, "height": {H}, "fps": {fps},
                "pixelFormat": "{pixel}"}}}}}}"#
    )
}

/// A 48 kHz L24 1 ms st2110-30 connection to `127.0.0.1:port`.
pub fn audio_json(port: u16, channels: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"st2110": {{"transport": "st2110-30", "ipAddr": "127.0.0.1",
                "port": {port}, "payloadType": 97}}}},
            "payload": {{"audio": {{"channels": {channels}, "sampleRate": 48000,
                "format": "pcm_s24be", "packetTime": "1ms"}}}}}}"#
    )
}
