//! A relay configuration from a URL, as many programs take their mail settings:
//! `smtps://user:pass@mail.example.com`, `smtp+starttls://mail.example.com:587`,
//! `smtp://mail.example.com:25?helo=client.example.org`.

use std::str::FromStr;

use crate::config::{Config, Protocol, Tls};
use crate::error::{ConfigError, Error};
use postline_proto::Mechanism;

impl Config {
    /// A relay from a URL:
    ///
    /// | scheme | TLS | default port |
    /// | --- | --- | --- |
    /// | `smtps://` | implicit TLS (RFC 8314) | 465 |
    /// | `smtp+starttls://` | STARTTLS, required | 587 |
    /// | `smtp://` | STARTTLS when offered | 25 |
    /// | `lmtp://` | LMTP ([`crate::Protocol::Lmtp`]), STARTTLS when offered | 24 |
    /// | `lmtp+starttls://` | LMTP, STARTTLS required | 24 |
    ///
    /// `user[:password]@` (percent-encoded) gives credentials; the query may set `helo=NAME`,
    /// `auth=MECHANISM` (`plain`, `scram-sha-256`, ...), `tls_name=NAME`,
    /// `proxy=socks5://...` (percent-encoded; [`crate::Proxy::from_url`]),
    /// `source_address=IP` and
    /// `allow_plaintext_auth=true` (credentials over a connection without TLS, for a local
    /// test server; refused otherwise). Anything else is refused rather than ignored.
    ///
    /// A Unix socket is an empty host followed by its absolute path (percent-decoded):
    /// `smtp:///var/spool/postfix/public/smtp.sock` ([`Config::unix_socket`]). `smtp://` then
    /// means no TLS (a local socket has no certificate to check); `smtps://` and
    /// `smtp+starttls://` still ask for TLS, with `tls_name=` naming the certificate.
    ///
    /// ```
    /// use postline::{Config, Tls};
    /// let c = Config::from_url("smtps://me%40example.com:secret@mail.example.com")?;
    /// assert_eq!((c.host(), c.effective_port(), c.tls_mode()), ("mail.example.com", 465, Tls::Implicit));
    /// let c: Config = "smtp+starttls://[2001:db8::1]:2587?helo=client.example.org".parse()?;
    /// assert_eq!((c.host(), c.effective_port()), ("2001:db8::1", 2587));
    /// let c = Config::from_url("smtp:///run/mta/smtp.sock")?;
    /// assert_eq!((c.unix_socket(), c.tls_mode()), (Some(std::path::Path::new("/run/mta/smtp.sock")), Tls::None));
    /// // Dovecot's LMTP socket, and an LMTP server on its default port.
    /// let c = Config::from_url("lmtp:///run/dovecot/lmtp")?;
    /// assert_eq!((c.protocol_in_use(), c.tls_mode()), (postline::Protocol::Lmtp, Tls::None));
    /// assert_eq!(Config::from_url("lmtp://mailstore.internal")?.effective_port(), 24);
    /// # Ok::<(), postline::Error>(())
    /// ```
    pub fn from_url(text: &str) -> Result<Config, Error> {
        let bad =
            |why: &str| Error::Config(ConfigError::Url(format!("{why} (in {})", redacted(text))));
        if !text.contains("://") {
            return Err(bad(
                "not a URL: expected smtp://, smtps://, smtp+starttls://, lmtp:// or lmtp+starttls:// before the host (for HOST:PORT alone, use Config::relay)",
            ));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let (tls, protocol) = match url.scheme() {
            "smtps" => (Tls::Implicit, Protocol::Smtp),
            "smtp+starttls" => (Tls::StartTls, Protocol::Smtp),
            "smtp" => (Tls::Opportunistic, Protocol::Smtp),
            "lmtp+starttls" => (Tls::StartTls, Protocol::Lmtp),
            "lmtp" => (Tls::Opportunistic, Protocol::Lmtp),
            other => {
                return Err(bad(&format!(
                    "scheme {other:?} is not one of smtp, smtps, smtp+starttls, lmtp, lmtp+starttls"
                )))
            }
        };
        let (host, credentials) = match unix_socket_path(&url, &bad)? {
            Some(path) => (path, credentials(&url, &bad)?),
            None => {
                let found = host_and_credentials(&url, &bad)?;
                if !matches!(url.path(), "" | "/") {
                    return Err(bad("a path means nothing here (a Unix socket goes after an empty host: smtp:///path/to/socket)"));
                }
                found
            }
        };
        let tls = match tls {
            Tls::Opportunistic if crate::config::is_unix_path(&host) => Tls::None,
            t => t,
        };
        let mut config = Config::relay(host).tls(tls).protocol(protocol);
        if let Some(port) = url.port() {
            config = config.port(port);
        }
        if let Some((user, password)) = credentials {
            config = config.credentials(user, password);
        }
        for (key, value) in url.query_pairs() {
            config = match key.as_ref() {
                "helo" => config.hello_name(value.into_owned()),
                "proxy" => config.proxy(crate::proxy::Proxy::from_url(&value)?),
                "source_address" => config.source_address(
                    value
                        .parse()
                        .map_err(|_| bad("source_address takes an IP address"))?,
                ),
                "tls_name" => config.tls_server_name(value.into_owned()),
                "auth" => {
                    let name = value.to_ascii_uppercase();
                    let m = Mechanism::from_name(name.as_bytes())
                        .ok_or_else(|| bad(&format!("unknown mechanism {value:?}")))?;
                    config.auth_mechanism(m)
                }
                "allow_plaintext_auth" => match value.as_ref() {
                    "true" | "yes" | "1" => config.allow_plaintext_auth(true),
                    "false" | "no" | "0" => config.allow_plaintext_auth(false),
                    _ => return Err(bad("allow_plaintext_auth takes true or false")),
                },
                "tls" | "starttls" | "ssl" => {
                    return Err(bad(&format!(
                        "unknown parameter {key:?}: the scheme chooses TLS (smtps:// implicit, smtp+starttls:// required STARTTLS, smtp:// when offered)"
                    )))
                }
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            };
        }
        Ok(config)
    }
}

impl FromStr for Config {
    type Err = Error;

