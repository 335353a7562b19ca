//! Integration tests: start the real `mcm-engine` binary and talk to it over real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use mcm_proto::frame::{read_message, write_message};
use mcm_proto::sdk::{ClientMessage, EngineMessage, ErrorCode, Hello, Keepalive, engine_message};
use rustix::process::Signal;

mod common;
use common::{BIN, Engine, WAIT, config};

fn hello_msg(name: &str, version: u32) -> ClientMessage {
    let mut h = Hello::new();
    h.protocol_version = version;
    h.client_name = name.into();
    let mut m = ClientMessage::new();
    m.set_hello(h);
    m
}

fn keepalive_msg(nonce: u64) -> ClientMessage {
    let mut k = Keepalive::new();
    k.nonce = nonce;
    let mut m = ClientMessage::new();
    m.set_keepalive(k);
    m
}

fn recv<S: Read>(s: &mut S) -> Option<engine_message::Body> {
    read_message::<EngineMessage, _>(s)
        .expect("a well-formed frame from the engine")
        .map(|m| m.body.unwrap())
}

fn tcp(e: &Engine) -> TcpStream {
    let s = TcpStream::connect(e.tcp).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn unix(e: &Engine) -> UnixStream {
    let s = UnixStream::connect(&e.unix).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Says Hello on `s` and returns the session id from the reply.
fn greet<S: Read + Write>(s: &mut S, name: &str) -> u64 {
    write_message(s, &hello_msg(name, mcm_proto::PROTOCOL_VERSION)).unwrap();
    match recv(s) {
        Some(engine_message::Body::HelloReply(r)) => {
            assert_eq!(r.protocol_version, mcm_proto::PROTOCOL_VERSION);
            assert_eq!(r.engine_version, env!("CARGO_PKG_VERSION"));
            r.session_id
        }
        other => panic!("expected HelloReply, got {other:?}"),
    }
}

fn expect_error_then_eof<S: Read>(s: &mut S, code: ErrorCode, text: &str) {
    match recv(s) {
        Some(engine_message::Body::Error(e)) => {
            assert_eq!(e.code.enum_value().unwrap(), code, "{}", e.message);
            assert!(
                e.message.contains(text),
                "{:?} does not contain {text:?}",
                e.message
            );
        }
        other => panic!("expected an Error, got {other:?}"),
    }
    assert!(recv(s).is_none(), "the engine must close after an error");
}

fn keepalive_works<S: Read + Write>(s: &mut S, nonce: u64) {
    write_message(s, &keepalive_msg(nonce)).unwrap();
    assert!(matches!(recv(s), Some(engine_message::Body::Keepalive(k)) if k.nonce == nonce));
}

/// Thread names and CPU affinity as the kernel reports them.
fn threads(pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm"))
            .unwrap()
            .trim()
            .to_owned();
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        out.push((comm, cpus));
    }
    out.sort();
    out
}

#[test]
fn lcore_threads_are_named_and_pinned() {
    let mut e = Engine::start_with(|t| t.replace("cpus = [1]", "cpus = [0, 1]"), &[]);
    e.wait_log("lcore mcm-lcore-0 pinned to CPU 0");
    e.wait_log("lcore mcm-lcore-1 pinned to CPU 1");
    let t = threads(e.pid());
    let find = |name: &str| {
        t.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(find("mcm-lcore-0"), ["0"], "{t:?}");
    assert_eq!(find("mcm-lcore-1"), ["1"], "{t:?}");
    assert_eq!(find("mcm-control"), ["0"], "{t:?}");
    e.wait_log("memory: ");
}

#[test]
fn hello_round_trip_over_tcp_and_unix() {
    let e = Engine::start();
    let mut a = tcp(&e);
    let mut b = unix(&e);
    let ida = greet(&mut a, "tcp-client");
    let idb = greet(&mut b, "unix-client");
    assert_ne!(ida, idb);
    keepalive_works(&mut a, 1);
    keepalive_works(&mut b, 2);
}

#[test]
fn garbage_closes_only_the_offender() {
    let e = Engine::start();
    let mut good = tcp(&e);
    greet(&mut good, "good");

    let mut bad = tcp(&e);
    bad.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
    expect_error_then_eof(
        &mut bad,
        ErrorCode::ERROR_CODE_MALFORMED_FRAME,
        "not a valid",
    );

    let mut http = tcp(&e);
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    expect_error_then_eof(
        &mut http,
        ErrorCode::ERROR_CODE_OVERSIZED_FRAME,
        "exceeds the maximum of 65536 bytes",
    );

    let mut old = unix(&e);
    write_message(&mut old, &hello_msg("old", 99)).unwrap();
    expect_error_then_eof(
        &mut old,
        ErrorCode::ERROR_CODE_UNSUPPORTED_VERSION,
        "speaks version 1",
    );

    let mut early = tcp(&e);
    write_message(&mut early, &keepalive_msg(5)).unwrap();
    expect_error_then_eof(
        &mut early,
        ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE,
        "allowed: Hello",
    );

    // A client that sends half a frame and vanishes.
    let mut gone = unix(&e);
    gone.write_all(&[0, 0, 1, 0, 1, 2, 3]).unwrap();
    drop(gone);

    // A flood of noise larger than any frame, written while the engine closes on us.
    let mut flood = tcp(&e);
    let noise: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = flood.write_all(&noise);
    drop(flood);

    keepalive_works(&mut good, 77);
    let mut fresh = unix(&e);
    greet(&mut fresh, "fresh");
}

/// A client that sends its Hello and immediately shuts down its write side still gets the reply.
#[test]
fn reply_reaches_a_client_that_half_closed() {
    let e = Engine::start();
    for _ in 0..20 {
        let mut s = tcp(&e);
        write_message(&mut s, &hello_msg("half", mcm_proto::PROTOCOL_VERSION)).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(
            recv(&mut s),
            Some(engine_message::Body::HelloReply(_))
        ));
    }
}

#[test]
fn silent_client_is_closed_after_handshake_timeout() {
    let e = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nhandshake_timeout_ms = 300\n"),
        &[],
    );
    let mut quiet = tcp(&e);
    expect_error_then_eof(
        &mut quiet,
        ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE,
        "no Hello within 300 ms",
    );
    let mut ok = tcp(&e);
    greet(&mut ok, "prompt");
}

