//! Receivers cannot write the frames other receivers read, whatever their uid, root included:
//! a receiver is given its group's pool only once the engine has sealed it against every new
//! writer (`F_SEAL_FUTURE_WRITE`), and a sender joining a sealed group moves it to a new pool.
//!
//! The attack that worked before the seals: a receiver reopens `/proc/self/fd/N` read-write
//! (root can, whatever the mode; the memfd's owner can after `fchmod`) and maps it writable.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use common::Engine;
use common::raw::Raw;
use mcm_proto::config::ClientConfig;
use mcm_proto::sdk::engine_message::Body;
use mcm_proto::sdk::{ClientMessage, ConnectionKind, FetchPool};
use mcm_proto::shm::desc::Descriptor;
use mcm_proto::shm::map::{Access, is_write_sealed};
use mcm_proto::shm::pool::{PoolGeometry, PoolView};
use mcm_sdk::{Client, RxConnection, Timeout, TxConnection};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

const RX: ConnectionKind = ConnectionKind::CONNECTION_KIND_RX;
const TX: ConnectionKind = ConnectionKind::CONNECTION_KIND_TX;
const T: Timeout = Timeout::After(Duration::from_secs(10));
/// Payload bytes of the test's frames.
const LEN: usize = 4000;

fn blob_json(urn: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 8, "maxPayloadSize": {LEN},
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"blob": {{}}}}}}"#
    )
}

fn unix_client(e: &Engine) -> Client {
    Client::with_unix_socket(&e.unix, ClientConfig::default()).unwrap()
}

fn tcp_client(e: &Engine) -> Client {
    let json = format!(
        r#"{{"apiConnectionString": "Server=127.0.0.1; Port={}"}}"#,
        e.tcp.port()
    );
    Client::new(Some(&json)).unwrap()
}

/// Frame `i`'s bytes.
fn pattern(i: u32) -> Vec<u8> {
    (0..LEN as u32)
        .map(|k| (k.wrapping_mul(31) ^ i.wrapping_mul(0x9e37)) as u8)
        .collect()
}

fn send(tx: &TxConnection, i: u32) {
    let mut b = tx.get_timeout(T).unwrap();
    b.payload_mut()[..LEN].copy_from_slice(&pattern(i));
    b.set_payload_len(LEN).unwrap();
    b.put().unwrap();
}

fn expect(rx: &RxConnection, i: u32) {
    let f = rx.get_timeout(T).unwrap();
    assert!(f.payload() == pattern(i).as_slice(), "frame {i} intact");
}

/// Everything a receiver could try to write a pool it was given read-only: reopening it
/// read-write through /proc (as root this open succeeds), then a writable shared mapping and a
/// write(2) through the new fd, and the same after making the memfd writable by its mode.
/// Returns what went through.
fn attack(fd: BorrowedFd<'_>) -> Vec<String> {
    let mut got = Vec::new();
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    for round in ["as given", "after fchmod 0666"] {
        if round != "as given" {
            // The owner (root here) may change the mode: it gives nothing more.
            rustix::fs::fchmod(fd, Mode::from_raw_mode(0o666)).unwrap();
        }
        let rw = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .expect("root reopens any memfd read-write: the seal is what must stop it");
        // SAFETY: a new mapping of one page, unmapped at once if it was made; nothing uses it.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &rw,
                0,
            )
        };
        match mapped {
            Ok(p) => {
                // SAFETY: exactly the mapping made above.
                unsafe { rustix::mm::munmap(p, 4096).unwrap() };
                got.push(format!("{round}: a writable shared mapping"));
            }
            Err(e) => assert_eq!(e, Errno::PERM, "{round}: refused by the seal"),
        }
        match rustix::io::pwrite(&rw, &[0xEE; 16], 0) {
            Ok(_) => got.push(format!("{round}: write(2)")),
            Err(e) => assert_eq!(e, Errno::PERM, "{round}: refused by the seal"),
        }
    }
    if got.is_empty() {
        assert!(
            is_write_sealed(fd),
            "refused because the pool is sealed against writers"
        );
    }
    got
}

/// Asks for pool `pool` of receiver `conn`'s group by hand.
fn fetch_pool(raw: &mut Raw, conn: u64, pool: u32) -> Result<OwnedFd, String> {
    let mut m = ClientMessage::new();
    m.set_fetch_pool(FetchPool {
        conn_id: conn,
        pool_id: pool,
        ..FetchPool::new()
    });
    match raw.request(&m) {
        (Body::PoolFd(p), fds) => {
            assert!(p.fds_attached);
            assert_eq!(p.pool.pool_id, pool);
            let [fd]: [OwnedFd; 1] = fds.try_into().unwrap();
            Ok(fd)
        }
        (Body::Error(e), _) => Err(e.message),
        (other, _) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_receiver_cannot_make_its_pool_writable_even_as_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the suite runs as root, so the attack is root's"
    );
    let e = Engine::start();
    let c = unix_client(&e);
    // Receiver first: the group's pool is sealed when the receiver joins; the sender then gets
    // a new pool, sealed when it activates, which the receiver fetches.
    let mut raw = Raw::connect(&e);
    let (first, fds) = raw.create(RX, &blob_json("first"));
    assert!(!first.pool_fd_later);
    let first = first.conn_id;
    assert_eq!(
        attack(fds[0].as_fd()),
        Vec::<String>::new(),
        "receiver first"
    );
    let honest = c.create_rx(&blob_json("first")).unwrap();
    let tx = c.create_tx(&blob_json("first")).unwrap();
    let pool = tx.core().pool_id();
    let fetched = fetch_pool(&mut raw, first, pool).unwrap();
    assert_eq!(
        attack(fetched.as_fd()),
        Vec::<String>::new(),
        "the fetched pool"
    );
    // Sender first: the pool was sealed when the sender activated.
    let tx2 = c.create_tx(&blob_json("second")).unwrap();
    let (second, fds2) = raw.create(RX, &blob_json("second"));
    assert!(!second.pool_fd_later);
    assert_eq!(
        attack(fds2[0].as_fd()),
        Vec::<String>::new(),
        "sender first"
    );
    // Nothing of the attack reached the frames: the honest receiver reads them intact.
    for i in 0..50 {
        send(&tx, i);
        expect(&honest, i);
    }
    drop(tx2);
    // A sender cannot be handed another's sealed pool: its own is writable for it alone.
    let ro = PoolView::attach(
        fetched.as_fd(),
        PoolGeometry {
            slot_count: 1,
            payload_capacity: 1,
            metadata_capacity: 0,
        },
        Access::ReadWrite,
    );
    assert!(
        ro.is_err(),
        "a read-only fd of a sealed pool maps read-write: {ro:?}"
    );
}

