//! Why a TLS handshake failed, in words a person can act on: each certificate problem names
//! what the certificate holds and how to trust it, each protocol problem says what the server
//! did. Never a Rust enum in the text.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::{AlertDescription, CertificateError, OtherError};

use crate::certificate::{utc, CertificateSummary, Pin};
use crate::escape::Escaped;

/// Why TLS with a server failed.
///
/// The text includes what the server's certificate says (subject, names), which the server
/// chose: escape control characters before showing it on a terminal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The certificate signed itself and is not trusted as itself.
    SelfSigned(Arc<CertificateSummary>),
    /// A certificate authority's certificate (`CA:TRUE`) presented as the server's own.
    CaUsedAsLeaf(Arc<CertificateSummary>),
    /// No trusted authority vouches for the certificate.
    UnknownIssuer(Arc<CertificateSummary>),
    /// The certificate's validity ended.
    Expired {
        /// The certificate.
        certificate: Arc<CertificateSummary>,
        /// This machine's clock when it was checked.
        now: SystemTime,
    },
    /// The certificate's validity has not begun.
    NotYetValid {
        /// The certificate.
        certificate: Arc<CertificateSummary>,
        /// This machine's clock when it was checked.
        now: SystemTime,
    },
    /// The certificate is for other names.
    WrongName {
        /// The name it was checked against.
        expected: String,
        /// The certificate.
        certificate: Arc<CertificateSummary>,
    },
    /// Pins were given and none matches.
    PinMismatch {
        /// The pins configured.
        pins: Vec<Pin>,
        /// The certificate seen.
        certificate: Arc<CertificateSummary>,
    },
    /// Another certificate problem (bad signature, revoked, unsupported algorithm...).
    BadCertificate {
        /// What is wrong, in words.
        reason: String,
        /// The certificate, when it could be read.
        certificate: Option<Arc<CertificateSummary>>,
    },
    /// The server ended the handshake with an alert.
    Alert(AlertDescription),
    /// The two sides share no TLS version or cipher suite (postline speaks TLS 1.2 and 1.3).
    Incompatible(String),
    /// The peer did not speak TLS at all (often: a plain-text or STARTTLS port used for
    /// implicit TLS).
    NotTls,
    /// The server broke the TLS protocol.
    Misbehaved(String),
    /// The connection closed in the middle of the handshake.
    Closed,
    /// Another I/O error during the handshake.
    Io(Arc<io::Error>),
}

impl TlsFailure {
    /// The server certificate the failure is about, when it is about one.
    pub fn certificate(&self) -> Option<&CertificateSummary> {
        match self {
            TlsFailure::SelfSigned(c)
            | TlsFailure::CaUsedAsLeaf(c)
            | TlsFailure::UnknownIssuer(c)
            | TlsFailure::Expired { certificate: c, .. }
            | TlsFailure::NotYetValid { certificate: c, .. }
            | TlsFailure::WrongName { certificate: c, .. }
            | TlsFailure::PinMismatch { certificate: c, .. } => Some(c),
            TlsFailure::BadCertificate { certificate, .. } => certificate.as_deref(),
            _ => None,
        }
    }

    /// Whether a later attempt may succeed: a connection the network broke (reset, aborted)
    /// may work next time; a certificate or a protocol that does not fit will not, nor will a
    /// server that hangs up mid-handshake (what servers do with a client they will not talk
    /// TLS to, or when they do not speak TLS at all).
    pub fn is_transient(&self) -> bool {
        matches!(self, TlsFailure::Io(_))
    }

