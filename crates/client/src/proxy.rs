//! SOCKS5 proxies (RFC 1928, with the username/password method of RFC 1929): the [`Proxy`]
//! setting, the handshake as a small sans-IO state machine, and the blocking and tokio loops
//! that drive it.
//!
//! One implementation serves both clients. The blocking `socks` crate opens its own TCP
//! connection (so it can neither bind a source address nor bound the connect), and
//! `tokio-socks` is async only: two crates would disagree on errors and timeouts. The
//! handshake is three small messages, written here once like the SMTP protocol itself.
//!
//! The server's name is sent to the proxy (address type "domain name"), never resolved
//! here: the proxy resolves it, so no lookup leaks from this host. An IP literal is sent as
//! an address. The handshake reads no byte past the proxy's reply, so a server greeting that
//! arrives in the same segment is left for the SMTP session.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ConfigError, Error, Fault};

/// The SOCKS port when none is given.
pub const DEFAULT_SOCKS_PORT: u16 = 1080;

/// A SOCKS5 proxy to reach the server through ([`crate::Config::proxy`]). `Debug` and
/// `Display` never show the password.
///
/// ```
/// use postline::Proxy;
/// let p: Proxy = "socks5h://me:secret@127.0.0.1:1080".parse()?;
/// assert_eq!((p.host(), p.port(), p.user()), ("127.0.0.1", 1080, Some("me")));
/// assert_eq!(p.to_string(), "socks5://me@127.0.0.1:1080");
/// let p = Proxy::socks5("proxy.example.net").credentials("me", "secret");
/// assert_eq!(p.port(), 1080);
/// # Ok::<(), postline::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl Proxy {
    /// A SOCKS5 proxy at `HOST[:PORT]` (port 1080 by default; IPv6 in brackets). Text that
    /// is not `HOST[:PORT]` is kept whole and refused when connecting, as
    /// [`crate::Config::relay`] does.
    pub fn socks5(server: impl Into<String>) -> Proxy {
        let server = server.into();
        let (host, port) = crate::server::parse_server(&server).unwrap_or((server, None));
        Proxy {
            host,
            port: port.unwrap_or(DEFAULT_SOCKS_PORT),
            user: None,
            password: None,
        }
    }

    /// Authenticate to the proxy with a user name and password (RFC 1929). Each must be 1
    /// to 255 bytes; the proxy may also let the client in without them.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// `socks5://[user[:password]@]host[:port]`, or `socks5h://` (the same here: the
    /// server's name always goes to the proxy; curl's `socks5://` would resolve it locally,
    /// which postline never does through a proxy). User and password are percent-decoded.
    /// The error never shows the password.
    pub fn from_url(text: &str) -> Result<Proxy, Error> {
        let bad = |why: &str| {
            Error::Config(ConfigError::Proxy(format!(
                "{why} (in {})",
                crate::config_url::redacted(text)
            )))
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "socks5" | "socks5h") {
            return Err(bad(&format!(
                "scheme {:?} is not socks5 or socks5h (the only proxies postline speaks)",
                url.scheme()
            )));
        }
        let (host, credentials) = crate::config_url::host_and_credentials(&url, &bad)?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a path, query or fragment means nothing here"));
        }
        let (user, password) = credentials.unzip();
        Ok(Proxy {
            host,
            port: url.port().unwrap_or(DEFAULT_SOCKS_PORT),
            user,
            password,
        })
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name given to the proxy, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether a password is set (it is never shown).
    pub fn has_password(&self) -> bool {
        self.password.as_deref().is_some_and(|p| !p.is_empty())
    }

    /// `host:port` (IPv6 in brackets), for messages.
    pub fn addr(&self) -> String {
        join(&self.host, self.port)
    }
}

fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl FromStr for Proxy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Proxy::from_url(s)
    }
}

