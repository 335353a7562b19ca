//! The set of running lcores: spawning, pinning, the command path, and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mcm_control::dataplane::{
    self, Dataplane, DataplaneError, Event, GroupId, LcoreCounters, Notifier,
};

use crate::config::{EngineConfig, IdlePolicy};
use crate::group::{GroupMsg, GroupPort, Reporter};
use crate::lcore::{Command, Garbage, Parker, Port, PortId, SharedCounters, Worker};
use crate::transport;

/// Most ports one lcore polls; its port table is allocated once at this size.
pub const MAX_PORTS_PER_LCORE: usize = 1024;

/// Why the lcores could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A thread could not be created.
    #[error("cannot start lcore thread for CPU {cpu}: {source}")]
    Spawn {
        /// Its CPU.
        cpu: usize,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A thread could not be pinned to its CPU.
    #[error(
        "lcores.cpus: cannot pin lcore to CPU {cpu} (the CPU is offline or outside this process's cpuset)"
    )]
    Pin {
        /// The CPU.
        cpu: usize,
    },
}

/// One lcore as seen from the control side.
struct Handle {
    cpu: usize,
    commands: Sender<Command>,
    /// Commands that did not fit the ring, in order; delivered before any newer one.
    backlog: VecDeque<Command>,
    parker: Arc<Parker>,
    shared: Arc<SharedCounters>,
    thread: Option<JoinHandle<()>>,
}

/// The running lcores.
pub struct Lcores {
    lcores: Vec<Handle>,
    events: Receiver<Event>,
    event_tx: Sender<Event>,
    notifier: Option<Notifier>,
    /// Removed ports and edges, handed back by the lcores to be dropped here.
    garbage: Receiver<Garbage>,
    garbage_tx: Sender<Garbage>,
    /// Which lcore (index) serves each group, its pool id, and what links need of it.
    groups: HashMap<GroupId, (usize, u32, transport::GroupSite)>,
    /// Payload bytes copied by any port (format conversions); the local path adds nothing.
    copied: Arc<AtomicU64>,
    /// How ST 2110 sessions are built.
    st2110: transport::st2110::Settings,
    /// Where RDMA links listen.
    rdma: crate::config::RdmaSettings,
    /// Provider objects opened ahead for the next RDMA links.
    #[cfg(feature = "rdma")]
    rdma_spares: std::cell::RefCell<transport::rdma::spares::Spares>,
}

