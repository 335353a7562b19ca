//! `mcm-ctl`: the command line of an engine's control plane (`mcm.control.v1` on `grpc.addr`).
//!
//! Readable tables by default, `--json` for scripts (protobuf's JSON mapping of the answer).
//! Exit codes: 0 done; 1 the engine refused the request (its reason on stderr); 2 a bad command
//! line or input file; 3 the engine could not be reached in time.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt as _;
use std::path::PathBuf;

use grpcio::{EnvBuilder, RpcStatusCode};
use mcm_control::grpc::proto::control::{self as pb, Direction};
use mcm_control::grpc::proto::control_grpc::{AgentClient, EngineClient};
use mcm_control::grpc::proto::health::{HealthCheckRequest, health_check_response::ServingStatus};
use mcm_control::grpc::proto::health_grpc::HealthClient;
use mcm_control::security::{ClientSecurity, read_token};
use protobuf::MessageFull;

const AFTER_HELP: &str = "Exit codes: 0 done; 1 the engine refused the request (the reason is \
printed); 2 a bad command line or input file; 3 the engine could not be reached in time.

A group spec is an MCM connection JSON with connection.multipointGroup {\"urn\", \"edges\"};
an edge spec is one entry of edges, e.g. {\"st2110\": {\"direction\": \"tx\", \"ipAddr\": \
\"239.1.1.1\", \"port\": 5004}}. An apply file is {\"groups\": [<group spec>, ...]}.";

/// Talks to an mcm engine's control plane.
#[derive(Debug, Parser)]
#[command(name = "mcm-ctl", version, after_help = AFTER_HELP)]
struct Cli {
    /// The engine's gRPC address (its grpc.addr).
    #[arg(short, long, global = true, default_value = "127.0.0.1:8001")]
    engine: String,
    /// The agent's address (for `engines`).
    #[arg(long, global = true, default_value = "127.0.0.1:50051")]
    agent: String,
    /// Print the answer as JSON (protobuf's JSON mapping) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// CA that signed the engine's (and agent's) certificate: connect over TLS.
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a server that requires mutual TLS.
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Key of --tls-cert (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A file whose first line is the server's bearer token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// What the engine is: version, addresses, lcores, transports, limits.
    Info,
    /// Whether the engine serves (grpc.health.v1); exit 1 when it does not.
    Health,
    /// Groups: URN, payload, members, edges.
    Groups {
        /// Only this group.
        urn: Option<String>,
    },
    /// The agent's engines and the links it made between them (asks the agent, --agent).
    Engines,
    /// SDK connections of every group, with their counters.
    Connections,
    /// Network edges of every group (ST 2110 sessions, RDMA links), with their counters.
    Edges,
    /// Live metrics: one table per sample.
    Watch {
        /// Between two samples, in milliseconds (at least 100).
        #[arg(long, default_value_t = 1000)]
        interval_ms: u32,
        /// Stop after this many samples (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Makes the control plane's groups exactly those of FILE ("-": standard input).
    Apply {
        /// A JSON file {"groups": [<group spec>, ...]}.
        file: String,
        /// Report what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// SDPs of ST 2110 tx edges: one edge, a group's, or all.
    Sdp {
        /// One edge.
        #[arg(long, conflicts_with = "group")]
        edge: Option<u64>,
        /// Every one of a group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Makes a group from a group spec (a file, or "-" for standard input).
    CreateGroup {
        /// The group spec file.
        file: String,
    },
    /// Lets go of a group the control plane made.
    DeleteGroup {
        /// The group.
        urn: String,
    },
    /// Attaches an edge (a JSON spec) to a group.
    CreateEdge {
        /// The group.
        urn: String,
        /// The edge spec, e.g. '{"st2110": {"direction": "tx", "ipAddr": "239.1.1.1", "port": 5004}}'.
        edge: String,
    },
    /// Detaches an edge the control plane attached.
    DeleteEdge {
        /// The edge's id (see `mcm-ctl edges`).
        id: u64,
    },
}

/// How a command failed, and the exit code it gives.
enum Failure {
    /// The engine refused: exit 1.
    Refused(String),
    /// Bad input: exit 2.
    Input(String),
    /// The engine could not be reached: exit 3.
    Unreachable(String),
}

impl Failure {
    fn from_grpc(e: grpcio::Error, engine: &str) -> Self {
        match e {
            grpcio::Error::RpcFailure(s)
                if matches!(
                    s.code(),
                    RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED
                ) =>
            {
                Self::Unreachable(format!("engine at {engine}: {}", status_text(&s)))
            }
            grpcio::Error::RpcFailure(s) => Self::Refused(status_text(&s)),
            other => Self::Unreachable(format!("engine at {engine}: {other}")),
        }
    }
}

fn status_text(s: &grpcio::RpcStatus) -> String {
    let code = format!("{:?}", s.code());
    if s.message().is_empty() {
        code
    } else {
        format!("{} ({code})", s.message())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(m)) => {
            eprintln!("mcm-ctl: refused: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Input(m)) => {
            eprintln!("mcm-ctl: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("mcm-ctl: cannot reach the engine: {m}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("mcm-ctl").build());
    let token = match &cli.token_file {
        Some(p) => Some(read_token("--token-file", p).map_err(|e| Failure::Input(e.to_string()))?),
        None => None,
    };
    let security = ClientSecurity {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone().zip(cli.tls_key.clone()),
        token,
    };
    let input = |e: mcm_control::security::SecurityError| Failure::Input(e.to_string());
    let ch = security
        .channel(env.clone(), &cli.engine, "--engine")
        .map_err(input)?;
    let engine = EngineClient::new(ch.clone());
    let opt = || {
        security
            .call_option()
            .timeout(Duration::from_millis(cli.timeout_ms))
    };
    let grpc = |e: grpcio::Error| Failure::from_grpc(e, &cli.engine);
    match &cli.command {
        Cmd::Info => {
            let info = engine
                .get_info_opt(&pb::GetInfoRequest::default(), opt())
                .map_err(grpc)?;
            emit(cli, &info, info_text)
        }
        Cmd::Health => {
            let health = HealthClient::new(ch);
            let r = health
                .check_opt(&HealthCheckRequest::default(), opt())
                .map_err(grpc)?;
            let status = r.status.enum_value_or_default();
            emit(cli, &r, |_| format!("{status:?}\n"))?;
            match status {
                ServingStatus::SERVING => Ok(()),
                other => Err(Failure::Refused(format!("the engine is {other:?}"))),
            }
        }
        Cmd::Groups { urn } => {
            let req = pb::ListGroupsRequest {
                urn: urn.clone().unwrap_or_default(),
                ..Default::default()
            };
            let r = engine.list_groups_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| groups_table(&r.groups))
        }
        Cmd::Engines => {
            let ch = security
                .channel(env, &cli.agent, "--agent")
                .map_err(input)?;
            let agent = AgentClient::new(ch);
            let r = agent
                .list_engines_opt(&pb::ListEnginesRequest::default(), opt())
                .map_err(|e| Failure::from_grpc(e, &cli.agent))?;
            emit(cli, &r, engines_text)
        }
        Cmd::Connections => {
            let r = engine
                .list_groups_opt(&pb::ListGroupsRequest::default(), opt())
                .map_err(grpc)?;
            emit(cli, &r, |r| connections_table(&r.groups))
        }
        Cmd::Edges => {
            let r = engine
                .list_groups_opt(&pb::ListGroupsRequest::default(), opt())
                .map_err(grpc)?;
            emit(cli, &r, |r| edges_table(&r.groups))
        }
        Cmd::Watch { interval_ms, count } => {
            let req = pb::WatchMetricsRequest {
                interval_ms: *interval_ms,
                ..Default::default()
            };
            let mut stream = engine
                .watch_metrics_opt(&req, security.call_option())
                .map_err(grpc)?;
            let mut n = 0u64;
            while *count == 0 || n < *count {
                match futures::executor::block_on(stream.next()) {
                    Some(Ok(m)) => emit(cli, &m, metrics_table)?,
                    Some(Err(e)) => return Err(grpc(e)),
                    None => return Err(Failure::Unreachable("the engine ended the stream".into())),
                }
                n += 1;
            }
            Ok(())
        }
        Cmd::Apply { file, dry_run } => {
            let groups = read_apply_file(file)?;
            let req = pb::ApplyConfigRequest {
                groups,
                dry_run: *dry_run,
                ..Default::default()
            };
            let r = engine.apply_config_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| apply_text(r, *dry_run))
        }
        Cmd::Sdp { edge, group } => {
            let req = pb::GetSdpRequest {
                edge_id: edge.unwrap_or(0),
                urn: group.clone().unwrap_or_default(),
                ..Default::default()
            };
            let r = engine.get_sdp_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| {
                let mut out = String::new();
                for s in &r.sdps {
                    if r.sdps.len() > 1 {
                        let _ = writeln!(
                            out,
                            "# edge {} ({}) of {:?}: {}",
                            s.edge_id, s.kind, s.urn, s.path
                        );
                    }
                    out.push_str(&s.text);
                }
                out
            })
        }
        Cmd::CreateGroup { file } => {
            let req = pb::CreateGroupRequest {
                config_json: read_input(file)?,
                ..Default::default()
            };
            let r = engine.create_group_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| {
                groups_table(
                    r.group
                        .as_ref()
                        .map(std::slice::from_ref)
                        .unwrap_or_default(),
                )
            })
        }
        Cmd::DeleteGroup { urn } => {
            let req = pb::DeleteGroupRequest {
                urn: urn.clone(),
                ..Default::default()
            };
            let r = engine.delete_group_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| match r.destroyed {
                true => format!("group {urn:?} deleted\n"),
                false => {
                    format!("group {urn:?} released; it stays while SDK connections are in it\n")
                }
            })
        }
        Cmd::CreateEdge { urn, edge } => {
            let req = pb::CreateEdgeRequest {
                urn: urn.clone(),
                edge_json: edge.clone(),
                ..Default::default()
            };
            let r = engine.create_edge_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |r| {
                format!("edge {} attached to {urn:?}\n", r.edge_id)
            })
        }
        Cmd::DeleteEdge { id } => {
            let req = pb::DeleteEdgeRequest {
                edge_id: *id,
                ..Default::default()
            };
            let r = engine.delete_edge_opt(&req, opt()).map_err(grpc)?;
            emit(cli, &r, |_| format!("edge {id} detached\n"))
        }
    }
}

/// Prints `msg` as JSON (one line) or as `text` renders it.
fn emit<M: MessageFull>(
    cli: &Cli,
    msg: &M,
    text: impl FnOnce(&M) -> String,
) -> Result<(), Failure> {
    if cli.json {
        let s = protobuf_json_mapping::print_to_string(msg)
            .map_err(|e| Failure::Input(format!("cannot print the answer as JSON: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", text(msg));
    }
    Ok(())
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &str) -> Result<String, Failure> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Failure::Input(format!("standard input: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| Failure::Input(format!("{path}: {e}")))
}

/// The group specs of an apply file: `{"groups": [<spec>, ...]}`.
fn read_apply_file(path: &str) -> Result<Vec<String>, Failure> {
    let text = read_input(path)?;
    let bad = |what: String| Failure::Input(format!("{path}: {what}"));
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("expected an object {\"groups\": [...]}".into()));
    };
    if let Some(k) = obj.keys().find(|k| *k != "groups") {
        return Err(bad(format!("unknown key {k:?} (allowed: \"groups\")")));
    }
    let Some(groups) = obj.get("groups").and_then(|g| g.as_array()) else {
        return Err(bad("\"groups\" is required: an array of group specs".into()));
    };
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| match g {
            serde_json::Value::Object(_) => Ok(g.to_string()),
            _ => Err(bad(format!(
                "groups[{i}]: expected an object (a group spec)"
            ))),
        })
        .collect()
}

/// Rows as columns padded to their widest cell, with a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            l.push_str(c);
            if i + 1 < widths.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

fn dir(d: protobuf::EnumOrUnknown<Direction>) -> &'static str {
    match d.enum_value() {
        Ok(Direction::DIRECTION_TX) => "tx",
        Ok(Direction::DIRECTION_RX) => "rx",
        _ => "?",
    }
}

fn info_text(i: &pb::EngineInfo) -> String {
    let lcores: Vec<String> = i.lcores.iter().map(ToString::to_string).collect();
    let rows = [
        ("version", format!("{} (api v{})", i.version, i.api_version)),
        ("pid", i.pid.to_string()),
        ("uptime", format!("{} s", i.uptime_s)),
        ("sdk tcp", i.sdk_tcp.clone()),
        ("sdk unix", i.sdk_unix.clone()),
        ("grpc", i.grpc_addr.clone()),
        (
            "lcores",
            format!("{} ({})", lcores.join(","), i.idle_policy),
        ),
        ("huge pages", i.huge_pages.clone()),
        ("transports", i.transports.join(", ")),
        (
            "st2110",
            format!("{} on {}", i.st2110_backend, i.st2110_local_ip),
        ),
        (
            "rdma",
            format!(
                "{} ports {}-{}, providers {}",
                i.rdma_ip,
                i.rdma_port_first,
                i.rdma_port_last,
                if i.rdma_providers.is_empty() {
                    "none".to_owned()
                } else {
                    i.rdma_providers.join(", ")
                }
            ),
        ),
        (
            "limits",
            format!(
                "{} sessions, {} sinks per group",
                i.max_sessions, i.max_sinks_per_group
            ),
        ),
        (
            "now",
            format!(
                "{} sessions, {} connections, {} groups",
                i.sessions, i.connections, i.groups
            ),
        ),
        ("grpc auth", i.grpc_security.clone()),
        ("sdk auth", i.sdk_security.clone()),
        (
            "quotas",
            format!(
                "per identity: {} sessions, {} connections, {} groups; keepalive timeout {}",
                i.max_sessions_per_identity,
                i.max_connections_per_identity,
                i.max_groups_per_identity,
                match i.sdk_keepalive_timeout_ms {
                    0 => "off".to_owned(),
                    ms => format!("{ms} ms"),
                }
            ),
        ),
        (
            "refused",
            format!(
                "grpc tls {}, grpc token {}, sdk token {}, unix peer {}, quota {}; keepalive \
                 timeouts {}",
                i.grpc_tls_refused,
                i.grpc_refused,
                i.sdk_refused_token,
                i.sdk_refused_peer,
                i.sdk_refused_quota,
                i.sdk_keepalive_timeouts
            ),
        ),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<11} {v}");
    }
    for id in &i.identities {
        let _ = writeln!(
            out,
            "{:<11} {}: {} sessions, {} connections, {} groups, {} refused",
            "identity", id.name, id.sessions, id.connections, id.groups, id.refused
        );
    }
    out
}

