//! Ready messages: RFC 5322 messages someone else wrote, read for what sending them needs.
//!
//! [`Message::from_bytes`] is the one-call way: it takes the envelope from the headers and
//! removes Bcc. The functions here are the pieces, for programs that decide the envelope
//! themselves (a sendmail replacement takes recipients from its command line, and from the
//! headers only with `-t`): each keeps every byte it is not asked to change.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

use super::{id, Mailbox, Message, MessageError};
use crate::Envelope;

/// Addresses found in a ready message's To, Cc and Bcc fields, or in its Resent-To,
/// Resent-Cc and Resent-Bcc fields when it has any of those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRecipients {
    /// From every To field (Resent-To when `resent`), in order.
    pub to: Vec<String>,
    /// From every Cc field (Resent-Cc when `resent`), in order.
    pub cc: Vec<String>,
    /// From every Bcc field (Resent-Bcc when `resent`), in order.
    pub bcc: Vec<String>,
    /// True when the message has a Resent-To, Resent-Cc or Resent-Bcc field, so that the
    /// addresses above are those of the Resent- fields.
    pub resent: bool,
}

impl HeaderRecipients {
    /// To, then Cc, then Bcc.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(String::as_str)
    }
}

/// `raw` with the line structure it has on the wire: the DATA encoder makes every bare CR
/// and bare LF a CRLF, so every reading of header lines here goes through the same rule
/// (a bare CR must not hide a field that the receiver will see as its own line).
fn wire(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    crate::line_endings::crlf(raw)
}

/// Reads the recipients of `raw`'s header section, with lines ending where they will on
/// the wire (a bare CR or LF ends a line, as after [`crlf_line_endings`]).
///
/// When the message has a Resent-To, Resent-Cc or Resent-Bcc field, it is being resent
/// (RFC 5322 3.6.6) and the recipients are those of every Resent-To, Resent-Cc and
/// Resent-Bcc field (of all Resent- blocks, not only the latest), as `sendmail -t` and
/// Postfix's cleanup take them; To, Cc and Bcc are then the original recipients and are
/// not read. Otherwise the recipients are those of every To, Cc and Bcc field. Groups and
/// display names are handled (only the addresses are kept); an empty group
/// (`undisclosed-recipients:;`) gives none.
///
/// Errors: [`MessageError::Malformed`] when the header section cannot be parsed at all
/// (an empty message, for one), or when a recipient field has an entry that is not an
/// address (`To: bob@example.org, Bob Smith`), or whose address does not appear as it is in
/// the field's text (`To: Bob <bob@example.org> <carol@example.org>`, which a lenient
/// reading would join into one made-up address): such a message is refused rather than
/// sent to fewer or other people than it names.
pub fn recipients(raw: &[u8]) -> Result<HeaderRecipients, MessageError> {
    let raw = wire(raw);
    let msg = MessageParser::new()
        .parse_headers(&raw[..])
        .ok_or_else(|| MessageError::Malformed {
            reason: "cannot parse the message's header".into(),
        })?;
    let mut plain = HeaderRecipients::default();
    let mut resent = HeaderRecipients {
        resent: true,
        ..HeaderRecipients::default()
    };
    let mut any_resent = false;
    for h in msg.headers() {
        let (list, field) = match h.name {
            HeaderName::To => (&mut plain.to, "To"),
            HeaderName::Cc => (&mut plain.cc, "Cc"),
            HeaderName::Bcc => (&mut plain.bcc, "Bcc"),
            HeaderName::ResentTo => (&mut resent.to, "Resent-To"),
            HeaderName::ResentCc => (&mut resent.cc, "Resent-Cc"),
            HeaderName::ResentBcc => (&mut resent.bcc, "Resent-Bcc"),
            _ => continue,
        };
        any_resent |= field.starts_with("Resent-");
        let text = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default();
        match &h.value {
            HeaderValue::Address(a) => push_addresses(field, text, a, list)?,
            HeaderValue::Empty => {}
            _ if text.trim_ascii().is_empty() => {}
            _ => return Err(not_an_address(field, &String::from_utf8_lossy(text))),
        }
    }
    Ok(if any_resent { resent } else { plain })
}

