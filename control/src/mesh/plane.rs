//! What the control plane (the gRPC service) does to the registry: groups made with no SDK
//! member, edges attached and detached, a full desired state applied by difference, and the
//! listings it answers with.
//!
//! A group the control plane made carries its [`Spec`] (the connection JSON it was made with)
//! and lives until the control plane lets it go, whoever joins or leaves. Edges the control
//! plane attached are `configured`; an identical edge an SDK connection named is shared, and
//! stays while either wants it. SDK connections are never touched from here.
//!
//! [`Mesh::apply`] checks the whole state first (every spec parses, URNs are distinct, each
//! group's sizes and shape fit what is in it), then changes one group at a time, and when the
//! data plane refuses something half-way (a port in use), puts back every group it had changed:
//! nothing is left half-applied.

use std::collections::HashMap;

use mcm_proto::config::transport::{Connection, Edge as ConfigEdge};
use mcm_proto::config::{ConnectionConfig, Direction, MeshErr};
use mcm_proto::sdk::ErrorCode;
use mcm_proto::shm::conn::ConnKind;

use super::{MAX_SINK_EDGES, MIN_QUOTA, Mesh, edge_role};
use crate::dataplane::{ConnId, Dataplane, EdgeId, Role};
use crate::grpc::proto::control as pb;
use crate::session::Refusal;

/// A group as the control plane asked for it.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// The connection JSON, as given.
    json: String,
    /// It, parsed.
    cfg: ConnectionConfig,
    /// Its `multipointGroup.edges`, without repeats.
    edges: Vec<ConfigEdge>,
}

/// The kind of a refusal, for the gRPC status it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneErrorKind {
    /// The request does not parse or validate.
    Invalid,
    /// No such group or edge.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// It does not fit what the engine has (a second source, other buffer sizes).
    Conflict,
    /// A limit would be passed.
    Limit,
    /// The engine could not do it (memory, the data plane).
    Internal,
}

/// Why a control-plane request was refused: what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaneError {
    /// Which kind of refusal.
    pub kind: PlaneErrorKind,
    /// The reason.
    pub message: String,
}

