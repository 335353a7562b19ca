//! The `payload` section of a connection JSON: what one buffer carries and how many bytes that is.
//!
//! Exactly one of `video`, `audio`, `ancillary` or `blob`; an absent `payload` means blob.
//!
//! `ancillary` (an mcm extension, for `st2110-40` streams) is `{ "fps" }` (default 60, finite
//! and above 0): one buffer per video frame period, holding that frame's ANC packets as the
//! RFC 8331 payload after the RTP header (an 8-byte header, then the ANC packets; see
//! `mcm_proto::st2110::rfc8331`). A buffer holds at most [`ANC_FRAME_BYTES`], the 8-byte header
//! plus the 65535 bytes its Length field can count; that is its default size.
//!
//! Video frame sizes (`w`×`h` pixels, each dimension `1..=`[`MAX_DIMENSION`]):
//!
//! | `pixelFormat` | bytes per frame | constraint |
//! |---|---|---|
//! | `yuv422p10le` (default) | `w·h·4` | |
//! | `v210` | `w·h·8/3` | `w·h` a multiple of 3 |
//! | `yuv422p10rfc4175` | `w·h·5/2` | `w·h` even |
//! | `uyvy` (ours, not MCM's: 8-bit 4:2:2, Cb Y0 Cr Y1, as RFC 4175 carries it) | `w·h·2` | `w·h` even |
//!
//! A frame must also fit [`MAX_PAYLOAD_SIZE`].
//!
//! Audio packet size = bytes per sample (`pcm_s24be` 3, `pcm_s16be` 2, `pcm_s8` 1) × samples per
//! packet × `channels` (`1..=`[`MAX_CHANNELS`], the most an ST 2110-30 level C stream carries).
//! Samples per packet are those of ST 2110-30 / AES67 packet times:
//!
//! | `packetTime` | 48000 Hz | 96000 Hz | 44100 Hz |
//! |---|---|---|---|
//! | `1ms` (default) | 48 | 96 | |
//! | `125us` | 6 | 12 | |
//! | `250us` | 12 | 24 | |
//! | `333us` | 16 | 32 | |
//! | `4ms` | 192 | 384 | |
//! | `80us` | 4 | 8 | |
//! | `1.09ms` | | | 48 |
//! | `0.14ms` | | | 6 |
//! | `0.09ms` | | | 4 |
//!
//! An empty cell is a pairing MCM refuses with `MESH_ERR_CONN_CONFIG_INCOMPAT`, and so do we.

use std::fmt;

use super::json::{Obj, list, quote};
use super::{ConfigError, MAX_PAYLOAD_SIZE, MeshErr};

/// Largest video width or height, in pixels (16K).
pub const MAX_DIMENSION: u32 = 16384;
/// Default video width and height, in pixels.
pub const DEFAULT_DIMENSION: u32 = 640;
/// Default video frame rate.
pub const DEFAULT_FPS: f64 = 60.0;
/// Bytes of the largest ancillary buffer: the RFC 8331 payload header (8 bytes) and the 65535
/// bytes of ANC packets its 16-bit Length field counts.
pub const ANC_FRAME_BYTES: u32 = 8 + 65_535;
/// Most audio channels.
pub const MAX_CHANNELS: u16 = 64;
/// Default number of audio channels.
pub const DEFAULT_CHANNELS: u16 = 2;

const CLASS: MeshErr = MeshErr::ConnConfigInval;

/// What one buffer of a connection carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Payload {
    /// One uncompressed video frame per buffer.
    Video(Video),
    /// One audio packet per buffer.
    Audio(Audio),
    /// One video frame's ancillary data per buffer (ST 2110-40; an mcm extension).
    Ancillary(Ancillary),
    /// Opaque bytes; the size comes from `maxPayloadSize`.
    Blob,
}

/// A `payload.ancillary` section: the ANC packets of one video frame per buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ancillary {
    /// Video frames per second the ANC data accompanies, finite and above 0.
    pub fps: f64,
}

