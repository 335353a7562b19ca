//! The C API against a real engine: `sdk-c/tests/c/api_test.c` (every function and error path),
//! the `sender.c` / `receiver.c` examples exchanging video and audio, and a program linked
//! against the static library. The C programs are built with AddressSanitizer and UBSan (except
//! the static one), and any sanitizer report fails the test.

#[path = "common/c.rs"]
mod c;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use c::{Finished, Link, Proc};
use common::Engine;
use rustix::process::{Pid, Signal};

/// Longest a C program may run before the test fails (it is killed).
const LIMIT: Duration = Duration::from_secs(180);
/// Longest a C program may take to connect.
const READY: Duration = Duration::from_secs(60);

fn api_test() -> std::path::PathBuf {
    c::compile("api_test", &["sdk-c/tests/c/api_test.c"], Link::Shared)
}

fn sender(link: Link) -> std::path::PathBuf {
    c::compile("sender", &["sdk-c/examples/sender.c"], link)
}

fn receiver() -> std::path::PathBuf {
    c::compile("receiver", &["sdk-c/examples/receiver.c"], Link::Shared)
}

/// A command for `program` that finds engine `e` over TCP, as an MCM application does.
fn tcp_command(program: &std::path::Path, e: &Engine) -> std::process::Command {
    let mut cmd = c::command(program);
    cmd.env("MCM_MEDIA_PROXY_IP", "127.0.0.1")
        .env("MCM_MEDIA_PROXY_PORT", e.tcp.port().to_string());
    cmd
}

fn assert_success(what: &str, f: &Finished, e: &Engine) {
    assert!(
        f.status.success(),
        "{what} failed:\n{}\n--- engine log ---\n{}",
        f.text(),
        e.log_text()
    );
    for report in [
        "ERROR: AddressSanitizer",
        "ERROR: LeakSanitizer",
        "runtime error:",
    ] {
        assert!(
            !f.stderr.contains(report),
            "{what}: sanitizer report:\n{}",
            f.text()
        );
    }
}

fn summary(what: &str, f: &Finished) -> HashMap<String, u64> {
    let fields = c::summary(&f.stdout)
        .unwrap_or_else(|| panic!("{what} printed no summary line:\n{}", f.text()));
    fields
        .into_iter()
        .map(|(k, v)| {
            let n = v
                .parse()
                .unwrap_or_else(|_| panic!("{what}: summary field {k}={v} is not a number"));
            (k, n)
        })
        .collect()
}

#[test]
fn api_test_passes_over_tcp() {
    let e = Engine::start();
    let f = c::run(&mut tcp_command(&api_test(), &e), LIMIT);
    assert_success("api_test (TCP)", &f, &e);
    assert!(f.stdout.contains("api_test: all passed"), "{}", f.text());
    for section in [
        "constants",
        "err2str",
        "client_config",
        "conn_config",
        "timeouts",
    ] {
        assert!(f.stdout.contains(&format!("ok {section}")), "{}", f.text());
    }
}

#[test]
fn api_test_passes_over_the_unix_socket() {
    let e = Engine::start();
    let mut cmd = c::command(&api_test());
    cmd.env("MCM_SDK_UNIX_SOCKET", &e.unix);
    let f = c::run(&mut cmd, LIMIT);
    assert_success("api_test (Unix socket)", &f, &e);
    assert!(f.stdout.contains("api_test: all passed"), "{}", f.text());
}

/// Starts a receiver on `group` and waits until it is connected.
fn start_receiver(e: &Engine, group: &str, args: &[&str]) -> Proc {
    let mut cmd = tcp_command(&receiver(), e);
    cmd.args(["--group", group]).args(args);
    let mut rx = Proc::spawn(&mut cmd);
    rx.wait_stdout("ready group=", READY);
    rx
}

/// Sends `frames` frames of `format` to `group` with the sender linked `link`, after a receiver
/// of the same format is connected, and returns both results.
fn exchange(
    e: &Engine,
    link: Link,
    group: &str,
    format: &[&str],
    frames: u64,
    tx_args: &[&str],
) -> (Finished, Finished) {
    let n = frames.to_string();
    let rx = start_receiver(
        e,
        group,
        &[format, &["--frames", &n, "--timeout-ms", "20000"]].concat(),
    );
    let mut cmd = tcp_command(&sender(link), e);
    cmd.args(["--group", group, "--frames", &n])
        .args(format)
        .args(tx_args);
    let tx = c::run(&mut cmd, LIMIT);
    let rx = rx.finish(LIMIT);
    (tx, rx)
}

