//! The authentication policy: which SASL mechanism to use with which credentials over which
//! connection, and how a credential-bearing line appears in a transcript.

use postline_proto::ehlo::{Capabilities, Extension};
use postline_proto::sasl::{Credentials, Mechanism};

use crate::config::Auth;
use crate::error::Error;

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

pub(crate) fn proto_credentials<'a>(auth: &'a Auth, host: &'a str, port: u16) -> Credentials<'a> {
    match auth {
        Auth::Password { user, password } => Credentials::Password {
            authzid: None,
            username: user,
            password,
        },
        Auth::Token { user, token } => Credentials::Token {
            username: user,
            token,
            host: Some(host),
            port: Some(port),
        },
    }
}

/// The strongest mechanism both sides allow. Passwords: CRAM-MD5, then PLAIN, then LOGIN, the
/// last two only under TLS unless plaintext auth is allowed; tokens: OAUTHBEARER, XOAUTH2,
/// likewise only under TLS. A server that announces no AUTH at all gets PLAIN (or XOAUTH2).
pub(crate) fn choose_mechanism(
    auth: &Auth,
    caps: &Capabilities,
    tls: bool,
    allow_plaintext: bool,
    forced: Option<Mechanism>,
) -> Result<Mechanism, Error> {
    let clear_ok = tls || allow_plaintext;
    let exposes_secret = |m: Mechanism| m != Mechanism::CramMd5;
    if let Some(m) = forced {
        if exposes_secret(m) && !clear_ok {
            return Err(Error::PlaintextAuthRefused);
        }
        return Ok(m);
    }
    let offered = caps.auth();
    let order: &[Mechanism] = match auth {
        Auth::Password { .. } => &[Mechanism::CramMd5, Mechanism::Plain, Mechanism::Login],
        Auth::Token { .. } => &[Mechanism::OAuthBearer, Mechanism::XOAuth2],
    };
    if !caps.has(Extension::Auth) {
        // The embedded clients' habit, kept: try the simplest mechanism and report clearly.
        if !clear_ok {
            return Err(Error::PlaintextAuthRefused);
        }
        return Ok(match auth {
            Auth::Password { .. } => Mechanism::Plain,
            Auth::Token { .. } => Mechanism::XOAuth2,
        });
    }
    if let Some(m) = order
        .iter()
        .copied()
        .find(|&m| offered.contains(m) && (clear_ok || !exposes_secret(m)))
    {
        return Ok(m);
    }
    if order.iter().any(|&m| offered.contains(m)) {
        return Err(Error::PlaintextAuthRefused);
    }
    let names: Vec<&str> = Mechanism::ALL
        .iter()
        .filter(|m| offered.contains(**m))
        .map(|m| m.name())
        .collect();
    Err(Error::NoAuthMechanism {
        offered: names.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postline_proto::reply::Reply;

    fn caps(ehlo: &[u8]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::parse_complete(ehlo).unwrap())
    }

    #[test]
    fn mechanism_choice() {
        let pw = Auth::Password {
            user: "u".into(),
            password: "p".into(),
        };
        let tok = Auth::Token {
            user: "u".into(),
            token: "t".into(),
        };
        let all = caps(b"250-x\r\n250 AUTH LOGIN PLAIN CRAM-MD5 XOAUTH2 OAUTHBEARER\r\n");
        let pl = caps(b"250-x\r\n250 AUTH PLAIN LOGIN\r\n");
        let none = caps(b"250-x\r\n250 8BITMIME\r\n");
        let odd = caps(b"250-x\r\n250 AUTH GSSAPI NTLM\r\n");
        assert_eq!(
            choose_mechanism(&pw, &all, true, false, None).unwrap(),
            Mechanism::CramMd5
        );
        assert_eq!(
            choose_mechanism(&pw, &pl, true, false, None).unwrap(),
            Mechanism::Plain
        );
        assert!(matches!(
            choose_mechanism(&pw, &pl, false, false, None),
            Err(Error::PlaintextAuthRefused)
        ));
        assert_eq!(
            choose_mechanism(&pw, &pl, false, true, None).unwrap(),
            Mechanism::Plain
        );
        assert_eq!(
            choose_mechanism(&pw, &all, false, false, None).unwrap(),
            Mechanism::CramMd5
        );
        assert_eq!(
            choose_mechanism(&tok, &all, true, false, None).unwrap(),
            Mechanism::OAuthBearer
        );
        assert_eq!(
            choose_mechanism(&pw, &none, true, false, None).unwrap(),
            Mechanism::Plain
        );
        assert!(matches!(
            choose_mechanism(&pw, &none, false, false, None),
            Err(Error::PlaintextAuthRefused)
        ));
        assert!(matches!(
            choose_mechanism(&pw, &odd, true, false, None),
            Err(Error::NoAuthMechanism { .. })
        ));
        assert_eq!(
            choose_mechanism(&pw, &all, true, false, Some(Mechanism::Login)).unwrap(),
            Mechanism::Login
        );
        assert!(matches!(
            choose_mechanism(&pw, &all, false, false, Some(Mechanism::Login)),
            Err(Error::PlaintextAuthRefused)
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("AUTH PLAIN AHRpbQB0YW5z"), "AUTH PLAIN ***");
        assert_eq!(redact("AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(redact("dGlt"), "***");
    }
}
