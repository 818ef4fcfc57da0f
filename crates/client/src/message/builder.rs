//! The message builder: typed fields in, RFC 5322 bytes and an envelope out.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use super::header::{self, Custom, Owned};
use super::mailbox::{IntoMailbox, Mailbox};
use super::{id, part, ready, Message, MessageError, Priority};

/// Builds a [`Message`]: set the fields, then [`build`](MessageBuilder::build).
///
/// Every method takes what a caller has at hand (`&str`, `String`, a [`Mailbox`]) and
/// checks it at once; the first problem is kept and returned by `build`, so a chain needs
/// no `?` per line and the error names the value at fault. Methods that set a single field
/// (`from`, `subject`, `text`...) replace an earlier value; `to`, `cc`, `bcc`, `reply_to`,
/// `attachment`, `inline` and `header` add one more each time.
///
/// What the builder writes on its own: `Date` (now), `Message-ID` (unique, at the From
/// domain), `MIME-Version` and the `Content-*` fields of each part. Line endings are CRLF,
/// text is encoded (quoted-printable or base64) when it is not short-lined ASCII, and a
/// Bcc recipient is only ever in the envelope.
///
/// ```
/// use postline::Message;
/// let message = Message::builder()
///     .from("Alice <alice@example.com>")
///     .to("Bob <bob@example.org>")
///     .subject("Lunch")
///     .text("Noon at the usual place?")
///     .build()?;
/// assert_eq!(message.envelope().from(), "alice@example.com");
/// # Ok::<(), postline::MessageError>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder makes nothing until build() is called"]
pub struct MessageBuilder {
    error: Option<MessageError>,
    from: Option<Mailbox>,
    sender: Option<Mailbox>,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    reply_to: Vec<Mailbox>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<MimePart<'static>>,
    inline: Vec<MimePart<'static>>,
    headers: Vec<Custom>,
    date: Option<i64>,
    message_id: Option<String>,
    priority: Option<Priority>,
    envelope_from: Option<String>,
}

impl MessageBuilder {
    /// An empty builder; [`Message::builder`] is the usual way to get one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `r`'s value, or its error if it is the first one.
    fn keep<T>(&mut self, r: Result<T, MessageError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// The author (the `From` field), and the envelope sender unless [`sender`] or
    /// [`envelope_from`] says otherwise. Required.
    ///
    /// [`sender`]: MessageBuilder::sender
    /// [`envelope_from`]: MessageBuilder::envelope_from
    pub fn from(mut self, mailbox: impl IntoMailbox) -> Self {
        self.from = self.keep(mailbox.into_mailbox()).or(self.from);
        self
    }

    /// Who sent the message on the author's behalf (the `Sender` field, RFC 5322 3.6.2: a
    /// secretary, a mailing list), and then the envelope sender, since bounces belong to
    /// whoever sent it.
    pub fn sender(mut self, mailbox: impl IntoMailbox) -> Self {
        self.sender = self.keep(mailbox.into_mailbox()).or(self.sender);
        self
    }

    /// Adds a `To` recipient (in the header and the envelope).
    pub fn to(mut self, mailbox: impl IntoMailbox) -> Self {
        let m = self.keep(mailbox.into_mailbox());
        self.to.extend(m);
        self
    }

    /// Adds a `Cc` recipient (in the header and the envelope).
    pub fn cc(mut self, mailbox: impl IntoMailbox) -> Self {
        let m = self.keep(mailbox.into_mailbox());
        self.cc.extend(m);
        self
    }

    /// Adds a blind-copy recipient: in the envelope only, never in the message, so the other
    /// recipients cannot see it.
    pub fn bcc(mut self, mailbox: impl IntoMailbox) -> Self {
        let m = self.keep(mailbox.into_mailbox());
        self.bcc.extend(m);
        self
    }

    /// Adds a `Reply-To` mailbox: where replies go instead of the From address.
    pub fn reply_to(mut self, mailbox: impl IntoMailbox) -> Self {
        let m = self.keep(mailbox.into_mailbox());
        self.reply_to.extend(m);
        self
    }

    /// The subject, in any language (RFC 2047 encoded when not ASCII, folded when long).
    /// A control character other than tab is refused: CR or LF would end the field.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        let subject = subject.into();
        if self.keep(header::check_subject(&subject)).is_some() {
            self.subject = Some(subject);
        }
        self
    }

    /// The plain-text body. Any line endings (LF, CR, CRLF) become CRLF; long lines and
    /// non-ASCII text are encoded so that no line exceeds the limit.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The HTML body. With a text body too, the message is `multipart/alternative` and a
    /// reader shows the one it prefers; with [`inline`](MessageBuilder::inline) parts, the
    /// HTML and its images form a `multipart/related`.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// Attaches `data` as `filename`, of type `content_type` (`application/pdf`, or
    /// `text/plain; charset=iso-8859-1` with parameters). The bytes arrive exactly as given:
    /// binary is base64, text is encoded so that it round-trips. Control characters in the
    /// file name become `_`.
    pub fn attachment(
        mut self,
        filename: &str,
        content_type: &str,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        let name = part::filename(filename);
        if let Some(ct) = self.keep(part::content_type(&name, content_type)) {
            let p = part::bytes(&ct, Some(&name), data.into()).attachment(name);
            self.attachments.push(p);
        }
        self
    }

