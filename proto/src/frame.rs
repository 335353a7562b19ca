//! Length-prefixed framing of protobuf messages on a byte stream.
//!
//! A frame is a 4-byte big-endian length `n` followed by `n` bytes of one serialised message.
//! `n` may be 0 (an empty message) and at most [`MAX_FRAME_LEN`].

use std::io::{self, Read, Write};

use protobuf::Message;

/// Largest frame body accepted or sent, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// Announced (or attempted) length.
        len: usize,
        /// The limit, [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The frame body is not a valid serialised message of the expected type.
    #[error("frame is not a valid {expected} protobuf message: {source}")]
    Malformed {
        /// Name of the message type that was expected.
        expected: &'static str,
        /// What the protobuf parser said.
        source: protobuf::Error,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({have} of {want} bytes received)")]
    Truncated {
        /// Bytes received of the frame (prefix included).
        have: usize,
        /// Bytes the frame needed (prefix included).
        want: usize,
    },
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Appends `msg` as one frame to `out`.
pub fn encode<M: Message>(msg: &M, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = msg.compute_size() as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    msg.write_to_vec(out)
        .map_err(|source| FrameError::Malformed {
            expected: M::NAME,
            source,
        })?;
    Ok(())
}

/// Parses one frame body as message `M`.
pub fn decode<M: Message>(body: &[u8]) -> Result<M, FrameError> {
    M::parse_from_bytes(body).map_err(|source| FrameError::Malformed {
        expected: M::NAME,
        source,
    })
}

/// Incremental frame splitter for non-blocking streams.
///
/// Bytes are appended with [`FrameDecoder::buffer`]; complete frames are taken out with
/// [`FrameDecoder::next_frame`]. The buffer never holds more than one maximal frame plus what one
/// read appended, so a client cannot make the engine buffer without bound.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads once from `src` into the buffer; returns the number of bytes read (0 at end of stream).
    pub fn read_from<R: Read>(&mut self, src: &mut R) -> io::Result<usize> {
        self.compact();
        let old = self.buf.len();
        self.buf.resize(old + 16 * 1024, 0);
        let res = src.read(&mut self.buf[old..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        res
    }

    /// Appends bytes that arrived on the stream.
    pub fn buffer(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next complete frame body out of the buffer, if there is one.
    ///
    /// Fails with [`FrameError::Oversized`] as soon as a length prefix above [`MAX_FRAME_LEN`]
    /// arrives, before its body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(prefix) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::Oversized {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Writes `msg` as one frame to a blocking stream.
pub fn write_message<M: Message, W: Write>(dst: &mut W, msg: &M) -> Result<(), FrameError> {
    let mut out = Vec::new();
    encode(msg, &mut out)?;
    dst.write_all(&out)?;
    Ok(())
}

/// Reads one frame from a blocking stream and parses it as `M`.
///
/// Returns `Ok(None)` when the stream ends cleanly before a new frame starts.
pub fn read_message<M: Message, R: Read>(src: &mut R) -> Result<Option<M>, FrameError> {
    let mut prefix = [0u8; HEADER_LEN];
    let got = read_full(src, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            have: got,
            want: HEADER_LEN,
        });
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut body = vec![0u8; len];
    let got = read_full(src, &mut body)?;
    if got < len {
        let (have, want) = (HEADER_LEN + got, HEADER_LEN + len);
        return Err(FrameError::Truncated { have, want });
    }
    decode(&body).map(Some)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::{ClientMessage, Hello};
    use proptest::prelude::*;

    fn hello(name: &str) -> ClientMessage {
        let mut m = ClientMessage::new();
        let mut h = Hello::new();
        h.protocol_version = crate::PROTOCOL_VERSION;
        h.client_name = name.to_owned();
        m.set_hello(h);
        m
    }

    #[test]
    fn round_trip_through_blocking_stream() {
        let mut wire = Vec::new();
        write_message(&mut wire, &hello("a")).unwrap();
        write_message(&mut wire, &hello("bb")).unwrap();
        let mut src = &wire[..];
        let a: ClientMessage = read_message(&mut src).unwrap().unwrap();
        let b: ClientMessage = read_message(&mut src).unwrap().unwrap();
        assert_eq!(a.hello().client_name, "a");
        assert_eq!(b.hello().client_name, "bb");
        assert!(
            read_message::<ClientMessage, _>(&mut src)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn oversized_prefix_is_refused_before_body() {
        let mut d = FrameDecoder::new();
        d.buffer(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        let err = d.next_frame().unwrap_err();
        assert!(matches!(err, FrameError::Oversized { len, .. } if len == MAX_FRAME_LEN + 1));
        assert!(
            err.to_string()
                .contains("exceeds the maximum of 65536 bytes")
        );
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut wire = Vec::new();
        write_message(&mut wire, &hello("truncate-me")).unwrap();
        let mut src = &wire[..wire.len() - 3];
        let err = read_message::<ClientMessage, _>(&mut src).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    #[test]
    fn garbage_body_is_malformed() {
        let err = decode::<ClientMessage>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            err.to_string().contains("mcm.sdk.v1.ClientMessage")
                || err.to_string().contains("ClientMessage")
        );
    }

    proptest! {
        /// However the byte stream is split, the decoder yields the same frames in order.
        #[test]
        fn decoder_is_split_invariant(names in prop::collection::vec("[a-z]{0,40}", 1..8), cut in 1usize..64) {
            let mut wire = Vec::new();
            for n in &names {
                encode(&hello(n), &mut wire).unwrap();
            }
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.buffer(chunk);
                while let Some(body) = d.next_frame().unwrap() {
                    got.push(decode::<ClientMessage>(body).unwrap().hello().client_name.clone());
                }
            }
            prop_assert_eq!(got, names);
            prop_assert_eq!(d.pending(), 0);
        }
    }
}
