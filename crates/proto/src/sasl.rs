//! SASL mechanisms for SMTP AUTH (RFC 4954): SCRAM-SHA-256(-PLUS), PLAIN, LOGIN, CRAM-MD5,
//! XOAUTH2, OAUTHBEARER, EXTERNAL.
//!
//! Each exchange is a tiny state machine ([`Sasl`]) that counts challenges and, for SCRAM,
//! keeps the signature the server must show at the end (see [`scram`]): the credentials are
//! borrowed again for every call, so a session that is logged, cloned or kept around never
//! carries a password, a token or a key derived from one. Everything is encoded straight into the
//! caller's [`Buffer`] (base64 in small stack chunks), so tokens of any length work without
//! an allocator, and every line is written whole or not at all.
//!
//! # Secrecy
//!
//! Every line the client writes from the `AUTH` command up to the server's final reply
//! (235 or an error) carries a secret or something a secret can be recovered from: base64
//! is an encoding, not a protection, and a CRAM-MD5 response allows an offline dictionary
//! attack on the password. Drivers and transcripts must redact all of those lines, not only
//! the ones that look like passwords.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
#[cfg(feature = "cram-md5")]
use hmac::{Hmac, Mac};
#[cfg(feature = "cram-md5")]
use md5::Md5;

use crate::buf::{Buffer, BufferFull};
use zeroize::Zeroize;

pub mod scram;

/// A SASL mechanism postline speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The widespread, unstandardised `LOGIN`.
    Login,
    /// RFC 2195.
    CramMd5,
    /// Google's and Microsoft's bearer-token mechanism.
    XOAuth2,
    /// RFC 7628.
    OAuthBearer,
    /// RFC 5802 and RFC 7677, without channel binding.
    ScramSha256,
    /// RFC 5802 and RFC 7677, bound to the TLS channel (RFC 9266 `tls-exporter` or RFC 5929
    /// `tls-server-end-point`).
    ScramSha256Plus,
    /// RFC 4422 appendix A: the identity the TLS client certificate established.
    External,
}

impl Mechanism {
    /// The mechanisms worth trying for a secret, strongest first: a password (`token:
    /// false`) or an OAuth token. Over TLS the password mechanisms that prove most come first
    /// (SCRAM, then PLAIN, whose one round trip beats LOGIN, then CRAM-MD5, which needs the
    /// password stored in clear on the server); in clear text, allowed only when the caller
    /// says so, what a passive listener can read least (SCRAM, CRAM-MD5, then PLAIN, LOGIN).
    /// The std clients and the embedded driver pick from this one list.
    pub const fn preference(token: bool, tls: bool) -> &'static [Mechanism] {
        match (token, tls) {
            (true, _) => &[Mechanism::OAuthBearer, Mechanism::XOAuth2],
            (false, true) => &[
                Mechanism::ScramSha256Plus,
                Mechanism::ScramSha256,
                Mechanism::Plain,
                Mechanism::Login,
                Mechanism::CramMd5,
            ],
            (false, false) => &[
                Mechanism::ScramSha256,
                Mechanism::CramMd5,
                Mechanism::Plain,
                Mechanism::Login,
            ],
        }
    }

    /// Every mechanism, strongest first for passwords, then tokens, then EXTERNAL (which
    /// needs a client certificate rather than a secret).
    pub const ALL: [Mechanism; 8] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
        Mechanism::External,
    ];
    /// Whether this build can carry out the mechanism: CRAM-MD5, SCRAM and the OAuth
    /// mechanisms are cargo features (`cram-md5`, `scram`, `oauth`, all on by default) so a
    /// device pays only for the ones it uses. A mechanism left out is never chosen by a
    /// driver and [`Sasl::new`] refuses it.
    pub const fn supported(self) -> bool {
        match self {
            Mechanism::Plain | Mechanism::Login | Mechanism::External => true,
            Mechanism::CramMd5 => cfg!(feature = "cram-md5"),
            Mechanism::XOAuth2 | Mechanism::OAuthBearer => cfg!(feature = "oauth"),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => cfg!(feature = "scram"),
        }
    }

    /// The name as sent after `AUTH`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::External => "EXTERNAL",
        }
    }
    /// Case-insensitive lookup of a name from an EHLO line.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// What the client proves itself with. Borrowed, so the session never stores a secret.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// A user name and password (PLAIN, LOGIN, CRAM-MD5).
    Password {
        /// Identity to act as (PLAIN only); usually `None`.
        authzid: Option<&'a str>,
        /// The user name.
        username: &'a str,
        /// The password.
        password: &'a str,
    },
    /// An OAuth 2.0 bearer token (XOAUTH2, OAUTHBEARER).
    Token {
        /// The user the token belongs to.
        username: &'a str,
        /// The access token.
        token: &'a str,
        /// Server host name, sent in OAUTHBEARER's `host=` when known.
        host: Option<&'a str>,
        /// Server port, sent in OAUTHBEARER's `port=` when known.
        port: Option<u16>,
    },
    /// A user name and password for SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, with what SCRAM
    /// needs besides: a fresh client nonce and the channel binding decision.
    ///
    /// The password must already be SASLprep'd (RFC 4013) by the caller; this crate has no
    /// Unicode tables. The same nonce must be passed to `start` and every `respond`.
    Scram {
        /// Identity to act as (`a=`); usually `None`.
        authzid: Option<&'a str>,
        /// The user name (SASLprep'd by the caller); `,` and `=` are escaped here.
        username: &'a str,
        /// The password (SASLprep'd by the caller).
        password: &'a str,
        /// The client nonce: printable ASCII without `,`, e.g. 24 random bytes in base64.
        /// Fresh for each exchange: a repeated nonce lets a recorded exchange be replayed.
        nonce: &'a str,
        /// Whether and how the exchange is bound to the TLS channel.
        binding: Binding<'a>,
    },
    /// No secret at all (EXTERNAL): the server takes the identity from the TLS client
    /// certificate.
    External {
        /// Identity to act as; `None` asks for the one the certificate names.
        authzid: Option<&'a str>,
    },
}

/// The channel binding decision of a SCRAM exchange: the gs2 header's first field (RFC 5802
/// section 6). A client that could bind but says it cannot would let an attacker who strips
/// the -PLUS mechanisms from the EHLO reply downgrade it unnoticed, hence three cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// `n`: the client does not bind (no TLS, or it chose not to although the server offers
    /// SCRAM-SHA-256-PLUS). SCRAM-SHA-256 only.
    Unsupported,
    /// `y`: the client could bind but the server did not offer SCRAM-SHA-256-PLUS. A server
    /// that does support binding fails such an exchange, catching the downgrade.
    /// SCRAM-SHA-256 only.
    NotOffered,
    /// `p=`: bind to this channel. SCRAM-SHA-256-PLUS only.
    Bound(ChannelBinding<'a>),
}

