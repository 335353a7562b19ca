//! The SDP writer (`Display`, CRLF lines in RFC 8866 order) and the SDP of our senders.

use std::fmt::{self, Display, Formatter};
use std::net::IpAddr;

use super::parse::{
    MEDIA_FIELDS, PACKET_MODES, PACKING_MODES, RANGES, SENDER_TYPES, SESSION_FIELDS, TRANS_MODES,
};
use super::{
    AncFmtp, AspectRatio, Attribute, AudioFmtp, Connection, DidSdid, Field, Fmtp, JxsvFmtp,
    JxsvPacketMode, JxsvTransMode, Media, MediaKind, Origin, PackingMode, Param, Ptime, Range,
    RefClock, RtpMap, SenderType, Session, SourceFilter, Timing, VideoFmtp,
};

/// Where and how one of our senders transmits: what every constructor of [`Session`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxParams {
    /// The session name (`s=`).
    pub name: String,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version: bump it whenever the SDP changes.
    pub session_version: u64,
    /// The sender's own address: the `o=` address and the source of `a=source-filter` (written
    /// when `destination` is a multicast group of the same address family).
    pub source: IpAddr,
    /// The destination: a multicast group or a unicast receiver.
    pub destination: IpAddr,
    /// The UDP destination port.
    pub port: u16,
    /// The multicast TTL, written as `c=IN IP4 <group>/<ttl>` (IPv4 multicast only).
    pub ttl: u8,
    /// The RTP payload type, 96 to 127 for the dynamic types ST 2110 uses.
    pub payload_type: u8,
    /// The clock the RTP timestamps follow (`a=ts-refclk`).
    pub ref_clock: RefClock,
}

/// The PCM encoding of an ST 2110-30 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioEncoding {
    /// `L16`: 16-bit big-endian samples.
    L16,
    /// `L24`: 24-bit big-endian samples.
    L24,
}

impl AudioEncoding {
    /// The rtpmap encoding name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::L16 => "L16",
            Self::L24 => "L24",
        }
    }
}

/// What [`Session::st2110_30`] announces about an audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioParams {
    /// Sample format.
    pub encoding: AudioEncoding,
    /// Sample rate in Hz, also the RTP clock rate (48000 or 96000).
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// Packet time (1 ms or 125 µs).
    pub ptime: Ptime,
    /// `channel-order=`, e.g. `SMPTE2110.(ST)`.
    pub channel_order: Option<String>,
}

impl Session {
    /// The SDP of an ST 2110-20 sender: one `m=video` section with `raw/90000` and `video`.
    pub fn st2110_20(tx: &TxParams, video: VideoFmtp) -> Self {
        let media = tx.media(
            MediaKind::Video,
            RtpMap::new("raw", 90_000),
            Fmtp::Raw(video),
        );
        tx.session(media)
    }

    /// The SDP of an ST 2110-22 sender: `jxsv/90000`, `jxsv` and `b=AS:<bitrate_kbps>`.
    pub fn st2110_22(tx: &TxParams, jxsv: JxsvFmtp, bitrate_kbps: u64) -> Self {
        let mut media = tx.media(
            MediaKind::Video,
            RtpMap::new("jxsv", 90_000),
            Fmtp::Jxsv(jxsv),
        );
        media.fields.push(Field {
            kind: 'b',
            value: format!("AS:{bitrate_kbps}"),
        });
        tx.session(media)
    }

    /// The SDP of an ST 2110-30 sender: `L16`/`L24` at the sample rate, with `a=ptime`.
    pub fn st2110_30(tx: &TxParams, audio: &AudioParams) -> Self {
        let rtpmap = RtpMap {
            encoding: audio.encoding.as_str().to_owned(),
            clock_rate: audio.sample_rate,
            channels: Some(audio.channels),
        };
        let fmtp = AudioFmtp {
            channel_order: audio.channel_order.clone(),
            extra: Vec::new(),
        };
        let mut media = tx.media(MediaKind::Audio, rtpmap, Fmtp::Audio(fmtp));
        media.ptime = Some(audio.ptime);
        tx.session(media)
    }

