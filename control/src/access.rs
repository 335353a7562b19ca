//! Who may use the SDK ports, and how much of the engine each client identity may hold.
//!
//! A session's **identity** is the peer's uid on the Unix socket (read with `SO_PEERCRED` at
//! accept), the name of its access token on TCP when the engine has `sdk.access_tokens_file`,
//! or `tcp` when it has none (every TCP client then shares that one identity and its quotas).
//!
//! - **Access tokens**: with a tokens file, a TCP client's Hello must carry one of its tokens
//!   (`Hello.access_token`, from the client JSON's `apiAccessToken` or `MCM_SDK_ACCESS_TOKEN`);
//!   a missing or wrong one closes the session with `ERROR_CODE_UNAUTHENTICATED`. These are
//!   long-lived secrets naming a user, unlike the one-time fd tokens of `FetchFds`. The Unix
//!   socket needs none: its file mode and the peer's credentials decide.
//! - **Quotas** per identity: sessions (counted from an accepted Hello), connections, and groups
//!   (distinct groups it holds connections in; joining a group it is already in is always
//!   allowed). A request over a quota is refused with `ERROR_CODE_QUOTA`, nothing else changes.
//!
//! Every refusal is counted ([`AccessCounters`]) and logged with its reason at most once a
//! second, with the number not logged since.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest access token accepted, in bytes (also the longest `Hello.access_token`).
pub const MAX_TOKEN_LEN: usize = 256;
/// Shortest access token a tokens file may hold: a guessable secret protects nothing.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest identity name in a tokens file.
pub const MAX_NAME_LEN: usize = 64;

/// Who a session belongs to, for quotas and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A Unix socket peer's uid.
    Uid(u32),
    /// The name of the access token a TCP client presented.
    Token(String),
    /// A TCP client of an engine with no access tokens.
    Tcp,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "uid {uid}"),
            Self::Token(name) => write!(f, "token {name:?}"),
            Self::Tcp => f.write_str("tcp"),
        }
    }
}

/// The access tokens of the TCP port, each with the name of the identity it stands for. The
/// tokens themselves never appear in logs or in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessTokens {
    entries: Vec<(String, String)>,
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("AccessTokens")
            .field("identities", &names)
            .finish()
    }
}

impl AccessTokens {
    /// Reads a tokens file named by setting `key`: one `<identity> <token>` per line; blank
    /// lines and lines starting with `#` are skipped.
    pub fn load(key: &str, path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{key}: {}: {e}", path.display()))
    }

    /// Parses the text of a tokens file (see [`load`](Self::load)).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "line {n} is not `<identity> <token>` (allowed: two words, e.g. \
                     `alice 3f9c...`; `#` starts a comment line)"
                ));
            };
            let name_ok = name.len() <= MAX_NAME_LEN
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !name_ok {
                return Err(format!(
                    "line {n}: identity {name:?} is not allowed (allowed: at most \
                     {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -)"
                ));
            }
            if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) {
                return Err(format!(
                    "line {n}: the token of {name:?} is {} bytes long (allowed: \
                     {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN}, e.g. `openssl rand -hex 32`)",
                    token.len()
                ));
            }
            if entries.iter().any(|(m, _)| m == name) {
                return Err(format!("line {n}: identity {name:?} is given twice"));
            }
            if entries.iter().any(|(_, t)| t == token) {
                return Err(format!(
                    "line {n}: the token of {name:?} is also another identity's (allowed: one \
                     token per identity)"
                ));
            }
            entries.push((name.to_owned(), token.to_owned()));
        }
        if entries.is_empty() {
            return Err("no `<identity> <token>` line".to_owned());
        }
        Ok(Self { entries })
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none (never true of a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity whose token is `token`. Every entry is compared in full, so the time taken
    /// says nothing of which token matched or how much of one did.
    pub fn identify(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (name, t) in &self.entries {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Compares without stopping at the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What one identity may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Sessions (`sdk.max_sessions_per_identity`).
    pub sessions: usize,
    /// Connections (`sdk.max_connections_per_identity`).
    pub connections: usize,
    /// Groups it holds connections in (`sdk.max_groups_per_identity`).
    pub groups: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            sessions: 256,
            connections: 1024,
            groups: 256,
        }
    }
}