    /// Attaches the file at `path`, named after it, its type guessed from its extension
    /// (`application/octet-stream` when unknown). The file is read now; an unreadable one
    /// is [`MessageError::ReadFile`].
    pub fn attachment_file(mut self, path: impl AsRef<Path>) -> Self {
        if let Some((name, ct, data)) = self.keep(part::read_file(path.as_ref())) {
            let name = part::filename(&name);
            let p = part::bytes(&ct, Some(&name), data).attachment(name);
            self.attachments.push(p);
        }
        self
    }

    /// Adds a part the HTML body shows in place, such as an image, referred to from the
    /// HTML as `cid:CONTENT_ID` (`<img src="cid:logo">` for content id `logo`). Needs an
    /// HTML body; the id may be given with or without angle brackets.
    pub fn inline(
        mut self,
        content_id: &str,
        content_type: &str,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        let cid = self.keep(
            id::check(content_id, false)
                .map_err(|why| MessageError::part(content_id, format!("Content-ID: {why}"))),
        );
        let ct = self.keep(part::content_type(content_id, content_type));
        if let (Some(cid), Some(ct)) = (cid, ct) {
            let p = part::bytes(&ct, None, data.into()).inline().cid(cid);
            self.inline.push(p);
        }
        self
    }

    /// Adds a header field such as `List-Unsubscribe` or `X-Mailer`. The name must be
    /// printable ASCII without `:`; the value may not hold a control character other than
    /// tab (so it cannot start another field: no header injection), and is RFC 2047 encoded
    /// when not ASCII.
    ///
    /// Fields the builder writes itself are refused, as giving them twice would make an
    /// invalid or ambiguous message: `Bcc` and `Resent-Bcc` (recipients are envelope-only),
    /// `From`, `Sender`, `To`, `Cc`, `Reply-To`, `Subject` (use their methods),
    /// `Content-Type`, `Content-Transfer-Encoding` and `MIME-Version` (made from the parts).
    /// `Resent-To` and `Resent-Cc` are refused too: a message with them is sent to their
    /// addresses (see [`ready::recipients`](super::ready::recipients)), not to the
    /// envelope built here. `Date` and `Message-ID` are taken as given, in place of the
    /// generated ones, once each; a `Message-ID` value is checked as
    /// [`message_id`](MessageBuilder::message_id) checks it and written in angle brackets. Other
    /// `Content-*` fields (`Content-Language`, for one) are written as given.
    /// `X-Priority` and `Importance` conflict with [`priority`](MessageBuilder::priority).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Some(h) = self.keep(header::check(name, value)) {
            if h.owned.is_some() && self.headers.iter().any(|x| x.owned == h.owned) {
                self.keep::<()>(Err(MessageError::header(name, "given twice")));
            } else {
                self.headers.push(h);
            }
        }
        self
    }

    /// The `Date` field (default: when `build` is called), written in UTC.
    pub fn date(mut self, date: SystemTime) -> Self {
        let unix = match date.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        self.date = Some(unix);
        self
    }

    /// The `Message-ID` (`left@right`, angle brackets optional), for a message whose id
    /// must be known in advance, or the same on a retry. Default: a unique id at the From
    /// address's domain.
    pub fn message_id(mut self, message_id: &str) -> Self {
        let r = id::check(message_id, true).map_err(|why| MessageError::header("Message-ID", why));
        if let Some(id) = self.keep(r) {
            self.message_id = Some(id);
        }
        self
    }

    /// The priority mail clients show (`X-Priority` and `Importance`). None by default.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The envelope sender (`MAIL FROM`), where bounces go, when it is not the From or
    /// Sender address: a bounce-handling address (VERP), or `""`/`<>` for the null sender
    /// of an automatic reply. The message's header fields do not change.
    pub fn envelope_from(mut self, address: &str) -> Self {
        let t = address.trim();
        let addr = if t.is_empty() || t == "<>" {
            Ok(String::new())
        } else {
            t.parse::<Mailbox>().map(|m| m.address().to_string())
        };
        if let Some(a) = self.keep(addr) {
            self.envelope_from = Some(a);
        }
        self
    }

    /// The message, or the first problem met: an invalid value given to a method, no From
    /// ([`MessageError::NoFrom`]), no recipient ([`MessageError::NoRecipients`]), a
    /// conflict between a custom header and a method, inline parts without HTML, or a line
    /// that cannot be kept within 998 octets ([`MessageError::LineTooLong`]).
    pub fn build(self) -> Result<Message, MessageError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let from = self.from.ok_or(MessageError::NoFrom)?;
        let custom_date = self.headers.iter().any(|h| h.owned == Some(Owned::Date));
        let custom_id = self
            .headers
            .iter()
            .any(|h| h.owned == Some(Owned::MessageId));
        if custom_date && self.date.is_some() {
            return Err(MessageError::header(
                "Date",
                "given both by date() and as a header",
            ));
        }
        if custom_id && self.message_id.is_some() {
            return Err(MessageError::header(
                "Message-ID",
                "given both by message_id() and as a header",
            ));
        }
        if let (Some(h), Some(_)) = (self.headers.iter().find(|h| h.is_priority()), self.priority) {
            return Err(MessageError::header(
                &h.name,
                "conflicts with the priority setting",
            ));
        }
        if self.html.is_none() && !self.inline.is_empty() {
            return Err(MessageError::part(
                "inline",
                "inline parts are shown by an HTML body: set html() too",
            ));
        }

        let mut mb = mail_builder::MessageBuilder::new();
        if !custom_date {
            let unix = self.date.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            });
            mb = mb.header("Date", Raw::new(crate::date::rfc5322(unix)));
        }
        // Address fields are written from `Mailbox`'s own form: an encoded word stays bare,
        // as RFC 2047 5 wants it in a phrase (mail-builder would put it in quotes).
        mb = mb.header("From", Raw::new(address_list(std::slice::from_ref(&from))));
        if let Some(s) = &self.sender {
            mb = mb.header("Sender", Raw::new(address_list(std::slice::from_ref(s))));
        }
        for (name, list) in [
            ("To", &self.to),
            ("Cc", &self.cc),
            ("Reply-To", &self.reply_to),
        ] {
            if !list.is_empty() {
                mb = mb.header(name, Raw::new(address_list(list)));
            }
        }
        if let Some(s) = self.subject {
            mb = mb.subject(s);
        }
        if !custom_id {
            let id = self
                .message_id
                .unwrap_or_else(|| id::generate(from.address()));
            mb = mb.message_id(MessageId::new(id));
        }
        if let Some(p) = self.priority {
            mb = mb
                .header("X-Priority", Raw::new(p.x_priority()))
                .header("Importance", Raw::new(p.importance()));
        }
        for h in self.headers {
            mb = mb.header(h.name, h.value);
        }
        mb = mb.body(body(self.text, self.html, self.inline, self.attachments));

        let bytes = mb.write_to_vec().map_err(|e| MessageError::Malformed {
            reason: format!("cannot encode the message: {e}"),
        })?;
        if let Some(len) = bytes
            .split(|&b| b == b'\n')
            .map(|l| l.len().saturating_sub(1))
            .find(|&l| l > 998)
        {
            return Err(MessageError::LineTooLong { len });
        }

        let sender = match (&self.envelope_from, &self.sender) {
            (Some(a), _) => a.as_str(),
            (None, Some(s)) => s.address(),
            (None, None) => from.address(),
        };
        let recipients = self.to.iter().chain(&self.cc).chain(&self.bcc);
        let envelope = super::envelope(sender, recipients.map(Mailbox::address))?;
        let message_id = ready::message_id(&bytes);
        Ok(Message {
            envelope,
            bytes,
            message_id,
        })
    }
}

