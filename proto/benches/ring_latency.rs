//! Latency and throughput of `shm::ring` between two threads pinned to CPUs 0 and 1.
//!
//! 1. Round trip: ping-pong of one [`Descriptor`] over two capacity-1024 rings; each round trip
//!    / 2 is recorded.
//! 2. One way: a paced stream (one descriptor per [`ONE_WAY_PERIOD`], so the ring stays near
//!    empty) stamps `timestamp_ns` on push; the consumer records `now - stamp` on pop. Both
//!    threads read the same monotonic clock.
//! 3. Throughput: 100,000,000 descriptors streamed with batched (32) and single push/pop.
//!
//! Every loop is bounded by its item count, and every wait panics after [`STALL_LIMIT`].

use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mcm_proto::shm::desc::Descriptor;
use mcm_proto::shm::ring::{self, Consumer, Producer};

const COMMAND: &str = "cargo bench -p mcm-proto --bench ring_latency";
const CAPACITY: usize = 1024;
const WARMUP_ROUND_TRIPS: u64 = 100_000;
const ROUND_TRIPS: u64 = 1_000_000;
const WARMUP_ONE_WAY: u64 = 100_000;
const ONE_WAY_ITEMS: u64 = 1_000_000;
const ONE_WAY_PERIOD: Duration = Duration::from_micros(1);
const STREAM_ITEMS: u64 = 100_000_000;
const BATCH: usize = 32;
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// The CPU the main thread (ping / producer side) runs on.
const MAIN_CPU: usize = 0;
/// The CPU the spawned thread (echo / consumer side) runs on.
const PEER_CPU: usize = 1;

/// Pins the current thread to CPU `cpu`; says so (or why not) on stdout.
///
/// Takes the CPU id rather than looking it up: a thread inherits its creator's affinity, so a
/// lookup after the main thread pinned itself would only see the main thread's CPU.
fn pin(cpu: usize, role: &str) {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        println!("# {role} pinned to CPU {cpu}");
    } else {
        println!("# {role} NOT pinned (CPU {cpu} unavailable)");
    }
}

