//! From flags and an account to a `postline::Config`: server, TLS, credentials, timeouts.

use postline::{Config, Direction, Timeouts, Tls};

use crate::account::{self, Account, Protocol, SecretSource, TlsMode};
use crate::args::{self, ServerArgs};
use crate::exit;
use crate::output::{errln, escape};

/// A failure before anything was sent: a message and the exit code.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Fail {
            code,
            message: message.into(),
        }
    }
}

impl From<account::ConfigError> for Fail {
    fn from(e: account::ConfigError) -> Self {
        Fail::new(exit::CONFIG, e.0)
    }
}

/// The account the flags select: `--account NAME`, else the config file's default, else none.
/// A config file is read only when it exists or `--account` asks for one.
pub fn load_account(name: Option<&str>) -> Result<Option<Account>, Fail> {
    let Some(path) = account::config_path() else {
        return match name {
            Some(n) => Err(Fail::new(
                exit::CONFIG,
                format!("no config file to find account {n:?} in"),
            )),
            None => Ok(None),
        };
    };
    if !path.exists() && name.is_none() {
        return Ok(None);
    }
    let accounts = account::load(&path)?;
    Ok(accounts.select(name)?.cloned())
}

/// Splits `HOST[:PORT]`, with IPv6 literals as `[ADDR]:PORT` (a bare `::1` is a host). The
/// port is digits, 1 to 65535.
pub fn split_server(s: &str) -> Result<(String, Option<u16>), Fail> {
    // An absolute path is a Unix socket, kept whole (a colon in it is part of the name).
    if s.starts_with('/') {
        return Ok((s.to_string(), None));
    }
    if s.contains("://") {
        return Err(Fail::new(
            exit::USAGE,
            format!(
                "--server {}: takes HOST[:PORT] or a Unix socket's absolute path, not a URL (the scheme's choices are flags here: --protocol lmtp, --tls)",
                s.escape_debug()
            ),
        ));
    }
    if s.contains('/') {
        return Err(Fail::new(
            exit::USAGE,
            format!(
                "--server {}: a Unix socket is given by its absolute path (starting with /)",
                s.escape_debug()
            ),
        ));
    }
    postline::parse_server(s).map_err(|e| match e {
        postline::ServerError::Port => Fail::new(
            exit::USAGE,
            format!(
                "--server {}: the port must be a number from 1 to 65535",
                s.escape_debug()
            ),
        ),
        _ => Fail::new(exit::USAGE, format!("--server {s:?}: expected HOST[:PORT]")),
    })
}

fn tls_of(mode: TlsMode) -> Tls {
    match mode {
        TlsMode::Starttls => Tls::StartTls,
        TlsMode::Implicit => Tls::Implicit,
        TlsMode::Opportunistic => Tls::Opportunistic,
        TlsMode::None => Tls::None,
    }
}

/// The port to report for `host`: none for a Unix socket (an absolute path).
pub fn shown_port(host: &str, port: u16) -> Option<u16> {
    (!host.starts_with('/')).then_some(port)
}