/// The MIME tree: `mixed(alternative(text, related(html, inline...)), attachments...)`, each
/// level only when it has more than one part.
fn body(
    text: Option<String>,
    html: Option<String>,
    inline: Vec<MimePart<'static>>,
    attachments: Vec<MimePart<'static>>,
) -> MimePart<'static> {
    let text = text.as_deref().map(|t| part::text("text/plain", t));
    let html = html
        .as_deref()
        .map(|h| part::text("text/html", h))
        .map(|h| {
            if inline.is_empty() {
                h
            } else {
                let mut parts = Vec::with_capacity(inline.len() + 1);
                parts.push(h);
                parts.extend(inline);
                // RFC 2387 3.1: `type` names the root part's type.
                let ct = ContentType::new("multipart/related").attribute("type", "text/html");
                MimePart::new(ct, parts)
            }
        });
    let body = match (text, html) {
        (Some(t), Some(h)) => Some(MimePart::new("multipart/alternative", vec![t, h])),
        (Some(t), None) => Some(t),
        (None, Some(h)) => Some(h),
        (None, None) => None,
    };
    if attachments.is_empty() {
        body.unwrap_or_else(|| MimePart::new("text/plain", ""))
    } else {
        let mut parts = Vec::with_capacity(attachments.len() + 1);
        parts.extend(body);
        parts.extend(attachments);
        MimePart::new("multipart/mixed", parts)
    }
}

/// A header field's value for `list`: the mailboxes in their `Display` form, one per line
/// after the first (folded), so a long list never makes a long line.
fn address_list(list: &[Mailbox]) -> String {
    list.iter()
        .map(Mailbox::to_string)
        .collect::<Vec<_>>()
        .join(",\r\n ")
}
