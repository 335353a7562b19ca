//! The `connection` section of a connection JSON (which transport carries the group) and
//! `options.rdma`.
//!
//! `connection` holds exactly one of:
//!
//! - `multipointGroup`: `{ "urn", "edges" }`: `urn` is a non-empty string of at most
//!   [`MAX_URN_LEN`] bytes without control characters. `edges` (an mcm extension, at most
//!   [`MAX_EDGES`]) lists network ends the group gains while this connection lives: each is
//!   `{ "st2110": { ...the st2110 fields below..., "direction": "tx" | "rx" } }`, where `tx`
//!   sends the group's frames as an ST 2110 stream (a sink of the group) and `rx` receives one
//!   into it (the group's source); or `{ "rdma": { "direction", "peer", "port", "provider",
//!   "numEndpoints" } }`, a link to another engine: `tx` writes the group's frames to the engine
//!   listening at `peer` (`"ip:port"`, required), `rx` listens for one on `port` (absent: the
//!   next free port of the engine's RDMA range) and feeds the group; `provider` is `"tcp"`
//!   (default), `"shm"` (same host) or `"verbs"`; `numEndpoints` is `1..=`[`MAX_RDMA_ENDPOINTS`]
//!   (default 1).
//! - `st2110`: `{ "transport" ("st2110-20" default, "st2110-22", "st2110-30", "st2110-40" (an mcm
//!   extension: ST 2110-40 ancillary data)), "ipAddr" (required),
//!   "port" (required, 1..=65535), "multicastSourceIpAddr", "pacing", "payloadType" (0..=127,
//!   default 112), "transportPixelFormat" }`. `transportPixelFormat` is read for st2110-20 only
//!   (default `"yuv422p10rfc4175"`); for the others it is type-checked and ignored, as MCM does.
//!   An empty `multicastSourceIpAddr` or `pacing` counts as absent. `sdpFile` (an mcm extension)
//!   names an SDP file an rx session takes its stream description from (payload type, wire
//!   format, source filter); it must agree with `ipAddr`, `port` and the payload. `anySource`
//!   (an mcm extension, `true` or `false`, default `false`) lets an rx session accept packets
//!   from any sender; without it a unicast rx accepts only `ipAddr` (the sender; this engine's
//!   own address meaning senders on this host) and a multicast rx only its SSM or SDP source.
//!   `redundant` (an mcm extension) makes the stream ST 2022-7: `{ "ipAddr" (required),
//!   "port" (default: `port`), "multicastSourceIpAddr" }` is its second path (see
//!   [`Redundant`]).
//! - `rdma`: `{ "connectionMode" ("RC", the only mode), "maxLatencyNanoseconds" (default 0) }`.
//!
//! `options.rdma` is `{ "provider" ("tcp" default, "verbs"), "num_endpoints" or "numEndpoints"
//! (1..=[`MAX_RDMA_ENDPOINTS`], default 1) }`; it is read whatever the connection kind.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::connection::Direction;
use super::json::{Obj, list, quote};
use super::{ConfigError, MeshErr};

/// Longest multipoint group URN, in bytes.
pub const MAX_URN_LEN: usize = 256;
/// Default RTP payload type of an ST 2110 stream.
pub const DEFAULT_PAYLOAD_TYPE: u8 = 112;
/// Largest RTP payload type (7 bits).
pub const MAX_PAYLOAD_TYPE: u8 = 127;
/// Default `transportPixelFormat` of an st2110-20 stream.
pub const DEFAULT_TRANSPORT_PIXEL_FORMAT: &str = "yuv422p10rfc4175";
/// Most network edges one connection may name in `multipointGroup.edges`.
pub const MAX_EDGES: usize = 8;
/// Most RDMA endpoints.
pub const MAX_RDMA_ENDPOINTS: u8 = 8;

const CLASS: MeshErr = MeshErr::ConnConfigInval;
const KINDS: [&str; 3] = ["multipointGroup", "st2110", "rdma"];

/// Which transport carries a connection's group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Connection {
    /// A group inside the mesh, named by a URN.
    MultipointGroup(MultipointGroup),
    /// An ST 2110 stream the engine sends or receives on the network.
    St2110(St2110),
    /// An RDMA link.
    Rdma(Rdma),
}

impl Connection {
    /// The section's key: `"multipointGroup"`, `"st2110"` or `"rdma"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::MultipointGroup(_) => "multipointGroup",
            Self::St2110(_) => "st2110",
            Self::Rdma(_) => "rdma",
        }
    }
}

/// `connection.multipointGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultipointGroup {
    /// The group id: non-empty, at most [`MAX_URN_LEN`] bytes, no control characters.
    pub urn: String,
    /// Network ends the group gains while the connection lives (`edges`, an mcm extension).
    pub edges: Vec<Edge>,
}

/// A network end of a group, as a connection names it (`multipointGroup.edges[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Edge {
    /// An ST 2110 session.
    St2110 {
        /// `Tx`: the engine sends the group's frames (a sink of the group). `Rx`: it receives
        /// the stream into the group (the group's source).
        direction: Direction,
        /// The stream.
        stream: St2110,
    },
    /// An RDMA link to another engine.
    Rdma {
        /// `Tx`: the engine writes the group's frames to the peer (a sink of the group). `Rx`:
        /// it takes a peer's frames into the group (the group's source).
        direction: Direction,
        /// The link.
        link: RdmaLink,
    },
}

