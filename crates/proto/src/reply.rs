//! Incremental parser of SMTP replies (RFC 5321 section 4.2, RFC 3463 enhanced codes).
//!
//! A reply may arrive one byte at a time, or several pipelined replies may arrive in one read,
//! so [`ReplyParser`] takes the caller's growing buffer, remembers how far it has looked (as an
//! offset, never a pointer) and hands back the first complete reply with the number of bytes it
//! took. Every input, however hostile, ends in a reply or a [`ReplyError`]: lines and line counts
//! are bounded, so a server cannot make the client buffer or scan without limit.

use core::fmt;

/// Longest reply line accepted, counting its line ending.
pub const MAX_LINE_LEN: usize = 4096;
/// Most lines accepted in one multiline reply.
pub const MAX_LINES: usize = 256;

/// A three-digit reply code, validated: first digit 2-5, second 0-5, third 0-9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(u16);

/// What the input holds while no reply is due (see [`unprompted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprompted {
    /// Nothing, or a 421: a server may say it unprompted (RFC 5321 3.8), and the session
    /// handles it as the end of service.
    Allowed,
    /// One or two bytes that may begin a 421 (`4`, `42`): the driver looks again once three
    /// are in, even after it has sent a command, since no answer to that command can begin
    /// before it was sent.
    Unsure,
    /// Anything else: bytes of a reply sent before the command it would answer. Taking it for
    /// that command's reply would shift every later reply by one, so the driver ends the
    /// session with this error.
    Premature(crate::session::SessionError),
}

/// What `input`, held while no reply is due, may be. Checked on every byte, not only on a
/// whole code: a reply split across reads (`250 ok\r\n25`, then `0 ok\r\n`) would otherwise
/// have its first bytes taken, after the next command is sent, for that command's answer.
pub fn unprompted(input: &[u8]) -> Unprompted {
    use crate::session::SessionError;
    let n = input.len().min(3);
    if input[..n] == b"421"[..n] {
        return match n {
            1 | 2 => Unprompted::Unsure,
            _ => Unprompted::Allowed,
        };
    }
    let code = match *input {
        [a, b, c, ..] => Code::from_digits([a, b, c]),
        _ => None,
    };
    Unprompted::Premature(match code {
        Some(code) => SessionError::UnexpectedReply { code },
        None => SessionError::UnexpectedInput,
    })
}

/// What the first digit of a reply code says about the command's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 2yz: done.
    PositiveCompletion,
    /// 3yz: go on (354 after DATA, 334 during AUTH).
    PositiveIntermediate,
    /// 4yz: failed this time; trying again later may work.
    TransientNegative,
    /// 5yz: failed; do not repeat unchanged.
    PermanentNegative,
}

impl Code {
    /// Builds a code from its numeric value, if it is a valid reply code.
    pub const fn new(value: u16) -> Option<Code> {
        let (a, b) = (value / 100, value / 10 % 10);
        if a >= 2 && a <= 5 && b <= 5 {
            Some(Code(value))
        } else {
            None
        }
    }
    /// The numeric value, e.g. 250.
    pub const fn value(self) -> u16 {
        self.0
    }
    /// The class given by the first digit.
    pub const fn severity(self) -> Severity {
        match self.0 / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            _ => Severity::PermanentNegative,
        }
    }
    /// 2yz.
    pub const fn is_positive_completion(self) -> bool {
        self.0 / 100 == 2
    }
    /// 3yz.
    pub const fn is_intermediate(self) -> bool {
        self.0 / 100 == 3
    }
    /// 4yz.
    pub const fn is_transient(self) -> bool {
        self.0 / 100 == 4
    }
    /// 5yz.
    pub const fn is_permanent(self) -> bool {
        self.0 / 100 == 5
    }

    /// Reads the three digits that open a reply line, checking each against its range as
    /// [`Code::new`] does, without taking the number apart again: two divisions, and 190 B
    /// more of a device build.
    fn from_digits([a, b, c]: [u8; 3]) -> Option<Code> {
        if !matches!(a, b'2'..=b'5') || !matches!(b, b'0'..=b'5') || !c.is_ascii_digit() {
            return None;
        }
        let digit = |d: u8| u16::from(d - b'0');
        Some(Code(digit(a) * 100 + digit(b) * 10 + digit(c)))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// 0-999.
    pub subject: u16,
    /// 0-999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Reads an enhanced code at the start of a line's text, as servers write it
    /// (`5.1.1 <x@y>: ...`), so callers can classify failures more finely than the reply code
    /// allows. The code must be followed by a space or end the text; returns the code and the
    /// number of bytes it took (the space excluded).
    pub fn parse_prefix(text: &[u8]) -> Option<(EnhancedCode, usize)> {
        let (class, rest) = match text {
            [c @ (b'2' | b'4' | b'5'), b'.', rest @ ..] => (*c - b'0', rest),
            _ => return None,
        };
        let (subject, n1, rest) = number_upto3(rest)?;
        let rest = match rest {
            [b'.', rest @ ..] => rest,
            _ => return None,
        };
        let (detail, n2, rest) = number_upto3(rest)?;
        match rest {
            [] | [b' ', ..] => Some((
                EnhancedCode {
                    class,
                    subject,
                    detail,
                },
                2 + n1 + 1 + n2,
            )),
            _ => None,
        }
    }
}