impl fmt::Display for Proxy {
    /// `socks5://[user@]host:port`: the password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("socks5://")?;
        if let Some(u) = &self.user {
            let enc = percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC);
            write!(f, "{enc}@")?;
        }
        f.write_str(&self.addr())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A SOCKS5 reply code other than success (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Socks5Reply {
    /// 1: general SOCKS server failure.
    GeneralFailure,
    /// 2: connection not allowed by ruleset.
    NotAllowed,
    /// 3: network unreachable.
    NetworkUnreachable,
    /// 4: host unreachable (also what proxies say when the name does not resolve).
    HostUnreachable,
    /// 5: connection refused.
    ConnectionRefused,
    /// 6: TTL expired.
    TtlExpired,
    /// 7: command not supported.
    CommandNotSupported,
    /// 8: address type not supported.
    AddressTypeNotSupported,
    /// Any other code.
    Other(u8),
}

impl Socks5Reply {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Socks5Reply::GeneralFailure,
            2 => Socks5Reply::NotAllowed,
            3 => Socks5Reply::NetworkUnreachable,
            4 => Socks5Reply::HostUnreachable,
            5 => Socks5Reply::ConnectionRefused,
            6 => Socks5Reply::TtlExpired,
            7 => Socks5Reply::CommandNotSupported,
            8 => Socks5Reply::AddressTypeNotSupported,
            c => Socks5Reply::Other(c),
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Socks5Reply::GeneralFailure => 1,
            Socks5Reply::NotAllowed => 2,
            Socks5Reply::NetworkUnreachable => 3,
            Socks5Reply::HostUnreachable => 4,
            Socks5Reply::ConnectionRefused => 5,
            Socks5Reply::TtlExpired => 6,
            Socks5Reply::CommandNotSupported => 7,
            Socks5Reply::AddressTypeNotSupported => 8,
            Socks5Reply::Other(c) => c,
        }
    }

    /// Whether a later attempt may succeed: the network and the proxy's own trouble may
    /// pass; a ruleset, a command or an address type the proxy does not take will not.
    pub fn is_transient(self) -> bool {
        !matches!(
            self,
            Socks5Reply::NotAllowed
                | Socks5Reply::CommandNotSupported
                | Socks5Reply::AddressTypeNotSupported
        )
    }
}

impl fmt::Display for Socks5Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = match self {
            Socks5Reply::GeneralFailure => "general SOCKS server failure",
            Socks5Reply::NotAllowed => "connection not allowed by the proxy's ruleset",
            Socks5Reply::NetworkUnreachable => "network unreachable",
            Socks5Reply::HostUnreachable => "host unreachable (or its name did not resolve)",
            Socks5Reply::ConnectionRefused => "connection refused",
            Socks5Reply::TtlExpired => "TTL expired",
            Socks5Reply::CommandNotSupported => "CONNECT not supported by the proxy",
            Socks5Reply::AddressTypeNotSupported => "address type not supported by the proxy",
            Socks5Reply::Other(_) => "unknown reply",
        };
        write!(f, "{words} (SOCKS5 reply {})", self.code())
    }
}

/// What went wrong with the proxy ([`Error::Proxy`]). Never holds the password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyFailure {
    /// The proxy's own name did not resolve.
    #[error("cannot resolve the proxy: {0}")]
    Resolve(Arc<io::Error>),
    /// No address of the proxy accepted a TCP connection.
    #[error("proxy unreachable: {0}")]
    Unreachable(Arc<io::Error>),
    /// The proxy did not complete its handshake within the connect timeout.
    #[error("the proxy did not answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The proxy closed the connection in the middle of its handshake.
    #[error("the proxy closed the connection during its handshake")]
    Closed,
    /// Another I/O error during the handshake.
    #[error("I/O error talking to the proxy: {0}")]
    Io(Arc<io::Error>),
    /// The proxy wants a user name and password and none was configured.
    #[error("the proxy requires a user name and password")]
    AuthRequired,
    /// The proxy accepts neither "no authentication" nor username/password.
    #[error(
        "the proxy accepts none of the authentication methods offered (none, username/password)"
    )]
    NoAcceptableMethod,
    /// The proxy refused the user name and password (RFC 1929 status not zero).
    #[error("the proxy refused the credentials of user {user:?} (wrong user name or password)")]
    AuthRefused {
        /// The user name sent (the password is never kept here).
        user: String,
    },
    /// The proxy could not or would not connect to the server.
    #[error("the proxy could not connect to {target}: {reply}")]
    Refused {
        /// The server as sent to the proxy, `host:port`.
        target: String,
        /// The proxy's reply.
        reply: Socks5Reply,
    },
    /// The proxy's answer was not SOCKS5.
    #[error("not a valid SOCKS5 answer: {0}")]
    Protocol(&'static str),
}

