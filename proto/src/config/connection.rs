//! The connection JSON of `mesh_create_tx_connection` and `mesh_create_rx_connection`.
//!
//! Top-level fields (the `connection`, `options` and `payload` sections are described in
//! [`transport`](super::transport) and [`payload`]):
//!
//! | field | default | allowed |
//! |---|---|---|
//! | `bufferQueueCapacity` | 16 | a power of two in `2..=128` |
//! | `maxPayloadSize` | 0 (computed) | `0..=`[`MAX_PAYLOAD_SIZE`] |
//! | `maxMetadataSize` | 0 | `0..=`[`MAX_METADATA_SIZE`] |
//! | `connCreationDelayMilliseconds` | 0 | `0..=`[`MAX_CREATION_DELAY_MS`]; tx only |
//!
//! An rx config may set `connCreationDelayMilliseconds`: it is checked like a tx one, then ignored.
//!
//! Rules across sections, with the class of their error:
//!
//! - A blob payload needs `connection.multipointGroup` (else `CONN_CONFIG_INCOMPAT`) and a non-zero
//!   `maxPayloadSize` (else `CONN_CONFIG_INVAL`), as in MCM.
//! - `st2110-20` and `st2110-22` carry a video payload, `st2110-30` an audio one and
//!   `st2110-40` an ancillary one (else `CONN_CONFIG_INCOMPAT`; MCM does not check this).
//! - A non-zero `maxPayloadSize` below the video frame or audio packet size is
//!   `CONN_CONFIG_INCOMPAT`; a larger one is kept, and becomes the buffers' payload size.
//! - `st2110-22` and `st2110-40` buffers hold data of varying length (a JPEG XS codestream, a
//!   frame's ANC packets): any non-zero `maxPayloadSize` is their bound; 0 means the
//!   uncompressed frame size (-22) or [`ANC_FRAME_BYTES`](super::payload::ANC_FRAME_BYTES) (-40).

use std::time::Duration;

use super::json::{self, Obj};
use super::payload::{self, Payload};
use super::transport::{
    Connection, Edge, RdmaOptions, St2110, parse_connection, parse_rdma_options,
};
use super::{ConfigError, MeshErr};
use crate::shm::pool;

/// Default `bufferQueueCapacity`.
pub const DEFAULT_QUEUE_CAPACITY: u32 = 16;
/// Smallest `bufferQueueCapacity`.
pub const MIN_QUEUE_CAPACITY: u32 = 2;
/// Largest `bufferQueueCapacity`.
pub const MAX_QUEUE_CAPACITY: u32 = 128;
/// Largest payload of one buffer, in bytes: a shared-memory slot's payload capacity (256 MiB).
pub const MAX_PAYLOAD_SIZE: u32 = pool::MAX_PAYLOAD_CAPACITY;
/// Largest `maxMetadataSize`, in bytes: a shared-memory slot's metadata capacity (1 MiB).
pub const MAX_METADATA_SIZE: u32 = pool::MAX_METADATA_CAPACITY;
/// Largest `connCreationDelayMilliseconds`: one minute.
pub const MAX_CREATION_DELAY_MS: u64 = 60_000;

const CLASS: MeshErr = MeshErr::ConnConfigInval;
const INCOMPAT: MeshErr = MeshErr::ConnConfigIncompat;

/// Which way a connection's buffers flow, as seen by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The application sends (`mesh_create_tx_connection`): a source of its group.
    Tx,
    /// The application receives (`mesh_create_rx_connection`): a sink of its group.
    Rx,
}

/// A validated connection configuration. Built only by [`ConnectionConfig::from_json`], so every
/// field is within its bounds and the sections fit together.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    direction: Direction,
    buffer_queue_capacity: u32,
    max_payload_size: u32,
    max_metadata_size: u32,
    conn_creation_delay: Duration,
    connection: Connection,
    rdma_options: RdmaOptions,
    payload: Payload,
    payload_size: u32,
}

