//! The SDP parser: lines, session and media sections, then the typed attributes and fmtp.

use std::net::IpAddr;
use std::str::FromStr;

use super::{
    AncFmtp, AspectRatio, Attribute, AudioFmtp, Connection, Depth, DidSdid, Field, Fmtp, FrameRate,
    JxsvFmtp, JxsvPacketMode, JxsvTransMode, Media, MediaKind, Missing, NOT_ST2110, Origin,
    PackingMode, Param, Ptime, Range, RefClock, RtpMap, Sampling, SdpError, SenderType, Session,
    SourceFilter, Timing, VideoFmtp,
};

/// Session-level line types kept verbatim, in the order they are written.
pub(super) const SESSION_FIELDS: &str = "iuepbrzk";
/// Media-level line types kept verbatim, in the order they are written.
pub(super) const MEDIA_FIELDS: &str = "ibk";

/// One line of the text: its 1-based number and its content without the line ending.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    no: usize,
    text: &'a str,
}

impl Line<'_> {
    fn err(self, problem: impl Into<String>) -> SdpError {
        SdpError::Line {
            line: self.no,
            text: self.text.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A problem found in part of a line, turned into an [`SdpError`] by the caller.
type Problem = String;

pub(super) fn parse(text: &str, strict: bool) -> Result<Session, SdpError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| Line {
            no: i + 1,
            text: l.strip_suffix('\r').unwrap_or(l),
        })
        .filter(|l| !l.text.trim().is_empty());
    let first = lines.next().ok_or(SdpError::MissingLine {
        kind: 'v',
        what: "version",
    })?;
    match split_type(first)? {
        ('v', "0") => {}
        ('v', _) => return Err(first.err("the version must be 0 (v=0)")),
        _ => return Err(first.err("an SDP must start with v=0")),
    }
    let mut session = SessionDraft::default();
    let mut sections: Vec<MediaDraft> = Vec::new();
    for line in lines {
        let (kind, value) = split_type(line)?;
        if kind == 'm' {
            sections.push(MediaDraft::new(line, value)?);
        } else if let Some(section) = sections.last_mut() {
            section.line(line, kind, value)?;
        } else {
            session.line(line, kind, value)?;
        }
    }
    let mut out = session.finish()?;
    let mut located = Vec::with_capacity(sections.len());
    for draft in sections {
        let (media, where_) = draft.finish()?;
        out.media.push(media);
        located.push(where_);
    }
    if strict {
        for (media, where_) in out.media.iter().zip(&located) {
            if let Some(missing) = out.missing_st2110(media).first() {
                return Err(where_.strict_error(*missing, media));
            }
        }
    }
    Ok(out)
}

/// Splits `<type>=<value>`.
fn split_type(line: Line<'_>) -> Result<(char, &str), SdpError> {
    match line.text.as_bytes() {
        [k, b'=', ..] if k.is_ascii_lowercase() => Ok((char::from(*k), &line.text[2..])),
        _ => Err(line.err("expected <type>=<value> with a lower-case type letter, e.g. a=...")),
    }
}

fn unknown_type(line: Line<'_>, kind: char) -> SdpError {
    line.err(format!(
        "unknown line type {kind}=; RFC 8866 defines v o s i u e p c b t r z k a m"
    ))
}

fn once<T>(slot: &mut Option<T>, line: Line<'_>, what: &str, value: T) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(line.err(format!("a second {what}; only one is allowed here")));
    }
    *slot = Some(value);
    Ok(())
}

#[derive(Default)]
struct SessionDraft {
    origin: Option<Origin>,
    name: Option<String>,
    connection: Option<Connection>,
    timing: Option<Timing>,
    fields: Vec<Field>,
    attributes: Vec<Attribute>,
}

impl SessionDraft {
    fn line(&mut self, line: Line<'_>, kind: char, value: &str) -> Result<(), SdpError> {
        match kind {
            'v' => Err(line.err("v= may appear only once, as the first line")),
            'o' => once(
                &mut self.origin,
                line,
                "o= line",
                origin(value).map_err(|p| line.err(p))?,
            ),
            's' => once(&mut self.name, line, "s= line", value.to_owned()),
            'c' => {
                let c = connection(value).map_err(|p| line.err(p))?;
                once(&mut self.connection, line, "session-level c= line", c)
            }
            't' => once(
                &mut self.timing,
                line,
                "t= line",
                timing(value).map_err(|p| line.err(p))?,
            ),
            'a' => {
                self.attributes.push(attribute(line, value)?);
                Ok(())
            }
            k if SESSION_FIELDS.contains(k) => {
                self.fields.push(field(k, value));
                Ok(())
            }
            k => Err(unknown_type(line, k)),
        }
    }

