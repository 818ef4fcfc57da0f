//! Composing a mail on the device, as the NetX Duo and embOS/IP SMTP clients do, but
//! complete: `From`, `To`, `Subject` (RFC 2047 when it is not plain ASCII), `Date` from the
//! device's clock, `Message-ID`, `X-Priority`/`Importance`, MIME headers, then the body; all
//! written straight into the session, with no message buffer and no allocation.

use base64::Engine as _;
use embedded_io_async::{Read, Write};
use postline_proto::buf::decimal;
use postline_proto::command::Address;
use postline_proto::date::Rfc5322;

use crate::client::{Client, Status};
use crate::clock::Clock;
use crate::error::Error;

/// The longest line RFC 5322 2.1.1 allows, without its CRLF.
pub const MAX_LINE: usize = 998;

/// How urgent a mail says it is (`X-Priority` and `Importance`, as mail programs read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `X-Priority: 1 (Highest)`, `Importance: high`.
    High,
    /// `X-Priority: 3 (Normal)`, `Importance: normal`.
    Normal,
    /// `X-Priority: 5 (Lowest)`, `Importance: low`.
    Low,
}

/// A plain-text mail to compose and send.
#[derive(Debug, Clone, Copy)]
pub struct Mail<'a> {
    /// The sender (`From:` and the envelope's MAIL FROM).
    pub from: Address<&'a str>,
    /// The recipients (`To:` and the envelope).
    pub to: &'a [Address<&'a str>],
    /// The subject, any UTF-8.
    pub subject: &'a str,
    /// The priority.
    pub priority: Priority,
    /// UTF-8 text; any line endings. No line may exceed [`MAX_LINE`] octets.
    pub body: &'a [u8],
}

/// Whether `text` may stand in a header as it is: printable ASCII, short enough for a line.
fn plain_header_text(text: &str) -> bool {
    text.len() <= 900 && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Whether a line of `body` is longer than RFC 5322 allows.
fn has_long_line(body: &[u8]) -> bool {
    body.split(|b| *b == b'\n')
        .any(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > MAX_LINE)
}

impl<'b, S: Read + Write, C: Clock> Client<'b, S, C> {
    /// Composes `mail` and sends it (see the [module docs](self)); each recipient's RCPT code
    /// lands in `codes`. The status carries the server's reply code and text.
    pub async fn send_mail(
        &mut self,
        mail: &Mail<'_>,
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        if has_long_line(mail.body) {
            return Err(Error::LineTooLong);
        }
        if let Some(status) = self.begin(mail.from, mail.to, None, codes).await? {
            return Ok(status);
        }
        self.headers(mail).await?;
        self.data(mail.body).await?;
        self.end(codes).await
    }

    async fn headers(&mut self, mail: &Mail<'_>) -> Result<(), Error<S::Error>> {
        let from = mail.from.as_str();
        self.data(b"From: <").await?;
        self.data(from.as_bytes()).await?;
        self.data(b">\r\nTo: ").await?;
        for (i, to) in mail.to.iter().enumerate() {
            if i > 0 {
                // One address a line: no line grows with the number of recipients.
                self.data(b",\r\n ").await?;
            }
            self.data(b"<").await?;
            self.data(to.as_str().as_bytes()).await?;
            self.data(b">").await?;
        }
        self.data(b"\r\nSubject: ").await?;
        if plain_header_text(mail.subject) {
            self.data(mail.subject.as_bytes()).await?;
        } else {
            self.encoded_words(mail.subject).await?;
        }
        self.data(b"\r\n").await?;
        // Numbers and the date are spelled by hand, not with `core::fmt`: on a device its
        // number formatting would cost kilobytes of code.
        let unix = self.clock().unix_time();
        if let Some(unix) = unix {
            let mut date = [0u8; Rfc5322::MAX_LEN];
            self.data(b"Date: ").await?;
            self.data(Rfc5322(unix).write_to(&mut date)).await?;
            self.data(b"\r\n").await?;
        }
        let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
        let n = self.next_message_number();
        let now = self.clock().now_ms();
        let mut digits = [0u8; 20];
        self.data(b"Message-ID: <").await?;
        let unix = u64::try_from(unix.unwrap_or(0)).unwrap_or(0);
        self.data(decimal(unix, &mut digits)).await?;
        self.data(b".").await?;
        self.data(decimal(now, &mut digits)).await?;
        self.data(b".").await?;
        self.data(decimal(u64::from(n), &mut digits)).await?;
        self.data(b"@").await?;
        self.data(domain.as_bytes()).await?;
        self.data(match mail.priority {
            Priority::High => b">\r\nX-Priority: 1 (Highest)\r\nImportance: high\r\n",
            Priority::Normal => b">\r\nX-Priority: 3 (Normal)\r\nImportance: normal\r\n",
            Priority::Low => b">\r\nX-Priority: 5 (Lowest)\r\nImportance: low\r\n" as &[u8],
        })
        .await?;
        self.data(
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: 8bit\r\n\r\n",
        )
        .await
    }

    /// `text` as RFC 2047 encoded words (`=?UTF-8?B?...?=`), at most 45 octets of it per word
    /// (60 base64 characters, 72 with the markers), a word a line, never splitting a
    /// character.
    async fn encoded_words(&mut self, text: &str) -> Result<(), Error<S::Error>> {
        let mut rest = text;
        let mut first = true;
        while !rest.is_empty() {
            let mut cut = rest.len().min(45);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (word, tail) = rest.split_at(cut);
            let mut b64 = [0u8; 60];
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(word, &mut b64)
                .unwrap_or(0);
            if !first {
                self.data(b"\r\n ").await?;
            }
            self.data(b"=?UTF-8?B?").await?;
            self.data(&b64[..n]).await?;
            self.data(b"?=").await?;
            first = false;
            rest = tail;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_found() {
        let ok = [b'a'; MAX_LINE];
        assert!(!has_long_line(&ok));
        let long = [b'a'; MAX_LINE + 1];
        assert!(has_long_line(&long));
        let mut crlf = [b'a'; MAX_LINE + 2];
        crlf[MAX_LINE] = b'\r';
        crlf[MAX_LINE + 1] = b'\n';
        assert!(!has_long_line(&crlf));
    }

    #[test]
    fn plain_subjects_stay_plain() {
        assert!(plain_header_text("Temperature alarm"));
        assert!(!plain_header_text("Température"));
        assert!(!plain_header_text("a\r\nBcc: x@y"));
    }
}
