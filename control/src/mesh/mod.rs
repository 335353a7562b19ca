//! The engine's connection and group registry: the single owner of who is connected to what.
//!
//! It runs on the control thread. A `CreateConnection` is validated here (MCM's JSON, parsed by
//! [`mcm_proto::config`] again: the engine trusts no client-side check), then joined to its
//! multipoint group. The first connection of a group creates the group's frame pool; the data
//! plane owns the pool's free list from then on, and this registry keeps only an fd to hand the
//! pool to later members (read-write to the source, read-only to sinks).
//!
//! Pool size: a member may hold at most `quota` frames at once (queued or got and not put), so
//! no member can exhaust the pool and make another wait. The pool has room for the source's quota
//! and `max_sinks_per_group` sinks' quotas: `(1 + max_sinks) * quota` slots, where the quota is
//! the first member's `bufferQueueCapacity` (at least [`MIN_QUOTA`]) and a later member's quota is
//! the smaller of its capacity and the group's. Memory is only touched for slots in use (the free
//! list hands out recently freed slots first), so the reservation is address space, not RAM —
//! except on huge pages, which are reserved whole.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcm_proto::config::payload::Payload;
use mcm_proto::config::transport::Edge as ConfigEdge;
use mcm_proto::config::{ConnectionConfig, Direction, MeshErr};
use mcm_proto::sdk::{
    BridgeStats, ConnectionCreated, ConnectionKind, ConnectionStats, CreateConnection, ErrorCode,
    PoolFd, PoolGeometry as WireGeometry, Stats,
};
use mcm_proto::shm::conn::{ConnKind, ConnLayout, Doorbell, EngineSide};
use mcm_proto::shm::map::{HugePages, reopen_readonly, seal_against_writes};
use mcm_proto::shm::pool::{Pool, PoolGeometry};

use crate::dataplane::{
    Attachment, Command, ConnCounters, ConnId, Dataplane, DataplaneError, EdgeCounters,
    EdgeFailure, EdgeId, EdgeSpec, GroupId, Role,
};
use crate::session::{Created, Refusal, Transport};

mod plane;
pub use plane::{ApplyReport, Flow, PlaneError, PlaneErrorKind};

/// Most network sink edges a group may have (they count against `sdk.max_sinks_per_group`
/// with its SDK receivers: the pool holds that many sinks' quotas).
pub const MAX_SINK_EDGES: usize = 8;
/// Smallest per-member quota a group is sized for.
pub const MIN_QUOTA: u32 = 16;
/// How long a TCP client has to fetch its fds with the one-time token.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10);
/// Bytes in a one-time fd token.
pub const TOKEN_LEN: usize = 16;

/// Limits and settings of the registry.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Pages for frame pools.
    pub huge_pages: HugePages,
    /// Most sinks (rx connections) one group may have.
    pub max_sinks_per_group: u32,
    /// Most connections one SDK session may have.
    pub max_conns_per_session: usize,
    /// The Unix socket TCP clients fetch their fds from.
    pub unix_path: String,
    /// Network edges every connection of a group gets, by URN (`[[rdma.link]]`), as if its
    /// `multipointGroup.edges` named them.
    pub links: Vec<(String, ConfigEdge)>,
}

/// A multipoint group: one pool, at most one source, up to `max_sinks_per_group` sinks.
#[derive(Debug)]
struct Group {
    id: GroupId,
    /// Read-write fd of the pool (the data plane holds the pool itself).
    pool_fd: OwnedFd,
    /// The pool's geometry and id, as clients are told.
    pool: WireGeometry,
    /// Whether the pool is sealed against new writers (`F_SEAL_FUTURE_WRITE`): receivers are
    /// given its fd only then, so none can map it writable, whatever its uid.
    sealed: bool,
    /// The SDK sender given the pool read-write that has not activated yet (has not mapped it
    /// for sure); the pool is sealed when it activates or goes.
    writer: Option<ConnId>,
    /// The sealed pool before the last move, with its id: a receiver may still have frames of
    /// it to read and fetch it ([`Mesh::fetch_pool`]).
    previous: Option<(u32, OwnedFd)>,
    /// Whether the pool has had a source (so receivers may hold frames of it): a pool that never
    /// had one is not kept after a move (with huge pages, it holds its reservation).
    written: bool,
    quota: u32,
    payload_size: u32,
    metadata_size: u32,
    /// The doorbell every connection of the group rings; a handle is given to each block.
    bell: Doorbell,
    /// The group's source: an SDK sender's connection id or a network edge's id.
    source: Option<EdgeId>,
    /// SDK receivers.
    sinks: Vec<ConnId>,
    /// What one frame is (network edges are built for it).
    payload: Payload,
    /// Network edges (ST 2110 sessions, ...), each kept while a connection names it.
    edges: Vec<NetEdge>,
    /// Made by the control plane with this spec: the group lives, with no member, until the
    /// control plane lets it go.
    spec: Option<plane::Spec>,
}

/// A network edge of a group, as the registry knows it.
#[derive(Debug)]
struct NetEdge {
    id: EdgeId,
    /// The edge as configured: a second connection naming the same edge shares it.
    config: ConfigEdge,
    role: Role,
    /// What it is, for stats and logs.
    kind: String,
    counters: Arc<EdgeCounters>,
    /// Connections that named it; it is detached when the last one leaves, unless the control
    /// plane attached it too (`configured`).
    owners: Vec<ConnId>,
    /// Attached by [`Mesh::attach_edge`] (configuration, the control plane): kept, and its group
    /// with it, until [`Mesh::detach_edge`].
    configured: bool,
    /// Whether the data plane has it (false from a failure until it is set up again).
    on_dataplane: bool,
    /// Attached for the agent (a link between engines): kept out of ApplyConfig's reach.
    by_agent: bool,
    /// Its last failure and next attempt, once it has failed.
    retry: Option<Retry>,
}

/// A failed edge's next attempt.
#[derive(Debug, Clone)]
struct Retry {
    /// When to set it up again.
    at: Instant,
    /// The wait before this attempt (doubled after each failure, up to [`RETRY_MAX`]).
    backoff: Duration,
    /// The last failure's reason, logged once until it changes.
    reason: String,
    /// The edge's `links_up` then: a link that streamed since starts its back-off again.
    links_up: u64,
}

/// First wait before a failed link is set up again.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

impl NetEdge {
    /// Counts a failure and schedules the next attempt; the reason is logged when it differs
    /// from the last one.
    fn schedule_retry(&mut self, urn: &str, now: Instant, reason: String) {
        EdgeCounters::add(&self.counters.failures, 1);
        self.on_dataplane = false;
        let links_up = EdgeCounters::get(&self.counters.links_up);
        let backoff = match &self.retry {
            Some(r) if r.links_up == links_up => (r.backoff * 2).min(RETRY_MAX),
            _ => RETRY_MIN,
        };
        if self.retry.as_ref().is_none_or(|r| r.reason != reason) {
            tracing::warn!(
                "group {urn:?}: edge {} ({}) failed: {reason}; set up again in {} ms, and \
                 after each failure (back-off up to {} s)",
                self.id,
                self.kind,
                backoff.as_millis(),
                RETRY_MAX.as_secs()
            );
        }
        self.retry = Some(Retry {
            at: now + backoff,
            backoff,
            reason,
            links_up,
        });
    }
}

impl Group {
    /// Seals the pool against new writers (see [`seal_against_writes`]).
    fn seal(&mut self, urn: &str) -> Result<(), String> {
        if self.sealed {
            return Ok(());
        }
        seal_against_writes(self.pool_fd.as_fd()).map_err(|e| {
            format!(
                "group {urn:?}: its frame pool cannot be sealed against writers ({e}); a \
                 sender sealed it first, or the kernel is older than 5.1"
            )
        })?;
        self.sealed = true;
        tracing::debug!(
            "group {urn:?}: pool {} sealed against new writers",
            self.pool.pool_id
        );
        Ok(())
    }

    fn sink_edges(&self) -> usize {
        self.edges.iter().filter(|e| e.role == Role::Sink).count()
    }

    /// Detaches network edge `i` (nothing holds it any more) on the data plane and forgets it.
    fn detach_edge(&mut self, dp: &mut dyn Dataplane, i: usize, urn: &str) {
        let e = self.edges.remove(i);
        if self.source == Some(e.id) {
            self.source = None;
        }
        if !e.on_dataplane {
            // Off the data plane already.
            tracing::info!("group {urn:?}: edge {} ({}) removed", e.id, e.kind);
            return;
        }
        let cmd = Command::DetachEdge {
            group: self.id,
            edge: e.id,
        };
        if let Err(err) = dp.submit(cmd) {
            tracing::error!(
                "edge {}: detach not delivered to the data plane: {err}",
                e.id
            );
        }
        tracing::info!("group {urn:?}: edge {} ({}) detached", e.id, e.kind);
    }

    fn describe_source(&self, src: EdgeId) -> String {
        match self.edges.iter().find(|e| e.id == src) {
            Some(e) => format!("a source edge ({}, edge {src})", e.kind),
            None => format!("a sender (connection {src})"),
        }
    }
}

/// One SDK connection.
#[derive(Debug)]
struct Conn {
    session: u64,
    urn: String,
    kind: ConnKind,
    quota: u32,
    /// The engine's end, until activation hands it to the data plane.
    pending: Option<EngineSide>,
    counters: Arc<ConnCounters>,
    /// Network edges of its group it named.
    edges: Vec<EdgeId>,
    /// When it was created (it must be activated within `sdk.activate_timeout_ms`).
    created: Instant,
}

/// What attaching an edge did, so that it can be undone.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// The edge was built.
    New,
    /// An identical edge was shared; the control plane's claim on it before.
    Shared { was_configured: bool },
}