    fn finish(mut self) -> Result<Session, SdpError> {
        let missing = |kind, what| SdpError::MissingLine { kind, what };
        sort_fields(&mut self.fields, SESSION_FIELDS);
        Ok(Session {
            origin: self.origin.ok_or(missing('o', "origin"))?,
            name: self.name.ok_or(missing('s', "session name"))?,
            connection: self.connection,
            timing: self.timing.ok_or(missing('t', "timing"))?,
            fields: self.fields,
            attributes: self.attributes,
            media: Vec::new(),
        })
    }
}

fn field(kind: char, value: &str) -> Field {
    Field {
        kind,
        value: value.to_owned(),
    }
}

/// Stable sort by the position of each field's type in `order` (the order they are written in).
fn sort_fields(fields: &mut [Field], order: &str) {
    fields.sort_by_key(|f| order.find(f.kind));
}

/// Where a media section's `m=` and fmtp lines were, for strict-mode errors.
struct Located<'a> {
    m: Line<'a>,
    fmtp: Option<Line<'a>>,
}

impl Located<'_> {
    /// The error for `missing`, on the fmtp line when the fmtp lacks it, else on the `m=` line.
    fn strict_error(&self, missing: Missing, media: &Media) -> SdpError {
        let line = match self.fmtp {
            Some(fmtp) if missing.in_fmtp => fmtp,
            _ => self.m,
        };
        if missing.field == NOT_ST2110 {
            return line.err(format!(
                "encoding {} is not an ST 2110 encoding; strict parsing accepts raw, jxsv, \
                 smpte291, L16 and L24",
                media.rtpmap.encoding
            ));
        }
        line.err(missing.error().to_string())
    }
}

struct MediaDraft<'a> {
    m: Line<'a>,
    kind: MediaKind,
    port: u16,
    protocol: String,
    payload_type: u8,
    connection: Option<Connection>,
    fields: Vec<Field>,
    rtpmap: Option<RtpMap>,
    fmtp: Option<(Line<'a>, &'a str)>,
    ptime: Option<Ptime>,
    ts_refclk: Option<RefClock>,
    mediaclk: Option<String>,
    source_filter: Option<SourceFilter>,
    mid: Option<String>,
    attributes: Vec<Attribute>,
}

const M_FORMAT: &str =
    "m= must be <media> <port> <protocol> <payload type>, e.g. m=video 5004 RTP/AVP 96";

impl<'a> MediaDraft<'a> {
    fn new(m: Line<'a>, value: &str) -> Result<Self, SdpError> {
        let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
        let [kind, port, protocol, formats @ ..] = tokens.as_slice() else {
            return Err(m.err(M_FORMAT));
        };
        let port = decimal(port).ok_or_else(|| {
            m.err(format!(
                "port {port} must be a number from 0 to 65535 (no port count)"
            ))
        })?;
        let payload_type = match formats {
            [] => return Err(m.err(M_FORMAT)),
            [pt] => payload_type(pt).map_err(|p| m.err(p))?,
            more => {
                return Err(m.err(format!(
                    "one payload type per media section is supported, found {} ({})",
                    more.len(),
                    more.join(" ")
                )));
            }
        };
        let kind = match *kind {
            "video" => MediaKind::Video,
            "audio" => MediaKind::Audio,
            other => MediaKind::Other(other.to_owned()),
        };
        Ok(Self {
            m,
            kind,
            port,
            protocol: (*protocol).to_owned(),
            payload_type,
            connection: None,
            fields: Vec::new(),
            rtpmap: None,
            fmtp: None,
            ptime: None,
            ts_refclk: None,
            mediaclk: None,
            source_filter: None,
            mid: None,
            attributes: Vec::new(),
        })
    }

