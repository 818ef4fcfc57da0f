//! The one error type of the client, with variants a program can act on.

use std::io;
use std::time::Duration;

use postline_proto::command::AddressError;
use postline_proto::session::{FailedAt, Phase, SessionError};

use crate::outcome::Recipient;
use crate::reply::ServerReply;

/// Why a connection or a message failed. Every variant that stems from a server reply carries
/// it; [`Error::is_retryable`] says whether trying again later makes sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No address of the host accepted a TCP connection (or the name did not resolve).
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// The host as configured.
        host: String,
        /// The port.
        port: u16,
        /// The last attempt's error.
        source: io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol error).
    #[error("TLS with {host} failed: {source}")]
    Tls {
        /// The name the certificate was checked against.
        host: String,
        /// What rustls reported.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("timed out after {}s waiting for the {} reply", .after.as_secs_f32(), .phase.name())]
    Timeout {
        /// What was awaited (RFC 5321 4.5.3.2 timer).
        phase: Phase,
        /// The timeout that fired.
        after: Duration,
    },
    /// The server refused the session at its greeting or at HELO.
    #[error("server refused the session: {0}")]
    Rejected(ServerReply),
    /// The server is closing the connection (421): try again later.
    #[error("server closed the session: {0}")]
    ServiceClosing(ServerReply),
    /// STARTTLS was required but the server does not offer it, or refused it.
    #[error("server does not allow STARTTLS{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    StartTlsUnavailable(Option<ServerReply>),
    /// Credentials would have crossed an unencrypted connection; allow it with
    /// `Config::allow_plaintext_auth` if that is really intended.
    #[error("refusing to send credentials over an unencrypted connection (use TLS, or allow plaintext auth explicitly)")]
    PlaintextAuthRefused,
    /// The server offers no mechanism the credentials can use.
    #[error("no usable authentication mechanism: server offers [{offered}]")]
    NoAuthMechanism {
        /// What the server announced.
        offered: String,
    },
    /// The server refused the credentials.
    #[error("authentication failed: {reply}{}", if *.advertised { "" } else { " (the server did not advertise AUTH)" })]
    AuthRejected {
        /// The server's reply (535, 534, 454...).
        reply: ServerReply,
        /// Whether the server had announced AUTH at all.
        advertised: bool,
    },
    /// The message is larger than the server's SIZE limit; nothing was sent.
    #[error("message of {size} octets exceeds the server's limit of {limit} octets")]
    MessageTooLarge {
        /// The message size.
        size: u64,
        /// The server's SIZE.
        limit: u64,
    },
    /// An address needs SMTPUTF8 and the server does not offer it; nothing was sent.
    #[error("an address is not ASCII and the server does not offer SMTPUTF8")]
    SmtpUtf8Unsupported,
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
    /// The connection closed while replies were due.
    #[error("connection closed by the server while waiting for the {} reply{}", .phase.name(), if *.delivery_unknown { " (the message may or may not have been delivered)" } else { "" })]
    ConnectionLost {
        /// What was awaited.
        phase: Phase,
        /// The end of data was sent and not answered: the server may have accepted it.
        delivery_unknown: bool,
    },
    /// The server sent something that is not valid SMTP, or a reply out of place.
    #[error("protocol violation by the server: {0}")]
    Protocol(SessionError),
    /// A parameter was invalid (an address with CR/LF, a bad HELO name...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An address was invalid.
    #[error("invalid address {address:?}: {source}")]
    Address {
        /// The text given.
        address: String,
        /// What is wrong with it.
        source: AddressError,
    },
    /// The client was used after its connection ended.
    #[error("the connection is closed")]
    Closed,
    /// Reading the message failed, or another local I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn describe_stage(at: FailedAt) -> &'static str {
    match at {
        FailedAt::Mail => "sender refused",
        FailedAt::NoValidRecipients => "all recipients refused",
        FailedAt::Data => "DATA refused",
        FailedAt::Message => "refused after data",
    }
}

impl Error {
    /// Whether a later attempt may succeed: connection problems, timeouts, 421 and 4xx replies.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::ServiceClosing(_)
            | Error::ConnectionLost { .. }
            | Error::Io(_) => true,
            Error::Rejected(r) => r.is_transient(),
            Error::AuthRejected { reply, .. } => reply.is_transient(),
            Error::StartTlsUnavailable(Some(r)) => r.is_transient(),
            Error::MessageRejected { reply: Some(r), .. } => r.is_transient(),
            Error::MessageRejected {
                reply: None,
                recipients,
                ..
            } => recipients
                .iter()
                .any(|r| r.reply.as_ref().is_some_and(|x| x.is_transient())),
            _ => false,
        }
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
                | Error::MessageTooLarge { .. }
                | Error::SmtpUtf8Unsupported
                | Error::MessageRejected { .. }
        )
    }

    /// The server reply behind this error, if one caused it.
    pub fn reply(&self) -> Option<&ServerReply> {
        match self {
            Error::Rejected(r) | Error::ServiceClosing(r) => Some(r),
            Error::StartTlsUnavailable(r) => r.as_ref(),
            Error::AuthRejected { reply, .. } => Some(reply),
            Error::MessageRejected { reply, .. } => reply.as_ref(),
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
