//! Two endpoints of one process, over each provider that runs here: a frame written with one
//! RMA write carrying its tag, a credit message sent and received, both checked byte for byte.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use mcm_proto::link::{CREDITS_LEN, Credit, Credits, Tag};

use super::*;

/// Reads `cqs` in turn (each side's progress needs its CQ read) until each has given `want`
/// completions, for at most 10 s (a hang fails the test instead of blocking it).
fn pump(cqs: &[&Cq], want: &[usize]) -> Vec<Vec<Completion>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = vec![Vec::new(); cqs.len()];
    let mut buf = [Completion::default(); 8];
    while got.iter().zip(want).any(|(g, &w)| g.len() < w) && Instant::now() < deadline {
        for (cq, g) in cqs.iter().zip(got.iter_mut()) {
            let n = cq.read(&mut buf).expect("no failed completion");
            g.extend_from_slice(&buf[..n]);
        }
    }
    got
}

/// Posts with `op` until the provider takes it: `-FI_EAGAIN` (rxm connecting on first use)
/// means progress the CQs and try again, at most 10 s.
fn post(cqs: &[&Cq], mut op: impl FnMut() -> Result<(), FabricError>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [Completion::default(); 8];
    loop {
        match op() {
            Err(e) if e.is_again() && Instant::now() < deadline => {
                for cq in cqs {
                    assert_eq!(
                        cq.read(&mut buf).unwrap(),
                        0,
                        "nothing completes before the post"
                    );
                }
            }
            r => return r.unwrap(),
        }
    }
}

