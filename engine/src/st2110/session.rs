//! Building ST 2110 sessions (the bridges of `st2110` groups) from a connection's request.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mcm_control::dataplane::BridgeSpec;

use super::Settings;
use crate::group::Bridge;

/// Builds the bridge `spec` asks for, with the slots it may hold. Runs on the control thread
/// (socket setup may block briefly); the bridge then moves to its lcore.
///
/// # Errors
/// A message naming what is wrong with the stream's configuration or why its socket could not
/// be opened.
pub fn build(
    spec: &BridgeSpec,
    settings: &Settings,
    copied: Arc<AtomicU64>,
) -> Result<(Box<dyn Bridge>, u32), String> {
    let _ = (settings, copied);
    Err(format!(
        "connection.st2110: {} sessions are not served by this engine yet",
        spec.st2110.transport.as_str()
    ))
}