/// Channel binding data taken from the TLS connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelBinding<'a> {
    /// Which kind of binding `data` is.
    pub kind: BindingKind,
    /// The binding bytes (32 for `tls-exporter`; a certificate hash for
    /// `tls-server-end-point`). At most [`scram::MAX_BINDING`] bytes.
    pub data: &'a [u8],
}

impl core::fmt::Debug for ChannelBinding<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ChannelBinding {{ kind: {:?}, {} bytes }}",
            self.kind,
            self.data.len()
        )
    }
}

/// A channel binding type (RFC 5056 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// `tls-exporter` (RFC 9266), for TLS 1.3.
    TlsExporter,
    /// `tls-server-end-point` (RFC 5929 section 4), a hash of the server's certificate; for
    /// TLS 1.2.
    TlsServerEndPoint,
}

impl BindingKind {
    /// The name in the gs2 header (`p=NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            BindingKind::TlsExporter => "tls-exporter",
            BindingKind::TlsServerEndPoint => "tls-server-end-point",
        }
    }
}

impl core::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Credentials::Password { username, .. } => {
                write!(f, "Password {{ username: {username:?}, password: *** }}")
            }
            Credentials::Token { username, .. } => {
                write!(f, "Token {{ username: {username:?}, token: *** }}")
            }
            Credentials::Scram {
                username, binding, ..
            } => write!(
                f,
                "Scram {{ username: {username:?}, password: ***, binding: {binding:?} }}"
            ),
            Credentials::External { authzid } => {
                write!(f, "External {{ authzid: {authzid:?} }}")
            }
        }
    }
}

/// Why a SASL exchange cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslError {
    /// The credentials do not fit the mechanism (a token for PLAIN, a password for XOAUTH2).
    WrongCredentials,
    /// A credential contains a byte the mechanism cannot carry (NUL in PLAIN, SOH in OAUTHBEARER).
    InvalidCredential,
    /// The output buffer is too small.
    BufferFull(BufferFull),
    /// The mechanism was left out of this build (its cargo feature is off).
    Unsupported(Mechanism),
}

impl core::fmt::Display for SaslError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SaslError::WrongCredentials => {
                f.write_str("the credentials do not fit the SASL mechanism")
            }
            SaslError::InvalidCredential => {
                f.write_str("a credential contains a byte the SASL mechanism cannot carry")
            }
            SaslError::BufferFull(e) => write!(f, "{e}"),
            SaslError::Unsupported(m) => write!(
                f,
                "SASL mechanism {} is not in this build (its cargo feature is off)",
                m.name()
            ),
        }
    }
}

impl From<BufferFull> for SaslError {
    fn from(e: BufferFull) -> Self {
        SaslError::BufferFull(e)
    }
}

/// How the client answered a 334 challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// A response line was written.
    Answered,
    /// The server sent an error (XOAUTH2/OAUTHBEARER JSON); an empty (or `AQ==`) line was
    /// written to acknowledge it, and the server's final failure reply comes next.
    ErrorAcknowledged,
    /// The challenge made no sense for the mechanism; `*` was written to cancel (RFC 4954).
    Cancelled,
    /// SCRAM: the server sent `e=` (an error instead of its proof); `*` was written to
    /// cancel and the server's final failure reply comes next.
    ServerError,
    /// SCRAM: the server's proof (`v=`) was wrong or missing; `*` was written to cancel.
    /// The server does not know the password: whatever it answers next, the client is
    /// talking to an impostor or a broken server.
    ServerUnproven,
}

/// Longest decoded challenge accepted. Real CRAM-MD5 challenges and OAuth error documents
/// are well under this; the bound keeps decoding on the stack.
pub const MAX_CHALLENGE: usize = 1024;

/// At most this many challenges in one AUTH exchange: no mechanism here needs more than two,
/// and a server that keeps challenging is not authenticating anyone, only holding the
/// connection. Every driver gives up after it.
pub const MAX_ROUNDS: u32 = 8;

/// Servers disagree on base64 padding in challenges, and a strict decoder would turn a
/// harmless difference into a cancelled login; what we send stays canonical
/// ([`encode_base64`]).
pub(crate) const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Writes the padded base64 of `input` into `out` and returns it; `None` when `out` is shorter
/// than `input.len().div_ceil(3) * 4`.
///
/// Everything postline sends in base64 (credentials, tokens, an RFC 2047 subject) goes
/// through here. Constant-time, as `base64ct`'s encoder it replaces (the same arithmetic, no
/// table lookup), so the timing of a login does not depend on the secret's bytes; written
/// out here because `base64ct`'s generic encoder took 540 B of a Cortex-M4 image, this one
/// a fraction of that.
pub fn encode_base64<'o>(input: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let out = out.get_mut(..input.len().div_ceil(3).checked_mul(4)?)?;
    for (src, dst) in input.chunks(3).zip(out.chunks_exact_mut(4)) {
        let byte = |i: usize| u32::from(src.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        // A group of n input bytes gives n + 1 characters, then padding (the length is not
        // secret).
        for (i, d) in dst.iter_mut().enumerate() {
            *d = if i <= src.len() {
                sextet((group >> (18 - 6 * i)) as u8 & 63)
            } else {
                b'='
            };
        }
    }
    Some(out)
}

/// The base64 character of a 6-bit value, without a branch or a table index on it
/// (`base64ct`'s arithmetic).
fn sextet(x: u8) -> u8 {
    let x = i16::from(x);
    let mut c = x + i16::from(b'A');
    c += ((25 - x) >> 8) & 6;
    c -= ((51 - x) >> 8) & 75;
    c -= ((61 - x) >> 8) & 15;
    c += ((62 - x) >> 8) & 3;
    c as u8
}

/// Decodes the base64 text of a 334 challenge into `buf`.
///
/// Public so a driver can surface an XOAUTH2/OAUTHBEARER error document (a JSON object
/// naming the status and scope) to the user: it says why the token was refused, which the
/// final 535 usually does not. `None` for invalid base64 or when `buf` is too small.
pub fn decode_challenge<'b>(challenge: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let text = challenge.trim_ascii();
    let n = LENIENT.decode_slice(text, &mut *buf).ok()?;
    buf.get(..n)
}

