//! gRPC core's own log lines, taken over from its default writer (its own format, one line per
//! event on stderr, never limited).
//!
//! TLS handshakes gRPC core fails — a plain client against a TLS port, a client that does not
//! trust our certificate, a missing or foreign client certificate under mutual TLS — happen
//! before any call exists, so no checker of ours sees them; gRPC core only logs `Handshake
//! failed with fatal error ...`. Those lines are counted here ([`tls_refused`]) and logged at
//! most once a second with the number not logged since. Every other line goes to `tracing` under
//! target `grpc` at its severity (gRPC core's `GRPC_VERBOSITY` still decides which it emits).
//! The count is per process: an engine's own agent client failing its handshake counts too.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

use grpcio_sys::{gpr_log_func_args, gpr_log_severity};

/// TLS handshakes gRPC core failed in this process since start.
static TLS_REFUSED: AtomicU64 = AtomicU64::new(0);

/// What gRPC core says when a TLS handshake fails (`ssl_transport_security.cc`).
const HANDSHAKE_FAILED: &str = "Handshake failed";

/// Routes gRPC core's log lines through this module. Call once, before any gRPC object is made.
pub fn install() {
    // SAFETY: `delegate` is a plain function valid for the life of the process, and it only
    // reads the arguments gRPC core passes for the duration of the call.
    unsafe { grpcio_sys::gpr_set_log_function(Some(delegate)) };
}

/// TLS handshakes gRPC core failed in this process since start.
pub fn tls_refused() -> u64 {
    // Relaxed: a counter read on its own.
    TLS_REFUSED.load(Ordering::Relaxed)
}

/// One line of gRPC core's.
fn line(severity: gpr_log_severity, msg: &str) {
    if msg.contains(HANDSHAKE_FAILED) {
        // Relaxed: a counter.
        TLS_REFUSED.fetch_add(1, Ordering::Relaxed);
        crate::warn_limited!("TLS handshake refused: {msg}");
        return;
    }
    match severity {
        gpr_log_severity::GPR_LOG_SEVERITY_ERROR => tracing::error!(target: "grpc", "{msg}"),
        gpr_log_severity::GPR_LOG_SEVERITY_INFO => tracing::info!(target: "grpc", "{msg}"),
        _ => tracing::debug!(target: "grpc", "{msg}"),
    }
}

unsafe extern "C" fn delegate(args: *mut gpr_log_func_args) {
    // SAFETY: gRPC core passes a valid, initialised argument block (or, defensively, null).
    let Some(args) = (unsafe { args.as_ref() }) else {
        return;
    };
    if args.message.is_null() {
        return;
    }
    // SAFETY: the message is a NUL-terminated string that lives for the call.
    let msg = unsafe { CStr::from_ptr(args.message) }.to_string_lossy();
    line(args.severity, msg.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_counted_other_lines_are_not() {
        let before = tls_refused();
        line(
            gpr_log_severity::GPR_LOG_SEVERITY_ERROR,
            "Handshake failed with fatal error SSL_ERROR_SSL: error:0A00010B:SSL routines::wrong \
             version number.",
        );
        line(
            gpr_log_severity::GPR_LOG_SEVERITY_ERROR,
            "Handshake failed with fatal error SSL_ERROR_SSL: error:0A000418:SSL \
             routines::tlsv1 alert unknown ca.",
        );
        line(gpr_log_severity::GPR_LOG_SEVERITY_INFO, "some other line");
        assert_eq!(tls_refused() - before, 2);
    }
}