impl Payload {
    /// The section's key: `"video"`, `"audio"`, `"ancillary"` or `"blob"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Video(_) => "video",
            Self::Audio(_) => "audio",
            Self::Ancillary(_) => "ancillary",
            Self::Blob => "blob",
        }
    }

    /// Bytes one buffer needs: the frame or packet size; `None` for a blob, or where the fields
    /// do not fit together (a size that does not pack, an audio pairing outside the table).
    pub fn computed_size(&self) -> Option<u64> {
        match self {
            Self::Video(v) => v.frame_size(),
            Self::Audio(a) => a.packet_size().map(u64::from),
            Self::Ancillary(_) => Some(u64::from(ANC_FRAME_BYTES)),
            Self::Blob => None,
        }
    }
}

/// A `payload.video` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Video {
    /// Width in pixels, `1..=`[`MAX_DIMENSION`].
    pub width: u32,
    /// Height in pixels, `1..=`[`MAX_DIMENSION`].
    pub height: u32,
    /// Frames per second, finite and above 0.
    pub fps: f64,
    /// Layout of a frame in the buffer.
    pub pixel_format: PixelFormat,
}

impl Video {
    /// Bytes of one frame; `None` when `width·height` does not pack into the pixel format.
    pub fn frame_size(&self) -> Option<u64> {
        let pixels = u64::from(self.width).checked_mul(u64::from(self.height))?;
        match self.pixel_format {
            PixelFormat::Yuv422p10le => pixels.checked_mul(4),
            PixelFormat::V210 => (pixels % 3 == 0).then(|| pixels / 3 * 8),
            PixelFormat::Yuv422p10rfc4175 => (pixels % 2 == 0).then(|| pixels / 2 * 5),
            PixelFormat::Uyvy => (pixels % 2 == 0).then(|| pixels * 2),
        }
    }
}

/// Pixel layout of a video frame in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `yuv422p10le`: planar 4:2:2, 10 bits in 16-bit little-endian words.
    Yuv422p10le,
    /// `v210`: packed 4:2:2, 6 pixels in 16 bytes.
    V210,
    /// `yuv422p10rfc4175`: packed 4:2:2 big-endian as on the wire (RFC 4175), 2 pixels in 5 bytes.
    Yuv422p10rfc4175,
    /// `uyvy`: packed 4:2:2 8-bit (Cb Y0 Cr Y1), the RFC 4175 8-bit pgroup; an mcm extension.
    Uyvy,
}

impl PixelFormat {
    /// Every format with its JSON spelling.
    pub const ALL: [(&'static str, PixelFormat); 4] = [
        ("yuv422p10le", Self::Yuv422p10le),
        ("v210", Self::V210),
        ("yuv422p10rfc4175", Self::Yuv422p10rfc4175),
        ("uyvy", Self::Uyvy),
    ];

    /// The JSON spelling, e.g. `"v210"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Yuv422p10le => "yuv422p10le",
            Self::V210 => "v210",
            Self::Yuv422p10rfc4175 => "yuv422p10rfc4175",
            Self::Uyvy => "uyvy",
        }
    }

    /// What `width·height` must satisfy, for an error message.
    const fn packing_rule(self) -> &'static str {
        match self {
            Self::Yuv422p10le => "any",
            Self::V210 => "a multiple of 3",
            Self::Yuv422p10rfc4175 | Self::Uyvy => "even",
        }
    }
}

/// A `payload.audio` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Audio {
    /// Number of channels, `1..=`[`MAX_CHANNELS`].
    pub channels: u16,
    /// Samples per second.
    pub sample_rate: SampleRate,
    /// Sample encoding.
    pub format: AudioFormat,
    /// Duration of one packet (one buffer).
    pub packet_time: PacketTime,
}

impl Audio {
    /// Bytes of one packet; `None` when the packet time does not pair with the sample rate.
    pub fn packet_size(&self) -> Option<u32> {
        let samples = self.packet_time.samples_at(self.sample_rate)?;
        Some(self.format.bytes_per_sample() * samples * u32::from(self.channels))
    }
}

/// Audio sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleRate {
    /// 44100 Hz.
    Hz44100,
    /// 48000 Hz (the default).
    Hz48000,
    /// 96000 Hz.
    Hz96000,
}

