//! DKIM signing (RFC 6376), rsa-sha256 and ed25519-sha256 (RFC 8463).
//!
//! A [`DkimSigner`] is made once from a PEM private key, a selector and a domain; the algorithm
//! follows the key type. [`DkimSigner::sign`] returns the `DKIM-Signature:` header field (folded,
//! ending in CRLF) to put in front of the message; [`DkimSigner::sign_message`] returns the signed
//! message. Sign the message exactly as it will be sent: any later change to a signed header or
//! to the body breaks the signature. [`Signing`] wraps any [`Transport`] so that every message
//! it carries is signed on the way.
//!
//! The canonicalisation, hashing and signature are mail-auth's (with its ring backend). Signing
//! borrows the message: the headers are canonicalised and the body hashed from the caller's
//! slice, so no second copy of the message is made; [`DkimSigner::sign_message`] allocates the
//! signed result (header + message) once.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::delivery::{Delivery, DeliveryStatus};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::transport::Transport;

use crate::line_endings::as_sent;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner as MaSigner, Done};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

pub use mail_auth::dkim::Canonicalization;

/// The header fields signed by default (`From` must be in the message; absent ones are listed
/// in `h=` all the same, so they cannot be added later).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
];

/// Why a signer could not be made or a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DkimError {
    /// The key file could not be read.
    ReadKey {
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
    /// The key text holds no PEM private key block.
    NotPem,
    /// The key is encrypted with a passphrase (`ENCRYPTED PRIVATE KEY`).
    EncryptedKey,
    /// A key of a type DKIM cannot use here (for example an EC key).
    UnsupportedKey(String),
    /// The key is PEM but its contents could not be used.
    BadKey(String),
    /// The selector or the domain is empty or holds characters a DKIM tag cannot carry.
    BadTag(&'static str),
    /// The message has no `From:` header field, which RFC 6376 5.4 requires to be signed.
    NoFrom,
    /// The list of header fields to sign does not include `From`.
    FromNotSigned,
    /// mail-auth refused to sign.
    Sign(String),
}

impl fmt::Display for DkimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DkimError::ReadKey { path, reason } => write!(f, "cannot read DKIM key {path}: {reason}"),
            DkimError::NotPem => f.write_str(
                "the DKIM key is not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)",
            ),
            DkimError::EncryptedKey => f.write_str(
                "the DKIM key is encrypted with a passphrase; decrypt it first (openssl pkey -in KEY -out PLAIN)",
            ),
            DkimError::UnsupportedKey(kind) => write!(
                f,
                "the DKIM key is {kind}; DKIM signing needs an RSA or an Ed25519 key"
            ),
            DkimError::BadKey(why) => write!(f, "the DKIM key cannot be used: {why}"),
            DkimError::BadTag(which) => write!(f, "the DKIM {which} is empty or not a valid DNS name"),
            DkimError::NoFrom => f.write_str("the message has no From: header field to sign"),
            DkimError::FromNotSigned => {
                f.write_str("the DKIM signed header list must include From")
            }
            DkimError::Sign(why) => write!(f, "DKIM signing failed: {why}"),
        }
    }
}

impl std::error::Error for DkimError {}

/// The algorithm a signer uses, chosen by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `a=rsa-sha256`.
    RsaSha256,
    /// `a=ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

enum Inner {
    Rsa(MaSigner<RsaKey<Sha256>, Done>),
    Ed25519(MaSigner<Ed25519Key, Done>),
}

enum Key {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

/// Choices for a signer beyond key, selector and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimOptions {
    /// The header fields to sign (`h=`); must include `From`. The fields present are listed
    /// bottom up, then the names absent from the message, so adding such a field later breaks
    /// the signature (RFC 6376 5.4).
    pub headers: Vec<String>,
    /// Header canonicalisation; relaxed by default.
    pub header_canonicalization: Canonicalization,
    /// Body canonicalisation; relaxed by default.
    pub body_canonicalization: Canonicalization,
}

impl Default for DkimOptions {
    fn default() -> Self {
        DkimOptions {
            headers: DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            header_canonicalization: Canonicalization::Relaxed,
            body_canonicalization: Canonicalization::Relaxed,
        }
    }
}