impl PlaneError {
    fn new(kind: PlaneErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl From<Refusal> for PlaneError {
    fn from(r: Refusal) -> Self {
        let kind = match r.code {
            ErrorCode::ERROR_CODE_CONFIG | ErrorCode::ERROR_CODE_INVALID_ARGUMENT => {
                match r.mesh_error {
                    Some(MeshErr::ConnConfigIncompat) => PlaneErrorKind::Conflict,
                    _ => PlaneErrorKind::Invalid,
                }
            }
            ErrorCode::ERROR_CODE_NOT_FOUND => PlaneErrorKind::NotFound,
            ErrorCode::ERROR_CODE_LIMIT => match r.mesh_error {
                Some(MeshErr::ConnConfigIncompat) => PlaneErrorKind::Conflict,
                _ => PlaneErrorKind::Limit,
            },
            _ => PlaneErrorKind::Internal,
        };
        Self::new(kind, r.message)
    }
}

/// What [`Mesh::apply`] changed (or would change, on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Groups made.
    pub created: Vec<String>,
    /// Groups whose edges or spec changed, or that were made again for other buffer sizes.
    pub changed: Vec<String>,
    /// Groups the control plane let go.
    pub removed: Vec<String>,
    /// Groups left as they were.
    pub unchanged: Vec<String>,
    /// Edges attached.
    pub edges_attached: u32,
    /// Edges detached.
    pub edges_detached: u32,
}

/// One group's target: its spec, or `None` (the control plane lets it go).
type Target = Option<Spec>;

/// The control plane's part of a group now, to put it back.
struct Before {
    urn: String,
    spec: Option<Spec>,
    /// Edges the control plane had attached.
    edges: Vec<ConfigEdge>,
}

/// Parses a group spec: a connection JSON with `connection.multipointGroup`.
fn parse_spec(json: &str) -> Result<(String, Spec), PlaneError> {
    // The direction only matters for `connCreationDelayMilliseconds`, which is accepted.
    let cfg = ConnectionConfig::from_json(json, Direction::Tx).map_err(|e| {
        let kind = match e.class {
            MeshErr::ConnConfigIncompat => PlaneErrorKind::Conflict,
            _ => PlaneErrorKind::Invalid,
        };
        PlaneError::new(kind, e.to_string())
    })?;
    let Connection::MultipointGroup(g) = cfg.connection() else {
        return Err(PlaneError::new(
            PlaneErrorKind::Invalid,
            format!(
                "connection.{}: a group made by the control plane is a multipointGroup \
                 (allowed: connection.multipointGroup {{\"urn\", \"edges\"}}; an ST 2110 \
                 stream is one of its edges)",
                cfg.connection().as_str()
            ),
        ));
    };
    let mut edges: Vec<ConfigEdge> = Vec::with_capacity(g.edges.len());
    for e in &g.edges {
        if !edges.contains(e) {
            edges.push(e.clone());
        }
    }
    let urn = g.urn.clone();
    Ok((
        urn,
        Spec {
            json: json.to_owned(),
            cfg,
            edges,
        },
    ))
}

impl Mesh {
    /// Makes group `json` describes (a connection JSON with `connection.multipointGroup`), with
    /// its edges, to live until [`delete_group`](Self::delete_group). A group that SDK
    /// connections made already is taken over when its sizes match. Returns its URN.
    pub fn create_group(
        &mut self,
        dp: &mut dyn Dataplane,
        json: &str,
    ) -> Result<String, PlaneError> {
        let (urn, spec) = parse_spec(json)?;
        if self.groups.get(&urn).is_some_and(|g| g.spec.is_some()) {
            return Err(PlaneError::new(
                PlaneErrorKind::AlreadyExists,
                format!(
                    "group {urn:?} was made by the control plane already (delete it first, or \
                     change it with ApplyConfig)"
                ),
            ));
        }
        self.check_target(&urn, &spec)?;
        self.reconcile(dp, &urn, Some(spec))?;
        Ok(urn)
    }

    /// Lets go of group `urn`: detaches the edges the control plane attached (those an SDK
    /// connection also named stay), and destroys the group when nothing else is in it.
    /// Returns whether the group is gone.
    pub fn delete_group(&mut self, dp: &mut dyn Dataplane, urn: &str) -> Result<bool, PlaneError> {
        if self.groups.get(urn).is_none_or(|g| g.spec.is_none()) {
            return Err(PlaneError::new(
                PlaneErrorKind::NotFound,
                format!("no group {urn:?} made by the control plane"),
            ));
        }
        self.reconcile(dp, urn, None)?;
        Ok(!self.groups.contains_key(urn))
    }

    /// Attaches the edge `json` describes (an entry of `multipointGroup.edges`) to the existing
    /// group `urn`. Returns the edge's id.
    pub fn create_edge(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        json: &str,
    ) -> Result<(EdgeId, u16), PlaneError> {
        self.attach_configured(dp, urn, json, false)
    }

    /// [`create_edge`](Self::create_edge) for the agent: the edge is marked as the agent's
    /// (ApplyConfig leaves it alone).
    pub fn create_agent_edge(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        json: &str,
    ) -> Result<(EdgeId, u16), PlaneError> {
        self.attach_configured(dp, urn, json, true)
    }

