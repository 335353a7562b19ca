//! The engine's side of the agent: a thread that keeps one `Agent.Connect` stream open to
//! `mcm-agent`, registers the engine, reports its groups on every change and as a heartbeat,
//! and carries out the agent's orders through the control thread (as [`Call`]s, like the gRPC
//! service's). When the agent is unreachable it retries with a back-off and registers again,
//! with the edges the agent made before, so a restarted agent rebuilds its view; the data plane
//! never waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::Either;
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{EnvBuilder, WriteFlags};

use crate::grpc::proto::control as pb;
use crate::grpc::proto::control_grpc::AgentClient as Stub;
use crate::grpc::{Call, Caller};
use crate::mesh::{PlaneError, PlaneErrorKind};

/// Heartbeat until the agent's Welcome says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// First wait before connecting again.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// States buffered for the agent thread; a full buffer skips the state (the next one carries
/// everything).
const UPDATES: usize = 8;

/// Where the agent is and who this engine is.
#[derive(Debug, Clone)]
pub struct AgentClientConfig {
    /// The agent's address, `host:port`.
    pub addr: String,
    /// This engine's name, unique in the cluster.
    pub name: String,
    /// How the agent is reached (TLS, client certificate, token).
    pub security: crate::security::ClientSecurity,
}

/// The control thread's handle of the agent client.
#[derive(Debug)]
pub struct AgentLink {
    updates: Option<mpsc::Sender<pb::EngineState>>,
    stop: Arc<AtomicBool>,
    heartbeat_ms: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    last: Vec<pb::GroupPresence>,
    /// The registry's generation when `last` was computed.
    generation: u64,
    last_sent: Instant,
}

impl AgentLink {
    /// Starts the client thread; `info` is what the registration says of the engine.
    pub fn start(
        cfg: AgentClientConfig,
        info: pb::EngineInfo,
        caller: Caller,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(UPDATES);
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat_ms = Arc::new(AtomicU64::new(DEFAULT_HEARTBEAT.as_millis() as u64));
        let (s, h) = (stop.clone(), heartbeat_ms.clone());
        let thread = std::thread::Builder::new()
            .name("mcm-agent-client".into())
            .spawn(move || run(&cfg, &info, &caller, rx, &s, &h))?;
        Ok(Self {
            updates: Some(tx),
            stop,
            heartbeat_ms,
            thread: Some(thread),
            last: Vec::new(),
            generation: u64::MAX,
            last_sent: Instant::now(),
        })
    }

    /// When the next heartbeat is due (the agent's Welcome may shorten the interval at any
    /// time, so it is computed from the last send).
    pub fn next_due(&self) -> Instant {
        // Relaxed: a setting read on its own.
        let ms = self.heartbeat_ms.load(Ordering::Relaxed).max(10);
        self.last_sent + Duration::from_millis(ms)
    }

    /// Hands the engine's groups to the client when they changed or a heartbeat is due.
    /// `presence` is asked for only then: `generation` (the registry's
    /// [`Mesh::generation`](crate::mesh::Mesh::generation)) says whether anything changed.
    pub fn update(
        &mut self,
        generation: u64,
        presence: impl FnOnce() -> Vec<pb::GroupPresence>,
        now: Instant,
    ) {
        let due = now >= self.next_due();
        if generation == self.generation && !due {
            return;
        }
        self.generation = generation;
        let presence = presence();
        if presence == self.last && !due {
            return;
        }
        self.last_sent = now;
        let Some(tx) = self.updates.as_mut() else {
            return;
        };
        let state = pb::EngineState {
            groups: presence.clone(),
            ..Default::default()
        };
        // Full while the agent is away: the client asks for the state when it connects again.
        let _ = tx.try_send(state);
        self.last = presence;
    }

    /// Stops the client thread (its stream ends; the agent sees the engine leave).
    pub fn stop(&mut self) {
        // Release pairs with the Acquire loads in the client thread.
        self.stop.store(true, Ordering::Release);
        self.updates = None;
    }

