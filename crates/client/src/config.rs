//! How to reach a server: host, port, TLS mode, credentials, timeouts.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postline_proto::session::Phase;
use postline_proto::Mechanism;

use crate::certificate::Pin;
use crate::tls::ClientIdentity;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Clear text throughout.
    None,
    /// STARTTLS (RFC 3207), required: fail if the server does not offer it.
    StartTls,
    /// STARTTLS when the server offers it, clear text otherwise.
    Opportunistic,
    /// TLS from the first byte (RFC 8314, port 465).
    Implicit,
}

/// Which protocol the session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// SMTP (RFC 5321): EHLO, one reply to the end of data for the whole message.
    #[default]
    Smtp,
    /// LMTP (RFC 2033), to a final delivery agent (Dovecot, Cyrus): LHLO, and one reply per
    /// accepted recipient after the data, so each recipient's [`crate::Delivery`] says
    /// whether its own mailbox took the message. Its default port is 24.
    Lmtp,
}

/// Per-phase timeouts, RFC 5321 4.5.3.2 by default. Start from `Timeouts::default()` and set
/// fields (more may come, hence `non_exhaustive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP connect, per address (30 s).
    pub connect: Duration,
    /// The 220 greeting (5 min).
    pub greeting: Duration,
    /// EHLO, STARTTLS, AUTH, RSET, QUIT and the TLS handshake (5 min).
    pub command: Duration,
    /// MAIL (5 min).
    pub mail: Duration,
    /// RCPT (5 min).
    pub rcpt: Duration,
    /// The 354 after DATA (2 min).
    pub data_start: Duration,
    /// Each write of message data (3 min).
    pub data_block: Duration,
    /// The reply after the end of data (10 min).
    pub data_end: Duration,
    /// A cap on each whole operation (connecting and setting up, one message or one batch,
    /// QUIT), whatever the phases allow; none by default.
    pub attempt: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        let m = |p: Phase| Duration::from_secs(p.default_timeout_secs());
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: m(Phase::Greeting),
            command: m(Phase::Command),
            mail: m(Phase::Mail),
            rcpt: m(Phase::Rcpt),
            data_start: m(Phase::DataStart),
            data_block: m(Phase::DataBlock),
            data_end: m(Phase::DataEnd),
            attempt: None,
        }
    }
}

impl Timeouts {
    /// The timeout for a phase.
    pub fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Greeting => self.greeting,
            Phase::Command => self.command,
            Phase::Mail => self.mail,
            Phase::Rcpt => self.rcpt,
            Phase::DataStart => self.data_start,
            Phase::DataBlock => self.data_block,
            Phase::DataEnd => self.data_end,
        }
    }

    /// With a cap on each whole operation ([`Timeouts::attempt`]).
    pub fn attempt(mut self, cap: Duration) -> Self {
        self.attempt = Some(cap);
        self
    }

    /// Every timeout capped at `max` (for impatient callers such as `--timeout`); the cap on
    /// a whole operation is left as it is.
    pub fn capped(self, max: Duration) -> Self {
        let c = |d: Duration| d.min(max);
        Timeouts {
            connect: c(self.connect),
            greeting: c(self.greeting),
            command: c(self.command),
            mail: c(self.mail),
            rcpt: c(self.rcpt),
            data_start: c(self.data_start),
            data_block: c(self.data_block),
            data_end: c(self.data_end),
            attempt: self.attempt,
        }
    }
}

/// Credentials, owned. `Debug` never shows the secret.
#[derive(Clone)]
pub enum Auth {
    /// User name and password.
    Password {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// OAuth 2.0 bearer token (XOAUTH2, OAUTHBEARER).
    Token {
        /// User name.
        user: String,
        /// Access token.
        token: String,
    },
    /// SASL EXTERNAL (RFC 4422 appendix A): no secret; the server takes the identity from
    /// the TLS client certificate (`Config::client_certificate`). Used only under TLS.
    External {
        /// Identity to act as; `None` (usual) asks for the one the certificate names.
        authzid: Option<String>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Password { user, .. } => {
                write!(f, "Password {{ user: {user:?}, password: *** }}")
            }
            Auth::Token { user, .. } => write!(f, "Token {{ user: {user:?}, token: *** }}"),
            Auth::External { authzid } => write!(f, "External {{ authzid: {authzid:?} }}"),
        }
    }
}