    /// [`Config::from_url`].
    fn from_str(s: &str) -> Result<Config, Error> {
        Config::from_url(s)
    }
}

/// The host of a parsed `smtp://` or `socks5://` URL (an IPv6 address without brackets) and
/// its percent-decoded user and password (empty when only a user is given); `bad` words
/// an error.
pub(crate) fn host_and_credentials(
    url: &url::Url,
    bad: &dyn Fn(&str) -> Error,
) -> Result<(String, Option<(String, String)>), Error> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(bad("no host")),
    };
    Ok((host, credentials(url, bad)?))
}

/// The socket path of `smtp:///path` (an empty host, then an absolute path), percent-decoded.
fn unix_socket_path(url: &url::Url, bad: &dyn Fn(&str) -> Error) -> Result<Option<String>, Error> {
    if !url.host_str().is_none_or(str::is_empty) || matches!(url.path(), "" | "/") {
        return Ok(None);
    }
    let path = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| bad("the socket path is not UTF-8 once decoded"))?;
    if !crate::config::is_unix_path(&path) {
        return Err(bad("a Unix socket path must be absolute"));
    }
    Ok(Some(path.into_owned()))
}

/// The URL's percent-decoded user and password (empty when only a user is given).
fn credentials(
    url: &url::Url,
    bad: &dyn Fn(&str) -> Error,
) -> Result<Option<(String, String)>, Error> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad("user or password is not UTF-8 once decoded"))
    };
    let credentials = if !url.username().is_empty() {
        Some((
            decode(url.username())?,
            decode(url.password().unwrap_or(""))?,
        ))
    } else if url.password().is_some() {
        return Err(bad("a password without a user"));
    } else {
        None
    };
    Ok(credentials)
}

