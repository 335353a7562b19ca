//! The pacing measurement on live streams: our own paced ST 2110-20 sender through an engine
//! (`mcm-perf st2110`), graded per frame from kernel receive timestamps, and a GStreamer
//! `rtpvrawpay` sender (which bursts every frame) graded by `mcm-perf pacing`.
//!
//! These run the release or debug `mcm-perf` cargo built for this test and the `mcm-engine`
//! beside it (`cargo test --workspace` builds both). Timing on a loaded 2-core CI machine is not
//! asserted: a sender can always be made late by a busy machine. What is asserted holds under
//! any load: every packet and frame is accounted for, every frame gets its VRX and Cinst, and
//! our sender never sends so early that a narrow receiver's buffer overflows (it decides what
//! to send before it sends, so delays only make packets later).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{PERF, engine, i, json_of, u, wait_bounded};

/// Prints the per-frame report (what `mcm-perf pacing` shows), for the test log.
fn print_frames(frames: &[Value]) {
    println!("frame  packets  vrx_peak  vrx_min  cinst_peak  first_us  class");
    for f in frames {
        println!(
            "{:>5}  {:>7}  {:>8}  {:>7}  {:>10}  {:>8.1}  {}",
            u(f, "frame"),
            u(f, "packets"),
            i(f, "vrx_peak"),
            i(f, "vrx_min"),
            u(f, "cinst_peak"),
            f["first_packet_offset_us"].as_f64().unwrap_or(f64::NAN),
            f["class"].as_str().unwrap_or("?"),
        );
    }
}

