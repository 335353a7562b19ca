//! TLS, mutual TLS and bearer tokens on the gRPC endpoints, with certificates made by the
//! openssl command line for each run: a plain client against a TLS engine, a wrong CA, a missing
//! or wrong client certificate, a missing or wrong token are each refused; the right client is
//! served; token refusals are counted and logged; health checks need no token; `mcm-ctl` and an
//! engine's agent client speak the same. Nothing here listens beyond loopback.

#[path = "common/c.rs"]
mod c;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Engine;
use grpcio::{CallOption, ChannelBuilder, ChannelCredentialsBuilder, EnvBuilder, RpcStatusCode};
use mcm_control::grpc::proto::control as pb;
use mcm_control::grpc::proto::control_grpc::{AgentClient, EngineClient};
use mcm_control::grpc::proto::health::{HealthCheckRequest, health_check_response::ServingStatus};
use mcm_control::grpc::proto::health_grpc::HealthClient;
use mcm_control::security::ClientSecurity;

/// Certificates of one run: two CAs, a server certificate for 127.0.0.1 and a client
/// certificate from the first, a client certificate from the second.
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let subj = format!("/CN={ca}");
            let (k, p) = (format!("{ca}.key"), format!("{ca}.pem"));
            let mut args = vec!["req", "-x509"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &p, "-days", "2", "-subj", &subj]);
            openssl(d, &args);
        }
        for (name, ca, san) in [
            ("server", "ca", "subjectAltName=IP:127.0.0.1"),
            ("client", "ca", "extendedKeyUsage=clientAuth"),
            ("stranger", "other-ca", "extendedKeyUsage=clientAuth"),
        ] {
            let subj = format!("/CN={name}");
            let (k, csr, p) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let mut args = vec!["req"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &csr, "-subj", &subj, "-addext", san]);
            openssl(d, &args);
            let (cap, cak) = (format!("{ca}.pem"), format!("{ca}.key"));
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &cap,
                    "-CAkey",
                    &cak,
                    "-CAcreateserial",
                    "-out",
                    &p,
                    "-days",
                    "2",
                    "-copy_extensions",
                    "copy",
                ],
            );
        }
        std::fs::write(d.join("token"), "right-token\n").unwrap();
        std::fs::write(d.join("wrong-token"), "wrong-token\n").unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// The `[grpc]` keys of a TLS engine requiring client certificates and the token.
    fn grpc_section(&self) -> String {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\ntoken_file = \"{}\"\n",
            self.path("server.pem").display(),
            self.path("server.key").display(),
            self.path("ca.pem").display(),
            self.path("token").display()
        )
    }
}

/// An engine whose `[grpc]` section has `extra` and whose flags are `args`.
fn engine(extra: &str, args: &[&str]) -> Engine {
    let extra = extra.to_owned();
    Engine::start_with(
        move |t| t.replace("[grpc]\n", &format!("[grpc]\n{extra}")),
        args,
    )
}

fn env() -> Arc<grpcio::Environment> {
    Arc::new(EnvBuilder::new().cq_count(1).build())
}

/// A TLS channel builder trusting `ca`, with an optional client certificate.
fn tls_client(pki: &Pki, ca: &str, cert: Option<&str>) -> ChannelBuilder {
    let mut creds = ChannelCredentialsBuilder::new().root_cert(pki.read(ca));
    if let Some(name) = cert {
        creds = creds.cert(
            pki.read(&format!("{name}.pem")),
            pki.read(&format!("{name}.key")),
        );
    }
    ChannelBuilder::new(env()).set_credentials(creds.build())
}

fn with_token(token: &str) -> CallOption {
    let mut m = grpcio::MetadataBuilder::new();
    m.add_str("authorization", &format!("Bearer {token}"))
        .unwrap();
    CallOption::default()
        .headers(m.build())
        .timeout(Duration::from_secs(5))
}