/// Fds waiting for a TCP client to fetch them.
#[derive(Debug)]
struct Parked {
    conn: ConnId,
    session: u64,
    fds: Vec<OwnedFd>,
    expires: Instant,
}

/// The registry of groups and connections.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    groups: HashMap<String, Group>,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<[u8; TOKEN_LEN], Parked>,
    next_group: GroupId,
    /// Next frame pool id (pools are numbered across groups and moves, never reused).
    next_pool: u32,
    /// Next id of a connection or network edge (one space: an SDK connection is an edge).
    next_conn: ConnId,
    /// Groups whose source is on another engine, by URN, with that engine's name (from the
    /// agent): a sender here is refused.
    remote_sources: HashMap<String, String>,
    /// Connections each session holds.
    held: HashMap<u64, usize>,
    /// Bumped whenever a group or connection comes or goes (what the agent is told changes).
    generation: u64,
    /// Connections deleted for not being activated in time, with the session they were of,
    /// so that the client's later request about one is answered with the reason.
    expired: HashMap<ConnId, u64>,
}

/// What the sessions of one client identity may hold together, checked by [`Mesh::create`].
pub struct IdentityQuota<'a> {
    /// The identity, for the refusal's text.
    pub who: &'a crate::access::Identity,
    /// Whether a session has this identity.
    pub member: &'a dyn Fn(u64) -> bool,
    /// Most connections.
    pub connections: usize,
    /// Most distinct groups with one of its connections.
    pub groups: usize,
}

