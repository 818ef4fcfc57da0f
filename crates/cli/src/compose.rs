//! Composing messages (with mail-builder) and reading ready ones (with mail-parser).

use std::path::{Path, PathBuf};

use mail_builder::encoders::base64::base64_encode_mime;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::HeaderType;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// `--priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    /// X-Priority: 1 (Highest), Importance: high.
    High,
    /// X-Priority: 3 (Normal), Importance: normal.
    Normal,
    /// X-Priority: 5 (Lowest), Importance: low.
    Low,
}

/// Everything `postline send` knows about a message to compose.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// The From header: an address, optionally with a display name given separately.
    pub from: String,
    /// Display name for From (sendmail `-F`), if any.
    pub from_name: Option<String>,
    /// To header addresses.
    pub to: Vec<String>,
    /// Cc header addresses.
    pub cc: Vec<String>,
    /// Subject (may be non-ASCII: RFC 2047 encoded).
    pub subject: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body: with `text`, multipart/alternative.
    pub html: Option<String>,
    /// Files to attach; MIME type guessed from the name.
    pub attachments: Vec<PathBuf>,
    /// Extra headers, `(name, value)`, validated: no CR/LF/control characters.
    pub headers: Vec<(String, String)>,
    /// X-Priority and Importance.
    pub priority: Option<Priority>,
    /// Reply-To address.
    pub reply_to: Option<String>,
}

/// Why a message cannot be composed or read.
#[derive(Debug)]
pub enum ComposeError {
    /// An attachment or body file could not be read (exit 66, EX_NOINPUT).
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something the user gave is invalid (exit 64, EX_USAGE): a header with CR/LF, a bad name.
    Usage(String),
    /// A ready message could not be parsed (exit 65, EX_DATAERR).
    Data(String),
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComposeError::Input { path, source } => write!(f, "{}: {source}", path.display()),
            ComposeError::Usage(m) | ComposeError::Data(m) => f.write_str(m),
        }
    }
}

/// Builds the RFC 5322 message with Date, Message-ID, MIME-Version and proper encodings.
/// Bcc recipients are never in it (they are envelope-only).
pub fn build(c: &Compose) -> Result<Vec<u8>, ComposeError> {
    let (from_display, from_addr) = split_address(&c.from)?;
    let from_name = match &c.from_name {
        Some(n) => {
            check_display_name(n)?;
            Some(n.clone())
        }
        None => from_display,
    };
    let from_name = from_name.filter(|n| !n.trim().is_empty());
    let to = address_list(&c.to)?;
    let cc = address_list(&c.cc)?;
    let reply_to = match &c.reply_to {
        Some(r) => Some(split_address(r)?),
        None => None,
    };
    if let Some(s) = &c.subject {
        if let Some(bad) = s.chars().find(|&ch| ch != '\t' && ch.is_control()) {
            return Err(ComposeError::Usage(format!(
                "the subject contains a control character ({})",
                bad.escape_default()
            )));
        }
    }
    let extra = extra_headers(c)?;

    let mut mb = MessageBuilder::new();
    if !extra.iter().any(|h| h.special == Some(Special::Date)) {
        mb = mb.date(Date::now());
    }
    mb = mb.from(Address::new_address(from_name, from_addr.clone()));
    if !to.is_empty() {
        mb = mb.to(Address::new_list(to));
    }
    if !cc.is_empty() {
        mb = mb.cc(Address::new_list(cc));
    }
    if let Some((name, addr)) = reply_to {
        mb = mb.reply_to(Address::new_address(name, addr));
    }
    if let Some(s) = &c.subject {
        mb = mb.subject(s.clone());
    }
    if !extra.iter().any(|h| h.special == Some(Special::MessageId)) {
        mb = mb.message_id(format!("{}@{}", unique_id(), message_id_domain(&from_addr)));
    }
    if let Some(p) = c.priority {
        let (x, imp) = match p {
            Priority::High => ("1 (Highest)", "high"),
            Priority::Normal => ("3 (Normal)", "normal"),
            Priority::Low => ("5 (Lowest)", "low"),
        };
        mb = mb
            .header("X-Priority", Raw::new(x))
            .header("Importance", Raw::new(imp));
    }
    for h in extra {
        mb = mb.header(h.name, h.value);
    }

    let text = c.text.as_deref().map(|t| text_part("text/plain", t));
    let html = c.html.as_deref().map(|t| text_part("text/html", t));
    let body = match (text, html) {
        (Some(t), Some(h)) => Some(MimePart::new("multipart/alternative", vec![t, h])),
        (Some(t), None) => Some(t),
        (None, Some(h)) => Some(h),
        (None, None) => None,
    };
    let mut attachments = Vec::with_capacity(c.attachments.len());
    for path in &c.attachments {
        attachments.push(attachment_part(path)?);
    }
    let root = if attachments.is_empty() {
        body.unwrap_or_else(|| MimePart::new("text/plain", ""))
    } else {
        let mut parts = Vec::with_capacity(attachments.len() + 1);
        parts.extend(body);
        parts.extend(attachments);
        MimePart::new("multipart/mixed", parts)
    };
    mb = mb.body(root);

    let out = mb
        .write_to_vec()
        .map_err(|e| ComposeError::Usage(format!("cannot build the message: {e}")))?;
    if let Some(len) = out
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .map(|l| l.saturating_sub(1))
        .find(|&l| l > 998)
    {
        return Err(ComposeError::Usage(format!(
            "a line of the message would be {len} octets long, over the limit of 998 \
             (a very long header value or file name?)"
        )));
    }
    Ok(out)
}