fn not_an_address(field: &str, entry: &str) -> MessageError {
    MessageError::Malformed {
        reason: format!(
            "the {field} field has an entry that is not an address: {:?}",
            entry.trim()
        ),
    }
}

/// Appends the addresses of `a`, read from field `field` whose raw value is `text`. Each
/// must be one that `text` holds as it is (in any case); an entry without an address is
/// an error.
fn push_addresses(
    field: &str,
    text: &[u8],
    a: &mail_parser::Address<'_>,
    out: &mut Vec<String>,
) -> Result<(), MessageError> {
    let text = text.to_ascii_lowercase();
    let mut push = |addr: &mail_parser::Addr<'_>| -> Result<(), MessageError> {
        let address = addr.address.as_deref().map(str::trim).unwrap_or_default();
        if address.is_empty() {
            return match addr.name.as_deref().map(str::trim) {
                Some(name) if !name.is_empty() => Err(not_an_address(field, name)),
                _ => Ok(()),
            };
        }
        let needle = address.to_ascii_lowercase();
        if !text.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            return Err(not_an_address(field, address));
        }
        out.push(address.to_string());
        Ok(())
    };
    match a {
        mail_parser::Address::List(list) => list.iter().try_for_each(&mut push),
        mail_parser::Address::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .try_for_each(&mut push),
    }
}

/// The first address of `raw`'s first `name` field (From or Sender), if any.
fn first_address(raw: &[u8], name: HeaderName<'_>) -> Option<String> {
    let raw = wire(raw);
    let msg = MessageParser::new().parse_headers(&raw[..])?;
    let h = msg.headers().iter().find(|h| h.name == name)?;
    let HeaderValue::Address(a) = &h.value else {
        return None;
    };
    let first = a
        .iter()
        .filter_map(|addr| addr.address.as_deref().map(str::trim))
        .find(|a| !a.is_empty())
        .map(str::to_string);
    first
}

/// The address in `raw`'s From field, if it has one: the usual envelope sender of a ready
/// message.
pub fn from_address(raw: &[u8]) -> Option<String> {
    first_address(raw, HeaderName::From)
}

/// `raw` without its Bcc and Resent-Bcc header fields (continuation lines included); every
/// other byte kept, line endings included.
///
/// Lines end where they will on the wire: at LF, at CRLF, and at a bare CR (which the DATA
/// encoder sends as CRLF, so `Subject: hi\rBcc: x` is two fields to the receiver, and the
/// Bcc goes). Otherwise the header section is read the way mail-parser (and so
/// [`recipients`]) reads it, so that nothing it would take for a Bcc field is left: a line
/// starting with space or tab continues the field before it; a field's name is what comes
/// before its first ':' with white space ignored, in any case; a line without ':' is no
/// field (and what follows it cannot continue it); the section ends at the first line of
/// white space only (an empty line, usually) that continues no field. That line and
/// everything after it are copied untouched.
pub fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    let mut in_field = false;
    let mut skipping = false;
    while pos < raw.len() {
        let end = line_end(raw, pos);
        let line = &raw[pos..end];
        if in_field && matches!(line.first(), Some(b' ' | b'\t')) {
            // A continuation line of the current field.
        } else if matches!(line.last(), Some(b'\n' | b'\r'))
            && line.iter().all(u8::is_ascii_whitespace)
        {
            // The empty line: the body follows.
            break;
        } else {
            match bcc_field_name(line) {
                Some(is_bcc) => {
                    in_field = true;
                    skipping = is_bcc;
                }
                None => {
                    in_field = false;
                    skipping = false;
                }
            }
        }
        if !skipping {
            append(&mut out, line);
        }
        pos = end;
    }
    append(&mut out, &raw[pos..]);
    out
}