impl ConnectionConfig {
    /// Parses and validates the JSON given to `mesh_create_{tx,rx}_connection`.
    pub fn from_json(json: &str, dir: Direction) -> Result<Self, ConfigError> {
        let value = json::parse(json, CLASS)?;
        let root = Obj::root(&value, CLASS)?;
        let mut config = Self {
            direction: dir,
            buffer_queue_capacity: queue_capacity(&root)?,
            max_payload_size: root.uint("maxPayloadSize", 0..=MAX_PAYLOAD_SIZE, 0)?,
            max_metadata_size: root.uint("maxMetadataSize", 0..=MAX_METADATA_SIZE, 0)?,
            conn_creation_delay: creation_delay(&root, dir)?,
            connection: parse_connection(&root)?,
            rdma_options: parse_rdma_options(&root)?,
            payload: payload::parse(root.obj("payload")?)?,
            payload_size: 0,
        };
        config.check_transport_fits_payload(&root)?;
        config.payload_size = config.resolve_payload_size(&root)?;
        Ok(config)
    }

    /// Whether the application sends or receives.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Buffers in the connection's queue: a power of two in `2..=128`.
    pub fn buffer_queue_capacity(&self) -> u32 {
        self.buffer_queue_capacity
    }

    /// `maxPayloadSize` as given; 0 means "computed from the payload".
    pub fn max_payload_size(&self) -> u32 {
        self.max_payload_size
    }

    /// Metadata bytes per buffer, `0..=`[`MAX_METADATA_SIZE`].
    pub fn max_metadata_size(&self) -> u32 {
        self.max_metadata_size
    }

    /// Wait before a tx connection is created; always zero for rx.
    pub fn conn_creation_delay(&self) -> Duration {
        self.conn_creation_delay
    }

    /// The `connection` section.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The `options.rdma` section (its defaults when absent).
    pub fn rdma_options(&self) -> &RdmaOptions {
        &self.rdma_options
    }

    /// The `payload` section.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Payload bytes per buffer: `maxPayloadSize` if non-zero, else the video frame or audio
    /// packet size. Always in `1..=`[`MAX_PAYLOAD_SIZE`].
    pub fn payload_size(&self) -> u32 {
        self.payload_size
    }

    /// The group the connection joins: the URN of a multipoint group, `"<ipAddr>:<port>"` of an
    /// ST 2110 stream (an IPv6 address in brackets). `None` for RDMA, whose config names no
    /// group: the engine must assign one or refuse the connection.
    pub fn group_urn(&self) -> Option<String> {
        match &self.connection {
            Connection::MultipointGroup(g) => Some(g.urn.clone()),
            Connection::St2110(s) => Some(s.group_urn()),
            Connection::Rdma(_) => None,
        }
    }

    /// The group the engine's registry files the connection under, and the network edges the
    /// connection brings to it: a multipoint group's URN and its `edges`; for an `st2110`
    /// connection `st2110-tx://<ipAddr>:<port>` or `st2110-rx://...` (so one engine can send and
    /// receive the same stream in two groups) with the session as its one edge. `None` for RDMA.
    pub fn mesh_group(&self) -> Option<(String, Vec<Edge>)> {
        match &self.connection {
            Connection::MultipointGroup(g) => Some((g.urn.clone(), g.edges.clone())),
            Connection::St2110(s) => {
                let dir = match self.direction {
                    Direction::Tx => "tx",
                    Direction::Rx => "rx",
                };
                let edge = Edge::St2110 {
                    direction: self.direction,
                    stream: s.clone(),
                };
                Some((format!("st2110-{dir}://{}", s.group_urn()), vec![edge]))
            }
            Connection::Rdma(_) => None,
        }
    }

