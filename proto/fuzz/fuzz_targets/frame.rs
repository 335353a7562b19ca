//! Fuzzes `mcm_proto::frame`: the bytes arrive at a `FrameDecoder` in pieces whose sizes the
//! input picks, every complete frame is decoded as both SDK message types, and each message that
//! decodes is re-encoded and must decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcm_proto::frame::{self, FrameDecoder, FrameError};
use mcm_proto::sdk::{ClientMessage, EngineMessage};

/// Decodes `$body` as `$msg`; when that works, re-encodes it and checks it decodes to itself.
macro_rules! round_trip {
    ($msg:ty, $body:expr) => {
        if let Ok(msg) = frame::decode::<$msg>($body) {
            let mut out = Vec::new();
            match frame::encode(&msg, &mut out) {
                Ok(()) => {
                    let mut dec = FrameDecoder::new();
                    dec.buffer(&out);
                    let again = dec.next_frame().expect("own frame").expect("complete");
                    assert_eq!(
                        frame::decode::<$msg>(again).expect("own frame decodes"),
                        msg
                    );
                    assert_eq!(dec.pending(), 0);
                }
                Err(e) => assert!(matches!(e, FrameError::Oversized { .. }), "encode: {e}"),
            }
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, mut rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut dec = FrameDecoder::new();
    let mut fed = 0;
    let mut taken = 0;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(piece.min(rest.len()));
        rest = later;
        dec.buffer(now);
        fed += now.len();
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    taken += 4 + body.len();
                    let body = body.to_vec();
                    round_trip!(ClientMessage, &body);
                    round_trip!(EngineMessage, &body);
                }
                Ok(None) => break,
                Err(FrameError::Oversized { len, max }) => {
                    assert!(len > max);
                    return;
                }
                Err(e) => panic!("next_frame failed with {e}"),
            }
        }
        assert_eq!(dec.pending(), fed - taken);
    }
});
