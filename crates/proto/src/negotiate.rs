//! Envelope parameters against the server's capabilities: which MAIL and RCPT parameters a
//! message may carry to this server, and which messages this server cannot take at all.
//!
//! Every driver needs this decision before `MAIL FROM`, and it must be the same everywhere:
//! a parameter the server did not announce is a syntax error there (RFC 5321 4.1.1.11), and
//! some requirements (an 8-bit body, an internationalised address, REQUIRETLS) cannot be
//! dropped without changing what the sender asked for.

use core::fmt;
#[cfg(not(feature = "dsn"))]
use core::marker::PhantomData;

use crate::command::{Body, MailParams, RcptParams};
#[cfg(feature = "dsn")]
use crate::command::{Notify, Ret};
use crate::ehlo::{Capabilities, Extension, SizeLimit};

/// What the message body contains, for `BODY=` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// Declare `BODY=8BITMIME` whenever the server offers it: correct for any content.
    #[default]
    Auto,
    /// The body is 7-bit ASCII: no `BODY=` parameter.
    SevenBit,
    /// The body has 8-bit octets: `BODY=8BITMIME`, and a refusal if the server lacks it.
    EightBit,
}

/// What the sender asks for one message, before the server's capabilities are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageOptions<'a> {
    /// The message size in octets, when known (`SIZE=`, and checked against the limit).
    pub size: Option<u64>,
    /// What the body contains.
    pub body: BodyType,
    /// An address of the envelope is not ASCII: `SMTPUTF8` is required (RFC 6531).
    pub smtputf8: bool,
    /// DSN `RET=` (RFC 3461).
    #[cfg(feature = "dsn")]
    pub ret: Option<Ret>,
    /// DSN `ENVID=` (RFC 3461).
    #[cfg(feature = "dsn")]
    pub envid: Option<&'a str>,
    /// DSN `NOTIFY=` on every RCPT (RFC 3461).
    #[cfg(feature = "dsn")]
    pub notify: Option<Notify>,
    /// DSN `ORCPT=` on every RCPT (RFC 3461).
    #[cfg(feature = "dsn")]
    pub orcpt: bool,
    /// The message must travel over TLS on every hop (RFC 8689 `REQUIRETLS`).
    pub require_tls: bool,
    /// Keeps the lifetime without the `dsn` feature, whose `envid` is the one borrow, so the
    /// type is `MessageOptions<'a>` in every build (and `..Default::default()` fills it in).
    #[cfg(not(feature = "dsn"))]
    #[doc(hidden)]
    pub _borrow: PhantomData<&'a str>,
}

#[cfg(feature = "dsn")]
impl MessageOptions<'_> {
    /// True when any DSN parameter is asked for.
    pub fn wants_dsn(&self) -> bool {
        self.ret.is_some() || self.envid.is_some() || self.notify.is_some() || self.orcpt
    }
}

/// Why this server cannot take the message as asked. Nothing was sent; the session is
/// unchanged. Each is permanent for this server and this message (another server, or the
/// same message changed, may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// An address needs SMTPUTF8 and the server does not offer it.
    SmtpUtf8Unsupported,
    /// The message is larger than the server's SIZE limit.
    TooLarge {
        /// The message size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// The body has 8-bit data and the server does not offer 8BITMIME.
    EightBitUnsupported,
    /// REQUIRETLS was asked and the server does not offer it, or the session is not
    /// encrypted (RFC 8689 4.1: the message must not be sent then).
    RequireTlsUnavailable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SmtpUtf8Unsupported => {
                f.write_str("an address is not ASCII and the server does not offer SMTPUTF8")
            }
            Refusal::TooLarge { size, limit } => write!(
                f,
                "message of {size} octets exceeds the server's limit of {limit} octets"
            ),
            Refusal::EightBitUnsupported => {
                f.write_str("the message has 8-bit data and the server does not offer 8BITMIME")
            }
            Refusal::RequireTlsUnavailable => f.write_str(
                "REQUIRETLS was asked and the server does not offer it over an encrypted session",
            ),
        }
    }
}

impl core::error::Error for Refusal {}

/// The parameters to send, and what was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated<'a> {
    /// `MAIL FROM` parameters.
    pub mail: MailParams<'a>,
    /// `RCPT TO` parameters.
    pub rcpt: RcptParams,
    /// DSN parameters were asked for and the server does not offer DSN, so none is sent
    /// (RFC 3461 4.1: the server would refuse them; the message still goes).
    #[cfg(feature = "dsn")]
    pub dsn_dropped: bool,
}

