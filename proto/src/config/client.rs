//! The client JSON of `mesh_create_client`.
//!
//! | field | default | allowed |
//! |---|---|---|
//! | `apiVersion` | `"v1"` | `"v1"` only |
//! | `apiConnectionString` | `"Server=127.0.0.1; Port=8002"` | `Server=<host>; Port=<1..=65535>` |
//! | `apiDefaultTimeoutMicroseconds` | 1000000 | `0..=`[`MAX_TIMEOUT_US`] |
//! | `maxMediaConnections` | 32 | `1..=`[`MAX_CONNECTIONS`] |
//! | `apiAccessToken` | none | 1 to [`MAX_ACCESS_TOKEN_LEN`] printable ASCII characters |
//!
//! `apiAccessToken` is the SDK access token an engine with `sdk.access_tokens_file` requires of
//! TCP clients (not one of the one-time fd tokens the engine hands out itself); without it in
//! the JSON, [`ENV_ACCESS_TOKEN`] is read. It is sent in Hello and never shown by `Debug`.
//!
//! Host and port are each taken from `apiConnectionString`, else from the environment
//! ([`ENV_PROXY_IP`], [`ENV_PROXY_PORT`]; an empty variable counts as unset), else the default.
//! The timeout is in microseconds and kept as a [`Duration`] (MCM used the number as
//! milliseconds; we do not).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::json::{self, Obj, quote};
use super::{ConfigError, MeshErr};

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "v1";
/// Proxy host used when neither the JSON nor the environment names one.
pub const DEFAULT_PROXY_HOST: &str = "127.0.0.1";
/// Proxy (engine) SDK port used when neither the JSON nor the environment names one.
pub const DEFAULT_PROXY_PORT: u16 = 8002;
/// Default of `apiDefaultTimeoutMicroseconds`: one second.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `apiDefaultTimeoutMicroseconds`: `i32::MAX` milliseconds, the longest wait the C
/// API's `int timeout_ms` can express.
pub const MAX_TIMEOUT_US: u64 = i32::MAX as u64 * 1000;
/// Default of `maxMediaConnections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 32;
/// Largest `maxMediaConnections`: far more than one process sensibly opens, small enough that a
/// per-client table of connections stays cheap.
pub const MAX_CONNECTIONS: u32 = 1024;
/// Environment variable naming the proxy host when `apiConnectionString` does not.
pub const ENV_PROXY_IP: &str = "MCM_MEDIA_PROXY_IP";
/// Environment variable naming the proxy port when `apiConnectionString` does not.
pub const ENV_PROXY_PORT: &str = "MCM_MEDIA_PROXY_PORT";
/// Environment variable holding the SDK access token when the JSON has no `apiAccessToken`.
pub const ENV_ACCESS_TOKEN: &str = "MCM_SDK_ACCESS_TOKEN";
/// Longest SDK access token (the engine accepts no longer one).
pub const MAX_ACCESS_TOKEN_LEN: usize = 256;
/// Longest host name accepted (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;

const CLASS: MeshErr = MeshErr::ClientConfigInval;
const CONN_STRING: &str = "apiConnectionString";

/// Where the engine's SDK listener is: a host (IP address or name) and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyAddr {
    /// IP address (an IPv6 one without brackets) or host name.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl fmt::Display for ProxyAddr {
    /// `host:port`, with an IPv6 address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An SDK access token; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// A validated client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The engine to connect to.
    pub proxy: ProxyAddr,
    /// Wait used by `mesh_get_buffer` and `mesh_put_buffer` (`MESH_TIMEOUT_DEFAULT`).
    pub default_timeout: Duration,
    /// Most connections the client may have at once, `1..=`[`MAX_CONNECTIONS`].
    pub max_connections: u32,
    /// The SDK access token sent in Hello, if any.
    pub access_token: Option<AccessToken>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            proxy: ProxyAddr {
                host: DEFAULT_PROXY_HOST.into(),
                port: DEFAULT_PROXY_PORT,
            },
            default_timeout: DEFAULT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            access_token: None,
        }
    }
}