    /// The failure behind a handshake's I/O error: a verifier's explained rejection, a
    /// rustls error put in words, or the I/O error itself.
    pub(crate) fn from_io(e: io::Error) -> TlsFailure {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return TlsFailure::Closed;
        }
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(r) => TlsFailure::from_rustls(r),
            None => TlsFailure::Io(Arc::new(e)),
        }
    }

    /// A rustls error put in words.
    pub(crate) fn from_rustls(e: &rustls::Error) -> TlsFailure {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                if let Some(Rejected(f)) = inner.downcast_ref::<Rejected>() {
                    return f.clone();
                }
                let reason = match inner.downcast_ref::<webpki::Error>() {
                    Some(webpki::Error::UnsupportedCertVersion) => "it is an X.509 version 1 certificate, which postline cannot use, pinned or not: re-issue it as version 3 (openssl req -x509 makes one; openssl x509 -req needs -extfile with any extension)".to_string(),
                    Some(webpki::Error::CaUsedAsEndEntity) => {
                        "it is a CA certificate used as the server's own".to_string()
                    }
                    Some(w) => words(&format!("{w:?}")),
                    None => inner.to_string(),
                };
                TlsFailure::BadCertificate {
                    reason,
                    certificate: None,
                }
            }
            rustls::Error::InvalidCertificate(other) => TlsFailure::BadCertificate {
                reason: words(&format!("{other:?}")),
                certificate: None,
            },
            rustls::Error::AlertReceived(a) => match a {
                AlertDescription::ProtocolVersion => {
                    TlsFailure::Incompatible("the server refused every TLS version offered".into())
                }
                a => TlsFailure::Alert(*a),
            },
            rustls::Error::PeerIncompatible(p) => TlsFailure::Incompatible(match p {
                rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13 => {
                    "the server speaks neither TLS 1.2 nor 1.3 (older versions are not safe, and postline does not speak them)".into()
                }
                rustls::PeerIncompatible::NoCipherSuitesInCommon => {
                    "no cipher suite in common".into()
                }
                p => words(&format!("{p:?}")),
            }),
            rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
            rustls::Error::PeerMisbehaved(p) => TlsFailure::Misbehaved(words(&format!("{p:?}"))),
            rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => {
                TlsFailure::Misbehaved("it sent an unexpected TLS message".into())
            }
            rustls::Error::DecryptError => {
                TlsFailure::Misbehaved("a TLS record could not be decrypted".into())
            }
            other => TlsFailure::Misbehaved(words(&format!("{other:?}"))),
        }
    }
}

/// Turns a rustls enum's name (`ServerDoesNotSupportTls12Or13`) into words
/// (`server does not support tls12 or13`), for the rare cases without a message of ours.
fn words(debug: &str) -> String {
    let head = debug.split(['(', '{', ' ']).next().unwrap_or(debug);
    let mut out = String::new();
    for (i, c) in head.char_indices() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn alert_text(a: AlertDescription) -> String {
    if let AlertDescription::Unknown(n) = a {
        return format!("an unknown alert ({n})");
    }
    let hint = match a {
        AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
            " (no TLS version or cipher suite in common: postline speaks TLS 1.2 and 1.3)"
        }
        AlertDescription::CertificateRequired => " (the server requires a client certificate)",
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::AccessDenied => {
            " (the server did not accept the client certificate, or wanted one)"
        }
        AlertDescription::UnrecognisedName => " (the server does not know the name asked for)",
        _ => "",
    };
    format!("{}{hint}", words(&format!("{a:?}")))
}