fn code<T: std::fmt::Debug>(r: grpcio::Result<T>) -> RpcStatusCode {
    match r {
        Err(grpcio::Error::RpcFailure(s)) => s.code(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn info(c: &EngineClient, opt: CallOption) -> grpcio::Result<pb::EngineInfo> {
    c.get_info_opt(&pb::GetInfoRequest::default(), opt)
}

#[test]
fn a_tls_engine_serves_only_the_client_with_the_right_certificate_and_token() {
    let pki = Pki::new();
    let e = engine(&pki.grpc_section(), &[]);
    assert!(
        e.log_text().contains("(mutual TLS, bearer token)"),
        "{}",
        e.log_text()
    );
    let addr = e.grpc.to_string();
    let quick = || CallOption::default().timeout(Duration::from_secs(5));

    let ch = tls_client(&pki, "ca.pem", Some("client")).connect(&addr);
    let good = EngineClient::new(ch.clone());
    // Handshakes gRPC core refused, as the engine counts them (each failing client is refused
    // at least once; gRPC clients retry within their deadline).
    let tls_refused = || {
        info(&good, with_token("right-token"))
            .unwrap()
            .grpc_tls_refused
    };
    let mut seen = tls_refused();
    assert_eq!(seen, 0);
    let mut refused_and_counted = |client: EngineClient, what: &str| {
        assert_eq!(
            code(info(&client, with_token("right-token"))),
            RpcStatusCode::UNAVAILABLE,
            "{what}"
        );
        // The server side may log its end of the handshake a moment after the client gave up.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = tls_refused();
        while now == seen && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            now = tls_refused();
        }
        assert!(now > seen, "{what}: not counted ({now})");
        seen = now;
    };
    refused_and_counted(
        EngineClient::new(ChannelBuilder::new(env()).connect(&addr)),
        "a plain client",
    );
    // A client trusting another CA refuses the engine, not the other way round: the engine
    // sees a connection closed in its handshake. The refusing side counts it (an engine's own
    // agent client does: see engines_reach_a_tls_agent_with_their_certificate_and_token).
    let wrong_ca =
        EngineClient::new(tls_client(&pki, "other-ca.pem", Some("client")).connect(&addr));
    assert_eq!(
        code(info(&wrong_ca, with_token("right-token"))),
        RpcStatusCode::UNAVAILABLE
    );
    refused_and_counted(
        EngineClient::new(tls_client(&pki, "ca.pem", None).connect(&addr)),
        "a client without a certificate",
    );
    refused_and_counted(
        EngineClient::new(tls_client(&pki, "ca.pem", Some("stranger")).connect(&addr)),
        "a client certificate from another CA",
    );
    assert!(
        e.log_text()
            .contains("TLS handshake refused: Handshake failed"),
        "{}",
        e.log_text()
    );
    assert_eq!(code(info(&good, quick())), RpcStatusCode::UNAUTHENTICATED);
    assert_eq!(
        code(info(&good, with_token("wrong-token"))),
        RpcStatusCode::UNAUTHENTICATED
    );
    let (code2, msg) = match good.list_groups_opt(&pb::ListGroupsRequest::default(), quick()) {
        Err(grpcio::Error::RpcFailure(s)) => (s.code(), s.message().to_owned()),
        other => panic!("{other:?}"),
    };
    assert_eq!(code2, RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("no bearer token"), "{msg}");
    let served = info(&good, with_token("right-token")).unwrap();
    assert_eq!(served.grpc_security, "mutual TLS, bearer token");
    assert_eq!(served.grpc_refused, 3, "each token refusal is counted");
    assert!(
        e.log_text()
            .contains("gRPC: refused /mcm.control.v1.Engine/GetInfo"),
        "{}",
        e.log_text()
    );
    // Health checks need the TLS client certificate, not the token.
    let health = HealthClient::new(ch);
    let status = health
        .check_opt(&HealthCheckRequest::default(), quick())
        .unwrap()
        .status
        .enum_value()
        .unwrap();
    assert_eq!(status, ServingStatus::SERVING);

    // mcm-ctl with the same credentials, and without the token.
    let ctl = |extra: &[&str]| {
        let ca = pki.path("ca.pem");
        let cert = pki.path("client.pem");
        let key = pki.path("client.key");
        Command::new(c::control_bin("mcm-ctl"))
            .args(["--engine", &addr, "--timeout-ms", "5000"])
            .arg("--tls-ca")
            .arg(ca)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .output()
            .unwrap()
    };
    let token = pki.path("token");
    let out = ctl(&["--token-file", token.to_str().unwrap(), "info"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&["info"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no bearer token"), "{err}");
}

#[test]
fn bad_security_settings_fail_at_start_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cores.toml");
    for (extra, want) in [
        (
            "tls_cert = \"/x.pem\"\n",
            "grpc.tls_key: required with tls_cert",
        ),
        (
            "tls_client_ca = \"/ca.pem\"\n",
            "grpc.tls_client_ca: needs grpc.tls_cert",
        ),
        (
            "tls_cert = \"/no/such.pem\"\ntls_key = \"/no/such.key\"\n",
            "grpc.tls_cert: cannot read /no/such.pem",
        ),
        (
            "token_file = \"/no/such/token\"\n",
            "grpc.token_file: cannot read /no/such/token",
        ),
    ] {
        let text = common::config(dir.path(), "").replace("[grpc]\n", &format!("[grpc]\n{extra}"));
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(common::BIN)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{extra}: {err}");
    }
}

#[test]
fn engines_reach_a_tls_agent_with_their_certificate_and_token() {
    let pki = Pki::new();
    let mut agent = Command::new(c::control_bin("mcm-agent"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--heartbeat-ms",
            "100",
            "--missed-heartbeats",
            "20",
        ])
        .arg("--tls-cert")
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("server.key"))
        .arg("--tls-client-ca")
        .arg(pki.path("ca.pem"))
        .arg("--token-file")
        .arg(pki.path("token"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = agent.stderr.take().unwrap();
    let agent = KillOnDrop(agent);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let addr = loop {
        let l = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        if let Some(rest) = l.split(" listening on ").nth(1) {
            assert!(rest.contains("mutual TLS, bearer token"), "{l}");
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    let section = |token: &str| {
        format!(
            "[agent]\naddr = \"{addr}\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             token_file = \"{}\"\n",
            pki.path("ca.pem").display(),
            pki.path("client.pem").display(),
            pki.path("client.key").display(),
            pki.path(token).display()
        )
    };
    let good_section = section("token");
    let mut good = Engine::start_with(move |t| format!("{t}{good_section}"), &[]);
    good.wait_log("registered as");
    let bad_section = section("wrong-token");
    let mut bad = Engine::start_with(move |t| format!("{t}{bad_section}"), &[]);
    bad.wait_log("cannot register");
    assert!(
        bad.log_text().contains("wrong bearer token"),
        "{}",
        bad.log_text()
    );
    // An engine that trusts another CA refuses the agent's certificate, and counts it.
    let distrust = section("token").replace(
        &pki.path("ca.pem").display().to_string(),
        &pki.path("other-ca.pem").display().to_string(),
    );
    let mut distrusting = Engine::start_with(move |t| format!("{t}{distrust}"), &[]);
    distrusting.wait_log("cannot register");
    distrusting.wait_log("TLS handshake refused: Handshake failed");
    let own = EngineClient::new(ChannelBuilder::new(env()).connect(&distrusting.grpc.to_string()));
    let counted = info(&own, CallOption::default()).unwrap().grpc_tls_refused;
    assert!(counted > 0, "the refusal is counted");

    let sec = ClientSecurity {
        ca: Some(pki.path("ca.pem")),
        cert: Some((pki.path("client.pem"), pki.path("client.key"))),
        token: Some("right-token".to_owned()),
    };
    let view = AgentClient::new(sec.channel(env(), &addr, "agent").unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = view
            .list_engines_opt(&pb::ListEnginesRequest::default(), sec.call_option())
            .unwrap();
        if v.refused > 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        v.engines.len(),
        1,
        "only the engine with the right token: {v:?} {:#?}",
        rx.try_iter().collect::<Vec<_>>()
    );
    assert_eq!(v.engines[0].grpc_addr, good.grpc.to_string());
    // A plain client is refused in the TLS handshake, and the agent counts it.
    assert_eq!(v.tls_refused, 0, "{v:?}");
    let plain = AgentClient::new(ChannelBuilder::new(env()).connect(&addr));
    let r = plain.list_engines_opt(
        &pb::ListEnginesRequest::default(),
        CallOption::default().timeout(Duration::from_secs(5)),
    );
    assert_eq!(code(r), RpcStatusCode::UNAVAILABLE);
    let v = view
        .list_engines_opt(&pb::ListEnginesRequest::default(), sec.call_option())
        .unwrap();
    assert!(v.tls_refused > 0, "{v:?}");
    drop(agent);
}

/// Kills the child when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_unix_socket_serves_only_allowed_peers() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root (it switches uid)"
    );
    // Default: the socket file is 0660, so another uid cannot even connect.
    let e = Engine::start();
    let mode = std::fs::metadata(&e.unix).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    common::open_path_to(&e.unix);
    let said = common::connect_as_nobody(&e.unix);
    assert!(said.starts_with("CONNECT PermissionError"), "{said}");
    drop(e);

    // A world-writable socket: the kernel lets uid 65534 connect, the credential check does not.
    let mut e = Engine::start_with(
        |t| {
            t.replace(
                "[sdk]\n",
                "[sdk]\nunix_socket_mode = 0o666\nallowed_uids = [0]\n",
            )
        },
        &[],
    );
    common::open_path_to(&e.unix);
    let said = common::connect_as_nobody(&e.unix);
    assert!(said.starts_with("GOT"), "{said}");
    assert!(
        said.contains("peer uid 65534 gid 65534 is not allowed on this socket (allowed: uids [0]"),
        "{said}"
    );
    e.wait_log("sdk.unix_socket: refused unix pid");
    let control = EngineClient::new(ChannelBuilder::new(env()).connect(&e.grpc.to_string()));
    let i = info(&control, CallOption::default()).unwrap();
    assert_eq!(i.sdk_refused_peer, 1, "the refusal is counted");
    // The allowed uid is served.
    let c = peer_client(&e);
    assert!(c.is_ok(), "{:?}", c.err());
    // Bad modes are configuration errors.
    let stderr = common::refused_sdk_config("unix_socket_mode = 0o1777");
    assert!(
        stderr.contains("sdk.unix_socket_mode: 0o1777 is not allowed"),
        "{stderr}"
    );
}

fn peer_client(e: &Engine) -> Result<mcm_sdk::Client, mcm_sdk::Error> {
    mcm_sdk::Client::with_unix_socket(&e.unix, mcm_proto::config::ClientConfig::default())
}
