//! `mcm-agent`: one per cluster. It knows every engine and joins a group across engines: when a
//! group has its source (an SDK sender) on one engine and receivers on others, it makes one RDMA
//! link from the source's engine to each of those engines, and removes it when that engine's
//! last receiver leaves or the source goes.
//!
//! Engines connect to it (`Agent.Connect`, see [`client`]): a registration, then their groups on
//! every change and as a heartbeat. The agent answers with orders: attach an rx link edge on
//! the receiving engine, then, once it listens, a tx link edge on the source's engine that
//! dials it; detach them when they are no longer wanted. It also tells every engine which
//! groups have their source elsewhere, so a second sender of a group on another engine is
//! refused there.
//!
//! State has one owner, the agent's thread: grpcio's handlers only forward what arrives.
//! Engines keep their links while the agent is down; one that restarts rebuilds its view from
//! the edges engines report at registration (an rx link's listen address, a tx link's peer),
//! and detaches the leftovers no link wants once engines have had a heartbeat's time to come
//! back. An engine that stops reporting for [`AgentConfig::timeout`] is forgotten, and its
//! links' other ends detached.

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{
    DuplexSink, RequestStream, RpcContext, RpcStatus, RpcStatusCode, Server, ServerBuilder,
    UnarySink, WriteFlags,
};
use mcm_proto::config::Direction;
use mcm_proto::config::transport::Edge as ConfigEdge;

use crate::grpc::proto::control as pb;
use crate::grpc::proto::control_grpc;
use crate::security::{ServerSecurity, TokenChecker};

/// Orders buffered for one engine's stream.
const ORDERS: usize = 256;

/// Settings of the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Listen address (MCM's agent uses port 50051).
    pub addr: SocketAddr,
    /// How often engines report (told to them in the Welcome).
    pub heartbeat: Duration,
    /// An engine silent this long is forgotten.
    pub timeout: Duration,
    /// libfabric provider of the links it makes (`tcp`, `shm`, `verbs`).
    pub provider: String,
    /// TLS and token of its service.
    pub security: ServerSecurity,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// grpcio refused to build the server.
    #[error("agent: cannot build the gRPC server: {0}")]
    Build(grpcio::Error),
    /// The address could not be bound.
    #[error("agent: cannot listen on {0} (allowed: an IP address of this host and a free port)")]
    Bind(SocketAddr),
    /// The agent's thread could not be created.
    #[error("agent: cannot start its thread: {0}")]
    Thread(std::io::Error),
    /// A TLS or token file could not be read.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
}

/// A running agent.
pub struct Agent {
    server: Server,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    events: Sender<Ev>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("addr", &self.addr).finish()
    }
}

impl Agent {
    /// Binds the service and starts the agent's thread.
    pub fn start(cfg: AgentConfig) -> Result<Self, AgentError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let front = Front {
            events: tx.clone(),
            next_conn: Arc::new(AtomicU64::new(1)),
        };
        let env = Arc::new(
            grpcio::EnvBuilder::new()
                .cq_count(1)
                .name_prefix("mcm-agent-grpc")
                .build(),
        );
        let creds = cfg.security.credentials("agent")?;
        let mut builder =
            ServerBuilder::new(env).register_service(control_grpc::create_agent(front));
        if let Some(token) = &cfg.security.token {
            builder = builder.add_checker(TokenChecker::new(token, refused.clone(), "agent"));
        }
        let mut server = builder.build().map_err(AgentError::Build)?;
        let port = server
            .add_listening_port(cfg.addr.to_string(), creds)
            .map_err(|_| AgentError::Bind(cfg.addr))?;
        server.start();
        let addr = SocketAddr::new(cfg.addr.ip(), port);
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mcm-agent".into())
            .spawn(move || Core::new(cfg, refused).run(&rx, &s))
            .map_err(AgentError::Thread)?;
        Ok(Self {
            server,
            addr,
            stop,
            events: tx,
            thread: Some(thread),
        })
    }

    /// The bound address (resolves port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: engines' streams end (they keep their links and reconnect later).
    pub fn stop(mut self) {
        // Release pairs with the Acquire load in the agent's thread.
        self.stop.store(true, Ordering::Release);
        let _ = self.events.send(Ev::Wake);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let done = self.server.shutdown();
        self.server.cancel_all_calls();
        let _ = futures::executor::block_on(done);
    }
}

