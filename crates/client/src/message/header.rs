//! Custom header fields: validated so that no value can start another field.

use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::HeaderType;

use super::{id, MessageError};

/// Header fields a custom header may set in place of the builder's own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owned {
    Date,
    MessageId,
}

/// A checked custom header field, ready for mail-builder.
#[derive(Debug, Clone)]
pub(crate) struct Custom {
    pub(crate) name: String,
    pub(crate) value: HeaderType<'static>,
    pub(crate) owned: Option<Owned>,
}

impl Custom {
    /// True for `X-Priority` and `Importance`, which [`super::Priority`] also writes.
    pub(crate) fn is_priority(&self) -> bool {
        self.name.eq_ignore_ascii_case("x-priority") || self.name.eq_ignore_ascii_case("importance")
    }
}

/// Checks `name: value` and encodes the value: printable ASCII name without ':', no control
/// character but tab in the value, no field the builder writes from its own methods, and no
/// word too long to fold into a 998-octet line. A non-ASCII value is RFC 2047 encoded.
pub(crate) fn check(name: &str, value: &str) -> Result<Custom, MessageError> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(MessageError::header(
            name,
            "the name must be printable ASCII without ':' or spaces",
        ));
    }
    if let Some(bad) = value.chars().find(|&ch| ch != '\t' && ch.is_control()) {
        return Err(MessageError::header(
            name,
            format!(
                "the value contains a control character ({})",
                bad.escape_default()
            ),
        ));
    }
    let owned = match name.to_ascii_lowercase().as_str() {
        "bcc" | "resent-bcc" => {
            return Err(MessageError::header(
                name,
                "Bcc recipients are envelope-only, never a header",
            ))
        }
        // A ready message with these is sent to their addresses instead of To and Cc
        // (see ready::recipients), so the built message's headers would name other
        // recipients than its envelope.
        "resent-to" | "resent-cc" => {
            return Err(MessageError::header(
                name,
                "the recipients are set with to(), cc() and bcc(); to resend a message, \
                 add Resent- fields to its bytes and read it with Message::from_bytes",
            ))
        }
        "from" | "sender" | "to" | "cc" | "reply-to" | "subject" => {
            return Err(MessageError::header(
                name,
                "set it with its own method (or option), not as an extra header",
            ))
        }
        "content-type" | "content-transfer-encoding" | "mime-version" => {
            return Err(MessageError::header(
                name,
                "set by postline from the body and attachments",
            ))
        }
        "date" => Some(Owned::Date),
        "message-id" => Some(Owned::MessageId),
        _ => None,
    };
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    // Checked as message_id() checks it, and written in angle brackets as it writes it.
    let id_value;
    let value = if owned == Some(Owned::MessageId) {
        let bare = id::check(value, true).map_err(|why| MessageError::header(name, why))?;
        id_value = format!("<{bare}>");
        id_value.as_str()
    } else {
        value
    };
    let longest_word = value.split([' ', '\t']).map(str::len).max().unwrap_or(0);
    if name.len() + longest_word + 80 > 998 {
        return Err(MessageError::header(
            name,
            "too long to fit in 998-octet lines",
        ));
    }
    let value: HeaderType<'static> = if value.is_ascii() {
        Raw::new(value.to_string()).into()
    } else {
        Text::new(value.to_string()).into()
    };
    // mail-builder recognises its own spelling of these to skip generating them.
    let name = match owned {
        Some(Owned::Date) => "Date".to_string(),
        Some(Owned::MessageId) => "Message-ID".to_string(),
        None => name.to_string(),
    };
    Ok(Custom { name, value, owned })
}

/// Checks the subject: any text without control characters but tab.
pub(crate) fn check_subject(subject: &str) -> Result<(), MessageError> {
    match subject.chars().find(|&ch| ch != '\t' && ch.is_control()) {
        Some(bad) => Err(MessageError::header(
            "Subject",
            format!("contains a control character ({})", bad.escape_default()),
        )),
        None => Ok(()),
    }
}