    /// The SDP of an ST 2110-40 sender: `smpte291/90000` with `anc`.
    pub fn st2110_40(tx: &TxParams, anc: AncFmtp) -> Self {
        let rtpmap = RtpMap::new("smpte291", 90_000);
        let media = tx.media(MediaKind::Video, rtpmap, Fmtp::Smpte291(anc));
        tx.session(media)
    }

    /// Adds an ST 2022-7 second leg: the first media section is copied with `secondary`'s
    /// destination, port, TTL, source and clock; the two get `a=mid:primary` and
    /// `a=mid:secondary` and the session `a=group:DUP primary secondary` (RFC 7104).
    /// A session without media sections is returned unchanged.
    pub fn with_st2022_7(mut self, secondary: &TxParams) -> Self {
        let Some(first) = self.media.first_mut() else {
            return self;
        };
        first.mid = Some("primary".to_owned());
        let mut second = first.clone();
        second.port = secondary.port;
        second.connection = Some(secondary.connection());
        second.source_filter = secondary.source_filter();
        second.ts_refclk = Some(secondary.ref_clock.clone());
        second.mid = Some("secondary".to_owned());
        self.media.insert(1, second);
        self.attributes
            .push(Attribute::new("group", "DUP primary secondary"));
        self
    }
}

impl TxParams {
    fn session(&self, media: Media) -> Session {
        Session {
            origin: Origin {
                username: "-".to_owned(),
                session_id: self.session_id,
                session_version: self.session_version,
                addr: self.source,
            },
            name: self.name.clone(),
            connection: None,
            timing: Timing::default(),
            fields: Vec::new(),
            attributes: Vec::new(),
            media: vec![media],
        }
    }

    fn media(&self, kind: MediaKind, rtpmap: RtpMap, fmtp: Fmtp) -> Media {
        Media {
            kind,
            port: self.port,
            protocol: "RTP/AVP".to_owned(),
            payload_type: self.payload_type,
            connection: Some(self.connection()),
            fields: Vec::new(),
            rtpmap,
            fmtp,
            ptime: None,
            ts_refclk: Some(self.ref_clock.clone()),
            mediaclk: Some("direct=0".to_owned()),
            source_filter: self.source_filter(),
            mid: None,
            attributes: Vec::new(),
        }
    }

    fn connection(&self) -> Connection {
        let ttl = match self.destination {
            IpAddr::V4(v4) if v4.is_multicast() => Some(self.ttl),
            _ => None,
        };
        Connection {
            addr: self.destination,
            ttl,
        }
    }

    /// A source filter for a multicast destination, when the source is of the same family.
    fn source_filter(&self) -> Option<SourceFilter> {
        let filter = SourceFilter {
            dest: self.destination,
            source: self.source,
        };
        let same_family = self.destination.is_ipv4() == self.source.is_ipv4();
        (self.destination.is_multicast() && same_family).then_some(filter)
    }
}

/// Writes one `<kind>=<value>` line with its CRLF.
fn line(f: &mut Formatter<'_>, kind: char, value: impl Display) -> fmt::Result {
    write!(f, "{kind}={value}\r\n")
}

/// Writes the fields whose type is in `kinds`, type by type in that order.
fn fields(f: &mut Formatter<'_>, all: &[Field], kinds: &str) -> fmt::Result {
    for kind in kinds.chars() {
        for field in all.iter().filter(|x| x.kind == kind) {
            line(f, kind, &field.value)?;
        }
    }
    Ok(())
}

impl Display for Session {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (before_c, rest) = SESSION_FIELDS.split_at(4); // i u e p | b r z k
        let (bandwidth, rest) = rest.split_at(1); // b | r z k
        let (repeat, after_t) = rest.split_at(1); // r | z k
        line(f, 'v', 0)?;
        line(f, 'o', &self.origin)?;
        line(f, 's', &self.name)?;
        fields(f, &self.fields, before_c)?;
        if let Some(c) = &self.connection {
            line(f, 'c', c)?;
        }
        fields(f, &self.fields, bandwidth)?;
        line(
            f,
            't',
            format_args!("{} {}", self.timing.start, self.timing.stop),
        )?;
        fields(f, &self.fields, repeat)?;
        fields(f, &self.fields, after_t)?;
        for a in &self.attributes {
            line(f, 'a', a)?;
        }
        self.media.iter().try_for_each(|m| Display::fmt(m, f))
    }
}

