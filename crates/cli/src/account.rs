//! Accounts from the TOML config file, and the secrets they point to.
//!
//! The file holds `[accounts.NAME]` tables and an optional top-level `default = "NAME"`.
//! Secrets are never stored in it: an account names where its password or OAuth token
//! comes from (an environment variable, a file, or a command), and [`read_secret`] fetches
//! it when needed. Every error is one line naming the file, and the line when there is one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use toml::Spanned;

/// `tls = ...` in an account, and `--tls`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS when offered.
    Opportunistic,
    /// Clear text.
    None,
}

/// `protocol = ...` in an account, and `--protocol`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SMTP (RFC 5321).
    Smtp,
    /// LMTP (RFC 2033): delivery into a mail store such as Dovecot or Cyrus, one result per
    /// recipient.
    Lmtp,
}

impl TlsMode {
    /// The config file's spelling.
    fn from_config(s: &str) -> Option<TlsMode> {
        match s {
            "starttls" => Some(TlsMode::Starttls),
            "implicit" => Some(TlsMode::Implicit),
            "opportunistic" => Some(TlsMode::Opportunistic),
            "none" => Some(TlsMode::None),
            _ => None,
        }
    }
}

/// Where a secret comes from. Never the secret itself on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's value.
    Env(String),
    /// A file's first line; refused when group or others can read it, unless allowed.
    File(PathBuf),
    /// A shell command's first line of output (`sh -c`).
    Cmd(String),
}

/// One `[accounts.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// The table's name.
    pub name: String,
    /// `server`: host name.
    pub server: String,
    /// `port`.
    pub port: Option<u16>,
    /// `tls`.
    pub tls: Option<TlsMode>,
    /// `protocol`: `smtp` (default) or `lmtp`.
    pub protocol: Option<Protocol>,
    /// `user`.
    pub user: Option<String>,
    /// `password_cmd` / `password_env` / `password_file` (at most one).
    pub password: Option<SecretSource>,
    /// `oauth_token_cmd` / `oauth_token_env` (at most one).
    pub oauth_token: Option<SecretSource>,
    /// `from`: default envelope sender.
    pub from: Option<String>,
    /// `helo`.
    pub helo: Option<String>,
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `system_roots`: also trust the operating system's store.
    pub system_roots: bool,
    /// `tls_fingerprint`: the server certificate's SHA-256 (hex).
    pub tls_fingerprint: Option<String>,
    /// `pinned_pubkey`: `sha256//BASE64` of the server's public key.
    pub pinned_pubkey: Option<String>,
    /// `cert`: client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// `key`: its private key (PEM).
    pub key: Option<PathBuf>,
    /// `dkim_key`: the DKIM signing key (PEM, RSA or Ed25519).
    pub dkim_key: Option<PathBuf>,
    /// `dkim_selector`.
    pub dkim_selector: Option<String>,
    /// `dkim_domain`.
    pub dkim_domain: Option<String>,
    /// `log_file`: a line per message appended to this file (msmtp's `logfile`).
    pub log_file: Option<PathBuf>,
    /// `log = "syslog"`: a line per message to the system log, facility mail.
    pub syslog: bool,
    /// `proxy`: `socks5://[user@]host[:port]` (checked; never with a password).
    pub proxy: Option<String>,
    /// `proxy_password_cmd` / `proxy_password_env` / `proxy_password_file` (at most one).
    pub proxy_password: Option<SecretSource>,
    /// `source_address`: the local IP address to connect from.
    pub source_address: Option<std::net::IpAddr>,
    /// `queue_url`: a queue in PostgreSQL (`postgres://user@host/db`, never with a password:
    /// that comes from `PGPASSWORD`) instead of the local spool.
    pub queue_url: Option<String>,
}

/// A bad config file, or a secret that cannot be read. Displays as one line naming the file
/// (and line, for syntax errors). Exit 78 (EX_CONFIG).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The parsed config file.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// The file it came from.
    pub path: PathBuf,
    /// All accounts, in file order.
    pub accounts: Vec<Account>,
    /// The default account's name, when one is defined.
    pub default: Option<String>,
}

/// `$POSTLINE_CONFIG`, else `$XDG_CONFIG_HOME/postline/config.toml`, else
/// `$HOME/.config/postline/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    config_path_from(|name| std::env::var_os(name))
}

/// [`config_path`] with the environment given as a lookup. Empty values count as unset, and
/// a relative `XDG_CONFIG_HOME` is ignored (the XDG spec says so).
fn config_path_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(p) = var("POSTLINE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = var("XDG_CONFIG_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            return Some(x.join("postline").join("config.toml"));
        }
    }
    var("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("postline")
            .join("config.toml")
    })
}

/// The file's top level, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<Spanned<String>>,
    accounts: Option<BTreeMap<Spanned<String>, Spanned<RawAccount>>>,
}

/// One account table, as written. Values that get checked here keep their spans so errors
/// can name the line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    server: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    protocol: Option<Spanned<String>>,
    user: Option<String>,
    /// Refused: accepted by the parser only to give a clear message.
    password: Option<Spanned<toml::Value>>,
    password_cmd: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    /// Refused, like `password`.
    oauth_token: Option<Spanned<toml::Value>>,
    oauth_token_cmd: Option<Spanned<String>>,
    oauth_token_env: Option<Spanned<String>>,
    from: Option<String>,
    helo: Option<String>,
    ca_file: Option<String>,
    system_roots: Option<bool>,
    tls_fingerprint: Option<String>,
    pinned_pubkey: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    dkim_key: Option<String>,
    dkim_selector: Option<String>,
    dkim_domain: Option<String>,
    log_file: Option<String>,
    log: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    proxy_password_cmd: Option<Spanned<String>>,
    proxy_password_env: Option<Spanned<String>>,
    proxy_password_file: Option<Spanned<String>>,
    source_address: Option<Spanned<String>>,
    queue_url: Option<Spanned<String>>,
    default: Option<Spanned<bool>>,
}