impl SampleRate {
    /// Every rate.
    pub const ALL: [SampleRate; 3] = [Self::Hz44100, Self::Hz48000, Self::Hz96000];

    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            Self::Hz44100 => 44_100,
            Self::Hz48000 => 48_000,
            Self::Hz96000 => 96_000,
        }
    }

    /// The rate of `hz` samples per second, if it is one of [`SampleRate::ALL`].
    pub fn from_hz(hz: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| u64::from(r.hz()) == hz)
    }
}

/// Audio sample encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// `pcm_s24be`: 24-bit big-endian (the default).
    PcmS24be,
    /// `pcm_s16be`: 16-bit big-endian.
    PcmS16be,
    /// `pcm_s8`: 8-bit.
    PcmS8,
}

impl AudioFormat {
    /// Every format with its JSON spelling.
    pub const ALL: [(&'static str, AudioFormat); 3] = [
        ("pcm_s24be", Self::PcmS24be),
        ("pcm_s16be", Self::PcmS16be),
        ("pcm_s8", Self::PcmS8),
    ];

    /// Bytes of one sample of one channel.
    pub const fn bytes_per_sample(self) -> u32 {
        match self {
            Self::PcmS24be => 3,
            Self::PcmS16be => 2,
            Self::PcmS8 => 1,
        }
    }
}

/// Duration of one audio packet, as spelled in the JSON. The 44.1 kHz times are nominal: 48, 6
/// and 4 samples at 44100 Hz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketTime {
    /// `1ms` (the default).
    Ms1,
    /// `125us`.
    Us125,
    /// `250us`.
    Us250,
    /// `333us`.
    Us333,
    /// `4ms`.
    Ms4,
    /// `80us`.
    Us80,
    /// `1.09ms` (44.1 kHz only).
    Ms1_09,
    /// `0.14ms` (44.1 kHz only).
    Ms0_14,
    /// `0.09ms` (44.1 kHz only).
    Ms0_09,
}

impl PacketTime {
    /// Every packet time with its JSON spelling.
    pub const ALL: [(&'static str, PacketTime); 9] = [
        ("1ms", Self::Ms1),
        ("125us", Self::Us125),
        ("250us", Self::Us250),
        ("333us", Self::Us333),
        ("4ms", Self::Ms4),
        ("80us", Self::Us80),
        ("1.09ms", Self::Ms1_09),
        ("0.14ms", Self::Ms0_14),
        ("0.09ms", Self::Ms0_09),
    ];

    /// The JSON spelling, e.g. `"125us"`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("", |(name, _)| name)
    }

    /// Samples in one packet at `rate`, `None` where the pair is not in the table above.
    pub const fn samples_at(self, rate: SampleRate) -> Option<u32> {
        let at_48k = match (rate, self) {
            (SampleRate::Hz44100, Self::Ms1_09) => return Some(48),
            (SampleRate::Hz44100, Self::Ms0_14) => return Some(6),
            (SampleRate::Hz44100, Self::Ms0_09) => return Some(4),
            (SampleRate::Hz44100, _) => return None,
            (_, Self::Ms1) => 48,
            (_, Self::Us125) => 6,
            (_, Self::Us250) => 12,
            (_, Self::Us333) => 16,
            (_, Self::Ms4) => 192,
            (_, Self::Us80) => 4,
            (_, Self::Ms1_09 | Self::Ms0_14 | Self::Ms0_09) => return None,
        };
        match rate {
            SampleRate::Hz96000 => Some(at_48k * 2),
            _ => Some(at_48k),
        }
    }
}

impl fmt::Display for PacketTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the `payload` section (`None`: absent, meaning blob). Checks every field and that a
/// video frame or audio packet has a size; the size is [`Payload::computed_size`].
pub(super) fn parse(section: Option<Obj<'_>>) -> Result<Payload, ConfigError> {
    let Some(section) = section else {
        return Ok(Payload::Blob);
    };
    let kinds = ["video", "audio", "ancillary", "blob"];
    let given: Vec<_> = kinds.into_iter().filter(|k| section.has(k)).collect();
    let [kind] = given[..] else {
        return Err(section.err_here(
            CLASS,
            format_args!(
                "exactly one of video/audio/ancillary/blob is required, got {}",
                if given.is_empty() {
                    "none".into()
                } else {
                    list(given.into_iter())
                }
            ),
        ));
    };
    let body = section.obj(kind)?.expect("has() said it is set");
    match kind {
        "video" => parse_video(&body).map(Payload::Video),
        "audio" => parse_audio(&body).map(Payload::Audio),
        "ancillary" => parse_ancillary(&body).map(Payload::Ancillary),
        _ => Ok(Payload::Blob),
    }
}

