//! The SDK against a real engine: local multipoint groups, zero copy, slow and dying receivers.

mod common;

use std::time::Duration;

use common::Engine;
use mcm_proto::config::ClientConfig;
use mcm_sdk::{Client, MeshErr, Timeout};

fn video_json(urn: &str, capacity: u32) -> String {
    format!(
        r#"{{"bufferQueueCapacity": {capacity},
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

fn tcp_client(e: &Engine) -> Client {
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"}}"#,
        e.tcp.port()
    );
    Client::new(Some(&json)).unwrap()
}

fn unix_client(e: &Engine) -> Client {
    Client::with_unix_socket(&e.unix, ClientConfig::default()).unwrap()
}

const T: Timeout = Timeout::After(Duration::from_secs(10));

#[test]
fn frames_flow_from_one_sender_to_two_receivers_in_order() {
    let e = Engine::start();
    let (c_tx, c_rx1, c_rx2) = (tcp_client(&e), unix_client(&e), tcp_client(&e));
    let rx1 = c_rx1.create_rx(&video_json("g1", 16)).unwrap();
    let rx2 = c_rx2.create_rx(&video_json("g1", 16)).unwrap();
    let tx = c_tx.create_tx(&video_json("g1", 16)).unwrap();
    for i in 0..100u32 {
        let mut b = tx.get_timeout(T).unwrap();
        let p = b.payload_mut();
        assert_eq!(p.len(), 64 * 32 * 5 / 2);
        p.fill(i as u8);
        p[..4].copy_from_slice(&i.to_le_bytes());
        b.put().unwrap();
        for rx in [&rx1, &rx2] {
            let f = rx.get_timeout(T).unwrap();
            assert_eq!(f.seq(), u64::from(i));
            assert_eq!(&f.payload()[..4], &i.to_le_bytes());
            assert!(f.payload()[4..].iter().all(|&x| x == i as u8));
            assert!(f.timestamp_ns() > 0);
        }
    }
    let err = rx1
        .get_timeout(Timeout::After(Duration::from_millis(50)))
        .unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::Timeout), "{err}");
}

/// The file (device:inode), the offset in it, and the permissions of the mapping holding `p`.
fn mapping_of(p: *const u8) -> (String, u64, String) {
    let addr = p as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = f[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        if (start..end).contains(&addr) {
            let offset = u64::from_str_radix(f[2], 16).unwrap();
            return (
                format!("{} {} {}", f[3], f[4], f.get(5).unwrap_or(&"")),
                addr - start + offset,
                f[1].to_owned(),
            );
        }
    }
    panic!("{p:p} is not mapped");
}

#[test]
fn receivers_read_the_very_bytes_the_sender_wrote() {
    let e = Engine::start();
    let c = unix_client(&e);
    let rx_a = c.create_rx(&video_json("zc", 4)).unwrap();
    let rx_b = tcp_client(&e).create_rx(&video_json("zc", 4)).unwrap();
    let tx = c.create_tx(&video_json("zc", 4)).unwrap();
    for i in 0..20u8 {
        let mut b = tx.get_timeout(T).unwrap();
        b.payload_mut().fill(i);
        let written = mapping_of(b.payload_mut().as_ptr());
        assert!(
            written.2.starts_with("rw") && written.2.ends_with('s'),
            "{written:?}"
        );
        assert!(written.0.contains("memfd:mcm-pool-"), "{written:?}");
        b.put().unwrap();
        for rx in [&rx_a, &rx_b] {
            let f = rx.get_timeout(T).unwrap();
            let read = mapping_of(f.payload().as_ptr());
            assert_eq!(read.0, written.0, "the same file (device, inode, name)");
            assert_eq!(read.1, written.1, "the same offset in it: the same slot");
            assert!(
                read.2.starts_with("r-") && read.2.ends_with('s'),
                "read-only: {read:?}"
            );
            assert!(f.payload().iter().all(|&x| x == i));
        }
    }
    let stats = c.stats().unwrap();
    assert_eq!(
        stats.payload_bytes_copied, 0,
        "the engine copied no payload"
    );
    let tx_stats = stats
        .connections
        .iter()
        .find(|s| s.conn_id == tx.core().id())
        .unwrap();
    assert_eq!(tx_stats.frames, 20);
    assert_eq!(tx_stats.payload_bytes, 20 * 64 * 32 * 5 / 2);
}