/// The URL with any password replaced, for error messages.
pub(crate) fn redacted(text: &str) -> String {
    // Text, not a parse: a URL without its scheme (`user:pass@host`) parses with `user` as
    // the scheme, and the password must not show then either. Everything between the
    // scheme and the last `@` goes; a query that may carry another URL's credentials (a
    // `proxy=`) is not shown.
    let (main, query) = match text.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (text, None),
    };
    let start = main.find("://").map_or(0, |s| s + 3);
    let main = match main.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &main[..start], &main[at..]),
        _ => main.to_string(),
    };
    match query {
        Some(q)
            if q.contains('@') || q.contains("%40") || q.to_ascii_lowercase().contains("proxy") =>
        {
            format!("{main}?...")
        }
        Some(q) => format!("{main}?{q}"),
        None => main,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_ports_and_credentials() {
        let c = Config::from_url("smtps://mail.example.com").unwrap();
        assert_eq!((c.effective_port(), c.tls_mode()), (465, Tls::Implicit));
        let c = Config::from_url("smtp+starttls://mail.example.com").unwrap();
        assert_eq!((c.effective_port(), c.tls_mode()), (587, Tls::StartTls));
        let c = Config::from_url("smtp://127.0.0.1:2600").unwrap();
        assert_eq!(
            (c.host(), c.effective_port(), c.tls_mode()),
            ("127.0.0.1", 2600, Tls::Opportunistic)
        );
        let c = Config::from_url("smtps://me%40example.com:p%3Ass@mail.example.com").unwrap();
        match &c.auth {
            Some(crate::Auth::Password { user, password }) => {
                assert_eq!(
                    (user.as_str(), password.as_str()),
                    ("me@example.com", "p:ss")
                )
            }
            other => panic!("{other:?}"),
        }
        let c = Config::from_url(
            "smtp+starttls://h?helo=client.example.org&auth=scram-sha-256&tls_name=mx.example",
        )
        .unwrap();
        assert_eq!(c.hello.as_deref(), Some("client.example.org"));
        assert_eq!(c.mechanism, Some(Mechanism::ScramSha256));
        assert_eq!(c.server_name(), "mx.example");
    }

    #[test]
    fn lmtp_schemes() {
        let c = Config::from_url("lmtp://store.example").unwrap();
        assert_eq!(
            (c.protocol_in_use(), c.effective_port(), c.tls_mode()),
            (Protocol::Lmtp, 24, Tls::Opportunistic)
        );
        let c = Config::from_url("lmtp+starttls://store.example:2424").unwrap();
        assert_eq!(
            (c.protocol_in_use(), c.effective_port(), c.tls_mode()),
            (Protocol::Lmtp, 2424, Tls::StartTls)
        );
        let c = Config::from_url("lmtp:///run/dovecot/lmtp").unwrap();
        assert_eq!(
            (c.protocol_in_use(), c.tls_mode()),
            (Protocol::Lmtp, Tls::None)
        );
        assert_eq!(
            c.unix_socket(),
            Some(std::path::Path::new("/run/dovecot/lmtp"))
        );
        assert_eq!(
            Config::from_url("smtp://h").unwrap().protocol_in_use(),
            Protocol::Smtp
        );
        // LMTP has no implicit-TLS port: no lmtps://.
        let e = Config::from_url("lmtps://h").unwrap_err().to_string();
        assert!(e.contains("lmtp+starttls"), "{e}");
    }

    #[test]
    fn a_path_after_an_empty_host_is_a_unix_socket() {
        let sock = |c: &Config| c.unix_socket().map(|p| p.to_string_lossy().into_owned());
        let c = Config::from_url("smtp:///run/mta/smtp.sock").unwrap();
        assert_eq!(sock(&c).as_deref(), Some("/run/mta/smtp.sock"));
        assert_eq!(c.tls_mode(), Tls::None);
        let c = Config::from_url("smtp:///run/a%20b/x%3A1.sock?helo=client.example.org").unwrap();
        assert_eq!(sock(&c).as_deref(), Some("/run/a b/x:1.sock"));
        assert_eq!(c.hello.as_deref(), Some("client.example.org"));
        // TLS when the scheme asks for it.
        let c = Config::from_url("smtp+starttls:///run/x.sock?tls_name=mx.example").unwrap();
        assert_eq!(
            (c.tls_mode(), c.server_name()),
            (Tls::StartTls, "mx.example")
        );
        assert_eq!(
            Config::from_url("smtps:///run/x.sock").unwrap().tls_mode(),
            Tls::Implicit
        );
        // A host with a path is still refused, and says where a socket goes.
        let e = Config::from_url("smtp://h/run/x.sock")
            .unwrap_err()
            .to_string();
        assert!(e.contains("smtp:///path/to/socket"), "{e}");
    }

    #[test]
    fn what_cannot_be_meant_is_refused_without_showing_the_password() {
        for bad in [
            "http://h",
            "smtp://",
            "smtp://h/path",
            "smtp://h?tls=yes",
            "smtp://h?auth=carrier-pigeon",
            "smtp://:secret@h",
            "smtps://u:hunter2@h:99999",
        ] {
            let e = Config::from_url(bad).unwrap_err();
            assert!(
                matches!(e, Error::Config(ConfigError::Url(_))),
                "{bad}: {e:?}"
            );
            assert!(
                !e.to_string().contains("hunter2") && !e.to_string().contains("secret"),
                "{e}"
            );
        }
    }

    #[test]
    fn mistakes_are_explained() {
        for (url, says) in [
            ("127.0.0.1:2525", "expected smtp://"),
            ("smtp://h?tls=required", "the scheme chooses TLS"),
            ("smtp://u:p@h?allow_plaintext_auth=maybe", "true or false"),
        ] {
            let e = Config::from_url(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let c = Config::from_url("smtp://u:p@localhost:1025?allow_plaintext_auth=true").unwrap();
        assert!(
            format!("{c:?}").contains("allow_plaintext_auth: true"),
            "{c:?}"
        );
    }

    #[test]
    fn no_password_shows_in_errors_whatever_the_shape() {
        for text in [
            "smtps://u:hunter2@h",
            "alice:hunter2@proxy.example:1080",
            "smtp://h?proxy=socks5%3A%2F%2Fu%3Ahunter2%40p&auth=bogus",
            "smtp://h?proxy=socks5://u:hunter2@p&auth=bogus",
            "not a url: u:hunter2@x",
        ] {
            let shown = redacted(text);
            assert!(!shown.contains("hunter2"), "{text} -> {shown}");
        }
        assert_eq!(redacted("smtp://h:25?helo=x"), "smtp://h:25?helo=x");
        let e = crate::Proxy::from_url("alice:hunter2@proxy.example:1080").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = Config::from_url("smtp://h?proxy=socks5%3A%2F%2Fu%3Ahunter2%40p&auth=bogus")
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
