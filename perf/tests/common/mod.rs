//! Helpers of the mcm-perf integration tests: the binaries under test, bounded child processes
//! and their JSON reports.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The mcm-perf binary cargo built for the tests.
pub const PERF: &str = env!("CARGO_BIN_EXE_mcm-perf");

/// The engine next to `mcm-perf` (the tool's own default).
pub fn engine() -> PathBuf {
    let e = Path::new(PERF).with_file_name("mcm-engine");
    assert!(
        e.exists(),
        "{} is missing: build it first (`cargo build -p mcm-engine`, or run the workspace's tests)",
        e.display()
    );
    e
}

/// Waits for `child` at most `limit`, killing it then; returns its output.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} ran past {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The last JSON line `what` printed, after checking it exited successfully.
pub fn json_of(out: &Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{what} printed no JSON:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {line}"))
}

/// `v[key]` as a count.
pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a count in {v}"))
}

/// `v[key]` as a signed integer.
pub fn i(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("`{key}` is not an integer in {v}"))
}

/// `v[key]` as a number.
pub fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}
