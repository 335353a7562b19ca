//! `mcm-ctl` against a real engine: tables and `--json`, apply files, SDPs, live metrics, and
//! exit codes scripts can test (0 done, 1 refused, 2 bad input, 3 unreachable).

#[path = "common/c.rs"]
mod c;
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::Engine;

fn ctl_bin() -> PathBuf {
    c::control_bin("mcm-ctl")
}

/// Runs `mcm-ctl -e <engine> args...`.
fn ctl(e: &Engine, args: &[&str]) -> Output {
    ctl_at(&e.grpc.to_string(), args, None)
}

fn ctl_at(addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(ctl_bin());
    cmd.args(["--engine", addr, "--timeout-ms", "3000"])
        .args(args);
    match stdin {
        None => cmd.output().unwrap(),
        Some(text) => {
            use std::io::Write as _;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects exit 0; returns stdout.
fn ok(e: &Engine, args: &[&str]) -> String {
    let o = ctl(e, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "mcm-ctl {args:?}: {}{}",
        out(&o),
        err(&o)
    );
    out(&o)
}

fn group(urn: &str, port: u16) -> String {
    format!(
        r#"{{"bufferQueueCapacity": 16,
            "connection": {{"multipointGroup": {{"urn": "{urn}", "edges": [
                {{"st2110": {{"direction": "tx", "ipAddr": "127.0.0.1", "port": {port},
                              "payloadType": 96}}}}]}}}},
            "payload": {{"video": {{"width": 64, "height": 32, "fps": 25,
                "pixelFormat": "yuv422p10rfc4175"}}}}}}"#
    )
}

#[test]
fn tables_json_and_apply_files() {
    let e = Engine::start();
    let info = ok(&e, &["info"]);
    assert!(info.contains(&e.tcp.to_string()), "{info}");
    assert!(info.contains(env!("CARGO_PKG_VERSION")), "{info}");
    let json: serde_json::Value = serde_json::from_str(&ok(&e, &["--json", "info"])).unwrap();
    assert_eq!(json["pid"], serde_json::json!(e.pid()), "{json}");
    assert_eq!(ok(&e, &["health"]).trim(), "SERVING");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let state = format!(
        r#"{{"groups": [{}, {}]}}"#,
        group("a", 46001),
        group("b", 46002)
    );
    std::fs::write(&file, &state).unwrap();
    let f = file.to_str().unwrap();
    let dry = ok(&e, &["apply", "--dry-run", f]);
    assert!(dry.contains("would be created: a, b"), "{dry}");
    assert!(
        ok(&e, &["groups"]).lines().count() == 1,
        "a dry run makes nothing"
    );
    let applied = ok(&e, &["apply", f]);
    assert!(applied.contains("created: a, b"), "{applied}");
    assert!(
        applied.contains("edges attached: 2, detached: 0"),
        "{applied}"
    );
    let again = ok(&e, &["apply", f]);
    assert!(again.contains("unchanged: a, b"), "{again}");

    let groups = ok(&e, &["groups"]);
    let lines: Vec<&str> = groups.lines().collect();
    assert!(lines[0].starts_with("URN"), "{groups}");
    assert_eq!(lines.len(), 3, "{groups}");
    assert!(
        lines[1].starts_with("a ") && lines[1].ends_with("control plane"),
        "{groups}"
    );
    let edges = ok(&e, &["edges"]);
    assert!(edges.contains("st2110-20 tx 127.0.0.1:46001"), "{edges}");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&e, &["--json", "groups", "b"])).unwrap();
    assert_eq!(listed["groups"][0]["urn"], "b", "{listed}");
    assert_eq!(listed["groups"][0]["configured"], true, "{listed}");
    let sdp = ok(&e, &["sdp", "--group", "a"]);
    assert!(
        sdp.starts_with("v=0") && sdp.contains("m=video 46001 RTP/AVP 96"),
        "{sdp}"
    );

    // Standard input works as a file; removing a group from the state removes it.
    let one = format!(r#"{{"groups": [{}]}}"#, group("a", 46001));
    let o = ctl_at(&e.grpc.to_string(), &["apply", "-"], Some(&one));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("removed: b"), "{}", out(&o));

    let watch = ok(&e, &["watch", "--interval-ms", "100", "--count", "2"]);
    assert_eq!(watch.matches("LCORE").count(), 2, "{watch}");
    let id: u64 = edges
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let deleted = ok(&e, &["delete-edge", &id.to_string()]);
    assert!(deleted.contains("detached"), "{deleted}");
}

#[test]
fn exit_codes_say_refused_bad_input_or_unreachable() {
    let e = Engine::start();
    let o = ctl(&e, &["delete-edge", "4242"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("refused") && err(&o).contains("4242"),
        "{}",
        err(&o)
    );
    let o = ctl(&e, &["create-edge", "nope", r#"{"st2110": {}}"#]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"groupz": []}"#).unwrap();
    let o = ctl(&e, &["apply", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("unknown key \"groupz\""), "{}", err(&o));
    let o = ctl(&e, &["apply", "/no/such/file.json"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ctl(&e, &["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = ctl_at(&format!("127.0.0.1:{port}"), &["info"], None);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("cannot reach the engine"), "{}", err(&o));
}