/// Decides the parameters of one message for a server announcing `caps`, over a session
/// that is (`tls`) or is not encrypted.
pub fn negotiate<'a>(
    opts: &MessageOptions<'a>,
    caps: &Capabilities,
    tls: bool,
) -> Result<Negotiated<'a>, Refusal> {
    if opts.smtputf8 && !caps.has(Extension::SmtpUtf8) {
        return Err(Refusal::SmtpUtf8Unsupported);
    }
    if let (Some(size), SizeLimit::Limit(limit)) = (opts.size, caps.size()) {
        if size > limit {
            return Err(Refusal::TooLarge { size, limit });
        }
    }
    if opts.require_tls && !(tls && caps.has(Extension::RequireTls)) {
        return Err(Refusal::RequireTlsUnavailable);
    }
    let eight_bit = caps.has(Extension::EightBitMime);
    let body = match opts.body {
        BodyType::Auto => eight_bit.then_some(Body::EightBitMime),
        BodyType::SevenBit => None,
        BodyType::EightBit if eight_bit => Some(Body::EightBitMime),
        BodyType::EightBit => return Err(Refusal::EightBitUnsupported),
    };
    #[cfg(feature = "dsn")]
    let dsn = caps.has(Extension::Dsn);
    Ok(Negotiated {
        mail: MailParams {
            size: opts
                .size
                .filter(|_| caps.size() != SizeLimit::NotAdvertised),
            body,
            smtputf8: opts.smtputf8,
            #[cfg(feature = "dsn")]
            ret: opts.ret.filter(|_| dsn),
            #[cfg(feature = "dsn")]
            envid: opts.envid.filter(|_| dsn),
            requiretls: opts.require_tls,
            #[cfg(not(feature = "dsn"))]
            _borrow: PhantomData,
        },
        rcpt: RcptParams {
            #[cfg(feature = "dsn")]
            notify: opts.notify.filter(|_| dsn),
            #[cfg(feature = "dsn")]
            orcpt: opts.orcpt && dsn,
        },
        #[cfg(feature = "dsn")]
        dsn_dropped: !dsn && opts.wants_dsn(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    fn caps(ehlo: &[u8]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::parse_complete(ehlo).unwrap())
    }

    #[test]
    fn parameters_follow_capabilities() {
        let all =
            caps(b"250-x\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 REQUIRETLS\r\n");
        let bare = caps(b"250 x\r\n");
        let opts = MessageOptions {
            size: Some(10),
            ..MessageOptions::default()
        };
        let n = negotiate(&opts, &all, true).unwrap();
        assert_eq!(n.mail.size, Some(10));
        assert_eq!(n.mail.body, Some(Body::EightBitMime));
        let n = negotiate(&opts, &bare, false).unwrap();
        assert_eq!(n.mail.size, None);
        assert_eq!(n.mail.body, None);
    }

    #[cfg(feature = "dsn")]
    #[test]
    fn dsn_parameters_follow_capabilities() {
        let all = caps(b"250-x\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 REQUIRETLS\r\n");
        let bare = caps(b"250 x\r\n");
        let opts = MessageOptions {
            size: Some(10),
            ret: Some(Ret::Headers),
            envid: Some("id"),
            notify: Some(Notify::Never),
            orcpt: true,
            ..MessageOptions::default()
        };
        let n = negotiate(&opts, &all, true).unwrap();
        assert_eq!(n.mail.size, Some(10));
        assert_eq!(n.mail.body, Some(Body::EightBitMime));
        assert_eq!(n.mail.ret, Some(Ret::Headers));
        assert!(n.rcpt.orcpt && !n.dsn_dropped);
        let n = negotiate(&opts, &bare, false).unwrap();
        assert_eq!(n.mail.size, None);
        assert_eq!(n.mail.body, None);
        assert_eq!(
            (n.mail.ret, n.mail.envid, n.rcpt.notify),
            (None, None, None)
        );
        assert!(!n.rcpt.orcpt && n.dsn_dropped);
    }

    #[test]
    fn refusals() {
        let all =
            caps(b"250-x\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 REQUIRETLS\r\n");
        let bare = caps(b"250 x\r\n");
        let big = MessageOptions {
            size: Some(1001),
            ..Default::default()
        };
        assert_eq!(
            negotiate(&big, &all, true),
            Err(Refusal::TooLarge {
                size: 1001,
                limit: 1000
            })
        );
        let utf8 = MessageOptions {
            smtputf8: true,
            ..Default::default()
        };
        assert_eq!(
            negotiate(&utf8, &bare, true),
            Err(Refusal::SmtpUtf8Unsupported)
        );
        assert!(negotiate(&utf8, &all, true).unwrap().mail.smtputf8);
        let eight = MessageOptions {
            body: BodyType::EightBit,
            ..Default::default()
        };
        assert_eq!(
            negotiate(&eight, &bare, true),
            Err(Refusal::EightBitUnsupported)
        );
        let rt = MessageOptions {
            require_tls: true,
            ..Default::default()
        };
        assert!(negotiate(&rt, &all, true).unwrap().mail.requiretls);
        assert_eq!(
            negotiate(&rt, &all, false),
            Err(Refusal::RequireTlsUnavailable)
        );
        assert_eq!(
            negotiate(&rt, &bare, true),
            Err(Refusal::RequireTlsUnavailable)
        );
    }
}