    fn check_transport_fits_payload(&self, root: &Obj<'_>) -> Result<(), ConfigError> {
        let streams: Vec<(String, &St2110)> = match &self.connection {
            Connection::St2110(st) => vec![("connection.st2110.transport".to_owned(), st)],
            Connection::MultipointGroup(g) => g
                .edges
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    Edge::St2110 { stream, .. } => Some((
                        format!("connection.multipointGroup.edges[{i}].st2110.transport"),
                        stream,
                    )),
                    Edge::Rdma { .. } => None,
                })
                .collect(),
            Connection::Rdma(_) => return Ok(()),
        };
        if self.payload == Payload::Blob {
            if let Some((path, _)) = streams.first()
                && matches!(self.connection, Connection::MultipointGroup(_))
            {
                return Err(root.err_of(
                    INCOMPAT,
                    path,
                    "an ST 2110 edge carries video, audio or ancillary data, but the payload is \
                     blob",
                ));
            }
            return Ok(()); // refused with its own message by `blob_payload_size`
        }
        for (path, st) in streams {
            let wants = st.transport.payload_kind();
            if self.payload.as_str() != wants {
                return Err(root.err_of(
                    INCOMPAT,
                    &path,
                    format_args!(
                        "{:?} carries {wants}, but the payload is {}",
                        st.transport.as_str(),
                        self.payload.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn resolve_payload_size(&self, root: &Obj<'_>) -> Result<u32, ConfigError> {
        let max = self.max_payload_size;
        let Some(needed) = self.payload.computed_size() else {
            return self.blob_payload_size(root);
        };
        let needed =
            u32::try_from(needed).expect("payload::parse bounds sizes by MAX_PAYLOAD_SIZE");
        let sizes_vary = match &self.connection {
            Connection::St2110(s) => s.transport.sizes_vary(),
            Connection::MultipointGroup(g) => g.edges.iter().any(|e| match e {
                Edge::St2110 { stream, .. } => stream.transport.sizes_vary(),
                Edge::Rdma { .. } => false,
            }),
            Connection::Rdma(_) => false,
        };
        match max {
            0 => Ok(needed),
            _ if sizes_vary => Ok(max),
            _ if max < needed => Err(root.err_of(
                INCOMPAT,
                "maxPayloadSize",
                format_args!(
                    "{max} is less than the {needed} bytes one {} buffer needs, allowed 0 \
                     (computed) or {needed}..={MAX_PAYLOAD_SIZE}",
                    self.payload.as_str()
                ),
            )),
            _ => Ok(max),
        }
    }

    fn blob_payload_size(&self, root: &Obj<'_>) -> Result<u32, ConfigError> {
        if !matches!(self.connection, Connection::MultipointGroup(_)) {
            return Err(root.err_of(
                INCOMPAT,
                "payload",
                format_args!(
                    "a blob payload needs connection.multipointGroup, got connection.{}",
                    self.connection.as_str()
                ),
            ));
        }
        match self.max_payload_size {
            0 => Err(root.err(
                "maxPayloadSize",
                format_args!("a blob payload needs a size, allowed 1..={MAX_PAYLOAD_SIZE}"),
            )),
            max => Ok(max),
        }
    }
}

fn queue_capacity(root: &Obj<'_>) -> Result<u32, ConfigError> {
    let key = "bufferQueueCapacity";
    let n = root.uint(key, 0..=u64::MAX, u64::from(DEFAULT_QUEUE_CAPACITY))?;
    match u32::try_from(n) {
        Ok(n) if (MIN_QUEUE_CAPACITY..=MAX_QUEUE_CAPACITY).contains(&n) && n.is_power_of_two() => {
            Ok(n)
        }
        _ => Err(root.err(
            key,
            format_args!(
                "{n} is not allowed, expected a power of two in \
                 {MIN_QUEUE_CAPACITY}..={MAX_QUEUE_CAPACITY}"
            ),
        )),
    }
}

fn creation_delay(root: &Obj<'_>, dir: Direction) -> Result<Duration, ConfigError> {
    let ms = root.uint(
        "connCreationDelayMilliseconds",
        0..=MAX_CREATION_DELAY_MS,
        0,
    )?;
    Ok(match dir {
        Direction::Tx => Duration::from_millis(ms),
        Direction::Rx => Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::payload::{PixelFormat, Video};

    const GROUP: &str = r#"{"multipointGroup": {"urn": "g"}}"#;

    fn tx(v: Value) -> Result<ConnectionConfig, ConfigError> {
        ConnectionConfig::from_json(&v.to_string(), Direction::Tx)
    }

    /// A blob-over-group config with `extra` merged in at the top level.
    fn blob(extra: Value) -> Result<ConnectionConfig, ConfigError> {
        let mut v = json!({"connection": {"multipointGroup": {"urn": "g"}}, "maxPayloadSize": 64});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        tx(v)
    }

    fn video_1080p(extra: Value) -> Result<ConnectionConfig, ConfigError> {
        let mut v = json!({"connection": {"multipointGroup": {"urn": "g"}},
            "payload": {"video": {"width": 1920, "height": 1080}}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        tx(v)
    }

    fn err(r: Result<ConnectionConfig, ConfigError>, class: MeshErr) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.class, class, "{e}");
        e.message
    }

    #[test]
    fn defaults() {
        let c = video_1080p(json!({})).unwrap();
        assert_eq!(c.direction(), Direction::Tx);
        assert_eq!(c.buffer_queue_capacity(), 16);
        assert_eq!(c.max_payload_size(), 0);
        assert_eq!(c.max_metadata_size(), 0);
        assert_eq!(c.conn_creation_delay(), Duration::ZERO);
        assert_eq!(c.rdma_options(), &RdmaOptions::default());
        assert_eq!(c.payload_size(), 8_294_400);
        let json = format!(r#"{{"connection": {GROUP}, "payload": {{"video": {{}}}}}}"#);
        let c = ConnectionConfig::from_json(&json, Direction::Rx).unwrap();
        let want = Video {
            width: 640,
            height: 640,
            fps: 60.0,
            pixel_format: PixelFormat::Yuv422p10le,
        };
        assert_eq!(c.payload(), &Payload::Video(want));
        assert_eq!(c.payload_size(), 640 * 640 * 4);
        assert_eq!(c.direction(), Direction::Rx);
    }

    #[test]
    fn queue_capacity_powers_of_two_only() {
        for n in [2, 4, 8, 16, 32, 64, 128] {
            let c = blob(json!({"bufferQueueCapacity": n})).unwrap();
            assert_eq!(c.buffer_queue_capacity(), n);
        }
        for n in [0u64, 1, 3, 24, 127, 129, 256, 1 << 32, u64::MAX] {
            assert_eq!(
                err(blob(json!({"bufferQueueCapacity": n})), CLASS),
                format!(
                    "bufferQueueCapacity: {n} is not allowed, expected a power of two in 2..=128"
                )
            );
        }
    }

    #[test]
    fn max_payload_size_bounds() {
        let c = blob(json!({"maxPayloadSize": MAX_PAYLOAD_SIZE})).unwrap();
        assert_eq!(c.payload_size(), MAX_PAYLOAD_SIZE);
        assert_eq!(
            blob(json!({"maxPayloadSize": 1})).unwrap().payload_size(),
            1
        );
        assert_eq!(
            err(blob(json!({"maxPayloadSize": MAX_PAYLOAD_SIZE + 1})), CLASS),
            "maxPayloadSize: 268435457 is out of range, allowed 0..=268435456"
        );
    }

    #[test]
    fn max_metadata_size_bounds() {
        let c = blob(json!({"maxMetadataSize": MAX_METADATA_SIZE})).unwrap();
        assert_eq!(c.max_metadata_size(), 1 << 20);
        assert_eq!(
            err(
                blob(json!({"maxMetadataSize": MAX_METADATA_SIZE + 1})),
                CLASS
            ),
            "maxMetadataSize: 1048577 is out of range, allowed 0..=1048576"
        );
    }

    #[test]
    fn creation_delay_is_tx_only() {
        let c = blob(json!({"connCreationDelayMilliseconds": MAX_CREATION_DELAY_MS})).unwrap();
        assert_eq!(c.conn_creation_delay(), Duration::from_secs(60));
        let json = format!(
            r#"{{"connection": {GROUP}, "maxPayloadSize": 8, "connCreationDelayMilliseconds": 500}}"#
        );
        let rx = ConnectionConfig::from_json(&json, Direction::Rx).unwrap();
        assert_eq!(rx.conn_creation_delay(), Duration::ZERO);
        assert_eq!(
            err(blob(json!({"connCreationDelayMilliseconds": 60001})), CLASS),
            "connCreationDelayMilliseconds: 60001 is out of range, allowed 0..=60000"
        );
    }

    #[test]
    fn top_level_wrong_types() {
        let cases = [
            (
                json!({"bufferQueueCapacity": "16"}),
                "bufferQueueCapacity: expected an unsigned integer, got string \"16\"",
            ),
            (
                json!({"maxPayloadSize": 1.0}),
                "maxPayloadSize: expected an unsigned integer, got number 1.0",
            ),
            (
                json!({"maxMetadataSize": -8}),
                "maxMetadataSize: expected an unsigned integer, got integer -8",
            ),
            (
                json!({"connCreationDelayMilliseconds": [5]}),
                "connCreationDelayMilliseconds: expected an unsigned integer, got an array",
            ),
            (
                json!({"connection": "g"}),
                "connection: expected an object, got string \"g\"",
            ),
            (
                json!({"payload": true}),
                "payload: expected an object, got boolean true",
            ),
            (
                json!({"options": "rdma"}),
                "options: expected an object, got string \"rdma\"",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(err(blob(extra), CLASS), want);
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let c = blob(json!({"name": "x", "future": {"a": [1]}, "options": {"engine": "e"}}));
        assert_eq!(c.unwrap().payload(), &Payload::Blob);
    }

    #[test]
    fn connection_is_required() {
        assert_eq!(
            err(tx(json!({"maxPayloadSize": 8})), CLASS),
            "connection: exactly one of multipointGroup/st2110/rdma is required, got none"
        );
        assert_eq!(
            err(
                tx(json!({"maxPayloadSize": 8, "connection": {
                    "multipointGroup": {"urn": "g"}, "st2110": {}}})),
                CLASS
            ),
            "connection: exactly one of multipointGroup/st2110/rdma is required, \
             got \"multipointGroup\", \"st2110\""
        );
    }

    #[test]
    fn blob_rules() {
        assert_eq!(blob(json!({})).unwrap().payload_size(), 64);
        assert_eq!(
            blob(json!({"payload": {"blob": {}}}))
                .unwrap()
                .payload_size(),
            64
        );
        assert_eq!(
            err(blob(json!({"maxPayloadSize": 0})), CLASS),
            "maxPayloadSize: a blob payload needs a size, allowed 1..=268435456"
        );
        let st = json!({"st2110": {"ipAddr": "10.0.0.1", "port": 5000}});
        assert_eq!(
            err(blob(json!({"connection": st})), INCOMPAT),
            "payload: a blob payload needs connection.multipointGroup, got connection.st2110"
        );
        assert_eq!(
            err(
                blob(json!({"connection": {"rdma": {}}, "maxPayloadSize": 0})),
                INCOMPAT
            ),
            "payload: a blob payload needs connection.multipointGroup, got connection.rdma"
        );
    }

    #[test]
    fn explicit_payload_size_must_hold_a_frame() {
        let c = video_1080p(json!({"maxPayloadSize": 8_294_400})).unwrap();
        assert_eq!(c.payload_size(), 8_294_400);
        let c = video_1080p(json!({"maxPayloadSize": 9_000_000})).unwrap();
        assert_eq!(c.payload_size(), 9_000_000);
        assert_eq!(
            err(video_1080p(json!({"maxPayloadSize": 8_294_399})), INCOMPAT),
            "maxPayloadSize: 8294399 is less than the 8294400 bytes one video buffer needs, \
             allowed 0 (computed) or 8294400..=268435456"
        );
        let audio = json!({"audio": {}});
        assert_eq!(
            blob(json!({"payload": audio, "maxPayloadSize": 0}))
                .unwrap()
                .payload_size(),
            288
        );
        assert_eq!(
            err(
                blob(json!({"payload": audio, "maxPayloadSize": 287})),
                INCOMPAT
            ),
            "maxPayloadSize: 287 is less than the 288 bytes one audio buffer needs, \
             allowed 0 (computed) or 288..=268435456"
        );
    }

    #[test]
    fn st2110_transport_must_fit_payload() {
        let conn = |transport: &str| json!({"st2110": {"transport": transport, "ipAddr": "239.0.0.1", "port": 5004}});
        let video = json!({"video": {}});
        let audio = json!({"audio": {}});
        for t in ["st2110-20", "st2110-22"] {
            assert!(
                tx(json!({"connection": conn(t), "payload": video})).is_ok(),
                "{t}"
            );
            assert_eq!(
                err(
                    tx(json!({"connection": conn(t), "payload": audio})),
                    INCOMPAT
                ),
                format!(
                    "connection.st2110.transport: \"{t}\" carries video, but the payload is audio"
                )
            );
        }
        assert!(tx(json!({"connection": conn("st2110-30"), "payload": audio})).is_ok());
        assert_eq!(
            err(
                tx(json!({"connection": conn("st2110-30"), "payload": video})),
                INCOMPAT
            ),
            "connection.st2110.transport: \"st2110-30\" carries audio, but the payload is video"
        );
        let anc = json!({"ancillary": {"fps": 50}});
        assert!(tx(json!({"connection": conn("st2110-40"), "payload": anc})).is_ok());
        assert_eq!(
            err(
                tx(json!({"connection": conn("st2110-40"), "payload": video})),
                INCOMPAT
            ),
            "connection.st2110.transport: \"st2110-40\" carries ancillary, but the payload is \
             video"
        );
    }

    #[test]
    fn varying_sizes_take_max_payload_size_as_a_bound() {
        let conn =
            |t: &str| json!({"st2110": {"transport": t, "ipAddr": "239.0.0.1", "port": 5004}});
        let video = json!({"video": {"width": 1920, "height": 1080}});
        // st2110-22: the uncompressed frame by default, any non-zero bound below it.
        let c = tx(json!({"connection": conn("st2110-22"), "payload": video})).unwrap();
        assert_eq!(c.payload_size(), 1920 * 1080 * 4);
        let c =
            tx(json!({"connection": conn("st2110-22"), "payload": video, "maxPayloadSize": 1000}));
        assert_eq!(c.unwrap().payload_size(), 1000);
        // st2110-20 still needs the whole frame.
        let e =
            tx(json!({"connection": conn("st2110-20"), "payload": video, "maxPayloadSize": 1000}));
        assert!(err(e, INCOMPAT).contains("is less than"));
        // st2110-40: the largest RFC 8331 frame by default, any non-zero bound.
        let anc = json!({"ancillary": {}});
        let c = tx(json!({"connection": conn("st2110-40"), "payload": anc})).unwrap();
        assert_eq!(c.payload_size(), crate::config::payload::ANC_FRAME_BYTES);
        let c = tx(json!({"connection": conn("st2110-40"), "payload": anc, "maxPayloadSize": 64}));
        assert_eq!(c.unwrap().payload_size(), 64);
        let bad = json!({"ancillary": {"fps": 0}});
        let e = tx(json!({"connection": conn("st2110-40"), "payload": bad}));
        assert_eq!(
            err(e, CLASS),
            "payload.ancillary.fps: 0 is not allowed, expected a finite number above 0"
        );
    }

    #[test]
    fn group_urns() {
        assert_eq!(blob(json!({})).unwrap().group_urn().as_deref(), Some("g"));
        let v4 = json!({"st2110": {"ipAddr": "192.168.1.5", "port": 9002}});
        let c = video_1080p(json!({"connection": v4})).unwrap();
        assert_eq!(c.group_urn().as_deref(), Some("192.168.1.5:9002"));
        let v6 = json!({"st2110": {"ipAddr": "ff0e::1234", "port": 9002}});
        let c = video_1080p(json!({"connection": v6})).unwrap();
        assert_eq!(c.group_urn().as_deref(), Some("[ff0e::1234]:9002"));
        let rdma = video_1080p(json!({"connection": {"rdma": {}}})).unwrap();
        assert_eq!(rdma.group_urn(), None);
    }

    #[test]
    fn malformed_json() {
        let e = ConnectionConfig::from_json("{\"connection\": {\n\"x\" 1}}", Direction::Tx);
        assert_eq!(
            err(e, CLASS),
            "malformed JSON: expected `:` at line 2 column 5"
        );
        assert_eq!(
            err(ConnectionConfig::from_json("", Direction::Rx), CLASS),
            "malformed JSON: EOF while parsing a value at line 1 column 0"
        );
        assert_eq!(
            err(ConnectionConfig::from_json("16", Direction::Rx), CLASS),
            "config: expected a JSON object, got integer 16"
        );
    }
}