/// One SASL exchange: which mechanism, how far it got and, for SCRAM, the signature the
/// server must prove itself with. 35 bytes (3 without the `scram` feature); no secret held (the server signature is public
/// once the server sends it, and useless to log in with).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sasl {
    mechanism: Mechanism,
    step: u8,
    proof: scram::ServerProof,
}

impl core::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("step", &self.step)
            .field("server_proof", &self.proof.state())
            .finish()
    }
}

impl Sasl {
    /// Starts an exchange, checking that the credentials fit the mechanism.
    ///
    /// Checking here, before `AUTH` goes out, lets the session pick another mechanism or
    /// fail cleanly instead of sending a line that would smuggle a CRLF (a second command)
    /// or a separator that shifts fields (a NUL making the password part of the user name).
    pub fn new(mechanism: Mechanism, creds: &Credentials<'_>) -> Result<Sasl, SaslError> {
        if !mechanism.supported() {
            return Err(SaslError::Unsupported(mechanism));
        }
        check(mechanism, creds)?;
        Ok(Sasl {
            mechanism,
            step: 0,
            proof: scram::ServerProof::NONE,
        })
    }
    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
    /// Whether a success reply (235) may be believed: always for mechanisms in which the
    /// server proves nothing; for SCRAM only once the server's `v=` was verified.
    pub fn server_proven(&self) -> bool {
        match self.mechanism {
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => {
                self.proof.state() == scram::ProofState::Verified
            }
            _ => true,
        }
    }
    /// True when the exchange ended because the server's proof was wrong or missing, so a
    /// failure reply that follows is about the server, not the client's credentials.
    pub fn server_refuted(&self) -> bool {
        self.proof.state() == scram::ProofState::Wrong
    }
    /// Writes the `AUTH` command line, with an initial response for the mechanisms that
    /// have one (PLAIN, XOAUTH2, OAUTHBEARER, SCRAM, EXTERNAL), CRLF included.
    ///
    /// The credentials are checked again because they are passed anew and need not be the
    /// ones [`Sasl::new`] saw. Calling `start` again restarts the exchange.
    pub fn start(
        &mut self,
        creds: &Credentials<'_>,
        out: &mut impl Buffer,
    ) -> Result<(), SaslError> {
        check(self.mechanism, creds)?;
        let name = self.mechanism.name().as_bytes();
        match (self.mechanism, *creds) {
            (
                Mechanism::Plain,
                Credentials::Password {
                    authzid,
                    username,
                    password,
                },
            ) => {
                let payload = [
                    Piece::Raw(authzid.unwrap_or("").as_bytes()),
                    Piece::Raw(b"\0"),
                    Piece::Raw(username.as_bytes()),
                    Piece::Raw(b"\0"),
                    Piece::Raw(password.as_bytes()),
                ];
                write_encoded(out, &[b"AUTH ", name, b" "], &payload, b"=")?;
            }
            (Mechanism::Login | Mechanism::CramMd5, _) => {
                out.extend_all(&[b"AUTH ", name, b"\r\n"])?;
            }
            #[cfg(feature = "oauth")]
            (
                Mechanism::XOAuth2,
                Credentials::Token {
                    username, token, ..
                },
            ) => {
                let payload = [
                    Piece::Raw(b"user="),
                    Piece::Raw(username.as_bytes()),
                    Piece::Raw(b"\x01auth=Bearer "),
                    Piece::Raw(token.as_bytes()),
                    Piece::Raw(b"\x01\x01"),
                ];
                write_encoded(out, &[b"AUTH ", name, b" "], &payload, b"=")?;
            }
            #[cfg(feature = "oauth")]
            (
                Mechanism::OAuthBearer,
                Credentials::Token {
                    username,
                    token,
                    host,
                    port,
                },
            ) => {
                let mut digits = [0u8; 20];
                let port_text = port.map(|p| crate::buf::decimal(u64::from(p), &mut digits));
                // RFC 7628 3.1: the authzid is optional, so an empty user name becomes the
                // bare gs2 header `n,,` rather than an empty `a=`.
                let (a, user) = if username.is_empty() {
                    (&b""[..], Piece::Raw(b""))
                } else {
                    (&b"a="[..], Piece::SaslName(username.as_bytes()))
                };
                let (host_key, host_val) = match host {
                    Some(h) => (&b"\x01host="[..], h.as_bytes()),
                    None => (&b""[..], &b""[..]),
                };
                let (port_key, port_val) = match port_text {
                    Some(p) => (&b"\x01port="[..], p),
                    None => (&b""[..], &b""[..]),
                };
                let payload = [
                    Piece::Raw(b"n,"),
                    Piece::Raw(a),
                    user,
                    Piece::Raw(b","),
                    Piece::Raw(host_key),
                    Piece::Raw(host_val),
                    Piece::Raw(port_key),
                    Piece::Raw(port_val),
                    Piece::Raw(b"\x01auth=Bearer "),
                    Piece::Raw(token.as_bytes()),
                    Piece::Raw(b"\x01\x01"),
                ];
                write_encoded(out, &[b"AUTH ", name, b" "], &payload, b"=")?;
            }
            #[cfg(feature = "scram")]
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, Credentials::Scram { .. }) => {
                scram::client_first(self.mechanism, creds, out)?;
            }
            (Mechanism::External, Credentials::External { authzid }) => {
                let payload = [Piece::Raw(authzid.unwrap_or("").as_bytes())];
                write_encoded(out, &[b"AUTH ", name, b" "], &payload, b"=")?;
            }
            // `check` has already refused every other pairing, and `new` every mechanism
            // left out of the build.
            _ => return Err(SaslError::WrongCredentials),
        }
        self.step = 0;
        self.proof = scram::ServerProof::NONE;
        Ok(())
    }
    /// Answers a 334 challenge; `challenge` is the base64 text after `334 `.
    ///
    /// LOGIN is answered by position (user name, then password) because servers word and
    /// even localise the prompts; anything the mechanism does not expect is cancelled with
    /// `*` so the server ends the exchange with a final reply instead of both sides waiting.
    pub fn respond(
        &mut self,
        creds: &Credentials<'_>,
        challenge: &[u8],
        out: &mut impl Buffer,
    ) -> Result<Response, SaslError> {
        check(self.mechanism, creds)?;
        let step = self.step;
        let response = match (self.mechanism, *creds) {
            // The user name, then the password: one call to write either (a call each cost a
            // device build 36 B).
            (
                Mechanism::Login,
                Credentials::Password {
                    username, password, ..
                },
            ) if step <= 1 => {
                let text = if step == 0 { username } else { password };
                write_encoded(out, &[], &[Piece::Raw(text.as_bytes())], b"")?;
                Response::Answered
            }
            #[cfg(feature = "cram-md5")]
            (
                Mechanism::CramMd5,
                Credentials::Password {
                    username, password, ..
                },
            ) if step == 0 => match cram_md5_digest(password.as_bytes(), challenge) {
                Some(hex) => {
                    let payload = [
                        Piece::Raw(username.as_bytes()),
                        Piece::Raw(b" "),
                        Piece::Raw(&hex),
                    ];
                    write_encoded(out, &[], &payload, b"")?;
                    Response::Answered
                }
                None => cancel(out)?,
            },
            // RFC 6749-style error document; the server wants any reply before it sends
            // its final failure. XOAUTH2 takes an empty line.
            #[cfg(feature = "oauth")]
            (Mechanism::XOAuth2, _) if step == 0 => {
                out.extend_from_slice(b"\r\n")?;
                Response::ErrorAcknowledged
            }
            // RFC 7628 3.2.3: the client answers the error with a single %x01.
            #[cfg(feature = "oauth")]
            (Mechanism::OAuthBearer, _) if step == 0 => {
                out.extend_from_slice(b"AQ==\r\n")?;
                Response::ErrorAcknowledged
            }
            #[cfg(feature = "scram")]
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, Credentials::Scram { .. })
                if step == 0 =>
            {
                match scram::client_final(creds, challenge, out)? {
                    Ok(proof) => {
                        self.proof = proof;
                        Response::Answered
                    }
                    Err(response) => response,
                }
            }
            #[cfg(feature = "scram")]
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, _) if step == 1 => {
                let (response, proof) = scram::server_final(&self.proof, challenge, out)?;
                self.proof = proof;
                response
            }
            // EXTERNAL sent its (possibly empty) authzid with AUTH; a server that still asks
            // with an empty challenge gets the empty response of RFC 4422 appendix A.
            (Mechanism::External, _) if step == 0 && challenge.trim_ascii().is_empty() => {
                out.extend_from_slice(b"\r\n")?;
                Response::Answered
            }
            // PLAIN always sent its response with AUTH, so any challenge is unexpected, as
            // is every challenge past the last step of the other mechanisms. A SCRAM exchange
            // cancelled after its client-final leaves a server that proved nothing.
            _ => {
                let r = cancel(out)?;
                if self.proof.state() != scram::ProofState::Pending {
                    self.proof = scram::ServerProof::WRONG;
                }
                r
            }
        };
        self.step = step.saturating_add(1);
        Ok(response)
    }
}

