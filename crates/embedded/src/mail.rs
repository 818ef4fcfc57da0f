//! Composing a mail on the device, as the NetX Duo and embOS/IP SMTP clients do, but
//! complete: `From`, `To`, `Subject` (RFC 2047 when it is not plain ASCII), `Date` from the
//! device's clock, `Message-ID` (both only when the device knows the time of day),
//! `X-Priority`/`Importance`, MIME headers, then the body; all
//! written straight into the session, with no message buffer and no allocation.

use embedded_io_async::{Read, Write};
use postline_proto::buf::decimal;
use postline_proto::command::Address;
use postline_proto::date::Rfc5322;
use postline_proto::negotiate::BodyType;

use crate::client::{Client, Status};
use crate::clock::Clock;
use crate::engine::{body_type, Body, Engine, Job, Outgoing};
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

/// Whether a line of `body` is longer than RFC 5322 allows. A line ends at CR, LF or both
/// (a bare CR goes out as a line end too).
fn has_long_line(body: &[u8]) -> bool {
    body.split(|b| matches!(b, b'\n' | b'\r'))
        .any(|l| l.len() > MAX_LINE)
}

impl Mail<'_> {
    /// What keeps this mail from being composed: a body line over [`MAX_LINE`] octets.
    pub(crate) fn check<E>(&self) -> Result<(), Error<E>> {
        if has_long_line(self.body) {
            return Err(Error::LineTooLong);
        }
        Ok(())
    }
}

impl<'b, S: Read + Write, C: Clock> Client<'b, S, C> {
    /// Composes `mail` and sends it (see the [module docs](self)); each recipient's RCPT code
    /// lands in `codes`. The status carries the server's reply code and text.
    pub async fn send_mail(
        &mut self,
        mail: &Mail<'_>,
        codes: &mut [u16],
    ) -> Result<Status, Error<S::Error>> {
        mail.check()?;
        let (unix, now) = (self.clock.unix_time(), self.clock.now_ms());
        let mut job = self.engine.mail_job(mail, codes, unix, now);
        self.message(&mut job).await
    }
}

impl<'b> Engine<'b> {
    /// The job of sending `mail`, composed as it goes out: `Date:` from `unix` (when known),
    /// a Message-ID from the time, `now` and a number no earlier message on this client had.
    /// Check the mail with [`Mail::check`] first. (Infallible, so the job is made where it
    /// is used rather than moved out of a `Result`: it is a few hundred bytes of stack. Out
    /// of line, so setting it up leaves no temporaries in the frame that then sends it.)
    #[inline(never)]
    pub(crate) fn mail_job<'j>(
        &mut self,
        mail: &'j Mail<'j>,
        codes: &'j mut [u16],
        unix: Option<i64>,
        now: u64,
    ) -> Job<'j>
    where
        'b: 'j,
    {
        let n = self.next_message_number();
        let composer = Composer::new(mail, unix, now, n, self.config.hello);
        Job {
            codes,
            // The headers are ASCII (a subject that is not is encoded): the body decides.
            envelope: Some(Outgoing {
                from: mail.from,
                to: mail.to,
                size: None,
                body: body_type(mail.body),
            }),
            body: Some(Body::Mail(Parts::new(composer))),
            status: None,
        }
    }
}

/// The composed message as a run of byte strings, taken a piece at a time as the output
/// buffer has room: each part's head, text and tail in turn.
pub(crate) struct Parts<'m> {
    composer: Composer<'m>,
    part: Option<Part<'m>>,
    /// The bytes the current part spells (a date, a number, an encoded word): written here
    /// in place, so no part carries or copies a buffer of its own.
    spelled: Spelled,
    /// Which of the part's three pieces, and how far into it.
    piece: u8,
    at: usize,
}

impl<'m> Parts<'m> {
    /// Starts on an empty part, so the composer's first part is made by the first
    /// [`Parts::current`]: made here, it was built aside and copied in with the composer and
    /// `spelled` (three copies, and a 300-byte frame, to make a job).
    fn new(composer: Composer<'m>) -> Self {
        Parts {
            composer,
            part: Some(Part::new(b"", Text::Borrowed(b""), b"")),
            spelled: [0; SPELLED],
            piece: 0,
            at: 0,
        }
    }