/// `host:port`, or the socket's path alone, for people.
pub fn shown_server(host: &str, port: u16) -> String {
    match shown_port(host, port) {
        Some(p) if host.contains(':') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Everything needed to connect, with where each piece came from resolved.
pub struct Target {
    pub config: Config,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// No relay: MX routing (RFC 5321 section 5).
    pub direct: bool,
    /// `--dns-server` for MX lookups.
    pub dns_server: Option<std::net::SocketAddr>,
    /// Whether the session authenticates (credentials, or a client certificate with
    /// `--auth external`), and as whom: for the log line, never a secret.
    pub auth: bool,
    pub user: Option<String>,
}

/// Builds the client configuration: flags first, then the account, then defaults.
pub fn target(args: &ServerArgs, account: Option<&Account>) -> Result<Target, Fail> {
    // No server and no account: deliver straight to each domain's exchangers.
    let direct = args.server.is_none() && account.is_none();
    let (host, port_flag) = match (&args.server, account) {
        (Some(s), _) => split_server(s)?,
        (None, Some(a)) => (a.server.clone(), None),
        (None, None) => (String::new(), args.mx_port),
    };
    let port = port_flag.or(account.and_then(|a| a.port));
    let lmtp = args.protocol.or(account.and_then(|a| a.protocol)) == Some(Protocol::Lmtp);
    // A Unix socket is on this machine: nothing to encrypt, no certificate to name.
    let unix = host.starts_with('/');
    if direct && lmtp {
        return Err(Fail::new(
            exit::USAGE,
            "--protocol lmtp needs --server (a host or a Unix socket path): LMTP delivers to one mail store, not to each domain's exchangers",
        ));
    }
    if unix && port.is_some() {
        let what = match (&args.server, account) {
            (None, Some(a)) => format!(
                "account \"{}\": server = \"{}\" with port",
                a.name,
                escape(&host)
            ),
            _ => format!("--server {} (with the account's port)", escape(&host)),
        };
        return Err(Fail::new(
            exit::USAGE,
            format!("{what}: a Unix socket path takes no port"),
        ));
    }
    if unix
        && matches!(
            args.tls.or(account.and_then(|a| a.tls)),
            Some(TlsMode::Starttls | TlsMode::Implicit)
        )
    {
        return Err(Fail::new(
            exit::USAGE,
            format!(
                "{}: TLS over a Unix socket is not supported here (no host name to check a certificate against; the socket stays on this machine): leave out --tls (or tls in the account)",
                escape(&host)
            ),
        ));
    }
    let tls = args
        .tls
        .or(account.and_then(|a| a.tls))
        .unwrap_or(match port {
            _ if direct => TlsMode::Opportunistic,
            _ if unix => TlsMode::None,
            // LMTP goes to a mail store next door (RFC 2033 5: never across the Internet);
            // STARTTLS when it offers it.
            _ if lmtp => TlsMode::Opportunistic,
            Some(465) => TlsMode::Implicit,
            _ => TlsMode::Starttls,
        });
    if direct && tls == TlsMode::Implicit {
        return Err(Fail::new(
            exit::USAGE,
            "--tls implicit needs --server: exchangers speak STARTTLS on port 25",
        ));
    }
    let port = port.unwrap_or(match tls {
        _ if direct => 25,
        _ if lmtp => 24,
        TlsMode::Implicit => 465,
        TlsMode::Starttls => 587,
        TlsMode::Opportunistic | TlsMode::None => 25,
    });
    let mut config = Config::relay(host.clone()).tls(tls_of(tls));
    if !unix {
        config = config.port(port);
    }
    if lmtp {
        config = config.protocol(postline::Protocol::Lmtp);
    }
    if let Some(helo) = args.helo.as_ref().or(account.and_then(|a| a.helo.as_ref())) {
        // An address is announced as an address literal (RFC 5321 4.1.3).
        let helo = &match helo.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => format!("[{v4}]"),
            Ok(std::net::IpAddr::V6(v6)) => format!("[IPv6:{v6}]"),
            Err(_) => helo.clone(),
        };
        if postline::proto::Domain::new(helo.as_str()).is_err() {
            return Err(Fail::new(
                exit::USAGE,
                format!("--helo {helo:?}: not a valid host name"),
            ));
        }
        config = config.hello_name(helo.clone());
    }
    if let Some(ca) = args
        .ca_file
        .as_ref()
        .or(account.and_then(|a| a.ca_file.as_ref()))
    {
        if !ca.exists() {
            let what = match (&args.ca_file, account) {
                (None, Some(a)) => format!("account \"{}\": ca_file", a.name),
                _ => "--ca-file".to_string(),
            };
            return Err(Fail::new(
                exit::NOINPUT,
                format!("{what} {}: not found", ca.display()),
            ));
        }
        config = config.ca_file(ca.clone());
    }
    config = trust(config, args, account, direct)?;
    if args.require_tls {
        if args.insecure {
            return Err(Fail::new(
                exit::USAGE,
                "--require-tls needs a verified certificate: it cannot go with --insecure",
            ));
        }
        if tls == TlsMode::None {
            return Err(Fail::new(
                exit::USAGE,
                if unix {
                    "--require-tls needs TLS, which a Unix socket does not have"
                } else {
                    "--require-tls needs TLS: it cannot go with --tls none"
                },
            ));
        }
        config = config.require_tls(true);
    }
    if args.insecure {
        errln!("postline: warning: --insecure: the server's certificate is NOT verified; anyone in the path can read and change this session");
        config = config.dangerous_accept_invalid_certificates(true);
    }
    if let Some(secs) = args.timeout {
        // Checked by clap too; this also covers a route read back from the queue.
        let cap = args::timeout_duration(secs)
            .map_err(|e| Fail::new(exit::USAGE, format!("--timeout {secs}: {e}")))?;
        config = config.timeouts(Timeouts::default().capped(cap));
    }
    config = config.allow_plaintext_auth(args.allow_plaintext_auth);
    let user = args.user.is_some() || account.is_some_and(|a| a.user.is_some());
    if args.allow_plaintext_auth && tls == TlsMode::None && user {
        errln!("postline: warning: --allow-plaintext-auth with --tls none: the credentials cross the network unencrypted");
    }
    if let Some(m) = args.auth {
        config = config.auth_mechanism(m.mechanism());
    }
    if direct
        && (args.user.is_some()
            || args.password_env.is_some()
            || args.password_file.is_some()
            || args.password_cmd.is_some()
            || args.oauth_token_env.is_some()
            || args.oauth_token_cmd.is_some())
    {
        return Err(Fail::new(
            exit::USAGE,
            "credentials need --server (or an account): direct delivery to exchangers does not authenticate",
        ));
    }
    config = credentials(config, args, account)?;
    let user = args.user.clone().or(account.and_then(|a| a.user.clone()));
    let auth = user.is_some() || args.auth == Some(crate::args::AuthArg::External);
    config = proxy(config, args, account)?;
    if let Some(ip) = args
        .source_address
        .or(account.and_then(|a| a.source_address))
    {
        config = config.source_address(ip);
    }
    if args.verbose {
        config = config.transcript(|dir, line| match dir {
            Direction::Client => errln!("C: {}", escape(line)),
            Direction::Server => errln!("S: {}", escape(line)),
        });
    }
    Ok(Target {
        config,
        host,
        port,
        tls,
        direct,
        dns_server: args.dns_server,
        auth,
        user,
    })
}

fn credentials(
    config: Config,
    args: &ServerArgs,
    account: Option<&Account>,
) -> Result<Config, Fail> {
    // EXTERNAL needs no secret: the client certificate is the credential.
    if args.auth == Some(crate::args::AuthArg::External) {
        return Ok(match &args.user {
            Some(authzid) => config.sasl_external_as(authzid.clone()),
            None => config.sasl_external(),
        });
    }
    let flag_password = if let Some(v) = &args.password_env {
        Some(SecretSource::Env(v.clone()))
    } else if let Some(p) = &args.password_file {
        Some(SecretSource::File(p.clone()))
    } else {
        args.password_cmd
            .as_ref()
            .map(|c| SecretSource::Cmd(c.clone()))
    };
    let flag_token = if let Some(v) = &args.oauth_token_env {
        Some(SecretSource::Env(v.clone()))
    } else {
        args.oauth_token_cmd
            .as_ref()
            .map(|c| SecretSource::Cmd(c.clone()))
    };
    let (password, token) = if flag_password.is_some() || flag_token.is_some() {
        (flag_password, flag_token)
    } else {
        (
            account.and_then(|a| a.password.clone()),
            account.and_then(|a| a.oauth_token.clone()),
        )
    };
    let user = args.user.clone().or(account.and_then(|a| a.user.clone()));
    let allow = args.allow_world_readable_password;
    match (user, password, token) {
        (None, None, None) => Ok(config),
        (Some(u), Some(p), _) => Ok(config.credentials(u, account::read_secret(&p, allow)?)),
        (Some(u), None, Some(t)) => Ok(config.oauth_token(u, account::read_secret(&t, allow)?)),
        (None, Some(_), _) | (None, None, Some(_)) => {
            Err(Fail::new(exit::USAGE, "a password or token needs --user NAME"))
        }
        (Some(_), None, None) => Err(Fail::new(
            exit::USAGE,
            "--user needs --password-env, --password-file or --password-cmd (or an OAuth token); passwords are never taken as arguments",
        )),
    }
}

/// The SOCKS5 proxy: `--proxy` (with its password from the URL, --proxy-password-env or
/// --proxy-password-file), else the account's `proxy` (password from its
/// `proxy_password_*`). No message shows the password.
fn proxy(config: Config, args: &ServerArgs, account: Option<&Account>) -> Result<Config, Fail> {
    let allow = args.allow_world_readable_password;
    let flag_secret = match (&args.proxy_password_env, &args.proxy_password_file) {
        (Some(v), _) => Some(SecretSource::Env(v.clone())),
        (None, Some(p)) => Some(SecretSource::File(p.clone())),
        (None, None) => None,
    };
    let (text, secret, what, code) = match (&args.proxy, account) {
        (Some(t), _) => (t.clone(), flag_secret, "--proxy".to_string(), exit::USAGE),
        (None, Some(a)) if a.proxy.is_some() => (
            a.proxy.clone().unwrap_or_default(),
            flag_secret.or(a.proxy_password.clone()),
            format!("account \"{}\": proxy", a.name),
            exit::CONFIG,
        ),
        _ if flag_secret.is_some() => return Err(Fail::new(
            exit::USAGE,
            "--proxy-password-env and --proxy-password-file need --proxy socks5://USER@HOST:PORT",
        )),
        _ => return Ok(config),
    };
    let mut p = postline::Proxy::from_url(&text).map_err(|e| {
        let why = e.to_string();
        let why = why.trim_start_matches("configuration: proxy: ");
        Fail::new(code, format!("{what}: {why}"))
    })?;
    if let Some(source) = secret {
        let Some(user) = p.user().map(str::to_string) else {
            return Err(Fail::new(
                exit::USAGE,
                format!("{what}: a proxy password needs the user name in the URL (socks5://USER@HOST:PORT)"),
            ));
        };
        if p.has_password() {
            return Err(Fail::new(
                exit::USAGE,
                format!("{what}: the URL has a password already; drop it or --proxy-password-env/--proxy-password-file"),
            ));
        }
        p = p.credentials(user, account::read_secret(&source, allow)?);
    } else if p.user().is_some() && !p.has_password() {
        return Err(Fail::new(
            exit::USAGE,
            format!("{what}: user {:?} without a password: give --proxy-password-env or --proxy-password-file", p.user().unwrap_or_default()),
        ));
    }
    Ok(config.proxy(p))
}

/// Pins, the system store and the client certificate: flags first, then the account.
fn trust(
    mut config: Config,
    args: &ServerArgs,
    account: Option<&Account>,
    direct: bool,
) -> Result<Config, Fail> {
    // Pins from the command line replace the account's, so a stale one does not linger.
    let from_flags = args.tls_fingerprint.is_some() || args.pinned_pubkey.is_some();
    // A bad value is the command line's fault (64) or the config file's (78), named as such.
    let usage = |flag: &str, value: &str, e: postline::certificate::PinError| {
        if from_flags {
            Fail::new(exit::USAGE, format!("{flag} {value:?}: {e}"))
        } else {
            let account = account.map_or("", |a| a.name.as_str());
            let key = flag.trim_start_matches("--").replace('-', "_");
            Fail::new(
                exit::CONFIG,
                format!("account \"{account}\": {key} {value:?}: {e}"),
            )
        }
    };
    let (fingerprint, pubkey) = if from_flags {
        (args.tls_fingerprint.as_ref(), args.pinned_pubkey.as_ref())
    } else {
        (
            account.and_then(|a| a.tls_fingerprint.as_ref()),
            account.and_then(|a| a.pinned_pubkey.as_ref()),
        )
    };
    if let Some(text) = fingerprint {
        let fp =
            postline::Fingerprint::parse(text).map_err(|e| usage("--tls-fingerprint", text, e))?;
        config = config.pin(postline::Pin::Certificate(fp));
    }
    if let Some(text) = pubkey {
        let pins: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if pins.is_empty() {
            return Err(Fail::new(
                exit::USAGE,
                format!("--pinned-pubkey {text:?}: no pin in it (sha256//BASE64, several separated by ;)"),
            ));
        }
        for one in pins {
            let pin =
                postline::PublicKeyPin::parse(one).map_err(|e| usage("--pinned-pubkey", one, e))?;
            config = config.pin(postline::Pin::PublicKey(pin));
        }
    }
    let pinned = fingerprint.is_some() || pubkey.is_some();
    if direct && (pinned || args.cert.is_some() || args.key.is_some()) {
        return Err(Fail::new(
            exit::USAGE,
            "--tls-fingerprint, --pinned-pubkey, --cert and --key are for one server: give --server (direct delivery talks to every domain's exchangers)",
        ));
    }
    if pinned && args.insecure {
        return Err(Fail::new(
            exit::USAGE,
            "--insecure would not check the pinned certificate: drop one of them",
        ));
    }
    if args.system_roots || account.is_some_and(|a| a.system_roots) {
        config = config.system_roots(true);
    }
    let cert = args.cert.as_ref().or(account.and_then(|a| a.cert.as_ref()));
    // Without a key, the certificate's file holds it too (as curl and msmtp allow).
    let key = args
        .key
        .as_ref()
        .or(account.and_then(|a| a.key.as_ref()))
        .or(cert);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            for (flag, given, path) in [
                ("--cert", args.cert.is_some(), cert),
                ("--key", args.key.is_some(), key),
            ] {
                if !path.exists() {
                    let what = match account {
                        Some(a) if !given => {
                            format!("account \"{}\": {}", a.name, flag.trim_start_matches("--"))
                        }
                        _ => flag.to_string(),
                    };
                    return Err(Fail::new(
                        exit::NOINPUT,
                        format!("{what} {}: not found", path.display()),
                    ));
                }
            }
            config = config.client_certificate(cert.clone(), key.clone());
        }
        (None, Some(_)) => {
            return Err(Fail::new(
                exit::USAGE,
                "--key needs --cert (the client certificate)",
            ))
        }
        _ => {}
    }
    Ok(config)
}

