//! Source filtering of ST 2110 rx sessions, over loopback: a unicast rx on the engine's own
//! address accepts senders on that address only, so packets sent from another address (here
//! 127.0.0.2, a spoofer) are dropped and counted as `packets_foreign`; `"anySource": true`
//! accepts them on purpose.

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Engine;
use grpcio::{ChannelBuilder, EnvBuilder};
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::EngineClient;
use mcm_sdk::Timeout;
use peer::{audio_json, client, free_port, wait_udp_bound};

/// An RTP packet of 1 ms of 48 kHz stereo L24 (288 bytes), payload type 97.
fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 97];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 48).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..288).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// The rx edge counter `key` of group `urn`.
fn edge_counter(e: &EngineClient, urn: &str, key: &str) -> u64 {
    e.list_groups(&pb::ListGroupsRequest::default())
        .unwrap()
        .groups
        .iter()
        .filter(|g| g.urn == urn)
        .flat_map(|g| g.edges.iter())
        .map(|x| x.details.get(key).copied().unwrap_or(0))
        .sum()
}

fn wait_counter(e: &EngineClient, urn: &str, key: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = edge_counter(e, urn, key);
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} of {urn}: {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_unicast_rx_drops_and_counts_a_spoofed_source_unless_any_source_is_asked() {
    let e = Engine::start();
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let control = EngineClient::new(ChannelBuilder::new(env).connect(&e.grpc.to_string()));
    let c = client(&e);
    let spoofer = UdpSocket::bind("127.0.0.2:0").unwrap();
    let local = UdpSocket::bind("127.0.0.1:0").unwrap();

    // ipAddr is the engine's own address (st2110.local_ip 127.0.0.1): senders on it only.
    let port = free_port();
    let rx = c.create_rx(&audio_json(port, 2)).unwrap();
    wait_udp_bound(port);
    let urn = format!("st2110-rx://127.0.0.1:{port}");
    for seq in 0..10 {
        spoofer.send_to(&packet(seq), ("127.0.0.1", port)).unwrap();
    }
    wait_counter(&control, &urn, "packets_foreign", 10);
    assert_eq!(edge_counter(&control, &urn, "packets"), 0);
    assert!(
        rx.get_timeout(Timeout::After(Duration::from_millis(200)))
            .is_err(),
        "nothing from the spoofer is delivered"
    );
    for seq in 10..20 {
        local.send_to(&packet(seq), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_counter(&control, &urn, "packets", 10);
    assert!(
        rx.get_timeout(Timeout::After(Duration::from_secs(5)))
            .is_ok()
    );
    assert_eq!(edge_counter(&control, &urn, "packets_foreign"), 10);
    drop(rx);

    // "anySource": true takes every sender, on purpose.
    let port = free_port();
    let json = audio_json(port, 2).replace(
        "\"payloadType\": 97",
        "\"payloadType\": 97, \"anySource\": true",
    );
    assert!(json.contains("anySource"), "{json}");
    let rx = c.create_rx(&json).unwrap();
    wait_udp_bound(port);
    let urn = format!("st2110-rx://127.0.0.1:{port}");
    for seq in 0..10 {
        spoofer.send_to(&packet(seq), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_counter(&control, &urn, "packets", 10);
    assert_eq!(edge_counter(&control, &urn, "packets_foreign"), 0);
    assert!(
        rx.get_timeout(Timeout::After(Duration::from_secs(5)))
            .is_ok()
    );
}
