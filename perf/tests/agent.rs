//! `mcm-perf agent` end to end: an agent and two engines, a few runs of create_tx on A to the
//! first frame at a receiver on B. Timing is not asserted; every run must get its frame and be
//! reported with ordered percentiles.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{PERF, engine, wait_bounded};

#[test]
fn every_run_gets_its_first_frame_through_an_agent_made_link() {
    let engine = engine();
    let agent = Path::new(PERF).with_file_name("mcm-agent");
    assert!(
        agent.exists(),
        "{} is missing: build mcm-control's binaries",
        agent.display()
    );
    let child = Command::new(PERF)
        .args(["agent", "--runs", "3", "--json"])
        .arg("--engine")
        .arg(&engine)
        .arg("--agent")
        .arg(&agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(120), "mcm-perf agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcm-perf agent failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["runs"], 3, "{v}");
    let q = |k: &str| v[k].as_f64().unwrap();
    assert!(q("min_ms") > 0.0, "{v}");
    assert!(
        q("min_ms") <= q("p50_ms") && q("p50_ms") <= q("p99_ms") && q("p99_ms") <= q("max_ms"),
        "{v}"
    );
    assert!(q("puts_per_run") >= 1.0, "{v}");
}