#[test]
fn a_slow_receiver_drops_while_the_fast_one_gets_every_frame() {
    let e = Engine::start();
    let c = unix_client(&e);
    let fast = c.create_rx(&video_json("slow", 4)).unwrap();
    let slow = c.create_rx(&video_json("slow", 2)).unwrap();
    let tx = c.create_tx(&video_json("slow", 4)).unwrap();
    let mut held = Vec::new();
    for i in 0..50u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        let f = fast.get_timeout(T).unwrap();
        assert_eq!(f.seq(), i);
        // The slow receiver takes two frames and sits on them.
        if held.len() < 2 {
            held.push(slow.get_timeout(T).unwrap());
        }
    }
    let stats = c.stats().unwrap();
    let of = |id| {
        stats
            .connections
            .iter()
            .find(|s| s.conn_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of(fast.core().id()).dropped, 0);
    let s = of(slow.core().id());
    assert_eq!((s.frames, s.dropped), (2, 48), "{s:?}");
    assert_eq!(held.iter().map(|b| b.seq()).collect::<Vec<_>>(), vec![0, 1]);
    drop(held);
    // Once the engine has taken the two releases back, the slow receiver gets live frames again
    // (the release and the next frame race, so allow a few more frames to be dropped).
    let resumed = (0..100).find_map(|_| {
        tx.get_timeout(T).unwrap().put().unwrap();
        slow.get_timeout(Timeout::After(Duration::from_millis(20)))
            .ok()
            .map(|f| f.seq())
    });
    assert!(resumed.is_some_and(|seq| seq >= 50), "{resumed:?}");
}

#[test]
fn receivers_join_and_leave_while_the_stream_runs() {
    let e = Engine::start();
    let c = unix_client(&e);
    let tx = c.create_tx(&video_json("live", 8)).unwrap();
    let first = c.create_rx(&video_json("live", 8)).unwrap();
    for i in 0..10u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(first.get_timeout(T).unwrap().seq(), i);
    }
    let late = c.create_rx(&video_json("live", 8)).unwrap();
    for i in 10..20u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(first.get_timeout(T).unwrap().seq(), i);
        assert_eq!(
            late.get_timeout(T).unwrap().seq(),
            i,
            "a late joiner gets the live frames"
        );
    }
    // The first receiver leaves holding a frame; the slot is reclaimed and the stream goes on.
    let err = first
        .get_timeout(Timeout::After(Duration::ZERO))
        .unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::Timeout));
    tx.get_timeout(T).unwrap().put().unwrap();
    let kept = first.get_timeout(T).unwrap();
    assert_eq!(kept.seq(), 20);
    assert_eq!(late.get_timeout(T).unwrap().seq(), 20);
    // Leak the buffer (as a crashing app would) so the connection goes with a frame held.
    std::mem::forget(kept);
    drop(first);
    for i in 21..200u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(late.get_timeout(T).unwrap().seq(), i);
    }
    assert_eq!(c.connection_count(), 2);
}