    fn line(&mut self, line: Line<'a>, kind: char, value: &'a str) -> Result<(), SdpError> {
        match kind {
            'c' => {
                let c = connection(value).map_err(|p| line.err(p))?;
                once(
                    &mut self.connection,
                    line,
                    "c= line in this media section",
                    c,
                )
            }
            'a' => self.attribute(line, value),
            k if MEDIA_FIELDS.contains(k) => {
                self.fields.push(field(k, value));
                Ok(())
            }
            k if "vosuepztr".contains(k) => Err(line.err(format!(
                "{k}= belongs to the session and cannot follow an m= line (line {})",
                self.m.no
            ))),
            k => Err(unknown_type(line, k)),
        }
    }

    fn attribute(&mut self, line: Line<'a>, value: &'a str) -> Result<(), SdpError> {
        let (name, rest) = match value.split_once(':') {
            Some((name, rest)) => (name, Some(rest)),
            None => (value, None),
        };
        let need = |usage: &str| rest.ok_or_else(|| line.err(format!("expected {usage}")));
        let at = |p: Problem| line.err(p);
        match name {
            "rtpmap" => {
                let rest = self.for_us(line, need(RTPMAP_FORMAT)?)?;
                let map = rtpmap(rest).map_err(at)?;
                once(
                    &mut self.rtpmap,
                    line,
                    "a=rtpmap for this payload type",
                    map,
                )
            }
            "fmtp" => {
                let rest = self.for_us(line, need("a=fmtp:<payload type> <parameters>")?)?;
                once(
                    &mut self.fmtp,
                    line,
                    "a=fmtp for this payload type",
                    (line, rest),
                )
            }
            "ptime" => {
                let ptime = ptime(need("a=ptime:<milliseconds>, e.g. a=ptime:1")?).map_err(at)?;
                once(
                    &mut self.ptime,
                    line,
                    "a=ptime in this media section",
                    ptime,
                )
            }
            "ts-refclk" if self.ts_refclk.is_none() => {
                self.ts_refclk = Some(ref_clock(need(REFCLK_FORMAT)?).map_err(at)?);
                Ok(())
            }
            "mediaclk" => {
                let clock = need("a=mediaclk:<clock>, e.g. a=mediaclk:direct=0")?.to_owned();
                once(
                    &mut self.mediaclk,
                    line,
                    "a=mediaclk in this media section",
                    clock,
                )
            }
            "source-filter" => {
                let filter = source_filter(need(FILTER_FORMAT)?).map_err(at)?;
                once(
                    &mut self.source_filter,
                    line,
                    "a=source-filter in this section",
                    filter,
                )
            }
            "mid" => {
                let mid = need("a=mid:<identification tag>")?.to_owned();
                once(&mut self.mid, line, "a=mid in this media section", mid)
            }
            _ => {
                self.attributes.push(attribute(line, value)?);
                Ok(())
            }
        }
    }

    /// Strips the payload type from an rtpmap or fmtp value, checking it is this section's.
    fn for_us(&self, line: Line<'_>, value: &'a str) -> Result<&'a str, SdpError> {
        let value = value.trim_start();
        let (pt, rest) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value, ""));
        let pt = payload_type(pt).map_err(|p| line.err(p))?;
        if pt != self.payload_type {
            return Err(line.err(format!(
                "payload type {pt} is not on the m= line (line {} carries {})",
                self.m.no, self.payload_type
            )));
        }
        Ok(rest.trim_start())
    }

    fn finish(self) -> Result<(Media, Located<'a>), SdpError> {
        let pt = self.payload_type;
        let rtpmap = self.rtpmap.ok_or_else(|| {
            self.m.err(format!(
                "no a=rtpmap:{pt} in this media section; the encoding and clock rate are unknown"
            ))
        })?;
        let fmtp = typed_fmtp(&rtpmap, self.fmtp, self.m, pt)?;
        let located = Located {
            m: self.m,
            fmtp: self.fmtp.map(|(line, _)| line),
        };
        let mut fields = self.fields;
        sort_fields(&mut fields, MEDIA_FIELDS);
        let media = Media {
            kind: self.kind,
            port: self.port,
            protocol: self.protocol,
            payload_type: pt,
            connection: self.connection,
            fields,
            rtpmap,
            fmtp,
            ptime: self.ptime,
            ts_refclk: self.ts_refclk,
            mediaclk: self.mediaclk,
            source_filter: self.source_filter,
            mid: self.mid,
            attributes: self.attributes,
        };
        Ok((media, located))
    }
}

