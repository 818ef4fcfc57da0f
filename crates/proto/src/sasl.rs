//! SASL mechanisms for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER.
//!
//! STUB: the public API below is fixed; the implementation is being written.

use crate::buf::{Buffer, BufferFull};

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
}

impl Mechanism {
    /// Every mechanism, strongest first for passwords then tokens.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
    ];
    /// The name as sent after `AUTH`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
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
}

/// One SASL exchange: which mechanism, and how far it got. A few bytes; no secrets held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sasl {
    mechanism: Mechanism,
    step: u8,
}

impl Sasl {
    /// Starts an exchange, checking that the credentials fit the mechanism.
    pub fn new(mechanism: Mechanism, creds: &Credentials<'_>) -> Result<Sasl, SaslError> {
        let _ = creds;
        Ok(Sasl { mechanism, step: 0 })
    }
    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
    /// Writes the `AUTH` command line, with an initial response for the mechanisms that
    /// have one (PLAIN, XOAUTH2, OAUTHBEARER), CRLF included.
    pub fn start(&mut self, creds: &Credentials<'_>, out: &mut impl Buffer) -> Result<(), SaslError> {
        let _ = (creds, out);
        Ok(())
    }
    /// Answers a 334 challenge; `challenge` is the base64 text after `334 `.
    pub fn respond(
        &mut self,
        creds: &Credentials<'_>,
        challenge: &[u8],
        out: &mut impl Buffer,
    ) -> Result<Response, SaslError> {
        let _ = (creds, challenge, out);
        Ok(Response::Cancelled)
    }
}