    /// The bytes not yet taken of the current piece; empty when the message is all taken.
    pub(crate) fn current(&mut self) -> &[u8] {
        loop {
            let len = match &self.part {
                None => return &[],
                Some(p) => p.piece(self.piece, &self.spelled).map(<[u8]>::len),
            };
            match len {
                Some(len) if self.at < len => break,
                Some(_) => {
                    self.piece += 1;
                    self.at = 0;
                }
                None => {
                    self.part = self.composer.next(&mut self.spelled);
                    self.piece = 0;
                    self.at = 0;
                }
            }
        }
        match &self.part {
            Some(p) => p
                .piece(self.piece, &self.spelled)
                .and_then(|b| b.get(self.at..))
                .unwrap_or(&[]),
            None => &[],
        }
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

/// Room for the longest text a part spells: an encoded word's 60 base64 characters (a date
/// needs 48, a number 20).
const SPELLED: usize = 60;
type Spelled = [u8; SPELLED];

/// The middle of a [`Part`]: borrowed from the mail, or these bytes of [`Parts::spelled`].
#[derive(Clone, Copy)]
enum Text<'m> {
    Borrowed(&'m [u8]),
    Spelled { start: u8, end: u8 },
}

impl<'m> Text<'m> {
    /// The bytes `spelled` holds from `start`, to its end or `end`. (A range of a few bytes,
    /// checked by `get`, never a panic.)
    fn spelled(spelled: &[u8], start: usize, end: usize) -> Self {
        let clamp = |i: usize| u8::try_from(i.min(spelled.len())).unwrap_or(0);
        Text::Spelled {
            start: clamp(start),
            end: clamp(end),
        }
    }

    fn bytes<'s>(self, spelled: &'s [u8]) -> &'s [u8]
    where
        'm: 's,
    {
        match self {
            Text::Borrowed(b) => b,
            Text::Spelled { start, end } => spelled
                .get(usize::from(start)..usize::from(end))
                .unwrap_or(&[]),
        }
    }
}

/// A piece of the composed message: fixed text, a variable middle, fixed text.
struct Part<'m> {
    head: &'static [u8],
    text: Text<'m>,
    tail: &'static [u8],
}

impl<'m> Part<'m> {
    fn new(head: &'static [u8], text: Text<'m>, tail: &'static [u8]) -> Self {
        Part { head, text, tail }
    }

    /// Piece `i`: 0 the head, 1 the text (`spelled` holds what it spells), 2 the tail.
    fn piece<'s>(&self, i: u8, spelled: &'s [u8]) -> Option<&'s [u8]>
    where
        'm: 's,
    {
        match i {
            0 => Some(self.head),
            1 => Some(self.text.bytes(spelled)),
            2 => Some(self.tail),
            _ => None,
        }
    }
}

/// Where the [`Composer`] is.
#[derive(Clone, Copy)]
enum Stage {
    From,
    /// The recipient with this index.
    To(usize),
    Subject,
    /// The subject's encoded words, from this byte of it on.
    Word(usize),
    Date,
    IdTime,
    IdClock,
    IdNumber,
    IdDomain,
    Priority,
    Body,
    Done,
}

/// The whole message (headers, then the body) as a sequence of [`Part`]s: From, To (one
/// address a line), Subject (RFC 2047 when it is not plain ASCII), Date, Message-ID
/// (`<unix.ms.n@hello-name>`), X-Priority and Importance, the MIME headers. Date and
/// Message-ID need the time of day: without it both are left to the submission server
/// (RFC 6409 8.3), as a Message-ID from the time since boot and a count kept in RAM could
/// repeat after a restart, and a receiver that drops repeated Message-IDs would lose the mail. Numbers and the
/// date are spelled by hand, not with `core::fmt`, whose number formatting would cost a
/// device kilobytes of code.
struct Composer<'m> {
    mail: &'m Mail<'m>,
    stage: Stage,
    unix: Option<i64>,
    now: u64,
    n: u32,
    /// The device's name (its EHLO name): the Message-ID's right side, so two devices
    /// sending from one address never make the same one.
    hello: &'m str,
}