fn names(c: &CertificateSummary) -> String {
    if c.names().is_empty() {
        "no names".to_string()
    } else {
        Escaped(&c.names().join(", ")).to_string()
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::SelfSigned(c) => write!(
                f,
                "the server's certificate ({}) is self-signed and not trusted as itself (SHA-256 fingerprint {})",
                Escaped(&c.subject), c.fingerprint
            ),
            TlsFailure::CaUsedAsLeaf(c) => write!(
                f,
                "the server presents a CA certificate ({}) as its own, and it is not trusted as itself (SHA-256 fingerprint {})",
                Escaped(&c.subject), c.fingerprint
            ),
            TlsFailure::UnknownIssuer(c) => write!(
                f,
                "the server's certificate ({}) is issued by {}, which is not a trusted authority (a CA file with that authority's certificate, or the system trust store, may be missing)",
                Escaped(&c.subject), Escaped(&c.issuer)
            ),
            TlsFailure::Expired { certificate: c, now } => write!(
                f,
                "the server's certificate ({}) expired on {} (it is now {})",
                Escaped(&c.subject),
                utc(c.not_after),
                utc(*now)
            ),
            TlsFailure::NotYetValid { certificate: c, now } => write!(
                f,
                "the server's certificate ({}) is valid only from {} (it is now {}: check this machine's clock)",
                Escaped(&c.subject),
                utc(c.not_before),
                utc(*now)
            ),
            TlsFailure::WrongName {
                expected,
                certificate: c,
            } => write!(
                f,
                "the server's certificate is for {}, not {expected}",
                names(c)
            ),
            TlsFailure::PinMismatch { pins, certificate: c } => {
                let wanted: Vec<String> = pins.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the server's certificate matches no pin: it has fingerprint {} and public key {}; expected {}",
                    c.fingerprint,
                    c.public_key_pin,
                    wanted.join(" or ")
                )
            }
            TlsFailure::BadCertificate { reason, certificate } => match certificate {
                Some(c) => write!(f, "the server's certificate ({}) is not valid: {reason}", Escaped(&c.subject)),
                None => write!(f, "the server's certificate is not valid: {reason}"),
            },
            TlsFailure::Alert(a) => write!(f, "the server ended the handshake: {}", alert_text(*a)),
            TlsFailure::Incompatible(why) => write!(f, "no common TLS: {why}"),
            TlsFailure::NotTls => f.write_str(
                "the server did not answer in TLS (is this port for STARTTLS or plain text rather than implicit TLS?)",
            ),
            TlsFailure::Misbehaved(why) => write!(f, "the server broke the TLS protocol: {why}"),
            TlsFailure::Closed => f.write_str("the server closed the connection during the TLS handshake"),
            TlsFailure::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A verifier's rejection carried through rustls (as `CertificateError::Other`) to the
/// driver, which unwraps it with [`TlsFailure::from_rustls`].
#[derive(Debug)]
pub(crate) struct Rejected(pub(crate) TlsFailure);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Rejected {}

impl From<TlsFailure> for rustls::Error {
    fn from(f: TlsFailure) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Rejected(
            f,
        )))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_become_words() {
        assert_eq!(
            words("ServerDoesNotSupportTls12Or13"),
            "server does not support tls12 or13"
        );
        assert_eq!(words("HandshakeFailure"), "handshake failure");
        assert_eq!(words("Other(OtherError(x))"), "other");
    }

    #[test]
    fn protocol_mismatches_are_said_in_words() {
        let version = TlsFailure::from_rustls(&rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion,
        ))
        .to_string();
        assert!(version.contains("refused every TLS version"), "{version}");
        let old = TlsFailure::from_rustls(&rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13,
        ))
        .to_string();
        assert!(old.contains("neither TLS 1.2 nor 1.3"), "{old}");
        let suites = TlsFailure::from_rustls(&rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure,
        ))
        .to_string();
        assert!(
            suites.contains("postline speaks TLS 1.2 and 1.3"),
            "{suites}"
        );
    }

    #[test]
    fn odd_alerts_and_messages_are_words_too() {
        let t = TlsFailure::Alert(AlertDescription::Unknown(255)).to_string();
        assert!(t.ends_with("an unknown alert (255)"), "{t}");
        let t = TlsFailure::from_rustls(&rustls::Error::InappropriateHandshakeMessage {
            expect_types: vec![rustls::HandshakeType::ServerHello],
            got_type: rustls::HandshakeType::ServerHelloDone,
        })
        .to_string();
        assert!(t.contains("unexpected TLS message"), "{t}");
        assert!(!t.contains("ServerHello"), "{t}");
    }

    #[test]
    fn certificates_webpki_cannot_use_are_said_in_words() {
        let v1 = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            webpki::Error::UnsupportedCertVersion,
        ))));
        let t = TlsFailure::from_rustls(&v1).to_string();
        assert!(
            t.contains("X.509 version 1") && t.contains("version 3"),
            "{t}"
        );
        assert!(!t.contains("UnsupportedCertVersion"), "{t}");
    }

    #[test]
    fn alerts_name_the_fix() {
        let t = TlsFailure::Alert(AlertDescription::CertificateRequired).to_string();
        assert!(
            t.contains("certificate required") && t.contains("client certificate"),
            "{t}"
        );
        assert!(!t.contains("CertificateRequired"), "{t}");
    }

    #[test]
    fn broken_handshakes_are_transient_and_certificates_are_not() {
        assert!(TlsFailure::from_io(io::ErrorKind::ConnectionReset.into()).is_transient());
        assert!(!TlsFailure::from_io(io::ErrorKind::UnexpectedEof.into()).is_transient());
        assert!(!TlsFailure::NotTls.is_transient());
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::from(TlsFailure::NotTls),
        );
        assert!(matches!(TlsFailure::from_io(wrapped), TlsFailure::NotTls));
    }
}