impl Display for Media {
    /// The whole section, from `m=` on, CRLF-terminated.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (info, rest) = MEDIA_FIELDS.split_at(1); // i | b k
        let pt = self.payload_type;
        let m = format_args!(
            "{} {} {} {pt}",
            self.kind.as_str(),
            self.port,
            self.protocol
        );
        line(f, 'm', m)?;
        fields(f, &self.fields, info)?;
        if let Some(c) = &self.connection {
            line(f, 'c', c)?;
        }
        fields(f, &self.fields, rest)?;
        if let Some(filter) = &self.source_filter {
            line(f, 'a', format_args!("source-filter:{filter}"))?;
        }
        line(f, 'a', format_args!("rtpmap:{pt} {}", self.rtpmap))?;
        self.write_fmtp(f)?;
        if let Some(ptime) = self.ptime {
            line(f, 'a', format_args!("ptime:{ptime}"))?;
        }
        if let Some(clock) = &self.ts_refclk {
            line(f, 'a', format_args!("ts-refclk:{clock}"))?;
        }
        if let Some(clock) = &self.mediaclk {
            line(f, 'a', format_args!("mediaclk:{clock}"))?;
        }
        if let Some(mid) = &self.mid {
            line(f, 'a', format_args!("mid:{mid}"))?;
        }
        self.attributes.iter().try_for_each(|a| line(f, 'a', a))
    }
}

impl Media {
    fn write_fmtp(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let params = match &self.fmtp {
            Fmtp::Raw(v) => v.to_string(),
            Fmtp::Jxsv(j) => j.to_string(),
            Fmtp::Smpte291(a) => a.to_string(),
            Fmtp::Audio(a) => a.to_string(),
            Fmtp::Other(text) => text.clone(),
            Fmtp::None => return Ok(()),
        };
        let pt = self.payload_type;
        match (&self.fmtp, params.is_empty()) {
            (Fmtp::Other(_), true) => line(f, 'a', format_args!("fmtp:{pt}")),
            (_, true) => Ok(()),
            (_, false) => line(f, 'a', format_args!("fmtp:{pt} {params}")),
        }
    }
}

impl Display for Origin {
    /// `<username> <id> <version> IN IP4|IP6 <address>`
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (id, version) = (self.session_id, self.session_version);
        write!(f, "{} {id} {version} {}", self.username, Net(self.addr))
    }
}

/// `IN IP4 <v4>` or `IN IP6 <v6>`.
struct Net(IpAddr);

impl Display for Net {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "IN IP4 {a}"),
            IpAddr::V6(a) => write!(f, "IN IP6 {a}"),
        }
    }
}

impl Display for Connection {
    /// `IN IP4 <address>[/<ttl>]` or `IN IP6 <address>` (the TTL is written for IPv4 only).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Net(self.addr))?;
        match self.ttl {
            Some(ttl) if self.addr.is_ipv4() => write!(f, "/{ttl}"),
            _ => Ok(()),
        }
    }
}

impl Display for Attribute {
    /// `<name>` or `<name>:<value>` (without `a=`).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}:{value}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Display for RtpMap {
    /// `<encoding>/<clock rate>[/<channels>]` (without the payload type).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.encoding, self.clock_rate)?;
        match self.channels {
            Some(ch) => write!(f, "/{ch}"),
            None => Ok(()),
        }
    }
}

impl Display for SourceFilter {
    /// ` incl IN IP4 <dest> <source>` (with the leading space RFC 4570's examples show).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, " incl {} {}", Net(self.dest), self.source)
    }
}

impl Display for Ptime {
    /// Milliseconds: `1`, `0.125`, `0.25`, `1.5`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (ms, us) = (self.0 / 1000, self.0 % 1000);
        if us == 0 {
            return write!(f, "{ms}");
        }
        let frac = format!("{us:03}");
        write!(f, "{ms}.{}", frac.trim_end_matches('0'))
    }
}

impl Display for RefClock {
    /// The value of `a=ts-refclk:`, e.g. `ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ptp { gmid, domain } => {
                write!(f, "ptp=IEEE1588-2008:{}:{domain}", Octets(gmid))
            }
            Self::PtpTraceable => f.write_str("ptp=IEEE1588-2008:traceable"),
            Self::LocalMac(mac) => write!(f, "localmac={}", Octets(mac)),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// Upper-case hex octets joined by `-`.
