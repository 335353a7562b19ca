//! lcores: pinned poll-mode worker threads.
//!
//! Each lcore owns a set of [`Port`]s and loops: drain the command ring, poll every port with a
//! bounded budget, publish counters. With [`IdlePolicy::Busy`] an idle lcore spins; with
//! [`IdlePolicy::Adaptive`] it spins for a while and then parks in its [`WaitSet`] until a command
//! or a port's [`Port::wake_fd`] wakes it. Nothing in the loop allocates, locks or logs.

pub mod park;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mcm_control::dataplane::{Event, LcoreCounters, Notifier};

use crate::config::IdlePolicy;
pub use park::{Parker, WaitSet};

/// Longest a parked lcore sleeps without being woken, so ports without a wake fd are still
/// polled regularly.
pub const PARK_TIMEOUT: Duration = Duration::from_millis(100);

/// What a port's poll achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to do.
    Idle,
    /// This many work items (packets, descriptors) were handled; at most the budget.
    Worked(u32),
}

impl Progress {
    /// Work items handled.
    pub fn items(self) -> u32 {
        match self {
            Progress::Idle => 0,
            Progress::Worked(n) => n,
        }
    }
}

/// Something an lcore polls: a transport endpoint, a ring from another lcore, a bridge.
pub trait Port: Send {
    /// Short name for logs and counters.
    fn name(&self) -> &str;
    /// Does at most `budget` items of work without blocking. `now` is the lcore's clock for this
    /// iteration (tests drive it).
    fn poll(&mut self, now: Instant, budget: u32) -> Progress;
    /// A descriptor that is readable whenever the port has input, so a parked lcore wakes for
    /// it. `None` (the default): the port is polled only while the lcore spins, and at least
    /// every [`PARK_TIMEOUT`] while it is parked.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// The lcore is about to park: announce it to the port's peers (so they ring the wake fd)
    /// and return whether input is already pending, in which case the lcore does not park.
    /// [`end_park`](Self::end_park) follows either way.
    fn prepare_park(&mut self) -> bool {
        false
    }
    /// The lcore is awake again (after [`prepare_park`](Self::prepare_park)).
    fn end_park(&mut self) {}
    /// When the port must be polled next even if no fd wakes the lcore (a paced sender's next
    /// packet, say); `now` is the lcore's clock. A parked lcore sleeps no later than the
    /// earliest deadline of its ports.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }
    /// A message from the control side for this port (see [`Command::ToPort`]); `now` is the
    /// lcore's clock.
    fn message(&mut self, msg: PortMsg, now: Instant) {
        let _ = (msg, now);
    }
    /// The port is being removed ([`Command::RemovePort`]): finish what must not be lost
    /// (frames accepted but not yet sent). The lcore keeps polling it until
    /// [`is_closed`](Self::is_closed), then hands it back to the control thread to drop.
    fn close(&mut self, now: Instant) {
        let _ = now;
    }
    /// Whether a closing port is done.
    fn is_closed(&self) -> bool {
        true
    }
}

/// Something an lcore hands back to the control thread to drop there: a removed port or edge
/// (its pool's `munmap`, its sockets' `close` and its files' `unlink` never run on an lcore).
pub type Garbage = Box<dyn std::any::Any + Send>;

/// A message for one port; the port downcasts it to the type it expects.
pub type PortMsg = Box<dyn std::any::Any + Send>;

/// Identifies a port on its lcore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(pub u64);

