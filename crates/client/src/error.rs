//! The one error type of the client, grouped by who is at fault, each saying what it means
//! for the message ([`Error::fault`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postline_proto::command::AddressError;
use postline_proto::negotiate::Refusal;
use postline_proto::session::{FailedAt, Phase, SessionError};

use crate::outcome::Recipient;
use crate::reply::ServerReply;
use crate::tls_failure::TlsFailure;

/// What an error means for the message, decided once here so that every caller (a program,
/// the queue, the command line) retries, bounces or reports alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A later attempt may succeed: the network, a timeout, a 4xx reply, a server closing.
    Transient,
    /// Retrying the same message with this server cannot help: a 5xx reply, a server that
    /// cannot take the message, a certificate that does not verify.
    Permanent,
    /// The end of data was on the wire and no final reply came: the server may have taken
    /// the message. A retry may deliver it twice; not retrying may lose it (RFC 5321 6.1
    /// prefers the duplicate).
    InDoubt,
    /// A fault on this side: configuration, an invalid argument, a message that cannot be
    /// read. Nothing reached a server that could decide; fix it and try again.
    Local,
}

/// Why a connection or a message failed. Variants that stem from a server reply carry it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- the network ------------------------------------------------------------------
    /// The server's name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host as configured.
        host: String,
        /// What the resolver said.
        source: Arc<io::Error>,
    },
    /// No address of the host accepted a TCP connection.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// The host as configured.
        host: String,
        /// The port.
        port: u16,
        /// The last attempt's error.
        source: Arc<io::Error>,
    },
    /// The server's Unix socket ([`crate::Config::unix_socket`]) could not be connected to:
    /// nothing at the path or nobody listening (the server is not running: transient), a
    /// backlog still full when the connect timeout passed (transient), no permission, a path
    /// that is not a socket or too long for one (fix this side: [`Fault::Local`]).
    #[error("cannot connect to Unix socket {}: {source}", .path.display())]
    ConnectUnix {
        /// The socket's path, as configured.
        path: PathBuf,
        /// Why.
        source: Arc<io::Error>,
    },
    /// The server did not answer (or take data) in time.
    #[error("timed out after {}s waiting for the {} reply", .after.as_secs_f32(), .phase.name())]
    Timeout {
        /// What was awaited (RFC 5321 4.5.3.2 timer).
        phase: Phase,
        /// The timeout that fired.
        after: Duration,
    },
    /// The connection closed or was reset while replies were due.
    #[error("connection closed by the server while waiting for the {} reply", .phase.name())]
    ConnectionLost {
        /// What was awaited.
        phase: Phase,
    },
    /// Another I/O error on the connection.
    #[error("I/O error on the connection: {0}")]
    Io(Arc<io::Error>),
    /// The SOCKS5 proxy could not be reached, refused the credentials, or could not connect
    /// to the server ([`crate::Config::proxy`]). The password is never shown.
    #[error("SOCKS5 proxy {proxy}: {failure}")]
    Proxy {
        /// The proxy, `host:port`.
        proxy: String,
        /// What went wrong.
        failure: crate::proxy::ProxyFailure,
    },

    // ---- the server said no -----------------------------------------------------------
    /// The server refused the session at its greeting or at HELO.
    #[error("server refused the session: {0}")]
    Rejected(ServerReply),
    /// The server is closing the connection (421).
    #[error("server closed the session: {0}")]
    ServiceClosing(ServerReply),
    /// STARTTLS was required but the server does not offer it, or refused it.
    #[error("{}", match .0 { Some(r) => format!("server refused STARTTLS: {r}"), None => "server does not offer STARTTLS, which the configuration requires".to_string() })]
    StartTlsUnavailable(Option<ServerReply>),
    /// The server offers no mechanism the credentials can use, or not the one asked for
    /// (nothing secret was sent).
    #[error("no usable authentication mechanism: server offers [{offered}]{}", .wanted.map(|m| format!(", not {} (asked for)", m.name())).unwrap_or_default())]
    NoAuthMechanism {
        /// What the server announced.
        offered: String,
        /// The mechanism asked for, when one was.
        wanted: Option<postline_proto::Mechanism>,
    },
    /// The server refused the credentials.
    #[error("authentication failed: {reply}{}", if *.advertised { "" } else { " (the server did not advertise AUTH)" })]
    AuthRejected {
        /// The server's reply (535, 534, 454...).
        reply: ServerReply,
        /// Whether the server had announced AUTH at all.
        advertised: bool,
    },
    /// The server cannot take this message as asked (too large, 8-bit, SMTPUTF8,
    /// REQUIRETLS); nothing was sent.
    #[error("{0}")]
    Incompatible(Refusal),
    /// The server did not accept the message: MAIL, every RCPT, DATA or the message itself
    /// was refused. `recipients` tells each recipient's reply where it got one.
    #[error("message not accepted ({}): {}", describe_stage(*.at), .reply.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "no recipient accepted".into()))]
    MessageRejected {
        /// The step that failed.
        at: FailedAt,
        /// The reply that said so (none when only RCPT replies did).
        reply: Option<ServerReply>,
        /// Each recipient, with its RCPT reply where one came.
        recipients: Vec<Recipient>,
    },

    // ---- the server misbehaved --------------------------------------------------------
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol error).
    #[error("TLS with {host} failed: {failure}")]
    Tls {
        /// The name the certificate was checked against.
        host: String,
        /// What went wrong, with the certificate when it is about one.
        failure: TlsFailure,
    },
    /// The server kept challenging an AUTH exchange past any real mechanism's needs.
    #[error("authentication did not finish after {rounds} challenges")]
    AuthRounds {
        /// Challenges answered before giving up.
        rounds: u32,
    },
    /// The server sent something that is not valid SMTP, or a reply out of place.
    #[error("protocol violation by the server: {0}")]
    Protocol(SessionError),
    /// SCRAM: the server ended the exchange without proving it knows the password (its
    /// signature `v=` was missing or wrong), even if it said 235. It may be an impostor
    /// between the client and the real server, so nothing more is sent to it. Transient:
    /// another attempt, maybe over another path or to another MX, may reach the real server.
    #[error("the server could not prove it knows the password (its SCRAM signature was missing or wrong), so it may be an impostor; it answered: {reply}")]
    ServerNotVerified {
        /// The server's final reply (235 claiming success, or the failure after the client
        /// cancelled).
        reply: ServerReply,
    },

    /// The server's AUTH challenge made no sense for the mechanism (a SCRAM message that
    /// breaks the rules: a nonce not extending ours, an absurd iteration count; a prompt too
    /// many), so the client cancelled the exchange. Nothing secret was sent in answer.
    #[error("authentication cancelled: the server's {mechanism} challenge was not valid; it answered: {reply}")]
    AuthChallengeRefused {
        /// The mechanism.
        mechanism: &'static str,
        /// The server's reply to the cancellation.
        reply: ServerReply,
    },

    // ---- the message's fate is unknown ------------------------------------------------
    /// The end of data was on the wire and the final reply never came (the connection
    /// failed for `cause`): the message may or may not have been delivered.
    #[error("{cause} (the message may or may not have been delivered)")]
    DeliveryUnknown {
        /// What ended the connection.
        cause: Box<Error>,
        /// What the server had said about each recipient by then, in envelope order, when
        /// the client knows (empty otherwise): a recipient refused at RCPT was certainly not
        /// delivered, and over LMTP a recipient whose own reply to the data came is decided
        /// by it. The others are the ones in doubt.
        recipients: Vec<crate::outcome::Recipient>,
    },
    /// The message was never completed at the server, because the connection failed for
    /// `cause`: certainly not delivered.
    #[error("not sent: {cause}")]
    NotSent {
        /// What ended the connection.
        cause: Box<Error>,
    },

    // ---- this side --------------------------------------------------------------------
    /// The configuration cannot work (HELO name, TLS name, CA file, ...).
    #[error("configuration: {0}")]
    Config(ConfigError),
    /// Credentials would have crossed an unencrypted connection; allow it with
    /// `Config::allow_plaintext_auth` if that is really intended.
    #[error("refusing to send credentials over an unencrypted connection (use TLS, or allow plaintext auth explicitly)")]
    PlaintextAuthRefused,
    /// An address was invalid.
    #[error("invalid address {address:?}: {source}")]
    Address {
        /// The text given.
        address: String,
        /// What is wrong with it.
        source: AddressError,
    },
    /// A message could not be built or read ([`crate::Message::builder`],
    /// [`crate::Message::from_bytes`]); nothing was sent.
    #[cfg(feature = "message")]
    #[error("{0}")]
    Message(Arc<crate::message::MessageError>),
    /// An envelope needs at least one recipient.
    #[error("an envelope needs at least one recipient")]
    NoRecipients,
    /// Reading the message failed.
    #[error("cannot read the message: {0}")]
    ReadMessage(Arc<io::Error>),
    /// A call the connection cannot take now (for instance a message on a connection still
    /// in the middle of another one).
    #[error("the connection is not ready for that now")]
    NotReady,
    /// The client was used after its connection ended.
    #[error("the connection is closed")]
    Closed,
    /// An earlier call on this client was cancelled (its future dropped) in the middle of an
    /// exchange, so the session's state is unknown and the connection cannot be used: open a
    /// new one. A message whose send was cancelled after its end of data left may have been
    /// delivered.
    #[error(
        "an earlier operation on this connection was cancelled; the connection cannot be used"
    )]
    Cancelled,
}

