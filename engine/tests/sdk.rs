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
