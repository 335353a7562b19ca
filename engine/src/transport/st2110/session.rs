//! Building ST 2110 sessions (the bridges of `st2110` groups) from a connection's request.
//!
//! Runs on the control thread: it validates the stream against the engine's `[st2110]`
//! settings, opens and configures the socket, writes the tx session's SDP file, and returns the
//! bridge, which then moves to its lcore.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use mcm_control::dataplane::{EdgeCounters, St2110Edge};
use mcm_proto::config::Direction;
use mcm_proto::config::payload::{Ancillary, Audio, AudioFormat, Payload, Video};
use mcm_proto::config::transport::{Redundant, St2110, Transport};
use mcm_proto::st2110::rfc4175::{Depacketizer, Format, Packetizer, PackingMode};
use mcm_proto::st2110::st21::{SenderType, Timing};
use mcm_proto::st2110::{Depth, FrameRate, Sampling};
use mcm_proto::st2110::{sdp, st30};

use super::Settings;
use super::ancillary::{self, AncFrame, St40Rx};
use super::audio::{St30Rx, St30Tx};
use super::clock::Clock;
use super::compressed::{Codestream, St22Rx};
use super::convert::PixelFormat;
use super::paced::{PacedTx, RtpRx, Stream};
use super::video::{Conversion, Rfc4175Frames, St20Rx, St20Tx};
use crate::group::{Part, SINK_QUEUE};
use crate::io::redundant::{RedundantRx, RedundantTx};
use crate::io::udp::{RxAddr, SocketOptions, UdpRx, UdpTx};
use crate::io::{PacketRx, PacketTx};

/// Pixel bytes per RFC 4175 packet: 1080p 10-bit 4:2:2 lines split into 4 packets, 4320 per
/// frame, as ST 2110 senders commonly do; datagrams stay under a 1500-byte MTU.
pub const VIDEO_PAYLOAD_BYTES: usize = 1200;
/// Slots an rx session may hold: the frame being received and the one after it.
const RX_QUOTA: u32 = 2;

/// Builds the bridge `spec` asks for, with the most slots it may hold.
///
/// # Errors
/// A message naming what is wrong with the stream's configuration or why its socket could not
/// be opened.
pub fn build(
    spec: &St2110Edge,
    settings: &Settings,
    copied: Arc<AtomicU64>,
) -> Result<Part, String> {
    let st = &spec.st2110;
    match (st.transport, &spec.payload) {
        (Transport::St2110_20, Payload::Video(v)) => video(spec, v, settings, copied),
        (Transport::St2110_22, Payload::Video(v)) => compressed(spec, v, settings),
        (Transport::St2110_30, Payload::Audio(a)) => audio(spec, a, settings),
        (Transport::St2110_40, Payload::Ancillary(a)) => ancillary(spec, a, settings),
        (t, other) => Err(format!(
            "connection.st2110.transport {} carries {kind}; payload is {} (allowed: \
             payload.{kind})",
            t.as_str(),
            other.as_str(),
            kind = t.payload_kind(),
        )),
    }
}

/// The wire format named by `transportPixelFormat`.
fn wire_format(name: &str) -> Result<(Sampling, Depth, PixelFormat), String> {
    match name {
        "yuv422p10rfc4175" => Ok((
            Sampling::YCbCr422,
            Depth::D10,
            PixelFormat::Yuv422p10rfc4175,
        )),
        "uyvy" => Ok((Sampling::YCbCr422, Depth::D8, PixelFormat::Uyvy)),
        other => Err(format!(
            "connection.st2110.transportPixelFormat {other:?} is not supported (allowed: \
             \"yuv422p10rfc4175\" (4:2:2 10-bit), \"uyvy\" (4:2:2 8-bit))"
        )),
    }
}

/// The sender type `pacing` names (ST 2110-21); narrow when absent.
pub fn sender_type(pacing: Option<&str>) -> Result<SenderType, String> {
    match pacing.map(str::to_ascii_lowercase).as_deref() {
        None | Some("narrow" | "2110tpn" | "gap" | "default") => Ok(SenderType::Narrow),
        Some("narrow_linear" | "linear" | "2110tpnl") => Ok(SenderType::NarrowLinear),
        Some("wide" | "2110tpw") => Ok(SenderType::Wide),
        Some(other) => Err(format!(
            "connection.st2110.pacing {other:?} is not a sender type (allowed: \"narrow\", \
             \"narrow_linear\", \"wide\", or the SDP names 2110TPN, 2110TPNL, 2110TPW)"
        )),
    }
}

fn ipv4(st: &St2110) -> Result<Ipv4Addr, String> {
    match st.ip_addr {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(format!(
            "connection.st2110.ipAddr {a} is IPv6 (allowed: IPv4, as ST 2110 networks use)"
        )),
    }
}