/// A configuration that cannot work. Nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The name announced in EHLO is not a domain or address literal.
    #[error("HELO name {name:?}: {source}")]
    HelloName {
        /// The name.
        name: String,
        /// Why it is not valid.
        source: AddressError,
    },
    /// The name the certificate is checked against is not a DNS name or IP address.
    #[error("TLS server name {0:?} is not a DNS name or IP address")]
    TlsServerName(String),
    /// A CA file could not be read or holds no usable certificate.
    #[error("CA file {}: {reason}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A root certificate given in DER is not usable.
    #[error("root certificate: {0}")]
    RootCertificate(String),
    /// The operating system's trust store could not be loaded.
    #[error("system trust store: {0}")]
    SystemRoots(String),
    /// The client certificate or its key could not be read or do not go together.
    #[error("client certificate {}: {reason}", .path.display())]
    ClientCertificate {
        /// The certificate (or key) file, or `<memory>`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The client certificate's private key could not be read.
    #[error("client certificate's key {}: {reason}", .path.display())]
    ClientKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A configuration URL that cannot be used ([`crate::Config::from_url`]); the password,
    /// if any, is not shown.
    #[error("server URL: {0}")]
    Url(String),
    /// The server is not a host name or address, with an optional port (`HOST[:PORT]`).
    #[error("server {0:?} is not HOST or HOST:PORT (an IPv6 address with a port goes in brackets: [2001:db8::1]:587; a Unix socket is an absolute path)")]
    Server(String),
    /// The proxy setting cannot work (a URL that is not `socks5://`, a name or credentials
    /// SOCKS5 cannot carry); the password, if any, is not shown.
    #[error("proxy: {0}")]
    Proxy(String),
    /// The source address to bind ([`crate::Config::source_address`]) cannot be used: not
    /// an address of this host, or of another family than every address of the server.
    #[error("source address {address}: {reason}")]
    SourceAddress {
        /// The address asked for.
        address: std::net::IpAddr,
        /// Why it cannot be used.
        reason: String,
    },
    /// The server (or proxy) has no address of the source address's family (an IPv4
    /// source and an IPv6-only server). Direct delivery moves on to the next exchanger
    /// address.
    #[error("source address {address}: {host} has no {family} address to reach from it")]
    SourceFamily {
        /// The address asked for.
        address: std::net::IpAddr,
        /// The server that has none of its family.
        host: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A SOCKS5 proxy ([`crate::Config::proxy`]) with a server that is a Unix socket: a
    /// proxy connects to TCP hosts, and a local socket needs none.
    #[error("server {} is a Unix socket, which a SOCKS5 proxy cannot reach: drop the proxy, or name a TCP host", .0.display())]
    UnixSocketProxy(PathBuf),
    /// A source address ([`crate::Config::source_address`]) with a server that is a Unix
    /// socket: a local socket has no IP address to bind.
    #[error("source address {address}: server {} is a Unix socket, which has no IP address to connect from", .path.display())]
    UnixSocketSourceAddress {
        /// The socket's path.
        path: PathBuf,
        /// The address asked for.
        address: std::net::IpAddr,
    },
    /// rustls refused the TLS setup.
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The user name or password cannot be used with SCRAM: SASLprep (RFC 4013) refuses it
    /// (a control character, an unassigned code point, mixed right-to-left text...).
    #[error("the {0} is not valid for SCRAM authentication (SASLprep, RFC 4013, refuses it); choose another mechanism or change it")]
    SaslPrep(&'static str),
    /// SCRAM-SHA-256-PLUS was asked for but the connection has no channel binding (no TLS).
    #[error("SCRAM-SHA-256-PLUS needs channel binding, which only a TLS connection provides")]
    NoChannelBinding,
    /// SASL EXTERNAL was asked for over a connection without TLS: there is no client
    /// certificate to take the identity from.
    #[error("SASL EXTERNAL needs a TLS connection with a client certificate")]
    ExternalNeedsTls,
    /// SASL EXTERNAL was asked for without a client certificate to take the identity from.
    #[error(
        "SASL EXTERNAL needs a client certificate (Config::client_certificate, --cert and --key)"
    )]
    ExternalNeedsCertificate,
    /// The credentials cannot be used with the AUTH mechanism (a token for a password
    /// mechanism, a line break in a password...).
    #[error("credentials unusable with the AUTH mechanism: {0}")]
    Credentials(postline_proto::sasl::SaslError),
}