    /// Attaches the edge; returns its id and, for an rx link, the port it listens on.
    fn attach_configured(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        json: &str,
        by_agent: bool,
    ) -> Result<(EdgeId, u16), PlaneError> {
        let edge = ConfigEdge::from_json(json).map_err(|e| {
            PlaneError::new(PlaneErrorKind::Invalid, format!("edge: {}", e.message))
        })?;
        let Some(g) = self.groups.get(urn) else {
            return Err(PlaneError::new(
                PlaneErrorKind::NotFound,
                format!(
                    "no group {urn:?} (make it with CreateGroup, or let an SDK connection make it)"
                ),
            ));
        };
        edge.check_payload(&g.payload).map_err(|e| {
            PlaneError::new(PlaneErrorKind::Conflict, format!("edge: {}", e.message))
        })?;
        if let Some(n) = g.edges.iter().find(|n| n.config == edge && n.configured) {
            return Err(PlaneError::new(
                PlaneErrorKind::AlreadyExists,
                format!("group {urn:?} has this edge already (edge {})", n.id),
            ));
        }
        self.check_edges(urn, None, std::slice::from_ref(&edge))?;
        let payload_size = g.payload_size;
        let ids = self.attach_edges(dp, urn, None, std::slice::from_ref(&edge), payload_size)?;
        let Some(e) = self
            .groups
            .get_mut(urn)
            .and_then(|g| g.edges.iter_mut().find(|e| e.id == ids[0]))
        else {
            return Ok((ids[0], 0));
        };
        e.by_agent |= by_agent;
        let port = crate::dataplane::EdgeCounters::get(&e.counters.listen_port);
        Ok((ids[0], port as u16))
    }

    /// Groups whose source the agent says is on another engine (URN to that engine's name);
    /// a sender for one of them is refused here.
    pub fn set_remote_sources(&mut self, sources: std::collections::HashMap<String, String>) {
        self.remote_sources = sources;
    }

