//! The control thread's side of the gRPC service: answers [`Call`]s against the registry and
//! the data plane, and feeds the metrics and health streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use futures::channel::mpsc;

use super::proto::{control as pb, health as hpb};
use super::{Call, GrpcServer, Reply, known_service};
use crate::dataplane::{Dataplane, LcoreCounters};
use crate::mesh::{Mesh, PlaneError, PlaneErrorKind};

/// Calls answered per wake-up before the loop serves its other work.
const CALLS_PER_TURN: usize = 64;

type Status = hpb::health_check_response::ServingStatus;

/// A metrics stream.
struct Watcher {
    out: mpsc::Sender<pb::Metrics>,
    interval: Duration,
    due: Instant,
    /// The previous sample's counters, for rates.
    flows: HashMap<u64, (u64, u64, u64)>,
    lcores: Vec<LcoreCounters>,
    at: Option<Instant>,
    /// Samples skipped because the client did not read them.
    skipped: u64,
}

/// The gRPC control plane as the control thread runs it.
pub struct ControlPlane {
    server: GrpcServer,
    calls: Receiver<Call>,
    /// What GetInfo answers, less what changes (filled at each call).
    info: pb::EngineInfo,
    started: Instant,
    watchers: Vec<Watcher>,
    health: Vec<(String, mpsc::Sender<hpb::HealthCheckResponse>)>,
    /// Calls refused for their token.
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("watchers", &self.watchers.len())
            .finish()
    }
}

/// What the control thread tells the plane about itself.
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    /// SDK sessions open.
    pub sessions: usize,
    /// The sessions' identities and refusals.
    pub access: &'a crate::access::Access,
}

impl ControlPlane {
    /// The plane over a started server and its call channel; `info` is the engine's static
    /// description.
    pub fn new(
        server: GrpcServer,
        calls: Receiver<Call>,
        mut info: pb::EngineInfo,
        refused: Arc<AtomicU64>,
    ) -> Self {
        info.grpc_addr = server.addr().to_string();
        info.api_version = 1;
        info.pid = std::process::id();
        Self {
            server,
            calls,
            info,
            started: Instant::now(),
            watchers: Vec::new(),
            health: Vec::new(),
            refused,
        }
    }

    /// What GetInfo says of the engine (its fixed part).
    pub fn info(&self) -> &pb::EngineInfo {
        &self.info
    }

    /// The address the service listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// Answers the calls waiting (at most a turn's worth); returns whether more wait.
    pub fn serve(&mut self, mesh: &mut Mesh, dp: &mut dyn Dataplane, now: Now) -> bool {
        for _ in 0..CALLS_PER_TURN {
            let Ok(call) = self.calls.try_recv() else {
                return false;
            };
            self.answer(call, mesh, dp, now);
        }
        !self.calls.is_empty()
    }