/// Spins on `attempt` until it yields a value; panics after [`STALL_LIMIT`] without one.
///
/// Yields the CPU every 4096 fruitless attempts (several microseconds: far beyond a normal
/// wait here), so the benchmark still ends if both threads share a CPU.
#[inline(always)]
fn spin<R>(what: &str, mut attempt: impl FnMut() -> Option<R>) -> R {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(r) = attempt() {
            return r;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            let now = Instant::now();
            let start = *since.get_or_insert(now);
            assert!(
                now - start < STALL_LIMIT,
                "{what}: stalled for {STALL_LIMIT:?}"
            );
            thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

fn descriptor(seq: u64, timestamp_ns: u64) -> Descriptor {
    Descriptor {
        pool: 1,
        slot: (seq % 4096) as u32,
        payload_len: 1200,
        metadata_len: 0,
        seq,
        timestamp_ns,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn report(title: &str, h: &Histogram<u64>) {
    println!("{title}");
    println!(
        "  n={} min={} p50={} p90={} p99={} p99.9={} max={} mean={:.1} (ns)",
        h.len(),
        h.min(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean()
    );
}

/// Runs `peer` on a thread pinned to [`PEER_CPU`] while `main` runs here; returns both results.
fn pair<A, B: Send + 'static>(
    name: &str,
    main: impl FnOnce() -> A,
    peer: impl FnOnce() -> B + Send + 'static,
) -> (A, B) {
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            pin(PEER_CPU, "peer thread");
            peer()
        })
        .expect("spawn peer thread");
    let a = main();
    (a, handle.join().expect("peer thread panicked"))
}

fn round_trip() {
    let (mut ping_tx, mut ping_rx) = ring::with_capacity::<Descriptor>(CAPACITY).unwrap();
    let (mut pong_tx, mut pong_rx) = ring::with_capacity::<Descriptor>(CAPACITY).unwrap();
    let total = WARMUP_ROUND_TRIPS + ROUND_TRIPS;
    let echo = move || {
        for _ in 0..total {
            let d = spin("echo pop", || ping_rx.pop());
            spin("echo push", || pong_tx.push(d).ok());
        }
    };
    let ping = || {
        let mut h = histogram();
        for seq in 0..total {
            let start = Instant::now();
            spin("ping push", || ping_tx.push(descriptor(seq, 0)).ok());
            let back = spin("ping pop", || pong_rx.pop());
            let rtt = start.elapsed().as_nanos() as u64;
            assert_eq!(back.seq, seq);
            if seq >= WARMUP_ROUND_TRIPS {
                h.saturating_record((rtt / 2).max(1));
            }
        }
        h
    };
    let (h, ()) = pair("ring-echo", ping, echo);
    report(
        &format!(
            "round trip / 2: ping-pong over two rings of {CAPACITY} Descriptors, \
             {ROUND_TRIPS} round trips after {WARMUP_ROUND_TRIPS} warm-up"
        ),
        &h,
    );
}

fn one_way() {
    let (mut tx, mut rx) = ring::with_capacity::<Descriptor>(CAPACITY).unwrap();
    let epoch = Instant::now();
    let total = WARMUP_ONE_WAY + ONE_WAY_ITEMS;
    let consumer = move || {
        let mut h = histogram();
        for seq in 0..total {
            let d = spin("one-way pop", || rx.pop());
            let now = epoch.elapsed().as_nanos() as u64;
            assert_eq!(d.seq, seq);
            if seq >= WARMUP_ONE_WAY {
                h.saturating_record(now.saturating_sub(d.timestamp_ns).max(1));
            }
        }
        h
    };
    let producer = || {
        let period = ONE_WAY_PERIOD.as_nanos() as u64;
        for seq in 0..total {
            let due = seq * period;
            spin("one-way pace", || {
                (epoch.elapsed().as_nanos() as u64 >= due).then_some(())
            });
            let stamp = epoch.elapsed().as_nanos() as u64;
            spin("one-way push", || tx.push(descriptor(seq, stamp)).ok());
        }
    };
    let ((), h) = pair("ring-one-way", producer, consumer);
    report(
        &format!(
            "one way (stamp on push, now - stamp on pop): {ONE_WAY_ITEMS} descriptors \
             after {WARMUP_ONE_WAY} warm-up, one per {ONE_WAY_PERIOD:?}"
        ),
        &h,
    );
}

fn stream_batched(mut tx: Producer<Descriptor>, mut rx: Consumer<Descriptor>) -> Duration {
    let consumer = move || {
        let mut buf = [Descriptor::default(); BATCH];
        let mut expected = 0u64;
        while expected < STREAM_ITEMS {
            let n = spin("batched pop", || match rx.pop_into(&mut buf) {
                0 => None,
                n => Some(n),
            });
            assert_eq!(buf[n - 1].seq, expected + n as u64 - 1);
            expected += n as u64;
        }
    };
    let producer = || {
        let start = Instant::now();
        let mut buf = [Descriptor::default(); BATCH];
        let mut next = 0u64;
        while next < STREAM_ITEMS {
            let len = BATCH.min((STREAM_ITEMS - next) as usize);
            for (i, d) in buf[..len].iter_mut().enumerate() {
                *d = descriptor(next + i as u64, 0);
            }
            let n = spin("batched push", || match tx.push_slice(&buf[..len]) {
                0 => None,
                n => Some(n),
            });
            next += n as u64;
        }
        start
    };
    let (start, ()) = pair("ring-stream-batched", producer, consumer);
    start.elapsed()
}

fn stream_single(mut tx: Producer<Descriptor>, mut rx: Consumer<Descriptor>) -> Duration {
    let consumer = move || {
        for seq in 0..STREAM_ITEMS {
            let d = spin("single pop", || rx.pop());
            assert_eq!(d.seq, seq);
        }
    };
    let producer = || {
        let start = Instant::now();
        for seq in 0..STREAM_ITEMS {
            spin("single push", || tx.push(descriptor(seq, 0)).ok());
        }
        start
    };
    let (start, ()) = pair("ring-stream-single", producer, consumer);
    start.elapsed()
}

fn throughput() {
    type Stream = fn(Producer<Descriptor>, Consumer<Descriptor>) -> Duration;
    let runs: [(&str, Stream); 2] = [
        ("batched (push_slice / pop_into of 32)", stream_batched),
        ("single (push / pop)", stream_single),
    ];
    for (name, run) in runs {
        let (tx, rx) = ring::with_capacity::<Descriptor>(CAPACITY).unwrap();
        let elapsed = run(tx, rx);
        println!(
            "throughput {name}: {STREAM_ITEMS} descriptors in {elapsed:.3?} = {:.1} M items/s",
            STREAM_ITEMS as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
}

fn main() {
    println!("$ {COMMAND}");
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    println!(
        "# CPUs available: {:?}; ring capacity {CAPACITY}, element Descriptor (32 bytes)",
        cpus.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    pin(MAIN_CPU, "main thread");
    round_trip();
    one_way();
    throughput();
}