/// Reads the fmtp of a section once its rtpmap is known.
fn typed_fmtp(
    rtpmap: &RtpMap,
    fmtp: Option<(Line<'_>, &str)>,
    m: Line<'_>,
    pt: u8,
) -> Result<Fmtp, SdpError> {
    let text = fmtp.map_or("", |(_, text)| text);
    let at = |p: Problem| match fmtp {
        Some((line, _)) => line.err(p),
        None => m.err(p),
    };
    let enc = rtpmap.encoding.to_ascii_lowercase();
    Ok(match enc.as_str() {
        "raw" if fmtp.is_none() => {
            return Err(m.err(format!(
                "raw video needs an a=fmtp:{pt} line with sampling, depth, width and height"
            )));
        }
        "raw" => Fmtp::Raw(video_fmtp(text).map_err(at)?),
        "jxsv" => Fmtp::Jxsv(jxsv_fmtp(text).map_err(at)?),
        "smpte291" => Fmtp::Smpte291(anc_fmtp(text).map_err(at)?),
        "l16" | "l24" => Fmtp::Audio(audio_fmtp(text).map_err(at)?),
        _ if fmtp.is_none() => Fmtp::None,
        _ => Fmtp::Other(text.to_owned()),
    })
}

fn attribute(line: Line<'_>, value: &str) -> Result<Attribute, SdpError> {
    let (name, value) = match value.split_once(':') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (value, None),
    };
    if name.is_empty() {
        return Err(line.err("an attribute needs a name: a=<name> or a=<name>:<value>"));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value,
    })
}

/// A decimal number of digits only (no sign, no spaces).
fn decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn payload_type(s: &str) -> Result<u8, Problem> {
    decimal(s)
        .filter(|&pt: &u8| pt <= 127)
        .ok_or_else(|| format!("payload type {s} must be a number from 0 to 127"))
}

const ORIGIN_FORMAT: &str = "o= must be <username> <session id> <session version> IN IP4|IP6 \
                             <address>, e.g. o=- 0 0 IN IP4 192.168.1.10";

fn origin(value: &str) -> Result<Origin, Problem> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, net, kind, addr] = tokens.as_slice() else {
        return Err(ORIGIN_FORMAT.to_owned());
    };
    let number = |s: &str, what: &str| {
        decimal(s).ok_or_else(|| format!("{what} {s} must be a number from 0 to {}", u64::MAX))
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: number(id, "session id")?,
        session_version: number(version, "session version")?,
        addr: address(net, kind, addr)?,
    })
}

/// `IN IP4 <v4>` or `IN IP6 <v6>`.
fn address(net: &str, kind: &str, addr: &str) -> Result<IpAddr, Problem> {
    if net != "IN" {
        return Err(format!("network type {net} is not allowed; it must be IN"));
    }
    let parsed = match kind {
        "IP4" => addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => {
            return Err(format!(
                "address type {kind} is not allowed; it must be IP4 or IP6"
            ));
        }
    };
    let want = if kind == "IP4" { "an IPv4" } else { "an IPv6" };
    parsed.ok_or_else(|| format!("{addr} is not {want} address (host names are not supported)"))
}

const CONNECTION_FORMAT: &str =
    "c= must be IN IP4 <address>[/<ttl>] or IN IP6 <address>, e.g. c=IN IP4 239.1.1.1/64";

fn connection(value: &str) -> Result<Connection, Problem> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, kind, spec] = tokens.as_slice() else {
        return Err(CONNECTION_FORMAT.to_owned());
    };
    let mut parts = spec.split('/');
    let addr = address(net, kind, parts.next().unwrap_or_default())?;
    let ttl = match (parts.next(), parts.next()) {
        (None, _) => None,
        (Some(ttl), None) if addr.is_ipv4() => {
            Some(decimal(ttl).ok_or_else(|| format!("TTL {ttl} must be a number from 0 to 255"))?)
        }
        _ => {
            return Err(format!(
                "{spec}: only <IPv4 address>/<ttl> or a bare address is supported (no address \
                 counts)"
            ));
        }
    };
    Ok(Connection { addr, ttl })
}