/// What grpcio's handlers forward to the agent's thread.
enum Ev {
    /// A stream opened; orders for it go into the sender.
    Open(u64, mpsc::Sender<pb::AgentOrder>),
    /// A report arrived on stream `.0`.
    Report(u64, pb::EngineReport),
    /// Stream `.0` ended.
    Closed(u64),
    /// ListEngines.
    List(oneshot::Sender<pb::ListEnginesReply>),
    /// Look at the stop flag.
    Wake,
}

#[derive(Clone)]
struct Front {
    events: Sender<Ev>,
    next_conn: Arc<AtomicU64>,
}

impl control_grpc::Agent for Front {
    fn connect(
        &mut self,
        ctx: RpcContext,
        mut stream: RequestStream<pb::EngineReport>,
        mut sink: DuplexSink<pb::AgentOrder>,
    ) {
        // Relaxed: a counter handing out distinct ids.
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(ORDERS);
        if self.events.send(Ev::Open(conn, tx)).is_err() {
            return;
        }
        let events = self.events.clone();
        ctx.spawn(async move {
            let reader = async {
                while let Some(Ok(report)) = stream.next().await {
                    if events.send(Ev::Report(conn, report)).is_err() {
                        break;
                    }
                }
                let _ = events.send(Ev::Closed(conn));
            };
            let writer = async {
                let mut orders = rx.map(|o| Ok((o, WriteFlags::default())));
                if sink.send_all(&mut orders).await.is_ok() {
                    let _ = sink.close().await;
                }
            };
            futures::future::join(reader, writer).await;
        });
    }

    fn list_engines(
        &mut self,
        ctx: RpcContext,
        _: pb::ListEnginesRequest,
        sink: UnarySink<pb::ListEnginesReply>,
    ) {
        let (tx, rx) = oneshot::channel();
        let sent = self.events.send(Ev::List(tx)).is_ok();
        ctx.spawn(async move {
            let _ = match (sent, rx.await) {
                (true, Ok(reply)) => sink.success(reply).await,
                _ => {
                    let status = RpcStatus::with_message(
                        RpcStatusCode::UNAVAILABLE,
                        "the agent is stopping".to_owned(),
                    );
                    sink.fail(status).await
                }
            };
        });
    }
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Not attached.
    None,
    /// An attach order is out.
    Attaching(u64),
    /// Attached: the edge's id (and for rx, where it listens).
    Up(u64, String),
    /// A detach order is out.
    Detaching(u64),
}

/// A link the agent made (or adopted): group `urn`'s frames from engine `from` to engine `to`.
#[derive(Debug, Clone)]
struct Link {
    urn: String,
    from: String,
    to: String,
    rx: End,
    tx: End,
    /// Wanted no longer: its ends are being detached.
    removing: bool,
}

/// An engine as the agent knows it.
struct EngineRec {
    conn: Option<u64>,
    orders: Option<mpsc::Sender<pb::AgentOrder>>,
    info: pb::EngineInfo,
    groups: Vec<pb::GroupPresence>,
    last_seen: Instant,
    /// Edges it reported at registration that no link has adopted yet.
    unclaimed: Vec<pb::AgentEdge>,
    /// The sources map last sent to it.
    sent_sources: Option<HashMap<String, String>>,
}

impl EngineRec {
    fn receivers(&self, urn: &str) -> u32 {
        self.groups
            .iter()
            .find(|g| g.urn == urn)
            .map_or(0, |g| g.receivers)
    }
}

/// The agent's state and its thread's loop.
struct Core {
    cfg: AgentConfig,
    started: Instant,
    /// Streams not registered yet.
    fresh: HashMap<u64, mpsc::Sender<pb::AgentOrder>>,
    engines: BTreeMap<String, EngineRec>,
    links: Vec<Link>,
    /// Group URN to the engine holding its source.
    sources: BTreeMap<String, String>,
    next_order: u64,
    /// Order id to the engine it went to.
    orders: HashMap<u64, String>,
    /// Groups whose second source was logged, to log it once.
    conflicts: Vec<(String, String)>,
    /// Calls refused for their token.
    refused: Arc<AtomicU64>,
}

