//! Who may use the SDK ports and how much each client identity may hold, with real engines and
//! clients on loopback: the TCP port requiring an access token (from the client JSON, or from
//! the environment of a C program), quotas of sessions, connections and groups per identity (uid
//! on the Unix socket, token on TCP), and the keepalive timeout that frees the connections of a
//! client that is stopped without closing its socket. Each refusal is checked in the client's
//! error, the engine's counters (GetInfo) and its log.

#[path = "common/c.rs"]
mod c;
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use c::{Link, Proc};
use common::Engine;
use grpcio::{ChannelBuilder, EnvBuilder};
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::EngineClient;
use mcm_proto::config::ClientConfig;
use mcm_sdk::{Client, RxConnection};

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-fedcba9876543210fedc";
const LIMIT: Duration = Duration::from_secs(20);

fn blob_json(urn: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 4, "maxPayloadSize": 1000,
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"blob": {{}}}}}}"#
    )
}

/// An engine whose `[sdk]` table gets `extra`, with a tokens file for alice and bob in `dir`.
fn engine(dir: &Path, extra: &str) -> Engine {
    let tokens = dir.join("sdk-tokens");
    std::fs::write(&tokens, format!("# SDK users\nalice {ALICE}\nbob {BOB}\n")).unwrap();
    let extra = format!("access_tokens_file = \"{}\"\n{extra}", tokens.display());
    Engine::start_with(
        move |t| t.replace("[sdk]\n", &format!("[sdk]\n{extra}")),
        &[],
    )
}

fn control(e: &Engine) -> EngineClient {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    EngineClient::new(ChannelBuilder::new(env).connect(&e.grpc.to_string()))
}

fn info(e: &Engine) -> pb::EngineInfo {
    control(e).get_info(&pb::GetInfoRequest::default()).unwrap()
}

/// A TCP client of `e` presenting `token`, if any, in its client JSON.
fn tcp_client(e: &Engine, token: Option<&str>) -> Result<Client, mcm_sdk::Error> {
    let token = token.map_or(String::new(), |t| format!(r#", "apiAccessToken": "{t}""#));
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"{token}}}"#,
        e.tcp.port()
    );
    Client::new(Some(&json))
}

fn unix_client(e: &Engine) -> Result<Client, mcm_sdk::Error> {
    Client::with_unix_socket(&e.unix, ClientConfig::default())
}

/// Polls GetInfo until `ready` holds (at most 10 s).
fn wait_info(e: &Engine, what: &str, ready: impl Fn(&pb::EngineInfo) -> bool) -> pb::EngineInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let i = info(e);
        if ready(&i) {
            return i;
        }
        assert!(Instant::now() < deadline, "{what}: {i:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn identity<'a>(i: &'a pb::EngineInfo, name: &str) -> Option<&'a pb::SdkIdentity> {
    i.identities.iter().find(|x| x.name == name)
}

#[test]
fn the_tcp_port_serves_only_clients_with_an_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path(), "");
    let err = tcp_client(&e, None).unwrap_err().to_string();
    assert!(
        err.contains(
            "this TCP port requires an SDK access token and the Hello carried no access token"
        ),
        "{err}"
    );
    assert!(err.contains("sdk.access_tokens_file"), "{err}");
    let err = tcp_client(&e, Some("alice-0123456789abcdeX"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("carried a wrong access token"), "{err}");
    e.wait_log("requires an SDK access token");

    // The right token: a session, and a connection whose fds come over the Unix socket.
    let alice = tcp_client(&e, Some(ALICE)).unwrap();
    let rx = alice.create_rx(&blob_json("t")).unwrap();
    // A C program (MCM's API) that takes its token from the environment.
    let receiver = c::compile("receiver", &["sdk-c/examples/receiver.c"], Link::Shared);
    let c_rx = |token: Option<&str>| {
        let mut cmd = c::command(&receiver);
        cmd.env("MCM_MEDIA_PROXY_IP", "127.0.0.1")
            .env("MCM_MEDIA_PROXY_PORT", e.tcp.port().to_string())
            .args(["--audio", "--group", "c-rx", "--timeout-ms", "200"]);
        if let Some(t) = token {
            cmd.env("MCM_SDK_ACCESS_TOKEN", t);
        }
        c::run(&mut cmd, LIMIT)
    };
    let served = c_rx(Some(BOB));
    assert!(served.status.success(), "{}", served.text());
    assert!(
        served.stdout.contains("ready group=c-rx"),
        "{}",
        served.text()
    );
    let refused = c_rx(None);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains("requires an SDK access token"),
        "{}",
        refused.text()
    );
    // The Unix socket asks for no token: its peers are known by uid.
    let local = unix_client(&e).unwrap();

    let i = info(&e);
    assert_eq!(i.sdk_refused_token, 3, "each refusal is counted");
    assert!(
        i.sdk_security
            .starts_with("tcp: access token required (2 identities); unix: mode 0o660"),
        "{}",
        i.sdk_security
    );
    let a = identity(&i, "token \"alice\"").expect("alice is listed");
    assert_eq!((a.sessions, a.connections, a.groups), (1, 1, 1), "{i:#?}");
    assert!(identity(&i, "uid 0").is_some(), "{i:#?}");
    assert!(
        !e.log_text().contains(ALICE),
        "tokens never appear in the log"
    );
    drop((rx, alice, local));

    // A bad tokens file stops the engine at start with the line that is wrong.
    let bad = dir.path().join("bad-tokens");
    std::fs::write(&bad, "alice short\n").unwrap();
    let stderr = common::refused_sdk_config(&format!("access_tokens_file = \"{}\"", bad.display()));
    assert!(
        stderr.contains("sdk.access_tokens_file:")
            && stderr.contains("line 1: the token of \"alice\" is 5 bytes long"),
        "{stderr}"
    );
}

