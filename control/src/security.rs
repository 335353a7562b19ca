//! Security of the gRPC endpoints (the engine's service, the agent, their clients): TLS, mutual
//! TLS and a bearer token.
//!
//! - **TLS**: a server with a certificate chain and key (PEM files) serves TLS only; a plain
//!   client cannot talk to it. With a client CA as well, it requires and verifies a client
//!   certificate signed by that CA (mutual TLS).
//! - **Token**: a server with a token (read from a file, so it is kept out of configuration files
//!   and process lists) refuses every call whose `authorization` metadata is not
//!   `Bearer <token>`, with `UNAUTHENTICATED`; each refusal is counted, and logged at most once a
//!   second with the number suppressed since. The health service is exempt, so Kubernetes' probes
//!   (which send no metadata) can still check a TLS-only or token-protected engine.
//!
//! Clients (the engine's agent client, `mcm-ctl`) take the CA that signed the server, their own
//! certificate and key for mutual TLS, and the token, from [`ClientSecurity`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use grpcio::{
    CallOption, CertificateRequestType, Channel, ChannelBuilder, ChannelCredentialsBuilder,
    CheckResult, Environment, MetadataBuilder, RpcContext, RpcStatus, RpcStatusCode, ServerChecker,
    ServerCredentials, ServerCredentialsBuilder,
};

/// Calls of this service need no token.
const HEALTH_PREFIX: &[u8] = b"/grpc.health.v1.Health/";

/// Why security settings could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: cannot read {path}: {source}")]
pub struct SecurityError {
    /// The setting.
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// What the OS said.
    pub source: std::io::Error,
}

/// Reads a PEM or token file named by setting `key`.
pub fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Reads a token file: its first line, without surrounding whitespace; refused when empty.
pub fn read_token(key: &str, path: &Path) -> Result<String, SecurityError> {
    let bytes = read_file(key, path)?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(SecurityError {
            key: key.to_owned(),
            path: path.to_owned(),
            source: std::io::Error::other(
                "no token in its first line (allowed: printable characters, no spaces around)",
            ),
        });
    }
    Ok(token)
}

/// A server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA whose signature a client certificate must carry (mutual TLS); `None`: no client
    /// certificate asked for.
    pub client_ca: Option<PathBuf>,
}

/// A server's security: TLS and a token, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSecurity {
    /// TLS; `None`: plain TCP.
    pub tls: Option<ServerTls>,
    /// The bearer token every call but health checks must carry.
    pub token: Option<String>,
}

impl ServerSecurity {
    /// The credentials to listen with; `prefix` names the settings in errors (e.g. `grpc`).
    pub fn credentials(&self, prefix: &str) -> Result<ServerCredentials, SecurityError> {
        let Some(tls) = &self.tls else {
            return Ok(ServerCredentials::insecure());
        };
        let cert = read_file(&format!("{prefix}.tls_cert"), &tls.cert)?;
        let key = read_file(&format!("{prefix}.tls_key"), &tls.key)?;
        let mut b = ServerCredentialsBuilder::new().add_cert(cert, key);
        if let Some(ca) = &tls.client_ca {
            let ca = read_file(&format!("{prefix}.tls_client_ca"), ca)?;
            b = b.root_cert(
                ca,
                CertificateRequestType::RequestAndRequireClientCertificateAndVerify,
            );
        }
        Ok(b.build())
    }

    /// What the log says of it, e.g. `mutual TLS, bearer token`.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "plain TCP (no TLS)",
            Some(t) if t.client_ca.is_some() => "mutual TLS",
            Some(_) => "TLS",
        };
        match self.token {
            Some(_) => format!("{tls}, bearer token"),
            None => format!("{tls}, no token"),
        }
    }
}

/// Refuses calls without the right bearer token (see the module documentation).
#[derive(Clone)]
pub struct TokenChecker {
    expected: Arc<Vec<u8>>,
    refused: Arc<AtomicU64>,
    logged: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
    what: &'static str,
}