fn video(
    spec: &St2110Edge,
    v: &Video,
    settings: &Settings,
    copied: Arc<AtomicU64>,
) -> Result<Part, String> {
    let st = &spec.st2110;
    let from_sdp = stream_from_sdp(spec)?;
    let wire_name = match &from_sdp {
        Some(s) => match s.video {
            Some((Sampling::YCbCr422, Depth::D10, ..)) => "yuv422p10rfc4175",
            Some((Sampling::YCbCr422, Depth::D8, ..)) => "uyvy",
            Some((sampling, depth, ..)) => {
                return Err(format!(
                    "sdpFile: {sampling} {depth}-bit video is not served yet (allowed: \
                     YCbCr-4:2:2 8 or 10 bits)"
                ));
            }
            None => return Err("sdpFile: no raw/90000 video section".to_owned()),
        },
        None => st
            .transport_pixel_format
            .as_deref()
            .unwrap_or("yuv422p10rfc4175"),
    };
    if let Some((.., w, h)) = from_sdp.as_ref().and_then(|s| s.video)
        && (w, h) != (v.width, v.height)
    {
        return Err(format!(
            "sdpFile describes {w}x{h} video; payload.video is {}x{} (allowed: the same size)",
            v.width, v.height
        ));
    }
    let payload_type = from_sdp
        .as_ref()
        .map_or(st.payload_type, |s| s.payload_type);
    let (sampling, depth, wire) = wire_format(wire_name)?;
    let app = v.pixel_format;
    let format = Format::new(sampling, depth, v.width, v.height)
        .map_err(|e| format!("payload.video {}x{} as {wire_name}: {e}", v.width, v.height))?;
    let conversion = if app == wire {
        None
    } else if wire == PixelFormat::Yuv422p10rfc4175 && app != PixelFormat::Uyvy {
        Some(Conversion::new(
            app,
            v.width,
            v.height,
            format.frame_bytes(),
            copied,
        ))
    } else {
        return Err(format!(
            "payload.video.pixelFormat {} cannot be carried as transportPixelFormat {wire_name} \
             (allowed: the same format, or yuv422p10le/v210 over yuv422p10rfc4175)",
            v.pixel_format.as_str()
        ));
    };
    let app_bytes = v
        .frame_size()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("payload.video {}x{} has no frame size", v.width, v.height))?;
    let rate = FrameRate::from_fps(v.fps).ok_or_else(|| {
        format!(
            "payload.video.fps {} is not a frame rate (allowed: 0.001 to 1000)",
            v.fps
        )
    })?;
    let group = ipv4(st)?;
    let counters = spec.counters.clone();
    let opts = video_opts(settings);
    match spec.direction {
        Direction::Tx => {
            let sender = sender_type(st.pacing.as_deref())?;
            let packetizer = Packetizer::new(format, PackingMode::Gpm, VIDEO_PAYLOAD_BYTES)
                .map_err(|e| format!("payload.video: {e}"))?;
            let timing = Timing::new(
                rate,
                v.height,
                false,
                packetizer.packets_per_frame(),
                sender,
            );
            let tx = tx_socket(settings, st, &opts, &counters)?;
            let name = format!("st2110-20 tx {}", tx.paths());
            let sdp_text = video_sdp(&tx, &format, rate, sender);
            let sdp_path = write_sdp(settings, "tx", tx.dest, &sdp_text, &counters)?;
            let stream = Stream {
                payload_type: st.payload_type,
                ssrc: random_u32(),
                rate,
                height: v.height,
                sender,
            };
            let format = Rfc4175Frames::new(packetizer, conversion, counters.clone());
            tracing::info!(
                "st2110-20 tx {} -> {}: {}x{} {rate} fps {wire_name}, {} packets per frame, \
                 {sender} pacing",
                tx.sources(),
                tx.paths(),
                v.width,
                v.height,
                timing.packets()
            );
            let tx = St20Tx::new(name, tx.udp, format, stream, counters, Clock::Tai)
                .with_sdp_file(sdp_path);
            Ok(Part::Sink(Box::new(tx), sink_quota(spec)))
        }
        Direction::Rx => {
            let end = open_rx(settings, st, group, from_sdp.as_ref(), &opts, &counters)?;
            let name = format!("st2110-20 rx {}", end.at);
            tracing::info!(
                "st2110-20 rx on {}{}: {}x{} {wire_name}",
                end.at,
                end.from,
                v.width,
                v.height
            );
            let rx = St20Rx::new(
                name,
                end.rx,
                Depacketizer::new(format),
                conversion,
                app_bytes,
                counters,
                Clock::Tai,
            )
            .with_source_filter(end.filter)
            .with_payload_type(payload_type);
            Ok(Part::Source(Box::new(rx), RX_QUOTA))
        }
    }
}

fn audio(spec: &St2110Edge, a: &Audio, settings: &Settings) -> Result<Part, String> {
    let st = &spec.st2110;
    let encoding = match a.format {
        AudioFormat::PcmS24be => st30::Encoding::L24,
        AudioFormat::PcmS16be => st30::Encoding::L16,
        AudioFormat::PcmS8 => {
            return Err(
                "payload.audio.format pcm_s8 has no ST 2110-30 encoding (allowed: \
                        pcm_s24be (L24), pcm_s16be (L16))"
                    .to_owned(),
            );
        }
    };
    let rate = a.sample_rate.hz();
    let ptime = st30::PacketTime::from_ptime(a.packet_time.as_str(), rate)
        .or_else(|| {
            let samples = a.packet_time.samples_at(a.sample_rate)?;
            st30::PacketTime::from_samples(samples, rate)
        })
        .ok_or_else(|| {
            format!(
                "payload.audio.packetTime {} at {rate} Hz has no ST 2110-30 packet time",
                a.packet_time.as_str()
            )
        })?;
    let format = st30::Format::from_packet_time(encoding, a.channels, rate, ptime)
        .map_err(|e| format!("payload.audio: {e}"))?;
    let from_sdp = stream_from_sdp(spec)?;
    let payload_type = from_sdp
        .as_ref()
        .map_or(st.payload_type, |s| s.payload_type);
    let group = ipv4(st)?;
    let counters = spec.counters.clone();
    let opts = SocketOptions {
        dscp: settings.dscp_audio,
        buffer_bytes: settings.socket_buffer.min(4 << 20),
        multicast_ttl: settings.multicast_ttl,
        interface: settings.local_ip,
        rx_timestamps: false,
        gro: false,
    };
    match spec.direction {
        Direction::Tx => {
            let tx = tx_socket(settings, st, &opts, &counters)?;
            let audio = sdp::AudioParams {
                encoding: match encoding {
                    st30::Encoding::L16 => sdp::AudioEncoding::L16,
                    st30::Encoding::L24 => sdp::AudioEncoding::L24,
                },
                sample_rate: rate,
                channels: a.channels,
                ptime: sdp::Ptime::from_micros((format.packet_duration_ns() / 1000) as u32)
                    .ok_or_else(|| format!("payload.audio: no SDP ptime for {format}"))?,
                channel_order: None,
            };
            let text = tx.sdp(sdp::Session::st2110_30(&tx.params, &audio));
            let sdp_path = write_sdp(settings, "tx", tx.dest, &text, &counters)?;
            tracing::info!("st2110-30 tx {} -> {}: {format}", tx.sources(), tx.paths());
            let name = format!("st2110-30 tx {}", tx.paths());
            let tx = St30Tx::new(
                name,
                tx.udp,
                format,
                st.payload_type,
                random_u32(),
                counters,
                Clock::Tai,
            )
            .with_sdp_file(sdp_path);
            Ok(Part::Sink(Box::new(tx), sink_quota(spec)))
        }
        Direction::Rx => {
            let end = open_rx(settings, st, group, from_sdp.as_ref(), &opts, &counters)?;
            tracing::info!("st2110-30 rx on {}{}: {format}", end.at, end.from);
            let name = format!("st2110-30 rx {}", end.at);
            let rx = St30Rx::new(name, end.rx, format, payload_type, counters, Clock::Tai)
                .with_source_filter(end.filter);
            Ok(Part::Source(Box::new(rx), RX_QUOTA))
        }
    }
}

