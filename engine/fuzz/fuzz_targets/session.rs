//! Fuzzes the SDK session state machine (`mcm_control::session::Session`): the input is cut
//! into pieces whose sizes it picks, fed as a client's bytes, and processed against a handler
//! that accepts Hello and refuses every request. Nothing may panic, a closed session stays
//! closed, and what it queues for the client stays bounded by what it was sent.
#![no_main]

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mcm_control::session::{Created, Flow, Handler, Refusal, Session, State, Transport};
use mcm_proto::config::MeshErr;
use mcm_proto::sdk::{CreateConnection, ErrorCode, Stats};

struct Refuse;

fn no() -> Refusal {
    Refusal::new(
        ErrorCode::ERROR_CODE_NOT_FOUND,
        MeshErr::BadConnPtr,
        "refused",
    )
}

impl Handler for Refuse {
    fn hello(&mut self, _: u64, _: Transport, token: &str) -> Result<u32, Refusal> {
        if token == "x" { Err(no()) } else { Ok(1000) }
    }
    fn create_connection(
        &mut self,
        _: u64,
        _: &CreateConnection,
        _: Transport,
    ) -> Result<Created, Refusal> {
        Err(no())
    }
    fn fetch_fds(&mut self, _: u64, _: &[u8]) -> Result<(u64, Vec<OwnedFd>), Refusal> {
        Err(no())
    }
    fn fetch_pool(
        &mut self,
        _: u64,
        _: u64,
        _: u32,
        _: Transport,
    ) -> Result<(mcm_proto::sdk::PoolFd, Vec<OwnedFd>), Refusal> {
        Err(no())
    }
    fn activate(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
        Err(no())
    }
    fn delete(&mut self, _: u64, _: u64) -> Result<(), Refusal> {
        Err(no())
    }
    fn stats(&mut self, _: u64) -> Stats {
        Stats::new()
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let transport = if data.first().is_some_and(|b| b & 1 == 1) {
        Transport::Unix
    } else {
        Transport::Tcp
    };
    let mut s = Session::new(1, t0, transport);
    let rest = data.get(1..).unwrap_or_default();
    let mut closed = false;
    let (mut i, mut step) = (0usize, 0u64);
    // Each piece: one length byte (1..=64), then that many bytes of the client's stream.
    while i < rest.len() {
        let n = usize::from(rest[i]) % 64 + 1;
        let end = (i + 1 + n).min(rest.len());
        let piece = &rest[i + 1..end];
        i = end;
        s.decoder().buffer(piece);
        step += 1;
        let flow = s.process(t0 + Duration::from_millis(step), &mut Refuse);
        if closed {
            assert_eq!(s.state(), State::Closing, "a closed session stays closed");
        }
        closed |= flow == Flow::Close;
        assert!(
            s.outgoing().len() <= 4096 + data.len() * 64,
            "replies stay bounded"
        );
    }
    let later = t0 + Duration::from_secs(3600);
    let _ = s.check_partial_frame(later, Duration::from_secs(5));
    let _ = s.check_idle(later, Duration::from_secs(30));
    let _ = s.check_keepalive(later, Duration::from_secs(15));
    let _ = s.check_handshake_deadline(later, Duration::from_secs(10));
});