/// An error as one line for people: the library's words, and for TLS failures the flag
/// that fixes it.
pub fn describe(e: &postline::Error) -> String {
    use postline::TlsFailure as F;
    let failure = match e {
        postline::Error::Tls { failure, .. } => failure,
        postline::Error::PlaintextAuthRefused => {
            return format!("{e}; hint: use TLS (--tls starttls or implicit), or --allow-plaintext-auth if clear text is really meant")
        }
        // 500/502 is "command not recognized": a greeting is refused with 554, so this was
        // the EHLO/HELO or LHLO. An LMTP server does not know EHLO, an SMTP server LHLO.
        postline::Error::Rejected(r) if r.code == 500 || r.code == 502 => {
            return format!("{e}; hint: the server did not know the greeting command: an LMTP server (Dovecot's, Cyrus') needs --protocol lmtp, an SMTP server needs it left out")
        }
        postline::Error::StartTlsUnavailable(None) => {
            return format!("{e}; hint: --tls none sends without TLS, --tls opportunistic uses it only when offered (neither with --require-tls or a pin)")
        }
        postline::Error::Timeout {
            phase: postline::Phase::Greeting,
            ..
        }
        | postline::Error::ConnectionLost {
            phase: postline::Phase::Greeting,
        } => {
            return format!("{e}; hint: a port that expects TLS from the first byte (465) needs --tls implicit")
        }
        _ => return e.to_string(),
    };
    let hint = match failure {
        F::SelfSigned(_) | F::CaUsedAsLeaf(_) => {
            "if you expected a self-signed certificate, compare the fingerprint above with the server's own (openssl x509 -noout -fingerprint -sha256 -in CERT, on the server), then give that certificate with --ca-file or the fingerprint with --tls-fingerprint".to_string()
        }
        F::UnknownIssuer(_) => {
            "give the issuer's certificate with --ca-file (or --system-roots if the system store has it); or the server does not send its intermediate certificate".to_string()
        }
        F::WrongName { .. } => "connect by one of the names the certificate holds".to_string(),
        F::Alert(a) if *a == postline::rustls::AlertDescription::CertificateRequired => {
            "give a client certificate with --cert and --key".to_string()
        }
        F::NotTls => "--tls implicit is for ports like 465; for a STARTTLS port (587, 25) use --tls starttls".to_string(),
        _ => return e.to_string(),
    };
    format!("{e}; hint: {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        assert_eq!(
            split_server("mx.example.com").unwrap(),
            ("mx.example.com".into(), None)
        );
        assert_eq!(
            split_server("mx.example.com:2525").unwrap(),
            ("mx.example.com".into(), Some(2525))
        );
        assert_eq!(split_server("[::1]:25").unwrap(), ("::1".into(), Some(25)));
        assert_eq!(split_server("[::1]").unwrap(), ("::1".into(), None));
        assert_eq!(split_server("::1").unwrap(), ("::1".into(), None));
        assert!(split_server("mx:port").is_err());
        for bad in [
            "mx:0",
            "mx:+25",
            "mx:65536",
            "mx:99999999999999999999",
            "[::1]:0",
            "mx:",
        ] {
            let e = split_server(bad).unwrap_err();
            assert_eq!(e.code, exit::USAGE, "{bad}");
            assert!(e.message.contains("1 to 65535"), "{bad}: {}", e.message);
        }
        assert!(split_server("mx.example.com\r\n").is_err());
        assert!(split_server(":25").is_err());
        assert!(split_server("").is_err());
    }
}