impl<'m> Composer<'m> {
    /// The time of day, when the device knows it and RFC 5322 can write its year.
    fn time(&self) -> Option<i64> {
        self.unix
            .filter(|t| (-2_208_988_800..=253_402_300_799).contains(t))
    }

    fn new(mail: &'m Mail<'m>, unix: Option<i64>, now: u64, n: u32, hello: &'m str) -> Self {
        Composer {
            mail,
            stage: Stage::From,
            unix,
            now,
            n,
            hello,
        }
    }

    /// The next part, its spelled text written into `spelled`; `None` after the body.
    fn next(&mut self, spelled: &mut Spelled) -> Option<Part<'m>> {
        let mail = self.mail;
        let (stage, part) = match self.stage {
            Stage::From => (
                Stage::To(0),
                Part::new(
                    b"From: <",
                    Text::Borrowed(mail.from.as_str().as_bytes()),
                    b">\r\nTo: ",
                ),
            ),
            Stage::To(i) => {
                let to = mail.to.get(i).map_or("", |a| a.as_str());
                // One address a line: no line grows with the number of recipients.
                let head: &[u8] = if i == 0 { b"<" } else { b",\r\n <" };
                let next = if i + 1 < mail.to.len() {
                    Stage::To(i + 1)
                } else {
                    Stage::Subject
                };
                (next, Part::new(head, Text::Borrowed(to.as_bytes()), b">"))
            }
            Stage::Subject if plain_header_text(mail.subject) => (
                Stage::Date,
                Part::new(
                    b"\r\nSubject: ",
                    Text::Borrowed(mail.subject.as_bytes()),
                    b"\r\n",
                ),
            ),
            Stage::Subject => self.word(0, spelled),
            Stage::Word(at) => self.word(at, spelled),
            // RFC 5322 wants a four-digit year: a clock outside 1900..=9999 gives no Date
            // (and no Message-ID, which is made from the same time); the priority follows.
            Stage::Date => match (self.time(), spelled.first_chunk_mut()) {
                (Some(unix), Some(date)) => {
                    let len = Rfc5322(unix).write_to(date).len();
                    let text = Text::spelled(spelled, 0, len);
                    (Stage::IdTime, Part::new(b"Date: ", text, b"\r\n"))
                }
                _ => (Stage::Body, self.priority()),
            },
            Stage::IdTime => {
                let unix = u64::try_from(self.time().unwrap_or(0)).unwrap_or(0);
                (
                    Stage::IdClock,
                    Part::new(b"Message-ID: <", number(unix, spelled), b"."),
                )
            }
            Stage::IdClock => (
                Stage::IdNumber,
                Part::new(b"", number(self.now, spelled), b"."),
            ),
            Stage::IdNumber => (
                Stage::IdDomain,
                Part::new(b"", number(u64::from(self.n), spelled), b"@"),
            ),
            Stage::IdDomain => (
                Stage::Priority,
                Part::new(b"", Text::Borrowed(self.hello.as_bytes()), b">\r\n"),
            ),
            Stage::Priority => (Stage::Body, self.priority()),
            Stage::Body => (Stage::Done, Part::new(b"", Text::Borrowed(mail.body), b"")),
            Stage::Done => return None,
        };
        self.stage = stage;
        Some(part)
    }

    /// `X-Priority` and `Importance`, then the MIME headers: one part, the last of the
    /// headers.
    fn priority(&self) -> Part<'m> {
        let head: &[u8] = match self.mail.priority {
            Priority::High => b"X-Priority: 1 (Highest)\r\nImportance: high\r\n",
            Priority::Normal => b"X-Priority: 3 (Normal)\r\nImportance: normal\r\n",
            Priority::Low => b"X-Priority: 5 (Lowest)\r\nImportance: low\r\n",
        };
        Part::new(
            head,
            Text::Borrowed(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"),
            // An ASCII body is 7bit, and goes to any server; others need 8BITMIME.
            if body_type(self.mail.body) == BodyType::SevenBit {
                b"Content-Transfer-Encoding: 7bit\r\n\r\n"
            } else {
                b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            },
        )
    }

    /// The subject's RFC 2047 encoded word (`=?UTF-8?B?...?=`) starting at byte `at`, in
    /// `spelled`: at most 39 octets of it on the first line and 45 on the others (lines of
    /// at most 73 characters), a word a line, never splitting a character. The stage after
    /// it, and the part.
    fn word(&self, at: usize, spelled: &mut Spelled) -> (Stage, Part<'m>) {
        let first = at == 0;
        // As bytes (`at` is where an earlier word ended, a character's start): a `str`'s
        // slicing checks character boundaries once more, in code of its own.
        let rest = self.mail.subject.as_bytes().get(at..).unwrap_or(&[]);
        // "Subject: " and the markers leave 52 base64 characters (39 octets) on the first
        // line and 60 (45 octets) on the others within RFC 2047's 76.
        let mut cut = rest.len().min(if first { 39 } else { 45 });
        // Back to the start of a character: never before a UTF-8 continuation byte.
        while rest.get(cut).is_some_and(|&b| b & 0xc0 == 0x80) {
            cut -= 1;
        }
        let n = postline_proto::sasl::encode_base64(rest.get(..cut).unwrap_or(&[]), spelled)
            .map_or(0, <[u8]>::len);
        let last = cut == rest.len();
        let stage = if last {
            Stage::Date
        } else {
            Stage::Word(at + cut)
        };
        let head: &[u8] = if first {
            b"\r\nSubject: =?UTF-8?B?"
        } else {
            b"\r\n =?UTF-8?B?"
        };
        let tail: &[u8] = if last { b"?=\r\n" } else { b"?=" };
        (stage, Part::new(head, Text::spelled(spelled, 0, n), tail))
    }
}