fn describe_stage(at: FailedAt) -> &'static str {
    match at {
        FailedAt::Mail => "sender refused",
        FailedAt::NoValidRecipients => "all recipients refused",
        FailedAt::Data => "DATA refused",
        FailedAt::Message => "refused after data",
    }
}

fn by_reply(r: &ServerReply) -> Fault {
    if r.is_transient() {
        Fault::Transient
    } else {
        Fault::Permanent
    }
}

impl Error {
    /// What this error means for the message: retry later, give up, unknown, or fix this
    /// side first.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::ConnectionLost { .. }
            | Error::Io(_)
            | Error::ServerNotVerified { .. }
            | Error::ServiceClosing(_) => Fault::Transient,
            Error::Proxy { failure, .. } => failure.fault(),
            Error::ConnectUnix { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied
                | io::ErrorKind::InvalidInput
                | io::ErrorKind::NotADirectory => Fault::Local,
                _ => Fault::Transient,
            },
            // Not delivered, for the reason `cause` gives: the same fault as that reason had
            // the message met it on its own (never in doubt: nothing of it was complete).
            Error::NotSent { cause } => match cause.fault() {
                Fault::InDoubt => Fault::Transient,
                f => f,
            },
            Error::Rejected(r) | Error::AuthRejected { reply: r, .. } => by_reply(r),
            Error::StartTlsUnavailable(Some(r)) => by_reply(r),
            Error::StartTlsUnavailable(None)
            | Error::NoAuthMechanism { .. }
            | Error::Incompatible(_)
            | Error::AuthRounds { .. }
            | Error::AuthChallengeRefused { .. }
            | Error::Protocol(_) => Fault::Permanent,
            Error::MessageRejected { reply: Some(r), .. } => by_reply(r),
            Error::MessageRejected {
                reply: None,
                recipients,
                ..
            } => {
                if recipients
                    .iter()
                    .any(|r| r.reply.as_ref().is_some_and(ServerReply::is_transient))
                {
                    Fault::Transient
                } else {
                    Fault::Permanent
                }
            }
            Error::Tls { failure, .. } => {
                if failure.is_transient() {
                    Fault::Transient
                } else {
                    Fault::Permanent
                }
            }
            Error::DeliveryUnknown { .. } => Fault::InDoubt,
            Error::Config(_)
            | Error::PlaintextAuthRefused
            | Error::Address { .. }
            | Error::NoRecipients
            | Error::ReadMessage(_)
            | Error::NotReady
            | Error::Cancelled
            | Error::Closed => Fault::Local,
            #[cfg(feature = "message")]
            Error::Message(_) => Fault::Local,
        }
    }

    /// Whether a later attempt may succeed: transient faults, and messages in doubt (a retry
    /// may duplicate, which RFC 5321 6.1 prefers to a loss).
    pub fn is_retryable(&self) -> bool {
        matches!(self.fault(), Fault::Transient | Fault::InDoubt)
    }

    /// True when the message may have been delivered although no final reply came.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Error::DeliveryUnknown { .. })
    }

    /// Whether the session is still in step after this error: a policy refusal or a refused
    /// message leaves it usable (and dropping the client still says QUIT).
    pub(crate) fn leaves_session_usable(&self) -> bool {
        matches!(
            self,
            Error::StartTlsUnavailable(_)
                | Error::PlaintextAuthRefused
                | Error::NoAuthMechanism { .. }
                | Error::AuthRejected { .. }
                | Error::AuthChallengeRefused { .. }
                | Error::Incompatible(_)
                | Error::MessageRejected { .. }
                | Error::NotReady
        )
    }

    /// The server reply behind this error, if one caused it.
    pub fn reply(&self) -> Option<&ServerReply> {
        match self {
            Error::Rejected(r) | Error::ServiceClosing(r) => Some(r),
            Error::StartTlsUnavailable(r) => r.as_ref(),
            Error::AuthRejected { reply, .. }
            | Error::ServerNotVerified { reply }
            | Error::AuthChallengeRefused { reply, .. } => Some(reply),
            Error::MessageRejected { reply, .. } => reply.as_ref(),
            Error::DeliveryUnknown { cause, .. } | Error::NotSent { cause } => cause.reply(),
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(feature = "message")]
impl From<crate::message::MessageError> for Error {
    /// So that `Message::builder()...build()?` works in a function returning
    /// `Result<_, postline::Error>`.
    fn from(e: crate::message::MessageError) -> Self {
        Error::Message(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults() {
        let r = |code| ServerReply {
            code,
            enhanced: None,
            lines: vec![],
        };
        assert_eq!(Error::Rejected(r(421)).fault(), Fault::Transient);
        assert_eq!(Error::Rejected(r(554)).fault(), Fault::Permanent);
        let lost = Error::ConnectionLost {
            phase: Phase::DataEnd,
        };
        assert_eq!(lost.fault(), Fault::Transient);
        let doubt = Error::DeliveryUnknown {
            cause: Box::new(lost),
            recipients: Vec::new(),
        };
        assert_eq!(doubt.fault(), Fault::InDoubt);
        let impostor = Error::ServerNotVerified { reply: r(235) };
        assert_eq!(impostor.fault(), Fault::Transient);
        assert_eq!(
            crate::delivery::status_of(&impostor),
            crate::DeliveryStatus::Deferred
        );
        assert!(impostor
            .to_string()
            .contains("could not prove it knows the password"));
        assert!(!impostor.leaves_session_usable());
        assert!(doubt.is_retryable() && doubt.is_in_doubt());
        assert!(doubt.to_string().contains("may or may not"), "{doubt}");
        assert_eq!(
            Error::Config(ConfigError::TlsServerName("x".into())).fault(),
            Fault::Local
        );
        assert!(!Error::Incompatible(Refusal::SmtpUtf8Unsupported).is_retryable());
    }
}