/// Checks that the receiver got every one of `frames` frames, intact and in order.
fn assert_all_received(tx: &Finished, rx: &Finished, frames: u64, e: &Engine) {
    assert_success("sender", tx, e);
    assert_success("receiver", rx, e);
    assert_eq!(summary("sender", tx)["sent"], frames, "{}", tx.text());
    let s = summary("receiver", rx);
    let want = [
        ("received", frames),
        ("first_seq", 0),
        ("last_seq", frames - 1),
        ("gaps", 0),
        ("bad_checksums", 0),
        ("bad_seq", 0),
    ];
    for (k, v) in want {
        assert_eq!(
            s[k],
            v,
            "receiver summary {k}:\n{}\n{}",
            rx.text(),
            tx.text()
        );
    }
}

#[test]
fn examples_exchange_1080p_video() {
    let e = Engine::start();
    let format = ["--video", "1920x1080", "--pixel-format", "yuv422p10rfc4175"];
    // 60 frames/s with a 32-frame queue: the receiver may fall half a second behind before a
    // frame would be dropped.
    let (tx, rx) = exchange(
        &e,
        Link::Shared,
        "c-video",
        &[&format[..], &["--capacity", "32"]].concat(),
        50,
        &["--fps", "60"],
    );
    assert_all_received(&tx, &rx, 50, &e);
    let ready = rx.stdout.lines().next().unwrap_or_default();
    assert!(
        ready.contains(&format!("payload_size={}", 1920 * 1080 * 5 / 2)),
        "{ready}"
    );
}

#[test]
fn examples_exchange_audio() {
    let e = Engine::start();
    let (tx, rx) = exchange(
        &e,
        Link::Shared,
        "c-audio",
        &["--audio", "--capacity", "64"],
        50,
        &["--fps", "200"],
    );
    assert_all_received(&tx, &rx, 50, &e);
    assert!(rx.stdout.contains("payload_size=288"), "{}", rx.text());
}

#[test]
fn statically_linked_sender_talks_to_the_engine() {
    let e = Engine::start();
    let static_sender = sender(Link::Static);
    // No libmcm_dp.so needed: the program carries the SDK.
    let ldd = std::process::Command::new("ldd")
        .arg(&static_sender)
        .output()
        .expect("ldd");
    let deps = String::from_utf8_lossy(&ldd.stdout);
    assert!(!deps.contains("libmcm_dp"), "{deps}");
    let (tx, rx) = exchange(
        &e,
        Link::Static,
        "c-static",
        &["--audio", "--capacity", "64"],
        50,
        &["--fps", "200"],
    );
    assert_all_received(&tx, &rx, 50, &e);
}

#[test]
fn examples_print_help() {
    for program in [sender(Link::Shared), receiver()] {
        let f = c::run(c::command(&program).arg("--help"), LIMIT);
        assert!(f.status.success(), "{}", f.text());
        assert!(f.stdout.starts_with("usage: "), "{}", f.text());
        assert!(f.stdout.contains("--group URN"), "{}", f.text());
        let f = c::run(c::command(&program).arg("--bogus"), LIMIT);
        assert_eq!(f.status.code(), Some(2), "{}", f.text());
    }
}

