//! Parking an idle lcore and waking it from other threads.
//!
//! The lcore announces it is about to sleep by setting `parked`, re-checks for work, then waits on
//! an eventfd. A waker makes its work visible first, then writes the eventfd only if `parked` is
//! set — so a spinning lcore costs its wakers no syscall. The two sides form Dekker's pattern: each
//! stores, issues a SeqCst fence, then loads what the other stored; at least one of them sees the
//! other, so a wake-up is never lost.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

/// The sleeping half of an lcore's idle policy, shared with every thread that may wake it.
#[derive(Debug)]
pub struct Parker {
    eventfd: OwnedFd,
    parked: AtomicBool,
}

impl Parker {
    /// Creates the eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        let eventfd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self {
            eventfd,
            parked: AtomicBool::new(false),
        })
    }

    /// Wakes the lcore if it is parked or about to park. Call after making the work visible.
    pub fn unpark(&self) {
        // Pairs with the fence in `park`: our work store is ordered before the `parked` load.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            // EAGAIN means the counter is saturated: a wake-up is already pending.
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }

    /// Sleeps up to `timeout` unless `has_work` (checked after announcing the sleep) says there
    /// is something to do. Returns whether it actually slept.
    pub fn park(&self, timeout: Duration, has_work: impl FnOnce() -> bool) -> bool {
        self.parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `unpark`: the `parked` store is ordered before our work check.
        fence(Ordering::SeqCst);
        if has_work() {
            self.parked.store(false, Ordering::Relaxed);
            return false;
        }
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.eventfd, PollFlags::IN)];
        // EINTR or a timeout both just end the nap; the loop re-checks its work.
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let mut buf = [0u8; 8];
        // Drains the counter; EAGAIN when the timeout (not a waker) ended the nap.
        let _ = rustix::io::read(&self.eventfd, &mut buf);
        self.parked.store(false, Ordering::Relaxed);
        true
    }

    /// The eventfd, for waiters outside this process in later protocols.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    #[test]
    fn park_returns_at_once_when_work_is_pending() {
        let p = Parker::new().unwrap();
        assert!(!p.park(Duration::from_secs(60), || true));
    }

    #[test]
    fn unpark_before_park_is_not_lost() {
        let p = Parker::new().unwrap();
        p.parked.store(true, Ordering::Relaxed);
        p.unpark();
        p.parked.store(false, Ordering::Relaxed);
        // The eventfd holds the wake-up, so this park ends without waiting for the timeout; the
        // bound is the test's guard, not a timing assertion.
        let t = Instant::now();
        assert!(p.park(Duration::from_secs(60), || false));
        assert!(t.elapsed() < Duration::from_secs(30));
    }

    /// Many handoffs through park/unpark: every item is seen, none waits out the full timeout.
    #[test]
    fn no_lost_wakeups_under_contention() {
        const N: u64 = 20_000;
        let p = Arc::new(Parker::new().unwrap());
        let produced = Arc::new(AtomicU64::new(0));
        let consumer = {
            let (p, produced) = (p.clone(), produced.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut long_naps = 0;
                while seen < N {
                    let avail = produced.load(Ordering::Acquire);
                    if avail > seen {
                        seen = avail;
                        continue;
                    }
                    let t = Instant::now();
                    p.park(Duration::from_secs(5), || {
                        produced.load(Ordering::Acquire) > seen
                    });
                    if t.elapsed() >= Duration::from_secs(5) {
                        long_naps += 1;
                    }
                }
                long_naps
            })
        };
        for i in 1..=N {
            produced.store(i, Ordering::Release);
            p.unpark();
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(consumer.join().unwrap(), 0, "a wake-up was lost");
    }
}
