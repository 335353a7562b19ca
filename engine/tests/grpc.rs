//! The gRPC control plane of a real engine (`mcm.control.v1` and `grpc.health.v1` on
//! `grpc.addr`), driven by a grpcio client: engine info, health, groups and edges made with no
//! SDK member that carry an application's frames, SDPs, a desired state applied by difference
//! (same state twice, changes, removals, invalid states refused whole, a half-way failure put
//! back), metrics streams, and the errors of bad requests.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Engine;
use futures::StreamExt as _;
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode};
use mcm_control::grpc::proto::control::{self as pb, Direction};
use mcm_control::grpc::proto::control_grpc::EngineClient;
use mcm_control::grpc::proto::health::{HealthCheckRequest, health_check_response::ServingStatus};
use mcm_control::grpc::proto::health_grpc::HealthClient;
use peer::{client, free_port, pattern, send, wait_udp_bound};
use rustix::process::Signal;

/// Clients of the engine's two services.
struct Clients {
    engine: EngineClient,
    health: HealthClient,
}

fn connect(e: &Engine) -> Clients {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let ch = ChannelBuilder::new(env).connect(&e.grpc.to_string());
    Clients {
        engine: EngineClient::new(ch.clone()),
        health: HealthClient::new(ch),
    }
}

/// The status code and message of a refused call.
fn refused<T: std::fmt::Debug>(r: grpcio::Result<T>) -> (RpcStatusCode, String) {
    match r {
        Err(grpcio::Error::RpcFailure(s)) => (s.code(), s.message().to_owned()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A 64x32 10-bit video group (5120-byte frames) with `edges`.
fn group(urn: &str, edges: &[String]) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"multipointGroup": {{"urn": "{urn}", "edges": [{}]}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "fps": 100,
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#,
        edges.join(",")
    )
}

/// An ST 2110-20 edge on loopback.
fn edge(direction: &str, port: u16) -> String {
    format!(
        r#"{{"st2110": {{"direction": "{direction}", "transport": "st2110-20",
            "ipAddr": "127.0.0.1", "port": {port}, "payloadType": 96}}}}"#
    )
}

const SMALL: usize = 64 * 32 * 5 / 2;

fn list(c: &Clients) -> Vec<pb::Group> {
    c.engine
        .list_groups(&pb::ListGroupsRequest::default())
        .unwrap()
        .groups
}

fn find<'a>(groups: &'a [pb::Group], urn: &str) -> &'a pb::Group {
    groups
        .iter()
        .find(|g| g.urn == urn)
        .unwrap_or_else(|| panic!("no group {urn:?} in {groups:#?}"))
}

/// The kinds and ids of a group's edges, sorted by kind.
fn edges_of(g: &pb::Group) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = g.edges.iter().map(|e| (e.kind.clone(), e.id)).collect();
    v.sort();
    v
}

fn apply(c: &Clients, groups: &[String], dry_run: bool) -> grpcio::Result<pb::ApplyConfigReply> {
    c.engine.apply_config(&pb::ApplyConfigRequest {
        groups: groups.to_vec(),
        dry_run,
        ..Default::default()
    })
}

