//! Exit codes as sendmail's (sysexits.h), so scripts and MTAs that call us understand them.

use postline::{Error, FailedAt, Fault, Refusal};

pub const OK: u8 = 0;
/// Bad arguments.
pub const USAGE: u8 = 64;
/// The message was refused.
pub const DATAERR: u8 = 65;
/// An input file could not be read.
pub const NOINPUT: u8 = 66;
/// Every recipient was refused (or some, without --partial-ok).
pub const NOUSER: u8 = 67;
/// The server's name does not resolve.
pub const NOHOST: u8 = 68;
/// The service refused us for good (TLS failure, refused session).
pub const UNAVAILABLE: u8 = 69;
/// Something that should not happen.
pub const SOFTWARE: u8 = 70;
/// A transient failure: try again later.
pub const TEMPFAIL: u8 = 75;
/// EX_CANTCREAT: an output file or directory cannot be created.
pub const CANTCREAT: u8 = 73;
/// The server broke the protocol.
pub const PROTOCOL: u8 = 76;
/// Authentication was refused.
pub const NOPERM: u8 = 77;
/// The configuration (file, secrets, TLS policy) is wrong.
pub const CONFIG: u8 = 78;

/// The exit code for a failed send or connection.
pub fn for_error(e: &Error) -> u8 {
    // LMTP: some mailboxes took the message before the connection ended. Sending it again
    // would give them a second copy, so this is "some recipients did not get it", not "try
    // again".
    if let Error::DeliveryUnknown { recipients, .. } = e {
        if recipients
            .iter()
            .any(|r| r.data_reply.is_some() && r.delivered())
        {
            return NOUSER;
        }
    }
    if let Some(r) = e.reply() {
        if r.is_transient() {
            return TEMPFAIL;
        }
    }
    match e {
        // A name that does not resolve is EX_NOHOST; refused or unreachable is transient.
        Error::Resolve { .. } => NOHOST,
        Error::Connect { .. } => TEMPFAIL,
        // Nothing at the path, or no server behind the socket (yet), is transient (a server
        // not started); no permission, or a path that is not a socket, is the
        // configuration's to fix.
        Error::ConnectUnix { .. } if e.fault() == Fault::Transient => TEMPFAIL,
        Error::ConnectUnix { .. } => CONFIG,
        Error::Timeout { .. }
        | Error::ServiceClosing(_)
        | Error::ConnectionLost { .. }
        | Error::DeliveryUnknown { .. }
        | Error::NotSent { .. }
        | Error::Io(_) => TEMPFAIL,
        // A handshake the network cut short may work next time; a certificate will not.
        Error::Tls { failure, .. } if failure.is_transient() => TEMPFAIL,
        Error::Tls { .. } | Error::Rejected(_) | Error::StartTlsUnavailable(_) => UNAVAILABLE,
        Error::NoAuthMechanism { .. } => UNAVAILABLE,
        Error::PlaintextAuthRefused => CONFIG,
        Error::AuthRejected { .. } => NOPERM,
        // Perhaps an impostor: like a certificate that does not verify (the queue retries it,
        // as another path may reach the real server).
        Error::ServerNotVerified { .. } => UNAVAILABLE,
        Error::AuthChallengeRefused { .. } => PROTOCOL,
        Error::Incompatible(Refusal::RequireTlsUnavailable) => UNAVAILABLE,
        Error::Incompatible(_) => DATAERR,
        Error::Config(_) => CONFIG,
        Error::ReadMessage(_) => NOINPUT,
        Error::MessageRejected { at, recipients, .. } => match at {
            FailedAt::NoValidRecipients => {
                if recipients
                    .iter()
                    .any(|r| r.reply.as_ref().is_some_and(|x| x.is_transient()))
                {
                    TEMPFAIL
                } else {
                    NOUSER
                }
            }
            FailedAt::Mail => UNAVAILABLE,
            FailedAt::Data | FailedAt::Message => DATAERR,
        },
        Error::Protocol(_) | Error::AuthRounds { .. } => PROTOCOL,
        Error::Proxy { failure, .. } => match failure {
            // The proxy refused our credentials, or wants some: fix them.
            postline::ProxyFailure::AuthRefused { .. } => NOPERM,
            postline::ProxyFailure::AuthRequired | postline::ProxyFailure::NoAcceptableMethod => {
                CONFIG
            }
            postline::ProxyFailure::Protocol(_) => PROTOCOL,
            // The proxy's rules or abilities: its operator's setup, not the mail server's
            // answer (a sendmail caller must not take it for a refusal of the message).
            postline::ProxyFailure::Refused { reply, .. } if !reply.is_transient() => CONFIG,
            _ => TEMPFAIL,
        },
        Error::Address { .. } | Error::NoRecipients => USAGE,
        _ => SOFTWARE,
    }
}