fn timing(value: &str) -> Result<Timing, Problem> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let problem = || "t= must be <start> <stop> in decimal NTP seconds, e.g. t=0 0".to_owned();
    let [start, stop] = tokens.as_slice() else {
        return Err(problem());
    };
    Ok(Timing {
        start: decimal(start).ok_or_else(problem)?,
        stop: decimal(stop).ok_or_else(problem)?,
    })
}

const RTPMAP_FORMAT: &str =
    "a=rtpmap:<payload type> <encoding>/<clock rate>[/<channels>], e.g. a=rtpmap:96 raw/90000";

fn rtpmap(value: &str) -> Result<RtpMap, Problem> {
    let parts: Vec<&str> = value.trim_end().split('/').collect();
    let (encoding, clock, channels) = match parts.as_slice() {
        [e, c] => (*e, *c, None),
        [e, c, ch] => (*e, *c, Some(*ch)),
        _ => return Err(format!("expected {RTPMAP_FORMAT}")),
    };
    if encoding.is_empty() {
        return Err(format!(
            "the encoding name is empty; expected {RTPMAP_FORMAT}"
        ));
    }
    let clock_rate = decimal(clock).filter(|&c: &u32| c > 0).ok_or_else(|| {
        format!(
            "clock rate {clock} must be a number of Hz from 1 to {}",
            u32::MAX
        )
    })?;
    let channels = match channels {
        None => None,
        Some(ch) => Some(
            decimal(ch)
                .filter(|&n: &u16| n > 0)
                .ok_or_else(|| format!("channel count {ch} must be 1 to 65535"))?,
        ),
    };
    let map = RtpMap {
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    };
    check_video_clock(&map)?;
    Ok(map)
}

/// The video encodings of ST 2110 run on a 90 kHz clock and take no channel count.
fn check_video_clock(map: &RtpMap) -> Result<(), Problem> {
    let enc = map.encoding.to_ascii_lowercase();
    if !["raw", "jxsv", "smpte291"].contains(&enc.as_str()) {
        return Ok(());
    }
    if map.clock_rate != 90_000 || map.channels.is_some() {
        return Err(format!(
            "{} must be {}/90000 (a 90 kHz clock, no channel count)",
            enc, enc
        ));
    }
    Ok(())
}

fn ptime(value: &str) -> Result<Ptime, Problem> {
    let problem = || {
        format!(
            "ptime {value} must be milliseconds with at most 3 decimals, greater than 0, e.g. 1 \
             or 0.125"
        )
    };
    let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
    if frac.is_empty() || frac.len() > 3 {
        return Err(problem());
    }
    let int: u32 = if int.is_empty() {
        0
    } else {
        decimal(int).ok_or_else(problem)?
    };
    // Pad the decimals to microseconds: ".5" is 500 us, ".125" is 125 us.
    let frac_us: u32 = decimal(&format!("{frac:0<3}")).ok_or_else(problem)?;
    let us = int.checked_mul(1000).and_then(|ms| ms.checked_add(frac_us));
    us.and_then(Ptime::from_micros).ok_or_else(problem)
}

const REFCLK_FORMAT: &str = "a=ts-refclk:ptp=IEEE1588-2008:<GMID>:<domain>, \
                             a=ts-refclk:ptp=IEEE1588-2008:traceable or \
                             a=ts-refclk:localmac=<MAC>";

fn ref_clock(value: &str) -> Result<RefClock, Problem> {
    if let Some(ptp) = value.strip_prefix("ptp=IEEE1588-2008:") {
        if ptp == "traceable" {
            return Ok(RefClock::PtpTraceable);
        }
        let problem = || {
            format!(
                "{value}: PTP must be ptp=IEEE1588-2008:<GMID as 8 hex octets \
                 XX-XX-XX-XX-XX-XX-XX-XX>:<domain 0 to 127> or ptp=IEEE1588-2008:traceable"
            )
        };
        let (gmid, domain) = ptp.rsplit_once(':').ok_or_else(problem)?;
        let domain = decimal(domain)
            .filter(|&d: &u8| d <= 127)
            .ok_or_else(problem)?;
        return Ok(RefClock::Ptp {
            gmid: octets(gmid).ok_or_else(problem)?,
            domain,
        });
    }
    if let Some(mac) = value.strip_prefix("localmac=") {
        let mac = octets(mac).ok_or_else(|| {
            format!("{value}: localmac must be 6 hex octets, e.g. localmac=7C-E9-D3-1B-9A-AF")
        })?;
        return Ok(RefClock::LocalMac(mac));
    }
    if value.is_empty() {
        return Err(format!("expected {REFCLK_FORMAT}"));
    }
    Ok(RefClock::Other(value.to_owned()))
}