/// The socket options of a video or ancillary stream.
fn video_opts(settings: &Settings) -> SocketOptions {
    SocketOptions {
        dscp: settings.dscp_video,
        buffer_bytes: settings.socket_buffer,
        multicast_ttl: settings.multicast_ttl,
        interface: settings.local_ip,
        rx_timestamps: false,
        gro: true,
    }
}

/// A tx session's sender: a socket connected to `ipAddr:port` (GSO as `st2110.gso` says), or
/// with `redundant` (ST 2022-7) two, one per path, each from its path's interface; with the
/// SDP parameters of the stream it sends.
struct TxSocket {
    udp: Box<dyn PacketTx>,
    /// The first path's source and destination.
    source: SocketAddrV4,
    dest: SocketAddrV4,
    params: sdp::TxParams,
    /// The second path's, with its SDP parameters.
    second: Option<(SocketAddrV4, SocketAddrV4, sdp::TxParams)>,
}

impl TxSocket {
    /// Where it sends, e.g. `239.1.1.1:5004` or `239.1.1.1:5004 + 239.2.2.2:5004`.
    fn paths(&self) -> String {
        match &self.second {
            Some((_, d, _)) => format!("{} + {d}", self.dest),
            None => self.dest.to_string(),
        }
    }

    /// Where it sends from.
    fn sources(&self) -> String {
        match &self.second {
            Some((s, ..)) => format!("{} + {s}", self.source),
            None => self.source.to_string(),
        }
    }

    /// The SDP text of `session`: with the second path as an ST 2022-7 `a=group:DUP` leg.
    fn sdp(&self, session: sdp::Session) -> String {
        match &self.second {
            Some((.., p)) => session.with_st2022_7(p).to_string(),
            None => session.to_string(),
        }
    }
}

fn tx_socket(
    settings: &Settings,
    st: &St2110,
    opts: &SocketOptions,
    counters: &Arc<EdgeCounters>,
) -> Result<TxSocket, String> {
    let name = format!("mcm {} {}:{}", st.transport.as_str(), st.ip_addr, st.port);
    let path = |leg: usize, dest: SocketAddrV4| {
        let (interface, local_ip) = settings.path(leg);
        let opts = SocketOptions {
            interface: local_ip,
            ..*opts
        };
        let mut udp = open_tx(settings, local_ip, dest, &opts)?;
        if !settings.gso {
            udp.disable_gso();
        }
        let source = udp.local().map_err(|e| format!("socket: {e}"))?;
        let params = tx_params(
            settings,
            interface,
            name.clone(),
            source,
            dest,
            st.payload_type,
        );
        Ok::<_, String>((udp, source, params))
    };
    let dest = SocketAddrV4::new(ipv4(st)?, st.port);
    let (first, source, params) = path(0, dest)?;
    let Some(r) = &st.redundant else {
        return Ok(TxSocket {
            udp: Box::new(first),
            source,
            dest,
            params,
            second: None,
        });
    };
    let dest2 = SocketAddrV4::new(second_ipv4(r)?, r.port);
    let (second, source2, params2) = path(1, dest2)?;
    Ok(TxSocket {
        udp: Box::new(RedundantTx::new(first, second, counters.clone())),
        source,
        dest,
        params,
        second: Some((source2, dest2, params2)),
    })
}

/// The second path's address, IPv4 like the first.
fn second_ipv4(r: &Redundant) -> Result<Ipv4Addr, String> {
    match r.ip_addr {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(format!(
            "connection.st2110.redundant.ipAddr {a} is IPv6 (allowed: IPv4, as ST 2110 \
             networks use)"
        )),
    }
}

/// An rx session's RTP end: its socket (see [`open_rx`]), payload type and source filter,
/// with a name for logs.
fn rtp_rx(
    settings: &Settings,
    st: &St2110,
    from_sdp: Option<&SdpStream>,
    opts: &SocketOptions,
    counters: &Arc<EdgeCounters>,
) -> Result<(RtpRx, String), String> {
    let end = open_rx(settings, st, ipv4(st)?, from_sdp, opts, counters)?;
    let payload_type = from_sdp.map_or(st.payload_type, |s| s.payload_type);
    let name = format!("{} rx {}", st.transport.as_str(), end.at);
    tracing::info!("{name}{}: payload type {payload_type}", end.from);
    Ok((RtpRx::new(end.rx, payload_type, end.filter), name))
}

/// The sampling and depth of the decoded picture `pixelFormat` describes (for the SDP).
fn decoded_format(v: &Video) -> (Sampling, Depth) {
    match v.pixel_format {
        PixelFormat::Uyvy => (Sampling::YCbCr422, Depth::D8),
        PixelFormat::Yuv422p10le | PixelFormat::V210 | PixelFormat::Yuv422p10rfc4175 => {
            (Sampling::YCbCr422, Depth::D10)
        }
    }
}

/// Checks that an `sdpFile` describes a stream of `encoding`.
fn check_encoding(from_sdp: Option<&SdpStream>, encoding: &str) -> Result<(), String> {
    match from_sdp {
        Some(s) if !s.encoding.eq_ignore_ascii_case(encoding) => Err(format!(
            "sdpFile: the stream is {}/90000 (allowed for this transport: {encoding}/90000)",
            s.encoding
        )),
        _ => Ok(()),
    }
}

