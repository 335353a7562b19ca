//! The gRPC control plane (`mcm.control.v1`, proto/proto/control.proto) and the standard health
//! service (`grpc.health.v1`) on `grpc.addr`.
//!
//! The handlers run on grpcio's completion-queue threads and own no engine state: each request
//! becomes a [`Call`] sent over a channel to the control thread (which is woken through its mio
//! waker), and the answer comes back on a oneshot channel that the handler's future awaits, so
//! no grpcio thread ever blocks on the control thread. Streams (metrics, health watches) are
//! bounded channels the control thread fills without blocking; a client too slow to read misses
//! samples, it never holds the control thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{
    RpcContext, RpcStatus, RpcStatusCode, Server, ServerBuilder, ServerStreamingSink, UnarySink,
    WriteFlags,
};

use std::sync::atomic::AtomicU64;

use crate::dataplane::Notifier;
use crate::mesh::{PlaneError, PlaneErrorKind};
use crate::security::{ServerSecurity, TokenChecker};

/// Messages and grpcio stubs generated from `control.proto` and `health.proto` by the build
/// script.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    renamed_and_removed_lints
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/control/mod.rs"));
}

pub mod corelog;
pub mod serve;

use proto::control as pb;
use proto::health as hpb;

/// The engine service's full name, as health checks name it.
pub const ENGINE_SERVICE: &str = "mcm.control.v1.Engine";
/// Requests waiting for the control thread, at most; more are refused as UNAVAILABLE.
pub const CALL_QUEUE: usize = 256;
/// Samples a metrics stream buffers for a slow client; further ones are skipped.
pub const STREAM_BUFFER: usize = 4;
/// Shortest interval between two metrics samples.
pub const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);

/// How long calls in flight may take to finish at shutdown before they are cancelled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Where an answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, PlaneError>>;

/// A request for the control thread.
#[derive(Debug)]
pub enum Call {
    /// GetInfo.
    Info(Reply<pb::EngineInfo>),
    /// ListGroups: every group, or the one named.
    List(String, Reply<pb::ListGroupsReply>),
    /// CreateGroup from a group spec.
    CreateGroup(String, Reply<pb::CreateGroupReply>),
    /// DeleteGroup.
    DeleteGroup(String, Reply<pb::DeleteGroupReply>),
    /// CreateEdge: a group and an edge spec.
    CreateEdge(String, String, Reply<pb::CreateEdgeReply>),
    /// DeleteEdge.
    DeleteEdge(u64, Reply<pb::DeleteEdgeReply>),
    /// GetSdp: an edge, or a group, or all.
    Sdp(u64, String, Reply<pb::GetSdpReply>),
    /// ApplyConfig: group specs, dry run.
    Apply(Vec<String>, bool, Reply<pb::ApplyConfigReply>),
    /// WatchMetrics: a sample every interval into the sender.
    WatchMetrics(Duration, mpsc::Sender<pb::Metrics>),
    /// Health Check of a service name (empty: the server).
    Health(String, Reply<hpb::HealthCheckResponse>),
    /// Health Watch: the status now, then changes.
    WatchHealth(String, mpsc::Sender<hpb::HealthCheckResponse>),
    /// The agent client: the engine's groups as the agent sees them.
    Presence(Reply<pb::EngineState>),
    /// The agent client: which groups have their source on another engine.
    SetSources(std::collections::HashMap<String, String>),
    /// The agent client: attach an edge for the agent (group, edge spec).
    AgentAttach(String, String, Reply<pb::CreateEdgeReply>),
}

/// A handle that sends [`Call`]s to the control thread and awaits their answers; cheap to
/// clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct Caller {
    tx: Sender<Call>,
    notifier: Notifier,
}

/// A channel of calls to the control thread: the handle for callers, the receiving end for it.
pub fn channel(notifier: Notifier) -> (Caller, Receiver<Call>) {
    let (tx, rx) = crossbeam_channel::bounded(CALL_QUEUE);
    (Caller { tx, notifier }, rx)
}