/// Keys that exist only to be refused; left out of "expected one of" lists.
const REFUSED_KEYS: [&str; 2] = ["password", "oauth_token"];

/// Builds errors about one file's text.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// A file named in the config: `~/` is the home directory, a relative path is relative
    /// to the config file's directory (not to wherever postline runs).
    fn file_path(&self, value: &str) -> PathBuf {
        if let Some(rest) = value.strip_prefix("~/") {
            if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                return PathBuf::from(home).join(rest);
            }
        }
        let p = PathBuf::from(value);
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        }
    }

    /// `config error: FILE: MSG`.
    fn plain(&self, msg: impl std::fmt::Display) -> ConfigError {
        ConfigError(one_line(&format!(
            "config error: {}: {msg}",
            self.path.display()
        )))
    }

    /// `config error: FILE line N: MSG`, N being the line where the byte offset falls.
    fn at(&self, offset: usize, msg: impl std::fmt::Display) -> ConfigError {
        let (line, _) = line_col(self.text, offset);
        ConfigError(one_line(&format!(
            "config error: {} line {line}: {msg}",
            self.path.display()
        )))
    }

    /// `config error: FILE line N, column C: MSG`.
    fn at_col(&self, offset: usize, msg: impl std::fmt::Display) -> ConfigError {
        let (line, col) = line_col(self.text, offset);
        ConfigError(one_line(&format!(
            "config error: {} line {line}, column {col}: {msg}",
            self.path.display()
        )))
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end count as
/// the end.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let col = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, col)
}

/// Folds any line breaks so a message stays on one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split(['\n', '\r']).filter(|p| !p.trim().is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(part.trim_end());
    }
    out
}

/// Rewrites serde's messages into the file's vocabulary: `unknown field \`x\`, expected one
/// of \`a\`, \`b\`` becomes `unknown field "x", expected one of a, b` (without the refused
/// keys); other backquotes become double quotes.
fn tidy_message(msg: &str) -> String {
    const UNKNOWN: &str = "unknown field `";
    if let Some(rest) = msg.strip_prefix(UNKNOWN) {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| !REFUSED_KEYS.contains(k))
                .collect();
            return if expected.is_empty() {
                format!("unknown field \"{field}\"")
            } else {
                format!(
                    "unknown field \"{field}\", expected one of {}",
                    expected.join(", ")
                )
            };
        }
    }
    msg.replace('`', "\"")
        .replace("expected i64", "expected an integer")
}

/// Reads and validates the file.
pub fn load(path: &Path) -> Result<Accounts, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError(format!(
                "config error: {} not found",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(ConfigError(format!(
                "config error: {}: not valid UTF-8",
                path.display()
            )))
        }
        Err(e) => {
            return Err(ConfigError(one_line(&format!(
                "config error: {}: cannot read: {e}",
                path.display()
            ))))
        }
    };
    parse(path, &text)
}

/// Parses and validates a config file's text; `path` is for messages.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Accounts, ConfigError> {
    let cx = Ctx { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let msg = tidy_message(e.message().trim());
        match e.span() {
            Some(span) => cx.at_col(span.start, msg),
            None => cx.plain(msg),
        }
    })?;

    let mut entries: Vec<(Spanned<String>, Spanned<RawAccount>)> =
        raw.accounts.unwrap_or_default().into_iter().collect();
    // The map is ordered by name; the spans give the file's order.
    entries.sort_by_key(|(name, _)| name.span().start);

    let mut accounts = Vec::with_capacity(entries.len());
    let mut flagged: Option<(String, usize)> = None;
    for (name, table) in entries {
        let name_at = name.span().start;
        let name = name.into_inner();
        let raw = table.into_inner();
        if let Some(d) = &raw.default {
            if *d.get_ref() {
                if let Some((first, _)) = &flagged {
                    return Err(cx.at(
                        d.span().start,
                        format!(
                            "accounts \"{first}\" and \"{name}\" both have default = true; \
                             keep one"
                        ),
                    ));
                }
                flagged = Some((name.clone(), d.span().start));
            }
        }
        accounts.push(account(&cx, name, name_at, raw)?);
    }

    let default = match raw.default {
        Some(d) => {
            let at = d.span().start;
            let d = d.into_inner();
            if !accounts.iter().any(|a| a.name == d) {
                return Err(cx.at(
                    at,
                    format!("default = \"{d}\" names no account ({})", names(&accounts)),
                ));
            }
            if let Some((flag, flag_at)) = &flagged {
                if *flag != d {
                    return Err(cx.at(
                        *flag_at,
                        format!(
                            "account \"{flag}\" has default = true but the top-level \
                             default is \"{d}\"; keep one"
                        ),
                    ));
                }
            }
            Some(d)
        }
        None if accounts.len() == 1 => Some(accounts[0].name.clone()),
        None => flagged.map(|(name, _)| name),
    };

    Ok(Accounts {
        path: path.to_path_buf(),
        accounts,
        default,
    })
}

/// `accounts: a, b`, or `no accounts`.
fn names(accounts: &[Account]) -> String {
    if accounts.is_empty() {
        "no accounts".to_string()
    } else {
        let v: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        format!("accounts: {}", v.join(", "))
    }
}

/// Whether `server` looks like `host:port` (or `[v6]:port`), rather than a host name or a bare
/// IPv6 address.
fn has_port(server: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = server.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => tail.strip_prefix(':').is_some_and(digits),
            None => false,
        };
    }
    match server.split_once(':') {
        Some((_, port)) => !port.contains(':') && digits(port),
        None => false,
    }
}