#[test]
fn too_many_sessions_are_refused_with_the_limit() {
    let e = Engine::start_with(|t| t.replace("[sdk]\n", "[sdk]\nmax_sessions = 2\n"), &[]);
    let mut a = tcp(&e);
    let mut b = unix(&e);
    greet(&mut a, "a");
    greet(&mut b, "b");
    let mut c = tcp(&e);
    expect_error_then_eof(
        &mut c,
        ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE,
        "too many SDK sessions (limit 2)",
    );
    drop(a);
    // The slot frees once the engine has seen the close; retry until it has.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut d = tcp(&e);
        write_message(&mut d, &hello_msg("d", mcm_proto::PROTOCOL_VERSION)).unwrap();
        if let Some(engine_message::Body::HelloReply(_)) = recv(&mut d) {
            break;
        }
        assert!(Instant::now() < deadline, "session slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stats_show_every_lcore_answering_pings() {
    let mut e = Engine::start_with(
        |t| {
            t.replace("cpus = [1]", "cpus = [0, 1]")
                .replace("stats_interval_ms = 0", "stats_interval_ms = 200")
        },
        &[],
    );
    for cpu in [0, 1] {
        let deadline = Instant::now() + WAIT;
        while !e
            .log_text()
            .lines()
            .any(|l| l.contains(&format!("stats: lcore cpu={cpu} ")) && l.ends_with(" us"))
        {
            assert!(
                Instant::now() < deadline,
                "lcore {cpu} never answered a ping:\n{}",
                e.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    e.wait_log("stats: control sessions=0");
}

fn stops_cleanly_on(sig: Signal) {
    let mut e = Engine::start();
    let mut client = unix(&e);
    greet(&mut client, "open-at-shutdown");
    assert!(e.unix.exists());
    e.signal(sig);
    let status = e.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", e.log_text());
    assert!(
        recv(&mut client).is_none(),
        "open sessions are closed at shutdown"
    );
    assert!(!e.unix.exists(), "SDK socket left behind");
    assert!(
        !e.shm.exists(),
        "shared-memory directory left behind: {:?}",
        std::fs::read_dir(&e.shm).map(|d| d.count())
    );
    assert!(e.log_text().contains("mcm-engine stopped"));
}

#[test]
fn sigterm_exits_zero_and_leaves_nothing_behind() {
    stops_cleanly_on(Signal::TERM);
}

#[test]
fn sigint_exits_zero_and_leaves_nothing_behind() {
    stops_cleanly_on(Signal::INT);
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_is_refused() {
    let mut a = Engine::start();
    let sock = a.unix.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(&cfg, config(dir.path(), "")).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("--unix-socket")
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by a running engine"), "{err}");

    a.signal(Signal::KILL);
    a.wait_exit();
    assert!(sock.exists(), "SIGKILL leaves the socket file");
    let mut c = Engine::start_with(|t| t, &["--unix-socket", sock.to_str().unwrap()]);
    c.wait_log("replacing stale SDK socket");
    let mut s = unix(&c);
    greet(&mut s, "after-stale");
}

/// Runs the binary with a bad configuration and returns (exit code, stderr).
fn run_bad(toml: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path(), "");
    let cases: &[(&str, &[&str], i32, &[&str])] = &[
        (
            "[lcores]\ncpus = [1]\nturbo = true\n",
            &[],
            2,
            &[
                "lcores.turbo",
                "unknown field `turbo`",
                "expected one of `cpus`",
            ],
        ),
        (
            "[lcores]\ncpus = \"all\"\n",
            &[],
            2,
            &[
                "lcores.cpus",
                "invalid type: string \"all\"",
                "expected a sequence",
            ],
        ),
        (
            "[lcores]\ncpus = [64]\n",
            &[],
            2,
            &["lcores.cpus: CPU 64 does not exist", "allowed: 0, 1"],
        ),
        (
            "[lcores]\nidle = \"sleepy\"\n",
            &[],
            2,
            &[
                "lcores.idle",
                "unknown variant `sleepy`",
                "`busy` or `adaptive`",
            ],
        ),
        (
            "[memory]\nhuge_pages = \"yes\"\n",
            &[],
            2,
            &["memory.huge_pages", "`on`, `off`, `auto`"],
        ),
        (
            "[sdk]\ntcp = \"8002\"\n",
            &[],
            2,
            &[
                "sdk.tcp: `8002` is not a socket address",
                "allowed: IP:PORT",
            ],
        ),
        (
            "[control]\ncpu = 5\n",
            &[],
            2,
            &["control.cpu: CPU 5 does not exist"],
        ),
        ("[[[", &[], 2, &["config:", "line 1"]),
        (
            "",
            &["-t", "localhost:1"],
            2,
            &["sdk.tcp: `localhost:1` is not a socket address"],
        ),
        // Valid syntax, but no interface of this host has the address: fails at bind.
        (
            "[sdk]\ntcp = \"192.0.2.1:8002\"\n",
            &[],
            1,
            &[
                "sdk.tcp: cannot listen on 192.0.2.1:8002",
                "allowed: an IP address of this host",
            ],
        ),
    ];
    for (toml, args, code, needles) in cases {
        let text = if toml.starts_with("[[[") {
            (*toml).to_owned()
        } else {
            format!("{base}{toml}")
        };
        // Later tables override the template's: TOML forbids redefining a table, so merge by key.
        let text = merge(&text);
        let (got, err) = run_bad(&text, args);
        assert_eq!(got, Some(*code), "exit code for {toml:?}: {err}");
        let err = err.trim_end();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("mcm-engine: error:"))
            .collect();
        assert_eq!(lines.len(), 1, "one error line for {toml:?}, got:\n{err}");
        for n in *needles {
            assert!(lines[0].contains(n), "{:?} lacks {n:?}", lines[0]);
        }
    }
}

#[test]
fn address_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_bad(&config(dir.path(), ""), &["-t", &port]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("sdk.tcp: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}

/// Merges repeated `[table]` headers so a test case can override the template's keys.
fn merge(text: &str) -> String {
    let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            current = line.to_owned();
            if !tables.iter().any(|(t, _)| *t == current) {
                tables.push((current.clone(), Vec::new()));
            }
        } else if let Some((k, v)) = line.split_once('=') {
            let entry = tables.iter_mut().find(|(t, _)| *t == current).unwrap();
            let k = k.trim().to_owned();
            entry.1.retain(|(key, _)| *key != k);
            entry.1.push((k, v.trim().to_owned()));
        }
    }
    tables
        .into_iter()
        .map(|(t, kv)| {
            format!(
                "{t}\n{}",
                kv.iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect::<String>()
            )
        })
        .collect()
}