impl ClientConfig {
    /// Parses and validates the JSON given to `mesh_create_client`, reading the process
    /// environment for the fallbacks. `None`, empty or blank means all defaults.
    pub fn from_json(json: Option<&str>) -> Result<Self, ConfigError> {
        Self::from_json_with_env(json, |key| std::env::var(key).ok())
    }

    /// Like [`ClientConfig::from_json`], with `env` looking up environment variables.
    pub fn from_json_with_env(
        json: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        let text = json.map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Ok(Self {
                proxy: proxy_addr(None, env)?,
                access_token: access_token(None, env)?,
                ..Self::default()
            });
        }
        let value = json::parse(text, CLASS)?;
        let root = Obj::root(&value, CLASS)?;
        check_version(&root)?;
        let proxy = proxy_addr(root.str(CONN_STRING)?, env)?;
        let access_token = access_token(root.str("apiAccessToken")?, env)?;
        let timeout_us = root.uint(
            "apiDefaultTimeoutMicroseconds",
            0..=MAX_TIMEOUT_US,
            DEFAULT_TIMEOUT.as_micros() as u64,
        )?;
        let max_connections = root.uint(
            "maxMediaConnections",
            1..=MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
        )?;
        Ok(Self {
            proxy,
            default_timeout: Duration::from_micros(timeout_us),
            max_connections,
            access_token,
        })
    }
}

fn check_version(root: &Obj<'_>) -> Result<(), ConfigError> {
    match root.str("apiVersion")? {
        None | Some(API_VERSION) => Ok(()),
        Some(other) => Err(root.err(
            "apiVersion",
            format_args!(
                "{} is not supported, allowed: {API_VERSION:?}",
                quote(other)
            ),
        )),
    }
}

/// The access token of the JSON, else of the environment, else none.
fn access_token(
    json: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<AccessToken>, ConfigError> {
    let (origin, text) = match json {
        Some(t) => ("apiAccessToken", t.to_owned()),
        None => match env(ENV_ACCESS_TOKEN) {
            Some(t) => (ENV_ACCESS_TOKEN, t.trim().to_owned()),
            None => return Ok(None),
        },
    };
    let ok = !text.is_empty()
        && text.len() <= MAX_ACCESS_TOKEN_LEN
        && text.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        // The value is a secret: say what is wrong with it, not what it is.
        return Err(ConfigError::new(
            CLASS,
            format!(
                "{origin}: a token of {} bytes is not allowed (allowed: 1 to \
                 {MAX_ACCESS_TOKEN_LEN} printable ASCII characters, no spaces)",
                text.len()
            ),
        ));
    }
    Ok(Some(AccessToken(text)))
}