/// Appends `bytes` to `out`, keeping a line that ends in a bare CR from joining an LF that
/// starts `bytes` (possible only when the lines between them were removed): `X\r` + `\n`
/// would be one line `X\r\n`, so an LF goes between, giving `X\r\n\n`, which is on the wire
/// what `X\r` and `\n` were.
fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if out.last() == Some(&b'\r') && bytes.first() == Some(&b'\n') {
        out.push(b'\n');
    }
    out.extend_from_slice(bytes);
}

/// Where the line that starts at `pos` ends (after its line ending), by the wire's rule:
/// CRLF, a bare LF and a bare CR each end a line.
fn line_end(raw: &[u8], pos: usize) -> usize {
    match raw[pos..].iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(i) if raw[pos + i] == b'\r' && raw.get(pos + i + 1) == Some(&b'\n') => pos + i + 2,
        Some(i) => pos + i + 1,
        None => raw.len(),
    }
}

/// For a line that starts a header field, whether it is Bcc or Resent-Bcc: its name is the
/// non-white-space bytes before the first ':' that follows one of them (mail-parser's
/// reading), compared without regard to case. `None` when the line has no such ':'.
fn bcc_field_name(line: &[u8]) -> Option<bool> {
    const LONGEST: usize = b"resent-bcc".len();
    let mut name = Vec::with_capacity(LONGEST + 1);
    for &b in line {
        match b {
            b':' if !name.is_empty() => {
                return Some(
                    name.eq_ignore_ascii_case(b"bcc") || name.eq_ignore_ascii_case(b"resent-bcc"),
                )
            }
            b'\n' => return None,
            b if b.is_ascii_whitespace() || b == b':' => {}
            b => {
                if name.len() > LONGEST {
                    // Too long to be either; keep looking for the colon only.
                    continue;
                }
                name.push(b);
            }
        }
    }
    None
}

/// True when the header section of `raw` has a field called `name` (case-insensitive).
/// Lines end where they will on the wire (a bare CR ends one too).
pub fn has_header(raw: &[u8], name: &str) -> bool {
    for line in wire(raw).split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            return false;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

/// What sendmail adds to a message that lacks them: From (`from`, with `display_name` when
/// given; nothing for the null sender `""`), Date (now) and Message-ID (at `from`'s
/// domain), prepended so every original byte is kept. A display name loses `"` and `\`,
/// and is left out when it has a control character.
pub fn complete_headers(raw: &[u8], from: &str, display_name: Option<&str>) -> Vec<u8> {
    let mut head = String::new();
    if !has_header(raw, "From") && !from.is_empty() {
        match display_name
            .map(|n| n.replace(['"', '\\'], ""))
            .filter(|n| !n.chars().any(char::is_control))
        {
            Some(name) if !name.trim().is_empty() => {
                head.push_str(&format!("From: \"{name}\" <{from}>\r\n"))
            }
            _ => head.push_str(&format!("From: <{from}>\r\n")),
        }
    }
    if !has_header(raw, "Date") {
        head.push_str(&format!(
            "Date: {}\r\n",
            mail_builder::headers::date::Date::now().to_rfc822()
        ));
    }
    if !has_header(raw, "Message-ID") {
        head.push_str(&format!("Message-ID: <{}>\r\n", id::generate(from)));
    }
    let mut out = head.into_bytes();
    out.extend_from_slice(raw);
    out
}

/// `raw` with bare LF and bare CR made CRLF, the line ending SMTP and DKIM expect (RFC 5322
/// 2.1); a message already in CRLF is returned as it is, without copying.
pub fn crlf_line_endings(raw: Vec<u8>) -> Vec<u8> {
    match crate::line_endings::crlf(&raw) {
        std::borrow::Cow::Borrowed(_) => raw,
        std::borrow::Cow::Owned(v) => v,
    }
}

/// The longest line RFC 5322 2.1.1 allows, in octets, without its CRLF (SMTP's 1000 with it,
/// RFC 5321 4.5.3.1.6).
pub const MAX_LINE_OCTETS: usize = 998;

/// A line of a ready message longer than [`MAX_LINE_OCTETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongLine {
    /// Its number, from 1.
    pub line: usize,
    /// Its length in octets, without the line ending.
    pub octets: usize,
    /// How many lines of the message are too long, this one included.
    pub count: usize,
}