/// An ST 2110-22 session: JPEG XS codestreams of at most `payload_size` bytes (the buffer's
/// size: `maxPayloadSize`, or the uncompressed frame size when it is 0).
fn compressed(spec: &St2110Edge, v: &Video, settings: &Settings) -> Result<Part, String> {
    let st = &spec.st2110;
    let rate = FrameRate::from_fps(v.fps).ok_or_else(|| {
        format!(
            "payload.video.fps {} is not a frame rate (allowed: 0.001 to 1000)",
            v.fps
        )
    })?;
    let opts = video_opts(settings);
    let counters = spec.counters.clone();
    match spec.direction {
        Direction::Tx => {
            let sender = sender_type(st.pacing.as_deref())?;
            let format = Codestream::new(ancillary::MAX_RTP_PAYLOAD)
                .map_err(|e| format!("st2110-22: {e}"))?;
            let tx = tx_socket(settings, st, &opts, &counters)?;
            let (sampling, depth) = decoded_format(v);
            let mut fmtp = sdp::JxsvFmtp::new(v.width, v.height, rate);
            fmtp.sampling = Some(sampling);
            fmtp.depth = Some(depth);
            fmtp.sender_type = Some(sdp_sender_type(sender));
            // b=AS: the largest codestream every frame period, in kbit/s.
            let kbps = (f64::from(spec.payload_size) * 8.0 * v.fps / 1000.0).ceil() as u64;
            let text = tx.sdp(sdp::Session::st2110_22(&tx.params, fmtp, kbps));
            let sdp_path = write_sdp(settings, "tx", tx.dest, &text, &counters)?;
            tracing::info!(
                "st2110-22 tx {} -> {}: {}x{} {rate} fps, codestreams up to {} bytes in \
                 {}-byte packets, {sender} pacing",
                tx.sources(),
                tx.paths(),
                v.width,
                v.height,
                spec.payload_size,
                format.data_per_packet()
            );
            let stream = Stream {
                payload_type: st.payload_type,
                ssrc: random_u32(),
                rate,
                height: v.height,
                sender,
            };
            let name = format!("st2110-22 tx {}", tx.paths());
            let tx = PacedTx::new(name, tx.udp, format, stream, counters, Clock::Tai)
                .with_sdp_file(sdp_path);
            Ok(Part::Sink(Box::new(tx), sink_quota(spec)))
        }
        Direction::Rx => {
            let from_sdp = stream_from_sdp(spec)?;
            check_encoding(from_sdp.as_ref(), "jxsv")?;
            if let Some((w, h)) = from_sdp.as_ref().and_then(|s| s.size)
                && (w, h) != (v.width, v.height)
            {
                return Err(format!(
                    "sdpFile describes {w}x{h} video; payload.video is {}x{} (allowed: the \
                     same size)",
                    v.width, v.height
                ));
            }
            let (rtp, name) = rtp_rx(settings, st, from_sdp.as_ref(), &opts, &counters)?;
            let rx = St22Rx::new(name, rtp, counters, Clock::Tai);
            Ok(Part::Source(Box::new(rx), RX_QUOTA))
        }
    }
}

/// An ST 2110-40 session: one buffer of ANC packets per frame period (see
/// [`ancillary`](super::ancillary) for the in-slot format).
fn ancillary(spec: &St2110Edge, a: &Ancillary, settings: &Settings) -> Result<Part, String> {
    let st = &spec.st2110;
    let rate = FrameRate::from_fps(a.fps).ok_or_else(|| {
        format!(
            "payload.ancillary.fps {} is not a frame rate (allowed: 0.001 to 1000)",
            a.fps
        )
    })?;
    let opts = video_opts(settings);
    let counters = spec.counters.clone();
    match spec.direction {
        Direction::Tx => {
            let sender = sender_type(st.pacing.as_deref())?;
            let tx = tx_socket(settings, st, &opts, &counters)?;
            let fmtp = sdp::AncFmtp {
                exactframerate: Some(rate),
                ssn: Some("ST2110-40:2023".to_owned()),
                ..sdp::AncFmtp::default()
            };
            let text = tx.sdp(sdp::Session::st2110_40(&tx.params, fmtp));
            let sdp_path = write_sdp(settings, "tx", tx.dest, &text, &counters)?;
            tracing::info!(
                "st2110-40 tx {} -> {}: {rate} fps",
                tx.sources(),
                tx.paths()
            );
            let stream = Stream {
                payload_type: st.payload_type,
                ssrc: random_u32(),
                rate,
                // ANC accompanies video of unknown height: the 1080-line -21 parameters.
                height: 1080,
                sender,
            };
            let name = format!("st2110-40 tx {}", tx.paths());
            let format = AncFrame::new(ancillary::MAX_RTP_PAYLOAD);
            let tx = PacedTx::new(name, tx.udp, format, stream, counters, Clock::Tai)
                .with_sdp_file(sdp_path);
            Ok(Part::Sink(Box::new(tx), sink_quota(spec)))
        }
        Direction::Rx => {
            let from_sdp = stream_from_sdp(spec)?;
            check_encoding(from_sdp.as_ref(), "smpte291")?;
            let (rtp, name) = rtp_rx(settings, st, from_sdp.as_ref(), &opts, &counters)?;
            let rx = St40Rx::new(name, rtp, counters, Clock::Tai);
            Ok(Part::Source(Box::new(rx), RX_QUOTA))
        }
    }
}

fn sdp_sender_type(sender: SenderType) -> sdp::SenderType {
    match sender {
        SenderType::Narrow => sdp::SenderType::Narrow,
        SenderType::NarrowLinear => sdp::SenderType::NarrowLinear,
        SenderType::Wide => sdp::SenderType::Wide,
    }
}

/// What an rx session takes from its `sdpFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SdpStream {
    payload_type: u8,
    /// The sender (SSM `source-filter`).
    source: Option<Ipv4Addr>,
    /// The `a=rtpmap` encoding name (`raw`, `jxsv`, `smpte291`, `L24`, ...).
    encoding: String,
    /// Raw video: sampling, depth, width, height.
    video: Option<(Sampling, Depth, u32, u32)>,
    /// JPEG XS video: width and height, when the fmtp gives both.
    size: Option<(u32, u32)>,
    /// ST 2022-7: the other media section of the stream's `a=group:DUP` (its destination,
    /// port and source filter).
    second: Option<Redundant>,
}