impl Caller {
    /// Queues `call` for the control thread without blocking.
    pub fn send(&self, call: Call) -> Result<(), RpcStatus> {
        match self.tx.try_send(call) {
            Ok(()) => {
                self.notifier.notify();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(RpcStatus::with_message(
                RpcStatusCode::UNAVAILABLE,
                format!("the engine's control thread has {CALL_QUEUE} requests waiting; retry"),
            )),
            Err(TrySendError::Disconnected(_)) => Err(stopping()),
        }
    }

    /// Sends the call `make` builds and awaits its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Call) -> Result<T, PlaneError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply)).map_err(|s| PlaneError {
            kind: PlaneErrorKind::Internal,
            message: s.message().to_owned(),
        })?;
        answer.await.unwrap_or_else(|_| {
            Err(PlaneError {
                kind: PlaneErrorKind::Internal,
                message: "the engine is stopping".to_owned(),
            })
        })
    }
}

/// Why the gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// grpcio refused to build the server.
    #[error("grpc.addr: cannot build the gRPC server: {0}")]
    Build(grpcio::Error),
    /// The address could not be bound.
    #[error(
        "grpc.addr: cannot listen on {0} (allowed: an IP address of this host and a free port, \
         e.g. 127.0.0.1:8001; with TLS, a certificate and key that belong together)"
    )]
    Bind(SocketAddr),
    /// A TLS or token file could not be read.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
}

/// The running gRPC server; stopped by [`GrpcServer::shutdown`] or when dropped.
pub struct GrpcServer {
    server: Server,
    addr: SocketAddr,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl GrpcServer {
    /// Starts the engine and health services on `addr`; requests go to the control thread
    /// through `caller`.
    pub fn start(
        addr: SocketAddr,
        caller: Caller,
        security: &ServerSecurity,
        refused: Arc<AtomicU64>,
    ) -> Result<Self, GrpcError> {
        let front = Front { caller };
        let creds = security.credentials("grpc").map_err(GrpcError::Security)?;
        let env = Arc::new(
            grpcio::EnvBuilder::new()
                .cq_count(1)
                .name_prefix("mcm-grpc")
                .build(),
        );
        let mut builder = ServerBuilder::new(env)
            .register_service(proto::control_grpc::create_engine(front.clone()))
            .register_service(proto::health_grpc::create_health(front));
        if let Some(token) = &security.token {
            builder = builder.add_checker(TokenChecker::new(token, refused, "gRPC"));
        }
        let mut server = builder.build().map_err(GrpcError::Build)?;
        let port = server
            .add_listening_port(addr.to_string(), creds)
            .map_err(|_| GrpcError::Bind(addr))?;
        server.start();
        let addr = SocketAddr::new(addr.ip(), port);
        Ok(Self { server, addr })
    }

    /// The bound address (resolves port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting calls and lets those in flight finish (streams end once the control
    /// thread has dropped their senders), cancelling what is left after [`SHUTDOWN_GRACE`].
    pub fn shutdown(mut self) {
        let done = self.server.shutdown();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name("mcm-grpc-stop".into())
            .spawn(move || {
                let _ = futures::executor::block_on(done);
                let _ = tx.send(());
            });
        if waiter.is_err() || rx.recv_timeout(SHUTDOWN_GRACE).is_err() {
            self.server.cancel_all_calls();
            let _ = rx.recv_timeout(SHUTDOWN_GRACE);
        }
    }
}

/// The handlers' side: forwards each request to the control thread.
#[derive(Clone)]
struct Front {
    caller: Caller,
}

impl Front {
    fn forward(&self, call: Call) -> Result<(), RpcStatus> {
        self.caller.send(call)
    }

    /// Forwards a unary request made by `make` and answers `sink` when the control thread has.
    fn unary<T: Send + 'static>(
        &self,
        ctx: &RpcContext<'_>,
        sink: UnarySink<T>,
        make: impl FnOnce(Reply<T>) -> Call,
    ) {
        let (reply, answer) = oneshot::channel();
        if let Err(status) = self.forward(make(reply)) {
            ctx.spawn(async move {
                let _ = sink.fail(status).await;
            });
            return;
        }
        ctx.spawn(async move {
            let _ = match answer.await {
                Ok(Ok(value)) => sink.success(value).await,
                Ok(Err(e)) => sink.fail(status_of(&e)).await,
                Err(oneshot::Canceled) => sink.fail(stopping()).await,
            };
        });
    }

    /// Forwards a streaming request made by `make` and streams what the control thread sends
    /// until it stops or the client goes.
    fn stream<T: Send + 'static>(
        &self,
        ctx: &RpcContext<'_>,
        mut sink: ServerStreamingSink<T>,
        make: impl FnOnce(mpsc::Sender<T>) -> Call,
    ) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        if let Err(status) = self.forward(make(tx)) {
            ctx.spawn(async move {
                let _ = sink.fail(status).await;
            });
            return;
        }
        ctx.spawn(async move {
            let mut items = rx.map(|m| Ok((m, WriteFlags::default())));
            if sink.send_all(&mut items).await.is_ok() {
                let _ = sink.close().await;
            }
        });
    }
}

