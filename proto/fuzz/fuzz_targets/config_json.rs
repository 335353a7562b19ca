//! Fuzzes the MCM JSON configurations the SDK and the engine read from clients: the connection
//! JSON (both directions), the client JSON (with no environment) and an edge's JSON. None may
//! panic; an edge that parses must survive its own `to_json` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcm_proto::config::transport::Edge;
use mcm_proto::config::{ClientConfig, ConnectionConfig, Direction};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for dir in [Direction::Tx, Direction::Rx] {
        if let Ok(c) = ConnectionConfig::from_json(&text, dir) {
            let _ = c.mesh_group();
            let _ = c.payload_size();
        }
    }
    let _ = ClientConfig::from_json_with_env(Some(&text), |_| None);
    if let Ok(e) = Edge::from_json(&text) {
        let again = Edge::from_json(&e.to_json()).expect("an edge's own JSON parses");
        assert_eq!(again, e);
    }
});