/// Refuses credentials of the wrong kind and bytes that would break the framing.
fn check(mechanism: Mechanism, creds: &Credentials<'_>) -> Result<(), SaslError> {
    /// A set of control characters, one bit each: every byte a mechanism forbids is one.
    const fn set(bytes: &[u8]) -> u32 {
        let mut set = 0;
        let mut i = 0;
        while i < bytes.len() {
            set |= 1 << bytes[i];
            i += 1;
        }
        set
    }
    const CRLF: u32 = set(b"\r\n");
    const NUL_CRLF: u32 = set(b"\0\r\n");
    const SOH_CRLF: u32 = set(b"\x01\r\n");
    /// True when no field holds a byte of `forbidden`. One walk over all the fields with a
    /// bit test per byte: a `Result` per field, each passed up, cost a device build 160 B.
    fn clean(fields: &[&str], forbidden: u32) -> bool {
        fields
            .iter()
            .all(|f| f.bytes().all(|b| b >= 32 || forbidden & (1 << b) == 0))
    }
    let clean = match (mechanism, *creds) {
        (
            Mechanism::Plain | Mechanism::Login | Mechanism::CramMd5,
            Credentials::Password {
                authzid,
                username,
                password,
            },
        ) => {
            let authzid = authzid.unwrap_or("");
            // Only PLAIN carries an authorisation identity; LOGIN or CRAM-MD5 would
            // silently act as the user instead of the identity the caller asked for.
            if mechanism != Mechanism::Plain && !authzid.is_empty() {
                return Err(SaslError::WrongCredentials);
            }
            let forbidden = if mechanism == Mechanism::Plain {
                NUL_CRLF
            } else {
                CRLF
            };
            clean(&[authzid, username, password], forbidden)
        }
        // Without the oauth feature no exchange has these mechanisms (`Sasl::new` refuses
        // them), so their check is left out of the build (34 B of a device's).
        (
            Mechanism::XOAuth2 | Mechanism::OAuthBearer,
            Credentials::Token {
                username,
                token,
                host,
                port: _,
            },
        ) if cfg!(feature = "oauth") => clean(&[username, token, host.unwrap_or("")], SOH_CRLF),
        #[cfg(feature = "scram")]
        (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, Credentials::Scram { .. }) => {
            return scram::check(mechanism, creds);
        }
        (Mechanism::External, Credentials::External { authzid }) => {
            clean(&[authzid.unwrap_or("")], NUL_CRLF)
        }
        _ => return Err(SaslError::WrongCredentials),
    };
    if clean {
        Ok(())
    } else {
        Err(SaslError::InvalidCredential)
    }
}

/// Writes the cancellation line of RFC 4954 section 4.
pub(crate) fn cancel(out: &mut impl Buffer) -> Result<Response, SaslError> {
    out.extend_from_slice(b"*\r\n")?;
    Ok(Response::Cancelled)
}

/// RFC 2195: lowercase hex of HMAC-MD5(password, challenge). `None` when the challenge is
/// not base64, is too long, or is empty (a response to an empty challenge has no nonce in
/// it and could be replayed, so it is not worth sending).
///
/// The challenge is decoded 64 characters (48 bytes) at a time straight into the HMAC: base64
/// decodes in independent groups of four, so no buffer the size of the challenge is needed,
/// and out of line, so the other mechanisms' answers do not carry this frame on the stack.
#[cfg(feature = "cram-md5")]
#[inline(never)]
fn cram_md5_digest(password: &[u8], challenge: &[u8]) -> Option<[u8; 32]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const CHUNK: usize = 64;
    let text = challenge.trim_ascii();
    let mut mac = Hmac::<Md5>::new_from_slice(password).ok()?;
    let mut decoded = 0usize;
    for (i, chunk) in text.chunks(CHUNK).enumerate() {
        // Padding ends the text: a group padded before the last chunk is invalid base64 as
        // a whole, though it would decode on its own.
        let last = (i + 1) * CHUNK >= text.len();
        if !last && chunk.contains(&b'=') {
            return None;
        }
        let mut buf = [0u8; CHUNK / 4 * 3];
        let n = LENIENT.decode_slice(chunk, &mut buf).ok()?;
        decoded += n;
        if decoded > MAX_CHALLENGE {
            return None;
        }
        mac.update(buf.get(..n)?);
    }
    if decoded == 0 {
        return None;
    }
    let digest = mac.finalize().into_bytes();
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    Some(hex)
}