/// `multipointGroup.edges[i].rdma`: one end of an RDMA link between two engines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RdmaLink {
    /// Tx: the receiving engine's link address (`peer`). `None` for rx.
    pub peer: Option<SocketAddr>,
    /// Rx: the port to listen on (`port`); `None`: the next free one of the engine's range.
    pub port: Option<u16>,
    /// libfabric provider (`provider`).
    pub provider: RdmaProvider,
    /// Endpoints the frames are striped over (`numEndpoints`), `1..=`[`MAX_RDMA_ENDPOINTS`].
    pub endpoints: u8,
}

impl Edge {
    /// Parses one edge on its own, written as an entry of `multipointGroup.edges` is (the
    /// control plane's CreateEdge): `{ "st2110": {...} }` or `{ "rdma": {...} }`.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let value = super::json::parse(json, CLASS)?;
        let root = Obj::root(&value, CLASS)?;
        parse_edge(&root)
    }

    /// Refuses an edge that cannot carry `payload` (an ST 2110 edge of another media kind than
    /// the group's), as a connection JSON naming it would be refused.
    pub fn check_payload(&self, payload: &super::payload::Payload) -> Result<(), ConfigError> {
        let Self::St2110 { stream, .. } = self else {
            return Ok(());
        };
        let wants = stream.transport.payload_kind();
        if payload.as_str() == wants {
            return Ok(());
        }
        Err(ConfigError::new(
            MeshErr::ConnConfigIncompat,
            format!(
                "st2110.transport: {:?} carries {wants}, but the group's payload is {}",
                stream.transport.as_str(),
                payload.as_str()
            ),
        ))
    }

    /// The edge as JSON that [`from_json`](Self::from_json) reads back to the same edge
    /// (defaults written out, absent options left out).
    pub fn to_json(&self) -> String {
        use serde_json::{Map, Value, json};
        let dir = match self.direction() {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        };
        let mut body = Map::new();
        body.insert("direction".into(), json!(dir));
        let mut opt = |key: &str, v: Option<String>| {
            if let Some(v) = v {
                body.insert(key.into(), Value::String(v));
            }
        };
        match self {
            Self::St2110 { stream: s, .. } => {
                opt(
                    "multicastSourceIpAddr",
                    s.multicast_source_ip_addr.map(|a| a.to_string()),
                );
                opt("pacing", s.pacing.clone());
                opt("transportPixelFormat", s.transport_pixel_format.clone());
                opt("sdpFile", s.sdp_file.clone());
                if s.any_source {
                    body.insert("anySource".into(), json!(true));
                }
                if let Some(r) = &s.redundant {
                    let mut leg = Map::new();
                    leg.insert("ipAddr".into(), json!(r.ip_addr.to_string()));
                    leg.insert("port".into(), json!(r.port));
                    if let Some(src) = r.multicast_source_ip_addr {
                        leg.insert("multicastSourceIpAddr".into(), json!(src.to_string()));
                    }
                    body.insert("redundant".into(), Value::Object(leg));
                }
                body.insert("transport".into(), json!(s.transport.as_str()));
                body.insert("ipAddr".into(), json!(s.ip_addr.to_string()));
                body.insert("port".into(), json!(s.port));
                body.insert("payloadType".into(), json!(s.payload_type));
            }
            Self::Rdma { link, .. } => {
                opt("peer", link.peer.map(|a| a.to_string()));
                if let Some(port) = link.port {
                    body.insert("port".into(), json!(port));
                }
                body.insert("provider".into(), json!(link.provider.as_str()));
                body.insert("numEndpoints".into(), json!(link.endpoints));
            }
        }
        let mut root = Map::new();
        root.insert(self.as_str().into(), Value::Object(body));
        Value::Object(root).to_string()
    }

    /// The transport's key in the JSON (`"st2110"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::St2110 { .. } => "st2110",
            Self::Rdma { .. } => "rdma",
        }
    }

    /// `Tx`: the edge takes the group's frames out (a sink). `Rx`: it brings frames in (the
    /// group's source).
    pub const fn direction(&self) -> Direction {
        match self {
            Self::St2110 { direction, .. } | Self::Rdma { direction, .. } => *direction,
        }
    }
}

/// `connection.st2110`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct St2110 {
    /// Which ST 2110 part the stream follows.
    pub transport: Transport,
    /// Destination (tx) or listening (rx) address; unicast or multicast.
    pub ip_addr: IpAddr,
    /// UDP port, never 0.
    pub port: u16,
    /// Source address for source-specific multicast.
    pub multicast_source_ip_addr: Option<IpAddr>,
    /// Pacing name passed to the ST 2110 stack as given (e.g. `"narrow"`).
    pub pacing: Option<String>,
    /// RTP payload type, `0..=`[`MAX_PAYLOAD_TYPE`].
    pub payload_type: u8,
    /// Pixel format on the wire; `Some` for st2110-20 only.
    pub transport_pixel_format: Option<String>,
    /// An SDP file describing the stream (rx; an mcm extension).
    pub sdp_file: Option<String>,
    /// rx: accept packets from any sender (an mcm extension, `"anySource": true`). Without it
    /// a unicast rx accepts only `ipAddr` (the sender; this engine's own address means a
    /// sender on this host), and a multicast rx only `multicastSourceIpAddr` or the SDP's
    /// source filter when given.
    pub any_source: bool,
    /// ST 2022-7 (an mcm extension, `"redundant"`): the stream's second path. A tx session
    /// sends every packet on both; an rx session receives both and merges them.
    pub redundant: Option<Redundant>,
}