/// Checks one account table and turns it into an [`Account`].
fn account(
    cx: &Ctx<'_>,
    name: String,
    name_at: usize,
    raw: RawAccount,
) -> Result<Account, ConfigError> {
    if let Some(p) = &raw.password {
        return Err(cx.at(
            p.span().start,
            format!(
                "account \"{name}\": secrets are not stored in the config file; use \
                 password_cmd, password_env or password_file instead of password"
            ),
        ));
    }
    if let Some(p) = &raw.oauth_token {
        return Err(cx.at(
            p.span().start,
            format!(
                "account \"{name}\": secrets are not stored in the config file; use \
                 oauth_token_cmd or oauth_token_env instead of oauth_token"
            ),
        ));
    }

    let server = match raw.server {
        None => {
            return Err(cx.at(name_at, format!("account \"{name}\" has no server")));
        }
        Some(s) => {
            let at = s.span().start;
            let s = s.into_inner();
            let host = s.trim();
            if host.is_empty() {
                return Err(cx.at(at, format!("account \"{name}\": server is empty")));
            }
            if host != s || host.chars().any(char::is_whitespace) {
                return Err(cx.at(
                    at,
                    format!("account \"{name}\": server contains white space"),
                ));
            }
            if has_port(host) {
                return Err(cx.at(
                    at,
                    format!(
                        "account \"{name}\": server = \"{host}\" includes a port; write the \
                         host in server and the port as port = NUMBER"
                    ),
                ));
            }
            s
        }
    };

    let port = match raw.port {
        None => None,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(n) if n != 0 => Some(n),
            _ => {
                return Err(cx.at(
                    p.span().start,
                    format!(
                        "account \"{name}\": invalid value for port: {}, expected 1 to 65535",
                        p.get_ref()
                    ),
                ))
            }
        },
    };

    let tls = match raw.tls {
        None => None,
        Some(t) => match TlsMode::from_config(t.get_ref()) {
            Some(mode) => Some(mode),
            None => {
                return Err(cx.at(
                    t.span().start,
                    format!(
                        "invalid value for tls: \"{}\", expected \
                         starttls|implicit|opportunistic|none",
                        t.get_ref().escape_debug()
                    ),
                ))
            }
        },
    };

    let protocol = match raw.protocol {
        None => None,
        Some(p) => match p.get_ref().as_str() {
            "smtp" => Some(Protocol::Smtp),
            "lmtp" => Some(Protocol::Lmtp),
            other => {
                return Err(cx.at(
                    p.span().start,
                    format!(
                    "account \"{name}\": invalid value for protocol: \"{}\", expected smtp|lmtp",
                    other.escape_debug()
                ),
                ))
            }
        },
    };

    let password = secret_source(
        cx,
        &name,
        [
            ("password_cmd", raw.password_cmd, SourceKind::Cmd),
            ("password_env", raw.password_env, SourceKind::Env),
            ("password_file", raw.password_file, SourceKind::File),
        ],
    )?;
    let oauth_token = secret_source(
        cx,
        &name,
        [
            ("oauth_token_cmd", raw.oauth_token_cmd, SourceKind::Cmd),
            ("oauth_token_env", raw.oauth_token_env, SourceKind::Env),
        ],
    )?;
    if let (Some((_, p_at)), Some((_, t_at))) = (&password, &oauth_token) {
        return Err(cx.at(
            (*p_at).max(*t_at),
            format!("account \"{name}\" has both a password and an OAuth token; keep one"),
        ));
    }

    let syslog = match raw.log {
        None => false,
        Some(l) if l.get_ref() == "syslog" => true,
        Some(l) => {
            return Err(cx.at(
                l.span().start,
                format!(
                    "account \"{name}\": invalid value for log: \"{}\", expected \"syslog\" \
                     (a file is log_file = \"PATH\")",
                    l.get_ref().escape_debug()
                ),
            ))
        }
    };
    let proxy = match raw.proxy {
        None => None,
        Some(p) => {
            let at = p.span().start;
            let text = p.into_inner();
            let parsed = postline::Proxy::from_url(&text).map_err(|e| {
                cx.at(
                    at,
                    format!(
                        "account \"{name}\": proxy: {}",
                        e.to_string().trim_start_matches("configuration: proxy: ")
                    ),
                )
            })?;
            if parsed.has_password() || inline_password(&text) {
                return Err(cx.at(
                    at,
                    format!(
                        "account \"{name}\": secrets are not stored in the config file; write \
                         proxy = \"{parsed}\" and use proxy_password_cmd, proxy_password_env or \
                         proxy_password_file"
                    ),
                ));
            }
            Some(text)
        }
    };
    let proxy_password = secret_source(
        cx,
        &name,
        [
            (
                "proxy_password_cmd",
                raw.proxy_password_cmd,
                SourceKind::Cmd,
            ),
            (
                "proxy_password_env",
                raw.proxy_password_env,
                SourceKind::Env,
            ),
            (
                "proxy_password_file",
                raw.proxy_password_file,
                SourceKind::File,
            ),
        ],
    )?;
    if let Some((_, at)) = &proxy_password {
        if proxy
            .as_deref()
            .and_then(|p| postline::Proxy::from_url(p).ok())
            .is_none_or(|p| p.user().is_none())
        {
            return Err(cx.at(
                *at,
                format!(
                    "account \"{name}\": a proxy password needs proxy = \"socks5://USER@HOST:PORT\" (the user name in the URL)"
                ),
            ));
        }
    }
    let source_address = match raw.source_address {
        None => None,
        Some(a) => match a.get_ref().trim().parse::<std::net::IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                return Err(cx.at(
                    a.span().start,
                    format!(
                        "account \"{name}\": source_address = \"{}\" is not an IP address",
                        a.get_ref().escape_debug()
                    ),
                ))
            }
        },
    };
    let queue_url = match raw.queue_url {
        None => None,
        Some(u) => {
            let at = u.span().start;
            let text = u.into_inner();
            if !postline_queue::AnyStore::is_database(&text) {
                return Err(cx.at(
                    at,
                    format!(
                        "account \"{name}\": queue_url = \"{}\" is not a postgres:// URL (a \
                         spool directory is --queue-dir or POSTLINE_QUEUE_DIR)",
                        text.escape_debug()
                    ),
                ));
            }
            if inline_password(&text) || crate::queue::query_password(&text) {
                return Err(cx.at(
                    at,
                    format!(
                        "account \"{name}\": secrets are not stored in the config file; write \
                         queue_url without the password and set PGPASSWORD"
                    ),
                ));
            }
            Some(text)
        }
    };

    Ok(Account {
        name,
        server,
        port,
        tls,
        protocol,
        user: raw.user,
        password: password.map(|(s, _)| s),
        oauth_token: oauth_token.map(|(s, _)| s),
        from: raw.from,
        helo: raw.helo,
        ca_file: raw.ca_file.map(|p| cx.file_path(&p)),
        system_roots: raw.system_roots.unwrap_or(false),
        tls_fingerprint: raw.tls_fingerprint,
        pinned_pubkey: raw.pinned_pubkey,
        cert: raw.cert.map(|p| cx.file_path(&p)),
        key: raw.key.map(|p| cx.file_path(&p)),
        dkim_key: raw.dkim_key.map(|p| cx.file_path(&p)),
        dkim_selector: raw.dkim_selector,
        dkim_domain: raw.dkim_domain,
        log_file: raw.log_file.map(|p| cx.file_path(&p)),
        syslog,
        proxy,
        proxy_password: proxy_password.map(|(s, _)| s),
        source_address,
        queue_url,
    })
}