#[test]
fn info_and_health_answer_and_a_stopping_engine_says_not_serving() {
    let mut e = Engine::start();
    let c = connect(&e);
    let info = c.engine.get_info(&pb::GetInfoRequest::default()).unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.api_version, 1);
    assert_eq!(info.pid, e.pid() as u32);
    assert_eq!(info.sdk_tcp, e.tcp.to_string());
    assert_eq!(info.grpc_addr, e.grpc.to_string());
    assert_eq!(info.sdk_unix, e.unix.display().to_string());
    assert_eq!(info.lcores, [1]);
    assert!(info.transports.iter().any(|t| t == "st2110-20"), "{info:?}");
    assert!(info.transports.iter().any(|t| t == "rdma"), "{info:?}");
    assert!(info.rdma_providers.iter().any(|p| p == "tcp"), "{info:?}");
    assert_eq!((info.sessions, info.connections, info.groups), (0, 0, 0));

    let check = |service: &str| {
        c.health.check(&HealthCheckRequest {
            service: service.to_owned(),
            ..Default::default()
        })
    };
    for service in ["", "mcm.control.v1.Engine"] {
        let status = check(service).unwrap().status.enum_value().unwrap();
        assert_eq!(status, ServingStatus::SERVING, "{service:?}");
    }
    let (code, msg) = refused(check("no.such.Service"));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    assert!(msg.contains("unknown service"), "{msg}");

    let mut watch = c.health.watch(&HealthCheckRequest::default()).unwrap();
    let first = futures::executor::block_on(watch.next()).unwrap().unwrap();
    assert_eq!(first.status.enum_value().unwrap(), ServingStatus::SERVING);
    e.signal(Signal::TERM);
    let last = futures::executor::block_on(watch.next()).unwrap().unwrap();
    assert_eq!(
        last.status.enum_value().unwrap(),
        ServingStatus::NOT_SERVING
    );
    assert!(e.wait_exit().success(), "{}", e.log_text());
}