    /// What the agent needs to know of every group: its SDK senders and receivers here.
    pub fn presence(&self) -> Vec<pb::GroupPresence> {
        let mut members: HashMap<&str, (u32, u32)> = HashMap::with_capacity(self.groups.len());
        for c in self.conns.values() {
            let m = members.entry(c.urn.as_str()).or_default();
            match c.kind {
                ConnKind::Tx => m.0 += 1,
                ConnKind::Rx => m.1 += 1,
            }
        }
        let mut urns: Vec<&String> = self.groups.keys().collect();
        urns.sort();
        urns.into_iter()
            .map(|urn| {
                let (senders, receivers) = members.get(urn.as_str()).copied().unwrap_or_default();
                pb::GroupPresence {
                    urn: urn.clone(),
                    senders,
                    receivers,
                    payload: describe_payload(&self.groups[urn].payload),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Makes the control plane's groups exactly `specs` (each a group spec as in
    /// [`create_group`](Self::create_group)); see the module documentation. On a dry run
    /// nothing changes and the report says what would.
    pub fn apply(
        &mut self,
        dp: &mut dyn Dataplane,
        specs: &[String],
        dry_run: bool,
    ) -> Result<ApplyReport, PlaneError> {
        let mut desired: Vec<(String, Spec)> = Vec::with_capacity(specs.len());
        for (i, json) in specs.iter().enumerate() {
            let (urn, spec) =
                parse_spec(json).map_err(|e| e.prefixed(&format!("groups[{i}]: ")))?;
            if let Some(j) = desired.iter().position(|(u, _)| *u == urn) {
                return Err(PlaneError::new(
                    PlaneErrorKind::Invalid,
                    format!("groups[{i}]: group {urn:?} is given twice (groups[{j}] too)"),
                ));
            }
            desired.push((urn, spec));
        }
        let mut report = ApplyReport::default();
        let mut plan: Vec<(String, Target)> = Vec::new();
        for (i, (urn, spec)) in desired.iter().enumerate() {
            self.check_target(urn, spec)
                .map_err(|e| e.prefixed(&format!("groups[{i}]: ")))?;
            let Some(g) = self.groups.get(urn) else {
                report.created.push(urn.clone());
                report.edges_attached += spec.edges.len() as u32;
                plan.push((urn.clone(), Some(spec.clone())));
                continue;
            };
            let (attach, detach) = self.edge_difference(urn, Some(spec));
            let same = g.spec.is_some() && !needs_new_pool(g, &spec.cfg);
            if same && attach == 0 && detach == 0 {
                report.unchanged.push(urn.clone());
                continue;
            }
            report.changed.push(urn.clone());
            report.edges_attached += attach;
            report.edges_detached += detach;
            plan.push((urn.clone(), Some(spec.clone())));
        }
        let mut gone: Vec<&String> = self
            .groups
            .iter()
            .filter(|(urn, g)| g.spec.is_some() && !desired.iter().any(|(u, _)| u == *urn))
            .map(|(urn, _)| urn)
            .collect();
        gone.sort();
        for urn in gone {
            report.removed.push(urn.clone());
            report.edges_detached += self.edge_difference(urn, None).1;
            plan.push((urn.clone(), None));
        }
        if dry_run {
            return Ok(report);
        }
        let mut done: Vec<Before> = Vec::with_capacity(plan.len());
        for (urn, target) in plan {
            let before = self.before(&urn);
            if let Err(e) = self.reconcile(dp, &urn, target) {
                tracing::warn!(
                    "apply: group {urn:?} could not be changed ({e}); putting back {} group(s)",
                    done.len() + 1
                );
                done.push(before);
                for b in done.into_iter().rev() {
                    let urn = b.urn.clone();
                    if let Err(again) = self.restore(dp, b) {
                        tracing::error!("apply: group {urn:?} could not be put back: {again}");
                    }
                }
                return Err(e.prefixed(&format!("group {urn:?}: nothing applied: ")));
            }
            done.push(before);
        }
        tracing::info!(
            "apply: {} created, {} changed, {} removed, {} unchanged ({} edges attached, {} \
             detached)",
            report.created.len(),
            report.changed.len(),
            report.removed.len(),
            report.unchanged.len(),
            report.edges_attached,
            report.edges_detached
        );
        Ok(report)
    }

    /// Puts the control plane's part of a group back as `b` recorded it.
    fn restore(&mut self, dp: &mut dyn Dataplane, b: Before) -> Result<(), PlaneError> {
        let Before { urn, spec, edges } = b;
        match spec {
            Some(mut spec) => {
                // Edges attached by CreateEdge were not in the spec; they come back too.
                for e in edges {
                    if !spec.edges.contains(&e) {
                        spec.edges.push(e);
                    }
                }
                self.reconcile(dp, &urn, Some(spec))
            }
            None => {
                // A group the control plane did not make, with edges it attached (CreateEdge).
                self.reconcile(dp, &urn, None)?;
                let Some(g) = self.groups.get(&urn) else {
                    return Ok(());
                };
                let size = g.payload_size;
                self.attach_edges(dp, &urn, None, &edges, size)?;
                Ok(())
            }
        }
    }

    /// The control plane's part of group `urn` now.
    fn before(&self, urn: &str) -> Before {
        let g = self.groups.get(urn);
        Before {
            urn: urn.to_owned(),
            spec: g.and_then(|g| g.spec.clone()),
            edges: g
                .map(|g| {
                    g.edges
                        .iter()
                        .filter(|e| e.configured && !e.by_agent)
                        .map(|e| e.config.clone())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Edges that reaching `target` would attach and detach in group `urn`.
    fn edge_difference(&self, urn: &str, target: Option<&Spec>) -> (u32, u32) {
        let Some(g) = self.groups.get(urn) else {
            return (target.map_or(0, |s| s.edges.len() as u32), 0);
        };
        let wanted: &[ConfigEdge] = target.map_or(&[], |s| &s.edges);
        if target.is_some_and(|s| needs_new_pool(g, &s.cfg)) {
            let had = g
                .edges
                .iter()
                .filter(|e| e.configured && !e.by_agent)
                .count() as u32;
            return (wanted.len() as u32, had);
        }
        let attach = wanted
            .iter()
            .filter(|w| {
                !g.edges
                    .iter()
                    .any(|e| e.configured && !e.by_agent && e.config == **w)
            })
            .count() as u32;
        let detach = g
            .edges
            .iter()
            .filter(|e| e.configured && !e.by_agent && !wanted.contains(&e.config))
            .count() as u32;
        (attach, detach)
    }

    /// Refuses a spec that cannot become group `urn` as it is now: other buffer sizes while SDK
    /// connections are in it, or more sources or sinks than a group can have once its SDK
    /// connections and the edges they named are counted.
    fn check_target(&self, urn: &str, spec: &Spec) -> Result<(), PlaneError> {
        let members: Vec<(ConnId, ConnKind)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.urn == urn)
            .map(|(&id, c)| (id, c.kind))
            .collect();
        let g = self.groups.get(urn);
        if let Some(g) = g
            && (!members.is_empty() || g.edges.iter().any(|e| e.by_agent))
            && needs_new_pool(g, &spec.cfg)
        {
            return Err(PlaneError::new(
                PlaneErrorKind::Conflict,
                format!(
                    "group {urn:?} has {} SDK connection(s) (or links the agent made) and carries {} payload bytes and {} \
                     metadata bytes per buffer in slots for {} frames per member; this spec \
                     asks for {}, {} and {} (allowed: the group's sizes and capacity while \
                     connections are in it)",
                    members.len(),
                    g.payload_size,
                    g.metadata_size,
                    g.quota,
                    spec.cfg.payload_size(),
                    spec.cfg.max_metadata_size(),
                    quota_of(&spec.cfg)
                ),
            ));
        }
        // The group's shape afterwards: its SDK members, the edges they named, and the spec's.
        let mut source: Option<String> = members
            .iter()
            .find(|(_, k)| *k == ConnKind::Tx)
            .map(|(id, _)| format!("a sender (connection {id})"));
        let sdk_sinks = members.iter().filter(|(_, k)| *k == ConnKind::Rx).count();
        let mut edges: Vec<(&ConfigEdge, String)> = Vec::new();
        if let Some(g) = g {
            for e in g
                .edges
                .iter()
                .filter(|e| !e.owners.is_empty() || e.by_agent)
            {
                edges.push((
                    &e.config,
                    format!("edge {} ({}), named by a connection", e.id, e.kind),
                ));
            }
        }
        for (i, e) in spec.edges.iter().enumerate() {
            if !edges.iter().any(|(x, _)| *x == e) {
                edges.push((e, format!("edges[{i}] ({})", e.as_str())));
            }
        }
        let mut sink_edges = 0usize;
        for (e, what) in &edges {
            match edge_role(e) {
                Role::Source => {
                    if let Some(src) = &source {
                        return Err(PlaneError::new(
                            PlaneErrorKind::Conflict,
                            format!(
                                "{what}: group {urn:?} would have two sources, this and {src} \
                                 (allowed: one source per group)"
                            ),
                        ));
                    }
                    source = Some(what.clone());
                }
                Role::Sink => sink_edges += 1,
            }
        }
        let limit = self.config.max_sinks_per_group as usize;
        if sdk_sinks + sink_edges > limit {
            return Err(PlaneError::new(
                PlaneErrorKind::Limit,
                format!(
                    "group {urn:?} would have {} sinks: {sdk_sinks} receivers and {sink_edges} \
                     network sink edges (limit sdk.max_sinks_per_group = {limit}, both together)",
                    sdk_sinks + sink_edges
                ),
            ));
        }
        if sink_edges > MAX_SINK_EDGES {
            return Err(PlaneError::new(
                PlaneErrorKind::Limit,
                format!(
                    "group {urn:?} would have {sink_edges} network sink edges (limit \
                     {MAX_SINK_EDGES})"
                ),
            ));
        }
        Ok(())
    }

    /// Brings the control plane's part of group `urn` to `target`: edges it no longer names
    /// are detached first (so a replacement source or port is free), then the group is made
    /// (or made again for other sizes) and the new edges attached. An error leaves the group
    /// as far as it got; [`apply`](Self::apply) puts it back.
    fn reconcile(
        &mut self,
        dp: &mut dyn Dataplane,
        urn: &str,
        target: Target,
    ) -> Result<(), PlaneError> {
        let renew = match (self.groups.get(urn), &target) {
            (Some(g), Some(spec)) => needs_new_pool(g, &spec.cfg),
            _ => false,
        };
        if let Some(g) = self.groups.get_mut(urn) {
            let keep: &[ConfigEdge] = match &target {
                Some(spec) if !renew => &spec.edges,
                _ => &[],
            };
            for i in (0..g.edges.len()).rev() {
                let e = &mut g.edges[i];
                if e.configured && !e.by_agent && !keep.contains(&e.config) {
                    e.configured = false;
                    if e.owners.is_empty() {
                        g.detach_edge(dp, i, urn);
                    }
                }
            }
            if target.is_none() || renew {
                g.spec = None;
            }
            self.destroy_if_empty(dp, urn);
        }
        let Some(spec) = target else {
            return Ok(());
        };
        let created = if self.groups.contains_key(urn) {
            None
        } else {
            Some(self.create_group_pool(dp, urn, &spec.cfg)?)
        };
        let result = self.attach_edges(dp, urn, None, &spec.edges, spec.cfg.payload_size());
        match result {
            Ok(_) => {
                let g = self.groups.get_mut(urn).expect("made above");
                g.spec = Some(spec);
                Ok(())
            }
            Err(e) => {
                if created.is_some() {
                    self.destroy_if_empty(dp, urn);
                }
                Err(e.into())
            }
        }
    }

    /// Every group (or only `urn`), sorted by URN, with its connections and edges.
    pub fn list(&self, urn: &str) -> Vec<pb::Group> {
        let mut urns: Vec<&String> = self
            .groups
            .keys()
            .filter(|u| urn.is_empty() || *u == urn)
            .collect();
        urns.sort();
        urns.into_iter()
            .map(|urn| {
                let g = &self.groups[urn];
                let mut conns: Vec<(&ConnId, &super::Conn)> =
                    self.conns.iter().filter(|(_, c)| c.urn == *urn).collect();
                conns.sort_by_key(|(id, _)| **id);
                pb::Group {
                    urn: urn.clone(),
                    id: g.id,
                    payload: describe_payload(&g.payload),
                    payload_size: g.payload_size,
                    metadata_size: g.metadata_size,
                    slots: g.pool.slot_count,
                    quota: g.quota,
                    configured: g.spec.is_some(),
                    config_json: g.spec.as_ref().map(|s| s.json.clone()).unwrap_or_default(),
                    connections: conns
                        .into_iter()
                        .map(|(&id, c)| {
                            let (frames, bytes, dropped) = c.counters.snapshot();
                            pb::Connection {
                                id,
                                direction: match c.kind {
                                    ConnKind::Tx => pb::Direction::DIRECTION_TX,
                                    ConnKind::Rx => pb::Direction::DIRECTION_RX,
                                }
                                .into(),
                                active: c.pending.is_none(),
                                session: c.session,
                                counters: Some(counters(frames, bytes, dropped)).into(),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    edges: g.edges.iter().map(edge_view).collect(),
                    source: g.source.unwrap_or(0),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// The SDP of ST 2110 tx edge `edge`, else of every one of group `urn`, else of every one.
    pub fn sdps(&self, edge: EdgeId, urn: &str) -> Result<Vec<pb::Sdp>, PlaneError> {
        let mut out = Vec::new();
        let mut found = false;
        let mut urns: Vec<&String> = self.groups.keys().collect();
        urns.sort();
        for u in urns {
            if edge == 0 && !urn.is_empty() && u != urn {
                continue;
            }
            for e in &self.groups[u].edges {
                if edge != 0 && e.id != edge {
                    continue;
                }
                found = true;
                if let Some((path, text)) = e.counters.sdp.get() {
                    out.push(pb::Sdp {
                        edge_id: e.id,
                        urn: u.clone(),
                        kind: e.kind.clone(),
                        path: path.clone(),
                        text: text.clone(),
                        ..Default::default()
                    });
                } else if edge != 0 {
                    return Err(PlaneError::new(
                        PlaneErrorKind::NotFound,
                        format!(
                            "edge {edge} ({}) has no SDP (allowed: an ST 2110 tx edge)",
                            e.kind
                        ),
                    ));
                }
            }
        }
        if edge != 0 && !found {
            return Err(PlaneError::new(
                PlaneErrorKind::NotFound,
                format!("no edge {edge}"),
            ));
        }
        if edge == 0 && !urn.is_empty() && !self.groups.contains_key(urn) {
            return Err(PlaneError::new(
                PlaneErrorKind::NotFound,
                format!("no group {urn:?}"),
            ));
        }
        Ok(out)
    }

    /// Every connection's and edge's counters now: (URN, id, kind, frames, bytes, drops).
    pub fn flows(&self) -> Vec<Flow> {
        let mut out: Vec<Flow> = Vec::new();
        for (&id, c) in &self.conns {
            let (frames, bytes, dropped) = c.counters.snapshot();
            out.push(Flow {
                urn: c.urn.clone(),
                id,
                kind: match c.kind {
                    ConnKind::Tx => "sdk tx",
                    ConnKind::Rx => "sdk rx",
                }
                .to_owned(),
                frames,
                bytes,
                dropped,
            });
        }
        for (urn, g) in &self.groups {
            for e in &g.edges {
                let get = crate::dataplane::EdgeCounters::get;
                out.push(Flow {
                    urn: urn.clone(),
                    id: e.id,
                    kind: e.kind.clone(),
                    frames: get(&e.counters.frames),
                    bytes: get(&e.counters.bytes),
                    dropped: get(&e.counters.frames_dropped),
                });
            }
        }
        out.sort_by_key(|f| f.id);
        out
    }
}

/// A connection's or edge's counters, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Its group.
    pub urn: String,
    /// Its id.
    pub id: u64,
    /// `sdk tx`, `sdk rx` or the edge's kind.
    pub kind: String,
    /// Frames through it.
    pub frames: u64,
    /// Payload bytes through it.
    pub bytes: u64,
    /// Frames it dropped.
    pub dropped: u64,
}

/// The per-member quota a group made for `cfg` has.
fn quota_of(cfg: &ConnectionConfig) -> u32 {
    cfg.buffer_queue_capacity().max(MIN_QUOTA)
}

/// Whether `cfg` needs another pool than group `g` has.
fn needs_new_pool(g: &super::Group, cfg: &ConnectionConfig) -> bool {
    g.payload_size != cfg.payload_size()
        || g.metadata_size != cfg.max_metadata_size()
        || g.payload != *cfg.payload()
        || g.quota != quota_of(cfg)
}

fn counters(frames: u64, bytes: u64, dropped: u64) -> pb::Counters {
    pb::Counters {
        frames,
        bytes,
        dropped,
        ..Default::default()
    }
}

fn edge_view(e: &super::NetEdge) -> pb::Edge {
    let named = e.counters.named();
    let get = |name: &str| {
        named
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    // Frames it dropped for want of room (the others it lost are in `details`).
    let dropped = get("frames_dropped");
    pb::Edge {
        id: e.id,
        direction: match e.role {
            Role::Sink => pb::Direction::DIRECTION_TX,
            Role::Source => pb::Direction::DIRECTION_RX,
        }
        .into(),
        kind: e.kind.clone(),
        config_json: e.config.to_json(),
        configured: e.configured,
        owners: e.owners.len() as u32,
        up: e.on_dataplane,
        last_failure: e
            .retry
            .as_ref()
            .filter(|_| !e.on_dataplane)
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
        counters: Some(counters(get("frames"), get("bytes"), dropped)).into(),
        listen_port: crate::dataplane::EdgeCounters::get(&e.counters.listen_port) as u32,
        by_agent: e.by_agent,
        details: named.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
        ..Default::default()
    }
}

/// What one frame of a group is, for listings, e.g. `video 1920x1080 yuv422p10le 60 fps`.
fn describe_payload(p: &mcm_proto::config::payload::Payload) -> String {
    use mcm_proto::config::payload::Payload;
    match p {
        Payload::Video(v) => format!(
            "video {}x{} {} {} fps",
            v.width,
            v.height,
            v.pixel_format.as_str(),
            v.fps
        ),
        Payload::Audio(a) => format!("audio {a:?}"),
        Payload::Ancillary(a) => format!("ancillary {a:?}"),
        Payload::Blob => "blob".to_owned(),
    }
}