/// Signs messages with one key, selector and domain.
pub struct DkimSigner {
    inner: Inner,
    selector: String,
    domain: String,
    options: DkimOptions,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimSigner")
            .field("algorithm", &self.algorithm())
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn valid_tag(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}
fn parse_key(pem: &[u8]) -> Result<Key, DkimError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(DkimError::EncryptedKey);
    }
    if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err(DkimError::UnsupportedKey("an EC (SEC1) key".into()));
    }
    if text.contains("-----BEGIN DSA PRIVATE KEY-----") {
        return Err(DkimError::UnsupportedKey("a DSA key".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| DkimError::NotPem)?;
    match der {
        PrivateKeyDer::Pkcs1(k) => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(k))
            .map(Key::Rsa)
            .map_err(|e| DkimError::BadKey(e.to_string())),
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(der) {
                return Ok(Key::Ed25519(key));
            }
            match RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der.to_vec().into())) {
                Ok(key) => Ok(Key::Rsa(key)),
                Err(e) => Err(pkcs8_kind(der)
                    .map(|kind| DkimError::UnsupportedKey(kind.into()))
                    .unwrap_or_else(|| DkimError::BadKey(e.to_string()))),
            }
        }
        PrivateKeyDer::Sec1(_) => Err(DkimError::UnsupportedKey("an EC (SEC1) key".into())),
        _ => Err(DkimError::UnsupportedKey("of an unknown kind".into())),
    }
}

/// Names a PKCS #8 key that is neither RSA nor Ed25519, by its algorithm OID.
fn pkcs8_kind(der: &[u8]) -> Option<&'static str> {
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
    const ED448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let has = |oid: &[u8]| der.windows(oid.len()).take(40).any(|w| w == oid);
    if has(RSA) {
        None
    } else if has(EC) {
        Some("an EC key")
    } else if has(X25519) {
        Some("an X25519 key")
    } else if has(ED448) {
        Some("an Ed448 key")
    } else {
        Some("of an unknown kind")
    }
}

impl DkimSigner {
    /// A signer from PEM text (PKCS #8 `PRIVATE KEY` holding RSA or Ed25519, or PKCS #1
    /// `RSA PRIVATE KEY`), relaxed/relaxed, signing [`DEFAULT_SIGNED_HEADERS`].
    pub fn from_pem(pem: &[u8], selector: &str, domain: &str) -> Result<Self, DkimError> {
        Self::with_options(pem, selector, domain, DkimOptions::default())
    }

    /// A signer from a PEM key file; see [`DkimSigner::from_pem`].
    pub fn from_pem_file(
        path: impl AsRef<Path>,
        selector: &str,
        domain: &str,
    ) -> Result<Self, DkimError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| DkimError::ReadKey {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pem(&pem, selector, domain)
    }