/// Reads the connection's `sdpFile`, if any: the media section on `ipAddr:port` (its `c=` or
/// the session's), checked against the connection, and the other leg of its `a=group:DUP`
/// when it is in one.
fn stream_from_sdp(spec: &St2110Edge) -> Result<Option<SdpStream>, String> {
    let st = &spec.st2110;
    let Some(path) = &st.sdp_file else {
        return Ok(None);
    };
    if spec.direction == Direction::Tx {
        return Err(
            "connection.st2110.sdpFile describes a stream to receive (allowed on rx \
                    connections only; a tx session writes its own SDP)"
                .to_owned(),
        );
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("sdpFile {path:?}: {e}"))?;
    let session = sdp::Session::parse(&text).map_err(|e| format!("sdpFile {path:?}: {e}"))?;
    // The section on ipAddr:port; else the first on the port (whose address is then refused).
    let on_port = |m: &&sdp::Media| m.port == st.port;
    let media = session
        .media
        .iter()
        .filter(on_port)
        .find(|m| {
            session
                .connection_of(m)
                .is_some_and(|c| c.addr == st.ip_addr)
        })
        .or_else(|| session.media.iter().find(on_port))
        .ok_or_else(|| format!("sdpFile {path:?} has no media section on port {}", st.port))?;
    if let Some(c) = session.connection_of(media)
        && c.addr != st.ip_addr
    {
        return Err(format!(
            "sdpFile {path:?}: the stream goes to {}, the connection's ipAddr is {} (allowed: \
             the same address)",
            c.addr, st.ip_addr
        ));
    }
    let source_of = |m: &sdp::Media| match m.source_filter.as_ref().map(|f| f.source) {
        Some(IpAddr::V4(s)) => Some(s),
        _ => None,
    };
    let video = match &media.fmtp {
        sdp::Fmtp::Raw(f) => Some((f.sampling, f.depth, f.width, f.height)),
        _ => None,
    };
    let size = match &media.fmtp {
        sdp::Fmtp::Jxsv(f) => f.width.zip(f.height),
        _ => None,
    };
    let second =
        match dup_partner(&session, media) {
            None => None,
            Some(other) => {
                let addr = session.connection_of(other).map(|c| c.addr).ok_or_else(|| {
                format!(
                    "sdpFile {path:?}: the a=group:DUP section on port {} has no c= address",
                    other.port
                )
            })?;
                Some(Redundant {
                    ip_addr: addr,
                    port: other.port,
                    multicast_source_ip_addr: source_of(other).map(IpAddr::V4),
                })
            }
        };
    Ok(Some(SdpStream {
        payload_type: media.payload_type,
        source: source_of(media),
        encoding: media.rtpmap.encoding.clone(),
        video,
        size,
        second,
    }))
}

/// The other media section of the `a=group:DUP` (RFC 7104) `media` is in, if any.
fn dup_partner<'a>(session: &'a sdp::Session, media: &sdp::Media) -> Option<&'a sdp::Media> {
    let mid = media.mid.as_deref()?;
    let group = session.attributes.iter().find_map(|a| {
        let v = a.value.as_deref().filter(|_| a.name == "group")?;
        let mids: Vec<&str> = v.strip_prefix("DUP ")?.split_whitespace().collect();
        mids.contains(&mid).then_some(mids)
    })?;
    let other = group.into_iter().find(|m| *m != mid)?;
    session
        .media
        .iter()
        .find(|m| m.mid.as_deref() == Some(other))
}

/// An rx session's receiving end: one socket, or (ST 2022-7) the merge of two, with where it
/// listens and whom it accepts, for names and logs.
struct RxEnd {
    rx: Box<dyn PacketRx>,
    /// Where it listens, e.g. `239.1.1.1:5004` or `239.1.1.1:5004 + 239.2.2.2:5004`.
    at: String,
    /// `" from 10.0.0.5"` and the like, or empty (any sender).
    from: String,
    /// The only sender the receiver behind it accepts (`None`: any, or a merge that filters
    /// each path itself).
    filter: Option<Ipv4Addr>,
}

/// Opens an rx session's socket (see [`rx_addr`]; the SDP's source filter wins) and, with
/// `redundant` or an SDP `a=group:DUP`, the second path's on its own interface, merged by
/// [`RedundantRx`].
fn open_rx(
    settings: &Settings,
    st: &St2110,
    group: Ipv4Addr,
    from_sdp: Option<&SdpStream>,
    opts: &SocketOptions,
    counters: &Arc<EdgeCounters>,
) -> Result<RxEnd, String> {
    let first = Leg {
        addr: group,
        port: st.port,
        source: st.multicast_source_ip_addr,
        sdp_source: from_sdp.and_then(|s| s.source),
    };
    let Some(second) = second_path(st, from_sdp)? else {
        let (udp, at, filter) = open_leg(settings, st, 0, &first, opts)?;
        return Ok(RxEnd {
            rx: Box::new(udp),
            at: format!("{}:{}", at.addr, at.port),
            from: filter.map(|f| format!(" from {f}")).unwrap_or_default(),
            filter,
        });
    };
    let leg2 = Leg {
        addr: second_ipv4(&second)?,
        port: second.port,
        source: second.multicast_source_ip_addr,
        sdp_source: None,
    };
    let (udp, at, filter) = open_leg(settings, st, 0, &first, opts)?;
    let (udp2, at2, filter2) = open_leg(settings, st, 1, &leg2, opts)?;
    if (at.addr, at.port) == (at2.addr, at2.port) {
        return Err(format!(
            "connection.st2110.redundant: the second path would listen on {}:{} as the first \
             does (allowed: another port or group, or st2110.redundant_interface with its own \
             address)",
            at.addr, at.port
        ));
    }
    let legs: [(Box<dyn PacketRx>, Option<Ipv4Addr>); 2] =
        [(Box::new(udp), filter), (Box::new(udp2), filter2)];
    let rx = RedundantRx::new(legs, settings.redundancy_window, counters.clone())
        .map_err(|e| format!("ST 2022-7 merge: {e}"))?;
    let from = |f: Option<Ipv4Addr>| f.map_or_else(|| "anyone".to_owned(), |f| f.to_string());
    Ok(RxEnd {
        rx: Box::new(rx),
        at: format!("{}:{} + {}:{}", at.addr, at.port, at2.addr, at2.port),
        from: format!(" from {} + {}", from(filter), from(filter2)),
        filter: None,
    })
}