impl Mesh {
    /// An empty registry.
    pub fn new(config: MeshConfig) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            conns: HashMap::new(),
            tokens: HashMap::new(),
            next_group: 1,
            next_pool: 1,
            next_conn: 1,
            remote_sources: HashMap::new(),
            held: HashMap::new(),
            generation: 0,
            expired: HashMap::new(),
        }
    }

    /// A number that changes whenever a group or a connection is added or removed, so that a
    /// caller can skip recomputing [`presence`](Self::presence) when nothing changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Connections `session` holds.
    pub fn held_by(&self, session: u64) -> usize {
        self.held.get(&session).copied().unwrap_or(0)
    }

    /// Connections and distinct groups held by the sessions `member` accepts.
    pub fn held_by_identity(&self, member: &dyn Fn(u64) -> bool) -> (usize, usize) {
        let mut groups: Vec<&str> = Vec::new();
        let mut conns = 0;
        for c in self.conns.values().filter(|c| member(c.session)) {
            conns += 1;
            if !groups.contains(&c.urn.as_str()) {
                groups.push(&c.urn);
            }
        }
        (conns, groups.len())
    }

    /// Number of connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The session that owns `conn`.
    pub fn session_of(&self, conn: ConnId) -> Option<u64> {
        self.conns.get(&conn).map(|c| c.session)
    }

    /// Creates a connection for `session` (see the module documentation), within `quota`
    /// when one is given.
    pub fn create(
        &mut self,
        dp: &mut dyn Dataplane,
        session: u64,
        req: &CreateConnection,
        transport: Transport,
        now: Instant,
        quota: Option<&IdentityQuota<'_>>,
    ) -> Result<Created, Refusal> {
        let (kind, dir) = match req.kind.enum_value() {
            Ok(ConnectionKind::CONNECTION_KIND_TX) => (ConnKind::Tx, Direction::Tx),
            Ok(ConnectionKind::CONNECTION_KIND_RX) => (ConnKind::Rx, Direction::Rx),
            _ => {
                return Err(Refusal::new(
                    ErrorCode::ERROR_CODE_INVALID_ARGUMENT,
                    MeshErr::ConnConfigInval,
                    format!(
                        "CreateConnection.kind {} is not allowed (allowed: TX = 1, RX = 2)",
                        req.kind.value()
                    ),
                ));
            }
        };
        let cfg = ConnectionConfig::from_json(&req.config_json, dir).map_err(|e| Refusal {
            code: ErrorCode::ERROR_CODE_CONFIG,
            mesh_error: Some(e.class),
            message: e.to_string(),
        })?;
        let Some((urn, mut edges)) = cfg.mesh_group() else {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_NOT_IMPLEMENTED,
                MeshErr::NotImplemented,
                "connection.rdma: this engine does not serve rdma connections yet (allowed: \
                 connection.multipointGroup, connection.st2110)"
                    .to_owned(),
            ));
        };
        for (_, e) in self.config.links.iter().filter(|(u, _)| *u == urn) {
            if !edges.contains(e) {
                edges.push(e.clone());
            }
        }
        let owned = self.held_by(session);
        if owned >= self.config.max_conns_per_session {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_LIMIT,
                MeshErr::MaxConn,
                format!(
                    "this client already has {owned} connections (limit {} per client)",
                    self.config.max_conns_per_session
                ),
            ));
        }
        if let Some(q) = quota {
            self.check_quota(q, &urn)?;
        }
        if kind == ConnKind::Tx
            && let Some(engine) = self.remote_sources.get(&urn)
        {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_LIMIT,
                MeshErr::ConnConfigIncompat,
                format!(
                    "group {urn:?} has its source on engine {engine:?} (allowed: one source per \
                     group across the engines of the agent)"
                ),
            ));
        }
        let capacity = cfg.buffer_queue_capacity();
        let created_group = if self.groups.contains_key(&urn) {
            self.check_joinable(&urn, kind, &cfg)?;
            None
        } else {
            Some(self.create_group_pool(dp, &urn, &cfg)?)
        };
        match kind {
            // The sender must map the pool writable, which a sealed pool refuses.
            ConnKind::Tx if self.groups[&urn].sealed => self.move_pool(dp, &urn)?,
            ConnKind::Tx => {}
            ConnKind::Rx => self.seal_for_receivers(dp, &urn)?,
        }
        let result = self
            .check_edges(&urn, Some(kind), &edges)
            .and_then(|()| self.join(session, &urn, kind, capacity, transport, now))
            .and_then(|created| {
                let conn = created.0.conn_id;
                match self.attach_edges(dp, &urn, Some(conn), &edges, cfg.payload_size()) {
                    Ok(_) => Ok(created),
                    Err(e) => {
                        self.remove(dp, conn);
                        Err(e)
                    }
                }
            });
        if result.is_err()
            && let Some(gid) = created_group
            && self.groups.get(&urn).is_some_and(|g| g.id == gid)
        {
            self.generation += 1;
            self.groups.remove(&urn);
            let _ = dp.submit(Command::DestroyGroup { group: gid });
        }
        result
    }

    /// Refuses edges that do not fit group `urn` with a connection of `kind` (`None`: edges
    /// alone): a second source, or more sinks than a group can have. An edge the group has
    /// already is shared.
    fn check_edges(
        &self,
        urn: &str,
        kind: Option<ConnKind>,
        edges: &[ConfigEdge],
    ) -> Result<(), Refusal> {
        let g = &self.groups[urn];
        let mut source = g.source.map(|s| g.describe_source(s));
        if kind == Some(ConnKind::Tx) && source.is_none() {
            source = Some("a sender (this connection)".to_owned());
        }
        let mut sinks = g.sinks.len() + g.sink_edges() + usize::from(kind == Some(ConnKind::Rx));
        let mut sink_edges = g.sink_edges();
        for (i, e) in edges.iter().enumerate() {
            if g.edges.iter().any(|n| n.config == *e) {
                continue;
            }
            let spec_role = edge_role(e);
            let refuse = |what: String| {
                Err(Refusal::new(
                    ErrorCode::ERROR_CODE_LIMIT,
                    MeshErr::ConnConfigIncompat,
                    format!(
                        "connection.multipointGroup.edges[{i}] ({}): {what}",
                        e.as_str()
                    ),
                ))
            };
            match spec_role {
                Role::Source => {
                    if let Some(src) = &source {
                        return refuse(format!(
                            "group {urn:?} already has {src}; a group has at most one source"
                        ));
                    }
                    source = Some(format!("a source edge (edges[{i}])"));
                }
                Role::Sink => {
                    sinks += 1;
                    sink_edges += 1;
                    // The pool holds the quotas of max_sinks_per_group sinks of any kind.
                    let limit = self.config.max_sinks_per_group as usize;
                    if sinks > limit {
                        return refuse(format!(
                            "group {urn:?} would have {sinks} sinks (limit \
                             sdk.max_sinks_per_group = {limit}, receivers and network edges \
                             together)"
                        ));
                    }
                    if sink_edges > MAX_SINK_EDGES {
                        return refuse(format!(
                            "group {urn:?} would have {sink_edges} network sink edges (limit \
                             {MAX_SINK_EDGES})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Attaches the edges `owner` named (`None`: the control plane): shared with the group's
    /// identical edge, or built. Returns their ids. All or none: when one cannot be attached,
    /// those this call attached or shared are let go again.
    fn attach_edges(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        owner: Option<ConnId>,
        edges: &[ConfigEdge],
        payload_size: u32,
    ) -> Result<Vec<EdgeId>, Refusal> {
        let mut done: Vec<(EdgeId, Claim)> = Vec::with_capacity(edges.len());
        for e in edges {
            match self.attach_one(dp, urn, owner, e, payload_size) {
                Ok(d) => done.push(d),
                Err(err) => {
                    for (id, claim) in done.into_iter().rev() {
                        self.release(dp, urn, owner, id, claim);
                    }
                    return Err(err);
                }
            }
        }
        Ok(done.into_iter().map(|(id, _)| id).collect())
    }

    /// Attaches one edge for `owner`: shares the group's identical edge, or builds it.
    fn attach_one(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        owner: Option<ConnId>,
        e: &ConfigEdge,
        payload_size: u32,
    ) -> Result<(EdgeId, Claim), Refusal> {
        let builds = !self.groups[urn].edges.iter().any(|n| n.config == *e);
        // A receiving link maps the pool writable for itself, which a sealed pool refuses (an
        // ST 2110 receiver writes through the engine's own mapping, made before the seal).
        if builds && maps_writable(e) && self.groups[urn].sealed {
            self.move_pool(dp, urn)?;
        }
        let g = self.groups.get_mut(urn).expect("joined above");
        let (id, claim) = match g.edges.iter_mut().find(|n| n.config == *e) {
            Some(n) => {
                let claim = Claim::Shared {
                    was_configured: n.configured,
                };
                match owner {
                    Some(conn) => n.owners.push(conn),
                    None => n.configured = true,
                }
                (n.id, claim)
            }
            None => {
                let id = self.next_conn;
                let counters = Arc::new(EdgeCounters::default());
                let spec = EdgeSpec::network(e, g.payload, payload_size, g.quota, counters.clone());
                let (role, kind) = (spec.role(), spec.describe());
                dp.submit(Command::AttachEdge {
                    group: g.id,
                    edge: id,
                    spec,
                })
                .map_err(|err| match err {
                    DataplaneError::EdgeSetup(why) => Refusal::new(
                        ErrorCode::ERROR_CODE_CONFIG,
                        MeshErr::ConnFailed,
                        format!("group {urn:?}: {why}"),
                    ),
                    err => Refusal::new(
                        ErrorCode::ERROR_CODE_INTERNAL,
                        MeshErr::ConnFailed,
                        format!("group {urn:?}: the data plane did not take the edge: {err}"),
                    ),
                })?;
                self.next_conn += 1;
                tracing::info!("group {urn:?}: edge {id} ({kind}) attached");
                if role == Role::Source {
                    g.source = Some(id);
                    g.written = true;
                    // Its writers (the engine, a link's own mapping) have mapped it now.
                    if let Err(why) = g.seal(urn) {
                        tracing::warn!("{why}");
                    }
                }
                g.edges.push(NetEdge {
                    id,
                    config: e.clone(),
                    role,
                    kind,
                    counters,
                    owners: owner.into_iter().collect(),
                    configured: owner.is_none(),
                    on_dataplane: true,
                    by_agent: false,
                    retry: None,
                });
                (id, Claim::New)
            }
        };
        if let Some(c) = owner.and_then(|conn| self.conns.get_mut(&conn)) {
            c.edges.push(id);
        }
        Ok((id, claim))
    }

    /// Undoes [`attach_one`](Self::attach_one): `owner` lets go of edge `id`, which is
    /// detached when this call built it.
    fn release(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        owner: Option<ConnId>,
        id: EdgeId,
        claim: Claim,
    ) {
        if let Some(c) = owner.and_then(|conn| self.conns.get_mut(&conn)) {
            c.edges.retain(|&x| x != id);
        }
        let Some(g) = self.groups.get_mut(urn) else {
            return;
        };
        let Some(i) = g.edges.iter().position(|n| n.id == id) else {
            return;
        };
        match claim {
            Claim::New => g.detach_edge(dp, i, urn),
            Claim::Shared { was_configured } => match owner {
                Some(conn) => g.edges[i].owners.retain(|&o| o != conn),
                None => g.edges[i].configured = was_configured,
            },
        }
    }

    /// Attaches network edge `edge` to group `urn` for the control plane (configuration, the
    /// gRPC service): the group is created for `cfg`'s payload when it does not exist, and it
    /// lives, with no SDK member, until [`detach_edge`](Self::detach_edge). An identical edge a
    /// connection named is shared. Refused whole, with the reason, when it does not fit.
    pub fn attach_edge(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        cfg: &ConnectionConfig,
        edge: &ConfigEdge,
    ) -> Result<EdgeId, Refusal> {
        let created = if self.groups.contains_key(urn) {
            self.check_sizes(urn, cfg)?;
            None
        } else {
            Some(self.create_group_pool(dp, urn, cfg)?)
        };
        let edges = std::slice::from_ref(edge);
        let result = self
            .check_edges(urn, None, edges)
            .and_then(|()| self.attach_edges(dp, urn, None, edges, cfg.payload_size()));
        match result {
            Ok(ids) => Ok(ids[0]),
            Err(e) => {
                if created.is_some() {
                    self.destroy_if_empty(dp, urn);
                }
                Err(e)
            }
        }
    }

    /// Detaches a network edge the control plane attached (it stays while a connection still
    /// names it); the group goes when nothing is left in it.
    pub fn detach_edge(&mut self, dp: &mut dyn Dataplane, edge: EdgeId) -> Result<(), Refusal> {
        let found = self.groups.iter_mut().find_map(|(urn, g)| {
            let i = g.edges.iter().position(|e| e.id == edge && e.configured)?;
            Some((urn.clone(), g, i))
        });
        let Some((urn, g, i)) = found else {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_NOT_FOUND,
                MeshErr::ConnFailed,
                format!("edge {edge} was not attached by the control plane (or is gone)"),
            ));
        };
        g.edges[i].configured = false;
        if g.edges[i].owners.is_empty() {
            g.detach_edge(dp, i, &urn);
        }
        self.destroy_if_empty(dp, &urn);
        Ok(())
    }

    /// The data plane could not attach network edge `edge`, or detached it. A link that broke
    /// (its peer went away, refused it, broke its protocol) is set up again after a back-off
    /// while a connection or the control plane still wants it; any other edge is forgotten.
    pub fn edge_failed(&mut self, dp: &mut dyn Dataplane, edge: EdgeId, reason: &EdgeFailure) {
        let now = Instant::now();
        for (urn, g) in &mut self.groups {
            let Some(i) = g.edges.iter().position(|e| e.id == edge) else {
                continue;
            };
            let e = &mut g.edges[i];
            let wanted = e.configured || !e.owners.is_empty();
            if wanted
                && matches!(
                    reason,
                    EdgeFailure::Violation(crate::dataplane::Violation::Link(_))
                        | EdgeFailure::PoolMoved
                )
            {
                e.schedule_retry(urn, now, reason.to_string());
                return;
            }
            let e = g.edges.remove(i);
            tracing::warn!("group {urn:?}: edge {edge} ({}) failed: {reason}", e.kind);
            if g.source == Some(edge) {
                g.source = None;
            }
            for c in self.conns.values_mut() {
                c.edges.retain(|&x| x != edge);
            }
            let urn = urn.clone();
            self.destroy_if_empty(dp, &urn);
            return;
        }
    }

    /// When the next failed edge is due to be set up again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| g.edges.iter())
            .filter(|e| !e.on_dataplane)
            .filter_map(|e| e.retry.as_ref().map(|r| r.at))
            .min()
    }

    /// Sets up again every failed edge whose back-off has passed (same id and counters); one
    /// that cannot be set up waits longer.
    pub fn retry_due(&mut self, dp: &mut dyn Dataplane, now: Instant) {
        let due: Vec<(String, EdgeId)> = self
            .groups
            .iter()
            .flat_map(|(urn, g)| g.edges.iter().map(move |e| (urn, e)))
            .filter(|(_, e)| !e.on_dataplane && e.retry.as_ref().is_some_and(|r| r.at <= now))
            .map(|(urn, e)| (urn.clone(), e.id))
            .collect();
        for (urn, id) in due {
            let g = &self.groups[&urn];
            let Some(e) = g.edges.iter().find(|e| e.id == id) else {
                continue;
            };
            // A receiving link maps the pool writable again: not a sealed one.
            let moved = if g.sealed && maps_writable(&e.config) {
                self.move_pool(dp, &urn).map_err(|r| r.message)
            } else {
                Ok(())
            };
            let g = self.groups.get_mut(&urn).expect("found above");
            let Some(e) = g.edges.iter_mut().find(|e| e.id == id) else {
                continue;
            };
            let submitted = moved.and_then(|()| {
                let spec = EdgeSpec::network(
                    &e.config,
                    g.payload,
                    g.payload_size,
                    g.quota,
                    e.counters.clone(),
                );
                let cmd = Command::AttachEdge {
                    group: g.id,
                    edge: e.id,
                    spec,
                };
                dp.submit(cmd).map_err(|err| err.to_string())
            });
            match submitted {
                Ok(()) => {
                    tracing::debug!("group {urn:?}: edge {} ({}) set up again", e.id, e.kind);
                    e.on_dataplane = true;
                    if e.role == Role::Source
                        && let Err(why) = g.seal(&urn)
                    {
                        tracing::warn!("{why}");
                    }
                }
                Err(why) => e.schedule_retry(&urn, now, why),
            }
        }
    }
    /// Refuses what asks for other buffer sizes than the existing group `urn` carries.
    fn check_sizes(&self, urn: &str, cfg: &ConnectionConfig) -> Result<(), Refusal> {
        let g = &self.groups[urn];
        if g.payload_size != cfg.payload_size() || g.metadata_size != cfg.max_metadata_size() {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_CONFIG,
                MeshErr::ConnConfigIncompat,
                format!(
                    "group {urn:?} carries {} payload bytes and {} metadata bytes per buffer; this \
                     connection asks for {} and {} (allowed: the same sizes as the group)",
                    g.payload_size,
                    g.metadata_size,
                    cfg.payload_size(),
                    cfg.max_metadata_size()
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a connection that does not fit the existing group `urn`.
    fn check_joinable(
        &self,
        urn: &str,
        kind: ConnKind,
        cfg: &ConnectionConfig,
    ) -> Result<(), Refusal> {
        self.check_sizes(urn, cfg)?;
        let g = &self.groups[urn];
        match kind {
            ConnKind::Tx => {
                if let Some(src) = g.source {
                    return Err(Refusal::new(
                        ErrorCode::ERROR_CODE_LIMIT,
                        MeshErr::ConnConfigIncompat,
                        format!(
                            "group {urn:?} already has {}; a group has at most one source",
                            g.describe_source(src)
                        ),
                    ));
                }
            }
            ConnKind::Rx => {
                if g.sinks.len() + g.sink_edges() >= self.config.max_sinks_per_group as usize {
                    return Err(Refusal::new(
                        ErrorCode::ERROR_CODE_LIMIT,
                        MeshErr::MaxConn,
                        format!(
                            "group {urn:?} already has {} receivers and {} network sink edges \
                             (limit sdk.max_sinks_per_group = {}, both together)",
                            g.sinks.len(),
                            g.sink_edges(),
                            self.config.max_sinks_per_group
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Seals group `urn`'s pool unless a sender is about to map it (a receiver is then given
    /// it later); a pool that cannot be sealed (a sender sealed it against seals) is replaced by
    /// a new one, sealed at once.
    fn seal_for_receivers(&mut self, dp: &mut dyn Dataplane, urn: &str) -> Result<(), Refusal> {
        let g = self
            .groups
            .get_mut(urn)
            .expect("checked or created by the caller");
        if g.writer.is_some() {
            return Ok(());
        }
        let Err(why) = g.seal(urn) else {
            return Ok(());
        };
        tracing::warn!("{why}; the group moves to a new pool");
        self.move_pool(dp, urn)?;
        let g = self.groups.get_mut(urn).expect("moved above");
        g.seal(urn)
            .map_err(|why| Refusal::new(ErrorCode::ERROR_CODE_INTERNAL, MeshErr::ConnFailed, why))
    }

    /// Moves group `urn` to a new frame pool of the same geometry (a writer that maps the pool
    /// joins and the pool is sealed): the data plane switches when the group has no source
    /// ([`Command::ReplacePool`]); the old pool, when receivers may still read it, is kept
    /// for them to fetch.
    fn move_pool(&mut self, dp: &mut dyn Dataplane, urn: &str) -> Result<(), Refusal> {
        let internal = |what: String| {
            Refusal::new(
                ErrorCode::ERROR_CODE_INTERNAL,
                MeshErr::ConnFailed,
                format!("group {urn:?}: {what}"),
            )
        };
        let pool_id = self.next_pool;
        let g = self
            .groups
            .get_mut(urn)
            .expect("checked or created by the caller");
        let geometry = PoolGeometry {
            slot_count: g.pool.slot_count,
            payload_capacity: g.pool.payload_capacity,
            metadata_capacity: g.pool.metadata_capacity,
        };
        let pool = Pool::create(
            pool_id,
            &format!("mcm-pool-{}-{pool_id}", g.id),
            geometry,
            self.config.huge_pages,
        )
        .map_err(|e| internal(format!("cannot create a new frame pool: {e}")))?;
        let pool_fd = pool
            .dup_fd()
            .map_err(|e| internal(format!("cannot keep the pool fd: {e}")))?;
        dp.submit(Command::ReplacePool { group: g.id, pool })
            .map_err(|e| internal(format!("the data plane did not take the new pool: {e}")))?;
        self.next_pool += 1;
        let old_id = g.pool.pool_id;
        let old_fd = std::mem::replace(&mut g.pool_fd, pool_fd);
        if g.sealed && g.written {
            g.previous = Some((old_id, old_fd));
        }
        // Otherwise no receiver can have a frame of the old pool: it goes, and the one before
        // it stays.
        g.pool.pool_id = pool_id;
        g.sealed = false;
        g.written = false;
        tracing::info!(
            "group {urn:?}: moves from pool {old_id} to pool {pool_id} (a new writer joins; the \
             old pool is sealed against writers)"
        );
        Ok(())
    }

    /// Creates the pool and the group, and starts it on the data plane.
    fn create_group_pool(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        cfg: &ConnectionConfig,
    ) -> Result<GroupId, Refusal> {
        let internal = |what: String| {
            Refusal::new(
                ErrorCode::ERROR_CODE_INTERNAL,
                MeshErr::ConnFailed,
                format!("group {urn:?}: {what}"),
            )
        };
        let quota = cfg.buffer_queue_capacity().max(MIN_QUOTA);
        let geometry = PoolGeometry {
            slot_count: (1 + self.config.max_sinks_per_group) * quota,
            payload_capacity: cfg.payload_size(),
            metadata_capacity: cfg.max_metadata_size(),
        };
        let id = self.next_group;
        let pool_id = self.next_pool;
        let pool = Pool::create(
            pool_id,
            &format!("mcm-pool-{id}"),
            geometry,
            self.config.huge_pages,
        )
        .map_err(|e| internal(format!("cannot create the frame pool: {e}")))?;
        if let Some(why) = pool.region().huge_fallback() {
            tracing::info!("group {urn:?}: pool on normal pages ({why})");
        }
        let pool_fd = pool
            .dup_fd()
            .map_err(|e| internal(format!("cannot keep the pool fd: {e}")))?;
        let bell =
            Doorbell::new().map_err(|e| internal(format!("cannot create a doorbell: {e}")))?;
        let dp_bell = bell
            .try_clone()
            .map_err(|e| internal(format!("cannot duplicate the doorbell: {e}")))?;
        tracing::info!(
            "group {urn:?}: created (id {id}, {} slots of {} + {} bytes, {:?} pages)",
            geometry.slot_count,
            geometry.payload_capacity,
            geometry.metadata_capacity,
            pool.kind()
        );
        dp.submit(Command::CreateGroup {
            group: id,
            urn: urn.to_owned(),
            pool,
            bell: dp_bell,
        })
        .map_err(|e| internal(format!("the data plane did not take the group: {e}")))?;
        self.next_group += 1;
        self.next_pool += 1;
        let wire = WireGeometry {
            pool_id,
            slot_count: geometry.slot_count,
            payload_capacity: geometry.payload_capacity,
            metadata_capacity: geometry.metadata_capacity,
            ..WireGeometry::new()
        };
        self.generation += 1;
        self.groups.insert(
            urn.to_owned(),
            Group {
                id,
                pool_fd,
                pool: wire,
                sealed: false,
                writer: None,
                previous: None,
                written: false,
                quota,
                payload_size: cfg.payload_size(),
                metadata_size: cfg.max_metadata_size(),
                bell,
                source: None,
                sinks: Vec::new(),
                payload: *cfg.payload(),
                edges: Vec::new(),
                spec: None,
            },
        );
        Ok(id)
    }

    /// Creates the connection block and the fds, and records the member.
    fn join(
        &mut self,
        session: u64,
        urn: &str,
        kind: ConnKind,
        capacity: u32,
        transport: Transport,
        now: Instant,
    ) -> Result<Created, Refusal> {
        let g = self
            .groups
            .get_mut(urn)
            .expect("checked or created by the caller");
        let id = self.next_conn;
        let internal = |what: String| {
            Refusal::new(
                ErrorCode::ERROR_CODE_INTERNAL,
                MeshErr::ConnFailed,
                format!("connection {id} in group {urn:?}: {what}"),
            )
        };
        let layout = ConnLayout::new(kind, capacity).map_err(|e| internal(e.to_string()))?;
        let bell = g
            .bell
            .try_clone()
            .map_err(|e| internal(format!("cannot duplicate the doorbell: {e}")))?;
        let side = EngineSide::create_with_bell(&format!("mcm-conn-{id}"), layout, bell)
            .map_err(|e| internal(e.to_string()))?;
        // A receiver is given the pool only once it is sealed; until then (a sender has been
        // given it and not activated) it fetches it when a frame names it.
        let pool_fd = match kind {
            ConnKind::Tx => Some(g.pool_fd.try_clone()),
            ConnKind::Rx if g.sealed => {
                Some(reopen_readonly(g.pool_fd.as_fd()).map_err(std::io::Error::from))
            }
            ConnKind::Rx => None,
        };
        let pool_later = pool_fd.is_none();
        let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
        let fds = (|| -> std::io::Result<Vec<OwnedFd>> {
            let mut fds = Vec::with_capacity(4);
            if let Some(fd) = pool_fd {
                fds.push(fd?);
            }
            fds.push(side.region().dup_fd().map_err(std::io::Error::other)?);
            fds.push(dup(side.client_bell().fd())?);
            fds.push(dup(side.engine_bell().fd())?);
            Ok(fds)
        })()
        .map_err(|e| internal(format!("cannot duplicate the fds: {e}")))?;
        let quota = capacity.min(g.quota);
        let mut created = ConnectionCreated {
            conn_id: id,
            pool: Some(g.pool.clone()).into(),
            ring_capacity: capacity,
            quota,
            group: urn.to_owned(),
            pool_fd_later: pool_later,
            ..ConnectionCreated::new()
        };
        let reply_fds = match transport {
            Transport::Unix => {
                created.fds_attached = true;
                fds
            }
            Transport::Tcp => {
                let token = random_token().map_err(|e| internal(format!("no randomness: {e}")))?;
                created.fd_socket = self.config.unix_path.clone();
                created.fd_token = token.to_vec();
                self.tokens.insert(
                    token,
                    Parked {
                        conn: id,
                        session,
                        fds,
                        expires: now + TOKEN_LIFETIME,
                    },
                );
                Vec::new()
            }
        };
        match kind {
            ConnKind::Tx => {
                g.source = Some(id);
                g.writer = Some(id);
                g.written = true;
            }
            ConnKind::Rx => g.sinks.push(id),
        }
        self.next_conn += 1;
        *self.held.entry(session).or_default() += 1;
        self.generation += 1;
        self.conns.insert(
            id,
            Conn {
                session,
                urn: urn.to_owned(),
                kind,
                quota,
                pending: Some(side),
                counters: Arc::new(ConnCounters::default()),
                edges: Vec::new(),
                created: now,
            },
        );
        tracing::info!(
            session,
            "connection {id}: {kind:?} in group {urn:?} (capacity {capacity}, quota {quota})"
        );
        Ok((created, reply_fds))
    }

    /// The fds parked under `token` (one use; expired tokens are refused).
    pub fn fetch_fds(
        &mut self,
        token: &[u8],
        now: Instant,
    ) -> Result<(ConnId, Vec<OwnedFd>), Refusal> {
        let not_found = || {
            Refusal::new(
                ErrorCode::ERROR_CODE_NOT_FOUND,
                MeshErr::ConnFailed,
                format!(
                    "no connection waits for this fd token (tokens are {TOKEN_LEN} bytes, used \
                     once, and expire {} s after CreateConnection)",
                    TOKEN_LIFETIME.as_secs()
                ),
            )
        };
        let key: [u8; TOKEN_LEN] = token.try_into().map_err(|_| not_found())?;
        let parked = self.tokens.remove(&key).ok_or_else(not_found)?;
        if parked.expires <= now {
            return Err(not_found());
        }
        Ok((parked.conn, parked.fds))
    }

    /// A read-only fd of pool `pool_id` of receiver `conn`'s group, for `session`: the group's
    /// pool or the one before it, once sealed against writers (a receiver is given a pool only
    /// then). Over TCP the fd is parked under a one-time token, as for `CreateConnection`.
    pub fn fetch_pool(
        &mut self,
        session: u64,
        conn: ConnId,
        pool_id: u32,
        transport: Transport,
        now: Instant,
    ) -> Result<(PoolFd, Vec<OwnedFd>), Refusal> {
        let c = self.owned(session, conn)?;
        let (kind, urn) = (c.kind, c.urn.clone());
        if kind != ConnKind::Rx {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_INVALID_ARGUMENT,
                MeshErr::ConnFailed,
                format!(
                    "connection {conn} is a sender (FetchPool is for receivers: a sender keeps \
                     the pool it was given)"
                ),
            ));
        }
        let g = &self.groups[&urn];
        let fd = if g.pool.pool_id == pool_id && g.sealed {
            Some(g.pool_fd.as_fd())
        } else {
            g.previous
                .as_ref()
                .filter(|(id, _)| *id == pool_id)
                .map(|(_, fd)| fd.as_fd())
        };
        let Some(fd) = fd else {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_NOT_FOUND,
                MeshErr::ConnFailed,
                format!(
                    "group {urn:?} has no pool {pool_id} to give (allowed: its pool {} once its \
                     sender has activated, or the one before it)",
                    g.pool.pool_id
                ),
            ));
        };
        let internal = |what: String| {
            Refusal::new(
                ErrorCode::ERROR_CODE_INTERNAL,
                MeshErr::ConnFailed,
                format!("connection {conn}: {what}"),
            )
        };
        let ro =
            reopen_readonly(fd).map_err(|e| internal(format!("cannot reopen the pool: {e}")))?;
        let mut reply = PoolFd {
            conn_id: conn,
            pool: Some(WireGeometry {
                pool_id,
                ..g.pool.clone()
            })
            .into(),
            ..PoolFd::new()
        };
        match transport {
            Transport::Unix => {
                reply.fds_attached = true;
                Ok((reply, vec![ro]))
            }
            Transport::Tcp => {
                let token = random_token().map_err(|e| internal(format!("no randomness: {e}")))?;
                reply.fd_socket = self.config.unix_path.clone();
                reply.fd_token = token.to_vec();
                self.tokens.insert(
                    token,
                    Parked {
                        conn,
                        session,
                        fds: vec![ro],
                        expires: now + TOKEN_LIFETIME,
                    },
                );
                Ok((reply, Vec::new()))
            }
        }
    }

    /// Hands `session`'s connection `conn` to the data plane.
    pub fn activate(
        &mut self,
        dp: &mut dyn Dataplane,
        session: u64,
        conn: ConnId,
    ) -> Result<(), Refusal> {
        let c = self.owned(session, conn)?;
        let Some(side) = c.pending.take() else {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_UNEXPECTED_MESSAGE,
                MeshErr::ConnFailed,
                format!("connection {conn} is already active"),
            ));
        };
        let (urn, kind, quota, counters) = (c.urn.clone(), c.kind, c.quota, c.counters.clone());
        let g = self
            .groups
            .get_mut(&urn)
            .expect("a connection's group exists");
        if g.writer == Some(conn) {
            // The sender has mapped the pool (it says so by activating): nobody else may from
            // now on. Sealed before its first slot is lent, so no frame is ever read from a
            // pool that a receiver could write.
            g.writer = None;
            if let Err(why) = g.seal(&urn) {
                // Refused; the sender's connection stays pending and expires.
                self.conns.get_mut(&conn).expect("owned").pending = Some(side);
                return Err(Refusal::new(
                    ErrorCode::ERROR_CODE_INTERNAL,
                    MeshErr::ConnFailed,
                    format!("connection {conn}: {why}"),
                ));
            }
        }
        let group = g.id;
        let role = match kind {
            ConnKind::Tx => Role::Source,
            ConnKind::Rx => Role::Sink,
        };
        self.tokens.retain(|_, p| p.conn != conn);
        let member = Attachment {
            conn,
            role,
            side,
            quota,
            counters,
        };
        let spec = EdgeSpec::Sdk(member);
        dp.submit(Command::AttachEdge {
            group,
            edge: conn,
            spec,
        })
        .map_err(|e| {
            Refusal::new(
                ErrorCode::ERROR_CODE_INTERNAL,
                MeshErr::ConnFailed,
                format!("connection {conn}: the data plane did not take it: {e}"),
            )
        })
    }

    /// Deletes `session`'s connection `conn`.
    pub fn delete(
        &mut self,
        dp: &mut dyn Dataplane,
        session: u64,
        conn: ConnId,
    ) -> Result<(), Refusal> {
        self.owned(session, conn)?;
        self.remove(dp, conn);
        Ok(())
    }

    /// Deletes every connection of a session that ended.
    pub fn session_closed(&mut self, dp: &mut dyn Dataplane, session: u64) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session == session)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.remove(dp, id);
        }
        self.tokens.retain(|_, p| p.session != session);
        self.expired.retain(|_, s| *s != session);
    }

    /// Refuses a connection to group `urn` that would take `q`'s identity over a quota.
    fn check_quota(&self, q: &IdentityQuota<'_>, urn: &str) -> Result<(), Refusal> {
        let (conns, groups) = self.held_by_identity(q.member);
        let refuse = |message: String| {
            Err(Refusal::new(
                ErrorCode::ERROR_CODE_QUOTA,
                MeshErr::MaxConn,
                message,
            ))
        };
        if conns >= q.connections {
            return refuse(format!(
                "{} already holds {conns} connections, its quota \
                 (sdk.max_connections_per_identity = {}); delete one first",
                q.who, q.connections
            ));
        }
        let joins = self
            .conns
            .values()
            .any(|c| c.urn == urn && (q.member)(c.session));
        if !joins && groups >= q.groups {
            return refuse(format!(
                "{} already holds connections in {groups} groups, its quota \
                 (sdk.max_groups_per_identity = {}); group {urn:?} would be one more (joining \
                 a group it is in is allowed)",
                q.who, q.groups
            ));
        }
        Ok(())
    }

    /// Drops expired fd tokens.
    pub fn expire_tokens(&mut self, now: Instant) {
        self.tokens.retain(|_, p| p.expires > now);
    }

    /// Deletes the connections created more than `timeout` ago and never activated (a client
    /// that never fetched its fds or never called Activate holds a group slot and its quota
    /// otherwise). Answers the `(session, connection)` of each.
    pub fn expire_unactivated(
        &mut self,
        dp: &mut dyn Dataplane,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(u64, ConnId)> {
        let late: Vec<(u64, ConnId)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending.is_some() && now.duration_since(c.created) >= timeout)
            .map(|(&id, c)| (c.session, id))
            .collect();
        for &(session, id) in &late {
            self.remove(dp, id);
            self.expired.insert(id, session);
        }
        late
    }

    /// Counters of `session`'s connections.
    pub fn stats(&self, session: u64, payload_bytes_copied: u64) -> Stats {
        let mut stats = Stats::new();
        stats.payload_bytes_copied = payload_bytes_copied;
        let mut ids: Vec<(&ConnId, &Conn)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session == session)
            .collect();
        ids.sort_by_key(|(id, _)| **id);
        for (&id, c) in ids {
            let (frames, payload_bytes, dropped) = c.counters.snapshot();
            stats.connections.push(ConnectionStats {
                conn_id: id,
                kind: match c.kind {
                    ConnKind::Tx => ConnectionKind::CONNECTION_KIND_TX,
                    ConnKind::Rx => ConnectionKind::CONNECTION_KIND_RX,
                }
                .into(),
                group: c.urn.clone(),
                active: c.pending.is_none(),
                frames,
                payload_bytes,
                dropped,
                ..ConnectionStats::new()
            });
        }
        let mut urns: Vec<&String> = self
            .conns
            .values()
            .filter(|c| c.session == session)
            .map(|c| &c.urn)
            .collect();
        urns.sort();
        urns.dedup();
        for urn in urns {
            if let Some(g) = self.groups.get(urn) {
                for e in &g.edges {
                    stats.bridges.push(edge_stats(urn, e));
                }
            }
        }
        stats
    }

    fn owned(&mut self, session: u64, conn: ConnId) -> Result<&mut Conn, Refusal> {
        if self.expired.get(&conn) == Some(&session) {
            return Err(Refusal::new(
                ErrorCode::ERROR_CODE_NOT_FOUND,
                MeshErr::ConnClosed,
                format!(
                    "connection {conn} was deleted: it was not activated in time after its \
                     creation (sdk.activate_timeout_ms; over TCP, were its fds fetched?)"
                ),
            ));
        }
        match self.conns.get_mut(&conn) {
            Some(c) if c.session == session => Ok(c),
            _ => Err(Refusal::new(
                ErrorCode::ERROR_CODE_NOT_FOUND,
                MeshErr::BadConnPtr,
                format!("connection {conn} does not exist in this session"),
            )),
        }
    }

    /// Removes a connection: detaches it from the data plane (or just drops its block when it
    /// never became active), detaches the network edges only it named, and destroys its group
    /// when nothing is left in it.
    fn remove(&mut self, dp: &mut dyn Dataplane, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.generation += 1;
        if let Some(n) = self.held.get_mut(&c.session) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&c.session);
            }
        }
        self.tokens.retain(|_, p| p.conn != conn);
        let Some(g) = self.groups.get_mut(&c.urn) else {
            return;
        };
        if c.pending.is_none()
            && let Err(e) = dp.submit(Command::DetachEdge {
                group: g.id,
                edge: conn,
            })
        {
            tracing::error!("connection {conn}: detach not delivered to the data plane: {e}");
        }
        if g.source == Some(conn) {
            g.source = None;
        }
        if g.writer == Some(conn) {
            g.writer = None;
            // It may have mapped the pool writable; seal it before a receiver is given it.
            if let Err(why) = g.seal(&c.urn) {
                tracing::warn!("{why}");
            }
        }
        g.sinks.retain(|&s| s != conn);
        for id in &c.edges {
            let Some(i) = g.edges.iter().position(|e| e.id == *id) else {
                continue;
            };
            g.edges[i].owners.retain(|&o| o != conn);
            if g.edges[i].owners.is_empty() && !g.edges[i].configured {
                g.detach_edge(dp, i, &c.urn);
            }
        }
        tracing::info!(
            session = c.session,
            "connection {conn}: deleted from group {:?}",
            c.urn
        );
        self.destroy_if_empty(dp, &c.urn);
    }

    /// Destroys group `urn` when no connection and no network edge is left in it.
    fn destroy_if_empty(&mut self, dp: &mut dyn Dataplane, urn: &str) {
        let Some(g) = self.groups.get(urn) else {
            return;
        };
        let members = self.conns.values().any(|c| c.urn == urn);
        if members || !g.edges.is_empty() || g.spec.is_some() {
            return;
        }
        let id = g.id;
        self.generation += 1;
        self.groups.remove(urn);
        if let Err(e) = dp.submit(Command::DestroyGroup { group: id }) {
            tracing::error!("group {urn:?}: destroy not delivered to the data plane: {e}");
        }
        tracing::info!("group {urn:?}: destroyed (no members left)");
    }
}