/// The SDK's access settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// Tokens a TCP client must present; `None`: TCP clients are not asked for one.
    pub tokens: Option<AccessTokens>,
    /// Each identity's quotas.
    pub quotas: Quotas,
}

/// Refusals and timeouts since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AccessCounters {
    /// Hellos without the right access token.
    pub token: u64,
    /// Unix socket peers whose credentials are not allowed.
    pub peer: u64,
    /// Sessions, connections or groups refused for a quota.
    pub quota: u64,
    /// Sessions holding connections closed for not being heard from.
    pub keepalive: u64,
    /// Sessions holding no connection closed for not being heard from.
    pub idle: u64,
    /// Sessions closed for a frame begun and not finished in time.
    pub slow_frame: u64,
    /// Connections deleted for not being activated in time.
    pub unactivated: u64,
}

/// Which deadline closed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `sdk.keepalive_timeout_ms`, with connections held.
    Keepalive,
    /// `sdk.idle_timeout_ms`, with no connection.
    Idle,
    /// `sdk.frame_timeout_ms`.
    Frame,
    /// `sdk.activate_timeout_ms` (a connection, not the session, is deleted).
    Activate,
}

/// Lets a repeated warning through at most once per period and counts what it held back.
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// Nothing logged yet.
    pub const fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log now: `Some(n)` with the number of messages held back since the last one
    /// logged, or `None` (counted as held back).
    pub fn allow(&mut self, now: Instant, period: Duration) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < period)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// `" (N more not logged)"`, or nothing when none was held back.
    pub fn suffix(held_back: u64) -> String {
        if held_back > 0 {
            format!(" ({held_back} more not logged)")
        } else {
            String::new()
        }
    }
}

/// Logs at `$level` (`warn`, `info`, ...) at most once a second per call site, with the number
/// of messages held back since appended: for anything a client can make the engine say
/// repeatedly.
#[macro_export]
macro_rules! log_limited {
    ($level:ident, $($arg:tt)*) => {{
        static LIMIT: std::sync::Mutex<$crate::access::RateLimit> =
            std::sync::Mutex::new($crate::access::RateLimit::new());
        let held = match LIMIT.lock() {
            Ok(mut l) => l.allow(std::time::Instant::now(), std::time::Duration::from_secs(1)),
            Err(p) => p
                .into_inner()
                .allow(std::time::Instant::now(), std::time::Duration::from_secs(1)),
        };
        if let Some(n) = held {
            tracing::$level!("{}{}", format_args!($($arg)*), $crate::access::RateLimit::suffix(n));
        }
    }};
}

/// [`log_limited!`] at warning level.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)*) => { $crate::log_limited!(warn, $($arg)*) };
}

/// One identity's use, as shown by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityUse {
    /// The identity.
    pub identity: Identity,
    /// Sessions it has open.
    pub sessions: usize,
    /// Its requests refused for a quota.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct PerIdentity {
    sessions: usize,
    refused: u64,
}

/// The sessions' identities and the quotas over them; owned by the control thread.
#[derive(Debug)]
pub struct Access {
    config: AccessConfig,
    /// Unix sessions' uids, known at accept, until their Hello.
    peers: HashMap<u64, u32>,
    /// Sessions that said Hello, by identity.
    sessions: HashMap<u64, Identity>,
    per: HashMap<Identity, PerIdentity>,
    counters: AccessCounters,
}