/// Two groups made over gRPC with no SDK member, linked by an ST 2110 stream on loopback (a tx
/// edge of one to an rx edge of the other): an application's frames sent into the first reach
/// a receiver of the second bit-exact; the SDP, the listings and their counters say so.
#[test]
fn groups_made_over_grpc_carry_an_applications_frames() {
    let e = Engine::start();
    let c = connect(&e);
    let port = free_port();
    let made = c
        .engine
        .create_group(&pb::CreateGroupRequest {
            config_json: group("monitor", &[edge("rx", port)]),
            ..Default::default()
        })
        .unwrap();
    let monitor = made.group.into_option().unwrap();
    assert!(monitor.configured);
    assert_eq!(monitor.edges.len(), 1);
    assert_eq!(
        monitor.source, monitor.edges[0].id,
        "the rx edge is its source"
    );
    wait_udp_bound(port);
    c.engine
        .create_group(&pb::CreateGroupRequest {
            config_json: group("cam", &[]),
            ..Default::default()
        })
        .unwrap();
    let added = c
        .engine
        .create_edge(&pb::CreateEdgeRequest {
            urn: "cam".into(),
            edge_json: edge("tx", port),
            ..Default::default()
        })
        .unwrap();
    let groups = list(&c);
    assert_eq!(groups.len(), 2);
    let cam = find(&groups, "cam");
    assert_eq!(cam.edges[0].id, added.edge_id);
    assert_eq!(
        cam.edges[0].direction.enum_value().unwrap(),
        Direction::DIRECTION_TX
    );
    assert!(cam.edges[0].up && cam.edges[0].configured, "{cam:?}");
    assert_eq!(cam.payload, "video 64x32 yuv422p10rfc4175 100 fps");
    assert_eq!(cam.payload_size as usize, SMALL);

    let sdps = c
        .engine
        .get_sdp(&pb::GetSdpRequest {
            urn: "cam".into(),
            ..Default::default()
        })
        .unwrap()
        .sdps;
    assert_eq!(sdps.len(), 1, "{sdps:?}");
    assert!(
        sdps[0].text.contains(&format!("m=video {port} RTP/AVP 96")),
        "{}",
        sdps[0].text
    );
    assert!(sdps[0].text.contains("raw/90000"), "{}", sdps[0].text);
    assert_eq!(
        std::fs::read_to_string(&sdps[0].path).unwrap(),
        sdps[0].text
    );
    let (code, msg) = refused(c.engine.get_sdp(&pb::GetSdpRequest {
        edge_id: monitor.edges[0].id,
        ..Default::default()
    }));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    assert!(msg.contains("allowed: an ST 2110 tx edge"), "{msg}");

    let sdk = client(&e);
    let rx = sdk.create_rx(&group("monitor", &[])).unwrap();
    let tx = sdk.create_tx(&group("cam", &[])).unwrap();
    let n = 40u32;
    let got = std::thread::spawn(move || {
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|_| rx.get_timeout(peer::T).unwrap().payload().to_vec())
            .collect();
        (frames, rx)
    });
    // At the stream's 100 fps: the tx edge holds 16 frames and drops what comes faster.
    for i in 0..n {
        send(&tx, &pattern(i, SMALL));
        std::thread::sleep(Duration::from_millis(12));
    }
    let (frames, rx) = got.join().unwrap();
    for (i, f) in frames.iter().enumerate() {
        assert!(f[..] == pattern(i as u32, SMALL)[..], "frame {i} differs");
    }
    let groups = list(&c);
    let cam = find(&groups, "cam");
    assert_eq!(cam.connections.len(), 1);
    let sender = &cam.connections[0];
    assert_eq!(
        sender.direction.enum_value().unwrap(),
        Direction::DIRECTION_TX
    );
    assert!(sender.active);
    assert_eq!(sender.counters.frames, u64::from(n));
    assert_eq!(cam.edges[0].counters.frames, u64::from(n), "{cam:?}");
    assert!(cam.edges[0].details["packets"] >= u64::from(n), "{cam:?}");
    let monitor = find(&groups, "monitor");
    assert_eq!(
        monitor.edges[0].counters.frames,
        u64::from(n),
        "{monitor:?}"
    );

    // Letting go of "cam" detaches its edge; the group stays for its sender.
    let gone = c
        .engine
        .delete_group(&pb::DeleteGroupRequest {
            urn: "cam".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(!gone.destroyed);
    let groups = list(&c);
    let cam = find(&groups, "cam");
    assert!(!cam.configured && cam.edges.is_empty(), "{cam:?}");
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while list(&c).iter().any(|g| g.urn == "cam") {
        assert!(Instant::now() < deadline, "cam outlived its last member");
        std::thread::sleep(Duration::from_millis(20));
    }
    // "monitor" is kept by the control plane after its receiver leaves.
    drop(rx);
    std::thread::sleep(Duration::from_millis(100));
    assert!(find(&list(&c), "monitor").configured);
}

#[test]
fn bad_requests_are_refused_with_what_was_wrong() {
    let e = Engine::start();
    let c = connect(&e);
    let create = |json: &str| {
        c.engine.create_group(&pb::CreateGroupRequest {
            config_json: json.to_owned(),
            ..Default::default()
        })
    };
    let (code, msg) = refused(create("{not json"));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
    assert!(msg.contains("JSON"), "{msg}");
    let (code, msg) = refused(create(
        r#"{"connection": {"st2110": {"ipAddr": "127.0.0.1", "port": 5004}},
            "payload": {"video": {"width": 64, "height": 32, "fps": 30}}}"#,
    ));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
    assert!(msg.contains("allowed: connection.multipointGroup"), "{msg}");
    let two_sources = group("x", &[edge("rx", free_port()), edge("rx", free_port())]);
    let (code, msg) = refused(create(&two_sources));
    assert_eq!(code, RpcStatusCode::FAILED_PRECONDITION);
    assert!(msg.contains("one source per group"), "{msg}");
    assert!(list(&c).is_empty(), "nothing made");

    create(&group("a", &[])).unwrap();
    let (code, msg) = refused(create(&group("a", &[])));
    assert_eq!(code, RpcStatusCode::ALREADY_EXISTS);
    assert!(msg.contains("ApplyConfig"), "{msg}");

    let create_edge = |urn: &str, json: &str| {
        c.engine.create_edge(&pb::CreateEdgeRequest {
            urn: urn.to_owned(),
            edge_json: json.to_owned(),
            ..Default::default()
        })
    };
    let (code, _) = refused(create_edge("nope", &edge("tx", 5004)));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    let (code, msg) = refused(create_edge("a", r#"{"st2110": {"direction": "tx"}}"#));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
    assert!(msg.contains("ipAddr"), "{msg}");
    let audio = r#"{"st2110": {"direction": "tx", "transport": "st2110-30",
                   "ipAddr": "127.0.0.1", "port": 5004}}"#;
    let (code, msg) = refused(create_edge("a", audio));
    assert_eq!(code, RpcStatusCode::FAILED_PRECONDITION);
    assert!(
        msg.contains("carries audio, but the group's payload is video"),
        "{msg}"
    );
    let port = free_port();
    let id = create_edge("a", &edge("tx", port)).unwrap().edge_id;
    let (code, msg) = refused(create_edge("a", &edge("tx", port)));
    assert_eq!(code, RpcStatusCode::ALREADY_EXISTS);
    assert!(msg.contains(&format!("edge {id}")), "{msg}");

    let delete_edge = |id: u64| {
        c.engine.delete_edge(&pb::DeleteEdgeRequest {
            edge_id: id,
            ..Default::default()
        })
    };
    delete_edge(id).unwrap();
    let (code, _) = refused(delete_edge(id));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    let (code, _) = refused(c.engine.delete_group(&pb::DeleteGroupRequest {
        urn: "nope".into(),
        ..Default::default()
    }));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    let (code, _) = refused(c.engine.list_groups(&pb::ListGroupsRequest {
        urn: "nope".into(),
        ..Default::default()
    }));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    let refusals = e.log_text().matches("gRPC ").count();
    assert!(refusals >= 9, "every refusal is logged:\n{}", e.log_text());
}