#[test]
fn examples_stop_cleanly_on_sigint_and_sigterm() {
    let e = Engine::start();
    // A receiver blocked in an infinite get, and a sender without a frame limit.
    let rx = start_receiver(&e, "c-signals", &["--audio"]);
    let mut cmd = tcp_command(&sender(Link::Shared), &e);
    cmd.args(["--group", "c-signals", "--audio", "--fps", "100"]);
    let mut tx = Proc::spawn(&mut cmd);
    tx.wait_stdout("ready group=", READY);
    std::thread::sleep(Duration::from_millis(300));
    let kill = |p: &Proc, sig| {
        rustix::process::kill_process(Pid::from_raw(p.pid()).unwrap(), sig).unwrap();
    };
    kill(&tx, Signal::INT);
    let tx = tx.finish(LIMIT);
    assert_success("sender after SIGINT", &tx, &e);
    let sent = summary("sender", &tx)["sent"];
    assert!(sent > 0, "{}", tx.text());
    kill(&rx, Signal::TERM);
    let rx = rx.finish(LIMIT);
    assert_success("receiver after SIGTERM", &rx, &e);
    let s = summary("receiver", &rx);
    assert!(s["received"] > 0 && s["received"] <= sent, "{}", rx.text());
    assert_eq!(s["bad_checksums"], 0, "{}", rx.text());
    assert_eq!(s["bad_seq"], 0, "{}", rx.text());
}

#[test]
fn slow_receiver_counts_gaps_and_still_verifies_frames() {
    let e = Engine::start();
    let rx = start_receiver(
        &e,
        "c-slow",
        &[
            "--audio",
            "--capacity",
            "2",
            "--delay-ms",
            "50",
            "--timeout-ms",
            "2000",
        ],
    );
    let mut cmd = tcp_command(&sender(Link::Shared), &e);
    // 100 frames over about a second, while the receiver takes 50 ms per frame with room for
    // two: frames keep arriving after it starts dropping them.
    cmd.args([
        "--group", "c-slow", "--audio", "--frames", "100", "--fps", "100",
    ]);
    let tx = c::run(&mut cmd, LIMIT);
    assert_success("sender", &tx, &e);
    let rx = rx.finish(LIMIT);
    assert_success("slow receiver", &rx, &e);
    let s = summary("receiver", &rx);
    // Every frame it got was intact and in order; what did not fit its queue was skipped,
    // and the skipped ones are exactly the gaps.
    assert_eq!(s["bad_checksums"], 0, "{}", rx.text());
    assert_eq!(s["bad_seq"], 0, "{}", rx.text());
    assert!(s["received"] >= 1, "{}", rx.text());
    assert_eq!(
        s["received"] + s["gaps"],
        s["last_seq"] - s["first_seq"] + 1,
        "{}",
        rx.text()
    );
    assert!(s["received"] < 100, "{}", rx.text());
    assert!(s["gaps"] > 0, "{}", rx.text());
}