    /// A signer from PEM text with chosen headers and canonicalisation.
    pub fn with_options(
        pem: &[u8],
        selector: &str,
        domain: &str,
        options: DkimOptions,
    ) -> Result<Self, DkimError> {
        if !valid_tag(selector) {
            return Err(DkimError::BadTag("selector"));
        }
        if !valid_tag(domain) {
            return Err(DkimError::BadTag("domain"));
        }
        if !options
            .headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("from"))
        {
            return Err(DkimError::FromNotSigned);
        }
        let inner = match parse_key(pem)? {
            Key::Rsa(k) => Inner::Rsa(configured(k, selector, domain, &options)),
            Key::Ed25519(k) => Inner::Ed25519(configured(k, selector, domain, &options)),
        };
        Ok(DkimSigner {
            inner,
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            options,
        })
    }

    /// The algorithm, from the key type.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
            Inner::Rsa(_) => Algorithm::RsaSha256,
        }
    }

    /// The `DKIM-Signature:` header field for `message` (a whole RFC 5322 message), folded
    /// and ending in CRLF, to be put in front of the message.
    ///
    /// The signature covers the message as the server will receive it: line endings made
    /// CRLF and a final CRLF added, as postline's clients send every message. A message with
    /// bare LF line endings therefore verifies once sent by postline, but not if another
    /// program sends the LF bytes as they are; [`DkimSigner::sign_message`] returns the
    /// normalised message with the header, which is the same everywhere.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let message = &*as_sent(message);
        if !has_from(message) {
            return Err(DkimError::NoFrom);
        }
        let sig = match &self.inner {
            Inner::Rsa(s) => s.sign(message),
            Inner::Ed25519(s) => s.sign(message),
        }
        .map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(sig.to_header().into_bytes())
    }

    /// The signed message: the `DKIM-Signature:` header field followed by `message`, with
    /// its line endings made CRLF (and a final CRLF added) if they were not.
    pub fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let message = &*as_sent(message);
        let header = self.sign(message)?;
        let mut out = Vec::with_capacity(header.len() + message.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// A [`Transport`] that signs each message with a [`DkimSigner`] and hands the signed
/// message to the transport it wraps: the signing happens once, in one place, whatever
/// carries the mail (a pool, direct delivery, the queue, a test stub).
///
/// A message that cannot be signed (no `From:` field) is not sent unsigned: every
/// recipient gets **failed** with the reason, since sending the same message again cannot
/// help.
///
/// ```no_run
/// use postline::dkim::{DkimSigner, Signing};
/// use postline::transport::{StubTransport, Transport};
///
/// let signer = DkimSigner::from_pem_file("dkim.pem", "mail", "example.com")?;
/// let stub = StubTransport::new();
/// let mail = Signing::new(signer, stub.clone());
/// let envelope = postline::Envelope::new("me@example.com", ["you@example.org"])?;
/// mail.send(&envelope, b"From: me@example.com\r\nSubject: hi\r\n\r\nHello\r\n")?;
/// assert!(stub.sent()[0].message.starts_with(b"DKIM-Signature:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Signing<T> {
    signer: Arc<DkimSigner>,
    inner: T,
}

impl<T> Signing<T> {
    /// Signs with `signer`, then sends through `inner`.
    pub fn new(signer: impl Into<Arc<DkimSigner>>, inner: T) -> Self {
        Signing {
            signer: signer.into(),
            inner,
        }
    }

    /// The transport that carries the signed messages.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The signed message, or every recipient failed with the reason.
    fn signed(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<u8>, Vec<Delivery>> {
        self.signer.sign_message(message).map_err(|e| {
            let reason = format!("not sent: the message cannot be DKIM-signed: {e}");
            envelope
                .to()
                .map(|a| Delivery::new(a, DeliveryStatus::Failed, None, reason.as_str()))
                .collect()
        })
    }
}

impl<T: Transport> Transport for Signing<T> {
    fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        match self.signed(envelope, message) {
            Ok(signed) => self.inner.send(envelope, &signed),
            Err(failed) => Ok(failed),
        }
    }
}

#[cfg(feature = "tokio")]
impl<T: crate::transport::AsyncTransport + Sync> crate::transport::AsyncTransport for Signing<T> {
    fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<Delivery>, Error>> + Send {
        let signed = self.signed(envelope, message);
        async move {
            match signed {
                Ok(signed) => self.inner.send(envelope, &signed).await,
                Err(failed) => Ok(failed),
            }
        }
    }
}

/// mail-auth's signer for `key`, with the selector, domain and options.
fn configured<K: SigningKey>(
    key: K,
    selector: &str,
    domain: &str,
    options: &DkimOptions,
) -> MaSigner<K, Done> {
    MaSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(options.headers.clone())
        .header_canonicalization(options.header_canonicalization)
        .body_canonicalization(options.body_canonicalization)
}