fn parse_ancillary(obj: &Obj<'_>) -> Result<Ancillary, ConfigError> {
    let fps = obj.f64("fps", DEFAULT_FPS)?;
    check_fps(obj, fps)?;
    Ok(Ancillary { fps })
}

fn check_fps(obj: &Obj<'_>, fps: f64) -> Result<(), ConfigError> {
    if fps.is_finite() && fps > 0.0 {
        return Ok(());
    }
    Err(obj.err(
        "fps",
        format_args!("{fps} is not allowed, expected a finite number above 0"),
    ))
}

fn parse_video(obj: &Obj<'_>) -> Result<Video, ConfigError> {
    let dims = 1..=MAX_DIMENSION;
    let video = Video {
        width: obj.uint("width", dims.clone(), DEFAULT_DIMENSION)?,
        height: obj.uint("height", dims, DEFAULT_DIMENSION)?,
        fps: obj.f64("fps", DEFAULT_FPS)?,
        pixel_format: obj.choice("pixelFormat", &PixelFormat::ALL, PixelFormat::Yuv422p10le)?,
    };
    check_fps(obj, video.fps)?;
    check_frame_size(obj, &video)?;
    Ok(video)
}

fn check_frame_size(obj: &Obj<'_>, v: &Video) -> Result<(), ConfigError> {
    let format = v.pixel_format;
    match v.frame_size() {
        None => Err(obj.err_here(
            CLASS,
            format_args!(
                "{}x{} does not pack into {}: width*height must be {}",
                v.width,
                v.height,
                format.as_str(),
                format.packing_rule()
            ),
        )),
        Some(size) if size > u64::from(MAX_PAYLOAD_SIZE) => Err(obj.err_here(
            CLASS,
            format_args!(
                "a {}x{} {} frame is {size} bytes, more than the maximum payload of \
                 {MAX_PAYLOAD_SIZE} bytes",
                v.width,
                v.height,
                format.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn parse_audio(obj: &Obj<'_>) -> Result<Audio, ConfigError> {
    let audio = Audio {
        channels: obj.uint("channels", 1..=MAX_CHANNELS, DEFAULT_CHANNELS)?,
        sample_rate: parse_sample_rate(obj)?,
        format: obj.choice("format", &AudioFormat::ALL, AudioFormat::PcmS24be)?,
        packet_time: obj.choice("packetTime", &PacketTime::ALL, PacketTime::Ms1)?,
    };
    if audio.packet_size().is_none() {
        let fits = PacketTime::ALL
            .iter()
            .filter(|(_, t)| t.samples_at(audio.sample_rate).is_some())
            .map(|(name, _)| *name);
        return Err(obj.err_of(
            MeshErr::ConnConfigIncompat,
            "packetTime",
            format_args!(
                "{} does not fit sampleRate {}, allowed: {}",
                quote(audio.packet_time.as_str()),
                audio.sample_rate.hz(),
                list(fits)
            ),
        ));
    }
    Ok(audio)
}

fn parse_sample_rate(obj: &Obj<'_>) -> Result<SampleRate, ConfigError> {
    let hz = obj.uint("sampleRate", 0..=u64::MAX, 48_000)?;
    SampleRate::from_hz(hz).ok_or_else(|| {
        obj.err(
            "sampleRate",
            format_args!("{hz} is not supported, allowed: 44100, 48000, 96000"),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse_value(v: &Value) -> Result<Payload, ConfigError> {
        let root = Obj::root(v, CLASS).unwrap();
        parse(root.obj("payload")?)
    }

    fn payload(p: Value) -> Result<Payload, ConfigError> {
        parse_value(&json!({ "payload": p }))
    }

    fn video(v: Value) -> Result<Video, ConfigError> {
        match payload(json!({ "video": v }))? {
            Payload::Video(v) => Ok(v),
            other => panic!("{other:?}"),
        }
    }

    fn audio(a: Value) -> Result<Audio, ConfigError> {
        match payload(json!({ "audio": a }))? {
            Payload::Audio(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    fn inval(r: Result<impl fmt::Debug, ConfigError>) -> String {
        let err = r.unwrap_err();
        assert_eq!(err.class, MeshErr::ConnConfigInval, "{err}");
        err.message
    }

    #[test]
    fn absent_payload_is_blob() {
        assert_eq!(parse_value(&json!({})).unwrap(), Payload::Blob);
        assert_eq!(
            parse_value(&json!({"payload": null})).unwrap(),
            Payload::Blob
        );
        assert_eq!(payload(json!({"blob": {}})).unwrap(), Payload::Blob);
        assert_eq!(Payload::Blob.computed_size(), None);
    }

    #[test]
    fn exactly_one_payload_kind() {
        assert_eq!(
            inval(payload(json!({}))),
            "payload: exactly one of video/audio/ancillary/blob is required, got none"
        );
        assert_eq!(
            inval(payload(json!({"video": {}, "blob": {}}))),
            "payload: exactly one of video/audio/ancillary/blob is required, got \"video\", \"blob\""
        );
        assert_eq!(
            inval(payload(json!({"blob": 1}))),
            "payload.blob: expected an object, got integer 1"
        );
        assert_eq!(
            inval(payload(json!("video"))),
            "payload: expected an object, got string \"video\""
        );
    }

    #[test]
    fn video_defaults() {
        let v = video(json!({})).unwrap();
        assert_eq!((v.width, v.height, v.fps), (640, 640, 60.0));
        assert_eq!(v.pixel_format, PixelFormat::Yuv422p10le);
        assert_eq!(v.frame_size(), Some(640 * 640 * 4));
    }

    #[test]
    fn video_sizes_at_1080p() {
        let cases = [
            ("yuv422p10le", 8_294_400),
            ("v210", 5_529_600),
            ("yuv422p10rfc4175", 5_184_000),
            ("uyvy", 4_147_200),
        ];
        for (format, size) in cases {
            let v = video(json!({"width": 1920, "height": 1080, "pixelFormat": format})).unwrap();
            assert_eq!(v.frame_size(), Some(size), "{format}");
            assert_eq!(Payload::Video(v).computed_size(), Some(size));
        }
    }

    #[test]
    fn video_odd_sizes() {
        let v = video(json!({"width": 3, "height": 1, "pixelFormat": "v210"})).unwrap();
        assert_eq!(v.frame_size(), Some(8));
        let v = video(json!({"width": 1, "height": 2, "pixelFormat": "yuv422p10rfc4175"}));
        assert_eq!(v.unwrap().frame_size(), Some(5));
        let v = video(json!({"width": 1, "height": 1})).unwrap();
        assert_eq!(v.frame_size(), Some(4));
        assert_eq!(
            inval(video(
                json!({"width": 1921, "height": 1, "pixelFormat": "v210"})
            )),
            "payload.video: 1921x1 does not pack into v210: width*height must be a multiple of 3"
        );
        assert_eq!(
            inval(video(
                json!({"width": 1, "height": 1, "pixelFormat": "yuv422p10rfc4175"})
            )),
            "payload.video: 1x1 does not pack into yuv422p10rfc4175: width*height must be even"
        );
    }

    #[test]
    fn video_dimension_bounds() {
        for key in ["width", "height"] {
            let max = json!({ key: MAX_DIMENSION, "pixelFormat": "yuv422p10rfc4175" });
            assert!(video(max).is_ok(), "{key}");
            assert!(video(json!({ key: 1 })).is_ok(), "{key}");
            assert_eq!(
                inval(video(json!({ key: 0 }))),
                format!("payload.video.{key}: 0 is out of range, allowed 1..=16384")
            );
            assert_eq!(
                inval(video(json!({ key: 16385 }))),
                format!("payload.video.{key}: 16385 is out of range, allowed 1..=16384")
            );
            assert_eq!(
                inval(video(json!({ key: 1u64 << 40 }))),
                format!("payload.video.{key}: 1099511627776 is out of range, allowed 1..=16384")
            );
        }
    }

    #[test]
    fn video_frame_must_fit_max_payload() {
        let at_max = video(json!({"width": 16384, "height": 4096})).unwrap();
        assert_eq!(at_max.frame_size(), Some(u64::from(MAX_PAYLOAD_SIZE)));
        assert_eq!(
            inval(video(json!({"width": 16384, "height": 4097}))),
            "payload.video: a 16384x4097 yuv422p10le frame is 268500992 bytes, \
             more than the maximum payload of 268435456 bytes"
        );
        let huge = Video {
            width: u32::MAX,
            height: u32::MAX,
            fps: 1.0,
            pixel_format: PixelFormat::Yuv422p10le,
        };
        assert_eq!(huge.frame_size(), None, "overflow is caught");
    }

    #[test]
    fn video_fps_bounds() {
        assert_eq!(video(json!({"fps": 29.97})).unwrap().fps, 29.97);
        assert_eq!(video(json!({"fps": 25})).unwrap().fps, 25.0);
        assert!(video(json!({"fps": f64::MIN_POSITIVE})).is_ok());
        assert_eq!(
            inval(video(json!({"fps": 0}))),
            "payload.video.fps: 0 is not allowed, expected a finite number above 0"
        );
        assert_eq!(
            inval(video(json!({"fps": -1.5}))),
            "payload.video.fps: -1.5 is not allowed, expected a finite number above 0"
        );
    }

    #[test]
    fn video_wrong_types() {
        let cases = [
            (
                json!({"width": "640"}),
                "payload.video.width: expected an unsigned integer, got string \"640\"",
            ),
            (
                json!({"height": 640.5}),
                "payload.video.height: expected an unsigned integer, got number 640.5",
            ),
            (
                json!({"fps": "60"}),
                "payload.video.fps: expected a number, got string \"60\"",
            ),
            (
                json!({"pixelFormat": 1}),
                "payload.video.pixelFormat: expected a string, got integer 1",
            ),
            (
                json!({"pixelFormat": "nv12"}),
                "payload.video.pixelFormat: \"nv12\" is not supported, \
                 allowed: \"yuv422p10le\", \"v210\", \"yuv422p10rfc4175\", \"uyvy\"",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(inval(video(v)), want);
        }
        assert_eq!(
            inval(payload(json!({"video": []}))),
            "payload.video: expected an object, got an array"
        );
    }

    #[test]
    fn audio_defaults() {
        let a = audio(json!({})).unwrap();
        assert_eq!(a.channels, 2);
        assert_eq!(a.sample_rate, SampleRate::Hz48000);
        assert_eq!(a.format, AudioFormat::PcmS24be);
        assert_eq!(a.packet_time, PacketTime::Ms1);
        assert_eq!(a.packet_size(), Some(288));
    }

    #[test]
    fn audio_sizes_for_every_pair_2ch_s24() {
        let cases = [
            (48_000, "1ms", 288),
            (48_000, "125us", 36),
            (48_000, "250us", 72),
            (48_000, "333us", 96),
            (48_000, "4ms", 1152),
            (48_000, "80us", 24),
            (96_000, "1ms", 576),
            (96_000, "125us", 72),
            (96_000, "250us", 144),
            (96_000, "333us", 192),
            (96_000, "4ms", 2304),
            (96_000, "80us", 48),
            (44_100, "1.09ms", 288),
            (44_100, "0.14ms", 36),
            (44_100, "0.09ms", 24),
        ];
        for (rate, ptime, size) in cases {
            let a = audio(json!({"sampleRate": rate, "packetTime": ptime})).unwrap();
            assert_eq!(a.packet_size(), Some(size), "{rate} {ptime}");
            assert_eq!(Payload::Audio(a).computed_size(), Some(u64::from(size)));
        }
    }

    #[test]
    fn audio_sample_formats() {
        for (format, bytes) in [("pcm_s24be", 3), ("pcm_s16be", 2), ("pcm_s8", 1)] {
            let a = audio(json!({"format": format, "channels": 1})).unwrap();
            assert_eq!(a.packet_size(), Some(48 * bytes), "{format}");
        }
    }

    #[test]
    fn incompatible_audio_pairs() {
        let bad = [
            (44_100, "1ms"),
            (44_100, "125us"),
            (44_100, "250us"),
            (44_100, "333us"),
            (44_100, "4ms"),
            (44_100, "80us"),
            (48_000, "1.09ms"),
            (48_000, "0.14ms"),
            (48_000, "0.09ms"),
            (96_000, "1.09ms"),
            (96_000, "0.14ms"),
            (96_000, "0.09ms"),
        ];
        for (rate, ptime) in bad {
            let err = audio(json!({"sampleRate": rate, "packetTime": ptime})).unwrap_err();
            assert_eq!(err.class, MeshErr::ConnConfigIncompat, "{rate} {ptime}");
        }
        let err = audio(json!({"sampleRate": 44100})).unwrap_err();
        assert_eq!(
            err.message,
            "payload.audio.packetTime: \"1ms\" does not fit sampleRate 44100, \
             allowed: \"1.09ms\", \"0.14ms\", \"0.09ms\""
        );
        let err = audio(json!({"packetTime": "0.09ms"})).unwrap_err();
        assert_eq!(
            err.message,
            "payload.audio.packetTime: \"0.09ms\" does not fit sampleRate 48000, \
             allowed: \"1ms\", \"125us\", \"250us\", \"333us\", \"4ms\", \"80us\""
        );
    }

    #[test]
    fn audio_channel_bounds() {
        assert_eq!(
            audio(json!({"channels": 1})).unwrap().packet_size(),
            Some(144)
        );
        let max = audio(json!({"channels": 64, "packetTime": "4ms"})).unwrap();
        assert_eq!(max.packet_size(), Some(3 * 192 * 64));
        assert_eq!(
            inval(audio(json!({"channels": 0}))),
            "payload.audio.channels: 0 is out of range, allowed 1..=64"
        );
        assert_eq!(
            inval(audio(json!({"channels": 65}))),
            "payload.audio.channels: 65 is out of range, allowed 1..=64"
        );
        assert_eq!(
            inval(audio(json!({"channels": 65536}))),
            "payload.audio.channels: 65536 is out of range, allowed 1..=64"
        );
    }

    #[test]
    fn audio_wrong_values_and_types() {
        let cases = [
            (
                json!({"channels": "2"}),
                "payload.audio.channels: expected an unsigned integer, got string \"2\"",
            ),
            (
                json!({"sampleRate": 48000.0}),
                "payload.audio.sampleRate: expected an unsigned integer, got number 48000.0",
            ),
            (
                json!({"sampleRate": 22050}),
                "payload.audio.sampleRate: 22050 is not supported, allowed: 44100, 48000, 96000",
            ),
            (
                json!({"format": false}),
                "payload.audio.format: expected a string, got boolean false",
            ),
            (
                json!({"format": "pcm_s32le"}),
                "payload.audio.format: \"pcm_s32le\" is not supported, \
                 allowed: \"pcm_s24be\", \"pcm_s16be\", \"pcm_s8\"",
            ),
            (
                json!({"packetTime": 1}),
                "payload.audio.packetTime: expected a string, got integer 1",
            ),
            (
                json!({"packetTime": "2ms"}),
                "payload.audio.packetTime: \"2ms\" is not supported, allowed: \"1ms\", \
                 \"125us\", \"250us\", \"333us\", \"4ms\", \"80us\", \"1.09ms\", \"0.14ms\", \
                 \"0.09ms\"",
            ),
        ];
        for (a, want) in cases {
            assert_eq!(inval(audio(a)), want);
        }
    }

    #[test]
    fn spellings_round_trip() {
        for (name, t) in PacketTime::ALL {
            assert_eq!(t.as_str(), name);
            assert_eq!(t.to_string(), name);
        }
        for (name, f) in PixelFormat::ALL {
            assert_eq!(f.as_str(), name);
        }
        for r in SampleRate::ALL {
            assert_eq!(SampleRate::from_hz(u64::from(r.hz())), Some(r));
        }
        assert_eq!(Payload::Blob.as_str(), "blob");
    }
}