/// The second path of an rx stream: `redundant`, or the SDP's `a=group:DUP` leg; when both
/// are given they must agree, and the SDP's source filter wins (as on the first path).
fn second_path(st: &St2110, from_sdp: Option<&SdpStream>) -> Result<Option<Redundant>, String> {
    match (&st.redundant, from_sdp.and_then(|s| s.second.as_ref())) {
        (None, sdp) => Ok(sdp.cloned()),
        (Some(r), None) => Ok(Some(r.clone())),
        (Some(r), Some(sdp)) if (r.ip_addr, r.port) != (sdp.ip_addr, sdp.port) => Err(format!(
            "sdpFile: the stream's a=group:DUP second leg is {}:{}; \
             connection.st2110.redundant is {}:{} (allowed: the same)",
            sdp.ip_addr, sdp.port, r.ip_addr, r.port
        )),
        (Some(r), Some(sdp)) => Ok(Some(Redundant {
            multicast_source_ip_addr: sdp.multicast_source_ip_addr.or(r.multicast_source_ip_addr),
            ..r.clone()
        })),
    }
}

/// One path of an rx stream, as configured.
struct Leg {
    /// The multicast group, or for unicast the sender.
    addr: Ipv4Addr,
    port: u16,
    /// `multicastSourceIpAddr`.
    source: Option<IpAddr>,
    /// The SDP's source filter (wins over `source`).
    sdp_source: Option<Ipv4Addr>,
}

/// Opens path `leg`'s socket on its interface and returns it with where it listens and the
/// only sender accepted (`None`: any, said in the log).
fn open_leg(
    settings: &Settings,
    st: &St2110,
    leg: usize,
    path: &Leg,
    opts: &SocketOptions,
) -> Result<(UdpRx, RxAddr, Option<Ipv4Addr>), String> {
    let (_, local_ip) = settings.path(leg);
    let group = path.addr;
    let mut at = rx_addr(settings, leg, path)?;
    if let Some(src) = path.sdp_source {
        at.source = Some(src);
    }
    let opts = SocketOptions {
        interface: local_ip,
        ..*opts
    };
    let udp = UdpRx::open(at, &opts)
        .map_err(|e| format!("cannot listen on {}:{}: {e}", at.addr, at.port))?
        .with_read_interval(settings.rx_read_interval);
    // Never silently any sender: the SSM or SDP source when there is one, else for unicast
    // the path's address as the sender (this engine's own address: senders on this host); only
    // "anySource": true takes everyone. Packets from others are dropped and counted
    // (`packets_foreign`).
    let filter = if st.any_source {
        None
    } else if let Some(s) = at.source {
        Some(s)
    } else if !group.is_multicast() {
        Some(group)
    } else {
        None
    };
    match filter {
        None if !st.any_source => mcm_control::warn_limited!(
            "st2110 rx {group}:{}: any sender in the multicast group is accepted (no \
             multicastSourceIpAddr or SDP source filter; \"anySource\": true says so on \
             purpose)",
            path.port
        ),
        Some(s) if s == local_ip => mcm_control::log_limited!(
            info,
            "st2110 rx {group}:{}: accepts packets from {s} only, this engine's own address \
             (senders on this host); give the sender's address as ipAddr, or \"anySource\": \
             true",
            path.port
        ),
        _ => {}
    }
    Ok((udp, at, filter))
}

/// Where path `leg` of an rx session listens: the multicast group (joined on the path's
/// interface, SSM when a source is given), or the path's local address for unicast.
fn rx_addr(settings: &Settings, leg: usize, path: &Leg) -> Result<RxAddr, String> {
    let key = ["connection.st2110", "connection.st2110.redundant"][leg];
    if !settings.rx_ports.contains(&path.port) {
        return Err(format!(
            "{key}.port {} is outside st2110.rx_ports ({}-{})",
            path.port,
            settings.rx_ports.start(),
            settings.rx_ports.end()
        ));
    }
    let group = path.addr;
    let source = match path.source {
        None => None,
        Some(IpAddr::V4(s)) if group.is_multicast() => Some(s),
        Some(s) if group.is_multicast() => {
            return Err(format!(
                "{key}.multicastSourceIpAddr {s} is IPv6 (allowed: IPv4, as ipAddr is)"
            ));
        }
        Some(s) => {
            return Err(format!(
                "{key}.multicastSourceIpAddr {s} needs an IPv4 multicast ipAddr (got {group})"
            ));
        }
    };
    let addr = if group.is_multicast() {
        group
    } else {
        settings.path(leg).1
    };
    Ok(RxAddr {
        addr,
        port: path.port,
        source,
    })
}

/// Opens a tx socket from the first free source port of `st2110.tx_ports`.
fn open_tx(
    settings: &Settings,
    local_ip: Ipv4Addr,
    dest: SocketAddrV4,
    opts: &SocketOptions,
) -> Result<UdpTx, String> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let (first, last) = (*settings.tx_ports.start(), *settings.tx_ports.end());
    let span = u32::from(last - first) + 1;
    let mut last_err = None;
    for _ in 0..span.min(1024) {
        // Relaxed: only spreads the search; a collision is retried below.
        let k = u32::from(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let local = SocketAddrV4::new(local_ip, first + k as u16);
        match UdpTx::open(local, dest, opts) {
            Ok(udp) => return Ok(udp),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
            Err(e) => return Err(format!("cannot send from {local} to {dest}: {e}")),
        }
    }
    Err(format!(
        "no free source port in st2110.tx_ports {first}-{last}: {}",
        last_err.map_or_else(|| "none tried".to_owned(), |e| e.to_string())
    ))
}

