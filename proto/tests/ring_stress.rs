//! Stress test of `shm::ring`: two threads move a counting sequence of `u64` through a small
//! ring with a mix of single and batched pushes and pops; the consumer checks that every value is
//! exactly the previous one plus one and that the count is complete.
//!
//! `MCM_RING_STRESS_ITEMS` sets the item count (default [`DEFAULT_ITEMS`], sized to take 10-20 s
//! in a debug build on two cores). For billions of items use a release build:
//!
//! ```text
//! MCM_RING_STRESS_ITEMS=4000000000 cargo test -p mcm-proto --release --test ring_stress -- --nocapture
//! ```
//!
//! Every wait is bounded: a side that makes no progress for [`STALL_LIMIT`] panics.

use std::thread;
use std::time::{Duration, Instant};

use mcm_proto::shm::ring::{self, Consumer, Producer};

/// Items moved when `MCM_RING_STRESS_ITEMS` is unset.
const DEFAULT_ITEMS: u64 = 400_000_000;
/// Small, so the ring is full or empty often and wraps constantly.
const CAPACITY: usize = 256;
/// Largest batch either side moves at once.
const MAX_BATCH: usize = 48;
/// How long a side may go without progress before the test fails instead of hanging.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Turns an unbounded spin into a bounded one: panics after [`STALL_LIMIT`] without progress.
struct Watchdog {
    side: &'static str,
    idle_spins: u32,
    stalled_since: Option<Instant>,
}

impl Watchdog {
    fn new(side: &'static str) -> Self {
        Watchdog {
            side,
            idle_spins: 0,
            stalled_since: None,
        }
    }

    fn progress(&mut self) {
        self.idle_spins = 0;
        self.stalled_since = None;
    }

    /// One fruitless attempt. Checks the clock and yields every 1024 of them.
    fn idle(&mut self, position: u64) {
        self.idle_spins = self.idle_spins.wrapping_add(1);
        if !self.idle_spins.is_multiple_of(1024) {
            std::hint::spin_loop();
            return;
        }
        let now = Instant::now();
        let since = *self.stalled_since.get_or_insert(now);
        assert!(
            now - since < STALL_LIMIT,
            "{} made no progress for {STALL_LIMIT:?} at item {position}",
            self.side
        );
        thread::yield_now();
    }
}

/// Batch size for the step starting at `position`: 0 (half the steps) means a single push or pop,
/// otherwise 1 to [`MAX_BATCH`].
fn batch_len(position: u64, salt: u64) -> usize {
    let hash = position
        .wrapping_add(salt)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if hash >> 63 == 0 {
        return 0;
    }
    (hash >> 52) as usize % MAX_BATCH + 1
}

fn produce(mut producer: Producer<u64>, total: u64) {
    let mut watchdog = Watchdog::new("producer");
    let mut buf = [0u64; MAX_BATCH];
    let mut next = 0u64;
    while next < total {
        let pushed = match batch_len(next, 1) {
            0 => u64::from(producer.push(next).is_ok()),
            len => {
                let len = len.min((total - next) as usize);
                for (i, slot) in buf[..len].iter_mut().enumerate() {
                    *slot = next + i as u64;
                }
                producer.push_slice(&buf[..len]) as u64
            }
        };
        if pushed == 0 {
            watchdog.idle(next);
        } else {
            next += pushed;
            watchdog.progress();
        }
    }
    assert!(!producer.is_corrupt());
}

/// Pops until `total` items arrived, checking each is the previous plus one; returns the count.
fn consume(mut consumer: Consumer<u64>, total: u64) -> u64 {
    let mut watchdog = Watchdog::new("consumer");
    let mut buf = [0u64; MAX_BATCH];
    let mut expected = 0u64;
    while expected < total {
        let popped = match batch_len(expected, 7) {
            0 => match consumer.pop() {
                Some(value) => {
                    buf[0] = value;
                    1
                }
                None => 0,
            },
            len => consumer.pop_into(&mut buf[..len]),
        };
        for &value in &buf[..popped] {
            assert_eq!(value, expected, "out of order after {expected} items");
            expected += 1;
        }
        if popped == 0 {
            watchdog.idle(expected);
        } else {
            watchdog.progress();
        }
    }
    assert!(consumer.is_empty(), "items beyond the {total} pushed");
    assert!(!consumer.is_corrupt());
    expected
}

#[test]
fn counting_sequence_survives_two_threads() {
    let total = match std::env::var("MCM_RING_STRESS_ITEMS") {
        Ok(s) => s
            .parse()
            .expect("MCM_RING_STRESS_ITEMS must be an unsigned integer"),
        Err(_) => DEFAULT_ITEMS,
    };
    let (producer, consumer) = ring::with_capacity::<u64>(CAPACITY).unwrap();
    let start = Instant::now();
    let producer = thread::Builder::new()
        .name("ring-stress-producer".into())
        .spawn(move || produce(producer, total))
        .unwrap();
    let received = consume(consumer, total);
    producer.join().expect("producer panicked");
    let elapsed = start.elapsed();
    assert_eq!(received, total);
    println!(
        "ring_stress: {total} items in {elapsed:.2?} ({:.1} M items/s)",
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
}