impl Lcores {
    /// Spawns one named, pinned worker per configured CPU. Returns once every worker is pinned
    /// and has passed the start barrier, or an error after every started worker has exited.
    pub fn start(cfg: &EngineConfig) -> Result<Self, StartError> {
        let (event_tx, events) = crossbeam_channel::unbounded();
        let (garbage_tx, garbage) = crossbeam_channel::unbounded();
        let n = cfg.lcore_cpus.len();
        let barrier = Arc::new(Barrier::new(n + 1));
        let abort = Arc::new(AtomicBool::new(false));
        let (pinned_tx, pinned_rx) = crossbeam_channel::bounded(n);
        let mut lcores = Vec::with_capacity(n);
        for &cpu in &cfg.lcore_cpus {
            let (tx, rx) = crossbeam_channel::bounded(cfg.command_ring);
            let parker =
                Arc::new(Parker::new().map_err(|source| StartError::Spawn { cpu, source })?);
            let shared = Arc::new(SharedCounters::default());
            let worker = Worker::new(
                cpu,
                cfg.idle,
                cfg.budget,
                rx,
                event_tx.clone(),
                parker.clone(),
                shared.clone(),
                MAX_PORTS_PER_LCORE,
            )
            .map_err(|source| StartError::Spawn { cpu, source })?
            .with_wake_margin(cfg.wake_margin)
            .with_garbage(garbage_tx.clone());
            let start = StartGate {
                cpu,
                barrier: barrier.clone(),
                abort: abort.clone(),
                pinned: pinned_tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("mcm-lcore-{cpu}"))
                .spawn(move || {
                    if start.pass() {
                        worker.run();
                    }
                });
            let thread = match spawned {
                Ok(t) => t,
                Err(source) => {
                    abort_start(&abort, &barrier, lcores, n);
                    return Err(StartError::Spawn { cpu, source });
                }
            };
            lcores.push(Handle {
                cpu,
                commands: tx,
                backlog: VecDeque::new(),
                parker,
                shared,
                thread: Some(thread),
            });
        }
        let mut failed = None;
        for _ in 0..n {
            if let Ok((cpu, false)) = pinned_rx.recv() {
                failed.get_or_insert(cpu);
            }
        }
        if failed.is_some() {
            abort.store(true, Ordering::Release);
        }
        barrier.wait();
        let set = Self {
            lcores,
            events,
            event_tx,
            notifier: None,
            garbage,
            garbage_tx,
            groups: HashMap::new(),
            copied: Arc::new(AtomicU64::new(0)),
            st2110: cfg.st2110.clone(),
            rdma: cfg.rdma.clone(),
            #[cfg(feature = "rdma")]
            rdma_spares: {
                // The agent's links use tcp with one endpoint unless told otherwise.
                let mut s = transport::rdma::spares::Spares::new(cfg.rdma.ip);
                s.want(mcm_proto::config::transport::RdmaProvider::Tcp, 1);
                std::cell::RefCell::new(s)
            },
        };
        match failed {
            Some(cpu) => Err(StartError::Pin { cpu }),
            None => Ok(set),
        }
    }

    /// CPUs of the lcores, in configuration order.
    pub fn cpus(&self) -> Vec<usize> {
        self.lcores.iter().map(|l| l.cpu).collect()
    }

    /// Hands `port` to the lcore at `index` (configuration order).
    pub fn add_port(
        &mut self,
        index: usize,
        id: PortId,
        port: Box<dyn Port>,
    ) -> Result<(), DataplaneError> {
        self.send(index, Command::AddPort(id, port))
    }

    /// Tells the lcore at `index` to drop port `id`.
    pub fn remove_port(&mut self, index: usize, id: PortId) -> Result<(), DataplaneError> {
        self.send(index, Command::RemovePort(id))
    }

    /// The lcore serving the fewest groups (the first such in configuration order).
    fn least_loaded(&self) -> usize {
        let mut load = vec![0usize; self.lcores.len()];
        for &(i, _, _) in self.groups.values() {
            load[i] += 1;
        }
        (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0)
    }

    fn group_lcore(
        &self,
        group: GroupId,
    ) -> Result<&(usize, u32, transport::GroupSite), DataplaneError> {
        self.groups
            .get(&group)
            .ok_or(DataplaneError::UnknownGroup { group })
    }

    /// Drops what the lcores handed back (removed ports and edges), here on the control
    /// thread.
    fn collect_garbage(&mut self) {
        while let Ok(g) = self.garbage.try_recv() {
            drop(g);
        }
    }

    /// Queues `cmd` for the lcore at `index` without blocking. A command that does not fit its
    /// ring waits in the lcore's backlog (and so does every later one, to keep the order) until
    /// [`Dataplane::flush`] delivers it: a detach or a group's destruction is never lost.
    fn send(&mut self, index: usize, cmd: Command) -> Result<(), DataplaneError> {
        let l = &mut self.lcores[index];
        l.backlog.push_back(cmd);
        Self::pump(l)
    }