/// `N` two-digit hex octets separated by `-` (or `:`).
fn octets<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut parts = s.split(['-', ':']);
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

const FILTER_FORMAT: &str = "a=source-filter: incl IN IP4 <group> <source> (one source)";

fn source_filter(value: &str) -> Result<SourceFilter, Problem> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let [mode, net, kind, dest, source] = tokens.as_slice() else {
        return Err(format!(
            "expected {FILTER_FORMAT}; excl, wildcards and lists are not supported"
        ));
    };
    if *mode != "incl" {
        return Err(format!(
            "filter mode {mode} is not supported; expected {FILTER_FORMAT}"
        ));
    }
    Ok(SourceFilter {
        dest: address(net, kind, dest)?,
        source: address(net, kind, source)?,
    })
}

/// The `name[=value]` parameters of an fmtp, separated by `;` (a trailing `;` is fine).
fn params(text: &str) -> Result<Vec<(&str, Option<&str>)>, Problem> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
            None => (part, None),
        };
        if name.is_empty() {
            return Err(format!("parameter {part} has no name before ="));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn extra(name: &str, value: Option<&str>) -> Param {
    Param {
        name: name.to_owned(),
        value: value.map(str::to_owned),
    }
}

/// Stores a parameter that may appear once.
fn put<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), Problem> {
    if slot.is_some() {
        return Err(format!("{name} appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn need<'v>(name: &str, value: Option<&'v str>) -> Result<&'v str, Problem> {
    value.ok_or_else(|| format!("{name} needs a value ({name}=...)"))
}

fn text_value(name: &str, value: Option<&str>) -> Result<String, Problem> {
    match need(name, value)? {
        "" => Err(format!("{name} needs a value ({name}=...)")),
        v => Ok(v.to_owned()),
    }
}

fn sampling(value: Option<&str>) -> Result<Sampling, Problem> {
    let v = need("sampling", value)?;
    Sampling::ALL
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, s)| *s)
        .ok_or_else(|| "sampling must be YCbCr-4:2:2, YCbCr-4:2:0, YCbCr-4:4:4 or RGB".to_owned())
}

fn depth(value: Option<&str>) -> Result<Depth, Problem> {
    let v = need("depth", value)?;
    if v.eq_ignore_ascii_case("16f") {
        return Err(
            "depth 16f (half float) is valid ST 2110-20 but not supported; use 8, 10, 12 \
                    or 16"
                .to_owned(),
        );
    }
    decimal(v)
        .and_then(Depth::from_bits)
        .ok_or_else(|| "depth must be 8, 10, 12, 16 or 16f".to_owned())
}

fn dimension(name: &str, value: Option<&str>) -> Result<u32, Problem> {
    decimal(need(name, value)?)
        .filter(|n: &u32| (1..=32767).contains(n))
        .ok_or_else(|| format!("{name} must be 1 to 32767"))
}

fn frame_rate(value: Option<&str>) -> Result<FrameRate, Problem> {
    let v = need("exactframerate", value)?;
    let digits = v.bytes().all(|b| b.is_ascii_digit() || b == b'/');
    digits
        .then(|| FrameRate::parse(v))
        .flatten()
        .ok_or_else(|| {
            "exactframerate must be an integer or a fraction such as 60000/1001, neither part \
             zero, from 1/1000 to 1000 frames per second"
                .to_owned()
        })
}

/// One of the spellings in `table`, compared without regard to case.
fn one_of<T: Copy>(name: &str, value: Option<&str>, table: &[(&str, T)]) -> Result<T, Problem> {
    let v = need(name, value)?;
    table
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(s, _)| *s).collect();
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            format!("{name} must be {} or {last}", rest.join(", "))
        })
}