#[test]
fn header_is_source_compatible_with_c_and_cxx() {
    let lib_dir = c::sdk_lib_dir();
    let root = c::workspace_root();
    let variants: [(&str, &[&str]); 5] = [
        ("cc", &["-std=c99"]),
        ("cc", &["-std=c11"]),
        ("cc", &["-std=gnu17"]),
        ("c++", &["-x", "c++", "-std=c++11"]),
        ("c++", &["-x", "c++", "-std=c++17"]),
    ];
    let out_dir = lib_dir.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (i, (compiler, std)) in variants.iter().enumerate() {
        let exe = out_dir.join(format!("mcm_app-{i}.{}", std::process::id()));
        let out = std::process::Command::new(compiler)
            .current_dir(&root)
            .args(*std)
            .args([
                "-pedantic",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-I",
                "sdk-c/include",
            ])
            .arg("sdk-c/tests/c/mcm_app.c")
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(lib_dir)
            .arg("-lmcm_dp")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
        let _ = std::fs::remove_file(&exe);
        assert!(
            out.status.success(),
            "mcm_app.c does not build with {compiler} {std:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The end-to-end case: one C sender, three C receivers in separate processes, 1080p
/// `yuv422p10rfc4175` frames with a per-frame pattern and checksum. A fourth receiver is
/// deliberately slow and a fifth is killed with SIGKILL while it holds frames; the three get
/// every frame, intact and in order, regardless.
#[test]
fn three_receivers_get_every_frame_despite_a_slow_one_and_a_killed_one() {
    let mut e = Engine::start();
    let frames: u64 = 150;
    let n = frames.to_string();
    let video = ["--video", "1920x1080", "--pixel-format", "yuv422p10rfc4175"];
    let fast_args = [
        &video[..],
        &["--capacity", "32", "--frames", &n, "--timeout-ms", "60000"],
    ]
    .concat();
    let fast: Vec<Proc> = (0..3)
        .map(|_| start_receiver(&e, "c-mesh", &fast_args))
        .collect();
    let slow = start_receiver(
        &e,
        "c-mesh",
        &[
            &video[..],
            &[
                "--capacity",
                "2",
                "--delay-ms",
                "250",
                "--timeout-ms",
                "5000",
            ],
        ]
        .concat(),
    );
    // The victim holds its frames for a second each, so it dies holding some.
    let mut victim = start_receiver(
        &e,
        "c-mesh",
        &[&video[..], &["--capacity", "4", "--delay-ms", "1000"]].concat(),
    );
    let mut cmd = tcp_command(&sender(Link::Shared), &e);
    cmd.args([
        "--group",
        "c-mesh",
        "--frames",
        &n,
        "--fps",
        "25",
        "--capacity",
        "32",
    ])
    .args(video);
    let tx = Proc::spawn(&mut cmd);
    // Once the victim has a frame in hand (it prints nothing per frame, so wait for the engine to
    // have delivered some: a second at 25 fps), kill it.
    std::thread::sleep(Duration::from_secs(1));
    rustix::process::kill_process(Pid::from_raw(victim.pid()).unwrap(), Signal::KILL).unwrap();
    let status = victim.child.wait().unwrap();
    assert!(!status.success());
    // The engine notices the death (the session socket closes) and reclaims the connection.
    e.wait_log("deleted from group \"c-mesh\"");
    let tx = tx.finish(LIMIT);
    assert_success("sender", &tx, &e);
    assert_eq!(summary("sender", &tx)["sent"], frames, "{}", tx.text());
    for (i, rx) in fast.into_iter().enumerate() {
        let rx = rx.finish(LIMIT);
        assert_success(&format!("receiver {i}"), &rx, &e);
        let s = summary("receiver", &rx);
        for (k, v) in [
            ("received", frames),
            ("first_seq", 0),
            ("last_seq", frames - 1),
            ("gaps", 0),
            ("bad_checksums", 0),
            ("bad_seq", 0),
        ] {
            assert_eq!(s[k], v, "receiver {i} summary {k}:\n{}", rx.text());
        }
    }
    let slow = slow.finish(LIMIT);
    assert_success("slow receiver", &slow, &e);
    let s = summary("slow receiver", &slow);
    assert_eq!(
        (s["bad_checksums"], s["bad_seq"]),
        (0, 0),
        "{}",
        slow.text()
    );
    assert!(s["gaps"] > 0 && s["received"] < frames, "{}", slow.text());
    assert_eq!(
        s["received"] + s["gaps"],
        s["last_seq"] - s["first_seq"] + 1,
        "{}",
        slow.text()
    );
}

/// The SDK library links no gRPC: neither the shared library's dependencies nor any symbol of
/// the shared or the static library come from gRPC's C core (the control plane's stubs live in
/// mcm-control, which the SDK does not depend on).
#[test]
fn libmcm_dp_has_no_grpc() {
    let dir = c::sdk_lib_dir();
    let so = dir.join("libmcm_dp.so");
    let ldd = std::process::Command::new("ldd").arg(&so).output().unwrap();
    assert!(ldd.status.success(), "ldd {}", so.display());
    let deps = String::from_utf8_lossy(&ldd.stdout);
    assert!(deps.contains("libc.so"), "ldd lists the libraries: {deps}");
    assert!(!deps.to_lowercase().contains("grpc"), "{deps}");
    for (lib, args) in [("libmcm_dp.so", &["-D"][..]), ("libmcm_dp.a", &[][..])] {
        let out = std::process::Command::new("nm")
            .args(args)
            .arg(dir.join(lib))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nm {lib}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let syms = String::from_utf8_lossy(&out.stdout);
        assert!(
            syms.contains("mesh_create_client"),
            "nm reads {lib}'s symbols"
        );
        let grpc: Vec<&str> = syms
            .lines()
            .filter(|l| l.contains("grpc_") || l.contains("grpcio"))
            .take(5)
            .collect();
        assert!(grpc.is_empty(), "{lib} has gRPC symbols: {grpc:?}");
    }
}