/// Which way a transcript line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (`C:`).
    Client,
    /// Server to client (`S:`).
    Server,
}

/// Receives each transcript line, with credentials already replaced by `***`.
pub type TranscriptSink = Arc<dyn Fn(Direction, &str) + Send + Sync>;

/// Everything needed to open a session. Built with [`Config::relay`] and chained setters.
#[derive(Clone)]
pub struct Config {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) tls: Tls,
    /// Whether the caller chose the TLS mode; until then it follows the port (465 implicit,
    /// else STARTTLS).
    pub(crate) tls_chosen: bool,
    pub(crate) tls_name: Option<String>,
    pub(crate) auth: Option<Auth>,
    pub(crate) mechanism: Option<Mechanism>,
    pub(crate) allow_plaintext_auth: bool,
    pub(crate) hello: Option<String>,
    pub(crate) timeouts: Timeouts,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) extra_roots: Vec<Vec<u8>>,
    pub(crate) accept_invalid_certs: bool,
    pub(crate) system_roots: bool,
    pub(crate) pins: Vec<Pin>,
    pub(crate) client_identity: Option<ClientIdentity>,
    pub(crate) rustls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) pipelining: bool,
    pub(crate) require_tls: bool,
    pub(crate) chunking: bool,
    pub(crate) transcript: Option<TranscriptSink>,
    pub(crate) proxy: Option<crate::proxy::Proxy>,
    pub(crate) source_address: Option<std::net::IpAddr>,
    pub(crate) stop_after: Option<StopAfter>,
    pub(crate) protocol: Protocol,
}