/// The `o=`, `c=` and clock lines of a tx session's SDP.
fn tx_params(
    settings: &Settings,
    interface: &str,
    name: String,
    source: SocketAddrV4,
    dest: SocketAddrV4,
    pt: u8,
) -> sdp::TxParams {
    sdp::TxParams {
        name,
        session_id: Clock::Tai.now_ns() / 1_000_000_000,
        session_version: 1,
        source: IpAddr::V4(*source.ip()),
        destination: IpAddr::V4(*dest.ip()),
        port: dest.port(),
        ttl: settings.multicast_ttl,
        payload_type: pt,
        // No PTP here: RTP time follows this host's TAI clock, named by the interface's MAC.
        ref_clock: sdp::RefClock::LocalMac(interface_mac(interface)),
    }
}

/// The MAC address of `interface` (all zeroes for loopback or when it cannot be read).
fn interface_mac(interface: &str) -> [u8; 6] {
    let text =
        std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).unwrap_or_default();
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// The most frames a tx session holds: the group's quota, within its queue.
fn sink_quota(spec: &St2110Edge) -> u32 {
    spec.quota.clamp(1, SINK_QUEUE as u32)
}

/// The SDP of a tx video session (ST 2110-20 fmtp, ts-refclk, mediaclk, source-filter).
fn video_sdp(tx: &TxSocket, format: &Format, rate: FrameRate, sender: SenderType) -> String {
    let mut fmtp = sdp::VideoFmtp::new(
        format.sampling(),
        format.depth(),
        format.width(),
        format.height(),
        rate,
    );
    fmtp.sender_type = Some(sdp_sender_type(sender));
    tx.sdp(sdp::Session::st2110_20(&tx.params, fmtp))
}

/// A tx session's published SDP file, removed when the session is dropped — unless a newer
/// session of the same stream has replaced it meanwhile (a session that finishes its queue after
/// its group was destroyed is dropped later, on the control thread).
#[derive(Debug)]
pub struct SdpFile {
    dir: PathBuf,
    name: String,
    text: String,
}

impl Drop for SdpFile {
    fn drop(&mut self) {
        crate::rundir::remove_if_unchanged(&self.dir, &self.name, &self.text);
    }
}

/// Writes `text` to `<sdp_dir>/st2110-<dir>-<ip>-<port>.sdp` through the directory (a link
/// planted under that name is replaced, never followed).
fn write_sdp(
    settings: &Settings,
    dir: &str,
    dest: SocketAddrV4,
    text: &str,
    counters: &mcm_control::dataplane::EdgeCounters,
) -> Result<SdpFile, String> {
    let name = format!("st2110-{dir}-{}-{}.sdp", dest.ip(), dest.port());
    let path = crate::rundir::write_file(&settings.sdp_dir, &name, text).map_err(|e| {
        let path = settings.sdp_dir.join(&name);
        format!("cannot write {}: {e}", path.display())
    })?;
    // The control plane's GetSdp reads it there; a new edge has new counters, so it is unset.
    let _ = counters
        .sdp
        .set((path.display().to_string(), text.to_owned()));
    Ok(SdpFile {
        dir: settings.sdp_dir.clone(),
        name,
        text: text.to_owned(),
    })
}