    fn answer(&mut self, call: Call, mesh: &mut Mesh, dp: &mut dyn Dataplane, now: Now) {
        match call {
            Call::Info(r) => {
                let mut info = self.info.clone();
                info.uptime_s = self.started.elapsed().as_secs();
                info.sessions = now.sessions as u32;
                info.connections = mesh.connections() as u32;
                info.groups = mesh.groups() as u32;
                // Relaxed: a counter read on its own.
                info.grpc_refused = self.refused.load(Ordering::Relaxed);
                info.grpc_tls_refused = super::corelog::tls_refused();
                sdk_info(&mut info, now.access, mesh);
                send(r, Ok(info));
            }
            Call::List(urn, r) => {
                let groups = mesh.list(&urn);
                let res = if groups.is_empty() && !urn.is_empty() {
                    Err(not_found(format!("no group {urn:?}")))
                } else {
                    Ok(pb::ListGroupsReply {
                        groups,
                        ..Default::default()
                    })
                };
                send(r, res);
            }
            Call::CreateGroup(json, r) => {
                let res = mesh
                    .create_group(dp, &json)
                    .map(|urn| pb::CreateGroupReply {
                        group: mesh.list(&urn).into_iter().next().into(),
                        ..Default::default()
                    });
                log_refusal("CreateGroup", &res);
                send(r, res);
            }
            Call::DeleteGroup(urn, r) => {
                let res = mesh
                    .delete_group(dp, &urn)
                    .map(|destroyed| pb::DeleteGroupReply {
                        destroyed,
                        ..Default::default()
                    });
                log_refusal("DeleteGroup", &res);
                send(r, res);
            }
            Call::CreateEdge(urn, json, r) => {
                let res =
                    mesh.create_edge(dp, &urn, &json)
                        .map(|(edge_id, port)| pb::CreateEdgeReply {
                            edge_id,
                            listen_port: u32::from(port),
                            ..Default::default()
                        });
                log_refusal("CreateEdge", &res);
                send(r, res);
            }
            Call::DeleteEdge(edge, r) => {
                let res = mesh
                    .detach_edge(dp, edge)
                    .map(|()| pb::DeleteEdgeReply::default())
                    .map_err(PlaneError::from);
                log_refusal("DeleteEdge", &res);
                send(r, res);
            }
            Call::Sdp(edge, urn, r) => {
                let res = mesh.sdps(edge, &urn).map(|sdps| pb::GetSdpReply {
                    sdps,
                    ..Default::default()
                });
                send(r, res);
            }
            Call::Apply(groups, dry_run, r) => {
                let res = mesh
                    .apply(dp, &groups, dry_run)
                    .map(|rep| pb::ApplyConfigReply {
                        created: rep.created,
                        changed: rep.changed,
                        removed: rep.removed,
                        unchanged: rep.unchanged,
                        edges_attached: rep.edges_attached,
                        edges_detached: rep.edges_detached,
                        ..Default::default()
                    });
                log_refusal("ApplyConfig", &res);
                send(r, res);
            }
            Call::WatchMetrics(interval, out) => {
                let due = Instant::now();
                self.watchers.push(Watcher {
                    out,
                    interval,
                    due,
                    flows: HashMap::new(),
                    lcores: Vec::new(),
                    at: None,
                    skipped: 0,
                });
            }
            Call::Health(service, r) => {
                let res = if known_service(&service) {
                    Ok(health(Status::SERVING))
                } else {
                    Err(not_found(format!(
                        "unknown service {service:?} (allowed: \"\", {:?})",
                        super::ENGINE_SERVICE
                    )))
                };
                send(r, res);
            }
            Call::Presence(r) => send(
                r,
                Ok(pb::EngineState {
                    groups: mesh.presence(),
                    ..Default::default()
                }),
            ),
            Call::SetSources(sources) => mesh.set_remote_sources(sources),
            Call::AgentAttach(urn, json, r) => {
                let res = mesh
                    .create_agent_edge(dp, &urn, &json)
                    .map(|(edge_id, port)| pb::CreateEdgeReply {
                        edge_id,
                        listen_port: u32::from(port),
                        ..Default::default()
                    });
                log_refusal("agent AttachEdge", &res);
                send(r, res);
            }
            Call::WatchHealth(service, mut out) => {
                let status = match known_service(&service) {
                    true => Status::SERVING,
                    false => Status::SERVICE_UNKNOWN,
                };
                if out.try_send(health(status)).is_ok() {
                    self.health.push((service, out));
                }
            }
        }
    }

    /// When the next metrics sample is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.watchers.iter().map(|w| w.due).min()
    }

    /// Sends the samples that are due; forgets streams whose client went.
    pub fn tick(&mut self, mesh: &Mesh, dp: &dyn Dataplane, now: Instant) {
        if self.watchers.iter().all(|w| w.due > now) {
            return;
        }
        // Health watchers whose client went are found here too.
        self.health.retain(|(_, out)| !out.is_closed());
        let flows = mesh.flows();
        let lcores = dp.counters();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.watchers.retain_mut(|w| {
            if w.due > now {
                return true;
            }
            w.due = now + w.interval;
            let sample = w.sample(&flows, &lcores, now, unix_ms);
            match w.out.try_send(sample) {
                Ok(()) => true,
                Err(e) if e.is_full() => {
                    w.skipped += 1;
                    true
                }
                Err(_) => {
                    tracing::debug!("metrics stream closed ({} samples skipped)", w.skipped);
                    false
                }
            }
        });
    }

    /// Tells health watchers the engine stops, then stops the server.
    pub fn stop(mut self) {
        for (_, out) in &mut self.health {
            let _ = out.try_send(health(Status::NOT_SERVING));
        }
        self.health.clear();
        self.watchers.clear();
        // Calls that were never answered are refused as UNAVAILABLE when their reply drops.
        while self.calls.try_recv().is_ok() {}
        self.server.shutdown();
    }
}