impl Core {
    fn new(cfg: AgentConfig, refused: Arc<AtomicU64>) -> Self {
        Self {
            cfg,
            started: Instant::now(),
            fresh: HashMap::new(),
            engines: BTreeMap::new(),
            links: Vec::new(),
            sources: BTreeMap::new(),
            next_order: 1,
            orders: HashMap::new(),
            conflicts: Vec::new(),
            refused,
        }
    }

    fn run(mut self, events: &Receiver<Ev>, stop: &AtomicBool) {
        let tick = (self.cfg.heartbeat / 4).max(Duration::from_millis(10));
        while !stop.load(Ordering::Acquire) {
            match events.recv_timeout(tick) {
                Ok(ev) => self.on(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(ev) = events.try_recv() {
                self.on(ev);
            }
            self.expire(Instant::now());
            self.reconcile();
        }
    }

    fn on(&mut self, ev: Ev) {
        match ev {
            Ev::Open(conn, tx) => {
                self.fresh.insert(conn, tx);
            }
            Ev::Report(conn, report) => self.report(conn, report),
            Ev::Closed(conn) => {
                self.fresh.remove(&conn);
                for (name, e) in &mut self.engines {
                    if e.conn == Some(conn) {
                        tracing::info!("engine {name:?}: stream closed (kept for its timeout)");
                        e.conn = None;
                        e.orders = None;
                    }
                }
            }
            Ev::List(reply) => {
                let _ = reply.send(self.view());
            }
            Ev::Wake => {}
        }
    }

    fn report(&mut self, conn: u64, report: pb::EngineReport) {
        use pb::engine_report::Kind;
        let now = Instant::now();
        match report.kind {
            Some(Kind::Registration(r)) => {
                let Some(mut orders) = self.fresh.remove(&conn) else {
                    return;
                };
                let welcome = pb::AgentOrder {
                    kind: Some(pb::agent_order::Kind::Welcome(pb::Welcome {
                        heartbeat_ms: self.cfg.heartbeat.as_millis() as u32,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let _ = orders.try_send(welcome);
                let info = r.info.into_option().unwrap_or_default();
                tracing::info!(
                    "engine {:?} registered (gRPC {}, RDMA {}, {} agent edge(s))",
                    r.name,
                    info.grpc_addr,
                    info.rdma_ip,
                    r.edges.len()
                );
                let rec = EngineRec {
                    conn: Some(conn),
                    orders: Some(orders),
                    info,
                    groups: Vec::new(),
                    last_seen: now,
                    unclaimed: r.edges,
                    sent_sources: None,
                };
                let name = r.name;
                // The ends of its links are what it says it has now.
                let has = |id: u64| rec.unclaimed.iter().any(|e| e.edge_id == id);
                for l in &mut self.links {
                    for (end, at) in [(&mut l.rx, &l.to), (&mut l.tx, &l.from)] {
                        if *at != name {
                            continue;
                        }
                        match end {
                            End::Up(id, _) if has(*id) => {}
                            _ => *end = End::None,
                        }
                    }
                }
                let mut rec = rec;
                rec.unclaimed.retain(|e| {
                    !self.links.iter().any(|l| {
                        matches!(&l.rx, End::Up(id, _) if *id == e.edge_id && l.to == name)
                            || matches!(&l.tx, End::Up(id, _) if *id == e.edge_id && l.from == name)
                    })
                });
                self.engines.insert(name, rec);
            }
            Some(Kind::State(s)) => {
                if let Some((_, e)) = self.engines.iter_mut().find(|(_, e)| e.conn == Some(conn)) {
                    e.groups = s.groups;
                    e.last_seen = now;
                }
            }
            Some(Kind::Outcome(o)) => self.outcome(o),
            None => {}
        }
    }

    fn outcome(&mut self, o: pb::OrderOutcome) {
        let Some(engine) = self.orders.remove(&o.order) else {
            return;
        };
        let edge = o.edge.into_option();
        for l in &mut self.links {
            for (end, at, what) in [(&mut l.rx, &l.to, "rx"), (&mut l.tx, &l.from, "tx")] {
                if *at != engine {
                    continue;
                }
                match end.clone() {
                    End::Attaching(n) if n == o.order => match &edge {
                        Some(e) if o.error.is_empty() => {
                            tracing::info!(
                                "group {:?}: link {} -> {}: {what} end attached (edge {})",
                                l.urn,
                                l.from,
                                l.to,
                                e.edge_id
                            );
                            *end = End::Up(e.edge_id, e.listen_addr.clone());
                        }
                        _ => {
                            tracing::warn!(
                                "group {:?}: link {} -> {}: {what} end refused by {engine:?}: {}",
                                l.urn,
                                l.from,
                                l.to,
                                o.error
                            );
                            *end = End::None;
                        }
                    },
                    End::Detaching(n) if n == o.order => {
                        if !o.error.is_empty() {
                            tracing::warn!(
                                "group {:?}: link {} -> {}: {what} end not detached: {}",
                                l.urn,
                                l.from,
                                l.to,
                                o.error
                            );
                        }
                        *end = End::None;
                    }
                    _ => {}
                }
            }
        }
        self.links
            .retain(|l| !(l.removing && l.rx == End::None && l.tx == End::None));
    }

    /// Forgets engines silent for the timeout.
    fn expire(&mut self, now: Instant) {
        let timeout = self.cfg.timeout;
        let gone: Vec<String> = self
            .engines
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_seen) > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            tracing::warn!(
                "engine {name:?}: no report for {} ms; forgotten, its links removed",
                timeout.as_millis()
            );
            self.engines.remove(&name);
            for l in &mut self.links {
                if l.to == name {
                    l.rx = End::None;
                    l.removing = true;
                }
                if l.from == name {
                    l.tx = End::None;
                    l.removing = true;
                }
            }
        }
    }

    /// Sends the orders that bring the links to what the engines' groups want.
    fn reconcile(&mut self) {
        self.choose_sources();
        self.send_sources();
        // The links wanted: from each group's source engine to each other engine with
        // receivers of it.
        let mut wanted: Vec<(String, String, String)> = Vec::new();
        for (urn, src) in &self.sources {
            for (name, e) in &self.engines {
                if name != src && e.receivers(urn) > 0 {
                    wanted.push((urn.clone(), src.clone(), name.clone()));
                }
            }
        }
        for l in &mut self.links {
            let want = wanted
                .iter()
                .any(|(u, f, t)| *u == l.urn && *f == l.from && *t == l.to);
            if !want && !l.removing {
                tracing::info!(
                    "group {:?}: link {} -> {} no longer wanted",
                    l.urn,
                    l.from,
                    l.to
                );
                l.removing = true;
            }
        }
        for (urn, from, to) in wanted {
            if !self
                .links
                .iter()
                .any(|l| l.urn == urn && l.from == from && l.to == to && !l.removing)
            {
                let link = self.adopt(&urn, &from, &to).unwrap_or(Link {
                    urn,
                    from,
                    to,
                    rx: End::None,
                    tx: End::None,
                    removing: false,
                });
                self.links.push(link);
            }
        }
        for i in 0..self.links.len() {
            self.drive(i);
        }
        self.links
            .retain(|l| !(l.removing && l.rx == End::None && l.tx == End::None));
        self.detach_leftovers();
    }

    /// Picks each group's source engine: the one it has, while it still has a sender there,
    /// else the first engine with a sender.
    fn choose_sources(&mut self) {
        let mut next: BTreeMap<String, String> = BTreeMap::new();
        let mut senders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, e) in &self.engines {
            for g in e.groups.iter().filter(|g| g.senders > 0) {
                senders.entry(&g.urn).or_default().push(name);
            }
        }
        for (urn, engines) in &senders {
            let keep = self
                .sources
                .get(*urn)
                .filter(|s| engines.contains(&s.as_str()))
                .cloned();
            let src = keep.unwrap_or_else(|| engines[0].to_owned());
            for other in engines.iter().filter(|e| **e != src) {
                let key = ((*urn).to_owned(), (*other).to_owned());
                if !self.conflicts.contains(&key) {
                    tracing::warn!(
                        "group {urn:?}: engine {other:?} has a sender too; its source stays on \
                         {src:?} (one source per group across engines)"
                    );
                    self.conflicts.push(key);
                }
            }
            next.insert((*urn).to_owned(), src);
        }
        for (urn, src) in &next {
            if self.sources.get(urn) != Some(src) {
                tracing::info!("group {urn:?}: source on engine {src:?}");
            }
        }
        self.conflicts.retain(|(u, o)| {
            senders
                .get(u.as_str())
                .is_some_and(|v| v.contains(&o.as_str()))
        });
        self.sources = next;
    }

    /// Tells each engine which groups have their source on another engine, when that changed.
    fn send_sources(&mut self) {
        for (name, e) in &mut self.engines {
            let map: HashMap<String, String> = self
                .sources
                .iter()
                .filter(|(_, src)| *src != name)
                .map(|(u, s)| (u.clone(), s.clone()))
                .collect();
            if e.sent_sources.as_ref() == Some(&map) {
                continue;
            }
            let Some(orders) = e.orders.as_mut() else {
                continue;
            };
            let order = pb::AgentOrder {
                kind: Some(pb::agent_order::Kind::Sources(pb::Sources {
                    sources: map.clone().into_iter().collect(),
                    ..Default::default()
                })),
                ..Default::default()
            };
            if orders.try_send(order).is_ok() {
                e.sent_sources = Some(map);
            }
        }
    }

    /// A link of edges engines reported at registration (made before the agent restarted):
    /// an rx link of `urn` on `to` and a tx link of `urn` on `from` that dials it.
    fn adopt(&mut self, urn: &str, from: &str, to: &str) -> Option<Link> {
        let rx = self.engines.get(to)?.unclaimed.iter().find(|e| {
            e.urn == urn && !e.listen_addr.is_empty() && edge_direction(e) == Some(Direction::Rx)
        })?;
        let listen = rx.listen_addr.clone();
        let tx = self
            .engines
            .get(from)?
            .unclaimed
            .iter()
            .find(|e| e.urn == urn && edge_peer(e).is_some_and(|p| p.to_string() == listen))?;
        let link = Link {
            urn: urn.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            rx: End::Up(rx.edge_id, listen),
            tx: End::Up(tx.edge_id, String::new()),
            removing: false,
        };
        let (rx_id, tx_id) = (rx.edge_id, tx.edge_id);
        if let Some(e) = self.engines.get_mut(to) {
            e.unclaimed.retain(|x| x.edge_id != rx_id);
        }
        if let Some(e) = self.engines.get_mut(from) {
            e.unclaimed.retain(|x| x.edge_id != tx_id);
        }
        tracing::info!("group {urn:?}: link {from} -> {to} adopted (edges {tx_id} -> {rx_id})");
        Some(link)
    }

    /// Sends the next order link `i` needs.
    fn drive(&mut self, i: usize) {
        let l = self.links[i].clone();
        if l.removing {
            if let End::Up(id, _) = l.tx {
                self.links[i].tx = self.detach(&l.from, id);
            }
            if let End::Up(id, _) = l.rx {
                self.links[i].rx = self.detach(&l.to, id);
            }
            return;
        }
        match (&l.rx, &l.tx) {
            (End::None, End::Up(..)) => {
                // The receiving end was lost (its engine restarted): the sending end dials a
                // port that is gone; make both again.
                self.links[i].removing = true;
            }
            (End::None, End::None) => {
                let json = format!(
                    r#"{{"rdma": {{"direction": "rx", "provider": "{}"}}}}"#,
                    self.cfg.provider
                );
                self.attach(i, true, json);
            }
            (End::Up(_, listen), End::None) => {
                let json = format!(
                    r#"{{"rdma": {{"direction": "tx", "peer": "{listen}", "provider": "{}"}}}}"#,
                    self.cfg.provider
                );
                self.attach(i, false, json);
            }
            _ => {}
        }
    }

    /// Orders engine `at` to detach edge `id`; the end's state afterwards. An engine that is
    /// away keeps the edge: it is a leftover when the engine registers again.
    fn detach(&mut self, at: &str, id: u64) -> End {
        let order = self.next_order;
        let kind = pb::agent_order::Kind::Detach(pb::DetachEdge {
            order,
            edge_id: id,
            ..Default::default()
        });
        match self.send(at, kind) {
            true => End::Detaching(order),
            false => End::None,
        }
    }

    fn attach(&mut self, i: usize, rx: bool, json: String) {
        let order = self.next_order;
        let l = &self.links[i];
        let at = if rx { l.to.clone() } else { l.from.clone() };
        let kind = pb::agent_order::Kind::Attach(pb::AttachEdge {
            order,
            urn: l.urn.clone(),
            edge_json: json,
            ..Default::default()
        });
        if self.send(&at, kind) {
            let l = &mut self.links[i];
            if rx {
                l.rx = End::Attaching(order);
            } else {
                l.tx = End::Attaching(order);
            }
        }
    }

    /// Sends an order to engine `name`; false when it has no stream now.
    fn send(&mut self, name: &str, kind: pb::agent_order::Kind) -> bool {
        let Some(orders) = self.engines.get_mut(name).and_then(|e| e.orders.as_mut()) else {
            return false;
        };
        let order = self.next_order;
        let msg = pb::AgentOrder {
            kind: Some(kind),
            ..Default::default()
        };
        if orders.try_send(msg).is_err() {
            return false;
        }
        self.next_order += 1;
        self.orders.insert(order, name.to_owned());
        true
    }

    /// Detaches edges engines reported that no link adopted, once engines have had time to
    /// register again after an agent restart.
    fn detach_leftovers(&mut self) {
        if self.started.elapsed() < 2 * self.cfg.heartbeat {
            return;
        }
        let names: Vec<String> = self.engines.keys().cloned().collect();
        for name in names {
            let edges = match self.engines.get_mut(&name) {
                Some(e) if e.orders.is_some() => std::mem::take(&mut e.unclaimed),
                _ => continue,
            };
            for e in edges {
                tracing::info!(
                    "engine {name:?}: edge {} of group {:?} is no link's; detached",
                    e.edge_id,
                    e.urn
                );
                let order = self.next_order;
                self.send(
                    &name,
                    pb::agent_order::Kind::Detach(pb::DetachEdge {
                        order,
                        edge_id: e.edge_id,
                        ..Default::default()
                    }),
                );
            }
        }
    }

    fn view(&self) -> pb::ListEnginesReply {
        let now = Instant::now();
        let state = |e: &End| match e {
            End::None => "none",
            End::Attaching(_) => "attaching",
            End::Up(..) => "up",
            End::Detaching(_) => "detaching",
        };
        pb::ListEnginesReply {
            engines: self
                .engines
                .iter()
                .map(|(name, e)| pb::EngineView {
                    name: name.clone(),
                    grpc_addr: e.info.grpc_addr.clone(),
                    rdma_ip: e.info.rdma_ip.clone(),
                    last_seen_ms: now.duration_since(e.last_seen).as_millis() as u64,
                    groups: e.groups.clone(),
                    ..Default::default()
                })
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| pb::LinkView {
                    urn: l.urn.clone(),
                    from: l.from.clone(),
                    to: l.to.clone(),
                    tx_edge: match l.tx {
                        End::Up(id, _) => id,
                        _ => 0,
                    },
                    rx_edge: match l.rx {
                        End::Up(id, _) => id,
                        _ => 0,
                    },
                    state: match (&l.tx, &l.rx, l.removing) {
                        (_, _, true) => "removing".to_owned(),
                        (End::Up(..), End::Up(..), false) => "up".to_owned(),
                        (tx, rx, false) => format!("pending (rx {}, tx {})", state(rx), state(tx)),
                    },
                    ..Default::default()
                })
                .collect(),
            // Relaxed: a counter read on its own.
            refused: self.refused.load(Ordering::Relaxed),
            tls_refused: crate::grpc::corelog::tls_refused(),
            ..Default::default()
        }
    }
}

fn edge_direction(e: &pb::AgentEdge) -> Option<Direction> {
    ConfigEdge::from_json(&e.edge_json)
        .ok()
        .map(|x| x.direction())
}

fn edge_peer(e: &pb::AgentEdge) -> Option<SocketAddr> {
    match ConfigEdge::from_json(&e.edge_json).ok()? {
        ConfigEdge::Rdma {
            direction: Direction::Tx,
            link,
        } => link.peer,
        _ => None,
    }
}