#[test]
fn a_user_over_its_quota_is_refused_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(
        dir.path(),
        "max_sessions_per_identity = 3\nmax_connections_per_identity = 3\n\
         max_groups_per_identity = 2\n",
    );
    // Sessions of uid 0 on the Unix socket.
    let mut u: Vec<Client> = (0..3).map(|_| unix_client(&e).unwrap()).collect();
    let err = unix_client(&e).unwrap_err().to_string();
    assert!(
        err.contains("uid 0 already has 3 sessions, its quota (sdk.max_sessions_per_identity = 3)"),
        "{err}"
    );
    e.wait_log("already has 3 sessions");
    // Another identity still gets a session.
    let bob = tcp_client(&e, Some(BOB)).unwrap();
    // uid 0 keeps one session; the others' slots are free once the engine saw them close (a
    // TCP client's fds are fetched by a short Unix session of its uid).
    let u0 = u.remove(0);
    drop(u);
    wait_info(&e, "uid 0 down to one session", |i| {
        identity(i, "uid 0").is_some_and(|x| x.sessions == 1)
    });

    // Connections and groups of alice, over two sessions.
    let a1 = tcp_client(&e, Some(ALICE)).unwrap();
    let a2 = tcp_client(&e, Some(ALICE)).unwrap();
    let g1 = a1.create_rx(&blob_json("g1")).unwrap();
    let g2 = a1.create_rx(&blob_json("g2")).unwrap();
    let err = a1.create_rx(&blob_json("g3")).unwrap_err().to_string();
    assert!(
        err.contains(
            "token \"alice\" already holds connections in 2 groups, its quota \
             (sdk.max_groups_per_identity = 2)"
        ),
        "{err}"
    );
    // Joining a group it is in is allowed, up to its connections.
    let g1b = a2.create_rx(&blob_json("g1")).unwrap();
    let err = a2.create_rx(&blob_json("g2")).unwrap_err().to_string();
    assert!(
        err.contains("token \"alice\" already holds 3 connections, its quota"),
        "{err}"
    );
    // Bob is not held to alice's use.
    let b3 = bob.create_rx(&blob_json("g3")).unwrap();
    let i = info(&e);
    assert_eq!(i.sdk_refused_quota, 3, "each refusal is counted: {i:#?}");
    assert_eq!(
        (
            i.max_sessions_per_identity,
            i.max_connections_per_identity,
            i.max_groups_per_identity
        ),
        (3, 3, 2)
    );
    let a = identity(&i, "token \"alice\"").unwrap();
    assert_eq!(
        (a.sessions, a.connections, a.groups, a.refused),
        (2, 3, 2, 2),
        "{i:#?}"
    );
    assert_eq!(identity(&i, "uid 0").unwrap().refused, 1);
    // mcm-ctl shows the same.
    let out = std::process::Command::new(c::control_bin("mcm-ctl"))
        .args(["--engine", &e.grpc.to_string(), "info"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("token \"alice\": 2 sessions, 3 connections, 2 groups, 2 refused"),
        "{text}"
    );
    assert!(text.contains("quota 3; keepalive timeouts 0"), "{text}");
    // A deleted connection frees its place.
    drop(g2);
    let deadline = Instant::now() + LIMIT;
    let g3 = loop {
        match a2.create_rx(&blob_json("g3")) {
            Ok(c) => break c,
            Err(err) => {
                assert!(Instant::now() < deadline, "{err}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    drop((g1, g1b, g3, b3, a1, a2, bob, u0));
}

/// A receiver that blocks in `get` with no sender: the C example over the Unix socket.
fn c_receiver(e: &Engine, group: &str) -> Proc {
    let receiver = c::compile("receiver", &["sdk-c/examples/receiver.c"], Link::Shared);
    let mut cmd = c::command(&receiver);
    cmd.env("MCM_SDK_UNIX_SOCKET", &e.unix)
        .args(["--audio", "--group", group]);
    let mut p = Proc::spawn(&mut cmd);
    p.wait_stdout("ready group=", LIMIT);
    p
}

fn connections(e: &Engine, urn: &str) -> usize {
    let groups = control(e)
        .list_groups(&pb::ListGroupsRequest::default())
        .unwrap()
        .groups;
    groups
        .iter()
        .filter(|g| g.urn == urn)
        .map(|g| g.connections.len())
        .sum()
}

#[test]
fn a_stopped_client_loses_its_connections_at_the_keepalive_timeout() {
    use rustix::process::{Signal, kill_process};
    let mut e = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nkeepalive_timeout_ms = 3000\n"),
        &[],
    );
    assert_eq!(info(&e).sdk_keepalive_timeout_ms, 3000);
    // An idle client that is alive keeps its connection through several timeouts: the SDK's
    // keepalive thread speaks for it.
    let idle = unix_client(&e).unwrap();
    let held: RxConnection = idle.create_rx(&blob_json("idle")).unwrap();
    let rx = c_receiver(&e, "stopped");
    assert_eq!(connections(&e, "stopped"), 1);

    // Stopped: its socket stays open, it says nothing.
    let pid = rustix::process::Pid::from_raw(rx.pid()).unwrap();
    kill_process(pid, Signal::STOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while connections(&e, "stopped") > 0 {
        assert!(
            Instant::now() < deadline,
            "the stopped client keeps its connection"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    e.wait_log("nothing heard from the client for");
    let i = info(&e);
    assert_eq!(i.sdk_keepalive_timeouts, 1, "{i:#?}");
    // Woken, it finds its connection closed.
    kill_process(pid, Signal::CONT).unwrap();
    let f = rx.finish(LIMIT);
    assert_eq!(f.status.code(), Some(1), "{}", f.text());
    assert!(f.stderr.contains("Connection is closed"), "{}", f.text());

    // The idle one is still there, and its session still answers.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(connections(&e, "idle"), 1);
    assert!(idle.stats().is_ok());
    assert_eq!(info(&e).sdk_keepalive_timeouts, 1);
    drop((held, idle));

    // 0 turns the timeout off (the SDK is told no interval); below 300 ms is refused.
    let off = Engine::start_with(
        |t| t.replace("[sdk]\n", "[sdk]\nkeepalive_timeout_ms = 0\n"),
        &[],
    );
    assert_eq!(info(&off).sdk_keepalive_timeout_ms, 0);
    let stderr = common::refused_sdk_config("keepalive_timeout_ms = 100");
    assert!(stderr.contains("sdk.keepalive_timeout_ms: 100"), "{stderr}");
}