impl Watcher {
    fn sample(
        &mut self,
        flows: &[crate::mesh::Flow],
        lcores: &[LcoreCounters],
        now: Instant,
        unix_ms: u64,
    ) -> pb::Metrics {
        let secs = self.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let rate = |now: u64, before: Option<u64>| match before {
            Some(b) if secs > 0.0 => now.saturating_sub(b) as f64 / secs,
            _ => 0.0,
        };
        let mut out = pb::Metrics {
            unix_ms,
            elapsed_s: secs,
            ..Default::default()
        };
        let mut seen = HashMap::with_capacity(flows.len());
        for f in flows {
            let prev = self.flows.get(&f.id).copied();
            out.flows.push(pb::FlowMetrics {
                urn: f.urn.clone(),
                id: f.id,
                kind: f.kind.clone(),
                counters: Some(pb::Counters {
                    frames: f.frames,
                    bytes: f.bytes,
                    dropped: f.dropped,
                    ..Default::default()
                })
                .into(),
                frames_per_s: rate(f.frames, prev.map(|p| p.0)),
                bits_per_s: 8.0 * rate(f.bytes, prev.map(|p| p.1)),
                drops_per_s: rate(f.dropped, prev.map(|p| p.2)),
                ..Default::default()
            });
            seen.insert(f.id, (f.frames, f.bytes, f.dropped));
        }
        for c in lcores {
            let prev = self.lcores.iter().find(|p| p.cpu == c.cpu).copied();
            let (iters, busy, parks) = match prev {
                Some(p) => (
                    c.iterations.saturating_sub(p.iterations),
                    c.busy_iterations.saturating_sub(p.busy_iterations),
                    c.parks.saturating_sub(p.parks),
                ),
                None => (0, 0, 0),
            };
            out.lcores.push(pb::LcoreMetrics {
                cpu: c.cpu as u32,
                busy_ratio: if iters == 0 {
                    0.0
                } else {
                    busy as f64 / iters as f64
                },
                parks_per_s: if secs > 0.0 { parks as f64 / secs } else { 0.0 },
                iterations_per_s: if secs > 0.0 { iters as f64 / secs } else { 0.0 },
                ports: c.ports as u32,
                ..Default::default()
            });
        }
        self.flows = seen;
        self.lcores = lcores.to_vec();
        self.at = Some(now);
        out
    }
}

fn send<T>(reply: Reply<T>, res: Result<T, PlaneError>) {
    // The client may have gone; nothing waits for the answer then.
    let _ = reply.send(res);
}

fn not_found(message: String) -> PlaneError {
    PlaneError {
        kind: PlaneErrorKind::NotFound,
        message,
    }
}

fn health(status: Status) -> hpb::HealthCheckResponse {
    hpb::HealthCheckResponse {
        status: status.into(),
        ..Default::default()
    }
}

/// The SDK's refusals, quotas and identities in `info`.
fn sdk_info(info: &mut pb::EngineInfo, access: &crate::access::Access, mesh: &Mesh) {
    let k = access.counters();
    info.sdk_refused_token = k.token;
    info.sdk_refused_peer = k.peer;
    info.sdk_refused_quota = k.quota;
    info.sdk_keepalive_timeouts = k.keepalive;
    info.sdk_idle_closed = k.idle;
    info.sdk_slow_frames = k.slow_frame;
    info.sdk_unactivated = k.unactivated;
    let q = access.config().quotas;
    info.max_sessions_per_identity = q.sessions as u32;
    info.max_connections_per_identity = q.connections as u32;
    info.max_groups_per_identity = q.groups as u32;
    info.identities = access
        .uses()
        .into_iter()
        .map(|u| {
            let (connections, groups) = mesh.held_by_identity(&access.sessions_of(&u.identity));
            pb::SdkIdentity {
                name: u.identity.to_string(),
                sessions: u.sessions as u32,
                connections: connections as u32,
                groups: groups as u32,
                refused: u.refused,
                ..Default::default()
            }
        })
        .collect();
}

/// Logs a refused change (each is a request an operator made; not a flood to rate-limit).
fn log_refusal<T>(what: &str, res: &Result<T, PlaneError>) {
    if let Err(e) = res {
        tracing::warn!("gRPC {what} refused: {e}");
    }
}