/// Where connecting stops short of a usable session (swaks' `--quit-after`), for a caller
/// that only tests a server's setup steps and then says QUIT; see [`Config::stop_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopAfter {
    /// After the greeting: no EHLO.
    Banner,
    /// After the first EHLO (or HELO) reply: no STARTTLS, no AUTH.
    Helo,
    /// After STARTTLS and the EHLO over TLS (or, with no STARTTLS to do, after EHLO): no AUTH.
    Tls,
    /// After AUTH: every setup step, as a plain connect.
    Auth,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.effective_port())
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("mechanism", &self.mechanism)
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("hello", &self.hello)
            .field("timeouts", &self.timeouts)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("pins", &self.pins)
            .field("client_identity", &self.client_identity)
            .field("proxy", &self.proxy)
            .field("source_address", &self.source_address)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A relay (smarthost) at `server`: a host name or address, optionally with a port
    /// (`mail.example.com`, `127.0.0.1:2600`, `[2001:db8::1]:587`; [`Config::port`] overrides
    /// it). Defaults: STARTTLS required on port 587, certificates verified, RFC 5321
    /// timeouts, PIPELINING used when offered. Port 465 (given here or with
    /// [`Config::port`]) means implicit TLS unless [`Config::tls`] says otherwise, since
    /// that port speaks TLS from the first byte (RFC 8314). A server without TLS (a local
    /// test server) needs `.tls(Tls::None)`, or an `smtp://` URL. See also
    /// [`Config::from_url`].
    ///
    /// An absolute path (`/run/dovecot/lmtp`, `/var/spool/postfix/public/smtp.sock`) is a
    /// Unix stream socket ([`Config::unix_socket`]), kept whole: a colon in it is part of the
    /// name, not a port. There the TLS mode defaults to [`Tls::None`] (a local socket has no
    /// certificate to check; choose another mode with [`Config::tls`], naming the certificate
    /// with [`Config::tls_server_name`]); plaintext AUTH stays refused unless
    /// [`Config::allow_plaintext_auth`] says otherwise.
    pub fn relay(server: impl Into<String>) -> Self {
        let (host, port) = split_server(server.into());
        Config {
            tls: tls_for(&host, port),
            host,
            port,
            tls_chosen: false,
            tls_name: None,
            auth: None,
            mechanism: None,
            allow_plaintext_auth: false,
            hello: None,
            timeouts: Timeouts::default(),
            ca_files: Vec::new(),
            extra_roots: Vec::new(),
            accept_invalid_certs: false,
            system_roots: false,
            pins: Vec::new(),
            client_identity: None,
            rustls: None,
            pipelining: true,
            stop_after: None,
            protocol: Protocol::Smtp,
            require_tls: false,
            chunking: false,
            transcript: None,
            proxy: None,
            source_address: None,
        }
    }

    /// The port; by default 465 for implicit TLS, 587 for STARTTLS, 25 otherwise.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        if !self.tls_chosen {
            self.tls = tls_for(&self.host, self.port);
        }
        self
    }

    /// The TLS mode.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self.tls_chosen = true;
        self
    }

    /// The name the server certificate must carry, when it differs from the host (e.g.
    /// connecting to an IP address).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_name = Some(name.into());
        self
    }

    /// Authenticate with a user name and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Password {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Authenticate with an OAuth 2.0 access token (OAUTHBEARER or XOAUTH2).
    pub fn oauth_token(mut self, user: impl Into<String>, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Token {
            user: user.into(),
            token: token.into(),
        });
        self
    }

    /// Authenticate with SASL EXTERNAL: the identity is the one the TLS client certificate
    /// proves (set with `Config::client_certificate`), so no password is needed. Tried only
    /// over TLS and only when the server offers EXTERNAL; the server decides whether the
    /// certificate identifies a user it accepts.
    pub fn sasl_external(mut self) -> Self {
        self.auth = Some(Auth::External { authzid: None });
        self
    }

    /// Like [`Config::sasl_external`], asking to act as `authzid` (an identity the
    /// certificate's owner is allowed to act for) instead of the certificate's own.
    pub fn sasl_external_as(mut self, authzid: impl Into<String>) -> Self {
        self.auth = Some(Auth::External {
            authzid: Some(authzid.into()),
        });
        self
    }

    /// Use this mechanism instead of choosing the strongest one offered.
    pub fn auth_mechanism(mut self, mechanism: Mechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// Allow credentials over an unencrypted connection. Off by default, and best left so.
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.allow_plaintext_auth = allow;
        self
    }

    /// The name announced in EHLO/HELO. By default: this machine's fully qualified name when
    /// it has one (the host name if it has a dot, else its fully qualified alias in
    /// `/etc/hosts`), else the address literal of the connection's local end (`[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`), as RFC 5321 4.1.4 asks; strict servers refuse a bare host
    /// name.
    pub fn hello_name(mut self, name: impl Into<String>) -> Self {
        self.hello = Some(name.into());
        self
    }

    /// Replaces all timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Trusts the CA certificates in a PEM file, besides the built-in web roots. A
    /// certificate in it that is the server's own (a self-signed one, as `openssl req -x509`
    /// makes, even marked `CA:TRUE`) is trusted as itself; its dates and names are still
    /// checked.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self.rustls = None;
        self
    }

    /// Trusts a CA certificate given in DER, besides the built-in web roots (and as itself,
    /// like a certificate from [`Config::ca_file`]).
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(der.into());
        self.rustls = None;
        self
    }

    /// Trusts the server only if its certificate matches this pin (or another one given);
    /// chain, names and dates are then not checked, and the usual trust roots are not
    /// consulted (as msmtp's `tls_fingerprint`; curl checks its `--pinnedpubkey` on top of
    /// the chain). The handshake still proves the server holds the pinned certificate's key.
    /// TLS becomes required (opportunistic STARTTLS acts as required), and the pin is
    /// checked even with [`Config::dangerous_accept_invalid_certificates`].
    pub fn pin(mut self, pin: Pin) -> Self {
        self.pins.push(pin);
        self.rustls = None;
        self
    }

    /// Presents this client certificate (PEM: the certificate, optionally followed by its
    /// chain) with its private key (PEM, PKCS#8, PKCS#1 or SEC1) when the server asks for
    /// one: for relays that authenticate clients by certificate, and SASL EXTERNAL.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_identity = Some(ClientIdentity::Files {
            cert: cert.into(),
            key: key.into(),
        });
        self.rustls = None;
        self
    }

    /// Like [`Config::client_certificate`], from DER in memory (the certificate first).
    pub fn client_certificate_der(mut self, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Self {
        self.client_identity = Some(ClientIdentity::Der {
            chain,
            key: Arc::new(key),
        });
        self.rustls = None;
        self
    }

    /// Forgets the pins given with [`Config::pin`].
    pub fn clear_pins(mut self) -> Self {
        self.pins.clear();
        self.rustls = None;
        self
    }

    /// Accepts ANY server certificate: no protection against an attacker in the middle. For
    /// tests against servers with throwaway certificates only.
    pub fn dangerous_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self.rustls = None;
        self
    }

    /// Trusts the operating system's certificate store too, besides the built-in web roots
    /// (off by default: the built-in roots behave the same on every machine).
    pub fn system_roots(mut self, on: bool) -> Self {
        self.system_roots = on;
        self.rustls = None;
        self
    }

    /// Uses this rustls configuration for TLS instead of building one from the trust
    /// settings above (which it then overrides). Shared, so a pool or a mailer builds its
    /// TLS configuration once.
    pub fn rustls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.rustls = Some(tls);
        self
    }

    /// Builds the rustls configuration now, once, so every connection made from this
    /// configuration (and its clones) shares it. Connecting does this by itself; call it
    /// to learn of a bad CA file before the first connection, or before cloning the
    /// configuration for many connections.
    pub fn prepare_tls(mut self) -> Result<Self, crate::Error> {
        crate::tls::check_required_name(&self)?;
        crate::tls::check_require_tls(&self)?;
        if self.tls != Tls::None && self.rustls.is_none() {
            self.rustls = Some(crate::tls::build_client_config(&self)?);
        }
        Ok(self)
    }

    /// Sends every message with `REQUIRETLS` (RFC 8689): the server must offer it over TLS
    /// with a verified certificate, and must then keep the message on TLS all the way; a
    /// server that does not offer it is not sent the message (the refusal is permanent for
    /// it, [`crate::Refusal::RequireTlsUnavailable`]). TLS becomes required: opportunistic
    /// STARTTLS acts as required STARTTLS; no TLS, or certificates not verified, is a
    /// configuration error. (Per message: [`crate::Envelope::require_tls`].)
    pub fn require_tls(mut self, on: bool) -> Self {
        self.require_tls = on;
        self
    }

    /// Whether a client certificate is configured: with [`Config::client_certificate`], or
    /// in the rustls configuration given.
    pub fn has_client_certificate(&self) -> bool {
        self.client_identity.is_some()
            || self
                .rustls
                .as_ref()
                .is_some_and(|c| c.client_auth_cert_resolver.has_certs())
    }

    /// Whether the server's certificate is checked: unless verification was turned off
    /// without a pin to check instead.
    pub fn verifies_certificates(&self) -> bool {
        !self.accept_invalid_certs || !self.pins.is_empty()
    }

    /// Whether a session without TLS is refused: STARTTLS or implicit TLS asked for, or
    /// opportunistic TLS with REQUIRETLS or a pin (which would mean nothing in clear text).
    pub fn tls_required(&self) -> bool {
        match self.tls {
            Tls::StartTls | Tls::Implicit => true,
            Tls::None => false,
            Tls::Opportunistic => self.require_tls || !self.pins.is_empty(),
        }
    }

    /// Whether messages are sent with `REQUIRETLS` ([`Config::require_tls`]).
    pub fn requires_tls(&self) -> bool {
        self.require_tls
    }

    /// Connect only up to `stage`: the connection ends set up that far, sends no message
    /// (a send is [`crate::Error::NotReady`]) and is meant for QUIT. A refusal at or before
    /// the stage fails the connect as usual.
    pub fn stop_after(mut self, stage: StopAfter) -> Self {
        self.stop_after = Some(stage);
        self
    }

    /// The protocol: SMTP (default) or LMTP ([`Protocol::Lmtp`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The protocol in effect.
    pub fn protocol_in_use(&self) -> Protocol {
        self.protocol
    }

    /// Use PIPELINING when offered (default on).
    pub fn pipelining(mut self, on: bool) -> Self {
        self.pipelining = on;
        self
    }

    /// Send messages with BDAT when CHUNKING and PIPELINING are offered (default off).
    pub fn chunking(mut self, on: bool) -> Self {
        self.chunking = on;
        self
    }

    /// Receive the SMTP transcript, credentials redacted. (The same lines also go to
    /// `tracing` at debug level, target `postline::transcript`.)
    pub fn transcript(mut self, sink: impl Fn(Direction, &str) + Send + Sync + 'static) -> Self {
        self.transcript = Some(Arc::new(sink));
        self
    }

    /// Connects through this SOCKS5 proxy ([`crate::Proxy`]): [`crate::Client::connect`],
    /// `AsyncClient::connect` and so pools and `Mailer` open their connection to the proxy
    /// and ask it to connect to the server. The server's name goes to the proxy (it
    /// resolves it; nothing is looked up here), an IP address as an address. Reaching the
    /// proxy and its whole handshake are bounded by [`Timeouts::connect`] (and the cap on
    /// the operation). For direct delivery (`Mailer::direct`) MX and address lookups stay
    /// local and each exchanger's address is connected to through the proxy.
    pub fn proxy(mut self, proxy: crate::proxy::Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Binds the local end of the connection to this address before connecting (the port
    /// is left to the system). Only the server's addresses of the same family are tried
    /// (with a proxy: the proxy's). An address that is not this host's is a configuration
    /// error ([`crate::ConfigError::SourceAddress`]), as is a server with no address of its
    /// family.
    pub fn source_address(mut self, address: std::net::IpAddr) -> Self {
        self.source_address = Some(address);
        self
    }

    /// The SOCKS5 proxy connections go through, if any.
    pub fn proxy_settings(&self) -> Option<&crate::proxy::Proxy> {
        self.proxy.as_ref()
    }

    /// The local address connections are bound to, if one was set.
    pub fn bound_source_address(&self) -> Option<std::net::IpAddr> {
        self.source_address
    }

    /// The host (for a Unix socket, its path).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The Unix stream socket the server is reached through, when the server was given as an
    /// absolute path: [`crate::Client::connect`] (and `AsyncClient::connect`, pools,
    /// `Mailer`) connect there instead of to a TCP host. The port is then unused, and there
    /// is no proxy or source address ([`ConfigError::UnixSocketProxy`],
    /// [`ConfigError::UnixSocketSourceAddress`]).
    ///
    /// [`ConfigError::UnixSocketProxy`]: crate::ConfigError::UnixSocketProxy
    /// [`ConfigError::UnixSocketSourceAddress`]: crate::ConfigError::UnixSocketSourceAddress
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        is_unix_path(&self.host).then(|| std::path::Path::new(&self.host))
    }

    /// The port in effect: as set, or 24 for LMTP, 465 for implicit TLS, 587 for STARTTLS,
    /// 25 otherwise.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            _ if self.protocol == Protocol::Lmtp => 24,
            Tls::Implicit => 465,
            Tls::StartTls => 587,
            Tls::None | Tls::Opportunistic => 25,
        })
    }

    /// The name the server's certificate is checked against: the TLS server name if set,
    /// else the host.
    pub fn server_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.host)
    }

    /// The rustls configuration connections use, once built by [`Config::prepare_tls`] or
    /// given with [`Config::rustls_config`] (for a custom driver's TLS upgrade).
    pub fn rustls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.rustls.as_ref()
    }

    /// The TLS mode in effect.
    pub fn tls_mode(&self) -> Tls {
        self.tls
    }

    /// Announces the address literal of `local` (this end of the connection) in EHLO when no
    /// name was set and this machine has no fully qualified name. [`crate::Client::connect`]
    /// does this by itself; callers of `from_stream` who know their local address may too.
    pub fn hello_from_local_address(mut self, local: std::net::SocketAddr) -> Self {
        if self.hello.is_none() && crate::hello::fqdn().is_none() {
            self.hello = Some(crate::hello::address_literal(local.ip()));
        }
        self
    }

    pub(crate) fn hello_or_default(&self) -> String {
        if let Some(h) = &self.hello {
            return h.clone();
        }
        crate::hello::default_name()
    }
}