/// Host and port from the connection string, else the environment, else the defaults.
fn proxy_addr(
    conn_string: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ProxyAddr, ConfigError> {
    let (host, port) = match conn_string {
        Some(s) => parse_connection_string(s)?,
        None => (None, None),
    };
    let host = match host {
        Some(h) => h,
        None => match env(ENV_PROXY_IP) {
            Some(h) => parse_host(ENV_PROXY_IP, h.trim())?,
            None => DEFAULT_PROXY_HOST.into(),
        },
    };
    let port = match port {
        Some(p) => p,
        None => match env(ENV_PROXY_PORT) {
            Some(p) => parse_port(ENV_PROXY_PORT, p.trim())?,
            None => DEFAULT_PROXY_PORT,
        },
    };
    Ok(ProxyAddr { host, port })
}

/// Splits `Server=<host>; Port=<port>` into its parts: `;`-separated `key=value` pairs, keys
/// case-insensitive, blanks around keys and values ignored, each key at most once.
fn parse_connection_string(s: &str) -> Result<(Option<String>, Option<u16>), ConfigError> {
    let (mut host, mut port) = (None, None);
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(conn_string_err(format_args!(
                "{} is not key=value, expected \"Server=<host>; Port=<port>\"",
                quote(part)
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        let dup = if key.eq_ignore_ascii_case("server") {
            host.replace(parse_host(CONN_STRING, value)?).is_some()
        } else if key.eq_ignore_ascii_case("port") {
            port.replace(parse_port(CONN_STRING, value)?).is_some()
        } else {
            return Err(conn_string_err(format_args!(
                "unknown key {}, allowed: \"Server\", \"Port\"",
                quote(key)
            )));
        };
        if dup {
            return Err(conn_string_err(format_args!("{} given twice", quote(key))));
        }
    }
    Ok((host, port))
}

fn conn_string_err(what: impl fmt::Display) -> ConfigError {
    ConfigError::new(CLASS, format!("{CONN_STRING}: {what}"))
}

/// An IP address (IPv6 optionally in brackets) or a host name of letters, digits, `-` and `.`.
fn parse_host(origin: &str, s: &str) -> Result<String, ConfigError> {
    let bare = s
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name_ok = !s.is_empty()
        && s.len() <= MAX_HOST_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name_ok {
        Ok(s.to_owned())
    } else {
        Err(ConfigError::new(
            CLASS,
            format!(
                "{origin}: server {} is neither an IP address nor a host name \
                 (letters, digits, '-' and '.', at most {MAX_HOST_LEN} characters)",
                quote(s)
            ),
        ))
    }
}

fn parse_port(origin: &str, s: &str) -> Result<u16, ConfigError> {
    match s.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigError::new(
            CLASS,
            format!("{origin}: port {} is not a number in 1..=65535", quote(s)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(json: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::from_json_with_env(Some(json), no_env)
    }

    fn parse_err(json: &str) -> String {
        let err = parse(json).unwrap_err();
        assert_eq!(err.class, MeshErr::ClientConfigInval, "{err}");
        err.message
    }

    fn env_with(ip: Option<&str>, port: Option<&str>) -> impl Fn(&str) -> Option<String> {
        let (ip, port) = (ip.map(String::from), port.map(String::from));
        move |k| match k {
            ENV_PROXY_IP => ip.clone(),
            ENV_PROXY_PORT => port.clone(),
            _ => None,
        }
    }

    #[test]
    fn the_access_token_comes_from_the_json_else_the_environment() {
        let env = |k: &str| (k == ENV_ACCESS_TOKEN).then(|| " from-env-0123456789 ".to_owned());
        let c =
            ClientConfig::from_json_with_env(Some(r#"{"apiAccessToken": "from-json-0123"}"#), env)
                .unwrap();
        assert_eq!(
            c.access_token.as_ref().map(AccessToken::expose),
            Some("from-json-0123")
        );
        assert!(
            !format!("{c:?}").contains("from-json"),
            "Debug hides the token"
        );
        let c = ClientConfig::from_json_with_env(None, env).unwrap();
        assert_eq!(
            c.access_token.as_ref().map(AccessToken::expose),
            Some("from-env-0123456789")
        );
        assert_eq!(parse("{}").unwrap().access_token, None);
        let e = parse_err(r#"{"apiAccessToken": "has space"}"#);
        assert!(
            e.starts_with("apiAccessToken: a token of 9 bytes is not allowed"),
            "{e}"
        );
        assert!(!e.contains("has space"), "{e}");
        let e = parse_err(r#"{"apiAccessToken": ""}"#);
        assert!(e.contains("a token of 0 bytes"), "{e}");
    }

    #[test]
    fn none_empty_and_blank_mean_defaults() {
        let want = ClientConfig::default();
        assert_eq!(
            ClientConfig::from_json_with_env(None, no_env).unwrap(),
            want
        );
        for s in ["", "  \n\t ", "{}"] {
            assert_eq!(parse(s).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn defaults_are_mcms() {
        let c = ClientConfig::default();
        assert_eq!(c.proxy.host, "127.0.0.1");
        assert_eq!(c.proxy.port, 8002);
        assert_eq!(c.default_timeout, Duration::from_micros(1_000_000));
        assert_eq!(c.max_connections, 32);
    }

    #[test]
    fn full_config_is_read() {
        let c = parse(
            r#"{"apiVersion": "v1", "apiConnectionString": "Server=192.168.95.1; Port=8001",
                "apiDefaultTimeoutMicroseconds": 100000, "maxMediaConnections": 4,
                "someFutureField": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(c.proxy.to_string(), "192.168.95.1:8001");
        assert_eq!(c.default_timeout, Duration::from_millis(100));
        assert_eq!(c.max_connections, 4);
    }

    #[test]
    fn timeout_is_microseconds_not_milliseconds() {
        let c = parse(r#"{"apiDefaultTimeoutMicroseconds": 2500}"#).unwrap();
        assert_eq!(c.default_timeout, Duration::from_micros(2500));
    }

    #[test]
    fn wrong_types_name_field_value_and_expectation() {
        let cases = [
            (
                r#"{"apiVersion": 1}"#,
                "apiVersion: expected a string, got integer 1",
            ),
            (
                r#"{"apiConnectionString": ["x"]}"#,
                "apiConnectionString: expected a string, got an array",
            ),
            (
                r#"{"apiDefaultTimeoutMicroseconds": "1000"}"#,
                "apiDefaultTimeoutMicroseconds: expected an unsigned integer, got string \"1000\"",
            ),
            (
                r#"{"apiDefaultTimeoutMicroseconds": 1.5}"#,
                "apiDefaultTimeoutMicroseconds: expected an unsigned integer, got number 1.5",
            ),
            (
                r#"{"maxMediaConnections": true}"#,
                "maxMediaConnections: expected an unsigned integer, got boolean true",
            ),
            (
                r#"{"maxMediaConnections": -1}"#,
                "maxMediaConnections: expected an unsigned integer, got integer -1",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(parse_err(json), want);
        }
    }

    #[test]
    fn max_media_connections_bounds() {
        for ok in [1, MAX_CONNECTIONS] {
            let json = format!(r#"{{"maxMediaConnections": {ok}}}"#);
            assert_eq!(parse(&json).unwrap().max_connections, ok);
        }
        assert_eq!(
            parse_err(r#"{"maxMediaConnections": 0}"#),
            "maxMediaConnections: 0 is out of range, allowed 1..=1024"
        );
        assert_eq!(
            parse_err(r#"{"maxMediaConnections": 1025}"#),
            "maxMediaConnections: 1025 is out of range, allowed 1..=1024"
        );
    }

    #[test]
    fn timeout_bounds() {
        let c = parse(r#"{"apiDefaultTimeoutMicroseconds": 0}"#).unwrap();
        assert_eq!(c.default_timeout, Duration::ZERO);
        let json = format!(r#"{{"apiDefaultTimeoutMicroseconds": {MAX_TIMEOUT_US}}}"#);
        assert_eq!(
            parse(&json).unwrap().default_timeout,
            Duration::from_millis(i32::MAX as u64)
        );
        let json = format!(
            r#"{{"apiDefaultTimeoutMicroseconds": {}}}"#,
            MAX_TIMEOUT_US + 1
        );
        assert_eq!(
            parse_err(&json),
            "apiDefaultTimeoutMicroseconds: 2147483647001 is out of range, \
             allowed 0..=2147483647000"
        );
    }

    #[test]
    fn only_v1_is_accepted() {
        assert_eq!(
            parse_err(r#"{"apiVersion": "v2"}"#),
            "apiVersion: \"v2\" is not supported, allowed: \"v1\""
        );
    }

    #[test]
    fn connection_string_forms() {
        let cases = [
            ("Server=10.0.0.1; Port=9000", "10.0.0.1:9000"),
            ("server=10.0.0.1;port=9000;", "10.0.0.1:9000"),
            (
                "  Port = 9000 ; Server = host-1.example ",
                "host-1.example:9000",
            ),
            ("Server=::1; Port=9000", "[::1]:9000"),
            ("Server=[fe80::1]; Port=1", "[fe80::1]:1"),
            ("Port=65535", "127.0.0.1:65535"),
            ("Server=localhost", "localhost:8002"),
            ("", "127.0.0.1:8002"),
        ];
        for (s, want) in cases {
            let json = format!(r#"{{"apiConnectionString": {s:?}}}"#);
            assert_eq!(parse(&json).unwrap().proxy.to_string(), want, "{s}");
        }
    }

    #[test]
    fn bad_connection_strings() {
        let cases = [
            (
                "Server 1.2.3.4",
                "apiConnectionString: \"Server 1.2.3.4\" is not key=value, \
                 expected \"Server=<host>; Port=<port>\"",
            ),
            (
                "Host=1.2.3.4",
                "apiConnectionString: unknown key \"Host\", allowed: \"Server\", \"Port\"",
            ),
            (
                "Port=0",
                "apiConnectionString: port \"0\" is not a number in 1..=65535",
            ),
            (
                "Port=65536",
                "apiConnectionString: port \"65536\" is not a number in 1..=65535",
            ),
            (
                "Port=1; port=2",
                "apiConnectionString: \"port\" given twice",
            ),
            (
                "Server=a b",
                "apiConnectionString: server \"a b\" is neither an IP address nor a host name \
                 (letters, digits, '-' and '.', at most 253 characters)",
            ),
            (
                "Server=",
                "apiConnectionString: server \"\" is neither an IP address nor a host name \
                 (letters, digits, '-' and '.', at most 253 characters)",
            ),
        ];
        for (s, want) in cases {
            let json = format!(r#"{{"apiConnectionString": {s:?}}}"#);
            assert_eq!(parse_err(&json), want, "{s}");
        }
        let long = format!(r#"{{"apiConnectionString": "Server={}"}}"#, "a".repeat(254));
        assert!(parse_err(&long).contains("at most 253"));
        let max = format!(r#"{{"apiConnectionString": "Server={}"}}"#, "a".repeat(253));
        assert!(parse(&max).is_ok());
    }

    #[test]
    fn env_fills_what_the_json_does_not_name() {
        let env = env_with(Some("10.1.2.3"), Some("9100"));
        let from = |json| ClientConfig::from_json_with_env(json, &env).unwrap().proxy;
        assert_eq!(from(None).to_string(), "10.1.2.3:9100");
        assert_eq!(from(Some("{}")).to_string(), "10.1.2.3:9100");
        let part = r#"{"apiConnectionString": "Port=7000"}"#;
        assert_eq!(from(Some(part)).to_string(), "10.1.2.3:7000");
        let full = r#"{"apiConnectionString": "Server=1.1.1.1; Port=7000"}"#;
        assert_eq!(from(Some(full)).to_string(), "1.1.1.1:7000");
    }

    #[test]
    fn env_blank_counts_as_unset_and_bad_env_is_named() {
        let blank = env_with(Some(" "), Some(""));
        let c = ClientConfig::from_json_with_env(None, blank).unwrap();
        assert_eq!(c.proxy.to_string(), "127.0.0.1:8002");
        let only_port = env_with(None, Some(" 9200 "));
        let c = ClientConfig::from_json_with_env(None, only_port).unwrap();
        assert_eq!(c.proxy.to_string(), "127.0.0.1:9200");
        let bad = env_with(None, Some("http"));
        let err = ClientConfig::from_json_with_env(None, bad).unwrap_err();
        assert_eq!(err.class, MeshErr::ClientConfigInval);
        assert_eq!(
            err.message,
            "MCM_MEDIA_PROXY_PORT: port \"http\" is not a number in 1..=65535"
        );
        let bad = env_with(Some("a/b"), None);
        let err = ClientConfig::from_json_with_env(None, bad).unwrap_err();
        assert!(
            err.message
                .starts_with("MCM_MEDIA_PROXY_IP: server \"a/b\"")
        );
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        assert_eq!(
            parse_err("{\n  \"maxMediaConnections\": ,\n}"),
            "malformed JSON: expected value at line 2 column 26"
        );
        assert_eq!(
            parse_err("[]"),
            "config: expected a JSON object, got an array"
        );
    }
}
