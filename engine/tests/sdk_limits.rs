//! The SDK port against a client flood: an engine out of file descriptors keeps accepting once
//! descriptors are free again (before, the edge-triggered listener with a full backlog was never
//! polled again), and says so in a rate-limited warning. Loopback only; every loop is bounded.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Engine;
use rustix::process::{Pid, Resource, Rlimit, prlimit};

#[test]
fn the_tcp_listener_survives_running_out_of_descriptors() {
    let mut e = Engine::start();
    let pid = Pid::from_raw(e.pid()).unwrap();
    let open = std::fs::read_dir(format!("/proc/{}/fd", e.pid()))
        .unwrap()
        .count() as u64;
    let limit = open + 24;
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .unwrap();
    // More clients than the engine has descriptors for, all silent.
    let started = Instant::now();
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&e.tcp, Duration::from_secs(1)).ok())
        .collect();
    assert!(flood.len() > 100, "only {} clients connected", flood.len());
    e.wait_log("out of file descriptors");
    drop(flood);
    // Once the flood is gone, a normal client is served.
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"}}"#,
        e.tcp.port()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        match mcm_sdk::Client::new(Some(&json)) {
            Ok(c) => break c,
            Err(err) => {
                assert!(Instant::now() < deadline, "still refused: {err}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(client.stats().is_ok());
    // Said at most once a second (with the number held back), not once per client.
    let said = e
        .log_text()
        .lines()
        .filter(|l| l.contains("accept failed") && l.contains("out of file descriptors"))
        .count() as u64;
    assert!(
        said <= started.elapsed().as_secs() + 2,
        "{said} lines in {:?}",
        started.elapsed()
    );
}

/// A raw protocol client over TCP that has said Hello.
fn greeted(e: &Engine) -> TcpStream {
    use mcm_proto::sdk::{ClientMessage, EngineMessage, Hello, engine_message};
    let mut s = TcpStream::connect(e.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut h = Hello::new();
    h.protocol_version = mcm_proto::PROTOCOL_VERSION;
    h.client_name = "raw".into();
    let mut m = ClientMessage::new();
    m.set_hello(h);
    mcm_proto::frame::write_message(&mut s, &m).unwrap();
    let reply = mcm_proto::frame::read_message::<EngineMessage, _>(&mut s).unwrap();
    assert!(
        matches!(
            reply.and_then(|r| r.body),
            Some(engine_message::Body::HelloReply(_))
        ),
        "no HelloReply"
    );
    s
}

/// The fatal error the engine closes `s` with (then end of stream).
fn closing_error(s: &mut TcpStream) -> String {
    use mcm_proto::sdk::{EngineMessage, engine_message};
    let msg = mcm_proto::frame::read_message::<EngineMessage, _>(s)
        .unwrap()
        .and_then(|m| m.body);
    let Some(engine_message::Body::Error(e)) = msg else {
        panic!("expected an Error, got {msg:?}");
    };
    assert!(e.fatal, "{}", e.message);
    assert!(
        mcm_proto::frame::read_message::<EngineMessage, _>(s)
            .unwrap()
            .is_none(),
        "the session ends after its error"
    );
    e.message
}

#[test]
fn silent_sessions_and_trickled_frames_are_closed_at_their_deadlines() {
    use std::io::Write;
    let e = Engine::start_with(
        |t| {
            t.replace(
                "[sdk]\n",
                "[sdk]\nidle_timeout_ms = 2000\nframe_timeout_ms = 1000\nkeepalive_timeout_ms = 0\n",
            )
        },
        &[],
    );
    // Says Hello, then nothing.
    let mut idle = greeted(&e);
    // Says Hello, then two bytes of a frame's header.
    let mut slow = greeted(&e);
    slow.write_all(&[0, 0]).unwrap();
    // An SDK client with no connection: its keepalive thread speaks for it.
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"}}"#,
        e.tcp.port()
    );
    let live = mcm_sdk::Client::new(Some(&json)).unwrap();

    let why = closing_error(&mut slow);
    assert!(
        why.starts_with("a frame begun") && why.contains("2 bytes of it arrived"),
        "{why}"
    );
    assert!(why.contains("sdk.frame_timeout_ms = 1000"), "{why}");
    let why = closing_error(&mut idle);
    assert!(
        why.contains("holds no connection (limit sdk.idle_timeout_ms = 2000)"),
        "{why}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(live.stats().is_ok(), "the live client's session is kept");

    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let control = mcm_control::grpc::proto::control_grpc::EngineClient::new(
        grpcio::ChannelBuilder::new(env).connect(&e.grpc.to_string()),
    );
    let info = control
        .get_info(&mcm_control::grpc::proto::control::GetInfoRequest::default())
        .unwrap();
    assert_eq!((info.sdk_idle_closed, info.sdk_slow_frames), (1, 1));
}

#[test]
fn a_connection_whose_fds_are_never_fetched_is_deleted_and_frees_its_group() {
    use mcm_proto::sdk::{
        Activate, ClientMessage, ConnectionKind, CreateConnection, EngineMessage, engine_message,
    };
    let e = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nactivate_timeout_ms = 1000\n"),
        &[],
    );
    let mut s = greeted(&e);
    let mut m = ClientMessage::new();
    m.set_create_connection(CreateConnection {
        kind: ConnectionKind::CONNECTION_KIND_RX.into(),
        config_json: r#"{"bufferQueueCapacity": 4, "maxPayloadSize": 1000,
            "connection": {"multipointGroup": {"urn": "never-fetched"}},
            "payload": {"blob": {}}}"#
            .into(),
        ..Default::default()
    });
    mcm_proto::frame::write_message(&mut s, &m).unwrap();
    let reply = mcm_proto::frame::read_message::<EngineMessage, _>(&mut s)
        .unwrap()
        .and_then(|r| r.body);
    let Some(engine_message::Body::ConnectionCreated(created)) = reply else {
        panic!("{reply:?}");
    };
    assert!(!created.fd_token.is_empty(), "a TCP client gets a token");
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let control = mcm_control::grpc::proto::control_grpc::EngineClient::new(
        grpcio::ChannelBuilder::new(env).connect(&e.grpc.to_string()),
    );
    let groups = || {
        control
            .list_groups(&mcm_control::grpc::proto::control::ListGroupsRequest::default())
            .unwrap()
            .groups
            .len()
    };
    assert_eq!(groups(), 1);
    // Never fetched, never activated: gone after the deadline, and so is its group.
    let deadline = Instant::now() + Duration::from_secs(10);
    while groups() > 0 {
        assert!(Instant::now() < deadline, "the connection is kept");
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = control
        .get_info(&mcm_control::grpc::proto::control::GetInfoRequest::default())
        .unwrap();
    assert_eq!(info.sdk_unactivated, 1);
    // The client that comes back to it is told why.
    let mut m = ClientMessage::new();
    m.set_activate(Activate {
        conn_id: created.conn_id,
        ..Default::default()
    });
    mcm_proto::frame::write_message(&mut s, &m).unwrap();
    let reply = mcm_proto::frame::read_message::<EngineMessage, _>(&mut s)
        .unwrap()
        .and_then(|r| r.body);
    let Some(engine_message::Body::Error(err)) = reply else {
        panic!("{reply:?}");
    };
    assert!(!err.fatal, "only the request fails");
    assert!(
        err.message
            .contains("was deleted: it was not activated in time"),
        "{}",
        err.message
    );
}

#[test]
fn one_peer_cannot_hold_every_handshake() {
    use std::io::Write;
    let e = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nmax_waiting_per_peer = 4\n"),
        &[],
    );
    // Four silent clients from 127.0.0.1 are the most that may wait to say Hello.
    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(e.tcp).unwrap()).collect();
    // Let the engine accept them before the fifth comes.
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = TcpStream::connect(e.tcp).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let why = closing_error(&mut fifth);
    assert!(
        why.contains("too many clients from 127.0.0.1 that have not said Hello yet (limit 4"),
        "{why}"
    );
    // One that says Hello frees its place.
    let mut hello = Vec::new();
    let mut m = mcm_proto::sdk::ClientMessage::new();
    let mut h = mcm_proto::sdk::Hello::new();
    h.protocol_version = mcm_proto::PROTOCOL_VERSION;
    m.set_hello(h);
    mcm_proto::frame::encode(&m, &mut hello).unwrap();
    silent[0].write_all(&hello).unwrap();
    silent[0]
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reply =
        mcm_proto::frame::read_message::<mcm_proto::sdk::EngineMessage, _>(&mut silent[0]).unwrap();
    assert!(reply.is_some(), "HelloReply");
    let _next = greeted(&e);
    drop(silent);
}

