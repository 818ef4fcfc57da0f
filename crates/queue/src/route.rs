//! How a queued message reaches its server: a typed, versioned description stored with the
//! entry, never a secret and never something that runs.
//!
//! A route names an account in the caller's configuration and the flags that shaped the
//! connection. Secrets are re-read from that configuration at every attempt (a rotated
//! password applies to mail already queued); a route can point at a password *file* or
//! *environment variable*, but it cannot hold a command: whoever can write the spool must
//! not be able to make the runner execute anything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The route format this version writes.
pub const ROUTE_VERSION: u32 = 1;

/// The longest per-command timeout a route may carry (24 h): anything larger is a mistake,
/// and a number too large for a `Duration` must never reach one.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// TLS as the route asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteTls {
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS when offered.
    Opportunistic,
    /// Clear text.
    None,
}

/// Where a password or token comes from at attempt time. There is deliberately no command
/// variant: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Secret {
    /// A password in this environment variable of the runner.
    PasswordEnv(String),
    /// A password in this file (checked for private permissions by the reader).
    PasswordFile(PathBuf),
    /// An OAuth 2 bearer token in this environment variable.
    OauthTokenEnv(String),
}

/// How a queued message is sent. Two messages with equal routes share connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The format version ([`ROUTE_VERSION`]).
    pub version: u32,
    /// An account of the caller's configuration, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A relay as `host[:port]`, when given without an account (or overriding its server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Straight to each recipient domain's exchangers (no relay).
    #[serde(default)]
    pub direct: bool,
    /// TLS mode, when not the account's or the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// Extra trusted certificates (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The operating system's trust store is trusted too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system_roots: bool,
    /// The server certificate's SHA-256 fingerprint it must have (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    /// Public key pins (`sha256//BASE64`, `;`-separated) the server must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_pubkey: Option<String>,
    /// A client certificate (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM file; the path only, never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Messages carry REQUIRETLS (RFC 8689) and go only over verified TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
    /// Certificates not verified (the user asked for it when queueing).
    #[serde(default)]
    pub insecure: bool,
    /// The EHLO name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// Per-command timeout in milliseconds (at most [`MAX_TIMEOUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Password authentication allowed without TLS.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// The user name to authenticate as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Where the password or token comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A password file others can read is accepted (the user said so when queueing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_readable_secret_file: bool,
    /// The SASL mechanism, by name (`plain`, `login`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// A name server for MX lookups instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<SocketAddr>,
    /// The exchangers' port (tests and unusual networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx_port: Option<u16>,
    /// A SOCKS5 proxy as `socks5://[user@]host:port`: never with a password (that comes from
    /// [`Route::proxy_secret`], or the account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Where the proxy password comes from (an environment variable or a file; never a
    /// command, never the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret: Option<Secret>,
    /// The local address to connect from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<std::net::IpAddr>,
    /// The protocol the sender chose: LMTP (RFC 2033) when true, SMTP when false, the
    /// account's when not given. A runner that does not know the field refuses the route
    /// (unknown fields are refused) rather than sending SMTP to an LMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lmtp: Option<bool>,
}

/// Why a stored route cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Written by a newer postline.
    #[error("route format {0} is newer than this postline understands ({ROUTE_VERSION})")]
    Version(u32),
    /// A timeout of zero or larger than [`MAX_TIMEOUT`].
    #[error("route timeout {0} ms is out of range (1 ms to 24 h)")]
    Timeout(u64),
}

impl Route {
    /// A route through `server` (`host[:port]`).
    pub fn relay(server: impl Into<String>) -> Route {
        Route {
            version: ROUTE_VERSION,
            server: Some(server.into()),
            ..Route::default()
        }
    }

    /// Straight to the exchangers.
    pub fn direct() -> Route {
        Route {
            version: ROUTE_VERSION,
            direct: true,
            ..Route::default()
        }
    }

    /// Checks what the type cannot: the version and the numbers.
    pub fn validate(&self) -> Result<(), RouteError> {
        if self.version > ROUTE_VERSION || self.version == 0 {
            return Err(RouteError::Version(self.version));
        }
        if let Some(ms) = self.timeout_ms {
            if ms == 0 || ms > MAX_TIMEOUT.as_millis() as u64 {
                return Err(RouteError::Timeout(ms));
            }
        }
        Ok(())
    }

    /// The per-command timeout, when the route sets one (validated).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms
            .filter(|ms| *ms > 0 && *ms <= MAX_TIMEOUT.as_millis() as u64)
            .map(Duration::from_millis)
    }

    /// A short description for people: `relay HOST (account NAME)`, `account NAME`,
    /// `relay HOST`, or `direct (MX)`.
    pub fn describe(&self) -> String {
        let mut d = match (&self.account, &self.server, self.direct) {
            (_, _, true) => "direct (MX)".to_string(),
            (Some(a), Some(s), _) => format!("relay {s} (account {a})"),
            (Some(a), None, _) => format!("account {a}"),
            (None, Some(s), _) => format!("relay {s}"),
            (None, None, false) => "default account".into(),
        };
        // The proxy as stored: never with a password (a queued route holds none).
        if let Some(p) = &self.proxy {
            d.push_str(&format!(" via proxy {p}"));
        }
        if let Some(ip) = self.source_address {
            d.push_str(&format!(" from {ip}"));
        }
        if self.lmtp == Some(true) {
            d.push_str(" over LMTP");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_with_its_proxy_and_source_address() {
        let mut r = Route::relay("mail.example.com:587");
        assert_eq!(r.describe(), "relay mail.example.com:587");
        r.proxy = Some("socks5://me@proxy.example:1080".into());
        r.source_address = Some("192.0.2.1".parse().unwrap());
        assert_eq!(
            r.describe(),
            "relay mail.example.com:587 via proxy socks5://me@proxy.example:1080 from 192.0.2.1"
        );
    }

    #[test]
    fn round_trips_and_refuses_commands_and_unknown_fields() {
        let mut r = Route::relay("mail.example.com:587");
        r.user = Some("me".into());
        r.secret = Some(Secret::PasswordEnv("PW".into()));
        let text = serde_json::to_string(&r).unwrap();
        let back: Route = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        // A command smuggled into a stored route is not a route.
        for bad in [
            r#"{"version":1,"password_cmd":"touch /tmp/pwned"}"#,
            r#"{"version":1,"secret":{"password-cmd":"touch /tmp/pwned"}}"#,
        ] {
            assert!(serde_json::from_str::<Route>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_fields_are_optional_and_round_trip() {
        // A route written before proxies existed still reads.
        let old: Route = serde_json::from_str(r#"{"version":1,"server":"h:25"}"#).unwrap();
        assert_eq!(
            (old.proxy, old.proxy_secret, old.source_address),
            (None, None, None)
        );
        let mut r = Route::relay("h:25");
        r.proxy = Some("socks5://u@127.0.0.1:1080".into());
        r.proxy_secret = Some(Secret::PasswordEnv("PROXY_PW".into()));
        r.source_address = Some("127.0.0.2".parse().unwrap());
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Route>(&text).unwrap(), r);
    }

    #[test]
    fn absurd_numbers_and_future_versions_are_refused() {
        let mut r = Route::relay("x");
        r.timeout_ms = Some(u64::MAX);
        assert_eq!(r.validate(), Err(RouteError::Timeout(u64::MAX)));
        assert_eq!(r.timeout(), None);
        r.timeout_ms = Some(30_000);
        assert_eq!(r.timeout(), Some(Duration::from_secs(30)));
        r.version = 9;
        assert_eq!(r.validate(), Err(RouteError::Version(9)));
    }
}
