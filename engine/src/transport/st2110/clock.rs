//! The time ST 2110 sessions run on: TAI (ST 2110-10), or a clock a test drives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