impl ProxyFailure {
    /// What this failure means for a message: the network and a passing proxy trouble are
    /// transient; wrong or missing proxy credentials, a proxy that refuses by rule or cannot
    /// do what is asked, or a peer that does not speak SOCKS5 are this side's setup to fix
    /// (local: the message waits for the fix, it is never bounced for it).
    pub fn fault(&self) -> Fault {
        match self {
            ProxyFailure::Resolve(_)
            | ProxyFailure::Unreachable(_)
            | ProxyFailure::Timeout(_)
            | ProxyFailure::Closed
            | ProxyFailure::Io(_) => Fault::Transient,
            ProxyFailure::AuthRequired
            | ProxyFailure::NoAcceptableMethod
            | ProxyFailure::AuthRefused { .. } => Fault::Local,
            ProxyFailure::Refused { reply, .. } if reply.is_transient() => Fault::Transient,
            ProxyFailure::Refused { .. } | ProxyFailure::Protocol(_) => Fault::Local,
        }
    }
}

// ---- the handshake, sans IO ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Method,
    Auth,
    ReplyHead,
    ReplyNameLen,
    ReplyAddr { atyp: u8 },
    Done,
}

/// The client side of a SOCKS5 CONNECT: [`Handshake::poll_transmit`] gives bytes to write,
/// [`Handshake::wants`] how many bytes to read at most (never past the proxy's reply), and
/// [`Handshake::handle_input`] takes them.
pub(crate) struct Handshake {
    state: State,
    out: Vec<u8>,
    buf: Vec<u8>,
    need: usize,
    connect: Vec<u8>,
    auth: Option<(String, Vec<u8>)>,
    target: String,
    bound: Option<SocketAddr>,
}

impl Handshake {
    /// The handshake to reach `host:port` through `proxy`. A name or credentials longer
    /// than SOCKS5 can carry are a configuration error.
    pub(crate) fn new(proxy: &Proxy, host: &str, port: u16) -> Result<Self, Error> {
        let too_long = |what: &str| {
            Error::Config(ConfigError::Proxy(format!(
                "{what} is longer than the 255 bytes SOCKS5 can carry"
            )))
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut connect = vec![5, 1, 0];
        match bare.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => {
                connect.push(1);
                connect.extend(v4.octets());
            }
            Ok(IpAddr::V6(v6)) => {
                connect.push(4);
                connect.extend(v6.octets());
            }
            Err(_) => {
                let name = bare.as_bytes();
                if name.len() > 255 {
                    return Err(too_long("the server's name"));
                }
                if name.is_empty() || bare.chars().any(|c| c.is_control() || c == ':') {
                    return Err(Error::Config(ConfigError::Server(host.to_string())));
                }
                connect.push(3);
                connect.push(name.len() as u8);
                connect.extend(name);
            }
        }
        connect.extend(port.to_be_bytes());
        let auth = match (&proxy.user, &proxy.password) {
            (Some(u), p) => {
                let p = p.clone().unwrap_or_default();
                if u.is_empty() || u.len() > 255 {
                    return Err(Error::Config(ConfigError::Proxy(
                        "the proxy user name must be 1 to 255 bytes".into(),
                    )));
                }
                if p.is_empty() || p.len() > 255 {
                    return Err(Error::Config(ConfigError::Proxy(
                        "the proxy password must be 1 to 255 bytes".into(),
                    )));
                }
                let mut msg = vec![1, u.len() as u8];
                msg.extend(u.as_bytes());
                msg.push(p.len() as u8);
                msg.extend(p.as_bytes());
                Some((u.clone(), msg))
            }
            (None, _) => None,
        };
        let out = if auth.is_some() {
            vec![5, 2, 0, 2]
        } else {
            vec![5, 1, 0]
        };
        Ok(Handshake {
            state: State::Method,
            out,
            buf: Vec::with_capacity(32),
            need: 2,
            connect,
            auth,
            target: join(bare, port),
            bound: None,
        })
    }

    /// Bytes to write now, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// How many bytes to read at most; 0 once the proxy has connected.
    pub(crate) fn wants(&self) -> usize {
        self.need - self.buf.len()
    }