/// A part of a SASL message before base64.
#[derive(Clone, Copy)]
pub(crate) enum Piece<'a> {
    /// Sent as is.
    Raw(&'a [u8]),
    /// An RFC 5801 saslname: `,` and `=` would end the gs2 header early, so they travel as
    /// `=2C` and `=3D`. Only the mechanisms with a gs2 header (SCRAM, OAUTHBEARER) write one,
    /// so a build without them carries no code for it.
    #[cfg(any(feature = "scram", feature = "oauth"))]
    SaslName(&'a [u8]),
}

impl Piece<'_> {
    fn len(self) -> usize {
        match self {
            Piece::Raw(b) => b.len(),
            #[cfg(any(feature = "scram", feature = "oauth"))]
            Piece::SaslName(b) => b
                .iter()
                .map(|&c| if c == b',' || c == b'=' { 3 } else { 1 })
                .fold(0usize, usize::saturating_add),
        }
    }
}

/// Input bytes per base64 chunk: a multiple of 3 so chunks concatenate without padding; small,
/// as this chunk and its base64 sit on the stack under every SASL answer on a device.
const CHUNK: usize = 24;

/// Base64 of a message streamed through a small stack buffer, so a multi-kilobyte token
/// needs neither an allocator nor a large stack array.
struct B64Stream<'o, B: Buffer> {
    out: &'o mut B,
    pending: [u8; CHUNK],
    len: usize,
}