/// One to three decimal digits, as RFC 3463 allows for the subject and detail.
///
/// Walks the digits with a slice pattern rather than counting them and then splitting:
/// `split_at` with a count the compiler cannot bound brought its panic (and `core::fmt`'s
/// message for it) into a device build.
fn number_upto3(s: &[u8]) -> Option<(u16, usize, &[u8])> {
    let (mut value, mut n, mut rest) = (0u16, 0, s);
    while let [d @ b'0'..=b'9', tail @ ..] = rest {
        if n == 3 {
            return None;
        }
        value = value * 10 + u16::from(d - b'0');
        n += 1;
        rest = tail;
    }
    (n > 0).then_some((value, n, rest))
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A complete reply, borrowing the input it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    raw: &'a [u8],
    code: Code,
    lines: u16,
}

impl<'a> Reply<'a> {
    /// Parses the first reply in bytes that are already all there (a test fixture, a recorded
    /// transcript), where "incomplete" can only mean the reply is cut short. Bytes after the
    /// reply are ignored; use [`ReplyParser`] to learn how many were taken.
    pub fn parse_complete(input: &'a [u8]) -> Result<Reply<'a>, ReplyError> {
        match ReplyParser::new().parse(input)? {
            Some((reply, _)) => Ok(reply),
            None => Err(ReplyError::MissingLineEnd),
        }
    }
    /// The reply code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The enhanced status code from the first line, when the server sent one (of the
    /// reply's own class: `250 5.1.1` has none). Read from the text when asked, not while
    /// parsing: a driver that never asks (a device's) carries no code for it.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        let class = (self.code.value() / 100) as u8;
        self.lines()
            .next()
            .and_then(EnhancedCode::parse_prefix)
            .map(|(e, _)| e)
            .filter(|e| e.class == class)
    }
    /// All the reply's bytes, line endings included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.lines as usize
    }
    /// The text of each line: what follows `xyz-` / `xyz ` (the enhanced code, if any, is
    /// kept), without the line ending.
    pub fn lines(&self) -> Lines<'a> {
        Lines { rest: self.raw }
    }
    /// The line texts for a human reader: servers repeat the enhanced code on every line
    /// (`550-5.1.1 ...`, `550 5.1.1 ...`), which is noise once [`Reply::enhanced`] has it, so a
    /// leading copy of the reply's enhanced code and its space are dropped from each line.
    pub fn text_lines(&self) -> TextLines<'a> {
        TextLines {
            lines: self.lines(),
            enhanced: self.enhanced(),
        }
    }
}