/// `connection.st2110.redundant`: the second path of an ST 2022-7 stream, `{ "ipAddr"
/// (required), "port" (default: the first path's), "multicastSourceIpAddr" }`. It goes out
/// of (or arrives on) the engine's `st2110.redundant_interface` when one is configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redundant {
    /// Destination (tx) or listening (rx) address of the second path.
    pub ip_addr: IpAddr,
    /// Its UDP port.
    pub port: u16,
    /// rx: the sender's address on the second path (source-specific multicast, or the only
    /// unicast sender accepted).
    pub multicast_source_ip_addr: Option<IpAddr>,
}

impl St2110 {
    /// The group the stream feeds or drains: `"<ipAddr>:<port>"`, an IPv6 address in brackets.
    pub fn group_urn(&self) -> String {
        SocketAddr::new(self.ip_addr, self.port).to_string()
    }
}

/// The ST 2110 part a stream follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `st2110-20`: uncompressed video.
    St2110_20,
    /// `st2110-22`: compressed video.
    St2110_22,
    /// `st2110-30`: PCM audio.
    St2110_30,
    /// `st2110-40`: ancillary data (an mcm extension; MCM has no such transport).
    St2110_40,
}

impl Transport {
    /// Every transport with its JSON spelling.
    pub const ALL: [(&'static str, Transport); 4] = [
        ("st2110-20", Self::St2110_20),
        ("st2110-22", Self::St2110_22),
        ("st2110-30", Self::St2110_30),
        ("st2110-40", Self::St2110_40),
    ];

    /// The JSON spelling, e.g. `"st2110-20"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::St2110_20 => "st2110-20",
            Self::St2110_22 => "st2110-22",
            Self::St2110_30 => "st2110-30",
            Self::St2110_40 => "st2110-40",
        }
    }

    /// The payload section the transport carries: `"video"`, `"audio"` or `"ancillary"`.
    pub const fn payload_kind(self) -> &'static str {
        match self {
            Self::St2110_20 | Self::St2110_22 => "video",
            Self::St2110_30 => "audio",
            Self::St2110_40 => "ancillary",
        }
    }

    /// Whether `maxPayloadSize` only bounds a buffer (a codestream or ANC data of varying size)
    /// rather than having to hold a computed frame: st2110-22 and st2110-40.
    pub const fn sizes_vary(self) -> bool {
        matches!(self, Self::St2110_22 | Self::St2110_40)
    }

    /// Whether the transport carries audio (st2110-30) rather than video.
    pub const fn is_audio(self) -> bool {
        matches!(self, Self::St2110_30)
    }
}

/// `connection.rdma`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rdma {
    /// Queue-pair mode.
    pub connection_mode: RdmaMode,
    /// Latency bound the link is asked to keep (`maxLatencyNanoseconds`); zero means none.
    pub max_latency: Duration,
}

/// RDMA queue-pair mode. MCM documents UC, UD and RD too; only RC is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdmaMode {
    /// Reliable connected.
    Rc,
}

/// `options.rdma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RdmaOptions {
    /// libfabric provider.
    pub provider: RdmaProvider,
    /// Endpoints (parallel streams) per link, `1..=`[`MAX_RDMA_ENDPOINTS`].
    pub num_endpoints: u8,
}

impl Default for RdmaOptions {
    fn default() -> Self {
        Self {
            provider: RdmaProvider::Tcp,
            num_endpoints: 1,
        }
    }
}

/// libfabric provider of an RDMA link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdmaProvider {
    /// `tcp`: RDMA emulated over TCP sockets (the default).
    Tcp,
    /// `verbs`: RDMA hardware.
    Verbs,
    /// `shm`: shared memory between processes of one host (an mcm extension).
    Shm,
}

impl RdmaProvider {
    /// The name in the JSON and in libfabric (`"tcp"`, `"verbs"`, `"shm"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Verbs => "verbs",
            Self::Shm => "shm",
        }
    }

    /// Every provider, with its name.
    pub const ALL: [(&'static str, Self); 3] = [
        ("tcp", Self::Tcp),
        ("verbs", Self::Verbs),
        ("shm", Self::Shm),
    ];
}

/// Reads the required `connection` section.
pub(super) fn parse_connection(root: &Obj<'_>) -> Result<Connection, ConfigError> {
    let Some(section) = root.obj("connection")? else {
        return Err(root.err("connection", one_kind_required("none")));
    };
    let given: Vec<_> = KINDS.into_iter().filter(|k| section.has(k)).collect();
    let [kind] = given[..] else {
        let got = if given.is_empty() {
            "none".into()
        } else {
            list(given.into_iter())
        };
        return Err(section.err_here(CLASS, one_kind_required(&got)));
    };
    let body = section.obj(kind)?.expect("has() said it is set");
    match kind {
        "multipointGroup" => parse_group(&body).map(Connection::MultipointGroup),
        "st2110" => parse_st2110(&body).map(Connection::St2110),
        _ => parse_rdma(&body).map(Connection::Rdma),
    }
}

fn one_kind_required(got: &str) -> String {
    format!("exactly one of multipointGroup/st2110/rdma is required, got {got}")
}

fn parse_group(obj: &Obj<'_>) -> Result<MultipointGroup, ConfigError> {
    let urn = obj.str("urn")?.unwrap_or_default();
    let ok = !urn.is_empty() && urn.len() <= MAX_URN_LEN && !urn.chars().any(char::is_control);
    if !ok {
        return Err(obj.err(
            "urn",
            format_args!(
                "{} is not allowed, expected a non-empty string of at most {MAX_URN_LEN} bytes \
                 without control characters",
                quote(urn)
            ),
        ));
    }
    let mut edges = Vec::new();
    for e in obj.objs("edges")?.unwrap_or_default() {
        if edges.len() == MAX_EDGES {
            return Err(obj.err(
                "edges",
                format_args!("at most {MAX_EDGES} edges are allowed"),
            ));
        }
        edges.push(parse_edge(&e)?);
    }
    Ok(MultipointGroup {
        urn: urn.into(),
        edges,
    })
}