#[test]
fn the_engine_refuses_connections_that_do_not_fit_their_group() {
    let e = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nmax_sinks_per_group = 2\n"),
        &[],
    );
    let c = tcp_client(&e);
    let _tx = c.create_tx(&video_json("g", 4)).unwrap();
    let err = c.create_tx(&video_json("g", 4)).unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::ConnConfigIncompat), "{err}");
    assert!(err.message().contains("already has a sender"), "{err}");
    let other_size = video_json("g", 4).replace("\"width\": 64", "\"width\": 128");
    let err = c.create_rx(&other_size).unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::ConnConfigIncompat), "{err}");
    assert!(
        err.message().contains("the same sizes as the group"),
        "{err}"
    );
    let _a = c.create_rx(&video_json("g", 4)).unwrap();
    let _b = c.create_rx(&video_json("g", 4)).unwrap();
    let err = c.create_rx(&video_json("g", 4)).unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::MaxConn), "{err}");
    assert!(err.message().contains("max_sinks_per_group = 2"), "{err}");
    let rdma = r#"{"connection": {"rdma": {"connectionMode": "RC"}},
                   "payload": {"video": {"width": 64, "height": 32, "pixelFormat": "yuv422p10rfc4175"}}}"#;
    let err = c.create_rx(rdma).unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::NotImplemented), "{err}");
    // The session survives refusals: the group still works.
    assert_eq!(c.connection_count(), 3);
}

#[test]
fn engine_shutdown_wakes_a_blocked_get_with_conn_closed() {
    let mut e = Engine::start();
    let c = unix_client(&e);
    let rx = c.create_rx(&video_json("bye", 4)).unwrap();
    let waiter = std::thread::spawn(move || {
        let r = rx.get_timeout(Timeout::Infinite).map(|_| ()).unwrap_err();
        (r, rx)
    });
    std::thread::sleep(Duration::from_millis(200));
    e.signal(rustix::process::Signal::TERM);
    assert!(e.wait_exit().success());
    let (err, _rx) = waiter.join().unwrap();
    assert_eq!(err.mesh_err(), Some(MeshErr::ConnClosed), "{err}");
}

#[test]
fn a_sender_is_told_at_once_when_the_engine_dies() {
    // Before: the frames put after the engine had died returned success until the lent slots
    // ran out (a quota of frames reported sent that nobody would ever take).
    for tcp in [false, true] {
        let mut e = Engine::start();
        let c = if tcp { tcp_client(&e) } else { unix_client(&e) };
        let tx = c.create_tx(&video_json("crash", 16)).unwrap();
        for _ in 0..3 {
            tx.get_timeout(T).unwrap().put().unwrap();
        }
        // A buffer the application holds while the engine dies.
        let held = tx.get_timeout(T).unwrap();
        e.signal(rustix::process::Signal::KILL);
        e.wait_exit();
        // The kernel has closed the engine's sockets: every put and get fails from now on.
        let err = held.put().unwrap_err();
        assert_eq!(err.mesh_err(), Some(MeshErr::ConnClosed), "{err}");
        assert!(
            err.to_string().contains("the engine closed the session"),
            "{err}"
        );
        for _ in 0..20 {
            let err = tx.get_timeout(T).map(|_| ()).unwrap_err();
            assert_eq!(err.mesh_err(), Some(MeshErr::ConnClosed), "{err}");
        }
    }
}

use common::raw::Raw;
use mcm_proto::sdk::engine_message::Body;
use mcm_proto::sdk::{
    ClientMessage, ConnectionKind, CreateConnection, EngineMessage, ErrorCode, FetchFds,
};
use mcm_proto::shm::desc::Descriptor;