/// A random SSRC (RFC 3550 wants it random).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = Clock::Tai.now_ns();
        return (t ^ (t >> 32)) as u32 ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcm_proto::config::payload::Payload;

    fn spec(direction: Direction, sdp_file: Option<String>) -> St2110Edge {
        St2110Edge {
            direction,
            st2110: St2110 {
                transport: Transport::St2110_20,
                ip_addr: "239.9.9.9".parse().unwrap(),
                port: 5004,
                multicast_source_ip_addr: None,
                pacing: None,
                payload_type: 112,
                transport_pixel_format: Some("yuv422p10rfc4175".into()),
                sdp_file,
                any_source: false,
                redundant: None,
            },
            payload: Payload::Blob,
            payload_size: 64,
            quota: 16,
            counters: Arc::default(),
        }
    }

    fn with_sdp(text: &str) -> (tempfile::TempDir, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sdp");
        std::fs::write(&path, text).unwrap();
        let p = Some(path.display().to_string());
        (dir, p)
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=cam\r\nt=0 0\r\n\
        m=video 5004 RTP/AVP 96\r\nc=IN IP4 239.9.9.9/32\r\n\
        a=source-filter: incl IN IP4 239.9.9.9 10.0.0.5\r\na=rtpmap:96 raw/90000\r\n\
        a=fmtp:96 sampling=YCbCr-4:2:2; width=1280; height=720; depth=8\r\n";

    #[test]
    fn an_sdp_file_gives_the_payload_type_format_and_source() {
        let (_d, p) = with_sdp(SDP);
        let got = stream_from_sdp(&spec(Direction::Rx, p)).unwrap().unwrap();
        assert_eq!(
            got,
            SdpStream {
                payload_type: 96,
                source: Some("10.0.0.5".parse().unwrap()),
                encoding: "raw".to_owned(),
                video: Some((Sampling::YCbCr422, Depth::D8, 1280, 720)),
                size: None,
                second: None,
            }
        );
        assert_eq!(stream_from_sdp(&spec(Direction::Rx, None)).unwrap(), None);
    }

    /// An ST 2022-7 SDP: the primary on 239.9.9.9, the secondary on 239.8.8.8:5006.
    const DUP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=cam\r\nt=0 0\r\n\
        a=group:DUP primary secondary\r\n\
        m=video 5004 RTP/AVP 96\r\nc=IN IP4 239.9.9.9/32\r\n\
        a=source-filter: incl IN IP4 239.9.9.9 10.0.0.5\r\na=rtpmap:96 raw/90000\r\n\
        a=fmtp:96 sampling=YCbCr-4:2:2; width=1280; height=720; depth=8\r\na=mid:primary\r\n\
        m=video 5006 RTP/AVP 96\r\nc=IN IP4 239.8.8.8/32\r\n\
        a=source-filter: incl IN IP4 239.8.8.8 10.1.0.5\r\na=rtpmap:96 raw/90000\r\n\
        a=fmtp:96 sampling=YCbCr-4:2:2; width=1280; height=720; depth=8\r\na=mid:secondary\r\n";

    #[test]
    fn an_sdp_dup_group_gives_the_second_path_and_must_agree_with_redundant() {
        let (_d, p) = with_sdp(DUP);
        let s = spec(Direction::Rx, p.clone());
        let got = stream_from_sdp(&s).unwrap().unwrap();
        let second = Redundant {
            ip_addr: "239.8.8.8".parse().unwrap(),
            port: 5006,
            multicast_source_ip_addr: Some("10.1.0.5".parse().unwrap()),
        };
        assert_eq!(got.source, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(got.second.as_ref(), Some(&second));
        assert_eq!(second_path(&s.st2110, Some(&got)), Ok(Some(second.clone())));
        // The secondary's own section, named as the connection, finds the primary.
        let mut s2 = spec(Direction::Rx, p);
        s2.st2110.ip_addr = "239.8.8.8".parse().unwrap();
        s2.st2110.port = 5006;
        let other = stream_from_sdp(&s2).unwrap().unwrap();
        assert_eq!(other.source, Some("10.1.0.5".parse().unwrap()));
        assert_eq!(
            other.second.map(|r| (r.ip_addr, r.port)),
            Some(("239.9.9.9".parse().unwrap(), 5004))
        );
        // A configured second path must be the SDP's; the SDP's source wins, as on the first.
        let mut st = s.st2110.clone();
        st.redundant = Some(Redundant {
            multicast_source_ip_addr: Some("10.9.9.9".parse().unwrap()),
            ..second.clone()
        });
        assert_eq!(second_path(&st, Some(&got)), Ok(Some(second.clone())));
        st.redundant = Some(Redundant {
            port: 5008,
            ..second.clone()
        });
        let e = second_path(&st, Some(&got)).unwrap_err();
        assert!(e.contains("second leg is 239.8.8.8:5006"), "{e}");
        assert!(e.contains("redundant is 239.8.8.8:5008"), "{e}");
        assert_eq!(second_path(&st, None), Ok(st.redundant.clone()));
        // Without a DUP group there is no second path.
        let (_d, p) = with_sdp(SDP);
        let plain = stream_from_sdp(&spec(Direction::Rx, p)).unwrap().unwrap();
        assert_eq!(second_path(&s.st2110, Some(&plain)), Ok(None));
    }

    #[test]
    fn an_sdp_file_that_disagrees_is_refused_with_a_reason() {
        let (_d, p) = with_sdp(&SDP.replace("m=video 5004", "m=video 6000"));
        let e = stream_from_sdp(&spec(Direction::Rx, p)).unwrap_err();
        assert!(e.contains("has no media section on port 5004"), "{e}");
        let (_d, p) = with_sdp(&SDP.replace("c=IN IP4 239.9.9.9/32", "c=IN IP4 239.1.1.1/32"));
        let e = stream_from_sdp(&spec(Direction::Rx, p)).unwrap_err();
        assert!(
            e.contains("goes to 239.1.1.1, the connection's ipAddr is 239.9.9.9"),
            "{e}"
        );
        let (_d, p) = with_sdp("v=0\r\nnonsense\r\n");
        let e = stream_from_sdp(&spec(Direction::Rx, p)).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let (_d, p) = with_sdp(SDP);
        let e = stream_from_sdp(&spec(Direction::Tx, p)).unwrap_err();
        assert!(e.contains("rx connections only"), "{e}");
        let e = stream_from_sdp(&spec(Direction::Rx, Some("/nonexistent.sdp".into()))).unwrap_err();
        assert!(e.contains("/nonexistent.sdp"), "{e}");
    }

    #[test]
    fn an_sdp_file_of_another_encoding_is_refused_with_a_reason() {
        let (_d, p) = with_sdp(SDP);
        let got = stream_from_sdp(&spec(Direction::Rx, p)).unwrap();
        assert_eq!(check_encoding(got.as_ref(), "raw"), Ok(()));
        assert_eq!(check_encoding(None, "jxsv"), Ok(()));
        let e = check_encoding(got.as_ref(), "jxsv").unwrap_err();
        assert!(e.contains("the stream is raw/90000 (allowed for this transport: jxsv/90000)"));
        let jxsv = SDP.replace("raw/90000", "jxsv/90000").replace(
            "sampling=YCbCr-4:2:2; width=1280; height=720; depth=8",
            "packetmode=0; width=1280; height=720",
        );
        let (_d, p) = with_sdp(&jxsv);
        let got = stream_from_sdp(&spec(Direction::Rx, p)).unwrap().unwrap();
        assert_eq!(
            (got.encoding.as_str(), got.size),
            ("jxsv", Some((1280, 720)))
        );
    }

    #[test]
    fn a_transport_with_the_wrong_payload_is_refused_with_a_reason() {
        let settings = Settings {
            interface: "lo".into(),
            local_ip: Ipv4Addr::LOCALHOST,
            tx_ports: 40000..=40010,
            rx_ports: 1..=65535,
            dscp_video: 34,
            dscp_audio: 46,
            socket_buffer: 1 << 20,
            multicast_ttl: 1,
            gso: true,
            rx_read_interval: std::time::Duration::ZERO,
            sdp_dir: std::env::temp_dir(),
            redundant: None,
            redundancy_window: std::time::Duration::from_millis(10),
        };
        let mut s = spec(Direction::Tx, None);
        s.st2110.transport = Transport::St2110_40;
        let e = build(&s, &settings, Arc::default()).err().unwrap();
        assert_eq!(
            e,
            "connection.st2110.transport st2110-40 carries ancillary; payload is blob (allowed: \
             payload.ancillary)"
        );
    }

    #[test]
    fn pacing_names_map_to_sender_types() {
        assert_eq!(sender_type(None), Ok(SenderType::Narrow));
        assert_eq!(sender_type(Some("WIDE")), Ok(SenderType::Wide));
        assert_eq!(sender_type(Some("2110TPNL")), Ok(SenderType::NarrowLinear));
        assert!(
            sender_type(Some("fast"))
                .unwrap_err()
                .contains("allowed: \"narrow\"")
        );
    }
}