#[test]
fn a_desired_state_is_applied_by_difference_and_refused_whole() {
    let e = Engine::start();
    let c = connect(&e);
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let state1 = [group("a", &[edge("tx", p1)]), group("b", &[edge("tx", p2)])];

    let dry = apply(&c, &state1, true).unwrap();
    assert_eq!(
        (dry.created.as_slice(), dry.edges_attached),
        (&["a".to_owned(), "b".to_owned()][..], 2)
    );
    assert!(list(&c).is_empty(), "a dry run changes nothing");

    let r = apply(&c, &state1, false).unwrap();
    assert_eq!(r.created, ["a", "b"]);
    assert_eq!((r.edges_attached, r.edges_detached), (2, 0));
    let before = list(&c);
    assert_eq!(before.len(), 2);

    let r = apply(&c, &state1, false).unwrap();
    assert_eq!(r.unchanged, ["a", "b"], "{r:?}");
    assert!(
        r.created.is_empty() && r.changed.is_empty() && r.removed.is_empty(),
        "{r:?}"
    );
    assert_eq!((r.edges_attached, r.edges_detached), (0, 0));
    let again = list(&c);
    for urn in ["a", "b"] {
        assert_eq!(
            edges_of(find(&again, urn)),
            edges_of(find(&before, urn)),
            "same edges, same ids"
        );
        assert_eq!(find(&again, urn).id, find(&before, urn).id, "same group");
    }

    // Change: a gains an edge; b goes.
    let state2 = [group("a", &[edge("tx", p1), edge("tx", p3)])];
    let r = apply(&c, &state2, false).unwrap();
    assert_eq!(
        (r.changed.as_slice(), r.removed.as_slice()),
        (&["a".to_owned()][..], &["b".to_owned()][..])
    );
    assert_eq!((r.edges_attached, r.edges_detached), (1, 1));
    let now = list(&c);
    assert_eq!(now.len(), 1);
    let a = find(&now, "a");
    assert_eq!(a.edges.len(), 2);
    let kept = edges_of(find(&before, "a"))[0].clone();
    assert!(
        edges_of(a).contains(&kept),
        "the p1 edge was kept as it was"
    );

    // Invalid states are refused whole: nothing changes.
    let bad_json = [group("a", &[edge("tx", p1)]), "{".to_owned()];
    let (code, msg) = refused(apply(&c, &bad_json, false));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
    assert!(msg.starts_with("groups[1]: "), "{msg}");
    let twice = [group("a", &[]), group("a", &[])];
    let (code, msg) = refused(apply(&c, &twice, false));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT);
    assert!(msg.contains("given twice"), "{msg}");
    let two_sources = [
        group("a", &[edge("tx", p1)]),
        group("c", &[edge("rx", free_port()), edge("rx", free_port())]),
    ];
    let (code, msg) = refused(apply(&c, &two_sources, false));
    assert_eq!(code, RpcStatusCode::FAILED_PRECONDITION);
    assert!(
        msg.contains("groups[1]") && msg.contains("one source"),
        "{msg}"
    );
    assert_eq!(
        edges_of(find(&list(&c), "a")),
        edges_of(a),
        "nothing applied"
    );

    // A failure only the data plane finds (a port held by someone else) half-way through puts
    // back what was changed before it.
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let half = [
        group("a", &[edge("tx", p1)]),
        group("d", &[edge("rx", busy_port)]),
    ];
    let (_, msg) = refused(apply(&c, &half, false));
    assert!(msg.contains("nothing applied"), "{msg}");
    let now = list(&c);
    assert_eq!(now.len(), 1, "no group d: {now:#?}");
    let kinds: Vec<String> = edges_of(find(&now, "a"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let want: Vec<String> = edges_of(a).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, want, "a has both edges again");
    drop(busy);

    let r = apply(&c, &[], false).unwrap();
    assert_eq!(r.removed, ["a"]);
    assert!(list(&c).is_empty());
}