    /// Waits for the client thread after [`stop`](Self::stop).
    pub fn join(mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client thread: sessions with the agent, one after another.
fn run(
    cfg: &AgentClientConfig,
    info: &pb::EngineInfo,
    caller: &Caller,
    mut updates: mpsc::Receiver<pb::EngineState>,
    stop: &AtomicBool,
    heartbeat_ms: &AtomicU64,
) {
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(1)
            .name_prefix("mcm-agent-cq")
            .build(),
    );
    let mut made: Vec<pb::AgentEdge> = Vec::new();
    let mut backoff = RETRY_MIN;
    let mut last_error = String::new();
    while !stop.load(Ordering::Acquire) {
        let channel = match cfg.security.channel(env.clone(), &cfg.addr, "agent") {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("agent {}: {e}; not connecting", cfg.addr);
                return;
            }
        };
        let stub = Stub::new(channel);
        let mut s = Session {
            cfg,
            info,
            caller,
            made: &mut made,
            heartbeat_ms,
            registered: false,
        };
        let result = futures::executor::block_on(s.serve(&stub, &mut updates));
        let registered = s.registered;
        match result {
            Ok(()) => break,
            Err(e) => {
                if registered {
                    tracing::warn!(
                        "agent {}: connection lost ({e}); connecting again, the data plane \
                         keeps running",
                        cfg.addr
                    );
                    backoff = RETRY_MIN;
                } else if e != last_error {
                    tracing::warn!(
                        "agent {}: cannot register ({e}); trying again (back-off up to {} s)",
                        cfg.addr,
                        RETRY_MAX.as_secs()
                    );
                }
                last_error = e;
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// One stream with the agent.
struct Session<'a> {
    cfg: &'a AgentClientConfig,
    info: &'a pb::EngineInfo,
    caller: &'a Caller,
    /// The edges the agent made here (reported at registration).
    made: &'a mut Vec<pb::AgentEdge>,
    heartbeat_ms: &'a AtomicU64,
    registered: bool,
}

impl Session<'_> {
    /// Registers, then serves orders and forwards states until the stream breaks (an error)
    /// or the engine stops (`Ok`).
    async fn serve(
        &mut self,
        stub: &Stub,
        updates: &mut mpsc::Receiver<pb::EngineState>,
    ) -> Result<(), String> {
        let (mut sink, mut orders) = stub
            .connect_opt(self.cfg.security.call_option())
            .map_err(|e| e.to_string())?;
        let flags = WriteFlags::default();
        let registration = pb::EngineReport {
            kind: Some(pb::engine_report::Kind::Registration(pb::Registration {
                name: self.cfg.name.clone(),
                info: Some(self.info.clone()).into(),
                edges: self.made.clone(),
                ..Default::default()
            })),
            ..Default::default()
        };
        sink.send((registration, flags))
            .await
            .map_err(|e| e.to_string())?;
        let state = self
            .caller
            .ask(Call::Presence)
            .await
            .map_err(|e| e.message)?;
        sink.send((report_state(state), flags))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let next = futures::future::select(orders.next(), updates.next()).await;
            match next {
                Either::Left((None, _)) => return Err("the agent ended the stream".into()),
                Either::Left((Some(Err(e)), _)) => return Err(e.to_string()),
                Either::Left((Some(Ok(order)), _)) => {
                    if let Some(outcome) = self.carry_out(order).await {
                        let report = pb::EngineReport {
                            kind: Some(pb::engine_report::Kind::Outcome(outcome)),
                            ..Default::default()
                        };
                        sink.send((report, flags))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Either::Right((None, _)) => {
                    let _ = sink.close().await;
                    return Ok(());
                }
                Either::Right((Some(state), _)) => {
                    sink.send((report_state(state), flags))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Carries out one order; returns the outcome to report, if the order wants one.
    async fn carry_out(&mut self, order: pb::AgentOrder) -> Option<pb::OrderOutcome> {
        use pb::agent_order::Kind;
        match order.kind? {
            Kind::Welcome(w) => {
                if !self.registered {
                    tracing::info!(
                        "agent {}: registered as {:?} (heartbeat {} ms)",
                        self.cfg.addr,
                        self.cfg.name,
                        w.heartbeat_ms
                    );
                }
                self.registered = true;
                if w.heartbeat_ms > 0 {
                    // Relaxed: a setting read on its own.
                    self.heartbeat_ms
                        .store(u64::from(w.heartbeat_ms), Ordering::Relaxed);
                }
                None
            }
            Kind::Sources(s) => {
                let _ = self
                    .caller
                    .send(Call::SetSources(s.sources.into_iter().collect()));
                None
            }
            Kind::Attach(a) => {
                let (urn, json) = (a.urn.clone(), a.edge_json.clone());
                let res = self.caller.ask(|r| Call::AgentAttach(urn, json, r)).await;
                Some(match res {
                    Ok(rep) => {
                        let edge = pb::AgentEdge {
                            urn: a.urn,
                            edge_id: rep.edge_id,
                            edge_json: a.edge_json,
                            listen_addr: match rep.listen_port {
                                0 => String::new(),
                                port => std::net::SocketAddr::new(
                                    self.info.rdma_ip.parse().unwrap_or([0, 0, 0, 0].into()),
                                    port as u16,
                                )
                                .to_string(),
                            },
                            ..Default::default()
                        };
                        self.made.push(edge.clone());
                        outcome(a.order, Some(edge), None)
                    }
                    Err(e) => outcome(a.order, None, Some(e)),
                })
            }
            Kind::Detach(d) => {
                let id = d.edge_id;
                let res = self.caller.ask(|r| Call::DeleteEdge(id, r)).await;
                let edge = self
                    .made
                    .iter()
                    .position(|e| e.edge_id == id)
                    .map(|i| self.made.remove(i));
                Some(match res {
                    Ok(_) => outcome(d.order, edge, None),
                    // Gone already: as good as detached.
                    Err(e) if e.kind == PlaneErrorKind::NotFound => outcome(d.order, edge, None),
                    Err(e) => outcome(d.order, None, Some(e)),
                })
            }
        }
    }
}

fn report_state(state: pb::EngineState) -> pb::EngineReport {
    pb::EngineReport {
        kind: Some(pb::engine_report::Kind::State(state)),
        ..Default::default()
    }
}

fn outcome(order: u64, edge: Option<pb::AgentEdge>, error: Option<PlaneError>) -> pb::OrderOutcome {
    pb::OrderOutcome {
        order,
        edge: edge.into(),
        error: error.map(|e| e.message).unwrap_or_default(),
        ..Default::default()
    }
}