/// Iterator over a reply's line texts.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        // The parser accepted these bytes, so every line ends in LF (CR optional) and starts
        // with a code; `get` keeps a malformed slice from panicking all the same.
        let (line, rest) = match crate::buf::find(b'\n', self.rest) {
            Some(i) => (
                self.rest.get(..i).unwrap_or_default(),
                self.rest.get(i + 1..).unwrap_or_default(),
            ),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        // A pattern, not `strip_suffix`, whose slice comparison cost a device build 50 B.
        let line = match line {
            [line @ .., b'\r'] => line,
            _ => line,
        };
        Some(line.get(4..).unwrap_or_default())
    }
}

/// Iterator over a reply's line texts without a leading enhanced code; see
/// [`Reply::text_lines`].
#[derive(Debug, Clone)]
pub struct TextLines<'a> {
    lines: Lines<'a>,
    enhanced: Option<EnhancedCode>,
}

impl<'a> Iterator for TextLines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let text = self.lines.next()?;
        Some(match (self.enhanced, EnhancedCode::parse_prefix(text)) {
            (Some(want), Some((got, n))) if want == got => {
                let rest = text.get(n..).unwrap_or_default();
                rest.strip_prefix(b" ").unwrap_or(rest)
            }
            _ => text,
        })
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than [`MAX_LINE_LEN`].
    LineTooLong,
    /// More than [`MAX_LINES`] lines in one reply.
    TooManyLines,
    /// A line that does not start with a valid three-digit code.
    InvalidCode,
    /// The code is not followed by a space, a hyphen or the line ending.
    InvalidSeparator,
    /// A continuation line whose code differs from the first line's.
    MixedCodes {
        /// The first line's code.
        first: Code,
        /// The odd line's code.
        found: Code,
    },
    /// A CR not followed by LF, or input that ended in the middle of a line.
    MissingLineEnd,
}

impl core::error::Error for ReplyError {}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => {
                write!(f, "reply line longer than {MAX_LINE_LEN} bytes")
            }
            ReplyError::TooManyLines => write!(f, "reply has more than {MAX_LINES} lines"),
            ReplyError::InvalidCode => f.write_str("reply line does not start with a valid code"),
            ReplyError::InvalidSeparator => {
                f.write_str("reply code not followed by space, hyphen or line end")
            }
            ReplyError::MixedCodes { first, found } => {
                write!(f, "multiline reply mixes codes {first} and {found}")
            }
            ReplyError::MissingLineEnd => {
                f.write_str("reply line without CRLF ending (stray CR or cut short)")
            }
        }
    }
}

/// Resumable reply parser: feed it the same growing input until a reply is complete.
///
/// State is a handful of offsets and what the finished lines said, so resuming costs nothing
/// and the bytes already searched are not searched again: parsing is linear in the reply's size
/// however it is split. After an error the parser keeps returning that error until
/// [`ReplyParser::reset`], since the byte stream has lost its framing.
#[derive(Debug, Clone, Default)]
pub struct ReplyParser {
    /// Where, in the caller's input, the current line starts.
    line_start: usize,
    /// How far the current line has been searched for its ending.
    scanned: usize,
    /// The first line's code, once that line is complete.
    first: Option<Code>,
    /// Complete lines so far.
    lines: u16,
    /// The error already reported, repeated until reset.
    error: Option<ReplyError>,
}

/// What one complete line said: its code, and whether it is the reply's last.
struct Line {
    code: Code,
    last: bool,
}

impl ReplyParser {
    /// A parser at the start of a reply.
    pub const fn new() -> Self {
        ReplyParser {
            line_start: 0,
            scanned: 0,
            first: None,
            lines: 0,
            error: None,
        }
    }