/// A metrics stream sends a sample every interval with each flow's counters and rates and
/// each lcore's load, and ends when the client goes.
#[test]
fn metrics_stream_counters_rates_and_lcore_load() {
    let e = Engine::start();
    let c = connect(&e);
    let sdk = client(&e);
    let json = group("m", &[]);
    let rx = sdk.create_rx(&json).unwrap();
    let tx = sdk.create_tx(&json).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let pump = std::thread::spawn(move || {
        let mut i = 0u32;
        // Bounded: at most 2000 frames, stopped by the test earlier.
        while i < 2000 && !flag.load(std::sync::atomic::Ordering::Relaxed) {
            send(&tx, &pattern(i, SMALL));
            let _ = rx.get_timeout(peer::T).unwrap();
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        i
    });
    let mut stream = c
        .engine
        .watch_metrics(&pb::WatchMetricsRequest {
            interval_ms: 100,
            ..Default::default()
        })
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..4 {
        samples.push(futures::executor::block_on(stream.next()).unwrap().unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = pump.join().unwrap();
    assert!(sent > 0);
    assert_eq!(samples[0].elapsed_s, 0.0, "the first sample has no rates");
    for s in &samples[1..] {
        assert!(s.elapsed_s > 0.0, "{s:?}");
        assert_eq!(s.lcores.len(), 1);
        assert_eq!(s.lcores[0].cpu, 1);
        assert!((0.0..=1.0).contains(&s.lcores[0].busy_ratio), "{s:?}");
        assert!(s.lcores[0].iterations_per_s > 0.0, "{s:?}");
        let kinds: Vec<&str> = s.flows.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["sdk rx", "sdk tx"], "{s:?}");
    }
    for w in samples.windows(2) {
        for (a, b) in w[0].flows.iter().zip(&w[1].flows) {
            assert!(
                b.counters.frames >= a.counters.frames,
                "counters never go back"
            );
            let delta = (b.counters.frames - a.counters.frames) as f64;
            let rate = b.frames_per_s * w[1].elapsed_s;
            assert!(
                (delta - rate).abs() < 1e-6 * delta.max(1.0),
                "{delta} vs {rate}"
            );
        }
    }
    let moved: u64 = samples
        .last()
        .unwrap()
        .flows
        .iter()
        .map(|f| f.counters.frames)
        .sum();
    assert!(moved > 0, "{samples:?}");
    drop(stream);
}
