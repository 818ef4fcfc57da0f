//! The authentication policy: which SASL mechanism to use with which credentials over which
//! connection (see [`choose_mechanism`]), what SCRAM needs besides the password (SASLprep, a
//! fresh nonce, channel binding), and how a credential-bearing line appears in a transcript.

use postline_proto::ehlo::{Capabilities, Extension};
use postline_proto::sasl::{Binding, BindingKind, Credentials, Mechanism};
use zeroize::Zeroizing;

use crate::binding::ChannelBindingData;
use crate::config::Auth;
use crate::error::{ConfigError, Error};

/// Keeps `AUTH MECHANISM` and hides everything that could carry a credential.
pub(crate) fn redact(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some(a), Some(m), rest) if a.eq_ignore_ascii_case("AUTH") => {
            if rest.is_some() {
                format!("{a} {m} ***")
            } else {
                format!("{a} {m}")
            }
        }
        _ => "***".to_string(),
    }
}

/// What an AUTH exchange needs besides the configured credentials, fixed when it starts and
/// used again for each challenge: the mechanism, SCRAM's client nonce and channel binding.
#[derive(Clone)]
pub(crate) struct Exchange {
    pub(crate) mechanism: Mechanism,
    host: String,
    port: u16,
    nonce: String,
    binding: Option<ChannelBindingData>,
    plus_offered: bool,
}

impl Exchange {
    /// A new exchange; SCRAM gets a fresh nonce.
    pub(crate) fn new(
        mechanism: Mechanism,
        host: &str,
        port: u16,
        binding: Option<ChannelBindingData>,
        caps: &Capabilities,
    ) -> Self {
        Exchange {
            mechanism,
            host: host.to_string(),
            port,
            nonce: if is_scram(mechanism) {
                nonce()
            } else {
                String::new()
            },
            binding,
            plus_offered: caps.auth().contains(Mechanism::ScramSha256Plus),
        }
    }