/// The TLS mode the server implies when the caller has not chosen one: none on a Unix socket
/// (local; no certificate names it), implicit TLS on 465 (submissions, RFC 8314), required
/// STARTTLS anywhere else.
fn tls_for(host: &str, port: Option<u16>) -> Tls {
    if is_unix_path(host) {
        Tls::None
    } else if port == Some(465) {
        Tls::Implicit
    } else {
        Tls::StartTls
    }
}

/// A server that is an absolute path names a Unix socket.
pub(crate) fn is_unix_path(host: &str) -> bool {
    host.starts_with('/')
}

/// `host:port` and `[v6]:port` split; what is not `HOST[:PORT]` is kept whole, for the
/// connection to refuse as a configuration error. A path is kept whole, colons and all.
fn split_server(server: String) -> (String, Option<u16>) {
    if is_unix_path(&server) {
        return (server, None);
    }
    crate::server::parse_server(&server).unwrap_or((server, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_takes_a_port_with_the_host() {
        let c = Config::relay("127.0.0.1:2600");
        assert_eq!((c.host(), c.effective_port()), ("127.0.0.1", 2600));
        let c = Config::relay("[::1]:2525");
        assert_eq!((c.host(), c.effective_port()), ("::1", 2525));
        let c = Config::relay("::1");
        assert_eq!((c.host(), c.effective_port()), ("::1", 587));
        let c = Config::relay("mail.example.com").tls(Tls::Implicit);
        assert_eq!(c.effective_port(), 465);
        assert_eq!(Config::relay("h:2600").port(25).effective_port(), 25);
        // Port 465 speaks TLS from the start, unless the caller says otherwise.
        assert_eq!(Config::relay("h:465").tls, Tls::Implicit);
        assert_eq!(Config::relay("h").port(465).tls, Tls::Implicit);
        assert_eq!(Config::relay("h:465").port(587).tls, Tls::StartTls);
        assert_eq!(
            Config::relay("h").tls(Tls::StartTls).port(465).tls,
            Tls::StartTls
        );
        assert_eq!(Config::relay("h").port(465).tls(Tls::None).tls, Tls::None);
        // Not a port: kept whole, and refused when connecting (not a DNS failure).
        assert_eq!(Config::relay("h:smtp").host(), "h:smtp");
        assert_eq!(Config::relay("h:0").host(), "h:0");
    }

    #[test]
    fn an_absolute_path_is_a_unix_socket() {
        let c = Config::relay("/run/dovecot/lmtp");
        assert_eq!(
            c.unix_socket(),
            Some(std::path::Path::new("/run/dovecot/lmtp"))
        );
        assert_eq!(c.host(), "/run/dovecot/lmtp");
        // Local: no TLS unless asked for, whatever the port says.
        assert_eq!(c.tls, Tls::None);
        assert_eq!(Config::relay("/x.sock").port(465).tls, Tls::None);
        assert_eq!(
            Config::relay("/x.sock").tls(Tls::StartTls).tls,
            Tls::StartTls
        );
        assert_eq!(
            Config::relay("/x.sock").tls(Tls::Implicit).port(25).tls,
            Tls::Implicit
        );
        // A colon is part of the name, not a port.
        let c = Config::relay("/run/a:25");
        assert_eq!(c.unix_socket(), Some(std::path::Path::new("/run/a:25")));
        assert_eq!(c.port, None);
        // Not absolute: a host (refused when connecting if it is no host name).
        assert_eq!(Config::relay("run/x.sock").unix_socket(), None);
        assert_eq!(Config::relay("mail.example.com").unix_socket(), None);
        // Security defaults stay: no plaintext AUTH unless allowed.
        assert!(!Config::relay("/x.sock").allow_plaintext_auth);
    }

    #[test]
    fn default_ports() {
        assert_eq!(Config::relay("h").effective_port(), 587);
        assert_eq!(Config::relay("h").tls(Tls::Implicit).effective_port(), 465);
        assert_eq!(Config::relay("h").tls(Tls::None).effective_port(), 25);
        assert_eq!(
            Config::relay("h")
                .tls(Tls::None)
                .port(2525)
                .effective_port(),
            2525
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config::relay("h").credentials("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Config::relay("h").oauth_token("u", "ya29.token");
        assert!(!format!("{c:?}").contains("ya29"));
        let c = Config::relay("h").proxy(crate::Proxy::socks5("p").credentials("pu", "s3cr3t"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && shown.contains("pu"), "{shown}");
    }

    #[test]
    fn timeouts_follow_rfc5321() {
        let t = Timeouts::default();
        assert_eq!(t.greeting, Duration::from_secs(300));
        assert_eq!(t.data_start, Duration::from_secs(120));
        assert_eq!(t.data_block, Duration::from_secs(180));
        assert_eq!(t.data_end, Duration::from_secs(600));
        let c = t.capped(Duration::from_secs(3));
        assert_eq!(c.data_end, Duration::from_secs(3));
        assert_eq!(c.for_phase(Phase::Rcpt), Duration::from_secs(3));
    }
}