/// Whether the header section holds a `From:` field.
fn has_from(message: &[u8]) -> bool {
    let mut at_line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start {
            if b == b'\r' || b == b'\n' {
                return false; // end of the header section
            }
            let rest = &message[i..];
            if rest.len() >= 5 && rest[..4].eq_ignore_ascii_case(b"from") {
                let after = rest[4..].iter().find(|c| **c != b' ' && **c != b'\t');
                if after == Some(&b':') {
                    return true;
                }
            }
        }
        at_line_start = b == b'\n';
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl genpkey -algorithm ed25519`, for tests only.
    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGAp7RR3rqzWunxG1wviiypTgCjPE/3X0Q4Lx0MueBx5
-----END PRIVATE KEY-----
";
    const MESSAGE: &[u8] =
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n\r\n\r\n";

    /// The value of tag `name` in a folded `DKIM-Signature:` field, whitespace removed.
    fn tag(header: &str, name: &str) -> Option<String> {
        let unfolded: String = header
            .split_once(':')?
            .1
            .replace(['\r', '\n', ' ', '\t'], "");
        unfolded
            .split(';')
            .find_map(|t| t.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
    }

    #[test]
    fn ed25519_header_fields() {
        let signer = DkimSigner::from_pem(ED25519_PEM.as_bytes(), "sel", "example.org").unwrap();
        assert_eq!(signer.algorithm(), Algorithm::Ed25519Sha256);
        let header = String::from_utf8(signer.sign(MESSAGE).unwrap()).unwrap();
        assert!(header.starts_with("DKIM-Signature:"), "{header}");
        assert!(header.ends_with("\r\n"), "{header}");
        assert_eq!(tag(&header, "v"), Some("1".into()));
        assert_eq!(tag(&header, "a"), Some("ed25519-sha256".into()));
        assert_eq!(tag(&header, "c"), Some("relaxed/relaxed".into()));
        assert_eq!(tag(&header, "d"), Some("example.org".into()));
        assert_eq!(tag(&header, "s"), Some("sel".into()));
        let h = tag(&header, "h").unwrap().to_ascii_lowercase();
        assert!(h.split(':').any(|x| x == "from"), "{h}");
        assert!(h.split(':').any(|x| x == "subject"), "{h}");
        assert!(tag(&header, "bh").is_some_and(|v| !v.is_empty()));
        assert!(tag(&header, "b").is_some_and(|v| !v.is_empty()));
        let signed = signer.sign_message(MESSAGE).unwrap();
        assert!(signed.ends_with(MESSAGE));
    }

    #[test]
    fn simple_canonicalization_is_written() {
        let options = DkimOptions {
            header_canonicalization: Canonicalization::Simple,
            body_canonicalization: Canonicalization::Simple,
            ..DkimOptions::default()
        };
        let signer =
            DkimSigner::with_options(ED25519_PEM.as_bytes(), "s", "example.org", options).unwrap();
        let header = String::from_utf8(signer.sign(MESSAGE).unwrap()).unwrap();
        assert_eq!(tag(&header, "c"), Some("simple/simple".into()), "{header}");
    }

    #[test]
    fn errors_in_words() {
        let e = DkimSigner::from_pem(b"not a key", "s", "example.org").unwrap_err();
        assert_eq!(e, DkimError::NotPem);
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = DkimSigner::from_pem(enc.as_bytes(), "s", "example.org").unwrap_err();
        assert_eq!(e, DkimError::EncryptedKey);
        assert!(e.to_string().contains("passphrase"));
        // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
        let ec = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUWIwjTUQXXkAiapz
iv4qz4sgjickXn1ZG9e5OYWrkQ+hRANCAATJiTEKaWZS2iT1rbUNawQ1Y8wlaA0n
pLPDlqF6HpPFG+nYfnw3bqO2xMLJFmbQIlqm3bHxzD4luuy6iKPJFxMW
-----END PRIVATE KEY-----
";
        let e = DkimSigner::from_pem(ec.as_bytes(), "s", "example.org").unwrap_err();
        assert!(matches!(e, DkimError::UnsupportedKey(_)), "{e:?}");
        let signer = DkimSigner::from_pem(ED25519_PEM.as_bytes(), "s", "example.org").unwrap();
        let e = signer
            .sign(b"To: b@example.net\r\n\r\nbody\r\n")
            .unwrap_err();
        assert_eq!(e, DkimError::NoFrom);
        assert_eq!(
            DkimSigner::from_pem(ED25519_PEM.as_bytes(), "", "example.org").unwrap_err(),
            DkimError::BadTag("selector")
        );
        let options = DkimOptions {
            headers: vec!["Subject".into()],
            ..DkimOptions::default()
        };
        assert_eq!(
            DkimSigner::with_options(ED25519_PEM.as_bytes(), "s", "example.org", options)
                .unwrap_err(),
            DkimError::FromNotSigned
        );
    }

    #[test]
    fn from_in_the_body_is_not_a_from_header() {
        assert!(!has_from(b"To: x\r\n\r\nFrom: y\r\n"));
        assert!(has_from(b"To: x\r\nfrom : y\r\n\r\n"));
    }
}
