//! `mcm-perf rdma` end to end: two engines linked over libfabric's `tcp` provider beside the
//! raw harness, with one and two endpoints. Timing is not asserted (a loaded 2-core machine can
//! make either path slow); what is asserted holds under any load: every frame of both paths
//! arrives, intact, no engine copies a payload byte, and every run is reported and written out.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{PERF, engine, f, u, wait_bounded};

#[test]
fn engine_and_raw_paths_each_deliver_every_frame_and_are_reported() {
    const FRAMES: u64 = 30;
    let engine = engine();
    let files = tempfile::tempdir().unwrap();
    let child = Command::new(PERF)
        .args(["rdma", "--frames", &FRAMES.to_string(), "--fps", "30"])
        .args([
            "--endpoints",
            "1,2",
            "--rounds",
            "1",
            "--width",
            "640",
            "--height",
            "360",
        ])
        .args(["--provider", "tcp", "--json"])
        .arg("--engine")
        .arg(&engine)
        .arg("--hgrm")
        .arg(files.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(240), "mcm-perf rdma");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcm-perf rdma failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: Vec<&Value> = lines.iter().filter(|v| v.get("path").is_some()).collect();
    assert_eq!(
        runs.len(),
        4,
        "engine and raw, for 1 and 2 endpoints:\n{stdout}"
    );
    for r in &runs {
        let path = r["path"].as_str().unwrap();
        assert_eq!(
            (
                u(r, "sent"),
                u(r, "received"),
                u(r, "lost"),
                u(r, "bad_frames")
            ),
            (FRAMES, FRAMES, 0, 0),
            "{r}"
        );
        // 640x360 10-bit 4:2:2: 5 bytes per 2 pixels.
        assert_eq!(u(r, "frame_bytes"), 640 * 360 * 5 / 2, "{r}");
        assert_eq!(u(&r["latency_us"], "count"), FRAMES, "{r}");
        assert!(
            f(r, "frames_per_s") > 0.0 && f(r, "gbit_per_s") > 0.0,
            "{r}"
        );
        if path == "engine" {
            assert_eq!(u(r, "payload_bytes_copied"), 0, "{r}");
            assert!(f(r, "engine_to_raw_frames_per_s") > 0.0, "{r}");
        } else {
            assert_eq!(path, "raw", "{r}");
        }
    }
    let summaries: Vec<&Value> = lines.iter().filter_map(|v| v.get("summary")).collect();
    assert_eq!(summaries.len(), 2, "{stdout}");
    for (s, n) in summaries.iter().zip([1, 2]) {
        assert_eq!(u(s, "endpoints"), n);
        assert!(f(s, "ratio_of_medians") > 0.0, "{s}");
    }
    for name in ["engine-1ep", "raw-1ep", "engine-2ep", "raw-2ep"] {
        let file = files.path().join(format!("rdma-{name}-30fps.hgrm"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains("Percentile"), "{}: {text}", file.display());
    }
}
