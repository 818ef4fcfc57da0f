//! What can go wrong, with the stream's own error type inside.

use core::fmt;

use postline_proto::command::AddressError;
use postline_proto::negotiate::Refusal;
use postline_proto::session::{Phase, SessionError, UseError};

use postline_proto::reply::Code;

/// Why a call failed. A refused message is not an error: [`crate::Client::send`] answers it
/// with a [`crate::Status`]; these are the failures of the connection or of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The stream failed.
    Io(E),
    /// The server closed the connection while a reply was due.
    Closed(Phase),
    /// TLS failed (the handshake, the server's certificate, a record); the connection is
    /// over. With the `tls` feature only.
    Tls(TlsFailure),
    /// TLS was required and the server does not offer STARTTLS: nothing was sent in clear
    /// text after EHLO, credentials included.
    TlsUnavailable,
    /// No reply (or no room to write) by the deadline.
    Timeout(Phase),
    /// The server's input made no sense; the session is over.
    Protocol(SessionError),
    /// A reply that cannot be read in the input buffer: EHLO's (or HELO's) positive reply
    /// or an AUTH challenge longer than it (there every line counts; other replies keep
    /// their code and the start of their first line, given an input buffer of 80 bytes or
    /// more), or more than 256 lines. Give a larger buffer (512 bytes fit RFC 5321's limit
    /// for a reply line).
    ReplyTooLong,
    /// The server refused the session (greeting, EHLO and HELO). The reply's text: the
    /// client's `last_reply`.
    Rejected(Code),
    /// The server is closing (421). The reply's text: the client's `last_reply`.
    ServiceClosing(Code),
    /// Credentials were given and cannot be used: the server does not offer AUTH, no
    /// mechanism this build has was offered, or the connection is not encrypted and
    /// clear-text AUTH was not allowed.
    AuthUnavailable,
    /// AUTH was refused (535: wrong password). The reply's text: the client's `last_reply`.
    AuthFailed(Code),
    /// The server kept challenging past [`MAX_ROUNDS`](postline_proto::sasl::MAX_ROUNDS)
    /// in one AUTH exchange: it was holding the connection, not authenticating.
    AuthRounds,
    /// The server declared it cannot take this message (too large for its SIZE, 8-bit or
    /// UTF-8 it does not offer).
    Incompatible(Refusal),
    /// An address or the name to announce is not valid.
    Address(AddressError),
    /// A line of a composed mail's body is longer than RFC 5322 allows (998 octets).
    LineTooLong,
    /// The call does not fit the session now (a buffer too small for a command, a call out
    /// of order).
    Use(UseError),
    /// The end of data was written and the connection failed before the server answered:
    /// the message may or may not have been delivered. Sending it again may deliver it twice;
    /// not sending it may lose it (RFC 5321 6.1 prefers the duplicate).
    InDoubt(Phase),
    /// An earlier call failed and left the session out of step (a timeout, a broken
    /// stream, a reply out of place), or was abandoned midway: this call sent nothing. Close
    /// the connection and connect again (RFC 5321 4.5.3.2); the message may go then.
    Broken,
}

impl<E> Error<E> {
    /// Whether the session is still open and in step after this error, so QUIT can end it
    /// as RFC 5321 asks (a server that refused the session or the credentials waits for it):
    /// a refusal, or a call this side would not make. Not after a broken or silent
    /// connection, a 421, a reply out of place, or an exchange left half done.
    pub fn leaves_session_open(&self) -> bool {
        matches!(
            self,
            Error::Rejected(_)
                | Error::AuthFailed(_)
                | Error::AuthUnavailable
                | Error::Incompatible(_)
                | Error::Address(_)
                | Error::LineTooLong
        )
    }

    /// Whether the same message may go through on a later attempt: everything but a refusal
    /// of the credentials or of the message itself, and a mistake in the call.
    pub fn is_transient(&self) -> bool {
        match self {
            // A 454 to AUTH is a temporary failure (RFC 4954), a 535 is not.
            Error::Rejected(c) | Error::AuthFailed(c) => c.is_transient(),
            Error::AuthRounds
            | Error::AuthUnavailable
            | Error::Incompatible(_)
            | Error::Address(_)
            | Error::Use(_)
            | Error::LineTooLong
            | Error::ReplyTooLong
            | Error::TlsUnavailable
            | Error::Tls(TlsFailure::Certificate) => false,
            _ => true,
        }
    }
}

/// What went wrong in TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not signed by the CA given, names another host, or its
    /// signature does not verify.
    Certificate,
    /// The server broke the protocol (an alert, a malformed or unexpected record).
    Protocol,
    /// The server closed the connection.
    Closed,
    /// The stream under TLS failed.
    Stream,
    /// An earlier handshake failed: the connection cannot be used.
    Unusable,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::Certificate => "the server's certificate was not accepted",
            TlsFailure::Protocol => "the server broke the TLS protocol",
            TlsFailure::Closed => "the server closed the TLS connection",
            TlsFailure::Stream => "the stream under TLS failed",
            TlsFailure::Unusable => "the connection is unusable after a failed TLS handshake",
        })
    }
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "stream error: {e:?}"),
            Error::Closed(p) => write!(f, "connection closed while waiting for the {} reply", p.name()),
            Error::Tls(t) => write!(f, "TLS: {t}"),
            Error::TlsUnavailable => {
                f.write_str("TLS is required and the server does not offer STARTTLS")
            }
            Error::Timeout(p) => write!(f, "timed out waiting for the {} reply", p.name()),
            Error::Protocol(e) => write!(f, "{e}"),
            Error::ReplyTooLong => f.write_str("a reply did not fit the input buffer"),
            Error::Rejected(c) => write!(f, "server refused the session: {}", c.value()),
            Error::ServiceClosing(c) => write!(f, "server is closing: {}", c.value()),
            Error::AuthUnavailable => f.write_str(
                "no usable AUTH mechanism (or clear-text AUTH not allowed on this connection)",
            ),
            Error::AuthFailed(c) => write!(f, "authentication failed: {}", c.value()),
            Error::AuthRounds => f.write_str("the server kept challenging AUTH without an end"),
            Error::Incompatible(r) => write!(f, "{r:?}"),
            Error::Address(e) => write!(f, "invalid address: {e:?}"),
            Error::LineTooLong => f.write_str("a body line is longer than 998 octets"),
            Error::Use(e) => write!(f, "{e}"),
            Error::InDoubt(p) => write!(
                f,
                "connection failed waiting for the {} reply: the message may or may not have been delivered",
                p.name()
            ),
            Error::Broken => f.write_str(
                "an earlier failure left the session out of step: nothing was sent; connect again",
            ),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

impl<E> From<UseError> for Error<E> {
    fn from(e: UseError) -> Self {
        match e {
            UseError::Failed(e) => Error::Protocol(e),
            UseError::Invalid(a) => Error::Address(a),
            e => Error::Use(e),
        }
    }
}

impl<E> From<AddressError> for Error<E> {
    fn from(e: AddressError) -> Self {
        Error::Address(e)
    }
}