/// Whether the edge maps its group's pool writable for itself (a receiving RDMA link
/// registers it for the peer's writes), which a pool sealed against writers refuses.
fn maps_writable(e: &ConfigEdge) -> bool {
    matches!(e, ConfigEdge::Rdma { .. }) && edge_role(e) == Role::Source
}

/// What a configured edge is to its group.
fn edge_role(e: &ConfigEdge) -> Role {
    match e.direction() {
        Direction::Tx => Role::Sink,
        Direction::Rx => Role::Source,
    }
}

/// A token from the kernel's random source.
fn random_token() -> std::io::Result<[u8; TOKEN_LEN]> {
    let mut token = [0u8; TOKEN_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut token)?;
    Ok(token)
}

fn edge_stats(urn: &str, e: &NetEdge) -> BridgeStats {
    let get = EdgeCounters::get;
    let c = &e.counters;
    BridgeStats {
        group: urn.to_owned(),
        kind: match e.role {
            Role::Sink => ConnectionKind::CONNECTION_KIND_TX,
            Role::Source => ConnectionKind::CONNECTION_KIND_RX,
        }
        .into(),
        edge_id: e.id,
        edge_kind: e.kind.clone(),
        packets_duplicate: get(&c.packets_duplicate),
        packets: get(&c.packets),
        bytes: get(&c.bytes),
        frames: get(&c.frames),
        frames_incomplete: get(&c.frames_incomplete),
        frames_dropped: get(&c.frames_dropped),
        packets_lost: get(&c.packets_lost),
        packets_reordered: get(&c.packets_reordered),
        packets_malformed: get(&c.packets_malformed),
        packets_late: get(&c.packets_late),
        send_errors: get(&c.send_errors),
        bytes_converted: get(&c.bytes_converted),
        frames_refused: get(&c.frames_refused),
        socket_drops: get(&c.socket_drops),
        slots_held: get(&c.slots_held),
        handshakes_refused: get(&c.handshakes_refused),
        failures: get(&c.failures),
        links_up: get(&c.links_up),
        primary_packets: get(&c.paths[0].packets),
        primary_lost: get(&c.paths[0].lost),
        secondary_packets: get(&c.paths[1].packets),
        secondary_lost: get(&c.paths[1].lost),
        packets_redundant: get(&c.packets_redundant),
        ..BridgeStats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DataplaneError, Event, LcoreCounters, Notifier};

    /// Records what the registry asks of the data plane (the engine's lcores in production).
    #[derive(Default)]
    struct Recorder {
        commands: Vec<String>,
    }

    impl Dataplane for Recorder {
        fn set_notifier(&mut self, _: Notifier) {}
        fn submit(&mut self, cmd: Command) -> Result<(), DataplaneError> {
            self.commands.push(match cmd {
                Command::Ping { .. } => "ping".to_owned(),
                Command::CreateGroup {
                    group, urn, pool, ..
                } => format!(
                    "create {group} {urn} slots={} payload={}",
                    pool.geometry().slot_count,
                    pool.geometry().payload_capacity
                ),
                Command::AttachEdge {
                    group,
                    edge,
                    spec: EdgeSpec::Sdk(member),
                } => format!(
                    "attach {group} {edge} {:?} quota={}",
                    member.role, member.quota
                ),
                Command::AttachEdge { group, edge, spec } => {
                    format!("attach {group} {edge} {}", spec.describe())
                }
                Command::DetachEdge { group, edge } => format!("detach {group} {edge}"),
                Command::DestroyGroup { group } => format!("destroy {group}"),
                Command::ReplacePool { group, pool } => format!("move {group} {}", pool.id()),
            });
            Ok(())
        }
        fn flush(&mut self) -> bool {
            false
        }
        fn drain_events(&mut self, _: &mut dyn FnMut(Event)) {}
        fn counters(&self) -> Vec<LcoreCounters> {
            Vec::new()
        }
        fn payload_bytes_copied(&self) -> u64 {
            0
        }
        fn shutdown(&mut self) {}
    }

    fn config() -> MeshConfig {
        MeshConfig {
            huge_pages: HugePages::Off,
            max_sinks_per_group: 3,
            max_conns_per_session: 4,
            unix_path: "/run/mcm/sdk.sock".to_owned(),
            links: Vec::new(),
        }
    }

    fn mesh() -> Mesh {
        Mesh::new(config())
    }

    fn req(kind: ConnectionKind, urn: &str, capacity: u32) -> CreateConnection {
        CreateConnection {
            kind: kind.into(),
            config_json: format!(
                r#"{{"bufferQueueCapacity": {capacity}, "maxMetadataSize": 8,
                    "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
                    "payload": {{"audio": {{"channels": 2, "sampleRate": 48000,
                                            "format": "pcm_s24be", "packetTime": "1ms"}}}}}}"#
            ),
            ..CreateConnection::new()
        }
    }

    const TX: ConnectionKind = ConnectionKind::CONNECTION_KIND_TX;
    const RX: ConnectionKind = ConnectionKind::CONNECTION_KIND_RX;

    #[test]
    fn a_new_sender_moves_the_group_and_the_pool_it_wrote_stays_for_receivers() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let (tx1, tx1_fds) = m
            .create(&mut dp, 1, &req(TX, "a", 16), Transport::Unix, now, None)
            .unwrap();
        assert!(!mcm_proto::shm::map::is_write_sealed(tx1_fds[0].as_fd()));
        m.activate(&mut dp, 1, tx1.conn_id).unwrap();
        let (rx, rx_fds) = m
            .create(&mut dp, 2, &req(RX, "a", 16), Transport::Tcp, now, None)
            .unwrap();
        assert!(
            rx_fds.is_empty() && !rx.pool_fd_later,
            "over TCP: parked under a token"
        );
        let (_, parked) = m.fetch_fds(&rx.fd_token, now).unwrap();
        assert!(mcm_proto::shm::map::is_write_sealed(parked[0].as_fd()));
        m.delete(&mut dp, 1, tx1.conn_id).unwrap();
        let (tx2, _) = m
            .create(&mut dp, 1, &req(TX, "a", 16), Transport::Unix, now, None)
            .unwrap();
        assert_ne!(tx2.pool.pool_id, tx1.pool.pool_id);
        // The old pool had frames: a receiver may fetch it, over TCP through a token.
        let (reply, fds) = m
            .fetch_pool(2, rx.conn_id, tx1.pool.pool_id, Transport::Tcp, now)
            .unwrap();
        assert!(fds.is_empty() && !reply.fds_attached);
        let (conn, fds) = m.fetch_fds(&reply.fd_token, now).unwrap();
        assert_eq!((conn, fds.len()), (rx.conn_id, 1));
        assert!(mcm_proto::shm::map::is_write_sealed(fds[0].as_fd()));
        // The new one only once its sender has activated; a sender fetches nothing.
        assert!(
            m.fetch_pool(2, rx.conn_id, tx2.pool.pool_id, Transport::Unix, now)
                .is_err()
        );
        m.activate(&mut dp, 1, tx2.conn_id).unwrap();
        assert!(
            m.fetch_pool(2, rx.conn_id, tx2.pool.pool_id, Transport::Unix, now)
                .is_ok()
        );
        assert!(
            m.fetch_pool(1, tx2.conn_id, tx2.pool.pool_id, Transport::Unix, now)
                .is_err()
        );
        assert!(
            m.fetch_pool(1, rx.conn_id, tx2.pool.pool_id, Transport::Unix, now)
                .is_err(),
            "another session's connection"
        );
        assert!(dp.commands.iter().any(|c| c.starts_with("move 1 ")));
    }

    #[test]
    fn the_first_member_sizes_the_pool_and_the_last_one_destroys_the_group() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let (rx, fds) = m
            .create(&mut dp, 1, &req(RX, "a", 32), Transport::Unix, now, None)
            .unwrap();
        assert_eq!(fds.len(), 4);
        assert!(rx.fds_attached);
        let pool = rx.pool.as_ref().unwrap();
        // (1 + 3 sinks) * 32, 288 bytes of 48 kHz 24-bit stereo 1 ms audio, 8 metadata bytes.
        assert_eq!(
            (
                pool.slot_count,
                pool.payload_capacity,
                pool.metadata_capacity
            ),
            (128, 288, 8)
        );
        assert_eq!(
            (rx.ring_capacity, rx.quota, rx.group.as_str()),
            (32, 32, "a")
        );
        let (tx, tx_fds) = m
            .create(&mut dp, 2, &req(TX, "a", 64), Transport::Unix, now, None)
            .unwrap();
        assert_eq!(tx.quota, 32, "a member's quota is capped by the group's");
        // The receiver was given the pool sealed; the sender gets a new one it can map.
        let (rx_pool, tx_pool) = (&fds[0], &tx_fds[0]);
        assert!(mcm_proto::shm::map::is_write_sealed(rx_pool.as_fd()));
        assert!(!mcm_proto::shm::map::is_write_sealed(tx_pool.as_fd()));
        assert_ne!(tx.pool.pool_id, rx.pool.pool_id);
        assert!(
            m.fetch_pool(2, tx.conn_id, tx.pool.pool_id, Transport::Unix, now)
                .is_err()
        );
        assert!(
            m.fetch_pool(1, rx.conn_id, tx.pool.pool_id, Transport::Unix, now)
                .is_err(),
            "not before its sender has activated"
        );
        m.activate(&mut dp, 2, tx.conn_id).unwrap();
        assert!(mcm_proto::shm::map::is_write_sealed(tx_pool.as_fd()));
        let (reply, pool_fds) = m
            .fetch_pool(1, rx.conn_id, tx.pool.pool_id, Transport::Unix, now)
            .unwrap();
        assert_eq!((reply.pool.pool_id, pool_fds.len()), (tx.pool.pool_id, 1));
        assert!(
            m.fetch_pool(1, rx.conn_id, rx.pool.pool_id, Transport::Unix, now)
                .is_err(),
            "a pool that never had a source is not kept after the move"
        );
        assert_eq!(m.groups(), 1);
        m.session_closed(&mut dp, 1);
        m.delete(&mut dp, 2, tx.conn_id).unwrap();
        assert_eq!((m.groups(), m.connections()), (0, 0));
        assert_eq!(
            dp.commands,
            [
                "create 1 a slots=128 payload=288",
                "move 1 2",
                "attach 1 2 Source quota=32",
                "detach 1 2",
                "destroy 1"
            ],
            "a connection never activated is not detached from the data plane"
        );
    }

    #[test]
    fn an_identity_is_held_to_its_quotas_of_connections_and_groups() {
        use crate::access::Identity;
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        // Sessions 1 and 2 are one identity; session 3 another.
        let who = Identity::Uid(1000);
        let member = |s: u64| s == 1 || s == 2;
        let q = IdentityQuota {
            who: &who,
            member: &member,
            connections: 3,
            groups: 2,
        };
        let create = |m: &mut Mesh, dp: &mut Recorder, session, r: CreateConnection| {
            m.create(dp, session, &r, Transport::Unix, now, Some(&q))
        };
        create(&mut m, &mut dp, 1, req(RX, "a", 4)).unwrap();
        create(&mut m, &mut dp, 2, req(RX, "b", 4)).unwrap();
        let e = create(&mut m, &mut dp, 2, req(RX, "c", 4)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ERROR_CODE_QUOTA, "{e:?}");
        assert_eq!(e.mesh_error, Some(MeshErr::MaxConn));
        assert!(
            e.message.contains(
                "uid 1000 already holds connections in 2 groups, its quota \
                 (sdk.max_groups_per_identity = 2)"
            ),
            "{e:?}"
        );
        assert_eq!(m.groups(), 2, "nothing was made of the refused request");
        // Joining a group it is in is allowed, up to the connections quota.
        create(&mut m, &mut dp, 2, req(TX, "a", 4)).unwrap();
        let e = create(&mut m, &mut dp, 1, req(RX, "b", 4)).unwrap_err();
        assert!(
            e.message
                .contains("uid 1000 already holds 3 connections, its quota"),
            "{e:?}"
        );
        assert_eq!(m.held_by_identity(&member), (3, 2));
        // Another identity is not affected.
        m.create(&mut dp, 3, &req(RX, "c", 4), Transport::Unix, now, None)
            .unwrap();
        // Deleting frees the place.
        m.session_closed(&mut dp, 1);
        assert_eq!((m.held_by(1), m.held_by(2)), (0, 2));
        create(&mut m, &mut dp, 2, req(RX, "b", 4)).unwrap();
    }

    #[test]
    fn refusals_name_the_rule_and_carry_the_mcm_code() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let refuse = |m: &mut Mesh, dp: &mut Recorder, session, r: CreateConnection| {
            m.create(dp, session, &r, Transport::Unix, now, None)
                .unwrap_err()
        };
        let e = refuse(&mut m, &mut dp, 1, req(RX, "a", 3));
        assert_eq!(e.mesh_error, Some(MeshErr::ConnConfigInval), "{e:?}");
        assert!(e.message.contains("bufferQueueCapacity"), "{e:?}");
        let mut bad_kind = req(RX, "a", 4);
        bad_kind.kind = ConnectionKind::CONNECTION_KIND_UNSPECIFIED.into();
        let e = refuse(&mut m, &mut dp, 1, bad_kind);
        assert!(e.message.contains("allowed: TX = 1, RX = 2"), "{e:?}");
        m.create(&mut dp, 1, &req(TX, "a", 4), Transport::Unix, now, None)
            .unwrap();
        let e = refuse(&mut m, &mut dp, 2, req(TX, "a", 4));
        assert_eq!(e.code, ErrorCode::ERROR_CODE_LIMIT);
        assert!(
            e.message.contains("already has a sender (connection 1)"),
            "{e:?}"
        );
        for _ in 0..3 {
            m.create(&mut dp, 2, &req(RX, "a", 4), Transport::Unix, now, None)
                .unwrap();
        }
        let e = refuse(&mut m, &mut dp, 3, req(RX, "a", 4));
        assert_eq!(e.mesh_error, Some(MeshErr::MaxConn), "{e:?}");
        m.create(&mut dp, 2, &req(RX, "b", 4), Transport::Unix, now, None)
            .unwrap();
        let e = refuse(&mut m, &mut dp, 2, req(RX, "c", 4));
        assert!(e.message.contains("limit 4 per client"), "{e:?}");
        assert!(
            m.activate(&mut dp, 9, 1).is_err(),
            "another session's connection"
        );
        assert_eq!(
            m.delete(&mut dp, 1, 999).unwrap_err().mesh_error,
            Some(MeshErr::BadConnPtr)
        );
    }

    #[test]
    fn tcp_clients_get_a_single_use_token_that_expires() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let (c, fds) = m
            .create(&mut dp, 1, &req(RX, "a", 4), Transport::Tcp, now, None)
            .unwrap();
        assert!(fds.is_empty() && !c.fds_attached);
        assert_eq!(c.fd_socket, "/run/mcm/sdk.sock");
        let (id, fds) = m.fetch_fds(&c.fd_token, now).unwrap();
        assert_eq!((id, fds.len()), (c.conn_id, 4));
        assert!(m.fetch_fds(&c.fd_token, now).is_err(), "used once");
        let (c, _) = m
            .create(&mut dp, 1, &req(RX, "a", 4), Transport::Tcp, now, None)
            .unwrap();
        assert!(
            m.fetch_fds(&c.fd_token, now + TOKEN_LIFETIME).is_err(),
            "expired"
        );
        let (c, _) = m
            .create(&mut dp, 1, &req(RX, "a", 4), Transport::Tcp, now, None)
            .unwrap();
        m.expire_tokens(now + TOKEN_LIFETIME);
        assert!(
            m.fetch_fds(&c.fd_token, now).is_err(),
            "expired and dropped"
        );
        assert!(m.fetch_fds(b"short", now).is_err());
    }

    fn with_edges(kind: ConnectionKind, urn: &str, edges: &[(&str, u16)]) -> CreateConnection {
        let edges: Vec<String> = edges
            .iter()
            .map(|(dir, port)| {
                format!(
                    r#"{{"st2110": {{"direction": "{dir}", "ipAddr": "239.1.1.1", "port": {port}}}}}"#
                )
            })
            .collect();
        CreateConnection {
            kind: kind.into(),
            config_json: format!(
                r#"{{"connection": {{"multipointGroup": {{"urn": "{urn}", "edges": [{}]}}}},
                    "payload": {{"video": {{"width": 64, "height": 32}}}}}}"#,
                edges.join(",")
            ),
            ..CreateConnection::new()
        }
    }

    #[test]
    fn edges_are_shared_by_spec_detached_with_their_last_owner_and_one_source_only() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let (a, _) = m
            .create(
                &mut dp,
                1,
                &with_edges(RX, "g", &[("rx", 5000), ("tx", 6000)]),
                Transport::Unix,
                now,
                None,
            )
            .unwrap();
        // The same tx edge again, and a second source: the source is refused, whole.
        let e = m
            .create(
                &mut dp,
                2,
                &with_edges(RX, "g", &[("tx", 6000), ("rx", 5002)]),
                Transport::Unix,
                now,
                None,
            )
            .unwrap_err();
        assert!(e.message.contains("edges[1]"), "{e:?}");
        assert!(e.message.contains("already has a source edge"), "{e:?}");
        let e = m
            .create(
                &mut dp,
                2,
                &with_edges(TX, "g", &[]),
                Transport::Unix,
                now,
                None,
            )
            .unwrap_err();
        assert!(
            e.message
                .contains("already has a source edge (st2110-20 rx"),
            "{e:?}"
        );
        let (b, _) = m
            .create(
                &mut dp,
                2,
                &with_edges(RX, "g", &[("tx", 6000)]),
                Transport::Unix,
                now,
                None,
            )
            .unwrap();
        m.delete(&mut dp, 1, a.conn_id).unwrap();
        assert_eq!(m.groups(), 1, "b and the tx edge keep the group");
        m.delete(&mut dp, 2, b.conn_id).unwrap();
        assert_eq!(m.groups(), 0);
        assert_eq!(
            dp.commands,
            [
                "create 1 g slots=64 payload=8192",
                "attach 1 2 st2110-20 rx 239.1.1.1:5000",
                "attach 1 3 st2110-20 tx 239.1.1.1:6000",
                "detach 1 2",
                "detach 1 3",
                "destroy 1"
            ],
            "one tx edge for both owners; each edge detached when its last owner left"
        );
    }

    #[test]
    fn an_edge_the_control_plane_attaches_keeps_its_group_with_no_sdk_member() {
        let (mut m, mut dp, now) = (mesh(), Recorder::default(), Instant::now());
        let cfg =
            ConnectionConfig::from_json(&with_edges(RX, "cfg", &[]).config_json, Direction::Rx)
                .unwrap();
        let tx_edge = |port| ConfigEdge::St2110 {
            direction: Direction::Tx,
            stream: mcm_proto::config::transport::St2110 {
                transport: mcm_proto::config::transport::Transport::St2110_20,
                ip_addr: "239.1.1.1".parse().unwrap(),
                port,
                multicast_source_ip_addr: None,
                pacing: None,
                payload_type: 112,
                transport_pixel_format: Some("yuv422p10rfc4175".to_owned()),
                sdp_file: None,
                any_source: false,
                redundant: None,
            },
        };
        let edge = m.attach_edge(&mut dp, "cfg", &cfg, &tx_edge(6000)).unwrap();
        assert_eq!((m.groups(), m.connections()), (1, 0));
        // A receiver comes and goes, naming the same edge: the group and the edge stay.
        let (rx, _) = m
            .create(
                &mut dp,
                1,
                &with_edges(RX, "cfg", &[("tx", 6000)]),
                Transport::Unix,
                now,
                None,
            )
            .unwrap();
        m.delete(&mut dp, 1, rx.conn_id).unwrap();
        assert_eq!(m.groups(), 1, "the configured edge keeps the group");
        // Another size is refused whole.
        let audio =
            ConnectionConfig::from_json(&req(RX, "cfg", 4).config_json, Direction::Rx).unwrap();
        let e = m
            .attach_edge(&mut dp, "cfg", &audio, &tx_edge(6002))
            .unwrap_err();
        assert!(e.message.contains("the same sizes"), "{e:?}");
        m.detach_edge(&mut dp, edge).unwrap();
        assert_eq!(m.groups(), 0);
        let e = m.detach_edge(&mut dp, edge).unwrap_err();
        assert_eq!(e.code, ErrorCode::ERROR_CODE_NOT_FOUND);
        assert_eq!(
            dp.commands,
            [
                "create 1 cfg slots=64 payload=8192",
                "attach 1 1 st2110-20 tx 239.1.1.1:6000",
                "detach 1 1",
                "destroy 1"
            ]
        );
    }

    /// A link from this engine to another, for `[[rdma.link]]`.
    fn rdma_tx(port: u16) -> ConfigEdge {
        ConfigEdge::Rdma {
            direction: Direction::Tx,
            link: mcm_proto::config::transport::RdmaLink {
                peer: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
                port: None,
                provider: mcm_proto::config::transport::RdmaProvider::Tcp,
                endpoints: 2,
            },
        }
    }

    /// The id of the edge the last `attach` command named.
    fn last_attached(dp: &Recorder) -> EdgeId {
        let cmd = dp
            .commands
            .iter()
            .rev()
            .find(|c| c.starts_with("attach "))
            .expect("an attach");
        cmd.split(' ').nth(2).unwrap().parse().unwrap()
    }

    /// A mesh whose group "g" has a configured link, and a sender in it: the sender's reply
    /// and the link's edge id.
    fn linked_sender() -> (Mesh, Recorder, Instant, ConnectionCreated, EdgeId) {
        let mut m = Mesh::new(MeshConfig {
            links: vec![("g".to_owned(), rdma_tx(9100))],
            ..config()
        });
        let (mut dp, now) = (Recorder::default(), Instant::now());
        let (a, _) = m
            .create(&mut dp, 1, &req(TX, "g", 4), Transport::Unix, now, None)
            .unwrap();
        let link = last_attached(&dp);
        (m, dp, now, a, link)
    }

    #[test]
    fn configured_links_join_every_connection_of_their_group_only() {
        let (mut m, mut dp, now, a, link) = linked_sender();
        assert!(
            dp.commands
                .last()
                .unwrap()
                .contains("rdma tx 127.0.0.1:9100"),
            "{:?}",
            dp.commands
        );
        let (b, _) = m
            .create(&mut dp, 1, &req(RX, "g", 4), Transport::Unix, now, None)
            .unwrap();
        let (h, _) = m
            .create(&mut dp, 2, &req(RX, "h", 4), Transport::Unix, now, None)
            .unwrap();
        let rdma = dp.commands.iter().filter(|c| c.contains(" rdma ")).count();
        assert_eq!(
            rdma, 1,
            "one link, shared, and none for h: {:?}",
            dp.commands
        );
        assert_eq!(m.stats(1, 0).bridges.len(), 1);
        m.delete(&mut dp, 1, a.conn_id).unwrap();
        assert!(!dp.commands.contains(&format!("detach 1 {link}")));
        m.delete(&mut dp, 1, b.conn_id).unwrap();
        assert!(
            dp.commands.contains(&format!("detach 1 {link}")),
            "the link goes with the group's last connection: {:?}",
            dp.commands
        );
        m.delete(&mut dp, 2, h.conn_id).unwrap();
        assert_eq!(m.groups(), 0);
    }

    #[test]
    fn a_broken_link_is_set_up_again_after_a_back_off_and_other_failures_forget_it() {
        use crate::dataplane::{LinkFault, LinkStage, Violation};
        let (mut m, mut dp, now, a, link) = linked_sender();
        let attaches = |dp: &Recorder| {
            dp.commands
                .iter()
                .filter(|c| c.starts_with(&format!("attach 1 {link} ")))
                .count()
        };
        let broke =
            EdgeFailure::Violation(Violation::Link(LinkFault::Closed(LinkStage::Streaming)));
        let before = Instant::now();
        m.edge_failed(&mut dp, link, &broke);
        let due = m.next_retry().expect("a retry is scheduled");
        assert!(due >= before + RETRY_MIN && due <= Instant::now() + RETRY_MIN);
        m.retry_due(&mut dp, due - Duration::from_millis(1));
        assert_eq!(attaches(&dp), 1, "not before the back-off has passed");
        m.retry_due(&mut dp, due);
        assert_eq!(attaches(&dp), 2, "set up again under the same id");
        assert_eq!(
            m.next_retry(),
            None,
            "nothing due while it is on the data plane"
        );
        // It fails again before any link came up: the wait doubles.
        let before = Instant::now();
        m.edge_failed(&mut dp, link, &broke);
        let due = m.next_retry().unwrap();
        assert!(due >= before + 2 * RETRY_MIN && due <= Instant::now() + 2 * RETRY_MIN);
        // Doubling stops at RETRY_MAX.
        for _ in 0..10 {
            let due = m.next_retry().unwrap();
            m.retry_due(&mut dp, due);
            m.edge_failed(&mut dp, link, &broke);
        }
        let g = &m.groups["g"];
        assert_eq!(g.edges[0].retry.as_ref().unwrap().backoff, RETRY_MAX);
        // A link that came up since starts over at RETRY_MIN.
        let due = m.next_retry().unwrap();
        m.retry_due(&mut dp, due);
        EdgeCounters::add(&m.groups["g"].edges[0].counters.links_up, 1);
        m.edge_failed(&mut dp, link, &broke);
        let e = &m.groups["g"].edges[0];
        assert_eq!(e.retry.as_ref().unwrap().backoff, RETRY_MIN);
        let stats = m.stats(1, 0).bridges;
        assert_eq!(
            (stats.len(), stats[0].failures, stats[0].links_up),
            (1, 13, 1)
        );
        // The last connection leaves while the link waits: nothing to detach on the data plane.
        m.delete(&mut dp, 1, a.conn_id).unwrap();
        assert!(
            !dp.commands.contains(&format!("detach 1 {link}")),
            "{:?}",
            dp.commands
        );
        assert_eq!((m.groups(), m.next_retry()), (0, None));

        // A failure that is not the link's (the group is gone on the data plane) forgets it.
        let (b, _) = m
            .create(&mut dp, 1, &req(TX, "g", 4), Transport::Unix, now, None)
            .unwrap();
        let link = last_attached(&dp);
        m.edge_failed(&mut dp, link, &EdgeFailure::NoGroup);
        assert_eq!(m.next_retry(), None);
        assert!(m.stats(1, 0).bridges.is_empty());
        assert_eq!(m.connections(), 1, "the SDK member stays");
        m.delete(&mut dp, 1, b.conn_id).unwrap();
        assert_eq!(m.groups(), 0);
    }
}