    /// Calls `f` with the credentials in the form the core takes. SCRAM's user name and
    /// password go through SASLprep first; the prepared copies are wiped afterwards.
    pub(crate) fn with_credentials<R>(
        &self,
        auth: &Auth,
        f: impl FnOnce(&Credentials<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        match auth {
            Auth::Password { user, password } if is_scram(self.mechanism) => {
                let (user, password) = prepare(user, password)?;
                let binding = match (self.mechanism, &self.binding) {
                    (Mechanism::ScramSha256Plus, Some(b)) => Binding::Bound(b.as_binding()),
                    (Mechanism::ScramSha256Plus, None) => {
                        return Err(Error::Config(ConfigError::NoChannelBinding))
                    }
                    // RFC 5802 6: could bind, but the server offered no -PLUS: say so, and a
                    // server that does support binding will notice the downgrade.
                    (_, Some(_)) if !self.plus_offered => Binding::NotOffered,
                    _ => Binding::Unsupported,
                };
                f(&Credentials::Scram {
                    authzid: None,
                    username: &user,
                    password: &password,
                    nonce: &self.nonce,
                    binding,
                })
            }
            Auth::Password { user, password } => f(&Credentials::Password {
                authzid: None,
                username: user,
                password,
            }),
            Auth::Token { user, token } => f(&Credentials::Token {
                username: user,
                token,
                host: Some(&self.host),
                port: Some(self.port),
            }),
            Auth::External { authzid } => f(&Credentials::External {
                authzid: authzid.as_deref(),
            }),
        }
    }
}

pub(crate) fn is_scram(m: Mechanism) -> bool {
    matches!(m, Mechanism::ScramSha256 | Mechanism::ScramSha256Plus)
}

/// 24 bytes from the operating system's random source, in base64 (printable, no `,`).
fn nonce() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    // The OS source failing is not something to carry on from with a predictable nonce.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// SASLprep (RFC 4013) of a SCRAM user name and password, as RFC 5802 5.1 asks.
fn prepare(user: &str, password: &str) -> Result<(Zeroizing<String>, Zeroizing<String>), Error> {
    let user = stringprep::saslprep(user)
        .map_err(|_| Error::Config(ConfigError::SaslPrep("user name")))?
        .into_owned();
    let password = stringprep::saslprep(password)
        .map_err(|_| Error::Config(ConfigError::SaslPrep("password")))?
        .into_owned();
    Ok((Zeroizing::new(user), Zeroizing::new(password)))
}

/// The strongest mechanism both sides allow.
///
/// - Nothing at all goes over a connection without TLS unless plaintext auth is allowed:
///   not only PLAIN and LOGIN, whose secrets travel as base64, but CRAM-MD5 and SCRAM too,
///   whose responses allow an offline dictionary attack by anyone who stripped STARTTLS.
/// - Passwords under TLS: SCRAM-SHA-256-PLUS (only with tls-exporter channel binding, TLS
///   1.3; forced, tls-server-end-point under TLS 1.2 too), then SCRAM-SHA-256 (the password
///   never crosses the wire and the server proves it knows it), then PLAIN, then LOGIN;
///   CRAM-MD5 (MD5, and the server stores the password in clear) only when no other password
///   mechanism is offered. In clear text (allowed): SCRAM, CRAM-MD5, PLAIN, LOGIN, so a
///   passive listener learns the least. SCRAM is skipped when SASLprep refuses the user name
///   or password.
/// - Tokens: OAUTHBEARER, then XOAUTH2.
/// - EXTERNAL: only when configured ([`Auth::External`]) and only under TLS.
/// - A forced mechanism (`Config::auth_mechanism`) is used as is, after the clear-text rule.
/// - A server that announces no AUTH at all gets PLAIN (or XOAUTH2), under the same rule.
pub(crate) fn choose_mechanism(
    auth: &Auth,
    caps: &Capabilities,
    tls: bool,
    allow_plaintext: bool,
    forced: Option<Mechanism>,
    binding: Option<BindingKind>,
) -> Result<Mechanism, Error> {
    let offered = caps.auth();
    let offered_names = || {
        Mechanism::ALL
            .iter()
            .filter(|m| offered.contains(**m))
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Auth::External { .. } = auth {
        if !tls {
            return Err(Error::Config(ConfigError::ExternalNeedsTls));
        }
        if forced.is_some_and(|m| m != Mechanism::External)
            || !offered.contains(Mechanism::External)
        {
            return Err(Error::NoAuthMechanism {
                offered: offered_names(),
                wanted: None,
            });
        }
        return Ok(Mechanism::External);
    }
    if !tls && !allow_plaintext {
        return Err(Error::PlaintextAuthRefused);
    }
    let scram_ok = match auth {
        Auth::Password { user, password } => prepare(user, password).map(|_| ()),
        _ => Ok(()),
    };
    if let Some(m) = forced {
        // Nothing secret goes out with a mechanism the server did not offer (a server that
        // announces no AUTH at all is tried, as below).
        if caps.has(Extension::Auth) && !offered.contains(m) {
            return Err(Error::NoAuthMechanism {
                offered: offered_names(),
                wanted: Some(m),
            });
        }
        if is_scram(m) {
            scram_ok?;
            if m == Mechanism::ScramSha256Plus && binding.is_none() {
                return Err(Error::Config(ConfigError::NoChannelBinding));
            }
        }
        return Ok(m);
    }
    if !caps.has(Extension::Auth) {
        // The embedded clients' habit, kept: try the simplest mechanism and report clearly.
        return Ok(match auth {
            Auth::Password { .. } => Mechanism::Plain,
            _ => Mechanism::XOAuth2,
        });
    }
    let order = Mechanism::preference(!matches!(auth, Auth::Password { .. }), tls);
    // Unasked, -PLUS binds only with tls-exporter (TLS 1.3, RFC 9266): servers bind TLS 1.2
    // in different ways (tls-unique, tls-server-end-point) and SMTP does not say which, so a
    // guess could fail a login that plain SCRAM passes.
    let auto_plus = binding == Some(BindingKind::TlsExporter);
    let mut refused = None;
    for &m in order {
        if !offered.contains(m) || (m == Mechanism::ScramSha256Plus && !auto_plus) {
            continue;
        }
        if is_scram(m) {
            if let Err(e) = &scram_ok {
                refused.get_or_insert(e.clone());
                continue;
            }
        }
        return Ok(m);
    }
    match refused {
        Some(e) => Err(e),
        None => Err(Error::NoAuthMechanism {
            offered: offered_names(),
            wanted: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postline_proto::reply::Reply;

    fn caps(ehlo: &[u8]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::parse_complete(ehlo).unwrap())
    }

    fn pw(password: &str) -> Auth {
        Auth::Password {
            user: "u".into(),
            password: password.into(),
        }
    }

    /// Passwords: one row per (offered, tls, allow plaintext, binding, forced) -> outcome.
    #[test]
    fn mechanism_choice_for_passwords() {
        use Mechanism::*;
        const ALL: &[u8] = b"250-x\r\n250 AUTH LOGIN PLAIN CRAM-MD5 SCRAM-SHA-256 SCRAM-SHA-256-PLUS XOAUTH2 OAUTHBEARER EXTERNAL\r\n";
        const SCRAM: &[u8] = b"250-x\r\n250 AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n";
        const PLUS_ONLY: &[u8] = b"250-x\r\n250 AUTH SCRAM-SHA-256-PLUS\r\n";
        const PL: &[u8] = b"250-x\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n";
        const LOGIN_CRAM: &[u8] = b"250-x\r\n250 AUTH CRAM-MD5 LOGIN\r\n";
        const CRAM: &[u8] = b"250-x\r\n250 AUTH CRAM-MD5\r\n";
        const NONE: &[u8] = b"250-x\r\n250 8BITMIME\r\n";
        const ODD: &[u8] = b"250-x\r\n250 AUTH GSSAPI NTLM\r\n";
        #[derive(Debug, PartialEq)]
        enum Want {
            Use(Mechanism),
            Plaintext,
            NoMech,
            NoBinding,
            SaslPrep,
        }
        use Want::*;
        /// EHLO, TLS, plaintext allowed, channel binding, forced, expected.
        type Row = (
            &'static [u8],
            bool,
            bool,
            Option<BindingKind>,
            Option<Mechanism>,
            Want,
        );
        const EX: Option<BindingKind> = Some(BindingKind::TlsExporter);
        const EP: Option<BindingKind> = Some(BindingKind::TlsServerEndPoint);
        const NB: Option<BindingKind> = None;
        let table: &[Row] = &[
            // Under TLS with channel binding: PLUS first.
            (ALL, true, false, EX, None, Use(ScramSha256Plus)),
            // TLS 1.2 (tls-server-end-point): plain SCRAM unless -PLUS is forced.
            (ALL, true, false, EP, None, Use(ScramSha256)),
            (
                ALL,
                true,
                false,
                EP,
                Some(ScramSha256Plus),
                Use(ScramSha256Plus),
            ),
            (PLUS_ONLY, true, false, EP, None, NoMech),
            // Under TLS without binding data (a custom driver): plain SCRAM.
            (ALL, true, false, NB, None, Use(ScramSha256)),
            (SCRAM, true, false, EX, None, Use(ScramSha256)),
            (PL, true, false, EX, None, Use(Plain)),
            (LOGIN_CRAM, true, false, EX, None, Use(Login)),
            // CRAM-MD5 only when it is the only password mechanism.
            (CRAM, true, false, EX, None, Use(CramMd5)),
            // No TLS, plaintext not allowed: nothing, not even CRAM-MD5 or SCRAM.
            (ALL, false, false, NB, None, Plaintext),
            (CRAM, false, false, NB, None, Plaintext),
            (SCRAM, false, false, NB, None, Plaintext),
            (NONE, false, false, NB, None, Plaintext),
            (ALL, false, false, NB, Some(CramMd5), Plaintext),
            (ALL, false, false, NB, Some(ScramSha256), Plaintext),
            // Plaintext allowed: SCRAM, then CRAM-MD5 before PLAIN; PLUS impossible.
            (ALL, false, true, NB, None, Use(ScramSha256)),
            (PL, false, true, NB, None, Use(CramMd5)),
            (LOGIN_CRAM, false, true, NB, None, Use(CramMd5)),
            (PLUS_ONLY, false, true, NB, None, NoMech),
            (PLUS_ONLY, true, false, NB, None, NoMech),
            (PLUS_ONLY, true, false, EX, None, Use(ScramSha256Plus)),
            // No AUTH announced: PLAIN, under the clear-text rule.
            (NONE, true, false, EX, None, Use(Plain)),
            (ODD, true, false, EX, None, NoMech),
            // Forced.
            (ALL, true, false, EX, Some(Login), Use(Login)),
            (ALL, true, false, EX, Some(CramMd5), Use(CramMd5)),
            (ALL, true, false, EX, Some(ScramSha256), Use(ScramSha256)),
            (ALL, false, true, NB, Some(ScramSha256Plus), NoBinding),
            (ALL, false, false, NB, Some(Login), Plaintext),
            // Forced but not offered: nothing is sent.
            (PLUS_ONLY, true, false, EX, Some(Plain), NoMech),
            (SCRAM, true, false, EX, Some(CramMd5), NoMech),
        ];
        for (i, (ehlo, tls, allow, binding, forced, want)) in table.iter().enumerate() {
            let got = match choose_mechanism(&pw("p"), &caps(ehlo), *tls, *allow, *forced, *binding)
            {
                Ok(m) => Use(m),
                Err(Error::PlaintextAuthRefused) => Plaintext,
                Err(Error::NoAuthMechanism { .. }) => NoMech,
                Err(Error::Config(ConfigError::NoChannelBinding)) => NoBinding,
                Err(Error::Config(ConfigError::SaslPrep(_))) => SaslPrep,
                Err(e) => panic!("row {i}: {e}"),
            };
            assert_eq!(&got, want, "row {i}");
        }

        // A password SASLprep refuses (a control character) skips SCRAM, or fails when
        // SCRAM is all there is or is forced.
        let bad = pw("p\u{7}w");
        assert_eq!(
            choose_mechanism(&bad, &caps(ALL), true, false, None, EX).unwrap(),
            Plain
        );
        for (ehlo, forced) in [(PLUS_ONLY, None), (ALL, Some(ScramSha256))] {
            assert!(matches!(
                choose_mechanism(&bad, &caps(ehlo), true, false, forced, EX),
                Err(Error::Config(ConfigError::SaslPrep("password")))
            ));
        }
    }

    #[test]
    fn mechanism_choice_for_tokens_and_external() {
        let tok = Auth::Token {
            user: "u".into(),
            token: "t".into(),
        };
        let all = caps(b"250-x\r\n250 AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER EXTERNAL\r\n");
        let x = caps(b"250-x\r\n250 AUTH PLAIN XOAUTH2\r\n");
        let none = caps(b"250-x\r\n250 8BITMIME\r\n");
        let c = |a: &Auth, caps: &Capabilities, tls: bool, allow| {
            let binding = tls.then_some(BindingKind::TlsExporter);
            choose_mechanism(a, caps, tls, allow, None, binding)
        };
        assert_eq!(c(&tok, &all, true, false).unwrap(), Mechanism::OAuthBearer);
        assert_eq!(c(&tok, &x, true, false).unwrap(), Mechanism::XOAuth2);
        assert_eq!(c(&tok, &x, false, true).unwrap(), Mechanism::XOAuth2);
        assert_eq!(c(&tok, &none, true, false).unwrap(), Mechanism::XOAuth2);
        assert!(matches!(
            c(&tok, &all, false, false),
            Err(Error::PlaintextAuthRefused)
        ));

        let ext = Auth::External { authzid: None };
        assert_eq!(c(&ext, &all, true, false).unwrap(), Mechanism::External);
        // Never without TLS, even when plaintext auth is allowed.
        assert!(matches!(
            c(&ext, &all, false, true),
            Err(Error::Config(ConfigError::ExternalNeedsTls))
        ));
        assert!(matches!(
            c(&ext, &x, true, false),
            Err(Error::NoAuthMechanism { .. })
        ));
        assert!(matches!(
            c(&ext, &none, true, false),
            Err(Error::NoAuthMechanism { .. })
        ));
        // Password credentials never pick EXTERNAL.
        assert_eq!(c(&pw("p"), &all, true, false).unwrap(), Mechanism::Plain);
    }

    #[test]
    fn scram_credentials() {
        let caps_plain = caps(b"250-x\r\n250 AUTH SCRAM-SHA-256\r\n");
        let caps_plus = caps(b"250-x\r\n250 AUTH SCRAM-SHA-256 SCRAM-SHA-256-PLUS\r\n");
        let cb = ChannelBindingData {
            kind: postline_proto::sasl::BindingKind::TlsExporter,
            data: vec![7; 32],
        };
        use postline_proto::sasl::Binding as B;
        let flag = |m, binding: Option<&ChannelBindingData>, caps: &Capabilities| {
            let ex = Exchange::new(m, "h", 25, binding.cloned(), caps);
            assert_eq!(ex.nonce.len(), 32);
            ex.with_credentials(&pw("I\u{2168}"), |c| match c {
                Credentials::Scram {
                    binding, password, ..
                } => {
                    // SASLprep: ROMAN NUMERAL NINE maps to "IX" (NFKC).
                    assert_eq!(*password, "IIX");
                    Ok(match binding {
                        B::Unsupported => "n",
                        B::NotOffered => "y",
                        B::Bound(_) => "p",
                    })
                }
                _ => panic!(),
            })
            .unwrap()
        };
        assert_eq!(flag(Mechanism::ScramSha256, None, &caps_plain), "n");
        // Could bind, server offers no -PLUS: `y`, so a downgrade is caught.
        assert_eq!(flag(Mechanism::ScramSha256, Some(&cb), &caps_plain), "y");
        // Server offers -PLUS but SCRAM-SHA-256 was forced: `n`.
        assert_eq!(flag(Mechanism::ScramSha256, Some(&cb), &caps_plus), "n");
        assert_eq!(flag(Mechanism::ScramSha256Plus, Some(&cb), &caps_plus), "p");
        // Two exchanges never share a nonce.
        let a = Exchange::new(Mechanism::ScramSha256, "h", 25, None, &caps_plain);
        let b = Exchange::new(Mechanism::ScramSha256, "h", 25, None, &caps_plain);
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("AUTH PLAIN AHRpbQB0YW5z"), "AUTH PLAIN ***");
        assert_eq!(redact("AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(redact("dGlt"), "***");
    }
}