    /// Moves an lcore's backlog into its ring while there is room.
    fn pump(l: &mut Handle) -> Result<(), DataplaneError> {
        let mut delivered = false;
        while let Some(cmd) = l.backlog.pop_front() {
            match l.commands.try_send(cmd) {
                Ok(()) => delivered = true,
                Err(TrySendError::Full(cmd)) => {
                    l.backlog.push_front(cmd);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    l.backlog.clear();
                    return Err(DataplaneError::Stopped { cpu: l.cpu });
                }
            }
        }
        if delivered || !l.backlog.is_empty() {
            l.parker.unpark();
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for l in &self.lcores {
            // A full ring still drains: wait for room, but not forever.
            let _ = l
                .commands
                .send_timeout(Command::Stop, Duration::from_secs(5));
            l.parker.unpark();
        }
        for l in &mut self.lcores {
            if let Some(t) = l.thread.take()
                && t.join().is_err()
            {
                tracing::error!("lcore on CPU {} panicked", l.cpu);
            }
        }
    }
}

/// What a new lcore thread does before its loop: pin, report, wait for the others.
struct StartGate {
    cpu: usize,
    barrier: Arc<Barrier>,
    abort: Arc<AtomicBool>,
    pinned: Sender<(usize, bool)>,
}

impl StartGate {
    /// Pins the current thread; returns whether the loop should run.
    fn pass(self) -> bool {
        let ok = core_affinity::set_for_current(core_affinity::CoreId { id: self.cpu });
        // Timer slack of 1 ns: a parked lcore wakes at its deadline (an ST 2110 pacer's next
        // packet), not up to 50 µs after it, the kernel's default slack for normal threads.
        // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only this thread.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let _ = self.pinned.send((self.cpu, ok));
        self.barrier.wait();
        // Acquire pairs with the Release store made before the spawning thread's barrier wait.
        ok && !self.abort.load(Ordering::Acquire)
    }
}

/// Releases threads already waiting at the barrier when spawning fails midway.
fn abort_start(abort: &AtomicBool, barrier: &Barrier, started: Vec<Handle>, n: usize) {
    abort.store(true, Ordering::Release);
    // The barrier expects n workers plus us; stand in for the ones never spawned.
    std::thread::scope(|s| {
        for _ in started.len()..n {
            s.spawn(|| barrier.wait());
        }
        barrier.wait();
    });
    for mut l in started {
        if let Some(t) = l.thread.take() {
            let _ = t.join();
        }
    }
}

impl Dataplane for Lcores {
    fn set_notifier(&mut self, notifier: Notifier) {
        self.notifier = Some(notifier.clone());
        for i in 0..self.lcores.len() {
            if let Err(e) = self.send(i, Command::SetNotifier(notifier.clone())) {
                tracing::warn!("cannot hand the event notifier to an lcore: {e}");
            }
        }
    }

