//! Parking an idle lcore and waking it from other threads or from its ports' file descriptors.
//!
//! [`Parker`] is the shared half: an eventfd plus a `parked` flag. [`WaitSet`] is the lcore's
//! half: an epoll set holding the eventfd and every port's wake fd. The lcore announces it is
//! about to sleep by setting `parked`, re-checks for work, then waits in `epoll_wait`. A waker
//! makes its work visible first, then writes the eventfd only if `parked` is set — so a spinning
//! lcore costs its wakers no syscall. The two sides form Dekker's pattern: each stores, issues a
//! SeqCst fence, then loads what the other stored; at least one of them sees the other, so a
//! wake-up is never lost. Port fds are level-triggered: a port with unread input never lets the
//! lcore sleep.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec};

/// epoll key of the command eventfd; ports use their own ids.
const WAKE_KEY: u64 = u64::MAX;

/// The shared half: wakes the lcore from any thread.
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
        // Pairs with the fence in `WaitSet::park`: our work store is ordered before this load.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            // EAGAIN means the counter is saturated: a wake-up is already pending.
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }

    /// Whether the lcore has announced it is parking (a snapshot, for tests and diagnostics).
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }
}

/// The lcore's half: what it sleeps on.
#[derive(Debug)]
pub struct WaitSet {
    epoll: OwnedFd,
    parker: Arc<Parker>,
}

impl WaitSet {
    /// An epoll set watching `parker`'s eventfd.
    pub fn new(parker: Arc<Parker>) -> io::Result<Self> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &parker.eventfd,
            EventData::new_u64(WAKE_KEY),
            EventFlags::IN,
        )?;
        Ok(Self { epoll, parker })
    }

    /// Also wakes when `fd` is readable. `key` identifies the port (any value but `u64::MAX`).
    pub fn watch(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        debug_assert_ne!(key, WAKE_KEY);
        epoll::add(&self.epoll, fd, EventData::new_u64(key), EventFlags::IN)?;
        Ok(())
    }

    /// Stops watching `fd` (call before the port that owns it is dropped).
    pub fn unwatch(&self, fd: BorrowedFd<'_>) {
        // ENOENT if it was never added; nothing to undo then.
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Sleeps up to `timeout` unless `has_work` (checked after announcing the sleep) says there
    /// is something to do, or a watched fd is readable. Returns whether it actually slept.
    pub fn park(&mut self, timeout: Duration, has_work: impl FnOnce() -> bool) -> bool {
        let parker = &*self.parker;
        parker.parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `Parker::unpark`: the `parked` store is ordered before our
        // work check.
        fence(Ordering::SeqCst);
        if has_work() {
            parker.parked.store(false, Ordering::Relaxed);
            return false;
        }
        let ts = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // Which fd fired does not matter: the loop polls every port after waking.
        let mut events = [MaybeUninit::uninit(); 4];
        // EINTR or a timeout both just end the nap; the loop re-checks its work.
        let _ = epoll::wait(&self.epoll, &mut events, Some(&ts));
        let mut buf = [0u8; 8];
        // Drains the counter; EAGAIN when a port or the timeout (not a waker) ended the nap.
        let _ = rustix::io::read(&parker.eventfd, &mut buf);
        parker.parked.store(false, Ordering::Relaxed);
        true
    }

    /// The epoll fd (for diagnostics).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::AtomicU64;

    fn pair() -> (Arc<Parker>, WaitSet) {
        let p = Arc::new(Parker::new().unwrap());
        let w = WaitSet::new(p.clone()).unwrap();
        (p, w)
    }

    /// Runs `f` on a thread and fails the test if it has not finished within 30 s: a lost
    /// wake-up shows up as a hang, which this turns into a failure.
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("hung: {what}"))
    }

    fn ready(w: &WaitSet) -> usize {
        let mut events = [MaybeUninit::uninit(); 4];
        epoll::wait(
            w.fd(),
            &mut events,
            Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )
        .unwrap()
        .0
        .len()
    }

    #[test]
    fn park_returns_at_once_when_work_is_pending() {
        let (_, mut w) = pair();
        assert!(!w.park(Duration::from_secs(3600), || true));
    }

    /// A wake-up that lands between "parked" and the wait is kept by the eventfd: the park that
    /// follows returns without its hour-long timeout.
    #[test]
    fn unpark_before_wait_is_not_lost() {
        let (p, mut w) = pair();
        let slept = within("park after unpark", move || {
            w.park(Duration::from_secs(3600), || {
                p.unpark();
                false
            })
        });
        assert!(slept);
    }

    /// A readable watched fd makes the set ready; after `unwatch` it no longer does.
    #[test]
    fn watched_fd_wakes_and_unwatched_does_not() {
        let (_, mut w) = pair();
        let (a, b) = UnixDatagram::pair().unwrap();
        w.watch(b.as_fd(), 7).unwrap();
        assert_eq!(ready(&w), 0);
        a.send(b"x").unwrap();
        assert_eq!(ready(&w), 1);
        assert!(w.park(Duration::from_secs(3600), || false));
        w.unwatch(b.as_fd());
        assert_eq!(ready(&w), 0, "an unwatched fd still wakes the lcore");
    }

    /// Many handoffs through park/unpark with an hour-long timeout: a single lost wake-up would
    /// hang the consumer, which `within` turns into a failure.
    #[test]
    fn no_lost_wakeups_under_contention() {
        const N: u64 = 20_000;
        let (p, mut w) = pair();
        let produced = Arc::new(AtomicU64::new(0));
        let seen = {
            let producer = produced.clone();
            std::thread::spawn(move || {
                for i in 1..=N {
                    producer.store(i, Ordering::Release);
                    p.unpark();
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
            within("consumer of 20000 wake-ups", move || {
                let mut seen = 0;
                while seen < N {
                    let avail = produced.load(Ordering::Acquire);
                    if avail > seen {
                        seen = avail;
                        continue;
                    }
                    w.park(Duration::from_secs(3600), || {
                        produced.load(Ordering::Acquire) > seen
                    });
                }
                seen
            })
        };
        assert_eq!(seen, N);
    }
}