#[test]
fn a_client_that_lies_in_shared_memory_is_cut_off_and_others_carry_on() {
    let e = Engine::start();
    let honest = unix_client(&e);
    let h_tx = honest.create_tx(&video_json("fine", 4)).unwrap();
    let h_rx = honest.create_rx(&video_json("fine", 4)).unwrap();
    let mut liar = Raw::connect(&e);
    let (id, mut side) =
        liar.connect_group(ConnectionKind::CONNECTION_KIND_TX, &video_json("bad", 4));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    side.wait(Some(deadline), Duration::ZERO, None);
    let lent = side.pop().expect("the engine lends free slots");
    // Publish a slot far outside the pool and a length beyond the slot.
    side.push(Descriptor {
        slot: 1 << 30,
        payload_len: u32::MAX,
        ..lent
    })
    .unwrap();
    let (Body::Error(err), _) = liar.recv() else {
        panic!("expected an Error")
    };
    assert_eq!(
        err.code.enum_value().unwrap(),
        ErrorCode::ERROR_CODE_PROTOCOL_VIOLATION
    );
    assert!(err.fatal);
    assert!(
        err.message.contains(&format!("connection {id}")),
        "{}",
        err.message
    );
    assert!(err.message.contains("slot 1073741824"), "{}", err.message);
    assert!(side.is_closed(), "the liar's connection is closed");
    // The honest group never noticed.
    for i in 0..20u64 {
        h_tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(h_rx.get_timeout(T).unwrap().seq(), i);
    }
}

#[test]
fn a_client_that_vanishes_is_reclaimed() {
    let mut e = Engine::start();
    let c = unix_client(&e);
    let tx = c.create_tx(&video_json("gone", 2)).unwrap();
    let rx = c.create_rx(&video_json("gone", 2)).unwrap();
    let mut ghost = Raw::connect(&e);
    let (ghost_id, mut side) =
        ghost.connect_group(ConnectionKind::CONNECTION_KIND_RX, &video_json("gone", 2));
    for i in 0..2u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(rx.get_timeout(T).unwrap().seq(), i);
    }
    assert_eq!(side.pop().map(|d| d.seq), Some(0), "the ghost holds frames");
    drop(ghost);
    e.wait_log(&format!("connection {ghost_id}: deleted"));
    for i in 2..100u64 {
        tx.get_timeout(T).unwrap().put().unwrap();
        assert_eq!(rx.get_timeout(T).unwrap().seq(), i);
    }
    drop(side);
}