/// Our narrow sender at 1080p, 10-bit, 10 fps (a debug engine keeps that schedule on a loaded
/// machine), through the engine to an SDK receiver, with a second member of the multicast
/// group grading every frame.
#[test]
fn our_paced_sender_is_graded_frame_by_frame() {
    const FRAMES: u64 = 14;
    const PER_FRAME: u64 = 4320; // 1080p 10-bit 4:2:2 in 1200-byte payloads
    let engine = engine();
    let files = tempfile::tempdir().unwrap();
    let svg = files.path().join("st2110.svg");
    let child = Command::new(PERF)
        .args(["st2110", "--frames", &FRAMES.to_string(), "--fps", "10"])
        .args(["--receivers", "1", "--group", "239.77.0.21", "--json"])
        .arg("--engine")
        .arg(&engine)
        .arg("--hgrm")
        .arg(files.path())
        .arg("--svg")
        .arg(&svg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcm-perf starts");
    let out = wait_bounded(child, Duration::from_secs(180), "mcm-perf st2110");
    let v = json_of(&out, "mcm-perf st2110");

    assert_eq!(u(&v, "received"), FRAMES, "{v}");
    let bridges = v["bridges"].as_array().expect("bridges");
    assert_eq!(bridges.len(), 2, "{v}");
    for b in bridges {
        assert_eq!(u(b, "packets"), FRAMES * PER_FRAME, "{b}");
        assert_eq!(u(b, "frames"), FRAMES, "{b}");
        for zero in [
            "frames_incomplete",
            "frames_dropped",
            "packets_lost",
            "packets_malformed",
            "send_errors",
            "socket_drops",
        ] {
            assert_eq!(u(b, zero), 0, "{zero} in {b}");
        }
    }

    let pacing = &v["pacing"];
    let timing = &pacing["timing"];
    assert_eq!(u(timing, "packets_per_frame"), PER_FRAME, "{pacing}");
    assert_eq!(timing["sender"], "2110TPN", "{pacing}");
    let vrx_full = u(timing, "vrx_full_narrow") as i64;
    let frames = v["pacing_frames"].as_array().expect("pacing_frames");
    print_frames(frames);
    // The first frame joined may be partial and the next one counts packets per frame; the
    // rest are graded, each one whole.
    assert!(frames.len() as u64 >= FRAMES - 3, "{} graded", frames.len());
    assert_eq!(u(pacing, "frames"), frames.len() as u64);
    for f in frames {
        assert_eq!(u(f, "packets"), PER_FRAME, "{f}");
        assert!(i(f, "vrx_min") <= i(f, "vrx_peak"), "{f}");
        assert!(
            i(f, "vrx_peak") <= vrx_full,
            "our sender overflowed a narrow receiver's buffer (VRX_FULL {vrx_full}): {f}"
        );
        assert!(
            ["narrow", "wide", "fail"].contains(&f["class"].as_str().unwrap_or("")),
            "{f}"
        );
    }
    // The files beside the report: the latency distribution of every frame received, a CSV
    // row per graded frame, a plot of both.
    let hgrm = std::fs::read_to_string(files.path().join("st2110.hgrm")).unwrap();
    let footer = hgrm
        .lines()
        .find(|l| l.starts_with("#[Max"))
        .expect("#[Max] line");
    assert!(
        footer.ends_with(&format!("Total count    = {FRAMES:>12}]")),
        "{hgrm}"
    );
    let csv = std::fs::read_to_string(files.path().join("st2110-pacing.csv")).unwrap();
    assert_eq!(csv.lines().count(), frames.len() + 1, "{csv}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    for s in ["1 receiver", "VRX peak", "VRX min", "VRX_FULL narrow"] {
        assert!(plot.contains(s), "{s:?} not in the plot");
    }
    println!(
        "summary: {} narrow, {} wide, {} fail; worst cinst {}, vrx {}..{}",
        u(pacing, "narrow"),
        u(pacing, "wide"),
        u(pacing, "fail"),
        u(pacing, "cinst_peak"),
        i(pacing, "vrx_min"),
        i(pacing, "vrx_peak")
    );
}

/// `mcm-perf local` with two runs writes a percentile distribution per run, holding every
/// frame each run's receivers got, and one plot with a series per run.
#[test]
fn local_writes_a_percentile_distribution_per_run_and_one_plot() {
    const FRAMES: u64 = 20;
    let files = tempfile::tempdir().unwrap();
    let svg = files.path().join("local.svg");
    let child = Command::new(PERF)
        .args([
            "local",
            "--receivers",
            "1,2",
            "--frames",
            &FRAMES.to_string(),
        ])
        .args(["--fps", "50", "--width", "64", "--height", "64", "--json"])
        .arg("--engine")
        .arg(engine())
        .arg("--hgrm")
        .arg(files.path())
        .arg("--svg")
        .arg(&svg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcm-perf starts");
    let out = wait_bounded(child, Duration::from_secs(120), "mcm-perf local");
    let runs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(runs.len(), 2);
    for r in &runs {
        let n = u(r, "receivers");
        let hgrm = std::fs::read_to_string(files.path().join(format!("local-{n}rx.hgrm")))
            .unwrap_or_else(|e| panic!("local-{n}rx.hgrm: {e}"));
        assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        let rows: Vec<Vec<&str>> = hgrm
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        // The last row is 100 % and counts every frame the run's receivers got; its value is
        // the report's max (µs, to the nanosecond in the file, to 0.1 µs in the report).
        let last = rows.last().expect("rows");
        assert_eq!(last[1], "1.000000000000", "{hgrm}");
        assert_eq!(
            last[2].parse::<u64>().unwrap(),
            u(&r["latency_us"], "count")
        );
        let max = r["latency_us"]["max"].as_f64().unwrap();
        assert!(
            (last[0].parse::<f64>().unwrap() - max).abs() < 0.01,
            "{hgrm} vs {r}"
        );
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    assert!(plot.contains("1 receiver") && plot.contains("2 receivers"));
}

/// Whether something is bound to UDP `port` on 127.0.0.1 (from /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!("0100007F:{port:04X}");
    table
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// GStreamer's `rtpvrawpay` sends each frame as fast as it can: the grader must not call that
/// narrow (nor, for frames sent as one burst, wide).
#[test]
fn a_gstreamer_sender_that_bursts_is_not_graded_narrow() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("gst.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=gstreamer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video {port} RTP/AVP 96\r\na=rtpmap:96 raw/90000\r\n\
             a=fmtp:96 sampling=YCbCr-4:2:2; width=1280; height=720; exactframerate=25; \
             depth=8; colorimetry=BT709; PM=2110GPM; SSN=ST2110-20:2017; TP=2110TPN\r\n"
        ),
    )
    .unwrap();
    let grader = Command::new(PERF)
        .args([
            "pacing",
            "--frames",
            "6",
            "--timeout-s",
            "30",
            "--json",
            "--sdp",
        ])
        .arg(&sdp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcm-perf starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !udp_bound(port) {
        assert!(
            Instant::now() < deadline,
            "mcm-perf pacing never bound {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gst = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=40", "pattern=ball", "!"])
        .args([
            "video/x-raw,format=UYVY,width=1280,height=720,framerate=25/1",
            "!",
        ])
        .args(["rtpvrawpay", "pt=96", "!", "udpsink", "host=127.0.0.1"])
        .arg(format!("port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (GStreamer, installed by scripts/setup_build_env.sh) starts");
    let gst = wait_bounded(gst, Duration::from_secs(120), "gst-launch-1.0");
    assert!(
        gst.status.success(),
        "gst-launch-1.0 failed: {}",
        String::from_utf8_lossy(&gst.stderr)
    );
    let v = json_of(
        &wait_bounded(grader, Duration::from_secs(60), "mcm-perf pacing"),
        "mcm-perf pacing",
    );
    let frames = v["frames"].as_array().expect("frames");
    print_frames(frames);
    let s = &v["summary"];
    assert!(u(s, "frames") >= 3, "too few frames graded: {v}");
    assert_eq!(u(s, "narrow"), 0, "a bursting sender graded narrow: {v}");
    assert_ne!(s["class"], "narrow", "{v}");
    // Whole frames in one burst: Cinst far beyond the narrow CMAX.
    assert!(u(s, "cinst_peak") > u(&s["timing"], "cmax_narrow"), "{s}");
}