    /// The proxy's own address towards the server (BND.ADDR), when it gave one.
    pub(crate) fn bound(&self) -> Option<SocketAddr> {
        self.bound
    }

    /// Takes bytes read (at most [`Handshake::wants`]).
    pub(crate) fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ProxyFailure> {
        self.buf
            .extend_from_slice(&bytes[..bytes.len().min(self.wants())]);
        if self.buf.len() < self.need {
            return Ok(());
        }
        let msg = std::mem::take(&mut self.buf);
        match self.state {
            State::Method => {
                if msg[0] != 5 {
                    return Err(ProxyFailure::Protocol(
                        "the proxy's first byte is not version 5 (is it a SOCKS5 proxy?)",
                    ));
                }
                match (msg[1], &mut self.auth) {
                    (0, _) => self.send_connect(),
                    (2, Some((_, auth))) => {
                        self.out = std::mem::take(auth);
                        self.state = State::Auth;
                        self.need = 2;
                    }
                    (0xFF, Some(_)) => return Err(ProxyFailure::NoAcceptableMethod),
                    (0xFF, None) => return Err(ProxyFailure::AuthRequired),
                    _ => {
                        return Err(ProxyFailure::Protocol(
                            "the proxy chose an authentication method that was not offered",
                        ))
                    }
                }
            }
            State::Auth => {
                // RFC 1929 2: the reply's version is 1; some proxies answer with 5, the
                // SOCKS version, which is taken too. Anything else is not a SOCKS5 proxy.
                if msg[0] != 1 && msg[0] != 5 {
                    return Err(ProxyFailure::Protocol(
                        "the reply to the proxy credentials is not version 1",
                    ));
                }
                if msg[1] != 0 {
                    let user = self.auth.take().map(|(u, _)| u).unwrap_or_default();
                    return Err(ProxyFailure::AuthRefused { user });
                }
                self.auth = None;
                self.send_connect();
            }
            State::ReplyHead => {
                if msg[0] != 5 {
                    return Err(ProxyFailure::Protocol("the reply's version is not 5"));
                }
                if msg[1] != 0 {
                    return Err(ProxyFailure::Refused {
                        target: self.target.clone(),
                        reply: Socks5Reply::from_code(msg[1]),
                    });
                }
                match msg[3] {
                    1 => self.expect(State::ReplyAddr { atyp: 1 }, 4 + 2),
                    4 => self.expect(State::ReplyAddr { atyp: 4 }, 16 + 2),
                    3 => self.expect(State::ReplyNameLen, 1),
                    _ => {
                        return Err(ProxyFailure::Protocol(
                            "the reply's address type is not 1, 3 or 4",
                        ))
                    }
                }
            }
            State::ReplyNameLen => self.expect(State::ReplyAddr { atyp: 3 }, msg[0] as usize + 2),
            State::ReplyAddr { atyp } => {
                let port = u16::from_be_bytes([msg[msg.len() - 2], msg[msg.len() - 1]]);
                let ip = match atyp {
                    1 => Some(IpAddr::V4(Ipv4Addr::new(msg[0], msg[1], msg[2], msg[3]))),
                    4 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&msg[..16]);
                        Some(IpAddr::V6(Ipv6Addr::from(o)))
                    }
                    _ => None,
                };
                self.bound = ip
                    .filter(|ip| !ip.is_unspecified())
                    .map(|ip| SocketAddr::new(ip, port));
                self.state = State::Done;
                self.need = 0;
            }
            State::Done => {}
        }
        Ok(())
    }

    fn send_connect(&mut self) {
        self.out = std::mem::take(&mut self.connect);
        self.expect(State::ReplyHead, 4);
    }

    fn expect(&mut self, state: State, n: usize) {
        self.state = state;
        self.need = n;
    }
}

fn io_failure(e: io::Error, limit: Duration) -> ProxyFailure {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProxyFailure::Timeout(limit),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ProxyFailure::Closed,
        _ => ProxyFailure::Io(Arc::new(e)),
    }
}