/// The lines of `raw` as they will be on the wire: CRLF, a bare LF and a bare CR each end
/// one (the DATA encoder makes the bare ones CRLF). Each item is (content, ending).
fn wire_lines(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, ending, next) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => (rest, &rest[rest.len()..], &rest[rest.len()..]),
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], &rest[i..i + 2], &rest[i + 2..])
            }
            Some(i) => (&rest[..i], &rest[i..i + 1], &rest[i + 1..]),
        };
        rest = next;
        Some((line, ending))
    })
}

/// The first line of `raw` longer than [`MAX_LINE_OCTETS`] (with the number of such
/// lines), or `None` when every line fits. Lines are counted as on the wire: CRLF, bare LF
/// and bare CR each end one.
pub fn long_line(raw: &[u8]) -> Option<LongLine> {
    let mut first: Option<LongLine> = None;
    for (n, (line, _)) in wire_lines(raw).enumerate() {
        if line.len() > MAX_LINE_OCTETS {
            match &mut first {
                Some(f) => f.count += 1,
                None => {
                    first = Some(LongLine {
                        line: n + 1,
                        octets: line.len(),
                        count: 1,
                    })
                }
            }
        }
    }
    first
}

/// `raw` with every line longer than [`MAX_LINE_OCTETS`] broken as Postfix's SMTP client
/// does it (`smtp_line_length_limit = 998`): after 998 octets a CRLF and a space are
/// inserted, and each continuation (space included) again holds at most 998 octets. A
/// header line so becomes a folded header (its value gains a space where it was broken);
/// a body line gains a line break and a leading space. One difference from Postfix: a break
/// never falls inside a UTF-8 character (it moves back to the character's start). Lines
/// that fit, and every line ending, are kept as they are; a message without long lines is
/// returned without copying.
pub fn fold_long_lines(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if long_line(raw).is_none() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 300 + 3);
    for (line, ending) in wire_lines(raw) {
        let mut rest = line;
        let mut room = MAX_LINE_OCTETS;
        while rest.len() > room {
            let mut cut = room;
            // Back to the start of a UTF-8 character (at most 3 continuation octets).
            let mut back = cut;
            while back > room - 3 && (0x80..0xc0).contains(&rest[back]) {
                back -= 1;
            }
            if back < cut && rest[back] >= 0xc0 {
                cut = back;
            }
            out.extend_from_slice(&rest[..cut]);
            out.extend_from_slice(b"\r\n ");
            rest = &rest[cut..];
            room = MAX_LINE_OCTETS - 1;
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(ending);
    }
    std::borrow::Cow::Owned(out)
}

/// The Message-ID of `raw`, without angle brackets.
pub(crate) fn message_id(raw: &[u8]) -> Option<String> {
    MessageParser::new()
        .parse_headers(&wire(raw)[..])?
        .message_id()
        .map(str::to_string)
}