/// A message from the control thread to one lcore.
pub enum Command {
    /// Start polling `port`.
    AddPort(PortId, Box<dyn Port>),
    /// Close the port; once it is closed, stop polling it and hand it back to be dropped.
    RemovePort(PortId),
    /// Hand `PortMsg` to the port (dropped when no such port).
    ToPort(PortId, PortMsg),
    /// Answer with [`Event::Pong`].
    Ping {
        /// Echoed back.
        token: u64,
        /// When it was sent.
        sent: Instant,
    },
    /// Use this to wake the control thread after queueing events.
    SetNotifier(Notifier),
    /// Leave the loop.
    Stop,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::AddPort(id, p) => write!(f, "AddPort({}, {})", id.0, p.name()),
            Command::RemovePort(id) => write!(f, "RemovePort({})", id.0),
            Command::ToPort(id, _) => write!(f, "ToPort({})", id.0),
            Command::Ping { token, .. } => write!(f, "Ping({token})"),
            Command::SetNotifier(_) => f.write_str("SetNotifier"),
            Command::Stop => f.write_str("Stop"),
        }
    }
}

/// Counters one lcore publishes; single writer (the lcore), read by the control thread.
///
/// Aligned to its own cache lines so publishing never false-shares with a neighbour's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct SharedCounters {
    iterations: AtomicU64,
    busy_iterations: AtomicU64,
    work_items: AtomicU64,
    parks: AtomicU64,
    ports: AtomicU64,
}

impl SharedCounters {
    /// A consistent-enough snapshot for logs (each counter is read atomically on its own).
    pub fn snapshot(&self, cpu: usize) -> LcoreCounters {
        // Relaxed: counters are independent statistics; no other memory depends on them.
        LcoreCounters {
            cpu,
            iterations: self.iterations.load(Ordering::Relaxed),
            busy_iterations: self.busy_iterations.load(Ordering::Relaxed),
            work_items: self.work_items.load(Ordering::Relaxed),
            parks: self.parks.load(Ordering::Relaxed),
            ports: self.ports.load(Ordering::Relaxed),
        }
    }
}

/// The lcore's private copy of its counters, published with plain stores.
#[derive(Debug, Default, Clone, Copy)]
struct Local {
    iterations: u64,
    busy_iterations: u64,
    work_items: u64,
    parks: u64,
}

/// Everything a worker needs; built on the spawning thread, moved into the lcore thread.
pub struct Worker {
    cpu: usize,
    idle: IdlePolicy,
    budget: u32,
    ports: Vec<(PortId, Box<dyn Port>)>,
    /// Ports being closed (capacity reserved at creation).
    closing: Vec<PortId>,
    commands: Receiver<Command>,
    events: Sender<Event>,
    /// Where removed ports go to be dropped off the lcore.
    garbage: Option<Sender<Garbage>>,
    notifier: Option<Notifier>,
    waits: WaitSet,
    park_timeout: Duration,
    wake_margin: Duration,
    /// A port's deadline within the wake margin: no park is tried before it (each try reads
    /// every port's deadline and the clock).
    spin_until: Option<Instant>,
    shared: Arc<SharedCounters>,
    local: Local,
}

/// Whether the loop continues after draining commands.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Run,
    Stop,
}