/// Splits `Display Name <addr>` (or a bare addr-spec) into its display name and address,
/// rejecting control characters and characters that cannot stand unquoted in an address.
pub fn split_address(s: &str) -> Result<(Option<String>, String), ComposeError> {
    let t = s.trim_matches(|c| c == ' ' || c == '\t');
    if let Some(bad) = t.chars().find(|c| c.is_control()) {
        return Err(ComposeError::Usage(format!(
            "address {:?}: contains a control character ({})",
            s,
            bad.escape_default()
        )));
    }
    let (name, addr) = match (t.strip_suffix('>'), t.rfind('<')) {
        (Some(inner), Some(lt)) if lt < inner.len() => {
            let name = t[..lt].trim();
            let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(q) => unquote(q),
                None => name.to_string(),
            };
            (Some(name).filter(|n| !n.is_empty()), &inner[lt + 1..])
        }
        _ => (None, t),
    };
    check_addr_spec(s, addr)?;
    Ok((name, addr.to_string()))
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

/// An addr-spec as mail-builder writes it between `<` and `>`: not empty, and nothing
/// outside a quoted local part that would end the address or start another.
fn check_addr_spec(orig: &str, addr: &str) -> Result<(), ComposeError> {
    let bad = |why: &str| ComposeError::Usage(format!("address {orig:?}: {why}"));
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
    Ok(())
}

fn check_display_name(n: &str) -> Result<(), ComposeError> {
    match n.chars().find(|c| c.is_control()) {
        Some(bad) => Err(ComposeError::Usage(format!(
            "display name {n:?}: contains a control character ({})",
            bad.escape_default()
        ))),
        None => Ok(()),
    }
}

fn address_list(list: &[String]) -> Result<Vec<Address<'static>>, ComposeError> {
    list.iter()
        .map(|a| split_address(a).map(|(name, addr)| Address::new_address(name, addr)))
        .collect()
}

/// Extra header names that need care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Date,
    MessageId,
}

struct Extra {
    name: String,
    value: HeaderType<'static>,
    special: Option<Special>,
}

/// Validates and encodes the extra headers.
fn extra_headers(c: &Compose) -> Result<Vec<Extra>, ComposeError> {
    let mut out: Vec<Extra> = Vec::with_capacity(c.headers.len());
    for (name, value) in &c.headers {
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(ComposeError::Usage(format!(
                "header name {name:?}: must be printable ASCII without ':' or spaces"
            )));
        }
        if let Some(bad) = value.chars().find(|&ch| ch != '\t' && ch.is_control()) {
            return Err(ComposeError::Usage(format!(
                "header {name}: the value contains a control character ({})",
                bad.escape_default()
            )));
        }
        let lower = name.to_ascii_lowercase();
        let special = match lower.as_str() {
            "bcc" => {
                return Err(ComposeError::Usage(format!(
                    "header {name}: Bcc recipients are envelope-only, never a header"
                )))
            }
            "from" | "to" | "cc" | "reply-to" | "subject" => {
                return Err(ComposeError::Usage(format!(
                    "header {name}: set it with its own option, not as an extra header"
                )))
            }
            "content-type" | "content-transfer-encoding" | "mime-version" => {
                return Err(ComposeError::Usage(format!(
                    "header {name}: set by postline from the body and attachments"
                )))
            }
            "x-priority" | "importance" if c.priority.is_some() => {
                return Err(ComposeError::Usage(format!(
                    "header {name}: conflicts with the priority option"
                )))
            }
            "date" => Some(Special::Date),
            "message-id" => Some(Special::MessageId),
            _ => None,
        };
        if special.is_some() && out.iter().any(|h| h.special == special) {
            return Err(ComposeError::Usage(format!("header {name}: given twice")));
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let longest_word = value.split([' ', '\t']).map(str::len).max().unwrap_or(0);
        if name.len() + longest_word + 80 > 998 {
            return Err(ComposeError::Usage(format!(
                "header {name}: too long to fit in 998-octet lines"
            )));
        }
        let value: HeaderType<'static> = if value.is_ascii() {
            Raw::new(value.to_string()).into()
        } else {
            Text::new(value.to_string()).into()
        };
        // mail-builder recognises its own spelling of these to skip generating them.
        let name = match special {
            Some(Special::Date) => "Date".to_string(),
            Some(Special::MessageId) => "Message-ID".to_string(),
            None => name.clone(),
        };
        out.push(Extra {
            name,
            value,
            special,
        });
    }
    Ok(out)
}

