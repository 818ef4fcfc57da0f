//! Mailboxes: an address with an optional display name, as people write them.

use std::fmt;
use std::str::FromStr;

use super::MessageError;

/// An address with an optional display name: `Alice Example <alice@example.com>`.
///
/// Parsed from what people write (`alice@example.com`, `<alice@example.com>`,
/// `Alice <alice@example.com>`, `"Example, Alice" <alice@example.com>`) and validated once,
/// so a `Mailbox` can go into a header and into the envelope without further checks: no
/// control character anywhere (CR and LF would let a value start a new header field or SMTP
/// command), and nothing in the address that would end it or start another (`<`, `>`, `,`,
/// `;`, parentheses, white space outside a quoted local part). An address without a domain
/// (`root`) is allowed, as a relay may qualify it.
///
/// `Display` writes the form a header holds: the name bare when it is plain words, quoted
/// when it has specials such as a comma, RFC 2047 encoded when it is not ASCII; parsing that
/// text gives the same mailbox back.
///
/// ```
/// use postline::Mailbox;
/// let m: Mailbox = "\"Example, Alice\" <alice@example.com>".parse()?;
/// assert_eq!(m.name(), Some("Example, Alice"));
/// assert_eq!(m.address(), "alice@example.com");
/// assert_eq!(m.to_string(), "\"Example, Alice\" <alice@example.com>");
/// let zoe = Mailbox::named("Zoë", "zoe@example.org")?;
/// assert_eq!(zoe.to_string(), "=?utf-8?B?Wm/Dqw==?= <zoe@example.org>");
/// assert_eq!(zoe.to_string().parse::<Mailbox>()?, zoe);
/// # Ok::<(), postline::MessageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    name: Option<String>,
    address: String,
}

impl Mailbox {
    /// A mailbox without a display name. `address` is the bare address (`bob@example.org`);
    /// use [`str::parse`] for text that may carry a name or angle brackets.
    pub fn new(address: &str) -> Result<Mailbox, MessageError> {
        check_address(address, address)?;
        Ok(Mailbox {
            name: None,
            address: address.to_string(),
        })
    }

    /// A mailbox with display name `name` (any language; an empty name is no name).
    pub fn named(name: &str, address: &str) -> Result<Mailbox, MessageError> {
        let mut m = Mailbox::new(address)?;
        check_name(name)?;
        m.name = Some(name.to_string()).filter(|n| !n.trim().is_empty());
        Ok(m)
    }

    /// The display name, if any, decoded.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The address (`local@domain`), as used in the envelope.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The domain part of the address, if it has one.
    pub fn domain(&self) -> Option<&str> {
        self.address.rsplit_once('@').map(|(_, d)| d)
    }
}

impl FromStr for Mailbox {
    type Err = MessageError;

    /// Reads `Display Name <addr>`, `<addr>` or a bare `addr`. A quoted name is unquoted;
    /// RFC 2047 encoded words in the name are decoded (so `Display` output reads back).
    fn from_str(s: &str) -> Result<Mailbox, MessageError> {
        let t = s.trim_matches(|c| c == ' ' || c == '\t');
        if let Some(bad) = t.chars().find(|c| c.is_control()) {
            return Err(MessageError::address(
                s,
                format!("contains a control character ({})", bad.escape_default()),
            ));
        }
        let (name, addr) = match (t.strip_suffix('>'), t.rfind('<')) {
            (Some(inner), Some(lt)) if lt < inner.len() => {
                let name = t[..lt].trim();
                let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                    Some(q) => unquote(q),
                    None => name.to_string(),
                };
                let name = if name.contains("=?") {
                    decode_words(&name)
                } else {
                    name
                };
                // An encoded word can carry what the text itself may not (=0D=0A).
                if let Some(bad) = name.chars().find(|c| c.is_control()) {
                    return Err(MessageError::address(
                        s,
                        format!(
                            "the decoded display name contains a control character ({})",
                            bad.escape_default()
                        ),
                    ));
                }
                (Some(name).filter(|n| !n.is_empty()), &inner[lt + 1..])
            }
            _ => (None, t),
        };
        check_address(s, addr)?;
        Ok(Mailbox {
            name,
            address: addr.to_string(),
        })
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(name) = &self.name else {
            return write!(f, "<{}>", self.address);
        };
        let atoms = name
            .split(' ')
            .all(|w| !w.is_empty() && w.bytes().all(is_atext));
        if atoms {
            f.write_str(name)?;
        } else {
            // mail-builder's encoder: a quoted string when ASCII will do, else an encoded
            // word (which it also wraps in quotes; RFC 2047 5 wants it bare in a phrase).
            let mut out = Vec::with_capacity(name.len() + 16);
            // Writing to a Vec cannot fail.
            let _ = mail_builder::encoders::encode::rfc2047_encode(name, &mut out);
            let out = String::from_utf8_lossy(&out);
            let out = match out
                .strip_prefix("\"=?")
                .and_then(|o| o.strip_suffix("?=\""))
            {
                Some(word) => format!("=?{word}?="),
                None => out.into_owned(),
            };
            f.write_str(&out)?;
        }
        write!(f, " <{}>", self.address)
    }
}

/// RFC 5322 atext: what a display name may hold without quotes.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Decodes RFC 2047 encoded words in a display name, through mail-parser's reading of an
/// unstructured field; the name as given when that finds nothing.
fn decode_words(name: &str) -> String {
    let raw = format!("Subject: {name}\r\n\r\n");
    mail_parser::MessageParser::new()
        .parse_headers(raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| name.to_string())
}