impl Message {
    /// Reads a ready RFC 5322 message (an `.eml` file, what a program piped to sendmail)
    /// for sending as it is: line endings become CRLF, the envelope sender is the Sender
    /// field's address or else From's, the recipients are every To, Cc and Bcc address
    /// (duplicates once), and the Bcc fields are removed, so blind copies stay blind.
    /// Nothing else in the message changes; a message without Date or Message-ID stays so
    /// (see [`Message::complete_headers`]).
    ///
    /// A message being resent (one with a Resent-To, Resent-Cc or Resent-Bcc field) goes to
    /// the addresses of its Resent-To, Resent-Cc and Resent-Bcc fields only (see
    /// [`recipients`]), from Resent-Sender's or else Resent-From's address when it has
    /// one; its Resent-Bcc fields are removed as Bcc ones are (which happens to every
    /// message).
    ///
    /// Errors: [`MessageError::Malformed`] when the header section cannot be parsed or a
    /// recipient field has an entry that is not an address,
    /// [`MessageError::NoFrom`] without From or Sender, [`MessageError::NoRecipients`]
    /// without recipients, [`MessageError::Address`] for an address the envelope cannot hold.
    /// To choose the envelope yourself, use [`Message::from_bytes_with_envelope`].
    ///
    /// ```
    /// use postline::Message;
    /// let raw = b"From: Alice <alice@example.com>\n\
    ///             To: Bob <bob@example.org>, carol@example.org\n\
    ///             Bcc: audit@example.com\n\
    ///             Subject: hello\n\
    ///             \n\
    ///             Hi!\n";
    /// let message = Message::from_bytes(raw.to_vec())?;
    /// assert_eq!(message.envelope().from(), "alice@example.com");
    /// let to: Vec<&str> = message.envelope().to().collect();
    /// assert_eq!(to, ["bob@example.org", "carol@example.org", "audit@example.com"]);
    /// assert_eq!(
    ///     message.as_bytes(),
    ///     b"From: Alice <alice@example.com>\r\n\
    ///       To: Bob <bob@example.org>, carol@example.org\r\n\
    ///       Subject: hello\r\n\
    ///       \r\n\
    ///       Hi!\r\n"
    /// );
    /// # Ok::<(), postline::MessageError>(())
    /// ```
    pub fn from_bytes(raw: impl Into<Vec<u8>>) -> Result<Message, MessageError> {
        let raw = crlf_line_endings(raw.into());
        let found = recipients(&raw)?;
        let resent_from = if found.resent {
            first_address(&raw, HeaderName::ResentSender)
                .or_else(|| first_address(&raw, HeaderName::ResentFrom))
        } else {
            None
        };
        let from = resent_from
            .or_else(|| first_address(&raw, HeaderName::Sender))
            .or_else(|| from_address(&raw))
            .ok_or(MessageError::NoFrom)?;
        // The rules a built message's addresses follow.
        for address in std::iter::once(from.as_str()).chain(found.all()) {
            Mailbox::new(address)?;
        }
        let envelope = super::envelope(&from, found.all())?;
        Ok(Message::from_bytes_with_envelope(raw, envelope))
    }

    /// A ready message sent with the envelope the caller chose (recipients from a command
    /// line, a bounce address as sender). Line endings become CRLF and Bcc and Resent-Bcc
    /// fields are removed, as in [`Message::from_bytes`]; nothing else is read or changed, so this
    /// cannot fail.
    pub fn from_bytes_with_envelope(raw: impl Into<Vec<u8>>, envelope: Envelope) -> Message {
        let bytes = strip_bcc(&crlf_line_endings(raw.into()));
        let message_id = message_id(&bytes);
        Message {
            envelope,
            bytes,
            message_id,
        }
    }