/// One `multipointGroup.edges[i]`: exactly one transport key.
fn parse_edge(obj: &Obj<'_>) -> Result<Edge, ConfigError> {
    const EDGE_KINDS: [&str; 2] = ["st2110", "rdma"];
    let given: Vec<_> = EDGE_KINDS.into_iter().filter(|k| obj.has(k)).collect();
    let [kind] = given[..] else {
        return Err(obj.err_here(
            CLASS,
            "exactly one transport is required (allowed: st2110, rdma)",
        ));
    };
    let body = obj.obj(kind)?.expect("has() said it is set");
    let dirs = [("tx", Direction::Tx), ("rx", Direction::Rx)];
    if !body.has("direction") {
        return Err(body.err("direction", "required: \"tx\" or \"rx\""));
    }
    let direction = body.choice("direction", &dirs, Direction::Tx)?;
    if kind == "rdma" {
        return Ok(Edge::Rdma {
            direction,
            link: parse_rdma_link(&body, direction)?,
        });
    }
    Ok(Edge::St2110 {
        direction,
        stream: parse_st2110(&body)?,
    })
}

fn parse_rdma_link(obj: &Obj<'_>, direction: Direction) -> Result<RdmaLink, ConfigError> {
    let peer = match obj.str("peer")? {
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
            obj.err(
                "peer",
                format_args!("{} is not an \"ip:port\" address", quote(s)),
            )
        })?),
        None => None,
    };
    let port = match obj.has("port") {
        true => Some(obj.uint("port", 1..=u16::MAX, 1)?),
        false => None,
    };
    match direction {
        Direction::Tx if peer.is_none() => {
            return Err(obj.err(
                "peer",
                "required for a tx link: the receiving engine's \"ip:port\"",
            ));
        }
        Direction::Tx if port.is_some() => {
            return Err(obj.err("port", "is for an rx link (a tx link names its peer)"));
        }
        Direction::Rx if peer.is_some() => {
            return Err(obj.err("peer", "is for a tx link (an rx link listens on port)"));
        }
        _ => {}
    }
    Ok(RdmaLink {
        peer,
        port,
        provider: obj.choice("provider", &RdmaProvider::ALL, RdmaProvider::Tcp)?,
        endpoints: obj.uint("numEndpoints", 1..=MAX_RDMA_ENDPOINTS, 1)?,
    })
}

fn parse_st2110(obj: &Obj<'_>) -> Result<St2110, ConfigError> {
    let transport = obj.choice("transport", &Transport::ALL, Transport::St2110_20)?;
    let ip = ip_addr(obj, "ipAddr")?.ok_or_else(|| obj.err("ipAddr", "required, an IP address"))?;
    if !obj.has("port") {
        return Err(obj.err("port", "required, a port number in 1..=65535"));
    }
    let port = obj.uint("port", 1..=u16::MAX, 1)?;
    let tpf = non_empty(obj, "transportPixelFormat")?;
    Ok(St2110 {
        transport,
        ip_addr: ip,
        port,
        multicast_source_ip_addr: ip_addr(obj, "multicastSourceIpAddr")?,
        pacing: non_empty(obj, "pacing")?.map(String::from),
        payload_type: obj.uint("payloadType", 0..=MAX_PAYLOAD_TYPE, DEFAULT_PAYLOAD_TYPE)?,
        transport_pixel_format: (transport == Transport::St2110_20)
            .then(|| tpf.unwrap_or(DEFAULT_TRANSPORT_PIXEL_FORMAT).to_owned()),
        sdp_file: non_empty(obj, "sdpFile")?.map(String::from),
        any_source: obj.flag("anySource")?,
        redundant: parse_redundant(obj, ip, port)?,
    })
}

fn parse_redundant(obj: &Obj<'_>, ip: IpAddr, port: u16) -> Result<Option<Redundant>, ConfigError> {
    let Some(r) = obj.obj("redundant")? else {
        return Ok(None);
    };
    let addr = ip_addr(&r, "ipAddr")?
        .ok_or_else(|| r.err("ipAddr", "required, the second path's IP address"))?;
    let r_port = r.uint("port", 1..=u16::MAX, port)?;
    if (addr, r_port) == (ip, port) {
        return Err(r.err(
            "ipAddr",
            format_args!("{addr}:{r_port} is the first path (allowed: another address or port)"),
        ));
    }
    if addr.is_ipv4() != ip.is_ipv4() {
        return Err(r.err(
            "ipAddr",
            format_args!("{addr} and the first path's {ip} are of different IP versions"),
        ));
    }
    Ok(Some(Redundant {
        ip_addr: addr,
        port: r_port,
        multicast_source_ip_addr: ip_addr(&r, "multicastSourceIpAddr")?,
    }))
}

/// A string field where `""` counts as absent.
fn non_empty<'a>(obj: &Obj<'a>, key: &str) -> Result<Option<&'a str>, ConfigError> {
    Ok(obj.str(key)?.filter(|s| !s.is_empty()))
}

fn ip_addr(obj: &Obj<'_>, key: &str) -> Result<Option<IpAddr>, ConfigError> {
    let Some(s) = non_empty(obj, key)? else {
        return Ok(None);
    };
    s.parse()
        .map(Some)
        .map_err(|_| obj.err(key, format_args!("{} is not an IP address", quote(s))))
}