    fn submit(&mut self, cmd: dataplane::Command) -> Result<(), DataplaneError> {
        match cmd {
            dataplane::Command::Ping { token, sent } => {
                (0..self.lcores.len()).try_for_each(|i| self.send(i, Command::Ping { token, sent }))
            }
            dataplane::Command::CreateGroup {
                group,
                urn,
                pool,
                bell,
            } => {
                let index = self.least_loaded();
                let reporter = Reporter {
                    events: self.event_tx.clone(),
                    notifier: self.notifier.clone(),
                    garbage: self.garbage_tx.clone(),
                };
                let pool_id = pool.id();
                let site = transport::GroupSite {
                    urn: urn.clone(),
                    pool_fd: pool.dup_fd().map_err(|e| {
                        DataplaneError::EdgeSetup(format!("cannot keep the pool's descriptor: {e}"))
                    })?,
                    geometry: pool.geometry(),
                };
                let port = GroupPort::new(&urn, pool, bell, reporter).map_err(|e| {
                    DataplaneError::EdgeSetup(format!("cannot watch the group's doorbell: {e}"))
                })?;
                self.add_port(index, PortId(group), Box::new(port))?;
                tracing::info!(
                    "group {urn:?} runs on the lcore on CPU {}",
                    self.lcores[index].cpu
                );
                self.groups.insert(group, (index, pool_id, site));
                Ok(())
            }
            dataplane::Command::AttachEdge { group, edge, spec } => {
                let (index, pool_id, site) = self.group_lcore(group)?;
                let cx = transport::Context {
                    st2110: &self.st2110,
                    rdma: &self.rdma,
                    group: site,
                    copied: &self.copied,
                    pool_id: *pool_id,
                    #[cfg(feature = "rdma")]
                    rdma_spares: &self.rdma_spares,
                };
                let index = *index;
                let part = transport::build(spec, &cx).map_err(DataplaneError::EdgeSetup)?;
                let msg = GroupMsg::Attach { edge, part };
                self.send(index, Command::ToPort(PortId(group), Box::new(msg)))
            }
            dataplane::Command::DetachEdge { group, edge } => {
                let index = self.group_lcore(group)?.0;
                let msg = GroupMsg::Detach { edge };
                self.send(index, Command::ToPort(PortId(group), Box::new(msg)))
            }
            dataplane::Command::ReplacePool { group, pool } => {
                let pool_fd = pool.dup_fd().map_err(|e| {
                    DataplaneError::EdgeSetup(format!("cannot keep the pool's descriptor: {e}"))
                })?;
                let (index, pool_id, site) = self
                    .groups
                    .get_mut(&group)
                    .ok_or(DataplaneError::UnknownGroup { group })?;
                // Edges built from now on (a link's own mapping, descriptors' pool id) are of
                // the new pool; the port switches before any of them attaches.
                *pool_id = pool.id();
                site.pool_fd = pool_fd;
                site.geometry = pool.geometry();
                let index = *index;
                let msg = GroupMsg::ReplacePool(pool);
                self.send(index, Command::ToPort(PortId(group), Box::new(msg)))
            }
            dataplane::Command::DestroyGroup { group } => {
                let index = self.group_lcore(group)?.0;
                self.remove_port(index, PortId(group))?;
                self.groups.remove(&group);
                Ok(())
            }
        }
    }

    fn drain_events(&mut self, sink: &mut dyn FnMut(Event)) {
        // Each event first, then what was handed back: an edge is handed back before its
        // removal is reported, so every edge an event names is dropped (an SDK block closed)
        // before the event is acted on.
        while let Ok(ev) = self.events.try_recv() {
            self.collect_garbage();
            sink(ev);
        }
        self.collect_garbage();
    }

    fn flush(&mut self) -> bool {
        let mut pending = false;
        for l in &mut self.lcores {
            let _ = Self::pump(l);
            pending |= !l.backlog.is_empty();
        }
        pending
    }

    fn maintain(&mut self) {
        #[cfg(feature = "rdma")]
        self.rdma_spares.get_mut().refill();
    }

    fn payload_bytes_copied(&self) -> u64 {
        // Relaxed: a statistic.
        self.copied.load(Ordering::Relaxed)
    }

    fn counters(&self) -> Vec<LcoreCounters> {
        self.lcores
            .iter()
            .map(|l| l.shared.snapshot(l.cpu))
            .collect()
    }

    fn shutdown(&mut self) {
        let t = Instant::now();
        self.stop_all();
        self.collect_garbage();
        for c in self.counters() {
            tracing::info!(
                "lcore cpu={} stopped after {} iterations ({} busy, {} work items, {} parks) in {:?}",
                c.cpu,
                c.iterations,
                c.busy_iterations,
                c.work_items,
                c.parks,
                t.elapsed()
            );
        }
    }
}

impl Drop for Lcores {
    fn drop(&mut self) {
        if self.lcores.iter().any(|l| l.thread.is_some()) {
            self.stop_all();
        }
    }
}

/// Describes the idle policy for the start-up log.
pub fn describe_idle(idle: IdlePolicy) -> String {
    match idle {
        IdlePolicy::Busy => "busy polling".to_owned(),
        IdlePolicy::Adaptive { spin } => {
            format!("adaptive (spin {} us, then park)", spin.as_micros())
        }
    }
}