#[test]
fn fd_tokens_are_single_use_and_need_the_unix_socket() {
    let e = Engine::start();
    let mut tcp = std::net::TcpStream::connect(e.tcp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read = |s: &mut std::net::TcpStream| {
        mcm_proto::frame::read_message::<EngineMessage, _>(s)
            .unwrap()
            .unwrap()
            .body
            .unwrap()
    };
    let mut h = mcm_proto::sdk::Hello::new();
    h.protocol_version = mcm_proto::PROTOCOL_VERSION;
    let mut m = ClientMessage::new();
    m.set_hello(h);
    mcm_proto::frame::write_message(&mut tcp, &m).unwrap();
    assert!(matches!(read(&mut tcp), Body::HelloReply(_)));
    let mut m = ClientMessage::new();
    m.set_create_connection(CreateConnection {
        kind: ConnectionKind::CONNECTION_KIND_RX.into(),
        config_json: video_json("tok", 4),
        ..CreateConnection::new()
    });
    mcm_proto::frame::write_message(&mut tcp, &m).unwrap();
    let Body::ConnectionCreated(c) = read(&mut tcp) else {
        panic!()
    };
    assert!(!c.fds_attached);
    assert_eq!(c.fd_socket, e.unix.display().to_string());
    assert_eq!(c.fd_token.len(), 16);
    let fetch = |token: Vec<u8>| {
        let mut m = ClientMessage::new();
        m.set_fetch_fds(FetchFds {
            token,
            ..FetchFds::new()
        });
        m
    };
    // Over TCP the fds cannot travel: refused, the session goes on.
    mcm_proto::frame::write_message(&mut tcp, &fetch(c.fd_token.clone())).unwrap();
    let Body::Error(err) = read(&mut tcp) else {
        panic!()
    };
    assert!(
        !err.fatal && err.message.contains("needs a Unix-socket session"),
        "{err:?}"
    );
    let mut unix = Raw::connect(&e);
    let mut wrong = c.fd_token.clone();
    wrong[0] ^= 1;
    let (Body::Error(err), fds) = unix.request(&fetch(wrong)) else {
        panic!()
    };
    assert!(
        fds.is_empty() && err.message.contains("no connection waits"),
        "{err:?}"
    );
    let (Body::Fds(f), fds) = unix.request(&fetch(c.fd_token.clone())) else {
        panic!()
    };
    assert_eq!((f.conn_id, fds.len()), (c.conn_id, 4));
    let (Body::Error(_), fds) = unix.request(&fetch(c.fd_token.clone())) else {
        panic!("a token works once")
    };
    assert!(fds.is_empty());
}

#[test]
fn a_client_that_floods_requests_without_reading_is_dropped_and_others_are_served() {
    use std::io::Write;
    let e = Engine::start();
    let mut flood = std::net::TcpStream::connect(e.tcp).unwrap();
    let mut h = mcm_proto::sdk::Hello::new();
    h.protocol_version = mcm_proto::PROTOCOL_VERSION;
    let mut m = ClientMessage::new();
    m.set_hello(h);
    mcm_proto::frame::write_message(&mut flood, &m).unwrap();
    let mut k = ClientMessage::new();
    k.set_keepalive(mcm_proto::sdk::Keepalive::new());
    let mut chunk = Vec::new();
    while chunk.len() < 64 << 10 {
        mcm_proto::frame::encode(&k, &mut chunk).unwrap();
    }
    flood
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // At most 256 MiB of keepalives, never reading a reply: the engine must cut it off.
    let cut_off = (0..4096).any(|_| flood.write_all(&chunk).is_err());
    assert!(
        cut_off,
        "the engine kept accepting requests from a client that never reads"
    );
    // Everyone else was served all along, and still is.
    let c = unix_client(&e);
    let rx = c.create_rx(&video_json("after-flood", 4)).unwrap();
    let tx = c.create_tx(&video_json("after-flood", 4)).unwrap();
    tx.get_timeout(T).unwrap().put().unwrap();
    assert_eq!(rx.get_timeout(T).unwrap().seq(), 0);
}

#[test]
fn teardown_is_never_lost_when_an_lcore_command_ring_is_full() {
    let mut e = Engine::start_with(
        |t| {
            t.replace("stats_interval_ms = 0", "stats_interval_ms = 100")
                .replace("cpus = [1]\n", "cpus = [1]\ncommand_ring = 2\n")
        },
        &[],
    );
    let c = unix_client(&e);
    let conns: Vec<_> = (0..24)
        .map(|i| c.create_rx(&video_json(&format!("many-{i}"), 2)).unwrap())
        .collect();
    e.wait_log("ports=24");
    let mark = e.log.lock().unwrap().len();
    drop(conns);
    drop(c);
    // Every detach and every group's destruction reaches the lcore: its port count drops to 0.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = e.log.lock().unwrap()[mark..].join("\n");
        assert!(!log.contains("not delivered"), "{log}");
        if log.contains("ports=0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ports never reached 0:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_get_times_out_even_while_another_thread_waits_on_the_same_connection() {
    let e = Engine::start();
    let c = unix_client(&e);
    let rx = std::sync::Arc::new(c.create_rx(&video_json("two-waiters", 4)).unwrap());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (rx2, done2) = (rx.clone(), done.clone());
    let waiter = std::thread::spawn(move || {
        let r = rx2.get_timeout(Timeout::Infinite).map(|_| ()).unwrap_err();
        done2.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    std::thread::sleep(Duration::from_millis(100));
    let err = rx
        .get_timeout(Timeout::After(Duration::from_millis(50)))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.mesh_err(), Some(MeshErr::Timeout), "{err}");
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "the timeout did not wait for the other thread's get"
    );
    rx.shutdown();
    assert_eq!(waiter.join().unwrap().mesh_err(), Some(MeshErr::ConnClosed));
}