/// Whether a proxy URL carries a password (`user:...@`), even an empty one.
pub fn inline_password(url: &str) -> bool {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[derive(Clone, Copy)]
enum SourceKind {
    Cmd,
    Env,
    File,
}

/// At most one of the given keys; the source and where its value is.
fn secret_source<const N: usize>(
    cx: &Ctx<'_>,
    account: &str,
    keys: [(&str, Option<Spanned<String>>, SourceKind); N],
) -> Result<Option<(SecretSource, usize)>, ConfigError> {
    // In file order, so a conflict is reported at the later key.
    let mut present: Vec<(&str, Spanned<String>, SourceKind)> = keys
        .into_iter()
        .filter_map(|(key, value, kind)| value.map(|v| (key, v, kind)))
        .collect();
    present.sort_by_key(|(_, v, _)| v.span().start);
    let mut found: Option<(&str, SecretSource, usize)> = None;
    for (key, value, kind) in present {
        let at = value.span().start;
        if let Some((first, _, _)) = &found {
            return Err(cx.at(
                at,
                format!("account \"{account}\" has both {first} and {key}; keep one"),
            ));
        }
        let value = value.into_inner();
        if value.trim().is_empty() {
            return Err(cx.at(at, format!("account \"{account}\": {key} is empty")));
        }
        let source = match kind {
            SourceKind::Cmd => SecretSource::Cmd(value),
            SourceKind::Env => SecretSource::Env(value),
            SourceKind::File => SecretSource::File(PathBuf::from(value)),
        };
        found = Some((key, source, at));
    }
    Ok(found.map(|(_, s, at)| (s, at)))
}

impl Accounts {
    /// `--account NAME`, or the default: the `default` key, else the only account, else the
    /// one with `default = true`. `None` when no name was asked and there is no default.
    pub fn select(&self, name: Option<&str>) -> Result<Option<&Account>, ConfigError> {
        let find = |n: &str| self.accounts.iter().find(|a| a.name == n);
        match name {
            Some(n) => match find(n) {
                Some(a) => Ok(Some(a)),
                None => Err(ConfigError(one_line(&format!(
                    "config error: no account \"{}\" in {} ({})",
                    n.escape_debug(),
                    self.path.display(),
                    names(&self.accounts)
                )))),
            },
            None => match &self.default {
                Some(d) => match find(d) {
                    Some(a) => Ok(Some(a)),
                    None => Err(ConfigError(one_line(&format!(
                        "config error: default account \"{}\" is not in {} ({})",
                        d.escape_debug(),
                        self.path.display(),
                        names(&self.accounts)
                    )))),
                },
                None if self.accounts.len() == 1 => Ok(self.accounts.first()),
                None => Ok(None),
            },
        }
    }
}

/// How long a `*_cmd` may run before it is killed.
const SECRET_CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a secret file or command output that is read.
const SECRET_READ_LIMIT: u64 = 64 * 1024;

/// Reads a secret: env var value, first line of a file (permission-checked unless
/// `allow_world_readable`), or first line of a command's stdout. Empty is an error.
pub fn read_secret(
    source: &SecretSource,
    allow_world_readable: bool,
) -> Result<String, ConfigError> {
    read_secret_with_timeout(source, allow_world_readable, SECRET_CMD_TIMEOUT)
}

/// [`read_secret`] with the command timeout given.
fn read_secret_with_timeout(
    source: &SecretSource,
    allow_world_readable: bool,
    timeout: Duration,
) -> Result<String, ConfigError> {
    let secret = match source {
        SecretSource::Env(var) => {
            let value = match std::env::var_os(var) {
                None => {
                    return Err(ConfigError(format!(
                        "config error: environment variable {var} is not set"
                    )))
                }
                Some(v) => v,
            };
            let value = value.into_string().map_err(|_| {
                ConfigError(format!(
                    "config error: environment variable {var} is not valid UTF-8"
                ))
            })?;
            if value.is_empty() {
                return Err(ConfigError(format!(
                    "config error: environment variable {var} is empty"
                )));
            }
            value
        }
        SecretSource::File(path) => read_secret_file(path, allow_world_readable)?,
        SecretSource::Cmd(cmd) => run_secret_cmd(cmd, timeout)?,
    };
    if secret.is_empty() {
        return Err(ConfigError(match source {
            SecretSource::Env(var) => format!("config error: environment variable {var} is empty"),
            SecretSource::File(path) => {
                format!("config error: {}: first line is empty", path.display())
            }
            SecretSource::Cmd(_) => {
                "config error: secret command printed an empty first line".to_string()
            }
        }));
    }
    Ok(secret)
}

/// The first line of `bytes`, without its line ending.
fn first_line(bytes: &[u8]) -> &[u8] {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[..i],
        None => bytes,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first line of a secret file, refused when group or others may read it.
fn read_secret_file(path: &Path, allow_world_readable: bool) -> Result<String, ConfigError> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| {
        ConfigError(one_line(&format!(
            "config error: cannot read secret file {shown}: {e}"
        )))
    })?;
    let meta = file.metadata().map_err(|e| {
        ConfigError(one_line(&format!(
            "config error: cannot read secret file {shown}: {e}"
        )))
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o044 != 0 && !allow_world_readable {
        return Err(ConfigError(format!(
            "config error: secret file {shown} is readable by group or others (mode {:04o}); \
             run chmod 600 {shown}",
            mode & 0o777
        )));
    }
    if meta.is_dir() {
        return Err(ConfigError(format!(
            "config error: secret file {shown} is a directory"
        )));
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(SECRET_READ_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            ConfigError(one_line(&format!(
                "config error: cannot read secret file {shown}: {e}"
            )))
        })?;
    let line = first_line(&bytes);
    match std::str::from_utf8(line) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(ConfigError(format!(
            "config error: secret file {shown}: first line is not valid UTF-8"
        ))),
    }
}

/// Runs `sh -c CMD` (stdin null, stderr inherited) and returns the first line of its output;
/// kills it after `timeout`. The output is never put in an error.
fn run_secret_cmd(cmd: &str, timeout: Duration) -> Result<String, ConfigError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            ConfigError(one_line(&format!(
                "config error: cannot run secret command with sh: {e}"
            )))
        })?;
    let start = Instant::now();

    // Read on another thread so a chatty command cannot fill the pipe and stall. The
    // reader is not joined: a leftover grandchild may hold the pipe open.
    let (tx, rx) = mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let res = (&mut stdout)
                .take(SECRET_READ_LIMIT)
                .read_to_end(&mut out)
                .and_then(|_| std::io::copy(&mut stdout, &mut std::io::sink()));
            let _ = tx.send(res.map(|_| out));
        });
    }

    let timed_out = || {
        ConfigError(format!(
            "config error: secret command did not finish within {} s; killed",
            timeout.as_secs_f64()
        ))
    };
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConfigError(one_line(&format!(
                    "config error: waiting for secret command: {e}"
                ))));
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out());
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(50));
    };

    if !status.success() {
        return Err(ConfigError(format!(
            "config error: secret command failed ({status})"
        )));
    }
    let remaining = timeout.saturating_sub(start.elapsed());
    let out = match rx.recv_timeout(remaining) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(ConfigError(one_line(&format!(
                "config error: reading secret command output: {e}"
            ))))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(ConfigError(
                "config error: secret command output could not be read".to_string(),
            ))
        }
    };
    match std::str::from_utf8(first_line(&out)) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(ConfigError(
            "config error: secret command output is not valid UTF-8".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const EXAMPLE: &str = r#"default = "work"            # optional

[accounts.work]
server = "smtp.example.com"
port = 587
tls = "starttls"
user = "me@example.com"
password_cmd = "pass show smtp"
from = "me@example.com"
helo = "laptop.example.com"
ca_file = "/path/ca.pem"
tls_fingerprint = "AB:CD"
cert = "/path/me.pem"
key = "/path/me.key"

[accounts.home]
server = "mail.example.net"
tls = "implicit"
oauth_token_env = "HOME_TOKEN"
"#;

    fn p(text: &str) -> Result<Accounts, ConfigError> {
        parse(Path::new("/x/config.toml"), text)
    }

    #[test]
    fn dkim_fields_and_a_key_path_relative_to_the_file() {
        let a = p("[accounts.w]\nserver = \"h\"\ndkim_key = \"keys/dkim.pem\"\ndkim_selector = \"s1\"\ndkim_domain = \"example.org\"\n").unwrap();
        let w = &a.accounts[0];
        assert_eq!(w.dkim_key.as_deref(), Some(Path::new("/x/keys/dkim.pem")));
        assert_eq!(w.dkim_selector.as_deref(), Some("s1"));
        assert_eq!(w.dkim_domain.as_deref(), Some("example.org"));
    }

    #[test]
    fn log_fields_and_a_log_path_relative_to_the_file() {
        let a = p("[accounts.w]\nserver = \"h\"\nlog_file = \"logs/postline.log\"\nlog = \"syslog\"\n\n[accounts.v]\nserver = \"h\"\n").unwrap();
        let w = &a.accounts[0];
        assert_eq!(
            w.log_file.as_deref(),
            Some(Path::new("/x/logs/postline.log"))
        );
        assert!(w.syslog);
        let v = &a.accounts[1];
        assert_eq!(v.log_file, None);
        assert!(!v.syslog);
        let e = err("[accounts.w]\nserver = \"h\"\nlog = \"file\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(
            e.contains("invalid value for log: \"file\", expected \"syslog\""),
            "{e}"
        );
    }

    /// The error message, asserting it names the file and is one line.
    fn err(text: &str) -> String {
        let e = p(text).expect_err("should fail").0;
        assert!(e.starts_with("config error: /x/config.toml"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn account_parses_example() {
        let a = p(EXAMPLE).unwrap();
        assert_eq!(a.default.as_deref(), Some("work"));
        assert_eq!(a.path, Path::new("/x/config.toml"));
        let names: Vec<&str> = a.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["work", "home"], "file order");
        assert_eq!(
            a.accounts[0],
            Account {
                name: "work".into(),
                server: "smtp.example.com".into(),
                port: Some(587),
                tls: Some(TlsMode::Starttls),
                user: Some("me@example.com".into()),
                password: Some(SecretSource::Cmd("pass show smtp".into())),
                oauth_token: None,
                from: Some("me@example.com".into()),
                helo: Some("laptop.example.com".into()),
                ca_file: Some("/path/ca.pem".into()),
                tls_fingerprint: Some("AB:CD".into()),
                cert: Some("/path/me.pem".into()),
                key: Some("/path/me.key".into()),
                ..Account::default()
            }
        );
        assert_eq!(
            a.accounts[1],
            Account {
                name: "home".into(),
                server: "mail.example.net".into(),
                tls: Some(TlsMode::Implicit),
                oauth_token: Some(SecretSource::Env("HOME_TOKEN".into())),
                ..Account::default()
            }
        );
    }

    #[test]
    fn account_parses_sources_and_modes() {
        let a = p(r#"
[accounts.a]
server = "a"
password_env = "A_PW"
tls = "opportunistic"
[accounts.b]
server = "b"
password_file = "/run/pw"
tls = "none"
[accounts.c]
server = "::1"
oauth_token_cmd = "tok"
"#)
        .unwrap();
        assert_eq!(
            a.accounts[0].password,
            Some(SecretSource::Env("A_PW".into()))
        );
        assert_eq!(a.accounts[0].tls, Some(TlsMode::Opportunistic));
        assert_eq!(
            a.accounts[1].password,
            Some(SecretSource::File("/run/pw".into()))
        );
        assert_eq!(a.accounts[1].tls, Some(TlsMode::None));
        assert_eq!(a.accounts[2].server, "::1");
        assert_eq!(
            a.accounts[2].oauth_token,
            Some(SecretSource::Cmd("tok".into()))
        );
        assert_eq!(a.default, None);
    }

    #[test]
    fn account_empty_file_has_no_accounts() {
        let a = p("").unwrap();
        assert!(a.accounts.is_empty());
        assert!(a.select(None).unwrap().is_none());
    }

    #[test]
    fn account_error_unknown_field() {
        let e = err("[accounts.work]\nserver = \"s\"\nport = 25\npasword_cmd = \"x\"\n");
        assert!(
            e.starts_with("config error: /x/config.toml line 4, column 1: unknown field \"pasword_cmd\", expected one of server, "),
            "{e}"
        );
        assert!(e.contains("password_cmd"), "{e}");
        assert!(!e.contains("password,"), "refused keys not suggested: {e}");
        assert!(!e.contains('`'), "{e}");
    }

    #[test]
    fn account_error_unknown_top_level_key() {
        let e = err("\ndefualt = \"a\"\n");
        assert!(
            e.contains("line 2, column 1: unknown field \"defualt\""),
            "{e}"
        );
    }

    #[test]
    fn account_error_syntax() {
        let e = err("[accounts.a]\nserver = \"s\"\nport = = 2\n");
        assert!(e.contains(" line 3, column "), "{e}");
        let e = err("[accounts.a]\nserver = \"unterminated\n");
        assert!(e.contains(" line 2, column "), "{e}");
        let e = err("[accounts.a]\nserver = \"s\"\nserver = \"t\"\n");
        assert!(e.contains(" line 3, column "), "{e}");
    }

    #[test]
    fn account_error_wrong_type() {
        let e = err("[accounts.a]\nserver = \"s\"\nport = \"25\"\n");
        assert!(e.contains(" line 3, column 8: "), "{e}");
        assert!(e.contains("expected an integer"), "{e}");
        let e = err("[accounts.a]\nserver = \"s\"\nport = 70000\n");
        assert!(e.contains(" line 3: "), "{e}");
        assert!(e.contains("expected 1 to 65535"), "{e}");
        let e = err("[accounts.a]\nserver = \"s\"\nport = 0\n");
        assert!(e.contains(" line 3: "), "{e}");
    }

    #[test]
    fn account_error_bad_tls() {
        let e = err("[accounts.a]\ntls = \"tls1\"\nserver = \"s\"\n");
        assert_eq!(
            e,
            "config error: /x/config.toml line 2: invalid value for tls: \"tls1\", expected starttls|implicit|opportunistic|none"
        );
    }

    #[test]
    fn account_error_two_password_sources() {
        let e = err("[accounts.w]\nserver = \"s\"\npassword_cmd = \"a\"\npassword_env = \"B\"\n");
        assert!(e.contains(" line 4: "), "{e}");
        assert!(e.contains("\"w\""), "{e}");
        assert!(
            e.contains("password_cmd") && e.contains("password_env"),
            "{e}"
        );
        let e =
            err("[accounts.w]\nserver = \"s\"\npassword_file = \"a\"\n\npassword_env = \"B\"\n");
        assert!(e.contains(" line 5: "), "{e}");
    }

    #[test]
    fn account_error_two_token_sources() {
        let e =
            err("[accounts.w]\nserver = \"s\"\noauth_token_cmd = \"a\"\noauth_token_env = \"B\"\n");
        assert!(e.contains(" line 4: "), "{e}");
        assert!(e.contains("\"w\""), "{e}");
    }

    #[test]
    fn account_error_password_and_token() {
        let e =
            err("[accounts.w]\nserver = \"s\"\npassword_env = \"A\"\noauth_token_env = \"B\"\n");
        assert!(e.contains(" line 4: "), "{e}");
        assert!(e.contains("both a password and an OAuth token"), "{e}");
        let e =
            err("[accounts.w]\nserver = \"s\"\noauth_token_env = \"B\"\npassword_env = \"A\"\n");
        assert!(e.contains(" line 4: "), "{e}");
    }

    #[test]
    fn account_error_empty_source() {
        let e = err("[accounts.w]\nserver = \"s\"\npassword_cmd = \"  \"\n");
        assert!(
            e.contains(" line 3: ") && e.contains("password_cmd is empty"),
            "{e}"
        );
    }

    #[test]
    fn account_error_plain_password_refused() {
        let e = err("[accounts.w]\nserver = \"s\"\npassword = \"hunter2\"\n");
        assert!(e.contains(" line 3: "), "{e}");
        assert!(e.contains("not stored in the config"), "{e}");
        assert!(e.contains("password_cmd"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("[accounts.w]\nserver = \"s\"\noauth_token = \"hunter2\"\n");
        assert!(e.contains(" line 3: ") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn account_error_default_missing_account() {
        let e = err("default = \"nope\"\n[accounts.a]\nserver = \"s\"\n");
        assert!(e.contains(" line 1: "), "{e}");
        assert!(e.contains("\"nope\"") && e.contains("accounts: a"), "{e}");
    }

    #[test]
    fn account_error_two_default_flags() {
        let e = err(
            "[accounts.a]\nserver = \"s\"\ndefault = true\n[accounts.b]\nserver = \"t\"\ndefault = true\n",
        );
        assert!(e.contains(" line 6: "), "{e}");
        assert!(e.contains("\"a\"") && e.contains("\"b\""), "{e}");
    }

    #[test]
    fn account_error_default_disagrees() {
        let e = err(
            "default = \"a\"\n[accounts.a]\nserver = \"s\"\n[accounts.b]\nserver = \"t\"\ndefault = true\n",
        );
        assert!(e.contains(" line 6: "), "{e}");
        // Agreeing is fine.
        let a = p("default = \"b\"\n[accounts.a]\nserver = \"s\"\n[accounts.b]\nserver = \"t\"\ndefault = true\n")
            .unwrap();
        assert_eq!(a.default.as_deref(), Some("b"));
    }

    #[test]
    fn account_error_server() {
        let e = err("[accounts.a]\nport = 25\nserver = \"\"\n");
        assert!(
            e.contains(" line 3: ") && e.contains("server is empty"),
            "{e}"
        );
        let e = err("[accounts.a]\nport = 25\n");
        assert!(e.contains(" line 1: ") && e.contains("no server"), "{e}");
        let e = err("[accounts.a]\n\nserver = \"smtp.example.com:587\"\n");
        assert!(e.contains(" line 3: ") && e.contains("port ="), "{e}");
        let e = err("[accounts.a]\nserver = \"[::1]:25\"\n");
        assert!(e.contains(" line 2: ") && e.contains("port ="), "{e}");
        p("[accounts.a]\nserver = \"[::1]\"\n").unwrap();
        p("[accounts.a]\nserver = \"2001:db8::25\"\n").unwrap();
    }

    #[test]
    fn account_error_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let e = load(&path).unwrap_err().0;
        assert_eq!(e, format!("config error: {} not found", path.display()));
    }

    #[test]
    fn account_load_reads_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let a = load(&path).unwrap();
        assert_eq!(a.path, path);
        assert_eq!(a.accounts.len(), 2);
        std::fs::write(&path, b"\xff\xfe").unwrap();
        let e = load(&path).unwrap_err().0;
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn account_line_col() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
        assert_eq!(line_col("é\nxé=", 5), (2, 3));
        assert_eq!(line_col("é", 1), (1, 2), "mid-character offset");
    }

    #[test]
    fn account_odd_inputs_do_not_panic() {
        for text in [
            "accounts = 5",
            "accounts = { a = 5 }",
            "accounts.a.server = \"s\"",
            "accounts = { a = { server = \"s\", default = true } }",
            "[accounts]\n[accounts.\"\"]\nserver = \"s\"",
            "default = 5",
            "[[accounts]]\nserver = \"s\"",
            "\u{feff}[accounts.a]\nserver = \"s\"",
            "[accounts.a]\nserver = \"s\"\nport = -1",
            "[accounts.a]\nserver = \"s\"\nport = 1e3",
            "[accounts.a]\nserver = \"s\"\nca_file = [1]",
            "\0",
        ] {
            if let Err(e) = p(text) {
                assert!(!e.0.contains('\n'), "{text:?}: {e}");
                assert!(e.0.starts_with("config error: /x/config.toml"), "{e}");
            }
        }
        let a =
            p("accounts.a.server = \"s\"\naccounts.b.server = \"t\"\naccounts.b.default = true")
                .unwrap();
        assert_eq!(a.default.as_deref(), Some("b"));
    }

    fn accounts(names: &[&str], default: Option<&str>) -> Accounts {
        Accounts {
            path: "/x/config.toml".into(),
            accounts: names
                .iter()
                .map(|n| Account {
                    name: n.to_string(),
                    server: "s".into(),
                    ..Account::default()
                })
                .collect(),
            default: default.map(str::to_string),
        }
    }

    fn selected(a: &Accounts, name: Option<&str>) -> Option<String> {
        a.select(name).unwrap().map(|a| a.name.clone())
    }

    #[test]
    fn account_select_by_name() {
        let a = accounts(&["a", "b"], None);
        assert_eq!(selected(&a, Some("b")).as_deref(), Some("b"));
        let e = a.select(Some("x")).unwrap_err().0;
        assert_eq!(
            e,
            "config error: no account \"x\" in /x/config.toml (accounts: a, b)"
        );
        let e = accounts(&[], None).select(Some("x")).unwrap_err().0;
        assert!(e.contains("(no accounts)"), "{e}");
    }

    #[test]
    fn account_select_default_rules() {
        assert_eq!(
            selected(&accounts(&["a", "b"], Some("b")), None).as_deref(),
            Some("b")
        );
        assert_eq!(
            selected(&accounts(&["a"], None), None).as_deref(),
            Some("a")
        );
        assert_eq!(selected(&accounts(&["a", "b"], None), None), None);
        assert_eq!(selected(&accounts(&[], None), None), None);
        assert!(accounts(&["a"], Some("z")).select(None).is_err());

        // Through the parser: top-level key, the only account, the flagged one, ambiguity.
        let two = "[accounts.a]\nserver = \"s\"\n[accounts.b]\nserver = \"t\"\n";
        let a = p(&format!("default = \"a\"\n{two}")).unwrap();
        assert_eq!(selected(&a, None).as_deref(), Some("a"));
        let a = p("[accounts.only]\nserver = \"s\"\n").unwrap();
        assert_eq!(selected(&a, None).as_deref(), Some("only"));
        let a = p(&format!("{two}default = true\n")).unwrap();
        assert_eq!(selected(&a, None).as_deref(), Some("b"));
        let a = p(two).unwrap();
        assert_eq!(selected(&a, None), None);
    }

    #[test]
    fn account_config_path_rules() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            config_path_from(env(&[
                ("POSTLINE_CONFIG", "/c.toml"),
                ("XDG_CONFIG_HOME", "/xdg"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/c.toml"))
        );
        assert_eq!(
            config_path_from(env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")])),
            Some(PathBuf::from("/xdg/postline/config.toml"))
        );
        assert_eq!(
            config_path_from(env(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.config/postline/config.toml"))
        );
        assert_eq!(
            config_path_from(env(&[("POSTLINE_CONFIG", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.config/postline/config.toml"))
        );
        assert_eq!(config_path_from(env(&[])), None);
    }

    fn secret_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents).unwrap();
        f.flush().unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn account_secret_from_env() {
        let var = "POSTLINE_ACCOUNT_TEST_SECRET_ENV_7d1e";
        std::env::set_var(var, "s3cret");
        assert_eq!(
            read_secret(&SecretSource::Env(var.into()), false).unwrap(),
            "s3cret"
        );
        let empty = "POSTLINE_ACCOUNT_TEST_SECRET_EMPTY_7d1e";
        std::env::set_var(empty, "");
        let e = read_secret(&SecretSource::Env(empty.into()), false)
            .unwrap_err()
            .0;
        assert!(e.contains(empty) && e.contains("empty"), "{e}");
        let unset = "POSTLINE_ACCOUNT_TEST_SECRET_UNSET_7d1e";
        let e = read_secret(&SecretSource::Env(unset.into()), false)
            .unwrap_err()
            .0;
        assert!(e.contains(unset) && e.contains("not set"), "{e}");
    }

    #[test]
    fn account_secret_from_private_file() {
        let f = secret_file(b"pw line\nsecond\n", 0o600);
        let src = SecretSource::File(f.path().into());
        assert_eq!(read_secret(&src, false).unwrap(), "pw line");
        let f = secret_file(b"crlf\r\n", 0o400);
        assert_eq!(
            read_secret(&SecretSource::File(f.path().into()), false).unwrap(),
            "crlf"
        );
        let f = secret_file(b"no newline", 0o600);
        assert_eq!(
            read_secret(&SecretSource::File(f.path().into()), false).unwrap(),
            "no newline"
        );
        let f = secret_file(b"\nafter empty line\n", 0o600);
        let e = read_secret(&SecretSource::File(f.path().into()), false)
            .unwrap_err()
            .0;
        assert!(e.contains("empty") && !e.contains("after"), "{e}");
    }

    #[test]
    fn account_secret_file_permissions() {
        let f = secret_file(b"topsecret\n", 0o644);
        let src = SecretSource::File(f.path().into());
        let e = read_secret(&src, false).unwrap_err().0;
        assert!(
            e.contains(&format!("chmod 600 {}", f.path().display())),
            "{e}"
        );
        assert!(!e.contains("topsecret"), "{e}");
        assert_eq!(read_secret(&src, true).unwrap(), "topsecret");
        let f = secret_file(b"topsecret\n", 0o640);
        assert!(read_secret(&SecretSource::File(f.path().into()), false).is_err());
        let f = secret_file(b"topsecret\n", 0o604);
        assert!(read_secret(&SecretSource::File(f.path().into()), false).is_err());
    }

    #[test]
    fn account_secret_file_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = read_secret(&SecretSource::File(missing.clone()), false)
            .unwrap_err()
            .0;
        assert!(e.contains(&missing.display().to_string()), "{e}");
        let e = read_secret(&SecretSource::File(dir.path().into()), true)
            .unwrap_err()
            .0;
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn account_secret_from_command() {
        let src = SecretSource::Cmd("printf 'pw\\nrest'".into());
        assert_eq!(read_secret(&src, false).unwrap(), "pw");
        let src = SecretSource::Cmd("printf 'only'".into());
        assert_eq!(read_secret(&src, false).unwrap(), "only");
        // Much output: the pipe must not stall the command.
        let src = SecretSource::Cmd("echo big; head -c 300000 /dev/zero".into());
        assert_eq!(read_secret(&src, false).unwrap(), "big");
        let src = SecretSource::Cmd("true".into());
        let e = read_secret(&src, false).unwrap_err().0;
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn account_secret_failing_command() {
        let src = SecretSource::Cmd("echo leaked; exit 3".into());
        let e = read_secret(&src, false).unwrap_err().0;
        assert!(e.contains('3'), "{e}");
        assert!(!e.contains("leaked"), "{e}");
    }

    #[test]
    fn account_secret_command_timeout() {
        let start = Instant::now();
        let src = SecretSource::Cmd("echo early; sleep 10".into());
        let e = read_secret_with_timeout(&src, false, Duration::from_millis(200))
            .unwrap_err()
            .0;
        assert!(e.contains("did not finish"), "{e}");
        assert!(!e.contains("early"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