/// The SOCKS5 handshake over a blocking stream, all of it before `deadline` (`limit` is
/// what to report when it passes). Returns the proxy's bound address, if it gave one.
pub(crate) fn handshake_blocking(
    s: &mut std::net::TcpStream,
    mut hs: Handshake,
    deadline: Instant,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyFailure> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(ProxyFailure::Timeout(limit))
        } else {
            Ok(d)
        }
    };
    let mut buf = [0u8; 262];
    loop {
        if let Some(out) = hs.poll_transmit() {
            s.set_write_timeout(Some(left()?))
                .map_err(|e| io_failure(e, limit))?;
            s.write_all(&out).map_err(|e| io_failure(e, limit))?;
        }
        let n = hs.wants();
        if n == 0 {
            break;
        }
        s.set_read_timeout(Some(left()?))
            .map_err(|e| io_failure(e, limit))?;
        match s.read(&mut buf[..n]) {
            Ok(0) => return Err(ProxyFailure::Closed),
            Ok(r) => hs.handle_input(&buf[..r])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(e, limit)),
        }
    }
    let _ = s.set_read_timeout(None);
    let _ = s.set_write_timeout(None);
    Ok(hs.bound())
}

/// The SOCKS5 handshake over a tokio stream, all of it before `deadline`.
#[cfg(feature = "tokio")]
pub(crate) async fn handshake_tokio(
    s: &mut tokio::net::TcpStream,
    mut hs: Handshake,
    deadline: Instant,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = async {
        let mut buf = [0u8; 262];
        loop {
            if let Some(out) = hs.poll_transmit() {
                s.write_all(&out).await.map_err(|e| io_failure(e, limit))?;
            }
            let n = hs.wants();
            if n == 0 {
                return Ok(hs.bound());
            }
            match s.read(&mut buf[..n]).await {
                Ok(0) => return Err(ProxyFailure::Closed),
                Ok(r) => hs.handle_input(&buf[..r])?,
                Err(e) => return Err(io_failure(e, limit)),
            }
        }
    };
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), run)
        .await
        .unwrap_or(Err(ProxyFailure::Timeout(limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(hs: &mut Handshake, replies: &[&[u8]]) -> (Vec<Vec<u8>>, Result<(), ProxyFailure>) {
        let mut sent = Vec::new();
        for r in replies {
            if let Some(o) = hs.poll_transmit() {
                sent.push(o);
            }
            // One byte at a time: a reply may arrive in any number of pieces.
            for b in r.iter() {
                if let Err(e) = hs.handle_input(std::slice::from_ref(b)) {
                    return (sent, Err(e));
                }
            }
        }
        if let Some(o) = hs.poll_transmit() {
            sent.push(o);
        }
        (sent, Ok(()))
    }

    #[test]
    fn name_goes_to_the_proxy_and_nothing_past_the_reply_is_read() {
        let p = Proxy::socks5("127.0.0.1:1080");
        let mut hs = Handshake::new(&p, "mail.example.com", 25).unwrap();
        let (sent, r) = run(&mut hs, &[&[5, 0], &[5, 0, 0, 1, 127, 0, 0, 9, 0x30, 0x39]]);
        r.unwrap();
        assert_eq!(sent[0], [5, 1, 0]);
        let mut want = vec![5, 1, 0, 3, 16];
        want.extend(b"mail.example.com");
        want.extend([0, 25]);
        assert_eq!(sent[1], want);
        assert_eq!(hs.wants(), 0);
        assert_eq!(hs.bound(), Some("127.0.0.9:12345".parse().unwrap()));
    }

    #[test]
    fn ip_literals_go_as_addresses_and_password_auth_is_rfc1929() {
        let p = Proxy::socks5("h").credentials("u", "pw");
        let mut hs = Handshake::new(&p, "::1", 587).unwrap();
        let (sent, r) = run(
            &mut hs,
            &[
                &[5, 2],
                &[1, 0],
                &[5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 1],
            ],
        );
        r.unwrap();
        assert_eq!(sent[0], [5, 2, 0, 2]);
        assert_eq!(sent[1], [1, 1, b'u', 2, b'p', b'w']);
        let mut want = vec![5, 1, 0, 4];
        want.extend(Ipv6Addr::LOCALHOST.octets());
        want.extend(587u16.to_be_bytes());
        assert_eq!(sent[2], want);
        assert_eq!(hs.bound(), None);
        let mut hs = Handshake::new(&Proxy::socks5("h"), "192.0.2.1", 25).unwrap();
        let (sent, _) = run(&mut hs, &[&[5, 0]]);
        assert_eq!(sent[1], [5, 1, 0, 1, 192, 0, 2, 1, 0, 25]);
    }

    #[test]
    fn failures_in_words() {
        let p = Proxy::socks5("h").credentials("alice", "hunter2");
        let mut hs = Handshake::new(&p, "mx", 25).unwrap();
        let e = run(&mut hs, &[&[5, 2], &[1, 1]]).1.unwrap_err();
        assert!(matches!(e, ProxyFailure::AuthRefused { ref user } if user == "alice"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(e.fault(), Fault::Local);

        // The credentials' reply carries version 1 (RFC 1929); 5 is tolerated, other bytes
        // are not a SOCKS5 proxy even with a status of 0.
        let mut hs = Handshake::new(&p, "mx", 25).unwrap();
        run(&mut hs, &[&[5, 2], &[5, 0]]).1.unwrap();
        let mut hs = Handshake::new(&p, "mx", 25).unwrap();
        let e = run(&mut hs, &[&[5, 2], &[0x48, 0]]).1.unwrap_err();
        assert!(matches!(e, ProxyFailure::Protocol(_)), "{e:?}");
        let mut hs = Handshake::new(&Proxy::socks5("h"), "mx", 25).unwrap();
        let e = run(&mut hs, &[&[5, 0xFF]]).1.unwrap_err();
        assert!(matches!(e, ProxyFailure::AuthRequired));
        let mut hs = Handshake::new(&p, "mx", 25).unwrap();
        let e = run(&mut hs, &[&[5, 0xFF]]).1.unwrap_err();
        assert!(matches!(e, ProxyFailure::NoAcceptableMethod));
        let mut hs = Handshake::new(&Proxy::socks5("h"), "mx", 25).unwrap();
        let e = run(&mut hs, &[&[4, 0]]).1.unwrap_err();
        assert!(matches!(e, ProxyFailure::Protocol(_)));
        assert_eq!(e.fault(), Fault::Local);

        for (code, transient, words) in [
            (1, true, "general SOCKS server failure"),
            (2, false, "ruleset"),
            (3, true, "network unreachable"),
            (4, true, "host unreachable"),
            (5, true, "connection refused"),
            (6, true, "TTL expired"),
            (7, false, "CONNECT not supported"),
            (8, false, "address type not supported"),
            (42, true, "unknown reply"),
        ] {
            let mut hs = Handshake::new(&Proxy::socks5("h"), "mx.example", 25).unwrap();
            let e = run(&mut hs, &[&[5, 0], &[5, code, 0, 1]]).1.unwrap_err();
            let text = e.to_string();
            assert!(text.contains(words), "{text}");
            assert!(text.contains("mx.example:25"), "{text}");
            assert!(text.contains(&format!("reply {code})")), "{text}");
            let want = if transient {
                Fault::Transient
            } else {
                Fault::Local
            };
            assert_eq!(e.fault(), want, "{code}");
        }
    }

    #[test]
    fn urls_and_redaction() {
        let p: Proxy = "socks5://al%40ce:s%3Acret@[::1]:9050".parse().unwrap();
        assert_eq!((p.host(), p.port(), p.user()), ("::1", 9050, Some("al@ce")));
        assert_eq!(p.password.as_deref(), Some("s:cret"));
        assert_eq!(p.to_string(), "socks5://al%40ce@[::1]:9050");
        assert!(!format!("{p:?}").contains("cret"));
        let p: Proxy = "socks5h://proxy.example".parse().unwrap();
        assert_eq!((p.port(), p.user()), (1080, None));
        for bad in [
            "http://u:hunter2@h:1",
            "socks4://h",
            "socks5://:hunter2@h",
            "socks5://u:hunter2@h/path",
            "h:1080",
        ] {
            let e = bad.parse::<Proxy>().unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(Handshake::new(&Proxy::socks5("h"), &"a".repeat(256), 25).is_err());
        let long = Proxy::socks5("h").credentials("u", "p".repeat(256));
        assert!(Handshake::new(&long, "mx", 25).is_err());
    }
}