fn unquote(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut chars = q.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn check_name(name: &str) -> Result<(), MessageError> {
    match name.chars().find(|c| c.is_control()) {
        Some(bad) => Err(MessageError::address(
            name,
            format!(
                "the display name contains a control character ({})",
                bad.escape_default()
            ),
        )),
        None => Ok(()),
    }
}

/// An address as it goes between `<` and `>` in a header and in MAIL FROM / RCPT TO: valid
/// for the SMTP envelope, and nothing outside a quoted local part that would end the address
/// or start another. `input` is what the caller gave, for the error.
fn check_address(input: &str, addr: &str) -> Result<(), MessageError> {
    let bad = |why: &str| MessageError::address(input, why);
    if addr.is_empty() {
        return Err(bad("empty address"));
    }
    let mut in_quotes = false;
    let mut escaped = false;
    for ch in addr.chars() {
        if ch.is_control() {
            return Err(bad("contains a control character"));
        }
        if in_quotes {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quotes = false;
            }
            continue;
        }
        match ch {
            '"' => in_quotes = true,
            '<' | '>' | ',' | ';' | '(' | ')' => {
                return Err(bad(&format!("{ch:?} is not allowed in an address")))
            }
            c if c.is_whitespace() => return Err(bad("contains white space")),
            _ => {}
        }
    }
    if in_quotes {
        return Err(bad("unterminated quoted string"));
    }
    if let Some((local, domain)) = addr.rsplit_once('@') {
        if local.is_empty() {
            return Err(bad("nothing before the '@'"));
        }
        if domain.is_empty() {
            return Err(bad("no domain after the '@'"));
        }
    }
    postline_proto::command::Address::new(addr).map_err(|e| bad(&e.to_string()))?;
    Ok(())
}

/// What the builder's address methods accept: a [`Mailbox`], text to parse as one
/// (`"Bob <bob@example.org>"`), or a `(name, address)` pair.
pub trait IntoMailbox {
    /// The mailbox, or why the input is not one.
    fn into_mailbox(self) -> Result<Mailbox, MessageError>;
}

impl IntoMailbox for Mailbox {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        Ok(self)
    }
}

impl IntoMailbox for &Mailbox {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        Ok(self.clone())
    }
}

impl IntoMailbox for &str {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        self.parse()
    }
}

impl IntoMailbox for String {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        self.parse()
    }
}

impl IntoMailbox for &String {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        self.parse()
    }
}

impl IntoMailbox for (&str, &str) {
    fn into_mailbox(self) -> Result<Mailbox, MessageError> {
        Mailbox::named(self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        let m: Mailbox = "Alice Example <alice@example.org>".parse().unwrap();
        assert_eq!(
            (m.name(), m.address()),
            (Some("Alice Example"), "alice@example.org")
        );
        let m: Mailbox = " <bob@example.org> ".parse().unwrap();
        assert_eq!((m.name(), m.address()), (None, "bob@example.org"));
        let m: Mailbox = r#""Doe, \"JD\" Jane" <jane@example.org>"#.parse().unwrap();
        assert_eq!(m.name(), Some(r#"Doe, "JD" Jane"#));
        let m: Mailbox = "\"john doe\"@example.com".parse().unwrap();
        assert_eq!(m.address(), "\"john doe\"@example.com");
        assert_eq!(Mailbox::new("root").unwrap().domain(), None);
    }

    #[test]
    fn refuses_what_would_break_a_header_or_command() {
        // More in tests/message.rs; here what only the parser sees.
        for bad in ["Bob <bob@example.com> x", "Bob <>", "@example.com", "bob@"] {
            let e = bad.parse::<Mailbox>().unwrap_err();
            assert!(matches!(e, MessageError::Address { ref input, .. } if input == bad));
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(Mailbox::named("A\r\nBcc: x", "a@example.org").is_err());
        // Nor through an RFC 2047 encoded word, Q or B, quoted or not.
        for bad in [
            "=?utf-8?Q?Eve=0D=0ABcc:_x@evil.org?= <eve@example.com>",
            "=?utf-8?B?RXZlDQpCY2M6IHhAZXZpbC5vcmc=?= <eve@example.com>",
            "\"=?utf-8?Q?a=0Ab?=\" <eve@example.com>",
            "=?utf-8?Q?tab=09ok_but_nul=00?= <eve@example.com>",
        ] {
            let e = bad.parse::<Mailbox>().unwrap_err();
            assert!(
                matches!(e, MessageError::Address { ref input, ref reason }
                    if input == bad && reason.contains("decoded display name")),
                "{bad}: {e}"
            );
        }
        let m: Mailbox = "=?utf-8?Q?Caf=C3=A9_Bob?= <bob@example.org>"
            .parse()
            .unwrap();
        assert_eq!(m.name(), Some("Café Bob"));
        assert!(Mailbox::new("Bob <bob@example.org>").is_err());
    }

    #[test]
    fn display_reads_back() {
        for (name, shown) in [
            ("Alice Example", "Alice Example <a@example.org>"),
            ("Example, Alice", "\"Example, Alice\" <a@example.org>"),
            (
                r#"Eve "E" O\Brien"#,
                r#""Eve \"E\" O\\Brien" <a@example.org>"#,
            ),
            ("Zoë Ærø 日本", ""),
            (" leading", "\" leading\" <a@example.org>"),
        ] {
            let m = Mailbox::named(name, "a@example.org").unwrap();
            let text = m.to_string();
            if !shown.is_empty() {
                assert_eq!(text, shown);
            }
            assert!(text.is_ascii(), "{text}");
            assert_eq!(text.parse::<Mailbox>().unwrap(), m, "{text}");
        }
        assert_eq!(
            Mailbox::new("a@example.org").unwrap().to_string(),
            "<a@example.org>"
        );
        assert_eq!(Mailbox::named("", "a@example.org").unwrap().name(), None);
    }
}