struct Octets<'a>(&'a [u8]);

impl Display for Octets<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "-" };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

/// The spelling of `value` in a parser table.
fn spelling<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(s, _)| s)
}

macro_rules! display_by_table {
    ($($ty:ty => $table:expr),* $(,)?) => {$(
        impl Display for $ty {
            /// The SDP spelling.
            fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_str(spelling(&$table, *self))
            }
        }
    )*};
}

display_by_table! {
    PackingMode => PACKING_MODES,
    SenderType => SENDER_TYPES,
    Range => RANGES,
    JxsvPacketMode => PACKET_MODES,
    JxsvTransMode => TRANS_MODES,
}

impl Display for AspectRatio {
    /// `<width>:<height>`
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.width, self.height)
    }
}

impl Display for DidSdid {
    /// `{0xDD,0xSS}`
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{{0x{:02X},0x{:02X}}}", self.did, self.sdid)
    }
}

/// Collects fmtp parameters and writes them separated by `; `.
#[derive(Default)]
struct Params(Vec<String>);

impl Params {
    fn put(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.0.push(format!("{name}={value}"));
        self
    }

    fn opt(&mut self, name: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(value) = value {
            self.put(name, value);
        }
        self
    }

    fn flag(&mut self, name: &str, set: bool) -> &mut Self {
        if set {
            self.0.push(name.to_owned());
        }
        self
    }

    fn extra(&mut self, extra: &[Param]) -> &mut Self {
        for p in extra {
            match &p.value {
                Some(v) => self.put(&p.name, v),
                None => self.flag(&p.name, true),
            };
        }
        self
    }

    fn write(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl Display for VideoFmtp {
    /// The parameters after `a=fmtp:<pt> `, separated by `; `, required ones first.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        Params::default()
            .put("sampling", self.sampling)
            .put("width", self.width)
            .put("height", self.height)
            .opt("exactframerate", self.exactframerate)
            .put("depth", self.depth)
            .opt("TCS", self.tcs.as_ref())
            .opt("colorimetry", self.colorimetry.as_ref())
            .opt("PM", self.packing_mode)
            .opt("SSN", self.ssn.as_ref())
            .opt("TP", self.sender_type)
            .opt("RANGE", self.range)
            .opt("PAR", self.par)
            .opt("MAXUDP", self.maxudp)
            .flag("interlace", self.interlace)
            .flag("segmented", self.segmented)
            .opt("TROFF", self.troff)
            .opt("CMAX", self.cmax)
            .extra(&self.extra)
            .write(f)
    }
}

impl Display for JxsvFmtp {
    /// The parameters after `a=fmtp:<pt> `, separated by `; `.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        Params::default()
            .opt("packetmode", self.packetmode)
            .opt("transmode", self.transmode)
            .opt("profile", self.profile.as_ref())
            .opt("level", self.level.as_ref())
            .opt("sublevel", self.sublevel.as_ref())
            .opt("sampling", self.sampling)
            .opt("depth", self.depth)
            .opt("width", self.width)
            .opt("height", self.height)
            .opt("exactframerate", self.exactframerate)
            .opt("colorimetry", self.colorimetry.as_ref())
            .opt("TCS", self.tcs.as_ref())
            .opt("TP", self.sender_type)
            .opt("SSN", self.ssn.as_ref())
            .extra(&self.extra)
            .write(f)
    }
}

impl Display for AncFmtp {
    /// The parameters after `a=fmtp:<pt> `, separated by `; `.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut params = Params::default();
        for id in &self.did_sdid {
            params.put("DID_SDID", id);
        }
        params
            .opt("VPID_Code", self.vpid_code)
            .opt("exactframerate", self.exactframerate)
            .opt("TM", self.tm.as_ref())
            .opt("SSN", self.ssn.as_ref())
            .extra(&self.extra)
            .write(f)
    }
}

impl Display for AudioFmtp {
    /// The parameters after `a=fmtp:<pt> `, separated by `; `.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        Params::default()
            .opt("channel-order", self.channel_order.as_ref())
            .extra(&self.extra)
            .write(f)
    }
}
