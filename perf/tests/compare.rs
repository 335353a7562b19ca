//! `mcm-perf compare` end to end, small: every side (ours through a started engine, GStreamer,
//! FFmpeg) delivers frames, is charged CPU time, and the ratios are the per-side figures'.
//! No timing is asserted: the machine running the suite may be loaded.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{PERF, engine, f, json_of, u, wait_bounded};

fn run_compare(workload: &str) -> Value {
    let child = Command::new(PERF)
        .args(["compare", workload, "--frames", "20", "--fps", "10"])
        .args([
            "--width", "640", "--height", "480", "--rounds", "1", "--json",
        ])
        .arg("--engine")
        .arg(engine())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcm-perf starts");
    let what = format!("mcm-perf compare {workload}");
    let out = wait_bounded(child, Duration::from_secs(240), &what);
    let v = json_of(&out, &what);
    println!("{v}");
    v
}

/// The checks every workload shares: `names` are the sides, ours first.
fn check(v: &Value, names: &[&str]) {
    assert_eq!(u(v, "frames"), 20, "{v}");
    assert_eq!(u(v, "bytes_per_frame"), 640 * 480 * 5 / 2, "{v}");
    let sides = v["sides"].as_array().expect("sides");
    let got: Vec<&str> = sides.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(got, names, "{v}");
    let ours = f(&sides[0], "cpu_s_per_stream_s");
    for s in sides {
        let name = s["name"].as_str().unwrap();
        assert_eq!(u(s, "frames"), 20, "{name}: {s}");
        let delivered = u(s, "delivered");
        assert!(delivered > 0, "{name} delivered no frame: {s}");
        assert_eq!(u(s, "lost"), 20 - delivered, "{name}: {s}");
        assert_eq!(s["comparable"], delivered == 20, "{name}: {s}");
        let cpu = f(s, "cpu_s");
        assert!(cpu > 0.0, "{name} was charged no CPU: {s}");
        let rounds = s["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 1, "{name}: {s}");
        let by_process: f64 = rounds[0]["cpu_s_by_process"]
            .as_object()
            .expect("cpu_s_by_process")
            .values()
            .map(|c| c.as_f64().expect("CPU seconds"))
            .sum();
        assert!((by_process - cpu).abs() < 1e-9, "{name}: {s}");
        assert!((f(s, "stream_s") - 2.0).abs() < 1e-9, "{name}: {s}");
        let per = f(s, "cpu_s_per_stream_s");
        assert!((per - cpu / 2.0).abs() < 1e-9, "{name}: {s}");
        let ratio = f(s, "cpu_ratio_to_mcm");
        assert!(
            (ratio - per / ours).abs() < 1e-9 * ratio.max(1.0),
            "{name}: {s}"
        );
        if name == "mcm" {
            assert_eq!(u(&s["latency_us"], "count"), delivered, "{s}");
            assert!(s["source_alone_cpu_s_per_stream_s"].is_null(), "{s}");
        } else {
            assert!(s["latency_us"].is_null(), "{name}: {s}");
            assert!(
                s["latency_note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("not measured: ")),
                "{name}: {s}"
            );
            assert!(f(s, "source_alone_cpu_s_per_stream_s") > 0.0, "{name}: {s}");
        }
    }
    assert!(
        (f(&sides[0], "cpu_ratio_to_mcm") - 1.0).abs() < 1e-12,
        "{v}"
    );
}

#[test]
fn compare_local_runs_ours_and_gstreamer_shm() {
    let v = run_compare("local");
    assert_eq!(v["workload"], "local");
    check(&v, &["mcm", "gstreamer"]);
}

#[test]
fn compare_st2110_runs_ours_gstreamer_and_ffmpeg() {
    let v = run_compare("st2110");
    assert_eq!(v["workload"], "st2110");
    check(&v, &["mcm", "gstreamer", "ffmpeg"]);
}
