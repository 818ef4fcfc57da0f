//! What can go wrong composing or reading a message.

use std::path::PathBuf;

/// Why a message cannot be built or read.
///
/// Grouped by what the caller would do about it: [`MessageError::ReadFile`] is a file that
/// could not be read (check the path), [`MessageError::Malformed`] is a ready message that
/// cannot be parsed (the data is bad), and every other variant is something the caller gave
/// the builder that cannot become a valid, safe message (fix the input). The `Display` text
/// names the offending value, so it can be shown to a user as it is.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessageError {
    /// A file to attach could not be read.
    ReadFile {
        /// The path given.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// An address or mailbox (display name and address) is not valid.
    Address {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header field cannot be written: a bad field name, a control character in the value
    /// (header injection), a field the builder owns, or a value too long for a line.
    Header {
        /// The field name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A body part cannot be made: a bad content type, filename or Content-ID, or inline
    /// parts without an HTML body to show them.
    Part {
        /// Which part, as the caller named it (a filename, a Content-ID, "html"...).
        part: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No From mailbox: every message needs one (RFC 5322 3.6), and it is the default
    /// envelope sender.
    NoFrom,
    /// No To, Cc or Bcc recipient: there is nobody to send the message to.
    NoRecipients,
    /// A line of the built message would be longer than RFC 5322's limit of 998 octets
    /// (a header value with a very long word, or a very long file name).
    LineTooLong {
        /// The line's length in octets, without CRLF.
        len: usize,
    },
    /// A ready message cannot be read.
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
}

impl MessageError {
    pub(crate) fn address(input: &str, reason: impl Into<String>) -> Self {
        MessageError::Address {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn header(name: &str, reason: impl Into<String>) -> Self {
        MessageError::Header {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn part(part: &str, reason: impl Into<String>) -> Self {
        MessageError::Part {
            part: part.to_string(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::ReadFile { path, source } => write!(f, "{}: {source}", path.display()),
            MessageError::Address { input, reason } => write!(f, "address {input:?}: {reason}"),
            MessageError::Header { name, reason } => write!(f, "header {name}: {reason}"),
            MessageError::Part { part, reason } => write!(f, "part {part:?}: {reason}"),
            MessageError::NoFrom => f.write_str("no From address: a message needs a sender"),
            MessageError::NoRecipients => {
                f.write_str("no recipients: a message needs at least one To, Cc or Bcc address")
            }
            MessageError::LineTooLong { len } => write!(
                f,
                "a line of the message would be {len} octets long, over the limit of 998 \
                 (a very long header value or file name?)"
            ),
            MessageError::Malformed { reason } => write!(f, "cannot read the message: {reason}"),
        }
    }
}

impl std::error::Error for MessageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MessageError::ReadFile { source, .. } => Some(source),
            _ => None,
        }
    }
}