/// The domain for Message-ID: that of the From address when it is a plain ASCII domain.
fn message_id_domain(addr: &str) -> String {
    let domain = match addr.rsplit_once('@') {
        Some((_, d)) => d,
        None => "",
    };
    let plain = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let literal = domain.len() > 2
        && domain.starts_with('[')
        && domain.ends_with(']')
        && domain[1..domain.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.');
    if plain || literal {
        domain.to_ascii_lowercase()
    } else {
        "localhost".to_string()
    }
}

/// Time, process and randomly seeded hash: unique enough for a Message-ID left part.
fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(count);
    h.write_u32(std::process::id());
    format!(
        "{nanos:x}.{:x}.{:016x}",
        std::process::id(),
        h.finish() ^ count.rotate_left(32)
    )
}

/// A text/plain or text/html part with CRLF line endings; base64 when the text holds
/// control characters that mail-builder would otherwise pass through unencoded.
fn text_part(ctype: &'static str, text: &str) -> MimePart<'static> {
    let text = normalize_newlines(text);
    let ct = ContentType::new(ctype).attribute("charset", "utf-8");
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n' | '\x0c'))
    {
        base64_part(ct, text.as_bytes())
    } else {
        MimePart::new(ct, BodyPart::Text(text.into()))
    }
}

/// CRLF, bare CR and bare LF all become CRLF.
fn normalize_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// A part whose content mail-builder's base64 encoder has already encoded.
fn base64_part(ct: ContentType<'static>, data: &[u8]) -> MimePart<'static> {
    let mut encoded = Vec::with_capacity(data.len() / 3 * 4 + data.len() / 57 * 2 + 8);
    // Writing to a Vec cannot fail.
    let _ = base64_encode_mime(data, &mut encoded, false);
    if !encoded.ends_with(b"\n") {
        encoded.extend_from_slice(b"\r\n");
    }
    // base64 output is ASCII.
    let encoded = String::from_utf8_lossy(&encoded).into_owned();
    MimePart::new(ct, BodyPart::Text(encoded.into())).transfer_encoding("base64")
}

/// Reads an attachment; its type guessed from the file name.
fn attachment_part(path: &Path) -> Result<MimePart<'static>, ComposeError> {
    let data = std::fs::read(path).map_err(|source| ComposeError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    let filename: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".to_string())
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str().to_string();
    let mut ct = ContentType::new(essence.clone());
    let is_text = essence.starts_with("text/");
    let mut force_base64 = false;
    if is_text {
        match std::str::from_utf8(&data) {
            Ok(s) if !s.is_ascii() => ct = ct.attribute("charset", "utf-8"),
            Ok(_) => {}
            Err(_) => force_base64 = true,
        }
        // mail-builder would pass bare CRs and other control characters through.
        force_base64 |= data.iter().enumerate().any(|(i, &b)| {
            (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
                || b == 0x7f
                || (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
        });
    }
    ct = ct.attribute("name", filename.clone());
    // Non-text parts are base64-encoded by mail-builder; text ones 7bit or quoted-printable.
    let part = if force_base64 {
        base64_part(ct, &data)
    } else {
        MimePart::new(ct, BodyPart::Binary(data.into()))
    };
    Ok(part.attachment(filename))
}

/// Addresses found in a ready message's headers, for `-t`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRecipients {
    /// From To:.
    pub to: Vec<String>,
    /// From Cc:.
    pub cc: Vec<String>,
    /// From Bcc:.
    pub bcc: Vec<String>,
}

/// Reads To, Cc and Bcc (every occurrence, groups and display names handled) from `raw`.
pub fn header_recipients(raw: &[u8]) -> Result<HeaderRecipients, ComposeError> {
    let msg = MessageParser::new()
        .parse_headers(raw)
        .ok_or_else(|| ComposeError::Data("cannot parse the message's header".into()))?;
    let mut out = HeaderRecipients::default();
    for h in msg.headers() {
        let list = match h.name {
            HeaderName::To => &mut out.to,
            HeaderName::Cc => &mut out.cc,
            HeaderName::Bcc => &mut out.bcc,
            _ => continue,
        };
        if let HeaderValue::Address(a) = &h.value {
            push_addresses(a, list);
        }
    }
    Ok(out)
}

fn push_addresses(a: &mail_parser::Address<'_>, out: &mut Vec<String>) {
    let mut push = |addr: &mail_parser::Addr<'_>| {
        if let Some(a) = addr.address.as_deref().map(str::trim) {
            if !a.is_empty() {
                out.push(a.to_string());
            }
        }
    };
    match a {
        mail_parser::Address::List(list) => list.iter().for_each(&mut push),
        mail_parser::Address::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .for_each(&mut push),
    }
}

/// The address in the From header, if any (the envelope sender default in sendmail mode).
pub fn header_from(raw: &[u8]) -> Option<String> {
    let msg = MessageParser::new().parse_headers(raw)?;
    let h = msg.headers().iter().find(|h| h.name == HeaderName::From)?;
    let HeaderValue::Address(a) = &h.value else {
        return None;
    };
    let mut all = Vec::new();
    push_addresses(a, &mut all);
    all.into_iter().next()
}

/// `raw` without its Bcc header fields (continuation lines included); every other byte kept.
///
/// The header section is read the way mail-parser (and so [`header_recipients`]) reads it,
/// so that nothing it would take for a Bcc field is left: lines end at LF; a line starting
/// with space or tab continues the field before it; a field's name is what comes before
/// its first ':' with white space ignored, in any case; a line without ':' is no field
/// (and what follows it cannot continue it); the section ends at the first line of white
/// space only (CRLF or LF alone, usually) that continues no field. That line and
/// everything after it are copied untouched.
pub fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    let mut in_field = false;
    let mut skipping = false;
    while pos < raw.len() {
        let end = match raw[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => raw.len(),
        };
        let line = &raw[pos..end];
        if in_field && matches!(line.first(), Some(b' ' | b'\t')) {
            // A continuation line of the current field.
        } else if line.ends_with(b"\n") && line.iter().all(u8::is_ascii_whitespace) {
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
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out.extend_from_slice(&raw[pos..]);
    out
}

/// For a line that starts a header field, whether it is Bcc: its name is the
/// non-white-space bytes before the first ':' that follows one of them (mail-parser's
/// reading), compared without regard to case. `None` when the line has no such ':'.
fn bcc_field_name(line: &[u8]) -> Option<bool> {
    let mut name = Vec::with_capacity(8);
    for &b in line {
        match b {
            b':' if !name.is_empty() => return Some(name.eq_ignore_ascii_case(b"bcc")),
            b'\n' => return None,
            b if b.is_ascii_whitespace() || b == b':' => {}
            b => {
                if name.len() > 3 {
                    // Too long to be "bcc"; keep looking for the colon only.
                    continue;
                }
                name.push(b);
            }
        }
    }
    None
}

/// True when the header section of `raw` has a field called `name` (case-insensitive).
pub fn has_header(raw: &[u8], name: &str) -> bool {
    for line in raw.split(|&b| b == b'\n') {
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

/// What sendmail adds to a message that lacks them: From (with the sender and `-F` name),
/// Date and Message-ID, prepended so every original byte is kept.
pub fn complete_headers(raw: &[u8], from: &str, full_name: Option<&str>) -> Vec<u8> {
    let mut head = String::new();
    if !has_header(raw, "From") && !from.is_empty() {
        match full_name
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
        head.push_str(&format!("Date: {}\r\n", Date::now().to_rfc822()));
    }
    if !has_header(raw, "Message-ID") {
        head.push_str(&format!(
            "Message-ID: <{}@{}>\r\n",
            unique_id(),
            message_id_domain(from)
        ));
    }
    let mut out = head.into_bytes();
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn completes_missing_headers_only() {
        let raw = b"Subject: x\n\nbody\n";
        let out = super::complete_headers(raw, "me@example.com", Some("Cron Daemon"));
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
            super::complete_headers(full, "me@example.com", None),
            full.to_vec()
        );
        assert!(!super::has_header(b"Subject: x\n\nFrom: body\n", "From"));
    }

    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    fn base() -> Compose {
        Compose {
            from: "alice@example.org".into(),
            to: vec!["bob@example.com".into()],
            ..Compose::default()
        }
    }

    fn built(c: &Compose) -> Vec<u8> {
        match build(c) {
            Ok(m) => m,
            Err(e) => panic!("build failed: {e}"),
        }
    }

    /// The header section (up to the first empty line) as a string.
    fn head(m: &[u8]) -> String {
        let s = String::from_utf8_lossy(m);
        match s.find("\r\n\r\n") {
            Some(i) => s[..i + 2].to_string(),
            None => s.into_owned(),
        }
    }

    /// The unfolded value of every top-level header named `name`.
    fn header_values(m: &[u8], name: &str) -> Vec<String> {
        let h = head(m).replace("\r\n\t", " ").replace("\r\n ", " ");
        h.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn check_wire_format(m: &[u8]) {
        for (i, &b) in m.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && m[i - 1] == b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(m.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        for line in m.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "line of {} octets", line.len());
        }
    }

    fn temp_file(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, data).expect("write temp file");
        (dir, path)
    }

    #[test]
    fn build_minimal_has_required_headers() {
        let m = built(&base());
        check_wire_format(&m);
        assert_eq!(header_values(&m, "From"), ["<alice@example.org>"]);
        assert_eq!(header_values(&m, "To"), ["<bob@example.com>"]);
        assert_eq!(header_values(&m, "MIME-Version"), ["1.0"]);
        assert!(header_values(&m, "Cc").is_empty());
        assert!(header_values(&m, "Bcc").is_empty());
        let ids = header_values(&m, "Message-ID");
        assert_eq!(ids.len(), 1);
        assert!(
            ids[0].starts_with('<') && ids[0].ends_with("@example.org>"),
            "{ids:?}"
        );
        let dates = header_values(&m, "Date");
        assert_eq!(dates.len(), 1);
        let parsed = MessageParser::new().parse(&m).expect("parses");
        let date = parsed.date().expect("a valid Date");
        assert!(date.year >= 2024, "{date:?}");
        // No body: an empty text/plain.
        let ct = parsed.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        assert_eq!(parsed.body_text(0).as_deref().map(str::trim), Some(""));
    }

    #[test]
    fn message_ids_are_unique() {
        let a = header_values(&built(&base()), "Message-ID");
        let b = header_values(&built(&base()), "Message-ID");
        assert_ne!(a, b);
    }

    #[test]
    fn message_id_domain_falls_back() {
        assert_eq!(message_id_domain("a@Example.ORG"), "example.org");
        assert_eq!(message_id_domain("root"), "localhost");
        assert_eq!(message_id_domain("a@bücher.de"), "localhost");
        assert_eq!(message_id_domain("a@[192.0.2.1]"), "[192.0.2.1]");
        assert_eq!(message_id_domain("a@"), "localhost");
    }

    #[test]
    fn build_all_address_headers() {
        let c = Compose {
            from_name: Some("Alice Ärger".into()),
            cc: vec![
                "Carol <carol@example.net>".into(),
                "dave@example.net".into(),
            ],
            to: vec![
                "bob@example.com".into(),
                "\"Eve, E.\" <eve@example.com>".into(),
            ],
            reply_to: Some("replies@example.org".into()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        assert!(head(&m).is_ascii(), "{}", head(&m));
        let p = MessageParser::new().parse(&m).expect("parses");
        let from = p.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.address(), Some("alice@example.org"));
        assert_eq!(from.name(), Some("Alice Ärger"));
        let to: Vec<_> = p
            .to()
            .expect("to")
            .iter()
            .map(|a| a.address().unwrap_or(""))
            .collect();
        assert_eq!(to, ["bob@example.com", "eve@example.com"]);
        let eve = p.to().and_then(|a| a.iter().nth(1)).expect("eve");
        assert_eq!(eve.name(), Some("Eve, E."));
        let cc: Vec<_> = p
            .cc()
            .expect("cc")
            .iter()
            .map(|a| a.address().unwrap_or(""))
            .collect();
        assert_eq!(cc, ["carol@example.net", "dave@example.net"]);
        assert_eq!(
            p.reply_to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("replies@example.org")
        );
        let r = header_recipients(&m).expect("recipients");
        assert!(r.bcc.is_empty());
        assert_eq!(r.to, ["bob@example.com", "eve@example.com"]);
    }

    #[test]
    fn from_display_name_in_from_field() {
        let c = Compose {
            from: "Alice Example <alice@example.org>".into(),
            ..base()
        };
        let m = built(&c);
        let p = MessageParser::new().parse(&m).expect("parses");
        let from = p.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.name(), Some("Alice Example"));
        assert_eq!(from.address(), Some("alice@example.org"));
        assert_eq!(header_from(&m).as_deref(), Some("alice@example.org"));
    }

    #[test]
    fn bad_addresses_are_usage_errors() {
        for bad in [
            "bob@example.com\r\nBcc: evil@example.com",
            "bob@example.com\n",
            "bob\0@example.com",
            "",
            "bob@example.com, eve@example.com",
            "bob @example.com",
            "<bob@example.com",
            "Bob <bob@example.com> x",
            "\"unterminated@example.com",
        ] {
            let c = Compose {
                to: vec![bad.into()],
                ..base()
            };
            assert!(matches!(build(&c), Err(ComposeError::Usage(_))), "{bad:?}");
        }
        let c = Compose {
            from_name: Some("Alice\r\nBcc: evil".into()),
            ..base()
        };
        assert!(matches!(build(&c), Err(ComposeError::Usage(_))));
        let c = Compose {
            reply_to: Some("x@y\rz".into()),
            ..base()
        };
        assert!(matches!(build(&c), Err(ComposeError::Usage(_))));
        // A quoted local part may hold spaces.
        let c = Compose {
            to: vec!["\"john doe\"@example.com".into()],
            ..base()
        };
        assert!(build(&c).is_ok());
    }

    #[test]
    fn subject_non_ascii_is_encoded() {
        let c = Compose {
            subject: Some("Grüße 日本".into()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        let h = head(&m);
        assert!(h.is_ascii(), "header section must be ASCII: {h}");
        let subj = header_values(&m, "Subject");
        assert!(subj[0].contains("=?utf-8?"), "{subj:?}");
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.subject(), Some("Grüße 日本"));
    }

    #[test]
    fn long_subject_is_folded_and_round_trips() {
        let subject = "word ".repeat(300) + &"x".repeat(1500);
        let c = Compose {
            subject: Some(subject.clone()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.subject(), Some(subject.as_str()));
    }

    #[test]
    fn subject_with_line_break_is_rejected() {
        let c = Compose {
            subject: Some("hi\r\nBcc: evil@example.com".into()),
            ..base()
        };
        assert!(matches!(build(&c), Err(ComposeError::Usage(_))));
    }

    #[test]
    fn text_body_ascii_is_7bit() {
        let c = Compose {
            text: Some("Hello,\nthis is a test.\n".into()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        let s = String::from_utf8_lossy(&m);
        assert!(
            s.contains("Content-Type: text/plain; charset=\"utf-8\"\r\n"),
            "{s}"
        );
        assert!(s.contains("Content-Transfer-Encoding: 7bit\r\n"), "{s}");
        assert!(s.contains("\r\n\r\nHello,\r\nthis is a test.\r\n"), "{s}");
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(
            p.body_text(0).as_deref(),
            Some("Hello,\r\nthis is a test.\r\n")
        );
    }

    #[test]
    fn text_body_non_ascii_and_long_lines_are_encoded() {
        let text = format!("Grüße aus Köln — 日本\n{}\nend\n", "y".repeat(2000));
        let c = Compose {
            text: Some(text.clone()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        assert!(m.is_ascii());
        let s = String::from_utf8_lossy(&m);
        assert!(
            s.contains("Content-Transfer-Encoding: quoted-printable")
                || s.contains("Content-Transfer-Encoding: base64"),
            "{s}"
        );
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(
            p.body_text(0).as_deref(),
            Some(text.replace('\n', "\r\n").as_str())
        );
        // A long ASCII line alone is encoded too.
        let long = "z".repeat(2000);
        let m = built(&Compose {
            text: Some(long.clone()),
            ..base()
        });
        check_wire_format(&m);
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.body_text(0).as_deref(), Some(long.as_str()));
    }

    #[test]
    fn text_body_line_endings_are_normalised() {
        let c = Compose {
            text: Some("a\rb\r\nc\nd".into()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.body_text(0).as_deref(), Some("a\r\nb\r\nc\r\nd"));
    }

    #[test]
    fn text_body_with_control_characters_is_base64() {
        let text = "nul\0 and escape \u{1b}[0m\n";
        let m = built(&Compose {
            text: Some(text.into()),
            ..base()
        });
        check_wire_format(&m);
        assert!(String::from_utf8_lossy(&m).contains("Content-Transfer-Encoding: base64"));
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(
            p.body_text(0).as_deref(),
            Some("nul\0 and escape \u{1b}[0m\r\n")
        );
    }

    #[test]
    fn text_and_html_make_multipart_alternative() {
        let c = Compose {
            text: Some("plain ü".into()),
            html: Some("<p>html ü</p>".into()),
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        let p = MessageParser::new().parse(&m).expect("parses");
        let ct = p.content_type().expect("content type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative"))
        );
        assert_eq!(p.body_text(0).as_deref(), Some("plain ü"));
        assert_eq!(p.body_html(0).as_deref(), Some("<p>html ü</p>"));
        assert_eq!(p.attachment_count(), 0);
    }

    #[test]
    fn html_only_is_text_html() {
        let c = Compose {
            html: Some("<b>hi</b>".into()),
            ..base()
        };
        let m = built(&c);
        let p = MessageParser::new().parse(&m).expect("parses");
        let ct = p.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("html")));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(p.body_html(0).as_deref(), Some("<b>hi</b>"));
    }

    #[test]
    fn attachments_make_multipart_mixed() {
        let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let (_d1, pdf) = temp_file("report.pdf", &binary);
        let (_d2, txt) = temp_file("notes.txt", "line one\nline two ü\n".as_bytes());
        let (_d3, unknown) = temp_file("data.unknownext", b"\x00\x01\x02");
        let (_d4, intl) = temp_file("Grüße 日本.bin", b"abc");
        let c = Compose {
            text: Some("see attached".into()),
            html: Some("<p>see attached</p>".into()),
            attachments: vec![pdf, txt, unknown, intl],
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        assert!(m.is_ascii());
        let p = MessageParser::new().parse(&m).expect("parses");
        let ct = p.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
        assert_eq!(p.body_text(0).as_deref(), Some("see attached"));
        assert_eq!(p.body_html(0).as_deref(), Some("<p>see attached</p>"));
        assert_eq!(p.attachment_count(), 4);

        let a = p.attachment(0).expect("pdf");
        assert_eq!(a.attachment_name(), Some("report.pdf"));
        let act = a.content_type().expect("ct");
        assert_eq!((act.ctype(), act.subtype()), ("application", Some("pdf")));
        assert_eq!(a.contents(), &binary[..]);

        let a = p.attachment(1).expect("txt");
        assert_eq!(a.attachment_name(), Some("notes.txt"));
        let act = a.content_type().expect("ct");
        assert_eq!((act.ctype(), act.subtype()), ("text", Some("plain")));
        assert_eq!(act.attribute("charset"), Some("utf-8"));
        assert_eq!(a.contents(), "line one\nline two ü\n".as_bytes());

        let a = p.attachment(2).expect("unknown");
        let act = a.content_type().expect("ct");
        assert_eq!(
            (act.ctype(), act.subtype()),
            ("application", Some("octet-stream"))
        );
        assert_eq!(a.contents(), b"\x00\x01\x02");

        let a = p.attachment(3).expect("intl");
        assert_eq!(a.attachment_name(), Some("Grüße 日本.bin"));
        assert_eq!(a.contents(), b"abc");

        // The alternative sits inside the mixed part.
        let root = p.root_part();
        let PartType::Multipart(children) = &root.body else {
            panic!("root is not multipart");
        };
        let first = p.part(children[0]).expect("first child");
        let fct = first.content_type().expect("ct");
        assert_eq!(
            (fct.ctype(), fct.subtype()),
            ("multipart", Some("alternative"))
        );
    }

    #[test]
    fn text_attachment_with_bare_cr_is_base64_and_exact() {
        let data = "a\rb\r\nc\nd\x01e ü".as_bytes();
        let (_d, path) = temp_file("odd.txt", data);
        let m = built(&Compose {
            attachments: vec![path],
            ..base()
        });
        check_wire_format(&m);
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.attachment_count(), 1);
        assert_eq!(p.attachment(0).expect("att").contents(), data);
        assert!(String::from_utf8_lossy(&m).contains("Content-Transfer-Encoding: base64"));

        // Not UTF-8: base64 too, and the bytes on the wire are exactly the file's.
        let latin1 = b"caf\xe9\r\n";
        let (_d, path) = temp_file("latin1.txt", latin1);
        let m = built(&Compose {
            attachments: vec![path],
            ..base()
        });
        check_wire_format(&m);
        let encoded = mail_builder::encoders::base64::base64_encode(latin1).expect("encode");
        let s = String::from_utf8_lossy(&m);
        assert!(s.contains(&*String::from_utf8_lossy(&encoded)), "{s}");
    }

    #[test]
    fn attachment_only_message() {
        let (_d, path) = temp_file("a.bin", b"xyz");
        let m = built(&Compose {
            attachments: vec![path],
            ..base()
        });
        let p = MessageParser::new().parse(&m).expect("parses");
        assert_eq!(p.attachment_count(), 1);
        assert_eq!(p.attachment(0).expect("att").contents(), b"xyz");
    }

    #[test]
    fn missing_attachment_is_input_error() {
        let missing = std::env::temp_dir().join(format!(
            "postline-missing-{}-{}.pdf",
            std::process::id(),
            unique_id()
        ));
        let c = Compose {
            attachments: vec![missing.clone()],
            ..base()
        };
        match build(&c) {
            Err(ComposeError::Input { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Input error, got {other:?}"),
        }
    }

    #[test]
    fn priority_headers() {
        for (p, x, imp) in [
            (Priority::High, "1 (Highest)", "high"),
            (Priority::Normal, "3 (Normal)", "normal"),
            (Priority::Low, "5 (Lowest)", "low"),
        ] {
            let m = built(&Compose {
                priority: Some(p),
                ..base()
            });
            assert_eq!(header_values(&m, "X-Priority"), [x]);
            assert_eq!(header_values(&m, "Importance"), [imp]);
        }
        let m = built(&base());
        assert!(header_values(&m, "X-Priority").is_empty());
    }

    #[test]
    fn extra_headers() {
        let c = Compose {
            headers: vec![
                ("X-Mailer".into(), "postline".into()),
                ("X-Tab".into(), "a\tb".into()),
                ("X-Intl".into(), "Grüße".into()),
                (
                    "List-Unsubscribe".into(),
                    format!("<https://example.org/{}>", "u".repeat(120)),
                ),
            ],
            ..base()
        };
        let m = built(&c);
        check_wire_format(&m);
        assert_eq!(header_values(&m, "X-Mailer"), ["postline"]);
        assert_eq!(header_values(&m, "X-Tab"), ["a\tb"]);
        assert_eq!(
            header_values(&m, "List-Unsubscribe"),
            [format!("<https://example.org/{}>", "u".repeat(120))]
        );
        let p = MessageParser::new().parse(&m).expect("parses");
        let intl = p
            .headers()
            .iter()
            .find(|h| h.name.as_str() == "X-Intl")
            .expect("X-Intl");
        assert!(head(&m).is_ascii());
        // Decoded through RFC 2047.
        let decoded = MessageParser::new()
            .parse_headers(
                format!("Subject: {}\r\n\r\n", header_values(&m, "X-Intl")[0]).as_bytes(),
            )
            .and_then(|p| p.subject().map(str::to_string));
        assert_eq!(decoded.as_deref(), Some("Grüße"), "{intl:?}");
    }

    #[test]
    fn header_injection_is_rejected() {
        let cases: Vec<(&str, &str)> = vec![
            ("X-Test", "a\r\nBcc: evil@example.com"),
            ("X-Test", "a\nb"),
            ("X-Test", "a\0b"),
            ("X-Test", "a\u{7f}"),
            ("X-Test: a\r\nBcc", "evil"),
            ("X Test", "a"),
            ("X:Test", "a"),
            ("", "a"),
            ("X-Tëst", "a"),
            ("Bcc", "evil@example.com"),
            ("bcc", "evil@example.com"),
            ("Content-Type", "text/html"),
            ("To", "x@example.com"),
        ];
        for (name, value) in cases {
            let c = Compose {
                headers: vec![(name.into(), value.into())],
                ..base()
            };
            match build(&c) {
                Err(ComposeError::Usage(msg)) => {
                    if !name.is_empty() && !name.contains(['\r', '\n']) {
                        assert!(msg.contains(name), "{msg:?} should name {name:?}");
                    }
                }
                other => panic!("{name:?}: {value:?}: expected Usage, got {other:?}"),
            }
        }
    }

    #[test]
    fn extra_date_and_message_id_replace_generated_ones() {
        let c = Compose {
            headers: vec![
                ("message-id".into(), "<fixed@example.org>".into()),
                ("Date".into(), "Mon, 1 Jan 2024 00:00:00 +0000".into()),
            ],
            ..base()
        };
        let m = built(&c);
        assert_eq!(header_values(&m, "Message-ID"), ["<fixed@example.org>"]);
        assert_eq!(
            header_values(&m, "Date"),
            ["Mon, 1 Jan 2024 00:00:00 +0000"]
        );
        let twice = Compose {
            headers: vec![("Date".into(), "x".into()), ("date".into(), "y".into())],
            ..base()
        };
        assert!(matches!(build(&twice), Err(ComposeError::Usage(_))));
        let conflict = Compose {
            headers: vec![("X-Priority".into(), "1".into())],
            priority: Some(Priority::High),
            ..base()
        };
        assert!(matches!(build(&conflict), Err(ComposeError::Usage(_))));
    }

    #[test]
    fn overlong_header_word_is_rejected() {
        let c = Compose {
            headers: vec![("X-Long".into(), "a".repeat(2000))],
            ..base()
        };
        match build(&c) {
            Err(ComposeError::Usage(m)) => assert!(m.contains("X-Long"), "{m}"),
            other => panic!("{other:?}"),
        }
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
        let r = header_recipients(raw).expect("parses");
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
        assert_eq!(header_from(raw).as_deref(), Some("sender@example.org"));
    }

    #[test]
    fn recipients_with_lf_endings_and_none() {
        let raw = b"From: a@example.org\nTo: b@example.com\nCc: c@example.com\n\nbody\n";
        let r = header_recipients(raw).expect("parses");
        assert_eq!(r.to, ["b@example.com"]);
        assert_eq!(r.cc, ["c@example.com"]);
        assert!(r.bcc.is_empty());
        let none = header_recipients(b"Subject: x\n\nhi\n").expect("parses");
        assert_eq!(none, HeaderRecipients::default());
        assert_eq!(header_from(b"Subject: x\n\nhi\n"), None);
        assert_eq!(header_from(b""), None);
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
            let _ = header_recipients(raw);
            let _ = header_from(raw);
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
        let r = header_recipients(&out).expect("parses");
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
        // Bare CR is part of the line.
        assert_eq!(strip_bcc(b"Bcc: a\rTo: b\nX: y\n\nz"), b"X: y\n\nz");
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
            &b" Bcc: a@b\nTo: c\n\n"[..],
            b"garbage\n\tBcc: a@b\nTo: c\n\n",
        ] {
            assert!(header_recipients(raw).expect("parses").bcc.len() == 1);
            assert!(header_recipients(&strip_bcc(raw))
                .expect("parses")
                .bcc
                .is_empty());
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
            let end = raw[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            let cont = in_field && matches!(line.first(), Some(b' ' | b'\t'));
            if !cont && line.ends_with(b"\n") && line.iter().all(u8::is_ascii_whitespace) {
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
        let pieces: [&[u8]; 16] = [
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
            // Body bytes untouched.
            let b = body_start(&raw);
            assert!(out.ends_with(&raw[b..]), "{raw:?}");
            // Without anything Bcc-like the output is the input.
            let lower = raw.to_ascii_lowercase();
            if !lower.windows(3).any(|w| w == b"bcc") {
                assert_eq!(out, raw);
            }
            // mail-parser finds no Bcc left.
            if let Ok(r) = header_recipients(&out) {
                assert!(r.bcc.is_empty(), "{raw:?} -> {out:?}: {r:?}");
            }
            let _ = header_from(&raw);
        }
    }
}