/// `n` in decimal at the end of `spelled`'s first 20 bytes.
fn number<'m>(n: u64, spelled: &mut Spelled) -> Text<'m> {
    match spelled.first_chunk_mut() {
        Some(digits) => {
            let len = decimal(n, digits).len();
            Text::spelled(spelled, 20 - len, 20)
        }
        None => Text::Borrowed(b""),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

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
        // Lines ended by a bare CR are lines too.
        let mut cr = [b'a'; 3 * MAX_LINE];
        cr[MAX_LINE] = b'\r';
        cr[2 * MAX_LINE + 1] = b'\r';
        assert!(!has_long_line(&cr));
        cr[2 * MAX_LINE + 1] = b'a';
        assert!(has_long_line(&cr));
    }

    /// The composed message, piece by piece as the engine takes it.
    fn composed(unix: Option<i64>) -> std::string::String {
        let to = [Address::new("ops@example.com").unwrap()];
        let mail = Mail {
            from: Address::new("dev@example.com").unwrap(),
            to: &to,
            subject: "Pump 3",
            priority: Priority::Low,
            body: b"up\r\n",
        };
        let mut parts = Parts::new(Composer::new(&mail, unix, 1234, 7, "dev.example"));
        let mut text = std::vec::Vec::new();
        loop {
            let piece = parts.current();
            if piece.is_empty() {
                break;
            }
            let n = piece.len();
            text.extend_from_slice(piece);
            parts.consume(n);
        }
        std::string::String::from_utf8(text).unwrap()
    }

    #[test]
    fn date_and_message_id_only_with_the_time_of_day() {
        let with = composed(Some(1_700_000_000));
        assert!(
            with.contains("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "{with}"
        );
        assert!(
            with.contains("\r\nMessage-ID: <1700000000.1234.7@dev.example>\r\n"),
            "{with}"
        );
        // Without it (or with a clock RFC 5322 cannot write) neither is made up.
        for unix in [None, Some(253_402_300_800)] {
            let without = composed(unix);
            assert!(
                !without.contains("Date:") && !without.contains("Message-ID"),
                "{without}"
            );
            assert!(without.contains("\r\nX-Priority: 5 (Lowest)\r\nImportance: low\r\n"));
            assert!(without.ends_with("\r\n\r\nup\r\n"), "{without}");
        }
    }

    #[test]
    fn plain_subjects_stay_plain() {
        assert!(plain_header_text("Temperature alarm"));
        assert!(!plain_header_text("Température"));
        assert!(!plain_header_text("a\r\nBcc: x@y"));
    }
}
