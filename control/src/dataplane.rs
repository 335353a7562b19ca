//! The boundary between the control thread and the data plane.

use std::sync::Arc;
use std::time::Instant;

/// A request from the control thread to the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Every lcore answers with [`Event::Pong`] carrying `token` and `sent`: proves each lcore
    /// drains its command ring and measures how long the round trip takes.
    Ping {
        /// Echoed back in the answer.
        token: u64,
        /// When the control thread sent it.
        sent: Instant,
    },
}

/// Something the data plane reports to the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An lcore's answer to [`Command::Ping`].
    Pong {
        /// CPU the answering lcore is pinned to.
        cpu: usize,
        /// The ping's token.
        token: u64,
        /// When the ping was sent.
        sent: Instant,
    },
}

/// Counters one lcore publishes, as read by the control thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LcoreCounters {
    /// CPU the lcore is pinned to.
    pub cpu: usize,
    /// Loop iterations since start.
    pub iterations: u64,
    /// Iterations in which at least one port did work.
    pub busy_iterations: u64,
    /// Work items (packets, descriptors, commands) handled since start.
    pub work_items: u64,
    /// Times the lcore parked (adaptive idle policy only).
    pub parks: u64,
    /// Ports currently polled.
    pub ports: u64,
}

/// Why a command could not be delivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataplaneError {
    /// The data plane is stopping or an lcore has exited.
    #[error("the data plane is not running (lcore on CPU {cpu} has stopped)")]
    Stopped {
        /// CPU of the lcore that could not be reached.
        cpu: usize,
    },
    /// The lcore's command ring is full: it is not draining commands.
    #[error("the command ring of the lcore on CPU {cpu} is full ({capacity} commands pending)")]
    Busy {
        /// CPU of the lcore.
        cpu: usize,
        /// Capacity of its command ring.
        capacity: usize,
    },
}

/// Wakes the control thread from another thread; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier(pub(crate) Arc<mio::Waker>);

impl Notifier {
    /// Wakes the control thread so it drains [`Dataplane::drain_events`]. Never blocks.
    pub fn notify(&self) {
        // An eventfd write: fails only if the counter would overflow, which means the control
        // thread already has a pending wake-up.
        let _ = self.0.wake();
    }
}

/// What the control thread needs from the data plane. Implemented by the engine over its lcores.
pub trait Dataplane: Send {
    /// Gives the data plane the handle it uses to wake the control thread after queueing events.
    fn set_notifier(&mut self, notifier: Notifier);
    /// Delivers `cmd` to the lcores it concerns without blocking.
    fn submit(&mut self, cmd: Command) -> Result<(), DataplaneError>;
    /// Hands every queued event to `sink`, without blocking.
    fn drain_events(&mut self, sink: &mut dyn FnMut(Event));
    /// A snapshot of every lcore's counters.
    fn counters(&self) -> Vec<LcoreCounters>;
    /// Stops every lcore and waits for it to exit. Called once, at shutdown.
    fn shutdown(&mut self);
}
