//! Fuzzes `mcm_proto::link`: any bytes as a credit message (a decoded one re-encodes to the
//! same credits), and as each handshake message (a decoded one round-trips through the framing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcm_proto::frame;
use mcm_proto::link::{CREDITS_LEN, CREDITS_PER_MESSAGE, Credits, LinkHello, LinkReply, Tag};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Credits::decode(data) {
        assert!(!c.is_empty() && c.entries().len() <= CREDITS_PER_MESSAGE);
        let mut out = [0u8; CREDITS_LEN];
        let n = c.encode(&mut out);
        assert_eq!(Credits::decode(&out[..n]), Ok(c));
    }
    if data.len() >= 8 {
        let v = u64::from_le_bytes(data[..8].try_into().unwrap());
        assert_eq!(Tag::decode(v).encode(), v);
    }
    if let Ok(h) = frame::decode::<LinkHello>(data) {
        let mut out = Vec::new();
        if frame::encode(&h, &mut out).is_ok() {
            assert_eq!(frame::decode::<LinkHello>(&out[4..]).unwrap(), h);
        }
    }
    if let Ok(r) = frame::decode::<LinkReply>(data) {
        let mut out = Vec::new();
        if frame::encode(&r, &mut out).is_ok() {
            assert_eq!(frame::decode::<LinkReply>(&out[4..]).unwrap(), r);
        }
    }
});