fn write_and_credit(provider: RdmaProvider, node: Option<IpAddr>, parks: bool) {
    let info = Info::find(provider, node).expect("the provider is installed (libfabric-bin)");
    let name = info.provider_name();
    assert!(name.contains(provider.as_str()), "{name}");
    assert!(info.cq_data_size() >= 8, "{name}: 8 bytes of remote data");
    assert!(info.rma_iov_limit() >= 2, "{name}: a frame is two segments");
    let (virt, prov_keys, local_mr) = (
        info.virt_addr(),
        info.provider_keys(),
        info.needs_local_mr(),
    );
    let domain = Domain::open(info).unwrap();
    let (cq_a, cq_b) = (domain.cq(64).unwrap(), domain.cq(64).unwrap());
    let (av_a, av_b) = (domain.av(4).unwrap(), domain.av(4).unwrap());
    let a = domain.endpoint(&cq_a, &av_a).unwrap();
    let b = domain.endpoint(&cq_b, &av_b).unwrap();
    let b_at_a = av_a.insert(&b.name().unwrap()).unwrap();
    let _a_at_b = av_b.insert(&a.name().unwrap()).unwrap();

    // B's "pool": 2 slots of 1 MiB + 4 KiB; A's frame: header and payload, then metadata.
    const SLOT: usize = (1 << 20) + 4096;
    let mut pool = vec![0u8; 2 * SLOT];
    let frame: Vec<u8> = (0..(1 << 20) + 64).map(|i| (i * 7 + 3) as u8).collect();
    let meta: Vec<u8> = (0..100).map(|i| 255 - i as u8).collect();
    let key = |k: u64| if prov_keys { 0 } else { k };
    let want_key = random_key().unwrap();
    // SAFETY: pool, frame and meta outlive every registration (dropped at the end of the
    // test, after the endpoints).
    let (pool_mr, frame_mr, meta_mr) = unsafe {
        (
            domain
                .register(
                    pool.as_mut_ptr(),
                    pool.len(),
                    u64::from(libfabric_sys::FI_REMOTE_WRITE),
                    key(want_key),
                )
                .unwrap(),
            domain
                .register(
                    frame.as_ptr(),
                    frame.len(),
                    u64::from(libfabric_sys::FI_WRITE),
                    key(want_key + 1),
                )
                .unwrap(),
            domain
                .register(
                    meta.as_ptr(),
                    meta.len(),
                    u64::from(libfabric_sys::FI_WRITE),
                    key(want_key + 2),
                )
                .unwrap(),
        )
    };
    if !prov_keys {
        assert_eq!(pool_mr.key(), want_key, "{name}: the key we chose");
    }
    let base = if virt { pool_mr.region().0 } else { 0 };
    let slot1 = base + SLOT as u64;
    let desc = |mr: &Mr| if local_mr { mr.desc() } else { ptr::null_mut() };
    let tag = Tag {
        slot: 1,
        seq: 42,
        payload_len: 1 << 20,
    };
    let mut ctx = [OpContext::default(); 2];
    let ctx0: *mut OpContext = &mut ctx[0];
    // SAFETY: frame, meta and ctx[0] stay valid until the completion is read below.
    post(&[&cq_a, &cq_b], || unsafe {
        a.write_data(
            &[
                (frame.as_ptr(), frame.len(), desc(&frame_mr)),
                (meta.as_ptr(), meta.len(), desc(&meta_mr)),
            ],
            b_at_a,
            &[
                RemoteIov {
                    addr: slot1,
                    len: frame.len(),
                    key: pool_mr.key(),
                },
                RemoteIov {
                    addr: slot1 + (SLOT - 4096) as u64 + 64,
                    len: meta.len(),
                    key: pool_mr.key(),
                },
            ],
            tag.encode(),
            ctx0,
        )
    });
    let got = pump(&[&cq_a, &cq_b], &[1, 1]);
    assert_eq!(got[0].len(), 1, "{name}: the writer's completion");
    assert_eq!(got[0][0].op_context, ctx0.cast());
    assert_eq!(got[1].len(), 1, "{name}: the target's completion");
    assert!(
        is_remote_write(&got[1][0]),
        "{name}: flags {:#x}",
        got[1][0].flags
    );
    assert_eq!(Tag::decode(got[1][0].data), tag);
    assert_eq!(
        &pool[SLOT..SLOT + frame.len()],
        &frame[..],
        "{name}: frame bit-exact"
    );
    let m = 2 * SLOT - 4096 + 64;
    assert_eq!(
        &pool[m..m + meta.len()],
        &meta[..],
        "{name}: metadata bit-exact"
    );
    assert!(
        pool[..SLOT].iter().all(|&b| b == 0),
        "{name}: slot 0 untouched"
    );

    // A credit message from B to A.
    let mut credits = Credits::new(pool_mr.key());
    credits.push(Credit {
        slot: 0,
        addr: base,
    });
    credits.push(Credit {
        slot: 1,
        addr: slot1,
    });
    let mut out = [0u8; CREDITS_LEN];
    let len = credits.encode(&mut out);
    let mut inbox = [0u8; CREDITS_LEN];
    // SAFETY: inbox, out and the contexts stay valid until their completions are read.
    let (in_mr, out_mr) = unsafe {
        (
            domain
                .register(
                    inbox.as_mut_ptr(),
                    inbox.len(),
                    u64::from(libfabric_sys::FI_RECV),
                    key(want_key + 3),
                )
                .unwrap(),
            domain
                .register(
                    out.as_ptr(),
                    out.len(),
                    u64::from(libfabric_sys::FI_SEND),
                    key(want_key + 4),
                )
                .unwrap(),
        )
    };
    let a_at_b = av_b.insert(&a.name().unwrap()).unwrap();
    let (c0, c1): (*mut OpContext, *mut OpContext) = (&mut ctx[0], &mut ctx[1]);
    let inbox_ptr = inbox.as_mut_ptr();
    // SAFETY: as above.
    post(&[&cq_a, &cq_b], || unsafe {
        a.recv(inbox_ptr, CREDITS_LEN, desc(&in_mr), c0)
    });
    // SAFETY: as above.
    post(&[&cq_a, &cq_b], || unsafe {
        b.send(out.as_ptr(), len, desc(&out_mr), a_at_b, c1)
    });
    let got = pump(&[&cq_a, &cq_b], &[1, 1]);
    assert_eq!(got[0].len(), 1, "{name}: the receive completed");
    assert!(is_recv(&got[0][0]));
    assert_eq!(got[0][0].len, len);
    assert_eq!(Credits::decode(&inbox[..got[0][0].len]), Ok(credits));
    // tcp's CQs have a descriptor to park on; shm's have none (its links are polled).
    assert_eq!(cq_a.wait_fd().is_some(), parks, "{name}: a CQ to park on");
    drop((a, b));
}

#[test]
fn tcp_writes_a_frame_with_its_tag_and_sends_credits() {
    write_and_credit(
        RdmaProvider::Tcp,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        true,
    );
}

#[test]
fn shm_writes_a_frame_with_its_tag_and_sends_credits() {
    write_and_credit(RdmaProvider::Shm, None, false);
}

#[test]
fn errors_name_the_call_and_what_libfabric_said() {
    let e = FabricError {
        op: "fi_writemsg",
        code: -(libfabric_sys::FI_EAGAIN as i32),
    };
    assert!(e.is_again());
    let s = e.to_string();
    assert!(
        s.starts_with("fi_writemsg: ") && s.ends_with("(-11)"),
        "{s}"
    );
    assert!(
        s.len() > "fi_writemsg:  (-11)".len(),
        "{s}: has libfabric's text"
    );
    let err = Info::find(RdmaProvider::Verbs, None).err();
    // No InfiniBand on these machines: verbs is not found, and the error says so.
    if let Some(err) = err {
        assert_eq!(err.op, "fi_getinfo");
        assert!(err.code < 0);
    }
}