    /// Adds what a message must have and a ready one may lack, as sendmail does: From (the
    /// envelope sender, with `display_name` if given), Date (now) and Message-ID (at the
    /// sender's domain), each only when missing, in front of the existing fields.
    pub fn complete_headers(self, display_name: Option<&str>) -> Message {
        let bytes = complete_headers(&self.bytes, self.envelope.from(), display_name);
        let message_id = message_id(&bytes);
        Message {
            envelope: self.envelope,
            bytes,
            message_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_found_and_folded_as_postfix_does() {
        let fits = [b"a".repeat(998), b"\r\n".to_vec(), b"b".repeat(998)].concat();
        assert_eq!(long_line(&fits), None);
        assert!(matches!(
            fold_long_lines(&fits),
            std::borrow::Cow::Borrowed(_)
        ));
        // Line 3 (after a bare LF and a CRLF), 999 octets; line 5 too: two of them.
        let raw = [
            &b"Subject: x\nX: y\r\n"[..],
            &b"c".repeat(999),
            b"\r\n\r\n",
            &b"d".repeat(2500),
            b"\rend",
        ]
        .concat();
        assert_eq!(
            long_line(&raw),
            Some(LongLine {
                line: 3,
                octets: 999,
                count: 2
            })
        );
        let folded = fold_long_lines(&raw).into_owned();
        let expected = [
            &b"Subject: x\nX: y\r\n"[..],
            &b"c".repeat(998),
            b"\r\n c\r\n\r\n",
            &b"d".repeat(998),
            b"\r\n ",
            &b"d".repeat(997),
            b"\r\n ",
            &b"d".repeat(505),
            b"\rend",
        ]
        .concat();
        assert_eq!(folded, expected);
        assert_eq!(long_line(&folded), None);
        // A break never splits a UTF-8 character: 997 ASCII octets, then "é" (2 octets).
        let utf8 = [b"e".repeat(997), "\u{e9}\u{e9}".as_bytes().to_vec()].concat();
        let folded = fold_long_lines(&utf8).into_owned();
        let expected = [b"e".repeat(997), "\r\n \u{e9}\u{e9}".as_bytes().to_vec()].concat();
        assert_eq!(folded, expected);
        assert!(std::str::from_utf8(&folded).is_ok());
    }

    #[test]
    fn completes_missing_headers_only() {
        let raw = b"Subject: x\n\nbody\n";
        let out = complete_headers(raw, "me@example.com", Some("Cron Daemon"));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("From: \"Cron Daemon\" <me@example.com>\r\nDate: "),
            "{text}"
        );
        assert!(text.contains("\r\nMessage-ID: <") && text.contains("@example.com>\r\n"));
        assert!(out.ends_with(raw));
        let full =
            b"From: a@b\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nb";
        assert_eq!(
            complete_headers(full, "me@example.com", None),
            full.to_vec()
        );
        assert!(!has_header(b"Subject: x\n\nFrom: body\n", "From"));
    }

    #[test]
    fn crlf_normalises_bare_endings_only() {
        assert_eq!(crlf_line_endings(b"a\r\nb\r\n".to_vec()), b"a\r\nb\r\n");
        assert_eq!(
            crlf_line_endings(b"a\nb\rc\r\n\n\r".to_vec()),
            b"a\r\nb\r\nc\r\n\r\n\r\n"
        );
        assert_eq!(crlf_line_endings(b"\n".to_vec()), b"\r\n");
        assert_eq!(crlf_line_endings(Vec::new()), b"");
    }

    #[test]
    fn recipients_from_complex_headers() {
        let raw = b"From: \"Sender, S.\" <sender@example.org>\r\n\
To: Bob <bob@example.com>,\r\n\
\x20\"Doe, Jane\" <jane@example.com>,\r\n\
\tplain@example.com\r\n\
Cc: Friends: ann@example.net, Ben <ben@example.net>;, cid@example.net\r\n\
Bcc: secret@example.org\r\n\
Subject: hello\r\n\
To: second@example.com\r\n\
bcc: Hidden Group: h1@example.org, h2@example.org;\r\n\
\r\n\
To: body@example.com\r\n";
        let r = recipients(raw).expect("parses");
        assert_eq!(
            r.to,
            [
                "bob@example.com",
                "jane@example.com",
                "plain@example.com",
                "second@example.com"
            ]
        );
        assert_eq!(
            r.cc,
            ["ann@example.net", "ben@example.net", "cid@example.net"]
        );
        assert_eq!(
            r.bcc,
            ["secret@example.org", "h1@example.org", "h2@example.org"]
        );
        assert_eq!(from_address(raw).as_deref(), Some("sender@example.org"));
    }

    #[test]
    fn recipients_with_lf_endings_and_none() {
        let raw = b"From: a@example.org\nTo: b@example.com\nCc: c@example.com\n\nbody\n";
        let r = recipients(raw).expect("parses");
        assert_eq!(r.to, ["b@example.com"]);
        assert_eq!(r.cc, ["c@example.com"]);
        assert!(r.bcc.is_empty());
        let none = recipients(b"Subject: x\n\nhi\n").expect("parses");
        assert_eq!(none, HeaderRecipients::default());
        assert_eq!(from_address(b"Subject: x\n\nhi\n"), None);
        assert_eq!(from_address(b""), None);
    }

    #[test]
    fn recipients_never_panic() {
        for raw in [
            &b""[..],
            b"\n",
            b"To:",
            b"To: <",
            b"To: \xff\xfe@\x80\r\n\r\n",
            b"\r\r\r",
            b"Bcc: a@b\rTo: c@d",
            b": : :\n:\n",
        ] {
            let _ = recipients(raw);
            let _ = from_address(raw);
            let _ = Message::from_bytes(raw);
        }
    }

    #[test]
    fn strip_bcc_crlf() {
        let raw = b"From: a@example.org\r\n\
Bcc: x@example.org,\r\n\
\x20y@example.org\r\n\
\tz@example.org\r\n\
To: b@example.com\r\n\
BCC: second@example.org\r\n\
bcc : third@example.org\r\n\
Bcc-Extra: keep\r\n\
X-Bcc: keep\r\n\
Subject: Bcc: not a field\r\n\
\r\n\
Bcc: in body stays\r\n\
\x20continuation stays\r\n";
        let out = strip_bcc(raw);
        assert_eq!(
            out,
            b"From: a@example.org\r\n\
To: b@example.com\r\n\
Bcc-Extra: keep\r\n\
X-Bcc: keep\r\n\
Subject: Bcc: not a field\r\n\
\r\n\
Bcc: in body stays\r\n\
\x20continuation stays\r\n"
        );
        let r = recipients(&out).expect("parses");
        assert!(r.bcc.is_empty());
        assert_eq!(r.to, ["b@example.com"]);
    }

    #[test]
    fn strip_bcc_lf() {
        let raw = b"Bcc: first@example.org\n\
To: b@example.com\n\
Bcc: x@example.org,\n\
\ty@example.org\n\
Subject: s\n\
\n\
Bcc: body\n";
        assert_eq!(
            strip_bcc(raw),
            b"To: b@example.com\nSubject: s\n\nBcc: body\n"
        );
    }

    #[test]
    fn strip_bcc_edge_cases() {
        // No separator, no final newline.
        assert_eq!(strip_bcc(b"To: a@b\r\nBcc: c@d"), b"To: a@b\r\n");
        assert_eq!(strip_bcc(b"Bcc: c@d"), b"");
        assert_eq!(strip_bcc(b""), b"");
        // Body only (starts with the empty line).
        assert_eq!(strip_bcc(b"\r\nBcc: x\r\n"), b"\r\nBcc: x\r\n");
        assert_eq!(strip_bcc(b"\nBcc: x\n"), b"\nBcc: x\n");
        // An empty Bcc field.
        assert_eq!(strip_bcc(b"Bcc:\r\nTo: a\r\n\r\n"), b"To: a\r\n\r\n");
        // A bare CR ends a line, as it does on the wire.
        assert_eq!(strip_bcc(b"Bcc: a\rTo: b\nX: y\n\nz"), b"To: b\nX: y\n\nz");
        assert_eq!(strip_bcc(b"To: b\rBcc: a\r\n\nz"), b"To: b\r\n\nz");
        assert_eq!(
            strip_bcc(b"To: b\rBcc: a\r\tc\rX: y\r\rz"),
            b"To: b\rX: y\r\rz"
        );
        assert_eq!(strip_bcc(b"To: b\r\rBcc: body\n"), b"To: b\r\rBcc: body\n");
        // Removing a line must not join a bare CR to the LF that follows it (which would
        // move the empty line, and with it the start of the body).
        assert_eq!(
            strip_bcc(b"X: 1\rBcc: a\n\nBcc: body\n"),
            b"X: 1\r\n\nBcc: body\n"
        );
        // Non-UTF-8 bytes are kept as they are.
        assert_eq!(
            strip_bcc(b"X: \xff\xfe\r\nBcc: \x80\r\n\r\n\xc3"),
            b"X: \xff\xfe\r\n\r\n\xc3"
        );
        // What mail-parser would take for Bcc goes too: leading white space on the
        // first line, and a line after a colon-less line.
        assert_eq!(strip_bcc(b" Bcc: a@b\nTo: c\n\n"), b"To: c\n\n");
        assert_eq!(
            strip_bcc(b"garbage\n\tBcc: a@b\nTo: c\n\n"),
            b"garbage\nTo: c\n\n"
        );
        for raw in [
            &b" Bcc: a@b\nTo: c@d\n\n"[..],
            b"garbage\n\tBcc: a@b\nTo: c@d\n\n",
        ] {
            assert!(recipients(raw).expect("parses").bcc.len() == 1);
            assert!(recipients(&strip_bcc(raw)).expect("parses").bcc.is_empty());
        }
        // A white-space-only line that continues a field is not the end of the header.
        assert_eq!(strip_bcc(b"Bcc: a\n \nTo: b\n\nbody"), b"To: b\n\nbody");
    }

    /// xorshift64*: deterministic pseudo-random bytes for the property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Where the body starts: the first line of white space only that continues no field.
    fn body_start(raw: &[u8]) -> usize {
        let mut pos = 0;
        let mut in_field = false;
        while pos < raw.len() {
            let end = line_end(raw, pos);
            let line = &raw[pos..end];
            let cont = in_field && matches!(line.first(), Some(b' ' | b'\t'));
            if !cont
                && matches!(line.last(), Some(b'\n' | b'\r'))
                && line.iter().all(u8::is_ascii_whitespace)
            {
                return pos;
            }
            if !cont {
                in_field = bcc_field_name(line).is_some();
            }
            pos = end;
        }
        raw.len()
    }

    #[test]
    fn strip_bcc_properties() {
        let pieces: [&[u8]; 18] = [
            b"Resent-Bcc: w",
            b"resent-bcc :",
            b"Bcc:",
            b"bcc",
            b"To: a@b",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b":",
            b"x",
            b"\xff",
            b"\0",
            b"BCC : y",
            b"Bcc-Extra: z",
            b"\r\n\r\n",
            b"\n\n",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            for _ in 0..rng.below(24) {
                raw.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            let out = strip_bcc(&raw);
            assert!(out.len() <= raw.len());
            // Idempotent.
            assert_eq!(strip_bcc(&out), out, "{raw:?}");
            // Body bytes untouched, and the body starts at the same place on the wire.
            let b = body_start(&raw);
            assert!(out.ends_with(&raw[b..]), "{raw:?}");
            let wire_out = wire(&out);
            assert!(wire_out.ends_with(&wire(&raw[b..])), "{raw:?} -> {out:?}");
            assert_eq!(
                body_start(&wire_out),
                wire_out.len() - wire(&raw[b..]).len()
            );
            // Without anything Bcc-like the output is the input.
            let lower = raw.to_ascii_lowercase();
            if !lower.windows(3).any(|w| w == b"bcc") {
                assert_eq!(out, raw);
            }
            // mail-parser finds no Bcc or Resent-Bcc left in what the wire carries.
            if let Some(m) = MessageParser::new().parse_headers(&wire_out[..]) {
                assert!(
                    !m.headers().iter().any(|h| matches!(
                        h.name,
                        HeaderName::Bcc | HeaderName::ResentBcc
                    ) && !matches!(h.value, HeaderValue::Empty)),
                    "{raw:?} -> {out:?}"
                );
            }
            let _ = from_address(&raw);
        }
    }
}