#[test]
fn receivers_follow_their_group_to_a_new_pool_when_the_sender_restarts() {
    let e = Engine::start();
    let (cu, ct) = (unix_client(&e), tcp_client(&e));
    let rx_unix = cu.create_rx(&blob_json("restart")).unwrap();
    let rx_tcp = ct.create_rx(&blob_json("restart")).unwrap();
    let tx1 = cu.create_tx(&blob_json("restart")).unwrap();
    for i in 0..19 {
        send(&tx1, i);
        expect(&rx_unix, i);
        expect(&rx_tcp, i);
    }
    // The unix receiver keeps the last frame of the first sender's pool across the move.
    send(&tx1, 19);
    let held = rx_unix.get_timeout(T).unwrap();
    expect(&rx_tcp, 19);
    let first_pool = tx1.core().pool_id();
    drop(tx1);
    let tx2 = cu.create_tx(&blob_json("restart")).unwrap();
    assert_ne!(
        tx2.core().pool_id(),
        first_pool,
        "a new writer gets a new pool"
    );
    for i in 100..140 {
        send(&tx2, i);
        expect(&rx_unix, i);
        expect(&rx_tcp, i);
    }
    assert!(
        held.payload() == pattern(19).as_slice(),
        "a frame held across the move still reads what was sent"
    );
    held.put().unwrap();
    // And the group carries on, with nothing left over.
    for i in 200..210 {
        send(&tx2, i);
        expect(&rx_unix, i);
        expect(&rx_tcp, i);
    }
    let none = rx_unix.get_timeout(Timeout::After(Duration::from_millis(100)));
    assert!(none.is_err(), "no stray frame: {:?}", none.map(|f| f.seq()));
}

#[test]
fn a_receiver_joining_before_its_sender_activates_fetches_the_pool_once_sealed() {
    let e = Engine::start();
    let mut sender = Raw::connect(&e);
    let (created, tx_fds) = sender.create(TX, &blob_json("early"));
    let [pool_fd, block, cb, eb]: [OwnedFd; 4] = tx_fds.try_into().unwrap();
    assert!(
        !is_write_sealed(pool_fd.as_fd()),
        "the sender maps it first"
    );
    let wire = created.pool.clone().unwrap();
    let geometry = PoolGeometry {
        slot_count: wire.slot_count,
        payload_capacity: wire.payload_capacity,
        metadata_capacity: wire.metadata_capacity,
    };
    // The sender's mapping, made before it activates.
    let view = PoolView::attach(pool_fd.as_fd(), geometry, Access::ReadWrite).unwrap();
    let mut side = Raw::attach(TX, block, cb, eb);
    // A receiver now cannot be given the pool: it is not sealed yet.
    let mut receiver = Raw::connect(&e);
    let (rx, rx_fds) = receiver.create(RX, &blob_json("early"));
    assert!(rx.pool_fd_later, "the pool comes later");
    assert_eq!(rx_fds.len(), 3, "block and doorbells only");
    let refused = fetch_pool(&mut receiver, rx.conn_id, wire.pool_id).unwrap_err();
    assert!(
        refused.contains("once its sender has activated"),
        "{refused}"
    );
    // The SDK's receiver in the same state fetches it when the first frame names it.
    let sdk_rx = unix_client(&e).create_rx(&blob_json("early")).unwrap();
    sender.activate(created.conn_id);
    assert!(is_write_sealed(pool_fd.as_fd()), "sealed at activation");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for i in 0..10 {
        side.wait(Some(deadline), Duration::ZERO, None);
        let lent: Descriptor = side.pop().expect("the engine lends free slots");
        let (p, _) = view.slot_ptrs(lent.slot, LEN as u32, 0).unwrap();
        // SAFETY: the slot was lent to this sender; LEN bytes lie inside its payload, which
        // the sender's own mapping (made before the seal) may still write.
        unsafe { std::ptr::copy_nonoverlapping(pattern(i).as_ptr(), p.as_ptr(), LEN) };
        side.push(Descriptor {
            payload_len: LEN as u32,
            metadata_len: 0,
            ..lent
        })
        .unwrap();
        expect(&sdk_rx, i);
    }
    let fetched = fetch_pool(&mut receiver, rx.conn_id, wire.pool_id).unwrap();
    assert_eq!(attack(fetched.as_fd()), Vec::<String>::new());
}
