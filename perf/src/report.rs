//! Histograms: recording, shipping between processes, summarising.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

/// Records one frame's put→get latency in `h`: `get_ns`, the receiver's clock when the get
/// returned, minus `stamp_ns`, the frame's timestamp on the same clock. A get that reads earlier
/// than the stamp (clocks a little apart) records 1 ns, the histogram's lowest value.
pub fn record_latency(h: &mut Histogram<u64>, get_ns: u64, stamp_ns: u64) {
    let _ = h.record(get_ns.saturating_sub(stamp_ns).max(1));
}

/// The histogram as hex text (V2 serialisation), to send over a pipe.
pub fn to_hex(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising to memory");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`to_hex`]'s output.
pub fn from_hex(text: &str) -> Result<Histogram<u64>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd-length histogram text".into());
    }
    let bytes: Result<Vec<u8>, _> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect();
    let bytes = bytes.map_err(|e| format!("histogram text: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))
}

/// The percentiles a report shows, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// Percentiles of `h` (nanoseconds) in microseconds.
pub fn summarize(h: &Histogram<u64>) -> Summary {
    let us = |ns: u64| ns as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
    }
}

/// A progress line on stderr for long runs ("label: done/total"), redrawn at most once a
/// second and only when stderr is a terminal, so scripts and `--json` output never see it.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: u64,
    shown: Option<std::time::Instant>,
    tty: bool,
}

impl Progress {
    /// A progress line for `total` items of `label`.
    pub fn new(label: &'static str, total: u64) -> Self {
        use std::io::IsTerminal;
        Self {
            label,
            total,
            shown: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Reports `done` items (drawn when a second has passed since the last line).
    pub fn tick(&mut self, done: u64) {
        if !self.tty || self.shown.is_some_and(|t| t.elapsed().as_secs() < 1) {
            return;
        }
        self.shown = Some(std::time::Instant::now());
        eprint!("\r{}: {done}/{} ", self.label, self.total);
    }
}

impl Drop for Progress {
    /// Clears the line.
    fn drop(&mut self) {
        if self.tty && self.shown.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples_and_a_lossless_round_trip() {
        let mut h = new_histogram();
        // 1..=1000 us: p50 = 500 us, p99 = 990 us, max = 1000 us (within 3 significant digits).
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 500.0).abs() <= 0.5, "{s:?}");
        assert!((s.p90 - 900.0).abs() <= 0.5, "{s:?}");
        assert!((s.p99 - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() <= 1.0, "{s:?}");
        let back = from_hex(&to_hex(&h)).unwrap();
        assert_eq!(summarize(&back), s);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }

    /// A clock the test moves by hand.
    #[derive(Debug, Default)]
    struct FakeClock(std::cell::Cell<u64>);

    impl FakeClock {
        fn now(&self) -> u64 {
            self.0.get()
        }
        fn advance(&self, ns: u64) {
            self.0.set(self.0.get() + ns);
        }
    }

    /// As a receiver measures: frames stamped at put on the clock, got `delay` later.
    fn receive(clock: &FakeClock, delays_us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for d in delays_us {
            clock.advance(16_683_333); // a frame period at 59.94 fps
            let stamp = clock.now();
            clock.advance(d * 1000);
            record_latency(&mut h, clock.now(), stamp);
        }
        h
    }

    #[test]
    fn injected_delays_come_back_as_the_percentiles_of_merged_receivers() {
        let clock = FakeClock(std::cell::Cell::new(1_700_000_000_000_000_000));
        // Receiver A: 900 frames 100 us after put, 90 at 1 ms; receiver B: 9 at 5 ms, 1 at 20 ms.
        let a = receive(
            &clock,
            (0..1000)
                .map(|i| if i < 900 { 100 } else { 1000 })
                .take(990),
        );
        let b = receive(&clock, (0..10).map(|i| if i < 9 { 5000 } else { 20_000 }));
        // Merged as `local` merges its receiver processes' histograms (through the pipe).
        let mut all = new_histogram();
        all.add(from_hex(&to_hex(&a)).unwrap()).unwrap();
        all.add(from_hex(&to_hex(&b)).unwrap()).unwrap();
        let s = summarize(&all);
        assert_eq!(s.count, 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 1e-3;
        assert!(near(s.p50, 100.0) && near(s.p90, 100.0), "{s:?}");
        assert!(near(s.p99, 1000.0), "{s:?}");
        assert!(near(s.p999, 5000.0), "{s:?}");
        assert!(near(s.max, 20_000.0), "{s:?}");
        // A get stamped before its put (a clock stepped back) counts as 1 ns, not a wrap.
        let mut h = new_histogram();
        record_latency(&mut h, 5, 10);
        assert_eq!((h.len(), h.max()), (1, 1));
    }
}