#[test]
fn an_idle_flood_holds_every_session_only_until_the_idle_timeout() {
    use mcm_proto::sdk::{ClientMessage, EngineMessage, Hello, engine_message};
    // Before: sessions that said Hello and then nothing were never reaped, so a flood of them
    // held every session slot for good and every new client, TCP or Unix, was refused.
    const MAX: usize = 100;
    let e = Engine::start_with(
        |t| {
            t.replace(
                "[sdk]\n",
                &format!(
                    "[sdk]\nmax_sessions = {MAX}\nidle_timeout_ms = 1500\nkeepalive_timeout_ms = 0\n"
                ),
            )
        },
        &[],
    );
    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..3 * MAX {
        let mut s = TcpStream::connect(e.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut h = Hello::new();
        h.protocol_version = mcm_proto::PROTOCOL_VERSION;
        let mut m = ClientMessage::new();
        m.set_hello(h);
        // A refused client may find the socket closed before or after its Hello is written.
        let _ = mcm_proto::frame::write_message(&mut s, &m);
        match mcm_proto::frame::read_message::<EngineMessage, _>(&mut s)
            .ok()
            .flatten()
            .and_then(|r| r.body)
        {
            Some(engine_message::Body::HelloReply(_)) => held.push(s),
            Some(engine_message::Body::Error(e)) => {
                assert!(e.message.contains("too many SDK sessions"), "{}", e.message);
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (MAX, 2 * MAX));
    // While the flood holds every slot, a real client is refused too.
    let err = mcm_sdk::Client::with_unix_socket(&e.unix, Default::default()).unwrap_err();
    assert!(err.to_string().contains("too many SDK sessions"), "{err}");
    // Each flooding session is closed at its idle deadline, with the reason.
    for s in &mut held {
        let why = closing_error(s);
        assert!(why.contains("sdk.idle_timeout_ms = 1500"), "{why}");
    }
    // Then clients are served again, on both sockets.
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"}}"#,
        e.tcp.port()
    );
    // A session's slot is free once the engine has closed its socket, a moment after the
    // client read the reason: retried for a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let retry = |make: &dyn Fn() -> mcm_sdk::Result<mcm_sdk::Client>| loop {
        match make() {
            Ok(c) => break c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let tcp = retry(&|| mcm_sdk::Client::new(Some(&json)));
    let unix = retry(&|| mcm_sdk::Client::with_unix_socket(&e.unix, Default::default()));
    assert!(tcp.stats().is_ok() && unix.stats().is_ok());
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let control = mcm_control::grpc::proto::control_grpc::EngineClient::new(
        grpcio::ChannelBuilder::new(env).connect(&e.grpc.to_string()),
    );
    let info = control
        .get_info(&mcm_control::grpc::proto::control::GetInfoRequest::default())
        .unwrap();
    assert_eq!(info.sdk_idle_closed, MAX as u64);
}
