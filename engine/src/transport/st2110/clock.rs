//! The time ST 2110 sessions run on: TAI (ST 2110-10), or a clock a test drives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one reading of TAI is extended with the lcore's monotonic clock before TAI is read
/// again (see [`Clock::at`]).
pub const REANCHOR: Duration = Duration::from_millis(10);

/// A reading of TAI paired with the monotonic instant it was taken at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anchor(Option<(Instant, u64)>);

/// Where a session reads the time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// `CLOCK_TAI`. It equals `CLOCK_REALTIME` where the kernel's TAI offset was never set
    /// (no PTP daemon); with PTP it is the network's TAI, as ST 2110-10 wants.
    Tai,
    /// A time in ns that a test sets.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// Now, in ns since the TAI epoch.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Tai => {
                let t = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Tai)
                    .unwrap_or_else(|_| {
                        rustix::time::clock_gettime(rustix::time::ClockId::Realtime)
                    });
                t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
            }
            // Relaxed: a test's clock; no memory depends on it.
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// TAI (ns) at the lcore's instant `now`, without a clock read on most calls: TAI is read
    /// (with a fresh monotonic instant beside it) at most every [`REANCHOR`] and extended with
    /// `now` in between. Both clocks run at the kernel's disciplined rate, so they part only at
    /// a step of the system time, which the next reading takes in. A manual clock is read on
    /// every call (tests drive it).
    pub fn at(&self, now: Instant, anchor: &mut Anchor) -> u64 {
        if let Clock::Manual(_) = self {
            return self.now_ns();
        }
        if let Some((t, ns)) = anchor.0
            && now >= t
            && now - t < REANCHOR
        {
            return ns + (now - t).as_nanos() as u64;
        }
        let ns = self.now_ns();
        let t = Instant::now();
        anchor.0 = Some((t, ns));
        // `now` was read before this reading: TAI then.
        ns.saturating_sub(t.saturating_duration_since(now).as_nanos() as u64)
    }

    /// The instant (ns since the TAI epoch) an RTP timestamp of a `clock_rate` Hz media clock
    /// stands for: the latest such instant not after now. RTP time wraps every 2^32 ticks
    /// (13.3 hours at 90 kHz), so this is exact for any stream less than that old.
    pub fn sampling_instant_ns(&self, rtp_timestamp: u32, clock_rate: u32) -> u64 {
        sampling_instant_ns(self.now_ns(), rtp_timestamp, clock_rate)
    }
}

/// See [`Clock::sampling_instant_ns`]; `now_ns` given.
pub fn sampling_instant_ns(now_ns: u64, rtp_timestamp: u32, clock_rate: u32) -> u64 {
    let rate = u128::from(clock_rate.max(1));
    let now_ticks = u128::from(now_ns) * rate / 1_000_000_000;
    let behind = (now_ticks as u32).wrapping_sub(rtp_timestamp);
    let ticks = now_ticks.saturating_sub(u128::from(behind));
    // Round up: the instant whose floor in ticks is `ticks`.
    (ticks * 1_000_000_000).div_ceil(rate) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_timestamps_map_back_to_their_instant() {
        let rate = 90_000;
        for t in [
            0u64,
            1_000_000_000,
            1_764_000_000_123_456_789,
            50_000 * 1_000_000_000,
        ] {
            let ts = mcm_proto::st2110::rtp::rtp_timestamp(t, rate);
            // Seen up to a minute later, the timestamp still names the same instant (to a tick).
            for later in [0u64, 11_111, 5_000_000_000, 60_000_000_000] {
                let back = sampling_instant_ns(t + later, ts, rate);
                assert!(back <= t && t - back < 11_112, "{t} {later} {back}");
                assert_eq!(mcm_proto::st2110::rtp::rtp_timestamp(back, rate), ts);
            }
        }
    }

    #[test]
    fn tai_is_extended_with_the_monotonic_clock_between_readings() {
        let mut anchor = Anchor::default();
        let t0 = Instant::now();
        let a = Clock::Tai.at(t0, &mut anchor);
        let (at, ns) = anchor.0.unwrap();
        // Within REANCHOR: exactly the reading plus the monotonic time since it.
        let later = at + Duration::from_millis(3);
        assert_eq!(Clock::Tai.at(later, &mut anchor), ns + 3_000_000);
        assert_eq!(anchor.0.unwrap().0, at, "no new reading");
        assert!(a <= ns && ns - a < 1_000_000_000, "{a} {ns}");
        // Past REANCHOR: read again, and close to the direct reading.
        let far = Instant::now() + REANCHOR;
        std::thread::sleep(REANCHOR + Duration::from_millis(1));
        let b = Clock::Tai.at(far, &mut anchor);
        assert_ne!(anchor.0.unwrap().0, at, "a new reading");
        let direct = Clock::Tai.now_ns();
        assert!(
            b <= direct + 1_000_000 && direct - b < 1_000_000_000,
            "{b} {direct}"
        );
        // A manual clock is read on every call.
        let m = Arc::new(AtomicU64::new(5));
        let clock = Clock::Manual(m.clone());
        assert_eq!(clock.at(t0, &mut anchor), 5);
        m.store(9, Ordering::Relaxed);
        assert_eq!(clock.at(t0, &mut anchor), 9);
    }

    #[test]
    fn the_tai_clock_is_near_realtime() {
        let tai = Clock::Tai.now_ns();
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // Equal without a TAI offset, 37 s ahead with one; never behind.
        assert!(
            tai + 1_000_000_000 > real && tai < real + 40_000_000_000,
            "{tai} {real}"
        );
    }
}
