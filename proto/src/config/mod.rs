//! MCM's client and connection JSON, parsed and validated.
//!
//! - [`ClientConfig`]: the JSON of `mesh_create_client` ([`client`]).
//! - [`ConnectionConfig`]: the JSON of `mesh_create_{tx,rx}_connection` ([`connection`]), with
//!   its `connection` section ([`transport`]) and `payload` section ([`payload`]).
//! - [`MeshErr`]: MCM's numbered error codes; [`ConfigError`]: a refusal, classed by one of them.
//!
//! Both parsers walk a [`serde_json::Value`], so they ignore unknown fields (as MCM does, for
//! compatibility) yet name the dotted path of a field of the wrong type or value, the value
//! found and what is allowed, e.g. `payload.video.width: expected an unsigned integer, got
//! string "640"`. A field set to `null` counts as absent. Malformed JSON is refused with
//! serde_json's line and column.

pub mod client;
pub mod connection;
mod error;
mod json;
pub mod payload;
pub mod transport;

pub use client::ClientConfig;
pub use connection::{ConnectionConfig, Direction, MAX_METADATA_SIZE, MAX_PAYLOAD_SIZE};
pub use error::{ConfigError, MeshErr};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    /// Every key either parser reads, and a few it does not.
    const KEYS: &[&str] = &[
        "apiVersion",
        "apiConnectionString",
        "apiDefaultTimeoutMicroseconds",
        "maxMediaConnections",
        "bufferQueueCapacity",
        "maxPayloadSize",
        "maxMetadataSize",
        "connCreationDelayMilliseconds",
        "connection",
        "multipointGroup",
        "urn",
        "st2110",
        "transport",
        "ipAddr",
        "port",
        "multicastSourceIpAddr",
        "pacing",
        "payloadType",
        "transportPixelFormat",
        "rdma",
        "connectionMode",
        "maxLatencyNanoseconds",
        "options",
        "provider",
        "num_endpoints",
        "numEndpoints",
        "payload",
        "video",
        "width",
        "height",
        "fps",
        "pixelFormat",
        "audio",
        "channels",
        "sampleRate",
        "format",
        "packetTime",
        "blob",
        "name",
        "",
    ];

    /// Valid and nearly valid string values.
    const STRINGS: &[&str] = &[
        "v1",
        "Server=10.0.0.1; Port=9000",
        "Port=0",
        "st2110-20",
        "st2110-30",
        "239.0.0.1",
        "::1",
        "RC",
        "tcp",
        "verbs",
        "yuv422p10le",
        "v210",
        "yuv422p10rfc4175",
        "pcm_s8",
        "1ms",
        "0.09ms",
        "g",
        "",
    ];

    /// Valid configurations, one of each connection and payload kind.
    const BASES: &[&str] = &[
        r#"{"maxPayloadSize": 64, "connection": {"multipointGroup": {"urn": "g"}},
            "payload": {"blob": {}}, "apiConnectionString": "Port=1"}"#,
        r#"{"connection": {"st2110": {"transport": "st2110-20", "ipAddr": "::1", "port": 1,
            "payloadType": 1}}, "payload": {"video": {"width": 1920, "height": 1080,
            "fps": 50, "pixelFormat": "v210"}}}"#,
        r#"{"connection": {"st2110": {"transport": "st2110-30", "ipAddr": "239.0.0.1",
            "port": 9}}, "payload": {"audio": {"channels": 8, "sampleRate": 44100,
            "format": "pcm_s16be", "packetTime": "0.14ms"}}}"#,
        r#"{"connection": {"rdma": {"connectionMode": "RC", "maxLatencyNanoseconds": 5}},
            "options": {"rdma": {"provider": "verbs", "numEndpoints": 2}},
            "payload": {"video": {}}, "maxMetadataSize": 8}"#,
    ];

    /// JSON pointers into [`BASES`] (those a base lacks are skipped).
    const PATHS: &[&str] = &[
        "",
        "/maxPayloadSize",
        "/maxMetadataSize",
        "/apiConnectionString",
        "/connection",
        "/connection/multipointGroup/urn",
        "/connection/st2110",
        "/connection/st2110/transport",
        "/connection/st2110/ipAddr",
        "/connection/st2110/port",
        "/connection/st2110/payloadType",
        "/connection/rdma/maxLatencyNanoseconds",
        "/options/rdma/numEndpoints",
        "/payload",
        "/payload/video/width",
        "/payload/video/height",
        "/payload/video/fps",
        "/payload/video/pixelFormat",
        "/payload/audio/channels",
        "/payload/audio/sampleRate",
        "/payload/audio/packetTime",
        "/payload/audio/format",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0u64..200).prop_map(Value::from),
            prop::sample::select(&[1080u64, 1920, 44_100, 48_000, 96_000, 1 << 28][..])
                .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            prop::sample::select(STRINGS).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                    let map: Map<_, _> = kv.into_iter().map(|(k, v)| (k.into(), v)).collect();
                    Value::Object(map)
                }),
            ]
        })
    }

    fn check_both(text: &str) {
        for dir in [Direction::Tx, Direction::Rx] {
            match ConnectionConfig::from_json(text, dir) {
                Ok(c) => {
                    assert!((1..=MAX_PAYLOAD_SIZE).contains(&c.payload_size()));
                    assert!(c.buffer_queue_capacity().is_power_of_two());
                }
                Err(e) => assert!(
                    matches!(
                        e.class,
                        MeshErr::ConnConfigInval | MeshErr::ConnConfigIncompat
                    ),
                    "{e:?}"
                ),
            }
        }
        if let Err(e) = ClientConfig::from_json_with_env(Some(text), |_| None) {
            assert_eq!(e.class, MeshErr::ClientConfigInval);
        }
    }

    proptest! {
        #[test]
        fn json_trees_never_panic(v in value(), cut in any::<prop::sample::Index>()) {
            let text = v.to_string();
            check_both(&text);
            // A truncated document: malformed JSON at every possible place.
            let mut end = cut.index(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            check_both(&text[..end]);
        }

        #[test]
        fn mutated_valid_configs_never_panic(
            base in prop::sample::select(BASES),
            path in prop::sample::select(PATHS),
            v in leaf(),
        ) {
            let mut config: Value = serde_json::from_str(base).unwrap();
            if let Some(slot) = config.pointer_mut(path) {
                *slot = v;
            }
            check_both(&config.to_string());
        }

        #[test]
        fn json_ish_strings_never_panic(s in "[\\[\\]{}\":,0-9a-zA-Z .eE+\\-\\\\]{0,96}") {
            check_both(&s);
        }

        #[test]
        fn any_text_never_panics(s in "\\PC{0,64}") {
            check_both(&s);
        }
    }

    #[test]
    fn mutation_bases_are_valid() {
        for base in BASES {
            let c = ConnectionConfig::from_json(base, Direction::Tx);
            assert!(c.is_ok(), "{base}: {c:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        check_both(&deep);
        let deep_obj = "{\"connection\":".repeat(10_000);
        check_both(&deep_obj);
    }

    #[test]
    fn mcm_documented_example_parses() {
        let json = r#"{
            "bufferQueueCapacity": 16, "maxPayloadSize": 2097152, "maxMetadataSize": 8192,
            "connection": {"st2110": {"transport": "st2110-20", "ipAddr": "192.168.95.2",
                "port": 9002, "pacing": "narrow", "payloadType": 112,
                "transportPixelFormat": "yuv422p10rfc4175"}},
            "payload": {"video": {"width": 640, "height": 360, "fps": 60.0,
                "pixelFormat": "yuv422p10le"}}
        }"#;
        let c = ConnectionConfig::from_json(json, Direction::Tx).unwrap();
        assert_eq!(c.payload_size(), 2_097_152);
        assert_eq!(c.max_metadata_size(), 8192);
        assert_eq!(c.group_urn().as_deref(), Some("192.168.95.2:9002"));
    }
}
