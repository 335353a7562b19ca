//! `mcm-agent` with three real engines on loopback (own ports, Unix sockets and shm dirs): a
//! sender on engine A and receivers on B and C get bit-exact frames through links the agent
//! made; a second source of the group on B is refused; killing the agent leaves the streams
//! flowing; a restarted agent rebuilds the same view from the engines' registrations; the last
//! receiver on C leaving removes C's link.

#[path = "common/c.rs"]
mod c;
mod common;
#[path = "common/peer.rs"]
mod peer;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Engine;
use grpcio::{ChannelBuilder, EnvBuilder};
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::{AgentClient, EngineClient};
use mcm_sdk::{RxConnection, TxConnection};
use peer::{client, pattern, send};

/// A running `mcm-agent` with its log.
struct AgentProc {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl AgentProc {
    /// Starts the agent on `addr` (port 0: any) with a 100 ms heartbeat.
    fn start(addr: &str) -> AgentProc {
        let mut child = Command::new(c::control_bin("mcm-agent"))
            .args([
                "--addr",
                addr,
                "--heartbeat-ms",
                "100",
                "--missed-heartbeats",
                "20",
            ])
            .args(["--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = log.lock().unwrap().iter().find_map(|l| {
                l.split(" listening on ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .map(str::to_owned)
            });
            if let Some(a) = found {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not start: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        AgentProc { child, addr, log }
    }

    fn client(&self) -> AgentClient {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        AgentClient::new(ChannelBuilder::new(env).connect(&self.addr))
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 64x32 10-bit video frames (5120 bytes) in group `urn`.
fn json(urn: &str) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"multipointGroup": {{"urn": "{urn}"}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "fps": 100,
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

const SMALL: usize = 64 * 32 * 5 / 2;

/// Polls the agent's view until `ready` holds (at most 20 s).
fn wait_view(
    agent: &AgentClient,
    what: &str,
    ready: impl Fn(&pb::ListEnginesReply) -> bool,
) -> pb::ListEnginesReply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(v) = agent.list_engines(&pb::ListEnginesRequest::default())
            && ready(&v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            agent.list_engines(&pb::ListEnginesRequest::default())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The engine's name at the agent: `<hostname>:<gRPC port>`.
fn name(e: &Engine) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!("{}:{}", host.trim(), e.grpc.port())
}

fn links_up(v: &pb::ListEnginesReply) -> Vec<(String, String, u64, u64)> {
    let mut l: Vec<_> = v
        .links
        .iter()
        .filter(|l| l.state == "up")
        .map(|l| (l.from.clone(), l.to.clone(), l.tx_edge, l.rx_edge))
        .collect();
    l.sort();
    l
}

/// Sends `n` frames from `first` at about 200 fps while both receivers collect them; both get
/// all `n`, bit-exact, in order.
fn stream(tx: &TxConnection, rxs: Vec<RxConnection>, first: u32, n: u32) -> Vec<RxConnection> {
    let collectors: Vec<_> = rxs
        .into_iter()
        .map(|rx| {
            std::thread::spawn(move || {
                let got: Vec<Vec<u8>> = (0..n)
                    .map(|_| rx.get_timeout(peer::T).unwrap().payload().to_vec())
                    .collect();
                (got, rx)
            })
        })
        .collect();
    for i in first..first + n {
        send(tx, &pattern(i, SMALL));
        std::thread::sleep(Duration::from_millis(5));
    }
    collectors
        .into_iter()
        .enumerate()
        .map(|(k, c)| {
            let (got, rx) = c.join().unwrap();
            for (j, f) in got.iter().enumerate() {
                let i = first + j as u32;
                assert!(
                    f[..] == pattern(i, SMALL)[..],
                    "receiver {k}: frame {i} differs"
                );
            }
            rx
        })
        .collect()
}

fn engine_client(e: &Engine) -> EngineClient {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    EngineClient::new(ChannelBuilder::new(env).connect(&e.grpc.to_string()))
}

/// Waits until `n` agent-made tx links of the engine have completed their handshake (frames
/// put before that have no link to go to).
fn wait_streaming(e: &EngineClient, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let groups = e
            .list_groups(&pb::ListGroupsRequest::default())
            .unwrap()
            .groups;
        let streaming = groups
            .iter()
            .flat_map(|g| g.edges.iter())
            .filter(|x| x.by_agent && x.up && x.details.get("links_up").copied().unwrap_or(0) > 0)
            .count();
        if streaming >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{groups:#?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_agent_joins_a_group_across_three_engines() {
    let agent = AgentProc::start("127.0.0.1:0");
    let at = agent.addr.clone();
    let start = || {
        let mut e = Engine::start_with(|t| t, &["--agent", &at]);
        e.wait_log("registered as");
        e
    };
    let (a, b, cc) = (start(), start(), start());
    let (na, nb, nc) = (name(&a), name(&b), name(&cc));
    let view = agent.client();
    wait_view(&view, "three engines registered", |v| v.engines.len() == 3);

    let (sa, sb, sc) = (client(&a), client(&b), client(&cc));
    let rx_b = sb.create_rx(&json("g")).unwrap();
    let rx_c = sc.create_rx(&json("g")).unwrap();
    let tx = sa.create_tx(&json("g")).unwrap();
    let v = wait_view(&view, "links A->B and A->C up", |v| links_up(v).len() == 2);
    let links = links_up(&v);
    let mut want = vec![(na.clone(), nb.clone()), (na.clone(), nc.clone())];
    want.sort();
    let got: Vec<(String, String)> = links.iter().map(|l| (l.0.clone(), l.1.clone())).collect();
    assert_eq!(got, want, "{v:?}");
    let on_a = engine_client(&a);
    wait_streaming(&on_a, 2);
    let rxs = stream(&tx, vec![rx_b, rx_c], 0, 30);

    // A second source of the group on B is refused with the engine that has it.
    let e = sb.create_tx(&json("g")).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("has its source on engine {na:?}")),
        "{e}"
    );

    // The agent goes: the streams keep flowing.
    agent.kill();
    let rxs = stream(&tx, rxs, 30, 30);

    // A new agent on the same address rebuilds the same view from the registrations.
    let agent = AgentProc::start(&at);
    let view = agent.client();
    let v = wait_view(&view, "the same links again", |v| {
        v.engines.len() == 3 && links_up(v) == links
    });
    assert!(
        agent
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("adopted"))
            .count()
            == 2,
        "{:?} {v:?}",
        agent.log.lock().unwrap()
    );
    let mut rxs = stream(&tx, rxs, 60, 20);

    // The last receiver on C leaves: C's link goes, B's stays.
    let rx_c = rxs.pop().unwrap();
    drop(rx_c);
    let v = wait_view(&view, "only A->B left", |v| v.links.len() == 1);
    assert_eq!(
        (v.links[0].from.as_str(), v.links[0].to.as_str()),
        (na.as_str(), nb.as_str())
    );
    let on_c = engine_client(&cc);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let groups = on_c
            .list_groups(&pb::ListGroupsRequest::default())
            .unwrap()
            .groups;
        if groups.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "C keeps {groups:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _rxs = stream(&tx, rxs, 80, 10);

    // mcm-ctl shows the agent's view.
    let out = Command::new(c::control_bin("mcm-ctl"))
        .args(["--agent", &agent.addr, "engines"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for n in [&na, &nb, &nc] {
        assert!(text.contains(n.as_str()), "{text}");
    }
    assert!(text.contains(" up"), "{text}");
}