impl Access {
    /// No sessions yet.
    pub fn new(config: AccessConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            sessions: HashMap::new(),
            per: HashMap::new(),
            counters: AccessCounters::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// Refusals so far.
    pub fn counters(&self) -> AccessCounters {
        self.counters
    }

    /// A Unix socket session was accepted from a peer with `uid`.
    pub fn unix_peer(&mut self, session: u64, uid: u32) {
        self.peers.insert(session, uid);
    }

    /// Identifies `session` at its Hello (`unix`: it came over the Unix socket) and counts it
    /// against its identity's session quota. `Err` says why it is refused: a missing or wrong
    /// token (`true`), or the quota (`false`); the refusal is counted and logged.
    pub fn hello(
        &mut self,
        session: u64,
        unix: bool,
        token: &str,
    ) -> Result<&Identity, (bool, String)> {
        let identity = if unix {
            match self.peers.remove(&session) {
                Some(uid) => Identity::Uid(uid),
                None => return Err((true, "the peer's uid is unknown".to_owned())),
            }
        } else {
            match &self.config.tokens {
                None => Identity::Tcp,
                Some(tokens) => match tokens.identify(token) {
                    Some(name) => Identity::Token(name.to_owned()),
                    None => {
                        let why = if token.is_empty() {
                            "no access token"
                        } else {
                            "a wrong access token"
                        };
                        let msg = format!(
                            "this TCP port requires an SDK access token and the Hello carried \
                             {why} (allowed: one of the tokens of the engine's \
                             sdk.access_tokens_file, given as apiAccessToken in the client \
                             JSON or MCM_SDK_ACCESS_TOKEN; not an fd token)"
                        );
                        self.counters.token += 1;
                        crate::warn_limited!("SDK session {session} refused: {msg}");
                        return Err((true, msg));
                    }
                },
            }
        };
        let per = self.per.entry(identity.clone()).or_default();
        if per.sessions >= self.config.quotas.sessions {
            per.refused += 1;
            let msg = format!(
                "{identity} already has {} sessions, its quota (sdk.max_sessions_per_identity = \
                 {}); close one first",
                per.sessions, self.config.quotas.sessions
            );
            self.counters.quota += 1;
            crate::warn_limited!("SDK session {session} refused: {msg}");
            return Err((false, msg));
        }
        per.sessions += 1;
        Ok(self.sessions.entry(session).or_insert(identity))
    }

    /// The identity of a session that said Hello.
    pub fn identity(&self, session: u64) -> Option<&Identity> {
        self.sessions.get(&session)
    }

    /// A request of `session` was refused for a quota with `msg`: counted and logged.
    pub fn quota_refused(&mut self, session: u64, msg: &str) {
        self.counters.quota += 1;
        if let Some(id) = self.sessions.get(&session)
            && let Some(per) = self.per.get_mut(id)
        {
            per.refused += 1;
        }
        crate::warn_limited!("SDK session {session} refused: {msg}");
    }

    /// A Unix peer was refused for its credentials with `msg`: counted and logged.
    pub fn peer_refused(&mut self, peer: &str, msg: &str) {
        self.counters.peer += 1;
        crate::warn_limited!("sdk.unix_socket: refused {peer}: {msg}");
    }

    /// `session` was closed by `deadline`: counted and logged.
    pub fn timed_out(&mut self, deadline: Deadline, session: u64, msg: &str) {
        match deadline {
            Deadline::Keepalive => self.counters.keepalive += 1,
            Deadline::Idle => self.counters.idle += 1,
            Deadline::Frame => self.counters.slow_frame += 1,
            Deadline::Activate => self.counters.unactivated += 1,
        }
        crate::warn_limited!("SDK session {session} closed: {msg}");
    }

    /// `session` is gone.
    pub fn closed(&mut self, session: u64) {
        self.peers.remove(&session);
        if let Some(id) = self.sessions.remove(&session)
            && let Some(per) = self.per.get_mut(&id)
        {
            per.sessions -= 1;
            if per.sessions == 0 {
                self.per.remove(&id);
            }
        }
    }

    /// Every identity with a session, in order.
    pub fn uses(&self) -> Vec<IdentityUse> {
        let mut v: Vec<IdentityUse> = self
            .per
            .iter()
            .map(|(identity, p)| IdentityUse {
                identity: identity.clone(),
                sessions: p.sessions,
                refused: p.refused,
            })
            .collect();
        v.sort_by(|a, b| a.identity.cmp(&b.identity));
        v
    }

    /// The sessions of `identity`.
    pub fn sessions_of<'a>(&'a self, identity: &'a Identity) -> impl Fn(u64) -> bool + 'a {
        move |s| self.sessions.get(&s) == Some(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef0123";
    const T2: &str = "fedcba9876543210fedc";

    fn tokens() -> AccessTokens {
        AccessTokens::parse(&format!("# users\nalice {T1}\n\n  bob   {T2}  \n")).unwrap()
    }

    #[test]
    fn a_tokens_file_names_identities() {
        let t = tokens();
        assert_eq!(t.len(), 2);
        assert_eq!(t.identify(T1), Some("alice"));
        assert_eq!(t.identify(T2), Some("bob"));
        assert_eq!(t.identify(""), None);
        assert_eq!(t.identify(&T1[1..]), None);
        assert!(!format!("{t:?}").contains(T1), "Debug shows no token");
    }

    #[test]
    fn bad_tokens_files_say_which_line() {
        let cases = [
            ("", "no `<identity> <token>` line"),
            ("alice\n", "line 1 is not `<identity> <token>`"),
            (
                "# c\nal!ce 0123456789abcdef\n",
                "line 2: identity \"al!ce\" is not allowed",
            ),
            ("alice short\n", "the token of \"alice\" is 5 bytes long"),
            (
                &format!("alice {T1}\nalice {T2}\n"),
                "line 2: identity \"alice\" is given twice",
            ),
            (
                &format!("alice {T1}\nbob {T1}\n"),
                "line 2: the token of \"bob\" is also another identity's",
            ),
        ];
        for (text, want) in cases {
            let e = AccessTokens::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn hello_identifies_and_counts_sessions() {
        let mut a = Access::new(AccessConfig {
            tokens: Some(tokens()),
            quotas: Quotas {
                sessions: 2,
                ..Quotas::default()
            },
        });
        assert_eq!(
            a.hello(1, false, T1).unwrap(),
            &Identity::Token("alice".into())
        );
        let (auth, msg) = a.hello(2, false, "").unwrap_err();
        assert!(auth && msg.contains("carried no access token"), "{msg}");
        let (auth, msg) = a.hello(3, false, T2.get(..19).unwrap()).unwrap_err();
        assert!(auth && msg.contains("a wrong access token"), "{msg}");
        a.unix_peer(4, 1000);
        assert_eq!(a.hello(4, true, "").unwrap(), &Identity::Uid(1000));
        assert!(a.hello(5, false, T1).is_ok());
        let (auth, msg) = a.hello(6, false, T1).unwrap_err();
        assert!(!auth, "{msg}");
        assert!(
            msg.contains("token \"alice\" already has 2 sessions, its quota"),
            "{msg}"
        );
        assert_eq!(a.identity(5), a.identity(1));
        assert_ne!(a.identity(4), a.identity(1));
        assert_eq!(a.identity(6), None, "refused: no identity");
        assert_eq!(
            a.counters(),
            AccessCounters {
                token: 2,
                quota: 1,
                ..AccessCounters::default()
            }
        );
        // A session that closes frees its place.
        a.closed(1);
        assert!(a.hello(7, false, T1).is_ok());
        let uses = a.uses();
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].identity, Identity::Uid(1000));
        assert_eq!((uses[1].sessions, uses[1].refused), (2, 1));
        a.closed(4);
        assert_eq!(
            a.uses().len(),
            1,
            "an identity with no session is forgotten"
        );
    }

    #[test]
    fn without_tokens_tcp_clients_share_one_identity() {
        let mut a = Access::new(AccessConfig::default());
        assert_eq!(a.hello(1, false, "anything").unwrap(), &Identity::Tcp);
        assert_eq!(a.hello(2, false, "").unwrap(), &Identity::Tcp);
        assert_eq!(a.identity(1), a.identity(2));
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut r = RateLimit::default();
        assert_eq!(r.allow(t0, Duration::from_secs(1)), Some(0));
        assert_eq!(
            r.allow(t0 + Duration::from_millis(10), Duration::from_secs(1)),
            None
        );
        assert_eq!(
            r.allow(t0 + Duration::from_millis(20), Duration::from_secs(1)),
            None
        );
        assert_eq!(
            r.allow(t0 + Duration::from_secs(2), Duration::from_secs(1)),
            Some(2)
        );
        assert_eq!(RateLimit::suffix(2), " (2 more not logged)");
        assert_eq!(RateLimit::suffix(0), "");
    }
}