pub(super) const PACKING_MODES: [(&str, PackingMode); 2] = [
    ("2110GPM", PackingMode::General),
    ("2110BPM", PackingMode::Block),
];
pub(super) const SENDER_TYPES: [(&str, SenderType); 3] = [
    ("2110TPN", SenderType::Narrow),
    ("2110TPNL", SenderType::NarrowLinear),
    ("2110TPW", SenderType::Wide),
];
pub(super) const RANGES: [(&str, Range); 3] = [
    ("NARROW", Range::Narrow),
    ("FULLPROTECT", Range::FullProtect),
    ("FULL", Range::Full),
];
pub(super) const PACKET_MODES: [(&str, JxsvPacketMode); 2] = [
    ("0", JxsvPacketMode::Codestream),
    ("1", JxsvPacketMode::Slice),
];
pub(super) const TRANS_MODES: [(&str, JxsvTransMode); 2] = [
    ("0", JxsvTransMode::OutOfOrder),
    ("1", JxsvTransMode::Sequential),
];

fn number<T: FromStr>(name: &str, value: Option<&str>, range: &str) -> Result<T, Problem> {
    decimal(need(name, value)?).ok_or_else(|| format!("{name} must be a number from {range}"))
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, Problem> {
    match value {
        None | Some("1") => Ok(true),
        Some("0") => Ok(false),
        Some(_) => Err(format!(
            "{name} is a flag: write {name} alone (or {name}=1, {name}=0)"
        )),
    }
}

fn aspect_ratio(value: Option<&str>) -> Result<AspectRatio, Problem> {
    let problem = || "PAR must be <width>:<height>, both 1 or more, e.g. PAR=1:1".to_owned();
    let (w, h) = need("PAR", value)?.split_once(':').ok_or_else(problem)?;
    let (width, height) = (
        decimal(w).ok_or_else(problem)?,
        decimal(h).ok_or_else(problem)?,
    );
    if width == 0 || height == 0 {
        return Err(problem());
    }
    Ok(AspectRatio { width, height })
}

/// The raw-video parameters that must be there for the stream to be readable.
#[derive(Default)]
struct Geometry {
    sampling: Option<Sampling>,
    depth: Option<Depth>,
    width: Option<u32>,
    height: Option<u32>,
}

fn video_fmtp(text: &str) -> Result<VideoFmtp, Problem> {
    let mut g = Geometry::default();
    let mut f = VideoFmtp::bare(Sampling::YCbCr422, Depth::D8, 1, 1);
    let (mut interlace, mut segmented) = (None, None);
    for (name, v) in params(text)? {
        match name.to_ascii_lowercase().as_str() {
            "sampling" => put(&mut g.sampling, name, sampling(v)?)?,
            "depth" => put(&mut g.depth, name, depth(v)?)?,
            "width" => put(&mut g.width, name, dimension(name, v)?)?,
            "height" => put(&mut g.height, name, dimension(name, v)?)?,
            "exactframerate" => put(&mut f.exactframerate, name, frame_rate(v)?)?,
            "colorimetry" => put(&mut f.colorimetry, name, text_value(name, v)?)?,
            "pm" => put(&mut f.packing_mode, name, one_of("PM", v, &PACKING_MODES)?)?,
            "ssn" => put(&mut f.ssn, name, text_value(name, v)?)?,
            "tcs" => put(&mut f.tcs, name, text_value(name, v)?)?,
            "range" => put(&mut f.range, name, one_of("RANGE", v, &RANGES)?)?,
            "par" => put(&mut f.par, name, aspect_ratio(v)?)?,
            "maxudp" => put(&mut f.maxudp, name, maxudp(v)?)?,
            "interlace" => put(&mut interlace, name, flag(name, v)?)?,
            "segmented" => put(&mut segmented, name, flag(name, v)?)?,
            "tp" => put(&mut f.sender_type, name, one_of("TP", v, &SENDER_TYPES)?)?,
            "troff" => put(&mut f.troff, name, number(name, v, "0 to 4294967295")?)?,
            "cmax" => put(&mut f.cmax, name, number(name, v, "0 to 4294967295")?)?,
            _ => f.extra.push(extra(name, v)),
        }
    }
    (f.interlace, f.segmented) = (interlace == Some(true), segmented == Some(true));
    let missing =
        |what| format!("raw video needs sampling, depth, width and height; {what} is missing");
    f.sampling = g.sampling.ok_or_else(|| missing("sampling"))?;
    f.depth = g.depth.ok_or_else(|| missing("depth"))?;
    f.width = g.width.ok_or_else(|| missing("width"))?;
    f.height = g.height.ok_or_else(|| missing("height"))?;
    Ok(f)
}

fn maxudp(value: Option<&str>) -> Result<u16, Problem> {
    decimal(need("MAXUDP", value)?)
        .filter(|&n: &u16| n > 0)
        .ok_or_else(|| "MAXUDP must be a number of octets from 1 to 65535, e.g. 8960".to_owned())
}

fn jxsv_fmtp(text: &str) -> Result<JxsvFmtp, Problem> {
    let mut f = JxsvFmtp::default();
    for (name, v) in params(text)? {
        match name.to_ascii_lowercase().as_str() {
            "packetmode" => put(&mut f.packetmode, name, packet_mode(v)?)?,
            "transmode" => put(&mut f.transmode, name, trans_mode(v)?)?,
            "profile" => put(&mut f.profile, name, text_value(name, v)?)?,
            "level" => put(&mut f.level, name, text_value(name, v)?)?,
            "sublevel" => put(&mut f.sublevel, name, text_value(name, v)?)?,
            "sampling" => put(&mut f.sampling, name, sampling(v)?)?,
            "depth" => put(&mut f.depth, name, depth(v)?)?,
            "width" => put(&mut f.width, name, dimension(name, v)?)?,
            "height" => put(&mut f.height, name, dimension(name, v)?)?,
            "exactframerate" => put(&mut f.exactframerate, name, frame_rate(v)?)?,
            "colorimetry" => put(&mut f.colorimetry, name, text_value(name, v)?)?,
            "tcs" => put(&mut f.tcs, name, text_value(name, v)?)?,
            "tp" => put(&mut f.sender_type, name, one_of("TP", v, &SENDER_TYPES)?)?,
            "ssn" => put(&mut f.ssn, name, text_value(name, v)?)?,
            _ => f.extra.push(extra(name, v)),
        }
    }
    Ok(f)
}

fn packet_mode(value: Option<&str>) -> Result<JxsvPacketMode, Problem> {
    one_of("packetmode", value, &PACKET_MODES)
        .map_err(|_| "packetmode must be 0 (codestream) or 1 (slice)".to_owned())
}

fn trans_mode(value: Option<&str>) -> Result<JxsvTransMode, Problem> {
    one_of("transmode", value, &TRANS_MODES)
        .map_err(|_| "transmode must be 0 (out of order) or 1 (sequential)".to_owned())
}

fn anc_fmtp(text: &str) -> Result<AncFmtp, Problem> {
    let mut f = AncFmtp::default();
    for (name, v) in params(text)? {
        match name.to_ascii_lowercase().as_str() {
            "did_sdid" => f.did_sdid.push(did_sdid(v)?),
            "vpid_code" => put(&mut f.vpid_code, name, number(name, v, "0 to 255")?)?,
            "exactframerate" => put(&mut f.exactframerate, name, frame_rate(v)?)?,
            "tm" => put(&mut f.tm, name, text_value(name, v)?)?,
            "ssn" => put(&mut f.ssn, name, text_value(name, v)?)?,
            _ => f.extra.push(extra(name, v)),
        }
    }
    Ok(f)
}

fn did_sdid(value: Option<&str>) -> Result<DidSdid, Problem> {
    let problem =
        || "DID_SDID must be {0xDD,0xSS} with two hex octets, e.g. {0x61,0x02}".to_owned();
    let v = need("DID_SDID", value)?;
    let inner = v
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or_else(problem)?;
    let (did, sdid) = inner.split_once(',').ok_or_else(problem)?;
    let hex = |s: &str| {
        let s = s.trim();
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        let ok = (1..=2).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u8::from_str_radix(digits, 16).ok()).flatten()
    };
    Ok(DidSdid {
        did: hex(did).ok_or_else(problem)?,
        sdid: hex(sdid).ok_or_else(problem)?,
    })
}

fn audio_fmtp(text: &str) -> Result<AudioFmtp, Problem> {
    let mut f = AudioFmtp::default();
    for (name, v) in params(text)? {
        match name.to_ascii_lowercase().as_str() {
            "channel-order" => put(&mut f.channel_order, name, text_value(name, v)?)?,
            _ => f.extra.push(extra(name, v)),
        }
    }
    Ok(f)
}