    /// Parses one reply from the start of `input`.
    ///
    /// `Ok(None)`: the reply is not complete yet; call again with the same bytes and more
    /// appended. `Ok(Some((reply, n)))`: the reply is `input[..n]`; bytes after it (pipelined
    /// replies) are untouched and the parser is ready for the next reply, which starts at
    /// `input[n]`.
    pub fn parse<'a>(&mut self, input: &'a [u8]) -> Result<Option<(Reply<'a>, usize)>, ReplyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.scanned > input.len() {
            // Not the same bytes as last time (caller misuse): start over rather than trust
            // stale offsets.
            self.reset();
        }
        loop {
            let step = match self.next_line(input) {
                Ok(Some((content_end, line_end))) => self.accept_line(input, content_end, line_end),
                Ok(None) => return Ok(None),
                Err(e) => Err(e),
            };
            match step {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => continue,
                Err(e) => {
                    self.error = Some(e);
                    return Err(e);
                }
            }
        }
    }

    /// Called when the connection closed: an unfinished reply is an error.
    ///
    /// `input` is what is left after the last complete reply; the most specific error about it
    /// wins (a line already too long says more than "cut short").
    pub fn finish(&mut self, input: &[u8]) -> Result<(), ReplyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if input.is_empty() {
            return Ok(());
        }
        self.parse(input)?;
        Err(ReplyError::MissingLineEnd)
    }

    /// Forgets any partial progress.
    pub fn reset(&mut self) {
        *self = ReplyParser::new();
    }

    /// Finds the end of the current line: `Some((content_end, line_end))`, or `None` when more
    /// input is needed. Only the first [`MAX_LINE_LEN`] bytes of a line are ever looked at.
    fn next_line(&mut self, input: &[u8]) -> Result<Option<(usize, usize)>, ReplyError> {
        let start = self.line_start;
        let limit = start.saturating_add(MAX_LINE_LEN).min(input.len());
        let from = self.scanned.max(start);
        let window = input.get(from..limit).unwrap_or_default();
        let Some(i) = crate::buf::find_cr_or_lf(window) else {
            self.scanned = limit;
            return if limit - start >= MAX_LINE_LEN {
                Err(ReplyError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        let pos = from + i;
        if window.get(i) == Some(&b'\n') {
            return Ok(Some((pos, pos + 1)));
        }
        // A CR: the line is fine only if LF follows and the pair still fits.
        if pos + 1 - start >= MAX_LINE_LEN {
            return Err(ReplyError::LineTooLong);
        }
        match input.get(pos + 1) {
            Some(b'\n') => Ok(Some((pos, pos + 2))),
            Some(_) => Err(ReplyError::MissingLineEnd),
            None => {
                self.scanned = pos;
                Ok(None)
            }
        }
    }

    /// Checks a complete line against the reply so far; `Some` once the reply is complete.
    /// ("More input needed" is [`Self::next_line`]'s to say: folded in here as an
    /// `Option<Option<..>>` it cost a device build 100 B of tag handling.)
    fn accept_line<'a>(
        &mut self,
        input: &'a [u8],
        content_end: usize,
        line_end: usize,
    ) -> Result<Option<(Reply<'a>, usize)>, ReplyError> {
        let content = input.get(self.line_start..content_end).unwrap_or_default();
        let line = split_line(content)?;
        let first = match self.first {
            None => {
                self.first = Some(line.code);
                line.code
            }
            Some(first) if first != line.code => {
                return Err(ReplyError::MixedCodes {
                    first,
                    found: line.code,
                })
            }
            Some(first) => first,
        };
        self.lines += 1;
        if line.last {
            let reply = Reply {
                raw: input.get(..line_end).unwrap_or_default(),
                code: first,
                lines: self.lines,
            };
            self.reset();
            return Ok(Some((reply, line_end)));
        }
        // The next line would be one too many: say so now rather than wait for it.
        if usize::from(self.lines) >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.line_start = line_end;
        self.scanned = line_end;
        Ok(None)
    }
}

/// Reads a line's (without its ending) code and separator; its text is read when asked
/// ([`Reply::lines`]).
fn split_line(content: &[u8]) -> Result<Line, ReplyError> {
    let (digits, rest) = match content {
        [a, b, c, rest @ ..] => ([*a, *b, *c], rest),
        _ => return Err(ReplyError::InvalidCode),
    };
    let code = Code::from_digits(digits).ok_or(ReplyError::InvalidCode)?;
    let last = match rest {
        [] | [b' ', ..] => true,
        [b'-', ..] => false,
        _ => return Err(ReplyError::InvalidSeparator),
    };
    Ok(Line { code, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn one(input: &[u8]) -> (Reply<'_>, usize) {
        ReplyParser::new()
            .parse(input)
            .expect("valid reply")
            .expect("complete reply")
    }

    fn texts<'a>(r: &Reply<'a>) -> Vec<&'a [u8]> {
        r.lines().collect()
    }

    /// Input with no reply due: a 421 and its first bytes may stay, anything else is
    /// premature from its first byte on (with its code once three digits are in).
    #[test]
    fn unprompted_input_is_premature_unless_it_may_be_a_421() {
        use crate::session::SessionError;
        assert_eq!(unprompted(b""), Unprompted::Allowed);
        assert_eq!(unprompted(b"421 bye\r\n"), Unprompted::Allowed);
        assert_eq!(unprompted(b"421"), Unprompted::Allowed);
        assert_eq!(unprompted(b"4"), Unprompted::Unsure);
        assert_eq!(unprompted(b"42"), Unprompted::Unsure);
        for partial in [&b"2"[..], b"25", b"45", b"x", b"\r\n"] {
            assert_eq!(
                unprompted(partial),
                Unprompted::Premature(SessionError::UnexpectedInput),
                "{partial:?}"
            );
        }
        assert_eq!(
            unprompted(b"450 busy\r\n"),
            Unprompted::Premature(SessionError::UnexpectedReply {
                code: Code::new(450).unwrap()
            })
        );
        assert_eq!(
            unprompted(b"999 no\r\n"),
            Unprompted::Premature(SessionError::UnexpectedInput)
        );
    }

    /// Feeds `input` one byte more each time, as a slow server would.
    fn bytewise(input: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ReplyError> {
        let mut p = ReplyParser::new();
        for end in 0..input.len() {
            match p.parse(&input[..end]) {
                Ok(None) => {}
                other => return other,
            }
        }
        p.parse(input)
    }

    const POSTFIX_EHLO: &[u8] = b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

    const GMAIL_EHLO: &[u8] = b"250-smtp.gmail.com at your service, [203.0.113.5]\r\n\
250-SIZE 35882577\r\n250-8BITMIME\r\n\
250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n";

    #[test]
    fn single_line_greeting() {
        let input = b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n";
        let (r, n) = one(input);
        assert_eq!(n, input.len());
        assert_eq!(r.code().value(), 220);
        assert_eq!(r.code().severity(), Severity::PositiveCompletion);
        assert_eq!(r.line_count(), 1);
        assert_eq!(r.enhanced(), None);
        assert_eq!(
            texts(&r),
            [&b"mx.example.com ESMTP Postfix (Debian/GNU)"[..]]
        );
        assert_eq!(r.raw(), &input[..]);
    }

    #[test]
    fn rfc5321_examples() {
        // RFC 5321 section 4.2.1's multiline example.
        let input = b"250-First line\r\n250-Second line\r\n250-234 Text beginning with numbers\r\n250 The last line\r\n";
        let (r, n) = one(input);
        assert_eq!(n, input.len());
        assert_eq!(r.line_count(), 4);
        assert_eq!(
            texts(&r),
            [
                &b"First line"[..],
                b"Second line",
                b"234 Text beginning with numbers",
                b"The last line"
            ]
        );
        // Section D.1 scenario replies.
        let (r, _) = one(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
        assert!(r.code().is_intermediate());
        let (r, _) = one(b"221 foo.com Service closing transmission channel\r\n");
        assert_eq!(r.code().value(), 221);
        let (r, _) = one(b"550 No such user here\r\n");
        assert!(r.code().is_permanent());
        assert_eq!(r.enhanced(), None);
    }

    #[test]
    fn postfix_ehlo() {
        let (r, n) = one(POSTFIX_EHLO);
        assert_eq!(n, POSTFIX_EHLO.len());
        assert_eq!(r.code().value(), 250);
        assert_eq!(r.line_count(), 11);
        let t = texts(&r);
        assert_eq!(t[0], b"mx.example.com");
        assert_eq!(t[2], b"SIZE 10240000");
        assert_eq!(t[10], b"CHUNKING");
        assert_eq!(r.enhanced(), None);
    }

    #[test]
    fn gmail_ehlo() {
        let (r, _) = one(GMAIL_EHLO);
        assert_eq!(r.line_count(), 8);
        assert_eq!(
            texts(&r)[0],
            b"smtp.gmail.com at your service, [203.0.113.5]"
        );
        assert_eq!(texts(&r)[7], b"SMTPUTF8");
    }

    #[test]
    fn smtp_sink_empty_last_line() {
        let input = b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n\
250-XCLIENT NAME HELO\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n250-ENHANCEDSTATUSCODES\r\n\
250-DSN\r\n250 \r\n";
        let (r, n) = one(input);
        assert_eq!(n, input.len());
        assert_eq!(r.line_count(), 9);
        assert_eq!(texts(&r)[8], b"");
    }

    #[test]
    fn bare_code_is_last_line() {
        let (r, n) = one(b"250\r\nxyz");
        assert_eq!(n, 5);
        assert_eq!(texts(&r), [&b""[..]]);
        let (r, _) = one(b"250-a\r\n250\r\n");
        assert_eq!(r.line_count(), 2);
        assert_eq!(texts(&r), [&b"a"[..], b""]);
    }

    #[test]
    fn enhanced_codes() {
        let (r, _) = one(b"550 5.1.1 <x@y>: Recipient address rejected: User unknown\r\n");
        assert_eq!(
            r.enhanced(),
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(
            texts(&r),
            [&b"5.1.1 <x@y>: Recipient address rejected: User unknown"[..]]
        );
        let tl: Vec<_> = r.text_lines().collect();
        assert_eq!(
            tl,
            [&b"<x@y>: Recipient address rejected: User unknown"[..]]
        );

        let (r, _) = one(b"421 4.7.0 Try again later\r\n");
        assert!(r.code().is_transient());
        assert_eq!(
            r.enhanced().map(|e| (e.class, e.subject, e.detail)),
            Some((4, 7, 0))
        );
        assert_eq!(std::format!("{}", r.enhanced().unwrap()), "4.7.0");

        // Class must match the code's first digit.
        assert_eq!(one(b"250 5.1.1 odd\r\n").0.enhanced(), None);
        // Three-digit parts, end of line right after the code.
        assert_eq!(
            one(b"554 5.123.999\r\n").0.enhanced(),
            Some(EnhancedCode {
                class: 5,
                subject: 123,
                detail: 999
            })
        );
        // Not enhanced codes.
        for input in [
            &b"550 5.1.1234 x\r\n"[..],
            b"550 5.1. x\r\n",
            b"550 5..1 x\r\n",
            b"550 5.1.1x\r\n",
            b"550 3.1.1 x\r\n",
            b"550  5.1.1 x\r\n",
            b"550 5.1\r\n",
        ] {
            assert_eq!(one(input).0.enhanced(), None, "{input:?}");
        }
        // Only the first line counts; text_lines strips the repeats.
        let (r, _) = one(b"550-5.7.1 Blocked\r\n550 5.7.1 See https://example.com\r\n");
        assert_eq!(
            r.enhanced().map(|e| e.to_string()),
            Some(String::from("5.7.1"))
        );
        let tl: Vec<_> = r.text_lines().collect();
        assert_eq!(tl, [&b"Blocked"[..], b"See https://example.com"]);
        let (r, _) = one(b"250-host\r\n250 2.0.0 Ok\r\n");
        assert_eq!(r.enhanced(), None);
    }

    #[test]
    fn bare_lf_tolerated() {
        let (r, n) = one(b"250-a\n250-b\r\n250 c\nrest");
        assert_eq!(n, 19);
        assert_eq!(texts(&r), [&b"a"[..], b"b", b"c"]);
        assert_eq!(bytewise(b"250-a\n250-b\r\n250 c\nrest"), Ok(Some((r, n))));
    }

    #[test]
    fn non_utf8_and_nul_text() {
        let input = b"250 caf\xe9 \x00 \xff\r\n";
        let (r, _) = one(input);
        assert_eq!(texts(&r), [&b"caf\xe9 \x00 \xff"[..]]);
    }

    #[test]
    fn bytewise_equals_one_shot() {
        for input in [
            POSTFIX_EHLO,
            GMAIL_EHLO,
            b"550 5.1.1 <x@y>: Recipient address rejected: User unknown\r\n",
            b"250\r\n",
            b"250 \r\n",
        ] {
            let whole = ReplyParser::new().parse(input);
            assert!(matches!(whole, Ok(Some(_))));
            assert_eq!(bytewise(input), whole);
        }
    }

    #[test]
    fn incomplete_then_complete() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b""), Ok(None));
        assert_eq!(p.parse(b"250-mx\r"), Ok(None));
        assert_eq!(p.parse(b"250-mx\r\n25"), Ok(None));
        assert_eq!(p.parse(b"250-mx\r\n250 ok"), Ok(None));
        assert_eq!(p.parse(b"250-mx\r\n250 ok\r"), Ok(None));
        let (r, n) = p.parse(b"250-mx\r\n250 ok\r\n").unwrap().unwrap();
        assert_eq!((r.line_count(), n), (2, 16));
        // Reset for the next reply.
        assert_eq!(
            p.parse(b"354 go\r\n").unwrap().unwrap().0.code().value(),
            354
        );
    }

    #[test]
    fn pipelined_replies() {
        let input = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 End data with <CR><LF>.<CR><LF>\r\n25";
        let mut p = ReplyParser::new();
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, n)) = p.parse(&input[at..]).unwrap() {
            got.push((r.code().value(), r.line_count(), r.enhanced()));
            at += n;
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 250);
        assert_eq!(
            got[2],
            (
                550,
                2,
                Some(EnhancedCode {
                    class: 5,
                    subject: 1,
                    detail: 1
                })
            )
        );
        assert_eq!(got[3].0, 354);
        assert_eq!(&input[at..], b"25");
        assert_eq!(p.finish(&input[at..]), Err(ReplyError::MissingLineEnd));
        assert_eq!(ReplyParser::new().finish(b""), Ok(()));
    }

    fn err(input: &[u8]) -> ReplyError {
        let e = ReplyParser::new().parse(input).expect_err("an error");
        assert_eq!(bytewise(input), Err(e), "bytewise differs for {input:?}");
        e
    }

    #[test]
    fn errors() {
        assert_eq!(err(b"25x ok\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"25\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"150 ok\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"260 ok\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"650 ok\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"250-ok\r\nabc\r\n"), ReplyError::InvalidCode);
        assert_eq!(err(b"250_ok\r\n"), ReplyError::InvalidSeparator);
        assert_eq!(err(b"2500\r\n"), ReplyError::InvalidSeparator);
        assert_eq!(err(b"250\tok\r\n"), ReplyError::InvalidSeparator);
        assert_eq!(
            err(b"250-ok\r\n251 ok\r\n"),
            ReplyError::MixedCodes {
                first: Code::new(250).unwrap(),
                found: Code::new(251).unwrap()
            }
        );
        assert_eq!(err(b"250 ok\rx\n"), ReplyError::MissingLineEnd);
        assert_eq!(err(b"250 o\r\r\n"), ReplyError::MissingLineEnd);
        assert_eq!(
            ReplyParser::new().finish(b"250 ok"),
            Err(ReplyError::MissingLineEnd)
        );
        assert_eq!(
            ReplyParser::new().finish(b"250 ok\r"),
            Err(ReplyError::MissingLineEnd)
        );
        assert_eq!(
            Reply::parse_complete(b"250-ok\r\n"),
            Err(ReplyError::MissingLineEnd)
        );
    }

    #[test]
    fn error_is_sticky_until_reset() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b"2x"), Ok(None));
        assert_eq!(p.parse(b"2x0 \r\n"), Err(ReplyError::InvalidCode));
        assert_eq!(p.parse(b"250 ok\r\n"), Err(ReplyError::InvalidCode));
        assert_eq!(p.finish(b""), Err(ReplyError::InvalidCode));
        p.reset();
        assert!(p.parse(b"250 ok\r\n").unwrap().is_some());
    }

    #[test]
    fn line_length_limit() {
        // Exactly MAX_LINE_LEN with CRLF: accepted.
        let mut ok = b"250 ".to_vec();
        ok.resize(MAX_LINE_LEN - 2, b'a');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(ok.len(), MAX_LINE_LEN);
        assert!(matches!(ReplyParser::new().parse(&ok), Ok(Some(_))));
        assert!(matches!(bytewise(&ok), Ok(Some(_))));
        // With a bare LF the line may carry one more text byte.
        let mut ok_lf = ok[..MAX_LINE_LEN - 2].to_vec();
        ok_lf.extend_from_slice(b"a\n");
        assert!(matches!(ReplyParser::new().parse(&ok_lf), Ok(Some(_))));
        // One more byte: refused.
        let mut long = ok[..MAX_LINE_LEN - 2].to_vec();
        long.extend_from_slice(b"a\r\n");
        assert_eq!(err(&long), ReplyError::LineTooLong);
        // Reported as soon as MAX_LINE_LEN bytes without LF are there, not later.
        let mut p = ReplyParser::new();
        let endless = [b'a'; MAX_LINE_LEN];
        assert_eq!(p.parse(&endless[..MAX_LINE_LEN - 1]), Ok(None));
        assert_eq!(p.parse(&endless), Err(ReplyError::LineTooLong));
        // Also on a continuation line.
        let mut second = b"250-first\r\n".to_vec();
        second.extend_from_slice(&endless);
        assert_eq!(err(&second), ReplyError::LineTooLong);
    }

    #[test]
    fn line_count_limit() {
        let mut input = Vec::new();
        for _ in 0..MAX_LINES - 1 {
            input.extend_from_slice(b"250-x\r\n");
        }
        let mut ok = input.clone();
        ok.extend_from_slice(b"250 x\r\n");
        assert_eq!(one(&ok).0.line_count(), MAX_LINES);
        input.extend_from_slice(b"250-x\r\n");
        assert_eq!(err(&input), ReplyError::TooManyLines);
    }

    #[test]
    fn misuse_with_shorter_input_does_not_panic() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b"250-abcdef\r\n250 x"), Ok(None));
        assert_eq!(p.parse(b"250"), Ok(None));
        assert_eq!(p.parse(b"250 x\r\n").unwrap().unwrap().1, 7);
    }

    #[test]
    fn displays() {
        assert_eq!(Code::new(250).unwrap().to_string(), "250");
        assert_eq!(
            ReplyError::MixedCodes {
                first: Code::new(250).unwrap(),
                found: Code::new(550).unwrap()
            }
            .to_string(),
            "multiline reply mixes codes 250 and 550"
        );
        assert!(ReplyError::LineTooLong.to_string().contains("4096"));
    }

    /// The digit-wise check accepts exactly the codes [`Code::new`] accepts.
    #[test]
    fn from_digits_agrees_with_new() {
        for value in 0..1000u16 {
            let digits = [100, 10, 1].map(|p| b'0' + (value / p % 10) as u8);
            assert_eq!(Code::from_digits(digits), Code::new(value), "{value}");
        }
        for odd in [*b"2x0", *b"/50", *b"25:", *b"\x0050", *b" 25"] {
            assert_eq!(Code::from_digits(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn code_classes() {
        assert_eq!(Code::new(199), None);
        assert_eq!(Code::new(260), None);
        assert_eq!(Code::new(600), None);
        assert_eq!(
            Code::new(559).map(Code::severity),
            Some(Severity::PermanentNegative)
        );
        assert_eq!(
            Code::new(334).map(Code::severity),
            Some(Severity::PositiveIntermediate)
        );
        assert_eq!(
            Code::new(451).map(Code::severity),
            Some(Severity::TransientNegative)
        );
    }
}