impl TokenChecker {
    /// A checker for `token`, counting refusals in `refused`; `what` names the server in logs.
    pub fn new(token: &str, refused: Arc<AtomicU64>, what: &'static str) -> Self {
        Self {
            expected: Arc::new(format!("Bearer {token}").into_bytes()),
            refused,
            logged: Arc::new(AtomicU64::new(0)),
            suppressed: Arc::new(AtomicU64::new(0)),
            what,
        }
    }

    fn refuse(&self, ctx: &RpcContext<'_>, why: &str) -> CheckResult {
        // Relaxed: counters read on their own.
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.logged.load(Ordering::Relaxed);
        if now > last
            && self
                .logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let skipped = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                "{}: refused {} from {}: {why}{}",
                self.what,
                String::from_utf8_lossy(ctx.method()),
                ctx.peer(),
                if skipped > 0 {
                    format!(" ({skipped} more refusals in the last second not logged)")
                } else {
                    String::new()
                }
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        CheckResult::Abort(RpcStatus::with_message(
            RpcStatusCode::UNAUTHENTICATED,
            format!(
                "{why} (allowed: metadata \"authorization: Bearer <token>\" with this server's token)"
            ),
        ))
    }
}

impl ServerChecker for TokenChecker {
    fn check(&mut self, ctx: &RpcContext<'_>) -> CheckResult {
        if ctx.method().starts_with(HEALTH_PREFIX) {
            return CheckResult::Continue;
        }
        let mut seen = None;
        for (name, value) in ctx.request_headers() {
            if name.eq_ignore_ascii_case("authorization") {
                seen = Some(value);
            }
        }
        match seen {
            None => self.refuse(ctx, "no bearer token"),
            Some(v) if crate::access::constant_time_eq(v, &self.expected) => CheckResult::Continue,
            Some(_) => self.refuse(ctx, "wrong bearer token"),
        }
    }

    fn box_clone(&self) -> Box<dyn ServerChecker> {
        Box::new(self.clone())
    }
}

/// A client's security: the CA that signed the server, its own certificate for mutual TLS,
/// and the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    /// CA of the server's certificate; `None`: plain TCP (unless `cert` is set, which uses
    /// the system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for a server that requires one.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The server's bearer token.
    pub token: Option<String>,
}

impl ClientSecurity {
    /// A channel to `addr` with these credentials; `prefix` names the settings in errors.
    pub fn channel(
        &self,
        env: Arc<Environment>,
        addr: &str,
        prefix: &str,
    ) -> Result<Channel, SecurityError> {
        let b = ChannelBuilder::new(env);
        if self.ca.is_none() && self.cert.is_none() {
            return Ok(b.connect(addr));
        }
        let mut creds = ChannelCredentialsBuilder::new();
        if let Some(ca) = &self.ca {
            creds = creds.root_cert(read_file(&format!("{prefix}.tls_ca"), ca)?);
        }
        if let Some((cert, key)) = &self.cert {
            creds = creds.cert(
                read_file(&format!("{prefix}.tls_cert"), cert)?,
                read_file(&format!("{prefix}.tls_key"), key)?,
            );
        }
        Ok(b.set_credentials(creds.build()).connect(addr))
    }

    /// A call option carrying the token (if any).
    pub fn call_option(&self) -> CallOption {
        let opt = CallOption::default();
        let Some(token) = &self.token else {
            return opt;
        };
        let mut m = MetadataBuilder::new();
        // A token read by read_token has no control characters, so it is a valid value.
        let _ = m.add_str("authorization", &format!("Bearer {token}"));
        opt.headers(m.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }

    #[test]
    fn a_token_file_needs_a_token() {
        let dir = std::env::temp_dir().join(format!("mcm-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "  s3cret \nignored\n").unwrap();
        assert_eq!(read_token("grpc.token_file", &good).unwrap(), "s3cret");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_token("grpc.token_file", &empty)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("grpc.token_file: cannot read"), "{e}");
        assert!(e.contains("no token"), "{e}");
        let e = read_token("grpc.token_file", &dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("No such file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