/// The one way a stream fails is a full buffer, and it says so as [`BufferFull`], which comes
/// back in registers; as a [`SaslError`] (the caller's `?` converts) each call's result went
/// through memory, 50 B more of a device build.
impl<B: Buffer> B64Stream<'_, B> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        for &b in bytes {
            if let Some(slot) = self.pending.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if self.len >= CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn piece(&mut self, piece: Piece<'_>) -> Result<(), BufferFull> {
        match piece {
            Piece::Raw(b) => self.push(b),
            #[cfg(any(feature = "scram", feature = "oauth"))]
            Piece::SaslName(b) => {
                for &c in b {
                    match c {
                        b',' => self.push(b"=2C")?,
                        b'=' => self.push(b"=3D")?,
                        _ => self.push(&[c])?,
                    }
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), BufferFull> {
        let mut enc = [0u8; CHUNK / 3 * 4];
        let input = self.pending.get(..self.len).unwrap_or(&[]);
        // `enc` is sized for a full chunk, so this cannot fail; should it, reporting a full
        // buffer is better than writing a corrupt credential.
        let written = match encode_base64(input, &mut enc) {
            Some(text) => self.out.extend_from_slice(text),
            None => Err(BufferFull {
                needed: CHUNK / 3 * 4,
            }),
        };
        // A piece of the credentials, wiped before the frame is let go (`pending` is wiped
        // when the stream is dropped).
        enc.zeroize();
        self.len = 0;
        written
    }
}

impl<B: Buffer> Drop for B64Stream<'_, B> {
    /// A stream abandoned on an error still wipes what it held.
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Base64 length of `n` bytes, padded.
fn encoded_len(n: usize) -> usize {
    (n / 3 + usize::from(!n.is_multiple_of(3))).saturating_mul(4)
}

/// Writes `head`, the base64 of `payload` (or `empty_as` when it is empty) and CRLF, all or
/// nothing: the exact length is computed first so the buffer is checked before any write.
///
/// `empty_as` exists because an empty initial response must be sent as `=` (RFC 4954
/// section 4) while an empty reply to a challenge is an empty line. A full buffer is the one
/// failure, reported as [`BufferFull`] (in registers; the callers' `?` makes it a
/// [`SaslError`]): 90 B less of a device build than a `SaslError` through memory.
pub(crate) fn write_encoded(
    out: &mut impl Buffer,
    head: &[&[u8]],
    payload: &[Piece<'_>],
    empty_as: &[u8],
) -> Result<(), BufferFull> {
    let raw = payload
        .iter()
        .map(|p| p.len())
        .fold(0usize, usize::saturating_add);
    let body = if raw == 0 {
        empty_as.len()
    } else {
        encoded_len(raw)
    };
    let total = head
        .iter()
        .map(|h| h.len())
        .fold(body, usize::saturating_add)
        .saturating_add(2);
    out.reserve_check(total)?;
    for h in head {
        out.extend_from_slice(h)?;
    }
    if raw == 0 {
        out.extend_from_slice(empty_as)?;
    } else {
        let mut stream = B64Stream {
            out: &mut *out,
            pending: [0; CHUNK],
            len: 0,
        };
        for &p in payload {
            stream.piece(p)?;
        }
        if stream.len > 0 {
            stream.flush()?;
        }
    }
    out.extend_from_slice(b"\r\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::FixedBuf;

    const TIM: Credentials<'static> = Credentials::Password {
        authzid: None,
        username: "tim",
        password: "tanstaaftanstaaf",
    };
    const GOOGLE: Credentials<'static> = Credentials::Token {
        username: "someuser@example.com",
        token: "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        host: None,
        port: None,
    };
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    const RFC7628: Credentials<'static> = Credentials::Token {
        username: "user@example.com",
        token: "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host: Some("server.example.com"),
        port: Some(143),
    };
    #[cfg_attr(not(feature = "cram-md5"), allow(dead_code))]
    const CRAM_CHALLENGE: &[u8] = b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";

    /// Runs `start` into a fresh buffer and returns what it wrote.
    fn start(mech: Mechanism, creds: &Credentials<'_>) -> (Sasl, std::vec::Vec<u8>) {
        let mut sasl = Sasl::new(mech, creds).unwrap();
        let mut storage = [0u8; 4096];
        let mut out = FixedBuf::new(&mut storage);
        sasl.start(creds, &mut out).unwrap();
        (sasl, out.as_bytes().to_vec())
    }

    fn respond(
        sasl: &mut Sasl,
        creds: &Credentials<'_>,
        challenge: &[u8],
    ) -> (Response, std::vec::Vec<u8>) {
        let mut storage = [0u8; 4096];
        let mut out = FixedBuf::new(&mut storage);
        let r = sasl.respond(creds, challenge, &mut out).unwrap();
        (r, out.as_bytes().to_vec())
    }

    /// The expected base64, from a second, independent encoder.
    fn b64(data: &[u8]) -> std::string::String {
        use base64::engine::general_purpose::STANDARD;
        let mut enc = [0u8; 4096];
        let n = STANDARD.encode_slice(data, &mut enc).unwrap();
        std::string::String::from_utf8(enc[..n].to_vec()).unwrap()
    }

    #[test]
    fn encode_base64_agrees_with_a_second_encoder_and_refuses_a_short_buffer() {
        let data: std::vec::Vec<u8> = (0..=255u8).rev().collect();
        for len in 0..data.len() {
            let input = &data[..len];
            let mut out = [0u8; 344];
            let text = encode_base64(input, &mut out).unwrap();
            assert_eq!(text, b64(input).as_bytes(), "length {len}");
            let need = text.len();
            if need > 0 {
                assert_eq!(
                    encode_base64(input, &mut out[..need - 1]),
                    None,
                    "length {len}"
                );
            }
        }
    }

    #[test]
    fn encode_base64_agrees_on_random_bytes() {
        // Every 6-bit value in every position of a group, and every tail length.
        let mut x = 0x9e37_79b9_u32;
        for len in 0..600 {
            let input: std::vec::Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut out = [0u8; 800];
            assert_eq!(
                encode_base64(&input, &mut out).unwrap(),
                b64(&input).as_bytes(),
                "length {len}"
            );
        }
    }

    #[test]
    fn plain_rfc4616_example() {
        let (mut sasl, line) = start(Mechanism::Plain, &TIM);
        assert_eq!(line, b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
        // PLAIN has said everything; a challenge afterwards is cancelled.
        assert_eq!(
            respond(&mut sasl, &TIM, b""),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
    }

    #[test]
    fn plain_with_authzid() {
        let creds = Credentials::Password {
            authzid: Some("admin"),
            username: "tim",
            password: "pw",
        };
        let (_, line) = start(Mechanism::Plain, &creds);
        let expected = std::format!("AUTH PLAIN {}\r\n", b64(b"admin\0tim\0pw"));
        assert_eq!(line, expected.as_bytes());
    }

    #[test]
    fn plain_empty_fields_still_have_separators() {
        let creds = Credentials::Password {
            authzid: None,
            username: "",
            password: "",
        };
        let (_, line) = start(Mechanism::Plain, &creds);
        assert_eq!(line, b"AUTH PLAIN AAA=\r\n");
    }

    #[test]
    fn login_answers_by_position() {
        let (mut sasl, line) = start(Mechanism::Login, &TIM);
        assert_eq!(line, b"AUTH LOGIN\r\n");
        assert_eq!(
            respond(&mut sasl, &TIM, b"VXNlcm5hbWU6"),
            (Response::Answered, b"dGlt\r\n".to_vec())
        );
        // A prompt that is not "Password:" (here "Passwort:") still gets the password.
        assert_eq!(
            respond(&mut sasl, &TIM, b"UGFzc3dvcnQ6"),
            (Response::Answered, b"dGFuc3RhYWZ0YW5zdGFhZg==\r\n".to_vec())
        );
        assert_eq!(
            respond(&mut sasl, &TIM, b"UGFzc3dvcmQ6"),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
    }

    #[test]
    fn login_empty_user_is_an_empty_line() {
        let creds = Credentials::Password {
            authzid: None,
            username: "",
            password: "x",
        };
        let (mut sasl, _) = start(Mechanism::Login, &creds);
        assert_eq!(
            respond(&mut sasl, &creds, b"VXNlcm5hbWU6"),
            (Response::Answered, b"\r\n".to_vec())
        );
    }

    #[test]
    #[cfg(feature = "cram-md5")]
    fn cram_md5_rfc2195_example() {
        let (mut sasl, line) = start(Mechanism::CramMd5, &TIM);
        assert_eq!(line, b"AUTH CRAM-MD5\r\n");
        let (r, out) = respond(&mut sasl, &TIM, CRAM_CHALLENGE);
        assert_eq!(r, Response::Answered);
        assert_eq!(out, b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
        let expected = std::format!("{}\r\n", b64(b"tim b913a602c7eda7a495b4e6e7334d3890"));
        assert_eq!(out, expected.as_bytes());
        assert_eq!(
            respond(&mut sasl, &TIM, CRAM_CHALLENGE),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
    }

    #[test]
    #[cfg(feature = "cram-md5")]
    fn cram_md5_tolerates_missing_padding_and_whitespace() {
        let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
        // Same challenge base64 minus nothing (it has no padding), with a trailing space.
        let mut ch = CRAM_CHALLENGE.to_vec();
        ch.extend_from_slice(b" \r\n");
        let (r, out) = respond(&mut sasl, &TIM, &ch);
        assert_eq!(r, Response::Answered);
        assert_eq!(out, b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
        // "abcd" with padding stripped decodes too.
        let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
        assert_eq!(respond(&mut sasl, &TIM, b"YWJjZA").0, Response::Answered);
    }

    /// Decoding a chunk at a time gives the digest of the whole decoded challenge, and
    /// refuses what whole decoding refuses (padding before the end, a stray byte).
    #[test]
    #[cfg(feature = "cram-md5")]
    fn cram_md5_digest_matches_whole_decoding() {
        fn whole(password: &[u8], challenge: &[u8]) -> Option<[u8; 16]> {
            let mut buf = std::vec![0u8; 2 * MAX_CHALLENGE];
            let decoded = decode_challenge(challenge, &mut buf)?;
            if decoded.is_empty() || decoded.len() > MAX_CHALLENGE {
                return None;
            }
            let mut mac = Hmac::<Md5>::new_from_slice(password).unwrap();
            mac.update(decoded);
            Some(mac.finalize().into_bytes().into())
        }
        fn hex(d: [u8; 16]) -> [u8; 32] {
            let mut h = [0u8; 32];
            for (pair, b) in h.chunks_exact_mut(2).zip(d) {
                pair.copy_from_slice(std::format!("{b:02x}").as_bytes());
            }
            h
        }
        let mut challenges: std::vec::Vec<std::vec::Vec<u8>> = std::vec::Vec::new();
        for len in (0..200).chain([767, 768, 769, 1023, 1024, 1025]) {
            let raw: std::vec::Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let text = b64(&raw);
            challenges.push(text.trim_end_matches('=').as_bytes().to_vec());
            challenges.push(text.clone().into_bytes());
            if text.len() > 70 {
                // Padding in the middle, at and off a chunk boundary.
                for at in [60, 64, 68] {
                    let mut bad = text.clone().into_bytes();
                    bad[at - 2..at].copy_from_slice(b"==");
                    challenges.push(bad);
                }
                let mut bad = text.into_bytes();
                bad.insert(65, b'A');
                challenges.push(bad);
            }
        }
        for ch in &challenges {
            assert_eq!(
                cram_md5_digest(b"secret", ch),
                whole(b"secret", ch).map(hex),
                "{}",
                std::string::String::from_utf8_lossy(ch)
            );
        }
    }

    #[test]
    #[cfg(feature = "cram-md5")]
    fn cram_md5_bad_challenges_cancel() {
        for ch in [&b"not base64!"[..], b"", b"===="] {
            let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
            assert_eq!(
                respond(&mut sasl, &TIM, ch),
                (Response::Cancelled, b"*\r\n".to_vec())
            );
        }
        // Decodes to more than MAX_CHALLENGE bytes.
        let long = b64(&[b'x'; MAX_CHALLENGE + 1]);
        let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
        assert_eq!(
            respond(&mut sasl, &TIM, long.as_bytes()),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
        // Exactly MAX_CHALLENGE is fine.
        let max = b64(&[b'x'; MAX_CHALLENGE]);
        let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
        assert_eq!(
            respond(&mut sasl, &TIM, max.as_bytes()).0,
            Response::Answered
        );
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn xoauth2_google_example() {
        let (mut sasl, line) = start(Mechanism::XOAuth2, &GOOGLE);
        assert_eq!(
            line,
            &b"AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n"[..]
        );
        let json =
            b64(br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#);
        assert_eq!(
            respond(&mut sasl, &GOOGLE, json.as_bytes()),
            (Response::ErrorAcknowledged, b"\r\n".to_vec())
        );
        assert_eq!(
            respond(&mut sasl, &GOOGLE, json.as_bytes()),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn oauthbearer_rfc7628_example() {
        let (mut sasl, line) = start(Mechanism::OAuthBearer, &RFC7628);
        assert_eq!(
            line,
            &b"AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB\r\n"[..]
        );
        let json = b64(br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#);
        assert_eq!(
            respond(&mut sasl, &RFC7628, json.as_bytes()),
            (Response::ErrorAcknowledged, b"AQ==\r\n".to_vec())
        );
        assert_eq!(
            respond(&mut sasl, &RFC7628, b""),
            (Response::Cancelled, b"*\r\n".to_vec())
        );
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn oauthbearer_escapes_and_optional_parts() {
        let creds = Credentials::Token {
            username: "a,b=c",
            token: "t",
            host: None,
            port: Some(65535),
        };
        let (_, line) = start(Mechanism::OAuthBearer, &creds);
        let expected = std::format!(
            "AUTH OAUTHBEARER {}\r\n",
            b64(b"n,a=a=2Cb=3Dc,\x01port=65535\x01auth=Bearer t\x01\x01")
        );
        assert_eq!(line, expected.as_bytes());

        let creds = Credentials::Token {
            username: "",
            token: "t",
            host: Some("h"),
            port: Some(0),
        };
        let (_, line) = start(Mechanism::OAuthBearer, &creds);
        let expected = std::format!(
            "AUTH OAUTHBEARER {}\r\n",
            b64(b"n,,\x01host=h\x01port=0\x01auth=Bearer t\x01\x01")
        );
        assert_eq!(line, expected.as_bytes());
    }

    #[test]
    #[cfg(feature = "oauth")]
    fn long_token_streams_correctly() {
        let token: std::string::String =
            (0..3001).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let creds = Credentials::Token {
            username: "u@example.com",
            token: &token,
            host: None,
            port: None,
        };
        let (_, line) = start(Mechanism::XOAuth2, &creds);
        let mut raw = std::vec::Vec::new();
        raw.extend_from_slice(b"user=u@example.com\x01auth=Bearer ");
        raw.extend_from_slice(token.as_bytes());
        raw.extend_from_slice(b"\x01\x01");
        let expected = std::format!("AUTH XOAUTH2 {}\r\n", b64(&raw));
        assert_eq!(line, expected.as_bytes());
    }

    #[test]
    #[cfg(all(feature = "cram-md5", feature = "oauth"))]
    fn wrong_credentials() {
        for m in [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5] {
            assert_eq!(Sasl::new(m, &GOOGLE), Err(SaslError::WrongCredentials));
        }
        for m in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
            assert_eq!(Sasl::new(m, &TIM), Err(SaslError::WrongCredentials));
        }
        // An authzid only PLAIN can carry.
        let creds = Credentials::Password {
            authzid: Some("admin"),
            username: "u",
            password: "p",
        };
        assert!(Sasl::new(Mechanism::Plain, &creds).is_ok());
        assert_eq!(
            Sasl::new(Mechanism::Login, &creds),
            Err(SaslError::WrongCredentials)
        );
        assert_eq!(
            Sasl::new(Mechanism::CramMd5, &creds),
            Err(SaslError::WrongCredentials)
        );
        // Swapping credentials after `new` is caught too, without writing.
        let mut sasl = Sasl::new(Mechanism::Plain, &TIM).unwrap();
        let mut out = std::vec::Vec::new();
        assert_eq!(
            sasl.start(&GOOGLE, &mut out),
            Err(SaslError::WrongCredentials)
        );
        assert_eq!(
            sasl.respond(&GOOGLE, b"", &mut out),
            Err(SaslError::WrongCredentials)
        );
        assert!(out.is_empty());
    }

    #[test]
    #[cfg(all(feature = "cram-md5", feature = "oauth"))]
    fn invalid_credential_bytes() {
        let pw = |authzid, username, password| Credentials::Password {
            authzid,
            username,
            password,
        };
        let tok = |username, token, host| Credentials::Token {
            username,
            token,
            host,
            port: None,
        };
        let bad = SaslError::InvalidCredential;
        assert_eq!(
            Sasl::new(Mechanism::Plain, &pw(None, "a\0b", "p")),
            Err(bad)
        );
        assert_eq!(Sasl::new(Mechanism::Plain, &pw(None, "u", "p\0")), Err(bad));
        assert_eq!(
            Sasl::new(Mechanism::Plain, &pw(Some("\0"), "u", "p")),
            Err(bad)
        );
        // LOGIN base64-encodes each field alone, so NUL is carried; CR/LF never is.
        assert!(Sasl::new(Mechanism::Login, &pw(None, "u", "p\0")).is_ok());
        for m in [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5] {
            assert_eq!(Sasl::new(m, &pw(None, "u\r\nQUIT", "p")), Err(bad));
            assert_eq!(Sasl::new(m, &pw(None, "u", "p\n")), Err(bad));
            assert_eq!(Sasl::new(m, &pw(None, "u", "\rp")), Err(bad));
        }
        for m in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
            assert_eq!(Sasl::new(m, &tok("u\x01", "t", None)), Err(bad));
            assert_eq!(Sasl::new(m, &tok("u", "t\x01auth=x", None)), Err(bad));
            assert_eq!(Sasl::new(m, &tok("u", "t", Some("h\x01"))), Err(bad));
            assert_eq!(Sasl::new(m, &tok("u", "t\r\n", None)), Err(bad));
            assert_eq!(Sasl::new(m, &tok("u", "t", Some("h\n"))), Err(bad));
        }
        let mut sasl = Sasl::new(Mechanism::Plain, &TIM).unwrap();
        let mut out = std::vec::Vec::new();
        assert_eq!(sasl.start(&pw(None, "u", "p\0"), &mut out), Err(bad));
        assert!(out.is_empty());
    }

    #[test]
    #[cfg(all(feature = "cram-md5", feature = "oauth"))]
    fn small_buffer_is_left_untouched() {
        let cases: [(Mechanism, Credentials<'_>); 5] = [
            (Mechanism::Plain, TIM),
            (Mechanism::Login, TIM),
            (Mechanism::CramMd5, TIM),
            (Mechanism::XOAuth2, GOOGLE),
            (Mechanism::OAuthBearer, RFC7628),
        ];
        for (mech, creds) in cases {
            let (_, full) = start(mech, &creds);
            let mut storage = [0u8; 512];
            let mut out = FixedBuf::new(&mut storage[..full.len() + 1]);
            out.extend_from_slice(b"xx").unwrap();
            let mut sasl = Sasl::new(mech, &creds).unwrap();
            match sasl.start(&creds, &mut out) {
                Err(SaslError::BufferFull(BufferFull { needed: 1 })) => {}
                other => panic!("{mech:?}: {other:?}"),
            }
            assert_eq!(out.as_bytes(), b"xx");
            out.clear();
            sasl.start(&creds, &mut out).unwrap();
            assert_eq!(out.as_bytes(), &full[..]);
        }
    }

    #[test]
    #[cfg(all(feature = "cram-md5", feature = "oauth"))]
    fn small_buffer_on_respond_keeps_the_step() {
        let (mut sasl, _) = start(Mechanism::Login, &TIM);
        let mut storage = [0u8; 5];
        let mut out = FixedBuf::new(&mut storage);
        assert!(matches!(
            sasl.respond(&TIM, b"VXNlcm5hbWU6", &mut out),
            Err(SaslError::BufferFull(_))
        ));
        assert!(out.is_empty());
        // The retry still answers the first prompt with the user name.
        assert_eq!(
            respond(&mut sasl, &TIM, b"VXNlcm5hbWU6"),
            (Response::Answered, b"dGlt\r\n".to_vec())
        );

        let (mut sasl, _) = start(Mechanism::CramMd5, &TIM);
        let mut storage = [0u8; 20];
        let mut out = FixedBuf::new(&mut storage);
        assert!(sasl.respond(&TIM, CRAM_CHALLENGE, &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(
            respond(&mut sasl, &TIM, CRAM_CHALLENGE).0,
            Response::Answered
        );

        let mut storage = [0u8; 2];
        let mut out = FixedBuf::new(&mut storage);
        let (mut sasl, _) = start(Mechanism::Plain, &TIM);
        assert!(sasl.respond(&TIM, b"", &mut out).is_err());
        assert!(out.is_empty());
        let (mut sasl, _) = start(Mechanism::OAuthBearer, &RFC7628);
        assert!(sasl.respond(&RFC7628, b"", &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn restart_resets_the_step() {
        let (mut sasl, _) = start(Mechanism::Login, &TIM);
        respond(&mut sasl, &TIM, b"");
        let mut out = std::vec::Vec::new();
        sasl.start(&TIM, &mut out).unwrap();
        assert_eq!(respond(&mut sasl, &TIM, b"").1, b"dGlt\r\n");
    }

    #[test]
    fn many_challenges_never_overflow() {
        let (mut sasl, _) = start(Mechanism::Login, &TIM);
        for _ in 0..600 {
            let _ = respond(&mut sasl, &TIM, b"x");
        }
        assert_eq!(respond(&mut sasl, &TIM, b"x").0, Response::Cancelled);
    }

    #[test]
    fn decode_challenge_shows_the_error_document() {
        let json = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        let text = b64(json);
        let mut buf = [0u8; MAX_CHALLENGE];
        assert_eq!(decode_challenge(text.as_bytes(), &mut buf), Some(&json[..]));
        assert_eq!(decode_challenge(b"%%%", &mut buf), None);
        let mut tiny = [0u8; 4];
        assert_eq!(decode_challenge(text.as_bytes(), &mut tiny), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let s = std::format!("{TIM:?} {GOOGLE:?}");
        assert!(!s.contains("tanstaaf"));
        assert!(!s.contains("ya29"));
    }

    #[test]
    fn vec_output() {
        let mut sasl = Sasl::new(Mechanism::Plain, &TIM).unwrap();
        let mut out = std::vec::Vec::new();
        sasl.start(&TIM, &mut out).unwrap();
        assert_eq!(out, b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    }

    #[test]
    fn mechanisms_left_out_of_the_build_are_refused() {
        let cases = [
            (Mechanism::CramMd5, cfg!(feature = "cram-md5"), TIM),
            (Mechanism::XOAuth2, cfg!(feature = "oauth"), GOOGLE),
            (Mechanism::OAuthBearer, cfg!(feature = "oauth"), GOOGLE),
        ];
        for (m, built, creds) in cases {
            assert_eq!(m.supported(), built, "{m:?}");
            let started = Sasl::new(m, &creds);
            if built {
                assert!(started.is_ok(), "{m:?}");
            } else {
                assert_eq!(started, Err(SaslError::Unsupported(m)));
            }
        }
        assert!(Mechanism::Plain.supported() && Mechanism::Login.supported());
        assert_eq!(Mechanism::ScramSha256.supported(), cfg!(feature = "scram"));
    }
}