impl proto::control_grpc::Engine for Front {
    fn get_info(
        &mut self,
        ctx: RpcContext,
        _: pb::GetInfoRequest,
        sink: UnarySink<pb::EngineInfo>,
    ) {
        self.unary(&ctx, sink, Call::Info);
    }

    fn list_groups(
        &mut self,
        ctx: RpcContext,
        req: pb::ListGroupsRequest,
        sink: UnarySink<pb::ListGroupsReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::List(req.urn, r));
    }

    fn create_group(
        &mut self,
        ctx: RpcContext,
        req: pb::CreateGroupRequest,
        sink: UnarySink<pb::CreateGroupReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::CreateGroup(req.config_json, r));
    }

    fn delete_group(
        &mut self,
        ctx: RpcContext,
        req: pb::DeleteGroupRequest,
        sink: UnarySink<pb::DeleteGroupReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::DeleteGroup(req.urn, r));
    }

    fn create_edge(
        &mut self,
        ctx: RpcContext,
        req: pb::CreateEdgeRequest,
        sink: UnarySink<pb::CreateEdgeReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::CreateEdge(req.urn, req.edge_json, r));
    }

    fn delete_edge(
        &mut self,
        ctx: RpcContext,
        req: pb::DeleteEdgeRequest,
        sink: UnarySink<pb::DeleteEdgeReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::DeleteEdge(req.edge_id, r));
    }

    fn get_sdp(
        &mut self,
        ctx: RpcContext,
        req: pb::GetSdpRequest,
        sink: UnarySink<pb::GetSdpReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::Sdp(req.edge_id, req.urn, r));
    }

    fn apply_config(
        &mut self,
        ctx: RpcContext,
        req: pb::ApplyConfigRequest,
        sink: UnarySink<pb::ApplyConfigReply>,
    ) {
        self.unary(&ctx, sink, |r| Call::Apply(req.groups, req.dry_run, r));
    }

    fn watch_metrics(
        &mut self,
        ctx: RpcContext,
        req: pb::WatchMetricsRequest,
        sink: ServerStreamingSink<pb::Metrics>,
    ) {
        let interval = match req.interval_ms {
            0 => Duration::from_secs(1),
            ms => Duration::from_millis(u64::from(ms)).max(MIN_METRICS_INTERVAL),
        };
        self.stream(&ctx, sink, |tx| Call::WatchMetrics(interval, tx));
    }
}

impl proto::health_grpc::Health for Front {
    fn check(
        &mut self,
        ctx: RpcContext,
        req: hpb::HealthCheckRequest,
        sink: UnarySink<hpb::HealthCheckResponse>,
    ) {
        self.unary(&ctx, sink, |r| Call::Health(req.service, r));
    }

    fn watch(
        &mut self,
        ctx: RpcContext,
        req: hpb::HealthCheckRequest,
        sink: ServerStreamingSink<hpb::HealthCheckResponse>,
    ) {
        self.stream(&ctx, sink, |tx| Call::WatchHealth(req.service, tx));
    }
}

/// The status of a stopping engine.
fn stopping() -> RpcStatus {
    RpcStatus::with_message(
        RpcStatusCode::UNAVAILABLE,
        "the engine is stopping".to_owned(),
    )
}

/// The gRPC status of a refusal.
pub fn status_of(e: &PlaneError) -> RpcStatus {
    let code = match e.kind {
        PlaneErrorKind::Invalid => RpcStatusCode::INVALID_ARGUMENT,
        PlaneErrorKind::NotFound => RpcStatusCode::NOT_FOUND,
        PlaneErrorKind::AlreadyExists => RpcStatusCode::ALREADY_EXISTS,
        PlaneErrorKind::Conflict => RpcStatusCode::FAILED_PRECONDITION,
        PlaneErrorKind::Limit => RpcStatusCode::RESOURCE_EXHAUSTED,
        PlaneErrorKind::Internal => RpcStatusCode::INTERNAL,
    };
    RpcStatus::with_message(code, e.message.clone())
}

/// Whether a health check may name `service`: the server (empty) or the engine service.
pub fn known_service(service: &str) -> bool {
    service.is_empty() || service == ENGINE_SERVICE || service == "grpc.health.v1.Health"
}
