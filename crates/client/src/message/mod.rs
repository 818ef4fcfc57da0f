//! Composing messages, and reading ready ones, for sending (feature `message`, on by default).
//!
//! A [`Message`] is what a transport needs: the RFC 5322 bytes (CRLF line endings, no line
//! over 998 octets, no Bcc field) and the [`Envelope`] (sender and every recipient, Bcc
//! included). Make one with [`Message::builder`], or read one that is already written with
//! [`Message::from_bytes`]. MIME encoding is mail-builder's and header parsing
//! mail-parser's; this module decides structure, defaults and what is refused.
//!
//! A text message:
//!
//! ```
//! use postline::Message;
//! let message = Message::builder()
//!     .from("Alice <alice@example.com>")
//!     .to("Bob <bob@example.org>")
//!     .bcc("audit@example.com")
//!     .subject("Quarterly report")
//!     .text("Hi Bob,\nthe numbers are in.\n")
//!     .build()?;
//! let to: Vec<&str> = message.envelope().to().collect();
//! assert_eq!(to, ["bob@example.org", "audit@example.com"]);
//! let text = String::from_utf8_lossy(message.as_bytes());
//! assert!(text.contains("\r\nSubject: Quarterly report\r\n"));
//! assert!(!text.contains("audit@")); // Bcc: envelope only
//! // client.send_bytes(message.envelope(), message.as_bytes())?;
//! # Ok::<(), postline::MessageError>(())
//! ```
//!
//! HTML with a text alternative, an inline image and an attachment:
//!
//! ```
//! use postline::{Message, Priority};
//! # let logo_png = vec![0x89, b'P', b'N', b'G'];
//! # let report_pdf = b"%PDF-1.7".to_vec();
//! let message = Message::builder()
//!     .from(("Alice Ärger", "alice@example.com"))
//!     .to("bob@example.org")
//!     .subject("Grüße")
//!     .text("Our logo is attached.")
//!     .html(r#"<p>Our logo: <img src="cid:logo"></p>"#)
//!     .inline("logo", "image/png", logo_png)
//!     .attachment("report.pdf", "application/pdf", report_pdf)
//!     .priority(Priority::High)
//!     .build()?;
//! let text = String::from_utf8_lossy(message.as_bytes());
//! assert!(text.contains("Content-Type: multipart/mixed"));
//! assert!(text.contains("Content-Type: multipart/related"));
//! assert!(text.contains("Content-ID: <logo>"));
//! assert!(text.is_ascii()); // names and subject are RFC 2047 encoded
//! # Ok::<(), postline::MessageError>(())
//! ```
//!
//! A ready message, and the envelope read from its headers:
//!
//! ```
//! use postline::Message;
//! let raw = b"From: alice@example.com\nTo: bob@example.org\nBcc: carol@example.org\n\nHi\n";
//! let message = Message::from_bytes(raw.to_vec())?;
//! assert_eq!(message.envelope().from(), "alice@example.com");
//! assert_eq!(message.envelope().to().collect::<Vec<_>>(), ["bob@example.org", "carol@example.org"]);
//! assert_eq!(message.as_bytes(), b"From: alice@example.com\r\nTo: bob@example.org\r\n\r\nHi\r\n");
//! # Ok::<(), postline::MessageError>(())
//! ```

mod builder;
mod error;
mod header;
mod id;
mod mailbox;
mod part;
mod priority;
pub mod ready;

pub use builder::MessageBuilder;
pub use error::MessageError;
pub use mailbox::{IntoMailbox, Mailbox};
pub use priority::Priority;
pub use ready::HeaderRecipients;

use crate::{Envelope, Error};

/// A message ready to send: its bytes and its envelope.
///
/// The bytes are what goes after DATA: CRLF line endings, and for a built message no line
/// over 998 octets and no Bcc field. The envelope holds the sender (`MAIL FROM`) and every
/// recipient (`RCPT TO`), blind copies included; set DSN or REQUIRETLS options on it after
/// [`into_parts`](Message::into_parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    envelope: Envelope,
    bytes: Vec<u8>,
    message_id: Option<String>,
}

impl Message {
    /// A builder for a new message.
    pub fn builder() -> MessageBuilder {
        MessageBuilder::new()
    }

    /// Who the message goes from and to, for [`Client::send_bytes`](crate::Client::send_bytes).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The message as it is sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope and the bytes, to change the envelope or keep the bytes without a copy.
    pub fn into_parts(self) -> (Envelope, Vec<u8>) {
        (self.envelope, self.bytes)
    }

    /// The `Message-ID`, without angle brackets (as mail-builder's `in_reply_to` and
    /// mail-parser take it): to log, or to thread a reply with `In-Reply-To`. `None` for
    /// a ready message without one.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The envelope from `from` to each of `to`, a recipient given twice sent once: addresses
/// compare with the domain in any case (it is a DNS name) and the local part as written
/// (RFC 5321 2.4 leaves its case to the receiving server).
fn envelope<'a>(from: &str, to: impl Iterator<Item = &'a str>) -> Result<Envelope, MessageError> {
    let mut seen: Vec<String> = Vec::new();
    let mut unique: Vec<&str> = Vec::new();
    for address in to {
        let key = match address.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
            None => address.to_string(),
        };
        if !seen.contains(&key) {
            seen.push(key);
            unique.push(address);
        }
    }
    if unique.is_empty() {
        return Err(MessageError::NoRecipients);
    }
    Envelope::new(from, unique).map_err(|e| match e {
        Error::Address { address, source } => MessageError::address(&address, source.to_string()),
        Error::NoRecipients => MessageError::NoRecipients,
        other => MessageError::address(from, other.to_string()),
    })
}