fn groups_table(groups: &[pb::Group]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let senders = g
                .connections
                .iter()
                .filter(|c| c.direction.enum_value() == Ok(Direction::DIRECTION_TX))
                .count();
            vec![
                g.urn.clone(),
                g.id.to_string(),
                g.payload.clone(),
                format!("{}x{}", g.slots, g.payload_size),
                senders.to_string(),
                (g.connections.len() - senders).to_string(),
                g.edges.len().to_string(),
                if g.configured { "control plane" } else { "sdk" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "URN",
            "ID",
            "PAYLOAD",
            "SLOTS",
            "SENDERS",
            "RECEIVERS",
            "EDGES",
            "MADE BY",
        ],
        &rows,
    )
}

fn engines_text(r: &pb::ListEnginesReply) -> String {
    let engines: Vec<Vec<String>> = r
        .engines
        .iter()
        .map(|e| {
            let groups: Vec<String> = e
                .groups
                .iter()
                .map(|g| format!("{} ({} tx, {} rx)", g.urn, g.senders, g.receivers))
                .collect();
            vec![
                e.name.clone(),
                e.grpc_addr.clone(),
                e.rdma_ip.clone(),
                format!("{} ms", e.last_seen_ms),
                groups.join(", "),
            ]
        })
        .collect();
    let links: Vec<Vec<String>> = r
        .links
        .iter()
        .map(|l| {
            vec![
                l.urn.clone(),
                l.from.clone(),
                l.to.clone(),
                l.tx_edge.to_string(),
                l.rx_edge.to_string(),
                l.state.clone(),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table(&["ENGINE", "GRPC", "RDMA", "LAST SEEN", "GROUPS"], &engines),
        table(
            &["GROUP", "FROM", "TO", "TX EDGE", "RX EDGE", "STATE"],
            &links
        )
    )
}

fn connections_table(groups: &[pb::Group]) -> String {
    let mut rows = Vec::new();
    for g in groups {
        for c in &g.connections {
            rows.push(vec![
                c.id.to_string(),
                g.urn.clone(),
                dir(c.direction).to_owned(),
                c.session.to_string(),
                if c.active { "yes" } else { "no" }.to_owned(),
                c.counters.frames.to_string(),
                c.counters.bytes.to_string(),
                c.counters.dropped.to_string(),
            ]);
        }
    }
    table(
        &[
            "ID", "GROUP", "DIR", "SESSION", "ACTIVE", "FRAMES", "BYTES", "DROPPED",
        ],
        &rows,
    )
}

fn edges_table(groups: &[pb::Group]) -> String {
    let mut rows = Vec::new();
    for g in groups {
        for e in &g.edges {
            let state = match (e.up, e.last_failure.is_empty()) {
                (true, _) => "up".to_owned(),
                (false, true) => "down".to_owned(),
                (false, false) => format!("down: {}", e.last_failure),
            };
            rows.push(vec![
                e.id.to_string(),
                g.urn.clone(),
                e.kind.clone(),
                if e.configured { "control plane" } else { "sdk" }.to_owned(),
                state,
                e.counters.frames.to_string(),
                e.counters.bytes.to_string(),
                e.counters.dropped.to_string(),
            ]);
        }
    }
    table(
        &[
            "ID", "GROUP", "KIND", "MADE BY", "STATE", "FRAMES", "BYTES", "DROPPED",
        ],
        &rows,
    )
}

fn metrics_table(m: &pb::Metrics) -> String {
    let flows: Vec<Vec<String>> = m
        .flows
        .iter()
        .map(|f| {
            vec![
                f.urn.clone(),
                f.id.to_string(),
                f.kind.clone(),
                f.counters.frames.to_string(),
                format!("{:.1}", f.frames_per_s),
                format!("{:.1}", f.bits_per_s / 1e6),
                f.counters.dropped.to_string(),
                format!("{:.1}", f.drops_per_s),
            ]
        })
        .collect();
    let lcores: Vec<Vec<String>> = m
        .lcores
        .iter()
        .map(|l| {
            vec![
                l.cpu.to_string(),
                format!("{:.1}", 100.0 * l.busy_ratio),
                format!("{:.1}", l.parks_per_s),
                format!("{:.0}", l.iterations_per_s),
                l.ports.to_string(),
            ]
        })
        .collect();
    format!(
        "-- {} ms since the epoch, {:.2} s since the last sample\n{}\n{}\n",
        m.unix_ms,
        m.elapsed_s,
        table(
            &[
                "GROUP", "ID", "KIND", "FRAMES", "FPS", "MBIT/S", "DROPPED", "DROPS/S"
            ],
            &flows
        ),
        table(&["LCORE", "BUSY%", "PARKS/S", "ITER/S", "PORTS"], &lcores)
    )
}

fn apply_text(r: &pb::ApplyConfigReply, dry_run: bool) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would be " } else { "" };
    for (what, urns) in [
        ("created", &r.created),
        ("changed", &r.changed),
        ("removed", &r.removed),
        ("unchanged", &r.unchanged),
    ] {
        if !urns.is_empty() {
            let _ = writeln!(out, "{verb}{what}: {}", urns.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "edges {verb}attached: {}, detached: {}",
        r.edges_attached, r.edges_detached
    );
    out
}