fn parse_rdma(obj: &Obj<'_>) -> Result<Rdma, ConfigError> {
    Ok(Rdma {
        connection_mode: obj.choice("connectionMode", &[("RC", RdmaMode::Rc)], RdmaMode::Rc)?,
        max_latency: Duration::from_nanos(obj.uint("maxLatencyNanoseconds", 0..=u64::MAX, 0)?),
    })
}

/// Reads `options.rdma`, the defaults when absent.
pub(super) fn parse_rdma_options(root: &Obj<'_>) -> Result<RdmaOptions, ConfigError> {
    let Some(options) = root.obj("options")? else {
        return Ok(RdmaOptions::default());
    };
    let Some(rdma) = options.obj("rdma")? else {
        return Ok(RdmaOptions::default());
    };
    let key = match (rdma.has("num_endpoints"), rdma.has("numEndpoints")) {
        (true, true) => {
            return Err(rdma.err_here(CLASS, "give num_endpoints or numEndpoints, not both"));
        }
        (false, true) => "numEndpoints",
        _ => "num_endpoints",
    };
    Ok(RdmaOptions {
        provider: rdma.choice("provider", &RdmaProvider::ALL, RdmaProvider::Tcp)?,
        num_endpoints: rdma.uint(key, 1..=MAX_RDMA_ENDPOINTS, 1)?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn conn(c: Value) -> Result<Connection, ConfigError> {
        let v = json!({ "connection": c });
        parse_connection(&Obj::root(&v, CLASS).unwrap())
    }

    fn st2110(s: Value) -> Result<St2110, ConfigError> {
        match conn(json!({ "st2110": s }))? {
            Connection::St2110(s) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    fn options(o: Value) -> Result<RdmaOptions, ConfigError> {
        let v = json!({ "options": o });
        parse_rdma_options(&Obj::root(&v, CLASS).unwrap())
    }

    #[test]
    fn an_edge_written_as_json_reads_back_the_same() {
        let edges = [
            r#"{"st2110": {"direction": "tx", "ipAddr": "239.1.1.1", "port": 5004}}"#,
            r#"{"st2110": {"direction": "rx", "transport": "st2110-30", "ipAddr": "232.1.1.1",
                "port": 6000, "multicastSourceIpAddr": "10.0.0.1", "pacing": "narrow",
                "payloadType": 97, "sdpFile": "/tmp/a.sdp"}}"#,
            r#"{"rdma": {"direction": "tx", "peer": "127.0.0.1:9100", "numEndpoints": 4}}"#,
            r#"{"rdma": {"direction": "rx", "port": 9101, "provider": "shm"}}"#,
            r#"{"rdma": {"direction": "rx"}}"#,
        ];
        for text in edges {
            let e = Edge::from_json(text).unwrap();
            let again = Edge::from_json(&e.to_json()).unwrap();
            assert_eq!(again, e, "{text} -> {}", e.to_json());
        }
        let e = Edge::from_json(r#"{"st2110": {"ipAddr": "239.1.1.1", "port": 5004}}"#);
        assert!(inval(e).contains("direction"));
        let e = Edge::from_json(r#"{"udp": {}}"#);
        assert!(inval(e).contains("allowed: st2110, rdma"));
    }

    #[test]
    fn an_edge_must_carry_its_groups_payload() {
        let audio = Edge::from_json(
            r#"{"st2110": {"direction": "tx", "transport": "st2110-30", "ipAddr": "239.1.1.1",
                "port": 5004}}"#,
        )
        .unwrap();
        let video = super::super::payload::Payload::Video(super::super::payload::Video {
            width: 1920,
            height: 1080,
            fps: 60.0,
            pixel_format: super::super::payload::PixelFormat::Yuv422p10le,
        });
        let e = audio.check_payload(&video).unwrap_err();
        assert_eq!(e.class, MeshErr::ConnConfigIncompat);
        assert!(
            e.message
                .contains("carries audio, but the group's payload is video"),
            "{e}"
        );
        let link = Edge::from_json(r#"{"rdma": {"direction": "rx"}}"#).unwrap();
        assert!(link.check_payload(&video).is_ok());
    }

    fn inval(r: Result<impl std::fmt::Debug, ConfigError>) -> String {
        let err = r.unwrap_err();
        assert_eq!(err.class, MeshErr::ConnConfigInval, "{err}");
        err.message
    }

    #[test]
    fn group_edges_are_st2110_sessions_with_a_direction() {
        let c = conn(json!({"multipointGroup": {"urn": "g", "edges": [
            {"st2110": {"direction": "rx", "ipAddr": "239.1.1.1", "port": 5000}},
            {"st2110": {"direction": "tx", "ipAddr": "239.1.1.2", "port": 6000,
                        "transport": "st2110-30"}}]}}))
        .unwrap();
        let Connection::MultipointGroup(g) = c else {
            panic!("{c:?}")
        };
        assert_eq!(g.edges.len(), 2);
        assert_eq!(g.edges[0].direction(), Direction::Rx);
        let Edge::St2110 { direction, stream } = &g.edges[1] else {
            panic!("{:?}", g.edges[1])
        };
        assert_eq!((*direction, stream.port), (Direction::Tx, 6000));
        assert_eq!(stream.transport, Transport::St2110_30);
        let bad = |edges: Value| {
            inval(conn(
                json!({"multipointGroup": {"urn": "g", "edges": edges}}),
            ))
        };
        assert_eq!(
            bad(json!([{"st2110": {"ipAddr": "239.1.1.1", "port": 5000}}])),
            "connection.multipointGroup.edges[0].st2110.direction: required: \"tx\" or \"rx\""
        );
        assert_eq!(
            bad(json!([{"st2110": {"direction": "up", "ipAddr": "239.1.1.1", "port": 5000}}])),
            "connection.multipointGroup.edges[0].st2110.direction: \"up\" is not supported, \
             allowed: \"tx\", \"rx\""
        );
        assert_eq!(
            bad(json!([{"rtp": {}}])),
            "connection.multipointGroup.edges[0]: exactly one transport is required (allowed: \
             st2110, rdma)"
        );
        assert_eq!(
            bad(json!("st2110")),
            "connection.multipointGroup.edges: expected an array of objects, got string \"st2110\""
        );
        assert_eq!(
            bad(json!([1])),
            "connection.multipointGroup.edges[0]: expected an object, got integer 1"
        );
        let nine: Vec<Value> = (0..9)
            .map(
                |p| json!({"st2110": {"direction": "tx", "ipAddr": "239.1.1.1", "port": 5000 + p}}),
            )
            .collect();
        assert_eq!(
            bad(json!(nine)),
            "connection.multipointGroup.edges: at most 8 edges are allowed"
        );
    }

    #[test]
    fn rdma_edges_name_their_peer_or_their_port() {
        let c = conn(json!({"multipointGroup": {"urn": "g", "edges": [
            {"rdma": {"direction": "tx", "peer": "127.0.0.1:9100", "numEndpoints": 4}},
            {"rdma": {"direction": "rx", "provider": "shm"}},
            {"rdma": {"direction": "rx", "port": 9101}}]}}))
        .unwrap();
        let Connection::MultipointGroup(g) = c else {
            panic!("{c:?}")
        };
        let links: Vec<_> = g
            .edges
            .iter()
            .map(|e| match e {
                Edge::Rdma { direction, link } => (*direction, link.clone()),
                e => panic!("{e:?}"),
            })
            .collect();
        let link = |peer: Option<&str>, port, provider, endpoints| RdmaLink {
            peer: peer.map(|p| p.parse().unwrap()),
            port,
            provider,
            endpoints,
        };
        assert_eq!(
            links,
            vec![
                (
                    Direction::Tx,
                    link(Some("127.0.0.1:9100"), None, RdmaProvider::Tcp, 4)
                ),
                (Direction::Rx, link(None, None, RdmaProvider::Shm, 1)),
                (Direction::Rx, link(None, Some(9101), RdmaProvider::Tcp, 1)),
            ]
        );
        let bad = |rdma: Value| {
            inval(conn(
                json!({"multipointGroup": {"urn": "g", "edges": [{"rdma": rdma}]}}),
            ))
        };
        let at = "connection.multipointGroup.edges[0].rdma";
        assert_eq!(
            bad(json!({"direction": "tx"})),
            format!("{at}.peer: required for a tx link: the receiving engine's \"ip:port\"")
        );
        assert_eq!(
            bad(json!({"direction": "tx", "peer": "host"})),
            format!("{at}.peer: \"host\" is not an \"ip:port\" address")
        );
        assert_eq!(
            bad(json!({"direction": "rx", "peer": "127.0.0.1:1"})),
            format!("{at}.peer: is for a tx link (an rx link listens on port)")
        );
        assert_eq!(
            bad(json!({"direction": "tx", "peer": "127.0.0.1:1", "port": 5})),
            format!("{at}.port: is for an rx link (a tx link names its peer)")
        );
        assert!(bad(json!({"direction": "rx", "numEndpoints": 9})).contains("numEndpoints"));
        assert!(bad(json!({"direction": "rx", "provider": "psm"})).contains("provider"));
    }

    #[test]
    fn exactly_one_connection_kind() {
        let v = json!({});
        assert_eq!(
            inval(parse_connection(&Obj::root(&v, CLASS).unwrap())),
            "connection: exactly one of multipointGroup/st2110/rdma is required, got none"
        );
        assert_eq!(
            inval(conn(json!({}))),
            "connection: exactly one of multipointGroup/st2110/rdma is required, got none"
        );
        assert_eq!(
            inval(conn(json!({"multipointGroup": {"urn": "a"}, "rdma": {}}))),
            "connection: exactly one of multipointGroup/st2110/rdma is required, \
             got \"multipointGroup\", \"rdma\""
        );
        assert_eq!(
            inval(conn(
                json!({"st2110": {}, "rdma": {}, "multipointGroup": {}})
            )),
            "connection: exactly one of multipointGroup/st2110/rdma is required, \
             got \"multipointGroup\", \"st2110\", \"rdma\""
        );
        assert!(conn(json!({"rdma": {}, "st2110": null, "other": 1})).is_ok());
        assert_eq!(
            inval(conn(json!([]))),
            "connection: expected an object, got an array"
        );
        assert_eq!(
            inval(conn(json!({"rdma": "RC"}))),
            "connection.rdma: expected an object, got string \"RC\""
        );
    }

    #[test]
    fn multipoint_group_urn_bounds() {
        let max = "u".repeat(MAX_URN_LEN);
        let c = conn(json!({"multipointGroup": {"urn": max}})).unwrap();
        assert_eq!(
            c,
            Connection::MultipointGroup(MultipointGroup {
                urn: max,
                edges: vec![]
            })
        );
        let one = conn(json!({"multipointGroup": {"urn": "x"}})).unwrap();
        assert_eq!(one.as_str(), "multipointGroup");
        let err = inval(conn(json!({"multipointGroup": {"urn": "u".repeat(257)}})));
        assert!(
            err.starts_with("connection.multipointGroup.urn: \"uuuu"),
            "{err}"
        );
        assert!(
            err.ends_with("at most 256 bytes without control characters"),
            "{err}"
        );
        let want = "connection.multipointGroup.urn: \"\" is not allowed, expected a non-empty \
                    string of at most 256 bytes without control characters";
        assert_eq!(inval(conn(json!({"multipointGroup": {"urn": ""}}))), want);
        assert_eq!(inval(conn(json!({"multipointGroup": {}}))), want);
        assert!(inval(conn(json!({"multipointGroup": {"urn": "a\u{0}b"}}))).contains("\"a\\0b\""));
        assert_eq!(
            inval(conn(json!({"multipointGroup": {"urn": 5}}))),
            "connection.multipointGroup.urn: expected a string, got integer 5"
        );
    }

    #[test]
    fn st2110_defaults() {
        let s = st2110(json!({"ipAddr": "239.0.0.1", "port": 20000})).unwrap();
        assert_eq!(s.transport, Transport::St2110_20);
        assert_eq!(s.ip_addr, "239.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.port, 20000);
        assert_eq!(s.multicast_source_ip_addr, None);
        assert_eq!(s.pacing, None);
        assert_eq!(s.payload_type, 112);
        assert_eq!(
            s.transport_pixel_format.as_deref(),
            Some("yuv422p10rfc4175")
        );
    }

    #[test]
    fn redundant_is_a_second_path_checked_against_the_first() {
        let base = json!({"ipAddr": "239.1.1.1", "port": 5004});
        assert_eq!(st2110(base.clone()).unwrap().redundant, None);
        let mut two = base.clone();
        two["redundant"] = json!({"ipAddr": "239.2.2.2", "multicastSourceIpAddr": "10.2.0.1"});
        assert_eq!(
            st2110(two).unwrap().redundant,
            Some(Redundant {
                ip_addr: "239.2.2.2".parse().unwrap(),
                port: 5004,
                multicast_source_ip_addr: Some("10.2.0.1".parse().unwrap()),
            })
        );
        for (leg, want) in [
            (json!({"port": 5006}), "redundant.ipAddr: required"),
            (json!({"ipAddr": "239.1.1.1"}), "is the first path"),
            (json!({"ipAddr": "ff02::1"}), "different IP versions"),
            (json!({"ipAddr": "239.2.2.2", "port": 0}), "redundant.port"),
            (json!("239.2.2.2"), "redundant"),
        ] {
            let mut bad = base.clone();
            bad["redundant"] = leg;
            let e = st2110(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want:?})");
        }
        // An edge with a second path reads back the same from its JSON.
        let edge = Edge::from_json(
            r#"{"st2110": {"direction": "rx", "ipAddr": "239.1.1.1", "port": 5004,
                "redundant": {"ipAddr": "239.2.2.2", "port": 5006}}}"#,
        )
        .unwrap();
        assert_eq!(Edge::from_json(&edge.to_json()).unwrap(), edge);
    }

    #[test]
    fn any_source_is_a_flag_off_by_default() {
        let base = json!({"ipAddr": "127.0.0.1", "port": 20000});
        assert!(!st2110(base.clone()).unwrap().any_source);
        let mut on = base.clone();
        on["anySource"] = json!(true);
        assert!(st2110(on).unwrap().any_source);
        let mut bad = base;
        bad["anySource"] = json!("yes");
        let e = st2110(bad).unwrap_err().to_string();
        assert!(e.contains("anySource: expected true or false"), "{e}");
    }

    #[test]
    fn st2110_full() {
        let s = st2110(
            json!({"transport": "st2110-30", "ipAddr": "ff0e::1", "port": 1,
            "multicastSourceIpAddr": "fe80::2", "pacing": "narrow", "payloadType": 0,
            "transportPixelFormat": "ignored-for-audio"}),
        )
        .unwrap();
        assert_eq!(s.transport, Transport::St2110_30);
        assert!(s.transport.is_audio());
        assert_eq!(s.multicast_source_ip_addr, Some("fe80::2".parse().unwrap()));
        assert_eq!(s.pacing.as_deref(), Some("narrow"));
        assert_eq!(s.payload_type, 0);
        assert_eq!(s.transport_pixel_format, None);
        let s = st2110(
            json!({"transport": "st2110-22", "ipAddr": "10.0.0.1", "port": 9,
            "multicastSourceIpAddr": "", "pacing": ""}),
        )
        .unwrap();
        assert_eq!(s.transport, Transport::St2110_22);
        assert_eq!((s.multicast_source_ip_addr, s.pacing), (None, None));
        let s = st2110(json!({"ipAddr": "10.0.0.1", "port": 9, "transportPixelFormat": "v210"}));
        assert_eq!(s.unwrap().transport_pixel_format.as_deref(), Some("v210"));
    }

    #[test]
    fn st2110_group_urn_ipv4_and_ipv6() {
        let v4 = st2110(json!({"ipAddr": "239.1.1.1", "port": 9002})).unwrap();
        assert_eq!(v4.group_urn(), "239.1.1.1:9002");
        let v6 = st2110(json!({"ipAddr": "ff02::1:2", "port": 9002})).unwrap();
        assert_eq!(v6.group_urn(), "[ff02::1:2]:9002");
    }

    #[test]
    fn st2110_bounds_and_required_fields() {
        let base = |extra: Value| {
            let mut v = json!({"ipAddr": "10.0.0.1", "port": 5000});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            st2110(v)
        };
        assert_eq!(base(json!({"port": 65535})).unwrap().port, 65535);
        assert_eq!(base(json!({"payloadType": 127})).unwrap().payload_type, 127);
        let cases = [
            (
                json!({"port": 0}),
                "connection.st2110.port: 0 is out of range, allowed 1..=65535",
            ),
            (
                json!({"port": 65536}),
                "connection.st2110.port: 65536 is out of range, allowed 1..=65535",
            ),
            (
                json!({"port": null}),
                "connection.st2110.port: required, a port number in 1..=65535",
            ),
            (
                json!({"ipAddr": ""}),
                "connection.st2110.ipAddr: required, an IP address",
            ),
            (
                json!({"ipAddr": "1.2.3"}),
                "connection.st2110.ipAddr: \"1.2.3\" is not an IP address",
            ),
            (
                json!({"multicastSourceIpAddr": "host"}),
                "connection.st2110.multicastSourceIpAddr: \"host\" is not an IP address",
            ),
            (
                json!({"payloadType": 128}),
                "connection.st2110.payloadType: 128 is out of range, allowed 0..=127",
            ),
            (
                json!({"transport": "st2110-41"}),
                "connection.st2110.transport: \"st2110-41\" is not supported, \
                 allowed: \"st2110-20\", \"st2110-22\", \"st2110-30\", \"st2110-40\"",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(inval(base(extra)), want);
        }
    }

    #[test]
    fn st2110_wrong_types() {
        let cases = [
            (
                json!({"transport": 20}),
                "connection.st2110.transport: expected a string, got integer 20",
            ),
            (
                json!({"ipAddr": 167772161}),
                "connection.st2110.ipAddr: expected a string, got integer 167772161",
            ),
            (
                json!({"port": "5000"}),
                "connection.st2110.port: expected an unsigned integer, got string \"5000\"",
            ),
            (
                json!({"multicastSourceIpAddr": []}),
                "connection.st2110.multicastSourceIpAddr: expected a string, got an array",
            ),
            (
                json!({"pacing": true}),
                "connection.st2110.pacing: expected a string, got boolean true",
            ),
            (
                json!({"payloadType": -1}),
                "connection.st2110.payloadType: expected an unsigned integer, got integer -1",
            ),
            (
                json!({"transportPixelFormat": {}}),
                "connection.st2110.transportPixelFormat: expected a string, got an object",
            ),
        ];
        for (extra, want) in cases {
            let mut v = json!({"ipAddr": "10.0.0.1", "port": 5000});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            assert_eq!(inval(st2110(v)), want);
        }
    }

    #[test]
    fn rdma_defaults_and_values() {
        let want = Rdma {
            connection_mode: RdmaMode::Rc,
            max_latency: Duration::ZERO,
        };
        assert_eq!(conn(json!({"rdma": {}})).unwrap(), Connection::Rdma(want));
        let c = conn(json!({"rdma": {"connectionMode": "RC", "maxLatencyNanoseconds": 10000}}));
        let Connection::Rdma(r) = c.unwrap() else {
            panic!()
        };
        assert_eq!(r.max_latency, Duration::from_micros(10));
        let max = conn(json!({"rdma": {"maxLatencyNanoseconds": u64::MAX}}));
        assert!(max.is_ok());
        assert_eq!(
            inval(conn(json!({"rdma": {"connectionMode": "UC"}}))),
            "connection.rdma.connectionMode: \"UC\" is not supported, allowed: \"RC\""
        );
        assert_eq!(
            inval(conn(json!({"rdma": {"connectionMode": 1}}))),
            "connection.rdma.connectionMode: expected a string, got integer 1"
        );
        assert_eq!(
            inval(conn(json!({"rdma": {"maxLatencyNanoseconds": "1us"}}))),
            "connection.rdma.maxLatencyNanoseconds: expected an unsigned integer, \
             got string \"1us\""
        );
    }

    #[test]
    fn rdma_options() {
        assert_eq!(options(json!({})).unwrap(), RdmaOptions::default());
        assert_eq!(
            options(json!({"rdma": null})).unwrap(),
            RdmaOptions::default()
        );
        let o = options(json!({"rdma": {"provider": "verbs", "num_endpoints": 8}})).unwrap();
        assert_eq!((o.provider, o.num_endpoints), (RdmaProvider::Verbs, 8));
        let o = options(json!({"rdma": {"numEndpoints": 1}})).unwrap();
        assert_eq!((o.provider, o.num_endpoints), (RdmaProvider::Tcp, 1));
        let cases = [
            (
                json!({"rdma": {"num_endpoints": 0}}),
                "options.rdma.num_endpoints: 0 is out of range, allowed 1..=8",
            ),
            (
                json!({"rdma": {"numEndpoints": 9}}),
                "options.rdma.numEndpoints: 9 is out of range, allowed 1..=8",
            ),
            (
                json!({"rdma": {"num_endpoints": 1, "numEndpoints": 1}}),
                "options.rdma: give num_endpoints or numEndpoints, not both",
            ),
            (
                json!({"rdma": {"provider": "efa"}}),
                "options.rdma.provider: \"efa\" is not supported, allowed: \"tcp\", \"verbs\", \"shm\"",
            ),
            (
                json!({"rdma": {"provider": 1}}),
                "options.rdma.provider: expected a string, got integer 1",
            ),
            (
                json!({"rdma": {"num_endpoints": "2"}}),
                "options.rdma.num_endpoints: expected an unsigned integer, got string \"2\"",
            ),
            (
                json!({"rdma": []}),
                "options.rdma: expected an object, got an array",
            ),
        ];
        for (o, want) in cases {
            assert_eq!(inval(options(o)), want);
        }
        assert_eq!(
            inval(parse_rdma_options(
                &Obj::root(&json!({"options": 3}), CLASS).unwrap()
            )),
            "options: expected an object, got integer 3"
        );
    }
}