impl Worker {
    /// A worker for `cpu`, woken through `parker`; `max_ports` sizes the port table once, so
    /// adding ports never allocates on the lcore below that count.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cpu: usize,
        idle: IdlePolicy,
        budget: u32,
        commands: Receiver<Command>,
        events: Sender<Event>,
        parker: Arc<Parker>,
        shared: Arc<SharedCounters>,
        max_ports: usize,
    ) -> std::io::Result<Self> {
        Ok(Self {
            cpu,
            idle,
            budget,
            ports: Vec::with_capacity(max_ports),
            closing: Vec::with_capacity(max_ports),
            commands,
            events,
            garbage: None,
            notifier: None,
            waits: WaitSet::new(parker)?,
            park_timeout: PARK_TIMEOUT,
            wake_margin: Duration::ZERO,
            spin_until: None,
            shared,
            local: Local::default(),
        })
    }

    /// Hands removed ports to `garbage` (the control thread drops them) instead of dropping
    /// them on the lcore.
    pub fn with_garbage(mut self, garbage: Sender<Garbage>) -> Self {
        self.garbage = Some(garbage);
        self
    }

    /// Replaces [`PARK_TIMEOUT`] (tests use a very long one, so only a wake-up ends a nap).
    pub fn with_park_timeout(mut self, timeout: Duration) -> Self {
        self.park_timeout = timeout;
        self
    }

    /// Wakes a parked lcore `margin` before the earliest port deadline, and spins rather than
    /// parks when a deadline is nearer than that: a nap ends late by the kernel's wake-up
    /// latency (tens of µs typically, hundreds at worst on a VM), which a pacer cannot afford.
    pub fn with_wake_margin(mut self, margin: Duration) -> Self {
        self.wake_margin = margin;
        self
    }

    /// Runs the poll loop until [`Command::Stop`] or until the command ring's sender is gone.
    pub fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        loop {
            // The one clock read of an iteration: every command and port uses it.
            let now = Instant::now();
            let (flow, commands) = self.drain_commands(now);
            if flow == Flow::Stop {
                break;
            }
            let work = commands + self.poll_ports(now);
            if !self.closing.is_empty() {
                self.reap_closed();
            }
            self.publish(work);
            if work > 0 {
                idle_since = None;
                continue;
            }
            match self.idle {
                IdlePolicy::Busy => std::hint::spin_loop(),
                IdlePolicy::Adaptive { spin } => {
                    let since = *idle_since.get_or_insert(now);
                    let near = self.spin_until.is_some_and(|t| now < t);
                    if now.duration_since(since) >= spin && !near {
                        self.park();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        self.publish(0);
    }

    fn drain_commands(&mut self, now: Instant) -> (Flow, u32) {
        let mut n = 0;
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => {
                    n += 1;
                    if self.handle(cmd, now) == Flow::Stop {
                        return (Flow::Stop, n);
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return (Flow::Run, n),
                // Every sender is gone: the engine is tearing down without a Stop.
                Err(crossbeam_channel::TryRecvError::Disconnected) => return (Flow::Stop, n),
            }
        }
    }

    fn handle(&mut self, cmd: Command, now: Instant) -> Flow {
        match cmd {
            Command::AddPort(id, port) => self.add_port(id, port),
            Command::RemovePort(id) => self.remove_port(id, now),
            Command::ToPort(id, msg) => match self.ports.iter_mut().find(|(p, _)| *p == id) {
                Some((_, port)) => port.message(msg, now),
                None => self.discard(msg),
            },
            Command::Ping { token, sent } => self.emit(Event::Pong {
                cpu: self.cpu,
                token,
                sent,
            }),
            Command::SetNotifier(n) => self.notifier = Some(n),
            Command::Stop => return Flow::Stop,
        }
        // Relaxed: a statistic, read only for display.
        self.shared
            .ports
            .store(self.ports.len() as u64, Ordering::Relaxed);
        Flow::Run
    }

    fn add_port(&mut self, id: PortId, port: Box<dyn Port>) {
        if let Some(fd) = port.wake_fd()
            && let Err(e) = self.waits.watch(fd, id.0)
        {
            // Control path, once per port: the port still works, it just cannot wake a nap.
            tracing::warn!(
                "lcore {}: port {} cannot wake the lcore: {e}",
                self.cpu,
                port.name()
            );
        }
        self.ports.push((id, port));
    }

    /// Closes port `id`; it is dropped (off the lcore) once closed.
    fn remove_port(&mut self, id: PortId, now: Instant) {
        if let Some(i) = self.ports.iter().position(|(p, _)| *p == id) {
            self.ports[i].1.close(now);
            if self.ports[i].1.is_closed() {
                self.drop_port(i);
            } else if !self.closing.contains(&id) {
                self.closing.push(id);
            }
        }
    }

    /// Drops the closing ports that are done.
    fn reap_closed(&mut self) {
        let mut k = 0;
        while k < self.closing.len() {
            let id = self.closing[k];
            match self.ports.iter().position(|(p, _)| *p == id) {
                Some(i) if !self.ports[i].1.is_closed() => k += 1,
                found => {
                    self.closing.swap_remove(k);
                    if let Some(i) = found {
                        self.drop_port(i);
                    }
                }
            }
        }
    }

    fn drop_port(&mut self, i: usize) {
        let (_, port) = self.ports.swap_remove(i);
        if let Some(fd) = port.wake_fd() {
            self.waits.unwatch(fd);
        }
        self.discard(Box::new(port));
    }

    /// Hands `g` to the control thread to drop (or drops it here when there is none: tests,
    /// and shutdown).
    fn discard(&self, g: Garbage) {
        match &self.garbage {
            Some(tx) => {
                if tx.send(g).is_ok()
                    && let Some(n) = &self.notifier
                {
                    n.notify();
                }
            }
            None => drop(g),
        }
    }

    fn emit(&self, ev: Event) {
        if self.events.send(ev).is_ok()
            && let Some(n) = &self.notifier
        {
            n.notify();
        }
    }

    fn poll_ports(&mut self, now: Instant) -> u32 {
        let mut work = 0;
        for (_, port) in &mut self.ports {
            work += port.poll(now, self.budget).items();
        }
        work
    }

    fn publish(&mut self, work: u32) {
        let l = &mut self.local;
        l.iterations += 1;
        if work > 0 {
            l.busy_iterations += 1;
            l.work_items += u64::from(work);
        }
        // Relaxed stores: the lcore is the only writer; readers want recent values, not order.
        self.shared
            .iterations
            .store(l.iterations, Ordering::Relaxed);
        self.shared
            .busy_iterations
            .store(l.busy_iterations, Ordering::Relaxed);
        self.shared
            .work_items
            .store(l.work_items, Ordering::Relaxed);
    }

    fn park(&mut self) {
        let mut timeout = self.park_timeout;
        // A fresh reading, not the iteration's: polling every port took time, and a nap
        // computed from the iteration's start would end that much past a pacer's deadline.
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        for (_, port) in &self.ports {
            if let Some(at) = port.next_deadline(now) {
                let wait = at.saturating_duration_since(now);
                // Zero (spin on) when the deadline is within the wake margin.
                timeout = timeout.min(wait.saturating_sub(self.wake_margin));
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        if timeout.is_zero() {
            // Spin; try again once that deadline has passed.
            self.spin_until = earliest;
            return;
        }
        let mut pending = false;
        for (_, port) in &mut self.ports {
            pending |= port.prepare_park();
        }
        let commands = &self.commands;
        if !pending && self.waits.park(timeout, || !commands.is_empty()) {
            self.local.parks += 1;
            // Relaxed: a statistic.
            self.shared.parks.store(self.local.parks, Ordering::Relaxed);
        }
        for (_, port) in &mut self.ports {
            port.end_park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, unbounded};

    /// A port with a fixed amount of work: it handles at most `budget` items per poll.
    struct Backlog {
        left: Arc<AtomicU64>,
        max_seen_batch: Arc<AtomicU64>,
    }

    impl Port for Backlog {
        fn name(&self) -> &str {
            "backlog"
        }
        fn poll(&mut self, _now: Instant, budget: u32) -> Progress {
            let left = self.left.load(Ordering::Relaxed);
            let n = left.min(u64::from(budget));
            self.left.store(left - n, Ordering::Relaxed);
            self.max_seen_batch.fetch_max(n, Ordering::Relaxed);
            if n == 0 {
                Progress::Idle
            } else {
                Progress::Worked(n as u32)
            }
        }
    }

    struct Rig {
        tx: Sender<Command>,
        events: Receiver<Event>,
        parker: Arc<Parker>,
        shared: Arc<SharedCounters>,
        thread: std::thread::JoinHandle<()>,
    }

    fn start(idle: IdlePolicy, budget: u32) -> Rig {
        start_parking(idle, budget, PARK_TIMEOUT)
    }

    fn start_parking(idle: IdlePolicy, budget: u32, park_timeout: Duration) -> Rig {
        let (tx, rx) = bounded(16);
        let (etx, events) = unbounded();
        let parker = Arc::new(Parker::new().unwrap());
        let shared = Arc::new(SharedCounters::default());
        let w = Worker::new(3, idle, budget, rx, etx, parker.clone(), shared.clone(), 4)
            .unwrap()
            .with_park_timeout(park_timeout);
        let thread = std::thread::spawn(move || w.run());
        Rig {
            tx,
            events,
            parker,
            shared,
            thread,
        }
    }

    impl Rig {
        fn send(&self, c: Command) {
            self.tx.send(c).unwrap();
            self.parker.unpark();
        }
        fn stop(self) -> LcoreCounters {
            self.send(Command::Stop);
            self.thread.join().unwrap();
            self.shared.snapshot(3)
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ports_are_polled_within_budget_and_counted() {
        for idle in [
            IdlePolicy::Busy,
            IdlePolicy::Adaptive {
                spin: Duration::from_micros(50),
            },
        ] {
            let rig = start(idle, 8);
            let left = Arc::new(AtomicU64::new(1000));
            let max = Arc::new(AtomicU64::new(0));
            let port = Backlog {
                left: left.clone(),
                max_seen_batch: max.clone(),
            };
            rig.send(Command::AddPort(PortId(1), Box::new(port)));
            wait_until("backlog drained", || left.load(Ordering::Relaxed) == 0);
            let c = rig.stop();
            assert_eq!(max.load(Ordering::Relaxed), 8, "a poll exceeded its budget");
            // 1000 items plus the AddPort and Stop commands.
            assert_eq!(c.work_items, 1001, "{c:?}");
            assert!(c.busy_iterations >= 1000 / 8, "{c:?}");
            assert!(c.iterations >= c.busy_iterations);
            assert_eq!(c.ports, 1);
        }
    }

    #[test]
    fn ping_is_answered_and_removed_port_is_no_longer_polled() {
        let rig = start(
            IdlePolicy::Adaptive {
                spin: Duration::ZERO,
            },
            4,
        );
        let left = Arc::new(AtomicU64::new(0));
        let max = Arc::new(AtomicU64::new(0));
        rig.send(Command::AddPort(
            PortId(9),
            Box::new(Backlog {
                left: left.clone(),
                max_seen_batch: max,
            }),
        ));
        rig.send(Command::RemovePort(PortId(9)));
        let sent = Instant::now();
        rig.send(Command::Ping { token: 42, sent });
        let ev = rig.events.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            ev,
            Event::Pong {
                cpu: 3,
                token: 42,
                sent
            }
        );
        left.store(100, Ordering::Relaxed);
        // Give a still-registered port ample chances to be polled, then check it was not.
        for token in 0..50 {
            rig.send(Command::Ping { token, sent });
            rig.events.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        assert_eq!(left.load(Ordering::Relaxed), 100);
        let c = rig.stop();
        assert_eq!(c.ports, 0);
    }

    #[test]
    fn adaptive_lcore_parks_when_idle_and_wakes_for_commands() {
        let rig = start(
            IdlePolicy::Adaptive {
                spin: Duration::from_micros(10),
            },
            4,
        );
        wait_until("the lcore parks", || rig.shared.snapshot(3).parks > 0);
        for token in 0..100 {
            rig.send(Command::Ping {
                token,
                sent: Instant::now(),
            });
            let ev = rig.events.recv_timeout(Duration::from_secs(30)).unwrap();
            assert!(matches!(ev, Event::Pong { token: t, .. } if t == token));
        }
        rig.stop();
    }

    /// A port fed through a datagram socket, readable when it has input.
    struct Datagrams {
        sock: std::os::unix::net::UnixDatagram,
        received: Arc<AtomicU64>,
    }

    impl Port for Datagrams {
        fn name(&self) -> &str {
            "datagrams"
        }
        fn poll(&mut self, _now: Instant, budget: u32) -> Progress {
            let mut n = 0;
            let mut buf = [0u8; 64];
            while n < budget && self.sock.recv(&mut buf).is_ok() {
                n += 1;
            }
            self.received.fetch_add(u64::from(n), Ordering::Relaxed);
            if n == 0 {
                Progress::Idle
            } else {
                Progress::Worked(n)
            }
        }
        fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
            use std::os::fd::AsFd;
            Some(self.sock.as_fd())
        }
    }

    /// With an hour-long park timeout, only the port's fd can wake the parked lcore: every
    /// datagram sent while it sleeps must still be handled.
    #[test]
    fn parked_lcore_wakes_for_its_port() {
        let rig = start_parking(
            IdlePolicy::Adaptive {
                spin: Duration::ZERO,
            },
            8,
            Duration::from_secs(3600),
        );
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let received = Arc::new(AtomicU64::new(0));
        rig.send(Command::AddPort(
            PortId(5),
            Box::new(Datagrams {
                sock: rx,
                received: received.clone(),
            }),
        ));
        for i in 1..=20u64 {
            wait_until("the lcore parks", || rig.parker.is_parked());
            tx.send(&i.to_ne_bytes()).unwrap();
            wait_until("the datagram is handled", || {
                received.load(Ordering::Relaxed) == i
            });
        }
        rig.send(Command::RemovePort(PortId(5)));
        let c = rig.stop();
        assert!(c.parks >= 20, "{c:?}");
        assert_eq!(c.ports, 0);
    }

    /// A port whose next deadline is always `ahead` from now (an ST 2110 pacer between
    /// packets); counts its polls.
    struct Deadline {
        ahead: Duration,
        polls: Arc<AtomicU64>,
    }

    impl Port for Deadline {
        fn name(&self) -> &str {
            "deadline"
        }
        fn poll(&mut self, _now: Instant, _budget: u32) -> Progress {
            self.polls.fetch_add(1, Ordering::Relaxed);
            Progress::Idle
        }
        fn next_deadline(&self, now: Instant) -> Option<Instant> {
            Some(now + self.ahead)
        }
    }

    /// Within the wake margin of a deadline an adaptive lcore spins instead of parking; a
    /// deadline beyond it lets the lcore park (until the margin before it).
    #[test]
    fn an_lcore_spins_instead_of_parking_within_the_wake_margin() {
        for (margin, parks) in [(Duration::from_millis(50), false), (Duration::ZERO, true)] {
            let (tx, rx) = bounded(16);
            let (etx, _events) = unbounded();
            let parker = Arc::new(Parker::new().unwrap());
            let shared = Arc::new(SharedCounters::default());
            let idle = IdlePolicy::Adaptive {
                spin: Duration::ZERO,
            };
            let w = Worker::new(3, idle, 8, rx, etx, parker.clone(), shared.clone(), 4)
                .unwrap()
                .with_wake_margin(margin);
            let thread = std::thread::spawn(move || w.run());
            let polls = Arc::new(AtomicU64::new(0));
            let port = Deadline {
                ahead: Duration::from_millis(5),
                polls: polls.clone(),
            };
            tx.send(Command::AddPort(PortId(1), Box::new(port)))
                .unwrap();
            parker.unpark();
            wait_until("the port is polled", || polls.load(Ordering::Relaxed) > 0);
            if parks {
                wait_until("the lcore parks", || shared.snapshot(3).parks >= 3);
            } else {
                // 100 ms of idle polling with the deadline always 5 ms away: never a park.
                std::thread::sleep(Duration::from_millis(100));
                assert!(polls.load(Ordering::Relaxed) > 100);
            }
            tx.send(Command::Stop).unwrap();
            parker.unpark();
            thread.join().unwrap();
            let c = shared.snapshot(3);
            assert_eq!(c.parks > 0, parks, "margin {margin:?}: {c:?}");
        }
    }

    #[test]
    fn lcore_exits_when_control_side_is_dropped() {
        let rig = start(
            IdlePolicy::Adaptive {
                spin: Duration::ZERO,
            },
            4,
        );
        let Rig {
            tx, parker, thread, ..
        } = rig;
        drop(tx);
        parker.unpark();
        thread.join().unwrap();
    }
}
